/*
 * engine.c — a loaded model and its engine thread.
 *
 * Threads: callers run sipp__engine_submit_* on their own thread: they tokenize, build the
 * sampler chain and validate there (so errors are synchronous), then append a job to the queue.
 * The engine thread owns the llama_context, every slot and every sampler once submitted.
 *
 * Each tick the engine thread:
 *   1. admits queued jobs into free slots (FIFO; embeddings run at once on a reserved sequence),
 *   2. drops cancelled sequences,
 *   3. builds one llama_batch: the next token of every decoding sequence first, then prompt
 *      chunks of prefilling sequences, shared round-robin within the tick's token budget,
 *   4. decodes it, samples one token per sequence with logits, and streams text to the runs.
 * Slots and the batch are allocated once at open; a tick allocates nothing on the heap.
 *
 * KV cache as runtime state: a request with a context key leaves its sequence warm under the
 * (scoped) key; the next request on the key reuses the longest common prefix. Admission takes the
 * key's warm sequence, else an empty one, else evicts the least recently used warm one (its
 * state goes to the snapshot store, kvstore.c, from which a later request can restore it).
 *
 * Manual mode (SIPP_ENGINE_MANUAL, the single-thread WebAssembly build): no engine thread is
 * started; the host calls sipp__engine_step() to run one round (admission + one tick) on its own
 * thread, which then is the engine thread. Native builds never define it.
 *
 * Watchdog (native builds): a second thread per engine wakes every quarter of stall_alarm_ms and
 * compares the time the last scheduler round ended with now. With work waiting or running and no
 * round for stall_alarm_ms, the engine is stalled (a decode that does not return): it logs, counts
 * and reports; it never touches llama.cpp state. A round always ends within one tick, and a
 * sequence paused on a slow consumer still goes through rounds (2 ms polls), so only a real hang
 * trips it.
 *
 * Sequence ids: slot i uses seq i (0 <= i < n_parallel); seq n_parallel is for embeddings.
 * An embedding-only model has no slots and one sequence (id 0). The KV cache is not unified,
 * so each sequence has its own n_ctx cells.
 */
#define _GNU_SOURCE
#include "engine_int.h"
#include "kvstore.h"
#include "llama_bridge.h"
#include "../common/test_control.h"

#include "llama.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_N_CTX_CAP 4096
#define DEFAULT_N_BATCH 512
#define DEFAULT_N_PARALLEL 4
#define DEFAULT_MAX_QUEUED 256
#define DEFAULT_PREFILL_CHUNK 256
#define DEFAULT_STREAM_BUFFER (256u * 1024u)
#define DEFAULT_STALL_ALARM_MS 60000u
#define DEFAULT_CACHE_RAM ((uint64_t)1 << 30)
#define DEFAULT_CACHE_DISK ((uint64_t)4 << 30)
#define PENALTY_LAST_N 64
#define MAX_GRAMMAR_DEPTH 128 /* nested GBNF groups */
#define MAX_SCHEMA_DEPTH 128  /* nested JSON objects/arrays of a json_schema */

/* ============================================================================================
 * Jobs and slots
 * ========================================================================================== */

typedef enum job_kind { JOB_TEXT, JOB_EMBED } job_kind;

typedef struct job {
    struct job *next;
    job_kind kind;
    sipp_run *run;
    llama_token *tokens; /* the prompt */
    int32_t n_tokens;
    struct llama_sampler *sampler; /* text jobs; owned */
    uint32_t max_tokens;
    char *stop[SIPP_MAX_STOP_STRINGS];
    size_t n_stop;
    bool normalize; /* embed jobs */
    double t_submit;
    double deadline; /* absolute, sipp__now_ms() clock; 0 = none */
    uint32_t timeout_ms;
    char *key;       /* scoped context key ("<scope length>:<scope><key>"), NULL if none */
    size_t key_len;
    sipp_cache_source cache_source;
    uint32_t cached_tokens;
} job;

typedef enum slot_state { SLOT_FREE, SLOT_PREFILL, SLOT_DECODE } slot_state;

typedef struct slot {
    llama_seq_id seq;
    slot_state state;
    job *job;
    int32_t n_past;      /* tokens of this sequence in the KV cache */
    int32_t n_prefilled; /* prompt tokens submitted so far */
    uint32_t n_generated;
    llama_token next;    /* sampled, decoded next tick */
    int32_t i_batch;     /* row of this slot's logits in the current batch, -1 if none */
    int32_t n_in_batch;  /* tokens this slot put in the current batch */
    sipp__buf held;      /* generated text not emitted yet (stop-string / UTF-8 hold-back) */
    sipp__buf clean;     /* held text with invalid UTF-8 replaced, when it has any (reused) */
    uint32_t held_tokens;
    double t_start, t_prefilled, t_first, t_last;
    float *gaps;         /* inter-token gaps in ms, n_ctx_seq capacity, allocated at open */
    uint32_t n_gaps;
    /* KV state: cached[0, n_past) are the tokens in this sequence's cache. While the slot is
     * free, a non-NULL key means it is warm (resident for that key). */
    llama_token *cached; /* n_ctx_seq capacity, allocated at open */
    char *key;
    size_t key_len;
    double last_used;
} slot;

struct sipp__engine {
    struct llama_model *model;
    struct llama_context *ctx;
    const struct llama_vocab *vocab;
    sipp__chat_templates *templates; /* NULL when the model has none or it was refused */
    char template_error[SIPP_ERROR_MESSAGE_CAP]; /* why a model's template was refused */
    pthread_mutex_t templates_mu;

    sipp_endpoint_info info;
    uint32_t n_ctx_seq;
    uint32_t n_batch;
    uint32_t n_parallel;
    uint32_t max_running;
    uint32_t max_queued;
    uint32_t tick_budget;
    uint32_t prefill_chunk;
    uint32_t stream_cap;
    bool embed_only; /* non-causal encoder: embeddings only */
    bool reranker;   /* rank pooling: scores pairs, cannot embed */
    bool add_bos_text;

    pthread_t thread;
    pthread_mutex_t mu; /* guards the queue, `stopping` and `woken` */
    pthread_cond_t cv;
    job *queue_head, *queue_tail;
    size_t n_queued;
    bool stopping;
    bool woken;

    pthread_mutex_t stats_mu; /* guards `stats`; the engine thread publishes once per tick */
    sipp_engine_stats stats;
    double heartbeat_ms;      /* under stats_mu: when the last round ended (or the engine idled) */
    bool busy;                /* under stats_mu: requests were waiting or running at that time */

    /* the watchdog; `watchdog_stop` under mu */
    uint32_t stall_alarm_ms;  /* 0 = off */
    bool has_watchdog;
    bool watchdog_stop;
    pthread_t watchdog;
    pthread_cond_t watchdog_cv;
    unsigned failpoint_stall_ms; /* SIPP__TESTCTRL_ENGINE_STALL_MS: tests only, see engine_round */

    /* engine-thread only */
    slot *slots;
    struct llama_batch batch;
    uint32_t rr; /* round-robin start for prefill sharing */
    uint32_t n_running;
    char piece[512];
    float *gap_scratch; /* n_ctx_seq floats, for the p99 of one request */
    llama_logit_bias *eog_bias; /* -inf for every end-of-generation token (ignore_eos) */
    int32_t n_eog;
    llama_token *special; /* tokens chat content may not spell (content_may_not_spell) */
    int32_t n_special;
    bool partial_reuse; /* false for recurrent/hybrid models: exact continuations only */
    bool context_shift;
    uint32_t n_keep;
    sipp__kvstore *kv;  /* prefix snapshots; NULL when disabled */
};

static void job_free(job *j) {
    if (!j) return;
    free(j->key);
    free(j->tokens);
    if (j->sampler) llama_sampler_free(j->sampler);
    for (size_t i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j);
}

/* ============================================================================================
 * llama.cpp logging
 * ========================================================================================== */

static void llama_log_cb(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    sipp_log_level l = level == GGML_LOG_LEVEL_ERROR  ? SIPP_LOG_ERROR
                       : level == GGML_LOG_LEVEL_WARN ? SIPP_LOG_WARN
                       : level == GGML_LOG_LEVEL_INFO ? SIPP_LOG_INFO
                                                      : SIPP_LOG_DEBUG;
    if (level == GGML_LOG_LEVEL_CONT) l = SIPP_LOG_DEBUG;
    if (l <= sipp__log_level()) fputs(text, stderr);
}

static pthread_once_t llama_once = PTHREAD_ONCE_INIT;
static void llama_init(void) {
    llama_log_set(llama_log_cb, NULL);
    llama_backend_init();
}
void sipp__llama_init_once(void) { pthread_once(&llama_once, llama_init); }

/* ============================================================================================
 * Loading
 * ========================================================================================== */

static bool load_progress(float p, void *ud) {
    const sipp_local_params *lp = ud;
    return lp->progress ? lp->progress(p, lp->progress_user_data) : true;
}

/* Reads "<arch>.<suffix>" metadata as a string; returns false when absent. */
static bool arch_meta(const struct llama_model *m, const char *arch, const char *suffix,
                      char *buf, size_t cap) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return llama_model_meta_val_str(m, key, buf, cap) >= 0;
}

static void fill_info(sipp__engine *e) {
    sipp_endpoint_info *in = &e->info;
    *in = sipp_endpoint_info_default();
    llama_model_meta_val_str(e->model, "general.architecture", in->architecture,
                             sizeof in->architecture);
    llama_model_desc(e->model, in->description, sizeof in->description);
    in->n_ctx_train = (uint32_t)llama_model_n_ctx_train(e->model);
    in->n_embd = (uint32_t)llama_model_n_embd(e->model);
    in->n_params = llama_model_n_params(e->model);
    in->size_bytes = llama_model_size(e->model);
}

/* Decides the embedding-only flag and the pooling to use from model metadata. */
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

static enum llama_pooling_type model_pooling(const struct llama_model *m, const char *arch,
                                             bool *embed_only, bool *can_embed) {
    char buf[32];
    *embed_only = !llama_model_has_decoder(m) ||
                  (arch_meta(m, arch, "attention.causal", buf, sizeof buf) &&
                   strcmp(buf, "false") == 0);
    *can_embed = !llama_model_is_recurrent(m) && !llama_model_is_hybrid(m);
    enum llama_pooling_type pool = LLAMA_POOLING_TYPE_MEAN;
    if (arch_meta(m, arch, "pooling_type", buf, sizeof buf)) {
        int v = atoi(buf);
        if (v == LLAMA_POOLING_TYPE_RANK) *can_embed = false; /* a reranker scores, it does not embed */
        if (v > LLAMA_POOLING_TYPE_NONE) pool = (enum llama_pooling_type)v;
    }
    return pool;
}

#ifndef SIPP_ENGINE_MANUAL
static void *engine_main(void *arg);
#ifndef __EMSCRIPTEN__
static void *watchdog_main(void *arg);
#endif
#else
static void drain_all(sipp__engine *e);
#endif

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
    if (e->batch.token) llama_batch_free(e->batch);
    free(e->gap_scratch);
    free(e->eog_bias);
    free(e->special);
    sipp__kvstore_free(e->kv); /* writes RAM-only snapshots to the disk tier */
    sipp__chat_templates_free(e->templates);
    if (e->ctx) llama_free(e->ctx);
    if (e->model) llama_model_free(e->model);
    pthread_mutex_destroy(&e->templates_mu);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->stats_mu);
    pthread_cond_destroy(&e->cv);
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

sipp_status sipp__engine_open(const sipp_local_params *params, sipp__engine **out,
                              sipp_error *err) {
    *out = NULL;
    if (!params) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "local params are required");
    /* older callers' structs end before `sha256` (the first field appended); fields past their
     * struct_size stay zero, the default of every appended field (no sipp_local_params_default
     * here: the wasm build has no client.c) */
    sipp_local_params lp;
    memset(&lp, 0, sizeof lp);
    sipp_status st = sipp__params_in(&lp, sizeof lp, params, offsetof(sipp_local_params, sha256),
                                     "local params", err);
    if (st != SIPP_OK) return st;
    const sipp_local_params *p = &lp;
    if (!p->model_path || !p->model_path[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "model_path is required");
    if (p->n_parallel > 64)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_parallel must be at most 64 (got %u)",
                          p->n_parallel);
    if (p->n_ctx > (1u << 20))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_ctx %u is too large", p->n_ctx);
    if (p->n_threads < 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_threads must be >= 0");
    if (p->sha256 && !sipp__sha256_hex_valid(p->sha256))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "sha256 pin must be 64 hex digits (got %zu characters)", strlen(p->sha256));
    uint8_t pinned[32]; /* the file's SHA-256 once the pin is checked: also its fingerprint */
    if (p->sha256 &&
        (st = sipp__model_verify_sha256(p->model_path, p->sha256, pinned, err)) != SIPP_OK)
        return st;
    uint32_t n_parts = 1;
    st = sipp__gguf_precheck(p->model_path, &n_parts, err);
    if (st != SIPP_OK) return st;
    /* A pin is the digest of one file, and llama.cpp opens parts 2..N of a split model by their
     * names alone: no pin covers them, so a pinned split model is refused, not half verified. */
    if (p->sha256 && n_parts > 1)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "sha256 pin: '%s' is the first of %u parts of a split model and a pin "
                          "covers one file; merge the parts (llama-gguf-split --merge) and pin "
                          "the merged file, or load it without a pin", p->model_path, n_parts);
    /* An unsafe snapshot directory is refused before the model is loaded (kvstore.h). */
    if (p->cache_dir && p->cache_dir[0] && p->cache_ram_bytes != SIPP_CACHE_DISABLED &&
        (st = sipp__kvstore_dir_check(p->cache_dir, err)) != SIPP_OK)
        return st;

    sipp__llama_init_once();
    sipp__engine *e = calloc(1, sizeof *e);
    if (!e) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    pthread_mutex_init(&e->templates_mu, NULL);
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->stats_mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->watchdog_cv, NULL);
    e->stats = sipp_engine_stats_default();

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = p->n_gpu_layers;
#ifdef __EMSCRIPTEN__
    mp.load_mode = LLAMA_LOAD_MODE_NONE; /* browser file systems cannot mmap: read into the heap */
#endif
    mp.progress_callback = load_progress;
    mp.progress_callback_user_data = (void *)p;
    e->model = llama_model_load_from_file(p->model_path, mp);
    if (!e->model) {
        st = sipp__fail(err, SIPP_MODEL_INVALID, 0,
                        "llama.cpp could not load '%s' (corrupt, truncated or unsupported model; "
                        "SIPP_LOG=warn shows why)",
                        p->model_path);
        goto fail;
    }
    e->vocab = llama_model_get_vocab(e->model);
    fill_info(e);

    bool can_embed = false;
    enum llama_pooling_type pool =
        model_pooling(e->model, e->info.architecture, &e->embed_only, &can_embed);
    e->reranker = pool == LLAMA_POOLING_TYPE_RANK;

    e->n_parallel = p->n_parallel ? p->n_parallel : DEFAULT_N_PARALLEL;
    e->n_batch = p->n_batch ? p->n_batch : DEFAULT_N_BATCH;
    e->max_running = p->max_running && p->max_running < e->n_parallel ? p->max_running
                                                                       : e->n_parallel;
    e->max_queued = p->max_queued ? p->max_queued : DEFAULT_MAX_QUEUED;
    e->tick_budget = p->tick_budget && p->tick_budget < e->n_batch ? p->tick_budget : e->n_batch;
    e->prefill_chunk = p->prefill_chunk ? p->prefill_chunk : DEFAULT_PREFILL_CHUNK;
    e->stream_cap = p->stream_buffer_bytes ? p->stream_buffer_bytes : DEFAULT_STREAM_BUFFER;
    e->stall_alarm_ms = p->stall_alarm_ms == SIPP_STALL_ALARM_OFF ? 0
                        : p->stall_alarm_ms                   ? p->stall_alarm_ms
                                                              : DEFAULT_STALL_ALARM_MS;
    e->failpoint_stall_ms = sipp__test_engine_stall_ms();
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
    /* Embedding-only models generate nothing: no slots, one sequence for embeddings. */
    if (e->embed_only) e->n_parallel = 0;
    uint32_t n_seq = e->n_parallel + 1;
    /* The CPUs this process may run on (affinity mask, as taskset/cgroup cpusets set it):
     * the default, and on Linux the cap, since more threads than CPUs only contend. */
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

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx * n_seq;
    cp.n_batch = e->n_batch;
    cp.n_ubatch = e->n_batch;
    cp.n_seq_max = n_seq;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.kv_unified = false;
    cp.pooling_type = can_embed ? pool : LLAMA_POOLING_TYPE_UNSPECIFIED;
    cp.embeddings = e->embed_only;
    cp.no_perf = true;
    e->ctx = llama_init_from_model(e->model, cp);
    if (!e->ctx) {
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0,
                        "llama.cpp could not create a context of %u tokens x %u sequences for '%s'",
                        n_ctx, n_seq, p->model_path);
        goto fail;
    }
    e->n_ctx_seq = llama_n_ctx_seq(e->ctx);

    e->info.n_ctx = e->n_ctx_seq;
    e->info.n_parallel = e->n_parallel;
    e->info.can_generate = !e->embed_only;
    e->info.can_embed = can_embed;
    if (!e->embed_only) {
        char msg[SIPP_ERROR_MESSAGE_CAP] = "";
        e->templates = sipp__chat_templates_new(e->model, msg, sizeof msg);
        e->info.can_chat = e->templates != NULL;
        if (!e->templates && llama_model_chat_template(e->model, NULL)) {
            sipp__log(SIPP_LOG_WARN, "%s", msg);
            snprintf(e->template_error, sizeof e->template_error, "%s", msg);
        }
    }

    e->slots = calloc(e->n_parallel ? e->n_parallel : 1, sizeof *e->slots);
    if (!e->slots) {
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        e->slots[i].seq = (llama_seq_id)i;
        sipp__buf_init(&e->slots[i].held, SIPP__RUN_TEXT_MAX);
        sipp__buf_init(&e->slots[i].clean, 3 * (size_t)SIPP__RUN_TEXT_MAX);
        e->slots[i].gaps = malloc(e->n_ctx_seq * sizeof(float));
        e->slots[i].cached = malloc(e->n_ctx_seq * sizeof(llama_token));
        if (!e->slots[i].gaps || !e->slots[i].cached) {
            st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
            goto fail;
        }
    }
    e->gap_scratch = malloc(e->n_ctx_seq * sizeof(float));
    if (!e->gap_scratch) {
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        goto fail;
    }
    e->batch = llama_batch_init((int32_t)e->n_batch, 0, 1);
    int32_t n_vocab = llama_vocab_n_tokens(e->vocab);
    for (int32_t t = 0; t < n_vocab; t++) e->n_eog += llama_vocab_is_eog(e->vocab, t);
    e->eog_bias = calloc((size_t)(e->n_eog ? e->n_eog : 1), sizeof *e->eog_bias);
    if (!e->eog_bias) {
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        goto fail;
    }
    for (int32_t t = 0, k = 0; t < n_vocab; t++)
        if (llama_vocab_is_eog(e->vocab, t)) e->eog_bias[k++] = (llama_logit_bias){t, -INFINITY};
    e->special = malloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *e->special);
    if (!e->special) {
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        goto fail;
    }
    for (int32_t t = 0; t < n_vocab; t++)
        if (content_may_not_spell(e->vocab, t)) e->special[e->n_special++] = t;

    e->partial_reuse = !llama_model_is_recurrent(e->model) && !llama_model_is_hybrid(e->model);
    e->context_shift = p->context_shift && e->partial_reuse;
    e->n_keep = p->n_keep < e->n_ctx_seq / 2 ? p->n_keep : e->n_ctx_seq / 2;
    if (p->cache_ram_bytes != SIPP_CACHE_DISABLED && !e->embed_only) {
        sipp__kv_compat compat = {.type_k = (uint32_t)cp.type_k, .type_v = (uint32_t)cp.type_v,
                                  .n_ctx = e->n_ctx_seq};
        st = model_fingerprint(p, n_parts, p->sha256 ? pinned : NULL, compat.fingerprint, err);
        if (st == SIPP_OK)
            st = sipp__kvstore_new(&compat, p->cache_ram_bytes ? p->cache_ram_bytes : DEFAULT_CACHE_RAM,
                                   p->cache_dir, p->cache_disk_bytes ? p->cache_disk_bytes
                                                                     : DEFAULT_CACHE_DISK,
                                   &e->kv, err);
        if (st != SIPP_OK) goto fail;
        /* what the disk tier indexed counts from the start, not from the first tick */
        sipp__kvstore_usage(e->kv, &e->stats.cache_ram_bytes, &e->stats.cache_disk_bytes);
    }

#ifndef SIPP_ENGINE_MANUAL
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        st = sipp__fail(err, SIPP_INTERNAL, errno, "cannot start the engine thread");
        goto fail;
    }
#ifndef __EMSCRIPTEN__ /* in the browser a thread is a worker from a fixed pool: none to spare */
    e->has_watchdog = e->stall_alarm_ms > 0 &&
                      pthread_create(&e->watchdog, NULL, watchdog_main, e) == 0;
#endif
#endif
    *out = e;
    return SIPP_OK;

fail:
    engine_release(e);
    return st;
}

void sipp__engine_close(sipp__engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    e->watchdog_stop = true; /* first: draining (snapshot writes) is not a stall */
    pthread_cond_broadcast(&e->cv);
    pthread_cond_signal(&e->watchdog_cv);
    pthread_mutex_unlock(&e->mu);
    if (e->has_watchdog) pthread_join(e->watchdog, NULL);
#ifndef SIPP_ENGINE_MANUAL
    pthread_join(e->thread, NULL);
#else
    drain_all(e); /* manual mode: the caller's thread is the engine thread */
#endif
    engine_release(e);
}

void sipp__engine_get_info(const sipp__engine *e, sipp_endpoint_info *out) {
    uint32_t size = out->struct_size;
    *out = e->info;
    out->struct_size = size;
}

/* ============================================================================================
 * Submission (caller threads)
 * ========================================================================================== */

static void engine_wake(void *producer) {
    sipp__engine *e = producer;
    pthread_mutex_lock(&e->mu);
    e->woken = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* Tokenizes `text` into a malloc'd array of at most `limit` tokens: a text of more tokens
 * fails with CONTEXT_OVERFLOW (its count in *n_out) and never gets a buffer of its size, so a
 * huge input is refused before anything proportional to it is allocated here. */
static sipp_status tokenize(sipp__engine *e, const char *text, uint32_t limit, llama_token **out,
                            int32_t *n_out, sipp_error *err) {
    size_t len = strlen(text);
    if (len > (size_t)INT32_MAX / 2)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "input of %zu bytes is too long", len);
    int32_t cap = (int32_t)len + 8;
    if ((uint32_t)cap > limit) cap = (int32_t)limit;
    llama_token *toks = malloc((size_t)cap * sizeof *toks);
    if (!toks) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    int32_t n = llama_tokenize(e->vocab, text, (int32_t)len, toks, cap, true, true);
    if (n < 0) { /* -n tokens, more than the limit */
        free(toks);
        *n_out = -n;
        return SIPP_CONTEXT_OVERFLOW;
    }
    if (n <= 0) {
        free(toks);
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "the input produced no tokens");
    }
    *out = toks;
    *n_out = n;
    return SIPP_OK;
}

static struct llama_sampler *build_sampler(sipp__engine *e, const sipp_text_params *p,
                                           const char *grammar, sipp_error *err) {
    struct llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf = true;
    struct llama_sampler *chain = llama_sampler_chain_init(cp);
    if (grammar) {
        struct llama_sampler *g = llama_sampler_init_grammar(e->vocab, grammar, "root");
        if (!g) {
            llama_sampler_free(chain);
            sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                       "the grammar does not parse (GBNF with a 'root' rule expected)");
            return NULL;
        }
        llama_sampler_chain_add(chain, g);
    }
    if (p->ignore_eos && e->n_eog > 0)
        llama_sampler_chain_add(chain, llama_sampler_init_logit_bias(llama_vocab_n_tokens(e->vocab),
                                                                     e->n_eog, e->eog_bias));
    if (p->repeat_penalty != 1.0f)
        llama_sampler_chain_add(chain,
                                llama_sampler_init_penalties(llama_vocab_n_tokens(e->vocab), PENALTY_LAST_N, p->repeat_penalty,
                                                             0.0f, 0.0f));
    if (p->temperature <= 0.0f) {
        llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    } else {
        if (p->top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(p->top_k));
        if (p->top_p < 1.0f) llama_sampler_chain_add(chain, llama_sampler_init_top_p(p->top_p, 1));
        if (p->min_p > 0.0f) llama_sampler_chain_add(chain, llama_sampler_init_min_p(p->min_p, 1));
        llama_sampler_chain_add(chain, llama_sampler_init_temp(p->temperature));
        llama_sampler_chain_add(chain, llama_sampler_init_dist(p->seed));
    }
    return chain;
}

/* Appends a job and wakes the engine; BUSY when the queue is full. Takes ownership of j. */
static sipp_status enqueue(sipp__engine *e, job *j, sipp_error *err) {
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        return sipp__fail(err, SIPP_CLOSED, 0, "the endpoint is closing");
    }
    if (e->n_queued >= e->max_queued) {
        pthread_mutex_unlock(&e->mu);
        pthread_mutex_lock(&e->stats_mu);
        e->stats.rejected_busy++;
        pthread_mutex_unlock(&e->stats_mu);
        return sipp__fail(err, SIPP_BUSY, 0,
                          "busy: %u requests are already waiting (max_queued); retry later",
                          e->max_queued);
    }
    if (e->queue_tail)
        e->queue_tail->next = j;
    else
        e->queue_head = j;
    e->queue_tail = j;
    e->n_queued++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return SIPP_OK;
}

static sipp_status finish_submit(sipp__engine *e, job *j, sipp_token_fn cb, void *ud,
                                 sipp_run **out, sipp_error *err) {
    j->run = sipp__run_new(cb, ud);
    if (!j->run) {
        job_free(j);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    sipp__run_set_waker(j->run, engine_wake, e);
    sipp_run *run = j->run;
    j->t_submit = sipp__now_ms();
    if (j->timeout_ms) j->deadline = j->t_submit + j->timeout_ms;
    sipp_status st = enqueue(e, j, err);
    if (st != SIPP_OK) {
        /* No callback will ever run: finish and drop both references. */
        j->run = NULL;
        job_free(j);
        sipp__run_discard(run, st);
        return st;
    }
    *out = run;
    return SIPP_OK;
}

sipp_status sipp__engine_submit_text(sipp__engine *e, const char *prompt,
                                     const sipp_text_params *p, sipp_run **out, sipp_error *err) {
    if (e->embed_only)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "query/chat: '%s' is an embedding model and cannot generate text",
                          e->info.architecture);
    sipp_status st = sipp__text_params_check(p, err);
    if (st != SIPP_OK) return st;

    /* Depth caps before anything recursive sees the text: llama.cpp's GBNF parser recurses
     * once per group and the schema converter once per JSON level. */
    if (p->grammar && sipp__nesting_depth(p->grammar, true, MAX_GRAMMAR_DEPTH) > MAX_GRAMMAR_DEPTH)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "grammar: groups nested deeper than %d", MAX_GRAMMAR_DEPTH);
    if (p->json_schema &&
        sipp__nesting_depth(p->json_schema, false, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "json_schema: nested deeper than %d levels", MAX_SCHEMA_DEPTH);
    char *schema_grammar = NULL;
    if (p->json_schema) {
        char msg[SIPP_ERROR_MESSAGE_CAP];
        if (sipp__json_schema_to_grammar(p->json_schema, &schema_grammar, msg, sizeof msg) != 0)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "json_schema: %s", msg);
    }
    job *j = calloc(1, sizeof *j);
    if (!j) {
        free(schema_grammar);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    j->kind = JOB_TEXT;
    j->max_tokens = p->max_tokens;
    j->timeout_ms = p->timeout_ms;
    if (p->context_key) {
        /* The scope's length goes first, so no (scope, key) pair can collide with another. */
        const char *scope = p->cache_scope ? p->cache_scope : "";
        int n = asprintf(&j->key, "%zu:%s%s", strlen(scope), scope, p->context_key);
        if (n < 0) {
            j->key = NULL;
            job_free(j);
            free(schema_grammar);
            return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        }
        j->key_len = (size_t)n;
    }
    st = tokenize(e, prompt, e->n_ctx_seq, &j->tokens, &j->n_tokens, err);
    if (st == SIPP_CONTEXT_OVERFLOW || (st == SIPP_OK && (uint32_t)j->n_tokens >= e->n_ctx_seq))
        st = sipp__fail(err, SIPP_CONTEXT_OVERFLOW, 0,
                        "the prompt is too long: n_prompt_tokens = %d, n_ctx = %u (the context "
                        "must hold the prompt plus at least one generated token)",
                        j->n_tokens, e->n_ctx_seq);
    if (st == SIPP_OK) {
        j->sampler = build_sampler(e, p, schema_grammar ? schema_grammar : p->grammar, err);
        if (!j->sampler) st = err ? err->code : SIPP_INVALID_ARGUMENT;
    }
    free(schema_grammar);
    for (size_t i = 0; st == SIPP_OK && i < p->n_stop; i++) {
        j->stop[i] = sipp__strdup(p->stop[i]);
        if (!j->stop[i]) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        j->n_stop = i + 1;
    }
    if (st != SIPP_OK) {
        job_free(j);
        return st;
    }
    return finish_submit(e, j, p->on_tokens, p->user_data, out, err);
}

sipp_status sipp__engine_render_chat(sipp__engine *e, const sipp_message *messages, size_t n,
                                     char **out, sipp_error *err) {
    if (!e->templates && e->template_error[0])
        return sipp__fail(err, SIPP_UNSUPPORTED, 0, "chat: %s", e->template_error);
    if (!e->templates)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "chat: the model has no chat template; use query for raw prompts");
    /* The rendered prompt is tokenized with special-token parsing on (the template's own
     * markers must become special tokens), so message content that spells a special token
     * could forge a turn or a role: refuse it rather than guess what the caller meant. */
    for (size_t i = 0; i < n; i++) {
        const char *content = messages[i].content ? messages[i].content : "";
        for (int32_t k = 0; k < e->n_special; k++) {
            const char *text = llama_vocab_get_text(e->vocab, e->special[k]);
            if (strstr(content, text))
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "chat: messages[%zu] contains the special token text '%.32s'; "
                                  "message content may not spell the model's special tokens",
                                  i, text);
        }
    }
    char msg[SIPP_ERROR_MESSAGE_CAP];
    pthread_mutex_lock(&e->templates_mu);
    int rc = sipp__chat_render(e->templates, messages, n, out, msg, sizeof msg);
    pthread_mutex_unlock(&e->templates_mu);
    if (rc != 0) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "%s", msg);
    return SIPP_OK;
}

sipp_status sipp__engine_submit_embed(sipp__engine *e, const char *text,
                                      const sipp_embed_params *p, sipp_run **out,
                                      sipp_error *err) {
    if (!e->info.can_embed)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "embed: the model '%s' cannot produce embeddings (%s)",
                          e->info.architecture,
                          e->reranker ? "it is a reranker: rank pooling scores pairs"
                                      : "recurrent and hybrid models have none in llama.cpp");
    job *j = calloc(1, sizeof *j);
    if (!j) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    j->kind = JOB_EMBED;
    j->normalize = p->normalize;
    uint32_t most = e->n_batch < e->n_ctx_seq ? e->n_batch : e->n_ctx_seq;
    sipp_status st = tokenize(e, text, most, &j->tokens, &j->n_tokens, err);
    if (st == SIPP_CONTEXT_OVERFLOW || (st == SIPP_OK && (uint32_t)j->n_tokens > most))
        st = sipp__fail(err, SIPP_CONTEXT_OVERFLOW, 0,
                        "the input has %d tokens but one embedding batch holds %u",
                        j->n_tokens, e->n_batch < e->n_ctx_seq ? e->n_batch : e->n_ctx_seq);
    if (st != SIPP_OK) {
        job_free(j);
        return st;
    }
    return finish_submit(e, j, NULL, NULL, out, err);
}

/* ============================================================================================
 * Engine thread: finishing runs and counting
 * ========================================================================================== */

/* Ends a job's run and counts it. Every job ends here exactly once. */
static void finish_job(sipp__engine *e, job *j, sipp_status st, const char *msg,
                       sipp_finish_reason reason, const sipp_usage *usage,
                       const sipp_stats *stats) {
    pthread_mutex_lock(&e->stats_mu);
    e->stats.running = e->n_running; /* published before the caller can see the run end */
    if (st != SIPP_OK)
        e->stats.failed++;
    else
        e->stats.completed++;
    if (reason == SIPP_FINISH_CANCELLED) e->stats.cancelled++;
    pthread_mutex_unlock(&e->stats_mu);
    sipp_run *run = j->run;
    j->run = NULL;
    job_free(j);
    sipp__run_finish(run, st, msg, reason, usage, stats);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Fills per-request stats from the slot's timestamps and inter-token gaps. */
static void slot_stats(sipp__engine *e, const slot *s, double now, sipp_stats *out) {
    const job *j = s->job;
    *out = (sipp_stats){.struct_size = sizeof *out};
    out->queue_ms = s->t_start - j->t_submit;
    out->total_ms = now - j->t_submit;
    out->prefill_tokens = (uint32_t)s->n_prefilled - j->cached_tokens;
    out->cache_source = j->cache_source;
    out->cached_tokens = j->cached_tokens;
    double pf_end = s->t_prefilled > 0 ? s->t_prefilled : now;
    out->prefill_ms = pf_end - s->t_start;
    if (out->prefill_ms > 0 && s->t_prefilled > 0)
        out->prefill_tok_s = out->prefill_tokens / (out->prefill_ms / 1e3);
    if (s->t_first > 0) {
        out->ttft_ms = s->t_first - j->t_submit;
        out->decode_ms = s->t_last - s->t_first;
        if (out->decode_ms > 0 && s->n_generated > 1)
            out->decode_tok_s = (s->n_generated - 1) / (out->decode_ms / 1e3);
    }
    if (s->n_gaps > 0) {
        double sum = 0;
        for (uint32_t i = 0; i < s->n_gaps; i++) sum += s->gaps[i];
        out->itl_avg_ms = sum / s->n_gaps;
        memcpy(e->gap_scratch, s->gaps, s->n_gaps * sizeof(float));
        qsort(e->gap_scratch, s->n_gaps, sizeof(float), cmp_float);
        uint32_t k = (uint32_t)ceil(0.99 * s->n_gaps) - 1;
        out->itl_p99_ms = e->gap_scratch[k < s->n_gaps ? k : s->n_gaps - 1];
    }
}

/* ---- KV state of slots ------------------------------------------------------------------ */

/* Empties a slot's sequence and forgets its key. */
static void slot_clear(sipp__engine *e, slot *s) {
    llama_memory_seq_rm(llama_get_memory(e->ctx), s->seq, -1, -1);
    s->n_past = 0;
    free(s->key);
    s->key = NULL;
    s->key_len = 0;
}

/* Saves a warm slot's state as a prefix snapshot (when the store is on). */
static void slot_snapshot(sipp__engine *e, slot *s) {
    if (!e->kv || !s->key || s->n_past <= 0) return;
    size_t size = llama_state_seq_get_size(e->ctx, s->seq);
    uint8_t *buf = size ? malloc(size) : NULL;
    if (!buf) return;
    size_t got = llama_state_seq_get_data(e->ctx, buf, size, s->seq);
    if (got == 0) {
        free(buf);
        return;
    }
    sipp__kvstore_put(e->kv, s->key, s->key_len, s->cached, (uint32_t)s->n_past, buf, got);
}

static bool same_key(const slot *s, const job *j) {
    return s->key && j->key && s->key_len == j->key_len && memcmp(s->key, j->key, j->key_len) == 0;
}

/* Picks the sequence for a text job: the key's warm one (most recent), else an empty one,
 * else the least recently used warm one. There is always one: fewer than n_parallel run. */
static slot *pick_slot(sipp__engine *e, const job *j) {
    slot *warm = NULL, *empty = NULL, *lru = NULL;
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->state != SLOT_FREE) continue;
        if (same_key(s, j) && (!warm || s->last_used > warm->last_used)) warm = s;
        if (!s->key && !empty) empty = s;
        if (s->key && (!lru || s->last_used < lru->last_used)) lru = s;
    }
    return warm ? warm : empty ? empty : lru;
}

static uint32_t common_prefix(const llama_token *a, uint32_t na, const llama_token *b, uint32_t nb) {
    uint32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Prepares a picked slot for job j: reuses the live prefix of the key's sequence or restores
 * a snapshot, else starts empty. Sets n_past to the reused length and counts hit or miss. */
static void slot_prepare_cache(sipp__engine *e, slot *s, job *j) {
    llama_memory_t mem = llama_get_memory(e->ctx);
    uint32_t n_prompt = (uint32_t)j->n_tokens, reuse = 0;
    /* At least the last prompt token is computed again: its logits start the generation. */
    uint32_t max_reuse = n_prompt - 1;
    if (same_key(s, j)) {
        reuse = common_prefix(s->cached, (uint32_t)s->n_past, j->tokens, n_prompt);
        if (reuse > max_reuse) reuse = max_reuse;
        bool exact = reuse == (uint32_t)s->n_past; /* the cache is a prefix of the prompt */
        if (reuse > 0 && (exact || e->partial_reuse) &&
            llama_memory_seq_rm(mem, s->seq, (llama_pos)reuse, -1)) {
            j->cache_source = SIPP_CACHE_LIVE;
        } else {
            reuse = 0;
        }
    } else if (s->key) { /* another key's warm sequence: evict it, keep a snapshot */
        slot_snapshot(e, s);
        pthread_mutex_lock(&e->stats_mu);
        e->stats.cache_evictions++;
        pthread_mutex_unlock(&e->stats_mu);
    }
    if (reuse == 0) {
        slot_clear(e, s);
        uint32_t n_common = 0;
        const sipp__kv_entry *snap =
            j->key && e->kv ? sipp__kvstore_find(e->kv, j->key, j->key_len, j->tokens, n_prompt,
                                                 !e->partial_reuse, &n_common)
                            : NULL;
        uint32_t n_snap = snap ? sipp__kv_entry_tokens(snap) : 0;
        uint32_t want = n_common < max_reuse ? n_common : max_reuse;
        const uint8_t *state;
        size_t state_len;
        /* Restore, then cut the state back to the common prefix (whole-state models only take a
         * snapshot they can continue exactly). */
        if (want > 0 && (e->partial_reuse || want == n_snap) &&
            sipp__kvstore_load(e->kv, snap, &state, &state_len, NULL) == SIPP_OK &&
            llama_state_seq_set_data(e->ctx, state, state_len, s->seq) > 0) {
            reuse = want;
            if (reuse < n_snap && !llama_memory_seq_rm(mem, s->seq, (llama_pos)reuse, -1)) reuse = 0;
            if (reuse > 0) j->cache_source = SIPP_CACHE_SNAPSHOT;
            else slot_clear(e, s);
        }
    }
    if (reuse > 0) memcpy(s->cached, j->tokens, reuse * sizeof(llama_token));
    s->n_past = (int32_t)reuse;
    j->cached_tokens = reuse;
    if (j->key) {
        pthread_mutex_lock(&e->stats_mu);
        if (reuse > 0) e->stats.cache_hits++;
        else e->stats.cache_misses++;
        pthread_mutex_unlock(&e->stats_mu);
    }
}

static void slot_finish(sipp__engine *e, slot *s, sipp_status st, const char *msg,
                        sipp_finish_reason reason) {
    job *j = s->job;
    sipp_usage u = {sizeof u, (uint32_t)j->n_tokens, s->n_generated,
                    (uint32_t)j->n_tokens + s->n_generated};
    sipp_stats stt;
    double now = sipp__now_ms();
    slot_stats(e, s, now, &stt);
    if (j->key && st != SIPP_INTERNAL) {
        /* Stay warm under the key: the next request on it continues from cached[0, n_past). */
        free(s->key);
        s->key = j->key;
        s->key_len = j->key_len;
        j->key = NULL;
        s->last_used = now;
    } else {
        slot_clear(e, s);
    }
    s->job = NULL;
    s->state = SLOT_FREE;
    sipp__buf_reset(&s->held);
    s->held_tokens = 0;
    e->n_running--;
    finish_job(e, j, st, msg, reason, &u, &stt);
}

/* Pushes the first `len` bytes of held text to the run; the rest stays held. Tokens count
 * towards the batch that first carries their text. */
static void emit_held(slot *s, size_t len) {
    if (len == 0) return;
    /* A model's byte tokens can spell invalid UTF-8 (a lone lead byte, 0xFF): the caller gets
     * U+FFFD in their place, never bytes a JSON encoder or a UI would refuse. */
    const char *text = s->held.data;
    size_t n = len;
    if (sipp__utf8_valid_len(text, len) < len) {
        sipp__buf_reset(&s->clean);
        if (sipp__utf8_append_clean(&s->clean, text, len) == SIPP_OK) {
            text = s->clean.data;
            n = s->clean.len;
        }
    }
    sipp__run_push_text(s->job->run, text, n, s->held_tokens);
    s->held_tokens = 0;
    memmove(s->held.data, s->held.data + len, s->held.len - len + 1);
    s->held.len -= len;
}

/* Flushes held text at the end of a run, dropping an incomplete trailing UTF-8 sequence. */
static void flush_held(slot *s) {
    emit_held(s, sipp__utf8_complete_len(s->held.data ? s->held.data : "", s->held.len));
}

/* Makes room in a full sequence: keeps the first n_keep tokens, drops the older half of the
 * rest and moves the newer half down (llama.cpp shifts the positions of its cache). */
static void slot_shift(sipp__engine *e, slot *s) {
    int32_t keep = (int32_t)e->n_keep, discard = (s->n_past - keep) / 2;
    llama_memory_t mem = llama_get_memory(e->ctx);
    llama_memory_seq_rm(mem, s->seq, keep, keep + discard);
    llama_memory_seq_add(mem, s->seq, keep + discard, s->n_past, -discard);
    memmove(s->cached + keep, s->cached + keep + discard,
            (size_t)(s->n_past - keep - discard) * sizeof(llama_token));
    s->n_past -= discard;
}

/* Processes a sampled token: stream its text, or finish on EOG, stop string, or limits. */
static void slot_accept(sipp__engine *e, slot *s, llama_token tok, double now) {
    if (s->n_generated == 0)
        s->t_first = now;
    else if (s->n_gaps < e->n_ctx_seq)
        s->gaps[s->n_gaps++] = (float)(now - s->t_last);
    s->t_last = now;
    s->n_generated++;
    job *j = s->job;
    if (llama_vocab_is_eog(e->vocab, tok)) {
        flush_held(s);
        slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_STOP);
        return;
    }
    int32_t n = llama_token_to_piece(e->vocab, tok, e->piece, sizeof e->piece, 0, false);
    if (n < 0) n = 0; /* a piece longer than the buffer: no real vocab has one */
    if (sipp__buf_append(&s->held, e->piece, (size_t)n) != SIPP_OK) {
        slot_finish(e, s, SIPP_OUT_OF_MEMORY, "generated text exceeds the response limit",
                    SIPP_FINISH_NONE);
        return;
    }
    s->held_tokens++;
    sipp__stop_scan sc = sipp__stop_scan_text((const char *const *)j->stop, j->n_stop,
                                              s->held.data, s->held.len);
    emit_held(s, sc.emit_len);
    if (sc.matched) {
        slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_STOP);
        return;
    }
    bool context_full = (uint32_t)s->n_past + 1 >= e->n_ctx_seq;
    if (s->n_generated >= j->max_tokens || (context_full && !e->context_shift)) {
        flush_held(s);
        slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_LENGTH);
        return;
    }
    if (context_full) slot_shift(e, s);
    s->next = tok;
    s->state = SLOT_DECODE;
}

/* ============================================================================================
 * Engine thread: embeddings
 * ========================================================================================== */

static void run_embed(sipp__engine *e, job *j) {
    double t0 = sipp__now_ms();
    llama_seq_id seq = (llama_seq_id)e->n_parallel;
    struct llama_batch *b = &e->batch;
    b->n_tokens = 0;
    for (int32_t i = 0; i < j->n_tokens; i++) {
        b->token[i] = j->tokens[i];
        b->pos[i] = i;
        b->n_seq_id[i] = 1;
        b->seq_id[i][0] = seq;
        b->logits[i] = 1;
    }
    b->n_tokens = j->n_tokens;
    if (!e->embed_only) llama_set_embeddings(e->ctx, true);
    int rc = e->embed_only && llama_model_has_encoder(e->model) ? llama_encode(e->ctx, *b)
                                                                : llama_decode(e->ctx, *b);
    const float *v = rc == 0 ? llama_get_embeddings_seq(e->ctx, seq) : NULL;
    uint32_t n = e->info.n_embd;
    float *vec = v ? malloc(n * sizeof *vec) : NULL;
    if (vec) {
        double norm = 0;
        for (uint32_t i = 0; i < n; i++) norm += (double)v[i] * v[i];
        norm = sqrt(norm);
        for (uint32_t i = 0; i < n; i++)
            vec[i] = j->normalize && norm > 0 ? (float)(v[i] / norm) : v[i];
    }
    if (!e->embed_only) llama_set_embeddings(e->ctx, false);
    llama_memory_t mem = llama_get_memory(e->ctx);
    if (mem) llama_memory_seq_rm(mem, seq, -1, -1);
    b->n_tokens = 0;

    if (!vec) {
        char msg[96];
        snprintf(msg, sizeof msg, "embedding failed (llama.cpp returned %d)", rc);
        finish_job(e, j, rc == 0 ? SIPP_OUT_OF_MEMORY : SIPP_INTERNAL, msg, SIPP_FINISH_NONE,
                   NULL, NULL);
        return;
    }
    double t1 = sipp__now_ms();
    sipp_usage u = {sizeof u, (uint32_t)j->n_tokens, 0, (uint32_t)j->n_tokens};
    sipp_stats st = {.struct_size = sizeof st};
    st.queue_ms = t0 - j->t_submit;
    st.prefill_ms = t1 - t0;
    st.prefill_tok_s = st.prefill_ms > 0 ? j->n_tokens / (st.prefill_ms / 1e3) : 0;
    st.prefill_tokens = (uint32_t)j->n_tokens;
    st.total_ms = t1 - j->t_submit;
    pthread_mutex_lock(&e->stats_mu);
    e->stats.prompt_tokens += (uint64_t)j->n_tokens;
    pthread_mutex_unlock(&e->stats_mu);
    sipp__run_set_embedding(j->run, vec, n, j->normalize);
    finish_job(e, j, SIPP_OK, NULL, SIPP_FINISH_STOP, &u, &st);
}

/* ============================================================================================
 * Engine thread: the tick
 * ========================================================================================== */

static void batch_add(struct llama_batch *b, llama_token tok, llama_pos pos, llama_seq_id seq,
                      bool logits) {
    int32_t i = b->n_tokens++;
    b->token[i] = tok;
    b->pos[i] = pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = seq;
    b->logits[i] = logits;
}

static void deadline_message(const job *j, char *buf, size_t cap) {
    snprintf(buf, cap, "deadline of %u ms exceeded", j->timeout_ms);
}

/* Ends sequences that were cancelled or ran past their deadline. */
static void reap_slots(sipp__engine *e, double now) {
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->state == SLOT_FREE) continue;
        if (sipp__run_cancel_requested(s->job->run)) {
            flush_held(s);
            slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_CANCELLED);
        } else if (s->job->deadline > 0 && now >= s->job->deadline) {
            char msg[64];
            deadline_message(s->job, msg, sizeof msg);
            flush_held(s);
            slot_finish(e, s, SIPP_DEADLINE, msg, SIPP_FINISH_NONE);
        }
    }
}

/* Builds and decodes one batch. Returns false when there was nothing to decode. */
static bool tick(sipp__engine *e) {
    struct llama_batch *b = &e->batch;
    b->n_tokens = 0;
    uint32_t n_prefilling = 0;
    reap_slots(e, sipp__now_ms());

    /* Decode first: every ready sequence contributes its next token, unless its consumer
     * lags (its run holds stream_cap bytes unread): that sequence pauses, the others go on. */
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        s->i_batch = -1;
        s->n_in_batch = 0;
        if (s->state == SLOT_PREFILL) n_prefilling++;
        if (s->state != SLOT_DECODE) continue;
        if (sipp__run_backlog(s->job->run) >= e->stream_cap) continue;
        s->i_batch = b->n_tokens;
        s->n_in_batch = 1;
        s->cached[s->n_past] = s->next;
        batch_add(b, s->next, s->n_past, s->seq, true);
    }

    /* Prefill: the rest of the budget, shared round-robin among prefilling sequences. While
     * other sequences decode, each prompt takes at most prefill_chunk tokens per tick, so it
     * delays their next token by at most one chunk; with nobody decoding it takes the budget. */
    uint32_t n_decoding = (uint32_t)b->n_tokens;
    uint32_t chunk = n_decoding > 0 ? e->prefill_chunk : e->tick_budget;
    uint32_t budget = e->tick_budget > n_decoding ? e->tick_budget - n_decoding : 0;
    for (uint32_t k = 0, seen = 0; k < e->n_parallel && seen < n_prefilling && budget > 0; k++) {
        slot *s = &e->slots[(e->rr + k) % e->n_parallel];
        if (s->state != SLOT_PREFILL) continue;
        uint32_t share = budget / (n_prefilling - seen);
        if (share == 0) share = 1;
        if (share > chunk) share = chunk;
        seen++;
        uint32_t left = (uint32_t)(s->job->n_tokens - s->n_prefilled);
        uint32_t take = left < share ? left : share;
        for (uint32_t t = 0; t < take; t++) {
            int32_t pos = s->n_prefilled + (int32_t)t;
            bool last = pos == s->job->n_tokens - 1;
            if (last) s->i_batch = b->n_tokens;
            s->cached[pos] = s->job->tokens[pos];
            batch_add(b, s->job->tokens[pos], pos, s->seq, last);
        }
        s->n_in_batch = (int32_t)take;
        budget -= take;
    }
    e->rr = e->n_parallel ? (e->rr + 1) % e->n_parallel : 0;
    if (b->n_tokens == 0) return false;

    int rc = llama_decode(e->ctx, *b);
    if (rc != 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "llama_decode failed (%d)", rc);
        for (uint32_t i = 0; i < e->n_parallel; i++) {
            slot *s = &e->slots[i];
            if (s->state != SLOT_FREE && s->n_in_batch > 0)
                slot_finish(e, s, SIPP_INTERNAL, msg, SIPP_FINISH_NONE);
        }
        return true;
    }
    double now = sipp__now_ms();
    uint32_t n_prompt = 0, n_generated = 0;
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->state == SLOT_FREE || s->n_in_batch == 0) continue;
        s->n_past += s->n_in_batch;
        if (s->state == SLOT_PREFILL) {
            s->n_prefilled += s->n_in_batch;
            n_prompt += (uint32_t)s->n_in_batch;
            if (s->n_prefilled < s->job->n_tokens) continue;
            s->t_prefilled = now;
        }
        llama_token tok = llama_sampler_sample(s->job->sampler, e->ctx, s->i_batch);
        n_generated++;
        slot_accept(e, s, tok, now);
    }
    pthread_mutex_lock(&e->stats_mu);
    e->stats.ticks++;
    e->stats.batch_tokens += (uint64_t)b->n_tokens;
    e->stats.prompt_tokens += n_prompt;
    e->stats.generated_tokens += n_generated;
    pthread_mutex_unlock(&e->stats_mu);
    return true;
}

/* ============================================================================================
 * Engine thread: admission and the main loop
 * ========================================================================================== */

/* Unlinks queued jobs that were cancelled or are past their deadline into *out. Under e->mu. */
static void reap_queue_locked(sipp__engine *e, double now, job **out) {
    for (job **pp = &e->queue_head, *prev = NULL; *pp;) {
        job *j = *pp;
        if (sipp__run_cancel_requested(j->run) || (j->deadline > 0 && now >= j->deadline)) {
            *pp = j->next;
            if (e->queue_tail == j) e->queue_tail = prev;
            e->n_queued--;
            j->next = *out;
            *out = j;
        } else {
            prev = j;
            pp = &j->next;
        }
    }
}

/* Takes the queue head if it can start now, counting `reserved` text jobs already taken this
 * round (FIFO: a waiting text job blocks later ones). Under e->mu. */
static job *pop_startable(sipp__engine *e, uint32_t reserved) {
    job *j = e->queue_head;
    if (!j) return NULL;
    if (j->kind == JOB_TEXT && e->n_running + reserved >= e->max_running) return NULL;
    e->queue_head = j->next;
    if (!e->queue_head) e->queue_tail = NULL;
    e->n_queued--;
    j->next = NULL;
    return j;
}

static void start_job(sipp__engine *e, job *j) {
    if (j->kind == JOB_EMBED) {
        run_embed(e, j);
        return;
    }
    slot *s = pick_slot(e, j);
    s->t_start = sipp__now_ms();
    slot_prepare_cache(e, s, j);
    s->job = j;
    s->state = SLOT_PREFILL;
    s->n_prefilled = s->n_past;
    s->n_generated = 0;
    s->n_gaps = 0;
    s->t_prefilled = s->t_first = s->t_last = 0;
    e->n_running++;
}

/* Ends a reaped queued job: cancelled, or past its deadline. */
static void end_reaped(sipp__engine *e, job *j) {
    if (sipp__run_cancel_requested(j->run)) {
        finish_job(e, j, SIPP_OK, NULL, SIPP_FINISH_CANCELLED, NULL, NULL);
    } else {
        char msg[64];
        deadline_message(j, msg, sizeof msg);
        finish_job(e, j, SIPP_DEADLINE, msg, SIPP_FINISH_NONE, NULL, NULL);
    }
}

/* At shutdown: ends every run, and keeps the state of warm sequences as snapshots (the
 * store writes them to its disk tier when it is freed). */
static void drain_all(sipp__engine *e) {
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->state == SLOT_FREE) continue;
        flush_held(s);
        slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_CANCELLED);
    }
    for (uint32_t i = 0; i < e->n_parallel; i++) slot_snapshot(e, &e->slots[i]);
    pthread_mutex_lock(&e->mu);
    job *j = e->queue_head;
    e->queue_head = e->queue_tail = NULL;
    e->n_queued = 0;
    pthread_mutex_unlock(&e->mu);
    while (j) {
        job *next = j->next;
        finish_job(e, j, SIPP_OK, NULL, SIPP_FINISH_CANCELLED, NULL, NULL);
        j = next;
    }
}

#ifndef SIPP_ENGINE_MANUAL
/* Sleeps until there is work. With every active sequence paused on a slow consumer, or
 * queued deadlines to watch, it polls gently instead. Under e->mu. */
static void wait_for_work_locked(sipp__engine *e) {
    if (e->stopping || e->woken) return;
    if (e->n_running == 0 && !e->queue_head) {
        pthread_cond_wait(&e->cv, &e->mu);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 2 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&e->cv, &e->mu, &ts);
}
#endif

/* One round of the engine loop: ends reaped queued jobs, admits what can start, runs one tick.
 * Returns false when the tick had nothing to decode (the caller may sleep). */
static bool engine_round(sipp__engine *e) {
    pthread_mutex_lock(&e->stats_mu);
    e->heartbeat_ms = sipp__now_ms();
    e->busy = true;
    pthread_mutex_unlock(&e->stats_mu);
    pthread_mutex_lock(&e->mu);
    e->woken = false;
    job *reaped = NULL;
    if (e->queue_head) reap_queue_locked(e, sipp__now_ms(), &reaped);
    job *start = NULL, **tail = &start;
    job *j;
    uint32_t reserved = 0;
    while ((j = pop_startable(e, reserved)) != NULL) {
        reserved += j->kind == JOB_TEXT;
        *tail = j;
        tail = &j->next;
    }
    pthread_mutex_unlock(&e->mu);

    while (reaped) {
        job *next = reaped->next;
        end_reaped(e, reaped);
        reaped = next;
    }
    while (start) {
        job *next = start->next;
        start->next = NULL;
        start_job(e, start);
        start = next;
    }
    pthread_mutex_lock(&e->stats_mu);
    e->stats.running = e->n_running;
    sipp__kvstore_usage(e->kv, &e->stats.cache_ram_bytes, &e->stats.cache_disk_bytes);
    pthread_mutex_unlock(&e->stats_mu);
    if (e->failpoint_stall_ms && e->n_running > 0) { /* a hung decode, for the watchdog's test */
        struct timespec ts = {e->failpoint_stall_ms / 1000,
                              (long)(e->failpoint_stall_ms % 1000) * 1000000L};
        e->failpoint_stall_ms = 0;
        nanosleep(&ts, NULL);
    }
    bool decoded = tick(e);
    pthread_mutex_lock(&e->stats_mu);
    e->heartbeat_ms = sipp__now_ms();
    e->busy = e->n_running > 0;
    pthread_mutex_unlock(&e->stats_mu);
    return decoded;
}

#ifndef SIPP_ENGINE_MANUAL
static void *engine_main(void *arg) {
    sipp__engine *e = arg;
    bool idle = false;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        if (idle) wait_for_work_locked(e);
        bool stopping = e->stopping;
        pthread_mutex_unlock(&e->mu);
        if (stopping) break;
        idle = !engine_round(e);
    }
    drain_all(e);
    return NULL;
}

#ifndef __EMSCRIPTEN__
/* One look at the engine's progress (see the file comment). `stall_since` is the watchdog
 * thread's own: when the round in the stall began. Both lines are errors, so an operator who
 * sees the alarm also sees it end. */
static void watchdog_check(sipp__engine *e, double *stall_since) {
    double now = sipp__now_ms();
    pthread_mutex_lock(&e->stats_mu);
    double since = e->heartbeat_ms;
    bool stalled = e->busy && now - since >= (double)e->stall_alarm_ms;
    bool was = e->stats.stalled != 0;
    uint32_t running = e->stats.running;
    if (stalled && !was) e->stats.stalls++;
    e->stats.stalled = stalled;
    pthread_mutex_unlock(&e->stats_mu);
    if (stalled && !was) {
        *stall_since = since;
        sipp__log(SIPP_LOG_ERROR,
                  "engine stalled: no scheduler round for %.1f s with %u requests running "
                  "(a llama_decode that does not return?); runs wait until it does",
                  (now - since) / 1000.0, running);
    } else if (!stalled && was) {
        sipp__log(SIPP_LOG_ERROR, "engine recovered: scheduler rounds go on after %.1f s",
                  (now - *stall_since) / 1000.0);
    }
}

static void *watchdog_main(void *arg) {
    sipp__engine *e = arg;
    double stall_since = 0;
    uint32_t period = e->stall_alarm_ms / 4;
    if (period > 1000) period = 1000;
    if (period < 10) period = 10;
    pthread_mutex_lock(&e->mu);
    while (!e->watchdog_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += period / 1000;
        ts.tv_nsec += (long)(period % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->watchdog_cv, &e->mu, &ts);
        if (e->watchdog_stop) break;
        pthread_mutex_unlock(&e->mu);
        watchdog_check(e, &stall_since);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}
#endif /* __EMSCRIPTEN__ */
#else
bool sipp__engine_step(sipp__engine *e) {
    engine_round(e);
    pthread_mutex_lock(&e->mu);
    bool more = e->queue_head != NULL || e->n_running > 0;
    pthread_mutex_unlock(&e->mu);
    return more;
}
#endif

/* ============================================================================================
 * Stats (any thread)
 * ========================================================================================== */

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

sipp_engine_stats sipp_engine_stats_default(void) {
    sipp_engine_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    return s;
}

sipp_endpoint_info sipp_endpoint_info_default(void) {
    sipp_endpoint_info in;
    memset(&in, 0, sizeof in);
    in.struct_size = sizeof in;
    return in;
}
