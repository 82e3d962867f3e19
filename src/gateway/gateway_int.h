/*
 * gateway_int.h — the gateway object and what its own files share: targets and callers, the
 * per-request context that flows through the pipeline phases, and the functions each file
 * offers the others. Private to the gateway's pipeline files (gateway.c, targets.c,
 * listeners.c, request.c, phases.c, execute.c, stream.c); the modules below it (profiles,
 * metrics, admin, policy, redis_store, browser, config, logger) have headers of their own and
 * never include this one, so dependencies point one way: pipeline -> modules.
 */
#ifndef SIPP_GATEWAY_INT_H
#define SIPP_GATEWAY_INT_H

#include "../http/http_server.h"
#include "admin.h"
#include "browser.h"
#include "codes.h"
#include "config.h"
#include "gateway.h"
#include "logger.h"
#include "metrics.h"
#include "policy.h"
#include "pool.h"
#include "profiles.h"
#include "redis_store.h"
#include "residency.h"

#include <jansson.h>
#include <pthread.h>
#include <sipp.h>
#include <stdatomic.h>

/* ---- targets and callers ----------------------------------------------------------------- */

enum { GW_TARGET_LOADING, GW_TARGET_READY, GW_TARGET_FAILED };

struct gw_cfgbox;

/* A target instance (targets.c). Reference-counted: every generation that lists it holds one
 * (an unchanged target is shared by the generations on both sides of a reload, model and KV
 * cache included), and the last reference frees it: its endpoints are removed from the client
 * then, when no request can use them any more. */
typedef struct gw_target {
    const sipp__gw_target *cfg; /* points into box's config */
    atomic_uint refs;
    struct gw_cfgbox *box;      /* a reference */
    size_t slot;                /* its name's row in metrics and the dashboard */
    char ep_id[160];            /* the client endpoint id: the name, "name#k" after a reload */
    uint32_t idle_s;            /* idle_unload_seconds, under gw->res_mu (a reload sets it) */
    sipp_endpoint *ep;  /* set once ready */
    atomic_int state;
    bool can_generate, can_chat, can_embed;
    bool vision; /* the target's projector takes images (multimodal) */
    bool audio_in; /* ... and audio clips */
    uint32_t n_embd; /* embedding size when known up front (local targets), else 0 */
    /* remote targets: one endpoint per replica (eps[0] == ep) and the pool choosing among
     * them; NULL / 0 for local targets */
    sipp_endpoint **eps;
    size_t n_eps;
    sipp__gw_pool *pool;
    const char **replica_urls; /* the base URLs, "(default)" for the provider's own */
    char **replica_hosts;      /* their "host:port" (metrics and dashboard labels), owned */
    /* residency (local targets; targets.c, docs/gateway.md "Residency"), under gw->res_mu:
     * whether the model is in memory, the requests holding it, when the last one ended, its
     * estimated footprint and counters. `ep` of a local target is written and read under
     * res_mu too (an unload closes it, a load sets a new one). */
    sipp__gw_res_state res;
    unsigned res_in_use;
    double res_last_used;
    uint64_t res_footprint;
    uint64_t res_loads, res_unloads_idle, res_unloads_budget, res_refused;
} gw_target;

typedef struct gw_caller {
    const sipp__gw_token *cfg; /* points into the generation's config */
    uint8_t digest[32]; /* SHA-256 of the bearer secret */
    size_t slot;        /* its name's row in admission, the dashboard */
} gw_caller;

/* A loaded config file, shared by the generation built from it and by the targets that point
 * into it (the initial one is gw->cfg itself, not owned). */
typedef struct gw_cfgbox {
    atomic_uint refs;
    sipp__gw_config *cfg;
    bool owned;
} gw_cfgbox;

/* The routing state (docs/gateway.md "Reload"): targets and callers, immutable once published
 * and reference-counted. A request takes a reference to the current generation when it starts
 * and uses only it to its end, so a reload (which builds a complete new generation, then swaps
 * gw->gen) never changes what an open request sees. */
typedef struct gw_gen {
    atomic_uint refs;
    gw_cfgbox *box;
    gw_target **targets;
    size_t n_targets;
    gw_caller *callers;
    size_t n_callers;
} gw_gen;

/* ---- the gateway ------------------------------------------------------------------------- */

enum { GW_PUBLIC, GW_MGMT }; /* the listeners */

/* Mutable settings: the dashboard edits cfg.rate_limit_*, the current generation's callers'
 * requests_per_minute and tokens_per_minute, cfg.ip_blocklist and blocklist/n_blocklist while
 * requests read them; both sides hold set_mu (read side: copy, unlock, then act). The global
 * concurrency limit lives in admission (its own mutex). Targets and callers are in generations
 * (gw_gen); cfg's own targets and tokens are those of the first one. Everything else in cfg is
 * read-only after start, but for what a reload sets (docs/gateway.md "Reload"). */
struct sipp__gw {
    sipp__gw_config cfg;
    pthread_rwlock_t set_mu;
    sipp__gw_limits *limits; /* rate limits: in-process tables, Redis in front when configured */
    gw_admin *admin;        /* NULL: no admin_password_env or its variable is empty */
    sipp_client *client;
    /* the current generation, under gen_mu (sipp__gw_gen_get / _put) */
    pthread_mutex_t gen_mu;
    gw_gen *gen;
    /* name slots of targets and callers ever served, for metrics, admission and the dashboard
     * (stable across reloads): fixed capacity, appended under gen_mu before a generation naming
     * them is published, never rewritten */
    const char **target_names, **target_types;
    size_t n_target_slots, cap_target_slots;
    const char **caller_names;
    size_t n_caller_slots, cap_caller_slots;
    char **slot_strings; /* the names the slots point to that outlive their config, owned */
    size_t n_slot_strings;
    atomic_uint ep_seq; /* endpoint ids of targets made by a reload */
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
    /* residency: guards each target's res* fields and a local target's ep; res_cv wakes
     * requests waiting for a load and the loader thread (idle unloads, shutdown) */
    pthread_mutex_t res_mu;
    pthread_cond_t res_cv;
    /* reload (gateway.c): the config file, and the last reload's outcome for the dashboard,
     * under reload_mu (which also serialises reloads) */
    pthread_mutex_t reload_mu;
    char *config_path;
    char reload_message[768]; /* "" = no reload yet */
    bool reload_ok;
    double reload_time; /* wall clock, seconds */
};

/* Name slots a reload may add beyond those of the file at start (a reload that needs more is
 * refused; a restart starts over). */
#define SIPP__GW_RELOAD_SLOTS 256

/* ---- generations (gateway.c) ------------------------------------------------------------- */

/* A new reference to the current generation (never NULL once the gateway is built). */
gw_gen *sipp__gw_gen_get(sipp__gw *gw);
/* Drops a reference; the last one frees the generation and its references to targets. Never
 * under res_mu (freeing a target takes it). NULL is a no-op. */
void sipp__gw_gen_put(sipp__gw *gw, gw_gen *g);
/* Drops a reference to a config box; the last one frees it (and its config when owned). */
void sipp__gw_box_put(gw_cfgbox *box);

/* ---- targets (targets.c) ------------------------------------------------------------------ */

/* A new target instance (one reference) for config entry `cfg` of `box` (a reference taken),
 * registered under endpoint id `ep_id`: a provider target is registered at once (nothing is
 * sent before the first request), a load = "on_use" local one is inspected (READY, unloaded),
 * a load = "start" one is LOADING (the loader or sipp__gw_target_load loads it). NULL with a
 * message naming the target. */
gw_target *sipp__gw_target_new(sipp__gw *gw, gw_cfgbox *box, const sipp__gw_target *cfg,
                               const char *ep_id, char *errbuf, size_t errcap);
/* Loads a LOADING local target now, on this thread (a reload, before the swap): true and
 * READY, or false with the reason. */
bool sipp__gw_target_load(sipp__gw *gw, gw_target *t, char *errbuf, size_t errcap);
/* A local target's capabilities and footprint from its model's metadata, no load: READY and
 * unloaded (its first request loads it), or FAILED and false with the reason. */
bool sipp__gw_target_inspect(gw_target *t, char *errbuf, size_t errcap);
void sipp__gw_target_ref(gw_target *t);
/* Drops a reference; the last one removes its endpoints from the client and frees it. */
void sipp__gw_target_put(sipp__gw *gw, gw_target *t);
/* Starts the thread that loads the initial local targets one after the other. */
int sipp__gw_targets_start_loader(sipp__gw *gw);
/* Thread-safe read of a target's engine counters (a loaded local target). */
bool sipp__gw_target_stats(sipp__gw *gw, gw_target *t, sipp_engine_stats *out);
/* The /readyz answer: its status (200 or 503) and text. */
int sipp__gw_readiness(sipp__gw *gw, const char **text);


/* ---- listeners and browsers (listeners.c) -------------------------------------------------- */

void sipp__gw_handle_public(sipp__httpd_req *http, void *gw);
void sipp__gw_handle_mgmt(sipp__httpd_req *http, void *gw);
/* Host and Origin rules of listener `which` (docs/gateway.md "Browsers and DNS rebinding"):
 * GW_OK, GW_HOST_NOT_ALLOWED or GW_ORIGIN_NOT_ALLOWED. *listed (may be NULL) is set to the
 * allowed_origins entry the Origin matched, else NULL (no Origin, or the listener's own). */
gw_code sipp__gw_browser_check(sipp__gw *gw, int which, sipp__httpd_req *http,
                               const char **listed);
const char *sipp__gw_browser_message(gw_code c);
/* The client address: the TCP peer, or the forwarded address when the peer is a trusted proxy
 * ([security.client_ip]). */
sipp__gw_ip sipp__gw_request_ip(sipp__gw *gw, sipp__httpd_req *http);

/* ---- the request context (request.c) ------------------------------------------------------- */

typedef struct gw_req {
    sipp__gw *gw;
    sipp__httpd_req *http;
    gw_profile prof;
    gw_op op;
    double t0;
    char id[72];
    char client_ip[64];
    char origin[256]; /* the Origin when it is allowed, else "" */
    char method[16];
    char path[256]; /* copies: the HTTP request is gone when a stream is released */
    gw_gen *gen; /* the routing state this request uses to its end (a reference) */
    int caller; /* the caller's slot (gw->caller_names), -1 = anonymous (no [[tokens]]) */
    int target; /* the target's slot (gw->target_names), -1 = none resolved */
    const gw_caller *who; /* in gen, NULL = anonymous */
    gw_target *tgt;       /* in gen, NULL = none resolved */
    json_t *root;
    gw_call call;
    bool permit;
    bool counted; /* in gw->in_flight */
    int status;
    gw_code code;
    uint32_t retry_after;
    uint64_t in_tok, out_tok;
    sipp__gw_hold hold[SIPP__GW_N_SCOPES]; /* tokens reserved at admission, settled by finish */
    /* execution */
    sipp_run *run;
    double first_token, last_token;
    bool client_gone, shutdown_cut;
    bool live; /* listed among the dashboard's live requests */
    uint64_t live_tokens;
    /* streaming */
    sipp__buf out;    /* SSE bytes not yet handed to the HTTP layer, from out_off */
    size_t out_off;
    double last_write;
    bool ended; /* the terminal event is queued */
    long created;
    gw_stream_state st;
    sipp__gw_embed_writer *embed; /* an embeddings answer being sent */
    /* upstream pools: the replica of the attempt in progress (-1 = none or a local target),
     * the replicas tried (bit set), retries so far, the attempt's start, the affinity key */
    int replica;
    uint64_t tried;
    uint32_t retries;
    double attempt_t0;
    bool has_affinity;
    uint8_t affinity[32];
    /* residency: the local target's endpoint this request holds (sipp__gw_phase_resident) */
    sipp_endpoint *ep;
    bool resident;
    bool res_load, res_wait; /* a stream's deferred load / wait (sipp__gw_resident_pending) */
    char res_why[SIPP_ERROR_MESSAGE_CAP + 256]; /* why a deferred load failed */
} gw_req;

/* A new context for a request on the public listener (counted in in_flight, request id and
 * client address set), or NULL when out of memory. */
gw_req *sipp__gw_req_new(sipp__gw *gw, sipp__httpd_req *http);
/* Releases the admission permit, settles the token reservations, records metrics, the
 * dashboard's entry and the log line, and frees r. Exactly once per request. */
void sipp__gw_req_finish(gw_req *r);
const char *sipp__gw_req_caller_name(const gw_req *r);
bool sipp__gw_req_may_use(const gw_req *r, const char *target);
/* The envelope of the request's answers (profiles.h). */
gw_answer sipp__gw_req_answer(const gw_req *r);
/* Common headers: content type, request id, CORS, retry-after. Returns how many were written
 * to h (room for 8); `retry` is 16 bytes of storage for the retry-after value. */
size_t sipp__gw_req_headers(gw_req *r, sipp__httpd_header *h, const char *ctype, char *retry);
/* Answers `body` (taken) with `status`. */
void sipp__gw_req_respond(gw_req *r, int status, json_t *body);
/* Answers with an error in the envelope of the request's profile. Returns false, so phases can
 * `return sipp__gw_req_fail(...)`. */
bool sipp__gw_req_fail(gw_req *r, gw_code code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The per-IP limits' key of the request: the address, or its /64 for IPv6. */
void sipp__gw_req_ip_key(const gw_req *r, char *buf, size_t cap);
/* The token budgets (per minute) that apply to this request now; 0 = none. */
void sipp__gw_req_token_rates(gw_req *r, uint32_t *ip_tpm, uint32_t *caller_tpm);
/* Tokens a request may spend, reserved before it runs. */
uint64_t sipp__gw_req_token_estimate(const gw_call *c);

/* ---- phases (phases.c) ------------------------------------------------------------------------ */

typedef struct gw_route {
    gw_profile prof;
    gw_op op;
    const char *method;
} gw_route;

bool sipp__gw_match_route(sipp__gw *gw, const char *path, gw_route *out);
/* Each phase passes (true) or has answered with an error (false). */
bool sipp__gw_phase_blocklist(gw_req *r, const sipp__gw_ip *ip);
bool sipp__gw_phase_rate_limit_ip(gw_req *r);
bool sipp__gw_phase_auth(gw_req *r);
bool sipp__gw_phase_decode(gw_req *r);
/* transcribe.c (issue 17): the decode phase of the transcription route's multipart body, and
 * its answer ({"text": ...} or, with response_format text, the text itself). */
bool sipp__gw_transcribe_decode(gw_req *r);
void sipp__gw_transcribe_answer(gw_req *r, const char *text, size_t len);
bool sipp__gw_phase_authorize(gw_req *r);
bool sipp__gw_phase_resolve(gw_req *r);
bool sipp__gw_phase_validate(gw_req *r);
bool sipp__gw_phase_admission(gw_req *r);
/* (targets.c) */
/* Residency: a request for a local target holds its model in memory from here to finish,
 * waiting for a load when it is not (loading it first, unloading idle ones least recently used
 * first when the memory budget asks). False: answered 503 (the budget cannot be met) or 500
 * (the load failed). Sets r->ep and r->resident. */
bool sipp__gw_phase_resident(gw_req *r);
/* A stream's deferred residency (r->call.stream): sipp__gw_phase_resident answers 503 at once
 * when the budget cannot be met, but leaves the load, or the wait for another request's load,
 * to the stream, which sends a `: loading` comment first (stream.c). Pending: that is still to
 * do. Complete (blocking, the stream's thread): GW_OK with the model held, else the code of the
 * stream's error event with its message in why. */
bool sipp__gw_resident_pending(const gw_req *r);
gw_code sipp__gw_resident_complete(gw_req *r, char *why, size_t cap);
/* Lets go of what sipp__gw_phase_resident took (finish). */
void sipp__gw_resident_release(gw_req *r);
/* "loaded", "loading" or "unloaded" for a local target, NULL for a remote one. */
const char *sipp__gw_target_residency(sipp__gw *gw, const gw_target *t);
/* The residency rows of the dashboard (a JSON array, new reference). */
json_t *sipp__gw_residency_json(sipp__gw *gw);
/* Wakes the loader thread (shutdown). */
void sipp__gw_residency_wake(sipp__gw *gw);
/* The cap on one embeddings request (max_embedding_floats); answers 400 when over it. */
bool sipp__gw_embed_fits(gw_req *r, uint32_t dim);

/* ---- execution (execute.c, stream.c) ---------------------------------------------------------- */

/* Submits the request's text run (r->run) on its target, on a replica of its pool. */
sipp_status sipp__gw_submit_text(gw_req *r, sipp_error *err);
/* Upstream pools: the endpoint of the next attempt (a replica the request has not tried,
 * counted outstanding; r->replica set), or the target's endpoint for a local target. NULL when
 * every replica was tried. */
sipp_endpoint *sipp__gw_attempt_begin(gw_req *r);
/* Ends the attempt of r->run on its replica: reports the outcome to the pool. When the run
 * failed without anything reaching the upstream or the caller (the request was never sent, or
 * a 503 came before any body), no token was streamed, and another replica is left within
 * max_retries, submits the request again there: true, r->run is the new run (the old one is
 * freed). False: r->run is unchanged and its response stands. */
bool sipp__gw_attempt_end(gw_req *r, const sipp_response *resp);
/* Pulls what the run produced within ~20 ms (TTFT and inter-token gaps recorded). */
sipp_status sipp__gw_pull_batch(gw_req *r, sipp_token_batch *b);
/* Issue 18: whether a stream reads its run as deltas (content, reasoning, tool calls) rather
 * than text: a chat with tools, or an OpenAI-profile chat on a local target (reasoning_content),
 * when the profile streams deltas and no logprobs were asked for. */
bool sipp__gw_delta_mode(const gw_req *r);
/* sipp__gw_pull_batch for a delta stream: the next delta within ~20 ms. */
sipp_status sipp__gw_pull_delta(gw_req *r, sipp_delta *d, bool *done);
/* Adds a finished run's usage to the request and records its queue wait. */
void sipp__gw_account(gw_req *r, const sipp_response *resp);
void sipp__gw_execute_text(gw_req *r);
/* True when the answer streams (finish runs at its release). */
bool sipp__gw_execute_embed(gw_req *r);
void sipp__gw_answer_models(gw_req *r);
/* Starts an SSE stream; finish runs at its release (also when it fails here). */
void sipp__gw_execute_stream(gw_req *r);

#endif
