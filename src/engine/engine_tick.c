/*
 * engine_tick.c — the tick: one llama_batch for every running sequence, and embeddings.
 *
 * Thread: the engine thread only. Each tick drops cancelled and expired sequences, then
 * builds one batch: the next token of every decoding sequence first (unless its consumer lags
 * by stream_cap bytes: it pauses, the others go on), then prompt chunks of prefilling
 * sequences, shared round-robin within the tick's prefill budget (chosen from the ITL target by
 * prefill_budget.c, which learns from each tick's time); decodes it and samples one
 * token per sequence with logits. Invariants: a tick allocates nothing on the heap (the batch
 * is allocated at open); a failed decode ends only the sequences that were in the batch.
 * Sequence ids: slot i uses seq i; seq n_parallel is for embeddings (seq 0 for an
 * embedding-only model, which has no slots).
 */
#include "engine_state.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void sipp__engine_run_embed(sipp__engine *e, job *j) {
    double t0 = sipp__now_ms();
    llama_seq_id seq = (llama_seq_id)e->n_parallel;
    struct llama_batch *b = &e->batch;
    b->n_tokens = 0;
    for (int32_t i = 0; i < j->n_tokens; i++) {
        b->token[i] = j->tokens[i];
        b->pos[i] = i;
        b->n_seq_id[i] = 1;
        b->seq_id[i][0] = seq;
        b->logits[i] = 1;
    }
    b->n_tokens = j->n_tokens;
    if (!e->embed_only) llama_set_embeddings(e->ctx, true);
    int rc = e->embed_only && llama_model_has_encoder(e->model) ? llama_encode(e->ctx, *b)
                                                                : llama_decode(e->ctx, *b);
    const float *v = rc == 0 ? llama_get_embeddings_seq(e->ctx, seq) : NULL;
    uint32_t n = e->info.n_embd;
    float *vec = v ? malloc(n * sizeof *vec) : NULL;
    if (vec) {
        double norm = 0;
        for (uint32_t i = 0; i < n; i++) norm += (double)v[i] * v[i];
        norm = sqrt(norm);
        for (uint32_t i = 0; i < n; i++)
            vec[i] = j->normalize && norm > 0 ? (float)(v[i] / norm) : v[i];
    }
    if (!e->embed_only) llama_set_embeddings(e->ctx, false);
    llama_memory_t mem = llama_get_memory(e->ctx);
    if (mem) llama_memory_seq_rm(mem, seq, -1, -1);
    b->n_tokens = 0;

    if (!vec) {
        char msg[96];
        snprintf(msg, sizeof msg, "embedding failed (llama.cpp returned %d)", rc);
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

static void batch_add(struct llama_batch *b, llama_token tok, llama_pos pos, llama_seq_id seq,
                      bool logits) {
    int32_t i = b->n_tokens++;
    b->token[i] = tok;
    b->pos[i] = pos;
    b->n_seq_id[i] = 1;
    b->seq_id[i][0] = seq;
    b->logits[i] = logits;
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

/* Builds and decodes one batch. Returns false when there was nothing to decode. */
bool sipp__engine_tick(sipp__engine *e) {
    struct llama_batch *b = &e->batch;
    b->n_tokens = 0;
    uint32_t n_prefilling = 0;
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
        uint32_t left = (uint32_t)(s->job->n_tokens - s->n_prefilled);
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
    if (b->n_tokens == 0) return false;

    double t_tick = sipp__now_ms();
    int rc = llama_decode(e->ctx, *b);
    if (rc != 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "llama_decode failed (%d)", rc);
        for (uint32_t i = 0; i < e->n_parallel; i++) {
            slot *s = &e->slots[i];
            if (s->state != SLOT_FREE && s->n_in_batch > 0)
                sipp__slot_finish(e, s, SIPP_INTERNAL, msg, SIPP_FINISH_NONE);
        }
        return true;
    }
    double now = sipp__now_ms();
    uint32_t n_prompt = 0, n_generated = 0;
    for (uint32_t i = 0; i < e->n_parallel; i++) {
        slot *s = &e->slots[i];
        s->kv_copy_pending = false; /* a decode ran llama.cpp's pending sequence copies */
        if (s->state == SLOT_FREE || s->n_in_batch == 0) continue;
        s->n_past += s->n_in_batch;
        if (s->state == SLOT_PREFILL) {
            s->n_prefilled += s->n_in_batch;
            n_prompt += (uint32_t)s->n_in_batch;
            if (s->n_prefilled < s->job->n_tokens) continue;
            s->t_prefilled = now;
        }
        llama_token tok = llama_sampler_sample(s->job->sampler, e->ctx, s->i_batch);
        n_generated++;
        sipp__slot_accept(e, s, tok, now);
    }
    /* what this tick cost, decode and sampling, as a decoding sequence's consumer sees it */
    sipp__pfb_observe(&e->pfb, (uint32_t)b->n_tokens, sipp__now_ms() - t_tick);
    pthread_mutex_lock(&e->stats_mu);
    e->stats.ticks++;
    e->stats.batch_tokens += (uint64_t)b->n_tokens;
    e->stats.prompt_tokens += n_prompt;
    e->stats.generated_tokens += n_generated;
    pthread_mutex_unlock(&e->stats_mu);
    return true;
}
