/*
 * browser.h — the gateway's checks of the headers through which a web page the user visits
 * could reach a gateway on the user's machine or LAN (docs/gateway.md, "Browsers, DNS
 * rebinding and shared scopes"): Host (DNS rebinding), Origin (same-origin test) and
 * Content-Type (JSON only). Pure functions over strings, no I/O; listeners.c and admin.c apply
 * them to requests, tests/fuzz/fuzz_gw_browser.c fuzzes them.
 */
#ifndef SIPP_GATEWAY_BROWSER_H
#define SIPP_GATEWAY_BROWSER_H

#include <stdbool.h>
#include <stddef.h>

/* The Host rule of one listener. `allowed` points into the config (allowed_hosts). */
typedef struct sipp__gw_hosts {
    bool check;          /* refuse a Host not listed: a loopback bind, or allowed_hosts set */
    char bind_host[72];  /* the bind address as a Host header writes it ("[::1]") */
    char *const *allowed;
    size_t n_allowed;
} sipp__gw_hosts;

/* Fills `h` for a listener bound to `bind` ("HOST:PORT", "[V6]:PORT") with the config's
 * allowed_hosts (entries: names, addresses, bracketed IPv6, or "*" = any host). */
void sipp__gw_hosts_init(sipp__gw_hosts *h, const char *bind, char *const *allowed,
                         size_t n_allowed);
/* Whether a request with this Host header value (NULL: none) may go on. With the check on, the
 * Host must be well-formed and name localhost, a *.localhost name, a loopback address, the
 * bind address or an allowed_hosts entry (case-insensitive; the port is not compared). */
bool sipp__gw_host_ok(const sipp__gw_hosts *h, const char *host);
/* Whether `origin` is http:// or https:// followed by the same host and port as the Host
 * header value `host` (default ports 80 / 443 when absent). False when either is malformed
 * or `host` is NULL. */
bool sipp__gw_same_origin(const char *origin, const char *host);
/* True when a Content-Type value is application/json (case-insensitive; parameters such as
 * charset allowed; whitespace around the type allowed). NULL is false. */
bool sipp__gw_is_json_type(const char *content_type);

#endif
