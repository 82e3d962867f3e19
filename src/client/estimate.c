/*
 * estimate.c — routing estimates (include/sipp.h, "Routing signals and policy"): for a prepared
 * request, what its endpoint expects without running it.
 *
 * Local endpoints answer from the engine (exact token count, cached prefix for the key, load;
 * engine_estimate.c) and predict TTFT from what their own finished runs measured: the prefill
 * rate, the decode rate and, when no sequence is free, the mean time of a whole request for
 * each request ahead. Remote endpoints answer from their measured moving averages (TTFT, whole
 * request, decode rate, error and busy shares, health) and the prices the app configured.
 * Every figure carries its source; nothing unmeasured is made up.
 */
#define _POSIX_C_SOURCE 200809L
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void observe(void *ctx, const sipp_response *resp) {
    sipp__signals_record(ctx, resp, sipp__now_ms());
}

void sipp__endpoint_observe(sipp_endpoint *ep, sipp_run *run) {
    sipp__run_observe(run, observe, &ep->signals);
}

const char *sipp_figure_source_name(sipp_figure_source s) {
    switch (s) {
    case SIPP_FIGURE_MEASURED: return "measured";
    case SIPP_FIGURE_CONFIGURED: return "configured";
    case SIPP_FIGURE_PREDICTED: return "predicted";
    default: return "unknown";
    }
}

sipp_status sipp_endpoint_set_prices(sipp_endpoint *ep, double in, double out, sipp_error *err) {
    if (!ep) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "endpoint is required");
    if (in != in || out != out) /* NaN */
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "prices must be numbers");
    sipp__signals_set_prices(&ep->signals, in < 0 ? -1 : in, out < 0 ? -1 : out);
    return SIPP_OK;
}

/* Local TTFT: waiting for a sequence (when none is free: the mean whole-request time per
 * request ahead, shared by the sequences), the prefill at the measured rate, and one decode
 * step. Unknown until a run has measured the prefill rate. */
static sipp_figure predict_ttft(const sipp_estimate *e, const sipp__signals_view *v) {
    if (v->prefill_tok_s.source != SIPP_FIGURE_MEASURED || v->prefill_tok_s.value <= 0)
        return (sipp_figure){0, 0, SIPP_FIGURE_UNKNOWN};
    double ms = 1e3 * e->prefill_tokens / v->prefill_tok_s.value;
    if (v->decode_tok_s.source == SIPP_FIGURE_MEASURED && v->decode_tok_s.value > 0)
        ms += 1e3 / v->decode_tok_s.value;
    if (e->free_slots == 0) {
        if (v->total_ms.source != SIPP_FIGURE_MEASURED)
            return (sipp_figure){0, 0, SIPP_FIGURE_UNKNOWN};
        uint32_t lanes = e->running ? e->running : 1;
        ms += v->total_ms.value * (double)(e->queued + 1) / lanes;
    }
    return (sipp_figure){ms, v->prefill_tok_s.samples, SIPP_FIGURE_PREDICTED};
}

static sipp_status estimate(sipp_endpoint *ep, const char *prompt, const sipp_message *messages,
                            size_t n_messages, const sipp_text_params *params, sipp_estimate *out,
                            sipp_error *err) {
    if (!ep || !out) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "endpoint and out are required");
    sipp_estimate e = {.struct_size = sizeof e};
    sipp_text_params p = sipp__text_params_defaults();
    sipp_status st = SIPP_OK;
    if (params)
        st = sipp__params_in(&p, sizeof p, params, SIPP__FIRST_SIZE(text_params), "text params",
                             err);
    if (st != SIPP_OK) return st;
    if ((st = sipp__endpoint_enter(ep, err)) != SIPP_OK) return st;
    if (ep->kind == ENDPOINT_LOCAL) {
        char *rendered = NULL;
        if (messages)
            st = sipp__engine_render_chat(ep->engine, messages, n_messages, &rendered, err);
        if (st == SIPP_OK)
            st = sipp__engine_estimate(ep->engine, rendered ? rendered : prompt, &p, &e, err);
        free(rendered);
    } else {
        e.loaded = true;
    }
    sipp__endpoint_leave(ep);
    if (st != SIPP_OK) return st;

    sipp__signals_view v;
    sipp__signals_read(&ep->signals, sipp__now_ms(), &v);
    e.decode_tokens_per_s = v.decode_tok_s;
    e.total_ms = v.total_ms;
    e.price_input_per_mtok = v.price_in;
    e.price_output_per_mtok = v.price_out;
    e.error_rate = v.error_rate;
    e.busy_rate = v.busy_rate;
    if (e.local) {
        e.ttft_ms = predict_ttft(&e, &v);
    } else {
        e.ttft_ms = v.ttft_ms;
        e.healthy = v.healthy;
    }
    return sipp__struct_out(out, &e, sizeof e, SIPP__FIRST_SIZE(estimate), "sipp_estimate", err);
}

sipp_status sipp_estimate_query(sipp_endpoint *ep, const char *prompt,
                                const sipp_text_params *params, sipp_estimate *out,
                                sipp_error *err) {
    if (!prompt || !prompt[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "estimate: the prompt is empty");
    return estimate(ep, prompt, NULL, 0, params, out, err);
}

sipp_status sipp_estimate_chat(sipp_endpoint *ep, const sipp_message *messages, size_t n_messages,
                               const sipp_text_params *params, sipp_estimate *out,
                               sipp_error *err) {
    if (!messages || n_messages == 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "estimate: no messages");
    return estimate(ep, NULL, messages, n_messages, params, out, err);
}
