/*
 * test_text.c — the pure text logic of generation: UTF-8 hold-back, stop strings across token
 * boundaries, and option validation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "common/common_int.h"

static void utf8_complete_ascii(void **state) {
    (void)state;
    assert_int_equal(sipp__utf8_complete_len("hello", 5), 5);
    assert_int_equal(sipp__utf8_complete_len("", 0), 0);
}

static void utf8_holds_incomplete_sequences(void **state) {
    (void)state;
    const char *euro = "a\xE2\x82\xAC"; /* a + € (3 bytes) */
    assert_int_equal(sipp__utf8_complete_len(euro, 4), 4);
    assert_int_equal(sipp__utf8_complete_len(euro, 3), 1); /* € cut after 2 bytes */
    assert_int_equal(sipp__utf8_complete_len(euro, 2), 1); /* € cut after 1 byte */
    const char *emoji = "\xF0\x9F\x98\x80";                /* 4 bytes */
    assert_int_equal(sipp__utf8_complete_len(emoji, 3), 0);
    assert_int_equal(sipp__utf8_complete_len(emoji, 4), 4);
}

static void utf8_passes_invalid_bytes(void **state) {
    (void)state;
    /* Stray continuation bytes are invalid but never held forever. */
    assert_int_equal(sipp__utf8_complete_len("\x80\x80", 2), 2);
    assert_int_equal(sipp__utf8_complete_len("ab\x80\x80\x80\x80", 6), 6);
}

/* Cleans `in` (len bytes) and compares with `want` (a C string). */
static void expect_clean(const char *in, size_t len, const char *want) {
    sipp__buf b;
    sipp__buf_init(&b, 1024);
    assert_int_equal(sipp__utf8_append_clean(&b, in, len), SIPP_OK);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    assert_int_equal(sipp__utf8_valid_len(b.data, b.len), b.len);
    sipp__buf_free(&b);
}

#define FFFD "\xEF\xBF\xBD"

static void utf8_valid_text_is_unchanged(void **state) {
    (void)state;
    const char *ok = "plain, caf\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80, \xF4\x8F\xBF\xBF";
    assert_int_equal(sipp__utf8_valid_len(ok, strlen(ok)), strlen(ok));
    expect_clean(ok, strlen(ok), ok);
    expect_clean("", 0, "");
}

/* Each maximal invalid subpart becomes one U+FFFD (Unicode 15, section 3.9, table 3-8). */
static void utf8_invalid_subparts_become_replacement_characters(void **state) {
    (void)state;
    assert_int_equal(sipp__utf8_valid_len("ab\xFF" "cd", 5), 2);
    expect_clean("ab\xFF" "cd", 5, "ab" FFFD "cd");
    expect_clean("\x80\xBF", 2, FFFD FFFD);                 /* lone continuations */
    expect_clean("\xC0\xAF", 2, FFFD FFFD);                 /* overlong lead: never valid */
    expect_clean("\xE0\x80\xAF", 3, FFFD FFFD FFFD);       /* overlong three-byte form */
    expect_clean("\xED\xA0\x80", 3, FFFD FFFD FFFD);       /* a UTF-16 surrogate */
    expect_clean("\xF4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD); /* past U+10FFFF */
    expect_clean("\xE2\x82" "a", 3, FFFD "a");              /* truncated: one replacement */
    expect_clean("\xF0\x9F\x98", 3, FFFD);                 /* truncated at the end */
    expect_clean("x\xC3", 2, "x" FFFD);
    expect_clean("\xF5\xFE\xFF", 3, FFFD FFFD FFFD);
}

static void stop_full_match(void **state) {
    (void)state;
    const char *stops[] = {"END"};
    sipp__stop_scan s = sipp__stop_scan_text(stops, 1, "hello END there", 15);
    assert_true(s.matched);
    assert_int_equal(s.emit_len, 6);
}

static void stop_earliest_of_several(void **state) {
    (void)state;
    const char *stops[] = {"zz", "b"};
    sipp__stop_scan s = sipp__stop_scan_text(stops, 2, "aabzz", 5);
    assert_true(s.matched);
    assert_int_equal(s.emit_len, 2);
}

static void stop_holds_partial_prefix(void **state) {
    (void)state;
    const char *stops[] = {"</answer>"};
    sipp__stop_scan s = sipp__stop_scan_text(stops, 1, "result </ans", 12);
    assert_false(s.matched);
    assert_int_equal(s.emit_len, 7); /* "</ans" held back */
    /* the next token completes it: the scan sees the held tail plus the new text */
    s = sipp__stop_scan_text(stops, 1, "</answer> more", 14);
    assert_true(s.matched);
    assert_int_equal(s.emit_len, 0);
}

static void stop_releases_a_false_start(void **state) {
    (void)state;
    const char *stops[] = {"STOP"};
    sipp__stop_scan s = sipp__stop_scan_text(stops, 1, "ST", 2);
    assert_false(s.matched);
    assert_int_equal(s.emit_len, 0);
    s = sipp__stop_scan_text(stops, 1, "STAR", 4);
    assert_false(s.matched);
    assert_int_equal(s.emit_len, 4);
}

static void stop_with_no_stops_emits_complete_utf8(void **state) {
    (void)state;
    sipp__stop_scan s = sipp__stop_scan_text(NULL, 0, "ok\xE2\x82", 4);
    assert_false(s.matched);
    assert_int_equal(s.emit_len, 2);
}

static void params_defaults_are_valid(void **state) {
    (void)state;
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    assert_int_equal(sipp__text_params_check(&p, NULL), SIPP_OK);
}

static void expect_invalid(sipp_text_params p, const char *needle) {
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp__text_params_check(&p, &err), SIPP_INVALID_ARGUMENT);
    assert_int_equal(err.code, SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, needle));
}

static void params_rejects_bad_values(void **state) {
    (void)state;
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    p.max_tokens = 0;
    expect_invalid(p, "max_tokens");
    sipp_text_params_init(&p, sizeof p);
    p.temperature = NAN;
    expect_invalid(p, "temperature");
    p.temperature = -0.5f;
    expect_invalid(p, "temperature");
    p.temperature = INFINITY;
    expect_invalid(p, "temperature");
    sipp_text_params_init(&p, sizeof p);
    p.top_p = 1.5f;
    expect_invalid(p, "top_p");
    p.top_p = -0.1f;
    expect_invalid(p, "top_p");
    sipp_text_params_init(&p, sizeof p);
    p.min_p = 2.0f;
    expect_invalid(p, "min_p");
    sipp_text_params_init(&p, sizeof p);
    p.top_k = -1;
    expect_invalid(p, "top_k");
    sipp_text_params_init(&p, sizeof p);
    p.repeat_penalty = 0.0f;
    expect_invalid(p, "repeat_penalty");
    sipp_text_params_init(&p, sizeof p);
    const char *stops[] = {"ok", ""};
    p.stop = stops;
    p.n_stop = 2;
    expect_invalid(p, "stop string 1");
    sipp_text_params_init(&p, sizeof p);
    p.n_stop = SIPP_MAX_STOP_STRINGS + 1;
    p.stop = stops;
    expect_invalid(p, "stop strings");
    sipp_text_params_init(&p, sizeof p);
    p.grammar = "root ::= \"a\"";
    p.json_schema = "{}";
    expect_invalid(p, "exclusive");
    sipp_text_params_init(&p, sizeof p);
    p.struct_size = 4;
    expect_invalid(p, "struct_size");
}

static void status_names_are_stable(void **state) {
    (void)state;
    assert_string_equal(sipp_status_name(SIPP_OK), "ok");
    assert_string_equal(sipp_status_name(SIPP_UNSUPPORTED), "unsupported");
    assert_string_equal(sipp_status_name(SIPP_BUSY), "busy");
    assert_string_equal(sipp_status_name((sipp_status)9999), "unknown");
    assert_int_equal(SIPP_INVALID_ARGUMENT, 1);
    assert_int_equal(SIPP_TIMEOUT, 13);
}

static void buf_respects_its_maximum(void **state) {
    (void)state;
    sipp__buf b;
    sipp__buf_init(&b, 8);
    assert_int_equal(sipp__buf_append(&b, "12345", 5), SIPP_OK);
    assert_int_equal(sipp__buf_append(&b, "678", 3), SIPP_OK);
    assert_int_equal(sipp__buf_append(&b, "9", 1), SIPP_OUT_OF_MEMORY);
    assert_string_equal(b.data, "12345678");
    sipp__buf_free(&b);
}

static void nesting_depth_skips_literals_classes_and_comments(void **state) {
    (void)state;
    assert_int_equal(sipp__nesting_depth("root ::= ((\"a\") | \"b\")", true, 100), 2);
    assert_int_equal(sipp__nesting_depth("root ::= \"(((\\\"(((\" [(((\\]((] x", true, 100), 0);
    assert_int_equal(sipp__nesting_depth("# (((((\nroot ::= (x)", true, 100), 1);
    assert_int_equal(sipp__nesting_depth("root ::= x{2,3} [a-z]", true, 100), 0);
    assert_int_equal(sipp__nesting_depth("{\"a\":[{\"b\":\"{[{[\"}]}", false, 100), 3);
    assert_int_equal(sipp__nesting_depth("{\"a\\\"{\":1}", false, 100), 1);
    assert_int_equal(sipp__nesting_depth("))((", true, 100), 2); /* stray closers do not go below 0 */
    assert_int_equal(sipp__nesting_depth("\"unterminated ((((", true, 100), 0);
    assert_int_equal(sipp__nesting_depth("((((((", true, 3), 4); /* stops just past the limit */
    assert_int_equal(sipp__nesting_depth(NULL, true, 3), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utf8_complete_ascii),
        cmocka_unit_test(utf8_holds_incomplete_sequences),
        cmocka_unit_test(utf8_passes_invalid_bytes),
        cmocka_unit_test(utf8_valid_text_is_unchanged),
        cmocka_unit_test(utf8_invalid_subparts_become_replacement_characters),
        cmocka_unit_test(stop_full_match),
        cmocka_unit_test(stop_earliest_of_several),
        cmocka_unit_test(stop_holds_partial_prefix),
        cmocka_unit_test(stop_releases_a_false_start),
        cmocka_unit_test(stop_with_no_stops_emits_complete_utf8),
        cmocka_unit_test(params_defaults_are_valid),
        cmocka_unit_test(params_rejects_bad_values),
        cmocka_unit_test(status_names_are_stable),
        cmocka_unit_test(buf_respects_its_maximum),
        cmocka_unit_test(nesting_depth_skips_literals_classes_and_comments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
