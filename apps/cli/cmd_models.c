/*
 * cmd_models.c — `sipp models`: list the GGUF models in the models directory: the .gguf files
 * in it, then the models pulled into its hub/ store (by name, see src/hub), with size,
 * architecture, quantization and capabilities.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "hub/hub_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: sipp models [--json]\n"
    "\n"
    "List the models in the models directory ($SIPP_MODELS_DIR, default ~/.cache/sipp/models):\n"
    "its .gguf files and the models pulled with `sipp pull` (listed by the name that runs them:\n"
    "--model OWNER/REPO:QUANT), with size, architecture, quantization and capabilities.\n";

int cmd_models(int argc, char **argv) {
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return CLI_OK;
        }
        if (strcmp(argv[i], "--json") != 0) {
            cli_error("models: unknown argument '%s' (see sipp models --help)", argv[i]);
            return CLI_USAGE;
        }
        json = true;
    }
    char dir[4096];
    cli_models_dir(dir, sizeof dir);
    char *names[CLI_MAX_MODEL_FILES];
    size_t n = cli_models_scan(dir, names, CLI_MAX_MODEL_FILES);
    sipp__hub_item *pulled = NULL;
    size_t n_pulled = 0;
    sipp_error herr;
    sipp_error_init(&herr, sizeof herr);
    if (sipp__hub_list(dir, &pulled, &n_pulled, &herr) != SIPP_OK)
        cli_error("models: the store of pulled models: %s", herr.message);
    json_t *arr = json ? json_array() : NULL;
    if (!json) {
        printf("models in %s\n", dir);
        if (n + n_pulled == 0)
            printf("  (none: sipp pull OWNER/REPO[:QUANT], copy a .gguf file here, or pass --model PATH)\n");
        else
            printf("  %-52s %10s  %-10s %-8s %s\n", "NAME", "SIZE", "ARCH", "QUANT", "CAPABILITIES");
    }
    for (size_t i = 0; i < n + n_pulled; i++) {
        bool hub = i >= n;
        const sipp__hub_item *it = hub ? &pulled[i - n] : NULL;
        char path[8192];
        if (hub) snprintf(path, sizeof path, "%s", it->path);
        else snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        const char *name = hub ? it->name : names[i];
        sipp_endpoint_info in;
        sipp_endpoint_info_init(&in, sizeof in);
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        bool ok = false;
        if (hub && !it->complete)
            snprintf(err.message, sizeof err.message, "files missing; pull it again");
        else
            ok = sipp_model_inspect(path, &in, NULL, &err) == SIPP_OK;
        uint64_t size = hub ? it->bytes : in.size_bytes;
        char quant[32] = "";
        if (ok) sipp__model_quant_name(path, quant, sizeof quant);
        if (json) {
            json_t *o = ok ? json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:{s:b,s:b,s:b}}", "name", name,
                                       "source", hub ? "hub" : "local", "path", path, "size_bytes",
                                       (json_int_t)size, "architecture", in.architecture,
                                       "quantization", quant, "capabilities", "query",
                                       in.can_generate, "chat", in.can_chat, "embed", in.can_embed)
                           : json_pack("{s:s,s:s,s:s,s:s}", "name", name, "source",
                                       hub ? "hub" : "local", "path", path, "error", err.message);
            if (o && hub) {
                json_object_set_new(o, "files", json_integer((json_int_t)it->n_files));
                json_object_set_new(o, "commit", json_string(it->commit));
                json_object_set_new(o, "mmproj", it->mmproj ? json_string(it->mmproj) : json_null());
            }
            json_array_append_new(arr, o);
        } else if (ok) {
            printf("  %-52s %8.1f M  %-10s %-8s %s%s%s%s\n", name, (double)size / 1048576.0,
                   in.architecture, quant[0] ? quant : "-", in.can_generate ? "query " : "",
                   in.can_chat ? "chat " : "", in.can_embed ? "embed " : "",
                   hub && it->mmproj ? "(+mmproj)" : "");
        } else {
            printf("  %-52s (unreadable: %s)\n", name, err.message);
        }
        if (!hub) free(names[i]);
    }
    sipp__hub_list_free(pulled, n_pulled);
    if (json) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(arr);
    }
    return CLI_OK;
}
