/*
 * redis_store.c — the rate-limit store (redis_store.h): token buckets in Redis, and the
 * in-process tables that decide whenever Redis cannot.
 *
 * Why a Lua script (EVALSHA) and not MULTI: a token bucket is read-modify-write (read the
 * level and its timestamp, refill, compare, write). MULTI/EXEC cannot use a value it read
 * inside the transaction, so it would need WATCH and a retry loop, several round trips and
 * retries under exactly the contention a shared limit sees. A script runs atomically on the
 * server in one round trip, and it reads the server's clock (TIME), so gateways on hosts with
 * skewed clocks still agree. EVALSHA sends only the script's SHA-1; on NOSCRIPT (a restarted or
 * flushed Redis) the store sends the script once with EVAL, which caches it again.
 *
 * Layout: one hash per bucket key (`<prefix>rl:<kind>:<id>`) with fields r/rts (request level
 * and its time) and t/tts (token level and its time). A field that is absent means "full". The
 * hash expires when all its buckets would be full again, so idle keys cost nothing. The script
 * does three things: take (a request unit, and a token level above zero), reserve (tokens before
 * a request runs) and settle (refund or debt after it ran), with the semantics of policy.c.
 *
 * Invariants: a context in the pool is connected and has no pending reply; a context that saw
 * any error is freed, never reused. The breaker and its log decision are under limits->mu; the
 * counters are atomics; Redis round trips happen outside every lock.
 */
#define _GNU_SOURCE
#include "redis_store.h"

#include "logger.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdatomic.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX 16

/* ARGV: rpm, rcap, tpm, tcap, op ("take" | "reserve" | "settle"), n (reserve: tokens; settle:
 * held), used (settle). Returns {ok, wait, held}. */
static const char SCRIPT[] =
    "local rpm, rcap, tpm, tcap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), "
    "tonumber(ARGV[4])\n"
    "local op, n, used = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local tm = redis.call('TIME')\n"
    "local now = tonumber(tm[1]) + tonumber(tm[2]) / 1000000\n"
    "local v = redis.call('HMGET', KEYS[1], 'r', 'rts', 't', 'tts')\n"
    "local r, t = nil, nil\n"
    "if rpm > 0 then\n"
    "  r = tonumber(v[1]) or rcap\n"
    "  r = math.min(rcap, r + math.max(0, now - (tonumber(v[2]) or now)) * rpm / 60)\n"
    "end\n"
    "if tpm > 0 then\n"
    "  t = tonumber(v[3]) or tcap\n"
    "  t = math.min(tcap, t + math.max(0, now - (tonumber(v[4]) or now)) * tpm / 60)\n"
    "end\n"
    "local ok, wait, held = 1, 0, 0\n"
    "if op == 'take' then\n"
    "  if r and r < 1 then ok = 0; wait = math.ceil((1 - r) * 60 / rpm) end\n"
    "  if t and t <= 0 then ok = 0; wait = math.max(wait, math.ceil((1 - t) * 60 / tpm)) end\n"
    "  if ok == 1 and r then r = r - 1 end\n"
    "elseif op == 'reserve' and t then\n"
    "  local need = math.min(n, tcap)\n"
    "  if t >= need then\n"
    "    held = math.min(n, math.floor(t + 10 * tpm))\n"
    "    t = t - held\n"
    "  else\n"
    "    ok = 0; wait = math.ceil((need - t) * 60 / tpm)\n"
    "  end\n"
    "elseif op == 'settle' and t then\n"
    "  t = math.min(tcap, math.max(t + n - used, -10 * tpm))\n"
    "end\n"
    "local ttl = 0\n"
    "if r then\n"
    "  redis.call('HSET', KEYS[1], 'r', tostring(r), 'rts', tostring(now))\n"
    "  ttl = math.max(ttl, (rcap - r) * 60 / rpm)\n"
    "end\n"
    "if t then\n"
    "  redis.call('HSET', KEYS[1], 't', tostring(t), 'tts', tostring(now))\n"
    "  ttl = math.max(ttl, (tcap - t) * 60 / tpm)\n"
    "end\n"
    "if r or t then\n"
    "  local ms = math.ceil(ttl * 1000) + 1000\n"
    "  if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], ms) end\n"
    "end\n"
    "if wait > 3600 then wait = 3600 end\n"
    "if ok == 0 and wait < 1 then wait = 1 end\n"
    "return {ok, wait, held}\n";

struct sipp__gw_redis {
    sipp__gw_redis_addr addr;
    char *password;
    char *prefix;
    struct timeval tv;
    char sha[41];
    pthread_mutex_t mu;
    redisContext *pool[POOL_MAX];
    size_t n_pool;
};

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

sipp__gw_redis *sipp__gw_redis_new(const sipp__gw_redis_addr *addr, const char *password,
                                   uint32_t timeout_ms, const char *key_prefix) {
    sipp__gw_redis *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->addr = *addr;
    r->password = password ? strdup(password) : NULL;
    r->prefix = strdup(key_prefix ? key_prefix : "sipp:");
    if ((password && !r->password) || !r->prefix) {
        sipp__gw_redis_free(r);
        return NULL;
    }
    if (!timeout_ms) timeout_ms = 50;
    r->tv.tv_sec = timeout_ms / 1000;
    r->tv.tv_usec = (timeout_ms % 1000) * 1000;
    uint8_t d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)SCRIPT, sizeof SCRIPT - 1, d);
    for (size_t i = 0; i < sizeof d; i++) sprintf(r->sha + 2 * i, "%02x", d[i]);
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

void sipp__gw_redis_free(sipp__gw_redis *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_pool; i++) redisFree(r->pool[i]);
    if (r->password) {
        explicit_bzero(r->password, strlen(r->password));
        free(r->password);
    }
    free(r->prefix);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* A command that must answer with a status (AUTH, SELECT). */
static bool setup_cmd(redisContext *c, int argc, const char **argv) {
    redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep) freeReplyObject(rep);
    return ok;
}

/* A pooled or fresh connection, or NULL when Redis cannot be reached. */
static redisContext *get_conn(sipp__gw_redis *r) {
    pthread_mutex_lock(&r->mu);
    redisContext *c = r->n_pool ? r->pool[--r->n_pool] : NULL;
    pthread_mutex_unlock(&r->mu);
    if (c) return c;
    c = r->addr.path[0] ? redisConnectUnixWithTimeout(r->addr.path, r->tv)
                        : redisConnectWithTimeout(r->addr.host, r->addr.port, r->tv);
    bool ok = c && !c->err && redisSetTimeout(c, r->tv) == REDIS_OK;
    if (ok && r->password) ok = setup_cmd(c, 2, (const char *[]){"AUTH", r->password});
    if (ok && r->addr.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->addr.db);
        ok = setup_cmd(c, 2, (const char *[]){"SELECT", db});
    }
    if (!ok) {
        if (c) redisFree(c);
        return NULL;
    }
    return c;
}

static void put_conn(sipp__gw_redis *r, redisContext *c, bool healthy) {
    if (healthy && !c->err) {
        pthread_mutex_lock(&r->mu);
        if (r->n_pool < POOL_MAX) {
            r->pool[r->n_pool++] = c;
            c = NULL;
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (c) redisFree(c);
}

/* Runs the script for one bucket. Returns 1/0 (ok) with *retry_after_s and *held from the
 * reply, -1 on any failure. */
static int run_script(sipp__gw_redis *r, const char *kind, const char *id, sipp__gw_rate req,
                      sipp__gw_rate tok, const char *op, uint64_t n, uint64_t used,
                      uint32_t *retry_after_s, uint64_t *held) {
    size_t kl = strlen(r->prefix) + 3 + strlen(kind) + 1 + strlen(id) + 1;
    char *full = malloc(kl);
    if (!full) return -1;
    snprintf(full, kl, "%srl:%s:%s", r->prefix, kind, id);
    const uint64_t big = (uint64_t)1 << 40; /* exact in a Lua double, beyond any real budget */
    char a[6][24];
    snprintf(a[0], sizeof a[0], "%u", req.per_minute);
    snprintf(a[1], sizeof a[1], "%u", req.burst ? req.burst : req.per_minute);
    snprintf(a[2], sizeof a[2], "%u", tok.per_minute);
    snprintf(a[3], sizeof a[3], "%u", tok.burst ? tok.burst : tok.per_minute);
    snprintf(a[4], sizeof a[4], "%llu", (unsigned long long)(n > big ? big : n));
    snprintf(a[5], sizeof a[5], "%llu", (unsigned long long)(used > big ? big : used));
    const char *argv[11] = {"EVALSHA", r->sha, "1", full, a[0], a[1], a[2], a[3], op, a[4], a[5]};
    redisContext *c = get_conn(r);
    if (!c) {
        free(full);
        return -1;
    }
    redisReply *rep = redisCommandArgv(c, 11, argv, NULL);
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(rep);
        argv[0] = "EVAL";
        argv[1] = SCRIPT;
        rep = redisCommandArgv(c, 11, argv, NULL);
    }
    free(full);
    int out = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER &&
        rep->element[1]->type == REDIS_REPLY_INTEGER &&
        rep->element[2]->type == REDIS_REPLY_INTEGER) {
        out = rep->element[0]->integer ? 1 : 0;
        if (!out && retry_after_s) {
            long long w = rep->element[1]->integer;
            *retry_after_s = (uint32_t)(w < 1 ? 1 : w > 3600 ? 3600 : w);
        }
        if (held) *held = rep->element[2]->integer > 0 ? (uint64_t)rep->element[2]->integer : 0;
    }
    bool healthy = rep != NULL; /* a NULL reply is a timeout or a broken connection */
    if (rep) freeReplyObject(rep);
    put_conn(r, c, healthy);
    return out;
}

int sipp__gw_redis_take(sipp__gw_redis *r, const char *kind, const char *id, sipp__gw_rate req,
                        sipp__gw_rate tok, uint32_t *retry_after_s) {
    if (!req.per_minute && !tok.per_minute) return 1;
    return run_script(r, kind, id, req, tok, "take", 0, 0, retry_after_s, NULL);
}

int sipp__gw_redis_reserve(sipp__gw_redis *r, const char *kind, const char *id, sipp__gw_rate tok,
                           uint64_t tokens, uint64_t *held, uint32_t *retry_after_s) {
    *held = 0;
    if (!tok.per_minute || tokens == 0) return 1;
    sipp__gw_rate none = {0, 0};
    return run_script(r, kind, id, none, tok, "reserve", tokens, 0, retry_after_s, held);
}

int sipp__gw_redis_settle(sipp__gw_redis *r, const char *kind, const char *id, sipp__gw_rate tok,
                          uint64_t held, uint64_t used) {
    if (!tok.per_minute || held == used) return 0;
    sipp__gw_rate none = {0, 0};
    return run_script(r, kind, id, none, tok, "settle", held, used, NULL, NULL) < 0 ? -1 : 0;
}

/* ---- the store the pipeline uses ------------------------------------------------------------ */

#define TRIP_AFTER 3      /* separate consecutive failures before every operation goes local */
#define PROBE_EVERY_S 1.0 /* while local: one operation a second tries Redis */

static const char *const KIND[SIPP__GW_N_SCOPES] = {"ip", "caller"};

struct sipp__gw_limits {
    sipp__gw_limiter *tab[SIPP__GW_N_SCOPES];
    sipp__gw_redis *redis; /* NULL: in-process only */
    bool fail_closed;
    pthread_mutex_t mu; /* guards br */
    sipp__gw_breaker br;
    atomic_uint_fast64_t redis_errors, fallbacks;
};

sipp__gw_limits *sipp__gw_limits_new(sipp__gw_redis *redis, bool fail_closed, size_t max_ips,
                                     size_t max_callers) {
    sipp__gw_limits *l = calloc(1, sizeof *l);
    if (!l) {
        sipp__gw_redis_free(redis);
        return NULL;
    }
    l->redis = redis;
    l->fail_closed = fail_closed;
    l->tab[SIPP__GW_SCOPE_IP] = sipp__gw_limiter_new(max_ips);
    l->tab[SIPP__GW_SCOPE_CALLER] = sipp__gw_limiter_new(max_callers);
    pthread_mutex_init(&l->mu, NULL);
    sipp__gw_breaker_init(&l->br, TRIP_AFTER, PROBE_EVERY_S);
    atomic_init(&l->redis_errors, 0);
    atomic_init(&l->fallbacks, 0);
    if (!l->tab[0] || !l->tab[1]) {
        sipp__gw_limits_free(l);
        return NULL;
    }
    return l;
}

void sipp__gw_limits_free(sipp__gw_limits *l) {
    if (!l) return;
    for (size_t i = 0; i < SIPP__GW_N_SCOPES; i++) sipp__gw_limiter_free(l->tab[i]);
    sipp__gw_redis_free(l->redis);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* Whether this operation should go to Redis (*probe: it is the breaker's probe). */
static bool use_redis(sipp__gw_limits *l, double now, bool *probe) {
    *probe = false;
    if (!l->redis) return false;
    pthread_mutex_lock(&l->mu);
    bool yes = sipp__gw_breaker_allow(&l->br, now, probe);
    pthread_mutex_unlock(&l->mu);
    return yes;
}

/* Reports a Redis attempt to the breaker; logs a mode change once, outside the lock. */
static void report(sipp__gw_limits *l, bool ok, bool probe, double started) {
    if (!ok) atomic_fetch_add(&l->redis_errors, 1);
    pthread_mutex_lock(&l->mu);
    bool changed = sipp__gw_breaker_done(&l->br, ok, probe, started, mono_now());
    bool local = l->br.open;
    pthread_mutex_unlock(&l->mu);
    if (!changed) return;
    json_t *x = json_pack("{s:s, s:s, s:I}", "mode", local ? "local" : "redis", "on_error",
                          l->fail_closed ? "closed" : "open", "redis_errors",
                          (json_int_t)atomic_load(&l->redis_errors));
    if (!local)
        sipp__gw_log("info", "redis answers again: rate limits are shared again", x);
    else
        sipp__gw_log("error",
                     l->fail_closed
                         ? "redis unreachable: rate-limited requests are refused with 503 until "
                           "it answers"
                         : "redis unreachable: rate limits are enforced by this process alone "
                           "until it answers",
                     x);
    json_decref(x);
}

/* After Redis failed or was skipped: -1 when on_error is closed, else 1 (decide locally). */
static int fall_back(sipp__gw_limits *l) {
    if (l->fail_closed) return -1;
    atomic_fetch_add(&l->fallbacks, 1);
    return 1;
}

int sipp__gw_limits_take(sipp__gw_limits *l, sipp__gw_scope scope, const char *id,
                         sipp__gw_rate req, sipp__gw_rate tok, uint32_t *retry_after_s) {
    if (!req.per_minute && !tok.per_minute) return 1;
    double now = mono_now();
    bool probe;
    if (use_redis(l, now, &probe)) {
        int rc = sipp__gw_redis_take(l->redis, KIND[scope], id, req, tok, retry_after_s);
        report(l, rc >= 0, probe, now);
        if (rc >= 0) return rc;
    }
    if (l->redis && fall_back(l) < 0) return -1;
    return sipp__gw_limiter_take(l->tab[scope], id, req, tok, mono_now(), retry_after_s) ? 1 : 0;
}

int sipp__gw_limits_reserve(sipp__gw_limits *l, sipp__gw_scope scope, const char *id,
                            sipp__gw_rate tok, uint64_t tokens, sipp__gw_hold *hold,
                            uint32_t *retry_after_s) {
    *hold = (sipp__gw_hold){0, false};
    if (!tok.per_minute || tokens == 0) return 1;
    double now = mono_now();
    bool probe;
    if (use_redis(l, now, &probe)) {
        int rc = sipp__gw_redis_reserve(l->redis, KIND[scope], id, tok, tokens, &hold->tokens,
                                        retry_after_s);
        report(l, rc >= 0, probe, now);
        if (rc >= 0) return rc;
    }
    if (l->redis && fall_back(l) < 0) return -1;
    hold->local = true;
    return sipp__gw_limiter_reserve(l->tab[scope], id, tok, tokens, mono_now(), &hold->tokens,
                                    retry_after_s)
               ? 1
               : 0;
}

void sipp__gw_limits_settle(sipp__gw_limits *l, sipp__gw_scope scope, const char *id,
                            sipp__gw_rate tok, sipp__gw_hold *hold, uint64_t used) {
    uint64_t held = hold->tokens;
    bool local = hold->local;
    *hold = (sipp__gw_hold){0, false};
    if (!tok.per_minute || held == used) return;
    double now = mono_now();
    bool probe;
    if (!local && use_redis(l, now, &probe)) {
        int rc = sipp__gw_redis_settle(l->redis, KIND[scope], id, tok, held, used);
        report(l, rc == 0, probe, now);
        if (rc == 0) return;
    }
    /* In process: where the hold came from, or Redis failed now (a debt is better charged
     * here than forgotten; a refund here only credits this process's own bucket, capped). */
    if (!local && l->redis) atomic_fetch_add(&l->fallbacks, 1);
    sipp__gw_limiter_settle(l->tab[scope], id, tok, held, used, mono_now());
}

void sipp__gw_limits_get_stats(sipp__gw_limits *l, sipp__gw_limits_stats *out) {
    out->shared = l->redis != NULL;
    pthread_mutex_lock(&l->mu);
    out->local_mode = l->redis && l->br.open;
    pthread_mutex_unlock(&l->mu);
    out->redis_errors = atomic_load(&l->redis_errors);
    out->fallbacks = atomic_load(&l->fallbacks);
}
