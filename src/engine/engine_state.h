/*
 * engine_state.h — the state of one engine, shared by the files of src/engine that make it up,
 * and the functions they give each other. Private to src/engine (llama.cpp types): the client
 * sees only engine_int.h.
 *
 * Who owns what (each file's header says the same for its part):
 *   engine_open.c    open, close, info and stats: the opening/closing caller's thread
 *   engine_submit.c  submission: any caller thread; touches only the queue (under `mu`)
 *   engine_slots.c   slots and their KV state (reuse, snapshots, finishing): engine thread
 *   engine_text.c    generated text: hold-back, stop strings, limits: engine thread
 *   engine_tick.c    one batch per tick (plan, forward, sample), and embeddings: engine thread
 *   engine_seam.c    the compute seam (backend.h): forward, commit (any thread), sampling
 *   backend_llama.c  the llama.cpp backend, the default: engine thread
 *   engine_loop.c    admission, the loop, the watchdog: engine thread (+ the watchdog thread)
 * Fields marked "engine-thread only" are touched by no other thread once the engine thread
 * runs; `mu` guards the queue, `stopping`, `woken`, `watchdog_stop`, `fwd_committed` and
 * `fwd_res`; `stats_mu` the stats.
 */
#ifndef SIPP_ENGINE_STATE_H
#define SIPP_ENGINE_STATE_H

#include "backend.h"
#include "engine_int.h"
#include "kvstore.h"
#include "llama_bridge.h"
#include "prefill_budget.h"

#include "llama.h"

#include <pthread.h>

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
    bool logprobs;         /* stage each output token's log-probability (issue 18) */
    uint32_t top_logprobs; /* alternatives per token, <= SIPP_MAX_TOP_LOGPROBS */
    struct sipp__media_prompt *media; /* media chunks of the prompt (media.h), NULL if none */
    /* chat jobs (issue 18): the output parser and the tokens whose text it must see; owned */
    sipp__chat_parser *parser;
    int32_t *preserved;
    size_t n_preserved;
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
    bool kv_copy_pending; /* a shared prefix was copied in; llama.cpp copies at the next decode */
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
    uint32_t n_parallel; /* slots, i.e. resident sequences: max(n_parallel, n_resident) of the params */
    uint32_t n_decode;   /* the params' n_parallel: sequences decoded together */
    uint32_t max_running;
    uint32_t max_queued;
    uint32_t tick_budget;
    uint32_t prefill_chunk; /* 0 = no cap beyond the budget */
    uint32_t stream_cap;
    bool embed_only; /* non-causal encoder: embeddings only */
    bool reranker;   /* rank pooling: scores pairs, cannot embed */
    bool add_bos_text;

    pthread_t thread;
    pthread_mutex_t mu; /* guards the queue, `stopping`, `woken`, fwd_committed, fwd_res */
    pthread_cond_t cv;
    job *queue_head, *queue_tail;
    size_t n_queued;
    bool stopping;
    bool woken;
    uint64_t n_live;        /* under mu: jobs enqueued and not finished yet (sipp__engine_wait_idle) */
    pthread_cond_t idle_cv; /* signalled when n_live drops to 0 */

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

    /* the compute seam (backend.h): the backend, and a forward in flight (`fwd_committed` and
     * `fwd_res` under mu: sipp__engine_commit may run on any thread) */
    sipp__backend be;
    bool external;      /* be is the embedder's; the model is a vocab-only load */
    bool fwd_pending;   /* engine-thread only: a forward returned false, not yet accepted */
    double t_forward;   /* engine-thread only: when the last forward started (the cost model) */
    bool fwd_committed;
    sipp__fwd_result fwd_res;
    int32_t n_vocab;
    llama_token_data *cur; /* n_vocab candidates, the sampler's input (allocated at open) */

    /* engine-thread only */
    slot *slots;
    sipp__plan batch;   /* the plan of the current tick (arrays allocated at open) */
    uint32_t rr; /* round-robin start for prefill sharing */
    uint32_t n_running;
    char piece[512];
    char lp_text[(SIPP_MAX_TOP_LOGPROBS + 1) * 256]; /* token pieces of one logprobs entry */
    float *gap_scratch; /* n_ctx_seq floats, for the p99 of one request */
    llama_logit_bias *eog_bias; /* -inf for every end-of-generation token (ignore_eos) */
    int32_t n_eog;
    llama_token *special; /* tokens chat content may not spell (content_may_not_spell) */
    int32_t n_special;
    bool partial_reuse; /* false for recurrent/hybrid models: exact continuations only */
    bool context_shift;
    uint32_t n_keep;
    sipp__kvstore *kv;  /* prefix snapshots; NULL when disabled */
    sipp__prefill_budget pfb; /* per-tick prefill budget from the ITL target (prefill_budget.h) */

    /* Routing estimates (engine_estimate.c), under warm_mu: what each slot holds or is about
     * to (published by the engine thread when a slot starts and ends a run), and the tokens of
     * the last estimated prompt, kept for the submission of the same text that follows. */
    pthread_mutex_t warm_mu;
    struct sipp__warm_view *warm; /* n_parallel entries (one per slot) */
    char *est_prompt;             /* NULL when none */
    llama_token *est_tokens;
    int32_t n_est_tokens;

    struct mtmd_context *mtmd; /* the projector (media.c); NULL for a text-only endpoint */
    uint8_t media_salt[32];    /* the projector's identity in media placeholder ids */
    sipp__plan media_plan;     /* a media chunk's embedding rows (media.c; arrays of n_batch rows,
                                * allocated with the projector): its own plan, since a chunk is
                                * fed while the tick's plan is being built */
    /* why the projector a pull stored beside the model was not loaded (engine_open.c), for
     * the error of a media request; "" when it was, or when there was none */
    char pulled_mmproj_error[SIPP_ERROR_MESSAGE_CAP];
};

/* ---- engine_submit.c -------------------------------------------------------------------- */

/* Frees a job and everything it owns (not its run). NULL is a no-op. */
void sipp__job_free(job *j);
/* The parser's delta callback (sipp__delta_emit_fn): pushes the delta to em->run, the first
 * one with em->n_tokens (then zeroed). `user_data` is a sipp__job_emit. */
typedef struct sipp__job_emit {
    sipp_run *run;
    uint32_t n_tokens;
} sipp__job_emit;
sipp_status sipp__job_emit_delta(void *user_data, sipp_delta_kind kind, uint32_t tool_index,
                                 const char *tool_id, const char *tool_name, const char *text,
                                 size_t len);

/* ---- engine_slots.c (engine thread) ----------------------------------------------------- */

/* Ends a job's run and counts it. Every job ends here exactly once. Takes ownership of j. */
void sipp__engine_finish_job(sipp__engine *e, job *j, sipp_status st, const char *msg,
                             sipp_finish_reason reason, const sipp_usage *usage,
                             const sipp_stats *stats);
/* Saves a warm slot's state as a prefix snapshot (when the store is on). */
void sipp__slot_snapshot(sipp__engine *e, slot *s);
/* The sequence for a text job: the key's warm one, else an empty one, else the LRU warm one. */
slot *sipp__slot_pick(sipp__engine *e, const job *j);
/* Reuses the live prefix of the key's sequence or restores a snapshot into slot s for job j;
 * sets n_past to the reused length and counts the hit or miss. */
void sipp__slot_prepare_cache(sipp__engine *e, slot *s, job *j);
/* Ends the slot's run (usage, stats) and frees the slot, leaving it warm under the job's key. */
void sipp__slot_finish(sipp__engine *e, slot *s, sipp_status st, const char *msg,
                       sipp_finish_reason reason);
/* Makes room in a full sequence (context shift): keeps n_keep, drops the older half. */
void sipp__slot_shift(sipp__engine *e, slot *s);

/* ---- engine_text.c (engine thread) ------------------------------------------------------ */

/* Flushes held text at the end of a run, dropping an incomplete trailing UTF-8 sequence. */
void sipp__slot_flush_held(slot *s);
/* Processes a sampled token: streams its text, or finishes on EOG, a stop string or a limit. */
void sipp__slot_accept(sipp__engine *e, slot *s, llama_token tok, double now);

/* ---- backend_llama.c / engine_seam.c --------------------------------------------------- */

/* The llama.cpp backend over a model and context (destroy frees them when `owns`); false when
 * out of memory (nothing is freed then). */
bool sipp__backend_llama_new(struct llama_model *model, struct llama_context *ctx, bool owns,
                             bool embed_only, sipp__backend *out);
/* Runs the current plan (e->batch) through the backend. True with *res filled when the result
 * is here (a native engine waits for a pending one's commit); false in manual mode while a
 * forward is pending (sipp__engine_resume completes it). */
bool sipp__engine_forward(sipp__engine *e, sipp__fwd_result *res);
/* Samples one token for sampler `smpl` from one logits row (n_vocab floats) and accepts it
 * into the sampler: llama_sampler_sample's CPU path, over any backend's logits. */
llama_token sipp__engine_sample(sipp__engine *e, struct llama_sampler *smpl, const float *row);

/* ---- engine_tick.c (engine thread) ------------------------------------------------------ */

/* Plans one batch, runs it through the backend, samples and accepts. Returns false when there
 * was nothing to run. In manual mode a forward may still be pending when it returns true. */
bool sipp__engine_tick(sipp__engine *e);
/* Manual mode: completes a pending forward once committed (sample and accept). Returns false
 * while it is still pending; true when none is pending (any more). */
bool sipp__engine_resume(sipp__engine *e);
/* Runs an embedding job to its end on the reserved sequence. Takes ownership of j. */
void sipp__engine_run_embed(sipp__engine *e, job *j);
/* "deadline of N ms exceeded" for a job past its deadline. */
void sipp__job_deadline_message(const job *j, char *buf, size_t cap);

/* ---- engine_estimate.c ------------------------------------------------------------------ */

/* The key a text job carries for params p ("<len(scope)>:<scope><context_key>"); *key is NULL
 * when p has no context key. SIPP_OUT_OF_MEMORY only. */
sipp_status sipp__job_key(const sipp_text_params *p, char **key, size_t *key_len);
sipp_status sipp__estimate_state_init(sipp__engine *e);
void sipp__estimate_state_free(sipp__engine *e);
/* Engine thread: slot s now holds (or is filling with) `tokens` under `key` (NULL: nothing
 * reusable). */
void sipp__warm_publish(sipp__engine *e, const slot *s, const char *key, size_t key_len,
                        const llama_token *tokens, uint32_t n);
/* Submission: takes the tokens an estimate kept for exactly this prompt text, if any. */
bool sipp__estimate_take_tokens(sipp__engine *e, const char *prompt, llama_token **tokens,
                                int32_t *n);

/* ---- engine_loop.c ---------------------------------------------------------------------- */

/* Starts the engine thread and (native builds, stall_alarm_ms > 0) the watchdog. Manual mode
 * starts nothing. */
sipp_status sipp__engine_start(sipp__engine *e, sipp_error *err);
/* Stops the threads sipp__engine_start started; every queued or running run gets its terminal
 * state and warm sequences are kept as snapshots. Afterwards no thread touches e. */
void sipp__engine_stop(sipp__engine *e);

#endif
