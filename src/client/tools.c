/*
 * tools.c — the checks of a chat's tools, tool choice and tool messages (issue 18), for every
 * endpoint kind before anything is submitted: the bad-input rules of docs/tools.md, each an
 * INVALID_ARGUMENT naming the offending field. Any thread; no state.
 */
#define _POSIX_C_SOURCE 200809L
#include "client_int.h"

#include <jansson.h>
#include <string.h>

static bool valid_tool_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A tool's parameters: a JSON object schema whose `type`, if any, is "object", whose
 * `properties`, if any, is an object of schemas (objects or booleans) and whose `required`, if
 * any, is an array of strings. */
static sipp_status check_schema(const char *text, size_t i, sipp_error *err) {
    json_error_t je;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "tools[%zu].parameters is not valid JSON: %s", i, je.text);
    const char *why = NULL;
    json_t *type = json_object_get(j, "type"), *props = json_object_get(j, "properties"),
           *req = json_object_get(j, "required");
    if (!json_is_object(j))
        why = "is not a JSON object";
    else if (type && !(json_is_string(type) && strcmp(json_string_value(type), "object") == 0))
        why = "must have \"type\": \"object\"";
    else if (props && !json_is_object(props))
        why = "has \"properties\" that is not an object";
    else if (req && !json_is_array(req))
        why = "has \"required\" that is not an array";
    if (!why && props) {
        const char *k;
        json_t *v;
        json_object_foreach(props, k, v) if (!json_is_object(v) && !json_is_boolean(v)) {
            why = "has a property whose schema is not an object";
            break;
        }
    }
    if (!why && req) {
        size_t idx;
        json_t *v;
        json_array_foreach(req, idx, v) if (!json_is_string(v)) {
            why = "has a \"required\" entry that is not a string";
            break;
        }
    }
    json_decref(j);
    if (why)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "tools[%zu].parameters %s (a JSON Schema "
                          "of an object is expected)", i, why);
    return SIPP_OK;
}

static bool is_json_object(const char *text) {
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    bool ok = json_is_object(j);
    json_decref(j);
    return ok;
}

sipp_status sipp__tools_check(const sipp_text_params *p, sipp_error *err) {
    if (p->n_tools > SIPP_MAX_TOOLS)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "tools: %zu tools, at most %d", p->n_tools,
                          SIPP_MAX_TOOLS);
    if (p->n_tools && !p->tools)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "tools: n_tools is %zu but tools is NULL",
                          p->n_tools);
    if ((unsigned)p->tool_choice > SIPP_TOOL_CHOICE_NAMED)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "tool_choice: unknown value %d",
                          (int)p->tool_choice);
    if ((unsigned)p->reasoning_mode > SIPP_REASONING_DROP)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "reasoning_mode: unknown value %d",
                          (int)p->reasoning_mode);
    if (p->reasoning_budget < -1)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "reasoning_budget: %d (-1 = unlimited, 0 = no thinking, N = tokens)",
                          (int)p->reasoning_budget);
    size_t schema_bytes = 0;
    for (size_t i = 0; i < p->n_tools; i++) {
        const sipp_tool *t = &p->tools[i];
        if (!valid_tool_name(t->name))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "tools[%zu].name '%.64s' is not 1 to 64 of [A-Za-z0-9_-]", i,
                              t->name ? t->name : "(null)");
        for (size_t k = 0; k < i; k++)
            if (strcmp(p->tools[k].name, t->name) == 0)
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "tools[%zu].name '%s' is a duplicate of tools[%zu]", i, t->name, k);
        if (t->parameters) {
            schema_bytes += strlen(t->parameters);
            if (schema_bytes > SIPP_MAX_TOOL_SCHEMA_BYTES)
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "tools: the parameter schemas exceed %d bytes",
                                  SIPP_MAX_TOOL_SCHEMA_BYTES);
            sipp_status st = check_schema(t->parameters, i, err);
            if (st != SIPP_OK) return st;
        }
    }
    if ((p->tool_choice == SIPP_TOOL_CHOICE_REQUIRED || p->tool_choice == SIPP_TOOL_CHOICE_NAMED) &&
        p->n_tools == 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "tool_choice: '%s' needs tools",
                          p->tool_choice == SIPP_TOOL_CHOICE_REQUIRED ? "required" : "named");
    if (p->tool_choice == SIPP_TOOL_CHOICE_NAMED) {
        bool found = false;
        for (size_t i = 0; p->tool_choice_name && i < p->n_tools && !found; i++)
            found = strcmp(p->tools[i].name, p->tool_choice_name) == 0;
        if (!found)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "tool_choice names the tool '%.64s', which is not among the tools",
                              p->tool_choice_name ? p->tool_choice_name : "(null)");
    }
    if (p->n_tools && (p->grammar || p->json_schema))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "tools cannot be combined with grammar or json_schema");
    return SIPP_OK;
}

sipp_status sipp__chat_messages_check(const sipp_chat_message *m, size_t n, sipp_error *err) {
    for (size_t i = 0; i < n; i++) {
        const char *role = m[i].role;
        bool assistant = role && strcmp(role, "assistant") == 0;
        bool tool = role && strcmp(role, "tool") == 0;
        if (!role || !(assistant || tool || strcmp(role, "system") == 0 ||
                       strcmp(role, "user") == 0))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "chat: message %zu has unknown role '%s' (system, user, assistant or "
                              "tool)", i, role ? role : "(null)");
        if (!m[i].content && !(assistant && m[i].n_tool_calls > 0))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "chat: message %zu has no content", i);
        if (m[i].n_tool_calls && !assistant)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "chat: message %zu has tool_calls but is not an assistant message", i);
        if (m[i].n_tool_calls && !m[i].tool_calls)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "chat: message %zu: n_tool_calls is %zu but tool_calls is NULL", i,
                              m[i].n_tool_calls);
        for (size_t k = 0; k < m[i].n_tool_calls; k++) {
            const sipp_tool_call *c = &m[i].tool_calls[k];
            if (!c->id || !c->id[0] || !valid_tool_name(c->name))
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "chat: message %zu tool_calls[%zu] needs an id and a valid name",
                                  i, k);
            if (!is_json_object(c->arguments))
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "chat: message %zu tool_calls[%zu] (%s): arguments are not a "
                                  "JSON object", i, k, c->name);
        }
        if (tool) {
            bool known = false;
            for (size_t a = 0; m[i].tool_call_id && a < i && !known; a++)
                for (size_t k = 0; k < m[a].n_tool_calls && !known; k++)
                    known = strcmp(m[a].tool_calls[k].id, m[i].tool_call_id) == 0;
            if (!known)
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "chat: message %zu is a tool result for the unknown call id "
                                  "'%.64s' (no earlier assistant call has it)", i,
                                  m[i].tool_call_id ? m[i].tool_call_id : "(null)");
        } else if (m[i].tool_call_id) {
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "chat: message %zu has a tool_call_id but is not a tool result", i);
        }
    }
    return SIPP_OK;
}
