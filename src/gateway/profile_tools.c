/*
 * profile_tools.c — tools in the gateway's chat requests (issue 18; docs/tools.md, "Gateway"):
 * `tools`, `tool_choice`, `parallel_tool_calls`, assistant messages with `tool_calls` and `tool`
 * results, decoded into libsipp's sipp_tool / sipp_chat_message for sipp_chat_ex, and the
 * answer's tool calls encoded back.
 *
 * Both profiles take OpenAI's shapes; the Sipp profile also takes flat ones ({"name",
 * "description", "parameters"} tools, {"id", "name", "arguments"} calls with arguments as an
 * object). Two kinds of failure, as in profiles.c: a value of the wrong shape fails the decode
 * at once (400 invalid_json naming the field); a schema that is not an object schema, a
 * duplicate name, a tool_choice naming no tool, a result for an unknown call id or more than
 * SIPP_MAX_TOOLS tools go to call->invalid (400 invalidrequest in the validate phase, which also
 * holds the schemas' bytes to max_schema_bytes). libsipp checks the same again (tools.c).
 *
 * Pure like the other codecs (profiles.h). Strings point into the request's JSON document
 * except the schemas' compact texts and arguments given as objects, owned by the call.
 */
#define _POSIX_C_SOURCE 200809L
#include "profiles.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool tool_name_ok(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* Why `s` is not an object schema of arguments (NULL when it is): `type`, if any, "object";
 * `properties`, if any, an object of schemas (objects or booleans); `required`, if any, an
 * array of strings. */
static const char *schema_problem(json_t *s) {
    json_t *type = json_object_get(s, "type"), *props = json_object_get(s, "properties"),
           *req = json_object_get(s, "required");
    if (type && !(json_is_string(type) && strcmp(json_string_value(type), "object") == 0))
        return "must have \"type\": \"object\"";
    if (props && !json_is_object(props)) return "has \"properties\" that is not an object";
    if (req && !json_is_array(req)) return "has \"required\" that is not an array";
    const char *k;
    json_t *v;
    json_object_foreach(props, k, v) {
        if (!json_is_object(v) && !json_is_boolean(v))
            return "has a property whose schema is not an object";
    }
    size_t i;
    json_array_foreach(req, i, v) {
        if (!json_is_string(v)) return "has a \"required\" entry that is not a string";
    }
    return NULL;
}

/* Formats param and msg; returns -1 (the decoder's "bad shape"). */
static int bad_at(char *msg, size_t cap, char *param, size_t pcap, const char *p,
                  const char *what) {
    snprintf(param, pcap, "%s", p);
    snprintf(msg, cap, "field '%s' %s", p, what);
    return -1;
}

/* bad_at for the bool decoders: returns false. */
static bool bad_field(char *msg, size_t cap, char *param, size_t pcap, const char *p,
                      const char *what) {
    bad_at(msg, cap, param, pcap, p, what);
    return false;
}

/* tools[i]: {"type": "function", "function": {...}} or (Sipp) the function object itself;
 * (Anthropic) {"type"?: "custom", "name", "description"?, "input_schema"}. */
static int decode_tool(gw_call *c, size_t i, json_t *t, int dialect, char *msg, size_t cap,
                       char *param, size_t pcap) {
    char at[64];
    snprintf(at, sizeof at, "tools[%zu]", i);
    if (!json_is_object(t)) return bad_at(msg, cap, param, pcap, at, "must be an object");
    json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
    const char *params_key = "parameters";
    if (dialect == SIPP__GW_TOOLS_ANTHROPIC) {
        /* Anthropic's server tools (web search, code execution...) are not ours to run */
        if (type && !json_is_null(type) &&
            !(json_is_string(type) && strcmp(json_string_value(type), "custom") == 0))
            return bad_at(msg, cap, param, pcap, at,
                          "must be a custom tool (server tools are not supported)");
        fn = t;
        params_key = "input_schema";
    } else if (dialect == SIPP__GW_TOOLS_OPENAI || fn || type) {
        if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0)
            return bad_at(msg, cap, param, pcap, at, "must have \"type\": \"function\"");
        if (!json_is_object(fn))
            return bad_at(msg, cap, param, pcap, at, "must have a 'function' object");
        snprintf(at, sizeof at, "tools[%zu].function", i);
    } else {
        fn = t;
    }
    char f[96];
    json_t *name = json_object_get(fn, "name"), *desc = json_object_get(fn, "description"),
           *params = json_object_get(fn, params_key);
    snprintf(f, sizeof f, "%s.name", at);
    if (!json_is_string(name)) return bad_at(msg, cap, param, pcap, f, "must be a string");
    if (!tool_name_ok(json_string_value(name)))
        return bad_at(msg, cap, param, pcap, f, "must be 1 to 64 of [A-Za-z0-9_-]");
    snprintf(f, sizeof f, "%s.description", at);
    if (desc && !json_is_null(desc) && !json_is_string(desc))
        return bad_at(msg, cap, param, pcap, f, "must be a string");
    snprintf(f, sizeof f, "%s.%s", at, params_key);
    if (params && !json_is_null(params) && !json_is_object(params))
        return bad_at(msg, cap, param, pcap, f, "must be a JSON Schema object");
    sipp_tool *tool = &c->tools[i];
    tool->name = json_string_value(name);
    tool->description = json_string_value(desc);
    for (size_t k = 0; k < i; k++)
        if (strcmp(c->tools[k].name, tool->name) == 0) {
            snprintf(f, sizeof f, "%s.name", at);
            sipp__gw_invalid(c, f, "tools[%zu] and tools[%zu] are both named '%s'", k, i,
                             tool->name);
        }
    if (json_is_object(params)) {
        const char *why = schema_problem(params);
        if (why) sipp__gw_invalid(c, f, "'%s' %s", f, why);
        char *text = json_dumps(params, JSON_COMPACT);
        if (!text || !sipp__gw_call_own(c, text)) {
            snprintf(param, pcap, "tools");
            return sipp__gw_bad(msg, cap, "out of memory") ? 1 : -1;
        }
        tool->parameters = text;
        c->tool_schema_bytes += strlen(text);
    }
    return 1;
}

/* `tools` of any dialect: the array, its cap, each tool. */
static int decode_tool_array(gw_call *c, json_t *v, int dialect, char *msg, size_t cap,
                             char *param, size_t pcap) {
    if (json_is_null(v)) return 1;
    if (!json_is_array(v)) return bad_at(msg, cap, param, pcap, "tools", "must be an array");
    size_t n = json_array_size(v);
    if (n > SIPP_MAX_TOOLS) {
        sipp__gw_invalid(c, "tools", "%zu tools is more than this gateway takes (%d)", n,
                         SIPP_MAX_TOOLS);
        return 1;
    }
    if (n == 0) return 1;
    c->tools = calloc(n, sizeof *c->tools);
    if (!c->tools || !sipp__gw_call_own(c, c->tools)) {
        c->tools = NULL;
        snprintf(param, pcap, "tools");
        return sipp__gw_bad(msg, cap, "out of memory") ? 1 : -1;
    }
    for (size_t i = 0; i < n; i++) {
        int r = decode_tool(c, i, json_array_get(v, i), dialect, msg, cap, param, pcap);
        if (r < 0) return -1;
    }
    c->n_tools = n;
    return 1;
}

int sipp__gw_decode_anthropic_tools(gw_call *c, const char *key, json_t *v, char *msg,
                                    size_t cap, char *param, size_t pcap) {
    if (strcmp(key, "tools") == 0)
        return decode_tool_array(c, v, SIPP__GW_TOOLS_ANTHROPIC, msg, cap, param, pcap);
    if (strcmp(key, "tool_choice") != 0) return 0;
    if (json_is_null(v)) return 1;
    /* {"type": "auto" | "any" | "none" | "tool", "name"?, "disable_parallel_tool_use"?} */
    const char *type = json_string_value(json_object_get(v, "type"));
    json_t *name = json_object_get(v, "name"), *dp = json_object_get(v, "disable_parallel_tool_use");
    if (!json_is_object(v) || !type || (dp && !json_is_boolean(dp)))
        return bad_at(msg, cap, param, pcap, key,
                      "must be {\"type\": \"auto\" | \"any\" | \"none\" | \"tool\", "
                      "\"name\"?, \"disable_parallel_tool_use\"?: bool}");
    c->no_parallel_tool_calls = json_is_true(dp);
    if (strcmp(type, "auto") == 0) c->tool_choice = SIPP_TOOL_CHOICE_AUTO;
    else if (strcmp(type, "any") == 0) c->tool_choice = SIPP_TOOL_CHOICE_REQUIRED;
    else if (strcmp(type, "none") == 0) c->tool_choice = SIPP_TOOL_CHOICE_NONE;
    else if (strcmp(type, "tool") == 0 && json_is_string(name)) {
        c->tool_choice = SIPP_TOOL_CHOICE_NAMED;
        c->tool_choice_name = json_string_value(name);
    } else
        return bad_at(msg, cap, param, pcap, key,
                      "type must be auto, any, none, or tool with a 'name'");
    return 1;
}

int sipp__gw_decode_tools(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                          char *msg, size_t cap, char *param, size_t pcap) {
    if (op != GW_OP_CHAT) return 0;
    bool null = json_is_null(v);
    if (strcmp(key, "parallel_tool_calls") == 0) {
        if (null) return 1;
        if (!json_is_boolean(v))
            return bad_at(msg, cap, param, pcap, key, "must be a boolean or null");
        c->no_parallel_tool_calls = json_is_false(v);
        return 1;
    }
    if (strcmp(key, "tool_choice") == 0) {
        if (null) return 1;
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            if (strcmp(s, "auto") == 0) c->tool_choice = SIPP_TOOL_CHOICE_AUTO;
            else if (strcmp(s, "none") == 0) c->tool_choice = SIPP_TOOL_CHOICE_NONE;
            else if (strcmp(s, "required") == 0) c->tool_choice = SIPP_TOOL_CHOICE_REQUIRED;
            else
                sipp__gw_invalid(c, key,
                                 "'tool_choice' must be auto, none, required or a named "
                                 "function");
            return 1;
        }
        json_t *fn = json_object_get(v, "function");
        json_t *name = json_is_object(fn) ? json_object_get(fn, "name")
                       : openai           ? NULL
                                          : json_object_get(v, "name");
        json_t *type = json_object_get(v, "type");
        if (!json_is_object(v) || !json_is_string(name) ||
            (type && !(json_is_string(type) && strcmp(json_string_value(type), "function") == 0)))
            return bad_at(msg, cap, param, pcap, key,
                          "must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", "
                          "\"function\": {\"name\": ...}}");
        c->tool_choice = SIPP_TOOL_CHOICE_NAMED;
        c->tool_choice_name = json_string_value(name);
        return 1;
    }
    if (strcmp(key, "tools") != 0) return 0;
    return decode_tool_array(c, v, openai ? SIPP__GW_TOOLS_OPENAI : SIPP__GW_TOOLS_SIPP, msg, cap,
                             param, pcap);
}

int sipp__gw_decode_reasoning(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                              char *msg, size_t cap, char *param, size_t pcap) {
    if (op != GW_OP_CHAT || strcmp(key, openai ? "reasoning_format" : "reasoning_mode") != 0)
        return 0;
    if (json_is_null(v)) return 1;
    if (!json_is_string(v)) return bad_at(msg, cap, param, pcap, key, "must be a string");
    c->reasoning_asked = true;
    const char *s = json_string_value(v);
    if (strcmp(s, openai ? "auto" : "separate") == 0 || (openai && strcmp(s, "deepseek") == 0))
        c->reasoning_mode = SIPP_REASONING_SEPARATE;
    else if (strcmp(s, openai ? "none" : "inline") == 0)
        c->reasoning_mode = SIPP_REASONING_INLINE;
    else if (strcmp(s, "drop") == 0)
        c->reasoning_mode = SIPP_REASONING_DROP;
    else
        sipp__gw_invalid(c, key, "'%s' must be %s", key,
                         openai ? "auto, deepseek, none or drop" : "separate, inline or drop");
    return 1;
}

int sipp__gw_decode_budget(gw_call *c, gw_op op, const char *key, json_t *v, bool openai,
                           char *msg, size_t cap, char *param, size_t pcap) {
    if (op != GW_OP_CHAT) return 0;
    if (strcmp(key, "reasoning_budget") == 0) {
        if (json_is_null(v)) return 1;
        if (!json_is_integer(v)) return bad_at(msg, cap, param, pcap, key, "must be an integer");
        json_int_t n = json_integer_value(v);
        if (n < -1 || n > INT32_MAX)
            sipp__gw_invalid(c, key, "'%s' must be -1 (unlimited), 0 (no thinking) or a number "
                                     "of tokens", key);
        c->budget_set = true;
        c->reasoning_budget = (int32_t)(n < -1 || n > INT32_MAX ? -1 : n);
        return 1;
    }
    if (!openai || strcmp(key, "chat_template_kwargs") != 0) return 0;
    if (json_is_null(v)) return 1;
    if (!json_is_object(v)) return bad_at(msg, cap, param, pcap, key, "must be an object");
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (strcmp(k, "enable_thinking") != 0) {
            sipp__gw_invalid(c, key, "'%s.%.40s' is not taken: the gateway passes only "
                                     "enable_thinking to the template", key, k);
        } else if (!json_is_boolean(x)) {
            return bad_at(msg, cap, param, pcap, key, "enable_thinking must be a boolean");
        } else if (!c->budget_set || json_is_false(x)) {
            c->budget_set = true;
            c->reasoning_budget = json_is_false(x) ? 0 : -1;
        }
    }
    return 1;
}

/* One call of an assistant message: OpenAI's {"id", "type": "function", "function": {"name",
 * "arguments": "<JSON text>"}}, or (Sipp) {"id", "name", "arguments": text or object}. */
static bool decode_call(gw_call *c, const char *at, json_t *tc, bool openai, sipp_tool_call *out,
                        char *msg, size_t cap, char *param, size_t pcap) {
    if (!json_is_object(tc)) return bad_field(msg, cap, param, pcap, at, "must be an object");
    json_t *fn = json_object_get(tc, "function"), *type = json_object_get(tc, "type");
    if (openai || fn || type) {
        if (!json_is_object(fn) ||
            (type && !(json_is_string(type) && strcmp(json_string_value(type), "function") == 0)))
            return bad_field(msg, cap, param, pcap, at,
                          "must be {\"id\", \"type\": \"function\", \"function\": {\"name\", "
                          "\"arguments\"}}");
    } else {
        fn = tc;
    }
    json_t *id = json_object_get(tc, "id"), *name = json_object_get(fn, "name"),
           *args = json_object_get(fn, "arguments");
    if (!json_is_string(id) || json_string_length(id) == 0)
        return bad_field(msg, cap, param, pcap, at, "needs an 'id' string");
    if (!json_is_string(name))
        return bad_field(msg, cap, param, pcap, at, "needs a function 'name' string");
    out->id = json_string_value(id);
    out->name = json_string_value(name);
    if (json_is_string(args)) {
        out->arguments = json_string_value(args);
        json_error_t je;
        json_t *a = json_loads(out->arguments, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(a)) sipp__gw_invalid(c, at, "'%s' arguments are not a JSON object", at);
        json_decref(a);
    } else if (json_is_object(args) && !openai) {
        char *text = json_dumps(args, JSON_COMPACT);
        if (!text || !sipp__gw_call_own(c, text)) return sipp__gw_bad(msg, cap, "out of memory");
        out->arguments = text;
    } else if (!args || json_is_null(args)) {
        out->arguments = "{}";
    } else {
        return bad_field(msg, cap, param, pcap, at,
                      openai ? "arguments must be a string of JSON"
                             : "arguments must be a JSON object or its text");
    }
    return true;
}

bool sipp__gw_decode_message_tools(gw_call *c, size_t i, json_t *m, bool openai, char *msg,
                                   size_t cap, char *param, size_t pcap) {
    char at[64];
    sipp_chat_message *cm = &c->chat[i];
    json_t *id = json_object_get(m, "tool_call_id"), *calls = json_object_get(m, "tool_calls");
    if (strcmp(cm->role, "tool") == 0) {
        snprintf(at, sizeof at, "messages[%zu].tool_call_id", i);
        if (!json_is_string(id) || json_string_length(id) == 0)
            return bad_field(msg, cap, param, pcap, at, "must be a non-empty string (a tool "
                                                     "result answers a call by its id)");
        cm->tool_call_id = json_string_value(id);
    } else if (id) {
        snprintf(at, sizeof at, "messages[%zu].tool_call_id", i);
        return bad_field(msg, cap, param, pcap, at, "is for role 'tool' only");
    }
    if (!calls || json_is_null(calls)) return true;
    snprintf(at, sizeof at, "messages[%zu].tool_calls", i);
    if (strcmp(cm->role, "assistant") != 0)
        return bad_field(msg, cap, param, pcap, at, "is for role 'assistant' only");
    if (!json_is_array(calls)) return bad_field(msg, cap, param, pcap, at, "must be an array");
    size_t n = json_array_size(calls);
    if (n == 0) return true;
    if (n > SIPP_MAX_TOOLS)
        return bad_field(msg, cap, param, pcap, at, "has too many calls");
    sipp_tool_call *tc = calloc(n, sizeof *tc);
    if (!tc || !sipp__gw_call_own(c, tc)) return sipp__gw_bad(msg, cap, "out of memory");
    for (size_t k = 0; k < n; k++) {
        snprintf(at, sizeof at, "messages[%zu].tool_calls[%zu]", i, k);
        if (!decode_call(c, at, json_array_get(calls, k), openai, &tc[k], msg, cap, param, pcap))
            return false;
    }
    cm->tool_calls = tc;
    cm->n_tool_calls = n;
    return true;
}

void sipp__gw_check_tools(gw_call *c) {
    if (c->tool_choice == SIPP_TOOL_CHOICE_NAMED) {
        bool found = false;
        for (size_t i = 0; i < c->n_tools && !found; i++)
            found = strcmp(c->tools[i].name, c->tool_choice_name) == 0;
        if (!found)
            sipp__gw_invalid(c, "tool_choice", "'tool_choice' names '%.64s', which is not in "
                                               "'tools'",
                             c->tool_choice_name);
    } else if (c->tool_choice == SIPP_TOOL_CHOICE_REQUIRED && c->n_tools == 0) {
        sipp__gw_invalid(c, "tool_choice", "'tool_choice' required needs 'tools'");
    }
    if (!c->chat) return;
    for (size_t i = 0; i < c->n_messages; i++) {
        const char *id = c->chat[i].tool_call_id;
        if (!id) continue;
        bool known = false;
        for (size_t j = 0; j < i && !known; j++)
            for (size_t k = 0; k < c->chat[j].n_tool_calls && !known; k++)
                known = strcmp(c->chat[j].tool_calls[k].id, id) == 0;
        if (!known) {
            char at[64];
            snprintf(at, sizeof at, "messages[%zu].tool_call_id", i);
            sipp__gw_invalid(c, at, "'%s' is '%.64s', which no earlier assistant tool call has",
                             at, id);
        }
    }
}

json_t *sipp__gw_tool_calls_json(const sipp_tool_call *calls, size_t n, bool openai) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        const sipp_tool_call *t = &calls[i];
        const char *args = t->arguments ? t->arguments : "{}";
        json_t *e;
        if (openai) {
            e = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", t->id ? t->id : "", "type",
                          "function", "function", "name", t->name ? t->name : "", "arguments",
                          args);
        } else {
            json_t *obj = json_loads(args, 0, NULL);
            e = json_pack("{s:s, s:s, s:o}", "id", t->id ? t->id : "", "name",
                          t->name ? t->name : "", "arguments", obj ? obj : json_string(args));
        }
        json_array_append_new(a, e);
    }
    return a;
}
