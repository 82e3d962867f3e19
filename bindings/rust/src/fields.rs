// Generated from include/sipp_settings.h by tests/bindings/settings_gen.c: do not edit.
// Update with scripts/gen-settings (the ctest settings_generated fails while it is stale).

use super::{sipp_delta_fn, sipp_load_progress_fn, sipp_media, sipp_token_fn, sipp_tool};
use std::os::raw::{c_char, c_float, c_int, c_void};

#[repr(C)]
pub struct sipp_local_params {
    pub struct_size: u32,
    pub model_path: *const c_char,
    pub n_ctx: u32,
    pub n_threads: i32,
    pub n_batch: u32,
    pub n_gpu_layers: i32,
    pub n_parallel: u32,
    pub progress: sipp_load_progress_fn,
    pub progress_user_data: *mut c_void,
    pub max_running: u32,
    pub max_queued: u32,
    pub tick_budget: u32,
    pub prefill_chunk: u32,
    pub stream_buffer_bytes: u32,
    pub context_shift: bool,
    pub n_keep: u32,
    pub cache_ram_bytes: u64,
    pub cache_dir: *const c_char,
    pub cache_disk_bytes: u64,
    pub sha256: *const c_char,
    pub stall_alarm_ms: u32,
    pub mmproj: *const c_char,
    pub itl_target_ms: u32,
    pub n_resident: u32,
}

#[repr(C)]
pub struct sipp_provider_params {
    pub struct_size: u32,
    pub kind: c_int,
    pub model: *const c_char,
    pub base_url: *const c_char,
    pub api_key: *const c_char,
    pub api_key_env: *const c_char,
    pub connect_timeout_ms: u32,
    pub request_timeout_ms: u32,
    pub idle_timeout_ms: u32,
    pub version: *const c_char,
    pub headers: *const *const c_char,
    pub n_headers: usize,
    pub allow_private_network: bool,
}

#[repr(C)]
pub struct sipp_gateway_params {
    pub struct_size: u32,
    pub base_url: *const c_char,
    pub target: *const c_char,
    pub auth: c_int,
    pub token: *const c_char,
    pub token_env: *const c_char,
    pub auth_header: *const c_char,
    pub headers: *const *const c_char,
    pub n_headers: usize,
    pub connect_timeout_ms: u32,
    pub request_timeout_ms: u32,
    pub idle_timeout_ms: u32,
    pub allow_private_network: bool,
}

#[repr(C)]
pub struct sipp_text_params {
    pub struct_size: u32,
    pub max_tokens: u32,
    pub temperature: c_float,
    pub top_k: i32,
    pub top_p: c_float,
    pub min_p: c_float,
    pub repeat_penalty: c_float,
    pub seed: u32,
    pub stop: *const *const c_char,
    pub n_stop: usize,
    pub context_key: *const c_char,
    pub cache_scope: *const c_char,
    pub grammar: *const c_char,
    pub json_schema: *const c_char,
    pub on_tokens: sipp_token_fn,
    pub user_data: *mut c_void,
    pub timeout_ms: u32,
    pub ignore_eos: bool,
    pub extra_json: *const c_char,
    pub request_id: *const c_char,
    pub logprobs: bool,
    pub top_logprobs: u32,
    pub media: *const sipp_media,
    pub n_media: usize,
    pub tools: *const sipp_tool,
    pub n_tools: usize,
    pub tool_choice: c_int,
    pub tool_choice_name: *const c_char,
    pub parallel_tool_calls: bool,
    pub reasoning_mode: c_int,
    pub on_delta: sipp_delta_fn,
    pub delta_user_data: *mut c_void,
    pub reasoning_budget: i32,
}

#[repr(C)]
pub struct sipp_embed_params {
    pub struct_size: u32,
    pub normalize: bool,
    pub extra_json: *const c_char,
    pub request_id: *const c_char,
}

/// Calls `$m!` with the numbers and booleans of `sipp_local_params` that are settings,
/// each as `#[doc = "help"] name: type,` (lib.rs builds LocalOptions from them).
#[doc(hidden)]
#[macro_export]
macro_rules! sipp_local_scalars {
    ($m:ident) => {
        $m! {
            #[doc = "context tokens per sequence (0 = model's, max 4096)"] n_ctx: u32,
            #[doc = "CPU threads (0 = the CPUs it may use, max 16)"] n_threads: i32,
            #[doc = "tokens per llama.cpp step (default 512)"] n_batch: u32,
            #[doc = "layers on the GPU, -1 = all (GPU builds)"] n_gpu_layers: i32,
            #[doc = "sequences decoded together (0 = 4)"] n_parallel: u32,
            #[doc = "requests admitted into sequences at once (0 = n_parallel)"] max_running: u32,
            #[doc = "requests waiting for a sequence before SIPP_BUSY (0 = 256)"] max_queued: u32,
            #[doc = "tokens decoded per engine tick (0 = n_batch)"] tick_budget: u32,
            #[doc = "most prompt tokens one request prefills per tick (0 = no cap)"] prefill_chunk: u32,
            #[doc = "generated text held for a consumer that does not read (0 = 256 KiB)"] stream_buffer_bytes: u32,
            #[doc = "when the context fills, drop old tokens and go on"] context_shift: bool,
            #[doc = "tokens kept at the start when the context shifts"] n_keep: u32,
            #[doc = "RAM budget of prefix snapshots (0 = 1 GiB)"] cache_ram_bytes: u64,
            #[doc = "disk budget of the snapshot directory (0 = 4 GiB)"] cache_disk_bytes: u64,
            #[doc = "watchdog: no scheduler round for this long is a stall (0 = 60000)"] stall_alarm_ms: u32,
            #[doc = "inter-token latency target while a prompt prefills (0 = 400)"] itl_target_ms: u32,
            #[doc = "sequences kept warm in memory (0 = n_parallel)"] n_resident: u32,
        }
    };
}

/// Calls `$m!(struct { field, ... })` with every field of each params struct in order
/// (the layout test).
#[doc(hidden)]
#[macro_export]
macro_rules! sipp_params_fields {
    ($m:ident) => {
        [
            $m!(sipp_local_params { struct_size, model_path, n_ctx, n_threads, n_batch, n_gpu_layers, n_parallel, progress, progress_user_data, max_running, max_queued, tick_budget, prefill_chunk, stream_buffer_bytes, context_shift, n_keep, cache_ram_bytes, cache_dir, cache_disk_bytes, sha256, stall_alarm_ms, mmproj, itl_target_ms, n_resident }),
            $m!(sipp_provider_params { struct_size, kind, model, base_url, api_key, api_key_env, connect_timeout_ms, request_timeout_ms, idle_timeout_ms, version, headers, n_headers, allow_private_network }),
            $m!(sipp_gateway_params { struct_size, base_url, target, auth, token, token_env, auth_header, headers, n_headers, connect_timeout_ms, request_timeout_ms, idle_timeout_ms, allow_private_network }),
            $m!(sipp_text_params { struct_size, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, stop, n_stop, context_key, cache_scope, grammar, json_schema, on_tokens, user_data, timeout_ms, ignore_eos, extra_json, request_id, logprobs, top_logprobs, media, n_media, tools, n_tools, tool_choice, tool_choice_name, parallel_tool_calls, reasoning_mode, on_delta, delta_user_data, reasoning_budget }),
            $m!(sipp_embed_params { struct_size, normalize, extra_json, request_id }),
        ]
    };
}
