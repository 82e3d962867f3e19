"""Graceful shutdown under load and restart (docs/reliability.md, E9 and "Shutdown and restart"),
and a log sink nobody reads (I3): the real sipp-gateway over real sockets.

SIGTERM with a dozen streams open on both profiles (some running, some still queued in the
engine), finite requests in flight and a client that stopped reading: every stream ends with a
terminal event and whole JSON frames, finite requests get 408, nothing new is served during the
drain, and the process exits 0 within shutdown_grace_seconds. A new gateway on the same port and
the same KV cache directory then starts, serves, and restores the prefix the first one wrote."""
import http.client
import json
import os
import select
import socket
import subprocess
import threading
import time

from gateway_util import Gateway, free_port, local_target

GRACE = 4


def read_stream(gw, path, body, out):
    """Reads a whole stream; out gets {"status", "frames": [(event, data)], "torn": str|None}."""
    c = gw.conn(timeout=30)
    try:
        c.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
        r = c.getresponse()
        out["status"] = r.status
        frames, event, data = [], None, []
        while True:
            line = r.readline()
            if not line:
                break
            if not line.endswith(b"\n"):
                out["torn"] = line.decode(errors="replace")
                break
            line = line.decode().rstrip("\r\n")
            if line == "":
                if event or data:
                    frames.append((event, "\n".join(data)))
                event, data = None, []
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if event or data:
            out["torn"] = f"unterminated frame {event} {data}"
        out["frames"] = frames
    except (OSError, http.client.HTTPException) as e:
        out["exc"] = repr(e)
    finally:
        c.close()


def finite(gw, path, body, out):
    try:
        st, _, data = gw.request("POST", path, body, timeout=30)
        out["status"], out["body"] = st, json.loads(data)
    except (OSError, http.client.HTTPException, ValueError) as e:
        out["exc"] = repr(e)


def terminal_ok(path, res):
    """A stream's frames are whole JSON and end with its profile's terminal event."""
    frames = res.get("frames") or []
    assert res.get("status") == 200 and "torn" not in res and "exc" not in res, res
    assert frames, res
    for event, data in frames:
        if data != "[DONE]":
            json.loads(data)  # no half-written JSON
    if path in ("/v1/chat", "/v1/query"):
        event, data = frames[-1]
        assert event in ("done", "error"), frames[-3:]
        if event == "error":
            assert json.loads(data)["error"]["code"] == "cancelled"
        assert all(e in ("token", "usage", "done", "error") for e, _ in frames)
        assert sum(e in ("done", "error") for e, _ in frames) == 1
    else:
        last = frames[-1][1]
        if last == "[DONE]":
            assert any(c.get("finish_reason") for c in json.loads(frames[-2][1]).get("choices", []))
        else:
            assert json.loads(last)["error"]["code"] == "cancelled", frames[-3:]


def test_sigterm_under_load_then_restart(tmp_path):
    cache = tmp_path / "kv"
    target = local_target(ignore_eos=True, n_parallel=4, n_ctx=1024, cache_dir=str(cache))
    # Only the warm conversation carries a cache scope (one end user's key); the load below has
    # none. So the load's fourth run must evict the warm sequence, which leaves a snapshot in
    # RAM, and the drain must write it to the disk tier for the restart to find. (Were the load
    # on the same key, it would cut the warm sequence back to their common prefix instead, and
    # what survived would depend on which runs the drain happened to catch.)
    target += '[cache]\nscope_header = "x-sipp-user"\n'
    user = {"x-sipp-user": "alice"}
    g = Gateway(tmp_path, target, top=f"shutdown_grace_seconds = {GRACE}\n")
    warm = {"model": "local", "max_tokens": 4,
            "messages": [{"role": "user", "content": "Remember the little red ball in the park"}]}
    st, _, body = g.post("/v1/chat", warm, headers=user)
    assert st == 200, body
    # a keep-alive connection that will try a new request during the drain
    keep = g.conn()
    keep.request("GET", "/v1/models")
    assert keep.getresponse().status == 200

    streams, threads = [], []
    paths = ["/v1/chat", "/v1/query", "/v1/chat/completions", "/v1/completions"]
    for i in range(12):
        path = paths[i % 4]
        body = {"model": "local", "max_tokens": 100000, "stream": True}
        if path.endswith("chat") or path.endswith("chat/completions"):
            body["messages"] = [{"role": "user", "content": f"Tell me story number {i}"}]
        else:
            body["prompt"] = f"Once upon a time, story {i},"
        res = {}
        streams.append((path, res))
        threads.append(threading.Thread(target=read_stream, args=(g, path, body, res)))
    finites = []
    for i, path in enumerate(["/v1/chat", "/v1/chat/completions", "/v1/query"]):
        body = {"model": "local", "max_tokens": 100000}
        if "chat" in path:
            body["messages"] = [{"role": "user", "content": f"A long answer {i}"}]
        else:
            body["prompt"] = f"A long tale {i}"
        res = {}
        finites.append(res)
        threads.append(threading.Thread(target=finite, args=(g, path, body, res)))
    for t in threads:
        t.start()
    # a client that stops reading: it must not hold the exit past the deadline
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", g.port))
    req = json.dumps({"model": "local", "prompt": "Never read", "max_tokens": 100000, "stream": True})
    stalled.sendall(f"POST /v1/query HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(req)}\r\n\r\n{req}".encode())

    assert g.wait_metric("sipp_engine_running", lambda v: v == 4, timeout=20, target="local") == 4
    assert g.wait_metric("sipp_engine_queued", lambda v: v >= 8, timeout=20, target="local") >= 8
    time.sleep(0.3)  # the running streams are mid-stream
    t0 = time.time()
    g.proc.send_signal(subprocess.signal.SIGTERM)

    # nothing new is served during the drain: the listener is closed or the answer is 503
    seen = []
    for _ in range(20):
        try:
            st, _, body = g.request("POST", "/v1/query", {"model": "local", "prompt": "x",
                                                          "max_tokens": 1}, timeout=5)
            seen.append(st)
        except (OSError, http.client.HTTPException):
            seen.append("refused")
        if "refused" in seen:
            break
        time.sleep(0.02)
    try:
        keep.request("GET", "/v1/models")
        kr = keep.getresponse()
        seen.append(kr.status)
        if kr.status == 503:
            assert json.loads(kr.read())["error"]["code"] == "unavailable"
    except (OSError, http.client.HTTPException):
        seen.append("closed")
    print("drain answers:", seen)
    assert all(s in (503, "refused", "closed") for s in seen[1:]), seen
    assert seen[-1] in (503, "refused", "closed"), seen

    rc = g.proc.wait(timeout=GRACE + 10)
    took = time.time() - t0
    for t in threads:
        t.join(timeout=10)
    stalled.close()
    keep.close()
    g.stop()
    assert rc == 0
    print("exit took", took)
    assert took < GRACE + 2, f"exit took {took:.1f} s, deadline {GRACE} s"
    for path, res in streams:
        terminal_ok(path, res)
    cut = sum(1 for p, r in streams if r["frames"][-1][0] == "error" or
              "error" in r["frames"][-1][1])
    assert cut >= 10  # they were long: the drain ended them, not the model
    for res in finites:
        assert res.get("status") == 408 and res["body"]["error"]["code"] == "cancelled", res
    logs = [json.loads(l) for l in g.log_path.read_text().splitlines() if l.startswith("{")]
    drained = [l for l in logs if l["msg"] == "drained"]
    assert drained, logs[-5:]
    assert list(cache.glob("*.kv")), "the disk tier was written at shutdown"

    # restart: same port, same KV cache dir; it serves and restores the first one's prefix
    (tmp_path / "second").mkdir()
    g2 = Gateway(tmp_path / "second", target, ports=(g.port, g.mport))
    try:
        st, _, body = g2.post("/v1/chat", warm, headers=user)
        assert st == 200 and body["usage"]["output_tokens"] == 4, body
        assert g2.metric("sipp_engine_cache_hits_total", target="local") >= 1
    finally:
        assert g2.stop() == 0


def test_unread_stderr_never_blocks_requests(tmp_path):
    """I3: the log sink (stderr) is a pipe nobody reads. Requests keep being answered at full
    speed, the lines that do not fit are dropped and counted, and memory stays bounded."""
    g = Gateway(tmp_path, local_target())
    g.stop()  # only to get a config written; run it again with stderr on a pipe
    port, mport = free_port(), free_port()
    cfg = g.config.read_text().replace(f":{g.port}\"", f":{port}\"").replace(f":{g.mport}\"",
                                                                          f":{mport}\"")
    g.config.write_text(cfg)
    proc = subprocess.Popen([str(g.proc.args[0]), "serve", "--config", str(g.config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def get(p, path):
            c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
            try:
                c.request("GET", path)
                r = c.getresponse()
                return r.status, r.read().decode()
            finally:
                c.close()

        deadline = time.time() + 30
        while True:
            try:
                if get(mport, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        def flood(n):  # ~450-byte log lines: 64 KiB of pipe + the 1 MiB queue fill up fast
            t0 = time.time()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            for i in range(n):
                c.request("GET", f"/nope/{'x' * 200}/{i}")
                r = c.getresponse()
                r.read()
                assert r.status == 404
            c.close()
            return time.time() - t0

        took = flood(6000)  # a blocked log would time out here
        _, text = get(mport, "/metrics")
        dropped = float(next(l.split()[-1] for l in text.splitlines()
                             if l.startswith("sipp_log_dropped_lines_total ")))
        body = {"model": "local", "prompt": "Hi", "max_tokens": 2}
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("POST", "/v1/query", body=json.dumps(body),
                  headers={"content-type": "application/json"})
        assert c.getresponse().status == 200
        c.close()
        rss = int(next(l.split()[1] for l in open(f"/proc/{proc.pid}/status")
                       if l.startswith("RssAnon:")))
        print("dropped", dropped, "took", took, "rss", rss)
        assert dropped > 0 and took < 60
        assert rss < 256 * 1024  # KiB: the queue is bounded (1 MiB), nothing piles up
        # someone reads for a while: the gap is reported in a line of its own
        fd, seen, deadline = proc.stderr.fileno(), b"", time.time() + 20
        while b'"log lines dropped"' not in seen and time.time() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                seen += os.read(fd, 1 << 16)
        notes = [json.loads(l) for l in seen.decode().splitlines() if '"log lines dropped"' in l]
        assert notes and notes[0]["dropped"] >= 1
        # nobody reads again; SIGTERM still ends the process: the log writer stuck on the pipe
        # holds no lock that exit needs, and the final flush is bounded (2 s)
        flood(6000)
        t0 = time.time()
        proc.send_signal(subprocess.signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert time.time() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
