"""Issue 18's outputs through the real gateway: log-probabilities on both profiles (finite and
streamed, OpenAI's chat and legacy completions shapes) from a local target and passed through
from a real llama-server as an openai_compatible target, whose numbers a local target of the same
model must match (Sipp computes them as llama-server does by default)."""
import json
import math

import pytest

from conftest import CHAT_MODEL
from gateway_util import Gateway, Stream, error_of, local_target
from test_provider import start_llama_server

SECRET = "sk-outputs-5e6f7a8b9c0d"
TOKENS = '[[tokens]]\nenv = "TOK"\ncaller = "alice"\n'
ENV = {"TOK": SECRET}
PROMPT = "User: Tell me about the sun.\nBot:"
MSGS = [{"role": "user", "content": "Tell me about the sun."}]


@pytest.fixture(scope="module")
def peer():
    proc, url = start_llama_server()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, peer):
    remote = f'[[targets]]\nname = "remote"\ntype = "openai_compatible"\nmodel = "m"\nbase_url = "{peer}"\n'
    g = Gateway(tmp_path_factory.mktemp("gwout"), local_target() + remote + TOKENS, env=ENV)
    yield g
    assert g.stop() == 0


def post(gw, path, body):
    return gw.post(path, body, token=SECRET)


def check_entries(entries, n_top):
    """OpenAI chat-shaped entries: bytes spell the token, logprob <= 0, alternatives sorted, at
    temperature 0 the chosen token is the first alternative."""
    assert entries
    for e in entries:
        assert e["logprob"] <= 0
        assert bytes(e["bytes"]).decode("utf-8", "replace") == e["token"]
        top = e["top_logprobs"]
        assert len(top) == n_top
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        if n_top:
            assert top[0]["bytes"] == e["bytes"] and math.isclose(top[0]["logprob"], e["logprob"], abs_tol=1e-6)
    return b"".join(bytes(e["bytes"]) for e in entries).decode("utf-8", "replace")


@pytest.mark.parametrize("target", ["local", "remote"])
def test_chat_logprobs(gw, target):
    st, _, b = post(gw, "/v1/chat/completions", {"model": target, "messages": MSGS, "max_tokens": 8,
                                                  "temperature": 0, "logprobs": True, "top_logprobs": 3})
    assert st == 200, b
    c = b["choices"][0]
    assert check_entries(c["logprobs"]["content"], 3) == c["message"]["content"]
    # without logprobs: null, as OpenAI
    st, _, b = post(gw, "/v1/chat/completions", {"model": target, "messages": MSGS, "max_tokens": 2})
    assert st == 200 and b["choices"][0]["logprobs"] is None


@pytest.mark.parametrize("target", ["local", "remote"])
def test_completions_legacy_logprobs(gw, target):
    st, _, b = post(gw, "/v1/completions", {"model": target, "prompt": PROMPT, "max_tokens": 8,
                                            "temperature": 0, "logprobs": 2})
    assert st == 200, b
    c = b["choices"][0]
    lp = c["logprobs"]
    assert "".join(lp["tokens"]) == c["text"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    assert all(x <= 0 for x in lp["token_logprobs"])
    for tok, x, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert 1 <= len(top) <= 2 and math.isclose(top[tok], x, abs_tol=1e-6)
    offs = [len("".join(lp["tokens"][:i]).encode()) for i in range(len(lp["tokens"]))]
    assert lp["text_offset"] == offs


def test_local_matches_llama_server(gw):
    """Same model, same raw prompt, greedy: the same tokens with the same log-probabilities."""
    got = {}
    for target in ("local", "remote"):
        st, _, b = post(gw, "/v1/completions", {"model": target, "prompt": PROMPT, "max_tokens": 6,
                                                "temperature": 0, "logprobs": 3})
        assert st == 200, b
        got[target] = b["choices"][0]["logprobs"]
    assert got["local"]["tokens"] and got["local"]["tokens"] == got["remote"]["tokens"]
    for a, r in zip(got["local"]["token_logprobs"], got["remote"]["token_logprobs"]):
        assert math.isclose(a, r, abs_tol=2e-2), (a, r)


@pytest.mark.parametrize("target", ["local", "remote"])
def test_chat_stream_logprobs(gw, target):
    s = Stream(gw, "/v1/chat/completions", {"model": target, "messages": MSGS, "max_tokens": 8,
                                            "temperature": 0, "stream": True, "logprobs": True,
                                            "top_logprobs": 2}, token=SECRET)
    assert s.status == 200
    text, entries = "", []
    for _, data, _ in s.frames():
        if data == "[DONE]":
            break
        ch = json.loads(data)["choices"]
        if not ch:
            continue
        text += ch[0]["delta"].get("content") or ""
        if ch[0]["logprobs"]:
            entries += ch[0]["logprobs"]["content"]
    s.close()
    assert check_entries(entries, 2) == text and text


def test_sipp_profile_logprobs(gw):
    st, _, b = post(gw, "/v1/query", {"model": "local", "prompt": PROMPT, "max_tokens": 6,
                                      "temperature": 0, "logprobs": True, "top_logprobs": 1})
    assert st == 200, b
    assert check_entries(b["logprobs"], 1) == b["text"]
    assert len(b["logprobs"]) == b["usage"]["output_tokens"] or b["finish_reason"] == "stop"
    s = Stream(gw, "/v1/chat", {"model": "local", "messages": MSGS, "max_tokens": 6, "temperature": 0,
                                "stream": True, "logprobs": True}, token=SECRET)
    text, entries = "", []
    for ev, data, _ in s.frames():
        if ev == "token":
            d = json.loads(data)
            text += d["text"]
            entries += d["logprobs"]
        if ev in ("done", "error"):
            break
    s.close()
    assert check_entries(entries, 0) == text and text


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/completions", {"logprobs": 21}, "logprobs"),
    ("/v1/completions", {"logprobs": -1}, "logprobs"),
    ("/v1/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat", {"logprobs": True, "top_logprobs": 99}, "top_logprobs"),
])
def test_logprobs_out_of_range_is_400(gw, path, body, param):
    base = {"model": "local", "max_tokens": 1}
    base.update({"messages": MSGS} if "chat" in path else {"prompt": PROMPT})
    st, _, b = post(gw, path, {**base, **body})
    assert (st, error_of(b)) == (400, "invalidrequest"), b
    assert param in b["error"]["message"]


@pytest.mark.parametrize("path,value", [("/v1/chat/completions", 3), ("/v1/chat/completions", "yes"),
                                        ("/v1/completions", "yes"), ("/v1/query", 2)])
def test_logprobs_wrong_type_is_400(gw, path, value):
    base = {"model": "local", "max_tokens": 1}
    base.update({"messages": MSGS} if "chat" in path else {"prompt": PROMPT})
    st, _, b = post(gw, path, {**base, "logprobs": value})
    assert (st, error_of(b)) == (400, "invalid_json"), b
