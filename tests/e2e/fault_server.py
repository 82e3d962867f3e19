"""A scripted OpenAI-shaped server on loopback for the faults a real peer cannot produce on
demand. The scenario is the first path segment: http://127.0.0.1:PORT/<scenario>/v1/...
Only for tests: it answers from a fixed script and never reads beyond the request body."""
import http.server
import json
import threading
import time

CHUNK = 'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _stream_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        self.server.seen_auth.append(self.headers.get("Authorization", ""))
        scenario = self.path.strip("/").split("/")[0]
        err = {"error": {"message": "scripted failure", "type": "test", "code": None}}
        if scenario == "unauthorized":
            self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
        elif scenario == "rate_limited":
            self._json(429, err, [("Retry-After", "7"), ("x-request-id", "req-fault-429")])
        elif scenario == "quota":
            self._json(429, {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}})
        elif scenario == "server_error":
            self._json(500, err)
        elif scenario == "overloaded":
            self._json(503, err)
        elif scenario == "huge_error":
            data = b'{"error": {"message": "' + b"x" * (5 << 20) + b'"}}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif scenario == "malformed_sse":
            self._stream_start()
            self.wfile.write(b"data: {this is not json\n\n")
        elif scenario == "no_done":
            self._stream_start()
            self.wfile.write(CHUNK.encode())
        elif scenario == "huge_event":
            self._stream_start()
            self.wfile.write(b"data: " + b"y" * (2 << 20) + b"\n\n")
        elif scenario == "never_ends":
            self._stream_start()
            try:
                while not self.server.stopping:
                    self.wfile.write(b": ping\n\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
        elif scenario == "stalls":
            self._stream_start()
            self.wfile.write(CHUNK.encode())
            self.wfile.flush()
            time.sleep(30)
        elif scenario == "ok":
            self._stream_start()
            self.wfile.write((CHUNK + 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\ndata: [DONE]\n\n').encode())
        else:
            self._json(404, {"error": {"message": "no such scenario"}})


class FaultServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen_auth = []
        self.stopping = False
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scenario):
        return f"http://127.0.0.1:{self.server_address[1]}/{scenario}/v1"

    def close(self):
        self.stopping = True
        self.shutdown()
        self.server_close()
