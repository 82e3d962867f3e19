/*
 * hash.c — SHA-256 through OpenSSL's libcrypto (model fingerprints, snapshot names and
 * checksums). The EVP context is hidden so no OpenSSL type leaves this file.
 */
#define _POSIX_C_SOURCE 200809L
#include "common_int.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>

sipp__sha256 *sipp__sha256_begin(void) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return NULL;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    sipp__sha256 *h = (sipp__sha256 *)ctx; /* the wrapper is the context itself */
    return h;
}

void sipp__sha256_update(sipp__sha256 *h, const void *data, size_t len) {
    if (len) EVP_DigestUpdate((EVP_MD_CTX *)h, data, len);
}

void sipp__sha256_end(sipp__sha256 *h, uint8_t out[32]) {
    unsigned int n = 32;
    EVP_DigestFinal_ex((EVP_MD_CTX *)h, out, &n);
    EVP_MD_CTX_free((EVP_MD_CTX *)h);
}

int sipp__sha256_fd(int fd, uint8_t out[32]) {
    enum { CHUNK = 4 << 20 };
    uint8_t *buf = malloc(CHUNK);
    sipp__sha256 *h = buf ? sipp__sha256_begin() : NULL;
    if (!h) {
        free(buf);
        return ENOMEM;
    }
    off_t off = 0;
    ssize_t n;
    while ((n = pread(fd, buf, CHUNK, off)) > 0) {
        sipp__sha256_update(h, buf, (size_t)n);
        off += n;
    }
    int rc = n < 0 ? errno : 0;
    sipp__sha256_end(h, out);
    free(buf);
    return rc;
}

bool sipp__sha256_once(const void *data, size_t len, uint8_t out[32]) {
    sipp__sha256 *h = sipp__sha256_begin();
    if (!h) return false;
    sipp__sha256_update(h, data, len);
    sipp__sha256_end(h, out);
    return true;
}
