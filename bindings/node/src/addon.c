/*
 * addon.c — the N-API addon of the Node binding: a thin layer over include/sipp.h. lib/index.js
 * builds the idiomatic API (Client, Endpoint, Run, SippError) on these functions.
 *
 * Threads: nothing here blocks the JS thread on inference. sipp_client_add_local (a model load)
 * runs as napi async work. A run's stream is read by a pump thread of its own, started on the
 * first demand: each demand from JS makes it pull one batch with sipp_run_next(-1); drain mode
 * makes it pull to the end. Items reach JS through a threadsafe function whose callback is the
 * module's one dispatch function, with only a weak reference to the JS run object, so a run
 * nobody reads can be collected (lib/index.js then abandons it: cancel, drain, free).
 *
 * Ownership of a run_h: two references, the JS external and the pump. Without a pump, the
 * external's finalizer frees the sipp_run; with one, the threadsafe function's finalizer (on the
 * JS thread, after the pump released it) joins the pump and frees the sipp_run. sipp_run_free is
 * never called while the pump may be inside sipp_run_next.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <sipp.h>
#include <sipp_settings.h>

#include <math.h>
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Live objects, for the leak tests (diag()). */
static atomic_int live_runs;    /* sipp_run not yet freed */
static atomic_int live_handles; /* run_h not yet freed */

/* ---- module state and helpers -------------------------------------------------------------- */

typedef struct module_state {
    napi_ref error_class; /* SippError of lib/index.js */
    napi_ref dispatch;    /* (run, kind, text, nTokens, response|error) of lib/index.js */
} module_state;

#define CHECK(call)                                                                              \
    do {                                                                                         \
        if ((call) != napi_ok) goto fail;                                                        \
    } while (0)

static module_state *state_of(napi_env env) {
    module_state *st = NULL;
    napi_get_instance_data(env, (void **)&st);
    return st;
}

/* Builds SippError(kind, message, status, code, requestId, httpStatus, subcode) (falls back to a
 * plain Error). `code` is the peer's error code (sipp_response.error_code), "" for none. */
static napi_value make_error(napi_env env, int status, const char *message, const char *code,
                             uint32_t http_status, int32_t subcode, const char *request_id) {
    napi_value args[7], cls, out = NULL;
    napi_create_string_utf8(env, sipp_status_name((sipp_status)status), NAPI_AUTO_LENGTH, &args[0]);
    napi_create_string_utf8(env, message ? message : "", NAPI_AUTO_LENGTH, &args[1]);
    napi_create_int32(env, status, &args[2]);
    napi_create_string_utf8(env, code ? code : "", NAPI_AUTO_LENGTH, &args[3]);
    napi_create_string_utf8(env, request_id ? request_id : "", NAPI_AUTO_LENGTH, &args[4]);
    napi_create_uint32(env, http_status, &args[5]);
    napi_create_int32(env, subcode, &args[6]);
    module_state *st = state_of(env);
    if (st && st->error_class && napi_get_reference_value(env, st->error_class, &cls) == napi_ok &&
        napi_new_instance(env, cls, 7, args, &out) == napi_ok)
        return out;
    napi_create_error(env, NULL, args[1], &out);
    return out;
}

static void throw_sipp(napi_env env, int status, const sipp_error *err) {
    napi_throw(env, make_error(env, status, err->message, "", 0, err->subcode, ""));
}

static sipp_error new_error(void) {
    sipp_error e;
    sipp_error_init(&e, sizeof e);
    return e;
}

/* A NUL-terminated copy of a JS string (malloc; NULL and a TypeError thrown on failure). */
static char *get_string(napi_env env, napi_value v, const char *what) {
    size_t len;
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be a string", what);
        napi_throw_type_error(env, NULL, msg);
        return NULL;
    }
    char *s = malloc(len + 1);
    if (!s) {
        napi_throw_error(env, NULL, "out of memory");
        return NULL;
    }
    napi_get_value_string_utf8(env, v, s, len + 1, &len);
    if (strlen(s) != len) {
        free(s);
        char msg[128];
        snprintf(msg, sizeof msg, "%s contains a NUL character", what);
        napi_throw_type_error(env, NULL, msg);
        return NULL;
    }
    return s;
}

static void *get_external(napi_env env, napi_value v) {
    void *p = NULL;
    if (napi_get_value_external(env, v, &p) != napi_ok || !p)
        napi_throw_type_error(env, NULL, "not a sipp handle");
    return p;
}

/* ---- options: the params structs' tables ------------------------------------------------------
 * Each params struct's options come from its table in sipp_settings.h, built once at load: the
 * settings (numbers, booleans, strings) are options, each with its C name in camelCase
 * (prefill_chunk -> prefillChunk). A field appended to sipp.h becomes a JS option with its row. */

typedef enum { F_U32, F_I32, F_F32, F_U64, F_BOOL, F_STR } field_type;
typedef struct field_def {
    const char *js_name;
    field_type type;
    size_t offset;
} field_def;

static const sipp_setting local_settings[] = {SIPP_LOCAL_SETTINGS(SIPP_LOCAL_SETTING_ROW)};
static const sipp_setting text_settings[] = {SIPP_TEXT_SETTINGS(SIPP_TEXT_SETTING_ROW)};
static const sipp_setting embed_settings[] = {SIPP_EMBED_SETTINGS(SIPP_EMBED_SETTING_ROW)};
static const sipp_setting provider_settings[] = {
    SIPP_PROVIDER_SETTINGS(SIPP_PROVIDER_SETTING_ROW)};
static const sipp_setting gateway_settings[] = {SIPP_GATEWAY_SETTINGS(SIPP_GATEWAY_SETTING_ROW)};
#define N_ROWS(t) (sizeof t / sizeof t[0])

/* Room for each table's options (names included) and the NULL entry that ends it. */
#define FIELDS(name, table)                                                                     \
    static char name##_js[N_ROWS(table)][48];                                                  \
    static field_def name[N_ROWS(table) + 1]
FIELDS(local_fields, local_settings);
FIELDS(text_fields, text_settings);
FIELDS(embed_fields, embed_settings);
FIELDS(provider_fields, provider_settings);
FIELDS(gateway_fields, gateway_settings);
static pthread_once_t fields_once = PTHREAD_ONCE_INIT;

/* Fills `out` with the options of a table. */
static void fields_build(const sipp_setting *rows, size_t n_rows, char (*js)[48], field_def *out) {
    size_t n = 0;
    for (size_t i = 0; i < n_rows; i++) {
        const sipp_setting *s = &rows[i];
        field_type type;
        switch (s->kind) {
        case SIPP_SETTING_U32: type = F_U32; break;
        case SIPP_SETTING_I32: type = F_I32; break;
        case SIPP_SETTING_U64: type = F_U64; break;
        case SIPP_SETTING_F32: type = F_F32; break;
        case SIPP_SETTING_BOOL: type = F_BOOL; break;
        case SIPP_SETTING_STR: type = F_STR; break;
        default: continue; /* SIZE, callbacks, arrays, enums: the addon sets them */
        }
        size_t k = 0;
        for (const char *c = s->field; *c && k + 1 < sizeof js[i]; c++) {
            if (*c == '_' && c[1]) js[i][k++] = (char)(c[1] - 'a' + 'A'), c++;
            else js[i][k++] = *c;
        }
        js[i][k] = '\0';
        out[n++] = (field_def){js[i], type, s->offset};
    }
    out[n] = (field_def){NULL, 0, 0};
}

static void all_fields_build(void) {
#define BUILD(name, table) fields_build(table, N_ROWS(table), name##_js, name)
    BUILD(local_fields, local_settings); /* modelPath included: the JS layer passes it */
    BUILD(text_fields, text_settings);
    BUILD(embed_fields, embed_settings);
    BUILD(provider_fields, provider_settings);
    BUILD(gateway_fields, gateway_settings);
#undef BUILD
}

/* Static headers of a provider or gateway: at most this many "Name: value" lines. */
#define MAX_HEADERS 32

/* Strings made for one call; freed after it. */
typedef struct strings {
    char *items[48];
    int n;
} strings;

static void strings_free(strings *s) {
    for (int i = 0; i < s->n; i++) free(s->items[i]);
    s->n = 0;
}

static bool set_field(napi_env env, void *base, const field_def *f, napi_value v, strings *keep) {
    char msg[160];
    char *dst = (char *)base + f->offset;
    if (f->type == F_STR) {
        if (keep->n >= (int)(sizeof keep->items / sizeof keep->items[0])) {
            napi_throw_error(env, NULL, "too many string options");
            return false;
        }
        char *s = get_string(env, v, f->js_name);
        if (!s) return false;
        keep->items[keep->n++] = s;
        memcpy(dst, &s, sizeof s);
        return true;
    }
    if (f->type == F_BOOL) {
        bool b;
        if (napi_get_value_bool(env, v, &b) != napi_ok) {
            snprintf(msg, sizeof msg, "%s must be a boolean", f->js_name);
            napi_throw_type_error(env, NULL, msg);
            return false;
        }
        memcpy(dst, &b, sizeof b);
        return true;
    }
    double d;
    if (napi_get_value_double(env, v, &d) != napi_ok) {
        snprintf(msg, sizeof msg, "%s must be a number", f->js_name);
        napi_throw_type_error(env, NULL, msg);
        return false;
    }
    if (f->type == F_F32) {
        float x = (float)d; /* NaN and ranges: the library checks and names the field */
        memcpy(dst, &x, sizeof x);
        return true;
    }
    double lo = f->type == F_I32 ? -2147483648.0 : 0.0;
    double hi = f->type == F_I32 ? 2147483647.0 : f->type == F_U32 ? 4294967295.0 : 9007199254740991.0;
    if (!(d == floor(d)) || d < lo || d > hi) {
        snprintf(msg, sizeof msg, "%s must be an integer in [%.0f, %.0f]", f->js_name, lo, hi);
        napi_throw_range_error(env, NULL, msg);
        return false;
    }
    if (f->type == F_U32) {
        uint32_t x = (uint32_t)d;
        memcpy(dst, &x, sizeof x);
    } else if (f->type == F_I32) {
        int32_t x = (int32_t)d;
        memcpy(dst, &x, sizeof x);
    } else {
        uint64_t x = (uint64_t)d;
        memcpy(dst, &x, sizeof x);
    }
    return true;
}

/* Fills `base` from the own properties of `obj` (undefined skipped); `extra` names keys the
 * caller handles itself. Unknown keys are a TypeError. */
static bool fill_from(napi_env env, napi_value obj, void *base, const field_def *fields,
                      const char *const *extra, strings *keep) {
    napi_valuetype t;
    if (napi_typeof(env, obj, &t) != napi_ok) return false;
    if (t == napi_undefined || t == napi_null) return true;
    if (t != napi_object) {
        napi_throw_type_error(env, NULL, "options must be an object");
        return false;
    }
    napi_value keys;
    uint32_t n;
    if (napi_get_property_names(env, obj, &keys) != napi_ok ||
        napi_get_array_length(env, keys, &n) != napi_ok)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        napi_value k, v;
        char name[64];
        size_t len;
        napi_get_element(env, keys, i, &k);
        if (napi_get_value_string_utf8(env, k, name, sizeof name, &len) != napi_ok) continue;
        napi_get_property(env, obj, k, &v);
        napi_valuetype vt;
        napi_typeof(env, v, &vt);
        bool is_extra = false;
        for (const char *const *e = extra; e && *e; e++) is_extra |= strcmp(*e, name) == 0;
        if (is_extra) continue;
        const field_def *f = fields;
        while (f->js_name && strcmp(f->js_name, name) != 0) f++;
        if (!f->js_name) {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown option '%s'", name);
            napi_throw_type_error(env, NULL, msg);
            return false;
        }
        if (vt == napi_undefined) continue;
        if (!set_field(env, base, f, v, keep)) return false;
    }
    return true;
}

/* Reads options.headers (an array of "Name: value" strings; lib/index.js turns an object into
 * one) into `lines`; strings go to `keep`. Absent: *n = 0. */
static bool headers_from(napi_env env, napi_value opts, const char **lines, size_t *n,
                         strings *keep) {
    *n = 0;
    napi_valuetype t;
    bool has = false, is_array = false;
    napi_value h;
    if (napi_typeof(env, opts, &t) != napi_ok || t != napi_object) return true;
    napi_has_named_property(env, opts, "headers", &has);
    if (!has) return true;
    napi_get_named_property(env, opts, "headers", &h);
    napi_typeof(env, h, &t);
    if (t == napi_undefined) return true;
    napi_is_array(env, h, &is_array);
    if (!is_array) {
        napi_throw_type_error(env, NULL, "headers must be an array of 'Name: value' strings");
        return false;
    }
    uint32_t len;
    napi_get_array_length(env, h, &len);
    if (len > MAX_HEADERS) {
        napi_throw_range_error(env, NULL, "too many headers (at most 32)");
        return false;
    }
    for (uint32_t i = 0; i < len; i++) {
        napi_value v;
        napi_get_element(env, h, i, &v);
        if (keep->n >= (int)(sizeof keep->items / sizeof keep->items[0])) {
            napi_throw_error(env, NULL, "too many string options");
            return false;
        }
        char *line = get_string(env, v, "header");
        if (!line) return false;
        keep->items[keep->n++] = line;
        lines[i] = line;
    }
    *n = len;
    return true;
}

static const char *const headers_extra[] = {"headers", NULL};

static napi_value undefined(napi_env env) {
    napi_value u;
    napi_get_undefined(env, &u);
    return u;
}

/* ---- client ------------------------------------------------------------------------------------ */

typedef struct client_h {
    sipp_client *client;
    int pending_adds; /* loads on worker threads; the free waits for them */
    bool closed;      /* the C client is freed, or will be once the loads are done */
    bool finalized;   /* the JS external is gone: the last load frees this struct */
} client_h;

static void client_finalize(napi_env env, void *data, void *hint) {
    (void)env, (void)hint;
    client_h *c = data;
    c->closed = true;
    if (c->pending_adds == 0) {
        sipp_client_free(c->client);
        free(c);
    } else {
        c->finalized = true; /* a load in flight still uses it: its completion frees */
    }
}

static napi_value js_client_new(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], out;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    int32_t level = -1;
    if (argc > 0) napi_get_value_int32(env, argv[0], &level);
    if (level >= 0) sipp_log_set((sipp_log_level)level); /* the process's level */
    client_h *c = calloc(1, sizeof *c);
    if (!c) return napi_throw_error(env, NULL, "out of memory"), NULL;
    sipp_error err = new_error();
    sipp_status st = sipp_client_new(NULL, &c->client, &err);
    if (st != SIPP_OK) {
        free(c);
        throw_sipp(env, st, &err);
        return NULL;
    }
    CHECK(napi_create_external(env, c, client_finalize, NULL, &out));
    return out;
fail:
    return NULL;
}

/* Frees the C client now (the external keeps an empty shell). JS guarantees no call follows. */
static napi_value js_client_close(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    client_h *c = get_external(env, argv[0]);
    if (!c || c->closed) return undefined(env);
    c->closed = true;
    if (c->pending_adds == 0) {
        sipp_client_free(c->client);
        c->client = NULL;
    }
    return undefined(env);
fail:
    return NULL;
}

typedef struct add_work {
    client_h *c;
    char *id;
    sipp_local_params params;
    strings keep;
    sipp_endpoint *ep;
    sipp_status status;
    sipp_error err;
    napi_deferred deferred;
    napi_async_work work;
} add_work;

static void add_execute(napi_env env, void *data) {
    (void)env;
    add_work *w = data;
    w->status = sipp_client_add_local(w->c->client, w->id, &w->params, &w->ep, &w->err);
}

static void add_complete(napi_env env, napi_status status, void *data) {
    add_work *w = data;
    client_h *c = w->c;
    c->pending_adds--;
    napi_value v;
    if (status != napi_ok) {
        napi_reject_deferred(env, w->deferred, make_error(env, SIPP_CANCELLED, "model load was cancelled", "", 0, 0, ""));
    } else if (w->status != SIPP_OK) {
        napi_reject_deferred(env, w->deferred, make_error(env, w->status, w->err.message, "", 0, w->err.subcode, ""));
    } else if (c->closed) {
        napi_reject_deferred(env, w->deferred, make_error(env, SIPP_CLOSED, "the client was closed during the load", "", 0, 0, ""));
    } else {
        napi_create_external(env, w->ep, NULL, NULL, &v);
        napi_resolve_deferred(env, w->deferred, v);
    }
    if (c->closed && c->pending_adds == 0) {
        sipp_client_free(c->client);
        c->client = NULL;
        if (c->finalized) free(c);
    }
    napi_delete_async_work(env, w->work);
    strings_free(&w->keep);
    free(w->id);
    free(w);
}

/* addLocal(client, id, options) -> Promise<endpoint external>; the load runs on a worker. */
static napi_value js_add_local(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3], promise, name;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    client_h *c = get_external(env, argv[0]);
    if (!c) return NULL;
    add_work *w = calloc(1, sizeof *w);
    if (!w) return napi_throw_error(env, NULL, "out of memory"), NULL;
    w->c = c;
    w->err = new_error();
    sipp_local_params_init(&w->params, sizeof w->params);
    if (!(w->id = get_string(env, argv[1], "id")) ||
        !fill_from(env, argv[2], &w->params, local_fields, NULL, &w->keep)) {
        strings_free(&w->keep);
        free(w->id);
        free(w);
        return NULL;
    }
    CHECK(napi_create_promise(env, &w->deferred, &promise));
    CHECK(napi_create_string_utf8(env, "sipp.addLocal", NAPI_AUTO_LENGTH, &name));
    CHECK(napi_create_async_work(env, NULL, name, add_execute, add_complete, w, &w->work));
    CHECK(napi_queue_async_work(env, w->work));
    c->pending_adds++;
    return promise;
fail:
    return NULL;
}

/* What addProvider and addGateway share: `params` (defaults filled) gets the options of argv[3]
 * through `fields` plus the static headers, then `add` registers it under id argv[1]. Returns
 * the endpoint external, or NULL with a JS exception pending. */
typedef sipp_status (*add_remote_fn)(sipp_client *c, const char *id, const void *params,
                                     sipp_endpoint **out, sipp_error *err);

static napi_value add_remote(napi_env env, client_h *c, napi_value *argv, void *params,
                             const field_def *fields, const char *const **headers_field,
                             size_t *n_headers_field, add_remote_fn add) {
    napi_value out = NULL;
    strings keep = {.n = 0};
    const char *headers[MAX_HEADERS];
    char *id = get_string(env, argv[1], "id");
    if (id && fill_from(env, argv[3], params, fields, headers_extra, &keep) &&
        headers_from(env, argv[3], headers, n_headers_field, &keep)) {
        *headers_field = headers;
        sipp_endpoint *ep;
        sipp_error err = new_error();
        sipp_status st = add(c->client, id, params, &ep, &err);
        if (st != SIPP_OK) throw_sipp(env, st, &err);
        else napi_create_external(env, ep, NULL, NULL, &out);
    }
    strings_free(&keep);
    free(id);
    return out;
}

static sipp_status add_provider(sipp_client *c, const char *id, const void *p, sipp_endpoint **out,
                                sipp_error *err) {
    return sipp_client_add_provider(c, id, p, out, err);
}

static sipp_status add_gateway(sipp_client *c, const char *id, const void *p, sipp_endpoint **out,
                               sipp_error *err) {
    return sipp_client_add_gateway(c, id, p, out, err);
}

/* addProvider(client, id, kind, options) -> endpoint external (nothing is sent yet). */
static napi_value js_add_provider(napi_env env, napi_callback_info info) {
    size_t argc = 4;
    napi_value argv[4];
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    client_h *c = get_external(env, argv[0]);
    if (!c) return NULL;
    sipp_provider_params p;
    sipp_provider_params_init(&p, sizeof p);
    int32_t kind;
    CHECK(napi_get_value_int32(env, argv[2], &kind));
    p.kind = (sipp_provider_kind)kind;
    return add_remote(env, c, argv, &p, provider_fields, &p.headers, &p.n_headers, add_provider);
fail:
    return NULL;
}

/* addGateway(client, id, auth, options) -> endpoint external (nothing is sent yet). */
static napi_value js_add_gateway(napi_env env, napi_callback_info info) {
    size_t argc = 4;
    napi_value argv[4];
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    client_h *c = get_external(env, argv[0]);
    if (!c) return NULL;
    sipp_gateway_params p;
    sipp_gateway_params_init(&p, sizeof p);
    int32_t auth;
    CHECK(napi_get_value_int32(env, argv[2], &auth));
    p.auth = (sipp_gateway_auth)auth;
    return add_remote(env, c, argv, &p, gateway_fields, &p.headers, &p.n_headers, add_gateway);
fail:
    return NULL;
}

static napi_value js_remove(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    client_h *c = get_external(env, argv[0]);
    char *id = c ? get_string(env, argv[1], "id") : NULL;
    if (!id) return NULL;
    sipp_error err = new_error();
    sipp_status st = sipp_client_remove(c->client, id, &err);
    free(id);
    if (st != SIPP_OK) throw_sipp(env, st, &err);
    return undefined(env);
fail:
    return NULL;
}

/* ---- endpoint info and stats --------------------------------------------------------------------- */

static void set_num(napi_env env, napi_value obj, const char *key, double v) {
    napi_value x;
    napi_create_double(env, v, &x);
    napi_set_named_property(env, obj, key, x);
}

static void set_bool(napi_env env, napi_value obj, const char *key, bool v) {
    napi_value x;
    napi_get_boolean(env, v, &x);
    napi_set_named_property(env, obj, key, x);
}

static void set_str(napi_env env, napi_value obj, const char *key, const char *s, size_t len) {
    napi_value x;
    napi_create_string_utf8(env, s, len, &x);
    napi_set_named_property(env, obj, key, x);
}

static napi_value js_endpoint_info(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], o;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    sipp_endpoint *ep = get_external(env, argv[0]);
    if (!ep) return NULL;
    sipp_endpoint_info in;
    sipp_endpoint_info_init(&in, sizeof in);
    sipp_error err = new_error();
    sipp_status st = sipp_endpoint_get_info(ep, &in, &err);
    if (st != SIPP_OK) return throw_sipp(env, st, &err), NULL;
    CHECK(napi_create_object(env, &o));
    set_bool(env, o, "canGenerate", in.can_generate);
    set_bool(env, o, "canChat", in.can_chat);
    set_bool(env, o, "canEmbed", in.can_embed);
    set_num(env, o, "nCtx", in.n_ctx);
    set_num(env, o, "nCtxTrain", in.n_ctx_train);
    set_num(env, o, "nEmbd", in.n_embd);
    set_num(env, o, "nParallel", in.n_parallel);
    set_num(env, o, "nParams", (double)in.n_params);
    set_num(env, o, "sizeBytes", (double)in.size_bytes);
    set_str(env, o, "architecture", in.architecture, NAPI_AUTO_LENGTH);
    set_str(env, o, "description", in.description, NAPI_AUTO_LENGTH);
    set_bool(env, o, "vision", in.vision); /* multimodal: a projector is loaded */
    set_bool(env, o, "audioIn", in.audio_in);
    set_bool(env, o, "audioOut", in.audio_out);
    return o;
fail:
    return NULL;
}

static napi_value js_endpoint_stats(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], o;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    sipp_endpoint *ep = get_external(env, argv[0]);
    if (!ep) return NULL;
    sipp_engine_stats s;
    sipp_engine_stats_init(&s, sizeof s);
    sipp_error err = new_error();
    sipp_status st = sipp_endpoint_get_stats(ep, &s, &err);
    if (st != SIPP_OK) return throw_sipp(env, st, &err), NULL;
    CHECK(napi_create_object(env, &o));
    set_num(env, o, "running", s.running);
    set_num(env, o, "queued", s.queued);
    set_num(env, o, "completed", (double)s.completed);
    set_num(env, o, "cancelled", (double)s.cancelled);
    set_num(env, o, "failed", (double)s.failed);
    set_num(env, o, "rejectedBusy", (double)s.rejected_busy);
    set_num(env, o, "promptTokens", (double)s.prompt_tokens);
    set_num(env, o, "generatedTokens", (double)s.generated_tokens);
    set_num(env, o, "ticks", (double)s.ticks);
    set_num(env, o, "batchTokens", (double)s.batch_tokens);
    set_num(env, o, "batchFill", s.batch_fill);
    set_num(env, o, "cacheHits", (double)s.cache_hits);
    set_num(env, o, "cacheMisses", (double)s.cache_misses);
    set_num(env, o, "cacheEvictions", (double)s.cache_evictions);
    set_num(env, o, "cacheRamBytes", (double)s.cache_ram_bytes);
    set_num(env, o, "cacheDiskBytes", (double)s.cache_disk_bytes);
    set_num(env, o, "stalls", (double)s.stalls);
    set_bool(env, o, "stalled", s.stalled != 0);
    set_num(env, o, "mediaEncoded", (double)s.media_encoded);
    set_num(env, o, "mediaEncodeMs", s.media_encode_ms);
    return o;
fail:
    return NULL;
}

/* ---- runs ----------------------------------------------------------------------------------------- */

enum { ITEM_BATCH, ITEM_END, ITEM_DELTA };

/* What the pump hands to the JS thread: a batch, or the end (with a copy of the response). */
typedef struct item {
    int kind;
    char *text;
    size_t len;
    uint32_t n_tokens;
    sipp_response resp; /* ITEM_END: scalars copied (usage and stats below, which the response
                         * only points at); text and embedding below */
    sipp_usage usage;
    sipp_stats stats;
    float *embedding;
    sipp_status next_status; /* sipp_run_next failing (not expected) */
    char next_message[SIPP_ERROR_MESSAGE_CAP];
    /* ITEM_DELTA (issue 18): the delta's kind, call index, id and name (malloc'd, may be NULL);
     * its text is `text` */
    sipp_delta_kind delta_kind;
    uint32_t tool_index;
    char *tool_id, *tool_name;
} item;

typedef struct run_h {
    sipp_run *run;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int demand;   /* batches JS asked for */
    bool drain;   /* pull to the end without asking */
    bool stop;    /* the JS side is gone: exit */
    bool started; /* the pump exists */
    bool deltas;  /* the pump reads deltas (sipp_run_next_delta), not batches (issue 18) */
    pthread_t thread;
    napi_threadsafe_function tsfn;
    napi_ref js_run; /* weak: the JS Run object */
    int refs;        /* the external and the pump, under mu */
} run_h;

static void run_h_release(run_h *r) {
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left > 0) return;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
    atomic_fetch_sub(&live_handles, 1);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void item_free(item *it) {
    if (!it) return;
    free(it->tool_id);
    free(it->tool_name);
    free(it->text);
    free(it->embedding);
    free(it);
}

static void *pump_main(void *arg) {
    run_h *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (!r->stop && !r->drain && r->demand == 0) pthread_cond_wait(&r->cv, &r->mu);
        bool stop = r->stop;
        if (r->demand > 0) r->demand--;
        pthread_mutex_unlock(&r->mu);
        if (stop) break;
        sipp_token_batch b;
        sipp_token_batch_init(&b, sizeof b);
        sipp_error err = new_error();
        item *it = calloc(1, sizeof *it);
        if (!it) break;
        sipp_status st;
        if (r->deltas) { /* issue 18: a delta, or the end as an empty done batch */
            sipp_delta d = {.struct_size = sizeof d};
            bool done = false;
            st = sipp_run_next_delta(r->run, -1, &d, &done, &err);
            b.done = done;
            b.len = 0;
            if (st == SIPP_OK && !done) {
                it->kind = ITEM_DELTA;
                it->delta_kind = d.kind;
                it->tool_index = d.tool_index;
                it->tool_id = d.tool_id ? dup_str(d.tool_id) : NULL;
                it->tool_name = d.tool_name ? dup_str(d.tool_name) : NULL;
                it->text = malloc(d.len + 1);
                if (it->text) memcpy(it->text, d.text, d.len);
                it->len = it->text ? d.len : 0;
                if (napi_call_threadsafe_function(r->tsfn, it, napi_tsfn_blocking) != napi_ok) {
                    item_free(it);
                    break;
                }
                continue;
            }
        } else {
            st = sipp_run_next(r->run, -1, &b, &err);
        }
        if (st != SIPP_OK) {
            it->kind = ITEM_END;
            it->next_status = st;
            memcpy(it->next_message, err.message, sizeof it->next_message);
        } else if (!b.done) {
            it->kind = ITEM_BATCH;
            it->len = b.len;
            it->n_tokens = b.n_tokens;
            it->text = malloc(b.len + 1);
            if (it->text) memcpy(it->text, b.text, b.len);
        } else {
            /* the last text may come with done: send it as a batch first */
            if (b.len > 0) {
                item *last = calloc(1, sizeof *last);
                if (last && (last->text = malloc(b.len + 1))) {
                    memcpy(last->text, b.text, b.len);
                    last->len = b.len;
                    last->n_tokens = b.n_tokens;
                    last->kind = ITEM_BATCH;
                    if (napi_call_threadsafe_function(r->tsfn, last, napi_tsfn_blocking) != napi_ok)
                        item_free(last);
                } else {
                    item_free(last);
                }
            }
            const sipp_response *resp;
            sipp_run_wait(r->run, &resp, NULL); /* ended: returns at once */
            it->kind = ITEM_END;
            it->resp = *resp;
            it->resp.struct_size = sizeof it->resp;
            it->usage = *resp->usage;
            it->stats = *resp->stats;
            it->resp.usage = &it->usage;
            it->resp.stats = &it->stats;
            it->text = malloc(resp->text_len + 1);
            if (it->text) memcpy(it->text, resp->text, resp->text_len);
            it->len = it->text ? resp->text_len : 0;
            if (resp->embedding && resp->n_embd) {
                it->embedding = malloc(sizeof(float) * resp->n_embd);
                if (it->embedding) memcpy(it->embedding, resp->embedding, sizeof(float) * resp->n_embd);
            }
        }
        bool end = it->kind == ITEM_END;
        if (it->text == NULL && it->len > 0) it->len = 0;
        if (napi_call_threadsafe_function(r->tsfn, it, napi_tsfn_blocking) != napi_ok) {
            item_free(it);
            break;
        }
        if (end) break;
    }
    napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
    return NULL;
}

static napi_value response_object(napi_env env, const item *it) {
    napi_value o, usage, stats;
    napi_create_object(env, &o);
    set_str(env, o, "text", it->text ? it->text : "", it->len);
    const char *fr = sipp_finish_reason_name(it->resp.finish_reason);
    set_str(env, o, "finishReason", fr, NAPI_AUTO_LENGTH);
    napi_create_object(env, &usage);
    set_num(env, usage, "inputTokens", it->usage.input_tokens);
    set_num(env, usage, "outputTokens", it->usage.output_tokens);
    set_num(env, usage, "totalTokens", it->usage.total_tokens);
    napi_set_named_property(env, o, "usage", usage);
    const sipp_stats *s = &it->stats;
    napi_create_object(env, &stats);
    set_num(env, stats, "queueMs", s->queue_ms);
    set_num(env, stats, "ttftMs", s->ttft_ms);
    set_num(env, stats, "prefillMs", s->prefill_ms);
    set_num(env, stats, "decodeMs", s->decode_ms);
    set_num(env, stats, "prefillTokS", s->prefill_tok_s);
    set_num(env, stats, "decodeTokS", s->decode_tok_s);
    set_num(env, stats, "totalMs", s->total_ms);
    set_num(env, stats, "itlAvgMs", s->itl_avg_ms);
    set_num(env, stats, "itlP99Ms", s->itl_p99_ms);
    set_num(env, stats, "prefillTokens", s->prefill_tokens);
    set_str(env, stats, "cacheSource", sipp_cache_source_name(s->cache_source), NAPI_AUTO_LENGTH);
    set_num(env, stats, "cachedTokens", s->cached_tokens);
    set_num(env, stats, "encodeMs", s->encode_ms);
    set_num(env, stats, "mediaChunks", s->media_chunks);
    napi_set_named_property(env, o, "stats", stats);
    napi_value emb;
    if (it->embedding) {
        napi_value ab;
        void *data;
        size_t bytes = sizeof(float) * it->resp.n_embd;
        napi_create_arraybuffer(env, bytes, &data, &ab);
        memcpy(data, it->embedding, bytes);
        napi_create_typedarray(env, napi_float32_array, it->resp.n_embd, ab, 0, &emb);
    } else {
        napi_get_null(env, &emb);
    }
    napi_set_named_property(env, o, "embedding", emb);
    set_bool(env, o, "normalized", it->resp.normalized);
    set_num(env, o, "httpStatus", it->resp.http_status);
    set_str(env, o, "requestId", it->resp.request_id, NAPI_AUTO_LENGTH);
    set_str(env, o, "errorCode", it->resp.error_code, NAPI_AUTO_LENGTH);
    /* issue 18: tool calls, reasoning and log-probabilities. They point into the run, which
     * lives until the threadsafe function is finalized, after this last item. */
    napi_value calls, lps;
    napi_create_array_with_length(env, it->resp.n_tool_calls, &calls);
    for (size_t i = 0; i < it->resp.n_tool_calls; i++) {
        const sipp_tool_call *c = &it->resp.tool_calls[i];
        napi_value call;
        napi_create_object(env, &call);
        set_str(env, call, "id", c->id, NAPI_AUTO_LENGTH);
        set_str(env, call, "name", c->name, NAPI_AUTO_LENGTH);
        set_str(env, call, "arguments", c->arguments, NAPI_AUTO_LENGTH);
        napi_set_element(env, calls, (uint32_t)i, call);
    }
    napi_set_named_property(env, o, "toolCalls", calls);
    set_str(env, o, "reasoning", it->resp.reasoning ? it->resp.reasoning : "",
            it->resp.reasoning ? it->resp.reasoning_len : 0);
    if (it->resp.logprobs) {
        napi_create_array_with_length(env, it->resp.n_logprobs, &lps);
        for (size_t i = 0; i < it->resp.n_logprobs; i++) {
            const sipp_token_logprob *e = &it->resp.logprobs[i];
            napi_value entry, top;
            napi_create_object(env, &entry);
            set_str(env, entry, "token", e->token, e->token_len);
            set_num(env, entry, "logprob", e->logprob);
            napi_create_array_with_length(env, e->n_top, &top);
            for (uint32_t k = 0; k < e->n_top; k++) {
                napi_value t;
                napi_create_object(env, &t);
                set_str(env, t, "token", e->top[k].token, e->top[k].token_len);
                set_num(env, t, "logprob", e->top[k].logprob);
                napi_set_element(env, top, k, t);
            }
            napi_set_named_property(env, entry, "top", top);
            napi_set_element(env, lps, (uint32_t)i, entry);
        }
    } else {
        napi_get_null(env, &lps);
    }
    napi_set_named_property(env, o, "logprobs", lps);
    return o;
}

static const char *const delta_kinds[] = {"content", "reasoning", "toolCall"};

/* On the JS thread: dispatch(run, "batch", text, nTokens) or dispatch(run, "end", response, error). */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
    run_h *r = context;
    item *it = data;
    if (!env || !it) {
        item_free(it);
        return;
    }
    napi_value target = NULL;
    if (r->js_run) napi_get_reference_value(env, r->js_run, &target);
    if (target) {
        napi_value args[5], recv;
        napi_get_undefined(env, &recv);
        args[0] = target;
        if (it->kind == ITEM_DELTA) {
            napi_create_string_utf8(env, "delta", NAPI_AUTO_LENGTH, &args[1]);
            napi_create_object(env, &args[2]);
            set_str(env, args[2], "kind", delta_kinds[it->delta_kind <= 2 ? it->delta_kind : 0],
                    NAPI_AUTO_LENGTH);
            set_str(env, args[2], "text", it->text ? it->text : "", it->len);
            if (it->delta_kind == SIPP_DELTA_TOOL_CALL) {
                set_num(env, args[2], "toolIndex", it->tool_index);
                if (it->tool_id) set_str(env, args[2], "toolId", it->tool_id, NAPI_AUTO_LENGTH);
                if (it->tool_name) set_str(env, args[2], "toolName", it->tool_name, NAPI_AUTO_LENGTH);
            }
            napi_get_undefined(env, &args[3]);
            napi_get_undefined(env, &args[4]);
        } else if (it->kind == ITEM_BATCH) {
            napi_create_string_utf8(env, "batch", NAPI_AUTO_LENGTH, &args[1]);
            napi_create_string_utf8(env, it->text ? it->text : "", it->len, &args[2]);
            napi_create_uint32(env, it->n_tokens, &args[3]);
            napi_get_undefined(env, &args[4]);
        } else {
            napi_create_string_utf8(env, "end", NAPI_AUTO_LENGTH, &args[1]);
            if (it->next_status != SIPP_OK) {
                napi_get_null(env, &args[2]);
                args[3] = make_error(env, it->next_status, it->next_message, "", 0, 0, "");
            } else if (it->resp.status != SIPP_OK) {
                napi_get_null(env, &args[2]);
                args[3] = make_error(env, it->resp.status, it->resp.error_message,
                                     it->resp.error_code, it->resp.http_status, 0,
                                     it->resp.request_id);
                napi_value ra;
                napi_create_uint32(env, it->resp.retry_after_s, &ra);
                napi_set_named_property(env, args[3], "retryAfterS", ra);
            } else {
                args[2] = response_object(env, it);
                napi_get_null(env, &args[3]);
            }
            napi_get_undefined(env, &args[4]);
        }
        napi_call_function(env, recv, js_cb, 5, args, NULL);
    }
    item_free(it);
}

/* The pump is gone (it released the function): join it and free the C run. JS thread. */
static void tsfn_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    run_h *r = data;
    pthread_join(r->thread, NULL);
    sipp_run_free(r->run);
    atomic_fetch_sub(&live_runs, 1);
    r->run = NULL;
    if (r->js_run) {
        napi_delete_reference(env, r->js_run);
        r->js_run = NULL;
    }
    run_h_release(r);
}

static void run_finalize(napi_env env, void *data, void *hint) {
    (void)env, (void)hint;
    run_h *r = data;
    pthread_mutex_lock(&r->mu);
    bool started = r->started;
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (started) {
        sipp_run_cancel(r->run); /* nobody can read it any more; the pump exits */
    } else {
        sipp_run_free(r->run);
        atomic_fetch_sub(&live_runs, 1);
        r->run = NULL;
    }
    run_h_release(r);
}

static napi_value wrap_run(napi_env env, sipp_run *run) {
    run_h *r = calloc(1, sizeof *r);
    napi_value out;
    if (!r) {
        sipp_run_free(run);
        napi_throw_error(env, NULL, "out of memory");
        return NULL;
    }
    r->run = run;
    r->refs = 1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (napi_create_external(env, r, run_finalize, NULL, &out) != napi_ok) {
        sipp_run_free(run);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r);
        return NULL;
    }
    atomic_fetch_add(&live_runs, 1);
    atomic_fetch_add(&live_handles, 1);
    return out;
}

/* Starts the pump of a run if needed: the JS Run object receives the items. */
static bool ensure_pump(napi_env env, run_h *r, napi_value js_run) {
    if (r->started) return true;
    module_state *st = state_of(env);
    napi_value dispatch, name;
    if (!st || !st->dispatch || napi_get_reference_value(env, st->dispatch, &dispatch) != napi_ok)
        return napi_throw_error(env, NULL, "sipp: module not initialised"), false;
    napi_create_string_utf8(env, "sipp.run", NAPI_AUTO_LENGTH, &name);
    if (napi_create_reference(env, js_run, 0, &r->js_run) != napi_ok) return false;
    if (napi_create_threadsafe_function(env, dispatch, NULL, name, 0, 1, r, tsfn_finalize, r,
                                        call_js, &r->tsfn) != napi_ok)
        return false;
    r->refs++; /* the pump's */
    if (pthread_create(&r->thread, NULL, pump_main, r) != 0) {
        r->refs--;
        napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
        napi_throw_error(env, NULL, "sipp: cannot start a thread");
        return false;
    }
    r->started = true;
    return true;
}

/* runPull(run, jsRun, mode): mode 0 = one more batch, 1 = drain to the end, 2 = abandon
 * (cancel, then drain so the pump finishes and frees), 3 = one more delta (issue 18: the run is
 * then read as deltas; only before its pump started). ref: whether node should stay alive. */
static napi_value js_run_pull(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    run_h *r = get_external(env, argv[0]);
    int32_t mode = 0;
    if (!r) return NULL;
    CHECK(napi_get_value_int32(env, argv[2], &mode));
    if (!r->run) return undefined(env);
    if (mode == 3) {
        if (!r->started) r->deltas = true;
        mode = 0;
    }
    if (mode == 2) {
        sipp_run_cancel(r->run);
        if (!r->started) return undefined(env); /* the external's finalizer frees it */
    }
    if (!ensure_pump(env, r, argv[1])) return NULL;
    pthread_mutex_lock(&r->mu);
    if (mode == 0) r->demand++;
    else r->drain = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    /* keep node alive while JS waits on this run; an abandoned run does not */
    if (mode == 2) napi_unref_threadsafe_function(env, r->tsfn);
    else napi_ref_threadsafe_function(env, r->tsfn);
    return undefined(env);
fail:
    return NULL;
}

/* runIdle(run): nothing waits on the run now; node may exit while its pump sleeps. */
static napi_value js_run_idle(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    run_h *r = get_external(env, argv[0]);
    if (r && r->started && r->run) napi_unref_threadsafe_function(env, r->tsfn);
    return undefined(env);
fail:
    return NULL;
}

static napi_value js_run_cancel(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    run_h *r = get_external(env, argv[0]);
    if (r && r->run) sipp_run_cancel(r->run);
    return undefined(env);
fail:
    return NULL;
}

/* ---- requests ------------------------------------------------------------------------------------ */

static const char *const text_extra[] = {"stop", "signal", "images", "tools", "toolChoice",
                                         "reasoning", NULL};

/* options.images (multimodal, docs/multimodal.md): an array of Buffers, Uint8Arrays or
 * ArrayBuffers, each an encoded image, as image parts of messages[message_index] (chat: the
 * last user turn; query: ignored). The parts point into the JS memory, which stays in place for
 * the call (sipp.h: the bytes are read during it, not kept). *media is malloc'd (NULL when there
 * are none): the caller frees it after the call. */
static bool images_from(napi_env env, napi_value opts, size_t message_index, sipp_text_params *p,
                        sipp_media **media) {
    *media = NULL;
    napi_valuetype t;
    bool has = false, is_array = false;
    napi_value v;
    if (napi_typeof(env, opts, &t) != napi_ok || t != napi_object) return true;
    napi_has_named_property(env, opts, "images", &has);
    if (!has) return true;
    napi_get_named_property(env, opts, "images", &v);
    napi_typeof(env, v, &t);
    if (t == napi_undefined) return true;
    napi_is_array(env, v, &is_array);
    if (!is_array) {
        napi_throw_type_error(env, NULL, "images must be an array of Buffers, Uint8Arrays or "
                                         "ArrayBuffers (the encoded files)");
        return false;
    }
    uint32_t n = 0;
    napi_get_array_length(env, v, &n);
    if (n == 0) return true;
    sipp_media *m = calloc(n, sizeof *m);
    if (!m) return napi_throw_error(env, NULL, "out of memory"), false;
    for (uint32_t i = 0; i < n; i++) {
        napi_value e;
        bool is_ab = false, is_ta = false;
        void *data = NULL;
        size_t len = 0;
        napi_typedarray_type tt = napi_int8_array;
        napi_get_element(env, v, i, &e);
        napi_is_arraybuffer(env, e, &is_ab);
        napi_is_typedarray(env, e, &is_ta);
        if (is_ab) {
            napi_get_arraybuffer_info(env, e, &data, &len);
        } else if (is_ta) {
            napi_get_typedarray_info(env, e, &tt, &len, &data, NULL, NULL);
        }
        if (!is_ab && !(is_ta && (tt == napi_uint8_array || tt == napi_uint8_clamped_array))) {
            char msg[128];
            snprintf(msg, sizeof msg, "images[%u] must be a Buffer, Uint8Array or ArrayBuffer "
                     "(the encoded file)", i);
            free(m);
            napi_throw_type_error(env, NULL, msg);
            return false;
        }
        m[i] = (sipp_media){SIPP_MEDIA_IMAGE, data, len, NULL, message_index};
    }
    p->media = m;
    p->n_media = n;
    *media = m;
    return true;
}

/* The index of the last user message (0 when there is none): where a chat's images go, as in
 * the Python binding. */
static size_t last_user(const sipp_message *msgs, uint32_t n) {
    size_t at = 0;
    for (uint32_t i = 0; i < n; i++)
        if (msgs[i].role && strcmp(msgs[i].role, "user") == 0) at = i;
    return at;
}

/* An int option set by the JS layer (toolChoice, reasoning: lib/index.js maps their names). */
static bool int_option(napi_env env, napi_value opts, const char *key, int *out) {
    bool has;
    napi_value v;
    napi_valuetype t;
    if (napi_has_named_property(env, opts, key, &has) != napi_ok || !has) return true;
    napi_get_named_property(env, opts, key, &v);
    napi_typeof(env, v, &t);
    if (t == napi_undefined) return true;
    int32_t x;
    if (napi_get_value_int32(env, v, &x) != napi_ok) {
        napi_throw_type_error(env, NULL, "toolChoice and reasoning are set by the JS layer");
        return false;
    }
    *out = x;
    return true;
}

/* Fills text params from options (stop strings included); strings go to `keep`. */
static bool text_params_from(napi_env env, napi_value opts, sipp_text_params *p, strings *keep,
                             const char **stops) {
    sipp_text_params_init(p, sizeof *p);
    if (!fill_from(env, opts, p, text_fields, text_extra, keep)) return false;
    napi_valuetype t;
    napi_typeof(env, opts, &t);
    if (t != napi_object) return true;
    int choice = (int)p->tool_choice, reasoning = (int)p->reasoning_mode;
    if (!int_option(env, opts, "toolChoice", &choice) ||
        !int_option(env, opts, "reasoning", &reasoning))
        return false;
    p->tool_choice = (sipp_tool_choice)choice;
    p->reasoning_mode = (sipp_reasoning_mode)reasoning;
    bool has;
    napi_value stop;
    napi_has_named_property(env, opts, "stop", &has);
    if (!has) return true;
    napi_get_named_property(env, opts, "stop", &stop);
    napi_typeof(env, stop, &t);
    if (t == napi_undefined) return true;
    bool is_array;
    napi_is_array(env, stop, &is_array);
    uint32_t n = 1;
    if (is_array) napi_get_array_length(env, stop, &n);
    if (n > SIPP_MAX_STOP_STRINGS + 1) n = SIPP_MAX_STOP_STRINGS + 1; /* the library refuses */
    for (uint32_t i = 0; i < n; i++) {
        napi_value s = stop;
        if (is_array) napi_get_element(env, stop, i, &s);
        if (keep->n >= (int)(sizeof keep->items / sizeof keep->items[0])) return false;
        char *str = get_string(env, s, "stop");
        if (!str) return false;
        keep->items[keep->n++] = str;
        stops[i] = str;
    }
    p->stop = stops;
    p->n_stop = n;
    return true;
}

static napi_value finish_submit(napi_env env, sipp_status st, sipp_error *err, sipp_run *run) {
    if (st != SIPP_OK) {
        throw_sipp(env, st, err);
        return NULL;
    }
    return wrap_run(env, run);
}

/* query(endpoint, prompt, options) -> run external */
static napi_value js_query(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3], out = NULL;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    sipp_endpoint *ep = get_external(env, argv[0]);
    if (!ep) return NULL;
    strings keep = {.n = 0};
    const char *stops[SIPP_MAX_STOP_STRINGS + 1];
    sipp_text_params p;
    char *prompt = get_string(env, argv[1], "prompt");
    sipp_media *media = NULL;
    if (prompt && text_params_from(env, argv[2], &p, &keep, stops) &&
        images_from(env, argv[2], 0, &p, &media)) {
        sipp_run *run = NULL;
        sipp_error err = new_error();
        sipp_status st = sipp_query(ep, prompt, &p, &run, &err);
        out = finish_submit(env, st, &err, run);
    }
    free(media);
    free(prompt);
    strings_free(&keep);
    return out;
fail:
    return NULL;
}

/* Strings of one chat call (messages, tool calls, tools): freed after it. */
typedef struct bag {
    char **items;
    size_t n, cap;
} bag;

static char *bag_string(napi_env env, bag *b, napi_value v, const char *what) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 16;
        char **grown = realloc(b->items, cap * sizeof *grown);
        if (!grown) return napi_throw_error(env, NULL, "out of memory"), NULL;
        b->items = grown;
        b->cap = cap;
    }
    char *s = get_string(env, v, what);
    if (s) b->items[b->n++] = s;
    return s;
}

static void bag_free(bag *b) {
    for (size_t i = 0; i < b->n; i++) free(b->items[i]);
    free(b->items);
}

/* An optional string property: NULL (no error) when absent or undefined. */
static bool opt_string(napi_env env, bag *b, napi_value obj, const char *key, const char *what,
                       const char **out) {
    bool has;
    napi_value v;
    napi_valuetype t;
    *out = NULL;
    if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return true;
    napi_get_named_property(env, obj, key, &v);
    napi_typeof(env, v, &t);
    if (t == napi_undefined || t == napi_null) return true;
    return (*out = bag_string(env, b, v, what)) != NULL;
}

/* An array property's length (0 when absent); false (TypeError) when it is not an array. */
static bool opt_array(napi_env env, napi_value obj, const char *key, napi_value *arr, uint32_t *n) {
    bool has, is_array;
    napi_valuetype t;
    *n = 0;
    if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return true;
    napi_get_named_property(env, obj, key, arr);
    napi_typeof(env, *arr, &t);
    if (t == napi_undefined || t == napi_null) return true;
    napi_is_array(env, *arr, &is_array);
    if (!is_array) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s must be an array", key);
        return napi_throw_type_error(env, NULL, msg), false;
    }
    napi_get_array_length(env, *arr, n);
    return true;
}

/* chat(endpoint, [{role, content, toolCalls?, toolCallId?}], options) -> run external. With
 * tool calls or results in the messages it is sipp_chat_ex (issue 18); lib/index.js has made
 * each call's arguments and each tool's parameters JSON text. */
static napi_value js_chat(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3], out = NULL;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    sipp_endpoint *ep = get_external(env, argv[0]);
    if (!ep) return NULL;
    bool is_array;
    uint32_t n = 0;
    napi_is_array(env, argv[1], &is_array);
    if (!is_array) return napi_throw_type_error(env, NULL, "messages must be an array"), NULL;
    napi_get_array_length(env, argv[1], &n);
    sipp_message *msgs = calloc(n ? n : 1, sizeof *msgs);
    sipp_chat_message *cm = calloc(n ? n : 1, sizeof *cm);
    sipp_tool_call **calls = calloc(n ? n : 1, sizeof *calls);
    sipp_tool *tools = NULL;
    bag b = {0};
    strings keep = {.n = 0};
    bool ok = msgs && cm && calls, ex = false;
    for (uint32_t i = 0; ok && i < n; i++) {
        napi_value m, role, content, arr;
        uint32_t n_calls = 0;
        napi_get_element(env, argv[1], i, &m);
        ok = napi_get_named_property(env, m, "role", &role) == napi_ok &&
             napi_get_named_property(env, m, "content", &content) == napi_ok &&
             (msgs[i].role = bag_string(env, &b, role, "message role")) != NULL &&
             (msgs[i].content = bag_string(env, &b, content, "message content")) != NULL &&
             opt_string(env, &b, m, "toolCallId", "toolCallId", &cm[i].tool_call_id) &&
             opt_array(env, m, "toolCalls", &arr, &n_calls);
        cm[i].role = msgs[i].role;
        cm[i].content = msgs[i].content;
        if (ok && n_calls) {
            ok = (calls[i] = calloc(n_calls, sizeof *calls[i])) != NULL;
            for (uint32_t k = 0; ok && k < n_calls; k++) {
                napi_value c;
                napi_get_element(env, arr, k, &c);
                ok = opt_string(env, &b, c, "id", "tool call id", &calls[i][k].id) &&
                     opt_string(env, &b, c, "name", "tool call name", &calls[i][k].name) &&
                     opt_string(env, &b, c, "arguments", "tool call arguments", &calls[i][k].arguments);
            }
            cm[i].tool_calls = calls[i];
            cm[i].n_tool_calls = n_calls;
        }
        ex = ex || cm[i].tool_call_id || n_calls;
    }
    napi_value tarr;
    uint32_t n_tools = 0;
    napi_valuetype ot;
    napi_typeof(env, argv[2], &ot);
    if (ok && ot == napi_object) ok = opt_array(env, argv[2], "tools", &tarr, &n_tools);
    if (ok && n_tools) {
        ok = (tools = calloc(n_tools, sizeof *tools)) != NULL;
        for (uint32_t k = 0; ok && k < n_tools; k++) {
            napi_value t;
            napi_get_element(env, tarr, k, &t);
            ok = opt_string(env, &b, t, "name", "tool name", &tools[k].name) &&
                 opt_string(env, &b, t, "description", "tool description", &tools[k].description) &&
                 opt_string(env, &b, t, "parameters", "tool parameters", &tools[k].parameters);
        }
    }
    const char *stops[SIPP_MAX_STOP_STRINGS + 1];
    sipp_text_params p;
    sipp_media *media = NULL;
    if (ok && text_params_from(env, argv[2], &p, &keep, stops) &&
        images_from(env, argv[2], last_user(msgs, n), &p, &media)) {
        p.tools = tools;
        p.n_tools = n_tools;
        sipp_run *run = NULL;
        sipp_error err = new_error();
        sipp_status st = ex ? sipp_chat_ex(ep, cm, n, &p, &run, &err)
                            : sipp_chat(ep, msgs, n, &p, &run, &err);
        out = finish_submit(env, st, &err, run);
    }
    free(media);
    for (uint32_t i = 0; calls && i < n; i++) free(calls[i]);
    free(calls);
    free(tools);
    free(cm);
    bag_free(&b);
    free(msgs);
    strings_free(&keep);
    return out;
fail:
    return NULL;
}

/* embed(endpoint, text, {normalize, extraJson, requestId}) -> run external */
static napi_value js_embed(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3], out = NULL;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    sipp_endpoint *ep = get_external(env, argv[0]);
    if (!ep) return NULL;
    sipp_embed_params p;
    sipp_embed_params_init(&p, sizeof p);
    strings keep = {.n = 0};
    char *text = get_string(env, argv[1], "text");
    if (text && fill_from(env, argv[2], &p, embed_fields, NULL, &keep)) {
        sipp_run *run = NULL;
        sipp_error err = new_error();
        sipp_status st = sipp_embed(ep, text, &p, &run, &err);
        out = finish_submit(env, st, &err, run);
    }
    free(text);
    strings_free(&keep);
    return out;
fail:
    return NULL;
}

/* ---- module -------------------------------------------------------------------------------------- */

/* ---- routing: estimates and the policy (sipp.h "Routing signals and policy") --------------------
 * An estimate crosses to JS as a plain object (camelCase fields, figures as {value, samples,
 * source}) and comes back from it for policyChoose, so an app may also build one itself. */

static const char *const figure_sources[] = {"unknown", "measured", "configured", "predicted"};
static const char *const cache_sources[] = {"none", "live", "snapshot"};

static void set_figure(napi_env env, napi_value obj, const char *key, const sipp_figure *f) {
    napi_value o;
    if (napi_create_object(env, &o) != napi_ok) return;
    set_num(env, o, "value", f->value);
    set_num(env, o, "samples", f->samples);
    unsigned s = (unsigned)f->source < 4 ? (unsigned)f->source : 0;
    set_str(env, o, "source", figure_sources[s], NAPI_AUTO_LENGTH);
    napi_set_named_property(env, obj, key, o);
}

#define ESTIMATE_FIGURES(X)                                                                       \
    X(ttft_ms, "ttftMs") X(decode_tokens_per_s, "decodeTokensPerS") X(total_ms, "totalMs")        \
    X(price_input_per_mtok, "priceInputPerMtok") X(price_output_per_mtok, "priceOutputPerMtok")   \
    X(error_rate, "errorRate") X(busy_rate, "busyRate")
#define ESTIMATE_COUNTS(X)                                                                        \
    X(prompt_tokens, "promptTokens") X(cached_tokens, "cachedTokens")                             \
    X(prefill_tokens, "prefillTokens") X(n_ctx, "nCtx") X(running, "running")                     \
    X(queued, "queued") X(free_slots, "freeSlots")
#define ESTIMATE_FLAGS(X)                                                                         \
    X(local, "local") X(loaded, "loaded") X(healthy, "healthy") X(cache_on_disk, "cacheOnDisk")

static napi_value estimate_object(napi_env env, const sipp_estimate *e) {
    napi_value o;
    if (napi_create_object(env, &o) != napi_ok) return NULL;
#define X(f, js) set_bool(env, o, js, e->f);
    ESTIMATE_FLAGS(X)
#undef X
#define X(f, js) set_num(env, o, js, e->f);
    ESTIMATE_COUNTS(X)
#undef X
    unsigned cs = (unsigned)e->cache_source < 3 ? (unsigned)e->cache_source : 0;
    set_str(env, o, "cacheSource", cache_sources[cs], NAPI_AUTO_LENGTH);
#define X(f, js) set_figure(env, o, js, &e->f);
    ESTIMATE_FIGURES(X)
#undef X
    return o;
}

static double num_prop(napi_env env, napi_value o, const char *key) {
    napi_value v;
    double d = 0;
    if (napi_get_named_property(env, o, key, &v) == napi_ok) napi_get_value_double(env, v, &d);
    return d;
}

static bool bool_prop(napi_env env, napi_value o, const char *key) {
    napi_value v;
    bool b = false;
    if (napi_get_named_property(env, o, key, &v) == napi_ok) napi_get_value_bool(env, v, &b);
    return b;
}

static int name_index(napi_env env, napi_value o, const char *key, const char *const *names,
                      int n) {
    napi_value v;
    char buf[24] = "";
    size_t len = 0;
    if (napi_get_named_property(env, o, key, &v) != napi_ok ||
        napi_get_value_string_utf8(env, v, buf, sizeof buf, &len) != napi_ok)
        return 0;
    for (int i = 0; i < n; i++)
        if (strcmp(buf, names[i]) == 0) return i;
    return 0;
}

/* A JS estimate (from estimate_object or written by the app) back into C; missing = 0/unknown. */
static bool estimate_from(napi_env env, napi_value o, sipp_estimate *e) {
    napi_valuetype t;
    if (napi_typeof(env, o, &t) != napi_ok || t != napi_object) {
        napi_throw_type_error(env, NULL, "a candidate's estimate must be an object");
        return false;
    }
    sipp_estimate_init(e, sizeof *e);
#define X(f, js) e->f = bool_prop(env, o, js);
    ESTIMATE_FLAGS(X)
#undef X
#define X(f, js) e->f = (uint32_t)num_prop(env, o, js);
    ESTIMATE_COUNTS(X)
#undef X
    e->cache_source = (sipp_cache_source)name_index(env, o, "cacheSource", cache_sources, 3);
#define X(f, js)                                                                                  \
    {                                                                                             \
        napi_value fv;                                                                            \
        if (napi_get_named_property(env, o, js, &fv) == napi_ok &&                                \
            napi_typeof(env, fv, &t) == napi_ok && t == napi_object) {                            \
            e->f.value = num_prop(env, fv, "value");                                              \
            e->f.samples = (uint32_t)num_prop(env, fv, "samples");                                \
            e->f.source = (sipp_figure_source)name_index(env, fv, "source", figure_sources, 4);   \
        }                                                                                         \
    }
    ESTIMATE_FIGURES(X)
#undef X
    return true;
}

/* Messages [{role, content}] into C; the strings go to `owned` (2n entries, caller frees). */
static bool messages_from(napi_env env, napi_value arr, sipp_message **msgs, char ***owned,
                          uint32_t *n) {
    bool is_array;
    *msgs = NULL;
    *owned = NULL;
    *n = 0;
    napi_is_array(env, arr, &is_array);
    if (!is_array) return napi_throw_type_error(env, NULL, "messages must be an array"), false;
    napi_get_array_length(env, arr, n);
    *msgs = calloc(*n ? *n : 1, sizeof **msgs);
    *owned = calloc(2 * (size_t)(*n ? *n : 1), sizeof **owned);
    bool ok = *msgs && *owned;
    for (uint32_t i = 0; ok && i < *n; i++) {
        napi_value m, role, content;
        napi_get_element(env, arr, i, &m);
        ok = napi_get_named_property(env, m, "role", &role) == napi_ok &&
             napi_get_named_property(env, m, "content", &content) == napi_ok &&
             ((*owned)[2 * i] = get_string(env, role, "message role")) != NULL &&
             ((*owned)[2 * i + 1] = get_string(env, content, "message content")) != NULL;
        if (ok) (*msgs)[i] = (sipp_message){(*owned)[2 * i], (*owned)[2 * i + 1]};
    }
    return ok;
}

static void messages_free(sipp_message *msgs, char **owned, uint32_t n) {
    for (uint32_t i = 0; owned && i < 2 * n; i++) free(owned[i]);
    free(owned);
    free(msgs);
}

/* estimate(endpoint, prompt | null, messages | null, options) -> estimate object */
static napi_value js_estimate(napi_env env, napi_callback_info info) {
    size_t argc = 4;
    napi_value argv[4], out = NULL;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    sipp_endpoint *ep = get_external(env, argv[0]);
    if (!ep) return NULL;
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    bool is_query = t == napi_string;
    strings keep = {.n = 0};
    const char *stops[SIPP_MAX_STOP_STRINGS + 1];
    sipp_text_params p;
    sipp_message *msgs = NULL;
    char **owned = NULL, *prompt = NULL;
    uint32_t n = 0;
    bool ok = is_query ? (prompt = get_string(env, argv[1], "prompt")) != NULL
                       : messages_from(env, argv[2], &msgs, &owned, &n);
    sipp_media *media = NULL;
    if (ok && text_params_from(env, argv[3], &p, &keep, stops) &&
        images_from(env, argv[3], is_query ? 0 : last_user(msgs, n), &p, &media)) {
        sipp_estimate e;
        sipp_estimate_init(&e, sizeof e);
        sipp_error err = new_error();
        sipp_status st = is_query ? sipp_estimate_query(ep, prompt, &p, &e, &err)
                                  : sipp_estimate_chat(ep, msgs, n, &p, &e, &err);
        if (st != SIPP_OK) throw_sipp(env, st, &err);
        else out = estimate_object(env, &e);
    }
    free(media);
    free(prompt);
    messages_free(msgs, owned, n);
    strings_free(&keep);
    return out;
fail:
    return NULL;
}

/* setPrices(endpoint, inputPerMtok, outputPerMtok); negative = unknown */
static napi_value js_set_prices(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    double in = -1, out = -1;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    sipp_endpoint *ep = get_external(env, argv[0]);
    if (!ep) return NULL;
    napi_get_value_double(env, argv[1], &in);
    napi_get_value_double(env, argv[2], &out);
    sipp_error err = new_error();
    sipp_status st = sipp_endpoint_set_prices(ep, in, out, &err);
    if (st != SIPP_OK) throw_sipp(env, st, &err);
    return undefined(env);
fail:
    return NULL;
}

static void policy_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    sipp_policy_free(data);
}

/* policyNew([{kind: number, value, tag}]) -> policy external (freed by the GC) */
static napi_value js_policy_new(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], out = NULL;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    bool is_array;
    uint32_t n = 0;
    napi_is_array(env, argv[0], &is_array);
    if (!is_array) return napi_throw_type_error(env, NULL, "rules must be an array"), NULL;
    napi_get_array_length(env, argv[0], &n);
    if (n > 256) return napi_throw_range_error(env, NULL, "at most 256 rules"), NULL;
    sipp_rule rules[256];
    char *tags[256] = {0};
    bool ok = true;
    for (uint32_t i = 0; ok && i < n; i++) {
        napi_value r, tag;
        napi_valuetype t;
        napi_get_element(env, argv[0], i, &r);
        rules[i] = (sipp_rule){(sipp_rule_kind)(int)num_prop(env, r, "kind"),
                               num_prop(env, r, "value"), NULL};
        if (napi_get_named_property(env, r, "tag", &tag) == napi_ok &&
            napi_typeof(env, tag, &t) == napi_ok && t == napi_string)
            ok = (rules[i].tag = tags[i] = get_string(env, tag, "tag")) != NULL;
    }
    if (ok) {
        sipp_policy *pol = NULL;
        sipp_error err = new_error();
        sipp_status st = sipp_policy_new(rules, n, &pol, &err);
        if (st != SIPP_OK) throw_sipp(env, st, &err);
        else if (napi_create_external(env, pol, policy_finalize, NULL, &out) != napi_ok)
            sipp_policy_free(pol);
    }
    for (uint32_t i = 0; i < n; i++) free(tags[i]);
    return out;
fail:
    return NULL;
}

/* policyChoose(policy, [{endpoint, estimate, name}], [tags], maxTokens)
 *   -> {index, reasons, dropped: [indexes]} (index -1 when every candidate was dropped) */
static napi_value js_policy_choose(napi_env env, napi_callback_info info) {
    size_t argc = 4;
    napi_value argv[4], out = NULL;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    sipp_policy *pol = get_external(env, argv[0]);
    if (!pol) return NULL;
    bool is_array;
    uint32_t n = 0, nt = 0;
    napi_is_array(env, argv[1], &is_array);
    if (is_array) napi_get_array_length(env, argv[1], &n);
    if (!is_array || n == 0 || n > 64)
        return napi_throw_type_error(env, NULL, "candidates: an array of 1 to 64"), NULL;
    napi_is_array(env, argv[2], &is_array);
    if (is_array) napi_get_array_length(env, argv[2], &nt);
    if (nt > 64) return napi_throw_range_error(env, NULL, "at most 64 tags"), NULL;
    sipp_route_candidate c[64];
    sipp_estimate est[64];
    char *names[64] = {0}, *tags[64] = {0};
    bool ok = true;
    for (uint32_t i = 0; ok && i < n; i++) {
        napi_value o, v;
        napi_valuetype t;
        napi_get_element(env, argv[1], i, &o);
        ok = napi_get_named_property(env, o, "endpoint", &v) == napi_ok &&
             (c[i].endpoint = get_external(env, v)) != NULL &&
             napi_get_named_property(env, o, "estimate", &v) == napi_ok &&
             estimate_from(env, v, &est[i]);
        c[i].estimate = &est[i];
        c[i].name = NULL;
        if (ok && napi_get_named_property(env, o, "name", &v) == napi_ok &&
            napi_typeof(env, v, &t) == napi_ok && t == napi_string)
            ok = (c[i].name = names[i] = get_string(env, v, "name")) != NULL;
    }
    for (uint32_t i = 0; ok && i < nt; i++) {
        napi_value v;
        napi_get_element(env, argv[2], i, &v);
        ok = (tags[i] = get_string(env, v, "tag")) != NULL;
    }
    uint32_t max_tokens = 256;
    napi_get_value_uint32(env, argv[3], &max_tokens);
    if (ok) {
        sipp_route_choice ch;
        sipp_error err = new_error();
        sipp_status st = sipp_policy_choose(pol, c, n, (const char *const *)tags, nt, max_tokens,
                                            &ch, &err);
        if (st != SIPP_OK && st != SIPP_NO_ROUTE) {
            throw_sipp(env, st, &err);
        } else if (napi_create_object(env, &out) == napi_ok) {
            napi_value dropped;
            set_num(env, out, "index", ch.index);
            set_str(env, out, "reasons", ch.reasons ? ch.reasons : "", NAPI_AUTO_LENGTH);
            napi_create_array(env, &dropped);
            for (uint32_t i = 0, k = 0; i < n; i++)
                if (ch.dropped >> i & 1) {
                    napi_value x;
                    napi_create_uint32(env, i, &x);
                    napi_set_element(env, dropped, k++, x);
                }
            napi_set_named_property(env, out, "dropped", dropped);
        }
        sipp_route_choice_free(&ch);
    }
    for (uint32_t i = 0; i < n; i++) free(names[i]);
    for (uint32_t i = 0; i < nt; i++) free(tags[i]);
    return out;
fail:
    return NULL;
}

/* ---- routing: the draft check and draft-then-audit (sipp.h "Routing: confidence and
 * draft-then-audit") ---------------------------------------------------------------------------- */

static const char *const audit_outcomes[] = {"none", "draft", "escalated", "draft_failed"};

/* {outcome, confidence, minProb, nTokens, retrySafe, reasons}: the browser client's shape. */
static napi_value decision_object(napi_env env, const sipp_audit_decision *d) {
    napi_value o;
    napi_create_object(env, &o);
    const char *name = (unsigned)d->outcome < 4 ? audit_outcomes[d->outcome] : "none";
    set_str(env, o, "outcome", name, NAPI_AUTO_LENGTH);
    set_num(env, o, "confidence", d->confidence);
    set_num(env, o, "minProb", d->min_prob);
    set_num(env, o, "nTokens", d->n_tokens);
    set_bool(env, o, "retrySafe", d->retry_safe);
    set_str(env, o, "reasons", d->reasons ? d->reasons : "", NAPI_AUTO_LENGTH);
    return o;
}

/* policyCheckDraft(policy, response) -> decision. `response`: a run's response object (what
 * `await run.response` gives: text, usage.outputTokens, logprobs [{logprob}] or null); it is
 * read back into a successful sipp_response. */
static napi_value js_policy_check_draft(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2], out = NULL, v;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    sipp_policy *pol = get_external(env, argv[0]);
    if (!pol) return NULL;
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_object)
        return napi_throw_type_error(env, NULL, "checkDraft: a response object is required"), NULL;
    sipp_response r = {.struct_size = sizeof r, .status = SIPP_OK};
    sipp_usage usage = {.struct_size = sizeof usage};
    sipp_token_logprob *lps = NULL;
    char *text = NULL;
    if (napi_get_named_property(env, argv[1], "text", &v) == napi_ok &&
        napi_typeof(env, v, &t) == napi_ok && t == napi_string) {
        if (!(text = get_string(env, v, "text"))) return NULL;
        r.text = text;
        r.text_len = strlen(text);
    }
    if (napi_get_named_property(env, argv[1], "usage", &v) == napi_ok &&
        napi_typeof(env, v, &t) == napi_ok && t == napi_object) {
        usage.input_tokens = (uint32_t)num_prop(env, v, "inputTokens");
        usage.output_tokens = (uint32_t)num_prop(env, v, "outputTokens");
        usage.total_tokens = (uint32_t)num_prop(env, v, "totalTokens");
        r.usage = &usage;
    }
    bool is_array = false;
    uint32_t n = 0;
    if (napi_get_named_property(env, argv[1], "logprobs", &v) == napi_ok)
        napi_is_array(env, v, &is_array);
    if (is_array) napi_get_array_length(env, v, &n);
    if (n && !(lps = calloc(n, sizeof *lps))) {
        free(text);
        return napi_throw_error(env, NULL, "out of memory"), NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        napi_value e;
        napi_get_element(env, v, i, &e);
        lps[i].logprob = (float)num_prop(env, e, "logprob");
    }
    r.logprobs = lps;
    r.n_logprobs = n;
    sipp_audit_decision d;
    sipp_error err = new_error();
    sipp_status st = sipp_policy_check_draft(pol, &r, &d, &err);
    if (st != SIPP_OK) throw_sipp(env, st, &err);
    else out = decision_object(env, &d);
    sipp_audit_decision_free(&d);
    free(lps);
    free(text);
    return out;
fail:
    return NULL;
}

/* A client in use by async work is freed at the end of the last one (as add_work does). */
static void client_unpend(client_h *c) {
    if (--c->pending_adds > 0 || !c->closed) return;
    sipp_client_free(c->client);
    c->client = NULL;
    if (c->finalized) free(c);
}

typedef struct audit_work {
    client_h *clients[2]; /* the draft's and the target's (the same one twice: counted twice) */
    napi_ref policy;      /* keeps the policy external (and so the policy) alive */
    sipp_policy *pol;
    sipp_endpoint *draft, *target;
    sipp_message *msgs;
    char **owned;
    uint32_t n;
    sipp_text_params p;
    strings keep;
    const char *stops[SIPP_MAX_STOP_STRINGS + 1];
    sipp_media *media;
    bool send_draft;
    sipp_run *run;
    sipp_audit_decision d;
    sipp_status status;
    sipp_error err;
    napi_deferred deferred;
    napi_async_work work;
} audit_work;

static void audit_work_free(napi_env env, audit_work *w) {
    if (w->policy) napi_delete_reference(env, w->policy);
    sipp_audit_decision_free(&w->d);
    messages_free(w->msgs, w->owned, w->n);
    strings_free(&w->keep);
    free(w->media);
    free(w);
}

static void audit_execute(napi_env env, void *data) {
    (void)env;
    audit_work *w = data;
    w->status = sipp_route_draft_audit(w->pol, w->draft, w->target, w->msgs, w->n, &w->p,
                                       w->send_draft, &w->run, &w->d, &w->err);
}

static void audit_complete(napi_env env, napi_status status, void *data) {
    audit_work *w = data;
    bool closed = w->clients[0]->closed || w->clients[1]->closed;
    if (status != napi_ok || closed) {
        sipp_run_free(w->run); /* before its client may be freed below */
        napi_reject_deferred(env, w->deferred,
                             make_error(env, status != napi_ok ? SIPP_CANCELLED : SIPP_CLOSED,
                                        status != napi_ok ? "draft-then-audit was cancelled"
                                                          : "the client was closed during the draft",
                                        "", 0, 0, ""));
    } else if (w->status != SIPP_OK) {
        napi_reject_deferred(env, w->deferred,
                             make_error(env, w->status, w->err.message, "", 0, w->err.subcode, ""));
    } else {
        napi_value o, run = w->run ? wrap_run(env, w->run) : NULL;
        napi_create_object(env, &o);
        if (run) napi_set_named_property(env, o, "run", run);
        napi_set_named_property(env, o, "decision", decision_object(env, &w->d));
        napi_resolve_deferred(env, w->deferred, o);
    }
    client_unpend(w->clients[0]);
    client_unpend(w->clients[1]);
    napi_delete_async_work(env, w->work);
    audit_work_free(env, w);
}

/* draftAudit(policy, draftClient, draftEndpoint, targetClient, targetEndpoint, messages,
 *            options, sendDraft) -> Promise<{run, decision}>. The draft runs and is waited for
 * on a worker (sipp_route_draft_audit), never on the JS thread. */
static napi_value js_draft_audit(napi_env env, napi_callback_info info) {
    size_t argc = 8;
    napi_value argv[8], promise, name;
    audit_work *w = NULL;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    w = calloc(1, sizeof *w);
    if (!w) return napi_throw_error(env, NULL, "out of memory"), NULL;
    w->err = new_error();
    bool ok = (w->pol = get_external(env, argv[0])) != NULL &&
              (w->clients[0] = get_external(env, argv[1])) != NULL &&
              (w->draft = get_external(env, argv[2])) != NULL &&
              (w->clients[1] = get_external(env, argv[3])) != NULL &&
              (w->target = get_external(env, argv[4])) != NULL &&
              messages_from(env, argv[5], &w->msgs, &w->owned, &w->n) &&
              text_params_from(env, argv[6], &w->p, &w->keep, w->stops) &&
              images_from(env, argv[6], last_user(w->msgs, w->n), &w->p, &w->media) &&
              napi_get_value_bool(env, argv[7], &w->send_draft) == napi_ok;
    if (ok && (w->clients[0]->closed || w->clients[1]->closed)) {
        napi_throw(env, make_error(env, SIPP_CLOSED, "the client is closed", "", 0, 0, ""));
        ok = false;
    }
    if (!ok || napi_create_reference(env, argv[0], 1, &w->policy) != napi_ok ||
        napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
        napi_create_string_utf8(env, "sipp.draftAudit", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_async_work(env, NULL, name, audit_execute, audit_complete, w, &w->work) !=
            napi_ok) {
        audit_work_free(env, w);
        return NULL;
    }
    if (napi_queue_async_work(env, w->work) != napi_ok) {
        napi_delete_async_work(env, w->work);
        audit_work_free(env, w);
        return NULL;
    }
    w->clients[0]->pending_adds++;
    w->clients[1]->pending_adds++;
    return promise;
fail:
    free(w);
    return NULL;
}

static void state_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    module_state *st = data;
    if (st->error_class) napi_delete_reference(env, st->error_class);
    if (st->dispatch) napi_delete_reference(env, st->dispatch);
    free(st);
}

/* init(SippError, dispatch): lib/index.js hands over its error class and run dispatcher. */
static napi_value js_init(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    module_state *st = state_of(env);
    if (!st) return NULL;
    if (st->error_class) napi_delete_reference(env, st->error_class);
    if (st->dispatch) napi_delete_reference(env, st->dispatch);
    CHECK(napi_create_reference(env, argv[0], 1, &st->error_class));
    CHECK(napi_create_reference(env, argv[1], 1, &st->dispatch));
    return undefined(env);
fail:
    return NULL;
}

/* diag() -> {liveRuns, liveHandles, heapBytes}: for the leak tests. heapBytes is glibc's
 * malloc heap in use (all arenas), -1 elsewhere. */
static napi_value js_diag(napi_env env, napi_callback_info info) {
    (void)info;
    napi_value o;
    napi_create_object(env, &o);
    set_num(env, o, "liveRuns", atomic_load(&live_runs));
    set_num(env, o, "liveHandles", atomic_load(&live_handles));
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    set_num(env, o, "heapBytes", (double)mi.uordblks);
#else
    set_num(env, o, "heapBytes", -1);
#endif
    return o;
}

static napi_value js_version(napi_env env, napi_callback_info info) {
    (void)info;
    napi_value v;
    napi_create_string_utf8(env, sipp_version(), NAPI_AUTO_LENGTH, &v);
    return v;
}

static napi_value js_status_names(napi_env env, napi_callback_info info) {
    (void)info;
    napi_value arr;
    napi_create_array(env, &arr);
    for (int i = 0; i < 64; i++) {
        const char *n = sipp_status_name((sipp_status)i);
        if (strcmp(n, "unknown") == 0) break;
        napi_value s;
        napi_create_string_utf8(env, n, NAPI_AUTO_LENGTH, &s);
        napi_set_element(env, arr, (uint32_t)i, s);
    }
    return arr;
}

NAPI_MODULE_INIT() {
    pthread_once(&fields_once, all_fields_build);
    module_state *st = calloc(1, sizeof *st);
    if (!st || napi_set_instance_data(env, st, state_finalize, NULL) != napi_ok) return NULL;
    napi_property_descriptor props[] = {
#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default, NULL}
        FN("init", js_init),
        FN("version", js_version),
        FN("diag", js_diag),
        FN("statusNames", js_status_names),
        FN("clientNew", js_client_new),
        FN("clientClose", js_client_close),
        FN("addLocal", js_add_local),
        FN("addProvider", js_add_provider),
        FN("addGateway", js_add_gateway),
        FN("remove", js_remove),
        FN("endpointInfo", js_endpoint_info),
        FN("endpointStats", js_endpoint_stats),
        FN("query", js_query),
        FN("chat", js_chat),
        FN("embed", js_embed),
        FN("runPull", js_run_pull),
        FN("runIdle", js_run_idle),
        FN("runCancel", js_run_cancel),
        FN("estimate", js_estimate),
        FN("setPrices", js_set_prices),
        FN("policyNew", js_policy_new),
        FN("policyChoose", js_policy_choose),
        FN("policyCheckDraft", js_policy_check_draft),
        FN("draftAudit", js_draft_audit),
#undef FN
    };
    if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
        return NULL;
    return exports;
}
