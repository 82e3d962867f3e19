/*
 * sipp-gateway — the thin shell over the gateway library (src/gateway/gateway.h): parses the
 * command line, loads the config, handles signals. Everything else lives in the library.
 *
 *   sipp-gateway check --config FILE   validate only (no secrets read, no model loaded; pulled
 *                                      model names must be in the models directory)
 *   sipp-gateway serve --config FILE   run until SIGTERM or SIGINT, then drain and exit;
 *                                      SIGHUP reloads the config file
 */
#define _POSIX_C_SOURCE 200809L
#include "gateway.h"

#include <signal.h>
#include <stdbool.h>
#include <sipp.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fputs("usage: sipp-gateway check --config FILE\n"
          "       sipp-gateway serve --config FILE\n"
          "\n"
          "  check   validate the configuration (TOML), provider URLs (network policy) and pulled\n"
          "          model names (OWNER/REPO[:QUANT] must be in the models directory) without\n"
          "          reading secrets or loading models\n"
          "  serve   run the gateway: the public listener (Sipp and OpenAI routes) and the\n"
          "          management listener (/healthz, /readyz, /metrics, /admin/); SIGTERM or SIGINT drains\n"
          "          open requests (up to shutdown_grace_seconds) and exits\n"
          "\n"
          "Keys are documented in docs/gateway.md. Logs are JSON lines on stderr.\n",
          f);
}

/* `check`: each provider target's base URL (every replica of a pool) through libsipp's own rules (scheme, network
 * policy), with a stand-in key so that no secret is read. Returns false after printing why. */
static bool check_provider_urls(const sipp__gw_config *cfg) {
    sipp_client *client = NULL;
    if (sipp_client_new(NULL, &client, NULL) != SIPP_OK) return true; /* serve will say */
    bool ok = true;
    for (size_t i = 0; i < cfg->n_targets && ok; i++) {
        const sipp__gw_target *t = &cfg->targets[i];
        if (t->type == SIPP__GW_LOCAL) continue;
        sipp_provider_params pp = t->provider; /* its TOML keys, as serve adds it */
        pp.kind = t->type == SIPP__GW_OPENAI      ? SIPP_PROVIDER_OPENAI
                  : t->type == SIPP__GW_ANTHROPIC ? SIPP_PROVIDER_ANTHROPIC
                                                  : SIPP_PROVIDER_OPENAI_COMPATIBLE;
        pp.model = t->model;
        pp.api_key = "check";
        for (size_t k = 0; k < (t->n_base_urls ? t->n_base_urls : 1) && ok; k++) { /* replicas */
            pp.base_url = t->n_base_urls ? t->base_urls[k] : NULL;
            sipp_error err;
            sipp_error_init(&err, sizeof err);
            if (sipp_client_add_provider(client, "check", &pp, NULL, &err) ==
                SIPP_INVALID_ARGUMENT) {
                if (t->n_base_urls > 1)
                    fprintf(stderr, "sipp-gateway: target '%s' (line %d), base_urls[%zu]: %s\n",
                            t->name, t->line, k, err.message);
                else
                    fprintf(stderr, "sipp-gateway: target '%s' (line %d): %s\n", t->name,
                            t->line, err.message);
                ok = false;
            }
        }
    }
    sipp_client_free(client);
    return ok;
}

/* `check`: each local target's model. A pulled name (OWNER/REPO[:QUANT]) must be in the models
 * directory: its manifest is read, no model file is opened. A path is not looked at (check may
 * run where the model file is not). Returns false after printing why. */
static bool check_local_models(const sipp__gw_config *cfg) {
    bool ok = true;
    for (size_t i = 0; i < cfg->n_targets; i++) {
        const sipp__gw_target *t = &cfg->targets[i];
        if (t->type != SIPP__GW_LOCAL || !t->model) continue;
        char path[4096];
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        if (sipp_model_resolve(t->model, path, sizeof path, &err) != SIPP_OK) {
            fprintf(stderr, "sipp-gateway: target '%s' (line %d): %s\n", t->name, t->line,
                    err.message);
            ok = false;
        }
    }
    return ok;
}

int main(int argc, char **argv) {
    const char *cmd = NULL, *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("sipp-gateway %s\n", sipp_version());
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config = argv[i] + 9;
        } else if (!cmd && (strcmp(argv[i], "check") == 0 || strcmp(argv[i], "serve") == 0)) {
            cmd = argv[i];
        } else {
            fprintf(stderr, "sipp-gateway: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!cmd || !config) {
        usage(stderr);
        return 2;
    }
    sipp__gw_config cfg;
    char err[768];
    if (sipp__gw_config_load(config, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "sipp-gateway: %s\n", err);
        return 1;
    }
    if (strcmp(cmd, "check") == 0) {
        bool local_ok = check_local_models(&cfg);
        if (!check_provider_urls(&cfg) || !local_ok) {
            sipp__gw_config_free(&cfg);
            return 1;
        }
        printf("%s: ok (%zu targets, %zu callers; public %s, management %s)\n", config,
               cfg.n_targets, cfg.n_tokens, cfg.public_bind, cfg.management_bind);
        sipp__gw_config_free(&cfg);
        return 0;
    }
    /* Every thread the gateway starts inherits this mask, so the signals reach only sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP); /* reload (docs/gateway.md "Reload") */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    sipp__gw *gw;
    if (sipp__gw_new(&cfg, &gw, err, sizeof err) != 0) {
        sipp__gw_log_flush(2.0);
        fprintf(stderr, "sipp-gateway: %s\n", err);
        sipp__gw_config_free(&cfg);
        return 1;
    }
    sipp__gw_set_config_path(gw, config);
    int sig = 0;
    for (;;) {
        sigwait(&set, &sig);
        if (sig != SIGHUP) break;
        char why[768];
        sipp__gw_reload(gw, why, sizeof why); /* the outcome is logged */
    }
    sipp__gw_shutdown(gw);
    sipp__gw_free(gw);
    sipp__gw_log_flush(2.0); /* the last lines, unless nobody reads stderr */
    return 0;
}
