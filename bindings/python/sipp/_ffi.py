"""The raw layer: libsipp loaded with ctypes, mirrors of the plain-data structs of sipp.h and the
prototypes of the functions the binding calls.

Rules the rest of the package relies on:
- Each mirror lists the fields of its struct in sipp.h order. The five params structs come from
  their tables in include/sipp_settings.h through _fields.py (a row there, then
  scripts/gen-settings); fields appended to the other structs are appended here.
  tests/bindings/abi_layout.c prints the C layout and the tests compare.
- Every struct comes from new(Mirror): the mirror filled by its sipp_*_init() with
  struct_size = sizeof(mirror). A newer library accepts it (fields it has past the mirror take
  their defaults); the library writes no more than that into out-structs (token batches, info,
  stats).
- Each init is called once at import: a library older than this binding refuses a mirror larger
  than its own struct, and the import fails instead of sending fields the library cannot read.
- sipp_response holds pointers to its usage and stats, owned by the run.
"""
from __future__ import annotations

import ctypes
import os
import pathlib
import subprocess
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float,
                    c_int, c_int32, c_size_t, c_uint32, c_uint64, c_void_p)
from typing import Iterator

from . import _fields

# ---- the library ---------------------------------------------------------------------------


def _pkg_config_libdir() -> "str | None":
    """The libdir that `pkg-config sipp` names (an install the loader does not search, e.g.
    `cmake --install --prefix P` with P/lib/pkgconfig on PKG_CONFIG_PATH), or None."""
    try:
        out = subprocess.run(["pkg-config", "--variable=libdir", "sipp"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _candidates() -> Iterator[str]:
    """Where libsipp may be, in order; lazy, so pkg-config runs only when all else failed."""
    env = os.environ.get("SIPP_LIBRARY")
    if env:
        yield env
        return
    lib_dir = os.environ.get("SIPP_LIB_DIR")
    if lib_dir:
        yield str(pathlib.Path(lib_dir) / "libsipp.so")
    # A source checkout: bindings/python/sipp/_ffi.py -> build/lib/libsipp.so
    yield str(pathlib.Path(__file__).resolve().parents[3] / "build" / "lib" / "libsipp.so")
    yield "libsipp.so.0"  # installed where the loader looks (ld.so.conf, LD_LIBRARY_PATH)
    libdir = _pkg_config_libdir()
    if libdir:
        yield str(pathlib.Path(libdir) / "libsipp.so.0")


def _load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        if "/" in path and not os.path.exists(path):
            errors.append(f"{path}: no such file")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(str(e))
    raise ImportError("sipp: cannot load libsipp (set SIPP_LIBRARY to its path, install it with "
                      "`cmake --install` where the loader or pkg-config finds it, or build it "
                      "with scripts/setup): " + "; ".join(errors))


lib = _load()

# ---- structs -------------------------------------------------------------------------------

ERROR_MESSAGE_CAP = 256

LoadProgressFn = CFUNCTYPE(c_bool, c_float, c_void_p)
TokenFn = CFUNCTYPE(None, c_char_p, c_size_t, c_uint32, c_void_p)


class Error(Structure):
    _fields_ = [("struct_size", c_uint32), ("code", c_int), ("subcode", c_int32),
                ("message", c_char * ERROR_MESSAGE_CAP)]


class ClientParams(Structure):
    _fields_ = [("struct_size", c_uint32), ("log_level", c_int)]


class Media(Structure):
    _fields_ = [("kind", c_int), ("data", c_void_p), ("len", c_size_t), ("mime_type", c_char_p),
                ("message_index", c_size_t)]


# tools and reasoning (issue 18): the Pythonic types are sipp.Tool, ToolCall, Delta
class Tool(Structure):
    _fields_ = [("name", c_char_p), ("description", c_char_p), ("parameters", c_char_p)]


class ToolCall(Structure):
    _fields_ = [("id", c_char_p), ("name", c_char_p), ("arguments", c_char_p)]


class ChatMessage(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p), ("tool_calls", POINTER(ToolCall)),
                ("n_tool_calls", c_size_t), ("tool_call_id", c_char_p), ("reasoning", c_char_p)]


class Delta(Structure):
    _fields_ = [("struct_size", c_uint32), ("kind", c_int), ("text", c_void_p), ("len", c_size_t),
                ("tool_index", c_uint32), ("tool_id", c_char_p), ("tool_name", c_char_p)]


DeltaFn = CFUNCTYPE(None, POINTER(Delta), c_void_p)


# The params structs come from their tables (include/sipp_settings.h) through _fields.py, which
# scripts/gen-settings writes: the kinds of the tables as ctypes.
_KIND_CTYPES = {"size": c_uint32, "u32": c_uint32, "i32": c_int32, "u64": c_uint64,
                "bool": c_bool, "str": c_char_p, "fn": LoadProgressFn, "ptr": c_void_p,
                "f32": c_float, "strv": POINTER(c_char_p), "count": c_size_t,
                "token_fn": TokenFn, "enum": c_int, "media": POINTER(Media),
                "tools": POINTER(Tool), "delta_fn": DeltaFn}


def _mirror(fields: list) -> list:
    return [(name, _KIND_CTYPES[kind]) for name, kind in fields]


class LocalParams(Structure):
    _fields_ = _mirror(_fields.LOCAL_PARAMS)


class ProviderParams(Structure):
    _fields_ = _mirror(_fields.PROVIDER_PARAMS)


class GatewayParams(Structure):
    _fields_ = _mirror(_fields.GATEWAY_PARAMS)


class EndpointInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("can_generate", c_bool), ("can_chat", c_bool),
                ("can_embed", c_bool), ("n_ctx", c_uint32), ("n_ctx_train", c_uint32),
                ("n_embd", c_uint32), ("n_parallel", c_uint32), ("n_params", c_uint64),
                ("size_bytes", c_uint64), ("architecture", c_char * 64),
                ("description", c_char * 128), ("vision", c_bool), ("audio_in", c_bool),
                ("audio_out", c_bool)]


class EngineStats(Structure):
    _fields_ = [("struct_size", c_uint32), ("running", c_uint32), ("queued", c_uint32),
                ("completed", c_uint64), ("cancelled", c_uint64), ("failed", c_uint64),
                ("rejected_busy", c_uint64), ("prompt_tokens", c_uint64),
                ("generated_tokens", c_uint64), ("ticks", c_uint64), ("batch_tokens", c_uint64),
                ("batch_fill", c_double), ("cache_hits", c_uint64), ("cache_misses", c_uint64),
                ("cache_evictions", c_uint64), ("cache_ram_bytes", c_uint64),
                ("cache_disk_bytes", c_uint64), ("stalls", c_uint64), ("stalled", c_uint32),
                ("media_encoded", c_uint64), ("media_encode_ms", c_double)]


class TextParams(Structure):
    _fields_ = _mirror(_fields.TEXT_PARAMS)


class Message(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


class EmbedParams(Structure):
    _fields_ = _mirror(_fields.EMBED_PARAMS)


class Usage(Structure):
    _fields_ = [("struct_size", c_uint32), ("input_tokens", c_uint32),
                ("output_tokens", c_uint32), ("total_tokens", c_uint32)]


class Stats(Structure):
    _fields_ = [("struct_size", c_uint32), ("queue_ms", c_double), ("ttft_ms", c_double),
                ("prefill_ms", c_double), ("decode_ms", c_double), ("prefill_tok_s", c_double),
                ("decode_tok_s", c_double), ("total_ms", c_double), ("itl_avg_ms", c_double),
                ("itl_p99_ms", c_double), ("prefill_tokens", c_uint32), ("cache_source", c_int),
                ("cached_tokens", c_uint32), ("encode_ms", c_double), ("media_chunks", c_uint32)]


class TopLogprob(Structure):
    _fields_ = [("token", c_void_p), ("token_len", c_size_t), ("logprob", c_float)]


class TokenLogprob(Structure):
    _fields_ = [("token", c_void_p), ("token_len", c_size_t), ("logprob", c_float),
                ("top", POINTER(TopLogprob)), ("n_top", c_uint32)]


class Response(Structure):
    _fields_ = [("struct_size", c_uint32), ("status", c_int),
                ("error_message", c_char * ERROR_MESSAGE_CAP), ("text", c_void_p),
                ("text_len", c_size_t), ("finish_reason", c_int), ("embedding", POINTER(c_float)),
                ("n_embd", c_uint32), ("normalized", c_bool), ("usage", POINTER(Usage)),
                ("stats", POINTER(Stats)),
                ("http_status", c_uint32), ("retry_after_s", c_uint32),
                ("request_id", c_char * 64), ("error_code", c_char * 48),
                ("logprobs", POINTER(TokenLogprob)), ("n_logprobs", c_size_t),
                ("tool_calls", POINTER(ToolCall)), ("n_tool_calls", c_size_t),
                ("reasoning", c_void_p), ("reasoning_len", c_size_t)]


class TokenBatch(Structure):
    _fields_ = [("struct_size", c_uint32), ("text", c_void_p), ("len", c_size_t),
                ("n_tokens", c_uint32), ("done", c_bool),
                ("logprobs", POINTER(TokenLogprob)), ("n_logprobs", c_size_t)]


# Routing signals and policy (sipp.h, "Routing signals and policy"; docs/routing.md)
class Figure(Structure):
    _fields_ = [("value", c_double), ("samples", c_uint32), ("source", c_int)]


class Estimate(Structure):
    _fields_ = [("struct_size", c_uint32), ("local", c_bool), ("loaded", c_bool),
                ("healthy", c_bool), ("prompt_tokens", c_uint32), ("cached_tokens", c_uint32),
                ("cache_source", c_int), ("cache_on_disk", c_bool), ("prefill_tokens", c_uint32),
                ("n_ctx", c_uint32), ("running", c_uint32), ("queued", c_uint32),
                ("free_slots", c_uint32), ("ttft_ms", Figure), ("decode_tokens_per_s", Figure),
                ("total_ms", Figure), ("price_input_per_mtok", Figure),
                ("price_output_per_mtok", Figure), ("error_rate", Figure), ("busy_rate", Figure)]


class Rule(Structure):
    _fields_ = [("kind", c_int), ("value", c_double), ("tag", c_char_p)]


class RouteCandidate(Structure):
    _fields_ = [("endpoint", c_void_p), ("estimate", POINTER(Estimate)), ("name", c_char_p)]


class RouteChoice(Structure):
    _fields_ = [("index", c_int), ("endpoint", c_void_p), ("reasons", c_void_p),
                ("dropped", c_uint64)]


# Routing: confidence and draft-then-audit (sipp.h; docs/routing.md)
class AuditDecision(Structure):
    _fields_ = [("outcome", c_int), ("confidence", c_double), ("min_prob", c_double),
                ("n_tokens", c_uint32), ("retry_safe", c_bool), ("reasons", c_void_p)]


# ---- enums ---------------------------------------------------------------------------------

OK = 0
INVALID_ARGUMENT = 1
TIMEOUT = 13
LOG_LEVELS = {"none": 0, "error": 1, "warn": 2, "info": 3, "debug": 4}
PROVIDER_KINDS = {"openai": 1, "openai_compatible": 2, "anthropic": 3}
GATEWAY_AUTH = {"none": 0, "bearer": 1, "header": 2}
FINISH_REASONS = {0: "none", 1: "stop", 2: "length", 3: "cancelled", 4: "tool_calls"}
TOOL_CHOICES = {"auto": 0, "none": 1, "required": 2}  # else a tool's name: NAMED (3)
REASONING_MODES = {"separate": 0, "inline": 1, "drop": 2}
DELTA_KINDS = {0: "content", 1: "reasoning", 2: "tool_call"}
CACHE_SOURCES = {0: "none", 1: "live", 2: "snapshot"}
FIGURE_SOURCES = {0: "unknown", 1: "measured", 2: "configured", 3: "predicted"}
RULE_KINDS = {"local_only_tag": 1, "skip_unavailable": 2, "fit_context": 3, "max_ttft_ms": 4,
              "max_cost": 5, "prefer_warm": 6, "prefer_local_under_ttft": 7,
              "prefer_cheapest": 8, "escalate_low_confidence": 9}
NO_ROUTE = 23
AUDIT_OUTCOMES = {0: "none", 1: "draft", 2: "escalated", 3: "draft_failed"}

# ---- functions -----------------------------------------------------------------------------


def _fn(name: str, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


c_client_p = c_void_p
c_endpoint_p = c_void_p
c_run_p = c_void_p
ErrorP = POINTER(Error)

sipp_version = _fn("sipp_version", c_char_p)
sipp_status_name = _fn("sipp_status_name", c_char_p, c_int)
sipp_status_str = _fn("sipp_status_str", c_char_p, c_int)
sipp_client_new = _fn("sipp_client_new", c_int, POINTER(ClientParams), POINTER(c_client_p), ErrorP)
sipp_client_free = _fn("sipp_client_free", None, c_client_p)
sipp_log_set = _fn("sipp_log_set", None, c_int)
sipp_client_add_local = _fn("sipp_client_add_local", c_int, c_client_p, c_char_p,
                            POINTER(LocalParams), POINTER(c_endpoint_p), ErrorP)
sipp_client_add_provider = _fn("sipp_client_add_provider", c_int, c_client_p, c_char_p,
                               POINTER(ProviderParams), POINTER(c_endpoint_p), ErrorP)
sipp_client_add_gateway = _fn("sipp_client_add_gateway", c_int, c_client_p, c_char_p,
                              POINTER(GatewayParams), POINTER(c_endpoint_p), ErrorP)
sipp_client_remove = _fn("sipp_client_remove", c_int, c_client_p, c_char_p, ErrorP)
sipp_endpoint_get_info = _fn("sipp_endpoint_get_info", c_int, c_endpoint_p,
                             POINTER(EndpointInfo), ErrorP)
sipp_endpoint_get_stats = _fn("sipp_endpoint_get_stats", c_int, c_endpoint_p,
                              POINTER(EngineStats), ErrorP)
sipp_query = _fn("sipp_query", c_int, c_endpoint_p, c_char_p, POINTER(TextParams),
                 POINTER(c_run_p), ErrorP)
sipp_chat = _fn("sipp_chat", c_int, c_endpoint_p, POINTER(Message), c_size_t, POINTER(TextParams),
                POINTER(c_run_p), ErrorP)
sipp_chat_ex = _fn("sipp_chat_ex", c_int, c_endpoint_p, POINTER(ChatMessage), c_size_t,
                   POINTER(TextParams), POINTER(c_run_p), ErrorP)
sipp_run_next_delta = _fn("sipp_run_next_delta", c_int, c_run_p, c_int, POINTER(Delta),
                          POINTER(c_bool), ErrorP)
sipp_embed = _fn("sipp_embed", c_int, c_endpoint_p, c_char_p, POINTER(EmbedParams),
                 POINTER(c_run_p), ErrorP)
sipp_run_wait = _fn("sipp_run_wait", c_int, c_run_p, POINTER(POINTER(Response)), ErrorP)
sipp_run_next = _fn("sipp_run_next", c_int, c_run_p, c_int, POINTER(TokenBatch), ErrorP)
sipp_run_cancel = _fn("sipp_run_cancel", None, c_run_p)
sipp_run_is_done = _fn("sipp_run_is_done", c_bool, c_run_p)
sipp_run_free = _fn("sipp_run_free", None, c_run_p)

sipp_estimate_query = _fn("sipp_estimate_query", c_int, c_endpoint_p, c_char_p,
                          POINTER(TextParams), POINTER(Estimate), ErrorP)
sipp_estimate_chat = _fn("sipp_estimate_chat", c_int, c_endpoint_p, POINTER(Message), c_size_t,
                         POINTER(TextParams), POINTER(Estimate), ErrorP)
sipp_endpoint_set_prices = _fn("sipp_endpoint_set_prices", c_int, c_endpoint_p, c_double,
                               c_double, ErrorP)
sipp_policy_new = _fn("sipp_policy_new", c_int, POINTER(Rule), c_size_t, POINTER(c_void_p), ErrorP)
sipp_policy_free = _fn("sipp_policy_free", None, c_void_p)
sipp_policy_choose = _fn("sipp_policy_choose", c_int, c_void_p, POINTER(RouteCandidate), c_size_t,
                         POINTER(c_char_p), c_size_t, c_uint32, POINTER(RouteChoice), ErrorP)
sipp_route_choice_free = _fn("sipp_route_choice_free", None, POINTER(RouteChoice))
sipp_policy_check_draft = _fn("sipp_policy_check_draft", c_int, c_void_p, POINTER(Response),
                              POINTER(AuditDecision), ErrorP)
sipp_route_draft_audit = _fn("sipp_route_draft_audit", c_int, c_void_p, c_endpoint_p,
                             c_endpoint_p, POINTER(Message), c_size_t, POINTER(TextParams),
                             c_bool, POINTER(c_run_p), POINTER(AuditDecision), ErrorP)
sipp_audit_decision_free = _fn("sipp_audit_decision_free", None, POINTER(AuditDecision))


# One init function per mirror (sipp.h: `sipp_status sipp_X_init(sipp_X *p, size_t size)`).
_INITS = {}
for _mirror, _name in ((Error, "error"), (ClientParams, "client_params"),
                       (LocalParams, "local_params"), (ProviderParams, "provider_params"),
                       (GatewayParams, "gateway_params"), (TextParams, "text_params"),
                       (EmbedParams, "embed_params"), (EndpointInfo, "endpoint_info"),
                       (EngineStats, "engine_stats"), (TokenBatch, "token_batch"),
                       (Estimate, "estimate")):
    _INITS[_mirror] = _fn(f"sipp_{_name}_init", c_int, POINTER(_mirror), c_size_t)


def new(mirror: type):
    """A struct filled by its sipp_*_init(): defaults, struct_size = sizeof(mirror)."""
    p = mirror()
    rc = _INITS[mirror](ctypes.byref(p), ctypes.sizeof(p))
    if rc != OK:
        raise ImportError(f"sipp: libsipp {sipp_version().decode()} is older than this binding "
                          f"(it refuses a {mirror.__name__} of {ctypes.sizeof(mirror)} bytes)")
    return p


for _mirror in _INITS:  # at import: a library older than this binding stops here
    new(_mirror)


def new_error() -> Error:
    return new(Error)


def status_name(status: int) -> str:
    return sipp_status_name(status).decode()
