/*
 * model.c — model inspection without an endpoint: metadata, capabilities and the chat
 * template, read by loading the model with llama.cpp's no_alloc mode (no weights in memory).
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

sipp_status sipp_model_inspect(const char *path, sipp_endpoint_info *info, char **chat_template_out,
                               sipp_error *err) {
    if (chat_template_out) *chat_template_out = NULL;
    if (!path || !info || info->struct_size < sizeof *info)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "path and an initialised info are required");
    sipp_status st = sipp__gguf_precheck(path, err);
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
    sipp_endpoint_info in = sipp_endpoint_info_default();
    llama_model_meta_val_str(m, "general.architecture", in.architecture, sizeof in.architecture);
    read_gguf_meta(path, &in);
    in.n_ctx = in.n_ctx_train;

    char key[128], buf[32];
    snprintf(key, sizeof key, "%s.attention.causal", in.architecture);
    bool embed_only = !llama_model_has_decoder(m) ||
                      (llama_model_meta_val_str(m, key, buf, sizeof buf) >= 0 &&
                       strcmp(buf, "false") == 0);
    snprintf(key, sizeof key, "%s.pooling_type", in.architecture);
    bool rank = llama_model_meta_val_str(m, key, buf, sizeof buf) >= 0 &&
                atoi(buf) == LLAMA_POOLING_TYPE_RANK;
    const char *tmpl = llama_model_chat_template(m, NULL);
    in.can_generate = !embed_only;
    in.can_chat = !embed_only && tmpl != NULL;
    in.can_embed = !rank && !llama_model_is_recurrent(m) && !llama_model_is_hybrid(m);
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
