/*
 * profiles.h — the public profiles as codecs: each one decodes its request bodies into one
 * shape (gw_call) and encodes every answer the gateway sends in its envelope (finite answers,
 * error envelopes, stream events, the embeddings answer). profiles.c holds what they share
 * (the body cap and parse, the option fields, the embeddings writer); profile_sipp.c,
 * profile_openai.c and profile_anthropic.c (Messages, chat only) hold one profile each,
 * decoder next to encoder.
 *
 * Pure: jansson, OpenSSL's base64 and src/common's buffer and depth scan, no I/O, no gateway
 * state; tests/unit/test_gw_embed.c and tests/fuzz/fuzz_gw_request.c link these files alone.
 */
#ifndef SIPP_GATEWAY_PROFILES_H
#define SIPP_GATEWAY_PROFILES_H

#include "../common/common_int.h"
#include "codes.h"
#include "config.h"

#include <jansson.h>
#include <sipp.h>

/* ---- the decoded request: one shape for both profiles ------------------------------------ */

typedef struct gw_call {
    gw_op op;
    const char *model;
    const char *prompt;
    sipp_message *messages;
    size_t n_messages;
    const char **inputs; /* embed: one or more texts */
    size_t n_inputs;
    bool input_is_array;
    bool has_max_tokens, has_temperature, has_top_p;
    json_int_t max_tokens;
    double temperature, top_p;
    const char *stop[SIPP_MAX_STOP_STRINGS];
    size_t n_stop;
    bool stream;
    bool include_usage;
    bool base64; /* embeddings: encoding_format base64 */
    /* a validation failure found while decoding, reported in the validate phase (after
     * authorize and resolve, so it reveals nothing to a caller who may not use the target) */
    char invalid[200];
    char invalid_param[64];
    /* log-probabilities (issue 18; profile_outputs.c) */
    bool logprobs;
    bool has_top_logprobs;
    int top_logprobs; /* -1 when negative was asked for (then `invalid` is set) */
    /* structured output (issue 18; profile_outputs.c): the schema object (in `root`), or
     * json_object: any JSON object */
    json_t *json_schema;
    bool json_object;
    /* multimodal: the media parts of the messages (OpenAI `image_url` data URLs), decoded. A
     * message with parts has its text rebuilt with SIPP_MEDIA_MARKER where each part was; those
     * texts and the bytes are owned here (sipp__gw_call_free_media). */
    sipp_media *media;
    size_t n_media;
    char **owned;
    size_t n_owned;
    uint64_t media_bytes;
    bool media_too_large; /* over the media bytes limit: 413 naming max_media_bytes */
    /* Limits of media in one request, set by the caller before decoding (the gateway: its
     * max_media_bytes and max_image_pixels keys): decoded bytes of all parts, and the declared
     * pixels of one image (the engine checks its own ceiling before decoding). 0 = the
     * defaults, SIPP__GW_MAX_MEDIA_BYTES and SIPP__GW_MAX_IMAGE_PIXELS (config.h). */
    uint64_t max_media_bytes;
    uint64_t max_image_pixels;
    /* tools (issue 18; profile_tools.c). `chat` is the messages again with their tool parts
     * (assistant tool_calls, tool results), for sipp_chat_ex.
     * The arrays, the schemas' compact texts and arguments given as objects are owned like the
     * media (sipp__gw_call_free_media); names, ids and descriptions point into `root`. */
    sipp_chat_message *chat;
    sipp_tool *tools;
    size_t n_tools;
    size_t tool_schema_bytes; /* all tools' parameters, compact: within max_schema_bytes */
    sipp_tool_choice tool_choice;
    const char *tool_choice_name;
    bool no_parallel_tool_calls; /* parallel_tool_calls: false */
    sipp_reasoning_mode reasoning_mode; /* OpenAI reasoning_format, Sipp reasoning_mode */
    /* issue 18: the request named its reasoning mode: a Sipp-profile stream then carries
     * `reasoning` events (a Sipp gateway endpoint always names it) */
    bool reasoning_asked;
    /* issue 18: the reasoning budget (`reasoning_budget`; OpenAI also llama-server's
     * chat_template_kwargs.enable_thinking false = 0), when budget_set; else unlimited */
    bool budget_set;
    int32_t reasoning_budget;
    /* audio input (issue 17): the gateway's max_audio_seconds (0 = SIPP__GW_MAX_AUDIO_SECONDS),
     * and the length of the audio parts decoded so far */
    uint64_t max_audio_seconds;
    uint64_t audio_ms;
    /* transcription (issue 17, transcribe.c): the form's `language` (owned) and
     * response_format: plain text rather than {"text": ...} */
    const char *language;
    bool transcript_text;
} gw_call;

/* Adds one image to `c` from a data: URL (OpenAI's image_url parts; the Messages profile's
 * base64 image blocks, rewritten as one): decoded within the call's media limits, checked (type,
 * declared size) and appended as a part of messages[index], its bytes owned by `c`. `what`
 * names the part in a refusal. Over the bytes limit: true, with c->media_too_large set. */
bool sipp__gw_call_add_image_url(gw_call *c, size_t index, const char *what, const char *url,
                                 size_t len, char *msg, size_t cap);

/* Adds one audio clip to `c` (OpenAI's input_audio parts, the transcription route's file):
 * `b64` base64 of a WAV, MP3 or FLAC file of type `mime`, or, with b64_len SIZE_MAX, `b64` raw
 * bytes of `raw_len` (copied). Decoded within the media bytes limit, checked (container, sample
 * format, zero length) and held to the call's max_audio_seconds over all its clips (400 naming
 * the key). Over the bytes limit: true, with c->media_too_large set. */
bool sipp__gw_call_add_audio(gw_call *c, size_t index, const char *what, const char *mime,
                             const char *b64, size_t b64_len, size_t raw_len, char *msg, size_t cap);

/* Frees what the media parts of `c` own (NULL-safe; call after every decode). */
void sipp__gw_call_free_media(gw_call *c);

/* Keeps p (malloc'd) until sipp__gw_call_free_media; false (p freed) when out of memory. */
bool sipp__gw_call_own(gw_call *c, void *p);

/* Decodes a body of the given profile and operation. Returns false with a message (and the
 * offending parameter when there is one) for 400 invalid_json. Strings in `call` point into
 * `root`. */
bool sipp__gw_decode(gw_profile prof, gw_op op, json_t *root, gw_call *call, char *msg,
                     size_t cap, char *param, size_t pcap);
/* Everything the gateway does with a request body before the pipeline goes on: the depth cap
 * (on the raw text with src/common's scan, before jansson builds anything), the parse
 * (duplicate keys refused) and sipp__gw_decode. On success *root holds the document `call`
 * points into (the caller decrefs it, and frees call->messages and call->inputs, also after a
 * failure). */
bool sipp__gw_decode_body(gw_profile prof, gw_op op, const char *body, size_t len,
                          unsigned max_depth, json_t **root, gw_call *call, char *msg, size_t cap,
                          char *param, size_t pcap);

/* ---- pieces both decoders use (profiles.c) ----------------------------------------------- */

/* Formats msg and returns false, so decoders can `return sipp__gw_bad(...)`. */
bool sipp__gw_bad(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Records a validation failure in call->invalid (the first one wins). */
void sipp__gw_invalid(gw_call *c, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool sipp__gw_is_local_only(const char *key);
/* max_tokens, temperature, top_p, stop, stream. Returns 1 when `key` was one of them (0 = not
 * an option, -1 = bad type, msg set). */
int sipp__gw_decode_option(gw_call *c, const char *key, json_t *v, char *msg, size_t cap,
                           char *param, size_t pcap, bool openai);
bool sipp__gw_decode_messages(gw_call *c, json_t *v, bool openai, char *msg, size_t cap,
                              char *param, size_t pcap);
/* `encoding_format`: null or "float" (JSON numbers), "base64". */
bool sipp__gw_decode_encoding(gw_call *c, json_t *v, char *msg, size_t cap);
/* The checks every decoder ends with: the fields its operation requires. */
bool sipp__gw_decode_required(gw_op op, const gw_call *c, char *msg, size_t cap);

/* ---- encoding answers ---------------------------------------------------------------------- */

/* What every answer of one request carries in its envelope. */
typedef struct gw_answer {
    gw_op op;
    const char *id;      /* the request id */
    const char *model;   /* the target's name */
    long created;        /* unix seconds (OpenAI's `created`) */
    uint64_t in_tok, out_tok;
    bool usage_known;    /* the target reported usage (a local target always does) */
    bool include_usage;  /* OpenAI stream_options.include_usage */
    /* log-probabilities (issue 18): asked for, and the entries of this answer or batch */
    bool logprobs_on;
    const sipp_token_logprob *logprobs;
    size_t n_logprobs;
    /* tools and reasoning (issue 18): the answer's calls and separated reasoning ("" / NULL
     * when none); owned by the run */
    const sipp_tool_call *tool_calls;
    size_t n_tool_calls;
    const char *reasoning;
} gw_answer;

/* What a stream's events carry from one to the next. Zero-initialised at the stream's start. */
typedef struct gw_stream_state {
    uint32_t sequence; /* tokens sent so far (Sipp `token` events) */
    bool role_sent;    /* OpenAI chat: the first delta carried the role */
    size_t text_offset; /* bytes of text sent so far (legacy logprobs' text_offset) */
    bool tool_calls_sent; /* a tool-call delta went out (the finish reason is tool_calls) */
    bool deltas_seen;     /* a delta stream: the run produced a delta */
    /* Anthropic: content blocks started so far, and the open one (text, or tool_use of call
     * block_call) */
    int n_blocks;
    bool block_open, block_tool;
    uint32_t block_call;
} gw_stream_state;

typedef struct gw_codec {
    bool (*decode)(gw_op op, json_t *root, gw_call *c, char *msg, size_t cap, char *param,
                   size_t pcap);
    /* {"error": {...}} of a refused or failed request; param may be NULL. */
    json_t *(*error)(gw_code code, const char *param, const char *msg);
    /* The answer of a finished text request. NULL when out of memory or `text` is not UTF-8. */
    json_t *(*text)(const gw_answer *a, const char *text, size_t len, sipp_finish_reason f);
    /* Stream events, appended to `out` as SSE frames. */
    void (*stream_text)(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                        const char *text, size_t len, uint32_t n_tokens);
    void (*stream_error)(sipp__buf *out, gw_code code, const char *msg);
    void (*stream_end)(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                       sipp_finish_reason f);
    /* A reasoning or tool-call delta of a chat streamed as deltas (issue 18; content deltas
     * go to stream_text). NULL in a profile that takes no tools (then no delta stream). */
    void (*stream_delta)(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                         const sipp_delta *d);
    /* The embeddings answer around its vectors (malloc'd, NULL when out of memory), the text
     * before vector `index` (written to p, returns its length) and after each vector. NULL in
     * a profile whose routes serve no embeddings (Anthropic Messages). */
    char *(*embed_head)(const gw_answer *a);
    char *(*embed_tail)(const gw_answer *a);
    size_t (*embed_open)(char *p, size_t cap, size_t index);
    const char *embed_close;
} gw_codec;

extern const gw_codec sipp__gw_sipp_codec;   /* profile_sipp.c */
extern const gw_codec sipp__gw_openai_codec; /* profile_openai.c */
extern const gw_codec sipp__gw_anthropic_codec; /* profile_anthropic.c */
const gw_codec *sipp__gw_codec(gw_profile prof);

/* Appends one SSE frame, `event: NAME\n` (when event is not NULL) then `data: JSON\n\n`. Takes
 * `data`. */
void sipp__gw_sse_frame(sipp__buf *out, const char *event, json_t *data);
/* The wire name of a finish reason ("stop", "length", "cancelled"). */
const char *sipp__gw_finish_name(sipp_finish_reason f);
/* A JSON value's compact text (malloc'd), or NULL. Takes `v`. */
char *sipp__gw_json_text(json_t *v);

/* The OpenAI profile's /v1/models: one entry, and the list around the entries (takes `data`). */
json_t *sipp__gw_openai_model(const char *name, const char *type);
json_t *sipp__gw_openai_model_list(json_t *data);

/* ---- the embeddings answer, written incrementally ------------------------------------------ */

/* The envelope of the profile's codec, then each vector as JSON numbers ("%.9g": each float
 * reads back exactly) or as base64 of its little-endian float32 bytes, without a JSON tree or a
 * copy of the whole text. */
typedef struct sipp__gw_embed_writer sipp__gw_embed_writer;
/* Takes ownership of `v` (n_vec x dim floats, malloc'd; freed also when this fails). Returns
 * NULL when out of memory. */
sipp__gw_embed_writer *sipp__gw_embed_writer_new(gw_profile prof, bool base64, const char *id,
                                                 const char *model, uint64_t in_tok,
                                                 uint64_t out_tok, float *v, size_t n_vec,
                                                 uint32_t dim);
/* Writes up to `cap` next bytes of the answer to buf; returns how many (0: the end). */
size_t sipp__gw_embed_writer_read(sipp__gw_embed_writer *w, char *buf, size_t cap);
void sipp__gw_embed_writer_free(sipp__gw_embed_writer *w);
/* True when no value is NaN or infinite (JSON has no such numbers). */
bool sipp__gw_embed_finite(const float *v, size_t n);

/* ---- log-probabilities (issue 18; profile_outputs.c) --------------------------------------- */

/* `logprobs` and `top_logprobs` of a text request (OpenAI /v1/completions: `logprobs` is
 * the integer N of alternatives). Returns 1 when `key` was one of them, 0 when not, -1 for a
 * bad type (msg, param set). Ranges go to call->invalid. */
int sipp__gw_decode_logprobs(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                             char *msg, size_t cap, char *param, size_t pcap);
/* Structured output: OpenAI's `response_format` ({"type": "text" | "json_object" |
 * "json_schema", "json_schema": {"name", "schema", "strict"?, "description"?}}) or the Sipp
 * profile's `json_schema` object. Returns 1, 0 or -1 as sipp__gw_decode_logprobs. */
int sipp__gw_decode_schema(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                           char *msg, size_t cap, char *param, size_t pcap);
/* The schema to hand libsipp, compact (malloc'd; "{\"type\":\"object\"}" for json_object),
 * or NULL when none; *len its length. */
char *sipp__gw_schema_text(const gw_call *c, size_t *len);
/* After the whole body: top_logprobs > 0 needs logprobs. */
void sipp__gw_check_logprobs(gw_call *c);
/* OpenAI chat's `content` array (also the Sipp profile's `logprobs`). NULL when out of memory. */
json_t *sipp__gw_logprobs_content(const sipp_token_logprob *e, size_t n);
/* OpenAI completions' legacy object; *offset is the byte offset of the first token in the
 * answer's text and advances past the last. */
json_t *sipp__gw_logprobs_legacy(const sipp_token_logprob *e, size_t n, size_t *offset);

/* ---- tools (issue 18; profile_tools.c) ------------------------------------------------------ */

/* `tools`, `tool_choice` and `parallel_tool_calls` of a chat (both profiles; OpenAI's shapes,
 * the Sipp profile also takes a flat {"name", "description", "parameters"} tool and
 * {"name": ...} as a named choice). Returns 1, 0 or -1 as sipp__gw_decode_logprobs: a value of
 * the wrong shape is -1 (400 invalid_json naming it); caps, schemas that are not object
 * schemas and duplicate names go to call->invalid. */
int sipp__gw_decode_tools(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                          char *msg, size_t cap, char *param, size_t pcap);
/* The shapes of the tool decoders. */
enum { SIPP__GW_TOOLS_SIPP, SIPP__GW_TOOLS_OPENAI, SIPP__GW_TOOLS_ANTHROPIC };
/* A thinking model's reasoning: OpenAI's `reasoning_format` (llama-server's field: "auto" or
 * "deepseek" separate it into reasoning_content, "none" leaves it inline; "drop" discards it)
 * or the Sipp profile's `reasoning_mode` ("separate", "inline", "drop"). Returns 1, 0 or -1
 * as sipp__gw_decode_tools; an unknown value goes to call->invalid. */
int sipp__gw_decode_reasoning(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                              char *msg, size_t cap, char *param, size_t pcap);
/* The reasoning budget (issue 18): `reasoning_budget` (an integer >= -1; -1 unlimited, 0 no
 * thinking, N tokens) on both profiles; the OpenAI profile also takes llama-server's
 * `chat_template_kwargs` with only `enable_thinking` (false = budget 0, true = unlimited).
 * Returns 1, 0 or -1 as sipp__gw_decode_tools; a value out of range goes to call->invalid. */
int sipp__gw_decode_budget(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                           char *msg, size_t cap, char *param, size_t pcap);
/* The Anthropic profile's `tools` ([{"name", "description"?, "input_schema"}], custom tools
 * only) and `tool_choice` ({"type": "auto" | "any" | "none" | "tool", "name"?,
 * "disable_parallel_tool_use"?}); 1, 0 or -1 as sipp__gw_decode_tools. */
int sipp__gw_decode_anthropic_tools(gw_call *c, const char *key, json_t *v, char *msg,
                                    size_t cap, char *param, size_t pcap);
/* The tool parts of messages[i] into c->chat[i] (allocated by the caller): an assistant's
 * `tool_calls` (id, function name, arguments as JSON text; the Sipp profile also takes a flat
 * {"id", "name", "arguments"} with arguments as an object) and a tool result's
 * `tool_call_id`. False with msg/param set for a shape error. */
bool sipp__gw_decode_message_tools(gw_call *c, size_t i, json_t *m, bool openai, char *msg,
                                   size_t cap, char *param, size_t pcap);
/* After the whole body: a named tool_choice names a tool, required/named have tools, every
 * tool result answers an earlier assistant call. Failures go to call->invalid. */
void sipp__gw_check_tools(gw_call *c);
/* An answer's tool calls as OpenAI's message.tool_calls [{id, type, function: {name,
 * arguments}}] (openai) or the Sipp profile's [{id, name, arguments}]. */
json_t *sipp__gw_tool_calls_json(const sipp_tool_call *calls, size_t n, bool openai);

#endif
