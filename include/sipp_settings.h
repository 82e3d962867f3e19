/*
 * sipp_settings.h — the fields of sipp.h's five params structs as tables, one per struct:
 * sipp_local_params (SIPP_LOCAL_SETTINGS), sipp_text_params (SIPP_TEXT_SETTINGS),
 * sipp_embed_params (SIPP_EMBED_SETTINGS), sipp_provider_params (SIPP_PROVIDER_SETTINGS) and
 * sipp_gateway_params (SIPP_GATEWAY_SETTINGS). For each field a row gives its type, its default,
 * its range, its `sipp` CLI flag and environment variable, its gateway TOML key and a one-line
 * help. Everything that lists these fields derives from them:
 *   - the library's defaults (src/common/params.c);
 *   - the CLI's flags, variables and --help lines (apps/cli/options.c);
 *   - the gateway's TOML keys: [targets.runtime] (local and text rows) and a provider target's
 *     keys (provider rows), with the copy into the params structs (src/gateway/config.c,
 *     targets.c, execute.c);
 *   - the Node addon's options (bindings/node/src/addon.c);
 *   - the layout test (tests/bindings/abi_layout.c);
 *   - through tests/bindings/settings_gen.c, the Python, Rust and TypeScript copies
 *     (bindings/python/sipp/_fields.py, bindings/rust/src/fields.rs,
 *     bindings/node/local_options.d.ts).
 *
 * Adding a field to one of these structs is one row here, in struct order, plus its docs
 * (docs/api.md, and docs/cli.md / docs/gateway.md when it has a flag or a key); then
 * `scripts/gen-settings` rewrites the bindings' generated files (the ctest settings_generated
 * fails until it has run). The static assertions at the end fail the build when a table and its
 * struct disagree (a field without a row, rows out of order, a type that differs), and their
 * message says which table to edit. (One blind spot, shared with every size check: a small field
 * appended into the tail padding of a struct that ends in a bool, such as sipp_provider_params,
 * leaves the size unchanged and passes unseen.)
 *
 * This header is for programs built with Sipp (the CLI, the gateway, the bindings); it adds
 * nothing to the ABI. It includes only sipp.h and standard headers.
 */
#ifndef SIPP_SETTINGS_H
#define SIPP_SETTINGS_H

#include "sipp.h"

#include <stddef.h>
#include <stdint.h>

/** The type of a field: its C type is SIPP_SETTING_CTYPE_<kind>. Only U32, I32, U64, F32, BOOL
 *  and STR fields are settings that a flag, a variable or a key can set. The others are fields
 *  of the struct that the program fills itself: SIZE (struct_size), FN and TOKEN_FN (callbacks),
 *  PTR (their user data), STRV and COUNT (a string array and its length, the row after it: the
 *  CLI's repeatable --stop and --header fill them), the enums PROVIDER_KIND and GATEWAY_AUTH
 *  (the CLI's --provider, --auth-header; the gateway's target type), MEDIA with its COUNT
 *  (the media parts of a request: the CLI's --image and --audio), and the tool-call fields
 *  (issue 18): TOOLS with its COUNT, the enums TOOL_CHOICE and REASONING_MODE, DELTA_FN. */
typedef enum sipp_setting_kind {
    SIPP_SETTING_SIZE,
    SIPP_SETTING_U32,
    SIPP_SETTING_I32,
    SIPP_SETTING_U64,
    SIPP_SETTING_BOOL,
    SIPP_SETTING_STR,
    SIPP_SETTING_FN,
    SIPP_SETTING_PTR,
    SIPP_SETTING_F32,
    SIPP_SETTING_STRV,
    SIPP_SETTING_COUNT,
    SIPP_SETTING_TOKEN_FN,
    SIPP_SETTING_PROVIDER_KIND,
    SIPP_SETTING_GATEWAY_AUTH,
    SIPP_SETTING_MEDIA,
    SIPP_SETTING_TOOLS,
    SIPP_SETTING_TOOL_CHOICE,
    SIPP_SETTING_REASONING_MODE,
    SIPP_SETTING_DELTA_FN,
} sipp_setting_kind;

#define SIPP_SETTING_CTYPE_SIZE uint32_t
#define SIPP_SETTING_CTYPE_U32 uint32_t
#define SIPP_SETTING_CTYPE_I32 int32_t
#define SIPP_SETTING_CTYPE_U64 uint64_t
#define SIPP_SETTING_CTYPE_BOOL bool
#define SIPP_SETTING_CTYPE_STR const char *
#define SIPP_SETTING_CTYPE_FN sipp_load_progress_fn
#define SIPP_SETTING_CTYPE_PTR void *
#define SIPP_SETTING_CTYPE_F32 float
#define SIPP_SETTING_CTYPE_STRV const char *const *
#define SIPP_SETTING_CTYPE_COUNT size_t
#define SIPP_SETTING_CTYPE_TOKEN_FN sipp_token_fn
#define SIPP_SETTING_CTYPE_PROVIDER_KIND sipp_provider_kind
#define SIPP_SETTING_CTYPE_GATEWAY_AUTH sipp_gateway_auth
#define SIPP_SETTING_CTYPE_MEDIA const sipp_media *
#define SIPP_SETTING_CTYPE_TOOLS const sipp_tool *
#define SIPP_SETTING_CTYPE_TOOL_CHOICE sipp_tool_choice
#define SIPP_SETTING_CTYPE_REASONING_MODE sipp_reasoning_mode
#define SIPP_SETTING_CTYPE_DELTA_FN sipp_delta_fn

/*
 * The row format, the same in every table, one row per field in struct order:
 *   X(field, KIND, default, "cli-flag", "ARG", "SIPP_ENV", "toml_key", min, max, "help")
 * - default: the value sipp_X_params_init() writes (0 often means "the library chooses"; the help
 *   says what it chooses).
 * - cli-flag: the long option of `sipp query|chat|embed` without "--", or NULL for none. ARG is
 *   the placeholder of --help ("" for a BOOL flag, which takes no value: it sets the field to
 *   true, or to false when the flag is named "no-..."). A flag may appear in several tables (the
 *   remote endpoints' --request-timeout-ms, the requests' --extra-json): it sets the field of
 *   each, and --help shows it once.
 * - SIPP_ENV: the environment variable the CLI reads when the flag is absent, or NULL.
 * - toml_key: the key the gateway reads into this field, or NULL: local rows in a local target's
 *   [targets.runtime]; text rows in [targets.runtime] too (per-target defaults of its requests);
 *   provider rows in a provider target's own table. The target's `model` key is model_path or
 *   model, its `sha256` key the local sha256, its `type` the provider kind.
 * - min, max: the accepted range of integers, on the command line and in the TOML file alike
 *   (F32 rows: unchecked here, the library checks its floats and names the field).
 * - help: one line for --help and the bindings' doc comments.
 */

/** sipp_local_params: the local engine (sipp_client_add_local). */
#define SIPP_LOCAL_SETTINGS(X)                                                                    \
    X(struct_size, SIZE, sizeof(sipp_local_params), NULL, NULL, NULL, NULL, 0, 0,                 \
      "the size of the struct")                                                                   \
    X(model_path, STR, NULL, NULL, NULL, NULL, NULL, 0, 0,                                        \
      "the GGUF file or a pulled model name (the CLI's --model, the gateway's targets.model)")    \
    X(n_ctx, U32, 0, "ctx-size", "N", "SIPP_CTX_SIZE", "n_ctx", 0, 1u << 24,                      \
      "context tokens per sequence (0 = model's, max 4096)")                                      \
    X(n_threads, I32, 0, "threads", "N", "SIPP_THREADS", "n_threads", 0, 1024,                    \
      "CPU threads (0 = the CPUs it may use, max 16)")                                            \
    X(n_batch, U32, 0, "batch-size", "N", "SIPP_BATCH_SIZE", "n_batch", 0, 1u << 20,              \
      "tokens per llama.cpp step (default 512)")                                                  \
    X(n_gpu_layers, I32, -1, "gpu-layers", "N", "SIPP_GPU_LAYERS", "n_gpu_layers", -1, 100000,    \
      "layers on the GPU, -1 = all (GPU builds)")                                                 \
    X(n_parallel, U32, 0, NULL, NULL, NULL, "n_parallel", 0, 256,                                 \
      "sequences decoded together (0 = 4)")                                                       \
    X(progress, FN, NULL, NULL, NULL, NULL, NULL, 0, 0, "load progress callback")                 \
    X(progress_user_data, PTR, NULL, NULL, NULL, NULL, NULL, 0, 0, "the callback's user data")    \
    X(max_running, U32, 0, NULL, NULL, NULL, "max_running", 0, 256,                               \
      "requests admitted into sequences at once (0 = n_parallel)")                                \
    X(max_queued, U32, 0, NULL, NULL, NULL, "max_queued", 0, 1u << 20,                            \
      "requests waiting for a sequence before SIPP_BUSY (0 = 256)")                               \
    X(tick_budget, U32, 0, NULL, NULL, NULL, "tick_budget", 0, 1u << 20,                          \
      "tokens decoded per engine tick (0 = n_batch)")                                             \
    X(prefill_chunk, U32, 0, NULL, NULL, NULL, "prefill_chunk", 0, 1u << 20,                      \
      "most prompt tokens one request prefills per tick (0 = no cap)")                              \
    X(stream_buffer_bytes, U32, 0, NULL, NULL, NULL, "stream_buffer_bytes", 0, 1u << 30,          \
      "generated text held for a consumer that does not read (0 = 256 KiB)")                      \
    X(context_shift, BOOL, false, "context-shift", "", NULL, "context_shift", 0, 1,               \
      "when the context fills, drop old tokens and go on")                                        \
    X(n_keep, U32, 0, NULL, NULL, NULL, "n_keep", 0, 1u << 24,                                    \
      "tokens kept at the start when the context shifts")                                         \
    X(cache_ram_bytes, U64, 0, NULL, NULL, NULL, "cache_ram_bytes", 0, UINT64_MAX / 2,            \
      "RAM budget of prefix snapshots (0 = 1 GiB)")                                               \
    X(cache_dir, STR, NULL, "cache-dir", "DIR", "SIPP_CACHE_DIR", "cache_dir", 0, 0,              \
      "disk tier of prefix snapshots (survives restarts)")                                        \
    X(cache_disk_bytes, U64, 0, NULL, NULL, NULL, "cache_disk_bytes", 0, UINT64_MAX / 2,          \
      "disk budget of the snapshot directory (0 = 4 GiB)")                                        \
    X(sha256, STR, NULL, "model-sha256", "HEX", "SIPP_MODEL_SHA256", NULL, 0, 0,                  \
      "refuse to load unless the file's SHA-256 is HEX")                                          \
    X(stall_alarm_ms, U32, 0, NULL, NULL, NULL, "stall_alarm_ms", 0, UINT32_MAX,                  \
      "watchdog: no scheduler round for this long is a stall (0 = 60000)")                        \
    X(mmproj, STR, NULL, "mmproj", "FILE", "SIPP_MMPROJ", "mmproj", 0, 0,                         \
      "the model's projector GGUF: images/audio in (llama.cpp's mmproj)")                         \
    X(itl_target_ms, U32, 0, "itl-target", "MS", "SIPP_ITL_TARGET_MS", "itl_target_ms", 0,         \
      600000, "inter-token latency target while a prompt prefills (0 = 400)")                     \
    X(n_resident, U32, 0, NULL, NULL, NULL, "n_resident", 0, 64,                                  \
      "sequences kept warm in memory (0 = n_parallel)")

/** sipp_text_params: the options of query and chat (sipp_query, sipp_chat). */
#define SIPP_TEXT_SETTINGS(X)                                                                     \
    X(struct_size, SIZE, sizeof(sipp_text_params), NULL, NULL, NULL, NULL, 0, 0,                  \
      "the size of the struct")                                                                   \
    X(max_tokens, U32, 256, "max-tokens", "N", "SIPP_MAX_TOKENS", NULL, 0, INT32_MAX,             \
      "tokens to generate, >= 1 (default 256)")                                                   \
    X(temperature, F32, 0.8f, "temperature", "T", "SIPP_TEMPERATURE", NULL, 0, 0,                 \
      "0 = greedy (default 0.8)")                                                                 \
    X(top_k, I32, 40, "top-k", "K", "SIPP_TOP_K", NULL, 0, INT32_MAX, "0 = off (default 40)")     \
    X(top_p, F32, 0.95f, "top-p", "P", "SIPP_TOP_P", NULL, 0, 0,                                  \
      "in [0,1], 1 = off (default 0.95)")                                                         \
    X(min_p, F32, 0.05f, "min-p", "P", "SIPP_MIN_P", NULL, 0, 0,                                  \
      "in [0,1], 0 = off (default 0.05)")                                                         \
    X(repeat_penalty, F32, 1.0f, "repeat-penalty", "R", "SIPP_REPEAT_PENALTY", NULL, 0, 0,        \
      "1 = off (default 1.0)")                                                                    \
    X(seed, U32, 0xFFFFFFFFu, "seed", "N", "SIPP_SEED", NULL, 0, UINT32_MAX,                      \
      "sampler seed (default random)")                                                            \
    X(stop, STRV, NULL, NULL, NULL, NULL, NULL, 0, 0, "stop strings (the CLI's --stop)")          \
    X(n_stop, COUNT, 0, NULL, NULL, NULL, NULL, 0, SIPP_MAX_STOP_STRINGS, "how many stop strings") \
    X(context_key, STR, NULL, "context-key", "KEY", NULL, NULL, 0, 0,                             \
      "workflow key: a later request on KEY computes only what is new")                           \
    X(cache_scope, STR, NULL, NULL, NULL, NULL, NULL, 0, 0,                                       \
      "the caller identity that scopes context_key")                                              \
    X(grammar, STR, NULL, NULL, NULL, NULL, NULL, 0, 0,                                           \
      "a GBNF grammar constraining the output (the CLI's --grammar-file)")                        \
    X(json_schema, STR, NULL, NULL, NULL, NULL, NULL, 0, 0,                                       \
      "a JSON schema constraining the output (the CLI's --json-schema-file)")                     \
    X(on_tokens, TOKEN_FN, NULL, NULL, NULL, NULL, NULL, 0, 0, "streaming callback")              \
    X(user_data, PTR, NULL, NULL, NULL, NULL, NULL, 0, 0, "the callback's user data")             \
    X(timeout_ms, U32, 0, NULL, NULL, NULL, NULL, 0, UINT32_MAX,                                  \
      "deadline in ms from submission (0 = none)")                                                \
    X(ignore_eos, BOOL, false, NULL, NULL, NULL, "ignore_eos", 0, 1,                              \
      "never sample end-of-generation (benchmarks, tests)")                                       \
    X(extra_json, STR, NULL, "extra-json", "JSON", NULL, NULL, 0, 0,                              \
      "extra request fields for the remote API, e.g. '{\"presence_penalty\":0.5}' (typed "        \
      "fields are refused)")                                                                      \
    X(request_id, STR, NULL, "request-id", "ID", NULL, NULL, 0, 0,                                \
      "sent as x-request-id (a gateway passes it on upstream)")                                   \
    X(logprobs, BOOL, false, NULL, NULL, NULL, NULL, 0, 1,                                        \
      "report each output token's log-probability")                                               \
    X(top_logprobs, U32, 0, NULL, NULL, NULL, NULL, 0, SIPP_MAX_TOP_LOGPROBS,                     \
      "with logprobs: the N most likely alternatives per position (0..20)")                       \
    X(media, MEDIA, NULL, NULL, NULL, NULL, NULL, 0, 0,                                           \
      "media parts: images and audio (the CLI's --image and --audio)")                            \
    X(n_media, COUNT, 0, NULL, NULL, NULL, NULL, 0, 0, "how many media parts")              \
    X(tools, TOOLS, NULL, NULL, NULL, NULL, NULL, 0, 0,                                           \
      "tools the model may call (the CLI's --tool-file)")                                         \
    X(n_tools, COUNT, 0, NULL, NULL, NULL, NULL, 0, SIPP_MAX_TOOLS, "how many tools")             \
    X(tool_choice, TOOL_CHOICE, SIPP_TOOL_CHOICE_AUTO, NULL, NULL, NULL, NULL, 0, 3,              \
      "auto (default), none, required or one named tool")                                         \
    X(tool_choice_name, STR, NULL, NULL, NULL, NULL, NULL, 0, 0,                                  \
      "with tool_choice named: the tool that must be called")                                     \
    X(parallel_tool_calls, BOOL, true, NULL, NULL, NULL, NULL, 0, 1,                              \
      "more than one tool call in one answer (default true)")                                     \
    X(reasoning_mode, REASONING_MODE, SIPP_REASONING_SEPARATE, NULL, NULL, NULL, NULL, 0, 2,      \
      "a thinking model's reasoning: separate (default), inline or drop")                         \
    X(on_delta, DELTA_FN, NULL, NULL, NULL, NULL, NULL, 0, 0,                                     \
      "streaming callback of content, reasoning and tool-call deltas")                            \
    X(delta_user_data, PTR, NULL, NULL, NULL, NULL, NULL, 0, 0, "the delta callback's user data") \
    X(reasoning_budget, I32, -1, "reasoning-budget", "N", "SIPP_REASONING_BUDGET", NULL, -1,      \
      INT32_MAX,                                                                                  \
      "chat: thinking tokens, -1 = unlimited (default), 0 = no thinking, N = at most N")

/** sipp_embed_params: the options of embed (sipp_embed). */
#define SIPP_EMBED_SETTINGS(X)                                                                    \
    X(struct_size, SIZE, sizeof(sipp_embed_params), NULL, NULL, NULL, NULL, 0, 0,                 \
      "the size of the struct")                                                                   \
    X(normalize, BOOL, true, "no-normalize", "", NULL, NULL, 0, 1,                                \
      "return the raw pooled vector (default: L2-normalised)")         \
    X(extra_json, STR, NULL, "extra-json", "JSON", NULL, NULL, 0, 0,                              \
      "extra request fields for the remote API, e.g. '{\"dimensions\":256}'")                    \
    X(request_id, STR, NULL, "request-id", "ID", NULL, NULL, 0, 0,                                \
      "sent as x-request-id (a gateway passes it on upstream)")

/** sipp_provider_params: a provider endpoint (sipp_client_add_provider). Its TOML keys are a
 *  provider target's own keys in the gateway's [[targets]]. */
#define SIPP_PROVIDER_SETTINGS(X)                                                                 \
    X(struct_size, SIZE, sizeof(sipp_provider_params), NULL, NULL, NULL, NULL, 0, 0,              \
      "the size of the struct")                                                                   \
    X(kind, PROVIDER_KIND, SIPP_PROVIDER_OPENAI_COMPATIBLE, NULL, NULL, NULL, NULL, 1, 3,          \
      "openai, openai_compatible or anthropic (the CLI's --provider, a target's type)")           \
    X(model, STR, NULL, "remote-model", "NAME", NULL, NULL, 0, 0,                                 \
      "the provider's model name")                                             \
    X(base_url, STR, NULL, "base-url", "URL", NULL, "base_url", 0, 0,                             \
      "e.g. http://127.0.0.1:8080/v1 (openai, anthropic: their API)")                             \
    X(api_key, STR, NULL, NULL, NULL, NULL, NULL, 0, 0, "the API key (else from api_key_env)")    \
    X(api_key_env, STR, NULL, "api-key-env", "VAR", NULL, "api_key_env", 0, 0,                    \
      "env var holding the API key (default OPENAI_API_KEY, ANTHROPIC_API_KEY; none for "         \
      "openai_compatible)")                                                                       \
    X(connect_timeout_ms, U32, 0, NULL, NULL, NULL, NULL, 0, UINT32_MAX,                          \
      "connect limit in ms (0 = 10000)")                                                          \
    X(request_timeout_ms, U32, 0, "request-timeout-ms", "N", NULL, NULL, 0, INT32_MAX,            \
      "whole-request limit (default none)")                                                       \
    X(idle_timeout_ms, U32, 0, "idle-timeout-ms", "N", NULL, NULL, 0, INT32_MAX,                  \
      "limit of silence within a stream (default 60000)")                                         \
    X(version, STR, NULL, NULL, NULL, NULL, "version", 0, 0,                                      \
      "Anthropic only: the anthropic-version header (default 2023-06-01)")                        \
    X(headers, STRV, NULL, NULL, NULL, NULL, NULL, 0, 0, "static headers (the CLI's --header)")   \
    X(n_headers, COUNT, 0, NULL, NULL, NULL, NULL, 0, 0, "how many headers")                      \
    X(allow_private_network, BOOL, false, "allow-private-network", "", NULL,                      \
      "allow_private_network", 0, 1,                                                              \
      "let the remote endpoint be on a private or link-local address (10.x, 192.168.x, "          \
      "fd00::/8...), plain http included")

/** sipp_gateway_params: a Sipp gateway endpoint (sipp_client_add_gateway). */
#define SIPP_GATEWAY_SETTINGS(X)                                                                  \
    X(struct_size, SIZE, sizeof(sipp_gateway_params), NULL, NULL, NULL, NULL, 0, 0,               \
      "the size of the struct")                                                                   \
    X(base_url, STR, NULL, "gateway", "URL", NULL, NULL, 0, 0,                                    \
      "run on a Sipp gateway, e.g. http://127.0.0.1:8080")                                        \
    X(target, STR, NULL, "target", "NAME", NULL, NULL, 0, 0, "the gateway's target")              \
    X(auth, GATEWAY_AUTH, SIPP_GATEWAY_AUTH_BEARER, NULL, NULL, NULL, NULL, 0, 2,                 \
      "none, bearer or header (the CLI: bearer, header with --auth-header)")                      \
    X(token, STR, NULL, NULL, NULL, NULL, NULL, 0, 0, "the token (else from token_env)")          \
    X(token_env, STR, NULL, "token-env", "VAR", NULL, NULL, 0, 0,                                 \
      "env var holding the gateway's bearer token (default SIPP_GATEWAY_TOKEN; unset = no "       \
      "token)")                                                                                   \
    X(auth_header, STR, NULL, "auth-header", "NAME", NULL, NULL, 0, 0,                            \
      "send the token as 'NAME: <token>' instead of 'Authorization: Bearer' (a proxy in front "   \
      "of the gateway)")                                                                          \
    X(headers, STRV, NULL, NULL, NULL, NULL, NULL, 0, 0, "static headers (the CLI's --header)")   \
    X(n_headers, COUNT, 0, NULL, NULL, NULL, NULL, 0, 0, "how many headers")                      \
    X(connect_timeout_ms, U32, 0, NULL, NULL, NULL, NULL, 0, UINT32_MAX,                          \
      "connect limit in ms (0 = 10000)")                                                          \
    X(request_timeout_ms, U32, 0, "request-timeout-ms", "N", NULL, NULL, 0, INT32_MAX,            \
      "whole-request limit (default none)")                                                       \
    X(idle_timeout_ms, U32, 0, "idle-timeout-ms", "N", NULL, NULL, 0, INT32_MAX,                  \
      "limit of silence within a stream (default 60000)")                                         \
    X(allow_private_network, BOOL, false, "allow-private-network", "", NULL, NULL, 0, 1,          \
      "let the remote endpoint be on a private or link-local address (10.x, 192.168.x, "          \
      "fd00::/8...), plain http included")

/** One row of a settings table as data, for code that walks it at run time. */
typedef struct sipp_setting {
    const char *field; /**< the C field name */
    sipp_setting_kind kind;
    size_t offset;     /**< offsetof(struct, field) */
    const char *flag, *arg, *env, *toml; /**< NULL: none */
    int64_t min;
    uint64_t max;
    const char *help;
} sipp_setting;

/** The size of a field of kind `k`, for code that copies fields by row. */
static inline size_t sipp_setting_size(sipp_setting_kind k) {
    switch (k) {
#define SIPP__KIND_SIZE(k) case SIPP_SETTING_##k: return sizeof(SIPP_SETTING_CTYPE_##k);
        SIPP__KIND_SIZE(SIZE) SIPP__KIND_SIZE(U32) SIPP__KIND_SIZE(I32) SIPP__KIND_SIZE(U64)
        SIPP__KIND_SIZE(BOOL) SIPP__KIND_SIZE(STR) SIPP__KIND_SIZE(FN) SIPP__KIND_SIZE(PTR)
        SIPP__KIND_SIZE(F32) SIPP__KIND_SIZE(STRV) SIPP__KIND_SIZE(COUNT) SIPP__KIND_SIZE(TOKEN_FN)
        SIPP__KIND_SIZE(PROVIDER_KIND) SIPP__KIND_SIZE(GATEWAY_AUTH) SIPP__KIND_SIZE(MEDIA)
        SIPP__KIND_SIZE(TOOLS) SIPP__KIND_SIZE(TOOL_CHOICE) SIPP__KIND_SIZE(REASONING_MODE)
        SIPP__KIND_SIZE(DELTA_FN)
#undef SIPP__KIND_SIZE
    }
    return 0;
}

/** Makes a sipp_setting initializer of a row of the table of struct T:
 *  `#define ROW(...) SIPP_SETTING_ROW(sipp_text_params, __VA_ARGS__)` then
 *  `static const sipp_setting t[] = {SIPP_TEXT_SETTINGS(ROW)};`. The _ROW macros below are
 *  those for each table. */
#define SIPP_SETTING_ROW(T, field, kind, def, flag, arg, env, toml, min, max, help)               \
    {#field, SIPP_SETTING_##kind, offsetof(T, field), flag, arg, env, toml, (int64_t)(min),        \
     (uint64_t)(max), help},
#define SIPP_LOCAL_SETTING_ROW(...) SIPP_SETTING_ROW(sipp_local_params, __VA_ARGS__)
#define SIPP_TEXT_SETTING_ROW(...) SIPP_SETTING_ROW(sipp_text_params, __VA_ARGS__)
#define SIPP_EMBED_SETTING_ROW(...) SIPP_SETTING_ROW(sipp_embed_params, __VA_ARGS__)
#define SIPP_PROVIDER_SETTING_ROW(...) SIPP_SETTING_ROW(sipp_provider_params, __VA_ARGS__)
#define SIPP_GATEWAY_SETTING_ROW(...) SIPP_SETTING_ROW(sipp_gateway_params, __VA_ARGS__)

/** A struct's defaults as a compound-literal initializer list, from the default column:
 *  `(sipp_text_params){SIPP_TEXT_SETTINGS(SIPP_SETTING_DEFAULT)}`. */
#define SIPP_SETTING_DEFAULT(field, kind, def, ...) .field = def,

/* ---- each table matches its struct -------------------------------------------------------------
 * A mirror struct built from a table's rows must have the layout of its struct: a field added to
 * sipp.h without a row, rows out of order or a wrong kind fail the build of every includer, with
 * a message that names the table to edit. */
#if !defined(__cplusplus)
#define SIPP__STR2(x) #x
#define SIPP__STR(x) SIPP__STR2(x)
#define SIPP__SETTING_MEMBER(field, kind, ...) SIPP_SETTING_CTYPE_##kind field;
#define SIPP__SETTING_CHECK(field, kind, ...)                                                    \
    _Static_assert(offsetof(SIPP__MIRROR, field) == offsetof(SIPP__STRUCT, field) &&             \
                       _Generic(((SIPP__STRUCT *)0)->field,                                       \
                           SIPP_SETTING_CTYPE_##kind: 1,                                          \
                           default: 0),                                                           \
                   "include/sipp_settings.h: the row of " #field " in the table of "              \
                   SIPP__STR(SIPP__STRUCT) " is out of order or of the wrong kind: give it the "  \
                   "KIND whose SIPP_SETTING_CTYPE_* is the field's C type in sipp.h, put it in "  \
                   "the order of the struct, then run scripts/gen-settings");
#define SIPP__SETTING_SIZE_CHECK(table, T)                                                       \
    _Static_assert(sizeof(SIPP__MIRROR) == sizeof(T),                                             \
                   #T " has a field that " #table " (include/sipp_settings.h) lacks: add its row " \
                   "there, in struct order (X(field, KIND, default, flag, ARG, env, toml_key, "  \
                   "min, max, help); NULL where there is none), document the field in "           \
                   "docs/api.md, then run scripts/gen-settings");

struct sipp__local_settings_mirror {
    SIPP_LOCAL_SETTINGS(SIPP__SETTING_MEMBER)
};
#define SIPP__MIRROR struct sipp__local_settings_mirror
#define SIPP__STRUCT sipp_local_params
SIPP_LOCAL_SETTINGS(SIPP__SETTING_CHECK)
SIPP__SETTING_SIZE_CHECK(SIPP_LOCAL_SETTINGS, sipp_local_params)
#undef SIPP__MIRROR
#undef SIPP__STRUCT

struct sipp__text_settings_mirror {
    SIPP_TEXT_SETTINGS(SIPP__SETTING_MEMBER)
};
#define SIPP__MIRROR struct sipp__text_settings_mirror
#define SIPP__STRUCT sipp_text_params
SIPP_TEXT_SETTINGS(SIPP__SETTING_CHECK)
SIPP__SETTING_SIZE_CHECK(SIPP_TEXT_SETTINGS, sipp_text_params)
#undef SIPP__MIRROR
#undef SIPP__STRUCT

struct sipp__embed_settings_mirror {
    SIPP_EMBED_SETTINGS(SIPP__SETTING_MEMBER)
};
#define SIPP__MIRROR struct sipp__embed_settings_mirror
#define SIPP__STRUCT sipp_embed_params
SIPP_EMBED_SETTINGS(SIPP__SETTING_CHECK)
SIPP__SETTING_SIZE_CHECK(SIPP_EMBED_SETTINGS, sipp_embed_params)
#undef SIPP__MIRROR
#undef SIPP__STRUCT

struct sipp__provider_settings_mirror {
    SIPP_PROVIDER_SETTINGS(SIPP__SETTING_MEMBER)
};
#define SIPP__MIRROR struct sipp__provider_settings_mirror
#define SIPP__STRUCT sipp_provider_params
SIPP_PROVIDER_SETTINGS(SIPP__SETTING_CHECK)
SIPP__SETTING_SIZE_CHECK(SIPP_PROVIDER_SETTINGS, sipp_provider_params)
#undef SIPP__MIRROR
#undef SIPP__STRUCT

struct sipp__gateway_settings_mirror {
    SIPP_GATEWAY_SETTINGS(SIPP__SETTING_MEMBER)
};
#define SIPP__MIRROR struct sipp__gateway_settings_mirror
#define SIPP__STRUCT sipp_gateway_params
SIPP_GATEWAY_SETTINGS(SIPP__SETTING_CHECK)
SIPP__SETTING_SIZE_CHECK(SIPP_GATEWAY_SETTINGS, sipp_gateway_params)
#undef SIPP__MIRROR
#undef SIPP__STRUCT

#undef SIPP__SETTING_SIZE_CHECK
#undef SIPP__SETTING_CHECK
#undef SIPP__SETTING_MEMBER
#undef SIPP__STR
#undef SIPP__STR2
#endif

#endif
