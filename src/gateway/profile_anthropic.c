/*
 * profile_anthropic.c — the Anthropic Messages profile (POST /v1/messages): its request decoder
 * and every answer it sends, together, behind sipp__gw_anthropic_codec. Clients written for
 * Anthropic's API (its SDKs, and tools that speak only Messages) use the gateway's targets and
 * policy unchanged, as llama-server's and Ollama's /v1/messages let them.
 *
 * Requests: `model`, `messages` (role user or assistant; content a string or an array of text
 * blocks, joined with "\n"; a user message's `image` blocks with a base64 source become media
 * parts, issue 17), `system` (a string or text blocks: the first, system message),
 * `max_tokens`, `temperature`, `top_p`, `stop_sequences`, `stream`, `metadata` (accepted and
 * not used), and (issue 18) `tools` (custom tools), `tool_choice`, `tool_use` blocks in
 * assistant messages and `tool_result` blocks in user messages, decoded into sipp_chat_ex's
 * messages (a message with tool blocks carries no image blocks). Everything else Anthropic
 * defines (server tools, URL images, thinking, top_k) is refused by name, never ignored.
 *
 * Answers follow Anthropic's shapes: a `message` object with a text block and a tool_use block
 * per call, `stop_reason` end_turn / max_tokens / tool_use and `usage`; a stream is
 * message_start, then per block content_block_start, content_block_delta (text_delta, or
 * input_json_delta for a tool_use block)... and content_block_stop, then message_delta
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

/* One image block of messages[i] (issue 17): {"type": "image", "source": {"type": "base64",
 * "media_type", "data"}}, decoded as the OpenAI profile's data: URLs are (the same limits and
 * checks) into a media part of the call's messages[index]. Remote `url` sources are refused: the
 * gateway fetches nothing on a caller's behalf. */
static bool image_block(gw_call *c, size_t i, size_t k, size_t index, json_t *b, char *msg,
                        size_t cap) {
    json_t *src = json_object_get(b, "source");
    json_t *st = json_object_get(src, "type"), *mt = json_object_get(src, "media_type"),
           *data = json_object_get(src, "data");
    const char *t = json_is_string(st) ? json_string_value(st) : "";
    if (strcmp(t, "url") == 0)
        return sipp__gw_bad(msg, cap, "messages[%zu].content[%zu]: image sources must be base64; "
                            "remote image URLs are not fetched", i, k);
    const char *type = json_is_string(mt) ? json_string_value(mt) : "";
    if (!json_is_object(src) || strcmp(t, "base64") != 0 || !json_is_string(data) || !type[0] ||
        strlen(type) > 64 || strpbrk(type, ",; \t\r\n"))
        return sipp__gw_bad(msg, cap, "messages[%zu].content[%zu]: an image block needs a source "
                            "{\"type\": \"base64\", \"media_type\": \"image/...\", \"data\"}", i, k);
    size_t len = json_string_length(data), ulen = 5 + strlen(type) + 8 + len;
    char *url = malloc(ulen + 1);
    if (!url) return sipp__gw_bad(msg, cap, "out of memory");
    snprintf(url, ulen + 1, "data:%s;base64,", type);
    memcpy(url + ulen - len, json_string_value(data), len);
    url[ulen] = '\0';
    char what[96];
    snprintf(what, sizeof what, "messages[%zu].content[%zu]: image", i, k);
    bool ok = sipp__gw_call_add_image_url(c, index, what, url, ulen, msg, cap);
    free(url);
    return ok;
}

/* The content of messages[i] when it holds image blocks (issue 17): each becomes a media part of
 * the call's messages[index] with a marker where it stood, text blocks are joined with "\n" as
 * content_text joins them (a marker takes no separator), and the text replaces the array in the
 * document like content_text's. Without image blocks it is content_text's. */
static bool content_with_images(gw_call *c, json_t *m, size_t i, size_t index, const char *what,
                                const char **out, char *msg, size_t cap) {
    json_t *v = json_object_get(m, "content"), *b;
    size_t k, images = 0;
    json_array_foreach(v, k, b) {
        json_t *type = json_object_get(b, "type");
        images += json_is_string(type) && strcmp(json_string_value(type), "image") == 0;
    }
    if (images == 0) return content_text(m, "content", what, out, msg, cap);
    json_t *role = json_object_get(m, "role");
    if (strcmp(json_string_value(role), "user") != 0)
        return sipp__gw_bad(msg, cap, "%s: image blocks go in user messages", what);
    sipp__buf text;
    sipp__buf_init(&text, 64u << 20);
    bool ok = true, after_text = false;
    msg[0] = '\0';
    json_array_foreach(v, k, b) {
        json_t *type = json_object_get(b, "type"), *t = json_object_get(b, "text");
        const char *ty = json_is_string(type) ? json_string_value(type) : "";
        if (strcmp(ty, "image") == 0) {
            ok = image_block(c, i, k, index, b, msg, cap) &&
                 sipp__buf_append(&text, SIPP_MEDIA_MARKER, strlen(SIPP_MEDIA_MARKER)) == SIPP_OK;
            after_text = false;
        } else if (strcmp(ty, "text") == 0 && !json_is_string(t)) {
            ok = sipp__gw_bad(msg, cap, "%s[%zu].text must be a string", what, k);
        } else if (strcmp(ty, "text") == 0) {
            ok = (!after_text || sipp__buf_append(&text, "\n", 1) == SIPP_OK) &&
                 sipp__buf_append(&text, json_string_value(t), json_string_length(t)) == SIPP_OK;
            after_text = true;
        } else {
            ok = sipp__gw_bad(msg, cap, "%s[%zu]: content blocks of type '%.40s' are not supported "
                              "(only text and image)", what, k, ty);
        }
        if (!ok) break;
    }
    json_t *s = ok ? json_stringn_nocheck(text.data ? text.data : "", text.len) : NULL;
    sipp__buf_free(&text);
    if (!ok) return msg[0] ? false : sipp__gw_bad(msg, cap, "out of memory");
    if (!s || json_object_set_new(m, "content", s) != 0)
        return sipp__gw_bad(msg, cap, "out of memory");
    *out = json_string_value(s);
    return true;
}

/* True when a content value holds tool_use or tool_result blocks (issue 18). */
static bool has_tool_blocks(json_t *content) {
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b) {
        const char *t = json_string_value(json_object_get(b, "type"));
        if (t && (strcmp(t, "tool_use") == 0 || strcmp(t, "tool_result") == 0)) return true;
    }
    return false;
}

/* The text of `v` (a string, or an array of text blocks joined with "\n"), owned by the call;
 * "" for NULL. False with msg set when a block is not text. */
static bool blocks_text(gw_call *c, json_t *v, const char *what, const char **out, char *msg,
                        size_t cap) {
    if (!v || json_is_string(v)) {
        *out = v ? json_string_value(v) : "";
        return true;
    }
    if (!json_is_array(v))
        return sipp__gw_bad(msg, cap, "%s must be a string or an array of text blocks", what);
    sipp__buf b;
    sipp__buf_init(&b, 64u << 20);
    size_t i;
    json_t *blk;
    bool ok = true;
    json_array_foreach(v, i, blk) {
        json_t *text = json_object_get(blk, "text");
        const char *t = json_string_value(json_object_get(blk, "type"));
        if (!t || strcmp(t, "text") != 0 || !json_is_string(text)) {
            ok = sipp__gw_bad(msg, cap, "%s[%zu] must be a text block", what, i);
            break;
        }
        if ((i && sipp__buf_append(&b, "\n", 1) != SIPP_OK) ||
            sipp__buf_append(&b, json_string_value(text), json_string_length(text)) != SIPP_OK) {
            ok = sipp__gw_bad(msg, cap, "out of memory");
            break;
        }
    }
    if (!ok) {
        sipp__buf_free(&b);
        return false;
    }
    char *s = b.data ? b.data : strdup("");
    if (!s || !sipp__gw_call_own(c, s)) return sipp__gw_bad(msg, cap, "out of memory");
    *out = s;
    return true;
}

/* A message whose content has tool blocks (issue 18): an assistant's text and tool_use blocks
 * ({"id", "name", "input": object}) become one message with calls; a user's tool_result blocks
 * ({"tool_use_id", "content"?: string or text blocks, "is_error"?}) become `tool` messages,
 * then its text blocks, if any, a user message. Appends at c->messages[*n] / c->chat[*n]. */
static bool decode_tool_blocks(gw_call *c, size_t i, const char *role, json_t *content, size_t *n,
                               char *msg, size_t cap, char *param, size_t pcap) {
    bool assistant = strcmp(role, "assistant") == 0;
    size_t k, n_calls = 0, n_text = 0;
    json_t *b;
    json_array_foreach(content, k, b) {
        const char *t = json_string_value(json_object_get(b, "type"));
        if (t && strcmp(t, "tool_use") == 0) n_calls++;
        if (t && strcmp(t, "text") == 0) n_text++;
    }
    sipp_tool_call *calls = n_calls ? calloc(n_calls, sizeof *calls) : NULL;
    if (n_calls && (!calls || !sipp__gw_call_own(c, calls)))
        return sipp__gw_bad(msg, cap, "out of memory");
    json_t *texts = json_array();
    if (!texts) return sipp__gw_bad(msg, cap, "out of memory");
    size_t nc = 0;
    bool ok = true;
    json_array_foreach(content, k, b) {
        const char *t = json_string_value(json_object_get(b, "type"));
        char at[64];
        snprintf(at, sizeof at, "messages[%zu].content[%zu]", i, k);
        if (!json_is_object(b) || !t) {
            ok = sipp__gw_bad(msg, cap, "%s must be a content block with a 'type'", at);
        } else if (strcmp(t, "text") == 0) {
            json_array_append(texts, b);
        } else if (strcmp(t, "tool_use") == 0 && assistant) {
            json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name"),
                   *input = json_object_get(b, "input");
            char *args = json_is_object(input) ? json_dumps(input, JSON_COMPACT) : NULL;
            if (!json_is_string(id) || !json_string_length(id) || !json_is_string(name) ||
                !json_is_object(input)) {
                free(args);
                snprintf(param, pcap, "%s", at);
                ok = sipp__gw_bad(msg, cap, "%s: a tool_use block needs an 'id', a 'name' and an "
                                  "'input' object", at);
            } else if (!args || !sipp__gw_call_own(c, args)) {
                ok = sipp__gw_bad(msg, cap, "out of memory");
            } else {
                calls[nc++] = (sipp_tool_call){json_string_value(id), json_string_value(name), args};
            }
        } else if (strcmp(t, "tool_result") == 0 && !assistant) {
            json_t *id = json_object_get(b, "tool_use_id"), *ie = json_object_get(b, "is_error");
            const char *text = NULL;
            snprintf(param, pcap, "%s", at);
            if (!json_is_string(id) || !json_string_length(id) || (ie && !json_is_boolean(ie)))
                ok = sipp__gw_bad(msg, cap, "%s: a tool_result block needs a 'tool_use_id' (and "
                                  "'is_error' is a boolean)", at);
            else
                ok = blocks_text(c, json_object_get(b, "content"), at, &text, msg, cap);
            if (ok) {
                c->messages[*n] = (sipp_message){"tool", text};
                c->chat[*n] = (sipp_chat_message){.role = "tool", .content = text,
                                                  .tool_call_id = json_string_value(id)};
                (*n)++;
            }
        } else {
            snprintf(param, pcap, "messages");
            ok = sipp__gw_bad(msg, cap, "%s: content blocks of type '%.40s' are not supported "
                              "in a%s message", at, t, assistant ? "n assistant" : " user");
        }
        if (!ok) break;
    }
    const char *text = "";
    if (ok && n_text) {
        char what[48];
        snprintf(what, sizeof what, "messages[%zu].content", i);
        ok = blocks_text(c, texts, what, &text, msg, cap);
    }
    json_decref(texts);
    if (!ok) return false;
    if (assistant || n_text) {
        c->messages[*n] = (sipp_message){role, text};
        c->chat[*n] = (sipp_chat_message){.role = role, .content = text, .tool_calls = calls,
                                          .n_tool_calls = nc};
        (*n)++;
    }
    snprintf(param, pcap, "messages");
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
    /* one entry per message, one more per tool_result block, and the system message */
    size_t slots = json_array_size(v) + 1, i;
    json_t *m;
    json_array_foreach(v, i, m) {
        json_t *content = json_object_get(m, "content");
        if (json_is_array(content)) slots += json_array_size(content);
    }
    c->messages = calloc(slots, sizeof *c->messages);
    c->chat = calloc(slots, sizeof *c->chat);
    if (!c->messages || !c->chat || !sipp__gw_call_own(c, c->chat)) {
        c->chat = NULL;
        return sipp__gw_bad(msg, cap, "out of memory");
    }
    size_t n = 0;
    if (has_system) {
        snprintf(param, pcap, "system");
        c->messages[n].role = "system";
        if (!content_text(root, "system", "field 'system'", &c->messages[n].content, msg, cap))
            return false;
        c->chat[n] = (sipp_chat_message){.role = "system", .content = c->messages[n].content};
        n++;
        snprintf(param, pcap, "messages");
    }
    json_array_foreach(v, i, m) {
        if (!json_is_object(m)) return sipp__gw_bad(msg, cap, "messages[%zu] must be an object", i);
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role) || (strcmp(json_string_value(role), "user") != 0 &&
                                      strcmp(json_string_value(role), "assistant") != 0))
            return sipp__gw_bad(msg, cap, "messages[%zu].role must be user or assistant", i);
        char what[48];
        snprintf(what, sizeof what, "messages[%zu].content", i);
        json_t *content = json_object_get(m, "content");
        if (json_is_array(content) && has_tool_blocks(content)) {
            if (!decode_tool_blocks(c, i, json_string_value(role), content, &n, msg, cap, param,
                                    pcap))
                return false;
        } else {
            c->messages[n].role = json_string_value(role);
            if (!content_with_images(c, m, i, n, what, &c->messages[n].content, msg, cap))
                return false;
            c->chat[n] = (sipp_chat_message){.role = c->messages[n].role,
                                              .content = c->messages[n].content};
            n++;
        }
        const char *k;
        json_t *x;
        json_object_foreach(m, k, x) {
            if (strcmp(k, "role") != 0 && strcmp(k, "content") != 0)
                sipp__gw_invalid(c, "messages", "unknown field 'messages[%zu].%.40s'", i, k);
        }
    }
    c->n_messages = n;
    if (n == 0) return sipp__gw_bad(msg, cap, "field 'messages' has no message");
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
    int r;
    json_object_foreach(root, k, v) {
        bool null = json_is_null(v);
        if (strcmp(k, "messages") == 0 || strcmp(k, "system") == 0) {
            continue; /* decoded above */
        } else if (strcmp(k, "model") == 0) {
            if (!json_is_string(v)) return sipp__gw_bad(msg, cap, "field 'model' must be a string");
            c->model = json_string_value(v);
        } else if (strcmp(k, "stop_sequences") == 0) {
            r = sipp__gw_decode_option(c, "stop", v, msg, cap, param, pcap, false);
            if (r < 0) return false;
            if (c->invalid[0] && strcmp(c->invalid_param, "stop") == 0)
                snprintf(c->invalid_param, sizeof c->invalid_param, "stop_sequences");
        } else if (strcmp(k, "metadata") == 0) {
            if (!null && !json_is_object(v))
                return sipp__gw_bad(msg, cap, "field 'metadata' must be an object");
        } else if (strcmp(k, "stream") == 0 && null) {
            continue;
        } else if ((r = sipp__gw_decode_anthropic_tools(c, k, v, msg, cap, param, pcap)) != 0) {
            if (r < 0) return false;
        } else if (strcmp(k, "stop") == 0) { /* not Anthropic's name: say which one is */
            sipp__gw_invalid(c, k, "unsupported parameter 'stop' (the Messages API calls it "
                             "'stop_sequences')");
        } else if (sipp__gw_is_local_only(k)) {
            sipp__gw_invalid(c, k,
                             "field '%s' is local-only: the gateway does not let clients steer "
                             "server KV state or local sampling",
                             k);
        } else {
            r = sipp__gw_decode_option(c, k, v, msg, cap, param, pcap, false);
            if (r < 0) return false;
            if (r == 0) sipp__gw_invalid(c, k, "unsupported parameter '%.40s'", k);
        }
    }
    sipp__gw_check_tools(c);
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
    return f == SIPP_FINISH_LENGTH       ? "max_tokens"
           : f == SIPP_FINISH_TOOL_CALLS ? "tool_use"
                                         : "end_turn";
}

static json_t *message(const gw_answer *a, json_t *content, const char *stop, uint64_t out_tok) {
    char id[96];
    snprintf(id, sizeof id, "msg_%s", a->id);
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s?, s:n, s:{s:I, s:I}}", "id", id, "type",
                     "message", "role", "assistant", "model", a->model, "content", content,
                     "stop_reason", stop, "stop_sequence", "usage", "input_tokens",
                     (json_int_t)a->in_tok, "output_tokens", (json_int_t)out_tok);
}

/* A tool_use block (issue 18): the call's arguments as the `input` object. */
static json_t *tool_use(const sipp_tool_call *t) {
    json_t *input = json_loads(t->arguments ? t->arguments : "{}", 0, NULL);
    if (!json_is_object(input)) {
        json_decref(input);
        input = json_object();
    }
    return json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", t->id ? t->id : "",
                     "name", t->name ? t->name : "", "input", input);
}

/* The text block (when there is text, or nothing else), then a tool_use block per call. A
 * thinking model's separated reasoning is not sent: Messages has thinking blocks only for
 * requests that enable thinking, which this profile refuses. */
static json_t *text(const gw_answer *a, const char *s, size_t len, sipp_finish_reason f) {
    json_t *content = len || !a->n_tool_calls
                          ? json_pack("[{s:s, s:s%}]", "type", "text", "text", s, len)
                          : json_array();
    if (!content) return NULL;
    for (size_t i = 0; i < a->n_tool_calls; i++)
        json_array_append_new(content, tool_use(&a->tool_calls[i]));
    return message(a, content, stop_reason(f), a->out_tok);
}

static void event(sipp__buf *out, const char *type, json_t *data) {
    sipp__gw_sse_frame(out, type, data);
}

/* message_start, before the first block. */
static void stream_open(sipp__buf *out, const gw_answer *a, gw_stream_state *st) {
    if (st->role_sent) return;
    st->role_sent = true;
    event(out, "message_start",
          json_pack("{s:s, s:o}", "type", "message_start", "message",
                    message(a, json_array(), NULL, 0)));
}

/* Closes the open content block, if any. */
static void block_close(sipp__buf *out, gw_stream_state *st) {
    if (!st->block_open) return;
    event(out, "content_block_stop",
          json_pack("{s:s, s:i}", "type", "content_block_stop", "index", st->n_blocks - 1));
    st->block_open = false;
}

/* Makes the open block a text block, or the tool_use block of call `tool` (`d` its first
 * delta, with id and name, when it opens): the blocks of a stream are numbered in order. */
static void block_for(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                      const sipp_delta *d) {
    stream_open(out, a, st);
    bool tool = d != NULL;
    if (st->block_open && st->block_tool == tool && (!tool || st->block_call == d->tool_index))
        return;
    block_close(out, st);
    json_t *block = tool ? json_pack("{s:s, s:s, s:s, s:{}}", "type", "tool_use", "id",
                                     d->tool_id ? d->tool_id : "", "name",
                                     d->tool_name ? d->tool_name : "", "input")
                         : json_pack("{s:s, s:s}", "type", "text", "text", "");
    event(out, "content_block_start",
          json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index", st->n_blocks,
                    "content_block", block));
    st->n_blocks++;
    st->block_open = true;
    st->block_tool = tool;
    st->block_call = tool ? d->tool_index : 0;
}

static void stream_text(sipp__buf *out, const gw_answer *a, gw_stream_state *st, const char *s,
                        size_t len, uint32_t n_tokens) {
    block_for(out, a, st, NULL);
    event(out, "content_block_delta",
          json_pack("{s:s, s:i, s:{s:s, s:s%}}", "type", "content_block_delta", "index",
                    st->n_blocks - 1, "delta", "type", "text_delta", "text", s, len));
    st->sequence += n_tokens;
}

/* Issue 18: a tool call streams as a tool_use block (id and name in content_block_start) whose
 * input arrives as input_json_delta pieces, as Anthropic streams them; reasoning is not sent
 * (see text()). */
static void stream_delta(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                         const sipp_delta *d) {
    if (d->kind != SIPP_DELTA_TOOL_CALL) return;
    block_for(out, a, st, d);
    st->tool_calls_sent = true;
    if (d->len)
        event(out, "content_block_delta",
              json_pack("{s:s, s:i, s:{s:s, s:s%}}", "type", "content_block_delta", "index",
                        st->n_blocks - 1, "delta", "type", "input_json_delta", "partial_json",
                        d->text, d->len));
}

static void stream_error(sipp__buf *out, gw_code code, const char *msg) {
    event(out, "error", error(code, NULL, msg));
}

static void stream_end(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                       sipp_finish_reason f) {
    if (st->n_blocks == 0) block_for(out, a, st, NULL); /* an empty answer: one empty text */
    block_close(out, st);
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
    .stream_delta = stream_delta,
    /* no embeddings: the Messages route is chat only (phases.c), so the embed hooks are NULL */
};
