/*
 * test_endpoint_params.c — registering provider and gateway endpoints (no network: nothing is
 * sent before the first request), secrets kept out of messages, extra_json and parameter
 * structs from an older, smaller header.
 */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include <stddef.h>

#define SECRET "sk-very-secret-value-42"

static sipp_status add_gateway(sipp_client *c, sipp_gateway_params *gp, sipp_error *err) {
    return sipp_client_add_gateway(c, "gw", gp, NULL, err);
}

static void gateway_params_are_validated(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_gateway_params gp;
    sipp_gateway_params_init(&gp, sizeof gp);
    gp.base_url = "http://127.0.0.1:9";
    gp.target = "tiny";
    gp.token = SECRET;
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_OK);

    gp.target = NULL;
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "target"));
    gp.target = "tiny";

    gp.base_url = "http://gateway.example.com"; /* plain http off loopback */
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    gp.base_url = "http://127.0.0.1:9";

    gp.token = "abc\r\nX-Injected: 1";
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    gp.token = SECRET;

    gp.auth = SIPP_GATEWAY_AUTH_HEADER; /* needs a header name */
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    gp.auth_header = "X Bad Name";
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    gp.auth_header = "X-Api-Key";
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_OK);

    const char *headers[] = {"X-Team: " SECRET, "Authorization: Bearer " SECRET};
    gp.headers = headers;
    gp.n_headers = 2; /* Authorization is Sipp's own */
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "Authorization"));
    assert_null(strstr(err.message, SECRET));
    const char *split[] = {"X-Team: a\nX-Evil: b"};
    gp.headers = split;
    gp.n_headers = 1;
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    assert_null(strstr(err.message, "X-Evil"));
    gp.n_headers = 0;

    gp.auth = SIPP_GATEWAY_AUTH_BEARER;
    gp.token = NULL;
    gp.token_env = "SIPP_TEST_NO_SUCH_TOKEN_VAR";
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_AUTHENTICATION);
    assert_non_null(strstr(err.message, "SIPP_TEST_NO_SUCH_TOKEN_VAR"));
    gp.auth = SIPP_GATEWAY_AUTH_NONE; /* an open gateway needs no token */
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_OK);
    sipp_client_free(c);
}

static void provider_params_are_validated(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_provider_params pp;
    sipp_provider_params_init(&pp, sizeof pp);
    pp.kind = SIPP_PROVIDER_ANTHROPIC;
    pp.model = "claude";
    pp.api_key_env = "SIPP_TEST_NO_SUCH_KEY_VAR";
    assert_int_equal(sipp_client_add_provider(c, "a", &pp, NULL, &err), SIPP_AUTHENTICATION);
    pp.api_key_env = NULL;
    pp.api_key = SECRET;
    pp.version = "bad\nversion";
    assert_int_equal(sipp_client_add_provider(c, "a", &pp, NULL, &err), SIPP_INVALID_ARGUMENT);
    assert_null(strstr(err.message, SECRET));
    pp.version = NULL;
    const char *reserved[] = {"x-api-key: other"};
    pp.headers = reserved;
    pp.n_headers = 1;
    assert_int_equal(sipp_client_add_provider(c, "a", &pp, NULL, &err), SIPP_INVALID_ARGUMENT);
    pp.n_headers = 0;
    sipp_endpoint *ep = NULL;
    assert_int_equal(sipp_client_add_provider(c, "a", &pp, &ep, &err), SIPP_OK);

    /* chat-only: query and embed fail before anything is sent */
    sipp_run *run = NULL;
    assert_int_equal(sipp_query(ep, "hi", NULL, &run, &err), SIPP_UNSUPPORTED);
    assert_null(run);
    assert_int_equal(sipp_embed(ep, "hi", NULL, &run, &err), SIPP_UNSUPPORTED);
    assert_null(run);
    pp.kind = (sipp_provider_kind)99;
    assert_int_equal(sipp_client_add_provider(c, "b", &pp, NULL, &err), SIPP_UNSUPPORTED);
    sipp_client_free(c);
}

static void extra_json_rules(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *local = add_model(c, "story", STORY_MODEL, 1);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_run *run = NULL;
    sipp_text_params p = greedy(4);
    p.extra_json = "{\"presence_penalty\": 1}";
    assert_int_equal(sipp_query(local, "Once", &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "extra_json"));
    sipp_embed_params ep;
    sipp_embed_params_init(&ep, sizeof ep);
    ep.extra_json = "{}";
    assert_int_equal(sipp_embed(local, "Once", &ep, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_null(run);
    sipp_client_free(c);
}

/* H1 (SSRF): the network policy on IP-literal base URLs, at registration (nothing is sent).
 * Loopback and public addresses pass; private and link-local ones only with
 * allow_private_network; metadata and reserved addresses never. A refused URL fails at once
 * with INVALID_ARGUMENT naming the address and why. */
static void network_policy_on_base_urls(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_provider_params pp;
    sipp_provider_params_init(&pp, sizeof pp);
    pp.model = "m";
    static const struct {
        const char *url;
        sipp_status by_default, allowed; /* without / with allow_private_network */
        const char *why;                 /* in the default refusal */
    } cases[] = {
        {"https://169.254.169.254/latest/meta-data", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "metadata"},
        {"http://169.254.169.254/v1", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "loopback"},
        {"https://[fd00:ec2::254]/v1", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "metadata"},
        {"https://[::ffff:169.254.169.254]/v1", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "metadata"},
        {"https://100.100.100.200/v1", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "metadata"},
        {"https://10.0.0.1/v1", SIPP_INVALID_ARGUMENT, SIPP_OK, "private-network"},
        {"https://172.16.5.4/v1", SIPP_INVALID_ARGUMENT, SIPP_OK, "private-network"},
        {"https://192.168.1.10:8000/v1", SIPP_INVALID_ARGUMENT, SIPP_OK, "private-network"},
        {"https://[fd12:3456::1]/v1", SIPP_INVALID_ARGUMENT, SIPP_OK, "private-network"},
        {"https://169.254.10.1/v1", SIPP_INVALID_ARGUMENT, SIPP_OK, "link-local"},
        {"https://[fe80::1]/v1", SIPP_INVALID_ARGUMENT, SIPP_OK, "link-local"},
        {"http://10.1.2.3:8000/v1", SIPP_INVALID_ARGUMENT, SIPP_OK, "loopback"}, /* plain http */
        {"https://0.0.0.0/v1", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "not a server"},
        {"https://224.0.0.1/v1", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "not a server"},
        {"http://8.8.8.8/v1", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "loopback"},
        {"file:///etc/passwd", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "http or https"},
        {"gopher://127.0.0.1/", SIPP_INVALID_ARGUMENT, SIPP_INVALID_ARGUMENT, "http or https"},
        {"http://127.0.0.1:8080/v1", SIPP_OK, SIPP_OK, NULL},
        {"http://[::1]:8080/v1", SIPP_OK, SIPP_OK, NULL},
        {"https://8.8.8.8/v1", SIPP_OK, SIPP_OK, NULL},
        {"https://api.example.com/v1", SIPP_OK, SIPP_OK, NULL}, /* names: checked at connect */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pp.base_url = cases[i].url;
        pp.allow_private_network = false;
        sipp_status st = sipp_client_add_provider(c, "p", &pp, NULL, &err);
        if (st != cases[i].by_default) fail_msg("%s: got %d (%s)", cases[i].url, st, err.message);
        if (cases[i].why && !strstr(err.message, cases[i].why))
            fail_msg("%s: message '%s' lacks '%s'", cases[i].url, err.message, cases[i].why);
        pp.allow_private_network = true;
        st = sipp_client_add_provider(c, "p", &pp, NULL, &err);
        if (st != cases[i].allowed) fail_msg("%s (allowed): got %d (%s)", cases[i].url, st, err.message);
    }
    /* the gateway endpoint follows the same policy */
    sipp_gateway_params gp;
    sipp_gateway_params_init(&gp, sizeof gp);
    gp.auth = SIPP_GATEWAY_AUTH_NONE;
    gp.target = "t";
    gp.base_url = "https://10.0.0.1";
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "allow_private_network"));
    gp.allow_private_network = true;
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_OK);
    gp.base_url = "https://169.254.169.254";
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    /* a caller built against the header before the field: the default (refuse) applies */
    gp.struct_size = (uint32_t)offsetof(sipp_gateway_params, allow_private_network);
    gp.base_url = "https://10.0.0.1";
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_INVALID_ARGUMENT);
    gp.base_url = "http://127.0.0.1:9";
    assert_int_equal(add_gateway(c, &gp, &err), SIPP_OK);
    sipp_client_free(c);
}

/* A caller compiled against the first header has no extra_json field: its struct_size is
 * smaller, and the missing fields take their defaults. */
static void older_smaller_params_are_accepted(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *local = add_model(c, "story", STORY_MODEL, 1);
    sipp_text_params p = greedy(4);
    p.extra_json = (const char *)(uintptr_t)1; /* garbage beyond the old size: never read */
    p.struct_size = (uint32_t)offsetof(sipp_text_params, extra_json);
    test_response r;
    free(query_text(local, "Once upon a time", &p, &r));
    assert_int_equal(r.usage.output_tokens, 4);

    p.struct_size = 8; /* below the first released size */
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_run *run = NULL;
    assert_int_equal(sipp_query(local, "Once", &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "struct_size"));
    sipp_client_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gateway_params_are_validated),
        cmocka_unit_test(provider_params_are_validated),
        cmocka_unit_test(extra_json_rules),
        cmocka_unit_test(older_smaller_params_are_accepted),
        cmocka_unit_test(network_policy_on_base_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
