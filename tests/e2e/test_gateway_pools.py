"""Upstream pools (docs/gateway.md "Upstream pools"): a remote target over several replicas.
Three real llama-server processes on the tiny chat model behind the real gateway: one of them
is killed and restarted while concurrent requests run, and no request that had not started
streaming is lost; the pool takes the replica out and back in (seen in the metrics); a
conversation key keeps its requests on one replica. A dead URL and a peer that answers 503 show
the retry on another replica. No timing thresholds: states are waited for through the metrics
with generous deadlines."""
import json
import subprocess
import threading
import time

import pytest

from fault_server import FaultServer
from gateway_util import GATEWAY, Gateway, Stream, free_port
from test_gateway_admin import Admin
from test_provider import start_llama_server

DEADLINE = 90  # seconds to wait for a state; generous on a loaded machine


def pool_target(urls, **pool):
    lines = ['[[targets]]', 'name = "pool"', 'type = "openai_compatible"', 'model = "tiny"',
             "base_urls = [" + ", ".join(json.dumps(u) for u in urls) + "]", "[targets.pool]"]
    for k, v in pool.items():
        lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def wait_for(pred, what, timeout=DEADLINE):
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


def replica_metric(gw, name, url, urls, **labels):
    """One series of the replica whose base URL is `url` among `urls` (labels: its index and
    host:port, never the URL's path)."""
    host = url.split("://", 1)[1].split("/", 1)[0]
    return gw.metric(name, target="pool", replica=str(urls.index(url)), host=host, **labels)


def stream_request(gw, body, headers=None):
    """One streaming chat; returns (ok, got_token, detail)."""
    got_token = False
    try:
        s = Stream(gw, "/v1/chat/completions", body, headers=headers)
        if s.status != 200:
            return False, False, f"status {s.status}"
        done = False
        for _, data, _ in s.frames():
            if data is None:
                continue
            if data == "[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                s.close()
                return False, got_token, ev["error"]
            for ch in ev.get("choices", []):
                if ch.get("delta", {}).get("content"):
                    got_token = True
        s.close()
        return done, got_token, "" if done else "no [DONE]"
    except OSError as e:
        return False, got_token, repr(e)


def finite_request(gw, body, headers=None):
    st, _, out = gw.post("/v1/chat/completions", dict(body, stream=False), headers=headers)
    ok = st == 200 and out["choices"][0]["message"]["content"] is not None
    return ok, False, "" if ok else f"{st} {out}"


BODY = {"model": "pool", "messages": [{"role": "user", "content": "Tell me a story."}],
        "max_tokens": 24, "temperature": 0, "stream": True}


@pytest.fixture
def replicas():
    procs = []
    for _ in range(3):
        port = free_port()
        proc, url = start_llama_server("-np", "1", "-t", "1", port=port)
        procs.append([proc, url, port])
    yield procs
    for p in procs:
        if p[0].poll() is None:
            p[0].terminate()
            p[0].wait(timeout=10)


def test_a_replica_killed_and_restarted_mid_run_loses_no_unstarted_request(tmp_path, replicas):
    urls = [p[1] for p in replicas]
    gw = Gateway(tmp_path, pool_target(urls, health_interval_seconds=1, backoff_initial_seconds=1,
                                       backoff_max_seconds=2, failure_threshold=1))
    try:
        results = []
        lock = threading.Lock()
        stop = threading.Event()

        def worker(k):
            n = 0
            while not stop.is_set():
                fn = stream_request if (k + n) % 3 else finite_request
                r = fn(gw, BODY)
                with lock:
                    results.append((fn.__name__,) + r)
                n += 1

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        victim = replicas[1]
        # Kill it once it has served requests of this run.
        wait_for(lambda: replica_metric(gw, "sipp_upstream_requests_total", victim[1], urls) >= 2,
                 "the victim to serve requests")
        victim[0].kill()
        victim[0].wait()
        wait_for(lambda: replica_metric(gw, "sipp_upstream_healthy", victim[1], urls) == 0,
                 "the killed replica to be taken out")
        served_while_out = len(results)
        wait_for(lambda: len(results) >= served_while_out + 6, "requests while it is out")
        # Back on the same port: the probe brings it back.
        victim[0], _ = start_llama_server("-np", "1", "-t", "1", port=victim[2])
        wait_for(lambda: replica_metric(gw, "sipp_upstream_healthy", victim[1], urls) == 1,
                 "the restarted replica to be healthy again")
        before = replica_metric(gw, "sipp_upstream_requests_total", victim[1], urls)
        wait_for(lambda: replica_metric(gw, "sipp_upstream_requests_total", victim[1], urls) > before,
                 "the restarted replica to serve again")
        stop.set()
        for t in threads:
            t.join(timeout=DEADLINE)
        assert len(results) >= 10
        lost = [r for r in results if not r[1] and not r[2]]
        assert not lost, lost  # every failure had already streamed a token to its caller
        assert replica_metric(gw, "sipp_upstream_ejections_total", victim[1], urls) >= 1
        for u in urls:
            assert replica_metric(gw, "sipp_upstream_healthy", u, urls) == 1
        text = gw.metrics()
        assert 'sipp_upstream_request_seconds_count{target="pool",replica="0",host="%s"}' % (
            urls[0].split("//")[1].split("/")[0]) in text
        assert "/v1" not in text  # the path of a base URL is never a label
    finally:
        gw.stop()


def test_a_conversation_key_stays_on_one_replica(tmp_path, replicas):
    urls = [p[1] for p in replicas]
    gw = Gateway(tmp_path, pool_target(urls, affinity_header="x-conversation"))
    try:
        def counts():
            return [replica_metric(gw, "sipp_upstream_requests_total", u, urls) for u in urls]

        homes = set()
        for key in ("conv-a", "conv-b", "conv-c", "conv-d"):
            before = counts()
            for _ in range(4):
                ok, _, detail = stream_request(gw, BODY, headers={"x-conversation": key})
                assert ok, detail
            delta = [a - b for a, b in zip(counts(), before)]
            assert sorted(delta) == [0, 0, 4], (key, delta)  # all four on one replica
            homes.add(delta.index(4))
        # Without the key the load spreads: concurrent requests use more than one replica.
        before = counts()
        threads = [threading.Thread(target=stream_request, args=(gw, BODY)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(1 for a, b in zip(counts(), before) if a > b) >= 2
    finally:
        gw.stop()


def test_a_dead_replica_is_retried_elsewhere_and_taken_out(tmp_path, replicas):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    live = replicas[0][1]
    urls = [dead, live]
    gw = Gateway(tmp_path, pool_target(urls, health_path="", backoff_initial_seconds=60,
                                       backoff_max_seconds=60),
                 top='admin_password_env = "POOL_ADMIN_PW"', env={"POOL_ADMIN_PW": "pool-admin-pw"})
    try:
        for i in range(4):
            fn = stream_request if i % 2 else finite_request
            ok, _, detail = fn(gw, BODY)
            assert ok, detail
        assert gw.metric("sipp_upstream_retries_total", target="pool") >= 1
        assert replica_metric(gw, "sipp_upstream_errors_total", dead, urls, kind="connection") >= 1
        assert replica_metric(gw, "sipp_upstream_healthy", dead, urls) == 0
        assert replica_metric(gw, "sipp_upstream_healthy", live, urls) == 1
        # the dashboard lists both replicas by index and host:port, never a URL's path
        admin = Admin(gw)
        assert admin.login("pool-admin-pw")[0] == 200
        st, _, state = admin.call("GET", "api/state")
        assert st == 200
        rows = {r["replica"]: r for r in state["replicas"]}
        assert rows[0]["state"] == "out" and rows[1]["state"] == "healthy"
        assert rows[0]["host"] == dead.split("//")[1].split("/")[0]
        assert rows[0]["retry_in_s"] > 0 and rows[1]["requests"] >= 4
        assert "/v1" not in json.dumps(state["replicas"])
    finally:
        gw.stop()


def test_a_503_before_any_body_is_retried_on_another_replica(tmp_path, replicas):
    fs = FaultServer()
    live = replicas[0][1]
    urls = [fs.url("overloaded"), live]
    gw = Gateway(tmp_path, pool_target(urls, health_path="",
                                       failure_threshold=100))
    try:
        for i in range(4):
            ok, _, detail = stream_request(gw, BODY)
            assert ok, detail
        assert len(fs.seen) >= 1  # the busy peer was asked and refused
        assert gw.metric("sipp_upstream_retries_total", target="pool") >= len(fs.seen)
        assert replica_metric(gw, "sipp_upstream_errors_total", urls[0], urls,
                              kind="busy") == len(fs.seen)
    finally:
        gw.stop()
        fs.close()


def test_a_single_base_url_works_as_before(tmp_path, replicas):
    body = ('[[targets]]\nname = "pool"\ntype = "openai_compatible"\nmodel = "tiny"\n'
            f'base_url = "{replicas[0][1]}"\n')
    urls = [replicas[0][1]]
    gw = Gateway(tmp_path, body)
    try:
        ok, _, detail = finite_request(gw, BODY)
        assert ok, detail
        assert replica_metric(gw, "sipp_upstream_requests_total", replicas[0][1], urls) == 1
    finally:
        gw.stop()


def test_check_applies_the_network_policy_to_every_replica(tmp_path):
    cfg = tmp_path / "pool.toml"
    cfg.write_text(pool_target(["http://127.0.0.1:9/v1", "https://169.254.169.254/v1"]))
    r = subprocess.run([str(GATEWAY), "check", "--config", str(cfg)], capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert "target 'pool' (line 1), base_urls[1]" in r.stderr, r.stderr
    assert "169.254.169.254" in r.stderr, r.stderr
    cfg.write_text(pool_target(["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]))
    r = subprocess.run([str(GATEWAY), "check", "--config", str(cfg)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
