/*
 * test_seam.c — the compute seam (src/engine/backend.h): an engine over an external backend
 * answers token for token as the default llama.cpp backend does, at temperature 0.
 *
 * The external backend here is a pass-through: its forward hands the plan to a worker thread,
 * returns at once (the forward is pending), and the worker runs it on a llama.cpp backend of its
 * own (sipp__backend_llama_open, the context the engine would make) and commits the logits
 * with sipp__engine_commit; its KV operations go straight to that backend. Every case runs the
 * same requests on a default engine and on the pass-through one and compares the texts: several
 * concurrent runs, a cancelled run, a context key's warm prefix, a snapshot's restore, a context
 * shift, embeddings. The last case breaks the pass-through on purpose (a row dropped, a
 * position moved) and checks that the comparison sees it, so the other cases can fail.
 */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include "engine/engine_int.h"

#include <pthread.h>

#define BASE "Once upon a time there was a little girl named Lily. She loved to play outside"

/* ---- the pass-through external backend ----------------------------------------------------- */

typedef enum { BREAK_NONE, BREAK_DROP_ROW, BREAK_MOVE_POS, BREAK_TOKEN } break_mode;

typedef struct passthrough {
    sipp__backend inner; /* llama.cpp, driven from the worker and (KV ops) the engine thread */
    pthread_t worker;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool quit;
    const sipp__plan *job; /* the pending forward's plan, NULL when none */
    sipp__engine *engine;
    sipp__plan copy; /* what the worker runs: the plan, or a broken copy of it */
    break_mode brk;
    bool broke;
    unsigned forwards; /* forwards that went through the worker */
} passthrough;

/* The worker's copy of the plan, broken once when asked: the first prompt chunk loses a row
 * without logits, has the positions of two rows swapped, or one row's token replaced. */
static void copy_plan(passthrough *pt, const sipp__plan *p) {
    sipp__plan *c = &pt->copy;
    c->n_tokens = c->n_outputs = 0;
    c->embd = p->embd;
    bool drop = pt->brk == BREAK_DROP_ROW && !pt->broke && p->n_tokens > 2;
    for (int32_t i = 0; i < p->n_tokens; i++) {
        if (drop && i == 1 && !p->logits[i]) {
            pt->broke = true;
            continue;
        }
        int32_t k = c->n_tokens++;
        c->token[k] = p->token[i];
        c->pos[k] = p->pos[i];
        c->seq_id[k] = p->seq_id[i];
        c->logits[k] = p->logits[i];
        c->out_row[k] = p->logits[i] ? c->n_outputs++ : -1;
    }
    if (pt->brk == BREAK_MOVE_POS && !pt->broke && c->n_tokens > 3) {
        /* swap the positions of two prompt rows: still a valid batch, a wrong one */
        int32_t t = c->pos[1];
        c->pos[1] = c->pos[2];
        c->pos[2] = t;
        pt->broke = true;
    }
    if (pt->brk == BREAK_TOKEN && !pt->broke && c->n_tokens > 3) {
        c->token[1] = c->token[1] == 100 ? 101 : 100; /* a valid batch with a wrong row */
        pt->broke = true;
    }
}

static void *worker_main(void *arg) {
    passthrough *pt = arg;
    pthread_mutex_lock(&pt->mu);
    for (;;) {
        while (!pt->job && !pt->quit) pthread_cond_wait(&pt->cv, &pt->mu);
        if (pt->quit) break;
        const sipp__plan *p = pt->job;
        sipp__engine *e = pt->engine;
        pt->job = NULL;
        pthread_mutex_unlock(&pt->mu);
        copy_plan(pt, p);
        sipp__fwd_result res;
        assert_true(pt->inner.forward(pt->inner.state, NULL, &pt->copy, &res));
        pt->forwards++;
        sipp__engine_commit(e, res.rc, res.logits); /* the worker's last touch of this forward */
        pthread_mutex_lock(&pt->mu);
    }
    pthread_mutex_unlock(&pt->mu);
    return NULL;
}

static bool pt_forward(void *st, sipp__engine *e, const sipp__plan *plan, sipp__fwd_result *res) {
    (void)res;
    passthrough *pt = st;
    pthread_mutex_lock(&pt->mu);
    assert_null(pt->job);
    pt->job = plan;
    pt->engine = e;
    pthread_cond_signal(&pt->cv);
    pthread_mutex_unlock(&pt->mu);
    return false; /* pending: the worker commits */
}

static int32_t pt_n_vocab(void *st) {
    passthrough *pt = st;
    return pt->inner.n_vocab(pt->inner.state);
}
static int32_t pt_n_embd(void *st) {
    passthrough *pt = st;
    return pt->inner.n_embd(pt->inner.state);
}
static uint32_t pt_n_ctx_seq(void *st) {
    passthrough *pt = st;
    return pt->inner.n_ctx_seq(pt->inner.state);
}
static bool pt_seq_remove(void *st, int32_t seq, int32_t p0, int32_t p1) {
    passthrough *pt = st;
    return pt->inner.seq_remove(pt->inner.state, seq, p0, p1);
}
static void pt_seq_shift(void *st, int32_t seq, int32_t p0, int32_t p1, int32_t delta) {
    passthrough *pt = st;
    pt->inner.seq_shift(pt->inner.state, seq, p0, p1, delta);
}
static void pt_seq_copy(void *st, int32_t src, int32_t dst, int32_t p1) {
    passthrough *pt = st;
    pt->inner.seq_copy(pt->inner.state, src, dst, p1);
}
static bool pt_state_save(void *st, int32_t seq, uint8_t **out, size_t *len) {
    passthrough *pt = st;
    return pt->inner.state_save(pt->inner.state, seq, out, len);
}
static bool pt_state_load(void *st, int32_t seq, const uint8_t *data, size_t len) {
    passthrough *pt = st;
    return pt->inner.state_load(pt->inner.state, seq, data, len);
}
static int pt_embed(void *st, const sipp__plan *plan, int32_t seq, const float **out) {
    passthrough *pt = st;
    return pt->inner.embed(pt->inner.state, plan, seq, out);
}

static passthrough *pt_new(const sipp_local_params *lp, break_mode brk) {
    passthrough *pt = calloc(1, sizeof *pt);
    assert_non_null(pt);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp__backend_llama_open(lp, &pt->inner, &err) != SIPP_OK) fail_msg("%s", err.message);
    pt->brk = brk;
    int32_t cap = 4096;
    pt->copy.capacity = cap;
    pt->copy.token = calloc(cap, sizeof(int32_t));
    pt->copy.pos = calloc(cap, sizeof(int32_t));
    pt->copy.seq_id = calloc(cap, sizeof(int32_t));
    pt->copy.logits = calloc(cap, 1);
    pt->copy.out_row = calloc(cap, sizeof(int32_t));
    pthread_mutex_init(&pt->mu, NULL);
    pthread_cond_init(&pt->cv, NULL);
    assert_int_equal(pthread_create(&pt->worker, NULL, worker_main, pt), 0);
    return pt;
}

static sipp__backend pt_backend(passthrough *pt) {
    return (sipp__backend){
        .state = pt,
        .n_vocab = pt_n_vocab,
        .n_embd = pt_n_embd,
        .n_ctx_seq = pt_n_ctx_seq,
        .forward = pt_forward,
        .seq_remove = pt_seq_remove,
        .seq_shift = pt_seq_shift,
        .seq_copy = pt_seq_copy,
        .state_save = pt_state_save,
        .state_load = pt_state_load,
        .embed = pt_embed,
        .destroy = NULL, /* the test frees it after the engine */
    };
}

static void pt_free(passthrough *pt) {
    pthread_mutex_lock(&pt->mu);
    pt->quit = true;
    pthread_cond_signal(&pt->cv);
    pthread_mutex_unlock(&pt->mu);
    pthread_join(pt->worker, NULL);
    pt->inner.destroy(pt->inner.state);
    free(pt->copy.token);
    free(pt->copy.pos);
    free(pt->copy.seq_id);
    free(pt->copy.logits);
    free(pt->copy.out_row);
    pthread_mutex_destroy(&pt->mu);
    pthread_cond_destroy(&pt->cv);
    free(pt);
}

/* ---- two engines, one request at a time or several ----------------------------------------- */

typedef struct pair {
    sipp__engine *ref; /* the default backend */
    sipp__engine *ext; /* the pass-through external backend */
    passthrough *pt;
} pair;

static sipp_local_params params(const char *model, uint32_t n_parallel) {
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = model;
    lp.n_threads = 2;
    lp.n_parallel = n_parallel;
    return lp;
}

static pair pair_open(const sipp_local_params *lp, break_mode brk) {
    pair p = {0};
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp__engine_open(lp, &p.ref, &err) != SIPP_OK) fail_msg("%s", err.message);
    p.pt = pt_new(lp, brk);
    sipp__backend be = pt_backend(p.pt);
    if (sipp__engine_open_external(lp, &be, &p.ext, &err) != SIPP_OK) fail_msg("%s", err.message);
    return p;
}

static void pair_close(pair *p) {
    sipp__engine_close(p->ref);
    sipp__engine_close(p->ext);
    pt_free(p->pt);
}

static sipp_run *submit(sipp__engine *e, const char *prompt, const sipp_text_params *tp) {
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp__engine_submit_text(e, prompt, tp, &run, &err) != SIPP_OK)
        fail_msg("submit: %s", err.message);
    return run;
}

/* Waits for a run; returns a copy of its text (NULL when it failed) and its response fields. */
static char *finish(sipp_run *run, test_response *out) {
    const sipp_response *r = NULL;
    assert_int_equal(sipp_run_wait(run, &r, NULL), SIPP_OK);
    if (out)
        *out = (test_response){.status = r->status, .finish_reason = r->finish_reason,
                               .usage = *r->usage, .stats = *r->stats};
    char *text = r->status == SIPP_OK ? strdup(r->text) : NULL;
    sipp_run_free(run);
    return text;
}

static char *ask(sipp__engine *e, const char *prompt, const char *key, uint32_t max_tokens,
                 test_response *out) {
    sipp_text_params tp = greedy(max_tokens);
    tp.context_key = key;
    return finish(submit(e, prompt, &tp), out);
}

/* Asks both engines; fails unless both succeed with the same text. Returns the external's
 * response fields in *out. */
static void same_answer(pair *p, const char *prompt, const char *key, uint32_t max_tokens,
                        test_response *ref_out, test_response *out) {
    test_response rr, re;
    char *a = ask(p->ref, prompt, key, max_tokens, &rr);
    char *b = ask(p->ext, prompt, key, max_tokens, &re);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    assert_int_equal(rr.usage.output_tokens, re.usage.output_tokens);
    assert_int_equal(rr.finish_reason, re.finish_reason);
    free(a);
    free(b);
    if (ref_out) *ref_out = rr;
    if (out) *out = re;
}

/* ---- cases -------------------------------------------------------------------------------- */

static const char *const prompts[] = {BASE " with a ball", "The cat sat on the", "Tom had a red",
                                      "One day, a big dog"};

static void concurrent_runs_match_the_default_backend(void **state) {
    (void)state;
    sipp_local_params lp = params(STORY_MODEL, 4);
    pair p = pair_open(&lp, BREAK_NONE);
    sipp__engine *engines[2] = {p.ref, p.ext};
    char *texts[2][4];
    for (int k = 0; k < 2; k++) {
        sipp_text_params tp = greedy(32);
        sipp_run *runs[4];
        for (int i = 0; i < 4; i++) runs[i] = submit(engines[k], prompts[i], &tp);
        for (int i = 0; i < 4; i++) {
            texts[k][i] = finish(runs[i], NULL);
            assert_non_null(texts[k][i]);
        }
    }
    for (int i = 0; i < 4; i++) {
        assert_true(strlen(texts[0][i]) > 0);
        assert_string_equal(texts[0][i], texts[1][i]);
        free(texts[0][i]);
        free(texts[1][i]);
    }
    assert_true(p.pt->forwards > 0); /* the external path ran, asynchronously */
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp__engine_get_stats(p.ext, &es);
    assert_int_equal(es.completed, 4);
    assert_true(es.batch_tokens > es.ticks); /* some ticks carried several rows */
    pair_close(&p);
}

static void cancelled_run_leaves_the_seam_clean(void **state) {
    (void)state;
    sipp_local_params lp = params(STORY_MODEL, 2);
    pair p = pair_open(&lp, BREAK_NONE);
    sipp_text_params tp = greedy(4000);
    tp.ignore_eos = true;
    sipp_run *run = submit(p.ext, BASE, &tp);
    sipp_token_batch tb;
    sipp_token_batch_init(&tb, sizeof tb);
    assert_int_equal(sipp_run_next(run, 10000, &tb, NULL), SIPP_OK); /* it is generating */
    sipp_run_cancel(run);
    test_response r;
    free(finish(run, &r));
    assert_int_equal(r.status, SIPP_OK);
    assert_int_equal(r.finish_reason, SIPP_FINISH_CANCELLED);
    /* the sequences answer as the default backend's afterwards */
    for (int i = 0; i < 2; i++) same_answer(&p, prompts[i], NULL, 24, NULL, NULL);
    pair_close(&p);
}

static void warm_prefix_and_snapshot_restore_match(void **state) {
    (void)state;
    /* two sequences, three keys: A is evicted to a snapshot and restored */
    sipp_local_params lp = params(STORY_MODEL, 2);
    pair p = pair_open(&lp, BREAK_NONE);
    test_response rr, re;
    same_answer(&p, BASE " and the sun", "doc", 16, NULL, &re);
    same_answer(&p, BASE " and the sun. Then she went home to see her mom", "doc", 16, &rr, &re);
    assert_int_equal(re.stats.cache_source, SIPP_CACHE_LIVE);
    assert_int_equal(re.stats.cached_tokens, rr.stats.cached_tokens);
    assert_true(re.stats.cached_tokens > 0);

    const char *kp[] = {BASE " with a ball", BASE " with a dog", BASE " with a cat"};
    const char *keys[] = {"A", "B", "C"};
    for (int i = 0; i < 3; i++) same_answer(&p, kp[i], keys[i], 12, NULL, NULL);
    char follow[256];
    snprintf(follow, sizeof follow, "%s. She was happy", kp[0]);
    same_answer(&p, follow, "A", 16, &rr, &re);
    assert_int_equal(re.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    assert_int_equal(rr.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    assert_int_equal(re.stats.cached_tokens, rr.stats.cached_tokens);
    pair_close(&p);
}

static void context_shift_matches(void **state) {
    (void)state;
    /* the chat model's context holds 256 tokens per sequence: 400 tokens shift it */
    sipp_local_params lp = params(CHAT_MODEL, 1);
    lp.context_shift = true;
    lp.n_keep = 4;
    pair p = pair_open(&lp, BREAK_NONE);
    sipp_text_params tp = greedy(400);
    tp.ignore_eos = true;
    test_response rr, re;
    char *a = finish(submit(p.ref, "User: tell me a long story\nBot:", &tp), &rr);
    char *b = finish(submit(p.ext, "User: tell me a long story\nBot:", &tp), &re);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(re.usage.output_tokens, 400);
    assert_string_equal(a, b);
    free(a);
    free(b);
    pair_close(&p);
}

static void embeddings_match(void **state) {
    (void)state;
    sipp_local_params lp = params(STORY_MODEL, 1);
    pair p = pair_open(&lp, BREAK_NONE);
    sipp_embed_params ep;
    sipp_embed_params_init(&ep, sizeof ep);
    const sipp_response *r[2];
    sipp_run *runs[2];
    sipp__engine *engines[2] = {p.ref, p.ext};
    for (int k = 0; k < 2; k++) {
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        if (sipp__engine_submit_embed(engines[k], BASE, &ep, &runs[k], &err) != SIPP_OK)
            fail_msg("engine %d: %s", k, err.message);
        assert_int_equal(sipp_run_wait(runs[k], &r[k], NULL), SIPP_OK);
        assert_int_equal(r[k]->status, SIPP_OK);
    }
    assert_int_equal(r[0]->n_embd, r[1]->n_embd);
    assert_memory_equal(r[0]->embedding, r[1]->embedding, r[0]->n_embd * sizeof(float));
    for (int k = 0; k < 2; k++) sipp_run_free(runs[k]);
    pair_close(&p);
}

/* The comparison above catches a broken seam: with a prompt row dropped or two positions
 * swapped on the way to the backend the run fails (llama.cpp checks a sequence's positions);
 * with a row's token wrong the batch is valid and the answer differs from the default's. */
static void a_broken_seam_is_caught(void **state) {
    (void)state;
    break_mode modes[] = {BREAK_DROP_ROW, BREAK_MOVE_POS, BREAK_TOKEN};
    for (int m = 0; m < 3; m++) {
        sipp_local_params lp = params(STORY_MODEL, 1);
        pair p = pair_open(&lp, modes[m]);
        char *a = ask(p.ref, BASE, NULL, 32, NULL);
        char *b = ask(p.ext, BASE, NULL, 32, NULL);
        assert_non_null(a);
        assert_true(p.pt->broke);
        if (modes[m] == BREAK_TOKEN) assert_non_null(b);
        assert_true(!b || strcmp(a, b) != 0);
        free(a);
        free(b);
        pair_close(&p);
    }
}

/* An external backend must be the model's: a vocabulary of another size is refused. */
static void a_mismatched_backend_is_refused(void **state) {
    (void)state;
    sipp_local_params lp = params(STORY_MODEL, 1);
    passthrough *pt = pt_new(&lp, BREAK_NONE);
    sipp__backend be = pt_backend(pt);
    sipp_local_params other = params(CHAT_MODEL, 1);
    sipp__engine *e = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp__engine_open_external(&other, &be, &e, &err), SIPP_INVALID_ARGUMENT);
    assert_null(e);
    assert_non_null(strstr(err.message, "logits per row"));
    be.forward = NULL;
    assert_int_equal(sipp__engine_open_external(&lp, &be, &e, &err), SIPP_INVALID_ARGUMENT);
    pt_free(pt);
}

/* Multimodal (issue 17): mtmd encodes with llama.cpp's model and the embeddings go through the
 * backend's forward, so a projector needs the llama.cpp backend: an external one refuses it with
 * one clear line before reading the file (not NOT_FOUND, not a crash on the absent context). */
static void an_external_backend_takes_no_projector(void **state) {
    (void)state;
    sipp_local_params lp = params(STORY_MODEL, 1);
    passthrough *pt = pt_new(&lp, BREAK_NONE);
    sipp__backend be = pt_backend(pt);
    lp.mmproj = "/nonexistent/mmproj.gguf";
    sipp__engine *e = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp__engine_open_external(&lp, &be, &e, &err), SIPP_UNSUPPORTED);
    assert_null(e);
    assert_non_null(strstr(err.message, "external backend takes no projector"));
    pt_free(pt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(concurrent_runs_match_the_default_backend),
        cmocka_unit_test(cancelled_run_leaves_the_seam_clean),
        cmocka_unit_test(warm_prefix_and_snapshot_restore_match),
        cmocka_unit_test(context_shift_matches),
        cmocka_unit_test(embeddings_match),
        cmocka_unit_test(a_broken_seam_is_caught),
        cmocka_unit_test(a_mismatched_backend_is_refused),
        cmocka_unit_test(an_external_backend_takes_no_projector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
