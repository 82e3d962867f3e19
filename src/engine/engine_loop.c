/*
 * engine_loop.c — the engine thread's life: admission, the loop, shutdown, and the watchdog.
 *
 * Thread: the engine thread (started by sipp__engine_start, joined by sipp__engine_stop), plus
 * the watchdog thread in native builds. Each round ends reaped queued jobs (cancelled or past
 * their deadline), admits what can start (FIFO: embeddings run at once on their reserved
 * sequence; a text job waits for max_running), then runs one tick (engine_tick.c).
 *
 * Manual mode (SIPP_ENGINE_MANUAL, the single-thread WebAssembly build): no thread is started;
 * the host calls sipp__engine_step() to run one round on its own thread, which then is the
 * engine thread. Native builds never define it.
 *
 * Watchdog (native builds): a second thread wakes every quarter of stall_alarm_ms and compares
 * the time the last round ended with now. With work waiting or running and no round for
 * stall_alarm_ms, the engine is stalled (a decode that does not return): it logs, counts and
 * reports; it never touches llama.cpp state. A round always ends within one tick, and a
 * sequence paused on a slow consumer still goes through rounds (2 ms polls), so only a real
 * hang trips it. Invariants: the queue is touched only under `mu`; the heartbeat and `busy`
 * only under stats_mu.
 */
#define _GNU_SOURCE
#include "engine_state.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

/* Unlinks queued jobs that were cancelled or are past their deadline into *out. Under e->mu. */
static void reap_queue_locked(sipp__engine *e, double now, job **out) {
    for (job **pp = &e->queue_head, *prev = NULL; *pp;) {
        job *j = *pp;
        if (sipp__run_cancel_requested(j->run) || (j->deadline > 0 && now >= j->deadline)) {
            *pp = j->next;
            if (e->queue_tail == j) e->queue_tail = prev;
            e->n_queued--;
            j->next = *out;
            *out = j;
        } else {
            prev = j;
            pp = &j->next;
        }
    }
}

/* Takes the queue head if it can start now, counting `reserved` text jobs already taken this
 * round (FIFO: a waiting text job blocks later ones). Under e->mu. */
static job *pop_startable(sipp__engine *e, uint32_t reserved) {
    job *j = e->queue_head;
    if (!j) return NULL;
    if (j->kind == JOB_TEXT && e->n_running + reserved >= e->max_running) return NULL;
    e->queue_head = j->next;
    if (!e->queue_head) e->queue_tail = NULL;
    e->n_queued--;
    j->next = NULL;
    return j;
}

static void start_job(sipp__engine *e, job *j) {
    if (j->kind == JOB_EMBED) {
        sipp__engine_run_embed(e, j);
        return;
    }
    slot *s = sipp__slot_pick(e, j);
    s->t_start = sipp__now_ms();
    sipp__slot_prepare_cache(e, s, j);
    s->job = j;
    s->state = SLOT_PREFILL;
    s->n_prefilled = s->n_past;
    s->n_generated = 0;
    s->n_gaps = 0;
    s->t_prefilled = s->t_first = s->t_last = 0;
    e->n_running++;
}

/* Ends a reaped queued job: cancelled, or past its deadline. */
static void end_reaped(sipp__engine *e, job *j) {
    if (sipp__run_cancel_requested(j->run)) {
        sipp__engine_finish_job(e, j, SIPP_OK, NULL, SIPP_FINISH_CANCELLED, NULL, NULL);
    } else {
        char msg[64];
        sipp__job_deadline_message(j, msg, sizeof msg);
        sipp__engine_finish_job(e, j, SIPP_DEADLINE_EXCEEDED, msg, SIPP_FINISH_NONE, NULL, NULL);
    }
}

/* At shutdown: ends every run, and keeps the state of warm sequences as snapshots (the
 * store writes them to its disk tier when it is freed). */
static void drain_all(sipp__engine *e) {
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->state == SLOT_FREE) continue;
        sipp__slot_flush_held(s);
        sipp__slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_CANCELLED);
    }
    for (uint32_t i = 0; i < e->n_parallel; i++) sipp__slot_snapshot(e, &e->slots[i]);
    pthread_mutex_lock(&e->mu);
    job *j = e->queue_head;
    e->queue_head = e->queue_tail = NULL;
    e->n_queued = 0;
    pthread_mutex_unlock(&e->mu);
    while (j) {
        job *next = j->next;
        sipp__engine_finish_job(e, j, SIPP_OK, NULL, SIPP_FINISH_CANCELLED, NULL, NULL);
        j = next;
    }
}

#ifndef SIPP_ENGINE_MANUAL
/* Sleeps until there is work. With every active sequence paused on a slow consumer, or
 * queued deadlines to watch, it polls gently instead. Under e->mu. */
static void wait_for_work_locked(sipp__engine *e) {
    if (e->stopping || e->woken) return;
    if (e->n_running == 0 && !e->queue_head) {
        pthread_cond_wait(&e->cv, &e->mu);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 2 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&e->cv, &e->mu, &ts);
}
#endif

/* One round of the engine loop: ends reaped queued jobs, admits what can start, runs one tick.
 * Returns false when the tick had nothing to decode (the caller may sleep). */
static bool engine_round(sipp__engine *e) {
    pthread_mutex_lock(&e->stats_mu);
    e->heartbeat_ms = sipp__now_ms();
    e->busy = true;
    pthread_mutex_unlock(&e->stats_mu);
    pthread_mutex_lock(&e->mu);
    e->woken = false;
    job *reaped = NULL;
    if (e->queue_head) reap_queue_locked(e, sipp__now_ms(), &reaped);
    job *start = NULL, **tail = &start;
    job *j;
    uint32_t reserved = 0;
    while ((j = pop_startable(e, reserved)) != NULL) {
        reserved += j->kind == JOB_TEXT;
        *tail = j;
        tail = &j->next;
    }
    pthread_mutex_unlock(&e->mu);

    while (reaped) {
        job *next = reaped->next;
        end_reaped(e, reaped);
        reaped = next;
    }
    while (start) {
        job *next = start->next;
        start->next = NULL;
        start_job(e, start);
        start = next;
    }
    pthread_mutex_lock(&e->stats_mu);
    e->stats.running = e->n_running;
    sipp__kvstore_usage(e->kv, &e->stats.cache_ram_bytes, &e->stats.cache_disk_bytes);
    pthread_mutex_unlock(&e->stats_mu);
    if (e->failpoint_stall_ms && e->n_running > 0) { /* a hung decode, for the watchdog's test */
        struct timespec ts = {e->failpoint_stall_ms / 1000,
                              (long)(e->failpoint_stall_ms % 1000) * 1000000L};
        e->failpoint_stall_ms = 0;
        nanosleep(&ts, NULL);
    }
    bool decoded = sipp__engine_tick(e);
    pthread_mutex_lock(&e->stats_mu);
    e->heartbeat_ms = sipp__now_ms();
    e->busy = e->n_running > 0;
    pthread_mutex_unlock(&e->stats_mu);
    return decoded;
}

#ifndef SIPP_ENGINE_MANUAL
static void *engine_main(void *arg) {
    sipp__engine *e = arg;
    bool idle = false;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        if (idle) wait_for_work_locked(e);
        bool stopping = e->stopping;
        pthread_mutex_unlock(&e->mu);
        if (stopping) break;
        idle = !engine_round(e);
    }
    drain_all(e);
    return NULL;
}

#ifndef __EMSCRIPTEN__
/* One look at the engine's progress (see the file comment). `stall_since` is the watchdog
 * thread's own: when the round in the stall began. Both lines are errors, so an operator who
 * sees the alarm also sees it end. */
static void watchdog_check(sipp__engine *e, double *stall_since) {
    double now = sipp__now_ms();
    pthread_mutex_lock(&e->stats_mu);
    double since = e->heartbeat_ms;
    bool stalled = e->busy && now - since >= (double)e->stall_alarm_ms;
    bool was = e->stats.stalled != 0;
    uint32_t running = e->stats.running;
    if (stalled && !was) e->stats.stalls++;
    e->stats.stalled = stalled;
    pthread_mutex_unlock(&e->stats_mu);
    if (stalled && !was) {
        *stall_since = since;
        sipp__log(SIPP_LOG_ERROR,
                  "engine stalled: no scheduler round for %.1f s with %u requests running "
                  "(a llama_decode that does not return?); runs wait until it does",
                  (now - since) / 1000.0, running);
    } else if (!stalled && was) {
        sipp__log(SIPP_LOG_ERROR, "engine recovered: scheduler rounds go on after %.1f s",
                  (now - *stall_since) / 1000.0);
    }
}

static void *watchdog_main(void *arg) {
    sipp__engine *e = arg;
    double stall_since = 0;
    uint32_t period = e->stall_alarm_ms / 4;
    if (period > 1000) period = 1000;
    if (period < 10) period = 10;
    pthread_mutex_lock(&e->mu);
    while (!e->watchdog_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += period / 1000;
        ts.tv_nsec += (long)(period % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&e->watchdog_cv, &e->mu, &ts);
        if (e->watchdog_stop) break;
        pthread_mutex_unlock(&e->mu);
        watchdog_check(e, &stall_since);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}
#endif /* __EMSCRIPTEN__ */
#else
bool sipp__engine_step(sipp__engine *e) {
    /* a forward still pending (an external backend's, not committed yet): nothing else runs */
    if (!sipp__engine_resume(e)) return true;
    engine_round(e);
    pthread_mutex_lock(&e->mu);
    bool more = e->queue_head != NULL || e->n_running > 0;
    pthread_mutex_unlock(&e->mu);
    return more;
}
#endif

/* ============================================================================================
 * Starting and stopping (the opening and closing caller's thread)
 * ========================================================================================== */

sipp_status sipp__engine_start(sipp__engine *e, sipp_error *err) {
#ifndef SIPP_ENGINE_MANUAL
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0)
        return sipp__fail(err, SIPP_INTERNAL, errno, "cannot start the engine thread");
#ifndef __EMSCRIPTEN__ /* in the browser a thread is a worker from a fixed pool: none to spare */
    e->has_watchdog = e->stall_alarm_ms > 0 &&
                      pthread_create(&e->watchdog, NULL, watchdog_main, e) == 0;
#endif
#else
    (void)e;
    (void)err;
#endif
    return SIPP_OK;
}

void sipp__engine_stop(sipp__engine *e) {
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    e->watchdog_stop = true; /* first: draining (snapshot writes) is not a stall */
    pthread_cond_broadcast(&e->cv);
    pthread_cond_signal(&e->watchdog_cv);
    pthread_mutex_unlock(&e->mu);
    if (e->has_watchdog) pthread_join(e->watchdog, NULL);
#ifndef SIPP_ENGINE_MANUAL
    pthread_join(e->thread, NULL);
#else
    /* manual mode: the caller's thread is the engine thread; a forward committed but not taken
     * back yet is completed first (an external backend commits before the close) */
    sipp__engine_resume(e);
    drain_all(e);
#endif
}
