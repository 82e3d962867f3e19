"""The Python binding against the real library and the tiny models."""
import asyncio
import ctypes
import gc
import json
import math
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from conftest import (CHAT_MODEL, GW_TOKEN, GW_TOKEN_STORY_ONLY, ROOT, STORY_MODEL,
                      start_llama_server)
import sipp
from sipp import _ffi

GREEDY = {"temperature": 0.0}


# ---- ABI ---------------------------------------------------------------------------------------

MIRRORS = {
    "sipp_error": _ffi.Error, "sipp_client_params": _ffi.ClientParams,
    "sipp_local_params": _ffi.LocalParams, "sipp_provider_params": _ffi.ProviderParams,
    "sipp_gateway_params": _ffi.GatewayParams,
    "sipp_endpoint_info": _ffi.EndpointInfo, "sipp_engine_stats": _ffi.EngineStats,
    "sipp_text_params": _ffi.TextParams, "sipp_message": _ffi.Message,
    "sipp_embed_params": _ffi.EmbedParams, "sipp_usage": _ffi.Usage, "sipp_stats": _ffi.Stats,
    "sipp_response": _ffi.Response, "sipp_token_batch": _ffi.TokenBatch,
    "sipp_top_logprob": _ffi.TopLogprob, "sipp_token_logprob": _ffi.TokenLogprob,
    "sipp_media": _ffi.Media,
    "sipp_figure": _ffi.Figure, "sipp_estimate": _ffi.Estimate, "sipp_rule": _ffi.Rule,
    "sipp_route_candidate": _ffi.RouteCandidate, "sipp_route_choice": _ffi.RouteChoice,
    "sipp_audit_decision": _ffi.AuditDecision,
    "sipp_tool": _ffi.Tool, "sipp_tool_call": _ffi.ToolCall,
    "sipp_chat_message": _ffi.ChatMessage, "sipp_delta": _ffi.Delta,
}


def c_layout():
    """The C layout printed by sipp_abi_layout (tests/bindings/abi_layout.c), built by CMake."""
    path = os.environ.get("SIPP_ABI_LAYOUT", str(ROOT / "build" / "tests" / "sipp_abi_layout"))
    return json.loads(subprocess.run([path], capture_output=True, check=True, text=True).stdout)


def layout_mismatches(layout, mirrors):
    """Every difference between the C layout and the ctypes mirrors, as readable lines."""
    bad = [f"{n}: no mirror" for n in set(layout) - set(mirrors)]
    bad += [f"{n}: not in sipp.h" for n in set(mirrors) - set(layout)]
    for name in set(layout) & set(mirrors):
        c, mirror = layout[name], mirrors[name]
        fields = [f[0] for f in mirror._fields_]
        if fields != list(c["fields"]):
            bad.append(f"{name}: fields {fields} != {list(c['fields'])}")
        if ctypes.sizeof(mirror) != c["size"]:
            bad.append(f"{name}: size {ctypes.sizeof(mirror)} != {c['size']}")
        for f, off in c["fields"].items():
            if hasattr(mirror, f) and getattr(mirror, f).offset != off:
                bad.append(f"{name}.{f}: offset {getattr(mirror, f).offset} != {off}")
    return bad


def test_struct_mirrors_match_the_c_layout():
    assert layout_mismatches(c_layout(), MIRRORS) == []


def test_the_layout_check_catches_a_stale_mirror():
    """A mirror that lacks the fields appended last (the old sipp_text_params) is reported."""
    class OldTextParams(ctypes.Structure):
        _fields_ = _ffi.TextParams._fields_[:-2]
    reported = layout_mismatches(c_layout(), dict(MIRRORS, sipp_text_params=OldTextParams))
    assert any(r.startswith("sipp_text_params: fields") for r in reported)
    assert any(r.startswith("sipp_text_params: size") for r in reported)
    reported = layout_mismatches(c_layout(), {k: v for k, v in MIRRORS.items()
                                              if k != "sipp_gateway_params"})
    assert reported == ["sipp_gateway_params: no mirror"]


def test_defaults_come_from_the_library():
    p = _ffi.new(_ffi.TextParams)
    assert p.struct_size == ctypes.sizeof(_ffi.TextParams)
    assert p.max_tokens == 256 and p.top_k == 40 and math.isclose(p.temperature, 0.8, rel_tol=1e-6)
    assert sipp.version().count(".") == 2
    # a struct larger than the library's (a binding newer than libsipp) is refused, not written
    big = (ctypes.c_char * (ctypes.sizeof(_ffi.TextParams) + 8))()
    init = _ffi._INITS[_ffi.TextParams]
    assert init(ctypes.cast(big, ctypes.POINTER(_ffi.TextParams)), ctypes.sizeof(big)) == _ffi.INVALID_ARGUMENT
    assert bytes(big) == bytes(len(big))


# ---- requests ------------------------------------------------------------------------------------


def test_query_on_the_story_model(client):
    r = client.query("story", "Once upon a time", max_tokens=24, seed=7, **GREEDY).result()
    assert r.text.strip() and r.finish_reason in ("stop", "length")
    assert r.usage.output_tokens >= 1 and r.usage.input_tokens >= 1
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.stats.total_ms > 0 and r.stats.cache_source == "none"
    again = client.query("story", "Once upon a time", max_tokens=24, **GREEDY).result()
    assert again.text == r.text  # greedy is deterministic


def test_chat_streams_batches_that_add_up_to_the_text(client):
    with client.chat("chat", [{"role": "user", "content": "Do you like to play outside?"}],
                     max_tokens=32, **GREEDY) as run:
        batches = list(run)
        resp = run.result()
    assert len(batches) >= 2
    assert all(isinstance(b, str) and b.n_tokens >= 1 for b in batches)
    assert "".join(batches) == resp.text and resp.text.strip()
    # the end-of-generation token is counted in usage but carries no text
    assert resp.usage.output_tokens - 1 <= sum(b.n_tokens for b in batches) <= resp.usage.output_tokens


def test_logprobs_come_with_the_response_and_each_batch(client):
    """Issue 18: logprobs=True, top_logprobs=N give TokenLogprob entries that spell the text."""
    with client.query("story", "Once upon a time", max_tokens=12, logprobs=True, top_logprobs=3,
                      **GREEDY) as run:
        batches = list(run)
        resp = run.result()
    assert len(resp.logprobs) == 12
    assert b"".join(e.bytes for e in resp.logprobs).decode("utf-8", "replace") == resp.text
    for e in resp.logprobs:
        assert e.logprob <= 0 and len(e.top) == 3 and e.top[0].bytes == e.bytes
        assert [t.logprob for t in e.top] == sorted((t.logprob for t in e.top), reverse=True)
    assert [e for b in batches for e in b.logprobs] == resp.logprobs
    assert client.query("story", "Once", max_tokens=2).result().logprobs is None
    with pytest.raises(sipp.SippError):
        client.query("story", "Once", max_tokens=2, logprobs=True, top_logprobs=21)


def test_chat_accepts_a_string_and_pairs(client):
    a = client.chat("chat", "Hello!", max_tokens=8, **GREEDY).result().text
    b = client.chat("chat", [("user", "Hello!")], max_tokens=8, **GREEDY).result().text
    assert a == b and a


def test_stop_strings_end_the_text(client):
    full = client.query("story", "Once upon a time", max_tokens=40, **GREEDY).result().text
    word = full.split()[3]
    r = client.query("story", "Once upon a time", max_tokens=40, stop=[word], **GREEDY).result()
    assert word not in r.text and r.finish_reason == "stop"


def test_embed_returns_a_normalised_vector(client):
    r = client.embed("chat", "hello world").result()
    info = client.endpoint("chat").info()
    assert len(r.embedding) == info.n_embd == 128 and r.normalized
    assert math.isclose(sum(x * x for x in r.embedding), 1.0, rel_tol=1e-4)
    raw = client.embed("chat", "hello world", normalize=False).result()
    assert not raw.normalized and not math.isclose(sum(x * x for x in raw.embedding), 1.0, rel_tol=1e-3)


def test_endpoint_info_and_stats(client):
    ep = client.endpoint("chat")
    info = ep.info()
    assert info.can_chat and info.architecture == "gpt2" and info.n_ctx == 256
    assert not client.endpoint("story").info().can_chat
    before = ep.stats().completed
    ep.query("Hi", max_tokens=2).result()
    assert ep.stats().completed == before + 1


# ---- cancel ----------------------------------------------------------------------------------------


def test_cancel_mid_stream(client):
    run = client.query("long", "Once upon a time", max_tokens=4000, ignore_eos=True)
    got = []
    for b in run:
        got.append(b)
        if len(got) == 3:
            run.cancel()
    r = run.result()
    assert r.finish_reason == "cancelled"
    assert r.text.startswith("".join(got[:3])) and r.usage.output_tokens < 4000


def test_cancel_from_another_thread_ends_result(client):
    run = client.query("long", "Once upon a time", max_tokens=100000, ignore_eos=True)
    threading.Timer(0.3, run.cancel).start()
    t0 = time.monotonic()
    assert run.result(timeout=60).finish_reason == "cancelled"
    assert time.monotonic() - t0 < 30


def test_close_cancels_a_running_run(client):
    run = client.query("long", "Once upon a time", max_tokens=100000, ignore_eos=True)
    next(iter(run))
    run.close()
    run.close()  # idempotent
    with pytest.raises(sipp.SippError) as e:
        run.result()
    assert e.value.kind == "closed"


def test_result_timeout_leaves_the_run_going(client):
    run = client.query("long", "Once upon a time", max_tokens=100000, ignore_eos=True)
    with pytest.raises(TimeoutError):
        run.result(timeout=0.05)
    assert not run.done
    run.cancel()
    assert run.result().finish_reason == "cancelled"


# ---- errors --------------------------------------------------------------------------------------


def test_sha256_pin_loads_a_match_and_refuses_another_file():
    import hashlib
    good = hashlib.sha256(STORY_MODEL.read_bytes()).hexdigest()
    with sipp.Client() as c:
        c.add_local("pinned", STORY_MODEL, n_ctx=128, n_threads=1, sha256=good)
        with pytest.raises(sipp.SippError) as e:
            c.add_local("other", STORY_MODEL, n_ctx=128, n_threads=1, sha256="0" * 64)
        assert e.value.kind == "model_invalid"
        assert f"sha256 mismatch: expected {'0' * 64}, file has {good}" in e.value.message


def test_submission_errors_are_sipp_errors_with_kind(client):
    with pytest.raises(sipp.InvalidArgumentError) as e:
        client.query("story", "")
    assert e.value.kind == "invalid_argument" and e.value.status == 1 and "empty" in e.value.message
    assert isinstance(e.value, ValueError)
    with pytest.raises(sipp.SippError) as e:
        client.chat("story", "Hello")  # no chat template
    assert e.value.kind == "unsupported" and e.value.status == 3
    with pytest.raises(sipp.SippError) as e:
        client.query("story", "x", temperature=float("nan"))
    assert e.value.kind == "invalid_argument" and "temperature" in e.value.message
    with pytest.raises(sipp.SippError) as e:
        client.chat("chat", [{"role": "robot", "content": "hi"}])
    assert e.value.kind == "invalid_argument" and "robot" in e.value.message


def test_binding_side_checks(client):
    with pytest.raises(sipp.InvalidArgumentError):
        client.query("story", "x", max_tokens=-1)  # would wrap around as uint32
    with pytest.raises(TypeError):
        client.query("story", "x", max_token=3)  # misspelt option
    with pytest.raises(TypeError):
        client.query("story", "x", max_tokens="3")
    with pytest.raises(sipp.InvalidArgumentError):
        client.query("story", "a\0b")
    with pytest.raises(sipp.SippError) as e:
        client.query("nope", "x")
    assert e.value.kind == "not_found"


def test_missing_model_is_not_found():
    with sipp.Client() as c:
        with pytest.raises(sipp.SippError) as e:
            c.add_local("x", "/nonexistent/model.gguf")
        assert e.value.kind == "not_found" and "model.gguf" in str(e.value)


def test_a_failed_run_raises_from_iteration_and_result(client):
    run = client.query("long", "Once upon a time", max_tokens=100000, ignore_eos=True,
                       timeout_ms=100)
    with pytest.raises(sipp.SippError) as e:
        for _ in run:
            pass
    assert e.value.kind == "deadline_exceeded" and e.value.status == 8
    with pytest.raises(sipp.SippError) as e2:
        run.result()
    assert e2.value is e.value


def test_progress_callback_can_abort_a_load():
    seen = []
    with sipp.Client() as c:
        ep = c.add_local("a", CHAT_MODEL, progress=lambda f: seen.append(f) or True)
        assert seen and seen[-1] == pytest.approx(1.0) and ep.info().can_chat
        with pytest.raises(ZeroDivisionError):
            c.add_local("b", CHAT_MODEL, progress=lambda f: 1 / 0)
        assert "b" not in c.endpoints


# ---- lifetimes -----------------------------------------------------------------------------------


def test_closed_client_and_replaced_endpoint_raise_closed():
    c = sipp.Client()
    old = c.add_local("m", STORY_MODEL)
    new = c.add_local("m", STORY_MODEL)  # replaces: the old handle is dead
    with pytest.raises(sipp.SippError) as e:
        old.query("x")
    assert e.value.kind == "closed"
    run = new.query("Once upon a time", max_tokens=100000, ignore_eos=True)
    c.close()  # cancels the run; the run stays readable
    assert run.result().finish_reason == "cancelled"
    with pytest.raises(sipp.SippError) as e:
        new.query("x")
    assert e.value.kind == "closed"
    c.close()


def test_remove(client):
    ep = client.add_local("tmp", STORY_MODEL)
    client.remove("tmp")
    with pytest.raises(sipp.SippError):
        ep.query("x")
    with pytest.raises(sipp.SippError) as e:
        client.remove("tmp")
    assert e.value.kind == "not_found"


def test_a_run_keeps_its_client_alive():
    run = sipp.Client().add_local("s", STORY_MODEL).query("Once upon a time", max_tokens=16)
    gc.collect()
    assert run.result().text


def test_concurrent_runs_from_threads(client):
    out = {}

    def work(i):
        out[i] = client.query("story", "Once upon a time", max_tokens=16, **GREEDY).result().text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out.values())) == 1 and len(out) == 6


# ---- asyncio -------------------------------------------------------------------------------------


def test_async_for_and_await_do_not_block_the_loop(client):
    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        t = asyncio.create_task(ticker())
        run = client.query("long", "Once upon a time", max_tokens=400, ignore_eos=True)
        parts = [b async for b in run]
        resp = await run
        stop.set()
        await t
        return ticks, parts, resp

    ticks, parts, resp = asyncio.run(main())
    assert "".join(parts) == resp.text and resp.usage.output_tokens == 400
    assert ticks > 3  # the loop kept running while tokens streamed


def test_cancelling_the_task_cancels_the_run(client):
    async def main():
        run = client.query("long", "Once upon a time", max_tokens=100000, ignore_eos=True)

        async def consume():
            async for _ in run:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await run

    assert asyncio.run(main()).finish_reason == "cancelled"


def test_async_errors(client):
    async def main():
        run = client.query("long", "Once upon a time", max_tokens=100000, ignore_eos=True,
                           timeout_ms=100)
        async for _ in run:
            pass

    with pytest.raises(sipp.SippError) as e:
        asyncio.run(main())
    assert e.value.kind == "deadline_exceeded"


# ---- routing: estimates and the policy ----------------------------------------------------------


def test_estimate_then_policy_keeps_a_warm_request_local(client):
    story = client.endpoint("story")
    opts = dict(max_tokens=4, context_key="py-route", **GREEDY)
    first = "Once upon a time there was a little girl named Lily."
    cold = story.estimate(first, **opts)
    assert cold.local and cold.loaded and cold.healthy
    assert cold.prompt_tokens > 5 and cold.cached_tokens == 0 and cold.cache_source == "none"
    assert cold.ttft_ms.source in ("unknown", "predicted")
    answer = story.query(first, **opts).result()
    assert answer.usage.input_tokens == cold.prompt_tokens  # the estimate's tokens were used
    warm = story.estimate(first + answer.text + " She", **opts)
    assert warm.cache_source == "live" and warm.cached_tokens >= cold.prompt_tokens
    assert warm.ttft_ms.source == "predicted" and warm.ttft_ms.samples >= 1

    with sipp.Client() as c:  # a remote: nothing is sent to estimate it
        cloud = c.add_provider("cloud", model="m", base_url="http://127.0.0.1:9/v1",
                               allow_private_network=True)
        cloud.set_prices(3, 15)
        remote = cloud.estimate(messages="hi", max_tokens=4)
        assert not remote.local and remote.prompt_tokens == 0
        assert remote.price_input_per_mtok == sipp.Figure(3.0, 0, "configured")
        assert remote.ttft_ms == sipp.Figure(0.0, 0, "unknown") and not remote.ttft_ms.known

        with sipp.Policy([("local_only_tag", "private"), "fit_context", ("prefer_warm", 0.5),
                          ("max_cost", 1.0)]) as pol:
            ch = pol.choose([("cloud", cloud, remote), ("local", story, warm)], max_tokens=4)
            assert ch.endpoint is story and ch.index == 1 and ch.dropped == ()
            assert "prefer_warm: chose local" in ch.reasons
            # cold: the app's order decides; private: the cloud is dropped, nothing is left
            ch = pol.choose({"cloud": (cloud, remote), "local": (story, cold)}, max_tokens=4)
            assert ch.endpoint is cloud and "default: chose cloud" in ch.reasons
            ch = pol.choose([(cloud, remote)], tags=["private"])
            assert ch.endpoint is None and ch.index == -1 and ch.dropped == (0,)
            assert "tagged 'private'" in ch.reasons
            with pytest.raises(TypeError):
                pol.choose([(cloud, "not an estimate")])
            # an estimate the app writes itself is read the same way
            unknown = sipp.Figure(0.0, 0, "unknown")
            built = sipp.Estimate(True, True, True, 100, 90, "snapshot", False, 10, 0, 0, 0, 1,
                                  *([unknown] * 7))
            ch = pol.choose([("cloud", cloud, remote), ("local", story, built)])
            assert "90 of 100 prompt tokens cached (snapshot)" in ch.reasons
    with pytest.raises(sipp.InvalidArgumentError, match="unknown kind"):
        sipp.Policy(["prefer_nothing"])
    with pytest.raises(sipp.InvalidArgumentError, match="fraction"):
        sipp.Policy([("prefer_warm", 2.0)])
    with pytest.raises(sipp.InvalidArgumentError, match="one of them"):
        story.estimate()


# ---- routing: the draft check and draft-then-audit -----------------------------------------------


class AuditPeer:
    """An OpenAI-compatible peer on loopback (the C test's): mode "answer" streams "audited
    answer", "one_token" streams "Hel" and drops the connection, "busy" answers 503. It keeps
    the request bodies it got."""

    def __init__(self, mode):
        import http.server
        peer = self
        self.mode, self.bodies = mode, []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                peer.bodies.append(json.loads(self.rfile.read(n)))
                if peer.mode == "busy":
                    body = b'{"error":{"message":"overloaded","type":"x"}}'
                    self.send_response(503)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                if peer.mode == "one_token":
                    self.wfile.write(b'data: {"choices":[{"index":0,"delta":{"content":"Hel"},'
                                     b'"logprobs":{"content":[{"token":"Hel","logprob":-0.1,'
                                     b'"top_logprobs":[]}]},"finish_reason":null}]}\n\n')
                else:
                    self.wfile.write(b'data: {"choices":[{"index":0,"delta":{"content":'
                                     b'"audited answer"},"finish_reason":"stop"}]}\n\n'
                                     b'data: [DONE]\n\n')
                self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def add_to(self, c, id):
        return c.add_provider(id, model="m", base_url=self.url, allow_private_network=True)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _content(body):
    return "\n".join(m["content"] for m in body["messages"])


def test_draft_audit_keeps_a_confident_draft_and_escalates_an_unsure_one(client):
    chat = client.endpoint("chat")
    question = "What did the cat see in the garden?"
    draft = chat.chat(question, max_tokens=12, logprobs=True, **GREEDY).result()
    n = len(draft.logprobs)
    conf = math.exp(sum(t.logprob for t in draft.logprobs) / n)
    assert n > 0 and 0 < conf < 1
    peer = AuditPeer("answer")
    try:
        with sipp.Client() as c, sipp.Policy([("escalate_low_confidence", conf * 0.9)]) as lax, \
                sipp.Policy([("escalate_low_confidence", (conf + 1) / 2)]) as strict:
            cloud = peer.add_to(c, "cloud")
            # the draft check on a Response and on a Run
            d = lax.check_draft(draft)
            assert d.outcome == "draft" and d.confidence == pytest.approx(conf, rel=1e-5)
            assert d.n_tokens == n and "the draft stands" in d.reasons
            assert strict.check_draft(draft).outcome == "escalated"
            with chat.chat(question, max_tokens=12, **GREEDY) as bare:  # no log-probabilities
                d = lax.check_draft(bare)
                assert d.outcome == "escalated" and math.isnan(d.confidence)
                assert "no token log-probabilities" in d.reasons
            with sipp.Policy(["fit_context"]) as none:
                assert none.check_draft(draft).outcome == "draft"

            # confident: the draft stands, the cloud is not asked
            opts = dict(max_tokens=12, context_key="file:garden.txt", **GREEDY)
            run, d = lax.draft_audit(chat, cloud, question, **opts)
            with run:
                assert d.outcome == "draft" and d.confidence == pytest.approx(conf, rel=1e-5)
                assert run.result().text == draft.text
            assert peer.bodies == []
            # unsure: the question and the draft go to the cloud; only its answer is read
            run, d = sipp.route_draft_audit(strict, chat, cloud, question, **opts)
            with run:
                assert d.outcome == "escalated"
                assert "escalated to the target with the draft" in d.reasons
                assert "".join(run) == "audited answer" and run.result().text == "audited answer"
            assert len(peer.bodies) == 1
            sent = _content(peer.bodies[0])
            assert question in sent and "Draft:\n" + draft.text in sent
            assert "garden.txt" not in json.dumps(peer.bodies[0])  # no local cache hint
            # without the draft: the question only
            run, d = strict.draft_audit(chat, cloud, [("user", question)], send_draft=False,
                                        **opts)
            with run:
                assert run.result().text == "audited answer"
            assert "(question only)" in d.reasons and "Draft:" not in _content(peer.bodies[1])
    finally:
        peer.close()


def test_draft_audit_never_switches_a_stream():
    """A draft that fails after its first token comes back failed and is not sent to the
    target; one refused before any token is not sent either (retry_safe: the app may)."""
    broken, busy, target = AuditPeer("one_token"), AuditPeer("busy"), AuditPeer("answer")
    try:
        with sipp.Client() as c, sipp.Policy([("escalate_low_confidence", 0.99)]) as pol:
            b, rf, t = broken.add_to(c, "broken"), busy.add_to(c, "busy"), target.add_to(c, "t")
            run, d = pol.draft_audit(b, t, "hi", max_tokens=8)
            with run:
                assert d.outcome == "draft_failed" and not d.retry_safe
                with pytest.raises(sipp.SippError):
                    run.result()
                assert pol.check_draft(run).outcome == "draft_failed"  # a failed Run, read as is
            run, d = pol.draft_audit(rf, t, "hi", max_tokens=8)
            with run:
                assert d.outcome == "draft_failed" and d.retry_safe
                assert "before any output token" in d.reasons
            assert target.bodies == []  # Sipp moved nothing
            # refused at submission: an error, nothing sent anywhere
            with pytest.raises(sipp.InvalidArgumentError):
                pol.draft_audit(b, t, "hi", max_tokens=0)
            with pytest.raises(TypeError):
                pol.check_draft("not a response")
            assert target.bodies == [] and len(broken.bodies) == 1
    finally:
        for p in (broken, busy, target):
            p.close()


# ---- provider endpoint against a real peer -------------------------------------------------------


def test_provider_endpoint(llama_server, client):
    with sipp.Client() as c:
        os.environ["SIPP_TEST_PEER_KEY"] = "peer-secret-4242"
        remote = c.add_provider("remote", model="tiny", base_url=llama_server,
                                api_key_env="SIPP_TEST_PEER_KEY")
        with remote.chat("Do you like to play outside?", max_tokens=24, **GREEDY) as run:
            batches = list(run)
            r = run.result()
        local = client.chat("chat", "Do you like to play outside?", max_tokens=24, **GREEDY).result()
        assert r.text == local.text and "".join(batches) == r.text
        assert r.http_status == 200
        emb = remote.embed("hello").result().embedding
        assert len(emb) == 128


def test_provider_errors_carry_http_status(llama_server):
    with sipp.Client() as c:
        bad = c.add_provider("bad", model="tiny", base_url=llama_server,
                             api_key="sk-wrong-key-0000")
        with pytest.raises(sipp.SippError) as e:
            bad.chat("hi", max_tokens=4).result()
        assert e.value.kind == "authentication" and e.value.http_status == 401
        assert isinstance(e.value.code, str)  # the peer's error code, when it sent one
        assert "sk-wrong-key-0000" not in str(e.value)
        with pytest.raises(sipp.SippError) as e:
            c.add_provider("x", model="m", base_url="http://example.com/v1")  # not loopback, not https
        assert e.value.kind == "invalid_argument"
        with pytest.raises(sipp.SippError) as e:
            bad.query("x", grammar="root ::= \"a\"")  # local-only option on a remote endpoint
        assert e.value.kind == "invalid_argument" and "grammar" in e.value.message


def test_remote_only_options_reach_the_peer_or_are_refused(llama_server, client):
    with sipp.Client() as c:
        remote = c.add_provider("remote", model="tiny", base_url=llama_server,
                                api_key="peer-secret-4242", headers={"X-Trace": "t-1"})
        # extra options merge into the body: llama-server honours n_probs-like extras silently,
        # and a key Sipp types itself is refused by name
        r = remote.chat("Hi", max_tokens=4, temperature=0, extra={"presence_penalty": 0.0},
                        request_id="py-req-7").result()
        assert r.text and r.http_status == 200
        with pytest.raises(sipp.InvalidArgumentError) as e:
            remote.chat("Hi", extra={"max_tokens": 3})
        assert "max_tokens" in e.value.message
        with pytest.raises(TypeError):
            remote.chat("Hi", extra=["not", "an", "object"])
        with pytest.raises(sipp.InvalidArgumentError) as e:  # a header the adapter owns
            c.add_provider("h", model="tiny", base_url=llama_server,
                           headers=["Authorization: Bearer x"])
        assert "Authorization" in e.value.message
    # local endpoints refuse extra options
    with pytest.raises(sipp.InvalidArgumentError):
        client.chat("chat", "Hi", extra={"presence_penalty": 0.5})
    with pytest.raises(sipp.InvalidArgumentError):
        client.embed("chat", "Hi", extra={"dimensions": 8})


def test_anthropic_kind_is_accepted_and_refuses_query(client):
    with sipp.Client() as c:
        ant = c.add_provider("claude", kind="anthropic", model="claude-x",
                             base_url="http://127.0.0.1:9/v1", api_key="sk-ant-unused",
                             version="2023-06-01")
        with pytest.raises(sipp.SippError) as e:
            ant.query("Once")
        assert e.value.kind == "unsupported"


# ---- gateway endpoint against a real sipp-gateway ----------------------------------------------


def test_logprobs_and_json_schema_pass_through_remotes(gateway, llama_server, client):
    """Issue 18: a Sipp gateway endpoint and an OpenAI-compatible provider (llama-server) carry
    logprobs and enforce json_schema; the gateway's numbers are the local engine's."""
    schema = {"type": "object", "properties": {"mood": {"enum": ["happy", "sad"]},
                                               "n": {"type": "integer"}},
              "required": ["mood", "n"], "additionalProperties": False}
    with sipp.Client() as c:
        gw = c.add_gateway("gw", base_url=gateway.url, target="local", token=GW_TOKEN)
        remote = c.add_provider("remote", model="tiny", base_url=llama_server,
                                api_key="peer-secret-4242")
        local = client.query("chat", "Once upon a time", max_tokens=8, logprobs=True,
                             top_logprobs=2, **GREEDY).result()
        for ep in (gw, remote):
            with ep.query("Once upon a time", max_tokens=8, logprobs=True, top_logprobs=2,
                          **GREEDY) as run:
                batches = list(run)
                r = run.result()
            assert [e.bytes for e in r.logprobs] == [e.bytes for e in local.logprobs]
            for a, b in zip(r.logprobs, local.logprobs):
                assert math.isclose(a.logprob, b.logprob, abs_tol=2e-2) and len(a.top) == 2
            assert [e for b in batches for e in b.logprobs] == r.logprobs
            out = ep.chat("How do you feel?", max_tokens=200, json_schema=schema,
                          **GREEDY).result().text
            v = json.loads(out)
            assert set(v) == {"mood", "n"} and v["mood"] in ("happy", "sad") and isinstance(v["n"], int)


def test_gateway_gives_the_local_answers(gateway, client):
    with sipp.Client() as c:
        gw = c.add_gateway("gw", base_url=gateway.url, target="local", token=GW_TOKEN)
        for op, arg in (("chat", "Do you like to play outside?"), ("query", "Once upon a time")):
            with getattr(gw, op)(arg, max_tokens=16, request_id=f"py-{op}-1", **GREEDY) as run:
                batches = list(run)
                r = run.result()
            local = getattr(client, op)("chat", arg, max_tokens=16, **GREEDY).result()
            # batches add up to the text (how many depends on scheduling: all 16 tokens may
            # already be waiting when the first read happens)
            assert r.text == local.text and "".join(batches) == r.text and len(batches) >= 1
            assert r.http_status == 200 and r.request_id == f"py-{op}-1" and r.error_code == ""
            assert r.usage.output_tokens == local.usage.output_tokens
        remote = gw.embed("hello world").result().embedding
        local = client.embed("chat", "hello world").result().embedding
        assert remote == pytest.approx(local, abs=1e-5)


def test_gateway_estimate_is_measured_from_this_clients_requests(gateway):
    """A gateway endpoint's estimate: nothing known before a request, then measured moving
    averages over this client's own requests (a real gateway binary on loopback)."""
    with sipp.Client() as c:
        gw = c.add_gateway("gw", base_url=gateway.url, target="local", token=GW_TOKEN)
        before = gw.estimate("Once upon a time", max_tokens=4)
        assert not before.local and before.loaded and before.healthy
        assert before.prompt_tokens == 0 and before.n_ctx == 0  # a remote does not tokenize
        for f in (before.ttft_ms, before.total_ms, before.error_rate, before.price_input_per_mtok):
            assert f == sipp.Figure(0.0, 0, "unknown")
        gw.set_prices(0.5, 1.5)
        for _ in range(2):
            gw.query("Once upon a time", max_tokens=4, **GREEDY).result()
        after = gw.estimate("Once upon a time", max_tokens=4)
        assert after.ttft_ms.source == "measured" and after.ttft_ms.samples == 2
        assert after.ttft_ms.value > 0 and after.total_ms.value >= after.ttft_ms.value
        assert after.error_rate == sipp.Figure(0.0, 2, "measured")
        assert after.busy_rate == sipp.Figure(0.0, 2, "measured")
        assert after.price_output_per_mtok == sipp.Figure(1.5, 0, "configured")
        assert after.healthy


def test_gateway_token_from_the_environment_and_cancel(gateway, monkeypatch):
    monkeypatch.setenv("PY_GW_TOKEN", GW_TOKEN)
    with sipp.Client() as c:
        gw = c.add_gateway("gw", base_url=gateway.url, target="long", token_env="PY_GW_TOKEN")
        with gw.query("Once upon a time", max_tokens=4000) as run:
            first = next(iter(run))
            run.cancel()
            r = run.result()
        assert first and r.finish_reason == "cancelled" and r.text.startswith(first)


def test_gateway_auth_errors_carry_kind_code_and_http_status(gateway):
    with sipp.Client() as c:
        wrong = c.add_gateway("wrong", base_url=gateway.url, target="local", token="sk-wrong-999")
        with pytest.raises(sipp.SippError) as e:
            for _ in wrong.chat("Hi", max_tokens=4):
                pass
        assert (e.value.kind, e.value.code, e.value.http_status) == \
            ("authentication", "authentication", 401)
        assert "sk-wrong-999" not in str(e.value)
        denied = c.add_gateway("denied", base_url=gateway.url, target="local",
                               token=GW_TOKEN_STORY_ONLY)
        with pytest.raises(sipp.SippError) as e:
            denied.chat("Hi", max_tokens=4).result()
        assert (e.value.kind, e.value.code, e.value.http_status) == \
            ("authorization", "authorization", 403)
        assert e.value.request_id  # the gateway's x-request-id
        with pytest.raises(sipp.InvalidArgumentError):
            c.add_gateway("x", base_url=gateway.url, target="local", auth="basic")
        with pytest.raises(sipp.InvalidArgumentError) as e:  # local-only option on a gateway
            denied.query("x", grammar='root ::= "a"')
        assert "grammar" in e.value.message


# ---- memory --------------------------------------------------------------------------------------


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def heap_kib():
    """Bytes in use in glibc's malloc heap (every arena): finer than RSS, which moves by pages."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2().uordblks // 1024


def test_200_runs_do_not_grow_the_process(client):
    """Each round is a streamed chat, a query and an embedding (and every 10th an asyncio run).
    Measured here: 200 rounds with the runs freed grow RSS by under 16 KiB and the heap by under
    16 KiB; with sipp_run_free left out, by 330-560 KiB and 660 KiB."""
    def rounds(n):
        for i in range(n):
            with client.chat("chat", "Hello!", max_tokens=16, **GREEDY) as run:
                for _ in run:
                    pass
                run.result()
            client.query("story", "Once upon a time", max_tokens=32).result()
            client.embed("chat", "hello world").result()
            if i % 10 == 0:
                asyncio.run(_async_one(client))
        gc.collect()

    rounds(40)  # warm-up: allocator pools, thread stacks, caches
    rss, heap = rss_kib(), heap_kib()
    rounds(200)
    rss_grown, heap_grown = rss_kib() - rss, heap_kib() - heap
    assert rss_grown < 256 and heap_grown < 128, f"RSS +{rss_grown} KiB, heap +{heap_grown} KiB"


async def _async_one(client):
    run = client.query("story", "Once", max_tokens=8)
    async for _ in run:
        pass
    await run


# ---- the README example ----------------------------------------------------------------------------


def test_quickstart_example_runs(gateway):
    """The example asks the local model and then the gateway: the same answer twice."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"), SIPP_MODEL=str(CHAT_MODEL),
               SIPP_GATEWAY_URL=gateway.url, SIPP_GATEWAY_TARGET="local",
               SIPP_GATEWAY_TOKEN=GW_TOKEN)
    r = subprocess.run([sys.executable, str(ROOT / "bindings/python/examples/quickstart.py")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    answers = re.findall(r"(.*)\n\[(local|gateway)\] finish: (stop|length)", r.stdout)
    assert [a[1] for a in answers] == ["local", "gateway"], r.stdout
    assert answers[0][0] and answers[0][0] == answers[1][0]
