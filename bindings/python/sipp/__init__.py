"""Sipp for Python: a thin layer over libsipp's C API (include/sipp.h), loaded with ctypes.

    import sipp
    with sipp.Client() as client:
        chat = client.add_local("chat", "model.gguf")
        with chat.chat("Hello!", max_tokens=32) as run:
            for piece in run:                 # token batches as they arrive (str)
                print(piece, end="", flush=True)
            print(run.result().finish_reason)

Threads: a Client, its Endpoints and a Run's cancel() may be used from any thread. A Run has
one consumer at a time (iteration, result()); the binding serialises the C calls of one run.
Blocking calls release the GIL. `async for` and `await run` run the blocking waits on a worker
thread of the run's own, never on the event loop.

The reference is docs/bindings.md.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import json
import math
import os
import threading
from dataclasses import dataclass, field
from typing import (Any, AsyncIterator, Callable, Iterable, Iterator, Mapping, Optional,
                    Sequence, TypedDict, TypeVar, Union)

try:  # Python 3.11+
    from typing import Unpack
except ImportError:  # pragma: no cover - older Pythons only lose the precise kwargs typing
    Unpack = None  # type: ignore

from . import _ffi

__all__ = ["Client", "Endpoint", "Run", "Response", "Usage", "Stats", "EndpointInfo",
           "TokenLogprob", "TopLogprob", "Tool", "ToolCall", "Delta", "tool_result",
           "EngineStats", "TokenBatch", "SippError", "InvalidArgumentError", "TextOptions",
           "set_log_level", "version", "Figure", "Estimate", "Policy", "RouteChoice",
           "AuditDecision", "route_draft_audit"]

# The wait slice of blocking pulls: short enough that Ctrl-C and close() are noticed quickly.
_SLICE_MS = 200


def set_log_level(level: str) -> None:
    """Sets the log level of the whole process (sipp_log_set): none, error, warn, info or debug.
    Messages at or above it go to stderr, from every client and from llama.cpp."""
    if level not in _ffi.LOG_LEVELS:
        raise _invalid(f"log level must be one of {', '.join(_ffi.LOG_LEVELS)}")
    _ffi.sipp_log_set(_ffi.LOG_LEVELS[level])


def version() -> str:
    """The version of the loaded libsipp, "MAJOR.MINOR.PATCH"."""
    return _ffi.sipp_version().decode()


# ---- errors ----------------------------------------------------------------------------------


class SippError(Exception):
    """A failed Sipp call or run.

    kind:        the status name of sipp.h ("invalid_argument", "not_found", "rate_limited", ...)
    status:      the status number
    code:        the remote peer's error code (sipp_response.error_code: a gateway envelope's
                 "authentication", an OpenAI `code`/`type`, ...), else ""
    http_status: the HTTP status of a remote answer, else 0
    subcode:     the errno or HTTP status a failing call reported (sipp_error.subcode), else 0
    request_id:  the remote peer's request id when there was one, else ""
    message:     one line of detail (never a secret)
    """

    def __init__(self, kind: str, message: str, *, status: int = -1, code: str = "",
                 http_status: int = 0, subcode: int = 0, request_id: str = "",
                 retry_after_s: int = 0) -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.http_status = http_status
        self.subcode = subcode
        self.request_id = request_id
        self.retry_after_s = retry_after_s

    @staticmethod
    def _make(status: int, message: str, **kw: Any) -> "SippError":
        cls = InvalidArgumentError if status == _ffi.INVALID_ARGUMENT else SippError
        return cls(_ffi.status_name(status), message, status=status, **kw)


class InvalidArgumentError(SippError, ValueError):
    """kind "invalid_argument": an argument or option was refused (also a ValueError)."""


def _invalid(message: str) -> InvalidArgumentError:
    return InvalidArgumentError("invalid_argument", message, status=_ffi.INVALID_ARGUMENT)


def _check(status: int, err: _ffi.Error) -> None:
    if status != _ffi.OK:
        raise SippError._make(status, err.message.decode("utf-8", "replace"), subcode=err.subcode)


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopLogprob:
    """An alternative at an output position (sipp_top_logprob)."""
    token: str          # its text (invalid UTF-8 replaced)
    bytes: bytes        # its exact bytes (may be part of a UTF-8 sequence)
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """One output token's log-probability and its most likely alternatives (sipp_token_logprob;
    options logprobs=True, top_logprobs=N)."""
    token: str
    bytes: bytes
    logprob: float
    top: tuple = ()     # TopLogprob, most likely first


def _logprobs(entries: Any, n: int) -> list:
    out = []
    for i in range(n):
        e = entries[i]
        raw = ctypes.string_at(e.token, e.token_len) if e.token_len else b""
        top = []
        for k in range(e.n_top):
            t = e.top[k]
            tb = ctypes.string_at(t.token, t.token_len) if t.token_len else b""
            top.append(TopLogprob(tb.decode("utf-8", "replace"), tb, t.logprob))
        out.append(TokenLogprob(raw.decode("utf-8", "replace"), raw, e.logprob, tuple(top)))
    return out


class TokenBatch(str):
    """A batch of generated text: a str, plus how many tokens it covers (`n_tokens`) and, with
    logprobs=True, their TokenLogprob entries (`logprobs`)."""

    n_tokens: int
    logprobs: list

    def __new__(cls, text: str, n_tokens: int, logprobs: Optional[list] = None) -> "TokenBatch":
        s = super().__new__(cls, text)
        s.n_tokens = n_tokens
        s.logprobs = logprobs or []
        return s


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class Stats:
    """Per-request timings (ms) and rates (tokens/s); see sipp_stats in sipp.h."""
    queue_ms: float
    ttft_ms: float
    prefill_ms: float
    decode_ms: float
    prefill_tok_s: float
    decode_tok_s: float
    total_ms: float
    itl_avg_ms: float
    itl_p99_ms: float
    prefill_tokens: int
    cache_source: str
    cached_tokens: int


@dataclass(frozen=True)
class Response:
    """The end of a successful run (a failed one raises SippError instead)."""
    text: str
    finish_reason: str  # "stop", "length" or "cancelled"
    usage: Usage
    stats: Stats
    embedding: Optional[list[float]] = None  # embed only
    normalized: bool = False
    http_status: int = 0  # remote endpoints
    request_id: str = ""
    error_code: str = ""  # remote endpoints: the peer's error code, when it sent one
    logprobs: Optional[list] = None  # TokenLogprob per output token, with logprobs=True
    tool_calls: tuple = ()  # ToolCall: the calls the answer ends with (finish_reason "tool_calls")
    reasoning: str = ""     # a thinking model's reasoning (reasoning="separate", the default)

    def message(self) -> dict:
        """The answer as an assistant message, to send back with the tools' results."""
        return {"role": "assistant", "content": self.text, "tool_calls": list(self.tool_calls)}


# ---- tools and reasoning (issue 18) ------------------------------------------------------------

@dataclass(frozen=True)
class Tool:
    """A tool the model may call (sipp_tool): a name ([A-Za-z0-9_-], 1-64 characters), what it
    does, and a JSON Schema of its arguments, an object schema (a mapping or JSON text)."""
    name: str
    description: str = ""
    parameters: Union[Mapping[str, Any], str] = field(
        default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class ToolCall:
    """A call the model made (sipp_tool_call): its id (a tool result names it), the tool's
    name and the arguments as JSON text (`args` parses them)."""
    id: str
    name: str
    arguments: str

    @property
    def args(self) -> Any:
        return json.loads(self.arguments)


@dataclass(frozen=True)
class Delta:
    """One piece of a chat's stream (sipp_delta), from Run.deltas(): kind "content",
    "reasoning" or "tool_call". A call's first delta has its tool_id and tool_name; later ones
    (same tool_index) carry pieces of its arguments in `text`."""
    kind: str
    text: str
    tool_index: int = 0
    tool_id: Optional[str] = None
    tool_name: Optional[str] = None


def tool_result(call: Union[ToolCall, str], content: str) -> dict:
    """The message that answers a tool call: {"role": "tool", "content", "tool_call_id"}."""
    return {"role": "tool", "content": content,
            "tool_call_id": call.id if isinstance(call, ToolCall) else call}


def _tools(tools: Any, keep: list):
    """A C array of sipp_tool from Tool objects or mappings ({"name", "description",
    "parameters"}, or OpenAI's {"type": "function", "function": {...}})."""
    items = []
    for t in tools:
        if isinstance(t, Mapping):
            t = t.get("function", t) if t.get("type") == "function" else t
            t = Tool(t.get("name"), t.get("description") or "",
                     t.get("parameters", {"type": "object", "properties": {}}))
        if not isinstance(t, Tool) or not isinstance(t.name, str):
            raise TypeError("tools: each tool must be a sipp.Tool or a mapping with a str name")
        params = t.parameters if isinstance(t.parameters, str) else json.dumps(t.parameters)
        items.append((_encode(t.name, "tool name"), _encode(t.description or "", "tool description"),
                      _encode(params, "tool parameters")))
    keep.append(items)
    arr = (_ffi.Tool * max(1, len(items)))(*items)
    keep.append(arr)
    return ctypes.cast(arr, ctypes.POINTER(_ffi.Tool)), len(items)


def _tool_calls(calls: Any, keep: list):
    """A C array of sipp_tool_call from ToolCall objects or mappings ({"id", "name",
    "arguments"}, arguments as JSON text or a mapping; or OpenAI's {"id", "function": {...}})."""
    items = []
    for c in calls:
        if isinstance(c, Mapping):
            fn = c.get("function", c)
            args = fn.get("arguments", "{}")
            c = ToolCall(c.get("id"), fn.get("name"),
                         args if isinstance(args, str) else json.dumps(args))
        if not isinstance(c, ToolCall):
            raise TypeError("tool_calls: each call must be a sipp.ToolCall or a mapping")
        items.append((_encode(c.id, "tool call id"), _encode(c.name, "tool call name"),
                      _encode(c.arguments, "tool call arguments")))
    keep.append(items)
    arr = (_ffi.ToolCall * max(1, len(items)))(*items)
    keep.append(arr)
    return ctypes.cast(arr, ctypes.POINTER(_ffi.ToolCall)), len(items)


@dataclass(frozen=True)
class EndpointInfo:
    can_generate: bool
    can_chat: bool
    can_embed: bool
    n_ctx: int
    n_ctx_train: int
    n_embd: int
    n_parallel: int
    n_params: int
    size_bytes: int
    architecture: str
    description: str
    vision: bool = False     # multimodal capabilities (from the projector, mmproj)
    audio_in: bool = False
    audio_out: bool = False


@dataclass(frozen=True)
class EngineStats:
    running: int
    queued: int
    completed: int
    cancelled: int
    failed: int
    rejected_busy: int
    prompt_tokens: int
    generated_tokens: int
    ticks: int
    batch_tokens: int
    batch_fill: float
    cache_hits: int
    cache_misses: int
    cache_evictions: int
    cache_ram_bytes: int
    cache_disk_bytes: int
    stalls: int
    stalled: int


@dataclass(frozen=True)
class Figure:
    """A figure of an estimate and where it comes from: source "measured" (over `samples`
    requests), "configured", "predicted" or "unknown" (value 0: do not use it)."""
    value: float
    samples: int
    source: str

    @property
    def known(self) -> bool:
        return self.source != "unknown"


@dataclass(frozen=True)
class Estimate:
    """What an endpoint expects of one prepared request, without running it (sipp_estimate;
    docs/routing.md). Keep it to pass to Policy.choose: it holds the C estimate."""
    local: bool
    loaded: bool
    healthy: bool
    prompt_tokens: int
    cached_tokens: int
    cache_source: str
    cache_on_disk: bool
    prefill_tokens: int
    n_ctx: int
    running: int
    queued: int
    free_slots: int
    ttft_ms: Figure
    decode_tokens_per_s: Figure
    total_ms: Figure
    price_input_per_mtok: Figure
    price_output_per_mtok: Figure
    error_rate: Figure
    busy_rate: Figure
    _raw: Any = field(default=None, repr=False, compare=False)


def _estimate(raw: Any) -> Estimate:
    vals = {}
    for name, _ in raw._fields_:
        if name == "struct_size":
            continue
        v = getattr(raw, name)
        if isinstance(v, _ffi.Figure):
            v = Figure(v.value, v.samples, _ffi.FIGURE_SOURCES.get(v.source, "unknown"))
        elif name == "cache_source":
            v = _ffi.CACHE_SOURCES.get(v, "none")
        vals[name] = v
    return Estimate(**vals, _raw=raw)


def _estimate_to_c(e: Estimate) -> Any:
    """The C estimate of `e`: the one it came from, or one built from its fields (an estimate
    the app wrote itself, e.g. to test its rules)."""
    if e._raw is not None:
        return e._raw
    raw = _ffi.new(_ffi.Estimate)
    sources = {v: k for k, v in _ffi.FIGURE_SOURCES.items()}
    caches = {v: k for k, v in _ffi.CACHE_SOURCES.items()}
    for name, _ in raw._fields_:
        if name == "struct_size":
            continue
        v = getattr(e, name)
        if isinstance(v, Figure):
            v = _ffi.Figure(v.value, v.samples, sources.get(v.source, 0))
        elif name == "cache_source":
            v = caches.get(v, 0)
        setattr(raw, name, v)
    return raw


def _plain(struct: ctypes.Structure, cls: type, **override: Any) -> Any:
    """Builds the dataclass `cls` from the same-named fields of a ctypes struct."""
    vals = {}
    for name in cls.__dataclass_fields__:
        if name in override:
            vals[name] = override[name]
            continue
        v = getattr(struct, name)
        vals[name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return cls(**vals)


# ---- options ---------------------------------------------------------------------------------


class TextOptions(TypedDict, total=False):
    """Options of query and chat (sipp_text_params). Anything left out keeps the C default."""
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    seed: int
    stop: Sequence[str]
    context_key: str
    cache_scope: str
    grammar: str
    json_schema: Union[str, Mapping[str, Any]]
    timeout_ms: int
    ignore_eos: bool
    logprobs: bool            # each output token's log-probability (Response.logprobs)
    top_logprobs: int         # 0..20 alternatives per token
    extra: Mapping[str, Any]  # remote only: merged into the request body (sent as extra_json)
    extra_json: str           # the same, already encoded
    request_id: str           # remote only: sent as x-request-id
    images: Sequence[bytes]   # multimodal: encoded images (PNG, JPEG, ...); chat: the last user turn
    tools: Sequence[Union[Tool, Mapping[str, Any]]]  # chat: tools the model may call
    tool_choice: str          # "auto" (default), "none", "required" or a tool's name
    parallel_tool_calls: bool # more than one call in an answer (default True)
    reasoning: str            # "separate" (default: Response.reasoning), "inline" or "drop"


# Fields a caller may not set by keyword: the binding owns them.
_PRIVATE_FIELDS = {"struct_size", "stop", "n_stop", "on_tokens", "user_data", "progress",
                   "progress_user_data", "kind", "headers", "n_headers", "auth"}


def _fill(struct: ctypes.Structure, options: Mapping[str, Any], keep: list, what: str) -> None:
    """Sets fields of a params struct from keyword options, checked against the C field types.

    Any field of the mirror is accepted by its sipp.h name, so a field appended to sipp.h and to
    the mirror is usable at once. Strings are encoded and kept alive in `keep` until the call.
    """
    types = dict(struct._fields_)
    for name, value in options.items():
        if value is None:
            continue
        ctype = types.get(name)
        if ctype is None or name in _PRIVATE_FIELDS:
            raise TypeError(f"{what}: unknown option '{name}'")
        if ctype is ctypes.c_char_p:
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{what}: '{name}' must be a string")
            b = os.fsencode(value) if isinstance(value, os.PathLike) else value.encode()
            if b"\0" in b:
                raise _invalid(f"{what}: '{name}' contains a NUL character")
            keep.append(b)
            setattr(struct, name, b)
        elif ctype is ctypes.c_bool:
            if not isinstance(value, bool):
                raise TypeError(f"{what}: '{name}' must be a bool")
            setattr(struct, name, value)
        elif ctype in (ctypes.c_float, ctypes.c_double):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{what}: '{name}' must be a number")
            setattr(struct, name, float(value))  # NaN and ranges: the library checks
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what}: '{name}' must be an int")
            bits = ctypes.sizeof(ctype) * 8
            signed = ctype(-1).value == -1
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            if not lo <= value <= hi:
                raise _invalid(f"{what}: '{name}' = {value} is outside [{lo}, {hi}]")
            setattr(struct, name, value)


def _extra(opts: dict, what: str) -> None:
    """Turns the `extra` option (a JSON object as a Mapping) into extra_json."""
    extra = opts.pop("extra", None)
    if extra is None:
        return
    if not isinstance(extra, Mapping):
        raise TypeError(f"{what}: 'extra' must be a mapping (a JSON object)")
    if opts.get("extra_json") is not None:
        raise TypeError(f"{what}: give 'extra' or 'extra_json', not both")
    try:
        opts["extra_json"] = json.dumps(extra)
    except (TypeError, ValueError) as e:
        raise _invalid(f"{what}: 'extra' is not JSON-serialisable: {e}") from None


def _strings(items: Sequence[str], keep: list, what: str):
    """A C array of strings kept alive in `keep`: (pointer, count)."""
    enc = [_encode(s, what) for s in items]
    arr = (ctypes.c_char_p * max(1, len(enc)))(*enc)
    keep.extend([enc, arr])
    return ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p)), len(enc)


def _headers(struct: ctypes.Structure, headers: Any, keep: list, what: str) -> None:
    """Sets headers/n_headers from a mapping {name: value} or "Name: value" lines."""
    if headers is None:
        return
    if isinstance(headers, Mapping):
        lines = [f"{k}: {v}" for k, v in headers.items()]
    elif isinstance(headers, str):
        lines = [headers]
    else:
        lines = list(headers)
    if not all(isinstance(x, str) for x in lines):
        raise TypeError(f"{what}: headers must be a mapping of str or a list of 'Name: value' str")
    struct.headers, struct.n_headers = _strings(lines, keep, f"{what}: header")


def _text_params(options: Mapping[str, Any], keep: list, media_message: int = 0) -> _ffi.TextParams:
    p = _ffi.new(_ffi.TextParams)
    p.struct_size = ctypes.sizeof(_ffi.TextParams)
    opts = dict(options)
    stop = opts.pop("stop", None)
    images = opts.pop("images", None)
    if images:
        if not all(isinstance(b, (bytes, bytearray)) for b in images):
            raise TypeError("images: each image must be bytes (the encoded file)")
        bufs = [ctypes.create_string_buffer(bytes(b), len(b)) for b in images]
        arr = (_ffi.Media * len(bufs))(*[
            _ffi.Media(1, ctypes.cast(b, ctypes.c_void_p), len(img), None, media_message)
            for b, img in zip(bufs, images)])
        keep.extend([bufs, arr])
        p.media, p.n_media = ctypes.cast(arr, ctypes.POINTER(_ffi.Media)), len(bufs)
    if isinstance(opts.get("json_schema"), Mapping):
        opts["json_schema"] = json.dumps(opts["json_schema"])
    tools = opts.pop("tools", None)
    if tools is not None:
        p.tools, p.n_tools = _tools(tools, keep)
    choice = opts.pop("tool_choice", None)
    if choice is not None:
        if not isinstance(choice, str):
            raise TypeError("tool_choice must be a str: auto, none, required or a tool's name")
        if choice in _ffi.TOOL_CHOICES:
            p.tool_choice = _ffi.TOOL_CHOICES[choice]
        else:
            p.tool_choice = 3
            opts["tool_choice_name"] = choice
    reasoning = opts.pop("reasoning", None)
    if reasoning is not None:
        if reasoning not in _ffi.REASONING_MODES:
            raise _invalid("reasoning must be separate, inline or drop")
        p.reasoning_mode = _ffi.REASONING_MODES[reasoning]
    _extra(opts, "text options")
    _fill(p, opts, keep, "text options")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        p.stop, p.n_stop = _strings(list(stop), keep, "stop string")
    return p


MessageLike = Union[Mapping[str, str], Sequence[str]]


def _chat_messages(messages: list, keep: list):
    """sipp_chat_message array of mappings that may carry tool_calls, tool_call_id and
    reasoning (sipp_chat_ex)."""
    items = []
    for m in messages:
        if not isinstance(m, Mapping):
            role, content = m
            m = {"role": role, "content": content}
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or not (content is None or isinstance(content, str)):
            raise TypeError("chat: each message needs a str role and a str (or None) content")
        calls, n_calls = _tool_calls(m.get("tool_calls") or (), keep)
        cid, reasoning = m.get("tool_call_id"), m.get("reasoning")
        items.append(_ffi.ChatMessage(
            _encode(role, "role"), None if content is None else content.encode(),
            calls if n_calls else None, n_calls,
            None if cid is None else _encode(cid, "tool_call_id"),
            None if not reasoning else reasoning.encode()))
    arr = (_ffi.ChatMessage * max(1, len(items)))(*items)
    keep.extend([items, arr])
    return arr, len(items)


def _has_tool_messages(messages: list) -> bool:
    return any(isinstance(m, Mapping) and (m.get("tool_calls") or m.get("tool_call_id"))
               for m in messages)


def _messages(messages: Union[str, Iterable[MessageLike]], keep: list):
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    items = []
    for m in messages:
        if isinstance(m, Mapping):
            role, content = m.get("role"), m.get("content")
        else:
            role, content = m
        if not isinstance(role, str) or not isinstance(content, str):
            raise TypeError("chat: each message needs a str role and a str content")
        items.append((role.encode(), content.encode()))
    keep.append(items)
    arr = (_ffi.Message * max(1, len(items)))(*items)
    keep.append(arr)
    return arr, len(items)


# ---- runs ------------------------------------------------------------------------------------


_C = TypeVar("_C", bound="_Closing")


class _Closing:
    """Context-manager and finalizer behaviour of objects that own a C handle: `with` and
    garbage collection both end in close()."""

    def close(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class Run(_Closing):
    """One request: iterate it for token batches, then `result()`; or `await run` in asyncio.

    Iteration and result() consume the run's stream: each piece of text is delivered once,
    whichever way it is read. A run that failed raises SippError from the iteration (at its end)
    and from result(). `cancel()` works from any thread; the run then ends with finish reason
    "cancelled" and the text so far. `close()` (or leaving a `with` block) cancels a run still
    going and frees it.
    """

    def __init__(self, raw: int, owner: "Endpoint") -> None:
        self._raw: Optional[int] = raw
        self._owner = owner  # keeps the client (and so the endpoint) alive while the run is
        self._lock = threading.Lock()  # one C consumer call at a time; close waits for it
        self._response: Optional[Response] = None
        self._error: Optional[SippError] = None
        self._finished = False
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None

    # -- blocking --

    def _pull(self, timeout_ms: int) -> Optional[TokenBatch]:
        """One sipp_run_next. Returns a batch ('' when done), None on timeout."""
        with self._lock:
            if self._finished or self._raw is None:
                self._finished = True
                return TokenBatch("", 0)
            out = _ffi.new(_ffi.TokenBatch)
            err = _ffi.new_error()
            st = _ffi.sipp_run_next(self._raw, timeout_ms, ctypes.byref(out), ctypes.byref(err))
            if st == _ffi.TIMEOUT:
                return None
            _check(st, err)
            b = out
            text = ctypes.string_at(b.text, b.len).decode("utf-8", "replace") if b.len else ""
            if b.done:
                self._finish_locked()
            return TokenBatch(text, b.n_tokens, _logprobs(b.logprobs, b.n_logprobs))

    def _finish_locked(self) -> None:
        """Copies the response of an ended run (under self._lock)."""
        if self._response is not None or self._error is not None:
            self._finished = True
            return
        resp_p = ctypes.POINTER(_ffi.Response)()
        err = _ffi.new_error()
        _check(_ffi.sipp_run_wait(self._raw, ctypes.byref(resp_p), ctypes.byref(err)), err)
        r = resp_p.contents
        self._finished = True
        request_id = r.request_id.decode("utf-8", "replace")
        error_code = r.error_code.decode("utf-8", "replace")
        if r.status != _ffi.OK:
            self._error = SippError._make(r.status, r.error_message.decode("utf-8", "replace"),
                                          code=error_code, http_status=r.http_status,
                                          request_id=request_id, retry_after_s=r.retry_after_s)
            return
        text = ctypes.string_at(r.text, r.text_len).decode("utf-8", "replace") if r.text_len else ""
        emb = r.embedding[:r.n_embd] if r.embedding else None
        calls = tuple(ToolCall(c.id.decode("utf-8", "replace"), c.name.decode("utf-8", "replace"),
                               c.arguments.decode("utf-8", "replace"))
                      for c in r.tool_calls[:r.n_tool_calls]) if r.tool_calls else ()
        self._response = Response(
            tool_calls=calls,
            reasoning=ctypes.string_at(r.reasoning, r.reasoning_len).decode("utf-8", "replace")
            if r.reasoning_len else "",
            text=text, finish_reason=_ffi.FINISH_REASONS.get(r.finish_reason, "none"),
            usage=_plain(r.usage.contents, Usage),
            stats=_plain(r.stats.contents, Stats,
                         cache_source=_ffi.CACHE_SOURCES.get(r.stats.contents.cache_source,
                                                             "none")),
            embedding=emb, normalized=bool(r.normalized), http_status=r.http_status,
            request_id=request_id, error_code=error_code,
            logprobs=_logprobs(r.logprobs, r.n_logprobs) if r.logprobs else None)

    def _outcome(self) -> Response:
        if self._error is not None:
            raise self._error
        if self._response is None:
            raise SippError("closed", "the run was closed before it ended", status=12)
        return self._response

    def _pull_delta(self, timeout_ms: int) -> "Optional[Delta | bool]":
        """One sipp_run_next_delta: a Delta, True when the stream is over, None on timeout."""
        with self._lock:
            if self._finished or self._raw is None:
                self._finished = True
                return True
            out = _ffi.Delta(struct_size=ctypes.sizeof(_ffi.Delta))  # no init: an out-struct
            done = ctypes.c_bool(False)
            err = _ffi.new_error()
            st = _ffi.sipp_run_next_delta(self._raw, timeout_ms, ctypes.byref(out),
                                          ctypes.byref(done), ctypes.byref(err))
            if st == _ffi.TIMEOUT:
                return None
            _check(st, err)
            if done.value:
                self._finish_locked()
                return True
            text = ctypes.string_at(out.text, out.len).decode("utf-8", "replace") if out.len else ""
            return Delta(_ffi.DELTA_KINDS.get(out.kind, "content"), text, out.tool_index,
                         out.tool_id.decode() if out.tool_id else None,
                         out.tool_name.decode() if out.tool_name else None)

    def deltas(self) -> Iterator[Delta]:
        """The stream as deltas (content, reasoning and tool-call pieces, in order), instead of
        text batches: a run is read one way or the other. Raises SippError at the end of a
        failed run, as iteration does."""
        while True:
            d = self._pull_delta(_SLICE_MS)
            if d is True:
                break
            if d is not None:
                yield d
        if self._error is not None:
            raise self._error

    def __iter__(self) -> Iterator[TokenBatch]:
        while True:
            b = self._pull(_SLICE_MS)
            if b is None:
                continue
            if b:
                yield b
            if self._finished:
                break
        if self._error is not None:
            raise self._error

    def result(self, timeout: Optional[float] = None) -> Response:
        """Waits for the end (reading the rest of the stream) and returns the response.
        Raises SippError if the run failed, TimeoutError after `timeout` seconds (the run goes on).
        """
        deadline = None if timeout is None else _now() + timeout
        while not self._finished:
            left = _SLICE_MS if deadline is None else min(_SLICE_MS, (deadline - _now()) * 1000)
            if left <= 0:
                raise TimeoutError("the run did not end in time")
            self._pull(max(0, int(math.ceil(left))))
        return self._outcome()

    def cancel(self) -> None:
        """Asks the run to stop (any thread). It ends within one engine tick."""
        raw = self._raw
        if raw is not None:
            _ffi.sipp_run_cancel(raw)

    @property
    def done(self) -> bool:
        """True once the run has ended (it may still hold text not yet read)."""
        with self._lock:
            return self._finished or self._raw is None or bool(_ffi.sipp_run_is_done(self._raw))

    def close(self) -> None:
        """Cancels the run if still going and frees it. Idempotent."""
        self.cancel()
        with self._lock:
            raw, self._raw = self._raw, None
            if raw is not None:
                _ffi.sipp_run_free(raw)
        ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=False)


    # -- asyncio --

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="sipp-run")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def __aiter__(self) -> AsyncIterator[TokenBatch]:
        try:
            while not self._finished:
                b = await self._in_thread(self._pull, _SLICE_MS)
                if b:
                    yield b
        except asyncio.CancelledError:
            self.cancel()  # the task reading the run was cancelled: so is the run
            raise
        if self._error is not None:
            raise self._error

    async def aresult(self) -> Response:
        """result() for asyncio: the wait runs on the run's worker thread."""
        try:
            while not self._finished:
                await self._in_thread(self._pull, _SLICE_MS)
        except asyncio.CancelledError:
            self.cancel()
            raise
        return self._outcome()

    def __await__(self):
        return self.aresult().__await__()


def _now() -> float:
    import time
    return time.monotonic()


# ---- client and endpoints --------------------------------------------------------------------


class _Guard:
    """Readers (requests, adds of new ids) run together; writers (remove, replace, close) wait
    for them and exclude them, so no C call ever sees an endpoint or client being freed."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._readers = 0
        self._writer = False

    def read(self) -> "_Held":
        with self._cv:
            while self._writer:
                self._cv.wait()
            self._readers += 1
        return _Held(self, False)

    def write(self) -> "_Held":
        with self._cv:
            while self._writer:
                self._cv.wait()
            self._writer = True
            while self._readers:
                self._cv.wait()
        return _Held(self, True)

    def _release(self, writer: bool) -> None:
        with self._cv:
            if writer:
                self._writer = False
            else:
                self._readers -= 1
            self._cv.notify_all()


class _Held:
    def __init__(self, guard: _Guard, writer: bool) -> None:
        self._guard, self._writer = guard, writer

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        self._guard._release(self._writer)


class Endpoint:
    """A registered endpoint. Valid until removed, replaced (same id added again) or the client
    closes; using it after that raises SippError(kind="closed")."""

    def __init__(self, client: "Client", id: str, raw: int) -> None:
        self.client = client
        self.id = id
        self._raw: Optional[int] = raw

    def _ptr(self) -> int:
        if self._raw is None or self.client._raw is None:
            raise SippError("closed", f"endpoint '{self.id}' was removed or its client closed",
                            status=12)
        return self._raw

    def query(self, prompt: str, **options: "Unpack[TextOptions]") -> Run:
        """Starts a raw completion of `prompt`. Option errors raise here (no run exists)."""
        keep: list = []
        p = _text_params(options, keep)
        return self._submit(lambda raw, out, err: _ffi.sipp_query(
            raw, _encode(prompt, "prompt"), ctypes.byref(p), out, err))

    def chat(self, messages: Union[str, Iterable[MessageLike]],
             **options: "Unpack[TextOptions]") -> Run:
        """Starts a chat. `messages`: a str (one user message), or dicts {"role", "content"} or
        (role, content) pairs; roles "system", "user", "assistant" and "tool". An assistant
        message may carry "tool_calls" (ToolCall, e.g. Response.message()), a tool message
        answers one by "tool_call_id" (tool_result())."""
        keep: list = []
        if not isinstance(messages, str):
            messages = list(messages)
        if not isinstance(messages, str) and _has_tool_messages(messages):
            arr, n = _chat_messages(messages, keep)
            chat = _ffi.sipp_chat_ex
        else:
            arr, n = _messages(messages, keep)
            chat = _ffi.sipp_chat
        users = [i for i in range(n) if arr[i].role == b"user"]
        p = _text_params(options, keep, users[-1] if users else 0)
        return self._submit(lambda raw, out, err: chat(raw, arr, n, ctypes.byref(p), out, err))

    def embed(self, text: str, *, normalize: bool = True,
              extra: Optional[Mapping[str, Any]] = None, extra_json: Optional[str] = None,
              request_id: Optional[str] = None) -> Run:
        """Starts an embedding of `text`; result().embedding holds the vector. `extra` (remote
        only) is merged into the request body, e.g. {"dimensions": 256}; `request_id` (remote
        only) is sent as x-request-id."""
        keep: list = []
        p = _ffi.new(_ffi.EmbedParams)
        p.struct_size = ctypes.sizeof(_ffi.EmbedParams)
        opts = {"normalize": normalize, "extra": extra, "extra_json": extra_json,
                "request_id": request_id}
        _extra(opts, "embed options")
        _fill(p, opts, keep, "embed options")
        return self._submit(lambda raw, out, err: _ffi.sipp_embed(
            raw, _encode(text, "text"), ctypes.byref(p), out, err))

    def _submit(self, call: Callable[[int, Any, Any], int]) -> Run:
        with self.client._guard.read():
            raw = self._ptr()
            out = ctypes.c_void_p()
            err = _ffi.new_error()
            _check(call(raw, ctypes.byref(out), ctypes.byref(err)), err)
            return Run(out.value, self)

    def estimate(self, prompt: Optional[str] = None, *,
                 messages: Union[str, Iterable[MessageLike], None] = None,
                 **options: "Unpack[TextOptions]") -> Estimate:
        """Estimates a query (`prompt`) or a chat (`messages`) with `options` (context_key and
        cache_scope decide which cached prefix counts) without running it. Cheap; a local
        endpoint keeps the tokens for the query/chat of the same text that follows."""
        if (prompt is None) == (messages is None):
            raise _invalid("estimate needs a prompt or messages (one of them)")
        keep: list = []
        p = _text_params(options, keep)
        out = _ffi.new(_ffi.Estimate)
        err = _ffi.new_error()
        with self.client._guard.read():
            if prompt is not None:
                st = _ffi.sipp_estimate_query(self._ptr(), _encode(prompt, "prompt"),
                                              ctypes.byref(p), ctypes.byref(out), ctypes.byref(err))
            else:
                arr, n = _messages(messages, keep)
                st = _ffi.sipp_estimate_chat(self._ptr(), arr, n, ctypes.byref(p),
                                             ctypes.byref(out), ctypes.byref(err))
            _check(st, err)
        return _estimate(out)

    def set_prices(self, input_per_mtok: Optional[float],
                   output_per_mtok: Optional[float]) -> None:
        """The prices estimates report (per million tokens, the app's currency; None = unknown)."""
        with self.client._guard.read():
            err = _ffi.new_error()
            _check(_ffi.sipp_endpoint_set_prices(
                self._ptr(), -1.0 if input_per_mtok is None else float(input_per_mtok),
                -1.0 if output_per_mtok is None else float(output_per_mtok),
                ctypes.byref(err)), err)

    def info(self) -> EndpointInfo:
        with self.client._guard.read():
            out = _ffi.new(_ffi.EndpointInfo)
            err = _ffi.new_error()
            _check(_ffi.sipp_endpoint_get_info(self._ptr(), ctypes.byref(out), ctypes.byref(err)), err)
            return _plain(out, EndpointInfo)

    def stats(self) -> EngineStats:
        with self.client._guard.read():
            out = _ffi.new(_ffi.EngineStats)
            err = _ffi.new_error()
            _check(_ffi.sipp_endpoint_get_stats(self._ptr(), ctypes.byref(out), ctypes.byref(err)), err)
            return _plain(out, EngineStats)

    def __repr__(self) -> str:
        state = "" if self._raw is not None else " (closed)"
        return f"<sipp.Endpoint '{self.id}'{state}>"


def _encode(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str")
    b = s.encode()
    if b"\0" in b:
        raise _invalid(f"{what} contains a NUL character")
    return b


class Client(_Closing):
    """A registry of endpoints (sipp_client). Close it (or use `with`) to cancel every run,
    stop the engine threads and unload the models; runs stay readable after that."""

    def __init__(self, *, log_level: Optional[str] = None) -> None:
        self._guard = _Guard()
        self._endpoints: dict[str, Endpoint] = {}
        self._raw: Optional[int] = None
        if log_level is not None:  # the process's level (set_log_level), not this client's
            set_log_level(log_level)
        out = ctypes.c_void_p()
        err = _ffi.new_error()
        _check(_ffi.sipp_client_new(None, ctypes.byref(out), ctypes.byref(err)), err)
        self._raw = out.value

    def _client(self) -> int:
        if self._raw is None:
            raise SippError("closed", "the client is closed", status=12)
        return self._raw

    def _add(self, id: str, call: Callable[[int, bytes, Any, Any], int]) -> Endpoint:
        """Runs one sipp_client_add_* call. A new id adds beside running requests; an existing
        id is replaced, which frees the old endpoint, so that waits for requests in flight."""
        bid = _encode(id, "id")
        replacing = id in self._endpoints
        with (self._guard.write() if replacing else self._guard.read()):
            raw = self._client()
            out = ctypes.c_void_p()
            err = _ffi.new_error()
            st = call(raw, bid, ctypes.byref(out), ctypes.byref(err))
            if st == _ffi.OK:
                old = self._endpoints.get(id)
                if old is not None:
                    old._raw = None  # freed by the library when it replaced it
            _check(st, err)
            ep = Endpoint(self, id, out.value)
            self._endpoints[id] = ep
            return ep

    def add_local(self, id: str, model_path: Union[str, os.PathLike], *,
                  progress: Optional[Callable[[float], bool]] = None, **params: Any) -> Endpoint:
        """Registers a local GGUF model under `id` and loads it (blocking; the GIL is released).

        `params` are fields of sipp_local_params by name (the rows of include/sipp_settings.h,
        listed in sipp/_fields.py), e.g. n_ctx, n_threads, n_parallel, prefill_chunk,
        cache_dir, sha256 (a pin: 64 hex digits the file's SHA-256 must match),
        stall_alarm_ms (the engine watchdog; see docs/engine.md).
        `progress(fraction)` is called on this thread; return False to abort.
        """
        keep: list = []
        p = _ffi.new(_ffi.LocalParams)
        p.struct_size = ctypes.sizeof(_ffi.LocalParams)
        _fill(p, {"model_path": model_path, **params}, keep, "local params")
        raised: list[BaseException] = []
        if progress is not None:
            def on_progress(frac: float, _ud: Any) -> bool:
                try:
                    return bool(progress(frac))
                except BaseException as e:  # abort the load, re-raise below
                    raised.append(e)
                    return False
            cb = _ffi.LoadProgressFn(on_progress)
            keep.append(cb)
            p.progress = cb
        try:
            return self._add(id, lambda raw, bid, out, err: _ffi.sipp_client_add_local(
                raw, bid, ctypes.byref(p), out, err))
        except SippError:
            if raised:
                raise raised[0]
            raise

    def add_provider(self, id: str, *, model: str, kind: str = "openai_compatible",
                     base_url: Optional[str] = None, api_key: Optional[str] = None,
                     api_key_env: Optional[str] = None,
                     headers: Union[Mapping[str, str], Sequence[str], None] = None,
                     **params: Any) -> Endpoint:
        """Registers a provider endpoint (kind "openai", "openai_compatible" or "anthropic").
        Nothing is sent until the first request. `headers`: static headers sent with every
        request, {name: value} or "Name: value" lines (treated as secrets). `params`:
        connect_timeout_ms, request_timeout_ms, idle_timeout_ms, version (Anthropic's
        anthropic-version), allow_private_network (private and link-local addresses, refused by
        default) and any later field of sipp_provider_params."""
        if kind not in _ffi.PROVIDER_KINDS:
            raise _invalid(f"provider kind must be one of {', '.join(_ffi.PROVIDER_KINDS)}")
        keep: list = []
        p = _ffi.new(_ffi.ProviderParams)
        p.struct_size = ctypes.sizeof(_ffi.ProviderParams)
        p.kind = _ffi.PROVIDER_KINDS[kind]
        _fill(p, {"model": model, "base_url": base_url, "api_key": api_key,
                  "api_key_env": api_key_env, **params}, keep, "provider params")
        _headers(p, headers, keep, "provider params")
        return self._add(id, lambda raw, bid, out, err: _ffi.sipp_client_add_provider(
            raw, bid, ctypes.byref(p), out, err))

    def add_gateway(self, id: str, *, base_url: str, target: str, auth: str = "bearer",
                    token: Optional[str] = None, token_env: Optional[str] = None,
                    auth_header: Optional[str] = None,
                    headers: Union[Mapping[str, str], Sequence[str], None] = None,
                    **params: Any) -> Endpoint:
        """Registers a Sipp gateway endpoint: `base_url` is the gateway's public listener,
        `target` its target name. `auth`: "bearer" (default; `Authorization: Bearer <token>`),
        "header" (`<auth_header>: <token>`) or "none". The token is `token`, else the environment
        variable `token_env` (default SIPP_GATEWAY_TOKEN); it never appears in errors. `headers`
        as for add_provider. `params`: connect_timeout_ms, request_timeout_ms, idle_timeout_ms,
        allow_private_network. Nothing is sent until the first request."""
        if auth not in _ffi.GATEWAY_AUTH:
            raise _invalid(f"gateway auth must be one of {', '.join(_ffi.GATEWAY_AUTH)}")
        keep: list = []
        p = _ffi.new(_ffi.GatewayParams)
        p.struct_size = ctypes.sizeof(_ffi.GatewayParams)
        p.auth = _ffi.GATEWAY_AUTH[auth]
        _fill(p, {"base_url": base_url, "target": target, "token": token, "token_env": token_env,
                  "auth_header": auth_header, **params}, keep, "gateway params")
        _headers(p, headers, keep, "gateway params")
        return self._add(id, lambda raw, bid, out, err: _ffi.sipp_client_add_gateway(
            raw, bid, ctypes.byref(p), out, err))

    def endpoint(self, id: str) -> Endpoint:
        """The endpoint registered under `id`; KeyError if none."""
        return self._endpoints[id]

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        return dict(self._endpoints)

    def remove(self, id: str) -> None:
        """Removes an endpoint: cancels its runs and unloads its model."""
        with self._guard.write():
            err = _ffi.new_error()
            _check(_ffi.sipp_client_remove(self._client(), _encode(id, "id"), ctypes.byref(err)), err)
            ep = self._endpoints.pop(id, None)
            if ep is not None:
                ep._raw = None

    def _resolve(self, endpoint: Union[str, Endpoint]) -> Endpoint:
        if isinstance(endpoint, Endpoint):
            return endpoint
        ep = self._endpoints.get(endpoint)
        if ep is None:
            raise SippError("not_found", f"no endpoint '{endpoint}'", status=2)
        return ep

    def query(self, endpoint: Union[str, Endpoint], prompt: str,
              **options: "Unpack[TextOptions]") -> Run:
        return self._resolve(endpoint).query(prompt, **options)

    def chat(self, endpoint: Union[str, Endpoint], messages: Union[str, Iterable[MessageLike]],
             **options: "Unpack[TextOptions]") -> Run:
        return self._resolve(endpoint).chat(messages, **options)

    def embed(self, endpoint: Union[str, Endpoint], text: str, *, normalize: bool = True,
              **options: Any) -> Run:
        return self._resolve(endpoint).embed(text, normalize=normalize, **options)

    def close(self) -> None:
        """Cancels every run, stops the engines and frees the client. Idempotent."""
        with self._guard.write():
            raw, self._raw = self._raw, None
            for ep in self._endpoints.values():
                ep._raw = None
            self._endpoints.clear()
            if raw is not None:
                _ffi.sipp_client_free(raw)



# ---- routing policy (docs/routing.md) ------------------------------------------------------


@dataclass(frozen=True)
class RouteChoice:
    """Policy.choose's answer: the endpoint chosen (None when every candidate was dropped),
    its index among the candidates, the indexes dropped by filters and the reasons, one line
    per rule that acted with the figures it used."""
    endpoint: Optional[Endpoint]
    index: int
    dropped: tuple
    reasons: str


RuleLike = Union[str, tuple, Mapping[str, Any]]


class Policy(_Closing):
    """An ordered, explainable set of routing rules (sipp_policy). Each rule is a name, a
    (name, value) pair, ("local_only_tag", "private"), or {"kind", "value", "tag"}; names:
    local_only_tag, skip_unavailable, fit_context, max_ttft_ms, max_cost (filters), prefer_warm,
    prefer_local_under_ttft, prefer_cheapest (preferences), escalate_low_confidence (after a
    run). Immutable; choose() is pure (no request is sent) and may run on any thread."""

    def __init__(self, rules: Sequence[RuleLike]) -> None:
        self._raw: Optional[int] = None
        arr = (_ffi.Rule * max(1, len(rules)))()
        keep: list = []
        for i, r in enumerate(rules):
            if isinstance(r, str):
                r = {"kind": r}
            elif isinstance(r, tuple):
                if len(r) != 2:
                    raise _invalid(f"rule {i}: a (name, value) pair")
                r = {"kind": r[0], ("tag" if r[0] == "local_only_tag" else "value"): r[1]}
            kind = r.get("kind")
            if kind not in _ffi.RULE_KINDS:
                raise _invalid(f"rule {i}: unknown kind {kind!r} (one of "
                               f"{', '.join(_ffi.RULE_KINDS)})")
            arr[i].kind = _ffi.RULE_KINDS[kind]
            arr[i].value = float(r.get("value", 0) or 0)
            if r.get("tag") is not None:
                b = _encode(r["tag"], "tag")
                keep.append(b)
                arr[i].tag = b
        out = ctypes.c_void_p()
        err = _ffi.new_error()
        _check(_ffi.sipp_policy_new(arr, len(rules), ctypes.byref(out), ctypes.byref(err)), err)
        self._raw = out.value

    def choose(self, candidates: Union[Sequence[tuple], Mapping[str, tuple]], *,
               tags: Sequence[str] = (), max_tokens: int = 256) -> RouteChoice:
        """Chooses among candidates, each (endpoint, estimate) or (name, endpoint, estimate), or
        a {name: (endpoint, estimate)} mapping, for a request with `tags` that may generate up
        to `max_tokens`. Never raises when every candidate is dropped: the choice's endpoint is
        None and its reasons say why each one went."""
        if self._raw is None:
            raise SippError("closed", "the policy is closed", status=12)
        items = list(candidates.items()) if isinstance(candidates, Mapping) else list(candidates)
        rows = []
        for c in items:
            if isinstance(candidates, Mapping):
                name, (ep, est) = c
            elif len(c) == 3:
                name, ep, est = c
            else:
                ep, est = c
                name = ep.id if isinstance(ep, Endpoint) else None
            if not isinstance(ep, Endpoint) or not isinstance(est, Estimate):
                raise TypeError("a candidate is an (Endpoint, Estimate) pair")
            rows.append((name, ep, est))
        if not rows or len(rows) > 64:
            raise _invalid("1 to 64 candidates are required")
        keep: list = []
        arr = (_ffi.RouteCandidate * len(rows))()
        for i, (name, ep, est) in enumerate(rows):
            arr[i].endpoint = ep._ptr()
            raw = _estimate_to_c(est)
            keep.append(raw)
            arr[i].estimate = ctypes.pointer(raw)
            if name is not None:
                b = _encode(str(name), "name")
                keep.append(b)
                arr[i].name = b
        tarr, nt = _strings(list(tags), keep, "tags") if tags else (None, 0)
        out = _ffi.RouteChoice()
        err = _ffi.new_error()
        st = _ffi.sipp_policy_choose(self._raw, arr, len(rows), tarr, nt, int(max_tokens),
                                     ctypes.byref(out), ctypes.byref(err))
        try:
            if st not in (_ffi.OK, _ffi.NO_ROUTE):
                _check(st, err)
            reasons = ctypes.string_at(out.reasons).decode("utf-8", "replace") if out.reasons else ""
            dropped = tuple(i for i in range(len(rows)) if out.dropped >> i & 1)
            idx = out.index
            return RouteChoice(rows[idx][1] if idx >= 0 else None, idx, dropped, reasons)
        finally:
            _ffi.sipp_route_choice_free(ctypes.byref(out))

    def check_draft(self, draft: Union["Run", Response]) -> "AuditDecision":
        """Decides whether a finished draft stands (sipp_policy_check_draft), by the first
        escalate_low_confidence rule (none: the draft always stands): "draft_failed" for a failed
        run (retry_safe when nothing of it was produced), "escalated" for a draft without
        log-probabilities or below the threshold, else "draft". `draft`: a Run (waited for here;
        a failed one is read as it is, without raising) or a Response. Pure: nothing is sent."""
        if self._raw is None:
            raise SippError("closed", "the policy is closed", status=12)
        out = _ffi.AuditDecision()
        err = _ffi.new_error()
        if isinstance(draft, Run):
            with draft._lock:
                if draft._raw is None:
                    raise SippError("closed", "the run was closed", status=12)
                resp_p = ctypes.POINTER(_ffi.Response)()
                _check(_ffi.sipp_run_wait(draft._raw, ctypes.byref(resp_p), ctypes.byref(err)),
                       err)
                st = _ffi.sipp_policy_check_draft(self._raw, resp_p, ctypes.byref(out),
                                                  ctypes.byref(err))
        elif isinstance(draft, Response):
            raw = _response_to_c(draft)
            st = _ffi.sipp_policy_check_draft(self._raw, ctypes.byref(raw), ctypes.byref(out),
                                              ctypes.byref(err))
        else:
            raise TypeError("check_draft: a Run or a Response is required")
        return _audit_decision(out, st, err)

    def draft_audit(self, draft: Endpoint, target: Endpoint,
                    messages: Union[str, Iterable[MessageLike]], *, send_draft: bool = True,
                    **options: "Unpack[TextOptions]") -> "tuple[Run, AuditDecision]":
        """Draft-then-audit (sipp_route_draft_audit): runs the chat on `draft` (a local model,
        usually) with log-probabilities and without streaming it to the caller, waits for it and
        checks it (check_draft), then returns (run, decision):
        - "draft": run is the finished draft;
        - "escalated": run is the chat on `target`, started (read it as any run); with
          `send_draft` a last user message carries the draft and asks the target to check and
          correct it; a remote target gets no context_key/cache_scope;
        - "draft_failed": run is the failed draft (its result() raises); it is never sent
          elsewhere: decision.retry_safe says whether the app may.
        A draft refused at submission (busy, a bad option) raises SippError: nothing was sent
        anywhere, so the app may send it elsewhere itself. No stream the caller saw is switched.
        Blocks while the draft runs (release the GIL: other threads go on)."""
        if self._raw is None:
            raise SippError("closed", "the policy is closed", status=12)
        if not isinstance(draft, Endpoint) or not isinstance(target, Endpoint):
            raise TypeError("draft_audit: the draft and the target are Endpoints")
        keep: list = []
        arr, n = _messages(messages, keep)
        p = _text_params(options, keep)
        out = ctypes.c_void_p()
        dec = _ffi.AuditDecision()
        err = _ffi.new_error()
        # one hold per client: a second read of the same guard could wait on a queued writer
        with contextlib.ExitStack() as held:
            for c in {id(draft.client): draft.client, id(target.client): target.client}.values():
                held.enter_context(c._guard.read())
            st = _ffi.sipp_route_draft_audit(self._raw, draft._ptr(), target._ptr(), arr, n,
                                             ctypes.byref(p), bool(send_draft), ctypes.byref(out),
                                             ctypes.byref(dec), ctypes.byref(err))
        decision = _audit_decision(dec, st, err)
        owner = target if decision.outcome == "escalated" else draft
        return Run(out.value, owner), decision

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            _ffi.sipp_policy_free(raw)


@dataclass(frozen=True)
class AuditDecision:
    """What a draft check or a draft-then-audit decided (sipp_audit_decision): outcome "draft",
    "escalated" or "draft_failed"; the draft's confidence (geometric mean token probability,
    NaN when unknown), its least likely token's probability and the tokens counted; retry_safe
    (draft_failed: nothing of it was produced, the app may send it elsewhere); the reasons, one
    line per rule or check that acted with its figures."""
    outcome: str
    confidence: float
    min_prob: float
    n_tokens: int
    retry_safe: bool
    reasons: str


def _audit_decision(out: Any, st: int, err: Any) -> AuditDecision:
    """The decision in `out` (freed here); raises for a status other than OK."""
    try:
        _check(st, err)
        reasons = ctypes.string_at(out.reasons).decode("utf-8", "replace") if out.reasons else ""
        return AuditDecision(_ffi.AUDIT_OUTCOMES.get(out.outcome, "none"), out.confidence,
                             out.min_prob, out.n_tokens, bool(out.retry_safe), reasons)
    finally:
        _ffi.sipp_audit_decision_free(ctypes.byref(out))


def _response_to_c(r: Response) -> Any:
    """A C sipp_response of a (successful) Response: what the draft check reads of it."""
    raw = _ffi.Response()
    raw.struct_size = ctypes.sizeof(_ffi.Response)
    raw.status = _ffi.OK
    text = r.text.encode()
    raw.text_len = len(text)
    lps = list(r.logprobs or [])
    arr = (_ffi.TokenLogprob * max(1, len(lps)))()
    for i, lp in enumerate(lps):
        arr[i].logprob = lp.logprob
    if lps:
        raw.logprobs, raw.n_logprobs = ctypes.cast(arr, ctypes.POINTER(_ffi.TokenLogprob)), len(lps)
    usage = _ffi.Usage(ctypes.sizeof(_ffi.Usage), r.usage.input_tokens, r.usage.output_tokens,
                       r.usage.total_tokens)
    raw.usage = ctypes.pointer(usage)
    raw._keep = (arr, usage)  # type: ignore[attr-defined]
    return raw


def route_draft_audit(policy: Policy, draft: Endpoint, target: Endpoint,
                      messages: Union[str, Iterable[MessageLike]], *, send_draft: bool = True,
                      **options: "Unpack[TextOptions]") -> "tuple[Run, AuditDecision]":
    """sipp_route_draft_audit: the same as policy.draft_audit(draft, target, messages, ...)."""
    return policy.draft_audit(draft, target, messages, send_draft=send_draft, **options)
