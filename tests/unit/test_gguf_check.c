/*
 * test_gguf_check.c — the GGUF structural check (src/engine/gguf_check.c) on crafted images:
 * a small valid image passes, and each case of the bad-input matrix, section A (A1-A10), is
 * refused with SIPP_MODEL_INVALID and a message that names the key, tensor or token at fault.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "ggml.h"
#include "gguf_builder.h"

/* Asserts that the image is refused and that the message contains `want`. */
static void expect_invalid(const gb *b, const char *want) {
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_status st = sipp__gguf_check_buffer(b->p, b->len, &err);
    if (st != SIPP_MODEL_INVALID || !strstr(err.message, want))
        fail_msg("want MODEL_INVALID with '%s', got %s: %s", want, sipp_status_name(st),
                 err.message);
    assert_null(strchr(err.message, '\n'));
}

/* The image of gb_valid() with `n_kv` metadata entries of the caller's and no tensors. */
static void with_kvs(gb *b, uint64_t n_kv) {
    gb_init(b);
    gb_header(b, 3, 0, n_kv);
}

/* Appends the two-block image's vocabulary (4 tokens) plus its architecture keys. */
static const char *const vocab4[] = {"<s>", "</s>", "<0x0A>", "hi"};

static void accepts_valid_image(void **state) {
    (void)state;
    gb b;
    gb_valid(&b);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp__gguf_check_buffer(b.p, b.len, &err), SIPP_OK);
    /* no tensors and no metadata at all is structurally fine too (found by the fuzzer: the
     * empty tables must not reach qsort, which UBSan refuses a NULL base) */
    gb e;
    with_kvs(&e, 0);
    assert_int_equal(sipp__gguf_check_buffer(e.p, e.len, &err), SIPP_OK);
    gb_free(&e);
    gb_free(&b);
}

/* A1: every strict prefix of a valid image is refused (the data section included). */
static void a1_truncated_anywhere(void **state) {
    (void)state;
    gb b;
    gb_valid(&b);
    for (size_t len = 0; len < b.len; len++) {
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        sipp_status st = sipp__gguf_check_buffer(b.p, len, &err);
        if (st != SIPP_MODEL_INVALID) fail_msg("prefix of %zu bytes accepted", len);
    }
    /* header claims a tensor, then EOF */
    gb h;
    gb_init(&h);
    gb_header(&h, 3, 1, 0);
    expect_invalid(&h, "truncated");
    gb_free(&h);
    /* bad magic, short input, unknown version */
    gb m;
    gb_init(&m);
    gb_raw(&m, "GGUX", 4);
    expect_invalid(&m, "not a GGUF");
    gb_free(&m);
    gb_init(&m);
    gb_header(&m, 99, 0, 0);
    expect_invalid(&m, "version 99");
    gb_free(&m);
    gb_free(&b);
}

/* A2: absurd counts are refused before anything is allocated from them. */
static void a2_absurd_counts(void **state) {
    (void)state;
    uint64_t counts[] = {0xFFFFFFFFull, 1ull << 63, UINT64_MAX};
    for (size_t i = 0; i < 3; i++) {
        gb b;
        gb_init(&b);
        gb_header(&b, 3, 0, counts[i]);
        expect_invalid(&b, "not plausible");
        gb_free(&b);
        gb_init(&b);
        gb_header(&b, 3, counts[i], 1);
        expect_invalid(&b, "not plausible");
        gb_free(&b);
    }
    gb b; /* plausible in absolute terms, but more than the file holds */
    gb_init(&b);
    gb_header(&b, 3, 100000, 10);
    expect_invalid(&b, "more than a 24-byte file can hold");
    gb_free(&b);
}

/* A3: key, string and array lengths beyond the remaining bytes, or 2^63. */
static void a3_lengths(void **state) {
    (void)state;
    gb b;
    with_kvs(&b, 1); /* key length 2^63 */
    gb_le(&b, 1ull << 63, 8);
    gb_raw(&b, "general.name\x08\0\0\0", 16);
    expect_invalid(&b, "metadata entry 0 has a key of 9223372036854775808 bytes");
    gb_free(&b);

    with_kvs(&b, 1); /* string value longer than the file */
    gb_str(&b, "general.name");
    gb_le(&b, GB_STR, 4);
    gb_le(&b, 1000, 8);
    gb_raw(&b, "abc", 3);
    expect_invalid(&b, "string value of key 'general.name' claims 1000 bytes");
    gb_free(&b);

    with_kvs(&b, 1); /* array of 2^63 uint8 */
    gb_str(&b, "x.arr");
    gb_le(&b, GB_ARR, 4);
    gb_le(&b, GB_U8, 4);
    gb_le(&b, 1ull << 63, 8);
    gb_raw(&b, "abcd", 4);
    expect_invalid(&b, "key 'x.arr' claims 9223372036854775808 array elements");
    gb_free(&b);

    with_kvs(&b, 1); /* array of 2^61 uint64: the byte count overflows 64 bits */
    gb_str(&b, "x.arr");
    gb_le(&b, GB_ARR, 4);
    gb_le(&b, GB_U64, 4);
    gb_le(&b, 1ull << 61, 8);
    gb_le(&b, 0, 8);
    expect_invalid(&b, "key 'x.arr' claims");
    gb_free(&b);

    with_kvs(&b, 1); /* a string element inside an array claims too much */
    gb_str(&b, "x.strs");
    gb_le(&b, GB_ARR, 4);
    gb_le(&b, GB_STR, 4);
    gb_le(&b, 2, 8);
    gb_str(&b, "ok");
    gb_le(&b, UINT64_MAX, 8);
    gb_raw(&b, "abcdefgh", 8);
    expect_invalid(&b, "string 1 of key 'x.strs' claims 18446744073709551615 bytes");
    gb_free(&b);

    with_kvs(&b, 1); /* a key of 2 KiB (the limit is 1 KiB) */
    char big[2049];
    memset(big, 'k', 2048);
    big[2048] = '\0';
    gb_kv_u32(&b, big, 1);
    expect_invalid(&b, "has a key of 2048 bytes (limit 1024");
    gb_free(&b);

    with_kvs(&b, 1); /* empty key */
    gb_kv_u32(&b, "", 1);
    expect_invalid(&b, "metadata entry 0 has an empty key");
    gb_free(&b);
}

static void one_tensor(gb *b, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t offset, size_t data) {
    gb_init(b);
    gb_header(b, 3, 1, 0);
    gb_tensor(b, "t.weight", n_dims, ne, type, offset);
    gb_data(b, 32, data);
}

/* A4: dims whose product, or whose byte size, overflows; zero and negative dims; > 4 dims. */
static void a4_tensor_sizes(void **state) {
    (void)state;
    gb b;
    uint64_t ne1[] = {1ull << 32, 1ull << 32};
    one_tensor(&b, 2, ne1, 0, 0, 64);
    expect_invalid(&b, "tensor 0 ('t.weight'): the product of its dimensions overflows");
    gb_free(&b);
    uint64_t ne2[] = {1ull << 62}; /* 2^62 floats: 2^64 bytes */
    one_tensor(&b, 1, ne2, 0, 0, 64);
    expect_invalid(&b, "tensor 0 ('t.weight'): its size in bytes overflows");
    gb_free(&b);
    uint64_t ne3[] = {8, 0};
    one_tensor(&b, 2, ne3, 0, 0, 64);
    expect_invalid(&b, "tensor 0 ('t.weight') has dimension 1 = 0");
    gb_free(&b);
    uint64_t ne4[] = {UINT64_MAX};
    one_tensor(&b, 1, ne4, 0, 0, 64);
    expect_invalid(&b, "has dimension 0 = 18446744073709551615");
    gb_free(&b);
    uint64_t ne5[] = {1, 1, 1, 1};
    one_tensor(&b, 5, ne5, 0, 0, 64);
    expect_invalid(&b, "has 5 dimensions (1 to 4 allowed)");
    gb_free(&b);
    uint64_t ne6[] = {33}; /* Q4_0 (type 2) rows must be multiples of 32 */
    one_tensor(&b, 1, ne6, 2, 0, 64);
    expect_invalid(&b, "not a multiple of the q4_0 block size 32");
    gb_free(&b);
    /* the tensor name: too long (GGML_MAX_NAME) */
    gb_init(&b);
    gb_header(&b, 3, 1, 0);
    uint64_t ne7[] = {8};
    gb_tensor(&b, "a-name-that-is-longer-than-sixty-three-bytes-which-ggml-cannot-hold", 1, ne7,
              0, 0);
    gb_data(&b, 32, 64);
    expect_invalid(&b, "tensor 0 has a name of 67 bytes (1 to 63 allowed)");
    gb_free(&b);
}

/* A5: type ids at or past GGML_TYPE_COUNT, and ids ggml removed. */
static void a5_tensor_types(void **state) {
    (void)state;
    uint64_t ne[] = {64};
    uint32_t bad[] = {GGML_TYPE_COUNT, 0xFFFFFFFFu, 1000};
    for (size_t i = 0; i < 3; i++) {
        gb b;
        one_tensor(&b, 1, ne, bad[i], 0, 512);
        expect_invalid(&b, "has unknown type id");
        gb_free(&b);
    }
    uint32_t removed[] = {4, 5, 31, 32, 33, 36, 37, 38};
    for (size_t i = 0; i < 8; i++) {
        gb b;
        one_tensor(&b, 1, ne, removed[i], 0, 512);
        expect_invalid(&b, "which ggml no longer supports");
        gb_free(&b);
    }
}

/* A6: data beyond the file, misaligned offsets, overlapping and duplicate tensors. */
static void a6_tensor_offsets(void **state) {
    (void)state;
    gb b;
    uint64_t ne[] = {16}; /* 64 bytes of F32 */
    one_tensor(&b, 1, ne, 0, 32, 64); /* 32 + 64 > 64 */
    expect_invalid(&b, "data at offset 32, 64 bytes, runs past the end of the file");
    gb_free(&b);
    one_tensor(&b, 1, ne, 0, UINT64_MAX - 31, 64);
    expect_invalid(&b, "runs past the end of the file");
    gb_free(&b);
    one_tensor(&b, 1, ne, 0, 4, 128);
    expect_invalid(&b, "has data offset 4, not a multiple of the alignment 32");
    gb_free(&b);

    gb_init(&b); /* two tensors sharing bytes */
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "a", 1, ne, 0, 0);
    gb_tensor(&b, "b", 1, ne, 0, 32);
    gb_data(&b, 32, 128);
    expect_invalid(&b, "tensors 0 ('a') and 1 ('b') overlap");
    gb_free(&b);

    gb_init(&b); /* two tensors with one name */
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "a", 1, ne, 0, 0);
    gb_tensor(&b, "a", 1, ne, 0, 64);
    gb_data(&b, 32, 128);
    expect_invalid(&b, "tensor 1 has the same name as tensor 0 ('a')");
    gb_free(&b);
}

/* A7: general.alignment 0 or not a power of two; <arch>.block_count 0. */
static void a7_alignment_and_blocks(void **state) {
    (void)state;
    uint32_t bad[] = {0, 3, 48, 0x80000001u};
    for (size_t i = 0; i < 4; i++) {
        gb b;
        with_kvs(&b, 1);
        gb_kv_u32(&b, "general.alignment", bad[i]);
        expect_invalid(&b, "'general.alignment' is");
        expect_invalid(&b, "not a nonzero power of two");
        gb_free(&b);
    }
    gb b;
    with_kvs(&b, 2);
    gb_kv_u32(&b, "llama.block_count", 0); /* before the architecture: order does not matter */
    gb_kv_str(&b, "general.architecture", "llama");
    expect_invalid(&b, "'llama.block_count' is 0");
    gb_free(&b);
    /* a non-default alignment is honoured for the data offsets */
    gb_init(&b);
    gb_header(&b, 3, 1, 1);
    gb_kv_u32(&b, "general.alignment", 64);
    uint64_t ne[] = {8};
    gb_tensor(&b, "t", 1, ne, 0, 32);
    gb_data(&b, 64, 128);
    expect_invalid(&b, "not a multiple of the alignment 64");
    gb_free(&b);
}

/* A8: special-token ids outside the vocabulary; parallel arrays of the wrong length. */
static void a8_special_token_ids(void **state) {
    (void)state;
    const char *keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.seperator_token_id",
                          "tokenizer.ggml.padding_token_id", "tokenizer.ggml.eot_token_id"};
    uint32_t ids[] = {4, 0xFFFFFFFEu};
    for (size_t k = 0; k < 6; k++)
        for (size_t i = 0; i < 2; i++) {
            gb b;
            with_kvs(&b, 2);
            gb_kv_u32(&b, keys[k], ids[i]); /* before the vocabulary: order does not matter */
            gb_kv_strs(&b, "tokenizer.ggml.tokens", vocab4, 4);
            char want[128];
            snprintf(want, sizeof want, "'%s' is token id %u, outside the vocabulary of 4",
                     keys[k], ids[i]);
            expect_invalid(&b, want);
            gb_free(&b);
        }
    gb b;
    with_kvs(&b, 2);
    gb_kv_strs(&b, "tokenizer.ggml.tokens", vocab4, 4);
    int32_t types[] = {1, 1, 1};
    gb_kv_i32s(&b, "tokenizer.ggml.token_type", types, 3);
    expect_invalid(&b, "'tokenizer.ggml.token_type' has 3 entries but the vocabulary has 4");
    gb_free(&b);
    with_kvs(&b, 3); /* ids in range pass, and 0xFFFFFFFF means "none" (LLAMA_TOKEN_NULL) */
    gb_kv_strs(&b, "tokenizer.ggml.tokens", vocab4, 4);
    gb_kv_u32(&b, "tokenizer.ggml.eos_token_id", 3);
    gb_kv_u32(&b, "tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
    assert_int_equal(sipp__gguf_check_buffer(b.p, b.len, NULL), SIPP_OK);
    gb_free(&b);
}

/* A9: tokens typed BYTE must read exactly <0xHH>. */
static void a9_byte_tokens(void **state) {
    (void)state;
    const char *bad[] = {"<0x-1>", "<0xZZ>", "<", "<0x0A", "<0x0AA>", ""};
    for (size_t i = 0; i < 6; i++) {
        const char *toks[] = {"a", "b", bad[i]};
        int32_t types[] = {1, 6, 6};
        types[1] = 1;
        gb b;
        with_kvs(&b, 2);
        gb_kv_i32s(&b, "tokenizer.ggml.token_type", types, 3); /* before the tokens */
        gb_kv_strs(&b, "tokenizer.ggml.tokens", toks, 3);
        expect_invalid(&b, "token 2 is marked as a byte token but does not read <0xHH>");
        gb_free(&b);
        /* the same text as a normal token is fine */
        types[2] = 1;
        with_kvs(&b, 2);
        gb_kv_strs(&b, "tokenizer.ggml.tokens", toks, 3);
        gb_kv_i32s(&b, "tokenizer.ggml.token_type", types, 3);
        assert_int_equal(sipp__gguf_check_buffer(b.p, b.len, NULL), SIPP_OK);
        gb_free(&b);
    }
    /* a vocabulary past one bitmap step (32768 tokens) with the bad byte token at the end (the
     * texts are distinct: A14) */
    enum { N = 40000 };
    static const char *toks[N];
    static char texts[N][8];
    static int32_t types[N];
    for (size_t i = 0; i < N; i++) {
        snprintf(texts[i], sizeof texts[i], "t%zu", i);
        toks[i] = texts[i];
        types[i] = 1;
    }
    toks[0] = "<0x41>";
    types[0] = types[N - 1] = 6;
    toks[N - 1] = "<0xG1>";
    gb b;
    with_kvs(&b, 2);
    gb_kv_strs(&b, "tokenizer.ggml.tokens", toks, N);
    gb_kv_i32s(&b, "tokenizer.ggml.token_type", types, N);
    expect_invalid(&b, "token 39999 is marked as a byte token");
    gb_free(&b);
}

/* A10: duplicate keys, wrong types for known keys, nested arrays, unknown value types. */
static void a10_keys_and_types(void **state) {
    (void)state;
    gb b;
    with_kvs(&b, 3);
    gb_kv_str(&b, "general.name", "x");
    gb_kv_u32(&b, "general.file_type", 2);
    gb_kv_str(&b, "general.name", "y");
    expect_invalid(&b, "key 'general.name' appears twice (metadata entries 0 and 2)");
    gb_free(&b);

    with_kvs(&b, 1);
    gb_kv_str(&b, "general.alignment", "32");
    expect_invalid(&b, "key 'general.alignment' has type string, expected uint32");
    gb_free(&b);

    with_kvs(&b, 1);
    gb_kv_u32(&b, "general.architecture", 7);
    expect_invalid(&b, "key 'general.architecture' has type uint32, expected string");
    gb_free(&b);

    with_kvs(&b, 2);
    gb_kv_strs(&b, "tokenizer.ggml.tokens", vocab4, 4);
    gb_kv_typed(&b, "tokenizer.ggml.bos_token_id", GB_I32, 1, 4);
    expect_invalid(&b, "key 'tokenizer.ggml.bos_token_id' has type int32, expected uint32");
    gb_free(&b);

    with_kvs(&b, 1);
    int32_t ints[] = {1, 2};
    gb_kv_i32s(&b, "tokenizer.ggml.tokens", ints, 2);
    expect_invalid(&b, "'tokenizer.ggml.tokens' is an array of int32, expected an array of string");
    gb_free(&b);

    with_kvs(&b, 2);
    gb_kv_str(&b, "general.architecture", "gpt2");
    gb_kv_typed(&b, "gpt2.block_count", GB_U64, 8, 8);
    expect_invalid(&b, "key 'gpt2.block_count' has type uint64, expected uint32");
    gb_free(&b);

    with_kvs(&b, 1); /* nested array */
    gb_str(&b, "x.nested");
    gb_le(&b, GB_ARR, 4);
    gb_le(&b, GB_ARR, 4);
    gb_le(&b, 1, 8);
    gb_raw(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    expect_invalid(&b, "key 'x.nested' holds a nested array");
    gb_free(&b);

    with_kvs(&b, 1); /* unknown value type */
    gb_kv_typed(&b, "x.odd", 13, 0, 4);
    expect_invalid(&b, "key 'x.odd' has unknown value type 13");
    gb_free(&b);

    with_kvs(&b, 1); /* a key with an unprintable byte is named without it */
    gb_kv_typed(&b, "x.\x01odd", 99, 0, 4);
    expect_invalid(&b, "key 'x.?odd' has unknown value type 99");
    gb_free(&b);
}

/* A14: no two tokens may share a text (llama.cpp asserts it while mapping text to id); the
 * text is what llama.cpp reads: up to the first NUL, and "[EMPTY_<i>]" for an empty token. */
static void a14_duplicate_token_texts(void **state) {
    (void)state;
    gb b;
    static const char *const dup[] = {"<s>", "hi", "</s>", "hi"};
    with_kvs(&b, 1);
    gb_kv_strs(&b, "tokenizer.ggml.tokens", dup, 4);
    expect_invalid(&b, "GGUF tokens 1 and 3 have the same text (tokenizer.ggml.tokens)");
    gb_free(&b);
    static const char *const empty[] = {"a", "[EMPTY_2]", ""};
    with_kvs(&b, 1);
    gb_kv_strs(&b, "tokenizer.ggml.tokens", empty, 3);
    expect_invalid(&b, "GGUF tokens 1 and 2 have the same text");
    gb_free(&b);
    /* "hi\0x" is read as "hi" */
    with_kvs(&b, 1);
    gb_str(&b, "tokenizer.ggml.tokens");
    gb_le(&b, GB_ARR, 4);
    gb_le(&b, GB_STR, 4);
    gb_le(&b, 2, 8);
    gb_str(&b, "hi");
    gb_le(&b, 4, 8);
    gb_raw(&b, "hi\0x", 4);
    expect_invalid(&b, "GGUF tokens 0 and 1 have the same text");
    gb_free(&b);
    /* distinct texts, one empty, are fine */
    static const char *const fine[] = {"a", "", "[EMPTY_0]", "b"};
    with_kvs(&b, 1);
    gb_kv_strs(&b, "tokenizer.ggml.tokens", fine, 4);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp__gguf_check_buffer(b.p, b.len, &err), SIPP_OK);
    gb_free(&b);
}

/* A13: the split.* keys have the types llama.cpp reads them with (split.no of a later part is
 * read with gguf_get_val_u16, which aborts the process on any other type). */
static void a13_split_key_types(void **state) {
    (void)state;
    gb b;
    gb_split_part(&b, GB_U16, 1, 2, "w");
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp__gguf_check_buffer(b.p, b.len, &err), SIPP_OK);
    gb_free(&b);
    gb_split_part(&b, GB_I32, 1, 2, "w");
    expect_invalid(&b, "key 'split.no' has type int32, expected uint16");
    gb_free(&b);
    gb_split_part(&b, GB_U8, 1, 2, "w");
    expect_invalid(&b, "key 'split.no' has type uint8, expected uint16");
    gb_free(&b);
    with_kvs(&b, 1);
    gb_kv_u32(&b, "split.count", 2);
    expect_invalid(&b, "key 'split.count' has type uint32, expected uint16");
    gb_free(&b);
    with_kvs(&b, 1);
    gb_kv_typed(&b, "split.tensors.count", GB_U16, 2, 2);
    expect_invalid(&b, "key 'split.tensors.count' has type uint16, expected int32");
    gb_free(&b);
}

/* Writes `b` to dir/name and frees it. */
static void write_part(const char *dir, const char *name, gb *b) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(gb_write(b, path), 0);
    gb_free(b);
}

/* Asserts that precheck of dir/name fails with `want` and a message containing `needle`. */
static void expect_precheck(const char *dir, const char *name, sipp_status want,
                            const char *needle) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    uint32_t n_parts = 99;
    sipp_status st = sipp__gguf_precheck(path, &n_parts, &err);
    if (st != want || !strstr(err.message, needle))
        fail_msg("%s: want %s with '%s', got %s: %s", name, sipp_status_name(want), needle,
                 sipp_status_name(st), err.message);
    assert_null(strchr(err.message, '\n'));
}

/* A13: the first part of a split model brings every part llama.cpp would open into the check:
 * a part whose split.no has the wrong type (llama.cpp would abort), the wrong index or the
 * wrong split.count, a missing part, a first part loaded as a later one or misnamed. A
 * well-formed pair passes and counts its parts. */
static void a13_split_parts(void **state) {
    (void)state;
    char dir[] = "/tmp/sipp-gguf-split-XXXXXX";
    assert_non_null(mkdtemp(dir));
    gb b;
    gb_split_part(&b, GB_U16, 0, 2, "a");
    write_part(dir, "ok-00001-of-00002.gguf", &b);
    gb_split_part(&b, GB_U16, 1, 2, "b");
    write_part(dir, "ok-00002-of-00002.gguf", &b);
    char path[512];
    snprintf(path, sizeof path, "%s/ok-00001-of-00002.gguf", dir);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    uint32_t n_parts = 0;
    if (sipp__gguf_precheck(path, &n_parts, &err) != SIPP_OK) fail_msg("%s", err.message);
    assert_int_equal(n_parts, 2);

    gb_split_part(&b, GB_U16, 0, 2, "a");
    write_part(dir, "type-00001-of-00002.gguf", &b);
    gb_split_part(&b, GB_I32, 1, 2, "b");
    write_part(dir, "type-00002-of-00002.gguf", &b);
    expect_precheck(dir, "type-00001-of-00002.gguf", SIPP_MODEL_INVALID,
                    "type-00002-of-00002.gguf': GGUF key 'split.no' has type int32, expected "
                    "uint16");

    gb_split_part(&b, GB_U16, 0, 3, "a");
    write_part(dir, "index-00001-of-00003.gguf", &b);
    gb_split_part(&b, GB_U16, 1, 3, "b");
    write_part(dir, "index-00002-of-00003.gguf", &b);
    gb_split_part(&b, GB_U16, 1, 3, "c");
    write_part(dir, "index-00003-of-00003.gguf", &b);
    expect_precheck(dir, "index-00001-of-00003.gguf", SIPP_MODEL_INVALID,
                    "index-00003-of-00003.gguf': GGUF key 'split.no' is 1, expected 2 (split part "
                    "3 of 3)");

    gb_split_part(&b, GB_U16, 0, 2, "a");
    write_part(dir, "count-00001-of-00002.gguf", &b);
    gb_split_part(&b, GB_U16, 1, 5, "b");
    write_part(dir, "count-00002-of-00002.gguf", &b);
    expect_precheck(dir, "count-00001-of-00002.gguf", SIPP_MODEL_INVALID,
                    "GGUF key 'split.count' is 5, but the first part declares 2");

    gb_split_part(&b, GB_U16, 0, 2, "a");
    write_part(dir, "lone-00001-of-00002.gguf", &b);
    expect_precheck(dir, "lone-00001-of-00002.gguf", SIPP_NOT_FOUND,
                    "split part 2 of 2 ('");
    expect_precheck(dir, "ok-00002-of-00002.gguf", SIPP_MODEL_INVALID,
                    "is part 2 of 2 of a split model: load the first part");

    gb_split_part(&b, GB_U16, 0, 2, "a");
    write_part(dir, "renamed.gguf", &b);
    expect_precheck(dir, "renamed.gguf", SIPP_MODEL_INVALID,
                    "its name does not end in '-00001-of-00002.gguf'");

    gb_init(&b); /* split.count without split.no: llama.cpp requires it */
    gb_header(&b, 3, 0, 1);
    gb_kv_typed(&b, "split.count", GB_U16, 2, 2);
    write_part(dir, "nono-00001-of-00002.gguf", &b);
    expect_precheck(dir, "nono-00001-of-00002.gguf", SIPP_MODEL_INVALID,
                    "'split.count' is 2 but 'split.no' is missing");

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* The fuzz seeds (tests/fuzz/make_gguf_seeds.py) pass, so the fuzzer starts inside the walker;
 * the two real models pass as files. */
static void seeds_and_real_models_pass(void **state) {
    (void)state;
    const char *seeds[] = {"tiny-model", "q4-tensors", "all-types", "stories-vocab", "chat-vocab"};
    for (size_t i = 0; i < 5; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/gguf_header/%s", SIPP_SOURCE_DIR,
                 seeds[i]);
        FILE *f = fopen(path, "rb");
        if (!f) fail_msg("missing seed %s", path);
        static unsigned char buf[65536];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        if (sipp__gguf_check_buffer(buf, n, &err) != SIPP_OK)
            fail_msg("seed %s refused: %s", seeds[i], err.message);
    }
    const char *models[] = {SIPP_TEST_MODELS_DIR "/stories260K.gguf",
                            SIPP_TEST_MODELS_DIR "/tinystories-instruct-3m-soda-chat-Q4_0.gguf"};
    for (size_t i = 0; i < 2; i++) {
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        if (sipp__gguf_precheck(models[i], NULL, &err) != SIPP_OK)
            fail_msg("%s refused: %s", models[i], err.message);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_valid_image),
        cmocka_unit_test(seeds_and_real_models_pass),
        cmocka_unit_test(a1_truncated_anywhere),
        cmocka_unit_test(a2_absurd_counts),
        cmocka_unit_test(a3_lengths),
        cmocka_unit_test(a4_tensor_sizes),
        cmocka_unit_test(a5_tensor_types),
        cmocka_unit_test(a6_tensor_offsets),
        cmocka_unit_test(a7_alignment_and_blocks),
        cmocka_unit_test(a8_special_token_ids),
        cmocka_unit_test(a9_byte_tokens),
        cmocka_unit_test(a10_keys_and_types),
        cmocka_unit_test(a13_split_key_types),
        cmocka_unit_test(a13_split_parts),
        cmocka_unit_test(a14_duplicate_token_texts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
