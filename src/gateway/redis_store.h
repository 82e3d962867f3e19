/*
 * redis_store.h — the rate-limit store in Redis ([redis] url): the same token buckets as the
 * in-memory limiter (policy.h), kept in one Redis so several gateway processes enforce one
 * shared limit. Every update is one EVALSHA of a Lua script (atomic on the server, one round
 * trip, the server's clock for refills). Connections come from a small pool; connecting and
 * every command are bounded by timeout_ms, and after a failure the store stays "down" for a
 * second (answers -1 at once) instead of making every request wait for another timeout.
 */
#ifndef SIPP_GATEWAY_REDIS_STORE_H
#define SIPP_GATEWAY_REDIS_STORE_H

#include "config.h"
#include "policy.h"

typedef struct sipp__gw_redis sipp__gw_redis;

/* Parses nothing from the network: creating never connects (the first request does), so a
 * gateway starts while Redis is down. `password` may be NULL. Strings are copied. */
sipp__gw_redis *sipp__gw_redis_new(const sipp__gw_redis_addr *addr, const char *password,
                                   uint32_t timeout_ms, const char *key_prefix);
void sipp__gw_redis_free(sipp__gw_redis *r);

/* As sipp__gw_limiter_take: 1 = allowed (the request unit taken), 0 = refused with
 * *retry_after_s >= 1, -1 = Redis unreachable or failing (nothing known). */
int sipp__gw_redis_take(sipp__gw_redis *r, const char *key, sipp__gw_rate req, sipp__gw_rate tok,
                        uint32_t *retry_after_s);
/* As sipp__gw_limiter_charge: 0 or -1. */
int sipp__gw_redis_charge(sipp__gw_redis *r, const char *key, sipp__gw_rate tok, uint64_t tokens);

#endif
