/*
 * openai.c — the OpenAI dialect, also used for any OpenAI-compatible server (vLLM, llama-server,
 * Ollama, OpenRouter...): POST {base}/completions (query), {base}/chat/completions (chat), both
 * streamed as SSE `data:` chunks ending in `data: [DONE]`, and {base}/embeddings.
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
    if (c0) {
        json_t *text = rr->op == SIPP__OP_CHAT
                           ? json_object_get(json_object_get(c0, "delta"), "content")
                           : json_object_get(c0, "text");
        sipp__remote_stage_logprobs(rr, json_object_get(c0, "logprobs"));
        sipp__remote_push_text(rr, json_string_value(text), json_string_length(text), 1);
        const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
        if (fr) { /* some servers end without [DONE]; a finish reason is an end too */
            rr->reason = strcmp(fr, "length") == 0 ? SIPP_FINISH_LENGTH : SIPP_FINISH_STOP;
            rr->done_seen = true;
        }
    }
    json_decref(j);
    return true;
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
                                         "response_format", "json_schema", NULL};

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
};
