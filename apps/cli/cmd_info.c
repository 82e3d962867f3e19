/*
 * cmd_info.c — `sipp info`: a model's metadata, capabilities and chat template, read without
 * loading its weights.
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: sipp info [--json] NAME|PATH\n"
    "\n"
    "Show a model's architecture, size, context, capabilities and chat template without\n"
    "loading its weights. NAME is looked up in the models directory.\n";

int cmd_info(int argc, char **argv) {
    bool json = false;
    const char *name = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return CLI_OK;
        }
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("info: unknown option '%s' (see sipp info --help)", argv[i]);
            return CLI_USAGE;
        } else if (!name) {
            name = argv[i];
        } else {
            cli_error("info: one model expected");
            return CLI_USAGE;
        }
    }
    if (!name) name = getenv("SIPP_MODEL");
    if (!name || !*name) {
        cli_error("info: a model NAME or PATH is required");
        return CLI_USAGE;
    }
    char path[4096];
    if (cli_resolve_model(name, NEED_GENERATE, path, sizeof path) != CLI_OK) return CLI_FAILED;
    sipp_endpoint_info in;
    sipp_endpoint_info_init(&in, sizeof in);
    char *tmpl = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_model_inspect(path, &in, &tmpl, &err) != SIPP_OK) {
        cli_error("%s", err.message);
        return CLI_FAILED;
    }
    if (json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:i,s:{s:b,s:b,s:b},s:s?}", "path", path,
                              "architecture", in.architecture, "description", in.description,
                              "parameters", (json_int_t)in.n_params, "size_bytes",
                              (json_int_t)in.size_bytes, "context_length", (json_int_t)in.n_ctx_train,
                              "embedding_length", (json_int_t)in.n_embd, "capabilities", "query",
                              in.can_generate, "chat", in.can_chat, "embed", in.can_embed,
                              "chat_template", tmpl);
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("path:           %s\n", path);
        printf("architecture:   %s\n", in.architecture);
        printf("description:    %s\n", in.description);
        printf("parameters:     %llu\n", (unsigned long long)in.n_params);
        printf("size:           %llu bytes\n", (unsigned long long)in.size_bytes);
        printf("context length: %u\n", in.n_ctx_train);
        printf("embedding dims: %u\n", in.n_embd);
        printf("capabilities:   %s%s%s\n", in.can_generate ? "query " : "",
               in.can_chat ? "chat " : "", in.can_embed ? "embed" : "");
        printf("chat template:  %s\n", tmpl ? "" : "(none)");
        if (tmpl) printf("%s\n", tmpl);
    }
    sipp_free(tmpl);
    return CLI_OK;
}
