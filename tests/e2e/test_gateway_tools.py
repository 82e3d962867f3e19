"""Tools and reasoning through the gateway (issue 18; docs/tools.md, "Gateway (curl)"): the OpenAI
profile's `tools`, `tool_choice`, `parallel_tool_calls`, `tool` messages and assistant
`tool_calls`, answered with `message.tool_calls` / `finish_reason: tool_calls` and streamed as
`delta.tool_calls` (id and name first, argument pieces after), `reasoning_content` for a thinking
template; the Sipp profile's same fields; every bad-input case a 400 naming the field.

The models are random-weight GGUFs made by `sipp-make-model` with chat templates of real model
families read at test time from the pinned llama.cpp source (models/templates/*.jinja): Qwen 2.5
(Hermes-style <tool_call> JSON), Llama 3.1 (its JSON call format) and QwQ-32B (a Qwen template
whose generation prompt opens a <think> block, so what the model writes is reasoning).
`tool_choice: required` (or a named tool) makes llama.cpp's grammar force a well-formed call
even from random weights; greedy sampling makes the streamed and the finite answer the same."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from gateway_util import GATEWAY, Gateway, Stream, error_of, local_target

TEMPLATES = ("Qwen-Qwen2.5-7B-Instruct", "meta-llama-Llama-3.1-8B-Instruct", "Qwen-QwQ-32B")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather now, in a unit",
    "parameters": {"type": "object", "properties": {"unit": {"type": "string",
                   "enum": ["celsius", "fahrenheit"]}}, "required": ["unit"],
                   "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["utc"]}},
                   "required": ["zone"], "additionalProperties": False}}}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "What is the weather?"}]


def make_model(out_dir, template):
    """A random-weight GGUF (GPT-2's vocab, the smallest) carrying a real family's template."""
    src = os.environ.get("SIPP_LLAMA_SRC")
    if not src:
        pytest.fail("SIPP_LLAMA_SRC must point at the llama.cpp source (ctest sets it)")
    path = pathlib.Path(out_dir) / f"{template}.gguf"
    if not path.exists():
        r = subprocess.run([str(GATEWAY.parent / "sipp-make-model"), "--shape", "tiny-gpt2",
                            "--vocab-dir", f"{src}/models", "--chat-template",
                            f"{src}/models/templates/{template}.jinja", "--out", str(path)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    return path


def tool_targets(out_dir):
    return "".join(local_target(name, str(make_model(out_dir, t)), n_ctx=2048, n_parallel=1)
                   for name, t in zip(("qwen", "llama", "qwq"), TEMPLATES))


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    d = tmp_path_factory.mktemp("tools")
    g = Gateway(d, tool_targets(d), top="max_schema_bytes = 4096\n")
    yield g
    g.stop()


def chat(model="qwen", **kw):
    body = {"model": model, "messages": ASK, "tools": TOOLS, "tool_choice": "required",
            "parallel_tool_calls": False, "temperature": 0, "max_tokens": 400}
    body.update(kw)
    return {k: v for k, v in body.items() if v is not None}


def check_call(call, name=None):
    assert call["type"] == "function" and call["id"], call
    fn = call["function"]
    assert fn["name"] in ("get_weather", "get_time") and (name is None or fn["name"] == name)
    args = json.loads(fn["arguments"])  # JSON text of an object, as OpenAI sends it
    assert isinstance(args, dict)
    assert args in ({"unit": "celsius"}, {"unit": "fahrenheit"}, {"zone": "utc"}), args
    return fn


def openai_stream(gw, body):
    """The chunks of a streamed chat, rebuilt as the OpenAI SDKs' accumulators do."""
    s = Stream(gw, "/v1/chat/completions", dict(body, stream=True))
    assert s.status == 200, s.r.read()
    content, reasoning, calls, finish, order = "", "", [], None, []
    for _, data, comment in s.frames():
        if comment or data == "[DONE]":
            continue
        chunk = json.loads(data)
        assert "error" not in chunk, chunk
        assert chunk["object"] == "chat.completion.chunk"
        for ch in chunk["choices"]:
            d = ch["delta"]
            content += d.get("content") or ""
            reasoning += d.get("reasoning_content") or ""
            for tc in d.get("tool_calls") or []:
                i = tc["index"]
                if i == len(calls):  # a new call: its first chunk has id, type and name
                    assert tc["id"] and tc["type"] == "function" and tc["function"]["name"], tc
                    calls.append({"id": tc["id"], "type": "function",
                                  "function": {"name": tc["function"]["name"], "arguments": ""}})
                    order.append("open")
                else:
                    assert i == len(calls) - 1 and "id" not in tc and "name" not in tc["function"]
                    order.append("args")
                calls[i]["function"]["arguments"] += tc["function"].get("arguments", "")
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
    s.close()
    return content, reasoning, calls, finish, order


@pytest.mark.parametrize("model", ["qwen", "llama"])
def test_forced_call_then_round_trip(gw, model):
    """tool_choice required: one well-formed call, content null, finish tool_calls; the call and
    its result go back (assistant tool_calls with content null, a `tool` message) and the model
    answers in text."""
    st, _, b = gw.post("/v1/chat/completions", chat(model))
    assert st == 200, b
    ch = b["choices"][0]
    assert ch["finish_reason"] == "tool_calls", b
    m = ch["message"]
    assert m["role"] == "assistant" and m["content"] is None and len(m["tool_calls"]) == 1, m
    check_call(m["tool_calls"][0])

    msgs = ASK + [{"role": "assistant", "content": None, "tool_calls": m["tool_calls"]},
                  {"role": "tool", "tool_call_id": m["tool_calls"][0]["id"],
                   "content": '{"temperature": 21}'}]
    st, _, b2 = gw.post("/v1/chat/completions", chat(model, messages=msgs, tool_choice="none",
                                                     max_tokens=4))
    assert st == 200, b2
    ch2 = b2["choices"][0]
    assert ch2["finish_reason"] in ("stop", "length") and "tool_calls" not in ch2["message"], b2
    assert isinstance(ch2["message"]["content"], str)


def test_named_tool_choice(gw):
    st, _, b = gw.post("/v1/chat/completions", chat("llama", tool_choice={
        "type": "function", "function": {"name": "get_time"}}))
    assert st == 200, b
    check_call(b["choices"][0]["message"]["tool_calls"][0], "get_time")


def test_stream_tool_call_deltas_match_the_answer(gw):
    """The stream's delta.tool_calls: the call opens with index, id, type and name, then its
    arguments in pieces that concatenate to the finite answer's; finish_reason tool_calls."""
    st, _, b = gw.post("/v1/chat/completions", chat("qwen"))
    assert st == 200, b
    content, reasoning, calls, finish, order = openai_stream(gw, chat("qwen"))
    assert finish == "tool_calls"
    assert order[0] == "open" and order.count("open") == 1 and "args" in order, order
    want = b["choices"][0]["message"]["tool_calls"]
    assert [c["function"] for c in calls] == [c["function"] for c in want]
    check_call(calls[0])
    assert content == "" and reasoning == ""


def test_reasoning_content_separated_and_streamed(gw):
    """A thinking template (QwQ: the generation prompt opens <think>): what the model writes is
    reasoning, answered in message.reasoning_content, not in content, and streamed as
    delta.reasoning_content. Sampled (greedy decoding of these weights writes only newlines,
    which the parser trims), so the stream is checked on its own terms."""
    body = {"model": "qwq", "messages": ASK, "temperature": 1, "max_tokens": 12}
    st, _, b = gw.post("/v1/chat/completions", body)
    assert st == 200, b
    m = b["choices"][0]["message"]
    assert m.get("reasoning_content", "").strip(), m
    assert "<think>" not in m["reasoning_content"] and m["content"] == "", m
    content, reasoning, calls, finish, _ = openai_stream(gw, body)
    assert reasoning.strip() and "<think>" not in reasoning
    assert (content, calls, finish) == ("", [], "length")
    st, _, b = gw.post("/v1/chat", body)  # the Sipp profile: `reasoning`
    assert st == 200 and b["reasoning"].strip() and b["text"] == "", b


def test_reasoning_format_inline_and_drop(gw):
    """llama-server's reasoning_format (OpenAI profile) and the Sipp profile's reasoning_mode:
    inline leaves the thinking in the text, drop discards it; an unknown value is a 400."""
    body = {"model": "qwq", "messages": ASK, "temperature": 1, "max_tokens": 12}
    st, _, b = gw.post("/v1/chat/completions", dict(body, reasoning_format="none"))
    assert st == 200, b
    m = b["choices"][0]["message"]
    assert m["content"].strip() and "reasoning_content" not in m, m
    content, reasoning, _, _, _ = openai_stream(gw, dict(body, reasoning_format="none"))
    assert content.strip() and reasoning == ""
    st, _, b = gw.post("/v1/chat/completions", dict(body, reasoning_format="drop"))
    m = b["choices"][0]["message"]
    assert st == 200 and m["content"] == "" and "reasoning_content" not in m, b
    st, _, b = gw.post("/v1/chat", dict(body, reasoning_mode="inline"))
    assert st == 200 and b["text"].strip() and "reasoning" not in b, b
    st, _, b = gw.post("/v1/chat", dict(body, reasoning_mode="drop"))
    assert st == 200 and b["text"] == "" and "reasoning" not in b, b
    for path, key in (("/v1/chat/completions", "reasoning_format"), ("/v1/chat", "reasoning_mode")):
        st, _, b = gw.post(path, dict(body, **{key: "loud"}))
        assert st == 400 and error_of(b) == "invalidrequest" and key in b["error"]["message"], b


def test_sipp_profile_tools(gw):
    """/v1/chat takes the same fields; the answer has tool_calls [{id, name, arguments}] with
    arguments as an object, the stream `tool_call` events; a flat tool and a flat call (arguments
    an object) go back in the round trip."""
    body = {"model": "qwen", "messages": ASK, "tools": TOOLS, "tool_choice": "required",
            "parallel_tool_calls": False, "temperature": 0, "max_tokens": 400}
    st, _, b = gw.post("/v1/chat", body)
    assert st == 200, b
    assert b["finish_reason"] == "tool_calls" and len(b["tool_calls"]) == 1, b
    call = b["tool_calls"][0]
    assert call["id"] and call["name"] in ("get_weather", "get_time")
    assert isinstance(call["arguments"], dict)

    s = Stream(gw, "/v1/chat", dict(body, stream=True))
    events = [(e, json.loads(d)) for e, d, c in s.frames() if not c]
    s.close()
    tc = [d for e, d in events if e == "tool_call"]
    # ids are made up per answer (Qwen's format has none): each stream has its own
    assert tc[0]["id"] and tc[0]["name"] == call["name"] and tc[0]["index"] == 0
    assert all("id" not in d and "name" not in d for d in tc[1:])
    assert json.loads("".join(d["arguments"] for d in tc)) == call["arguments"]
    assert events[-1] == ("done", {"finish_reason": "tool_calls"})

    flat = [t["function"] for t in TOOLS]
    msgs = ASK + [{"role": "assistant", "tool_calls": [call]},
                  {"role": "tool", "tool_call_id": call["id"], "content": "21"}]
    st, _, b2 = gw.post("/v1/chat", {"model": "qwen", "messages": msgs, "tools": flat,
                                     "tool_choice": "none", "max_tokens": 4})
    assert st == 200 and "tool_calls" not in b2, b2


def err(gw, body, path="/v1/chat/completions"):
    st, _, b = gw.post(path, body)
    assert st == 400, b
    return b["error"]


BAD = [
    # (what, body changes, the param named)
    ("tools not an array", {"tools": {"a": 1}}, "tools"),
    ("a tool not of type function", {"tools": [{"type": "code", "function": {"name": "x"}}]},
     "tools[0]"),
    ("a bad tool name", {"tools": [{"type": "function", "function": {"name": "a b"}}]},
     "tools[0].function.name"),
    ("a schema that is not an object", {"tools": [{"type": "function", "function": {
        "name": "x", "parameters": "[1]"}}]}, "tools[0].function.parameters"),
    ("a schema that is not an object schema", {"tools": [{"type": "function", "function": {
        "name": "x", "parameters": {"type": "array"}}}]}, "tools[0].function.parameters"),
    ("properties not an object", {"tools": [{"type": "function", "function": {
        "name": "x", "parameters": {"type": "object", "properties": [1]}}}]},
     "tools[0].function.parameters"),
    ("duplicate tool names", {"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ("tool_choice naming no tool", {"tool_choice": {"type": "function",
                                                    "function": {"name": "nope"}}}, "tool_choice"),
    ("an unknown tool_choice", {"tool_choice": "sometimes"}, "tool_choice"),
    ("required without tools", {"tools": None}, "tool_choice"),
    ("parallel_tool_calls not a boolean", {"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ("a tool result for an unknown call id", {"messages": ASK + [
        {"role": "tool", "tool_call_id": "nope", "content": "1"}]}, "messages[1].tool_call_id"),
    ("a tool result without its call id", {"messages": ASK + [
        {"role": "tool", "content": "1"}]}, "messages[1].tool_call_id"),
    ("call arguments that are not JSON", {"messages": ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_time",
                                                          "arguments": "{not json"}}]}]},
     "messages[1].tool_calls[0]"),
    ("more tools than the cap", {"tools": [
        {"type": "function", "function": {"name": f"t{i}"}} for i in range(129)]}, "tools"),
    ("more schema bytes than max_schema_bytes", {"tools": [
        {"type": "function", "function": {"name": f"t{i}", "parameters": {
            "type": "object", "description": "x" * 1000}}} for i in range(5)]}, "tools"),
]


@pytest.mark.parametrize("what,change,param", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_400_naming_the_field(gw, what, change, param):
    e = err(gw, chat("qwen", **change))
    assert e["param"] == param, e
    assert e["type"] == "invalid_request_error" and e["code"] in ("invalid_json", "invalidrequest")
    assert e["message"]
    # nothing else disturbed: the next good request is answered
    st, _, b = gw.post("/v1/chat/completions", chat("qwen", max_tokens=400))
    assert st == 200 and b["choices"][0]["finish_reason"] == "tool_calls", b


def test_sipp_profile_bad_input(gw):
    st, _, b = gw.post("/v1/chat", {"model": "qwen", "messages": ASK, "tools": [WEATHER, WEATHER]})
    assert st == 400 and error_of(b) == "invalidrequest", b
    assert "get_weather" in b["error"]["message"]


def test_template_without_tools_is_unsupported(tmp_path):
    """The tiny chat model's template has no tool support: `tools` is refused by name."""
    g = Gateway(tmp_path, local_target())
    try:
        st, _, b = g.post("/v1/chat/completions", {"model": "local", "messages": ASK,
                                                   "tools": TOOLS, "max_tokens": 4})
        assert st == 400 and b["error"]["code"] == "invalidrequest", b
        assert "tools" in b["error"]["message"] and "no tool support" in b["error"]["message"]
    finally:
        g.stop()


def test_openai_node_sdk_tool_helper_and_stream_accumulator(gw):
    """The OpenAI Node SDK, unchanged (the version of scripts/deps.env, installed as
    test_gateway_sdk.py does): runTools (finite and streaming) calls the function with the
    parsed arguments and keeps the turn; its messages go back for the answer; the streaming
    accumulator rebuilds the call from delta.tool_calls."""
    import shutil
    from test_gateway_sdk import sdk_dir
    d = sdk_dir()
    script = d / "gateway_tools_sdk.mjs"  # next to node_modules so `import "openai"` resolves
    shutil.copy(pathlib.Path(__file__).with_name("gateway_tools_sdk.mjs"), script)
    r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "GW_URL": f"http://127.0.0.1:{gw.port}/v1",
                            "GW_MODEL": "qwen"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["calls"] == [{"zone": "utc"}] * 2  # once per runTools
    for run in (out["run"], out["stream_run"]):
        assert json.loads(run["result"]) == {"time": "12:00", "zone": "utc"}
        assert run["call"]["function"]["name"] == "get_time" and run["call"]["id"]
    assert out["run"]["roles"] == ["user", "assistant", "tool"]
    assert out["answer"]["finish"] in ("stop", "length") and out["answer"]["tool_calls"] is None
    acc = out["accumulated"]
    assert acc["finish"] == "tool_calls", acc
    (call,) = acc["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"] and call["function"]["name"] == "get_time"
    assert json.loads(call["function"]["arguments"]) == {"zone": "utc"}
    assert acc["args_done"] == [call["function"]["arguments"]]


# ---- Anthropic Messages (/v1/messages): tools, tool_use and tool_result blocks ----------------

A_TOOLS = [{"name": t["function"]["name"], "description": t["function"]["description"],
            "input_schema": t["function"]["parameters"]} for t in TOOLS]


def messages_body(**kw):
    body = {"model": "qwen", "max_tokens": 400, "temperature": 0, "messages": ASK,
            "tools": A_TOOLS, "tool_choice": {"type": "any", "disable_parallel_tool_use": True}}
    body.update(kw)
    return {k: v for k, v in body.items() if v is not None}


def test_anthropic_tool_use_round_trip(gw):
    """tool_choice any: the answer is a tool_use block (input an object), stop_reason tool_use;
    the block goes back in the assistant turn and a tool_result block in the user turn, and the
    model answers in text."""
    st, _, b = gw.post("/v1/messages", messages_body())
    assert st == 200, b
    assert b["stop_reason"] == "tool_use", b
    (use,) = [c for c in b["content"] if c["type"] == "tool_use"]
    assert use["id"] and use["name"] in ("get_weather", "get_time")
    assert use["input"] in ({"unit": "celsius"}, {"unit": "fahrenheit"}, {"zone": "utc"})
    msgs = ASK + [{"role": "assistant", "content": b["content"]},
                  {"role": "user", "content": [
                      {"type": "tool_result", "tool_use_id": use["id"], "content": "21"},
                      {"type": "text", "text": "Thanks"}]}]
    st, _, b2 = gw.post("/v1/messages", messages_body(messages=msgs, tool_choice={"type": "none"},
                                                      max_tokens=4))
    assert st == 200, b2
    assert b2["stop_reason"] in ("end_turn", "max_tokens")
    assert [c["type"] for c in b2["content"]] == ["text"]


def test_anthropic_named_tool_streams_input_json_deltas(gw):
    """A named tool streams as a tool_use block: content_block_start carries its id and name,
    input_json_delta pieces concatenate to the finite answer's input."""
    body = messages_body(model="llama", tool_choice={"type": "tool", "name": "get_time"})
    st, _, b = gw.post("/v1/messages", body)
    assert st == 200, b
    (use,) = [c for c in b["content"] if c["type"] == "tool_use"]
    assert use["name"] == "get_time" and use["input"] == {"zone": "utc"}
    s = Stream(gw, "/v1/messages", dict(body, stream=True))
    frames = [(e, json.loads(d)) for e, d, c in s.frames() if c is None]
    s.close()
    assert all(d["type"] == e for e, d in frames)
    starts = [d for e, d in frames if e == "content_block_start"]
    tool_blocks = [d for d in starts if d["content_block"]["type"] == "tool_use"]
    assert len(tool_blocks) == 1, starts
    blk = tool_blocks[0]
    assert blk["content_block"]["name"] == "get_time" and blk["content_block"]["id"]
    assert blk["content_block"]["input"] == {}
    pieces = [d["delta"]["partial_json"] for e, d in frames
              if e == "content_block_delta" and d["index"] == blk["index"]]
    assert pieces and json.loads("".join(pieces)) == use["input"]
    assert all(d["delta"]["type"] == "input_json_delta" for e, d in frames
               if e == "content_block_delta" and d["index"] == blk["index"])
    # every started block stops, in order, before message_delta
    stops = [d["index"] for e, d in frames if e == "content_block_stop"]
    assert stops == [d["index"] for d in starts] == list(range(len(starts)))
    end = [d for e, d in frames if e == "message_delta"][0]
    assert end["delta"]["stop_reason"] == "tool_use" and frames[-1][0] == "message_stop"


@pytest.mark.parametrize("change,needle", [
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tools"),
    ({"tools": [A_TOOLS[0], A_TOOLS[0]]}, "both named 'get_weather'"),
    ({"tools": [{"name": "x", "input_schema": {"type": "string"}}]}, "tools[0].input_schema"),
    ({"tool_choice": {"type": "tool", "name": "nope"}}, "names 'nope'"),
    ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"messages": ASK + [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "nope", "content": "1"}]}]}, "'nope'"),
    ({"messages": ASK + [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "get_time"}]}]}, "'input' object"),
    ({"messages": [{"role": "user", "content": [
        {"type": "tool_use", "id": "t1", "name": "get_time", "input": {}}]}]},
     "'tool_use' are not supported in a user message"),
])
def test_anthropic_bad_tools_are_400(gw, change, needle):
    st, _, b = gw.post("/v1/messages", messages_body(**change))
    assert st == 400 and b["type"] == "error", b
    assert b["error"]["type"] == "invalid_request_error" and needle in b["error"]["message"], b


def test_anthropic_node_sdk_tools(gw):
    """The Anthropic Node SDK, unchanged (the version of scripts/deps.env, installed as
    test_gateway_anthropic.py does): a named tool's tool_use block, the round trip with a
    tool_result, and messages.stream() assembling the tool_use input from input_json_delta."""
    import shutil
    from test_gateway_anthropic import sdk_dir
    d = sdk_dir()
    script = d / "gateway_tools_anthropic_sdk.mjs"  # next to node_modules
    shutil.copy(pathlib.Path(__file__).with_name("gateway_tools_anthropic_sdk.mjs"), script)
    r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "GW_URL": f"http://127.0.0.1:{gw.port}",
                            "GW_MODEL": "llama"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    m = out["message"]
    assert m["stop_reason"] == "tool_use", m
    (use,) = [b for b in m["content"] if b["type"] == "tool_use"]
    assert use["name"] == "get_time" and use["input"] == {"zone": "utc"} and use["id"]
    assert out["answer"]["stop_reason"] in ("end_turn", "max_tokens")
    assert out["answer"]["types"] == ["text"]
    s = out["stream"]
    assert s["stop_reason"] == "tool_use" and s["pieces"] >= 1
    (suse,) = [b for b in s["content"] if b["type"] == "tool_use"]
    assert suse["name"] == "get_time" and suse["input"] == {"zone": "utc"}
    assert json.loads(s["joined"]) == {"zone": "utc"}


# ---- a Sipp gateway endpoint: libsipp as the gateway's client (through the Python binding) ----

@pytest.fixture(scope="module")
def sipp_py():
    """The Python binding over this build's libsipp (ctypes: nothing to compile), loaded into
    this process. An ASan build of libsipp (scripts/test's build-asan) cannot load into an
    uninstrumented python without the ASan runtime preloaded, which would abort the whole
    pytest process: there these tests are skipped, and the client side they drive is checked
    under ASan by api_remote_tools (gateway_tools_out_and_calls_in and the round trip)."""
    lib = GATEWAY.parent.parent / "lib" / "libsipp.so"
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    if "libasan" in ldd or "libtsan" in ldd:
        pytest.skip("libsipp is a sanitizer build; api_remote_tools covers this path there")
    saved = os.environ.get("SIPP_LIBRARY")
    os.environ["SIPP_LIBRARY"] = str(lib)  # read once, when the binding loads the library
    sys.path.insert(0, str(pathlib.Path(__file__).parents[2] / "bindings" / "python"))
    try:
        import sipp
    finally:
        sys.path.pop(0)
        if saved is None:
            del os.environ["SIPP_LIBRARY"]
        else:
            os.environ["SIPP_LIBRARY"] = saved
    return sipp


def gw_endpoint(client, gw, target):
    return client.add_gateway(target, base_url=f"http://127.0.0.1:{gw.port}", target=target,
                              auth="none", allow_private_network=True)


@pytest.mark.parametrize("model,choice", [("qwen", "required"), ("llama", "get_time")])
def test_gateway_endpoint_tool_call_deltas_and_round_trip(gw, sipp_py, model, choice):
    """A gateway endpoint sends the tools in the Sipp profile's shape and reads its `tool_call`
    events into the same response and deltas a local chat gives: one forced call with an id, the
    tool's name and JSON arguments; its first delta carries id and name, the pieces after it
    add up to the arguments; then the call and its result go back and the model answers."""
    sipp = sipp_py
    with sipp.Client() as client:
        ep = gw_endpoint(client, gw, model)
        opts = dict(tools=TOOLS, tool_choice=choice, parallel_tool_calls=False, temperature=0,
                    max_tokens=400)
        with ep.chat(ASK, **opts) as run:
            deltas = list(run.deltas())
            r = run.result()
        assert r.finish_reason == "tool_calls" and len(r.tool_calls) == 1, r
        call = r.tool_calls[0]
        assert call.id and call.name in ("get_weather", "get_time"), call
        assert choice == "required" or call.name == choice
        args = json.loads(call.arguments)
        assert args in ({"unit": "celsius"}, {"unit": "fahrenheit"}, {"zone": "utc"}), args
        assert r.text == "" and all(d.kind == "tool_call" for d in deltas), deltas
        assert (deltas[0].tool_id, deltas[0].tool_name) == (call.id, call.name)
        assert all(d.tool_id is None and d.tool_name is None and d.tool_index == 0
                   for d in deltas[1:]), deltas
        assert len(deltas) > 1 and "".join(d.text for d in deltas) == call.arguments

        # the same call as the gateway answers it to a plain HTTP client (greedy decoding)
        st, _, b = gw.post("/v1/chat", chat(model, tools=[t["function"] for t in TOOLS],
                                            tool_choice=choice if choice == "required"
                                            else {"name": choice}))
        assert st == 200 and b["tool_calls"][0]["name"] == call.name, b
        assert b["tool_calls"][0]["arguments"] == args

        msgs = ASK + [r.message(), sipp.tool_result(call, '{"temperature": 21}')]
        with ep.chat(msgs, tools=TOOLS, tool_choice="none", max_tokens=4) as run:
            r2 = run.result()
        assert r2.finish_reason in ("stop", "length") and not r2.tool_calls, r2


def test_gateway_endpoint_reasoning_separated(gw, sipp_py):
    """A thinking template (QwQ) behind the gateway: the reasoning comes back separated
    (response.reasoning, `reasoning` deltas), kept inline or dropped as the endpoint asks."""
    sipp = sipp_py
    with sipp.Client() as client:
        ep = gw_endpoint(client, gw, "qwq")
        with ep.chat(ASK, temperature=1, max_tokens=12) as run:
            deltas = list(run.deltas())
            r = run.result()
        assert r.reasoning.strip() and "<think>" not in r.reasoning and r.text == "", r
        assert deltas and all(d.kind == "reasoning" for d in deltas), deltas
        assert "".join(d.text for d in deltas) == r.reasoning
        with ep.chat(ASK, temperature=1, max_tokens=12, reasoning="inline") as run:
            r = run.result()
        assert r.text.strip() and r.reasoning == "", r
        with ep.chat(ASK, temperature=1, max_tokens=12, reasoning="drop") as run:
            r = run.result()
        assert r.text == "" and r.reasoning == "", r


# ---- reasoning budget ---------------------------------------------------------------------------

@pytest.mark.parametrize("path,extra", [
    ("/v1/chat/completions", {"reasoning_budget": 0}),
    ("/v1/chat/completions", {"chat_template_kwargs": {"enable_thinking": False}}),
    ("/v1/chat", {"reasoning_budget": 0}),
])
def test_reasoning_budget_zero_closes_the_thinking(gw, path, extra):
    """QwQ's generation prompt opens <think>: unlimited, random weights write only reasoning;
    with budget 0 (or llama-server's enable_thinking false) llama.cpp's reasoning-budget sampler
    closes the block at once and what follows is the answer's text."""
    body = {"model": "qwq", "messages": ASK, "temperature": 1, "max_tokens": 12}
    st, _, b = gw.post(path, dict(body, **extra))
    assert st == 200, b
    if path == "/v1/chat":
        assert b["text"].strip() and "reasoning" not in b and "</think>" not in b["text"], b
    else:
        m = b["choices"][0]["message"]
        assert m["content"].strip() and not m.get("reasoning_content"), m
        assert "</think>" not in m["content"]


@pytest.mark.parametrize("path,extra,code", [
    ("/v1/chat", {"reasoning_budget": -2}, "invalidrequest"),
    ("/v1/chat", {"reasoning_budget": "none"}, "invalid_json"),
    ("/v1/chat/completions", {"chat_template_kwargs": {"foo": 1}}, "invalidrequest"),
    ("/v1/chat/completions", {"chat_template_kwargs": {"enable_thinking": "no"}}, "invalid_json"),
])
def test_reasoning_budget_bad_input(gw, path, extra, code):
    st, _, b = gw.post(path, dict({"model": "qwq", "messages": ASK, "max_tokens": 4}, **extra))
    assert st == 400 and error_of(b) == code, b
    assert list(extra)[0] in json.dumps(b), b


def test_gateway_endpoint_reasoning_budget(gw, sipp_py):
    """A gateway endpoint passes reasoning_budget on: 0 closes QwQ's thinking behind the
    gateway; N > 0 on a template without a reasoning block (Qwen 2.5) is unsupported there."""
    sipp = sipp_py
    with sipp.Client() as client:
        ep = gw_endpoint(client, gw, "qwq")
        with ep.chat(ASK, temperature=1, max_tokens=12, reasoning_budget=0) as run:
            r = run.result()
        assert r.text.strip() and r.reasoning == "", r
        ep = gw_endpoint(client, gw, "qwen")
        with pytest.raises(sipp.SippError) as e:
            with ep.chat(ASK, max_tokens=4, reasoning_budget=5) as run:
                run.result()
        assert "reasoning_budget" in str(e.value)
