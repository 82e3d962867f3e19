/*
 * run.c — the run channel: one request's stream and final response, shared by a producer (the
 * engine thread of a local endpoint; later HTTP clients) and the caller.
 *
 * Ownership: a run starts with two references. The caller drops its own in sipp_run_free(); the
 * producer drops its own in sipp__run_finish(), after which it never touches the run. Whoever
 * drops the last reference frees it.
 *
 * Streaming never blocks the producer: text goes into `pending` under the lock and the consumer
 * takes it by swapping buffers. Callbacks run on the consumer's thread (sipp_run_wait), never on
 * the engine thread. The producer reads the backlog to pause a run whose consumer lags.
 */
#define _POSIX_C_SOURCE 200809L
#include "common_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sipp_run {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;

    /* producer → consumer, under mu */
    sipp__buf pending;         /* text not yet taken by the consumer */
    uint32_t pending_tokens;
    bool done;
    sipp__buf text;            /* the response's full text */
    float *embedding;
    sipp_response resp; /* resp.usage and resp.stats point at the two below */
    sipp_usage usage;
    sipp_stats stats;
    /* log-probabilities (issue 18), under mu: lp[0, lp_n) staged by the producer, of which
     * [0, lp_published) went out with text and [0, lp_taken) were handed to the consumer.
     * Each entry's strings are one malloc'd block starting at its `token` (lp_block_new). */
    sipp_token_logprob *lp;
    size_t lp_n, lp_cap, lp_published, lp_taken;

    /* consumer-only */
    sipp_token_logprob *lp_delivered; /* the entries of the batch last handed out */
    size_t lp_delivered_n, lp_delivered_cap;
    sipp__buf delivered;       /* the batch last handed out by sipp_run_next */
    bool delivered_done;
    sipp_token_fn on_tokens;
    void *user_data;

    /* tools and reasoning (issue 18), under mu: queued deltas (delta_rec + strings), the
     * response's reasoning and tool calls */
    sipp__buf deltas;
    sipp__buf reasoning;
    sipp_tool_call *calls;
    size_t n_calls;
    /* consumer-only */
    sipp__buf delta_taken;     /* deltas taken from the queue, handed out one at a time */
    size_t delta_off;          /* next record in delta_taken */
    sipp_delta_fn on_delta;
    void *delta_user_data;

    atomic_bool cancel;
    bool not_sent; /* remote: the request never reached the peer (under mu) */
    sipp__run_wake_fn wake;
    void *producer;

    /* under mu: told once when the run ends (sipp__run_observe) */
    sipp__run_observer_fn observer;
    void *observer_ctx;
};

sipp_run *sipp__run_new(sipp_token_fn on_tokens, void *user_data) {
    sipp_run *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    r->refs = 2;
    sipp__buf_init(&r->pending, SIPP__RUN_TEXT_MAX);
    sipp__buf_init(&r->text, SIPP__RUN_TEXT_MAX);
    sipp__buf_init(&r->delivered, SIPP__RUN_TEXT_MAX);
    sipp__buf_init(&r->deltas, SIPP__RUN_TEXT_MAX);
    sipp__buf_init(&r->reasoning, SIPP__RUN_TEXT_MAX);
    sipp__buf_init(&r->delta_taken, SIPP__RUN_TEXT_MAX);
    r->resp.reasoning = "";
    r->on_tokens = on_tokens;
    r->user_data = user_data;
    atomic_init(&r->cancel, false);
    r->resp.struct_size = sizeof r->resp;
    r->usage.struct_size = sizeof r->usage;
    r->stats.struct_size = sizeof r->stats;
    r->resp.usage = &r->usage;
    r->resp.stats = &r->stats;
    r->resp.text = "";
    return r;
}

static void free_calls(sipp_tool_call *calls, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free((char *)calls[i].id);
        free((char *)calls[i].name);
        free((char *)calls[i].arguments);
    }
    free(calls);
}

static void run_release(sipp_run *r) {
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left > 0) return;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    sipp__buf_free(&r->pending);
    sipp__buf_free(&r->text);
    sipp__buf_free(&r->delivered);
    for (size_t i = 0; i < r->lp_n; i++) free((char *)r->lp[i].token);
    free(r->lp);
    free(r->lp_delivered);
    sipp__buf_free(&r->deltas);
    sipp__buf_free(&r->reasoning);
    sipp__buf_free(&r->delta_taken);
    free_calls(r->calls, r->n_calls);
    free(r->embedding);
    free(r);
}

void sipp__run_set_waker(sipp_run *run, sipp__run_wake_fn wake, void *producer) {
    pthread_mutex_lock(&run->mu);
    run->wake = wake;
    run->producer = producer;
    pthread_mutex_unlock(&run->mu);
}

/* ---- producer side ----------------------------------------------------------------------- */

sipp_status sipp__run_push_text(sipp_run *r, const char *text, size_t len, uint32_t n_tokens) {
    pthread_mutex_lock(&r->mu);
    sipp_status st = sipp__buf_append(&r->text, text, len);
    if (st == SIPP_OK) st = sipp__buf_append(&r->pending, text, len);
    if (st == SIPP_OK) {
        r->pending_tokens += n_tokens;
        size_t staged = r->lp_n - r->lp_published;
        r->lp_published += n_tokens < staged ? n_tokens : staged;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return st;
}

/* One malloc'd block holding an entry's strings and its alternatives: the token's bytes and
 * NUL first (so freeing `token` frees the block), then the sipp_top_logprob array at an
 * aligned offset, then the alternatives' bytes. */
static bool lp_block_new(sipp_token_logprob *e, const char *tok, size_t len, float logprob,
                         const sipp_top_logprob *top, uint32_t n_top) {
    const size_t align = _Alignof(sipp_top_logprob);
    size_t head = (len + 1 + align - 1) / align * align;
    size_t size = head + n_top * sizeof(sipp_top_logprob);
    for (uint32_t i = 0; i < n_top; i++) size += top[i].token_len + 1;
    char *b = malloc(size);
    if (!b) return false;
    memcpy(b, tok, len);
    b[len] = '\0';
    sipp_top_logprob *t = (sipp_top_logprob *)(void *)(b + head);
    char *p = (char *)(t + n_top);
    for (uint32_t i = 0; i < n_top; i++) {
        memcpy(p, top[i].token, top[i].token_len);
        p[top[i].token_len] = '\0';
        t[i] = (sipp_top_logprob){p, top[i].token_len, top[i].logprob};
        p += top[i].token_len + 1;
    }
    *e = (sipp_token_logprob){b, len, logprob, n_top ? t : NULL, n_top};
    return true;
}

sipp_status sipp__run_stage_logprob(sipp_run *r, const char *tok, size_t len, float logprob,
                                    const sipp_top_logprob *top, uint32_t n_top) {
    sipp_token_logprob e;
    if (!lp_block_new(&e, tok ? tok : "", tok ? len : 0, logprob, top, n_top))
        return SIPP_OUT_OF_MEMORY;
    pthread_mutex_lock(&r->mu);
    if (r->lp_n == r->lp_cap) {
        size_t cap = r->lp_cap ? 2 * r->lp_cap : 64;
        sipp_token_logprob *grown = realloc(r->lp, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&r->mu);
            free((char *)e.token);
            return SIPP_OUT_OF_MEMORY;
        }
        r->lp = grown;
        r->lp_cap = cap;
    }
    r->lp[r->lp_n++] = e;
    pthread_mutex_unlock(&r->mu);
    return SIPP_OK;
}

/* A queued delta: this header, then id_len + name_len + text_len bytes (id, name, text). */
typedef struct delta_rec {
    uint32_t kind, tool_index, has_id, id_len, name_len, n_tokens;
    uint64_t text_len;
} delta_rec;

sipp_status sipp__run_push_delta(sipp_run *r, sipp_delta_kind kind, uint32_t tool_index,
                                 const char *tool_id, const char *tool_name, const char *text,
                                 size_t len, uint32_t n_tokens) {
    if (!text) text = "";
    delta_rec h = {.kind = (uint32_t)kind, .tool_index = tool_index,
                   .has_id = tool_id || tool_name,
                   .id_len = tool_id ? (uint32_t)strlen(tool_id) : 0,
                   .name_len = tool_name ? (uint32_t)strlen(tool_name) : 0,
                   .n_tokens = n_tokens, .text_len = len};
    pthread_mutex_lock(&r->mu);
    sipp_status st = sipp__buf_append(&r->deltas, &h, sizeof h);
    if (st == SIPP_OK && h.id_len) st = sipp__buf_append(&r->deltas, tool_id, h.id_len);
    if (st == SIPP_OK && h.name_len) st = sipp__buf_append(&r->deltas, tool_name, h.name_len);
    if (st == SIPP_OK && len) st = sipp__buf_append(&r->deltas, text, len);
    if (st == SIPP_OK && kind == SIPP_DELTA_REASONING && len)
        st = sipp__buf_append(&r->reasoning, text, len);
    if (st == SIPP_OK && kind == SIPP_DELTA_CONTENT) {
        st = sipp__buf_append(&r->text, text, len);
        if (st == SIPP_OK) st = sipp__buf_append(&r->pending, text, len);
    }
    if (st == SIPP_OK) {
        r->pending_tokens += n_tokens;
        /* the tokens' staged log-probabilities go out with them, as with push_text */
        size_t staged = r->lp_n - r->lp_published;
        r->lp_published += n_tokens < staged ? n_tokens : staged;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return st;
}

sipp_status sipp__run_set_tool_calls(sipp_run *r, const sipp_tool_call *calls, size_t n) {
    sipp_tool_call *copy = n ? calloc(n, sizeof *copy) : NULL;
    if (n && !copy) return SIPP_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) {
        copy[i].id = sipp__strdup(calls[i].id ? calls[i].id : "");
        copy[i].name = sipp__strdup(calls[i].name ? calls[i].name : "");
        copy[i].arguments = sipp__strdup(calls[i].arguments ? calls[i].arguments : "{}");
        if (!copy[i].id || !copy[i].name || !copy[i].arguments) {
            free_calls(copy, i + 1);
            return SIPP_OUT_OF_MEMORY;
        }
    }
    pthread_mutex_lock(&r->mu);
    free_calls(r->calls, r->n_calls);
    r->calls = copy;
    r->n_calls = n;
    pthread_mutex_unlock(&r->mu);
    return SIPP_OK;
}

void sipp__run_set_delta_fn(sipp_run *r, sipp_delta_fn fn, void *user_data) {
    r->on_delta = fn;
    r->delta_user_data = user_data;
}

size_t sipp__run_backlog(sipp_run *r) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->pending.len > r->deltas.len ? r->pending.len : r->deltas.len;
    pthread_mutex_unlock(&r->mu);
    return n;
}

bool sipp__run_cancel_requested(const sipp_run *r) {
    return atomic_load(&((sipp_run *)r)->cancel);
}

void sipp__run_set_embedding(sipp_run *r, float *vec, uint32_t n, bool normalized) {
    pthread_mutex_lock(&r->mu);
    free(r->embedding);
    r->embedding = vec;
    r->resp.embedding = vec;
    r->resp.n_embd = n;
    r->resp.normalized = normalized;
    pthread_mutex_unlock(&r->mu);
}

void sipp__run_set_remote(sipp_run *r, uint32_t http_status, uint32_t retry_after_s,
                          const char *request_id, const char *error_code) {
    pthread_mutex_lock(&r->mu);
    r->resp.http_status = http_status;
    r->resp.retry_after_s = retry_after_s;
    if (request_id)
        snprintf(r->resp.request_id, sizeof r->resp.request_id, "%s", request_id);
    if (error_code)
        snprintf(r->resp.error_code, sizeof r->resp.error_code, "%s", error_code);
    pthread_mutex_unlock(&r->mu);
}

void sipp__run_set_not_sent(sipp_run *r) {
    pthread_mutex_lock(&r->mu);
    r->not_sent = true;
    pthread_mutex_unlock(&r->mu);
}

void sipp__run_finish(sipp_run *r, sipp_status status, const char *message,
                      sipp_finish_reason reason, const sipp_usage *usage,
                      const sipp_stats *stats) {
    pthread_mutex_lock(&r->mu);
    r->resp.status = status;
    if (message) {
        strncpy(r->resp.error_message, message, sizeof r->resp.error_message - 1);
        r->resp.error_message[sizeof r->resp.error_message - 1] = '\0';
    }
    r->resp.finish_reason = reason;
    if (usage) {
        r->usage = *usage;
        r->usage.struct_size = sizeof r->usage;
    }
    if (stats) {
        r->stats = *stats;
        r->stats.struct_size = sizeof r->stats;
    }
    r->resp.text = r->text.data ? r->text.data : "";
    r->resp.text_len = r->text.len;
    r->resp.reasoning = r->reasoning.data ? r->reasoning.data : "";
    r->resp.reasoning_len = r->reasoning.len;
    r->resp.tool_calls = r->calls;
    r->resp.n_tool_calls = r->n_calls;
    r->resp.logprobs = r->lp_published ? r->lp : NULL;
    r->resp.n_logprobs = r->lp_published;
    /* The response is final: the observer sees it before any waiter wakes, so a caller that
     * saw the run end also sees it counted (it takes only its own lock: no order to keep). */
    if (r->observer) r->observer(r->observer_ctx, &r->resp);
    r->observer = NULL;
    r->done = true;
    r->wake = NULL; /* the producer may go away now */
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    run_release(r);
}

void sipp__run_observe(sipp_run *r, sipp__run_observer_fn fn, void *ctx) {
    pthread_mutex_lock(&r->mu);
    bool done = r->done;
    if (!done) {
        r->observer = fn;
        r->observer_ctx = ctx;
    }
    pthread_mutex_unlock(&r->mu);
    if (done) fn(ctx, &r->resp); /* the caller's reference keeps it alive */
}

void sipp__run_discard(sipp_run *r, sipp_status st) {
    sipp__run_finish(r, st, NULL, SIPP_FINISH_NONE, NULL, NULL);
    sipp_run_free(r);
}

/* ---- consumer side ----------------------------------------------------------------------- */

/* Waits under r->mu until pending text, the end, or the deadline (abs_ms < 0: forever). */
static bool wait_locked(sipp_run *r, double abs_ms) {
    while (r->pending.len == 0 && r->deltas.len == 0 && !r->done) {
        if (abs_ms < 0) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        double left = abs_ms - sipp__now_ms();
        if (left <= 0) return false;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long ns = (long long)ts.tv_nsec + (long long)(left * 1e6);
        ts.tv_sec += (time_t)(ns / 1000000000LL);
        ts.tv_nsec = (long)(ns % 1000000000LL);
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT &&
            r->pending.len == 0 && r->deltas.len == 0 && !r->done)
            return false;
    }
    return true;
}

/* Moves queued deltas after those not yet handed out in `delta_taken`. Under r->mu. A
 * consumer reads text (sipp_run_next, on_tokens) or deltas (sipp_run_next_delta, on_delta);
 * what the other kind of reader would have got is dropped as it is taken, so an unread queue
 * never pauses the run. */
static void take_deltas_locked(sipp_run *r) {
    if (r->delta_off > 0) {
        size_t left = r->delta_taken.len - r->delta_off;
        memmove(r->delta_taken.data, r->delta_taken.data + r->delta_off, left);
        r->delta_taken.len = left;
        r->delta_off = 0;
    }
    if (r->deltas.len && sipp__buf_append(&r->delta_taken, r->deltas.data, r->deltas.len) == SIPP_OK)
        sipp__buf_reset(&r->deltas);
    else
        sipp__buf_reset(&r->deltas);
}

/* The next taken delta into *d (strings into the taken buffer); false when none. */
static bool pop_delta(sipp_run *r, sipp_delta *d) {
    if (r->delta_off + sizeof(delta_rec) > r->delta_taken.len) return false;
    delta_rec h;
    memcpy(&h, r->delta_taken.data + r->delta_off, sizeof h);
    const char *p = r->delta_taken.data + r->delta_off + sizeof h;
    *d = (sipp_delta){.struct_size = sizeof *d, .kind = (sipp_delta_kind)h.kind,
                      .tool_index = h.tool_index};
    /* strings are NUL-terminated in a scratch copy: ids and names are short */
    static _Thread_local char id[256], name[256];
    if (h.has_id) {
        snprintf(id, sizeof id, "%.*s", (int)h.id_len, p);
        snprintf(name, sizeof name, "%.*s", (int)h.name_len, p + h.id_len);
        d->tool_id = id;
        d->tool_name = name;
    }
    d->text = p + h.id_len + h.name_len;
    d->len = (size_t)h.text_len;
    r->delta_off += sizeof h + h.id_len + h.name_len + (size_t)h.text_len;
    return true;
}

/* Moves pending text into `delivered` (swap, no copy). Under r->mu. */
static uint32_t take_pending_locked(sipp_run *r) {
    sipp__buf tmp = r->delivered;
    r->delivered = r->pending;
    r->pending = tmp;
    sipp__buf_reset(&r->pending);
    uint32_t n = r->pending_tokens;
    r->pending_tokens = 0;
    /* the entries published with that text: copied, as the producer may grow r->lp */
    size_t k = r->lp_published - r->lp_taken;
    r->lp_delivered_n = 0;
    if (k > r->lp_delivered_cap) {
        sipp_token_logprob *grown = realloc(r->lp_delivered, k * sizeof *grown);
        if (grown) {
            r->lp_delivered = grown;
            r->lp_delivered_cap = k;
        }
    }
    if (k <= r->lp_delivered_cap && k > 0) {
        memcpy(r->lp_delivered, r->lp + r->lp_taken, k * sizeof *r->lp_delivered);
        r->lp_delivered_n = k;
    }
    r->lp_taken = r->lp_published;
    return n;
}

void sipp_run_batch_logprobs(const sipp_run *r, const sipp_token_logprob **out, size_t *n) {
    if (out) *out = r && r->lp_delivered_n ? r->lp_delivered : NULL;
    if (n) *n = r ? r->lp_delivered_n : 0;
}

sipp_status sipp_run_next(sipp_run *r, int timeout_ms, sipp_token_batch *out, sipp_error *err) {
    if (!r || !out) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "run and out are required");
    sipp_status st = sipp__struct_size_ok(out->struct_size, SIPP__FIRST_SIZE(token_batch),
                                          sizeof(sipp_token_batch), "token batch", err);
    if (st != SIPP_OK) return st; /* before taking text that could then not be handed out */
    double deadline = timeout_ms < 0 ? -1.0 : sipp__now_ms() + timeout_ms;
    pthread_mutex_lock(&r->mu);
    if (!wait_locked(r, deadline)) {
        pthread_mutex_unlock(&r->mu);
        return sipp__fail(err, SIPP_TIMEOUT, 0, "no tokens within %d ms", timeout_ms);
    }
    uint32_t n = take_pending_locked(r);
    sipp__buf_reset(&r->deltas); /* a text reader: deltas are not read */
    bool done = r->done;
    pthread_mutex_unlock(&r->mu);
    /* Written no further than the caller's struct goes (an older header's is smaller). */
    sipp_token_batch b = sipp__token_batch_defaults();
    b.text = r->delivered.data ? r->delivered.data : "";
    b.len = r->delivered.len;
    b.n_tokens = n;
    b.done = done;
    b.logprobs = r->lp_delivered_n ? r->lp_delivered : NULL;
    b.n_logprobs = r->lp_delivered_n;
    return sipp__struct_out(out, &b, sizeof b, SIPP__FIRST_SIZE(token_batch), "token batch", err);
}

sipp_status sipp_run_next_delta(sipp_run *r, int timeout_ms, sipp_delta *out, bool *done,
                                sipp_error *err) {
    if (!r || !out || !done)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "run, out and done are required");
    if (out->struct_size < sizeof(sipp_delta))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "delta: struct_size %u, expected %zu",
                          out->struct_size, sizeof(sipp_delta));
    *done = false;
    if (pop_delta(r, out)) return SIPP_OK;
    double deadline = timeout_ms < 0 ? -1.0 : sipp__now_ms() + timeout_ms;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (!wait_locked(r, deadline)) {
            pthread_mutex_unlock(&r->mu);
            return sipp__fail(err, SIPP_TIMEOUT, 0, "no deltas within %d ms", timeout_ms);
        }
        take_deltas_locked(r);
        take_pending_locked(r); /* a delta reader: the text is in the content deltas */
        if (pop_delta(r, out)) break;
        if (r->done) {
            *out = (sipp_delta){.struct_size = sizeof *out, .text = ""};
            *done = true;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return SIPP_OK;
}

sipp_status sipp_run_wait(sipp_run *r, const sipp_response **out, sipp_error *err) {
    if (!r) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "run is required");
    pthread_mutex_lock(&r->mu);
    for (;;) {
        wait_locked(r, -1.0);
        if (r->deltas.len > 0) {
            take_deltas_locked(r);
            if (r->on_delta) {
                pthread_mutex_unlock(&r->mu);
                sipp_delta d;
                /* delta_taken is consumer-only: read without the lock */
                while (pop_delta(r, &d)) r->on_delta(&d, r->delta_user_data);
                pthread_mutex_lock(&r->mu);
            }
            r->delta_off = 0;
            sipp__buf_reset(&r->delta_taken);
            continue;
        }
        if (r->pending.len > 0) {
            uint32_t n = take_pending_locked(r);
            if (r->on_tokens) {
                pthread_mutex_unlock(&r->mu);
                r->on_tokens(r->delivered.data, r->delivered.len, n, r->user_data);
                pthread_mutex_lock(&r->mu);
            }
            continue;
        }
        if (r->done) break;
    }
    pthread_mutex_unlock(&r->mu);
    if (out) *out = &r->resp;
    return SIPP_OK;
}

void sipp_run_cancel(sipp_run *r) {
    if (!r) return;
    if (atomic_exchange(&r->cancel, true)) return;
    pthread_mutex_lock(&r->mu);
    sipp__run_wake_fn wake = r->wake;
    void *producer = r->producer;
    pthread_mutex_unlock(&r->mu);
    /* Producers outlive every run they have not finished (see sipp_client_free). */
    if (wake) wake(producer);
}

bool sipp_run_is_done(const sipp_run *r) {
    sipp_run *m = (sipp_run *)r;
    pthread_mutex_lock(&m->mu);
    bool d = m->done;
    pthread_mutex_unlock(&m->mu);
    return d;
}

bool sipp_run_not_sent(const sipp_run *r) {
    if (!r) return false;
    sipp_run *m = (sipp_run *)r;
    pthread_mutex_lock(&m->mu);
    bool v = m->done && m->not_sent;
    pthread_mutex_unlock(&m->mu);
    return v;
}

void sipp_run_free(sipp_run *r) {
    if (!r) return;
    sipp_run_cancel(r);
    pthread_mutex_lock(&r->mu);
    while (!r->done) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    run_release(r);
}

const char *sipp_finish_reason_name(sipp_finish_reason reason) {
    switch (reason) {
    case SIPP_FINISH_STOP: return "stop";
    case SIPP_FINISH_LENGTH: return "length";
    case SIPP_FINISH_CANCELLED: return "cancelled";
    case SIPP_FINISH_TOOL_CALLS: return "tool_calls";
    default: return "none";
    }
}

const char *sipp_cache_source_name(sipp_cache_source source) {
    switch (source) {
    case SIPP_CACHE_LIVE: return "live";
    case SIPP_CACHE_SNAPSHOT: return "snapshot";
    default: return "none";
    }
}
