/*
 * openai.c — the OpenAI adapter, also used for any OpenAI-compatible server (vLLM, llama-server,
 * Ollama, OpenRouter...): POST {base}/completions (query), {base}/chat/completions (chat), both
 * streamed as SSE `data:` chunks ending in `data: [DONE]`, and {base}/embeddings.
 *
 * Each request is one `remote_run` owned by the HTTP transfer thread from start to on_done; it
 * feeds the run channel as chunks arrive and finishes the run exactly once. The provider counts
 * its live remote runs so that removing the endpoint can cancel them and wait for their end.
 *
 * Secrets: the API key goes only into the Authorization header; no message built here contains
 * a header, and peer error messages are copied only from the JSON error body's "message".
 */
#define _GNU_SOURCE
#include "providers_int.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_OPENAI_BASE "https://api.openai.com/v1"
#define DEFAULT_CONNECT_MS 10000u
#define DEFAULT_IDLE_MS 60000u
#define EMBED_BODY_MAX (64u << 20)

struct sipp__provider {
    sipp_provider_kind kind;
    char *model;
    char *base_url; /* without a trailing slash */
    char *auth_header; /* "Authorization: Bearer ..." or NULL */
    uint32_t connect_ms, total_ms, idle_ms;
    sipp__http *http;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct remote_run *live; /* remote runs not yet finished, guarded by mu */
};

typedef enum op { OP_QUERY, OP_CHAT, OP_EMBED } op;

typedef struct remote_run {
    struct remote_run *prev, *next; /* the provider's live list */
    sipp__provider *pv;
    sipp_run *run;
    op op;
    bool normalize;
    long status;
    uint32_t retry_after;
    char request_id[64];
    sipp__sse sse;
    sipp__buf body;       /* error body (status >= 400) or the embeddings answer */
    bool done_seen;       /* [DONE] or a finish_reason arrived */
    sipp_finish_reason reason;
    sipp_usage usage;
    uint32_t n_chunks;
    char stream_error[SIPP_ERROR_MESSAGE_CAP];
    double t_submit, t_first, t_last;
} remote_run;

/* ============================================================================================
 * Error classification (shared by the adapters)
 * ========================================================================================== */

static bool has(const char *s, const char *needle) { return s && strstr(s, needle); }

sipp_status sipp__provider_classify(long http_status, const char *code, const char *type) {
    if (has(code, "insufficient_quota") || has(type, "insufficient_quota") ||
        has(code, "billing") || has(type, "billing"))
        return SIPP_QUOTA;
    switch (http_status) {
    case 400: case 413: case 422: return SIPP_INVALID_ARGUMENT;
    case 401: return SIPP_AUTHENTICATION;
    case 402: return SIPP_QUOTA;
    case 403: return SIPP_AUTHORIZATION;
    case 404: return SIPP_MODEL_NOT_FOUND;
    case 408: case 504: return SIPP_UPSTREAM_TIMEOUT;
    case 429: return SIPP_RATE_LIMITED;
    case 503: case 529: return SIPP_OVERLOADED;
    default: return http_status >= 500 ? SIPP_UPSTREAM : SIPP_INVALID_ARGUMENT;
    }
}

/* ============================================================================================
 * Provider
 * ========================================================================================== */

sipp_provider_params sipp_provider_params_default(void) {
    sipp_provider_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.kind = SIPP_PROVIDER_OPENAI_COMPATIBLE;
    return p;
}

sipp_status sipp__provider_new(const sipp_provider_params *p, sipp__http *http,
                               sipp__provider **out, sipp_error *err) {
    if (!p || p->struct_size < sizeof *p)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "provider params missing or too small");
    if (p->kind != SIPP_PROVIDER_OPENAI && p->kind != SIPP_PROVIDER_OPENAI_COMPATIBLE)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0, "unknown provider kind %d", (int)p->kind);
    if (!p->model || !p->model[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "provider: model is required");
    const char *base = p->base_url;
    if (!base && p->kind == SIPP_PROVIDER_OPENAI) base = DEFAULT_OPENAI_BASE;
    if (!base)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "provider openai_compatible: base_url is required");
    sipp_status st = sipp__http_url_check(base, err);
    if (st != SIPP_OK) return st;
    const char *key = p->api_key;
    const char *env = p->api_key_env ? p->api_key_env
                                     : p->kind == SIPP_PROVIDER_OPENAI ? "OPENAI_API_KEY" : NULL;
    if (!key && env) {
        key = getenv(env);
        if (!key || !key[0])
            return sipp__fail(err, SIPP_AUTHENTICATION, 0,
                              "provider: the API key variable %s is not set", env);
    }
    sipp__provider *pv = calloc(1, sizeof *pv);
    if (!pv) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    pv->kind = p->kind;
    pv->model = sipp__strdup(p->model);
    pv->base_url = sipp__strdup(base);
    if (pv->base_url) {
        size_t l = strlen(pv->base_url);
        while (l > 0 && pv->base_url[l - 1] == '/') pv->base_url[--l] = '\0';
    }
    if (key && asprintf(&pv->auth_header, "Authorization: Bearer %s", key) < 0) pv->auth_header = NULL;
    pv->connect_ms = p->connect_timeout_ms ? p->connect_timeout_ms : DEFAULT_CONNECT_MS;
    pv->total_ms = p->request_timeout_ms;
    pv->idle_ms = p->idle_timeout_ms ? p->idle_timeout_ms : DEFAULT_IDLE_MS;
    pv->http = http;
    pthread_mutex_init(&pv->mu, NULL);
    pthread_cond_init(&pv->cv, NULL);
    if (!pv->model || !pv->base_url || (key && !pv->auth_header)) {
        sipp__provider_free(pv);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    *out = pv;
    return SIPP_OK;
}

void sipp__provider_free(sipp__provider *pv) {
    if (!pv) return;
    /* Cancel every live run, then wait until the transfer thread has ended each. A run leaves
     * the list (under mu) before it is finished, so each one here is still alive. */
    pthread_mutex_lock(&pv->mu);
    for (struct remote_run *rr = pv->live; rr; rr = rr->next) sipp_run_cancel(rr->run);
    while (pv->live) pthread_cond_wait(&pv->cv, &pv->mu);
    pthread_mutex_unlock(&pv->mu);
    if (pv->auth_header) { /* the key should not linger in freed memory */
        memset(pv->auth_header, 0, strlen(pv->auth_header));
        free(pv->auth_header);
    }
    free(pv->model);
    free(pv->base_url);
    pthread_mutex_destroy(&pv->mu);
    pthread_cond_destroy(&pv->cv);
    free(pv);
}

/* ============================================================================================
 * Requests
 * ========================================================================================== */

/* Rejects options of the local engine, naming the field. */
static sipp_status reject_local_only(const sipp_text_params *p, sipp_error *err) {
    sipp_text_params d = sipp_text_params_default();
    const char *field = p->context_key ? "context_key"
                        : p->cache_scope ? "cache_scope"
                        : p->grammar ? "grammar"
                        : p->json_schema ? "json_schema"
                        : p->ignore_eos ? "ignore_eos"
                        : p->top_k != d.top_k ? "top_k"
                        : p->min_p != d.min_p ? "min_p"
                        : p->repeat_penalty != d.repeat_penalty ? "repeat_penalty"
                                                                : NULL;
    if (field)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "%s is an option of local endpoints; a provider endpoint cannot honour it",
                          field);
    return SIPP_OK;
}

static void remote_free(remote_run *rr) {
    sipp__sse_free(&rr->sse);
    sipp__buf_free(&rr->body);
    free(rr);
}

/* Finishes the run, counts the provider's live runs down and frees the remote run. */
static void remote_finish(remote_run *rr, sipp_status st, const char *msg, sipp_finish_reason reason) {
    double now = sipp__now_ms();
    sipp_stats stats = {.struct_size = sizeof stats};
    stats.total_ms = now - rr->t_submit;
    if (rr->t_first > 0) {
        stats.ttft_ms = rr->t_first - rr->t_submit;
        stats.decode_ms = rr->t_last - rr->t_first;
        if (rr->usage.output_tokens > 1 && stats.decode_ms > 0)
            stats.decode_tok_s = (rr->usage.output_tokens - 1) / (stats.decode_ms / 1e3);
    }
    sipp__run_set_remote(rr->run, (uint32_t)rr->status, rr->retry_after, rr->request_id);
    sipp__provider *pv = rr->pv;
    sipp_run *run = rr->run;
    sipp_usage usage = rr->usage;
    usage.struct_size = sizeof usage;
    if (!usage.total_tokens) usage.total_tokens = usage.input_tokens + usage.output_tokens;
    pthread_mutex_lock(&pv->mu); /* leave the live list first; pv is not touched after this */
    if (rr->prev) rr->prev->next = rr->next; else pv->live = rr->next;
    if (rr->next) rr->next->prev = rr->prev;
    pthread_cond_broadcast(&pv->cv);
    pthread_mutex_unlock(&pv->mu);
    remote_free(rr);
    sipp__run_finish(run, st, msg, reason, &usage, &stats);
}

static sipp_finish_reason map_finish(const char *s) {
    if (!s) return SIPP_FINISH_NONE;
    return strcmp(s, "length") == 0 ? SIPP_FINISH_LENGTH : SIPP_FINISH_STOP;
}

static void read_usage(remote_run *rr, json_t *u) {
    if (!json_is_object(u)) return;
    rr->usage.input_tokens = (uint32_t)json_integer_value(json_object_get(u, "prompt_tokens"));
    rr->usage.output_tokens = (uint32_t)json_integer_value(json_object_get(u, "completion_tokens"));
    rr->usage.total_tokens = (uint32_t)json_integer_value(json_object_get(u, "total_tokens"));
}

/* One SSE event of a completion stream. */
static bool on_event(const sipp__sse_event *ev, void *ud) {
    remote_run *rr = ud;
    if (strcmp(ev->data, "[DONE]") == 0) {
        rr->done_seen = true;
        return true;
    }
    json_error_t je;
    json_t *j = json_loadb(ev->data, ev->data_len, 0, &je);
    if (!json_is_object(j)) {
        snprintf(rr->stream_error, sizeof rr->stream_error, "the stream carried invalid JSON: %s",
                 je.text);
        json_decref(j);
        return false;
    }
    json_t *e = json_object_get(j, "error");
    if (e) { /* an error after the headers went out */
        const char *m = json_string_value(json_object_get(e, "message"));
        snprintf(rr->stream_error, sizeof rr->stream_error, "the provider failed mid-stream: %s",
                 m ? m : "(no message)");
        json_decref(j);
        return false;
    }
    read_usage(rr, json_object_get(j, "usage"));
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    if (c0) {
        json_t *text = rr->op == OP_CHAT ? json_object_get(json_object_get(c0, "delta"), "content")
                                         : json_object_get(c0, "text");
        size_t len = json_string_length(text);
        if (len > 0) {
            double now = sipp__now_ms();
            if (rr->t_first == 0) rr->t_first = now;
            rr->t_last = now;
            rr->n_chunks++;
            sipp__run_push_text(rr->run, json_string_value(text), len, 1);
        }
        const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
        if (fr) rr->reason = map_finish(fr);
    }
    json_decref(j);
    return true;
}

/* ---- HTTP handlers (transfer thread) ------------------------------------------------------- */

static void h_status(long status, void *ud) { ((remote_run *)ud)->status = status; }

static void h_header(const char *name, size_t nl, const char *value, size_t vl, void *ud) {
    remote_run *rr = ud;
    if (nl == 12 && strncasecmp(name, "x-request-id", 12) == 0) {
        size_t n = vl < sizeof rr->request_id - 1 ? vl : sizeof rr->request_id - 1;
        memcpy(rr->request_id, value, n);
        rr->request_id[n] = '\0';
    } else if (nl == 11 && strncasecmp(name, "retry-after", 11) == 0) {
        char buf[32];
        size_t n = vl < sizeof buf - 1 ? vl : sizeof buf - 1;
        memcpy(buf, value, n);
        buf[n] = '\0';
        rr->retry_after = (uint32_t)strtoul(buf, NULL, 10);
    }
}

static bool h_body(const char *data, size_t len, void *ud) {
    remote_run *rr = ud;
    if (rr->status >= 400 || rr->op == OP_EMBED) {
        /* error bodies are capped; what is beyond the cap is dropped, not an error */
        size_t room = rr->body.max - rr->body.len;
        sipp__buf_append(&rr->body, data, len < room ? len : room);
        if (rr->op == OP_EMBED && rr->status < 400 && len > room) { /* an answer must be whole */
            snprintf(rr->stream_error, sizeof rr->stream_error,
                     "the provider's embeddings answer exceeds %zu bytes", rr->body.max);
            return false;
        }
        return true;
    }
    sipp_error err = sipp_error_default();
    sipp_status st = sipp__sse_feed(&rr->sse, data, len, on_event, rr, &err);
    if (st == SIPP_OUT_OF_MEMORY)
        snprintf(rr->stream_error, sizeof rr->stream_error, "%s", err.message);
    return st == SIPP_OK;
}

static bool h_abort(void *ud) { return sipp__run_cancel_requested(((remote_run *)ud)->run); }

/* The error of a >= 400 answer, from its JSON body when it has one. */
static void finish_http_error(remote_run *rr) {
    json_t *j = json_loadb(rr->body.data ? rr->body.data : "", rr->body.len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (!msg) msg = json_string_value(e); /* {"error": "text"} (Ollama) */
    if (!msg) msg = json_string_value(json_object_get(j, "message")); /* vLLM flat shape */
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *type = json_string_value(json_object_get(e, "type"));
    sipp_status st = sipp__provider_classify(rr->status, code, type);
    char full[SIPP_ERROR_MESSAGE_CAP], retry[48] = "";
    if (rr->retry_after) snprintf(retry, sizeof retry, " (retry after %u s)", rr->retry_after);
    snprintf(full, sizeof full, "provider answered %ld (%s)%s: %.180s", rr->status,
             sipp_status_name(st), retry, msg ? msg : "(no message)");
    json_decref(j);
    remote_finish(rr, st, full, SIPP_FINISH_NONE);
}

static void finish_embedding(remote_run *rr) {
    json_t *j = json_loadb(rr->body.data ? rr->body.data : "", rr->body.len, 0, NULL);
    json_t *v = json_object_get(json_array_get(json_object_get(j, "data"), 0), "embedding");
    size_t n = json_array_size(v);
    float *vec = n ? malloc(n * sizeof *vec) : NULL;
    if (!vec) {
        json_decref(j);
        remote_finish(rr, SIPP_UPSTREAM, "the provider's embeddings answer has no vector",
                      SIPP_FINISH_NONE);
        return;
    }
    double norm = 0;
    for (size_t i = 0; i < n; i++) {
        vec[i] = (float)json_number_value(json_array_get(v, i));
        norm += (double)vec[i] * vec[i];
    }
    norm = sqrt(norm);
    if (rr->normalize && norm > 0)
        for (size_t i = 0; i < n; i++) vec[i] = (float)(vec[i] / norm);
    read_usage(rr, json_object_get(j, "usage"));
    json_decref(j);
    sipp__run_set_embedding(rr->run, vec, (uint32_t)n, rr->normalize);
    remote_finish(rr, SIPP_OK, NULL, SIPP_FINISH_STOP);
}

static void h_done(sipp_status st, const char *message, void *ud) {
    remote_run *rr = ud;
    if (st == SIPP_CANCELLED && sipp__run_cancel_requested(rr->run)) {
        remote_finish(rr, SIPP_OK, NULL, SIPP_FINISH_CANCELLED);
    } else if (rr->stream_error[0]) {
        char msg[SIPP_ERROR_MESSAGE_CAP];
        snprintf(msg, sizeof msg, "%s", rr->stream_error);
        remote_finish(rr, SIPP_UPSTREAM, msg, SIPP_FINISH_NONE);
    } else if (st == SIPP_TIMEOUT) {
        remote_finish(rr, SIPP_UPSTREAM_TIMEOUT, message, SIPP_FINISH_NONE);
    } else if (st != SIPP_OK) {
        remote_finish(rr, SIPP_TRANSPORT, message, SIPP_FINISH_NONE);
    } else if (rr->status >= 400) {
        finish_http_error(rr);
    } else if (rr->status < 200 || rr->status >= 300) {
        char msg[96];
        snprintf(msg, sizeof msg, "unexpected HTTP status %ld from the provider", rr->status);
        remote_finish(rr, SIPP_UPSTREAM, msg, SIPP_FINISH_NONE);
    } else if (rr->op == OP_EMBED) {
        finish_embedding(rr);
    } else if (!rr->done_seen && rr->reason == SIPP_FINISH_NONE) {
        remote_finish(rr, SIPP_UPSTREAM, "the stream ended without [DONE] or a finish reason",
                      SIPP_FINISH_NONE);
    } else {
        if (!rr->usage.output_tokens) rr->usage.output_tokens = rr->n_chunks;
        remote_finish(rr, SIPP_OK, NULL, rr->reason ? rr->reason : SIPP_FINISH_STOP);
    }
}

static void run_wake(void *producer) { sipp__http_wake(producer); }

/* Starts `body` (JSON, taken) at `path` as a remote run. */
static sipp_status start(sipp__provider *pv, op op, bool normalize, const char *path, json_t *body,
                         sipp_token_fn cb, void *cb_ud, sipp_run **out, sipp_error *err) {
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char *url = NULL;
    remote_run *rr = calloc(1, sizeof *rr);
    if (!text || !rr || asprintf(&url, "%s%s", pv->base_url, path) < 0) {
        free(text);
        free(rr);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    rr->pv = pv;
    rr->op = op;
    rr->normalize = normalize;
    sipp__sse_init(&rr->sse, SIPP__SSE_EVENT_MAX);
    sipp__buf_init(&rr->body, op == OP_EMBED ? EMBED_BODY_MAX : SIPP__HTTP_ERROR_BODY_MAX);
    rr->run = sipp__run_new(cb, cb_ud);
    if (!rr->run) {
        free(text);
        free(url);
        remote_free(rr);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    sipp__run_set_waker(rr->run, run_wake, pv->http);
    const char *headers[3] = {"Content-Type: application/json", "Accept: text/event-stream, application/json",
                              pv->auth_header};
    sipp__http_request req = {"POST", url, headers, pv->auth_header ? 3 : 2, text, strlen(text),
                              pv->connect_ms, pv->total_ms, pv->idle_ms};
    sipp__http_handlers h = {h_status, h_header, h_body, h_abort, h_done};
    rr->t_submit = sipp__now_ms();
    pthread_mutex_lock(&pv->mu);
    rr->next = pv->live;
    if (pv->live) pv->live->prev = rr;
    pv->live = rr;
    pthread_mutex_unlock(&pv->mu);
    sipp_run *run = rr->run;
    sipp_status st = sipp__http_start(pv->http, &req, &h, rr, err);
    free(text);
    free(url);
    if (st != SIPP_OK) { /* no callback will run: end it here */
        pthread_mutex_lock(&pv->mu);
        if (rr->prev) rr->prev->next = rr->next; else pv->live = rr->next;
        if (rr->next) rr->next->prev = rr->prev;
        pthread_mutex_unlock(&pv->mu);
        remote_free(rr);
        sipp__run_discard(run, st);
        return st;
    }
    *out = run;
    return SIPP_OK;
}

sipp_status sipp__provider_submit_text(sipp__provider *pv, const char *prompt,
                                       const sipp_message *messages, size_t n_messages,
                                       const sipp_text_params *p, sipp_run **out, sipp_error *err) {
    sipp_status st = reject_local_only(p, err);
    if (st != SIPP_OK) return st;
    json_t *body = json_pack("{s:s,s:i,s:f,s:f,s:b,s:{s:b}}", "model", pv->model, "max_tokens",
                             (json_int_t)p->max_tokens, "temperature", (double)p->temperature,
                             "top_p", (double)p->top_p, "stream", 1, "stream_options",
                             "include_usage", 1);
    if (!body) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (p->seed != 0xFFFFFFFFu) json_object_set_new(body, "seed", json_integer(p->seed));
    if (p->n_stop) {
        json_t *stops = json_array();
        for (size_t i = 0; i < p->n_stop; i++) json_array_append_new(stops, json_string(p->stop[i]));
        json_object_set_new(body, "stop", stops);
    }
    if (messages) {
        json_t *msgs = json_array();
        for (size_t i = 0; i < n_messages; i++) {
            json_t *m = json_pack("{s:s,s:s}", "role", messages[i].role, "content",
                                  messages[i].content);
            if (!m) {
                json_decref(msgs);
                json_decref(body);
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "chat: message %zu is not valid UTF-8", i);
            }
            json_array_append_new(msgs, m);
        }
        json_object_set_new(body, "messages", msgs);
        return start(pv, OP_CHAT, false, "/chat/completions", body, p->on_tokens, p->user_data, out, err);
    }
    json_t *jp = json_string(prompt);
    if (!jp) {
        json_decref(body);
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "query: the prompt is not valid UTF-8");
    }
    json_object_set_new(body, "prompt", jp);
    return start(pv, OP_QUERY, false, "/completions", body, p->on_tokens, p->user_data, out, err);
}

sipp_status sipp__provider_submit_embed(sipp__provider *pv, const char *text,
                                        const sipp_embed_params *p, sipp_run **out,
                                        sipp_error *err) {
    json_t *body = json_pack("{s:s,s:s}", "model", pv->model, "input", text);
    if (!body) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "embed: the text is not valid UTF-8");
    return start(pv, OP_EMBED, p->normalize, "/embeddings", body, NULL, NULL, out, err);
}
