/*
 * test_control.h — test-only hooks of the library (SQLite's sqlite3_test_control is the model):
 * fault injection that production code paths consult but that nothing outside the tests can
 * switch on. No environment variable, no public symbol: the hooks are internal (hidden) symbols,
 * reached by the C tests through sipp_core and by the test-only gateway binary
 * (tests/e2e/gateway_hooks.c). libsipp.so exports none of them.
 *
 * Every hook is off by default; while off it costs one relaxed atomic load where consulted.
 */
#ifndef SIPP_TEST_CONTROL_H
#define SIPP_TEST_CONTROL_H

#include <stddef.h>

/* Operations of sipp__test_control(). Numbers are stable within a build only. */
enum {
    /* (): every hook off, counters cleared. Returns 0. */
    SIPP__TESTCTRL_RESET = 1,
    /* (unsigned long n): the n-th allocation made through sipp__malloc/sipp__realloc from now
     * on fails, once; 0 disarms. Counting starts at 1 and restarts with each call. Returns 0. */
    SIPP__TESTCTRL_ALLOC_FAIL_AT = 2,
    /* (): how many allocations went through sipp__malloc/sipp__realloc since the last
     * ALLOC_FAIL_AT (counted only while armed). Returns the count (saturated at INT_MAX). */
    SIPP__TESTCTRL_ALLOC_COUNT = 3,
    /* (unsigned ms): engines opened from now on hold the first scheduler round of their first
     * run that long, as a decode that does not return would (the watchdog's tests); 0 = off.
     * Read once when an engine opens. Returns 0. */
    SIPP__TESTCTRL_ENGINE_STALL_MS = 4,
};

/* Switches a test hook; the arguments depend on `op` (above). Returns -1 for an unknown op.
 * Thread-safe (atomics); meant to be called between operations, not during them. */
int sipp__test_control(int op, ...);

/* The allocator of the pure modules (buf.c, text.c, json_writer.c): malloc/realloc, except that
 * the allocation ALLOC_FAIL_AT names returns NULL. */
void *sipp__malloc(size_t n);
void *sipp__realloc(void *p, size_t n);

/* SIPP__TESTCTRL_ENGINE_STALL_MS's value (0 = off). */
unsigned sipp__test_engine_stall_ms(void);

#endif
