"""The `sipp` CLI end to end: streamed answers, --json shapes, env vars, errors, help."""
import json
import math

import pytest

from conftest import CHAT_MODEL, STORY_MODEL


def test_chat_json_has_text_finish_reason_usage_stats_and_request_id(sipp):
    r = sipp("chat", "--json", "--temperature", "0", "-m", str(CHAT_MODEL), "Do you like to play outside?")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"text", "finish_reason", "usage", "stats", "request_id"}
    assert out["request_id"] == ""  # local runs have no remote request id
    assert out["text"].strip()
    assert out["finish_reason"] in ("stop", "length")
    u = out["usage"]
    assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
    assert u["input_tokens"] > 0 and u["output_tokens"] > 0
    assert out["stats"]["ttft_ms"] > 0


def test_chat_streams_the_same_text_as_json(sipp):
    args = ["--temperature", "0", "-m", str(CHAT_MODEL), "Do you like to play outside?"]
    streamed = sipp("chat", *args)
    as_json = sipp("chat", "--json", *args)
    assert streamed.returncode == 0 and as_json.returncode == 0
    assert streamed.stdout == json.loads(as_json.stdout)["text"] + "\n"


def test_default_model_comes_from_the_models_dir(sipp):
    # No --model: chat picks the first model that has a chat template.
    r = sipp("chat", "--json", "--temperature", "0", "-n", "8", "Hello")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["usage"]["output_tokens"] > 0


def test_max_tokens_gives_finish_reason_length(sipp):
    r = sipp("query", "--json", "--temperature", "0", "-n", "3", "-m", str(STORY_MODEL), "Once upon a time")
    out = json.loads(r.stdout)
    assert out["finish_reason"] == "length"
    assert out["usage"]["output_tokens"] == 3


def test_env_vars_set_options_and_flags_win(sipp):
    env = {"SIPP_MODEL": str(STORY_MODEL), "SIPP_MAX_TOKENS": "2", "SIPP_TEMPERATURE": "0"}
    r = sipp("query", "--json", "Once upon a time", env=env)
    assert json.loads(r.stdout)["usage"]["output_tokens"] == 2
    r = sipp("query", "--json", "-n", "4", "Once upon a time", env=env)
    assert json.loads(r.stdout)["usage"]["output_tokens"] == 4


def test_stop_string(sipp):
    r = sipp("query", "--json", "--temperature", "0", "-m", str(STORY_MODEL), "--stop", ".", "Once upon a time")
    out = json.loads(r.stdout)
    assert out["finish_reason"] == "stop"
    assert "." not in out["text"]


def test_embed_json(sipp):
    r = sipp("embed", "--json", "-m", str(CHAT_MODEL), "hello world")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dims"] == 128 == len(out["embedding"])
    assert out["normalized"] is True
    assert math.isclose(math.sqrt(sum(x * x for x in out["embedding"])), 1.0, rel_tol=1e-4)


def test_info_and_models(sipp):
    r = sipp("info", "--json", str(CHAT_MODEL))
    info = json.loads(r.stdout)
    assert info["architecture"] == "gpt2"
    assert info["capabilities"] == {"query": True, "chat": True, "embed": True}
    assert "Bot:" in info["chat_template"]
    r = sipp("models", "--json")
    names = {m["name"]: m for m in json.loads(r.stdout)}
    assert set(names) == {CHAT_MODEL.name, STORY_MODEL.name}
    assert names[STORY_MODEL.name]["capabilities"]["chat"] is False


@pytest.mark.parametrize("args,needle", [
    (["query", "--model", "not-a-model.gguf", "x"], "not-a-model.gguf"),
    (["query", "-m", str(STORY_MODEL), "--temperature", "nan", "x"], "temperature"),
    (["query", "-m", str(STORY_MODEL), "-n", "0", "x"], "max_tokens"),
    (["query", "-m", str(STORY_MODEL), "--top-p", "2", "x"], "top_p"),
    (["query", "-m", str(STORY_MODEL), ""], "empty"),
    (["chat", "-m", str(STORY_MODEL), "hi"], "chat template"),
    (["query", "--bogus", "x"], "unknown option"),
    (["query", "-m", str(STORY_MODEL)], "TEXT is required"),
    (["frobnicate"], "unknown command"),
])
def test_errors_exit_non_zero_with_one_line(sipp, args, needle):
    r = sipp(*args)
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("sipp: error:")
    assert needle in lines[0]


def test_model_sha256_pin(sipp):
    """A12: --model-sha256 (and SIPP_MODEL_SHA256) load a file with that hash and refuse any
    other, naming both hashes; malformed hex is a usage error."""
    import hashlib
    good = hashlib.sha256(STORY_MODEL.read_bytes()).hexdigest()
    r = sipp("query", "--json", "-n", "2", "-m", str(STORY_MODEL), "--model-sha256", good.upper(),
             "Once")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["usage"]["output_tokens"] == 2
    wrong = "f" * 64
    r = sipp("query", "-n", "2", "-m", str(STORY_MODEL), "Once", env={"SIPP_MODEL_SHA256": wrong})
    assert r.returncode != 0 and r.stdout == ""
    assert f"sha256 mismatch: expected {wrong}, file has {good}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = sipp("query", "-m", str(STORY_MODEL), "--model-sha256", "12ab", "Once")
    assert r.returncode == 2, r.stderr
    assert "--model-sha256 must be 64 hex digits" in r.stderr


@pytest.mark.parametrize("cmd", ["query", "chat", "embed", "info", "models"])
def test_help_on_every_subcommand(sipp, cmd):
    r = sipp(cmd, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith(f"usage: sipp {cmd}")


def test_two_processes_share_a_prefix_through_the_disk_tier(sipp, tmp_path):
    base = "Once upon a time there was a little girl named Lily. She loved to play outside"
    args = ["query", "--json", "--temperature", "0", "-n", "8", "-m", str(STORY_MODEL),
            "--context-key", "doc", "--cache-dir", str(tmp_path / "kv")]
    first = json.loads(sipp(*args, base + " and 1").stdout)
    assert first["stats"]["cache_source"] == "none"
    assert first["stats"]["prefill_tokens"] == first["usage"]["input_tokens"]
    r = sipp(*args, base + " and 2")
    assert r.returncode == 0, r.stderr
    second = json.loads(r.stdout)
    assert second["stats"]["cache_source"] == "snapshot"
    assert second["stats"]["cached_tokens"] > 20
    assert second["stats"]["cached_tokens"] + second["stats"]["prefill_tokens"] == second["usage"]["input_tokens"]
    uncached = json.loads(sipp(*args[:-4], base + " and 2").stdout)
    assert second["text"] == uncached["text"]
