/*
 * fuzz_json_writer.c — libFuzzer target for the bounded JSON writer (src/common/json_writer.c).
 * The input is a program: each byte picks a call (begin/end object or array, key, string, int,
 * double, bool, null) and the calls that take data read it from the input. Whatever the calls,
 * a finished text parses with jansson and every error is one of the writer's typed ones.
 */
#include "common/json_writer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The next `n` bytes (fewer at the end) as a string of length 0..31 picked by one byte. */
static const char *take(const uint8_t **p, const uint8_t *end, size_t *len) {
    size_t n = *p < end ? (size_t)(*(*p)++ & 31) : 0;
    if (n > (size_t)(end - *p)) n = (size_t)(end - *p);
    const char *s = (const char *)*p;
    *p += n;
    *len = n;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p = data, *end = data + size;
    sipp__jw w;
    sipp__jw_init(&w, size ? 64 + data[0] * 8u : 64); /* small maxima: overflow is reached */
    while (p < end) {
        uint8_t op = *p++;
        size_t n;
        const char *s;
        uint64_t u = 0;
        switch (op % 10) {
        case 0: sipp__jw_object_begin(&w); break;
        case 1: sipp__jw_object_end(&w); break;
        case 2: sipp__jw_array_begin(&w); break;
        case 3: sipp__jw_array_end(&w); break;
        case 4: { /* keys are NUL-terminated */
            s = take(&p, end, &n);
            char key[32];
            memcpy(key, s, n);
            key[n] = 0;
            sipp__jw_key(&w, key);
            break;
        }
        case 5:
            s = take(&p, end, &n);
            sipp__jw_string_len(&w, s, n);
            break;
        case 6:
        case 7: {
            size_t k = (size_t)(end - p) < 8 ? (size_t)(end - p) : 8;
            memcpy(&u, p, k);
            p += k;
            if (op % 10 == 6) {
                sipp__jw_int(&w, (int64_t)u);
            } else {
                double d;
                memcpy(&d, &u, sizeof d);
                sipp__jw_double(&w, d); /* NaN and Inf included: refused */
            }
            break;
        }
        case 8: sipp__jw_bool(&w, op & 16); break;
        default: sipp__jw_null(&w);
        }
    }
    char *out = NULL;
    size_t len = 0;
    sipp_status st = sipp__jw_finish(&w, &out, &len);
    if (st == SIPP_OK) {
        if (!out || strlen(out) != len || len > 64 + (size ? data[0] * 8u : 0)) abort();
        json_error_t e;
        json_t *j = json_loadb(out, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        if (!j) abort();
        json_decref(j);
        free(out);
    } else if (out || (st != SIPP_OUT_OF_MEMORY && st != SIPP_INVALID_ARGUMENT)) {
        abort();
    }
    return 0;
}
