//! Raw declarations of include/sipp.h. Structs mirror the C layout field for field (appended
//! fields are appended here too; tests/abi.rs compares against the C compiler's layout).
//!
//! Every versioned struct is filled by its `sipp_*_init(p, size_of::<T>())`, so the library knows
//! the size this crate was built with: it gives fields past it their defaults, writes no more
//! than that into out-structs, and refuses a struct larger than its own (an older library).
#![allow(non_camel_case_types, missing_docs)]

use std::os::raw::{c_char, c_float, c_int, c_void};

pub type sipp_status = c_int;
pub const SIPP_OK: sipp_status = 0;
pub const SIPP_INVALID_ARGUMENT: sipp_status = 1;
pub const SIPP_NOT_FOUND: sipp_status = 2;
pub const SIPP_CLOSED: sipp_status = 12;
pub const SIPP_TIMEOUT: sipp_status = 13;

pub const SIPP_ERROR_MESSAGE_CAP: usize = 256;

#[repr(C)]
pub struct sipp_error {
    pub struct_size: u32,
    pub code: sipp_status,
    pub subcode: i32,
    pub message: [c_char; SIPP_ERROR_MESSAGE_CAP],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct sipp_client_params {
    pub struct_size: u32,
    pub log_level: c_int,
}

pub type sipp_load_progress_fn = Option<unsafe extern "C" fn(f32, *mut c_void) -> bool>;
pub type sipp_token_fn = Option<unsafe extern "C" fn(*const c_char, usize, u32, *mut c_void)>;

// The five params structs and the macros over their fields: generated from
// include/sipp_settings.h (scripts/gen-settings).
#[path = "fields.rs"]
mod fields;
pub use fields::{sipp_embed_params, sipp_gateway_params, sipp_local_params, sipp_provider_params,
                 sipp_text_params};

pub const SIPP_PROVIDER_OPENAI: c_int = 1;
pub const SIPP_PROVIDER_OPENAI_COMPATIBLE: c_int = 2;
pub const SIPP_PROVIDER_ANTHROPIC: c_int = 3;

pub const SIPP_GATEWAY_AUTH_NONE: c_int = 0;
pub const SIPP_GATEWAY_AUTH_BEARER: c_int = 1;
pub const SIPP_GATEWAY_AUTH_HEADER: c_int = 2;

#[repr(C)]
pub struct sipp_endpoint_info {
    pub struct_size: u32,
    pub can_generate: bool,
    pub can_chat: bool,
    pub can_embed: bool,
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    pub n_embd: u32,
    pub n_parallel: u32,
    pub n_params: u64,
    pub size_bytes: u64,
    pub architecture: [c_char; 64],
    pub description: [c_char; 128],
    pub vision: bool,
    pub audio_in: bool,
    pub audio_out: bool,
}

#[repr(C)]
pub struct sipp_engine_stats {
    pub struct_size: u32,
    pub running: u32,
    pub queued: u32,
    pub completed: u64,
    pub cancelled: u64,
    pub failed: u64,
    pub rejected_busy: u64,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub ticks: u64,
    pub batch_tokens: u64,
    pub batch_fill: f64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    pub cache_ram_bytes: u64,
    pub cache_disk_bytes: u64,
    pub stalls: u64,
    pub stalled: u32,
    pub media_encoded: u64,
    pub media_encode_ms: f64,
}

/// A media part (multimodal; sipp.h's sipp_media).
#[repr(C)]
pub struct sipp_media {
    pub kind: c_int,
    pub data: *const c_void,
    pub len: usize,
    pub mime_type: *const c_char,
    pub message_index: usize,
}

#[repr(C)]
pub struct sipp_tool {
    pub name: *const c_char,
    pub description: *const c_char,
    pub parameters: *const c_char,
}

#[repr(C)]
pub struct sipp_tool_call {
    pub id: *const c_char,
    pub name: *const c_char,
    pub arguments: *const c_char,
}

#[repr(C)]
pub struct sipp_chat_message {
    pub role: *const c_char,
    pub content: *const c_char,
    pub tool_calls: *const sipp_tool_call,
    pub n_tool_calls: usize,
    pub tool_call_id: *const c_char,
    pub reasoning: *const c_char,
}

#[repr(C)]
pub struct sipp_delta {
    pub struct_size: u32,
    pub kind: c_int,
    pub text: *const c_char,
    pub len: usize,
    pub tool_index: u32,
    pub tool_id: *const c_char,
    pub tool_name: *const c_char,
}

pub type sipp_delta_fn = Option<unsafe extern "C" fn(*const sipp_delta, *mut c_void)>;

#[repr(C)]
pub struct sipp_message {
    pub role: *const c_char,
    pub content: *const c_char,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct sipp_usage {
    pub struct_size: u32,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub total_tokens: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct sipp_stats {
    pub struct_size: u32,
    pub queue_ms: f64,
    pub ttft_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub total_ms: f64,
    pub itl_avg_ms: f64,
    pub itl_p99_ms: f64,
    pub prefill_tokens: u32,
    pub cache_source: c_int,
    pub cached_tokens: u32,
    pub encode_ms: f64,
    pub media_chunks: u32,
}

#[repr(C)]
pub struct sipp_response {
    pub struct_size: u32,
    pub status: sipp_status,
    pub error_message: [c_char; SIPP_ERROR_MESSAGE_CAP],
    pub text: *const c_char,
    pub text_len: usize,
    pub finish_reason: c_int,
    pub embedding: *const c_float,
    pub n_embd: u32,
    pub normalized: bool,
    pub usage: *const sipp_usage,
    pub stats: *const sipp_stats,
    pub http_status: u32,
    pub retry_after_s: u32,
    pub request_id: [c_char; 64],
    pub error_code: [c_char; 48],
    pub logprobs: *const sipp_token_logprob,
    pub n_logprobs: usize,
    pub tool_calls: *const sipp_tool_call,
    pub n_tool_calls: usize,
    pub reasoning: *const c_char,
    pub reasoning_len: usize,
}

/// Log-probabilities (issue 18): fixed layouts, array elements.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct sipp_top_logprob {
    pub token: *const c_char,
    pub token_len: usize,
    pub logprob: c_float,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct sipp_token_logprob {
    pub token: *const c_char,
    pub token_len: usize,
    pub logprob: c_float,
    pub top: *const sipp_top_logprob,
    pub n_top: u32,
}

#[repr(C)]
pub struct sipp_token_batch {
    pub struct_size: u32,
    pub text: *const c_char,
    pub len: usize,
    pub n_tokens: u32,
    pub done: bool,
    pub logprobs: *const sipp_token_logprob,
    pub n_logprobs: usize,
}

/// Routing signals and policy (sipp.h "Routing signals and policy", issue 20).
pub const SIPP_NO_ROUTE: sipp_status = 23;

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct sipp_figure {
    pub value: f64,
    pub samples: u32,
    pub source: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct sipp_estimate {
    pub struct_size: u32,
    pub local: bool,
    pub loaded: bool,
    pub healthy: bool,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub cache_source: c_int,
    pub cache_on_disk: bool,
    pub prefill_tokens: u32,
    pub n_ctx: u32,
    pub running: u32,
    pub queued: u32,
    pub free_slots: u32,
    pub ttft_ms: sipp_figure,
    pub decode_tokens_per_s: sipp_figure,
    pub total_ms: sipp_figure,
    pub price_input_per_mtok: sipp_figure,
    pub price_output_per_mtok: sipp_figure,
    pub error_rate: sipp_figure,
    pub busy_rate: sipp_figure,
}

#[repr(C)]
pub struct sipp_rule {
    pub kind: c_int,
    pub value: f64,
    pub tag: *const c_char,
}

#[repr(C)]
pub struct sipp_route_candidate {
    pub endpoint: *mut sipp_endpoint,
    pub estimate: *const sipp_estimate,
    pub name: *const c_char,
}

#[repr(C)]
pub struct sipp_route_choice {
    pub index: c_int,
    pub endpoint: *mut sipp_endpoint,
    pub reasons: *mut c_char,
    pub dropped: u64,
}

#[repr(C)]
pub struct sipp_policy {
    _private: [u8; 0],
}

/// Routing: confidence and draft-then-audit (sipp.h, issue 20).
#[repr(C)]
pub struct sipp_audit_decision {
    pub outcome: c_int,
    pub confidence: f64,
    pub min_prob: f64,
    pub n_tokens: u32,
    pub retry_safe: bool,
    pub reasons: *mut c_char,
}

#[repr(C)]
pub struct sipp_client {
    _private: [u8; 0],
}
#[repr(C)]
pub struct sipp_endpoint {
    _private: [u8; 0],
}
#[repr(C)]
pub struct sipp_run {
    _private: [u8; 0],
}

extern "C" {
    pub fn sipp_version() -> *const c_char;
    pub fn sipp_status_name(status: sipp_status) -> *const c_char;
    pub fn sipp_log_set(level: c_int);
    pub fn sipp_error_init(p: *mut sipp_error, size: usize) -> sipp_status;
    pub fn sipp_client_params_init(p: *mut sipp_client_params, size: usize) -> sipp_status;
    pub fn sipp_local_params_init(p: *mut sipp_local_params, size: usize) -> sipp_status;
    pub fn sipp_provider_params_init(p: *mut sipp_provider_params, size: usize) -> sipp_status;
    pub fn sipp_gateway_params_init(p: *mut sipp_gateway_params, size: usize) -> sipp_status;
    pub fn sipp_text_params_init(p: *mut sipp_text_params, size: usize) -> sipp_status;
    pub fn sipp_embed_params_init(p: *mut sipp_embed_params, size: usize) -> sipp_status;
    pub fn sipp_endpoint_info_init(p: *mut sipp_endpoint_info, size: usize) -> sipp_status;
    pub fn sipp_engine_stats_init(p: *mut sipp_engine_stats, size: usize) -> sipp_status;
    pub fn sipp_token_batch_init(p: *mut sipp_token_batch, size: usize) -> sipp_status;
    pub fn sipp_client_new(params: *const sipp_client_params, out: *mut *mut sipp_client,
                           err: *mut sipp_error) -> sipp_status;
    pub fn sipp_client_free(client: *mut sipp_client);
    pub fn sipp_client_add_local(client: *mut sipp_client, id: *const c_char,
                                 params: *const sipp_local_params, out: *mut *mut sipp_endpoint,
                                 err: *mut sipp_error) -> sipp_status;
    pub fn sipp_client_add_provider(client: *mut sipp_client, id: *const c_char,
                                    params: *const sipp_provider_params,
                                    out: *mut *mut sipp_endpoint, err: *mut sipp_error) -> sipp_status;
    pub fn sipp_client_add_gateway(client: *mut sipp_client, id: *const c_char,
                                   params: *const sipp_gateway_params,
                                   out: *mut *mut sipp_endpoint, err: *mut sipp_error) -> sipp_status;
    pub fn sipp_client_get_endpoint(client: *mut sipp_client, id: *const c_char) -> *mut sipp_endpoint;
    pub fn sipp_client_remove(client: *mut sipp_client, id: *const c_char,
                              err: *mut sipp_error) -> sipp_status;
    pub fn sipp_endpoint_get_info(ep: *const sipp_endpoint, out: *mut sipp_endpoint_info,
                                  err: *mut sipp_error) -> sipp_status;
    pub fn sipp_endpoint_get_stats(ep: *const sipp_endpoint, out: *mut sipp_engine_stats,
                                   err: *mut sipp_error) -> sipp_status;
    pub fn sipp_query(ep: *mut sipp_endpoint, prompt: *const c_char,
                      params: *const sipp_text_params, out: *mut *mut sipp_run,
                      err: *mut sipp_error) -> sipp_status;
    pub fn sipp_chat(ep: *mut sipp_endpoint, messages: *const sipp_message, n_messages: usize,
                     params: *const sipp_text_params, out: *mut *mut sipp_run,
                     err: *mut sipp_error) -> sipp_status;
    pub fn sipp_chat_ex(ep: *mut sipp_endpoint, messages: *const sipp_chat_message,
                        n_messages: usize, params: *const sipp_text_params,
                        out: *mut *mut sipp_run, err: *mut sipp_error) -> sipp_status;
    pub fn sipp_run_next_delta(run: *mut sipp_run, timeout_ms: c_int, out: *mut sipp_delta,
                               done: *mut bool, err: *mut sipp_error) -> sipp_status;
    pub fn sipp_embed(ep: *mut sipp_endpoint, text: *const c_char,
                      params: *const sipp_embed_params, out: *mut *mut sipp_run,
                      err: *mut sipp_error) -> sipp_status;
    pub fn sipp_finish_reason_name(reason: c_int) -> *const c_char;
    pub fn sipp_cache_source_name(source: c_int) -> *const c_char;
    pub fn sipp_run_wait(run: *mut sipp_run, out: *mut *const sipp_response,
                         err: *mut sipp_error) -> sipp_status;
    pub fn sipp_run_next(run: *mut sipp_run, timeout_ms: c_int,
                         out: *mut sipp_token_batch, err: *mut sipp_error) -> sipp_status;
    pub fn sipp_run_cancel(run: *mut sipp_run);
    pub fn sipp_run_is_done(run: *const sipp_run) -> bool;
    pub fn sipp_run_free(run: *mut sipp_run);
    pub fn sipp_estimate_init(p: *mut sipp_estimate, size: usize) -> sipp_status;
    pub fn sipp_estimate_query(ep: *mut sipp_endpoint, prompt: *const c_char,
                               params: *const sipp_text_params, out: *mut sipp_estimate,
                               err: *mut sipp_error) -> sipp_status;
    pub fn sipp_estimate_chat(ep: *mut sipp_endpoint, messages: *const sipp_message,
                              n_messages: usize, params: *const sipp_text_params,
                              out: *mut sipp_estimate, err: *mut sipp_error) -> sipp_status;
    pub fn sipp_endpoint_set_prices(ep: *mut sipp_endpoint, input_per_mtok: f64,
                                    output_per_mtok: f64, err: *mut sipp_error) -> sipp_status;
    pub fn sipp_policy_new(rules: *const sipp_rule, n: usize, out: *mut *mut sipp_policy,
                           err: *mut sipp_error) -> sipp_status;
    pub fn sipp_policy_free(policy: *mut sipp_policy);
    pub fn sipp_policy_choose(policy: *const sipp_policy, candidates: *const sipp_route_candidate,
                              n: usize, tags: *const *const c_char, n_tags: usize,
                              max_tokens: u32, out: *mut sipp_route_choice,
                              err: *mut sipp_error) -> sipp_status;
    pub fn sipp_route_choice_free(choice: *mut sipp_route_choice);
    pub fn sipp_policy_check_draft(policy: *const sipp_policy, draft: *const sipp_response,
                                   out: *mut sipp_audit_decision,
                                   err: *mut sipp_error) -> sipp_status;
    pub fn sipp_route_draft_audit(policy: *const sipp_policy, draft_ep: *mut sipp_endpoint,
                                  target_ep: *mut sipp_endpoint, messages: *const sipp_message,
                                  n_messages: usize, params: *const sipp_text_params,
                                  send_draft: bool, out: *mut *mut sipp_run,
                                  decision: *mut sipp_audit_decision,
                                  err: *mut sipp_error) -> sipp_status;
    pub fn sipp_audit_decision_free(decision: *mut sipp_audit_decision);
}
