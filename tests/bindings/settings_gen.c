/*
 * settings_gen.c — writes the bindings' copies of the sipp_local_params table
 * (include/sipp_settings.h) for the languages that cannot include C:
 *   sipp_settings_gen python  > bindings/python/sipp/_fields.py
 *   sipp_settings_gen rust    > bindings/rust/src/fields.rs
 *   sipp_settings_gen node    > bindings/node/local_options.d.ts
 * scripts/gen-settings runs both; the ctest `settings_generated` fails while a committed file
 * differs from this program's output, so a row added to the table reaches every binding.
 */
#include <sipp.h>
#include <sipp_settings.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const sipp_setting local[] = {SIPP_LOCAL_SETTINGS(SIPP_LOCAL_SETTING_ROW)};
enum { N_LOCAL = sizeof local / sizeof local[0] };

static const char *const kind_names[] = {
    [SIPP_SETTING_SIZE] = "size", [SIPP_SETTING_U32] = "u32", [SIPP_SETTING_I32] = "i32",
    [SIPP_SETTING_U64] = "u64",   [SIPP_SETTING_BOOL] = "bool", [SIPP_SETTING_STR] = "str",
    [SIPP_SETTING_FN] = "fn",     [SIPP_SETTING_PTR] = "ptr",
};

static const char *const rust_types[] = {
    [SIPP_SETTING_SIZE] = "u32", [SIPP_SETTING_U32] = "u32", [SIPP_SETTING_I32] = "i32",
    [SIPP_SETTING_U64] = "u64",  [SIPP_SETTING_BOOL] = "bool", [SIPP_SETTING_STR] = "*const c_char",
    [SIPP_SETTING_FN] = "sipp_load_progress_fn", [SIPP_SETTING_PTR] = "*mut c_void",
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
    printf("\"\"\"The fields of sipp_local_params in struct order, as (name, kind); _ffi.py maps the\n"
           "kinds to ctypes.\"\"\"\n\n");
    printf("LOCAL_PARAMS = [\n");
    for (size_t i = 0; i < N_LOCAL; i++)
        printf("    (\"%s\", \"%s\"),\n", local[i].field, kind_names[local[i].kind]);
    printf("]\n");
}

static void rust(void) {
    printf("// ");
    printf(header, "// ");
    printf("\nuse super::sipp_load_progress_fn;\n");
    printf("use std::os::raw::{c_char, c_void};\n\n");
    printf("#[repr(C)]\npub struct sipp_local_params {\n");
    for (size_t i = 0; i < N_LOCAL; i++)
        printf("    pub %s: %s,\n", local[i].field, rust_types[local[i].kind]);
    printf("}\n\n");
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
    printf("/// Calls `$m!(sipp_local_params { field, ... })` with every field in order (the layout "
           "test).\n#[doc(hidden)]\n#[macro_export]\nmacro_rules! sipp_local_params_fields {\n"
           "    ($m:ident) => {\n        $m!(sipp_local_params {");
    for (size_t i = 0; i < N_LOCAL; i++) printf("%s%s", i ? ", " : " ", local[i].field);
    printf(" })\n    };\n}\n");
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
