/*
 * sipp_wasm.c — the C side of the browser host: a thin, flat ABI over Sipp's local engine for
 * the JavaScript worker (web/src/worker.ts), exported from the wasm module as sippw_*.
 *
 * It talks to the engine directly (engine_int.h), not through sipp_client: the wasm build has
 * no remote endpoints (the browser's gateway client is JavaScript) and so no libcurl. Requests
 * take the same validation and the same sampler chain as the native library, so the same
 * prompt at temperature 0 gives the same text.
 *
 * Threads: in the single-thread artifact (SIPP_ENGINE_MANUAL) the engine has no thread; the
 * worker calls sippw_step() until it returns 0, polling its runs in between. In the pthread
 * artifact the engine thread runs by itself and sippw_step() only reports whether work is left.
 *
 * Strings passed in are NUL-terminated UTF-8 owned by the caller for the duration of the call.
 * Lists (stop strings, chat messages) come packed: consecutive NUL-terminated strings.
 * Errors: a call that fails returns 0/NULL and leaves its message in sippw_last_error().
 */
#include "../../src/common/common_int.h"
#include "../../src/common/json_writer.h"
#include "../../src/engine/engine_int.h"

#include <emscripten/emscripten.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT EMSCRIPTEN_KEEPALIVE

static sipp_error last_error;

EXPORT const char *sippw_last_error(void) { return last_error.message; }
EXPORT const char *sippw_last_status(void) { return sipp_status_name(last_error.code); }

EXPORT int sippw_threaded(void) {
#ifdef SIPP_ENGINE_MANUAL
    return 0;
#else
    return 1;
#endif
}

EXPORT void sippw_set_log_level(int level) { sipp__log_set_level((sipp_log_level)level); }

/* ---- answers as JSON (the worker parses them) --------------------------------------------- */
/* Written with src/common's bounded writer (json_writer.c: escaping, invalid UTF-8, NaN/Inf and
 * the maximum handled and tested natively, fuzzed); jansson has no emscripten build here. */

#define JSON_MAX (64u * 1024u)
static char *json_out; /* the last answer: valid until the next call that returns JSON */

static void kv_str(sipp__jw *w, const char *k, const char *v) {
    sipp__jw_key(w, k);
    sipp__jw_string(w, v);
}
static void kv_uint(sipp__jw *w, const char *k, uint64_t v) {
    sipp__jw_key(w, k);
    sipp__jw_uint(w, v);
}
static void kv_bool(sipp__jw *w, const char *k, bool v) {
    sipp__jw_key(w, k);
    sipp__jw_bool(w, v);
}
/* A measured value; null when it is not a finite number (JSON has none other). */
static void kv_num(sipp__jw *w, const char *k, double v) {
    sipp__jw_key(w, k);
    if (isfinite(v)) sipp__jw_double(w, v);
    else sipp__jw_null(w);
}

/* Ends the answer: the text (kept in json_out until the next answer), or when the writer
 * failed an error object naming the status (the one failure possible here: out of memory). */
static const char *answer(sipp__jw *w) {
    free(json_out);
    json_out = NULL;
    if (sipp__jw_finish(w, &json_out, NULL) != SIPP_OK) return "{\"error\":\"out of memory\"}";
    return json_out;
}

/* ---- engines ------------------------------------------------------------------------------ */

/* Loads `path` (a file in the module's file system: the worker mounts the OPFS file or the
 * downloaded blob there; the first shard of a split model). n_threads 0 = engine default. */
EXPORT sipp__engine *sippw_open(const char *path, uint32_t n_ctx, int32_t n_threads,
                                uint32_t n_parallel, uint32_t n_batch) {
    last_error = sipp__error_defaults();
    sipp_local_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.model_path = path;
    p.n_ctx = n_ctx;
    p.n_threads = n_threads;
    p.n_parallel = n_parallel;
    p.n_batch = n_batch;
    p.cache_ram_bytes = SIPP_CACHE_DISABLED; /* no snapshot store in the browser (yet) */
#ifdef SIPP_ENGINE_MANUAL
    p.n_threads = 1; /* no threads at all in this artifact */
#endif
    sipp__engine *e = NULL;
    if (sipp__engine_open(&p, &e, &last_error) != SIPP_OK) return NULL;
    return e;
}

EXPORT void sippw_close(sipp__engine *e) { sipp__engine_close(e); }

/* The endpoint's info as JSON. */
EXPORT const char *sippw_info(sipp__engine *e) {
    sipp_endpoint_info in = sipp__endpoint_info_defaults();
    sipp__engine_get_info(e, &in);
    sipp__jw w;
    sipp__jw_init(&w, JSON_MAX);
    sipp__jw_object_begin(&w);
    kv_str(&w, "architecture", in.architecture);
    kv_str(&w, "description", in.description);
    kv_uint(&w, "nCtx", in.n_ctx);
    kv_uint(&w, "nCtxTrain", in.n_ctx_train);
    kv_uint(&w, "nEmbd", in.n_embd);
    kv_uint(&w, "nParams", in.n_params);
    kv_uint(&w, "sizeBytes", in.size_bytes);
    kv_uint(&w, "nParallel", in.n_parallel);
    kv_bool(&w, "canGenerate", in.can_generate);
    kv_bool(&w, "canChat", in.can_chat);
    kv_bool(&w, "canEmbed", in.can_embed);
    sipp__jw_object_end(&w);
    return answer(&w);
}

/* Runs one engine round in the single-thread artifact; returns 1 while work is left. The
 * pthread artifact's engine runs by itself: always 0. */
EXPORT int sippw_step(sipp__engine *e) {
#ifdef SIPP_ENGINE_MANUAL
    return sipp__engine_step(e) ? 1 : 0;
#else
    (void)e;
    return 0;
#endif
}

/* ---- requests ----------------------------------------------------------------------------- */

typedef struct sippw_text_opts {
    uint32_t max_tokens;
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    uint32_t seed;
    uint32_t timeout_ms;
    uint32_t ignore_eos;
    uint32_t n_stop;
    const char *stop;        /* n_stop packed strings */
    const char *grammar;     /* NULL = none */
    const char *json_schema; /* NULL = none */
    const char *context_key; /* NULL = none */
} sippw_text_opts;

/* Fills sipp_text_params from the worker's options; stop points into `stops`. */
static void text_params(const sippw_text_opts *o, sipp_text_params *p, const char **stops) {
    *p = sipp__text_params_defaults();
    p->max_tokens = o->max_tokens;
    p->temperature = o->temperature;
    p->top_k = o->top_k;
    p->top_p = o->top_p;
    p->min_p = o->min_p;
    p->repeat_penalty = o->repeat_penalty;
    p->seed = o->seed;
    p->timeout_ms = o->timeout_ms;
    p->ignore_eos = o->ignore_eos != 0;
    p->grammar = o->grammar;
    p->json_schema = o->json_schema;
    p->context_key = o->context_key;
    size_t n = o->n_stop < SIPP_MAX_STOP_STRINGS ? o->n_stop : SIPP_MAX_STOP_STRINGS;
    const char *s = o->stop;
    for (size_t i = 0; i < n && s; i++) {
        stops[i] = s;
        s += strlen(s) + 1;
    }
    p->stop = stops;
    p->n_stop = o->stop ? n : 0;
}

EXPORT sipp_run *sippw_query(sipp__engine *e, const char *prompt, const sippw_text_opts *o) {
    last_error = sipp__error_defaults();
    if (!prompt || !prompt[0]) {
        sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0, "query: the prompt is empty");
        return NULL;
    }
    if (o->n_stop > SIPP_MAX_STOP_STRINGS) {
        sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0, "at most %d stop strings",
                   SIPP_MAX_STOP_STRINGS);
        return NULL;
    }
    const char *stops[SIPP_MAX_STOP_STRINGS];
    sipp_text_params p;
    text_params(o, &p, stops);
    sipp_run *run = NULL;
    if (sipp__engine_submit_text(e, prompt, &p, &run, &last_error) != SIPP_OK) return NULL;
    return run;
}

/* `messages`: n_messages pairs of packed strings, role then content. */
EXPORT sipp_run *sippw_chat(sipp__engine *e, const char *messages, uint32_t n_messages,
                            const sippw_text_opts *o) {
    last_error = sipp__error_defaults();
    if (n_messages == 0 || n_messages > 4096) {
        sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0, "chat: %s",
                   n_messages ? "too many messages" : "no messages");
        return NULL;
    }
    if (o->n_stop > SIPP_MAX_STOP_STRINGS) {
        sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0, "at most %d stop strings",
                   SIPP_MAX_STOP_STRINGS);
        return NULL;
    }
    sipp_message *msgs = calloc(n_messages, sizeof *msgs);
    if (!msgs) {
        sipp__fail(&last_error, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        return NULL;
    }
    const char *s = messages;
    for (uint32_t i = 0; i < n_messages; i++) {
        msgs[i].role = s;
        s += strlen(s) + 1;
        msgs[i].content = s;
        s += strlen(s) + 1;
        const char *r = msgs[i].role;
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0) {
            sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0,
                       "chat: message %u has unknown role '%s' (system, user or assistant)", i, r);
            free(msgs);
            return NULL;
        }
    }
    char *prompt = NULL;
    sipp_run *run = NULL;
    if (sipp__engine_render_chat(e, msgs, n_messages, &prompt, &last_error) == SIPP_OK) {
        const char *stops[SIPP_MAX_STOP_STRINGS];
        sipp_text_params p;
        text_params(o, &p, stops);
        if (sipp__engine_submit_text(e, prompt, &p, &run, &last_error) != SIPP_OK) run = NULL;
    }
    free(prompt);
    free(msgs);
    return run;
}

EXPORT sipp_run *sippw_embed(sipp__engine *e, const char *text, int normalize) {
    last_error = sipp__error_defaults();
    if (!text || !text[0]) {
        sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0, "embed: the text is empty");
        return NULL;
    }
    sipp_embed_params p = sipp__embed_params_defaults();
    p.normalize = normalize != 0;
    sipp_run *run = NULL;
    if (sipp__engine_submit_embed(e, text, &p, &run, &last_error) != SIPP_OK) return NULL;
    return run;
}

/* ---- runs --------------------------------------------------------------------------------- */

typedef struct sippw_batch {
    const char *text;
    uint32_t len;
    uint32_t n_tokens;
    uint32_t done;
} sippw_batch;

/* Takes the text that arrived since the last call. Returns 1 with *out filled, 0 when nothing
 * arrived within timeout_ms (0 = poll; the pthread artifact may wait), -1 on error. */
EXPORT int sippw_run_next(sipp_run *run, int timeout_ms, sippw_batch *out) {
    sipp_token_batch b = {.struct_size = sizeof b};
    sipp_status st = sipp_run_next(run, timeout_ms, &b, &last_error);
    if (st == SIPP_TIMEOUT) return 0;
    if (st != SIPP_OK) return -1;
    out->text = b.text;
    out->len = (uint32_t)b.len;
    out->n_tokens = b.n_tokens;
    out->done = b.done;
    return 1;
}

EXPORT void sippw_run_cancel(sipp_run *run) { sipp_run_cancel(run); }
EXPORT void sippw_run_free(sipp_run *run) { sipp_run_free(run); }

/* The final response as JSON (call once the run is done: it does not block then). The
 * embedding stays in the run: sippw_run_embedding(). */
EXPORT const char *sippw_run_response(sipp_run *run) {
    const sipp_response *r = NULL;
    if (sipp_run_wait(run, &r, &last_error) != SIPP_OK || !r) return NULL;
    const sipp_stats *s = r->stats;
    sipp__jw w;
    sipp__jw_init(&w, JSON_MAX);
    sipp__jw_object_begin(&w);
    kv_str(&w, "status", sipp_status_name(r->status));
    kv_str(&w, "errorMessage", r->error_message);
    kv_str(&w, "finishReason", sipp_finish_reason_name(r->finish_reason));
    kv_uint(&w, "nEmbd", r->n_embd);
    kv_bool(&w, "normalized", r->normalized);
    sipp__jw_key(&w, "usage");
    sipp__jw_object_begin(&w);
    kv_uint(&w, "inputTokens", r->usage->input_tokens);
    kv_uint(&w, "outputTokens", r->usage->output_tokens);
    kv_uint(&w, "totalTokens", r->usage->total_tokens);
    sipp__jw_object_end(&w);
    sipp__jw_key(&w, "stats");
    sipp__jw_object_begin(&w);
    kv_num(&w, "queueMs", s->queue_ms);
    kv_num(&w, "ttftMs", s->ttft_ms);
    kv_num(&w, "prefillMs", s->prefill_ms);
    kv_num(&w, "decodeMs", s->decode_ms);
    kv_num(&w, "prefillTokS", s->prefill_tok_s);
    kv_num(&w, "decodeTokS", s->decode_tok_s);
    kv_num(&w, "totalMs", s->total_ms);
    kv_num(&w, "itlAvgMs", s->itl_avg_ms);
    kv_num(&w, "itlP99Ms", s->itl_p99_ms);
    kv_uint(&w, "prefillTokens", s->prefill_tokens);
    kv_str(&w, "cacheSource", sipp_cache_source_name(s->cache_source));
    kv_uint(&w, "cachedTokens", s->cached_tokens);
    sipp__jw_object_end(&w);
    sipp__jw_object_end(&w);
    return answer(&w);
}

/* The response text (valid until sippw_run_free); length in *len. */
EXPORT const char *sippw_run_text(sipp_run *run, uint32_t *len) {
    const sipp_response *r = NULL;
    if (sipp_run_wait(run, &r, &last_error) != SIPP_OK || !r) return NULL;
    *len = (uint32_t)r->text_len;
    return r->text;
}

EXPORT const float *sippw_run_embedding(sipp_run *run) {
    const sipp_response *r = NULL;
    if (sipp_run_wait(run, &r, &last_error) != SIPP_OK || !r) return NULL;
    return r->embedding;
}

/* ---- the split step: a forward that runs in JavaScript ------------------------------------ */
/* An engine over an external backend (src/engine/backend.h) whose forward goes out to the
 * host: the engine's tick plans a batch and sippw_step returns with the forward pending; the
 * host reads the plan from the heap (sippw_split_plan: a sipp__plan in the wasm32 layout
 * n_tokens@0 n_outputs@4 token*@8 embd*@12 pos*@16 seq_id*@20 logits*@24 out_row*@28, arrays
 * of int32 except logits, int8), runs the forward, possibly asynchronously, and hands the
 * logits back with sippw_split_commit (n_outputs rows of n_vocab floats in the heap, valid
 * until the next sippw_step); the next sippw_step samples from them and goes on.
 * Here the KV cache, and the compute the host's forward asks for (sippw_split_forward), are a
 * llama.cpp backend of the same model: the pass-through of the browser suite, whose answers
 * must equal sippw_open's. Single-thread artifact: one thread, the host's. */
typedef struct sippw_split {
    sipp__engine *engine;
    sipp__backend inner;       /* llama.cpp: KV operations and the pass-through compute */
    const sipp__plan *pending; /* the plan of the forward in flight, NULL when none */
} sippw_split;

static bool split_forward(void *st, sipp__engine *e, const sipp__plan *plan,
                          sipp__fwd_result *res) {
    (void)e;
    (void)res;
    ((sippw_split *)st)->pending = plan;
    return false; /* the host runs it and commits */
}
static int32_t split_n_vocab(void *st) {
    sippw_split *s = st;
    return s->inner.n_vocab(s->inner.state);
}
static int32_t split_n_embd(void *st) {
    sippw_split *s = st;
    return s->inner.n_embd(s->inner.state);
}
static uint32_t split_n_ctx_seq(void *st) {
    sippw_split *s = st;
    return s->inner.n_ctx_seq(s->inner.state);
}
static bool split_seq_remove(void *st, int32_t seq, int32_t p0, int32_t p1) {
    sippw_split *s = st;
    return s->inner.seq_remove(s->inner.state, seq, p0, p1);
}
static void split_seq_shift(void *st, int32_t seq, int32_t p0, int32_t p1, int32_t delta) {
    sippw_split *s = st;
    s->inner.seq_shift(s->inner.state, seq, p0, p1, delta);
}
static void split_seq_copy(void *st, int32_t src, int32_t dst, int32_t p1) {
    sippw_split *s = st;
    s->inner.seq_copy(s->inner.state, src, dst, p1);
}
static bool split_state_save(void *st, int32_t seq, uint8_t **out, size_t *len) {
    sippw_split *s = st;
    return s->inner.state_save(s->inner.state, seq, out, len);
}
static bool split_state_load(void *st, int32_t seq, const uint8_t *data, size_t len) {
    sippw_split *s = st;
    return s->inner.state_load(s->inner.state, seq, data, len);
}

/* Opens `path` as sippw_open does, with the forward split out to the host. NULL on failure
 * (sippw_last_error). */
EXPORT sippw_split *sippw_open_split(const char *path, uint32_t n_ctx, uint32_t n_parallel,
                                     uint32_t n_batch) {
    last_error = sipp__error_defaults();
    sipp_local_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.model_path = path;
    p.n_ctx = n_ctx;
    p.n_threads = 1;
    p.n_parallel = n_parallel;
    p.n_batch = n_batch;
    p.cache_ram_bytes = SIPP_CACHE_DISABLED;
    sippw_split *s = calloc(1, sizeof *s);
    if (!s) {
        sipp__fail(&last_error, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        return NULL;
    }
    if (sipp__backend_llama_open(&p, &s->inner, &last_error) != SIPP_OK) {
        free(s);
        return NULL;
    }
    sipp__backend be = {
        .state = s, .n_vocab = split_n_vocab, .n_embd = split_n_embd,
        .n_ctx_seq = split_n_ctx_seq, .forward = split_forward, .seq_remove = split_seq_remove,
        .seq_shift = split_seq_shift, .seq_copy = split_seq_copy,
        .state_save = split_state_save, .state_load = split_state_load,
    };
    if (sipp__engine_open_external(&p, &be, &s->engine, &last_error) != SIPP_OK) {
        s->inner.destroy(s->inner.state);
        free(s);
        return NULL;
    }
    return s;
}

/* The engine, for sippw_query/sippw_chat/sippw_step/sippw_info. */
EXPORT sipp__engine *sippw_split_engine(sippw_split *s) { return s->engine; }

/* The pending forward's plan, NULL when none (sippw_step returned with nothing to run). */
EXPORT const sipp__plan *sippw_split_plan(sippw_split *s) { return s->pending; }

/* The pass-through compute of the pending plan: the logits (n_outputs rows of n_vocab floats,
 * valid until the next call into the module that computes), or NULL when it failed or there
 * was none; the host then commits with rc != 0. */
EXPORT const float *sippw_split_forward(sippw_split *s) {
    if (!s->pending) return NULL;
    sipp__fwd_result res;
    s->inner.forward(s->inner.state, NULL, s->pending, &res);
    return res.rc == 0 ? res.logits : NULL;
}

/* Hands the pending forward's result back: rc 0 with `logits`, or rc != 0 to fail the batch's
 * sequences. A commit with nothing pending is ignored. */
EXPORT void sippw_split_commit(sippw_split *s, int rc, const float *logits) {
    if (!s->pending) return;
    s->pending = NULL;
    sipp__engine_commit(s->engine, rc, logits);
}

/* Closes the engine (a pending forward is failed first: nothing may stay in flight) and the
 * backend behind it. */
EXPORT void sippw_close_split(sippw_split *s) {
    if (!s) return;
    if (s->pending) sippw_split_commit(s, -1, NULL); /* the close takes it back, then drains */
    sipp__engine_close(s->engine);
    s->inner.destroy(s->inner.state);
    free(s);
}

/* ---- SHA-256 ------------------------------------------------------------------------------ */
/* The native library hashes with OpenSSL for model fingerprints and KV snapshots; the browser
 * build has no snapshot store (sippw_open disables it), so nothing here ever hashes. These keep
 * the link whole and fail safely should that change. */
sipp__sha256 *sipp__sha256_begin(void) { return NULL; }
void sipp__sha256_update(sipp__sha256 *h, const void *data, size_t len) {
    (void)h;
    (void)data;
    (void)len;
}
void sipp__sha256_end(sipp__sha256 *h, uint8_t out[32]) {
    (void)h;
    memset(out, 0, 32);
}
int sipp__sha256_fd(int fd, uint8_t out[32]) {
    (void)fd;
    memset(out, 0, 32);
    return ENOSYS;
}
bool sipp__sha256_once(const void *data, size_t len, uint8_t out[32]) {
    (void)data;
    (void)len;
    memset(out, 0, 32);
    return false;
}
