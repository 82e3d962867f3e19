/*
 * http_server.h — a thin HTTP/1.1 server over libmicrohttpd (the only header of the server side
 * that the gateway sees; only src/http includes microhttpd.h).
 *
 * Threading: one thread per connection (see http_server.c for why). The handler runs on the
 * connection's thread once the whole request (headers and body) is read, and must answer with
 * exactly one call to sipp__httpd_respond() or sipp__httpd_stream(). A stream's pull function
 * also runs on that thread and may block, in bounded slices, while it waits for data.
 *
 * The wrapper enforces what must happen before the handler: a header deadline and a body
 * deadline counted from the connection's first byte (slowloris), an idle timeout, a header
 * size limit (431 answered here, before the handler), a body size limit, and framing rules (Content-Length with Transfer-Encoding, two
 * different Content-Lengths, a Transfer-Encoding other than chunked). A request that breaks the
 * body limit or the framing rules still reaches the handler, with sipp__httpd_rejected() set,
 * so the application answers in its own error format.
 */
#ifndef SIPP_HTTP_SERVER_H
#define SIPP_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sipp__httpd sipp__httpd;
typedef struct sipp__httpd_req sipp__httpd_req;

typedef struct sipp__httpd_header {
    const char *name;
    const char *value;
} sipp__httpd_header;

typedef void (*sipp__httpd_handler)(sipp__httpd_req *req, void *user_data);

typedef struct sipp__httpd_params {
    const char *bind;             /* "HOST:PORT" or "[V6]:PORT", a literal address */
    uint32_t header_timeout_s;    /* request line and headers within this from the first byte */
    uint32_t body_timeout_s;      /* the body within this after the headers */
    uint32_t idle_timeout_s;      /* no progress in either direction for this long: closed */
    size_t max_header_bytes;
    size_t max_body_bytes;
    uint32_t max_connections;
    uint32_t max_connections_per_ip; /* open connections from one TCP peer; 0 = no limit */
    sipp__httpd_handler handler;
    void *user_data;
} sipp__httpd_params;

/* Binds and starts serving. Returns NULL with a message in errbuf when the address cannot be
 * bound. */
sipp__httpd *sipp__httpd_start(const sipp__httpd_params *p, char *errbuf, size_t errcap);
/* Stops accepting new connections; open ones go on. */
void sipp__httpd_quiesce(sipp__httpd *s);
/* Closes everything and frees the server; waits for connection threads to return. */
void sipp__httpd_stop(sipp__httpd *s);
/* Connections open now. */
uint32_t sipp__httpd_connections(sipp__httpd *s);

/* ---- the request (valid until the answer is released) ---------------------------------- */

const char *sipp__httpd_method(const sipp__httpd_req *r);
/* The path without the query string. */
const char *sipp__httpd_path(const sipp__httpd_req *r);
/* True when the query string has a parameter of this name (with or without a value). */
bool sipp__httpd_has_query_arg(const sipp__httpd_req *r, const char *name);
/* A request header by case-insensitive name, or NULL. */
const char *sipp__httpd_header_get(const sipp__httpd_req *r, const char *name);
const char *sipp__httpd_body(const sipp__httpd_req *r, size_t *len);

/* multipart/form-data (issue 17, the transcription route): the accumulated body (within
 * max_body_bytes) fed to libmicrohttpd's post processor. `fn` gets each field's data in order,
 * in pieces (`off` = the piece's offset in the field's value; `filename` and `type` NULL when the
 * part has none); it returns false to stop. Returns 1 when the body was read whole, 0 when it is
 * malformed or `fn` stopped, -1 when the Content-Type is not multipart/form-data. */
typedef bool (*sipp__httpd_form_fn)(void *cls, const char *key, const char *filename,
                                    const char *type, uint64_t off, const char *data, size_t size);
int sipp__httpd_form_parse(sipp__httpd_req *r, sipp__httpd_form_fn fn, void *cls);
/* The TCP peer's address in text form ("127.0.0.1", "::1"). */
const char *sipp__httpd_peer(const sipp__httpd_req *r);
/* 0, 413 (body over the limit) or 400 (conflicting or unsupported framing). The message says
 * which. */
int sipp__httpd_rejected(const sipp__httpd_req *r, const char **message);
/* True when the client has closed its side of the connection (non-blocking check). */
bool sipp__httpd_peer_closed(sipp__httpd_req *r);

/* ---- answers --------------------------------------------------------------------------- */

/* A complete response; headers and body are copied. */
void sipp__httpd_respond(sipp__httpd_req *r, int status, const sipp__httpd_header *headers,
                         size_t n_headers, const char *body, size_t len);

/* Streams a chunked response. `pull` is called whenever the socket can take more: it returns
 * the bytes written to buf (> 0), 0 at the end of the stream, or -1 to abort the connection. It
 * may block, but must return within about 100 ms when sipp__httpd_peer_closed() turns true.
 * `release` is called exactly once when the response is dropped (finished, aborted, the
 * client gone or the idle timeout hit); `completed` says whether pull reached its end. */
typedef long (*sipp__httpd_pull_fn)(void *ctx, sipp__httpd_req *r, char *buf, size_t cap);
typedef void (*sipp__httpd_release_fn)(void *ctx, bool completed);
void sipp__httpd_stream(sipp__httpd_req *r, int status, const sipp__httpd_header *headers,
                        size_t n_headers, sipp__httpd_pull_fn pull,
                        sipp__httpd_release_fn release, void *ctx);

#endif
