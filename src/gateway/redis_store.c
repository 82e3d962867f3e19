/*
 * redis_store.c — token buckets in Redis (redis_store.h).
 *
 * Why a Lua script (EVALSHA) and not MULTI: a token bucket is read-modify-write (read the
 * level and its timestamp, refill, compare, write). MULTI/EXEC cannot use a value it read
 * inside the transaction, so it would need WATCH and a retry loop, several round trips and
 * retries under exactly the contention a shared limit sees. A script runs atomically on the
 * server in one round trip, and it reads the server's clock (TIME), so gateways on hosts with
 * skewed clocks still agree. EVALSHA sends only the script's SHA-1; on NOSCRIPT (a restarted or
 * flushed Redis) the store sends the script once with EVAL, which caches it again.
 *
 * Layout: one hash per bucket key (`<prefix>rl:<key>`) with fields r/rts (request level and
 * its time) and t/tts (token level and its time). A field that is absent means "full". The
 * hash expires when all its buckets would be full again, so idle keys cost nothing.
 *
 * Invariants: a context in the pool is connected and has no pending reply; a context that saw
 * any error is freed, never reused. `down_until` is read and written under `mu`.
 */
#define _GNU_SOURCE
#include "redis_store.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX 16

static const char SCRIPT[] =
    "local rpm, rcap, tpm, tcap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), "
    "tonumber(ARGV[4])\n"
    "local charge = tonumber(ARGV[5])\n"
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
    "local ok, wait = 1, 0\n"
    "if charge < 0 then\n"
    "  if r and r < 1 then ok = 0; wait = math.ceil((1 - r) * 60 / rpm) end\n"
    "  if t and t <= 0 then ok = 0; wait = math.max(wait, math.ceil((1 - t) * 60 / tpm)) end\n"
    "  if ok == 1 and r then r = r - 1 end\n"
    "elseif t then\n"
    "  t = math.max(t - charge, -10 * tpm)\n"
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
    "return {ok, wait}\n";

struct sipp__gw_redis {
    sipp__gw_redis_addr addr;
    char *password;
    char *prefix;
    struct timeval tv;
    char sha[41];
    pthread_mutex_t mu;
    redisContext *pool[POOL_MAX];
    size_t n_pool;
    double down_until; /* monotonic seconds; while now < this, fail at once */
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

static void mark_down(sipp__gw_redis *r) {
    pthread_mutex_lock(&r->mu);
    r->down_until = mono_now() + 1.0;
    pthread_mutex_unlock(&r->mu);
}

/* A command that must answer with a status (AUTH, SELECT). */
static bool setup_cmd(redisContext *c, int argc, const char **argv) {
    redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep) freeReplyObject(rep);
    return ok;
}

/* A pooled or fresh connection, or NULL while Redis is down. */
static redisContext *get_conn(sipp__gw_redis *r) {
    pthread_mutex_lock(&r->mu);
    if (mono_now() < r->down_until) {
        pthread_mutex_unlock(&r->mu);
        return NULL;
    }
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
        mark_down(r);
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

/* Runs the script; charge < 0 = take. Returns 1/0 as take, -1 on any failure. */
static int run_script(sipp__gw_redis *r, const char *key, sipp__gw_rate req, sipp__gw_rate tok,
                      long long charge, uint32_t *retry_after_s) {
    size_t kl = strlen(r->prefix) + 3 + strlen(key) + 1;
    char *full = malloc(kl);
    if (!full) return -1;
    snprintf(full, kl, "%srl:%s", r->prefix, key);
    char a[5][24];
    snprintf(a[0], sizeof a[0], "%u", req.per_minute);
    snprintf(a[1], sizeof a[1], "%u", req.burst ? req.burst : req.per_minute);
    snprintf(a[2], sizeof a[2], "%u", tok.per_minute);
    snprintf(a[3], sizeof a[3], "%u", tok.burst ? tok.burst : tok.per_minute);
    snprintf(a[4], sizeof a[4], "%lld", charge);
    const char *argv[9] = {"EVALSHA", r->sha, "1", full, a[0], a[1], a[2], a[3], a[4]};
    redisContext *c = get_conn(r);
    if (!c) {
        free(full);
        return -1;
    }
    redisReply *rep = redisCommandArgv(c, 9, argv, NULL);
    if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(rep);
        argv[0] = "EVAL";
        argv[1] = SCRIPT;
        rep = redisCommandArgv(c, 9, argv, NULL);
    }
    free(full);
    int out = -1;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[1]->type == REDIS_REPLY_INTEGER) {
        out = rep->element[0]->integer ? 1 : 0;
        if (!out && retry_after_s) {
            long long w = rep->element[1]->integer;
            *retry_after_s = (uint32_t)(w < 1 ? 1 : w > 3600 ? 3600 : w);
        }
    }
    bool healthy = rep != NULL; /* a NULL reply is a timeout or a broken connection */
    if (rep) freeReplyObject(rep);
    put_conn(r, c, healthy);
    if (!healthy) mark_down(r);
    return out;
}

int sipp__gw_redis_take(sipp__gw_redis *r, const char *key, sipp__gw_rate req, sipp__gw_rate tok,
                        uint32_t *retry_after_s) {
    if (!req.per_minute && !tok.per_minute) return 1;
    return run_script(r, key, req, tok, -1, retry_after_s);
}

int sipp__gw_redis_charge(sipp__gw_redis *r, const char *key, sipp__gw_rate tok, uint64_t tokens) {
    if (!tok.per_minute || tokens == 0) return 0;
    sipp__gw_rate none = {0, 0};
    long long n = tokens > (uint64_t)1 << 40 ? (long long)1 << 40 : (long long)tokens;
    return run_script(r, key, none, tok, n, NULL) < 0 ? -1 : 0;
}
