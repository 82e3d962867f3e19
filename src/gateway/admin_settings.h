/*
 * admin_settings.h — the decoder of the dashboard's settings mutation (POST <admin>/api/settings),
 * pure (jansson and policy.c only) so a libFuzzer target covers it (tests/fuzz/fuzz_gw_admin.c).
 *
 * Body: {"rate_limit": {"enabled": bool, "requests_per_minute": uint, "burst"?: uint,
 *        "tokens_per_minute": uint}, "max_concurrent_requests": uint, "callers": {NAME:
 *        {"requests_per_minute"?: uint, "tokens_per_minute"?: uint}}, "ip_blocklist": [CIDR]}
 * Every member is optional; 0 = no limit. Unknown keys, wrong types, out-of-range numbers,
 * unknown callers and unparsable ranges are refused with a message; nothing is applied unless
 * the whole body is valid.
 */
#ifndef SIPP_GATEWAY_ADMIN_SETTINGS_H
#define SIPP_GATEWAY_ADMIN_SETTINGS_H

#include "policy.h"

typedef struct sipp__gw_admin_caller_set {
    size_t index; /* into the caller names given to the parser */
    bool has_rpm, has_tpm;
    uint32_t rpm, tpm;
} sipp__gw_admin_caller_set;

typedef struct sipp__gw_admin_settings {
    bool has_rate_limit;
    bool rl_enabled;
    uint32_t rl_rpm, rl_burst, rl_tpm;
    bool has_max_concurrent;
    uint32_t max_concurrent;
    sipp__gw_admin_caller_set *callers;
    size_t n_callers;
    bool has_blocklist;
    char **blocklist; /* the ranges as given (normalised text is not needed) */
    sipp__gw_cidr *cidrs;
    size_t n_blocklist;
} sipp__gw_admin_settings;

#define SIPP__GW_ADMIN_MAX_BLOCKLIST 4096

/* Returns 0 and fills *out (free with sipp__gw_admin_settings_free), or -1 with a message. */
int sipp__gw_admin_settings_parse(const char *text, size_t len, const char *const *caller_names,
                                  size_t n_caller_names, sipp__gw_admin_settings *out,
                                  char *errbuf, size_t errcap);
void sipp__gw_admin_settings_free(sipp__gw_admin_settings *s);

#endif
