/*
 * test_swap.c — re-adding a local endpoint's id with another model swaps it (issue 21): new
 * requests go to the new model once it has loaded, a run on the old model streams on to its
 * own end (not cancelled), and the old engine is freed after it.
 *
 * Deterministic without timing: the old run's stream buffer is tiny, so the engine pauses that
 * run until the test reads it; it cannot have ended when the swap happens or while the new model
 * answers.
 */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#define OLD_TOKENS 300

static sipp_endpoint *add_small_stream(sipp_client *c, const char *id, const char *path) {
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = path;
    lp.n_threads = 2;
    lp.n_parallel = 1;
    lp.stream_buffer_bytes = 16; /* the run pauses until its consumer reads */
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_add_local(c, id, &lp, &ep, &err) != SIPP_OK)
        fail_msg("loading %s: %s", path, err.message);
    return ep;
}

static void readding_swaps_and_lets_old_runs_finish(void **state) {
    (void)state;
    sipp_client *c = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_client_new(NULL, &c, &err), SIPP_OK);

    /* what the new model answers, from an endpoint of its own */
    sipp_text_params g = greedy(12);
    sipp_endpoint *ref = add_model(c, "ref", CHAT_MODEL, 1);
    char *want = query_text(ref, "Once upon a time", &g, NULL);
    assert_true(want[0] != '\0');

    sipp_endpoint *old = add_small_stream(c, "m", STORY_MODEL);
    sipp_text_params lp = greedy(OLD_TOKENS);
    lp.ignore_eos = true;
    sipp_run *long_run = NULL;
    assert_int_equal(sipp_query(old, "Once upon a time", &lp, &long_run, &err), SIPP_OK);
    sipp_token_batch b;
    sipp_token_batch_init(&b, sizeof b);
    assert_int_equal(sipp_run_next(long_run, -1, &b, &err), SIPP_OK); /* it is streaming */
    size_t seen_tokens = b.n_tokens;

    /* the swap: the id now names the new model; the old handle takes no new request */
    sipp_endpoint *now = add_model(c, "m", CHAT_MODEL, 1);
    assert_ptr_equal(sipp_client_get_endpoint(c, "m"), now);
    sipp_run *refused = NULL;
    assert_int_equal(sipp_query(old, "x", &g, &refused, &err), SIPP_CLOSED);
    char *got = query_text(now, "Once upon a time", &g, NULL);
    assert_string_equal(got, want);
    assert_false(sipp_run_is_done(long_run)); /* paused on its unread stream, not cancelled */

    /* the old run streams on to its own end */
    while (!b.done) {
        assert_int_equal(sipp_run_next(long_run, -1, &b, &err), SIPP_OK);
        seen_tokens += b.n_tokens;
    }
    const sipp_response *r = NULL;
    assert_int_equal(sipp_run_wait(long_run, &r, &err), SIPP_OK);
    assert_int_equal(r->status, SIPP_OK);
    assert_int_equal(r->finish_reason, SIPP_FINISH_LENGTH);
    assert_int_equal(r->usage->output_tokens, OLD_TOKENS);
    sipp_run_free(long_run);

    /* and the new model still answers the id */
    char *again = query_text(sipp_client_get_endpoint(c, "m"), "Once upon a time", &g, NULL);
    assert_string_equal(again, want);
    free(want);
    free(got);
    free(again);
    sipp_client_free(c);
}

/* A client freed while a swapped-out engine still has a run: that run is cancelled, nothing
 * hangs or leaks (the drain thread is joined). */
static void freeing_the_client_cancels_a_draining_run(void **state) {
    (void)state;
    sipp_client *c = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_client_new(NULL, &c, &err), SIPP_OK);
    sipp_endpoint *old = add_small_stream(c, "m", STORY_MODEL);
    sipp_text_params lp = greedy(OLD_TOKENS);
    lp.ignore_eos = true;
    sipp_run *run = NULL;
    assert_int_equal(sipp_query(old, "Once upon a time", &lp, &run, &err), SIPP_OK);
    add_model(c, "m", STORY_MODEL, 1);
    sipp_client_free(c);
    const sipp_response *r = NULL;
    assert_int_equal(sipp_run_wait(run, &r, &err), SIPP_OK);
    assert_int_equal(r->finish_reason, SIPP_FINISH_CANCELLED);
    sipp_run_free(run);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(readding_swaps_and_lets_old_runs_finish),
        cmocka_unit_test(freeing_the_client_cancels_a_draining_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
