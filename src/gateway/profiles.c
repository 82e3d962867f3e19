/*
 * profiles.c — what the two public profiles share (profiles.h): the body's depth cap and parse,
 * the option fields and chat messages both decoders read, the SSE frame, and the embeddings
 * answer writer that streams a profile's envelope around the raw vectors.
 *
 * Sipp profile (/v1/query, /v1/chat, /v1/embed, profile_sipp.c) and OpenAI profile
 * (/v1/completions, /v1/chat/completions, /v1/embeddings, profile_openai.c). Two kinds of
 * failure, kept apart because the protocol orders them differently: a body that is not the
 * expected shape (not an object, a missing or mistyped field, an unknown role) fails here at
 * once (400 invalid_json); an unknown or local-only key or a value out of range is recorded in
 * call->invalid and reported later, in the validate phase after authorize and resolve (400
 * invalidrequest). Key names quoted in messages are cut to 40 bytes so a message never carries
 * much of the caller's input.
 *
 * The embeddings answer of both profiles is not built as a JSON tree: a writer hands it out in
 * pieces of a few hundred bytes from the float array (4 bytes a float), so memory stays the
 * vectors themselves however many floats a request asks for (within max_embedding_floats).
 */
#define _POSIX_C_SOURCE 200809L
#include "profiles.h"

#include "../common/media_parse.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const gw_codec *sipp__gw_codec(gw_profile prof) {
    switch (prof) {
    case GW_PROFILE_OPENAI: return &sipp__gw_openai_codec;
    case GW_PROFILE_ANTHROPIC: return &sipp__gw_anthropic_codec;
    default: return &sipp__gw_sipp_codec;
    }
}

bool sipp__gw_bad(char *msg, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return false;
}

void sipp__gw_invalid(gw_call *c, const char *param, const char *fmt, ...) {
    if (c->invalid[0]) return; /* the first one wins */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->invalid, sizeof c->invalid, fmt, ap);
    va_end(ap);
    snprintf(c->invalid_param, sizeof c->invalid_param, "%.40s", param ? param : "");
}

bool sipp__gw_is_local_only(const char *k) {
    static const char *const keys[] = {"context_key", "contextKey", "grammar",   "sampling",
                                       "media",       "normalize",  "local",     NULL};
    for (const char *const *p = keys; *p; p++)
        if (strcmp(*p, k) == 0) return true;
    return false;
}

static bool role_ok(const char *r) {
    return strcmp(r, "system") == 0 || strcmp(r, "user") == 0 || strcmp(r, "assistant") == 0 ||
           strcmp(r, "tool") == 0;
}

/* Shared option fields (profiles.h). */
int sipp__gw_decode_option(gw_call *c, const char *key, json_t *v, char *msg, size_t cap,
                           char *param, size_t pcap, bool openai) {
    bool null = json_is_null(v);
    if (strcmp(key, "max_tokens") == 0 || (openai && strcmp(key, "max_completion_tokens") == 0)) {
        if (null) return 1;
        if (!json_is_integer(v)) {
            snprintf(param, pcap, "%s", key);
            return sipp__gw_bad(msg, cap, "field '%s' must be an integer or null", key) ? 1 : -1;
        }
        c->has_max_tokens = true;
        c->max_tokens = json_integer_value(v);
        if (c->max_tokens <= 0) sipp__gw_invalid(c, key, "'%s' must be greater than 0", key);
        return 1;
    }
    if (strcmp(key, "temperature") == 0 || strcmp(key, "top_p") == 0) {
        if (null) return 1;
        if (!json_is_number(v)) {
            snprintf(param, pcap, "%s", key);
            return sipp__gw_bad(msg, cap, "field '%s' must be a number or null", key) ? 1 : -1;
        }
        double x = json_number_value(v);
        if (key[0] == 't' && key[1] == 'e') {
            c->has_temperature = true;
            c->temperature = x;
            if (!isfinite(x) || x < 0)
                sipp__gw_invalid(c, key, "'temperature' must be finite and >= 0");
        } else {
            c->has_top_p = true;
            c->top_p = x;
            if (!isfinite(x) || x < 0 || x > 1)
                sipp__gw_invalid(c, key, "'top_p' must be in [0, 1]");
        }
        return 1;
    }
    if (strcmp(key, "stop") == 0) {
        if (null) return 1;
        if (openai && json_is_string(v)) {
            c->stop[0] = json_string_value(v);
            c->n_stop = 1;
            return 1;
        }
        if (!json_is_array(v)) {
            snprintf(param, pcap, "stop");
            return sipp__gw_bad(msg, cap, "field 'stop' must be an array of strings") ? 1 : -1;
        }
        size_t i;
        json_t *s;
        json_array_foreach(v, i, s) {
            if (!json_is_string(s)) {
                snprintf(param, pcap, "stop");
                return sipp__gw_bad(msg, cap, "field 'stop' must be an array of strings") ? 1 : -1;
            }
            if (i >= SIPP_MAX_STOP_STRINGS) {
                sipp__gw_invalid(c, "stop", "at most %d stop strings", SIPP_MAX_STOP_STRINGS);
                return 1;
            }
            if (json_string_length(s) == 0)
                sipp__gw_invalid(c, "stop", "stop strings must not be empty");
            c->stop[i] = json_string_value(s);
            c->n_stop = i + 1;
        }
        return 1;
    }
    if (strcmp(key, "stream") == 0) {
        if (openai && null) return 1;
        if (!json_is_boolean(v)) {
            snprintf(param, pcap, "stream");
            return sipp__gw_bad(msg, cap, "field 'stream' must be a boolean") ? 1 : -1;
        }
        c->stream = json_is_true(v);
        return 1;
    }
    return 0;
}

static bool text_of(json_t *content, const char **out) {
    if (json_is_string(content)) {
        *out = json_string_value(content);
        return true;
    }
    return false;
}

void sipp__gw_call_free_media(gw_call *c) {
    for (size_t i = 0; i < c->n_owned; i++) free(c->owned[i]);
    free(c->owned);
    free(c->media);
    c->owned = NULL;
    c->media = NULL;
    c->n_owned = c->n_media = 0;
}

bool sipp__gw_call_own(gw_call *c, void *p) {
    char **o = p ? realloc(c->owned, (c->n_owned + 1) * sizeof *o) : NULL;
    if (!o) {
        free(p);
        return false;
    }
    c->owned = o;
    c->owned[c->n_owned++] = p;
    return true;
}

bool sipp__gw_call_add_image_url(gw_call *c, size_t index, const char *what, const char *u,
                                 size_t len, char *msg, size_t cap) {
    uint64_t max_bytes = c->max_media_bytes ? c->max_media_bytes : SIPP__GW_MAX_MEDIA_BYTES;
    uint64_t max_pixels = c->max_image_pixels ? c->max_image_pixels : SIPP__GW_MAX_IMAGE_PIXELS;
    if (c->media_bytes >= max_bytes) {
        c->media_too_large = true;
        return true;
    }
    char *mime = NULL, why[160];
    unsigned char *bytes = NULL;
    size_t n = 0;
    int rc = sipp__data_url_parse(u, len, (size_t)(max_bytes - c->media_bytes), &mime, &bytes, &n,
                                  why, sizeof why);
    if (rc == -2) {
        c->media_too_large = true;
        return true;
    }
    if (rc != 0) return sipp__gw_bad(msg, cap, "%s: %s", what, why);
    sipp__media_desc d;
    sipp_status st = sipp__media_sniff(bytes, n, SIPP_MEDIA_IMAGE, mime[0] ? mime : NULL,
                                       max_pixels, &d, why, sizeof why);
    free(mime);
    if (st != SIPP_OK) {
        free(bytes);
        return sipp__gw_bad(msg, cap, "%s: %s", what, why);
    }
    sipp_media *m = realloc(c->media, (c->n_media + 1) * sizeof *m);
    if (!m || !sipp__gw_call_own(c, bytes)) {
        if (!m) free(bytes);
        else c->media = m;
        return sipp__gw_bad(msg, cap, "out of memory");
    }
    c->media = m;
    c->media[c->n_media++] = (sipp_media){SIPP_MEDIA_IMAGE, bytes, n, d.mime, index};
    c->media_bytes += n;
    return true;
}

bool sipp__gw_call_add_audio(gw_call *c, size_t index, const char *what, const char *mime,
                             const char *b64, size_t b64_len, size_t raw_len, char *msg, size_t cap) {
    uint64_t max_bytes = c->max_media_bytes ? c->max_media_bytes : SIPP__GW_MAX_MEDIA_BYTES;
    uint64_t max_s = c->max_audio_seconds ? c->max_audio_seconds : SIPP__GW_MAX_AUDIO_SECONDS;
    if (c->media_bytes >= max_bytes) {
        c->media_too_large = true;
        return true;
    }
    char why[160];
    unsigned char *bytes = NULL;
    size_t n = 0;
    if (b64_len == SIZE_MAX) { /* raw bytes (a multipart file) */
        if (raw_len > max_bytes - c->media_bytes) {
            c->media_too_large = true;
            return true;
        }
        bytes = malloc(raw_len ? raw_len : 1);
        if (!bytes) return sipp__gw_bad(msg, cap, "out of memory");
        memcpy(bytes, b64, raw_len);
        n = raw_len;
    } else { /* base64: decoded (and its size checked first) as a data: URL's payload */
        char *dmime = NULL, head[64];
        int hl = snprintf(head, sizeof head, "data:%s;base64,", mime);
        char *url = hl > 0 && b64_len < SIZE_MAX - (size_t)hl ? malloc((size_t)hl + b64_len) : NULL;
        if (!url) return sipp__gw_bad(msg, cap, "out of memory");
        memcpy(url, head, (size_t)hl);
        memcpy(url + hl, b64, b64_len);
        int rc = sipp__data_url_parse(url, (size_t)hl + b64_len, (size_t)(max_bytes - c->media_bytes),
                                      &dmime, &bytes, &n, why, sizeof why);
        free(url);
        free(dmime);
        if (rc == -2) {
            c->media_too_large = true;
            return true;
        }
        if (rc != 0) return sipp__gw_bad(msg, cap, "%s: %s", what, why);
    }
    sipp__media_desc d;
    if (sipp__media_sniff(bytes, n, SIPP_MEDIA_AUDIO, mime, 0, &d, why, sizeof why) != SIPP_OK) {
        free(bytes);
        return sipp__gw_bad(msg, cap, "%s: %s", what, why);
    }
    if (c->audio_ms + d.duration_ms > max_s * 1000) {
        free(bytes);
        return sipp__gw_bad(msg, cap,
                            "%s: the request's audio is %.1f seconds, over the limit of %llu seconds "
                            "(max_audio_seconds)",
                            what, (double)(c->audio_ms + d.duration_ms) / 1000.0,
                            (unsigned long long)max_s);
    }
    sipp_media *m = realloc(c->media, (c->n_media + 1) * sizeof *m);
    if (!m || !sipp__gw_call_own(c, bytes)) {
        if (!m) free(bytes);
        else c->media = m;
        return sipp__gw_bad(msg, cap, "out of memory");
    }
    c->media = m;
    c->media[c->n_media++] = (sipp_media){SIPP_MEDIA_AUDIO, bytes, n, d.mime, index};
    c->media_bytes += n;
    c->audio_ms += d.duration_ms;
    return true;
}

/* One OpenAI input_audio part of messages[i]: {"data": base64, "format": "wav" | "mp3" |
 * "flac"}, decoded and checked as a clip. */
static bool decode_audio_part(gw_call *c, size_t i, json_t *part, char *msg, size_t cap) {
    json_t *ia = json_object_get(part, "input_audio");
    json_t *data = json_is_object(ia) ? json_object_get(ia, "data") : NULL;
    json_t *format = json_is_object(ia) ? json_object_get(ia, "format") : NULL;
    if (!json_is_string(data) || !json_is_string(format))
        return sipp__gw_bad(msg, cap,
                            "messages[%zu]: an input_audio part needs input_audio.data (base64) "
                            "and input_audio.format",
                            i);
    const char *f = json_string_value(format);
    const char *mime = strcmp(f, "wav") == 0    ? "audio/wav"
                       : strcmp(f, "mp3") == 0  ? "audio/mpeg"
                       : strcmp(f, "flac") == 0 ? "audio/flac"
                                                : NULL;
    if (!mime)
        return sipp__gw_bad(msg, cap, "messages[%zu]: input_audio.format must be wav, mp3 or flac", i);
    char what[48];
    snprintf(what, sizeof what, "messages[%zu]: input_audio", i);
    return sipp__gw_call_add_audio(c, i, what, mime, json_string_value(data),
                                   json_string_length(data), 0, msg, cap);
}

/* One OpenAI image_url part of messages[i]: a data: URL decoded and checked (type, declared
 * size). Remote URLs are refused: the gateway fetches nothing on a caller's behalf. */
static bool decode_image_part(gw_call *c, size_t i, json_t *part, char *msg, size_t cap) {
    json_t *iu = json_object_get(part, "image_url");
    json_t *url = json_is_object(iu) ? json_object_get(iu, "url") : iu;
    if (!json_is_string(url))
        return sipp__gw_bad(msg, cap, "messages[%zu]: an image_url part needs image_url.url", i);
    const char *u = json_string_value(url);
    size_t len = json_string_length(url);
    if (strncasecmp(u, "data:", 5) != 0)
        return sipp__gw_bad(msg, cap,
                            "messages[%zu]: image_url must be a data: URL; remote image URLs are "
                            "not fetched",
                            i);
    char what[48];
    snprintf(what, sizeof what, "messages[%zu]: image_url", i);
    return sipp__gw_call_add_image_url(c, i, what, u, len, msg, cap);
}

/* OpenAI content parts of messages[i]: text parts joined, each image_url part a media part
 * with a marker where it stood. *text is owned by c. */
static bool decode_parts(gw_call *c, size_t i, json_t *content, const char **text, char *msg,
                         size_t cap) {
    sipp__buf b;
    sipp__buf_init(&b, 64u << 20);
    size_t k;
    json_t *part;
    bool ok = true;
    json_array_foreach(content, k, part) {
        json_t *type = json_object_get(part, "type");
        const char *t = json_is_string(type) ? json_string_value(type) : "";
        const char *s = NULL;
        if (strcmp(t, "text") == 0 && text_of(json_object_get(part, "text"), &s)) {
            ok = sipp__buf_append(&b, s, strlen(s)) == SIPP_OK;
        } else if (strcmp(t, "image_url") == 0 || strcmp(t, "input_audio") == 0) {
            ok = (t[0] == 'i' && t[1] == 'm' ? decode_image_part(c, i, part, msg, cap)
                                              : decode_audio_part(c, i, part, msg, cap)) &&
                 sipp__buf_append(&b, SIPP_MEDIA_MARKER, strlen(SIPP_MEDIA_MARKER)) == SIPP_OK;
            if (!ok && !msg[0]) sipp__gw_bad(msg, cap, "out of memory");
        } else {
            ok = sipp__gw_bad(msg, cap,
                              "messages[%zu].content[%zu]: type must be text, image_url or "
                              "input_audio",
                              i, k);
        }
        if (!ok) break;
    }
    if (!ok) {
        sipp__buf_free(&b);
        return msg[0] ? false : sipp__gw_bad(msg, cap, "out of memory");
    }
    char *s = b.data ? b.data : sipp__strdup(""); /* the buffer's text becomes c's */
    if (!s || !sipp__gw_call_own(c, s)) return sipp__gw_bad(msg, cap, "out of memory");
    *text = s;
    return true;
}

bool sipp__gw_decode_messages(gw_call *c, json_t *v, bool openai, char *msg, size_t cap,
                            char *param, size_t pcap) {
    snprintf(param, pcap, "messages");
    if (!json_is_array(v) || json_array_size(v) == 0)
        return sipp__gw_bad(msg, cap, "field 'messages' must be a non-empty array");
    if (json_array_size(v) > 4096)
        return sipp__gw_bad(msg, cap, "field 'messages' has too many entries");
    c->n_messages = json_array_size(v);
    c->messages = calloc(c->n_messages, sizeof *c->messages);
    if (!c->messages) return sipp__gw_bad(msg, cap, "out of memory");
    /* the same messages with their tool parts, for sipp_chat_ex (issue 18) */
    c->chat = calloc(c->n_messages, sizeof *c->chat);
    if (!c->chat || !sipp__gw_call_own(c, c->chat)) {
        c->chat = NULL;
        return sipp__gw_bad(msg, cap, "out of memory");
    }
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        if (!json_is_object(m)) return sipp__gw_bad(msg, cap, "messages[%zu] must be an object", i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role))
            return sipp__gw_bad(msg, cap, "messages[%zu].role must be a string", i);
        const char *r = json_string_value(role);
        if (openai && strcmp(r, "developer") == 0) r = "system";
        if (!role_ok(r))
            return sipp__gw_bad(msg, cap,
                                "messages[%zu].role must be system, user, assistant or tool", i);
        const char *text = NULL;
        if (!text_of(content, &text) && json_is_array(content) && json_array_size(content) > 0) {
            /* content parts (both profiles, OpenAI's shapes): text, and images as data: URLs */
            msg[0] = '\0';
            if (json_array_size(content) > 256)
                return sipp__gw_bad(msg, cap, "messages[%zu].content has too many parts", i);
            if (!decode_parts(c, i, content, &text, msg, cap)) return false;
        }
        c->chat[i].role = r;
        if (!sipp__gw_decode_message_tools(c, i, m, openai, msg, cap, param, pcap)) return false;
        snprintf(param, pcap, "messages");
        /* an assistant turn of calls only has no text (OpenAI: content null) */
        if (!text && c->chat[i].n_tool_calls && (!content || json_is_null(content))) text = "";
        if (!text) return sipp__gw_bad(msg, cap, "messages[%zu].content must be a string", i);
        c->messages[i].role = r;
        c->messages[i].content = text;
        c->chat[i].content = text;
        json_t *rc = json_object_get(m, "reasoning_content");
        if (strcmp(r, "assistant") == 0 && json_is_string(rc))
            c->chat[i].reasoning = json_string_value(rc);
        const char *k;
        json_t *x;
        json_object_foreach(m, k, x) {
            if (strcmp(k, "role") == 0 || strcmp(k, "content") == 0) continue;
            if (openai && strcmp(k, "name") == 0) continue;
            if (strcmp(k, "tool_calls") == 0 || strcmp(k, "tool_call_id") == 0) continue;
            if (strcmp(k, "reasoning_content") == 0 && (json_is_string(x) || json_is_null(x)))
                continue;
            /* what an OpenAI answer's message carries besides (and the SDKs' parsed copy),
             * when a client sends an answer's message back as it came */
            if (openai && strcmp(r, "assistant") == 0 &&
                (strcmp(k, "refusal") == 0 || strcmp(k, "annotations") == 0 ||
                 strcmp(k, "parsed") == 0 ||
                 ((strcmp(k, "audio") == 0 || strcmp(k, "function_call") == 0) &&
                  json_is_null(x))))
                continue;
            sipp__gw_invalid(c, "messages", "unknown field 'messages[%zu].%.40s'", i, k);
        }
    }
    param[0] = '\0';
    return true;
}

/* `encoding_format` of both embedding routes: null or "float" (JSON numbers), "base64" (the
 * little-endian float32 bytes, base64, as OpenAI sends them). */
bool sipp__gw_decode_encoding(gw_call *c, json_t *v, char *msg, size_t cap) {
    if (json_is_null(v)) return true;
    if (!json_is_string(v))
        return sipp__gw_bad(msg, cap, "field 'encoding_format' must be a string");
    const char *f = json_string_value(v);
    if (strcmp(f, "base64") == 0)
        c->base64 = true;
    else if (strcmp(f, "float") != 0)
        sipp__gw_invalid(c, "encoding_format", "'encoding_format' must be float or base64");
    return true;
}

bool sipp__gw_decode_required(gw_op op, const gw_call *c, char *msg, size_t cap) {
    if (!c->model) return sipp__gw_bad(msg, cap, "missing field 'model'");
    if (op == GW_OP_QUERY && !c->prompt) return sipp__gw_bad(msg, cap, "missing field 'prompt'");
    if (op == GW_OP_CHAT && !c->messages) return sipp__gw_bad(msg, cap, "missing field 'messages'");
    if (op == GW_OP_EMBED && !c->inputs) return sipp__gw_bad(msg, cap, "missing field 'input'");
    return true;
}

bool sipp__gw_decode(gw_profile prof, gw_op op, json_t *root, gw_call *call, char *msg,
                     size_t cap, char *param, size_t pcap) {
    call->op = op;
    if (param && pcap) param[0] = '\0';
    if (!json_is_object(root)) return sipp__gw_bad(msg, cap, "the body must be a JSON object");
    return sipp__gw_codec(prof)->decode(op, root, call, msg, cap, param, pcap);
}

bool sipp__gw_decode_body(gw_profile prof, gw_op op, const char *body, size_t len,
                          unsigned max_depth, json_t **root, gw_call *call, char *msg, size_t cap,
                          char *param, size_t pcap) {
    *root = NULL;
    if (param && pcap) param[0] = '\0';
    if (sipp__nesting_depth_len(body, len, false, max_depth) > max_depth)
        return sipp__gw_bad(msg, cap, "the JSON nests deeper than %u levels", max_depth);
    json_error_t je;
    *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!*root)
        return sipp__gw_bad(msg, cap, "the body is not valid JSON: %s (line %d)", je.text, je.line);
    return sipp__gw_decode(prof, op, *root, call, msg, cap, param, pcap);
}

/* ---- encoding helpers ------------------------------------------------------------------------ */

void sipp__gw_sse_frame(sipp__buf *out, const char *event, json_t *data) {
    char *s = data ? json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(data);
    if (!s) return;
    if (event) {
        sipp__buf_append(out, "event: ", 7);
        sipp__buf_append(out, event, strlen(event));
        sipp__buf_append(out, "\n", 1);
    }
    sipp__buf_append(out, "data: ", 6);
    sipp__buf_append(out, s, strlen(s));
    sipp__buf_append(out, "\n\n", 2);
    free(s);
}

const char *sipp__gw_finish_name(sipp_finish_reason f) {
    return f == SIPP_FINISH_LENGTH        ? "length"
           : f == SIPP_FINISH_CANCELLED   ? "cancelled"
           : f == SIPP_FINISH_TOOL_CALLS ? "tool_calls"
                                          : "stop";
}

char *sipp__gw_json_text(json_t *v) {
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    return s;
}

/* ---- the embeddings answer, written in pieces --------------------------------------------- */

/* Floats per base64 block: 192 bytes, a multiple of 3, so a vector's blocks join without
 * padding and only its last block pads. */
#define EMB_B64_FLOATS 48
/* Floats per piece of the float form: each is at most 15 bytes ("-1.17549435e-38"; an
 * integer-looking one gets ".0": "-123456789.0") plus a comma. */
#define EMB_TEXT_FLOATS 32

struct sipp__gw_embed_writer {
    const gw_codec *codec; /* the envelope: head, tail, each vector's opening and closing */
    bool base64;
    float *v; /* n_vec x dim, owned */
    size_t n_vec;
    uint32_t dim;
    char *head, *tail; /* the envelope before the first vector and after the last one */
    enum { EW_HEAD, EW_OPEN, EW_BODY, EW_CLOSE, EW_TAIL, EW_DONE } part;
    size_t vec, k;     /* the vector being written and its next float */
    const char *out;   /* the current piece (into pend, head or tail) */
    size_t out_len, out_off;
    char pend[EMB_TEXT_FLOATS * 24 + 64];
};

bool sipp__gw_embed_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

sipp__gw_embed_writer *sipp__gw_embed_writer_new(gw_profile prof, bool base64, const char *id,
                                                 const char *model, uint64_t in_tok,
                                                 uint64_t out_tok, float *v, size_t n_vec,
                                                 uint32_t dim) {
    sipp__gw_embed_writer *w = calloc(1, sizeof *w);
    if (!w) {
        free(v);
        return NULL;
    }
    w->codec = sipp__gw_codec(prof);
    if (!w->codec->embed_head) { /* a chat-only profile: its routes never get here */
        free(v);
        free(w);
        return NULL;
    }
    w->base64 = base64;
    w->v = v;
    w->n_vec = n_vec;
    w->dim = dim;
    gw_answer ans = {.op = GW_OP_EMBED, .id = id, .model = model, .in_tok = in_tok,
                     .out_tok = out_tok};
    w->head = w->codec->embed_head(&ans);
    w->tail = w->codec->embed_tail(&ans);
    if (!w->head || !w->tail) {
        sipp__gw_embed_writer_free(w);
        return NULL;
    }
    return w;
}

void sipp__gw_embed_writer_free(sipp__gw_embed_writer *w) {
    if (!w) return;
    free(w->v);
    free(w->head);
    free(w->tail);
    free(w);
}

/* Writes one float so that it reads back as the same float32 (%.9g) and stays a JSON float
 * (".0" where %g wrote an integer). Non-finite values never reach here (the gateway refuses
 * them before the answer starts); `null` keeps the JSON valid if one did. */
static size_t put_float(char *p, float x) {
    if (!isfinite(x)) {
        memcpy(p, "null", 4);
        return 4;
    }
    int n = snprintf(p, 24, "%.9g", (double)x);
    if (!strpbrk(p, ".e")) {
        memcpy(p + n, ".0", 2);
        n += 2;
    }
    return (size_t)n;
}

/* Makes the next piece current. Returns false at the end. */
static bool next_piece(sipp__gw_embed_writer *w) {
    char *p = w->pend;
    w->out = p;
    w->out_off = w->out_len = 0;
    switch (w->part) {
    case EW_HEAD:
        w->out = w->head;
        w->out_len = strlen(w->head);
        w->part = w->n_vec ? EW_OPEN : EW_TAIL;
        return true;
    case EW_OPEN: {
        size_t n = w->codec->embed_open(p, sizeof w->pend - 1, w->vec);
        p[n++] = w->base64 ? '"' : '[';
        w->out_len = n;
        w->k = 0;
        w->part = w->dim ? EW_BODY : EW_CLOSE;
        return true;
    }
    case EW_BODY: {
        const float *x = w->v + w->vec * w->dim + w->k;
        size_t left = w->dim - w->k;
        if (w->base64) {
            size_t m = left < EMB_B64_FLOATS ? left : EMB_B64_FLOATS;
            unsigned char raw[EMB_B64_FLOATS * 4];
            for (size_t i = 0; i < m; i++) { /* little-endian on every host */
                uint32_t u;
                memcpy(&u, &x[i], 4);
                raw[4 * i] = (unsigned char)u;
                raw[4 * i + 1] = (unsigned char)(u >> 8);
                raw[4 * i + 2] = (unsigned char)(u >> 16);
                raw[4 * i + 3] = (unsigned char)(u >> 24);
            }
            w->out_len = (size_t)EVP_EncodeBlock((unsigned char *)p, raw, (int)(m * 4));
            w->k += m;
        } else {
            size_t m = left < EMB_TEXT_FLOATS ? left : EMB_TEXT_FLOATS, n = 0;
            for (size_t i = 0; i < m; i++) {
                if (w->k + i) p[n++] = ',';
                n += put_float(p + n, x[i]);
            }
            w->out_len = n;
            w->k += m;
        }
        if (w->k == w->dim) w->part = EW_CLOSE;
        return true;
    }
    case EW_CLOSE:
        p[0] = w->base64 ? '"' : ']';
        w->out_len = 1 + (size_t)snprintf(p + 1, sizeof w->pend - 1, "%s", w->codec->embed_close);
        w->part = ++w->vec < w->n_vec ? EW_OPEN : EW_TAIL;
        return true;
    case EW_TAIL:
        w->out = w->tail;
        w->out_len = strlen(w->tail);
        w->part = EW_DONE;
        return true;
    default: return false;
    }
}

size_t sipp__gw_embed_writer_read(sipp__gw_embed_writer *w, char *buf, size_t cap) {
    size_t n = 0;
    while (n < cap) {
        if (w->out_off == w->out_len && !next_piece(w)) break;
        size_t m = w->out_len - w->out_off;
        if (m > cap - n) m = cap - n;
        memcpy(buf + n, w->out + w->out_off, m);
        w->out_off += m;
        n += m;
    }
    return n;
}
