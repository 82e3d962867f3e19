/*
 * metrics.h — the gateway's Prometheus registry (metrics.c). The pipeline records into it;
 * /metrics renders it together with a snapshot of gauges the gateway takes at that moment
 * (sipp__gw_metrics_live). The registry knows nothing of the gateway object: it sees targets
 * only as the names and types given at creation and the snapshot given at render time.
 */
#ifndef SIPP_GATEWAY_METRICS_H
#define SIPP_GATEWAY_METRICS_H

#include "codes.h"
#include "redis_store.h"

#include <sipp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_metrics gw_metrics;

/* `names` and `types` (n_targets each) must outlive the registry (they point into the
 * gateway's config). */
gw_metrics *sipp__gw_metrics_new(size_t n_targets, const char *const *names,
                                 const char *const *types);
void sipp__gw_metrics_free(gw_metrics *m);
/* target: index or -1 (none resolved). */
void sipp__gw_metrics_request(gw_metrics *m, gw_op op, int target, int status, gw_code code,
                              uint64_t in_tokens, uint64_t out_tokens);
void sipp__gw_metrics_observe_ttft(gw_metrics *m, int target, double seconds);
void sipp__gw_metrics_observe_itl(gw_metrics *m, int target, double seconds);
void sipp__gw_metrics_observe_e2e(gw_metrics *m, int target, double seconds);
void sipp__gw_metrics_observe_queue(gw_metrics *m, int target, double seconds);

/* Residency of one target at render time (docs/gateway.md "Residency"); `local` false for a
 * remote target (no series). */
typedef struct sipp__gw_metrics_residency {
    bool local;
    bool loaded;
    uint64_t loads, unloads_idle, unloads_budget, refused;
    uint64_t footprint; /* estimated bytes while loaded */
} sipp__gw_metrics_residency;

/* The gauges of one render, read by the gateway just before. Arrays have n_targets entries;
 * engine[i] is meaningful where have_engine[i] (a local target that is loaded). */
typedef struct sipp__gw_metrics_live {
    unsigned active;               /* requests admitted and not finished */
    unsigned long log_dropped;     /* sipp__gw_log_dropped() */
    sipp__gw_limits_stats limits;  /* the rate-limit store */
    const bool *ready;
    const bool *have_engine;
    const sipp_engine_stats *engine;
    /* residency: n_targets entries (NULL = none), the estimated bytes of loaded and loading
     * models, and the budget (0 = none) */
    const sipp__gw_metrics_residency *res;
    uint64_t memory_used_bytes, memory_budget_bytes;
} sipp__gw_metrics_live;

/* The Prometheus text of everything (malloc'd), or NULL when out of memory. */
char *sipp__gw_metrics_render(gw_metrics *m, const sipp__gw_metrics_live *live);

#endif
