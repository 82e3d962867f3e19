/*
 * cmd_embed.c — `sipp embed`: print a text's embedding vector.
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>

static const char usage[] =
    "usage: sipp embed [options] TEXT\n"
    "\n"
    "Print the embedding of TEXT, one number per line (or JSON with --json). Pooling comes from\n"
    "the model (mean when it declares none); the vector is L2-normalised unless --no-normalize.\n"
    "\n"
    "  -m, --model NAME|PATH     GGUF file, a name in the models directory, or a  [SIPP_MODEL]\n"
    "                            pulled OWNER/REPO[:QUANT] (see `sipp pull --help`)\n"
    CLI_SETTINGS_HELP
    CLI_EMBED_HELP
    "  --provider P --base-url URL --remote-model NAME [--api-key-env VAR]   a provider instead\n"
    "  --gateway URL --target NAME [--token-env VAR]   a Sipp gateway instead\n"
    "  --auth-header NAME        send the gateway token as 'NAME: <token>', not as Bearer\n"
    "  --header 'Name: value', --allow-private-network, --request-timeout-ms N,\n"
    "  --idle-timeout-ms N       as in `sipp query --help`\n"
    "  --json                    print {\"embedding\": [...], \"dims\": N, \"normalized\": bool}\n"
    "  --stats                   print timings to stderr\n"
    "  -h, --help                show this help\n";

int cmd_embed(int argc, char **argv) {
    cli_options o;
    bool exit_now;
    int rc = cli_parse(argc, argv, "embed", usage, &o, &exit_now);
    if (rc != CLI_OK || exit_now) return rc;
    char model[4096];
    sipp_client *client = NULL;
    sipp_endpoint *ep = NULL;
    rc = cli_is_remote(&o) ? CLI_OK : cli_resolve_model(o.model, NEED_EMBED, model, sizeof model);
    if (rc == CLI_OK) {
        if (!cli_is_remote(&o)) o.model = model;
        rc = cli_open(&o, &client, &ep);
    }
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (rc == CLI_OK) {
        if (sipp_embed(ep, o.input, &o.embed, &run, &err) != SIPP_OK) {
            cli_error("%s", err.message);
            rc = CLI_FAILED;
        }
    }
    if (rc == CLI_OK) {
        const sipp_response *r = NULL;
        sipp_run_wait(run, &r, &err);
        if (r->status != SIPP_OK || !r->embedding) {
            cli_error("%s", r->error_message[0] ? r->error_message : sipp_status_str(r->status));
            if (o.json) cli_print_error_json(r);
            rc = CLI_FAILED;
        } else if (o.json) {
            json_t *arr = json_array();
            for (uint32_t i = 0; i < r->n_embd; i++)
                json_array_append_new(arr, json_real(r->embedding[i]));
            json_t *obj = json_pack("{s:o,s:i,s:b}", "embedding", arr, "dims",
                                    (json_int_t)r->n_embd, "normalized", r->normalized);
            char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(9));
            if (s) puts(s);
            free(s);
            json_decref(obj);
        } else {
            for (uint32_t i = 0; i < r->n_embd; i++) printf("%.9g\n", r->embedding[i]);
        }
        if (rc == CLI_OK && o.stats)
            fprintf(stderr, "[%u tokens | %.1f ms | %.0f tok/s]\n", r->usage->input_tokens,
                    r->stats->total_ms, r->stats->prefill_tok_s);
    }
    sipp_run_free(run);
    sipp_client_free(client);
    return rc;
}
