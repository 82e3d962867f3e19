"""Redis-shared rate limits ([redis] url): two real sipp-gateway processes enforce one limit
through a real redis-server that the test starts on a free loopback port; what happens when
Redis is unreachable or silent (on_error = open / closed, bounded by timeout_ms). The fallback
to in-process limits is tested in test_gateway_limits.py."""
import shutil
import socket
import subprocess
import threading
import time

import pytest

from gateway_util import Gateway, error_of, free_port, story_target

SECRET_A = "sk-redis-alice-0123456789"
SECRET_B = "sk-redis-bob-0123456789"
ENV = {"TOK_ALICE": SECRET_A, "TOK_BOB": SECRET_B}
TOKENS = """
[[tokens]]
env = "TOK_ALICE"
caller = "alice"
requests_per_minute = 3

[[tokens]]
env = "TOK_BOB"
caller = "bob"
tokens_per_minute = 30
"""
Q = {"model": "story", "prompt": "Once upon a time", "max_tokens": 2}


def start_redis(tmp_path, port=None):
    """A real redis-server on a loopback port (a free one unless given); returns (proc, port)
    once it answers PING."""
    exe = shutil.which("redis-server")
    if not exe:
        pytest.fail("redis-server is needed (scripts/setup installs it from scripts/deps.env)")
    port = port or free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        assert proc.poll() is None and time.time() < deadline, "redis-server did not start"
        time.sleep(0.05)
    return proc, port


@pytest.fixture
def redis(tmp_path):
    proc, port = start_redis(tmp_path)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def redis_cmd(port, *args):
    """One RESP command over a raw socket; returns the raw reply."""
    msg = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(msg.encode())
        return s.recv(65536)


def redis_section(port, **extra):
    lines = [f'url = "redis://127.0.0.1:{port}"'] + [f"{k} = {v}" for k, v in extra.items()]
    return "[redis]\n" + "\n".join(lines) + "\n"


def test_two_gateways_share_one_limit(tmp_path, redis):
    body = story_target() + TOKENS + redis_section(redis, key_prefix='"t1:"')
    a = Gateway(tmp_path, body, env=ENV)
    b = Gateway(tmp_path, body, env=ENV)
    try:
        # alice may make 3 requests a minute in all, whichever gateway she reaches
        assert a.post("/v1/query", Q, token=SECRET_A)[0] == 200
        assert b.post("/v1/query", Q, token=SECRET_A)[0] == 200
        assert a.post("/v1/query", Q, token=SECRET_A)[0] == 200
        st, h, body_ = b.post("/v1/query", Q, token=SECRET_A)
        assert (st, error_of(body_)) == (429, "rate_limited") and int(h["retry-after"]) >= 1
        st, _, _ = a.post("/v1/query", Q, token=SECRET_A)
        assert st == 429
        # token-aware: bob burns his budget on gateway a and is refused by gateway b
        st, _, r = a.post("/v1/query", {**Q, "max_tokens": 40}, token=SECRET_B)
        assert st == 200 and r["usage"]["total_tokens"] > 30
        st, _, r = b.post("/v1/query", Q, token=SECRET_B)
        assert (st, error_of(r)) == (429, "rate_limited")
        # the state is in Redis, under the prefix, with an expiry (idle keys vanish)
        assert b"t1:rl:caller:alice" in redis_cmd(redis, "KEYS", "t1:*")
        ttl = int(redis_cmd(redis, "PTTL", "t1:rl:caller:alice").strip()[1:])
        assert 0 < ttl <= 61000
        assert a.metric("sipp_redis_errors_total") == 0
    finally:
        a.stop()
        b.stop()


def test_shared_per_ip_limit_and_script_reload(tmp_path, redis):
    body = story_target() + redis_section(redis) + """
[security.rate_limit]
enabled = true
requests_per_minute = 4
"""
    a = Gateway(tmp_path, body)
    b = Gateway(tmp_path, body)
    try:
        assert a.post("/v1/query", Q)[0] == 200
        redis_cmd(redis, "SCRIPT", "FLUSH")  # NOSCRIPT: the store sends the script again
        assert b.post("/v1/query", Q)[0] == 200
        assert a.post("/v1/query", Q)[0] == 200
        assert b.post("/v1/query", Q)[0] == 200
        st, _, r = a.post("/v1/query", Q)
        assert (st, error_of(r)) == (429, "rate_limited")
    finally:
        a.stop()
        b.stop()


def test_redis_down_fails_closed_when_configured(tmp_path):
    dead = free_port()
    g = Gateway(tmp_path, story_target() + TOKENS + redis_section(dead, on_error='"closed"'),
                env=ENV)
    try:
        st, h, r = g.post("/v1/query", Q, token=SECRET_A)
        assert (st, error_of(r)) == (503, "unavailable") and h["retry-after"] == "1"
    finally:
        g.stop()


def test_silent_redis_is_bounded_by_the_timeout(tmp_path):
    """A Redis that accepts and never answers costs each request at most ~timeout_ms, and
    after three failures in a row the store is skipped (no pile-up of timeouts)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    port = srv.getsockname()[1]
    g = Gateway(tmp_path, story_target() + TOKENS + redis_section(port, timeout_ms=100), env=ENV)
    try:
        for _ in range(3):  # bob's limit is on tokens: /v1/models passes it
            t0 = time.time()
            assert g.request("GET", "/v1/models", token=SECRET_B)[0] == 200
            assert time.time() - t0 < 1.0
        assert g.metric("sipp_rate_limit_fallback_active") == 1
        t0 = time.time()
        for _ in range(5):
            assert g.request("GET", "/v1/models", token=SECRET_B)[0] == 200
        rest = (time.time() - t0) / 5
        assert rest < 0.05, rest
        assert g.metric("sipp_redis_errors_total") >= 3
    finally:
        g.stop()
        stop.set()
        t.join()
        for c in conns:
            c.close()
        srv.close()
