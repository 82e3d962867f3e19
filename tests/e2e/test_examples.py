"""examples/c/title.c: the same feature on a local model, a provider (a real llama-server) and a
gateway-shaped peer, changing only the descriptor on the command line."""
import os
import re
import subprocess

from conftest import BIN_DIR, CHAT_MODEL
from fault_server import FaultServer
from test_provider import llama_server  # noqa: F401  (the module-scoped fixture)

TEXT = "A day at the park with my dog"
DONE = re.compile(r"\[(stop|length), \d+ tokens, \d+ ms\]")


def title(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SIPP_", "PROVIDER_"))}
    e.update(env or {})
    return subprocess.run([str(BIN_DIR / "sipp-example-title"), *args, TEXT], capture_output=True,
                          text=True, env=e, timeout=120)


def test_local(tmp_path):
    r = title("local", str(CHAT_MODEL))
    assert r.returncode == 0, r.stderr
    assert DONE.search(r.stdout), r.stdout


def test_provider_llama_server(llama_server):  # noqa: F811
    r = title("provider", "openai_compatible", llama_server, "any")
    assert r.returncode == 0, r.stderr
    assert DONE.search(r.stdout), r.stdout


def test_gateway_and_its_errors():
    srv = FaultServer()
    try:
        ok = title("gateway", srv.root("ok"), "tiny", env={"SIPP_GATEWAY_TOKEN": "t0k"})
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith("Hello") and DONE.search(ok.stdout)
        assert srv.seen[-1]["body"]["messages"][0]["role"] == "system"
        busy = title("gateway", srv.root("code_admission"), "tiny")
        assert busy.returncode == 1 and "(busy)" in busy.stderr
    finally:
        srv.close()


def test_bad_descriptor_is_a_usage_error():
    r = title("cloud")
    assert r.returncode == 2 and "usage:" in r.stderr
