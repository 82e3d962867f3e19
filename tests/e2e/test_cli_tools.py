"""`sipp chat --tool-file FILE` (issue 18; docs/cli.md): a JSON array of OpenAI-style tool
definitions offered to the model; the answer's calls printed one a line (`tool call
NAME(ARGUMENTS) id=ID`) or as `tool_calls` with --json. The model is a random-weight GGUF with
Qwen 2.5's template (from the pinned llama.cpp source, as test_gateway_tools.py makes it): a
required or named tool choice makes the grammar force a well-formed call."""
import json
import re

import pytest

from test_gateway_tools import TOOLS, make_model


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("cli-tools"), "Qwen-Qwen2.5-7B-Instruct")


@pytest.fixture
def tool_file(tmp_path):
    p = tmp_path / "tools.json"
    p.write_text(json.dumps(TOOLS))
    return p


def args(qwen, tool_file, *more):
    return ("chat", "-m", str(qwen), "--ctx-size", "2048", "--temperature", "0", "-n", "400",
            "--tool-file", str(tool_file), *more, "What is the weather?")


def test_tool_file_prints_the_forced_call(sipp, qwen, tool_file):
    r = sipp(*args(qwen, tool_file, "--tool-choice", "get_time"))
    assert r.returncode == 0, r.stderr
    calls = re.findall(r"^tool call (\w+)\((.*)\) id=(\w+)$", r.stdout, re.M)
    assert len(calls) == 1, r.stdout
    name, arguments, call_id = calls[0]
    assert name == "get_time" and json.loads(arguments) == {"zone": "utc"} and call_id


def test_tool_file_json_output(sipp, qwen, tool_file):
    r = sipp(*args(qwen, tool_file, "--tool-choice", "required", "--no-parallel-tool-calls",
                   "--json"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["finish_reason"] == "tool_calls", out
    (call,) = out["tool_calls"]
    assert call["name"] in ("get_weather", "get_time") and call["id"]
    assert isinstance(json.loads(call["arguments"]), dict)


@pytest.mark.parametrize("content,needle", [
    ("{not json", "is not valid JSON"),
    ('{"name": "x"}', "non-empty JSON array"),
    ('[{"type": "function", "function": {"name": 3}}]', "tool 0 must be"),
    ('[{"type": "function", "function": {"name": "x", "parameters": {"type": "array"}}}]',
     "tools[0].parameters"),
])
def test_bad_tool_file_is_an_error(sipp, qwen, tmp_path, content, needle):
    p = tmp_path / "bad.json"
    p.write_text(content)
    r = sipp(*args(qwen, p))
    assert r.returncode != 0 and r.stdout == ""
    assert needle in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_json_has_the_separated_reasoning(sipp, tmp_path):
    """A thinking template (QwQ's generation prompt opens <think>): --json has `reasoning`, the
    text does not (sampled: greedy decoding of these weights writes only newlines)."""
    qwq = make_model(tmp_path, "Qwen-QwQ-32B")
    r = sipp("chat", "-m", str(qwq), "--ctx-size", "512", "-n", "12", "--json", "Hi")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["reasoning"].strip() and "<think>" not in out["reasoning"] and out["text"] == ""


def test_reasoning_budget_flag_cuts_the_reasoning(sipp, tmp_path):
    """--reasoning-budget N (docs/cli.md, docs/tools.md "Reasoning budget"): on QwQ's template
    (its generation prompt opens <think>) with one seed, the unlimited run is all reasoning; a
    budget of 2 tokens cuts the same reasoning short and the rest is text; 0 leaves none. (Qwen3's
    template opens no block, so these random weights write no reasoning there to cut.)"""
    qwq = make_model(tmp_path, "Qwen-QwQ-32B")

    def run(*budget):
        r = sipp("chat", "-m", str(qwq), "--ctx-size", "512", "-n", "16", "--temperature", "1",
                 "--seed", "7", *budget, "--json", "What is the weather?")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        return out.get("reasoning", ""), out["text"]

    unlimited, text = run()
    assert unlimited.strip() and text == ""
    assert run("--reasoning-budget", "-1") == (unlimited, text)
    cut, text = run("--reasoning-budget", "2")
    assert len(cut) < len(unlimited) and unlimited.startswith(cut) and text, (cut, text)
    none, text = run("--reasoning-budget", "0")
    assert none == "" and text


def test_bad_reasoning_budget_is_an_error(sipp, qwen):
    r = sipp("chat", "-m", str(qwen), "--reasoning-budget", "-2", "Hi")
    assert r.returncode == 2 and r.stdout == ""
    assert "--reasoning-budget expects an integer in [-1, 2147483647], got '-2'" in r.stderr, \
        r.stderr


def test_tool_options_are_for_chat_with_a_file(sipp, qwen, tool_file):
    r = sipp("query", "-m", str(qwen), "--tool-file", str(tool_file), "Once")
    assert r.returncode == 2 and "--tool-file and --tool-choice are for chat" in r.stderr
    r = sipp("chat", "-m", str(qwen), "--tool-choice", "required", "Hi")
    assert r.returncode == 2 and "need --tool-file" in r.stderr
    r = sipp(*args(qwen, tool_file, "--tool-choice", "nope"))
    assert r.returncode == 1 and "nope" in r.stderr, r.stderr
