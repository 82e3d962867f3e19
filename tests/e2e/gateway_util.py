"""Helpers of the gateway end-to-end tests: start the real `sipp-gateway` on loopback ports,
talk to it over real sockets, read its SSE streams and its Prometheus metrics."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

from conftest import BIN_DIR, CHAT_MODEL, STORY_MODEL

GATEWAY = BIN_DIR / "sipp-gateway"
# The test build of the gateway (tests/CMakeLists.txt): the same program, plus the library's test
# hooks switched from the environment (tests/e2e/gateway_hooks.c).
HOOKS_GATEWAY = BIN_DIR.parent / "tests" / "sipp-gateway-hooks"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_target(name="local", model=CHAT_MODEL, **runtime):
    rt = {"n_ctx": 256, "n_parallel": 2, "n_threads": 1, "context_shift": True}
    rt.update(runtime)
    lines = [f'[[targets]]\nname = "{name}"\ntype = "local"\nmodel = "{model}"\nbackend = "cpu"',
             "[targets.runtime]"]
    for k, v in rt.items():
        lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


def story_target(name="story"):
    return local_target(name, STORY_MODEL)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


class Gateway:
    """A running sipp-gateway. `top` holds top-level TOML lines, `body` the tables."""

    def __init__(self, tmp_path, body, top="", env=None, wait_ready=True, ports=None,
                 bind="127.0.0.1", binary=GATEWAY):
        self.port, self.mport = ports or (free_port(), free_port())
        self.config = tmp_path / f"gw-{self.port}.toml"
        self.config.write_text(
            f'public_bind = "{bind}:{self.port}"\nmanagement_bind = "{bind}:{self.mport}"\n'
            + top + "\n" + body)
        self.log_path = tmp_path / f"gw-{self.port}.log"
        e = {k: v for k, v in os.environ.items() if not k.startswith("SIPP_")}
        e.update(env or {})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(binary), "serve", "--config", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=e)
        deadline = time.time() + 30
        path = "/readyz" if wait_ready else "/healthz"
        while True:
            try:
                st, _, _ = self.mgmt("GET", path)
                if st == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("gateway did not start:\n" + self.log_path.read_text())
            time.sleep(0.05)

    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, token=None, timeout=30):
        h = {"content-type": "application/json"}
        if token:
            h["authorization"] = "Bearer " + token
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def post(self, path, body, token=None, headers=None):
        st, h, data = self.request("POST", path, body, headers, token)
        try:
            return st, h, json.loads(data)
        except ValueError:
            return st, h, data

    def mgmt(self, method, path):
        c = http.client.HTTPConnection("127.0.0.1", self.mport, timeout=10)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
        finally:
            c.close()

    def metrics(self):
        st, _, text = self.mgmt("GET", "/metrics")
        assert st == 200
        return text

    def metric(self, name, **labels):
        """The value of one series (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in self.metrics().splitlines():
            if line.startswith(name + "{" + want + "}") or (not labels and line.startswith(name + " ")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_metric(self, name, pred, timeout=5, **labels):
        deadline = time.time() + timeout
        while True:
            v = self.metric(name, **labels)
            if pred(v) or time.time() > deadline:
                return v
            time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def logs(self):
        return [json.loads(l) for l in self.log_path.read_text().splitlines() if l.startswith("{")]


class Stream:
    """A streaming request over a raw http.client connection, read event by event."""

    def __init__(self, gw, path, body, token=None, headers=None):
        self.c = gw.conn()
        h = {"content-type": "application/json"}
        if token:
            h["authorization"] = "Bearer " + token
        h.update(headers or {})
        self.c.request("POST", path, body=json.dumps(body), headers=h)
        self.r = self.c.getresponse()
        self.status = self.r.status
        self.headers = {k.lower(): v for k, v in self.r.getheaders()}

    def frames(self):
        """Yields (event, data, comment) per frame; comment frames yield (None, None, text)."""
        event, data = None, []
        while True:
            line = self.r.readline()
            if not line:
                return
            line = line.decode().rstrip("\r\n")
            if line == "":
                if data or event:
                    yield event, "\n".join(data), None
                event, data = None, []
            elif line.startswith(":"):
                yield None, None, line
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])

    def close(self):
        """Hangs up the way a client that goes away does."""
        try:
            self.c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.c.close()


def error_of(body):
    assert isinstance(body, dict) and "error" in body, body
    return body["error"]["code"]


def prom_ok(text):
    """Every non-comment line is `name{labels} value` and every name has HELP and TYPE."""
    helped = set(re.findall(r"^# HELP (\S+)", text, re.M))
    typed = dict(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+]+|\+Inf|NaN)$', line)
        assert m, line
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1)) if typed.get(
            re.sub(r"_(bucket|sum|count)$", "", m.group(1))) == "histogram" else m.group(1)
        assert base in helped and base in typed, line
    return typed
