/*
 * status.c — status names, error filling, logging and the monotonic clock.
 *
 * The status table lives in sipp.h (SIPP_STATUS_TABLE); this file only expands it.
 */
#define _POSIX_C_SOURCE 200809L
#include "common_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *sipp_version(void) { return SIPP_VERSION_STRING; }

int sipp_version_num(void) { return SIPP_VERSION_NUM; }

const char *sipp_status_name(sipp_status status) {
    switch (status) {
#define SIPP_STATUS_NAME_(name, num, short_name, desc) \
    case SIPP_##name:                                  \
        return short_name;
        SIPP_STATUS_TABLE(SIPP_STATUS_NAME_)
#undef SIPP_STATUS_NAME_
    }
    return "unknown";
}

const char *sipp_status_str(sipp_status status) {
    switch (status) {
#define SIPP_STATUS_DESC_(name, num, short_name, desc) \
    case SIPP_##name:                                  \
        return desc;
        SIPP_STATUS_TABLE(SIPP_STATUS_DESC_)
#undef SIPP_STATUS_DESC_
    }
    return "unknown status";
}


void sipp_free(void *ptr) { free(ptr); }

void sipp__format_message(char *dst, size_t cap, const char *fmt, va_list ap) {
    if (cap == 0) return;
    vsnprintf(dst, cap, fmt, ap);
    for (char *p = dst; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

sipp_status sipp__fail(sipp_error *err, sipp_status code, int subcode, const char *fmt, ...) {
    if (err && err->struct_size >= offsetof(sipp_error, message) + SIPP_ERROR_MESSAGE_CAP) {
        err->code = code;
        err->subcode = subcode;
        va_list ap;
        va_start(ap, fmt);
        sipp__format_message(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- logging ----------------------------------------------------------------------------- */

static _Atomic int g_log_level = -1; /* -1: not decided yet (read SIPP_LOG on first use) */

bool sipp__log_level_parse(const char *s, sipp_log_level *out) {
    static const char *const names[] = {"none", "error", "warn", "info", "debug"};
    for (int i = 0; i < 5; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (sipp_log_level)i;
            return true;
        }
    return false;
}

void sipp__log_set_level(sipp_log_level level) { atomic_store(&g_log_level, (int)level); }

void sipp_log_set(sipp_log_level level) { sipp__log_set_level(level); }

sipp_log_level sipp__log_level(void) {
    int lvl = atomic_load(&g_log_level);
    if (lvl < 0) {
        sipp_log_level parsed = SIPP_LOG_ERROR;
        sipp__log_level_parse(getenv("SIPP_LOG"), &parsed);
        lvl = (int)parsed;
        atomic_store(&g_log_level, lvl);
    }
    return (sipp_log_level)lvl;
}

void sipp__log(sipp_log_level level, const char *fmt, ...) {
    if (level > sipp__log_level()) return;
    static const char *const tags[] = {"", "error", "warn", "info", "debug"};
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sipp %s: %s\n", tags[level], line);
}

double sipp__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

