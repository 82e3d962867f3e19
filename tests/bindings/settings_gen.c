/*
 * settings_gen.c — writes the bindings' copies of the params structs' tables
 * (include/sipp_settings.h) for the languages that cannot include C:
 *   sipp_settings_gen python  > bindings/python/sipp/_fields.py
 *   sipp_settings_gen rust    > bindings/rust/src/fields.rs
 *   sipp_settings_gen node    > bindings/node/local_options.d.ts
 * (Python and Rust get the field lists of all five structs, TypeScript the options of
 * sipp_local_params.) scripts/gen-settings runs all three; the ctest `settings_generated` fails
 * while a committed file differs from this program's output, so a row added to a table reaches
 * every binding.
 */
#include <sipp.h>
#include <sipp_settings.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const sipp_setting local[] = {SIPP_LOCAL_SETTINGS(SIPP_LOCAL_SETTING_ROW)};
static const sipp_setting text[] = {SIPP_TEXT_SETTINGS(SIPP_TEXT_SETTING_ROW)};
static const sipp_setting embed[] = {SIPP_EMBED_SETTINGS(SIPP_EMBED_SETTING_ROW)};
static const sipp_setting provider[] = {SIPP_PROVIDER_SETTINGS(SIPP_PROVIDER_SETTING_ROW)};
static const sipp_setting gateway[] = {SIPP_GATEWAY_SETTINGS(SIPP_GATEWAY_SETTING_ROW)};
enum { N_LOCAL = sizeof local / sizeof local[0] };

/* The five tables in sipp.h order, with the names each language gives them. */
#define TABLE(rows, c, py) {#c, py, rows, sizeof rows / sizeof rows[0]}
static const struct table {
    const char *c_name, *py_name;
    const sipp_setting *rows;
    size_t n;
} tables[] = {
    TABLE(local, sipp_local_params, "LOCAL_PARAMS"),
    TABLE(provider, sipp_provider_params, "PROVIDER_PARAMS"),
    TABLE(gateway, sipp_gateway_params, "GATEWAY_PARAMS"),
    TABLE(text, sipp_text_params, "TEXT_PARAMS"),
    TABLE(embed, sipp_embed_params, "EMBED_PARAMS"),
};
enum { N_TABLES = sizeof tables / sizeof tables[0] };

static const char *const kind_names[] = {
    [SIPP_SETTING_SIZE] = "size",   [SIPP_SETTING_U32] = "u32",
    [SIPP_SETTING_I32] = "i32",     [SIPP_SETTING_U64] = "u64",
    [SIPP_SETTING_BOOL] = "bool",   [SIPP_SETTING_STR] = "str",
    [SIPP_SETTING_FN] = "fn",       [SIPP_SETTING_PTR] = "ptr",
    [SIPP_SETTING_F32] = "f32",     [SIPP_SETTING_STRV] = "strv",
    [SIPP_SETTING_COUNT] = "count", [SIPP_SETTING_TOKEN_FN] = "token_fn",
    [SIPP_SETTING_PROVIDER_KIND] = "enum", [SIPP_SETTING_GATEWAY_AUTH] = "enum",
    [SIPP_SETTING_MEDIA] = "media", [SIPP_SETTING_TOOLS] = "tools",
    [SIPP_SETTING_TOOL_CHOICE] = "enum", [SIPP_SETTING_REASONING_MODE] = "enum",
    [SIPP_SETTING_DELTA_FN] = "delta_fn",
};

static const char *const rust_types[] = {
    [SIPP_SETTING_SIZE] = "u32",
    [SIPP_SETTING_U32] = "u32",
    [SIPP_SETTING_I32] = "i32",
    [SIPP_SETTING_U64] = "u64",
    [SIPP_SETTING_BOOL] = "bool",
    [SIPP_SETTING_STR] = "*const c_char",
    [SIPP_SETTING_FN] = "sipp_load_progress_fn",
    [SIPP_SETTING_PTR] = "*mut c_void",
    [SIPP_SETTING_F32] = "c_float",
    [SIPP_SETTING_STRV] = "*const *const c_char",
    [SIPP_SETTING_COUNT] = "usize",
    [SIPP_SETTING_TOKEN_FN] = "sipp_token_fn",
    [SIPP_SETTING_PROVIDER_KIND] = "c_int",
    [SIPP_SETTING_GATEWAY_AUTH] = "c_int",
    [SIPP_SETTING_MEDIA] = "*const sipp_media",
    [SIPP_SETTING_TOOLS] = "*const sipp_tool",
    [SIPP_SETTING_TOOL_CHOICE] = "c_int",
    [SIPP_SETTING_REASONING_MODE] = "c_int",
    [SIPP_SETTING_DELTA_FN] = "sipp_delta_fn",
};

static const char header[] =
    "Generated from include/sipp_settings.h by tests/bindings/settings_gen.c: do not edit.\n"
    "%sUpdate with scripts/gen-settings (the ctest settings_generated fails while it is stale).\n";

/* A help text as the body of a Rust string literal (the table's help has no backslash). */
static void rust_str(const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar(*s);
    }
}

static void python(void) {
    printf("# ");
    printf(header, "# ");
    printf("\"\"\"The fields of the params structs in struct order, as (name, kind); _ffi.py maps the\n"
           "kinds to ctypes.\"\"\"\n");
    for (size_t t = 0; t < N_TABLES; t++) {
        printf("\n%s = [  # %s\n", tables[t].py_name, tables[t].c_name);
        for (size_t i = 0; i < tables[t].n; i++)
            printf("    (\"%s\", \"%s\"),\n", tables[t].rows[i].field,
                   kind_names[tables[t].rows[i].kind]);
        printf("]\n");
    }
}

static void rust(void) {
    printf("// ");
    printf(header, "// ");
    printf("\nuse super::{sipp_delta_fn, sipp_load_progress_fn, sipp_media, sipp_token_fn, "
           "sipp_tool};\n");
    printf("use std::os::raw::{c_char, c_float, c_int, c_void};\n");
    for (size_t t = 0; t < N_TABLES; t++) {
        printf("\n#[repr(C)]\npub struct %s {\n", tables[t].c_name);
        for (size_t i = 0; i < tables[t].n; i++)
            printf("    pub %s: %s,\n", tables[t].rows[i].field,
                   rust_types[tables[t].rows[i].kind]);
        printf("}\n");
    }
    printf("\n");
    printf("/// Calls `$m!` with the numbers and booleans of `sipp_local_params` that are settings,\n"
           "/// each as `#[doc = \"help\"] name: type,` (lib.rs builds LocalOptions from them).\n"
           "#[doc(hidden)]\n#[macro_export]\nmacro_rules! sipp_local_scalars {\n"
           "    ($m:ident) => {\n        $m! {\n");
    for (size_t i = 0; i < N_LOCAL; i++) {
        sipp_setting_kind k = local[i].kind;
        if (k != SIPP_SETTING_U32 && k != SIPP_SETTING_I32 && k != SIPP_SETTING_U64 &&
            k != SIPP_SETTING_BOOL)
            continue;
        printf("            #[doc = \"");
        rust_str(local[i].help);
        printf("\"] %s: %s,\n", local[i].field, rust_types[k]);
    }
    printf("        }\n    };\n}\n\n");
    printf("/// Calls `$m!(struct { field, ... })` with every field of each params struct in order\n"
           "/// (the layout test).\n#[doc(hidden)]\n#[macro_export]\nmacro_rules! sipp_params_fields "
           "{\n    ($m:ident) => {\n        [");
    for (size_t t = 0; t < N_TABLES; t++) {
        printf("\n            $m!(%s {", tables[t].c_name);
        for (size_t i = 0; i < tables[t].n; i++)
            printf("%s%s", i ? ", " : " ", tables[t].rows[i].field);
        printf(" }),");
    }
    printf("\n        ]\n    };\n}\n");
}

/* prefill_chunk -> prefillChunk, as the addon names its options. */
static void camel(const char *s) {
    for (; *s; s++) {
        if (*s == '_' && s[1]) putchar(*++s - 'a' + 'A');
        else putchar(*s);
    }
}

static void node(void) {
    printf("// ");
    printf(header, "// ");
    printf("\n/** Options of a local model endpoint (`sipp_local_params`; the model path is addLocal's\n"
           " *  argument). Absent = the library's default. */\nexport interface LocalOptions {\n");
    for (size_t i = 0; i < N_LOCAL; i++) {
        const char *ts;
        switch (local[i].kind) {
        case SIPP_SETTING_U32:
        case SIPP_SETTING_I32:
        case SIPP_SETTING_U64: ts = "number"; break;
        case SIPP_SETTING_BOOL: ts = "boolean"; break;
        case SIPP_SETTING_STR: ts = "string"; break;
        default: continue;
        }
        if (local[i].offset == offsetof(sipp_local_params, model_path)) continue;
        printf("  /** %s */\n  ", local[i].help);
        camel(local[i].field);
        printf("?: %s;\n", ts);
    }
    printf("}\n");
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "python") == 0) python();
    else if (argc == 2 && strcmp(argv[1], "rust") == 0) rust();
    else if (argc == 2 && strcmp(argv[1], "node") == 0) node();
    else {
        fprintf(stderr, "usage: sipp_settings_gen python|rust|node\n");
        return 2;
    }
    return 0;
}
