/*
 * abi_layout.c — prints the size and field offsets of every plain-data struct of sipp.h as one
 * JSON object. The binding tests (Python ctypes, Rust repr(C)) compare their mirrors of these
 * structs against it, so a field appended to sipp.h without updating a mirror fails a test
 * instead of corrupting memory.
 *
 * Invariant: every struct lists all its fields, the last one with L(). L() asserts at compile time
 * that this field ends the struct (up to tail padding), so a field appended to sipp.h but not here
 * breaks the build of this program rather than slipping past the binding tests.
 * The five params structs come from their settings tables (sipp_settings.h), which make the same
 * check.
 */
#include <sipp.h>
#include <sipp_settings.h>

#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>

static int first_struct = 1;
static int first_field;

static void begin(const char *name, size_t size) {
    printf("%s\"%s\": {\"size\": %zu, \"fields\": {", first_struct ? "" : ",\n", name, size);
    first_struct = 0;
    first_field = 1;
}

static void field(const char *name, size_t off) {
    printf("%s\"%s\": %zu", first_field ? "" : ", ", name, off);
    first_field = 0;
}

static void end(void) { printf("}}"); }

#define ROUND_UP(n, a) (((n) + (a) - 1) / (a) * (a))
#define S(type) begin(#type, sizeof(type))
#define F(type, f) field(#f, offsetof(type, f))
/* The last field: it must end the struct, else sipp.h grew a field this list lacks. */
#define L(type, f)                                                                                \
    do {                                                                                          \
        _Static_assert(ROUND_UP(offsetof(type, f) + sizeof(((type *)0)->f), alignof(type)) ==     \
                           sizeof(type),                                                          \
                       #type " has fields after " #f ": list them here and in the bindings");     \
        F(type, f);                                                                               \
        end();                                                                                    \
    } while (0)

int main(void) {
    printf("{\n");
    S(sipp_error); F(sipp_error, struct_size); F(sipp_error, code); F(sipp_error, subcode);
    L(sipp_error, message);
    S(sipp_client_params); F(sipp_client_params, struct_size); L(sipp_client_params, log_level);
    /* the params structs: their tables list every field (sipp_settings.h checks that) */
#define TABLE_FIELD(f, ...) field(#f, offsetof(SIPP__LAYOUT_T, f));
#define SIPP__LAYOUT_T sipp_local_params
    S(sipp_local_params); SIPP_LOCAL_SETTINGS(TABLE_FIELD) end();
#undef SIPP__LAYOUT_T
#define SIPP__LAYOUT_T sipp_provider_params
    S(sipp_provider_params); SIPP_PROVIDER_SETTINGS(TABLE_FIELD) end();
#undef SIPP__LAYOUT_T
#define SIPP__LAYOUT_T sipp_gateway_params
    S(sipp_gateway_params); SIPP_GATEWAY_SETTINGS(TABLE_FIELD) end();
#undef SIPP__LAYOUT_T
    S(sipp_endpoint_info); F(sipp_endpoint_info, struct_size); F(sipp_endpoint_info, can_generate);
    F(sipp_endpoint_info, can_chat); F(sipp_endpoint_info, can_embed); F(sipp_endpoint_info, n_ctx);
    F(sipp_endpoint_info, n_ctx_train); F(sipp_endpoint_info, n_embd);
    F(sipp_endpoint_info, n_parallel); F(sipp_endpoint_info, n_params);
    F(sipp_endpoint_info, size_bytes); F(sipp_endpoint_info, architecture);
    F(sipp_endpoint_info, description); F(sipp_endpoint_info, vision);
    F(sipp_endpoint_info, audio_in); L(sipp_endpoint_info, audio_out);
    S(sipp_engine_stats); F(sipp_engine_stats, struct_size); F(sipp_engine_stats, running);
    F(sipp_engine_stats, queued); F(sipp_engine_stats, completed); F(sipp_engine_stats, cancelled);
    F(sipp_engine_stats, failed); F(sipp_engine_stats, rejected_busy);
    F(sipp_engine_stats, prompt_tokens); F(sipp_engine_stats, generated_tokens);
    F(sipp_engine_stats, ticks); F(sipp_engine_stats, batch_tokens); F(sipp_engine_stats, batch_fill);
    F(sipp_engine_stats, cache_hits); F(sipp_engine_stats, cache_misses);
    F(sipp_engine_stats, cache_evictions); F(sipp_engine_stats, cache_ram_bytes);
    F(sipp_engine_stats, cache_disk_bytes); F(sipp_engine_stats, stalls);
    F(sipp_engine_stats, stalled); F(sipp_engine_stats, media_encoded);
    L(sipp_engine_stats, media_encode_ms);
#define SIPP__LAYOUT_T sipp_text_params
    S(sipp_text_params); SIPP_TEXT_SETTINGS(TABLE_FIELD) end();
#undef SIPP__LAYOUT_T
    S(sipp_media); F(sipp_media, kind); F(sipp_media, data); F(sipp_media, len);
    F(sipp_media, mime_type); L(sipp_media, message_index);
    /* tools and reasoning (issue 18) */
    S(sipp_tool); F(sipp_tool, name); F(sipp_tool, description); L(sipp_tool, parameters);
    S(sipp_tool_call); F(sipp_tool_call, id); F(sipp_tool_call, name);
    L(sipp_tool_call, arguments);
    S(sipp_chat_message); F(sipp_chat_message, role); F(sipp_chat_message, content);
    F(sipp_chat_message, tool_calls); F(sipp_chat_message, n_tool_calls);
    F(sipp_chat_message, tool_call_id); L(sipp_chat_message, reasoning);
    S(sipp_delta); F(sipp_delta, struct_size); F(sipp_delta, kind); F(sipp_delta, text);
    F(sipp_delta, len); F(sipp_delta, tool_index); F(sipp_delta, tool_id);
    L(sipp_delta, tool_name);
    S(sipp_message); F(sipp_message, role); L(sipp_message, content);
#define SIPP__LAYOUT_T sipp_embed_params
    S(sipp_embed_params); SIPP_EMBED_SETTINGS(TABLE_FIELD) end();
#undef SIPP__LAYOUT_T
#undef TABLE_FIELD
    S(sipp_usage); F(sipp_usage, struct_size); F(sipp_usage, input_tokens);
    F(sipp_usage, output_tokens); L(sipp_usage, total_tokens);
    S(sipp_stats); F(sipp_stats, struct_size); F(sipp_stats, queue_ms); F(sipp_stats, ttft_ms);
    F(sipp_stats, prefill_ms); F(sipp_stats, decode_ms); F(sipp_stats, prefill_tok_s);
    F(sipp_stats, decode_tok_s); F(sipp_stats, total_ms); F(sipp_stats, itl_avg_ms);
    F(sipp_stats, itl_p99_ms); F(sipp_stats, prefill_tokens); F(sipp_stats, cache_source);
    F(sipp_stats, cached_tokens); F(sipp_stats, encode_ms); L(sipp_stats, media_chunks);
    S(sipp_response); F(sipp_response, struct_size); F(sipp_response, status);
    F(sipp_response, error_message); F(sipp_response, text); F(sipp_response, text_len);
    F(sipp_response, finish_reason); F(sipp_response, embedding); F(sipp_response, n_embd);
    F(sipp_response, normalized); F(sipp_response, usage); F(sipp_response, stats);
    F(sipp_response, http_status); F(sipp_response, retry_after_s); F(sipp_response, request_id);
    F(sipp_response, error_code); F(sipp_response, logprobs); F(sipp_response, n_logprobs);
    F(sipp_response, tool_calls); F(sipp_response, n_tool_calls); F(sipp_response, reasoning);
    L(sipp_response, reasoning_len);
    S(sipp_token_batch); F(sipp_token_batch, struct_size); F(sipp_token_batch, text);
    F(sipp_token_batch, len); F(sipp_token_batch, n_tokens); F(sipp_token_batch, done);
    F(sipp_token_batch, logprobs); L(sipp_token_batch, n_logprobs);
    S(sipp_top_logprob); F(sipp_top_logprob, token); F(sipp_top_logprob, token_len);
    L(sipp_top_logprob, logprob);
    S(sipp_token_logprob); F(sipp_token_logprob, token); F(sipp_token_logprob, token_len);
    F(sipp_token_logprob, logprob); F(sipp_token_logprob, top); L(sipp_token_logprob, n_top);
    /* routing signals and policy (issue 20) */
    S(sipp_figure); F(sipp_figure, value); F(sipp_figure, samples); L(sipp_figure, source);
    S(sipp_estimate); F(sipp_estimate, struct_size); F(sipp_estimate, local);
    F(sipp_estimate, loaded); F(sipp_estimate, healthy); F(sipp_estimate, prompt_tokens);
    F(sipp_estimate, cached_tokens); F(sipp_estimate, cache_source);
    F(sipp_estimate, cache_on_disk); F(sipp_estimate, prefill_tokens); F(sipp_estimate, n_ctx);
    F(sipp_estimate, running); F(sipp_estimate, queued); F(sipp_estimate, free_slots);
    F(sipp_estimate, ttft_ms); F(sipp_estimate, decode_tokens_per_s); F(sipp_estimate, total_ms);
    F(sipp_estimate, price_input_per_mtok); F(sipp_estimate, price_output_per_mtok);
    F(sipp_estimate, error_rate); L(sipp_estimate, busy_rate);
    S(sipp_rule); F(sipp_rule, kind); F(sipp_rule, value); L(sipp_rule, tag);
    S(sipp_route_candidate); F(sipp_route_candidate, endpoint);
    F(sipp_route_candidate, estimate); L(sipp_route_candidate, name);
    S(sipp_route_choice); F(sipp_route_choice, index); F(sipp_route_choice, endpoint);
    F(sipp_route_choice, reasons); L(sipp_route_choice, dropped);
    S(sipp_audit_decision); F(sipp_audit_decision, outcome); F(sipp_audit_decision, confidence);
    F(sipp_audit_decision, min_prob); F(sipp_audit_decision, n_tokens);
    F(sipp_audit_decision, retry_safe); L(sipp_audit_decision, reasons);
    printf("\n}\n");
    return 0;
}
