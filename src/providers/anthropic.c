/*
 * anthropic.c — the Anthropic dialect: POST {base}/messages with `x-api-key` and
 * `anthropic-version` headers (set by remote.c), streamed as named SSE events:
 *   message_start {message: {usage: {input_tokens}}}, content_block_delta {delta: {text}},
 *   message_delta {delta: {stop_reason}, usage: {output_tokens}}, message_stop, ping, error.
 * System messages become the top-level `system` string. There is no raw completion and no
 * embeddings API: query and embed fail up front (remote.c sees the NULL builders).
 * Tools (issue 18): content_block_start opens a text, thinking or tool_use block; their
 * deltas are text_delta, thinking_delta (reasoning) and input_json_delta (a call's arguments).
 */
#include "providers_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Structured output (issue 18): Anthropic has no response format, so the schema becomes the
 * input schema of one tool the model is forced to call; its streamed input (input_json_delta)
 * is the answer's text (on_event), the same result shape as every other endpoint kind. Tool
 * inputs are objects: a schema whose root is not `type: object` cannot be enforced there. */
#define SCHEMA_TOOL "json_output"

static sipp_status add_schema_tool(json_t *b, const sipp_text_params *p, sipp_error *err) {
    json_t *schema;
    sipp_status st = sipp__remote_schema(p, &schema, err);
    if (st != SIPP_OK) return st;
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (!type || strcmp(type, "object") != 0) {
        json_decref(schema);
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "json_schema: Anthropic enforces a schema as a tool's input, which must "
                          "be an object: the schema's root needs \"type\": \"object\"");
    }
    json_object_set_new(b, "tools", json_pack("[{s:s, s:s, s:o}]", "name", SCHEMA_TOOL,
                                              "description",
                                              "Give the answer as this tool's input.",
                                              "input_schema", schema));
    json_object_set_new(b, "tool_choice", json_pack("{s:s, s:s}", "type", "tool", "name",
                                                    SCHEMA_TOOL));
    return SIPP_OK;
}

/* Chat only (query_path is NULL): `prompt` is never set. */
static sipp_status build_chat(const sipp__remote *rm, const char *prompt,
                              const sipp_message *messages, size_t n_messages,
                              const sipp_text_params *p, json_t **body, sipp_error *err) {
    (void)prompt;
    if (p->logprobs) /* issue 18: never ignored silently */
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "logprobs: Anthropic's messages API returns no log-probabilities");
    json_t *b = json_pack("{s:s,s:I,s:f,s:b}", "model", rm->model, "max_tokens",
                          (json_int_t)p->max_tokens, "temperature", (double)p->temperature,
                          "stream", 1);
    json_t *msgs = NULL;
    sipp__buf system;
    sipp__buf_init(&system, 64u << 20); /* the request body is capped by the peer anyway */
    sipp_status st = b ? sipp__remote_messages(messages, n_messages, true, &msgs, err)
                       : sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (st == SIPP_OK && p->n_media > 0)
        st = sipp__remote_add_media(msgs, messages, n_messages, true, p, true, "Anthropic", err);
    for (size_t i = 0; st == SIPP_OK && i < n_messages; i++) {
        if (strcmp(messages[i].role, "system") != 0) continue;
        if ((system.len && sipp__buf_append(&system, "\n\n", 2) != SIPP_OK) ||
            sipp__buf_append(&system, messages[i].content, strlen(messages[i].content)) != SIPP_OK)
            st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "chat: the system prompt exceeds 64 MiB");
    }
    if (st == SIPP_OK && json_array_size(msgs) == 0)
        st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                        "chat: Anthropic needs a user message besides the system prompt");
    if (st == SIPP_OK && system.len) {
        json_t *s = json_stringn(system.data, system.len);
        if (!s) st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "chat: the system prompt is not valid UTF-8");
        else json_object_set_new(b, "system", s);
    }
    sipp__buf_free(&system);
    /* Newer models refuse temperature and top_p together: send top_p only when asked for. */
    if (st == SIPP_OK && p->top_p != sipp__text_params_defaults().top_p)
        json_object_set_new(b, "top_p", json_real(p->top_p));
    if (st == SIPP_OK && p->n_stop) {
        json_t *stops = sipp__remote_stop_array(p);
        if (!stops) st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "a stop string is not valid UTF-8");
        else json_object_set_new(b, "stop_sequences", stops);
    }
    if (st == SIPP_OK && p->json_schema) st = add_schema_tool(b, p, err);
    if (st != SIPP_OK) {
        json_decref(b);
        json_decref(msgs);
        return st;
    }
    json_object_set_new(b, "messages", msgs);
    *body = b;
    return SIPP_OK;
}

/* Tools (issue 18): `tools` with their `input_schema`, `tool_choice` {type: auto | any | tool
 * (with its name) | none}, parallel calls off as disable_parallel_tool_use. An assistant's
 * calls become tool_use blocks after its text; tool results become tool_result blocks of a user
 * message, consecutive results in one message, as the API wants them. `body`'s messages skip
 * the system ones (build_chat); they are rebuilt here from `cm`. */
static sipp_status add_tools(const sipp_chat_message *cm, size_t n, const sipp_text_params *p,
                             json_t *body, sipp_error *err) {
    if (p->n_tools) {
        json_t *tools;
        sipp_status st = sipp__remote_tools(p, "input_schema", false, &tools, err);
        if (st != SIPP_OK) return st;
        json_object_set_new(body, "tools", tools);
        const char *type = p->tool_choice == SIPP_TOOL_CHOICE_NONE       ? "none"
                           : p->tool_choice == SIPP_TOOL_CHOICE_REQUIRED ? "any"
                           : p->tool_choice == SIPP_TOOL_CHOICE_NAMED    ? "tool"
                                                                         : "auto";
        json_t *choice = json_pack("{s:s}", "type", type);
        if (p->tool_choice == SIPP_TOOL_CHOICE_NAMED)
            json_object_set_new(choice, "name", json_string(p->tool_choice_name));
        if (!p->parallel_tool_calls && p->tool_choice != SIPP_TOOL_CHOICE_NONE)
            json_object_set_new(choice, "disable_parallel_tool_use", json_true());
        json_object_set_new(body, "tool_choice", choice);
    }
    if (!cm) return SIPP_OK;
    json_t *old = json_object_get(body, "messages"), *msgs = json_array();
    bool results_open = false; /* the last message holds tool results: the next one joins it */
    size_t k = 0;              /* the message of `old` that cm[i] became */
    for (size_t i = 0; i < n; i++) {
        if (strcmp(cm[i].role, "system") == 0) continue;
        json_t *m = json_array_get(old, k++);
        if (cm[i].tool_call_id) {
            json_t *block = json_pack("{s:s, s:s, s:O}", "type", "tool_result", "tool_use_id",
                                      cm[i].tool_call_id, "content", json_object_get(m, "content"));
            if (!block) {
                json_decref(msgs);
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "chat: message %zu's tool_call_id is not valid UTF-8", i);
            }
            if (results_open) {
                json_array_append_new(json_object_get(json_array_get(msgs, json_array_size(msgs) - 1),
                                                      "content"), block);
            } else {
                json_array_append_new(msgs, json_pack("{s:s, s:[o]}", "role", "user", "content", block));
                results_open = true;
            }
            continue;
        }
        results_open = false;
        if (cm[i].n_tool_calls) {
            json_t *content = json_object_get(m, "content"), *blocks = json_array();
            if (json_is_array(content))
                json_array_extend(blocks, content);
            else if (json_string_length(content))
                json_array_append_new(blocks, json_pack("{s:s, s:O}", "type", "text", "text", content));
            for (size_t c = 0; c < cm[i].n_tool_calls; c++) {
                const sipp_tool_call *tc = &cm[i].tool_calls[c];
                json_t *b = json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", tc->id,
                                      "name", tc->name, "input", sipp__remote_call_arguments(tc));
                if (!b) {
                    json_decref(blocks);
                    json_decref(msgs);
                    return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                      "chat: message %zu has a tool call that is not valid UTF-8", i);
                }
                json_array_append_new(blocks, b);
            }
            json_object_set_new(m, "content", blocks);
        }
        json_array_append(msgs, m);
    }
    json_object_set_new(body, "messages", msgs);
    return SIPP_OK;
}

/* tool_use ends an answer with calls, except the forced tool of structured output, whose input
 * is the answer's text. */
static sipp_finish_reason map_stop_reason(const sipp__remote_run *rr, const char *s) {
    if (strcmp(s, "max_tokens") == 0 || strcmp(s, "model_context_window_exceeded") == 0)
        return SIPP_FINISH_LENGTH;
    if (strcmp(s, "tool_use") == 0 && !rr->schema_tool) return SIPP_FINISH_TOOL_CALLS;
    return SIPP_FINISH_STOP; /* end_turn, stop_sequence, refusal, pause_turn */
}

/* Anthropic's error types, with the HTTP status each stands for. */
static long status_of_type(const char *type) {
    static const struct { const char *type; long status; } map[] = {
        {"invalid_request_error", 400}, {"authentication_error", 401}, {"billing_error", 402},
        {"permission_error", 403},      {"not_found_error", 404},      {"request_too_large", 413},
        {"rate_limit_error", 429},      {"api_error", 500},            {"overloaded_error", 529},
    };
    for (size_t i = 0; type && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(type, map[i].type) == 0) return map[i].status;
    return 500;
}

/* A content block's start (issue 18): a tool_use block opens a call (its input follows as
 * input_json_delta pieces), unless it is the forced tool of structured output. */
static bool block_start(sipp__remote_run *rr, json_t *j) {
    json_t *b = json_object_get(j, "content_block");
    const char *type = json_string_value(json_object_get(b, "type"));
    json_t *idx = json_object_get(j, "index");
    if (!type || strcmp(type, "tool_use") != 0 || rr->schema_tool) {
        json_t *t = json_object_get(b, "text"); /* a text block may start with some */
        sipp__remote_push_text(rr, json_string_value(t), json_string_length(t), 1);
        return true;
    }
    if (!json_is_integer(idx))
        return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                        "the provider's tool_use block has no index");
    /* the input normally follows as pieces ("input": {} here); some proxies put it all here */
    json_t *input = json_object_get(b, "input");
    char *args = json_object_size(input) ? json_dumps(input, JSON_COMPACT) : NULL;
    bool ok = sipp__remote_tool_piece(rr, (long)json_integer_value(idx),
                                      json_string_value(json_object_get(b, "id")),
                                      json_string_value(json_object_get(b, "name")), args,
                                      args ? strlen(args) : 0);
    free(args);
    return ok;
}

/* A content block's piece: text_delta, thinking_delta (reasoning), input_json_delta (a call's
 * arguments, or the structured answer's text), signature_delta (nothing for us). */
static bool block_delta(sipp__remote_run *rr, json_t *j) {
    json_t *d = json_object_get(j, "delta");
    const char *type = json_string_value(json_object_get(d, "type"));
    if (!type) type = "";
    if (strcmp(type, "thinking_delta") == 0) {
        json_t *t = json_object_get(d, "thinking");
        sipp__remote_push_reasoning(rr, json_string_value(t), json_string_length(t));
        return true;
    }
    if (strcmp(type, "input_json_delta") == 0) {
        json_t *t = json_object_get(d, "partial_json");
        if (rr->schema_tool) {
            sipp__remote_push_text(rr, json_string_value(t), json_string_length(t), 1);
            return true;
        }
        json_t *idx = json_object_get(j, "index");
        if (!json_is_integer(idx))
            return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                            "the provider's input_json_delta has no index");
        return sipp__remote_tool_piece(rr, (long)json_integer_value(idx), NULL, NULL,
                                       json_string_value(t), json_string_length(t));
    }
    json_t *t = json_object_get(d, "text");
    sipp__remote_push_text(rr, json_string_value(t), json_string_length(t), 1);
    return true;
}

/* A whole answer (issue 18): {"content": [text | thinking | tool_use blocks], "stop_reason",
 * "usage"}. */
static bool on_whole(sipp__remote_run *rr, json_t *j) {
    json_t *u = json_object_get(j, "usage");
    rr->usage.input_tokens = (uint32_t)json_integer_value(json_object_get(u, "input_tokens"));
    rr->usage.output_tokens = (uint32_t)json_integer_value(json_object_get(u, "output_tokens"));
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(j, "content"), i, b) {
        const char *type = json_string_value(json_object_get(b, "type"));
        if (!type) continue;
        if (strcmp(type, "thinking") == 0) {
            json_t *t = json_object_get(b, "thinking");
            sipp__remote_push_reasoning(rr, json_string_value(t), json_string_length(t));
        } else if (strcmp(type, "tool_use") == 0) {
            json_t *input = json_object_get(b, "input");
            char *args = input ? json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            bool ok = true;
            if (rr->schema_tool)
                sipp__remote_push_text(rr, args, args ? strlen(args) : 0, 1);
            else
                ok = sipp__remote_tool_piece(rr, (long)i, json_string_value(json_object_get(b, "id")),
                                             json_string_value(json_object_get(b, "name")), args,
                                             args ? strlen(args) : 0);
            free(args);
            if (!ok) return false;
        } else {
            json_t *t = json_object_get(b, "text");
            sipp__remote_push_text(rr, json_string_value(t), json_string_length(t), 1);
        }
    }
    const char *sr = json_string_value(json_object_get(j, "stop_reason"));
    if (sr) rr->reason = map_stop_reason(rr, sr);
    rr->done_seen = true;
    return true;
}

static bool on_event(sipp__remote_run *rr, const sipp__sse_event *ev) {
    const char *name = ev->event;
    if (strcmp(name, "ping") == 0) return true;
    json_t *j = sipp__remote_event_json(rr, ev);
    if (!j) return false;
    /* The `type` field repeats the event name; servers behind proxies sometimes drop `event:`. */
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!name[0] && type) name = type;
    bool ok = true;
    if (strcmp(name, "message_start") == 0) {
        json_t *u = json_object_get(json_object_get(j, "message"), "usage");
        rr->usage.input_tokens = (uint32_t)json_integer_value(json_object_get(u, "input_tokens"));
    } else if (strcmp(name, "content_block_start") == 0) {
        ok = block_start(rr, j);
    } else if (strcmp(name, "content_block_delta") == 0) {
        ok = block_delta(rr, j);
    } else if (strcmp(name, "message_delta") == 0) {
        const char *sr = json_string_value(json_object_get(json_object_get(j, "delta"), "stop_reason"));
        if (sr) rr->reason = map_stop_reason(rr, sr);
        json_t *out = json_object_get(json_object_get(j, "usage"), "output_tokens");
        if (json_is_integer(out)) rr->usage.output_tokens = (uint32_t)json_integer_value(out);
    } else if (strcmp(name, "message_stop") == 0) {
        rr->done_seen = true;
    } else if (strcmp(name, "error") == 0) {
        json_t *e = json_object_get(j, "error");
        const char *etype = json_string_value(json_object_get(e, "type"));
        const char *m = json_string_value(json_object_get(e, "message"));
        ok = sipp__remote_stream_fail(rr, sipp__provider_classify(status_of_type(etype), NULL, etype),
                                      etype, "the provider failed mid-stream: %s",
                                      m ? m : "(no message)");
    } /* content_block_stop and unknown events carry nothing we need */
    json_decref(j);
    return ok;
}

/* {"type": "error", "error": {"type": "rate_limit_error", "message": "..."}} */
static sipp_status read_error(long http_status, json_t *j, const char **message, const char **code) {
    json_t *e = json_object_get(j, "error");
    *message = json_string_value(json_object_get(e, "message"));
    *code = json_string_value(json_object_get(e, "type"));
    return sipp__provider_classify(http_status, NULL, *code);
}

static const char *const own_fields[] = {"system", "stop_sequences", "tools", "tool_choice", NULL};

const sipp__dialect sipp__dialect_anthropic = {
    .name = "provider",
    .end_marker = "message_stop",
    .query_path = NULL, /* no raw completion API */
    .chat_path = "/messages",
    .build_text = build_chat,
    .embed_path = NULL, /* no embeddings API */
    .on_event = on_event,
    .read_error = read_error,
    .read_embedding = NULL,
    .own_fields = own_fields,
    .add_tools = add_tools,
    .on_whole = on_whole,
};
