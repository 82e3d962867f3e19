/*
 * sipp.h — the public C API of Sipp, a local-first runtime for hybrid AI applications.
 *
 * An application creates one sipp_client, registers endpoints on it (today: a local GGUF model
 * run by Sipp's engine on llama.cpp) and calls sipp_query(), sipp_chat() or sipp_embed() against
 * the endpoint it picked. Each call returns a sipp_run: tokens stream through a callback or a
 * pull iterator, sipp_run_wait() returns the final sipp_response, sipp_run_cancel() stops it.
 * Sipp never moves a request to another endpoint on its own.
 *
 * Conventions used throughout:
 *  - Every function that can fail returns a sipp_status (SIPP_OK = 0) and takes an optional
 *    caller-owned `sipp_error *err` as its last argument, filled on failure (may be NULL).
 *  - Plain-data structs start with `uint32_t struct_size`. Fill one with its init function,
 *    `sipp_X_init(&x, sizeof x)`: it writes the defaults of every field the caller's struct has
 *    and sets struct_size to `sizeof x`, so the size the caller was compiled with travels with
 *    the struct and is never baked into a call. One rule for struct sizes holds at every entry
 *    point: a struct_size smaller than this header's (a caller built against an older version,
 *    down to the first release's layout) is accepted and the fields it lacks take their
 *    defaults; a larger one (a caller built against a newer header than this library) is
 *    refused with SIPP_INVALID_ARGUMENT saying so. Structs the library fills (stats, info, token
 *    batches) are written only up to the caller's struct_size. Fields are only ever appended.
 *  - Names: `sipp_<noun>_<verb>` (sipp_client_add_local, sipp_run_wait, sipp_endpoint_get_info);
 *    the three operations an app runs are verbs on an endpoint: sipp_query(ep, ...),
 *    sipp_chat(ep, ...), sipp_embed(ep, ...). Status constants are SIPP_ plus their short name
 *    in capitals (SIPP_DEADLINE_EXCEEDED is "deadline_exceeded").
 *  - `sipp_X_free(NULL)` is a no-op. `*out` is NULL after every failed call that has one.
 *  - Thread-safety: the init functions, `*_name()`, `sipp_status_str()`, `sipp_version*()` and
 *    `sipp_free()` touch no shared state and may be called from any thread; every other function
 *    says what it allows.
 *  - Strings are UTF-8, NUL-terminated unless a length is given.
 *
 * This header includes only <stddef.h>, <stdint.h> and <stdbool.h>: no dependency types leak.
 */
#ifndef SIPP_H
#define SIPP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SIPP_BUILDING_LIBRARY) && defined(__GNUC__)
#define SIPP_API __attribute__((visibility("default")))
#else
#define SIPP_API
#endif

/* The version, written here and nowhere else: CMake, sipp.pc, the CMake package and the bindings
 * read it from these three lines. */
#define SIPP_VERSION_MAJOR 0
#define SIPP_VERSION_MINOR 1
#define SIPP_VERSION_PATCH 0

#define SIPP_STRINGIFY_(x) #x
#define SIPP_VERSION_STRING_(a, b, c) SIPP_STRINGIFY_(a) "." SIPP_STRINGIFY_(b) "." SIPP_STRINGIFY_(c)
/** "MAJOR.MINOR.PATCH" of this header. */
#define SIPP_VERSION_STRING                                                                         \
    SIPP_VERSION_STRING_(SIPP_VERSION_MAJOR, SIPP_VERSION_MINOR, SIPP_VERSION_PATCH)
/** This header's version as one comparable number, MAJOR * 10000 + MINOR * 100 + PATCH
 *  (0.1.0 is 100), for `#if SIPP_VERSION_NUM >= ...`. */
#define SIPP_VERSION_NUM (SIPP_VERSION_MAJOR * 10000 + SIPP_VERSION_MINOR * 100 + SIPP_VERSION_PATCH)

/** Returns the library version as "MAJOR.MINOR.PATCH". Static string. Thread-safety: any thread.
 *  Since 0.1. */
SIPP_API const char *sipp_version(void);

/** Returns the loaded library's SIPP_VERSION_NUM, which may differ from the header's when an app
 *  runs against a newer libsipp than it was built with. Thread-safety: any thread. Since 0.1. */
SIPP_API int sipp_version_num(void);

/* ============================================================================================
 * Status and errors
 * ========================================================================================== */

/*
 * The stable status table: X(NAME, number, short_name, description). NAME is short_name in
 * capitals; numbers are never reused; new statuses are appended.
 */
#define SIPP_STATUS_TABLE(X)                                                                        \
    X(OK, 0, "ok", "success")                                                                       \
    X(INVALID_ARGUMENT, 1, "invalid_argument", "an argument or option is invalid")                  \
    X(NOT_FOUND, 2, "not_found", "the named file, model or endpoint does not exist")                \
    X(UNSUPPORTED, 3, "unsupported", "the endpoint or model cannot do this operation")              \
    X(MODEL_INVALID, 4, "model_invalid", "the file is not a valid or loadable model")               \
    X(OUT_OF_MEMORY, 5, "out_of_memory", "memory could not be allocated")                          \
    X(BUSY, 6, "busy", "too many requests are queued or running")                                  \
    X(CANCELLED, 7, "cancelled", "the run was cancelled")                                          \
    X(DEADLINE_EXCEEDED, 8, "deadline_exceeded", "the run did not finish before its deadline")              \
    X(CONTEXT_OVERFLOW, 9, "context_overflow", "the prompt does not fit the context")              \
    X(IO_ERROR, 10, "io_error", "a file could not be read or written")                                   \
    X(INTERNAL, 11, "internal", "an internal error occurred")                                      \
    X(CLOSED, 12, "closed", "the client or endpoint was closed")                                   \
    X(TIMEOUT, 13, "timeout", "the wait timed out; the run goes on")                               \
    X(AUTHENTICATION, 14, "authentication", "the remote peer rejected the credentials")            \
    X(AUTHORIZATION, 15, "authorization", "the credentials may not use this model or route")       \
    X(RATE_LIMITED, 16, "rate_limited", "the remote peer's rate limit was hit; retry later")      \
    X(QUOTA_EXCEEDED, 17, "quota_exceeded", "the account's quota or budget is used up")                    \
    X(MODEL_NOT_FOUND, 18, "model_not_found", "the remote peer does not know the model")          \
    X(OVERLOADED, 19, "overloaded", "the remote peer is overloaded or unavailable")               \
    X(UPSTREAM_ERROR, 20, "upstream_error", "the remote peer failed or answered something invalid")     \
    X(TRANSPORT, 21, "transport", "the connection failed or broke")                               \
    X(UPSTREAM_TIMEOUT, 22, "upstream_timeout", "the remote request timed out")                 \
    X(NO_ROUTE, 23, "no_route", "no endpoint passes the routing policy's rules")

/** Status codes. SIPP_OK is 0, errors are positive. */
typedef enum sipp_status {
#define SIPP_STATUS_ENUM_(name, num, short_name, desc) SIPP_##name = num,
    SIPP_STATUS_TABLE(SIPP_STATUS_ENUM_)
#undef SIPP_STATUS_ENUM_
} sipp_status;

/** Short stable name of a status ("invalid_argument"), or "unknown". Static string. Since 0.1. */
SIPP_API const char *sipp_status_name(sipp_status status);
/** Human description of a status. Static string. Since 0.1. */
SIPP_API const char *sipp_status_str(sipp_status status);

#define SIPP_ERROR_MESSAGE_CAP 256

/**
 * Error details, owned by the caller. Initialise with sipp_error_init(&err, sizeof err). Filled by a failing call: `code` repeats the returned status, `subcode` carries an
 * errno or HTTP status when one applies (else 0), `message` is a one-line explanation.
 */
typedef struct sipp_error {
    uint32_t struct_size;
    sipp_status code;
    int32_t subcode;
    char message[SIPP_ERROR_MESSAGE_CAP];
} sipp_error;

/**
 * Fills the caller's struct with defaults and sets its struct_size to `size` (pass `sizeof *p`).
 * The same contract holds for every `sipp_X_init` below: `size` smaller than this library's
 * struct (an older header) fills the fields that fit, down to the first release's layout;
 * larger (a newer header) or smaller than that is SIPP_INVALID_ARGUMENT and writes nothing, as
 * is a NULL `p`. Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_error_init(sipp_error *p, size_t size);

/** Frees memory that Sipp handed to the caller with "free with sipp_free()". NULL is a no-op. */
SIPP_API void sipp_free(void *ptr);

/* ============================================================================================
 * Client and endpoints
 * ========================================================================================== */

typedef struct sipp_client sipp_client;
/**
 * A registered endpoint: a handle owned by its client and valid until sipp_client_free(),
 * whatever happens to the endpoint meanwhile (libuv's handles and their close are the model).
 * Removing the endpoint, or re-adding its id, closes it: its runs are cancelled, its model is
 * unloaded, and every later call on the handle fails with SIPP_CLOSED instead of touching freed
 * memory, so a thread that still holds the handle after another removed it is safe. A closed
 * handle keeps only its small shell until the client is freed.
 */
typedef struct sipp_endpoint sipp_endpoint;

/** Log levels. Messages from llama.cpp are included. */
typedef enum sipp_log_level {
    SIPP_LOG_NONE = 0,
    SIPP_LOG_ERROR = 1,
    SIPP_LOG_WARN = 2,
    SIPP_LOG_INFO = 3,
    SIPP_LOG_DEBUG = 4,
} sipp_log_level;

/**
 * Sets the log level of the whole process: messages at or above it go to stderr, from every
 * client and from llama.cpp (whose logging is process-wide too). The default is SIPP_LOG_ERROR,
 * or what the environment variable SIPP_LOG (none|error|warn|info|debug) says.
 * Thread-safety: any thread; it takes effect for messages logged after it returns. Since 0.1.
 */
SIPP_API void sipp_log_set(sipp_log_level level);

typedef struct sipp_client_params {
    uint32_t struct_size;
    /** Kept for the first release's layout. A value other than SIPP_LOG_ERROR (the default)
     *  calls sipp_log_set() with it: the level is the process's, never this client's. */
    sipp_log_level log_level;
} sipp_client_params;

/** Default client parameters (see sipp_error_init() for the contract). Since 0.1. */
SIPP_API sipp_status sipp_client_params_init(sipp_client_params *p, size_t size);

/**
 * Creates a client.
 * @param params  may be NULL for defaults.
 * @param out     receives the client (NULL on failure); free it with sipp_client_free().
 * Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_client_new(const sipp_client_params *params, sipp_client **out,
                                     sipp_error *err);

/**
 * Frees a client: cancels every outstanding run of every endpoint (each still gets its terminal
 * state), stops engine threads and unloads models. Runs must still be freed with sipp_run_free().
 * Thread-safety: no other call on this client may be in progress or follow. Since 0.1.
 */
SIPP_API void sipp_client_free(sipp_client *client);

/** Called from the loading thread with progress in [0, 1]. Return false to abort the load. */
typedef bool (*sipp_load_progress_fn)(float progress, void *user_data);

/** A local GGUF model run by Sipp's engine. */
typedef struct sipp_local_params {
    uint32_t struct_size;
    /** Path to the GGUF file (the first shard for split models), or the name of a model pulled
     *  with `sipp pull` (OWNER/REPO[:QUANT], OWNER/REPO/FILE.gguf; see sipp_model_resolve()).
     *  Required. Copied. */
    const char *model_path;
    /** Context size in tokens per sequence. 0 = the model's training context, capped at 4096. */
    uint32_t n_ctx;
    /** Threads for decoding and prompt processing. 0 = one per physical core guess. */
    int32_t n_threads;
    /** Largest number of tokens submitted to llama.cpp in one step. 0 = 512. */
    uint32_t n_batch;
    /** Layers to offload to the GPU when the build has a GPU backend; -1 = all, 0 = none. */
    int32_t n_gpu_layers;
    /** Sequences decoded together. 0 = 4. */
    uint32_t n_parallel;
    /** Optional load progress callback (called on the thread of sipp_client_add_local()). */
    sipp_load_progress_fn progress;
    void *progress_user_data;
    /** Requests admitted into sequences at once; 0 = n_parallel (and never more). Since 0.1. */
    uint32_t max_running;
    /** Requests waiting for a sequence; past it, requests fail at once with SIPP_BUSY.
     *  0 = 256. Since 0.1. */
    uint32_t max_queued;
    /** Tokens decoded per engine tick (decode tokens first, prompt chunks fill the rest);
     *  0 = n_batch. Since 0.1. */
    uint32_t tick_budget;
    /** Most prompt tokens one request prefills per tick while other sequences decode: an
     *  upper bound on top of the budget itl_target_ms chooses. 0 = no bound beyond it
     *  (see docs/engine.md). */
    uint32_t prefill_chunk;
    /** Generated text a run holds for a consumer that does not read; when it is reached the
     *  run's sequence pauses (others go on) until the consumer reads. 0 = 256 KiB. */
    uint32_t stream_buffer_bytes;
    /** When a sequence fills its context: false (default) ends the run with finish reason
     *  `length`; true keeps the first n_keep tokens, drops the older half of the rest and goes
     *  on (not for recurrent or hybrid models). Since 0.1. */
    bool context_shift;
    /** Tokens kept at the start when the context shifts (0 = 0; capped at half the context). */
    uint32_t n_keep;
    /** RAM budget of prefix snapshots of evicted sequences, in bytes. 0 = 1 GiB;
     *  SIPP_CACHE_DISABLED turns snapshots off. Since 0.1. */
    uint64_t cache_ram_bytes;
    /** Directory of the disk tier of prefix snapshots (survives restarts); NULL = none. Copied.
     *  Since 0.1. */
    const char *cache_dir;
    /** Disk budget of the snapshot directory in bytes. 0 = 4 GiB. Since 0.1. */
    uint64_t cache_disk_bytes;
    /** Pin: the SHA-256 the model file must have, as 64 hex digits (either case), or NULL for
     *  no pin. When set, the whole file is hashed before anything else reads it; a different
     *  hash is SIPP_MODEL_INVALID ("sha256 mismatch: expected ..., file has ...") and the model
     *  is not loaded. Text that is not 64 hex digits is SIPP_INVALID_ARGUMENT. Copied. Since 0.1
     *  (appended: callers built with an older header keep working, with no pin). */
    const char *sha256;
    /** Watchdog: when requests are waiting or running and the scheduler has not finished a round
     *  for this long (a llama_decode that does not return, a wedged GPU driver), the engine logs
     *  an error, counts a stall (sipp_engine_stats.stalls) and reports `stalled` until the next
     *  round ends, when it logs the recovery. It only observes: nothing is cancelled. 0 = 60000
     *  ms; SIPP_STALL_ALARM_OFF = no watchdog. Since 0.1 (appended). */
    uint32_t stall_alarm_ms;
    /** Multimodal: the projector GGUF of the model (llama.cpp's `mmproj`: a vision projector
     *  and/or an audio encoder), or NULL for a text-only endpoint. It must be made for this
     *  model (its output width is the model's n_embd); a file that is not a GGUF or does not
     *  match is SIPP_MODEL_INVALID naming it. Copied. Appended (docs/multimodal.md).
     *  NULL for a model pulled with `sipp pull` (its name, or the path the store gives it)
     *  loads the projector the pull stored beside it, if any; one that cannot be loaded leaves
     *  a text-only endpoint (media requests say why). "" loads none (docs/models.md). */
    const char *mmproj;
    /* ---- latency-driven prefill budget and resident sequences (issue 15) ---- */
    /** Inter-token latency target in ms for decoding sequences while a prompt is prefilled:
     *  each tick carries as many prompt tokens as the engine's online cost model predicts fit
     *  in this time beside the decode tokens (with nobody decoding a prompt takes the whole
     *  batch). 0 = 400 (see docs/engine.md). Since 0.2 (appended). */
    uint32_t itl_target_ms;
    /** Sequences kept in memory, warm under their context keys: more than n_parallel lets
     *  more conversations than decode slots continue without a snapshot restore, at
     *  n_ctx tokens of KV cache each. 0 = n_parallel. Since 0.2 (appended). */
    uint32_t n_resident;
} sipp_local_params;

/** Value of sipp_local_params.stall_alarm_ms that turns the engine watchdog off. */
#define SIPP_STALL_ALARM_OFF UINT32_MAX

/** Value of sipp_local_params.cache_ram_bytes that turns prefix snapshots off. */
#define SIPP_CACHE_DISABLED UINT64_MAX

/** Default local-endpoint parameters (model_path NULL; see sipp_error_init() for the
 *  contract). Since 0.1. */
SIPP_API sipp_status sipp_local_params_init(sipp_local_params *p, size_t size);

/**
 * Registers a local model endpoint under `id` and loads the model (blocking).
 * Re-adding the id of a local endpoint swaps it: the new model loads first (the old one serves
 * meanwhile), then the id names the new endpoint and the old handle answers SIPP_CLOSED to new
 * requests, while runs already submitted on it stream on to their own end (not cancelled); its
 * model is freed after the last one ended (or when the client is freed, which cancels them).
 * Re-adding over a remote endpoint replaces it and cancels its runs.
 * @param out  optional; receives the endpoint, owned by the client.
 * Before llama.cpp reads the file, Sipp checks the pin (`sha256`, when set) and the file's
 * whole GGUF structure (docs/reliability.md, section A).
 * `model_path` goes through sipp_model_resolve() first, so a pulled name works.
 * Errors: NOT_FOUND (no such file, or a name that was not pulled: the message says
 * `sipp pull NAME`), MODEL_INVALID (not a GGUF, truncated, inconsistent metadata
 * or tensor table, sha256 mismatch, or llama.cpp refused it), INVALID_ARGUMENT.
 * Thread-safety: calls on one client are serialised internally. Since 0.1.
 */
SIPP_API sipp_status sipp_client_add_local(sipp_client *client, const char *id,
                                           const sipp_local_params *params, sipp_endpoint **out,
                                           sipp_error *err);

/** Cloud or OpenAI-compatible providers. */
typedef enum sipp_provider_kind {
    SIPP_PROVIDER_OPENAI = 1,            /**< api.openai.com (or base_url) */
    SIPP_PROVIDER_OPENAI_COMPATIBLE = 2, /**< any OpenAI-shaped server: vLLM, llama-server, Ollama... */
    SIPP_PROVIDER_ANTHROPIC = 3,         /**< Anthropic's messages API (chat only). Since 0.1. */
} sipp_provider_kind;

/** A provider endpoint. Strings are copied. */
typedef struct sipp_provider_params {
    uint32_t struct_size;
    sipp_provider_kind kind;
    /** The provider's model name. Required. */
    const char *model;
    /** Base URL including the API version path, e.g. "https://api.openai.com/v1" (the default for
     *  SIPP_PROVIDER_OPENAI; required for openai_compatible). https unless loopback; no
     *  userinfo, query or fragment. */
    const char *base_url;
    /** The API key, or NULL to read it from the environment variable api_key_env (default
     *  OPENAI_API_KEY for openai; none for openai_compatible). Never appears in errors or logs. */
    const char *api_key;
    const char *api_key_env;
    /** Timeouts in ms: connecting, the whole request, and silence within a stream. 0 = 10 s,
     *  none, 60 s. */
    uint32_t connect_timeout_ms;
    uint32_t request_timeout_ms;
    uint32_t idle_timeout_ms;
    /** Anthropic only: the `anthropic-version` header; NULL = "2023-06-01". Since 0.1. */
    const char *version;
    /** Static headers sent with every request, as "Name: value" lines (copied). Names that the
     *  adapter sets itself (Authorization, x-api-key, anthropic-version, Content-Type) are
     *  rejected. Values are treated as secrets. Since 0.1. */
    const char *const *headers;
    size_t n_headers;
    /** The network policy of this endpoint's connections, checked on every address connected
     *  to (after DNS, so a name that resolves to a refused address is refused too) and on an
     *  IP-literal base_url when the endpoint is added. Loopback and public addresses are always
     *  allowed; cloud metadata services (169.254.169.254, fd00:ec2::254, ...) and reserved
     *  addresses never. false (default): private networks (10/8, 172.16/12, 192.168/16,
     *  100.64/10, fc00::/7) and link-local addresses (169.254/16, fe80::/10) are refused with
     *  INVALID_ARGUMENT. true: they are allowed, and plain http is allowed to them (a vLLM on
     *  the LAN); plain http to a public address is still refused. Since 0.1. */
    bool allow_private_network;
} sipp_provider_params;

/** Default provider parameters (see sipp_error_init() for the contract). Since 0.1. */
SIPP_API sipp_status sipp_provider_params_init(sipp_provider_params *p, size_t size);

/**
 * Registers a provider endpoint under `id` (replacing an endpoint of that id). Nothing is sent
 * until the first request.
 * - openai / openai_compatible: query -> {base}/completions, chat -> {base}/chat/completions,
 *   embed -> {base}/embeddings. The key goes in `Authorization: Bearer`.
 * - anthropic: chat -> {base}/messages (base default "https://api.anthropic.com/v1"; key from
 *   api_key or api_key_env, default ANTHROPIC_API_KEY, sent as `x-api-key`). System messages
 *   become the `system` field. query (raw completion) and embed do not exist there: they fail up
 *   front with UNSUPPORTED. top_p is sent only when changed from its default.
 * Options of the local engine (context_key, cache_scope, grammar, ignore_eos, and
 * top_k/min_p/repeat_penalty changed from their defaults) are rejected with INVALID_ARGUMENT
 * naming the field. Thread-safety: as sipp_client_add_local(). Since 0.1.
 */
SIPP_API sipp_status sipp_client_add_provider(sipp_client *client, const char *id,
                                              const sipp_provider_params *params,
                                              sipp_endpoint **out, sipp_error *err);

/** How a gateway endpoint authenticates. */
typedef enum sipp_gateway_auth {
    SIPP_GATEWAY_AUTH_NONE = 0,   /**< no credentials */
    SIPP_GATEWAY_AUTH_BEARER = 1, /**< `Authorization: Bearer <token>` (the default) */
    SIPP_GATEWAY_AUTH_HEADER = 2, /**< `<auth_header>: <token>` (a proxy in front of the gateway) */
} sipp_gateway_auth;

/** A Sipp gateway endpoint (docs/gateway-protocol.md, Sipp profile). Strings are copied. */
typedef struct sipp_gateway_params {
    uint32_t struct_size;
    /** The gateway's public listener, e.g. "https://gw.example.com" (routes /v1/query, /v1/chat,
     *  /v1/embed are appended). https unless loopback; no userinfo, query or fragment. Required. */
    const char *base_url;
    /** The gateway's target name (its `[[targets]] name`). Required. */
    const char *target;
    sipp_gateway_auth auth;
    /** The token, or NULL to read it from the environment variable token_env (default
     *  SIPP_GATEWAY_TOKEN). Required unless auth is NONE. Never appears in errors or logs. */
    const char *token;
    const char *token_env;
    /** The header name of SIPP_GATEWAY_AUTH_HEADER, e.g. "X-Api-Key". */
    const char *auth_header;
    /** Static headers sent with every request, "Name: value" lines (copied, treated as
     *  secrets). */
    const char *const *headers;
    size_t n_headers;
    /** Timeouts in ms: connecting, the whole request, silence within a stream (the gateway
     *  sends a heartbeat every 15 s by default). 0 = 10 s, none, 60 s. */
    uint32_t connect_timeout_ms;
    uint32_t request_timeout_ms;
    uint32_t idle_timeout_ms;
    /** The network policy, as sipp_provider_params.allow_private_network: false refuses a
     *  gateway on a private or link-local address. Since 0.1. */
    bool allow_private_network;
} sipp_gateway_params;

/** Default gateway parameters (auth BEARER from SIPP_GATEWAY_TOKEN; see sipp_error_init() for
 *  the contract). Since 0.1. */
SIPP_API sipp_status sipp_gateway_params_init(sipp_gateway_params *p, size_t size);

/**
 * Registers a Sipp gateway endpoint under `id` (replacing an endpoint of that id). Nothing is
 * sent until the first request. Requests stream as SSE (`token`, `usage`, `done`, `error`
 * events); error envelopes become statuses: authentication -> AUTHENTICATION, authorization and
 * blocked -> AUTHORIZATION, rate_limited -> RATE_LIMITED (with retry_after_s), admission ->
 * BUSY, resolution -> MODEL_NOT_FOUND, invalid_json / invalidrequest / payload_too_large ->
 * INVALID_ARGUMENT, execution -> UPSTREAM, cancelled -> CANCELLED; the response keeps the HTTP
 * status and the envelope's code (sipp_response.error_code). An incoming x-request-id is kept in
 * sipp_response.request_id. Local-only options are rejected as for providers.
 * Thread-safety: as sipp_client_add_local(). Since 0.1.
 */
SIPP_API sipp_status sipp_client_add_gateway(sipp_client *client, const char *id,
                                             const sipp_gateway_params *params,
                                             sipp_endpoint **out, sipp_error *err);

/** Looks an endpoint up by id: the open endpoint registered under `id`, or NULL if none.
 *  Thread-safety: any thread. Since 0.1. */
SIPP_API sipp_endpoint *sipp_client_get_endpoint(sipp_client *client, const char *id);

/**
 * Removes an endpoint: closes it (see sipp_endpoint), cancels its runs, waits for their end and
 * unloads its model. Handles to it stay valid and answer SIPP_CLOSED; so does the handle of an
 * id that sipp_client_add_*() replaced (a swapped local one's runs finish: see
 * sipp_client_add_local()). A run submitted on another thread while the endpoint
 * closes either started before (and is cancelled) or fails with SIPP_CLOSED.
 * Errors: NOT_FOUND (no open endpoint has that id). Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_client_remove(sipp_client *client, const char *id, sipp_error *err);

/** What an endpoint can do. */
typedef struct sipp_endpoint_info {
    uint32_t struct_size;
    bool can_generate;   /**< query works (decoder model) */
    bool can_chat;       /**< the model carries a chat template */
    bool can_embed;      /**< embed works */
    uint32_t n_ctx;      /**< context per sequence */
    uint32_t n_ctx_train;
    uint32_t n_embd;     /**< embedding dimension */
    uint32_t n_parallel;
    uint64_t n_params;
    uint64_t size_bytes;
    char architecture[64];
    char description[128]; /**< llama.cpp's model description, e.g. "llama 1B Q4_K - Medium" */
    /* appended (multimodal, docs/multimodal.md) */
    bool vision;    /**< images in query/chat (a vision projector is loaded) */
    bool audio_in;  /**< audio in query/chat (an audio encoder is loaded) */
    bool audio_out; /**< speech out (not yet: always false for local endpoints) */
} sipp_endpoint_info;

/** Engine counters of an endpoint since it was added. */
typedef struct sipp_engine_stats {
    uint32_t struct_size;
    uint32_t running;          /**< requests in sequences now */
    uint32_t queued;           /**< requests waiting for a sequence now */
    uint64_t completed;        /**< runs ended with status OK (cancelled ones included) */
    uint64_t cancelled;
    uint64_t failed;           /**< runs ended with an error status */
    uint64_t rejected_busy;    /**< submissions refused with SIPP_BUSY */
    uint64_t prompt_tokens;    /**< prompt tokens computed */
    uint64_t generated_tokens;
    uint64_t ticks;            /**< llama_decode calls of the scheduler */
    uint64_t batch_tokens;     /**< tokens over all ticks */
    double batch_fill;         /**< batch_tokens / (ticks * tick_budget), in [0, 1] */
    uint64_t cache_hits;       /**< keyed requests that reused a prefix (live or snapshot) */
    uint64_t cache_misses;     /**< keyed requests that computed everything */
    uint64_t cache_evictions;  /**< warm sequences given to another key */
    uint64_t cache_ram_bytes;  /**< snapshot bytes in RAM */
    uint64_t cache_disk_bytes; /**< snapshot bytes on disk */
    /* appended; a caller's smaller struct (struct_size) gets the fields it has */
    uint64_t stalls;           /**< times the watchdog saw no round for stall_alarm_ms with work */
    uint32_t stalled;          /**< 1 while it sees that now */
    /* appended (multimodal) */
    uint64_t media_encoded;    /**< media chunks encoded (images, audio clips) */
    double media_encode_ms;    /**< time spent encoding them */
} sipp_engine_stats;

/** An empty stats struct to fill (see sipp_error_init() for the contract). Since 0.1. */
SIPP_API sipp_status sipp_engine_stats_init(sipp_engine_stats *p, size_t size);
/** Reads the engine counters of an endpoint. Thread-safety: any thread. Since 0.1. */
SIPP_API sipp_status sipp_endpoint_get_stats(const sipp_endpoint *ep, sipp_engine_stats *out,
                                             sipp_error *err);

/** An empty info struct to fill (see sipp_error_init() for the contract). Since 0.1. */
SIPP_API sipp_status sipp_endpoint_info_init(sipp_endpoint_info *p, size_t size);
/** Fills `out` (caller-owned, from sipp_endpoint_info_init()) up to its struct_size.
 *  Thread-safety: any thread. Since 0.1. */
SIPP_API sipp_status sipp_endpoint_get_info(const sipp_endpoint *ep, sipp_endpoint_info *out,
                                            sipp_error *err);

/* ============================================================================================
 * Requests
 * ========================================================================================== */

#define SIPP_MAX_STOP_STRINGS 16

/* ============================================================================================
 * Tools, reasoning and stream deltas (issue 18)
 *
 * A chat may offer the model tools (sipp_text_params.tools): each a name, a description and a
 * JSON Schema of its arguments. The model answers with text, with tool calls, or both; the
 * response's `tool_calls` lists the calls (finish reason SIPP_FINISH_TOOL_CALLS), and the app
 * runs them and sends each result back as a message with role "tool" naming the call's id
 * (sipp_chat_ex). A thinking model's reasoning is separated from the answer into `reasoning`
 * unless reasoning_mode says otherwise. Local endpoints render tools with the model's own chat
 * template and parse the output with llama.cpp's chat parser (docs/tools.md).
 * ========================================================================================== */

/** Which tools the model may or must call. */
typedef enum sipp_tool_choice {
    SIPP_TOOL_CHOICE_AUTO = 0,     /**< text or calls, the model decides (default) */
    SIPP_TOOL_CHOICE_NONE = 1,     /**< no calls: the tools are still described to the model */
    SIPP_TOOL_CHOICE_REQUIRED = 2, /**< at least one call (local: forced by a grammar) */
    SIPP_TOOL_CHOICE_NAMED = 3,    /**< a call of tool_choice_name (local: forced by a grammar) */
} sipp_tool_choice;

/** What becomes of a thinking model's reasoning text. */
typedef enum sipp_reasoning_mode {
    SIPP_REASONING_SEPARATE = 0, /**< into sipp_response.reasoning and REASONING deltas (default) */
    SIPP_REASONING_INLINE = 1,   /**< left in the text, as the model wrote it (tags included) */
    SIPP_REASONING_DROP = 2,     /**< parsed out and discarded */
} sipp_reasoning_mode;

/** A tool the model may call. An element of an array: its layout is frozen (no struct_size). */
typedef struct sipp_tool {
    const char *name;        /**< required; [A-Za-z0-9_-], 1 to 64 bytes; unique in the array */
    const char *description; /**< may be NULL */
    /** JSON Schema of the arguments, as JSON text: an object schema ({"type": "object", ...}).
     *  NULL = no arguments. */
    const char *parameters;
} sipp_tool;

/** A tool call: made by the model (sipp_response.tool_calls) or sent back in an assistant
 *  message (sipp_chat_message.tool_calls). An array element: its layout is frozen. */
typedef struct sipp_tool_call {
    const char *id;        /**< the call's id, unique in the conversation (9 letters and digits
                                when Sipp makes one up because the model's format has none:
                                Mistral's templates accept no other id) */
    const char *name;      /**< the tool's name */
    const char *arguments; /**< the arguments as JSON text (an object) */
} sipp_tool_call;

/** A chat message of sipp_chat_ex(). An array element: its layout is frozen. Roles: "system",
 *  "user", "assistant" (content and/or tool_calls) and "tool" (a result: content is the
 *  result's text, tool_call_id the id of the assistant's call it answers). */
typedef struct sipp_chat_message {
    const char *role;
    const char *content;              /**< may be NULL for an assistant turn of calls only */
    const sipp_tool_call *tool_calls; /**< assistant: the calls it made; NULL = none */
    size_t n_tool_calls;
    const char *tool_call_id;         /**< tool: the call this result answers */
    const char *reasoning;            /**< assistant: its earlier reasoning (may be NULL) */
} sipp_chat_message;

/** What a stream delta carries. */
typedef enum sipp_delta_kind {
    SIPP_DELTA_CONTENT = 0,   /**< answer text (the same text on_tokens gets) */
    SIPP_DELTA_REASONING = 1, /**< reasoning text (SIPP_REASONING_SEPARATE only) */
    SIPP_DELTA_TOOL_CALL = 2, /**< a piece of tool call `tool_index`: the first delta of a call
                                   carries its id and name, later ones pieces of the arguments */
} sipp_delta_kind;

/**
 * One piece of a streamed chat, in the order the model produced it (OpenAI's stream shape:
 * text, reasoning and tool calls interleave as generated; the arguments of one call arrive in
 * order and concatenate to the final `arguments`). Strings are valid during the callback only.
 */
typedef struct sipp_delta {
    uint32_t struct_size;
    sipp_delta_kind kind;
    const char *text;     /**< content, reasoning or an arguments piece; "" when none */
    size_t len;
    uint32_t tool_index;  /**< TOOL_CALL: index of the call in sipp_response.tool_calls */
    const char *tool_id;  /**< TOOL_CALL: the call's id on its first delta, else NULL */
    const char *tool_name; /**< TOOL_CALL: the tool's name on its first delta, else NULL */
} sipp_delta;

/** Called with each delta, on the thread that calls sipp_run_wait(), in order. */
typedef void (*sipp_delta_fn)(const sipp_delta *delta, void *user_data);


/**
 * Called with a batch of newly generated text: complete UTF-8, never containing end-of-generation
 * text or any part of a matched stop string. `n_tokens` is the number of tokens the batch covers.
 * Called on the thread that calls sipp_run_wait() (see there).
 */
typedef void (*sipp_token_fn)(const char *text, size_t len, uint32_t n_tokens, void *user_data);

/* ---- Multimodal: media parts (docs/multimodal.md) ----------------------------------------- */

/** The text that marks where a media part goes in a query prompt or a chat message. */
#define SIPP_MEDIA_MARKER "<__media__>"

typedef enum sipp_media_kind {
    SIPP_MEDIA_IMAGE = 1, /**< an encoded image: PNG, JPEG, GIF or BMP */
    SIPP_MEDIA_AUDIO = 2, /**< encoded audio: WAV, MP3 or FLAC */
} sipp_media_kind;

/**
 * One media part of a query or chat (sipp_text_params.media). The bytes are the encoded file;
 * they are read during the call (not kept). Placement: each SIPP_MEDIA_MARKER in the prompt (or
 * in the content of the message the part belongs to) takes the next part, in order; a prompt or
 * message with parts and no marker gets one marker per part in front of its text, as llama.cpp's
 * own tools do. A marker count that is neither 0 nor the part count is INVALID_ARGUMENT.
 */
typedef struct sipp_media {
    sipp_media_kind kind;
    const void *data;
    size_t len;
    /** "image/png", "image/jpeg", "audio/wav", ...; NULL = told by the bytes. A type that the
     *  bytes contradict is INVALID_ARGUMENT. */
    const char *mime_type;
    /** chat: the index of the message the part belongs to; query: ignored */
    size_t message_index;
} sipp_media;

/** Options of query and chat. Fill with sipp_text_params_init(). */
typedef struct sipp_text_params {
    uint32_t struct_size;
    /** Maximum tokens to generate; must be >= 1. Default 256. */
    uint32_t max_tokens;
    /** Sampling temperature >= 0; 0 = greedy. Default 0.8. */
    float temperature;
    /** Top-k; 0 = off. Default 40. */
    int32_t top_k;
    /** Nucleus sampling in [0, 1]; 1 = off. Default 0.95. */
    float top_p;
    /** Min-p in [0, 1]; 0 = off. Default 0.05. */
    float min_p;
    /** Repetition penalty > 0; 1 = off. Default 1.0. */
    float repeat_penalty;
    /** Sampler seed; 0xFFFFFFFF = random. Default 0xFFFFFFFF. */
    uint32_t seed;
    /** Stop strings (not copied: valid until the call returns, which copies them). */
    const char *const *stop;
    size_t n_stop;
    /** Local-only: names a workflow (a document, a conversation). Its sequence stays warm after
     *  the run; a later request with the same key (and scope) computes only what is new. */
    const char *context_key;
    /** Local-only: the caller identity that scopes context_key (a gateway sets one per caller);
     *  state is never shared across scopes. NULL = "". Since 0.1. */
    const char *cache_scope;
    /** Local-only: a GBNF grammar constraining the output. */
    const char *grammar;
    /** Structured output: a JSON schema the answer must satisfy, on every endpoint kind (local:
     *  llama.cpp's grammar; OpenAI-shaped: response_format; Anthropic: a forced tool; gateway:
     *  its json_schema field; docs/api.md). It is converted with llama.cpp's converter for
     *  every kind first: an unenforceable schema is INVALID_ARGUMENT with the reason, never
     *  ignored. Exclusive with `grammar`. */
    const char *json_schema;
    /** Optional streaming callback. */
    sipp_token_fn on_tokens;
    void *user_data;
    /** Deadline in milliseconds from submission; 0 = none. A run past it ends with status
     *  SIPP_DEADLINE_EXCEEDED (the text so far is kept). Since 0.1. */
    uint32_t timeout_ms;
    /** Local-only: never sample an end-of-generation token, so the run always produces
     *  max_tokens (benchmarks; llama-server's `ignore_eos`). Since 0.1. */
    bool ignore_eos;
    /** Remote-only: a JSON object of endpoint-specific options merged into the request body
     *  (e.g. {"presence_penalty": 0.5} for OpenAI, {"metadata": {...}} for Anthropic). It may not
     *  set a field Sipp types itself (model, prompt, messages, max_tokens, temperature, top_p,
     *  stop, stream, input, and the adapter's own: stream_options, seed, system,
     *  stop_sequences): such a key is INVALID_ARGUMENT naming it. Local endpoints reject it.
     *  Since 0.1. */
    const char *extra_json;
    /** Remote-only: sent as the `x-request-id` header so the peer's logs and the caller's
     *  agree (a gateway passes its own request id on this way). Printable ASCII, at most 128
     *  bytes; NULL = none. Local endpoints ignore it. Since 0.1. */
    const char *request_id;
    /* appended (issue 18, log-probabilities; see "Log-probabilities" below) */
    /** Report each output token's log-probability (sipp_response.logprobs and, per batch,
     *  sipp_token_batch.logprobs / sipp_run_batch_logprobs()). Local endpoints and remotes that
     *  return them (OpenAI, OpenAI-compatible, a Sipp gateway); Anthropic has none:
     *  UNSUPPORTED. Default false. Since 0.1. */
    bool logprobs;
    /** With logprobs: the N most likely alternatives of each position, 0..SIPP_MAX_TOP_LOGPROBS
     *  (more is INVALID_ARGUMENT, as is N > 0 without logprobs). Default 0. Since 0.1. */
    uint32_t top_logprobs;
    /** Multimodal (appended): media parts, see sipp_media. An endpoint that cannot take a part's
     *  kind fails with SIPP_UNSUPPORTED naming it (a text-only model, a provider without
     *  images). Not copied: valid until the call returns. */
    const sipp_media *media;
    size_t n_media;
    /* ---- tools and reasoning (issue 18; see the section "Tools, reasoning and stream
     * deltas"). Appended: callers built with an older header get no tools, tool_choice auto,
     * parallel calls on, reasoning separated and no delta callback. ---- */
    /** Tools the model may call; not copied (valid until the call returns, which copies
     *  them). At most SIPP_MAX_TOOLS; names unique; parameters an object schema. */
    const sipp_tool *tools;
    size_t n_tools;
    /** Default SIPP_TOOL_CHOICE_AUTO. REQUIRED and NAMED need tools. */
    sipp_tool_choice tool_choice;
    /** SIPP_TOOL_CHOICE_NAMED: the tool that must be called (one of `tools`). */
    const char *tool_choice_name;
    /** More than one call in one answer. Default true. */
    bool parallel_tool_calls;
    /** A thinking model's reasoning: separate (default), inline or drop. */
    sipp_reasoning_mode reasoning_mode;
    /** Optional: every streamed piece (content, reasoning, tool-call deltas) in order. */
    sipp_delta_fn on_delta;
    void *delta_user_data;
    /* ---- reasoning budget (issue 18). Appended: callers built with an older header get an
     * unlimited budget. ---- */
    /** A thinking model's reasoning, in tokens: -1 = unlimited (default); 0 = no thinking (a
     *  template that reads `enable_thinking`, such as Qwen3's, renders the thinking closed; the
     *  sampler closes any block the model opens); N > 0 = at most N tokens, then llama.cpp's
     *  reasoning-budget sampler forces the end tag. Chat only. UNSUPPORTED when N > 0 and the
     *  model's template has no reasoning block, and on provider endpoints (a Sipp gateway
     *  endpoint passes it on). Below -1 is INVALID_ARGUMENT. Since 0.1. */
    int32_t reasoning_budget;
} sipp_text_params;

/** Default text options (see sipp_error_init() for the contract). Since 0.1. */
SIPP_API sipp_status sipp_text_params_init(sipp_text_params *p, size_t size);

/** A chat message. Roles: "system", "user", "assistant". */
typedef struct sipp_message {
    const char *role;
    const char *content;
} sipp_message;

/** Options of embed. */
typedef struct sipp_embed_params {
    uint32_t struct_size;
    /** L2-normalise the vector. Default true. */
    bool normalize;
    /** Remote-only: endpoint-specific options merged into the request body, as for
     *  sipp_text_params.extra_json (e.g. {"dimensions": 256} for OpenAI). Since 0.1. */
    const char *extra_json;
    /** Remote-only: the `x-request-id` to send, as for sipp_text_params.request_id. Since 0.1. */
    const char *request_id;
} sipp_embed_params;

/** Default embed options (see sipp_error_init() for the contract). Since 0.1. */
SIPP_API sipp_status sipp_embed_params_init(sipp_embed_params *p, size_t size);

typedef struct sipp_run sipp_run;

/**
 * Starts a raw completion of `prompt` (no template).
 * @param params  may be NULL for defaults; copied (strings included) before return.
 * @param out     receives the run; free it with sipp_run_free().
 * If this returns an error, no run exists and no callback is ever called.
 * Errors: INVALID_ARGUMENT (empty prompt, max_tokens 0, temperature NaN or < 0, top_p or min_p
 * outside [0, 1], bad grammar or schema), UNSUPPORTED (model cannot generate), BUSY.
 * Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_query(sipp_endpoint *ep, const char *prompt,
                                const sipp_text_params *params, sipp_run **out, sipp_error *err);

/**
 * Starts a chat: `messages` are rendered with the model's own chat template (Jinja included) and
 * a generation prompt is appended. Errors as sipp_query(), plus UNSUPPORTED when the model has
 * no chat template and INVALID_ARGUMENT for no messages or an unknown role.
 * Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_chat(sipp_endpoint *ep, const sipp_message *messages, size_t n_messages,
                               const sipp_text_params *params, sipp_run **out, sipp_error *err);

/** Limits on the tools of one request (larger is INVALID_ARGUMENT). */
#define SIPP_MAX_TOOLS 128
#define SIPP_MAX_TOOL_SCHEMA_BYTES (64 * 1024) /**< all tools' parameters together */

/**
 * Starts a chat whose messages may carry tool calls and tool results (issue 18): as
 * sipp_chat(), with the roles of sipp_chat_message. The tools, tool_choice and reasoning
 * options are in `params`. Errors as sipp_chat(), plus INVALID_ARGUMENT for a tool that is not
 * an object schema or not JSON, duplicate tool names, more than SIPP_MAX_TOOLS tools or
 * SIPP_MAX_TOOL_SCHEMA_BYTES of schemas, a tool_choice_name that names no tool, REQUIRED or
 * NAMED without tools, a tool result whose tool_call_id answers no earlier assistant call, a
 * call's arguments that are not a JSON object, or tools together with grammar/json_schema;
 * UNSUPPORTED (naming `tools`) when the model's chat template has no tool support.
 * sipp_chat() takes the same options (its messages have no calls or results).
 * Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_chat_ex(sipp_endpoint *ep, const sipp_chat_message *messages,
                                  size_t n_messages, const sipp_text_params *params,
                                  sipp_run **out, sipp_error *err);

/**
 * Starts an embedding of `text`. Pooling comes from the model (mean when it declares none).
 * Errors: INVALID_ARGUMENT (empty text), UNSUPPORTED (the model cannot embed), CONTEXT_OVERFLOW.
 * Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_embed(sipp_endpoint *ep, const char *text,
                                const sipp_embed_params *params, sipp_run **out, sipp_error *err);

/* ============================================================================================
 * Log-probabilities (issue 18)
 * ========================================================================================== */

/** The most alternatives sipp_text_params.top_logprobs may ask for (OpenAI's limit). */
#define SIPP_MAX_TOP_LOGPROBS 20

/** One alternative at an output position. Fixed layout (an array element: never grows). */
typedef struct sipp_top_logprob {
    const char *token;  /**< the token's bytes, NUL-terminated; may be part of a UTF-8 sequence */
    size_t token_len;
    float logprob;      /**< natural log of its probability, <= 0 */
} sipp_top_logprob;

/**
 * One output token: its text, its log-probability and the top alternatives, most likely first.
 * Fixed layout (an array element: never grows; new information would come as a new array).
 * Local endpoints compute it as llama-server does by default: from the softmax of the model's
 * raw logits over the whole vocabulary, before penalties, temperature, top-k/p, min-p and any
 * grammar, so values do not depend on the sampling settings (a grammar-forced token can have a
 * low log-probability). Remote endpoints pass through what the peer returned.
 */
typedef struct sipp_token_logprob {
    const char *token;  /**< the token's bytes, NUL-terminated; may be part of a UTF-8 sequence */
    size_t token_len;
    float logprob;
    const sipp_top_logprob *top; /**< n_top alternatives, sorted by logprob descending */
    uint32_t n_top;
} sipp_token_logprob;

/* ============================================================================================
 * Runs and responses
 * ========================================================================================== */

typedef enum sipp_finish_reason {
    SIPP_FINISH_NONE = 0,   /**< not finished, or finished with an error */
    SIPP_FINISH_STOP = 1,   /**< end-of-generation token or a stop string */
    SIPP_FINISH_LENGTH = 2, /**< max_tokens or the context filled */
    SIPP_FINISH_CANCELLED = 3,
    SIPP_FINISH_TOOL_CALLS = 4, /**< the answer ends with tool calls (sipp_response.tool_calls) */
} sipp_finish_reason;

/** "stop", "length", "cancelled" or "none". Static string. */
SIPP_API const char *sipp_finish_reason_name(sipp_finish_reason reason);

typedef struct sipp_usage {
    uint32_t struct_size;
    uint32_t input_tokens;
    uint32_t output_tokens;
    uint32_t total_tokens;
} sipp_usage;

/** Where a request's prompt prefix came from. */
typedef enum sipp_cache_source {
    SIPP_CACHE_NONE = 0,     /**< computed from scratch */
    SIPP_CACHE_LIVE = 1,     /**< reused from the key's resident sequence */
    SIPP_CACHE_SNAPSHOT = 2, /**< restored from a prefix snapshot (RAM or disk) */
} sipp_cache_source;

/** "none", "live" or "snapshot". Static string. */
SIPP_API const char *sipp_cache_source_name(sipp_cache_source source);

/** Per-request timings in milliseconds and rates in tokens per second. */
typedef struct sipp_stats {
    uint32_t struct_size;
    double queue_ms;     /**< submit until the engine took the request */
    double ttft_ms;      /**< submit until the first generated token */
    double prefill_ms;   /**< prompt processing */
    double decode_ms;    /**< first token until the last */
    double prefill_tok_s;
    double decode_tok_s;
    double total_ms;     /**< submit until the end */
    double itl_avg_ms;   /**< mean time between generated tokens */
    double itl_p99_ms;   /**< 99th percentile of the time between generated tokens */
    uint32_t prefill_tokens; /**< prompt tokens computed for this request */
    sipp_cache_source cache_source;
    uint32_t cached_tokens;  /**< prompt tokens reused instead of computed */
    /* appended (multimodal) */
    double encode_ms;        /**< media encoding (vision/audio encoder) within prefill_ms */
    uint32_t media_chunks;   /**< media parts encoded for this request (not reused) */
} sipp_stats;

/** The final result of a run. Owned by the run; valid until sipp_run_free(). */
typedef struct sipp_response {
    uint32_t struct_size;
    sipp_status status;           /**< SIPP_OK, or why the run failed */
    char error_message[SIPP_ERROR_MESSAGE_CAP];
    const char *text;             /**< generated text (query/chat), "" otherwise */
    size_t text_len;
    sipp_finish_reason finish_reason;
    const float *embedding;       /**< embed only, else NULL */
    uint32_t n_embd;
    bool normalized;
    /** Token counts and timings: never NULL, owned by the run like the response. Pointers, so
     *  that sipp_usage and sipp_stats can grow without moving the fields after them. */
    const sipp_usage *usage;
    const sipp_stats *stats;
    /** Remote endpoints: the HTTP status of the answer (0 for local), the peer's retry-after in
     *  seconds when it sent one, and the request id it echoed or made (may be ""). */
    uint32_t http_status;
    uint32_t retry_after_s;
    char request_id[64];
    /** Remote endpoints: the peer's error code when it sent one (a gateway envelope's `code`
     *  such as "admission", an OpenAI `code`/`type`, an Anthropic error `type`), else "". */
    char error_code[48];
    /* appended (issue 18) */
    /** With sipp_text_params.logprobs: one entry per output token whose text is in `text`
     *  (end-of-generation tokens and tokens of a matched stop string have none), owned by the
     *  run. NULL and 0 otherwise (a remote that returned none also gives 0). Since 0.1. */
    const sipp_token_logprob *logprobs;
    size_t n_logprobs;
    /* appended (issue 18): the parsed answer of a chat with tools or a thinking model */
    /** The tool calls of the answer (NULL when none), owned by the run. */
    const sipp_tool_call *tool_calls;
    size_t n_tool_calls;
    /** The reasoning text (SIPP_REASONING_SEPARATE), "" when none; owned by the run. */
    const char *reasoning;
    size_t reasoning_len;
} sipp_response;

/**
 * Waits for the run to end and returns its response. If the run has an on_tokens callback, it
 * is called on this thread with each batch of text that arrives until the end (text that arrived
 * before this call, or was already pulled with sipp_run_next(), is not repeated).
 * @param out  receives a pointer valid until sipp_run_free().
 * Returns SIPP_OK once the run ended (the response's own status tells how).
 * Thread-safety: one waiter per run. Since 0.1.
 */
SIPP_API sipp_status sipp_run_wait(sipp_run *run, const sipp_response **out, sipp_error *err);

/** A batch of text from sipp_run_next(); fill it with sipp_token_batch_init(). `text` is owned
 *  by the run, valid until the next sipp_run_next(), sipp_run_wait() or sipp_run_free() on it. */
typedef struct sipp_token_batch {
    uint32_t struct_size;
    const char *text;
    size_t len;
    uint32_t n_tokens;
    bool done; /**< true once the run ended and all text was delivered */
    /* appended (issue 18) */
    /** With sipp_text_params.logprobs: the entries of the tokens this batch covers, owned by the
     *  run and valid as `text`. Since 0.1. */
    const sipp_token_logprob *logprobs;
    size_t n_logprobs;
} sipp_token_batch;

/** An empty batch to fill (see sipp_error_init() for the contract). Since 0.1. */
SIPP_API sipp_status sipp_token_batch_init(sipp_token_batch *p, size_t size);

/**
 * Pull iterator: waits up to `timeout_ms` (-1 forever, 0 poll) for new text. On SIPP_OK, `out`
 * holds the text since the last pull (possibly empty with done set). SIPP_TIMEOUT when nothing
 * arrived in time; the run goes on. `out` comes from sipp_token_batch_init(): the library
 * writes no more than its struct_size (a later version's larger struct never overruns an older
 * caller's).
 * Thread-safety: one consumer per run. Since 0.1.
 */
SIPP_API sipp_status sipp_run_next(sipp_run *run, int timeout_ms, sipp_token_batch *out,
                                   sipp_error *err);

/**
 * The log-probability entries of the batch last delivered: inside an on_tokens callback, those
 * of the text it was just given; after sipp_run_next(), those of its batch (also in the batch's
 * own fields). Owned by the run, valid until the next delivery. *out NULL and *n 0 when the
 * run has none. Thread-safety: the consumer's thread. Since 0.1.
 */
SIPP_API void sipp_run_batch_logprobs(const sipp_run *run, const sipp_token_logprob **out,
                                      size_t *n);

/**
 * Pull iterator of deltas (issue 18): waits up to `timeout_ms` (-1 forever, 0 poll) and hands
 * out the next delta in `out` (fill its struct_size with sizeof(sipp_delta); strings valid
 * until the next call on the run). When the run has ended and every delta was handed out,
 * SIPP_OK with *done = true and an empty CONTENT delta. SIPP_TIMEOUT as sipp_run_next(). A run
 * is read either with deltas or with text (sipp_run_next): text read one way is not repeated
 * the other. Chat runs (local and remote) always produce deltas; query runs stream their text
 * as CONTENT deltas only when the endpoint produces deltas.
 * Thread-safety: one consumer per run. Since 0.1.
 */
SIPP_API sipp_status sipp_run_next_delta(sipp_run *run, int timeout_ms, sipp_delta *out,
                                         bool *done, sipp_error *err);

/**
 * Asks the run to stop. Takes effect within one engine tick; the run ends with finish reason
 * `cancelled` (and status SIPP_OK) unless it had already ended. Thread-safety: any thread.
 * Since 0.1.
 */
SIPP_API void sipp_run_cancel(sipp_run *run);

/** True once the run ended. Thread-safety: any thread. Since 0.1. */
SIPP_API bool sipp_run_is_done(const sipp_run *run);

/** Cancels the run if still going, waits for its end and frees it. NULL is a no-op.
 *  Thread-safety: any one thread, once no other thread uses the run. Since 0.1. */
SIPP_API void sipp_run_free(sipp_run *run);

/* ============================================================================================
 * Model inspection (no endpoint needed)
 * ========================================================================================== */

/**
 * Reads a model's metadata without loading its weights: fills `info` and, when non-NULL,
 * `*chat_template_out` with the model's chat template (free with sipp_free(); NULL if none).
 * `path` may be a pulled name (sipp_model_resolve()). Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_model_inspect(const char *path, sipp_endpoint_info *info,
                                        char **chat_template_out, sipp_error *err);

/**
 * Resolves a model name the way every model path of this API is read, into `buf` (`cap` bytes,
 * NUL-terminated):
 * - an existing path, or a name that does not look like a pulled model's, is copied unchanged;
 * - OWNER/REPO, OWNER/REPO:QUANT or OWNER/REPO/FILE.gguf (also spelled hf.co/OWNER/REPO...) is
 *   looked up among the models pulled with `sipp pull` into the models directory
 *   ($SIPP_MODELS_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/sipp/models; docs/models.md) and
 *   gives the path of its first file.
 * Offline: reads the local manifests only, never the network, never a model file.
 * Errors: NOT_FOUND (a name that was not pulled, or whose files are gone; the message names the
 * models directory and says `sipp pull NAME`), IO (an unreadable or corrupt manifest),
 * INVALID_ARGUMENT (NULL or empty name, `buf` too small). Not in the WebAssembly build.
 * Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_model_resolve(const char *name, char *buf, size_t cap, sipp_error *err);

/* ===================================================================================== * Routing signals and policy (docs/routing.md)
 *
 * Sipp never moves a request to another endpoint by itself. These calls give the app what it
 * needs to choose: sipp_estimate_*() answers, for a prepared request, what the endpoint knows
 * without running it, and a sipp_policy is an ordered, explainable set of rules the app builds
 * and calls. The app then submits to the endpoint it (or the policy) chose.
 * ========================================================================================== */

/** Where a figure comes from. A figure with source UNKNOWN has value 0: do not use it. */
typedef enum sipp_figure_source {
    SIPP_FIGURE_UNKNOWN = 0,
    SIPP_FIGURE_MEASURED = 1,   /**< from this client's own requests on the endpoint (`samples`) */
    SIPP_FIGURE_CONFIGURED = 2, /**< set by the app (sipp_endpoint_set_prices()) */
    SIPP_FIGURE_PREDICTED = 3,  /**< computed from measured rates and the current load */
} sipp_figure_source;

/** "unknown", "measured", "configured" or "predicted". Static string. */
SIPP_API const char *sipp_figure_source_name(sipp_figure_source source);

typedef struct sipp_figure {
    double value;
    uint32_t samples; /**< requests the figure was measured over (0 when not measured) */
    sipp_figure_source source;
} sipp_figure;

/** What an endpoint expects of one prepared request, without running it. */
typedef struct sipp_estimate {
    uint32_t struct_size;
    bool local;            /**< a local model (else a gateway or a provider) */
    bool loaded;           /**< the model is loaded and accepts requests (remote: true) */
    bool healthy;          /**< remote: false while its recent requests keep failing (see
                                docs/routing.md); local: true while the engine runs */
    uint32_t prompt_tokens;   /**< local: the exact token count; remote: 0 (unknown) */
    uint32_t cached_tokens;   /**< local: prompt tokens reusable for this context key and scope */
    sipp_cache_source cache_source; /**< where they are: LIVE sequence or a SNAPSHOT (RAM/disk) */
    bool cache_on_disk;       /**< the snapshot is in the disk tier (restoring reads a file) */
    uint32_t prefill_tokens;  /**< local: prompt_tokens - cached_tokens */
    uint32_t n_ctx;           /**< local: the context of one sequence (0 remote) */
    uint32_t running, queued; /**< local: the engine's load now */
    uint32_t free_slots;      /**< local: sequences a new request could start on at once */
    sipp_figure ttft_ms;      /**< local: PREDICTED; remote: MEASURED moving average */
    sipp_figure decode_tokens_per_s;
    sipp_figure total_ms;     /**< MEASURED moving average of whole requests */
    sipp_figure price_input_per_mtok;  /**< CONFIGURED, in the app's currency per 1M tokens */
    sipp_figure price_output_per_mtok;
    sipp_figure error_rate;   /**< MEASURED: share of recent requests that failed (not cancelled) */
    sipp_figure busy_rate;    /**< MEASURED: share of recent requests refused as busy/overloaded */
} sipp_estimate;

/** An empty estimate to fill (see sipp_error_init() for the contract). */
SIPP_API sipp_status sipp_estimate_init(sipp_estimate *p, size_t size);

/**
 * Estimates a query (raw prompt) or a chat on `ep` with `params` (its context_key and
 * cache_scope decide which cached prefix counts), filling `out` (from sipp_estimate_init()).
 * Cheap: no model run. A local endpoint tokenizes the prompt once and keeps the tokens for the
 * next submission of the same text on it, so estimate-then-run tokenizes once.
 * Thread-safety: any thread.
 */
SIPP_API sipp_status sipp_estimate_query(sipp_endpoint *ep, const char *prompt,
                                         const sipp_text_params *params, sipp_estimate *out,
                                         sipp_error *err);
SIPP_API sipp_status sipp_estimate_chat(sipp_endpoint *ep, const sipp_message *messages,
                                        size_t n_messages, const sipp_text_params *params,
                                        sipp_estimate *out, sipp_error *err);

/** Sets the prices an estimate reports for `ep` (per million tokens, the app's currency;
 *  negative = unknown). Thread-safety: any thread. */
SIPP_API sipp_status sipp_endpoint_set_prices(sipp_endpoint *ep, double input_per_mtok,
                                              double output_per_mtok, sipp_error *err);

/** The rules of a policy, evaluated in the order given. Filters drop candidates; preferences
 *  pick one of those left. Candidates keep the app's order, and the first one left wins when no
 *  preference picks. */
typedef enum sipp_rule_kind {
    /** Filter: a request tagged `tag` may only go to local endpoints. */
    SIPP_RULE_LOCAL_ONLY_TAG = 1,
    /** Filter: drop remote endpoints that are not healthy, and local ones with no free slot
     *  and a queue of at least `value` requests. */
    SIPP_RULE_SKIP_UNAVAILABLE = 2,
    /** Filter: drop local endpoints whose context cannot hold the prompt plus max_tokens. */
    SIPP_RULE_FIT_CONTEXT = 3,
    /** Filter: drop endpoints whose TTFT estimate is above `value` ms (unknown passes). */
    SIPP_RULE_MAX_TTFT_MS = 4,
    /** Filter: drop endpoints whose expected cost is above `value` (prices x tokens, output
     *  counted as max_tokens; unknown price passes, local with no price costs 0). */
    SIPP_RULE_MAX_COST = 5,
    /** Preference: the local endpoint with the most cached tokens, when at least `value` of the
     *  prompt (a fraction in [0, 1]) is cached there. */
    SIPP_RULE_PREFER_WARM = 6,
    /** Preference: the first local endpoint left whose predicted TTFT is below `value` ms. */
    SIPP_RULE_PREFER_LOCAL_UNDER_TTFT = 7,
    /** Preference: the endpoint left with the lowest expected cost (ties: the app's order). */
    SIPP_RULE_PREFER_CHEAPEST = 8,
    /* appended (issue 20: confidence escalation; see "Routing: confidence and draft-then-audit") */
    /** Audit: sipp_policy_check_draft() / sipp_route_draft_audit() escalate a finished draft
     *  whose confidence (sipp_response_confidence()) is below `value`, in (0, 1].
     *  sipp_policy_choose() ignores it (it acts after a run, not before). */
    SIPP_RULE_ESCALATE_LOW_CONFIDENCE = 9,
} sipp_rule_kind;

typedef struct sipp_rule {
    sipp_rule_kind kind;
    double value;
    const char *tag; /**< SIPP_RULE_LOCAL_ONLY_TAG: the tag (copied) */
} sipp_rule;

typedef struct sipp_policy sipp_policy;

/** Builds a policy from `n` rules (copied). INVALID_ARGUMENT names a rule that makes no sense
 *  (unknown kind, a negative budget, a fraction outside [0, 1], a tag rule without a tag, a
 *  confidence threshold outside (0, 1]). */
SIPP_API sipp_status sipp_policy_new(const sipp_rule *rules, size_t n, sipp_policy **out,
                                     sipp_error *err);
SIPP_API void sipp_policy_free(sipp_policy *policy);

/** One candidate: an endpoint and its estimate for the request (from sipp_estimate_*()). */
typedef struct sipp_route_candidate {
    sipp_endpoint *endpoint;
    const sipp_estimate *estimate;
    const char *name; /**< for the reasons (e.g. the endpoint id); may be NULL */
} sipp_route_candidate;

/** The policy's answer. `reasons` has one line per rule that acted, with the figures it used
 *  and their sources; owned by the choice, freed by sipp_route_choice_free(). */
typedef struct sipp_route_choice {
    int index;       /**< into the candidates; -1 when every candidate was dropped */
    sipp_endpoint *endpoint;
    char *reasons;
    uint64_t dropped; /**< bit i set: candidate i was dropped by a filter */
} sipp_route_choice;

/**
 * Chooses among `n` candidates (at most 64) for a request with `tags` (may be NULL) that may
 * generate up to `max_tokens`. Returns SIPP_OK with a choice, or SIPP_NO_ROUTE when every
 * candidate was dropped (out->index -1; the reasons say why). Pure: no I/O, no request sent.
 * Thread-safety: a policy may be used from any number of threads at once.
 */
SIPP_API sipp_status sipp_policy_choose(const sipp_policy *policy,
                                        const sipp_route_candidate *candidates, size_t n,
                                        const char *const *tags, size_t n_tags,
                                        uint32_t max_tokens, sipp_route_choice *out,
                                        sipp_error *err);
SIPP_API void sipp_route_choice_free(sipp_route_choice *choice);

/* ==== Routing: confidence and draft-then-audit (issue 20, docs/routing.md) ==================== */

/**
 * The confidence of a finished text run, from its log-probabilities (sipp_text_params.logprobs):
 * the geometric mean of its output tokens' probabilities, exp(mean logprob), in (0, 1]. It is
 * length-normalised (a long answer is not penalised for its length, as a product would be) and
 * uses every token (a minimum is decided by one token, often a legitimately open choice such
 * as a name), and needs no top alternatives. `*min_prob` (may be NULL) gets the least likely
 * token's probability, `*n_tokens` (may be NULL) the tokens counted. Returns NaN (and 0
 * tokens) when the response has no log-probabilities. Thread-safety: any thread. Since 0.1.
 */
SIPP_API double sipp_response_confidence(const sipp_response *response, double *min_prob,
                                         uint32_t *n_tokens);

/** What a draft check or a draft-then-audit did. */
typedef enum sipp_audit_outcome {
    SIPP_AUDIT_NONE = 0,
    /** The draft stands: it was confident enough (or the policy has no confidence rule). */
    SIPP_AUDIT_DRAFT = 1,
    /** The draft was unsure (or had no log-probabilities): the request goes to the target. */
    SIPP_AUDIT_ESCALATED = 2,
    /** The draft run failed. It is never sent elsewhere by Sipp; `retry_safe` says whether the
     *  app may (no output token was produced). */
    SIPP_AUDIT_DRAFT_FAILED = 3,
} sipp_audit_outcome;

/** "none", "draft", "escalated" or "draft_failed". Static string. */
SIPP_API const char *sipp_audit_outcome_name(sipp_audit_outcome outcome);

/** The decision of sipp_policy_check_draft() / sipp_route_draft_audit(). Free its reasons
 *  with sipp_audit_decision_free(). */
typedef struct sipp_audit_decision {
    sipp_audit_outcome outcome;
    double confidence;  /**< sipp_response_confidence() of the draft; NaN when unknown */
    double min_prob;
    uint32_t n_tokens;  /**< tokens the confidence was computed over */
    /** DRAFT_FAILED: the draft failed before any output token (nothing reached the caller), so
     *  the app may submit the request to another endpoint itself. False once a token came. */
    bool retry_safe;
    char *reasons;      /**< one line per rule or check that acted, with its figures */
} sipp_audit_decision;

SIPP_API void sipp_audit_decision_free(sipp_audit_decision *decision);

/**
 * Decides, by the policy's ESCALATE_LOW_CONFIDENCE rule (the first one; none = the draft always
 * stands), whether a finished draft stands or is escalated: a failed draft is DRAFT_FAILED;
 * a draft without log-probabilities, or below the threshold, is ESCALATED; otherwise DRAFT.
 * Pure: no I/O. Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_policy_check_draft(const sipp_policy *policy,
                                             const sipp_response *draft,
                                             sipp_audit_decision *out, sipp_error *err);

/**
 * Draft-then-audit: runs the chat on `draft_ep` (a local model, usually) with log-probabilities
 * on and without streaming, waits for it and checks it (sipp_policy_check_draft()):
 * - DRAFT: `*out` is the finished draft run;
 * - ESCALATED: `*out` is a new run of the chat on `target_ep`, started and not waited (it
 *   streams to params->on_tokens when set). With `send_draft`, a last user message carries the
 *   draft and asks the target to check and correct it; else the target gets the question only.
 * - DRAFT_FAILED: `*out` is the failed draft run. Sipp never sends it elsewhere; the decision
 *   says whether the app may (retry_safe).
 * The caller's on_tokens never sees the draft, so no stream the caller saw is ever switched.
 * A draft refused at submission (sipp_chat() fails: BUSY, ...) returns that error, *out NULL and
 * outcome DRAFT_FAILED with retry_safe true: again the app decides. `params` as sipp_chat().
 * Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_route_draft_audit(const sipp_policy *policy, sipp_endpoint *draft_ep,
                                            sipp_endpoint *target_ep,
                                            const sipp_message *messages, size_t n_messages,
                                            const sipp_text_params *params, bool send_draft,
                                            sipp_run **out, sipp_audit_decision *decision,
                                            sipp_error *err);

/* ==== Upstream pools: retry safety of remote runs ============================================ */

/**
 * True when the run ended and its request never reached its remote peer: no connection was
 * made, or the connection failed before any byte of the request was written. Sending the
 * request again (to another replica) cannot run it twice. False while the run goes on, for
 * local endpoints, and for NULL. The gateway's upstream pools retry on it (docs/gateway.md).
 * Thread-safety: any thread. Since 0.1.
 */
SIPP_API bool sipp_run_not_sent(const sipp_run *run);

/* ==== Speech to text: listen (multimodal, issue 17) ========================================= */

/** The instruction sipp_listen() sends when the caller gives none (llama-server's preset). */
#define SIPP_LISTEN_PROMPT "Transcribe audio to text"

/**
 * Starts a transcription of `audio` (a SIPP_MEDIA_AUDIO part: WAV, MP3 or FLAC bytes, read during
 * the call) as an ordinary run: the stream and response of a chat. The model's chat template
 * renders one user turn: `prompt` (NULL or "" = SIPP_LISTEN_PROMPT), then " (language: LANG)" when
 * `language` is given, then the media marker (unless `prompt` has one), as llama-server's
 * /v1/audio/transcriptions does; a model without a chat template gets that text as a raw query.
 * `params` as sipp_chat() (NULL = defaults with temperature 0; its media must be empty).
 * Errors: INVALID_ARGUMENT (not an audio part, bad audio: see docs/multimodal.md), UNSUPPORTED
 * naming listen (the endpoint takes no audio: a local model needs an audio encoder as its
 * mmproj), and those of sipp_chat().
 * Thread-safety: any thread. Since 0.1.
 */
SIPP_API sipp_status sipp_listen(sipp_endpoint *ep, const sipp_media *audio, const char *prompt,
                                 const char *language, const sipp_text_params *params,
                                 sipp_run **out, sipp_error *err);

#ifdef __cplusplus
}
#endif

#endif /* SIPP_H */
