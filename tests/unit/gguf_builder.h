/*
 * gguf_builder.h — builds GGUF byte images in memory for the tests of the GGUF check
 * (tests/unit/test_gguf_check.c, tests/api/test_bad_input.c). Header-only, test code.
 *
 * Usage: gb_init(&b), then gb_header(), key-values (gb_kv_*), tensor infos (gb_tensor), and
 * gb_data() to pad and append the data section; the counts in the header are whatever the
 * caller passed, so a test can lie about them. gb_free() releases the image.
 */
#ifndef SIPP_TEST_GGUF_BUILDER_H
#define SIPP_TEST_GGUF_BUILDER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gb {
    unsigned char *p;
    size_t len, cap;
} gb;

enum { GB_U8, GB_I8, GB_U16, GB_I16, GB_U32, GB_I32, GB_F32, GB_BOOL, GB_STR, GB_ARR, GB_U64,
       GB_I64, GB_F64 };

#define GB_UNUSED __attribute__((unused))

static GB_UNUSED void gb_init(gb *b) { memset(b, 0, sizeof *b); }
static GB_UNUSED void gb_free(gb *b) { free(b->p); memset(b, 0, sizeof *b); }

static GB_UNUSED void gb_raw(gb *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->len + n) nc *= 2;
        b->p = realloc(b->p, nc);
        if (!b->p) abort();
        b->cap = nc;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static GB_UNUSED void gb_le(gb *b, uint64_t v, int n) {
    unsigned char t[8];
    for (int i = 0; i < n; i++) t[i] = (unsigned char)(v >> (8 * i));
    gb_raw(b, t, (size_t)n);
}

static GB_UNUSED void gb_header(gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gb_raw(b, "GGUF", 4);
    gb_le(b, version, 4);
    gb_le(b, n_tensors, 8);
    gb_le(b, n_kv, 8);
}

static GB_UNUSED void gb_str(gb *b, const char *s) {
    gb_le(b, strlen(s), 8);
    gb_raw(b, s, strlen(s));
}

static GB_UNUSED void gb_kv_u32(gb *b, const char *key, uint32_t v) {
    gb_str(b, key);
    gb_le(b, GB_U32, 4);
    gb_le(b, v, 4);
}

static GB_UNUSED void gb_kv_typed(gb *b, const char *key, uint32_t type, uint64_t v, int n) {
    gb_str(b, key);
    gb_le(b, type, 4);
    gb_le(b, v, n);
}

static GB_UNUSED void gb_kv_str(gb *b, const char *key, const char *v) {
    gb_str(b, key);
    gb_le(b, GB_STR, 4);
    gb_str(b, v);
}

/* An array of strings. */
static GB_UNUSED void gb_kv_strs(gb *b, const char *key, const char *const *v, size_t n) {
    gb_str(b, key);
    gb_le(b, GB_ARR, 4);
    gb_le(b, GB_STR, 4);
    gb_le(b, n, 8);
    for (size_t i = 0; i < n; i++) gb_str(b, v[i]);
}

/* An array of int32 (token types). */
static GB_UNUSED void gb_kv_i32s(gb *b, const char *key, const int32_t *v, size_t n) {
    gb_str(b, key);
    gb_le(b, GB_ARR, 4);
    gb_le(b, GB_I32, 4);
    gb_le(b, n, 8);
    for (size_t i = 0; i < n; i++) gb_le(b, (uint32_t)v[i], 4);
}

/* A tensor info with up to four dims (n_dims may lie: only the first min(n_dims, 4) are
 * written). */
static GB_UNUSED void gb_tensor(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset) {
    gb_str(b, name);
    gb_le(b, n_dims, 4);
    for (uint32_t i = 0; i < n_dims && i < 4; i++) gb_le(b, ne[i], 8);
    gb_le(b, type, 4);
    gb_le(b, offset, 8);
}

/* Pads to `align` and appends `n` zero bytes of tensor data. */
static GB_UNUSED void gb_data(gb *b, size_t align, size_t n) {
    static const unsigned char z[256];
    while (b->len % align) gb_raw(b, z, 1);
    while (n > 0) {
        size_t k = n < sizeof z ? n : sizeof z;
        gb_raw(b, z, k);
        n -= k;
    }
}

/* A small valid model image: architecture "llama", one block, a four-token vocabulary with one
 * byte token, a BOS id, and two F32 tensors of 16 and 8 floats. */
static GB_UNUSED void gb_valid(gb *b) {
    static const char *const tokens[] = {"<s>", "</s>", "<0x0A>", "hi"};
    static const int32_t types[] = {3, 3, 6, 1};
    gb_init(b);
    gb_header(b, 3, 2, 6);
    gb_kv_str(b, "general.architecture", "llama");
    gb_kv_u32(b, "general.alignment", 32);
    gb_kv_u32(b, "llama.block_count", 1);
    gb_kv_strs(b, "tokenizer.ggml.tokens", tokens, 4);
    gb_kv_i32s(b, "tokenizer.ggml.token_type", types, 4);
    gb_kv_u32(b, "tokenizer.ggml.bos_token_id", 0);
    uint64_t a[] = {4, 4}, c[] = {8};
    gb_tensor(b, "a.weight", 2, a, 0 /* F32 */, 0);
    gb_tensor(b, "c.weight", 1, c, 0, 64);
    gb_data(b, 32, 64 + 32);
}

/* One part of a split model as llama-gguf-split writes it: architecture "llama", split.no of
 * type `no_type` (a scalar type; GB_U16 in a well-formed part), split.count `count` (uint16),
 * split.tensors.count 2 (int32), and one F32 tensor of 8 floats named `tensor`. */
static GB_UNUSED void gb_split_part(gb *b, uint32_t no_type, uint64_t no, uint16_t count,
                                    const char *tensor) {
    gb_init(b);
    gb_header(b, 3, 1, 4);
    gb_kv_str(b, "general.architecture", "llama");
    static const int size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    gb_kv_typed(b, "split.no", no_type, no, no_type < 13 ? size[no_type] : 4);
    gb_kv_typed(b, "split.count", GB_U16, count, 2);
    gb_kv_typed(b, "split.tensors.count", GB_I32, 2, 4);
    uint64_t ne[] = {8};
    gb_tensor(b, tensor, 1, ne, 0 /* F32 */, 0);
    gb_data(b, 32, 32);
}

static GB_UNUSED int gb_write(const gb *b, const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(b->p, 1, b->len, f);
    return fclose(f) == 0 && w == b->len ? 0 : -1;
}

#endif
