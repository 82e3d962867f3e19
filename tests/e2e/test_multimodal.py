"""Multimodal (issue 17): images through llama.cpp's mtmd, checked against llama.cpp itself.

The models are random weights of real shapes from sipp-make-model (llava-text + llava-mmproj);
the oracle is llama.cpp's own `llama-mtmd-cli` on the same files: at temperature 0, Sipp's text
for an image equals its text token for token. PNGs are written here with zlib (no PIL)."""
import os
import pathlib
import struct
import subprocess
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


def oracle(d, image, prompt):
    """llama-mtmd-cli's greedy text for one image and a user prompt (marker in front)."""
    assert MTMD_CLI.exists(), f"{MTMD_CLI} is missing: scripts/setup builds it"
    r = subprocess.run([str(MTMD_CLI), "-m", str(d / "text.gguf"), "--mmproj", str(d / "mmproj.gguf"),
                        "--image", str(image), "-p", prompt, "--temp", "0", "-n", str(N_PREDICT),
                        "-t", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip("\n")


def test_llama_cpp_loads_the_random_pair_and_the_image_steers_it(llava):
    """The projector is one clip.cpp loads and pairs with the text model (n_embd 256 both
    sides); different images give different text, so an oracle match means something."""
    a = oracle(llava, llava / "a.png", "Describe the picture.")
    b = oracle(llava, llava / "b.png", "Describe the picture.")
    assert a and b and a != b
