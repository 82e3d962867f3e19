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
    ("forbidden", "403 (authorization): You are not allowed to use this model [model_not_allowed]"),
    ("bad_request", "400 (invalid_argument): Unrecognized request argument supplied: foo [invalid_request_error]"),
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


def test_a_peer_that_quotes_the_key_back_has_it_cut_out(sipp, faults):
    """H4/H5: a careless peer's 401 message carries the bearer header and the bare key; the
    message reaches the user with both replaced, the rest of it kept."""
    r, _ = chat(sipp, faults.url("echo_key"))
    assert r.returncode == 1
    assert "401 (authentication): Incorrect API key provided: [redacted] (header [redacted])" in r.stderr, r.stderr
    assert SECRET not in r.stdout + r.stderr and SECRET[:12] not in r.stderr


@pytest.mark.parametrize("url,needle", [
    ("https://169.254.169.254/latest/meta-data", "cloud metadata service address"),
    ("https://[fd00:ec2::254]/v1", "cloud metadata service address"),
    ("https://10.0.0.1/v1", "private-network address (set allow_private_network"),
    ("https://[fe80::1]/v1", "link-local address"),
    ("http://192.168.1.20:8000/v1", "plain http is allowed only to loopback"),
    ("file:///etc/passwd", "must be http or https"),
])
def test_ssrf_targets_refused_before_any_connection(sipp, url, needle):
    """H1: metadata, private, link-local and non-http URLs fail at once with the reason."""
    r = sipp("chat", "--provider", "openai_compatible", "--base-url", url, "--remote-model", "m",
             "hi", timeout=10)
    assert r.returncode == 1 and needle in r.stderr, r.stderr


def test_allow_private_network_never_admits_the_metadata_address(sipp):
    """H1: --allow-private-network widens the policy to private and link-local addresses (that
    admission is checked without connecting in api_endpoint_params: tests send traffic to
    loopback only); the metadata address stays refused even with it."""
    r = sipp("chat", "--provider", "openai_compatible", "--base-url", "https://169.254.169.254/v1",
             "--remote-model", "m", "--allow-private-network", "hi", timeout=10)
    assert r.returncode == 1 and "cloud metadata" in r.stderr


def test_redirects_are_not_followed(sipp, faults):
    """H1: a 307 to a URL that would answer is not followed (a redirect could point anywhere);
    the run fails naming the status, and the key went only to the first URL."""
    n = len(faults.seen)
    r, _ = chat(sipp, faults.url("redirect"))
    assert r.returncode == 1 and "unexpected HTTP status 307" in r.stderr, r.stderr
    assert [s["path"].split("/")[1] for s in faults.seen[n:]] == ["redirect"]
