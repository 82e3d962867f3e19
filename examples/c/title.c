/*
 * title.c — one app feature ("suggest a title for this text") run against whichever endpoint
 * the command line describes. The feature code below the descriptors never changes: moving it
 * from a local model to a gateway or a cloud provider is a different descriptor, nothing else.
 *
 *   title local    MODEL.gguf                          TEXT
 *   title gateway  URL TARGET                          TEXT   (token in SIPP_GATEWAY_TOKEN)
 *   title provider openai|openai_compatible|anthropic BASE_URL MODEL TEXT  (key: see below)
 *
 * Provider keys come from OPENAI_API_KEY / ANTHROPIC_API_KEY, or for openai_compatible from
 * PROVIDER_API_KEY when it is set. Build: cmake builds it as build/bin/sipp-example-title.
 */
#include <sipp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- descriptors: the only part that differs per endpoint ---------------------------------- */

static sipp_status add_local(sipp_client *c, const char *model, sipp_endpoint **ep,
                             sipp_error *err) {
    sipp_local_params p;
    sipp_local_params_init(&p, sizeof p);
    p.model_path = model;
    return sipp_client_add_local(c, "title", &p, ep, err);
}

static sipp_status add_gateway(sipp_client *c, const char *url, const char *target,
                               sipp_endpoint **ep, sipp_error *err) {
    sipp_gateway_params p;
    sipp_gateway_params_init(&p, sizeof p);
    p.base_url = url;
    p.target = target;
    if (!getenv("SIPP_GATEWAY_TOKEN")) p.auth = SIPP_GATEWAY_AUTH_NONE; /* an open gateway */
    return sipp_client_add_gateway(c, "title", &p, ep, err);
}

static sipp_status add_provider(sipp_client *c, const char *kind, const char *base_url,
                                const char *model, sipp_endpoint **ep, sipp_error *err) {
    sipp_provider_params p;
    sipp_provider_params_init(&p, sizeof p);
    p.kind = strcmp(kind, "openai") == 0      ? SIPP_PROVIDER_OPENAI
             : strcmp(kind, "anthropic") == 0 ? SIPP_PROVIDER_ANTHROPIC
                                              : SIPP_PROVIDER_OPENAI_COMPATIBLE;
    p.base_url = base_url;
    p.model = model;
    if (p.kind == SIPP_PROVIDER_OPENAI_COMPATIBLE && getenv("PROVIDER_API_KEY"))
        p.api_key_env = "PROVIDER_API_KEY";
    return sipp_client_add_provider(c, "title", &p, ep, err);
}

/* ---- the feature: the same on every endpoint ----------------------------------------------- */

static void print_batch(const char *text, size_t len, uint32_t n_tokens, void *ud) {
    (void)n_tokens;
    fwrite(text, 1, len, ud);
    fflush(ud);
}

/* Streams a title for `text` to stdout. Returns 0 on success. */
static int suggest_title(sipp_endpoint *ep, const char *text) {
    sipp_message messages[] = {
        {"system", "You suggest a short title for the user's text. Answer with the title only."},
        {"user", text},
    };
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    p.max_tokens = 24;
    p.temperature = 0.2f;
    p.stop = (const char *[]){"\n"};
    p.n_stop = 1;
    p.on_tokens = print_batch;
    p.user_data = stdout;
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_chat(ep, messages, 2, &p, &run, &err) != SIPP_OK) {
        fprintf(stderr, "title: %s\n", err.message);
        return 1;
    }
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, &err);
    int rc = 0;
    if (r->status != SIPP_OK) {
        fprintf(stderr, "\ntitle: %s (%s)\n", r->error_message, sipp_status_name(r->status));
        rc = 1;
    } else {
        printf("\n[%s, %u tokens, %.0f ms]\n", sipp_finish_reason_name(r->finish_reason),
               r->usage->output_tokens, r->stats->total_ms);
    }
    sipp_run_free(run);
    return rc;
}

int main(int argc, char **argv) {
    sipp_client *client = NULL;
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_new(NULL, &client, &err) != SIPP_OK) {
        fprintf(stderr, "title: %s\n", err.message);
        return 1;
    }
    sipp_status st = SIPP_INVALID_ARGUMENT;
    const char *text = NULL;
    if (argc == 4 && strcmp(argv[1], "local") == 0) {
        st = add_local(client, argv[2], &ep, &err);
        text = argv[3];
    } else if (argc == 5 && strcmp(argv[1], "gateway") == 0) {
        st = add_gateway(client, argv[2], argv[3], &ep, &err);
        text = argv[4];
    } else if (argc == 6 && strcmp(argv[1], "provider") == 0) {
        st = add_provider(client, argv[2], argv[3], argv[4], &ep, &err);
        text = argv[5];
    } else {
        fprintf(stderr, "usage: title local MODEL TEXT | gateway URL TARGET TEXT |\n"
                        "             provider KIND BASE_URL MODEL TEXT\n");
        sipp_client_free(client);
        return 2;
    }
    int rc = 1;
    if (st != SIPP_OK)
        fprintf(stderr, "title: %s\n", err.message);
    else
        rc = suggest_title(ep, text);
    sipp_client_free(client);
    return rc;
}
