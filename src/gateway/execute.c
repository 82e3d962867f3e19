/*
 * execute.c — running an admitted request on its target: the submission (sampling options,
 * per-caller KV scope), the wait on the run in 20 ms slices, finite text answers, embeddings
 * (every input run, then the answer streamed from the vectors) and /v1/models. SSE streams are
 * stream.c's.
 *
 * A request runs on its connection's thread (src/http/http_server.c has the threading model).
 * While it waits it watches for a client hang-up and for shutdown, and cancels its run on
 * either. Everything that can fail fails before the status line; answers are encoded by the
 * request's profile (profiles.h). Invariants: r->run is NULL or owned by r (finish frees it);
 * usage is accounted once per run (sipp__gw_account).
 */
#define _GNU_SOURCE
#include "gateway_int.h"
#include "sipp_settings.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The text rows: those with a [targets.runtime] key are the target's request defaults. */
static const sipp_setting text_keys[] = {SIPP_TEXT_SETTINGS(SIPP_TEXT_SETTING_ROW)};
static void observe_tokens(gw_req *r, uint32_t n);
/* ---- upstream pools: attempts on replicas ---------------------------------------------------- */

/* The affinity key of the request: SHA-256 of "<caller> <value>" of the target's
 * pool.affinity_header, else of [cache] scope_header (the same end-user key as the KV scope).
 * Scoped by the caller like the KV scope, so one caller cannot aim at another's replica. */
static void affinity_key(gw_req *r, const gw_target *t) {
    const char *hdr = t->cfg->pool.affinity_header ? t->cfg->pool.affinity_header
                                                   : r->gw->cfg.cache_scope_header;
    const char *v = hdr ? sipp__httpd_header_get(r->http, hdr) : NULL;
    if (!v || !*v) return;
    char *key = NULL;
    if (asprintf(&key, "%s %s", sipp__gw_req_caller_name(r), v) < 0) return; /* no affinity */
    SHA256((const unsigned char *)key, strlen(key), r->affinity);
    free(key);
    r->has_affinity = true;
}

sipp_endpoint *sipp__gw_attempt_begin(gw_req *r) {
    gw_target *t = r->tgt;
    if (!t->pool) return r->ep ? r->ep : t->ep; /* a local target: what residency holds */
    if (!r->tried && !r->retries) affinity_key(r, t);
    int i = sipp__gw_pool_acquire(t->pool, r->has_affinity ? r->affinity : NULL, r->tried);
    if (i < 0) return NULL;
    r->replica = i;
    r->tried |= (uint64_t)1 << i;
    r->attempt_t0 = sipp__gw_now();
    return t->eps[i];
}

/* How an attempt's end bears on its replica's health. */
static sipp__pool_outcome outcome_of(const sipp_response *resp, bool not_sent) {
    if (not_sent) return SIPP__POOL_HARD;
    switch (resp->status) {
    case SIPP_OK:
        return resp->finish_reason == SIPP_FINISH_CANCELLED ? SIPP__POOL_NEUTRAL : SIPP__POOL_OK;
    case SIPP_TRANSPORT:
    case SIPP_UPSTREAM_TIMEOUT: return SIPP__POOL_HARD;
    case SIPP_OVERLOADED:
    case SIPP_RATE_LIMITED: return SIPP__POOL_BUSY;
    case SIPP_UPSTREAM_ERROR: return SIPP__POOL_SOFT;
    default: return SIPP__POOL_NEUTRAL; /* the request's own fault (400, 401, 404...) */
    }
}

/* Ends the attempt of `r->replica` (if any) with `o`. */
static void attempt_release(gw_req *r, sipp__pool_outcome o) {
    if (r->replica < 0) return;
    sipp__gw_pool_release(r->tgt->pool, r->replica, o,
                          sipp__gw_now() - r->attempt_t0);
    r->replica = -1;
}

bool sipp__gw_attempt_end(gw_req *r, const sipp_response *resp) {
    if (r->replica < 0) return false;
    gw_target *t = r->tgt;
    bool not_sent = sipp_run_not_sent(r->run);
    attempt_release(r, outcome_of(resp, not_sent));
    /* Sent again only when the caller saw no token of it and the upstream never ran it or lost
     * it: never sent (no connection), refused outright (503), or (pool.retry_lost) the
     * connection broke before the answer ended: the replica died with the request. A stream
     * that has sent a token to its caller is never sent again. */
    bool again = not_sent || (resp->status == SIPP_OVERLOADED && resp->http_status == 503) ||
                 (resp->status == SIPP_TRANSPORT && t->cfg->pool.retry_lost);
    /* a stream's caller has seen a token: never again; a finite answer is not out yet */
    bool streamed = r->call.stream && r->first_token != 0;
    if (!again || streamed || r->client_gone || r->shutdown_cut ||
        r->retries >= t->cfg->pool.max_retries || atomic_load(&r->gw->shutting_down))
        return false;
    sipp_run *old = r->run;
    r->run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    r->retries++;
    if (sipp__gw_submit_text(r, &err) != SIPP_OK || !r->run) {
        attempt_release(r, SIPP__POOL_NEUTRAL);
        r->run = old; /* the first failure is the answer */
        return false;
    }
    sipp__gw_pool_count_retry(t->pool);
    r->first_token = r->last_token = 0; /* the timings are the new attempt's */
    r->live_tokens = 0;
    json_t *x = json_pack("{s:s, s:s, s:s, s:i}", "request_id", r->id, "target", t->cfg->name,
                          "error", resp->error_message, "retry", (int)r->retries);
    sipp__gw_log("info", "request sent again to another replica", x);
    json_decref(x);
    sipp__gw_account(r, resp);
    sipp_run_free(old);
    return true;
}

sipp_status sipp__gw_submit_text(gw_req *r, sipp_error *err) {
    gw_target *t = r->tgt;
    sipp_endpoint *ep = sipp__gw_attempt_begin(r);
    if (!ep) {
        err->code = SIPP_OVERLOADED;
        snprintf(err->message, sizeof err->message, "every replica of target '%s' was tried",
                 t->cfg->name);
        return SIPP_OVERLOADED;
    }
    gw_call *c = &r->call;
    sipp_text_params tp;
    sipp_text_params_init(&tp, sizeof tp);
    /* A local target's request defaults, under what the request says: the text rows with a
     * [targets.runtime] key (ignore_eos). */
    for (size_t i = 0; i < sizeof text_keys / sizeof text_keys[0]; i++)
        if (t->cfg->type == SIPP__GW_LOCAL && text_keys[i].toml)
            memcpy((char *)&tp + text_keys[i].offset,
                   (const char *)&t->cfg->runtime.text + text_keys[i].offset,
                   sipp_setting_size(text_keys[i].kind));
    if (c->has_max_tokens)
        tp.max_tokens = c->max_tokens > 1000000 ? 1000000 : (uint32_t)c->max_tokens;
    if (c->has_temperature) tp.temperature = (float)c->temperature;
    if (c->has_top_p) tp.top_p = (float)c->top_p;
    tp.stop = c->stop;
    tp.n_stop = c->n_stop;
    tp.request_id = r->id; /* providers get the same x-request-id as the caller */
    tp.logprobs = c->logprobs;
    tp.top_logprobs = c->has_top_logprobs && c->top_logprobs > 0 ? (uint32_t)c->top_logprobs : 0;
    char scope[200];
    if (t->cfg->type == SIPP__GW_LOCAL) {
        /* Prefix reuse per caller, never across callers: one workflow key per caller, scoped
         * by the caller's name (the engine keys KV state by scope + key). With
         * cache.scope_header, per end user: the scope is "<caller> <SHA-256 of the header>"
         * (caller names have no spaces, so no scope collides with another caller's; the
         * digest keeps user ids out of snapshot files). Without the header: no key, so the
         * request reuses nothing and leaves nothing for others. */
        const char *hdr = r->gw->cfg.cache_scope_header;
        const char *who = hdr ? sipp__httpd_header_get(r->http, hdr) : NULL;
        if (!hdr) {
            tp.cache_scope = sipp__gw_req_caller_name(r);
            tp.context_key = "gateway";
        } else if (who && *who) {
            uint8_t d[32];
            SHA256((const unsigned char *)who, strlen(who), d);
            int n = snprintf(scope, sizeof scope, "%s ", sipp__gw_req_caller_name(r));
            for (size_t i = 0; i < sizeof d && n > 0 && (size_t)n + 2 < sizeof scope; i++)
                n += snprintf(scope + n, sizeof scope - (size_t)n, "%02x", d[i]);
            tp.cache_scope = scope;
            tp.context_key = "gateway";
        }
    }
    tp.media = c->media; /* multimodal parts (OpenAI image_url), owned by the call */
    tp.n_media = c->n_media;
    if (c->op == GW_OP_TRANSCRIBE) { /* issue 17: the audio goes to sipp_listen, at temp 0 */
        tp.media = NULL;
        tp.n_media = 0;
        tp.temperature = c->has_temperature ? (float)c->temperature : 0.0f;
        sipp_status st = sipp_listen(ep, &c->media[0], c->prompt, c->language, &tp, &r->run, err);
        if (st != SIPP_OK) attempt_release(r, SIPP__POOL_NEUTRAL);
        return st;
    }
    size_t schema_len; /* structured output (issue 18); its size was checked in validate */
    char *schema = sipp__gw_schema_text(c, &schema_len);
    if ((c->json_schema || c->json_object) && !schema) {
        attempt_release(r, SIPP__POOL_NEUTRAL);
        snprintf(err->message, sizeof err->message, "out of memory");
        return err->code = SIPP_OUT_OF_MEMORY;
    }
    tp.json_schema = schema;
    /* tools (issue 18): the messages with their tool parts go through sipp_chat_ex */
    tp.tools = c->tools;
    tp.n_tools = c->n_tools;
    tp.tool_choice = c->tool_choice;
    tp.tool_choice_name = c->tool_choice_name;
    tp.parallel_tool_calls = !c->no_parallel_tool_calls;
    tp.reasoning_mode = c->reasoning_mode;
    tp.reasoning_budget = c->budget_set ? c->reasoning_budget : -1;
    sipp_status st = c->op != GW_OP_CHAT ? sipp_query(ep, c->prompt, &tp, &r->run, err)
                     : c->chat ? sipp_chat_ex(ep, c->chat, c->n_messages, &tp, &r->run, err)
                               : sipp_chat(ep, c->messages, c->n_messages, &tp, &r->run, err);
    free(schema);
    if (st != SIPP_OK) attempt_release(r, SIPP__POOL_NEUTRAL); /* refused before any I/O */
    return st;
}

/* Pulls what the run produced within ~20 ms. Returns the batch (text may be empty). Records
 * TTFT and inter-token gaps. */
sipp_status sipp__gw_pull_batch(gw_req *r, sipp_token_batch *b) {
    *b = (sipp_token_batch){.struct_size = sizeof *b};
    sipp_status st = sipp_run_next(r->run, 20, b, NULL);
    if (st == SIPP_OK && b->n_tokens > 0) observe_tokens(r, b->n_tokens);
    return st;
}

/* Records the first token (TTFT) or an inter-token gap, and the live count. */
static void observe_tokens(gw_req *r, uint32_t n) {
    double t = sipp__gw_now();
    if (r->first_token == 0) {
        r->first_token = t;
        sipp__gw_metrics_observe_ttft(r->gw->metrics, r->target, t - r->t0);
    } else {
        sipp__gw_metrics_observe_itl(r->gw->metrics, r->target, t - r->last_token);
    }
    r->last_token = t;
    r->live_tokens += n;
    if (r->live)
        sipp__gw_admin_live_update(r->gw->admin, r, r->target, r->op, r->call.stream,
                                   r->live_tokens);
}

bool sipp__gw_delta_mode(const gw_req *r) {
    const gw_call *c = &r->call;
    if (c->op != GW_OP_CHAT || c->logprobs || !sipp__gw_codec(r->prof)->stream_delta) return false;
    if (c->n_tools > 0 || (r->prof == GW_PROFILE_SIPP && c->reasoning_asked)) return true;
    return r->prof == GW_PROFILE_OPENAI && r->tgt->cfg->type == SIPP__GW_LOCAL;
}

sipp_status sipp__gw_pull_delta(gw_req *r, sipp_delta *d, bool *done) {
    *d = (sipp_delta){.struct_size = sizeof *d};
    sipp_status st = sipp_run_next_delta(r->run, 20, d, done, NULL);
    if (st == SIPP_OK && !*done) observe_tokens(r, 1); /* a delta's tokens are not told: one */
    return st;
}

void sipp__gw_account(gw_req *r, const sipp_response *resp) {
    r->in_tok += resp->usage->input_tokens;
    r->out_tok += resp->usage->output_tokens;
    if (resp->stats->queue_ms > 0)
        sipp__gw_metrics_observe_queue(r->gw->metrics, r->target, resp->stats->queue_ms / 1000.0);
}


void sipp__gw_execute_text(gw_req *r) {
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_status st = sipp__gw_submit_text(r, &err);
    if (st != SIPP_OK) {
        sipp__gw_req_fail(r, sipp__gw_code_for_status(st), NULL, "%s", err.message);
        return;
    }
    sipp_token_batch b = {.struct_size = sizeof b};
    const sipp_response *resp;
    do { /* one attempt per round: another replica only when the first never got the request */
        for (;;) {
            if (sipp__gw_pull_batch(r, &b) == SIPP_OK && b.done) break;
            if (sipp__httpd_peer_closed(r->http)) {
                r->client_gone = true;
                sipp_run_cancel(r->run);
            } else if (atomic_load(&r->gw->shutting_down) && !r->shutdown_cut) {
                r->shutdown_cut = true;
                sipp_run_cancel(r->run);
            }
        }
        sipp_run_wait(r->run, &resp, NULL);
    } while (sipp__gw_attempt_end(r, resp));
    sipp__gw_account(r, resp);
    if (resp->status != SIPP_OK) {
        sipp__gw_req_fail(r, sipp__gw_code_for_status(resp->status), NULL, "%s",
                          resp->error_message);
        return;
    }
    if (resp->finish_reason == SIPP_FINISH_CANCELLED) {
        sipp__gw_req_fail(r, GW_CANCELLED, NULL,
                          r->shutdown_cut ? "the gateway is shutting down"
                                          : "the run was cancelled");
        return;
    }
    if (r->call.op == GW_OP_TRANSCRIBE) {
        sipp__gw_transcribe_answer(r, resp->text, resp->text_len);
        return;
    }
    gw_answer ans = sipp__gw_req_answer(r);
    ans.created = (long)time(NULL);
    ans.logprobs = resp->logprobs;
    ans.n_logprobs = resp->n_logprobs;
    ans.tool_calls = resp->tool_calls;
    ans.n_tool_calls = resp->n_tool_calls;
    ans.reasoning = resp->reasoning;
    json_t *body = sipp__gw_codec(r->prof)->text(&ans, resp->text, resp->text_len,
                                                 resp->finish_reason);
    if (!body) {
        sipp__gw_req_fail(r, GW_EXECUTION, NULL,
                          "the answer could not be encoded (invalid UTF-8?)");
        return;
    }
    sipp__gw_req_respond(r, 200, body);
}

static long embed_pull(void *ctx, sipp__httpd_req *http, char *buf, size_t cap) {
    (void)http;
    gw_req *r = ctx;
    return (long)sipp__gw_embed_writer_read(r->embed, buf, cap);
}

static void embed_release(void *ctx, bool completed) {
    gw_req *r = ctx;
    if (!completed) {
        r->client_gone = true; /* write error or idle timeout */
        if (r->code == GW_OK) r->code = GW_CANCELLED;
    }
    sipp__gw_req_finish(r);
}

/* The embeddings side of sipp__gw_attempt_end: reports the outcome; true when the input
 * should go to another replica (never sent, or a 503) and one is left within max_retries. */
static bool embed_again(gw_req *r, const sipp_response *resp) {
    if (r->replica < 0) return false;
    gw_target *t = r->tgt;
    bool not_sent = sipp_run_not_sent(r->run);
    attempt_release(r, outcome_of(resp, not_sent));
    bool again = not_sent || (resp->status == SIPP_OVERLOADED && resp->http_status == 503) ||
                 (resp->status == SIPP_TRANSPORT && t->cfg->pool.retry_lost);
    if (!again || r->client_gone || r->shutdown_cut || r->retries >= t->cfg->pool.max_retries ||
        __builtin_popcountll(r->tried) >= (int)t->n_eps)
        return false;
    r->retries++;
    sipp__gw_pool_count_retry(t->pool);
    return true;
}

/* Runs the inputs one after the other into one float array (bounded by max_embedding_floats),
 * then streams the answer out through the writer (profiles.c) in the HTTP layer's blocks:
 * never a JSON tree of every float nor a copy of the whole text. Everything that can fail
 * (a run, the cap when the size is only known from the first vector, a NaN) fails before the
 * status line. Returns true when the answer streams (finish() then runs at its release). */
bool sipp__gw_execute_embed(gw_req *r) {
    gw_target *t = r->tgt;
    float *vecs = NULL;
    uint32_t dim = 0;
    sipp_embed_params ep;
    sipp_embed_params_init(&ep, sizeof ep);
    ep.request_id = r->id;
    for (size_t i = 0; i < r->call.n_inputs; i++) {
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        sipp_run *run = NULL;
        r->tried = 0; /* each input is a request of its own to the pool */
        r->retries = 0;
    again:;
        sipp_endpoint *target_ep = sipp__gw_attempt_begin(r);
        sipp_status st = target_ep ? sipp_embed(target_ep, r->call.inputs[i], &ep, &run, &err)
                                   : SIPP_OVERLOADED;
        if (st != SIPP_OK) {
            free(vecs);
            if (!target_ep) snprintf(err.message, sizeof err.message, "no replica is left");
            attempt_release(r, SIPP__POOL_NEUTRAL);
            return sipp__gw_req_fail(r, sipp__gw_code_for_status(st), "input", "%s", err.message);
        }
        const sipp_response *resp;
        r->run = run;
        while (!sipp_run_is_done(run)) {
            sipp_token_batch b = {.struct_size = sizeof b};
            if (sipp_run_next(run, 20, &b, NULL) == SIPP_OK && b.done) break;
            if (sipp__httpd_peer_closed(r->http)) {
                r->client_gone = true;
                sipp_run_cancel(run);
            } else if (atomic_load(&r->gw->shutting_down)) {
                r->shutdown_cut = true;
                sipp_run_cancel(run);
            }
        }
        sipp_run_wait(run, &resp, NULL);
        if (embed_again(r, resp)) {
            sipp_run_free(run);
            r->run = run = NULL;
            goto again;
        }
        sipp__gw_account(r, resp);
        if (resp->status != SIPP_OK || !resp->embedding) {
            free(vecs);
            bool failed = resp->status != SIPP_OK;
            return sipp__gw_req_fail(r,
                                     failed ? sipp__gw_code_for_status(resp->status) : GW_CANCELLED,
                                     NULL, "%s", failed ? resp->error_message : "cancelled");
        }
        if (i == 0) { /* a provider's size is known only now */
            dim = resp->n_embd;
            if (!sipp__gw_embed_fits(r, dim)) return false;
            vecs = malloc((r->call.n_inputs * dim + 1) * sizeof *vecs);
            if (!vecs) return sipp__gw_req_fail(r, GW_EXECUTION, NULL, "out of memory");
        } else if (resp->n_embd != dim) {
            free(vecs);
            return sipp__gw_req_fail(r, GW_EXECUTION, NULL,
                                     "the target answered vectors of %u and %u "
                                     "dimensions in one request",
                                     dim, resp->n_embd);
        }
        if (!sipp__gw_embed_finite(resp->embedding, dim)) {
            free(vecs);
            return sipp__gw_req_fail(r, GW_EXECUTION, NULL,
                                     "the target produced a NaN or infinite embedding value");
        }
        memcpy(vecs + i * dim, resp->embedding, dim * sizeof *vecs);
        sipp_run_free(run);
        r->run = NULL;
    }
    r->embed = sipp__gw_embed_writer_new(r->prof, r->call.base64, r->id, t->cfg->name, r->in_tok,
                                         r->out_tok, vecs, r->call.n_inputs, dim);
    if (!r->embed) return sipp__gw_req_fail(r, GW_EXECUTION, NULL, "out of memory");
    r->status = 200;
    sipp__httpd_header h[10];
    char retry[16];
    size_t n = sipp__gw_req_headers(r, h, "application/json", retry);
    sipp__httpd_stream(r->http, 200, h, n, embed_pull, embed_release, r);
    return true;
}

void sipp__gw_answer_models(gw_req *r) {
    json_t *data = json_array();
    for (size_t i = 0; i < r->gen->n_targets; i++) {
        const sipp__gw_target *t = r->gen->targets[i]->cfg;
        if (!sipp__gw_req_may_use(r, t->name)) continue;
        json_t *m = sipp__gw_openai_model(t->name, sipp__gw_target_type_name(t->type));
        /* local targets: residency */
        const char *res = sipp__gw_target_residency(r->gw, r->gen->targets[i]);
        if (m && res) json_object_set_new(m, "status", json_string(res));
        json_array_append_new(data, m);
    }
    sipp__gw_req_respond(r, 200, sipp__gw_openai_model_list(data));
}
