#!/usr/bin/env python3
"""Gateway benchmarks (docs/benchmarks.md), one command, prints ratios:

    /usr/bin/python3 bench/gateway_bench.py [--reps 3] [--only latency,wrk,relay]
                                            [--relay-threads 2]

(a) latency: added ms of the gateway, finite and streaming (sipp-bench-gateway latency, the
    chat test model, 8 tokens, interleaved with libsipp's local endpoint on the same model);
(b) wrk: /healthz and a tiny /v1/query (1 token) with 64 connections vs llama-server's /health
    on the same machine;
(c) relay: tokens/s of one 512-token stream through the gateway vs direct (llama-135m Q8_0
    with random weights from sipp-make-model, ignore_eos).
Each scenario runs --reps times; the median is reported. Nothing here is a test."""
import argparse
import glob
import json
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "build" / "bin"
MODELS = pathlib.Path(os.environ.get("SIPP_TEST_MODELS_DIR", ROOT.parent / "shared" / "models"))
CHAT = MODELS / "tinystories-instruct-3m-soda-chat-Q4_0.gguf"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class Gateway:
    def __init__(self, tmp, model, threads, n_ctx):
        self.port, self.mport = free_port(), free_port()
        cfg = pathlib.Path(tmp) / f"gw-{self.port}.toml"
        cfg.write_text(f"""public_bind = "127.0.0.1:{self.port}"
management_bind = "127.0.0.1:{self.mport}"
max_connections = 256
max_connections_per_ip = 0
[[targets]]
name = "bench"
type = "local"
model = "{model}"
backend = "cpu"
[targets.runtime]
n_ctx = {n_ctx}
n_parallel = 1
n_threads = {threads}
ignore_eos = true
""")
        self.log = open(pathlib.Path(tmp) / f"gw-{self.port}.log", "w")
        self.proc = subprocess.Popen([str(BIN / "sipp-gateway"), "serve", "--config", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        wait_http(f"http://127.0.0.1:{self.mport}/readyz")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def bench_c(mode, model, gw, threads, extra):
    r = subprocess.run([str(BIN / "sipp-bench-gateway"), mode, "--model", str(model), "--url", gw.url,
                        "--target", "bench", "--threads", str(threads)] + extra,
                       capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def wrk(url, lua=None, seconds=5):
    cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency"]
    if lua:
        cmd += ["-s", lua]
    r = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"Requests/sec:\s+([0-9.]+)", r.stdout)
    if not m:
        raise RuntimeError(r.stdout + r.stderr)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    return float(m.group(1)), int(non2xx.group(1)) if non2xx else 0


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="latency,wrk,relay")
    ap.add_argument("--n", type=int, default=200, help="requests per latency run and side")
    ap.add_argument("--relay-threads", type=int, default=2,
                    help="engine threads of the relay model on both sides (on a 2-core machine "
                         "1 leaves a core for the gateway's and the client's I/O)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    tmp = tempfile.mkdtemp(prefix="sipp-gw-bench-")
    report = {}

    if "latency" in only or "wrk" in only:
        gw = Gateway(tmp, CHAT, 1, 256)
        try:
            if "latency" in only:
                runs = [bench_c("latency", CHAT, gw, 1, ["--n", str(args.n), "--max-tokens", "8"])
                        for _ in range(args.reps)]
                for kind in ("finite", "streaming"):
                    report[f"latency_{kind}"] = {
                        k: med([r[kind][k] for r in runs])
                        for k in ("direct_p50_ms", "gateway_p50_ms", "added_p50_ms", "direct_p99_ms",
                                  "gateway_p99_ms", "added_p99_ms", "paired_diff_p50_ms",
                                  "paired_diff_p99_ms")}
            if "wrk" in only:
                lua = pathlib.Path(tmp) / "query.lua"
                lua.write_text('wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
                               'wrk.body = \'{"model":"bench","prompt":"Hi","max_tokens":1}\'\n')
                hz = [wrk(f"http://127.0.0.1:{gw.mport}/healthz") for _ in range(args.reps)]
                q = [wrk(gw.url + "/v1/query", str(lua)) for _ in range(args.reps)]
        finally:
            gw.stop()
        if "wrk" in only:
            port = free_port()
            ls = subprocess.Popen([str(BIN / "llama-server"), "-m", str(CHAT), "--port", str(port),
                                   "--host", "127.0.0.1", "-t", "1", "-c", "256", "-np", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_http(f"http://127.0.0.1:{port}/health")
                lh = [wrk(f"http://127.0.0.1:{port}/health") for _ in range(args.reps)]
            finally:
                ls.terminate()
                ls.wait(timeout=30)
            report["wrk"] = {
                "gateway_healthz_rps": med([x[0] for x in hz]),
                "gateway_query_rps": med([x[0] for x in q]),
                "gateway_query_non2xx": max(x[1] for x in q),
                "llama_server_health_rps": med([x[0] for x in lh]),
            }
            w = report["wrk"]
            w["healthz_ratio"] = w["gateway_healthz_rps"] / w["llama_server_health_rps"]
            w["query_ratio"] = w["gateway_query_rps"] / w["llama_server_health_rps"]

    if "relay" in only:
        model = ROOT / "build" / "bench-models" / "llama-135m-q8_0.gguf"
        if not model.exists():
            model.parent.mkdir(parents=True, exist_ok=True)
            src = os.environ.get("SIPP_LLAMA_SRC") or (sorted(glob.glob(
                os.path.expanduser("~/.cache/sipp/llama.cpp/src-*"))) or [""])[-1]
            subprocess.run([str(BIN / "sipp-make-model"), "--shape", "llama-135m", "--type", "q8_0",
                            "--out", str(model)], check=True, env={**os.environ, "SIPP_LLAMA_SRC": src},
                           stdout=subprocess.DEVNULL)
        gw = Gateway(tmp, model, args.relay_threads, 1024)
        try:
            r = bench_c("relay", model, gw, args.relay_threads,
                        ["--max-tokens", "512", "--reps", str(args.reps)])
        finally:
            gw.stop()
        report["relay"] = r["relay"]

    print(json.dumps(report, indent=2))
    print("\nsummary (median of %d runs):" % args.reps)
    for kind in ("finite", "streaming"):
        x = report.get(f"latency_{kind}")
        if x:
            print(f"  added latency {kind:9s}: p50 {x['added_p50_ms']:+.3f} ms (target <= 0.5), "
                  f"p99 {x['added_p99_ms']:+.3f} ms (target <= 2)  "
                  f"[direct p50 {x['direct_p50_ms']:.2f} ms, gateway p50 {x['gateway_p50_ms']:.2f} ms]")
    if "wrk" in report:
        w = report["wrk"]
        print(f"  wrk -c64 /healthz: {w['gateway_healthz_rps']:.0f} req/s vs llama-server /health "
              f"{w['llama_server_health_rps']:.0f} req/s = {w['healthz_ratio']:.2f}x")
        print(f"  wrk -c64 /v1/query (1 token): {w['gateway_query_rps']:.0f} req/s = "
              f"{w['query_ratio']:.2f}x of llama-server /health (non-2xx: {w['gateway_query_non2xx']})")
    if "relay" in report:
        r = report["relay"]
        print(f"  SSE relay, 512 tokens, {args.relay_threads} engine threads: gateway "
              f"{r['gateway_tok_s']:.1f} tok/s vs direct "
              f"{r['direct_tok_s']:.1f} tok/s = {r['ratio']:.3f}x (target >= 0.98)")


if __name__ == "__main__":
    sys.exit(main())
