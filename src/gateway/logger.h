/*
 * logger.h — the gateway's JSON log lines on stderr (logger.c) and its monotonic clock. Leaf
 * header: any gateway file may log; the logger knows nothing of the gateway.
 */
#ifndef SIPP_GATEWAY_LOGGER_H
#define SIPP_GATEWAY_LOGGER_H

/* Writes one JSON log line to stderr: {"ts", "level", "msg", ...extra}. `extra` may be NULL;
 * it is a jansson object (json_t *) whose keys are copied into the line. */
void sipp__gw_log(const char *level, const char *msg, void *extra);

/* Log lines are queued and written by one thread; a full queue (stderr not being read) drops
 * lines instead of blocking the caller. flush waits up to timeout_s for the queue to empty (call
 * it before exiting); dropped is the count of lines dropped so far. */
void sipp__gw_log_flush(double timeout_s);
unsigned long sipp__gw_log_dropped(void);

/* Monotonic clock in seconds. */
double sipp__gw_now(void);

#endif
