/*
 * admin_settings.c — decodes and validates a dashboard settings body (admin_settings.h).
 * Invariant: on success every number is in range, every caller index is valid and every
 * blocklist entry parsed as a CIDR range; on failure *out is empty.
 */
#define _POSIX_C_SOURCE 200809L
#include "admin_settings.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) static int bad(char *errbuf, size_t errcap, const char *fmt,
                                                     ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errcap, fmt, ap);
    va_end(ap);
    return -1;
}

/* A JSON integer in [0, hi]. */
static int get_u32(json_t *v, const char *name, uint32_t hi, uint32_t *out, char *e, size_t ec) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (json_int_t)hi)
        return bad(e, ec, "'%s' must be an integer between 0 and %u", name, hi);
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int parse_rate_limit(json_t *o, sipp__gw_admin_settings *s, char *e, size_t ec) {
    if (!json_is_object(o)) return bad(e, ec, "'rate_limit' must be an object");
    const char *k;
    json_t *v;
    bool has_en = false, has_rpm = false, has_tpm = false;
    json_object_foreach(o, k, v) {
        if (strcmp(k, "enabled") == 0) {
            if (!json_is_boolean(v)) return bad(e, ec, "'rate_limit.enabled' must be a boolean");
            s->rl_enabled = json_is_true(v);
            has_en = true;
        } else if (strcmp(k, "requests_per_minute") == 0) {
            if (get_u32(v, "rate_limit.requests_per_minute", 10000000, &s->rl_rpm, e, ec)) return -1;
            has_rpm = true;
        } else if (strcmp(k, "burst") == 0) {
            if (get_u32(v, "rate_limit.burst", 10000000, &s->rl_burst, e, ec)) return -1;
        } else if (strcmp(k, "tokens_per_minute") == 0) {
            if (get_u32(v, "rate_limit.tokens_per_minute", 1000000000, &s->rl_tpm, e, ec)) return -1;
            has_tpm = true;
        } else
            return bad(e, ec, "unknown key 'rate_limit.%.64s'", k);
    }
    if (!has_en || !has_rpm || !has_tpm)
        return bad(e, ec, "'rate_limit' needs enabled, requests_per_minute and tokens_per_minute");
    if (s->rl_enabled && !s->rl_rpm && !s->rl_tpm)
        return bad(e, ec, "an enabled rate limit needs requests_per_minute or tokens_per_minute");
    s->has_rate_limit = true;
    return 0;
}

static int parse_callers(json_t *o, const char *const *names, size_t n_names,
                         sipp__gw_admin_settings *s, char *e, size_t ec) {
    if (!json_is_object(o)) return bad(e, ec, "'callers' must be an object");
    s->callers = calloc(json_object_size(o) + 1, sizeof *s->callers);
    if (!s->callers) return bad(e, ec, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t idx = n_names;
        for (size_t i = 0; i < n_names; i++)
            if (strcmp(names[i], k) == 0) idx = i;
        if (idx == n_names) return bad(e, ec, "unknown caller '%.64s'", k);
        if (!json_is_object(v)) return bad(e, ec, "callers.%.64s must be an object", k);
        sipp__gw_admin_caller_set *c = &s->callers[s->n_callers++];
        c->index = idx;
        const char *k2;
        json_t *v2;
        json_object_foreach(v, k2, v2) {
            if (strcmp(k2, "requests_per_minute") == 0) {
                if (get_u32(v2, "requests_per_minute", 10000000, &c->rpm, e, ec)) return -1;
                c->has_rpm = true;
            } else if (strcmp(k2, "tokens_per_minute") == 0) {
                if (get_u32(v2, "tokens_per_minute", 1000000000, &c->tpm, e, ec)) return -1;
                c->has_tpm = true;
            } else
                return bad(e, ec, "unknown key 'callers.%.64s.%.64s'", k, k2);
        }
    }
    return 0;
}

static int parse_blocklist(json_t *a, sipp__gw_admin_settings *s, char *e, size_t ec) {
    if (!json_is_array(a)) return bad(e, ec, "'ip_blocklist' must be an array of strings");
    size_t n = json_array_size(a);
    if (n > SIPP__GW_ADMIN_MAX_BLOCKLIST)
        return bad(e, ec, "'ip_blocklist' has more than %d entries", SIPP__GW_ADMIN_MAX_BLOCKLIST);
    s->blocklist = calloc(n + 1, sizeof *s->blocklist);
    s->cidrs = calloc(n + 1, sizeof *s->cidrs);
    if (!s->blocklist || !s->cidrs) return bad(e, ec, "out of memory");
    s->has_blocklist = true;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_string(v)) return bad(e, ec, "ip_blocklist[%zu] must be a string", i);
        if (!sipp__gw_cidr_parse(json_string_value(v), &s->cidrs[i]))
            return bad(e, ec, "ip_blocklist[%zu]: '%.64s' is not an address or CIDR range", i,
                       json_string_value(v));
        s->blocklist[i] = strdup(json_string_value(v));
        if (!s->blocklist[i]) return bad(e, ec, "out of memory");
        s->n_blocklist = i + 1;
    }
    return 0;
}

int sipp__gw_admin_settings_parse(const char *text, size_t len, const char *const *caller_names,
                                  size_t n_caller_names, sipp__gw_admin_settings *out,
                                  char *errbuf, size_t errcap) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return bad(errbuf, errcap, "the body is not valid JSON: %s", je.text);
    int rc = 0;
    if (!json_is_object(root)) rc = bad(errbuf, errcap, "the body must be a JSON object");
    const char *k;
    json_t *v;
    if (rc == 0) json_object_foreach(root, k, v) {
        if (strcmp(k, "rate_limit") == 0) rc = parse_rate_limit(v, out, errbuf, errcap);
        else if (strcmp(k, "max_concurrent_requests") == 0) {
            rc = get_u32(v, "max_concurrent_requests", 100000, &out->max_concurrent, errbuf, errcap);
            out->has_max_concurrent = rc == 0;
        } else if (strcmp(k, "callers") == 0)
            rc = parse_callers(v, caller_names, n_caller_names, out, errbuf, errcap);
        else if (strcmp(k, "ip_blocklist") == 0)
            rc = parse_blocklist(v, out, errbuf, errcap);
        else
            rc = bad(errbuf, errcap, "unknown key '%.64s'", k);
        if (rc) break;
    }
    json_decref(root);
    if (rc) sipp__gw_admin_settings_free(out);
    return rc;
}

void sipp__gw_admin_settings_free(sipp__gw_admin_settings *s) {
    for (size_t i = 0; s->blocklist && i < s->n_blocklist; i++) free(s->blocklist[i]);
    free(s->blocklist);
    free(s->cidrs);
    free(s->callers);
    memset(s, 0, sizeof *s);
}
