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
    return o;
}

/* Applies a validated settings change under set_mu (the blocklist arrays are swapped: the old
 * ones go back in *s, which the dashboard frees). */
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
    if (gw->loader_started) pthread_join(gw->loader, NULL);
    sipp__httpd_stop(gw->public_srv);
    sipp__httpd_stop(gw->mgmt_srv);
    sipp__gw_targets_free(gw);
    sipp_client_free(gw->client);
    if (gw->callers) sipp__gw_admission_destroy(&gw->admission);
    sipp__gw_limits_free(gw->limits);
    sipp__gw_admin_free(gw->admin);
    pthread_rwlock_destroy(&gw->set_mu);
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
