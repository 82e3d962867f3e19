/*
 * targets.c — the lifecycle of the gateway's targets: provider targets are registered with
 * libsipp when the gateway starts (nothing is sent before the first request); local targets
 * are loaded one after the other by a loader thread, so the listeners answer at once and
 * /readyz says 503 `loading` until every target is loaded.
 *
 * A target's state goes LOADING -> READY or LOADING -> FAILED once (an atomic: request threads
 * read it without a lock); ep and the capabilities are written before the state turns READY
 * and never after. The loader stops between targets when the gateway shuts down. Engine
 * counters are read through libsipp (thread-safe) and only for loaded local targets.
 */
#define _GNU_SOURCE
#include "gateway_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        t->vision = info.vision;
        t->n_embd = info.can_embed ? info.n_embd : 0;
    }
}

static void *loader_main(void *arg) {
    sipp__gw *gw = arg;
    for (size_t i = 0; i < gw->n_targets; i++) {
        gw_target *t = &gw->targets[i];
        if (t->cfg->type != SIPP__GW_LOCAL) continue;
        const sipp__gw_runtime *rt = &t->cfg->runtime;
        sipp_local_params lp = rt->local; /* the [targets.runtime] keys over the defaults */
        lp.model_path = t->cfg->model;
        lp.sha256 = t->cfg->sha256;
        if (!rt->cache) lp.cache_ram_bytes = SIPP_CACHE_DISABLED;
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

/* The credential headers of the active probe, as the provider sends them (malloc'd lines in
 * h, *n of them; room for 2). Unset variables give no header: the probe then fails if the peer
 * wants one, as requests would. */
static void probe_headers(const sipp__gw_target *c, char **h, size_t *n) {
    *n = 0;
    const char *env = c->provider.api_key_env ? c->provider.api_key_env : c->token_env;
    const char *key = env ? getenv(env) : NULL;
    if (!key || !*key) return;
    if (c->type == SIPP__GW_ANTHROPIC) {
        if (asprintf(&h[*n], "x-api-key: %s", key) >= 0) (*n)++;
        if (asprintf(&h[*n], "anthropic-version: %s", c->provider.version ? c->provider.version : "2023-06-01") >= 0)
            (*n)++;
    } else if (asprintf(&h[*n], "Authorization: Bearer %s", key) >= 0) {
        (*n)++;
    }
}

/* "host:port" of a base URL (malloc'd): the label that metrics and the dashboard show, never
 * a path or a query of it. */
static char *url_host(const char *url) {
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, "/?#");
    const char *at = memchr(h, '@', n); /* userinfo is refused earlier; never shown anyway */
    if (at) {
        n -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    return strndup(h, n);
}

/* The pool of a remote target over its endpoints (docs/gateway.md "Upstream pools"). */
static int make_pool(gw_target *t, char *errbuf, size_t errcap) {
    const sipp__gw_target *c = t->cfg;
    const sipp__gw_pool_cfg *pc = &c->pool;
    char *h[2] = {NULL, NULL};
    size_t nh = 0;
    if (pc->health_path) probe_headers(c, h, &nh);
    sipp__gw_pool_params pp = {
        .target = c->name,
        .urls = t->replica_urls,
        .hosts = (const char *const *)t->replica_hosts,
        .n = t->n_eps,
        .health_path = pc->health_path,
        .probe_headers = (const char *const *)h,
        .n_probe_headers = nh,
        .probe_interval_ms = pc->health_interval_seconds * 1000u,
        .probe_timeout_ms = pc->health_timeout_seconds * 1000u,
        .policy = {.failure_threshold = pc->failure_threshold,
                   .backoff_initial_s = pc->backoff_initial_seconds,
                   .backoff_max_s = pc->backoff_max_seconds},
    };
    t->pool = sipp__gw_pool_new(&pp);
    for (size_t i = 0; i < nh; i++) {
        explicit_bzero(h[i], strlen(h[i]));
        free(h[i]);
    }
    if (!t->pool) {
        snprintf(errbuf, errcap, "target '%s': out of memory", c->name);
        return -1;
    }
    return 0;
}

/* Registers a provider target, one endpoint per replica (synchronously: nothing is sent until
 * the first request). Replica k > 0 is the client endpoint "<name> <k>" (names have no
 * spaces, so no id collides with a target's). */
static int add_provider(sipp__gw *gw, gw_target *t, char *errbuf, size_t errcap) {
    sipp_provider_params pp = t->cfg->provider; /* its TOML keys, over the defaults */
    switch (t->cfg->type) {
    case SIPP__GW_OPENAI: pp.kind = SIPP_PROVIDER_OPENAI; break;
    case SIPP__GW_OPENAI_COMPATIBLE:
        pp.kind = SIPP_PROVIDER_OPENAI_COMPATIBLE;
        pp.api_key_env = t->cfg->token_env; /* NULL: no key */
        break;
    case SIPP__GW_ANTHROPIC: pp.kind = SIPP_PROVIDER_ANTHROPIC; break;
    default: snprintf(errbuf, errcap, "target '%s': not a provider", t->cfg->name); return -1;
    }
    pp.model = t->cfg->model;
    if (t->cfg->timeout_seconds) pp.request_timeout_ms = t->cfg->timeout_seconds * 1000u;
    size_t n = t->cfg->n_base_urls ? t->cfg->n_base_urls : 1;
    t->eps = calloc(n, sizeof *t->eps);
    t->replica_urls = calloc(n, sizeof *t->replica_urls);
    t->replica_hosts = calloc(n, sizeof *t->replica_hosts);
    if (!t->eps || !t->replica_urls || !t->replica_hosts) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        pp.base_url = t->cfg->n_base_urls ? t->cfg->base_urls[k] : NULL;
        t->replica_urls[k] = pp.base_url ? pp.base_url : "(default)";
        t->replica_hosts[k] = pp.base_url ? url_host(pp.base_url) : strdup("(default)");
        if (!t->replica_hosts[k]) {
            snprintf(errbuf, errcap, "out of memory");
            return -1;
        }
        char id[160];
        if (k == 0) snprintf(id, sizeof id, "%s", t->cfg->name);
        else snprintf(id, sizeof id, "%s %zu", t->cfg->name, k);
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        if (sipp_client_add_provider(gw->client, id, &pp, &t->eps[k], &err) != SIPP_OK) {
            snprintf(errbuf, errcap, "target '%s'%s%.200s: %s", t->cfg->name,
                     n > 1 ? ", replica " : "", n > 1 ? t->replica_hosts[k] : "", err.message);
            return -1;
        }
        t->n_eps = k + 1;
    }
    t->ep = t->eps[0];
    if (make_pool(t, errbuf, errcap) != 0) return -1;
    set_caps(t);
    atomic_store(&t->state, GW_TARGET_READY);
    return 0;
}

void sipp__gw_targets_free(sipp__gw *gw) {
    for (size_t i = 0; gw->targets && i < gw->n_targets && gw->targets[i].cfg; i++) {
        sipp__gw_pool_free(gw->targets[i].pool);
        gw->targets[i].pool = NULL;
        free(gw->targets[i].eps);
        size_t n = gw->targets[i].cfg->n_base_urls ? gw->targets[i].cfg->n_base_urls : 1;
        for (size_t k = 0; gw->targets[i].replica_hosts && k < n; k++)
            free(gw->targets[i].replica_hosts[k]);
        free(gw->targets[i].replica_hosts);
        free(gw->targets[i].replica_urls);
    }
}

int sipp__gw_targets_init(sipp__gw *gw, char *errbuf, size_t errcap) {
    sipp__gw_config *c = &gw->cfg;
    gw->n_targets = c->n_targets;
    gw->targets = calloc(c->n_targets + 1, sizeof *gw->targets);
    gw->target_names = calloc(c->n_targets + 1, sizeof *gw->target_names);
    gw->target_types = calloc(c->n_targets + 1, sizeof *gw->target_types);
    if (!gw->targets || !gw->target_names || !gw->target_types) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->n_targets; i++) {
        gw->targets[i].cfg = &c->targets[i];
        gw->target_names[i] = c->targets[i].name;
        gw->target_types[i] = sipp__gw_target_type_name(c->targets[i].type);
        atomic_init(&gw->targets[i].state, GW_TARGET_LOADING);
    }
    for (size_t i = 0; i < c->n_targets; i++)
        if (c->targets[i].type != SIPP__GW_LOCAL &&
            add_provider(gw, &gw->targets[i], errbuf, errcap) != 0)
            return -1;
    return 0;
}

int sipp__gw_targets_start_loader(sipp__gw *gw) {
    if (pthread_create(&gw->loader, NULL, loader_main, gw) != 0) return -1;
    gw->loader_started = true;
    return 0;
}

int sipp__gw_readiness(sipp__gw *gw, const char **text) {
    bool loading = false, failed = false, stalled = false;
    for (size_t i = 0; i < gw->n_targets; i++) {
        int st = atomic_load(&gw->targets[i].state);
        loading |= st == GW_TARGET_LOADING;
        failed |= st == GW_TARGET_FAILED;
        sipp_engine_stats es;
        sipp_engine_stats_init(&es, sizeof es);
        stalled |= sipp__gw_target_stats(gw, i, &es) && es.stalled;
    }
    *text = atomic_load(&gw->shutting_down) ? "shutting down"
            : loading                       ? "loading"
            : failed                        ? "a target failed to load"
            : stalled                       ? "a target's engine is stalled"
                                            : "ready";
    return strcmp(*text, "ready") == 0 ? 200 : 503;
}
