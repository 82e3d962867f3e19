/*
 * helpers.h — shared set-up of the model-backed API tests: one client per test group with the
 * tiny real models from ../shared/models registered as endpoints.
 */
#ifndef SIPP_TEST_HELPERS_H
#define SIPP_TEST_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sipp.h"

#define CHAT_MODEL SIPP_TEST_MODELS_DIR "/tinystories-instruct-3m-soda-chat-Q4_0.gguf"
#define STORY_MODEL SIPP_TEST_MODELS_DIR "/stories260K.gguf"

/* A scratch directory for a test group: /tmp/sipp-NAME-XXXXXX into `dir` (0 on success), and
 * its removal with everything in it (0 on success). */
static inline int scratch_dir_make(char *dir, size_t cap, const char *name) {
    snprintf(dir, cap, "/tmp/sipp-%s-XXXXXX", name);
    return mkdtemp(dir) ? 0 : -1;
}

static inline int scratch_dir_remove(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Adds `path` as endpoint `id` with small settings; fails the test on error. */
static inline sipp_endpoint *add_model(sipp_client *c, const char *id, const char *path,
                                       uint32_t n_parallel) {
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = path;
    lp.n_threads = 2;
    lp.n_parallel = n_parallel;
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_status st = sipp_client_add_local(c, id, &lp, &ep, &err);
    if (st != SIPP_OK) fail_msg("loading %s: %s", path, err.message);
    return ep;
}

static inline sipp_text_params greedy(uint32_t max_tokens) {
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    p.temperature = 0.0f;
    p.max_tokens = max_tokens;
    return p;
}

/* Runs a query to the end and returns a malloc'd copy of its text (and the response fields). */
/* What a test keeps of a response once its run is freed: sipp_response only points at its text,
 * usage and stats, which the run owns, so the values are copied out. */
typedef struct test_response {
    sipp_status status;
    sipp_finish_reason finish_reason;
    sipp_usage usage;
    sipp_stats stats;
} test_response;

static inline char *query_text(sipp_endpoint *ep, const char *prompt, const sipp_text_params *p,
                               test_response *resp_out) {
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_query(ep, prompt, p, &run, &err) != SIPP_OK) fail_msg("query: %s", err.message);
    const sipp_response *r = NULL;
    assert_int_equal(sipp_run_wait(run, &r, &err), SIPP_OK);
    assert_int_equal(r->status, SIPP_OK);
    char *text = strdup(r->text);
    if (resp_out)
        *resp_out = (test_response){.status = r->status, .finish_reason = r->finish_reason,
                                    .usage = *r->usage, .stats = *r->stats};
    sipp_run_free(run);
    return text;
}

#endif
