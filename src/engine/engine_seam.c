/*
 * engine_seam.c — the engine's side of the compute seam (backend.h): handing a plan to the
 * backend, waiting for or taking back a forward that completes later, and sampling from the
 * logits any backend returns.
 *
 * Threads: sipp__engine_forward and sipp__engine_sample run on the engine thread;
 * sipp__engine_commit on any thread (an external backend's worker, the JavaScript host).
 * `fwd_committed` and `fwd_res` are under e->mu, and a commit wakes the engine thread through
 * e->cv. A native engine thread blocks in sipp__engine_forward until the commit (a close waits
 * for it too: an external backend must commit every forward it accepted); in manual mode
 * forward returns at once and sipp__engine_resume (engine_tick.c) completes the tick on a
 * later step.
 */
#include "engine_state.h"

bool sipp__engine_forward(sipp__engine *e, sipp__fwd_result *res) {
    if (!e->external) return e->be.forward(e->be.state, e, &e->batch, res);
    pthread_mutex_lock(&e->mu);
    e->fwd_committed = false;
    pthread_mutex_unlock(&e->mu);
    e->fwd_pending = true;
    if (e->be.forward(e->be.state, e, &e->batch, res)) {
        e->fwd_pending = false;
        return true;
    }
#ifdef SIPP_ENGINE_MANUAL
    return false;
#else
    pthread_mutex_lock(&e->mu);
    while (!e->fwd_committed) pthread_cond_wait(&e->cv, &e->mu);
    *res = e->fwd_res;
    pthread_mutex_unlock(&e->mu);
    e->fwd_pending = false;
    return true;
#endif
}

void sipp__engine_commit(sipp__engine *e, int rc, const float *logits) {
    pthread_mutex_lock(&e->mu);
    e->fwd_res = (sipp__fwd_result){.rc = rc, .logits = logits};
    if (rc == 0 && !logits && e->batch.n_outputs > 0) e->fwd_res.rc = -1; /* no logits came */
    e->fwd_committed = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

llama_token sipp__engine_sample(sipp__engine *e, struct llama_sampler *smpl, const float *row) {
    for (int32_t t = 0; t < e->n_vocab; t++) e->cur[t] = (llama_token_data){t, row[t], 0.0f};
    llama_token_data_array cur = {e->cur, (size_t)e->n_vocab, -1, false};
    llama_sampler_apply(smpl, &cur);
    if (cur.selected < 0 || (size_t)cur.selected >= cur.size) cur.selected = 0; /* every chain
        the engine builds ends in a selecting sampler; never index out of the array */
    llama_token tok = cur.data[cur.selected].id;
    llama_sampler_accept(smpl, tok);
    return tok;
}
