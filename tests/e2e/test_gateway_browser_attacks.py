"""A web page the user visits must not be able to use a gateway on the user's loopback (issue 19,
findings 3 and 9): the real sipp-gateway, requests shaped the way a browser sends them.

- DNS rebinding: the attacker's name resolves to 127.0.0.1, so the browser sends
  `Host: attacker.example:PORT`; a loopback listener refuses every Host but its own names
  (403 `host_not_allowed`), on the public routes, /metrics and the admin API alike.
- Cross-site requests carry an Origin: one not in allowed_origins (and not the listener's own)
  is refused with 403 `origin_not_allowed` on every route.
- "Simple" cross-site POSTs (text/plain, forms, no Content-Type) need no CORS preflight: bodies
  must be `application/json` (415 `unsupported_media_type`).
- The admin login throttle is per client address: failures from 127.0.0.2 do not lock out
  127.0.0.1 (Linux routes all of 127/8 to lo, so the test picks its source address).
- With `[cache] scope_header`, the KV prefix of one end user behind a shared token is never
  reused for another (no cross-user prefix timing); without it they share, as documented."""
import http.client
import json

import pytest

from gateway_util import Gateway, error_of, local_target, story_target

PW = "admin-pass-0123456789"
TOP = 'allowed_origins = ["https://app.example"]\nadmin_password_env = "ADMIN_PW"\n'
ENV = {"ADMIN_PW": PW}


def call(port, method, path, body=None, headers=None, source=None):
    """One request; `headers` may set Host (http.client then sends no Host of its own)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                   source_address=(source, 0) if source else None)
    try:
        c.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body,
                  headers=headers or {})
        r = c.getresponse()
        data = r.read()
        h = {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()
    try:
        return r.status, h, json.loads(data)
    except ValueError:
        return r.status, h, data.decode(errors="replace")


JSON = {"content-type": "application/json"}
CHAT = {"model": "local", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
LOGIN = {**JSON, "x-sipp-admin-csrf": "login"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("gwb"), local_target(), top=TOP, env=ENV)
    yield g
    assert g.stop() == 0


def test_dns_rebinding_host_is_refused_on_every_route(gw):
    evil = {"host": f"attacker.example:{gw.port}"}
    st, h, b = call(gw.port, "POST", "/v1/chat/completions", CHAT, {**JSON, **evil})
    assert (st, error_of(b)) == (403, "host_not_allowed"), b
    assert b["error"]["type"] == "permission_error" and "allowed_hosts" in b["error"]["message"]
    st, _, b = call(gw.port, "GET", "/v1/models", None, evil)
    assert (st, error_of(b)) == (403, "host_not_allowed")
    st, _, b = call(gw.port, "POST", "/v1/query", {"model": "local", "prompt": "a"},
                    {**JSON, **evil})
    assert (st, error_of(b)) == (403, "host_not_allowed")
    mevil = {"host": f"attacker.example:{gw.mport}"}
    for path in ("/metrics", "/healthz", "/admin/", "/admin/api/state"):
        st, _, b = call(gw.mport, "GET", path, None, mevil)
        assert (st, error_of(b)) == (403, "host_not_allowed"), path
    st, h, b = call(gw.mport, "POST", "/admin/api/login", {"password": PW}, {**LOGIN, **mevil})
    assert (st, error_of(b)) == (403, "host_not_allowed") and "set-cookie" not in h
    # a name that only looks local, and malformed Hosts
    for host in ("localhost.attacker.example", "127.0.0.1.nip.io", "attacker.example",
                 f"127.0.0.1:{gw.port}:1", "[::1", "a b", f"evil:{10**6}", "", "a/.localhost",
                 "x.localhost@attacker.example", "[::1]x"):
        st, _, b = call(gw.port, "GET", "/v1/models", None, {"host": host})
        assert (st, error_of(b)) == (403, "host_not_allowed"), host
    # the refusal is logged like any other request
    assert any(l.get("code") == "host_not_allowed" for l in gw.logs())


def test_own_names_are_accepted_whatever_the_port(gw):
    for host in (f"127.0.0.1:{gw.port}", "127.0.0.1", f"localhost:{gw.port}", "LOCALHOST",
                 "app.localhost:1234", "127.0.0.2:8", "[::1]:9999", "[::1]"):
        st, _, b = call(gw.port, "GET", "/v1/models", None, {"host": host})
        assert st == 200, (host, b)
    st, _, _ = call(gw.mport, "GET", "/metrics", None, {"host": f"localhost:{gw.mport}"})
    assert st == 200


def test_allowed_hosts_lists_more_names(tmp_path):
    g = Gateway(tmp_path, story_target(), top='allowed_hosts = ["gw.example", "10.1.2.3"]\n')
    try:
        for host in ("gw.example", f"GW.Example:{g.port}", "10.1.2.3:80", "localhost"):
            assert call(g.port, "GET", "/v1/models", None, {"host": host})[0] == 200, host
        st, _, b = call(g.port, "GET", "/v1/models", None, {"host": "other.example"})
        assert (st, error_of(b)) == (403, "host_not_allowed")
    finally:
        g.stop()
    g = Gateway(tmp_path, story_target(), top='allowed_hosts = ["*"]\n')
    try:
        assert call(g.port, "GET", "/v1/models", None, {"host": "anything.example"})[0] == 200
    finally:
        g.stop()


def test_a_wildcard_bind_checks_no_host_unless_configured(tmp_path):
    """0.0.0.0 is not a loopback bind: serving any name is the operator's choice there
    (documented); allowed_hosts turns the check on."""
    g = Gateway(tmp_path, story_target(), bind="0.0.0.0")
    try:
        assert call(g.port, "GET", "/v1/models", None, {"host": "gw.lan.example"})[0] == 200
    finally:
        g.stop()
    g = Gateway(tmp_path, story_target(), bind="0.0.0.0", top='allowed_hosts = ["gw.example"]\n')
    try:
        assert call(g.port, "GET", "/v1/models", None, {"host": "gw.example"})[0] == 200
        st, _, b = call(g.port, "GET", "/v1/models", None, {"host": "gw.lan.example"})
        assert (st, error_of(b)) == (403, "host_not_allowed")
    finally:
        g.stop()


def test_an_unlisted_origin_is_refused_on_every_route(gw):
    for origin in ("https://evil.example", "null", "https://app.example.evil",
                   f"http://localhost:{gw.port}"):  # another origin than the Host's
        o = {"origin": origin}
        st, h, b = call(gw.port, "POST", "/v1/chat/completions", CHAT, {**JSON, **o})
        assert (st, error_of(b)) == (403, "origin_not_allowed"), origin
        assert "access-control-allow-origin" not in h
        st, _, b = call(gw.port, "GET", "/v1/models", None, o)
        assert (st, error_of(b)) == (403, "origin_not_allowed"), origin
        for path in ("/metrics", "/readyz", "/admin/api/state"):
            st, _, b = call(gw.mport, "GET", path, None, o)
            assert (st, error_of(b)) == (403, "origin_not_allowed"), (origin, path)
        st, h, b = call(gw.mport, "POST", "/admin/api/login", {"password": PW}, {**LOGIN, **o})
        assert (st, error_of(b)) == (403, "origin_not_allowed") and "set-cookie" not in h
    # the listed origin gets CORS; no Origin (curl, SDKs) is fine
    st, h, b = call(gw.port, "POST", "/v1/chat/completions", CHAT,
                    {**JSON, "origin": "https://app.example"})
    assert st == 200 and h["access-control-allow-origin"] == "https://app.example", b
    assert call(gw.port, "POST", "/v1/chat/completions", CHAT, JSON)[0] == 200


def test_the_listeners_own_origin_is_same_origin(gw):
    """The dashboard page posts to its own API: Chromium sends Origin on same-origin POSTs."""
    own = {"origin": f"http://127.0.0.1:{gw.mport}"}
    st, h, b = call(gw.mport, "POST", "/admin/api/login", {"password": PW}, {**LOGIN, **own})
    assert st == 200 and "set-cookie" in h, b
    st, _, _ = call(gw.mport, "GET", "/metrics", None, {**own, "host": f"127.0.0.1:{gw.mport}"})
    assert st == 200


@pytest.mark.parametrize("ctype", ["text/plain", "text/plain;charset=UTF-8",
                                   "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/jsonx", None])
def test_a_simple_cross_site_post_is_refused(gw, ctype):
    h = {"content-type": ctype} if ctype else {}
    for path in ("/v1/chat/completions", "/v1/chat"):
        st, _, b = call(gw.port, "POST", path, json.dumps(CHAT), h)
        assert (st, error_of(b)) == (415, "unsupported_media_type"), (path, b)
    st, h2, b = call(gw.mport, "POST", "/admin/api/login", json.dumps({"password": PW}),
                     {**h, "x-sipp-admin-csrf": "login"})
    assert (st, error_of(b)) == (415, "unsupported_media_type") and "set-cookie" not in h2


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "Application/JSON",
                                   " application/json ;charset=utf-8"])
def test_json_with_parameters_is_fine(gw, ctype):
    st, _, b = call(gw.port, "POST", "/v1/chat/completions", CHAT, {"content-type": ctype})
    assert st == 200, b


def test_login_throttle_is_per_client_address(tmp_path):
    g = Gateway(tmp_path, story_target(), top=TOP, env=ENV)
    try:
        got = [call(g.mport, "POST", "/admin/api/login", {"password": "wrong"}, LOGIN,
                    source="127.0.0.2")[0] for _ in range(25)]
        assert got[0] == 401 and got[-1] == 429 and set(got) == {401, 429}, got
        # the attacker's address stays throttled, even with the right password ...
        assert call(g.mport, "POST", "/admin/api/login", {"password": PW}, LOGIN,
                    source="127.0.0.2")[0] == 429
        # ... while the admin's own address logs in
        st, h, b = call(g.mport, "POST", "/admin/api/login", {"password": PW}, LOGIN,
                        source="127.0.0.1")
        assert st == 200 and len(b["csrf"]) == 64 and "set-cookie" in h
        failed = [l for l in g.logs() if l.get("msg") == "admin login failed"]
        assert failed and all(l["client_ip"] == "127.0.0.2" for l in failed)
    finally:
        g.stop()


# ---- per-user cache scope (finding 9) -----------------------------------------------------

SCOPED = local_target() + '[[tokens]]\nenv = "TOK"\ncaller = "web"\n'
TOKEN = "sk-web-front-0123456789"
PROMPT = "User: the same long prompt about a cat, a dog and a bird in the garden\nBot:"


def cache_counts(g):
    return (g.metric("sipp_engine_cache_hits_total", target="local"),
            g.metric("sipp_engine_cache_misses_total", target="local"))


def ask(g, user=None):
    h = {**JSON, "authorization": "Bearer " + TOKEN}
    if user is not None:
        h["x-sipp-user"] = user
    st, _, b = call(g.port, "POST", "/v1/query",
                    {"model": "local", "prompt": PROMPT, "max_tokens": 2, "temperature": 0}, h)
    assert st == 200, b
    return b["text"]


def test_scope_header_separates_users_behind_one_token(tmp_path):
    g = Gateway(tmp_path, SCOPED + '[cache]\nscope_header = "x-sipp-user"\n',
                env={"TOK": TOKEN})
    try:
        first = ask(g, "alice")
        h0, m0 = cache_counts(g)
        assert ask(g, "alice") == first
        h1, m1 = cache_counts(g)
        assert (h1, m1) == (h0 + 1, m0)  # alice reuses her own prefix
        assert ask(g, "bob") == first
        h2, m2 = cache_counts(g)
        assert (h2, m2) == (h1, m1 + 1)  # bob's identical prompt computes everything
        # no header: no key at all, so nothing reused and nothing left for others
        assert ask(g) == first
        assert cache_counts(g) == (h2, m2)
        assert ask(g, "") == first
        assert cache_counts(g) == (h2, m2)
    finally:
        g.stop()


def test_without_scope_header_users_behind_one_token_share(tmp_path):
    """The documented default: one token is one scope, so users behind it share prefix
    timing (docs/gateway.md, "Browsers and shared scopes")."""
    g = Gateway(tmp_path, SCOPED, env={"TOK": TOKEN})
    try:
        ask(g, "alice")
        h0, m0 = cache_counts(g)
        ask(g, "bob")
        assert cache_counts(g) == (h0 + 1, m0)
    finally:
        g.stop()
