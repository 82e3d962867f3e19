// toml_shim.cpp — the gateway's one C++ file: parses TOML text with toml11 into a plain C tree
// (sipp__toml_node, see config.h) that config.c walks and validates. Nothing here knows the
// gateway's keys; it only keeps every value's kind, key and line. Every exception becomes an
// error message (one line, no input echoed beyond what toml11 shows of the offending line).
#include "config.h"

#include <toml.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>

namespace {

void set_err(char *errbuf, size_t errcap, const std::string &msg) {
    if (!errbuf || errcap == 0) return;
    // toml11 formats errors over several lines with a caret diagram: keep one line.
    std::string flat;
    bool space = false;
    for (char c : msg) {
        bool ws = c == '\n' || c == '\r' || c == '\t' || c == ' ';
        if (ws) {
            space = !flat.empty();
            continue;
        }
        if (space) flat.push_back(' ');
        space = false;
        flat.push_back(static_cast<unsigned char>(c) < 0x20 ? '?' : c);
    }
    std::snprintf(errbuf, errcap, "%s", flat.c_str());
}

char *dup(const std::string &s) {
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (!p) throw std::bad_alloc();
    std::memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
    return p;
}

void fill(sipp__toml_node *n, const std::string &key, const toml::value &v, int depth) {
    if (depth > SIPP__TOML_MAX_DEPTH) throw std::runtime_error("the document nests too deeply");
    n->key = key.empty() ? nullptr : dup(key);
    n->line = static_cast<int>(v.location().line());
    switch (v.type()) {
    case toml::value_t::boolean: n->kind = SIPP__TOML_BOOL; n->b = v.as_boolean(); break;
    case toml::value_t::integer: n->kind = SIPP__TOML_INT; n->i = v.as_integer(); break;
    case toml::value_t::floating: n->kind = SIPP__TOML_FLOAT; n->f = v.as_floating(); break;
    case toml::value_t::string: {
        const std::string &s = v.as_string().str;
        if (s.find('\0') != std::string::npos) throw std::runtime_error("a string holds a NUL byte");
        n->kind = SIPP__TOML_STRING;
        n->str = dup(s);
        break;
    }
    case toml::value_t::array: {
        const auto &a = v.as_array();
        n->kind = SIPP__TOML_ARRAY;
        n->items = static_cast<sipp__toml_node *>(std::calloc(a.size() + 1, sizeof *n->items));
        if (!n->items) throw std::bad_alloc();
        for (size_t i = 0; i < a.size(); i++) {
            n->n_items = i + 1;
            fill(&n->items[i], "", a[i], depth + 1);
        }
        break;
    }
    case toml::value_t::table: {
        const auto &t = v.as_table();
        n->kind = SIPP__TOML_TABLE;
        n->items = static_cast<sipp__toml_node *>(std::calloc(t.size() + 1, sizeof *n->items));
        if (!n->items) throw std::bad_alloc();
        for (const auto &kv : t) {
            fill(&n->items[n->n_items], kv.first, kv.second, depth + 1);
            n->n_items++;
        }
        // Tables are unordered maps: order entries by line so errors come out deterministically.
        std::stable_sort(n->items, n->items + n->n_items,
                         [](const sipp__toml_node &a, const sipp__toml_node &b) {
                             if (a.line != b.line) return a.line < b.line;
                             return std::strcmp(a.key, b.key) < 0;
                         });
        break;
    }
    default: n->kind = SIPP__TOML_OTHER; break; // dates and times: no gateway key takes them
    }
}

} // namespace

extern "C" int sipp__toml_parse(const char *text, size_t len, const char *name,
                                sipp__toml_node **out, char *errbuf, size_t errcap) {
    *out = nullptr;
    sipp__toml_node *root = static_cast<sipp__toml_node *>(std::calloc(1, sizeof *root));
    if (!root) {
        set_err(errbuf, errcap, "out of memory");
        return -1;
    }
    try {
        std::istringstream in(std::string(text, len));
        toml::value doc = toml::parse(in, name ? name : "config");
        fill(root, "", doc, 0);
        *out = root;
        return 0;
    } catch (const std::bad_alloc &) {
        set_err(errbuf, errcap, "out of memory");
    } catch (const std::exception &e) {
        set_err(errbuf, errcap, e.what());
    } catch (...) {
        set_err(errbuf, errcap, "unknown TOML parser error");
    }
    sipp__toml_free(root);
    return -1;
}

extern "C" void sipp__toml_free(sipp__toml_node *n) {
    if (!n) return;
    // Children are freed in place; only the root is its own allocation.
    struct local {
        static void clear(sipp__toml_node *x) {
            for (size_t i = 0; i < x->n_items; i++) clear(&x->items[i]);
            std::free(x->items);
            std::free(x->key);
            std::free(x->str);
        }
    };
    local::clear(n);
    std::free(n);
}
