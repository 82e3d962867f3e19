/*
 * gateway.c — the gateway's pipeline and lifecycle (gateway.h).
 *
 * Every public request goes through the phases in the protocol's order, each one a function
 * that either passes or answers with an error:
 *
 *   blocklist -> Host and Origin (browsers, see "requests from browsers") -> rate limit
 *   (client IP) -> auth (bearer; then the caller's own limits) -> decode (413, framing,
 *   Content-Type, JSON depth, shape) -> authorize (caller's target list) ->
 *   resolve (target) -> validate (ranges, unknown and local-only keys, capability) ->
 *   admission (token reservation, global and per-caller concurrency) -> execute -> stream -> log
 *
 * A request runs on its connection's thread (see src/http/http_server.c for the threading
 * model). Finite requests wait on their run there in 20 ms slices, watching for a client
 * hang-up and shutdown; streams hand a pull function to the HTTP layer which does the same
 * between events. Whatever ends a request (answer sent, client gone, idle timeout, shutdown)
 * reaches finish(), which releases the admission permit, settles the token reservations,
 * records metrics and writes the log line, exactly once.
 *
 * Secrets: bearer secrets are read from their env vars once at start and kept only as SHA-256
 * digests (compared in constant time); provider keys are read by libsipp. No secret is ever
 * logged, echoed or rendered.
 */
#define _GNU_SOURCE
#include "gateway_int.h"

#include <errno.h>
#include <math.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- codes ----------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int status;
    const char *openai_type;
} CODES[GW_N_CODES] = {
    [GW_OK] = {"ok", 200, ""},
    [GW_BLOCKED] = {"blocked", 403, "permission_error"},
    [GW_RATE_LIMITED] = {"rate_limited", 429, "rate_limit_error"},
    [GW_AUTHENTICATION] = {"authentication", 401, "authentication_error"},
    [GW_INVALID_JSON] = {"invalid_json", 400, "invalid_request_error"},
    [GW_AUTHORIZATION] = {"authorization", 403, "permission_error"},
    [GW_RESOLUTION] = {"resolution", 404, "not_found_error"},
    [GW_ADMISSION] = {"admission", 429, "rate_limit_error"},
    [GW_INVALID_REQUEST] = {"invalidrequest", 400, "invalid_request_error"},
    [GW_EXECUTION] = {"execution", 500, "server_error"},
    [GW_CANCELLED] = {"cancelled", 408, "timeout_error"},
    [GW_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413, "invalid_request_error"},
    [GW_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405, "invalid_request_error"},
    [GW_NOT_FOUND] = {"not_found", 404, "not_found_error"},
    [GW_UNAVAILABLE] = {"unavailable", 503, "unavailable_error"},
    [GW_HOST_NOT_ALLOWED] = {"host_not_allowed", 403, "permission_error"},
    [GW_ORIGIN_NOT_ALLOWED] = {"origin_not_allowed", 403, "permission_error"},
    [GW_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", 415, "invalid_request_error"},
};

const char *sipp__gw_code_name(gw_code c) { return c < GW_N_CODES ? CODES[c].name : "internal"; }
int sipp__gw_code_status(gw_code c) { return c < GW_N_CODES ? CODES[c].status : 500; }

double sipp__gw_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- logging ----------------------------------------------------------------------------------- */

/* Log lines go through a bounded in-memory queue to one writer thread, so a request thread never
 * waits on stderr: when stderr is a pipe nobody reads (or a slow terminal, a full disk), the
 * writer blocks, the queue fills up to LOG_QUEUE_BYTES and further lines are dropped and counted
 * (sipp_log_dropped_lines_total; the writer reports the gap in a line of its own once it moves
 * again). The state is process-wide, like stderr; the writer starts with the first line and
 * lives until exit. sipp__gw_log_flush waits, with a bound, for the queue to empty. */
#define LOG_QUEUE_BYTES (1u << 20)

typedef struct log_line {
    struct log_line *next;
    size_t len;
    char text[];
} log_line;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t ready, idle;
    log_line *head, *tail;
    size_t bytes;
    bool writing;
    unsigned long unreported; /* dropped since the last "log lines dropped" line */
} lq = {.mu = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER,
        .idle = PTHREAD_COND_INITIALIZER};
static atomic_ulong log_dropped;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static bool log_threaded; /* set once, before any reader, under log_once */

/* write(2) on fd 2, not stdio: a writer stuck on a full pipe must not hold stderr's FILE lock,
 * which exit() takes to flush the streams (the process would never exit). */
static void log_write(const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void *log_writer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lq.mu);
    for (;;) {
        while (!lq.head) pthread_cond_wait(&lq.ready, &lq.mu);
        log_line *l = lq.head;
        lq.head = l->next;
        if (!lq.head) lq.tail = NULL;
        unsigned long gap = lq.unreported;
        lq.unreported = 0;
        lq.writing = true;
        pthread_mutex_unlock(&lq.mu);
        if (gap) {
            char note[160];
            int n = snprintf(note, sizeof note,
                             "{\"level\":\"warn\",\"msg\":\"log lines dropped\",\"dropped\":%lu}\n", gap);
            log_write(note, (size_t)n);
        }
        log_write(l->text, l->len);
        pthread_mutex_lock(&lq.mu);
        lq.bytes -= l->len;
        free(l);
        lq.writing = false;
        if (!lq.head) pthread_cond_broadcast(&lq.idle);
    }
    return NULL;
}

static void log_start(void) {
    sigset_t all, old; /* signals belong to the thread that sigwaits (apps/gateway) */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    log_threaded = pthread_create(&t, &a, log_writer, NULL) == 0;
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

unsigned long sipp__gw_log_dropped(void) { return atomic_load(&log_dropped); }

void sipp__gw_log_flush(double timeout_s) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout_s;
    until.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lq.mu);
    while ((lq.head || lq.writing) &&
           pthread_cond_timedwait(&lq.idle, &lq.mu, &until) == 0) {
    }
    pthread_mutex_unlock(&lq.mu);
}

void sipp__gw_log(const char *level, const char *msg, void *extra) {
    json_t *line = json_object();
    if (!line) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    json_object_set_new(line, "ts", json_string(when));
    json_object_set_new(line, "level", json_string(level));
    json_object_set_new(line, "msg", json_string(msg));
    if (extra) json_object_update(line, (json_t *)extra);
    char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (!s) return;
    size_t n = strlen(s);
    pthread_once(&log_once, log_start);
    if (!log_threaded) { /* no writer thread: write in place, as before */
        pthread_mutex_lock(&lq.mu);
        log_write(s, n);
        log_write("\n", 1);
        pthread_mutex_unlock(&lq.mu);
        free(s);
        return;
    }
    log_line *l = malloc(sizeof *l + n + 1);
    if (l) {
        memcpy(l->text, s, n);
        l->text[n] = '\n';
        l->len = n + 1;
        l->next = NULL;
    }
    free(s);
    pthread_mutex_lock(&lq.mu);
    if (!l || lq.bytes + (l ? l->len : 0) > LOG_QUEUE_BYTES) {
        lq.unreported++;
        atomic_fetch_add(&log_dropped, 1);
        pthread_mutex_unlock(&lq.mu);
        free(l);
        return;
    }
    lq.bytes += l->len;
    if (lq.tail) lq.tail->next = l;
    else lq.head = l;
    lq.tail = l;
    pthread_cond_signal(&lq.ready);
    pthread_mutex_unlock(&lq.mu);
}

/* ---- the request context --------------------------------------------------------------------- */

typedef struct gw_req {
    sipp__gw *gw;
    sipp__httpd_req *http;
    gw_profile prof;
    gw_op op;
    double t0;
    char id[72];
    char client_ip[64];
    char origin[256]; /* the Origin when it is allowed, else "" */
    char method[16];
    char path[256]; /* copies: the HTTP request is gone when a stream is released */
    int caller; /* index into gw->callers, -1 = anonymous (no [[tokens]]) */
    int target; /* index into gw->targets, -1 = none resolved */
    json_t *root;
    gw_call call;
    bool permit;
    bool counted; /* in gw->in_flight */
    int status;
    gw_code code;
    uint32_t retry_after;
    uint64_t in_tok, out_tok;
    sipp__gw_hold hold[SIPP__GW_N_SCOPES]; /* tokens reserved at admission, settled by finish */
    /* execution */
    sipp_run *run;
    double first_token, last_token;
    uint32_t sequence;
    bool client_gone, shutdown_cut;
    bool live; /* listed among the dashboard's live requests */
    uint64_t live_tokens;
    /* streaming */
    char *out;
    size_t out_len, out_off, out_cap;
    double last_write;
    bool ended; /* the terminal event is queued */
    bool role_sent;
    long created;
    sipp__gw_embed_writer *embed; /* an embeddings answer being sent */
} gw_req;

static const char *caller_name(const gw_req *r) {
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

/* ---- answers ----------------------------------------------------------------------------------- */

/* Common headers: request id and CORS. Returns how many were written to h (room for 8). */
static size_t base_headers(gw_req *r, sipp__httpd_header *h, const char *ctype, char *retry) {
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

static void respond_json(gw_req *r, int status, json_t *body) {
    char *s = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    sipp__httpd_header h[10];
    char retry[16];
    size_t n = base_headers(r, h, "application/json", retry);
    r->status = status;
    if (!s) {
        static const char oom[] = "{\"error\":{\"code\":\"execution\",\"message\":\"out of memory\"}}";
        sipp__httpd_respond(r->http, 500, h, n, oom, sizeof oom - 1);
        r->status = 500;
        return;
    }
    sipp__httpd_respond(r->http, status, h, n, s, strlen(s));
    free(s);
}

/* Answers with an error in the envelope of the request's profile. Returns false, so phases can
 * `return fail_with(...)`. */
__attribute__((format(printf, 4, 5))) static bool fail_with(gw_req *r, gw_code code,
                                                           const char *param, const char *fmt,
                                                           ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->code = code;
    json_t *err;
    if (r->prof == GW_PROFILE_OPENAI)
        err = json_pack("{s:s, s:s, s:o, s:s}", "message", msg, "type", CODES[code].openai_type,
                        "param", param && *param ? json_string(param) : json_null(), "code",
                        CODES[code].name);
    else
        err = json_pack("{s:s, s:s}", "code", CODES[code].name, "message", msg);
    respond_json(r, CODES[code].status, json_pack("{s:o}", "error", err));
    return false;
}

/* ---- rate limits: keys and token reservations ------------------------------------------------ */

/* The per-IP limits' key: the address, or its /64 for IPv6 (policy.h). */
static void ip_rate_id(const gw_req *r, char *buf, size_t cap) {
    sipp__gw_ip ip;
    if (!sipp__gw_ip_parse(r->client_ip, &ip)) memset(&ip, 0, sizeof ip);
    sipp__gw_ip_rate_key(&ip, buf, cap);
}

/* The token budgets (per minute) that apply to this request now; 0 = none. */
static void token_rates(gw_req *r, uint32_t *ip_tpm, uint32_t *caller_tpm) {
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
static uint64_t token_estimate(const gw_call *c) {
    uint64_t n = prompt_estimate(c);
    if (c->op != GW_OP_EMBED)
        n += c->has_max_tokens ? (c->max_tokens > 1000000 ? 1000000 : (uint64_t)c->max_tokens)
                               : default_max_tokens();
    return n;
}

/* Gives back what the request reserved and did not use, or charges what it used beyond. */
static void settle_tokens(gw_req *r) {
    uint32_t ip_tpm, caller_tpm;
    token_rates(r, &ip_tpm, &caller_tpm);
    uint64_t used = r->in_tok + r->out_tok;
    /* A stream cut before its end (client gone, idle timeout) never got its usage: it is
     * charged what it generated so far plus its prompt estimate, not refunded whole. */
    if (r->call.stream && r->run && !r->ended) used += r->live_tokens + prompt_estimate(&r->call);
    if (ip_tpm) {
        char id[64];
        ip_rate_id(r, id, sizeof id);
        sipp__gw_limits_settle(r->gw->limits, SIPP__GW_SCOPE_IP, id, (sipp__gw_rate){ip_tpm, 0},
                               &r->hold[SIPP__GW_SCOPE_IP], used);
    }
    if (caller_tpm)
        sipp__gw_limits_settle(r->gw->limits, SIPP__GW_SCOPE_CALLER, caller_name(r),
                               (sipp__gw_rate){caller_tpm, 0}, &r->hold[SIPP__GW_SCOPE_CALLER],
                               used);
}

/* ---- finish: permits, limits, metrics, log ---------------------------------------------------- */

static void finish(gw_req *r) {
    sipp__gw *gw = r->gw;
    double t = sipp__gw_now();
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
        if (r->target >= 0 && r->status == 200) sipp__gw_metrics_observe_e2e(gw->metrics, r->target, t - r->t0);
    }
    json_t *x = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:f, s:I, s:I, s:b}",
                          "request_id", r->id, "client_ip", r->client_ip, "caller", caller_name(r),
                          "method", r->method, "path", r->path, "operation",
                          r->op < GW_N_OPS ? sipp__gw_op_name(r->op) : "",
                          "target", r->target >= 0 ? gw->targets[r->target].cfg->name : "",
                          "status", r->status, "code", CODES[r->code].name, "latency_ms",
                          (t - r->t0) * 1000.0, "input_tokens", (json_int_t)r->in_tok,
                          "output_tokens", (json_int_t)r->out_tok, "stream", r->call.stream);
    if (x && r->client_gone) json_object_set_new(x, "client_gone", json_true());
    sipp__gw_log(r->status >= 500 ? "error" : "info", "request", x);
    json_decref(x);
    if (r->run) sipp_run_free(r->run); /* cancels a run still going */
    json_decref(r->root);
    free(r->call.messages);
    free(r->call.inputs);
    free(r->out);
    sipp__gw_embed_writer_free(r->embed);
    if (r->counted) atomic_fetch_sub(&gw->in_flight, 1);
    free(r);
}

/* ---- phases ------------------------------------------------------------------------------------ */

typedef struct route_info {
    gw_profile prof;
    gw_op op;
    const char *method;
} route_info;

static bool match_route(sipp__gw *gw, const char *path, route_info *out) {
    static const route_info by_slot[] = {
        [SIPP__GW_R_QUERY] = {GW_PROFILE_SIPP, GW_OP_QUERY, "POST"},
        [SIPP__GW_R_CHAT] = {GW_PROFILE_SIPP, GW_OP_CHAT, "POST"},
        [SIPP__GW_R_EMBED] = {GW_PROFILE_SIPP, GW_OP_EMBED, "POST"},
        [SIPP__GW_R_CHAT_COMPLETIONS] = {GW_PROFILE_OPENAI, GW_OP_CHAT, "POST"},
        [SIPP__GW_R_COMPLETIONS] = {GW_PROFILE_OPENAI, GW_OP_QUERY, "POST"},
        [SIPP__GW_R_EMBEDDINGS] = {GW_PROFILE_OPENAI, GW_OP_EMBED, "POST"},
        [SIPP__GW_R_MODELS] = {GW_PROFILE_OPENAI, GW_OP_MODELS, "GET"},
    };
    for (size_t s = 0; s <= SIPP__GW_R_MODELS; s++)
        if (strcmp(gw->cfg.routes[s], path) == 0) {
            *out = by_slot[s];
            return true;
        }
    return false;
}

static bool phase_blocklist(gw_req *r, const sipp__gw_ip *ip) {
    pthread_rwlock_rdlock(&r->gw->set_mu);
    bool blocked = sipp__gw_cidr_list_match(r->gw->blocklist, r->gw->n_blocklist, ip);
    pthread_rwlock_unlock(&r->gw->set_mu);
    if (blocked) return fail_with(r, GW_BLOCKED, NULL, "the client address is blocked");
    return true;
}

static bool store_down(gw_req *r) {
    r->retry_after = 1;
    return fail_with(r, GW_UNAVAILABLE, NULL,
                     "the rate-limit store is unreachable; retry shortly");
}

static bool phase_rate_limit_ip(gw_req *r) {
    sipp__gw_config *c = &r->gw->cfg;
    pthread_rwlock_rdlock(&r->gw->set_mu);
    bool on = c->rate_limit_enabled;
    sipp__gw_rate req = {c->rate_limit_rpm, c->rate_limit_burst}, tok = {c->rate_limit_tpm, 0};
    pthread_rwlock_unlock(&r->gw->set_mu);
    if (!on) return true;
    char id[64];
    ip_rate_id(r, id, sizeof id);
    uint32_t wait = 0;
    int rc = sipp__gw_limits_take(r->gw->limits, SIPP__GW_SCOPE_IP, id, req, tok, &wait);
    if (rc < 0) return store_down(r);
    if (rc == 0) {
        r->retry_after = wait;
        return fail_with(r, GW_RATE_LIMITED, NULL,
                         "rate limit of this client address reached; retry in %u s", wait);
    }
    return true;
}

/* Credentials in the URL end up in access logs, proxies and browser history: a request that
 * carries one in its query string is refused, whatever the token, even on an open gateway. */
static bool phase_no_url_credentials(gw_req *r) {
    static const char *const names[] = {"access_token", "api_key", "apikey", "api-key", "key",
                                        "token", "auth", "authorization", "bearer", NULL};
    for (const char *const *n = names; *n; n++)
        if (sipp__httpd_has_query_arg(r->http, *n))
            return fail_with(r, GW_AUTHENTICATION, NULL,
                             "credentials in the query string ('%s') are not accepted; send "
                             "'Authorization: Bearer <token>'", *n);
    return true;
}

static bool phase_auth(gw_req *r) {
    sipp__gw *gw = r->gw;
    if (!phase_no_url_credentials(r)) return false;
    if (gw->n_callers == 0) return true; /* no [[tokens]]: an open gateway */
    const char *h = sipp__httpd_header_get(r->http, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return fail_with(r, GW_AUTHENTICATION, NULL, "missing 'Authorization: Bearer' header");
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    uint8_t d[32];
    SHA256((const unsigned char *)tok, strlen(tok), d);
    int found = -1;
    for (size_t i = 0; i < gw->n_callers; i++) /* every digest is compared: no early exit */
        if (sipp__gw_digest_equal(d, gw->callers[i].digest)) found = (int)i;
    if (found < 0) return fail_with(r, GW_AUTHENTICATION, NULL, "unknown bearer token");
    r->caller = found;
    const sipp__gw_token *t = gw->callers[found].cfg;
    pthread_rwlock_rdlock(&gw->set_mu);
    sipp__gw_rate req = {t->requests_per_minute, 0}, tpm = {t->tokens_per_minute, 0};
    pthread_rwlock_unlock(&gw->set_mu);
    if (req.per_minute || tpm.per_minute) {
        uint32_t wait = 0;
        int rc =
            sipp__gw_limits_take(gw->limits, SIPP__GW_SCOPE_CALLER, t->caller, req, tpm, &wait);
        if (rc < 0) return store_down(r);
        if (rc == 0) {
            r->retry_after = wait;
            return fail_with(r, GW_RATE_LIMITED, NULL,
                             "rate limit of caller '%s' reached; retry in %u s", t->caller, wait);
        }
    }
    return true;
}

static bool phase_decode(gw_req *r) {
    const char *why;
    int rej = sipp__httpd_rejected(r->http, &why);
    if (rej == 413)
        return fail_with(r, GW_PAYLOAD_TOO_LARGE, NULL, "the request body is larger than %llu bytes",
                         (unsigned long long)r->gw->cfg.max_request_bytes);
    if (rej) return fail_with(r, GW_INVALID_JSON, NULL, "%s", why);
    /* Only JSON: a browser sends text/plain, form and header-less bodies cross-site without a
     * CORS preflight, application/json never. */
    if (!sipp__gw_is_json_type(sipp__httpd_header_get(r->http, "content-type")))
        return fail_with(r, GW_UNSUPPORTED_MEDIA_TYPE, NULL,
                         "the body must be sent with 'Content-Type: application/json'");
    size_t len;
    const char *body = sipp__httpd_body(r->http, &len);
    char msg[256], param[64];
    if (!sipp__gw_decode_body(r->prof, r->op, body, len, r->gw->cfg.max_json_depth, &r->root,
                              &r->call, msg, sizeof msg, param, sizeof param))
        return fail_with(r, GW_INVALID_JSON, param, "%s", msg);
    return true;
}

static bool caller_may_use(const gw_req *r, const char *target) {
    if (r->caller < 0) return true;
    const sipp__gw_token *t = r->gw->callers[r->caller].cfg;
    if (t->n_targets == 0) return true;
    for (size_t i = 0; i < t->n_targets; i++)
        if (strcmp(t->targets[i], target) == 0) return true;
    return false;
}

static bool phase_authorize(gw_req *r) {
    if (!caller_may_use(r, r->call.model))
        return fail_with(r, GW_AUTHORIZATION, "model", "caller '%s' may not use target '%.128s'",
                         caller_name(r), r->call.model);
    return true;
}

static bool phase_resolve(gw_req *r) {
    sipp__gw *gw = r->gw;
    for (size_t i = 0; i < gw->n_targets; i++)
        if (strcmp(gw->targets[i].cfg->name, r->call.model) == 0) {
            int st = atomic_load(&gw->targets[i].state);
            r->target = (int)i;
            if (st == GW_TARGET_LOADING) {
                r->retry_after = 1;
                return fail_with(r, GW_UNAVAILABLE, "model", "target '%s' is still loading",
                                 gw->targets[i].cfg->name);
            }
            if (st == GW_TARGET_FAILED)
                return fail_with(r, GW_EXECUTION, "model", "target '%s' failed to load",
                                 gw->targets[i].cfg->name);
            return true;
        }
    return fail_with(r, GW_RESOLUTION, "model", "unknown target '%.128s'", r->call.model);
}

/* The cap on one embeddings request: inputs x dimensions within max_embedding_floats (the
 * answer's float array is 4 bytes a float and its text ~12). Answers 400 naming the limit. */
static bool embed_fits(gw_req *r, uint32_t dim) {
    uint64_t need = (uint64_t)r->call.n_inputs * dim, max = r->gw->cfg.max_embedding_floats;
    if (need <= max) return true;
    return fail_with(r, GW_INVALID_REQUEST, "input",
                     "%zu input(s) x %u dimensions = %llu floats is more than this gateway's "
                     "max_embedding_floats (%llu)",
                     r->call.n_inputs, dim, (unsigned long long)need, (unsigned long long)max);
}

static bool phase_validate(gw_req *r) {
    gw_call *c = &r->call;
    if (c->invalid[0]) return fail_with(r, GW_INVALID_REQUEST, c->invalid_param, "%s", c->invalid);
    gw_target *t = &r->gw->targets[r->target];
    if (c->op == GW_OP_EMBED && !t->can_embed)
        return fail_with(r, GW_INVALID_REQUEST, "model", "target '%s' cannot embed", t->cfg->name);
    if (c->op == GW_OP_EMBED && t->n_embd && !embed_fits(r, t->n_embd)) return false;
    if (c->op == GW_OP_QUERY && !t->can_generate)
        return fail_with(r, GW_INVALID_REQUEST, "model", "target '%s' cannot generate text",
                         t->cfg->name);
    if (c->op == GW_OP_CHAT && !t->can_chat)
        return fail_with(r, GW_INVALID_REQUEST, "model", "target '%s' has no chat template",
                         t->cfg->name);
    return true;
}

/* Reserves the request's tokens from the per-IP and the caller's token budgets, so parallel
 * requests cannot all spend the same budget; finish() settles. */
static bool phase_reserve(gw_req *r) {
    uint32_t ip_tpm, caller_tpm;
    token_rates(r, &ip_tpm, &caller_tpm);
    if (!ip_tpm && !caller_tpm) return true;
    uint64_t need = token_estimate(&r->call);
    uint32_t wait = 0;
    int rc = 1;
    if (ip_tpm) {
        char id[64];
        ip_rate_id(r, id, sizeof id);
        rc = sipp__gw_limits_reserve(r->gw->limits, SIPP__GW_SCOPE_IP, id,
                                     (sipp__gw_rate){ip_tpm, 0}, need,
                                     &r->hold[SIPP__GW_SCOPE_IP], &wait);
    }
    if (rc == 1 && caller_tpm)
        rc = sipp__gw_limits_reserve(r->gw->limits, SIPP__GW_SCOPE_CALLER, caller_name(r),
                                     (sipp__gw_rate){caller_tpm, 0}, need,
                                     &r->hold[SIPP__GW_SCOPE_CALLER], &wait);
    if (rc < 0) return store_down(r);
    if (rc == 0) {
        r->retry_after = wait;
        return fail_with(r, GW_RATE_LIMITED, NULL,
                         "token budget reached (this request reserves up to %llu tokens); retry "
                         "in %u s", (unsigned long long)need, wait);
    }
    return true;
}

static bool phase_admission(gw_req *r) {
    if (!phase_reserve(r)) return false;
    if (!sipp__gw_admission_acquire(&r->gw->admission,
                                    r->caller >= 0 ? (size_t)r->caller : SIZE_MAX)) {
        r->retry_after = 1;
        return fail_with(r, GW_ADMISSION, NULL, "too many requests in flight; retry shortly");
    }
    r->permit = true;
    return true;
}

/* ---- execution --------------------------------------------------------------------------------- */

/* Maps a submission or run failure. */
static gw_code code_for_status(sipp_status st) {
    switch (st) {
    case SIPP_INVALID_ARGUMENT:
    case SIPP_UNSUPPORTED:
    case SIPP_CONTEXT_OVERFLOW: return GW_INVALID_REQUEST;
    case SIPP_BUSY: return GW_ADMISSION;
    case SIPP_CANCELLED:
    case SIPP_DEADLINE_EXCEEDED: return GW_CANCELLED;
    default: return GW_EXECUTION;
    }
}

static sipp_status submit_text(gw_req *r, sipp_error *err) {
    gw_target *t = &r->gw->targets[r->target];
    gw_call *c = &r->call;
    sipp_text_params tp;
    sipp_text_params_init(&tp, sizeof tp);
    if (c->has_max_tokens) tp.max_tokens = c->max_tokens > 1000000 ? 1000000 : (uint32_t)c->max_tokens;
    if (c->has_temperature) tp.temperature = (float)c->temperature;
    if (c->has_top_p) tp.top_p = (float)c->top_p;
    tp.stop = c->stop;
    tp.n_stop = c->n_stop;
    tp.request_id = r->id; /* providers get the same x-request-id as the caller */
    char scope[200];
    if (t->cfg->type == SIPP__GW_LOCAL) {
        /* Prefix reuse per caller, never across callers: one workflow key per caller, scoped
         * by the caller's name (the engine keys KV state by scope + key). With
         * cache.scope_header, per end user: the scope is "<caller> <SHA-256 of the header>"
         * (caller names have no spaces, so no scope collides with another caller's; the
         * digest keeps user ids out of snapshot files). Without the header: no key, so the
         * request reuses nothing and leaves nothing for others. */
        const char *hdr = r->gw->cfg.cache_scope_header;
        const char *who = hdr ? sipp__httpd_header_get(r->http, hdr) : NULL;
        if (!hdr) {
            tp.cache_scope = caller_name(r);
            tp.context_key = "gateway";
        } else if (who && *who) {
            uint8_t d[32];
            SHA256((const unsigned char *)who, strlen(who), d);
            int n = snprintf(scope, sizeof scope, "%s ", caller_name(r));
            for (size_t i = 0; i < sizeof d && n > 0 && (size_t)n + 2 < sizeof scope; i++)
                n += snprintf(scope + n, sizeof scope - (size_t)n, "%02x", d[i]);
            tp.cache_scope = scope;
            tp.context_key = "gateway";
        }
        tp.ignore_eos = t->cfg->runtime.ignore_eos;
    }
    return c->op == GW_OP_CHAT ? sipp_chat(t->ep, c->messages, c->n_messages, &tp, &r->run, err)
                               : sipp_query(t->ep, c->prompt, &tp, &r->run, err);
}

/* Pulls what the run produced within ~20 ms. Returns the batch (text may be empty). Records
 * TTFT and inter-token gaps. */
static sipp_status pull_batch(gw_req *r, sipp_token_batch *b) {
    *b = (sipp_token_batch){.struct_size = sizeof *b};
    sipp_status st = sipp_run_next(r->run, 20, b, NULL);
    if (st == SIPP_OK && b->n_tokens > 0) {
        double t = sipp__gw_now();
        if (r->first_token == 0) {
            r->first_token = t;
            sipp__gw_metrics_observe_ttft(r->gw->metrics, r->target, t - r->t0);
        } else {
            sipp__gw_metrics_observe_itl(r->gw->metrics, r->target, t - r->last_token);
        }
        r->last_token = t;
        r->live_tokens += b->n_tokens;
        if (r->live)
            sipp__gw_admin_live_update(r->gw->admin, r, r->target, r->op, r->call.stream,
                                       r->live_tokens);
    }
    return st;
}

static void account(gw_req *r, const sipp_response *resp) {
    r->in_tok += resp->usage->input_tokens;
    r->out_tok += resp->usage->output_tokens;
    if (resp->stats->queue_ms > 0)
        sipp__gw_metrics_observe_queue(r->gw->metrics, r->target, resp->stats->queue_ms / 1000.0);
}

static json_t *usage_json(const gw_req *r, bool openai) {
    if (openai)
        return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)r->in_tok,
                         "completion_tokens", (json_int_t)r->out_tok, "total_tokens",
                         (json_int_t)(r->in_tok + r->out_tok));
    return json_pack("{s:I, s:I, s:I}", "input_tokens", (json_int_t)r->in_tok, "output_tokens",
                     (json_int_t)r->out_tok, "total_tokens", (json_int_t)(r->in_tok + r->out_tok));
}

static const char *finish_name(sipp_finish_reason f) {
    return f == SIPP_FINISH_LENGTH ? "length" : f == SIPP_FINISH_CANCELLED ? "cancelled" : "stop";
}

static void execute_finite_text(gw_req *r) {
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_status st = submit_text(r, &err);
    if (st != SIPP_OK) {
        fail_with(r, code_for_status(st), NULL, "%s", err.message);
        return;
    }
    sipp_token_batch b = {.struct_size = sizeof b};
    for (;;) {
        if (pull_batch(r, &b) == SIPP_OK && b.done) break;
        if (sipp__httpd_peer_closed(r->http)) {
            r->client_gone = true;
            sipp_run_cancel(r->run);
        } else if (atomic_load(&r->gw->shutting_down) && !r->shutdown_cut) {
            r->shutdown_cut = true;
            sipp_run_cancel(r->run);
        }
    }
    const sipp_response *resp;
    sipp_run_wait(r->run, &resp, NULL);
    account(r, resp);
    if (resp->status != SIPP_OK) {
        fail_with(r, code_for_status(resp->status), NULL, "%s", resp->error_message);
        return;
    }
    if (resp->finish_reason == SIPP_FINISH_CANCELLED) {
        fail_with(r, GW_CANCELLED, NULL, r->shutdown_cut ? "the gateway is shutting down"
                                                         : "the run was cancelled");
        return;
    }
    const char *model = r->gw->targets[r->target].cfg->name;
    json_t *body;
    if (r->prof == GW_PROFILE_SIPP) {
        body = json_pack("{s:s, s:s, s:s%, s:s, s:o}", "id", r->id, "model", model, "text",
                         resp->text, resp->text_len, "finish_reason",
                         finish_name(resp->finish_reason), "usage", usage_json(r, false));
    } else if (r->op == GW_OP_CHAT) {
        char id[96];
        snprintf(id, sizeof id, "chatcmpl-%s", r->id);
        body = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s%}, s:n, s:s}], s:o}", "id", id,
                         "object", "chat.completion", "created", (json_int_t)time(NULL), "model",
                         model, "choices", "index", 0, "message", "role", "assistant", "content",
                         resp->text, resp->text_len, "logprobs", "finish_reason",
                         finish_name(resp->finish_reason), "usage", usage_json(r, true));
    } else {
        char id[96];
        snprintf(id, sizeof id, "cmpl-%s", r->id);
        body = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:s%, s:n, s:s}], s:o}", "id", id, "object",
                         "text_completion", "created", (json_int_t)time(NULL), "model", model,
                         "choices", "index", 0, "text", resp->text, resp->text_len, "logprobs",
                         "finish_reason", finish_name(resp->finish_reason), "usage",
                         usage_json(r, true));
    }
    if (!body) {
        fail_with(r, GW_EXECUTION, NULL, "the answer could not be encoded (invalid UTF-8?)");
        return;
    }
    respond_json(r, 200, body);
}

static long embed_pull(void *ctx, sipp__httpd_req *http, char *buf, size_t cap) {
    (void)http;
    gw_req *r = ctx;
    return (long)sipp__gw_embed_writer_read(r->embed, buf, cap);
}

static void embed_release(void *ctx, bool completed) {
    gw_req *r = ctx;
    if (!completed) {
        r->client_gone = true; /* write error or idle timeout */
        if (r->code == GW_OK) r->code = GW_CANCELLED;
    }
    finish(r);
}

/* Runs the inputs one after the other into one float array (bounded by max_embedding_floats),
 * then streams the answer out through the writer (profiles.c) in the HTTP layer's blocks:
 * never a JSON tree of every float nor a copy of the whole text. Everything that can fail
 * (a run, the cap when the size is only known from the first vector, a NaN) fails before the
 * status line. Returns true when the answer streams (finish() then runs at its release). */
static bool execute_embed(gw_req *r) {
    gw_target *t = &r->gw->targets[r->target];
    float *vecs = NULL;
    uint32_t dim = 0;
    sipp_embed_params ep;
    sipp_embed_params_init(&ep, sizeof ep);
    ep.request_id = r->id;
    for (size_t i = 0; i < r->call.n_inputs; i++) {
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        sipp_run *run = NULL;
        sipp_status st = sipp_embed(t->ep, r->call.inputs[i], &ep, &run, &err);
        if (st != SIPP_OK) {
            free(vecs);
            return fail_with(r, code_for_status(st), "input", "%s", err.message);
        }
        const sipp_response *resp;
        r->run = run;
        while (!sipp_run_is_done(run)) {
            sipp_token_batch b = {.struct_size = sizeof b};
            if (sipp_run_next(run, 20, &b, NULL) == SIPP_OK && b.done) break;
            if (sipp__httpd_peer_closed(r->http)) {
                r->client_gone = true;
                sipp_run_cancel(run);
            } else if (atomic_load(&r->gw->shutting_down)) {
                r->shutdown_cut = true;
                sipp_run_cancel(run);
            }
        }
        sipp_run_wait(run, &resp, NULL);
        account(r, resp);
        if (resp->status != SIPP_OK || !resp->embedding) {
            free(vecs);
            bool failed = resp->status != SIPP_OK;
            return fail_with(r, failed ? code_for_status(resp->status) : GW_CANCELLED, NULL, "%s",
                             failed ? resp->error_message : "cancelled");
        }
        if (i == 0) { /* a provider's size is known only now */
            dim = resp->n_embd;
            if (!embed_fits(r, dim)) return false;
            vecs = malloc((r->call.n_inputs * dim + 1) * sizeof *vecs);
            if (!vecs) return fail_with(r, GW_EXECUTION, NULL, "out of memory");
        } else if (resp->n_embd != dim) {
            free(vecs);
            return fail_with(r, GW_EXECUTION, NULL, "the target answered vectors of %u and %u "
                             "dimensions in one request", dim, resp->n_embd);
        }
        if (!sipp__gw_embed_finite(resp->embedding, dim)) {
            free(vecs);
            return fail_with(r, GW_EXECUTION, NULL,
                             "the target produced a NaN or infinite embedding value");
        }
        memcpy(vecs + i * dim, resp->embedding, dim * sizeof *vecs);
        sipp_run_free(run);
        r->run = NULL;
    }
    r->embed = sipp__gw_embed_writer_new(r->prof, r->call.base64, r->id, t->cfg->name, r->in_tok,
                                         r->out_tok, vecs, r->call.n_inputs, dim);
    if (!r->embed) return fail_with(r, GW_EXECUTION, NULL, "out of memory");
    r->status = 200;
    sipp__httpd_header h[10];
    char retry[16];
    size_t n = base_headers(r, h, "application/json", retry);
    sipp__httpd_stream(r->http, 200, h, n, embed_pull, embed_release, r);
    return true;
}

/* ---- streaming --------------------------------------------------------------------------------- */

static bool out_append(gw_req *r, const char *s, size_t n) {
    if (r->out_len + n > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap * 2 : 4096;
        while (cap < r->out_len + n) cap *= 2;
        char *p = realloc(r->out, cap);
        if (!p) return false;
        r->out = p;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_len, s, n);
    r->out_len += n;
    return true;
}

/* Appends one SSE frame: `event: NAME\n` (Sipp profile) then `data: JSON\n\n`. Takes `data`. */
static void frame(gw_req *r, const char *event, json_t *data) {
    char *s = data ? json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(data);
    if (!s) return;
    if (event) {
        out_append(r, "event: ", 7);
        out_append(r, event, strlen(event));
        out_append(r, "\n", 1);
    }
    out_append(r, "data: ", 6);
    out_append(r, s, strlen(s));
    out_append(r, "\n\n", 2);
    free(s);
}

static json_t *openai_chunk(gw_req *r, json_t *choice) {
    char id[96];
    snprintf(id, sizeof id, r->op == GW_OP_CHAT ? "chatcmpl-%s" : "cmpl-%s", r->id);
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", id, "object",
                     r->op == GW_OP_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)r->created, "model", r->gw->targets[r->target].cfg->name,
                     "choices", choice ? json_pack("[o]", choice) : json_array());
}

static void emit_text(gw_req *r, const char *text, size_t len, uint32_t n_tokens) {
    if (r->prof == GW_PROFILE_SIPP) {
        frame(r, "token", json_pack("{s:s%, s:I}", "text", text, len, "sequence",
                                    (json_int_t)r->sequence));
    } else if (r->op == GW_OP_CHAT) {
        json_t *delta = r->role_sent ? json_pack("{s:s%}", "content", text, len)
                                     : json_pack("{s:s, s:s%}", "role", "assistant", "content",
                                                 text, len);
        r->role_sent = true;
        frame(r, NULL, openai_chunk(r, json_pack("{s:i, s:o, s:n, s:n}", "index", 0, "delta", delta,
                                                 "logprobs", "finish_reason")));
    } else {
        frame(r, NULL, openai_chunk(r, json_pack("{s:i, s:s%, s:n, s:n}", "index", 0, "text", text,
                                                 len, "logprobs", "finish_reason")));
    }
    r->sequence += n_tokens;
}

static void emit_error(gw_req *r, gw_code code, const char *msg) {
    r->code = code;
    if (r->prof == GW_PROFILE_SIPP)
        frame(r, "error", json_pack("{s:{s:s, s:s}}", "error", "code", CODES[code].name, "message",
                                    msg));
    else
        frame(r, NULL, json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", msg, "type",
                                 CODES[code].openai_type, "param", "code", CODES[code].name));
    r->ended = true;
}

static void emit_end(gw_req *r) {
    const sipp_response *resp;
    sipp_run_wait(r->run, &resp, NULL);
    account(r, resp);
    r->ended = true;
    if (resp->status != SIPP_OK) {
        emit_error(r, code_for_status(resp->status), resp->error_message);
        return;
    }
    if (r->shutdown_cut) {
        emit_error(r, GW_CANCELLED, "the gateway is shutting down");
        return;
    }
    bool local = r->gw->targets[r->target].cfg->type == SIPP__GW_LOCAL;
    const char *fin = finish_name(resp->finish_reason);
    if (r->prof == GW_PROFILE_SIPP) {
        if (local || r->in_tok + r->out_tok > 0) frame(r, "usage", usage_json(r, false));
        frame(r, "done", json_pack("{s:s}", "finish_reason", fin));
        return;
    }
    if (strcmp(fin, "cancelled") == 0) fin = "stop";
    json_t *choice;
    if (r->op == GW_OP_CHAT)
        choice = json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "delta",
                           r->role_sent ? json_object()
                                        : json_pack("{s:s, s:s}", "role", "assistant", "content", ""),
                           "logprobs", "finish_reason", fin);
    else
        choice = json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", "", "logprobs",
                           "finish_reason", fin);
    frame(r, NULL, openai_chunk(r, choice));
    if (r->call.include_usage) {
        json_t *chunk = openai_chunk(r, NULL);
        json_object_set_new(chunk, "usage", usage_json(r, true));
        frame(r, NULL, chunk);
    }
    out_append(r, "data: [DONE]\n\n", 14);
}

/* The HTTP layer's pull function: returns buffered bytes, or waits (20 ms slices) for the run,
 * a heartbeat deadline, a hang-up or shutdown. */
static long stream_pull(void *ctx, sipp__httpd_req *http, char *buf, size_t cap) {
    gw_req *r = ctx;
    r->http = http;
    for (;;) {
        if (r->out_off < r->out_len) {
            size_t n = r->out_len - r->out_off;
            if (n > cap) n = cap;
            memcpy(buf, r->out + r->out_off, n);
            r->out_off += n;
            if (r->out_off == r->out_len) r->out_off = r->out_len = 0;
            r->last_write = sipp__gw_now();
            return (long)n;
        }
        if (r->ended) return 0;
        if (sipp__httpd_peer_closed(http)) {
            r->client_gone = true;
            sipp_run_cancel(r->run);
            return -1;
        }
        if (atomic_load(&r->gw->shutting_down) && !r->shutdown_cut) {
            r->shutdown_cut = true;
            sipp_run_cancel(r->run);
        }
        sipp_token_batch b = {.struct_size = sizeof b};
        if (pull_batch(r, &b) == SIPP_OK) {
            if (b.len) emit_text(r, b.text, b.len, b.n_tokens);
            if (b.done) emit_end(r);
        }
        if (r->out_len == 0 &&
            sipp__gw_now() - r->last_write >= r->gw->cfg.sse_heartbeat_seconds)
            out_append(r, ": ping\n\n", 8);
    }
}

static void stream_release(void *ctx, bool completed) {
    gw_req *r = ctx;
    if (!completed && !r->client_gone) r->client_gone = true; /* idle timeout or write error */
    if (r->run && !sipp_run_is_done(r->run)) sipp_run_cancel(r->run);
    if (!completed && r->code == GW_OK) r->code = GW_CANCELLED;
    finish(r);
}

static void execute_stream(gw_req *r) {
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_status st = submit_text(r, &err);
    if (st != SIPP_OK) {
        fail_with(r, code_for_status(st), NULL, "%s", err.message);
        finish(r);
        return;
    }
    r->created = (long)time(NULL);
    r->last_write = sipp__gw_now();
    r->status = 200;
    sipp__httpd_header h[12];
    char retry[16];
    size_t n = base_headers(r, h, "text/event-stream", retry);
    h[n++] = (sipp__httpd_header){"cache-control", "no-cache"};
    h[n++] = (sipp__httpd_header){"x-accel-buffering", "no"};
    sipp__httpd_stream(r->http, 200, h, n, stream_pull, stream_release, r);
}

/* ---- /v1/models ---------------------------------------------------------------------------------- */

static void answer_models(gw_req *r) {
    json_t *data = json_array();
    for (size_t i = 0; i < r->gw->n_targets; i++) {
        const sipp__gw_target *t = r->gw->targets[i].cfg;
        if (!caller_may_use(r, t->name)) continue;
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", t->name, "object",
                                              "model", "created", (json_int_t)0, "owned_by", "sipp",
                                              "type", sipp__gw_target_type_name(t->type)));
    }
    respond_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* ---- requests from browsers: Host and Origin ---------------------------------------------------
 *
 * A page the user visits can send requests to a gateway on the user's loopback or LAN; CORS only
 * stops it from reading most answers, not from causing effects. Two tricks matter:
 *  - DNS rebinding: the page's own name is re-resolved to 127.0.0.1, so its requests are
 *    same-origin for the browser and carry `Host: attacker.example`. Refused by the Host rule
 *    of browser.c (on loopback binds, or whenever allowed_hosts is set).
 *  - plain cross-site requests (forms, `fetch` with a "simple" content type): they carry an
 *    Origin. A present Origin must be in allowed_origins or be the listener's own origin (the
 *    admin page posting to its own API); `null` and any other value are refused on every route.
 * Clients that are not browsers send no Origin and a Host naming what they connected to. */

gw_code sipp__gw_browser_check(sipp__gw *gw, int which, sipp__httpd_req *http,
                               const char **listed) {
    if (listed) *listed = NULL;
    const char *host = sipp__httpd_header_get(http, "host");
    if (!sipp__gw_host_ok(&gw->hosts[which], host)) return GW_HOST_NOT_ALLOWED;
    const char *origin = sipp__httpd_header_get(http, "origin");
    if (!origin) return GW_OK;
    for (size_t i = 0; i < gw->cfg.n_allowed_origins; i++)
        if (strcmp(gw->cfg.allowed_origins[i], origin) == 0) {
            if (listed) *listed = gw->cfg.allowed_origins[i];
            return GW_OK;
        }
    return sipp__gw_same_origin(origin, host) ? GW_OK : GW_ORIGIN_NOT_ALLOWED;
}

const char *sipp__gw_browser_message(gw_code c) {
    return c == GW_HOST_NOT_ALLOWED
               ? "the Host header names neither this gateway's address nor localhost (DNS "
                 "rebinding?); list the name in allowed_hosts to serve it"
               : "this Origin is not in allowed_origins";
}

sipp__gw_ip sipp__gw_request_ip(sipp__gw *gw, sipp__httpd_req *http) {
    sipp__gw_ip peer;
    if (!sipp__gw_ip_parse(sipp__httpd_peer(http), &peer)) memset(&peer, 0, sizeof peer);
    const char *fwd = gw->cfg.client_ip_source == SIPP__GW_IP_X_FORWARDED_FOR
                          ? sipp__httpd_header_get(http, "x-forwarded-for")
                      : gw->cfg.client_ip_source == SIPP__GW_IP_X_REAL_IP
                          ? sipp__httpd_header_get(http, "x-real-ip")
                          : NULL;
    return sipp__gw_client_ip(&peer, fwd, gw->cfg.client_ip_source == SIPP__GW_IP_X_FORWARDED_FOR,
                              gw->trusted, gw->n_trusted);
}

/* ---- the public listener ------------------------------------------------------------------------- */

static void handle_public(sipp__httpd_req *http, void *ud) {
    sipp__gw *gw = ud;
    gw_req *r = calloc(1, sizeof *r);
    if (!r) return; /* the HTTP layer answers 500 */
    r->gw = gw;
    r->http = http;
    r->t0 = sipp__gw_now();
    r->caller = -1;
    r->target = -1;
    r->op = GW_N_OPS;
    r->status = 200;
    snprintf(r->method, sizeof r->method, "%s", sipp__httpd_method(http));
    snprintf(r->path, sizeof r->path, "%s", sipp__httpd_path(http));
    for (char *p = r->path; *p; p++) /* logged and quoted in messages: printable ASCII only */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
    for (char *p = r->method; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
    atomic_fetch_add(&gw->in_flight, 1);
    r->counted = true;
    make_request_id(r);

    sipp__gw_ip client = sipp__gw_request_ip(gw, http);
    sipp__gw_ip_format(&client, r->client_ip, sizeof r->client_ip);
    const char *origin = NULL;
    gw_code browser = sipp__gw_browser_check(gw, GW_PUBLIC, http, &origin);
    if (origin) snprintf(r->origin, sizeof r->origin, "%s", origin);

    route_info ri;
    bool known = match_route(gw, sipp__httpd_path(http), &ri);
    if (known) {
        r->prof = ri.prof;
        r->op = ri.op;
    }
    if (!phase_blocklist(r, &client)) goto done;
    if (browser != GW_OK) {
        fail_with(r, browser, NULL, "%s", sipp__gw_browser_message(browser));
        goto done;
    }
    if (strcmp(r->method, "OPTIONS") == 0 &&
        sipp__httpd_header_get(http, "access-control-request-method")) {
        if (!origin) { /* no Origin, or the listener's own: nothing to grant */
            fail_with(r, GW_ORIGIN_NOT_ALLOWED, NULL, "%s",
                      sipp__gw_browser_message(GW_ORIGIN_NOT_ALLOWED));
            goto done;
        }
        sipp__httpd_header h[] = {
            {"access-control-allow-origin", origin},
            {"vary", "Origin"},
            {"access-control-allow-methods", "GET, POST, OPTIONS"},
            {"access-control-allow-headers", "authorization, content-type, x-request-id"},
            {"access-control-max-age", "600"},
            {"x-request-id", r->id},
        };
        r->status = 204;
        sipp__httpd_respond(http, 204, h, sizeof h / sizeof h[0], "", 0);
        goto done;
    }
    if (!known) {
        fail_with(r, GW_NOT_FOUND, NULL, "no route %.200s", r->path);
        goto done;
    }
    if (strcmp(r->method, ri.method) != 0) {
        fail_with(r, GW_METHOD_NOT_ALLOWED, NULL, "%.200s takes %s", r->path, ri.method);
        goto done;
    }
    if (atomic_load(&gw->shutting_down)) {
        r->retry_after = 1;
        fail_with(r, GW_UNAVAILABLE, NULL, "the gateway is shutting down");
        goto done;
    }
    if (!phase_rate_limit_ip(r) || !phase_auth(r)) goto done;
    if (gw->admin) {
        sipp__gw_admin_live_add(gw->admin, r, r->id, r->caller);
        r->live = true;
    }
    if (r->op == GW_OP_MODELS) {
        answer_models(r);
        goto done;
    }
    if (!phase_decode(r) || !phase_authorize(r) || !phase_resolve(r) || !phase_validate(r) ||
        !phase_admission(r))
        goto done;
    if (r->live) sipp__gw_admin_live_update(gw->admin, r, r->target, r->op, r->call.stream, 0);
    if (r->op == GW_OP_EMBED) {
        if (execute_embed(r)) return; /* finish() runs when the answer is released */
    } else if (r->call.stream) {
        execute_stream(r); /* finish() runs when the stream is released */
        return;
    } else
        execute_finite_text(r);
done:
    finish(r);
}

/* ---- the management listener --------------------------------------------------------------------- */

static void handle_mgmt(sipp__httpd_req *http, void *ud) {
    sipp__gw *gw = ud;
    const char *path = sipp__httpd_path(http);
    const char *method = sipp__httpd_method(http);
    sipp__httpd_header text = {"content-type", "text/plain; charset=utf-8"};
    gw_code browser = sipp__gw_browser_check(gw, GW_MGMT, http, NULL);
    if (browser != GW_OK) { /* every route: /metrics and the dashboard included */
        json_t *e = json_pack("{s:{s:s, s:s}}", "error", "code", sipp__gw_code_name(browser),
                              "message", sipp__gw_browser_message(browser));
        char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
        sipp__httpd_header j = {"content-type", "application/json"};
        sipp__httpd_respond(http, 403, &j, 1, s ? s : "", s ? strlen(s) : 0);
        free(s);
        return;
    }
    int slot = -1;
    for (int s = SIPP__GW_R_HEALTHZ; s <= SIPP__GW_R_METRICS; s++)
        if (strcmp(gw->cfg.routes[s], path) == 0) slot = s;
    const char *admin = gw->cfg.routes[SIPP__GW_R_ADMIN];
    size_t alen = strlen(admin);
    if (alen > 1 && admin[alen - 1] == '/') alen--; /* "/admin" and "/admin/..." */
    if (slot < 0 && strncmp(path, admin, alen) == 0 && (path[alen] == '\0' || path[alen] == '/')) {
        sipp__gw_admin_handle(gw, http);
        return;
    }
    if (slot < 0) {
        static const char nf[] = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such route\"}}";
        sipp__httpd_header j = {"content-type", "application/json"};
        sipp__httpd_respond(http, 404, &j, 1, nf, sizeof nf - 1);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char na[] =
            "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"use GET\"}}";
        sipp__httpd_header j[] = {{"content-type", "application/json"}, {"allow", "GET"}};
        sipp__httpd_respond(http, 405, j, 2, na, sizeof na - 1);
        return;
    }
    if (slot == SIPP__GW_R_HEALTHZ) {
        sipp__httpd_respond(http, 200, &text, 1, "ok", 2);
    } else if (slot == SIPP__GW_R_READYZ) {
        bool loading = false, failed = false, stalled = false;
        for (size_t i = 0; i < gw->n_targets; i++) {
            int st = atomic_load(&gw->targets[i].state);
            loading |= st == GW_TARGET_LOADING;
            failed |= st == GW_TARGET_FAILED;
            sipp_engine_stats es;
            sipp_engine_stats_init(&es, sizeof es);
            stalled |= sipp__gw_target_stats(gw, i, &es) && es.stalled;
        }
        if (atomic_load(&gw->shutting_down))
            sipp__httpd_respond(http, 503, &text, 1, "shutting down", 13);
        else if (loading)
            sipp__httpd_respond(http, 503, &text, 1, "loading", 7);
        else if (failed)
            sipp__httpd_respond(http, 503, &text, 1, "a target failed to load", 23);
        else if (stalled)
            sipp__httpd_respond(http, 503, &text, 1, "a target's engine is stalled", 28);
        else
            sipp__httpd_respond(http, 200, &text, 1, "ready", 5);
    } else {
        char *s = sipp__gw_metrics_render(gw->metrics, gw);
        sipp__httpd_header h = {"content-type", "text/plain; version=0.0.4; charset=utf-8"};
        if (s) sipp__httpd_respond(http, 200, &h, 1, s, strlen(s));
        else sipp__httpd_respond(http, 500, &text, 1, "out of memory", 13);
        free(s);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------------ */

bool sipp__gw_target_stats(sipp__gw *gw, size_t i, sipp_engine_stats *out) {
    if (i >= gw->n_targets || gw->targets[i].cfg->type != SIPP__GW_LOCAL ||
        atomic_load(&gw->targets[i].state) != GW_TARGET_READY)
        return false;
    sipp_engine_stats_init(out, sizeof *out);
    return sipp_endpoint_get_stats(gw->targets[i].ep, out, NULL) == SIPP_OK;
}

static void set_caps(gw_target *t) {
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    if (sipp_endpoint_get_info(t->ep, &info, NULL) == SIPP_OK) {
        t->can_generate = info.can_generate;
        t->can_chat = info.can_chat;
        t->can_embed = info.can_embed;
        t->n_embd = info.can_embed ? info.n_embd : 0;
    }
}

static void *loader_main(void *arg) {
    sipp__gw *gw = arg;
    for (size_t i = 0; i < gw->n_targets; i++) {
        gw_target *t = &gw->targets[i];
        if (t->cfg->type != SIPP__GW_LOCAL) continue;
        const sipp__gw_runtime *rt = &t->cfg->runtime;
        sipp_local_params lp;
        sipp_local_params_init(&lp, sizeof lp);
        lp.model_path = t->cfg->model;
        lp.sha256 = t->cfg->sha256;
        lp.n_ctx = rt->n_ctx;
        lp.n_batch = rt->n_batch;
        lp.n_parallel = rt->n_parallel;
        lp.n_threads = rt->n_threads;
        lp.n_gpu_layers = rt->n_gpu_layers;
        lp.max_running = rt->max_running;
        lp.max_queued = rt->max_queued;
        lp.tick_budget = rt->tick_budget;
        lp.prefill_chunk = rt->prefill_chunk;
        lp.stream_buffer_bytes = rt->stream_buffer_bytes;
        lp.context_shift = rt->context_shift;
        lp.n_keep = rt->n_keep;
        lp.stall_alarm_ms = rt->stall_alarm_ms;
        lp.cache_ram_bytes = rt->cache ? rt->cache_ram_bytes : SIPP_CACHE_DISABLED;
        lp.cache_dir = rt->cache_dir;
        lp.cache_disk_bytes = rt->cache_disk_bytes;
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        double t0 = sipp__gw_now();
        if (atomic_load(&gw->shutting_down)) break;
        if (sipp_client_add_local(gw->client, t->cfg->name, &lp, &t->ep, &err) != SIPP_OK) {
            json_t *x = json_pack("{s:s, s:s}", "target", t->cfg->name, "error", err.message);
            sipp__gw_log("error", "target failed to load", x);
            json_decref(x);
            atomic_store(&t->state, GW_TARGET_FAILED);
            continue;
        }
        set_caps(t);
        atomic_store(&t->state, GW_TARGET_READY);
        json_t *x = json_pack("{s:s, s:f}", "target", t->cfg->name, "load_ms",
                              (sipp__gw_now() - t0) * 1000.0);
        sipp__gw_log("info", "target ready", x);
        json_decref(x);
    }
    return NULL;
}

/* Registers a provider target (synchronously: nothing is sent until the first request). */
static int add_provider(sipp__gw *gw, gw_target *t, char *errbuf, size_t errcap) {
    sipp_provider_params pp;
    sipp_provider_params_init(&pp, sizeof pp);
    switch (t->cfg->type) {
    case SIPP__GW_OPENAI:
        pp.kind = SIPP_PROVIDER_OPENAI;
        pp.api_key_env = t->cfg->api_key_env;
        break;
    case SIPP__GW_OPENAI_COMPATIBLE:
        pp.kind = SIPP_PROVIDER_OPENAI_COMPATIBLE;
        pp.api_key_env = t->cfg->token_env; /* NULL: no key */
        break;
    case SIPP__GW_ANTHROPIC:
        pp.kind = SIPP_PROVIDER_ANTHROPIC;
        pp.api_key_env = t->cfg->api_key_env;
        pp.version = t->cfg->version; /* NULL: the library's default */
        break;
    default: snprintf(errbuf, errcap, "target '%s': not a provider", t->cfg->name); return -1;
    }
    pp.model = t->cfg->model;
    pp.base_url = t->cfg->base_url;
    pp.allow_private_network = t->cfg->allow_private_network;
    if (t->cfg->timeout_seconds) pp.request_timeout_ms = t->cfg->timeout_seconds * 1000u;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_add_provider(gw->client, t->cfg->name, &pp, &t->ep, &err) != SIPP_OK) {
        snprintf(errbuf, errcap, "target '%s': %s", t->cfg->name, err.message);
        return -1;
    }
    set_caps(t);
    atomic_store(&t->state, GW_TARGET_READY);
    return 0;
}

static int parse_cidrs(char **in, size_t n, sipp__gw_cidr **out) {
    *out = calloc(n + 1, sizeof **out);
    if (!*out) return -1;
    for (size_t i = 0; i < n; i++)
        if (!sipp__gw_cidr_parse(in[i], &(*out)[i])) return -1;
    return 0;
}

int sipp__gw_new(sipp__gw_config *cfg, sipp__gw **out, char *errbuf, size_t errcap) {
    *out = NULL;
    sipp__gw *gw = calloc(1, sizeof *gw);
    if (!gw) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    gw->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    sipp__gw_config *c = &gw->cfg;
    pthread_rwlock_init(&gw->set_mu, NULL);
    *out = gw;
    sipp__gw_redis *redis = NULL;
    if (c->redis_url) {
        sipp__gw_redis_addr addr;
        char why[200];
        if (!sipp__gw_redis_url_parse(c->redis_url, &addr, why, sizeof why)) {
            snprintf(errbuf, errcap, "redis.url: %s", why);
            return -1;
        }
        const char *pw = NULL;
        if (c->redis_password_env) {
            pw = getenv(c->redis_password_env);
            if (!pw || !*pw) {
                snprintf(errbuf, errcap, "redis: the environment variable %s is not set",
                         c->redis_password_env);
                return -1;
            }
        }
        /* Never connects here: a gateway starts while Redis is down (see redis.on_error). */
        redis = sipp__gw_redis_new(&addr, pw, c->redis_timeout_ms, c->redis_key_prefix);
        if (!redis) {
            snprintf(errbuf, errcap, "out of memory");
            return -1;
        }
    }
    /* Separate tables: 100k client addresses (LRU), and room for every caller so that no
     * caller's state is ever evicted. */
    gw->limits = sipp__gw_limits_new(redis, c->redis_fail_closed, 100000, c->n_tokens + 1);
    if (!gw->limits) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }

    /* bearer secrets: read once, kept only as digests */
    gw->n_callers = c->n_tokens;
    gw->callers = calloc(c->n_tokens + 1, sizeof *gw->callers);
    uint32_t *caller_max = calloc(c->n_tokens + 1, sizeof *caller_max);
    if (!gw->callers || !caller_max) {
        free(caller_max);
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->n_tokens; i++) {
        const char *secret = getenv(c->tokens[i].env);
        if (!secret || !*secret) {
            free(caller_max);
            snprintf(errbuf, errcap, "caller '%s': the environment variable %s is not set",
                     c->tokens[i].caller, c->tokens[i].env);
            return -1;
        }
        gw->callers[i].cfg = &c->tokens[i];
        SHA256((const unsigned char *)secret, strlen(secret), gw->callers[i].digest);
        caller_max[i] = c->tokens[i].max_concurrent;
    }
    int arc = sipp__gw_admission_init(&gw->admission, c->max_concurrent_requests, caller_max,
                                      c->n_tokens);
    free(caller_max);
    gw->metrics = sipp__gw_metrics_new(c->n_targets);
    if (arc != 0 || !gw->metrics ||
        parse_cidrs(c->trusted_proxy_cidrs, c->n_trusted_proxy_cidrs, &gw->trusted) != 0 ||
        parse_cidrs(c->ip_blocklist, c->n_ip_blocklist, &gw->blocklist) != 0) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    gw->n_trusted = c->n_trusted_proxy_cidrs;
    gw->n_blocklist = c->n_ip_blocklist;
    sipp__gw_hosts_init(&gw->hosts[GW_PUBLIC], c->public_bind, c->allowed_hosts,
                        c->n_allowed_hosts);
    sipp__gw_hosts_init(&gw->hosts[GW_MGMT], c->management_bind, c->allowed_hosts,
                        c->n_allowed_hosts);

    sipp_client_params cp;
    sipp_client_params_init(&cp, sizeof cp);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_new(&cp, &gw->client, &err) != SIPP_OK) {
        snprintf(errbuf, errcap, "%s", err.message);
        return -1;
    }
    gw->n_targets = c->n_targets;
    gw->targets = calloc(c->n_targets + 1, sizeof *gw->targets);
    if (!gw->targets) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->n_targets; i++) {
        gw->targets[i].cfg = &c->targets[i];
        atomic_init(&gw->targets[i].state, GW_TARGET_LOADING);
        if (c->targets[i].type != SIPP__GW_LOCAL && add_provider(gw, &gw->targets[i], errbuf, errcap) != 0)
            return -1;
    }

    gw->admin = sipp__gw_admin_new(gw); /* after n_targets and n_callers are known */
    if (c->admin_password_env && !gw->admin)
        sipp__gw_log("warn", "admin dashboard off: its password variable is not set", NULL);

    sipp__httpd_params hp = {
        .header_timeout_s = c->header_timeout_seconds,
        .body_timeout_s = c->body_timeout_seconds,
        .idle_timeout_s = c->idle_timeout_seconds,
        .max_header_bytes = c->max_header_bytes,
        .max_body_bytes = c->max_request_bytes,
        .max_connections = c->max_connections,
        .max_connections_per_ip = c->max_connections_per_ip,
    };
    char herr[256];
    hp.bind = c->public_bind;
    hp.handler = handle_public;
    hp.user_data = gw;
    gw->public_srv = sipp__httpd_start(&hp, herr, sizeof herr);
    if (!gw->public_srv) {
        snprintf(errbuf, errcap, "public listener: %s", herr);
        return -1;
    }
    hp.bind = c->management_bind;
    hp.handler = handle_mgmt;
    hp.max_body_bytes = 256 * 1024; /* dashboard settings (blocklists) */
    hp.max_connections = 64;
    hp.max_connections_per_ip = 0; /* loopback by default; the dashboard opens a few at once */
    gw->mgmt_srv = sipp__httpd_start(&hp, herr, sizeof herr);
    if (!gw->mgmt_srv) {
        snprintf(errbuf, errcap, "management listener: %s", herr);
        return -1;
    }
    if (pthread_create(&gw->loader, NULL, loader_main, gw) != 0) {
        snprintf(errbuf, errcap, "cannot start the loader thread");
        return -1;
    }
    gw->loader_started = true;
    json_t *x = json_pack("{s:s, s:s, s:I, s:I}", "public", c->public_bind, "management",
                          c->management_bind, "targets", (json_int_t)c->n_targets, "callers",
                          (json_int_t)c->n_tokens);
    sipp__gw_log("info", "listening", x);
    json_decref(x);
    return 0;
}

void sipp__gw_shutdown(sipp__gw *gw) {
    if (!gw || atomic_exchange(&gw->shutting_down, true)) return;
    sipp__gw_log("info", "shutting down", NULL);
    sipp__httpd_quiesce(gw->public_srv);
    double deadline = sipp__gw_now() + gw->cfg.shutdown_grace_seconds;
    while (atomic_load(&gw->in_flight) > 0 && sipp__gw_now() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    struct timespec ts = {0, 50 * 1000000L}; /* let the last answers leave their sockets */
    nanosleep(&ts, NULL);
    json_t *x = json_pack("{s:I}", "unfinished", (json_int_t)atomic_load(&gw->in_flight));
    sipp__gw_log("info", "drained", x);
    json_decref(x);
}

void sipp__gw_free(sipp__gw *gw) {
    if (!gw) return;
    atomic_store(&gw->shutting_down, true);
    if (gw->loader_started) pthread_join(gw->loader, NULL);
    sipp__httpd_stop(gw->public_srv);
    sipp__httpd_stop(gw->mgmt_srv);
    sipp_client_free(gw->client);
    if (gw->callers) sipp__gw_admission_destroy(&gw->admission);
    sipp__gw_limits_free(gw->limits);
    sipp__gw_admin_free(gw->admin);
    pthread_rwlock_destroy(&gw->set_mu);
    sipp__gw_metrics_free(gw->metrics);
    free(gw->trusted);
    free(gw->blocklist);
    free(gw->targets);
    if (gw->callers) {
        explicit_bzero(gw->callers, sizeof *gw->callers * gw->n_callers);
        free(gw->callers);
    }
    sipp__gw_config_free(&gw->cfg);
    free(gw);
}
