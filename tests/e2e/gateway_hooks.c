/*
 * gateway_hooks.c — linked only into sipp-gateway-hooks, the test build of the gateway
 * (tests/CMakeLists.txt): apps/gateway/main.c over the library's objects, so that the library's
 * test hooks (src/common/test_control.h) are reachable. Before main() it switches them from the
 * environment of the e2e test that starts it:
 *   SIPP_FAILPOINT_ENGINE_STALL_MS=N   SIPP__TESTCTRL_ENGINE_STALL_MS (the watchdog test)
 * The released sipp-gateway and libsipp read no such variable.
 */
#include "common/test_control.h"

#include <stdlib.h>

__attribute__((constructor)) static void hooks_from_environment(void) {
    const char *v = getenv("SIPP_FAILPOINT_ENGINE_STALL_MS");
    if (v) sipp__test_control(SIPP__TESTCTRL_ENGINE_STALL_MS, (unsigned)strtoul(v, NULL, 10));
}
