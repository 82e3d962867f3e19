/*
 * test_bad_input.c — bad files and bad requests get a clear error and no crash or leak:
 * missing file, non-GGUF file, truncated GGUF, absurd header counts, empty prompt, max_tokens 0,
 * NaN or negative temperature, top_p outside [0, 1], chat with no messages, unknown role.
 * After all of it the endpoint still answers.
 */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include <math.h>
#include <unistd.h>

static char tmpdir[256];

static int setup(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sipp-bad-input-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    add_model(c, "chat", CHAT_MODEL, 1);
    *state = c;
    return 0;
}

static int teardown(void **state) {
    sipp_client_free(*state);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void expect_load_error(sipp_client *c, const char *path, sipp_status want,
                              const char *needle) {
    sipp_local_params lp = sipp_local_params_default();
    lp.model_path = path;
    sipp_endpoint *ep = (sipp_endpoint *)0x1;
    sipp_error err = sipp_error_default();
    assert_int_equal(sipp_client_add_local(c, "bad", &lp, &ep, &err), want);
    assert_null(ep);
    assert_int_equal(err.code, want);
    if (!strstr(err.message, needle)) fail_msg("message '%s' lacks '%s'", err.message, needle);
    assert_null(strchr(err.message, '\n'));
    assert_null(sipp_client_endpoint(c, "bad"));
}

static void missing_file(void **state) {
    expect_load_error(*state, "/nonexistent/model.gguf", SIPP_NOT_FOUND, "No such file");
}

static void not_a_gguf(void **state) {
    char path[300];
    snprintf(path, sizeof path, "%s/text.gguf", tmpdir);
    const char text[] = "this is a text file, not a model, but long enough to have a header";
    write_file(path, text, sizeof text);
    expect_load_error(*state, path, SIPP_MODEL_INVALID, "not a GGUF");
}

static void truncated_gguf(void **state) {
    FILE *f = fopen(CHAT_MODEL, "rb");
    assert_non_null(f);
    static unsigned char buf[4 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char path[300];
    size_t cuts[] = {n / 2, 4096, 100};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/truncated-%zu.gguf", tmpdir, i);
        write_file(path, buf, cuts[i]);
        expect_load_error(*state, path, SIPP_MODEL_INVALID, "");
    }
}

static void absurd_counts(void **state) {
    unsigned char h[4096] = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    /* 2^40 tensors */
    h[8 + 5] = 1;
    h[16] = 1;
    char path[300];
    snprintf(path, sizeof path, "%s/absurd.gguf", tmpdir);
    write_file(path, h, sizeof h);
    expect_load_error(*state, path, SIPP_MODEL_INVALID, "not plausible");
}

static void expect_query_error(sipp_endpoint *ep, const char *prompt, sipp_text_params p,
                               const char *needle) {
    sipp_run *run = (sipp_run *)0x1;
    sipp_error err = sipp_error_default();
    assert_int_equal(sipp_query(ep, prompt, &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_null(run);
    if (!strstr(err.message, needle)) fail_msg("message '%s' lacks '%s'", err.message, needle);
}

static void bad_requests(void **state) {
    sipp_endpoint *ep = sipp_client_endpoint(*state, "chat");
    sipp_text_params p = greedy(8);
    expect_query_error(ep, "", p, "empty");
    expect_query_error(ep, NULL, p, "empty");
    p.max_tokens = 0;
    expect_query_error(ep, "hi", p, "max_tokens");
    p = greedy(8);
    p.temperature = NAN;
    expect_query_error(ep, "hi", p, "temperature");
    p.temperature = -1.0f;
    expect_query_error(ep, "hi", p, "temperature");
    p = greedy(8);
    p.top_p = 1.01f;
    expect_query_error(ep, "hi", p, "top_p");
    p.top_p = -0.01f;
    expect_query_error(ep, "hi", p, "top_p");
}

static void bad_chats(void **state) {
    sipp_endpoint *ep = sipp_client_endpoint(*state, "chat");
    sipp_run *run = NULL;
    sipp_error err = sipp_error_default();
    assert_int_equal(sipp_chat(ep, NULL, 0, NULL, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "no messages"));
    sipp_message m[] = {{"wizard", "hi"}};
    assert_int_equal(sipp_chat(ep, m, 1, NULL, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "unknown role 'wizard'"));
    sipp_message m2[] = {{NULL, "hi"}};
    assert_int_equal(sipp_chat(ep, m2, 1, NULL, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_null(run);
}

static void endpoint_still_answers(void **state) {
    sipp_endpoint *ep = sipp_client_endpoint(*state, "chat");
    sipp_text_params p = greedy(8);
    sipp_response r;
    char *t = query_text(ep, "User: hi\nBot:", &p, &r);
    assert_int_equal(r.status, SIPP_OK);
    assert_true(r.usage.output_tokens > 0);
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(missing_file),   cmocka_unit_test(not_a_gguf),
        cmocka_unit_test(truncated_gguf), cmocka_unit_test(absurd_counts),
        cmocka_unit_test(bad_requests),   cmocka_unit_test(bad_chats),
        cmocka_unit_test(endpoint_still_answers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
