#!/usr/bin/env python3
"""Media benchmark (docs/benchmarks.md, issue 17), one command, prints ratios:

    /usr/bin/python3 bench/media_bench.py [--images 6] [--threads 2] [--shape b|tiny]

Writes (once, under build/bench-models) a random-weight LLaVA-style pair with sipp-make-model:
`b` (default) is llava-b-text + llava-b-mmproj, a CLIP ViT-B/16 projector (224x224, 12 blocks
of 768, 196 image positions, f16) into a 4-layer 768-wide decoder (q8_0); `tiny` is the
test pair (llava-text + llava-mmproj). Then writes --images different PNGs (640x480, with
zlib: no PIL) and runs `sipp-bench-engine --scenarios media` on them: Sipp's local endpoint
in-process and llama-server (--mmproj, /v1/chat/completions with a data: URL) take turns
image by image; the first image warms both up. Prints the Markdown table and the load
average. Nothing here is a test."""
import argparse
import glob
import os
import pathlib
import socket
import struct
import subprocess
import tempfile
import zlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "bin"
SHAPES = {"b": ("llava-b-text", "q8_0", "llava-b-mmproj", "f16"),
          "tiny": ("llava-text", "q8_0", "llava-mmproj", "q8_0")}


def png(w, h, seed):
    """An 8-bit RGB PNG of a deterministic pattern (seed picks the pattern)."""
    rows = bytearray()
    for y in range(h):
        rows.append(0)
        for x in range(w):
            rows += bytes(((x * seed + y) & 255, (y * 3 + seed * 40) & 255, ((x ^ y) * seed) & 255))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + chunk(b"IEND", b""))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make(shape, wtype, out):
    if out.exists():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    src = os.environ.get("SIPP_LLAMA_SRC") or (sorted(glob.glob(
        os.path.expanduser("~/.cache/sipp/llama.cpp/src-*"))) or [""])[-1]
    subprocess.run([str(BIN / "sipp-make-model"), "--shape", shape, "--type", wtype, "--out",
                    str(out)], check=True, env={**os.environ, "SIPP_LLAMA_SRC": src},
                   stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6, help="images, the first one a warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="b")
    args = ap.parse_args()
    if not 2 <= args.images <= 16:
        ap.error("--images must be in [2, 16]")
    text_shape, text_type, proj_shape, proj_type = SHAPES[args.shape]
    models = ROOT / "build" / "bench-models"
    text = models / f"{text_shape}-{text_type}.gguf"
    proj = models / f"{proj_shape}-{proj_type}.gguf"
    make(text_shape, text_type, text)
    make(proj_shape, proj_type, proj)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="sipp-media-bench-"))
    images = []
    for i in range(args.images):
        p = tmp / f"img-{i}.png"
        p.write_bytes(png(640, 480, i + 1))
        images += ["--image", str(p)]
    before = os.getloadavg()
    r = subprocess.run([str(BIN / "sipp-bench-engine"), "--model", str(text), "--mmproj", str(proj),
                        "--threads", str(args.threads), "--scenarios", "media",
                        "--server", str(BIN / "llama-server"),
                        "--port", str(free_port())] + images, cwd=ROOT)
    after = os.getloadavg()
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()
    print(f"\nmodels: {text.name} ({text.stat().st_size >> 20} MiB) + {proj.name} "
          f"({proj.stat().st_size >> 20} MiB); load average before {before[0]:.2f}, "
          f"after {after[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    return r.returncode


if __name__ == "__main__":
    raise SystemExit(main())
