// llama_bridge.cpp — the one C++ file of the engine: wraps llama.cpp's common helpers for chat
// templates (Jinja included) and JSON schemas behind the C interface in llama_bridge.h.
// Every entry point catches all exceptions and turns them into an error message.

#include "llama_bridge.h"

#include "chat.h"
#include "json-schema-to-grammar.h"
#include "json.h"
#include "llama.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

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

extern "C" sipp__chat_templates *sipp__chat_templates_new(const llama_model *model, char *errbuf,
                                                          size_t errcap) {
    if (!llama_model_chat_template(model, nullptr)) {
        set_err(errbuf, errcap, "the model has no chat template");
        return nullptr;
    }
    try {
        auto *t = new sipp__chat_templates;
        t->ptr = common_chat_templates_init(model, "");
        return t;
    } catch (const std::exception &e) {
        set_err(errbuf, errcap, std::string("the model's chat template does not parse: ") + e.what());
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
