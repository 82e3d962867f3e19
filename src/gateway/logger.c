/*
 * logger.c — the gateway's log writer (logger.h): one JSON object a line on stderr.
 *
 * Log lines go through a bounded in-memory queue to one writer thread, so a request thread never
 * waits on stderr: when stderr is a pipe nobody reads (or a slow terminal, a full disk), the
 * writer blocks, the queue fills up to LOG_QUEUE_BYTES and further lines are dropped and counted
 * (sipp_log_dropped_lines_total; the writer reports the gap in a line of its own once it moves
 * again). The state is process-wide, like stderr; the writer starts with the first line and
 * lives until exit, with every signal blocked (signals belong to the thread that sigwaits, in
 * apps/gateway). sipp__gw_log_flush waits, with a bound, for the queue to empty.
 *
 * Invariants: lq.bytes is the sum of the queued lines' lengths and never exceeds
 * LOG_QUEUE_BYTES; the writer uses write(2), never stdio, so it holds no FILE lock while it
 * blocks. Nothing here knows the gateway object.
 */
#define _GNU_SOURCE
#include "logger.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double sipp__gw_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define LOG_QUEUE_BYTES (1u << 20)

typedef struct log_line {
    struct log_line *next;
    size_t len;
    char text[];
} log_line;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t ready, idle;
    log_line *head, *tail;
    size_t bytes;
    bool writing;
    unsigned long unreported; /* dropped since the last "log lines dropped" line */
} lq = {.mu = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER,
        .idle = PTHREAD_COND_INITIALIZER};
static atomic_ulong log_dropped;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static bool log_threaded; /* set once, before any reader, under log_once */

/* write(2) on fd 2, not stdio: a writer stuck on a full pipe must not hold stderr's FILE lock,
 * which exit() takes to flush the streams (the process would never exit). */
static void log_write(const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void *log_writer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lq.mu);
    for (;;) {
        while (!lq.head) pthread_cond_wait(&lq.ready, &lq.mu);
        log_line *l = lq.head;
        lq.head = l->next;
        if (!lq.head) lq.tail = NULL;
        unsigned long gap = lq.unreported;
        lq.unreported = 0;
        lq.writing = true;
        pthread_mutex_unlock(&lq.mu);
        if (gap) {
            char note[160];
            int n = snprintf(note, sizeof note,
                             "{\"level\":\"warn\",\"msg\":\"log lines dropped\",\"dropped\":%lu}\n", gap);
            log_write(note, (size_t)n);
        }
        log_write(l->text, l->len);
        pthread_mutex_lock(&lq.mu);
        lq.bytes -= l->len;
        free(l);
        lq.writing = false;
        if (!lq.head) pthread_cond_broadcast(&lq.idle);
    }
    return NULL;
}

static void log_start(void) {
    sigset_t all, old; /* signals belong to the thread that sigwaits (apps/gateway) */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    log_threaded = pthread_create(&t, &a, log_writer, NULL) == 0;
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

unsigned long sipp__gw_log_dropped(void) { return atomic_load(&log_dropped); }

void sipp__gw_log_flush(double timeout_s) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout_s;
    until.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lq.mu);
    while ((lq.head || lq.writing) &&
           pthread_cond_timedwait(&lq.idle, &lq.mu, &until) == 0) {
    }
    pthread_mutex_unlock(&lq.mu);
}

void sipp__gw_log(const char *level, const char *msg, void *extra) {
    json_t *line = json_object();
    if (!line) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    json_object_set_new(line, "ts", json_string(when));
    json_object_set_new(line, "level", json_string(level));
    json_object_set_new(line, "msg", json_string(msg));
    if (extra) json_object_update(line, (json_t *)extra);
    char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (!s) return;
    size_t n = strlen(s);
    pthread_once(&log_once, log_start);
    if (!log_threaded) { /* no writer thread: write in place, as before */
        pthread_mutex_lock(&lq.mu);
        log_write(s, n);
        log_write("\n", 1);
        pthread_mutex_unlock(&lq.mu);
        free(s);
        return;
    }
    log_line *l = malloc(sizeof *l + n + 1);
    if (l) {
        memcpy(l->text, s, n);
        l->text[n] = '\n';
        l->len = n + 1;
        l->next = NULL;
    }
    free(s);
    pthread_mutex_lock(&lq.mu);
    if (!l || lq.bytes + (l ? l->len : 0) > LOG_QUEUE_BYTES) {
        lq.unreported++;
        atomic_fetch_add(&log_dropped, 1);
        pthread_mutex_unlock(&lq.mu);
        free(l);
        return;
    }
    lq.bytes += l->len;
    if (lq.tail) lq.tail->next = l;
    else lq.head = l;
    lq.tail = l;
    pthread_cond_signal(&lq.ready);
    pthread_mutex_unlock(&lq.mu);
}

