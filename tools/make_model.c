/*
 * make_model.c — `sipp-make-model`: writes random-weight GGUF models of real shapes for tests
 * and benchmarks, so that nothing is downloaded. The tokenizer (every `tokenizer.*` key) is
 * copied from one of the vocab-only GGUFs that ship in the llama.cpp source (models/).
 *
 * Weights are uniform random with a small scale (so activations stay finite), norms are ones.
 * Tensors are generated, quantized and written one at a time: memory use is one tensor, not
 * the model, so the 8B shape fits in RAM. Quantization uses ggml's own quantizers.
 *
 * Shapes (llama-style decoders, plus a BERT-style encoder):
 *   llama-135m  SmolLM2-135M dims with the GPT-2 vocab       (~135M params)
 *   llama-0.5b  Qwen2.5-0.5B dims with the GPT-2 vocab       (~0.45B)
 *   llama-1b    Llama-3.2-1B dims with the Llama-3 BPE vocab (~1.2B)
 *   llama-8b    Llama-3.1-8B dims with the Llama-3 BPE vocab (~8B)
 *   bert-small  bge-small dims with the BERT (bge) vocab     (~33M), mean pooling
 *   bert-rerank bert-small declared a reranker (rank pooling): scores pairs, cannot embed
 *   llava-text  a small Llama-architecture decoder with the Qwen2 vocab and its (ChatML) chat
 *               template, n_embd 256, untied output: the text half of a LLaVA pair
 *   llava-mmproj a LLaVA-1.5-style vision projector for llava-text (llama.cpp's `mlp`
 *               projector type, as tools/mtmd/clip.cpp loads it): a CLIP ViT (patch 14,
 *               224x224 input, class embedding, pre-LN, 3 blocks of width 128) and the
 *               two-layer GELU MLP into the text model's 256-wide embedding space
 *   llava-b-text / llava-b-mmproj  the benchmark pair (bench/media_bench.py): a CLIP ViT-B/16
 *               projector (224x224, 12 blocks of width 768, 12 heads, FFN 3072: 196 image
 *               positions, ~86M params) with the `mlp` projector into a 4-layer, 768-wide
 *               decoder (Qwen2 vocab, tied output). Timing shapes: weights at the default scale,
 *               their text is not checked against anything
 *   qwen2a-mmproj a Qwen2-Audio-style audio encoder for llava-text (llama.cpp's `qwen2a`
 *               projector, as clip.cpp loads it and models/whisper-enc.cpp runs it): a Whisper
 *               encoder (128 mel bins, two conv1d, 1500 positions = 30 s, pre-LN, 2 blocks of
 *               width 128, no K bias, final LN), average pooling by 2 and a linear projection
 *               into the text model's 256-wide embedding space: 750 embeddings per 30 s chunk.
 *               (Not Ultravox or Voxtral: in the pinned llama.cpp their frame stacking makes 188
 *               embeddings a chunk where clip_n_output_tokens counts 187, and encoding aborts.)
 *   llama-tiny  2 layers of 256, GQA 4/2, tied, Llama-3 rope_freqs (the WebGPU tests)
 *   qwen2-tiny  the same dims as qwen2 (random QKV biases, NEOX rope)
 *   qwen3-tiny  the same dims as qwen3 (QK norm, NEOX rope)
 * The tiny shapes are test shapes: their norm weights and biases are random too (around 1 and
 * 0), and their weights larger, so a pipeline that skips or misplaces one gives other logits.
 *   tiny-llama3 / tiny-qwen2 / tiny-gpt2  2 layers of 64 with the Llama-3, Qwen2 or GPT-2
 *               vocab (~3-10M): chat template tests, where only the tokenizer and
 *               the template matter (tiny-gpt2: the smallest vocab, the cheapest grammar sampling)
 *
 * --chat-template FILE sets tokenizer.chat_template from a Jinja file (the tool-call tests take
 * real templates from llama.cpp's models/templates/).
 */
#define _POSIX_C_SOURCE 200809L
#include "ggml.h"
#include "gguf.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape {
    const char *name;
    const char *arch;
    const char *vocab_file; /* in llama.cpp's models/ */
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    int tied; /* output projection shares token_embd (no output.weight), as in the original */
    int pooling; /* encoders: llama.cpp's pooling type (1 mean, 4 rank) */
    /* vision projectors (arch "clip"): n_embd/n_layer/n_head/n_ff are the ViT's */
    int image_size, patch_size, proj_dim;
    float scale; /* of the random weights; 0 = 0.02 */
    int varied;  /* test shapes: random norms and biases, rope_freqs, larger weights */
} shape;

/* The LLaVA pair's weights are larger and its output is untied, so that the image visibly
 * steers the (random) text and greedy picks are not near-ties: at 0.02 with a tied output the
 * residual stream is the last token's embedding, every image reads the same, and two argmax
 * candidates sit so close that a thread count flips them. */
#define SCALE_LLAVA 0.1f
/* The audio encoder's: at 0.1 its embeddings (750 a chunk) swamp llava-text and every clip
 * reads the same; at 0.04 two 1 s sines of other pitches give other text. */
#define SCALE_AUDIO 0.04f

static const shape shapes[] = {
    {"llama-135m", "llama", "ggml-vocab-gpt-2.gguf", 576, 30, 9, 3, 1536, 8192, 1, 0, 0, 0, 0, 0, 0},
    {"llama-0.5b", "llama", "ggml-vocab-gpt-2.gguf", 896, 24, 14, 2, 4864, 32768, 1, 0, 0, 0, 0, 0, 0},
    {"llama-1b", "llama", "ggml-vocab-llama-bpe.gguf", 2048, 16, 32, 8, 8192, 131072, 1, 0, 0, 0, 0, 0, 0},
    {"llama-8b", "llama", "ggml-vocab-llama-bpe.gguf", 4096, 32, 32, 8, 14336, 131072, 0, 0, 0, 0, 0, 0, 0},
    {"bert-small", "bert", "ggml-vocab-bert-bge.gguf", 384, 12, 12, 12, 1536, 512, 0, 1, 0, 0, 0, 0, 0},
    {"bert-rerank", "bert", "ggml-vocab-bert-bge.gguf", 384, 12, 12, 12, 1536, 512, 0, 4, 0, 0, 0, 0, 0},
    {"llava-text", "llama", "ggml-vocab-qwen2.gguf", 256, 2, 4, 4, 512, 4096, 0, 0, 0, 0, 0, SCALE_LLAVA, 0},
    {"llava-mmproj", "clip", NULL, 128, 3, 4, 4, 512, 0, 0, 0, 224, 14, 256, SCALE_LLAVA, 0},
    {"llava-b-text", "llama", "ggml-vocab-qwen2.gguf", 768, 4, 12, 12, 2048, 4096, 1, 0, 0, 0, 0, 0, 0},
    {"llava-b-mmproj", "clip", NULL, 768, 12, 12, 12, 3072, 0, 0, 0, 224, 16, 768, 0, 0},
    {"qwen2a-mmproj", "clip", NULL, 128, 2, 4, 4, 512, 0, 0, 0, 0, 0, 256, SCALE_AUDIO, 0},
    {"llama-tiny", "llama", "ggml-vocab-gpt-2.gguf", 256, 2, 4, 2, 768, 2048, 1, 0, 0, 0, 0, 0, 1},
    {"qwen2-tiny", "qwen2", "ggml-vocab-gpt-2.gguf", 256, 2, 4, 2, 768, 2048, 1, 0, 0, 0, 0, 0, 1},
    {"qwen3-tiny", "qwen3", "ggml-vocab-gpt-2.gguf", 256, 2, 4, 2, 768, 2048, 0, 0, 0, 0, 0, 0, 1},
    {"tiny-llama3", "llama", "ggml-vocab-llama-bpe.gguf", 64, 2, 4, 2, 128, 4096, 1, 0, 0, 0, 0, 0, 0},
    {"tiny-qwen2", "llama", "ggml-vocab-qwen2.gguf", 64, 2, 4, 2, 128, 4096, 1, 0, 0, 0, 0, 0, 0},
    {"tiny-gpt2", "llama", "ggml-vocab-gpt-2.gguf", 64, 2, 4, 2, 128, 4096, 1, 0, 0, 0, 0, 0, 0},
};

typedef enum wtype { W_F16, W_Q8_0, W_Q4_K_M } wtype;

/* llama.cpp's LLAMA_FTYPE values for general.file_type */
static const uint32_t ftype_ids[] = {1, 7, 15};
static const char *const wtype_names[] = {"f16", "q8_0", "q4_k_m"};

/* ---- random numbers (xorshift64*, deterministic per seed) ------------------------------- */

static uint64_t rng_state;
static float rng_uniform(void) { /* in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 2685821657736338717ULL;
    return (float)((r >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* ---- tensor plan -------------------------------------------------------------------------- */

typedef enum fill { FILL_RANDOM, FILL_ONES, FILL_ZEROS, FILL_AROUND_ONE, FILL_FREQS } fill;
static int varied; /* the shape's `varied` */

typedef struct tensor_plan {
    char name[64];
    int64_t ne0, ne1; /* ne1 == 1 for vectors */
    int64_t ne2, ne3; /* 1 except for convolution kernels */
    enum ggml_type type;
    fill fill;
} tensor_plan;

#define MAX_TENSORS 1024
static tensor_plan plan[MAX_TENSORS];
static int n_plan;

/* Picks the stored type of a 2-D weight: the requested one when the row length allows it,
 * else Q8_0 or F16 (as llama-quantize falls back). */
static enum ggml_type weight_type(wtype w, const char *name, int64_t ne0) {
    enum ggml_type t = w == W_F16 ? GGML_TYPE_F16 : w == W_Q8_0 ? GGML_TYPE_Q8_0 : GGML_TYPE_Q4_K;
    if (w == W_Q4_K_M && (strstr(name, "attn_v") || strstr(name, "ffn_down") ||
                          strcmp(name, "output.weight") == 0))
        t = GGML_TYPE_Q6_K; /* Q4_K_M keeps these at higher precision */
    if (ne0 % ggml_blck_size(t) != 0) t = ne0 % 32 == 0 ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
    return t;
}

static void add(const char *name, int64_t ne0, int64_t ne1, enum ggml_type type, fill f) {
    tensor_plan *p = &plan[n_plan++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ne0 = ne0;
    p->ne1 = ne1;
    p->ne2 = p->ne3 = 1;
    p->type = type;
    p->fill = f;
}

static void add_weight(wtype w, const char *name, int64_t ne0, int64_t ne1) {
    add(name, ne0, ne1, weight_type(w, name, ne0), FILL_RANDOM);
}

static void add_layer(wtype w, int i, const char *suffix, int64_t ne0, int64_t ne1) {
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s", i, suffix);
    if (ne1 == 1)
        add(name, ne0, 1, GGML_TYPE_F32,
            strstr(suffix, "bias") ? (varied ? FILL_RANDOM : FILL_ZEROS) : varied ? FILL_AROUND_ONE : FILL_ONES);
    else
        add_weight(w, name, ne0, ne1);
}

static void plan_llama(const shape *s, wtype w, int64_t n_vocab) {
    int64_t head = s->n_embd / s->n_head, kv = head * s->n_head_kv;
    add_weight(w, "token_embd.weight", s->n_embd, n_vocab);
    if (varied && strcmp(s->arch, "llama") == 0) add("rope_freqs.weight", head / 2, 1, GGML_TYPE_F32, FILL_FREQS);
    for (int i = 0; i < s->n_layer; i++) {
        add_layer(w, i, "attn_norm.weight", s->n_embd, 1);
        add_layer(w, i, "attn_q.weight", s->n_embd, s->n_embd);
        add_layer(w, i, "attn_k.weight", s->n_embd, kv);
        add_layer(w, i, "attn_v.weight", s->n_embd, kv);
        if (strcmp(s->arch, "qwen2") == 0) {
            add_layer(w, i, "attn_q.bias", s->n_embd, 1);
            add_layer(w, i, "attn_k.bias", kv, 1);
            add_layer(w, i, "attn_v.bias", kv, 1);
        }
        if (strcmp(s->arch, "qwen3") == 0) {
            add_layer(w, i, "attn_q_norm.weight", head, 1);
            add_layer(w, i, "attn_k_norm.weight", head, 1);
        }
        add_layer(w, i, "attn_output.weight", s->n_embd, s->n_embd);
        add_layer(w, i, "ffn_norm.weight", s->n_embd, 1);
        add_layer(w, i, "ffn_gate.weight", s->n_embd, s->n_ff);
        add_layer(w, i, "ffn_up.weight", s->n_embd, s->n_ff);
        add_layer(w, i, "ffn_down.weight", s->n_ff, s->n_embd);
    }
    add("output_norm.weight", s->n_embd, 1, GGML_TYPE_F32, varied ? FILL_AROUND_ONE : FILL_ONES);
    if (!s->tied) add_weight(w, "output.weight", s->n_embd, n_vocab);
}

static void plan_bert(const shape *s, wtype w, int64_t n_vocab) {
    add_weight(w, "token_embd.weight", s->n_embd, n_vocab);
    add("token_types.weight", s->n_embd, 2, GGML_TYPE_F32, FILL_RANDOM);
    add("position_embd.weight", s->n_embd, s->n_ctx, GGML_TYPE_F32, FILL_RANDOM);
    add("token_embd_norm.weight", s->n_embd, 1, GGML_TYPE_F32, FILL_ONES);
    add("token_embd_norm.bias", s->n_embd, 1, GGML_TYPE_F32, FILL_ZEROS);
    for (int i = 0; i < s->n_layer; i++) {
        const char *mats[] = {"attn_q", "attn_k", "attn_v", "attn_output"};
        for (int m = 0; m < 4; m++) {
            char n[48];
            snprintf(n, sizeof n, "%s.weight", mats[m]);
            add_layer(w, i, n, s->n_embd, s->n_embd);
            snprintf(n, sizeof n, "%s.bias", mats[m]);
            add_layer(w, i, n, s->n_embd, 1);
        }
        add_layer(w, i, "attn_output_norm.weight", s->n_embd, 1);
        add_layer(w, i, "attn_output_norm.bias", s->n_embd, 1);
        add_layer(w, i, "ffn_up.weight", s->n_embd, s->n_ff);
        add_layer(w, i, "ffn_up.bias", s->n_ff, 1);
        add_layer(w, i, "ffn_down.weight", s->n_ff, s->n_embd);
        add_layer(w, i, "ffn_down.bias", s->n_embd, 1);
        add_layer(w, i, "layer_output_norm.weight", s->n_embd, 1);
        add_layer(w, i, "layer_output_norm.bias", s->n_embd, 1);
    }
}

/* A LLaVA-1.5-style CLIP ViT and MLP projector, with llama.cpp's tensor names (clip-impl.h). */
static void plan_clip_llava(const shape *s, wtype w) {
    int64_t n = s->n_embd, n_pos = (int64_t)(s->image_size / s->patch_size) * (s->image_size / s->patch_size) + 1;
    add("v.patch_embd.weight", s->patch_size, s->patch_size, GGML_TYPE_F16, FILL_RANDOM);
    plan[n_plan - 1].ne2 = 3; /* conv2d kernel [patch, patch, 3 channels, n_embd] */
    plan[n_plan - 1].ne3 = n;
    add("v.class_embd", n, 1, GGML_TYPE_F32, FILL_RANDOM);
    add("v.position_embd.weight", n, n_pos, GGML_TYPE_F32, FILL_RANDOM);
    add("v.pre_ln.weight", n, 1, GGML_TYPE_F32, FILL_ONES);
    add("v.pre_ln.bias", n, 1, GGML_TYPE_F32, FILL_ZEROS);
    for (int i = 0; i < s->n_layer; i++) {
        const char *mats[] = {"attn_q", "attn_k", "attn_v", "attn_out"};
        char name[64];
        for (int m = 0; m < 4; m++) {
            snprintf(name, sizeof name, "v.blk.%d.%s.weight", i, mats[m]);
            add_weight(w, name, n, n);
            snprintf(name, sizeof name, "v.blk.%d.%s.bias", i, mats[m]);
            add(name, n, 1, GGML_TYPE_F32, FILL_RANDOM);
        }
        const char *norms[] = {"ln1", "ln2"};
        for (int m = 0; m < 2; m++) {
            snprintf(name, sizeof name, "v.blk.%d.%s.weight", i, norms[m]);
            add(name, n, 1, GGML_TYPE_F32, FILL_ONES);
            snprintf(name, sizeof name, "v.blk.%d.%s.bias", i, norms[m]);
            add(name, n, 1, GGML_TYPE_F32, FILL_ZEROS);
        }
        snprintf(name, sizeof name, "v.blk.%d.ffn_up.weight", i);
        add_weight(w, name, n, s->n_ff);
        snprintf(name, sizeof name, "v.blk.%d.ffn_up.bias", i);
        add(name, s->n_ff, 1, GGML_TYPE_F32, FILL_RANDOM);
        snprintf(name, sizeof name, "v.blk.%d.ffn_down.weight", i);
        add_weight(w, name, s->n_ff, n);
        snprintf(name, sizeof name, "v.blk.%d.ffn_down.bias", i);
        add(name, n, 1, GGML_TYPE_F32, FILL_RANDOM);
    }
    add_weight(w, "mm.0.weight", n, s->proj_dim);
    add("mm.0.bias", s->proj_dim, 1, GGML_TYPE_F32, FILL_RANDOM);
    add_weight(w, "mm.2.weight", s->proj_dim, s->proj_dim);
    add("mm.2.bias", s->proj_dim, 1, GGML_TYPE_F32, FILL_RANDOM);
}

/* Qwen2-Audio (clip.cpp's PROJECTOR_TYPE_QWEN2A): a Whisper encoder under the "a." prefix,
 * average-pooled by 2, then one linear layer into proj_dim (the text model's n_embd). */
#define WHISPER_MELS 128
#define WHISPER_POS 1500 /* 30 s of 10 ms frames, halved by the stride-2 conv */

static void plan_whisper_qwen2a(const shape *s, wtype w) {
    int64_t n = s->n_embd;
    /* conv1d kernels [kernel 3, in channels, out channels] (F16, as im2col takes them); their
     * biases [1, n] (the converter unsqueezes them so they broadcast over frames) */
    add("a.conv1d.1.weight", 3, WHISPER_MELS, GGML_TYPE_F16, FILL_RANDOM);
    plan[n_plan - 1].ne2 = n;
    add("a.conv1d.1.bias", 1, n, GGML_TYPE_F32, FILL_RANDOM);
    add("a.conv1d.2.weight", 3, n, GGML_TYPE_F16, FILL_RANDOM);
    plan[n_plan - 1].ne2 = n;
    add("a.conv1d.2.bias", 1, n, GGML_TYPE_F32, FILL_RANDOM);
    add("a.position_embd.weight", n, WHISPER_POS, GGML_TYPE_F32, FILL_RANDOM);
    for (int i = 0; i < s->n_layer; i++) {
        const char *mats[] = {"attn_q", "attn_k", "attn_v", "attn_out"};
        char name[64];
        for (int m = 0; m < 4; m++) {
            snprintf(name, sizeof name, "a.blk.%d.%s.weight", i, mats[m]);
            add_weight(w, name, n, n);
            if (m == 1) continue; /* Whisper's K projection has no bias */
            snprintf(name, sizeof name, "a.blk.%d.%s.bias", i, mats[m]);
            add(name, n, 1, GGML_TYPE_F32, FILL_RANDOM);
        }
        const char *norms[] = {"ln1", "ln2"};
        for (int m = 0; m < 2; m++) {
            snprintf(name, sizeof name, "a.blk.%d.%s.weight", i, norms[m]);
            add(name, n, 1, GGML_TYPE_F32, FILL_ONES);
            snprintf(name, sizeof name, "a.blk.%d.%s.bias", i, norms[m]);
            add(name, n, 1, GGML_TYPE_F32, FILL_ZEROS);
        }
        snprintf(name, sizeof name, "a.blk.%d.ffn_up.weight", i);
        add_weight(w, name, n, s->n_ff);
        snprintf(name, sizeof name, "a.blk.%d.ffn_up.bias", i);
        add(name, s->n_ff, 1, GGML_TYPE_F32, FILL_RANDOM);
        snprintf(name, sizeof name, "a.blk.%d.ffn_down.weight", i);
        add_weight(w, name, s->n_ff, n);
        snprintf(name, sizeof name, "a.blk.%d.ffn_down.bias", i);
        add(name, n, 1, GGML_TYPE_F32, FILL_RANDOM);
    }
    add("a.post_ln.weight", n, 1, GGML_TYPE_F32, FILL_ONES);
    add("a.post_ln.bias", n, 1, GGML_TYPE_F32, FILL_ZEROS);
    add_weight(w, "mm.a.fc.weight", n, s->proj_dim);
    add("mm.a.fc.bias", s->proj_dim, 1, GGML_TYPE_F32, FILL_RANDOM);
}

static void set_qwen2a_keys(struct gguf_context *g, const shape *s) {
    gguf_set_val_str(g, "clip.projector_type", "qwen2a");
    gguf_set_val_bool(g, "clip.has_vision_encoder", false);
    gguf_set_val_bool(g, "clip.has_audio_encoder", true);
    gguf_set_val_u32(g, "clip.audio.embedding_length", (uint32_t)s->n_embd);
    gguf_set_val_u32(g, "clip.audio.feed_forward_length", (uint32_t)s->n_ff);
    gguf_set_val_u32(g, "clip.audio.block_count", (uint32_t)s->n_layer);
    gguf_set_val_u32(g, "clip.audio.projection_dim", (uint32_t)s->proj_dim);
    gguf_set_val_u32(g, "clip.audio.attention.head_count", (uint32_t)s->n_head);
    gguf_set_val_f32(g, "clip.audio.attention.layer_norm_epsilon", 1e-5f);
    gguf_set_val_u32(g, "clip.audio.num_mel_bins", WHISPER_MELS);
}

/* The projector's keys (clip.cpp's load_hparams), for plan_clip_llava's tensors. */
static void set_clip_keys(struct gguf_context *g, const shape *s) {
    gguf_set_val_str(g, "clip.projector_type", "mlp");
    gguf_set_val_bool(g, "clip.has_vision_encoder", true);
    gguf_set_val_bool(g, "clip.has_audio_encoder", false);
    gguf_set_val_u32(g, "clip.vision.embedding_length", (uint32_t)s->n_embd);
    gguf_set_val_u32(g, "clip.vision.feed_forward_length", (uint32_t)s->n_ff);
    gguf_set_val_u32(g, "clip.vision.block_count", (uint32_t)s->n_layer);
    gguf_set_val_u32(g, "clip.vision.projection_dim", (uint32_t)s->proj_dim);
    gguf_set_val_u32(g, "clip.vision.attention.head_count", (uint32_t)s->n_head);
    gguf_set_val_f32(g, "clip.vision.attention.layer_norm_epsilon", 1e-5f);
    gguf_set_val_u32(g, "clip.vision.image_size", (uint32_t)s->image_size);
    gguf_set_val_u32(g, "clip.vision.patch_size", (uint32_t)s->patch_size);
    /* CLIP's normalization constants, as LLaVA's converter writes them */
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float std_[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    gguf_set_arr_data(g, "clip.vision.image_mean", GGUF_TYPE_FLOAT32, mean, 3);
    gguf_set_arr_data(g, "clip.vision.image_std", GGUF_TYPE_FLOAT32, std_, 3);
}

/* ---- writing ------------------------------------------------------------------------------ */

static void set_arch_u32(struct gguf_context *g, const char *arch, const char *key, uint32_t v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    gguf_set_val_u32(g, k, v);
}

static int write_tensor(FILE *f, const tensor_plan *p, size_t alignment, float scale) {
    int64_t rows = p->ne1 * p->ne2 * p->ne3;
    size_t n = (size_t)(p->ne0 * rows);
    float *src = malloc(n * sizeof *src);
    size_t bytes = ggml_row_size(p->type, p->ne0) * (size_t)rows;
    void *dst = p->type == GGML_TYPE_F32 ? (void *)src : malloc(bytes);
    if (!src || !dst) return -1;
    for (size_t i = 0; i < n; i++)
        src[i] = p->fill == FILL_ONES         ? 1.0f
                 : p->fill == FILL_ZEROS      ? 0.0f
                 : p->fill == FILL_AROUND_ONE ? 1.0f + 0.5f * rng_uniform()
                 : p->fill == FILL_FREQS      ? 2.5f + 1.5f * rng_uniform()
                                              : scale * rng_uniform();
    if (p->type == GGML_TYPE_F16)
        ggml_fp32_to_fp16_row(src, dst, (int64_t)n);
    else if (p->type != GGML_TYPE_F32)
        ggml_quantize_chunk(p->type, src, dst, 0, rows, p->ne0, NULL);
    int rc = fwrite(dst, 1, bytes, f) == bytes ? 0 : -1;
    static const char zeros[64] = {0};
    size_t pad = (alignment - bytes % alignment) % alignment;
    if (rc == 0 && pad && fwrite(zeros, 1, pad, f) != pad) rc = -1;
    if (dst != src) free(dst);
    free(src);
    return rc;
}

static const char usage[] =
    "usage: sipp-make-model --shape NAME [--type f16|q8_0|q4_k_m] [--seed N]\n"
    "                       [--vocab-dir DIR] [--chat-template FILE.jinja] --out FILE.gguf\n"
    "\n"
    "Write a random-weight GGUF of a real model shape for tests and benchmarks.\n"
    "shapes: llama-135m llama-0.5b llama-1b llama-8b bert-small bert-rerank llava-text\n"
    "        llava-mmproj (the vision projector for llava-text: pass it as mmproj)\n"
    "        llava-b-text llava-b-mmproj (a ViT-B/16 pair for the media benchmark)\n"
    "        qwen2a-mmproj (an audio encoder for llava-text: pass it as mmproj)\n"
    "        llama-tiny qwen2-tiny qwen3-tiny (WebGPU test shapes)\n"
    "        tiny-llama3 tiny-qwen2 tiny-gpt2 (chat template tests)\n"
    "--chat-template: the model's tokenizer.chat_template, read from a file\n"
    "--vocab-dir: llama.cpp's models/ folder with the vocab-only GGUFs (default $SIPP_LLAMA_SRC/models)\n";

int main(int argc, char **argv) {
    const char *shape_name = NULL, *out = NULL, *vocab_dir = getenv("SIPP_LLAMA_SRC");
    char vocab_default[4096];
    if (vocab_dir) {
        snprintf(vocab_default, sizeof vocab_default, "%s/models", vocab_dir);
        vocab_dir = vocab_default;
    }
    wtype w = W_Q8_0;
    uint64_t seed = 42;
    const char *template_path = NULL;
    static const struct option opts[] = {
        {"shape", required_argument, 0, 's'}, {"type", required_argument, 0, 't'},
        {"seed", required_argument, 0, 'r'},  {"vocab-dir", required_argument, 0, 'v'},
        {"out", required_argument, 0, 'o'},   {"help", no_argument, 0, 'h'},
        {"chat-template", required_argument, 0, 'c'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 's': shape_name = optarg; break;
        case 'o': out = optarg; break;
        case 'v': vocab_dir = optarg; break;
        case 'c': template_path = optarg; break;
        case 'r': seed = strtoull(optarg, NULL, 10); break;
        case 't':
            for (w = 0; w < 3 && strcmp(optarg, wtype_names[w]) != 0; w++) {
            }
            if (w == 3) {
                fprintf(stderr, "sipp-make-model: error: unknown --type '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    const shape *s = NULL;
    for (size_t i = 0; shape_name && i < sizeof shapes / sizeof shapes[0]; i++)
        if (strcmp(shapes[i].name, shape_name) == 0) s = &shapes[i];
    if (!s || !out || (!vocab_dir && s->vocab_file)) {
        fprintf(stderr, "sipp-make-model: error: %s\n",
                !s ? "--shape is missing or unknown" : !out ? "--out is required"
                                                         : "--vocab-dir (or SIPP_LLAMA_SRC) is required");
        return 2;
    }
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    varied = s->varied;

    struct gguf_context *g = gguf_init_empty();
    struct gguf_context *vocab = NULL;
    int64_t n_vocab = 0;
    char name[128];
    snprintf(name, sizeof name, "sipp random %s %s", s->name, wtype_names[w]);
    if (strcmp(s->arch, "clip") == 0) { /* a projector: no tokenizer, clip.* keys */
        gguf_set_val_str(g, "general.architecture", s->arch);
        gguf_set_val_str(g, "general.name", name);
        gguf_set_val_u32(g, "general.file_type", ftype_ids[w]);
        if (strcmp(s->name, "qwen2a-mmproj") == 0) {
            set_qwen2a_keys(g, s);
            plan_whisper_qwen2a(s, w);
        } else {
            set_clip_keys(g, s);
            plan_clip_llava(s, w);
        }
    } else {
        char vocab_path[8192];
        snprintf(vocab_path, sizeof vocab_path, "%s/%s", vocab_dir, s->vocab_file);
        struct gguf_init_params vp = {.no_alloc = true, .ctx = NULL};
        vocab = gguf_init_from_file(vocab_path, vp);
        if (!vocab) {
            fprintf(stderr, "sipp-make-model: error: cannot read vocab '%s'\n", vocab_path);
            gguf_free(g);
            return 1;
        }
        int64_t tok_key = gguf_find_key(vocab, "tokenizer.ggml.tokens");
        n_vocab = tok_key >= 0 ? (int64_t)gguf_get_arr_n(vocab, tok_key) : 0;
        if (n_vocab <= 0) {
            fprintf(stderr, "sipp-make-model: error: '%s' has no tokenizer.ggml.tokens\n", vocab_path);
            gguf_free(g);
            gguf_free(vocab);
            return 1;
        }

        gguf_set_kv(g, vocab); /* the tokenizer, and the vocab file's general.* keys (overwritten) */
        gguf_set_val_str(g, "general.architecture", s->arch);
        if (template_path) { /* --chat-template: tokenizer.chat_template from a file */
            FILE *tf = fopen(template_path, "rb");
            char *tmpl = NULL;
            long tn = -1;
            bool ok = tf && fseek(tf, 0, SEEK_END) == 0 && (tn = ftell(tf)) >= 0 &&
                      fseek(tf, 0, SEEK_SET) == 0 && (tmpl = calloc(1, (size_t)tn + 1)) &&
                      fread(tmpl, 1, (size_t)tn, tf) == (size_t)tn;
            if (ok) gguf_set_val_str(g, "tokenizer.chat_template", tmpl);
            free(tmpl);
            if (tf) fclose(tf);
            if (!ok) {
                fprintf(stderr, "sipp-make-model: error: cannot read chat template '%s'\n",
                        template_path);
                gguf_free(g);
                gguf_free(vocab);
                return 1;
            }
        }
        gguf_set_val_str(g, "general.name", name);
        gguf_set_val_u32(g, "general.file_type", ftype_ids[w]);
        gguf_set_val_u32(g, "general.quantization_version", GGML_QNT_VERSION);
        set_arch_u32(g, s->arch, "context_length", (uint32_t)s->n_ctx);
        set_arch_u32(g, s->arch, "embedding_length", (uint32_t)s->n_embd);
        set_arch_u32(g, s->arch, "block_count", (uint32_t)s->n_layer);
        set_arch_u32(g, s->arch, "feed_forward_length", (uint32_t)s->n_ff);
        set_arch_u32(g, s->arch, "attention.head_count", (uint32_t)s->n_head);
        char k[128];
        if (strcmp(s->arch, "bert") != 0) { /* llama, qwen2, qwen3 */
            set_arch_u32(g, s->arch, "attention.head_count_kv", (uint32_t)s->n_head_kv);
            set_arch_u32(g, s->arch, "rope.dimension_count", (uint32_t)(s->n_embd / s->n_head));
            set_arch_u32(g, s->arch, "vocab_size", (uint32_t)n_vocab);
            snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", s->arch);
            gguf_set_val_f32(g, k, 1e-5f);
            snprintf(k, sizeof k, "%s.rope.freq_base", s->arch);
            gguf_set_val_f32(g, k, varied ? 50000.0f : 10000.0f); /* tests: not the default */
            plan_llama(s, w, n_vocab);
        } else {
            snprintf(k, sizeof k, "%s.attention.layer_norm_epsilon", s->arch);
            gguf_set_val_f32(g, k, 1e-12f);
            snprintf(k, sizeof k, "%s.attention.causal", s->arch);
            gguf_set_val_bool(g, k, false);
            set_arch_u32(g, s->arch, "pooling_type", (uint32_t)s->pooling);
            plan_bert(s, w, n_vocab);
        }
    }

    /* Tensor infos: a no_alloc ggml context holds their shapes, gguf computes the offsets. */
    struct ggml_init_params ip = {.mem_size = (size_t)n_plan * ggml_tensor_overhead() + 1024,
                                  .mem_buffer = NULL, .no_alloc = true};
    struct ggml_context *meta = ggml_init(ip);
    for (int i = 0; i < n_plan; i++) {
        const tensor_plan *p = &plan[i];
        struct ggml_tensor *t =
            p->ne2 > 1 ? ggml_new_tensor_4d(meta, p->type, p->ne0, p->ne1, p->ne2, p->ne3)
            : p->ne1 == 1 ? ggml_new_tensor_1d(meta, p->type, p->ne0)
                          : ggml_new_tensor_2d(meta, p->type, p->ne0, p->ne1);
        ggml_set_name(t, plan[i].name);
        gguf_add_tensor(g, t);
    }

    char tmp[8192];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "sipp-make-model: error: cannot write '%s': %s\n", tmp, strerror(errno));
        return 1;
    }
    size_t meta_size = gguf_get_meta_size(g);
    void *meta_buf = malloc(meta_size);
    gguf_get_meta_data(g, meta_buf);
    int rc = fwrite(meta_buf, 1, meta_size, f) == meta_size ? 0 : -1;
    free(meta_buf);
    size_t alignment = gguf_get_alignment(g);
    uint64_t n_params = 0;
    for (int i = 0; rc == 0 && i < n_plan; i++) {
        rc = write_tensor(f, &plan[i], alignment,
                          s->scale > 0 ? s->scale : varied ? 0.08f : 0.02f);
        n_params += (uint64_t)(plan[i].ne0 * plan[i].ne1 * plan[i].ne2 * plan[i].ne3);
    }
    if (fclose(f) != 0) rc = -1;
    if (rc == 0 && rename(tmp, out) != 0) rc = -1;
    if (rc != 0) {
        remove(tmp);
        fprintf(stderr, "sipp-make-model: error: writing '%s' failed\n", out);
    } else {
        fprintf(stderr, "sipp-make-model: wrote %s (%s, %.1fM params, %s, vocab %lld)\n", out,
                s->name, (double)n_params / 1e6, wtype_names[w], (long long)n_vocab);
    }
    ggml_free(meta);
    gguf_free(g);
    if (vocab) gguf_free(vocab);
    return rc == 0 ? 0 : 1;
}
