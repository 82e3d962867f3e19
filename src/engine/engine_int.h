/*
 * engine_int.h — the local engine: one loaded GGUF model, one engine thread that owns all
 * llama.cpp state for it, and a tick-based scheduler that batches every running sequence.
 *
 * Callers (the client module) talk to an engine only through these functions; they build and
 * validate requests on their own thread (template rendering, tokenization, sampler set-up) and
 * hand them over through the engine's queue. Only src/engine includes llama.cpp headers.
 */
#ifndef SIPP_ENGINE_INT_H
#define SIPP_ENGINE_INT_H

#include "../common/common_int.h"
#include "backend.h"

typedef struct sipp__engine sipp__engine;

/* Loads the model and starts the engine thread. */
sipp_status sipp__engine_open(const sipp_local_params *p, sipp__engine **out, sipp_error *err);
/* sipp__engine_open for a model a pull stored with a projector (issue 17): when p->mmproj is
 * NULL, `pulled_mmproj` is loaded in its place; one that cannot be leaves a text-only endpoint
 * (media requests then say why) instead of failing the open. */
sipp_status sipp__engine_open_pulled(const sipp_local_params *p, const char *pulled_mmproj,
                                     sipp__engine **out, sipp_error *err);
/* Opens an engine whose forward and KV cache are the embedder's `be` (backend.h; copied, its
 * state stays the embedder's unless be->destroy is set): the tokenizer and chat template come
 * from a vocab-only load of p->model_path, which must be the model the backend runs (its
 * vocabulary size must match). Embeddings need be->embed; an embedding-only model is refused. */
sipp_status sipp__engine_open_external(const sipp_local_params *p, const sipp__backend *be,
                                       sipp__engine **out, sipp_error *err);
/* The llama.cpp backend alone, over the model and context sipp__engine_open would create for p
 * (same sequences, context and batch): for an embedder that wraps it, e.g. the pass-through
 * external backend of the tests. Freed with out->destroy(out->state). */
sipp_status sipp__backend_llama_open(const sipp_local_params *p, sipp__backend *out,
                                     sipp_error *err);
/* Cancels everything queued or running (each run gets its terminal state), joins the engine
 * thread and frees the model. NULL is a no-op. */
void sipp__engine_close(sipp__engine *e);
/* Endpoint swap (issue 21): waits up to timeout_ms for every submitted run to end (the caller
 * submits no more); true when none is left. Any thread. */
bool sipp__engine_wait_idle(sipp__engine *e, uint32_t timeout_ms);

void sipp__engine_get_info(const sipp__engine *e, sipp_endpoint_info *out);
void sipp__engine_get_stats(sipp__engine *e, sipp_engine_stats *out);

/* Submits a completion of `prompt` (already templated for chat). */
sipp_status sipp__engine_submit_text(sipp__engine *e, const char *prompt,
                                     const sipp_text_params *p, sipp_run **out, sipp_error *err);
/* Structured output (issue 18): whether llama.cpp's converter can enforce `schema` (the
 * same depth cap and conversion a local submission does), for every endpoint kind, so an
 * unenforceable schema is INVALID_ARGUMENT everywhere. Any thread. */
sipp_status sipp__engine_check_schema(const char *schema, sipp_error *err);
/* Renders chat messages with the model's template. *out freed with free(). */
sipp_status sipp__engine_render_chat(sipp__engine *e, const sipp_message *messages, size_t n,
                                     char **out, sipp_error *err);
/* Fills the local part of a routing estimate for a (rendered) prompt: token counts, cached
 * prefix for p's context key and scope, the load now (engine_estimate.c). */
sipp_status sipp__engine_estimate(sipp__engine *e, const char *prompt, const sipp_text_params *p,
                                  sipp_estimate *out, sipp_error *err);
/* Issue 18: a chat whose messages may carry tool calls and results, with p's tools and
 * reasoning mode, rendered and parsed by llama.cpp's chat layer (llama_bridge.cpp). */
sipp_status sipp__engine_submit_chat(sipp__engine *e, const sipp_chat_message *messages, size_t n,
                                     const sipp_text_params *p, sipp_run **out, sipp_error *err);
sipp_status sipp__engine_submit_embed(sipp__engine *e, const char *text,
                                      const sipp_embed_params *p, sipp_run **out,
                                      sipp_error *err);

#ifdef SIPP_ENGINE_MANUAL
/* Manual mode (single-thread WebAssembly): sipp__engine_open starts no thread; the host calls
 * this to run one engine round (admission, one tick) on its thread. Returns true while work is
 * queued or running (call again), false when idle. Never call it concurrently with submission
 * from another thread. */
bool sipp__engine_step(sipp__engine *e);
#endif

/* Structural validation of a GGUF file before llama.cpp reads it (gguf_check.c; its header
 * comment lists every check): SIPP_OK, or SIPP_MODEL_INVALID with a one-line message naming the
 * key, tensor or token at fault (SIPP_NOT_FOUND/SIPP_IO_ERROR when the file cannot be read). The first
 * part of a split model brings every part llama.cpp would open into the check (each one whole,
 * split.no its index, split.count the first part's; a missing part is SIPP_NOT_FOUND), and
 * *n_parts (may be NULL) receives the number of files: 1 for a model that is not split. */
sipp_status sipp__gguf_precheck(const char *path, uint32_t *n_parts, sipp_error *err);
/* The path of part i (0-based) of an n-part split model whose first part is `first`, as
 * llama.cpp names it (llama_split_path: "<prefix>-%05d-of-%05d.gguf"). False when `first` is
 * not named as a first part of n, i >= n, or `cap` is too small. */
bool sipp__gguf_part_path(const char *first, uint32_t i, uint32_t n, char *buf, size_t cap);
/* Checks a model file against a SHA-256 pin (`hex`: 64 hex digits, either case), hashing the
 * whole file in bounded reads; `digest` receives the file's SHA-256. SIPP_OK, INVALID_ARGUMENT
 * for malformed hex, MODEL_INVALID "sha256 mismatch: expected ..., file has ...", or
 * IO/NOT_FOUND. */
sipp_status sipp__model_verify_sha256(const char *path, const char *hex, uint8_t digest[32],
                                      sipp_error *err);
/* True when `hex` is exactly 64 hex digits (the form of a pin). */
bool sipp__sha256_hex_valid(const char *hex);
/* model.c: a model's capabilities from its metadata, the one rule for open and inspection. */
struct llama_model;
typedef struct sipp__model_caps {
    bool embed_only; /* no decoder, or a non-causal encoder: embeddings only */
    bool can_embed;  /* false for recurrent and hybrid models and for rerankers */
    bool reranker;   /* rank pooling: scores pairs, cannot embed */
    int pooling;     /* the llama_pooling_type to ask for: the model's, else MEAN */
} sipp__model_caps;
void sipp__model_caps_read(const struct llama_model *m, const char *arch, sipp__model_caps *out);
/* model.c: sipp_model_inspect on a file path (the client resolves pulled names first). */
sipp_status sipp__model_inspect(const char *path, sipp_endpoint_info *info,
                                char **chat_template_out, sipp_error *err);
/* model.c: the quantization of a GGUF (general.file_type, else its dominant weight type), e.g.
 * "Q4_K_M", into buf; "" when unknown. */
void sipp__model_quant_name(const char *path, char *buf, size_t cap);
/* model.c: true when the model looks positions up in a learned table (a `position_embd.weight`
 * tensor: GPT-2, BERT, ...). Such a model has no row for a position at or past its training
 * context, and llama.cpp aborts the process on one, so its context must not exceed n_ctx_train. */
bool sipp__model_has_position_table(const char *path);
/* The same checks on a whole GGUF file held in memory (`len` is the file size); used by the
 * unit tests and the fuzz target. */
sipp_status sipp__gguf_check_buffer(const unsigned char *data, size_t len, sipp_error *err);

/* backend_init.c: initialises llama.cpp's backend and routes its log through Sipp's log level.
 * Idempotent; any thread. */
void sipp__llama_init_once(void);

#endif
