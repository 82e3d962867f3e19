/*
 * gateway_int.h — shared pieces of the gateway's files: the gateway object, the per-request
 * context that flows through the pipeline phases, the profile codecs (profiles.c) and the
 * metrics registry (metrics.c).
 */
#ifndef SIPP_GATEWAY_INT_H
#define SIPP_GATEWAY_INT_H

#include "../http/http_server.h"
#include "browser.h"
#include "config.h"
#include "gateway.h"
#include "policy.h"
#include "redis_store.h"

#include <jansson.h>
#include <pthread.h>
#include <sipp.h>
#include <stdatomic.h>

/* ---- operations and profiles ------------------------------------------------------------- */

typedef enum gw_op { GW_OP_QUERY, GW_OP_CHAT, GW_OP_EMBED, GW_OP_MODELS, GW_N_OPS } gw_op;
typedef enum gw_profile { GW_PROFILE_SIPP, GW_PROFILE_OPENAI } gw_profile;

const char *sipp__gw_op_name(gw_op op);

/* The error codes of the protocol's table (plus `not_found`, `method_not_allowed`,
 * `payload_too_large`, `unavailable`, `internal` and the browser refusals `host_not_allowed`,
 * `origin_not_allowed` and `unsupported_media_type`). */
typedef enum gw_code {
    GW_OK,
    GW_BLOCKED,
    GW_RATE_LIMITED,
    GW_AUTHENTICATION,
    GW_INVALID_JSON,
    GW_AUTHORIZATION,
    GW_RESOLUTION,
    GW_ADMISSION,
    GW_INVALID_REQUEST,
    GW_EXECUTION,
    GW_CANCELLED,
    GW_PAYLOAD_TOO_LARGE,
    GW_METHOD_NOT_ALLOWED,
    GW_NOT_FOUND,
    GW_UNAVAILABLE,
    GW_HOST_NOT_ALLOWED,
    GW_ORIGIN_NOT_ALLOWED,
    GW_UNSUPPORTED_MEDIA_TYPE,
    GW_N_CODES
} gw_code;

const char *sipp__gw_code_name(gw_code c);
int sipp__gw_code_status(gw_code c);

/* ---- targets and callers ----------------------------------------------------------------- */

enum { GW_TARGET_LOADING, GW_TARGET_READY, GW_TARGET_FAILED };

typedef struct gw_target {
    const sipp__gw_target *cfg;
    sipp_endpoint *ep;  /* set once ready */
    atomic_int state;
    bool can_generate, can_chat, can_embed;
    uint32_t n_embd; /* embedding size when known up front (local targets), else 0 */
} gw_target;

typedef struct gw_caller {
    const sipp__gw_token *cfg;
    uint8_t digest[32]; /* SHA-256 of the bearer secret */
} gw_caller;

/* ---- the decoded request: one shape for both profiles ------------------------------------ */

typedef struct gw_call {
    gw_op op;
    const char *model;
    const char *prompt;
    sipp_message *messages;
    size_t n_messages;
    const char **inputs; /* embed: one or more texts */
    size_t n_inputs;
    bool input_is_array;
    bool has_max_tokens, has_temperature, has_top_p;
    json_int_t max_tokens;
    double temperature, top_p;
    const char *stop[SIPP_MAX_STOP_STRINGS];
    size_t n_stop;
    bool stream;
    bool include_usage;
    bool base64; /* embeddings: encoding_format base64 */
    /* a validation failure found while decoding, reported in the validate phase (after
     * authorize and resolve, so it reveals nothing to a caller who may not use the target) */
    char invalid[200];
    char invalid_param[64];
} gw_call;

/* Decodes a body of the given profile and operation. Returns false with a message (and the
 * offending parameter when there is one) for 400 invalid_json. Strings in `call` point into
 * `root`. */
bool sipp__gw_decode(gw_profile prof, gw_op op, json_t *root, gw_call *call, char *msg,
                     size_t cap, char *param, size_t pcap);
/* Depth of nested arrays/objects in JSON text, stopping early past `limit`. */
unsigned sipp__gw_json_depth(const char *s, size_t len, unsigned limit);
/* Everything the gateway does with a request body before the pipeline goes on: the depth cap
 * (on the raw text, before jansson builds anything), the parse (duplicate keys refused) and
 * sipp__gw_decode. On success *root holds the document `call` points into (the caller
 * decrefs it, and frees call->messages and call->inputs, also after a failure). */
bool sipp__gw_decode_body(gw_profile prof, gw_op op, const char *body, size_t len,
                          unsigned max_depth, json_t **root, gw_call *call, char *msg, size_t cap,
                          char *param, size_t pcap);

/* The embeddings answer of a profile, written incrementally (profiles.c): the envelope, then
 * each vector as JSON numbers ("%.9g": each float reads back exactly) or as base64 of its
 * little-endian float32 bytes, without a JSON tree or a copy of the whole text. */
typedef struct sipp__gw_embed_writer sipp__gw_embed_writer;
/* Takes ownership of `v` (n_vec x dim floats, malloc'd; freed also when this fails). Returns
 * NULL when out of memory. */
sipp__gw_embed_writer *sipp__gw_embed_writer_new(gw_profile prof, bool base64, const char *id,
                                                 const char *model, uint64_t in_tok,
                                                 uint64_t out_tok, float *v, size_t n_vec,
                                                 uint32_t dim);
/* Writes up to `cap` next bytes of the answer to buf; returns how many (0: the end). */
size_t sipp__gw_embed_writer_read(sipp__gw_embed_writer *w, char *buf, size_t cap);
void sipp__gw_embed_writer_free(sipp__gw_embed_writer *w);
/* True when no value is NaN or infinite (JSON has no such numbers). */
bool sipp__gw_embed_finite(const float *v, size_t n);

/* ---- metrics ------------------------------------------------------------------------------ */

typedef struct gw_metrics gw_metrics;
gw_metrics *sipp__gw_metrics_new(size_t n_targets);
void sipp__gw_metrics_free(gw_metrics *m);
/* target: index or -1 (none resolved). */
void sipp__gw_metrics_request(gw_metrics *m, gw_op op, int target, int status, gw_code code,
                              uint64_t in_tokens, uint64_t out_tokens);
void sipp__gw_metrics_observe_ttft(gw_metrics *m, int target, double seconds);
void sipp__gw_metrics_observe_itl(gw_metrics *m, int target, double seconds);
void sipp__gw_metrics_observe_e2e(gw_metrics *m, int target, double seconds);
void sipp__gw_metrics_observe_queue(gw_metrics *m, int target, double seconds);
/* Appends the Prometheus text of everything to `out` (jansson-free, a growable string). */
char *sipp__gw_metrics_render(gw_metrics *m, sipp__gw *gw);

/* ---- the gateway ------------------------------------------------------------------------- */

typedef struct gw_admin gw_admin; /* admin.c */

/* Mutable settings: the dashboard edits cfg.rate_limit_*, cfg.tokens[i].requests_per_minute
 * and .tokens_per_minute, cfg.ip_blocklist and blocklist/n_blocklist while requests read them;
 * both sides hold set_mu (read side: copy, unlock, then act). The global concurrency limit lives
 * in admission (its own mutex). Everything else in cfg is read-only after start. */
struct sipp__gw {
    sipp__gw_config cfg;
    pthread_rwlock_t set_mu;
    sipp__gw_limits *limits; /* rate limits: in-process tables, Redis in front when configured */
    gw_admin *admin;        /* NULL: no admin_password_env or its variable is empty */
    sipp_client *client;
    gw_target *targets;
    size_t n_targets;
    gw_caller *callers;
    size_t n_callers;
    sipp__gw_cidr *trusted, *blocklist;
    size_t n_trusted, n_blocklist;
    sipp__gw_admission admission;
    gw_metrics *metrics;
    sipp__httpd *public_srv, *mgmt_srv;
    sipp__gw_hosts hosts[2]; /* the Host rule per listener (GW_PUBLIC, GW_MGMT) */
    pthread_t loader;
    bool loader_started;
    atomic_bool shutting_down;
    atomic_uint in_flight; /* requests inside the pipeline or streaming */
};

double sipp__gw_now(void);

/* ---- requests from browsers (gateway.c; docs/gateway.md "Browsers and DNS rebinding") ----- */

enum { GW_PUBLIC, GW_MGMT };

/* Host and Origin rules of listener `which`: GW_OK, GW_HOST_NOT_ALLOWED or
 * GW_ORIGIN_NOT_ALLOWED. *listed (may be NULL) is set to the allowed_origins entry the Origin
 * matched, else NULL (no Origin, or the listener's own origin). */
gw_code sipp__gw_browser_check(sipp__gw *gw, int which, sipp__httpd_req *http,
                               const char **listed);
const char *sipp__gw_browser_message(gw_code c);
/* The client address: the TCP peer, or the forwarded address when the peer is a trusted proxy
 * ([security.client_ip]). */
sipp__gw_ip sipp__gw_request_ip(sipp__gw *gw, sipp__httpd_req *http);

/* ---- the admin dashboard (admin.c) ------------------------------------------------------- */

/* One finished request as the dashboard lists it. */
typedef struct gw_done {
    double t_end;           /* realtime seconds */
    char id[72];
    int caller, target;     /* -1 = anonymous / none */
    gw_op op;
    int status;
    gw_code code;
    double latency_ms, ttft_ms; /* ttft_ms < 0: none */
    uint64_t in_tok, out_tok;
    bool stream;
} gw_done;

/* Reads the password from admin_password_env; NULL (dashboard off) when unset or empty. */
gw_admin *sipp__gw_admin_new(sipp__gw *gw);
void sipp__gw_admin_free(gw_admin *a);
/* A request entered (live) / left (recent); `key` is any unique pointer. */
void sipp__gw_admin_live_add(gw_admin *a, const void *key, const char *id, int caller);
void sipp__gw_admin_live_update(gw_admin *a, const void *key, int target, gw_op op, bool stream,
                                uint64_t out_tokens);
void sipp__gw_admin_done(gw_admin *a, const void *key, const gw_done *d);
/* Serves everything under the admin route on the management listener. */
void sipp__gw_admin_handle(sipp__gw *gw, sipp__httpd_req *http);
/* Thread-safe read of a target's engine counters for /metrics. */
bool sipp__gw_target_stats(sipp__gw *gw, size_t i, sipp_engine_stats *out);

#endif
