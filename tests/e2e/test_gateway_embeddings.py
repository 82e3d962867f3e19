"""The gateway's embeddings answers (issue 19, finding 4): a small request must not make a huge
answer. `encoding_format` (float or base64, both routes), the `max_embedding_floats` cap on
inputs x dimensions (refused before any work when the target's size is known, after the first
vector when only the provider knows it), and an answer written out incrementally, so the
gateway's memory does not grow with a JSON tree of every float."""
import base64
import json
import struct
import time

import pytest

from fault_server import FaultServer
from gateway_util import GATEWAY, Gateway, error_of, story_target

DIM = 64  # stories260K's embedding size


def f32(x):
    """x rounded to float32, as the engine produced it."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def unb64(s):
    raw = base64.b64decode(s, validate=True)
    assert len(raw) % 4 == 0
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def request_log(g, rid, timeout=5.0):
    """The request's log lines. The log is written by its own thread after the answer is sent,
    so the line may arrive a moment after the response: wait for it, within `timeout`."""
    deadline = time.time() + timeout
    while True:
        lines = [l for l in g.logs() if l.get("msg") == "request" and l["request_id"] == rid]
        if lines or time.time() > deadline:
            return lines
        time.sleep(0.05)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("gwemb"), story_target(),
                top=f"max_embedding_floats = {DIM * 16}\n")
    yield g
    assert g.stop() == 0


def test_base64_is_the_same_vector_as_the_float_form(gw):
    texts = ["hello world", "Once upon a time", "x"]
    st, h, fl = gw.post("/v1/embeddings", {"model": "story", "input": texts})
    assert st == 200, fl
    assert h["content-type"] == "application/json"
    st, _, b6 = gw.post("/v1/embeddings", {"model": "story", "input": texts,
                                           "encoding_format": "base64"})
    assert st == 200, b6
    assert [d["index"] for d in b6["data"]] == [0, 1, 2]
    assert b6["usage"] == fl["usage"] and b6["usage"]["prompt_tokens"] > 0
    for a, b in zip(fl["data"], b6["data"]):
        assert len(a["embedding"]) == DIM and all(isinstance(x, float) for x in a["embedding"])
        # the float form reads back as exactly the engine's float32 values
        assert [f32(x) for x in a["embedding"]] == unb64(b["embedding"])
    # "float" and null are the default form
    st, _, again = gw.post("/v1/embeddings", {"model": "story", "input": texts,
                                              "encoding_format": None})
    assert st == 200 and again["data"] == fl["data"]

    # the Sipp route takes the same choice
    st, _, sf = gw.post("/v1/embed", {"model": "story", "input": "hello world"})
    assert st == 200, sf
    st, _, sb = gw.post("/v1/embed", {"model": "story", "input": "hello world",
                                      "encoding_format": "base64"})
    assert st == 200, sb
    assert set(sb) == {"id", "model", "embedding", "usage"} and sb["model"] == "story"
    assert [f32(x) for x in sf["embedding"]] == unb64(sb["embedding"])
    assert unb64(sb["embedding"]) == unb64(b6["data"][0]["embedding"])
    st, _, b = gw.post("/v1/embed", {"model": "story", "input": "x", "encoding_format": "hex"})
    assert (st, error_of(b)) == (400, "invalidrequest")
    assert "encoding_format" in b["error"]["message"]
    st, _, b = gw.post("/v1/embed", {"model": "story", "input": "x", "encoding_format": 1})
    assert (st, error_of(b)) == (400, "invalid_json")


def test_over_the_cap_is_refused_before_any_work(gw):
    # 17 inputs x 64 dimensions = 1088 floats > 1024: refused in validation, nothing embedded
    st, h, b = gw.post("/v1/embeddings", {"model": "story", "input": ["a"] * 17},
                       headers={"x-request-id": "emb-over-cap"})
    assert st == 400, b
    assert b["error"]["code"] == "invalidrequest" and b["error"]["param"] == "input"
    assert "max_embedding_floats (1024)" in b["error"]["message"]
    assert "17 input(s) x 64 dimensions = 1088 floats" in b["error"]["message"]
    [line] = request_log(gw, "emb-over-cap")
    assert line["status"] == 400 and line["input_tokens"] == 0  # no input was embedded
    # at the cap: answered
    st, _, b = gw.post("/v1/embeddings", {"model": "story", "input": ["a"] * 16})
    assert st == 200 and len(b["data"]) == 16


def test_a_provider_target_is_capped_once_its_size_is_known(tmp_path):
    """A provider's vector size is unknown until it answers: the cap applies after the first
    vector, before the rest are asked for."""
    fs = FaultServer()
    try:
        g = Gateway(tmp_path, f"""
[[targets]]
name = "peer"
type = "openai_compatible"
model = "m"
base_url = "{fs.url('ok')}"
""", top="max_embedding_floats = 3\n")
        try:
            st, _, b = g.post("/v1/embeddings", {"model": "peer", "input": "a",
                                                 "encoding_format": "base64"})
            assert st == 200, b
            assert unb64(b["data"][0]["embedding"]) == [f32(0.6), f32(0.8)]  # [3, 4] normalized
            fs.seen.clear()
            st, _, b = g.post("/v1/embeddings", {"model": "peer", "input": ["a", "b", "c"]})
            assert st == 400 and b["error"]["code"] == "invalidrequest", b
            assert "3 input(s) x 2 dimensions = 6 floats" in b["error"]["message"]
            assert "max_embedding_floats (3)" in b["error"]["message"]
            assert len(fs.seen) == 1  # stopped after the first vector
        finally:
            assert g.stop() == 0
    finally:
        fs.close()


def test_max_embedding_floats_is_validated(tmp_path):
    with pytest.raises(RuntimeError, match="key 'max_embedding_floats' must be between 1 and"):
        Gateway(tmp_path, story_target(), top="max_embedding_floats = 0\n")


def sanitized(binary):
    """True for a binary built with ASan (its memory use says nothing about ours)."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def test_a_large_answer_is_streamed_not_built_in_memory(tmp_path):
    """2048 inputs (OpenAI's maximum) x 64 dimensions: the old answer was a jansson tree of
    131072 reals plus its dumped text plus the HTTP layer's copy, some 80-100 bytes a float
    (over 10 MiB here; 0.9 GB on a 4096-dimension model). Written incrementally, the gateway
    holds the vectors (4 bytes a float) and a block of text. The process's peak RSS before and
    after must grow by less than 24 bytes a float, far from both measured sizes."""
    n = 2048
    g = Gateway(tmp_path, story_target())
    try:
        st, _, b = g.post("/v1/embeddings", {"model": "story", "input": ["warm up", "x"]})
        assert st == 200, b
        before = peak_rss_kib(g.proc.pid)
        texts = [f"story {i}" for i in range(n)]
        st, h, raw = g.request("POST", "/v1/embeddings", {"model": "story", "input": texts},
                               timeout=300)
        after = peak_rss_kib(g.proc.pid)
        assert st == 200, raw[:300]
        body = json.loads(raw)
        assert [d["index"] for d in body["data"]] == list(range(n))
        assert all(len(d["embedding"]) == DIM for d in body["data"])
        floats = n * DIM
        grown = (after - before) * 1024
        # measured: ~106 bytes a float with the tree, ~6.5 written incrementally. Under ASan
        # (scripts/test's build-asan) the allocator's quarantine and shadow dwarf both, so there
        # the answer's correctness is what this test checks.
        if not sanitized(GATEWAY):
            assert grown < floats * 24, f"peak RSS grew {grown} bytes for {floats} floats"
    finally:
        assert g.stop() == 0
