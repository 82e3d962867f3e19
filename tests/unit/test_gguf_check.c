/*
 * test_gguf_check.c — the GGUF header pre-check rejects non-GGUF bytes, unknown versions and
 * counts that the file cannot hold, and accepts a plausible header.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "engine/engine_int.h"

static void put_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void header(unsigned char h[24], uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    memcpy(h, "GGUF", 4);
    put_le(h + 4, version, 4);
    put_le(h + 8, n_tensors, 8);
    put_le(h + 16, n_kv, 8);
}

static void accepts_plausible_header(void **state) {
    (void)state;
    unsigned char h[24];
    header(h, 3, 10, 20);
    assert_int_equal(sipp__gguf_precheck_bytes(h, 24, 1 << 20, NULL), SIPP_OK);
}

static void rejects_bad_magic_and_short_input(void **state) {
    (void)state;
    unsigned char h[24];
    header(h, 3, 1, 1);
    h[0] = 'X';
    sipp_error err = sipp_error_default();
    assert_int_equal(sipp__gguf_precheck_bytes(h, 24, 4096, &err), SIPP_MODEL_INVALID);
    assert_non_null(strstr(err.message, "not a GGUF"));
    header(h, 3, 1, 1);
    assert_int_equal(sipp__gguf_precheck_bytes(h, 10, 4096, NULL), SIPP_MODEL_INVALID);
}

static void rejects_unknown_version(void **state) {
    (void)state;
    unsigned char h[24];
    header(h, 99, 1, 1);
    sipp_error err = sipp_error_default();
    assert_int_equal(sipp__gguf_precheck_bytes(h, 24, 4096, &err), SIPP_MODEL_INVALID);
    assert_non_null(strstr(err.message, "version 99"));
}

static void rejects_absurd_counts(void **state) {
    (void)state;
    unsigned char h[24];
    sipp_error err = sipp_error_default();
    header(h, 3, UINT64_MAX, 1);
    assert_int_equal(sipp__gguf_precheck_bytes(h, 24, UINT64_MAX, &err), SIPP_MODEL_INVALID);
    assert_non_null(strstr(err.message, "not plausible"));
    /* plausible in absolute terms, but more than the file can hold */
    header(h, 3, 100000, 10);
    assert_int_equal(sipp__gguf_precheck_bytes(h, 24, 4096, &err), SIPP_MODEL_INVALID);
    assert_non_null(strstr(err.message, "truncated"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_plausible_header),
        cmocka_unit_test(rejects_bad_magic_and_short_input),
        cmocka_unit_test(rejects_unknown_version),
        cmocka_unit_test(rejects_absurd_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
