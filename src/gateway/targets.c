/*
 * targets.c — the lifecycle of the gateway's targets: provider targets are registered with
 * libsipp when the gateway starts (nothing is sent before the first request); local targets
 * are loaded one after the other by a loader thread, so the listeners answer at once and
 * /readyz says 503 `loading` until every target is loaded.
 *
 * A target's state goes LOADING -> READY or LOADING -> FAILED once (an atomic: request threads
 * read it without a lock); the capabilities are written before the state turns READY and never
 * after. The loader stops between targets when the gateway shuts down. Engine counters are read
 * through libsipp (thread-safe) and only for loaded local targets.
 *
 * Residency (docs/gateway.md "Residency"): a local target's model is UNLOADED, LOADING or
 * LOADED (res, under gw->res_mu with its ep, in-flight count and last use). load = "start"
 * targets are loaded by the loader thread; load = "on_use" ones are READY at once (capabilities
 * from sipp_model_inspect) and loaded by their first request, on its thread, while later ones
 * wait on res_cv. Before a load, residency.c plans which idle loaded targets to unload (least
 * recently used first, never one with requests in flight) to stay within [models]
 * memory_budget_bytes; when no plan fits the request gets 503. After the start loads the loader
 * thread stays to unload targets idle past their idle_unload_seconds. An unload is
 * sipp_client_remove: with no request holding the target, no run is cut.
 *
 * Targets are reference-counted instances shared by the generations that list them (gateway.c):
 * a reload that leaves a target unchanged keeps the same instance, model and KV cache. One that
 * changes it makes a new instance under a new client endpoint id ("name#k"); the old one is
 * freed, its endpoints removed, when the last generation holding it goes, after its last
 * request. The residency planner sees the targets of the requesting generation.
 */
#define _GNU_SOURCE
#include "gateway_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool sipp__gw_target_stats(sipp__gw *gw, gw_target *t, sipp_engine_stats *out) {
    if (t->cfg->type != SIPP__GW_LOCAL || atomic_load(&t->state) != GW_TARGET_READY)
        return false;
    pthread_mutex_lock(&gw->res_mu);
    sipp_endpoint *ep = t->res == SIPP__GW_RES_LOADED ? t->ep : NULL;
    pthread_mutex_unlock(&gw->res_mu);
    if (!ep) return false; /* unloaded: no engine (a handle stays valid after an unload) */
    sipp_engine_stats_init(out, sizeof *out);
    return sipp_endpoint_get_stats(ep, out, NULL) == SIPP_OK;
}

static void set_caps_from(gw_target *t, const sipp_endpoint_info *info) {
    t->can_generate = info->can_generate;
    t->can_chat = info->can_chat;
    t->can_embed = info->can_embed;
    t->vision = info->vision;
    t->audio_in = info->audio_in;
    t->n_embd = info->can_embed ? info->n_embd : 0;
}

static void set_caps(gw_target *t) {
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    if (sipp_endpoint_get_info(t->ep, &info, NULL) == SIPP_OK) set_caps_from(t, &info);
}

/* ---- residency (docs/gateway.md "Residency") ---------------------------------------------- */

/* The engine settings a local target loads with: its [targets.runtime] keys over the defaults. */
static sipp_local_params local_params(const gw_target *t) {
    const sipp__gw_runtime *rt = &t->cfg->runtime;
    sipp_local_params lp = rt->local;
    lp.model_path = t->cfg->model;
    lp.sha256 = t->cfg->sha256;
    if (!rt->cache) lp.cache_ram_bytes = SIPP_CACHE_DISABLED;
    return lp;
}

/* The footprint estimate of a local target from its model's metadata and its settings: the
 * weights' bytes plus an f16 KV cache of n_ctx x (resident sequences) positions over the layer
 * count estimated from the parameter count (residency.h) (the engine's defaults
 * when unset: n_ctx = the training context capped at 4096, 4 sequences; n_resident above
 * n_parallel keeps that many sequences in memory). */
static uint64_t footprint(const gw_target *t, const sipp_endpoint_info *info) {
    const sipp_local_params *lp = &t->cfg->runtime.local;
    uint32_t n_ctx = lp->n_ctx;
    if (!n_ctx) n_ctx = info->n_ctx_train && info->n_ctx_train < 4096 ? info->n_ctx_train : 4096;
    uint32_t n_seq = lp->n_parallel ? lp->n_parallel : 4;
    if (lp->n_resident > n_seq) n_seq = lp->n_resident;
    return sipp__gw_res_footprint(info->size_bytes, sipp__gw_res_layers(info->n_params, info->n_embd),
                                  info->n_embd, n_ctx, n_seq);
}

static void log_target(const char *level, const char *msg, const char *target, const char *k,
                       json_t *v) {
    json_t *x = json_pack("{s:s, s:o}", "target", target, k, v);
    sipp__gw_log(level, msg, x);
    json_decref(x);
}

/* Loads target t (its res is LOADING, set by the caller). Outside res_mu: takes long. */
static bool load_target(sipp__gw *gw, gw_target *t, char *why, size_t cap) {
    sipp_local_params lp = local_params(t);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    double t0 = sipp__gw_now();
    sipp_endpoint *ep = NULL;
    if (sipp_client_add_local(gw->client, t->ep_id, &lp, &ep, &err) != SIPP_OK) {
        snprintf(why, cap, "%s", err.message);
        log_target("error", "target failed to load", t->cfg->name, "error",
                   json_string(err.message));
        return false;
    }
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    /* capabilities are written once, before the target turns READY (an on_use target's came
     * from inspection at start; a reload after an unload leaves them) */
    if (sipp_endpoint_get_info(ep, &info, NULL) == SIPP_OK && !t->cfg->load_on_use &&
        atomic_load(&t->state) != GW_TARGET_READY)
        set_caps_from(t, &info);
    pthread_mutex_lock(&gw->res_mu);
    t->ep = ep;
    if (!t->res_footprint) t->res_footprint = footprint(t, &info); /* on_use: from inspection */
    t->res = SIPP__GW_RES_LOADED;
    t->res_loads++;
    t->res_last_used = sipp__gw_now();
    pthread_cond_broadcast(&gw->res_cv);
    pthread_mutex_unlock(&gw->res_mu);
    log_target("info", "target ready", t->cfg->name, "load_ms",
               json_real((sipp__gw_now() - t0) * 1000.0));
    return true;
}

/* Unloads loaded target t (no request holds it). Under res_mu: removing an idle endpoint only
 * joins its engine thread. */
static void unload_locked(sipp__gw *gw, gw_target *t, const char *reason) {
    sipp_client_remove(gw->client, t->ep_id, NULL);
    t->res = SIPP__GW_RES_UNLOADED;
    if (strcmp(reason, "idle") == 0) t->res_unloads_idle++;
    else t->res_unloads_budget++;
    log_target("info", "target unloaded", t->cfg->name, "reason", json_string(reason));
}

/* The planner's view of every target of generation g (remote ones count as nothing). Under
 * res_mu. */
static sipp__gw_res_entry *res_snapshot(const gw_gen *g) {
    sipp__gw_res_entry *e = calloc(g->n_targets + 1, sizeof *e);
    for (size_t i = 0; e && i < g->n_targets; i++) {
        const gw_target *t = g->targets[i];
        if (t->cfg->type != SIPP__GW_LOCAL) continue;
        e[i] = (sipp__gw_res_entry){t->res, t->res_footprint, t->res_in_use, t->res_last_used};
    }
    return e;
}

/* The residency loop of a request for local target r->target: returns 0 with the model held
 * (r->ep, r->resident), 1 when `defer` and the model is not loaded yet (r->res_load: this
 * request loads it, the state is LOADING and the budget made room; r->res_wait: another one
 * loads it), -1 when the budget cannot be met (503) and -2 when the load failed (500), with
 * the message in why. */
static int resident_loop(gw_req *r, bool defer, char *why, size_t cap) {
    sipp__gw *gw = r->gw;
    gw_target *t = r->tgt;
    const gw_gen *g = r->gen; /* the planner sees the request's generation */
    size_t i = 0;
    while (i < g->n_targets && g->targets[i] != t) i++;
    pthread_mutex_lock(&gw->res_mu);
    for (;;) {
        if (t->res == SIPP__GW_RES_LOADED) break;
        if (t->res == SIPP__GW_RES_LOADING) {
            if (defer) {
                r->res_wait = true;
                pthread_mutex_unlock(&gw->res_mu);
                return 1;
            }
            pthread_cond_wait(&gw->res_cv, &gw->res_mu);
            continue;
        }
        /* unloaded: make room, then load it on this request's thread */
        sipp__gw_res_entry *e = res_snapshot(g);
        size_t *victims = calloc(g->n_targets + 1, sizeof *victims), nv = 0;
        bool fits = e && victims &&
                    sipp__gw_res_plan(e, g->n_targets, i, gw->cfg.memory_budget_bytes,
                                      victims, &nv);
        uint64_t used = e ? sipp__gw_res_used(e, g->n_targets) : 0;
        for (size_t k = 0; fits && k < nv; k++) unload_locked(gw, g->targets[victims[k]], "budget");
        free(e);
        free(victims);
        if (!fits) {
            t->res_refused++;
            pthread_mutex_unlock(&gw->res_mu);
            snprintf(why, cap,
                     "busy: target '%s' needs ~%llu bytes and the memory budget (%llu, %llu in "
                     "use) cannot be met even after unloading idle models; retry later",
                     t->cfg->name, (unsigned long long)t->res_footprint,
                     (unsigned long long)gw->cfg.memory_budget_bytes, (unsigned long long)used);
            return -1;
        }
        t->res = SIPP__GW_RES_LOADING;
        if (defer) {
            r->res_load = true;
            pthread_mutex_unlock(&gw->res_mu);
            return 1;
        }
        pthread_mutex_unlock(&gw->res_mu);
        char msg[SIPP_ERROR_MESSAGE_CAP];
        bool ok = load_target(gw, t, msg, sizeof msg);
        pthread_mutex_lock(&gw->res_mu);
        if (!ok) {
            t->res = SIPP__GW_RES_UNLOADED;
            pthread_cond_broadcast(&gw->res_cv);
            pthread_mutex_unlock(&gw->res_mu);
            snprintf(why, cap, "target '%s' failed to load: %s", t->cfg->name, msg);
            return -2;
        }
    }
    t->res_in_use++;
    r->ep = t->ep;
    r->resident = true;
    pthread_mutex_unlock(&gw->res_mu);
    return 0;
}

bool sipp__gw_phase_resident(gw_req *r) {
    gw_target *t = r->tgt;
    if (t->cfg->type != SIPP__GW_LOCAL) return true;
    char why[SIPP_ERROR_MESSAGE_CAP + 256];
    int rc = resident_loop(r, r->call.stream && r->op != GW_OP_EMBED, why, sizeof why);
    if (rc >= 0) return true;
    if (rc == -1) r->retry_after = 5;
    return sipp__gw_req_fail(r, rc == -1 ? GW_UNAVAILABLE : GW_EXECUTION, "model", "%s", why);
}

bool sipp__gw_resident_pending(const gw_req *r) { return r->res_load || r->res_wait; }

gw_code sipp__gw_resident_complete(gw_req *r, char *why, size_t cap) {
    sipp__gw *gw = r->gw;
    gw_target *t = r->tgt;
    if (r->res_load) { /* this request loads it (the state is LOADING, room was made) */
        r->res_load = false;
        char msg[SIPP_ERROR_MESSAGE_CAP];
        if (!load_target(gw, t, msg, sizeof msg)) {
            pthread_mutex_lock(&gw->res_mu);
            t->res = SIPP__GW_RES_UNLOADED;
            pthread_cond_broadcast(&gw->res_cv);
            pthread_mutex_unlock(&gw->res_mu);
            snprintf(why, cap, "target '%s' failed to load: %s", t->cfg->name, msg);
            return GW_EXECUTION;
        }
    }
    r->res_wait = false;
    int rc = resident_loop(r, false, why, cap);
    return rc == 0 ? GW_OK : rc == -1 ? GW_UNAVAILABLE : GW_EXECUTION;
}

void sipp__gw_resident_release(gw_req *r) {
    sipp__gw *gw = r->gw;
    if (r->res_load) { /* the stream ended before its load began: give the slot back */
        r->res_load = false;
        pthread_mutex_lock(&gw->res_mu);
        r->tgt->res = SIPP__GW_RES_UNLOADED;
        pthread_cond_broadcast(&gw->res_cv);
        pthread_mutex_unlock(&gw->res_mu);
    }
    if (!r->resident) return;
    gw_target *t = r->tgt;
    pthread_mutex_lock(&gw->res_mu);
    t->res_in_use--;
    t->res_last_used = sipp__gw_now();
    pthread_cond_broadcast(&gw->res_cv); /* the loader re-arms its idle timer */
    pthread_mutex_unlock(&gw->res_mu);
    r->resident = false;
}

const char *sipp__gw_target_residency(sipp__gw *gw, const gw_target *t) {
    if (t->cfg->type != SIPP__GW_LOCAL) return NULL;
    pthread_mutex_lock(&gw->res_mu);
    sipp__gw_res_state st = t->res;
    pthread_mutex_unlock(&gw->res_mu);
    return st == SIPP__GW_RES_LOADED ? "loaded" : st == SIPP__GW_RES_LOADING ? "loading" : "unloaded";
}

json_t *sipp__gw_residency_json(sipp__gw *gw) {
    json_t *a = json_array();
    gw_gen *g = sipp__gw_gen_get(gw);
    pthread_mutex_lock(&gw->res_mu);
    for (size_t i = 0; a && i < g->n_targets; i++) {
        const gw_target *t = g->targets[i];
        if (t->cfg->type != SIPP__GW_LOCAL) continue;
        const char *st = t->res == SIPP__GW_RES_LOADED    ? "loaded"
                         : t->res == SIPP__GW_RES_LOADING ? "loading"
                                                          : "unloaded";
        json_array_append_new(
            a, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "target", t->cfg->name,
                         "status", st, "in_flight", (json_int_t)t->res_in_use, "footprint_bytes",
                         (json_int_t)t->res_footprint, "loads", (json_int_t)t->res_loads,
                         "unloads_idle", (json_int_t)t->res_unloads_idle, "unloads_budget",
                         (json_int_t)t->res_unloads_budget, "refused", (json_int_t)t->res_refused));
    }
    pthread_mutex_unlock(&gw->res_mu);
    sipp__gw_gen_put(gw, g);
    return a;
}

void sipp__gw_residency_wake(sipp__gw *gw) {
    pthread_mutex_lock(&gw->res_mu);
    pthread_cond_broadcast(&gw->res_cv);
    pthread_mutex_unlock(&gw->res_mu);
}

/* Unloads the idle targets of generation g past their idle_unload_seconds; returns the seconds
 * until the next one is due (at most 60). Under res_mu. */
static double unload_idle_locked(sipp__gw *gw, const gw_gen *g) {
    double now = sipp__gw_now(), next = 60.0;
    for (size_t i = 0; i < g->n_targets; i++) {
        gw_target *t = g->targets[i];
        uint32_t idle = t->idle_s;
        if (t->cfg->type != SIPP__GW_LOCAL || !idle || t->res != SIPP__GW_RES_LOADED ||
            t->res_in_use)
            continue;
        double due = t->res_last_used + idle - now;
        if (due <= 0) unload_locked(gw, t, "idle");
        else if (due < next) next = due;
    }
    return next;
}

/* The loader: loads the initial generation's load = "start" targets one after the other, then
 * unloads idle ones of the current generation as they become due until the gateway shuts
 * down. It holds a reference to a generation while it uses it, taken and dropped outside
 * res_mu. */
static void *loader_main(void *arg) {
    sipp__gw *gw = arg;
    gw_gen *g0 = sipp__gw_gen_get(gw);
    for (size_t i = 0; i < g0->n_targets; i++) {
        gw_target *t = g0->targets[i];
        if (t->cfg->type != SIPP__GW_LOCAL || t->cfg->load_on_use) continue;
        if (atomic_load(&gw->shutting_down)) break;
        pthread_mutex_lock(&gw->res_mu);
        bool go = t->res == SIPP__GW_RES_UNLOADED;
        if (go) t->res = SIPP__GW_RES_LOADING;
        pthread_mutex_unlock(&gw->res_mu);
        char why[SIPP_ERROR_MESSAGE_CAP];
        if (!go) continue;
        if (!load_target(gw, t, why, sizeof why)) {
            pthread_mutex_lock(&gw->res_mu);
            t->res = SIPP__GW_RES_UNLOADED;
            pthread_cond_broadcast(&gw->res_cv);
            pthread_mutex_unlock(&gw->res_mu);
            atomic_store(&t->state, GW_TARGET_FAILED);
            continue;
        }
        atomic_store(&t->state, GW_TARGET_READY);
    }
    sipp__gw_gen_put(gw, g0);
    while (!atomic_load(&gw->shutting_down)) {
        gw_gen *g = sipp__gw_gen_get(gw);
        pthread_mutex_lock(&gw->res_mu);
        double wait = atomic_load(&gw->shutting_down) ? 0 : unload_idle_locked(gw, g);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double w = wait < 0.05 ? 0.05 : wait;
        ts.tv_sec += (time_t)w;
        ts.tv_nsec += (long)((w - (double)(time_t)w) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!atomic_load(&gw->shutting_down)) pthread_cond_timedwait(&gw->res_cv, &gw->res_mu, &ts);
        pthread_mutex_unlock(&gw->res_mu);
        sipp__gw_gen_put(gw, g);
    }
    return NULL;
}

/* An on_use target (or, on a reload under a memory budget, a start one): its capabilities and footprint from the model's metadata (no
 * load); READY at once, unloaded until its first request. A model that cannot be read leaves
 * the target FAILED, logged as a failed load is (the others serve). */
bool sipp__gw_target_inspect(gw_target *t, char *errbuf, size_t errcap) {
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_model_inspect(t->cfg->model, &info, NULL, &err) != SIPP_OK) {
        log_target("error", "target failed to load", t->cfg->name, "error",
                   json_string(err.message));
        atomic_store(&t->state, GW_TARGET_FAILED);
        snprintf(errbuf, errcap, "target '%s' failed to load: %s", t->cfg->name, err.message);
        return false;
    }
    set_caps_from(t, &info);
    t->res_footprint = footprint(t, &info);
    atomic_store(&t->state, GW_TARGET_READY);
    return true;
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
        char id[200];
        if (k == 0) snprintf(id, sizeof id, "%s", t->ep_id);
        else snprintf(id, sizeof id, "%s %zu", t->ep_id, k);
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

/* ---- instances: creation and the last reference ----------------------------------------- */

gw_target *sipp__gw_target_new(sipp__gw *gw, gw_cfgbox *box, const sipp__gw_target *cfg,
                               const char *ep_id, char *errbuf, size_t errcap) {
    gw_target *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(errbuf, errcap, "out of memory");
        return NULL;
    }
    atomic_init(&t->refs, 1);
    atomic_fetch_add(&box->refs, 1);
    t->box = box;
    t->cfg = cfg;
    t->idle_s = cfg->idle_unload_seconds;
    snprintf(t->ep_id, sizeof t->ep_id, "%s", ep_id);
    atomic_init(&t->state, GW_TARGET_LOADING);
    if (cfg->type != SIPP__GW_LOCAL) {
        if (add_provider(gw, t, errbuf, errcap) != 0) {
            sipp__gw_target_put(gw, t);
            return NULL;
        }
    } else if (cfg->load_on_use) {
        char why[SIPP_ERROR_MESSAGE_CAP + 64];
        sipp__gw_target_inspect(t, why, sizeof why); /* FAILED when it fails */
    }
    return t;
}

bool sipp__gw_target_load(sipp__gw *gw, gw_target *t, char *errbuf, size_t errcap) {
    pthread_mutex_lock(&gw->res_mu);
    t->res = SIPP__GW_RES_LOADING;
    pthread_mutex_unlock(&gw->res_mu);
    char why[SIPP_ERROR_MESSAGE_CAP];
    if (!load_target(gw, t, why, sizeof why)) {
        pthread_mutex_lock(&gw->res_mu);
        t->res = SIPP__GW_RES_UNLOADED;
        pthread_cond_broadcast(&gw->res_cv);
        pthread_mutex_unlock(&gw->res_mu);
        snprintf(errbuf, errcap, "target '%s' failed to load: %s", t->cfg->name, why);
        return false;
    }
    atomic_store(&t->state, GW_TARGET_READY);
    return true;
}

void sipp__gw_target_ref(gw_target *t) { atomic_fetch_add(&t->refs, 1); }

void sipp__gw_target_put(sipp__gw *gw, gw_target *t) {
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
    /* no generation lists it, so no request holds it: removing its endpoints cuts no run */
    sipp__gw_pool_free(t->pool);
    if (t->cfg->type == SIPP__GW_LOCAL) {
        pthread_mutex_lock(&gw->res_mu);
        if (t->res == SIPP__GW_RES_LOADED) sipp_client_remove(gw->client, t->ep_id, NULL);
        pthread_mutex_unlock(&gw->res_mu);
    }
    for (size_t k = 0; k < t->n_eps; k++) {
        char id[200];
        if (k == 0) snprintf(id, sizeof id, "%s", t->ep_id);
        else snprintf(id, sizeof id, "%s %zu", t->ep_id, k);
        sipp_client_remove(gw->client, id, NULL);
    }
    free(t->eps);
    size_t n = t->cfg->n_base_urls ? t->cfg->n_base_urls : 1;
    for (size_t k = 0; t->replica_hosts && k < n; k++) free(t->replica_hosts[k]);
    free(t->replica_hosts);
    free(t->replica_urls);
    gw_cfgbox *box = t->box;
    free(t);
    sipp__gw_box_put(box);
}

int sipp__gw_targets_start_loader(sipp__gw *gw) {
    if (pthread_create(&gw->loader, NULL, loader_main, gw) != 0) return -1;
    gw->loader_started = true;
    return 0;
}

int sipp__gw_readiness(sipp__gw *gw, const char **text) {
    bool loading = false, failed = false, stalled = false;
    gw_gen *g = sipp__gw_gen_get(gw);
    for (size_t i = 0; i < g->n_targets; i++) {
        int st = atomic_load(&g->targets[i]->state);
        loading |= st == GW_TARGET_LOADING;
        failed |= st == GW_TARGET_FAILED;
        sipp_engine_stats es;
        sipp_engine_stats_init(&es, sizeof es);
        stalled |= sipp__gw_target_stats(gw, g->targets[i], &es) && es.stalled;
    }
    sipp__gw_gen_put(gw, g);
    *text = atomic_load(&gw->shutting_down) ? "shutting down"
            : loading                       ? "loading"
            : failed                        ? "a target failed to load"
            : stalled                       ? "a target's engine is stalled"
                                            : "ready";
    return strcmp(*text, "ready") == 0 ? 200 : 503;
}
