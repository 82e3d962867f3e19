/*
 * client.c — sipp_client: a registry of endpoints, and the request entry points that validate
 * what is common to every endpoint kind before handing the request to the endpoint.
 *
 * Endpoint kinds: local (an engine) and remote (a provider or a Sipp gateway: src/providers,
 * over the client's HTTP transfer thread, created with the first remote endpoint). The registry is guarded by one mutex;
 * requests on an endpoint do not take it. A local endpoint's model_path, and the path given to
 * sipp_model_inspect, may be a pulled name, resolved here through the models directory (src/hub,
 * sipp_model_resolve) before the engine sees it: the engine never calls the hub.
 *
 * Endpoint lifetime (sipp.h, sipp_endpoint): a handle stays valid until sipp_client_free.
 * Removing or replacing an endpoint closes it: under its `life` lock taken for writing it is
 * marked closed and its engine or remote is detached, then freed outside the lock; every call
 * on the handle holds `life` for reading while it uses them, so it either finishes first or sees
 * `closed` and fails with SIPP_CLOSED. The closed shell moves to the client's `closed` list.
 *
 * Swapping (issue 21): re-adding the id of a local endpoint loads the new model first (the old
 * one keeps serving meanwhile), then closes the old handle without cancelling: its engine is
 * detached like any close, but handed to a drain thread that waits until every run submitted on
 * it has ended and only then frees it. Removing an endpoint, replacing a remote one and freeing
 * the client still cancel. Drain threads are joined when the client is freed.
 */
#define _POSIX_C_SOURCE 200809L
#include "../common/common_int.h"
#include "../common/media_parse.h"
#include "../engine/engine_int.h"
#include "../hub/hub_int.h"
#include "../providers/providers_int.h"
#include "client_int.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An old engine of a swapped local endpoint, freed by its own thread once its runs ended. */
typedef struct draining {
    struct draining *next;
    sipp_client *client;
    sipp__engine *engine;
    pthread_t thread;
    bool done; /* under the client's mu: the thread has freed the engine (join it) */
} draining;

struct sipp_client {
    pthread_mutex_t mu;
    draining *draining; /* under mu */
    bool freeing;       /* under mu: drain threads stop waiting and cancel */
    sipp_endpoint *endpoints; /* open, found by id */
    sipp_endpoint *closed;    /* removed or replaced: shells kept until the client is freed */
    sipp__http *http; /* the transfer thread of remote endpoints; NULL until the first one */
};

sipp_status sipp_client_new(const sipp_client_params *params, sipp_client **out,
                            sipp_error *err) {
    if (!out) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "out is required");
    *out = NULL;
    sipp_client_params p = sipp__client_params_defaults();
    if (params) {
        sipp_status st = sipp__params_in(&p, sizeof p, params, SIPP__FIRST_SIZE(client_params),
                                         "client params", err);
        if (st != SIPP_OK) return st;
        /* The level is the process's (sipp_log_set); only an explicit one is applied, so a
         * default never overrides SIPP_LOG. */
        if (p.log_level != SIPP_LOG_ERROR) sipp_log_set(p.log_level);
    }
    sipp_client *c = calloc(1, sizeof *c);
    if (!c) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return SIPP_OK;
}

/* Closes an endpoint (see the file comment): waits for calls in progress on it, detaches its
 * engine or remote, then cancels their runs and frees them outside the lock. Idempotent. */
static void endpoint_close(sipp_endpoint *ep) {
    pthread_rwlock_wrlock(&ep->life);
    sipp__engine *engine = ep->engine;
    sipp__remote *remote = ep->remote;
    ep->engine = NULL;
    ep->remote = NULL;
    ep->closed = true;
    pthread_rwlock_unlock(&ep->life);
    sipp__engine_close(engine);
    sipp__remote_free(remote);
}

static void endpoint_free(sipp_endpoint *ep) {
    if (!ep) return;
    endpoint_close(ep);
    pthread_rwlock_destroy(&ep->life);
    sipp__signals_destroy(&ep->signals);
    free(ep->id);
    free(ep);
}

static void endpoint_list_free(sipp_endpoint *ep) {
    while (ep) {
        sipp_endpoint *next = ep->next;
        endpoint_free(ep);
        ep = next;
    }
}

sipp_status sipp__endpoint_enter(const sipp_endpoint *cep, sipp_error *err) {
    sipp_endpoint *ep = (sipp_endpoint *)cep;
    pthread_rwlock_rdlock(&ep->life);
    if (!ep->closed) return SIPP_OK;
    pthread_rwlock_unlock(&ep->life);
    return sipp__fail(err, SIPP_CLOSED, 0, "endpoint '%s' was removed or replaced", ep->id);
}

void sipp__endpoint_leave(const sipp_endpoint *ep) {
    pthread_rwlock_unlock(&((sipp_endpoint *)ep)->life);
}

/* Joins the drain threads that are done (all of them, waiting, when `all`). */
static void drains_join(sipp_client *c, bool all) {
    pthread_mutex_lock(&c->mu);
    draining **pp = &c->draining, *joinable = NULL;
    while (*pp) {
        draining *d = *pp;
        if (all || d->done) {
            *pp = d->next;
            d->next = joinable;
            joinable = d;
        } else {
            pp = &d->next;
        }
    }
    pthread_mutex_unlock(&c->mu);
    while (joinable) {
        draining *d = joinable;
        joinable = d->next;
        pthread_join(d->thread, NULL);
        free(d);
    }
}

void sipp_client_free(sipp_client *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->freeing = true; /* the drain threads cancel what is left (within one wait) */
    pthread_mutex_unlock(&c->mu);
    drains_join(c, true);
    endpoint_list_free(c->endpoints);
    endpoint_list_free(c->closed);
    sipp__http_free(c->http); /* after the endpoints: their runs end on its thread */
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Unlinks the endpoint `id` and returns it (NULL if none). Under c->mu. */
static sipp_endpoint *unlink_locked(sipp_client *c, const char *id) {
    for (sipp_endpoint **pp = &c->endpoints; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->id, id) == 0) {
            sipp_endpoint *ep = *pp;
            *pp = ep->next;
            return ep;
        }
    }
    return NULL;
}

/* Closes an unlinked endpoint and keeps its shell on the closed list. */
static void retire(sipp_client *c, sipp_endpoint *ep) {
    endpoint_close(ep);
    pthread_mutex_lock(&c->mu);
    ep->next = c->closed;
    c->closed = ep;
    pthread_mutex_unlock(&c->mu);
}

static void *drain_main(void *arg) {
    draining *d = arg;
    for (;;) {
        if (sipp__engine_wait_idle(d->engine, 100)) break;
        pthread_mutex_lock(&d->client->mu);
        bool freeing = d->client->freeing;
        pthread_mutex_unlock(&d->client->mu);
        if (freeing) break;
    }
    sipp__engine_close(d->engine); /* cancels only what a freed client left running */
    pthread_mutex_lock(&d->client->mu);
    d->done = true;
    pthread_mutex_unlock(&d->client->mu);
    return NULL;
}

/* Closes an unlinked local endpoint that a new one replaced, letting its runs finish: the
 * engine goes to a drain thread (see the file comment). Falls back to cancelling (retire) when
 * no thread can be started. */
static void retire_draining(sipp_client *c, sipp_endpoint *old) {
    draining *d = calloc(1, sizeof *d);
    if (d) {
        pthread_rwlock_wrlock(&old->life); /* calls in progress on the handle finish first */
        d->client = c;
        d->engine = old->engine;
        old->engine = NULL;
        old->closed = true;
        pthread_rwlock_unlock(&old->life);
        pthread_mutex_lock(&c->mu);
        if (pthread_create(&d->thread, NULL, drain_main, d) == 0) {
            d->next = c->draining;
            c->draining = d;
            d = NULL;
        }
        pthread_mutex_unlock(&c->mu);
        if (d) sipp__engine_close(d->engine); /* no thread: cancel now */
        free(d);
    }
    retire(c, old); /* the shell to the closed list (closing again is a no-op) */
    drains_join(c, false);
}

/* Links a built endpoint under its id, replacing (and closing) an older one: a local one
 * replaced by a local one is drained (its runs finish), any other is cancelled. */
static void register_endpoint(sipp_client *c, sipp_endpoint *ep) {
    pthread_mutex_lock(&c->mu);
    sipp_endpoint *old = unlink_locked(c, ep->id);
    ep->next = c->endpoints;
    c->endpoints = ep;
    pthread_mutex_unlock(&c->mu);
    if (!old) return;
    if (old->kind == ENDPOINT_LOCAL && ep->kind == ENDPOINT_LOCAL)
        retire_draining(c, old);
    else
        retire(c, old);
}

static sipp_endpoint *endpoint_alloc(const char *id, endpoint_kind kind) {
    sipp_endpoint *ep = calloc(1, sizeof *ep);
    if (!ep) return NULL;
    if (!(ep->id = sipp__strdup(id)) || pthread_rwlock_init(&ep->life, NULL) != 0) {
        free(ep->id);
        free(ep);
        return NULL;
    }
    ep->kind = kind;
    sipp__signals_init(&ep->signals);
    return ep;
}

sipp_status sipp_client_add_local(sipp_client *c, const char *id, const sipp_local_params *params,
                                  sipp_endpoint **out, sipp_error *err) {
    if (out) *out = NULL;
    if (!c || !id || !id[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "client and a non-empty id are required");
    if (!params) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "local params are required");
    /* A pulled name (OWNER/REPO[:QUANT]) becomes the path of its file in the models directory;
     * the engine (shared with the wasm build, which has no store) only ever sees paths. */
    sipp_local_params lp = sipp__local_params_defaults();
    sipp_status st = sipp__params_in(&lp, sizeof lp, params, SIPP__FIRST_SIZE(local_params),
                                     "local params", err);
    if (st != SIPP_OK) return st;
    char path[4096];
    if (lp.model_path && lp.model_path[0]) {
        if ((st = sipp_model_resolve(lp.model_path, path, sizeof path, err)) != SIPP_OK) return st;
        lp.model_path = path;
    }
    /* A model opened from the store (its pulled name, or the path the store gives it) takes the
     * projector its pull stored beside it when the caller names none: mmproj NULL ("" asks for
     * none), as the original Sipp stages the projector beside the model (issue 17). */
    char dir[4096], mmproj[4096];
    const char *pulled_mmproj = NULL;
    if (!lp.mmproj && lp.model_path && lp.model_path[0]) {
        sipp__hub_models_dir(dir, sizeof dir);
        if (sipp__hub_mmproj_for(dir, lp.model_path, mmproj, sizeof mmproj)) pulled_mmproj = mmproj;
    }
    sipp_endpoint *ep = endpoint_alloc(id, ENDPOINT_LOCAL);
    if (!ep) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    /* Load outside the registry lock: loading can take long. */
    st = sipp__engine_open_pulled(&lp, pulled_mmproj, &ep->engine, err);
    if (st != SIPP_OK) {
        endpoint_free(ep);
        return st;
    }
    register_endpoint(c, ep);
    if (out) *out = ep;
    return SIPP_OK;
}

/* Inspection without an endpoint: like add_local, a pulled name is resolved here, so the
 * engine's model.c only ever sees paths. */
sipp_status sipp_model_inspect(const char *path, sipp_endpoint_info *info, char **chat_template_out,
                               sipp_error *err) {
    if (chat_template_out) *chat_template_out = NULL;
    if (!path || !info)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "path and an initialised info are required");
    sipp_status st = sipp__struct_size_ok(info->struct_size, SIPP__FIRST_SIZE(endpoint_info),
                                          sizeof *info, "endpoint info", err);
    if (st != SIPP_OK) return st;
    char resolved[4096];
    if ((st = sipp_model_resolve(path, resolved, sizeof resolved, err)) != SIPP_OK) return st;
    sipp_endpoint_info in = sipp__endpoint_info_defaults();
    st = sipp__model_inspect(resolved, &in, chat_template_out, err);
    if (st != SIPP_OK) return st;
    return sipp__struct_out(info, &in, sizeof in, SIPP__FIRST_SIZE(endpoint_info), "endpoint info",
                            err);
}

/* Registers a remote endpoint built by `make` over the client's transfer thread. */
static sipp_status add_remote(sipp_client *c, const char *id, const void *params,
                              sipp_status (*make)(const void *, sipp__http *, sipp__remote **,
                                                  sipp_error *),
                              sipp_endpoint **out, sipp_error *err) {
    if (out) *out = NULL;
    if (!c || !id || !id[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "client and a non-empty id are required");
    pthread_mutex_lock(&c->mu);
    sipp_status st = c->http ? SIPP_OK : sipp__http_new(&c->http, err);
    sipp__http *http = c->http;
    pthread_mutex_unlock(&c->mu);
    if (st != SIPP_OK) return st;
    sipp_endpoint *ep = endpoint_alloc(id, ENDPOINT_REMOTE);
    if (!ep) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    st = make(params, http, &ep->remote, err);
    if (st != SIPP_OK) {
        endpoint_free(ep);
        return st;
    }
    register_endpoint(c, ep);
    if (out) *out = ep;
    return SIPP_OK;
}

static sipp_status make_provider(const void *p, sipp__http *http, sipp__remote **out,
                                 sipp_error *err) {
    return sipp__remote_new_provider(p, http, out, err);
}

static sipp_status make_gateway(const void *p, sipp__http *http, sipp__remote **out,
                                sipp_error *err) {
    return sipp__remote_new_gateway(p, http, out, err);
}

sipp_status sipp_client_add_provider(sipp_client *c, const char *id,
                                     const sipp_provider_params *params, sipp_endpoint **out,
                                     sipp_error *err) {
    return add_remote(c, id, params, make_provider, out, err);
}

sipp_status sipp_client_add_gateway(sipp_client *c, const char *id,
                                    const sipp_gateway_params *params, sipp_endpoint **out,
                                    sipp_error *err) {
    return add_remote(c, id, params, make_gateway, out, err);
}

sipp_endpoint *sipp_client_get_endpoint(sipp_client *c, const char *id) {
    if (!c || !id) return NULL;
    pthread_mutex_lock(&c->mu);
    sipp_endpoint *ep = c->endpoints;
    while (ep && strcmp(ep->id, id) != 0) ep = ep->next;
    pthread_mutex_unlock(&c->mu);
    return ep;
}

sipp_status sipp_client_remove(sipp_client *c, const char *id, sipp_error *err) {
    if (!c || !id) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "client and id are required");
    pthread_mutex_lock(&c->mu);
    sipp_endpoint *ep = unlink_locked(c, id);
    pthread_mutex_unlock(&c->mu);
    if (!ep) return sipp__fail(err, SIPP_NOT_FOUND, 0, "no endpoint '%s'", id);
    retire(c, ep);
    return SIPP_OK;
}

sipp_status sipp_endpoint_get_info(const sipp_endpoint *ep, sipp_endpoint_info *out,
                                   sipp_error *err) {
    if (!ep || !out)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "endpoint and out are required");
    sipp_status st = sipp__struct_size_ok(out->struct_size, SIPP__FIRST_SIZE(endpoint_info),
                                          sizeof *out, "endpoint info", err);
    if (st != SIPP_OK || (st = sipp__endpoint_enter(ep, err)) != SIPP_OK) return st;
    sipp_endpoint_info in = sipp__endpoint_info_defaults();
    if (ep->kind == ENDPOINT_LOCAL) {
        sipp__engine_get_info(ep->engine, &in);
    } else {
        in.can_generate = in.can_chat = in.can_embed = true; /* the peer decides per model */
        snprintf(in.architecture, sizeof in.architecture, "remote");
    }
    sipp__endpoint_leave(ep);
    return sipp__struct_out(out, &in, sizeof in, SIPP__FIRST_SIZE(endpoint_info), "endpoint info",
                            err);
}

sipp_status sipp_endpoint_get_stats(const sipp_endpoint *ep, sipp_engine_stats *out,
                                    sipp_error *err) {
    if (!ep || !out)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "endpoint and out are required");
    sipp_status st = sipp__struct_size_ok(out->struct_size, SIPP__FIRST_SIZE(engine_stats),
                                          sizeof *out, "engine stats", err);
    if (st != SIPP_OK) return st;
    if (ep->kind != ENDPOINT_LOCAL)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0, "engine stats exist only for local endpoints");
    if ((st = sipp__endpoint_enter(ep, err)) != SIPP_OK) return st;
    sipp_engine_stats s = sipp__engine_stats_defaults();
    sipp__engine_get_stats(ep->engine, &s);
    sipp__endpoint_leave(ep);
    /* a caller built against 0.1's header has no watchdog fields: it gets the ones it has */
    return sipp__struct_out(out, &s, sizeof s, SIPP__FIRST_SIZE(engine_stats), "engine stats", err);
}

/* ---- requests ---------------------------------------------------------------------------- */

static sipp_status check_request(sipp_endpoint *ep, sipp_run **out, sipp_error *err) {
    if (!out) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "out is required");
    *out = NULL;
    if (!ep) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "endpoint is required");
    return SIPP_OK;
}

/* The caller's text params over the defaults (older, smaller structs accepted). Remote
 * endpoints are checked here; the engine checks its own submissions (the wasm host calls it
 * directly), so local ones are not checked twice. */
static sipp_status text_params_in(const sipp_endpoint *ep, const sipp_text_params *params,
                                  sipp_text_params *p, sipp_error *err) {
    *p = sipp__text_params_defaults();
    if (params) {
        sipp_status st = sipp__params_in(p, sizeof *p, params, SIPP__FIRST_SIZE(text_params),
                                         "text params", err);
        if (st != SIPP_OK) return st;
    }
    if (ep->kind == ENDPOINT_LOCAL && p->extra_json)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "extra_json is for remote endpoints; a local endpoint has typed options only");
    if (p->n_media > 0 && !p->media)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "n_media is %zu but media is NULL", p->n_media);
    if (ep->kind == ENDPOINT_LOCAL) return SIPP_OK;
    sipp_status st = sipp__text_params_check(p, err);
    /* structured output: a schema a remote would get is held to the local rule (issue 18) */
    if (st == SIPP_OK && p->json_schema) st = sipp__engine_check_schema(p->json_schema, err);
    return st;
}

sipp_status sipp_query(sipp_endpoint *ep, const char *prompt, const sipp_text_params *params,
                       sipp_run **out, sipp_error *err) {
    sipp_status st = check_request(ep, out, err);
    if (st != SIPP_OK) return st;
    if (!prompt || !prompt[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "query: the prompt is empty");
    sipp_text_params p;
    st = text_params_in(ep, params, &p, err);
    if (st != SIPP_OK) return st;
    if (p.n_tools)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "query: tools are for chat");
    if (p.reasoning_budget != -1)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "query: reasoning_budget is for chat (the chat template knows the "
                          "reasoning block)");
    if ((st = sipp__endpoint_enter(ep, err)) != SIPP_OK) return st;
    if (ep->kind == ENDPOINT_REMOTE)
        st = sipp__remote_submit_text(ep->remote, prompt, NULL, 0, NULL, &p, out, err);
    else
        st = sipp__engine_submit_text(ep->engine, prompt, &p, out, err);
    if (st == SIPP_OK) sipp__endpoint_observe(ep, *out);
    sipp__endpoint_leave(ep);
    return st;
}

static bool known_role(const char *role) {
    return role && (strcmp(role, "system") == 0 || strcmp(role, "user") == 0 ||
                    strcmp(role, "assistant") == 0);
}

/* Multimodal: a copy of the messages in which each message with media parts has its markers
 * (sipp__media_place_markers: the app's, or one per part in front), so the template renders
 * them where they belong. Parts must name an existing message. */
static sipp_status chat_place_markers(const sipp_message *messages, size_t n,
                                      const sipp_text_params *p, sipp_message **out,
                                      sipp_error *err) {
    *out = NULL;
    for (size_t i = 0; i < p->n_media; i++)
        if (p->media[i].message_index >= n)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "chat: media[%zu] names message %zu of %zu", i,
                              p->media[i].message_index, n);
    sipp_message *m = calloc(n, sizeof *m);
    if (!m) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    sipp_status st = SIPP_OK;
    for (size_t i = 0; i < n && st == SIPP_OK; i++) {
        size_t parts = 0;
        for (size_t k = 0; k < p->n_media; k++) parts += p->media[k].message_index == i;
        m[i].role = messages[i].role;
        char what[48];
        snprintf(what, sizeof what, "chat: messages[%zu]", i);
        char *content = NULL;
        if (parts > 0 || sipp__media_count_markers(messages[i].content) > 0)
            st = sipp__media_place_markers(messages[i].content, parts, what, &content, err);
        else
            content = sipp__strdup(messages[i].content);
        if (st == SIPP_OK && !content) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        m[i].content = content;
    }
    if (st != SIPP_OK) {
        for (size_t i = 0; i < n; i++) free((char *)m[i].content);
        free(m);
        return st;
    }
    *out = m;
    return SIPP_OK;
}

static void chat_markers_free(sipp_message *m, size_t n) {
    if (!m) return;
    for (size_t i = 0; i < n; i++) free((char *)m[i].content);
    free(m);
}

/* A local chat through llama.cpp's chat layer (tools, reasoning, parsing); with media, each
 * message's content first gets its media markers (chat_place_markers). */
static sipp_status chat_local(sipp__engine *e, const sipp_chat_message *messages, size_t n,
                              const sipp_text_params *p, sipp_run **out, sipp_error *err) {
    if (p->n_media == 0) return sipp__engine_submit_chat(e, messages, n, p, out, err);
    sipp_message *plain = calloc(n, sizeof *plain);
    sipp_chat_message *cm = calloc(n, sizeof *cm);
    sipp_message *marked = NULL;
    sipp_status st = SIPP_OK;
    if (!plain || !cm) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    for (size_t i = 0; st == SIPP_OK && i < n; i++)
        plain[i] = (sipp_message){.role = messages[i].role,
                                  .content = messages[i].content ? messages[i].content : ""};
    if (st == SIPP_OK) st = chat_place_markers(plain, n, p, &marked, err);
    if (st == SIPP_OK) {
        for (size_t i = 0; i < n; i++) {
            cm[i] = messages[i];
            cm[i].content = marked[i].content;
        }
        st = sipp__engine_submit_chat(e, cm, n, p, out, err);
    }
    chat_markers_free(marked, n);
    free(cm);
    free(plain);
    return st;
}

sipp_status sipp_chat(sipp_endpoint *ep, const sipp_message *messages, size_t n_messages,
                      const sipp_text_params *params, sipp_run **out, sipp_error *err) {
    sipp_status st = check_request(ep, out, err);
    if (st != SIPP_OK) return st;
    if (!messages || n_messages == 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "chat: no messages");
    for (size_t i = 0; i < n_messages; i++) {
        if (!known_role(messages[i].role))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "chat: message %zu has unknown role '%s' (system, user or assistant)",
                              i, messages[i].role ? messages[i].role : "(null)");
        if (!messages[i].content)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "chat: message %zu has no content", i);
    }
    sipp_text_params p;
    st = text_params_in(ep, params, &p, err);
    if (st == SIPP_OK) st = sipp__tools_check(&p, err);
    if (st != SIPP_OK) return st;
    if ((st = sipp__endpoint_enter(ep, err)) != SIPP_OK) return st;
    if (ep->kind == ENDPOINT_REMOTE) {
        st = sipp__remote_submit_text(ep->remote, NULL, messages, n_messages, NULL, &p, out, err);
    } else {
        /* the local chat goes through llama.cpp's chat layer (tools, reasoning, parsing) */
        sipp_chat_message *cm = calloc(n_messages, sizeof *cm);
        if (!cm) {
            st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        } else {
            for (size_t i = 0; i < n_messages; i++)
                cm[i] = (sipp_chat_message){.role = messages[i].role,
                                            .content = messages[i].content};
            st = chat_local(ep->engine, cm, n_messages, &p, out, err);
            free(cm);
        }
    }
    if (st == SIPP_OK) sipp__endpoint_observe(ep, *out);
    sipp__endpoint_leave(ep);
    return st;
}

sipp_status sipp_chat_ex(sipp_endpoint *ep, const sipp_chat_message *messages, size_t n_messages,
                         const sipp_text_params *params, sipp_run **out, sipp_error *err) {
    sipp_status st = check_request(ep, out, err);
    if (st != SIPP_OK) return st;
    if (!messages || n_messages == 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "chat: no messages");
    if ((st = sipp__chat_messages_check(messages, n_messages, err)) != SIPP_OK) return st;
    sipp_text_params p;
    st = text_params_in(ep, params, &p, err);
    if (st == SIPP_OK) st = sipp__tools_check(&p, err);
    if (st != SIPP_OK) return st;
    if ((st = sipp__endpoint_enter(ep, err)) != SIPP_OK) return st;
    if (ep->kind == ENDPOINT_REMOTE) {
        sipp_message *pm = calloc(n_messages, sizeof *pm);
        if (!pm) {
            st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        } else {
            /* the dialect adds the tool calls and results from `messages` (a remote endpoint
             * without tools answers UNSUPPORTED) */
            for (size_t i = 0; i < n_messages; i++)
                pm[i] = (sipp_message){.role = messages[i].role,
                                       .content = messages[i].content ? messages[i].content : ""};
            st = sipp__remote_submit_text(ep->remote, NULL, pm, n_messages, messages, &p, out,
                                          err);
            free(pm);
        }
    } else {
        st = chat_local(ep->engine, messages, n_messages, &p, out, err);
    }
    if (st == SIPP_OK) sipp__endpoint_observe(ep, *out);
    sipp__endpoint_leave(ep);
    return st;
}

sipp_status sipp_embed(sipp_endpoint *ep, const char *text, const sipp_embed_params *params,
                       sipp_run **out, sipp_error *err) {
    sipp_status st = check_request(ep, out, err);
    if (st != SIPP_OK) return st;
    if (!text || !text[0])
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "embed: the text is empty");
    sipp_embed_params p = sipp__embed_params_defaults();
    if (params) {
        st = sipp__params_in(&p, sizeof p, params, SIPP__FIRST_SIZE(embed_params), "embed params",
                             err);
        if (st != SIPP_OK) return st;
    }
    if (ep->kind == ENDPOINT_LOCAL && p.extra_json)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "extra_json is for remote endpoints; a local endpoint has typed options only");
    if ((st = sipp__endpoint_enter(ep, err)) != SIPP_OK) return st;
    if (ep->kind == ENDPOINT_REMOTE)
        st = sipp__remote_submit_embed(ep->remote, text, &p, out, err);
    else
        st = sipp__engine_submit_embed(ep->engine, text, &p, out, err);
    sipp__endpoint_leave(ep);
    return st;
}
