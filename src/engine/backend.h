/*
 * backend.h — the compute seam of the local engine: what runs a batch and owns the KV cache.
 *
 * A tick is three steps (docs/engine.md, "The compute seam"):
 *   plan     (engine, engine_tick.c): the rows of one batch — token ids or input embeddings, at
 *            which positions, of which sequences, and which rows need logits;
 *   forward  (a backend, this interface): runs the plan and returns the logits of the rows that
 *            asked for them; the backend owns the KV cache and its per-sequence operations;
 *   sample   (engine, engine_tick.c + engine_text.c): samplers, stop strings, UTF-8 hold-back and
 *            streaming, the same for every backend.
 * Two backends exist: the llama.cpp one (backend_llama.c), the default, and an external one whose
 * functions an embedder supplies (sipp__engine_open_external); its forward may complete later, on
 * any thread, through sipp__engine_commit (the wasm host runs it in JavaScript).
 *
 * Contracts, for every backend:
 * - Only the engine thread calls a backend's functions, one at a time, and never while a forward
 *   is pending (submitted and not yet committed): KV operations are ordered after the forward
 *   they follow.
 * - Sequence ids are 0..n_seq-1 (the engine uses n_parallel + 1: one per slot, one for
 *   embeddings); positions within a sequence start at 0 and are contiguous in what the engine
 *   plans (a context shift moves them down through seq_shift first).
 * - No header of llama.cpp is needed to implement one: every type here is plain C.
 */
#ifndef SIPP_ENGINE_BACKEND_H
#define SIPP_ENGINE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sipp__engine sipp__engine;

/* One batch, built by the engine. The arrays are the engine's (allocated once at open, capacity
 * n_batch rows) and stay valid and unchanged until the forward that received them completes
 * (returns true, or is committed). Rows are all token ids or all input embeddings. */
typedef struct sipp__plan {
    int32_t n_tokens;  /* rows in the batch */
    int32_t n_outputs; /* rows with logits[i] != 0 */
    int32_t *token;    /* [n_tokens] token ids; ignored when embd != NULL */
    float *embd;       /* NULL, or [n_tokens * n_embd_inp] input embeddings (a media chunk's
                        * rows, media.c: a plan of their own, no logits) */
    int32_t *pos;      /* [n_tokens] position of the row in its sequence */
    int32_t *seq_id;   /* [n_tokens] the row's sequence */
    int8_t *logits;    /* [n_tokens] 1: the row needs logits */
    int32_t *out_row;  /* [n_tokens] the row's index among the result's logits rows, -1 if none */
    int32_t capacity;  /* rows the arrays hold */
    /* Multimodal (media.c): with embd, the rows attend to each other both ways (a media chunk
     * whose projector asks for it, e.g. Gemma 3's images); false for every token plan. A
     * backend that cannot run such a plan fails its forward (rc != 0). */
    bool non_causal;
} sipp__plan;

/* A forward's result: rc 0 and n_outputs rows of n_vocab floats, in the order of the rows that
 * asked (row-major); or rc != 0 (the backend's code, shown in the error) and no logits. The
 * logits are the backend's: valid until its next call (any function) or its destruction. */
typedef struct sipp__fwd_result {
    int rc;
    const float *logits;
} sipp__fwd_result;

typedef struct sipp__backend {
    void *state; /* the backend's own; passed to every function */

    /* Vocabulary size (the width of a logits row), the model's embedding width (of an input
     * embedding row and of a pooled embedding) and the context of one sequence, in tokens. */
    int32_t (*n_vocab)(void *state);
    int32_t (*n_embd)(void *state);
    uint32_t (*n_ctx_seq)(void *state);

    /* Runs `plan` (every row goes into the KV cache of its sequence at its position). Returns
     * true with *res filled when it completed now; false when it completes later: the backend
     * then calls sipp__engine_commit(e, ...) exactly once, from any thread, and until then
     * reads the plan's arrays and touches nothing of the engine's. */
    bool (*forward)(void *state, sipp__engine *e, const sipp__plan *plan, sipp__fwd_result *res);

    /* KV cache of one sequence, synchronous. [p0, p1) with p1 < 0 meaning "to the end":
     * seq_remove(seq, 0, -1) clears it, seq_remove(seq, n, -1) cuts it back to n positions.
     * Returns false when the backend cannot remove part of a sequence (a recurrent model);
     * a whole clear never fails. */
    bool (*seq_remove)(void *state, int32_t seq, int32_t p0, int32_t p1);
    /* Adds `delta` to the positions of [p0, p1) (a context shift: delta < 0). */
    void (*seq_shift)(void *state, int32_t seq, int32_t p0, int32_t p1, int32_t delta);
    /* Makes dst's positions [0, p1) a copy of src's (dst is cleared first): a shared prefix. */
    void (*seq_copy)(void *state, int32_t src, int32_t dst, int32_t p1);
    /* The sequence's state as bytes (a snapshot): *out allocated with malloc, owned by the
     * caller; false (and *out NULL) when empty or out of memory. */
    bool (*state_save)(void *state, int32_t seq, uint8_t **out, size_t *len);
    /* Loads bytes from state_save into seq (replacing what it held); false when refused. */
    bool (*state_load)(void *state, int32_t seq, const uint8_t *data, size_t len);

    /* Optional (NULL: embeddings unsupported). Runs plan (every row of sequence `seq`, pooled)
     * and points *out at n_embd floats, valid until the next call; returns the backend's code
     * (0 = ran; *out NULL then means no embedding came out). The engine clears seq afterwards. */
    int (*embed)(void *state, const sipp__plan *plan, int32_t seq, const float **out);

    /* Frees the state. NULL when the engine does not own it (an external backend's embedder
     * frees its own after sipp__engine_close). */
    void (*destroy)(void *state);
} sipp__backend;

/* Hands a pending forward's result back (any thread, exactly once per forward that returned
 * false, and before sipp__engine_close: a close waits for it): rc 0 and logits as in
 * sipp__fwd_result (they stay valid until the engine calls the backend again or is closed),
 * or rc != 0 to fail the batch's sequences. */
void sipp__engine_commit(sipp__engine *e, int rc, const float *logits);

#endif
