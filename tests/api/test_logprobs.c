/*
 * test_logprobs.c — log-probabilities of output tokens on a local endpoint (issue 18): the
 * response's entries against an independent computation with llama.cpp itself (the same model
 * decoded greedily here, softmax of the raw logits over the whole vocabulary), their delivery
 * per batch (callback and pull), and the bounds of top_logprobs.
 */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include "llama.h"

#include <math.h>

#define PROMPT "Once upon a time"
#define N_GEN 12
#define N_TOP 5

typedef struct fixture {
    sipp_client *client;
    sipp_endpoint *story;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(sipp_client_new(NULL, &f->client, NULL), SIPP_OK);
    f->story = add_model(f->client, "story", STORY_MODEL, 2);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    sipp_client_free(f->client);
    free(f);
    return 0;
}

static sipp_text_params lp_params(uint32_t n_top) {
    sipp_text_params p = greedy(N_GEN);
    p.logprobs = true;
    p.top_logprobs = n_top;
    return p;
}

/* The structural properties every entry has: logprob <= 0, alternatives sorted, at
 * temperature 0 the chosen token is the first alternative, exp over the top N at most 1. */
static void check_entry(const sipp_token_logprob *e, uint32_t n_top) {
    assert_true(e->logprob <= 0.0f);
    assert_int_equal(e->n_top, n_top);
    assert_int_equal(strlen(e->token), e->token_len);
    double mass = 0;
    for (uint32_t k = 0; k < e->n_top; k++) {
        assert_true(e->top[k].logprob <= 0.0f);
        if (k > 0) assert_true(e->top[k].logprob <= e->top[k - 1].logprob);
        mass += exp((double)e->top[k].logprob);
    }
    assert_true(mass <= 1.0 + 1e-4);
    if (n_top > 0) {
        assert_int_equal(e->top[0].token_len, e->token_len);
        assert_memory_equal(e->top[0].token, e->token, e->token_len);
        assert_float_equal(e->top[0].logprob, e->logprob, 1e-6);
    }
}

/* The response's entries match llama.cpp's own numbers: the same model decoded greedily in this
 * process, log-softmax of the raw logits over the full vocabulary (whose exp sums to 1). */
static void logprobs_match_an_independent_llama_computation(void **state) {
    fixture *f = *state;
    sipp_text_params p = lp_params(N_TOP);
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_query(f->story, PROMPT, &p, &run, &err), SIPP_OK);
    const sipp_response *r = NULL;
    assert_int_equal(sipp_run_wait(run, &r, NULL), SIPP_OK);
    assert_int_equal(r->status, SIPP_OK);
    assert_int_equal(r->finish_reason, SIPP_FINISH_LENGTH);
    assert_int_equal(r->n_logprobs, N_GEN);
    assert_non_null(r->logprobs);
    /* the entries spell the text */
    char joined[4096] = "";
    for (size_t i = 0; i < r->n_logprobs; i++) {
        check_entry(&r->logprobs[i], N_TOP);
        strncat(joined, r->logprobs[i].token, sizeof joined - strlen(joined) - 1);
    }
    assert_string_equal(joined, r->text);

    /* independent: llama.cpp directly */
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *m = llama_model_load_from_file(STORY_MODEL, mp);
    assert_non_null(m);
    const struct llama_vocab *v = llama_model_get_vocab(m);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 256;
    cp.n_threads = 2;
    struct llama_context *ctx = llama_init_from_model(m, cp);
    assert_non_null(ctx);
    llama_token toks[64];
    int32_t n = llama_tokenize(v, PROMPT, (int32_t)strlen(PROMPT), toks, 64, true, true);
    assert_true(n > 0);
    assert_int_equal(llama_decode(ctx, llama_batch_get_one(toks, n)), 0);
    int32_t n_vocab = llama_vocab_n_tokens(v);
    for (size_t i = 0; i < r->n_logprobs; i++) {
        const float *lg = llama_get_logits_ith(ctx, -1);
        double max = -INFINITY;
        llama_token best = 0;
        for (int32_t t = 0; t < n_vocab; t++)
            if (lg[t] > max) max = lg[t], best = t;
        double sum = 0;
        for (int32_t t = 0; t < n_vocab; t++) sum += exp(lg[t] - max);
        double lse = max + log(sum), mass = 0;
        for (int32_t t = 0; t < n_vocab; t++) mass += exp(lg[t] - lse);
        assert_float_equal(mass, 1.0, 1e-6);
        const sipp_token_logprob *e = &r->logprobs[i];
        char piece[256];
        int32_t np = llama_token_to_piece(v, best, piece, sizeof piece, 0, false);
        assert_int_equal(np, (int32_t)e->token_len);
        assert_memory_equal(piece, e->token, e->token_len);
        assert_float_equal(e->logprob, lg[best] - lse, 1e-3);
        /* each alternative: its logprob is that of a token spelling its text, and no token
         * outside the top N beats the last one */
        for (uint32_t k = 0; k < e->n_top; k++) {
            bool found = false;
            for (int32_t t = 0; t < n_vocab && !found; t++) {
                np = llama_token_to_piece(v, t, piece, sizeof piece, 0, false);
                found = np == (int32_t)e->top[k].token_len &&
                        memcmp(piece, e->top[k].token, e->top[k].token_len) == 0 &&
                        fabs((lg[t] - lse) - e->top[k].logprob) < 1e-3;
            }
            assert_true(found);
        }
        int above = 0;
        for (int32_t t = 0; t < n_vocab; t++)
            if (lg[t] - lse > e->top[N_TOP - 1].logprob + 1e-3) above++;
        assert_true(above < N_TOP);
        llama_token next = best;
        assert_int_equal(llama_decode(ctx, llama_batch_get_one(&next, 1)), 0);
    }
    llama_free(ctx);
    llama_model_free(m);
    sipp_run_free(run);
}

typedef struct seen {
    size_t n_entries;
    size_t n_tokens;
    char text[4096];
    char from_entries[4096];
    sipp_run *run;
} seen;

static void on_tokens(const char *text, size_t len, uint32_t n_tokens, void *ud) {
    seen *s = ud;
    const sipp_token_logprob *e;
    size_t n;
    sipp_run_batch_logprobs(s->run, &e, &n);
    assert_int_equal(n, n_tokens); /* one entry per token the batch covers */
    s->n_entries += n;
    s->n_tokens += n_tokens;
    strncat(s->text, text, len);
    for (size_t i = 0; i < n; i++) {
        check_entry(&e[i], 2);
        strncat(s->from_entries, e[i].token, sizeof s->from_entries - strlen(s->from_entries) - 1);
    }
}

/* Streaming: each callback's batch has the entries of its tokens; pulled batches too. */
static void logprobs_stream_with_their_batches(void **state) {
    fixture *f = *state;
    sipp_text_params p = lp_params(2);
    seen s = {0};
    p.on_tokens = on_tokens;
    p.user_data = &s;
    assert_int_equal(sipp_query(f->story, PROMPT, &p, &s.run, NULL), SIPP_OK);
    const sipp_response *r;
    assert_int_equal(sipp_run_wait(s.run, &r, NULL), SIPP_OK);
    assert_int_equal(s.n_entries, N_GEN);
    assert_string_equal(s.from_entries, s.text);
    assert_string_equal(s.text, r->text);
    assert_int_equal(r->n_logprobs, N_GEN);
    sipp_run_free(s.run);

    /* pull */
    p.on_tokens = NULL;
    sipp_run *run;
    assert_int_equal(sipp_query(f->story, PROMPT, &p, &run, NULL), SIPP_OK);
    size_t total = 0;
    for (;;) {
        sipp_token_batch b;
        sipp_token_batch_init(&b, sizeof b);
        assert_int_equal(sipp_run_next(run, -1, &b, NULL), SIPP_OK);
        assert_int_equal(b.n_logprobs, b.n_tokens);
        size_t spelled = 0;
        for (size_t i = 0; i < b.n_logprobs; i++) spelled += b.logprobs[i].token_len;
        assert_int_equal(spelled, b.len);
        total += b.n_logprobs;
        if (b.done) break;
    }
    assert_int_equal(total, N_GEN);
    sipp_run_free(run);
}

/* A chat goes through llama.cpp's chat parser (issue 18's tools and reasoning): its batches
 * still carry their tokens' count and entries, and the entries spell the answer. */
static void logprobs_of_a_chat(void **state) {
    fixture *f = *state;
    sipp_endpoint *chat = add_model(f->client, "chat", CHAT_MODEL, 1);
    sipp_message m = {"user", "Do you like to play outside?"};
    sipp_text_params p = lp_params(2);
    sipp_run *run;
    assert_int_equal(sipp_chat(chat, &m, 1, &p, &run, NULL), SIPP_OK);
    size_t total = 0, batches = 0;
    for (;;) {
        sipp_token_batch b;
        sipp_token_batch_init(&b, sizeof b);
        assert_int_equal(sipp_run_next(run, -1, &b, NULL), SIPP_OK);
        if (b.len > 0) {
            batches++;
            assert_true(b.n_tokens >= 1);
        }
        assert_int_equal(b.n_logprobs, b.n_tokens);
        total += b.n_logprobs;
        if (b.done) break;
    }
    const sipp_response *r;
    assert_int_equal(sipp_run_wait(run, &r, NULL), SIPP_OK);
    assert_true(batches >= 1);
    assert_int_equal(total, r->n_logprobs);
    assert_int_equal(r->n_logprobs, r->usage->output_tokens -
                                        (r->finish_reason == SIPP_FINISH_STOP ? 1 : 0));
    sipp_run_free(run);
    assert_int_equal(sipp_client_remove(f->client, "chat", NULL), SIPP_OK);
}

/* Without logprobs there are none; top_logprobs 0 gives entries without alternatives. */
static void logprobs_off_and_no_alternatives(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(4);
    sipp_run *run;
    const sipp_response *r;
    assert_int_equal(sipp_query(f->story, PROMPT, &p, &run, NULL), SIPP_OK);
    assert_int_equal(sipp_run_wait(run, &r, NULL), SIPP_OK);
    assert_null(r->logprobs);
    assert_int_equal(r->n_logprobs, 0);
    sipp_run_free(run);
    p = lp_params(0);
    p.temperature = 0.9f; /* sampled: the entries do not depend on the sampling settings */
    p.seed = 7;
    assert_int_equal(sipp_query(f->story, PROMPT, &p, &run, NULL), SIPP_OK);
    assert_int_equal(sipp_run_wait(run, &r, NULL), SIPP_OK);
    assert_int_equal(r->n_logprobs, r->usage->output_tokens -
                                        (r->finish_reason == SIPP_FINISH_STOP ? 1 : 0));
    for (size_t i = 0; i < r->n_logprobs; i++) check_entry(&r->logprobs[i], 0);
    sipp_run_free(run);
}

static void top_logprobs_bounds(void **state) {
    fixture *f = *state;
    sipp_text_params p = lp_params(SIPP_MAX_TOP_LOGPROBS + 1);
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_query(f->story, PROMPT, &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_null(run);
    assert_non_null(strstr(err.message, "top_logprobs"));
    p = lp_params(3);
    p.logprobs = false;
    assert_int_equal(sipp_query(f->story, PROMPT, &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "logprobs"));
    p = lp_params(SIPP_MAX_TOP_LOGPROBS);
    const sipp_response *r;
    assert_int_equal(sipp_query(f->story, PROMPT, &p, &run, &err), SIPP_OK);
    assert_int_equal(sipp_run_wait(run, &r, NULL), SIPP_OK);
    assert_int_equal(r->n_logprobs, N_GEN);
    for (size_t i = 0; i < r->n_logprobs; i++) check_entry(&r->logprobs[i], SIPP_MAX_TOP_LOGPROBS);
    sipp_run_free(run);
}

/* Anthropic has no log-probabilities: asking is UNSUPPORTED, at once (the endpoint points at a
 * closed port: nothing is sent), never silently none. */
static void anthropic_refuses_logprobs(void **state) {
    fixture *f = *state;
    sipp_provider_params pp;
    sipp_provider_params_init(&pp, sizeof pp);
    pp.kind = SIPP_PROVIDER_ANTHROPIC;
    pp.model = "m";
    pp.base_url = "http://127.0.0.1:1/v1";
    pp.api_key = "k";
    sipp_endpoint *ant;
    assert_int_equal(sipp_client_add_provider(f->client, "ant", &pp, &ant, NULL), SIPP_OK);
    sipp_text_params p = lp_params(0);
    sipp_message msg = {"user", "hi"};
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_chat(ant, &msg, 1, &p, &run, &err), SIPP_UNSUPPORTED);
    assert_null(run);
    assert_non_null(strstr(err.message, "log-probabilities"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(logprobs_match_an_independent_llama_computation),
        cmocka_unit_test(logprobs_stream_with_their_batches),
        cmocka_unit_test(logprobs_of_a_chat),
        cmocka_unit_test(logprobs_off_and_no_alternatives),
        cmocka_unit_test(top_logprobs_bounds),
        cmocka_unit_test(anthropic_refuses_logprobs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
