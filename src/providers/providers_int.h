/*
 * providers_int.h — remote endpoints: requests to a model API over the HTTP layer, answering
 * through the same run channel as the local engine.
 *
 * remote.c is the one core every remote endpoint shares: the endpoint (base URL, headers,
 * timeouts, its live runs), starting a transfer, decoding the SSE stream, capped error bodies,
 * finishing each run exactly once. A dialect is the wire format on top of it, one file each:
 *   openai.c          OpenAI and any OpenAI-compatible server (vLLM, llama-server, Ollama...)
 *   anthropic.c       Anthropic's messages API
 *   gateway_client.c  a Sipp gateway (docs/gateway-protocol.md, Sipp profile)
 *
 * Secrets: credentials and static headers go only into request headers; no message built here
 * contains a header, and peer error messages are copied only from the JSON error body.
 */
#ifndef SIPP_PROVIDERS_INT_H
#define SIPP_PROVIDERS_INT_H

#include "../common/common_int.h"
#include "../http/http_int.h"

#include <jansson.h>
#include <pthread.h>

typedef struct sipp__remote sipp__remote;
typedef struct sipp__dialect sipp__dialect;

/* One tool call a peer is making (issue 18): its arguments arrive in pieces. */
typedef struct sipp__remote_call {
    long key; /* the peer's index of the call */
    char *id, *name;
    sipp__buf args;
} sipp__remote_call;

typedef enum sipp__remote_op { SIPP__OP_QUERY, SIPP__OP_CHAT, SIPP__OP_EMBED } sipp__remote_op;

/* One request in flight. Owned by the HTTP transfer thread from start to its end; the dialect's
 * callbacks run on that thread. */
typedef struct sipp__remote_run {
    struct sipp__remote_run *prev, *next; /* the endpoint's live list */
    sipp__remote *rm;
    sipp_run *run;
    sipp__remote_op op;
    bool normalize;
    int32_t top_logprobs; /* issue 18: alternatives kept per token; -1 = no logprobs asked for */
    uint32_t lp_staged;   /* entries staged since the last text push */
    long status;
    uint32_t retry_after;
    char request_id[64];
    sipp__sse sse;
    sipp__buf body;      /* error body (status >= 400) or a non-streamed answer */
    bool done_seen;      /* the stream's own end marker arrived */
    sipp_finish_reason reason;
    sipp_usage usage;
    uint32_t n_chunks;
    /* A failure the dialect saw in the stream: its status (0 = SIPP_UPSTREAM_ERROR), message, and the
     * peer's error code when it named one. */
    sipp_status stream_status;
    char stream_error[SIPP_ERROR_MESSAGE_CAP];
    char error_code[48];
    double t_submit, t_first, t_last;
    bool not_sent; /* the transfer failed before any byte of the request was written */
    /* issue 18: tools and reasoning. The peer's tool calls as they stream in (`key` is the
     * peer's own index: OpenAI's tool_calls[].index, Anthropic's content block index), what
     * becomes of its reasoning, and whether the answer came whole (application/json) rather
     * than as a stream. */
    sipp__remote_call *calls;
    size_t n_calls, cap_calls;
    sipp_reasoning_mode reasoning_mode;
    bool in_think;      /* INLINE: a "<think>" was pushed and not yet closed */
    bool schema_tool;   /* Anthropic: json_schema as a forced tool; its input is the text */
    bool whole;         /* the answer is one JSON document, not an SSE stream */
} sipp__remote_run;

/* The wire format of a remote endpoint. */
struct sipp__dialect {
    const char *name;       /* in messages: "provider", "gateway" */
    const char *end_marker; /* what ends a stream, for messages: "[DONE] or a finish reason" */
    /* The routes of query and chat, appended to the base URL; a NULL query_path means the API
     * has no raw completion (query is unsupported). */
    const char *query_path, *chat_path;
    /* Builds a text request body (new reference in *body): `messages` NULL = a query of
     * `prompt`. */
    sipp_status (*build_text)(const sipp__remote *rm, const char *prompt,
                              const sipp_message *messages, size_t n_messages,
                              const sipp_text_params *p, json_t **body, sipp_error *err);
    /* The embeddings route, whose body is {"model", "input"} on every API that has one; NULL =
     * embed is unsupported. */
    const char *embed_path;
    /* One SSE event: push text with sipp__remote_push_text, record usage, finish reason and
     * done_seen; return false after filling stream_error (and stream_status) to fail the run. */
    bool (*on_event)(sipp__remote_run *rr, const sipp__sse_event *ev);
    /* An error answer: its status and, from the JSON body (may be NULL), the peer's message and
     * code (pointers into `body`, may stay NULL). */
    sipp_status (*read_error)(long http_status, json_t *body, const char **message,
                              const char **code);
    /* A non-streamed embeddings answer: the vector (malloc'd) and usage. */
    sipp_status (*read_embedding)(sipp__remote_run *rr, json_t *body, float **vec, uint32_t *n,
                                  sipp_error *err);
    /* Body keys that extra_json may not set, NULL-terminated (beyond the common typed ones). */
    const char *const *own_fields;
    /* issue 18, tools: adds the tools, tool choice and the tool messages of `cm` (NULL when the
     * chat has plain messages; else parallel to `messages`) to the body build_text made. NULL =
     * the API takes no tools (a chat with any is UNSUPPORTED before anything is sent). */
    sipp_status (*add_tools)(const sipp_chat_message *cm, size_t n, const sipp_text_params *p,
                             json_t *body, sipp_error *err);
    /* issue 18: an answer that came whole (Content-Type application/json: a server that does
     * not stream, or not with tools): decodes it as the events would have, setting done_seen.
     * NULL = only streams are understood. */
    bool (*on_whole)(sipp__remote_run *rr, json_t *body);
};

extern const sipp__dialect sipp__dialect_openai;
extern const sipp__dialect sipp__dialect_anthropic;
extern const sipp__dialect sipp__dialect_gateway;

/* What a remote endpoint is made of; built by sipp__remote_new_provider/_gateway. */
struct sipp__remote {
    const sipp__dialect *dialect;
    char *model;     /* the provider's model, or the gateway's target name */
    char *base_url;  /* without a trailing slash */
    char *version;   /* anthropic-version; NULL for others */
    char **headers;  /* "Name: value" lines sent with every request (credentials included) */
    size_t n_headers;
    uint32_t connect_ms, total_ms, idle_ms;
    bool allow_private; /* allow_private_network: the network policy of its connections */
    sipp__http *http;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sipp__remote_run *live; /* runs not yet finished, guarded by mu */
};

/* Validates the params (URL rules, model, credentials from the environment) and keeps copies.
 * `http` outlives the endpoint. */
sipp_status sipp__remote_new_provider(const sipp_provider_params *p, sipp__http *http,
                                      sipp__remote **out, sipp_error *err);
sipp_status sipp__remote_new_gateway(const sipp_gateway_params *p, sipp__http *http,
                                     sipp__remote **out, sipp_error *err);
/* Cancels the endpoint's runs, waits until each has ended, frees it (secrets wiped). */
void sipp__remote_free(sipp__remote *rm);

/* `messages` NULL: a query of `prompt`; else a chat. `p` was checked by the caller (tools
 * too: sipp__tools_check, sipp__chat_messages_check). `cm`: the same messages with their tool
 * calls and results (sipp_chat_ex), or NULL. */
sipp_status sipp__remote_submit_text(sipp__remote *rm, const char *prompt,
                                     const sipp_message *messages, size_t n_messages,
                                     const sipp_chat_message *cm, const sipp_text_params *p,
                                     sipp_run **out, sipp_error *err);
sipp_status sipp__remote_submit_embed(sipp__remote *rm, const char *text,
                                      const sipp_embed_params *p, sipp_run **out,
                                      sipp_error *err);

/* For dialects: hands generated text to the run, timing the first and last chunk. The push
 * counts at least the log-probability entries staged since the last one as its tokens. */
void sipp__remote_push_text(sipp__remote_run *rr, const char *text, size_t len,
                            uint32_t n_tokens);
/* For dialects (issue 18): a piece of the peer's reasoning; separated (a REASONING delta),
 * inline (content inside <think></think>) or dropped, as the request's reasoning_mode says. */
void sipp__remote_push_reasoning(sipp__remote_run *rr, const char *text, size_t len);
/* For dialects (issue 18): a piece of tool call `key` (the peer's index). The first piece of a
 * call must name the tool (`name`); `id` may be NULL there (one is made up). `args` (may be
 * NULL) is a piece of its arguments' JSON text. Returns false after failing the stream. */
bool sipp__remote_tool_piece(sipp__remote_run *rr, long key, const char *id, const char *name,
                             const char *args, size_t args_len);
/* At the end of a good answer (issue 18): each call's arguments must be a JSON object (none at
 * all is "{}"); the calls go into the run's response. False, with the message in `msg`, when
 * one is not. sipp__remote_calls_free frees the calls being accumulated (the run's end does). */
bool sipp__remote_calls_finish(sipp__remote_run *rr, char *msg, size_t cap);
void sipp__remote_calls_free(sipp__remote_run *rr);
/* For dialects (issue 18): an assistant message's tool call arguments as a JSON value (new
 * reference; the caller checked they are a JSON object). */
json_t *sipp__remote_call_arguments(const sipp_tool_call *c);
/* For dialects (issue 18): the tools' JSON Schemas, parsed (new reference; checked). */
json_t *sipp__remote_tool_schema(const sipp_tool *t);
/* For dialects (issue 18): the `tools` array, each tool {name, <schema_key>: its schema,
 * description?} ("parameters" or Anthropic's "input_schema"), wrapped as {"type": "function",
 * "function": tool} when `function_wrapped`. INVALID_ARGUMENT when a description is not UTF-8. */
sipp_status sipp__remote_tools(const sipp_text_params *p, const char *schema_key,
                               bool function_wrapped, json_t **out, sipp_error *err);
/* How an OpenAI-shaped dialect spells its tool fields (issue 18). function_wrapped: OpenAI's
 * {"type": "function", "function": {...}} around a tool, a named tool_choice and an assistant's
 * call, whose arguments are JSON text; otherwise (the Sipp profile) they are bare: a tool
 * {name, description?, parameters}, tool_choice {"name"}, a call {id, name, arguments object}. */
typedef struct sipp__remote_tool_shape {
    bool function_wrapped;
} sipp__remote_tool_shape;
/* For OpenAI-shaped dialects (issue 18): `tools`, `tool_choice` ("auto" | "none" | "required" |
 * the named shape) and `parallel_tool_calls` into `body`; its messages, parallel to `cm`, get
 * assistant `tool_calls` (content null when empty) and tool messages their `tool_call_id`. */
sipp_status sipp__remote_add_tools(const sipp_chat_message *cm, size_t n,
                                   const sipp_text_params *p, const sipp__remote_tool_shape *shape,
                                   json_t *body, sipp_error *err);
/* For dialects (issue 18): stages the log-probability entries a peer sent with a chunk, in
 * either shape: an array of {"token", "logprob", "bytes"?, "top_logprobs": [{...}]} (OpenAI
 * chat's `content`, llama-server's completions, the Sipp profile's `logprobs`), an object with
 * such a `content` array, or OpenAI's legacy {"tokens", "token_logprobs", "top_logprobs"}.
 * Malformed entries are skipped; at most SIPP_MAX_TOP_LOGPROBS alternatives are kept, sorted.
 * Returns how many entries were staged; the next sipp__remote_push_text with text covers them
 * all (a chunk whose tokens spell no text yet hands them on to the next one). */
uint32_t sipp__remote_stage_logprobs(sipp__remote_run *rr, json_t *lp);
/* For dialects (issue 18, structured output): p->json_schema parsed (the caller checked that
 * it converts); INVALID_ARGUMENT unless it is a JSON object. *out is a new reference. */
sipp_status sipp__remote_schema(const sipp_text_params *p, json_t **out, sipp_error *err);
/* For dialects: fails the stream with `st` and a message (printf-style). Returns false. */
bool sipp__remote_stream_fail(sipp__remote_run *rr, sipp_status st, const char *code,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Maps an HTTP error status (and the peer's error code/type strings, may be NULL) to a status:
 * 401 authentication, 403 authorization, 404 model_not_found, 429 rate_limited (or quota when
 * the code says so), 400/413/422 invalid_argument, 408/504 upstream_timeout, 503/529
 * overloaded, other 5xx upstream_error. */
sipp_status sipp__provider_classify(long http_status, const char *code, const char *type);

/* For dialects: the typed fields every text API shares — model, max_tokens, temperature,
 * top_p, stream: true, and `stop` when there are stop strings — as a new object in *out. */
sipp_status sipp__remote_text_body(const sipp__remote *rm, const sipp_text_params *p,
                                   json_t **out, sipp_error *err);
/* For dialects: a JSON array of the stop strings (NULL when one is not UTF-8). */
json_t *sipp__remote_stop_array(const sipp_text_params *p);
/* For dialects: [{"role", "content"}] of the messages (skipping role "system" when
 * `skip_system`), as a new reference in *out. */
sipp_status sipp__remote_messages(const sipp_message *messages, size_t n, bool skip_system,
                                  json_t **out, sipp_error *err);
/* media_parts.c (multimodal): gives the messages of `msgs` (built by sipp__remote_messages with
 * the same skip_system) that have media parts a content array in the provider's shape (OpenAI
 * image_url data URLs, or Anthropic image blocks). UNSUPPORTED, before anything is sent, for
 * audio and for images in an Anthropic system prompt; INVALID_ARGUMENT for a part that is not
 * what it says. `provider` names the provider in messages. */
sipp_status sipp__remote_add_media(json_t *msgs, const sipp_message *messages, size_t n,
                                   bool skip_system, const sipp_text_params *p, bool anthropic,
                                   const char *provider, sipp_error *err);
/* For dialects: adds "prompt" (messages NULL) or "messages" to `body`, taking `body` on error. */
sipp_status sipp__remote_add_input(json_t *body, const char *prompt, const sipp_message *messages,
                                   size_t n, sipp_error *err);
/* For dialects: the event's data as a JSON object (new reference), or NULL after failing the
 * stream with the parse error. */
json_t *sipp__remote_event_json(sipp__remote_run *rr, const sipp__sse_event *ev);

#endif
