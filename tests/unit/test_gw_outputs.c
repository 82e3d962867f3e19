/*
 * test_gw_outputs.c — the gateway codecs' log-probability encodings (src/gateway/
 * profile_outputs.c, issue 18) without a model: OpenAI's chat `content` entries and the legacy
 * completions object, for tokens that are part of a UTF-8 sequence (exact `bytes`, U+FFFD in
 * `token`), alternatives that read the same (the legacy dict keeps the most likely), and byte
 * offsets that continue across stream chunks; and the decoders' ranges.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "profiles.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "é" is C3 A9: a token of its first byte, then one of its second. */
static const sipp_top_logprob TOP0[] = {{"\xC3", 1, -0.1f}, {"a", 1, -2.0f}, {"a", 1, -3.0f}};
static const sipp_token_logprob ENTRIES[] = {
    {"\xC3", 1, -0.1f, TOP0, 3},
    {"\xA9", 1, -0.2f, NULL, 0},
    {"ok", 2, -0.3f, NULL, 0},
};

static void chat_entries_keep_exact_bytes(void **state) {
    (void)state;
    json_t *a = sipp__gw_logprobs_content(ENTRIES, 3);
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 3);
    json_t *e0 = json_array_get(a, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "token")), "\xEF\xBF\xBD"); /* U+FFFD */
    json_t *bytes = json_object_get(e0, "bytes");
    assert_int_equal(json_array_size(bytes), 1);
    assert_int_equal(json_integer_value(json_array_get(bytes, 0)), 0xC3);
    assert_true(fabs(json_real_value(json_object_get(e0, "logprob")) + 0.1) < 1e-6);
    json_t *top = json_object_get(e0, "top_logprobs");
    assert_int_equal(json_array_size(top), 3);
    assert_null(json_object_get(json_array_get(top, 0), "top_logprobs"));
    assert_int_equal(json_array_size(json_object_get(json_array_get(a, 1), "top_logprobs")), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 2), "token")), "ok");
    char *text = json_dumps(a, JSON_COMPACT); /* valid JSON text throughout */
    assert_non_null(text);
    free(text);
    json_decref(a);
}

static void legacy_object_offsets_and_duplicates(void **state) {
    (void)state;
    size_t off = 10; /* a stream chunk after 10 bytes of text */
    json_t *o = sipp__gw_logprobs_legacy(ENTRIES, 3, &off);
    assert_non_null(o);
    assert_int_equal(off, 14);
    json_t *offs = json_object_get(o, "text_offset");
    assert_int_equal(json_integer_value(json_array_get(offs, 0)), 10);
    assert_int_equal(json_integer_value(json_array_get(offs, 1)), 11);
    assert_int_equal(json_integer_value(json_array_get(offs, 2)), 12);
    json_t *d = json_array_get(json_object_get(o, "top_logprobs"), 0);
    assert_int_equal(json_object_size(d), 2); /* "a" twice: one key, the most likely */
    assert_true(fabs(json_real_value(json_object_get(d, "a")) + 2.0) < 1e-6);
    assert_int_equal(json_array_size(json_object_get(o, "tokens")), 3);
    json_decref(o);
}

static gw_call decode_ok(gw_profile prof, gw_op op, const char *body) {
    json_t *root = NULL;
    gw_call c;
    memset(&c, 0, sizeof c);
    char msg[256], param[64];
    bool ok = sipp__gw_decode_body(prof, op, body, strlen(body), 32, &root, &c, msg, sizeof msg,
                                   param, sizeof param);
    if (!ok) fail_msg("refused: %s", msg);
    sipp__gw_call_free_media(&c); /* what the call owns (the chat copy of the messages, ...) */
    c.chat = NULL;
    free(c.messages);
    free(c.inputs);
    c.json_schema = NULL; /* points into root */
    json_decref(root);
    return c;
}

static void decoders_take_logprobs_and_schemas(void **state) {
    (void)state;
    gw_call c = decode_ok(GW_PROFILE_OPENAI, GW_OP_QUERY,
                          "{\"model\":\"m\",\"prompt\":\"p\",\"logprobs\":3}");
    assert_true(c.logprobs && c.top_logprobs == 3 && !c.invalid[0]);
    c = decode_ok(GW_PROFILE_OPENAI, GW_OP_QUERY, "{\"model\":\"m\",\"prompt\":\"p\",\"logprobs\":21}");
    assert_string_equal(c.invalid_param, "logprobs");
    c = decode_ok(GW_PROFILE_OPENAI, GW_OP_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                  "\"top_logprobs\":2}");
    assert_string_equal(c.invalid_param, "top_logprobs"); /* needs logprobs */
    c = decode_ok(GW_PROFILE_SIPP, GW_OP_QUERY,
                  "{\"model\":\"m\",\"prompt\":\"p\",\"logprobs\":true,\"top_logprobs\":20}");
    assert_true(c.logprobs && c.top_logprobs == 20 && !c.invalid[0]);
    c = decode_ok(GW_PROFILE_OPENAI, GW_OP_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                  "\"response_format\":{\"type\":\"json_object\"}}");
    assert_true(c.json_object && !c.invalid[0]);
    size_t len;
    char *s = sipp__gw_schema_text(&c, &len);
    assert_string_equal(s, "{\"type\":\"object\"}");
    free(s);
    c = decode_ok(GW_PROFILE_OPENAI, GW_OP_CHAT,
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                  "\"response_format\":{\"type\":\"yaml\"}}");
    assert_string_equal(c.invalid_param, "response_format");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chat_entries_keep_exact_bytes),
        cmocka_unit_test(legacy_object_offsets_and_duplicates),
        cmocka_unit_test(decoders_take_logprobs_and_schemas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
