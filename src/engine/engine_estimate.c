/*
 * engine_estimate.c — what the local engine can say about a request before running it
 * (sipp_estimate_query/chat): its exact token count, how much of it is cached for its context
 * key (live in a sequence, or as a snapshot in RAM or on disk) and the engine's load.
 *
 * Threads: estimates run on the caller's thread. The slots belong to the engine thread, so it
 * publishes what each slot holds into `warm` (under warm_mu) when a run starts on the slot (the
 * prompt it is filling the sequence with) and when it ends (what stays cached under the key);
 * snapshots are searched with sipp__kvstore_peek. The figures are what a submission made at
 * the same moment would find, give or take runs that start or end in between.
 *
 * Tokenizing once: the estimate keeps the tokens of the prompt it tokenized; a submission of the
 * same text on the same engine takes them instead of tokenizing again (one entry per engine).
 */
#define _GNU_SOURCE
#include "engine_int.h"
#include "engine_state.h"
#include "kvstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sipp__warm_view {
    char *key; /* NULL: nothing reusable in this slot */
    size_t key_len;
    llama_token *tokens; /* n_ctx_seq capacity */
    uint32_t n;
};

sipp_status sipp__job_key(const sipp_text_params *p, char **key, size_t *key_len) {
    *key = NULL;
    *key_len = 0;
    if (!p->context_key) return SIPP_OK;
    /* The scope's length goes first, so no (scope, key) pair can collide with another. */
    const char *scope = p->cache_scope ? p->cache_scope : "";
    int n = asprintf(key, "%zu:%s%s", strlen(scope), scope, p->context_key);
    if (n < 0) {
        *key = NULL;
        return SIPP_OUT_OF_MEMORY;
    }
    *key_len = (size_t)n;
    return SIPP_OK;
}

sipp_status sipp__estimate_state_init(sipp__engine *e) {
    pthread_mutex_init(&e->warm_mu, NULL);
    e->warm = calloc(e->n_parallel ? e->n_parallel : 1, sizeof *e->warm);
    if (!e->warm) return SIPP_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < e->n_parallel; i++)
        if (!(e->warm[i].tokens = malloc(e->n_ctx_seq * sizeof(llama_token))))
            return SIPP_OUT_OF_MEMORY;
    return SIPP_OK;
}

void sipp__estimate_state_free(sipp__engine *e) {
    if (e->warm) {
        for (uint32_t i = 0; i < e->n_parallel; i++) {
            free(e->warm[i].key);
            free(e->warm[i].tokens);
        }
        free(e->warm);
        e->warm = NULL;
        pthread_mutex_destroy(&e->warm_mu);
    }
    free(e->est_prompt);
    free(e->est_tokens);
}

void sipp__warm_publish(sipp__engine *e, const slot *s, const char *key, size_t key_len,
                        const llama_token *tokens, uint32_t n) {
    if (!e->warm) return;
    struct sipp__warm_view *w = &e->warm[s->seq];
    char *copy = key ? malloc(key_len + 1) : NULL;
    if (copy) {
        memcpy(copy, key, key_len);
        copy[key_len] = '\0';
    }
    if (n > e->n_ctx_seq) n = e->n_ctx_seq;
    pthread_mutex_lock(&e->warm_mu);
    free(w->key);
    w->key = copy; /* out of memory: the slot just looks cold to estimates */
    w->key_len = copy ? key_len : 0;
    w->n = copy ? n : 0;
    if (copy) memcpy(w->tokens, tokens, n * sizeof(llama_token));
    pthread_mutex_unlock(&e->warm_mu);
}

bool sipp__estimate_take_tokens(sipp__engine *e, const char *prompt, llama_token **tokens,
                                int32_t *n) {
    bool hit = false;
    pthread_mutex_lock(&e->warm_mu);
    if (e->est_prompt && strcmp(e->est_prompt, prompt) == 0) {
        *tokens = e->est_tokens;
        *n = e->n_est_tokens;
        free(e->est_prompt);
        e->est_prompt = NULL;
        e->est_tokens = NULL;
        hit = true;
    }
    pthread_mutex_unlock(&e->warm_mu);
    return hit;
}

/* Keeps `tokens` (a copy) for the submission of `prompt` that may follow. */
static void keep_tokens(sipp__engine *e, const char *prompt, const llama_token *tokens, int32_t n) {
    char *p = strdup(prompt);
    llama_token *t = malloc((size_t)n * sizeof *t);
    if (!p || !t) {
        free(p);
        free(t);
        return;
    }
    memcpy(t, tokens, (size_t)n * sizeof *t);
    pthread_mutex_lock(&e->warm_mu);
    free(e->est_prompt);
    free(e->est_tokens);
    e->est_prompt = p;
    e->est_tokens = t;
    e->n_est_tokens = n;
    pthread_mutex_unlock(&e->warm_mu);
}

sipp_status sipp__engine_estimate(sipp__engine *e, const char *prompt, const sipp_text_params *p,
                                  sipp_estimate *out, sipp_error *err) {
    out->local = true;
    out->n_ctx = e->n_ctx_seq;
    size_t len = strlen(prompt);
    if (len > (size_t)INT32_MAX / 2)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "input of %zu bytes is too long", len);
    /* One token per byte at most (+ BOS/EOS): never too small, never a second pass. */
    int32_t cap = (int32_t)len + 8;
    llama_token *toks = malloc((size_t)cap * sizeof *toks);
    if (!toks) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    int32_t n = llama_tokenize(e->vocab, prompt, (int32_t)len, toks, cap, true, true);
    if (n <= 0) {
        free(toks);
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "the input produced no tokens");
    }
    out->prompt_tokens = (uint32_t)n;
    if ((uint32_t)n < e->n_ctx_seq) keep_tokens(e, prompt, toks, n);

    char *key = NULL;
    size_t key_len = 0;
    if (sipp__job_key(p, &key, &key_len) != SIPP_OK) {
        free(toks);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    uint32_t cached = 0;
    sipp_cache_source source = SIPP_CACHE_NONE;
    bool on_disk = false;
    if (key) {
        pthread_mutex_lock(&e->warm_mu);
        for (uint32_t i = 0; i < e->n_parallel; i++) {
            const struct sipp__warm_view *w = &e->warm[i];
            if (!w->key || w->key_len != key_len || memcmp(w->key, key, key_len) != 0) continue;
            uint32_t m = w->n < (uint32_t)n ? w->n : (uint32_t)n, k = 0;
            while (k < m && w->tokens[k] == toks[k]) k++;
            /* A model whose state cannot be cut back reuses only a whole cached sequence. */
            if (!e->partial_reuse && k < w->n) continue;
            if (k > cached) {
                cached = k;
                source = SIPP_CACHE_LIVE;
            }
        }
        pthread_mutex_unlock(&e->warm_mu);
        if (e->kv) {
            bool disk = false;
            uint32_t k = sipp__kvstore_peek(e->kv, key, key_len, toks, (uint32_t)n,
                                            !e->partial_reuse, &disk);
            if (k > cached) {
                cached = k;
                source = SIPP_CACHE_SNAPSHOT;
                on_disk = disk;
            }
        }
    }
    /* The last prompt token is always computed again: its logits start the generation. */
    if (cached >= (uint32_t)n) cached = (uint32_t)n - 1;
    if (cached == 0) source = SIPP_CACHE_NONE;
    out->cached_tokens = cached;
    out->cache_source = source;
    out->cache_on_disk = source == SIPP_CACHE_SNAPSHOT && on_disk;
    out->prefill_tokens = (uint32_t)n - cached;
    free(key);
    free(toks);

    sipp_engine_stats s = {.struct_size = sizeof s};
    sipp__engine_get_stats(e, &s);
    out->running = s.running;
    out->queued = s.queued;
    uint32_t most = e->max_running < e->n_parallel ? e->max_running : e->n_parallel;
    out->free_slots = s.queued == 0 && s.running < most ? most - s.running : 0;
    out->loaded = true;
    out->healthy = !s.stalled;
    return SIPP_OK;
}
