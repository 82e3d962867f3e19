/*
 * common_int.h — internal helpers shared by every module: error filling, time, bounded byte
 * buffers, UTF-8 and stop-string scanning, and the run channel that carries a request's stream
 * and response from a producer (an engine, later an HTTP client) to the caller.
 *
 * Dependencies point one way: common knows nothing of engine, client or llama.cpp.
 */
#ifndef SIPP_COMMON_INT_H
#define SIPP_COMMON_INT_H

#include "sipp.h"

#include <pthread.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIPP__INTERNAL __attribute__((visibility("hidden")))

/* ---- errors ------------------------------------------------------------------------------ */

/* Fills `err` (may be NULL) and returns `code`, so callers can `return sipp__fail(...)`. */
sipp_status sipp__fail(sipp_error *err, sipp_status code, int subcode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Copies a formatted one-line message into a fixed buffer (newlines become spaces). */
void sipp__format_message(char *dst, size_t cap, const char *fmt, va_list ap);

/* ---- logging ----------------------------------------------------------------------------- */

void sipp__log_set_level(sipp_log_level level);
sipp_log_level sipp__log_level(void);
void sipp__log(sipp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses "none|error|warn|info|debug"; returns false for anything else. */
bool sipp__log_level_parse(const char *s, sipp_log_level *out);

/* ---- time -------------------------------------------------------------------------------- */

/* Monotonic clock in milliseconds. */
double sipp__now_ms(void);

/* ---- bounded byte buffer ----------------------------------------------------------------- */

/* A growable byte buffer that never grows past `max` (curl's dynbuf). Always NUL-terminated. */
typedef struct sipp__buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
} sipp__buf;

void sipp__buf_init(sipp__buf *b, size_t max);
/* Returns SIPP_OUT_OF_MEMORY when the allocation fails or `max` would be exceeded. */
sipp_status sipp__buf_append(sipp__buf *b, const void *data, size_t len);
void sipp__buf_reset(sipp__buf *b);
void sipp__buf_free(sipp__buf *b);

char *sipp__strdup(const char *s);

/* ---- hashing (hash.c, OpenSSL libcrypto) ----------------------------------------------- */

typedef struct sipp__sha256 sipp__sha256;
/* Returns NULL when out of memory. sipp__sha256_end frees the context. */
sipp__sha256 *sipp__sha256_begin(void);
void sipp__sha256_update(sipp__sha256 *h, const void *data, size_t len);
void sipp__sha256_end(sipp__sha256 *h, uint8_t out[32]);
bool sipp__sha256_once(const void *data, size_t len, uint8_t out[32]);
/* SHA-256 of everything `fd` holds from offset 0 (the digest `sha256sum` prints). Returns 0, or
 * an errno value (ENOMEM, a read error). */
int sipp__sha256_fd(int fd, uint8_t out[32]);

/* ---- files (file.c) ---------------------------------------------------------------------- */

/* One piece of a file written by sipp__file_write_atomic. */
typedef struct sipp__file_part {
    const void *data;
    size_t len;
} sipp__file_part;

/* Replaces `path` with the concatenation of `parts` so that a crash leaves either the old file
 * or the whole new one: a temporary "<path>.tmp.<pid>" beside it (created O_EXCL|O_NOFOLLOW
 * with `mode`; a leftover of that name is removed first), fsync, rename, fsync of the
 * directory. Returns 0, or -1 with errno set and the temporary file removed. */
int sipp__file_write_atomic(const char *path, const sipp__file_part *parts, size_t n_parts,
                            unsigned mode);
/* fsync of the directory holding `path`, so that a rename into it survives a power cut (best
 * effort: errors are ignored). */
void sipp__file_sync_parent(const char *path);

/* ---- text: UTF-8 and stop strings -------------------------------------------------------- */

/* Length of the longest prefix of `s` that does not end inside an incomplete UTF-8 sequence.
 * Invalid bytes count as complete (they are passed through, never held forever). */
size_t sipp__utf8_complete_len(const char *s, size_t len);

/* Length of the longest prefix of `s` that is valid UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF); `len` when all of it is. */
size_t sipp__utf8_valid_len(const char *s, size_t len);

/* Appends `s` to `out` with each maximal invalid subpart replaced by U+FFFD (Unicode's
 * "substitution of maximal subparts", as browsers and Python decode). Generated text goes
 * through it, so every answer is valid UTF-8 whatever bytes the model's tokens hold. */
sipp_status sipp__utf8_append_clean(sipp__buf *out, const char *s, size_t len);

/* Result of scanning not-yet-emitted text against the stop strings. */
typedef struct sipp__stop_scan {
    bool matched;      /* a stop string occurs in the text */
    size_t emit_len;   /* bytes safe to emit now (up to the match when matched) */
} sipp__stop_scan;

/* Scans `text` (the held-back tail plus new text): on a match, emit_len is the offset of the
 * earliest match; otherwise everything except the longest suffix that could still begin a stop
 * string, and except an incomplete trailing UTF-8 sequence. */
sipp__stop_scan sipp__stop_scan_text(const char *const *stops, size_t n_stops, const char *text,
                                     size_t len);

/* ---- option validation ------------------------------------------------------------------- */

/* Validates text params; fills err naming the field on failure. */
sipp_status sipp__text_params_check(const sipp_text_params *p, sipp_error *err);

/* Deepest nesting of `s` (NUL-terminated), counted without recursion: GBNF groups when `gbnf`,
 * else JSON objects and arrays; brackets inside strings, character classes and comments do not
 * count. Returns early with a value > limit once the limit is passed. */
unsigned sipp__nesting_depth(const char *s, bool gbnf, unsigned limit);
/* The same over s[0, len), which need not be NUL-terminated (NUL bytes count as ordinary bytes):
 * the gateway's cap on request bodies before jansson parses them. */
unsigned sipp__nesting_depth_len(const char *s, size_t len, bool gbnf, unsigned limit);

/* ---- versioned public structs (params.c): defaults and the one struct_size rule --------- */

/* Every versioned struct of sipp.h: X(name, size in the first release). A struct_size below it
 * is refused; appending a field changes nothing here (the first release's size stays). */
#define SIPP__STRUCTS(X)                                                                         \
    X(error, sizeof(sipp_error))                                                                 \
    X(client_params, sizeof(sipp_client_params))                                                 \
    X(local_params, offsetof(sipp_local_params, sha256))                                         \
    X(provider_params, offsetof(sipp_provider_params, version))                                  \
    X(gateway_params, offsetof(sipp_gateway_params, allow_private_network))                      \
    X(text_params, offsetof(sipp_text_params, extra_json))                                       \
    X(embed_params, offsetof(sipp_embed_params, extra_json))                                     \
    X(engine_stats, offsetof(sipp_engine_stats, stalls))                                         \
    X(endpoint_info, offsetof(sipp_endpoint_info, vision))                                       \
    X(token_batch, offsetof(sipp_token_batch, done) + sizeof(bool))                              \
    X(estimate, sizeof(sipp_estimate))

/* The first-release size of struct `name`, e.g. SIPP__FIRST_SIZE(local_params). */
#define SIPP__FIRST_SIZE(name) SIPP__FIRST_SIZE_##name
#define SIPP__FIRST_SIZE_ENUM_(name, first) SIPP__FIRST_SIZE_##name = first,
enum { SIPP__STRUCTS(SIPP__FIRST_SIZE_ENUM_) };
#undef SIPP__FIRST_SIZE_ENUM_

/* The defaults of each struct, as values (inside the library sizes never cross the ABI). */
#define SIPP__DEFAULTS_DECL_(name, first) sipp_##name sipp__##name##_defaults(void);
SIPP__STRUCTS(SIPP__DEFAULTS_DECL_)
#undef SIPP__DEFAULTS_DECL_

/* The rule: `size` (a caller's struct_size) must lie in [first, full]; otherwise
 * INVALID_ARGUMENT naming `what` and saying which way it is off. */
sipp_status sipp__struct_size_ok(uint32_t size, size_t first, size_t full, const char *what,
                                 sipp_error *err);

/* An in-struct: copies the caller's struct over `dst` (filled with defaults, `full` bytes), its
 * first struct_size bytes, so fields the caller's header lacked keep their defaults;
 * dst->struct_size becomes `full`. The rule above first. */
sipp_status sipp__params_in(void *dst, size_t full, const void *src, size_t first,
                            const char *what, sipp_error *err);

/* An out-struct: copies `value` (`full` bytes) into the caller's `out`, no more than its
 * struct_size, which stays as the caller set it. The rule above first. */
sipp_status sipp__struct_out(void *out, const void *value, size_t full, size_t first,
                             const char *what, sipp_error *err);

/* ---- run channel (run.c) ----------------------------------------------------------------- */

/* Upper bound of text waiting for the consumer; a producer that sees sipp__run_backlog() at or
 * above it pauses that run (others go on). */
#define SIPP__RUN_BACKLOG_CAP (256u * 1024u)
/* Upper bound of a response's text. */
#define SIPP__RUN_TEXT_MAX (64u * 1024u * 1024u)

/* Called (from any thread, without run locks held) when the consumer cancels a run, so the
 * producer can wake up and act within one tick. */
typedef void (*sipp__run_wake_fn)(void *producer);

/* Creates a run with two references: the caller's (dropped by sipp_run_free) and the
 * producer's (dropped by sipp__run_finish). */
sipp_run *sipp__run_new(sipp_token_fn on_tokens, void *user_data);
void sipp__run_set_waker(sipp_run *run, sipp__run_wake_fn wake, void *producer);
/* Producer side. push_text appends generated text for the stream and the response. */
sipp_status sipp__run_push_text(sipp_run *run, const char *text, size_t len, uint32_t n_tokens);
size_t sipp__run_backlog(sipp_run *run);
/* Log-probabilities (issue 18): stages one output token's entry (copied). push_text publishes
 * staged entries in order, as many as its n_tokens (or fewer when fewer are staged), so each
 * batch carries the entries of the tokens it covers; entries never published (a matched stop
 * string's tokens) are not in the response. OUT_OF_MEMORY leaves the run as it was. */
sipp_status sipp__run_stage_logprob(sipp_run *run, const char *tok, size_t len, float logprob,
                                    const sipp_top_logprob *top, uint32_t n_top);
bool sipp__run_cancel_requested(const sipp_run *run);
/* Embedding result: takes ownership of `vec` (malloc'd, n floats). */
void sipp__run_set_embedding(sipp_run *run, float *vec, uint32_t n, bool normalized);
/* For a submission that failed after sipp__run_new: ends the run and drops both references, so
 * the caller never sees it and no callback runs. */
void sipp__run_discard(sipp_run *run, sipp_status st);
/* Remote endpoints: HTTP status, retry-after seconds, request id and the peer's error code of
 * the answer (strings may be NULL). */
void sipp__run_set_remote(sipp_run *run, uint32_t http_status, uint32_t retry_after_s,
                          const char *request_id, const char *error_code);
/* The request never reached the peer (sipp_run_not_sent). Before sipp__run_finish. */
void sipp__run_set_not_sent(sipp_run *run);
/* Tools and reasoning (issue 18). push_delta queues one stream delta (sipp_delta's fields);
 * a CONTENT delta is also pushed as text (push_text), a REASONING delta also appended to the
 * response's reasoning. set_tool_calls copies the final calls into the response. */
sipp_status sipp__run_push_delta(sipp_run *run, sipp_delta_kind kind, uint32_t tool_index,
                                 const char *tool_id, const char *tool_name, const char *text,
                                 size_t len, uint32_t n_tokens);
sipp_status sipp__run_set_tool_calls(sipp_run *run, const sipp_tool_call *calls, size_t n);
/* Sets the delta callback of a run before it is handed out (submission). */
void sipp__run_set_delta_fn(sipp_run *run, sipp_delta_fn fn, void *user_data);
/* Ends the run: status and message (message may be NULL on success), finish reason, usage,
 * stats. After this call the producer must not touch `run`. */
void sipp__run_finish(sipp_run *run, sipp_status status, const char *message,
                      sipp_finish_reason reason, const sipp_usage *usage, const sipp_stats *stats);
/* Calls `fn(ctx, response)` once when the run has ended (at once, on this thread, if it already
 * has; else on the producer's thread as it finishes, under the run's lock and before any waiter
 * wakes: fn must not call back into the run). `ctx` must outlive the run's producer:
 * the client layer passes its endpoint's signals (endpoints outlive their runs' producers). */
typedef void (*sipp__run_observer_fn)(void *ctx, const sipp_response *resp);
void sipp__run_observe(sipp_run *run, sipp__run_observer_fn fn, void *ctx);

/* ---- what an endpoint measured of its requests (signals.c) -------------------------------- */

typedef struct sipp__signals {
    pthread_mutex_t mu;
    double ttft_ms, total_ms, decode_tok_s, prefill_tok_s, error_rate, busy_rate;
    uint32_t n_ttft, n_total, n_decode, n_prefill, n_outcomes;
    uint32_t consecutive_failures;
    double last_failure_ms;
    double price_in, price_out; /* per million tokens; negative: not configured */
} sipp__signals;

typedef struct sipp__signals_view {
    sipp_figure ttft_ms, total_ms, decode_tok_s, prefill_tok_s, error_rate, busy_rate;
    sipp_figure price_in, price_out;
    bool healthy;
} sipp__signals_view;

void sipp__signals_init(sipp__signals *s);
void sipp__signals_destroy(sipp__signals *s);
/* One finished run (cancelled runs are not counted). */
void sipp__signals_record(sipp__signals *s, const sipp_response *r, double now_ms);
void sipp__signals_set_prices(sipp__signals *s, double in, double out);
void sipp__signals_read(sipp__signals *s, double now_ms, sipp__signals_view *out);

#endif
