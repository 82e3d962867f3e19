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
    bool media_too_large; /* over SIPP__GW_MAX_MEDIA_BYTES: 413 naming the limit */
} gw_call;

/* Limits of media in one request (docs/gateway.md): decoded bytes of all parts, and the declared
 * pixels of one image (the engine checks the same before decoding). */
#define SIPP__GW_MAX_MEDIA_BYTES (20u << 20)
#define SIPP__GW_MAX_IMAGE_PIXELS (4096u * 4096u)

/* Frees what the media parts of `c` own (NULL-safe; call after every decode). */
void sipp__gw_call_free_media(gw_call *c);

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
} gw_answer;

/* What a stream's events carry from one to the next. Zero-initialised at the stream's start. */
typedef struct gw_stream_state {
    uint32_t sequence; /* tokens sent so far (Sipp `token` events) */
    bool role_sent;    /* OpenAI chat: the first delta carried the role */
    size_t text_offset; /* bytes of text sent so far (legacy logprobs' text_offset) */
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

#endif
