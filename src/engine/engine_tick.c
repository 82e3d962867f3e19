/*
 * engine_tick.c — the tick: plan one batch for every running sequence, run it through the
 * backend (backend.h), sample and accept; and embeddings.
 *
 * Thread: the engine thread only. Each tick drops cancelled and expired sequences, then
 * plans one batch: the next token of every decoding sequence first (unless its consumer lags
 * by stream_cap bytes: it pauses, the others go on), then prompt chunks of prefilling
 * sequences, shared round-robin within the tick's prefill budget (chosen from the ITL target by
 * prefill_budget.c, which learns from each tick's time); the backend runs it (forward) and one
 * token is sampled per sequence with logits. Invariants: a tick allocates nothing on the heap
 * (the plan is allocated at open) except the log-probability entries of runs that asked for
 * them; a failed forward ends only the sequences that were in the batch; while a forward is
 * pending (an external backend, manual mode) nothing touches the slots it planned.
 * Sequence ids: slot i uses seq i; seq n_parallel is for embeddings (seq 0 for an
 * embedding-only model, which has no slots).
 */
#include "engine_state.h"
#include "media.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void batch_add(sipp__plan *b, llama_token tok, llama_pos pos, llama_seq_id seq,
                      bool logits);

void sipp__engine_run_embed(sipp__engine *e, job *j) {
    double t0 = sipp__now_ms();
    llama_seq_id seq = (llama_seq_id)e->n_parallel;
    sipp__plan *b = &e->batch;
    b->n_tokens = b->n_outputs = 0;
    for (int32_t i = 0; i < j->n_tokens; i++) batch_add(b, j->tokens[i], i, seq, true);
    const float *v = NULL;
    int rc = e->be.embed ? e->be.embed(e->be.state, b, seq, &v) : -1;
    uint32_t n = e->info.n_embd;
    float *vec = v ? malloc(n * sizeof *vec) : NULL;
    if (vec) {
        double norm = 0;
        for (uint32_t i = 0; i < n; i++) norm += (double)v[i] * v[i];
        norm = sqrt(norm);
        for (uint32_t i = 0; i < n; i++)
            vec[i] = j->normalize && norm > 0 ? (float)(v[i] / norm) : v[i];
    }
    e->be.seq_remove(e->be.state, seq, 0, -1);
    b->n_tokens = b->n_outputs = 0;

    if (!vec) {
        char msg[96];
        snprintf(msg, sizeof msg, "embedding failed (%s returned %d)",
                 e->external ? "the backend" : "llama.cpp", rc);
        sipp__engine_finish_job(e, j, rc == 0 ? SIPP_OUT_OF_MEMORY : SIPP_INTERNAL, msg, SIPP_FINISH_NONE,
                   NULL, NULL);
        return;
    }
    double t1 = sipp__now_ms();
    sipp_usage u = {sizeof u, (uint32_t)j->n_tokens, 0, (uint32_t)j->n_tokens};
    sipp_stats st = {.struct_size = sizeof st};
    st.queue_ms = t0 - j->t_submit;
    st.prefill_ms = t1 - t0;
    st.prefill_tok_s = st.prefill_ms > 0 ? j->n_tokens / (st.prefill_ms / 1e3) : 0;
    st.prefill_tokens = (uint32_t)j->n_tokens;
    st.total_ms = t1 - j->t_submit;
    pthread_mutex_lock(&e->stats_mu);
    e->stats.prompt_tokens += (uint64_t)j->n_tokens;
    pthread_mutex_unlock(&e->stats_mu);
    sipp__run_set_embedding(j->run, vec, n, j->normalize);
    sipp__engine_finish_job(e, j, SIPP_OK, NULL, SIPP_FINISH_STOP, &u, &st);
}

/* Appends one row to the plan. */
static void batch_add(sipp__plan *b, llama_token tok, llama_pos pos, llama_seq_id seq,
                      bool logits) {
    int32_t i = b->n_tokens++;
    b->token[i] = tok;
    b->pos[i] = pos;
    b->seq_id[i] = seq;
    b->logits[i] = logits;
    b->out_row[i] = logits ? b->n_outputs++ : -1;
}

void sipp__job_deadline_message(const job *j, char *buf, size_t cap) {
    snprintf(buf, cap, "deadline of %u ms exceeded", j->timeout_ms);
}

/* Ends sequences that were cancelled or ran past their deadline. */
static void reap_slots(sipp__engine *e, double now) {
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        if (s->state == SLOT_FREE) continue;
        if (sipp__run_cancel_requested(s->job->run)) {
            sipp__slot_flush_held(s);
            sipp__slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_CANCELLED);
        } else if (s->job->deadline > 0 && now >= s->job->deadline) {
            char msg[64];
            sipp__job_deadline_message(s->job, msg, sizeof msg);
            sipp__slot_flush_held(s);
            sipp__slot_finish(e, s, SIPP_DEADLINE_EXCEEDED, msg, SIPP_FINISH_NONE);
        }
    }
}

/* Log-probabilities (issue 18): stages the entry of the token just sampled for slot s, from
 * the softmax of the raw logits of its batch row over the whole vocabulary (llama-server's
 * default, n_probs without post_sampling_probs): before penalties, temperature, truncation and
 * grammar. log p(t) = logit(t) - logsumexp(logits), summed in double. The top N come from one
 * pass with an insertion-sorted array of N <= 20. End-of-generation tokens get no entry (their
 * text never reaches the caller). Allocates (the entry's copy in the run) only when asked for. */
static void stage_logprobs(sipp__engine *e, slot *s, const float *logits, llama_token tok) {
    int32_t n_vocab = e->n_vocab;
    if (!logits || n_vocab <= 0 || llama_vocab_is_eog(e->vocab, tok)) return;
    uint32_t n_top = s->job->top_logprobs;
    llama_token ids[SIPP_MAX_TOP_LOGPROBS];
    float vals[SIPP_MAX_TOP_LOGPROBS];
    uint32_t have = 0;
    float max = -INFINITY;
    for (int32_t t = 0; t < n_vocab; t++) {
        float v = logits[t];
        if (v > max) max = v;
        if (n_top == 0 || (have == n_top && !(v > vals[have - 1]))) continue;
        uint32_t k = have < n_top ? have++ : have - 1; /* the slot to fill, then sift up */
        while (k > 0 && v > vals[k - 1]) {
            ids[k] = ids[k - 1];
            vals[k] = vals[k - 1];
            k--;
        }
        ids[k] = t;
        vals[k] = v;
    }
    double sum = 0;
    for (int32_t t = 0; t < n_vocab; t++) sum += exp((double)logits[t] - max);
    double lse = (double)max + log(sum);
    /* pieces: the chosen token's, then each alternative's, side by side in e->lp_text */
    sipp_top_logprob top[SIPP_MAX_TOP_LOGPROBS];
    size_t used = 0;
    const size_t piece_cap = sizeof e->lp_text / (SIPP_MAX_TOP_LOGPROBS + 1);
    for (uint32_t i = 0; i <= have; i++) {
        llama_token id = i == 0 ? tok : ids[i - 1];
        int32_t n = llama_token_to_piece(e->vocab, id, e->lp_text + used, (int32_t)piece_cap, 0,
                                         false);
        if (n < 0) n = 0; /* longer than piece_cap: no real vocabulary has one */
        if (i > 0)
            top[i - 1] = (sipp_top_logprob){e->lp_text + used, (size_t)n,
                                            (float)((double)vals[i - 1] - lse)};
        used += (size_t)n;
    }
    float lp = (float)((double)logits[tok] - lse);
    size_t tok_len = have ? (size_t)(top[0].token - e->lp_text) : used;
    /* OOM drops the entry; the text goes on and the caller sees fewer entries than tokens */
    (void)sipp__run_stage_logprob(s->job->run, e->lp_text, tok_len, lp > 0 ? 0 : lp, top, have);
}

/* Plans one batch (the plan step). Returns false when there is nothing to run; *did_media
 * says whether media chunks went into a sequence while planning (their own forwards, media.c),
 * which is work done even when the plan is empty. */
static bool tick_plan(sipp__engine *e, bool *did_media) {
    sipp__plan *b = &e->batch;
    b->n_tokens = b->n_outputs = 0;
    uint32_t n_prefilling = 0;
    bool did = false;
    reap_slots(e, sipp__now_ms());

    /* Decode first: every ready sequence contributes its next token, unless its consumer
     * lags (its run holds stream_cap bytes unread): that sequence pauses, the others go on. */
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        s->i_batch = -1;
        s->n_in_batch = 0;
        if (s->state == SLOT_PREFILL) n_prefilling++;
        if (s->state != SLOT_DECODE) continue;
        if (sipp__run_backlog(s->job->run) >= e->stream_cap) continue;
        s->i_batch = b->n_tokens;
        s->n_in_batch = 1;
        s->cached[s->n_past] = s->next;
        batch_add(b, s->next, s->n_past, s->seq, true);
    }

    /* Prefill: the tick's prompt budget, shared round-robin among prefilling sequences. While
     * other sequences decode, the budget is what the cost model predicts fits in the ITL target
     * beside their tokens (prefill_budget.h), and prefill_chunk, when set, caps each prompt's
     * share; with nobody decoding a prompt takes the whole tick_budget. */
    uint32_t n_decoding = (uint32_t)b->n_tokens;
    uint32_t budget = n_prefilling ? sipp__pfb_budget(&e->pfb, n_decoding, e->tick_budget) : 0;
    uint32_t chunk = n_decoding > 0 && e->prefill_chunk ? e->prefill_chunk : e->tick_budget;
    for (uint32_t k = 0, seen = 0; k < e->n_parallel && seen < n_prefilling && budget > 0; k++) {
        slot *s = &e->slots[(e->rr + k) % e->n_parallel];
        if (s->state != SLOT_PREFILL) continue;
        uint32_t share = budget / (n_prefilling - seen);
        if (share == 0) share = 1;
        if (share > chunk) share = chunk;
        seen++;
        if (s->job->media) { /* media chunks are their own decode, then text goes on */
            int r = sipp__media_eval(e, s);
            if (r < 0) continue;
            did |= r > 0;
        }
        uint32_t left = (uint32_t)sipp__media_text_run(s->job, s->n_prefilled);
        uint32_t take = left < share ? left : share;
        for (uint32_t t = 0; t < take; t++) {
            int32_t pos = s->n_prefilled + (int32_t)t;
            bool last = pos == s->job->n_tokens - 1;
            if (last) s->i_batch = b->n_tokens;
            s->cached[pos] = s->job->tokens[pos];
            batch_add(b, s->job->tokens[pos], pos, s->seq, last);
        }
        s->n_in_batch = (int32_t)take;
        budget -= take;
    }
    e->rr = e->n_parallel ? (e->rr + 1) % e->n_parallel : 0;
    *did_media = did;
    return b->n_tokens > 0;
}

/* Samples and accepts the forward's result for every sequence in the plan (the sample step). */
static void tick_accept(sipp__engine *e, const sipp__fwd_result *res) {
    const sipp__plan *b = &e->batch;
    int rc = res->rc;
    if (rc != 0) {
        char msg[96];
        if (e->external) snprintf(msg, sizeof msg, "the backend's forward failed (%d)", rc);
        else snprintf(msg, sizeof msg, "llama_decode failed (%d)", rc);
        for (uint32_t i = 0; i < e->n_parallel; i++) {
            slot *s = &e->slots[i];
            if (s->state != SLOT_FREE && s->n_in_batch > 0)
                sipp__slot_finish(e, s, SIPP_INTERNAL, msg, SIPP_FINISH_NONE);
        }
        return;
    }
    double now = sipp__now_ms();
    uint32_t n_prompt = 0, n_generated = 0;
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        s->kv_copy_pending = false; /* a forward ran llama.cpp's pending sequence copies */
        if (s->state == SLOT_FREE || s->n_in_batch == 0) continue;
        s->n_past += s->n_in_batch;
        if (s->state == SLOT_PREFILL) {
            s->n_prefilled += s->n_in_batch;
            n_prompt += (uint32_t)s->n_in_batch;
            if (s->n_prefilled < s->job->n_tokens) continue;
            s->t_prefilled = now;
        }
        const float *row = res->logits + (size_t)b->out_row[s->i_batch] * (size_t)e->n_vocab;
        llama_token tok = sipp__engine_sample(e, s->job->sampler, row);
        if (s->job->logprobs) stage_logprobs(e, s, row, tok);
        n_generated++;
        sipp__slot_accept(e, s, tok, now);
    }
    /* what this tick cost, from the forward's start (an external backend: its commit, then
     * resume) through sampling, as a decoding sequence's consumer sees it */
    sipp__pfb_observe(&e->pfb, (uint32_t)b->n_tokens, sipp__now_ms() - e->t_forward);
    pthread_mutex_lock(&e->stats_mu);
    e->stats.ticks++;
    e->stats.batch_tokens += (uint64_t)b->n_tokens;
    e->stats.prompt_tokens += n_prompt;
    e->stats.generated_tokens += n_generated;
    pthread_mutex_unlock(&e->stats_mu);
}

/* plan -> forward -> sample and accept. */
bool sipp__engine_tick(sipp__engine *e) {
    bool did_media = false;
    if (!tick_plan(e, &did_media)) return did_media;
    sipp__fwd_result res;
    e->t_forward = sipp__now_ms();
    if (sipp__engine_forward(e, &res)) tick_accept(e, &res);
    return true;
}

bool sipp__engine_resume(sipp__engine *e) {
    if (!e->fwd_pending) return true;
    pthread_mutex_lock(&e->mu);
    bool done = e->fwd_committed;
    sipp__fwd_result res = e->fwd_res;
    pthread_mutex_unlock(&e->mu);
    if (!done) return false;
    e->fwd_pending = false;
    tick_accept(e, &res);
    return true;
}
