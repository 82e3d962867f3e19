/*
 * http_fetch.c — blocking GETs on the calling thread for the hub client (`sipp pull`): API
 * listings read into memory and model files streamed to disk, with an optional Range start.
 *
 * Redirects are followed here, not by libcurl, so that every hop is checked: only http and
 * https, no userinfo, IP literals by the network policy; and the Authorization header is sent
 * only to the origin (scheme, host, port) of the first URL: a hub's redirect to a CDN never
 * carries the token. Every address connected to, on every hop, passes the network policy
 * (net_policy.c) in libcurl's open-socket callback, after DNS, as in http_client.c: plain http
 * only to loopback (or allowed private) addresses, and loopback on a redirect only when the
 * first hop itself connected to loopback. Proxies from the environment (http_proxy, ...) are
 * ignored: only an explicit `proxy` is used. Bodies of redirects are dropped; only a final 2xx
 * body reaches the caller. Messages this file produces never contain a header value.
 */
#define _GNU_SOURCE
#include "http_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static void fetch_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct fetch {
    const sipp__http_get *req;
    CURL *easy;
    int hop;
    long status;       /* of the hop in progress, once its status line arrived */
    bool aborted;
    sipp_status body_st; /* SIPP_OUT_OF_MEMORY when the error body cap was hit (ignored) */
    bool plain_http;     /* the hop in progress is http:// */
    bool origin_loopback; /* the first hop connected to a loopback address */
    char refused[SIPP_ERROR_MESSAGE_CAP]; /* why the network policy refused an address */
} fetch;

/* The status line starts each hop's headers: "HTTP/1.1 302 Found". */
static size_t on_header(char *data, size_t size, size_t n, void *p) {
    fetch *f = p;
    size_t len = size * n;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', len);
        f->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        if (f->req->on_status) f->req->on_status(f->hop, f->status, f->req->ud);
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon) return len; /* the blank line ending the headers */
    size_t name_len = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vlen = len - name_len - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) v++, vlen--;
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) vlen--;
    if (f->req->on_header) f->req->on_header(f->hop, data, name_len, v, vlen, f->req->ud);
    return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *p) {
    fetch *f = p;
    size_t len = size * n;
    if (f->status >= 300 && f->status < 400) return len; /* a redirect's body: dropped */
    if (f->status < 200 || f->status >= 300) {
        if (f->req->error_body && f->body_st == SIPP_OK)
            f->body_st = sipp__buf_append(f->req->error_body, data, len);
        return len; /* past the cap the rest is read and dropped */
    }
    if (f->req->should_abort && f->req->should_abort(f->req->ud)) {
        f->aborted = true;
        return CURL_WRITEFUNC_ERROR;
    }
    if (f->req->on_body && !f->req->on_body(data, len, f->req->ud)) {
        f->aborted = true;
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

static int on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    fetch *f = p;
    if (f->req->should_abort && f->req->should_abort(f->req->ud)) {
        f->aborted = true;
        return 1;
    }
    return 0;
}

/* Every socket curl opens, for each address it tries: the network policy. Through an explicit
 * proxy the address is the proxy's, which the user named: only metadata and reserved addresses
 * are refused there (the proxy resolves and reaches the target). */
static curl_socket_t on_open_socket(void *p, curlsocktype purpose, struct curl_sockaddr *a) {
    fetch *f = p;
    (void)purpose;
    bool proxy = f->req->proxy && f->req->proxy[0];
    sipp__net_rules r = {.allow_private = f->req->allow_private_network || proxy,
                         .refuse_loopback = !proxy && f->hop > 0 && !f->origin_loopback,
                         .plain_http = !proxy && f->plain_http};
    if (!sipp__net_connect_check(&r, &a->addr, f->refused, sizeof f->refused))
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype, a->protocol);
}

/* True when the address curl connected to (CURLINFO_PRIMARY_IP) is loopback. */
static bool connected_to_loopback(CURL *e) {
    char *ip = NULL;
    int fam;
    uint8_t a[16];
    return curl_easy_getinfo(e, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip &&
           sipp__net_host_literal(ip, &fam, a) && sipp__net_classify(fam, a) == SIPP__NET_LOOPBACK;
}

/* True when a and b have the same scheme, host and port. */
static bool same_origin(const char *a, const char *b) {
    CURLU *ua = curl_url(), *ub = curl_url();
    bool same = false;
    if (ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
        curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK) {
        same = true;
        const CURLUPart parts[] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
        for (size_t i = 0; i < 3 && same; i++) {
            char *pa = NULL, *pb = NULL;
            curl_url_get(ua, parts[i], &pa, CURLU_DEFAULT_PORT);
            curl_url_get(ub, parts[i], &pb, CURLU_DEFAULT_PORT);
            same = pa && pb && strcasecmp(pa, pb) == 0;
            curl_free(pa);
            curl_free(pb);
        }
    }
    curl_url_cleanup(ua);
    curl_url_cleanup(ub);
    return same;
}

sipp_status sipp__http_get_run(const sipp__http_get *req, long *status, sipp_error *err) {
    pthread_once(&fetch_once, fetch_init);
    *status = 0;
    fetch f = {.req = req};
    f.easy = curl_easy_init();
    if (!f.easy) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    char *url = sipp__strdup(req->url);
    struct curl_slist *base = NULL, *with_auth = NULL;
    sipp_status st = url ? SIPP_OK : SIPP_OUT_OF_MEMORY;
    char range[64] = "";
    if (req->range_from)
        snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)req->range_from);
    /* Two header lists: with and without the token, chosen per hop by origin. */
    for (int pass = 0; pass < 2 && st == SIPP_OK; pass++) {
        struct curl_slist **l = pass ? &with_auth : &base;
        for (size_t i = 0; i <= req->n_headers + 1 && st == SIPP_OK; i++) {
            const char *h = i < req->n_headers ? req->headers[i]
                            : i == req->n_headers ? (range[0] ? range : NULL)
                                                  : (pass ? req->auth_header : NULL);
            if (!h) continue;
            struct curl_slist *n = curl_slist_append(*l, h);
            if (!n) st = SIPP_OUT_OF_MEMORY;
            else *l = n;
        }
    }
    if (st != SIPP_OK) {
        free(url);
        curl_slist_free_all(base);
        curl_slist_free_all(with_auth);
        curl_easy_cleanup(f.easy);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    char errbuf[CURL_ERROR_SIZE];
    CURL *e = f.easy;
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &f);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, &f);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "sipp/" SIPP_VERSION_STRING);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &f);
    if (req->proxy && req->proxy[0]) {
        curl_easy_setopt(e, CURLOPT_PROXY, req->proxy);
        curl_easy_setopt(e, CURLOPT_NOPROXY, ""); /* no_proxy from the environment: ignored */
    } else {
        curl_easy_setopt(e, CURLOPT_PROXY, ""); /* "": no proxy, whatever the environment says */
    }
    if (req->connect_timeout_ms)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    if (req->idle_timeout_ms) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        long s = (long)((req->idle_timeout_ms + 999) / 1000);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s > 0 ? s : 1L);
    }
    for (;; f.hop++) {
        errbuf[0] = '\0';
        f.refused[0] = '\0';
        f.status = 0;
        f.plain_http = strncasecmp(url, "http://", 7) == 0;
        bool auth = req->auth_header && same_origin(req->url, url);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, auth ? with_auth : base);
        CURLcode rc = curl_easy_perform(e);
        if (rc != CURLE_OK) {
            if (f.aborted) st = sipp__fail(err, SIPP_CANCELLED, 0, "cancelled");
            else if (f.refused[0] && rc == CURLE_COULDNT_CONNECT) /* no address was allowed */
                st = f.hop == 0 ? sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "%s", f.refused)
                                : sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "refused a redirect: %s",
                                             f.refused);
            else if (rc == CURLE_OPERATION_TIMEDOUT)
                st = sipp__fail(err, SIPP_TIMEOUT, 0, "timed out: %s",
                                errbuf[0] ? errbuf : curl_easy_strerror(rc));
            else
                st = sipp__fail(err, SIPP_TRANSPORT, 0, "transport error: %s",
                                errbuf[0] ? errbuf : curl_easy_strerror(rc));
            break;
        }
        if (f.hop == 0) f.origin_loopback = connected_to_loopback(e);
        long code = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        *status = code;
        if (code < 300 || code >= 400) break;
        char *next = NULL;
        curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &next); /* absolute; owned by the handle */
        if (!next) break; /* a 3xx without Location: the caller sees the status */
        if ((uint32_t)f.hop >= req->max_redirects) {
            st = sipp__fail(err, SIPP_UPSTREAM_ERROR, (int)code, "too many redirects (more than %u)",
                            req->max_redirects);
            break;
        }
        sipp_error uerr = sipp__error_defaults();
        unsigned flags = SIPP__URL_ALLOW_QUERY |
                         (req->allow_private_network ? SIPP__URL_ALLOW_PRIVATE : 0u);
        if (sipp__http_url_check_ex(next, flags, &uerr) != SIPP_OK) {
            st = sipp__fail(err, SIPP_UPSTREAM_ERROR, (int)code, "refused a redirect: %s", uerr.message);
            break;
        }
        char *copy = sipp__strdup(next);
        if (!copy) {
            st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
            break;
        }
        free(url);
        url = copy;
    }
    free(url);
    curl_slist_free_all(base);
    curl_slist_free_all(with_auth);
    curl_easy_cleanup(e);
    return st;
}
