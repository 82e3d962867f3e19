/*
 * remote.c — the core shared by every remote endpoint (providers and Sipp gateways).
 *
 * An endpoint holds its base URL, the header lines of every request (credentials included),
 * timeouts and the list of its live runs. Each request is one sipp__remote_run owned by the HTTP
 * transfer thread from start to on_done: it feeds the run channel as SSE events arrive (through
 * the endpoint's dialect) and finishes the run exactly once. Removing the endpoint cancels its
 * live runs and waits for their end, so no callback ever sees a freed endpoint.
 *
 * Request bodies: the dialect builds the typed part; extra_json is merged on top and may not
 * set a typed field. Local-engine options are rejected before anything is sent.
 */
#define _GNU_SOURCE
#include "providers_int.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_CONNECT_MS 10000u
#define DEFAULT_IDLE_MS 60000u
#define EMBED_BODY_MAX (64u << 20)
#define TEXT_BODY_MAX (64u << 20) /* a text answer that comes whole */
#define MAX_STATIC_HEADERS 32
#define ANTHROPIC_DEFAULT_VERSION "2023-06-01"

/* ============================================================================================
 * Error classification (shared by the dialects)
 * ========================================================================================== */

static bool has(const char *s, const char *needle) { return s && strstr(s, needle); }

sipp_status sipp__provider_classify(long http_status, const char *code, const char *type) {
    if (has(code, "insufficient_quota") || has(type, "insufficient_quota") ||
        has(code, "billing") || has(type, "billing"))
        return SIPP_QUOTA_EXCEEDED;
    switch (http_status) {
    case 400: case 413: case 422: return SIPP_INVALID_ARGUMENT;
    case 401: return SIPP_AUTHENTICATION;
    case 402: return SIPP_QUOTA_EXCEEDED;
    case 403: return SIPP_AUTHORIZATION;
    case 404: return SIPP_MODEL_NOT_FOUND;
    case 408: case 504: return SIPP_UPSTREAM_TIMEOUT;
    case 429: return SIPP_RATE_LIMITED;
    case 503: case 529: return SIPP_OVERLOADED;
    default: return http_status >= 500 ? SIPP_UPSTREAM_ERROR : SIPP_INVALID_ARGUMENT;
    }
}

/* ============================================================================================
 * Endpoints
 * ========================================================================================== */

static void wipe_free(char *s) {
    if (!s) return;
    volatile char *v = s; /* secrets should not linger in freed memory */
    for (size_t i = 0; v[i]; i++) v[i] = 0;
    free(s);
}

void sipp__remote_free(sipp__remote *rm) {
    if (!rm) return;
    /* Cancel every live run, then wait until the transfer thread has ended each. A run leaves
     * the list (under mu) before it is finished, so each one here is still alive. */
    pthread_mutex_lock(&rm->mu);
    for (sipp__remote_run *rr = rm->live; rr; rr = rr->next) sipp_run_cancel(rr->run);
    while (rm->live) pthread_cond_wait(&rm->cv, &rm->mu);
    pthread_mutex_unlock(&rm->mu);
    for (size_t i = 0; i < rm->n_headers; i++) wipe_free(rm->headers[i]);
    free(rm->headers);
    free(rm->model);
    free(rm->base_url);
    free(rm->version);
    pthread_mutex_destroy(&rm->mu);
    pthread_cond_destroy(&rm->cv);
    free(rm);
}

static sipp_status oom(sipp_error *err) { return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory"); }

/* Appends one header line (formatted) to the endpoint. */
static sipp_status add_header(sipp__remote *rm, sipp_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sipp_status add_header(sipp__remote *rm, sipp_error *err, const char *fmt, ...) {
    char **grown = realloc(rm->headers, (rm->n_headers + 1) * sizeof *grown);
    if (!grown) return oom(err);
    rm->headers = grown;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&rm->headers[rm->n_headers], fmt, ap);
    va_end(ap);
    if (n < 0) return oom(err);
    rm->n_headers++;
    return SIPP_OK;
}

static bool is_token_char(unsigned char c) {
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A header value must not break the header block: no CR, LF or NUL-like controls. */
static bool header_value_ok(const char *v) {
    for (const unsigned char *u = (const unsigned char *)v; *u; u++)
        if ((*u < 0x20 && *u != '\t') || *u == 0x7f) return false;
    return true;
}

/* Checks "Name: value" static headers and adds them; `reserved` names (NULL-terminated) are the
 * adapter's own. Messages name the header, never its value. */
static sipp_status add_static_headers(sipp__remote *rm, const char *const *headers, size_t n,
                                      const char *const *reserved, sipp_error *err) {
    if (n && !headers) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_headers is %zu but headers is NULL", n);
    if (n > MAX_STATIC_HEADERS)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "at most %d static headers (got %zu)",
                          MAX_STATIC_HEADERS, n);
    for (size_t i = 0; i < n; i++) {
        const char *h = headers[i];
        const char *colon = h ? strchr(h, ':') : NULL;
        size_t name_len = colon ? (size_t)(colon - h) : 0;
        bool name_ok = name_len > 0;
        for (size_t k = 0; k < name_len && name_ok; k++) name_ok = is_token_char((unsigned char)h[k]);
        if (!name_ok)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "static header %zu is not a \"Name: value\" line", i);
        const char *value = colon + 1;
        while (*value == ' ' || *value == '\t') value++;
        if (!header_value_ok(value))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "static header %.*s has a control character in its value",
                              (int)name_len, h);
        for (const char *const *r = reserved; *r; r++)
            if (strlen(*r) == name_len && strncasecmp(*r, h, name_len) == 0)
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "static header %s is set by Sipp itself", *r);
        sipp_status st = add_header(rm, err, "%.*s: %s", (int)name_len, h, value);
        if (st != SIPP_OK) return st;
    }
    return SIPP_OK;
}

/* The part of endpoint creation every kind shares. */
static sipp_status remote_alloc(const sipp__dialect *d, const char *model, const char *base,
                                uint32_t connect_ms, uint32_t total_ms, uint32_t idle_ms,
                                bool allow_private, sipp__http *http, sipp__remote **out,
                                sipp_error *err) {
    sipp_status st =
        sipp__http_url_check_ex(base, allow_private ? SIPP__URL_ALLOW_PRIVATE : 0, err);
    if (st != SIPP_OK) return st;
    sipp__remote *rm = calloc(1, sizeof *rm);
    if (!rm) return oom(err);
    rm->dialect = d;
    rm->model = sipp__strdup(model);
    rm->base_url = sipp__strdup(base);
    pthread_mutex_init(&rm->mu, NULL);
    pthread_cond_init(&rm->cv, NULL);
    if (!rm->model || !rm->base_url) {
        sipp__remote_free(rm);
        return oom(err);
    }
    size_t l = strlen(rm->base_url);
    while (l > 0 && rm->base_url[l - 1] == '/') rm->base_url[--l] = '\0';
    rm->connect_ms = connect_ms ? connect_ms : DEFAULT_CONNECT_MS;
    rm->total_ms = total_ms;
    rm->idle_ms = idle_ms ? idle_ms : DEFAULT_IDLE_MS;
    rm->allow_private = allow_private;
    rm->http = http;
    *out = rm;
    return SIPP_OK;
}

/* The secret from `value`, else from the variable `env`; NULL when neither is set. */
static const char *secret_from(const char *value, const char *env) {
    if (value) return value;
    const char *v = env ? getenv(env) : NULL;
    return v && v[0] ? v : NULL;
}

sipp_status sipp__remote_new_provider(const sipp_provider_params *params, sipp__http *http,
                                      sipp__remote **out, sipp_error *err) {
    if (!params) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "provider params are required");
    sipp_provider_params p = sipp__provider_params_defaults();
    sipp_status st = sipp__params_in(&p, sizeof p, params,
                                     offsetof(sipp_provider_params, version), "provider params", err);
    if (st != SIPP_OK) return st;
    const sipp__dialect *d;
    const char *base = p.base_url, *env = p.api_key_env;
    switch (p.kind) {
    case SIPP_PROVIDER_OPENAI:
        d = &sipp__dialect_openai;
        if (!base) base = "https://api.openai.com/v1";
        if (!env) env = "OPENAI_API_KEY";
        break;
    case SIPP_PROVIDER_OPENAI_COMPATIBLE:
        d = &sipp__dialect_openai;
        if (!base)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "provider openai_compatible: base_url is required");
        break;
    case SIPP_PROVIDER_ANTHROPIC:
        d = &sipp__dialect_anthropic;
        if (!base) base = "https://api.anthropic.com/v1";
        if (!env) env = "ANTHROPIC_API_KEY";
        break;
    default:
        return sipp__fail(err, SIPP_UNSUPPORTED, 0, "unknown provider kind %d", (int)p.kind);
    }
    if (!p.model || !p.model[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "provider: model is required");
    const char *key = secret_from(p.api_key, env);
    if (!key && (p.api_key_env || p.kind != SIPP_PROVIDER_OPENAI_COMPATIBLE))
        return sipp__fail(err, SIPP_AUTHENTICATION, 0,
                          "provider: no API key: the variable %s is not set (or pass api_key)", env);
    if (key && !header_value_ok(key))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "provider: the API key has a control character");
    if (p.version && (!p.version[0] || !header_value_ok(p.version)))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "provider: version is empty or malformed");
    sipp__remote *rm = NULL;
    st = remote_alloc(d, p.model, base, p.connect_timeout_ms, p.request_timeout_ms,
                      p.idle_timeout_ms, p.allow_private_network, http, &rm, err);
    if (st != SIPP_OK) return st;
    static const char *const reserved[] = {"Authorization", "x-api-key", "anthropic-version",
                                           "Content-Type", "Accept", "Content-Length", NULL};
    if (p.kind == SIPP_PROVIDER_ANTHROPIC) {
        rm->version = sipp__strdup(p.version ? p.version : ANTHROPIC_DEFAULT_VERSION);
        st = rm->version ? add_header(rm, err, "anthropic-version: %s", rm->version) : oom(err);
        if (st == SIPP_OK) st = add_header(rm, err, "x-api-key: %s", key);
    } else if (key) {
        st = add_header(rm, err, "Authorization: Bearer %s", key);
    }
    if (st == SIPP_OK) st = add_static_headers(rm, p.headers, p.n_headers, reserved, err);
    if (st != SIPP_OK) {
        sipp__remote_free(rm);
        return st;
    }
    *out = rm;
    return SIPP_OK;
}

sipp_status sipp__remote_new_gateway(const sipp_gateway_params *params, sipp__http *http,
                                     sipp__remote **out, sipp_error *err) {
    if (!params) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "gateway params are required");
    sipp_gateway_params p = sipp__gateway_params_defaults();
    sipp_status st = sipp__params_in(&p, sizeof p, params,
                                     offsetof(sipp_gateway_params, allow_private_network),
                                     "gateway params", err);
    if (st != SIPP_OK) return st;
    if (!p.base_url) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "gateway: base_url is required");
    if (!p.target || !p.target[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "gateway: target is required");
    const char *env = p.token_env ? p.token_env : "SIPP_GATEWAY_TOKEN";
    const char *token = NULL;
    if (p.auth != SIPP_GATEWAY_AUTH_NONE) {
        if (p.auth != SIPP_GATEWAY_AUTH_BEARER && p.auth != SIPP_GATEWAY_AUTH_HEADER)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "gateway: unknown auth %d", (int)p.auth);
        token = secret_from(p.token, env);
        if (!token)
            return sipp__fail(err, SIPP_AUTHENTICATION, 0,
                              "gateway: no token: the variable %s is not set (or pass token)", env);
        if (!header_value_ok(token))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "gateway: the token has a control character");
    }
    bool name_ok = p.auth != SIPP_GATEWAY_AUTH_HEADER || (p.auth_header && p.auth_header[0]);
    for (const char *c = p.auth_header; name_ok && c && *c; c++) name_ok = is_token_char((unsigned char)*c);
    if (!name_ok)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "gateway: auth HEADER needs a valid auth_header name");
    sipp__remote *rm = NULL;
    st = remote_alloc(&sipp__dialect_gateway, p.target, p.base_url, p.connect_timeout_ms,
                      p.request_timeout_ms, p.idle_timeout_ms, p.allow_private_network, http,
                      &rm, err);
    if (st != SIPP_OK) return st;
    static const char *const reserved[] = {"Authorization", "Content-Type", "Accept",
                                           "Content-Length", NULL};
    if (p.auth == SIPP_GATEWAY_AUTH_BEARER)
        st = add_header(rm, err, "Authorization: Bearer %s", token);
    else if (p.auth == SIPP_GATEWAY_AUTH_HEADER)
        st = add_header(rm, err, "%s: %s", p.auth_header, token);
    if (st == SIPP_OK) st = add_static_headers(rm, p.headers, p.n_headers, reserved, err);
    if (st != SIPP_OK) {
        sipp__remote_free(rm);
        return st;
    }
    *out = rm;
    return SIPP_OK;
}

/* ============================================================================================
 * Runs
 * ========================================================================================== */

void sipp__remote_calls_free(sipp__remote_run *rr) {
    for (size_t i = 0; i < rr->n_calls; i++) {
        free(rr->calls[i].id);
        free(rr->calls[i].name);
        sipp__buf_free(&rr->calls[i].args);
    }
    free(rr->calls);
    rr->calls = NULL;
    rr->n_calls = rr->cap_calls = 0;
}

static void remote_run_free(sipp__remote_run *rr) {
    sipp__remote_calls_free(rr);
    sipp__sse_free(&rr->sse);
    sipp__buf_free(&rr->body);
    free(rr);
}

static void live_unlink(sipp__remote *rm, sipp__remote_run *rr) {
    pthread_mutex_lock(&rm->mu);
    if (rr->prev) rr->prev->next = rr->next; else rm->live = rr->next;
    if (rr->next) rr->next->prev = rr->prev;
    pthread_cond_broadcast(&rm->cv);
    pthread_mutex_unlock(&rm->mu);
}

/* What stands in a message where a secret was cut out. */
#define REDACTED "[redacted]"

/* The length of the longest secret of the endpoint that starts at `p`, 0 when none does. A
 * secret is a header value, or the token after "Bearer ", when long enough to be one: short
 * values ("1", "json") are not secrets and would maul the text. */
static size_t secret_at(const sipp__remote *rm, const char *p) {
    size_t best = 0;
    for (size_t i = 0; i < rm->n_headers; i++) {
        const char *v = strchr(rm->headers[i], ':');
        if (!v) continue;
        for (v++; *v == ' '; v++) {}
        size_t len = strlen(v);
        if (len >= 6 && len > best && strncmp(p, v, len) == 0) best = len;
        if (strncasecmp(v, "Bearer ", 7) == 0 && len - 7 >= 6 && len - 7 > best &&
            strncmp(p, v + 7, len - 7) == 0)
            best = len - 7;
    }
    return best;
}

/* A peer may quote the credentials it was sent in its error message (a careless
 * OpenAI-compatible server, a proxy). Copies `in` into `out` (capacity `cap`, > 0) with every
 * secret of the endpoint replaced by "[redacted]", whatever the peer said. The copy is cut
 * where the next piece does not fit, never inside a secret, so none survives as a prefix. */
static void redact_secrets(const sipp__remote *rm, const char *in, char *out, size_t cap) {
    size_t n = 0;
    while (*in) {
        size_t len = secret_at(rm, in);
        const char *piece = len ? REDACTED : in;
        size_t piece_len = len ? sizeof REDACTED - 1 : 1;
        if (n + piece_len >= cap) break;
        memcpy(out + n, piece, piece_len);
        n += piece_len;
        in += len ? len : 1;
    }
    out[n] = '\0';
}

/* Finishes the run, leaves the endpoint's live list and frees the remote run. */
static void remote_finish(sipp__remote_run *rr, sipp_status st, const char *msg,
                          sipp_finish_reason reason) {
    char clean[SIPP_ERROR_MESSAGE_CAP];
    if (msg) {
        redact_secrets(rr->rm, msg, clean, sizeof clean);
        msg = clean;
    }
    double now = sipp__now_ms();
    sipp_stats stats = {.struct_size = sizeof stats};
    stats.total_ms = now - rr->t_submit;
    if (rr->t_first > 0) {
        stats.ttft_ms = rr->t_first - rr->t_submit;
        stats.decode_ms = rr->t_last - rr->t_first;
        if (rr->usage.output_tokens > 1 && stats.decode_ms > 0)
            stats.decode_tok_s = (rr->usage.output_tokens - 1) / (stats.decode_ms / 1e3);
    }
    sipp__run_set_remote(rr->run, (uint32_t)rr->status, rr->retry_after, rr->request_id,
                         rr->error_code);
    if (rr->not_sent) sipp__run_set_not_sent(rr->run);
    sipp_usage usage = rr->usage;
    usage.struct_size = sizeof usage;
    if (!usage.total_tokens) usage.total_tokens = usage.input_tokens + usage.output_tokens;
    /* End the run first, then leave the live list: removing the endpoint waits for the list to
     * empty, so when it returns every run has ended. `msg` may point into rr: finish before
     * freeing. rm is not touched after live_unlink. */
    sipp__run_finish(rr->run, st, msg, reason, &usage, &stats);
    live_unlink(rr->rm, rr);
    remote_run_free(rr);
}

static void mark_chunk(sipp__remote_run *rr) {
    double now = sipp__now_ms();
    if (rr->t_first == 0) rr->t_first = now;
    rr->t_last = now;
    rr->n_chunks++;
}

/* INLINE reasoning: the "</think>" that ends it, before what follows it. */
static void close_think(sipp__remote_run *rr) {
    if (!rr->in_think) return;
    rr->in_think = false;
    sipp__run_push_delta(rr->run, SIPP_DELTA_CONTENT, 0, NULL, NULL, "</think>", 8, 0);
}

/* A chat's text goes out as CONTENT deltas (which are its text too), as a local chat's does, so
 * a delta reader gets it in order with the reasoning and the tool calls. */
void sipp__remote_push_text(sipp__remote_run *rr, const char *text, size_t len, uint32_t n_tokens) {
    if (len == 0) return;
    mark_chunk(rr);
    if (rr->lp_staged > n_tokens) n_tokens = rr->lp_staged;
    rr->lp_staged = 0;
    if (rr->op != SIPP__OP_CHAT) {
        sipp__run_push_text(rr->run, text, len, n_tokens);
        return;
    }
    close_think(rr);
    sipp__run_push_delta(rr->run, SIPP_DELTA_CONTENT, 0, NULL, NULL, text, len, n_tokens);
}

void sipp__remote_push_reasoning(sipp__remote_run *rr, const char *text, size_t len) {
    if (len == 0 || rr->reasoning_mode == SIPP_REASONING_DROP) return;
    mark_chunk(rr);
    if (rr->reasoning_mode == SIPP_REASONING_SEPARATE) {
        sipp__run_push_delta(rr->run, SIPP_DELTA_REASONING, 0, NULL, NULL, text, len, 1);
        return;
    }
    if (!rr->in_think)
        sipp__run_push_delta(rr->run, SIPP_DELTA_CONTENT, 0, NULL, NULL, "<think>", 7, 0);
    rr->in_think = true;
    sipp__run_push_delta(rr->run, SIPP_DELTA_CONTENT, 0, NULL, NULL, text, len, 1);
}

/* ---- tool calls from a peer (issue 18) --------------------------------------------------------- */

#define MAX_REMOTE_CALLS 128
#define MAX_CALL_ARGS (4u << 20) /* one call's arguments */

bool sipp__remote_tool_piece(sipp__remote_run *rr, long key, const char *id, const char *name,
                             const char *args, size_t args_len) {
    size_t i = 0;
    while (i < rr->n_calls && rr->calls[i].key != key) i++;
    bool first = i == rr->n_calls;
    if (first) {
        if (!name || !name[0])
            return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                            "the %s's tool call %ld has no function name",
                                            rr->rm->dialect->name, key);
        if (rr->n_calls == MAX_REMOTE_CALLS)
            return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                            "the %s made more than %d tool calls",
                                            rr->rm->dialect->name, MAX_REMOTE_CALLS);
        if (rr->n_calls == rr->cap_calls) {
            size_t cap = rr->cap_calls ? 2 * rr->cap_calls : 4;
            sipp__remote_call *grown = realloc(rr->calls, cap * sizeof *grown);
            if (!grown) return sipp__remote_stream_fail(rr, SIPP_OUT_OF_MEMORY, NULL, "out of memory");
            rr->calls = grown;
            rr->cap_calls = cap;
        }
        sipp__remote_call *c = &rr->calls[i];
        char made[16];
        snprintf(made, sizeof made, "call_%zu", i); /* a peer that gives no ids (some servers) */
        *c = (sipp__remote_call){.key = key, .id = sipp__strdup(id && id[0] ? id : made),
                                 .name = sipp__strdup(name)};
        sipp__buf_init(&c->args, MAX_CALL_ARGS);
        rr->n_calls++;
        if (!c->id || !c->name)
            return sipp__remote_stream_fail(rr, SIPP_OUT_OF_MEMORY, NULL, "out of memory");
    }
    sipp__remote_call *c = &rr->calls[i];
    if (args_len && sipp__buf_append(&c->args, args, args_len) != SIPP_OK)
        return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                        "the %s's tool call %s has arguments over %u bytes",
                                        rr->rm->dialect->name, c->name, MAX_CALL_ARGS);
    if (!first && !args_len) return true;
    mark_chunk(rr);
    close_think(rr);
    sipp__run_push_delta(rr->run, SIPP_DELTA_TOOL_CALL, (uint32_t)i, first ? c->id : NULL,
                         first ? c->name : NULL, args, args_len, 1);
    return true;
}

bool sipp__remote_calls_finish(sipp__remote_run *rr, char *msg, size_t cap) {
    if (rr->n_calls == 0) return true;
    sipp_tool_call *out = calloc(rr->n_calls, sizeof *out);
    if (!out) {
        snprintf(msg, cap, "out of memory");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; ok && i < rr->n_calls; i++) {
        sipp__remote_call *c = &rr->calls[i];
        if (c->args.len == 0 && sipp__buf_append(&c->args, "{}", 2) != SIPP_OK) ok = false;
        if (ok && sipp__buf_append(&c->args, "", 1) != SIPP_OK) ok = false; /* NUL-terminated */
        json_error_t je;
        json_t *j = ok ? json_loadb(c->args.data, c->args.len - 1, 0, &je) : NULL;
        if (!json_is_object(j)) {
            snprintf(msg, cap,
                     "the %s's tool call %zu (%.32s) has arguments that are not a JSON object%s%.60s",
                     rr->rm->dialect->name, i, c->name, j ? "" : ": ", j ? "" : je.text);
            ok = false;
        }
        json_decref(j);
        out[i] = (sipp_tool_call){.id = c->id, .name = c->name, .arguments = c->args.data};
    }
    if (ok && sipp__run_set_tool_calls(rr->run, out, rr->n_calls) != SIPP_OK) {
        snprintf(msg, cap, "out of memory");
        ok = false;
    }
    free(out);
    return ok;
}

json_t *sipp__remote_call_arguments(const sipp_tool_call *c) {
    json_t *j = json_loads(c->arguments ? c->arguments : "{}", 0, NULL);
    return j ? j : json_object();
}

json_t *sipp__remote_tool_schema(const sipp_tool *t) {
    /* NULL parameters: a tool without arguments (APIs want an object schema still) */
    json_t *j = t->parameters ? json_loads(t->parameters, 0, NULL) : NULL;
    return j ? j : json_pack("{s:s, s:{}}", "type", "object", "properties");
}

sipp_status sipp__remote_tools(const sipp_text_params *p, const char *schema_key,
                               bool function_wrapped, json_t **out, sipp_error *err) {
    json_t *tools = json_array();
    for (size_t i = 0; i < p->n_tools; i++) {
        const sipp_tool *t = &p->tools[i];
        json_t *tool = json_pack("{s:s, s:o}", "name", t->name, schema_key,
                                 sipp__remote_tool_schema(t));
        if (tool && t->description &&
            json_object_set_new(tool, "description", json_string(t->description)) != 0) {
            json_decref(tool);
            tool = NULL;
        }
        if (!tool) {
            json_decref(tools);
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "tools[%zu]: the description is not valid UTF-8", i);
        }
        json_array_append_new(tools, function_wrapped ? json_pack("{s:s, s:o}", "type", "function",
                                                                  "function", tool)
                                                      : tool);
    }
    *out = tools;
    return SIPP_OK;
}

/* One assistant tool call in the shape's spelling; NULL when a string is not UTF-8. */
static json_t *shaped_call(const sipp_tool_call *c, const sipp__remote_tool_shape *shape) {
    if (shape->function_wrapped) /* arguments as JSON text */
        return json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", c->id, "type", "function", "function",
                         "name", c->name, "arguments", c->arguments ? c->arguments : "{}");
    json_t *args = sipp__remote_call_arguments(c); /* an object */
    return args ? json_pack("{s:s, s:s, s:o}", "id", c->id, "name", c->name, "arguments", args)
                : NULL;
}

sipp_status sipp__remote_add_tools(const sipp_chat_message *cm, size_t n,
                                   const sipp_text_params *p, const sipp__remote_tool_shape *shape,
                                   json_t *body, sipp_error *err) {
    if (p->n_tools) {
        json_t *tools;
        sipp_status st = sipp__remote_tools(p, "parameters", shape->function_wrapped, &tools, err);
        if (st != SIPP_OK) return st;
        json_object_set_new(body, "tools", tools);
        json_t *choice = p->tool_choice == SIPP_TOOL_CHOICE_NONE       ? json_string("none")
                         : p->tool_choice == SIPP_TOOL_CHOICE_REQUIRED ? json_string("required")
                         : p->tool_choice != SIPP_TOOL_CHOICE_NAMED    ? json_string("auto")
                         : shape->function_wrapped
                             ? json_pack("{s:s, s:{s:s}}", "type", "function", "function", "name",
                                         p->tool_choice_name)
                             : json_pack("{s:s}", "name", p->tool_choice_name);
        json_object_set_new(body, "tool_choice", choice);
        json_object_set_new(body, "parallel_tool_calls", json_boolean(p->parallel_tool_calls));
    }
    json_t *msgs = json_object_get(body, "messages");
    for (size_t i = 0; cm && i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        if (cm[i].n_tool_calls) {
            json_t *calls = json_array();
            for (size_t k = 0; k < cm[i].n_tool_calls; k++) {
                json_t *e = shaped_call(&cm[i].tool_calls[k], shape);
                if (e) json_array_append_new(calls, e);
            }
            if (json_array_size(calls) != cm[i].n_tool_calls) {
                json_decref(calls);
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "chat: message %zu has a tool call that is not valid UTF-8", i);
            }
            json_object_set_new(m, "tool_calls", calls);
            json_t *content = json_object_get(m, "content");
            if (json_is_string(content) && json_string_length(content) == 0)
                json_object_set_new(m, "content", json_null());
        }
        if (cm[i].tool_call_id) {
            json_t *id = json_string(cm[i].tool_call_id);
            if (!id)
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "chat: message %zu's tool_call_id is not valid UTF-8", i);
            json_object_set_new(m, "tool_call_id", id);
        }
    }
    return SIPP_OK;
}

/* ---- structured output (issue 18) -------------------------------------------------------------- */

sipp_status sipp__remote_schema(const sipp_text_params *p, json_t **out, sipp_error *err) {
    json_error_t je;
    json_t *s = json_loads(p->json_schema, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(s)) {
        json_decref(s);
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "json_schema: a remote endpoint needs a JSON object (%s)",
                          s ? "not an object" : je.text);
    }
    *out = s;
    return SIPP_OK;
}

/* ---- log-probabilities from a peer (issue 18) ------------------------------------------------- */

/* A token's bytes: its `bytes` array when it has one of byte values (exact, also for part of a
 * UTF-8 sequence), else its `token` string. False when neither is there. */
static bool lp_token(json_t *e, json_t *tok, char *buf, size_t cap, const char **s, size_t *len) {
    json_t *bytes = e ? json_object_get(e, "bytes") : NULL;
    size_t n = json_array_size(bytes);
    if (n > 0 && n <= cap) {
        for (size_t i = 0; i < n; i++) {
            json_t *b = json_array_get(bytes, i);
            if (!json_is_integer(b) || json_integer_value(b) < 0 || json_integer_value(b) > 255)
                goto text;
            buf[i] = (char)json_integer_value(b);
        }
        *s = buf;
        *len = n;
        return true;
    }
text:
    if (!json_is_string(tok)) return false;
    *s = json_string_value(tok);
    *len = json_string_length(tok);
    return true;
}

/* Inserts an alternative keeping top[0, *n) sorted by logprob, at most SIPP_MAX_TOP_LOGPROBS. */
static void lp_insert(sipp_top_logprob *top, uint32_t *n, sipp_top_logprob t) {
    if (*n == SIPP_MAX_TOP_LOGPROBS && !(t.logprob > top[*n - 1].logprob)) return;
    uint32_t k = *n < SIPP_MAX_TOP_LOGPROBS ? (*n)++ : *n - 1;
    while (k > 0 && t.logprob > top[k - 1].logprob) {
        top[k] = top[k - 1];
        k--;
    }
    top[k] = t;
}

static float lp_value(json_t *v) {
    double x = json_number_value(v);
    return x > 0 ? 0.0f : (float)x; /* a peer's rounding never makes a probability above 1 */
}

uint32_t sipp__remote_stage_logprobs(sipp__remote_run *rr, json_t *lp) {
    char tbufs[SIPP_MAX_TOP_LOGPROBS + 1][256]; /* tokens given as `bytes` */
    uint32_t staged = 0;
    if (rr->top_logprobs < 0 || !lp) return 0; /* not asked for: a peer's extras are dropped */
    uint32_t want = (uint32_t)rr->top_logprobs;
    json_t *content = json_is_object(lp) ? json_object_get(lp, "content") : lp;
    if (json_is_array(content)) {
        size_t i;
        json_t *e;
        json_array_foreach(content, i, e) {
            const char *s;
            size_t len;
            json_t *lpv = json_object_get(e, "logprob");
            if (!json_is_number(lpv) ||
                !lp_token(e, json_object_get(e, "token"), tbufs[0], sizeof tbufs[0], &s, &len))
                continue;
            sipp_top_logprob top[SIPP_MAX_TOP_LOGPROBS];
            uint32_t n_top = 0;
            json_t *alts = json_object_get(e, "top_logprobs");
            /* the first SIPP_MAX_TOP_LOGPROBS alternatives, each with its own buffer */
            for (size_t k = 0; k < json_array_size(alts) && k < SIPP_MAX_TOP_LOGPROBS; k++) {
                json_t *t = json_array_get(alts, k), *tv = json_object_get(t, "logprob");
                sipp_top_logprob x;
                if (!json_is_number(tv) || !lp_token(t, json_object_get(t, "token"), tbufs[1 + k],
                                                     sizeof tbufs[0], &x.token, &x.token_len))
                    continue;
                x.logprob = lp_value(tv);
                lp_insert(top, &n_top, x);
            }
            if (sipp__run_stage_logprob(rr->run, s, len, lp_value(lpv), top,
                                        n_top < want ? n_top : want) == SIPP_OK)
                staged++;
        }
        rr->lp_staged += staged;
        return staged;
    }
    json_t *toks = json_object_get(lp, "tokens"), *lps = json_object_get(lp, "token_logprobs");
    json_t *tops = json_object_get(lp, "top_logprobs");
    for (size_t i = 0; i < json_array_size(toks); i++) {
        json_t *tok = json_array_get(toks, i), *lpv = json_array_get(lps, i);
        if (!json_is_string(tok) || !json_is_number(lpv)) continue;
        sipp_top_logprob top[SIPP_MAX_TOP_LOGPROBS];
        uint32_t n_top = 0;
        const char *key;
        json_t *v;
        json_object_foreach(json_array_get(tops, i), key, v) {
            if (!json_is_number(v)) continue;
            lp_insert(top, &n_top, (sipp_top_logprob){key, strlen(key), lp_value(v)});
        }
        if (sipp__run_stage_logprob(rr->run, json_string_value(tok), json_string_length(tok),
                                    lp_value(lpv), top, n_top < want ? n_top : want) == SIPP_OK)
            staged++;
    }
    rr->lp_staged += staged;
    return staged;
}

bool sipp__remote_stream_fail(sipp__remote_run *rr, sipp_status st, const char *code,
                              const char *fmt, ...) {
    rr->stream_status = st;
    if (code) snprintf(rr->error_code, sizeof rr->error_code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    sipp__format_message(rr->stream_error, sizeof rr->stream_error, fmt, ap);
    va_end(ap);
    return false;
}

sipp_status sipp__remote_text_body(const sipp__remote *rm, const sipp_text_params *p,
                                   json_t **out, sipp_error *err) {
    json_t *b = json_pack("{s:s,s:I,s:f,s:f,s:b}", "model", rm->model, "max_tokens",
                          (json_int_t)p->max_tokens, "temperature", (double)p->temperature,
                          "top_p", (double)p->top_p, "stream", 1);
    if (!b) return oom(err);
    if (p->n_stop) {
        json_t *stops = sipp__remote_stop_array(p);
        if (!stops) {
            json_decref(b);
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "a stop string is not valid UTF-8");
        }
        json_object_set_new(b, "stop", stops);
    }
    *out = b;
    return SIPP_OK;
}

json_t *sipp__remote_stop_array(const sipp_text_params *p) {
    json_t *stops = json_array();
    for (size_t i = 0; stops && i < p->n_stop; i++) {
        json_t *s = json_string(p->stop[i]);
        if (!s) { /* not UTF-8 */
            json_decref(stops);
            return NULL;
        }
        json_array_append_new(stops, s);
    }
    return stops;
}

sipp_status sipp__remote_messages(const sipp_message *messages, size_t n, bool skip_system,
                                  json_t **out, sipp_error *err) {
    json_t *msgs = json_array();
    if (!msgs) return oom(err);
    for (size_t i = 0; i < n; i++) {
        if (skip_system && strcmp(messages[i].role, "system") == 0) continue;
        json_t *m = json_pack("{s:s,s:s}", "role", messages[i].role, "content", messages[i].content);
        if (!m) {
            json_decref(msgs);
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "chat: message %zu is not valid UTF-8", i);
        }
        json_array_append_new(msgs, m);
    }
    *out = msgs;
    return SIPP_OK;
}

sipp_status sipp__remote_add_input(json_t *body, const char *prompt, const sipp_message *messages,
                                   size_t n, sipp_error *err) {
    json_t *v = NULL;
    sipp_status st = SIPP_OK;
    if (messages)
        st = sipp__remote_messages(messages, n, false, &v, err);
    else if (!(v = json_string(prompt)))
        st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "query: the prompt is not valid UTF-8");
    if (st != SIPP_OK) {
        json_decref(body);
        return st;
    }
    json_object_set_new(body, messages ? "messages" : "prompt", v);
    return SIPP_OK;
}

json_t *sipp__remote_event_json(sipp__remote_run *rr, const sipp__sse_event *ev) {
    json_error_t je;
    json_t *j = json_loadb(ev->data, ev->data_len, 0, &je);
    if (json_is_object(j)) return j;
    json_decref(j);
    sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL, "the %s's stream carried invalid JSON: %s",
                             rr->rm->dialect->name, je.text);
    return NULL;
}

static bool on_sse(const sipp__sse_event *ev, void *ud) {
    sipp__remote_run *rr = ud;
    return rr->rm->dialect->on_event(rr, ev);
}

/* ---- HTTP handlers (transfer thread) ------------------------------------------------------- */

static void h_status(long status, void *ud) { ((sipp__remote_run *)ud)->status = status; }

static void h_header(const char *name, size_t nl, const char *value, size_t vl, void *ud) {
    sipp__remote_run *rr = ud;
    /* x-request-id (OpenAI-shaped servers, gateways) or request-id (Anthropic) */
    if ((nl == 12 && strncasecmp(name, "x-request-id", 12) == 0) ||
        (nl == 10 && strncasecmp(name, "request-id", 10) == 0 && !rr->request_id[0])) {
        size_t n = vl < sizeof rr->request_id - 1 ? vl : sizeof rr->request_id - 1;
        memcpy(rr->request_id, value, n);
        rr->request_id[n] = '\0';
    } else if (nl == 12 && strncasecmp(name, "content-type", 12) == 0 && rr->op != SIPP__OP_EMBED &&
               rr->status < 300 && vl >= 16 && strncasecmp(value, "application/json", 16) == 0) {
        /* issue 18: a text answer that comes whole, not streamed (a server that ignores
         * `stream`, or does not stream tool calls); decoded at the end (h_done) */
        rr->whole = true;
        rr->body.max = TEXT_BODY_MAX;
    } else if (nl == 11 && strncasecmp(name, "retry-after", 11) == 0) {
        char buf[32];
        size_t n = vl < sizeof buf - 1 ? vl : sizeof buf - 1;
        memcpy(buf, value, n);
        buf[n] = '\0';
        rr->retry_after = (uint32_t)strtoul(buf, NULL, 10);
    }
}

static bool h_body(const char *data, size_t len, void *ud) {
    sipp__remote_run *rr = ud;
    if (rr->whole && rr->status < 400) {
        if (sipp__buf_append(&rr->body, data, len) != SIPP_OK)
            return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                            "the %s's answer exceeds %zu bytes",
                                            rr->rm->dialect->name, rr->body.max);
        return true;
    }
    if (rr->status >= 400 || rr->op == SIPP__OP_EMBED) {
        /* error bodies are capped; what is beyond the cap is dropped, not an error */
        size_t room = rr->body.max - rr->body.len;
        sipp__buf_append(&rr->body, data, len < room ? len : room);
        if (rr->op == SIPP__OP_EMBED && rr->status < 400 && len > room) /* an answer must be whole */
            return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                            "the %s's embeddings answer exceeds %zu bytes",
                                            rr->rm->dialect->name, rr->body.max);
        return true;
    }
    sipp_error err = sipp__error_defaults();
    sipp_status st = sipp__sse_feed(&rr->sse, data, len, on_sse, rr, &err);
    if (st == SIPP_OUT_OF_MEMORY)
        return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL, "%s", err.message);
    return st == SIPP_OK;
}

static void h_not_sent(void *ud) { ((sipp__remote_run *)ud)->not_sent = true; }

static bool h_abort(void *ud) { return sipp__run_cancel_requested(((sipp__remote_run *)ud)->run); }

static json_t *load_body(const sipp__remote_run *rr) {
    return json_loadb(rr->body.data ? rr->body.data : "", rr->body.len, 0, NULL);
}

/* The error of a >= 400 answer, from its JSON body when it has one. */
static void finish_http_error(sipp__remote_run *rr) {
    json_t *j = load_body(rr);
    const char *msg = NULL, *code = NULL;
    sipp_status st = rr->rm->dialect->read_error(rr->status, j, &msg, &code);
    if (code) snprintf(rr->error_code, sizeof rr->error_code, "%s", code);
    char retry[48] = "", code_note[64] = "";
    if (rr->retry_after) snprintf(retry, sizeof retry, " (retry after %u s)", rr->retry_after);
    if (code && strcmp(code, sipp_status_name(st)) != 0)
        snprintf(code_note, sizeof code_note, " [%.48s]", code);
    /* secrets out before the cut below, so none survives as a truncated prefix */
    char peer[1024];
    redact_secrets(rr->rm, msg ? msg : "(no message)", peer, sizeof peer);
    sipp_error full = sipp__error_defaults(); /* formats and truncates to the message cap */
    sipp__fail(&full, st, 0, "%s answered %ld (%s)%s: %.160s%s", rr->rm->dialect->name,
               rr->status, sipp_status_name(st), retry, peer, code_note);
    json_decref(j);
    remote_finish(rr, st, full.message, SIPP_FINISH_NONE);
}

static void finish_embedding(sipp__remote_run *rr) {
    json_t *j = load_body(rr);
    float *vec = NULL;
    uint32_t n = 0;
    sipp_error err = sipp__error_defaults();
    sipp_status st = rr->rm->dialect->read_embedding(rr, j, &vec, &n, &err);
    json_decref(j);
    if (st != SIPP_OK) {
        remote_finish(rr, st, err.message, SIPP_FINISH_NONE);
        return;
    }
    if (rr->normalize) {
        double norm = 0;
        for (uint32_t i = 0; i < n; i++) norm += (double)vec[i] * vec[i];
        norm = sqrt(norm);
        if (norm > 0)
            for (uint32_t i = 0; i < n; i++) vec[i] = (float)(vec[i] / norm);
    }
    sipp__run_set_embedding(rr->run, vec, n, rr->normalize);
    remote_finish(rr, SIPP_OK, NULL, SIPP_FINISH_STOP);
}

/* A whole answer (rr->whole): the dialect decodes it; false after failing the stream. */
static bool finish_whole(sipp__remote_run *rr) {
    if (!rr->rm->dialect->on_whole)
        return sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                        "the %s answered JSON where a stream was asked for",
                                        rr->rm->dialect->name);
    json_error_t je;
    json_t *j = json_loadb(rr->body.data ? rr->body.data : "", rr->body.len, 0, &je);
    bool ok = json_is_object(j)
                  ? rr->rm->dialect->on_whole(rr, j)
                  : sipp__remote_stream_fail(rr, SIPP_UPSTREAM_ERROR, NULL,
                                             "the %s's answer is not a JSON object: %s",
                                             rr->rm->dialect->name, j ? "another value" : je.text);
    json_decref(j);
    return ok;
}

static void h_done(sipp_status st, const char *message, void *ud) {
    sipp__remote_run *rr = ud;
    const char *who = rr->rm->dialect->name;
    char msg[SIPP_ERROR_MESSAGE_CAP];
    if (st == SIPP_CANCELLED && sipp__run_cancel_requested(rr->run)) {
        remote_finish(rr, SIPP_OK, NULL, SIPP_FINISH_CANCELLED);
    } else if (rr->stream_error[0]) {
        snprintf(msg, sizeof msg, "%s", rr->stream_error);
        remote_finish(rr, rr->stream_status ? rr->stream_status : SIPP_UPSTREAM_ERROR, msg,
                      SIPP_FINISH_NONE);
    } else if (st == SIPP_TIMEOUT) {
        remote_finish(rr, SIPP_UPSTREAM_TIMEOUT, message, SIPP_FINISH_NONE);
    } else if (st == SIPP_INVALID_ARGUMENT) { /* the network policy refused the address */
        remote_finish(rr, SIPP_INVALID_ARGUMENT, message, SIPP_FINISH_NONE);
    } else if (st != SIPP_OK) {
        remote_finish(rr, SIPP_TRANSPORT, message, SIPP_FINISH_NONE);
    } else if (rr->status >= 400) {
        finish_http_error(rr);
    } else if (rr->status < 200 || rr->status >= 300) {
        snprintf(msg, sizeof msg, "unexpected HTTP status %ld from the %s", rr->status, who);
        remote_finish(rr, SIPP_UPSTREAM_ERROR, msg, SIPP_FINISH_NONE);
    } else if (rr->op == SIPP__OP_EMBED) {
        finish_embedding(rr);
    } else if (rr->whole && !finish_whole(rr)) {
        snprintf(msg, sizeof msg, "%s", rr->stream_error);
        remote_finish(rr, rr->stream_status ? rr->stream_status : SIPP_UPSTREAM_ERROR, msg,
                      SIPP_FINISH_NONE);
    } else if (!rr->done_seen) {
        snprintf(msg, sizeof msg, "the %s's stream ended without %s", who,
                 rr->rm->dialect->end_marker);
        remote_finish(rr, SIPP_UPSTREAM_ERROR, msg, SIPP_FINISH_NONE);
    } else if (!sipp__remote_calls_finish(rr, msg, sizeof msg)) {
        remote_finish(rr, SIPP_UPSTREAM_ERROR, msg, SIPP_FINISH_NONE);
    } else {
        if (!rr->usage.output_tokens) rr->usage.output_tokens = rr->n_chunks;
        close_think(rr);
        sipp_finish_reason reason = rr->reason ? rr->reason : SIPP_FINISH_STOP;
        /* an answer that ends with calls, whatever the peer called its end (some say "stop") */
        if (rr->n_calls && reason == SIPP_FINISH_STOP) reason = SIPP_FINISH_TOOL_CALLS;
        remote_finish(rr, SIPP_OK, NULL, reason);
    }
}

static void run_wake(void *producer) { sipp__http_wake(producer); }

/* ---- building and starting requests -------------------------------------------------------- */

/* Rejects options of the local engine, naming the field. */
static sipp_status reject_local_only(const sipp__remote *rm, const sipp_text_params *p,
                                     sipp_error *err) {
    sipp_text_params d = sipp__text_params_defaults();
    const char *field = p->context_key ? "context_key"
                        : p->cache_scope ? "cache_scope"
                        : p->grammar ? "grammar"
                        : p->ignore_eos ? "ignore_eos"
                        : p->top_k != d.top_k ? "top_k"
                        : p->min_p != d.min_p ? "min_p"
                        : p->repeat_penalty != d.repeat_penalty ? "repeat_penalty"
                                                                : NULL;
    if (field)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "%s is an option of local endpoints; a %s endpoint cannot honour it",
                          field, rm->dialect->name);
    return SIPP_OK;
}

/* Merges extra_json (a JSON object) into `body`; a key naming a typed field is an error. */
static sipp_status merge_extra(const sipp__remote *rm, json_t *body, const char *extra,
                               sipp_error *err) {
    if (!extra) return SIPP_OK;
    static const char *const typed[] = {"model", "prompt", "messages", "max_tokens", "temperature",
                                        "top_p", "stop", "stream", "input", NULL};
    json_error_t je;
    json_t *x = json_loads(extra, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(x)) {
        json_decref(x);
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "extra_json must be a JSON object (%s)", x ? "not an object" : je.text);
    }
    const char *key;
    json_t *v;
    sipp_status st = SIPP_OK;
    json_object_foreach(x, key, v) {
        for (const char *const *t = typed; *t && st == SIPP_OK; t++)
            if (strcmp(key, *t) == 0) st = SIPP_INVALID_ARGUMENT;
        for (const char *const *t = rm->dialect->own_fields; t && *t && st == SIPP_OK; t++)
            if (strcmp(key, *t) == 0) st = SIPP_INVALID_ARGUMENT;
        if (st != SIPP_OK) {
            sipp__fail(err, st, 0, "extra_json may not set \"%.64s\": it is a typed field", key);
            break;
        }
        json_object_set(body, key, v);
    }
    json_decref(x);
    return st;
}

/* Starts `body` (JSON, taken) at `path` as a remote run. */
static sipp_status start(sipp__remote *rm, sipp__remote_op op, bool normalize,
                         const sipp_text_params *tp, const char *path, json_t *body,
                         const char *request_id, sipp_token_fn cb, void *cb_ud, sipp_run **out,
                         sipp_error *err) {
    if (request_id && (!request_id[0] || strlen(request_id) > 128 || !header_value_ok(request_id))) {
        json_decref(body);
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "request_id must be 1 to 128 printable characters");
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *url = NULL, *id_header = NULL;
    sipp__remote_run *rr = calloc(1, sizeof *rr);
    const char **headers = calloc(rm->n_headers + 3, sizeof *headers);
    if (!text || !rr || !headers || asprintf(&url, "%s%s", rm->base_url, path) < 0 ||
        (request_id && asprintf(&id_header, "x-request-id: %s", request_id) < 0)) {
        free(text);
        free(rr);
        free(headers);
        free(url);
        return oom(err);
    }
    rr->rm = rm;
    rr->op = op;
    rr->normalize = normalize;
    rr->top_logprobs = tp && tp->logprobs ? (int32_t)tp->top_logprobs : -1;
    rr->reasoning_mode = tp ? tp->reasoning_mode : SIPP_REASONING_SEPARATE;
    rr->schema_tool = tp && tp->json_schema;
    sipp__sse_init(&rr->sse, SIPP__SSE_EVENT_MAX);
    sipp__buf_init(&rr->body, op == SIPP__OP_EMBED ? EMBED_BODY_MAX : SIPP__HTTP_ERROR_BODY_MAX);
    rr->run = sipp__run_new(cb, cb_ud);
    if (!rr->run) {
        free(text);
        free(url);
        free(id_header);
        free(headers);
        remote_run_free(rr);
        return oom(err);
    }
    sipp__run_set_waker(rr->run, run_wake, rm->http);
    if (tp && tp->on_delta) sipp__run_set_delta_fn(rr->run, tp->on_delta, tp->delta_user_data);
    headers[0] = "Content-Type: application/json";
    headers[1] = op == SIPP__OP_EMBED ? "Accept: application/json" : "Accept: text/event-stream";
    size_t n_headers = 2;
    for (size_t i = 0; i < rm->n_headers; i++) headers[n_headers++] = rm->headers[i];
    if (id_header) headers[n_headers++] = id_header;
    sipp__http_request req = {"POST", url, headers, n_headers, text, strlen(text),
                              rm->connect_ms, rm->total_ms, rm->idle_ms, rm->allow_private};
    sipp__http_handlers h = {h_status, h_header, h_body, h_abort, h_done, h_not_sent};
    rr->t_submit = sipp__now_ms();
    pthread_mutex_lock(&rm->mu);
    rr->next = rm->live;
    if (rm->live) rm->live->prev = rr;
    rm->live = rr;
    pthread_mutex_unlock(&rm->mu);
    sipp_run *run = rr->run;
    sipp_status st = sipp__http_start(rm->http, &req, &h, rr, err);
    free(text);
    free(url);
    free(id_header);
    free(headers);
    if (st != SIPP_OK) { /* no callback will run: end it here */
        live_unlink(rm, rr);
        remote_run_free(rr);
        sipp__run_discard(run, st);
        return st;
    }
    *out = run;
    return SIPP_OK;
}

sipp_status sipp__remote_submit_text(sipp__remote *rm, const char *prompt,
                                     const sipp_message *messages, size_t n_messages,
                                     const sipp_chat_message *cm, const sipp_text_params *p,
                                     sipp_run **out, sipp_error *err) {
    sipp_status st = reject_local_only(rm, p, err);
    if (st != SIPP_OK) return st;
    bool tool_messages = false;
    for (size_t i = 0; cm && i < n_messages; i++)
        tool_messages = tool_messages || cm[i].n_tool_calls || cm[i].tool_call_id;
    if (!tool_messages) cm = NULL;
    /* issue 18: a reasoning budget is llama.cpp's (a local endpoint, or one behind a Sipp
     * gateway); providers have their own knobs, for extra_json */
    if (p->reasoning_budget != -1 && messages && rm->dialect != &sipp__dialect_gateway)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "reasoning_budget: this %s endpoint cannot enforce one (nothing was "
                          "sent); its own option, if any, goes in extra_json",
                          rm->dialect->name);
    if ((p->n_tools || cm) && !rm->dialect->add_tools)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "tools: this %s endpoint takes no tools (nothing was sent)",
                          rm->dialect->name);
    const sipp__dialect *d = rm->dialect;
    const char *path = NULL;
    json_t *body = NULL;
    path = messages ? d->chat_path : d->query_path;
    if (!path)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "query: this %s has no raw completion API; use chat", d->name);
    st = d->build_text(rm, prompt, messages, n_messages, p, &body, err);
    if (st == SIPP_OK && (p->n_tools || cm)) st = d->add_tools(cm, n_messages, p, body, err);
    if (st == SIPP_OK) st = merge_extra(rm, body, p->extra_json, err);
    if (st != SIPP_OK) {
        json_decref(body);
        return st;
    }
    return start(rm, messages ? SIPP__OP_CHAT : SIPP__OP_QUERY, false, p, path, body,
                 p->request_id, p->on_tokens, p->user_data, out, err);
}

sipp_status sipp__remote_submit_embed(sipp__remote *rm, const char *text,
                                      const sipp_embed_params *p, sipp_run **out,
                                      sipp_error *err) {
    const sipp__dialect *d = rm->dialect;
    if (!d->embed_path)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0, "embed: this %s has no embeddings API",
                          d->name);
    const char *path = d->embed_path;
    json_t *body = json_pack("{s:s,s:s}", "model", rm->model, "input", text);
    if (!body) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "embed: the text is not valid UTF-8");
    sipp_status st = merge_extra(rm, body, p->extra_json, err);
    if (st != SIPP_OK) {
        json_decref(body);
        return st;
    }
    return start(rm, SIPP__OP_EMBED, p->normalize, NULL, path, body, p->request_id, NULL, NULL, out,
                 err);
}
