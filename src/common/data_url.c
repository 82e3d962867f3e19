/*
 * data_url.c — `data:` URLs of media parts (RFC 2397, base64 only), decoded with OpenSSL's
 * EVP_DecodeBlock after Sipp checks the alphabet and the size limit itself (the decoder skips
 * some whitespace and reports padding as bytes). Declared in media_parse.h; native builds only.
 */
#define _GNU_SOURCE
#include "media_parse.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

int sipp__data_url_parse(const char *url, size_t len, size_t max_bytes, char **mime,
                         unsigned char **data, size_t *n, char *msg, size_t cap) {
    *mime = NULL;
    *data = NULL;
    *n = 0;
    if (len < 5 || strncasecmp(url, "data:", 5) != 0) {
        snprintf(msg, cap, "not a data: URL");
        return -1;
    }
    const char *comma = memchr(url, ',', len);
    if (!comma) {
        snprintf(msg, cap, "the data: URL has no ','");
        return -1;
    }
    const char *meta = url + 5;
    size_t meta_len = (size_t)(comma - meta);
    if (meta_len < 7 || strncasecmp(comma - 7, ";base64", 7) != 0) {
        snprintf(msg, cap, "the data: URL is not base64 (';base64,' expected)");
        return -1;
    }
    size_t type_len = meta_len - 7;
    const char *semi = memchr(meta, ';', type_len);
    if (semi) type_len = (size_t)(semi - meta); /* parameters (charset=...) dropped */
    const char *b64 = comma + 1;
    size_t b64_len = len - (size_t)(b64 - url);
    while (b64_len > 0 && isspace((unsigned char)b64[b64_len - 1])) b64_len--;
    if (b64_len == 0) {
        snprintf(msg, cap, "the data: URL is empty");
        return -1;
    }
    if (b64_len % 4 != 0 || b64_len > (size_t)INT32_MAX) {
        snprintf(msg, cap, "the data: URL's base64 is malformed (length %zu is not a multiple of 4)",
                 b64_len);
        return -1;
    }
    size_t pad = (b64[b64_len - 1] == '=') + (b64_len > 1 && b64[b64_len - 2] == '=');
    size_t out_len = b64_len / 4 * 3 - pad;
    if (out_len > max_bytes) {
        snprintf(msg, cap, "the data: URL holds %zu bytes, over the limit of %zu", out_len, max_bytes);
        return -2;
    }
    for (size_t i = 0; i < b64_len - pad; i++) { /* EVP_DecodeBlock skips some whitespace */
        unsigned char c = (unsigned char)b64[i];
        if (!(isalnum(c) || c == '+' || c == '/')) {
            snprintf(msg, cap, "the data: URL's base64 has an invalid character at offset %zu", i);
            return -1;
        }
    }
    unsigned char *buf = malloc(b64_len / 4 * 3 + 1);
    char *type = malloc(type_len + 1);
    if (!buf || !type) {
        free(buf);
        free(type);
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    int got = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)b64_len);
    if (got < 0 || (size_t)got < out_len) {
        free(buf);
        free(type);
        snprintf(msg, cap, "the data: URL's base64 does not decode");
        return -1;
    }
    memcpy(type, meta, type_len);
    type[type_len] = '\0';
    *mime = type;
    *data = buf;
    *n = out_len;
    return 0;
}
