"""The gateway's rate limits under pressure (findings 5, 6 and 8 of issue 19), against the real
sipp-gateway and, where Redis is involved, a real redis-server started by the test:

- token budgets are reserved at admission (prompt estimate + max_tokens) and settled at the end,
  so parallel requests cannot spend one budget many times over;
- when Redis fails, each request falls back to the process's own counters (never to "no
  limit"); only repeated failures switch the mode, once, with a log line and a gauge; a short
  stall switches nothing;
- IPv6 clients are limited per /64."""
import os
import signal
import threading
import time

import pytest

from gateway_util import Gateway, Stream, error_of, local_target, prom_ok, story_target
from conftest import STORY_MODEL
from test_gateway_redis import redis, redis_cmd, redis_section, start_redis  # noqa: F401 (fixture)

SECRET_A = "sk-limits-alice-0123456789"
SECRET_B = "sk-limits-bob-0123456789"
ENV = {"TOK_ALICE": SECRET_A, "TOK_BOB": SECRET_B}
BUDGET = 100  # bob's tokens a minute
TOKENS = f"""
[[tokens]]
env = "TOK_ALICE"
caller = "alice"
requests_per_minute = 3

[[tokens]]
env = "TOK_BOB"
caller = "bob"
tokens_per_minute = {BUDGET}
"""
# ignore_eos: every request makes exactly max_tokens, so what each one spends is known
EXACT = local_target("story", STORY_MODEL, ignore_eos=True, n_parallel=4)
Q = {"model": "story", "prompt": "Once upon a time", "max_tokens": 16}


def store(request, tmp_path, kind):
    if kind == "memory":
        return ""
    return redis_section(request.getfixturevalue("redis"), key_prefix=f'"{tmp_path.name}:"')


def parallel(n, fn):
    """Runs fn() n times at once (released together); returns the results in order."""
    out = [None] * n
    gate = threading.Barrier(n)

    def one(i):
        gate.wait()
        out[i] = fn()

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_parallel_requests_cannot_overspend_the_token_budget(request, tmp_path, kind):
    """Finding 5: admission used to check only that the budget was above zero and charged at
    the end, so eight requests released together all ran. Now each reserves what it may spend;
    together they spend at most the budget plus one request."""
    g = Gateway(tmp_path, EXACT + TOKENS + store(request, tmp_path, kind), env=ENV)
    try:
        got = parallel(8, lambda: g.post("/v1/query", Q, token=SECRET_B))
        ok = [b for st, _, b in got if st == 200]
        refused = [(st, h, b) for st, h, b in got if st != 200]
        assert ok, got
        for st, h, b in refused:
            assert (st, error_of(b)) == (429, "rate_limited") and int(h["retry-after"]) >= 1, b
            assert "token budget" in b["error"]["message"]
        spent = sum(b["usage"]["total_tokens"] for b in ok)
        one = max(b["usage"]["total_tokens"] for b in ok)
        assert spent <= BUDGET + one, (spent, len(ok))
        assert refused
    finally:
        g.stop()


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_unused_reservation_comes_back(request, tmp_path, kind):
    """What a request reserved and did not use is given back when it ends: each of these
    reserves more than half of the budget but uses less than a third, so the third one in a row
    runs only because the first two were refunded."""
    g = Gateway(tmp_path, EXACT + TOKENS + store(request, tmp_path, kind), env=ENV)
    try:
        for i in range(3):
            st, _, b = g.post("/v1/query", Q, token=SECRET_B)
            assert st == 200, (i, b)
            assert b["usage"]["total_tokens"] < BUDGET / 3
    finally:
        g.stop()


def test_a_cut_stream_is_charged(tmp_path):
    """A stream the client hangs up on never reaches its usage. Refunding its whole reservation
    would let a client spend without limit by hanging up before the end; it is charged what it
    generated plus its prompt estimate instead."""
    g = Gateway(tmp_path, EXACT + TOKENS, env=ENV)
    try:
        s = Stream(g, "/v1/query", {**Q, "max_tokens": 2000, "stream": True}, token=SECRET_B)
        assert s.status == 200
        for event, _, _ in s.frames():
            if event == "token":
                break
        s.close()
        assert g.wait_metric("sipp_requests_total", lambda v: v >= 1, timeout=20,
                             operation="query", target="story", status="2xx") == 1
        # this one reserves 16 + 16 + 58 = 90 of the 100: it fits only if the cut stream was free
        st, h, b = g.post("/v1/query", {**Q, "max_tokens": 58}, token=SECRET_B)
        assert (st, error_of(b)) == (429, "rate_limited") and int(h["retry-after"]) >= 1, b
    finally:
        g.stop()


def fallback_lines(g):
    return [l for l in g.logs() if l["msg"].startswith(("redis unreachable", "redis answers"))]


def models(g, token=SECRET_A):
    return g.request("GET", "/v1/models", token=token)[0]


def test_redis_down_falls_back_to_local_limits(tmp_path):
    """Finding 6: with Redis gone, requests used to run without any limit. Now each one is
    decided by the gateway's own counters (alice: 3 a minute), the switch to local mode is
    logged once and shown by a gauge, and when Redis is back the gateway returns to it."""
    proc, port = start_redis(tmp_path)
    g = Gateway(tmp_path, story_target() + TOKENS + redis_section(port), env=ENV)
    try:
        assert models(g) == 200  # in Redis
        assert g.metric("sipp_rate_limit_fallback_active") == 0
        proc.terminate()
        proc.wait(timeout=10)
        got = [models(g) for _ in range(6)]
        assert got == [200, 200, 200, 429, 429, 429], got  # limited, by this process alone
        assert g.metric("sipp_rate_limit_fallback_active") == 1
        assert g.metric("sipp_rate_limit_fallback_total") >= 6
        typed = prom_ok(g.metrics())
        assert typed["sipp_rate_limit_fallback_active"] == "gauge"
        assert typed["sipp_rate_limit_fallback_total"] == "counter"
        lines = fallback_lines(g)
        assert [(l["msg"].split(":")[0], l["mode"], l["on_error"]) for l in lines] == [
            ("redis unreachable", "local", "open")], lines  # one line, not one per request
        # Redis back (empty): a probe finds it within a second and the shared limit resumes
        proc, _ = start_redis(tmp_path, port)
        deadline = time.time() + 10
        while g.metric("sipp_rate_limit_fallback_active") != 0 and time.time() < deadline:
            models(g)  # operations drive the probe
            time.sleep(0.1)
        assert g.metric("sipp_rate_limit_fallback_active") == 0
        assert [l["mode"] for l in fallback_lines(g)] == ["local", "redis"]
    finally:
        g.stop()
        proc.terminate()
        proc.wait(timeout=10)


def test_short_redis_stall_does_not_switch_modes(tmp_path, redis):  # noqa: F811
    """Finding 6: one slow answer used to make the gateway skip Redis for a second, serving
    everyone without limits. A request caught by a stall is decided locally; the next ones go to
    Redis again and the shared limit holds."""
    pid = int(redis_cmd(redis, "INFO", "server").split(b"process_id:")[1].split()[0])
    g = Gateway(tmp_path, story_target() + TOKENS + redis_section(redis), env=ENV)
    try:
        assert models(g) == 200  # Redis: 2 of alice's 3 left
        os.kill(pid, signal.SIGSTOP)
        try:
            assert models(g) == 200  # timed out (50 ms): decided by the local table
        finally:
            os.kill(pid, signal.SIGCONT)
        got = [models(g) for _ in range(3)]
        assert got[-1] == 429 and got.count(200) <= 2, got  # Redis's count, not "no limit"
        assert g.metric("sipp_rate_limit_fallback_active") == 0
        assert g.metric("sipp_rate_limit_fallback_total") == 1
        assert fallback_lines(g) == []
    finally:
        g.stop()


def test_ipv6_clients_are_limited_per_64(tmp_path):
    """Finding 8: every IPv6 address had its own bucket, and a client holds a whole /64. Now
    the per-IP limit keys IPv6 by /64 (IPv4 by address)."""
    g = Gateway(tmp_path, story_target() + """
[security.client_ip]
source = "x_forwarded_for"
trusted_proxy_cidrs = ["127.0.0.1"]
[security.rate_limit]
enabled = true
requests_per_minute = 2
""")
    try:
        def get(addr):
            return g.request("GET", "/v1/models", headers={"x-forwarded-for": addr})[0]

        got = [get(f"2001:db8:1:2::{i:x}") for i in range(1, 5)]
        assert got == [200, 200, 429, 429], got
        assert get("2001:db8:1:2:ffff:ffff:ffff:ffff") == 429  # the same /64
        assert get("2001:db8:1:3::1") == 200  # the next /64 is another client
        assert [get(f"198.51.100.{i}") for i in (1, 2, 3)] == [200, 200, 200]  # IPv4: per address
    finally:
        g.stop()
