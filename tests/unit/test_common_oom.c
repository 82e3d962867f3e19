/*
 * test_common_oom.c — the allocation-failure mode of the pure modules (buf.c, text.c,
 * json_writer.c): with SIPP__TESTCTRL_ALLOC_FAIL_AT every allocation a call makes is failed in
 * turn, and each time the call returns its out-of-memory error, leaves its buffer as it was
 * (or frees what it built) and crashes nothing. Run under ASan (SIPP_SANITIZE) the same loop
 * shows that no failure path leaks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/json_writer.h"
#include "common/test_control.h"

/* Runs `call` with its 1st, 2nd, ... allocation failing until it runs without reaching the
 * failure; `call` returns true when it succeeded, false when it reported out of memory (and
 * checks its own state either way). Returns how many failures were injected. */
static int each_allocation_fails(bool (*call)(void *), void *arg) {
    int injected = 0;
    for (unsigned long n = 1;; n++) {
        sipp__test_control(SIPP__TESTCTRL_ALLOC_FAIL_AT, n);
        bool ok = call(arg);
        int seen = sipp__test_control(SIPP__TESTCTRL_ALLOC_COUNT);
        sipp__test_control(SIPP__TESTCTRL_RESET);
        if ((unsigned long)seen < n) { /* the n-th allocation never came: a clean run */
            assert_true(ok);
            return injected;
        }
        assert_false(ok);
        injected++;
    }
}

static bool buf_growth(void *arg) {
    (void)arg;
    sipp__buf b;
    sipp__buf_init(&b, 1 << 20);
    char chunk[100];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 50; i++) { /* grows 64 -> 128 -> ... -> 8192 */
        size_t before = b.len;
        sipp_status st = sipp__buf_append(&b, chunk, sizeof chunk);
        if (st != SIPP_OK) {
            assert_int_equal(st, SIPP_OUT_OF_MEMORY);
            assert_int_equal(b.len, before); /* unchanged, still terminated */
            if (b.data) assert_int_equal(b.data[b.len], '\0');
            sipp__buf_free(&b);
            return false;
        }
    }
    assert_int_equal(b.len, 5000);
    sipp__buf_free(&b);
    return true;
}

static void buf_append_fails_cleanly(void **state) {
    (void)state;
    assert_int_equal(each_allocation_fails(buf_growth, NULL), 7); /* 128 ... 8192 */
}

static bool strdup_call(void *arg) {
    char *s = sipp__strdup(arg);
    if (!s) return false;
    assert_string_equal(s, arg);
    free(s);
    return true;
}

static void strdup_fails_cleanly(void **state) {
    (void)state;
    assert_int_equal(each_allocation_fails(strdup_call, "hello"), 1);
}

/* 62 valid bytes, an invalid one, 200 valid bytes: the buffer grows in the first valid run (to
 * 64), in the replacement's append (to 128) and in the second valid run (to 512). */
static bool clean_call(void *arg) {
    (void)arg;
    char in[263];
    memset(in, 'y', sizeof in);
    in[62] = '\xFF';
    sipp__buf b;
    sipp__buf_init(&b, 1 << 16);
    sipp_status st = sipp__utf8_append_clean(&b, in, sizeof in);
    if (st == SIPP_OK) {
        assert_int_equal(b.len, 265);
        assert_memory_equal(b.data + 62, "\xEF\xBF\xBDy", 4);
    } else {
        assert_int_equal(st, SIPP_OUT_OF_MEMORY);
    }
    sipp__buf_free(&b);
    return st == SIPP_OK;
}

static void utf8_clean_fails_cleanly(void **state) {
    (void)state;
    assert_int_equal(each_allocation_fails(clean_call, NULL), 3);
}

static bool json_call(void *arg) {
    (void)arg;
    sipp__jw w;
    sipp__jw_init(&w, 1 << 16);
    sipp__jw_object_begin(&w);
    for (int i = 0; i < 40; i++) {
        sipp__jw_key(&w, "key \xFF"); /* invalid UTF-8: a temporary buffer as well */
        sipp__jw_string(&w, "value \"quoted\" \x01 \xC3");
    }
    sipp__jw_object_end(&w);
    char *s = NULL;
    sipp_status st = sipp__jw_finish(&w, &s, NULL);
    if (st != SIPP_OK) {
        assert_int_equal(st, SIPP_OUT_OF_MEMORY);
        assert_null(s);
        return false;
    }
    assert_non_null(s);
    free(s);
    return true;
}

static void json_writer_fails_cleanly(void **state) {
    (void)state;
    assert_true(each_allocation_fails(json_call, NULL) > 40);
}

static void hook_counts_only_while_armed(void **state) {
    (void)state;
    sipp__test_control(SIPP__TESTCTRL_RESET);
    free(sipp__strdup("x"));
    assert_int_equal(sipp__test_control(SIPP__TESTCTRL_ALLOC_COUNT), 0);
    sipp__test_control(SIPP__TESTCTRL_ALLOC_FAIL_AT, 2ul);
    char *a = sipp__strdup("a");
    char *b = sipp__strdup("b");
    char *c = sipp__strdup("c");
    assert_non_null(a);
    assert_null(b); /* the 2nd, once */
    assert_non_null(c);
    assert_int_equal(sipp__test_control(SIPP__TESTCTRL_ALLOC_COUNT), 3);
    free(a);
    free(c);
    sipp__test_control(SIPP__TESTCTRL_RESET);
    assert_int_equal(sipp__test_control(SIPP__TESTCTRL_ALLOC_COUNT), 0);
    assert_int_equal(sipp__test_control(-7), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hook_counts_only_while_armed),
        cmocka_unit_test(buf_append_fails_cleanly),
        cmocka_unit_test(strdup_fails_cleanly),
        cmocka_unit_test(utf8_clean_fails_cleanly),
        cmocka_unit_test(json_writer_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
