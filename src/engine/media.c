/*
 * media.c — multimodal prompts through llama.cpp's mtmd (see media.h for the design: media
 * chunks as hashed placeholder positions, encoded and decoded when a sequence reaches them).
 * mtmd encodes; the embeddings reach the KV cache through the compute seam (backend.h), as a
 * plan of embedding rows run by the backend's forward: no llama_decode here.
 *
 * Ownership: e->mtmd is the engine's (freed at close); a job's sipp__media_prompt owns its
 * mtmd chunks (the preprocessed media) and is freed with the job. Built without mtmd
 * (SIPP_HAVE_MTMD undefined: the WebAssembly build), every media request is UNSUPPORTED.
 */
#define _GNU_SOURCE
#include "media.h"

#include "../common/media_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef SIPP_HAVE_MTMD
#include "mtmd-helper.h"
#include "mtmd.h"

typedef struct media_span {
    int32_t start, n; /* positions [start, start + n) of the job's prompt */
    const mtmd_input_chunk *chunk;
} media_span;

struct sipp__media_prompt {
    mtmd_input_chunks *chunks;
    media_span *spans;
    size_t n_spans;
    double encode_ms;
    uint32_t n_encoded;
};

/* stb_image as libmtmd exports it (mtmd-helper.cpp compiles it in). Sipp decodes images with
 * it directly rather than through mtmd_helper_bitmap_init_from_buf, which hands bytes that stb
 * cannot read to ffprobe/ffmpeg as a video when libmtmd is built with MTMD_VIDEO: untrusted
 * bytes must never reach an external program. The pixels are the helper's (same decoder). */
extern unsigned char *stbi_load_from_memory(const unsigned char *buf, int len, int *x, int *y,
                                            int *channels, int desired_channels);
extern void stbi_image_free(void *p);

/* While a projector loads, mtmd's first error line is kept for the error message instead of
 * being printed (one clear line, not a log dump and a summary). */
static _Thread_local char *log_capture;
static _Thread_local size_t log_capture_cap;

static void mtmd_log_cb(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    if (log_capture) {
        if (level == GGML_LOG_LEVEL_ERROR && !log_capture[0]) {
            const char *t = strstr(text, "error: ");
            t = t ? t + 7 : text;
            size_t n = strcspn(t, "\n");
            snprintf(log_capture, log_capture_cap, "%.*s", (int)n, t);
        }
        return;
    }
    sipp_log_level l = level == GGML_LOG_LEVEL_ERROR  ? SIPP_LOG_ERROR
                       : level == GGML_LOG_LEVEL_WARN ? SIPP_LOG_WARN
                                                      : SIPP_LOG_DEBUG;
    if (l <= sipp__log_level()) fputs(text, stderr);
}

/* The projector's identity for placeholder ids: SHA-256 of its size and first MiB (cheap, and
 * another projector for the same model changes it, so no cached image is read with the wrong
 * encoder). */
static sipp_status projector_salt(const char *path, uint8_t out[32], sipp_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return sipp__fail(err, SIPP_NOT_FOUND, 0, "mmproj '%s' cannot be opened", path);
    unsigned char *buf = malloc(1 << 20);
    sipp__sha256 *h = buf ? sipp__sha256_begin() : NULL;
    if (!h) {
        free(buf);
        fclose(f);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    size_t n = fread(buf, 1, 1 << 20, f);
    struct stat st;
    uint64_t size = fstat(fileno(f), &st) == 0 ? (uint64_t)st.st_size : 0;
    fclose(f);
    sipp_status rc = SIPP_OK;
    if (n < 8 || memcmp(buf, "GGUF", 4) != 0)
        rc = sipp__fail(err, SIPP_MODEL_INVALID, 0, "mmproj '%s' is not a GGUF file", path);
    sipp__sha256_update(h, &size, sizeof size);
    sipp__sha256_update(h, buf, n);
    sipp__sha256_end(h, out);
    free(buf);
    return rc;
}

sipp_status sipp__media_open(sipp__engine *e, const sipp_local_params *p, sipp_error *err) {
    if (!p->mmproj || !p->mmproj[0]) return SIPP_OK;
    if (e->external) /* mtmd encodes with llama.cpp's model, which an external backend lacks */
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "mmproj: an external backend takes no projector (media need "
                          "llama.cpp's)");
    if (e->embed_only)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "mmproj: '%s' is an embedding model; a projector needs a text decoder",
                          e->info.architecture);
    sipp_status st = projector_salt(p->mmproj, e->media_salt, err);
    if (st != SIPP_OK) return st;
    st = sipp__gguf_precheck(p->mmproj, NULL, err);
    if (st != SIPP_OK) {
        if (err) {
            char m[SIPP_ERROR_MESSAGE_CAP + 8];
            snprintf(m, sizeof m, "mmproj: %s", err->message);
            snprintf(err->message, sizeof err->message, "%.*s", (int)sizeof err->message - 1, m);
        }
        return st;
    }
    mtmd_helper_log_set(mtmd_log_cb, NULL);
    char why[160] = "";
    log_capture = why;
    log_capture_cap = sizeof why;
    struct mtmd_context_params mp = mtmd_context_params_default();
    mp.use_gpu = p->n_gpu_layers != 0;
    mp.n_threads = llama_n_threads(e->ctx);
    mp.print_timings = false;
    mp.media_marker = SIPP_MEDIA_MARKER;
    e->mtmd = mtmd_init_from_file(p->mmproj, e->model, mp);
    log_capture = NULL;
    if (!e->mtmd)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0,
                          "mmproj '%s' cannot be loaded for this model (n_embd %u): %s", p->mmproj,
                          e->info.n_embd,
                          why[0] ? why : "not a projector llama.cpp knows, or made for another model");
    sipp__plan *plan = &e->media_plan;
    plan->capacity = (int32_t)e->n_batch;
    plan->pos = malloc(e->n_batch * sizeof *plan->pos);
    plan->seq_id = malloc(e->n_batch * sizeof *plan->seq_id);
    plan->logits = calloc(e->n_batch, sizeof *plan->logits); /* no row asks for logits */
    plan->out_row = malloc(e->n_batch * sizeof *plan->out_row);
    if (!plan->pos || !plan->seq_id || !plan->logits || !plan->out_row)
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    for (uint32_t i = 0; i < e->n_batch; i++) plan->out_row[i] = -1;
    e->info.vision = mtmd_support_vision(e->mtmd);
    e->info.audio_in = mtmd_support_audio(e->mtmd);
    return SIPP_OK;
}

void sipp__media_close(sipp__engine *e) {
    if (e->mtmd) mtmd_free(e->mtmd);
    e->mtmd = NULL;
    free(e->media_plan.pos);
    free(e->media_plan.seq_id);
    free(e->media_plan.logits);
    free(e->media_plan.out_row);
    e->media_plan = (sipp__plan){0};
}

void sipp__media_prompt_free(sipp__media_prompt *m) {
    if (!m) return;
    if (m->chunks) mtmd_input_chunks_free(m->chunks);
    free(m->spans);
    free(m);
}

/* Placeholder ids of a media chunk: 31-bit words of SHA-256(projector salt, chunk id), cycled
 * over its positions, made negative. */
static void placeholders(const sipp__engine *e, const char *id, llama_token *out, size_t n) {
    uint8_t d[32];
    sipp__sha256 *h = sipp__sha256_begin();
    if (h) {
        sipp__sha256_update(h, e->media_salt, sizeof e->media_salt);
        sipp__sha256_update(h, id ? id : "", id ? strlen(id) : 0);
        sipp__sha256_end(h, d);
    } else {
        memset(d, 0, sizeof d);
    }
    for (size_t k = 0; k < n; k++) {
        const uint8_t *w = d + 4 * (k % 8);
        uint32_t v = ((uint32_t)w[0] << 24 | (uint32_t)w[1] << 16 | (uint32_t)w[2] << 8 | w[3]) & 0x3FFFFFFF;
        out[k] = -1 - (llama_token)v;
    }
}

/* A bitmap of one part, its id the SHA-256 of the bytes in hex (as mtmd's helper sets it);
 * NULL when the bytes do not decode. Images through stb (see above), audio through the helper
 * (the sniff has checked its container). */
static mtmd_bitmap *bitmap_from_bytes(const sipp__engine *e, const sipp_media *m) {
    if (m->kind == SIPP_MEDIA_AUDIO) {
        struct mtmd_helper_bitmap_wrapper w = mtmd_helper_bitmap_init_from_buf(
            e->mtmd, m->data, m->len, false, mtmd_helper_init_opt_default());
        if (w.video_ctx) mtmd_helper_video_free(w.video_ctx);
        return w.bitmap;
    }
    if (m->len > (size_t)INT32_MAX) return NULL;
    int nx = 0, ny = 0, nc = 0;
    unsigned char *px = stbi_load_from_memory(m->data, (int)m->len, &nx, &ny, &nc, 3);
    if (!px) return NULL;
    mtmd_bitmap *b = mtmd_bitmap_init((uint32_t)nx, (uint32_t)ny, px);
    stbi_image_free(px);
    uint8_t d[32];
    sipp__sha256 *h = b ? sipp__sha256_begin() : NULL;
    if (!h) {
        if (b) mtmd_bitmap_free(b);
        return NULL;
    }
    sipp__sha256_update(h, m->data, m->len);
    sipp__sha256_end(h, d);
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    mtmd_bitmap_set_id(b, hex);
    return b;
}

sipp_status sipp__media_tokenize(sipp__engine *e, const char *prompt, const sipp_media *media,
                                 size_t n_media, const char *what, job *j, sipp_error *err) {
    if (!e->mtmd && e->pulled_mmproj_error[0])
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "%s: media parts need a multimodal endpoint; the projector pulled with "
                          "this '%s' model could not be used: %s",
                          what, e->info.architecture, e->pulled_mmproj_error);
    if (!e->mtmd)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                          "%s: media parts need a multimodal endpoint; this '%s' model was opened "
                          "without a projector (mmproj)",
                          what, e->info.architecture);
    char msg[SIPP_ERROR_MESSAGE_CAP];
    for (size_t i = 0; i < n_media; i++) {
        const sipp_media *m = &media[i];
        if (m->kind == SIPP_MEDIA_IMAGE && !e->info.vision)
            return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                              "%s: media[%zu] is an image but this endpoint's projector takes no images",
                              what, i);
        if (m->kind == SIPP_MEDIA_AUDIO && !e->info.audio_in)
            return sipp__fail(err, SIPP_UNSUPPORTED, 0,
                              "%s: media[%zu] is audio but this endpoint's projector takes no audio",
                              what, i);
        sipp__media_desc desc;
        if (sipp__media_sniff(m->data, m->len, m->kind, m->mime_type, SIPP__MEDIA_MAX_PIXELS, &desc,
                              msg, sizeof msg) != SIPP_OK)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "%s: media[%zu]: %s", what, i, msg);
    }
    char *text = NULL;
    sipp_status st = sipp__media_place_markers(prompt, n_media,
                                               "the prompt",
                                               &text, err);
    if (st != SIPP_OK) return st;

    mtmd_bitmap **bitmaps = calloc(n_media ? n_media : 1, sizeof *bitmaps);
    sipp__media_prompt *mp = calloc(1, sizeof *mp);
    if (mp) mp->chunks = mtmd_input_chunks_init();
    if (!bitmaps || !mp || !mp->chunks) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    for (size_t i = 0; st == SIPP_OK && i < n_media; i++) {
        bitmaps[i] = bitmap_from_bytes(e, &media[i]);
        if (!bitmaps[i])
            st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                            "%s: media[%zu]: the %s cannot be decoded (truncated or corrupt)", what,
                            i, media[i].kind == SIPP_MEDIA_IMAGE ? "image" : "audio");
        else if (media[i].kind == SIPP_MEDIA_AUDIO && mtmd_bitmap_get_n_bytes(bitmaps[i]) == 0)
            st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                            "%s: media[%zu]: the audio has no samples (zero-length audio)", what, i);
    }
    if (st == SIPP_OK) {
        mtmd_input_text in = {text, strlen(text), true, true};
        int32_t rc = mtmd_tokenize(e->mtmd, mp->chunks, &in, (const mtmd_bitmap *const *)bitmaps,
                                   n_media);
        if (rc == 1)
            st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                            "%s: the media markers do not match the %zu media part(s)", what, n_media);
        else if (rc != 0)
            st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                            "%s: a media part could not be preprocessed for this projector", what);
    }
    for (size_t i = 0; bitmaps && i < n_media; i++)
        if (bitmaps[i]) mtmd_bitmap_free(bitmaps[i]);
    free(bitmaps);
    free(text);

    size_t n_chunks = st == SIPP_OK ? mtmd_input_chunks_size(mp->chunks) : 0;
    size_t total = 0;
    for (size_t c = 0; c < n_chunks; c++) {
        const mtmd_input_chunk *ch = mtmd_input_chunks_get(mp->chunks, c);
        size_t n = mtmd_input_chunk_get_n_tokens(ch);
        if (mtmd_input_chunk_get_type(ch) != MTMD_INPUT_CHUNK_TYPE_TEXT) {
            mp->n_spans++;
            if ((size_t)mtmd_input_chunk_get_n_pos(ch) != n) {
                st = sipp__fail(err, SIPP_UNSUPPORTED, 0,
                                "%s: this projector places media by M-RoPE positions, which the "
                                "engine does not support yet",
                                what);
                break;
            }
        }
        total += n;
    }
    if (st == SIPP_OK && n_chunks > 0 &&
        mtmd_input_chunk_get_type(mtmd_input_chunks_get(mp->chunks, n_chunks - 1)) !=
            MTMD_INPUT_CHUNK_TYPE_TEXT)
        st = sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                        "%s: the prompt ends with a media part; put text after it", what);
    if (st == SIPP_OK && total >= e->n_ctx_seq)
        st = sipp__fail(err, SIPP_CONTEXT_OVERFLOW, 0,
                        "the prompt is too long: n_prompt_tokens = %zu (media included), n_ctx = %u "
                        "(the context must hold the prompt plus at least one generated token)",
                        total, e->n_ctx_seq);
    if (st == SIPP_OK) {
        j->tokens = malloc(total * sizeof *j->tokens);
        mp->spans = calloc(mp->n_spans ? mp->n_spans : 1, sizeof *mp->spans);
        if (!j->tokens || !mp->spans) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    if (st != SIPP_OK) {
        sipp__media_prompt_free(mp);
        return st;
    }
    size_t pos = 0, k = 0;
    for (size_t c = 0; c < n_chunks; c++) {
        const mtmd_input_chunk *ch = mtmd_input_chunks_get(mp->chunks, c);
        size_t n = 0;
        if (mtmd_input_chunk_get_type(ch) == MTMD_INPUT_CHUNK_TYPE_TEXT) {
            const llama_token *t = mtmd_input_chunk_get_tokens_text(ch, &n);
            memcpy(j->tokens + pos, t, n * sizeof *t);
        } else {
            n = mtmd_input_chunk_get_n_tokens(ch);
            placeholders(e, mtmd_input_chunk_get_id(ch), j->tokens + pos, n);
            mp->spans[k++] = (media_span){(int32_t)pos, (int32_t)n, ch};
        }
        pos += n;
    }
    j->n_tokens = (int32_t)total;
    j->media = mp;
    return SIPP_OK;
}

static const media_span *span_at(const sipp__media_prompt *m, int32_t pos) {
    for (size_t i = 0; i < m->n_spans; i++)
        if (pos >= m->spans[i].start && pos < m->spans[i].start + m->spans[i].n) return &m->spans[i];
    return NULL;
}

int32_t sipp__media_text_run(const job *j, int32_t pos) {
    int32_t end = j->n_tokens;
    if (j->media)
        for (size_t i = 0; i < j->media->n_spans; i++)
            if (j->media->spans[i].start >= pos && j->media->spans[i].start < end)
                end = j->media->spans[i].start;
    return end - pos;
}

uint32_t sipp__media_align(const job *j, uint32_t n) {
    if (!j->media || n == 0) return n;
    const media_span *sp = span_at(j->media, (int32_t)n);
    return sp && sp->start < (int32_t)n ? (uint32_t)sp->start : n;
}

void sipp__media_stats(const job *j, sipp_stats *out) {
    if (!j->media) return;
    out->encode_ms = j->media->encode_ms;
    out->media_chunks = j->media->n_encoded;
}

/* Ends s's run when it was cancelled or is past its deadline; true when it did. */
static bool ended(sipp__engine *e, slot *s) {
    if (sipp__run_cancel_requested(s->job->run)) {
        sipp__slot_finish(e, s, SIPP_OK, NULL, SIPP_FINISH_CANCELLED);
        return true;
    }
    if (s->job->deadline > 0 && sipp__now_ms() >= s->job->deadline) {
        char msg[64];
        sipp__job_deadline_message(s->job, msg, sizeof msg);
        sipp__slot_finish(e, s, SIPP_DEADLINE_EXCEEDED, msg, SIPP_FINISH_NONE);
        return true;
    }
    return false;
}

/* Feeds the embeddings mtmd_encode_chunk left (n_embd_inp floats a row) into s's sequence at
 * s->n_past through the compute seam: plans of at most n_batch rows of `embd`, no logits, each
 * run by the backend's forward (backend.h), as mtmd_helper_decode_image_chunk would with
 * llama_decode. The llama.cpp backend completes at once (an external one never gets here:
 * sipp__media_open refuses it). Returns 0, or the backend's code. */
static int decode_embd(sipp__engine *e, slot *s, const media_span *sp) {
    sipp__plan *p = &e->media_plan;
    float *embd = mtmd_get_output_embd(e->mtmd);
    size_t width = (size_t)llama_model_n_embd_inp(e->model);
    if (!embd || width == 0) return -1;
    p->non_causal = mtmd_decode_use_non_causal(e->mtmd, sp->chunk);
    for (int32_t done = 0; done < sp->n;) {
        int32_t n = sp->n - done < p->capacity ? sp->n - done : p->capacity;
        p->n_tokens = n;
        p->n_outputs = 0;
        p->token = NULL;
        p->embd = embd + (size_t)done * width;
        for (int32_t i = 0; i < n; i++) {
            p->pos[i] = s->n_past + done + i;
            p->seq_id[i] = s->seq;
        }
        sipp__fwd_result res = {0};
        if (!e->be.forward(e->be.state, e, p, &res)) return -1; /* cannot happen, see above */
        if (res.rc != 0) return res.rc;
        done += n;
    }
    return 0;
}

int sipp__media_eval(sipp__engine *e, slot *s) {
    sipp__media_prompt *m = s->job->media;
    int did = 0;
    const media_span *sp;
    while (m && (sp = span_at(m, s->n_prefilled)) != NULL) {
        if (ended(e, s)) return -1;
        char msg[128];
        if (sp->start != s->n_prefilled) { /* cannot happen: reuse is aligned to chunks */
            snprintf(msg, sizeof msg, "media: the sequence stands inside a media chunk");
            sipp__slot_finish(e, s, SIPP_INTERNAL, msg, SIPP_FINISH_NONE);
            return -1;
        }
        double t0 = sipp__now_ms();
        int32_t rc = mtmd_encode_chunk(e->mtmd, sp->chunk);
        double t1 = sipp__now_ms();
        m->encode_ms += t1 - t0;
        if (rc != 0) {
            snprintf(msg, sizeof msg, "media: encoding failed (mtmd returned %d)", (int)rc);
            sipp__slot_finish(e, s, SIPP_INTERNAL, msg, SIPP_FINISH_NONE);
            return -1;
        }
        m->n_encoded++;
        if (ended(e, s)) return -1;
        rc = decode_embd(e, s, sp);
        if (rc != 0) {
            snprintf(msg, sizeof msg, "media: decoding the embeddings failed (%d)", (int)rc);
            sipp__slot_finish(e, s, SIPP_INTERNAL, msg, SIPP_FINISH_NONE);
            return -1;
        }
        memcpy(s->cached + s->n_past, s->job->tokens + sp->start, (size_t)sp->n * sizeof(llama_token));
        s->n_past += sp->n;
        s->n_prefilled += sp->n;
        pthread_mutex_lock(&e->stats_mu);
        e->stats.prompt_tokens += (uint64_t)sp->n;
        e->stats.media_encoded++;
        e->stats.media_encode_ms += t1 - t0;
        pthread_mutex_unlock(&e->stats_mu);
        did = 1;
    }
    return did;
}

#else /* no mtmd: the WebAssembly build */

struct sipp__media_prompt {
    int unused;
};

sipp_status sipp__media_open(sipp__engine *e, const sipp_local_params *p, sipp_error *err) {
    (void)e;
    if (p->mmproj && p->mmproj[0])
        return sipp__fail(err, SIPP_UNSUPPORTED, 0, "mmproj: this build has no multimodal support");
    return SIPP_OK;
}
void sipp__media_close(sipp__engine *e) { (void)e; }
sipp_status sipp__media_tokenize(sipp__engine *e, const char *prompt, const sipp_media *media,
                                 size_t n_media, const char *what, job *j, sipp_error *err) {
    (void)e, (void)prompt, (void)media, (void)n_media, (void)j;
    return sipp__fail(err, SIPP_UNSUPPORTED, 0, "%s: this build has no multimodal support", what);
}
void sipp__media_prompt_free(sipp__media_prompt *m) { free(m); }
int32_t sipp__media_text_run(const job *j, int32_t pos) { return j->n_tokens - pos; }
int sipp__media_eval(sipp__engine *e, slot *s) {
    (void)e, (void)s;
    return 0;
}
uint32_t sipp__media_align(const job *j, uint32_t n) {
    (void)j;
    return n;
}
void sipp__media_stats(const job *j, sipp_stats *out) { (void)j, (void)out; }

#endif
