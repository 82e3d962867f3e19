/*
 * output.c — what the CLI prints besides the model's text: errors ("sipp: error: ..." on
 * stderr, one line), JSON lines for --json (results and errors, with the API's fields), and
 * the loading progress bar on a TTY.
 *
 * Single-threaded (the CLI's main thread, and the load progress callback it runs on).
 */
#include "cli.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cli_error(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    fprintf(stderr, "sipp: error: %s\n", msg);
}

void cli_print_json(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (s) puts(s);
    free(s);
    json_decref(o);
}

void cli_print_error_json(const sipp_response *r) {
    cli_print_json(json_pack("{s:{s:s,s:s,s:i,s:s,s:s,s:i}}", "error", "status",
                             sipp_status_name(r->status), "message", r->error_message,
                             "http_status", (json_int_t)r->http_status, "code", r->error_code,
                             "request_id", r->request_id, "retry_after_s",
                             (json_int_t)r->retry_after_s));
}

bool cli_progress_bar(float p, void *ud) {
    (void)ud;
    int width = 30, filled = (int)(p * (float)width + 0.5f);
    if (filled > width) filled = width;
    fprintf(stderr, "\rloading [%.*s%*s] %3d%%", filled, "##############################",
            width - filled, "", (int)(p * 100.0f + 0.5f));
    if (p >= 1.0f) fputs("\r\033[K", stderr);
    fflush(stderr);
    return true;
}
