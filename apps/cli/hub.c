/*
 * hub.c — pulled model names (OWNER/REPO[:QUANT], OWNER/REPO/FILE.gguf) wherever the CLI takes
 * a model: the bridge from cli_resolve_model() to libsipp's sipp_model_resolve() (a name given
 * with --model) and to the store's list (hub_int.h: the first pulled model that fits, when no
 * --model is given). Pull, list and remove are internal to libsipp; `sipp` links it statically.
 */
#include "cli.h"

#include "hub/hub_int.h"

#include <string.h>

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
