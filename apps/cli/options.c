/*
 * options.c — parsing the options of query, chat and embed: flags, their SIPP_* environment
 * variables, and the files they name (--grammar-file, --json-schema-file).
 *
 * Precedence: command-line flag > SIPP_* environment variable > library default. Values are
 * parsed here (numbers, enumerations, the sha256 pin's form); ranges of sampling values are
 * the library's checks, one set of rules. Model names are resolved in resolve.c, output in
 * output.c, the endpoint opened in endpoint.c.
 *
 * The settings (the engine's --ctx-size, the sampling --temperature, the remote endpoints'
 * --request-timeout-ms, ...: fields of the five params structs) are not written here: their
 * flags, variables, ranges and --help lines come from the tables of sipp_settings.h. Only the
 * options that are no field of a params struct (--model, --system, the files, --json) and the
 * lists (--stop, --header) are this file's own.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "sipp_settings.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

char *cli_read_file(const char *path) { return cli_read_bytes(path, NULL); }

char *cli_read_bytes(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("cannot read '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *b2 = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!b2) {
                free(buf);
                buf = NULL;
                cli_error("'%s' is too large", path);
                break;
            }
            buf = b2;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

/* ---- numbers ----------------------------------------------------------------------------- */

static bool parse_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_error("%s expects an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_float(const char *opt, const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) {
        cli_error("%s expects a number, got '%s'", opt, s);
        return false;
    }
    *out = v; /* range checks (NaN, negative...) are the library's: one set of rules */
    return true;
}

/* ---- options ----------------------------------------------------------------------------- */

enum {
    OPT_MODEL = 'm', OPT_HELP = 'h', OPT_SHORT_MAX_TOKENS = 'n',
    OPT_STOP = 1000, OPT_SYSTEM, OPT_GRAMMAR_FILE, OPT_JSON_SCHEMA_FILE, OPT_JSON, OPT_STATS,
    OPT_PROVIDER, OPT_HEADER, OPT_IMAGE, OPT_AUDIO, OPT_TOOL_FILE, OPT_TOOL_CHOICE,
    OPT_NO_PARALLEL_TOOL_CALLS, OPT_PROMPT, OPT_LANGUAGE,
    OPT_SETTING = 2000, /* OPT_SETTING + i: the flag of rows[i] (and of every row of its name) */
};

/* The settings of the five params structs come from their tables (sipp_settings.h): flag, env
 * var, range, help. Each row sets its field in the struct of cli_options at `base`. */
static const sipp_setting local_rows[] = {SIPP_LOCAL_SETTINGS(SIPP_LOCAL_SETTING_ROW)};
static const sipp_setting text_rows[] = {SIPP_TEXT_SETTINGS(SIPP_TEXT_SETTING_ROW)};
static const sipp_setting embed_rows[] = {SIPP_EMBED_SETTINGS(SIPP_EMBED_SETTING_ROW)};
static const sipp_setting provider_rows[] = {SIPP_PROVIDER_SETTINGS(SIPP_PROVIDER_SETTING_ROW)};
static const sipp_setting gateway_rows[] = {SIPP_GATEWAY_SETTINGS(SIPP_GATEWAY_SETTING_ROW)};
#define N_OF(t) (sizeof t / sizeof t[0])

static const struct table {
    const char *name; /* its help marker: "@name" in a usage text */
    const sipp_setting *rows;
    size_t n, base;   /* base: offsetof(cli_options, the struct) */
} tables[] = {
    {"local", local_rows, N_OF(local_rows), offsetof(cli_options, local)},
    {"text", text_rows, N_OF(text_rows), offsetof(cli_options, text)},
    {"embed", embed_rows, N_OF(embed_rows), offsetof(cli_options, embed)},
    {"provider", provider_rows, N_OF(provider_rows), offsetof(cli_options, provider_params)},
    {"gateway", gateway_rows, N_OF(gateway_rows), offsetof(cli_options, gateway_params)},
};
enum { N_TABLES = N_OF(tables) };
enum {
    N_ROWS = N_OF(local_rows) + N_OF(text_rows) + N_OF(embed_rows) + N_OF(provider_rows) +
             N_OF(gateway_rows)
};

/* Every row of every table, with where its struct is; flag `opt` is rows[opt - OPT_SETTING]. */
static struct row {
    const sipp_setting *s;
    size_t base;
} rows[N_ROWS];

/* Short options of settings' flags. */
static const struct {
    char c;
    const char *flag;
} shorts[] = {{OPT_SHORT_MAX_TOKENS, "max-tokens"}};

/* The flags that are not settings; long_opts_build() appends the settings' flags to them. */
static const struct option fixed_opts[] = {
    {"model", required_argument, 0, OPT_MODEL},
    {"stop", required_argument, 0, OPT_STOP},
    {"system", required_argument, 0, OPT_SYSTEM},
    {"grammar-file", required_argument, 0, OPT_GRAMMAR_FILE},
    {"json-schema-file", required_argument, 0, OPT_JSON_SCHEMA_FILE},
    {"provider", required_argument, 0, OPT_PROVIDER},
    {"header", required_argument, 0, OPT_HEADER},
    {"json", no_argument, 0, OPT_JSON},
    {"stats", no_argument, 0, OPT_STATS},
    {"image", required_argument, 0, OPT_IMAGE},
    {"audio", required_argument, 0, OPT_AUDIO},
    {"tool-file", required_argument, 0, OPT_TOOL_FILE},
    {"tool-choice", required_argument, 0, OPT_TOOL_CHOICE},
    {"no-parallel-tool-calls", no_argument, 0, OPT_NO_PARALLEL_TOOL_CALLS},
    {"prompt", required_argument, 0, OPT_PROMPT},
    {"language", required_argument, 0, OPT_LANGUAGE},
    {"help", no_argument, 0, OPT_HELP},
};
enum { N_FIXED = N_OF(fixed_opts) };
static struct option long_opts[N_FIXED + N_ROWS + 1];

/* The first row whose flag is `flag`, or -1. */
static int row_of_flag(const char *flag) {
    for (size_t i = 0; i < N_ROWS; i++)
        if (rows[i].s->flag && strcmp(rows[i].s->flag, flag) == 0) return (int)i;
    return -1;
}

static void long_opts_build(void) {
    size_t n = 0, r = 0;
    for (size_t t = 0; t < N_TABLES; t++)
        for (size_t i = 0; i < tables[t].n; i++)
            rows[r++] = (struct row){&tables[t].rows[i], tables[t].base};
    for (size_t i = 0; i < N_FIXED; i++) long_opts[n++] = fixed_opts[i];
    for (size_t i = 0; i < N_ROWS; i++) {
        const sipp_setting *s = rows[i].s;
        if (!s->flag || row_of_flag(s->flag) != (int)i) continue; /* a shared flag: once */
        int has_arg = s->kind == SIPP_SETTING_BOOL ? no_argument : required_argument;
        long_opts[n++] = (struct option){s->flag, has_arg, 0, OPT_SETTING + (int)i};
    }
    long_opts[n] = (struct option){0, 0, 0, 0};
}

/* Sets the field of row `r` in `o` from its flag or variable (`name`, for errors). `arg` is NULL
 * for a BOOL flag, which takes no value; strings point into argv or the environment. */
static bool apply_setting(cli_options *o, const struct row *r, const char *arg,
                          const char *name) {
    const sipp_setting *s = r->s;
    char *dst = (char *)o + r->base + s->offset;
    long v;
    switch (s->kind) {
    case SIPP_SETTING_U32:
    case SIPP_SETTING_I32:
    case SIPP_SETTING_U64: {
        /* long is 64-bit here: it holds every min and max of the tables (at most INT64_MAX) */
        if (!parse_long(name, arg, (long)s->min, (long)s->max, &v)) return false;
        if (s->kind == SIPP_SETTING_U32) {
            uint32_t x = (uint32_t)v;
            memcpy(dst, &x, sizeof x);
        } else if (s->kind == SIPP_SETTING_I32) {
            int32_t x = (int32_t)v;
            memcpy(dst, &x, sizeof x);
        } else {
            uint64_t x = (uint64_t)v;
            memcpy(dst, &x, sizeof x);
        }
        return true;
    }
    case SIPP_SETTING_F32: {
        float x;
        if (!parse_float(name, arg, &x)) return false;
        memcpy(dst, &x, sizeof x);
        return true;
    }
    case SIPP_SETTING_BOOL: {
        bool b = !arg || strcmp(arg, "1") == 0 || strcmp(arg, "true") == 0;
        if (arg && !b && strcmp(arg, "0") != 0 && strcmp(arg, "false") != 0) {
            cli_error("%s expects 1, true, 0 or false, got '%s'", name, arg);
            return false;
        }
        if (!arg && s->flag && strncmp(s->flag, "no-", 3) == 0) b = false; /* --no-normalize */
        memcpy(dst, &b, sizeof b);
        return true;
    }
    case SIPP_SETTING_STR:
        if (r->base == offsetof(cli_options, local) &&
            s->offset == offsetof(sipp_local_params, sha256)) { /* the pin: checked up front */
            size_t n = strspn(arg, "0123456789abcdefABCDEF");
            if (n != 64 || arg[n]) {
                cli_error("%s must be 64 hex digits (the model file's SHA-256)", name);
                return false;
            }
        }
        memcpy(dst, &arg, sizeof arg);
        return true;
    default: return false; /* SIZE, callbacks, arrays, enums: never a flag */
    }
}

/* Sets every row whose flag (or variable, when `env`) is that of rows[i]. */
static bool apply_rows(cli_options *o, size_t i, const char *arg, const char *name, bool env) {
    const char *key = env ? rows[i].s->env : rows[i].s->flag;
    for (size_t j = i; j < N_ROWS; j++) {
        const char *k = env ? rows[j].s->env : rows[j].s->flag;
        if (k && strcmp(k, key) == 0 && !apply_setting(o, &rows[j], arg, name)) return false;
    }
    return true;
}

static bool apply_opt(cli_options *o, int opt, const char *arg, const char *name) {
    if (opt >= OPT_SETTING && opt < OPT_SETTING + N_ROWS)
        return apply_rows(o, (size_t)(opt - OPT_SETTING), arg, name, false);
    switch (opt) {
    case OPT_MODEL: o->model = arg; return true;
    case OPT_STOP:
        if (o->n_stop >= SIPP_MAX_STOP_STRINGS) {
            cli_error("at most %d --stop strings", SIPP_MAX_STOP_STRINGS);
            return false;
        }
        o->stops[o->n_stop++] = arg;
        return true;
    case OPT_SYSTEM: o->system = arg; return true;
    case OPT_PROMPT: o->listen_prompt = arg; return true;
    case OPT_LANGUAGE: o->language = arg; return true;
    case OPT_IMAGE:
    case OPT_AUDIO:
        if (o->n_media >= CLI_MAX_MEDIA) {
            cli_error("at most %d --image/--audio files", CLI_MAX_MEDIA);
            return false;
        }
        o->media_files[o->n_media] = arg;
        o->media_kinds[o->n_media++] = opt == OPT_IMAGE ? SIPP_MEDIA_IMAGE : SIPP_MEDIA_AUDIO;
        return true;
    case OPT_GRAMMAR_FILE: o->grammar_file = arg; return true;
    case OPT_JSON_SCHEMA_FILE: o->json_schema_file = arg; return true;
    case OPT_PROVIDER:
        if (strcmp(arg, "openai") != 0 && strcmp(arg, "openai_compatible") != 0 &&
            strcmp(arg, "anthropic") != 0) {
            cli_error("%s must be openai, openai_compatible or anthropic, got '%s'", name, arg);
            return false;
        }
        o->provider = arg;
        return true;
    case OPT_HEADER:
        if (o->n_headers >= CLI_MAX_HEADERS) {
            cli_error("at most %d --header lines", CLI_MAX_HEADERS);
            return false;
        }
        o->headers[o->n_headers++] = arg;
        return true;
    case OPT_TOOL_FILE: o->tool_file = arg; return true;
    case OPT_TOOL_CHOICE: o->tool_choice = arg; return true;
    case OPT_NO_PARALLEL_TOOL_CALLS: o->no_parallel_tool_calls = true; return true;
    case OPT_JSON: o->json = true; return true;
    case OPT_STATS: o->stats = true; return true;
    }
    return false;
}

/* Prints `text` from column `col` on, wrapped before column 96 with continuation lines indented
 * to column 28 (the help column). */
static void print_wrapped(const char *text, size_t col, FILE *out) {
    enum { WIDTH = 96, INDENT = 28 };
    while (*text) {
        size_t room = col < WIDTH ? WIDTH - col : 0, n = strlen(text);
        if (n > room) {
            size_t cut = room;
            while (cut > 0 && text[cut] != ' ') cut--;
            if (cut == 0) cut = strcspn(text, " ");
            n = cut;
        }
        fprintf(out, "%.*s", (int)n, text);
        text += n;
        while (*text == ' ') text++;
        if (*text) {
            fprintf(out, "\n%*s", INDENT, "");
            col = INDENT;
        }
    }
}

/* The --help lines of a table's flags; printed[] marks the flags printed so far (by the row of
 * their first table), so a flag of several tables is shown once. */
static void print_table_help(const struct table *t, bool *printed, FILE *out) {
    for (size_t i = 0; i < t->n; i++) {
        const sipp_setting *s = &t->rows[i];
        if (!s->flag) continue;
        int first = row_of_flag(s->flag);
        if (printed[first]) continue;
        printed[first] = true;
        char opt[64];
        const char *short_opt = "";
        char sbuf[8];
        for (size_t k = 0; k < N_OF(shorts); k++)
            if (strcmp(shorts[k].flag, s->flag) == 0) {
                snprintf(sbuf, sizeof sbuf, "-%c, ", shorts[k].c);
                short_opt = sbuf;
            }
        snprintf(opt, sizeof opt, "%s--%s%s%s", short_opt, s->flag, *s->arg ? " " : "", s->arg);
        fprintf(out, "  %-25s ", opt);
        char help[512];
        snprintf(help, sizeof help, "%s%s%s%s", s->help, s->env ? " [" : "", s->env ? s->env : "",
                 s->env ? "]" : "");
        print_wrapped(help, 28, out);
        fputc('\n', out);
    }
}

void cli_print_usage(const char *usage, FILE *out) {
    if (!rows[0].s) long_opts_build();
    bool printed[N_ROWS] = {false};
    const char *p = usage;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p + 1) : strlen(p);
        const struct table *t = NULL;
        for (size_t k = 0; k < N_TABLES && *p == '@'; k++)
            if (len == strlen(tables[k].name) + 2 && strncmp(p + 1, tables[k].name, len - 2) == 0)
                t = &tables[k];
        if (t) print_table_help(t, printed, out);
        else fwrite(p, 1, len, out);
        p += len;
    }
}

static const char *opt_name(int c) {
    for (const struct option *lo = long_opts; lo->name; lo++)
        if (lo->val == c) return lo->name;
    return "?";
}

int cli_parse(int argc, char **argv, const char *cmd, const char *usage, cli_options *o,
              bool *exit_now) {
    memset(o, 0, sizeof *o);
    sipp_text_params_init(&o->text, sizeof o->text);
    sipp_local_params_init(&o->local, sizeof o->local);
    sipp_embed_params_init(&o->embed, sizeof o->embed);
    sipp_provider_params_init(&o->provider_params, sizeof o->provider_params);
    sipp_gateway_params_init(&o->gateway_params, sizeof o->gateway_params);
    *exit_now = false;
    long_opts_build();
    const char *model = getenv("SIPP_MODEL");
    if (model && *model) o->model = model;
    for (size_t i = 0; i < N_ROWS; i++) {
        const char *env = rows[i].s->env, *v = env ? getenv(env) : NULL;
        if (!v || !*v) continue;
        bool first = true; /* a variable of several tables: applied from its first row */
        for (size_t j = 0; j < i && first; j++)
            first = !(rows[j].s->env && strcmp(rows[j].s->env, env) == 0);
        if (first && !apply_rows(o, i, v, env, true)) return CLI_USAGE;
    }
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "m:n:h", long_opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            cli_print_usage(usage, stdout);
            *exit_now = true;
            return CLI_OK;
        }
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            cli_error("%s: unknown option or missing value near '%s' (see sipp %s --help)", cmd,
                      bad ? bad : "?", cmd);
            return CLI_USAGE;
        }
        for (size_t k = 0; k < N_OF(shorts); k++)
            if (c == shorts[k].c) c = OPT_SETTING + row_of_flag(shorts[k].flag);
        char name[48];
        snprintf(name, sizeof name, "--%s", opt_name(c));
        if (!apply_opt(o, c, optarg, name)) return CLI_USAGE;
    }
    if (optind < argc) o->input = argv[optind++];
    if (optind < argc) {
        cli_error("%s: one TEXT argument expected; quote it (extra: '%s')", cmd, argv[optind]);
        return CLI_USAGE;
    }
    if (!o->input) {
        cli_error("%s: TEXT is required (see sipp %s --help)", cmd, cmd);
        return CLI_USAGE;
    }
    const char *gateway = o->gateway_params.base_url;
    if (o->provider && gateway) {
        cli_error("%s: --provider and --gateway are exclusive: pick one endpoint", cmd);
        return CLI_USAGE;
    }
    if (o->n_headers && !cli_is_remote(o)) {
        cli_error("%s: --header is for --provider or --gateway endpoints", cmd);
        return CLI_USAGE;
    }
    if (o->gateway_params.auth_header && !gateway) {
        cli_error("%s: --auth-header is for --gateway endpoints", cmd);
        return CLI_USAGE;
    }
    if (gateway && !o->gateway_params.target) {
        cli_error("%s: --gateway needs --target NAME (the gateway's target)", cmd);
        return CLI_USAGE;
    }
    if (o->provider && !o->provider_params.model) {
        cli_error("%s: --provider needs --remote-model NAME", cmd);
        return CLI_USAGE;
    }
    if ((o->tool_file || o->tool_choice || o->no_parallel_tool_calls) && strcmp(cmd, "chat") != 0) {
        cli_error("%s: --tool-file and --tool-choice are for chat", cmd);
        return CLI_USAGE;
    }
    if ((o->tool_choice || o->no_parallel_tool_calls) && !o->tool_file) {
        cli_error("%s: --tool-choice and --no-parallel-tool-calls need --tool-file", cmd);
        return CLI_USAGE;
    }
    o->text.parallel_tool_calls = !o->no_parallel_tool_calls;
    o->text.stop = o->stops;
    o->text.n_stop = o->n_stop;
    return CLI_OK;
}
