/*
 * backend_init.c — process-wide set-up of llama.cpp: its backend, initialised once, and its log
 * routed through Sipp's log level (SIPP_LOG / sipp_client_params.log_level).
 *
 * Any thread: sipp__llama_init_once runs the set-up exactly once (pthread_once) before the
 * first model is read, by the engine at open or by inspection (model.c). It is its own file so
 * that model.c and the engine's files both depend on it and not on each other.
 */
#include "engine_int.h"

#include "llama.h"

#include <pthread.h>
#include <stdio.h>

static void llama_log_cb(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    sipp_log_level l = level == GGML_LOG_LEVEL_ERROR  ? SIPP_LOG_ERROR
                       : level == GGML_LOG_LEVEL_WARN ? SIPP_LOG_WARN
                       : level == GGML_LOG_LEVEL_INFO ? SIPP_LOG_INFO
                                                      : SIPP_LOG_DEBUG;
    if (level == GGML_LOG_LEVEL_CONT) l = SIPP_LOG_DEBUG;
    if (l <= sipp__log_level()) fputs(text, stderr);
}

static pthread_once_t llama_once = PTHREAD_ONCE_INIT;
static void llama_init(void) {
    llama_log_set(llama_log_cb, NULL);
    llama_backend_init();
}
void sipp__llama_init_once(void) { pthread_once(&llama_once, llama_init); }
