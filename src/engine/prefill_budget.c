/*
 * prefill_budget.c — the per-tick prefill budget from an ITL target and an online cost model
 * (prefill_budget.h says how the model works and what the budget is).
 *
 * Thread: none of its own; the engine thread owns its model. No allocation, no clock.
 */
#include "prefill_budget.h"

#include <stddef.h>
#include <string.h>

void sipp__pfb_init(sipp__prefill_budget *m, double target_ms) {
    memset(m, 0, sizeof *m);
    m->target_ms = target_ms;
}

static unsigned bucket_of(uint32_t n) {
    unsigned b = 0;
    while (n > 1 && b + 1 < SIPP__PFB_BUCKETS) {
        n >>= 1;
        b++;
    }
    return b;
}

void sipp__pfb_observe(sipp__prefill_budget *m, uint32_t n_tokens, double ms) {
    if (n_tokens == 0 || !(ms > 0)) return;
    sipp__pfb_point *p = &m->pt[bucket_of(n_tokens)];
    if (p->count == 0) {
        p->n = n_tokens;
        p->ms = ms;
    } else {
        p->n += SIPP__PFB_ALPHA * ((double)n_tokens - p->n);
        p->ms += SIPP__PFB_ALPHA * (ms - p->ms);
    }
    if (p->count < UINT32_MAX) p->count++;
}

double sipp__pfb_predict(const sipp__prefill_budget *m, uint32_t n_tokens) {
    const sipp__pfb_point *lo = NULL, *hi = NULL, *last = NULL, *prev = NULL;
    double n = n_tokens;
    for (unsigned b = 0; b < SIPP__PFB_BUCKETS; b++) {
        const sipp__pfb_point *p = &m->pt[b];
        if (p->count == 0) continue;
        if (p->n <= n) lo = p;
        if (p->n >= n && !hi) hi = p;
        prev = last;
        last = p;
    }
    if (!last) return -1;
    if (lo && hi) { /* between two points (or on one) */
        if (hi->n <= lo->n) return lo->ms > hi->ms ? lo->ms : hi->ms;
        return lo->ms + (hi->ms - lo->ms) * (n - lo->n) / (hi->n - lo->n);
    }
    if (!lo) return hi->ms * n / hi->n; /* below the smallest: proportional (a lower bound) */
    /* above the largest: the slope of the last two points, else (or when noise made it flat
     * or negative) the largest point's time per token, which overestimates and so is safe */
    double slope = last->ms / last->n;
    if (prev && last->n > prev->n) {
        double s = (last->ms - prev->ms) / (last->n - prev->n);
        if (s > 0) slope = s;
    }
    return last->ms + slope * (n - last->n);
}

uint32_t sipp__pfb_budget(const sipp__prefill_budget *m, uint32_t n_decoding, uint32_t n_max) {
    if (n_decoding >= n_max) return 0;
    uint32_t room = n_max - n_decoding;
    if (n_decoding == 0) return room;
    double largest = 0;
    for (unsigned b = 0; b < SIPP__PFB_BUCKETS; b++)
        if (m->pt[b].count > 0 && m->pt[b].n > largest) largest = m->pt[b].n;
    uint32_t take;
    if (largest == 0) {
        take = SIPP__PFB_COLD_TOKENS;
    } else {
        /* the largest total n with predict(n) <= target, explored at most a doubling ahead.
         * When the decode step alone takes more than half the target (a slow or overloaded
         * machine, where the target cannot be met anyway), a prompt may still cost as much as
         * the decode step: new requests are not starved to protect an unreachable target. */
        double target = m->target_ms, step = sipp__pfb_predict(m, n_decoding);
        if (2 * step > target) target = 2 * step;
        uint32_t cap = largest * 2 < (double)n_max ? (uint32_t)(largest * 2) : n_max;
        uint32_t n = cap;
        while (n > n_decoding && sipp__pfb_predict(m, n) > target) n--;
        take = n > n_decoding ? n - n_decoding : 0;
    }
    if (take < SIPP__PFB_MIN_TOKENS) take = SIPP__PFB_MIN_TOKENS;
    return take < room ? take : room;
}
