"""Provider endpoints against a real peer: the llama-server of our own llama.cpp build, started
on loopback by the test, used as an `openai_compatible` provider through the `sipp` CLI."""
import json
import math
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import BIN_DIR, CHAT_MODEL


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(*extra, port=None):
    port = port or free_port()
    proc = subprocess.Popen(
        [os.environ.get("SIPP_LLAMA_SERVER", str(BIN_DIR / "llama-server")), "-m", str(CHAT_MODEL), "--host", "127.0.0.1", "--port", str(port),
         "-np", "2", "-c", "512", "-t", "2", "--no-webui", "--embeddings", "--pooling", "mean", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("llama-server did not start")
        time.sleep(0.1)
    return proc, url + "/v1"


@pytest.fixture(scope="module")
def llama_server():
    proc, url = start_llama_server()
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_api_key_is_sent_and_never_printed(sipp):
    proc, url = start_llama_server("--api-key", "server-secret-4242")
    try:
        args = ["query", *remote(url), "--api-key-env", "PEER_KEY", "-n", "2", "hi"]
        wrong = sipp(*args, env={"PEER_KEY": "sk-client-secret-9999"})
        assert wrong.returncode != 0
        assert "401 (authentication)" in wrong.stderr
        assert "sk-client-secret-9999" not in wrong.stderr + wrong.stdout
        right = sipp(*args, env={"PEER_KEY": "server-secret-4242"})
        assert right.returncode == 0, right.stderr
        missing = sipp(*args)
        assert missing.returncode != 0 and "PEER_KEY is not set" in missing.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def remote(url):
    return ["--provider", "openai_compatible", "--base-url", url, "--remote-model", "tiny"]


def test_chat_matches_the_local_engine(sipp, llama_server):
    args = ["--json", "--temperature", "0", "-n", "24", "Do you like to play outside?"]
    r = sipp("chat", *remote(llama_server), *args)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    local = json.loads(sipp("chat", "-m", str(CHAT_MODEL), *args).stdout)
    # same model, same llama.cpp build, greedy: the provider and the engine agree
    assert out["text"] == local["text"] and out["text"].strip()
    assert out["finish_reason"] == local["finish_reason"]
    assert out["usage"]["output_tokens"] > 0 and out["usage"]["input_tokens"] > 0


def test_query_streams_and_stops_at_max_tokens(sipp, llama_server):
    args = ["--temperature", "0", "-n", "6", "User: hi\nBot:"]
    streamed = sipp("query", *remote(llama_server), *args)
    as_json = json.loads(sipp("query", "--json", *remote(llama_server), *args).stdout)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == as_json["text"] + "\n"
    assert as_json["finish_reason"] == "length"
    assert as_json["usage"]["output_tokens"] == 6


def test_stop_string(sipp, llama_server):
    out = json.loads(sipp("chat", "--json", *remote(llama_server), "--temperature", "0", "--stop", "run",
                          "Do you like to play outside?").stdout)
    assert out["finish_reason"] == "stop"
    assert "run" not in out["text"]


def test_embed_is_normalized(sipp, llama_server):
    r = sipp("embed", "--json", *remote(llama_server), "hello world")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dims"] == 128
    assert math.isclose(math.sqrt(sum(x * x for x in out["embedding"])), 1.0, rel_tol=1e-4)


@pytest.mark.parametrize("flag,value,field", [
    ("--grammar-file", "/dev/null", "grammar"),
    ("--context-key", "k", "context_key"),
    ("--top-k", "5", "top_k"),
])
def test_local_only_options_are_rejected(sipp, llama_server, flag, value, field):
    r = sipp("query", *remote(llama_server), flag, value, "hi")
    assert r.returncode != 0
    assert f"{field} is an option of local endpoints" in r.stderr


@pytest.mark.parametrize("url,needle", [
    ("http://example.com/v1", "only to loopback"),
    ("https://user:pw@example.com/v1", "credentials"),
    ("https://example.com/v1?x=1", "query or fragment"),
    ("ftp://127.0.0.1/v1", "http or https"),
])
def test_unsafe_base_urls_are_refused(sipp, url, needle):
    r = sipp("query", "--provider", "openai_compatible", "--base-url", url, "--remote-model", "m", "hi")
    assert r.returncode != 0
    assert needle in r.stderr
    assert "pw" not in r.stderr


def test_unreachable_peer_is_a_transport_error(sipp):
    r = sipp("query", *remote(f"http://127.0.0.1:{free_port()}/v1"), "hi")
    assert r.returncode != 0
    assert "transport error" in r.stderr


def test_unknown_route_maps_the_status(sipp, llama_server):
    r = sipp("query", *remote(llama_server.replace("/v1", "/nope")), "hi")
    assert r.returncode != 0
    assert "provider answered 404 (model_not_found)" in r.stderr
