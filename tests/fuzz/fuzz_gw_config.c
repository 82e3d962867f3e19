/*
 * fuzz_gw_config.c — libFuzzer target for the gateway's config loader (src/gateway/config.c
 * over toml_shim.cpp and toml11): any input is accepted or refused with a message, never a
 * crash, a leak or an uncaught C++ exception. An accepted config must hold its invariants.
 */
#include "gateway/config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    sipp__gw_config cfg;
    char err[512];
    if (sipp__gw_config_parse((const char *)data, len, "fuzz.toml", &cfg, err, sizeof err) != 0) {
        if (err[0] == '\0') __builtin_trap(); /* a refusal always says why */
        return 0;
    }
    if (!cfg.public_bind || !cfg.management_bind || cfg.n_targets == 0 ||
        strcmp(cfg.public_bind, cfg.management_bind) == 0)
        __builtin_trap();
    for (int r = 0; r < SIPP__GW_N_ROUTES; r++)
        if (!cfg.routes[r] || cfg.routes[r][0] != '/' || strpbrk(cfg.routes[r], "?#"))
            __builtin_trap();
    sipp__gw_config_free(&cfg);
    return 0;
}
