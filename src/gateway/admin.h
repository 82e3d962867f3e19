/*
 * admin.h — the admin dashboard (admin.c) and the narrow interface through which it sees the
 * gateway: the fixed facts it shows (names of targets and callers), given once at creation,
 * and callbacks for what changes (the client address of a request, the mutable settings, the
 * count of admitted requests). The gateway calls the dashboard (request tracking, routing of
 * the admin route); the dashboard never reaches into the gateway object.
 */
#ifndef SIPP_GATEWAY_ADMIN_H
#define SIPP_GATEWAY_ADMIN_H

#include "../http/http_server.h"
#include "admin_settings.h"
#include "codes.h"
#include "policy.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* One finished request as the dashboard lists it. */
typedef struct gw_done {
    double t_end;           /* realtime seconds */
    char id[72];
    int caller, target;     /* -1 = anonymous / none */
    gw_op op;
    int status;
    gw_code code;
    double latency_ms, ttft_ms; /* ttft_ms < 0: none */
    uint64_t in_tok, out_tok;
    bool stream;
} gw_done;

/* What the dashboard may see and do of the gateway. The arrays and strings must outlive the
 * dashboard. The callbacks are called from request threads, without dashboard locks held. */
typedef struct sipp__gw_admin_host {
    void *ctx;                       /* passed to every callback */
    const char *route;               /* the admin route ("/admin/") */
    size_t n_targets, n_callers;
    const char *const *target_names; /* n_targets */
    const char *const *target_types; /* n_targets: "local", "openai", ... */
    const char *const *caller_names; /* n_callers */
    /* The client address of a request (forwarded addresses of trusted proxies applied). */
    sipp__gw_ip (*client_ip)(void *ctx, sipp__httpd_req *http);
    /* The settings the dashboard shows and edits, as a JSON object (new reference). */
    json_t *(*settings)(void *ctx);
    /* Applies a validated change. It may take arrays out of *s (leaving what it replaced); the
     * dashboard frees *s afterwards. */
    void (*apply)(void *ctx, sipp__gw_admin_settings *s);
    /* Requests admitted and not finished. */
    unsigned (*active)(void *ctx);
    /* The replicas of the upstream pools (a JSON array, new reference); NULL = none. */
    json_t *(*replicas)(void *ctx);
    /* The local targets' residency (a JSON array, new reference); NULL = none. */
    json_t *(*residency)(void *ctx);
    /* Reloads the config file (POST <admin>/api/reload): 0, or -1 with the reason. */
    int (*reload)(void *ctx, char *errbuf, size_t errcap);
} sipp__gw_admin_host;

typedef struct gw_admin gw_admin;

/* NULL (dashboard off) when `password` is NULL or empty, or out of memory. The password is
 * kept only as its SHA-256 digest. *host is copied. */
gw_admin *sipp__gw_admin_new(const sipp__gw_admin_host *host, const char *password);
void sipp__gw_admin_free(gw_admin *a);
/* A request entered (live) / left (recent); `key` is any unique pointer. */
void sipp__gw_admin_live_add(gw_admin *a, const void *key, const char *id, int caller);
void sipp__gw_admin_live_update(gw_admin *a, const void *key, int target, gw_op op, bool stream,
                                uint64_t out_tokens);
void sipp__gw_admin_done(gw_admin *a, const void *key, const gw_done *d);
/* Serves everything under the admin route on the management listener; `a` NULL answers 404
 * (the dashboard is off). */
void sipp__gw_admin_handle(gw_admin *a, sipp__httpd_req *http);

#endif
