/*
 * net_policy.c — which addresses an outbound connection of Sipp may reach (SSRF policy).
 *
 * Remote endpoints take their base URL from the application, from a gateway operator's config
 * or, through an app, from a user's settings; a URL pointing at a cloud metadata service or a
 * host on the private network would turn Sipp into a proxy into that network. The decision is
 * made on the address actually connected to (libcurl's open-socket callback, after DNS), so a
 * name that resolves, or later re-resolves, to a refused address is refused too; IP literals
 * are also checked when an endpoint is created, so the common mistake fails at once.
 *
 * Classes: loopback (127/8, ::1) is always allowed (llama-server and Ollama on localhost);
 * private networks (RFC 1918, 100.64/10 shared, fc00::/7 unique-local, link-local 169.254/16 and
 * fe80::/10) only with allow_private_network; cloud metadata services (169.254.169.254,
 * 169.254.170.2, fd00:ec2::254, 100.100.100.200) and addresses that are never a server
 * (0/8, ::, multicast, 240/4, broadcast) never. IPv4-mapped and NAT64 IPv6 addresses are
 * judged by the IPv4 address they carry. Everything else is public and allowed.
 *
 * Loopback is a class of addresses, not of names: a URL host is loopback by name only when it
 * is "localhost" or a loopback IP literal (127.anything.example is a DNS name like any other),
 * and what decides is the address connected to (sipp__net_connect_check).
 */
#define _GNU_SOURCE
#include "http_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static sipp__net_class classify_v4(const uint8_t a[4]) {
    uint32_t x = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
#define IN(net, bits) ((bits) == 0 || (x >> (32 - (bits))) == ((uint32_t)(net) >> (32 - (bits))))
    if (x == 0xA9FEA9FEu /* 169.254.169.254 */ || x == 0xA9FEAA02u /* 169.254.170.2 (ECS) */ ||
        x == 0x646464C8u /* 100.100.100.200 (Alibaba Cloud) */)
        return SIPP__NET_METADATA;
    if (IN(0x7F000000u, 8)) return SIPP__NET_LOOPBACK;
    if (IN(0x00000000u, 8) || IN(0xE0000000u, 4) || IN(0xF0000000u, 4)) return SIPP__NET_RESERVED;
    if (IN(0xA9FE0000u, 16)) return SIPP__NET_LINK_LOCAL;
    if (IN(0x0A000000u, 8) || IN(0xAC100000u, 12) || IN(0xC0A80000u, 16) || IN(0x64400000u, 10))
        return SIPP__NET_PRIVATE;
#undef IN
    return SIPP__NET_PUBLIC;
}

sipp__net_class sipp__net_classify(int family, const void *addr) {
    if (family == AF_INET) return classify_v4(addr);
    if (family != AF_INET6) return SIPP__NET_RESERVED;
    const uint8_t *a = addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t zero[16] = {0};
    static const uint8_t aws_md[16] = {0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0) return classify_v4(a + 12);
    if (memcmp(a, zero, 15) == 0) return a[15] == 1 ? SIPP__NET_LOOPBACK : SIPP__NET_RESERVED;
    if (memcmp(a, zero, 12) == 0) return SIPP__NET_RESERVED; /* IPv4-compatible (deprecated) */
    if (memcmp(a, aws_md, 16) == 0) return SIPP__NET_METADATA;
    if (a[0] == 0xff) return SIPP__NET_RESERVED;                      /* multicast */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return SIPP__NET_LINK_LOCAL; /* fe80::/10 */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return SIPP__NET_PRIVATE;    /* fec0::/10 (site-local) */
    if ((a[0] & 0xfe) == 0xfc) return SIPP__NET_PRIVATE;              /* fc00::/7 unique-local */
    return SIPP__NET_PUBLIC;
}

const char *sipp__net_refusal(sipp__net_class c, bool allow_private) {
    switch (c) {
    case SIPP__NET_PUBLIC:
    case SIPP__NET_LOOPBACK: return NULL;
    case SIPP__NET_PRIVATE:
        return allow_private ? NULL
                             : "a private-network address (set allow_private_network to allow it)";
    case SIPP__NET_LINK_LOCAL:
        return allow_private ? NULL
                             : "a link-local address (set allow_private_network to allow it)";
    case SIPP__NET_METADATA: return "a cloud metadata service address (never allowed)";
    default: return "not a server address (unspecified, multicast or reserved)";
    }
}

bool sipp__net_host_literal(const char *host, int *family, uint8_t addr[16]) {
    char buf[64];
    size_t n = strlen(host);
    if (n >= sizeof buf) return false;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
    } else {
        memcpy(buf, host, n + 1);
    }
    char *pct = strchr(buf, '%'); /* a zone id: fe80::1%eth0 */
    if (pct) *pct = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

void sipp__net_format(int family, const void *addr, char *out, size_t cap) {
    if (!inet_ntop(family, addr, out, (socklen_t)cap)) snprintf(out, cap, "?");
}

bool sipp__net_host_is_loopback(const char *host) {
    int fam;
    uint8_t a[16];
    if (!host) return false;
    if (strcasecmp(host, "localhost") == 0) return true; /* resolved, then checked at connect */
    return sipp__net_host_literal(host, &fam, a) && sipp__net_classify(fam, a) == SIPP__NET_LOOPBACK;
}

bool sipp__net_connect_check(const sipp__net_rules *r, const struct sockaddr *sa, char *why_out,
                             size_t cap) {
    const void *addr = NULL;
    int family = sa ? sa->sa_family : AF_UNSPEC;
    if (family == AF_INET) addr = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (family == AF_INET6) addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    sipp__net_class c = addr ? sipp__net_classify(family, addr) : SIPP__NET_RESERVED;
    const char *why = sipp__net_refusal(c, r->allow_private);
    if (!why && c == SIPP__NET_LOOPBACK && r->refuse_loopback)
        why = "loopback, which a redirect from a server not itself on loopback may not reach";
    if (!why && r->plain_http && c != SIPP__NET_LOOPBACK && c != SIPP__NET_PRIVATE &&
        c != SIPP__NET_LINK_LOCAL)
        why = "a public address, and plain http goes only to loopback or private addresses";
    if (!why) return true;
    char shown[64] = "?";
    if (addr) sipp__net_format(family, addr, shown, sizeof shown);
    snprintf(why_out, cap, "refused to connect to %s: %s", shown, why);
    return false;
}
