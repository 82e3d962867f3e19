/*
 * json_writer.h — a bounded, write-only JSON writer for code that cannot link jansson (the
 * browser host, web/wasm/sipp_wasm.c: jansson has no emscripten build here). Native code that
 * parses or builds JSON trees keeps using jansson.
 *
 * The writer appends to a sipp__buf with a maximum; commas and nesting are tracked for the
 * caller. The first failure sticks: every later call does nothing and sipp__jw_finish returns
 * that status:
 *   SIPP_OUT_OF_MEMORY      an allocation failed or the text would pass `max`
 *   SIPP_INVALID_ARGUMENT   a non-finite number (JSON has no NaN/Inf), nesting deeper than
 *                           SIPP__JW_MAX_DEPTH, a key outside an object or a value without its
 *                           key, an unbalanced end, unfinished nesting at finish
 * Strings are written as valid JSON whatever their bytes: `"` `\` and control characters are
 * escaped, and each maximal invalid UTF-8 subpart becomes U+FFFD (as sipp__utf8_append_clean).
 */
#ifndef SIPP_JSON_WRITER_H
#define SIPP_JSON_WRITER_H

#include "common_int.h"

#define SIPP__JW_MAX_DEPTH 32

typedef struct sipp__jw {
    sipp__buf b;
    sipp_status st;                    /* the first failure, or SIPP_OK */
    unsigned depth;                    /* open objects and arrays */
    bool in_object[SIPP__JW_MAX_DEPTH]; /* per level: object (keys) or array */
    bool has_items[SIPP__JW_MAX_DEPTH]; /* per level: a comma goes before the next item */
    bool after_key;                    /* a key was written; its value comes next */
} sipp__jw;

/* Starts an empty writer whose text may grow to `max` bytes. */
void sipp__jw_init(sipp__jw *w, size_t max);
/* Frees the text of a writer that is not finished (or failed). */
void sipp__jw_free(sipp__jw *w);

void sipp__jw_object_begin(sipp__jw *w);
void sipp__jw_object_end(sipp__jw *w);
void sipp__jw_array_begin(sipp__jw *w);
void sipp__jw_array_end(sipp__jw *w);
/* An object member's name; its value is the next call. */
void sipp__jw_key(sipp__jw *w, const char *key);

/* Values. A NULL string is written as null. */
void sipp__jw_string(sipp__jw *w, const char *s);
void sipp__jw_string_len(sipp__jw *w, const char *s, size_t len);
void sipp__jw_int(sipp__jw *w, int64_t v);
void sipp__jw_uint(sipp__jw *w, uint64_t v);
/* The shortest of %.15g / %.17g that reads back as the same double, '.' as the decimal point
 * whatever the locale. */
void sipp__jw_double(sipp__jw *w, double v);
void sipp__jw_bool(sipp__jw *w, bool v);
void sipp__jw_null(sipp__jw *w);

/* Ends writing. On SIPP_OK *out is the NUL-terminated text (free() it) and *len (may be NULL)
 * its length; on failure *out is NULL and the writer's memory is freed. Either way the writer
 * is empty afterwards. */
sipp_status sipp__jw_finish(sipp__jw *w, char **out, size_t *len);

#endif
