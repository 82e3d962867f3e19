/*
 * pool.c — upstream pools (pool.h): the health state machine and the choice of a replica as
 * pure functions, and the pool object around them.
 *
 * A replica is healthy or out. Attempts report how they ended: a hard failure (no connection,
 * a timeout) takes a replica out at once, soft ones (5xx, 429, busy) after failure_threshold in
 * a row, a served request clears the count. An out replica is probed at retry_at (or, without a
 * health_path, simply let back in then); each failed return doubles the time out up to
 * backoff_max_s, and a request it serves resets the exponent. Healthy replicas are probed every
 * probe_interval_ms and go out on a failed probe.
 *
 * The pool object: replicas, counters and histograms under one mutex; one probe thread per pool
 * (only with a health_path) that sleeps on a condition variable until the next probe is due or
 * the pool is freed, and probes with libcurl outside the lock. Probes are GETs of URL +
 * health_path: no redirects, no proxy from the environment, http and https only, a 2xx is
 * healthy, the body is read and dropped (at most 64 KiB).
 */
#define _GNU_SOURCE
#include "pool.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ============================================================================================
 * The pure layer
 * ========================================================================================== */

double sipp__pool_backoff(const sipp__pool_policy *p, uint32_t ejections) {
    double b = p->backoff_initial_s;
    for (uint32_t k = 1; k < ejections && b < p->backoff_max_s; k++) b *= 2;
    return b < p->backoff_max_s ? b : p->backoff_max_s;
}

static void eject(sipp__pool_replica *r, const sipp__pool_policy *p, double now) {
    r->healthy = false;
    r->ejections++;
    r->failures = 0;
    r->retry_at = now + sipp__pool_backoff(p, r->ejections);
}

bool sipp__pool_record(sipp__pool_replica *r, const sipp__pool_policy *p, sipp__pool_outcome o,
                       double now) {
    switch (o) {
    case SIPP__POOL_NEUTRAL: return false;
    case SIPP__POOL_OK: {
        bool back = !r->healthy;
        r->healthy = true;
        r->failures = 0;
        r->ejections = 0;
        return back;
    }
    case SIPP__POOL_BUSY:
    case SIPP__POOL_SOFT:
    case SIPP__POOL_HARD:
        if (!r->healthy) return false; /* already out: its probe decides */
        r->failures++;
        if (o == SIPP__POOL_HARD || r->failures >= p->failure_threshold) {
            eject(r, p, now);
            return true;
        }
        return false;
    }
    return false;
}

bool sipp__pool_probe_result(sipp__pool_replica *r, const sipp__pool_policy *p, bool ok,
                             double now) {
    if (ok) {
        if (r->healthy) return false;
        r->healthy = true;
        r->failures = 0; /* the exponent stays until a request is served */
        return true;
    }
    if (r->healthy) {
        eject(r, p, now);
        return true;
    }
    r->ejections++;
    r->retry_at = now + sipp__pool_backoff(p, r->ejections);
    return false;
}

uint64_t sipp__pool_score(const uint8_t key[32], const char *id) {
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) && EVP_DigestUpdate(c, key, 32) &&
              EVP_DigestUpdate(c, id, strlen(id)) && EVP_DigestFinal_ex(c, d, &dn);
    EVP_MD_CTX_free(c);
    if (!ok || dn < 8) return 0; /* out of memory: every replica scores alike */
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | d[i];
    return v;
}

int sipp__pool_choose(const sipp__pool_replica *reps, const char *const *ids, size_t n,
                      uint64_t tried, const uint8_t *key, size_t start) {
    if (n > SIPP__POOL_MAX_REPLICAS) n = SIPP__POOL_MAX_REPLICAS;
    bool any_healthy = false;
    for (size_t i = 0; i < n; i++)
        if (!(tried >> i & 1) && reps[i].healthy) any_healthy = true;
    int best = -1;
    uint64_t best_score = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        if (tried >> i & 1 || (any_healthy && !reps[i].healthy)) continue;
        if (key) {
            uint64_t s = sipp__pool_score(key, ids[i]);
            if (best < 0 || s > best_score) best = (int)i, best_score = s;
        } else if (best < 0 || reps[i].outstanding < reps[best].outstanding) {
            best = (int)i;
        }
    }
    return best;
}

/* ============================================================================================
 * The pool object
 * ========================================================================================== */

static const double BUCKETS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                 2.5,   5,    10,    30,   60,  120, 300};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])

enum { E_CONNECT, E_BUSY, E_SERVER, N_ERR_KINDS }; /* error kinds of the errors counter */
static const char *const ERR_KIND[N_ERR_KINDS] = {"connection", "busy", "server"};

typedef struct replica_stats {
    uint64_t requests, errors[N_ERR_KINDS], ejections, probes_failed;
    uint64_t buckets[N_BUCKETS + 1];
    double sum;
} replica_stats;

struct sipp__gw_pool {
    const char *target;
    const char *const *urls, *const *hosts;
    size_t n;
    char *health_path; /* NULL = no probe */
    char **probe_headers;
    size_t n_probe_headers;
    uint32_t interval_ms, timeout_ms;
    sipp__pool_policy policy;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_bool stop; /* written under mu; read by a probe in progress without it */
    bool thread_started;
    pthread_t thread;
    size_t rotate;
    uint64_t retries;
    sipp__pool_replica *reps;
    replica_stats *stats;
    double *next_probe; /* healthy replicas: when the next periodic probe is due */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

size_t sipp__gw_pool_size(const sipp__gw_pool *pool) { return pool->n; }

int sipp__gw_pool_acquire(sipp__gw_pool *pool, const uint8_t *key, uint64_t tried) {
    pthread_mutex_lock(&pool->mu);
    double now = now_s();
    if (!pool->health_path) /* no probe: an out replica is let back in when its time out ends */
        for (size_t i = 0; i < pool->n; i++)
            if (!pool->reps[i].healthy && now >= pool->reps[i].retry_at)
                sipp__pool_probe_result(&pool->reps[i], &pool->policy, true, now);
    int i = sipp__pool_choose(pool->reps, pool->urls, pool->n, tried, key, pool->rotate++);
    if (i >= 0) {
        pool->reps[i].outstanding++;
        pool->stats[i].requests++;
    }
    pthread_mutex_unlock(&pool->mu);
    return i;
}

void sipp__gw_pool_release(sipp__gw_pool *pool, int i, sipp__pool_outcome o, double seconds) {
    if (i < 0 || (size_t)i >= pool->n) return;
    pthread_mutex_lock(&pool->mu);
    sipp__pool_replica *r = &pool->reps[i];
    replica_stats *s = &pool->stats[i];
    if (r->outstanding) r->outstanding--;
    if (o == SIPP__POOL_HARD) s->errors[E_CONNECT]++;
    if (o == SIPP__POOL_BUSY) s->errors[E_BUSY]++;
    if (o == SIPP__POOL_SOFT) s->errors[E_SERVER]++;
    if (seconds < 0) seconds = 0;
    size_t b = 0;
    while (b < N_BUCKETS && seconds > BUCKETS[b]) b++;
    s->buckets[b]++;
    s->sum += seconds;
    bool was = r->healthy;
    if (sipp__pool_record(r, &pool->policy, o, now_s()) && was) s->ejections++;
    pthread_mutex_unlock(&pool->mu);
    pthread_cond_signal(&pool->cv); /* the probe thread's next due time may have moved */
}

void sipp__gw_pool_count_retry(sipp__gw_pool *pool) {
    pthread_mutex_lock(&pool->mu);
    pool->retries++;
    pthread_mutex_unlock(&pool->mu);
}

/* ---- the probe thread ---------------------------------------------------------------------- */

static size_t drop_body(char *data, size_t size, size_t n, void *ud) {
    (void)data;
    size_t *total = ud;
    *total += size * n;
    return *total > (64u << 10) ? 0 : size * n; /* a health answer is small */
}

/* libcurl's progress callback: a probe in progress ends when the pool is freed. */
static int probe_abort(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    return atomic_load(&((const sipp__gw_pool *)ud)->stop) ? 1 : 0;
}

/* One GET of url + health_path: true on a 2xx. */
static bool probe(sipp__gw_pool *pool, const char *url) {
    char *full = NULL;
    if (asprintf(&full, "%s%s", url, pool->health_path) < 0) return false;
    CURL *e = curl_easy_init();
    struct curl_slist *h = NULL;
    for (size_t i = 0; i < pool->n_probe_headers; i++) {
        struct curl_slist *nh = curl_slist_append(h, pool->probe_headers[i]);
        if (!nh) break;
        h = nh;
    }
    long status = 0;
    size_t total = 0;
    if (e) {
        curl_easy_setopt(e, CURLOPT_URL, full);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never a proxy from the environment */
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)pool->timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)pool->timeout_ms);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, drop_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &total);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, probe_abort);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)pool);
        if (curl_easy_perform(e) == CURLE_OK)
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(e);
    }
    curl_slist_free_all(h);
    free(full);
    return status >= 200 && status < 300;
}

/* When replica i is due for a probe (mu held). */
static double due(const sipp__gw_pool *pool, size_t i) {
    return pool->reps[i].healthy ? pool->next_probe[i] : pool->reps[i].retry_at;
}

static void *probe_main(void *arg) {
    sipp__gw_pool *pool = arg;
    pthread_mutex_lock(&pool->mu);
    while (!atomic_load(&pool->stop)) {
        double now = now_s(), next = now + 3600;
        int pick = -1;
        for (size_t i = 0; i < pool->n; i++) {
            double d = due(pool, i);
            if (d <= now && pick < 0) pick = (int)i;
            if (d < next) next = d;
        }
        if (pick < 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double wait = next - now;
            if (wait > 1) wait = 1; /* re-read the times out now and then */
            long ns = ts.tv_nsec + (long)(wait * 1e9);
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&pool->cv, &pool->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&pool->mu);
        bool ok = probe(pool, pool->urls[pick]);
        pthread_mutex_lock(&pool->mu);
        now = now_s();
        sipp__pool_replica *r = &pool->reps[pick];
        bool was = r->healthy;
        sipp__pool_probe_result(r, &pool->policy, ok, now);
        if (!ok) pool->stats[pick].probes_failed++;
        if (was && !r->healthy) pool->stats[pick].ejections++;
        pool->next_probe[pick] = now + pool->interval_ms / 1000.0;
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

sipp__gw_pool *sipp__gw_pool_new(const sipp__gw_pool_params *p) {
    if (!p->n || p->n > SIPP__POOL_MAX_REPLICAS) return NULL;
    sipp__gw_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    atomic_init(&pool->stop, false);
    pool->target = p->target;
    pool->urls = p->urls;
    pool->hosts = p->hosts ? p->hosts : p->urls;
    pool->n = p->n;
    pool->interval_ms = p->probe_interval_ms ? p->probe_interval_ms : 10000;
    pool->timeout_ms = p->probe_timeout_ms ? p->probe_timeout_ms : 5000;
    pool->policy = p->policy;
    if (!pool->policy.failure_threshold) pool->policy.failure_threshold = 1;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->reps = calloc(p->n, sizeof *pool->reps);
    pool->stats = calloc(p->n, sizeof *pool->stats);
    pool->next_probe = calloc(p->n, sizeof *pool->next_probe);
    pool->probe_headers = calloc(p->n_probe_headers + 1, sizeof *pool->probe_headers);
    bool ok = pool->reps && pool->stats && pool->next_probe && pool->probe_headers;
    if (ok && p->health_path) ok = (pool->health_path = strdup(p->health_path)) != NULL;
    for (size_t i = 0; ok && i < p->n_probe_headers; i++) {
        ok = (pool->probe_headers[i] = strdup(p->probe_headers[i])) != NULL;
        pool->n_probe_headers += ok;
    }
    double now = now_s();
    for (size_t i = 0; ok && i < p->n; i++) {
        pool->reps[i].healthy = true;
        pool->next_probe[i] = now + pool->interval_ms / 1000.0;
    }
    if (ok && pool->health_path) {
        ok = pthread_create(&pool->thread, NULL, probe_main, pool) == 0;
        pool->thread_started = ok;
    }
    if (!ok) {
        sipp__gw_pool_free(pool);
        return NULL;
    }
    return pool;
}

void sipp__gw_pool_free(sipp__gw_pool *pool) {
    if (!pool) return;
    if (pool->thread_started) {
        pthread_mutex_lock(&pool->mu);
        atomic_store(&pool->stop, true);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
        pthread_join(pool->thread, NULL);
    }
    for (size_t i = 0; i < pool->n_probe_headers; i++) {
        volatile char *v = pool->probe_headers[i]; /* credentials: wiped before free */
        for (size_t k = 0; v[k]; k++) v[k] = 0;
        free(pool->probe_headers[i]);
    }
    free(pool->probe_headers);
    free(pool->health_path);
    free(pool->reps);
    free(pool->stats);
    free(pool->next_probe);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool);
}

/* ---- metrics and the dashboard ------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static void put(FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
}

enum { F_REQUESTS, F_ERRORS, F_EJECTIONS, F_PROBES_FAILED, F_SECONDS, F_HEALTHY, F_OUTSTANDING,
       F_RETRIES, N_FAMILIES };

static const struct {
    const char *name, *type, *help;
} FAMILY[N_FAMILIES] = {
    {"sipp_upstream_requests_total", "counter", "Attempts sent to a replica of an upstream pool."},
    {"sipp_upstream_errors_total", "counter",
     "Attempts on a replica that failed: connection (none made, broken, or a timeout), busy "
     "(429 or 503), server (another 5xx or a broken stream)."},
    {"sipp_upstream_ejections_total", "counter", "Times a replica was taken out of its pool."},
    {"sipp_upstream_probes_failed_total", "counter",
     "Active health probes of a replica that failed."},
    {"sipp_upstream_request_seconds", "histogram",
     "Time from sending an attempt to a replica to its end."},
    {"sipp_upstream_healthy", "gauge", "1 while a replica is in its pool, 0 while it is out."},
    {"sipp_upstream_outstanding", "gauge", "Attempts in progress on a replica."},
    {"sipp_upstream_retries_total", "counter",
     "Requests sent again to another replica because the first one never got them."},
};

static void render_family(FILE *f, sipp__gw_pool *pool, int fam) {
    pthread_mutex_lock(&pool->mu);
    if (fam == F_RETRIES) {
        put(f, "%s{target=\"%s\"} %llu\n", FAMILY[fam].name, pool->target,
            (unsigned long long)pool->retries);
        pthread_mutex_unlock(&pool->mu);
        return;
    }
    for (size_t i = 0; i < pool->n; i++) {
        const replica_stats *s = &pool->stats[i];
        const char *name = FAMILY[fam].name;
        char l[512]; /* the replica's labels */
        snprintf(l, sizeof l, "target=\"%s\",replica=\"%zu\",host=\"%s\"", pool->target, i,
                 pool->hosts[i]);
        switch (fam) {
        case F_REQUESTS: put(f, "%s{%s} %llu\n", name, l, (unsigned long long)s->requests); break;
        case F_ERRORS:
            for (int k = 0; k < N_ERR_KINDS; k++)
                put(f, "%s{%s,kind=\"%s\"} %llu\n", name, l, ERR_KIND[k],
                    (unsigned long long)s->errors[k]);
            break;
        case F_EJECTIONS:
            put(f, "%s{%s} %llu\n", name, l, (unsigned long long)s->ejections);
            break;
        case F_PROBES_FAILED:
            put(f, "%s{%s} %llu\n", name, l, (unsigned long long)s->probes_failed);
            break;
        case F_SECONDS: {
            uint64_t cum = 0;
            for (size_t b = 0; b < N_BUCKETS; b++) {
                cum += s->buckets[b];
                put(f, "%s_bucket{%s,le=\"%g\"} %llu\n", name, l, BUCKETS[b],
                    (unsigned long long)cum);
            }
            cum += s->buckets[N_BUCKETS];
            put(f, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, l, (unsigned long long)cum);
            put(f, "%s_sum{%s} %.6f\n", name, l, s->sum);
            put(f, "%s_count{%s} %llu\n", name, l, (unsigned long long)cum);
            break;
        }
        case F_HEALTHY: put(f, "%s{%s} %d\n", name, l, pool->reps[i].healthy); break;
        case F_OUTSTANDING: put(f, "%s{%s} %u\n", name, l, pool->reps[i].outstanding); break;
        }
    }
    pthread_mutex_unlock(&pool->mu);
}

char *sipp__gw_pools_render(sipp__gw_pool *const *pools, size_t n) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    bool any = false;
    for (size_t k = 0; k < n; k++) any |= pools[k] != NULL;
    for (int fam = 0; any && fam < N_FAMILIES; fam++) {
        put(f, "# HELP %s %s\n# TYPE %s %s\n", FAMILY[fam].name, FAMILY[fam].help,
            FAMILY[fam].name, FAMILY[fam].type);
        for (size_t k = 0; k < n; k++)
            if (pools[k]) render_family(f, pools[k], fam);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

json_t *sipp__gw_pool_json(sipp__gw_pool *pool) {
    json_t *a = json_array();
    pthread_mutex_lock(&pool->mu);
    double now = now_s();
    for (size_t i = 0; a && i < pool->n; i++) {
        const sipp__pool_replica *r = &pool->reps[i];
        const replica_stats *s = &pool->stats[i];
        uint64_t errors = s->errors[E_CONNECT] + s->errors[E_BUSY] + s->errors[E_SERVER];
        json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:I}", "target",
                              pool->target, "replica", (json_int_t)i, "host", pool->hosts[i],
                              "state", r->healthy ? "healthy" : "out", "outstanding",
                              (json_int_t)r->outstanding, "requests", (json_int_t)s->requests,
                              "errors", (json_int_t)errors, "ejections",
                              (json_int_t)s->ejections);
        if (o && !r->healthy)
            json_object_set_new(o, "retry_in_s",
                                json_real(r->retry_at > now ? r->retry_at - now : 0));
        if (o) json_array_append_new(a, o);
    }
    pthread_mutex_unlock(&pool->mu);
    return a;
}
