/*
 * openai.c — the OpenAI dialect, also used for any OpenAI-compatible server (vLLM, llama-server,
 * Ollama, OpenRouter...): POST {base}/completions (query), {base}/chat/completions (chat), both
 * streamed as SSE `data:` chunks ending in `data: [DONE]`, and {base}/embeddings.
 *
 * Tools (issue 18): `tools`, `tool_choice`, `parallel_tool_calls` and tool messages out;
 * `delta.tool_calls` pieces (by index), `reasoning_content` and whole answers in.
 *
 * Only the wire format lives here; transfers, limits and run lifetimes are remote.c's.
 */
#include "providers_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Log-probabilities (issue 18): chat asks with `logprobs: true` and `top_logprobs: N`, the
 * legacy completions route with the integer `logprobs: N`. */
static void add_logprobs(json_t *body, bool completions, const sipp_text_params *p) {
    if (!p->logprobs) return;
    /* At least 1: llama-server reads 0 as "no probabilities at all" (n_probs); the adapter
     * keeps only the top_logprobs asked for (remote.c). */
    json_int_t n = p->top_logprobs ? p->top_logprobs : 1;
    if (completions) {
        json_object_set_new(body, "logprobs", json_integer(n));
        return;
    }
    json_object_set_new(body, "logprobs", json_true());
    json_object_set_new(body, "top_logprobs", json_integer(n));
}

/* Structured output (issue 18): `response_format` {"type": "json_schema", "json_schema":
 * {"name", "schema", "strict": true}}, or {"type": "json_object"} for a schema that says only
 * "an object" ({"type": "object"}, what the gateway makes of OpenAI's json_object). The
 * completions route has no response_format at OpenAI; it also gets llama-server's own
 * `json_schema` field, so an OpenAI-compatible server enforces it there (OpenAI itself refuses
 * the unknown field: an error, never an unenforced schema). */
static sipp_status add_response_format(json_t *body, bool completions, const sipp_text_params *p,
                                       sipp_error *err) {
    if (!p->json_schema) return SIPP_OK;
    json_t *schema;
    sipp_status st = sipp__remote_schema(p, &schema, err);
    if (st != SIPP_OK) return st;
    const char *type = json_string_value(json_object_get(schema, "type"));
    bool any_object = json_object_size(schema) == 1 && type && strcmp(type, "object") == 0;
    if (completions) json_object_set(body, "json_schema", schema);
    json_object_set_new(body, "response_format",
                        any_object ? json_pack("{s:s}", "type", "json_object")
                                   : json_pack("{s:s, s:{s:s, s:O, s:b}}", "type", "json_schema",
                                               "json_schema", "name", "output", "schema", schema,
                                               "strict", 1));
    json_decref(schema);
    return SIPP_OK;
}

/* Both text routes: the shared typed fields, usage in the stream, the seed, then the prompt or
 * the messages. */
static sipp_status build_text(const sipp__remote *rm, const char *prompt,
                              const sipp_message *messages, size_t n, const sipp_text_params *p,
                              json_t **body, sipp_error *err) {
    sipp_status st = sipp__remote_text_body(rm, p, body, err);
    if (st != SIPP_OK) return st;
    json_object_set_new(*body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    if (p->seed != 0xFFFFFFFFu) json_object_set_new(*body, "seed", json_integer(p->seed));
    if (p->n_media > 0 && !messages)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "query: the completions API takes no media; use chat (nothing was sent)");
    add_logprobs(*body, prompt != NULL, p);
    sipp_status sst = add_response_format(*body, prompt != NULL, p, err);
    if (sst != SIPP_OK) {
        json_decref(*body);
        *body = NULL;
        return sst;
    }
    st = sipp__remote_add_input(*body, prompt, messages, n, err);
    if (st != SIPP_OK) {
        *body = NULL; /* add_input has released it */
        return st;
    }
    if (p->n_media > 0)
        st = sipp__remote_add_media(json_object_get(*body, "messages"), messages, n, false, p,
                                    false, "OpenAI", err);
    return st;
}

static void read_usage(sipp__remote_run *rr, json_t *u) {
    if (!json_is_object(u)) return;
    rr->usage.input_tokens = (uint32_t)json_integer_value(json_object_get(u, "prompt_tokens"));
    rr->usage.output_tokens = (uint32_t)json_integer_value(json_object_get(u, "completion_tokens"));
    rr->usage.total_tokens = (uint32_t)json_integer_value(json_object_get(u, "total_tokens"));
}

/* Tools (issue 18): `tools` as functions, `tool_choice`, `parallel_tool_calls`; assistant
 * messages get their `tool_calls` (content null when empty), tool messages their
 * `tool_call_id` (remote.c). OpenAI's shape: a tool, a named tool_choice and a call wrapped in
 * {"type": "function", "function": {...}}, a call's arguments as JSON text. */
static const sipp__remote_tool_shape tool_shape = {.function_wrapped = true};

static sipp_status add_tools(const sipp_chat_message *cm, size_t n, const sipp_text_params *p,
                             json_t *body, sipp_error *err) {
    return sipp__remote_add_tools(cm, n, p, &tool_shape, body, err);
}

static sipp_finish_reason map_finish(const char *fr) {
    if (strcmp(fr, "length") == 0) return SIPP_FINISH_LENGTH;
    if (strcmp(fr, "tool_calls") == 0 || strcmp(fr, "function_call") == 0)
        return SIPP_FINISH_TOOL_CALLS;
    return SIPP_FINISH_STOP;
}

/* A chat choice's `delta` (a chunk) or `message` (a whole answer): reasoning (llama-server's
 * and DeepSeek's `reasoning_content`, vLLM's and OpenRouter's `reasoning`), content, then the
 * tool calls: {index, id, function: {name, arguments}}, id and name on a call's first piece. A
 * whole message's calls have no index: their position is. */
static bool read_message(sipp__remote_run *rr, json_t *d) {
    json_t *r = json_object_get(d, "reasoning_content");
    if (!json_is_string(r)) r = json_object_get(d, "reasoning");
    sipp__remote_push_reasoning(rr, json_string_value(r), json_string_length(r));
    json_t *text = json_object_get(d, "content");
    sipp__remote_push_text(rr, json_string_value(text), json_string_length(text), 1);
    json_t *calls = json_object_get(d, "tool_calls");
    if (calls && !json_is_array(calls))
        return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                        "the provider's tool_calls is not an array");
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        json_t *idx = json_object_get(c, "index"), *fn = json_object_get(c, "function");
        json_t *args = json_object_get(fn, "arguments");
        if (!json_is_object(fn) || (idx && !json_is_integer(idx)) ||
            (args && !json_is_string(args) && !json_is_object(args)))
            return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                            "the provider's tool call %zu is malformed", i);
        char *dumped = json_is_object(args) ? json_dumps(args, JSON_COMPACT) : NULL; /* Ollama */
        bool ok = sipp__remote_tool_piece(
            rr, idx ? (long)json_integer_value(idx) : (long)i,
            json_string_value(json_object_get(c, "id")),
            json_string_value(json_object_get(fn, "name")),
            dumped ? dumped : json_string_value(args),
            dumped ? strlen(dumped) : json_string_length(args));
        free(dumped);
        if (!ok) return false;
    }
    return true;
}

/* One choice of a chunk or of a whole answer. */
static bool read_choice(sipp__remote_run *rr, json_t *c0, const char *key) {
    sipp__remote_stage_logprobs(rr, json_object_get(c0, "logprobs"));
    bool ok = true;
    if (rr->op == SIPP__OP_CHAT) {
        ok = read_message(rr, json_object_get(c0, key));
    } else {
        json_t *text = json_object_get(c0, "text");
        sipp__remote_push_text(rr, json_string_value(text), json_string_length(text), 1);
    }
    const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
    if (fr) { /* some servers end without [DONE]; a finish reason is an end too */
        rr->reason = map_finish(fr);
        rr->done_seen = true;
    }
    return ok;
}

/* A whole answer (issue 18): {"choices": [{"message" | "text", "finish_reason"}], "usage"}. */
static bool on_whole(sipp__remote_run *rr, json_t *j) {
    read_usage(rr, json_object_get(j, "usage"));
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    if (!c0)
        return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                        "the provider's answer has no choices");
    bool ok = read_choice(rr, c0, "message");
    rr->done_seen = true;
    return ok;
}

/* One chunk: {"choices": [{"text" | "delta": {"content"}, "finish_reason"}], "usage"}. */
static bool on_event(sipp__remote_run *rr, const sipp__sse_event *ev) {
    if (strcmp(ev->data, "[DONE]") == 0) {
        rr->done_seen = true;
        return true;
    }
    json_t *j = sipp__remote_event_json(rr, ev);
    if (!j) return false;
    json_t *e = json_object_get(j, "error");
    if (e) { /* an error after the headers went out */
        const char *m = json_string_value(json_object_get(e, "message"));
        const char *code = json_string_value(json_object_get(e, "code"));
        if (!code) code = json_string_value(json_object_get(e, "type"));
        bool ok = sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, code,
                                           "the provider failed mid-stream: %s",
                                           m ? m : "(no message)");
        json_decref(j);
        return ok;
    }
    read_usage(rr, json_object_get(j, "usage"));
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    bool ok = !c0 || read_choice(rr, c0, "delta");
    json_decref(j);
    return ok;
}

/* {"error": {"message", "type", "code"}}, {"error": "text"} (Ollama), {"message"} (vLLM). */
static sipp_status read_error(long http_status, json_t *j, const char **message, const char **code) {
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (!msg) msg = json_string_value(e);
    if (!msg) msg = json_string_value(json_object_get(j, "message"));
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *type = json_string_value(json_object_get(e, "type"));
    *message = msg;
    *code = c ? c : type;
    return sipp__provider_classify(http_status, c, type);
}

/* {"data": [{"embedding": [...]}], "usage": {...}} */
static sipp_status read_embedding(sipp__remote_run *rr, json_t *j, float **vec, uint32_t *n,
                                  sipp_error *err) {
    json_t *v = json_object_get(json_array_get(json_object_get(j, "data"), 0), "embedding");
    size_t len = json_array_size(v);
    float *out = len ? malloc(len * sizeof *out) : NULL;
    if (!out)
        return sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the provider's embeddings answer has no vector");
    for (size_t i = 0; i < len; i++) out[i] = (float)json_number_value(json_array_get(v, i));
    read_usage(rr, json_object_get(j, "usage"));
    *vec = out;
    *n = (uint32_t)len;
    return SIPP_OK;
}

static const char *const own_fields[] = {"stream_options", "seed", "logprobs", "top_logprobs",
                                         "response_format", "json_schema", "tools",
                                         "tool_choice", "parallel_tool_calls", NULL};

const sipp__dialect sipp__dialect_openai = {
    .name = "provider",
    .end_marker = "[DONE] or a finish reason",
    .query_path = "/completions",
    .chat_path = "/chat/completions",
    .build_text = build_text,
    .embed_path = "/embeddings",
    .on_event = on_event,
    .read_error = read_error,
    .read_embedding = read_embedding,
    .own_fields = own_fields,
    .add_tools = add_tools,
    .on_whole = on_whole,
};
