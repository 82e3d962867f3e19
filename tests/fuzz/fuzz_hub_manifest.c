/*
 * fuzz_hub_manifest.c — libFuzzer target for the store's manifests (src/hub/hub_parse.c) and
 * model references. A manifest that parses must serialise and parse back to the same text
 * (the store rewrites manifests on every pull and rm), and lookups must not crash.
 */
#include "hub/hub_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    /* the input as a reference, too */
    char *s = malloc(len + 1);
    if (!s) return 0;
    memcpy(s, data, len);
    s[len] = '\0';
    sipp__hub_ref ref;
    if (sipp__hub_ref_parse(s, &ref, NULL) == SIPP_OK) {
        char name[1200];
        sipp__hub_ref_name(&ref, name, sizeof name);
        sipp__hub_ref again;
        if (sipp__hub_ref_parse(name, &again, NULL) != SIPP_OK || again.kind != ref.kind ||
            strcmp(again.tag, ref.tag) != 0)
            __builtin_trap(); /* a canonical name must name the same thing */
    }
    free(s);

    sipp__hub_manifest m;
    if (sipp__hub_manifest_parse((const char *)data, len, &m, NULL) != SIPP_OK) return 0;
    char *dump = sipp__hub_manifest_dump(&m);
    if (dump) {
        sipp__hub_manifest back;
        if (sipp__hub_manifest_parse(dump, strlen(dump), &back, NULL) != SIPP_OK) __builtin_trap();
        char *dump2 = sipp__hub_manifest_dump(&back);
        if (dump2 && strcmp(dump, dump2) != 0) __builtin_trap();
        free(dump2);
        sipp__hub_manifest_free(&back);
        free(dump);
    }
    const char *names[] = {"o/r", "o/r:Q4_K_M", "o/r/x.gguf"};
    for (size_t i = 0; i < 3; i++)
        if (sipp__hub_ref_parse(names[i], &ref, NULL) == SIPP_OK) sipp__hub_manifest_find(&m, &ref);
    sipp__hub_manifest_free(&m);
    return 0;
}
