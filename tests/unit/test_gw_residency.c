/*
 * test_gw_residency.c — residency's pure parts (src/gateway/residency.c): the footprint
 * estimate (weights + f16 KV cache, saturating) and the unload plan (fits as is; least recently
 * used idle targets first; never one in use or loading; refusal when even unloading every idle
 * one is not enough, or the model alone is over the budget; no budget = always fits).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "residency.h"

#define U SIPP__GW_RES_UNLOADED
#define L SIPP__GW_RES_LOADED
#define G SIPP__GW_RES_LOADING

static void footprint_is_weights_plus_kv(void **state) {
    (void)state;
    /* 2 (K,V) x 2 bytes x 5 layers x 64 embd x 256 ctx x 2 sequences */
    assert_int_equal(sipp__gw_res_footprint(1000, 5, 64, 256, 2), 1000 + 4ull * 5 * 64 * 256 * 2);
    assert_int_equal(sipp__gw_res_footprint(1000, 0, 64, 256, 2), 1000); /* layers unknown */
    assert_int_equal(sipp__gw_res_footprint(1000, 5, 64, 256, 0), 1000 + 4ull * 5 * 64 * 256);
    assert_true(sipp__gw_res_footprint(UINT64_MAX - 1, UINT32_MAX, UINT32_MAX, UINT32_MAX,
                                       UINT32_MAX) == UINT64_MAX);
}

static void layers_from_parameters_and_width(void **state) {
    (void)state;
    /* a 32-layer 4096-wide model: 12 x 4096^2 x 32 = 6.4e9 parameters in its blocks */
    assert_int_equal(sipp__gw_res_layers(12ull * 4096 * 4096 * 32 + 500000000ull, 4096), 34);
    assert_int_equal(sipp__gw_res_layers(1000, 4096), 1); /* tiny: at least one */
    assert_int_equal(sipp__gw_res_layers(1000, 0), 0);    /* width unknown: no KV counted */
}

static void used_counts_loaded_and_loading(void **state) {
    (void)state;
    sipp__gw_res_entry e[] = {{L, 10, 0, 1}, {G, 20, 0, 0}, {U, 40, 0, 0}};
    assert_int_equal(sipp__gw_res_used(e, 3), 30);
}

static void fits_without_unloading(void **state) {
    (void)state;
    sipp__gw_res_entry e[] = {{L, 10, 0, 1}, {U, 20, 0, 0}};
    size_t v[2], nv = 99;
    assert_true(sipp__gw_res_plan(e, 2, 1, 30, v, &nv));
    assert_int_equal(nv, 0);
    assert_true(sipp__gw_res_plan(e, 2, 1, 0, v, &nv)); /* no budget */
    assert_int_equal(nv, 0);
}

static void unloads_least_recently_used_first(void **state) {
    (void)state;
    /* budget 30: a(10, used at 5), b(10, used at 2), c(10, used at 9) loaded; d(20) wants in */
    sipp__gw_res_entry e[] = {{L, 10, 0, 5}, {L, 10, 0, 2}, {L, 10, 0, 9}, {U, 20, 0, 0}};
    size_t v[4], nv = 0;
    assert_true(sipp__gw_res_plan(e, 4, 3, 30, v, &nv));
    assert_int_equal(nv, 2);
    assert_int_equal(v[0], 1); /* b, the oldest */
    assert_int_equal(v[1], 0); /* then a */
}

static void never_unloads_one_in_use_or_loading(void **state) {
    (void)state;
    /* the LRU one (b) has a run in flight and c is loading: a goes, and that is enough */
    sipp__gw_res_entry e[] = {{L, 10, 0, 5}, {L, 10, 1, 2}, {G, 10, 0, 0}, {U, 10, 0, 0}};
    size_t v[4], nv = 0;
    assert_true(sipp__gw_res_plan(e, 4, 3, 30, v, &nv));
    assert_int_equal(nv, 1);
    assert_int_equal(v[0], 0);
    /* with a busy too, nothing can go: refused */
    e[0].in_use = 2;
    assert_false(sipp__gw_res_plan(e, 4, 3, 30, v, &nv));
    assert_int_equal(nv, 0);
}

static void refuses_a_model_over_the_whole_budget(void **state) {
    (void)state;
    sipp__gw_res_entry e[] = {{L, 10, 0, 1}, {U, 31, 0, 0}};
    size_t v[2], nv = 0;
    assert_false(sipp__gw_res_plan(e, 2, 1, 30, v, &nv));
    assert_int_equal(nv, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(footprint_is_weights_plus_kv),
        cmocka_unit_test(layers_from_parameters_and_width),
        cmocka_unit_test(used_counts_loaded_and_loading),
        cmocka_unit_test(fits_without_unloading),
        cmocka_unit_test(unloads_least_recently_used_first),
        cmocka_unit_test(never_unloads_one_in_use_or_loading),
        cmocka_unit_test(refuses_a_model_over_the_whole_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
