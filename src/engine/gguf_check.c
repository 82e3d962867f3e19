/*
 * gguf_check.c — structural validation of a GGUF file before llama.cpp sees it.
 *
 * Contract: sipp__gguf_precheck() walks the whole metadata section and tensor table of a file
 * and returns SIPP_OK only when every length, count, type and offset is consistent with the
 * file; otherwise SIPP_MODEL_INVALID with a one-line message that names what is wrong and
 * where (the key, the tensor index or the token index). It never reads tensor data.
 *
 * Invariants:
 *  - Reads go through one reader with a bounded window (64 KiB for files); no allocation is
 *    ever sized from a count in the file. The tables below (keys, tensors, token bits) grow
 *    only as entries are actually read, so they stay proportional to the bytes consumed.
 *  - Every size is computed in uint64_t with overflow builtins; nothing narrows to int.
 *  - Tensor type sizes come from ggml (ggml_type_size/ggml_blck_size) only after the id is
 *    checked against GGML_TYPE_COUNT; removed ids (block size 0 in ggml's table) are refused.
 *
 * What is checked (docs/reliability.md, section A): header (magic, version 2-3, counts);
 * every key-value (non-empty key of at most 1 KiB, known value type, string and array lengths
 * within the remaining bytes, no nested arrays — llama.cpp refuses them too, no duplicate
 * keys); known keys have the type llama.cpp expects; general.alignment is a power of two;
 * <arch>.block_count is nonzero; tokenizer.ggml.*_token_id ids lie inside the tokens array
 * (0xFFFFFFFF, "none", excepted);
 * token_type/scores arrays match the tokens array; BYTE tokens read exactly "<0xHH>"; no two
 * tokens share a text (as llama.cpp reads it: up to the first NUL, "[EMPTY_<i>]" when empty;
 * llama.cpp asserts this); split.no/split.count are uint16; every tensor (name of 1..63 bytes,
 * unique, 1-4 dims each > 0, type known, byte size without overflow, offset aligned, data
 * inside the file, no overlap).
 *
 * Split models: sipp__gguf_precheck() on the first part of a llama-gguf-split model checks every
 * part llama.cpp would open (named as llama_split_path names them), each one whole, plus that
 * part i's split.no is i and its split.count the first part's (precheck_parts).
 */
#define _POSIX_C_SOURCE 200809L
#include "engine_int.h"

#include "ggml.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_HEADER_LEN 24
#define GGUF_MAX_COUNT (1u << 24)  /* tensors or key-values: far beyond any real model */
#define GGUF_MAX_KEY_LEN 1024
#define GGUF_TENSOR_NAME_MAX 64    /* GGML_MAX_NAME, including the terminating NUL */
#define GGUF_TENSOR_MAX_DIMS 4     /* GGML_MAX_DIMS */
#define GGUF_DEFAULT_ALIGN 32
#define GGUF_READ_WINDOW (64u * 1024u)
#define GGUF_TOKEN_TYPE_BYTE 6     /* LLAMA_TOKEN_TYPE_BYTE */

enum {
    T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64,
    T_COUNT
};
static const uint8_t type_size[T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const type_name[T_COUNT] = {"uint8", "int8", "uint16", "int16", "uint32",
                                               "int32", "float32", "bool", "string", "array",
                                               "uint64", "int64", "float64"};

/* ---- reader: memory or a file through a bounded window ------------------------------------ */

typedef struct reader {
    const unsigned char *mem; /* whole input in memory, or NULL for a file */
    FILE *f;
    uint64_t size;            /* total bytes */
    uint64_t pos;             /* next byte to read */
    unsigned char *win;       /* file window [win_pos, win_pos + win_len) */
    uint64_t win_pos;
    size_t win_len;
} reader;

static uint64_t remaining(const reader *r) { return r->size - r->pos; }

/* Copies n bytes at the current position; false at end of input or on an I/O error. */
static bool rd_bytes(reader *r, void *dst, size_t n) {
    if (n > remaining(r)) return false;
    if (r->mem) {
        memcpy(dst, r->mem + r->pos, n);
        r->pos += n;
        return true;
    }
    unsigned char *out = dst;
    while (n > 0) {
        if (r->pos < r->win_pos || r->pos >= r->win_pos + r->win_len) {
            if (fseeko(r->f, (off_t)r->pos, SEEK_SET) != 0) return false;
            uint64_t want = remaining(r) < GGUF_READ_WINDOW ? remaining(r) : GGUF_READ_WINDOW;
            size_t got = fread(r->win, 1, (size_t)want, r->f);
            if (got == 0) return false;
            r->win_pos = r->pos;
            r->win_len = got;
        }
        size_t off = (size_t)(r->pos - r->win_pos);
        size_t take = r->win_len - off < n ? r->win_len - off : n;
        memcpy(out, r->win + off, take);
        out += take;
        r->pos += take;
        n -= take;
    }
    return true;
}

static bool rd_skip(reader *r, uint64_t n) {
    if (n > remaining(r)) return false;
    r->pos += n;
    return true;
}

static bool rd_u32(reader *r, uint32_t *v) {
    unsigned char b[4];
    if (!rd_bytes(r, b, 4)) return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
}

static bool rd_u64(reader *r, uint64_t *v) {
    unsigned char b[8];
    if (!rd_bytes(r, b, 8)) return false;
    *v = 0;
    for (int i = 7; i >= 0; i--) *v = (*v << 8) | b[i];
    return true;
}

/* ---- tables that grow with what was read -------------------------------------------------- */

typedef struct kv_entry {
    uint64_t key_off;   /* into check.keys */
    uint32_t key_len;
    uint8_t type, arr_type;
    bool has_int;       /* scalar integer value in ival */
    uint64_t n;         /* array element count */
    int64_t ival;
    uint64_t index;     /* position in the file's key list */
    const char *key;    /* set once every key is read (c->keys no longer moves) */
} kv_entry;

/* A token's text as llama.cpp keys it (up to its first NUL; an empty one is "[EMPTY_<i>]"),
 * by two 64-bit hashes of it: equal texts always hash equal, so no duplicate can pass, and
 * memory stays 24 bytes a token whatever the strings' lengths. Two different texts collide in
 * both hashes with a chance near 2^-128 (a crafted collision only refuses its own file). No
 * SHA-256 here: the browser build has none. */
typedef struct token_digest {
    uint64_t a, b;
    uint64_t index;
} token_digest;

static void hash_update(token_digest *t, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        t->a = (t->a ^ p[i]) * 0x100000001b3ull; /* FNV-1a */
        t->b = (t->b ^ p[i]) * 0xff51afd7ed558ccdull;
        t->b = t->b << 29 | t->b >> 35;
    }
}

typedef struct tensor_entry {
    uint64_t offset, nbytes, index;
    char name[GGUF_TENSOR_NAME_MAX];
} tensor_entry;

typedef struct check {
    reader r;
    sipp_error *err;
    sipp__buf keys;          /* every key, concatenated */
    kv_entry *kv;
    size_t n_kv, cap_kv;
    tensor_entry *tensors;
    size_t n_tensors, cap_tensors;
    unsigned char *byte_ok;  /* bit i: token i reads "<0xHH>" */
    unsigned char *is_byte;  /* bit i: token_type[i] == BYTE */
    uint64_t n_byte_ok, n_is_byte;
    token_digest *tok;       /* one per token of tokenizer.ggml.tokens */
    size_t n_tok, cap_tok;
    char arch[64];
    int64_t split_no, split_count; /* the split.* keys (uint16), -1 when absent */
} check;

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

/* Sets bit i of a bitmap that grows in steps of 4 KiB as bits are set in order. */
static bool bit_set(unsigned char **map, uint64_t i, bool v) {
    if (i % 32768 == 0) {
        unsigned char *q = realloc(*map, (size_t)(i / 8) + 4096);
        if (!q) return false;
        memset(q + i / 8, 0, 4096);
        *map = q;
    }
    if (v) (*map)[i / 8] |= (unsigned char)(1u << (i % 8));
    return true;
}

static bool bit_get(const unsigned char *map, uint64_t i) {
    return (map[i / 8] >> (i % 8)) & 1u;
}

/* ---- errors ------------------------------------------------------------------------------- */

/* A key or name made printable for a one-line message: at most 80 bytes, odd bytes as '?'. */
static void printable(char *dst, size_t cap, const char *s, size_t len) {
    size_t j = 0;
    for (size_t i = 0; i < len && j + 4 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        if (j >= 80) {
            memcpy(dst + j, "...", 3);
            j += 3;
            break;
        }
    }
    dst[j] = '\0';
}

#define FAIL(c, ...) sipp__fail((c)->err, SIPP_MODEL_INVALID, 0, __VA_ARGS__)
#define OOM(c) sipp__fail((c)->err, SIPP_OUT_OF_MEMORY, 0, "out of memory checking the GGUF file")

/* ---- key-values --------------------------------------------------------------------------- */

static bool is_token_id_key(const char *k) {
    size_t n = strlen(k);
    return strncmp(k, "tokenizer.ggml.", 15) == 0 && n > 24 && strcmp(k + n - 9, "_token_id") == 0;
}

/* Reads a string's length and checks it against the remaining bytes. */
static sipp_status read_str_len(check *c, uint64_t *len, const char *what, const char *key) {
    if (!rd_u64(&c->r, len))
        return FAIL(c, "GGUF %s of key '%s' is cut off (truncated file)", what, key);
    if (*len > remaining(&c->r))
        return FAIL(c, "GGUF %s of key '%s' claims %llu bytes, more than the %llu left in the file",
                    what, key, (unsigned long long)*len, (unsigned long long)remaining(&c->r));
    return SIPP_OK;
}

/* Reads token i's text (`len` bytes at the current position): notes whether it is a
 * well-formed byte token ("<0xHH>") and appends the digest of the text llama.cpp keys it by. */
static sipp_status read_token(check *c, uint64_t i, uint64_t len, const char *key) {
    unsigned char chunk[4096];
    bool ok = false, nul = false;
    uint64_t text_len = 0;
    token_digest h = {0xcbf29ce484222325ull, 0x9e3779b97f4a7c15ull, i};
    for (uint64_t left = len; left > 0;) {
        size_t n = left < sizeof chunk ? (size_t)left : sizeof chunk;
        if (!rd_bytes(&c->r, chunk, n))
            return FAIL(c, "GGUF string %llu of key '%s' cannot be read", (unsigned long long)i,
                        key);
        if (left == len && len == 6)
            ok = memcmp(chunk, "<0x", 3) == 0 && chunk[5] == '>' && chunk[3] && chunk[4] &&
                 strchr("0123456789abcdefABCDEF", chunk[3]) &&
                 strchr("0123456789abcdefABCDEF", chunk[4]);
        if (!nul) { /* llama.cpp reads the text as a C string */
            const unsigned char *z = memchr(chunk, '\0', n);
            size_t take = z ? (size_t)(z - chunk) : n;
            hash_update(&h, chunk, take);
            text_len += take;
            nul = z != NULL;
        }
        left -= n;
    }
    if (text_len == 0) { /* llama.cpp names an empty token "[EMPTY_<i>]" */
        char name[40];
        int n = snprintf(name, sizeof name, "[EMPTY_%llu]", (unsigned long long)i);
        hash_update(&h, (const unsigned char *)name, (size_t)n);
        text_len = (uint64_t)n;
    }
    h.b ^= text_len; /* finish b (a murmur3 finaliser) so every input bit reaches every bit */
    h.b ^= h.b >> 33;
    h.b *= 0xc4ceb9fe1a85ec53ull;
    h.b ^= h.b >> 33;
    if (!bit_set(&c->byte_ok, i, ok)) return OOM(c);
    c->n_byte_ok = i + 1;
    if (!grow((void **)&c->tok, &c->cap_tok, c->n_tok + 1, sizeof *c->tok)) return OOM(c);
    c->tok[c->n_tok++] = h;
    return SIPP_OK;
}

static int cmp_token_digest(const void *a, const void *b) {
    const token_digest *x = a, *y = b;
    if (x->a != y->a) return x->a < y->a ? -1 : 1;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Walks one array value: element type, count, elements. Strings of tokenizer.ggml.tokens are
 * read (6 bytes at most) to note which ones are well-formed byte tokens; token_type values are
 * read to note BYTE tokens. */
static sipp_status walk_array(check *c, kv_entry *e, const char *key) {
    uint32_t at;
    if (!rd_u32(&c->r, &at) || !rd_u64(&c->r, &e->n))
        return FAIL(c, "GGUF array header of key '%s' is cut off (truncated file)", key);
    if (at == T_ARRAY) return FAIL(c, "GGUF key '%s' holds a nested array (not supported)", key);
    if (at >= T_COUNT) return FAIL(c, "GGUF key '%s' has an array of unknown type %u", key, at);
    e->arr_type = (uint8_t)at;
    uint64_t min_elem = at == T_STRING ? 8 : type_size[at], bytes;
    if (__builtin_mul_overflow(e->n, min_elem, &bytes) || bytes > remaining(&c->r))
        return FAIL(c, "GGUF key '%s' claims %llu array elements, more than the %llu bytes left "
                    "in the file can hold", key, (unsigned long long)e->n,
                    (unsigned long long)remaining(&c->r));
    bool tokens = at == T_STRING && strcmp(key, "tokenizer.ggml.tokens") == 0;
    bool types = at == T_I32 && strcmp(key, "tokenizer.ggml.token_type") == 0;
    if (at != T_STRING && !types) {
        rd_skip(&c->r, bytes);
        return SIPP_OK;
    }
    for (uint64_t i = 0; i < e->n; i++) {
        if (types) {
            uint32_t v;
            if (!rd_u32(&c->r, &v)) return FAIL(c, "GGUF key '%s' is cut off", key);
            if (!bit_set(&c->is_byte, i, (int32_t)v == GGUF_TOKEN_TYPE_BYTE)) return OOM(c);
            c->n_is_byte = i + 1;
            continue;
        }
        uint64_t len;
        if (!rd_u64(&c->r, &len))
            return FAIL(c, "GGUF string %llu of key '%s' is cut off (truncated file)",
                        (unsigned long long)i, key);
        if (len > remaining(&c->r))
            return FAIL(c, "GGUF string %llu of key '%s' claims %llu bytes, more than the %llu "
                        "left in the file", (unsigned long long)i, key, (unsigned long long)len,
                        (unsigned long long)remaining(&c->r));
        if (tokens) {
            sipp_status st = read_token(c, i, len, key);
            if (st != SIPP_OK) return st;
        } else {
            rd_skip(&c->r, len);
        }
    }
    return SIPP_OK;
}

/* Walks key-value number `index`, appending it to c->kv. */
static sipp_status walk_kv(check *c, uint64_t index) {
    uint64_t klen;
    if (!rd_u64(&c->r, &klen))
        return FAIL(c, "GGUF metadata entry %llu is cut off (truncated file)",
                    (unsigned long long)index);
    if (klen == 0)
        return FAIL(c, "GGUF metadata entry %llu has an empty key", (unsigned long long)index);
    if (klen > GGUF_MAX_KEY_LEN || klen > remaining(&c->r))
        return FAIL(c, "GGUF metadata entry %llu has a key of %llu bytes (limit %u, %llu bytes "
                    "left in the file)", (unsigned long long)index, (unsigned long long)klen,
                    GGUF_MAX_KEY_LEN, (unsigned long long)remaining(&c->r));
    char kbuf[GGUF_MAX_KEY_LEN + 1];
    if (!rd_bytes(&c->r, kbuf, (size_t)klen))
        return FAIL(c, "GGUF metadata entry %llu cannot be read", (unsigned long long)index);
    kbuf[klen] = '\0';
    char key[96];
    printable(key, sizeof key, kbuf, (size_t)klen);
    if (memchr(kbuf, '\0', (size_t)klen))
        return FAIL(c, "GGUF metadata entry %llu has a key with a NUL byte ('%s')",
                    (unsigned long long)index, key);
    if (!grow((void **)&c->kv, &c->cap_kv, c->n_kv + 1, sizeof *c->kv)) return OOM(c);
    kv_entry *e = &c->kv[c->n_kv];
    memset(e, 0, sizeof *e);
    e->key_off = c->keys.len;
    e->key_len = (uint32_t)klen;
    e->index = index;
    if (sipp__buf_append(&c->keys, kbuf, (size_t)klen + 1) != SIPP_OK) return OOM(c);

    uint32_t t;
    if (!rd_u32(&c->r, &t))
        return FAIL(c, "GGUF key '%s' is cut off before its type (truncated file)", key);
    if (t >= T_COUNT) return FAIL(c, "GGUF key '%s' has unknown value type %u", key, t);
    e->type = (uint8_t)t;
    sipp_status st = SIPP_OK;
    if (t == T_ARRAY) {
        st = walk_array(c, e, key);
    } else if (t == T_STRING) {
        uint64_t len = 0;
        st = read_str_len(c, &len, "string value", key);
        if (st == SIPP_OK && strcmp(kbuf, "general.architecture") == 0) {
            if (len >= sizeof c->arch)
                return FAIL(c, "GGUF key 'general.architecture' is %llu bytes long (limit %zu)",
                            (unsigned long long)len, sizeof c->arch - 1);
            if (!rd_bytes(&c->r, c->arch, (size_t)len))
                return FAIL(c, "GGUF key 'general.architecture' cannot be read");
            c->arch[len] = '\0';
            if (strlen(c->arch) != len)
                return FAIL(c, "GGUF key 'general.architecture' holds a NUL byte");
        } else if (st == SIPP_OK) {
            rd_skip(&c->r, len);
        }
    } else {
        unsigned char v[8] = {0};
        if (!rd_bytes(&c->r, v, type_size[t]))
            return FAIL(c, "GGUF value of key '%s' is cut off (truncated file)", key);
        uint64_t u = 0;
        for (int i = type_size[t] - 1; i >= 0; i--) u = (u << 8) | v[i];
        e->has_int = true;
        switch (t) {
        case T_I8: e->ival = (int8_t)u; break;
        case T_I16: e->ival = (int16_t)u; break;
        case T_I32: e->ival = (int32_t)u; break;
        case T_I64: e->ival = (int64_t)u; break;
        case T_U64: e->ival = u > INT64_MAX ? INT64_MAX : (int64_t)u; break;
        case T_F32: case T_F64: e->has_int = false; break;
        default: e->ival = (int64_t)u; break; /* u8, u16, u32, bool */
        }
    }
    if (st == SIPP_OK) c->n_kv++;
    return st;
}

/* Orders by key, then by position in the file (so a duplicate names its second occurrence). */
static int cmp_kv(const void *a, const void *b) {
    const kv_entry *x = a, *y = b;
    int r = strcmp(x->key, y->key);
    if (r) return r;
    return x->index < y->index ? -1 : x->index > y->index;
}

static const kv_entry *find_kv(const check *c, const char *key) {
    size_t lo = 0, hi = c->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(c->kv[mid].key, key);
        if (r == 0) return &c->kv[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- checks on known keys (after the walk, so key order does not matter) ------------------ */

static const struct {
    const char *key;
    uint8_t type, arr_type;
} known_keys[] = {
    {"general.architecture", T_STRING, 0},
    {"general.alignment", T_U32, 0},
    {"general.name", T_STRING, 0},
    {"general.file_type", T_U32, 0},
    {"tokenizer.ggml.model", T_STRING, 0},
    {"tokenizer.ggml.pre", T_STRING, 0},
    {"tokenizer.chat_template", T_STRING, 0},
    {"tokenizer.ggml.tokens", T_ARRAY, T_STRING},
    {"tokenizer.ggml.token_type", T_ARRAY, T_I32},
    {"tokenizer.ggml.scores", T_ARRAY, T_F32},
    {"tokenizer.ggml.merges", T_ARRAY, T_STRING},
    {"tokenizer.ggml.add_bos_token", T_BOOL, 0},
    {"tokenizer.ggml.add_eos_token", T_BOOL, 0},
    /* a split model (llama-gguf-split): llama.cpp reads split.no of parts 2..N with
     * gguf_get_val_u16, which aborts the process on any other type */
    {"split.no", T_U16, 0},
    {"split.count", T_U16, 0},
    {"split.tensors.count", T_I32, 0},
};
/* <arch>.<suffix> keys that llama.cpp reads as uint32. */
static const char *const arch_u32_keys[] = {"block_count", "context_length", "embedding_length"};

static sipp_status want_type(check *c, const kv_entry *e, uint8_t type, uint8_t arr_type) {
    char key[96];
    printable(key, sizeof key, e->key, e->key_len);
    if (e->type != type)
        return FAIL(c, "GGUF key '%s' has type %s, expected %s", key, type_name[e->type],
                    type_name[type]);
    if (type == T_ARRAY && e->arr_type != arr_type)
        return FAIL(c, "GGUF key '%s' is an array of %s, expected an array of %s", key,
                    type_name[e->arr_type], type_name[arr_type]);
    return SIPP_OK;
}

static sipp_status check_keys(check *c, uint32_t *alignment) {
    for (size_t i = 0; i < c->n_kv; i++) c->kv[i].key = c->keys.data + c->kv[i].key_off;
    if (c->n_kv > 1) qsort(c->kv, c->n_kv, sizeof *c->kv, cmp_kv); /* kv is NULL when empty */
    for (size_t i = 1; i < c->n_kv; i++)
        if (strcmp(c->kv[i - 1].key, c->kv[i].key) == 0) {
            char key[96];
            printable(key, sizeof key, c->kv[i].key, c->kv[i].key_len);
            return FAIL(c, "GGUF key '%s' appears twice (metadata entries %llu and %llu)", key,
                        (unsigned long long)c->kv[i - 1].index, (unsigned long long)c->kv[i].index);
        }
    sipp_status st;
    for (size_t i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++) {
        const kv_entry *e = find_kv(c, known_keys[i].key);
        if (e && (st = want_type(c, e, known_keys[i].type, known_keys[i].arr_type)) != SIPP_OK)
            return st;
    }
    *alignment = GGUF_DEFAULT_ALIGN;
    const kv_entry *e = find_kv(c, "general.alignment");
    if (e) {
        if (e->ival == 0 || (e->ival & (e->ival - 1)) != 0)
            return FAIL(c, "GGUF key 'general.alignment' is %lld: not a nonzero power of two",
                        (long long)e->ival);
        *alignment = (uint32_t)e->ival;
    }
    c->split_no = (e = find_kv(c, "split.no")) ? e->ival : -1;
    c->split_count = (e = find_kv(c, "split.count")) ? e->ival : -1;
    if (c->arch[0]) {
        char key[128];
        for (size_t i = 0; i < sizeof arch_u32_keys / sizeof arch_u32_keys[0]; i++) {
            snprintf(key, sizeof key, "%s.%s", c->arch, arch_u32_keys[i]);
            if ((e = find_kv(c, key)) && (st = want_type(c, e, T_U32, 0)) != SIPP_OK) return st;
        }
        snprintf(key, sizeof key, "%s.block_count", c->arch);
        if ((e = find_kv(c, key)) && e->ival == 0)
            return FAIL(c, "GGUF key '%s' is 0: a model needs at least one block", key);
    }

    /* the vocabulary: special ids inside it, parallel arrays as long as it, byte tokens */
    const kv_entry *tokens = find_kv(c, "tokenizer.ggml.tokens");
    uint64_t n_tokens = tokens ? tokens->n : 0;
    for (size_t i = 0; i < c->n_kv; i++) {
        e = &c->kv[i];
        if (!is_token_id_key(e->key)) continue;
        if ((st = want_type(c, e, T_U32, 0)) != SIPP_OK) return st;
        /* 0xFFFFFFFF is LLAMA_TOKEN_NULL as a uint32: "no such token", which converters write
         * (stories260K's padding id) and llama.cpp reads as unset */
        if (tokens && (uint64_t)e->ival >= n_tokens && e->ival != 0xFFFFFFFFll) {
            char key[96];
            printable(key, sizeof key, e->key, e->key_len);
            return FAIL(c, "GGUF key '%s' is token id %lld, outside the vocabulary of %llu tokens",
                        key, (long long)e->ival, (unsigned long long)n_tokens);
        }
    }
    const char *parallel[] = {"tokenizer.ggml.token_type", "tokenizer.ggml.scores"};
    for (size_t i = 0; i < 2; i++)
        if (tokens && (e = find_kv(c, parallel[i])) && e->n != n_tokens)
            return FAIL(c, "GGUF key '%s' has %llu entries but the vocabulary has %llu tokens",
                        parallel[i], (unsigned long long)e->n, (unsigned long long)n_tokens);
    /* llama.cpp maps text to id and asserts (aborts the process) when two tokens share one */
    if (c->n_tok > 1) {
        qsort(c->tok, c->n_tok, sizeof *c->tok, cmp_token_digest);
        for (size_t i = 1; i < c->n_tok; i++)
            if (c->tok[i - 1].a == c->tok[i].a && c->tok[i - 1].b == c->tok[i].b)
                return FAIL(c, "GGUF tokens %llu and %llu have the same text "
                            "(tokenizer.ggml.tokens): every token's text must be unique",
                            (unsigned long long)c->tok[i - 1].index,
                            (unsigned long long)c->tok[i].index);
    }
    uint64_t n = c->n_is_byte < c->n_byte_ok ? c->n_is_byte : c->n_byte_ok;
    for (uint64_t i = 0; i < n; i++)
        if (bit_get(c->is_byte, i) && !bit_get(c->byte_ok, i))
            return FAIL(c, "GGUF token %llu is marked as a byte token but does not read <0xHH> "
                        "(tokenizer.ggml.tokens)", (unsigned long long)i);
    return SIPP_OK;
}

/* ---- tensor infos ------------------------------------------------------------------------- */

static int cmp_tensor_name(const void *a, const void *b) {
    const tensor_entry *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    if (r) return r;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const tensor_entry *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static sipp_status walk_tensor(check *c, uint64_t index, uint32_t alignment) {
    unsigned long long ix = (unsigned long long)index;
    uint64_t nlen;
    if (!rd_u64(&c->r, &nlen))
        return FAIL(c, "GGUF tensor %llu is cut off (truncated file)", ix);
    if (nlen == 0 || nlen >= GGUF_TENSOR_NAME_MAX)
        return FAIL(c, "GGUF tensor %llu has a name of %llu bytes (1 to %d allowed)", ix,
                    (unsigned long long)nlen, GGUF_TENSOR_NAME_MAX - 1);
    if (!grow((void **)&c->tensors, &c->cap_tensors, c->n_tensors + 1, sizeof *c->tensors))
        return OOM(c);
    tensor_entry *t = &c->tensors[c->n_tensors];
    memset(t, 0, sizeof *t);
    t->index = index;
    if (!rd_bytes(&c->r, t->name, (size_t)nlen))
        return FAIL(c, "GGUF tensor %llu is cut off in its name (truncated file)", ix);
    char name[96];
    printable(name, sizeof name, t->name, (size_t)nlen);
    if (strlen(t->name) != nlen)
        return FAIL(c, "GGUF tensor %llu ('%s') has a NUL byte in its name", ix, name);
    uint32_t n_dims, type;
    if (!rd_u32(&c->r, &n_dims))
        return FAIL(c, "GGUF tensor %llu ('%s') is cut off (truncated file)", ix, name);
    if (n_dims == 0 || n_dims > GGUF_TENSOR_MAX_DIMS)
        return FAIL(c, "GGUF tensor %llu ('%s') has %u dimensions (1 to %d allowed)", ix, name,
                    n_dims, GGUF_TENSOR_MAX_DIMS);
    uint64_t ne[GGUF_TENSOR_MAX_DIMS] = {1, 1, 1, 1}, nelem = 1;
    for (uint32_t j = 0; j < n_dims; j++) {
        if (!rd_u64(&c->r, &ne[j]))
            return FAIL(c, "GGUF tensor %llu ('%s') is cut off (truncated file)", ix, name);
        if (ne[j] == 0 || ne[j] > INT64_MAX)
            return FAIL(c, "GGUF tensor %llu ('%s') has dimension %u = %llu", ix, name, j,
                        (unsigned long long)ne[j]);
        if (__builtin_mul_overflow(nelem, ne[j], &nelem) || nelem > INT64_MAX)
            return FAIL(c, "GGUF tensor %llu ('%s'): the product of its dimensions overflows",
                        ix, name);
    }
    if (!rd_u32(&c->r, &type) || !rd_u64(&c->r, &t->offset))
        return FAIL(c, "GGUF tensor %llu ('%s') is cut off (truncated file)", ix, name);
    if (type >= GGML_TYPE_COUNT)
        return FAIL(c, "GGUF tensor %llu ('%s') has unknown type id %u (ggml knows %d)", ix, name,
                    type, GGML_TYPE_COUNT);
    /* removed types keep their slot in ggml's table with a block size of 0 */
    int64_t blck = ggml_blck_size((enum ggml_type)type);
    uint64_t tsize = ggml_type_size((enum ggml_type)type);
    if (blck <= 0 || tsize == 0)
        return FAIL(c, "GGUF tensor %llu ('%s') has type id %u, which ggml no longer supports",
                    ix, name, type);
    if (ne[0] % (uint64_t)blck != 0)
        return FAIL(c, "GGUF tensor %llu ('%s'): row of %llu elements is not a multiple of the "
                    "%s block size %lld", ix, name, (unsigned long long)ne[0],
                    ggml_type_name((enum ggml_type)type), (long long)blck);
    uint64_t nbytes = ne[0] / (uint64_t)blck;
    if (__builtin_mul_overflow(nbytes, tsize, &nbytes) ||
        __builtin_mul_overflow(nbytes, ne[1], &nbytes) ||
        __builtin_mul_overflow(nbytes, ne[2], &nbytes) ||
        __builtin_mul_overflow(nbytes, ne[3], &nbytes) || nbytes > SIZE_MAX)
        return FAIL(c, "GGUF tensor %llu ('%s'): its size in bytes overflows", ix, name);
    t->nbytes = nbytes;
    if (t->offset % alignment != 0)
        return FAIL(c, "GGUF tensor %llu ('%s') has data offset %llu, not a multiple of the "
                    "alignment %u", ix, name, (unsigned long long)t->offset, alignment);
    c->n_tensors++;
    return SIPP_OK;
}

static sipp_status check_tensors(check *c, uint32_t alignment) {
    uint64_t data_start = c->r.pos;
    if (data_start % alignment) data_start += alignment - data_start % alignment;
    uint64_t avail = data_start <= c->r.size ? c->r.size - data_start : 0;
    char n1[96], n2[96];
    for (size_t i = 0; i < c->n_tensors; i++) {
        const tensor_entry *t = &c->tensors[i];
        printable(n1, sizeof n1, t->name, strlen(t->name));
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return FAIL(c, "GGUF tensor %llu ('%s'): data at offset %llu, %llu bytes, runs past "
                        "the end of the file (truncated file)", (unsigned long long)t->index,
                        n1, (unsigned long long)t->offset, (unsigned long long)t->nbytes);
    }
    if (c->n_tensors < 2) return SIPP_OK; /* tensors is NULL when empty */
    qsort(c->tensors, c->n_tensors, sizeof *c->tensors, cmp_tensor_name);
    for (size_t i = 1; i < c->n_tensors; i++)
        if (strcmp(c->tensors[i - 1].name, c->tensors[i].name) == 0) {
            printable(n1, sizeof n1, c->tensors[i].name, strlen(c->tensors[i].name));
            return FAIL(c, "GGUF tensor %llu has the same name as tensor %llu ('%s')",
                        (unsigned long long)c->tensors[i].index,
                        (unsigned long long)c->tensors[i - 1].index, n1);
        }
    qsort(c->tensors, c->n_tensors, sizeof *c->tensors, cmp_tensor_offset);
    for (size_t i = 1; i < c->n_tensors; i++) {
        const tensor_entry *a = &c->tensors[i - 1], *b = &c->tensors[i];
        if (a->offset + a->nbytes > b->offset) { /* no overflow: both lie inside the file */
            printable(n1, sizeof n1, a->name, strlen(a->name));
            printable(n2, sizeof n2, b->name, strlen(b->name));
            return FAIL(c, "GGUF tensors %llu ('%s') and %llu ('%s') overlap in the data section",
                        (unsigned long long)a->index, n1, (unsigned long long)b->index, n2);
        }
    }
    return SIPP_OK;
}

/* ---- the walk ----------------------------------------------------------------------------- */

static sipp_status walk(check *c) {
    unsigned char hdr[GGUF_HEADER_LEN];
    if (!rd_bytes(&c->r, hdr, 4) || memcmp(hdr, "GGUF", 4) != 0)
        return FAIL(c, "not a GGUF file (bad magic)");
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (!rd_u32(&c->r, &version) || !rd_u64(&c->r, &n_tensors) || !rd_u64(&c->r, &n_kv))
        return FAIL(c, "GGUF header is cut off (truncated file)");
    if (version < 2 || version > 3) return FAIL(c, "unsupported GGUF version %u", version);
    if (n_tensors > GGUF_MAX_COUNT || n_kv > GGUF_MAX_COUNT)
        return FAIL(c, "GGUF header claims %llu tensors and %llu metadata entries: not plausible",
                    (unsigned long long)n_tensors, (unsigned long long)n_kv);
    /* smallest encodings: a tensor info is 8+1+4+8+4+8 bytes, a key-value 8+1+4+1 */
    if (GGUF_HEADER_LEN + n_tensors * 33 + n_kv * 14 > c->r.size)
        return FAIL(c, "GGUF header claims %llu tensors and %llu metadata entries, more than a "
                    "%llu-byte file can hold (truncated or corrupt)",
                    (unsigned long long)n_tensors, (unsigned long long)n_kv,
                    (unsigned long long)c->r.size);
    sipp_status st;
    for (uint64_t i = 0; i < n_kv; i++)
        if ((st = walk_kv(c, i)) != SIPP_OK) return st;
    uint32_t alignment = GGUF_DEFAULT_ALIGN;
    if ((st = check_keys(c, &alignment)) != SIPP_OK) return st;
    for (uint64_t i = 0; i < n_tensors; i++)
        if ((st = walk_tensor(c, i, alignment)) != SIPP_OK) return st;
    return check_tensors(c, alignment);
}

static sipp_status run_check(check *c) {
    sipp__buf_init(&c->keys, SIZE_MAX);
    sipp_status st = walk(c);
    sipp__buf_free(&c->keys);
    free(c->kv);
    free(c->tensors);
    free(c->byte_ok);
    free(c->tok);
    free(c->is_byte);
    return st;
}

sipp_status sipp__gguf_check_buffer(const unsigned char *data, size_t len, sipp_error *err) {
    check c;
    memset(&c, 0, sizeof c);
    c.err = err;
    c.r.mem = data ? data : (const unsigned char *)"";
    c.r.size = data ? len : 0;
    return run_check(&c);
}

/* Checks one file; on SIPP_OK *split_no and *split_count hold its split.* keys (-1 when
 * absent). A MODEL_INVALID message is prefixed with the path. */
static sipp_status precheck_file(const char *path, int64_t *split_no, int64_t *split_count,
                                 sipp_error *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return sipp__fail(err, errno == ENOENT ? SIPP_NOT_FOUND : SIPP_IO_ERROR, errno,
                          "cannot open model '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return sipp__fail(err, SIPP_MODEL_INVALID, 0, "model '%s' is not a regular file", path);
    check c;
    memset(&c, 0, sizeof c);
    c.err = err;
    c.split_no = c.split_count = -1;
    c.r.f = fopen(path, "rb");
    if (!c.r.f)
        return sipp__fail(err, SIPP_IO_ERROR, errno, "cannot open model '%s': %s", path,
                          strerror(errno));
    c.r.size = (uint64_t)st.st_size;
    c.r.win = malloc(GGUF_READ_WINDOW);
    sipp_status rc = c.r.win ? run_check(&c) : OOM(&c);
    free(c.r.win);
    fclose(c.r.f);
    if (rc == SIPP_MODEL_INVALID && err) { /* prefix the path for context */
        char msg[SIPP_ERROR_MESSAGE_CAP];
        snprintf(msg, sizeof msg, "%s", err->message);
        sipp__fail(err, rc, 0, "model '%s': %s", path, msg);
    }
    *split_no = c.split_no;
    *split_count = c.split_count;
    return rc;
}

bool sipp__gguf_part_path(const char *first, uint32_t i, uint32_t n, char *buf, size_t cap) {
    char suffix[32];
    snprintf(suffix, sizeof suffix, "-%05d-of-%05u.gguf", 1, n);
    size_t len = strlen(first), slen = strlen(suffix);
    if (i >= n || len <= slen || strcmp(first + len - slen, suffix) != 0) return false;
    int w = snprintf(buf, cap, "%.*s-%05u-of-%05u.gguf", (int)(len - slen), first, i + 1, n);
    return w > 0 && (size_t)w < cap;
}

/* The parts of a split model. llama.cpp (llama_model_loader) opens them itself once the first
 * part declares split.count > 1: it derives their names from the first part's with
 * llama_split_prefix/llama_split_path ("<prefix>-%05d-of-%05d.gguf", 1-based) and reads
 * split.no of each with gguf_get_val_u16, which aborts on another type. So every part gets the
 * same check as the first, and its split.no (uint16, type checked by the walk) must be its
 * index and its split.count, when present, the first part's. */
static sipp_status precheck_parts(const char *path, int64_t no, int64_t count, sipp_error *err) {
    if (no < 0)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0,
                          "model '%s': GGUF key 'split.count' is %lld but 'split.no' is missing",
                          path, (long long)count);
    if (no != 0)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0,
                          "model '%s' is part %lld of %lld of a split model: load the first part "
                          "(-00001-of-%05lld.gguf)", path, (long long)no + 1, (long long)count,
                          (long long)count);
    size_t cap = strlen(path) + 1;
    char *part = malloc(cap);
    if (!part) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (!sipp__gguf_part_path(path, 0, (uint32_t)count, part, cap)) {
        free(part);
        return sipp__fail(err, SIPP_MODEL_INVALID, 0,
                          "model '%s' is the first of %lld parts of a split model, but its name "
                          "does not end in '-00001-of-%05lld.gguf' (llama.cpp finds the other "
                          "parts by name)", path, (long long)count, (long long)count);
    }
    sipp_status st = SIPP_OK;
    for (int64_t i = 1; i < count && st == SIPP_OK; i++) {
        sipp__gguf_part_path(path, (uint32_t)i, (uint32_t)count, part, cap);
        int64_t part_no, part_count;
        st = precheck_file(part, &part_no, &part_count, err);
        if (st == SIPP_NOT_FOUND)
            st = sipp__fail(err, SIPP_NOT_FOUND, ENOENT,
                            "model '%s': split part %lld of %lld ('%s') is missing", path,
                            (long long)i + 1, (long long)count, part);
        else if (st == SIPP_OK && part_no < 0)
            st = sipp__fail(err, SIPP_MODEL_INVALID, 0,
                            "model '%s': GGUF key 'split.no' is missing (split part %lld of %lld)",
                            part, (long long)i + 1, (long long)count);
        else if (st == SIPP_OK && part_no != i)
            st = sipp__fail(err, SIPP_MODEL_INVALID, 0,
                            "model '%s': GGUF key 'split.no' is %lld, expected %lld (split part "
                            "%lld of %lld)", part, (long long)part_no, (long long)i,
                            (long long)i + 1, (long long)count);
        else if (st == SIPP_OK && part_count >= 0 && part_count != count)
            st = sipp__fail(err, SIPP_MODEL_INVALID, 0,
                            "model '%s': GGUF key 'split.count' is %lld, but the first part "
                            "declares %lld", part, (long long)part_count, (long long)count);
    }
    free(part);
    return st;
}

sipp_status sipp__gguf_precheck(const char *path, uint32_t *n_parts, sipp_error *err) {
    if (n_parts) *n_parts = 1;
    int64_t no, count;
    sipp_status st = precheck_file(path, &no, &count, err);
    if (st != SIPP_OK || count <= 1) return st; /* llama.cpp reads 0 and 1 as "not split" */
    if ((st = precheck_parts(path, no, count, err)) != SIPP_OK) return st;
    if (n_parts) *n_parts = (uint32_t)count;
    return SIPP_OK;
}

/* ---- the sha256 pin ----------------------------------------------------------------------- */

bool sipp__sha256_hex_valid(const char *hex) {
    size_t n = 0;
    for (; hex[n]; n++)
        if (!strchr("0123456789abcdefABCDEF", hex[n]) || n >= 64) return false;
    return n == 64;
}

sipp_status sipp__model_verify_sha256(const char *path, const char *hex, uint8_t digest[32],
                                      sipp_error *err) {
    if (!sipp__sha256_hex_valid(hex))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "sha256 pin must be 64 hex digits");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sipp__fail(err, errno == ENOENT ? SIPP_NOT_FOUND : SIPP_IO_ERROR, errno,
                          "cannot open model '%s': %s", path, strerror(errno));
    int rc = sipp__sha256_fd(fd, digest);
    close(fd);
    if (rc == ENOMEM) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "cannot hash model '%s'", path);
    if (rc != 0)
        return sipp__fail(err, SIPP_IO_ERROR, rc, "cannot read model '%s': %s", path, strerror(rc));
    char got[65], want[65];
    for (int i = 0; i < 32; i++) snprintf(got + 2 * i, 3, "%02x", digest[i]);
    for (int i = 0; i < 64; i++)
        want[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] - 'A' + 'a' : hex[i]);
    want[64] = '\0';
    if (strcmp(got, want) != 0)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0,
                          "sha256 mismatch: expected %s, file has %s (model '%s')", want, got,
                          path);
    return SIPP_OK;
}
