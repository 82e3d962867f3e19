/*
 * profile_outputs.c — what both profiles add to text requests for issue 18's outputs:
 * log-probabilities (`logprobs` / `top_logprobs`, and OpenAI's legacy integer `logprobs` on
 * /v1/completions) and their encodings in answers and stream events: OpenAI's chat shape
 * {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}, the legacy completions
 * shape {"tokens", "token_logprobs", "top_logprobs", "text_offset"}, and the Sipp profile's
 * array of chat-shaped entries.
 *
 * Pure, like the rest of the codecs (profiles.h). A token's bytes may be part of a UTF-8
 * sequence: `bytes` carries them exactly, `token` is their text with invalid UTF-8 replaced by
 * U+FFFD (JSON strings must be UTF-8).
 */
#define _POSIX_C_SOURCE 200809L
#include "profiles.h"

#include <stdio.h>
#include <string.h>

/* ---- decoding ---------------------------------------------------------------------------------- */

int sipp__gw_decode_logprobs(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                             char *msg, size_t cap, char *param, size_t pcap) {
    if (op == GW_OP_EMBED) return 0;
    bool legacy = openai && op == GW_OP_QUERY; /* /v1/completions: `logprobs` is an integer */
    if (strcmp(key, "logprobs") == 0) {
        if (json_is_null(v)) return 1;
        if (json_is_boolean(v)) {
            c->logprobs = json_is_true(v);
            return 1;
        }
        if (legacy && json_is_integer(v)) {
            json_int_t n = json_integer_value(v);
            c->logprobs = true;
            c->has_top_logprobs = true;
            c->top_logprobs = n < 0 ? -1 : n > 1000 ? 1000 : (int)n;
            if (n < 0 || n > SIPP_MAX_TOP_LOGPROBS)
                sipp__gw_invalid(c, key, "'logprobs' must be in [0, %d]", SIPP_MAX_TOP_LOGPROBS);
            return 1;
        }
        snprintf(param, pcap, "logprobs");
        return sipp__gw_bad(msg, cap, legacy ? "field 'logprobs' must be an integer or null"
                                             : "field 'logprobs' must be a boolean or null")
                   ? 1
                   : -1;
    }
    if (!legacy && strcmp(key, "top_logprobs") == 0) {
        if (json_is_null(v)) return 1;
        if (!json_is_integer(v)) {
            snprintf(param, pcap, "top_logprobs");
            return sipp__gw_bad(msg, cap, "field 'top_logprobs' must be an integer or null") ? 1
                                                                                            : -1;
        }
        json_int_t n = json_integer_value(v);
        c->has_top_logprobs = true;
        c->top_logprobs = n < 0 ? -1 : n > 1000 ? 1000 : (int)n;
        if (n < 0 || n > SIPP_MAX_TOP_LOGPROBS)
            sipp__gw_invalid(c, key, "'top_logprobs' must be in [0, %d]", SIPP_MAX_TOP_LOGPROBS);
        return 1;
    }
    return 0;
}

int sipp__gw_decode_schema(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                           char *msg, size_t cap, char *param, size_t pcap) {
    if (op == GW_OP_EMBED) return 0;
    if (!openai) {
        if (strcmp(key, "json_schema") != 0 && strcmp(key, "jsonSchema") != 0) return 0;
        if (json_is_null(v)) return 1;
        if (!json_is_object(v)) {
            snprintf(param, pcap, "%s", key);
            return sipp__gw_bad(msg, cap, "field '%s' must be a JSON schema object", key) ? 1 : -1;
        }
        c->json_schema = v;
        return 1;
    }
    if (strcmp(key, "response_format") != 0) return 0;
    if (json_is_null(v)) return 1;
    const char *type = json_string_value(json_object_get(v, "type"));
    if (!json_is_object(v) || !type) {
        snprintf(param, pcap, "response_format");
        return sipp__gw_bad(msg, cap, "field 'response_format' must be an object with a 'type'")
                   ? 1
                   : -1;
    }
    if (strcmp(type, "text") == 0) return 1;
    if (strcmp(type, "json_object") == 0) {
        c->json_object = true;
        return 1;
    }
    if (strcmp(type, "json_schema") != 0) {
        sipp__gw_invalid(c, "response_format",
                         "'response_format' type '%.32s' is not supported (text, json_object, "
                         "json_schema)", type);
        return 1;
    }
    json_t *schema = json_object_get(json_object_get(v, "json_schema"), "schema");
    if (!json_is_object(schema)) {
        snprintf(param, pcap, "response_format");
        return sipp__gw_bad(msg, cap,
                            "'response_format.json_schema.schema' must be a JSON schema object")
                   ? 1
                   : -1;
    }
    c->json_schema = schema;
    return 1;
}

char *sipp__gw_schema_text(const gw_call *c, size_t *len) {
    char *s = c->json_schema ? json_dumps(c->json_schema, JSON_COMPACT)
              : c->json_object ? strdup("{\"type\":\"object\"}")
                               : NULL;
    *len = s ? strlen(s) : 0;
    return s;
}

void sipp__gw_check_logprobs(gw_call *c) {
    if (c->has_top_logprobs && c->top_logprobs > 0 && !c->logprobs)
        sipp__gw_invalid(c, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
}

/* ---- encoding ---------------------------------------------------------------------------------- */

/* A token's text as a JSON string: its bytes when they are UTF-8, else with U+FFFD for what
 * is not. */
static json_t *token_string(const char *s, size_t len) {
    if (sipp__utf8_valid_len(s, len) == len) return json_stringn(s, len);
    sipp__buf b;
    sipp__buf_init(&b, 4 * len + 16);
    json_t *out = sipp__utf8_append_clean(&b, s, len) == SIPP_OK ? json_stringn(b.data, b.len)
                                                                 : json_string("");
    sipp__buf_free(&b);
    return out;
}

static json_t *token_bytes(const char *s, size_t len) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < len; i++)
        json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

static json_t *chat_entry(const char *tok, size_t len, float lp, json_t *top) {
    json_t *e = json_pack("{s:o, s:f, s:o}", "token", token_string(tok, len), "logprob",
                          (double)lp, "bytes", token_bytes(tok, len));
    if (e && top) json_object_set_new(e, "top_logprobs", top);
    else json_decref(top);
    return e;
}

json_t *sipp__gw_logprobs_content(const sipp_token_logprob *e, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *top = json_array();
        for (uint32_t k = 0; top && k < e[i].n_top; k++)
            json_array_append_new(top, chat_entry(e[i].top[k].token, e[i].top[k].token_len,
                                                  e[i].top[k].logprob, NULL));
        json_array_append_new(a, chat_entry(e[i].token, e[i].token_len, e[i].logprob, top));
    }
    return a;
}

json_t *sipp__gw_logprobs_legacy(const sipp_token_logprob *e, size_t n, size_t *offset) {
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(toks, token_string(e[i].token, e[i].token_len));
        json_array_append_new(lps, json_real(e[i].logprob));
        json_t *d = json_object();
        for (uint32_t k = 0; d && k < e[i].n_top; k++) {
            json_t *key = token_string(e[i].top[k].token, e[i].top[k].token_len);
            /* alternatives that read the same keep the most likely (they come sorted) */
            if (key && !json_object_get(d, json_string_value(key)))
                json_object_set_new(d, json_string_value(key), json_real(e[i].top[k].logprob));
            json_decref(key);
        }
        json_array_append_new(tops, d);
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += e[i].token_len;
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", toks, "token_logprobs", lps,
                     "top_logprobs", tops, "text_offset", offs);
}
