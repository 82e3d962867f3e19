"""The official OpenAI SDK for Node (npm package `openai`), unchanged, against sipp-gateway:
models, chat (finite and streaming with include_usage), completions, embeddings (float and the
SDK's default base64), and errors. npm installs the SDK once into the git-ignored
build/npm-openai/ at the version pinned in scripts/deps.env."""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from gateway_util import Gateway, local_target

ROOT = pathlib.Path(__file__).parents[2]
NPM_DIR = ROOT / "build" / "npm-openai"


def sdk_dir():
    version = re.search(r"^OPENAI_NODE_VERSION=(\S+)", (ROOT / "scripts/deps.env").read_text(), re.M).group(1)
    pkg = NPM_DIR / "node_modules" / "openai" / "package.json"
    if not pkg.exists() or json.loads(pkg.read_text())["version"] != version:
        if not shutil.which("npm"):
            pytest.fail("npm is needed for the OpenAI SDK test (scripts/setup installs it)")
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                            "--prefix", str(NPM_DIR), f"openai@{version}"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    return NPM_DIR


def test_openai_node_sdk(tmp_path):
    d = sdk_dir()
    script = d / "gateway_sdk.mjs"  # next to node_modules so `import "openai"` resolves
    shutil.copy(pathlib.Path(__file__).with_name("gateway_sdk.mjs"), script)
    g = Gateway(tmp_path, local_target() + '[[tokens]]\nenv = "TOK"\ncaller = "sdk"\n',
                env={"TOK": "sk-sdk-test-1234"})
    try:
        r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "GW_URL": f"http://127.0.0.1:{g.port}/v1",
                                "GW_KEY": "sk-sdk-test-1234"})
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
    finally:
        g.stop()
    assert out["models"] == ["local"]
    assert out["chat"]["object"] == "chat.completion" and out["chat"]["role"] == "assistant"
    assert out["chat"]["usage"]["completion_tokens"] <= 4 and out["chat"]["content"]
    s = out["stream"]
    assert s["chunks"] >= 3 and s["text"] and s["finish"] in ("stop", "length")
    assert s["usage"]["completion_tokens"] <= 5 and s["usage"]["total_tokens"] > 0
    assert out["completion"]["object"] == "text_completion" and out["completion"]["finish"] == "length"
    assert out["completion_stream"]
    assert out["embeddings"][0] == out["embeddings"][1] > 8
    assert out["embedding_b64"] == pytest.approx(out["embedding_float"], rel=1e-5)
    assert out["error"]["status"] == 404 and out["error"]["name"] == "NotFoundError"
    assert out["auth_error"] == {"status": 401, "name": "AuthenticationError"}
