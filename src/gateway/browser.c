/*
 * browser.c — Host, Origin and Content-Type checks (browser.h).
 *
 * DNS rebinding: a page's own name is re-resolved to 127.0.0.1, so its requests reach a
 * loopback listener as same-origin requests carrying `Host: attacker.example`. The Host rule
 * (Ollama's and Jupyter's) accepts only names an attacker cannot point at us: localhost,
 * *.localhost (resolved locally by browsers, RFC 6761), address literals of loopback, the bind
 * address, and what the operator listed. The port is not compared: an SSH tunnel or a proxy on
 * this host may put another one there, and a rebinding page cannot choose the name.
 *
 * Host values are parsed strictly: NAME[:PORT] or [V6][:PORT], names of letters, digits, '-',
 * '.' and '_', a port of 1 to 5 digits up to 65535; anything else is malformed and refused
 * when the check is on.
 */
#define _POSIX_C_SOURCE 200809L
#include "browser.h"

#include "policy.h"

#include <string.h>
#include <strings.h>

static bool ip_is_loopback(const sipp__gw_ip *ip) {
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t one[16] = {[15] = 1};
    if (memcmp(ip->b, mapped, sizeof mapped) == 0) return ip->b[12] == 127;
    return memcmp(ip->b, one, sizeof one) == 0;
}

/* Splits h[0..len) ("NAME[:PORT]" or "[V6][:PORT]") into its name (lower case, brackets kept)
 * and port (-1 when absent). False when malformed. */
static bool host_split(const char *h, size_t len, char *name, size_t cap, long *port) {
    const char *end = h + len, *nend;
    if (len && h[0] == '[') {
        nend = memchr(h, ']', len);
        if (!nend) return false;
        nend++;
    } else {
        nend = memchr(h, ':', len);
        if (!nend) nend = end;
    }
    size_t n = (size_t)(nend - h);
    if (n == 0 || n >= cap) return false;
    *port = -1;
    if (nend < end) {
        if (*nend != ':' || end - nend < 2 || end - nend > 6) return false;
        long p = 0;
        for (const char *q = nend + 1; q < end; q++) {
            if (*q < '0' || *q > '9') return false;
            p = p * 10 + (*q - '0');
        }
        if (p > 65535) return false;
        *port = p;
    }
    bool v6 = h[0] == '[';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' ||
                  (v6 && (c == ':' || (c == '[' && i == 0) || (c == ']' && i == n - 1)));
        if (!ok) return false;
        name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    name[n] = '\0';
    return true;
}

/* The address of a host name (IPv6 in brackets); false when it is a DNS name. */
static bool host_ip(const char *name, sipp__gw_ip *ip) {
    char a[72];
    size_t n = strlen(name);
    if (name[0] == '[' && n >= 2 && n - 2 < sizeof a) {
        memcpy(a, name + 1, n - 2);
        a[n - 2] = '\0';
        return strchr(a, ':') && sipp__gw_ip_parse(a, ip);
    }
    return !strchr(name, ':') && sipp__gw_ip_parse(name, ip);
}

void sipp__gw_hosts_init(sipp__gw_hosts *h, const char *bind, char *const *allowed,
                         size_t n_allowed) {
    memset(h, 0, sizeof *h);
    h->allowed = allowed;
    h->n_allowed = n_allowed;
    const char *colon = bind ? strrchr(bind, ':') : NULL;
    long port;
    if (colon &&
        !host_split(bind, (size_t)(colon - bind), h->bind_host, sizeof h->bind_host, &port))
        h->bind_host[0] = '\0';
    sipp__gw_ip ip;
    bool loopback = h->bind_host[0] && host_ip(h->bind_host, &ip) && ip_is_loopback(&ip);
    bool any = false;
    for (size_t i = 0; i < n_allowed; i++) any |= strcmp(allowed[i], "*") == 0;
    h->check = !any && (loopback || n_allowed > 0);
}

static bool host_listed(const sipp__gw_hosts *h, const char *name) {
    static const char lh[] = ".localhost";
    size_t n = strlen(name);
    if (strcmp(name, "localhost") == 0 ||
        (n > sizeof lh - 1 && strcmp(name + n - (sizeof lh - 1), lh) == 0))
        return true;
    sipp__gw_ip ip, other;
    bool is_ip = host_ip(name, &ip);
    if (is_ip && ip_is_loopback(&ip)) return true;
    if (h->bind_host[0] && strcmp(name, h->bind_host) == 0) return true;
    if (is_ip && h->bind_host[0] && host_ip(h->bind_host, &other) &&
        memcmp(&ip, &other, sizeof ip) == 0)
        return true;
    for (size_t i = 0; i < h->n_allowed; i++) {
        const char *e = h->allowed[i];
        if (strcmp(e, "*") == 0 || strcasecmp(e, name) == 0) return true;
        if (is_ip && host_ip(e, &other) && memcmp(&ip, &other, sizeof ip) == 0) return true;
    }
    return false;
}

bool sipp__gw_host_ok(const sipp__gw_hosts *h, const char *host) {
    if (!h->check || !host) return true; /* no Host at all: HTTP/1.0, never a browser */
    char name[256];
    long port;
    return host_split(host, strlen(host), name, sizeof name, &port) && host_listed(h, name);
}

bool sipp__gw_same_origin(const char *origin, const char *host) {
    long dport;
    if (!origin || !host) return false;
    if (strncasecmp(origin, "http://", 7) == 0) {
        origin += 7;
        dport = 80;
    } else if (strncasecmp(origin, "https://", 8) == 0) {
        origin += 8;
        dport = 443;
    } else
        return false;
    char on[256], hn[256];
    long op, hp;
    if (!host_split(origin, strlen(origin), on, sizeof on, &op) ||
        !host_split(host, strlen(host), hn, sizeof hn, &hp))
        return false;
    return strcmp(on, hn) == 0 && (op < 0 ? dport : op) == (hp < 0 ? dport : hp);
}

bool sipp__gw_is_json_type(const char *ct) {
    static const char want[] = "application/json";
    if (!ct) return false;
    while (*ct == ' ' || *ct == '\t') ct++;
    if (strncasecmp(ct, want, sizeof want - 1) != 0) return false;
    ct += sizeof want - 1;
    while (*ct == ' ' || *ct == '\t') ct++;
    return *ct == '\0' || *ct == ';';
}
