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

/* Registers a provider target (synchronously: nothing is sent until the first request). */
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
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_add_provider(gw->client, t->cfg->name, &pp, &t->ep, &err) != SIPP_OK) {
        snprintf(errbuf, errcap, "target '%s': %s", t->cfg->name, err.message);
        return -1;
    }
    set_caps(t);
    atomic_store(&t->state, GW_TARGET_READY);
    return 0;
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
