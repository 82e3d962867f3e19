/*
 * fuzz_kv_file.c — libFuzzer target for the snapshot file parser (src/engine/kvstore.c): any
 * bytes must parse or be rejected with an error, never crash or read out of bounds.
 */
#include "engine/kvstore.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    sipp__kv_file f;
    sipp__kv_compat want;
    memset(&want, 0, sizeof want);
    if (sipp__kv_file_parse(data, len, NULL, &f, NULL) == SIPP_OK) {
        /* everything the parser points at must lie inside the input */
        volatile uint8_t sink = 0;
        for (uint32_t i = 0; i < f.scope_len; i++) sink ^= (uint8_t)f.scope[i];
        int32_t t;
        for (uint32_t i = 0; i < f.n_tokens; i++) memcpy(&t, f.tokens + i, sizeof t), sink ^= (uint8_t)t;
        for (uint64_t i = 0; i < f.state_len; i++) sink ^= f.state[i];
        (void)sink;
    }
    sipp__kv_file_parse(data, len, &want, &f, NULL);
    return 0;
}
