/*
 * admin.c — the admin dashboard on the management listener (under the `admin` route).
 *
 * Routes (relative to the admin route, default /admin/): `` (the page), `app.js`, `app.css`
 * (embedded at build time from src/gateway/admin/, see admin_assets.cmake), and the JSON API:
 *   POST api/login {password}  -> sets the session cookie, answers {csrf}
 *   POST api/logout            -> ends the session
 *   GET  api/session           -> {csrf} of the current session (a reloaded page)
 *   GET  api/state             -> live and recent requests, usage, percentiles, settings
 *   POST api/settings {...}    -> edits limits, concurrency, blocklist (admin_settings.h)
 *
 * Security invariants: the password is read once from admin_password_env and kept only as a
 * SHA-256 digest, compared in constant time; a failed login is logged without the attempt and
 * logins are throttled (20 a minute per client address, IPv6 per /64, in a table of 1024
 * addresses: one address cannot lock the others out). The session is a random 256-bit token
 * in an HttpOnly, SameSite=Strict cookie scoped to the admin path; every POST needs
 * `x-sipp-admin-csrf`: any value for login (a custom header cannot be sent cross-site without
 * a CORS preflight, which the gateway never grants), the session's own random CSRF token for
 * everything else; and a JSON Content-Type (415 otherwise). Host and Origin are checked before
 * any of this, on every route of the management listener (sipp__gw_browser_check). Nothing
 * rendered comes from a secret: callers and targets by name and type only (no env var names,
 * no URLs). Every answer carries a strict CSP (no inline script, no third-party origin).
 *
 * State: one mutex guards the live table, the ring of recent requests, the usage counters and
 * the sessions. Requests touch it three times (start, each token batch while streaming, end).
 * The gateway is seen only through sipp__gw_admin_host (admin.h): names given at creation,
 * callbacks for the client address, the settings and the active count. No callback is called
 * with a->mu held.
 */
#define _GNU_SOURCE
#include "admin.h"

#include "browser.h"
#include "logger.h"

#include <pthread.h>

#include <math.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* admin_assets.c, generated at build time */
extern const unsigned char sipp__gw_asset_index_html[], sipp__gw_asset_app_js[],
    sipp__gw_asset_app_css[];
extern const unsigned long sipp__gw_asset_index_html_len, sipp__gw_asset_app_js_len,
    sipp__gw_asset_app_css_len;

#define N_LIVE 256
#define N_RECENT 256
#define N_SESSIONS 16
#define SESSION_S (12 * 3600)

typedef struct live_req {
    const void *key; /* NULL = free slot */
    char id[72];
    int caller, target;
    gw_op op;
    bool stream;
    uint64_t out_tok;
    double t0; /* monotonic */
} live_req;

typedef struct usage {
    uint64_t requests, errors, in_tok, out_tok;
} usage;

typedef struct session {
    uint8_t token_digest[32];
    char csrf[65];
    double expires; /* monotonic; 0 = free */
} session;

struct gw_admin {
    sipp__gw_admin_host host;
    uint8_t pw_digest[32];
    sipp__gw_limiter *login_limit;
    pthread_mutex_t mu;
    live_req live[N_LIVE];
    gw_done recent[N_RECENT];
    size_t n_recent, recent_next;
    usage total;
    usage *by_target; /* n_targets + 1 (last = none) */
    usage *by_caller; /* n_callers + 1 (last = anonymous) */
    session sessions[N_SESSIONS];
};

gw_admin *sipp__gw_admin_new(const sipp__gw_admin_host *host, const char *pw) {
    if (!pw || !*pw) return NULL;
    gw_admin *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->host = *host;
    SHA256((const unsigned char *)pw, strlen(pw), a->pw_digest);
    a->login_limit = sipp__gw_limiter_new(1024);
    a->by_target = calloc(host->n_targets + 1, sizeof *a->by_target);
    a->by_caller = calloc(host->n_callers + 1, sizeof *a->by_caller);
    if (!a->login_limit || !a->by_target || !a->by_caller) {
        sipp__gw_admin_free(a);
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    return a;
}

void sipp__gw_admin_free(gw_admin *a) {
    if (!a) return;
    sipp__gw_limiter_free(a->login_limit);
    free(a->by_target);
    free(a->by_caller);
    explicit_bzero(a->pw_digest, sizeof a->pw_digest);
    explicit_bzero(a->sessions, sizeof a->sessions);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ---- request tracking ------------------------------------------------------------------------ */

static live_req *find_live(gw_admin *a, const void *key) {
    for (size_t i = 0; i < N_LIVE; i++)
        if (a->live[i].key == key) return &a->live[i];
    return NULL;
}

void sipp__gw_admin_live_add(gw_admin *a, const void *key, const char *id, int caller) {
    pthread_mutex_lock(&a->mu);
    live_req *l = find_live(a, NULL); /* full table: the request is simply not listed */
    if (l) {
        *l = (live_req){.key = key, .caller = caller, .target = -1, .op = GW_N_OPS,
                        .t0 = sipp__gw_now()};
        snprintf(l->id, sizeof l->id, "%s", id);
    }
    pthread_mutex_unlock(&a->mu);
}

void sipp__gw_admin_live_update(gw_admin *a, const void *key, int target, gw_op op, bool stream,
                                uint64_t out_tokens) {
    pthread_mutex_lock(&a->mu);
    live_req *l = find_live(a, key);
    if (l) {
        l->target = target;
        l->op = op;
        l->stream = stream;
        l->out_tok = out_tokens;
    }
    pthread_mutex_unlock(&a->mu);
}

void sipp__gw_admin_done(gw_admin *a, const void *key, const gw_done *d) {
    pthread_mutex_lock(&a->mu);
    if (key) {
        live_req *l = find_live(a, key);
        if (l) l->key = NULL;
    }
    a->recent[a->recent_next] = *d;
    a->recent_next = (a->recent_next + 1) % N_RECENT;
    if (a->n_recent < N_RECENT) a->n_recent++;
    usage *u[3] = {&a->total,
                   &a->by_target[d->target >= 0 ? (size_t)d->target : a->host.n_targets],
                   &a->by_caller[d->caller >= 0 ? (size_t)d->caller : a->host.n_callers]};
    for (int i = 0; i < 3; i++) {
        u[i]->requests++;
        u[i]->errors += d->status >= 400;
        u[i]->in_tok += d->in_tok;
        u[i]->out_tok += d->out_tok;
    }
    pthread_mutex_unlock(&a->mu);
}

/* ---- answers --------------------------------------------------------------------------------- */

#define SEC_HEADERS                                                                               \
    {"content-security-policy",                                                                   \
     "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "            \
     "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"},              \
        {"x-frame-options", "DENY"}, {"x-content-type-options", "nosniff"},                       \
        {"referrer-policy", "no-referrer"}, {"cache-control", "no-store"}

static void send_json(sipp__httpd_req *http, int status, json_t *body, const char *cookie) {
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    sipp__httpd_header h[] = {SEC_HEADERS, {"content-type", "application/json"},
                              {"set-cookie", cookie}};
    size_t n = sizeof h / sizeof h[0] - (cookie ? 0 : 1);
    if (!s) {
        static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        sipp__httpd_respond(http, 500, h, n, oom, sizeof oom - 1);
        return;
    }
    sipp__httpd_respond(http, status, h, n, s, strlen(s));
    free(s);
}

static void send_error(sipp__httpd_req *http, int status, const char *code, const char *msg) {
    send_json(http, status, json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg),
              NULL);
}

static void send_asset(sipp__httpd_req *http, const char *ctype, const unsigned char *data,
                       unsigned long len) {
    sipp__httpd_header h[] = {SEC_HEADERS, {"content-type", ctype}};
    sipp__httpd_respond(http, 200, h, sizeof h / sizeof h[0], (const char *)data, len);
}

/* ---- sessions -------------------------------------------------------------------------------- */

static void random_hex(char *out, size_t n_bytes) {
    uint8_t b[32];
    if (n_bytes > sizeof b) n_bytes = sizeof b;
    if (getrandom(b, n_bytes, 0) != (ssize_t)n_bytes) abort(); /* never a guessable token */
    for (size_t i = 0; i < n_bytes; i++) sprintf(out + 2 * i, "%02x", b[i]);
    explicit_bzero(b, sizeof b);
}

/* The value of cookie `name` copied into buf, or false. */
static bool cookie_value(sipp__httpd_req *http, const char *name, char *buf, size_t cap) {
    const char *c = sipp__httpd_header_get(http, "cookie");
    size_t nl = strlen(name);
    while (c && *c) {
        while (*c == ' ' || *c == ';') c++;
        if (strncmp(c, name, nl) == 0 && c[nl] == '=') {
            const char *v = c + nl + 1;
            size_t len = strcspn(v, ";");
            if (len == 0 || len >= cap) return false;
            memcpy(buf, v, len);
            buf[len] = '\0';
            return true;
        }
        c = strchr(c, ';');
    }
    return false;
}

/* The caller's live session, or NULL. Called with a->mu held. */
static session *current_session(gw_admin *a, sipp__httpd_req *http) {
    char tok[80];
    if (!cookie_value(http, "sipp_admin", tok, sizeof tok)) return NULL;
    uint8_t d[32];
    SHA256((const unsigned char *)tok, strlen(tok), d);
    double now = sipp__gw_now();
    session *found = NULL;
    for (size_t i = 0; i < N_SESSIONS; i++) /* every slot compared: no early exit */
        if (a->sessions[i].expires > now && sipp__gw_digest_equal(d, a->sessions[i].token_digest))
            found = &a->sessions[i];
    return found;
}

static bool csrf_ok(const session *s, const char *hdr) {
    if (!hdr) return false;
    uint8_t x[32], y[32];
    SHA256((const unsigned char *)hdr, strlen(hdr), x);
    SHA256((const unsigned char *)s->csrf, strlen(s->csrf), y);
    return sipp__gw_digest_equal(x, y);
}

static void cookie_header(gw_admin *a, const char *token, int max_age, char *buf, size_t cap) {
    snprintf(buf, cap, "sipp_admin=%s; Path=%s; Max-Age=%d; HttpOnly; SameSite=Strict", token,
             a->host.route, max_age);
}

/* The client address as logged, and the login throttle's key for it: the address itself, or
 * for IPv6 its /64 (one host usually holds a whole /64 and could rotate through it). */
static void login_who(gw_admin *a, sipp__httpd_req *http, char *addr, size_t acap, char *key,
                      size_t kcap) {
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    sipp__gw_ip ip = a->host.client_ip(a->host.ctx, http);
    sipp__gw_ip_format(&ip, addr, acap);
    if (memcmp(ip.b, mapped, sizeof mapped) != 0) memset(ip.b + 8, 0, 8);
    char net[64];
    sipp__gw_ip_format(&ip, net, sizeof net);
    snprintf(key, kcap, "login:%s", net);
}

static void do_login(gw_admin *a, sipp__httpd_req *http) {
    uint32_t wait = 0;
    char addr[64], key[80];
    login_who(a, http, addr, sizeof addr, key, sizeof key);
    if (!sipp__gw_limiter_take(a->login_limit, key, (sipp__gw_rate){20, 0},
                               (sipp__gw_rate){0, 0}, sipp__gw_now(), &wait)) {
        send_error(http, 429, "rate_limited", "too many login attempts; wait a minute");
        return;
    }
    size_t len;
    const char *body = sipp__httpd_body(http, &len);
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *pw = root ? json_object_get(root, "password") : NULL;
    if (!json_is_string(pw)) {
        json_decref(root);
        send_error(http, 400, "invalid_json", "expected {\"password\": string}");
        return;
    }
    uint8_t d[32];
    SHA256((const unsigned char *)json_string_value(pw), json_string_length(pw), d);
    json_decref(root);
    bool ok = sipp__gw_digest_equal(d, a->pw_digest);
    explicit_bzero(d, sizeof d);
    if (!ok) {
        json_t *x = json_pack("{s:s}", "client_ip", addr);
        sipp__gw_log("warn", "admin login failed", x);
        json_decref(x);
        send_error(http, 401, "authentication", "wrong password");
        return;
    }
    char token[65], cookie[256];
    pthread_mutex_lock(&a->mu);
    session *s = &a->sessions[0];
    double now = sipp__gw_now();
    for (size_t i = 0; i < N_SESSIONS; i++) /* a free or expired slot, else the oldest */
        if (a->sessions[i].expires <= now || a->sessions[i].expires < s->expires)
            s = &a->sessions[i];
    random_hex(token, 32);
    SHA256((const unsigned char *)token, 64, s->token_digest);
    random_hex(s->csrf, 32);
    s->expires = now + SESSION_S;
    json_t *out = json_pack("{s:s}", "csrf", s->csrf);
    pthread_mutex_unlock(&a->mu);
    cookie_header(a, token, SESSION_S, cookie, sizeof cookie);
    explicit_bzero(token, sizeof token);
    sipp__gw_log("info", "admin login", NULL);
    send_json(http, 200, out, cookie);
}

/* ---- state ----------------------------------------------------------------------------------- */

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* {p50, p90, p99, n} of v (sorted in place); nulls when empty. */
static json_t *percentiles(double *v, size_t n) {
    if (n == 0) return json_pack("{s:n, s:n, s:n, s:i}", "p50", "p90", "p99", "n", 0);
    qsort(v, n, sizeof *v, cmp_double);
    double p[3] = {0.5, 0.9, 0.99};
    json_t *o = json_object();
    const char *names[3] = {"p50", "p90", "p99"};
    for (int i = 0; i < 3; i++) {
        size_t k = (size_t)ceil(p[i] * (double)n);
        json_object_set_new(o, names[i], json_real(v[k ? k - 1 : 0]));
    }
    json_object_set_new(o, "n", json_integer((json_int_t)n));
    return o;
}

static json_t *usage_json(const usage *u) {
    return json_pack("{s:I, s:I, s:I, s:I}", "requests", (json_int_t)u->requests, "errors",
                     (json_int_t)u->errors, "input_tokens", (json_int_t)u->in_tok,
                     "output_tokens", (json_int_t)u->out_tok);
}

static const char *caller_label(const gw_admin *a, int c) {
    return c >= 0 && (size_t)c < a->host.n_callers ? a->host.caller_names[c] : "anonymous";
}

static const char *target_label(const gw_admin *a, int t) {
    return t >= 0 && (size_t)t < a->host.n_targets ? a->host.target_names[t] : "";
}

static void do_state(gw_admin *a, sipp__httpd_req *http) {
    const sipp__gw_admin_host *h = &a->host;
    json_t *live = json_array(), *recent = json_array(), *targets = json_array(),
           *callers = json_array();
    double lat[N_RECENT], ttft[N_RECENT];
    size_t n_lat = 0, n_ttft = 0;
    double now = sipp__gw_now();
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < N_LIVE; i++) {
        const live_req *l = &a->live[i];
        if (!l->key) continue;
        json_array_append_new(
            live, json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:f}", "id", l->id, "caller",
                            caller_label(a, l->caller), "target", target_label(a, l->target),
                            "operation", l->op < GW_N_OPS ? sipp__gw_op_name(l->op) : "",
                            "stream", l->stream, "output_tokens", (json_int_t)l->out_tok,
                            "age_ms", (now - l->t0) * 1000.0));
    }
    for (size_t k = 0; k < a->n_recent; k++) { /* newest first */
        const gw_done *d = &a->recent[(a->recent_next + N_RECENT - 1 - k) % N_RECENT];
        json_t *e = json_pack("{s:s, s:f, s:s, s:s, s:s, s:i, s:s, s:f, s:I, s:I, s:b}", "id",
                              d->id, "time", d->t_end, "caller", caller_label(a, d->caller),
                              "target", target_label(a, d->target), "operation",
                              d->op < GW_N_OPS ? sipp__gw_op_name(d->op) : "", "status", d->status,
                              "code", sipp__gw_code_name(d->code), "latency_ms", d->latency_ms,
                              "input_tokens", (json_int_t)d->in_tok, "output_tokens",
                              (json_int_t)d->out_tok, "stream", d->stream);
        json_object_set_new(e, "ttft_ms", d->ttft_ms >= 0 ? json_real(d->ttft_ms) : json_null());
        if (k < 100) json_array_append_new(recent, e);
        else json_decref(e);
        if (d->status == 200) {
            lat[n_lat++] = d->latency_ms;
            if (d->ttft_ms >= 0) ttft[n_ttft++] = d->ttft_ms;
        }
    }
    for (size_t t = 0; t <= h->n_targets; t++) {
        if (t == h->n_targets && !a->by_target[t].requests) continue;
        json_t *u = usage_json(&a->by_target[t]);
        json_object_set_new(u, "target", json_string(t < h->n_targets ? h->target_names[t]
                                                                      : "(none)"));
        if (t < h->n_targets) json_object_set_new(u, "type", json_string(h->target_types[t]));
        json_array_append_new(targets, u);
    }
    for (size_t c = 0; c <= h->n_callers; c++) {
        if (c == h->n_callers && h->n_callers) continue; /* anonymous only on open gateways */
        json_t *u = usage_json(&a->by_caller[c]);
        json_object_set_new(u, "caller",
                            json_string(caller_label(a, c < h->n_callers ? (int)c : -1)));
        json_array_append_new(callers, u);
    }
    json_t *total = usage_json(&a->total);
    pthread_mutex_unlock(&a->mu);
    json_t *o = json_pack("{s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "total", total,
                          "active", (json_int_t)h->active(h->ctx), "live",
                          live, "recent", recent, "latency_ms", percentiles(lat, n_lat), "ttft_ms",
                          percentiles(ttft, n_ttft), "targets", targets, "callers", callers,
                          "settings", h->settings(h->ctx));
    json_object_set_new(o, "replicas", h->replicas ? h->replicas(h->ctx) : json_array());
    json_object_set_new(o, "models", h->residency ? h->residency(h->ctx) : json_array());
    send_json(http, 200, o, NULL);
}

static void do_settings(gw_admin *a, sipp__httpd_req *http) {
    const sipp__gw_admin_host *h = &a->host;
    size_t len;
    const char *body = sipp__httpd_body(http, &len);
    sipp__gw_admin_settings s;
    char err[256];
    if (sipp__gw_admin_settings_parse(body, len, h->caller_names, h->n_callers, &s, err,
                                      sizeof err) != 0) {
        send_error(http, 400, "invalid_json", err);
        return;
    }
    h->apply(h->ctx, &s);
    sipp__gw_admin_settings_free(&s);
    json_t *now = h->settings(h->ctx);
    char *txt = json_dumps(now, JSON_COMPACT);
    json_t *x = json_pack("{s:s}", "settings", txt ? txt : "");
    sipp__gw_log("info", "admin changed settings", x);
    json_decref(x);
    free(txt);
    send_json(http, 200, now, NULL);
}

/* ---- routing --------------------------------------------------------------------------------- */

void sipp__gw_admin_handle(gw_admin *a, sipp__httpd_req *http) {
    if (!a) {
        send_error(http, 404, "not_found",
                   "the admin dashboard is off: set admin_password_env and its variable");
        return;
    }
    const char *route = a->host.route;
    size_t rlen = strlen(route);
    if (rlen > 1 && route[rlen - 1] == '/') rlen--;
    const char *path = sipp__httpd_path(http), *rel = path + rlen;
    const char *method = sipp__httpd_method(http);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;
    if (*rel == '\0') { /* "/admin" -> "/admin/" so relative asset paths resolve */
        char loc[300];
        snprintf(loc, sizeof loc, "%.*s/", (int)rlen, route);
        sipp__httpd_header h[] = {SEC_HEADERS, {"location", loc}};
        sipp__httpd_respond(http, 308, h, sizeof h / sizeof h[0], "", 0);
        return;
    }
    rel++; /* past the '/' */
    const char *want = NULL;
    if (strcmp(rel, "") == 0 || strcmp(rel, "app.js") == 0 || strcmp(rel, "app.css") == 0 ||
        strcmp(rel, "api/session") == 0 || strcmp(rel, "api/state") == 0)
        want = "GET";
    else if (strcmp(rel, "api/login") == 0 || strcmp(rel, "api/logout") == 0 ||
             strcmp(rel, "api/settings") == 0 || strcmp(rel, "api/reload") == 0)
        want = "POST";
    if (!want) {
        send_error(http, 404, "not_found", "no such admin route");
        return;
    }
    if ((strcmp(want, "GET") == 0 && !get) || (strcmp(want, "POST") == 0 && !post)) {
        send_error(http, 405, "method_not_allowed",
                   strcmp(want, "GET") == 0 ? "use GET" : "use POST");
        return;
    }
    if (strcmp(rel, "") == 0) {
        send_asset(http, "text/html; charset=utf-8", sipp__gw_asset_index_html,
                   sipp__gw_asset_index_html_len);
        return;
    }
    if (strcmp(rel, "app.js") == 0) {
        send_asset(http, "text/javascript; charset=utf-8", sipp__gw_asset_app_js,
                   sipp__gw_asset_app_js_len);
        return;
    }
    if (strcmp(rel, "app.css") == 0) {
        send_asset(http, "text/css; charset=utf-8", sipp__gw_asset_app_css,
                   sipp__gw_asset_app_css_len);
        return;
    }

    const char *csrf = sipp__httpd_header_get(http, "x-sipp-admin-csrf");
    if (post && (!csrf || !*csrf)) {
        send_error(http, 403, "csrf", "mutations need the x-sipp-admin-csrf header");
        return;
    }
    if (post) {
        const char *why;
        if (sipp__httpd_rejected(http, &why)) {
            send_error(http, 400, "invalid_json", why);
            return;
        }
        if (!sipp__gw_is_json_type(sipp__httpd_header_get(http, "content-type"))) {
            send_error(http, 415, "unsupported_media_type",
                       "the body must be sent with 'Content-Type: application/json'");
            return;
        }
    }
    if (strcmp(rel, "api/login") == 0) {
        do_login(a, http);
        return;
    }

    pthread_mutex_lock(&a->mu);
    session *s = current_session(a, http);
    bool csrf_good = s && (!post || csrf_ok(s, csrf));
    char csrf_copy[65] = "";
    if (s) memcpy(csrf_copy, s->csrf, sizeof csrf_copy);
    if (s && csrf_good && strcmp(rel, "api/logout") == 0) memset(s, 0, sizeof *s);
    pthread_mutex_unlock(&a->mu);
    if (!s) {
        send_error(http, 401, "authentication", "log in first");
        return;
    }
    if (!csrf_good) {
        send_error(http, 403, "csrf", "the x-sipp-admin-csrf header does not match the session");
        return;
    }
    if (strcmp(rel, "api/logout") == 0) {
        char cookie[256];
        cookie_header(a, "", 0, cookie, sizeof cookie);
        send_json(http, 200, json_pack("{s:b}", "ok", 1), cookie);
    } else if (strcmp(rel, "api/session") == 0) {
        send_json(http, 200, json_pack("{s:s}", "csrf", csrf_copy), NULL);
    } else if (strcmp(rel, "api/state") == 0) {
        do_state(a, http);
    } else if (strcmp(rel, "api/reload") == 0) {
        char why[768] = "reload is not available";
        if (a->host.reload && a->host.reload(a->host.ctx, why, sizeof why) == 0)
            send_json(http, 200, json_pack("{s:b}", "ok", 1), NULL);
        else
            send_error(http, 400, "reload_refused", why);
    } else {
        do_settings(a, http);
    }
    explicit_bzero(csrf_copy, sizeof csrf_copy);
}
