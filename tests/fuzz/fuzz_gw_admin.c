/*
 * fuzz_gw_admin.c — libFuzzer target for the dashboard's settings decoder
 * (src/gateway/admin_settings.c): any body is accepted or refused with a message, never a
 * crash or a leak; an accepted body holds the decoder's invariants (valid caller indexes,
 * every blocklist entry parsed, numbers in range).
 */
#include "gateway/admin_settings.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    static const char *const names[] = {"alice", "bob", "carol"};
    sipp__gw_admin_settings s;
    char err[256];
    err[0] = '\0';
    if (sipp__gw_admin_settings_parse((const char *)data, len, names, 3, &s, err, sizeof err) != 0) {
        if (err[0] == '\0') __builtin_trap(); /* a refusal always says why */
        return 0;
    }
    for (size_t i = 0; i < s.n_callers; i++)
        if (s.callers[i].index >= 3) __builtin_trap();
    for (size_t i = 0; i < s.n_blocklist; i++) {
        sipp__gw_cidr c;
        if (!s.blocklist[i] || !sipp__gw_cidr_parse(s.blocklist[i], &c) || c.prefix > 128)
            __builtin_trap();
    }
    if (s.has_rate_limit && s.rl_enabled && !s.rl_rpm && !s.rl_tpm) __builtin_trap();
    if (s.n_blocklist > SIPP__GW_ADMIN_MAX_BLOCKLIST) __builtin_trap();
    sipp__gw_admin_settings_free(&s);
    return 0;
}
