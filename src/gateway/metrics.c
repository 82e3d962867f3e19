/*
 * metrics.c — the gateway's Prometheus registry (text format 0.0.4), all under one mutex.
 *
 * Series are fixed arrays indexed by (operation, target, status class or code), sized when the
 * gateway starts, so no label ever comes from what a client sends: a request for an unknown
 * target is counted under target="" . Histograms (TTFT, inter-token latency, end-to-end latency,
 * queue wait) are per target with one fixed bucket list. Engine counters of local targets are
 * read from libsipp at render time, by the gateway, which hands them over as a snapshot
 * (metrics.h): this file does not know the gateway object.
 */
#define _POSIX_C_SOURCE 200809L
#include "metrics.h"

#include <pthread.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double BUCKETS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                 0.5,   1,      2.5,   5,    10,    30,    60,  120};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])

typedef struct histo {
    uint64_t counts[N_BUCKETS + 1]; /* last = +Inf */
    double sum;
    uint64_t n;
} histo;

enum { H_TTFT, H_ITL, H_E2E, H_QUEUE, N_HISTOS };
static const char *const HISTO_NAME[N_HISTOS] = {
    "sipp_time_to_first_token_seconds", "sipp_inter_token_latency_seconds",
    "sipp_e2e_request_seconds", "sipp_queue_wait_seconds"};
static const char *const HISTO_HELP[N_HISTOS] = {
    "Time from the request's arrival to its first generated token.",
    "Time between consecutive token batches of a stream.",
    "Time from the request's arrival to its end.",
    "Time a request waited in the engine's queue before a sequence took it."};

struct gw_metrics {
    pthread_mutex_t mu;
    size_t n_t; /* targets + 1 (index n_targets = none) */
    const char *const *names, *const *types; /* n_targets each, not owned */
    uint64_t *requests; /* [op][t][class 0..4 for 1xx..5xx] */
    uint64_t *errors;   /* [op][t][code] */
    uint64_t *tokens;   /* [op][t][in/out] */
    histo *h;           /* [kind][t] */
};

gw_metrics *sipp__gw_metrics_new(size_t n_targets, const char *const *names,
                                 const char *const *types) {
    gw_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->n_t = n_targets + 1;
    m->names = names;
    m->types = types;
    m->requests = calloc(GW_N_OPS * m->n_t * 5, sizeof *m->requests);
    m->errors = calloc(GW_N_OPS * m->n_t * GW_N_CODES, sizeof *m->errors);
    m->tokens = calloc(GW_N_OPS * m->n_t * 2, sizeof *m->tokens);
    m->h = calloc(N_HISTOS * m->n_t, sizeof *m->h);
    if (!m->requests || !m->errors || !m->tokens || !m->h) {
        sipp__gw_metrics_free(m);
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void sipp__gw_metrics_free(gw_metrics *m) {
    if (!m) return;
    free(m->requests);
    free(m->errors);
    free(m->tokens);
    free(m->h);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static size_t tix(gw_metrics *m, int target) {
    return target < 0 || (size_t)target >= m->n_t - 1 ? m->n_t - 1 : (size_t)target;
}

void sipp__gw_metrics_request(gw_metrics *m, gw_op op, int target, int status, gw_code code,
                              uint64_t in_tokens, uint64_t out_tokens) {
    size_t t = tix(m, target);
    int cls = status / 100 - 1;
    if (cls < 0 || cls > 4) cls = 4;
    pthread_mutex_lock(&m->mu);
    m->requests[(op * m->n_t + t) * 5 + (size_t)cls]++;
    if (code != GW_OK) m->errors[(op * m->n_t + t) * GW_N_CODES + code]++;
    m->tokens[(op * m->n_t + t) * 2] += in_tokens;
    m->tokens[(op * m->n_t + t) * 2 + 1] += out_tokens;
    pthread_mutex_unlock(&m->mu);
}

static void observe(gw_metrics *m, int kind, int target, double s) {
    if (s < 0) s = 0;
    pthread_mutex_lock(&m->mu);
    histo *h = &m->h[kind * m->n_t + tix(m, target)];
    size_t b = 0;
    while (b < N_BUCKETS && s > BUCKETS[b]) b++;
    h->counts[b]++;
    h->sum += s;
    h->n++;
    pthread_mutex_unlock(&m->mu);
}

void sipp__gw_metrics_observe_ttft(gw_metrics *m, int t, double s) { observe(m, H_TTFT, t, s); }
void sipp__gw_metrics_observe_itl(gw_metrics *m, int t, double s) { observe(m, H_ITL, t, s); }
void sipp__gw_metrics_observe_e2e(gw_metrics *m, int t, double s) { observe(m, H_E2E, t, s); }
void sipp__gw_metrics_observe_queue(gw_metrics *m, int t, double s) { observe(m, H_QUEUE, t, s); }

/* ---- rendering ------------------------------------------------------------------------------ */

typedef struct out {
    char *s;
    size_t len, cap;
    bool oom;
} out;

__attribute__((format(printf, 2, 3))) static void put(out *o, const char *fmt, ...) {
    if (o->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->s + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *p = realloc(o->s, cap);
        if (!p) {
            o->oom = true;
            return;
        }
        o->s = p;
        o->cap = cap;
    }
}

static const char *tname(const gw_metrics *m, size_t t) {
    return t < m->n_t - 1 ? m->names[t] : "";
}

char *sipp__gw_metrics_render(gw_metrics *m, const sipp__gw_metrics_live *live) {
    out o = {malloc(8192), 0, 8192, false};
    if (!o.s) return NULL;
    o.s[0] = '\0';
    static const char *const cls[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    pthread_mutex_lock(&m->mu);
    put(&o, "# HELP sipp_requests_total Requests answered, by operation, target and status class.\n"
            "# TYPE sipp_requests_total counter\n");
    for (size_t op = 0; op < GW_N_OPS; op++)
        for (size_t t = 0; t < m->n_t; t++)
            for (size_t c = 0; c < 5; c++) {
                uint64_t v = m->requests[(op * m->n_t + t) * 5 + c];
                if (v)
                    put(&o, "sipp_requests_total{operation=\"%s\",target=\"%s\",status=\"%s\"} %llu\n",
                        sipp__gw_op_name((gw_op)op), tname(m, t), cls[c], (unsigned long long)v);
            }
    put(&o, "# HELP sipp_errors_total Requests that failed, by operation, target and error code.\n"
            "# TYPE sipp_errors_total counter\n");
    for (size_t op = 0; op < GW_N_OPS; op++)
        for (size_t t = 0; t < m->n_t; t++)
            for (size_t c = 1; c < GW_N_CODES; c++) {
                uint64_t v = m->errors[(op * m->n_t + t) * GW_N_CODES + c];
                if (v)
                    put(&o, "sipp_errors_total{operation=\"%s\",target=\"%s\",code=\"%s\"} %llu\n",
                        sipp__gw_op_name((gw_op)op), tname(m, t), sipp__gw_code_name((gw_code)c),
                        (unsigned long long)v);
            }
    put(&o, "# HELP sipp_tokens_total Tokens processed, by operation, target and kind.\n"
            "# TYPE sipp_tokens_total counter\n");
    for (size_t op = 0; op < GW_N_OPS; op++)
        for (size_t t = 0; t < m->n_t; t++)
            for (size_t k = 0; k < 2; k++) {
                uint64_t v = m->tokens[(op * m->n_t + t) * 2 + k];
                if (v)
                    put(&o, "sipp_tokens_total{operation=\"%s\",target=\"%s\",kind=\"%s\"} %llu\n",
                        sipp__gw_op_name((gw_op)op), tname(m, t), k ? "output" : "input",
                        (unsigned long long)v);
            }
    for (int k = 0; k < N_HISTOS; k++) {
        put(&o, "# HELP %s %s\n# TYPE %s histogram\n", HISTO_NAME[k], HISTO_HELP[k], HISTO_NAME[k]);
        for (size_t t = 0; t < m->n_t - 1; t++) {
            histo *h = &m->h[k * m->n_t + t];
            uint64_t cum = 0;
            for (size_t b = 0; b < N_BUCKETS; b++) {
                cum += h->counts[b];
                put(&o, "%s_bucket{target=\"%s\",le=\"%g\"} %llu\n", HISTO_NAME[k], tname(m, t),
                    BUCKETS[b], (unsigned long long)cum);
            }
            cum += h->counts[N_BUCKETS];
            put(&o, "%s_bucket{target=\"%s\",le=\"+Inf\"} %llu\n", HISTO_NAME[k], tname(m, t),
                (unsigned long long)cum);
            put(&o, "%s_sum{target=\"%s\"} %.6f\n%s_count{target=\"%s\"} %llu\n", HISTO_NAME[k],
                tname(m, t), h->sum, HISTO_NAME[k], tname(m, t), (unsigned long long)h->n);
        }
    }
    pthread_mutex_unlock(&m->mu);

    put(&o, "# HELP sipp_requests_active Requests admitted and not yet finished.\n"
            "# TYPE sipp_requests_active gauge\nsipp_requests_active %u\n",
        live->active);
    put(&o, "# HELP sipp_log_dropped_lines_total Log lines dropped because stderr was not "
            "being read fast enough.\n# TYPE sipp_log_dropped_lines_total counter\n"
            "sipp_log_dropped_lines_total %lu\n",
        live->log_dropped);
    const sipp__gw_limits_stats *ls = &live->limits;
    if (ls->shared) {
        put(&o, "# HELP sipp_redis_errors_total Rate-limit operations that found Redis "
                "unreachable or failing.\n# TYPE sipp_redis_errors_total counter\n"
                "sipp_redis_errors_total %llu\n",
            (unsigned long long)ls->redis_errors);
        put(&o, "# HELP sipp_rate_limit_fallback_total Rate-limit operations decided by this "
                "process's own counters because Redis failed or was being skipped.\n"
                "# TYPE sipp_rate_limit_fallback_total counter\nsipp_rate_limit_fallback_total "
                "%llu\n",
            (unsigned long long)ls->fallbacks);
        put(&o, "# HELP sipp_rate_limit_fallback_active 1 while repeated Redis failures have "
                "switched every rate-limit operation to this process's own counters.\n"
                "# TYPE sipp_rate_limit_fallback_active gauge\nsipp_rate_limit_fallback_active "
                "%d\n",
            ls->local_mode ? 1 : 0);
    }
    size_t n_targets = m->n_t - 1;
    const sipp_engine_stats *st = live->engine;
    const bool *have = live->have_engine;
    uint64_t queued = 0;
    for (size_t t = 0; t < n_targets; t++)
        if (have[t]) queued += st[t].queued;
    put(&o, "# HELP sipp_requests_queued Requests waiting in a local engine's queue.\n"
            "# TYPE sipp_requests_queued gauge\nsipp_requests_queued %llu\n",
        (unsigned long long)queued);
    put(&o, "# HELP sipp_target_ready 1 when a target is loaded and serving.\n"
            "# TYPE sipp_target_ready gauge\n");
    for (size_t t = 0; t < n_targets; t++)
        put(&o, "sipp_target_ready{target=\"%s\",type=\"%s\"} %d\n", tname(m, t), m->types[t],
            live->ready[t]);
    if (live->res) { /* residency */
        const sipp__gw_metrics_residency *r = live->res;
        put(&o, "# HELP sipp_target_loaded 1 while a local target's model is in memory.\n"
                "# TYPE sipp_target_loaded gauge\n");
        for (size_t t = 0; t < n_targets; t++)
            if (r[t].local) put(&o, "sipp_target_loaded{target=\"%s\"} %d\n", tname(m, t), r[t].loaded);
        put(&o, "# HELP sipp_target_memory_bytes Estimated bytes of a local target's model while "
                "loaded (weights + KV cache).\n# TYPE sipp_target_memory_bytes gauge\n");
        for (size_t t = 0; t < n_targets; t++)
            if (r[t].local)
                put(&o, "sipp_target_memory_bytes{target=\"%s\"} %llu\n", tname(m, t),
                    (unsigned long long)r[t].footprint);
        put(&o, "# HELP sipp_target_loads_total Loads of a local target's model.\n"
                "# TYPE sipp_target_loads_total counter\n");
        for (size_t t = 0; t < n_targets; t++)
            if (r[t].local)
                put(&o, "sipp_target_loads_total{target=\"%s\"} %llu\n", tname(m, t),
                    (unsigned long long)r[t].loads);
        put(&o, "# HELP sipp_target_unloads_total Unloads of a local target's model, by reason "
                "(idle: idle_unload_seconds; budget: room for another model).\n"
                "# TYPE sipp_target_unloads_total counter\n");
        for (size_t t = 0; t < n_targets; t++)
            if (r[t].local)
                put(&o, "sipp_target_unloads_total{target=\"%s\",reason=\"idle\"} %llu\n"
                        "sipp_target_unloads_total{target=\"%s\",reason=\"budget\"} %llu\n",
                    tname(m, t), (unsigned long long)r[t].unloads_idle, tname(m, t),
                    (unsigned long long)r[t].unloads_budget);
        put(&o, "# HELP sipp_target_load_refused_total Requests refused because the memory "
                "budget could not be met.\n# TYPE sipp_target_load_refused_total counter\n");
        for (size_t t = 0; t < n_targets; t++)
            if (r[t].local)
                put(&o, "sipp_target_load_refused_total{target=\"%s\"} %llu\n", tname(m, t),
                    (unsigned long long)r[t].refused);
        put(&o, "# HELP sipp_models_memory_bytes Estimated bytes of loaded and loading models.\n"
                "# TYPE sipp_models_memory_bytes gauge\nsipp_models_memory_bytes %llu\n"
                "# HELP sipp_models_memory_budget_bytes [models] memory_budget_bytes (0 = none).\n"
                "# TYPE sipp_models_memory_budget_bytes gauge\nsipp_models_memory_budget_bytes "
                "%llu\n",
            (unsigned long long)live->memory_used_bytes,
            (unsigned long long)live->memory_budget_bytes);
    }
    struct {
        const char *name, *type, *help;
        size_t off;
        bool u32;
    } eng[] = {
        {"sipp_engine_running", "gauge", "Requests in engine sequences now.",
         offsetof(sipp_engine_stats, running), true},
        {"sipp_engine_queued", "gauge", "Requests waiting for an engine sequence.",
         offsetof(sipp_engine_stats, queued), true},
        {"sipp_engine_completed_total", "counter", "Engine runs ended with status OK.",
         offsetof(sipp_engine_stats, completed), false},
        {"sipp_engine_cancelled_total", "counter", "Engine runs cancelled.",
         offsetof(sipp_engine_stats, cancelled), false},
        {"sipp_engine_failed_total", "counter", "Engine runs ended with an error.",
         offsetof(sipp_engine_stats, failed), false},
        {"sipp_engine_rejected_busy_total", "counter", "Submissions refused as busy.",
         offsetof(sipp_engine_stats, rejected_busy), false},
        {"sipp_engine_prompt_tokens_total", "counter", "Prompt tokens computed by the engine.",
         offsetof(sipp_engine_stats, prompt_tokens), false},
        {"sipp_engine_generated_tokens_total", "counter", "Tokens generated by the engine.",
         offsetof(sipp_engine_stats, generated_tokens), false},
        {"sipp_engine_ticks_total", "counter", "Scheduler ticks (llama_decode calls).",
         offsetof(sipp_engine_stats, ticks), false},
        {"sipp_engine_cache_hits_total", "counter", "Keyed requests that reused a KV prefix.",
         offsetof(sipp_engine_stats, cache_hits), false},
        {"sipp_engine_cache_misses_total", "counter", "Keyed requests that computed everything.",
         offsetof(sipp_engine_stats, cache_misses), false},
        {"sipp_engine_stalls_total", "counter",
         "Times the watchdog saw no scheduler round for stall_alarm_ms with work pending.",
         offsetof(sipp_engine_stats, stalls), false},
        {"sipp_engine_stalled", "gauge", "1 while the engine watchdog sees a stall.",
         offsetof(sipp_engine_stats, stalled), true},
    };
    for (size_t e = 0; e < sizeof eng / sizeof eng[0]; e++) {
        put(&o, "# HELP %s %s\n# TYPE %s %s\n", eng[e].name, eng[e].help, eng[e].name, eng[e].type);
        for (size_t t = 0; t < n_targets; t++) {
            if (!have[t]) continue;
            const char *p = (const char *)&st[t] + eng[e].off;
            unsigned long long v = eng[e].u32 ? *(const uint32_t *)p : *(const uint64_t *)p;
            put(&o, "%s{target=\"%s\"} %llu\n", eng[e].name, tname(m, t), v);
        }
    }
    if (o.oom) {
        free(o.s);
        return NULL;
    }
    return o.s;
}
