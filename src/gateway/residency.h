/*
 * residency.h — the pure part of "models that come and go" (docs/gateway.md "Residency"): the
 * footprint estimate of a local target and the choice of which loaded targets to unload so that
 * another one fits the memory budget. No locks, no I/O: the gateway (targets.c) calls these
 * under its residency mutex with a snapshot of its targets.
 */
#ifndef SIPP_GATEWAY_RESIDENCY_H
#define SIPP_GATEWAY_RESIDENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum sipp__gw_res_state {
    SIPP__GW_RES_UNLOADED,
    SIPP__GW_RES_LOADING,
    SIPP__GW_RES_LOADED,
} sipp__gw_res_state;

/* What the planner sees of one target. Targets that never count (remote ones) are UNLOADED
 * with a footprint of 0. */
typedef struct sipp__gw_res_entry {
    sipp__gw_res_state state;
    uint64_t footprint; /* estimated bytes while loaded or loading */
    unsigned in_use;    /* requests holding it (runs in flight) */
    double last_used;   /* when its last request ended, or it loaded; larger = more recent */
} sipp__gw_res_entry;

/* The estimated bytes a loaded local model takes: its weights (the file size) plus its KV cache,
 * 2 (K and V) x n_layer x n_ctx x n_parallel x n_embd x 2 bytes (f16). n_layer 0 (unknown)
 * counts the KV cache as nothing. Saturates at UINT64_MAX. */
/* The layer count of a transformer from its parameter count and width: a block has ~12 x
 * n_embd^2 parameters (attention 4 d^2, MLP 8 d^2), so n_layer ~ n_params / (12 n_embd^2),
 * at least 1 (0 when n_embd is 0). */
uint32_t sipp__gw_res_layers(uint64_t n_params, uint32_t n_embd);
uint64_t sipp__gw_res_footprint(uint64_t file_bytes, uint32_t n_layer, uint32_t n_embd,
                                uint32_t n_ctx, uint32_t n_parallel);

/* Bytes that the LOADED and LOADING entries take. */
uint64_t sipp__gw_res_used(const sipp__gw_res_entry *e, size_t n);

/* Whether entry `want` (not loaded) can be loaded within `budget` (0 = no budget): true with
 * victims[0..*n_victims) the LOADED entries to unload first, least recently used first, never
 * one in use or loading (none when it already fits); false when it cannot fit even with every
 * idle one unloaded (*n_victims 0). victims has room for n entries. */
bool sipp__gw_res_plan(const sipp__gw_res_entry *e, size_t n, size_t want, uint64_t budget,
                       size_t *victims, size_t *n_victims);

#endif
