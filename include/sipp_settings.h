/*
 * sipp_settings.h — the fields of sipp_local_params as one table: for each field its type, its
 * default, its range, its `sipp` CLI flag and environment variable, its gateway TOML key
 * ([targets.runtime]) and a one-line help. Everything that lists these fields derives from it:
 * the library's defaults (src/common/params.c), the CLI's options and --help lines
 * (apps/cli/options.c), the gateway's [targets.runtime] keys and the copy into
 * sipp_local_params (src/gateway/config.c, targets.c), the Node addon's options, the layout
 * test (tests/bindings/abi_layout.c), and, through tests/bindings/settings_gen.c, the Python,
 * Rust and TypeScript copies (bindings/python/sipp/_fields.py, bindings/rust/src/fields.rs,
 * bindings/node/local_options.d.ts).
 *
 * Adding a field to sipp_local_params is one row here, in struct order, plus its docs
 * (docs/api.md, and docs/cli.md / docs/gateway.md when it has a flag or a key); then
 * `scripts/gen-settings` rewrites the bindings' generated files. The static assertions at the
 * end fail the build when the table and the struct disagree (a field without a row, rows out of
 * order, a type that differs).
 *
 * This header is for programs built with Sipp (the CLI, the gateway, the bindings); it adds
 * nothing to the ABI. It includes only sipp.h and standard headers.
 */
#ifndef SIPP_SETTINGS_H
#define SIPP_SETTINGS_H

#include "sipp.h"

#include <stddef.h>
#include <stdint.h>

/** The type of a field: its C type is SIPP_SETTING_CTYPE_<kind>. SIZE (struct_size), FN (a
 *  callback) and PTR (its user data) are fields of the struct but not settings: nothing reads
 *  them from a flag, a variable or a key. */
typedef enum sipp_setting_kind {
    SIPP_SETTING_SIZE,
    SIPP_SETTING_U32,
    SIPP_SETTING_I32,
    SIPP_SETTING_U64,
    SIPP_SETTING_BOOL,
    SIPP_SETTING_STR,
    SIPP_SETTING_FN,
    SIPP_SETTING_PTR,
} sipp_setting_kind;

#define SIPP_SETTING_CTYPE_SIZE uint32_t
#define SIPP_SETTING_CTYPE_U32 uint32_t
#define SIPP_SETTING_CTYPE_I32 int32_t
#define SIPP_SETTING_CTYPE_U64 uint64_t
#define SIPP_SETTING_CTYPE_BOOL bool
#define SIPP_SETTING_CTYPE_STR const char *
#define SIPP_SETTING_CTYPE_FN sipp_load_progress_fn
#define SIPP_SETTING_CTYPE_PTR void *

/**
 * The table of sipp_local_params, one row per field in struct order:
 *   X(field, KIND, default, "cli-flag", "ARG", "SIPP_ENV", "toml_key", min, max, "help")
 * - default: the value sipp_local_params_init() writes (0 means "the engine chooses"; the help
 *   says what it chooses).
 * - cli-flag: the long option of `sipp query|chat|embed` without "--", or NULL for none. ARG is
 *   the placeholder of --help ("" for a BOOL flag, which takes no value).
 * - SIPP_ENV: the environment variable the CLI reads when the flag is absent, or NULL.
 * - toml_key: the key in the gateway's [targets.runtime], or NULL (model_path and sha256 are
 *   the target's own `model` and `sha256` keys).
 * - min, max: the accepted range of integers, on the command line and in the TOML file alike.
 */
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
      "watchdog: no scheduler round for this long is a stall (0 = 60000)")                       \
    X(itl_target_ms, U32, 0, "itl-target", "MS", "SIPP_ITL_TARGET_MS", "itl_target_ms", 0,         \
      600000, "inter-token latency target while a prompt prefills (0 = 400)")                     \
    X(n_resident, U32, 0, NULL, NULL, NULL, "n_resident", 0, 64,                                  \
      "sequences kept warm in memory (0 = n_parallel)")

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

/** Makes a sipp_setting initializer of a sipp_local_params row:
 *  `static const sipp_setting t[] = {SIPP_LOCAL_SETTINGS(SIPP_LOCAL_SETTING_ROW)};` */
#define SIPP_LOCAL_SETTING_ROW(field, kind, def, flag, arg, env, toml, min, max, help)            \
    {#field, SIPP_SETTING_##kind, offsetof(sipp_local_params, field), flag, arg, env, toml,       \
     (int64_t)(min), (uint64_t)(max), help},

/* ---- the table matches the struct --------------------------------------------------------------
 * A mirror struct built from the rows must have the layout of sipp_local_params: a field added to
 * sipp.h without a row, rows out of order or a wrong kind fail the build of every includer. */
#if !defined(__cplusplus)
#define SIPP__SETTING_MEMBER(field, kind, ...) SIPP_SETTING_CTYPE_##kind field;
struct sipp__local_settings_mirror {
    SIPP_LOCAL_SETTINGS(SIPP__SETTING_MEMBER)
};
#define SIPP__SETTING_CHECK(field, kind, ...)                                                    \
    _Static_assert(offsetof(struct sipp__local_settings_mirror, field) ==                         \
                           offsetof(sipp_local_params, field) &&                                  \
                       _Generic(((sipp_local_params *)0)->field,                                  \
                           SIPP_SETTING_CTYPE_##kind: 1,                                          \
                           default: 0),                                                           \
                   "SIPP_LOCAL_SETTINGS: row " #field " is out of order or of the wrong kind");
SIPP_LOCAL_SETTINGS(SIPP__SETTING_CHECK)
_Static_assert(sizeof(struct sipp__local_settings_mirror) == sizeof(sipp_local_params),
               "SIPP_LOCAL_SETTINGS lacks a row for a field of sipp_local_params");
#undef SIPP__SETTING_CHECK
#undef SIPP__SETTING_MEMBER
#endif

#endif
