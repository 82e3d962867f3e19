/*
 * text.c — pure text logic of generation: UTF-8 completeness, stop strings across token
 * boundaries, validation of text options, and the nesting-depth scan that guards grammars and
 * schemas. No state, no allocation; unit-tested directly.
 */
#include "common_int.h"

#include <math.h>
#include <string.h>

size_t sipp__utf8_complete_len(const char *s, size_t len) {
    /* Look back at most 3 bytes for the lead byte of a trailing sequence. */
    size_t i = len;
    size_t back = 0;
    while (i > 0 && back < 4) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xC0) != 0x80) { /* a lead byte or ASCII */
            size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                                     : (c & 0xF8) == 0xF0 ? 4 : 1;
            size_t have = back + 1;
            return have < need ? i - 1 : len;
        }
        i--;
        back++;
    }
    return len; /* only continuation bytes (invalid): pass through */
}

/* Decodes the character at p[0, n), n >= 1: its length when valid (*ok set), otherwise the
 * length of its maximal invalid subpart (>= 1, *ok cleared). */
static size_t utf8_char(const unsigned char *p, size_t n, bool *ok) {
    unsigned char c = p[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    *ok = false;
    if (c < 0x80) {
        *ok = true;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        if (c == 0xED) hi = 0x9F;      /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        if (c == 0xF4) hi = 0x8F;      /* past U+10FFFF */
    } else {
        return 1; /* a continuation byte, C0/C1 or F5..FF: never a lead */
    }
    size_t i = 1;
    for (; i < need; i++) {
        if (i >= n) return i;
        unsigned char b = p[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return i;
    }
    *ok = true;
    return need;
}

size_t sipp__utf8_valid_len(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) { /* ASCII runs are the common case */
            i++;
            continue;
        }
        bool ok;
        size_t n = utf8_char(p + i, len - i, &ok);
        if (!ok) return i;
        i += n;
    }
    return len;
}

sipp_status sipp__utf8_append_clean(sipp__buf *out, const char *s, size_t len) {
    static const char replacement[] = "\xEF\xBF\xBD";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t v = sipp__utf8_valid_len(s + i, len - i);
        sipp_status st = sipp__buf_append(out, s + i, v);
        if (st != SIPP_OK) return st;
        i += v;
        if (i == len) break;
        bool ok;
        i += utf8_char(p + i, len - i, &ok);
        st = sipp__buf_append(out, replacement, 3);
        if (st != SIPP_OK) return st;
    }
    return SIPP_OK;
}

sipp__stop_scan sipp__stop_scan_text(const char *const *stops, size_t n_stops, const char *text,
                                     size_t len) {
    sipp__stop_scan r = {false, len};
    /* Earliest full match wins. */
    size_t best = len;
    for (size_t i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        if (sl == 0 || sl > len) continue;
        for (size_t at = 0; at + sl <= len && at < best; at++) {
            if (memcmp(text + at, stops[i], sl) == 0) {
                best = at;
                r.matched = true;
                break;
            }
        }
    }
    if (r.matched) {
        r.emit_len = best;
        return r;
    }
    /* Hold back the longest suffix that is a proper prefix of some stop string. */
    size_t hold = 0;
    for (size_t i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        size_t maxk = sl - (sl > 0); /* proper prefixes only: full matches were handled */
        if (maxk > len) maxk = len;
        for (size_t k = maxk; k > hold; k--) {
            if (memcmp(text + len - k, stops[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    r.emit_len = sipp__utf8_complete_len(text, len - hold);
    return r;
}

sipp_status sipp__text_params_check(const sipp_text_params *p, sipp_error *err) {
    if (p->struct_size < sizeof(sipp_text_params))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "text params: struct_size %u is too small (use sipp_text_params_init)",
                          p->struct_size);
    if (p->max_tokens == 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "max_tokens must be at least 1");
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "temperature must be a finite number >= 0 (got %g)", p->temperature);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "top_p must be in [0, 1] (got %g)",
                          p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "min_p must be in [0, 1] (got %g)",
                          p->min_p);
    if (p->top_k < 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "top_k must be >= 0 (got %d)", p->top_k);
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "repeat_penalty must be a finite number > 0 (got %g)",
                          p->repeat_penalty);
    if (p->n_stop > SIPP_MAX_STOP_STRINGS)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "at most %d stop strings (got %zu)",
                          SIPP_MAX_STOP_STRINGS, p->n_stop);
    if (p->n_stop && !p->stop)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_stop is %zu but stop is NULL",
                          p->n_stop);
    for (size_t i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0])
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "stop string %zu is empty", i);
    if (p->top_logprobs > SIPP_MAX_TOP_LOGPROBS)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "top_logprobs must be in [0, %d] (got %u)", SIPP_MAX_TOP_LOGPROBS,
                          p->top_logprobs);
    if (p->top_logprobs > 0 && !p->logprobs)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "top_logprobs needs logprobs: set logprobs to true");
    if (p->grammar && p->json_schema)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "grammar and json_schema are exclusive: give one");
    return SIPP_OK;
}

/* GBNF: only parentheses nest (llama.cpp's parser recurses once per group); string literals,
 * character classes and comments are skipped so brackets inside them do not count.
 * JSON: objects and arrays nest; strings are skipped. Stops counting past `limit`. A NUL byte is
 * an ordinary byte here (sipp__nesting_depth stops at the first one by passing strlen). */
unsigned sipp__nesting_depth_len(const char *s, size_t len, bool gbnf, unsigned limit) {
    unsigned depth = 0, max = 0;
    for (size_t i = 0; s && i < len; i++) {
        char c = s[i];
        if (c == '"' || (gbnf && c == '[')) {
            char end = c == '"' ? '"' : ']';
            for (i++; i < len && s[i] != end; i++)
                if (s[i] == '\\' && i + 1 < len) i++;
            if (i >= len) break;
        } else if (gbnf && c == '#') {
            while (i + 1 < len && s[i + 1] != '\n') i++;
        } else if (gbnf ? c == '(' : (c == '{' || c == '[')) {
            if (++depth > max) max = depth;
            if (max > limit) return max;
        } else if ((gbnf ? c == ')' : (c == '}' || c == ']')) && depth > 0) {
            depth--;
        }
    }
    return max;
}

unsigned sipp__nesting_depth(const char *s, bool gbnf, unsigned limit) {
    return sipp__nesting_depth_len(s, s ? strlen(s) : 0, gbnf, limit);
}
