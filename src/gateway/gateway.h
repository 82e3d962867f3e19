/*
 * gateway.h — sipp-gateway as a library: the policy and operations boundary in front of local
 * models and providers (docs/gateway.md, docs/gateway-protocol.md). apps/gateway is a
 * thin shell over this header: it loads the config, calls sipp__gw_new, waits for a signal and
 * calls sipp__gw_shutdown.
 */
#ifndef SIPP_GATEWAY_H
#define SIPP_GATEWAY_H

#include "config.h"
#include "logger.h" /* sipp__gw_log, sipp__gw_log_flush: part of this library's API */

#include <stddef.h>

typedef struct sipp__gw sipp__gw;

/* Reads the secrets named by the config (token env vars, provider keys), creates the libsipp
 * client, starts both listeners and starts loading local targets in the background (/readyz is
 * 503 until they are loaded). Takes ownership of *cfg (it is emptied). On failure returns -1
 * with a message that names env vars but never shows a secret, and *out is NULL (what was
 * built is freed). */
int sipp__gw_new(sipp__gw_config *cfg, sipp__gw **out, char *errbuf, size_t errcap);

/* Graceful shutdown: stops accepting, ends open streams with a terminal `error` event and
 * cancels their runs, waits up to shutdown_grace_seconds for requests to finish, then closes
 * both listeners. */
void sipp__gw_shutdown(sipp__gw *gw);
void sipp__gw_free(sipp__gw *gw);

/* Reload (SIGHUP, and the dashboard's "Reload config"; docs/gateway.md "Reload"): the file the
 * configuration came from (copied; the admin action reloads it). */
void sipp__gw_set_config_path(sipp__gw *gw, const char *path);
/* Re-reads the config file and applies its changes to the settings that can change in place
 * (rate limits, callers' limits, the IP blocklist, max_concurrent_requests, [models]
 * memory_budget_bytes, targets' idle_unload_seconds). An invalid file, or one that adds,
 * removes or changes a target (any key but idle_unload_seconds), a caller or a listener, is
 * refused as a whole: -1 with the
 * reason (also logged and shown on the dashboard), the running configuration unchanged. */
int sipp__gw_reload(sipp__gw *gw, char *errbuf, size_t errcap);

#endif
