/*
 * http_int.h — the HTTP layer's shared pieces. Today: the Server-Sent Events decoder used by
 * the gateway endpoint and the provider adapters (sse.c). Only src/http includes libcurl and
 * libmicrohttpd headers.
 */
#ifndef SIPP_HTTP_INT_H
#define SIPP_HTTP_INT_H

#include "../common/common_int.h"

/* Largest single SSE event (and line) accepted from a peer: past it, the stream is an error. */
#define SIPP__SSE_EVENT_MAX (1u << 20)

/* One dispatched event. `event` is "" when the stream named none ("message" by the standard);
 * `data` joins the event's data lines with '\n'. Both are NUL-terminated and valid only during
 * the callback. */
typedef struct sipp__sse_event {
    const char *event;
    size_t event_len;
    const char *data;
    size_t data_len;
} sipp__sse_event;

/* Return false to stop decoding (sipp__sse_feed then returns SIPP_CANCELLED). */
typedef bool (*sipp__sse_fn)(const sipp__sse_event *ev, void *user_data);

/* An incremental decoder: feed it the body in chunks of any size, split anywhere. It follows the
 * WHATWG event-stream rules: lines end in LF, CRLF or CR; a leading UTF-8 BOM is skipped; lines
 * starting with ':' are comments (heartbeats); `event` and `data` fields are kept, `id` and
 * `retry` are ignored; a blank line dispatches the pending event when it has data. */
typedef struct sipp__sse {
    sipp__buf line;   /* the line being read */
    sipp__buf event;  /* the pending event's name */
    sipp__buf data;   /* the pending event's data */
    bool has_data;
    bool after_cr;    /* the last byte was CR: a following LF belongs to the same line end */
    size_t bom_seen;  /* bytes of a leading BOM matched so far (3 = done or none) */
} sipp__sse;

void sipp__sse_init(sipp__sse *p, size_t max_event);
/* Decodes a chunk, calling fn for each complete event. Errors: SIPP_OUT_OF_MEMORY when a line or
 * an event exceeds the maximum (message names the limit), SIPP_CANCELLED when fn said stop. */
sipp_status sipp__sse_feed(sipp__sse *p, const char *chunk, size_t len, sipp__sse_fn fn,
                           void *user_data, sipp_error *err);
/* True when bytes of an unfinished event are pending (a stream that ends here was cut short). */
bool sipp__sse_pending(const sipp__sse *p);
void sipp__sse_free(sipp__sse *p);

/* ---- outbound network policy (net_policy.c): which addresses a connection may reach ------- */

typedef enum sipp__net_class {
    SIPP__NET_PUBLIC,
    SIPP__NET_LOOPBACK,   /* 127/8, ::1: always allowed */
    SIPP__NET_PRIVATE,    /* RFC 1918, 100.64/10, fc00::/7, fec0::/10: allow_private_network */
    SIPP__NET_LINK_LOCAL, /* 169.254/16, fe80::/10: allow_private_network */
    SIPP__NET_METADATA,   /* cloud metadata services: never */
    SIPP__NET_RESERVED,   /* 0/8, ::, multicast, 240/4, broadcast: never */
} sipp__net_class;

/* The class of an address (`addr`: struct in_addr or in6_addr bytes of `family`). */
sipp__net_class sipp__net_classify(int family, const void *addr);
/* NULL when a connection to an address of class `c` is allowed, else why not (static text). */
const char *sipp__net_refusal(sipp__net_class c, bool allow_private);
/* True when `host` (as in a URL: "10.0.0.1", "[fe80::1]") is an IP literal; fills the address. */
bool sipp__net_host_literal(const char *host, int *family, uint8_t addr[16]);
void sipp__net_format(int family, const void *addr, char *out, size_t cap);
/* True when a URL's `host` is loopback by name: "localhost" or a loopback IP literal ("127.0.0.1",
 * "[::1]"). A name that merely starts with "127." is not. */
bool sipp__net_host_is_loopback(const char *host);

/* What one connection may reach, beyond sipp__net_refusal(). */
typedef struct sipp__net_rules {
    bool allow_private;   /* private and link-local addresses (allow_private_network) */
    bool refuse_loopback; /* loopback too is refused (a hub's redirect off a non-loopback hub) */
    bool plain_http;      /* the URL is plain http: only loopback or (allowed) private addresses */
} sipp__net_rules;

struct sockaddr;
/* The check of libcurl's open-socket callback, on the address about to be connected to (after
 * DNS). True when allowed; else false with "refused to connect to ADDR: why" in why_out. */
bool sipp__net_connect_check(const sipp__net_rules *r, const struct sockaddr *sa, char *why_out,
                             size_t cap);

/* ---- HTTP client (http_client.c): one transfer thread per sipp_client over libcurl multi --- */

/* Largest error body read from a peer. */
#define SIPP__HTTP_ERROR_BODY_MAX (1u << 20)

typedef struct sipp__http sipp__http;
typedef struct sipp__http_xfer sipp__http_xfer;

/* Callbacks run on the transfer thread; they must not block. */
typedef struct sipp__http_handlers {
    /* The response status line arrived (before any body byte). */
    void (*on_status)(long status, void *ud);
    /* A response header ("name", "value" without CRLF). */
    void (*on_header)(const char *name, size_t name_len, const char *value, size_t value_len,
                      void *ud);
    /* Body bytes; return false to abort the transfer (it then ends with SIPP_CANCELLED). */
    bool (*on_body)(const char *data, size_t len, void *ud);
    /* Polled on the transfer thread after every wake-up: true aborts the transfer (its
     * connection is closed) and it ends with SIPP_CANCELLED. */
    bool (*should_abort)(void *ud);
    /* The end, exactly once: SIPP_OK (any HTTP status), SIPP_CANCELLED, SIPP_TIMEOUT (connect,
     * whole-request or idle), or SIPP_IO_ERROR (transport) with a message without secrets. After it
     * returns the transfer is gone. */
    void (*on_done)(sipp_status st, const char *message, void *ud);
    /* May be NULL. Runs just before on_done when the transfer failed before any byte of the
     * request was written (no connection, or the connection failed first): the peer never saw
     * the request, so sending it again elsewhere cannot run it twice (upstream pools). */
    void (*on_not_sent)(void *ud);
} sipp__http_handlers;

typedef struct sipp__http_request {
    const char *method;        /* "GET" or "POST" */
    const char *url;           /* validated with sipp__http_url_check() */
    const char *const *headers; /* "Name: value" lines */
    size_t n_headers;
    const char *body;          /* may be NULL */
    size_t body_len;
    uint32_t connect_timeout_ms, total_timeout_ms, idle_timeout_ms; /* 0 = none */
    /* The network policy of every address connected to (net_policy.c): private and link-local
     * addresses only when set; plain http only to loopback, or to private addresses when set. */
    bool allow_private_network;
} sipp__http_request;

sipp_status sipp__http_new(sipp__http **out, sipp_error *err);
/* Cancels every transfer (each gets on_done), joins the thread. */
void sipp__http_free(sipp__http *h);
/* Starts a transfer; copies everything in `req`. After SIPP_OK, on_done runs exactly once. */
sipp_status sipp__http_start(sipp__http *h, const sipp__http_request *req,
                             const sipp__http_handlers *handlers, void *ud, sipp_error *err);
/* Wakes the transfer thread so it polls should_abort now (any thread). */
void sipp__http_wake(sipp__http *h);

/* Checks a base URL: http or https only, https unless the host is loopback by name
 * (sipp__net_host_is_loopback: "localhost" or a loopback literal), no userinfo,
 * query or fragment; an IP-literal host must pass the network policy (no private or link-local
 * address, never a metadata or reserved one). */
sipp_status sipp__http_url_check(const char *url, sipp_error *err);
/* The same check with options: SIPP__URL_ALLOW_QUERY accepts a query (a download URL a hub
 * redirects to carries its signature there); SIPP__URL_ALLOW_PRIVATE accepts private and
 * link-local literals, and plain http to any host (the connection itself is then checked:
 * plain http only to loopback or private addresses). */
#define SIPP__URL_ALLOW_QUERY 1u
#define SIPP__URL_ALLOW_PRIVATE 2u
sipp_status sipp__http_url_check_ex(const char *url, unsigned flags, sipp_error *err);

/* ---- blocking transfers (http_fetch.c): the hub client of `sipp pull` ------------------- */

/* Largest error body kept from a failed fetch. */
#define SIPP__HTTP_FETCH_ERROR_MAX (64u * 1024u)

/* One GET, run on the calling thread. Redirects are followed by hand (at most max_redirects):
 * each target must pass sipp__http_url_check_ex(.., SIPP__URL_ALLOW_QUERY, plus
 * SIPP__URL_ALLOW_PRIVATE with allow_private_network), and `auth_header` goes only to hops on
 * the origin (scheme, host, port) of `url`, never to a CDN it redirects to. Every address
 * connected to passes the network policy, as for sipp__http_request: loopback and public
 * addresses; private and link-local ones with allow_private_network; plain http only to
 * loopback (or allowed private) addresses; and a redirect reaches loopback only when the first
 * hop connected to loopback (a local mirror), never off a hub elsewhere. Proxy environment
 * variables are ignored; `proxy` names the only proxy used. Headers of every hop reach on_header; only a final 2xx body reaches on_body; the body of
 * a final error status is kept (up to SIPP__HTTP_FETCH_ERROR_MAX) in `error_body`. */
typedef struct sipp__http_get {
    const char *url;               /* checked with sipp__http_url_check_ex() by the caller */
    const char *auth_header;       /* "Authorization: Bearer ..." or NULL; never logged */
    const char *const *headers;    /* other "Name: value" lines, sent on every hop */
    size_t n_headers;
    uint64_t range_from;           /* > 0: ask for the bytes from this offset (Range) */
    uint32_t connect_timeout_ms;   /* 0 = curl's default */
    uint32_t idle_timeout_ms;      /* no byte for this long ends the transfer; 0 = never */
    uint32_t max_redirects;
    bool allow_private_network;    /* private and link-local addresses may be reached */
    /* A proxy URL ("http://host:port", "socks5h://host:port") for every hop, or NULL: none, and
     * http_proxy, https_proxy, ALL_PROXY and no_proxy are ignored. Through a proxy the address
     * checked is the proxy's (any class but metadata and reserved): the proxy reaches the
     * target, so the policy on targets is then only the check of IP-literal URLs. */
    const char *proxy;
    /* The status line of each hop (hop: 0 for the first response, 1 after a redirect...). */
    void (*on_status)(int hop, long status, void *ud);
    /* Each header of each hop. */
    void (*on_header)(int hop, const char *name, size_t name_len, const char *value,
                      size_t value_len, void *ud);
    /* Bytes of a final 2xx body; return false to stop (the fetch ends with SIPP_CANCELLED). */
    bool (*on_body)(const char *data, size_t len, void *ud);
    /* Polled about once a second and between writes; true stops with SIPP_CANCELLED. */
    bool (*should_abort)(void *ud);
    void *ud;
    sipp__buf *error_body;         /* may be NULL; initialised by the caller */
} sipp__http_get;

/* Runs the GET. SIPP_OK means a response arrived: *status is its HTTP status (any). Errors:
 * SIPP_INVALID_ARGUMENT (the network policy refused every address of `url`: "refused to connect
 * to ADDR: why"), SIPP_UPSTREAM_ERROR (a redirect to a refused URL or address, too many redirects),
 * SIPP_TIMEOUT, SIPP_CANCELLED, SIPP_TRANSPORT (connection), SIPP_OUT_OF_MEMORY. Messages carry
 * no header. */
sipp_status sipp__http_get_run(const sipp__http_get *req, long *status, sipp_error *err);

#endif
