/*
 * gateway.c — the gateway's lifecycle (gateway.h) and its mutable settings.
 *
 * sipp__gw_new wires the modules together: the rate-limit store (redis_store.h), callers (bearer
 * secrets read from their env vars once and kept only as SHA-256 digests, compared in constant
 * time), admission, targets (targets.c), metrics (metrics.h), the dashboard (admin.h, through
 * the callbacks below), both listeners (listeners.c) and the loader thread. Shutdown stops the
 * public listener from accepting, waits up to shutdown_grace_seconds for requests in flight
 * (open streams end with a terminal error event, stream.c) and frees in reverse order.
 *
 * Pipeline files: listeners.c (both listeners, browser rules) -> phases.c (the protocol's
 * phases) -> execute.c / stream.c (running and answering), with request.c holding the
 * per-request context and finish(); answers are encoded by the profiles (profiles.h). Module
 * dependencies point one way: these files call metrics, admin, profiles, policy and the store;
 * none of those includes gateway_int.h. Secrets are never logged, echoed or rendered.
 */
#define _GNU_SOURCE
#include "gateway_int.h"

#include <openssl/sha.h>
#include <sipp_settings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the dashboard's view of the gateway (admin.h) --------------------------------------------- */

static sipp__gw_ip admin_client_ip(void *ctx, sipp__httpd_req *http) {
    return sipp__gw_request_ip(ctx, http);
}

static unsigned admin_active(void *ctx) {
    sipp__gw *gw = ctx;
    return sipp__gw_admission_active(&gw->admission);
}

/* The settings the dashboard shows: rate limits, each caller's limits, the blocklist, whether
 * Redis shares the limits, the global concurrency limit. */
static json_t *admin_settings(void *ctx) {
    sipp__gw *gw = ctx;
    pthread_rwlock_rdlock(&gw->set_mu);
    json_t *callers = json_array(), *block = json_array();
    for (size_t i = 0; i < gw->n_callers; i++) {
        const sipp__gw_token *t = &gw->cfg.tokens[i];
        json_array_append_new(callers, json_pack("{s:s, s:I, s:I, s:I}", "caller", t->caller,
                                                 "requests_per_minute",
                                                 (json_int_t)t->requests_per_minute,
                                                 "tokens_per_minute",
                                                 (json_int_t)t->tokens_per_minute,
                                                 "max_concurrent", (json_int_t)t->max_concurrent));
    }
    for (size_t i = 0; i < gw->cfg.n_ip_blocklist; i++)
        json_array_append_new(block, json_string(gw->cfg.ip_blocklist[i]));
    json_t *o = json_pack("{s:{s:b, s:I, s:I, s:I}, s:o, s:o, s:b}", "rate_limit", "enabled",
                          gw->cfg.rate_limit_enabled, "requests_per_minute",
                          (json_int_t)gw->cfg.rate_limit_rpm, "burst",
                          (json_int_t)gw->cfg.rate_limit_burst, "tokens_per_minute",
                          (json_int_t)gw->cfg.rate_limit_tpm, "callers", callers, "ip_blocklist",
                          block, "redis", gw->cfg.redis_url != NULL);
    pthread_rwlock_unlock(&gw->set_mu);
    json_object_set_new(o, "max_concurrent_requests",
                        json_integer(sipp__gw_admission_global_max(&gw->admission)));
    pthread_mutex_lock(&gw->reload_mu);
    if (gw->reload_message[0])
        json_object_set_new(o, "reload", json_pack("{s:b, s:s, s:f}", "ok", gw->reload_ok,
                                                   "message", gw->reload_message, "time",
                                                   gw->reload_time));
    pthread_mutex_unlock(&gw->reload_mu);
    return o;
}

/* Applies a validated settings change under set_mu (the blocklist arrays are swapped: the old
 * ones go back in *s, which the dashboard frees). */
static json_t *admin_residency(void *ctx) { return sipp__gw_residency_json(ctx); }

static int admin_reload(void *ctx, char *errbuf, size_t errcap) {
    return sipp__gw_reload(ctx, errbuf, errcap);
}

/* Every replica of every upstream pool, in target order (the dashboard's "Upstream replicas"). */
static json_t *admin_replicas(void *ctx) {
    sipp__gw *gw = ctx;
    json_t *all = json_array();
    for (size_t i = 0; all && i < gw->n_targets; i++) {
        if (!gw->targets[i].pool) continue;
        json_t *a = sipp__gw_pool_json(gw->targets[i].pool);
        if (a) json_array_extend(all, a);
        json_decref(a);
    }
    return all;
}

static void admin_apply(void *ctx, sipp__gw_admin_settings *s) {
    sipp__gw *gw = ctx;
    pthread_rwlock_wrlock(&gw->set_mu);
    if (s->has_rate_limit) {
        gw->cfg.rate_limit_enabled = s->rl_enabled;
        gw->cfg.rate_limit_rpm = s->rl_rpm;
        gw->cfg.rate_limit_burst = s->rl_burst;
        gw->cfg.rate_limit_tpm = s->rl_tpm;
    }
    for (size_t i = 0; i < s->n_callers; i++) {
        sipp__gw_token *t = &gw->cfg.tokens[s->callers[i].index];
        if (s->callers[i].has_rpm) t->requests_per_minute = s->callers[i].rpm;
        if (s->callers[i].has_tpm) t->tokens_per_minute = s->callers[i].tpm;
    }
    if (s->has_blocklist) {
        char **ob = gw->cfg.ip_blocklist;
        sipp__gw_cidr *oc = gw->blocklist;
        size_t on = gw->cfg.n_ip_blocklist;
        gw->cfg.ip_blocklist = s->blocklist;
        gw->blocklist = s->cidrs;
        gw->cfg.n_ip_blocklist = gw->n_blocklist = s->n_blocklist;
        s->blocklist = ob;
        s->cidrs = oc;
        s->n_blocklist = on;
    }
    pthread_rwlock_unlock(&gw->set_mu);
    if (s->has_max_concurrent) sipp__gw_admission_set_global_max(&gw->admission, s->max_concurrent);
}

/* ---- lifecycle ------------------------------------------------------------------------------------ */

static int parse_cidrs(char **in, size_t n, sipp__gw_cidr **out) {
    *out = calloc(n + 1, sizeof **out);
    if (!*out) return -1;
    for (size_t i = 0; i < n; i++)
        if (!sipp__gw_cidr_parse(in[i], &(*out)[i])) return -1;
    return 0;
}

static int gw_build(sipp__gw *gw, char *errbuf, size_t errcap);

int sipp__gw_new(sipp__gw_config *cfg, sipp__gw **out, char *errbuf, size_t errcap) {
    *out = NULL;
    sipp__gw *gw = calloc(1, sizeof *gw);
    if (!gw) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    gw->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    pthread_rwlock_init(&gw->set_mu, NULL);
    pthread_mutex_init(&gw->res_mu, NULL);
    pthread_mutex_init(&gw->reload_mu, NULL);
    pthread_cond_init(&gw->res_cv, NULL);
    if (gw_build(gw, errbuf, errcap) != 0) {
        sipp__gw_free(gw); /* frees what was built, and the config it took */
        return -1;
    }
    *out = gw;
    return 0;
}

/* Everything sipp__gw_new does after taking the config: limits, callers, the client and its
 * targets, metrics, admin, listeners. On failure the partly built gateway is freed by the
 * caller. */
static int gw_build(sipp__gw *gw, char *errbuf, size_t errcap) {
    sipp__gw_config *c = &gw->cfg;
    sipp__gw_redis *redis = NULL;
    if (c->redis_url) {
        sipp__gw_redis_addr addr;
        char why[200];
        if (!sipp__gw_redis_url_parse(c->redis_url, &addr, why, sizeof why)) {
            snprintf(errbuf, errcap, "redis.url: %s", why);
            return -1;
        }
        const char *pw = NULL;
        if (c->redis_password_env) {
            pw = getenv(c->redis_password_env);
            if (!pw || !*pw) {
                snprintf(errbuf, errcap, "redis: the environment variable %s is not set",
                         c->redis_password_env);
                return -1;
            }
        }
        /* Never connects here: a gateway starts while Redis is down (see redis.on_error). */
        redis = sipp__gw_redis_new(&addr, pw, c->redis_timeout_ms, c->redis_key_prefix);
        if (!redis) {
            snprintf(errbuf, errcap, "out of memory");
            return -1;
        }
    }
    /* Separate tables: 100k client addresses (LRU), and room for every caller so that no
     * caller's state is ever evicted. */
    gw->limits = sipp__gw_limits_new(redis, c->redis_fail_closed, 100000, c->n_tokens + 1);
    if (!gw->limits) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }

    /* bearer secrets: read once, kept only as digests */
    gw->n_callers = c->n_tokens;
    gw->callers = calloc(c->n_tokens + 1, sizeof *gw->callers);
    gw->caller_names = calloc(c->n_tokens + 1, sizeof *gw->caller_names);
    uint32_t *caller_max = calloc(c->n_tokens + 1, sizeof *caller_max);
    if (!gw->callers || !gw->caller_names || !caller_max) {
        free(caller_max);
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->n_tokens; i++) {
        const char *secret = getenv(c->tokens[i].env);
        if (!secret || !*secret) {
            free(caller_max);
            snprintf(errbuf, errcap, "caller '%s': the environment variable %s is not set",
                     c->tokens[i].caller, c->tokens[i].env);
            return -1;
        }
        gw->callers[i].cfg = &c->tokens[i];
        gw->caller_names[i] = c->tokens[i].caller;
        SHA256((const unsigned char *)secret, strlen(secret), gw->callers[i].digest);
        caller_max[i] = c->tokens[i].max_concurrent;
    }
    int arc = sipp__gw_admission_init(&gw->admission, c->max_concurrent_requests, caller_max,
                                      c->n_tokens);
    free(caller_max);
    if (arc != 0 ||
        parse_cidrs(c->trusted_proxy_cidrs, c->n_trusted_proxy_cidrs, &gw->trusted) != 0 ||
        parse_cidrs(c->ip_blocklist, c->n_ip_blocklist, &gw->blocklist) != 0) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    gw->n_trusted = c->n_trusted_proxy_cidrs;
    gw->n_blocklist = c->n_ip_blocklist;
    sipp__gw_hosts_init(&gw->hosts[GW_PUBLIC], c->public_bind, c->allowed_hosts,
                        c->n_allowed_hosts);
    sipp__gw_hosts_init(&gw->hosts[GW_MGMT], c->management_bind, c->allowed_hosts,
                        c->n_allowed_hosts);

    sipp_client_params cp;
    sipp_client_params_init(&cp, sizeof cp);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_new(&cp, &gw->client, &err) != SIPP_OK) {
        snprintf(errbuf, errcap, "%s", err.message);
        return -1;
    }
    if (sipp__gw_targets_init(gw, errbuf, errcap) != 0) return -1;
    gw->metrics = sipp__gw_metrics_new(gw->n_targets, gw->target_names, gw->target_types);
    if (!gw->metrics) {
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }

    sipp__gw_admin_host host = {
        .ctx = gw,
        .route = c->routes[SIPP__GW_R_ADMIN],
        .n_targets = gw->n_targets,
        .n_callers = gw->n_callers,
        .target_names = gw->target_names,
        .target_types = gw->target_types,
        .caller_names = gw->caller_names,
        .client_ip = admin_client_ip,
        .settings = admin_settings,
        .apply = admin_apply,
        .active = admin_active,
        .replicas = admin_replicas,
        .residency = admin_residency,
        .reload = admin_reload,
    };
    gw->admin = sipp__gw_admin_new(&host, c->admin_password_env ? getenv(c->admin_password_env)
                                                                : NULL);
    if (c->admin_password_env && !gw->admin)
        sipp__gw_log("warn", "admin dashboard off: its password variable is not set", NULL);

    sipp__httpd_params hp = {
        .header_timeout_s = c->header_timeout_seconds,
        .body_timeout_s = c->body_timeout_seconds,
        .idle_timeout_s = c->idle_timeout_seconds,
        .max_header_bytes = c->max_header_bytes,
        .max_body_bytes = c->max_request_bytes,
        .max_connections = c->max_connections,
        .max_connections_per_ip = c->max_connections_per_ip,
    };
    char herr[256];
    hp.bind = c->public_bind;
    hp.handler = sipp__gw_handle_public;
    hp.user_data = gw;
    gw->public_srv = sipp__httpd_start(&hp, herr, sizeof herr);
    if (!gw->public_srv) {
        snprintf(errbuf, errcap, "public listener: %s", herr);
        return -1;
    }
    hp.bind = c->management_bind;
    hp.handler = sipp__gw_handle_mgmt;
    hp.max_body_bytes = 256 * 1024; /* dashboard settings (blocklists) */
    hp.max_connections = 64;
    hp.max_connections_per_ip = 0; /* loopback by default; the dashboard opens a few at once */
    gw->mgmt_srv = sipp__httpd_start(&hp, herr, sizeof herr);
    if (!gw->mgmt_srv) {
        snprintf(errbuf, errcap, "management listener: %s", herr);
        return -1;
    }
    if (sipp__gw_targets_start_loader(gw) != 0) {
        snprintf(errbuf, errcap, "cannot start the loader thread");
        return -1;
    }
    json_t *x = json_pack("{s:s, s:s, s:I, s:I}", "public", c->public_bind, "management",
                          c->management_bind, "targets", (json_int_t)c->n_targets, "callers",
                          (json_int_t)c->n_tokens);
    sipp__gw_log("info", "listening", x);
    json_decref(x);
    return 0;
}

void sipp__gw_shutdown(sipp__gw *gw) {
    if (!gw || atomic_exchange(&gw->shutting_down, true)) return;
    sipp__gw_log("info", "shutting down", NULL);
    sipp__httpd_quiesce(gw->public_srv);
    double deadline = sipp__gw_now() + gw->cfg.shutdown_grace_seconds;
    while (atomic_load(&gw->in_flight) > 0 && sipp__gw_now() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    struct timespec ts = {0, 50 * 1000000L}; /* let the last answers leave their sockets */
    nanosleep(&ts, NULL);
    json_t *x = json_pack("{s:I}", "unfinished", (json_int_t)atomic_load(&gw->in_flight));
    sipp__gw_log("info", "drained", x);
    json_decref(x);
}

void sipp__gw_free(sipp__gw *gw) {
    if (!gw) return;
    atomic_store(&gw->shutting_down, true);
    sipp__gw_residency_wake(gw);
    if (gw->loader_started) pthread_join(gw->loader, NULL);
    sipp__httpd_stop(gw->public_srv);
    sipp__httpd_stop(gw->mgmt_srv);
    sipp__gw_targets_free(gw);
    sipp_client_free(gw->client);
    if (gw->callers) sipp__gw_admission_destroy(&gw->admission);
    sipp__gw_limits_free(gw->limits);
    sipp__gw_admin_free(gw->admin);
    pthread_rwlock_destroy(&gw->set_mu);
    pthread_mutex_destroy(&gw->res_mu);
    pthread_mutex_destroy(&gw->reload_mu);
    free(gw->config_path);
    pthread_cond_destroy(&gw->res_cv);
    sipp__gw_metrics_free(gw->metrics);
    free(gw->trusted);
    free(gw->blocklist);
    free(gw->targets);
    free(gw->target_names);
    free(gw->target_types);
    free(gw->caller_names);
    if (gw->callers) {
        explicit_bzero(gw->callers, sizeof *gw->callers * gw->n_callers);
        free(gw->callers);
    }
    sipp__gw_config_free(&gw->cfg);
    free(gw);
}

/* ---- reload (docs/gateway.md "Reload") ----------------------------------------------------- */

void sipp__gw_set_config_path(sipp__gw *gw, const char *path) {
    pthread_mutex_lock(&gw->reload_mu);
    free(gw->config_path);
    gw->config_path = path ? strdup(path) : NULL;
    pthread_mutex_unlock(&gw->reload_mu);
}

static bool str_eq(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool strv_eq(char **a, size_t na, char **b, size_t nb) {
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (!str_eq(a[i], b[i])) return false;
    return true;
}

/* Field equality per settings kind (include/sipp_settings.h): numbers and strings compare,
 * callbacks and pointers are never set from a config file. */
#define RL_EQ_SIZE(a, b, f) ((a)->f == (b)->f)
#define RL_EQ_U32 RL_EQ_SIZE
#define RL_EQ_I32 RL_EQ_SIZE
#define RL_EQ_U64 RL_EQ_SIZE
#define RL_EQ_F32 RL_EQ_SIZE
#define RL_EQ_BOOL RL_EQ_SIZE
#define RL_EQ_PROVIDER_KIND RL_EQ_SIZE
#define RL_EQ_GATEWAY_AUTH RL_EQ_SIZE
#define RL_EQ_STR(a, b, f) str_eq((a)->f, (b)->f)
#define RL_EQ_FN(a, b, f) true
#define RL_EQ_PTR RL_EQ_FN
#define RL_EQ_STRV RL_EQ_FN
#define RL_EQ_COUNT RL_EQ_FN
#define RL_EQ_TOKEN_FN RL_EQ_FN
#define RL_EQ_MEDIA RL_EQ_FN
#define RL_EQ_TOOLS RL_EQ_FN
#define RL_EQ_DELTA_FN RL_EQ_FN
#define RL_EQ_TOOL_CHOICE RL_EQ_SIZE
#define RL_EQ_REASONING_MODE RL_EQ_SIZE
#define RL_ROW_EQ(field, KIND, ...) &&RL_EQ_##KIND(a, b, field)

static bool local_eq(const sipp_local_params *a, const sipp_local_params *b) {
    return true SIPP_LOCAL_SETTINGS(RL_ROW_EQ);
}
static bool text_eq(const sipp_text_params *a, const sipp_text_params *b) {
    return true SIPP_TEXT_SETTINGS(RL_ROW_EQ);
}
static bool provider_eq(const sipp_provider_params *a, const sipp_provider_params *b) {
    return true SIPP_PROVIDER_SETTINGS(RL_ROW_EQ);
}
static bool pool_eq(const sipp__gw_pool_cfg *a, const sipp__gw_pool_cfg *b) {
    return str_eq(a->health_path, b->health_path) &&
           a->health_interval_seconds == b->health_interval_seconds &&
           a->health_timeout_seconds == b->health_timeout_seconds &&
           a->failure_threshold == b->failure_threshold &&
           a->backoff_initial_seconds == b->backoff_initial_seconds &&
           a->backoff_max_seconds == b->backoff_max_seconds && a->max_retries == b->max_retries &&
           str_eq(a->affinity_header, b->affinity_header) && a->retry_lost == b->retry_lost;
}

/* What a reload cannot change in place: "" when `n` differs from `o` only in reloadable
 * settings, else the first difference, in buf. */
static void structural_diff(const sipp__gw_config *o, const sipp__gw_config *n, char *buf,
                            size_t cap) {
    buf[0] = '\0';
    if (!str_eq(o->public_bind, n->public_bind) || !str_eq(o->management_bind, n->management_bind)) {
        snprintf(buf, cap, "the listeners changed");
        return;
    }
    for (size_t i = 0; i < n->n_targets; i++) {
        size_t j = 0;
        while (j < o->n_targets && strcmp(o->targets[j].name, n->targets[i].name) != 0) j++;
        if (j == o->n_targets) {
            snprintf(buf, cap, "target '%s' was added", n->targets[i].name);
            return;
        }
    }
    for (size_t j = 0; j < o->n_targets; j++) {
        if (j >= n->n_targets || strcmp(o->targets[j].name, n->targets[j].name) != 0) {
            size_t i = 0;
            while (i < n->n_targets && strcmp(o->targets[j].name, n->targets[i].name) != 0) i++;
            snprintf(buf, cap, i == n->n_targets ? "target '%s' was removed"
                                                 : "target '%s' moved in the file",
                     o->targets[j].name);
            return;
        }
        const sipp__gw_target *a = &o->targets[j], *b = &n->targets[j];
        if (a->type != b->type || !str_eq(a->model, b->model) || !str_eq(a->backend, b->backend) ||
            !str_eq(a->sha256, b->sha256) || !str_eq(a->token_env, b->token_env) ||
            a->load_on_use != b->load_on_use ||
            !strv_eq(a->base_urls, a->n_base_urls, b->base_urls, b->n_base_urls) ||
            a->timeout_seconds != b->timeout_seconds ||
            !provider_eq(&a->provider, &b->provider) || !pool_eq(&a->pool, &b->pool) ||
            !local_eq(&a->runtime.local, &b->runtime.local) ||
            !text_eq(&a->runtime.text, &b->runtime.text) || a->runtime.cache != b->runtime.cache ||
            a->runtime.has_n_gpu_layers != b->runtime.has_n_gpu_layers) {
            snprintf(buf, cap, "target '%s' changed", a->name);
            return;
        }
    }
    if (o->n_tokens != n->n_tokens) {
        snprintf(buf, cap, "callers were added or removed");
        return;
    }
    for (size_t k = 0; k < o->n_tokens; k++) {
        const sipp__gw_token *a = &o->tokens[k], *b = &n->tokens[k];
        if (!str_eq(a->caller, b->caller) || !str_eq(a->env, b->env) ||
            !strv_eq(a->targets, a->n_targets, b->targets, b->n_targets) ||
            a->max_concurrent != b->max_concurrent) {
            snprintf(buf, cap, "caller '%s' was added, removed or changed (name, secret env, "
                     "targets or max_concurrent)", a->caller);
            return;
        }
    }
}

static void reload_record(sipp__gw *gw, bool ok, const char *msg) {
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    snprintf(gw->reload_message, sizeof gw->reload_message, "%s", msg);
    gw->reload_ok = ok;
    gw->reload_time = (double)rt.tv_sec + rt.tv_nsec / 1e9;
    json_t *x = json_pack("{s:s, s:s}", "path", gw->config_path ? gw->config_path : "",
                          ok ? "changes" : "reason", msg);
    sipp__gw_log(ok ? "info" : "error", ok ? "config reloaded" : "config reload refused", x);
    json_decref(x);
}

int sipp__gw_reload(sipp__gw *gw, char *errbuf, size_t errcap) {
    pthread_mutex_lock(&gw->reload_mu);
    if (!gw->config_path) {
        snprintf(errbuf, errcap, "no config file to reload");
        reload_record(gw, false, errbuf);
        pthread_mutex_unlock(&gw->reload_mu);
        return -1;
    }
    sipp__gw_config nc;
    char why[700];
    if (sipp__gw_config_load(gw->config_path, &nc, why, sizeof why) != 0) {
        snprintf(errbuf, errcap, "invalid config: %s", why);
        reload_record(gw, false, errbuf);
        pthread_mutex_unlock(&gw->reload_mu);
        return -1;
    }
    structural_diff(&gw->cfg, &nc, why, sizeof why);
    sipp__gw_cidr *cidrs = NULL;
    if (!why[0] && parse_cidrs(nc.ip_blocklist, nc.n_ip_blocklist, &cidrs) != 0)
        snprintf(why, sizeof why, "an ip_blocklist range cannot be parsed");
    if (why[0]) {
        snprintf(errbuf, errcap, "%s: that needs a restart; nothing was applied", why);
        free(cidrs);
        sipp__gw_config_free(&nc);
        reload_record(gw, false, errbuf);
        pthread_mutex_unlock(&gw->reload_mu);
        return -1;
    }
    /* apply: the settings the dashboard edits, through the same path, then residency's */
    sipp__gw_admin_settings s = {.has_rate_limit = true, .rl_enabled = nc.rate_limit_enabled,
                                 .rl_rpm = nc.rate_limit_rpm, .rl_burst = nc.rate_limit_burst,
                                 .rl_tpm = nc.rate_limit_tpm, .has_max_concurrent = true,
                                 .max_concurrent = nc.max_concurrent_requests,
                                 .has_blocklist = true, .blocklist = nc.ip_blocklist,
                                 .cidrs = cidrs, .n_blocklist = nc.n_ip_blocklist};
    s.callers = calloc(nc.n_tokens + 1, sizeof *s.callers);
    for (size_t k = 0; s.callers && k < nc.n_tokens; k++)
        s.callers[s.n_callers++] = (sipp__gw_admin_caller_set){
            .index = k, .has_rpm = true, .has_tpm = true,
            .rpm = nc.tokens[k].requests_per_minute, .tpm = nc.tokens[k].tokens_per_minute};
    nc.ip_blocklist = NULL; /* now owned by s, swapped for the old ones */
    nc.n_ip_blocklist = 0;
    admin_apply(gw, &s);
    sipp__gw_admin_settings_free(&s); /* the old blocklist */
    pthread_mutex_lock(&gw->res_mu);
    gw->cfg.memory_budget_bytes = nc.memory_budget_bytes;
    for (size_t i = 0; i < nc.n_targets; i++)
        gw->cfg.targets[i].idle_unload_seconds = nc.targets[i].idle_unload_seconds;
    pthread_cond_broadcast(&gw->res_cv); /* the loader re-reads idle times */
    pthread_mutex_unlock(&gw->res_mu);
    sipp__gw_config_free(&nc);
    snprintf(errbuf, errcap, "rate limits, callers' limits, ip_blocklist, "
             "max_concurrent_requests, memory budget and idle times");
    reload_record(gw, true, errbuf);
    pthread_mutex_unlock(&gw->reload_mu);
    return 0;
}
