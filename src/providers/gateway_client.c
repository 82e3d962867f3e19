/*
 * gateway_client.c — the dialect of a Sipp gateway endpoint: the Sipp profile of
 * docs/gateway-protocol.md. POST {base}/v1/query, /v1/chat (always streamed:
 * `token` {text, sequence}, `usage`, `done` {finish_reason}, `error` {error: {code, message}},
 * `: ping` heartbeats) and /v1/embed (a finite JSON answer).
 *
 * Tools (issue 18): `tools` ({name, description, parameters}), `tool_choice`,
 * `parallel_tool_calls`, `reasoning_mode`, assistant `tool_calls` ({id, name, arguments object})
 * and `tool_call_id` out; the `tool_call` {index, id?, name?, arguments} and `reasoning` {text}
 * events in, accumulated by remote.c into the same response fields and deltas as a local chat. Errors outside a stream are the
 * envelope {"error": {"code", "message"}}; each code maps to one status (sipp.h,
 * sipp_client_add_gateway) and is kept in sipp_response.error_code.
 */
#include "providers_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The protocol's error codes and the status each becomes. */
static const struct { const char *code; sipp_status status; } code_map[] = {
    {"blocked", SIPP_AUTHORIZATION},
    {"rate_limited", SIPP_RATE_LIMITED},
    {"authentication", SIPP_AUTHENTICATION},
    {"invalid_json", SIPP_INVALID_ARGUMENT},
    {"authorization", SIPP_AUTHORIZATION},
    {"resolution", SIPP_MODEL_NOT_FOUND},
    {"admission", SIPP_BUSY},
    {"invalidrequest", SIPP_INVALID_ARGUMENT},
    {"execution", SIPP_UPSTREAM_ERROR},
    {"cancelled", SIPP_CANCELLED},
    {"payload_too_large", SIPP_INVALID_ARGUMENT},
    {"method_not_allowed", SIPP_UPSTREAM_ERROR},
    {"not_found", SIPP_UPSTREAM_ERROR},
};

static sipp_status status_of_code(const char *code, long http_status) {
    for (size_t i = 0; code && i < sizeof code_map / sizeof code_map[0]; i++)
        if (strcmp(code, code_map[i].code) == 0) return code_map[i].status;
    return sipp__provider_classify(http_status ? http_status : 500, NULL, NULL);
}

static sipp_status build_text(const sipp__remote *rm, const char *prompt,
                              const sipp_message *messages, size_t n, const sipp_text_params *p,
                              json_t **body, sipp_error *err) {
    if (p->seed != 0xFFFFFFFFu)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "seed is not part of the gateway protocol; a gateway endpoint cannot honour it");
    if (p->n_media > 0 && !messages)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "query: the gateway's /v1/query takes no media; use chat (nothing was sent)");
    sipp_status st = sipp__remote_text_body(rm, p, body, err);
    if (st == SIPP_OK) {
        st = sipp__remote_add_input(*body, prompt, messages, n, err);
        if (st != SIPP_OK) *body = NULL; /* add_input has released it */
    }
    /* the Sipp protocol's content parts have OpenAI's shapes (docs/gateway-protocol.md) */
    if (st == SIPP_OK && p->n_media > 0)
        st = sipp__remote_add_media(json_object_get(*body, "messages"), messages, n, false, p,
                                    false, "gateway", err);
    json_t *schema = NULL; /* issue 18: structured output, the protocol's json_schema object */
    if (st == SIPP_OK && p->json_schema && (st = sipp__remote_schema(p, &schema, err)) == SIPP_OK)
        json_object_set_new(*body, "json_schema", schema);
    /* issue 18: the gateway separates a thinking model's reasoning as asked; naming the mode
     * makes it stream `reasoning` events (separated here by the same mode again) */
    if (st == SIPP_OK && messages)
        json_object_set_new(*body, "reasoning_mode",
                            json_string(p->reasoning_mode == SIPP_REASONING_INLINE ? "inline"
                                        : p->reasoning_mode == SIPP_REASONING_DROP ? "drop"
                                                                                   : "separate"));
    if (st == SIPP_OK && messages && p->reasoning_budget != -1)
        json_object_set_new(*body, "reasoning_budget", json_integer(p->reasoning_budget));
    if (st == SIPP_OK && p->logprobs) { /* issue 18: the gateway protocol's fields */
        json_object_set_new(*body, "logprobs", json_true());
        if (p->top_logprobs)
            json_object_set_new(*body, "top_logprobs", json_integer(p->top_logprobs));
    }
    return st;
}

/* Tools (issue 18), the Sipp profile's shapes (remote.c builds them): `tools` [{name,
 * description?, parameters}], `tool_choice` "auto" | "none" | "required" | {"name"},
 * `parallel_tool_calls`; assistant messages get `tool_calls` [{id, name, arguments: object}]
 * (content null when empty), tool messages their `tool_call_id`. */
static const sipp__remote_tool_shape tool_shape = {.function_wrapped = false};

static sipp_status add_tools(const sipp_chat_message *cm, size_t n, const sipp_text_params *p,
                             json_t *body, sipp_error *err) {
    return sipp__remote_add_tools(cm, n, p, &tool_shape, body, err);
}

static void read_usage(sipp__remote_run *rr, json_t *u) {
    if (!json_is_object(u)) return;
    rr->usage.input_tokens = (uint32_t)json_integer_value(json_object_get(u, "input_tokens"));
    rr->usage.output_tokens = (uint32_t)json_integer_value(json_object_get(u, "output_tokens"));
    rr->usage.total_tokens = (uint32_t)json_integer_value(json_object_get(u, "total_tokens"));
}

static bool on_event(sipp__remote_run *rr, const sipp__sse_event *ev) {
    json_t *j = sipp__remote_event_json(rr, ev);
    if (!j) return false;
    bool ok = true;
    if (rr->done_seen) {
        ok = sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                      "the gateway sent an event after done");
    } else if (strcmp(ev->event, "token") == 0) {
        json_t *t = json_object_get(j, "text");
        if (!json_is_string(t))
            ok = sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                          "the gateway sent a token event without text");
        else {
            sipp__remote_stage_logprobs(rr, json_object_get(j, "logprobs"));
            sipp__remote_push_text(rr, json_string_value(t), json_string_length(t), 1);
        }
    } else if (strcmp(ev->event, "reasoning") == 0) { /* issue 18 */
        json_t *t = json_object_get(j, "text");
        if (!json_is_string(t))
            ok = sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                          "the gateway sent a reasoning event without text");
        else
            sipp__remote_push_reasoning(rr, json_string_value(t), json_string_length(t));
    } else if (strcmp(ev->event, "tool_call") == 0) { /* issue 18: id and name first */
        json_t *idx = json_object_get(j, "index"), *args = json_object_get(j, "arguments");
        if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
            (args && !json_is_string(args)))
            ok = sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                          "the gateway sent a malformed tool_call event");
        else
            ok = sipp__remote_tool_piece(rr, (long)json_integer_value(idx),
                                         json_string_value(json_object_get(j, "id")),
                                         json_string_value(json_object_get(j, "name")),
                                         json_string_value(args), json_string_length(args));
    } else if (strcmp(ev->event, "usage") == 0) {
        read_usage(rr, j);
    } else if (strcmp(ev->event, "done") == 0) {
        const char *fr = json_string_value(json_object_get(j, "finish_reason"));
        rr->reason = !fr                               ? SIPP_FINISH_STOP
                     : strcmp(fr, "length") == 0      ? SIPP_FINISH_LENGTH
                     : strcmp(fr, "cancelled") == 0   ? SIPP_FINISH_CANCELLED
                     : strcmp(fr, "tool_calls") == 0  ? SIPP_FINISH_TOOL_CALLS
                                                      : SIPP_FINISH_STOP;
        rr->done_seen = true;
    } else if (strcmp(ev->event, "error") == 0) {
        json_t *e = json_object_get(j, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *m = json_string_value(json_object_get(e, "message"));
        ok = sipp__remote_stream_fail(rr, status_of_code(code, 500), code,
                                      "the gateway failed mid-stream (%s): %s",
                                      code ? code : "no code", m ? m : "(no message)");
    } /* unknown events are skipped: the protocol may grow */
    json_decref(j);
    return ok;
}

static sipp_status read_error(long http_status, json_t *j, const char **message, const char **code) {
    json_t *e = json_object_get(j, "error");
    *message = json_string_value(json_object_get(e, "message"));
    *code = json_string_value(json_object_get(e, "code"));
    return status_of_code(*code, http_status);
}

/* {"id", "model", "embedding": [number], "usage"?} */
static sipp_status read_embedding(sipp__remote_run *rr, json_t *j, float **vec, uint32_t *n,
                                  sipp_error *err) {
    json_t *v = json_object_get(j, "embedding");
    size_t len = json_array_size(v);
    float *out = len ? malloc(len * sizeof *out) : NULL;
    if (!out) return sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the gateway's embed answer has no vector");
    for (size_t i = 0; i < len; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_number(x)) {
            free(out);
            return sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the gateway's embedding has a non-number");
        }
        out[i] = (float)json_number_value(x);
    }
    read_usage(rr, json_object_get(j, "usage"));
    *vec = out;
    *n = (uint32_t)len;
    return SIPP_OK;
}

/* issue 18: the tool fields are typed (extra_json keeps whatever else it set before) */
static const char *const own_fields[] = {"tools", "tool_choice", "parallel_tool_calls",
                                         "reasoning_mode", "reasoning_budget", NULL};

const sipp__dialect sipp__dialect_gateway = {
    .name = "gateway",
    .end_marker = "a done event",
    .query_path = "/v1/query",
    .chat_path = "/v1/chat",
    .build_text = build_text,
    .embed_path = "/v1/embed",
    .on_event = on_event,
    .read_error = read_error,
    .read_embedding = read_embedding,
    .own_fields = own_fields,
    .add_tools = add_tools,
};
