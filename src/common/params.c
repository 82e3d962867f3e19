/*
 * params.c — the public API's versioned structs: their defaults, their init functions and the
 * one rule for struct sizes (include/sipp.h, "Conventions").
 *
 * Every versioned struct starts with uint32_t struct_size. The caller's init call records the
 * size it was compiled with; every entry point then reads or writes only that many bytes:
 *   - size in [first release's size, this header's size]: accepted; fields past it take their
 *     defaults (in-structs) or are not written (out-structs);
 *   - larger (a newer header than this library) or smaller (not from an init function):
 *     SIPP_INVALID_ARGUMENT, naming the struct.
 * Fields are only ever appended, so any size in that range is a layout some header had. The
 * table SIPP__STRUCTS below holds each struct's first-release size: the one place to look when a
 * field is appended (the ABI test, tests/abi/, freezes those layouts).
 *
 * Inside the library defaults are plain values (sipp__X_defaults()); sizes never cross the ABI.
 */
#include "common_int.h"
#include "sipp_settings.h"

#include <stddef.h>
#include <string.h>

/* ---- defaults --------------------------------------------------------------------------- */

sipp_error sipp__error_defaults(void) { return (sipp_error){.struct_size = sizeof(sipp_error)}; }

sipp_client_params sipp__client_params_defaults(void) {
    return (sipp_client_params){.struct_size = sizeof(sipp_client_params),
                                .log_level = SIPP_LOG_ERROR};
}

/* The defaults of the five params structs are a column of their tables
 * (include/sipp_settings.h). */
sipp_local_params sipp__local_params_defaults(void) {
    return (sipp_local_params){SIPP_LOCAL_SETTINGS(SIPP_SETTING_DEFAULT)};
}

sipp_provider_params sipp__provider_params_defaults(void) {
    return (sipp_provider_params){SIPP_PROVIDER_SETTINGS(SIPP_SETTING_DEFAULT)};
}

sipp_gateway_params sipp__gateway_params_defaults(void) {
    return (sipp_gateway_params){SIPP_GATEWAY_SETTINGS(SIPP_SETTING_DEFAULT)};
}

sipp_text_params sipp__text_params_defaults(void) {
    return (sipp_text_params){SIPP_TEXT_SETTINGS(SIPP_SETTING_DEFAULT)};
}

sipp_embed_params sipp__embed_params_defaults(void) {
    return (sipp_embed_params){SIPP_EMBED_SETTINGS(SIPP_SETTING_DEFAULT)};
}

sipp_engine_stats sipp__engine_stats_defaults(void) {
    return (sipp_engine_stats){.struct_size = sizeof(sipp_engine_stats)};
}

sipp_endpoint_info sipp__endpoint_info_defaults(void) {
    return (sipp_endpoint_info){.struct_size = sizeof(sipp_endpoint_info)};
}

sipp_estimate sipp__estimate_defaults(void) {
    return (sipp_estimate){.struct_size = sizeof(sipp_estimate)};
}

sipp_token_batch sipp__token_batch_defaults(void) {
    return (sipp_token_batch){.struct_size = sizeof(sipp_token_batch)};
}

/* ---- the rule ----------------------------------------------------------------------------- */

sipp_status sipp__struct_size_ok(uint32_t size, size_t first, size_t full, const char *what,
                                 sipp_error *err) {
    if (size > full)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "%s: struct_size %u is larger than this libsipp's %zu: the program was "
                          "built against a newer sipp.h than the library it runs with (libsipp %s)",
                          what, size, full, sipp_version());
    if (size < first)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "%s: struct_size %u is smaller than any released layout (%zu): fill the "
                          "struct with its sipp_*_init() function",
                          what, size, first);
    return SIPP_OK;
}

sipp_status sipp__params_in(void *dst, size_t full, const void *src, size_t first,
                            const char *what, sipp_error *err) {
    uint32_t size;
    memcpy(&size, src, sizeof size);
    sipp_status st = sipp__struct_size_ok(size, first, full, what, err);
    if (st != SIPP_OK) return st;
    memcpy(dst, src, size);
    memcpy(dst, &(uint32_t){(uint32_t)full}, sizeof(uint32_t));
    return SIPP_OK;
}

sipp_status sipp__struct_out(void *out, const void *value, size_t full, size_t first,
                             const char *what, sipp_error *err) {
    uint32_t size;
    memcpy(&size, out, sizeof size);
    sipp_status st = sipp__struct_size_ok(size, first, full, what, err);
    if (st != SIPP_OK) return st;
    memcpy(out, value, size);
    memcpy(out, &size, sizeof size);
    return SIPP_OK;
}

/* ---- init functions ----------------------------------------------------------------------- */

/* One init function per struct: the defaults, written up to the caller's size. */
#define SIPP__DEFINE_INIT(name, first)                                                          \
    sipp_status sipp_##name##_init(sipp_##name *p, size_t size) {                               \
        if (!p || size > sizeof(sipp_##name) || size < (first)) return SIPP_INVALID_ARGUMENT;    \
        sipp_##name d = sipp__##name##_defaults();                                              \
        d.struct_size = (uint32_t)size;                                                         \
        memcpy(p, &d, size);                                                                    \
        return SIPP_OK;                                                                         \
    }
SIPP__STRUCTS(SIPP__DEFINE_INIT)
#undef SIPP__DEFINE_INIT
