"""Audio input (issue 17): audio clips through llama.cpp's mtmd, checked against llama.cpp itself.

The models are random weights of real shapes from sipp-make-model (llava-text + qwen2a-mmproj, a
Qwen2-Audio-style Whisper encoder); the oracle is llama.cpp's own `llama-mtmd-cli` on the same
files: at temperature 0, Sipp's text for a WAV equals its text token for token. WAVs are written
here with Python's wave module (a 1 s sine, a 20 s chirp).

The random pair's greedy picks can sit close (its answers repeat one or two tokens, and two
candidates may differ in the last bits): both sides run one thread, with llama-mtmd-cli's
context size, and the clips are ones whose picks are not near-ties (a 1 s 1000 Hz sine is one:
Sipp and llama-mtmd-cli then part after a few tokens, by float rounding, not by a bug)."""
import base64
import json
import math
import os
import pathlib
import struct
import subprocess
import sys
import wave

import pytest

from conftest import BIN_DIR

LLAMA_BIN = pathlib.Path(os.environ.get("SIPP_LLAMA_SERVER", str(BIN_DIR / "llama-server"))).parent
MTMD_CLI = LLAMA_BIN / "llama-mtmd-cli"
N_PREDICT = 12
PROMPT = "Transcribe the audio."
RAW = "<|im_start|>user\n<__media__>" + PROMPT + "<|im_end|>\n<|im_start|>assistant\n"


def sine_wav(path, hz, seconds=1.0, rate=16000):
    """A mono 16-bit PCM WAV of a sine (the pitch picks the clip)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * i / rate)))
                               for i in range(int(seconds * rate))))
    return path


def chirp_wav(path, seconds=20.0, rate=16000):
    """A mono 16-bit PCM WAV of a falling, pulsing chirp (fills most of a 30 s chunk)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(
            struct.pack("<h", int(12000 * math.sin(2 * math.pi * (1500 - 30 * t) * t) * (0.5 + 0.5 * math.sin(3 * t))))
            for t in (i / rate for i in range(int(seconds * rate)))))
    return path


def wav_bytes(tag, channels, rate, bits, data, block=None):
    """A RIFF/WAVE file with any fmt fields (for the bad-input cases)."""
    block = block if block is not None else channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(text model, audio projector, vision projector, two different WAVs) written once."""
    if not os.environ.get("SIPP_LLAMA_SRC"):
        pytest.fail("SIPP_LLAMA_SRC must point at the llama.cpp source (ctest sets it)")
    d = tmp_path_factory.mktemp("audio")
    for shape, name in (("llava-text", "text.gguf"), ("qwen2a-mmproj", "audio.gguf"),
                        ("llava-mmproj", "vision.gguf")):
        r = subprocess.run([str(BIN_DIR / "sipp-make-model"), "--shape", shape, "--out", str(d / name)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    sine_wav(d / "a440.wav", 440)
    chirp_wav(d / "chirp.wav")
    return d


def oracle(d, audio, prompt, *extra):
    """llama-mtmd-cli's greedy text for one clip and a user prompt (marker in front)."""
    assert MTMD_CLI.exists(), f"{MTMD_CLI} is missing: scripts/setup builds it"
    r = subprocess.run([str(MTMD_CLI), "-m", str(d / "text.gguf"), "--mmproj", str(d / "audio.gguf"),
                        "--audio", str(audio), "-p", prompt, "--temp", "0", "-n", str(N_PREDICT),
                        "-t", "1", *extra], capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip("\n")


def sipp_run(sipp, *args):
    # One thread on both sides: the random pair's greedy picks can sit close enough that a
    # different split of the work (threads) flips one; with one thread each, Sipp and
    # llama-mtmd-cli compute the same sums.
    return sipp(*args, env={"OMP_WAIT_POLICY": "passive", "SIPP_THREADS": "1"}, timeout=300)


def one_line_error(r):
    assert r.returncode != 0 and r.stdout.strip() == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    return lines[0]


def test_llama_cpp_loads_the_audio_encoder_and_the_clip_steers_it(pair):
    """qwen2a-mmproj is an encoder clip.cpp loads and pairs with llava-text (256 wide); two
    clips give different text, so an oracle match means something."""
    a = oracle(pair, pair / "a440.wav", PROMPT)
    b = oracle(pair, pair / "chirp.wav", PROMPT)
    assert a and b and a != b


def test_query_with_audio_equals_llama_mtmd_cli(sipp, pair):
    """The oracle: mtmd tokenizes the clip (Whisper mel, 750 positions for its 30 s chunk), the
    engine encodes it and feeds the embeddings through the compute seam, greedy decoding gives
    llama-mtmd-cli's text token for token."""
    for clip in ("a440.wav", "chirp.wav"):
        want = oracle(pair, pair / clip, PROMPT)
        r = sipp_run(sipp, "query", "--json", "-m", str(pair / "text.gguf"), "--mmproj",
                     str(pair / "audio.gguf"), "--audio", str(pair / clip), "--temperature", "0",
                     "-n", str(N_PREDICT), RAW)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["text"] == want
        assert out["usage"]["output_tokens"] == N_PREDICT
        assert out["usage"]["input_tokens"] > 750
        assert out["stats"]["media_chunks"] == 1 and out["stats"]["encode_ms"] > 0


def test_chat_with_audio_and_a_system_turn_equals_llama_mtmd_cli(sipp, pair):
    """sipp chat --audio: the marker goes in front of the user turn, the template renders it."""
    want = oracle(pair, pair / "a440.wav", PROMPT, "-sys", "You listen.")
    r = sipp_run(sipp, "chat", "-m", str(pair / "text.gguf"), "--mmproj", str(pair / "audio.gguf"),
                 "--audio", str(pair / "a440.wav"), "--system", "You listen.",
                 "--temperature", "0", "-n", str(N_PREDICT), PROMPT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip("\n") == want


def chat_audio(sipp, pair, path, mmproj="audio.gguf", flag="--audio"):
    args = ["chat", "-m", str(pair / "text.gguf")]
    if mmproj:
        args += ["--mmproj", str(pair / mmproj)]
    return sipp_run(sipp, *args, flag, str(path), "--temperature", "0", "-n", "2", PROMPT)


PCM = struct.pack("<160h", *([1000, -1000] * 80))


@pytest.mark.parametrize("name,data,expect", [
    ("zero.wav", lambda: wav_bytes(1, 1, 16000, 16, b""), "no samples (zero-length audio)"),
    ("half-frame.wav", lambda: wav_bytes(1, 2, 16000, 16, b"\x01\x02"), "zero-length audio"),
    ("float16.wav", lambda: wav_bytes(3, 1, 16000, 16, PCM), "unsupported WAV sample format (format tag 0x0003, 16 bits)"),
    ("adpcm.wav", lambda: wav_bytes(2, 1, 16000, 4, PCM, block=256), "unsupported WAV sample format (format tag 0x0002"),
    ("pcm12.wav", lambda: wav_bytes(1, 1, 16000, 12, PCM, block=2), "unsupported WAV sample format"),
    ("rate0.wav", lambda: wav_bytes(1, 1, 0, 16, PCM), "fmt chunk is inconsistent"),
    ("no-data.wav", lambda: wav_bytes(1, 1, 16000, 16, PCM)[:44 - 8], "no data chunk"),
    ("no-fmt.wav", lambda: b"RIFF\x24\x00\x00\x00WAVEdata\x04\x00\x00\x00\x00\x00\x00\x00",
     "data chunk comes before any fmt chunk"),
    ("text.wav", lambda: b"hello, I am not audio at all\n" * 10, "not audio (WAV, MP3 or FLAC)"),
    ("image.wav", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "the bytes are image/png, not audio"),
    ("tiny.flac", lambda: b"fLaC\x00\x00", "too short to be audio"),
    ("empty.wav", lambda: b"", "the audio is empty (0 bytes)"),
])
def test_bad_audio_is_a_clear_error(sipp, pair, tmp_path, name, data, expect):
    """Each bad clip is refused with one clear line before any decoder runs, and the process
    exits normally (returncode 1, not a signal)."""
    p = tmp_path / name
    p.write_bytes(data())
    r = chat_audio(sipp, pair, p)
    assert r.returncode == 1, r.stderr[-2000:]
    assert expect in one_line_error(r)


def test_corrupt_samples_after_a_good_header_are_decoded_by_llama_cpp(sipp, pair, tmp_path):
    """A WAV whose header is right but whose data chunk declares more than the file holds (a
    stream that never wrote its size) is read for what is there, as llama.cpp's decoder does."""
    full = (pair / "a440.wav").read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full[:len(full) // 2])
    r = chat_audio(sipp, pair, cut)
    assert r.returncode == 0, r.stderr[-2000:]


def test_audio_on_a_vision_projector_is_unsupported(sipp, pair):
    msg = one_line_error(chat_audio(sipp, pair, pair / "a440.wav", mmproj="vision.gguf"))
    assert "media[0] is audio but this endpoint's projector takes no audio" in msg


def test_audio_on_a_text_only_model_is_unsupported(sipp, pair):
    msg = one_line_error(chat_audio(sipp, pair, pair / "a440.wav", mmproj=None))
    assert "without a projector (mmproj)" in msg


def test_an_image_on_the_audio_projector_is_unsupported(sipp, pair, tmp_path):
    from test_multimodal import png
    p = tmp_path / "a.png"
    p.write_bytes(png(8, 8))
    msg = one_line_error(chat_audio(sipp, pair, p, flag="--image"))
    assert "media[0] is an image but this endpoint's projector takes no images" in msg


def python(code, *args):
    root = pathlib.Path(__file__).parents[2]
    lib = BIN_DIR.parent / "lib/libsipp.so"
    env = dict(os.environ, SIPP_LIBRARY=str(lib))
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    asan = [l.split("=>")[1].split()[0] for l in ldd.splitlines() if "libasan" in l and "=>" in l]
    if asan:
        env.update({"LD_PRELOAD": asan[0], "ASAN_OPTIONS": "detect_leaks=0"})
    return subprocess.run([sys.executable, "-c", code, str(root / "bindings/python"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_capabilities_report_audio_input(pair):
    """sipp_endpoint_info.audio_in comes from the projector: the audio encoder says yes (and no
    vision), the vision projector says no."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import sipp\n"
            "c = sipp.Client()\n"
            "for i, p in enumerate(sys.argv[3:]):\n"
            "    n = c.add_local('e%d' % i, sys.argv[2], mmproj=p, n_threads=2).info()\n"
            "    print(n.audio_in, n.vision, n.audio_out)\n")
    r = python(code, pair / "text.gguf", pair / "audio.gguf", pair / "vision.gguf")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[:2] == ["True False False", "False True False"]


LISTEN = "Transcribe audio to text"  # SIPP_LISTEN_PROMPT, llama-server's transcription preset


@pytest.mark.parametrize("clip,language", [("a440.wav", None), ("chirp.wav", None), ("a440.wav", "en")])
def test_listen_equals_llama_mtmd_cli(sipp, pair, clip, language):
    """sipp listen FILE (sipp_listen): one user turn, the instruction then the clip, rendered by the
    chat template at temperature 0 — llama-mtmd-cli's text for the same turn, token for token."""
    text = LISTEN + (f" (language: {language})" if language else "")
    want = oracle(pair, pair / clip, text + "<__media__>")
    extra = ["--language", language] if language else []
    r = sipp_run(sipp, "listen", "--json", "-m", str(pair / "text.gguf"), "--mmproj", str(pair / "audio.gguf"),
                 "-n", str(N_PREDICT), *extra, str(pair / clip))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["text"] == want
    assert out["stats"]["media_chunks"] == 1


def test_listen_with_a_prompt_and_streaming(sipp, pair):
    """--prompt replaces the instruction; without --json the text streams to stdout."""
    want = oracle(pair, pair / "chirp.wav", PROMPT + "<__media__>")
    r = sipp_run(sipp, "listen", "-m", str(pair / "text.gguf"), "--mmproj", str(pair / "audio.gguf"),
                 "-n", str(N_PREDICT), "--prompt", PROMPT, str(pair / "chirp.wav"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip("\n") == want


@pytest.mark.parametrize("mmproj,expect", [
    (None, "listen: this endpoint ('llama') takes no audio"),
    ("vision.gguf", "listen: this endpoint ('llama') takes no audio"),
])
def test_listen_on_an_endpoint_without_audio_is_unsupported(sipp, pair, mmproj, expect):
    args = ["listen", "-m", str(pair / "text.gguf")] + (["--mmproj", str(pair / mmproj)] if mmproj else [])
    msg = one_line_error(sipp_run(sipp, *args, str(pair / "a440.wav")))
    assert expect in msg


def test_listen_refuses_bad_audio(sipp, pair, tmp_path):
    p = tmp_path / "zero.wav"
    p.write_bytes(wav_bytes(1, 1, 16000, 16, b""))
    r = sipp_run(sipp, "listen", "-m", str(pair / "text.gguf"), "--mmproj", str(pair / "audio.gguf"), str(p))
    assert r.returncode == 1
    assert "zero-length audio" in one_line_error(r)


# ---- gateway: OpenAI input_audio content parts ---------------------------------------------

@pytest.fixture(scope="module")
def audio_gw(pair, tmp_path_factory):
    """A gateway with the audio pair as target 'ears' and the vision pair as 'eyes'; one thread
    and llama-mtmd-cli's context size (see sipp_run: the same sums on both sides)."""
    from gateway_util import Gateway, local_target
    g = Gateway(tmp_path_factory.mktemp("gwaudio"),
                local_target("ears", pair / "text.gguf", mmproj=str(pair / "audio.gguf"),
                             n_ctx=4096, n_parallel=1, n_threads=1, context_shift=False)
                + "\n" + local_target("eyes", pair / "text.gguf", mmproj=str(pair / "vision.gguf"),
                                      n_ctx=1024, n_parallel=1, n_threads=1, context_shift=False),
                top="max_request_bytes = 41943040\nmax_audio_seconds = 30\n",
                env={"OMP_WAIT_POLICY": "passive"})
    yield g
    g.stop()


def input_audio(b, fmt="wav"):
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(b).decode(), "format": fmt}}


def audio_chat(parts, model="ears", **extra):
    body = {"model": model, "temperature": 0, "max_tokens": N_PREDICT,
            "messages": [{"role": "system", "content": "You listen."}, {"role": "user", "content": parts}]}
    body.update(extra)
    return body


def test_gateway_openai_input_audio_equals_llama_mtmd_cli(pair, audio_gw):
    """An input_audio part before the text gives llama.cpp's answer for the same clip, token for
    token; the other clip gives other text."""
    for clip in ("a440.wav", "chirp.wav"):
        want = oracle(pair, pair / clip, PROMPT, "-sys", "You listen.")
        st, _, out = audio_gw.post("/v1/chat/completions", audio_chat([
            input_audio((pair / clip).read_bytes()), {"type": "text", "text": PROMPT}]))
        assert st == 200, out
        assert out["choices"][0]["message"]["content"] == want


LONG = lambda: wav_bytes(1, 1, 8000, 8, b"\x80" * (8000 * 31))  # 31 s of 8-bit silence


@pytest.mark.parametrize("part,model,status,code,expect", [
    (lambda: input_audio(b"fLaC\x00\x00", "flac"), "ears", 400, "invalid_json", "too short to be audio"),
    (lambda: input_audio(wav_bytes(1, 1, 16000, 16, b"")), "ears", 400, "invalid_json", "zero-length audio"),
    (lambda: input_audio(wav_bytes(2, 1, 16000, 4, PCM, block=256)), "ears", 400, "invalid_json",
     "unsupported WAV sample format"),
    (lambda: input_audio(b"plain text, not a sound at all"), "ears", 400, "invalid_json", "not audio"),
    (lambda: input_audio(wav_bytes(1, 1, 16000, 16, PCM), "mp3"), "ears", 400, "invalid_json",
     "declared type 'audio/mpeg' but the bytes are audio/wav"),
    (lambda: input_audio(wav_bytes(1, 1, 16000, 16, PCM), "ogg"), "ears", 400, "invalid_json",
     "input_audio.format must be wav, mp3 or flac"),
    (lambda: {"type": "input_audio", "input_audio": {"data": "@@@@", "format": "wav"}}, "ears", 400,
     "invalid_json", "invalid character"),
    (lambda: {"type": "input_audio", "input_audio": "x"}, "ears", 400, "invalid_json",
     "needs input_audio.data (base64) and input_audio.format"),
    (lambda: input_audio(LONG()), "ears", 400, "invalid_json",
     "the request's audio is 31.0 seconds, over the limit of 30 seconds (max_audio_seconds)"),
    (lambda: input_audio(wav_bytes(1, 1, 16000, 16, PCM)), "eyes", 400, "invalidrequest",
     "target 'eyes' takes no audio"),
])
def test_gateway_refuses_bad_audio_parts(audio_gw, part, model, status, code, expect):
    """Each bad clip: 400 naming the problem (the limit by its key); the gateway goes on serving,
    text and audio alike."""
    st, _, out = audio_gw.post("/v1/chat/completions", audio_chat([part(), {"type": "text", "text": "hi"}], model=model))
    assert st == status, out
    assert out["error"]["code"] == code and expect in out["error"]["message"], out
    st, _, out = audio_gw.post("/v1/chat/completions", audio_chat("hello", max_tokens=2))
    assert st == 200, out


def test_gateway_audio_limit_counts_all_clips(pair, audio_gw):
    """Two 16 s clips are 32 s of audio: over max_audio_seconds = 30 together; one is fine."""
    clip16 = wav_bytes(1, 1, 8000, 8, b"\x80" * (8000 * 16))
    st, _, out = audio_gw.post("/v1/chat/completions", audio_chat([input_audio(clip16), input_audio(clip16),
                                                                   {"type": "text", "text": "hi"}]))
    assert st == 400 and "32.0 seconds, over the limit of 30 seconds (max_audio_seconds)" in out["error"]["message"], out
    st, _, out = audio_gw.post("/v1/chat/completions", audio_chat([input_audio(clip16), {"type": "text", "text": "hi"}],
                                                                  max_tokens=2))
    assert st == 200, out


# ---- gateway: OpenAI /v1/audio/transcriptions (multipart/form-data) -------------------------

def multipart(fields, files=(), boundary="sippboundary7MA4YWxk"):
    """A multipart/form-data body: fields {name: text}, files [(name, filename, type, bytes)]."""
    out = b""
    for k, v in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").encode()
    for name, filename, ctype, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def transcribe(gw, fields, files=(), token=None, ctype=None):
    body, ct = multipart(fields, files)
    return gw.post("/v1/audio/transcriptions", body, token=token, headers={"content-type": ctype or ct})


def test_gateway_transcription_equals_sipp_listen(sipp, pair, audio_gw):
    """POST /v1/audio/transcriptions (model, file; temperature 0) gives `sipp listen`'s text for
    the same clip (sipp_listen on the target's endpoint: llama-mtmd-cli's text, tested above);
    response_format text gives the same text as text/plain; a prompt and a language reach the turn."""
    for clip, extra, args in (("a440.wav", {}, []), ("chirp.wav", {"language": "en"}, ["--language", "en"]),
                              ("a440.wav", {"prompt": PROMPT}, ["--prompt", PROMPT])):
        r = sipp_run(sipp, "listen", "--json", "-m", str(pair / "text.gguf"), "--mmproj",
                     str(pair / "audio.gguf"), *args, str(pair / clip))
        assert r.returncode == 0, r.stderr
        want = json.loads(r.stdout)["text"]
        audio = (pair / clip).read_bytes()
        # the part's type is not the bytes' judge: curl sends audio/x-wav for a .wav
        st, _, out = transcribe(audio_gw, {"model": "ears", "temperature": "0", **extra},
                                [("file", clip, "audio/x-wav" if extra else "audio/wav", audio)])
        assert st == 200, out
        assert out == {"text": want}
    st, h, out = transcribe(audio_gw, {"model": "ears", "response_format": "text"},
                            [("file", "a.wav", "application/octet-stream", (pair / "a440.wav").read_bytes())])
    assert st == 200 and h["content-type"].startswith("text/plain"), out
    r = sipp_run(sipp, "listen", "--json", "-m", str(pair / "text.gguf"), "--mmproj", str(pair / "audio.gguf"),
                 str(pair / "a440.wav"))
    assert out.decode() == json.loads(r.stdout)["text"]
    assert 'sipp_requests_total{operation="transcribe",target="ears",status="2' in audio_gw.metrics()


PCM1 = lambda: wav_bytes(1, 1, 16000, 16, b"\x00\x01" * 1600)


@pytest.mark.parametrize("fields,files,ctype,status,code,expect", [
    ({"model": "ears"}, [], None, 400, "invalidrequest", "missing field 'file'"),
    ({}, [("file", "a.wav", "audio/wav", PCM1)], None, 400, "invalidrequest", "missing field 'model'"),
    ({"model": "ears"}, [("file", "a.wav", "audio/wav", PCM1)], "application/json", 415,
     "unsupported_media_type", "multipart/form-data"),
    ({"model": "ears"}, [("file", "a.txt", "text/plain", lambda: b"plain text, not a sound at all")], None,
     400, "invalidrequest", "not audio"),
    ({"model": "ears"}, [("file", "z.wav", "audio/wav", lambda: wav_bytes(1, 1, 16000, 16, b""))], None,
     400, "invalidrequest", "zero-length audio"),
    ({"model": "ears"}, [("file", "long.wav", "audio/wav", LONG)], None, 400, "invalidrequest",
     "over the limit of 30 seconds (max_audio_seconds)"),
    ({"model": "nobody"}, [("file", "a.wav", "audio/wav", PCM1)], None, 404, "resolution",
     "unknown target 'nobody'"),
    ({"model": "eyes"}, [("file", "a.wav", "audio/wav", PCM1)], None, 400, "invalidrequest",
     "target 'eyes' takes no audio"),
    ({"model": "ears", "response_format": "verbose_json"}, [("file", "a.wav", "audio/wav", PCM1)], None, 400,
     "invalidrequest", "response_format 'verbose_json' is not supported"),
])
def test_gateway_transcription_refusals(audio_gw, fields, files, ctype, status, code, expect):
    """Each bad request: a 4xx naming the problem; the gateway serves on (a transcription too)."""
    st, _, out = transcribe(audio_gw, fields, [(n, f, t, d()) for n, f, t, d in files], ctype=ctype)
    assert st == status, out
    assert out["error"]["code"] == code and expect in out["error"]["message"], out
    st, _, out = transcribe(audio_gw, {"model": "ears"}, [("file", "a.wav", "audio/wav", PCM1())])
    assert st == 200 and isinstance(out["text"], str), out


def test_gateway_transcription_malformed_multipart(audio_gw):
    """A body cut inside its part, and one without a boundary: 400, the gateway serves on."""
    body, ct = multipart({"model": "ears"}, [("file", "a.wav", "audio/wav", PCM1())])
    for b, c in ((body[:-40], ct), (body, "multipart/form-data")):
        st, _, out = audio_gw.post("/v1/audio/transcriptions", b, headers={"content-type": c})
        assert st == 400 and "malformed" in out["error"]["message"], out
    st, _, out = transcribe(audio_gw, {"model": "ears"}, [("file", "a.wav", "audio/wav", PCM1())])
    assert st == 200, out


def test_gateway_transcription_auth_and_permissions(pair, tmp_path):
    """Without a token: 401; a caller whose targets leave the audio target out: 403 naming it;
    a caller with it: 200. Over max_media_bytes: 413 naming the key. A remote target:
    unsupported (400), refused before anything is sent."""
    from gateway_util import Gateway, local_target
    g = Gateway(tmp_path, local_target("ears", pair / "text.gguf", mmproj=str(pair / "audio.gguf"),
                                       n_ctx=4096, n_parallel=1, n_threads=1)
                + "\n" + local_target("plain", pair / "text.gguf", n_ctx=512, n_parallel=1, n_threads=1)
                + '\n[[targets]]\nname = "far"\ntype = "openai_compatible"\nmodel = "any"\n'
                + 'base_url = "http://127.0.0.1:1/v1"\n'
                + '\n[[tokens]]\nenv = "TOK_A"\ncaller = "alice"\n'
                + '\n[[tokens]]\nenv = "TOK_B"\ncaller = "bob"\ntargets = ["plain"]\n',
                top="max_media_bytes = 65536\n", env={"TOK_A": "secret-a", "TOK_B": "secret-b",
                                                       "OMP_WAIT_POLICY": "passive"})
    try:
        f = [("file", "a.wav", "audio/wav", PCM1())]
        st, _, out = transcribe(g, {"model": "ears"}, f)
        assert st == 401, out
        st, _, out = transcribe(g, {"model": "ears"}, f, token="secret-b")
        assert st == 403 and "may not use target 'ears'" in out["error"]["message"], out
        big = [("file", "b.wav", "audio/wav", wav_bytes(1, 1, 16000, 16, b"\x00" * 70000))]
        st, _, out = transcribe(g, {"model": "ears"}, big, token="secret-a")
        assert st == 413 and "max_media_bytes" in out["error"]["message"], out
        st, _, out = transcribe(g, {"model": "far"}, f, token="secret-a")
        assert st == 400 and "target 'far' is remote: transcription is unsupported" in out["error"]["message"], out
        st, _, out = transcribe(g, {"model": "ears"}, f, token="secret-a")
        assert st == 200 and isinstance(out["text"], str), out
    finally:
        g.stop()


def test_openai_node_sdk_transcription(pair, audio_gw):
    """The OpenAI Node SDK, unchanged (installed as test_gateway_sdk.py does):
    audio.transcriptions.create gives the route's text, as JSON and as text."""
    import shutil
    from test_gateway_sdk import sdk_dir
    d = sdk_dir()
    script = d / "gateway_audio_sdk.mjs"  # next to node_modules so `import "openai"` resolves
    shutil.copy(pathlib.Path(__file__).with_name("gateway_audio_sdk.mjs"), script)
    st, _, want = transcribe(audio_gw, {"model": "ears", "temperature": "0"},
                             [("file", "a440.wav", "audio/wav", (pair / "a440.wav").read_bytes())])
    assert st == 200, want
    r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "GW_URL": f"http://127.0.0.1:{audio_gw.port}/v1",
                            "GW_MODEL": "ears", "GW_FILE": str(pair / "a440.wav")})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["json"]["text"] == want["text"]
    assert out["text"] == want["text"]
