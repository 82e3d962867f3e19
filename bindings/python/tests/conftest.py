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


# ---- a real sipp-gateway ------------------------------------------------------------------------

BIN_DIR = pathlib.Path(os.environ.get("SIPP_BIN_DIR", ROOT / "build" / "bin"))
GW_TOKEN, GW_TOKEN_STORY_ONLY = "sk-gw-bind-py-7f3a9c", "sk-gw-story-only-2b8d"


class Gateway:
    """sipp-gateway on two free loopback ports: targets "local" (the chat model), "story" and
    "long" (the story model, its context shifting so runs go on until cancelled); caller "app"
    (GW_TOKEN) may use all, caller "story" (GW_TOKEN_STORY_ONLY) only "story"."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.port, mport = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        runtime = "[targets.runtime]\nn_ctx = 256\nn_parallel = 2\nn_threads = 1\n"
        config = tmp / "gateway.toml"
        config.write_text(
            f'public_bind = "127.0.0.1:{self.port}"\nmanagement_bind = "127.0.0.1:{mport}"\n\n'
            f'[[targets]]\nname = "local"\ntype = "local"\nmodel = "{CHAT_MODEL}"\n'
            f'backend = "cpu"\n{runtime}\n'
            f'[[targets]]\nname = "story"\ntype = "local"\nmodel = "{STORY_MODEL}"\n'
            f'backend = "cpu"\n{runtime}\n'
            f'[[targets]]\nname = "long"\ntype = "local"\nmodel = "{STORY_MODEL}"\n'
            f'backend = "cpu"\n[targets.runtime]\nn_ctx = 128\nn_threads = 1\n'
            'context_shift = true\n\n'
            '[[tokens]]\nenv = "GW_TOK_APP"\ncaller = "app"\n\n'
            '[[tokens]]\nenv = "GW_TOK_STORY"\ncaller = "story"\ntargets = ["story"]\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPP_")}
        env.update(GW_TOK_APP=GW_TOKEN, GW_TOK_STORY=GW_TOKEN_STORY_ONLY)
        self.log = open(tmp / "gateway.log", "w")
        self.proc = subprocess.Popen([str(BIN_DIR / "sipp-gateway"), "serve", "--config",
                                      str(config)], stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=env)
        deadline = time.time() + 60
        while True:  # ready once both local targets are loaded
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{mport}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                pytest.fail("sipp-gateway did not start: " + (tmp / "gateway.log").read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("gw"))
    yield g
    g.stop()
