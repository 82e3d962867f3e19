#!/usr/bin/env python3
"""Routing trace benchmark (issue 20; docs/routing.md, docs/benchmarks.md). Not a test.

    /usr/bin/python3 bench/routing/trace_bench.py [--trace bench/routing/editor_trace.json]
        [--delay-ms 250] [--price-in 3] [--price-out 15] [--ttft-budget-ms 600]
        [--cascade-timeout-ms 600] [--write-trace] [--speed 1.0]

Replays an editor session (bench/routing/editor_trace.json: file opens, edits, follow-ups on
the same context keys, a few hard questions over a file larger than the local context, some
requests tagged "private") open-loop, at the trace's arrival times, against:
- local: libsipp's local engine on a random-weight llama-135m (sipp-make-model), n_ctx 512 (--local-ctx),
  2 sequences: a small model on the app's CPU;
- remote: a real llama-server (the same llama.cpp build) serving stories260K (a fast,
  far peer), behind a proxy of this script that adds --delay-ms before each request, and a
  configured price per million input/output tokens.

Policies, each on the same trace, each after the same one-request warm-up of each endpoint:
- always_local, always_remote;
- cascade: the static local-then-remote fallback (LiteLLM-style): local first; if it is refused,
  fails before its first token or gives none within --cascade-timeout-ms, it is cancelled and
  sent to the remote (allowed: no token reached the caller). It reads no tag;
- aware: sipp_estimate on both, then a sipp_policy: local_only_tag private, skip_unavailable 16,
  fit_context, prefer_warm 0.5, prefer_local_under_ttft --ttft-budget-ms; candidates in the
  order [remote, local], so a request no preference keeps local goes remote. Cache-aware:
  when it sends a request that fits locally to the remote, it also prefills the key's prefix
  on the local engine when it has a free sequence and no queue (a one-token run, not shown),
  so the key's follow-ups are warm here.

Prints, per policy: p50/p95 TTFT (arrival to first token, wasted attempts included), total
cost, fraction served locally, failures, and private requests that left the machine.
"""
import argparse
import glob
import http.client
import http.server
import json
import os
import pathlib
import random
import socketserver
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / "build" / "bin"
sys.path.insert(0, str(ROOT / "bindings" / "python"))
sys.path.insert(0, str(ROOT / "bench"))
import sipp  # noqa: E402
from gateway_bench import free_port, wait_http  # noqa: E402  (the gateway bench's helpers)

MODELS = pathlib.Path(os.environ.get("SIPP_TEST_MODELS_DIR", ROOT.parent / "shared" / "models"))
REMOTE_MODEL = MODELS / "stories260K.gguf"
TRACE = pathlib.Path(__file__).resolve().parent / "editor_trace.json"
LLAMA_SERVER = os.environ.get("SIPP_LLAMA_SERVER", str(BIN / "llama-server"))

# ---- the trace ------------------------------------------------------------------------------

# Common short words: one token each for the local model's vocabulary and one or two for the
# remote's (a 512-token vocabulary), so a prompt fits where the trace says it does.
WORDS = ("the a cat dog was is and to he she it they saw ran big little girl boy happy sad "
         "play park ball tree sun day mom dad said one went home good bad red blue fish bird "
         "box toy car bed eat run sit look find help").split()


def make_file(rng, n_words):
    lines, line = [], []
    for _ in range(n_words):
        line.append(rng.choice(WORDS))
        if len(line) >= 10:
            lines.append(" ".join(line))
            line = []
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def write_trace(path):
    """A deterministic editor session (seeded): what the app would send, with arrival times."""
    rng = random.Random(20)
    files = {  # name: (words, private)
        "src/main.c": (120, False), "src/parse.c": (150, False), "src/util.h": (70, False),
        "config/secrets.env": (60, True), "notes/private.md": (90, True),
        "docs/design.md": (280, False),    # fits the local context but is slow to prefill cold
        "logs/build.log": (480, False),    # larger than the local context: a hard question
    }
    text = {f: make_file(rng, n) for f, (n, _) in files.items()}
    events, t = [], 0.0
    history = {f: "" for f in files}

    def ask(f, kind, question, max_tokens=8):
        nonlocal t
        prompt = f"File {f}:\n{text[f]}\n{history[f]}Q: {question}\nA:"
        events.append({"t": round(t, 3), "key": f"file:{f}", "kind": kind,
                       "private": files[f][1], "prompt": prompt, "max_tokens": max_tokens})
        history[f] += f"Q: {question}\nA: ok.\n"  # the app keeps the conversation on the key

    order = ["src/main.c", "src/parse.c", "config/secrets.env", "src/util.h", "docs/design.md",
             "notes/private.md", "logs/build.log"]
    for f in order:  # the session opens its files, a check each
        ask(f, "open", "is there a bug on the last line?")
        t += rng.uniform(0.3, 0.9)
        for _ in range(2):  # quick follow-ups while the file is in view
            ask(f, "followup", rng.choice(["why?", "and the line above?", "suggest a name",
                                           "is it thread-safe?"]))
            t += rng.uniform(0.2, 0.6)
    for _ in range(24):  # then the user moves between files: edits and follow-ups
        f = rng.choice(order[:6])
        if rng.random() < 0.35:  # an edit: a line appended, the prefix stays
            text[f] = text[f] + make_file(rng, 10)
            ask(f, "edit", "does this edit compile?")
        else:
            ask(f, "followup", rng.choice(["explain this function", "any leak here?",
                                           "shorter name?", "what calls this?"]))
        t += rng.uniform(0.15, 0.7)
    for q in ("which step failed first?", "summarise the warnings"):  # hard questions
        ask("logs/build.log", "hard", q)
        t += rng.uniform(0.5, 1.0)
    ask("docs/design.md", "hard", "does the design cover cancellation?")
    path.write_text(json.dumps({"events": events}, indent=1) + "\n")


# ---- the remote: llama-server behind a delaying proxy ----------------------------------------


class DelayProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def make_handler(upstream_port, delay_s, seen):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append(body)  # what left the machine (for the privacy count)
            time.sleep(delay_s)
            c = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
            c.request("POST", self.path, body, {"Content-Type": "application/json",
                                                "Accept": self.headers.get("Accept", "*/*")})
            r = c.getresponse()
            self.send_response(r.status)
            self.send_header("Content-Type", r.getheader("Content-Type", "application/json"))
            self.end_headers()
            while True:
                chunk = r.read1(65536)
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except OSError:
                    break  # the client cancelled
            c.close()
    return Handler


# ---- one request under each policy ----------------------------------------------------------


class Outcome:
    def __init__(self):
        self.ttft_ms = None
        self.where = None       # "local" or "remote": who answered
        self.cost = 0.0
        self.failed = None
        self.left_machine = False


def first_token(run, timeout_s):
    """Waits for the run's first text; returns True when it came, False on timeout; raises on
    a failure (a run that failed before any token)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        b = run._pull(int(min(left, 0.2) * 1000) or 1)
        if b is None:
            continue
        if b:
            return True
        if run.done:
            run.result()  # raises when it failed; a run that ended with no text counts as done
            return True


class Bench:
    def __init__(self, args, local, remote, seen):
        self.a = args
        self.local, self.remote, self.seen = local, remote, seen
        self.lock = threading.Lock()
        self.background = []  # the aware policy's local prefills
        self.policy = sipp.Policy([("local_only_tag", "private"), ("skip_unavailable", 16),
                                   "fit_context", ("prefer_warm", 0.5),
                                   ("prefer_local_under_ttft", args.ttft_budget_ms)])

    def cost_of(self, resp):
        u = resp.usage
        return (u.input_tokens * self.a.price_in + u.output_tokens * self.a.price_out) / 1e6

    def finish(self, run, where, ev, out, t0):
        """Streams `run` to its end; its first token sets the TTFT."""
        if out.ttft_ms is None:
            if not first_token(run, 600):
                raise RuntimeError("no first token in 600 s")
            out.ttft_ms = (time.monotonic() - t0) * 1000
        resp = run.result()
        out.where = where
        if where == "remote":
            out.cost += self.cost_of(resp)
            out.left_machine = ev["private"]

    def submit(self, ep, ev, **extra):
        opts = dict(max_tokens=ev["max_tokens"], temperature=0.0, **extra)
        if ep is self.local:
            opts["context_key"] = ev["key"]
            opts["ignore_eos"] = True
        return ep.query(ev["prompt"], **opts)

    def one(self, policy, ev, t0):
        out = Outcome()
        try:
            if policy == "always_local":
                self.finish(self.submit(self.local, ev), "local", ev, out, t0)
            elif policy == "always_remote":
                self.finish(self.submit(self.remote, ev), "remote", ev, out, t0)
            elif policy == "cascade":
                self.cascade(ev, out, t0)
            else:
                self.aware(ev, out, t0)
        except sipp.SippError as e:
            out.failed = e.kind
        except Exception as e:  # a bench bug: counted, shown, the replay goes on
            out.failed = f"{type(e).__name__}: {e}"
        return out

    def cascade(self, ev, out, t0):
        try:
            run = self.submit(self.local, ev)
            if first_token(run, self.a.cascade_timeout_ms / 1000):
                out.ttft_ms = (time.monotonic() - t0) * 1000
                self.finish(run, "local", ev, out, t0)
                return
            run.cancel()  # no token reached the caller: moving it is allowed
            run.close()
        except sipp.SippError:
            pass  # refused or failed before any token
        self.finish(self.submit(self.remote, ev), "remote", ev, out, t0)

    def aware(self, ev, out, t0):
        opts = dict(max_tokens=ev["max_tokens"], temperature=0.0)
        try:
            el = self.local.estimate(ev["prompt"], context_key=ev["key"], ignore_eos=True, **opts)
        except sipp.SippError:
            el = None
        er = self.remote.estimate(ev["prompt"], **opts)
        cands = [("remote", self.remote, er)] + ([("local", self.local, el)] if el else [])
        ch = self.policy.choose(cands, tags=["private"] if ev["private"] else [],
                                max_tokens=ev["max_tokens"])
        if ch.endpoint is None:
            out.failed = "no_route"
            return
        where = "local" if ch.endpoint is self.local else "remote"
        if where == "remote" and el is not None and 1 not in ch.dropped and \
                el.cached_tokens < el.prompt_tokens // 2 and el.free_slots > 0 and el.queued == 0:
            # cache-aware: the remote answers now, and the local engine prefills the key's
            # prefix in its idle time (one token, not shown), so the follow-ups are warm here
            with self.lock:
                self.background.append(self.local.query(
                    ev["prompt"], max_tokens=1, temperature=0.0, context_key=ev["key"]))
        self.finish(self.submit(ch.endpoint, ev), where, ev, out, t0)

    def replay(self, policy, events):
        outs = [None] * len(events)
        threads = []
        start = time.monotonic()

        def go(i, ev):
            t0 = time.monotonic()
            outs[i] = self.one(policy, ev, t0)

        for i, ev in enumerate(events):
            delay = start + ev["t"] / self.a.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            th = threading.Thread(target=go, args=(i, ev))
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        for run in self.background:
            run.close()
        return outs


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trace", type=pathlib.Path, default=TRACE)
    ap.add_argument("--write-trace", action="store_true", help="(re)generate the trace file")
    ap.add_argument("--delay-ms", type=float, default=250)
    ap.add_argument("--price-in", type=float, default=3.0)
    ap.add_argument("--price-out", type=float, default=15.0)
    ap.add_argument("--ttft-budget-ms", type=float, default=600)
    ap.add_argument("--cascade-timeout-ms", type=float, default=600)
    ap.add_argument("--speed", type=float, default=1.0, help="replay faster (>1) or slower")
    ap.add_argument("--policies", default="always_local,always_remote,cascade,aware")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--local-ctx", type=int, default=512)
    a = ap.parse_args()
    if a.write_trace or not a.trace.exists():
        write_trace(a.trace)
    events = json.loads(a.trace.read_text())["events"]

    model = ROOT / "build" / "bench-models" / "llama-135m-q8_0.gguf"
    if not model.exists():
        model.parent.mkdir(parents=True, exist_ok=True)
        src = os.environ.get("SIPP_LLAMA_SRC") or (sorted(glob.glob(
            os.path.expanduser("~/.cache/sipp/llama.cpp/src-*"))) or [""])[-1]
        subprocess.run([str(BIN / "sipp-make-model"), "--shape", "llama-135m", "--type", "q8_0",
                        "--out", str(model)], check=True, env={**os.environ, "SIPP_LLAMA_SRC": src},
                       stdout=subprocess.DEVNULL)

    sport = free_port()
    server = subprocess.Popen([LLAMA_SERVER, "-m", str(REMOTE_MODEL), "--host", "127.0.0.1",
                               "--port", str(sport), "-np", "4", "-c", "8192", "-t", str(a.threads),
                               "--no-webui"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []
    proxy = DelayProxy(("127.0.0.1", 0), make_handler(sport, a.delay_ms / 1000, seen))
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    results = {}
    try:
        wait_http(f"http://127.0.0.1:{sport}/health")
        for policy in a.policies.split(","):
            # a fresh client per policy: no cache or measurement carries over
            with sipp.Client() as c:
                local = c.add_local("local", model, n_ctx=a.local_ctx, n_parallel=2,
                                    n_threads=a.threads)
                remote = c.add_provider("remote", model="tiny",
                                        base_url=f"http://127.0.0.1:{proxy.server_port}/v1",
                                        allow_private_network=True)
                remote.set_prices(a.price_in, a.price_out)
                local.set_prices(0, 0)
                b = Bench(a, local, remote, seen)
                # the same warm-up for every policy: one request on each endpoint
                local.query("warm up the engine", max_tokens=2, ignore_eos=True).result()
                remote.query("warm up", max_tokens=2).result()
                del seen[:]
                outs = b.replay(policy, events)
                bodies = [body.replace(b"\\n", b"\n") for body in seen]
                private_left = sum(1 for ev in events if ev["private"] and any(
                    ev["prompt"].encode() in body for body in bodies))
                ok = [o for o in outs if o.failed is None]
                ttfts = [o.ttft_ms for o in ok]
                results[policy] = {
                    "requests": len(events), "failed": len(outs) - len(ok),
                    "failures": sorted({o.failed for o in outs if o.failed}),
                    "ttft_p50_ms": pct(ttfts, 50), "ttft_p95_ms": pct(ttfts, 95),
                    "cost": sum(o.cost for o in outs),
                    "local_fraction": sum(1 for o in ok if o.where == "local") / len(events),
                    "private_left": sum(1 for o in outs if o.left_machine),
                    "private_prompts_seen_by_remote": private_left,
                }
                print(policy, json.dumps(results[policy]), flush=True)
    finally:
        proxy.shutdown()
        server.terminate()
        server.wait()

    print(f"\ntrace: {len(events)} requests ({sum(e['private'] for e in events)} private), "
          f"remote delay {a.delay_ms:.0f} ms, price {a.price_in}/{a.price_out} per M tokens")
    print("| policy | TTFT p50 ms | TTFT p95 ms | cost | served locally | failed | private left |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p, r in results.items():
        print(f"| {p} | {r['ttft_p50_ms']:.0f} | {r['ttft_p95_ms']:.0f} | {r['cost']:.6f} | "
              f"{100 * r['local_fraction']:.0f}% | {r['failed']} | "
              f"{max(r['private_left'], r['private_prompts_seen_by_remote'])} |")
    if "aware" in results and "cascade" in results:
        w, c = results["aware"], results["cascade"]
        print(f"\naware vs cascade: p95 TTFT {w['ttft_p95_ms']:.0f} vs {c['ttft_p95_ms']:.0f} ms, "
              f"cost {w['cost']:.6f} vs {c['cost']:.6f}: "
              + ("aware wins both" if w["ttft_p95_ms"] < c["ttft_p95_ms"] and w["cost"] < c["cost"]
                 else "aware does NOT win both"))


if __name__ == "__main__":
    main()
