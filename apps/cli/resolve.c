/*
 * resolve.c — model resolution: what --model (or SIPP_MODEL) names, or with none the first
 * model that can do the command. In order: an existing path; a pulled name (OWNER/REPO[:QUANT],
 * OWNER/REPO/FILE.gguf) through libsipp's sipp_model_resolve(); a file in the models directory
 * (with or without .gguf); with no name, the first fitting .gguf of the models directory, then
 * the first fitting complete pulled model (the store's list, src/hub/hub_int.h: internal to
 * libsipp, which `sipp` links statically).
 *
 * Single-threaded. The models directory is libsipp's rule (sipp__hub_models_dir), the one
 * sipp_model_resolve() reads; cli_models_scan is the one scan of it (also `sipp models`).
 */
#define _GNU_SOURCE
#include "cli.h"

#include "hub/hub_int.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cli_models_dir(char *buf, size_t cap) {
    sipp__hub_models_dir(buf, cap); /* libsipp's rule, the one sipp_model_resolve() reads */
}

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t cli_models_scan(const char *dir, char **names, size_t cap) {
    DIR *d = opendir(dir);
    size_t n = 0;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) && n < cap) {
            size_t l = strlen(de->d_name);
            if (l > 5 && strcmp(de->d_name + l - 5, ".gguf") == 0 &&
                (names[n] = strdup(de->d_name)) != NULL)
                n++;
        }
        closedir(d);
    }
    qsort(names, n, sizeof names[0], cmp_str);
    return n;
}

static bool fits(const char *path, cli_need need) {
    sipp_endpoint_info in;
    sipp_endpoint_info_init(&in, sizeof in);
    if (sipp_model_inspect(path, &in, NULL, NULL) != SIPP_OK) return false;
    return need == NEED_CHAT ? in.can_chat : need == NEED_EMBED ? in.can_embed : in.can_generate;
}

int cli_resolve_model(const char *name, cli_need need, char *buf, size_t cap) {
    char dir[PATH_MAX];
    cli_models_dir(dir, sizeof dir);
    if (name) {
        int hub_rc; /* a pulled name: OWNER/REPO[:QUANT] or OWNER/REPO/FILE.gguf (below) */
        if (!is_file(name) && cli_hub_lookup(name, buf, cap, &hub_rc)) return hub_rc;
        if (is_file(name) || strchr(name, '/')) {
            snprintf(buf, cap, "%s", name);
            return CLI_OK;
        }
        snprintf(buf, cap, "%s/%s", dir, name);
        if (is_file(buf)) return CLI_OK;
        snprintf(buf, cap, "%s/%s.gguf", dir, name);
        if (is_file(buf)) return CLI_OK;
        if (access(name, F_OK) == 0) { /* there but not a file: the library says what it is */
            snprintf(buf, cap, "%s", name);
            return CLI_OK;
        }
        cli_error("cannot open model '%s': no such file, and none of that name in %s (pull one "
                  "with: sipp pull OWNER/REPO[:QUANT])", name, dir);
        return CLI_FAILED;
    }
    char *names[CLI_MAX_MODEL_FILES];
    size_t n = cli_models_scan(dir, names, CLI_MAX_MODEL_FILES);
    int rc = CLI_FAILED;
    for (size_t i = 0; i < n; i++) {
        if (rc != CLI_OK) {
            snprintf(buf, cap, "%s/%s", dir, names[i]);
            if (fits(buf, need)) rc = CLI_OK;
        }
        free(names[i]);
    }
    if (rc != CLI_OK) rc = cli_hub_first(need, buf, cap); /* then the pulled ones (below) */
    if (rc != CLI_OK)
        cli_error("no model given and none in %s can %s; pass --model PATH, set SIPP_MODEL, "
                  "or pull one (sipp pull OWNER/REPO[:QUANT])", dir, need == NEED_CHAT ? "chat" : need == NEED_EMBED ? "embed" : "generate");
    return rc;
}


/* ---- pulled names ----------------------------------------------------------------------- */

bool cli_hub_lookup(const char *name, char *buf, size_t cap, int *rc) {
    sipp__hub_ref ref;
    if (sipp__hub_ref_parse(name, &ref, NULL) != SIPP_OK) return false; /* a path or file name */
    /* the library's resolution, the same as every model path of sipp.h takes */
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_model_resolve(name, buf, cap, &err) == SIPP_OK) {
        *rc = CLI_OK;
        return true;
    }
    cli_error("%s", err.message);
    *rc = CLI_FAILED;
    return true;
}

int cli_hub_first(cli_need need, char *buf, size_t cap) {
    char dir[4096];
    cli_models_dir(dir, sizeof dir);
    sipp__hub_item *items;
    size_t n;
    if (sipp__hub_list(dir, &items, &n, NULL) != SIPP_OK) return CLI_FAILED;
    int rc = CLI_FAILED;
    for (size_t i = 0; i < n && rc != CLI_OK; i++) {
        sipp_endpoint_info in;
        sipp_endpoint_info_init(&in, sizeof in);
        if (!items[i].complete || sipp_model_inspect(items[i].path, &in, NULL, NULL) != SIPP_OK)
            continue;
        bool fits = need == NEED_CHAT ? in.can_chat : need == NEED_EMBED ? in.can_embed
                                                                           : in.can_generate;
        if (fits) {
            snprintf(buf, cap, "%s", items[i].path);
            rc = CLI_OK;
        }
    }
    sipp__hub_list_free(items, n);
    return rc;
}
