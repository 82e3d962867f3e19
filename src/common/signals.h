/*
 * signals.h — the local TTFT prediction from an endpoint's signals (signals.c), shared by the
 * native client's estimates (src/client/estimate.c) and the browser host's (web/wasm/sipp_wasm.c)
 * so that both predict with the same cost model.
 */
#ifndef SIPP_COMMON_SIGNALS_H
#define SIPP_COMMON_SIGNALS_H

#include "common_int.h"

/* Local TTFT for the request `e` describes (its prefill_tokens, free_slots, running, queued):
 * waiting for a sequence (when none is free: the mean whole-request time per request ahead,
 * shared by the sequences), the prefill at the measured rate, and one decode step. PREDICTED,
 * or UNKNOWN until a run has measured the prefill rate. */
sipp_figure sipp__signals_predict_ttft(const sipp_estimate *e, const sipp__signals_view *v);

#endif
