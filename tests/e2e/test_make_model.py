"""sipp-make-model writes loadable random-weight models of real shapes; the engine runs the
BERT-style encoder for embeddings only and the llama shape for text."""
import json
import os
import subprocess

import pytest

from conftest import BIN_DIR


def make(tmp_path, shape, wtype):
    out = tmp_path / f"{shape}-{wtype}.gguf"
    r = subprocess.run([str(BIN_DIR / "sipp-make-model"), "--shape", shape, "--type", wtype,
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.exists() and not (tmp_path / f"{out.name}.tmp").exists()
    return out


@pytest.fixture(autouse=True)
def needs_llama_src():
    if not os.environ.get("SIPP_LLAMA_SRC"):
        pytest.fail("SIPP_LLAMA_SRC must point at the llama.cpp source (ctest sets it)")


def test_bert_encoder_embeds_and_cannot_generate(sipp, tmp_path):
    model = make(tmp_path, "bert-small", "f16")
    info = json.loads(sipp("info", "--json", str(model)).stdout)
    assert info["architecture"] == "bert"
    assert info["embedding_length"] == 384
    assert info["capabilities"] == {"query": False, "chat": False, "embed": True}
    r = sipp("embed", "--json", "-m", str(model), "hello world")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dims"] == 384 and len(out["embedding"]) == 384
    assert abs(sum(x * x for x in out["embedding"]) - 1.0) < 1e-4
    r = sipp("query", "-m", str(model), "hello")
    assert r.returncode != 0
    assert "embedding model" in r.stderr


def test_embed_on_a_reranker_is_unsupported(sipp, tmp_path):
    """Capability gating: a model that cannot embed (a reranker) says so for the operation, up
    front, with the `unsupported` status; nothing is computed."""
    model = make(tmp_path, "bert-rerank", "f16")
    info = json.loads(sipp("info", "--json", str(model)).stdout)
    assert info["capabilities"] == {"query": False, "chat": False, "embed": False}
    r = sipp("embed", "--json", "-m", str(model), "hello world")
    assert r.returncode != 0
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert "embed: the model 'bert' cannot produce embeddings (it is a reranker" in r.stderr


def test_llama_135m_shape_generates(sipp, tmp_path):
    model = make(tmp_path, "llama-135m", "q8_0")
    info = json.loads(sipp("info", "--json", str(model)).stdout)
    assert 130e6 < info["parameters"] < 140e6
    assert info["embedding_length"] == 576
    r = sipp("query", "--json", "-n", "4", "--temperature", "0", "-m", str(model), "Hello")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["usage"]["output_tokens"] == 4


def test_unknown_shape_is_a_usage_error(tmp_path):
    r = subprocess.run([str(BIN_DIR / "sipp-make-model"), "--shape", "llama-99b", "--out",
                        str(tmp_path / "x.gguf")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "shape" in r.stderr
    assert not (tmp_path / "x.gguf").exists()
