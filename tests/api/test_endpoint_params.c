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
    sipp_error err = sipp_error_default();
    sipp_gateway_params gp = sipp_gateway_params_default();
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
    sipp_error err = sipp_error_default();
    sipp_provider_params pp = sipp_provider_params_default();
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
    sipp_error err = sipp_error_default();
    sipp_run *run = NULL;
    sipp_text_params p = greedy(4);
    p.extra_json = "{\"presence_penalty\": 1}";
    assert_int_equal(sipp_query(local, "Once", &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "extra_json"));
    sipp_embed_params ep = sipp_embed_params_default();
    ep.extra_json = "{}";
    assert_int_equal(sipp_embed(local, "Once", &ep, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_null(run);
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
    sipp_response r;
    free(query_text(local, "Once upon a time", &p, &r));
    assert_int_equal(r.usage.output_tokens, 4);

    p.struct_size = 8; /* below the first released size */
    sipp_error err = sipp_error_default();
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
