// llama_bridge.cpp — the one C++ file of the engine: wraps llama.cpp's common helpers for chat
// templates (Jinja included) and JSON schemas behind the C interface in llama_bridge.h.
// Every entry point catches all exceptions and turns them into an error message.
//
// A chat template comes from the model file, so it is untrusted code. llama.cpp's Jinja engine
// has no Python objects to escape to (attribute walks such as ''.__class__ render as undefined,
// import/include/extends do not parse), but it has no bound on work: `range(1000000000)` or
// `'x' * 1000000000` allocate gigabytes and nested loops run for hours. So before a template is
// accepted it is parsed and rendered once on a sample conversation in a forked child process
// with a CPU-time limit (3 s), an address-space limit (+1 GiB) and a wall-clock deadline (10 s)
// (template_probe());
// a template that does not finish inside them is refused like one that does not parse. Renders
// of real conversations later run in-process without a bound (docs/reliability.md, A11).

#include "llama_bridge.h"

#include "chat.h"
#include "json-schema-to-grammar.h"
#include "reasoning-budget.h"
#include "json.h"
#include "llama.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#ifndef __EMSCRIPTEN__
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#endif

// Limits of the load-time template check.
static const size_t TEMPLATE_MAX_BYTES = 256 * 1024;  // real templates are under 64 KiB

struct sipp__chat_templates {
    common_chat_templates_ptr ptr;
};

static void set_err(char *errbuf, size_t errcap, const std::string &msg) {
    if (!errbuf || errcap == 0) return;
    std::snprintf(errbuf, errcap, "%s", msg.c_str());
    for (char *p = errbuf; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

static char *dup_string(const std::string &s) {
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (p) std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

#ifndef __EMSCRIPTEN__
static const int PROBE_SECONDS = 3;       // CPU time of the probe
static const int PROBE_WALL_SECONDS = 10; // wall clock: generous, other processes share the CPU
static const unsigned long long PROBE_EXTRA_BYTES = 1ull << 30; // address space over the parent's

// Parses the template and renders a sample conversation with it, in this process.
static void template_sample_render(const llama_model *model) {
    common_chat_templates_ptr t = common_chat_templates_init(model, "");
    common_chat_templates_inputs in;
    const char *const turns[][2] = {{"system", "You are brief."}, {"user", "Hello"},
                                    {"assistant", "Hi."}, {"user", "How are you?"}};
    for (const auto &turn : turns) {
        common_chat_msg m;
        m.role = turn[0];
        m.content = turn[1];
        in.messages.push_back(std::move(m));
    }
    in.add_generation_prompt = true;
    in.use_jinja = true;
    (void)common_chat_templates_apply(t.get(), in);
}

// The process's address-space size in bytes (0 when unknown).
static unsigned long long vm_size() {
    unsigned long long pages = 0;
    FILE *f = std::fopen("/proc/self/statm", "r");
    if (!f) return 0;
    if (std::fscanf(f, "%llu", &pages) != 1) pages = 0;
    std::fclose(f);
    return pages * (unsigned long long)sysconf(_SC_PAGESIZE);
}
#endif

// Runs template_sample_render() in a child process under PROBE_SECONDS of CPU time,
// PROBE_WALL_SECONDS of wall-clock time and PROBE_EXTRA_BYTES of address space. Returns 0 when
// the template finished (or did not parse: the in-process attempt then reports why), -1 with
// errbuf when it ran out of a budget or crashed. The child runs only the render and leaves with
// _exit(); fork() failing skips the probe.
static int template_probe(const llama_model *model, char *errbuf, size_t errcap) {
#ifdef __EMSCRIPTEN__
    (void)model, (void)errbuf, (void)errcap;
    return 0;
#else
    unsigned long long vm = vm_size();
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        struct rlimit cpu = {(rlim_t)PROBE_SECONDS, (rlim_t)PROBE_SECONDS + 1};
        setrlimit(RLIMIT_CPU, &cpu);
        if (vm) {
            struct rlimit as = {(rlim_t)(vm + PROBE_EXTRA_BYTES), (rlim_t)(vm + PROBE_EXTRA_BYTES)};
            setrlimit(RLIMIT_AS, &as);
        }
        int code = 0;
        try {
            template_sample_render(model);
        } catch (const std::bad_alloc &) {
            code = 3;
        } catch (...) {
            code = 1;
        }
        _exit(code);
    }
    struct timespec start, now, pause = {0, 5 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0) return 0; /* SIGCHLD ignored by the application: no status to read */
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= PROBE_WALL_SECONDS) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            set_err(errbuf, errcap, "the model's chat template did not finish rendering a sample "
                                    "conversation within " + std::to_string(PROBE_WALL_SECONDS) +
                                    " s (refused: runaway loop)");
            return -1;
        }
        nanosleep(&pause, nullptr);
    }
    if (WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 1)) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
        set_err(errbuf, errcap, "the model's chat template needs more than " +
                                    std::to_string(PROBE_EXTRA_BYTES >> 20) +
                                    " MiB to render a sample conversation (refused)");
        return -1;
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU) {
        set_err(errbuf, errcap, "the model's chat template used more than " +
                                    std::to_string(PROBE_SECONDS) +
                                    " s of CPU rendering a sample conversation "
                                    "(refused: runaway loop)");
        return -1;
    }
    set_err(errbuf, errcap, "the model's chat template crashed the renderer on a sample "
                            "conversation (" + std::string(WIFSIGNALED(status) ? "signal " +
                            std::to_string(WTERMSIG(status)) : "exit " +
                            std::to_string(WEXITSTATUS(status))) + "; refused)");
    return -1;
#endif
}

extern "C" sipp__chat_templates *sipp__chat_templates_new(const llama_model *model, char *errbuf,
                                                          size_t errcap) {
    const char *src = llama_model_chat_template(model, nullptr);
    if (!src) {
        set_err(errbuf, errcap, "the model has no chat template");
        return nullptr;
    }
    if (std::strlen(src) > TEMPLATE_MAX_BYTES) {
        set_err(errbuf, errcap, "the model's chat template is " + std::to_string(std::strlen(src)) +
                                    " bytes (limit " + std::to_string(TEMPLATE_MAX_BYTES) + ")");
        return nullptr;
    }
    if (template_probe(model, errbuf, errcap) != 0) return nullptr;
    try {
        // parse first: a template that throws must not leave a wrapper behind
        common_chat_templates_ptr parsed = common_chat_templates_init(model, "");
        auto *t = new sipp__chat_templates;
        t->ptr = std::move(parsed);
        return t;
    } catch (const std::exception &e) {
        // llama.cpp rethrows a copy sliced to std::exception, whose what() says nothing
        std::string why = std::strcmp(e.what(), "std::exception") == 0
                              ? "unsupported construct (SIPP_LOG=warn shows llama.cpp's reason)"
                              : e.what();
        set_err(errbuf, errcap, "the model's chat template does not parse: " + why);
    } catch (...) {
        set_err(errbuf, errcap, "the model's chat template does not parse");
    }
    return nullptr;
}

extern "C" void sipp__chat_templates_free(sipp__chat_templates *t) { delete t; }

extern "C" int sipp__chat_render(sipp__chat_templates *t, const sipp_message *messages, size_t n,
                                 char **out, char *errbuf, size_t errcap) {
    try {
        common_chat_templates_inputs in;
        for (size_t i = 0; i < n; i++) {
            common_chat_msg m;
            m.role = messages[i].role;
            m.content = messages[i].content ? messages[i].content : "";
            in.messages.push_back(std::move(m));
        }
        in.add_generation_prompt = true;
        in.use_jinja = true;
        common_chat_params params = common_chat_templates_apply(t->ptr.get(), in);
        *out = dup_string(params.prompt);
        if (!*out) {
            set_err(errbuf, errcap, "out of memory");
            return -1;
        }
        return 0;
    } catch (const std::exception &e) {
        set_err(errbuf, errcap, std::string("chat template failed: ") + e.what());
    } catch (...) {
        set_err(errbuf, errcap, "chat template failed");
    }
    return -1;
}

extern "C" int sipp__json_schema_to_grammar(const char *schema, char **out, char *errbuf,
                                            size_t errcap) {
    try {
        common_json json = common_json::parse(schema);
        std::string grammar = json_schema_to_grammar(json, /*force_gbnf=*/true);
        if (grammar.empty()) {
            set_err(errbuf, errcap, "the JSON schema cannot be enforced");
            return -1;
        }
        *out = dup_string(grammar);
        return *out ? 0 : -1;
    } catch (const std::exception &e) {
        set_err(errbuf, errcap, std::string("the JSON schema cannot be enforced: ") + e.what());
    } catch (...) {
        set_err(errbuf, errcap, "the JSON schema cannot be enforced");
    }
    return -1;
}

// ---- tools and reasoning (issue 18) ----------------------------------------------------------
// The chat goes through llama.cpp's own chat layer as llama-server uses it: the template renders
// the tools, common_chat_templates_apply returns the grammar (lazy, with its triggers, when the
// model may answer in text) and the parser; the output is parsed with common_chat_parse, whole
// text each time (partial while streaming), and diffed against the last parse.

struct sipp__chat_parser {
    common_chat_parser_params pp;
    std::string text;
    common_chat_msg msg;                // the last parse
    std::vector<std::string> ids;       // ids given to calls, by index (stable across parses)
    std::set<size_t> sent_names;        // calls whose id and name were emitted
    bool drop_reasoning = false;
    std::vector<sipp_tool_call> calls;  // views of msg.tool_calls
    bool single_call = false; // parallel calls off: a second call ends the answer
    bool complete = false;    // ... and one was begun
};

static std::string make_call_id() {
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    thread_local std::mt19937_64 rng{std::random_device{}()};
    // 9 letters and digits: Mistral's templates refuse any other id when the call comes back
    std::string id;
    for (int i = 0; i < 9; i++) id += alnum[rng() % (sizeof alnum - 1)];
    return id;
}

// The one token `text` is, or LLAMA_TOKEN_NULL.
static llama_token single_token(const llama_vocab *vocab, const std::string &text) {
    std::vector<llama_token> ids = common_tokenize(vocab, text, false, true);
    return ids.size() == 1 ? ids[0] : LLAMA_TOKEN_NULL;
}

extern "C" void sipp__chat_prepared_free(sipp__chat_prepared *pr) {
    if (!pr) return;
    std::free(pr->prompt);
    if (pr->grammar) llama_sampler_free(pr->grammar);
    if (pr->budget) llama_sampler_free(pr->budget);
    for (size_t i = 0; i < pr->n_stops; i++) std::free(pr->stops[i]);
    std::free(pr->stops);
    std::free(pr->preserved);
    sipp__chat_parser_free(pr->parser);
    *pr = sipp__chat_prepared{};
}

// tool_choice required or named: llama.cpp's grammar lets the model write free text (a rule
// `until-N?` in `root`) before the call, so a model that never starts one never ends; OpenAI's
// contract is calls only. The optional free-text element is taken out of the root rule, so the
// answer is the call (a thinking block before it stays allowed).
static std::string force_calls(const std::string &grammar) {
    size_t root = grammar.rfind("\nroot ::= ", std::string::npos);
    root = grammar.compare(0, 9, "root ::= ") == 0 ? 0 : (root == std::string::npos ? root : root + 1);
    if (root == std::string::npos) return grammar;
    size_t eol = grammar.find('\n', root);
    if (eol == std::string::npos) eol = grammar.size();
    std::string line = grammar.substr(root, eol - root);
    static const std::regex free_text(R"( until-[0-9]+\?)");
    line = std::regex_replace(line, free_text, "");
    return grammar.substr(0, root) + line + grammar.substr(eol);
}

// Builds the grammar sampler of a prepared chat as common_sampler_init does: trigger words that
// are one token become token triggers, a lazy grammar waits for a trigger, an eager one first
// accepts the generation prompt the template already wrote.
static llama_sampler *build_chat_grammar(const llama_vocab *vocab, const common_chat_params &cp) {
    std::vector<std::string> patterns;
    std::vector<llama_token> tokens;
    for (const auto &trig : cp.grammar_triggers) {
        switch (trig.type) {
        case COMMON_GRAMMAR_TRIGGER_TYPE_WORD: {
            llama_token t = single_token(vocab, trig.value);
            if (t != LLAMA_TOKEN_NULL)
                tokens.push_back(t);
            else
                patterns.push_back(regex_escape(trig.value));
            break;
        }
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN: patterns.push_back(trig.value); break;
        case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL: {
            const std::string &pat = trig.value;
            std::string anchored = "^$";
            if (!pat.empty())
                anchored = (pat.front() != '^' ? "^" : "") + pat + (pat.back() != '$' ? "$" : "");
            patterns.push_back(anchored);
            break;
        }
        case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN: tokens.push_back(trig.token); break;
        }
    }
    if (cp.grammar_lazy) {
        std::vector<const char *> pc;
        for (const auto &p : patterns) pc.push_back(p.c_str());
        return llama_sampler_init_grammar_lazy_patterns(vocab, cp.grammar.c_str(), "root", pc.data(),
                                                        pc.size(), tokens.data(), tokens.size());
    }
    llama_sampler *g = llama_sampler_init_grammar(vocab, cp.grammar.c_str(), "root");
    if (g && !cp.generation_prompt.empty()) {
        std::vector<llama_token> pre = common_tokenize(vocab, cp.generation_prompt, false, true);
        for (size_t i = 0; i < pre.size(); i++) {
            std::string piece = common_token_to_piece(vocab, pre[i], true);
            // some tokenizers put a space before the first special token: not the model's
            if (i == 0 && !piece.empty() && std::isspace((unsigned char)piece[0]) &&
                !std::isspace((unsigned char)cp.generation_prompt[0]))
                continue;
            llama_sampler_accept(g, pre[i]);
        }
    }
    return g;
}

// The reasoning budget (issue 18) as llama-server sets it up: llama.cpp's reasoning-budget
// sampler between the template's thinking start tag and its end tags, forcing the first end tag
// once `budget` tokens of reasoning were written (at once for 0), the generation prompt accepted
// first (a template may open the block itself). A template without a reasoning block: budget 0
// has nothing to close (or the template closed it: enable_thinking); N > 0 cannot be enforced.
static sipp_status build_budget(const llama_vocab *vocab, const common_chat_params &cp,
                                int32_t budget, bool thinking, llama_sampler **out,
                                char *errbuf, size_t errcap) {
    std::vector<llama_tokens> ends;
    for (const auto &tag : cp.thinking_end_tags)
        if (!tag.empty()) ends.push_back(common_tokenize(vocab, tag, false, true));
    if (cp.thinking_start_tag.empty() || ends.empty()) {
        if (budget == 0 || !thinking) return SIPP_OK;
        set_err(errbuf, errcap,
                "reasoning_budget: the model's chat template has no reasoning block to budget");
        return SIPP_UNSUPPORTED;
    }
    llama_tokens start = common_tokenize(vocab, cp.thinking_start_tag, false, true);
    *out = common_reasoning_budget_init(vocab, {start}, ends, ends.front(), budget);
    if (!*out) throw std::bad_alloc();
    std::vector<llama_token> pre = common_tokenize(vocab, cp.generation_prompt, false, true);
    for (size_t i = 0; i < pre.size(); i++) {
        std::string piece = common_token_to_piece(vocab, pre[i], true);
        if (i == 0 && !piece.empty() && std::isspace((unsigned char)piece[0]) &&
            !std::isspace((unsigned char)cp.generation_prompt[0]))
            continue;
        llama_sampler_accept(*out, pre[i]);
    }
    return SIPP_OK;
}

extern "C" sipp_status sipp__chat_prepare(sipp__chat_templates *t, const llama_vocab *vocab,
                                          const sipp_chat_message *messages, size_t n,
                                          const sipp_text_params *p, sipp__chat_prepared *out,
                                          char *errbuf, size_t errcap) {
    *out = sipp__chat_prepared{};
    try {
        common_chat_templates_inputs in;
        for (size_t i = 0; i < n; i++) {
            const sipp_chat_message &sm = messages[i];
            common_chat_msg m;
            m.role = sm.role;
            m.content = sm.content ? sm.content : "";
            if (sm.reasoning) m.reasoning_content = sm.reasoning;
            for (size_t k = 0; k < sm.n_tool_calls; k++) {
                common_chat_tool_call c;
                c.name = sm.tool_calls[k].name ? sm.tool_calls[k].name : "";
                c.arguments = sm.tool_calls[k].arguments ? sm.tool_calls[k].arguments : "{}";
                c.id = sm.tool_calls[k].id ? sm.tool_calls[k].id : "";
                m.tool_calls.push_back(std::move(c));
            }
            if (sm.tool_call_id) {
                m.tool_call_id = sm.tool_call_id;
                // templates that name the tool of a result read it from the call it answers
                for (const auto &prev : in.messages)
                    for (const auto &c : prev.tool_calls)
                        if (c.id == m.tool_call_id) m.tool_name = c.name;
            }
            in.messages.push_back(std::move(m));
        }
        bool named = p->tool_choice == SIPP_TOOL_CHOICE_NAMED;
        for (size_t i = 0; i < p->n_tools; i++) {
            const sipp_tool &st = p->tools[i];
            if (named && std::strcmp(st.name, p->tool_choice_name) != 0) continue;
            common_chat_tool ct;
            ct.name = st.name;
            ct.description = st.description ? st.description : "";
            ct.parameters = st.parameters ? st.parameters : "{\"type\":\"object\",\"properties\":{}}";
            in.tools.push_back(std::move(ct));
        }
        if (!in.tools.empty()) {
            auto caps = common_chat_templates_get_caps(t->ptr.get());
            if (!caps["supports_tools"] || !caps["supports_tool_calls"]) {
                set_err(errbuf, errcap, "tools: the model's chat template has no tool support");
                return SIPP_UNSUPPORTED;
            }
        }
        switch (p->tool_choice) {
        case SIPP_TOOL_CHOICE_NONE: in.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE; break;
        case SIPP_TOOL_CHOICE_REQUIRED:
        case SIPP_TOOL_CHOICE_NAMED: in.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED; break;
        default: in.tool_choice = COMMON_CHAT_TOOL_CHOICE_AUTO; break;
        }
        in.parallel_tool_calls = p->parallel_tool_calls && !named;
        in.reasoning_format = p->reasoning_mode == SIPP_REASONING_INLINE
                                  ? COMMON_REASONING_FORMAT_NONE
                                  : COMMON_REASONING_FORMAT_AUTO;
        in.add_generation_prompt = true;
        in.use_jinja = true;
        // reasoning budget 0: templates that read enable_thinking (Qwen3) render it closed
        if (p->reasoning_budget == 0 && common_chat_templates_support_enable_thinking(t->ptr.get()))
            in.enable_thinking = false;
        common_chat_params cp = common_chat_templates_apply(t->ptr.get(), in);

        auto *ps = new sipp__chat_parser;
        out->parser = ps;
        ps->pp = common_chat_parser_params(cp);
        ps->pp.reasoning_format = in.reasoning_format;
        ps->pp.parse_tool_calls = !in.tools.empty() && in.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE;
        if (!cp.parser.empty()) ps->pp.parser.load(cp.parser);
        ps->drop_reasoning = p->reasoning_mode == SIPP_REASONING_DROP;
        ps->single_call = !in.parallel_tool_calls;
        ps->msg = common_chat_parse("", true, ps->pp);
        if (!ps->pp.parse_tool_calls) ps->msg.tool_calls.clear();

        out->prompt = dup_string(cp.prompt);
        if (!out->prompt) throw std::bad_alloc();
        std::vector<int32_t> preserved;
        for (const auto &tok : cp.preserved_tokens) {
            llama_token id = single_token(vocab, tok);
            if (id != LLAMA_TOKEN_NULL) preserved.push_back(id);
        }
        if (!preserved.empty()) {
            out->preserved = static_cast<int32_t *>(std::malloc(preserved.size() * sizeof(int32_t)));
            if (!out->preserved) throw std::bad_alloc();
            std::memcpy(out->preserved, preserved.data(), preserved.size() * sizeof(int32_t));
            out->n_preserved = preserved.size();
        }
        if (!cp.additional_stops.empty()) {
            out->stops = static_cast<char **>(std::calloc(cp.additional_stops.size(), sizeof(char *)));
            if (!out->stops) throw std::bad_alloc();
            for (const auto &s : cp.additional_stops) {
                out->stops[out->n_stops] = dup_string(s);
                if (!out->stops[out->n_stops]) throw std::bad_alloc();
                out->n_stops++;
            }
        }
        if (p->reasoning_budget >= 0) {
            sipp_status bst = build_budget(vocab, cp, p->reasoning_budget, in.enable_thinking,
                                           &out->budget, errbuf, errcap);
            if (bst != SIPP_OK) {
                sipp__chat_prepared_free(out);
                return bst;
            }
        }
        if (!cp.grammar.empty() && !cp.grammar_lazy &&
            (p->tool_choice == SIPP_TOOL_CHOICE_REQUIRED || named))
            cp.grammar = force_calls(cp.grammar);
        if (!cp.grammar.empty()) {
            out->grammar = build_chat_grammar(vocab, cp);
            if (!out->grammar) {
                set_err(errbuf, errcap, "tools: llama.cpp could not build the tool-call grammar");
                sipp__chat_prepared_free(out);
                return SIPP_INVALID_ARGUMENT;
            }
        }
        return SIPP_OK;
    } catch (const std::bad_alloc &) {
        set_err(errbuf, errcap, "out of memory");
        sipp__chat_prepared_free(out);
        return SIPP_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        set_err(errbuf, errcap, std::string("chat template failed: ") + e.what());
    } catch (...) {
        set_err(errbuf, errcap, "chat template failed");
    }
    sipp__chat_prepared_free(out);
    return SIPP_INVALID_ARGUMENT;
}

// Emits one diff's pieces: reasoning, content, then the tool-call piece.
static sipp_status emit_diff(sipp__chat_parser *ps, const common_chat_msg_diff &d,
                             sipp__delta_emit_fn emit, void *ud) {
    sipp_status st = SIPP_OK;
    if (!d.reasoning_content_delta.empty() && !ps->drop_reasoning)
        st = emit(ud, SIPP_DELTA_REASONING, 0, nullptr, nullptr, d.reasoning_content_delta.data(),
                  d.reasoning_content_delta.size());
    if (st == SIPP_OK && !d.content_delta.empty())
        st = emit(ud, SIPP_DELTA_CONTENT, 0, nullptr, nullptr, d.content_delta.data(),
                  d.content_delta.size());
    if (st == SIPP_OK && d.tool_call_index != std::string::npos) {
        const auto &c = d.tool_call_delta;
        bool head = !c.name.empty();
        st = emit(ud, SIPP_DELTA_TOOL_CALL, (uint32_t)d.tool_call_index,
                  head ? c.id.c_str() : nullptr, head ? c.name.c_str() : nullptr,
                  c.arguments.data(), c.arguments.size());
    }
    return st;
}

// A call's id and name, before anything else of it.
static sipp_status emit_head(sipp__chat_parser *ps, size_t i, sipp__delta_emit_fn emit, void *ud) {
    common_chat_msg_diff h;
    h.tool_call_index = i;
    h.tool_call_delta.id = ps->msg.tool_calls[i].id;
    h.tool_call_delta.name = ps->msg.tool_calls[i].name;
    ps->sent_names.insert(i);
    return emit_diff(ps, h, emit, ud);
}

extern "C" sipp_status sipp__chat_parser_feed(sipp__chat_parser *ps, const char *text, size_t len,
                                              bool final, sipp__delta_emit_fn emit, void *ud) {
    try {
        ps->text.append(text, len);
        common_chat_msg m;
        try {
            m = common_chat_parse(ps->text, !final, ps->pp);
        } catch (const std::bad_alloc &) {
            throw;
        } catch (...) {
            if (!final) return SIPP_OK; // not parseable yet: wait for more text
            m = ps->msg;                // the parser rejects the whole: keep the last parse
        }
        if (!ps->pp.parse_tool_calls) m.tool_calls.clear(); // tool_choice none, or no tools
        // Parallel calls off: llama.cpp's grammars of some formats still allow more than one
        // call, so the answer ends where a second call begins, and the first is the answer's.
        if (ps->single_call && m.tool_calls.size() > 1) {
            m.tool_calls.resize(1);
            ps->complete = true;
        }
        if (m.empty() && !final) return SIPP_OK;
        m.set_tool_call_ids(ps->ids, make_call_id);
        std::vector<common_chat_msg_diff> diffs = common_chat_msg_diff::compute_diffs(ps->msg, m);
        ps->msg = std::move(m);
        sipp_status st = SIPP_OK;
        // As llama-server streams them: a call's name and id first, then its argument pieces.
        for (auto &d : diffs) {
            for (size_t i = 0; st == SIPP_OK && i < ps->msg.tool_calls.size(); i++) {
                if (ps->sent_names.count(i) || ps->msg.tool_calls[i].name.empty()) continue;
                if (d.tool_call_index != i || !d.tool_call_delta.arguments.empty())
                    st = emit_head(ps, i, emit, ud);
            }
            if (st != SIPP_OK) return st;
            if (d.tool_call_index == std::string::npos) {
                st = emit_diff(ps, d, emit, ud);
            } else {
                size_t i = d.tool_call_index;
                d.tool_call_delta.name.clear();
                d.tool_call_delta.id.clear();
                if (ps->sent_names.count(i)) {
                    if (!d.tool_call_delta.arguments.empty()) st = emit_diff(ps, d, emit, ud);
                } else if (!d.tool_call_delta.arguments.empty() || final) {
                    d.tool_call_delta.name = ps->msg.tool_calls[i].name;
                    d.tool_call_delta.id = ps->msg.tool_calls[i].id;
                    ps->sent_names.insert(i);
                    st = emit_diff(ps, d, emit, ud);
                }
            }
            if (st != SIPP_OK) return st;
        }
        if (final)
            for (size_t i = 0; st == SIPP_OK && i < ps->msg.tool_calls.size(); i++)
                if (!ps->sent_names.count(i) && !ps->msg.tool_calls[i].name.empty())
                    st = emit_head(ps, i, emit, ud);
        ps->calls.clear();
        for (const auto &c : ps->msg.tool_calls)
            ps->calls.push_back(sipp_tool_call{c.id.c_str(), c.name.c_str(), c.arguments.c_str()});
        return st;
    } catch (const std::bad_alloc &) {
        return SIPP_OUT_OF_MEMORY;
    } catch (...) {
        return SIPP_INTERNAL;
    }
}

extern "C" bool sipp__chat_parser_complete(const sipp__chat_parser *ps) { return ps->complete; }

extern "C" size_t sipp__chat_parser_calls(sipp__chat_parser *ps, const sipp_tool_call **calls) {
    *calls = ps->calls.empty() ? nullptr : ps->calls.data();
    return ps->calls.size();
}

extern "C" void sipp__chat_parser_free(sipp__chat_parser *ps) { delete ps; }

extern "C" int sipp__chat_parse_once(sipp__chat_parser *ps, const char *text, size_t len) {
    try {
        common_chat_msg m = common_chat_parse(std::string(text, len), false, ps->pp);
        return (int)m.tool_calls.size();
    } catch (...) {
        return -1;
    }
}
