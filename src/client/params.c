/*
 * params.c — the public default constructors of libsipp's plain-data structs defined outside
 * src/common: client and local-endpoint params, engine stats and endpoint info (the client's
 * and the engine's records). Kept together so that the switch of these to sipp_*_init() is
 * one file's change.
 *
 * Any thread; pure functions with no dependency beyond sipp.h, so the wasm host (which has no
 * client) links this file for sipp_endpoint_info_default. The engine itself does not call them:
 * it zero-initialises its records, so src/engine depends on nothing in src/client.
 */
#include "sipp.h"

#include <string.h>

sipp_client_params sipp_client_params_default(void) {
    sipp_client_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.log_level = SIPP_LOG_ERROR;
    return p;
}

sipp_local_params sipp_local_params_default(void) {
    sipp_local_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_gpu_layers = -1;
    return p;
}

sipp_engine_stats sipp_engine_stats_default(void) {
    sipp_engine_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    return s;
}

sipp_endpoint_info sipp_endpoint_info_default(void) {
    sipp_endpoint_info in;
    memset(&in, 0, sizeof in);
    in.struct_size = sizeof in;
    return in;
}
