/*
 * residency.c — footprint estimate and LRU unload plan (residency.h). Pure functions.
 */
#include "residency.h"

static uint64_t mul_sat(uint64_t a, uint64_t b) {
    if (a && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

uint64_t sipp__gw_res_footprint(uint64_t file_bytes, uint32_t n_layer, uint32_t n_embd,
                                uint32_t n_ctx, uint32_t n_parallel) {
    uint64_t kv = mul_sat(mul_sat(mul_sat(4u, n_layer), n_embd),
                          mul_sat(n_ctx, n_parallel ? n_parallel : 1));
    return file_bytes > UINT64_MAX - kv ? UINT64_MAX : file_bytes + kv;
}

uint32_t sipp__gw_res_layers(uint64_t n_params, uint32_t n_embd) {
    if (!n_embd) return 0;
    uint64_t per = 12u * (uint64_t)n_embd * n_embd;
    uint64_t n = n_params / per;
    return n == 0 ? 1 : n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

uint64_t sipp__gw_res_used(const sipp__gw_res_entry *e, size_t n) {
    uint64_t used = 0;
    for (size_t i = 0; i < n; i++)
        if (e[i].state != SIPP__GW_RES_UNLOADED)
            used = used > UINT64_MAX - e[i].footprint ? UINT64_MAX : used + e[i].footprint;
    return used;
}

bool sipp__gw_res_plan(const sipp__gw_res_entry *e, size_t n, size_t want, uint64_t budget,
                       size_t *victims, size_t *n_victims) {
    *n_victims = 0;
    if (budget == 0) return true;
    if (want >= n || e[want].footprint > budget) return false;
    uint64_t used = sipp__gw_res_used(e, n);
    uint64_t need = e[want].footprint;
    while (used > budget - need) {
        /* the least recently used idle loaded entry not chosen yet */
        size_t best = n;
        for (size_t i = 0; i < n; i++) {
            if (i == want || e[i].state != SIPP__GW_RES_LOADED || e[i].in_use) continue;
            bool taken = false;
            for (size_t k = 0; k < *n_victims; k++) taken |= victims[k] == i;
            if (!taken && (best == n || e[i].last_used < e[best].last_used)) best = i;
        }
        if (best == n) {
            *n_victims = 0;
            return false;
        }
        victims[(*n_victims)++] = best;
        used -= e[best].footprint;
    }
    return true;
}
