/*
 * test_gw_embed.c — the gateway's incremental embeddings answer (src/gateway/profiles.c with each profile's envelope): read
 * in blocks of any size (1 byte up) it is the same text, valid JSON of the profile's shape, and
 * every float comes back exactly, as a JSON number or as base64 of its little-endian bytes.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "profiles.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *vectors(size_t n) {
    float *v = malloc((n + 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) /* thirds, tiny, huge, integers, negative zero */
        v[i] = i % 9 == 0   ? (float)(i % 4)
               : i % 9 == 1 ? 1e-38f * (float)i
               : i % 9 == 2 ? -3.4e38f
               : i % 9 == 3 ? -0.0f
                            : (float)i / 3.0f - 7.0f;
    return v;
}

/* The whole answer, read `cap` bytes at a time. */
static char *answer(gw_profile prof, bool b64, size_t n_vec, uint32_t dim, size_t cap) {
    sipp__gw_embed_writer *w = sipp__gw_embed_writer_new(prof, b64, "req-\"1", "m", 7, 0,
                                                         vectors(n_vec * dim), n_vec, dim);
    assert_non_null(w);
    size_t len = 0, room = 1024;
    char *s = malloc(room), buf[20000];
    size_t n;
    while ((n = sipp__gw_embed_writer_read(w, buf, cap)) > 0) {
        assert_true(n <= cap);
        if (len + n + 1 > room) s = realloc(s, room = 2 * (len + n + 1));
        memcpy(s + len, buf, n);
        len += n;
    }
    assert_int_equal(sipp__gw_embed_writer_read(w, buf, cap), 0); /* the end stays the end */
    sipp__gw_embed_writer_free(w);
    s[len] = '\0';
    return s;
}

static void check_vector(json_t *e, bool b64, const float *want, uint32_t dim) {
    if (b64) {
        const char *t = json_string_value(e);
        assert_non_null(t);
        size_t tl = strlen(t);
        assert_int_equal(tl, (dim * 4 + 2) / 3 * 4);
        unsigned char *raw = malloc(tl / 4 * 3 + 1);
        assert_int_equal(EVP_DecodeBlock(raw, (const unsigned char *)t, (int)tl),
                         (int)(tl / 4 * 3)); /* the padding's zero bytes included */
        for (uint32_t k = 0; k < dim; k++) {
            uint32_t u = (uint32_t)raw[4 * k] | (uint32_t)raw[4 * k + 1] << 8 |
                         (uint32_t)raw[4 * k + 2] << 16 | (uint32_t)raw[4 * k + 3] << 24;
            float x;
            memcpy(&x, &u, 4);
            assert_memory_equal(&x, &want[k], 4);
        }
        free(raw);
        return;
    }
    assert_true(json_is_array(e));
    assert_int_equal(json_array_size(e), dim);
    for (uint32_t k = 0; k < dim; k++) {
        json_t *x = json_array_get(e, k);
        assert_true(json_is_real(x)); /* "2.0", never "2" */
        float f = (float)json_real_value(x);
        assert_memory_equal(&f, &want[k], 4);
    }
}

static void test_any_block_size_same_answer(void **state) {
    (void)state;
    static const uint32_t dims[] = {0, 1, 47, 48, 49, 97, 384};
    static const size_t caps[] = {1, 2, 5, 16384};
    for (int openai = 0; openai < 2; openai++)
        for (int b64 = 0; b64 < 2; b64++)
            for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
                size_t n_vec = openai ? 3 : 1;
                uint32_t dim = dims[d];
                char *ref = answer(openai ? GW_PROFILE_OPENAI : GW_PROFILE_SIPP, b64, n_vec, dim,
                                   caps[3]);
                for (size_t c = 0; c < 3; c++) {
                    char *s = answer(openai ? GW_PROFILE_OPENAI : GW_PROFILE_SIPP, b64, n_vec,
                                     dim, caps[c]);
                    assert_string_equal(s, ref);
                    free(s);
                }
                json_error_t je;
                json_t *root = json_loads(ref, 0, &je);
                assert_non_null(root);
                float *want = vectors(n_vec * dim);
                if (openai) {
                    assert_string_equal(json_string_value(json_object_get(root, "object")), "list");
                    assert_string_equal(json_string_value(json_object_get(root, "model")), "m");
                    json_t *u = json_object_get(root, "usage");
                    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 7);
                    json_t *data = json_object_get(root, "data");
                    assert_int_equal(json_array_size(data), n_vec);
                    for (size_t i = 0; i < n_vec; i++) {
                        json_t *item = json_array_get(data, i);
                        assert_int_equal(json_integer_value(json_object_get(item, "index")), i);
                        check_vector(json_object_get(item, "embedding"), b64, want + i * dim, dim);
                    }
                } else {
                    assert_int_equal(json_object_size(root), 4);
                    assert_string_equal(json_string_value(json_object_get(root, "id")), "req-\"1");
                    json_t *u = json_object_get(root, "usage");
                    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 7);
                    check_vector(json_object_get(root, "embedding"), b64, want, dim);
                }
                free(want);
                json_decref(root);
                free(ref);
            }
}

static void test_non_finite(void **state) {
    (void)state;
    float v[3] = {1.0f, NAN, INFINITY};
    assert_true(sipp__gw_embed_finite(v, 1));
    assert_false(sipp__gw_embed_finite(v, 2));
    assert_false(sipp__gw_embed_finite(v + 2, 1));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_any_block_size_same_answer),
        cmocka_unit_test(test_non_finite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
