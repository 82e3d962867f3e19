/*
 * fuzz_gguf_header.c — libFuzzer target for the GGUF structural check that runs before
 * llama.cpp sees a model file (src/engine/gguf_check.c): the input is a whole GGUF file, so the
 * fuzzer drives the header, every key-value, the vocabulary checks and the tensor table. The
 * seeds in corpus/gguf_header/ are small valid files (tests/fuzz/make_gguf_seeds.py).
 */
#include "engine/engine_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_status st = sipp__gguf_check_buffer(data, len, &err);
    /* the contract: OK, or MODEL_INVALID (OUT_OF_MEMORY only if malloc fails) with a message */
    if (st != SIPP_OK && st != SIPP_MODEL_INVALID && st != SIPP_OUT_OF_MEMORY) __builtin_trap();
    if (st != SIPP_OK && err.message[0] == '\0') __builtin_trap();
    return 0;
}
