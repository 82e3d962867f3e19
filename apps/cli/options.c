/*
 * options.c — parsing the options of query, chat and embed: flags, their SIPP_* environment
 * variables, and the files they name (--grammar-file, --json-schema-file).
 *
 * Precedence: command-line flag > SIPP_* environment variable > library default. Values are
 * parsed here (numbers, enumerations, the sha256 pin's form); ranges of sampling values are
 * the library's checks, one set of rules. Model names are resolved in resolve.c, output in
 * output.c, the endpoint opened in endpoint.c.
 *
 * The engine settings (--ctx-size, --threads, ...: sipp_local_params) are not written here: their
 * flags, variables, ranges and --help lines come from SIPP_LOCAL_SETTINGS (sipp_settings.h).
 */
#define _GNU_SOURCE
#include "cli.h"
#include "sipp_settings.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
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
    OPT_MODEL = 'm', OPT_HELP = 'h', OPT_MAX_TOKENS = 'n',
    OPT_TEMPERATURE = 1000, OPT_TOP_K, OPT_TOP_P, OPT_MIN_P, OPT_REPEAT_PENALTY, OPT_SEED,
    OPT_STOP, OPT_SYSTEM, OPT_GRAMMAR_FILE, OPT_JSON_SCHEMA_FILE, OPT_CONTEXT_KEY, OPT_JSON,
    OPT_STATS, OPT_NO_NORMALIZE, OPT_PROVIDER, OPT_BASE_URL, OPT_REMOTE_MODEL, OPT_API_KEY_ENV,
    OPT_REQUEST_TIMEOUT, OPT_IDLE_TIMEOUT, OPT_GATEWAY, OPT_TARGET, OPT_TOKEN_ENV, OPT_EXTRA_JSON,
    OPT_HEADER, OPT_REQUEST_ID, OPT_ALLOW_PRIVATE, OPT_AUTH_HEADER, OPT_IMAGE, OPT_AUDIO,
    OPT_SETTING = 2000, /* OPT_SETTING + i: the flag of settings[i] */
};

/* The engine settings (sipp_local_params) come from their table: flag, env var, range, help. */
static const sipp_setting settings[] = {SIPP_LOCAL_SETTINGS(SIPP_LOCAL_SETTING_ROW)};
enum { N_SETTINGS = sizeof settings / sizeof settings[0] };

/* The flags that are not settings; cli_parse() appends the settings' flags to them. */
static const struct option fixed_opts[] = {
    {"model", required_argument, 0, OPT_MODEL},
    {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
    {"temperature", required_argument, 0, OPT_TEMPERATURE},
    {"top-k", required_argument, 0, OPT_TOP_K},
    {"top-p", required_argument, 0, OPT_TOP_P},
    {"min-p", required_argument, 0, OPT_MIN_P},
    {"repeat-penalty", required_argument, 0, OPT_REPEAT_PENALTY},
    {"seed", required_argument, 0, OPT_SEED},
    {"stop", required_argument, 0, OPT_STOP},
    {"system", required_argument, 0, OPT_SYSTEM},
    {"grammar-file", required_argument, 0, OPT_GRAMMAR_FILE},
    {"json-schema-file", required_argument, 0, OPT_JSON_SCHEMA_FILE},
    {"context-key", required_argument, 0, OPT_CONTEXT_KEY},
    {"provider", required_argument, 0, OPT_PROVIDER},
    {"base-url", required_argument, 0, OPT_BASE_URL},
    {"remote-model", required_argument, 0, OPT_REMOTE_MODEL},
    {"api-key-env", required_argument, 0, OPT_API_KEY_ENV},
    {"request-timeout-ms", required_argument, 0, OPT_REQUEST_TIMEOUT},
    {"idle-timeout-ms", required_argument, 0, OPT_IDLE_TIMEOUT},
    {"allow-private-network", no_argument, 0, OPT_ALLOW_PRIVATE},
    {"gateway", required_argument, 0, OPT_GATEWAY},
    {"target", required_argument, 0, OPT_TARGET},
    {"token-env", required_argument, 0, OPT_TOKEN_ENV},
    {"auth-header", required_argument, 0, OPT_AUTH_HEADER},
    {"extra-json", required_argument, 0, OPT_EXTRA_JSON},
    {"header", required_argument, 0, OPT_HEADER},
    {"request-id", required_argument, 0, OPT_REQUEST_ID},
    {"json", no_argument, 0, OPT_JSON},
    {"stats", no_argument, 0, OPT_STATS},
    {"no-normalize", no_argument, 0, OPT_NO_NORMALIZE},
    {"image", required_argument, 0, OPT_IMAGE},
    {"audio", required_argument, 0, OPT_AUDIO},
    {"help", no_argument, 0, OPT_HELP},
};
enum { N_FIXED = sizeof fixed_opts / sizeof fixed_opts[0] };
static struct option long_opts[N_FIXED + N_SETTINGS + 1];

static void long_opts_build(void) {
    size_t n = 0;
    for (size_t i = 0; i < N_FIXED; i++) long_opts[n++] = fixed_opts[i];
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].flag)
            long_opts[n++] = (struct option){settings[i].flag,
                                             settings[i].kind == SIPP_SETTING_BOOL ? no_argument
                                                                                   : required_argument,
                                             0, OPT_SETTING + (int)i};
    long_opts[n] = (struct option){0, 0, 0, 0};
}

/* Environment variables mirror the flags: SIPP_<FLAG> with dashes as underscores (the
 * settings' variables are in their table). */
static const struct {
    const char *env;
    int opt;
} env_opts[] = {
    {"SIPP_MODEL", OPT_MODEL},           {"SIPP_MAX_TOKENS", OPT_MAX_TOKENS},
    {"SIPP_TEMPERATURE", OPT_TEMPERATURE}, {"SIPP_TOP_K", OPT_TOP_K},
    {"SIPP_TOP_P", OPT_TOP_P},           {"SIPP_MIN_P", OPT_MIN_P},
    {"SIPP_REPEAT_PENALTY", OPT_REPEAT_PENALTY}, {"SIPP_SEED", OPT_SEED},
};

/* Sets settings[i] in o->local from its flag or variable (`name`, for errors). `arg` is NULL for
 * a BOOL flag, which takes no value; strings point into argv or the environment. */
static bool apply_setting(cli_options *o, const sipp_setting *s, const char *arg,
                          const char *name) {
    char *dst = (char *)&o->local + s->offset;
    long v;
    switch (s->kind) {
    case SIPP_SETTING_U32:
    case SIPP_SETTING_I32:
    case SIPP_SETTING_U64: {
        /* long is 64-bit here: it holds every min and max of the table (at most INT64_MAX) */
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
    case SIPP_SETTING_BOOL: {
        bool b = !arg || strcmp(arg, "1") == 0 || strcmp(arg, "true") == 0;
        if (arg && !b && strcmp(arg, "0") != 0 && strcmp(arg, "false") != 0) {
            cli_error("%s expects 1, true, 0 or false, got '%s'", name, arg);
            return false;
        }
        memcpy(dst, &b, sizeof b);
        return true;
    }
    case SIPP_SETTING_STR:
        if (s->offset == offsetof(sipp_local_params, sha256)) {
            size_t n = strspn(arg, "0123456789abcdefABCDEF");
            if (n != 64 || arg[n]) {
                cli_error("%s must be 64 hex digits (the model file's SHA-256)", name);
                return false;
            }
        }
        memcpy(dst, &arg, sizeof arg);
        return true;
    default: return false; /* SIZE, FN, PTR: never a flag */
    }
}

static bool apply_opt(cli_options *o, int opt, const char *arg, const char *name) {
    long v;
    if (opt >= OPT_SETTING && opt < OPT_SETTING + N_SETTINGS)
        return apply_setting(o, &settings[opt - OPT_SETTING], arg, name);
    switch (opt) {
    case OPT_MODEL: o->model = arg; return true;
    case OPT_MAX_TOKENS:
        if (!parse_long(name, arg, 0, INT_MAX, &v)) return false;
        o->text.max_tokens = (uint32_t)v;
        return true;
    case OPT_TEMPERATURE: return parse_float(name, arg, &o->text.temperature);
    case OPT_TOP_K:
        if (!parse_long(name, arg, 0, INT_MAX, &v)) return false;
        o->text.top_k = (int32_t)v;
        return true;
    case OPT_TOP_P: return parse_float(name, arg, &o->text.top_p);
    case OPT_MIN_P: return parse_float(name, arg, &o->text.min_p);
    case OPT_REPEAT_PENALTY: return parse_float(name, arg, &o->text.repeat_penalty);
    case OPT_SEED:
        if (!parse_long(name, arg, 0, UINT32_MAX, &v)) return false;
        o->text.seed = (uint32_t)v;
        return true;
    case OPT_STOP:
        if (o->n_stop >= SIPP_MAX_STOP_STRINGS) {
            cli_error("at most %d --stop strings", SIPP_MAX_STOP_STRINGS);
            return false;
        }
        o->stops[o->n_stop++] = arg;
        return true;
    case OPT_SYSTEM: o->system = arg; return true;
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
    case OPT_CONTEXT_KEY: o->context_key = arg; return true;
    case OPT_PROVIDER:
        if (strcmp(arg, "openai") != 0 && strcmp(arg, "openai_compatible") != 0 &&
            strcmp(arg, "anthropic") != 0) {
            cli_error("%s must be openai, openai_compatible or anthropic, got '%s'", name, arg);
            return false;
        }
        o->provider = arg;
        return true;
    case OPT_BASE_URL: o->base_url = arg; return true;
    case OPT_REMOTE_MODEL: o->remote_model = arg; return true;
    case OPT_API_KEY_ENV: o->api_key_env = arg; return true;
    case OPT_REQUEST_TIMEOUT:
        if (!parse_long(name, arg, 0, INT_MAX, &v)) return false;
        o->request_timeout_ms = (uint32_t)v;
        return true;
    case OPT_IDLE_TIMEOUT:
        if (!parse_long(name, arg, 0, INT_MAX, &v)) return false;
        o->idle_timeout_ms = (uint32_t)v;
        return true;
    case OPT_ALLOW_PRIVATE: o->allow_private_network = true; return true;
    case OPT_GATEWAY: o->gateway = arg; return true;
    case OPT_TARGET: o->target = arg; return true;
    case OPT_TOKEN_ENV: o->token_env = arg; return true;
    case OPT_AUTH_HEADER: o->auth_header = arg; return true;
    case OPT_EXTRA_JSON: o->text.extra_json = arg; return true;
    case OPT_HEADER:
        if (o->n_headers >= CLI_MAX_HEADERS) {
            cli_error("at most %d --header lines", CLI_MAX_HEADERS);
            return false;
        }
        o->headers[o->n_headers++] = arg;
        return true;
    case OPT_REQUEST_ID: o->text.request_id = arg; return true;
    case OPT_JSON: o->json = true; return true;
    case OPT_STATS: o->stats = true; return true;
    case OPT_NO_NORMALIZE: o->normalize = false; return true;
    }
    return false;
}

void cli_print_usage(const char *usage, FILE *out) {
    const char *mark = strstr(usage, CLI_SETTINGS_HELP);
    if (!mark) {
        fputs(usage, out);
        return;
    }
    fwrite(usage, 1, (size_t)(mark - usage), out);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const sipp_setting *s = &settings[i];
        if (!s->flag) continue;
        char opt[64];
        snprintf(opt, sizeof opt, "--%s%s%s", s->flag, *s->arg ? " " : "", s->arg);
        fprintf(out, "  %-25s %s", opt, s->help);
        if (s->env) fprintf(out, " [%s]", s->env);
        fputc('\n', out);
    }
    fputs(mark + strlen(CLI_SETTINGS_HELP), out);
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
    o->normalize = true;
    *exit_now = false;
    long_opts_build();
    for (size_t i = 0; i < sizeof env_opts / sizeof env_opts[0]; i++) {
        const char *v = getenv(env_opts[i].env);
        if (v && *v && !apply_opt(o, env_opts[i].opt, v, env_opts[i].env)) return CLI_USAGE;
    }
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = settings[i].env ? getenv(settings[i].env) : NULL;
        if (v && *v && !apply_setting(o, &settings[i], v, settings[i].env)) return CLI_USAGE;
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
    if (o->provider && o->gateway) {
        cli_error("%s: --provider and --gateway are exclusive: pick one endpoint", cmd);
        return CLI_USAGE;
    }
    if (o->n_headers && !cli_is_remote(o)) {
        cli_error("%s: --header is for --provider or --gateway endpoints", cmd);
        return CLI_USAGE;
    }
    if (o->auth_header && !o->gateway) {
        cli_error("%s: --auth-header is for --gateway endpoints", cmd);
        return CLI_USAGE;
    }
    if (o->gateway && !o->target) {
        cli_error("%s: --gateway needs --target NAME (the gateway's target)", cmd);
        return CLI_USAGE;
    }
    if (o->provider && !o->remote_model) {
        cli_error("%s: --provider needs --remote-model NAME", cmd);
        return CLI_USAGE;
    }
    o->text.stop = o->stops;
    o->text.n_stop = o->n_stop;
    o->text.context_key = o->context_key;
    return CLI_OK;
}
