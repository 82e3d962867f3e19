/*
 * cmd_generate.c — `sipp query` and `sipp chat`: stream the answer to stdout, or print one
 * JSON object with --json.
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char query_usage[] =
    "usage: sipp query [options] PROMPT\n"
    "\n"
    "Complete a raw prompt (no chat template) and stream the text to stdout.\n"
    "\n"
    "model and engine:\n"
    "  -m, --model NAME|PATH     GGUF file, a name in the models directory, or a  [SIPP_MODEL]\n"
    "                            pulled OWNER/REPO[:QUANT] (see `sipp pull --help`)\n"
    "                            (default: the first model there that fits)\n"
    CLI_SETTINGS_HELP
    "sampling:\n"
    CLI_TEXT_HELP
    "  --stop TEXT               stop before TEXT; repeatable (up to 16)\n"
    "  --grammar-file FILE       constrain output with a GBNF grammar\n"
    "  --json-schema-file FILE   constrain output to a JSON schema\n"
    "media (a model with a projector: --mmproj FILE):\n"
    "  --image FILE              an image (PNG, JPEG, GIF, BMP) for the model; repeatable. It\n"
    "                            goes where the text has <__media__>, else in front\n"
    "  --audio FILE              audio (WAV, MP3, FLAC), placed the same way; repeatable\n"
    "remote (instead of --model):\n"
    "  --provider openai|openai_compatible|anthropic   run on a provider endpoint\n"
    CLI_PROVIDER_HELP
    CLI_GATEWAY_HELP
    "  --header 'Name: value'    an extra HTTP header for the remote endpoint; repeatable\n"
    "output:\n"
    "  --json                    print one JSON object: text, finish_reason, usage, stats\n"
    "  --stats                   print timings to stderr after the answer\n"
    "  -h, --help                show this help\n";

static const char chat_usage[] =
    "usage: sipp chat [options] MESSAGE\n"
    "\n"
    "Answer MESSAGE as the user turn, rendered with the model's own chat template (Jinja\n"
    "templates included), and stream the reply to stdout. Options as `sipp query --help`, plus:\n"
    "  --system TEXT             a system message before MESSAGE\n"
    "  --tool-file FILE          tools the model may call: a JSON array of OpenAI-style tool\n"
    "                            definitions; the answer's calls are printed, one a line:\n"
    "                            `tool call NAME(ARGUMENTS) id=ID` (--json: `tool_calls`)\n"
    "  --tool-choice auto|none|required|NAME   whether the model must call a tool (NAME: that\n"
    "                            one); default auto\n"
    "  --no-parallel-tool-calls  at most one tool call in an answer\n";

static void on_tokens(const char *text, size_t len, uint32_t n_tokens, void *ud) {
    (void)n_tokens;
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static json_t *stats_json(const sipp_response *r) {
    const sipp_stats *s = r->stats;
    return json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:i,s:s,s:i,s:f,s:i}", "queue_ms", s->queue_ms,
                     "ttft_ms", s->ttft_ms, "prefill_ms", s->prefill_ms, "decode_ms",
                     s->decode_ms, "prefill_tokens_per_s", s->prefill_tok_s,
                     "decode_tokens_per_s", s->decode_tok_s, "total_ms", s->total_ms,
                     "itl_avg_ms", s->itl_avg_ms, "itl_p99_ms", s->itl_p99_ms, "prefill_tokens",
                     (json_int_t)s->prefill_tokens, "cache_source",
                     sipp_cache_source_name(s->cache_source), "cached_tokens",
                     (json_int_t)s->cached_tokens, "encode_ms", s->encode_ms, "media_chunks",
                     (json_int_t)s->media_chunks);
}

static void print_json(const sipp_response *r) {
    json_t *o = json_pack("{s:s%,s:s,s:{s:i,s:i,s:i},s:o,s:s}", "text", r->text, r->text_len,
                          "finish_reason", sipp_finish_reason_name(r->finish_reason), "usage",
                          "input_tokens", (json_int_t)r->usage->input_tokens, "output_tokens",
                          (json_int_t)r->usage->output_tokens, "total_tokens",
                          (json_int_t)r->usage->total_tokens, "stats", stats_json(r),
                          "request_id", r->request_id);
    if (o && r->n_tool_calls) json_object_set_new(o, "tool_calls", cli_tools_json(r));
    if (o && r->reasoning && r->reasoning[0])
        json_object_set_new(o, "reasoning", json_string(r->reasoning));
    cli_print_json(o);
}

static void print_stats(const sipp_response *r, const sipp_endpoint *ep) {
    const sipp_stats *s = r->stats;
    fprintf(stderr,
            "\nrequest: %u prompt + %u generated tokens, finish %s\n"
            "  queue %.2f ms | ttft %.2f ms | prefill %.2f ms (%.0f tok/s) | decode %.2f ms "
            "(%.0f tok/s)\n"
            "  inter-token latency avg %.2f ms, p99 %.2f ms | total %.2f ms\n"
            "  cache %s: %u prompt tokens reused, %u computed\n"
            "  media: %u encoded in %.2f ms\n",
            r->usage->input_tokens, r->usage->output_tokens,
            sipp_finish_reason_name(r->finish_reason), s->queue_ms, s->ttft_ms, s->prefill_ms,
            s->prefill_tok_s, s->decode_ms, s->decode_tok_s, s->itl_avg_ms, s->itl_p99_ms,
            s->total_ms, sipp_cache_source_name(s->cache_source), s->cached_tokens,
            s->prefill_tokens, s->media_chunks, s->encode_ms);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    if (sipp_endpoint_get_stats(ep, &es, NULL) == SIPP_OK)
        fprintf(stderr,
                "engine: %u running, %u queued, %llu completed, %llu failed | %llu prompt + %llu "
                "generated tokens | %llu ticks, batch fill %.1f%%\n",
                es.running, es.queued, (unsigned long long)es.completed,
                (unsigned long long)es.failed, (unsigned long long)es.prompt_tokens,
                (unsigned long long)es.generated_tokens, (unsigned long long)es.ticks,
                100.0 * es.batch_fill);
}

/* Waits for the run and prints its answer (streamed already unless --json) or its error. */
static int finish_run(sipp_run *run, const cli_options *o, const sipp_endpoint *ep) {
    const sipp_response *r = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_run_wait(run, &r, &err);
    if (r->status != SIPP_OK) {
        if (!o->json && r->text_len) putchar('\n');
        cli_error("%s", r->error_message[0] ? r->error_message : sipp_status_str(r->status));
        if (o->json) cli_print_error_json(r);
        return CLI_FAILED;
    }
    if (o->json) {
        print_json(r);
    } else {
        putchar('\n');
        cli_tools_print(r);
        if (o->stats) print_stats(r, ep);
    }
    return CLI_OK;
}

int cmd_generate(int argc, char **argv, bool chat) {
    const char *cmd = chat ? "chat" : "query";
    cli_options o;
    bool exit_now;
    int rc = cli_parse(argc, argv, cmd, chat ? chat_usage : query_usage, &o, &exit_now);
    if (rc != CLI_OK || exit_now) return rc;

    char *grammar = NULL, *schema = NULL;
    if (o.grammar_file && !(grammar = cli_read_file(o.grammar_file))) return CLI_FAILED;
    if (o.json_schema_file && !(schema = cli_read_file(o.json_schema_file))) {
        free(grammar);
        return CLI_FAILED;
    }
    o.text.grammar = grammar;
    o.text.json_schema = schema;
    cli_tools tools = {0};
    if (o.tool_file && (rc = cli_tools_load(o.tool_file, &tools)) != CLI_OK) {
        free(grammar);
        free(schema);
        return rc;
    }
    o.text.tools = tools.tools;
    o.text.n_tools = tools.n;
    if (o.tool_choice) {
        const char *tc = o.tool_choice;
        o.text.tool_choice = strcmp(tc, "auto") == 0       ? SIPP_TOOL_CHOICE_AUTO
                             : strcmp(tc, "none") == 0     ? SIPP_TOOL_CHOICE_NONE
                             : strcmp(tc, "required") == 0 ? SIPP_TOOL_CHOICE_REQUIRED
                                                           : SIPP_TOOL_CHOICE_NAMED;
        if (o.text.tool_choice == SIPP_TOOL_CHOICE_NAMED) o.text.tool_choice_name = tc;
    }
    sipp_media media[CLI_MAX_MEDIA];
    char *media_bytes[CLI_MAX_MEDIA] = {0};
    for (size_t i = 0; i < o.n_media; i++) {
        size_t len = 0;
        if (!(media_bytes[i] = cli_read_bytes(o.media_files[i], &len))) {
            for (size_t k = 0; k < i; k++) free(media_bytes[k]);
            free(grammar);
            free(schema);
            cli_tools_free(&tools);
            return CLI_FAILED;
        }
        media[i] = (sipp_media){o.media_kinds[i], media_bytes[i], len, NULL, 0};
    }
    o.text.media = o.n_media ? media : NULL;
    o.text.n_media = o.n_media;
    if (!o.json) o.text.on_tokens = on_tokens;

    char model[4096];
    sipp_client *client = NULL;
    sipp_endpoint *ep = NULL;
    rc = cli_is_remote(&o) ? CLI_OK : cli_resolve_model(o.model, chat ? NEED_CHAT : NEED_GENERATE, model, sizeof model);
    if (rc == CLI_OK) {
        if (!cli_is_remote(&o)) o.model = model;
        rc = cli_open(&o, &client, &ep);
    }
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (rc == CLI_OK) {
        sipp_status st;
        if (chat) {
            sipp_message msgs[2];
            size_t n = 0;
            if (o.system) msgs[n++] = (sipp_message){"system", o.system};
            for (size_t i = 0; i < o.n_media; i++) media[i].message_index = n; /* the user turn */
            msgs[n++] = (sipp_message){"user", o.input};
            st = sipp_chat(ep, msgs, n, &o.text, &run, &err);
        } else {
            st = sipp_query(ep, o.input, &o.text, &run, &err);
        }
        if (st != SIPP_OK) {
            cli_error("%s", err.message);
            rc = CLI_FAILED;
        }
    }
    if (rc == CLI_OK) rc = finish_run(run, &o, ep);
    sipp_run_free(run);
    sipp_client_free(client);
    free(grammar);
    free(schema);
    cli_tools_free(&tools);
    for (size_t i = 0; i < o.n_media; i++) free(media_bytes[i]);
    return rc;
}

static const char listen_usage[] =
    "usage: sipp listen [options] FILE\n"
    "\n"
    "Transcribe the audio FILE (WAV, MP3 or FLAC) and stream the text to stdout. The model needs an\n"
    "audio encoder as its projector (--mmproj); the chat template renders one user turn: the\n"
    "instruction, then the clip (a model without a template gets it as a raw prompt).\n"
    "\n"
    "  --prompt TEXT             the instruction (default \"" SIPP_LISTEN_PROMPT "\")\n"
    "  --language LANG           appended to it as \" (language: LANG)\"\n"
    "  --temperature, -n, ...    as `sipp query --help` (the default temperature here is 0)\n"
    "  -m, --model, --mmproj, and the engine options as `sipp query --help`\n"
    "  --json                    print one JSON object: text, finish_reason, usage, stats\n"
    "  --stats                   print timings to stderr after the answer\n";

int cmd_listen(int argc, char **argv) {
    cli_options o;
    bool exit_now;
    /* the transcript is greedy unless --temperature or SIPP_TEMPERATURE says otherwise */
    bool temperature_given = getenv("SIPP_TEMPERATURE") != NULL;
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--temperature", 13) == 0) temperature_given = true;
    int rc = cli_parse(argc, argv, "listen", listen_usage, &o, &exit_now);
    if (rc != CLI_OK || exit_now) return rc;
    if (!temperature_given) o.text.temperature = 0;
    if (o.n_media) {
        cli_error("listen: the audio is FILE; --image/--audio are for query and chat");
        return CLI_USAGE;
    }
    size_t len = 0;
    char *bytes = cli_read_bytes(o.input, &len);
    if (!bytes) return CLI_FAILED;
    sipp_media clip = {SIPP_MEDIA_AUDIO, bytes, len, NULL, 0};
    if (!o.json) o.text.on_tokens = on_tokens;
    char model[4096];
    sipp_client *client = NULL;
    sipp_endpoint *ep = NULL;
    rc = cli_is_remote(&o) ? CLI_OK : cli_resolve_model(o.model, NEED_GENERATE, model, sizeof model);
    if (rc == CLI_OK) {
        if (!cli_is_remote(&o)) o.model = model;
        rc = cli_open(&o, &client, &ep);
    }
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (rc == CLI_OK &&
        sipp_listen(ep, &clip, o.listen_prompt, o.language, &o.text, &run, &err) != SIPP_OK) {
        cli_error("%s", err.message);
        rc = CLI_FAILED;
    }
    if (rc == CLI_OK) rc = finish_run(run, &o, ep);
    sipp_run_free(run);
    sipp_client_free(client);
    free(bytes);
    return rc;
}
