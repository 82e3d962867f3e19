/*
 * test_prefill_budget.c — the per-tick prefill budget (src/engine/prefill_budget.c) as pure
 * functions: the cost model learned from made-up tick times, and the budget it chooses from an
 * ITL target. Deterministic inputs only; nothing here reads a clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/prefill_budget.h"

/* A backend whose tick costs `fixed + per_token * n` ms. */
static void teach_linear(sipp__prefill_budget *m, double fixed, double per_token,
                         const uint32_t *sizes, size_t n_sizes, int rounds) {
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0; i < n_sizes; i++)
            sipp__pfb_observe(m, sizes[i], fixed + per_token * sizes[i]);
}

static void empty_model_predicts_nothing(void **state) {
    (void)state;
    sipp__prefill_budget m;
    sipp__pfb_init(&m, 100);
    assert_true(sipp__pfb_predict(&m, 64) < 0);
    /* zero tokens and non-positive times teach nothing */
    sipp__pfb_observe(&m, 0, 10);
    sipp__pfb_observe(&m, 8, 0);
    sipp__pfb_observe(&m, 8, -3);
    assert_true(sipp__pfb_predict(&m, 64) < 0);
}

static void learns_a_linear_backend(void **state) {
    (void)state;
    sipp__prefill_budget m;
    sipp__pfb_init(&m, 100);
    const uint32_t sizes[] = {4, 36, 132, 260};
    teach_linear(&m, 20, 2, sizes, 4, 1);
    /* on the observed points and between them: exact for a linear cost */
    assert_float_equal(sipp__pfb_predict(&m, 4), 28, 1e-9);
    assert_float_equal(sipp__pfb_predict(&m, 132), 284, 1e-9);
    assert_float_equal(sipp__pfb_predict(&m, 100), 220, 1e-9);
    /* above the largest point: the last slope */
    assert_float_equal(sipp__pfb_predict(&m, 400), 820, 1e-9);
    /* below the smallest: proportional */
    assert_float_equal(sipp__pfb_predict(&m, 2), 14, 1e-9);
}

static void newer_ticks_move_the_estimate(void **state) {
    (void)state;
    sipp__prefill_budget m;
    sipp__pfb_init(&m, 100);
    sipp__pfb_observe(&m, 64, 100);
    sipp__pfb_observe(&m, 64, 200); /* the backend got slower (longer contexts, a busy CPU) */
    double p = sipp__pfb_predict(&m, 64);
    assert_float_equal(p, 100 + SIPP__PFB_ALPHA * 100, 1e-9);
    for (int i = 0; i < 50; i++) sipp__pfb_observe(&m, 64, 200);
    assert_float_equal(sipp__pfb_predict(&m, 64), 200, 1e-3);
}

static void many_decode_ticks_keep_what_a_large_batch_costs(void **state) {
    (void)state;
    sipp__prefill_budget m;
    sipp__pfb_init(&m, 100);
    sipp__pfb_observe(&m, 512, 1044);
    for (int i = 0; i < 10000; i++) sipp__pfb_observe(&m, 4, 28);
    assert_float_equal(sipp__pfb_predict(&m, 512), 1044, 1e-9);
}

static void nobody_decoding_takes_the_whole_batch(void **state) {
    (void)state;
    sipp__prefill_budget m;
    sipp__pfb_init(&m, 10);
    assert_int_equal(sipp__pfb_budget(&m, 0, 512), 512);
    sipp__pfb_observe(&m, 512, 5000); /* however slow a tick is */
    assert_int_equal(sipp__pfb_budget(&m, 0, 512), 512);
}

static void budget_fits_the_target(void **state) {
    (void)state;
    sipp__prefill_budget m;
    sipp__pfb_init(&m, 300);
    const uint32_t sizes[] = {4, 68, 132, 260, 512};
    teach_linear(&m, 20, 2, sizes, 5, 3);
    /* 20 + 2n <= 300: n = 140 tokens in all, 4 of them decode tokens */
    assert_int_equal(sipp__pfb_budget(&m, 4, 512), 136);
    /* more decoders leave less room for the prompt */
    assert_int_equal(sipp__pfb_budget(&m, 16, 512), 124);
    /* a larger target buys a larger share, bounded by the batch */
    m.target_ms = 10000;
    assert_int_equal(sipp__pfb_budget(&m, 4, 512), 508);
    /* the decoders fill the batch: no room at all */
    assert_int_equal(sipp__pfb_budget(&m, 512, 512), 0);
}

static void a_slow_decode_step_still_lets_the_prompt_progress(void **state) {
    (void)state;
    sipp__prefill_budget m;
    sipp__pfb_init(&m, 50);
    const uint32_t sizes[] = {4, 68};
    teach_linear(&m, 80, 2, sizes, 2, 2); /* the decode step alone (88 ms) is over the target */
    /* the prompt may cost as much as the step: 80 + 2n <= 176, n = 48, 44 beside 4 decoders */
    assert_int_equal(sipp__pfb_budget(&m, 4, 512), 44);
    /* a step just over half the target: the same rule (2 x 40 ms beside 4 decoders) */
    sipp__pfb_init(&m, 70);
    teach_linear(&m, 32, 2, sizes, 2, 2);
    assert_int_equal(sipp__pfb_budget(&m, 4, 512), 20);
    /* and the floor: whatever the model says, 16 prompt tokens a tick */
    sipp__pfb_init(&m, 50);
    sipp__pfb_observe(&m, 4, 88);
    sipp__pfb_observe(&m, 8, 1000);
    assert_int_equal(sipp__pfb_budget(&m, 4, 512), SIPP__PFB_MIN_TOKENS);
}

static void unexplored_sizes_are_reached_a_doubling_at_a_time(void **state) {
    (void)state;
    sipp__prefill_budget m;
    sipp__pfb_init(&m, 1000);
    assert_int_equal(sipp__pfb_budget(&m, 4, 512), SIPP__PFB_COLD_TOKENS); /* nothing measured */
    sipp__pfb_observe(&m, 4, 8);
    /* one point: proportional 2 ms a token says 500 fit, but only 8 tokens were ever seen */
    assert_int_equal(sipp__pfb_budget(&m, 4, 512), SIPP__PFB_MIN_TOKENS);
    sipp__pfb_observe(&m, 20, 40);
    assert_int_equal(sipp__pfb_budget(&m, 4, 512), 36);
    sipp__pfb_observe(&m, 40, 80);
    assert_int_equal(sipp__pfb_budget(&m, 4, 512), 76);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_model_predicts_nothing),
        cmocka_unit_test(learns_a_linear_backend),
        cmocka_unit_test(newer_ticks_move_the_estimate),
        cmocka_unit_test(many_decode_ticks_keep_what_a_large_batch_costs),
        cmocka_unit_test(nobody_decoding_takes_the_whole_batch),
        cmocka_unit_test(budget_fits_the_target),
        cmocka_unit_test(a_slow_decode_step_still_lets_the_prompt_progress),
        cmocka_unit_test(unexplored_sizes_are_reached_a_doubling_at_a_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
