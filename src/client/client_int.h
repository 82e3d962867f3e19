/*
 * client_int.h — the endpoint handle inside the client layer (client.c: registry, lifetime and
 * request entry points; estimate.c: routing estimates; policy.c: the routing policy).
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

#endif
