"""Reload (docs/gateway.md "Reload"): SIGHUP and the dashboard's POST api/reload re-read the
config file and apply it whole: settings (here the IP blocklist), added, removed and changed
targets and callers. Requests keep the configuration they started with to their end, so a stream
open across a reload finishes on its target even when the reload removed or changed it; targets
that did not change are shared, not loaded again. An invalid file is refused as a whole with the
reason (log, dashboard, API, metric), and the running configuration stays."""
import json
import signal
import time

from conftest import CHAT_MODEL
from gateway_util import Gateway, Stream, error_of, local_target, story_target
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


KEYS = {"KEY_A": "key-a-secret", "KEY_B": "key-b-secret", "KEY_C": "key-c-secret"}


def caller(name, env, targets=None):
    t = f"\ntargets = {json.dumps(targets)}" if targets is not None else ""
    return f'[[tokens]]\ncaller = "{name}"\nenv = "{env}"{t}\n'


def reload_applied(gw, n=1):
    gw.proc.send_signal(signal.SIGHUP)
    done = wait_log(gw, "config reloaded", n=n)
    assert len(done) == n, [l for l in gw.logs() if "reload" in l.get("msg", "")]
    return done[-1]


def usage_stream(gw, model, max_tokens=48, token=None):
    """A completion stream with usage, opened and its first event read."""
    s = Stream(gw, "/v1/completions", {"model": model, "prompt": "Once upon a time",
                                       "max_tokens": max_tokens, "stream": True,
                                       "stream_options": {"include_usage": True}}, token=token)
    assert s.status == 200
    frames = s.frames()
    first = next(f for f in frames if f[1])
    return s, frames, json.loads(first[1])


def drain(s, frames, first):
    """The stream's chunks to its end: it must end normally, with every token it counted."""
    datas = [d for _, d, _ in frames if d]
    s.close()
    assert datas[-1] == "[DONE]", datas[-2:]
    chunks = [first] + [json.loads(d) for d in datas[:-1]]
    assert not any("error" in c for c in chunks), chunks[-2:]
    texts = [c for c in chunks if c.get("choices") and c["choices"][0].get("text")]
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length"), chunks[-2]
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] >= len(texts) > 0, (usage, len(texts))
    return chunks


def models(gw, token=None):
    st, _, b = gw.request("GET", "/v1/models", token=token)
    assert st == 200, b
    return sorted(m["id"] for m in json.loads(b)["data"])


def test_sighup_adds_a_target_and_it_answers(tmp_path):
    gw = Gateway(tmp_path, story_target())
    try:
        assert complete(gw, "story2")[0] == 404
        rewrite(gw, story_target() + story_target("story2"))
        done = reload_applied(gw)
        assert "added: [story2]" in done["changes"], done
        assert models(gw) == ["story", "story2"]
        st, _, b = complete(gw, "story2")
        assert st == 200 and b["model"] == "story2", b
        assert gw.metric("sipp_config_reloads_total", result="applied") == 1
    finally:
        assert gw.stop() == 0


def test_removed_target_finishes_its_open_stream_and_then_answers_404(tmp_path):
    gw = Gateway(tmp_path, story_target() + story_target("other"))
    try:
        s, frames, first = usage_stream(gw, "story")
        rewrite(gw, story_target("other"))
        done = reload_applied(gw)
        assert "removed: [story]" in done["changes"], done
        st, _, b = complete(gw, "story")
        assert (st, error_of(b)) == (404, "resolution"), b
        drain(s, frames, first)  # the stream opened before the reload ends with all its tokens
        assert models(gw) == ["other"]
        assert complete(gw, "other")[0] == 200
    finally:
        assert gw.stop() == 0


def test_changed_callers_take_effect_for_new_requests(tmp_path):
    targets = story_target() + story_target("story2")
    gw = Gateway(tmp_path, targets + caller("app", "KEY_A") + caller("gone", "KEY_C"), env=KEYS)
    try:
        a, b, c = KEYS["KEY_A"], KEYS["KEY_B"], KEYS["KEY_C"]
        assert complete_as(gw, a)[0] == 200
        assert complete_as(gw, c)[0] == 200
        assert complete_as(gw, b)[0] == 401
        s, frames, first = usage_stream(gw, "story", token=c)
        # app's key moves to KEY_B; "gone" is removed; "new" is added, limited to story2
        rewrite(gw, targets + caller("app", "KEY_B") + caller("new", "KEY_A", ["story2"]))
        done = reload_applied(gw)
        assert "callers added: [new], removed: [gone]" in done["changes"], done
        st, _, body = complete_as(gw, c)
        assert (st, error_of(body)) == (401, "authentication"), body  # a removed caller's key
        assert complete_as(gw, b)[0] == 200  # app's new key
        st, _, body = complete_as(gw, a)  # the old key now names "new", which may not use story
        assert (st, error_of(body)) == (403, "authorization"), body
        assert complete_as(gw, a, "story2")[0] == 200
        assert models(gw, a) == ["story2"]
        drain(s, frames, first)  # the removed caller's open stream was not cut
    finally:
        assert gw.stop() == 0


def complete_as(gw, token, model="story"):
    return gw.post("/v1/completions", {"model": model, "prompt": "Once", "max_tokens": 2},
                   token=token)


def chat(gw, model="m"):
    return gw.post("/v1/chat/completions", {"model": model, "max_tokens": 2,
                                            "messages": [{"role": "user", "content": "Hi"}]})


def test_changed_local_model_serves_new_requests_and_lets_the_old_stream_finish(tmp_path):
    """story model -> chat model and back: the story model has no chat template, the chat model
    has one, so /v1/chat/completions tells which one answers."""
    gw = Gateway(tmp_path, story_target("m"))
    try:
        st, _, b = chat(gw)
        assert st == 400 and "no chat template" in b["error"]["message"], b
        s, frames, first = usage_stream(gw, "m")
        rewrite(gw, local_target("m", CHAT_MODEL))
        done = reload_applied(gw)
        assert "changed: [m]" in done["changes"], done
        st, _, b = chat(gw)  # loaded before the swap: the new model answers at once
        assert st == 200 and b["model"] == "m", b
        drain(s, frames, first)  # the stream on the story model ended normally
        s, frames, first = usage_stream(gw, "m")
        rewrite(gw, story_target("m"))  # and back, with a stream open on the chat model
        reload_applied(gw, n=2)
        st, _, b = chat(gw)
        assert st == 400 and "no chat template" in b["error"]["message"], b
        drain(s, frames, first)
        assert complete(gw, "m")[0] == 200
        assert models(gw) == ["m"]
    finally:
        assert gw.stop() == 0


def test_unchanged_local_target_is_not_reloaded_when_callers_change(tmp_path):
    gw = Gateway(tmp_path, story_target() + caller("app", "KEY_A"), env=KEYS)
    try:
        a, b = KEYS["KEY_A"], KEYS["KEY_B"]
        for _ in range(3):
            assert complete_as(gw, a)[0] == 200
        assert gw.metric("sipp_target_loads_total", target="story") == 1
        completed = gw.metric("sipp_engine_completed_total", target="story")
        assert completed >= 3
        rewrite(gw, story_target().replace("[targets.runtime]", 'idle_unload_seconds = 600\n'
                                           "[targets.runtime]")
                + caller("app", "KEY_A") + caller("other", "KEY_B"))
        done = reload_applied(gw)
        assert "changed: []" in done["changes"] and "added: [other]" in done["changes"], done
        assert complete_as(gw, b)[0] == 200  # the new caller
        # the same engine serves on: no second load, its counters go on from where they were
        assert gw.metric("sipp_target_loads_total", target="story") == 1
        assert gw.wait_metric("sipp_engine_completed_total", lambda v: v > completed,
                              target="story") == completed + 1
        assert len([l for l in gw.logs() if l.get("msg") == "target ready"]) == 1
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


def test_invalid_config_is_refused_by_the_dashboard_with_its_reason(tmp_path):
    env = dict(ADMIN_ENV, **KEYS)
    gw = Gateway(tmp_path, story_target() + caller("app", "KEY_A"), top=ADMIN_TOP, env=env)
    try:
        a = Admin(gw)
        assert a.login()[0] == 200
        refusals = [
            ("[[targets]\nname = \"x\"\n", "invalid config"),  # not TOML
            (story_target() + caller("app", "KEY_A", ["nope"]), "unknown target 'nope'"),
            (story_target() + caller("app", "KEY_UNSET"), "KEY_UNSET is not set"),
            (story_target() + local_target("broken", "/nonexistent/model.gguf"), "'broken'"),
        ]
        for n, (body, reason) in enumerate(refusals, 1):
            rewrite(gw, body, top=ADMIN_TOP)
            st, _, b = a.call("POST", "api/reload", {}, csrf=a.csrf)
            assert st == 400 and b["error"]["code"] == "reload_refused", b
            assert reason in b["error"]["message"], b
            refused = wait_log(gw, "config reload refused", n=n)
            assert len(refused) == n and reason in refused[-1]["reason"], refused
            st, _, state = a.call("GET", "api/state")
            assert state["settings"]["reload"]["ok"] is False
            assert reason in state["settings"]["reload"]["message"]
            assert gw.metric("sipp_config_reloads_total", result="refused") == n
            # the old configuration serves on: its caller, its target, nothing of the new file
            assert complete_as(gw, KEYS["KEY_A"])[0] == 200
            assert models(gw, KEYS["KEY_A"]) == ["story"]
        assert gw.metric("sipp_config_reloads_total", result="applied") == 0
        assert gw.proc.poll() is None
    finally:
        gw.stop()


def test_reloads_under_load_lose_no_request(tmp_path):
    """Requests and streams from several threads while reloads add, remove and change targets
    and callers: each request is answered from one whole configuration (200, or 404 for a
    target that a reload removed, 401 for a key it removed), every stream ends normally, and
    the gateway exits cleanly. Run with SIPP_BIN_DIR=build-tsan/bin (a -DSIPP_SANITIZE=thread
    build of sipp_gateway_bin, TSAN_OPTIONS=halt_on_error=1) a race makes the exit status
    non-zero."""
    import threading
    configs = [
        story_target() + story_target("flip") + caller("app", "KEY_A") + caller("b", "KEY_B"),
        story_target() + local_target("flip", CHAT_MODEL) + caller("app", "KEY_A"),
        story_target() + caller("app", "KEY_A") + caller("b", "KEY_B", ["story"]),
    ]
    gw = Gateway(tmp_path, configs[0], env=KEYS)
    stop, problems, counts = threading.Event(), [], {"ok": 0, "streams": 0}
    lock = threading.Lock()

    def worker(k):
        i = 0
        while not stop.is_set():
            i += 1
            model = "story" if i % 2 else "flip"
            token = KEYS["KEY_A"] if k % 2 else KEYS["KEY_B"]
            try:
                if i % 3 == 0:
                    s = Stream(gw, "/v1/completions", {"model": model, "prompt": "Once",
                                                       "max_tokens": 16, "stream": True}, token=token)
                    if s.status == 200:
                        datas = [d for _, d, _ in s.frames() if d]
                        s.close()
                        if datas[-1] != "[DONE]" or any("error" in json.loads(d) for d in datas[:-1]):
                            problems.append(("stream", model, datas[-2:]))
                        with lock:
                            counts["streams"] += 1
                        continue
                    st = s.status
                    s.close()
                else:
                    st, _, b = complete_as(gw, token, model)
                allowed = {200, 404, 401, 403} if (model == "flip" or token == KEYS["KEY_B"]) else {200}
                if st not in allowed:
                    problems.append((model, token[:5], st))
                elif st == 200:
                    with lock:
                        counts["ok"] += 1
            except Exception as e:  # noqa: BLE001 - a dropped connection is the failure
                problems.append((model, repr(e)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        for n in range(1, 7):
            rewrite(gw, configs[n % 3])
            reload_applied(gw, n=n)
            before = counts["ok"] + counts["streams"]
            deadline = time.time() + 30  # let requests run on this configuration
            while counts["ok"] + counts["streams"] < before + 4 and time.time() < deadline:
                time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(60)
        assert not problems, problems[:5]
        assert counts["ok"] > 0 and counts["streams"] > 0, counts
        assert complete_as(gw, KEYS["KEY_A"])[0] == 200
    finally:
        stop.set()
        assert gw.stop() == 0


def test_changed_local_model_under_a_memory_budget_loads_on_first_use(tmp_path):
    """With [models] memory_budget_bytes the reload does not load the changed model beside the
    old one: it is inspected, listed `unloaded`, and its first request loads it within the
    budget (docs "Residency") while the old model finishes its stream."""
    top = "[models]\nmemory_budget_bytes = 1073741824\n"
    gw = Gateway(tmp_path, story_target("m"), top=top)
    try:
        s, frames, first = usage_stream(gw, "m")
        rewrite(gw, local_target("m", CHAT_MODEL), top=top)
        done = reload_applied(gw)
        assert "changed: [m]" in done["changes"], done
        st, _, b = gw.request("GET", "/v1/models")
        assert [(m["id"], m["status"]) for m in json.loads(b)["data"]] == [("m", "unloaded")]
        st, _, b = chat(gw)  # the chat model, loaded by this request
        assert st == 200 and b["model"] == "m", b
        st, _, b = gw.request("GET", "/v1/models")
        assert [(m["id"], m["status"]) for m in json.loads(b)["data"]] == [("m", "loaded")]
        drain(s, frames, first)
    finally:
        assert gw.stop() == 0
