"""`sipp pull`, `sipp models`, `sipp rm` and pulled names in --model, against a Hugging
Face-shaped hub on loopback (hub_server.py) that serves the tiny models."""
import hashlib
import os
import pathlib
import pty
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN_DIR, CHAT_MODEL, STORY_MODEL
from gateway_util import GATEWAY, Gateway, local_target
from hub_server import Hub, Repo

CHAT = CHAT_MODEL.read_bytes()
STORY = STORY_MODEL.read_bytes()
CHAT_SHA = hashlib.sha256(CHAT).hexdigest()
STORY_SHA = hashlib.sha256(STORY).hexdigest()
ROOT = pathlib.Path(__file__).resolve().parents[2]
BINDINGS_PY = ROOT / "bindings" / "python"
LIBSIPP = BIN_DIR.parent / "lib" / "libsipp.so"
MMPROJ = b"GGUF" + bytes(range(256)) * 64  # stands in for a projector: only stored, not loaded


@pytest.fixture(scope="module")
def hub():
    h = Hub()
    h.repos["sipp-test/tiny-GGUF"] = Repo({
        "README.md": b"# tiny\n",
        "tiny-Q4_0.gguf": CHAT,
        "tiny-Q8_0.gguf": STORY,
        "mmproj-tiny-F16.gguf": MMPROJ,
    })
    h.repos["sipp-test/split-GGUF"] = Repo({
        "other-Q8_0.gguf": STORY,
        "Q2_K/big-Q2_K-00001-of-00003.gguf": STORY[:400000],
        "Q2_K/big-Q2_K-00002-of-00003.gguf": STORY[400000:800000],
        "Q2_K/big-Q2_K-00003-of-00003.gguf": STORY[800000:],
    })
    h.repos["sipp-test/private-GGUF"] = Repo({"tiny-Q4_0.gguf": CHAT}, private=True)
    yield h
    h.close()


@pytest.fixture
def pull(hub, models_dir):
    """Runs `sipp` against the test hub with a clean environment (no HF_* or SIPP_* leaks)."""
    hub.reset()

    def run(*args, env=None, timeout=120):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("SIPP_", "HF_"))}
        e.update({"SIPP_MODELS_DIR": str(models_dir), "SIPP_HUB_URL": hub.url})
        e.update(env or {})
        return subprocess.run([str(BIN_DIR / "sipp"), *args], capture_output=True, text=True,
                              env=e, timeout=timeout)

    return run


def blobs(models_dir):
    d = models_dir / "hub" / "blobs"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def cdn_requests(hub):
    return [r for r in hub.log if r["path"].startswith("/cdn/")]


def test_pull_by_quant_verifies_stores_and_runs(pull, hub, models_dir):
    r = pull("pull", "sipp-test/tiny-GGUF:q4_0")
    assert r.returncode == 0, r.stderr
    assert "pulled sipp-test/tiny-GGUF:Q4_0" in r.stdout
    assert "tiny-Q4_0.gguf" in r.stderr and "verified" in r.stderr
    # the blob is content-addressed, read-only, and the projector came along
    assert f"sha256-{CHAT_SHA}" in blobs(models_dir)
    assert hashlib.sha256((models_dir / "hub/blobs" / f"sha256-{CHAT_SHA}").read_bytes()).hexdigest() == CHAT_SHA
    assert "projector:" in r.stdout and "mmproj-tiny-F16.gguf" in r.stdout
    assert not [b for b in blobs(models_dir) if b.endswith(".partial")]
    # downloads went through the resolve redirect, pinned to the commit
    commit = hub.repos["sipp-test/tiny-GGUF"].commit
    assert any(x["path"] == f"/sipp-test/tiny-GGUF/resolve/{commit}/tiny-Q4_0.gguf" for x in hub.log)

    r = pull("models")
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if "sipp-test/tiny-GGUF:Q4_0" in l)
    assert "Q4_0" in line.split("sipp-test/tiny-GGUF:Q4_0", 1)[1] and "chat" in line and "(+mmproj)" in line

    r = pull("chat", "--model", "sipp-test/tiny-GGUF:Q4_0", "-n", "8", "--temperature", "0", "Hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    r = pull("info", "sipp-test/tiny-GGUF:q4_0")
    assert r.returncode == 0 and "gpt2" in r.stdout


def test_pull_by_file_reuses_the_stored_blob(pull, hub, models_dir):
    assert pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0").returncode == 0
    before = blobs(models_dir)
    n_cdn = len(cdn_requests(hub))
    r = pull("pull", "sipp-test/tiny-GGUF/tiny-Q4_0.gguf", "--no-mmproj")
    assert r.returncode == 0, r.stderr
    assert "already in the store" in r.stderr
    assert len(cdn_requests(hub)) == n_cdn  # nothing downloaded again
    assert blobs(models_dir) == before      # stored once for two names
    out = pull("models").stdout
    assert "sipp-test/tiny-GGUF:Q4_0" in out and "sipp-test/tiny-GGUF/tiny-Q4_0.gguf" in out
    r = pull("query", "--model", "sipp-test/tiny-GGUF/tiny-Q4_0.gguf", "-n", "4", "Once")
    assert r.returncode == 0, r.stderr


def test_default_quant_falls_back_to_q8_0(pull, models_dir):
    r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF")  # no Q4_K_M here: Q8_0 is next
    assert r.returncode == 0, r.stderr
    assert "tiny-Q8_0.gguf" in r.stderr and f"sha256-{STORY_SHA}" in blobs(models_dir)
    r = pull("query", "--model", "sipp-test/tiny-GGUF", "-n", "4", "Once")
    assert r.returncode == 0, r.stderr


def test_plain_progress_lines_when_not_a_terminal(pull, hub):
    hub.throttle = 2_000_000
    r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0")
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("pull: tiny-Q4_0.gguf:") and "%" in l]
    assert len(lines) >= 3, r.stderr
    assert "\r" not in r.stderr and "\033" not in r.stderr
    assert all("/s" in l and "ETA" in l and " of 2.4 MiB" in l for l in lines)
    assert "(100%)" in lines[-1]


def test_progress_bar_on_a_terminal(hub, models_dir):
    hub.reset()
    hub.throttle = 2_000_000
    master, slave = pty.openpty()
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SIPP_", "HF_"))}
    e.update({"SIPP_MODELS_DIR": str(models_dir), "SIPP_HUB_URL": hub.url})
    p = subprocess.Popen([str(BIN_DIR / "sipp"), "pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0"],
                         stdout=subprocess.PIPE, stderr=slave, env=e)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=60)
    os.close(master)
    assert p.returncode == 0
    text = out.decode(errors="replace")
    assert "\r" in text and "[####" in text and "ETA" in text and "/s" in text


def test_an_interrupted_download_resumes(pull, hub, models_dir):
    hub.throttle = 200_000  # about 13 s for the 2.5 MB model
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SIPP_", "HF_"))}
    e.update({"SIPP_MODELS_DIR": str(models_dir), "SIPP_HUB_URL": hub.url})
    p = subprocess.Popen([str(BIN_DIR / "sipp"), "pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e)
    part = models_dir / "hub/blobs" / f"sha256-{CHAT_SHA}.partial"
    deadline = time.time() + 30
    while time.time() < deadline and not (part.exists() and part.stat().st_size > len(CHAT) // 3):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)  # no chance to clean up: a crash, a power cut
    p.wait()
    kept = part.stat().st_size
    assert len(CHAT) // 3 < kept < len(CHAT)
    assert "sipp-test/tiny-GGUF:Q4_0" not in pull("models").stdout  # not visible yet

    hub.throttle = 0
    hub.log.clear()
    r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0")
    assert r.returncode == 0, r.stderr
    assert "resuming at" in r.stderr
    ranges = [x["headers"].get("Range") for x in cdn_requests(hub)]
    assert ranges == [f"bytes={kept}-"]
    blob = models_dir / "hub/blobs" / f"sha256-{CHAT_SHA}"
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == CHAT_SHA and not part.exists()


def test_a_server_that_ignores_the_range_starts_over(pull, hub, models_dir):
    part = models_dir / "hub/blobs" / f"sha256-{CHAT_SHA}.partial"
    part.parent.mkdir(parents=True)
    part.write_bytes(CHAT[:1000])
    hub.ignore_range = True
    r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0")
    assert r.returncode == 0, r.stderr
    assert "starting over" in r.stderr
    assert hashlib.sha256((models_dir / "hub/blobs" / f"sha256-{CHAT_SHA}").read_bytes()).hexdigest() == CHAT_SHA


def test_a_corrupted_byte_fails_the_sha256_check(pull, hub, models_dir):
    hub.corrupt = {CHAT_SHA}
    r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0")
    assert r.returncode == 1
    assert "failed its sha256 check" in r.stderr and "deleted" in r.stderr
    assert blobs(models_dir) == []  # neither the blob nor its partial
    assert not (models_dir / "hub/manifests/sipp-test/tiny-GGUF.json").exists()
    assert not (models_dir / "hub/files").exists() or not any((models_dir / "hub/files").rglob("*.gguf"))
    assert "sipp-test" not in pull("models").stdout
    r = pull("chat", "--model", "sipp-test/tiny-GGUF:Q4_0", "Hello")
    assert r.returncode == 1 and "sipp pull sipp-test/tiny-GGUF:Q4_0" in r.stderr


def test_a_partial_that_is_not_a_prefix_fails_and_is_deleted(pull, hub, models_dir):
    part = models_dir / "hub/blobs" / f"sha256-{CHAT_SHA}.partial"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 5000)  # a stale partial with other bytes
    r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0")
    assert r.returncode == 1 and "sha256 check" in r.stderr
    assert not part.exists()
    assert pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0").returncode == 0


def test_not_found_errors(pull):
    r = pull("pull", "nobody/nothing-GGUF")
    assert r.returncode == 1 and "nobody/nothing-GGUF was not found on the hub (404)" in r.stderr
    r = pull("pull", "sipp-test/tiny-GGUF:Q9_K")
    assert r.returncode == 1 and "has no Q9_K model file; it has: tiny-Q4_0.gguf, tiny-Q8_0.gguf" in r.stderr
    r = pull("pull", "sipp-test/tiny-GGUF/missing.gguf")
    assert r.returncode == 1 and "has no file 'missing.gguf'" in r.stderr


def test_auth_errors_and_the_token_is_sent_but_never_printed(pull, hub, models_dir):
    r = pull("pull", "sipp-test/private-GGUF:Q4_0")
    assert r.returncode == 1 and "(401)" in r.stderr and "set HF_TOKEN" in r.stderr
    bad = "hf_wrong_secret_token_value"
    r = pull("pull", "sipp-test/private-GGUF:Q4_0", env={"HF_TOKEN": bad, "SIPP_LOG": "debug"})
    assert r.returncode == 1 and "refused HF_TOKEN" in r.stderr
    assert bad not in r.stdout + r.stderr
    hub.log.clear()
    r = pull("pull", "sipp-test/private-GGUF:Q4_0", env={"HF_TOKEN": hub.token, "SIPP_LOG": "debug"})
    assert r.returncode == 0, r.stderr
    assert hub.token not in r.stdout + r.stderr
    auth = {x["path"].split("/")[1] if not x["path"].startswith("/api") else "api":
            x["headers"].get("Authorization") for x in hub.log}
    assert auth["api"] == f"Bearer {hub.token}"
    assert auth["sipp-test"] == f"Bearer {hub.token}"  # resolve, on the hub's origin
    # the same port is the same origin here; a CDN on another origin never gets it (unit-tested
    # in test_hub: same_origin) -- but the token must not leak into anything we print or store
    for f in models_dir.rglob("*"):
        if f.is_file() and f.stat().st_size < 1 << 20:
            assert hub.token.encode() not in f.read_bytes()
    r = pull("models")
    assert hub.token not in r.stdout


def test_the_token_does_not_follow_a_redirect_to_another_origin(pull, hub):
    other = Hub()  # a second server: another origin (another port) serving the blob
    try:
        other.blobs[CHAT_SHA] = CHAT
        hub.redirect_to = f"{other.url}/cdn/{CHAT_SHA}?sig=x"
        r = pull("pull", "--no-mmproj", "sipp-test/private-GGUF:Q4_0", env={"HF_TOKEN": hub.token})
        assert r.returncode == 0, r.stderr
        got = [x for x in other.log if x["path"].startswith("/cdn/")]
        assert got and all("Authorization" not in x["headers"] for x in got)
    finally:
        other.close()


def test_a_redirect_to_plain_http_off_loopback_is_refused(pull, hub):
    hub.redirect_to = "http://example.com/cdn/x"
    r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0")
    assert r.returncode == 1 and "refused a redirect" in r.stderr


def test_https_is_required_off_loopback(pull):
    r = pull("pull", "a/b", env={"SIPP_HUB_URL": "http://example.com"})
    assert r.returncode == 1 and "only to loopback" in r.stderr


def test_a_host_name_that_starts_with_127_is_not_loopback(pull, hub):
    """Issue 19, finding 7: loopback was matched by a prefix of the host name, so plain http went
    to any name starting with "127."; loopback is a name only as localhost or a loopback literal."""
    r = pull("pull", "a/b", env={"SIPP_HUB_URL": "http://127.hub.sipp-test.invalid:8080"})
    assert r.returncode == 1 and "only to loopback" in r.stderr, r.stderr
    port = hub.url.rsplit(":", 1)[1]
    hub.redirect_to = f"http://127.0.0.1.sipp-test.invalid:{port}/cdn/{CHAT_SHA}?sig=x"
    r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0")
    assert r.returncode == 1, r.stderr
    assert "refused a redirect" in r.stderr and "only to loopback" in r.stderr, r.stderr
    assert cdn_requests(hub) == []


class SilentProxy:
    """A listening socket the test owns where a proxy from the environment would be: it counts
    the connections it gets and closes each at once."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.connections += 1
            c.close()

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.setblocking(False)
        while True:  # connections still in the backlog count too
            try:
                self.sock.accept()[0].close()
            except BlockingIOError:
                break
            self.connections += 1
        self.sock.close()


def test_proxy_environment_variables_are_ignored(pull, hub):
    """Issue 19, finding 7: libcurl honours http_proxy, https_proxy and ALL_PROXY by default; a
    pull ignores them (SIPP_HUB_PROXY names a proxy) and goes to the hub directly."""
    proxy = SilentProxy()
    try:
        env = {k: proxy.url for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                      "all_proxy", "ALL_PROXY")}
        env.update({"no_proxy": "", "NO_PROXY": ""})
        r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0", env=env)
    finally:
        proxy.close()
    assert r.returncode == 0, r.stderr
    assert proxy.connections == 0
    assert cdn_requests(hub)


def test_sipp_hub_proxy_carries_every_request(pull, hub):
    """SIPP_HUB_PROXY is the one way to use a proxy: every request goes through it."""
    proxy = Hub()  # answers absolute-form requests for the hub's URLs, as a forward proxy would
    try:
        proxy.repos = hub.repos
        r = pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0",
                 env={"SIPP_HUB_PROXY": proxy.url, "http_proxy": "http://127.0.0.1:1"})
        assert r.returncode == 0, r.stderr
        assert hub.log == []
        assert proxy.log and all(x["target"].startswith(hub.url + "/") for x in proxy.log)
        assert any(x["path"].startswith("/cdn/") for x in proxy.log)
    finally:
        proxy.close()


def test_split_models_come_as_a_set(pull, hub, models_dir):
    hub.page_size = 2  # and the listing is paged
    r = pull("pull", "sipp-test/split-GGUF:Q2_K")
    assert r.returncode == 0, r.stderr
    assert "3 files" in r.stderr
    commit = hub.repos["sipp-test/split-GGUF"].commit
    d = models_dir / "hub/files/sipp-test/split-GGUF" / commit / "Q2_K"
    names = sorted(p.name for p in d.iterdir())
    assert names == [f"big-Q2_K-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    joined = b"".join((d / n).read_bytes() for n in names)
    assert joined == STORY
    assert len([x for x in hub.log if "/tree/" in x["path"]]) > 1
    r = pull("pull", "sipp-test/split-GGUF/Q2_K/big-Q2_K-00002-of-00003.gguf")
    assert r.returncode == 0 and "already in the store" in r.stderr


def test_rm_keeps_blobs_another_name_uses(pull, models_dir):
    assert pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0").returncode == 0
    assert pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF/tiny-Q4_0.gguf").returncode == 0
    r = pull("rm", "sipp-test/tiny-GGUF:Q4_0")
    assert r.returncode == 0 and "removed sipp-test/tiny-GGUF:Q4_0 (0.0 MiB freed)" in r.stdout
    assert f"sha256-{CHAT_SHA}" in blobs(models_dir)
    assert pull("query", "--model", "sipp-test/tiny-GGUF/tiny-Q4_0.gguf", "-n", "2", "Hi").returncode == 0
    r = pull("rm", "sipp-test/tiny-GGUF/tiny-Q4_0.gguf")
    assert r.returncode == 0 and "2.4 MiB freed" in r.stdout
    assert blobs(models_dir) == []
    assert not (models_dir / "hub/files/sipp-test").exists()
    assert "sipp-test" not in pull("models").stdout
    r = pull("rm", "sipp-test/tiny-GGUF:Q4_0")
    assert r.returncode == 1 and "was not pulled" in r.stderr
    r = pull("rm", "stories260K")  # a plain file of the models directory
    assert r.returncode == 0 and not (models_dir / "stories260K.gguf").exists()


def test_a_missing_model_says_how_to_pull_it(pull, hub):
    r = pull("chat", "--model", "someone/some-GGUF:Q4_K_M", "Hello")
    assert r.returncode == 1
    assert "sipp pull someone/some-GGUF:Q4_K_M" in r.stderr
    assert hub.log == []  # offline: nothing touched the network


def test_a_bare_name_that_is_not_there_says_how_to_pull_one(pull):
    r = pull("query", "--model", "no-such-model", "-n", "2", "Hi")
    assert r.returncode == 1
    assert "'no-such-model'" in r.stderr
    assert "(pull one with: sipp pull OWNER/REPO[:QUANT])" in r.stderr


def test_check_and_a_gateway_take_a_pulled_name(pull, models_dir, tmp_path):
    """A gateway target's `model` may be a pulled name: `check` reads the manifests (an unpulled
    name is an error that says how to pull it) and `serve` loads the pulled file."""
    env = {"SIPP_MODELS_DIR": str(models_dir)}
    cfg = tmp_path / "check.toml"
    cfg.write_text(local_target(model="sipp-test/tiny-GGUF:Q4_0"))
    r = subprocess.run([str(GATEWAY), "check", "--config", str(cfg)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 1
    assert "target 'local' (line 1)" in r.stderr  # its [[targets]] line
    assert "pull it with: sipp pull sipp-test/tiny-GGUF:Q4_0" in r.stderr

    assert pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0").returncode == 0
    r = subprocess.run([str(GATEWAY), "check", "--config", str(cfg)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr

    g = Gateway(tmp_path, local_target(model="sipp-test/tiny-GGUF:Q4_0"), env=env)
    try:
        st, _, body = g.post("/v1/chat", {"model": "local", "max_tokens": 4, "temperature": 0,
                                          "messages": [{"role": "user", "content": "Hello"}]})
        assert st == 200, body
        assert body["usage"]["output_tokens"] > 0
    finally:
        assert g.stop() == 0


def test_the_library_resolves_pulled_names_for_add_local(pull, models_dir):
    """libsipp itself (here through the Python binding) takes a pulled name as model_path;
    an unpulled one fails with not_found and the pull command, offline."""
    assert pull("pull", "--no-mmproj", "sipp-test/tiny-GGUF:Q4_0").returncode == 0
    script = """
import sipp
with sipp.Client() as c:
    ep = c.add_local("pulled", "sipp-test/tiny-GGUF:q4_0", n_ctx=128, n_threads=1)
    print("arch", ep.info().architecture)
    try:
        c.add_local("missing", "sipp-test/tiny-GGUF:Q2_K")
    except sipp.SippError as e:
        print("error", e.kind, e.message)
"""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("SIPP_", "HF_"))}
    e.update({"SIPP_MODELS_DIR": str(models_dir), "PYTHONPATH": str(BINDINGS_PY),
              "SIPP_LIBRARY": str(LIBSIPP)})
    # An ASan build of libsipp (scripts/test's build-asan) loads into an uninstrumented python
    # only with the ASan runtime preloaded; CPython's own allocations at exit are not ours.
    ldd = subprocess.run(["ldd", str(LIBSIPP)], capture_output=True, text=True).stdout
    asan = [l.split("=>")[1].split()[0] for l in ldd.splitlines() if "libasan" in l and "=>" in l]
    if asan:
        e.update({"LD_PRELOAD": asan[0], "ASAN_OPTIONS": "detect_leaks=0"})
    r = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True, env=e,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "arch gpt2" in r.stdout
    err = next(l for l in r.stdout.splitlines() if l.startswith("error "))
    assert err.startswith("error not_found ")
    assert "pull it with: sipp pull sipp-test/tiny-GGUF:Q2_K" in err


def test_models_json_lists_pulled_models(pull):
    import json
    assert pull("pull", "sipp-test/tiny-GGUF:Q4_0").returncode == 0
    items = json.loads(pull("models", "--json").stdout)
    hub_items = [i for i in items if i["source"] == "hub"]
    assert len(hub_items) == 1
    it = hub_items[0]
    assert it["name"] == "sipp-test/tiny-GGUF:Q4_0" and it["quantization"] == "Q4_0"
    assert it["architecture"] == "gpt2"
    assert it["capabilities"]["chat"] and it["mmproj"].endswith("mmproj-tiny-F16.gguf")
    assert it["size_bytes"] == len(CHAT) + len(MMPROJ)
    local = [i for i in items if i["source"] == "local"]
    assert {i["name"] for i in local} == {CHAT_MODEL.name, STORY_MODEL.name}


def test_pull_usage_errors(pull):
    r = pull("pull")
    assert r.returncode == 2
    r = pull("pull", "../etc/passwd")
    assert r.returncode == 2
    r = pull("pull", "a/b/../../x.gguf")
    assert r.returncode == 2 and "no '..'" in r.stderr
    r = pull("pull", "--help")
    assert r.returncode == 0 and "OWNER/REPO[:QUANT]" in r.stdout and "HF_TOKEN" in r.stdout


@pytest.fixture(scope="module")
def llava_repo(hub, tmp_path_factory):
    """A vision repo on the test hub: a random-weight LLaVA pair from sipp-make-model (the
    multimodal tests' shapes), the projector as mmproj-*.gguf beside the model, and a PNG."""
    from test_multimodal import png
    d = tmp_path_factory.mktemp("llava-hub")
    for shape, name in (("llava-text", "llava-Q8_0.gguf"), ("llava-mmproj", "mmproj-llava-Q8_0.gguf")):
        r = subprocess.run([str(BIN_DIR / "sipp-make-model"), "--shape", shape, "--out", str(d / name)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    hub.repos["sipp-test/llava-GGUF"] = Repo({p.name: p.read_bytes() for p in d.glob("*.gguf")})
    (d / "a.png").write_bytes(png(64, 48, 1))
    return d


def test_a_pulled_model_takes_its_pulled_projector(pull, llava_repo, models_dir, tmp_path):
    """A local endpoint opened from a pulled model (its name, or the path the store gives) loads
    the projector the pull stored beside it when the caller names none, as the original Sipp
    stages it: an image works with no --mmproj and gives the text an explicit --mmproj gives.
    Pulled with --no-mmproj there is none; a stored projector that cannot be loaded leaves the
    model usable for text, and an image's error says why."""
    import base64
    import json
    r = pull("pull", "sipp-test/llava-GGUF")
    assert r.returncode == 0, r.stderr
    assert "mmproj-llava-Q8_0.gguf" in r.stdout
    item = next(i for i in json.loads(pull("models", "--json").stdout)
                if i["name"].startswith("sipp-test/llava-GGUF"))
    chat = ["chat", "--json", "-n", "4", "--temperature", "0", "--image", str(llava_repo / "a.png"),
            "Describe the picture."]
    r = pull(*chat, "--model", "sipp-test/llava-GGUF")
    assert r.returncode == 0, r.stderr
    auto = json.loads(r.stdout)
    assert auto["stats"]["media_chunks"] == 1 and auto["stats"]["encode_ms"] > 0
    r = pull(*chat, "--model", "sipp-test/llava-GGUF", "--mmproj", item["mmproj"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["text"] == auto["text"]
    r = pull(*chat, "--model", "sipp-test/llava-GGUF", "--mmproj", "")  # "": none
    assert r.returncode != 0 and "without a projector (mmproj)" in r.stderr, r.stderr

    # a gateway target naming the pulled model takes images on the OpenAI route
    env = {"SIPP_MODELS_DIR": str(models_dir)}
    g = Gateway(tmp_path, local_target(model="sipp-test/llava-GGUF", n_ctx=512), env=env)
    try:
        url = "data:image/png;base64," + base64.b64encode((llava_repo / "a.png").read_bytes()).decode()
        st, _, body = g.post("/v1/chat/completions", {
            "model": "local", "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Describe the picture."},
                {"type": "image_url", "image_url": {"url": url}}]}]})
        assert st == 200, body
        assert body["choices"][0]["message"]["content"] == auto["text"]
    finally:
        assert g.stop() == 0

    # the tiny repo's stored projector is no GGUF projector: text still works, images say why
    assert pull("pull", "sipp-test/tiny-GGUF:Q4_0").returncode == 0
    r = pull("chat", "--model", "sipp-test/tiny-GGUF:Q4_0", "-n", "4", "Hello")
    assert r.returncode == 0, r.stderr
    r = pull("chat", "--model", "sipp-test/tiny-GGUF:Q4_0", "-n", "4", "--image",
             str(llava_repo / "a.png"), "Hello")
    assert r.returncode != 0
    assert "the projector pulled with this 'gpt2' model could not be used" in r.stderr, r.stderr


def test_a_model_pulled_without_its_projector_takes_no_image(pull, llava_repo):
    r = pull("pull", "--no-mmproj", "sipp-test/llava-GGUF:Q8_0")
    assert r.returncode == 0, r.stderr
    r = pull("chat", "--model", "sipp-test/llava-GGUF:Q8_0", "-n", "4", "--image",
             str(llava_repo / "a.png"), "Describe the picture.")
    assert r.returncode != 0
    assert "without a projector (mmproj)" in r.stderr, r.stderr
