/*
 * endpoint.c — the endpoint the options name, registered on a new client: a provider
 * (--provider), a Sipp gateway (--gateway) or the local model (--model, already resolved by
 * resolve.c), loaded with a progress bar when stderr is a TTY.
 *
 * Single-threaded. On failure the client is freed, *client is NULL and the error printed.
 */
#include "cli.h"

#include <string.h>
#include <stdlib.h>
#include <unistd.h>

int cli_open(cli_options *o, sipp_client **client, sipp_endpoint **ep) {
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_new(NULL, client, &err) != SIPP_OK) {
        cli_error("%s", err.message);
        return CLI_FAILED;
    }
    if (o->provider || o->gateway) {
        sipp_status st;
        if (o->provider) {
            sipp_provider_params pp;
            sipp_provider_params_init(&pp, sizeof pp);
            pp.kind = strcmp(o->provider, "openai") == 0      ? SIPP_PROVIDER_OPENAI
                      : strcmp(o->provider, "anthropic") == 0 ? SIPP_PROVIDER_ANTHROPIC
                                                              : SIPP_PROVIDER_OPENAI_COMPATIBLE;
            pp.model = o->remote_model;
            pp.base_url = o->base_url;
            pp.api_key_env = o->api_key_env;
            pp.request_timeout_ms = o->request_timeout_ms;
            pp.idle_timeout_ms = o->idle_timeout_ms;
            pp.allow_private_network = o->allow_private_network;
            pp.headers = o->headers;
            pp.n_headers = o->n_headers;
            st = sipp_client_add_provider(*client, "remote", &pp, ep, &err);
        } else {
            sipp_gateway_params gp;
            sipp_gateway_params_init(&gp, sizeof gp);
            gp.base_url = o->gateway;
            gp.target = o->target;
            /* no --token-env, no --auth-header and no SIPP_GATEWAY_TOKEN: an open gateway */
            const char *env = o->token_env ? o->token_env : "SIPP_GATEWAY_TOKEN";
            gp.token_env = env;
            if (o->auth_header) {
                gp.auth = SIPP_GATEWAY_AUTH_HEADER; /* `<name>: <token>`, for a proxy in front */
                gp.auth_header = o->auth_header;
            } else if (!o->token_env && !getenv(env)) {
                gp.auth = SIPP_GATEWAY_AUTH_NONE;
            }
            gp.request_timeout_ms = o->request_timeout_ms;
            gp.idle_timeout_ms = o->idle_timeout_ms;
            gp.allow_private_network = o->allow_private_network;
            gp.headers = o->headers;
            gp.n_headers = o->n_headers;
            st = sipp_client_add_gateway(*client, "remote", &gp, ep, &err);
        }
        if (st != SIPP_OK) {
            cli_error("%s", err.message);
            sipp_client_free(*client);
            *client = NULL;
            return CLI_FAILED;
        }
        return CLI_OK;
    }
    o->local.model_path = o->model;
    if (isatty(STDERR_FILENO)) o->local.progress = cli_progress_bar;
    if (sipp_client_add_local(*client, "local", &o->local, ep, &err) != SIPP_OK) {
        if (isatty(STDERR_FILENO)) fputs("\r\033[K", stderr);
        cli_error("%s", err.message);
        sipp_client_free(*client);
        *client = NULL;
        return CLI_FAILED;
    }
    return CLI_OK;
}
