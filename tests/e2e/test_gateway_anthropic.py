"""The Anthropic Messages route (POST /v1/messages) of the real gateway: the official Anthropic
SDK for Node against it unchanged, the wire shapes of answers, streams and errors, the same
targets and policy as the other routes, and bad input refused by name.

npm installs the SDK once into the git-ignored build/npm-anthropic/ at the version pinned in
scripts/deps.env (ANTHROPIC_NODE_VERSION)."""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from gateway_util import Gateway, Stream, local_target, story_target

ROOT = pathlib.Path(__file__).parents[2]
NPM_DIR = ROOT / "build" / "npm-anthropic"
TOKEN = "sk-ant-test-5678"
CALLERS = ('[[tokens]]\nenv = "TOK"\ncaller = "app"\n'
           '[[tokens]]\nenv = "TOK2"\ncaller = "other"\ntargets = ["story"]\n')
ENV = {"TOK": TOKEN, "TOK2": "sk-other-9999"}
KEY = {"x-api-key": TOKEN, "anthropic-version": "2023-06-01"}
HI = [{"role": "user", "content": "Do you like to play outside?"}]


def sdk_dir():
    version = re.search(r"^ANTHROPIC_NODE_VERSION=(\S+)", (ROOT / "scripts/deps.env").read_text(),
                        re.M).group(1)
    pkg = NPM_DIR / "node_modules" / "@anthropic-ai" / "sdk" / "package.json"
    if not pkg.exists() or json.loads(pkg.read_text())["version"] != version:
        if not shutil.which("npm"):
            pytest.fail("npm is needed for the Anthropic SDK test (scripts/setup installs it)")
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                            "--prefix", str(NPM_DIR), f"@anthropic-ai/sdk@{version}"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    return NPM_DIR


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("anthropic"), local_target(n_ctx=512) + story_target() + CALLERS,
                env=ENV)
    yield g
    assert g.stop() == 0


def test_anthropic_node_sdk(gw):
    d = sdk_dir()
    script = d / "gateway_anthropic_sdk.mjs"  # next to node_modules so the import resolves
    shutil.copy(pathlib.Path(__file__).with_name("gateway_anthropic_sdk.mjs"), script)
    r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "GW_URL": f"http://127.0.0.1:{gw.port}",
                            "GW_KEY": TOKEN})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    m = out["message"]
    assert m["type"] == "message" and m["role"] == "assistant" and m["id"].startswith("msg_")
    assert m["content"][0]["type"] == "text" and m["content"][0]["text"]
    assert m["stop_reason"] in ("end_turn", "max_tokens")
    assert 0 < m["usage"]["output_tokens"] <= 4 and m["usage"]["input_tokens"] > 0
    s = out["stream"]
    assert s["text"] and s["text"] == s["final_text"]  # the deltas add up to the message
    assert s["stop_reason"] in ("end_turn", "max_tokens") and 0 < s["usage"]["output_tokens"] <= 5
    ev = out["events"]
    assert ev[:2] == ["message_start", "content_block_start"], ev
    assert ev[-3:] == ["content_block_stop", "message_delta", "message_stop"], ev
    assert set(ev[2:-3]) == {"content_block_delta"}, ev
    assert out["not_found"] == {"status": 404, "name": "NotFoundError", "type": "not_found_error"}
    assert out["bad_request"]["status"] == 400 and out["bad_request"]["name"] == "BadRequestError"
    assert out["auth"] == {"status": 401, "name": "AuthenticationError",
                           "type": "authentication_error"}


def test_same_answer_as_the_openai_route(gw):
    """One target, one chat template: at temperature 0 /v1/messages (with its system field and
    text blocks) answers what /v1/chat/completions answers for the same conversation."""
    system = "You are a helpful assistant."
    st, _, a = gw.post("/v1/messages", {
        "model": "local", "max_tokens": 12, "temperature": 0, "system": [{"type": "text", "text": system}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Do you like"},
                                                  {"type": "text", "text": "to play outside?"}]}]},
        headers=KEY)
    assert st == 200, a
    st, _, o = gw.post("/v1/chat/completions", {
        "model": "local", "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "system", "content": system},
                     {"role": "user", "content": "Do you like\nto play outside?"}]}, token=TOKEN)
    assert st == 200, o
    assert a["content"][0]["text"] == o["choices"][0]["message"]["content"]
    assert a["usage"]["input_tokens"] == o["usage"]["prompt_tokens"]
    assert a["usage"]["output_tokens"] == o["usage"]["completion_tokens"]
    assert a["stop_reason"] == {"stop": "end_turn", "length": "max_tokens"}[o["choices"][0]["finish_reason"]]


def test_stream_frames_are_anthropic_events(gw):
    s = Stream(gw, "/v1/messages", {"model": "local", "max_tokens": 6, "temperature": 0,
                                    "messages": HI, "stream": True}, headers=KEY)
    assert s.status == 200 and s.headers["content-type"].startswith("text/event-stream")
    frames = [(e, json.loads(d)) for e, d, c in s.frames() if c is None]
    s.c.close()
    for event, data in frames:
        assert data["type"] == event  # each event is named by its data's type
    start = frames[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == [] and start["stop_reason"] is None
    deltas = [d["delta"]["text"] for e, d in frames if e == "content_block_delta"]
    assert all(d["index"] == 0 for e, d in frames if e.startswith("content_block"))
    end = [d for e, d in frames if e == "message_delta"][0]
    assert end["usage"]["output_tokens"] == 6 and end["delta"]["stop_reason"] == "max_tokens"
    st, _, whole = gw.post("/v1/messages", {"model": "local", "max_tokens": 6, "temperature": 0,
                                            "messages": HI}, headers=KEY)
    assert "".join(deltas) == whole["content"][0]["text"]


@pytest.mark.parametrize("body,status,needle", [
    ({"model": "local", "max_tokens": 4, "messages": [{"role": "system", "content": "x"}]},
     400, "role must be user or assistant"),
    ({"model": "local", "max_tokens": 4, "messages": []}, 400, "non-empty array"),
    ({"model": "local", "max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]},
     400, "type 'image' are not supported"),
    ({"model": "local", "max_tokens": 4, "messages": HI,
      "tools": [{"name": "f", "input_schema": {"type": "object"}}]}, 400, "'tools'"),
    ({"model": "local", "max_tokens": 4, "messages": HI, "stop": ["x"]}, 400, "stop_sequences"),
    ({"model": "local", "max_tokens": 0, "messages": HI}, 400, "max_tokens"),
    ({"model": "local", "max_tokens": 4, "messages": HI, "context_key": "k"}, 400, "local-only"),
    ({"model": "local", "max_tokens": 4, "messages": [{"role": "user", "content": 7}]},
     400, "content must be a string"),
])
def test_bad_input_is_refused_by_name(gw, body, status, needle):
    st, _, b = gw.post("/v1/messages", body, headers=KEY)
    assert st == status, b
    assert b["type"] == "error" and b["error"]["type"] == "invalid_request_error", b
    assert needle in b["error"]["message"], b
    # and the gateway still answers
    st, _, ok = gw.post("/v1/messages", {"model": "local", "max_tokens": 2, "messages": HI},
                        headers=KEY)
    assert st == 200, ok


def test_same_policy_as_the_other_routes(gw):
    st, _, b = gw.post("/v1/messages", {"model": "local", "max_tokens": 2, "messages": HI})
    assert st == 401 and b["error"]["type"] == "authentication_error", b
    st, _, b = gw.post("/v1/messages", {"model": "local", "max_tokens": 2, "messages": HI},
                       headers={"x-api-key": "sk-nobody"})
    assert st == 401 and b["error"]["type"] == "authentication_error", b
    # a caller whose token does not list the target
    st, _, b = gw.post("/v1/messages", {"model": "local", "max_tokens": 2, "messages": HI},
                       headers={"x-api-key": ENV["TOK2"]})
    assert st == 403 and b["error"]["type"] == "permission_error", b
    # Bearer works too, and wins over x-api-key when both are sent
    st, _, b = gw.post("/v1/messages", {"model": "local", "max_tokens": 2, "messages": HI},
                       token=TOKEN, headers={"x-api-key": "sk-nobody"})
    assert st == 200, b
    st, _, b = gw.post("/v1/messages", {"model": "local", "max_tokens": 2, "messages": HI},
                       token="sk-nobody", headers={"x-api-key": TOKEN})
    assert st == 401, b
    st, _, b = gw.post("/v1/messages", {"model": "missing", "max_tokens": 2, "messages": HI},
                       headers=KEY)
    assert st == 404 and b["error"]["type"] == "not_found_error", b
    # x-api-key is a credential on the other routes as well
    st, _, b = gw.post("/v1/chat/completions", {"model": "local", "max_tokens": 2, "messages": HI},
                       headers=KEY)
    assert st == 200, b
    st, _, b = gw.request("GET", "/v1/messages", headers=KEY)
    assert st == 405, b
