# Generated from include/sipp_settings.h by tests/bindings/settings_gen.c: do not edit.
# Update with scripts/gen-settings (the ctest settings_generated fails while it is stale).
"""The fields of sipp_local_params in struct order, as (name, kind); _ffi.py maps the
kinds to ctypes."""

LOCAL_PARAMS = [
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
    ("itl_target_ms", "u32"),
    ("n_resident", "u32"),
]
