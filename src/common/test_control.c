/*
 * test_control.c — the test-only hooks of test_control.h: an allocation-failure countdown for
 * the pure modules and the engine's stall failpoint. State is a few process-wide atomics; with
 * every hook off (the default, and always outside the tests) each check is one relaxed load.
 */
#include "test_control.h"

#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

static atomic_ulong alloc_fail_at; /* 0 = off */
static atomic_ulong alloc_seen;    /* allocations since armed */
static atomic_uint engine_stall_ms;

int sipp__test_control(int op, ...) {
    va_list ap;
    va_start(ap, op);
    int rc = 0;
    switch (op) {
    case SIPP__TESTCTRL_RESET:
        atomic_store(&alloc_fail_at, 0);
        atomic_store(&alloc_seen, 0);
        atomic_store(&engine_stall_ms, 0);
        break;
    case SIPP__TESTCTRL_ALLOC_FAIL_AT:
        atomic_store(&alloc_fail_at, 0);
        atomic_store(&alloc_seen, 0);
        atomic_store(&alloc_fail_at, va_arg(ap, unsigned long));
        break;
    case SIPP__TESTCTRL_ALLOC_COUNT: {
        unsigned long n = atomic_load(&alloc_seen);
        rc = n > INT_MAX ? INT_MAX : (int)n;
        break;
    }
    case SIPP__TESTCTRL_ENGINE_STALL_MS:
        atomic_store(&engine_stall_ms, va_arg(ap, unsigned));
        break;
    default:
        rc = -1;
    }
    va_end(ap);
    return rc;
}

/* True when this allocation is the one to fail. */
static bool alloc_fails(void) {
    unsigned long at = atomic_load_explicit(&alloc_fail_at, memory_order_relaxed);
    if (!at) return false;
    return atomic_fetch_add(&alloc_seen, 1) + 1 == at;
}

void *sipp__malloc(size_t n) { return alloc_fails() ? NULL : malloc(n); }

void *sipp__realloc(void *p, size_t n) { return alloc_fails() ? NULL : realloc(p, n); }

unsigned sipp__test_engine_stall_ms(void) {
    return atomic_load_explicit(&engine_stall_ms, memory_order_relaxed);
}
