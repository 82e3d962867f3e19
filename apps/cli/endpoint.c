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
    if (cli_is_remote(o)) {
        sipp_status st;
        if (o->provider) {
            sipp_provider_params pp = o->provider_params; /* the flags filled it */
            pp.kind = strcmp(o->provider, "openai") == 0      ? SIPP_PROVIDER_OPENAI
                      : strcmp(o->provider, "anthropic") == 0 ? SIPP_PROVIDER_ANTHROPIC
                                                              : SIPP_PROVIDER_OPENAI_COMPATIBLE;
            pp.headers = o->headers;
            pp.n_headers = o->n_headers;
            st = sipp_client_add_provider(*client, "remote", &pp, ep, &err);
        } else {
            sipp_gateway_params gp = o->gateway_params; /* the flags filled it */
            /* no --token-env, no --auth-header and no SIPP_GATEWAY_TOKEN: an open gateway */
            const char *env = gp.token_env ? gp.token_env : "SIPP_GATEWAY_TOKEN";
            if (gp.auth_header)
                gp.auth = SIPP_GATEWAY_AUTH_HEADER; /* `<name>: <token>`, for a proxy in front */
            else if (!gp.token_env && !getenv(env))
                gp.auth = SIPP_GATEWAY_AUTH_NONE;
            gp.token_env = env;
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
