/*
 * test_template_sandbox.c — A11: a chat template from a model file is untrusted code. Copies of
 * the tiny chat model with their tokenizer.chat_template replaced by Jinja sandbox-escape
 * constructs (Python attribute walks, Jinja globals, huge loops) either fail to render with a
 * clear error or render without reaching anything outside the template's data: no crash, no
 * hang, no leak (ASan), and the endpoint set stays as it was.
 *
 * The render is checked twice: through the bridge (src/engine/llama_bridge.cpp) to see the
 * exact prompt text, and through the public API (sipp_client_add_local + sipp_chat).
 */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include "engine/llama_bridge.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

#include <time.h>
#include <unistd.h>

static char tmpdir[256];

static int setup(void **state) {
    (void)state;
    assert_int_equal(scratch_dir_make(tmpdir, sizeof tmpdir, "template"), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return scratch_dir_remove(tmpdir);
}

/* Writes a copy of the chat model whose chat template is `tmpl` to `path`: the new metadata
 * (gguf_write_to_file with only_meta pads to the alignment), then the original data section,
 * whose tensor offsets are relative to its start. */
static void model_with_template(const char *tmpl, const char *path) {
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(CHAT_MODEL, gp);
    assert_non_null(g);
    size_t data_off = gguf_get_data_offset(g);
    gguf_set_val_str(g, "tokenizer.chat_template", tmpl);
    assert_true(gguf_write_to_file(g, path, true));
    gguf_free(g);
    FILE *in = fopen(CHAT_MODEL, "rb"), *out = fopen(path, "ab");
    assert_non_null(in);
    assert_non_null(out);
    assert_int_equal(fseek(in, (long)data_off, SEEK_SET), 0);
    static char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* The outcome of one template: rendered text (malloc'd) or the error. */
typedef struct outcome {
    bool parsed;   /* sipp__chat_templates_new accepted it */
    bool rendered; /* sipp__chat_render returned 0 */
    char *text;
    char err[SIPP_ERROR_MESSAGE_CAP];
} outcome;

static outcome render_direct(const char *path) {
    outcome o = {0};
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    struct llama_model *m = llama_model_load_from_file(path, mp);
    assert_non_null(m);
    sipp__chat_templates *t = sipp__chat_templates_new(m, o.err, sizeof o.err);
    o.parsed = t != NULL;
    if (t) {
        sipp_message msgs[] = {{"system", "be brief"}, {"user", "hello"}};
        o.rendered = sipp__chat_render(t, msgs, 2, &o.text, o.err, sizeof o.err) == 0;
        sipp__chat_templates_free(t);
    }
    llama_model_free(m);
    return o;
}

/* Text that would only appear if the template reached Python or process internals. */
static void assert_nothing_escaped(const char *tmpl, const char *text) {
    const char *leaks[] = {"<class", "__", "globals", "builtins", "module", "function",
                           "uid=", "root:", "subprocess", "object at 0x", "Popen"};
    for (size_t i = 0; i < sizeof leaks / sizeof leaks[0]; i++)
        if (strstr(text, leaks[i]))
            fail_msg("template %s rendered '%s', which holds '%s'", tmpl, text, leaks[i]);
}

static const char *const escapes[] = {
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__['__builtins__'] }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ config.__class__.__init__.__globals__ }}",
    "{{ request.application.__globals__ }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{% for m in messages %}{{ m.__class__ }}{{ m.content.__class__.__mro__ }}{% endfor %}",
    "{% for m in messages %}{{ m|attr('__class__') }}{{ m['__class__'] }}{% endfor %}",
    "{{ messages[0].content.upper.__globals__ }}",
    "{{ (messages|first).items.__self__.__class__ }}",
    "{% set x = namespace(a=1) %}{{ x.__class__.__dict__ }}",
    "{{ raise_exception.__globals__ }}",
    "{{ strftime_now.__globals__ }}",
    "{% import 'os' as os %}{{ os.system('id') }}",
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
};

/* Each escape construct fails to parse or render with a message, or renders nothing of the
 * host; the bridge never throws past its C boundary. */
static void escapes_render_safely(void **state) {
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/escape.gguf", tmpdir);
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        model_with_template(escapes[i], path);
        outcome o = render_direct(path);
        if (o.rendered) {
            assert_nothing_escaped(escapes[i], o.text);
            fprintf(stderr, "# %s -> rendered '%s'\n", escapes[i], o.text);
        } else {
            assert_true(o.err[0] != '\0');
            assert_null(strchr(o.err, '\n'));
            fprintf(stderr, "# %s -> %s: %s\n", escapes[i], o.parsed ? "render error" : "refused",
                    o.err);
        }
        free(o.text);
    }
}

/* Templates that never finish or allocate without bound are refused at load by the probe
 * (llama_bridge.cpp: a forked render under CPU, memory and wall-clock limits), in seconds.
 * One CPU runaway is enough: each costs the probe's full CPU budget. */
static const char *const runaways[] = {
    "{% for i in range(1000000000) %}{% endfor %}{{ messages[0].content }}",
    "{{ 'x' * 1000000000 }}",
    "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}"
    "{{ ns.s|length }}",
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void runaway_templates_are_refused(void **state) {
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/runaway.gguf", tmpdir);
    for (size_t i = 0; i < sizeof runaways / sizeof runaways[0]; i++) {
        model_with_template(runaways[i], path);
        double t0 = now_s();
        outcome o = render_direct(path);
        double dt = now_s() - t0;
        fprintf(stderr, "# %s -> %s (%.1f s)\n", runaways[i], o.err, dt);
        assert_false(o.parsed);
        assert_null(o.text);
        if (!strstr(o.err, "refused")) fail_msg("'%s': %s", runaways[i], o.err);
        assert_true(dt < 15.0);
    }
}

/* Through the public API (with the runaways the probe stops fast: memory and stack): a model
 * with an escape or runaway template still loads and serves raw
 * queries; chat either works without leaking anything or fails with the refusal; the endpoint
 * set holds exactly what was added. */
static void public_api_survives_hostile_templates(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    char path[300];
    const char *tmpls[] = {escapes[0], escapes[2], escapes[6], escapes[18], runaways[1],
                           runaways[2]};
    for (size_t i = 0; i < sizeof tmpls / sizeof tmpls[0]; i++) {
        snprintf(path, sizeof path, "%s/api-%zu.gguf", tmpdir, i);
        model_with_template(tmpls[i], path);
        sipp_endpoint *ep = add_model(c, "hostile", path, 1);
        sipp_message m[] = {{"user", "hello"}};
        sipp_text_params p = greedy(4);
        sipp_run *run = NULL;
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        sipp_status st = sipp_chat(ep, m, 1, &p, &run, &err);
        if (st == SIPP_OK) {
            const sipp_response *r = NULL;
            assert_int_equal(sipp_run_wait(run, &r, &err), SIPP_OK);
            assert_int_equal(r->status, SIPP_OK);
            sipp_run_free(run);
        } else {
            assert_null(run);
            /* refused at load: UNSUPPORTED; failed to render this conversation: INVALID_ARGUMENT */
            if (st != SIPP_UNSUPPORTED && st != SIPP_INVALID_ARGUMENT)
                fail_msg("chat with '%s': %s", tmpls[i], err.message);
            if (i >= 4) assert_int_equal(st, SIPP_UNSUPPORTED);
            /* a construct that renders as undefined leaves an empty prompt */
            if (!strstr(err.message, "chat template") && !strstr(err.message, "no tokens"))
                fail_msg("chat with %s: %s", tmpls[i], err.message);
            assert_null(strchr(err.message, '\n'));
            if (i >= 4) assert_non_null(strstr(err.message, "refused"));
        }
        char *t = query_text(ep, "Once upon a time", &p, NULL); /* raw prompts still work */
        free(t);
        assert_ptr_equal(sipp_client_get_endpoint(c, "hostile"), ep);
        assert_int_equal(sipp_client_remove(c, "hostile", &err), SIPP_OK);
        assert_null(sipp_client_get_endpoint(c, "hostile"));
    }
    sipp_client_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escapes_render_safely),
        cmocka_unit_test(runaway_templates_are_refused),
        cmocka_unit_test(public_api_survives_hostile_templates),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
