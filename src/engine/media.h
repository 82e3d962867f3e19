/*
 * media.h — multimodal prompts in the engine (images and audio through llama.cpp's mtmd;
 * docs/multimodal.md). Private to src/engine.
 *
 * A media prompt is tokenized with mtmd_tokenize into text and media chunks. The job's token
 * array covers every position: text chunks hold their tokens, a media chunk holds placeholder
 * ids (negative, never a vocabulary token) derived from the SHA-256 of the media bytes and the
 * projector, so the slot cache and the snapshot store compare prompts with media exactly as
 * they compare text: a prompt with the same image reuses the cached prefix, another image
 * diverges at its first position. The tick prefills text as always and, when a sequence reaches
 * a media chunk, calls sipp__media_eval, which encodes the chunk (mtmd) and feeds its
 * embeddings into that sequence through the compute seam: plans of embedding rows of their own,
 * run by the backend's forward (a plan is tokens or embeddings, not both, so a media chunk is
 * its own forward; the other sequences' tokens go in the tick's plan as usual).
 *
 * Threads: sipp__media_open/close on the opening thread, sipp__media_tokenize on the caller's
 * (mtmd_tokenize is thread-safe on a shared context), the rest on the engine thread.
 */
#ifndef SIPP_ENGINE_MEDIA_H
#define SIPP_ENGINE_MEDIA_H

#include "engine_state.h"

typedef struct sipp__media_prompt sipp__media_prompt;

/* Loads p->mmproj (when set) for e's model: sets e->mtmd and the info's vision/audio_in.
 * A file that is not a GGUF, is not a projector or does not match the model is
 * SIPP_MODEL_INVALID naming it. */
sipp_status sipp__media_open(sipp__engine *e, const sipp_local_params *p, sipp_error *err);
void sipp__media_close(sipp__engine *e);

/* Tokenizes a prompt with media parts into j->tokens/j->n_tokens and j->media. `what` names
 * the operation in messages ("query", "chat"). Errors: UNSUPPORTED (no projector, or one
 * without that modality), INVALID_ARGUMENT (a part that is not what it says, cannot be decoded,
 * exceeds the pixel limit, marker count), CONTEXT_OVERFLOW. */
sipp_status sipp__media_tokenize(sipp__engine *e, const char *prompt, const sipp_media *media,
                                 size_t n_media, const char *what, job *j, sipp_error *err);
void sipp__media_prompt_free(sipp__media_prompt *m);

/* The number of text positions from `pos` before the next media chunk (or the prompt's end). */
int32_t sipp__media_text_run(const job *j, int32_t pos);
/* When slot s's next prompt position starts media chunks, encodes and decodes them (checking
 * cancellation and the deadline before and after each encode). Returns 1 when it evaluated
 * something, 0 when s is not at a media chunk, -1 when it ended s's run (error, cancel,
 * deadline). */
int sipp__media_eval(sipp__engine *e, slot *s);
/* A reusable prefix length rounded down to the start of a media chunk it would cut. */
uint32_t sipp__media_align(const job *j, uint32_t n);
/* Adds the job's encode time and media count to its stats. */
void sipp__media_stats(const job *j, sipp_stats *out);

#endif
