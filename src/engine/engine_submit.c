/*
 * engine_submit.c — submission: how a request becomes a job on the engine's queue.
 *
 * Thread: the caller's (any thread, concurrently). Everything that can fail is done here, so
 * errors are synchronous: tokenizing (bounded by the context before anything proportional to
 * the input is allocated), the grammar/schema depth caps, building the sampler chain, the
 * chat template's render (under templates_mu) and the special-token check of chat content.
 * Invariants: a submission touches only immutable engine fields and, under `mu`, the queue;
 * once enqueued a job belongs to the engine thread. If a submit fails, the run's callback
 * never runs.
 */
#define _GNU_SOURCE
#include "engine_state.h"
#include "media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PENALTY_LAST_N 64
#define MAX_GRAMMAR_DEPTH 128 /* nested GBNF groups */
#define MAX_SCHEMA_DEPTH 128  /* nested JSON objects/arrays of a json_schema */

void sipp__job_free(job *j) {
    if (!j) return;
    free(j->key);
    free(j->tokens);
    sipp__media_prompt_free(j->media);
    if (j->sampler) llama_sampler_free(j->sampler);
    sipp__chat_parser_free(j->parser);
    free(j->preserved);
    for (size_t i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j);
}

static void engine_wake(void *producer) {
    sipp__engine *e = producer;
    pthread_mutex_lock(&e->mu);
    e->woken = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* Tokenizes `text` into a malloc'd array of at most `limit` tokens: a text of more tokens
 * fails with CONTEXT_OVERFLOW (its count in *n_out) and never gets a buffer of its size, so a
 * huge input is refused before anything proportional to it is allocated here. */
static sipp_status tokenize(sipp__engine *e, const char *text, uint32_t limit, llama_token **out,
                            int32_t *n_out, sipp_error *err) {
    size_t len = strlen(text);
    if (len > (size_t)INT32_MAX / 2)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "input of %zu bytes is too long", len);
    int32_t cap = (int32_t)len + 8;
    if ((uint32_t)cap > limit) cap = (int32_t)limit;
    llama_token *toks = malloc((size_t)cap * sizeof *toks);
    if (!toks) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    int32_t n = llama_tokenize(e->vocab, text, (int32_t)len, toks, cap, true, true);
    if (n < 0) { /* -n tokens, more than the limit */
        free(toks);
        *n_out = -n;
        return SIPP_CONTEXT_OVERFLOW;
    }
    if (n <= 0) {
        free(toks);
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "the input produced no tokens");
    }
    *out = toks;
    *n_out = n;
    return SIPP_OK;
}

/* `chat_grammar` (a chat's tool-call grammar, or NULL) goes first in the chain, then `budget`
 * (llama.cpp's reasoning-budget sampler, or NULL); the chain owns both from here on, even on
 * failure. */
static struct llama_sampler *build_sampler(sipp__engine *e, const sipp_text_params *p,
                                           const char *grammar,
                                           struct llama_sampler *chat_grammar,
                                           struct llama_sampler *budget, sipp_error *err) {
    struct llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf = true;
    struct llama_sampler *chain = llama_sampler_chain_init(cp);
    if (chat_grammar) llama_sampler_chain_add(chain, chat_grammar);
    if (budget) llama_sampler_chain_add(chain, budget);
    if (grammar) {
        struct llama_sampler *g = llama_sampler_init_grammar(e->vocab, grammar, "root");
        if (!g) {
            llama_sampler_free(chain);
            sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                       "the grammar does not parse (GBNF with a 'root' rule expected)");
            return NULL;
        }
        llama_sampler_chain_add(chain, g);
    }
    if (p->ignore_eos && e->n_eog > 0)
        llama_sampler_chain_add(chain, llama_sampler_init_logit_bias(llama_vocab_n_tokens(e->vocab),
                                                                     e->n_eog, e->eog_bias));
    if (p->repeat_penalty != 1.0f)
        llama_sampler_chain_add(chain,
                                llama_sampler_init_penalties(llama_vocab_n_tokens(e->vocab), PENALTY_LAST_N, p->repeat_penalty,
                                                             0.0f, 0.0f));
    if (p->temperature <= 0.0f) {
        llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    } else {
        if (p->top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(p->top_k));
        if (p->top_p < 1.0f) llama_sampler_chain_add(chain, llama_sampler_init_top_p(p->top_p, 1));
        if (p->min_p > 0.0f) llama_sampler_chain_add(chain, llama_sampler_init_min_p(p->min_p, 1));
        llama_sampler_chain_add(chain, llama_sampler_init_temp(p->temperature));
        llama_sampler_chain_add(chain, llama_sampler_init_dist(p->seed));
    }
    return chain;
}

/* Appends a job and wakes the engine; BUSY when the queue is full. Takes ownership of j. */
static sipp_status enqueue(sipp__engine *e, job *j, sipp_error *err) {
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        return sipp__fail(err, SIPP_CLOSED, 0, "the endpoint is closing");
    }
    if (e->n_queued >= e->max_queued) {
        pthread_mutex_unlock(&e->mu);
        pthread_mutex_lock(&e->stats_mu);
        e->stats.rejected_busy++;
        pthread_mutex_unlock(&e->stats_mu);
        return sipp__fail(err, SIPP_BUSY, 0,
                          "busy: %u requests are already waiting (max_queued); retry later",
                          e->max_queued);
    }
    if (e->queue_tail)
        e->queue_tail->next = j;
    else
        e->queue_head = j;
    e->queue_tail = j;
    e->n_queued++;
    e->n_live++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return SIPP_OK;
}

static sipp_status finish_submit(sipp__engine *e, job *j, sipp_token_fn cb, void *ud,
                                 sipp_run **out, sipp_error *err) {
    j->run = sipp__run_new(cb, ud);
    if (!j->run) {
        sipp__job_free(j);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    sipp__run_set_waker(j->run, engine_wake, e);
    sipp_run *run = j->run;
    j->t_submit = sipp__now_ms();
    if (j->timeout_ms) j->deadline = j->t_submit + j->timeout_ms;
    sipp_status st = enqueue(e, j, err);
    if (st != SIPP_OK) {
        /* No callback will ever run: finish and drop both references. */
        j->run = NULL;
        sipp__job_free(j);
        sipp__run_discard(run, st);
        return st;
    }
    *out = run;
    return SIPP_OK;
}

/* A json_schema to GBNF: the depth cap before llama.cpp's recursive converter sees it, then
 * the conversion; a schema it cannot enforce is INVALID_ARGUMENT with its reason. */
static sipp_status schema_grammar(const char *schema, char **out, sipp_error *err) {
    if (sipp__nesting_depth(schema, false, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "json_schema: nested deeper than %d levels", MAX_SCHEMA_DEPTH);
    char msg[SIPP_ERROR_MESSAGE_CAP];
    if (sipp__json_schema_to_grammar(schema, out, msg, sizeof msg) != 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "json_schema: %s", msg);
    return SIPP_OK;
}

sipp_status sipp__engine_check_schema(const char *schema, sipp_error *err) {
    char *grammar = NULL;
    sipp_status st = schema_grammar(schema, &grammar, err);
    free(grammar);
    return st;
}


/* A query (pr NULL) or a prepared chat, whose grammar, parser, preserved tokens and stops the
 * job takes (the fields taken are set to NULL in *pr). */
static sipp_status submit_text(sipp__engine *e, const char *prompt, const sipp_text_params *p,
                               sipp__chat_prepared *pr, sipp_run **out, sipp_error *err) {
    if (e->embed_only)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "query/chat: '%s' is an embedding model and cannot generate text",
                          e->info.architecture);
    sipp_status st = sipp__text_params_check(p, err);
    if (st != SIPP_OK) return st;

    /* Depth caps before anything recursive sees the text: llama.cpp's GBNF parser recurses
     * once per group and the schema converter once per JSON level. */
    if (p->grammar && sipp__nesting_depth(p->grammar, true, MAX_GRAMMAR_DEPTH) > MAX_GRAMMAR_DEPTH)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "grammar: groups nested deeper than %d", MAX_GRAMMAR_DEPTH);
    char *from_schema = NULL;
    if (p->json_schema && (st = schema_grammar(p->json_schema, &from_schema, err)) != SIPP_OK)
        return st;
    job *j = calloc(1, sizeof *j);
    if (!j) {
        free(from_schema);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    j->kind = JOB_TEXT;
    j->max_tokens = p->max_tokens;
    j->timeout_ms = p->timeout_ms;
    j->logprobs = p->logprobs;
    j->top_logprobs = p->top_logprobs;
    if (sipp__job_key(p, &j->key, &j->key_len) != SIPP_OK) {
        sipp__job_free(j);
        free(from_schema);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    if (p->n_media > 0) /* media.c: mtmd's tokenizer; it checks the context itself */
        st = sipp__media_tokenize(e, prompt, p->media, p->n_media, "request", j, err);
    /* An estimate of the same text just tokenized it (engine_estimate.c): take its tokens. */
    else if (!sipp__estimate_take_tokens(e, prompt, &j->tokens, &j->n_tokens))
        st = tokenize(e, prompt, e->n_ctx_seq, &j->tokens, &j->n_tokens, err);
    if (p->n_media == 0 &&
        (st == SIPP_CONTEXT_OVERFLOW || (st == SIPP_OK && (uint32_t)j->n_tokens >= e->n_ctx_seq)))
        st = sipp__fail(err, SIPP_CONTEXT_OVERFLOW, 0,
                        "the prompt is too long: n_prompt_tokens = %d, n_ctx = %u (the context "
                        "must hold the prompt plus at least one generated token)",
                        j->n_tokens, e->n_ctx_seq);
    if (st == SIPP_OK) {
        struct llama_sampler *chat_grammar = pr ? pr->grammar : NULL;
        struct llama_sampler *budget = pr ? pr->budget : NULL;
        if (pr) pr->grammar = pr->budget = NULL;
        j->sampler = build_sampler(e, p, from_schema ? from_schema : p->grammar,
                                   chat_grammar, budget, err);
        if (!j->sampler) st = err ? err->code : SIPP_INVALID_ARGUMENT;
    }
    free(from_schema);
    for (size_t i = 0; st == SIPP_OK && i < p->n_stop; i++) {
        j->stop[i] = sipp__strdup(p->stop[i]);
        if (!j->stop[i]) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        j->n_stop = i + 1;
    }
    /* the template's own stops, as far as the table goes */
    for (size_t i = 0; st == SIPP_OK && pr && i < pr->n_stops && j->n_stop < SIPP_MAX_STOP_STRINGS;
         i++) {
        j->stop[j->n_stop] = pr->stops[i];
        pr->stops[i] = NULL;
        j->n_stop++;
    }
    if (st != SIPP_OK) {
        sipp__job_free(j);
        return st;
    }
    if (pr) {
        j->parser = pr->parser;
        pr->parser = NULL;
        j->preserved = pr->preserved;
        j->n_preserved = pr->n_preserved;
        pr->preserved = NULL;
        pr->n_preserved = 0;
    }
    bool delta_fn = pr && p->on_delta;
    st = finish_submit(e, j, p->on_tokens, p->user_data, out, err);
    if (st == SIPP_OK && delta_fn) sipp__run_set_delta_fn(*out, p->on_delta, p->delta_user_data);
    return st;
}

sipp_status sipp__engine_submit_text(sipp__engine *e, const char *prompt,
                                     const sipp_text_params *p, sipp_run **out, sipp_error *err) {
    return submit_text(e, prompt, p, NULL, out, err);
}

sipp_status sipp__job_emit_delta(void *user_data, sipp_delta_kind kind, uint32_t tool_index,
                                 const char *tool_id, const char *tool_name, const char *text,
                                 size_t len) {
    sipp__job_emit *em = user_data;
    uint32_t n_tokens = em->n_tokens;
    em->n_tokens = 0;
    return sipp__run_push_delta(em->run, kind, tool_index, tool_id, tool_name, text, len, n_tokens);
}

/* Refuses text that spells one of the model's special tokens (see sipp__engine_render_chat). */
static sipp_status check_special(sipp__engine *e, const char *text, size_t i, const char *what,
                                 sipp_error *err) {
    if (!text) return SIPP_OK;
    for (int32_t k = 0; k < e->n_special; k++) {
        const char *tok = llama_vocab_get_text(e->vocab, e->special[k]);
        if (strstr(text, tok))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "chat: messages[%zu] %s contains the special token text '%.32s'; "
                              "message content may not spell the model's special tokens",
                              i, what, tok);
    }
    return SIPP_OK;
}

sipp_status sipp__engine_submit_chat(sipp__engine *e, const sipp_chat_message *messages, size_t n,
                                     const sipp_text_params *p, sipp_run **out, sipp_error *err) {
    if (!e->templates && e->template_error[0])
        return sipp__fail(err, SIPP_UNSUPPORTED, 0, "chat: %s", e->template_error);
    if (!e->templates)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "chat: the model has no chat template; use query for raw prompts");
    if (e->embed_only)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "query/chat: '%s' is an embedding model and cannot generate text",
                          e->info.architecture);
    sipp_status st = SIPP_OK;
    for (size_t i = 0; st == SIPP_OK && i < n; i++) {
        st = check_special(e, messages[i].content, i, "content", err);
        if (st == SIPP_OK) st = check_special(e, messages[i].reasoning, i, "reasoning", err);
        for (size_t k = 0; st == SIPP_OK && k < messages[i].n_tool_calls; k++)
            st = check_special(e, messages[i].tool_calls[k].arguments, i, "tool call arguments",
                               err);
    }
    if (st != SIPP_OK) return st;
    char msg[SIPP_ERROR_MESSAGE_CAP];
    sipp__chat_prepared pr;
    pthread_mutex_lock(&e->templates_mu);
    st = sipp__chat_prepare(e->templates, e->vocab, messages, n, p, &pr, msg, sizeof msg);
    pthread_mutex_unlock(&e->templates_mu);
    if (st != SIPP_OK) return sipp__fail(err, st, 0, "%s", msg);
    st = submit_text(e, pr.prompt, p, &pr, out, err);
    sipp__chat_prepared_free(&pr);
    return st;
}

sipp_status sipp__engine_render_chat(sipp__engine *e, const sipp_message *messages, size_t n,
                                     char **out, sipp_error *err) {
    if (!e->templates && e->template_error[0])
        return sipp__fail(err, SIPP_UNSUPPORTED, 0, "chat: %s", e->template_error);
    if (!e->templates)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "chat: the model has no chat template; use query for raw prompts");
    /* The rendered prompt is tokenized with special-token parsing on (the template's own
     * markers must become special tokens), so message content that spells a special token
     * could forge a turn or a role: refuse it rather than guess what the caller meant. */
    for (size_t i = 0; i < n; i++) {
        const char *content = messages[i].content ? messages[i].content : "";
        for (int32_t k = 0; k < e->n_special; k++) {
            const char *text = llama_vocab_get_text(e->vocab, e->special[k]);
            if (strstr(content, text))
                return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                                  "chat: messages[%zu] contains the special token text '%.32s'; "
                                  "message content may not spell the model's special tokens",
                                  i, text);
        }
    }
    char msg[SIPP_ERROR_MESSAGE_CAP];
    pthread_mutex_lock(&e->templates_mu);
    int rc = sipp__chat_render(e->templates, messages, n, out, msg, sizeof msg);
    pthread_mutex_unlock(&e->templates_mu);
    if (rc != 0) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "%s", msg);
    return SIPP_OK;
}

sipp_status sipp__engine_submit_embed(sipp__engine *e, const char *text,
                                      const sipp_embed_params *p, sipp_run **out,
                                      sipp_error *err) {
    if (!e->info.can_embed)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "embed: the model '%s' cannot produce embeddings (%s)",
                          e->info.architecture,
                          e->reranker ? "it is a reranker: rank pooling scores pairs"
                                      : "recurrent and hybrid models have none in llama.cpp");
    job *j = calloc(1, sizeof *j);
    if (!j) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    j->kind = JOB_EMBED;
    j->normalize = p->normalize;
    uint32_t most = e->n_batch < e->n_ctx_seq ? e->n_batch : e->n_ctx_seq;
    sipp_status st = tokenize(e, text, most, &j->tokens, &j->n_tokens, err);
    if (st == SIPP_CONTEXT_OVERFLOW || (st == SIPP_OK && (uint32_t)j->n_tokens > most))
        st = sipp__fail(err, SIPP_CONTEXT_OVERFLOW, 0,
                        "the input has %d tokens but one embedding batch holds %u",
                        j->n_tokens, e->n_batch < e->n_ctx_seq ? e->n_batch : e->n_ctx_seq);
    if (st != SIPP_OK) {
        sipp__job_free(j);
        return st;
    }
    return finish_submit(e, j, NULL, NULL, out, err);
}
