/*
 * fuzz_utf8.c — libFuzzer target for the UTF-8 cleaner every generated answer goes through
 * (sipp__utf8_append_clean / sipp__utf8_valid_len in src/common/text.c): for any bytes, the
 * output is valid UTF-8, valid input comes back unchanged, cleaning is idempotent, and the
 * output is at most three bytes per input byte.
 */
#include "common/common_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    const char *s = (const char *)data;
    sipp__buf once, twice;
    sipp__buf_init(&once, 3 * len + 1);
    sipp__buf_init(&twice, 3 * len + 1);
    if (sipp__utf8_append_clean(&once, s, len) != SIPP_OK) abort();
    if (once.len > 3 * len) abort();
    if (sipp__utf8_valid_len(once.data, once.len) != once.len) abort();
    if (len == 0) {
        if (once.len != 0) abort();
    } else {
        if (sipp__utf8_valid_len(s, len) == len && (once.len != len || memcmp(once.data, s, len)))
            abort();
        if (sipp__utf8_append_clean(&twice, once.data, once.len) != SIPP_OK) abort();
        if (twice.len != once.len || memcmp(twice.data, once.data, once.len) != 0) abort();
    }
    sipp__buf_free(&once);
    sipp__buf_free(&twice);
    return 0;
}
