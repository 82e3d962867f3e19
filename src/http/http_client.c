/*
 * http_client.c — the HTTP client of remote endpoints: one transfer thread per sipp_client
 * drives every transfer through one libcurl multi handle, so many concurrent remote runs need
 * no thread each. Callers hand requests over through a locked list and wake the thread with
 * curl_multi_wakeup(); all handler callbacks run on the transfer thread.
 *
 * Safety: redirects are never followed, only http and https are allowed, every address
 * connected to passes the network policy (net_policy.c; checked after DNS, so rebinding cannot
 * bypass it), and no message this file produces contains a header value (where secrets live).
 */
#define _GNU_SOURCE
#include "http_int.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

struct sipp__http_xfer {
    struct sipp__http_xfer *next;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    sipp__http_handlers handlers;
    void *ud;
    long status;
    bool status_sent;
    bool aborted;
    bool allow_private, plain_http;
    char refused[SIPP_ERROR_MESSAGE_CAP]; /* why the network policy refused an address */
    char error[CURL_ERROR_SIZE];
};

struct sipp__http {
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;
    sipp__http_xfer *incoming; /* guarded by mu */
    bool stopping;             /* guarded by mu */
    sipp__http_xfer *active;   /* transfer thread only */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- URL checks --------------------------------------------------------------------------- */

sipp_status sipp__http_url_check(const char *url, sipp_error *err) {
    return sipp__http_url_check_ex(url, 0, err);
}

sipp_status sipp__http_url_check_ex(const char *url, unsigned flags, sipp_error *err) {
    pthread_once(&curl_once, curl_init);
    if (!url || !url[0]) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "a base URL is required");
    CURLU *u = curl_url();
    if (!u) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    sipp_status st = SIPP_OK;
    char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *fragment = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "not a valid URL");
    } else {
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
        curl_url_get(u, CURLUPART_HOST, &host, 0);
        curl_url_get(u, CURLUPART_USER, &user, 0);
        curl_url_get(u, CURLUPART_QUERY, &query, 0);
        curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0);
        if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
            st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "the URL must be http or https");
        else if (user)
            st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                            "the URL must not carry credentials (userinfo); use the API key setting");
        else if (fragment || (query && !(flags & SIPP__URL_ALLOW_QUERY)))
            st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "the URL must not have a query or fragment");
        else if (strcmp(scheme, "http") == 0 && !(flags & SIPP__URL_ALLOW_PRIVATE) &&
                 !sipp__net_host_is_loopback(host))
            st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                            "plain http is allowed only to loopback (or, with "
                            "allow_private_network, to private addresses); use https");
        else if (host) {
            int fam;
            uint8_t a[16];
            if (sipp__net_host_literal(host, &fam, a)) {
                sipp__net_class c = sipp__net_classify(fam, a);
                const char *why = sipp__net_refusal(c, flags & SIPP__URL_ALLOW_PRIVATE);
                if (!why && strcmp(scheme, "http") == 0 && c == SIPP__NET_PUBLIC)
                    why = "a public address: use https";
                if (why) {
                    char shown[64];
                    sipp__net_format(fam, a, shown, sizeof shown);
                    st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                    "the URL's host %s is %s", shown, why);
                }
            }
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(query);
    curl_free(fragment);
    curl_url_cleanup(u);
    return st;
}

/* ---- curl callbacks (transfer thread) ------------------------------------------------------ */

/* Every socket curl opens (after DNS, for each address it tries): the network policy. A
 * refused address is not connected to; curl tries the next one or fails, and the transfer
 * ends with the policy's reason instead of a connect error. */
static curl_socket_t on_open_socket(void *p, curlsocktype purpose, struct curl_sockaddr *a) {
    sipp__http_xfer *x = p;
    (void)purpose;
    sipp__net_rules r = {.allow_private = x->allow_private, .plain_http = x->plain_http};
    if (!sipp__net_connect_check(&r, &a->addr, x->refused, sizeof x->refused))
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype, a->protocol);
}

static void send_status(sipp__http_xfer *x) {
    if (x->status_sent) return;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
    x->status_sent = true;
    if (x->handlers.on_status) x->handlers.on_status(x->status, x->ud);
}

static size_t on_header(char *data, size_t size, size_t n, void *p) {
    sipp__http_xfer *x = p;
    size_t len = size * n;
    const char *colon = memchr(data, ':', len);
    if (!colon) return len; /* the status line, or the blank line ending the headers */
    size_t name_len = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vlen = len - name_len - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) v++, vlen--;
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) vlen--;
    if (x->handlers.on_header) x->handlers.on_header(data, name_len, v, vlen, x->ud);
    return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *p) {
    sipp__http_xfer *x = p;
    size_t len = size * n;
    send_status(x);
    if (x->handlers.on_body && !x->handlers.on_body(data, len, x->ud)) {
        x->aborted = true;
        return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

/* ---- the transfer thread ---------------------------------------------------------------- */

static void xfer_free(sipp__http_xfer *x) {
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
    free(x);
}

/* Ends a transfer: removes it from the multi handle, reports, frees. */
static void xfer_end(sipp__http *h, sipp__http_xfer *x, sipp_status st, const char *msg) {
    for (sipp__http_xfer **pp = &h->active; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    curl_multi_remove_handle(h->multi, x->easy);
    if (st == SIPP_OK) send_status(x);
    x->handlers.on_done(st, msg, x->ud);
    xfer_free(x);
}

/* True when nothing of the request left this process: curl never connected, or wrote no
 * byte of the request (CURLINFO_REQUEST_SIZE counts what was sent). */
static bool nothing_sent(sipp__http_xfer *x, CURLcode rc) {
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) return true;
    long sent = -1;
    return curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK && sent == 0;
}

static void xfer_finished(sipp__http *h, sipp__http_xfer *x, CURLcode rc) {
    char msg[SIPP_ERROR_MESSAGE_CAP + CURL_ERROR_SIZE]; /* cut to one line by sipp__fail later */
    if (rc != CURLE_OK && !x->aborted && x->handlers.on_not_sent && nothing_sent(x, rc))
        x->handlers.on_not_sent(x->ud);
    if (rc == CURLE_OK) {
        xfer_end(h, x, SIPP_OK, NULL);
    } else if (x->aborted) {
        xfer_end(h, x, SIPP_CANCELLED, "cancelled");
    } else if (x->refused[0] && rc == CURLE_COULDNT_CONNECT) { /* no address was allowed */
        xfer_end(h, x, SIPP_INVALID_ARGUMENT, x->refused);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(msg, sizeof msg, "timed out: %s", x->error[0] ? x->error : curl_easy_strerror(rc));
        xfer_end(h, x, SIPP_TIMEOUT, msg);
    } else {
        snprintf(msg, sizeof msg, "transport error: %s", x->error[0] ? x->error : curl_easy_strerror(rc));
        xfer_end(h, x, SIPP_IO_ERROR, msg);
    }
}

static void *transfer_main(void *arg) {
    sipp__http *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        bool stopping = h->stopping;
        sipp__http_xfer *in = h->incoming;
        h->incoming = NULL;
        pthread_mutex_unlock(&h->mu);
        while (in) {
            sipp__http_xfer *next = in->next;
            in->next = h->active;
            h->active = in;
            curl_multi_add_handle(h->multi, in->easy);
            in = next;
        }
        /* Aborts asked for since the last round (and everything when stopping). */
        for (sipp__http_xfer *x = h->active, *next; x; x = next) {
            next = x->next;
            if (stopping || (x->handlers.should_abort && x->handlers.should_abort(x->ud)))
                xfer_end(h, x, SIPP_CANCELLED, "cancelled");
        }
        if (stopping) break;
        int running = 0;
        curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE) continue;
            sipp__http_xfer *x = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            CURLcode rc = m->data.result;
            xfer_finished(h, x, rc);
        }
        curl_multi_poll(h->multi, NULL, 0, 1000, NULL);
    }
    return NULL;
}

/* ---- public (module) API ---------------------------------------------------------------- */

sipp_status sipp__http_new(sipp__http **out, sipp_error *err) {
    pthread_once(&curl_once, curl_init);
    sipp__http *h = calloc(1, sizeof *h);
    if (!h || !(h->multi = curl_multi_init())) {
        free(h);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    pthread_mutex_init(&h->mu, NULL);
    if (pthread_create(&h->thread, NULL, transfer_main, h) != 0) {
        curl_multi_cleanup(h->multi);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return sipp__fail(err, SIPP_INTERNAL, 0, "cannot start the HTTP transfer thread");
    }
    *out = h;
    return SIPP_OK;
}

void sipp__http_wake(sipp__http *h) { curl_multi_wakeup(h->multi); }

void sipp__http_free(sipp__http *h) {
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    pthread_mutex_unlock(&h->mu);
    curl_multi_wakeup(h->multi);
    pthread_join(h->thread, NULL);
    /* transfers started after the last round: end them too */
    for (sipp__http_xfer *x = h->incoming, *next; x; x = next) {
        next = x->next;
        x->handlers.on_done(SIPP_CANCELLED, "cancelled", x->ud);
        xfer_free(x);
    }
    curl_multi_cleanup(h->multi);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

sipp_status sipp__http_start(sipp__http *h, const sipp__http_request *req,
                             const sipp__http_handlers *handlers, void *ud, sipp_error *err) {
    sipp__http_xfer *x = calloc(1, sizeof *x);
    if (!x || !(x->easy = curl_easy_init())) {
        free(x);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    x->handlers = *handlers;
    x->ud = ud;
    CURL *e = x->easy;
    bool ok = true;
    for (size_t i = 0; i < req->n_headers && ok; i++) {
        struct curl_slist *l = curl_slist_append(x->headers, req->headers[i]);
        if (!l) ok = false;
        else x->headers = l;
    }
    if (ok && req->body) {
        x->body = malloc(req->body_len + 1);
        if (!x->body) ok = false;
        else memcpy(x->body, req->body, req->body_len);
    }
    if (!ok) {
        xfer_free(x);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->error);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    x->allow_private = req->allow_private_network;
    x->plain_http = strncasecmp(req->url, "http://", 7) == 0;
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    if (strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(x->body ? req->body_len : 0));
    }
    if (req->connect_timeout_ms)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    if (req->total_timeout_ms) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->total_timeout_ms);
    if (req->idle_timeout_ms) { /* no byte for this long: the stream is stalled */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        long s = (long)((req->idle_timeout_ms + 999) / 1000);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s > 0 ? s : 1L);
    }
    pthread_mutex_lock(&h->mu);
    if (h->stopping) {
        pthread_mutex_unlock(&h->mu);
        xfer_free(x);
        return sipp__fail(err, SIPP_CLOSED, 0, "the client is closing");
    }
    x->next = h->incoming;
    h->incoming = x;
    pthread_mutex_unlock(&h->mu);
    curl_multi_wakeup(h->multi);
    return SIPP_OK;
}
