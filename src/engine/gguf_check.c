/*
 * gguf_check.c — pre-validation of a GGUF file before llama.cpp sees it.
 *
 * llama.cpp parses GGUF thoroughly, but a file that is not GGUF at all, or whose header claims
 * absurd counts, deserves a clear error of our own before any large allocation. The GGUF header
 * is: magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata count (little endian).
 */
#define _POSIX_C_SOURCE 200809L
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define GGUF_HEADER_LEN 24
/* Smallest possible encodings: a tensor info holds a name length (8), at least one byte of
 * name, n_dims (4), one dim (8), type (4) and offset (8); a key-value pair holds a key length
 * (8), a byte of key, a type (4) and at least one byte of value. */
#define GGUF_MIN_TENSOR_INFO 33
#define GGUF_MIN_KV 14
#define GGUF_MAX_COUNT (1u << 24)

static uint64_t read_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

sipp_status sipp__gguf_precheck_bytes(const unsigned char *data, size_t len, uint64_t file_size,
                                      sipp_error *err) {
    if (len < GGUF_HEADER_LEN || memcmp(data, "GGUF", 4) != 0)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0, "not a GGUF file (bad magic)");
    uint32_t version = (uint32_t)read_le(data + 4, 4);
    if (version < 2 || version > 3)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0, "unsupported GGUF version %u", version);
    uint64_t n_tensors = read_le(data + 8, 8);
    uint64_t n_kv = read_le(data + 16, 8);
    if (n_tensors > GGUF_MAX_COUNT || n_kv > GGUF_MAX_COUNT)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0,
                          "GGUF header claims %llu tensors and %llu metadata entries: not plausible",
                          (unsigned long long)n_tensors, (unsigned long long)n_kv);
    uint64_t need = GGUF_HEADER_LEN + n_tensors * GGUF_MIN_TENSOR_INFO + n_kv * GGUF_MIN_KV;
    if (need > file_size)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0,
                          "GGUF header claims %llu tensors and %llu metadata entries, more than a "
                          "%llu-byte file can hold (truncated or corrupt)",
                          (unsigned long long)n_tensors, (unsigned long long)n_kv,
                          (unsigned long long)file_size);
    return SIPP_OK;
}

sipp_status sipp__gguf_precheck(const char *path, sipp_error *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return sipp__fail(err, errno == ENOENT ? SIPP_NOT_FOUND : SIPP_IO, errno,
                          "cannot open model '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return sipp__fail(err, SIPP_MODEL_INVALID, 0, "model '%s' is not a regular file", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return sipp__fail(err, SIPP_IO, errno, "cannot open model '%s': %s", path,
                          strerror(errno));
    unsigned char hdr[GGUF_HEADER_LEN];
    size_t got = fread(hdr, 1, sizeof hdr, f);
    fclose(f);
    sipp_status st2 = sipp__gguf_precheck_bytes(hdr, got, (uint64_t)st.st_size, err);
    if (st2 != SIPP_OK && err)
        /* prefix the path for context */
        {
            char msg[SIPP_ERROR_MESSAGE_CAP];
            snprintf(msg, sizeof msg, "%s", err->message);
            sipp__fail(err, st2, 0, "model '%s': %s", path, msg);
        }
    return st2;
}
