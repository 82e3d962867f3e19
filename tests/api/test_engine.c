/*
 * test_engine.c — the scheduler under concurrency: batched output equals sequential output,
 * cancellation in every phase frees the sequence, admission limits answer `busy`, deadlines
 * end runs, a stalled consumer pauses only its own sequence, engine counters add up, and
 * 1,000 requests with cancellations leave nothing behind (run under ASan and TSan); removing an
 * endpoint ends runs other threads wait on; long generations end at their context; more
 * threads than CPUs; hundreds of sequential prefix-heavy chats.
 */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"
#include "common/test_control.h"

#include <pthread.h>
#include <time.h>

/* A grammar that never completes: the model can never end the run by itself. */
#define ENDLESS "root ::= [a-z ] root"

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static sipp_client *new_client(void) {
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    return c;
}

static sipp_endpoint *add_with(sipp_client *c, const char *path, sipp_local_params lp) {
    lp.model_path = path;
    lp.n_threads = 2;
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_add_local(c, "m", &lp, &ep, &err) != SIPP_OK) fail_msg("%s", err.message);
    return ep;
}

/* Options of a run that only ends when cancelled, past its deadline, or at max_tokens. */
static sipp_text_params endless_params(uint32_t max_tokens) {
    sipp_text_params p = greedy(max_tokens);
    p.grammar = ENDLESS;
    return p;
}

/* An endpoint of the story model with one sequence (and the given tick budget, 0 = default). */
static sipp_endpoint *one_sequence(sipp_client *c, uint32_t tick_budget) {
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 1;
    lp.tick_budget = tick_budget;
    return add_with(c, STORY_MODEL, lp);
}

/* The sequence a cancelled run held is free: a following request runs to its token limit. */
static void assert_next_request_completes(sipp_endpoint *ep) {
    sipp_text_params p = greedy(4);
    test_response r;
    free(query_text(ep, "Once upon a time", &p, &r));
    assert_int_equal(r.finish_reason, SIPP_FINISH_LENGTH);
    assert_int_equal(r.usage.output_tokens, 4);
}

static const sipp_response *wait_run(sipp_run *run) {
    const sipp_response *r = NULL;
    assert_int_equal(sipp_run_wait(run, &r, NULL), SIPP_OK);
    return r;
}

/* ---- batched equals sequential ----------------------------------------------------------- */

static const char *const prompts[] = {
    "Once upon a time",
    "The little dog ran to the park and",
    "Tom and Sue were friends. One day, Tom said",
    "There was a big red ball in the garden. The girl",
};

static void batched_equals_sequential(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 4;
    lp.prefill_chunk = 4; /* prompts span several ticks, so arrivals interleave with decoding */
    sipp_endpoint *ep = add_with(c, STORY_MODEL, lp);
    sipp_text_params p = greedy(48);

    char *alone[4];
    for (int i = 0; i < 4; i++) alone[i] = query_text(ep, prompts[i], &p, NULL);

    for (int round = 0; round < 3; round++) {
        sipp_run *runs[4];
        for (int i = 0; i < 4; i++) {
            assert_int_equal(sipp_query(ep, prompts[i], &p, &runs[i], NULL), SIPP_OK);
            sleep_ms(round); /* staggered arrivals: 0, 1, 2 ms apart */
        }
        for (int i = 0; i < 4; i++) {
            const sipp_response *r = wait_run(runs[i]);
            assert_int_equal(r->status, SIPP_OK);
            if (strcmp(r->text, alone[i]) != 0)
                fail_msg("round %d prompt %d: batched '%s' != alone '%s'", round, i, r->text,
                         alone[i]);
            sipp_run_free(runs[i]);
        }
    }
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    assert_int_equal(sipp_endpoint_get_stats(ep, &es, NULL), SIPP_OK);
    assert_int_equal(es.completed, 16);
    assert_int_equal(es.failed, 0);
    /* concurrent rounds put more than one token per tick into the batch */
    assert_true(es.batch_tokens > es.ticks);
    for (int i = 0; i < 4; i++) free(alone[i]);
    sipp_client_free(c);
}

/* ---- cancellation in every phase --------------------------------------------------------- */

static void cancel_while_queued(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_endpoint *ep = one_sequence(c, 0);
    sipp_text_params endless = endless_params(100000);
    sipp_run *busy_run, *queued;
    assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &busy_run, NULL), SIPP_OK);
    sipp_text_params p = greedy(8);
    assert_int_equal(sipp_query(ep, "Once upon a time", &p, &queued, NULL), SIPP_OK);
    sleep_ms(20);
    assert_false(sipp_run_is_done(queued)); /* waiting behind the endless run */
    sipp_run_cancel(queued);
    const sipp_response *r = wait_run(queued);
    assert_int_equal(r->finish_reason, SIPP_FINISH_CANCELLED);
    assert_int_equal(r->usage->output_tokens, 0);
    assert_false(sipp_run_is_done(busy_run)); /* the running one is undisturbed */
    sipp_run_free(queued);
    sipp_run_cancel(busy_run);
    assert_int_equal(wait_run(busy_run)->finish_reason, SIPP_FINISH_CANCELLED);
    sipp_run_free(busy_run);
    assert_next_request_completes(ep);
    sipp_client_free(c);
}

/* Submits a ~300-token prompt prefilled one token per tick, waits until its prefill has begun
 * (the engine's prompt-token counter moves), cancels it and returns its response. */
static const sipp_response *cancel_a_prefill(sipp_endpoint *ep, sipp_run **run) {
    char prompt[4000] = "";
    for (int i = 0; i < 150; i++) strcat(prompt, "the dog ");
    sipp_engine_stats before, now;
    sipp_engine_stats_init(&before, sizeof before);
    sipp_engine_stats_init(&now, sizeof now);
    sipp_endpoint_get_stats(ep, &before, NULL);
    sipp_text_params p = greedy(8);
    assert_int_equal(sipp_query(ep, prompt, &p, run, NULL), SIPP_OK);
    do {
        nanosleep(&(struct timespec){0, 100 * 1000}, NULL);
        sipp_endpoint_get_stats(ep, &now, NULL);
    } while (now.prompt_tokens == before.prompt_tokens);
    sipp_run_cancel(*run);
    return wait_run(*run);
}

static void cancel_during_prefill(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_endpoint *ep = one_sequence(c, 1); /* one prompt token per tick: a long prefill */
    /* The cancel lands within one tick of being asked; the ~300-tick prefill only outlasts the
     * gap between seeing it start and cancelling unless this thread is descheduled for that
     * long, so a busy machine gets three tries. */
    bool stopped_in_prefill = false;
    for (int attempt = 0; attempt < 3 && !stopped_in_prefill; attempt++) {
        sipp_run *run;
        const sipp_response *r = cancel_a_prefill(ep, &run);
        assert_int_equal(r->finish_reason, SIPP_FINISH_CANCELLED);
        assert_int_equal(r->usage->output_tokens, 0); /* it never reached decoding */
        stopped_in_prefill = r->stats->prefill_tokens < r->usage->input_tokens;
        sipp_run_free(run);
        assert_next_request_completes(ep);
    }
    assert_true(stopped_in_prefill);
    sipp_client_free(c);
}

static void cancel_during_decode(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_endpoint *ep = one_sequence(c, 0);
    sipp_text_params endless = endless_params(100000);
    sipp_run *run;
    assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &run, NULL), SIPP_OK);
    sipp_token_batch b = {.struct_size = sizeof b};
    assert_int_equal(sipp_run_next(run, -1, &b, NULL), SIPP_OK); /* it is decoding */
    sipp_run_cancel(run);
    const sipp_response *r = wait_run(run);
    assert_int_equal(r->finish_reason, SIPP_FINISH_CANCELLED);
    assert_true(r->usage->output_tokens > 0);
    sipp_run_free(run);
    assert_next_request_completes(ep);
    sipp_client_free(c);
}

static void closing_the_client_ends_every_run(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 2;
    sipp_endpoint *ep = add_with(c, STORY_MODEL, lp);
    sipp_text_params endless = endless_params(100000);
    sipp_run *runs[5];
    for (int i = 0; i < 5; i++)
        assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &runs[i], NULL), SIPP_OK);
    sleep_ms(10);
    sipp_client_free(c);
    for (int i = 0; i < 5; i++) {
        assert_true(sipp_run_is_done(runs[i]));
        assert_int_equal(wait_run(runs[i])->finish_reason, SIPP_FINISH_CANCELLED);
        sipp_run_free(runs[i]);
    }
}

/* ---- admission, deadlines, slow consumers ------------------------------------------------ */

static void overload_answers_busy_at_once(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 1;
    lp.max_queued = 1;
    sipp_endpoint *ep = add_with(c, STORY_MODEL, lp);
    sipp_text_params endless = endless_params(100000);
    sipp_run *running, *queued, *third = NULL;
    assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &running, NULL), SIPP_OK);
    sipp_token_batch b = {.struct_size = sizeof b};
    assert_int_equal(sipp_run_next(running, -1, &b, NULL), SIPP_OK); /* admitted */
    assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &queued, NULL), SIPP_OK);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &third, &err), SIPP_BUSY);
    assert_null(third);
    assert_non_null(strstr(err.message, "busy"));
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.rejected_busy, 1);
    assert_int_equal(es.running, 1);
    assert_int_equal(es.queued, 1);
    sipp_run_free(queued);
    sipp_run_free(running);
    sipp_client_free(c);
}

static void deadline_ends_running_and_queued_runs(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 1;
    sipp_endpoint *ep = add_with(c, STORY_MODEL, lp);
    sipp_text_params endless = endless_params(100000);
    endless.timeout_ms = 100;
    sipp_run *running, *queued;
    assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &running, NULL), SIPP_OK);
    sipp_text_params q = greedy(8);
    q.timeout_ms = 50;
    assert_int_equal(sipp_query(ep, "Once upon a time", &q, &queued, NULL), SIPP_OK);
    const sipp_response *r = wait_run(queued);
    assert_int_equal(r->status, SIPP_DEADLINE_EXCEEDED);
    assert_non_null(strstr(r->error_message, "deadline of 50 ms"));
    r = wait_run(running);
    assert_int_equal(r->status, SIPP_DEADLINE_EXCEEDED);
    assert_true(r->text_len > 0); /* the text so far is kept */
    assert_true(r->stats->total_ms >= 100);
    sipp_run_free(queued);
    sipp_run_free(running);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.failed, 2);
    sipp_client_free(c);
}

static void stalled_consumer_pauses_only_its_run(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 2;
    lp.stream_buffer_bytes = 64;
    sipp_endpoint *ep = add_with(c, STORY_MODEL, lp);
    sipp_text_params endless = endless_params(2000);
    sipp_run *stalled, *other;
    assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &stalled, NULL), SIPP_OK);
    sipp_text_params p = greedy(200);
    assert_int_equal(sipp_query(ep, "Once upon a time", &p, &other, NULL), SIPP_OK);
    /* nobody reads `stalled`: `other` still completes */
    const sipp_response *r = wait_run(other);
    assert_int_equal(r->status, SIPP_OK);
    assert_true(r->usage->output_tokens > 0);
    sleep_ms(20);
    assert_false(sipp_run_is_done(stalled));
    sipp_token_batch b = {.struct_size = sizeof b};
    assert_int_equal(sipp_run_next(stalled, 0, &b, NULL), SIPP_OK);
    assert_true(b.len >= 64 && b.len < 64 + 64); /* paused at the cap (plus one piece) */
    /* reading resumes it; it then runs to its token limit */
    size_t total = b.len;
    do {
        assert_int_equal(sipp_run_next(stalled, -1, &b, NULL), SIPP_OK);
        total += b.len;
    } while (!b.done);
    r = wait_run(stalled);
    assert_int_equal(r->finish_reason, SIPP_FINISH_LENGTH);
    assert_int_equal(r->usage->output_tokens, 2000);
    assert_int_equal(total, r->text_len);
    sipp_run_free(stalled);
    sipp_run_free(other);
    sipp_client_free(c);
}

static void stats_carry_inter_token_latency(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    sipp_endpoint *ep = add_with(c, STORY_MODEL, lp);
    sipp_text_params p = greedy(32);
    test_response r;
    free(query_text(ep, "Once upon a time", &p, &r));
    assert_int_equal(r.usage.output_tokens, 32);
    assert_true(r.stats.itl_avg_ms > 0);
    assert_true(r.stats.itl_p99_ms >= r.stats.itl_avg_ms * 0.5);
    assert_true(r.stats.prefill_tokens == r.usage.input_tokens);
    assert_true(r.stats.ttft_ms <= r.stats.total_ms);
    sipp_client_free(c);
}

/* ---- 1,000 requests with cancellations, from several threads ----------------------------- */

typedef struct worker {
    sipp_endpoint *ep;
    int id;
    int cancelled, finished, busy;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    for (int i = 0; i < 250; i++) {
        sipp_text_params p = greedy(6);
        p.temperature = (i % 2) ? 0.7f : 0.0f;
        p.seed = (uint32_t)(w->id * 1000 + i);
        sipp_run *run = NULL;
        sipp_status st = sipp_query(w->ep, prompts[i % 4], &p, &run, NULL);
        if (st == SIPP_BUSY) {
            w->busy++;
            continue;
        }
        if (st != SIPP_OK) return (void *)1;
        if (i % 3 == 0) sipp_run_cancel(run);
        const sipp_response *r = NULL;
        sipp_run_wait(run, &r, NULL);
        if (r->status != SIPP_OK) return (void *)1;
        if (r->finish_reason == SIPP_FINISH_CANCELLED)
            w->cancelled++;
        else
            w->finished++;
        sipp_run_free(run);
    }
    return NULL;
}

static void thousand_requests_with_cancellations(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 4;
    sipp_endpoint *ep = add_with(c, STORY_MODEL, lp);
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){ep, i, 0, 0, 0};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    int cancelled = 0, finished = 0;
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
        cancelled += w[i].cancelled;
        finished += w[i].finished;
        assert_int_equal(w[i].busy, 0);
    }
    assert_int_equal(cancelled + finished, 1000);
    assert_true(cancelled > 0);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.completed, 1000);
    assert_int_equal(es.cancelled, (uint64_t)cancelled);
    assert_int_equal(es.running, 0);
    sipp_client_free(c);
}

/* ---- lifecycle: removal while runs wait, KV exhaustion, threads, long sequential load ----- */

typedef struct waiter {
    sipp_run *run;
    bool pull; /* pull with sipp_run_next instead of waiting */
    sipp_finish_reason reason;
    sipp_status status;
} waiter;

static void *waiter_main(void *arg) {
    waiter *w = arg;
    if (w->pull) {
        for (;;) {
            sipp_token_batch b = {.struct_size = sizeof b};
            if (sipp_run_next(w->run, -1, &b, NULL) != SIPP_OK || b.done) break;
        }
    }
    const sipp_response *r = NULL;
    sipp_run_wait(w->run, &r, NULL);
    w->reason = r->finish_reason;
    w->status = r->status;
    return NULL;
}

/* E4: removing an endpoint while runs are running, queued and being read on other threads
 * ends every run (cancelled) and wakes every reader; the id is gone; re-adding it serves. */
static void removing_an_endpoint_ends_its_runs(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 2;
    sipp_endpoint *ep = add_with(c, STORY_MODEL, lp);
    sipp_text_params endless = endless_params(100000);
    enum { N = 5 };
    waiter w[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        w[i] = (waiter){.pull = i % 2 == 1};
        assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &w[i].run, NULL), SIPP_OK);
        pthread_create(&th[i], NULL, waiter_main, &w[i]);
    }
    sleep_ms(20); /* two run, three wait in the queue */
    assert_int_equal(sipp_client_remove(c, "m", NULL), SIPP_OK);
    assert_null(sipp_client_get_endpoint(c, "m"));
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].status, SIPP_OK);
        assert_int_equal(w[i].reason, SIPP_FINISH_CANCELLED);
        sipp_run_free(w[i].run);
    }
    ep = add_with(c, STORY_MODEL, lp); /* reload under the same id */
    assert_ptr_equal(sipp_client_get_endpoint(c, "m"), ep);
    assert_next_request_completes(ep);
    sipp_client_free(c);
}

/* E5/E6: more long generations than sequences, each able to fill its context: every sequence
 * has its own context cells, so each run ends with `length` when its context is full (no loop,
 * no failure), the waiting ones run after, and the endpoint goes on serving. */
static void long_generations_fill_their_contexts_and_end(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 2;
    sipp_endpoint *ep = add_with(c, CHAT_MODEL, lp); /* 256 tokens per sequence */
    sipp_text_params p = greedy(1000000);
    p.ignore_eos = true;
    enum { N = 4 };
    sipp_run *runs[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(sipp_query(ep, "User: tell me a long story\nBot:", &p, &runs[i], NULL),
                         SIPP_OK);
    for (int i = 0; i < N; i++) {
        const sipp_response *r = wait_run(runs[i]);
        assert_int_equal(r->status, SIPP_OK);
        assert_int_equal(r->finish_reason, SIPP_FINISH_LENGTH);
        assert_true(r->usage->total_tokens <= 256 && r->usage->output_tokens > 200);
        sipp_run_free(runs[i]);
    }
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.failed, 0);
    assert_int_equal(es.running, 0);
    assert_next_request_completes(ep);
    sipp_client_free(c);
}

/* E7: far more threads than CPUs: the engine caps them to the CPUs it may use and serves. */
static void more_threads_than_cpus_still_serves(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = STORY_MODEL;
    lp.n_threads = 4096;
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_client_add_local(c, "m", &lp, &ep, &err), SIPP_OK);
    assert_next_request_completes(ep);
    lp.n_threads = -1;
    assert_int_equal(sipp_client_add_local(c, "bad", &lp, &ep, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "n_threads"));
    sipp_client_free(c);
}

/* E8: several hundred sequential chats that share prefixes, on more conversations than
 * sequences (every few turns a conversation is evicted and comes back from its snapshot):
 * none hangs, every one completes, nothing is left running. */
static void hundreds_of_prefix_heavy_chats(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 2;
    sipp_endpoint *ep = add_with(c, CHAT_MODEL, lp);
    const char *keys[3] = {"c0", "c1", "c2"};
    const char *lines[3] = {"hi", "how are you?", "tell me about the sea"};
    double t0 = (double)time(NULL);
    int hits = 0;
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        /* a rolling window of the conversation: the first turns repeat, so prefixes match */
        sipp_message m[4];
        size_t n = (size_t)(i / 3 % 2) * 2 + 1; /* 1 or 3 messages, the user's last */
        for (size_t k = 0; k < n; k++) m[k] = (sipp_message){k % 2 ? "assistant" : "user", lines[k]};
        sipp_text_params p = greedy(3);
        p.context_key = keys[i % 3];
        sipp_run *run = NULL;
        assert_int_equal(sipp_chat(ep, m, n, &p, &run, NULL), SIPP_OK);
        const sipp_response *r = wait_run(run);
        assert_int_equal(r->status, SIPP_OK);
        hits += r->stats->cache_source != SIPP_CACHE_NONE;
        sipp_run_free(run);
    }
    assert_true((double)time(NULL) - t0 < 120);
    assert_true(hits > N / 2);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.completed, N);
    assert_int_equal(es.running + es.queued, 0);
    assert_true(es.cache_evictions > 0);
    sipp_client_free(c);
}

/* ---- E8: the watchdog --------------------------------------------------------------------- */

static sipp_engine_stats stats_of(sipp_endpoint *ep) {
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    assert_int_equal(sipp_endpoint_get_stats(ep, &es, NULL), SIPP_OK);
    return es;
}

/* A failpoint holds the first scheduler round of a run for 1.5 s, as a decode that does not
 * return would; with stall_alarm_ms 200 the engine reports the stall while it lasts (one stall
 * counted, `stalled` set), clears it once rounds go on, and the run completes as usual. An
 * idle engine, and one whose only run is paused on a reader that does not read, never count a
 * stall; nor does an engine without the watchdog. */
static void watchdog_reports_a_stalled_scheduler(void **state) {
    (void)state;
    sipp_client *c = new_client();
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.n_parallel = 1;
    lp.stall_alarm_ms = 200;
    lp.stream_buffer_bytes = 64;
    sipp__test_control(SIPP__TESTCTRL_ENGINE_STALL_MS, 1500u);
    sipp_endpoint *ep = add_with(c, STORY_MODEL, lp);
    sipp__test_control(SIPP__TESTCTRL_ENGINE_STALL_MS, 0u); /* read once, when the engine opens */

    sipp_text_params p = greedy(16);
    sipp_run *run;
    assert_int_equal(sipp_query(ep, "Once upon a time", &p, &run, NULL), SIPP_OK);
    bool seen = false;
    for (int i = 0; i < 150 && !sipp_run_is_done(run); i++) {
        seen |= stats_of(ep).stalled != 0;
        sleep_ms(10);
    }
    assert_true(seen);
    const sipp_response *r = wait_run(run);
    assert_int_equal(r->status, SIPP_OK);
    assert_int_equal(r->usage->output_tokens, 16);
    sipp_run_free(run);
    sipp_engine_stats es = stats_of(ep);
    for (int i = 0; i < 100 && es.stalled; i++) {
        sleep_ms(10);
        es = stats_of(ep);
    }
    assert_int_equal(es.stalled, 0);
    assert_int_equal(es.stalls, 1);

    /* idle for 3 alarm periods, then a run nobody reads (paused at its 64-byte buffer) */
    sleep_ms(600);
    sipp_text_params endless = endless_params(2000);
    assert_int_equal(sipp_query(ep, "Once upon a time", &endless, &run, NULL), SIPP_OK);
    sleep_ms(600);
    assert_false(sipp_run_is_done(run));
    es = stats_of(ep);
    assert_int_equal(es.stalls, 1);
    assert_int_equal(es.stalled, 0);
    sipp_run_free(run);

    /* an older caller's smaller stats struct gets the fields it has */
    sipp_engine_stats old;
    sipp_engine_stats_init(&old, sizeof old);
    old.struct_size = (uint32_t)offsetof(sipp_engine_stats, stalls);
    old.stalls = 77;
    assert_int_equal(sipp_endpoint_get_stats(ep, &old, NULL), SIPP_OK);
    assert_int_equal(old.stalls, 77);
    assert_true(old.completed >= 1);
    sipp_client_free(c);

    /* without the watchdog the same hold counts nothing */
    c = new_client();
    lp.stall_alarm_ms = SIPP_STALL_ALARM_OFF;
    sipp__test_control(SIPP__TESTCTRL_ENGINE_STALL_MS, 500u);
    ep = add_with(c, STORY_MODEL, lp);
    sipp__test_control(SIPP__TESTCTRL_ENGINE_STALL_MS, 0u);
    free(query_text(ep, "Once upon a time", &p, NULL));
    es = stats_of(ep);
    assert_int_equal(es.stalls, 0);
    sipp_client_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batched_equals_sequential),
        cmocka_unit_test(cancel_while_queued),
        cmocka_unit_test(cancel_during_prefill),
        cmocka_unit_test(cancel_during_decode),
        cmocka_unit_test(closing_the_client_ends_every_run),
        cmocka_unit_test(overload_answers_busy_at_once),
        cmocka_unit_test(deadline_ends_running_and_queued_runs),
        cmocka_unit_test(stalled_consumer_pauses_only_its_run),
        cmocka_unit_test(stats_carry_inter_token_latency),
        cmocka_unit_test(thousand_requests_with_cancellations),
        cmocka_unit_test(removing_an_endpoint_ends_its_runs),
        cmocka_unit_test(long_generations_fill_their_contexts_and_end),
        cmocka_unit_test(more_threads_than_cpus_still_serves),
        cmocka_unit_test(hundreds_of_prefix_heavy_chats),
        cmocka_unit_test(watchdog_reports_a_stalled_scheduler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
