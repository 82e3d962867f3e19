/*
 * fuzz_sse.c — libFuzzer target for the SSE decoder (src/http/sse.c). The input is decoded
 * twice, whole and in chunks whose sizes come from its first byte: both must agree on the events
 * (and never crash, leak or grow past the cap).
 */
#include "http/http_int.h"

#include <string.h>

typedef struct digest {
    size_t n_events;
    size_t n_bytes;
    unsigned hash;
} digest;

static bool count(const sipp__sse_event *ev, void *ud) {
    digest *d = ud;
    d->n_events++;
    d->n_bytes += ev->event_len + ev->data_len;
    for (size_t i = 0; i < ev->data_len; i++) d->hash = d->hash * 31u + (unsigned char)ev->data[i];
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    if (len == 0) return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    const char *body = (const char *)data + 1;
    size_t n = len - 1;

    digest whole = {0}, parts = {0};
    sipp__sse a, b;
    sipp__sse_init(&a, 4096);
    sipp__sse_init(&b, 4096);
    sipp_status sa = sipp__sse_feed(&a, body, n, count, &whole, NULL);
    sipp_status sb = SIPP_OK;
    for (size_t off = 0; off < n && sb == SIPP_OK; off += step)
        sb = sipp__sse_feed(&b, body + off, off + step <= n ? step : n - off, count, &parts, NULL);
    if (sa == SIPP_OK && sb == SIPP_OK &&
        (whole.n_events != parts.n_events || whole.n_bytes != parts.n_bytes ||
         whole.hash != parts.hash))
        __builtin_trap(); /* chunking changed the decoded events */
    sipp__sse_free(&a);
    sipp__sse_free(&b);
    return 0;
}
