/*
 * http_server.c — the HTTP server wrapper over libmicrohttpd (http_server.h).
 *
 * Threading model, chosen deliberately: MHD_USE_THREAD_PER_CONNECTION with MHD's internal
 * polling thread for accepting. A gateway request spends almost all of its life waiting on a
 * run (an engine sequence or a provider transfer), and libsipp's run channel is consumed by
 * blocking waits (sipp_run_next with a timeout). One thread per connection lets the handler and
 * a stream's pull function wait on the run in short slices and, between slices, check the
 * client socket for a hang-up, the heartbeat deadline and shutdown, so a disconnect cancels
 * the run within one slice (20 ms) even while no byte is being written. The alternative,
 * one polling thread with suspend/resume, would need a second thread per run anyway to turn
 * run progress into resume calls. Connections are capped (max_connections) so the thread
 * count is bounded; producers never wait on a connection thread (the run buffers text and
 * pauses its sequence when the buffer is full), so a slow reader costs only its own thread
 * until the idle timeout closes it and the stream's release cancels its run.
 *
 * Slowloris: MHD's own timeout is an idle timeout (reset by every byte). A watchdog thread adds
 * absolute deadlines: headers within header_timeout_s of the request's start, the body within
 * body_timeout_s after the headers. It shuts the socket down (MHD then closes the connection);
 * a connection is unregistered in MHD's CLOSED notification, before MHD closes its fd, so the
 * watchdog never touches a descriptor that was reused.
 */
#define _GNU_SOURCE
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { PHASE_HEADERS, PHASE_BODY, PHASE_ACTIVE, PHASE_KILLED };

typedef struct conn_rec {
    struct conn_rec *prev, *next;
    int fd;
    int phase;
    double phase_start;
} conn_rec;

struct sipp__httpd {
    struct MHD_Daemon *d;
    sipp__httpd_params p;
    pthread_mutex_t mu;
    conn_rec head; /* circular list of open connections */
    pthread_t watchdog;
    bool watchdog_running;
    bool stopping; /* under mu */
    pthread_cond_t cv;
    atomic_uint n_conns;
};

struct sipp__httpd_req {
    sipp__httpd *s;
    struct MHD_Connection *c;
    conn_rec *cr;
    char *method, *path;
    char *body;
    size_t len, cap;
    int reject;
    const char *reject_msg;
    bool answered;
    char peer[64];
};

typedef struct stream {
    sipp__httpd_req *req;
    sipp__httpd_pull_fn pull;
    sipp__httpd_release_fn release;
    void *ctx;
    bool ended;
} stream;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static conn_rec *conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? (conn_rec *)ci->socket_context : NULL;
}

static void set_phase(sipp__httpd *s, conn_rec *cr, int phase) {
    if (!cr) return;
    pthread_mutex_lock(&s->mu);
    if (cr->phase != PHASE_KILLED) {
        cr->phase = phase;
        cr->phase_start = now_s();
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- connection bookkeeping and the deadline watchdog ------------------------------------ */

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    sipp__httpd *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_rec *cr = calloc(1, sizeof *cr);
        *socket_context = cr;
        if (!cr) return;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        cr->fd = ci ? ci->connect_fd : -1;
        cr->phase = PHASE_HEADERS;
        cr->phase_start = now_s();
        pthread_mutex_lock(&s->mu);
        cr->next = s->head.next;
        cr->prev = &s->head;
        s->head.next->prev = cr;
        s->head.next = cr;
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_add(&s->n_conns, 1);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_rec *cr = *socket_context;
        *socket_context = NULL;
        if (!cr) return;
        pthread_mutex_lock(&s->mu);
        cr->prev->next = cr->next;
        cr->next->prev = cr->prev;
        pthread_mutex_unlock(&s->mu);
        free(cr);
        atomic_fetch_sub(&s->n_conns, 1);
    }
}

static void *watchdog_main(void *arg) {
    sipp__httpd *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        double t = now_s();
        for (conn_rec *cr = s->head.next; cr != &s->head; cr = cr->next) {
            double limit = cr->phase == PHASE_HEADERS ? s->p.header_timeout_s
                           : cr->phase == PHASE_BODY  ? s->p.body_timeout_s
                                                      : 0;
            if (limit > 0 && t - cr->phase_start > limit && cr->fd >= 0) {
                shutdown(cr->fd, SHUT_RDWR);
                cr->phase = PHASE_KILLED;
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- requests ------------------------------------------------------------------------------ */

typedef struct framing {
    int n_cl, n_te;
    const char *cl, *te;
    bool cl_differ;
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value) {
    (void)kind;
    framing *f = cls;
    if (strcasecmp(key, "content-length") == 0) {
        if (f->cl && strcmp(f->cl, value ? value : "") != 0) f->cl_differ = true;
        f->cl = value ? value : "";
        f->n_cl++;
    } else if (strcasecmp(key, "transfer-encoding") == 0) {
        f->te = value ? value : "";
        f->n_te++;
    }
    return MHD_YES;
}

static void check_framing(sipp__httpd_req *r) {
    framing f = {0};
    MHD_get_connection_values(r->c, MHD_HEADER_KIND, count_framing, &f);
    if (f.n_cl && f.n_te) {
        r->reject = 400;
        r->reject_msg = "the request has both Content-Length and Transfer-Encoding";
    } else if (f.cl_differ) {
        r->reject = 400;
        r->reject_msg = "the request has conflicting Content-Length headers";
    } else if (f.n_te > 1 || (f.n_te && strcasecmp(f.te, "chunked") != 0)) {
        r->reject = 400;
        r->reject_msg = "the only Transfer-Encoding accepted is chunked";
    } else if (f.n_cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(f.cl, &end, 10);
        if (errno || *end || !*f.cl || f.cl[0] == '-' || f.cl[0] == '+') {
            r->reject = 400;
            r->reject_msg = "the Content-Length header is not a number";
        } else if (n > r->s->p.max_body_bytes) {
            r->reject = 413;
            r->reject_msg = "the request body is larger than max_request_bytes";
        }
    }
}

static enum MHD_Result add_header_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value) {
    (void)kind;
    size_t *n = cls;
    *n += (key ? strlen(key) : 0) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

/* The request line and headers, in bytes as sent (near enough: folded whitespace aside). MHD's
 * own limit is its connection memory pool, which is larger than max_header_bytes. */
static size_t header_bytes(sipp__httpd_req *r, const char *url) {
    size_t n = strlen(r->method) + strlen(url) + 12;
    MHD_get_connection_values(r->c, MHD_HEADER_KIND, add_header_bytes, &n);
    return n;
}

static void dispatch(sipp__httpd_req *r) {
    set_phase(r->s, r->cr, PHASE_ACTIVE);
    r->s->p.handler(r, r->s->p.user_data);
    if (!r->answered) {
        static const char body[] = "{\"error\":{\"code\":\"internal\",\"message\":\"no answer\"}}";
        sipp__httpd_header h = {"content-type", "application/json"};
        sipp__httpd_respond(r, 500, &h, 1, body, sizeof body - 1);
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
    (void)version;
    sipp__httpd *s = cls;
    sipp__httpd_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->s = s;
        r->c = c;
        r->cr = conn_of(c);
        r->method = strdup(method ? method : "");
        r->path = strdup(url ? url : "/");
        if (!r->method || !r->path) return MHD_NO;
        char *q = strchr(r->path, '?');
        if (q) *q = '\0';
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        strcpy(r->peer, "0.0.0.0");
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->peer,
                          sizeof r->peer);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->peer,
                          sizeof r->peer);
        }
        set_phase(s, r->cr, PHASE_BODY);
        if (s->p.max_header_bytes && header_bytes(r, url ? url : "/") > s->p.max_header_bytes) {
            /* Refused here, before the handler: nothing of the request is trusted yet. */
            static const char body[] = "{\"error\":{\"code\":\"header_too_large\",\"message\":"
                                       "\"the request headers are larger than max_header_bytes\"}}";
            sipp__httpd_header h = {"content-type", "application/json"};
            r->reject = 431;
            r->reject_msg = "the request headers are larger than max_header_bytes";
            sipp__httpd_respond(r, 431, &h, 1, body, sizeof body - 1);
            return MHD_YES;
        }
        check_framing(r);
        /* Answer at once, without reading the body: MHD then closes the connection. */
        if (r->reject) dispatch(r);
        return MHD_YES;
    }
    if (r->answered) {
        *upload_size = 0; /* a body after an early answer is dropped unread */
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->reject) return MHD_YES; /* discarding an over-long chunked body */
        if (n > s->p.max_body_bytes - r->len) {
            r->reject = 413;
            r->reject_msg = "the request body is larger than max_request_bytes";
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1) cap *= 2;
            if (cap > s->p.max_body_bytes + 1) cap = s->p.max_body_bytes + 1;
            char *b = realloc(r->body, cap);
            if (!b) return MHD_NO;
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    dispatch(r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)toe;
    sipp__httpd *s = cls;
    sipp__httpd_req *r = *con_cls;
    *con_cls = NULL;
    set_phase(s, conn_of(c), PHASE_HEADERS); /* keep-alive: the next request's clock starts */
    if (!r) return;
    free(r->method);
    free(r->path);
    free(r->body);
    free(r);
}

/* ---- accessors ------------------------------------------------------------------------------ */

const char *sipp__httpd_method(const sipp__httpd_req *r) { return r->method; }
const char *sipp__httpd_path(const sipp__httpd_req *r) { return r->path; }
const char *sipp__httpd_header_get(const sipp__httpd_req *r, const char *name) {
    return MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, name);
}
static enum MHD_Result find_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value) {
    (void)kind;
    (void)value;
    const char **want = cls;
    if (*want && key && strcasecmp(key, *want) == 0) {
        *want = NULL; /* found */
        return MHD_NO;
    }
    return MHD_YES;
}

bool sipp__httpd_has_query_arg(const sipp__httpd_req *r, const char *name) {
    const char *want = name;
    MHD_get_connection_values(r->c, MHD_GET_ARGUMENT_KIND, find_arg, &want);
    return want == NULL;
}

const char *sipp__httpd_body(const sipp__httpd_req *r, size_t *len) {
    *len = r->len;
    return r->body ? r->body : "";
}
const char *sipp__httpd_peer(const sipp__httpd_req *r) { return r->peer; }

typedef struct form_ctx {
    sipp__httpd_form_fn fn;
    void *cls;
    bool stopped;
} form_ctx;

static enum MHD_Result on_form(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size) {
    (void)kind;
    (void)transfer_encoding;
    form_ctx *f = cls;
    if (!f->fn(f->cls, key ? key : "", filename, content_type, off, data ? data : "", size)) {
        f->stopped = true;
        return MHD_NO;
    }
    return MHD_YES;
}

int sipp__httpd_form_parse(sipp__httpd_req *r, sipp__httpd_form_fn fn, void *cls) {
    const char *ct = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "content-type");
    static const char mp[] = "multipart/form-data";
    if (!ct || strncasecmp(ct, mp, sizeof mp - 1) != 0 ||
        (ct[sizeof mp - 1] != '\0' && ct[sizeof mp - 1] != ';' && ct[sizeof mp - 1] != ' '))
        return -1;
    form_ctx f = {fn, cls, false};
    /* The body is already whole in r->body (the handler runs after the upload): the post
     * processor is fed it in one call on this same connection, which it reads the boundary of. */
    struct MHD_PostProcessor *pp = MHD_create_post_processor(r->c, 64 * 1024, on_form, &f);
    if (!pp) return 0; /* multipart without a boundary */
    enum MHD_Result ok = r->len ? MHD_post_process(pp, r->body, r->len) : MHD_YES;
    /* MHD_NO from destroy: the body ended inside a part (truncated, or no closing boundary) */
    enum MHD_Result done = MHD_destroy_post_processor(pp);
    return ok == MHD_YES && done == MHD_YES && !f.stopped ? 1 : 0;
}
int sipp__httpd_rejected(const sipp__httpd_req *r, const char **message) {
    if (message) *message = r->reject_msg;
    return r->reject;
}

bool sipp__httpd_peer_closed(sipp__httpd_req *r) {
    int fd = r->cr ? r->cr->fd : -1;
    if (fd < 0) return false;
    struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pfd, 1, 0) <= 0) return false;
    if (pfd.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return true;
    if (pfd.revents & POLLIN) {
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    return false;
}

/* ---- answers -------------------------------------------------------------------------------- */

static void add_headers(struct MHD_Response *resp, const sipp__httpd_header *h, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (h[i].name && h[i].value) MHD_add_response_header(resp, h[i].name, h[i].value);
}

void sipp__httpd_respond(sipp__httpd_req *r, int status, const sipp__httpd_header *headers,
                         size_t n_headers, const char *body, size_t len) {
    if (r->answered) return;
    r->answered = true;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (!resp) return;
    add_headers(resp, headers, n_headers);
    if (r->reject) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    MHD_queue_response(r->c, (unsigned)status, resp);
    MHD_destroy_response(resp);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *st = cls;
    if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    long n = st->pull(st->ctx, st->req, buf, max);
    if (n > 0) return (ssize_t)n;
    if (n == 0) {
        st->ended = true;
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls) {
    stream *st = cls;
    st->release(st->ctx, st->ended);
    free(st);
}

void sipp__httpd_stream(sipp__httpd_req *r, int status, const sipp__httpd_header *headers,
                        size_t n_headers, sipp__httpd_pull_fn pull,
                        sipp__httpd_release_fn release, void *ctx) {
    if (r->answered) {
        release(ctx, false);
        return;
    }
    r->answered = true;
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        release(ctx, false);
        return;
    }
    /* A bounded kernel buffer per stream: a reader that stops reading stalls the writes soon,
     * so the idle timeout can cut it (the run's own buffer bounds the rest). */
    if (r->cr && r->cr->fd >= 0) {
        int sndbuf = 64 * 1024;
        setsockopt(r->cr->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }
    st->req = r;
    st->pull = pull;
    st->release = release;
    st->ctx = ctx;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return;
    }
    add_headers(resp, headers, n_headers);
    MHD_queue_response(r->c, (unsigned)status, resp);
    MHD_destroy_response(resp); /* the connection holds it until the stream ends */
}

/* ---- server lifecycle ---------------------------------------------------------------------- */

static bool parse_bind(const char *bind, struct sockaddr_storage *ss) {
    memset(ss, 0, sizeof *ss);
    const char *colon = strrchr(bind, ':');
    if (!colon) return false;
    char host[64];
    size_t hl = (size_t)(colon - bind);
    const char *h = bind;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof host) return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    int port = atoi(colon + 1);
    if (port < 0 || port > 65535) return false;
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return true;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return true;
    }
    return false;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    (void)fmt;
    (void)ap; /* MHD's own messages would bypass the JSON log; the gateway logs each request */
}

sipp__httpd *sipp__httpd_start(const sipp__httpd_params *p, char *errbuf, size_t errcap) {
    struct sockaddr_storage ss;
    if (!parse_bind(p->bind, &ss)) {
        snprintf(errbuf, errcap, "'%s' is not HOST:PORT", p->bind);
        return NULL;
    }
    sipp__httpd *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(errbuf, errcap, "out of memory");
        return NULL;
    }
    s->p = *p;
    s->head.next = s->head.prev = &s->head;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    size_t mem = p->max_header_bytes + 8192;
    if (mem < 32768) mem = 32768;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->idle_timeout_s,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)p->max_connections_per_ip,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_END);
    if (!s->d) {
        snprintf(errbuf, errcap, "cannot listen on %s (address in use or not available)", p->bind);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return NULL;
    }
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) == 0) s->watchdog_running = true;
    return s;
}

void sipp__httpd_quiesce(sipp__httpd *s) {
    if (!s || !s->d) return;
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

uint32_t sipp__httpd_connections(sipp__httpd *s) { return atomic_load(&s->n_conns); }

void sipp__httpd_stop(sipp__httpd *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->watchdog_running) pthread_join(s->watchdog, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
