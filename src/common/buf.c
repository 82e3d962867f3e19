/*
 * buf.c — bounded growable byte buffers and small string helpers.
 *
 * Invariant: data is NULL or NUL-terminated at data[len]; len < cap <= max + 1.
 * Allocations go through sipp__malloc/sipp__realloc (test_control.h), so the tests can make
 * any one of them fail; a failed append leaves the buffer as it was.
 */
#include "common_int.h"
#include "test_control.h"

#include <stdlib.h>
#include <string.h>

void sipp__buf_init(sipp__buf *b, size_t max) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

sipp_status sipp__buf_append(sipp__buf *b, const void *data, size_t len) {
    if (len > b->max || b->len > b->max - len) return SIPP_OUT_OF_MEMORY;
    size_t need = b->len + len + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need) cap *= 2;
        if (b->max < SIZE_MAX && cap > b->max + 1) cap = b->max + 1; /* max + 1 may wrap */
        char *p = sipp__realloc(b->data, cap);
        if (!p) return SIPP_OUT_OF_MEMORY;
        b->data = p;
        b->cap = cap;
    }
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return SIPP_OK;
}

void sipp__buf_reset(sipp__buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void sipp__buf_free(sipp__buf *b) {
    free(b->data);
    sipp__buf_init(b, b->max);
}

char *sipp__strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = sipp__malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}
