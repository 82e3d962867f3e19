"""Error paths of provider endpoints against the scripted fault server: each fault yields its
error kind, the API key never shows, and nothing hangs."""
import time

import pytest

from fault_server import FaultServer

SECRET = "sk-test-secret-0123456789"


@pytest.fixture(scope="module")
def faults():
    srv = FaultServer()
    yield srv
    srv.close()


def chat(sipp, url, *extra):
    t0 = time.monotonic()
    r = sipp("chat", "--provider", "openai_compatible", "--base-url", url, "--remote-model", "m",
             "--api-key-env", "FAULT_KEY", *extra, "hi", env={"FAULT_KEY": SECRET}, timeout=30)
    return r, time.monotonic() - t0


@pytest.mark.parametrize("scenario,needle", [
    ("unauthorized", "401 (authentication): Incorrect API key provided"),
    ("rate_limited", "429 (rate_limited) (retry after 7 s)"),
    ("quota", "429 (quota_exceeded)"),
    ("server_error", "500 (upstream_error)"),
    ("overloaded", "503 (overloaded)"),
    ("huge_error", "500 (upstream_error)"),
    ("malformed_sse", "invalid JSON"),
    ("no_done", "ended without [DONE]"),
    ("huge_event", "exceeds 1048576 bytes"),
])
def test_fault_maps_to_its_error(sipp, faults, scenario, needle):
    r, took = chat(sipp, faults.url(scenario))
    assert r.returncode == 1
    assert needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert SECRET not in r.stdout + r.stderr
    assert took < 15


def test_the_key_is_sent_as_bearer(sipp, faults):
    r, _ = chat(sipp, faults.url("ok"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Hi\n"
    assert faults.seen_auth[-1] == "Bearer " + SECRET


def test_a_body_that_never_ends_hits_the_request_timeout(sipp, faults):
    r, took = chat(sipp, faults.url("never_ends"), "--request-timeout-ms", "1000")
    assert r.returncode == 1
    assert "timed out" in r.stderr
    assert took < 10


def test_a_stalled_stream_hits_the_idle_timeout(sipp, faults):
    r, took = chat(sipp, faults.url("stalls"), "--idle-timeout-ms", "1000")
    assert r.returncode == 1
    assert "timed out" in r.stderr
    assert took < 10
