/*
 * engine_text.c — generated text: from a sampled token to bytes the caller may see.
 *
 * Thread: the engine thread only. A token's piece goes into the slot's hold-back buffer
 * (`held`), which keeps back what could still become a stop string and an incomplete trailing
 * UTF-8 sequence; the rest is pushed to the run. Invariants: the caller never sees text of a
 * stop string, nor invalid UTF-8 (byte tokens that spell it are replaced by U+FFFD); a token
 * counts towards the push that first carries its text; held text never exceeds
 * SIPP__RUN_TEXT_MAX (a longer one ends the run with OUT_OF_MEMORY). The end of a run by EOG,
 * a stop string, max_tokens or a full context (unless context shift) is decided here.
 */
#include "engine_state.h"

#include <string.h>

/* Pushes the first `len` bytes of held text to the run; the rest stays held. Tokens count
 * towards the batch that first carries their text. */
static void emit_held(slot *s, size_t len) {
    if (len == 0) return;
    /* A model's byte tokens can spell invalid UTF-8 (a lone lead byte, 0xFF): the caller gets
     * U+FFFD in their place, never bytes a JSON encoder or a UI would refuse. */
    const char *text = s->held.data;
    size_t n = len;
    if (sipp__utf8_valid_len(text, len) < len) {
        sipp__buf_reset(&s->clean);
        if (sipp__utf8_append_clean(&s->clean, text, len) == SIPP_OK) {
            text = s->clean.data;
            n = s->clean.len;
        }
    }
    if (s->job->parser) { /* a chat: the parser turns the text into deltas */
        /* the first delta carries the tokens' count (and so their log-probabilities); when
         * the parser holds everything back, they go out alone */
        sipp__job_emit em = {s->job->run, s->held_tokens};
        sipp__chat_parser_feed(s->job->parser, text, n, false, sipp__job_emit_delta, &em);
        if (em.n_tokens) sipp__run_push_text(s->job->run, "", 0, em.n_tokens);
    } else
        sipp__run_push_text(s->job->run, text, n, s->held_tokens);
    s->held_tokens = 0;
    memmove(s->held.data, s->held.data + len, s->held.len - len + 1);
    s->held.len -= len;
}

/* Flushes held text at the end of a run, dropping an incomplete trailing UTF-8 sequence. */
void sipp__slot_flush_held(slot *s) {
    emit_held(s, sipp__utf8_complete_len(s->held.data ? s->held.data : "", s->held.len));
}

/* Processes a sampled token: stream its text, or finish on EOG, stop string, or limits. */
void sipp__slot_accept(sipp__engine *e, slot *s, llama_token tok, double now) {
    if (s->n_generated == 0)
        s->t_first = now;
    else if (s->n_gaps < e->n_ctx_seq)
        s->gaps[s->n_gaps++] = (float)(now - s->t_last);
    s->t_last = now;
    s->n_generated++;
    job *j = s->job;
    if (llama_vocab_is_eog(e->vocab, tok)) {
        sipp__slot_flush_held(s);
        sipp__slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_STOP);
        return;
    }
    /* a chat's preserved tokens (a tool-call marker that is a special token) keep their text
     * for the parser */
    bool special = false;
    for (size_t i = 0; i < j->n_preserved && !special; i++) special = j->preserved[i] == tok;
    int32_t n = llama_token_to_piece(e->vocab, tok, e->piece, sizeof e->piece, 0, special);
    if (n < 0) n = 0; /* a piece longer than the buffer: no real vocab has one */
    if (sipp__buf_append(&s->held, e->piece, (size_t)n) != SIPP_OK) {
        sipp__slot_finish(e, s, SIPP_OUT_OF_MEMORY, "generated text exceeds the response limit",
                    SIPP_FINISH_NONE);
        return;
    }
    s->held_tokens++;
    sipp__stop_scan sc = sipp__stop_scan_text((const char *const *)j->stop, j->n_stop,
                                              s->held.data, s->held.len);
    emit_held(s, sc.emit_len);
    if (sc.matched || (j->parser && sipp__chat_parser_complete(j->parser))) {
        sipp__slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_STOP);
        return;
    }
    bool context_full = (uint32_t)s->n_past + 1 >= e->n_ctx_seq;
    if (s->n_generated >= j->max_tokens || (context_full && !e->context_shift)) {
        sipp__slot_flush_held(s);
        sipp__slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_LENGTH);
        return;
    }
    if (context_full) sipp__slot_shift(e, s);
    s->next = tok;
    s->state = SLOT_DECODE;
}
