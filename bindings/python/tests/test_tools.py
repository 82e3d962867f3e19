"""Tools, tool calls, results and deltas in the Python binding (issue 18), against the scripted
OpenAI-shaped peer (tests/e2e/fault_server.py): its "tools" scenario answers with reasoning,
text and two calls, and with the final text once the results come back."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

import sipp

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from fault_server import FaultServer  # noqa: E402

WEATHER = sipp.Tool("get_weather", "The weather now, in a unit",
                    {"type": "object", "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}},
                     "required": ["unit"]})
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time",
                                         "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def srv():
    s = FaultServer()
    yield s
    s.close()


@pytest.fixture
def ep(srv):
    with sipp.Client() as c:
        yield c.add_provider("tools", kind="openai_compatible", model="m",
                             base_url=srv.url("tools"), allow_private_network=True)


def test_calls_reasoning_and_deltas(ep, srv):
    with ep.chat("Weather and time?", tools=[WEATHER, TIME], tool_choice="required") as run:
        deltas = list(run.deltas())
        r = run.result()
    assert r.finish_reason == "tool_calls"
    assert r.text == "Checking." and r.reasoning == "Let me think"
    assert r.tool_calls == (sipp.ToolCall("call_a", "get_weather", '{"unit": "celsius"}'),
                            sipp.ToolCall("call_b", "get_time", '{"zone": "utc"}'))
    assert r.tool_calls[0].args == {"unit": "celsius"}
    assert [d.kind for d in deltas[:2]] == ["reasoning", "content"]
    calls = [d for d in deltas if d.kind == "tool_call"]
    assert (calls[0].tool_index, calls[0].tool_id, calls[0].tool_name) == (0, "call_a", "get_weather")
    assert all(d.tool_name is None for d in calls[1:3])  # pieces after the name
    assert "".join(d.text for d in calls if d.tool_index == 0) == '{"unit": "celsius"}'
    body = srv.seen[-1]["body"]
    assert body["tool_choice"] == "required"
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tools"][0]["function"]["parameters"] == WEATHER.parameters


def test_round_trip_named_choice_and_reasoning_modes(ep, srv):
    with ep.chat("Weather?", tools=[WEATHER, TIME], reasoning="inline") as run:
        r = run.result()
    assert r.text == "<think>Let me think</think>Checking." and r.reasoning == ""
    messages = [{"role": "user", "content": "Weather?"}, r.message()]
    messages += [sipp.tool_result(c, "21 C") for c in r.tool_calls]
    with ep.chat(messages, tools=[WEATHER, TIME], tool_choice="get_time",
                 parallel_tool_calls=False) as run:
        final = run.result()
    assert final.finish_reason == "stop" and final.text == "It is 21 C." and final.tool_calls == ()
    body = srv.seen[-1]["body"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert body["parallel_tool_calls"] is False
    assert body["messages"][1]["tool_calls"][0] == {
        "id": "call_a", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"unit": "celsius"}'}}
    assert body["messages"][2] == {"role": "tool", "content": "21 C", "tool_call_id": "call_a"}


def test_bad_tools_are_invalid_argument(ep):
    with pytest.raises(sipp.InvalidArgumentError, match="tool_choice"):
        ep.chat("x", tools=[WEATHER], tool_choice="nope")
    with pytest.raises(sipp.InvalidArgumentError, match="parameters"):
        ep.chat("x", tools=[sipp.Tool("t", "", "[1, 2]")])
    with pytest.raises(sipp.InvalidArgumentError):
        ep.chat([{"role": "user", "content": "x"}, sipp.tool_result("unknown", "r")], tools=[WEATHER])
    with pytest.raises(sipp.InvalidArgumentError, match="reasoning"):
        ep.chat("x", reasoning="loud")


def test_agent_loop_example_runs(srv):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"),
               SIPP_REMOTE_URL=srv.url("tools"))
    r = subprocess.run([sys.executable, str(ROOT / "bindings/python/examples/agent_loop.py")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "[get_weather({\"unit\": \"celsius\"}) -> 21 C]" in r.stdout
    assert "[get_time({\"zone\": \"utc\"}) -> 12:00]" in r.stdout
    assert r.stdout.rstrip().endswith("It is 21 C.\n[answer after 1 tool round(s)]".rstrip()), r.stdout
    last = srv.seen[-1]["body"]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "tool", "tool"]
    assert json.loads(last[1]["tool_calls"][1]["function"]["arguments"]) == {"zone": "utc"}
