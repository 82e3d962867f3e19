/*
 * profile_anthropic.c — the Anthropic Messages profile (POST /v1/messages): its request decoder
 * and every answer it sends, together, behind sipp__gw_anthropic_codec. Clients written for
 * Anthropic's API (its SDKs, and tools that speak only Messages) use the gateway's targets and
 * policy unchanged, as llama-server's and Ollama's /v1/messages let them.
 *
 * Requests: `model`, `messages` (role user or assistant; content a string or an array of text
 * blocks, joined with "\n"), `system` (a string or text blocks: the first, system message),
 * `max_tokens`, `temperature`, `top_p`, `stop_sequences`, `stream`, `metadata` (accepted and
 * not used). Everything else Anthropic defines (tools, images, thinking, top_k) is refused by
 * name in the validate phase, never ignored.
 *
 * Answers follow Anthropic's shapes: a `message` object with one text block, `stop_reason`
 * end_turn / max_tokens / stop_sequence and `usage`; a stream is message_start,
 * content_block_start, content_block_delta (text_delta)..., content_block_stop, message_delta
 * (stop_reason, output tokens) and message_stop, each an SSE event named by its type; errors
 * are {"type": "error", "error": {"type", "message"}} with Anthropic's error types, in a body
 * or as an `error` event. Ids are the request id prefixed `msg_`.
 */
#define _POSIX_C_SOURCE 200809L
#include "profiles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- decoding ---------------------------------------------------------------------------------- */

/* The text of a content value: a string, or an array of {"type": "text", "text"} blocks, which
 * are joined with "\n" into a string that replaces the array in the document (so that the
 * text lives as long as the document, like every string of the decoded call). */
static bool content_text(json_t *holder, const char *key, const char *what, const char **out,
                         char *msg, size_t cap) {
    json_t *v = json_object_get(holder, key);
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return true;
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return sipp__gw_bad(msg, cap, "%s must be a string or a non-empty array of text blocks",
                            what);
    size_t total = 0, i;
    json_t *b;
    json_array_foreach(v, i, b) {
        json_t *type = json_object_get(b, "type"), *text = json_object_get(b, "text");
        if (!json_is_object(b) || !json_is_string(type))
            return sipp__gw_bad(msg, cap, "%s[%zu] must be a content block with a 'type'", what,
                                i);
        if (strcmp(json_string_value(type), "text") != 0)
            return sipp__gw_bad(msg, cap, "%s[%zu]: content blocks of type '%.40s' are not "
                                "supported (only text)", what, i, json_string_value(type));
        if (!json_is_string(text))
            return sipp__gw_bad(msg, cap, "%s[%zu].text must be a string", what, i);
        total += json_string_length(text) + 1;
    }
    if (json_array_size(v) == 1) {
        *out = json_string_value(json_object_get(json_array_get(v, 0), "text"));
        return true;
    }
    char *joined = malloc(total);
    if (!joined) return sipp__gw_bad(msg, cap, "out of memory");
    size_t n = 0;
    json_array_foreach(v, i, b) {
        json_t *text = json_object_get(b, "text");
        if (i) joined[n++] = '\n';
        memcpy(joined + n, json_string_value(text), json_string_length(text));
        n += json_string_length(text);
    }
    json_t *s = json_stringn_nocheck(joined, n); /* each piece was valid UTF-8 */
    free(joined);
    if (!s || json_object_set_new(holder, key, s) != 0)
        return sipp__gw_bad(msg, cap, "out of memory");
    *out = json_string_value(s);
    return true;
}

static bool decode_messages(gw_call *c, json_t *root, char *msg, size_t cap, char *param,
                            size_t pcap) {
    json_t *v = json_object_get(root, "messages");
    snprintf(param, pcap, "messages");
    if (!json_is_array(v) || json_array_size(v) == 0)
        return sipp__gw_bad(msg, cap, "field 'messages' must be a non-empty array");
    if (json_array_size(v) > 4096)
        return sipp__gw_bad(msg, cap, "field 'messages' has too many entries");
    bool has_system = json_object_get(root, "system") && !json_is_null(json_object_get(root, "system"));
    c->messages = calloc(json_array_size(v) + 1, sizeof *c->messages);
    if (!c->messages) return sipp__gw_bad(msg, cap, "out of memory");
    size_t n = 0;
    if (has_system) {
        snprintf(param, pcap, "system");
        c->messages[n].role = "system";
        if (!content_text(root, "system", "field 'system'", &c->messages[n].content, msg, cap))
            return false;
        n++;
        snprintf(param, pcap, "messages");
    }
    size_t i;
    json_t *m;
    json_array_foreach(v, i, m) {
        if (!json_is_object(m)) return sipp__gw_bad(msg, cap, "messages[%zu] must be an object", i);
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role) || (strcmp(json_string_value(role), "user") != 0 &&
                                      strcmp(json_string_value(role), "assistant") != 0))
            return sipp__gw_bad(msg, cap, "messages[%zu].role must be user or assistant", i);
        char what[48];
        snprintf(what, sizeof what, "messages[%zu].content", i);
        c->messages[n].role = json_string_value(role);
        if (!content_text(m, "content", what, &c->messages[n].content, msg, cap)) return false;
        n++;
        const char *k;
        json_t *x;
        json_object_foreach(m, k, x) {
            if (strcmp(k, "role") != 0 && strcmp(k, "content") != 0)
                sipp__gw_invalid(c, "messages", "unknown field 'messages[%zu].%.40s'", i, k);
        }
    }
    c->n_messages = n;
    param[0] = '\0';
    return true;
}

static bool decode(gw_op op, json_t *root, gw_call *c, char *msg, size_t cap, char *param,
                   size_t pcap) {
    if (op != GW_OP_CHAT) return sipp__gw_bad(msg, cap, "the Messages profile serves chat only");
    if (json_object_get(root, "messages") && !decode_messages(c, root, msg, cap, param, pcap))
        return false;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        bool null = json_is_null(v);
        if (strcmp(k, "messages") == 0 || strcmp(k, "system") == 0) {
            continue; /* decoded above */
        } else if (strcmp(k, "model") == 0) {
            if (!json_is_string(v)) return sipp__gw_bad(msg, cap, "field 'model' must be a string");
            c->model = json_string_value(v);
        } else if (strcmp(k, "stop_sequences") == 0) {
            int r = sipp__gw_decode_option(c, "stop", v, msg, cap, param, pcap, false);
            if (r < 0) return false;
            if (c->invalid[0] && strcmp(c->invalid_param, "stop") == 0)
                snprintf(c->invalid_param, sizeof c->invalid_param, "stop_sequences");
        } else if (strcmp(k, "metadata") == 0) {
            if (!null && !json_is_object(v))
                return sipp__gw_bad(msg, cap, "field 'metadata' must be an object");
        } else if (strcmp(k, "stream") == 0 && null) {
            continue;
        } else if (strcmp(k, "stop") == 0) { /* not Anthropic's name: say which one is */
            sipp__gw_invalid(c, k, "unsupported parameter 'stop' (the Messages API calls it "
                             "'stop_sequences')");
        } else if (sipp__gw_is_local_only(k)) {
            sipp__gw_invalid(c, k,
                             "field '%s' is local-only: the gateway does not let clients steer "
                             "server KV state or local sampling",
                             k);
        } else {
            int r = sipp__gw_decode_option(c, k, v, msg, cap, param, pcap, false);
            if (r < 0) return false;
            if (r == 0) sipp__gw_invalid(c, k, "unsupported parameter '%.40s'", k);
        }
    }
    return sipp__gw_decode_required(op, c, msg, cap);
}

/* ---- encoding ---------------------------------------------------------------------------------- */

/* Anthropic's error types by HTTP status (its API reference, "Errors"). */
static const char *error_type(gw_code code) {
    switch (sipp__gw_code_status(code)) {
    case 400:
    case 405:
    case 408:
    case 415: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default: return "api_error";
    }
}

static json_t *error(gw_code code, const char *param, const char *msg) {
    (void)param; /* Anthropic's envelope has no parameter field; the message names it */
    return json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", error_type(code),
                     "message", msg);
}

static const char *stop_reason(sipp_finish_reason f) {
    return f == SIPP_FINISH_LENGTH ? "max_tokens" : "end_turn";
}

static json_t *message(const gw_answer *a, json_t *content, const char *stop, uint64_t out_tok) {
    char id[96];
    snprintf(id, sizeof id, "msg_%s", a->id);
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s?, s:n, s:{s:I, s:I}}", "id", id, "type",
                     "message", "role", "assistant", "model", a->model, "content", content,
                     "stop_reason", stop, "stop_sequence", "usage", "input_tokens",
                     (json_int_t)a->in_tok, "output_tokens", (json_int_t)out_tok);
}

static json_t *text(const gw_answer *a, const char *s, size_t len, sipp_finish_reason f) {
    json_t *content = json_pack("[{s:s, s:s%}]", "type", "text", "text", s, len);
    if (!content) return NULL;
    return message(a, content, stop_reason(f), a->out_tok);
}

static void event(sipp__buf *out, const char *type, json_t *data) {
    sipp__gw_sse_frame(out, type, data);
}

/* message_start and the text block's start, before the first delta (or the end). */
static void stream_open(sipp__buf *out, const gw_answer *a, gw_stream_state *st) {
    if (st->role_sent) return;
    st->role_sent = true;
    event(out, "message_start",
          json_pack("{s:s, s:o}", "type", "message_start", "message",
                    message(a, json_array(), NULL, 0)));
    event(out, "content_block_start",
          json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index", 0,
                    "content_block", "type", "text", "text", ""));
}

static void stream_text(sipp__buf *out, const gw_answer *a, gw_stream_state *st, const char *s,
                        size_t len, uint32_t n_tokens) {
    stream_open(out, a, st);
    event(out, "content_block_delta",
          json_pack("{s:s, s:i, s:{s:s, s:s%}}", "type", "content_block_delta", "index", 0,
                    "delta", "type", "text_delta", "text", s, len));
    st->sequence += n_tokens;
}

static void stream_error(sipp__buf *out, gw_code code, const char *msg) {
    event(out, "error", error(code, NULL, msg));
}

static void stream_end(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                       sipp_finish_reason f) {
    stream_open(out, a, st);
    event(out, "content_block_stop",
          json_pack("{s:s, s:i}", "type", "content_block_stop", "index", 0));
    event(out, "message_delta",
          json_pack("{s:s, s:{s:s, s:n}, s:{s:I}}", "type", "message_delta", "delta",
                    "stop_reason", stop_reason(f), "stop_sequence", "usage", "output_tokens",
                    (json_int_t)a->out_tok));
    event(out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

const gw_codec sipp__gw_anthropic_codec = {
    .decode = decode,
    .error = error,
    .text = text,
    .stream_text = stream_text,
    .stream_error = stream_error,
    .stream_end = stream_end,
    /* no embeddings: the Messages route is chat only (phases.c), so the embed hooks are NULL */
};
