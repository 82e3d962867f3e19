/*
 * backend_llama.c — the llama.cpp backend of the compute seam (backend.h), the default: a plan
 * becomes one llama_batch over the plan's own arrays and one llama_decode; the KV operations
 * are llama_memory_* and llama_state_seq_* on the context.
 *
 * Thread: the engine thread only (backend.h). Ownership: the model and the context belong to
 * whoever created them — the engine (engine_open.c) for its default backend, or the backend
 * itself when sipp__backend_llama_open made them (then destroy frees them). forward always
 * completes at once; its logits are llama.cpp's output buffer (valid until the next decode). A
 * plan of input embeddings (a media chunk) is the same llama_batch with `embd` set; its
 * non_causal flag turns causal attention off for that decode only, as mtmd's helper does.
 * Invariant: nothing is allocated per forward (the seq_id pointer table is allocated with the
 * backend, n_batch rows).
 * Deferred KV updates: llama.cpp applies a copy between sequences (another stream of its
 * non-unified cache) and a shift at the start of the next decode, then re-reserves its
 * worst-case graph in the context's current mode. An embedding's decode runs with embeddings
 * on, and that reserve builds mean pooling over n_ubatch rounded up to a multiple of n_seq_max
 * tokens but n_ubatch outputs: ggml_mul_mat asserts and the process aborts. So embed applies
 * pending updates first, with embeddings off (flush_pending).
 */
#include "engine_state.h"

#include <stdlib.h>

struct sipp__llama_backend {
    struct llama_model *model;
    struct llama_context *ctx;
    bool owns;       /* free model and ctx on destroy */
    bool embed_only; /* a non-causal encoder: embeddings on, encode */
    int32_t *n_seq_id; /* [n_batch] all 1 */
    llama_seq_id **seq_ptr; /* [n_batch] row i -> &plan->seq_id[i] */
    int32_t n_batch;
    bool kv_pending; /* a seq_copy or seq_shift that llama.cpp applies at the next decode */
};
typedef struct sipp__llama_backend llb;

/* The llama_batch view of a plan: no copy, the plan's arrays are llama.cpp's types. */
static struct llama_batch as_batch(llb *b, const sipp__plan *p) {
    for (int32_t i = 0; i < p->n_tokens; i++) b->seq_ptr[i] = &p->seq_id[i];
    struct llama_batch batch = {
        .n_tokens = p->n_tokens,
        .token = p->embd ? NULL : p->token,
        .embd = p->embd,
        .pos = p->pos,
        .n_seq_id = b->n_seq_id,
        .seq_id = b->seq_ptr,
        .logits = p->logits,
    };
    return batch;
}

static int32_t llb_n_vocab(void *st) {
    llb *b = st;
    return llama_vocab_n_tokens(llama_model_get_vocab(b->model));
}

static int32_t llb_n_embd(void *st) { return llama_model_n_embd(((llb *)st)->model); }

static uint32_t llb_n_ctx_seq(void *st) { return llama_n_ctx_seq(((llb *)st)->ctx); }

static bool llb_forward(void *st, sipp__engine *e, const sipp__plan *p, sipp__fwd_result *res) {
    (void)e;
    llb *b = st;
    if (p->n_tokens > b->n_batch) {
        *res = (sipp__fwd_result){.rc = -1};
        return true;
    }
    if (p->non_causal) llama_set_causal_attn(b->ctx, false); /* a media chunk (media.c) */
    res->rc = llama_decode(b->ctx, as_batch(b, p));
    if (res->rc == 0) b->kv_pending = false;
    if (p->non_causal) llama_set_causal_attn(b->ctx, true);
    res->logits = res->rc == 0 && p->n_outputs > 0 ? llama_get_logits(b->ctx) : NULL;
    if (res->rc == 0 && p->n_outputs > 0 && !res->logits) res->rc = -1;
    return true;
}

static bool llb_seq_remove(void *st, int32_t seq, int32_t p0, int32_t p1) {
    llama_memory_t mem = llama_get_memory(((llb *)st)->ctx);
    if (!mem) return true;
    return llama_memory_seq_rm(mem, seq, p0, p1 < 0 ? -1 : p1);
}

static void llb_seq_shift(void *st, int32_t seq, int32_t p0, int32_t p1, int32_t delta) {
    llama_memory_seq_add(llama_get_memory(((llb *)st)->ctx), seq, p0, p1, delta);
    ((llb *)st)->kv_pending = true;
}

static void llb_seq_copy(void *st, int32_t src, int32_t dst, int32_t p1) {
    llama_memory_t mem = llama_get_memory(((llb *)st)->ctx);
    llama_memory_seq_rm(mem, dst, -1, -1);
    llama_memory_seq_cp(mem, src, dst, 0, p1 < 0 ? -1 : p1);
    ((llb *)st)->kv_pending = true;
}

static bool llb_state_save(void *st, int32_t seq, uint8_t **out, size_t *len) {
    llb *b = st;
    *out = NULL;
    *len = 0;
    size_t size = llama_state_seq_get_size(b->ctx, seq);
    uint8_t *buf = size ? malloc(size) : NULL;
    if (!buf) return false;
    size_t got = llama_state_seq_get_data(b->ctx, buf, size, seq);
    if (got == 0) {
        free(buf);
        return false;
    }
    *out = buf;
    *len = got;
    return true;
}

static bool llb_state_load(void *st, int32_t seq, const uint8_t *data, size_t len) {
    return llama_state_seq_set_data(((llb *)st)->ctx, data, len, seq) > 0;
}

/* Applies llama.cpp's deferred KV updates (see the file comment) with embeddings off: a decode
 * of the plan's first row alone, no outputs, on the embedding's (empty) sequence, removed
 * again. Returns llama_decode's status. */
static int flush_pending(llb *b, const sipp__plan *p, int32_t seq) {
    struct llama_batch one = as_batch(b, p);
    int8_t no_output = 0;
    one.n_tokens = 1;
    one.logits = &no_output;
    int rc = llama_decode(b->ctx, one);
    llama_memory_seq_rm(llama_get_memory(b->ctx), seq, -1, -1);
    if (rc == 0) b->kv_pending = false;
    return rc;
}

static int llb_embed(void *st, const sipp__plan *p, int32_t seq, const float **out) {
    llb *b = st;
    *out = NULL;
    if (p->n_tokens > b->n_batch || p->n_tokens < 1) return -1;
    if (!b->embed_only && b->kv_pending) {
        int rc = flush_pending(b, p, seq);
        if (rc != 0) return rc;
    }
    struct llama_batch batch = as_batch(b, p);
    if (!b->embed_only) llama_set_embeddings(b->ctx, true);
    int rc = b->embed_only && llama_model_has_encoder(b->model) ? llama_encode(b->ctx, batch)
                                                                : llama_decode(b->ctx, batch);
    if (rc == 0) *out = llama_get_embeddings_seq(b->ctx, seq);
    if (!b->embed_only) llama_set_embeddings(b->ctx, false);
    return rc;
}

static void llb_destroy(void *st) {
    llb *b = st;
    if (!b) return;
    if (b->owns) {
        if (b->ctx) llama_free(b->ctx);
        if (b->model) llama_model_free(b->model);
    }
    free(b->n_seq_id);
    free(b->seq_ptr);
    free(b);
}

bool sipp__backend_llama_new(struct llama_model *model, struct llama_context *ctx, bool owns,
                             bool embed_only, sipp__backend *out) {
    llb *b = calloc(1, sizeof *b);
    int32_t n = (int32_t)llama_n_batch(ctx);
    if (b) {
        b->n_batch = n;
        b->n_seq_id = malloc((size_t)n * sizeof *b->n_seq_id);
        b->seq_ptr = malloc((size_t)n * sizeof *b->seq_ptr);
    }
    if (!b || !b->n_seq_id || !b->seq_ptr) {
        if (b) b->owns = false; /* a failed constructor leaves model and ctx to the caller */
        llb_destroy(b);
        return false;
    }
    for (int32_t i = 0; i < n; i++) b->n_seq_id[i] = 1;
    b->model = model;
    b->ctx = ctx;
    b->owns = owns;
    b->embed_only = embed_only;
    *out = (sipp__backend){
        .state = b,
        .n_vocab = llb_n_vocab,
        .n_embd = llb_n_embd,
        .n_ctx_seq = llb_n_ctx_seq,
        .forward = llb_forward,
        .seq_remove = llb_seq_remove,
        .seq_shift = llb_seq_shift,
        .seq_copy = llb_seq_copy,
        .state_save = llb_state_save,
        .state_load = llb_state_load,
        .embed = llb_embed,
        .destroy = llb_destroy,
    };
    return true;
}
