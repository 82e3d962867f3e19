/*
 * cmd_models.c — `sipp models`: list the GGUF models in the models directory.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: sipp models [--json]\n"
    "\n"
    "List the models in the models directory ($SIPP_MODELS_DIR, default ~/.cache/sipp/models)\n"
    "with size, architecture and capabilities.\n";

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

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
    DIR *d = opendir(dir);
    char *names[1024];
    size_t n = 0;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) && n < 1024) {
            size_t l = strlen(de->d_name);
            if (l > 5 && strcmp(de->d_name + l - 5, ".gguf") == 0) names[n++] = strdup(de->d_name);
        }
        closedir(d);
    }
    qsort(names, n, sizeof names[0], cmp_str);
    json_t *arr = json ? json_array() : NULL;
    if (!json) {
        printf("models in %s\n", dir);
        if (n == 0) printf("  (none: copy a .gguf file here or pass --model PATH)\n");
        else printf("  %-48s %10s  %-10s %s\n", "NAME", "SIZE", "ARCH", "CAPABILITIES");
    }
    for (size_t i = 0; i < n; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        sipp_endpoint_info in = sipp_endpoint_info_default();
        sipp_error err = sipp_error_default();
        bool ok = sipp_model_inspect(path, &in, NULL, &err) == SIPP_OK;
        if (json) {
            json_array_append_new(
                arr, ok ? json_pack("{s:s,s:s,s:I,s:s,s:{s:b,s:b,s:b}}", "name", names[i], "path",
                                    path, "size_bytes", (json_int_t)in.size_bytes, "architecture",
                                    in.architecture, "capabilities", "query", in.can_generate,
                                    "chat", in.can_chat, "embed", in.can_embed)
                        : json_pack("{s:s,s:s,s:s}", "name", names[i], "path", path, "error",
                                    err.message));
        } else if (ok) {
            printf("  %-48s %8.1f M  %-10s %s%s%s\n", names[i], (double)in.size_bytes / 1048576.0,
                   in.architecture, in.can_generate ? "query " : "", in.can_chat ? "chat " : "",
                   in.can_embed ? "embed" : "");
        } else {
            printf("  %-48s (unreadable: %s)\n", names[i], err.message);
        }
        free(names[i]);
    }
    if (json) {
        char *s = json_dumps(arr, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(arr);
    }
    return CLI_OK;
}
