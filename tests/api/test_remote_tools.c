/*
 * test_remote_tools.c — tools and reasoning through the remote provider adapters (issue 18).
 *
 * OpenAI-shaped and Anthropic-shaped peers are the scripted fault server
 * (tests/e2e/fault_server.py, run as a child: it prints its port, then each request it gets as a
 * JSON line), streamed and whole: the request's tools, tool choice and tool messages in each
 * API's shape; the answer's calls (id and name first, arguments in pieces), reasoning and text as
 * the same response fields and deltas a local chat gives; arguments that are not JSON a clear
 * error. The OpenAI-compatible adapter also runs against the real llama-server with a
 * random-weight GGUF carrying Qwen 2.5's template (made by sipp-make-model): the assistant turn
 * is prefilled with the call's opening tag, so llama.cpp's grammar forces a well-formed call even
 * from random weights (llama-server's own grammar lets free text come first: random weights
 * would never call), then the round trip with a tool result.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const WEATHER_SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\","
    "\"fahrenheit\"]}},\"required\":[\"unit\"],\"additionalProperties\":false}";
static const char *const TIME_SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"zone\":{\"type\":\"string\",\"enum\":[\"utc\"]}},"
    "\"required\":[\"zone\"],\"additionalProperties\":false}";

typedef struct fixture {
    sipp_client *client;
    pid_t server;
    FILE *seen;    /* the fault server's stdout: its port, then a JSON line per request */
    int server_in; /* its stdin: closing it ends it */
    int port;
    char tmpdir[256];
} fixture;

static sipp_tool tools[2];

/* Starts argv as a child with its stdin and stdout on pipes. */
static pid_t spawn(char *const argv[], int *in_fd, FILE **out, bool quiet) {
    int in[2], o[2];
    if (pipe(in) != 0 || pipe(o) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* a failed test (longjmp, exit) leaves no server */
        dup2(in[0], 0);
        dup2(o[1], 1);
        if (quiet) {
            FILE *null = fopen("/dev/null", "w");
            if (null) dup2(fileno(null), 2);
        }
        close(in[1]);
        close(o[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    *in_fd = in[1];
    *out = fdopen(o[0], "r");
    return pid;
}

static int setup(void **state) {
    static fixture f;
    tools[0] = (sipp_tool){"get_weather", "The weather now, in a unit", WEATHER_SCHEMA};
    tools[1] = (sipp_tool){"get_time", "The time in a zone", TIME_SCHEMA};
    char *argv[] = {"/usr/bin/python3", FAULT_SERVER, NULL};
    f.server = spawn(argv, &f.server_in, &f.seen, false);
    char line[32];
    if (f.server < 0 || !f.seen || !fgets(line, sizeof line, f.seen) || (f.port = atoi(line)) <= 0)
        return -1;
    if (sipp_client_new(NULL, &f.client, NULL) != SIPP_OK) return -1;
    if (scratch_dir_make(f.tmpdir, sizeof f.tmpdir, "remote-tools") != 0) return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    sipp_client_free(f->client);
    close(f->server_in); /* the server ends when its stdin closes */
    fclose(f->seen);
    waitpid(f->server, NULL, 0);
    return scratch_dir_remove(f->tmpdir);
}

/* The body of the last request the fault server got (new reference). */
static json_t *last_body(fixture *f) {
    char *line = NULL;
    size_t cap = 0;
    if (getline(&line, &cap, f->seen) < 0) fail_msg("the fault server said nothing");
    json_t *j = json_loads(line, 0, NULL);
    free(line);
    assert_non_null(j);
    json_t *b = json_incref(json_object_get(j, "body"));
    json_decref(j);
    return b;
}

static sipp_endpoint *provider(fixture *f, const char *id, sipp_provider_kind kind,
                               const char *scenario) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/%s/v1", f->port, scenario);
    sipp_provider_params pp;
    sipp_provider_params_init(&pp, sizeof pp);
    pp.kind = kind;
    pp.model = "m";
    pp.base_url = url;
    pp.api_key = "k-0123456789";
    pp.allow_private_network = true;
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_client_remove(f->client, id, NULL);
    if (sipp_client_add_provider(f->client, id, &pp, &ep, &err) != SIPP_OK)
        fail_msg("provider: %s", err.message);
    return ep;
}

/* What the deltas of one run said. */
typedef struct collected {
    char order[64]; /* a letter per delta: c content, r reasoning, T a call's first, t a piece */
    char content[512], reasoning[512];
    char ids[4][64], names[4][64], args[4][256];
    int n_calls;
} collected;

static void append(char *dst, size_t cap, const char *s, size_t n) {
    size_t len = strlen(dst);
    if (len + n >= cap) n = cap - len - 1;
    memcpy(dst + len, s, n);
    dst[len + n] = '\0';
}

static void on_delta(const sipp_delta *d, void *ud) {
    collected *c = ud;
    char k = d->kind == SIPP_DELTA_CONTENT ? 'c' : d->kind == SIPP_DELTA_REASONING ? 'r'
             : d->tool_name                ? 'T' : 't';
    append(c->order, sizeof c->order, &k, 1);
    switch (d->kind) {
    case SIPP_DELTA_CONTENT: append(c->content, sizeof c->content, d->text, d->len); break;
    case SIPP_DELTA_REASONING: append(c->reasoning, sizeof c->reasoning, d->text, d->len); break;
    case SIPP_DELTA_TOOL_CALL:
        assert_true(d->tool_index < 4);
        if (d->tool_name) {
            assert_int_equal(d->tool_index, c->n_calls); /* calls open in order, named first */
            assert_non_null(d->tool_id);
            snprintf(c->ids[d->tool_index], 64, "%s", d->tool_id);
            snprintf(c->names[d->tool_index], 64, "%s", d->tool_name);
            c->n_calls++;
        } else {
            assert_true((int)d->tool_index < c->n_calls); /* never a piece before its name */
        }
        append(c->args[d->tool_index], sizeof c->args[0], d->text, d->len);
        break;
    }
}

/* Runs a chat to its end (the response lives until the run is freed); `st` is what the run
 * ended with. */
static sipp_run *chat(sipp_endpoint *ep, const sipp_chat_message *m, size_t n, sipp_text_params *p,
                      collected *c, const sipp_response **r) {
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    memset(c, 0, sizeof *c);
    p->on_delta = on_delta;
    p->delta_user_data = c;
    if (sipp_chat_ex(ep, m, n, p, &run, &err) != SIPP_OK) fail_msg("chat: %s", err.message);
    assert_int_equal(sipp_run_wait(run, r, &err), SIPP_OK);
    return run;
}

static sipp_text_params tool_params(sipp_tool_choice choice) {
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    p.max_tokens = 64;
    p.tools = tools;
    p.n_tools = 2;
    p.tool_choice = choice;
    return p;
}

/* The scripted answer: reasoning "Let me think", text "Checking.", then get_weather {"unit":
 * "celsius"} and get_time {"zone": "utc"}. */
static void expect_scripted_answer(const sipp_response *r, const collected *c, bool streamed,
                                   const char *id0, const char *id1) {
    if (r->status != SIPP_OK) fail_msg("run: %s", r->error_message);
    assert_int_equal(r->finish_reason, SIPP_FINISH_TOOL_CALLS);
    assert_string_equal(r->text, "Checking.");
    assert_string_equal(r->reasoning, "Let me think");
    assert_int_equal(r->n_tool_calls, 2);
    const char *ids[] = {id0, id1}, *names[] = {"get_weather", "get_time"};
    const char *args[] = {"{\"unit\": \"celsius\"}", "{\"zone\": \"utc\"}"};
    for (int i = 0; i < 2; i++) {
        assert_string_equal(r->tool_calls[i].id, ids[i]);
        assert_string_equal(r->tool_calls[i].name, names[i]);
        json_t *got = json_loads(r->tool_calls[i].arguments, 0, NULL), *want = json_loads(args[i], 0, NULL);
        assert_true(json_equal(got, want));
        json_decref(got);
        json_decref(want);
        /* the deltas rebuild the same calls */
        assert_string_equal(c->ids[i], ids[i]);
        assert_string_equal(c->names[i], names[i]);
        assert_string_equal(c->args[i], r->tool_calls[i].arguments);
    }
    assert_int_equal(c->n_calls, 2);
    assert_string_equal(c->content, "Checking.");
    assert_string_equal(c->reasoning, "Let me think");
    /* in the order the peer sent them; a streamed call's arguments came in pieces */
    if (streamed)
        assert_true(strncmp(c->order, "r", 1) == 0 && strstr(c->order, "cTtt") && strstr(c->order, "T") != strrchr(c->order, 'T'));
    else
        assert_true(strstr(c->order, "rcTT") != NULL);
}

/* ---- OpenAI ------------------------------------------------------------------------------ */

static void openai_tools_out_and_calls_in(void **state) {
    fixture *f = *state;
    const char *scenarios[] = {"tools", "tools_whole"};
    for (int s = 0; s < 2; s++) {
        sipp_endpoint *ep = provider(f, "oai", SIPP_PROVIDER_OPENAI, scenarios[s]);
        sipp_chat_message m[] = {{.role = "system", .content = "be brief"},
                                 {.role = "user", .content = "Weather and time?"}};
        sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_REQUIRED);
        collected c;
        const sipp_response *r;
        sipp_run *run = chat(ep, m, 2, &p, &c, &r);
        expect_scripted_answer(r, &c, s == 0, "call_a", "call_b");
        sipp_run_free(run);
        json_t *b = last_body(f);
        json_t *t0 = json_array_get(json_object_get(b, "tools"), 0);
        assert_string_equal(json_string_value(json_object_get(t0, "type")), "function");
        json_t *fn = json_object_get(t0, "function");
        assert_string_equal(json_string_value(json_object_get(fn, "name")), "get_weather");
        assert_string_equal(json_string_value(json_object_get(fn, "description")),
                            "The weather now, in a unit");
        json_t *want = json_loads(WEATHER_SCHEMA, 0, NULL);
        assert_true(json_equal(json_object_get(fn, "parameters"), want));
        json_decref(want);
        assert_string_equal(json_string_value(json_object_get(b, "tool_choice")), "required");
        assert_true(json_is_true(json_object_get(b, "parallel_tool_calls")));
        json_decref(b);
    }
}

/* The round trip: the calls and their results go back in OpenAI's shape; a named choice and
 * parallel calls off are mapped. */
static void openai_round_trip_and_named_choice(void **state) {
    fixture *f = *state;
    sipp_endpoint *ep = provider(f, "oai", SIPP_PROVIDER_OPENAI_COMPATIBLE, "tools_answer");
    sipp_tool_call calls[] = {{"call_a", "get_weather", "{\"unit\":\"celsius\"}"},
                              {"call_b", "get_time", "{\"zone\":\"utc\"}"}};
    sipp_chat_message m[] = {
        {.role = "user", .content = "Weather and time?"},
        {.role = "assistant", .tool_calls = calls, .n_tool_calls = 2},
        {.role = "tool", .content = "21 C", .tool_call_id = "call_a"},
        {.role = "tool", .content = "12:00", .tool_call_id = "call_b"},
    };
    sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_NAMED);
    p.tool_choice_name = "get_time";
    p.parallel_tool_calls = false;
    collected c;
    const sipp_response *r;
    sipp_run *run = chat(ep, m, 4, &p, &c, &r);
    assert_int_equal(r->status, SIPP_OK);
    assert_string_equal(r->text, "It is 21 C.");
    assert_int_equal(r->finish_reason, SIPP_FINISH_STOP);
    assert_int_equal(r->n_tool_calls, 0);
    assert_string_equal(c.order, "c");
    sipp_run_free(run);
    json_t *b = last_body(f);
    json_t *msgs = json_object_get(b, "messages");
    json_t *want = json_loads(
        "[{\"role\":\"user\",\"content\":\"Weather and time?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
        "{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"arguments\":\"{\\\"unit\\\":\\\"celsius\\\"}\"}},"
        "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_time\","
        "\"arguments\":\"{\\\"zone\\\":\\\"utc\\\"}\"}}]},"
        "{\"role\":\"tool\",\"content\":\"21 C\",\"tool_call_id\":\"call_a\"},"
        "{\"role\":\"tool\",\"content\":\"12:00\",\"tool_call_id\":\"call_b\"}]",
        0, NULL);
    assert_non_null(want);
    if (!json_equal(msgs, want)) fail_msg("messages: %s", json_dumps(msgs, 0));
    json_decref(want);
    json_t *choice = json_object_get(b, "tool_choice");
    assert_string_equal(json_string_value(json_object_get(choice, "type")), "function");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(choice, "function"), "name")), "get_time");
    assert_true(json_is_false(json_object_get(b, "parallel_tool_calls")));
    json_decref(b);
}

/* Reasoning kept inline (in <think></think>) or dropped. */
static void openai_reasoning_modes(void **state) {
    fixture *f = *state;
    sipp_endpoint *ep = provider(f, "oai", SIPP_PROVIDER_OPENAI, "tools");
    sipp_chat_message m[] = {{.role = "user", .content = "Weather?"}};
    const struct { sipp_reasoning_mode mode; const char *text; } cases[] = {
        {SIPP_REASONING_INLINE, "<think>Let me think</think>Checking."},
        {SIPP_REASONING_DROP, "Checking."},
    };
    for (int i = 0; i < 2; i++) {
        sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_AUTO);
        p.reasoning_mode = cases[i].mode;
        collected c;
        const sipp_response *r;
        sipp_run *run = chat(ep, m, 1, &p, &c, &r);
        assert_int_equal(r->status, SIPP_OK);
        assert_string_equal(r->text, cases[i].text);
        assert_string_equal(r->reasoning, "");
        assert_int_equal(r->n_tool_calls, 2);
        sipp_run_free(run);
        json_decref(last_body(f));
    }
}

/* A tool without parameters or description (both optional in the C API): an empty object
 * schema goes out, in both shapes. */
static void tool_without_parameters(void **state) {
    fixture *f = *state;
    const sipp_provider_kind kinds[] = {SIPP_PROVIDER_OPENAI, SIPP_PROVIDER_ANTHROPIC};
    sipp_tool bare[] = {{"ping", NULL, NULL}};
    for (int i = 0; i < 2; i++) {
        sipp_endpoint *ep = provider(f, "bare", kinds[i], "ok");
        sipp_chat_message m[] = {{.role = "user", .content = "ping?"}};
        sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_AUTO);
        p.tools = bare;
        p.n_tools = 1;
        collected c;
        const sipp_response *r;
        sipp_run *run = chat(ep, m, 1, &p, &c, &r);
        assert_int_equal(r->status, SIPP_OK);
        sipp_run_free(run);
        json_t *b = last_body(f);
        json_t *t = json_array_get(json_object_get(b, "tools"), 0);
        if (i == 0) t = json_object_get(t, "function");
        json_t *want = json_loads("{\"type\":\"object\",\"properties\":{}}", 0, NULL);
        assert_true(json_equal(json_object_get(t, i == 0 ? "parameters" : "input_schema"), want));
        assert_null(json_object_get(t, "description"));
        json_decref(want);
        json_decref(b);
    }
}

/* ---- Anthropic --------------------------------------------------------------------------- */

static void anthropic_tools_out_and_calls_in(void **state) {
    fixture *f = *state;
    const char *scenarios[] = {"tools", "tools_whole"};
    for (int s = 0; s < 2; s++) {
        sipp_endpoint *ep = provider(f, "ant", SIPP_PROVIDER_ANTHROPIC, scenarios[s]);
        sipp_tool_call calls[] = {{"toolu_0", "get_time", "{\"zone\":\"utc\"}"}};
        sipp_chat_message m[] = {
            {.role = "system", .content = "be brief"},
            {.role = "user", .content = "Time?"},
            {.role = "assistant", .content = "Looking.", .tool_calls = calls, .n_tool_calls = 1},
            {.role = "tool", .content = "12:00", .tool_call_id = "toolu_0"},
            {.role = "user", .content = "And the weather?"},
        };
        sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_REQUIRED);
        p.parallel_tool_calls = false;
        collected c;
        const sipp_response *r;
        sipp_run *run = chat(ep, m, 5, &p, &c, &r);
        expect_scripted_answer(r, &c, s == 0, "toolu_a", "toolu_b");
        sipp_run_free(run);
        json_t *b = last_body(f);
        json_t *want_tools = json_pack(
            "[{s:s, s:s, s:o}, {s:s, s:s, s:o}]", "name", "get_weather", "description",
            "The weather now, in a unit", "input_schema", json_loads(WEATHER_SCHEMA, 0, NULL),
            "name", "get_time", "description", "The time in a zone", "input_schema",
            json_loads(TIME_SCHEMA, 0, NULL));
        if (!json_equal(json_object_get(b, "tools"), want_tools))
            fail_msg("tools: %s", json_dumps(json_object_get(b, "tools"), 0));
        json_decref(want_tools);
        json_t *want = json_loads("{\"type\":\"any\",\"disable_parallel_tool_use\":true}", 0, NULL);
        assert_true(json_equal(json_object_get(b, "tool_choice"), want));
        json_decref(want);
        want = json_loads(
            "[{\"role\":\"user\",\"content\":\"Time?\"},"
            "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Looking.\"},"
            "{\"type\":\"tool_use\",\"id\":\"toolu_0\",\"name\":\"get_time\",\"input\":{\"zone\":\"utc\"}}]},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_0\","
            "\"content\":\"12:00\"}]},"
            "{\"role\":\"user\",\"content\":\"And the weather?\"}]",
            0, NULL);
        if (!json_equal(json_object_get(b, "messages"), want))
            fail_msg("messages: %s", json_dumps(json_object_get(b, "messages"), 0));
        json_decref(want);
        assert_string_equal(json_string_value(json_object_get(b, "system")), "be brief");
        json_decref(b);
    }
}

/* Named and none choices; consecutive results in one user message. */
static void anthropic_choices_and_results(void **state) {
    fixture *f = *state;
    sipp_endpoint *ep = provider(f, "ant", SIPP_PROVIDER_ANTHROPIC, "ok");
    sipp_tool_call calls[] = {{"toolu_a", "get_weather", "{\"unit\":\"celsius\"}"},
                              {"toolu_b", "get_time", "{}"}};
    sipp_chat_message m[] = {
        {.role = "user", .content = "Weather and time?"},
        {.role = "assistant", .tool_calls = calls, .n_tool_calls = 2},
        {.role = "tool", .content = "21 C", .tool_call_id = "toolu_a"},
        {.role = "tool", .content = "12:00", .tool_call_id = "toolu_b"},
    };
    const char *want_choice[] = {"{\"type\":\"tool\",\"name\":\"get_time\"}", "{\"type\":\"none\"}"};
    for (int i = 0; i < 2; i++) {
        sipp_text_params p = tool_params(i == 0 ? SIPP_TOOL_CHOICE_NAMED : SIPP_TOOL_CHOICE_NONE);
        p.tool_choice_name = "get_time";
        collected c;
        const sipp_response *r;
        sipp_run *run = chat(ep, m, 4, &p, &c, &r);
        assert_int_equal(r->status, SIPP_OK);
        assert_string_equal(r->text, "Hello");
        sipp_run_free(run);
        json_t *b = last_body(f);
        json_t *want = json_loads(want_choice[i], 0, NULL);
        assert_true(json_equal(json_object_get(b, "tool_choice"), want));
        json_decref(want);
        want = json_loads(
            "[{\"role\":\"user\",\"content\":\"Weather and time?\"},"
            "{\"role\":\"assistant\",\"content\":["
            "{\"type\":\"tool_use\",\"id\":\"toolu_a\",\"name\":\"get_weather\",\"input\":{\"unit\":\"celsius\"}},"
            "{\"type\":\"tool_use\",\"id\":\"toolu_b\",\"name\":\"get_time\",\"input\":{}}]},"
            "{\"role\":\"user\",\"content\":["
            "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_a\",\"content\":\"21 C\"},"
            "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_b\",\"content\":\"12:00\"}]}]",
            0, NULL);
        if (!json_equal(json_object_get(b, "messages"), want))
            fail_msg("messages: %s", json_dumps(json_object_get(b, "messages"), 0));
        json_decref(want);
        json_decref(b);
    }
}

/* Structured output still goes through the forced tool, whose input is the text. */
static void anthropic_schema_tool_still_text(void **state) {
    fixture *f = *state;
    sipp_endpoint *ep = provider(f, "ant", SIPP_PROVIDER_ANTHROPIC, "schema_tool");
    sipp_chat_message m[] = {{.role = "user", .content = "mood?"}};
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    p.json_schema = "{\"type\":\"object\",\"properties\":{\"mood\":{\"type\":\"string\"}}}";
    collected c;
    const sipp_response *r;
    sipp_run *run = chat(ep, m, 1, &p, &c, &r);
    assert_int_equal(r->status, SIPP_OK);
    assert_string_equal(r->text, "{\"mood\": \"happy\", \"n\": 3}");
    assert_int_equal(r->finish_reason, SIPP_FINISH_STOP);
    assert_int_equal(r->n_tool_calls, 0);
    sipp_run_free(run);
    json_decref(last_body(f));
}

/* ---- bad answers and unsupported peers --------------------------------------------------- */

static void arguments_that_are_not_json_are_an_error(void **state) {
    fixture *f = *state;
    const sipp_provider_kind kinds[] = {SIPP_PROVIDER_OPENAI, SIPP_PROVIDER_ANTHROPIC};
    for (int i = 0; i < 2; i++) {
        sipp_endpoint *ep = provider(f, "bad", kinds[i], "tools_bad_args");
        sipp_chat_message m[] = {{.role = "user", .content = "Weather?"}};
        sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_AUTO);
        collected c;
        const sipp_response *r;
        sipp_run *run = chat(ep, m, 1, &p, &c, &r);
        assert_int_equal(r->status, SIPP_UPSTREAM_ERROR);
        if (!strstr(r->error_message, "tool call 0 (get_weather) has arguments that are not a JSON object"))
            fail_msg("message: %s", r->error_message);
        assert_int_equal(r->n_tool_calls, 0);
        sipp_run_free(run);
        json_decref(last_body(f));
    }
}

/* ---- a Sipp gateway endpoint ------------------------------------------------------------ */

static sipp_endpoint *gateway(fixture *f, const char *id, const char *scenario) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/%s", f->port, scenario);
    sipp_gateway_params gp;
    sipp_gateway_params_init(&gp, sizeof gp);
    gp.base_url = url;
    gp.target = "t";
    gp.auth = SIPP_GATEWAY_AUTH_NONE;
    gp.allow_private_network = true;
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_client_remove(f->client, id, NULL);
    if (sipp_client_add_gateway(f->client, id, &gp, &ep, &err) != SIPP_OK)
        fail_msg("add_gateway: %s", err.message);
    return ep;
}

/* The Sipp profile's shapes out (flat tools, tool_choice, parallel_tool_calls, reasoning_mode);
 * its `reasoning` and `tool_call` events in, as the same response and deltas. */
static void gateway_tools_out_and_calls_in(void **state) {
    fixture *f = *state;
    sipp_endpoint *ep = gateway(f, "gw", "tools");
    sipp_chat_message m[] = {{.role = "user", .content = "Weather and time?"}};
    sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_REQUIRED);
    collected c;
    const sipp_response *r;
    sipp_run *run = chat(ep, m, 1, &p, &c, &r);
    expect_scripted_answer(r, &c, true, "call_a", "call_b");
    sipp_run_free(run);
    json_t *b = last_body(f);
    json_t *t0 = json_array_get(json_object_get(b, "tools"), 0);
    assert_string_equal(json_string_value(json_object_get(t0, "name")), "get_weather");
    assert_string_equal(json_string_value(json_object_get(t0, "description")),
                        "The weather now, in a unit");
    json_t *want = json_loads(WEATHER_SCHEMA, 0, NULL);
    assert_true(json_equal(json_object_get(t0, "parameters"), want));
    json_decref(want);
    assert_int_equal(json_array_size(json_object_get(b, "tools")), 2);
    assert_string_equal(json_string_value(json_object_get(b, "tool_choice")), "required");
    assert_true(json_is_true(json_object_get(b, "parallel_tool_calls")));
    assert_string_equal(json_string_value(json_object_get(b, "reasoning_mode")), "separate");
    json_decref(b);
    /* reasoning kept inline or dropped: asked of the gateway, and applied to what comes back */
    const struct { sipp_reasoning_mode mode; const char *name, *text; } cases[] = {
        {SIPP_REASONING_INLINE, "inline", "<think>Let me think</think>Checking."},
        {SIPP_REASONING_DROP, "drop", "Checking."},
    };
    for (int i = 0; i < 2; i++) {
        p = tool_params(SIPP_TOOL_CHOICE_AUTO);
        p.reasoning_mode = cases[i].mode;
        run = chat(ep, m, 1, &p, &c, &r);
        assert_int_equal(r->status, SIPP_OK);
        assert_string_equal(r->text, cases[i].text);
        assert_string_equal(r->reasoning, "");
        assert_int_equal(r->n_tool_calls, 2);
        sipp_run_free(run);
        b = last_body(f);
        assert_string_equal(json_string_value(json_object_get(b, "reasoning_mode")), cases[i].name);
        assert_string_equal(json_string_value(json_object_get(b, "tool_choice")), "auto");
        json_decref(b);
    }
}

/* The round trip in the Sipp shape: calls {id, name, arguments as an object}, content null,
 * tool messages with their tool_call_id; a named choice is {"name"}. */
static void gateway_round_trip_and_named_choice(void **state) {
    fixture *f = *state;
    sipp_endpoint *ep = gateway(f, "gw", "tools_answer");
    sipp_tool_call calls[] = {{"call_a", "get_weather", "{\"unit\":\"celsius\"}"},
                              {"call_b", "get_time", "{\"zone\":\"utc\"}"}};
    sipp_chat_message m[] = {
        {.role = "user", .content = "Weather and time?"},
        {.role = "assistant", .tool_calls = calls, .n_tool_calls = 2},
        {.role = "tool", .content = "21 C", .tool_call_id = "call_a"},
        {.role = "tool", .content = "12:00", .tool_call_id = "call_b"},
    };
    sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_NAMED);
    p.tool_choice_name = "get_time";
    p.parallel_tool_calls = false;
    collected c;
    const sipp_response *r;
    sipp_run *run = chat(ep, m, 4, &p, &c, &r);
    if (r->status != SIPP_OK) fail_msg("run: %s", r->error_message);
    assert_string_equal(r->text, "It is 21 C.");
    assert_int_equal(r->finish_reason, SIPP_FINISH_STOP);
    assert_int_equal(r->n_tool_calls, 0);
    assert_string_equal(c.order, "c");
    sipp_run_free(run);
    json_t *b = last_body(f);
    json_t *want = json_loads(
        "[{\"role\":\"user\",\"content\":\"Weather and time?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
        "{\"id\":\"call_a\",\"name\":\"get_weather\",\"arguments\":{\"unit\":\"celsius\"}},"
        "{\"id\":\"call_b\",\"name\":\"get_time\",\"arguments\":{\"zone\":\"utc\"}}]},"
        "{\"role\":\"tool\",\"content\":\"21 C\",\"tool_call_id\":\"call_a\"},"
        "{\"role\":\"tool\",\"content\":\"12:00\",\"tool_call_id\":\"call_b\"}]",
        0, NULL);
    assert_non_null(want);
    json_t *msgs = json_object_get(b, "messages");
    if (!json_equal(msgs, want)) fail_msg("messages: %s", json_dumps(msgs, 0));
    json_decref(want);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(b, "tool_choice"), "name")), "get_time");
    assert_true(json_is_false(json_object_get(b, "parallel_tool_calls")));
    json_decref(b);
}

/* A gateway's call whose arguments are not JSON fails the run naming the call (H8). */
static void gateway_arguments_that_are_not_json_are_an_error(void **state) {
    fixture *f = *state;
    sipp_endpoint *ep = gateway(f, "gw", "tools_bad_args");
    sipp_chat_message m[] = {{.role = "user", .content = "Weather?"}};
    sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_REQUIRED);
    collected c;
    const sipp_response *r;
    sipp_run *run = chat(ep, m, 1, &p, &c, &r);
    assert_int_equal(r->status, SIPP_UPSTREAM_ERROR);
    if (!strstr(r->error_message, "tool call 0 (get_weather) has arguments that are not a JSON object"))
        fail_msg("message: %s", r->error_message);
    assert_int_equal(r->n_tool_calls, 0);
    sipp_run_free(run);
    json_decref(last_body(f));
}

/* The reasoning budget: a gateway endpoint passes it on; a provider cannot enforce one
 * (UNSUPPORTED naming it, nothing sent); a query has none. */
static void reasoning_budget_on_remote_endpoints(void **state) {
    fixture *f = *state;
    sipp_endpoint *gw = gateway(f, "gw", "tools");
    sipp_chat_message m[] = {{.role = "user", .content = "Weather and time?"}};
    sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_AUTO);
    p.reasoning_budget = 0;
    collected c;
    const sipp_response *r;
    sipp_run *run = chat(gw, m, 1, &p, &c, &r);
    assert_int_equal(r->status, SIPP_OK);
    sipp_run_free(run);
    json_t *b = last_body(f);
    assert_int_equal(json_integer_value(json_object_get(b, "reasoning_budget")), 0);
    json_decref(b);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    p.n_tools = 0;
    assert_int_equal(sipp_query(gw, "hi", &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "reasoning_budget"));
    const sipp_provider_kind kinds[] = {SIPP_PROVIDER_OPENAI, SIPP_PROVIDER_ANTHROPIC};
    for (int i = 0; i < 2; i++) {
        sipp_endpoint *ep = provider(f, "oai", kinds[i], "tools");
        p.reasoning_budget = 100;
        assert_int_equal(sipp_chat_ex(ep, m, 1, &p, &run, &err), SIPP_UNSUPPORTED);
        assert_non_null(strstr(err.message, "reasoning_budget"));
    }
    p.reasoning_budget = -2;
    assert_int_equal(sipp_chat_ex(gw, m, 1, &p, &run, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "reasoning_budget"));
}

/* ---- OpenAI-compatible: the real llama-server ------------------------------------------ */

static void llama_server_call_and_round_trip(void **state) {
    fixture *f = *state;
    const char *server = getenv("SIPP_LLAMA_SERVER");
    if (!server) server = SIPP_LLAMA_SERVER;
    const char *src = getenv("SIPP_LLAMA_SRC");
    if (!src) src = SIPP_LLAMA_SRC;
    char model[512], cmd[2048];
    snprintf(model, sizeof model, "%s/qwen25.gguf", f->tmpdir);
    snprintf(cmd, sizeof cmd,
             "'%s' --shape tiny-gpt2 --vocab-dir '%s/models' --chat-template "
             "'%s/models/templates/Qwen-Qwen2.5-7B-Instruct.jinja' --out '%s' > /dev/null",
             SIPP_MAKE_MODEL, src, src, model);
    if (system(cmd) != 0) fail_msg("sipp-make-model failed: %s", cmd);
    /* a free port: bind 0, read it, let it go (llama-server binds it next) */
    int port = 0;
    {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(s, (struct sockaddr *)&a, &len) != 0)
            fail_msg("no free port");
        port = ntohs(a.sin_port);
        close(s);
    }
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    char *argv[] = {(char *)server, "-m", model, "--jinja", "--host", "127.0.0.1", "--port", port_s,
                    "-c", "1024", "-np", "1", "-t", "2", "--no-webui", NULL};
    int in_fd;
    FILE *out;
    pid_t pid = spawn(argv, &in_fd, &out, true);
    assert_true(pid > 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", port);
    sipp_provider_params pp;
    sipp_provider_params_init(&pp, sizeof pp);
    pp.kind = SIPP_PROVIDER_OPENAI_COMPATIBLE;
    pp.model = "tiny";
    pp.base_url = url;
    pp.allow_private_network = true;
    sipp_endpoint *ep;
    assert_int_equal(sipp_client_add_provider(f->client, "llama", &pp, &ep, NULL), SIPP_OK);
    /* the assistant turn starts with Qwen's call tag: llama.cpp's grammar does the rest */
    sipp_chat_message m[4] = {{.role = "user", .content = "What is the weather?"},
                              {.role = "assistant", .content = "<tool_call>\n"}};
    sipp_text_params p = tool_params(SIPP_TOOL_CHOICE_REQUIRED);
    p.n_tools = 1;
    p.temperature = 0.0f;
    p.max_tokens = 40;
    collected c;
    const sipp_response *r = NULL;
    sipp_run *run = NULL;
    for (int tries = 0; tries < 600; tries++) { /* until it has loaded (503 until then) */
        run = chat(ep, m, 2, &p, &c, &r);
        if (r->status == SIPP_OK || (r->status != SIPP_TRANSPORT && r->status != SIPP_OVERLOADED))
            break;
        sipp_run_free(run);
        run = NULL;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (r->status != SIPP_OK) fail_msg("llama-server: %s", r->error_message);
    assert_true(r->n_tool_calls >= 1);
    assert_int_equal(c.n_calls, (int)r->n_tool_calls);
    sipp_tool_call call = r->tool_calls[0];
    assert_true(strlen(call.id) > 0);
    assert_string_equal(call.name, "get_weather");
    assert_string_equal(c.ids[0], call.id);
    assert_string_equal(c.args[0], call.arguments); /* the pieces add up to the arguments */
    json_t *args = json_loads(call.arguments, 0, NULL);
    const char *unit = json_string_value(json_object_get(args, "unit"));
    assert_true(unit && (strcmp(unit, "celsius") == 0 || strcmp(unit, "fahrenheit") == 0));
    json_decref(args);
    assert_non_null(strchr(c.order, 't')); /* the arguments came in pieces */
    /* the round trip: the call and its result go back; llama-server renders them with the
     * template (it refuses a result it cannot place) and answers */
    char *id = strdup(call.id), *arguments = strdup(call.arguments);
    sipp_run_free(run);
    sipp_tool_call back = {id, "get_weather", arguments};
    m[1] = (sipp_chat_message){.role = "assistant", .tool_calls = &back, .n_tool_calls = 1};
    m[2] = (sipp_chat_message){.role = "tool", .content = "21 degrees", .tool_call_id = id};
    p.tool_choice = SIPP_TOOL_CHOICE_NONE;
    p.max_tokens = 4;
    run = chat(ep, m, 3, &p, &c, &r);
    if (r->status != SIPP_OK) fail_msg("round trip: %s", r->error_message);
    assert_int_equal(r->n_tool_calls, 0);
    assert_true(r->finish_reason == SIPP_FINISH_STOP || r->finish_reason == SIPP_FINISH_LENGTH);
    sipp_run_free(run);
    free(id);
    free(arguments);
    sipp_client_remove(f->client, "llama", NULL);
    kill(pid, SIGTERM);
    close(in_fd);
    fclose(out);
    waitpid(pid, NULL, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_tools_out_and_calls_in),
        cmocka_unit_test(openai_round_trip_and_named_choice),
        cmocka_unit_test(openai_reasoning_modes),
        cmocka_unit_test(tool_without_parameters),
        cmocka_unit_test(anthropic_tools_out_and_calls_in),
        cmocka_unit_test(anthropic_choices_and_results),
        cmocka_unit_test(anthropic_schema_tool_still_text),
        cmocka_unit_test(arguments_that_are_not_json_are_an_error),
        cmocka_unit_test(gateway_tools_out_and_calls_in),
        cmocka_unit_test(gateway_round_trip_and_named_choice),
        cmocka_unit_test(gateway_arguments_that_are_not_json_are_an_error),
        cmocka_unit_test(reasoning_budget_on_remote_endpoints),
        cmocka_unit_test(llama_server_call_and_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
