/*
 * test_local.c — query, chat and embed on the tiny real models through the public API:
 * determinism, the Jinja chat template, finish reasons, stop strings, streaming (callback and
 * pull), cancellation, grammar and JSON schema, embeddings, and capability gating.
 */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include <math.h>

typedef struct fixture {
    sipp_client *client;
    sipp_endpoint *chat;
    sipp_endpoint *story;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(sipp_client_new(NULL, &f->client, NULL), SIPP_OK);
    f->chat = add_model(f->client, "chat", CHAT_MODEL, 2);
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

static void greedy_query_is_deterministic(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(32);
    char *a = query_text(f->story, "Once upon a time", &p, NULL);
    char *b = query_text(f->story, "Once upon a time", &p, NULL);
    assert_true(strlen(a) > 0);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

static void finish_reason_length_at_max_tokens(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(5);
    test_response r;
    char *t = query_text(f->story, "Once upon a time", &p, &r);
    assert_int_equal(r.finish_reason, SIPP_FINISH_LENGTH);
    assert_int_equal(r.usage.output_tokens, 5);
    assert_true(r.usage.input_tokens > 0);
    assert_int_equal(r.usage.total_tokens, r.usage.input_tokens + 5);
    assert_true(r.stats.ttft_ms > 0);
    free(t);
}

/* The chat template of the tiny chat model renders "User: <msg>\nBot:"; a greedy chat must
 * therefore produce exactly what a greedy raw query of that rendering produces. */
static void chat_renders_the_jinja_template(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(24);
    sipp_message msgs[] = {{"user", "Do you like to play outside?"}};
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_chat(f->chat, msgs, 1, &p, &run, &err), SIPP_OK);
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(r->status, SIPP_OK);
    char *raw = query_text(f->chat, "User: Do you like to play outside?\nBot:", &p, NULL);
    assert_string_equal(r->text, raw);
    assert_true(strlen(raw) > 0);
    /* The model ends its turn with <|endoftext|>: finish "stop" and no EOG text emitted. */
    assert_int_equal(r->finish_reason, SIPP_FINISH_STOP);
    assert_null(strstr(r->text, "<|endoftext|>"));
    free(raw);
    sipp_run_free(run);
}

static void ignore_eos_generates_to_max_tokens(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(40);
    test_response r;
    char *t = query_text(f->chat, "User: hi\nBot:", &p, &r);
    assert_int_equal(r.finish_reason, SIPP_FINISH_STOP); /* the model ends its turn early */
    assert_true(r.usage.output_tokens < 40);
    free(t);
    p.ignore_eos = true;
    t = query_text(f->chat, "User: hi\nBot:", &p, &r);
    assert_int_equal(r.finish_reason, SIPP_FINISH_LENGTH);
    assert_int_equal(r.usage.output_tokens, 40);
    free(t);
}

static void stop_string_ends_the_run_before_it(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(64);
    char *full = query_text(f->story, "Once upon a time", &p, NULL);
    const char *dot = strchr(full, '.');
    assert_non_null(dot);
    const char *stops[] = {"."};
    p.stop = stops;
    p.n_stop = 1;
    test_response r;
    char *cut = query_text(f->story, "Once upon a time", &p, &r);
    assert_int_equal(r.finish_reason, SIPP_FINISH_STOP);
    assert_int_equal(strlen(cut), (size_t)(dot - full));
    assert_memory_equal(cut, full, strlen(cut));
    free(full);
    free(cut);
}

typedef struct collected {
    char text[8192];
    size_t len;
    uint32_t n_tokens;
    int calls;
} collected;

static void collect(const char *text, size_t len, uint32_t n_tokens, void *ud) {
    collected *c = ud;
    assert_true(c->len + len < sizeof c->text);
    memcpy(c->text + c->len, text, len);
    c->len += len;
    c->n_tokens += n_tokens;
    c->calls++;
}

static void streaming_callback_delivers_the_whole_text(void **state) {
    fixture *f = *state;
    collected c = {0};
    sipp_text_params p = greedy(40);
    p.on_tokens = collect;
    p.user_data = &c;
    sipp_run *run = NULL;
    assert_int_equal(sipp_query(f->story, "Once upon a time", &p, &run, NULL), SIPP_OK);
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_true(c.calls >= 1);
    assert_int_equal(c.len, r->text_len);
    assert_memory_equal(c.text, r->text, c.len);
    assert_true(c.n_tokens <= r->usage->output_tokens);
    sipp_run_free(run);
}

static void pull_iterator_delivers_the_whole_text(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(40);
    sipp_run *run = NULL;
    assert_int_equal(sipp_query(f->story, "Once upon a time", &p, &run, NULL), SIPP_OK);
    char buf[8192];
    size_t len = 0;
    sipp_token_batch b = {.struct_size = sizeof b};
    for (;;) {
        assert_int_equal(sipp_run_next(run, -1, &b, NULL), SIPP_OK);
        memcpy(buf + len, b.text, b.len);
        len += b.len;
        if (b.done) break;
    }
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(len, r->text_len);
    assert_memory_equal(buf, r->text, len);
    sipp_run_free(run);
}

static void cancel_ends_the_run_as_cancelled(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(1000);
    p.grammar = "root ::= [a-z ] root"; /* never complete, so the model can never end it */
    sipp_run *run = NULL;
    assert_int_equal(sipp_query(f->story, "Once upon a time", &p, &run, NULL), SIPP_OK);
    sipp_token_batch b = {.struct_size = sizeof b};
    assert_int_equal(sipp_run_next(run, -1, &b, NULL), SIPP_OK); /* it is decoding */
    sipp_run_cancel(run);
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(r->finish_reason, SIPP_FINISH_CANCELLED);
    assert_true(r->usage->output_tokens < 1000);
    assert_int_equal(r->status, SIPP_OK);
    sipp_run_free(run);
    /* the sequence is free again: a following request completes */
    sipp_text_params g = greedy(4);
    test_response r2;
    free(query_text(f->story, "Once upon a time", &g, &r2));
    assert_int_equal(r2.finish_reason, SIPP_FINISH_LENGTH);
}

static void grammar_constrains_the_output(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(16);
    p.grammar = "root ::= (\"yes\" | \"no\") \" \" [a-z]+ \".\"";
    test_response r;
    char *t = query_text(f->story, "Once upon a time", &p, &r);
    assert_true(strncmp(t, "yes ", 4) == 0 || strncmp(t, "no ", 3) == 0);
    free(t);
}

static void json_schema_constrains_the_output(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(64);
    p.json_schema = "{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"}},"
                    "\"required\":[\"ok\"],\"additionalProperties\":false}";
    test_response r;
    char *t = query_text(f->story, "Once upon a time", &p, &r);
    assert_int_equal(r.finish_reason, SIPP_FINISH_STOP);
    /* whitespace is allowed by the grammar; strip it and compare */
    char compact[256];
    size_t n = 0;
    for (const char *c = t; *c && n < sizeof compact - 1; c++)
        if (*c != ' ' && *c != '\n' && *c != '\t') compact[n++] = *c;
    compact[n] = '\0';
    assert_true(strcmp(compact, "{\"ok\":true}") == 0 || strcmp(compact, "{\"ok\":false}") == 0);
    free(t);
}

static void bad_grammar_and_schema_are_errors(void **state) {
    fixture *f = *state;
    sipp_text_params p = greedy(4);
    p.grammar = "this is not gbnf";
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_query(f->story, "x", &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_null(run);
    assert_non_null(strstr(err.message, "grammar"));
    p.grammar = NULL;
    p.json_schema = "{\"type\": \"object\", \"properties\": ";
    assert_int_equal(sipp_query(f->story, "x", &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "json_schema"));
}

static void embed_has_model_dims_and_unit_norm(void **state) {
    fixture *f = *state;
    sipp_endpoint *eps[] = {f->chat, f->story};
    for (int i = 0; i < 2; i++) {
        sipp_endpoint_info info;
        sipp_endpoint_info_init(&info, sizeof info);
        assert_int_equal(sipp_endpoint_get_info(eps[i], &info, NULL), SIPP_OK);
        assert_true(info.can_embed);
        sipp_run *run = NULL;
        assert_int_equal(sipp_embed(eps[i], "hello world", NULL, &run, NULL), SIPP_OK);
        const sipp_response *r = NULL;
        sipp_run_wait(run, &r, NULL);
        assert_int_equal(r->status, SIPP_OK);
        assert_non_null(r->embedding);
        assert_int_equal(r->n_embd, info.n_embd);
        assert_true(r->normalized);
        double norm = 0;
        for (uint32_t k = 0; k < r->n_embd; k++) norm += (double)r->embedding[k] * r->embedding[k];
        assert_true(fabs(sqrt(norm) - 1.0) < 1e-4);
        sipp_run_free(run);
    }
}

static void embed_without_normalize_is_raw(void **state) {
    fixture *f = *state;
    sipp_embed_params p;
    sipp_embed_params_init(&p, sizeof p);
    p.normalize = false;
    sipp_run *run = NULL;
    assert_int_equal(sipp_embed(f->story, "hello world", &p, &run, NULL), SIPP_OK);
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_false(r->normalized);
    double norm = 0;
    for (uint32_t k = 0; k < r->n_embd; k++) norm += (double)r->embedding[k] * r->embedding[k];
    assert_true(fabs(sqrt(norm) - 1.0) > 1e-3);
    sipp_run_free(run);
}

static void chat_without_template_is_unsupported(void **state) {
    fixture *f = *state;
    sipp_message msgs[] = {{"user", "hi"}};
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_chat(f->story, msgs, 1, NULL, &run, &err), SIPP_UNSUPPORTED);
    assert_null(run);
    assert_non_null(strstr(err.message, "chat"));
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    sipp_endpoint_get_info(f->story, &info, NULL);
    assert_false(info.can_chat);
    assert_true(info.can_generate);
}

static void prompt_longer_than_context_fails_alone(void **state) {
    fixture *f = *state;
    /* The chat model's context is 256 tokens per sequence. */
    char prompt[8192];
    size_t n = 0;
    while (n + 6 < sizeof prompt) {
        memcpy(prompt + n, "hello ", 6);
        n += 6;
    }
    prompt[n] = '\0';
    /* a stream is running when the long prompt arrives */
    sipp_text_params g = greedy(24);
    test_response alone;
    char *want = query_text(f->chat, "User: tell me a story\nBot:", &g, &alone);
    sipp_run *other = NULL;
    assert_int_equal(sipp_query(f->chat, "User: tell me a story\nBot:", &g, &other, NULL), SIPP_OK);
    sipp_token_batch b = {.struct_size = sizeof b};
    assert_int_equal(sipp_run_next(other, -1, &b, NULL), SIPP_OK); /* it is generating */

    sipp_text_params p = greedy(4);
    sipp_run *run = (sipp_run *)0x1;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_query(f->chat, prompt, &p, &run, &err), SIPP_CONTEXT_OVERFLOW);
    assert_null(run);
    /* both numbers, by name: n_prompt_tokens = 1366 (or so), n_ctx = 256 */
    if (!strstr(err.message, "n_prompt_tokens = ") || !strstr(err.message, "n_ctx = 256"))
        fail_msg("message: %s", err.message);
    /* the running stream is untouched: it ends as it would have alone */
    const sipp_response *r1 = NULL;
    assert_int_equal(sipp_run_wait(other, &r1, NULL), SIPP_OK);
    assert_int_equal(r1->status, SIPP_OK);
    assert_string_equal(r1->text, want);
    sipp_run_free(other);
    free(want);
    /* nothing was admitted for the refused prompt, and the endpoint still serves others */
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(f->chat, &es, NULL);
    assert_int_equal(es.running, 0);
    assert_int_equal(es.queued, 0);
    test_response r;
    free(query_text(f->chat, "User: hi\nBot:", &p, &r));
    assert_int_equal(r.status, SIPP_OK);
}

static void inspect_reads_metadata_without_loading(void **state) {
    (void)state;
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    char *tmpl = NULL;
    assert_int_equal(sipp_model_inspect(CHAT_MODEL, &info, &tmpl, NULL), SIPP_OK);
    assert_string_equal(info.architecture, "gpt2");
    assert_true(info.can_chat);
    assert_int_equal(info.n_ctx_train, 256);
    assert_int_equal(info.n_embd, 128);
    assert_non_null(tmpl);
    assert_non_null(strstr(tmpl, "Bot:"));
    sipp_free(tmpl);
    assert_int_equal(sipp_model_inspect(STORY_MODEL, &info, &tmpl, NULL), SIPP_OK);
    assert_null(tmpl);
    assert_false(info.can_chat);
    assert_int_equal(info.n_params, 292800);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(greedy_query_is_deterministic),
        cmocka_unit_test(finish_reason_length_at_max_tokens),
        cmocka_unit_test(chat_renders_the_jinja_template),
        cmocka_unit_test(ignore_eos_generates_to_max_tokens),
        cmocka_unit_test(stop_string_ends_the_run_before_it),
        cmocka_unit_test(streaming_callback_delivers_the_whole_text),
        cmocka_unit_test(pull_iterator_delivers_the_whole_text),
        cmocka_unit_test(cancel_ends_the_run_as_cancelled),
        cmocka_unit_test(grammar_constrains_the_output),
        cmocka_unit_test(json_schema_constrains_the_output),
        cmocka_unit_test(bad_grammar_and_schema_are_errors),
        cmocka_unit_test(embed_has_model_dims_and_unit_norm),
        cmocka_unit_test(embed_without_normalize_is_raw),
        cmocka_unit_test(chat_without_template_is_unsupported),
        cmocka_unit_test(prompt_longer_than_context_fails_alone),
        cmocka_unit_test(inspect_reads_metadata_without_loading),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
