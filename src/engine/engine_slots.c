/*
 * engine_slots.c — slots and the KV cache as runtime state: which sequence a text job gets,
 * what of its prompt is already cached, and how a run ends.
 *
 * Thread: the engine thread only (the stats counters it bumps are under stats_mu).
 * A request with a context key leaves its sequence warm under the (scoped) key; the next
 * request on the key reuses the longest common prefix. Admission takes the key's warm
 * sequence, else an empty one, else evicts the least recently used warm one, whose state goes
 * to the snapshot store (kvstore.c), from which a later request can restore it.
 * Invariants: cached[0, n_past) are the tokens in a slot's sequence; a free slot with a key is
 * warm for that key; every job ends exactly once, through sipp__engine_finish_job; at least
 * the last prompt token is always computed again (its logits start the generation).
 */
#include "engine_state.h"
#include "media.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Ends a job's run and counts it. Every job ends here exactly once. */
void sipp__engine_finish_job(sipp__engine *e, job *j, sipp_status st, const char *msg,
                       sipp_finish_reason reason, const sipp_usage *usage,
                       const sipp_stats *stats) {
    pthread_mutex_lock(&e->stats_mu);
    e->stats.running = e->n_running; /* published before the caller can see the run end */
    if (st != SIPP_OK)
        e->stats.failed++;
    else
        e->stats.completed++;
    if (reason == SIPP_FINISH_CANCELLED) e->stats.cancelled++;
    pthread_mutex_unlock(&e->stats_mu);
    sipp_run *run = j->run;
    if (j->parser && run) { /* the final parse: what is left, and the calls */
        sipp__job_emit em = {run, 0};
        sipp_status pst = sipp__chat_parser_feed(j->parser, "", 0, true, sipp__job_emit_delta, &em);
        const sipp_tool_call *calls = NULL;
        size_t n = sipp__chat_parser_calls(j->parser, &calls);
        if (pst == SIPP_OK) pst = sipp__run_set_tool_calls(run, calls, n);
        if (pst != SIPP_OK && st == SIPP_OK) {
            st = pst;
            msg = "the model's answer could not be parsed";
        }
        if (n > 0 && reason == SIPP_FINISH_STOP) reason = SIPP_FINISH_TOOL_CALLS;
    }
    j->run = NULL;
    sipp__job_free(j);
    sipp__run_finish(run, st, msg, reason, usage, stats);
    pthread_mutex_lock(&e->mu); /* after the run's end: a drained engine has no run to reach */
    if (e->n_live > 0 && --e->n_live == 0) pthread_cond_broadcast(&e->idle_cv);
    pthread_mutex_unlock(&e->mu);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Fills per-request stats from the slot's timestamps and inter-token gaps. */
static void slot_stats(sipp__engine *e, const slot *s, double now, sipp_stats *out) {
    const job *j = s->job;
    *out = (sipp_stats){.struct_size = sizeof *out};
    out->queue_ms = s->t_start - j->t_submit;
    out->total_ms = now - j->t_submit;
    out->prefill_tokens = (uint32_t)s->n_prefilled - j->cached_tokens;
    out->cache_source = j->cache_source;
    out->cached_tokens = j->cached_tokens;
    sipp__media_stats(j, out);
    double pf_end = s->t_prefilled > 0 ? s->t_prefilled : now;
    out->prefill_ms = pf_end - s->t_start;
    if (out->prefill_ms > 0 && s->t_prefilled > 0)
        out->prefill_tok_s = out->prefill_tokens / (out->prefill_ms / 1e3);
    if (s->t_first > 0) {
        out->ttft_ms = s->t_first - j->t_submit;
        out->decode_ms = s->t_last - s->t_first;
        if (out->decode_ms > 0 && s->n_generated > 1)
            out->decode_tok_s = (s->n_generated - 1) / (out->decode_ms / 1e3);
    }
    if (s->n_gaps > 0) {
        double sum = 0;
        for (uint32_t i = 0; i < s->n_gaps; i++) sum += s->gaps[i];
        out->itl_avg_ms = sum / s->n_gaps;
        memcpy(e->gap_scratch, s->gaps, s->n_gaps * sizeof(float));
        qsort(e->gap_scratch, s->n_gaps, sizeof(float), cmp_float);
        uint32_t k = (uint32_t)ceil(0.99 * s->n_gaps) - 1;
        out->itl_p99_ms = e->gap_scratch[k < s->n_gaps ? k : s->n_gaps - 1];
    }
}

/* Empties a slot's sequence and forgets its key. */
static void slot_clear(sipp__engine *e, slot *s) {
    e->be.seq_remove(e->be.state, s->seq, 0, -1);
    s->n_past = 0;
    free(s->key);
    s->key = NULL;
    s->key_len = 0;
}

/* Saves a warm slot's state as a prefix snapshot (when the store is on). */
void sipp__slot_snapshot(sipp__engine *e, slot *s) {
    if (!e->kv || !s->key || s->n_past <= 0) return;
    uint8_t *buf;
    size_t got;
    if (!e->be.state_save(e->be.state, s->seq, &buf, &got)) return;
    sipp__kvstore_put(e->kv, s->key, s->key_len, s->cached, (uint32_t)s->n_past, buf, got);
}

static bool same_key(const slot *s, const job *j) {
    return s->key && j->key && s->key_len == j->key_len && memcmp(s->key, j->key, j->key_len) == 0;
}

/* Picks the sequence for a text job: the key's warm one (most recent), else an empty one,
 * else the least recently used warm one. There is always one: fewer than n_parallel run. */
slot *sipp__slot_pick(sipp__engine *e, const job *j) {
    slot *warm = NULL, *empty = NULL, *lru = NULL;
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->state != SLOT_FREE) continue;
        if (same_key(s, j) && (!warm || s->last_used > warm->last_used)) warm = s;
        if (!s->key && !empty) empty = s;
        if (s->key && (!lru || s->last_used < lru->last_used)) lru = s;
    }
    return warm ? warm : empty ? empty : lru;
}

static uint32_t common_prefix(const llama_token *a, uint32_t na, const llama_token *b, uint32_t nb) {
    uint32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Copies the first n tokens of sequence src's KV cache into the empty sequence dst. The one
 * place a prefix moves between sequences, through the backend's seq_copy and seq_remove. The
 * whole sequence is copied (llama.cpp's cache is not unified: it copies src's whole stream at
 * the next decode and refuses a partial cross-stream copy); the tail is cut here. False (dst
 * left empty) when the backend cannot cut it. */
static bool kv_copy_prefix(sipp__engine *e, llama_seq_id src, llama_seq_id dst, uint32_t n) {
    e->be.seq_copy(e->be.state, src, dst, -1);
    if (e->be.seq_remove(e->be.state, dst, (int32_t)n, -1)) return true;
    e->be.seq_remove(e->be.state, dst, 0, -1);
    return false;
}

/* A running sequence of job j's key (not s) and the tokens its cache shares with j's prompt:
 * two requests on one key at once share their common prefix instead of computing it twice. */
static slot *shared_source(sipp__engine *e, const slot *s, const job *j, uint32_t *n_shared) {
    slot *best = NULL;
    *n_shared = 0;
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *o = &e->slots[i];
        if (o == s || o->state == SLOT_FREE || !o->job || !o->job->key || !j->key ||
            o->job->key_len != j->key_len || memcmp(o->job->key, j->key, j->key_len) != 0)
            continue;
        uint32_t n = common_prefix(o->cached, (uint32_t)o->n_past, j->tokens, (uint32_t)j->n_tokens);
        if (n > *n_shared) {
            *n_shared = n;
            best = o;
        }
    }
    return best;
}

/* Prepares a picked slot for job j: reuses the live prefix of the key's sequence, copies the
 * prefix a running request on the key shares with it, or restores a snapshot, else starts
 * empty. Sets n_past to the reused length and counts hit or miss. */
void sipp__slot_prepare_cache(sipp__engine *e, slot *s, job *j) {
    uint32_t n_prompt = (uint32_t)j->n_tokens, reuse = 0;
    /* At least the last prompt token is computed again: its logits start the generation. */
    uint32_t max_reuse = n_prompt - 1;
    if (same_key(s, j)) {
        reuse = common_prefix(s->cached, (uint32_t)s->n_past, j->tokens, n_prompt);
        if (reuse > max_reuse) reuse = max_reuse;
        reuse = sipp__media_align(j, reuse);
        bool exact = reuse == (uint32_t)s->n_past; /* the cache is a prefix of the prompt */
        if (reuse > 0 && (exact || e->partial_reuse) &&
            e->be.seq_remove(e->be.state, s->seq, (llama_pos)reuse, -1)) {
            j->cache_source = SIPP_CACHE_LIVE;
        } else {
            reuse = 0;
        }
    } else if (s->key) { /* another key's warm sequence: evict it, keep a snapshot */
        sipp__slot_snapshot(e, s);
        pthread_mutex_lock(&e->stats_mu);
        e->stats.cache_evictions++;
        pthread_mutex_unlock(&e->stats_mu);
    }
    if (reuse == 0) {
        slot_clear(e, s);
        uint32_t n_common = 0, n_shared = 0;
        const sipp__kv_entry *snap =
            j->key && e->kv ? sipp__kvstore_find(e->kv, j->key, j->key_len, j->tokens, n_prompt,
                                                 !e->partial_reuse, &n_common)
                            : NULL;
        uint32_t n_snap = snap ? sipp__kv_entry_tokens(snap) : 0;
        uint32_t want = sipp__media_align(j, n_common < max_reuse ? n_common : max_reuse);
        slot *src = j->key && e->partial_reuse ? shared_source(e, s, j, &n_shared) : NULL;
        n_shared = sipp__media_align(j, n_shared < max_reuse ? n_shared : max_reuse);
        const uint8_t *state;
        size_t state_len;
        /* A running request's prefix when it is at least as long as the snapshot's; else
         * restore, then cut the state back to the common prefix (whole-state models only take
         * a snapshot they can continue exactly). Neither while a copy into this sequence is
         * still pending in llama.cpp (its cancelled request never decoded): the copy would
         * land on top at the next decode; such a slot computes its prompt. */
        if (src && n_shared > 0 && n_shared >= want && !s->kv_copy_pending &&
            kv_copy_prefix(e, src->seq, s->seq, n_shared)) {
            reuse = n_shared;
            s->kv_copy_pending = true;
            j->cache_source = SIPP_CACHE_LIVE;
        } else if (want > 0 && (e->partial_reuse || want == n_snap) && !s->kv_copy_pending &&
            sipp__kvstore_load(e->kv, snap, &state, &state_len, NULL) == SIPP_OK &&
            e->be.state_load(e->be.state, s->seq, state, state_len)) {
            reuse = want;
            if (reuse < n_snap && !e->be.seq_remove(e->be.state, s->seq, (llama_pos)reuse, -1))
                reuse = 0;
            if (reuse > 0) j->cache_source = SIPP_CACHE_SNAPSHOT;
            else slot_clear(e, s);
        }
    }
    if (reuse > 0) memcpy(s->cached, j->tokens, reuse * sizeof(llama_token));
    s->n_past = (int32_t)reuse;
    j->cached_tokens = reuse;
    /* to estimates, the sequence already holds what this run's prefill puts in it */
    sipp__warm_publish(e, s, j->key, j->key_len, j->tokens, (uint32_t)n_prompt);
    if (j->key) {
        pthread_mutex_lock(&e->stats_mu);
        if (reuse > 0) e->stats.cache_hits++;
        else e->stats.cache_misses++;
        pthread_mutex_unlock(&e->stats_mu);
    }
}

void sipp__slot_finish(sipp__engine *e, slot *s, sipp_status st, const char *msg,
                        sipp_finish_reason reason) {
    job *j = s->job;
    sipp_usage u = {sizeof u, (uint32_t)j->n_tokens, s->n_generated,
                    (uint32_t)j->n_tokens + s->n_generated};
    sipp_stats stt;
    double now = sipp__now_ms();
    slot_stats(e, s, now, &stt);
    /* A copied prefix that no decode has applied yet would be snapshotted as garbage. */
    if (j->key && st != SIPP_INTERNAL && !s->kv_copy_pending) {
        /* Stay warm under the key: the next request on it continues from cached[0, n_past). */
        free(s->key);
        s->key = j->key;
        s->key_len = j->key_len;
        j->key = NULL;
        s->last_used = now;
        sipp__warm_publish(e, s, s->key, s->key_len, s->cached, (uint32_t)s->n_past);
    } else {
        slot_clear(e, s);
        sipp__warm_publish(e, s, NULL, 0, NULL, 0);
    }
    s->job = NULL;
    s->state = SLOT_FREE;
    sipp__buf_reset(&s->held);
    s->held_tokens = 0;
    e->n_running--;
    sipp__engine_finish_job(e, j, st, msg, reason, &u, &stt);
}

/* Makes room in a full sequence: keeps the first n_keep tokens, drops the older half of the
 * rest and moves the newer half down (the backend shifts the positions of its cache). */
void sipp__slot_shift(sipp__engine *e, slot *s) {
    int32_t keep = (int32_t)e->n_keep, discard = (s->n_past - keep) / 2;
    e->be.seq_remove(e->be.state, s->seq, keep, keep + discard);
    e->be.seq_shift(e->be.state, s->seq, keep + discard, s->n_past, -discard);
    memmove(s->cached + keep, s->cached + keep + discard,
            (size_t)(s->n_past - keep - discard) * sizeof(llama_token));
    s->n_past -= discard;
}
