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
#include "json.h"
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <utility>

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
