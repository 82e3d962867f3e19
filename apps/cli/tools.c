/*
 * tools.c — `sipp chat --tool-file FILE` (issue 18; docs/cli.md, docs/tools.md "CLI"): the file's
 * JSON array of OpenAI-style tool definitions ({"type": "function", "function": {"name",
 * "description"?, "parameters"?}}, or the function object itself) read into sipp_tool, and the
 * answer's tool calls printed.
 *
 * Only the file's shape is checked here; names, schemas and the tool choice are the library's
 * checks (one set of rules, as for sampling values), reported with its message.
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void cli_tools_free(cli_tools *t) {
    for (size_t i = 0; i < t->n; i++) free((char *)t->tools[i].parameters);
    free(t->tools);
    json_decref(t->doc);
    memset(t, 0, sizeof *t);
}

int cli_tools_load(const char *path, cli_tools *t) {
    memset(t, 0, sizeof *t);
    json_error_t je;
    t->doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!t->doc) {
        cli_error("--tool-file '%s' is not valid JSON: %s (line %d)", path, je.text, je.line);
        return CLI_USAGE;
    }
    if (!json_is_array(t->doc) || json_array_size(t->doc) == 0) {
        cli_error("--tool-file '%s' must hold a non-empty JSON array of tool definitions", path);
        cli_tools_free(t);
        return CLI_USAGE;
    }
    size_t n = json_array_size(t->doc);
    t->tools = calloc(n, sizeof *t->tools);
    if (!t->tools) {
        cli_error("out of memory");
        cli_tools_free(t);
        return CLI_FAILED;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(t->doc, i);
        json_t *fn = json_object_get(e, "function");
        if (!json_is_object(fn)) fn = e; /* the function object itself */
        json_t *name = json_object_get(fn, "name"), *desc = json_object_get(fn, "description"),
               *params = json_object_get(fn, "parameters");
        if (!json_is_object(e) || !json_is_string(name) || (desc && !json_is_string(desc)) ||
            (params && !json_is_object(params))) {
            cli_error("--tool-file '%s': tool %zu must be {\"type\": \"function\", \"function\": "
                      "{\"name\": str, \"description\"?: str, \"parameters\"?: object}}",
                      path, i);
            cli_tools_free(t);
            return CLI_USAGE;
        }
        t->tools[i].name = json_string_value(name);
        t->tools[i].description = json_string_value(desc);
        t->n = i + 1;
        if (params && !(t->tools[i].parameters = json_dumps(params, JSON_COMPACT))) {
            cli_error("out of memory");
            cli_tools_free(t);
            return CLI_FAILED;
        }
    }
    return CLI_OK;
}

void cli_tools_print(const sipp_response *r) {
    for (size_t i = 0; i < r->n_tool_calls; i++) {
        const sipp_tool_call *c = &r->tool_calls[i];
        printf("tool call %s(%s) id=%s\n", c->name, c->arguments, c->id);
    }
}

json_t *cli_tools_json(const sipp_response *r) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < r->n_tool_calls; i++) {
        const sipp_tool_call *c = &r->tool_calls[i];
        json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "id", c->id, "name", c->name,
                                           "arguments", c->arguments));
    }
    return a;
}
