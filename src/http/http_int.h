/*
 * http_int.h — the HTTP layer's shared pieces. Today: the Server-Sent Events decoder used by
 * the gateway endpoint and the provider adapters (sse.c). Only src/http includes libcurl and
 * libmicrohttpd headers.
 */
#ifndef SIPP_HTTP_INT_H
#define SIPP_HTTP_INT_H

#include "../common/common_int.h"

/* Largest single SSE event (and line) accepted from a peer: past it, the stream is an error. */
#define SIPP__SSE_EVENT_MAX (1u << 20)

/* One dispatched event. `event` is "" when the stream named none ("message" by the standard);
 * `data` joins the event's data lines with '\n'. Both are NUL-terminated and valid only during
 * the callback. */
typedef struct sipp__sse_event {
    const char *event;
    size_t event_len;
    const char *data;
    size_t data_len;
} sipp__sse_event;

/* Return false to stop decoding (sipp__sse_feed then returns SIPP_CANCELLED). */
typedef bool (*sipp__sse_fn)(const sipp__sse_event *ev, void *user_data);

/* An incremental decoder: feed it the body in chunks of any size, split anywhere. It follows the
 * WHATWG event-stream rules: lines end in LF, CRLF or CR; a leading UTF-8 BOM is skipped; lines
 * starting with ':' are comments (heartbeats); `event` and `data` fields are kept, `id` and
 * `retry` are ignored; a blank line dispatches the pending event when it has data. */
typedef struct sipp__sse {
    sipp__buf line;   /* the line being read */
    sipp__buf event;  /* the pending event's name */
    sipp__buf data;   /* the pending event's data */
    bool has_data;
    bool after_cr;    /* the last byte was CR: a following LF belongs to the same line end */
    size_t bom_seen;  /* bytes of a leading BOM matched so far (3 = done or none) */
} sipp__sse;

void sipp__sse_init(sipp__sse *p, size_t max_event);
/* Decodes a chunk, calling fn for each complete event. Errors: SIPP_OUT_OF_MEMORY when a line or
 * an event exceeds the maximum (message names the limit), SIPP_CANCELLED when fn said stop. */
sipp_status sipp__sse_feed(sipp__sse *p, const char *chunk, size_t len, sipp__sse_fn fn,
                           void *user_data, sipp_error *err);
/* True when bytes of an unfinished event are pending (a stream that ends here was cut short). */
bool sipp__sse_pending(const sipp__sse *p);
void sipp__sse_free(sipp__sse *p);

#endif
