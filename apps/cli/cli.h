/*
 * cli.h — shared pieces of the `sipp` command-line tool: option parsing (options.c: flags and
 * SIPP_* env vars), model resolution against the models directory (resolve.c), opening the
 * endpoint (endpoint.c) and output (output.c).
 * The CLI uses only the public API in sipp.h (plus jansson for --json output).
 */
#ifndef SIPP_CLI_H
#define SIPP_CLI_H

#include "sipp.h"

#include <stdbool.h>
#include <stdio.h>

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };
enum { CLI_MAX_HEADERS = 16 };
enum { CLI_MAX_MEDIA = 8 }; /* --image/--audio files of one request */
enum { CLI_MAX_MODEL_FILES = 1024 }; /* .gguf files of the models directory looked at */

typedef enum cli_need { NEED_GENERATE, NEED_CHAT, NEED_EMBED } cli_need;

typedef struct cli_options {
    const char *model;
    const char *system;
    const char *grammar_file;
    const char *json_schema_file;
    const char *provider;      /* "openai" | "openai_compatible" | "anthropic": a provider */
    const char *headers[CLI_MAX_HEADERS];   /* --header "Name: value" lines of a remote endpoint */
    size_t n_headers;
    const char *stops[SIPP_MAX_STOP_STRINGS];
    size_t n_stop;
    /* The params structs: their fields' flags and variables come from sipp_settings.h. A remote
     * endpoint is provider_params (with --provider) or gateway_params (with --gateway, its
     * base_url); both get the remote flags they share (--request-timeout-ms, ...). */
    sipp_text_params text;
    sipp_local_params local;
    sipp_embed_params embed;
    sipp_provider_params provider_params;
    sipp_gateway_params gateway_params;
    bool json;
    bool stats;
    const char *input; /* the positional TEXT */
    const char *media_files[CLI_MAX_MEDIA]; /* --image/--audio, in order */
    sipp_media_kind media_kinds[CLI_MAX_MEDIA];
    size_t n_media;
    const char *tool_file;   /* --tool-file: a JSON array of tool definitions (chat) */
    const char *tool_choice; /* --tool-choice auto|none|required|NAME */
    bool no_parallel_tool_calls; /* --no-parallel-tool-calls: at most one call per answer */
    const char *listen_prompt; /* listen: --prompt TEXT (the transcription instruction) */
    const char *language;      /* listen: --language LANG */
} cli_options;

/* True when the options name a provider or gateway endpoint instead of a local model. */
static inline bool cli_is_remote(const cli_options *o) {
    return o->provider || o->gateway_params.base_url;
}

/* In a usage text, these lines stand for the --help lines of a params struct's flags (one per row
 * of its table in include/sipp_settings.h that has a flag; a flag shared with a table printed
 * before is not repeated); cli_print_usage() prints them there. */
#define CLI_SETTINGS_HELP "@local\n"
#define CLI_TEXT_HELP "@text\n"
#define CLI_EMBED_HELP "@embed\n"
#define CLI_PROVIDER_HELP "@provider\n"
#define CLI_GATEWAY_HELP "@gateway\n"
void cli_print_usage(const char *usage, FILE *out);

/* Parses argv for a text or embed subcommand. Returns CLI_OK, or CLI_USAGE after printing
 * an error (or help, with *exit_now set and CLI_OK). */
int cli_parse(int argc, char **argv, const char *cmd, const char *usage, cli_options *o,
              bool *exit_now);

/* Resolves a model name: an existing path, a file in the models directory (with or without
 * .gguf), or with name NULL the first model there that can do `need`. Writes into buf. */
int cli_resolve_model(const char *name, cli_need need, char *buf, size_t cap);
/* The models directory: $SIPP_MODELS_DIR or ${XDG_CACHE_HOME:-~/.cache}/sipp/models. */
void cli_models_dir(char *buf, size_t cap);

/* The .gguf files directly in `dir`, sorted by name: at most `cap` names (each freed with
 * free()) into names[]; returns their count (0 when dir cannot be read). */
size_t cli_models_scan(const char *dir, char **names, size_t cap);

/* Pulled models (resolve.c). cli_hub_lookup: false when `name` is not a hub name (OWNER/REPO...);
 * else true with *rc set and, on CLI_OK, the model's path in buf (an error is printed when it
 * was not pulled). cli_hub_first: the first complete pulled model that can do `need`. */
bool cli_hub_lookup(const char *name, char *buf, size_t cap, int *rc);
int cli_hub_first(cli_need need, char *buf, size_t cap);

/* Creates a client and registers the endpoint the options name: a provider, a gateway, or
 * `o->model` loaded as a local endpoint (with a progress bar on a TTY). */
int cli_open(cli_options *o, sipp_client **client, sipp_endpoint **ep);

/* A sipp_progress_fn drawing a loading bar on stderr (output.c). */
bool cli_progress_bar(float p, void *ud);
/* Prints "sipp: error: <msg>" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints a JSON value (taken) as one compact line on stdout. */
struct json_t;
void cli_print_json(struct json_t *o);
/* --json on failure: {"error": {"status", "message", "http_status", "code", "request_id",
 * "retry_after_s"}} on stdout, so scripts see the same fields as the API. */
void cli_print_error_json(const sipp_response *r);
/* Reads a whole file into a malloc'd string, or NULL with an error printed. */
char *cli_read_file(const char *path);
/* The whole file as bytes (NUL-appended, malloc'd) and its length; NULL after printing why. */
char *cli_read_bytes(const char *path, size_t *len);

/* --tool-file (tools.c): the file's tool definitions, pointing into its JSON document. */
typedef struct cli_tools {
    struct json_t *doc;
    sipp_tool *tools; /* parameters: compact JSON text, malloc'd */
    size_t n;
} cli_tools;
/* Reads the tool file: CLI_OK, or CLI_USAGE / CLI_FAILED after printing why. */
int cli_tools_load(const char *path, cli_tools *t);
void cli_tools_free(cli_tools *t);
/* The answer's calls, one line each: `tool call NAME(ARGUMENTS) id=ID`. */
void cli_tools_print(const sipp_response *r);
/* The answer's calls as [{"id", "name", "arguments": JSON text}] for --json. */
struct json_t *cli_tools_json(const sipp_response *r);

int cmd_generate(int argc, char **argv, bool chat);
int cmd_listen(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_rm(int argc, char **argv);

#endif
