/*
 * request.c — the context of one public request (gw_req, gateway_int.h): its creation (request
 * id, client address), its answers (headers, JSON bodies, errors in the profile's envelope), its
 * token accounting against the rate limits, and finish(), where it ends.
 *
 * Sits between the listeners (listeners.c creates a context per request) and the pipeline
 * (phases.c, execute.c, stream.c act on it). Invariants: a context is finished exactly once,
 * by whoever holds it last: the handler for answers sent at once, the HTTP layer's release
 * callback for streamed ones. finish() releases the admission permit, settles the token
 * reservations, records metrics and the dashboard's entry and writes the request's log line,
 * in that order, then frees everything the context owns. Secrets never reach a log line.
 */
#define _GNU_SOURCE
#include "gateway_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char *sipp__gw_req_caller_name(const gw_req *r) {
    return r->caller >= 0 ? r->gw->callers[r->caller].cfg->caller : "anonymous";
}

static void make_request_id(gw_req *r) {
    const char *in = sipp__httpd_header_get(r->http, "x-request-id");
    if (in) {
        size_t n = strlen(in);
        bool ok = n > 0 && n <= 64;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)in[i] > 0x20 && (unsigned char)in[i] < 0x7f && in[i] != '"' &&
                 in[i] != '\\';
        if (ok) {
            memcpy(r->id, in, n + 1);
            return;
        }
    }
    uint8_t b[12];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        static atomic_ulong seq;
        unsigned long x = atomic_fetch_add(&seq, 1) ^ (unsigned long)(r->t0 * 1e6);
        memcpy(b, &x, sizeof x < sizeof b ? sizeof x : sizeof b);
    }
    char *p = r->id + sprintf(r->id, "req-");
    for (size_t i = 0; i < sizeof b; i++) p += sprintf(p, "%02x", b[i]);
}

gw_req *sipp__gw_req_new(sipp__gw *gw, sipp__httpd_req *http) {
    gw_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->gw = gw;
    r->http = http;
    r->t0 = sipp__gw_now();
    r->caller = -1;
    r->target = -1;
    r->replica = -1;
    r->op = GW_N_OPS;
    r->status = 200;
    sipp__buf_init(&r->out, SIZE_MAX);
    snprintf(r->method, sizeof r->method, "%s", sipp__httpd_method(http));
    snprintf(r->path, sizeof r->path, "%s", sipp__httpd_path(http));
    for (char *p = r->path; *p; p++) /* logged and quoted in messages: printable ASCII only */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
    for (char *p = r->method; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
    atomic_fetch_add(&gw->in_flight, 1);
    r->counted = true;
    make_request_id(r);
    return r;
}

bool sipp__gw_req_may_use(const gw_req *r, const char *target) {
    if (r->caller < 0) return true;
    const sipp__gw_token *t = r->gw->callers[r->caller].cfg;
    if (t->n_targets == 0) return true;
    for (size_t i = 0; i < t->n_targets; i++)
        if (strcmp(t->targets[i], target) == 0) return true;
    return false;
}

gw_answer sipp__gw_req_answer(const gw_req *r) {
    const gw_target *t = r->target >= 0 ? &r->gw->targets[r->target] : NULL;
    return (gw_answer){.op = r->op, .id = r->id, .model = t ? t->cfg->name : "",
                       .created = r->created, .in_tok = r->in_tok, .out_tok = r->out_tok,
                       .usage_known = t && t->cfg->type == SIPP__GW_LOCAL,
                       .include_usage = r->call.include_usage,
                       .logprobs_on = r->call.logprobs};
}

/* ---- answers ----------------------------------------------------------------------------------- */

size_t sipp__gw_req_headers(gw_req *r, sipp__httpd_header *h, const char *ctype, char *retry) {
    size_t n = 0;
    h[n++] = (sipp__httpd_header){"content-type", ctype};
    h[n++] = (sipp__httpd_header){"x-request-id", r->id};
    if (r->origin[0]) {
        h[n++] = (sipp__httpd_header){"access-control-allow-origin", r->origin};
        h[n++] = (sipp__httpd_header){"vary", "Origin"};
        h[n++] = (sipp__httpd_header){"access-control-expose-headers", "x-request-id, retry-after"};
    }
    if (r->retry_after) {
        snprintf(retry, 16, "%u", r->retry_after);
        h[n++] = (sipp__httpd_header){"retry-after", retry};
    }
    return n;
}

void sipp__gw_req_respond(gw_req *r, int status, json_t *body) {
    char *s = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    sipp__httpd_header h[10];
    char retry[16];
    size_t n = sipp__gw_req_headers(r, h, "application/json", retry);
    r->status = status;
    if (!s) {
        static const char oom[] =
            "{\"error\":{\"code\":\"execution\",\"message\":\"out of memory\"}}";
        sipp__httpd_respond(r->http, 500, h, n, oom, sizeof oom - 1);
        r->status = 500;
        return;
    }
    sipp__httpd_respond(r->http, status, h, n, s, strlen(s));
    free(s);
}

bool sipp__gw_req_fail(gw_req *r, gw_code code, const char *param, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->code = code;
    sipp__gw_req_respond(r, sipp__gw_code_status(code),
                         sipp__gw_codec(r->prof)->error(code, param, msg));
    return false;
}

/* ---- rate limits: keys and token reservations ------------------------------------------------ */

/* The per-IP limits' key: the address, or its /64 for IPv6 (policy.h). */
void sipp__gw_req_ip_key(const gw_req *r, char *buf, size_t cap) {
    sipp__gw_ip ip;
    if (!sipp__gw_ip_parse(r->client_ip, &ip)) memset(&ip, 0, sizeof ip);
    sipp__gw_ip_rate_key(&ip, buf, cap);
}

/* The token budgets (per minute) that apply to this request now; 0 = none. */
void sipp__gw_req_token_rates(gw_req *r, uint32_t *ip_tpm, uint32_t *caller_tpm) {
    sipp__gw *gw = r->gw;
    pthread_rwlock_rdlock(&gw->set_mu);
    *ip_tpm = gw->cfg.rate_limit_enabled ? gw->cfg.rate_limit_tpm : 0;
    *caller_tpm = r->caller >= 0 ? gw->cfg.tokens[r->caller].tokens_per_minute : 0;
    pthread_rwlock_unlock(&gw->set_mu);
}

/* The prompt's tokens at one token per byte (there is no tokenizer before the run; byte-level
 * tokenizers never make more tokens than bytes) plus an allowance for the template's and the
 * model's own tokens. */
static uint64_t prompt_estimate(const gw_call *c) {
    uint64_t n = 16;
    if (c->prompt) n += strlen(c->prompt);
    for (size_t i = 0; i < c->n_messages; i++)
        n += 8 + (c->messages[i].content ? strlen(c->messages[i].content) : 0);
    for (size_t i = 0; i < c->n_inputs; i++) n += 4 + (c->inputs[i] ? strlen(c->inputs[i]) : 0);
    return n;
}

/* libsipp's default max_tokens, which a request without one runs with. */
static uint32_t default_max_tokens(void) {
    sipp_text_params d;
    sipp_text_params_init(&d, sizeof d);
    return d.max_tokens;
}

/* Tokens a request may spend, reserved before it runs: its prompt estimate plus max_tokens (the
 * engine's default when absent). A request that uses more is charged the rest as debt. */
uint64_t sipp__gw_req_token_estimate(const gw_call *c) {
    uint64_t n = prompt_estimate(c);
    if (c->op != GW_OP_EMBED)
        n += c->has_max_tokens ? (c->max_tokens > 1000000 ? 1000000 : (uint64_t)c->max_tokens)
                               : default_max_tokens();
    return n;
}

/* Gives back what the request reserved and did not use, or charges what it used beyond. */
static void settle_tokens(gw_req *r) {
    uint32_t ip_tpm, caller_tpm;
    sipp__gw_req_token_rates(r, &ip_tpm, &caller_tpm);
    uint64_t used = r->in_tok + r->out_tok;
    /* A stream cut before its end (client gone, idle timeout) never got its usage: it is
     * charged what it generated so far plus its prompt estimate, not refunded whole. */
    if (r->call.stream && r->run && !r->ended) used += r->live_tokens + prompt_estimate(&r->call);
    if (ip_tpm) {
        char id[64];
        sipp__gw_req_ip_key(r, id, sizeof id);
        sipp__gw_limits_settle(r->gw->limits, SIPP__GW_SCOPE_IP, id, (sipp__gw_rate){ip_tpm, 0},
                               &r->hold[SIPP__GW_SCOPE_IP], used);
    }
    if (caller_tpm)
        sipp__gw_limits_settle(r->gw->limits, SIPP__GW_SCOPE_CALLER, sipp__gw_req_caller_name(r),
                               (sipp__gw_rate){caller_tpm, 0}, &r->hold[SIPP__GW_SCOPE_CALLER],
                               used);
}

/* ---- finish: permits, limits, metrics, log ---------------------------------------------------- */

void sipp__gw_req_finish(gw_req *r) {
    sipp__gw *gw = r->gw;
    double t = sipp__gw_now();
    sipp__gw_resident_release(r);
    if (r->permit) sipp__gw_admission_release(&gw->admission, r->caller >= 0 ? (size_t)r->caller
                                                                             : SIZE_MAX);
    settle_tokens(r);
    if (gw->admin && r->op != GW_N_OPS) {
        gw_done d = {.caller = r->caller, .target = r->target, .op = r->op, .status = r->status,
                     .code = r->code, .latency_ms = (t - r->t0) * 1000.0,
                     .ttft_ms = r->first_token > 0 ? (r->first_token - r->t0) * 1000.0 : -1,
                     .in_tok = r->in_tok, .out_tok = r->out_tok, .stream = r->call.stream};
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        d.t_end = (double)rt.tv_sec + rt.tv_nsec / 1e9;
        memcpy(d.id, r->id, sizeof d.id);
        sipp__gw_admin_done(gw->admin, r->live ? r : NULL, &d);
    }
    if (r->op != GW_N_OPS) {
        sipp__gw_metrics_request(gw->metrics, r->op, r->target, r->status, r->code, r->in_tok,
                                 r->out_tok);
        if (r->target >= 0 && r->status == 200)
            sipp__gw_metrics_observe_e2e(gw->metrics, r->target, t - r->t0);
    }
    json_t *x = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:f, s:I, s:I, s:b}", "request_id", r->id,
        "client_ip", r->client_ip, "caller", sipp__gw_req_caller_name(r), "method", r->method,
        "path", r->path, "operation", r->op < GW_N_OPS ? sipp__gw_op_name(r->op) : "", "target",
        r->target >= 0 ? gw->targets[r->target].cfg->name : "", "status", r->status, "code",
        sipp__gw_code_name(r->code), "latency_ms", (t - r->t0) * 1000.0, "input_tokens",
        (json_int_t)r->in_tok, "output_tokens", (json_int_t)r->out_tok, "stream", r->call.stream);
    if (x && r->client_gone) json_object_set_new(x, "client_gone", json_true());
    sipp__gw_log(r->status >= 500 ? "error" : "info", "request", x);
    json_decref(x);
    if (r->replica >= 0) /* an attempt cut short (the client left): says nothing of the replica */
        sipp__gw_pool_release(gw->targets[r->target].pool, r->replica, SIPP__POOL_NEUTRAL,
                              t - r->attempt_t0);
    if (r->run) sipp_run_free(r->run); /* cancels a run still going */
    json_decref(r->root);
    free(r->call.messages);
    free(r->call.inputs);
    sipp__gw_call_free_media(&r->call);
    sipp__buf_free(&r->out);
    sipp__gw_embed_writer_free(r->embed);
    if (r->counted) atomic_fetch_sub(&gw->in_flight, 1);
    free(r);
}

