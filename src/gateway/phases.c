/*
 * phases.c — the pipeline's phases, each a function that passes (true) or has answered the
 * request with an error (false), in the protocol's order (listeners.c calls them):
 *
 *   blocklist -> Host and Origin (listeners.c) -> rate limit (client IP) -> auth (bearer or
 *   x-api-key; then the caller's own limits) -> decode (413, framing, Content-Type, JSON depth,
 *   shape) -> authorize (caller's target list) -> resolve (target) -> validate (ranges, unknown
 *   and local-only keys, capability) -> admission (token reservation, global and per-caller
 *   concurrency)
 *
 * Invariants: a phase that fails has answered (sipp__gw_req_fail) and set r->code; one that
 * passes has answered nothing. Mutable settings are copied under set_mu and acted on after it
 * is released. Bearer secrets are compared as SHA-256 digests, every digest every time.
 */
#define _GNU_SOURCE
#include "gateway_int.h"

#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

bool sipp__gw_match_route(sipp__gw *gw, const char *path, gw_route *out) {
    static const gw_route by_slot[] = {
        [SIPP__GW_R_QUERY] = {GW_PROFILE_SIPP, GW_OP_QUERY, "POST"},
        [SIPP__GW_R_CHAT] = {GW_PROFILE_SIPP, GW_OP_CHAT, "POST"},
        [SIPP__GW_R_EMBED] = {GW_PROFILE_SIPP, GW_OP_EMBED, "POST"},
        [SIPP__GW_R_CHAT_COMPLETIONS] = {GW_PROFILE_OPENAI, GW_OP_CHAT, "POST"},
        [SIPP__GW_R_COMPLETIONS] = {GW_PROFILE_OPENAI, GW_OP_QUERY, "POST"},
        [SIPP__GW_R_EMBEDDINGS] = {GW_PROFILE_OPENAI, GW_OP_EMBED, "POST"},
        [SIPP__GW_R_MODELS] = {GW_PROFILE_OPENAI, GW_OP_MODELS, "GET"},
        [SIPP__GW_R_MESSAGES] = {GW_PROFILE_ANTHROPIC, GW_OP_CHAT, "POST"},
        [SIPP__GW_R_TRANSCRIPTIONS] = {GW_PROFILE_OPENAI, GW_OP_TRANSCRIBE, "POST"},
    };
    for (size_t s = 0; s <= SIPP__GW_R_MESSAGES; s++)
        if (strcmp(gw->cfg.routes[s], path) == 0) {
            *out = by_slot[s];
            return true;
        }
    if (strcmp(gw->cfg.routes[SIPP__GW_R_TRANSCRIPTIONS], path) == 0) {
        *out = by_slot[SIPP__GW_R_TRANSCRIPTIONS];
        return true;
    }
    return false;
}

bool sipp__gw_phase_blocklist(gw_req *r, const sipp__gw_ip *ip) {
    pthread_rwlock_rdlock(&r->gw->set_mu);
    bool blocked = sipp__gw_cidr_list_match(r->gw->blocklist, r->gw->n_blocklist, ip);
    pthread_rwlock_unlock(&r->gw->set_mu);
    if (blocked) return sipp__gw_req_fail(r, GW_BLOCKED, NULL, "the client address is blocked");
    return true;
}

static bool store_down(gw_req *r) {
    r->retry_after = 1;
    return sipp__gw_req_fail(r, GW_UNAVAILABLE, NULL,
                             "the rate-limit store is unreachable; retry shortly");
}

bool sipp__gw_phase_rate_limit_ip(gw_req *r) {
    sipp__gw_config *c = &r->gw->cfg;
    pthread_rwlock_rdlock(&r->gw->set_mu);
    bool on = c->rate_limit_enabled;
    sipp__gw_rate req = {c->rate_limit_rpm, c->rate_limit_burst}, tok = {c->rate_limit_tpm, 0};
    pthread_rwlock_unlock(&r->gw->set_mu);
    if (!on) return true;
    char id[64];
    sipp__gw_req_ip_key(r, id, sizeof id);
    uint32_t wait = 0;
    int rc = sipp__gw_limits_take(r->gw->limits, SIPP__GW_SCOPE_IP, id, req, tok, &wait);
    if (rc < 0) return store_down(r);
    if (rc == 0) {
        r->retry_after = wait;
        return sipp__gw_req_fail(r, GW_RATE_LIMITED, NULL,
                                 "rate limit of this client address reached; retry in %u s", wait);
    }
    return true;
}

/* Credentials in the URL end up in access logs, proxies and browser history: a request that
 * carries one in its query string is refused, whatever the token, even on an open gateway. */
static bool phase_no_url_credentials(gw_req *r) {
    static const char *const names[] = {"access_token", "api_key", "apikey", "api-key", "key",
                                        "token", "auth", "authorization", "bearer", NULL};
    for (const char *const *n = names; *n; n++)
        if (sipp__httpd_has_query_arg(r->http, *n))
            return sipp__gw_req_fail(
                r, GW_AUTHENTICATION, NULL,
                "credentials in the query string ('%s') are not accepted; send "
                "'Authorization: Bearer <token>'",
                *n);
    return true;
}

bool sipp__gw_phase_auth(gw_req *r) {
    sipp__gw *gw = r->gw;
    if (!phase_no_url_credentials(r)) return false;
    const gw_gen *g = r->gen;
    if (g->n_callers == 0) return true; /* no [[tokens]]: an open gateway */
    /* The token comes as `Authorization: Bearer <token>` or, as Anthropic's clients send it, as
     * `x-api-key: <token>` (the same tokens either way; Authorization wins when both come). */
    const char *h = sipp__httpd_header_get(r->http, "authorization");
    const char *tok = NULL;
    if (h && strncasecmp(h, "Bearer ", 7) == 0)
        tok = h + 7;
    else if (!h)
        tok = sipp__httpd_header_get(r->http, "x-api-key");
    if (!tok)
        return sipp__gw_req_fail(r, GW_AUTHENTICATION, NULL,
                                 "missing 'Authorization: Bearer' (or 'x-api-key') header");
    while (*tok == ' ') tok++;
    uint8_t d[32];
    SHA256((const unsigned char *)tok, strlen(tok), d);
    int found = -1;
    for (size_t i = 0; i < g->n_callers; i++) /* every digest is compared: no early exit */
        if (sipp__gw_digest_equal(d, g->callers[i].digest)) found = (int)i;
    if (found < 0) return sipp__gw_req_fail(r, GW_AUTHENTICATION, NULL, "unknown bearer token");
    r->who = &g->callers[found];
    r->caller = r->who->slot == SIZE_MAX ? -1 : (int)r->who->slot;
    const sipp__gw_token *t = r->who->cfg;
    pthread_rwlock_rdlock(&gw->set_mu);
    sipp__gw_rate req = {t->requests_per_minute, 0}, tpm = {t->tokens_per_minute, 0};
    pthread_rwlock_unlock(&gw->set_mu);
    if (req.per_minute || tpm.per_minute) {
        uint32_t wait = 0;
        int rc =
            sipp__gw_limits_take(gw->limits, SIPP__GW_SCOPE_CALLER, t->caller, req, tpm, &wait);
        if (rc < 0) return store_down(r);
        if (rc == 0) {
            r->retry_after = wait;
            return sipp__gw_req_fail(r, GW_RATE_LIMITED, NULL,
                                     "rate limit of caller '%s' reached; retry in %u s", t->caller,
                                     wait);
        }
    }
    return true;
}

bool sipp__gw_phase_decode(gw_req *r) {
    const char *why;
    int rej = sipp__httpd_rejected(r->http, &why);
    if (rej == 413)
        return sipp__gw_req_fail(r, GW_PAYLOAD_TOO_LARGE, NULL,
                                 "the request body is larger than %llu bytes",
                                 (unsigned long long)r->gw->cfg.max_request_bytes);
    if (rej) return sipp__gw_req_fail(r, GW_INVALID_JSON, NULL, "%s", why);
    /* the transcription route takes multipart/form-data (transcribe.c): Origin was checked
     * for every route, so a cross-site form post is refused before this */
    if (r->op == GW_OP_TRANSCRIBE) return sipp__gw_transcribe_decode(r);
    /* Only JSON: a browser sends text/plain, form and header-less bodies cross-site without a
     * CORS preflight, application/json never. */
    if (!sipp__gw_is_json_type(sipp__httpd_header_get(r->http, "content-type")))
        return sipp__gw_req_fail(r, GW_UNSUPPORTED_MEDIA_TYPE, NULL,
                                 "the body must be sent with 'Content-Type: application/json'");
    size_t len;
    const char *body = sipp__httpd_body(r->http, &len);
    char msg[256], param[64];
    r->call.max_media_bytes = r->gw->cfg.max_media_bytes;
    r->call.max_image_pixels = r->gw->cfg.max_image_pixels;
    r->call.max_audio_seconds = r->gw->cfg.max_audio_seconds;
    if (!sipp__gw_decode_body(r->prof, r->op, body, len, r->gw->cfg.max_json_depth, &r->root,
                              &r->call, msg, sizeof msg, param, sizeof param))
        return sipp__gw_req_fail(r, GW_INVALID_JSON, param, "%s", msg);
    if (r->call.media_too_large)
        return sipp__gw_req_fail(r, GW_PAYLOAD_TOO_LARGE, "messages",
                                 "the request's media are larger than %llu bytes (max_media_bytes)",
                                 (unsigned long long)r->gw->cfg.max_media_bytes);
    return true;
}

bool sipp__gw_phase_authorize(gw_req *r) {
    if (!sipp__gw_req_may_use(r, r->call.model))
        return sipp__gw_req_fail(r, GW_AUTHORIZATION, "model",
                                 "caller '%s' may not use target '%.128s'",
                                 sipp__gw_req_caller_name(r), r->call.model);
    return true;
}

bool sipp__gw_phase_resolve(gw_req *r) {
    const gw_gen *g = r->gen;
    for (size_t i = 0; i < g->n_targets; i++)
        if (strcmp(g->targets[i]->cfg->name, r->call.model) == 0) {
            gw_target *t = g->targets[i];
            int st = atomic_load(&t->state);
            r->tgt = t;
            r->target = t->slot == SIZE_MAX ? -1 : (int)t->slot;
            if (st == GW_TARGET_LOADING) {
                r->retry_after = 1;
                return sipp__gw_req_fail(r, GW_UNAVAILABLE, "model", "target '%s' is still loading",
                                         t->cfg->name);
            }
            if (st == GW_TARGET_FAILED)
                return sipp__gw_req_fail(r, GW_EXECUTION, "model", "target '%s' failed to load",
                                         t->cfg->name);
            return true;
        }
    return sipp__gw_req_fail(r, GW_RESOLUTION, "model", "unknown target '%.128s'", r->call.model);
}

/* The cap on one embeddings request: inputs x dimensions within max_embedding_floats (the
 * answer's float array is 4 bytes a float and its text ~12). Answers 400 naming the limit. */
bool sipp__gw_embed_fits(gw_req *r, uint32_t dim) {
    uint64_t need = (uint64_t)r->call.n_inputs * dim, max = r->gw->cfg.max_embedding_floats;
    if (need <= max) return true;
    return sipp__gw_req_fail(
        r, GW_INVALID_REQUEST, "input",
        "%zu input(s) x %u dimensions = %llu floats is more than this gateway's "
        "max_embedding_floats (%llu)",
        r->call.n_inputs, dim, (unsigned long long)need, (unsigned long long)max);
}

bool sipp__gw_phase_validate(gw_req *r) {
    gw_call *c = &r->call;
    if (c->invalid[0])
        return sipp__gw_req_fail(r, GW_INVALID_REQUEST, c->invalid_param, "%s", c->invalid);
    /* structured output (issue 18): the schema's compact size within max_schema_bytes */
    size_t schema_bytes = c->json_schema ? json_dumpb(c->json_schema, NULL, 0, JSON_COMPACT) : 0;
    if (schema_bytes > r->gw->cfg.max_schema_bytes)
        return sipp__gw_req_fail(r, GW_INVALID_REQUEST,
                                 r->prof == GW_PROFILE_OPENAI ? "response_format" : "json_schema",
                                 "the JSON schema is %zu bytes, more than this gateway's "
                                 "max_schema_bytes (%u)",
                                 schema_bytes, r->gw->cfg.max_schema_bytes);
    /* tools (issue 18): their schemas together within max_schema_bytes too */
    if (c->tool_schema_bytes > r->gw->cfg.max_schema_bytes)
        return sipp__gw_req_fail(r, GW_INVALID_REQUEST, "tools",
                                 "the tools' parameter schemas are %zu bytes, more than this "
                                 "gateway's max_schema_bytes (%u)",
                                 c->tool_schema_bytes, r->gw->cfg.max_schema_bytes);
    if (c->stream && c->n_tools && c->logprobs)
        return sipp__gw_req_fail(r, GW_INVALID_REQUEST, "logprobs",
                                 "'logprobs' are not streamed together with 'tools'; ask without "
                                 "stream or without logprobs");
    gw_target *t = r->tgt;
    if (c->op == GW_OP_TRANSCRIBE && t->cfg->type != SIPP__GW_LOCAL)
        return sipp__gw_req_fail(r, GW_INVALID_REQUEST, "model",
                                 "target '%s' is remote: transcription is unsupported on remote "
                                 "targets",
                                 t->cfg->name);
    if (c->op == GW_OP_TRANSCRIBE && !t->audio_in)
        return sipp__gw_req_fail(r, GW_INVALID_REQUEST, "model",
                                 "target '%s' takes no audio: it has no audio encoder as its "
                                 "projector (mmproj)",
                                 t->cfg->name);
    if (c->op == GW_OP_EMBED && !t->can_embed)
        return sipp__gw_req_fail(r, GW_INVALID_REQUEST, "model", "target '%s' cannot embed",
                                 t->cfg->name);
    if (c->op == GW_OP_EMBED && t->n_embd && !sipp__gw_embed_fits(r, t->n_embd)) return false;
    if (c->op == GW_OP_QUERY && !t->can_generate)
        return sipp__gw_req_fail(r, GW_INVALID_REQUEST, "model", "target '%s' cannot generate text",
                                 t->cfg->name);
    if (c->op == GW_OP_CHAT && !t->can_chat)
        return sipp__gw_req_fail(r, GW_INVALID_REQUEST, "model", "target '%s' has no chat template",
                                 t->cfg->name);
    for (size_t i = 0; t->cfg->type == SIPP__GW_LOCAL && i < c->n_media; i++) {
        if (c->media[i].kind == SIPP_MEDIA_IMAGE && !t->vision)
            return sipp__gw_req_fail(r, GW_INVALID_REQUEST, "messages",
                                     "target '%s' takes no images: it has no vision projector "
                                     "(mmproj)",
                                     t->cfg->name);
        if (c->media[i].kind == SIPP_MEDIA_AUDIO && !t->audio_in)
            return sipp__gw_req_fail(r, GW_INVALID_REQUEST, "messages",
                                     "target '%s' takes no audio: it has no audio encoder as its "
                                     "projector (mmproj)",
                                     t->cfg->name);
    }
    return true;
}

/* Reserves the request's tokens from the per-IP and the caller's token budgets, so parallel
 * requests cannot all spend the same budget; finish() settles. */
static bool phase_reserve(gw_req *r) {
    uint32_t ip_tpm, caller_tpm;
    sipp__gw_req_token_rates(r, &ip_tpm, &caller_tpm);
    if (!ip_tpm && !caller_tpm) return true;
    uint64_t need = sipp__gw_req_token_estimate(&r->call);
    uint32_t wait = 0;
    int rc = 1;
    if (ip_tpm) {
        char id[64];
        sipp__gw_req_ip_key(r, id, sizeof id);
        rc = sipp__gw_limits_reserve(r->gw->limits, SIPP__GW_SCOPE_IP, id,
                                     (sipp__gw_rate){ip_tpm, 0}, need, &r->hold[SIPP__GW_SCOPE_IP],
                                     &wait);
    }
    if (rc == 1 && caller_tpm)
        rc = sipp__gw_limits_reserve(r->gw->limits, SIPP__GW_SCOPE_CALLER,
                                     sipp__gw_req_caller_name(r), (sipp__gw_rate){caller_tpm, 0},
                                     need, &r->hold[SIPP__GW_SCOPE_CALLER], &wait);
    if (rc < 0) return store_down(r);
    if (rc == 0) {
        r->retry_after = wait;
        return sipp__gw_req_fail(
            r, GW_RATE_LIMITED, NULL,
            "token budget reached (this request reserves up to %llu tokens); retry "
            "in %u s",
            (unsigned long long)need, wait);
    }
    return true;
}

bool sipp__gw_phase_admission(gw_req *r) {
    if (!phase_reserve(r)) return false;
    if (!sipp__gw_admission_acquire(&r->gw->admission,
                                    r->caller >= 0 ? (size_t)r->caller : SIZE_MAX)) {
        r->retry_after = 1;
        return sipp__gw_req_fail(r, GW_ADMISSION, NULL,
                                 "too many requests in flight; retry shortly");
    }
    r->permit = true;
    return true;
}

