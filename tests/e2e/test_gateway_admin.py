"""The admin dashboard (/admin/ on the management listener) in headless Chromium driven by
playwright-core from npm (installed once into the git-ignored build/npm-playwright/ at the
version pinned in scripts/deps.env; the browser is Debian's /usr/bin/chromium): log in, see a
request just made, change the rate limit and see it take effect, CSRF-less mutation refused,
wrong password refused, a screenshot saved. Plus the API's rules over plain HTTP."""
import http.client
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from gateway_util import Gateway, story_target

ROOT = pathlib.Path(__file__).parents[2]
NPM_DIR = ROOT / "build" / "npm-playwright"
CHROMIUM = os.environ.get("SIPP_CHROMIUM", "/usr/bin/chromium")
PW = "admin-pass-0123456789"
SECRET = "sk-admin-test-caller-0123"
BODY = story_target() + """
[[tokens]]
env = "TOK"
caller = "carol"
requests_per_minute = 100
"""
TOP = 'admin_password_env = "ADMIN_PW"\n'
ENV = {"ADMIN_PW": PW, "TOK": SECRET}


def playwright_dir():
    version = re.search(r"^PLAYWRIGHT_CORE_VERSION=(\S+)", (ROOT / "scripts/deps.env").read_text(), re.M).group(1)
    pkg = NPM_DIR / "node_modules" / "playwright-core" / "package.json"
    if not pkg.exists() or json.loads(pkg.read_text())["version"] != version:
        if not shutil.which("npm"):
            pytest.fail("npm is needed for the dashboard test (scripts/setup installs it)")
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                            "--prefix", str(NPM_DIR), f"playwright-core@{version}"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    return NPM_DIR


class Admin:
    """Plain-HTTP client of the admin API with a cookie jar of one cookie."""

    def __init__(self, g):
        self.g, self.cookie, self.csrf = g, None, None

    def call(self, method, path, body=None, csrf=None):
        c = http.client.HTTPConnection("127.0.0.1", self.g.mport, timeout=10)
        h = {"content-type": "application/json"}
        if self.cookie:
            h["cookie"] = self.cookie
        if csrf:
            h["x-sipp-admin-csrf"] = csrf
        c.request(method, "/admin/" + path, body=json.dumps(body) if body is not None else None,
                  headers=h)
        r = c.getresponse()
        data = r.read()
        headers = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        if "set-cookie" in headers:
            self.cookie = headers["set-cookie"].split(";")[0]
        try:
            return r.status, headers, json.loads(data)
        except ValueError:
            return r.status, headers, data.decode()

    def login(self, pw=PW):
        st, h, b = self.call("POST", "api/login", {"password": pw}, csrf="login")
        if st == 200:
            self.csrf = b["csrf"]
        return st, h, b


def test_dashboard_in_chromium(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is needed (Debian package chromium, in scripts/deps.env)")
    d = playwright_dir()
    script = d / "gateway_admin.mjs"  # next to node_modules so the import resolves
    shutil.copy(pathlib.Path(__file__).with_name("gateway_admin.mjs"), script)
    g = Gateway(tmp_path, BODY, top=TOP, env=ENV)
    try:
        st, _, b = g.post("/v1/query", {"model": "story", "prompt": "Once", "max_tokens": 3},
                          token=SECRET, headers={"x-request-id": "seen-by-the-dashboard-42"})
        assert st == 200
        shot = tmp_path / "admin-dashboard.png"
        r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "ADMIN_URL": f"http://127.0.0.1:{g.mport}/admin/",
                                "PUBLIC_URL": f"http://127.0.0.1:{g.port}", "ADMIN_PW": PW,
                                "SEEN_ID": "seen-by-the-dashboard-42", "SHOT": str(shot),
                                "CHROMIUM": CHROMIUM})
        assert r.returncode == 0, r.stderr[-3000:]
        out = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"dashboard screenshot: {shot}")
        logs = g.log_path.read_text()
    finally:
        g.stop()
    assert out["wrong_password_error"] == "wrong password"
    assert out["dashboard_visible_after_wrong"] is False
    assert out["cookie"] == {"httpOnly": True, "sameSite": "Strict", "path": "/admin/"}
    assert out["saw_request"] and "carol" in out["callers_table"]
    assert out["csrf_less"]["status"] == 403 and out["csrf_less"]["body"]["error"]["code"] == "csrf"
    assert out["wrong_csrf"] == 403
    # the public listener without a per-IP limit, then with 2 a minute set from the dashboard
    # (/v1/models needs the bearer token: 401 while allowed, 429 once the per-IP limit bites)
    assert out["before"] == [401, 401, 401]
    assert out["after"] == [401, 401, 429]
    assert out["external_requests"] == [] and out["console_errors"] == []
    assert out["after_logout"] == 401
    assert shot.stat().st_size > 10000 and shot.read_bytes()[:4] == b"\x89PNG"
    # secrets are never rendered nor logged
    for secret in (PW, SECRET, "ADMIN_PW", "TOK"):
        assert secret not in out["page_text"]
    assert PW not in logs and SECRET not in logs
    assert "admin login failed" in logs


def test_admin_api_rules(tmp_path):
    g = Gateway(tmp_path, BODY + '[security]\nip_blocklist = ["198.51.100.0/24"]\n', top=TOP, env=ENV)
    try:
        a = Admin(g)
        # the page and assets: embedded, strict CSP, no caching
        st, h, page = a.call("GET", "")
        assert st == 200 and "app.js" in page and "script-src 'self'" in h["content-security-policy"]
        assert h["x-frame-options"] == "DENY" and h["cache-control"] == "no-store"
        assert a.call("GET", "app.js")[0] == 200 and a.call("GET", "app.css")[0] == 200
        assert a.call("GET", "nope")[0] == 404
        # /admin redirects to /admin/
        c = http.client.HTTPConnection("127.0.0.1", g.mport, timeout=5)
        c.request("GET", "/admin")
        r = c.getresponse()
        assert r.status == 308 and r.getheader("location") == "/admin/"
        c.close()
        # no session: 401; login without the CSRF header: 403; wrong password: 401
        assert a.call("GET", "api/state")[0] == 401
        assert a.call("POST", "api/login", {"password": PW})[0] == 403
        st, _, b = a.login("wrong")
        assert st == 401 and b["error"]["code"] == "authentication"
        assert a.call("POST", "api/login", {"pw": PW}, csrf="x")[0] == 400
        st, h, b = a.login()
        assert st == 200 and len(b["csrf"]) == 64
        assert "HttpOnly" in h["set-cookie"] and "SameSite=Strict" in h["set-cookie"]
        st, _, s = a.call("GET", "api/state")
        assert st == 200 and s["settings"]["ip_blocklist"] == ["198.51.100.0/24"]
        assert s["settings"]["callers"][0] == {"caller": "carol", "requests_per_minute": 100,
                                               "tokens_per_minute": 0, "max_concurrent": 0}
        # mutations: bad bodies refused whole, nothing applied
        for bad in ({"ip_blocklist": ["banana"]}, {"callers": {"mallory": {}}},
                    {"max_concurrent_requests": -1}, {"rate_limit": {"enabled": True}},
                    {"surprise": 1}, [1]):
            st, _, b = a.call("POST", "api/settings", bad, csrf=a.csrf)
            assert st == 400 and b["error"]["code"] == "invalid_json", (bad, b)
        assert a.call("GET", "api/state")[2]["settings"]["ip_blocklist"] == ["198.51.100.0/24"]
        # blocklist edit takes effect at once (the test client is 127.0.0.1)
        st, _, b = a.call("POST", "api/settings", {"ip_blocklist": ["127.0.0.0/8"]}, csrf=a.csrf)
        assert st == 200 and b["ip_blocklist"] == ["127.0.0.0/8"]
        st, _, b = g.post("/v1/query", {"model": "story", "prompt": "x"}, token=SECRET)
        assert st == 403 and b["error"]["code"] == "blocked"
        a.call("POST", "api/settings", {"ip_blocklist": []}, csrf=a.csrf)
        # the concurrency limit and a caller's limit
        st, _, b = a.call("POST", "api/settings", {"max_concurrent_requests": 3,
                                                   "callers": {"carol": {"requests_per_minute": 1}}},
                          csrf=a.csrf)
        assert st == 200 and b["max_concurrent_requests"] == 3
        assert b["callers"][0]["requests_per_minute"] == 1
        q = {"model": "story", "prompt": "Once", "max_tokens": 2}
        codes = [g.post("/v1/query", q, token=SECRET)[0] for _ in range(3)]
        assert codes.count(429) >= 1, codes
        # logout ends the session
        old = a.cookie
        assert a.call("POST", "api/logout", {}, csrf=a.csrf)[0] == 200
        a.cookie = old  # the old session cookie no longer works
        assert a.call("GET", "api/state")[0] == 401
    finally:
        g.stop()


def test_admin_off_without_password(tmp_path):
    g = Gateway(tmp_path, story_target(), top=TOP, env={})
    try:
        st, _, body = g.mgmt("GET", "/admin/")
        assert st == 404 and "admin_password_env" in body
    finally:
        g.stop()
