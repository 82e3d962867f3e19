/*
 * config.c — loads the gateway's TOML configuration into sipp__gw_config (config.h).
 *
 * The text goes through toml_shim.cpp (toml11) into a generic tree; this file walks the tree
 * with one rule per key: unknown keys, wrong types and out-of-range values are errors of the
 * form "LINE: key 'x' ...". After the walk, whole-config checks run (binds differ, routes,
 * duplicate routes / targets / callers, token target lists that name unknown targets, CIDRs).
 * Nothing here reads the environment or touches a model: `sipp-gateway check` relies on that.
 * On any error the partly filled config is freed, so callers see either all of it or nothing.
 */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include "policy.h"
#include "sipp_settings.h"

#include "../common/common_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const sipp__gw_route_keys[SIPP__GW_N_ROUTES] = {
    "query",  "chat",     "embed",  "chat_completions", "completions", "embeddings",
    "models", "messages", "healthz", "readyz",          "metrics",     "admin",
    "transcriptions",
};
const char *const sipp__gw_route_defaults[SIPP__GW_N_ROUTES] = {
    "/v1/query",  "/v1/chat", "/v1/embed", "/v1/chat/completions", "/v1/completions",
    "/v1/embeddings", "/v1/models", "/v1/messages", "/healthz", "/readyz", "/metrics", "/admin/",
    "/v1/audio/transcriptions",
};

const char *sipp__gw_target_type_name(sipp__gw_target_type t) {
    switch (t) {
    case SIPP__GW_LOCAL: return "local";
    case SIPP__GW_OPENAI: return "openai";
    case SIPP__GW_OPENAI_COMPATIBLE: return "openai_compatible";
    case SIPP__GW_ANTHROPIC: return "anthropic";
    }
    return "unknown";
}

/* ---- error plumbing ------------------------------------------------------------------------ */

typedef struct ctx {
    char *err;
    size_t cap;
    bool failed;
} ctx;

__attribute__((format(printf, 3, 4))) static bool fail(ctx *c, int line, const char *fmt, ...) {
    if (c->failed) return false;
    c->failed = true;
    if (!c->err || c->cap == 0) return false;
    int n = 0;
    if (line > 0) n = snprintf(c->err, c->cap, "line %d: ", line);
    if (n < 0 || (size_t)n >= c->cap) return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->cap - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static const char *kind_name(sipp__toml_kind k) {
    switch (k) {
    case SIPP__TOML_TABLE: return "a table";
    case SIPP__TOML_ARRAY: return "an array";
    case SIPP__TOML_STRING: return "a string";
    case SIPP__TOML_INT: return "an integer";
    case SIPP__TOML_FLOAT: return "a float";
    case SIPP__TOML_BOOL: return "a boolean";
    default: return "a date or time";
    }
}

/* ---- typed getters: each checks the node's kind and range, names the key on failure ------ */

static bool want(ctx *c, const sipp__toml_node *n, const char *path, sipp__toml_kind k,
                 const char *what) {
    if (n->kind == k) return true;
    return fail(c, n->line, "key '%s' must be %s, not %s", path, what, kind_name(n->kind));
}

static bool get_str(ctx *c, const sipp__toml_node *n, const char *path, char **out) {
    if (!want(c, n, path, SIPP__TOML_STRING, "a string")) return false;
    if (n->str[0] == '\0') return fail(c, n->line, "key '%s' must not be empty", path);
    if (strlen(n->str) > 4096) return fail(c, n->line, "key '%s' is too long", path);
    free(*out);
    *out = strdup(n->str);
    return *out ? true : fail(c, n->line, "out of memory");
}

static bool get_u64(ctx *c, const sipp__toml_node *n, const char *path, uint64_t lo, uint64_t hi,
                    uint64_t *out) {
    if (!want(c, n, path, SIPP__TOML_INT, "an integer")) return false;
    if (n->i < 0 || (uint64_t)n->i < lo || (uint64_t)n->i > hi)
        return fail(c, n->line, "key '%s' must be between %llu and %llu", path,
                    (unsigned long long)lo, (unsigned long long)hi);
    *out = (uint64_t)n->i;
    return true;
}

static bool get_u32(ctx *c, const sipp__toml_node *n, const char *path, uint32_t lo, uint32_t hi,
                    uint32_t *out) {
    uint64_t v = 0;
    if (!get_u64(c, n, path, lo, hi, &v)) return false;
    *out = (uint32_t)v;
    return true;
}

static bool get_bool(ctx *c, const sipp__toml_node *n, const char *path, bool *out) {
    if (!want(c, n, path, SIPP__TOML_BOOL, "a boolean")) return false;
    *out = n->b;
    return true;
}

static void free_strv(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* An array of non-empty strings. */
static bool get_strv(ctx *c, const sipp__toml_node *n, const char *path, char ***out,
                     size_t *n_out) {
    if (!want(c, n, path, SIPP__TOML_ARRAY, "an array of strings")) return false;
    if (n->n_items > 4096) return fail(c, n->line, "key '%s' has too many entries", path);
    char **v = calloc(n->n_items + 1, sizeof *v);
    if (!v) return fail(c, n->line, "out of memory");
    for (size_t i = 0; i < n->n_items; i++) {
        const sipp__toml_node *it = &n->items[i];
        if (it->kind != SIPP__TOML_STRING || it->str[0] == '\0') {
            free_strv(v, i);
            return fail(c, it->line, "key '%s' must be an array of non-empty strings", path);
        }
        v[i] = strdup(it->str);
        if (!v[i]) {
            free_strv(v, i);
            return fail(c, n->line, "out of memory");
        }
    }
    free_strv(*out, *n_out);
    *out = v;
    *n_out = n->n_items;
    return true;
}

static bool unknown(ctx *c, const sipp__toml_node *n, const char *where) {
    return fail(c, n->line, "unknown key '%s%s%s'", where, *where ? "." : "", n->key);
}

/* ---- sections ------------------------------------------------------------------------------ */

static bool parse_routes(ctx *c, const sipp__toml_node *t, sipp__gw_config *cfg, int *lines) {
    if (!want(c, t, "routes", SIPP__TOML_TABLE, "a table")) return false;
    for (size_t i = 0; i < t->n_items; i++) {
        const sipp__toml_node *n = &t->items[i];
        size_t r = 0;
        while (r < SIPP__GW_N_ROUTES && strcmp(n->key, sipp__gw_route_keys[r]) != 0) r++;
        if (r == SIPP__GW_N_ROUTES) return unknown(c, n, "routes");
        char path[64];
        snprintf(path, sizeof path, "routes.%s", n->key);
        if (!get_str(c, n, path, &cfg->routes[r])) return false;
        lines[r] = n->line;
    }
    return true;
}

static bool parse_security(ctx *c, const sipp__toml_node *t, sipp__gw_config *cfg) {
    if (!want(c, t, "security", SIPP__TOML_TABLE, "a table")) return false;
    for (size_t i = 0; i < t->n_items; i++) {
        const sipp__toml_node *n = &t->items[i];
        if (strcmp(n->key, "client_ip") == 0) {
            if (!want(c, n, "security.client_ip", SIPP__TOML_TABLE, "a table")) return false;
            for (size_t j = 0; j < n->n_items; j++) {
                const sipp__toml_node *m = &n->items[j];
                if (strcmp(m->key, "source") == 0) {
                    if (!want(c, m, "security.client_ip.source", SIPP__TOML_STRING, "a string"))
                        return false;
                    if (strcmp(m->str, "peer") == 0) cfg->client_ip_source = SIPP__GW_IP_PEER;
                    else if (strcmp(m->str, "x_forwarded_for") == 0)
                        cfg->client_ip_source = SIPP__GW_IP_X_FORWARDED_FOR;
                    else if (strcmp(m->str, "x_real_ip") == 0)
                        cfg->client_ip_source = SIPP__GW_IP_X_REAL_IP;
                    else
                        return fail(c, m->line,
                                    "key 'security.client_ip.source' must be peer, "
                                    "x_forwarded_for or x_real_ip");
                } else if (strcmp(m->key, "trusted_proxy_cidrs") == 0) {
                    if (!get_strv(c, m, "security.client_ip.trusted_proxy_cidrs",
                                  &cfg->trusted_proxy_cidrs, &cfg->n_trusted_proxy_cidrs))
                        return false;
                    for (size_t k = 0; k < cfg->n_trusted_proxy_cidrs; k++) {
                        sipp__gw_cidr cidr;
                        if (!sipp__gw_cidr_parse(cfg->trusted_proxy_cidrs[k], &cidr))
                            return fail(c, m->line,
                                        "key 'security.client_ip.trusted_proxy_cidrs': '%s' is "
                                        "not an address or CIDR range",
                                        cfg->trusted_proxy_cidrs[k]);
                    }
                } else {
                    return unknown(c, m, "security.client_ip");
                }
            }
        } else if (strcmp(n->key, "rate_limit") == 0) {
            if (!want(c, n, "security.rate_limit", SIPP__TOML_TABLE, "a table")) return false;
            for (size_t j = 0; j < n->n_items; j++) {
                const sipp__toml_node *m = &n->items[j];
                bool ok;
                if (strcmp(m->key, "enabled") == 0)
                    ok = get_bool(c, m, "security.rate_limit.enabled", &cfg->rate_limit_enabled);
                else if (strcmp(m->key, "requests_per_minute") == 0)
                    ok = get_u32(c, m, "security.rate_limit.requests_per_minute", 1, 10000000,
                                 &cfg->rate_limit_rpm);
                else if (strcmp(m->key, "burst") == 0)
                    ok = get_u32(c, m, "security.rate_limit.burst", 1, 10000000,
                                 &cfg->rate_limit_burst);
                else if (strcmp(m->key, "tokens_per_minute") == 0)
                    ok = get_u32(c, m, "security.rate_limit.tokens_per_minute", 1, 1000000000,
                                 &cfg->rate_limit_tpm);
                else
                    return unknown(c, m, "security.rate_limit");
                if (!ok) return false;
            }
        } else if (strcmp(n->key, "ip_blocklist") == 0) {
            if (!get_strv(c, n, "security.ip_blocklist", &cfg->ip_blocklist, &cfg->n_ip_blocklist))
                return false;
            for (size_t k = 0; k < cfg->n_ip_blocklist; k++) {
                sipp__gw_cidr cidr;
                if (!sipp__gw_cidr_parse(cfg->ip_blocklist[k], &cidr))
                    return fail(c, n->line,
                                "key 'security.ip_blocklist': '%s' is not an address or CIDR range",
                                cfg->ip_blocklist[k]);
            }
        } else {
            return unknown(c, n, "security");
        }
    }
    return true;
}

/* The TOML keys of targets, from the tables of sipp_settings.h (each row with a TOML key, with its
 * range): [targets.runtime] takes the local rows (the engine) and the text rows (defaults of the
 * target's requests); a provider target's own table takes the provider rows. */
static const sipp_setting local_keys[] = {SIPP_LOCAL_SETTINGS(SIPP_LOCAL_SETTING_ROW)};
static const sipp_setting text_keys[] = {SIPP_TEXT_SETTINGS(SIPP_TEXT_SETTING_ROW)};
static const sipp_setting provider_keys[] = {SIPP_PROVIDER_SETTINGS(SIPP_PROVIDER_SETTING_ROW)};
#define N_KEYS(t) (sizeof t / sizeof t[0])

/* The row of `rows` whose TOML key is `key`, or NULL. */
static const sipp_setting *key_row(const sipp_setting *rows, size_t n, const char *key) {
    for (size_t k = 0; k < n; k++)
        if (rows[k].toml && strcmp(key, rows[k].toml) == 0) return &rows[k];
    return NULL;
}

/* Frees the strings that the rows with a TOML key hold in `base` (a struct of their table). */
static void keys_free(const sipp_setting *rows, size_t n, void *base) {
    for (size_t k = 0; k < n; k++)
        if (rows[k].toml && rows[k].kind == SIPP_SETTING_STR) {
            char *v;
            memcpy(&v, (char *)base + rows[k].offset, sizeof v);
            free(v);
        }
}

/* Parses one TOML value into its field of `base` (a struct of the row's table), as the row says. A
 * string replaces (and frees) the one there: the config owns the strings of these structs. */
static bool get_setting(ctx *c, const sipp__toml_node *n, const char *path, const sipp_setting *s,
                        void *base) {
    char *dst = (char *)base + s->offset;
    switch (s->kind) {
    case SIPP_SETTING_U32: {
        uint32_t v;
        if (!get_u32(c, n, path, (uint32_t)s->min, (uint32_t)s->max, &v)) return false;
        memcpy(dst, &v, sizeof v);
        return true;
    }
    case SIPP_SETTING_U64: {
        uint64_t v;
        if (!get_u64(c, n, path, (uint64_t)s->min, s->max, &v)) return false;
        memcpy(dst, &v, sizeof v);
        return true;
    }
    case SIPP_SETTING_I32: {
        if (!want(c, n, path, SIPP__TOML_INT, "an integer")) return false;
        if (n->i < s->min || n->i > (int64_t)s->max)
            return fail(c, n->line, "key '%s' must be between %lld and %llu", path,
                        (long long)s->min, (unsigned long long)s->max);
        int32_t v = (int32_t)n->i;
        memcpy(dst, &v, sizeof v);
        return true;
    }
    case SIPP_SETTING_BOOL: {
        bool v;
        if (!get_bool(c, n, path, &v)) return false;
        memcpy(dst, &v, sizeof v);
        return true;
    }
    case SIPP_SETTING_STR: {
        char *v;
        memcpy(&v, dst, sizeof v);
        if (!get_str(c, n, path, &v)) return false;
        memcpy(dst, &v, sizeof v);
        return true;
    }
    default: return fail(c, n->line, "key '%s' cannot be set", path);
    }
}

static bool parse_runtime(ctx *c, const sipp__toml_node *t, sipp__gw_runtime *rt) {
    if (!want(c, t, "targets.runtime", SIPP__TOML_TABLE, "a table")) return false;
    for (size_t i = 0; i < t->n_items; i++) {
        const sipp__toml_node *n = &t->items[i];
        char path[96];
        snprintf(path, sizeof path, "targets.runtime.%s", n->key);
        const sipp_setting *s;
        bool ok;
        if ((s = key_row(local_keys, N_KEYS(local_keys), n->key))) {
            ok = get_setting(c, n, path, s, &rt->local);
            if (s->offset == offsetof(sipp_local_params, n_gpu_layers)) rt->has_n_gpu_layers = true;
        } else if ((s = key_row(text_keys, N_KEYS(text_keys), n->key))) {
            ok = get_setting(c, n, path, s, &rt->text);
        } else if (strcmp(n->key, "cache") == 0) { /* the gateway's own key */
            ok = get_bool(c, n, path, &rt->cache);
        } else {
            return unknown(c, n, "targets.runtime");
        }
        if (!ok) return false;
    }
    return true;
}

static void target_free(sipp__gw_target *t) {
    free(t->name);
    free(t->model);
    free(t->backend);
    free(t->sha256);
    free(t->token_env);
    keys_free(local_keys, N_KEYS(local_keys), &t->runtime.local);
    keys_free(text_keys, N_KEYS(text_keys), &t->runtime.text);
    keys_free(provider_keys, N_KEYS(provider_keys), &t->provider);
    free_strv(t->base_urls, t->n_base_urls);
    free(t->pool.health_path);
    free(t->pool.affinity_header);
}

/* Which keys each target type takes (beyond name and type): a local target its own; a provider
 * target `model`, `timeout_seconds` and the TOML keys of the provider rows, less those its type
 * has no use for (an openai_compatible target names its key `token_env`; only anthropic has a
 * `version`). */
static bool key_allowed(sipp__gw_target_type type, const char *key) {
    static const char *const local[] = {"model", "backend", "runtime", "sha256", "load",
                                        "idle_unload_seconds", NULL};
    static const char *const provider[] = {"model", "timeout_seconds", "base_urls", "pool", NULL};
    for (const char *const *k = type == SIPP__GW_LOCAL ? local : provider; *k; k++)
        if (strcmp(*k, key) == 0) return true;
    if (type == SIPP__GW_LOCAL) return false;
    if (type == SIPP__GW_OPENAI_COMPATIBLE)
        return strcmp(key, "token_env") == 0 ||
               (strcmp(key, "api_key_env") != 0 && strcmp(key, "version") != 0 &&
                key_row(provider_keys, N_KEYS(provider_keys), key));
    if (type == SIPP__GW_OPENAI && strcmp(key, "version") == 0) return false;
    return key_row(provider_keys, N_KEYS(provider_keys), key) != NULL;
}

static bool valid_name(const char *s) {
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\') return false;
    return true;
}

/* An allowed_hosts entry: "*", a DNS name or IPv4 address ([A-Za-z0-9._-]), or a bracketed
 * IPv6 address; never a scheme, a port or a path. */
static bool host_name_ok(const char *s) {
    size_t n = strlen(s);
    if (strcmp(s, "*") == 0) return true;
    if (n == 0 || n > 253) return false;
    if (s[0] == '[') {
        if (n < 3 || s[n - 1] != ']') return false;
        for (size_t i = 1; i + 1 < n; i++)
            if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
                  (s[i] >= 'A' && s[i] <= 'F') || s[i] == ':' || s[i] == '.'))
                return false;
        return true;
    }
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_'))
            return false;
    return true;
}

/* An HTTP header name as a front would set it: letters, digits and '-' (a subset of RFC 9110's
 * token), at most 64 characters. */
static bool header_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-'))
            return false;
    return true;
}

static bool valid_env_name(const char *s) {
    if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))) return false;
    for (const char *p = s; *p; p++)
        if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9')))
            return false;
    return true;
}

/* Nothing that would break a metrics label, a log line or a request line: no spaces, controls,
 * quotes or backslashes. */
static bool url_chars_ok(const char *u) {
    for (const unsigned char *p = (const unsigned char *)u; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '\\') return false;
    return true;
}

/* A replica's base URL: http(s) and url_chars_ok. */
static bool base_url_ok(const char *u) {
    return (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0) && url_chars_ok(u);
}

static bool parse_pool(ctx *c, const sipp__toml_node *t, sipp__gw_pool_cfg *pc, bool *no_probe) {
    if (!want(c, t, "targets.pool", SIPP__TOML_TABLE, "a table")) return false;
    for (size_t i = 0; i < t->n_items; i++) {
        const sipp__toml_node *n = &t->items[i];
        char path[96];
        snprintf(path, sizeof path, "targets.pool.%s", n->key);
        bool ok;
        if (strcmp(n->key, "health_path") == 0) {
            if (n->kind == SIPP__TOML_STRING && n->str[0] == '\0') { /* "" = no probe */
                *no_probe = true;
                continue;
            }
            ok = get_str(c, n, path, &pc->health_path);
            if (ok && (pc->health_path[0] != '/' || !url_chars_ok(pc->health_path) ||
                       strchr(pc->health_path, '#')))
                return fail(c, n->line, "key 'targets.pool.health_path' must be a path starting "
                            "with '/' (or \"\" for no probe)");
        } else if (strcmp(n->key, "health_interval_seconds") == 0)
            ok = get_u32(c, n, path, 1, 3600, &pc->health_interval_seconds);
        else if (strcmp(n->key, "health_timeout_seconds") == 0)
            ok = get_u32(c, n, path, 1, 300, &pc->health_timeout_seconds);
        else if (strcmp(n->key, "failure_threshold") == 0)
            ok = get_u32(c, n, path, 1, 1000, &pc->failure_threshold);
        else if (strcmp(n->key, "backoff_initial_seconds") == 0)
            ok = get_u32(c, n, path, 1, 3600, &pc->backoff_initial_seconds);
        else if (strcmp(n->key, "backoff_max_seconds") == 0)
            ok = get_u32(c, n, path, 1, 86400, &pc->backoff_max_seconds);
        else if (strcmp(n->key, "max_retries") == 0)
            ok = get_u32(c, n, path, 0, 16, &pc->max_retries);
        else if (strcmp(n->key, "retry_lost") == 0)
            ok = get_bool(c, n, path, &pc->retry_lost);
        else if (strcmp(n->key, "affinity_header") == 0) {
            ok = get_str(c, n, path, &pc->affinity_header);
            if (ok && !header_name_ok(pc->affinity_header))
                return fail(c, n->line, "key 'targets.pool.affinity_header' must be an HTTP "
                            "header name (letters, digits, '-'; at most 64)");
        } else
            return unknown(c, n, "targets.pool");
        if (!ok) return false;
    }
    return true;
}

static bool parse_target(ctx *c, const sipp__toml_node *t, sipp__gw_target *out) {
    out->line = t->line;
    out->runtime.local = (sipp_local_params){SIPP_LOCAL_SETTINGS(SIPP_SETTING_DEFAULT)};
    out->runtime.text = (sipp_text_params){SIPP_TEXT_SETTINGS(SIPP_SETTING_DEFAULT)};
    out->provider = (sipp_provider_params){SIPP_PROVIDER_SETTINGS(SIPP_SETTING_DEFAULT)};
    out->runtime.cache = true;
    out->pool.max_retries = 2;
    out->pool.retry_lost = true;
    bool no_probe = false;
    if (!want(c, t, "targets", SIPP__TOML_TABLE, "a table ([[targets]])")) return false;
    const sipp__toml_node *type = NULL, *name = NULL;
    for (size_t i = 0; i < t->n_items; i++) {
        if (strcmp(t->items[i].key, "type") == 0) type = &t->items[i];
        if (strcmp(t->items[i].key, "name") == 0) name = &t->items[i];
    }
    if (!name) return fail(c, t->line, "a [[targets]] entry has no 'name'");
    if (!get_str(c, name, "targets.name", &out->name)) return false;
    if (!valid_name(out->name) || strlen(out->name) > 128)
        return fail(c, name->line, "key 'targets.name': '%s' must be at most 128 printable "
                    "characters without spaces or quotes", out->name);
    if (!type) return fail(c, t->line, "target '%s' has no 'type'", out->name);
    if (!want(c, type, "targets.type", SIPP__TOML_STRING, "a string")) return false;
    if (strcmp(type->str, "local") == 0) out->type = SIPP__GW_LOCAL;
    else if (strcmp(type->str, "openai") == 0) out->type = SIPP__GW_OPENAI;
    else if (strcmp(type->str, "openai_compatible") == 0) out->type = SIPP__GW_OPENAI_COMPATIBLE;
    else if (strcmp(type->str, "anthropic") == 0) out->type = SIPP__GW_ANTHROPIC;
    else
        return fail(c, type->line,
                    "key 'targets.type' must be local, openai, openai_compatible or anthropic");
    for (size_t i = 0; i < t->n_items; i++) {
        const sipp__toml_node *n = &t->items[i];
        if (n == type || n == name) continue;
        char path[96];
        snprintf(path, sizeof path, "targets.%s", n->key);
        if (!key_allowed(out->type, n->key))
            return fail(c, n->line, "unknown key '%s' for a target of type %s", path,
                        sipp__gw_target_type_name(out->type));
        bool ok = true;
        if (strcmp(n->key, "model") == 0) ok = get_str(c, n, path, &out->model);
        else if (strcmp(n->key, "backend") == 0) {
            ok = get_str(c, n, path, &out->backend);
            if (ok && strcmp(out->backend, "auto") != 0 && strcmp(out->backend, "cpu") != 0 &&
                strcmp(out->backend, "cuda") != 0 && strcmp(out->backend, "vulkan") != 0)
                return fail(c, n->line, "key 'targets.backend' must be auto, cpu, cuda or vulkan");
        } else if (strcmp(n->key, "sha256") == 0) {
            /* the format only: the file is hashed when the gateway loads it */
            ok = get_str(c, n, path, &out->sha256);
            if (ok && (strlen(out->sha256) != 64 ||
                       strspn(out->sha256, "0123456789abcdefABCDEF") != 64))
                return fail(c, n->line, "key 'targets.sha256' must be 64 hex digits (the model "
                            "file's SHA-256)");
        } else if (strcmp(n->key, "token_env") == 0) {
            ok = get_str(c, n, path, &out->token_env);
        } else if (strcmp(n->key, "timeout_seconds") == 0) {
            ok = get_u32(c, n, path, 1, 86400, &out->timeout_seconds);
        } else if (key_row(provider_keys, N_KEYS(provider_keys), n->key)) {
            /* base_url, api_key_env, version, allow_private_network: sipp_provider_params */
            ok = get_setting(c, n, path, key_row(provider_keys, N_KEYS(provider_keys), n->key),
                             &out->provider);
            if (ok && strcmp(n->key, "base_url") == 0 && !base_url_ok(out->provider.base_url))
                return fail(c, n->line,
                            "key 'targets.base_url' must be an http:// or https:// URL");
        } else if (strcmp(n->key, "runtime") == 0) {
            ok = parse_runtime(c, n, &out->runtime);
        } else if (strcmp(n->key, "load") == 0) { /* residency */
            ok = want(c, n, path, SIPP__TOML_STRING, "a string");
            if (ok && strcmp(n->str, "on_use") != 0 && strcmp(n->str, "start") != 0)
                return fail(c, n->line, "key 'targets.load' must be start or on_use");
            out->load_on_use = ok && strcmp(n->str, "on_use") == 0;
        } else if (strcmp(n->key, "idle_unload_seconds") == 0) {
            ok = get_u32(c, n, path, 0, 30u * 86400u, &out->idle_unload_seconds);
        } else if (strcmp(n->key, "base_urls") == 0) {
            ok = get_strv(c, n, path, &out->base_urls, &out->n_base_urls);
            if (ok && (out->n_base_urls == 0 || out->n_base_urls > SIPP__GW_MAX_REPLICAS))
                return fail(c, n->line, "key 'targets.base_urls' must list 1 to %d URLs",
                            SIPP__GW_MAX_REPLICAS);
            for (size_t k = 0; ok && k < out->n_base_urls; k++) {
                if (!base_url_ok(out->base_urls[k]))
                    return fail(c, n->line, "key 'targets.base_urls': '%.200s' is not an http:// "
                                "or https:// URL", out->base_urls[k]);
                for (size_t j = 0; j < k; j++)
                    if (strcmp(out->base_urls[j], out->base_urls[k]) == 0)
                        return fail(c, n->line, "key 'targets.base_urls' lists '%.200s' twice",
                                    out->base_urls[k]);
            }
        } else if (strcmp(n->key, "pool") == 0) {
            ok = parse_pool(c, n, &out->pool, &no_probe);
        }
        if (!ok) return false;
    }
    if (out->provider.base_url && out->base_urls)
        return fail(c, t->line, "target '%s': give 'base_url' or 'base_urls', not both",
                    out->name);
    if (out->provider.base_url) { /* one replica */
        out->base_urls = calloc(2, sizeof *out->base_urls);
        if (!out->base_urls || !(out->base_urls[0] = strdup(out->provider.base_url)))
            return fail(c, t->line, "out of memory");
        out->n_base_urls = 1;
    } else if (out->base_urls) {
        /* the provider params carry the first replica (owned by the config like the key's) */
        out->provider.base_url = strdup(out->base_urls[0]);
        if (!out->provider.base_url) return fail(c, t->line, "out of memory");
    }
    sipp__gw_pool_cfg *pc = &out->pool;
    if (!pc->health_path && !no_probe && out->n_base_urls > 1) {
        pc->health_path = strdup("/models");
        if (!pc->health_path) return fail(c, t->line, "out of memory");
    }
    if (pc->health_path && !out->n_base_urls)
        return fail(c, t->line, "target '%s': a health probe needs 'base_url' or 'base_urls'",
                    out->name);
    if (!pc->health_interval_seconds) pc->health_interval_seconds = 10;
    if (!pc->health_timeout_seconds) pc->health_timeout_seconds = 5;
    if (!pc->failure_threshold) pc->failure_threshold = 3;
    if (!pc->backoff_initial_seconds) pc->backoff_initial_seconds = 1;
    if (!pc->backoff_max_seconds) pc->backoff_max_seconds = 60;
    if (pc->backoff_max_seconds < pc->backoff_initial_seconds)
        return fail(c, t->line, "target '%s': pool.backoff_max_seconds is below "
                    "backoff_initial_seconds", out->name);
    if (!out->model) return fail(c, t->line, "target '%s' needs 'model'", out->name);
    const sipp_provider_params *pp = &out->provider;
    if ((out->type == SIPP__GW_OPENAI || out->type == SIPP__GW_ANTHROPIC) && !pp->api_key_env)
        return fail(c, t->line, "target '%s' needs 'api_key_env'", out->name);
    if (out->type == SIPP__GW_OPENAI_COMPATIBLE && !pp->base_url)
        return fail(c, t->line, "target '%s' needs 'base_url' or 'base_urls'", out->name);
    const char *env = pp->api_key_env ? pp->api_key_env : out->token_env;
    if (env && !valid_env_name(env))
        return fail(c, t->line, "target '%s': '%s' is not an environment variable name", out->name,
                    env);
    if (out->type == SIPP__GW_LOCAL) {
        if (!out->backend) out->backend = strdup("auto");
        if (!out->backend) return fail(c, t->line, "out of memory");
        if (!out->runtime.has_n_gpu_layers)
            out->runtime.local.n_gpu_layers = strcmp(out->backend, "cpu") == 0 ? 0 : -1;
    }
    return true;
}

static bool parse_token(ctx *c, const sipp__toml_node *t, sipp__gw_token *out) {
    out->line = t->line;
    if (!want(c, t, "tokens", SIPP__TOML_TABLE, "a table ([[tokens]])")) return false;
    for (size_t i = 0; i < t->n_items; i++) {
        const sipp__toml_node *n = &t->items[i];
        char path[96];
        snprintf(path, sizeof path, "tokens.%s", n->key);
        bool ok;
        if (strcmp(n->key, "env") == 0) {
            ok = get_str(c, n, path, &out->env);
            if (ok && !valid_env_name(out->env))
                return fail(c, n->line, "key 'tokens.env': '%s' is not an environment variable name",
                            out->env);
        } else if (strcmp(n->key, "caller") == 0) {
            ok = get_str(c, n, path, &out->caller);
            if (ok && (!valid_name(out->caller) || strlen(out->caller) > 128))
                return fail(c, n->line, "key 'tokens.caller' must be at most 128 printable "
                            "characters without spaces or quotes");
        } else if (strcmp(n->key, "targets") == 0)
            ok = get_strv(c, n, path, &out->targets, &out->n_targets);
        else if (strcmp(n->key, "requests_per_minute") == 0)
            ok = get_u32(c, n, path, 1, 10000000, &out->requests_per_minute);
        else if (strcmp(n->key, "tokens_per_minute") == 0)
            ok = get_u32(c, n, path, 1, 1000000000, &out->tokens_per_minute);
        else if (strcmp(n->key, "max_concurrent") == 0)
            ok = get_u32(c, n, path, 1, 100000, &out->max_concurrent);
        else
            return unknown(c, n, "tokens");
        if (!ok) return false;
    }
    if (!out->env) return fail(c, t->line, "a [[tokens]] entry needs 'env'");
    if (!out->caller) return fail(c, t->line, "a [[tokens]] entry needs 'caller'");
    return true;
}

/* "host:port" or "[v6]:port" with a numeric port 1..65535 and a literal address. */
static bool bind_ok(const char *s) {
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) return false;
    char host[64];
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hl < 3 || s[hl - 1] != ']') return false;
        s++;
        hl -= 2;
    }
    if (hl >= sizeof host) return false;
    memcpy(host, s, hl);
    host[hl] = '\0';
    sipp__gw_ip ip;
    if (!sipp__gw_ip_parse(host, &ip)) return false;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    return errno == 0 && *end == '\0' && colon[1] != '\0' && port >= 1 && port <= 65535 &&
           colon[1] != '+' && colon[1] != '-';
}

static bool validate(ctx *c, sipp__gw_config *cfg, const int *route_lines, int pub_line,
                     int mgmt_line) {
    if (!bind_ok(cfg->public_bind))
        return fail(c, pub_line, "key 'public_bind': '%s' is not HOST:PORT with a literal address",
                    cfg->public_bind);
    if (!bind_ok(cfg->management_bind))
        return fail(c, mgmt_line,
                    "key 'management_bind': '%s' is not HOST:PORT with a literal address",
                    cfg->management_bind);
    if (strcmp(cfg->public_bind, cfg->management_bind) == 0)
        return fail(c, mgmt_line, "public_bind and management_bind must differ (both are %s)",
                    cfg->public_bind);
    for (size_t r = 0; r < SIPP__GW_N_ROUTES; r++) {
        const char *p = cfg->routes[r];
        if (p[0] != '/')
            return fail(c, route_lines[r], "key 'routes.%s' must start with '/'",
                        sipp__gw_route_keys[r]);
        for (const char *q = p; *q; q++)
            if (*q == '?' || *q == '#' || (unsigned char)*q <= 0x20 || *q == 0x7f)
                return fail(c, route_lines[r],
                            "key 'routes.%s' must not contain '?', '#', spaces or control "
                            "characters",
                            sipp__gw_route_keys[r]);
        for (size_t s = 0; s < r; s++)
            if (strcmp(cfg->routes[s], p) == 0)
                return fail(c, route_lines[r] ? route_lines[r] : route_lines[s],
                            "duplicate route '%s' (routes.%s and routes.%s)", p,
                            sipp__gw_route_keys[s], sipp__gw_route_keys[r]);
    }
    for (size_t i = 0; i < cfg->n_allowed_origins; i++) {
        const char *o = cfg->allowed_origins[i];
        if ((strncmp(o, "http://", 7) != 0 && strncmp(o, "https://", 8) != 0) ||
            o[strlen(o) - 1] == '/' || strchr(o, '*'))
            return fail(c, 0,
                        "allowed_origins: '%s' must be an exact origin like https://app.example "
                        "(scheme and host, no path, no wildcard)",
                        o);
    }
    for (size_t i = 0; i < cfg->n_targets; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->targets[i].name, cfg->targets[j].name) == 0)
                return fail(c, cfg->targets[i].line, "duplicate target '%s' (first at line %d)",
                            cfg->targets[i].name, cfg->targets[j].line);
    for (size_t i = 0; i < cfg->n_tokens; i++) {
        sipp__gw_token *t = &cfg->tokens[i];
        for (size_t j = 0; j < i; j++) {
            if (strcmp(t->caller, cfg->tokens[j].caller) == 0)
                return fail(c, t->line, "duplicate caller '%s' (first at line %d)", t->caller,
                            cfg->tokens[j].line);
            if (strcmp(t->env, cfg->tokens[j].env) == 0)
                return fail(c, t->line, "tokens of '%s' and '%s' read the same env var '%s'",
                            cfg->tokens[j].caller, t->caller, t->env);
        }
        for (size_t k = 0; k < t->n_targets; k++) {
            bool found = false;
            for (size_t j = 0; j < cfg->n_targets && !found; j++)
                found = strcmp(cfg->targets[j].name, t->targets[k]) == 0;
            if (!found)
                return fail(c, t->line, "caller '%s' lists unknown target '%s'", t->caller,
                            t->targets[k]);
        }
    }
    if (cfg->admin_password_env && !valid_env_name(cfg->admin_password_env))
        return fail(c, 0, "admin_password_env: '%s' is not an environment variable name",
                    cfg->admin_password_env);
    if (cfg->n_targets == 0) return fail(c, 0, "no [[targets]]: the gateway would serve nothing");
    return true;
}

/* A cheap guard before toml11, whose parser recurses: bracket nesting outside strings and
 * comments must stay under SIPP__TOML_MAX_DEPTH. */
static bool nesting_ok(const char *s, size_t len) {
    int depth = 0;
    char quote = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (quote) {
            if (ch == '\\' && quote == '"' && i + 1 < len) i++;
            else if (ch == quote || ch == '\n') quote = 0;
            continue;
        }
        if (ch == '"' || ch == '\'') quote = ch;
        else if (ch == '#') {
            while (i < len && s[i] != '\n') i++;
        } else if (ch == '[' || ch == '{') {
            if (++depth > SIPP__TOML_MAX_DEPTH) return false;
        } else if ((ch == ']' || ch == '}') && depth > 0)
            depth--;
    }
    return true;
}

/* TOML is UTF-8. toml11 (3.7, Debian's) reads past the end of its buffer when a string holds
 * bytes that are not (found by fuzz_gw_config: `'\xff'`), so nothing else reaches it. Returns
 * 0 when `s` is well-formed UTF-8 (src/common's validator: no overlongs, surrogates or code
 * points past U+10FFFF), else the 1-based line of the first bad byte. */
static int utf8_bad_line(const char *text, size_t len) {
    size_t bad = sipp__utf8_valid_len(text, len);
    if (bad == len) return 0;
    int line = 1;
    for (size_t i = 0; i < bad; i++) line += text[i] == '\n';
    return line;
}

static char *dup_default(const char *s, ctx *c) {
    char *p = strdup(s);
    if (!p) fail(c, 0, "out of memory");
    return p;
}

int sipp__gw_config_parse(const char *text, size_t len, const char *name, sipp__gw_config *cfg,
                          char *errbuf, size_t errcap) {
    ctx c = {errbuf, errcap, false};
    memset(cfg, 0, sizeof *cfg);
    if (errbuf && errcap) errbuf[0] = '\0';
    if (len > SIPP__GW_CONFIG_MAX_BYTES) {
        fail(&c, 0, "the configuration is larger than %u bytes", SIPP__GW_CONFIG_MAX_BYTES);
        return -1;
    }
    if (memchr(text, '\0', len)) {
        fail(&c, 0, "the configuration contains a NUL byte");
        return -1;
    }
    int bad_line = utf8_bad_line(text, len);
    if (bad_line) {
        fail(&c, bad_line, "the configuration is not valid UTF-8");
        return -1;
    }
    if (!nesting_ok(text, len)) {
        fail(&c, 0, "the configuration nests brackets deeper than %d", SIPP__TOML_MAX_DEPTH);
        return -1;
    }
    sipp__toml_node *root = NULL;
    char perr[512];
    if (sipp__toml_parse(text, len, name, &root, perr, sizeof perr) != 0) {
        fail(&c, 0, "not valid TOML: %s", perr);
        return -1;
    }
    cfg->max_request_bytes = 1048576;
    cfg->sse_heartbeat_seconds = 15;
    cfg->header_timeout_seconds = 10;
    cfg->body_timeout_seconds = 30;
    cfg->idle_timeout_seconds = 30;
    cfg->max_header_bytes = 16384;
    cfg->max_json_depth = 32;
    cfg->max_embedding_floats = 4194304; /* 16 MiB of float32 */
    cfg->max_schema_bytes = 65536;
    cfg->max_media_bytes = SIPP__GW_MAX_MEDIA_BYTES;
    cfg->max_image_pixels = SIPP__GW_MAX_IMAGE_PIXELS;
    cfg->max_audio_seconds = SIPP__GW_MAX_AUDIO_SECONDS;
    cfg->max_connections = 512;
    cfg->max_connections_per_ip = 64;
    cfg->shutdown_grace_seconds = 10;
    cfg->redis_timeout_ms = 50;
    int route_lines[SIPP__GW_N_ROUTES] = {0};
    int pub_line = 0, mgmt_line = 0;

    bool ok = true;
    for (size_t i = 0; ok && i < root->n_items; i++) {
        const sipp__toml_node *n = &root->items[i];
        const char *k = n->key;
        if (strcmp(k, "public_bind") == 0) {
            ok = get_str(&c, n, k, &cfg->public_bind);
            pub_line = n->line;
        } else if (strcmp(k, "management_bind") == 0) {
            ok = get_str(&c, n, k, &cfg->management_bind);
            mgmt_line = n->line;
        } else if (strcmp(k, "max_request_bytes") == 0)
            ok = get_u64(&c, n, k, 1024, 1u << 30, &cfg->max_request_bytes);
        else if (strcmp(k, "allowed_origins") == 0)
            ok = get_strv(&c, n, k, &cfg->allowed_origins, &cfg->n_allowed_origins);
        else if (strcmp(k, "allowed_hosts") == 0) {
            ok = get_strv(&c, n, k, &cfg->allowed_hosts, &cfg->n_allowed_hosts);
            for (size_t j = 0; ok && j < cfg->n_allowed_hosts; j++)
                if (!host_name_ok(cfg->allowed_hosts[j]))
                    ok = fail(&c, n->line,
                              "key 'allowed_hosts': '%s' must be a host name or address without "
                              "scheme or port (gw.example, 10.0.0.5, [fd00::1]) or \"*\"",
                              cfg->allowed_hosts[j]);
        }        else if (strcmp(k, "admin_password_env") == 0)
            ok = get_str(&c, n, k, &cfg->admin_password_env);
        else if (strcmp(k, "max_concurrent_requests") == 0)
            ok = get_u32(&c, n, k, 1, 100000, &cfg->max_concurrent_requests);
        else if (strcmp(k, "sse_heartbeat_seconds") == 0)
            ok = get_u32(&c, n, k, 1, 3600, &cfg->sse_heartbeat_seconds);
        else if (strcmp(k, "header_timeout_seconds") == 0)
            ok = get_u32(&c, n, k, 1, 3600, &cfg->header_timeout_seconds);
        else if (strcmp(k, "body_timeout_seconds") == 0)
            ok = get_u32(&c, n, k, 1, 3600, &cfg->body_timeout_seconds);
        else if (strcmp(k, "idle_timeout_seconds") == 0)
            ok = get_u32(&c, n, k, 1, 3600, &cfg->idle_timeout_seconds);
        else if (strcmp(k, "max_header_bytes") == 0)
            ok = get_u32(&c, n, k, 1024, 1u << 20, &cfg->max_header_bytes);
        else if (strcmp(k, "max_json_depth") == 0)
            ok = get_u32(&c, n, k, 2, 256, &cfg->max_json_depth);
        else if (strcmp(k, "max_embedding_floats") == 0)
            ok = get_u64(&c, n, k, 1, 1u << 28, &cfg->max_embedding_floats);
        else if (strcmp(k, "max_schema_bytes") == 0)
            ok = get_u32(&c, n, k, 2, 16u << 20, &cfg->max_schema_bytes);
        else if (strcmp(k, "max_media_bytes") == 0)
            ok = get_u64(&c, n, k, 1, 1u << 30, &cfg->max_media_bytes);
        else if (strcmp(k, "max_image_pixels") == 0)
            ok = get_u64(&c, n, k, 1, SIPP__GW_MAX_IMAGE_PIXELS, &cfg->max_image_pixels);
        else if (strcmp(k, "max_audio_seconds") == 0)
            ok = get_u32(&c, n, k, 1, 86400, &cfg->max_audio_seconds);
        else if (strcmp(k, "max_connections") == 0)
            ok = get_u32(&c, n, k, 1, 65536, &cfg->max_connections);
        else if (strcmp(k, "max_connections_per_ip") == 0)
            ok = get_u32(&c, n, k, 0, 65536, &cfg->max_connections_per_ip);
        else if (strcmp(k, "shutdown_grace_seconds") == 0)
            ok = get_u32(&c, n, k, 1, 3600, &cfg->shutdown_grace_seconds);
        else if (strcmp(k, "routes") == 0)
            ok = parse_routes(&c, n, cfg, route_lines);
        else if (strcmp(k, "security") == 0)
            ok = parse_security(&c, n, cfg);
        else if (strcmp(k, "cache") == 0) {
            ok = want(&c, n, "cache", SIPP__TOML_TABLE, "a table");
            for (size_t j = 0; ok && j < n->n_items; j++) {
                const sipp__toml_node *m = &n->items[j];
                if (strcmp(m->key, "scope_header") == 0) {
                    ok = get_str(&c, m, "cache.scope_header", &cfg->cache_scope_header);
                    if (ok && !header_name_ok(cfg->cache_scope_header))
                        ok = fail(&c, m->line, "key 'cache.scope_header' must be an HTTP header "
                                  "name (letters, digits and -, at most 64 characters)");
                } else
                    ok = unknown(&c, m, "cache");
            }
        } else if (strcmp(k, "models") == 0) { /* residency */
            ok = want(&c, n, "models", SIPP__TOML_TABLE, "a table");
            for (size_t j = 0; ok && j < n->n_items; j++) {
                const sipp__toml_node *m = &n->items[j];
                if (strcmp(m->key, "memory_budget_bytes") == 0)
                    ok = get_u64(&c, m, "models.memory_budget_bytes", 0, UINT64_MAX / 2,
                                 &cfg->memory_budget_bytes);
                else
                    ok = unknown(&c, m, "models");
            }
        } else if (strcmp(k, "redis") == 0) {
            ok = want(&c, n, "redis", SIPP__TOML_TABLE, "a table");
            for (size_t j = 0; ok && j < n->n_items; j++) {
                const sipp__toml_node *m = &n->items[j];
                if (strcmp(m->key, "url") == 0) {
                    ok = get_str(&c, m, "redis.url", &cfg->redis_url);
                    sipp__gw_redis_addr a;
                    char why[200];
                    if (ok && !sipp__gw_redis_url_parse(cfg->redis_url, &a, why, sizeof why))
                        ok = fail(&c, m->line, "key 'redis.url': %s", why);
                } else if (strcmp(m->key, "password_env") == 0) {
                    ok = get_str(&c, m, "redis.password_env", &cfg->redis_password_env);
                    if (ok && !valid_env_name(cfg->redis_password_env))
                        ok = fail(&c, m->line, "key 'redis.password_env' must be an environment "
                                  "variable name");
                } else if (strcmp(m->key, "timeout_ms") == 0) {
                    ok = get_u32(&c, m, "redis.timeout_ms", 1, 10000, &cfg->redis_timeout_ms);
                } else if (strcmp(m->key, "on_error") == 0) {
                    char *mode = NULL;
                    ok = get_str(&c, m, "redis.on_error", &mode);
                    if (ok && strcmp(mode, "open") != 0 && strcmp(mode, "closed") != 0)
                        ok = fail(&c, m->line, "key 'redis.on_error' must be \"open\" or \"closed\"");
                    if (ok) cfg->redis_fail_closed = strcmp(mode, "closed") == 0;
                    free(mode);
                } else if (strcmp(m->key, "key_prefix") == 0) {
                    ok = get_str(&c, m, "redis.key_prefix", &cfg->redis_key_prefix);
                } else
                    ok = unknown(&c, m, "redis");
            }
            if (ok && !cfg->redis_url) ok = fail(&c, n->line, "[redis] needs a url");
        } else if (strcmp(k, "targets") == 0 || strcmp(k, "tokens") == 0) {
            bool targets = k[1] == 'a';
            ok = want(&c, n, k, SIPP__TOML_ARRAY, targets ? "an array of tables ([[targets]])"
                                                          : "an array of tables ([[tokens]])");
            if (!ok) break;
            if (n->n_items > 1024) {
                ok = fail(&c, n->line, "too many [[%s]] entries (at most 1024)", k);
                break;
            }
            if (targets) {
                cfg->targets = calloc(n->n_items + 1, sizeof *cfg->targets);
                ok = cfg->targets ? true : fail(&c, n->line, "out of memory");
                for (size_t j = 0; ok && j < n->n_items; j++) {
                    cfg->n_targets = j + 1;
                    ok = parse_target(&c, &n->items[j], &cfg->targets[j]);
                }
            } else {
                cfg->tokens = calloc(n->n_items + 1, sizeof *cfg->tokens);
                ok = cfg->tokens ? true : fail(&c, n->line, "out of memory");
                for (size_t j = 0; ok && j < n->n_items; j++) {
                    cfg->n_tokens = j + 1;
                    ok = parse_token(&c, &n->items[j], &cfg->tokens[j]);
                }
            }
        } else {
            ok = unknown(&c, n, "");
        }
    }
    sipp__toml_free(root);
    if (ok && !cfg->public_bind) ok = (cfg->public_bind = dup_default("127.0.0.1:8080", &c)) != NULL;
    if (ok && !cfg->management_bind)
        ok = (cfg->management_bind = dup_default("127.0.0.1:9090", &c)) != NULL;
    for (size_t r = 0; ok && r < SIPP__GW_N_ROUTES; r++)
        if (!cfg->routes[r]) ok = (cfg->routes[r] = dup_default(sipp__gw_route_defaults[r], &c)) != NULL;
    if (ok && cfg->rate_limit_enabled && cfg->rate_limit_rpm == 0 && cfg->rate_limit_tpm == 0)
        ok = fail(&c, 0, "[security.rate_limit] is enabled but sets neither requests_per_minute "
                  "nor tokens_per_minute");
    if (ok) ok = validate(&c, cfg, route_lines, pub_line, mgmt_line);
    if (!ok) {
        if (!c.failed) fail(&c, 0, "invalid configuration");
        sipp__gw_config_free(cfg);
        return -1;
    }
    return 0;
}

int sipp__gw_config_load(const char *path, sipp__gw_config *cfg, char *errbuf, size_t errcap) {
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errbuf, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = SIPP__GW_CONFIG_MAX_BYTES + 1;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        snprintf(errbuf, errcap, "out of memory");
        return -1;
    }
    size_t n = fread(buf, 1, cap, f);
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        snprintf(errbuf, errcap, "%s: read error", path);
        return -1;
    }
    char msg[512];
    int rc = sipp__gw_config_parse(buf, n, path, cfg, msg, sizeof msg);
    free(buf);
    if (rc != 0) snprintf(errbuf, errcap, "%s: %s", path, msg);
    return rc;
}

void sipp__gw_config_free(sipp__gw_config *cfg) {
    if (!cfg) return;
    free(cfg->public_bind);
    free(cfg->management_bind);
    free_strv(cfg->allowed_origins, cfg->n_allowed_origins);
    free_strv(cfg->allowed_hosts, cfg->n_allowed_hosts);
    free(cfg->cache_scope_header);
    free(cfg->admin_password_env);
    for (size_t r = 0; r < SIPP__GW_N_ROUTES; r++) free(cfg->routes[r]);
    free_strv(cfg->trusted_proxy_cidrs, cfg->n_trusted_proxy_cidrs);
    free_strv(cfg->ip_blocklist, cfg->n_ip_blocklist);
    free(cfg->redis_url);
    free(cfg->redis_password_env);
    free(cfg->redis_key_prefix);
    for (size_t i = 0; i < cfg->n_targets; i++) target_free(&cfg->targets[i]);
    free(cfg->targets);
    for (size_t i = 0; i < cfg->n_tokens; i++) {
        free(cfg->tokens[i].env);
        free(cfg->tokens[i].caller);
        free_strv(cfg->tokens[i].targets, cfg->tokens[i].n_targets);
    }
    free(cfg->tokens);
    memset(cfg, 0, sizeof *cfg);
}

/* `redis://` URLs go through libcurl's URL API (curl_url); what is left here are the rules of
 * this one use: no credentials, no query or fragment, a DB number as the whole path, a host of
 * name or address characters. `unix://` is a prefix and an absolute path, nothing to parse. */
bool sipp__gw_redis_url_parse(const char *url, sipp__gw_redis_addr *out, char *errbuf,
                              size_t errcap) {
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (strncmp(url, "unix://", 7) == 0) {
        const char *p = url + 7;
        if (p[0] != '/' || strlen(p) >= sizeof out->path) {
            snprintf(errbuf, errcap, "a unix URL is unix:///absolute/path (under %zu bytes)",
                     sizeof out->path);
            return false;
        }
        memcpy(out->path, p, strlen(p) + 1);
        return true;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(errbuf, errcap, "must start with redis:// or unix://");
        return false;
    }
    bool ok = false;
    char *user = NULL, *pass = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL,
         *frag = NULL;
    CURLU *u = curl_url();
    /* No '%' anywhere: nothing in a Redis URL needs escaping, and curl would decode the host
     * (and take `%25` as an IPv6 zone) before the checks below see it. */
    if (!u || strchr(url, '%') ||
        curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
        goto done;
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK) {
        snprintf(errbuf, errcap, "no credentials in the URL: put the password's env var name in "
                 "redis.password_env");
        curl_url_cleanup(u);
        curl_free(user);
        curl_free(pass);
        return false;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_NO_QUERY ||
        curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) != CURLUE_NO_FRAGMENT ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto done;
    const char *h = host;
    size_t hlen = strlen(host);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') { /* curl keeps IPv6 brackets */
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof out->host) goto done;
    for (size_t i = 0; i < hlen; i++)
        if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z') ||
              (h[i] >= '0' && h[i] <= '9') || h[i] == '.' || h[i] == '-' || h[i] == ':' ||
              h[i] == '_'))
            goto done;
    memcpy(out->host, h, hlen);
    out->host[hlen] = '\0';
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) { /* curl checked 0..65535 */
        long n = strtol(port, NULL, 10);
        if (n < 1) goto done;
        out->port = (int)n;
    }
    if (path[0] == '/' && path[1]) { /* "/" or none: DB 0 */
        long db = 0;
        for (const char *q = path + 1; *q; q++) {
            if (*q < '0' || *q > '9' || db > 1000000) goto done;
            db = db * 10 + (*q - '0');
        }
        out->db = (int)db;
    }
    ok = true;
done:
    curl_url_cleanup(u);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(frag);
    if (!ok) snprintf(errbuf, errcap, "expected redis://HOST[:PORT][/DB] or unix:///PATH");
    return ok;
}
