/*
 * fuzz_hub_files.c — libFuzzer target for the hub's answers as src/hub/hub_parse.c reads them:
 * the tree listing (and the refs answer, from the same bytes), then the choice of files for a
 * default, a quant and a file reference. Whatever the input, every chosen path must be one the
 * store accepts, every split set complete, and nothing may crash or leak.
 */
#include "hub/hub_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_plan(const sipp__hub_files *files, const char *name) {
    sipp__hub_ref ref;
    if (sipp__hub_ref_parse(name, &ref, NULL) != SIPP_OK) return;
    sipp__hub_plan *plan = calloc(1, sizeof *plan);
    if (!plan) return;
    if (sipp__hub_plan_make(files, &ref, plan, NULL) == SIPP_OK) {
        if (plan->n_model == 0) __builtin_trap();
        for (size_t i = 0; i < plan->n_model; i++)
            if (!plan->model[i] || !sipp__hub_path_ok(plan->model[i]->path)) __builtin_trap();
        if (plan->mmproj && !sipp__hub_path_ok(plan->mmproj->path)) __builtin_trap();
    }
    free(plan);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    char commit[41];
    sipp__hub_refs_parse((const char *)data, len, commit, NULL);
    sipp__hub_files files = {0};
    if (sipp__hub_files_parse((const char *)data, len, &files, NULL) == SIPP_OK) {
        for (size_t i = 0; i < files.n; i++) {
            if (!sipp__hub_path_ok(files.v[i].path)) __builtin_trap();
            if (files.v[i].sha256[0] && !sipp__hub_hex_ok(files.v[i].sha256, 64)) __builtin_trap();
            sipp__hub_split_info(files.v[i].path, NULL, NULL, NULL);
        }
        check_plan(&files, "o/r");
        check_plan(&files, "o/r:Q4_0");
        if (files.n) {
            char name[SIPP__HUB_PATH_MAX + 8];
            snprintf(name, sizeof name, "o/r/%s", files.v[0].path);
            check_plan(&files, name);
        }
    }
    sipp__hub_files_free(&files);
    return 0;
}
