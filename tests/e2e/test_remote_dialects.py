"""Anthropic and Sipp-gateway endpoints against the scripted server: request shapes (headers,
body fields), streamed answers, every error kind, secrets redacted, extra options. There is no
Anthropic peer to run here; the real gateway is exercised in test_gateway_endpoint.py."""
import json
import time

import pytest

from fault_server import FaultServer

KEY = "sk-ant-secret-0123456789"
TOKEN = "gw-secret-token-0123456789"


@pytest.fixture(scope="module")
def srv():
    s = FaultServer()
    yield s
    s.close()


def anthropic(sipp, srv, scenario, *extra, cmd="chat"):
    t0 = time.monotonic()
    r = sipp(cmd, "--provider", "anthropic", "--base-url", srv.url(scenario), "--remote-model",
             "claude-test", "--json", *extra, "hi", env={"ANTHROPIC_API_KEY": KEY}, timeout=30)
    assert KEY not in r.stdout + r.stderr
    assert time.monotonic() - t0 < 15
    return r


def gateway(sipp, srv, scenario, *extra, cmd="chat"):
    t0 = time.monotonic()
    r = sipp(cmd, "--gateway", srv.root(scenario), "--target", "tiny", "--json", *extra, "hi",
             env={"SIPP_GATEWAY_TOKEN": TOKEN}, timeout=30)
    assert TOKEN not in r.stdout + r.stderr
    assert time.monotonic() - t0 < 15
    return r


def last_json(r):
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- Anthropic -------------------------------------------------------------------------------

def test_anthropic_chat_streams_and_maps_usage_and_length(sipp, srv):
    r = anthropic(sipp, srv, "ok", "--system", "be brief", "--stop", "END", "-n", "7",
                  "--temperature", "0.2", "--extra-json", '{"metadata": {"user_id": "u1"}}')
    assert r.returncode == 0, r.stderr
    out = last_json(r)
    assert out["text"] == "Hello"
    assert out["finish_reason"] == "length"
    assert out["usage"] == {"input_tokens": 12, "output_tokens": 2, "total_tokens": 14}
    req = srv.seen[-1]
    assert req["headers"]["x-api-key"] == KEY
    assert req["headers"]["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in req["headers"]
    b = req["body"]
    assert b["model"] == "claude-test" and b["max_tokens"] == 7 and b["stream"] is True
    assert b["system"] == "be brief"
    assert b["messages"] == [{"role": "user", "content": "hi"}]
    assert b["stop_sequences"] == ["END"]
    assert abs(b["temperature"] - 0.2) < 1e-6
    assert "top_p" not in b  # only when the caller changes it
    assert b["metadata"] == {"user_id": "u1"}


@pytest.mark.parametrize("scenario,status,needle", [
    ("unauthorized", "authentication", "401 (authentication): invalid x-api-key"),
    ("forbidden", "authorization", "403 (authorization): Your API key does not have permission"),
    ("bad_request", "invalid_argument", "400 (invalid_argument): messages: at least one message"),
    ("rate_limited", "rate_limited", "429 (rate_limited) (retry after 9 s)"),
    ("overloaded", "overloaded", "529 (overloaded)"),
    ("billing", "quota_exceeded", "400 (quota_exceeded)"),
    ("midstream_error", "overloaded", "failed mid-stream: Overloaded"),
    ("no_done", "upstream_error", "ended without message_stop"),
])
def test_anthropic_errors_map_to_kinds(sipp, srv, scenario, status, needle):
    r = anthropic(sipp, srv, scenario)
    assert r.returncode == 1
    assert needle in r.stderr, r.stderr
    e = last_json(r)["error"]
    assert e["status"] == status
    if e["http_status"] >= 400:  # Anthropic names its request ids `request-id`
        assert e["request_id"] == "req_ant_1"


def test_anthropic_has_no_query_or_embed(sipp, srv):
    n = len(srv.seen)
    q = anthropic(sipp, srv, "ok", cmd="query")
    assert q.returncode == 1 and "no raw completion API" in q.stderr
    e = sipp("embed", "--provider", "anthropic", "--remote-model", "c", "hi",
             env={"ANTHROPIC_API_KEY": KEY})
    assert e.returncode == 1 and "no embeddings API" in e.stderr
    assert len(srv.seen) == n  # refused up front: nothing was sent


def test_extra_json_cannot_override_typed_fields(sipp, srv):
    for field in ("max_tokens", "model", "stream", "system"):
        r = anthropic(sipp, srv, "ok", "--extra-json", json.dumps({field: 1}))
        assert r.returncode == 1
        assert f'may not set "{field}"' in r.stderr
    bad = anthropic(sipp, srv, "ok", "--extra-json", "[1]")
    assert bad.returncode == 1 and "must be a JSON object" in bad.stderr


# ---- Sipp gateway protocol (faults our gateway does not produce on demand) -------------------

def test_gateway_stream_request_shape_and_request_id(sipp, srv):
    r = gateway(sipp, srv, "ok", "--stop", "X", "-n", "5")
    assert r.returncode == 0, r.stderr
    out = last_json(r)
    assert out["text"] == "Hello" and out["finish_reason"] == "length"
    assert out["usage"] == {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}
    assert out["request_id"] == "gw-req-1"
    req = srv.seen[-1]
    assert req["path"].endswith("/v1/chat")
    assert req["headers"]["Authorization"] == "Bearer " + TOKEN
    assert req["body"] == {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": 5, "temperature": pytest.approx(0.8), "top_p": pytest.approx(0.95),
                           "stop": ["X"], "stream": True,
                           # issue 18: a chat names its reasoning mode (the gateway then streams
                           # a thinking model's reasoning as `reasoning` events)
                           "reasoning_mode": "separate"}
    q = gateway(sipp, srv, "ok", cmd="query")
    assert q.returncode == 0 and srv.seen[-1]["path"].endswith("/v1/query")
    assert srv.seen[-1]["body"]["prompt"] == "hi"


def test_gateway_embed(sipp, srv):
    r = gateway(sipp, srv, "ok", cmd="embed")
    assert r.returncode == 0, r.stderr
    assert last_json(r)["embedding"] == pytest.approx([0.6, 0.8])
    assert srv.seen[-1]["body"] == {"model": "tiny", "input": "hi"}
    bad = gateway(sipp, srv, "garbage", cmd="embed")
    assert bad.returncode == 1 and "non-number" in bad.stderr


@pytest.mark.parametrize("code,http,status", [
    ("blocked", 403, "authorization"), ("rate_limited", 429, "rate_limited"),
    ("authentication", 401, "authentication"), ("invalid_json", 400, "invalid_argument"),
    ("authorization", 403, "authorization"), ("resolution", 404, "model_not_found"),
    ("admission", 429, "busy"), ("invalidrequest", 400, "invalid_argument"),
    ("execution", 500, "upstream_error"), ("cancelled", 408, "cancelled"),
    ("payload_too_large", 413, "invalid_argument"), ("method_not_allowed", 405, "upstream_error"),
    ("not_found", 404, "upstream_error"),
])
def test_gateway_error_envelopes_map_to_kinds(sipp, srv, code, http, status):
    r = gateway(sipp, srv, "code_" + code)
    assert r.returncode == 1
    e = last_json(r)["error"]
    assert (e["status"], e["http_status"], e["code"]) == (status, http, code)
    assert e["request_id"] == "gw-req-1"
    assert f"scripted {code}" in e["message"]
    if http == 429:
        assert e["retry_after_s"] == 3


@pytest.mark.parametrize("scenario,needle", [
    ("midstream_error", "failed mid-stream (execution): engine failed"),
    ("no_done", "ended without a done event"),
    ("huge_event", "exceeds 1048576 bytes"),
    ("huge_error", "500 (upstream_error)"),
])
def test_gateway_stream_faults(sipp, srv, scenario, needle):
    r = gateway(sipp, srv, scenario)
    assert r.returncode == 1
    assert needle in r.stderr, r.stderr


def test_gateway_rejects_local_only_options_up_front(sipp, srv):
    n = len(srv.seen)
    r = gateway(sipp, srv, "ok", "--context-key", "doc-1")
    assert r.returncode == 1 and "context_key is an option of local endpoints" in r.stderr
    r = gateway(sipp, srv, "ok", "--top-k", "3")
    assert r.returncode == 1 and "top_k" in r.stderr
    assert len(srv.seen) == n


def test_gateway_without_token_sends_no_credentials(sipp, srv):
    r = sipp("chat", "--gateway", srv.root("ok"), "--target", "tiny", "hi", timeout=30)
    assert r.returncode == 0, r.stderr
    assert "Authorization" not in srv.seen[-1]["headers"]
    missing = sipp("chat", "--gateway", srv.root("ok"), "--target", "tiny", "--token-env",
                   "NOPE_TOKEN", "hi")
    assert missing.returncode == 1 and "NOPE_TOKEN is not set" in missing.stderr


def test_gateway_url_rules(sipp):
    for url, needle in [("http://example.com", "https"), ("https://u:p@example.com", "userinfo"),
                        ("https://example.com/?q=1", "query")]:
        r = sipp("chat", "--gateway", url, "--target", "t", "hi")
        assert r.returncode == 1 and needle in r.stderr, (url, r.stderr)
