/*
 * logits_ref.c — `sipp-logits-ref`: llama.cpp's CPU logits for given tokens of a GGUF, the
 * reference the WebGPU pipeline's tests compare against (web/test/webgpu.test.mjs).
 *
 *   sipp-logits-ref -m MODEL.gguf -t 1,2,3 [-g N] [--out FILE.bin] [--quantize TYPE OUT.gguf]
 *
 * Evaluates the tokens in one batch (F32 KV cache, no flash attention) (one sequence, positions 0..n-1, logits for every row),
 * then, with -g N, continues greedily N tokens (one decode per token). Writes to --out the
 * little-endian binary: u32 n_vocab, u32 n_rows, then n_rows x n_vocab f32 logits (the
 * prompt's rows, then one row per generated token, each the logits that chose the next
 * token); prints a JSON line {"n_vocab":..,"rows":..,"greedy":[..]} on stdout.
 * --quantize TYPE IN OUT (TYPE: q8_0 q4_0 q4_k_m q5_k_m q6_k) writes IN quantized with
 * llama.cpp's quantizer instead (the tests' quantized models) and exits.
 * --dequantize IN OUT writes IN with every tensor converted to F32 by ggml's own dequantizers:
 * llama.cpp on that file computes with exactly the weights a quantized file holds, in f32
 * (on the quantized file itself it rounds the activations to 8 bits for its dot products).
 */
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quiet(enum ggml_log_level level, const char *text, void *ud) {
    (void)ud;
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int quantize(const char *type, const char *in, const char *out) {
    static const struct { const char *name; enum llama_ftype ft; } types[] = {
        {"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},     {"q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
        {"q4_k_m", LLAMA_FTYPE_MOSTLY_Q4_K_M}, {"q5_k_m", LLAMA_FTYPE_MOSTLY_Q5_K_M},
        {"q6_k", LLAMA_FTYPE_MOSTLY_Q6_K},     {"q4_k_s", LLAMA_FTYPE_MOSTLY_Q4_K_S},
        {"q5_k_s", LLAMA_FTYPE_MOSTLY_Q5_K_S},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(type, types[i].name) != 0) continue;
        llama_model_quantize_params qp = llama_model_quantize_default_params();
        qp.ftype = types[i].ft;
        qp.nthread = 2;
        if (llama_model_quantize(in, out, &qp) != 0) {
            fprintf(stderr, "sipp-logits-ref: error: quantizing '%s' failed\n", in);
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "sipp-logits-ref: error: unknown quantization type '%s'\n", type);
    return 2;
}

static int dequantize(const char *in, const char *out) {
    struct ggml_context *data = NULL;
    struct gguf_init_params ip = {.no_alloc = false, .ctx = &data};
    struct gguf_context *g = gguf_init_from_file(in, ip);
    if (!g) {
        fprintf(stderr, "sipp-logits-ref: error: cannot read '%s'\n", in);
        return 1;
    }
    int64_t n = gguf_get_n_tensors(g);
    struct ggml_init_params cp = {.mem_size = ggml_get_mem_size(data) * 8 + (size_t)n * ggml_tensor_overhead(),
                                  .mem_buffer = NULL, .no_alloc = false};
    struct ggml_context *conv = ggml_init(cp);
    struct gguf_context *o = gguf_init_empty();
    gguf_set_kv(o, g);
    gguf_set_val_u32(o, "general.file_type", 0); /* all F32 */
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        struct ggml_tensor *t = ggml_get_tensor(data, gguf_get_tensor_name(g, i));
        struct ggml_tensor *f = ggml_new_tensor(conv, GGML_TYPE_F32, ggml_n_dims(t), t->ne);
        ggml_set_name(f, t->name);
        const struct ggml_type_traits *tr = ggml_get_type_traits(t->type);
        if (t->type == GGML_TYPE_F32) memcpy(f->data, t->data, ggml_nbytes(t));
        else if (tr->to_float) tr->to_float(t->data, f->data, ggml_nelements(t));
        else rc = 1;
        gguf_add_tensor(o, f);
    }
    if (rc == 0 && !gguf_write_to_file(o, out, false)) rc = 1;
    if (rc) fprintf(stderr, "sipp-logits-ref: error: dequantizing '%s' failed\n", in);
    gguf_free(o);
    ggml_free(conv);
    ggml_free(data);
    gguf_free(g);
    return rc;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *tokens_arg = NULL, *out_path = NULL;
    int n_gen = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) model_path = argv[++i];
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) tokens_arg = argv[++i];
        else if (strcmp(argv[i], "-g") == 0 && i + 1 < argc) n_gen = atoi(argv[++i]);
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out_path = argv[++i];
        else if (strcmp(argv[i], "--dequantize") == 0 && i + 2 < argc) {
            return dequantize(argv[i + 1], argv[i + 2]);
        } else if (strcmp(argv[i], "--quantize") == 0 && i + 3 < argc) {
            llama_log_set(quiet, NULL);
            llama_backend_init();
            int rc = quantize(argv[i + 1], argv[i + 2], argv[i + 3]);
            llama_backend_free();
            return rc;
        } else {
            fprintf(stderr, "usage: sipp-logits-ref -m MODEL.gguf -t T1,T2,... [-g N] [--out FILE]\n"
                            "       sipp-logits-ref --quantize TYPE IN.gguf OUT.gguf\n"
                            "       sipp-logits-ref --dequantize IN.gguf OUT.gguf\n");
            return 2;
        }
    }
    if (!model_path || !tokens_arg || n_gen < 0) {
        fprintf(stderr, "sipp-logits-ref: error: -m and -t are required\n");
        return 2;
    }
    int n_prompt = 1;
    for (const char *p = tokens_arg; *p; p++) n_prompt += *p == ',';
    llama_token *toks = malloc(sizeof *toks * (size_t)(n_prompt + n_gen + 1));
    if (!toks) return 1;
    {
        const char *p = tokens_arg;
        for (int i = 0; i < n_prompt; i++) {
            char *end;
            toks[i] = (llama_token)strtol(p, &end, 10);
            if (end == p) {
                fprintf(stderr, "sipp-logits-ref: error: bad token list\n");
                return 2;
            }
            p = *end == ',' ? end + 1 : end;
        }
    }

    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) {
        fprintf(stderr, "sipp-logits-ref: error: cannot load '%s'\n", model_path);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_prompt + n_gen + 16);
    cp.n_batch = cp.n_ubatch = (uint32_t)(n_prompt > 512 ? n_prompt : 512);
    cp.n_threads = cp.n_threads_batch = 2;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = cp.type_v = GGML_TYPE_F32; /* an F16 cache would round what is compared */
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "sipp-logits-ref: error: cannot create a context\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    const int n_rows = n_prompt + (n_gen > 0 ? n_gen - 1 : 0); /* rows written to --out */
    float *all = malloc(sizeof *all * (size_t)n_vocab * (size_t)(n_prompt + n_gen));
    if (!all) return 1;

    struct llama_batch b = llama_batch_init(n_prompt, 0, 1);
    for (int i = 0; i < n_prompt; i++) {
        b.token[i] = toks[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n_prompt;
    if (llama_decode(ctx, b) != 0) {
        fprintf(stderr, "sipp-logits-ref: error: decode failed\n");
        return 1;
    }
    for (int i = 0; i < n_prompt; i++)
        memcpy(all + (size_t)i * n_vocab, llama_get_logits_ith(ctx, i), sizeof(float) * n_vocab);
    printf("{\"n_vocab\":%d,\"rows\":%d,\"greedy\":[", n_vocab, n_rows);
    const float *last = all + (size_t)(n_prompt - 1) * n_vocab;
    for (int g = 0; g < n_gen; g++) {
        int best = 0;
        for (int v = 1; v < n_vocab; v++)
            if (last[v] > last[best]) best = v;
        printf("%s%d", g ? "," : "", best);
        if (g + 1 == n_gen) break;
        b.n_tokens = 1;
        b.token[0] = best;
        b.pos[0] = n_prompt + g;
        b.logits[0] = 1;
        if (llama_decode(ctx, b) != 0) {
            fprintf(stderr, "sipp-logits-ref: error: decode failed\n");
            return 1;
        }
        float *row = all + (size_t)(n_prompt + g) * n_vocab;
        memcpy(row, llama_get_logits_ith(ctx, 0), sizeof(float) * n_vocab);
        last = row;
    }
    printf("]}\n");
    if (out_path) {
        FILE *f = fopen(out_path, "wb");
        uint32_t hdr[2] = {(uint32_t)n_vocab, (uint32_t)n_rows};
        if (!f || fwrite(hdr, sizeof hdr, 1, f) != 1 ||
            fwrite(all, sizeof(float) * n_vocab, (size_t)n_rows, f) != (size_t)n_rows || fclose(f) != 0) {
            fprintf(stderr, "sipp-logits-ref: error: cannot write '%s'\n", out_path);
            return 1;
        }
    }
    llama_batch_free(b);
    free(all);
    free(toks);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
