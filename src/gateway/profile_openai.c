/*
 * profile_openai.c — the OpenAI profile (/v1/completions, /v1/chat/completions, /v1/embeddings,
 * /v1/models): its request decoder and every answer it sends, together, behind
 * sipp__gw_openai_codec.
 *
 * Answers follow OpenAI's shapes: `chat.completion` / `text_completion` objects with one
 * choice, `chat.completion.chunk` / `text_completion` chunks ending with `data: [DONE]`, an
 * embeddings `list`, and {"error": {"message", "type", "param", "code"}} where `code` is the
 * gateway's own code and `type` OpenAI's (codes.c). Ids are the request id with OpenAI's
 * prefix (`chatcmpl-`, `cmpl-`). A stream's finish reason is never `cancelled` (OpenAI has no
 * such value: `stop`). Parameters OpenAI has and the gateway does not honour are refused in the
 * validate phase, never ignored silently.
 */
#define _POSIX_C_SOURCE 200809L
#include "profiles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *logprobs_value(const gw_answer *a, size_t *offset);

/* ---- decoding ---------------------------------------------------------------------------------- */

static bool decode(gw_op op, json_t *root, gw_call *c, char *msg, size_t cap, char *param,
                          size_t pcap) {
    const char *k;
    json_t *v;
    int r;
    json_object_foreach(root, k, v) {
        bool null = json_is_null(v);
        if (strcmp(k, "model") == 0) {
            if (!json_is_string(v)) return sipp__gw_bad(msg, cap, "field 'model' must be a string");
            c->model = json_string_value(v);
        } else if (op == GW_OP_CHAT && strcmp(k, "messages") == 0) {
            if (!sipp__gw_decode_messages(c, v, true, msg, cap, param, pcap)) return false;
        } else if (op == GW_OP_QUERY && strcmp(k, "prompt") == 0) {
            if (json_is_array(v) && json_array_size(v) == 1 &&
                json_is_string(json_array_get(v, 0)))
                v = json_array_get(v, 0);
            if (!json_is_string(v)) {
                snprintf(param, pcap, "prompt");
                return sipp__gw_bad(msg, cap,
                                    "field 'prompt' must be a string (or an array of one)");
            }
            c->prompt = json_string_value(v);
        } else if (op == GW_OP_EMBED && strcmp(k, "input") == 0) {
            snprintf(param, pcap, "input");
            size_t n = json_is_array(v) ? json_array_size(v) : 1;
            if (json_is_array(v) && (n == 0 || n > 2048))
                return sipp__gw_bad(msg, cap, "field 'input' must hold 1 to 2048 strings");
            c->inputs = calloc(n, sizeof *c->inputs);
            if (!c->inputs) return sipp__gw_bad(msg, cap, "out of memory");
            if (json_is_string(v)) {
                c->inputs[0] = json_string_value(v);
            } else if (json_is_array(v)) {
                c->input_is_array = true;
                for (size_t i = 0; i < n; i++) {
                    json_t *s = json_array_get(v, i);
                    if (!json_is_string(s))
                        return sipp__gw_bad(msg, cap,
                                            "field 'input' must be a string or an array of "
                                            "strings");
                    c->inputs[i] = json_string_value(s);
                }
            } else {
                return sipp__gw_bad(msg, cap,
                                    "field 'input' must be a string or an array of strings");
            }
            c->n_inputs = n;
            param[0] = '\0';
        } else if (op == GW_OP_EMBED && strcmp(k, "encoding_format") == 0) {
            if (!sipp__gw_decode_encoding(c, v, msg, cap)) return false;
        } else if (op != GW_OP_EMBED && strcmp(k, "stream_options") == 0) {
            if (null) continue;
            if (!json_is_object(v))
                return sipp__gw_bad(msg, cap, "field 'stream_options' must be an object");
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2) {
                if (strcmp(k2, "include_usage") == 0 && json_is_boolean(v2))
                    c->include_usage = json_is_true(v2);
                else
                    sipp__gw_invalid(c, "stream_options",
                                     "unsupported field 'stream_options.%.40s'", k2);
            }
        } else if (strcmp(k, "user") == 0) {
            if (!null && !json_is_string(v))
                return sipp__gw_bad(msg, cap, "field 'user' must be a string");
        } else if (op != GW_OP_EMBED && strcmp(k, "n") == 0) {
            if (!null && !(json_is_integer(v) && json_integer_value(v) == 1))
                sipp__gw_invalid(c, k, "only n = 1 is supported");
        } else if (op != GW_OP_EMBED &&
                   (strcmp(k, "presence_penalty") == 0 || strcmp(k, "frequency_penalty") == 0)) {
            if (!null && !(json_is_number(v) && json_number_value(v) == 0))
                sipp__gw_invalid(c, k, "'%s' is not supported (only 0)", k);
        } else if (op != GW_OP_EMBED && strcmp(k, "echo") == 0) {
            if (!null && !json_is_false(v)) sipp__gw_invalid(c, k, "'%s' is not supported", k);
        } else if ((r = sipp__gw_decode_logprobs(c, op, k, v, true, msg, cap, param, pcap)) != 0 ||
                   (r = sipp__gw_decode_schema(c, op, k, v, true, msg, cap, param, pcap)) != 0 ||
                   (r = sipp__gw_decode_tools(c, op, k, v, true, msg, cap, param, pcap)) != 0 ||
                   (r = sipp__gw_decode_reasoning(c, op, k, v, true, msg, cap, param, pcap)) != 0 ||
                   (r = sipp__gw_decode_budget(c, op, k, v, true, msg, cap, param, pcap)) != 0) {
            if (r < 0) return false;
        } else if (sipp__gw_is_local_only(k)) {
            sipp__gw_invalid(c, k,
                             "field '%s' is local-only: the gateway does not let clients steer "
                             "server KV state or local sampling",
                             k);
        } else {
            r = op == GW_OP_EMBED ? 0
                                  : sipp__gw_decode_option(c, k, v, msg, cap, param, pcap, true);
            if (r < 0) return false;
            if (r == 0) sipp__gw_invalid(c, k, "unsupported parameter '%.40s'", k);
        }
    }
    sipp__gw_check_logprobs(c);
    sipp__gw_check_tools(c);
    return sipp__gw_decode_required(op, c, msg, cap);
}

/* ---- encoding ---------------------------------------------------------------------------------- */

static json_t *usage(const gw_answer *a) {
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)a->in_tok,
                     "completion_tokens", (json_int_t)a->out_tok, "total_tokens",
                     (json_int_t)(a->in_tok + a->out_tok));
}

static json_t *error(gw_code code, const char *param, const char *msg) {
    return json_pack("{s:{s:s, s:s, s:o, s:s}}", "error", "message", msg, "type",
                     sipp__gw_code_openai_type(code), "param",
                     param && *param ? json_string(param) : json_null(), "code",
                     sipp__gw_code_name(code));
}

static json_t *text(const gw_answer *a, const char *s, size_t len, sipp_finish_reason f) {
    char id[96];
    size_t offset = 0;
    if (a->op == GW_OP_CHAT) {
        snprintf(id, sizeof id, "chatcmpl-%s", a->id);
        /* issue 18: a turn of calls only has content null (OpenAI's shape); the calls and the
         * separated reasoning are added when there are any */
        json_t *m = json_pack("{s:s, s:o}", "role", "assistant", "content",
                              len == 0 && a->n_tool_calls ? json_null() : json_stringn(s, len));
        if (m && a->reasoning && a->reasoning[0])
            json_object_set_new(m, "reasoning_content", json_string(a->reasoning));
        if (m && a->n_tool_calls)
            json_object_set_new(m, "tool_calls",
                                sipp__gw_tool_calls_json(a->tool_calls, a->n_tool_calls, true));
        return json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:o, s:s}], s:o}", "id", id,
                         "object", "chat.completion", "created", (json_int_t)a->created, "model",
                         a->model, "choices", "index", 0, "message", m, "logprobs",
                         logprobs_value(a, &offset), "finish_reason", sipp__gw_finish_name(f),
                         "usage", usage(a));
    }
    snprintf(id, sizeof id, "cmpl-%s", a->id);
    return json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:s%, s:o, s:s}], s:o}", "id", id, "object",
                     "text_completion", "created", (json_int_t)a->created, "model", a->model,
                     "choices", "index", 0, "text", s, len, "logprobs",
                     logprobs_value(a, &offset), "finish_reason", sipp__gw_finish_name(f),
                     "usage", usage(a));
}

static json_t *chunk(const gw_answer *a, json_t *choice) {
    char id[96];
    snprintf(id, sizeof id, a->op == GW_OP_CHAT ? "chatcmpl-%s" : "cmpl-%s", a->id);
    return json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", id, "object",
                     a->op == GW_OP_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)a->created, "model", a->model, "choices",
                     choice ? json_pack("[o]", choice) : json_array());
}

static void stream_text(sipp__buf *out, const gw_answer *a, gw_stream_state *st, const char *s,
                        size_t len, uint32_t n_tokens) {
    if (a->op == GW_OP_CHAT) {
        json_t *delta = st->role_sent ? json_pack("{s:s%}", "content", s, len)
                                      : json_pack("{s:s, s:s%}", "role", "assistant", "content",
                                                  s, len);
        st->role_sent = true;
        sipp__gw_sse_frame(out, NULL, chunk(a, json_pack("{s:i, s:o, s:o, s:n}", "index", 0,
                                                         "delta", delta, "logprobs",
                                                         logprobs_value(a, &st->text_offset),
                                                         "finish_reason")));
    } else {
        sipp__gw_sse_frame(out, NULL,
                           chunk(a, json_pack("{s:i, s:s%, s:o, s:n}", "index", 0, "text", s, len,
                                              "logprobs", logprobs_value(a, &st->text_offset),
                                              "finish_reason")));
    }
    st->sequence += n_tokens;
}

static void stream_error(sipp__buf *out, gw_code code, const char *msg) {
    sipp__gw_sse_frame(out, NULL, error(code, NULL, msg));
}

/* Issue 18: `delta.reasoning_content` (llama-server's and vLLM's field) and
 * `delta.tool_calls` [{index, id, type, function: {name, arguments}}], id, type and name in the
 * first chunk of a call and argument pieces after, as OpenAI streams them. */
static void stream_delta(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                         const sipp_delta *d) {
    json_t *delta = json_object();
    if (!delta) return;
    if (!st->role_sent) json_object_set_new(delta, "role", json_string("assistant"));
    st->role_sent = true;
    if (d->kind == SIPP_DELTA_REASONING) {
        json_object_set_new(delta, "reasoning_content", json_stringn(d->text, d->len));
    } else {
        json_t *fn = json_object();
        json_t *call = json_pack("{s:i}", "index", (int)d->tool_index);
        if (d->tool_id) {
            json_object_set_new(call, "id", json_string(d->tool_id));
            json_object_set_new(call, "type", json_string("function"));
            json_object_set_new(fn, "name", json_string(d->tool_name ? d->tool_name : ""));
        }
        json_object_set_new(fn, "arguments", json_stringn(d->text, d->len));
        json_object_set_new(call, "function", fn);
        json_object_set_new(delta, "tool_calls", json_pack("[o]", call));
        st->tool_calls_sent = true;
    }
    sipp__gw_sse_frame(out, NULL, chunk(a, json_pack("{s:i, s:o, s:n, s:n}", "index", 0, "delta",
                                                     delta, "logprobs", "finish_reason")));
}

static void stream_end(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                       sipp_finish_reason f) {
    const char *fin = f == SIPP_FINISH_CANCELLED ? "stop" : sipp__gw_finish_name(f);
    json_t *choice;
    if (a->op == GW_OP_CHAT)
        choice =
            json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "delta",
                      st->role_sent ? json_object()
                                    : json_pack("{s:s, s:s}", "role", "assistant", "content", ""),
                      "logprobs", "finish_reason", fin);
    else
        choice = json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", "", "logprobs",
                           "finish_reason", fin);
    sipp__gw_sse_frame(out, NULL, chunk(a, choice));
    if (a->include_usage) {
        json_t *c = chunk(a, NULL);
        json_object_set_new(c, "usage", usage(a));
        sipp__gw_sse_frame(out, NULL, c);
    }
    sipp__buf_append(out, "data: [DONE]\n\n", 14);
}

/* {"object": "list", "data": [{"object": "embedding", "index", "embedding"}, ...], "model",
 * "usage"}: the head opens the list, the tail closes it and adds model and usage. Embeddings
 * have no output tokens: usage is prompt_tokens and total_tokens. */
static char *embed_head(const gw_answer *a) {
    (void)a;
    return strdup("{\"object\":\"list\",\"data\":[");
}

static char *embed_tail(const gw_answer *a) {
    char *rest = sipp__gw_json_text(json_pack("{s:s, s:{s:I, s:I}}", "model", a->model, "usage",
                                              "prompt_tokens", (json_int_t)a->in_tok,
                                              "total_tokens", (json_int_t)a->in_tok));
    if (!rest) return NULL;
    size_t n = strlen(rest) + 3;
    char *s = malloc(n);
    if (s) snprintf(s, n, "],%s", rest + 1); /* the rest of the object without its `{` */
    free(rest);
    return s;
}

static size_t embed_open(char *p, size_t cap, size_t index) {
    int n = snprintf(p, cap, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":",
                     index ? "," : "", index);
    return n < 0 ? 0 : (size_t)n;
}

const gw_codec sipp__gw_openai_codec = {
    .decode = decode,
    .error = error,
    .text = text,
    .stream_text = stream_text,
    .stream_error = stream_error,
    .stream_end = stream_end,
    .stream_delta = stream_delta,
    .embed_head = embed_head,
    .embed_tail = embed_tail,
    .embed_open = embed_open,
    .embed_close = "}",
};

/* ---- log-probabilities (issue 18) ---------------------------------------------------------------- */

/* A choice's `logprobs`: null unless asked for; chat {"content": [...], "refusal": null},
 * completions the legacy object (profile_outputs.c). */
static json_t *logprobs_value(const gw_answer *a, size_t *offset) {
    if (!a->logprobs_on) return json_null();
    if (a->op == GW_OP_QUERY) return sipp__gw_logprobs_legacy(a->logprobs, a->n_logprobs, offset);
    return json_pack("{s:o, s:n}", "content", sipp__gw_logprobs_content(a->logprobs, a->n_logprobs),
                     "refusal");
}

/* ---- /v1/models -------------------------------------------------------------------------------- */

json_t *sipp__gw_openai_model(const char *name, const char *type) {
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", name, "object", "model", "created",
                     (json_int_t)0, "owned_by", "sipp", "type", type);
}

json_t *sipp__gw_openai_model_list(json_t *data) {
    return json_pack("{s:s, s:o}", "object", "list", "data", data);
}
