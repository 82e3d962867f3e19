/*
 * model.c — what Sipp reads from a model without running it: capabilities (one rule, used by
 * the engine at open and by inspection), inspection without an endpoint (metadata,
 * capabilities and the chat template, read with llama.cpp's vocab-only load: no weights in
 * memory), the position-table check and the quantization name.
 *
 * Any thread; no state of its own. Takes file paths only: pulled names are resolved by the
 * client layer (sipp_model_inspect in src/client) before they get here, so the engine never
 * calls the hub. Depends on gguf_check.c and backend_init.c, never on the engine's files.
 */
#include "engine_int.h"

#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t gguf_u32(const struct gguf_context *g, const char *arch, const char *suffix) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t id = gguf_find_key(g, key);
    if (id < 0) return 0;
    switch (gguf_get_kv_type(g, id)) {
    case GGUF_TYPE_UINT32: return gguf_get_val_u32(g, id);
    case GGUF_TYPE_INT32: return (uint32_t)gguf_get_val_i32(g, id);
    case GGUF_TYPE_UINT64: return (uint32_t)gguf_get_val_u64(g, id);
    default: return 0;
    }
}

/* Reads what a vocab-only load leaves out from the GGUF itself: parameter count and size
 * (summed over the tensor table; no tensor data is read), context and embedding length, and
 * the model's name for the description. */
static void read_gguf_meta(const char *path, sipp_endpoint_info *in) {
    struct ggml_context *meta = NULL;
    struct gguf_init_params gp = {.no_alloc = true, .ctx = &meta};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) return;
    for (struct ggml_tensor *t = ggml_get_first_tensor(meta); t; t = ggml_get_next_tensor(meta, t)) {
        in->n_params += (uint64_t)ggml_nelements(t);
        in->size_bytes += ggml_nbytes(t);
    }
    in->n_ctx_train = gguf_u32(g, in->architecture, "context_length");
    in->n_embd = gguf_u32(g, in->architecture, "embedding_length");
    int64_t id = gguf_find_key(g, "general.name");
    const char *name = id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_STRING
                           ? gguf_get_val_str(g, id) : in->architecture;
    snprintf(in->description, sizeof in->description, "%s, %.2fM params", name,
             (double)in->n_params / 1e6);
    ggml_free(meta);
    gguf_free(g);
}

/* Reads "<arch>.<suffix>" metadata as a string; returns false when absent. */
static bool arch_meta(const struct llama_model *m, const char *arch, const char *suffix,
                      char *buf, size_t cap) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return llama_model_meta_val_str(m, key, buf, cap) >= 0;
}

void sipp__model_caps_read(const struct llama_model *m, const char *arch, sipp__model_caps *out) {
    char buf[32];
    out->embed_only = !llama_model_has_decoder(m) ||
                      (arch_meta(m, arch, "attention.causal", buf, sizeof buf) &&
                       strcmp(buf, "false") == 0);
    out->can_embed = !llama_model_is_recurrent(m) && !llama_model_is_hybrid(m);
    out->reranker = false;
    out->pooling = LLAMA_POOLING_TYPE_MEAN;
    if (arch_meta(m, arch, "pooling_type", buf, sizeof buf)) {
        int v = atoi(buf);
        if (v == LLAMA_POOLING_TYPE_RANK) { /* a reranker scores, it does not embed */
            out->can_embed = false;
            out->reranker = true;
        }
        if (v > LLAMA_POOLING_TYPE_NONE) out->pooling = v;
    }
}

bool sipp__model_has_position_table(const char *path) {
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) return false;
    bool found = gguf_find_tensor(g, "position_embd.weight") >= 0;
    gguf_free(g);
    return found;
}

sipp_status sipp__model_inspect(const char *path, sipp_endpoint_info *info,
                                char **chat_template_out, sipp_error *err) {
    if (chat_template_out) *chat_template_out = NULL;
    sipp_status st = sipp__gguf_precheck(path, NULL, err);
    if (st != SIPP_OK) return st;
    sipp__llama_init_once();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    mp.n_gpu_layers = 0;
    struct llama_model *m = llama_model_load_from_file(path, mp);
    if (!m)
        return sipp__fail(err, SIPP_MODEL_INVALID, 0,
                          "llama.cpp could not read '%s' (corrupt, truncated or unsupported model)",
                          path);
    sipp_endpoint_info in = {.struct_size = sizeof in};
    llama_model_meta_val_str(m, "general.architecture", in.architecture, sizeof in.architecture);
    read_gguf_meta(path, &in);
    in.n_ctx = in.n_ctx_train;

    sipp__model_caps caps;
    sipp__model_caps_read(m, in.architecture, &caps);
    const char *tmpl = llama_model_chat_template(m, NULL);
    in.can_generate = !caps.embed_only;
    in.can_chat = !caps.embed_only && tmpl != NULL;
    in.can_embed = caps.can_embed;
    if (chat_template_out && tmpl) {
        *chat_template_out = sipp__strdup(tmpl);
        if (!*chat_template_out) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    llama_model_free(m);
    uint32_t size = info->struct_size;
    *info = in;
    info->struct_size = size;
    return st;
}

/* ---- quantization of a file (for `sipp models`) -------------------------------------------- */

/* general.file_type values (llama_ftype) and the names llama-quantize gives them. */
static const struct {
    uint32_t ftype;
    const char *name;
} ftype_names[] = {
    {0, "F32"},      {1, "F16"},      {2, "Q4_0"},     {3, "Q4_1"},     {7, "Q8_0"},
    {8, "Q5_0"},     {9, "Q5_1"},     {10, "Q2_K"},    {11, "Q3_K_S"},  {12, "Q3_K_M"},
    {13, "Q3_K_L"},  {14, "Q4_K_S"},  {15, "Q4_K_M"},  {16, "Q5_K_S"},  {17, "Q5_K_M"},
    {18, "Q6_K"},    {19, "IQ2_XXS"}, {20, "IQ2_XS"},  {21, "Q2_K_S"},  {22, "IQ3_XS"},
    {23, "IQ3_XXS"}, {24, "IQ1_S"},   {25, "IQ4_NL"},  {26, "IQ3_S"},   {27, "IQ3_M"},
    {28, "IQ2_S"},   {29, "IQ2_M"},   {30, "IQ4_XS"},  {31, "IQ1_M"},   {32, "BF16"},
    {36, "TQ1_0"},   {37, "TQ2_0"},   {38, "MXFP4_MOE"},
};

void sipp__model_quant_name(const char *path, char *buf, size_t cap) {
    buf[0] = '\0';
    if (sipp__gguf_precheck(path, NULL, NULL) != SIPP_OK) return;
    struct ggml_context *meta = NULL;
    struct gguf_init_params gp = {.no_alloc = true, .ctx = &meta};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g) return;
    int64_t id = gguf_find_key(g, "general.file_type");
    if (id >= 0 && gguf_get_kv_type(g, id) == GGUF_TYPE_UINT32) {
        uint32_t ft = gguf_get_val_u32(g, id);
        for (size_t i = 0; i < sizeof ftype_names / sizeof ftype_names[0]; i++)
            if (ftype_names[i].ftype == ft) snprintf(buf, cap, "%s", ftype_names[i].name);
    }
    if (!buf[0]) { /* no file type: the type holding most bytes among 2-D weights */
        size_t bytes[GGML_TYPE_COUNT] = {0};
        for (struct ggml_tensor *t = ggml_get_first_tensor(meta); t; t = ggml_get_next_tensor(meta, t))
            if (ggml_n_dims(t) >= 2 && (int)t->type < GGML_TYPE_COUNT) bytes[t->type] += ggml_nbytes(t);
        int best = -1;
        for (int i = 0; i < GGML_TYPE_COUNT; i++)
            if (bytes[i] && (best < 0 || bytes[i] > bytes[best])) best = i;
        if (best >= 0) {
            snprintf(buf, cap, "%s", ggml_type_name((enum ggml_type)best));
            for (char *p = buf; *p; p++)
                if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
        }
    }
    ggml_free(meta);
    gguf_free(g);
}
