/*
 * test_json_writer.c — the bounded JSON writer (src/common/json_writer.c) that the browser host
 * answers with: every text it produces parses (checked with jansson) back to what was written;
 * strings with quotes, control characters and invalid UTF-8 come out valid; non-finite numbers,
 * misuse and a text past its maximum are typed errors with nothing leaked.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_writer.h"

static char *finish_ok(sipp__jw *w) {
    char *s = NULL;
    size_t len = 0;
    assert_int_equal(sipp__jw_finish(w, &s, &len), SIPP_OK);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    return s;
}

static void finish_fails(sipp__jw *w, sipp_status want) {
    char *s = (char *)1;
    assert_int_equal(sipp__jw_finish(w, &s, NULL), want);
    assert_null(s);
}

static void writes_nested_values_exactly(void **state) {
    (void)state;
    sipp__jw w;
    sipp__jw_init(&w, 4096);
    sipp__jw_object_begin(&w);
    sipp__jw_key(&w, "a");
    sipp__jw_int(&w, -42);
    sipp__jw_key(&w, "b");
    sipp__jw_array_begin(&w);
    sipp__jw_uint(&w, UINT64_MAX);
    sipp__jw_bool(&w, true);
    sipp__jw_bool(&w, false);
    sipp__jw_null(&w);
    sipp__jw_string(&w, NULL);
    sipp__jw_array_begin(&w);
    sipp__jw_array_end(&w);
    sipp__jw_object_begin(&w);
    sipp__jw_object_end(&w);
    sipp__jw_array_end(&w);
    sipp__jw_key(&w, "c");
    sipp__jw_double(&w, 0.1);
    sipp__jw_key(&w, "d");
    sipp__jw_string(&w, "x");
    sipp__jw_object_end(&w);
    char *s = finish_ok(&w);
    assert_string_equal(
        s, "{\"a\":-42,\"b\":[18446744073709551615,true,false,null,null,[],{}],\"c\":0.1,\"d\":\"x\"}");
    free(s);
}

/* Writes `in` (len bytes) as a string and as a key, parses the text back with jansson and
 * compares with sipp__utf8_append_clean's cleaning of `in`. */
static void string_round_trip(const char *in, size_t len) {
    sipp__buf want;
    sipp__buf_init(&want, SIZE_MAX);
    assert_int_equal(sipp__utf8_append_clean(&want, in, len), SIPP_OK);

    sipp__jw w;
    sipp__jw_init(&w, 1 << 20);
    sipp__jw_array_begin(&w);
    sipp__jw_string_len(&w, in, len);
    sipp__jw_array_end(&w);
    char *s = finish_ok(&w);
    json_error_t e;
    json_t *j = json_loads(s, JSON_ALLOW_NUL, &e);
    if (!j) fail_msg("not JSON (%s): %s", e.text, s);
    json_t *v = json_array_get(j, 0);
    assert_int_equal(json_string_length(v), want.len);
    assert_memory_equal(json_string_value(v), want.data ? want.data : "", want.len);
    json_decref(j);
    free(s);

    /* keys stop at the first NUL */
    size_t klen = strnlen(in, len);
    char *key = strndup(in, klen);
    sipp__buf_reset(&want);
    assert_int_equal(sipp__utf8_append_clean(&want, key, klen), SIPP_OK);
    sipp__jw_init(&w, 1 << 20);
    sipp__jw_object_begin(&w);
    sipp__jw_key(&w, key);
    sipp__jw_int(&w, 1);
    sipp__jw_object_end(&w);
    s = finish_ok(&w);
    j = json_loads(s, 0, &e);
    if (!j) fail_msg("not JSON (%s): %s", e.text, s);
    assert_int_equal(json_object_size(j), 1);
    assert_non_null(json_object_getn(j, want.data ? want.data : "", want.len));
    json_decref(j);
    free(s);
    free(key);
    sipp__buf_free(&want);
}

static void strings_are_escaped_and_cleaned(void **state) {
    (void)state;
    for (int c = 0; c < 256; c++) { /* every byte alone, and between text */
        char one[3] = {'a', (char)c, 'b'};
        string_round_trip(one + 1, 1);
        string_round_trip(one, 3);
    }
    static const char *cases[] = {
        "quote \" backslash \\ slash /",
        "\n\r\t\b\f\x01\x1f\x7f",
        "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",  /* valid multi-byte */
        "\xC3",                                      /* truncated */
        "\xE2\x82",                                  /* truncated */
        "\xC0\xAF \xE0\x80\xAF",                     /* overlong */
        "\xED\xA0\x80",                              /* a surrogate */
        "\xF4\x90\x80\x80",                          /* past U+10FFFF */
        "\xFF\xFE\x80\xBF",                          /* never valid */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) string_round_trip(cases[i], strlen(cases[i]));
    string_round_trip("nul\0inside", 10);

    sipp__jw w;
    sipp__jw_init(&w, 256);
    sipp__jw_string(&w, "a\"\\\n\x01\xFF");
    char *s = finish_ok(&w);
    assert_string_equal(s, "\"a\\\"\\\\\\n\\u0001\xEF\xBF\xBD\"");
    free(s);
}

static void doubles_read_back_exactly(void **state) {
    (void)state;
    const double v[] = {0.0, -0.0, 0.1, 1.0 / 3.0, 2.5, -1e-300, 1e300, 5e-324, 1.7976931348623157e308,
                        123456789.125, 3.0e10};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        sipp__jw w;
        sipp__jw_init(&w, 256);
        sipp__jw_array_begin(&w);
        sipp__jw_double(&w, v[i]);
        sipp__jw_array_end(&w);
        char *s = finish_ok(&w);
        json_t *j = json_loads(s, JSON_DECODE_INT_AS_REAL, NULL);
        assert_non_null(j);
        double got = json_number_value(json_array_get(j, 0));
        assert_memory_equal(&got, &v[i], sizeof got);
        json_decref(j);
        free(s);
    }
}

static void non_finite_numbers_are_refused(void **state) {
    (void)state;
    const double bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        sipp__jw w;
        sipp__jw_init(&w, 256);
        sipp__jw_object_begin(&w);
        sipp__jw_key(&w, "x");
        sipp__jw_double(&w, bad[i]);
        sipp__jw_key(&w, "y"); /* later calls do nothing */
        sipp__jw_int(&w, 1);
        sipp__jw_object_end(&w);
        finish_fails(&w, SIPP_INVALID_ARGUMENT);
    }
}

static void misuse_is_a_typed_error(void **state) {
    (void)state;
    sipp__jw w;
    sipp__jw_init(&w, 256); /* a value without its key */
    sipp__jw_object_begin(&w);
    sipp__jw_int(&w, 1);
    sipp__jw_object_end(&w);
    finish_fails(&w, SIPP_INVALID_ARGUMENT);

    sipp__jw_init(&w, 256); /* a key in an array */
    sipp__jw_array_begin(&w);
    sipp__jw_key(&w, "k");
    finish_fails(&w, SIPP_INVALID_ARGUMENT);

    sipp__jw_init(&w, 256); /* a key without its value */
    sipp__jw_object_begin(&w);
    sipp__jw_key(&w, "k");
    sipp__jw_object_end(&w);
    finish_fails(&w, SIPP_INVALID_ARGUMENT);

    sipp__jw_init(&w, 256); /* the wrong end */
    sipp__jw_object_begin(&w);
    sipp__jw_array_end(&w);
    finish_fails(&w, SIPP_INVALID_ARGUMENT);

    sipp__jw_init(&w, 256); /* an end too many */
    sipp__jw_array_begin(&w);
    sipp__jw_array_end(&w);
    sipp__jw_array_end(&w);
    finish_fails(&w, SIPP_INVALID_ARGUMENT);

    sipp__jw_init(&w, 256); /* unfinished */
    sipp__jw_array_begin(&w);
    finish_fails(&w, SIPP_INVALID_ARGUMENT);

    sipp__jw_init(&w, 256); /* two top-level values */
    sipp__jw_int(&w, 1);
    sipp__jw_int(&w, 2);
    finish_fails(&w, SIPP_INVALID_ARGUMENT);

    sipp__jw_init(&w, 256); /* nothing */
    finish_fails(&w, SIPP_INVALID_ARGUMENT);

    sipp__jw_init(&w, 1024); /* deeper than the maximum */
    for (int i = 0; i < SIPP__JW_MAX_DEPTH; i++) sipp__jw_array_begin(&w);
    for (int i = 0; i < SIPP__JW_MAX_DEPTH; i++) sipp__jw_array_end(&w);
    free(finish_ok(&w));
    for (int i = 0; i <= SIPP__JW_MAX_DEPTH; i++) sipp__jw_array_begin(&w);
    finish_fails(&w, SIPP_INVALID_ARGUMENT);
}

static void the_maximum_holds(void **state) {
    (void)state;
    sipp__jw w;
    sipp__jw_init(&w, 9); /* ["12345"] is 9 bytes */
    sipp__jw_array_begin(&w);
    sipp__jw_string(&w, "12345");
    sipp__jw_array_end(&w);
    char *s = finish_ok(&w);
    assert_string_equal(s, "[\"12345\"]");
    free(s);

    sipp__jw_init(&w, 9);
    sipp__jw_array_begin(&w);
    sipp__jw_string(&w, "123456");
    sipp__jw_array_end(&w);
    finish_fails(&w, SIPP_OUT_OF_MEMORY);

    sipp__jw_init(&w, 9); /* escapes count: "\n" is 2 bytes */
    sipp__jw_array_begin(&w);
    sipp__jw_string(&w, "1234\n");
    sipp__jw_array_end(&w);
    finish_fails(&w, SIPP_OUT_OF_MEMORY);

    sipp__jw_init(&w, 64); /* sipp__jw_free drops an unfinished writer */
    sipp__jw_array_begin(&w);
    sipp__jw_string(&w, "abc");
    sipp__jw_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(writes_nested_values_exactly),
        cmocka_unit_test(strings_are_escaped_and_cleaned),
        cmocka_unit_test(doubles_read_back_exactly),
        cmocka_unit_test(non_finite_numbers_are_refused),
        cmocka_unit_test(misuse_is_a_typed_error),
        cmocka_unit_test(the_maximum_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
