/*
 * fuzz_nesting.c — libFuzzer target for the depth scanner that guards grammars and JSON
 * schemas (sipp__nesting_depth in src/common/text.c): any text, in both modes, must be scanned
 * without reading past its end, and the depth can never exceed the number of openers in it.
 */
#include "common/common_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    char *s = malloc(len + 1);
    if (!s) return 0;
    memcpy(s, data, len);
    s[len] = '\0';
    size_t parens = 0, braces = 0;
    for (size_t i = 0; i < len && s[i]; i++) {
        parens += s[i] == '(';
        braces += s[i] == '{' || s[i] == '[';
    }
    unsigned limit = len ? (unsigned)data[0] : 0;
    if (sipp__nesting_depth(s, true, limit) > parens) abort();
    if (sipp__nesting_depth(s, false, limit) > braces) abort();
    if (sipp__nesting_depth(s, true, 1u << 30) > parens) abort();
    free(s);
    return 0;
}
