/*
 * prefill_budget.h — the per-tick prefill budget: how many prompt tokens a tick may carry while
 * other sequences decode, chosen from an inter-token latency (ITL) target and an online cost
 * model of the backend (time per tick as a function of the tokens in its batch).
 *
 * Pure functions of their inputs (no clock, no llama.cpp): the tick measures its own time and
 * feeds it in, so the model and the choice are unit-tested with made-up numbers
 * (tests/unit/test_prefill_budget.c). One model per engine, engine thread only.
 *
 * The model keeps, per power-of-two range of batch sizes (1, 2-3, 4-7, ... tokens), an
 * exponentially weighted mean of the batch size and of the tick time seen in that range, so
 * ticks of many decode-only steps do not wash out what a large batch costs. It predicts the time
 * of n tokens by interpolating between those points (proportionally below the smallest and
 * with the last slope above the largest). The budget is the largest batch whose predicted time
 * fits the target, minus the decode tokens, never more than twice the largest batch seen (it
 * explores upwards a doubling at a time) and never less than SIPP__PFB_MIN_TOKENS. When the
 * decode step alone is predicted to take more than half the target, the target becomes twice
 * the decode step: a prompt may cost as much as the step itself, so new requests are not
 * starved on a machine too slow (or too loaded) for the target.
 */
#ifndef SIPP_PREFILL_BUDGET_H
#define SIPP_PREFILL_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#define SIPP__PFB_BUCKETS 24        /* batch sizes up to 2^24 tokens */
#define SIPP__PFB_MIN_TOKENS 16u    /* prompt tokens a tick takes at least */
#define SIPP__PFB_COLD_TOKENS 64u   /* prompt tokens of a tick before any tick was measured */
#define SIPP__PFB_ALPHA 0.3         /* weight of a new tick in its range's means */

typedef struct sipp__pfb_point {
    double n, ms;   /* weighted means of batch size and tick time in this range */
    uint32_t count; /* ticks seen in this range (0: no data) */
} sipp__pfb_point;

typedef struct sipp__prefill_budget {
    double target_ms; /* the inter-token latency a decoding sequence should see */
    sipp__pfb_point pt[SIPP__PFB_BUCKETS];
} sipp__prefill_budget;

/* Starts an empty model with an ITL target in ms (> 0). */
void sipp__pfb_init(sipp__prefill_budget *m, double target_ms);
/* Learns from one tick: n_tokens in its batch (> 0) took ms. Ignores n_tokens == 0, ms <= 0. */
void sipp__pfb_observe(sipp__prefill_budget *m, uint32_t n_tokens, double ms);
/* Predicted time in ms of a tick of n tokens; < 0 when nothing was observed yet. */
double sipp__pfb_predict(const sipp__prefill_budget *m, uint32_t n_tokens);
/* Prompt tokens this tick may carry beside n_decoding decode tokens, in a batch of at most
 * n_max tokens: n_max - n_decoding when nobody decodes, else from the target (see above). */
uint32_t sipp__pfb_budget(const sipp__prefill_budget *m, uint32_t n_decoding, uint32_t n_max);

#endif
