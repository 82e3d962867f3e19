"""Reload (docs/gateway.md "Reload"): SIGHUP and the dashboard's POST api/reload re-read the
config file. Changes to the settings that can change in place take effect (here the IP
blocklist); an invalid file, or one that adds or removes a target, is refused as a whole with
the reason in the log and on the dashboard, and the running configuration stays. Streams open
across a reload are not touched."""
import json
import signal
import time

from gateway_util import Gateway, Stream, error_of, story_target
from test_gateway_admin import ENV as ADMIN_ENV, TOP as ADMIN_TOP, Admin


def wait_log(gw, msg, n=1, timeout=30):
    deadline = time.time() + timeout
    while True:
        lines = [l for l in gw.logs() if l.get("msg") == msg]
        if len(lines) >= n or time.time() > deadline:
            return lines
        time.sleep(0.05)


def rewrite(gw, body, top=""):
    """The gateway's own config file with new tables (the listeners stay)."""
    head = gw.config.read_text().split("\n", 2)[:2]
    gw.config.write_text("\n".join(head) + "\n" + top + "\n" + body)


def complete(gw, model="story"):
    return gw.post("/v1/completions", {"model": model, "prompt": "Once", "max_tokens": 2})


def open_stream(gw):
    s = Stream(gw, "/v1/completions", {"model": "story", "prompt": "Once upon a time",
                                       "max_tokens": 48, "stream": True})
    assert s.status == 200
    frames = s.frames()
    first = next(frames)
    return s, frames, first


def finish_stream(s, frames):
    rest = [d for _, d, _ in frames if d]
    s.close()
    return rest


def test_sighup_applies_a_blocklist_and_keeps_open_streams(tmp_path):
    gw = Gateway(tmp_path, story_target())
    try:
        assert complete(gw)[0] == 200
        s, frames, _ = open_stream(gw)
        rewrite(gw, story_target(), top='[security]\nip_blocklist = ["127.0.0.1/32"]\n')
        gw.proc.send_signal(signal.SIGHUP)
        assert wait_log(gw, "config reloaded")
        st, _, b = complete(gw)
        assert st == 403 and error_of(b) == "blocked", b
        rest = finish_stream(s, frames)  # the stream opened before the reload ends normally
        assert rest[-1] == "[DONE]" and "error" not in json.loads(rest[-2]), rest[-2:]
        rewrite(gw, story_target())  # and back
        gw.proc.send_signal(signal.SIGHUP)
        assert len(wait_log(gw, "config reloaded", n=2)) == 2
        assert complete(gw)[0] == 200
    finally:
        assert gw.stop() == 0


def test_invalid_config_is_refused_and_the_old_one_stays(tmp_path):
    gw = Gateway(tmp_path, story_target())
    try:
        rewrite(gw, story_target() + "\nnot_a_key = 1\n")
        gw.proc.send_signal(signal.SIGHUP)
        refused = wait_log(gw, "config reload refused")
        assert refused and "not_a_key" in refused[0]["reason"], refused
        assert complete(gw)[0] == 200
        assert gw.proc.poll() is None
    finally:
        assert gw.stop() == 0


def test_adding_or_removing_a_target_is_refused_without_touching_streams(tmp_path):
    gw = Gateway(tmp_path, story_target())
    try:
        s, frames, _ = open_stream(gw)
        rewrite(gw, story_target() + story_target("story2"))
        gw.proc.send_signal(signal.SIGHUP)
        refused = wait_log(gw, "config reload refused")
        assert refused and "target 'story2' was added" in refused[0]["reason"], refused
        rewrite(gw, story_target("other"))
        gw.proc.send_signal(signal.SIGHUP)
        refused = wait_log(gw, "config reload refused", n=2)
        assert len(refused) == 2 and "target 'other' was added" in refused[1]["reason"], refused
        rewrite(gw, story_target().replace("n_threads = 1", "n_threads = 2"))  # a runtime key
        gw.proc.send_signal(signal.SIGHUP)
        refused = wait_log(gw, "config reload refused", n=3)
        assert len(refused) == 3 and "target 'story' changed" in refused[2]["reason"], refused
        rest = finish_stream(s, frames)
        assert rest[-1] == "[DONE]"
        st, _, b = gw.request("GET", "/v1/models")
        assert [m["id"] for m in json.loads(b)["data"]] == ["story"]
        assert complete(gw, "story2")[0] == 404
    finally:
        assert gw.stop() == 0


def test_reload_from_the_dashboard(tmp_path):
    gw = Gateway(tmp_path, story_target(), top=ADMIN_TOP, env=ADMIN_ENV)
    try:
        a = Admin(gw)
        assert a.login()[0] == 200
        assert a.call("POST", "api/reload", {})[0] == 403  # CSRF, as every mutation
        st, _, b = a.call("POST", "api/reload", {}, csrf=a.csrf)
        assert st == 200 and b == {"ok": True}
        rewrite(gw, "[[targets]]\nname = 1\n", top=ADMIN_TOP)
        st, _, b = a.call("POST", "api/reload", {}, csrf=a.csrf)
        assert st == 400 and b["error"]["code"] == "reload_refused", b
        assert "invalid config" in b["error"]["message"]
        st, _, state = a.call("GET", "api/state")
        assert st == 200
        r = state["settings"]["reload"]
        assert r["ok"] is False and "invalid config" in r["message"]
        assert complete(gw)[0] == 200
    finally:
        gw.stop()
