"""Hostile clients against the real gateway binary (issue 19; docs/reliability.md, section E).

Each test attacks one gateway on loopback the way a misbehaving or malicious client would, checks
that a well-behaved client is served while the attack runs, and then checks that the gateway
gave back what the attack took: its open file descriptors and threads return to where they were,
and its resident memory stays within a bound. Where Debian's slowhttptest produces the attack
(slowloris, slow body, slow read, range headers) the test runs it; the rest are raw sockets.

The gateway is configured with short timeouts so that the attacks end within seconds.
"""
import http.client
import json
import os
import re
import pathlib
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from gateway_util import Gateway, story_target

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2
IDLE_TIMEOUT = 3
MAX_CONNECTIONS = 128
PER_IP = 32
TOP = f"""
header_timeout_seconds = {HEADER_TIMEOUT}
body_timeout_seconds = {BODY_TIMEOUT}
idle_timeout_seconds = {IDLE_TIMEOUT}
max_connections = {MAX_CONNECTIONS}
max_connections_per_ip = {PER_IP}
max_request_bytes = 65536
"""
# Resident memory the gateway may keep after an attack, over its level before it: the model's
# pages and allocator caches settle within this; a per-connection leak over hundreds of
# connections does not.
RSS_SLACK_KIB = 24 * 1024


def proc_state(pid):
    """(open fds, threads, VmRSS in KiB) of a process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    rss = 0
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return fds, threads, rss


@pytest.fixture
def gw(tmp_path):
    g = Gateway(tmp_path, story_target(), top=TOP)
    # Warm up: one request of each kind loads every lazily allocated part before the baseline.
    for _ in range(2):
        assert good_request(g)
    yield g
    g.stop()


def good_request(g):
    """A well-behaved client's request, from another loopback address than the attacks (which
    come from 127.0.0.1), as a real client elsewhere would; True when answered 200 with text."""
    c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=30,
                                   source_address=("127.0.0.2", 0))
    try:
        c.request("POST", "/v1/completions", body=json.dumps(
            {"model": "story", "prompt": "Once upon", "max_tokens": 4, "temperature": 0}),
            headers={"content-type": "application/json"})
        r = c.getresponse()
        body = json.loads(r.read())
        return r.status == 200 and isinstance(body["choices"][0]["text"], str)
    finally:
        c.close()


def settled(g, before, timeout=IDLE_TIMEOUT * 4 + 10):
    """Waits until the gateway's fds and threads are back to the baseline; returns the state."""
    deadline = time.time() + timeout
    while True:
        now = proc_state(g.proc.pid)
        if (now[0] <= before[0] and now[1] <= before[1]) or time.time() > deadline:
            return now
        time.sleep(0.25)


def assert_recovered(g, before):
    after = settled(g, before)
    assert g.proc.poll() is None, "the gateway died:\n" + g.log_path.read_text()[-2000:]
    assert after[0] <= before[0], f"fds: {before[0]} before, {after[0]} after"
    assert after[1] <= before[1], f"threads: {before[1]} before, {after[1]} after"
    assert after[2] - before[2] < RSS_SLACK_KIB, f"VmRSS: {before[2]} KiB before, {after[2]} after"
    assert good_request(g)


def served_during(g, attack_seconds, attack, peak=None):
    """Runs `attack()` in a thread and well-behaved requests meanwhile; returns how many of
    those were served and how many were tried. `peak`, a list, gets the most threads the
    gateway had at any sample."""
    t = threading.Thread(target=attack, daemon=True)
    t.start()
    time.sleep(0.5)
    ok = tried = 0
    deadline = time.time() + attack_seconds
    while time.time() < deadline and t.is_alive():
        if peak is not None:
            peak.append(proc_state(g.proc.pid)[1])
        tried += 1
        try:
            ok += good_request(g)
        except OSError:
            pass
        time.sleep(0.2)
    t.join(attack_seconds + 60)
    return ok, tried


def slowhttptest(*args, seconds):
    """Runs slowhttptest from 127.0.0.1; returns (exit status line, the most connections it
    held open at any report), failing when it did not run its course."""
    exe = shutil.which("slowhttptest")
    if not exe:
        pytest.fail("slowhttptest not found (Debian: slowhttptest; scripts/setup installs it)")
    p = subprocess.run([exe, *args, "-l", str(seconds), "-p", "3", "-v", "1"],
                       capture_output=True, text=True, timeout=seconds + 60)
    out = re.sub(r"\x1b\[[0-9;]*m", "", p.stdout + p.stderr)
    assert "Test ended" in out, out[-2000:]
    status = re.findall(r"^Exit status: (.*)$", out, re.M)
    connected = [int(n) for n in re.findall(r"^connected:\s+(\d+)", out, re.M)]
    return (status[-1].strip() if status else ""), max(connected, default=0)


# ---- slowhttptest ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,extra", [
    ("-H", ["-i", "1", "-x", "8"]),                      # slowloris: headers a few bytes a second
    ("-B", ["-i", "1", "-s", "8192", "-f", "application/json",
            "-t", "POST"]),                               # R-U-Dead-Yet: a body that never ends
    ("-R", ["-a", "5", "-b", "2000"]),                    # overlapping Range headers
])
def test_slow_attacks_are_cut_off_and_others_are_served(gw, mode, extra):
    before = proc_state(gw.proc.pid)
    path = "/v1/completions" if mode == "-B" else "/v1/models"
    url = f"http://127.0.0.1:{gw.port}{path}"
    out = []
    ok, tried = served_during(gw, 10, lambda: out.append(slowhttptest(
        mode, "-c", "100", "-r", "50", "-u", url, *extra, seconds=10)))
    assert tried > 0 and ok == tried, f"{ok}/{tried} well-behaved requests served\n{out}"
    # the gateway, not the attack's time limit, ended every connection
    assert out and out[0][0] == "No open connections left", out
    assert_recovered(gw, before)


def test_slow_readers_hold_no_more_than_their_share(gw):
    """slowhttptest's slow read: a tiny receive window, 8 bytes read every 2 seconds, requests
    pipelined. A reader that makes progress is not cut off, so what bounds it is the per-address
    connection cap: 100 attempts hold at most max_connections_per_ip connection threads, and
    other clients are served meanwhile."""
    before = proc_state(gw.proc.pid)
    url = f"http://127.0.0.1:{gw.port}/v1/models"
    out, peak = [], []
    ok, tried = served_during(gw, 10, lambda: out.append(slowhttptest(
        "-X", "-c", "100", "-r", "50", "-w", "16", "-y", "32", "-n", "2", "-z", "8", "-k", "10",
        "-u", url, seconds=10)), peak)
    assert tried > 0 and ok == tried, f"{ok}/{tried} well-behaved requests served\n{out}"
    # One thread per open connection: the attacker's address holds at most its share (what
    # slowhttptest counts as connected includes connections the kernel accepted and the
    # gateway then closed at once); +2 for the well-behaved client's.
    assert out and peak and max(peak) - before[1] <= PER_IP + 2, (out, before, max(peak))
    assert_recovered(gw, before)


# ---- raw sockets ----------------------------------------------------------------------------

def connect(g, source="127.0.0.1"):
    return socket.create_connection(("127.0.0.1", g.port), timeout=10, source_address=(source, 0))


def rst_close(s):
    """Closes with a TCP reset, as a crashed client or a middlebox does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def stream_request(model="story", max_tokens=200):
    body = json.dumps({"model": model, "prompt": "Once upon a time", "max_tokens": max_tokens,
                       "stream": True, "ignore_eos": True}).encode()
    return (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def test_many_idle_connections_up_to_the_limit(gw):
    """More connections than max_connections, each silent, from several addresses (each within
    its per-address cap): the extra ones are refused, the rest time out, and a well-behaved
    request gets through once the header timeout frees slots."""
    before = proc_state(gw.proc.pid)
    socks = []
    for i in range(MAX_CONNECTIONS + 40):
        try:
            socks.append(connect(gw, f"127.0.1.{i // (PER_IP - 2) + 1}"))
        except OSError:
            break
    time.sleep(HEADER_TIMEOUT + 2)
    assert good_request(gw)
    for s in socks:
        s.close()
    assert_recovered(gw, before)


def test_half_open_streams_are_cancelled(gw):
    """Streams whose client stops reading, and streams whose client vanishes with a reset: the
    gateway cancels each (its run does not go on forever) and frees its connection."""
    before = proc_state(gw.proc.pid)
    silent, reset = [], []
    for i in range(8):
        s = connect(gw)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.sendall(stream_request())
        (silent if i % 2 else reset).append(s)
    time.sleep(0.5)
    for s in reset:
        s.recv(64)
        rst_close(s)
    assert good_request(gw)
    time.sleep(IDLE_TIMEOUT + 2)
    for s in silent:
        s.close()
    assert_recovered(gw, before)


@pytest.mark.parametrize("data", [
    b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n",
    b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 99999999999\r\n\r\n{",
    b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\n{\r\n" * 40000 + b"0\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(512),  # a TLS hello
    b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n",
    b"\x00" * 4096,
], ids=["huge-header", "huge-target", "huge-length", "bad-chunk", "chunks-past-limit", "tls",
        "many-headers", "nul-bytes"])
def test_oversized_and_malformed_frames(gw, data):
    """Each gets an error answer or a closed connection, never a hang or a crash."""
    before = proc_state(gw.proc.pid)
    for _ in range(20):
        s = connect(gw)
        try:
            s.sendall(data)
            s.settimeout(HEADER_TIMEOUT + BODY_TIMEOUT + 5)
            first = s.recv(64)
            assert first == b"" or first.startswith(b"HTTP/1.1 4") or first.startswith(b"HTTP/1.0 4"), first
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            s.close()
    assert_recovered(gw, before)
