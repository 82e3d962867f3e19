/*
 * listeners.c — the gateway's two HTTP listeners and what every request meets first.
 *
 * The public listener (sipp__gw_handle_public) creates a request's context and runs the
 * pipeline: blocklist, the browser rules (Host and Origin, CORS preflights), the route and
 * method, shutdown, then the phases of phases.c and execution (execute.c, stream.c). The
 * management listener (sipp__gw_handle_mgmt) serves /healthz, /readyz, /metrics and hands the
 * admin route to the dashboard (admin.c); the browser rules apply to all of its routes.
 *
 * Invariants: every public request reaches sipp__gw_req_finish exactly once (here, or at the
 * release of a streamed answer); nothing on the management listener touches a request
 * context. Headers are read through src/http/http_server.h only; no microhttpd type appears.
 */
#define _GNU_SOURCE
#include "gateway_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- requests from browsers: Host and Origin ---------------------------------------------------
 *
 * A page the user visits can send requests to a gateway on the user's loopback or LAN; CORS only
 * stops it from reading most answers, not from causing effects. Two tricks matter:
 *  - DNS rebinding: the page's own name is re-resolved to 127.0.0.1, so its requests are
 *    same-origin for the browser and carry `Host: attacker.example`. Refused by the Host rule
 *    of browser.c (on loopback binds, or whenever allowed_hosts is set).
 *  - plain cross-site requests (forms, `fetch` with a "simple" content type): they carry an
 *    Origin. A present Origin must be in allowed_origins or be the listener's own origin (the
 *    admin page posting to its own API); `null` and any other value are refused on every route.
 * Clients that are not browsers send no Origin and a Host naming what they connected to. */

gw_code sipp__gw_browser_check(sipp__gw *gw, int which, sipp__httpd_req *http,
                               const char **listed) {
    if (listed) *listed = NULL;
    const char *host = sipp__httpd_header_get(http, "host");
    if (!sipp__gw_host_ok(&gw->hosts[which], host)) return GW_HOST_NOT_ALLOWED;
    const char *origin = sipp__httpd_header_get(http, "origin");
    if (!origin) return GW_OK;
    for (size_t i = 0; i < gw->cfg.n_allowed_origins; i++)
        if (strcmp(gw->cfg.allowed_origins[i], origin) == 0) {
            if (listed) *listed = gw->cfg.allowed_origins[i];
            return GW_OK;
        }
    return sipp__gw_same_origin(origin, host) ? GW_OK : GW_ORIGIN_NOT_ALLOWED;
}

const char *sipp__gw_browser_message(gw_code c) {
    return c == GW_HOST_NOT_ALLOWED
               ? "the Host header names neither this gateway's address nor localhost (DNS "
                 "rebinding?); list the name in allowed_hosts to serve it"
               : "this Origin is not in allowed_origins";
}

sipp__gw_ip sipp__gw_request_ip(sipp__gw *gw, sipp__httpd_req *http) {
    sipp__gw_ip peer;
    if (!sipp__gw_ip_parse(sipp__httpd_peer(http), &peer)) memset(&peer, 0, sizeof peer);
    const char *fwd = gw->cfg.client_ip_source == SIPP__GW_IP_X_FORWARDED_FOR
                          ? sipp__httpd_header_get(http, "x-forwarded-for")
                      : gw->cfg.client_ip_source == SIPP__GW_IP_X_REAL_IP
                          ? sipp__httpd_header_get(http, "x-real-ip")
                          : NULL;
    return sipp__gw_client_ip(&peer, fwd, gw->cfg.client_ip_source == SIPP__GW_IP_X_FORWARDED_FOR,
                              gw->trusted, gw->n_trusted);
}

/* ---- the public listener ------------------------------------------------------------------------- */

void sipp__gw_handle_public(sipp__httpd_req *http, void *ud) {
    sipp__gw *gw = ud;
    gw_req *r = sipp__gw_req_new(gw, http);
    if (!r) return; /* the HTTP layer answers 500 */

    sipp__gw_ip client = sipp__gw_request_ip(gw, http);
    sipp__gw_ip_format(&client, r->client_ip, sizeof r->client_ip);
    const char *origin = NULL;
    gw_code browser = sipp__gw_browser_check(gw, GW_PUBLIC, http, &origin);
    if (origin) snprintf(r->origin, sizeof r->origin, "%s", origin);

    gw_route ri;
    bool known = sipp__gw_match_route(gw, sipp__httpd_path(http), &ri);
    if (known) {
        r->prof = ri.prof;
        r->op = ri.op;
    }
    if (!sipp__gw_phase_blocklist(r, &client)) goto done;
    if (browser != GW_OK) {
        sipp__gw_req_fail(r, browser, NULL, "%s", sipp__gw_browser_message(browser));
        goto done;
    }
    if (strcmp(r->method, "OPTIONS") == 0 &&
        sipp__httpd_header_get(http, "access-control-request-method")) {
        if (!origin) { /* no Origin, or the listener's own: nothing to grant */
            sipp__gw_req_fail(r, GW_ORIGIN_NOT_ALLOWED, NULL, "%s",
                              sipp__gw_browser_message(GW_ORIGIN_NOT_ALLOWED));
            goto done;
        }
        sipp__httpd_header h[] = {
            {"access-control-allow-origin", origin},
            {"vary", "Origin"},
            {"access-control-allow-methods", "GET, POST, OPTIONS"},
            {"access-control-allow-headers",
             "authorization, content-type, x-request-id, x-api-key, anthropic-version"},
            {"access-control-max-age", "600"},
            {"x-request-id", r->id},
        };
        r->status = 204;
        sipp__httpd_respond(http, 204, h, sizeof h / sizeof h[0], "", 0);
        goto done;
    }
    if (!known) {
        sipp__gw_req_fail(r, GW_NOT_FOUND, NULL, "no route %.200s", r->path);
        goto done;
    }
    if (strcmp(r->method, ri.method) != 0) {
        sipp__gw_req_fail(r, GW_METHOD_NOT_ALLOWED, NULL, "%.200s takes %s", r->path, ri.method);
        goto done;
    }
    if (atomic_load(&gw->shutting_down)) {
        r->retry_after = 1;
        sipp__gw_req_fail(r, GW_UNAVAILABLE, NULL, "the gateway is shutting down");
        goto done;
    }
    if (!sipp__gw_phase_rate_limit_ip(r) || !sipp__gw_phase_auth(r)) goto done;
    if (gw->admin) {
        sipp__gw_admin_live_add(gw->admin, r, r->id, r->caller);
        r->live = true;
    }
    if (r->op == GW_OP_MODELS) {
        sipp__gw_answer_models(r);
        goto done;
    }
    if (!sipp__gw_phase_decode(r) || !sipp__gw_phase_authorize(r) || !sipp__gw_phase_resolve(r) ||
        !sipp__gw_phase_validate(r) || !sipp__gw_phase_admission(r) ||
        !sipp__gw_phase_resident(r))
        goto done;
    if (r->live) sipp__gw_admin_live_update(gw->admin, r, r->target, r->op, r->call.stream, 0);
    if (r->op == GW_OP_EMBED) {
        if (sipp__gw_execute_embed(r)) return; /* finish() runs when the answer is released */
    } else if (r->call.stream) {
        sipp__gw_execute_stream(r); /* finish() runs when the stream is released */
        return;
    } else
        sipp__gw_execute_text(r);
done:
    sipp__gw_req_finish(r);
}

/* ---- the management listener --------------------------------------------------------------------- */

/* The registry's text with the gauges read now: admitted requests, dropped log lines, the
 * rate-limit store, each target's readiness and engine counters (metrics.h). */
static char *render_metrics(sipp__gw *gw) {
    size_t n = gw->n_targets;
    bool *ready = calloc(n + 1, sizeof *ready), *have = calloc(n + 1, sizeof *have);
    sipp_engine_stats *engine = calloc(n + 1, sizeof *engine);
    sipp__gw_metrics_residency *res = calloc(n + 1, sizeof *res);
    char *s = NULL;
    if (ready && have && engine && res) {
        for (size_t t = 0; t < n; t++) {
            ready[t] = atomic_load(&gw->targets[t].state) == GW_TARGET_READY;
            have[t] = sipp__gw_target_stats(gw, t, &engine[t]);
        }
        sipp__gw_metrics_live live = {.active = sipp__gw_admission_active(&gw->admission),
                                      .log_dropped = sipp__gw_log_dropped(),
                                      .ready = ready, .have_engine = have, .engine = engine,
                                      .res = res};
        pthread_mutex_lock(&gw->res_mu);
        live.memory_budget_bytes = gw->cfg.memory_budget_bytes; /* a reload changes it */
        for (size_t t = 0; t < n; t++) {
            const gw_target *g = &gw->targets[t];
            if (g->cfg->type != SIPP__GW_LOCAL) continue;
            res[t] = (sipp__gw_metrics_residency){
                .local = true, .loaded = g->res == SIPP__GW_RES_LOADED, .loads = g->res_loads,
                .unloads_idle = g->res_unloads_idle, .unloads_budget = g->res_unloads_budget,
                .refused = g->res_refused, .footprint = g->res_footprint};
            if (g->res != SIPP__GW_RES_UNLOADED) live.memory_used_bytes += g->res_footprint;
        }
        pthread_mutex_unlock(&gw->res_mu);
        sipp__gw_limits_get_stats(gw->limits, &live.limits);
        s = sipp__gw_metrics_render(gw->metrics, &live);
    }
    sipp__gw_pool **pools = calloc(n + 1, sizeof *pools);
    char *p = NULL, *both = NULL;
    if (s && pools) { /* the upstream pools' series after the registry's */
        for (size_t t = 0; t < n; t++) pools[t] = gw->targets[t].pool;
        p = sipp__gw_pools_render(pools, n);
    }
    if (s && (!p || asprintf(&both, "%s%s", s, p) < 0)) both = NULL;
    free(s);
    free(p);
    free(pools);
    s = both;
    free(ready);
    free(have);
    free(engine);
    free(res);
    return s;
}

void sipp__gw_handle_mgmt(sipp__httpd_req *http, void *ud) {
    sipp__gw *gw = ud;
    const char *path = sipp__httpd_path(http);
    const char *method = sipp__httpd_method(http);
    sipp__httpd_header text = {"content-type", "text/plain; charset=utf-8"};
    gw_code browser = sipp__gw_browser_check(gw, GW_MGMT, http, NULL);
    if (browser != GW_OK) { /* every route: /metrics and the dashboard included */
        json_t *e = json_pack("{s:{s:s, s:s}}", "error", "code", sipp__gw_code_name(browser),
                              "message", sipp__gw_browser_message(browser));
        char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
        sipp__httpd_header j = {"content-type", "application/json"};
        sipp__httpd_respond(http, 403, &j, 1, s ? s : "", s ? strlen(s) : 0);
        free(s);
        return;
    }
    int slot = -1;
    for (int s = SIPP__GW_R_HEALTHZ; s <= SIPP__GW_R_METRICS; s++)
        if (strcmp(gw->cfg.routes[s], path) == 0) slot = s;
    const char *admin = gw->cfg.routes[SIPP__GW_R_ADMIN];
    size_t alen = strlen(admin);
    if (alen > 1 && admin[alen - 1] == '/') alen--; /* "/admin" and "/admin/..." */
    if (slot < 0 && strncmp(path, admin, alen) == 0 && (path[alen] == '\0' || path[alen] == '/')) {
        sipp__gw_admin_handle(gw->admin, http);
        return;
    }
    if (slot < 0) {
        static const char nf[] = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such route\"}}";
        sipp__httpd_header j = {"content-type", "application/json"};
        sipp__httpd_respond(http, 404, &j, 1, nf, sizeof nf - 1);
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char na[] =
            "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"use GET\"}}";
        sipp__httpd_header j[] = {{"content-type", "application/json"}, {"allow", "GET"}};
        sipp__httpd_respond(http, 405, j, 2, na, sizeof na - 1);
        return;
    }
    if (slot == SIPP__GW_R_HEALTHZ) {
        sipp__httpd_respond(http, 200, &text, 1, "ok", 2);
    } else if (slot == SIPP__GW_R_READYZ) {
        const char *why;
        int status = sipp__gw_readiness(gw, &why);
        sipp__httpd_respond(http, status, &text, 1, why, strlen(why));
    } else {
        char *s = render_metrics(gw);
        sipp__httpd_header h = {"content-type", "text/plain; version=0.0.4; charset=utf-8"};
        if (s) sipp__httpd_respond(http, 200, &h, 1, s, strlen(s));
        else sipp__httpd_respond(http, 500, &text, 1, "out of memory", 13);
        free(s);
    }
}
