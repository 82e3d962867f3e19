"""libsipp's gateway endpoint (through the `sipp` CLI) against the real sipp-gateway: the three
operations give what the local endpoint gives, streaming included; every protocol error a
client can run into surfaces with its status, HTTP status and code; x-request-id travels from
the client through the gateway to the provider and back; tokens never show, and go out in a
custom header when asked to."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN_DIR, CHAT_MODEL
from fault_server import FaultServer
from gateway_util import Gateway, local_target, story_target

ALICE, BOB, CAROL = "sk-alice-1b2c3d4e5f", "sk-bob-6a7b8c9d0e", "sk-carol-11aa22bb33"
DAVE = "sk-dave-44cc55dd66"


@pytest.fixture(scope="module")
def peer():
    s = FaultServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, peer):
    g = Gateway(tmp_path_factory.mktemp("gwe"), local_target() + story_target() + f"""
[[targets]]
name = "peer"
type = "openai_compatible"
model = "m"
base_url = "{peer.url('ok')}"

[[targets]]
name = "stalls"
type = "openai_compatible"
model = "m"
base_url = "{peer.url('stalls')}"

[[targets]]
name = "claude"
type = "anthropic"
model = "claude-test"
api_key_env = "ANT_KEY"
base_url = "{peer.url('ok')}"

[[targets]]
name = "dead"
type = "openai_compatible"
model = "m"
base_url = "http://127.0.0.1:1/v1"

[[tokens]]
env = "TOK_ALICE"
caller = "alice"

[[tokens]]
env = "TOK_BOB"
caller = "bob"
targets = ["story"]

[[tokens]]
env = "TOK_DAVE"
caller = "dave"
requests_per_minute = 2

[[tokens]]
env = "TOK_CAROL"
caller = "carol"
max_concurrent = 1

[security]
ip_blocklist = ["203.0.113.0/24"]
[security.client_ip]
source = "x_forwarded_for"
trusted_proxy_cidrs = ["127.0.0.1"]

[routes]
models = "/alt/v1/chat"
""", top="max_request_bytes = 4096\n",
                env={"TOK_ALICE": ALICE, "TOK_BOB": BOB, "TOK_CAROL": CAROL, "TOK_DAVE": DAVE, "ANT_KEY": "sk-ant-x"})
    yield g
    g.stop()


def run(sipp, gw, cmd, target, text, *extra, token=ALICE, json_out=True, base=None):
    args = [cmd, "--gateway", base or f"http://127.0.0.1:{gw.port}", "--target", target]
    if json_out:
        args.append("--json")
    r = sipp(*args, *extra, text, env={"SIPP_GATEWAY_TOKEN": token}, timeout=60)
    for secret in (ALICE, BOB, CAROL, DAVE):
        assert secret not in r.stdout + r.stderr
    return r


def out(r):
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- the same answers as the local endpoint ---------------------------------------------------

def test_chat_and_query_match_the_local_endpoint(sipp, gw):
    for cmd, model, target, text in [("chat", str(CHAT_MODEL), "local", "Do you like to play outside?"),
                                     ("query", str(CHAT_MODEL), "local", "Once upon a time")]:
        local = sipp(cmd, "-m", model, "--temperature", "0", "-n", "16", text)
        assert local.returncode == 0, local.stderr
        # streamed (the CLI prints batches as they arrive)
        remote = run(sipp, gw, cmd, target, text, "--temperature", "0", "-n", "16", json_out=False)
        assert remote.returncode == 0, remote.stderr
        assert remote.stdout == local.stdout
    r = run(sipp, gw, "chat", "local", "Hi", "--temperature", "0", "-n", "3")
    o = out(r)
    assert o["finish_reason"] == "length"
    assert o["usage"]["output_tokens"] == 3 and o["usage"]["input_tokens"] > 0
    assert o["request_id"]


def test_embed_matches_the_local_endpoint(sipp, gw):
    local = out(sipp("embed", "--json", "-m", str(CHAT_MODEL), "hello world"))
    remote = out(run(sipp, gw, "embed", "local", "hello world"))
    assert remote["dims"] == local["dims"] > 0
    assert remote["embedding"] == pytest.approx(local["embedding"], abs=1e-5)


def test_stop_strings_pass_through(sipp, gw):
    full = out(run(sipp, gw, "query", "story", "Once upon a time", "--temperature", "0", "-n", "24"))
    words = full["text"].split()
    assert len(words) > 3
    cut = out(run(sipp, gw, "query", "story", "Once upon a time", "--temperature", "0", "-n", "24",
                  "--stop", words[2]))
    assert cut["finish_reason"] == "stop"
    assert full["text"].startswith(cut["text"]) and words[2] not in cut["text"]


# ---- request ids and providers behind the gateway ---------------------------------------------

def test_request_id_travels_to_the_provider_and_back(sipp, gw, peer):
    r = run(sipp, gw, "chat", "peer", "hi", "--request-id", "cli-req-42")
    assert r.returncode == 0, r.stderr
    o = out(r)
    assert o["text"] == "Hi" and o["request_id"] == "cli-req-42"
    assert peer.seen[-1]["headers"].get("x-request-id") == "cli-req-42"
    # without one, the gateway makes one and still passes it on
    o = out(run(sipp, gw, "chat", "peer", "hi"))
    assert o["request_id"] and peer.seen[-1]["headers"].get("x-request-id") == o["request_id"]


def test_anthropic_target_through_the_gateway(sipp, gw, peer):
    o = out(run(sipp, gw, "chat", "claude", "hi", "-n", "5"))
    assert o["text"] == "Hello" and o["finish_reason"] == "length"
    seen = peer.seen[-1]
    assert seen["path"].endswith("/v1/messages") and seen["headers"]["x-api-key"] == "sk-ant-x"


# ---- every error a client can meet, with status, HTTP status and code -------------------------

def err(r):
    assert r.returncode == 1, r.stdout
    e = out(r)["error"]
    return e["status"], e["http_status"], e["code"]


def test_protocol_errors_surface_with_status_and_code(sipp, gw):
    assert err(run(sipp, gw, "chat", "local", "hi", token="sk-wrong")) == \
        ("authentication", 401, "authentication")
    assert err(run(sipp, gw, "chat", "local", "hi", token=BOB)) == \
        ("authorization", 403, "authorization")
    assert err(run(sipp, gw, "chat", "nope", "hi")) == ("model_not_found", 404, "resolution")
    assert err(run(sipp, gw, "chat", "local", "hi", "--header", "X-Forwarded-For: 203.0.113.7")) == \
        ("authorization", 403, "blocked")
    r = run(sipp, gw, "chat", "local", "hi", "--extra-json", '{"context_key": "mine"}')
    assert err(r) == ("invalid_argument", 400, "invalidrequest")
    assert "context_key" in out(r)["error"]["message"]
    assert err(run(sipp, gw, "chat", "story", "hi")) == ("invalid_argument", 400, "invalidrequest")
    assert err(run(sipp, gw, "query", "local", "x" * 5000)) == \
        ("invalid_argument", 413, "payload_too_large")
    # a provider failure after the stream's headers went out arrives as an `error` event
    assert err(run(sipp, gw, "chat", "dead", "hi")) == ("upstream_error", 200, "execution")
    assert err(run(sipp, gw, "chat", "local", "hi", base=f"http://127.0.0.1:{gw.port}/nope")) == \
        ("upstream_error", 404, "not_found")
    # [routes] put the GET-only models route where this base URL's chat path lands
    r = run(sipp, gw, "chat", "local", "hi", base=f"http://127.0.0.1:{gw.port}/alt")
    assert err(r) == ("upstream_error", 405, "method_not_allowed")
    assert "/alt/v1/chat takes GET" in out(r)["error"]["message"]


def test_custom_header_auth_sends_the_token_in_that_header(sipp, gw, peer):
    """SIPP_GATEWAY_AUTH_HEADER (`--auth-header NAME`): the token goes out as `NAME: <token>`
    and no Authorization header goes with it; a peer that takes that header (here the
    scripted server, as a proxy in front of a gateway would) answers. The real gateway itself
    takes only `Authorization: Bearer` and `x-api-key` (Anthropic's header), so a token in any
    other header is 401 there, while x-api-key is accepted."""
    r = run(sipp, gw, "chat", "tiny", "hi", "--auth-header", "X-Api-Key", base=peer.root("ok"))
    assert r.returncode == 0, r.stderr
    assert out(r)["text"] == "Hello"
    seen = peer.seen[-1]
    assert seen["path"] == "/ok/v1/chat"
    assert seen["headers"].get("X-Api-Key") == ALICE
    assert "Authorization" not in seen["headers"]
    r = run(sipp, gw, "chat", "local", "hi", "--auth-header", "X-Token")
    assert err(r) == ("authentication", 401, "authentication")
    assert "missing 'Authorization: Bearer' (or 'x-api-key') header" in out(r)["error"]["message"]
    r = run(sipp, gw, "chat", "local", "hi", "--auth-header", "X-Api-Key")
    assert r.returncode == 0, r.stdout
    # a name that is no HTTP token, or no token to send, fails before anything is sent
    n = len(peer.seen)
    bad = run(sipp, gw, "chat", "tiny", "hi", "--auth-header", "X Api", base=peer.root("ok"))
    assert bad.returncode == 1 and "auth_header" in bad.stderr, bad.stderr
    unset = sipp("chat", "--gateway", peer.root("ok"), "--target", "tiny", "--auth-header",
                 "X-Api-Key", "hi")
    assert unset.returncode == 1 and "SIPP_GATEWAY_TOKEN is not set" in unset.stderr, unset.stderr
    assert len(peer.seen) == n


def test_rate_limit_reports_retry_after(sipp, gw):
    for _ in range(2):
        assert run(sipp, gw, "query", "story", "Once", "-n", "2", token=DAVE).returncode == 0
    r = run(sipp, gw, "query", "story", "Once", "-n", "2", token=DAVE)
    assert err(r) == ("rate_limited", 429, "rate_limited")
    assert out(r)["error"]["retry_after_s"] >= 1


def background(gw, target, token):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SIPP_")}
    e["SIPP_GATEWAY_TOKEN"] = token
    return subprocess.Popen([str(BIN_DIR / "sipp"), "chat", "--gateway", f"http://127.0.0.1:{gw.port}",
                             "--target", target, "--json", "hi"], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_admission_limit_is_busy(sipp, gw):
    held = background(gw, "stalls", CAROL)  # the peer sends one chunk, then stalls
    try:
        assert gw.wait_metric("sipp_requests_active", lambda v: v >= 1) >= 1
        assert err(run(sipp, gw, "chat", "local", "hi", token=CAROL)) == ("busy", 429, "admission")
    finally:
        held.kill()
        held.wait()
    gw.wait_metric("sipp_requests_active", lambda v: v == 0)


def test_shutdown_ends_an_open_stream_with_cancelled(sipp, tmp_path, peer):
    g = Gateway(tmp_path, f"""
[[targets]]
name = "stalls"
type = "openai_compatible"
model = "m"
base_url = "{peer.url('stalls')}"
""", top="shutdown_grace_seconds = 1\n")
    held = background(g, "stalls", "unused")
    try:
        assert g.wait_metric("sipp_requests_active", lambda v: v >= 1) >= 1
        time.sleep(0.2)
        g.proc.send_signal(signal.SIGTERM)
        stdout, _ = held.communicate(timeout=20)
        e = json.loads(stdout.strip().splitlines()[-1])["error"]
        assert (e["status"], e["code"]) == ("cancelled", "cancelled")
        assert e["http_status"] == 200  # the stream had started: the error came as an event
    finally:
        if held.poll() is None:
            held.kill()
        g.stop()
