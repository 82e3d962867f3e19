/*
 * sse.c — incremental Server-Sent Events decoder (see http_int.h for the rules it follows).
 *
 * Invariant: `line` never holds a line terminator; `event`/`data` hold only the pending event.
 * Every buffer is bounded by the maximum given at init, so a peer cannot make it grow without
 * limit.
 */
#include "http_int.h"

#include <string.h>

void sipp__sse_init(sipp__sse *p, size_t max_event) {
    memset(p, 0, sizeof *p);
    sipp__buf_init(&p->line, max_event);
    sipp__buf_init(&p->event, max_event);
    sipp__buf_init(&p->data, max_event);
}

void sipp__sse_free(sipp__sse *p) {
    sipp__buf_free(&p->line);
    sipp__buf_free(&p->event);
    sipp__buf_free(&p->data);
}

bool sipp__sse_pending(const sipp__sse *p) {
    return p->line.len > 0 || p->has_data || p->event.len > 0;
}

static sipp_status too_large(sipp__sse *p, sipp_error *err) {
    return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "an event of the stream exceeds %zu bytes",
                      p->line.max);
}

/* Handles one complete line (without its terminator). */
static sipp_status process_line(sipp__sse *p, sipp__sse_fn fn, void *ud, sipp_error *err) {
    const char *s = p->line.data ? p->line.data : "";
    size_t n = p->line.len;
    if (n == 0) { /* blank line: dispatch */
        if (p->has_data) {
            sipp__sse_event ev = {p->event.data ? p->event.data : "", p->event.len,
                                  p->data.data ? p->data.data : "", p->data.len};
            bool go_on = fn(&ev, ud);
            sipp__buf_reset(&p->event);
            sipp__buf_reset(&p->data);
            p->has_data = false;
            if (!go_on) return sipp__fail(err, SIPP_CANCELLED, 0, "stream decoding stopped");
        } else {
            sipp__buf_reset(&p->event);
        }
        return SIPP_OK;
    }
    if (s[0] == ':') return SIPP_OK; /* comment, e.g. a heartbeat */
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *value = colon ? colon + 1 : s + n;
    size_t value_len = colon ? n - name_len - 1 : 0;
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 5 && memcmp(s, "event", 5) == 0) {
        sipp__buf_reset(&p->event);
        if (sipp__buf_append(&p->event, value, value_len) != SIPP_OK) return too_large(p, err);
    } else if (name_len == 4 && memcmp(s, "data", 4) == 0) {
        if ((p->has_data && sipp__buf_append(&p->data, "\n", 1) != SIPP_OK) ||
            sipp__buf_append(&p->data, value, value_len) != SIPP_OK)
            return too_large(p, err);
        p->has_data = true;
    }
    return SIPP_OK; /* id, retry and unknown fields are ignored */
}

sipp_status sipp__sse_feed(sipp__sse *p, const char *chunk, size_t len, sipp__sse_fn fn,
                           void *ud, sipp_error *err) {
    static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
    size_t i = 0;
    while (p->bom_seen < 3 && i < len) { /* skip a UTF-8 BOM at the very start */
        if ((unsigned char)chunk[i] != bom[p->bom_seen]) {
            if (p->bom_seen > 0) { /* a partial BOM was real data after all */
                if (sipp__buf_append(&p->line, bom, p->bom_seen) != SIPP_OK) return too_large(p, err);
            }
            p->bom_seen = 3;
            break;
        }
        p->bom_seen++;
        i++;
    }
    size_t start = i;
    for (; i < len; i++) {
        char c = chunk[i];
        if (c != '\n' && c != '\r') {
            p->after_cr = false;
            continue;
        }
        if (c == '\n' && p->after_cr && i == start) { /* LF of a CRLF split across chunks */
            p->after_cr = false;
            start = i + 1;
            continue;
        }
        if (sipp__buf_append(&p->line, chunk + start, i - start) != SIPP_OK) return too_large(p, err);
        sipp_status st = process_line(p, fn, ud, err);
        sipp__buf_reset(&p->line);
        if (st != SIPP_OK) return st;
        /* A CR ending the chunk may be the first half of a CRLF: remember it. */
        p->after_cr = c == '\r' && i + 1 == len;
        if (c == '\r' && i + 1 < len && chunk[i + 1] == '\n') i++; /* CRLF in one chunk */
        start = i + 1;
    }
    if (start < len && sipp__buf_append(&p->line, chunk + start, len - start) != SIPP_OK)
        return too_large(p, err);
    return SIPP_OK;
}
