/*
 * fuzz_gguf_header.c — libFuzzer target for the GGUF header pre-check that runs before
 * llama.cpp sees a model file (src/engine/gguf_check.c).
 */
#include "engine/engine_int.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    uint64_t file_size = len;
    if (len >= 8) memcpy(&file_size, data, 8); /* let the claimed size vary too */
    sipp__gguf_precheck_bytes(data, len, file_size, NULL);
    sipp__gguf_precheck_bytes(data, len, len, NULL);
    return 0;
}
