"""Residency of local targets (docs/gateway.md "Residency"): the real sipp-gateway with targets
loaded on first use, unloaded when idle, and kept within [models] memory_budget_bytes (least
recently used idle model out first, never one with a request in flight, 503 when the budget
cannot be met). Waits are on metrics and on the answers, never on timing thresholds."""
import json

from conftest import CHAT_MODEL, STORY_MODEL
from gateway_util import Gateway, Stream, error_of, local_target, prom_ok


def res_target(name, model=STORY_MODEL, load="on_use", idle=None, **runtime):
    """A local target with residency keys (they belong to the target, before its runtime)."""
    keys = f'load = "{load}"\n' + (f"idle_unload_seconds = {idle}\n" if idle is not None else "")
    return local_target(name, model, **runtime).replace("[targets.runtime]", keys + "[targets.runtime]")


def statuses(gw):
    st, _, b = gw.request("GET", "/v1/models")
    assert st == 200
    return {m["id"]: m.get("status") for m in json.loads(b)["data"]}


def complete(gw, model, max_tokens=4):
    return gw.post("/v1/completions", {"model": model, "prompt": "Once upon a time",
                                        "max_tokens": max_tokens, "temperature": 0})


def test_load_on_first_use(tmp_path):
    gw = Gateway(tmp_path, res_target("story") + res_target("chat", CHAT_MODEL) +
                 res_target("eager", load="start"))
    try:
        # ready at once: on_use targets wait for their first request, "start" ones are loaded
        assert statuses(gw) == {"story": "unloaded", "chat": "unloaded", "eager": "loaded"}
        assert gw.metric("sipp_target_loaded", target="story") == 0
        assert gw.metric("sipp_target_loaded", target="eager") == 1
        st, _, b = complete(gw, "story")
        assert st == 200 and b["choices"][0]["text"], b
        assert statuses(gw) == {"story": "loaded", "chat": "unloaded", "eager": "loaded"}
        assert gw.metric("sipp_target_loaded", target="story") == 1
        assert gw.metric("sipp_target_loads_total", target="story") == 1
        assert gw.metric("sipp_target_loads_total", target="chat") == 0
        # a second request uses the loaded model: no second load
        assert complete(gw, "story")[0] == 200
        assert gw.metric("sipp_target_loads_total", target="story") == 1
        text = gw.metrics()
        prom_ok(text)
        assert "sipp_models_memory_bytes" in text and 'sipp_target_memory_bytes{target="chat"}' in text
        # a streamed request for an unloaded model waits for the load, then streams
        s = Stream(gw, "/v1/chat/completions", {"model": "chat", "max_tokens": 4, "stream": True,
                                                 "messages": [{"role": "user", "content": "Hi"}]})
        assert s.status == 200
        got = list(s.frames())
        s.close()
        assert got[0] == (None, None, ": loading"), got[:2]  # the progress comment comes first
        frames = [d for _, d, _ in got if d]
        assert frames[-1] == "[DONE]" and json.loads(frames[0])["choices"][0]["delta"]
        assert statuses(gw)["chat"] == "loaded"
    finally:
        gw.stop()


def test_idle_unload_and_reload(tmp_path):
    gw = Gateway(tmp_path, res_target("story", idle=1))
    try:
        assert complete(gw, "story")[0] == 200
        assert gw.wait_metric("sipp_target_unloads_total", lambda v: v >= 1, timeout=60,
                              target="story", reason="idle") == 1
        assert statuses(gw)["story"] == "unloaded"
        assert gw.metric("sipp_target_loaded", target="story") == 0
        # the next request loads it again
        assert complete(gw, "story")[0] == 200
        assert gw.metric("sipp_target_loads_total", target="story") == 2
    finally:
        gw.stop()


def test_budget_refusal(tmp_path):
    gw = Gateway(tmp_path, res_target("story"), top="[models]\nmemory_budget_bytes = 1000\n")
    try:
        st, h, b = complete(gw, "story")
        assert st == 503 and error_of(b) == "unavailable", b
        assert "memory budget" in b["error"]["message"] and "retry-after" in h
        assert gw.metric("sipp_target_load_refused_total", target="story") == 1
        assert statuses(gw)["story"] == "unloaded"
        assert gw.metric("sipp_models_memory_budget_bytes") == 1000
    finally:
        gw.stop()


def footprint(tmp_path):
    """The estimated footprint of the story target, read from a gateway without a budget."""
    gw = Gateway(tmp_path, res_target("story"))
    try:
        return int(gw.metric("sipp_target_memory_bytes", target="story"))
    finally:
        gw.stop()


def test_footprint_counts_resident_sequences(tmp_path):
    """n_resident above n_parallel keeps that many sequences' KV cache in memory: the estimate
    counts them (two decode slots, four resident = twice the cache of two)."""
    gw = Gateway(tmp_path, res_target("two") + res_target("four", n_resident=4))
    try:
        two = int(gw.metric("sipp_target_memory_bytes", target="two"))
        four = int(gw.metric("sipp_target_memory_bytes", target="four"))
    finally:
        gw.stop()
    assert four > two > 0


def test_lru_unload_within_budget(tmp_path):
    f = footprint(tmp_path)
    assert f > 0
    body = "".join(res_target(n) for n in ("s1", "s2", "s3"))
    gw = Gateway(tmp_path, body, top=f"[models]\nmemory_budget_bytes = {2 * f}\n")
    try:
        assert complete(gw, "s1")[0] == 200
        assert complete(gw, "s2")[0] == 200
        assert complete(gw, "s1")[0] == 200  # s1 is now the most recently used
        assert statuses(gw) == {"s1": "loaded", "s2": "loaded", "s3": "unloaded"}
        assert complete(gw, "s3")[0] == 200  # two fit: the least recently used (s2) goes
        assert statuses(gw) == {"s1": "loaded", "s2": "unloaded", "s3": "loaded"}
        assert gw.metric("sipp_target_unloads_total", target="s2", reason="budget") == 1
        assert gw.metric("sipp_target_unloads_total", target="s1", reason="budget") == 0
        assert gw.metric("sipp_models_memory_bytes") == 2 * f
    finally:
        gw.stop()


def test_budget_never_unloads_a_model_in_use(tmp_path):
    f = footprint(tmp_path)
    body = res_target("s1", ignore_eos=True) + res_target("s2")
    gw = Gateway(tmp_path, body, top=f"[models]\nmemory_budget_bytes = {f}\n")
    try:
        s = Stream(gw, "/v1/completions", {"model": "s1", "prompt": "Once upon a time",
                                           "max_tokens": 100000, "stream": True})
        assert s.status == 200
        frames = s.frames()
        assert next(frames) == (None, None, ": loading")  # s1 was not loaded: it loads now
        next(f for f in frames if f[1])  # and streams: a run in flight
        st, _, b = complete(gw, "s2")
        assert st == 503 and error_of(b) == "unavailable", b
        assert statuses(gw) == {"s1": "loaded", "s2": "unloaded"}
        s.close()  # the client goes: its request ends, s1 is idle
        assert gw.wait_metric("sipp_requests_active", lambda v: v == 0, timeout=60) == 0
        assert complete(gw, "s2")[0] == 200  # now s1 can make room
        assert statuses(gw) == {"s1": "unloaded", "s2": "loaded"}
        assert gw.metric("sipp_target_unloads_total", target="s1", reason="budget") == 1
    finally:
        gw.stop()


def test_residency_config_errors(tmp_path):
    for body, top, needle in [
        (res_target("s", load="sometimes"), "", "targets.load"),
        (res_target("s", idle=-1), "", "idle_unload_seconds"),
        (res_target("s"), "[models]\nmemory_budget = 5\n", "models"),
    ]:
        try:
            Gateway(tmp_path, body, top=top)
        except RuntimeError as e:
            assert needle in str(e), str(e)
        else:
            raise AssertionError("accepted: " + body)


def test_concurrent_requests_share_one_load(tmp_path):
    """Requests that come while a model loads wait for that load (streams with `: loading`
    first when they found it unloaded or loading): one load, every answer whole."""
    import threading
    gw = Gateway(tmp_path, res_target("story", n_parallel=4))
    try:
        out = [None] * 6

        def stream(k):
            s = Stream(gw, "/v1/completions", {"model": "story", "prompt": "Once",
                                               "max_tokens": 4, "stream": True})
            out[k] = (s.status, [d for _, d, _ in s.frames() if d])
            s.close()

        def finite(k):
            st, _, b = complete(gw, "story")
            out[k] = (st, b)

        ts = [threading.Thread(target=stream if k % 2 else finite, args=(k,)) for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        for k, (st, body) in enumerate(out):
            assert st == 200, (k, body)
            if k % 2:
                assert body[-1] == "[DONE]", body
        assert gw.metric("sipp_target_loads_total", target="story") == 1
    finally:
        gw.stop()


def test_an_unreadable_on_use_model_fails_its_target_only(tmp_path):
    gw = Gateway(tmp_path, res_target("gone", model=str(tmp_path / "missing.gguf")) +
                 res_target("story"), wait_ready=False)
    try:
        assert complete(gw, "story")[0] == 200
        st, _, b = complete(gw, "gone")
        assert st == 500 and error_of(b) == "execution", b
        assert any(l.get("msg") == "target failed to load" and l.get("target") == "gone"
                   for l in gw.logs())
    finally:
        gw.stop()
