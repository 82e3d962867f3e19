# Generated from include/sipp_settings.h by tests/bindings/settings_gen.c: do not edit.
# Update with scripts/gen-settings (the ctest settings_generated fails while it is stale).
"""The fields of the params structs in struct order, as (name, kind); _ffi.py maps the
kinds to ctypes."""

LOCAL_PARAMS = [  # sipp_local_params
    ("struct_size", "size"),
    ("model_path", "str"),
    ("n_ctx", "u32"),
    ("n_threads", "i32"),
    ("n_batch", "u32"),
    ("n_gpu_layers", "i32"),
    ("n_parallel", "u32"),
    ("progress", "fn"),
    ("progress_user_data", "ptr"),
    ("max_running", "u32"),
    ("max_queued", "u32"),
    ("tick_budget", "u32"),
    ("prefill_chunk", "u32"),
    ("stream_buffer_bytes", "u32"),
    ("context_shift", "bool"),
    ("n_keep", "u32"),
    ("cache_ram_bytes", "u64"),
    ("cache_dir", "str"),
    ("cache_disk_bytes", "u64"),
    ("sha256", "str"),
    ("stall_alarm_ms", "u32"),
    ("mmproj", "str"),
    ("itl_target_ms", "u32"),
    ("n_resident", "u32"),
]

PROVIDER_PARAMS = [  # sipp_provider_params
    ("struct_size", "size"),
    ("kind", "enum"),
    ("model", "str"),
    ("base_url", "str"),
    ("api_key", "str"),
    ("api_key_env", "str"),
    ("connect_timeout_ms", "u32"),
    ("request_timeout_ms", "u32"),
    ("idle_timeout_ms", "u32"),
    ("version", "str"),
    ("headers", "strv"),
    ("n_headers", "count"),
    ("allow_private_network", "bool"),
]

GATEWAY_PARAMS = [  # sipp_gateway_params
    ("struct_size", "size"),
    ("base_url", "str"),
    ("target", "str"),
    ("auth", "enum"),
    ("token", "str"),
    ("token_env", "str"),
    ("auth_header", "str"),
    ("headers", "strv"),
    ("n_headers", "count"),
    ("connect_timeout_ms", "u32"),
    ("request_timeout_ms", "u32"),
    ("idle_timeout_ms", "u32"),
    ("allow_private_network", "bool"),
]

TEXT_PARAMS = [  # sipp_text_params
    ("struct_size", "size"),
    ("max_tokens", "u32"),
    ("temperature", "f32"),
    ("top_k", "i32"),
    ("top_p", "f32"),
    ("min_p", "f32"),
    ("repeat_penalty", "f32"),
    ("seed", "u32"),
    ("stop", "strv"),
    ("n_stop", "count"),
    ("context_key", "str"),
    ("cache_scope", "str"),
    ("grammar", "str"),
    ("json_schema", "str"),
    ("on_tokens", "token_fn"),
    ("user_data", "ptr"),
    ("timeout_ms", "u32"),
    ("ignore_eos", "bool"),
    ("extra_json", "str"),
    ("request_id", "str"),
    ("logprobs", "bool"),
    ("top_logprobs", "u32"),
    ("media", "media"),
    ("n_media", "count"),
]

EMBED_PARAMS = [  # sipp_embed_params
    ("struct_size", "size"),
    ("normalize", "bool"),
    ("extra_json", "str"),
    ("request_id", "str"),
]
