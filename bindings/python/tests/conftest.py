"""Fixtures of the Python binding's tests: the tiny models, a client, a real llama-server."""
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bindings" / "python"))

import sipp  # noqa: E402

MODELS = pathlib.Path(os.environ.get("SIPP_TEST_MODELS_DIR", ROOT.parent / "shared" / "models"))
CHAT_MODEL = MODELS / "tinystories-instruct-3m-soda-chat-Q4_0.gguf"
STORY_MODEL = MODELS / "stories260K.gguf"
LLAMA_SERVER = os.environ.get("SIPP_LLAMA_SERVER", str(ROOT / "build" / "bin" / "llama-server"))


@pytest.fixture(scope="module")
def client():
    with sipp.Client() as c:
        c.add_local("chat", CHAT_MODEL, n_ctx=256, n_threads=1)
        c.add_local("story", STORY_MODEL, n_ctx=256, n_threads=1)
        # runs that go on until cancelled: the context shifts instead of filling up
        c.add_local("long", STORY_MODEL, n_ctx=128, n_threads=1, context_shift=True)
        yield c


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(*extra):
    """llama-server of our llama.cpp build on loopback, serving the chat model."""
    port = free_port()
    proc = subprocess.Popen(
        [LLAMA_SERVER, "-m", str(CHAT_MODEL), "--host", "127.0.0.1", "--port", str(port),
         "-np", "2", "-c", "512", "-t", "1", "--no-webui", "--embeddings", "--pooling", "mean",
         *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    proc, url = start_llama_server("--api-key", "peer-secret-4242")
    yield url
    proc.terminate()
    proc.wait(timeout=10)
