/*
 * test_sse.c — the SSE decoder: fields, comments, multi-line data, CR/LF/CRLF line ends, a BOM,
 * the size cap, stopping from the callback, and the same events whatever the chunk boundaries.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http/http_int.h"

typedef struct seen {
    char log[4096];
    int n;
    int stop_after;
} seen;

static bool record(const sipp__sse_event *ev, void *ud) {
    seen *s = ud;
    size_t l = strlen(s->log);
    snprintf(s->log + l, sizeof s->log - l, "[%s|%s]", ev->event, ev->data);
    s->n++;
    return s->stop_after == 0 || s->n < s->stop_after;
}

static sipp_status decode(const char *text, size_t len, size_t max, seen *out) {
    sipp__sse p;
    sipp__sse_init(&p, max);
    memset(out->log, 0, sizeof out->log);
    out->n = 0;
    sipp_status st = sipp__sse_feed(&p, text, len, record, out, NULL);
    sipp__sse_free(&p);
    return st;
}

static const char STREAM[] =
    "\xEF\xBB\xBF: ping\n\n"
    "event: token\ndata: {\"text\":\"Hi\"}\n\n"
    "data: line one\r\ndata: line two\r\n\r\n"
    "event: usage\rdata:{\"n\":3}\r\r"
    "id: 7\nretry: 10\nevent: ignored-without-data\n\n"
    "event: done\ndata: {}\n\n";
static const char EXPECTED[] =
    "[token|{\"text\":\"Hi\"}][|line one\nline two][usage|{\"n\":3}][done|{}]";

static void decodes_fields_comments_and_line_ends(void **state) {
    (void)state;
    seen s = {0};
    assert_int_equal(decode(STREAM, sizeof STREAM - 1, 1024, &s), SIPP_OK);
    assert_string_equal(s.log, EXPECTED);
}

static void same_events_for_every_split(void **state) {
    (void)state;
    size_t len = sizeof STREAM - 1;
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b += 7) { /* three chunks: [0,a) [a,b) [b,len) */
            sipp__sse p;
            sipp__sse_init(&p, 1024);
            seen s = {0};
            assert_int_equal(sipp__sse_feed(&p, STREAM, a, record, &s, NULL), SIPP_OK);
            assert_int_equal(sipp__sse_feed(&p, STREAM + a, b - a, record, &s, NULL), SIPP_OK);
            assert_int_equal(sipp__sse_feed(&p, STREAM + b, len - b, record, &s, NULL), SIPP_OK);
            if (strcmp(s.log, EXPECTED) != 0) fail_msg("split at %zu,%zu: %s", a, b, s.log);
            assert_false(sipp__sse_pending(&p));
            sipp__sse_free(&p);
        }
    }
}

/* Found by fuzz_sse: a chunk that is exactly "\r\n" must not leave a pending CR behind, or the
 * LF that starts the next chunk (the blank line) is swallowed and the event never dispatched. */
static void crlf_filling_a_whole_chunk(void **state) {
    (void)state;
    const char *chunks[] = {"data: x", "\r\n", "\n", "data: y\r", "\n\r\n"};
    sipp__sse p;
    sipp__sse_init(&p, 1024);
    seen s = {0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(sipp__sse_feed(&p, chunks[i], strlen(chunks[i]), record, &s, NULL), SIPP_OK);
    assert_string_equal(s.log, "[|x][|y]");
    sipp__sse_free(&p);
}

static void oversized_event_is_an_error(void **state) {
    (void)state;
    char big[300];
    memset(big, 'x', sizeof big);
    memcpy(big, "data: ", 6);
    seen s = {0};
    sipp__sse p;
    sipp__sse_init(&p, 100);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp__sse_feed(&p, big, sizeof big, record, &s, &err), SIPP_OUT_OF_MEMORY);
    assert_non_null(strstr(err.message, "exceeds 100 bytes"));
    sipp__sse_free(&p);
    /* many data lines adding up past the cap */
    char many[2000] = "";
    for (int i = 0; i < 60; i++) strcat(many, "data: 0123456789\n");
    assert_int_equal(decode(many, strlen(many), 100, &s), SIPP_OUT_OF_MEMORY);
    assert_int_equal(s.n, 0);
}

static void callback_can_stop_the_stream(void **state) {
    (void)state;
    seen s = {.stop_after = 2};
    assert_int_equal(decode(STREAM, sizeof STREAM - 1, 1024, &s), SIPP_CANCELLED);
    assert_int_equal(s.n, 2);
}

static void an_unfinished_event_is_pending(void **state) {
    (void)state;
    sipp__sse p;
    sipp__sse_init(&p, 1024);
    seen s = {0};
    const char cut[] = "event: token\ndata: {\"te";
    assert_int_equal(sipp__sse_feed(&p, cut, sizeof cut - 1, record, &s, NULL), SIPP_OK);
    assert_int_equal(s.n, 0);
    assert_true(sipp__sse_pending(&p));
    sipp__sse_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_fields_comments_and_line_ends),
        cmocka_unit_test(same_events_for_every_split),
        cmocka_unit_test(crlf_filling_a_whole_chunk),
        cmocka_unit_test(oversized_event_is_an_error),
        cmocka_unit_test(callback_can_stop_the_stream),
        cmocka_unit_test(an_unfinished_event_is_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
