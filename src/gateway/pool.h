/*
 * pool.h — upstream pools: the replicas (base URLs) of one remote target, which one serves the
 * next attempt of a request, and their health (docs/gateway.md "Upstream pools").
 *
 * Two layers. The pure one (sipp__pool_*) is the health state machine, the backoff and the
 * choice of a replica over plain arrays, with the time passed in: unit-tested alone
 * (tests/unit/test_gw_pool.c). The pool object (sipp__gw_pool_*) holds one target's replicas
 * under a mutex, counts outstanding requests, runs the active probe on a thread of its own and
 * renders its metrics and its dashboard rows. It knows nothing of the gateway object or of
 * libsipp endpoints: the gateway maps a replica index to its endpoint.
 */
#ifndef SIPP_GATEWAY_POOL_H
#define SIPP_GATEWAY_POOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the pure layer -------------------------------------------------------------------- */

typedef struct sipp__pool_policy {
    uint32_t failure_threshold; /* consecutive soft failures that take a replica out (>= 1) */
    double backoff_initial_s;   /* the first time out; doubled on each failed return ... */
    double backoff_max_s;       /* ... up to this */
} sipp__pool_policy;

/* One replica's health and load. */
typedef struct sipp__pool_replica {
    bool healthy;
    uint32_t failures;  /* consecutive failed attempts (soft and hard) */
    uint32_t ejections; /* times out since the last request it served: the backoff exponent */
    double retry_at;    /* out: when it is probed (or, without a probe, let back in) */
    uint32_t outstanding;
} sipp__pool_replica;

/* How an attempt on a replica ended, as far as the replica's health goes. */
typedef enum sipp__pool_outcome {
    SIPP__POOL_NEUTRAL, /* the request's own doing (400, 401, cancelled): says nothing */
    SIPP__POOL_OK,
    SIPP__POOL_BUSY,    /* 429, 503 busy: counted, out at the threshold */
    SIPP__POOL_SOFT,    /* another 5xx, a broken stream: counted, out at the threshold */
    SIPP__POOL_HARD,    /* connect failure, timeout: out at once */
} sipp__pool_outcome;

/* The time out after `ejections` consecutive ones (>= 1): initial * 2^(ejections-1), capped. */
double sipp__pool_backoff(const sipp__pool_policy *p, uint32_t ejections);
/* Records an attempt's outcome at `now`. Returns true when the replica went out or came back
 * (a request served by a replica that is out, when every replica was out, brings it back). */
bool sipp__pool_record(sipp__pool_replica *r, const sipp__pool_policy *p, sipp__pool_outcome o,
                       double now);
/* Records an active probe's result. A failed probe takes a healthy replica out and moves an
 * out one's next try further (backoff); a good one brings it back. True when it changed. */
bool sipp__pool_probe_result(sipp__pool_replica *r, const sipp__pool_policy *p, bool ok,
                             double now);
/* The rendezvous score of replica `id` for an affinity key (32 bytes): the highest score among
 * the candidates wins, so a replica leaving or coming back moves only its own keys. */
uint64_t sipp__pool_score(const uint8_t key[32], const char *id);
/* Chooses a replica among the `n` (at most 64) not in the `tried` bit set: the healthy ones, or
 * every untried one when no healthy one is left (better a try than a certain failure). With a
 * key: the candidate of the highest sipp__pool_score over ids[i]. Without: the fewest
 * outstanding, ties broken from `start` on (a rotating counter spreads them). -1 when every
 * replica was tried. */
int sipp__pool_choose(const sipp__pool_replica *reps, const char *const *ids, size_t n,
                      uint64_t tried, const uint8_t *key, size_t start);

/* ---- the pool object ------------------------------------------------------------------- */

#define SIPP__POOL_MAX_REPLICAS 64

typedef struct sipp__gw_pool sipp__gw_pool;

typedef struct sipp__gw_pool_params {
    const char *target;             /* the target's name (metrics labels), outlives the pool */
    const char *const *urls;        /* n base URLs (probes, affinity hashing), outlive the pool */
    const char *const *hosts;       /* n "host:port" of the URLs: labels of metrics and the
                                     * dashboard (never a path or a query); outlive the pool */
    size_t n;
    const char *health_path;        /* appended to each URL by the probe; NULL = no probe: an
                                     * out replica comes back when its backoff ends */
    const char *const *probe_headers; /* "Name: value" lines sent with probes (credentials) */
    size_t n_probe_headers;
    uint32_t probe_interval_ms;     /* healthy replicas are probed this often */
    uint32_t probe_timeout_ms;
    sipp__pool_policy policy;
} sipp__gw_pool_params;

/* A pool with every replica healthy, its probe thread started when there is a health_path.
 * NULL when out of memory. Strings of `p` are copied (urls and target are not). */
sipp__gw_pool *sipp__gw_pool_new(const sipp__gw_pool_params *p);
/* Stops the probe thread (waits for a probe in progress) and frees. NULL: no-op. */
void sipp__gw_pool_free(sipp__gw_pool *pool);
size_t sipp__gw_pool_size(const sipp__gw_pool *pool);
/* Takes a replica for one attempt (sipp__pool_choose; counted outstanding until released).
 * -1 when every replica is in `tried`. */
int sipp__gw_pool_acquire(sipp__gw_pool *pool, const uint8_t *key, uint64_t tried);
/* Ends the attempt on replica i: its outcome and how long it took (seconds). */
void sipp__gw_pool_release(sipp__gw_pool *pool, int i, sipp__pool_outcome o, double seconds);
/* A retry of a request on another replica (metrics). */
void sipp__gw_pool_count_retry(sipp__gw_pool *pool);
/* The Prometheus text of every pool's series (NULL entries skipped), each family's HELP and
 * TYPE once, labelled target, replica (its index in base_urls) and host: malloc'd, "" when
 * there is no pool, NULL when out of memory. */
char *sipp__gw_pools_render(sipp__gw_pool *const *pools, size_t n);
/* The replicas as the dashboard lists them (a JSON array, new reference). */
json_t *sipp__gw_pool_json(sipp__gw_pool *pool);

#endif
