"""Structured output (issue 18) end to end: OpenAI's `response_format` (json_schema and
json_object) and the Sipp profile's `json_schema` through the real gateway, on a local target
(enforced by the grammar) and on a real llama-server as an openai_compatible target
(`response_format`); the Anthropic mapping (a forced tool whose streamed input is the answer)
against the scripted fault server; invalid schemas and the gateway's max_schema_bytes."""
import json

import pytest

from fault_server import FaultServer
from gateway_util import Gateway, error_of, local_target
from test_provider import start_llama_server

SECRET = "sk-structured-1a2b3c4d5e"
TOKENS = '[[tokens]]\nenv = "TOK"\ncaller = "alice"\n'
ENV = {"TOK": SECRET}
SCHEMA = {"type": "object", "properties": {"mood": {"enum": ["happy", "sad"]}, "n": {"type": "integer"}},
          "required": ["mood", "n"], "additionalProperties": False}
MSGS = [{"role": "user", "content": "How do you feel?"}]
PROMPT = "User: How do you feel?\nBot:"
KEY = "sk-ant-secret-structured-0123"


@pytest.fixture(scope="module")
def peer():
    proc, url = start_llama_server()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, peer):
    remote = f'[[targets]]\nname = "remote"\ntype = "openai_compatible"\nmodel = "m"\nbase_url = "{peer}"\n'
    g = Gateway(tmp_path_factory.mktemp("gwso"), local_target() + remote + TOKENS,
                top="max_schema_bytes = 1024\n", env=ENV)
    yield g
    assert g.stop() == 0


def post(gw, path, body):
    return gw.post(path, body, token=SECRET)


def valid(text):
    v = json.loads(text)
    assert isinstance(v, dict) and set(v) == {"mood", "n"}, v
    assert v["mood"] in ("happy", "sad") and isinstance(v["n"], int) and not isinstance(v["n"], bool)


def rf(schema=SCHEMA):
    return {"type": "json_schema", "json_schema": {"name": "feeling", "schema": schema, "strict": True}}


@pytest.mark.parametrize("target", ["local", "remote"])
@pytest.mark.parametrize("seed_temp", [0.0, 1.0])
def test_openai_chat_response_format_json_schema(gw, target, seed_temp):
    st, _, b = post(gw, "/v1/chat/completions", {"model": target, "messages": MSGS, "max_tokens": 200,
                                                  "temperature": seed_temp, "response_format": rf()})
    assert st == 200, b
    assert b["choices"][0]["finish_reason"] == "stop"
    valid(b["choices"][0]["message"]["content"])


@pytest.mark.parametrize("target", ["local", "remote"])
def test_openai_completions_response_format(gw, target):
    st, _, b = post(gw, "/v1/completions", {"model": target, "prompt": PROMPT, "max_tokens": 200,
                                            "temperature": 1.0, "response_format": rf()})
    assert st == 200, b
    valid(b["choices"][0]["text"])


@pytest.mark.parametrize("target", ["local", "remote"])
def test_openai_json_object(gw, target):
    st, _, b = post(gw, "/v1/chat/completions", {"model": target, "messages": MSGS, "max_tokens": 200,
                                                  "temperature": 0, "response_format": {"type": "json_object"}})
    assert st == 200, b
    c = b["choices"][0]
    if c["finish_reason"] == "length":  # llama-server's any-object grammar lets a greedy model pad
        assert target == "remote" and c["message"]["content"].startswith("{"), c
    else:
        assert isinstance(json.loads(c["message"]["content"]), dict)


def test_sipp_profile_json_schema_finite_and_streamed(gw):
    st, _, b = post(gw, "/v1/query", {"model": "local", "prompt": PROMPT, "max_tokens": 200,
                                      "temperature": 1.0, "json_schema": SCHEMA})
    assert st == 200, b
    valid(b["text"])
    st, _, b = post(gw, "/v1/chat", {"model": "local", "messages": MSGS, "max_tokens": 200,
                                     "temperature": 0, "json_schema": SCHEMA})
    assert st == 200, b
    valid(b["text"])


def test_response_format_text_is_plain(gw):
    st, _, b = post(gw, "/v1/chat/completions", {"model": "local", "messages": MSGS, "max_tokens": 3,
                                                  "response_format": {"type": "text"}})
    assert st == 200, b


@pytest.mark.parametrize("path,extra,code", [
    ("/v1/chat/completions", {"response_format": rf({"type": "frobnicate"})}, "invalidrequest"),
    ("/v1/chat/completions", {"response_format": rf({"$ref": "https://example.com/s.json"})}, "invalidrequest"),
    ("/v1/completions", {"response_format": rf({"oneOf": 3})}, "invalidrequest"),
    ("/v1/chat/completions", {"response_format": {"type": "xml"}}, "invalidrequest"),
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "invalid_json"),
    ("/v1/chat/completions", {"response_format": "json"}, "invalid_json"),
    ("/v1/query", {"json_schema": "not an object"}, "invalid_json"),
    ("/v1/chat", {"json_schema": {"type": "frobnicate"}}, "invalidrequest"),
])
@pytest.mark.parametrize("target", ["local", "remote"])
def test_invalid_schema_is_400(gw, path, extra, code, target):
    if path.startswith("/v1/query") or path == "/v1/chat":
        base = {"messages": MSGS} if path == "/v1/chat" else {"prompt": PROMPT}
    else:
        base = {"messages": MSGS} if "chat" in path else {"prompt": PROMPT}
    st, _, b = post(gw, path, {"model": target, "max_tokens": 4, **base, **extra})
    assert (st, error_of(b)) == (400, code), b
    if "frobnicate" in json.dumps(extra):
        assert "unrecognized type frobnicate" in b["error"]["message"]


def test_max_schema_bytes(gw):
    big = {"type": "object", "properties": {f"field_{i}": {"type": "integer"} for i in range(60)}}
    for path, body in (("/v1/chat/completions", {"messages": MSGS, "response_format": rf(big)}),
                       ("/v1/query", {"prompt": PROMPT, "json_schema": big})):
        st, _, b = post(gw, path, {"model": "local", "max_tokens": 4, **body})
        assert (st, error_of(b)) == (400, "invalidrequest"), b
        assert "max_schema_bytes (1024)" in b["error"]["message"]


# ---- Anthropic: a forced tool, against the scripted server -----------------------------------

@pytest.fixture(scope="module")
def srv():
    s = FaultServer()
    yield s
    s.close()


def test_anthropic_schema_is_a_forced_tool(sipp, srv, tmp_path):
    f = tmp_path / "schema.json"
    f.write_text(json.dumps(SCHEMA))
    r = sipp("chat", "--provider", "anthropic", "--base-url", srv.url("schema_tool"), "--remote-model",
             "claude-test", "--json-schema-file", str(f), "--json", "hi", env={"ANTHROPIC_API_KEY": KEY},
             timeout=30)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["text"] == '{"mood": "happy", "n": 3}'
    valid(out["text"])
    assert out["finish_reason"] == "stop"
    body = srv.seen[-1]["body"]
    assert body["tools"] == [{"name": "json_output", "description": body["tools"][0]["description"],
                              "input_schema": SCHEMA}]
    assert body["tool_choice"] == {"type": "tool", "name": "json_output"}


def test_anthropic_non_object_schema_is_refused(sipp, srv, tmp_path):
    f = tmp_path / "schema.json"
    f.write_text(json.dumps({"type": "array", "items": {"type": "integer"}}))
    n = len(srv.seen)
    r = sipp("chat", "--provider", "anthropic", "--base-url", srv.url("schema_tool"), "--remote-model",
             "claude-test", "--json-schema-file", str(f), "hi", env={"ANTHROPIC_API_KEY": KEY}, timeout=30)
    assert r.returncode != 0 and "type" in r.stderr and "object" in r.stderr, r.stderr
    assert len(srv.seen) == n  # nothing was sent
