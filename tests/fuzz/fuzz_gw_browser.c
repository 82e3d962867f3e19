/*
 * fuzz_gw_browser.c — libFuzzer target for the gateway's browser checks
 * (src/gateway/browser.c): Host values under a loopback bind, a LAN bind with allowed_hosts and
 * an IPv6 bind; Origin against Host; Content-Type. Never a crash or an over-read, and the
 * rules hold: Host matching ignores case, an accepted Host stays accepted with another port,
 * "http://" + a well-formed Host is its own origin, and an accepted Content-Type starts with
 * application/json.
 *
 * Input: byte 0 picks the bind; the rest is split at the first two '\n' into Host, Origin and
 * Content-Type.
 */
#define _POSIX_C_SOURCE 200809L
#include "gateway/browser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *take(const uint8_t **p, const uint8_t *end) {
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    const uint8_t *stop = nl ? nl : end;
    char *s = malloc((size_t)(stop - *p) + 1);
    if (!s) abort();
    memcpy(s, *p, (size_t)(stop - *p));
    s[stop - *p] = '\0';
    *p = nl ? nl + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    if (len < 1) return 0;
    static char *const allowed[] = {"gw.example", "10.1.2.3", "[fd00::1]"};
    static const char *const binds[] = {"127.0.0.1:8080", "0.0.0.0:8080", "[::1]:8080",
                                        "10.0.0.5:8080"};
    sipp__gw_hosts h;
    unsigned pick = data[0] % 4;
    sipp__gw_hosts_init(&h, binds[pick], allowed, pick == 3 ? 3 : pick == 1 ? 0 : 1);
    const uint8_t *p = data + 1, *end = data + len;
    char *host = take(&p, end), *origin = take(&p, end), *ctype = take(&p, end);

    bool ok = sipp__gw_host_ok(&h, host);
    if (pick == 1 && !ok) __builtin_trap(); /* a wildcard bind checks nothing */
    char *upper = strdup(host);
    if (!upper) abort();
    for (char *q = upper; *q; q++)
        if (*q >= 'a' && *q <= 'z') *q = (char)(*q - 32);
    if (sipp__gw_host_ok(&h, upper) != ok) __builtin_trap();
    if (ok && host[0] && host[0] != '[' && !strchr(host, ':') && h.check) {
        size_t n = strlen(host);
        char *ported = malloc(n + 7);
        if (!ported) abort();
        memcpy(ported, host, n);
        memcpy(ported + n, ":12345", 7);
        if (!sipp__gw_host_ok(&h, ported)) __builtin_trap();
        free(ported);
    }
    sipp__gw_same_origin(origin, host);
    if (h.check && ok && host[0]) { /* a well-formed Host is its own origin */
        size_t n = strlen(host);
        char *own = malloc(n + 8);
        if (!own) abort();
        memcpy(own, "http://", 7);
        memcpy(own + 7, host, n + 1);
        if (!sipp__gw_same_origin(own, host)) __builtin_trap();
        free(own);
    }
    if (sipp__gw_is_json_type(ctype)) {
        const char *c = ctype;
        while (*c == ' ' || *c == '\t') c++;
        if (strncasecmp(c, "application/json", 16) != 0) __builtin_trap();
    }
    free(upper);
    free(host);
    free(origin);
    free(ctype);
    return 0;
}
