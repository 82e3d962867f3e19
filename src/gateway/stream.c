/*
 * stream.c — SSE streams of text requests (`stream: true`): the HTTP layer pulls bytes from
 * here; between events this file waits on the run in 20 ms slices, sends `: ping` heartbeats
 * when nothing was written for sse_heartbeat_seconds, and watches for a hang-up and shutdown.
 *
 * The events themselves are the profile's (profiles.h: token / usage / done / error events of
 * the Sipp profile, OpenAI chunks ending in [DONE]); this file only decides when each is due.
 * Invariants: exactly one terminal event (done or error) ends a stream that was not cut; a
 * shutdown ends an open stream with a terminal `error` (cancelled) after cancelling its run;
 * a client gone or an idle timeout cancels the run and marks the request cancelled. finish()
 * runs once, from the release callback, also when the submission fails here.
 */
#define _GNU_SOURCE
#include "gateway_int.h"

#include <string.h>
#include <time.h>

/* The run ended: queues the terminal event, unless the attempt goes to another replica (no
 * token was streamed yet: sipp__gw_attempt_end) and the stream goes on with the new run. */
static void emit_end(gw_req *r) {
    const gw_codec *codec = sipp__gw_codec(r->prof);
    const sipp_response *resp;
    sipp_run_wait(r->run, &resp, NULL);
    if (sipp__gw_attempt_end(r, resp)) return;
    sipp__gw_account(r, resp);
    r->ended = true;
    if (resp->status != SIPP_OK) {
        r->code = sipp__gw_code_for_status(resp->status);
        codec->stream_error(&r->out, r->code, resp->error_message);
        return;
    }
    if (r->shutdown_cut) {
        r->code = GW_CANCELLED;
        codec->stream_error(&r->out, r->code, "the gateway is shutting down");
        return;
    }
    gw_answer ans = sipp__gw_req_answer(r);
    codec->stream_end(&r->out, &ans, &r->st, resp->finish_reason);
}

/* A stream whose model was not loaded (residency): waits for the load, or does it, then
 * submits the run. False: r->code and r->res_why say why (the stream's error event). */
static bool start_run(gw_req *r) {
    gw_code c = sipp__gw_resident_complete(r, r->res_why, sizeof r->res_why);
    if (c != GW_OK) {
        r->code = c;
        return false;
    }
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_status st = sipp__gw_submit_text(r, &err);
    if (st == SIPP_OK) return true;
    r->code = sipp__gw_code_for_status(st);
    snprintf(r->res_why, sizeof r->res_why, "%s", err.message);
    return false;
}

/* The HTTP layer's pull function: returns buffered bytes, or waits (20 ms slices) for the run,
 * a heartbeat deadline, a hang-up or shutdown. */
static long stream_pull(void *ctx, sipp__httpd_req *http, char *buf, size_t cap) {
    gw_req *r = ctx;
    r->http = http;
    for (;;) {
        if (r->out_off < r->out.len) {
            size_t n = r->out.len - r->out_off;
            if (n > cap) n = cap;
            memcpy(buf, r->out.data + r->out_off, n);
            r->out_off += n;
            if (r->out_off == r->out.len) {
                sipp__buf_reset(&r->out);
                r->out_off = 0;
            }
            r->last_write = sipp__gw_now();
            return (long)n;
        }
        if (r->ended) return 0;
        if (sipp__httpd_peer_closed(http)) {
            r->client_gone = true;
            if (r->run) sipp_run_cancel(r->run);
            return -1;
        }
        if (!r->run) { /* residency: the `: loading` comment went out; load, then submit */
            if (start_run(r)) continue;
            r->ended = true;
            sipp__gw_codec(r->prof)->stream_error(&r->out, r->code, r->res_why);
            continue;
        }
        if (atomic_load(&r->gw->shutting_down) && !r->shutdown_cut) {
            r->shutdown_cut = true;
            sipp_run_cancel(r->run); /* a run: pending ones got theirs above */
        }
        sipp_token_batch b = {.struct_size = sizeof b};
        if (sipp__gw_pull_batch(r, &b) == SIPP_OK) {
            if (b.len) {
                gw_answer ans = sipp__gw_req_answer(r);
                ans.logprobs = b.logprobs;
                ans.n_logprobs = b.n_logprobs;
                sipp__gw_codec(r->prof)->stream_text(&r->out, &ans, &r->st, b.text, b.len,
                                                     b.n_tokens);
            }
            if (b.done) emit_end(r);
        }
        if (r->out.len == 0 &&
            sipp__gw_now() - r->last_write >= r->gw->cfg.sse_heartbeat_seconds)
            sipp__buf_append(&r->out, ": ping\n\n", 8);
    }
}

static void stream_release(void *ctx, bool completed) {
    gw_req *r = ctx;
    if (!completed && !r->client_gone) r->client_gone = true; /* idle timeout or write error */
    if (r->run && !sipp_run_is_done(r->run)) sipp_run_cancel(r->run);
    if (!completed && r->code == GW_OK) r->code = GW_CANCELLED;
    sipp__gw_req_finish(r);
}

void sipp__gw_execute_stream(gw_req *r) {
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    bool loading = sipp__gw_resident_pending(r);
    /* residency: the model is not loaded yet; the stream starts with a `: loading` comment
     * and stream_pull loads it and submits the run */
    sipp_status st = loading ? SIPP_OK : sipp__gw_submit_text(r, &err);
    if (loading) sipp__buf_append(&r->out, ": loading\n\n", 12);
    if (st != SIPP_OK) {
        sipp__gw_req_fail(r, sipp__gw_code_for_status(st), NULL, "%s", err.message);
        sipp__gw_req_finish(r);
        return;
    }
    r->created = (long)time(NULL);
    r->last_write = sipp__gw_now();
    r->status = 200;
    sipp__httpd_header h[12];
    char retry[16];
    size_t n = sipp__gw_req_headers(r, h, "text/event-stream", retry);
    h[n++] = (sipp__httpd_header){"cache-control", "no-cache"};
    h[n++] = (sipp__httpd_header){"x-accel-buffering", "no"};
    sipp__httpd_stream(r->http, 200, h, n, stream_pull, stream_release, r);
}
