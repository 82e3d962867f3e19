/*
 * json_writer.c — the bounded JSON writer of json_writer.h. It never reads JSON; it only has to
 * produce text any JSON parser accepts: separators from a small per-level state, strings
 * escaped (and cleaned of invalid UTF-8), numbers finite and locale-independent.
 * Allocation: only through the writer's sipp__buf (so the tests' allocation-failure hook
 * reaches it), plus a temporary buffer for a string that holds invalid UTF-8.
 */
#include "json_writer.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sipp__jw_init(sipp__jw *w, size_t max) {
    memset(w, 0, sizeof *w);
    sipp__buf_init(&w->b, max);
    w->st = SIPP_OK;
}

void sipp__jw_free(sipp__jw *w) {
    sipp__buf_free(&w->b);
    w->depth = 0;
    w->after_key = false;
}

static void fail(sipp__jw *w, sipp_status st) {
    if (w->st == SIPP_OK) w->st = st;
}

static void put(sipp__jw *w, const char *s, size_t len) {
    if (w->st != SIPP_OK) return;
    sipp_status st = sipp__buf_append(&w->b, s, len);
    if (st != SIPP_OK) fail(w, st);
}

static void puts_(sipp__jw *w, const char *s) { put(w, s, strlen(s)); }

/* Before any value: the comma, and the check that the value is allowed here. */
static bool value_begin(sipp__jw *w) {
    if (w->st != SIPP_OK) return false;
    if (w->depth == 0) {
        if (w->b.len > 0) { /* one top-level value only */
            fail(w, SIPP_INVALID_ARGUMENT);
            return false;
        }
        return true;
    }
    unsigned d = w->depth - 1;
    if (w->in_object[d]) {
        if (!w->after_key) {
            fail(w, SIPP_INVALID_ARGUMENT);
            return false;
        }
        w->after_key = false;
        return true;
    }
    if (w->has_items[d]) put(w, ",", 1);
    w->has_items[d] = true;
    return w->st == SIPP_OK;
}

static void open_(sipp__jw *w, bool object) {
    if (!value_begin(w)) return;
    if (w->depth == SIPP__JW_MAX_DEPTH) {
        fail(w, SIPP_INVALID_ARGUMENT);
        return;
    }
    put(w, object ? "{" : "[", 1);
    w->in_object[w->depth] = object;
    w->has_items[w->depth] = false;
    w->depth++;
}

static void close_(sipp__jw *w, bool object) {
    if (w->st != SIPP_OK) return;
    if (w->depth == 0 || w->in_object[w->depth - 1] != object || w->after_key) {
        fail(w, SIPP_INVALID_ARGUMENT);
        return;
    }
    w->depth--;
    put(w, object ? "}" : "]", 1);
}

void sipp__jw_object_begin(sipp__jw *w) { open_(w, true); }
void sipp__jw_object_end(sipp__jw *w) { close_(w, true); }
void sipp__jw_array_begin(sipp__jw *w) { open_(w, false); }
void sipp__jw_array_end(sipp__jw *w) { close_(w, false); }

/* Appends `s` (valid UTF-8) between quotes, escaped. Runs of plain bytes go in one append. */
static void put_escaped(sipp__jw *w, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    put(w, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < len && w->st == SIPP_OK; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        put(w, s + run, i - run);
        run = i + 1;
        char e[6] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        default:
            memcpy(e + 1, "u00", 3);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            n = 6;
        }
        put(w, e, n);
    }
    put(w, s + run, len - run);
    put(w, "\"", 1);
}

void sipp__jw_key(sipp__jw *w, const char *key) {
    if (w->st != SIPP_OK) return;
    if (w->depth == 0 || !w->in_object[w->depth - 1] || w->after_key || !key) {
        fail(w, SIPP_INVALID_ARGUMENT);
        return;
    }
    unsigned d = w->depth - 1;
    if (w->has_items[d]) put(w, ",", 1);
    w->has_items[d] = true;
    w->after_key = true; /* before the string: put_escaped must not see a pending value */
    size_t len = strlen(key);
    if (sipp__utf8_valid_len(key, len) == len) {
        put_escaped(w, key, len);
    } else {
        sipp__buf clean;
        sipp__buf_init(&clean, 3 * len);
        sipp_status st = sipp__utf8_append_clean(&clean, key, len);
        if (st != SIPP_OK) fail(w, st);
        else put_escaped(w, clean.data, clean.len);
        sipp__buf_free(&clean);
    }
    put(w, ":", 1);
}

void sipp__jw_string_len(sipp__jw *w, const char *s, size_t len) {
    if (!s) {
        sipp__jw_null(w);
        return;
    }
    if (!value_begin(w)) return;
    if (sipp__utf8_valid_len(s, len) == len) {
        put_escaped(w, s, len);
        return;
    }
    /* Each invalid byte becomes at most 3 (U+FFFD), so 3 * len bounds the cleaned text. */
    sipp__buf clean;
    sipp__buf_init(&clean, len > SIZE_MAX / 3 ? SIZE_MAX : 3 * len);
    sipp_status st = sipp__utf8_append_clean(&clean, s, len);
    if (st != SIPP_OK) fail(w, st);
    else put_escaped(w, clean.data, clean.len);
    sipp__buf_free(&clean);
}

void sipp__jw_string(sipp__jw *w, const char *s) { sipp__jw_string_len(w, s, s ? strlen(s) : 0); }

void sipp__jw_int(sipp__jw *w, int64_t v) {
    if (!value_begin(w)) return;
    char t[24];
    int n = snprintf(t, sizeof t, "%" PRId64, v);
    put(w, t, (size_t)n);
}

void sipp__jw_uint(sipp__jw *w, uint64_t v) {
    if (!value_begin(w)) return;
    char t[24];
    int n = snprintf(t, sizeof t, "%" PRIu64, v);
    put(w, t, (size_t)n);
}

void sipp__jw_double(sipp__jw *w, double v) {
    if (w->st != SIPP_OK) return;
    if (!isfinite(v)) {
        fail(w, SIPP_INVALID_ARGUMENT);
        return;
    }
    if (!value_begin(w)) return;
    char t[40];
    int n = snprintf(t, sizeof t, "%.15g", v);
    if (strtod(t, NULL) != v) n = snprintf(t, sizeof t, "%.17g", v);
    /* A locale's decimal separator (setlocale(LC_NUMERIC)) becomes the '.' JSON needs. strtod
     * above reads in the same locale, so the round-trip check holds either way. */
    for (int i = 0; i < n; i++)
        if (!strchr("0123456789+-eE", t[i])) t[i] = '.';
    put(w, t, (size_t)n);
}

void sipp__jw_bool(sipp__jw *w, bool v) {
    if (value_begin(w)) puts_(w, v ? "true" : "false");
}

void sipp__jw_null(sipp__jw *w) {
    if (value_begin(w)) puts_(w, "null");
}

sipp_status sipp__jw_finish(sipp__jw *w, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    if (w->st == SIPP_OK && (w->depth != 0 || w->after_key || w->b.len == 0))
        fail(w, SIPP_INVALID_ARGUMENT);
    sipp_status st = w->st;
    if (st == SIPP_OK) {
        *out = w->b.data;
        if (len) *len = w->b.len;
        sipp__buf_init(&w->b, w->b.max);
    } else {
        sipp__buf_free(&w->b);
    }
    w->depth = 0;
    w->after_key = false;
    w->st = SIPP_OK;
    return st;
}
