/*
 * policy.h — the gateway's pure policy logic, no I/O and no threads of its own: IP addresses and
 * CIDR ranges (client IP, trusted proxies, blocklist), the token-bucket rate limiter keyed by
 * client IP or caller (requests and tokens per minute), and the admission counters
 * (global and per-caller concurrency). Unit-tested in tests/unit/test_gw_policy.c.
 *
 * A limiter is one table of keys in memory behind its own mutex (the gateway keeps one for client
 * addresses and one for callers); redis_store.h implements the same take/reserve/settle interface
 * in Redis for [redis] url, with the breaker below deciding when Redis is skipped.
 */
#ifndef SIPP_GATEWAY_POLICY_H
#define SIPP_GATEWAY_POLICY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- addresses --------------------------------------------------------------------------- */

/* An IPv4 address is kept as its IPv4-mapped IPv6 form, so one comparison covers both. */
typedef struct sipp__gw_ip {
    uint8_t b[16];
} sipp__gw_ip;

typedef struct sipp__gw_cidr {
    sipp__gw_ip net;
    unsigned prefix; /* 0..128 over the 16-byte form */
} sipp__gw_cidr;

/* Parses "1.2.3.4" or "::1" (no brackets, no port, no zone). */
bool sipp__gw_ip_parse(const char *s, sipp__gw_ip *out);
/* Parses "10.0.0.0/8", "fd00::/8" or a single address (a full-length prefix). Host bits past
 * the prefix must be zero. */
bool sipp__gw_cidr_parse(const char *s, sipp__gw_cidr *out);
bool sipp__gw_cidr_match(const sipp__gw_cidr *c, const sipp__gw_ip *ip);
bool sipp__gw_cidr_list_match(const sipp__gw_cidr *list, size_t n, const sipp__gw_ip *ip);
/* Writes the address in its usual text form (IPv4 dotted for mapped addresses). */
void sipp__gw_ip_format(const sipp__gw_ip *ip, char *buf, size_t cap);
/* Writes the rate-limit identity of a client address: an IPv4 address (plain or IPv4-mapped) as
 * itself, an IPv6 address as its /64 ("2001:db8:1:2::/64"): one subscriber usually holds a whole
 * /64, so per-address keys would give it 2^64 fresh buckets. cap >= 64 always fits. */
void sipp__gw_ip_rate_key(const sipp__gw_ip *ip, char *buf, size_t cap);

/* Picks the client IP. `peer` is the TCP peer; `header` the X-Forwarded-For or X-Real-IP
 * value (may be NULL). The header is believed only when the peer is a trusted proxy; for
 * X-Forwarded-For the rightmost address that is not itself a trusted proxy is the client. An
 * unparsable header falls back to the peer. */
sipp__gw_ip sipp__gw_client_ip(const sipp__gw_ip *peer, const char *header, bool is_xff,
                               const sipp__gw_cidr *trusted, size_t n_trusted);

/* ---- constant-time comparison ------------------------------------------------------------ */

/* Compares two 32-byte digests in time independent of their content. */
bool sipp__gw_digest_equal(const uint8_t a[32], const uint8_t b[32]);

/* ---- rate limits ------------------------------------------------------------------------- */

/* One limit: `per_minute` units refill evenly over a minute up to `burst` (0 = per_minute). */
typedef struct sipp__gw_rate {
    uint32_t per_minute; /* 0 = unlimited */
    uint32_t burst;
} sipp__gw_rate;

typedef struct sipp__gw_limiter sipp__gw_limiter;

/* `max_keys` bounds memory: a new key past it evicts the least recently used one in O(1) (the
 * table is a hash map threaded on an LRU list). An evicted key comes back with full buckets. */
sipp__gw_limiter *sipp__gw_limiter_new(size_t max_keys);
void sipp__gw_limiter_free(sipp__gw_limiter *l);

/* Request check for `key` at time now_s (seconds, monotonic): needs one request unit under
 * `req` and a token level above zero under `tok` (a key in debt waits until it refills). Takes
 * the request unit on success. On refusal returns false with *retry_after_s >= 1. */
bool sipp__gw_limiter_take(sipp__gw_limiter *l, const char *key, sipp__gw_rate req,
                           sipp__gw_rate tok, double now_s, uint32_t *retry_after_s);
/* Reserves `tokens` (a request's prompt estimate + its output bound) from `key`'s token bucket
 * before the request runs, so parallel requests cannot all spend the same budget. It fits when
 * the level covers it, or, for a reservation larger than the whole bucket, when the bucket is
 * full (the level then goes negative: a big request is possible, and the overshoot is at most
 * that one reservation). *held receives what was taken (the level never drops below ten
 * minutes of debt, so it may be less than `tokens`); pass it to settle. On refusal returns false
 * with *held = 0 and *retry_after_s >= 1. Unlimited (`tok.per_minute` 0): true, *held = 0. */
bool sipp__gw_limiter_reserve(sipp__gw_limiter *l, const char *key, sipp__gw_rate tok,
                              uint64_t tokens, double now_s, uint64_t *held,
                              uint32_t *retry_after_s);
/* Settles a finished request: gives back `held - used` when it used less than it reserved,
 * charges `used - held` as debt when it used more (held 0 = a plain after-the-fact charge). The
 * level stays within [-10 minutes of refill, burst]. */
void sipp__gw_limiter_settle(sipp__gw_limiter *l, const char *key, sipp__gw_rate tok,
                             uint64_t held, uint64_t used, double now_s);
size_t sipp__gw_limiter_size(sipp__gw_limiter *l);
/* Whether `key` has an entry (tests: eviction order). Does not touch its recency. */
bool sipp__gw_limiter_has(sipp__gw_limiter *l, const char *key);

/* ---- breaker for a shared store ---------------------------------------------------------- */

/* Decides when the shared store (Redis) is skipped for the in-process limiter. Closed: every
 * operation tries the store; a failed one falls back for itself alone. It opens after
 * `trip_after` consecutive failures that are separate in time: an operation that started before
 * the previous failure was seen belongs to the same stall (eight requests caught by one 50 ms
 * pause count once). Open: operations skip the store, except one probe every `probe_every_s`;
 * a successful probe closes it. Not thread-safe: the owner serialises calls. */
typedef struct sipp__gw_breaker {
    unsigned trip_after;
    double probe_every_s;
    bool open, probing;
    unsigned fails;
    double last_fail_s, next_probe_s;
} sipp__gw_breaker;

void sipp__gw_breaker_init(sipp__gw_breaker *b, unsigned trip_after, double probe_every_s);
/* Whether an operation starting at now_s should try the store; *probe is set when it is the
 * open breaker's probe (report its outcome with done, as for any attempt). */
bool sipp__gw_breaker_allow(sipp__gw_breaker *b, double now_s, bool *probe);
/* Reports an attempt that started at started_s and ended at now_s. Returns true when this
 * changed the mode (opened or closed the breaker). */
bool sipp__gw_breaker_done(sipp__gw_breaker *b, bool ok, bool probe, double started_s,
                           double now_s);

/* ---- admission --------------------------------------------------------------------------- */

/* Global and per-caller in-flight counters. Callers are indexed 0..n_callers-1. */
typedef struct sipp__gw_admission {
    pthread_mutex_t mu;
    uint32_t global_max, global_active;
    uint32_t *caller_max, *caller_active;
    size_t n_callers;
} sipp__gw_admission;

int sipp__gw_admission_init(sipp__gw_admission *a, uint32_t global_max, const uint32_t *caller_max,
                            size_t n_callers);
void sipp__gw_admission_destroy(sipp__gw_admission *a);
/* Takes a permit for `caller` (or SIZE_MAX for none); false when a limit is full. */
bool sipp__gw_admission_acquire(sipp__gw_admission *a, size_t caller);
void sipp__gw_admission_release(sipp__gw_admission *a, size_t caller);
uint32_t sipp__gw_admission_active(sipp__gw_admission *a);
/* Reads / changes the global limit (0 = none); permits already taken stay valid. */
uint32_t sipp__gw_admission_global_max(sipp__gw_admission *a);
void sipp__gw_admission_set_global_max(sipp__gw_admission *a, uint32_t max);
/* Sets the concurrency limit of caller index `caller` (< n_callers; 0 = none): a reload. */
void sipp__gw_admission_set_caller_max(sipp__gw_admission *a, size_t caller, uint32_t max);

#endif
