/*
 * test_abi.c — the ABI promises of include/sipp.h, checked from a program that links libsipp.so
 * and sees only the public header, as an app does.
 *
 * The structs of the first release (0.1) are frozen below as this program's own types. A
 * program compiled against that header passes them with its own struct_size; it must keep
 * working against today's library: fields it lacks take their defaults, out-structs are written
 * no further than its size. The static asserts pin every frozen field to today's offset, so a
 * field inserted anywhere but at the end fails the build.
 *
 * Also: the init contract (defaults, a newer struct refused and left untouched) and endpoint
 * handles that stay valid after their endpoint is removed (SIPP_CLOSED, never freed memory).
 */
#define _POSIX_C_SOURCE 200809L
#include <sipp.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifndef SIPP_TEST_MODELS_DIR
#error "SIPP_TEST_MODELS_DIR must be defined"
#endif
#define STORY_MODEL SIPP_TEST_MODELS_DIR "/stories260K.gguf"

/* ---- the 0.1 layouts, frozen ----------------------------------------------------------------- */

typedef struct abi01_local_params {
    uint32_t struct_size;
    const char *model_path;
    uint32_t n_ctx;
    int32_t n_threads;
    uint32_t n_batch;
    int32_t n_gpu_layers;
    uint32_t n_parallel;
    sipp_load_progress_fn progress;
    void *progress_user_data;
    uint32_t max_running;
    uint32_t max_queued;
    uint32_t tick_budget;
    uint32_t prefill_chunk;
    uint32_t stream_buffer_bytes;
    bool context_shift;
    uint32_t n_keep;
    uint64_t cache_ram_bytes;
    const char *cache_dir;
    uint64_t cache_disk_bytes;
} abi01_local_params;

typedef struct abi01_provider_params {
    uint32_t struct_size;
    sipp_provider_kind kind;
    const char *model;
    const char *base_url;
    const char *api_key;
    const char *api_key_env;
    uint32_t connect_timeout_ms;
    uint32_t request_timeout_ms;
    uint32_t idle_timeout_ms;
} abi01_provider_params;

typedef struct abi01_gateway_params {
    uint32_t struct_size;
    const char *base_url;
    const char *target;
    sipp_gateway_auth auth;
    const char *token;
    const char *token_env;
    const char *auth_header;
    const char *const *headers;
    size_t n_headers;
    uint32_t connect_timeout_ms;
    uint32_t request_timeout_ms;
    uint32_t idle_timeout_ms;
} abi01_gateway_params;

typedef struct abi01_text_params {
    uint32_t struct_size;
    uint32_t max_tokens;
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    uint32_t seed;
    const char *const *stop;
    size_t n_stop;
    const char *context_key;
    const char *cache_scope;
    const char *grammar;
    const char *json_schema;
    sipp_token_fn on_tokens;
    void *user_data;
    uint32_t timeout_ms;
    bool ignore_eos;
} abi01_text_params;

typedef struct abi01_embed_params {
    uint32_t struct_size;
    bool normalize;
} abi01_embed_params;

typedef struct abi01_engine_stats {
    uint32_t struct_size;
    uint32_t running;
    uint32_t queued;
    uint64_t completed;
    uint64_t cancelled;
    uint64_t failed;
    uint64_t rejected_busy;
    uint64_t prompt_tokens;
    uint64_t generated_tokens;
    uint64_t ticks;
    uint64_t batch_tokens;
    double batch_fill;
    uint64_t cache_hits;
    uint64_t cache_misses;
    uint64_t cache_evictions;
    uint64_t cache_ram_bytes;
    uint64_t cache_disk_bytes;
} abi01_engine_stats;

typedef struct abi01_token_batch {
    uint32_t struct_size;
    const char *text;
    size_t len;
    uint32_t n_tokens;
    bool done;
} abi01_token_batch;

/* Every frozen field sits where today's header has it (fields are only appended). */
#define SAME_OFFSET(name, field)                                                                 \
    _Static_assert(offsetof(abi01_##name, field) == offsetof(sipp_##name, field),               \
                   "sipp_" #name "." #field " moved: fields may only be appended")
SAME_OFFSET(local_params, model_path);
SAME_OFFSET(local_params, n_parallel);
SAME_OFFSET(local_params, progress_user_data);
SAME_OFFSET(local_params, stream_buffer_bytes);
SAME_OFFSET(local_params, context_shift);
SAME_OFFSET(local_params, cache_ram_bytes);
SAME_OFFSET(local_params, cache_disk_bytes);
SAME_OFFSET(provider_params, kind);
SAME_OFFSET(provider_params, api_key_env);
SAME_OFFSET(provider_params, idle_timeout_ms);
SAME_OFFSET(gateway_params, auth);
SAME_OFFSET(gateway_params, n_headers);
SAME_OFFSET(gateway_params, idle_timeout_ms);
SAME_OFFSET(text_params, seed);
SAME_OFFSET(text_params, json_schema);
SAME_OFFSET(text_params, user_data);
SAME_OFFSET(text_params, ignore_eos);
SAME_OFFSET(embed_params, normalize);
SAME_OFFSET(engine_stats, batch_fill);
SAME_OFFSET(engine_stats, cache_disk_bytes);
SAME_OFFSET(token_batch, n_tokens);
SAME_OFFSET(token_batch, done);

/* ---- helpers ------------------------------------------------------------------------------- */

static sipp_error new_error(void) {
    sipp_error e;
    assert_int_equal(sipp_error_init(&e, sizeof e), SIPP_OK);
    return e;
}

static bool all_bytes(const void *p, size_t n, unsigned char v) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v) return false;
    return true;
}

/* Runs `prompt` greedily to the end; returns its text (free it). */
static char *complete(sipp_endpoint *ep, const char *prompt, const void *params) {
    sipp_run *run = NULL;
    sipp_error err = new_error();
    if (sipp_query(ep, prompt, params, &run, &err) != SIPP_OK) fail_msg("query: %s", err.message);
    const sipp_response *r = NULL;
    assert_int_equal(sipp_run_wait(run, &r, NULL), SIPP_OK);
    assert_int_equal(r->status, SIPP_OK);
    assert_non_null(r->usage);
    assert_non_null(r->stats);
    assert_true(r->usage->output_tokens >= 1);
    char *text = strdup(r->text);
    sipp_run_free(run);
    return text;
}

/* ---- the init contract --------------------------------------------------------------------- */

static void init_fills_defaults_and_refuses_a_newer_struct(void **state) {
    (void)state;
    sipp_text_params p;
    memset(&p, 0xAB, sizeof p);
    assert_int_equal(sipp_text_params_init(&p, sizeof p), SIPP_OK);
    assert_int_equal(p.struct_size, sizeof p);
    assert_int_equal(p.max_tokens, 256);
    assert_int_equal(p.top_k, 40);
    assert_null(p.extra_json);

    /* a caller built against a newer header than this library: refused, nothing written */
    unsigned char big[sizeof(sipp_text_params) + 16];
    memset(big, 0xAB, sizeof big);
    assert_int_equal(sipp_text_params_init((sipp_text_params *)big, sizeof big),
                     SIPP_INVALID_ARGUMENT);
    assert_true(all_bytes(big, sizeof big, 0xAB));

    /* an older caller's smaller struct: its bytes are filled, not one byte past them */
    unsigned char old[sizeof(sipp_text_params)];
    memset(old, 0xAB, sizeof old);
    assert_int_equal(sipp_text_params_init((sipp_text_params *)old, sizeof(abi01_text_params)),
                     SIPP_OK);
    assert_true(all_bytes(old + sizeof(abi01_text_params),
                          sizeof old - sizeof(abi01_text_params), 0xAB));
    abi01_text_params o;
    memcpy(&o, old, sizeof o);
    assert_int_equal(o.struct_size, sizeof o);
    assert_int_equal(o.max_tokens, 256);

    /* smaller than any released layout, or NULL */
    assert_int_equal(sipp_text_params_init(&p, 8), SIPP_INVALID_ARGUMENT);
    assert_int_equal(sipp_local_params_init(NULL, sizeof(sipp_local_params)),
                     SIPP_INVALID_ARGUMENT);
    sipp_local_params lp;
    assert_int_equal(sipp_local_params_init(&lp, sizeof lp), SIPP_OK);
    assert_int_equal(lp.n_gpu_layers, -1);
    assert_int_equal(SIPP_VERSION_NUM, sipp_version_num());
    assert_string_equal(SIPP_VERSION_STRING, sipp_version());
}

/* ---- a program built against 0.1 ------------------------------------------------------------ */

static void a_program_built_against_0_1_still_works(void **state) {
    (void)state;
    sipp_client *c = NULL;
    sipp_error err = new_error();
    assert_int_equal(sipp_client_new(NULL, &c, &err), SIPP_OK);

    abi01_local_params lp = {.struct_size = sizeof lp, .model_path = STORY_MODEL, .n_ctx = 256,
                             .n_threads = 1, .n_parallel = 1};
    sipp_endpoint *ep = NULL;
    if (sipp_client_add_local(c, "old", (const sipp_local_params *)&lp, &ep, &err) != SIPP_OK)
        fail_msg("add_local with the 0.1 layout: %s", err.message);

    /* text params of 0.1: the appended fields (extra_json, request_id) take their defaults, so
     * the answer is the one today's struct gives */
    abi01_text_params old = {.struct_size = sizeof old, .max_tokens = 12, .temperature = 0.0f,
                             .top_k = 40, .top_p = 1.0f, .repeat_penalty = 1.0f, .seed = 1};
    sipp_text_params now;
    sipp_text_params_init(&now, sizeof now);
    now.max_tokens = 12;
    now.temperature = 0.0f;
    now.top_p = 1.0f;
    now.min_p = 0.0f;
    now.seed = 1;
    char *a = complete(ep, "Once upon a time", &old);
    char *b = complete(ep, "Once upon a time", &now);
    assert_string_equal(a, b);
    free(a);
    free(b);

    /* out-structs of 0.1: filled, and not one byte past them */
    struct {
        abi01_engine_stats s;
        unsigned char canary[64];
    } st;
    memset(&st, 0xCD, sizeof st);
    st.s.struct_size = sizeof st.s;
    assert_int_equal(sipp_endpoint_get_stats(ep, (sipp_engine_stats *)&st.s, &err), SIPP_OK);
    assert_int_equal(st.s.struct_size, sizeof st.s);
    assert_true(st.s.completed >= 2 && st.s.generated_tokens >= 2);
    assert_true(all_bytes(st.canary, sizeof st.canary, 0xCD));

    sipp_run *run = NULL;
    assert_int_equal(sipp_query(ep, "Once", (const sipp_text_params *)&old, &run, &err), SIPP_OK);
    struct {
        abi01_token_batch b;
        unsigned char canary[64];
    } tb;
    bool done = false;
    while (!done) {
        memset(&tb, 0xCD, sizeof tb);
        tb.b.struct_size = sizeof tb.b;
        assert_int_equal(sipp_run_next(run, -1, (sipp_token_batch *)&tb.b, &err), SIPP_OK);
        assert_true(all_bytes(tb.canary, sizeof tb.canary, 0xCD));
        done = tb.b.done;
    }
    sipp_run_free(run);

    abi01_embed_params ep01 = {.struct_size = sizeof ep01, .normalize = true};
    assert_int_equal(sipp_embed(ep, "hello", (const sipp_embed_params *)&ep01, &run, &err),
                     SIPP_OK);
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(r->status, SIPP_OK);
    assert_true(r->n_embd > 0 && r->normalized);
    sipp_run_free(run);

    /* remote endpoints of 0.1 (nothing is sent until a request) */
    abi01_provider_params pp = {.struct_size = sizeof pp,
                                .kind = SIPP_PROVIDER_OPENAI_COMPATIBLE,
                                .model = "m",
                                .base_url = "http://127.0.0.1:9/v1"};
    assert_int_equal(sipp_client_add_provider(c, "prov", (const sipp_provider_params *)&pp, NULL,
                                              &err),
                     SIPP_OK);
    abi01_gateway_params gp = {.struct_size = sizeof gp,
                               .base_url = "http://127.0.0.1:9",
                               .target = "t",
                               .auth = SIPP_GATEWAY_AUTH_NONE};
    assert_int_equal(sipp_client_add_gateway(c, "gw", (const sipp_gateway_params *)&gp, NULL,
                                             &err),
                     SIPP_OK);
    sipp_client_free(c);
}

static void a_newer_struct_is_refused_at_every_entry_point(void **state) {
    (void)state;
    sipp_client *c = NULL;
    sipp_error err = new_error();
    assert_int_equal(sipp_client_new(NULL, &c, &err), SIPP_OK);
    struct {
        sipp_local_params p;
        uint64_t appended_by_a_newer_header;
    } lp = {0};
    sipp_local_params_init(&lp.p, sizeof lp.p);
    lp.p.model_path = STORY_MODEL;
    lp.p.struct_size = sizeof lp;
    sipp_endpoint *ep = (sipp_endpoint *)&lp; /* must be reset to NULL */
    assert_int_equal(sipp_client_add_local(c, "x", &lp.p, &ep, &err), SIPP_INVALID_ARGUMENT);
    assert_null(ep);
    assert_non_null(strstr(err.message, "newer sipp.h"));

    lp.p.struct_size = sizeof lp.p;
    assert_int_equal(sipp_client_add_local(c, "x", &lp.p, &ep, &err), SIPP_OK);
    struct {
        sipp_engine_stats s;
        uint64_t more;
    } st;
    memset(&st, 0, sizeof st);
    st.s.struct_size = sizeof st;
    assert_int_equal(sipp_endpoint_get_stats(ep, &st.s, &err), SIPP_INVALID_ARGUMENT);
    struct {
        sipp_text_params p;
        uint64_t more;
    } tp;
    sipp_text_params_init(&tp.p, sizeof tp.p);
    tp.p.struct_size = sizeof tp;
    sipp_run *run = (sipp_run *)&tp;
    assert_int_equal(sipp_query(ep, "Once", &tp.p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_null(run);
    sipp_client_free(c);
}

/* ---- endpoint handles ----------------------------------------------------------------------- */

static sipp_endpoint *add_story(sipp_client *c, const char *id) {
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = STORY_MODEL;
    lp.n_ctx = 128;
    lp.n_threads = 1;
    lp.n_parallel = 2;
    sipp_endpoint *ep = NULL;
    sipp_error err = new_error();
    if (sipp_client_add_local(c, id, &lp, &ep, &err) != SIPP_OK) fail_msg("%s", err.message);
    return ep;
}

static void a_removed_endpoints_handle_answers_closed(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *old = add_story(c, "s");
    assert_ptr_equal(sipp_client_get_endpoint(c, "s"), old);
    sipp_endpoint *fresh = add_story(c, "s"); /* re-adding the id closes the old endpoint */
    assert_ptr_equal(sipp_client_get_endpoint(c, "s"), fresh);
    sipp_run *run = NULL;
    sipp_error err = new_error();
    assert_int_equal(sipp_query(old, "Once", NULL, &run, &err), SIPP_CLOSED);
    assert_null(run);
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    assert_int_equal(sipp_endpoint_get_info(old, &info, &err), SIPP_CLOSED);
    assert_int_equal(sipp_endpoint_get_info(fresh, &info, &err), SIPP_OK);

    assert_int_equal(sipp_client_remove(c, "s", &err), SIPP_OK);
    assert_null(sipp_client_get_endpoint(c, "s"));
    assert_int_equal(sipp_query(fresh, "Once", NULL, &run, &err), SIPP_CLOSED);
    assert_int_equal(sipp_client_remove(c, "s", &err), SIPP_NOT_FOUND);
    sipp_client_free(c);
}

typedef struct hammer {
    sipp_endpoint *ep;
    atomic_int ok; /* read by the main thread while this one runs */
    int closed, other;
} hammer;

/* Submits on a handle until it answers SIPP_CLOSED: each call either ran or was refused. */
static void *hammer_main(void *arg) {
    hammer *h = arg;
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    p.max_tokens = 4;
    for (int i = 0; i < 100000; i++) {
        sipp_run *run = NULL;
        sipp_status st = sipp_query(h->ep, "Once upon", &p, &run, NULL);
        if (st == SIPP_OK) {
            const sipp_response *r = NULL;
            sipp_run_wait(run, &r, NULL);
            h->ok++;
            sipp_run_free(run);
        } else if (st == SIPP_CLOSED) {
            h->closed++;
            break;
        } else if (st != SIPP_BUSY) {
            h->other++;
        }
    }
    return NULL;
}

static void a_handle_in_use_on_another_thread_survives_removal(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    hammer h[2] = {{.ep = add_story(c, "s")}, {.ep = NULL}};
    h[1].ep = h[0].ep;
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, hammer_main, &h[i]);
    while (h[0].ok + h[1].ok < 4) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(sipp_client_remove(c, "s", NULL), SIPP_OK);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(h[i].closed, 1);
        assert_int_equal(h[i].other, 0);
    }
    sipp_client_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(init_fills_defaults_and_refuses_a_newer_struct),
        cmocka_unit_test(a_program_built_against_0_1_still_works),
        cmocka_unit_test(a_newer_struct_is_refused_at_every_entry_point),
        cmocka_unit_test(a_removed_endpoints_handle_answers_closed),
        cmocka_unit_test(a_handle_in_use_on_another_thread_survives_removal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
