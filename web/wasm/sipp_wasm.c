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
#include "../../src/common/signals.h"
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

static void signals_drop(sipp__engine *e); /* routing signals, below */

EXPORT void sippw_close(sipp__engine *e) {
    sipp__engine_close(e);
    signals_drop(e);
}

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
    uint32_t logprobs;       /* report each output token's log-probability (routing: drafts) */
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
    p->logprobs = o->logprobs != 0;
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

/* Unpacks `messages` (n_messages pairs of packed strings, role then content) into a new array
 * (free it); NULL with last_error set when the list is empty, too long or has an unknown role. */
static sipp_message *unpack_messages(const char *messages, uint32_t n_messages) {
    if (n_messages == 0 || n_messages > 4096) {
        sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0, "chat: %s",
                   n_messages ? "too many messages" : "no messages");
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
    return msgs;
}

/* `messages`: n_messages pairs of packed strings, role then content. */
EXPORT sipp_run *sippw_chat(sipp__engine *e, const char *messages, uint32_t n_messages,
                            const sippw_text_opts *o) {
    last_error = sipp__error_defaults();
    if (o->n_stop > SIPP_MAX_STOP_STRINGS) {
        sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0, "at most %d stop strings",
                   SIPP_MAX_STOP_STRINGS);
        return NULL;
    }
    sipp_message *msgs = unpack_messages(messages, n_messages);
    if (!msgs) return NULL;
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

/* ---- routing signals and estimates (issue 20, docs/routing.md "In the browser") ----------- */
/* Each engine has the signals the native client keeps per endpoint (src/common/signals.c): what
 * its own finished runs measured (the runs the host passes to sippw_observe: the app's, not the
 * load-time warm-up) and the prices the app configured. sippw_estimate answers from the engine
 * (sipp__engine_estimate: exact tokens, cached prefix for the key, load) and predicts TTFT with
 * the native cost model (sipp__signals_predict_ttft), so both hosts give the same figures. */

typedef struct sippw_signals {
    sipp__engine *engine;
    sipp__signals s;
    struct sippw_signals *next;
} sippw_signals;

static sippw_signals *signals_list; /* touched on the host's thread only */

/* The engine's signals, created on first use; NULL when out of memory. */
static sipp__signals *signals_of(sipp__engine *e) {
    for (sippw_signals *x = signals_list; x; x = x->next)
        if (x->engine == e) return &x->s;
    sippw_signals *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->engine = e;
    sipp__signals_init(&x->s);
    x->next = signals_list;
    signals_list = x;
    return &x->s;
}

/* Drops the engine's signals: call once the engine is closed (no observer can fire then). */
static void signals_drop(sipp__engine *e) {
    for (sippw_signals **p = &signals_list; *p; p = &(*p)->next) {
        if ((*p)->engine != e) continue;
        sippw_signals *x = *p;
        *p = x->next;
        sipp__signals_destroy(&x->s);
        free(x);
        return;
    }
}

static void observe(void *ctx, const sipp_response *r) {
    sipp__signals_record(ctx, r, sipp__now_ms());
}

/* Counts `run` (just submitted on `e`) in the engine's signals when it ends. */
EXPORT void sippw_observe(sipp__engine *e, sipp_run *run) {
    sipp__signals *s = signals_of(e);
    if (s && run) sipp__run_observe(run, observe, s);
}

/* The prices estimates report (per million tokens; negative = unknown). 0 on bad input. */
EXPORT int sippw_set_prices(sipp__engine *e, double in, double out) {
    last_error = sipp__error_defaults();
    sipp__signals *s = signals_of(e);
    if (!s) {
        sipp__fail(&last_error, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        return 0;
    }
    if (isnan(in) || isnan(out)) {
        sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0, "prices must be numbers");
        return 0;
    }
    sipp__signals_set_prices(s, in < 0 ? -1 : in, out < 0 ? -1 : out);
    return 1;
}

static void kv_figure(sipp__jw *w, const char *k, sipp_figure f) {
    sipp__jw_key(w, k);
    sipp__jw_object_begin(w);
    kv_num(w, "value", f.value);
    kv_uint(w, "samples", f.samples);
    kv_str(w, "source", sipp_figure_source_name(f.source));
    sipp__jw_object_end(w);
}

/* The estimate of a query (`messages` NULL: `prompt`) or a chat (n_messages packed pairs) with
 * the options `o` (its context key decides which cached prefix counts), as JSON with the field
 * names of the Node binding's Estimate; NULL on bad input (sippw_last_error). No model run;
 * the tokens are kept for a submission of the same text that follows. */
EXPORT const char *sippw_estimate(sipp__engine *e, const char *prompt, const char *messages,
                                  uint32_t n_messages, const sippw_text_opts *o) {
    last_error = sipp__error_defaults();
    if (!messages && (!prompt || !prompt[0])) {
        sipp__fail(&last_error, SIPP_INVALID_ARGUMENT, 0, "estimate: the prompt is empty");
        return NULL;
    }
    sipp__signals *sig = signals_of(e);
    if (!sig) {
        sipp__fail(&last_error, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        return NULL;
    }
    const char *stops[SIPP_MAX_STOP_STRINGS];
    sipp_text_params p;
    text_params(o, &p, stops);
    sipp_estimate est = {.struct_size = sizeof est};
    char *rendered = NULL;
    if (messages) {
        sipp_message *msgs = unpack_messages(messages, n_messages);
        if (!msgs) return NULL;
        sipp_status st = sipp__engine_render_chat(e, msgs, n_messages, &rendered, &last_error);
        free(msgs);
        if (st != SIPP_OK) return NULL;
        prompt = rendered;
    }
    sipp_status st = sipp__engine_estimate(e, prompt, &p, &est, &last_error);
    free(rendered);
    if (st != SIPP_OK) return NULL;
    sipp__signals_view v;
    sipp__signals_read(sig, sipp__now_ms(), &v);
    est.ttft_ms = sipp__signals_predict_ttft(&est, &v);

    sipp__jw w;
    sipp__jw_init(&w, JSON_MAX);
    sipp__jw_object_begin(&w);
    kv_bool(&w, "local", est.local);
    kv_bool(&w, "loaded", est.loaded);
    kv_bool(&w, "healthy", est.healthy);
    kv_uint(&w, "promptTokens", est.prompt_tokens);
    kv_uint(&w, "cachedTokens", est.cached_tokens);
    kv_str(&w, "cacheSource", sipp_cache_source_name(est.cache_source));
    kv_bool(&w, "cacheOnDisk", est.cache_on_disk);
    kv_uint(&w, "prefillTokens", est.prefill_tokens);
    kv_uint(&w, "nCtx", est.n_ctx);
    kv_uint(&w, "running", est.running);
    kv_uint(&w, "queued", est.queued);
    kv_uint(&w, "freeSlots", est.free_slots);
    kv_figure(&w, "ttftMs", est.ttft_ms);
    kv_figure(&w, "decodeTokensPerS", v.decode_tok_s);
    kv_figure(&w, "totalMs", v.total_ms);
    kv_figure(&w, "priceInputPerMtok", v.price_in);
    kv_figure(&w, "priceOutputPerMtok", v.price_out);
    kv_figure(&w, "errorRate", v.error_rate);
    kv_figure(&w, "busyRate", v.busy_rate);
    sipp__jw_object_end(&w);
    return answer(&w);
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
    sipp__jw_init(&w, JSON_MAX + 32 * r->n_logprobs); /* room for every log-probability */
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
    if (r->n_logprobs) { /* the output tokens' log-probabilities (text_opts.logprobs) */
        sipp__jw_key(&w, "logprobs");
        sipp__jw_array_begin(&w);
        for (size_t i = 0; i < r->n_logprobs; i++) {
            double lp = r->logprobs[i].logprob;
            if (isfinite(lp)) sipp__jw_double(&w, lp);
            else sipp__jw_null(&w); /* -inf: the page reads null as a token given no chance */
        }
        sipp__jw_array_end(&w);
    }
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
    /* sippw_open_external: inner is unused (its destroy NULL), the host's backend instead */
    int32_t host_id, n_vocab, n_embd;
    uint32_t n_ctx_seq;
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
    if (!s->pending || !s->inner.forward) return NULL; /* sippw_open_external: no inner */
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
    signals_drop(s->engine);
    if (s->inner.destroy) s->inner.destroy(s->inner.state);
    free(s);
}

/* ---- an external backend in JavaScript: the WebGPU pipeline ------------------------------- */
/* The same split step, with no llama.cpp context at all: the engine is a vocab-only load of the
 * GGUF (tokenizer, chat template), the forward is the host's (WebGpuLlama.forward, on the GPU)
 * and so is the KV cache, whose operations the engine calls synchronously through
 * Module.sippKv(host_id, op, a, b, c) (web/src/host.ts). The host gives the widths at open: it
 * has loaded the pipeline first. Sequences are the engine's n_parallel + 1.
 * Not supported by the pipeline, and never asked for by the browser's engine: removing the
 * middle of a sequence and shifting positions (a context shift: off here), and saving a
 * sequence as bytes (the pipeline's save reads the GPU asynchronously; the browser has no
 * snapshot store, so nothing saves). Restoring bytes is synchronous and goes to the host. */

EM_JS(int, js_kv_op, (int32_t id, const char *op, int32_t a, int32_t b, int32_t c), {
    return Module.sippKv ? (Module.sippKv(id, UTF8ToString(op), a, b, c) ? 1 : 0) : 0;
});

static bool js_seq_remove(void *st, int32_t seq, int32_t p0, int32_t p1) {
    return js_kv_op(((sippw_split *)st)->host_id, "remove", seq, p0, p1) != 0;
}
static void js_seq_shift(void *st, int32_t seq, int32_t p0, int32_t p1, int32_t delta) {
    (void)st;
    (void)p0;
    (void)p1;
    (void)delta;
    sipp__log(SIPP_LOG_ERROR, "webgpu backend: seq %d: shifting positions is not supported", seq);
}
static void js_seq_copy(void *st, int32_t src, int32_t dst, int32_t p1) {
    js_kv_op(((sippw_split *)st)->host_id, "copy", src, dst, p1);
}
static bool js_state_save(void *st, int32_t seq, uint8_t **out, size_t *len) {
    (void)st;
    (void)seq;
    *out = NULL;
    *len = 0;
    return false;
}
static bool js_state_load(void *st, int32_t seq, const uint8_t *data, size_t len) {
    if (len > INT32_MAX) return false;
    return js_kv_op(((sippw_split *)st)->host_id, "restore", seq, (int32_t)(uintptr_t)data,
                    (int32_t)len) != 0;
}
static int32_t js_n_vocab(void *st) { return ((sippw_split *)st)->n_vocab; }
static int32_t js_n_embd(void *st) { return ((sippw_split *)st)->n_embd; }
static uint32_t js_n_ctx_seq(void *st) { return ((sippw_split *)st)->n_ctx_seq; }

/* Opens `path` vocab-only with the host's backend `host_id` (n_vocab logits per row, n_embd
 * wide, n_ctx_seq positions per sequence). Closed with sippw_close_split; the plan and the
 * commit are sippw_split_plan and sippw_split_commit. NULL on failure (sippw_last_error). */
EXPORT sippw_split *sippw_open_external(const char *path, uint32_t n_parallel, uint32_t n_batch,
                                        int32_t n_vocab, int32_t n_embd, uint32_t n_ctx_seq,
                                        int32_t host_id) {
    last_error = sipp__error_defaults();
    sipp_local_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.model_path = path;
    p.n_ctx = n_ctx_seq;
    p.n_threads = 1;
    p.n_parallel = n_parallel;
    p.n_batch = n_batch;
    p.cache_ram_bytes = SIPP_CACHE_DISABLED;
    p.context_shift = false; /* the pipeline cannot shift positions */
    sippw_split *s = calloc(1, sizeof *s);
    if (!s) {
        sipp__fail(&last_error, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        return NULL;
    }
    s->host_id = host_id;
    s->n_vocab = n_vocab;
    s->n_embd = n_embd;
    s->n_ctx_seq = n_ctx_seq;
    sipp__backend be = {
        .state = s, .n_vocab = js_n_vocab, .n_embd = js_n_embd, .n_ctx_seq = js_n_ctx_seq,
        .forward = split_forward, .seq_remove = js_seq_remove, .seq_shift = js_seq_shift,
        .seq_copy = js_seq_copy, .state_save = js_state_save, .state_load = js_state_load,
    };
    if (sipp__engine_open_external(&p, &be, &s->engine, &last_error) != SIPP_OK) {
        free(s);
        return NULL;
    }
    return s;
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
