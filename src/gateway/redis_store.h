/*
 * redis_store.h — the gateway's rate-limit store.
 *
 * Two layers. sipp__gw_redis is the Redis side ([redis] url): the same token buckets as the
 * in-memory limiter (policy.h), kept in one Redis so several gateway processes enforce one
 * shared limit. Every update is one EVALSHA of a Lua script (atomic on the server, one round
 * trip, the server's clock for refills). Connections come from a small pool; connecting and
 * every command are bounded by timeout_ms.
 *
 * sipp__gw_limits is what the pipeline calls: two in-process tables (client addresses and
 * callers, apart so that a flood of addresses never evicts a caller's state) and, when
 * configured, Redis in front of them. An operation Redis fails (error, timeout) is decided by the
 * in-process table instead, for that operation alone; a breaker (policy.h) switches every
 * operation to the in-process tables only after repeated failures, probes Redis once a second
 * and switches back when it answers. Each switch is logged once. With on_error = "closed" a
 * failed operation is refused (-1) instead of falling back.
 */
#ifndef SIPP_GATEWAY_REDIS_STORE_H
#define SIPP_GATEWAY_REDIS_STORE_H

#include "config.h"
#include "policy.h"

/* ---- Redis -------------------------------------------------------------------------------- */

typedef struct sipp__gw_redis sipp__gw_redis;

/* Parses nothing from the network: creating never connects (the first request does), so a
 * gateway starts while Redis is down. `password` may be NULL. Strings are copied. */
sipp__gw_redis *sipp__gw_redis_new(const sipp__gw_redis_addr *addr, const char *password,
                                   uint32_t timeout_ms, const char *key_prefix);
void sipp__gw_redis_free(sipp__gw_redis *r);

/* The bucket of `kind`:`id` lives under the key `<prefix>rl:<kind>:<id>`. Each call answers as
 * its sipp__gw_limiter_* counterpart, or -1 when Redis is unreachable or failing (nothing
 * known, nothing changed that the caller can rely on). */
/* 1 = allowed (the request unit taken), 0 = refused with *retry_after_s >= 1. */
int sipp__gw_redis_take(sipp__gw_redis *r, const char *kind, const char *id, sipp__gw_rate req,
                        sipp__gw_rate tok, uint32_t *retry_after_s);
/* 1 = reserved (*held as sipp__gw_limiter_reserve), 0 = refused with *retry_after_s >= 1. */
int sipp__gw_redis_reserve(sipp__gw_redis *r, const char *kind, const char *id, sipp__gw_rate tok,
                           uint64_t tokens, uint64_t *held, uint32_t *retry_after_s);
/* 0 = settled. */
int sipp__gw_redis_settle(sipp__gw_redis *r, const char *kind, const char *id, sipp__gw_rate tok,
                          uint64_t held, uint64_t used);

/* ---- the store the pipeline uses ----------------------------------------------------------- */

typedef enum sipp__gw_scope { SIPP__GW_SCOPE_IP, SIPP__GW_SCOPE_CALLER, SIPP__GW_N_SCOPES } sipp__gw_scope;

/* A request's token reservation in one bucket. Zero-initialised = nothing held. */
typedef struct sipp__gw_hold {
    uint64_t tokens; /* what was taken at admission */
    bool local;      /* taken from the in-process table (no Redis, or Redis failed then) */
} sipp__gw_hold;

typedef struct sipp__gw_limits sipp__gw_limits;

/* Takes ownership of `redis` (NULL: in-process tables only). max_ips bounds the address table
 * (least recently used evicted first); max_callers should cover every configured caller so that
 * the caller table never evicts. */
sipp__gw_limits *sipp__gw_limits_new(sipp__gw_redis *redis, bool fail_closed, size_t max_ips,
                                     size_t max_callers);
void sipp__gw_limits_free(sipp__gw_limits *l);

/* Request check for the key `id` of `scope` (sipp__gw_limiter_take). 1 = allowed, 0 = refused
 * (*retry_after_s set), -1 = Redis failed and on_error is "closed". */
int sipp__gw_limits_take(sipp__gw_limits *l, sipp__gw_scope scope, const char *id,
                         sipp__gw_rate req, sipp__gw_rate tok, uint32_t *retry_after_s);
/* Token reservation at admission (sipp__gw_limiter_reserve); *hold records what to settle.
 * Returns as take. */
int sipp__gw_limits_reserve(sipp__gw_limits *l, sipp__gw_scope scope, const char *id,
                            sipp__gw_rate tok, uint64_t tokens, sipp__gw_hold *hold,
                            uint32_t *retry_after_s);
/* Settles a finished request against its hold (refund or debt) in the store the hold came
 * from; *hold is cleared. A zero hold charges `used` as debt. */
void sipp__gw_limits_settle(sipp__gw_limits *l, sipp__gw_scope scope, const char *id,
                            sipp__gw_rate tok, sipp__gw_hold *hold, uint64_t used);

typedef struct sipp__gw_limits_stats {
    bool shared;             /* [redis] configured */
    bool local_mode;         /* the breaker has switched to the in-process tables */
    uint64_t redis_errors;   /* Redis operations that failed (error, timeout, unreachable) */
    uint64_t fallbacks;      /* operations decided in process because Redis failed or was skipped */
} sipp__gw_limits_stats;
void sipp__gw_limits_get_stats(sipp__gw_limits *l, sipp__gw_limits_stats *out);

#endif
