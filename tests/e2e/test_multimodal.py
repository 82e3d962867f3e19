"""Multimodal (issue 17): images through llama.cpp's mtmd, checked against llama.cpp itself.

The models are random weights of real shapes from sipp-make-model (llava-text + llava-mmproj);
the oracle is llama.cpp's own `llama-mtmd-cli` on the same files: at temperature 0, Sipp's text
for an image equals its text token for token. PNGs are written here with zlib (no PIL)."""
import base64
import json
import os
import pathlib
import struct
import subprocess
import sys
import zlib

import pytest

from conftest import BIN_DIR

LLAMA_BIN = pathlib.Path(os.environ.get("SIPP_LLAMA_SERVER", str(BIN_DIR / "llama-server"))).parent
MTMD_CLI = LLAMA_BIN / "llama-mtmd-cli"
N_PREDICT = 12


def png(w, h, seed=1):
    """An 8-bit RGB PNG of a deterministic pattern (seed picks the pattern)."""
    rows = bytearray()
    for y in range(h):
        rows.append(0)
        for x in range(w):
            rows += bytes(((x * 7 + y * 3 + seed * 11) % 256, (x * y + seed) % 256, (x ^ y) % 256))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    """(text model, projector, two different PNGs) written once for the module."""
    if not os.environ.get("SIPP_LLAMA_SRC"):
        pytest.fail("SIPP_LLAMA_SRC must point at the llama.cpp source (ctest sets it)")
    d = tmp_path_factory.mktemp("llava")
    for shape, name in (("llava-text", "text.gguf"), ("llava-mmproj", "mmproj.gguf")):
        r = subprocess.run([str(BIN_DIR / "sipp-make-model"), "--shape", shape, "--out", str(d / name)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    (d / "a.png").write_bytes(png(64, 48, 1))
    (d / "b.png").write_bytes(png(40, 90, 2))
    return d


def oracle(d, image, prompt, *extra):
    """llama-mtmd-cli's greedy text for one image and a user prompt (marker in front)."""
    assert MTMD_CLI.exists(), f"{MTMD_CLI} is missing: scripts/setup builds it"
    r = subprocess.run([str(MTMD_CLI), "-m", str(d / "text.gguf"), "--mmproj", str(d / "mmproj.gguf"),
                        "--image", str(image), "-p", prompt, "--temp", "0", "-n", str(N_PREDICT),
                        "-t", "2", *extra], capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip("\n")


def test_llama_cpp_loads_the_random_pair_and_the_image_steers_it(llava):
    """The projector is one clip.cpp loads and pairs with the text model (n_embd 256 both
    sides); different images give different text, so an oracle match means something."""
    a = oracle(llava, llava / "a.png", "Describe the picture.")
    b = oracle(llava, llava / "b.png", "Describe the picture.")
    assert a and b and a != b


def sipp_run(sipp, *args):
    return sipp(*args, env={"OMP_WAIT_POLICY": "passive"}, timeout=300)


RAW = "<|im_start|>user\n<__media__>Describe the picture.<|im_end|>\n<|im_start|>assistant\n"


def test_query_with_an_image_equals_llama_mtmd_cli(sipp, llava):
    """The oracle: Sipp's engine (mtmd tokenize, encode, embeddings into the sequence, greedy)
    gives llama-mtmd-cli's text token for token, for the prompt mtmd-cli renders (ChatML, no
    system turn, the marker in front of the user text)."""
    for img in ("a.png", "b.png"):
        want = oracle(llava, llava / img, "Describe the picture.")
        r = sipp_run(sipp, "query", "--json", "-m", str(llava / "text.gguf"), "--mmproj",
                     str(llava / "mmproj.gguf"), "--image", str(llava / img), "--temperature", "0",
                     "-n", str(N_PREDICT), RAW)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["text"] == want
        assert out["usage"]["output_tokens"] == N_PREDICT
        # 256 image positions (224/14 squared) and the text around them
        assert out["usage"]["input_tokens"] > 256


def test_chat_with_an_image_and_a_system_turn_equals_llama_mtmd_cli(sipp, llava):
    """sipp chat --image: the marker goes in front of the user turn, the template renders it."""
    want = oracle(llava, llava / "a.png", "Describe the picture.", "-sys", "You look at pictures.")
    r = sipp_run(sipp, "chat", "-m", str(llava / "text.gguf"), "--mmproj", str(llava / "mmproj.gguf"),
                 "--image", str(llava / "a.png"), "--system", "You look at pictures.",
                 "--temperature", "0", "-n", str(N_PREDICT), "Describe the picture.")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip("\n") == want


def test_the_same_image_reuses_the_cached_prefix(sipp, llava, tmp_path):
    """Media chunks carry their content hash: a second request with the same image under the
    same context key reuses the prefix (image included) and gives the same text; another image
    diverges at the image and computes it."""
    base = ["query", "--json", "-m", str(llava / "text.gguf"), "--mmproj", str(llava / "mmproj.gguf"),
            "--temperature", "0", "-n", "4", "--context-key", "k", "--cache-dir", str(tmp_path)]
    r1 = sipp_run(sipp, *base, "--image", str(llava / "a.png"), RAW)
    assert r1.returncode == 0, r1.stderr
    r2 = sipp_run(sipp, *base, "--image", str(llava / "a.png"), RAW)
    assert r2.returncode == 0, r2.stderr
    s1, s2 = json.loads(r1.stdout), json.loads(r2.stdout)
    assert s1["stats"]["cache_source"] == "none"
    assert s1["stats"]["media_chunks"] == 1 and s1["stats"]["encode_ms"] > 0
    assert s2["stats"]["cache_source"] == "snapshot"
    assert s2["stats"]["media_chunks"] == 0  # not encoded again: its positions were cached
    assert s2["stats"]["cached_tokens"] > 256  # the image's 256 positions came from the cache
    assert s2["text"] == s1["text"]
    r3 = sipp_run(sipp, *base, "--image", str(llava / "b.png"), RAW)
    s3 = json.loads(r3.stdout)
    assert s3["stats"]["cached_tokens"] < 20  # only the text before the image matched
    assert s3["stats"]["media_chunks"] == 1


def chat_image(sipp, llava, image_path, *extra, model=None, mmproj=None):
    args = ["chat", "-m", str(model or llava / "text.gguf")]
    if mmproj is not False:
        args += ["--mmproj", str(mmproj or llava / "mmproj.gguf")]
    return sipp_run(sipp, *args, "--image", str(image_path), "--temperature", "0", "-n", "2",
                    *extra, "Describe the picture.")


def one_line_error(r):
    assert r.returncode != 0 and r.stdout.strip() == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    return lines[0]


def test_media_on_a_text_only_endpoint_is_unsupported(sipp, llava):
    r = chat_image(sipp, llava, llava / "a.png", mmproj=False)
    msg = one_line_error(r)
    assert "without a projector (mmproj)" in msg


@pytest.mark.parametrize("name,data,expect", [
    ("truncated.png", lambda: png(64, 48)[:40], "cannot be decoded"),
    ("header-only.png", lambda: png(64, 48)[:20], "header is truncated or corrupt"),
    ("corrupt.jpg", lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20, "truncated or corrupt"),
    ("bomb.png", lambda: png(1, 1)[:16] + struct.pack(">II", 100000, 100000) + png(1, 1)[24:],
     "over the limit of 16777216 pixels per image"),
    ("zero.png", lambda: png(1, 1)[:16] + struct.pack(">II", 0, 5) + png(1, 1)[24:], "declares a 0x5 image"),
    ("text.png", lambda: b"hello, I am not an image at all\n" * 10, "not an image"),
    ("wave.png", lambda: b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40, "not an image"),
    ("empty.png", lambda: b"", "empty (0 bytes)"),
])
def test_bad_images_are_clear_errors(sipp, llava, tmp_path, name, data, expect):
    """Each bad image is refused with one clear line, before or by the decoder, and the process
    exits normally (no crash: returncode 1, not a signal)."""
    p = tmp_path / name
    p.write_bytes(data())
    r = chat_image(sipp, llava, p)
    assert r.returncode == 1, r.stderr[-2000:]
    assert expect in one_line_error(r)


def test_more_media_than_markers(sipp, llava):
    r = sipp_run(sipp, "query", "-m", str(llava / "text.gguf"), "--mmproj", str(llava / "mmproj.gguf"),
                 "--image", str(llava / "a.png"), "--image", str(llava / "b.png"), "-n", "2",
                 "<__media__> one marker for two images")
    assert "1 media marker(s) but 2 media part(s)" in one_line_error(r)


def test_a_projector_that_is_not_a_gguf(sipp, llava, tmp_path):
    bad = tmp_path / "mmproj.gguf"
    bad.write_bytes(b"not a gguf file at all" * 100)
    msg = one_line_error(chat_image(sipp, llava, llava / "a.png", mmproj=bad))
    assert "is not a GGUF file" in msg


def test_a_projector_for_another_model(sipp, llava, tmp_path):
    """llava-mmproj projects into 256 dimensions; llama-135m has 576."""
    r = subprocess.run([str(BIN_DIR / "sipp-make-model"), "--shape", "llama-135m", "--out",
                        str(tmp_path / "other.gguf")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    msg = one_line_error(chat_image(sipp, llava, llava / "a.png", model=tmp_path / "other.gguf"))
    assert "cannot be loaded for this model (n_embd 576): mismatch between text model (n_embd = 576) " \
           "and mmproj (n_embd = 256)" in msg


@pytest.fixture(scope="module")
def llava_gw(llava, tmp_path_factory):
    """A gateway with the llava pair as target 'vision' (mmproj in [targets.runtime])."""
    from gateway_util import Gateway, local_target
    g = Gateway(tmp_path_factory.mktemp("gwmm"),
                local_target("vision", llava / "text.gguf", mmproj=str(llava / "mmproj.gguf"),
                             n_ctx=1024, n_parallel=2, n_threads=2, context_shift=False),
                top="max_request_bytes = 41943040\n", env={"OMP_WAIT_POLICY": "passive"})
    yield g
    g.stop()


def data_url(b, mime="image/png"):
    return f"data:{mime};base64," + base64.b64encode(b).decode()


def openai_chat(parts, **extra):
    body = {"model": "vision", "temperature": 0, "max_tokens": N_PREDICT,
            "messages": [{"role": "system", "content": "You look at pictures."},
                         {"role": "user", "content": parts}]}
    body.update(extra)
    return body


def test_gateway_openai_image_url_equals_llama_mtmd_cli(llava, llava_gw):
    """OpenAI content parts: an image_url data URL before the text gives llama.cpp's answer
    for the same image and prompt, token for token."""
    want = oracle(llava, llava / "a.png", "Describe the picture.", "-sys", "You look at pictures.")
    st, _, out = llava_gw.post("/v1/chat/completions", openai_chat([
        {"type": "image_url", "image_url": {"url": data_url((llava / "a.png").read_bytes())}},
        {"type": "text", "text": "Describe the picture."}]))
    assert st == 200, out
    assert out["choices"][0]["message"]["content"] == want


@pytest.mark.parametrize("part,status,code,expect", [
    ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, 400, "invalid_json",
     "remote image URLs are not fetched"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@@"}}, 400, "invalid_json",
     "invalid character"),
    ({"type": "image_url", "image_url": {"url": data_url(b"GIF89a" + struct.pack("<HH", 60000, 60000) + b"\0" * 8, "image/gif")}},
     400, "invalid_json", "over the limit of 16777216 pixels per image (max_image_pixels)"),
    ({"type": "image_url", "image_url": {"url": data_url(b"plain text, not a picture", "image/png")}},
     400, "invalid_json", "not an image"),
    ({"type": "image_url", "image_url": {"url": data_url(b"\x89PNG\r\n\x1a\n" + b"\0" * (21 << 20))}},
     413, "payload_too_large", "max_media_bytes"),
    ({"type": "video", "video": "x"}, 400, "invalid_json", "type must be text, image_url or input_audio"),
])
def test_gateway_refuses_bad_image_parts(llava_gw, part, status, code, expect):
    st, _, out = llava_gw.post("/v1/chat/completions", openai_chat([part, {"type": "text", "text": "hi"}]))
    assert st == status, out
    assert out["error"]["code"] == code and expect in out["error"]["message"], out
    # the gateway goes on serving
    st, _, out = llava_gw.post("/v1/chat/completions", openai_chat("hello", max_tokens=2))
    assert st == 200, out


def test_gateway_media_limits_are_configuration_keys(llava, llava_gw, tmp_path):
    """max_media_bytes and max_image_pixels (top-level keys, docs/gateway.md): a lowered limit
    refuses what is over it, naming the key and the configured value; what is under both limits
    gets the same answer as from a gateway with the defaults, and text requests go on."""
    from gateway_util import Gateway, local_target
    small = png(32, 32, 3)  # 1024 pixels
    limit = len(small) + 64  # one small image fits; two do not
    g = Gateway(tmp_path, local_target("vision", llava / "text.gguf", mmproj=str(llava / "mmproj.gguf"),
                                       n_ctx=1024, n_parallel=2, n_threads=2, context_shift=False),
                top=f"max_media_bytes = {limit}\nmax_image_pixels = 2000\n", env={"OMP_WAIT_POLICY": "passive"})
    try:
        img = lambda b: {"type": "image_url", "image_url": {"url": data_url(b)}}
        text = {"type": "text", "text": "Describe the picture."}
        # a GIF header declaring 50x50 = 2500 pixels (18 bytes): over 2000 pixels only
        gif = b"GIF89a" + struct.pack("<HH", 50, 50) + b"\0" * 8
        st, _, out = g.post("/v1/chat/completions", openai_chat([{"type": "image_url", "image_url": {
            "url": data_url(gif, "image/gif")}}, text]))
        assert st == 400, out
        assert out["error"]["code"] == "invalid_json", out
        assert "over the limit of 2000 pixels per image (max_image_pixels)" in out["error"]["message"], out
        # two small images: over the bytes limit (the body itself is far under max_request_bytes)
        st, _, out = g.post("/v1/chat/completions", openai_chat([img(small), img(small), text]))
        assert st == 413, out
        assert out["error"]["code"] == "payload_too_large", out
        assert f"larger than {limit} bytes (max_media_bytes)" in out["error"]["message"], out
        # the Messages route's image blocks count against the same limit
        st, _, out = g.post("/v1/messages", {"model": "vision", "max_tokens": 2, "messages": [{"role": "user", "content": [
            anthropic_image(small), anthropic_image(small), text]}]})
        assert st == 413, out
        assert f"larger than {limit} bytes (max_media_bytes)" in out["error"]["message"], out
        # under both limits: the answer of the gateway with the default limits
        st, _, out = g.post("/v1/chat/completions", openai_chat([img(small), text]))
        assert st == 200, out
        st2, _, want = llava_gw.post("/v1/chat/completions", openai_chat([img(small), text]))
        assert st2 == 200, want
        assert out["choices"][0]["message"]["content"] == want["choices"][0]["message"]["content"]
        # the default gateway takes what the lowered one refuses
        st, _, out = llava_gw.post("/v1/chat/completions", openai_chat([img(small), img(small), text]))
        assert st == 200, out
        st, _, out = g.post("/v1/chat/completions", openai_chat("hello", max_tokens=2))
        assert st == 200, out
    finally:
        g.stop()


def anthropic_image(b, media_type="image/png"):
    return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                        "data": base64.b64encode(b).decode()}}


def anthropic_chat(content, **extra):
    body = {"model": "vision", "temperature": 0, "max_tokens": N_PREDICT, "system": "You look at pictures.",
            "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return body


def test_gateway_anthropic_image_blocks_equal_llama_mtmd_cli(llava, llava_gw):
    """The Messages route: a user message's image block (base64 source) before its text is the
    same media part as the OpenAI route's image_url: llama.cpp's answer, token for token, and
    the OpenAI route's; streamed too."""
    want = oracle(llava, llava / "a.png", "Describe the picture.", "-sys", "You look at pictures.")
    a = (llava / "a.png").read_bytes()
    st, _, out = llava_gw.post("/v1/messages", anthropic_chat([
        anthropic_image(a), {"type": "text", "text": "Describe the picture."}]))
    assert st == 200, out
    assert out["content"][0]["text"] == want
    assert out["usage"]["input_tokens"] > 256  # the image's positions count
    # a second image block in the same message: each takes its place (two parts, two markers)
    st, _, two = llava_gw.post("/v1/messages", anthropic_chat([
        anthropic_image(a), {"type": "text", "text": "and"}, anthropic_image((llava / "b.png").read_bytes()),
        {"type": "text", "text": "Describe the pictures."}], max_tokens=2))
    assert st == 200, two
    assert two["usage"]["input_tokens"] > 512
    from gateway_util import Stream
    s = Stream(llava_gw, "/v1/messages", anthropic_chat([
        anthropic_image(a), {"type": "text", "text": "Describe the picture."}], stream=True))
    assert s.status == 200
    deltas = [json.loads(d)["delta"]["text"] for e, d, c in s.frames() if c is None and e == "content_block_delta"]
    s.c.close()
    assert "".join(deltas) == want


@pytest.mark.parametrize("content,role,status,expect", [
    ([{"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}], "user", 400,
     "image sources must be base64; remote image URLs are not fetched"),
    ([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "@@@@"}}], "user", 400,
     "messages[0].content[0]: image: the data: URL's base64 has an invalid character"),
    ([{"type": "image", "source": {"type": "base64", "media_type": "image/png;base64,AAAA", "data": "AAAA"}}],
     "user", 400, "an image block needs a source"),
    ([{"type": "image", "source": {"type": "base64", "data": "AAAA"}}], "user", 400, "an image block needs a source"),
    ([{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                   "data": base64.b64encode(png(8, 8)).decode()}}], "user", 400,
     "declared type 'image/jpeg' but the bytes are image/png"),
    ([{"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": base64.b64encode(
        b"GIF89a" + struct.pack("<HH", 60000, 60000) + b"\0" * 8).decode()}}], "user", 400, "(max_image_pixels)"),
    ([{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                   "data": base64.b64encode(png(8, 8)).decode()}}], "assistant", 400,
     "image blocks go in user messages"),
    ([{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                   "data": base64.b64encode(png(8, 8)).decode()}}, {"type": "document"}], "user", 400,
     "content blocks of type 'document' are not supported (only text and image)"),
])
def test_gateway_anthropic_refuses_bad_image_blocks(llava_gw, content, role, status, expect):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": content}] if role == "assistant" \
        else [{"role": "user", "content": content + [{"type": "text", "text": "hi"}]}]
    st, _, out = llava_gw.post("/v1/messages", {"model": "vision", "max_tokens": 2, "messages": msgs})
    assert st == status, out
    assert out["type"] == "error" and out["error"]["type"] == "invalid_request_error", out
    assert expect in out["error"]["message"], out
    st, _, out = llava_gw.post("/v1/messages", anthropic_chat("hello", max_tokens=2))
    assert st == 200, out


def test_gateway_image_to_a_target_without_a_projector(llava, tmp_path):
    """The target's capabilities (sipp_endpoint_info.vision) gate images up front: a text-only
    target answers 400 naming the missing projector, before anything runs."""
    from gateway_util import Gateway, local_target
    g = Gateway(tmp_path, local_target())
    try:
        st, _, out = g.post("/v1/chat/completions", {
            "model": "local", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": data_url((llava / "a.png").read_bytes())}},
                {"type": "text", "text": "hi"}]}]})
        assert st == 400, out
        assert "takes no images: it has no vision projector (mmproj)" in out["error"]["message"]
    finally:
        g.stop()


# ---- remote providers: images in their shapes, refused before sending what they cannot take ----

@pytest.fixture(scope="module")
def fake_peer():
    from fault_server import FaultServer
    s = FaultServer()
    yield s
    s.close()


def remote_chat(sipp, args, image, *extra):
    return sipp("chat", *args, "--image", str(image), "--system", "be brief", *extra,
                "What is <__media__> this?", env={"K": "k-0123456789"}, timeout=30)


def test_openai_provider_sends_an_image_url_data_part(sipp, llava, fake_peer):
    before = len(fake_peer.seen)
    r = remote_chat(sipp, ["--provider", "openai_compatible", "--base-url", fake_peer.url("ok"),
                           "--remote-model", "m", "--api-key-env", "K"], llava / "a.png")
    assert r.returncode == 0, r.stderr
    req = fake_peer.seen[-1]
    assert len(fake_peer.seen) == before + 1
    msgs = req["body"]["messages"]
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1]["content"] == [
        {"type": "text", "text": "What is "},
        {"type": "image_url", "image_url": {"url": data_url((llava / "a.png").read_bytes())}},
        {"type": "text", "text": " this?"}]


def test_anthropic_provider_sends_an_image_block(sipp, llava, fake_peer):
    r = remote_chat(sipp, ["--provider", "anthropic", "--base-url", fake_peer.url("ok"),
                           "--remote-model", "claude-test", "--api-key-env", "K"], llava / "a.png")
    assert r.returncode == 0, r.stderr
    b = fake_peer.seen[-1]["body"]
    assert b["system"] == "be brief"
    assert b["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "base64", "media_type": "image/png",
                                    "data": base64.b64encode((llava / "a.png").read_bytes()).decode()}}


@pytest.mark.parametrize("cmd,args,data,expect", [
    ("chat", ["--provider", "openai_compatible", "--remote-model", "m"], b"hello" * 20, "not an image"),
    ("chat", ["--provider", "anthropic", "--remote-model", "c"], b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40,
     "is audio, which is not sent to Anthropic endpoints yet"),
    ("query", ["--provider", "openai_compatible", "--remote-model", "m"], None, "completions API takes no media"),
])
def test_remote_media_refused_before_sending(sipp, llava, fake_peer, tmp_path, cmd, args, data, expect):
    """A part the provider cannot take (or that is not what it says) fails before any request."""
    args += ["--base-url", fake_peer.url("ok"), "--api-key-env", "K"]
    f = tmp_path / "x.bin"
    f.write_bytes(data if data is not None else (llava / "a.png").read_bytes())
    before = len(fake_peer.seen)
    flag = "--audio" if data and data.startswith(b"RIFF") else "--image"
    r = sipp(cmd, *args, flag, str(f), "hi", env={"K": "k-0123456789"}, timeout=30)
    assert r.returncode != 0 and expect in r.stderr, r.stderr
    assert len(fake_peer.seen) == before


def test_gateway_endpoint_sends_images_through_the_sipp_protocol(sipp, llava, llava_gw):
    """sipp chat --gateway --image: the Sipp profile's content parts carry the image to the
    gateway's local target; the answer is llama.cpp's, token for token."""
    want = oracle(llava, llava / "a.png", "Describe the picture.", "-sys", "You look at pictures.")
    r = sipp("chat", "--gateway", f"http://127.0.0.1:{llava_gw.port}", "--target", "vision",
             "--image", str(llava / "a.png"), "--system", "You look at pictures.", "--temperature", "0",
             "-n", str(N_PREDICT), "Describe the picture.", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip("\n") == want


def test_python_binding_chat_with_an_image_equals_llama_mtmd_cli(llava):
    """The Python binding's `images=` option: bytes of the image for the last user turn."""
    want = oracle(llava, llava / "a.png", "Describe the picture.", "-sys", "You look at pictures.")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import sipp\n"
        "c = sipp.Client()\n"
        "ep = c.add_local('v', sys.argv[2], mmproj=sys.argv[3], n_threads=2)\n"
        "r = ep.chat([('system', 'You look at pictures.'), ('user', 'Describe the picture.')],\n"
        "            images=[open(sys.argv[4], 'rb').read()], temperature=0, max_tokens=%d).result()\n"
        "sys.stdout.write(r.text)\n" % N_PREDICT)
    root = pathlib.Path(__file__).parents[2]
    lib = BIN_DIR.parent / "lib/libsipp.so"
    env = dict(os.environ, SIPP_LIBRARY=str(lib))
    # An ASan build of libsipp (scripts/test's build-asan) loads into an uninstrumented python
    # only with the ASan runtime preloaded; CPython's own allocations at exit are not ours.
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    asan = [l.split("=>")[1].split()[0] for l in ldd.splitlines() if "libasan" in l and "=>" in l]
    if asan:
        env.update({"LD_PRELOAD": asan[0], "ASAN_OPTIONS": "detect_leaks=0"})
    r = subprocess.run([sys.executable, "-c", code, str(root / "bindings/python"), str(llava / "text.gguf"),
                        str(llava / "mmproj.gguf"), str(llava / "a.png")], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == want
