/*
 * signals.c — what an endpoint has measured of its own requests, for routing estimates
 * (include/sipp.h, "Routing signals and policy"): moving averages of TTFT, whole-request time
 * and rates, the share of recent requests that failed or were refused as busy, and whether
 * recent failures make a remote endpoint unhealthy.
 *
 * Fed by the run channel (run.c) when a run the client layer observes finishes; read by the
 * estimate calls. All functions lock `mu`: any thread.
 */
#define _POSIX_C_SOURCE 200809L
#include "common_int.h"

#include <string.h>

/* Weight of a new sample once there are enough of them; the first samples are averaged
 * plainly (weight 1/n), so a figure is a mean until it becomes a moving average. */
#define EWMA_WEIGHT 0.2
/* Unhealthy: this many failures in a row, the last one less than UNHEALTHY_FOR_MS ago. After
 * that a request goes through again (half-open); its outcome decides. */
#define UNHEALTHY_AFTER 3
#define UNHEALTHY_FOR_MS 30000.0

static void ewma(double *v, uint32_t *n, double x) {
    (*n)++;
    double w = 1.0 / *n > EWMA_WEIGHT ? 1.0 / *n : EWMA_WEIGHT;
    *v += w * (x - *v);
}

void sipp__signals_init(sipp__signals *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->price_in = s->price_out = -1;
}

void sipp__signals_destroy(sipp__signals *s) { pthread_mutex_destroy(&s->mu); }

/* Server-side failures: what a healthy peer does not do (not the caller's own mistakes). */
static bool is_failure(sipp_status st) {
    return st == SIPP_TRANSPORT || st == SIPP_UPSTREAM_TIMEOUT || st == SIPP_UPSTREAM_ERROR ||
           st == SIPP_OVERLOADED || st == SIPP_INTERNAL;
}

static bool is_busy(sipp_status st) {
    return st == SIPP_BUSY || st == SIPP_RATE_LIMITED || st == SIPP_OVERLOADED;
}

void sipp__signals_record(sipp__signals *s, const sipp_response *r, double now_ms) {
    if (r->status == SIPP_CANCELLED) return; /* says nothing about the endpoint */
    pthread_mutex_lock(&s->mu);
    double failed = is_failure(r->status) ? 1 : 0, busy = is_busy(r->status) ? 1 : 0;
    ewma(&s->error_rate, &s->n_outcomes, failed);
    s->n_outcomes--; /* one count for both rates */
    ewma(&s->busy_rate, &s->n_outcomes, busy);
    if (failed) {
        s->consecutive_failures++;
        s->last_failure_ms = now_ms;
    } else {
        s->consecutive_failures = 0;
    }
    const sipp_stats *st = r->stats;
    if (r->status == SIPP_OK && st) {
        if (st->ttft_ms > 0) ewma(&s->ttft_ms, &s->n_ttft, st->ttft_ms);
        if (st->total_ms > 0) ewma(&s->total_ms, &s->n_total, st->total_ms);
        if (st->decode_tok_s > 0) ewma(&s->decode_tok_s, &s->n_decode, st->decode_tok_s);
        if (st->prefill_tok_s > 0 && st->prefill_tokens >= 8)
            ewma(&s->prefill_tok_s, &s->n_prefill, st->prefill_tok_s);
    }
    pthread_mutex_unlock(&s->mu);
}

void sipp__signals_set_prices(sipp__signals *s, double in, double out) {
    pthread_mutex_lock(&s->mu);
    s->price_in = in;
    s->price_out = out;
    pthread_mutex_unlock(&s->mu);
}

static sipp_figure measured(double v, uint32_t n) {
    return n ? (sipp_figure){v, n, SIPP_FIGURE_MEASURED} : (sipp_figure){0, 0, SIPP_FIGURE_UNKNOWN};
}

static sipp_figure configured(double v) {
    return v >= 0 ? (sipp_figure){v, 0, SIPP_FIGURE_CONFIGURED}
                  : (sipp_figure){0, 0, SIPP_FIGURE_UNKNOWN};
}

void sipp__signals_read(sipp__signals *s, double now_ms, sipp__signals_view *out) {
    pthread_mutex_lock(&s->mu);
    out->ttft_ms = measured(s->ttft_ms, s->n_ttft);
    out->total_ms = measured(s->total_ms, s->n_total);
    out->decode_tok_s = measured(s->decode_tok_s, s->n_decode);
    out->prefill_tok_s = measured(s->prefill_tok_s, s->n_prefill);
    out->error_rate = measured(s->error_rate, s->n_outcomes);
    out->busy_rate = measured(s->busy_rate, s->n_outcomes);
    out->price_in = configured(s->price_in);
    out->price_out = configured(s->price_out);
    out->healthy = !(s->consecutive_failures >= UNHEALTHY_AFTER &&
                     now_ms - s->last_failure_ms < UNHEALTHY_FOR_MS);
    pthread_mutex_unlock(&s->mu);
}
