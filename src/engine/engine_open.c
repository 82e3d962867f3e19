/*
 * engine_open.c — an engine's life cycle: open (validate, load the model, create the context,
 * allocate everything a tick needs, start the threads), close, and its info and stats.
 *
 * Thread: open and close run on the caller's thread, before the engine thread starts and after
 * it is joined, so they own every field; get_info and get_stats may run on any thread (info is
 * immutable after open; stats are copied under stats_mu, the queue length under mu).
 * Invariants: an open that fails frees everything it made (engine_release takes any subset)
 * and *out stays NULL; slots, the batch and every per-sequence buffer are allocated here once,
 * so the engine thread never allocates per tick; an unsafe snapshot directory or a bad pin is
 * refused before llama.cpp reads the model.
 */
#define _GNU_SOURCE
#include "engine_state.h"
#include "media.h"
#include "../common/test_control.h"

#include <math.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_N_CTX_CAP 4096
#define DEFAULT_N_BATCH 512
#define DEFAULT_N_PARALLEL 4
#define DEFAULT_MAX_QUEUED 256
#define DEFAULT_ITL_TARGET_MS 400
#define DEFAULT_STREAM_BUFFER (256u * 1024u)
#define DEFAULT_STALL_ALARM_MS 60000u
#define DEFAULT_CACHE_RAM ((uint64_t)1 << 30)
#define DEFAULT_CACHE_DISK ((uint64_t)4 << 30)

static bool load_progress(float p, void *ud) {
    const sipp_local_params *lp = ud;
    return lp->progress ? lp->progress(p, lp->progress_user_data) : true;
}

static void fill_info(sipp__engine *e) {
    sipp_endpoint_info *in = &e->info;
    *in = (sipp_endpoint_info){.struct_size = sizeof *in};
    llama_model_meta_val_str(e->model, "general.architecture", in->architecture,
                             sizeof in->architecture);
    llama_model_desc(e->model, in->description, sizeof in->description);
    in->n_ctx_train = (uint32_t)llama_model_n_ctx_train(e->model);
    in->n_embd = (uint32_t)llama_model_n_embd(e->model);
    in->n_params = llama_model_n_params(e->model);
    in->size_bytes = llama_model_size(e->model);
}

/* True when chat message content may not contain the text of token t. llama.cpp's tokenizer
 * matches the text of every CONTROL, USER_DEFINED and UNKNOWN token before anything else and
 * emits that token: CONTROL and UNKNOWN ones when it parses specials (the rendered chat prompt
 * is), USER_DEFINED ones always; models re-mark turn markers as USER_DEFINED (gpt-oss's
 * <|start|>, <|message|>, <|end|>; Qwen's <tool_call>, <think>). Spared: USER_DEFINED and
 * UNKNOWN tokens of a single character or of whitespace only, which real vocabularies mark so
 * (deepseek's 'ö', gpt-neox's runs of spaces) and which spell nothing but themselves. */
static bool content_may_not_spell(const struct llama_vocab *v, llama_token t) {
    const char *text = llama_vocab_get_text(v, t);
    if (!text || !text[0]) return false;
    enum llama_token_attr a = llama_vocab_get_attr(v, t);
    if (a & LLAMA_TOKEN_ATTR_CONTROL) return true;
    if (!(a & (LLAMA_TOKEN_ATTR_USER_DEFINED | LLAMA_TOKEN_ATTR_UNKNOWN))) return false;
    size_t chars = 0;
    bool blank = true;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        chars += (*p & 0xC0) != 0x80; /* UTF-8 lead bytes */
        blank = blank && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r');
    }
    return chars > 1 && !blank;
}

/* Frees everything an engine holds (any subset, after a failed open too). The engine thread
 * must not be running. */
static void engine_release(sipp__engine *e) {
    if (e->slots) {
        for (uint32_t i = 0; i < e->n_parallel; i++) {
            sipp__buf_free(&e->slots[i].held);
            sipp__buf_free(&e->slots[i].clean);
            free(e->slots[i].gaps);
            free(e->slots[i].cached);
            free(e->slots[i].key);
        }
        free(e->slots);
    }
    free(e->batch.token);
    free(e->batch.pos);
    free(e->batch.seq_id);
    free(e->batch.logits);
    free(e->batch.out_row);
    free(e->cur);
    free(e->gap_scratch);
    free(e->eog_bias);
    free(e->special);
    sipp__kvstore_free(e->kv); /* writes RAM-only snapshots to the disk tier */
    sipp__estimate_state_free(e);
    sipp__chat_templates_free(e->templates);
    sipp__media_close(e);
    if (e->be.destroy) e->be.destroy(e->be.state); /* before the context it may use */
    if (e->ctx) llama_free(e->ctx);
    if (e->model) llama_model_free(e->model);
    pthread_mutex_destroy(&e->templates_mu);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->stats_mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->idle_cv);
    pthread_cond_destroy(&e->watchdog_cv);
    free(e);
}

/* The fingerprint of the model's bytes for the snapshot store (sipp__model_fingerprint): of its
 * one file, or for a split model the SHA-256 over its parts' fingerprints in order, so that a
 * change to any part makes another model whose snapshots are never restored. */
static sipp_status model_fingerprint(const sipp_local_params *p, uint32_t n_parts,
                                     const uint8_t *pinned, uint8_t out[32], sipp_error *err) {
    if (n_parts <= 1) return sipp__model_fingerprint(p->model_path, p->cache_dir, pinned, out, err);
    size_t cap = strlen(p->model_path) + 1;
    char *part = malloc(cap);
    sipp__sha256 *h = part ? sipp__sha256_begin() : NULL;
    if (!h) {
        free(part);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    sipp_status st = SIPP_OK;
    for (uint32_t i = 0; i < n_parts && st == SIPP_OK; i++) {
        uint8_t fp[32];
        if (!sipp__gguf_part_path(p->model_path, i, n_parts, part, cap))
            st = sipp__fail(err, SIPP_MODEL_INVALID, 0, "model '%s': no name for split part %u",
                            p->model_path, i + 1);
        else if ((st = sipp__model_fingerprint(part, p->cache_dir, NULL, fp, err)) == SIPP_OK)
            sipp__sha256_update(h, fp, sizeof fp);
    }
    sipp__sha256_end(h, out);
    free(part);
    return st;
}

/* ============================================================================================
 * Opening: the steps of sipp__engine_open, in order
 * ========================================================================================== */

/* Copies the caller's params over the defaults (an older header's smaller struct keeps the
 * defaults of the fields it lacks; the wasm host calls the engine directly) and checks their
 * ranges. */
static sipp_status params_take(const sipp_local_params *params, sipp_local_params *lp,
                               sipp_error *err) {
    if (!params) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "local params are required");
    *lp = sipp__local_params_defaults();
    sipp_status st = sipp__params_in(lp, sizeof *lp, params, SIPP__FIRST_SIZE(local_params),
                                     "local params", err);
    if (st != SIPP_OK) return st;
    const sipp_local_params *p = lp;
    if (!p->model_path || !p->model_path[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "model_path is required");
    if (p->n_parallel > 64)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_parallel must be at most 64 (got %u)",
                          p->n_parallel);
    if (p->n_resident > 64)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_resident must be at most 64 (got %u)",
                          p->n_resident);
    if (p->n_ctx > (1u << 20))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_ctx %u is too large", p->n_ctx);
    if (p->n_threads < 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_threads must be >= 0");
    if (p->sha256 && !sipp__sha256_hex_valid(p->sha256))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "sha256 pin must be 64 hex digits (got %zu characters)", strlen(p->sha256));
    return SIPP_OK;
}

/* Everything checked before llama.cpp reads a byte: the pin (pinned[] receives the file's
 * SHA-256, also its fingerprint), the GGUF structure of every part (*n_parts), and the snapshot
 * directory. */
static sipp_status model_check(const sipp_local_params *p, uint8_t pinned[32], uint32_t *n_parts,
                               sipp_error *err) {
    sipp_status st;
    if (p->sha256 &&
        (st = sipp__model_verify_sha256(p->model_path, p->sha256, pinned, err)) != SIPP_OK)
        return st;
    st = sipp__gguf_precheck(p->model_path, n_parts, err);
    if (st != SIPP_OK) return st;
    /* A pin is the digest of one file, and llama.cpp opens parts 2..N of a split model by their
     * names alone: no pin covers them, so a pinned split model is refused, not half verified. */
    if (p->sha256 && *n_parts > 1)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "sha256 pin: '%s' is the first of %u parts of a split model and a pin "
                          "covers one file; merge the parts (llama-gguf-split --merge) and pin "
                          "the merged file, or load it without a pin", p->model_path, *n_parts);
    /* An unsafe snapshot directory is refused before the model is loaded (kvstore.h). */
    if (p->cache_dir && p->cache_dir[0] && p->cache_ram_bytes != SIPP_CACHE_DISABLED &&
        (st = sipp__kvstore_dir_check(p->cache_dir, err)) != SIPP_OK)
        return st;
    return SIPP_OK;
}

/* A zeroed engine with its locks; NULL when out of memory. */
static sipp__engine *engine_alloc(void) {
    sipp__engine *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    pthread_mutex_init(&e->templates_mu, NULL);
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->stats_mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->idle_cv, NULL);
    pthread_cond_init(&e->watchdog_cv, NULL);
    e->stats = (sipp_engine_stats){.struct_size = sizeof e->stats};
    return e;
}

/* Loads the weights and reads the model's info and capabilities (*caps). */
static sipp_status model_load(sipp__engine *e, const sipp_local_params *p, bool vocab_only,
                              sipp__model_caps *caps, sipp_error *err) {
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = p->n_gpu_layers;
    mp.vocab_only = vocab_only; /* an external backend: tokenizer and template only */
#ifdef __EMSCRIPTEN__
    mp.load_mode = LLAMA_LOAD_MODE_NONE; /* browser file systems cannot mmap: read into the heap */
#endif
    mp.progress_callback = load_progress;
    mp.progress_callback_user_data = (void *)p;
    e->model = llama_model_load_from_file(p->model_path, mp);
    if (!e->model)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0,
                          "llama.cpp could not load '%s' (corrupt, truncated or unsupported model; "
                          "SIPP_LOG=warn shows why)",
                          p->model_path);
    e->vocab = llama_model_get_vocab(e->model);
    fill_info(e);
    sipp__model_caps_read(e->model, e->info.architecture, caps);
    e->embed_only = caps->embed_only;
    e->reranker = caps->reranker;
    return SIPP_OK;
}

/* The scheduler's limits from the params and their defaults. */
static void limits_set(sipp__engine *e, const sipp_local_params *p) {
    e->n_decode = p->n_parallel ? p->n_parallel : DEFAULT_N_PARALLEL;
    /* More slots than decode slots keep more conversations resident; max_running still caps
     * what runs at once at n_parallel. */
    e->n_parallel = p->n_resident > e->n_decode ? p->n_resident : e->n_decode;
    e->n_batch = p->n_batch ? p->n_batch : DEFAULT_N_BATCH;
    e->max_running = p->max_running && p->max_running < e->n_decode ? p->max_running
                                                                     : e->n_decode;
    e->max_queued = p->max_queued ? p->max_queued : DEFAULT_MAX_QUEUED;
    e->tick_budget = p->tick_budget && p->tick_budget < e->n_batch ? p->tick_budget : e->n_batch;
    e->prefill_chunk = p->prefill_chunk;
    sipp__pfb_init(&e->pfb, p->itl_target_ms ? p->itl_target_ms : DEFAULT_ITL_TARGET_MS);
    e->stream_cap = p->stream_buffer_bytes ? p->stream_buffer_bytes : DEFAULT_STREAM_BUFFER;
    e->stall_alarm_ms = p->stall_alarm_ms == SIPP_STALL_ALARM_OFF ? 0
                        : p->stall_alarm_ms                   ? p->stall_alarm_ms
                                                              : DEFAULT_STALL_ALARM_MS;
    e->failpoint_stall_ms = sipp__test_engine_stall_ms();
    /* Embedding-only models generate nothing: no slots, one sequence for embeddings. */
    if (e->embed_only) e->n_parallel = e->n_decode = 0;
}

/* The context of one sequence: the params', else the training context capped at
 * DEFAULT_N_CTX_CAP, and never past the training context of a learned position table. */
static uint32_t choose_n_ctx(const sipp__engine *e, const sipp_local_params *p) {
    uint32_t n_ctx = p->n_ctx;
    if (n_ctx == 0) {
        n_ctx = e->info.n_ctx_train ? e->info.n_ctx_train : DEFAULT_N_CTX_CAP;
        if (n_ctx > DEFAULT_N_CTX_CAP) n_ctx = DEFAULT_N_CTX_CAP;
    }
    /* A learned position table has no row past the training context: a longer context would
     * let a sequence reach a position llama.cpp aborts on (found by bench/soak). */
    if (e->info.n_ctx_train && n_ctx > e->info.n_ctx_train &&
        sipp__model_has_position_table(p->model_path)) {
        sipp__log(SIPP_LOG_WARN, "n_ctx %u is more than the %u positions '%s' was trained with "
                  "(a learned position table); using %u", n_ctx, e->info.n_ctx_train,
                  p->model_path, e->info.n_ctx_train);
        n_ctx = e->info.n_ctx_train;
    }
    return n_ctx;
}

/* The compute threads: the params', else the CPUs this process may run on (affinity mask, as
 * taskset/cgroup cpusets set it), capped at 16; on Linux never more than those CPUs, since more
 * threads than CPUs only contend. */
static int32_t choose_threads(const sipp_local_params *p) {
    long allowed = sysconf(_SC_NPROCESSORS_ONLN);
    bool known = false;
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 0) {
        allowed = CPU_COUNT(&cpus);
        known = true;
    }
#endif
    if (allowed <= 0) allowed = 4;
    int32_t threads = p->n_threads;
    if (threads == 0) threads = (int32_t)(allowed > 16 ? 16 : allowed);
    if (known && threads > allowed) {
        sipp__log(SIPP_LOG_WARN, "n_threads %d is more than the %ld CPUs this process may use; "
                  "using %ld", threads, allowed, allowed);
        threads = (int32_t)allowed;
    }
    return threads;
}

/* Creates the llama_context (n_parallel + 1 sequences, KV not unified); *cp receives its
 * params (the snapshot store checks its cache types). Fills the rest of the info. */
static sipp_status context_create(sipp__engine *e, const sipp_local_params *p,
                                  const sipp__model_caps *caps, struct llama_context_params *cp,
                                  sipp_error *err) {
    uint32_t n_ctx = choose_n_ctx(e, p);
    uint32_t n_seq = e->n_parallel + 1;
    int32_t threads = choose_threads(p);
    *cp = llama_context_default_params();
    cp->n_ctx = n_ctx * n_seq;
    cp->n_batch = e->n_batch;
    cp->n_ubatch = e->n_batch;
    cp->n_seq_max = n_seq;
    cp->n_threads = threads;
    cp->n_threads_batch = threads;
    cp->kv_unified = false;
    cp->pooling_type = caps->can_embed ? (enum llama_pooling_type)caps->pooling
                                       : LLAMA_POOLING_TYPE_UNSPECIFIED;
    cp->embeddings = e->embed_only;
    cp->no_perf = true;
    e->ctx = llama_init_from_model(e->model, *cp);
    if (!e->ctx)
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0,
                          "llama.cpp could not create a context of %u tokens x %u sequences for '%s'",
                          n_ctx, n_seq, p->model_path);
    e->n_ctx_seq = llama_n_ctx_seq(e->ctx);
    e->info.n_ctx = e->n_ctx_seq;
    e->info.n_parallel = e->n_decode;
    e->info.can_generate = !e->embed_only;
    e->info.can_embed = caps->can_embed;
    e->partial_reuse = !llama_model_is_recurrent(e->model) && !llama_model_is_hybrid(e->model);
    e->context_shift = p->context_shift && e->partial_reuse;
    e->n_keep = p->n_keep < e->n_ctx_seq / 2 ? p->n_keep : e->n_ctx_seq / 2;
    return SIPP_OK;
}

/* Parses the model's chat template; a refused one is kept as the reason chat fails. */
static void templates_load(sipp__engine *e) {
    if (e->embed_only) return;
    char msg[SIPP_ERROR_MESSAGE_CAP] = "";
    e->templates = sipp__chat_templates_new(e->model, msg, sizeof msg);
    e->info.can_chat = e->templates != NULL;
    if (!e->templates && llama_model_chat_template(e->model, NULL)) {
        sipp__log(SIPP_LOG_WARN, "%s", msg);
        snprintf(e->template_error, sizeof e->template_error, "%s", msg);
    }
}

/* Everything the engine thread works in, allocated once: slots with their hold-back, gap and
 * token buffers, the batch, the end-of-generation bias and the tokens chat may not spell. */
static sipp_status buffers_alloc(sipp__engine *e, sipp_error *err) {
    e->slots = calloc(e->n_parallel ? e->n_parallel : 1, sizeof *e->slots);
    if (!e->slots) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        e->slots[i].seq = (llama_seq_id)i;
        sipp__buf_init(&e->slots[i].held, SIPP__RUN_TEXT_MAX);
        sipp__buf_init(&e->slots[i].clean, 3 * (size_t)SIPP__RUN_TEXT_MAX);
        e->slots[i].gaps = malloc(e->n_ctx_seq * sizeof(float));
        e->slots[i].cached = malloc(e->n_ctx_seq * sizeof(llama_token));
        if (!e->slots[i].gaps || !e->slots[i].cached)
            return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    e->gap_scratch = malloc(e->n_ctx_seq * sizeof(float));
    if (!e->gap_scratch || sipp__estimate_state_init(e) != SIPP_OK)
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    sipp__plan *b = &e->batch;
    b->capacity = (int32_t)e->n_batch;
    b->token = malloc(e->n_batch * sizeof *b->token);
    b->pos = malloc(e->n_batch * sizeof *b->pos);
    b->seq_id = malloc(e->n_batch * sizeof *b->seq_id);
    b->logits = malloc(e->n_batch * sizeof *b->logits);
    b->out_row = malloc(e->n_batch * sizeof *b->out_row);
    int32_t n_vocab = llama_vocab_n_tokens(e->vocab);
    e->n_vocab = n_vocab;
    e->cur = malloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *e->cur);
    if (!b->token || !b->pos || !b->seq_id || !b->logits || !b->out_row || !e->cur)
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    for (int32_t t = 0; t < n_vocab; t++) e->n_eog += llama_vocab_is_eog(e->vocab, t);
    e->eog_bias = calloc((size_t)(e->n_eog ? e->n_eog : 1), sizeof *e->eog_bias);
    if (!e->eog_bias) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    for (int32_t t = 0, k = 0; t < n_vocab; t++)
        if (llama_vocab_is_eog(e->vocab, t)) e->eog_bias[k++] = (llama_logit_bias){t, -INFINITY};
    e->special = malloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *e->special);
    if (!e->special) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    for (int32_t t = 0; t < n_vocab; t++)
        if (content_may_not_spell(e->vocab, t)) e->special[e->n_special++] = t;
    return SIPP_OK;
}

/* The snapshot store, unless disabled or the model only embeds. */
static sipp_status kvstore_open(sipp__engine *e, const sipp_local_params *p, uint32_t n_parts,
                                const uint8_t pinned[32], const struct llama_context_params *cp,
                                sipp_error *err) {
    if (p->cache_ram_bytes == SIPP_CACHE_DISABLED || e->embed_only) return SIPP_OK;
    sipp__kv_compat compat = {.type_k = (uint32_t)cp->type_k, .type_v = (uint32_t)cp->type_v,
                              .n_ctx = e->n_ctx_seq};
    sipp_status st = model_fingerprint(p, n_parts, p->sha256 ? pinned : NULL, compat.fingerprint, err);
    if (st == SIPP_OK)
        st = sipp__kvstore_new(&compat, p->cache_ram_bytes ? p->cache_ram_bytes : DEFAULT_CACHE_RAM,
                               p->cache_dir, p->cache_disk_bytes ? p->cache_disk_bytes
                                                                 : DEFAULT_CACHE_DISK,
                               &e->kv, err);
    if (st != SIPP_OK) return st;
    /* what the disk tier indexed counts from the start, not from the first tick */
    sipp__kvstore_usage(e->kv, &e->stats.cache_ram_bytes, &e->stats.cache_disk_bytes);
    return SIPP_OK;
}

/* An external backend in place of the context (sipp__engine_open_external): its context size,
 * vocabulary and capabilities. */
static sipp_status backend_attach(sipp__engine *e, const sipp_local_params *p,
                                  const sipp__backend *be, sipp__model_caps *caps,
                                  struct llama_context_params *cp, sipp_error *err) {
    if (!be->forward || !be->n_vocab || !be->n_embd || !be->n_ctx_seq || !be->seq_remove ||
        !be->seq_shift || !be->seq_copy || !be->state_save || !be->state_load)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "external backend: every function but embed and destroy is required");
    if (e->embed_only)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "external backend: '%s' is an embedding-only model", p->model_path);
    int32_t n_vocab = be->n_vocab(be->state);
    if (n_vocab != llama_vocab_n_tokens(e->vocab))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "external backend: %d logits per row, but '%s' has %d tokens", n_vocab,
                          p->model_path, llama_vocab_n_tokens(e->vocab));
    e->n_ctx_seq = be->n_ctx_seq(be->state);
    if (e->n_ctx_seq < 2)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "external backend: n_ctx_seq %u",
                          e->n_ctx_seq);
    e->be = *be;
    e->external = true;
    /* a vocab-only load reads no hyperparameters: the widths are the backend's, the training
     * context the file's */
    e->info.n_embd = (uint32_t)be->n_embd(be->state);
    char key[80], val[32];
    snprintf(key, sizeof key, "%s.context_length", e->info.architecture);
    if (llama_model_meta_val_str(e->model, key, val, sizeof val) > 0)
        e->info.n_ctx_train = (uint32_t)strtoul(val, NULL, 10);
    e->info.n_ctx = e->n_ctx_seq;
    e->info.n_parallel = e->n_decode;
    e->info.can_generate = true;
    e->info.can_embed = caps->can_embed && be->embed;
    e->partial_reuse = !llama_model_is_recurrent(e->model) && !llama_model_is_hybrid(e->model);
    e->context_shift = p->context_shift && e->partial_reuse;
    e->n_keep = p->n_keep < e->n_ctx_seq / 2 ? p->n_keep : e->n_ctx_seq / 2;
    /* snapshots of an external backend's state never mix with llama.cpp's (type GGML_TYPE_COUNT) */
    *cp = llama_context_default_params();
    cp->type_k = cp->type_v = GGML_TYPE_COUNT;
    return SIPP_OK;
}

/* The steps of an open up to a running backend: `be` NULL makes llama.cpp's over a context. */
static sipp_status engine_open_backend(const sipp_local_params *params, const sipp__backend *be,
                                       sipp__engine **out, uint32_t *n_parts, uint8_t pinned[32],
                                       sipp_local_params *p, struct llama_context_params *cp,
                                       sipp_error *err) {
    *out = NULL;
    sipp_status st = params_take(params, p, err);
    if (st == SIPP_OK) st = model_check(p, pinned, n_parts, err);
    if (st != SIPP_OK) return st;

    sipp__llama_init_once();
    sipp__engine *e = engine_alloc();
    if (!e) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    sipp__model_caps caps;
    st = model_load(e, p, be != NULL, &caps, err);
    if (st == SIPP_OK) {
        limits_set(e, p);
        st = be ? backend_attach(e, p, be, &caps, cp, err) : context_create(e, p, &caps, cp, err);
    }
    if (st == SIPP_OK && !be &&
        !sipp__backend_llama_new(e->model, e->ctx, false, e->embed_only, &e->be))
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (st != SIPP_OK) {
        engine_release(e);
        return st;
    }
    *out = e;
    return SIPP_OK;
}

/* The projector a pull stored beside the model (client.c gives it when the caller named none):
 * loaded as p->mmproj would be, but one that cannot be (an external backend, an embedding
 * model, a file that is no projector or is another model's) leaves a text-only endpoint, as
 * the pull left the model itself usable; why is kept for a media request's error. Only running
 * out of memory fails the open. */
static sipp_status pulled_mmproj_open(sipp__engine *e, const sipp_local_params *p,
                                      const char *mmproj, sipp_error *err) {
    sipp_local_params q = *p;
    q.mmproj = mmproj;
    sipp_error why;
    sipp_error_init(&why, sizeof why);
    sipp_status st = sipp__media_open(e, &q, &why);
    if (st == SIPP_OK || st == SIPP_OUT_OF_MEMORY) {
        if (st != SIPP_OK && err) *err = why;
        return st;
    }
    sipp__media_close(e);
    snprintf(e->pulled_mmproj_error, sizeof e->pulled_mmproj_error, "%s", why.message);
    sipp__log(SIPP_LOG_WARN, "the projector pulled with '%s' is not used: %s", p->model_path,
              why.message);
    return SIPP_OK;
}

static sipp_status engine_open(const sipp_local_params *params, const sipp__backend *be,
                               const char *pulled_mmproj, sipp__engine **out, sipp_error *err) {
    sipp_local_params p;
    uint8_t pinned[32]; /* the file's SHA-256 once the pin is checked: also its fingerprint */
    uint32_t n_parts = 1;
    struct llama_context_params cp;
    sipp__engine *e;
    sipp_status st = engine_open_backend(params, be, &e, &n_parts, pinned, &p, &cp, err);
    if (st != SIPP_OK) return st;
    templates_load(e);
    st = buffers_alloc(e, err);
    if (st == SIPP_OK) st = sipp__media_open(e, &p, err);
    if (st == SIPP_OK && pulled_mmproj && !p.mmproj) st = pulled_mmproj_open(e, &p, pulled_mmproj, err);
    if (st == SIPP_OK) st = kvstore_open(e, &p, n_parts, pinned, &cp, err);
    if (st == SIPP_OK) st = sipp__engine_start(e, err);
    if (st != SIPP_OK) {
        if (be) e->be.destroy = NULL; /* a failed open leaves the embedder's state to it */
        engine_release(e);
        return st;
    }
    *out = e;
    return SIPP_OK;
}

sipp_status sipp__engine_open(const sipp_local_params *params, sipp__engine **out,
                              sipp_error *err) {
    *out = NULL;
    return engine_open(params, NULL, NULL, out, err);
}

sipp_status sipp__engine_open_pulled(const sipp_local_params *params, const char *pulled_mmproj,
                                     sipp__engine **out, sipp_error *err) {
    *out = NULL;
    return engine_open(params, NULL, pulled_mmproj, out, err);
}

sipp_status sipp__engine_open_external(const sipp_local_params *params, const sipp__backend *be,
                                       sipp__engine **out, sipp_error *err) {
    *out = NULL;
    if (!be) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "external backend is required");
    return engine_open(params, be, NULL, out, err);
}

sipp_status sipp__backend_llama_open(const sipp_local_params *params, sipp__backend *out,
                                     sipp_error *err) {
    sipp_local_params p;
    uint8_t pinned[32];
    uint32_t n_parts = 1;
    struct llama_context_params cp;
    sipp__engine *e;
    sipp_status st = engine_open_backend(params, NULL, &e, &n_parts, pinned, &p, &cp, err);
    if (st != SIPP_OK) return st;
    /* the backend takes the model and the context; the engine around them goes */
    e->be.destroy(e->be.state);
    e->be = (sipp__backend){0};
    if (!sipp__backend_llama_new(e->model, e->ctx, true, e->embed_only, out)) {
        engine_release(e);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    e->model = NULL;
    e->ctx = NULL;
    engine_release(e);
    return SIPP_OK;
}

void sipp__engine_close(sipp__engine *e) {
    if (!e) return;
    sipp__engine_stop(e);
    engine_release(e);
}

bool sipp__engine_wait_idle(sipp__engine *e, uint32_t timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&e->mu);
    while (e->n_live > 0 && pthread_cond_timedwait(&e->idle_cv, &e->mu, &ts) == 0) {
    }
    bool idle = e->n_live == 0;
    pthread_mutex_unlock(&e->mu);
    return idle;
}

/* ============================================================================================
 * Info and stats (any thread)
 * ========================================================================================== */

void sipp__engine_get_info(const sipp__engine *e, sipp_endpoint_info *out) {
    uint32_t size = out->struct_size;
    *out = e->info;
    out->struct_size = size;
}

/* Fills the first out->struct_size bytes (a caller built against an older header has fewer
 * fields). */
void sipp__engine_get_stats(sipp__engine *e, sipp_engine_stats *out) {
    uint32_t size = out->struct_size;
    sipp_engine_stats s;
    pthread_mutex_lock(&e->stats_mu);
    s = e->stats;
    pthread_mutex_unlock(&e->stats_mu);
    pthread_mutex_lock(&e->mu);
    s.queued = (uint32_t)e->n_queued;
    pthread_mutex_unlock(&e->mu);
    s.batch_fill = s.ticks ? (double)s.batch_tokens / ((double)s.ticks * (double)e->tick_budget)
                           : 0.0;
    memcpy(out, &s, size < sizeof s ? size : sizeof s);
    out->struct_size = size;
}
