/*
 * client_int.h — the endpoint handle inside the client layer (client.c: registry, lifetime and
 * request entry points; estimate.c: routing estimates; policy.c: the routing policy) and the
 * checks of tools and tool messages (tools.c, issue 18), shared by every endpoint kind.
 */
#ifndef SIPP_CLIENT_INT_H
#define SIPP_CLIENT_INT_H

#include "../common/common_int.h"
#include "../engine/engine_int.h"
#include "../providers/providers_int.h"

#include <pthread.h>

typedef enum endpoint_kind { ENDPOINT_LOCAL, ENDPOINT_REMOTE } endpoint_kind;

struct sipp_endpoint {
    struct sipp_endpoint *next;
    char *id;
    endpoint_kind kind;
    pthread_rwlock_t life;    /* read: a call using engine/remote; write: closing */
    bool closed;              /* under life; engine and remote are NULL once set */
    sipp__engine *engine;     /* local */
    sipp__remote *remote;     /* provider or gateway */
    sipp__signals signals;    /* what its finished runs measured (estimate.c) */
};

/* Starts a call that uses the endpoint's engine or remote: SIPP_OK with `life` held for
 * reading (end it with sipp__endpoint_leave), or SIPP_CLOSED. `life` is the handle's mutable
 * state, so a const handle may take it. */
sipp_status sipp__endpoint_enter(const sipp_endpoint *ep, sipp_error *err);
void sipp__endpoint_leave(const sipp_endpoint *ep);
/* Feeds a submitted run's outcome into its endpoint's signals when it ends (estimate.c). */
void sipp__endpoint_observe(sipp_endpoint *ep, sipp_run *run);

/* Tools, tool choice and reasoning mode of `p`: INVALID_ARGUMENT naming the field. */
sipp_status sipp__tools_check(const sipp_text_params *p, sipp_error *err);
/* Roles, contents, tool calls (arguments a JSON object) and tool results (an earlier call's
 * id) of a chat's messages: INVALID_ARGUMENT naming the message. */
sipp_status sipp__chat_messages_check(const sipp_chat_message *m, size_t n, sipp_error *err);

#endif
