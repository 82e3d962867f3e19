"""A scripted server on loopback for what a real peer cannot produce on demand, in three
dialects chosen by the route: OpenAI-shaped (/v1/completions, /v1/chat/completions,
/v1/embeddings), Anthropic-shaped (/v1/messages: there is no Anthropic peer to run here) and
the Sipp gateway protocol (/v1/query, /v1/chat, /v1/embed: for faults our real gateway never
produces). The scenario is the first path segment: http://127.0.0.1:PORT/<scenario>/v1/...
Every request's headers and JSON body are recorded in `seen`.
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

    def _events(self, events):
        """Writes named SSE events [(name, obj)] after a 200 stream header."""
        self._stream_start()
        for name, obj in events:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode())
            self.wfile.flush()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.server.seen_auth.append(self.headers.get("Authorization", ""))
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.server.echo_seen:  # __main__: each request's path and body, a line each
            print(json.dumps({"path": self.path, "body": body}), flush=True)
        scenario = self.path.strip("/").split("/")[0]
        if self.path.endswith("/v1/messages"):
            return self._anthropic(scenario)
        if self.path.split("/")[-2:-1] == ["v1"] and self.path.split("/")[-1] in ("query", "chat", "embed"):
            return self._gateway(scenario, self.path.split("/")[-1])
        err = {"error": {"message": "scripted failure", "type": "test", "code": None}}
        if scenario == "ok" and self.path.endswith("/v1/embeddings"):
            return self._json(200, {"object": "list", "model": "m", "data": [
                {"object": "embedding", "index": 0, "embedding": [3.0, 4.0]}],
                "usage": {"prompt_tokens": 2, "total_tokens": 2}})
        if scenario == "unauthorized":
            self._json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
        elif scenario == "echo_key":  # a careless peer that quotes the credential back
            auth = self.headers.get("Authorization", "")
            self._json(401, {"error": {"message": f"Incorrect API key provided: {auth} (header {auth.split(' ')[-1]})",
                                       "type": "invalid_request_error", "code": "invalid_api_key"}})
        elif scenario == "forbidden":  # a key without access to the model or route
            self._json(403, {"error": {"message": "You are not allowed to use this model", "type": "invalid_request_error", "code": "model_not_allowed"}})
        elif scenario == "bad_request":
            self._json(400, {"error": {"message": "Unrecognized request argument supplied: foo", "type": "invalid_request_error", "code": None}})
        elif scenario == "redirect":  # to a scenario that would succeed: must not be followed
            self.send_response(307)
            self.send_header("Location", self.path.replace("/redirect/", "/ok/", 1))
            self.send_header("Content-Length", "0")
            self.end_headers()
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
        elif scenario == "silent_start":  # headers, then nothing for a long prefill
            self._stream_start()
            self.wfile.flush()
            time.sleep(30)
        elif scenario == "stalls":
            self._stream_start()
            self.wfile.write(CHUNK.encode())
            self.wfile.flush()
            time.sleep(30)
        elif scenario == "ok":
            self._stream_start()
            self.wfile.write((CHUNK + 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\ndata: [DONE]\n\n').encode())
        elif scenario.startswith("tools"):
            self._openai_tools(scenario)
        else:
            self._json(404, {"error": {"message": "no such scenario"}})


    # ---- tool calls and reasoning, OpenAI-shaped (issue 18) -----------------------------------
    # Reasoning, text, then two calls: id and name first, the arguments in pieces (as
    # llama-server and vLLM stream them); "tools_whole" is the same answer not streamed,
    # "tools_bad_args" a call whose arguments are not JSON.
    TOOL_PIECES = [
        {"role": "assistant", "content": None, "reasoning_content": "Let me think"},
        {"content": "Checking."},
        {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"unit": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"celsius"}'}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                         "function": {"name": "get_time", "arguments": '{"zone": "utc"}'}}]},
    ]

    def _openai_tools(self, scenario):
        if scenario == "tools_whole":
            return self._json(200, {"id": "c1", "object": "chat.completion", "choices": [{
                "index": 0, "finish_reason": "tool_calls", "message": {
                    "role": "assistant", "content": "Checking.", "reasoning_content": "Let me think",
                    "tool_calls": [
                        {"id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"unit": "celsius"}'}},
                        {"id": "call_b", "type": "function",
                         "function": {"name": "get_time", "arguments": '{"zone": "utc"}'}}]}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}})
        msgs = (self.server.seen[-1]["body"] or {}).get("messages") or [{}]
        if scenario == "tools_answer" or msgs[-1].get("role") == "tool":
            # after the results came back (an agent loop's second turn): the final text
            pieces = [{"role": "assistant", "content": "It is 21 C."}]
            finish = "stop"
        elif scenario == "tools_bad_args":
            pieces = [{"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                       "function": {"name": "get_weather", "arguments": "{unit: celsius"}}]}]
            finish = "tool_calls"
        else:
            pieces = self.TOOL_PIECES
            finish = "tool_calls"
        self._stream_start()
        for d in pieces:
            chunk = {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': finish}]})}\n\n".encode())
        self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': {'prompt_tokens': 20, 'completion_tokens': 9, 'total_tokens': 29}})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    # ---- Anthropic messages API --------------------------------------------------------------
    def _anthropic(self, scenario):
        def error(status, etype, msg, headers=()):
            self._json(status, {"type": "error", "error": {"type": etype, "message": msg}},
                       [("request-id", "req_ant_1")] + list(headers))
        start = ("message_start", {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "content": [],
            "usage": {"input_tokens": 12, "output_tokens": 1}}})
        block = ("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})

        def delta(text):
            return ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": text}})
        if scenario == "ok":
            self._events([start, block, ("ping", {"type": "ping"}), delta("Hel"), delta("lo"),
                          ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                          ("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                                             "usage": {"output_tokens": 2}}),
                          ("message_stop", {"type": "message_stop"})])
        elif scenario == "schema_tool":  # structured output: the forced tool's input, streamed
            def part(js):
                return ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "input_json_delta", "partial_json": js}})
            self._events([start, ("content_block_start", {"type": "content_block_start", "index": 0,
                                  "content_block": {"type": "tool_use", "id": "toolu_1",
                                                    "name": "json_output", "input": {}}}),
                          part(""), part('{"mood": "ha'), part('ppy", "n'), part('": 3}'),
                          ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                          ("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                             "usage": {"output_tokens": 9}}),
                          ("message_stop", {"type": "message_stop"})])
        elif scenario == "tools_whole":  # issue 18: thinking, text and a call, not streamed
            self._json(200, {"id": "msg_1", "type": "message", "role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me think", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"unit": "celsius"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {"zone": "utc"}}],
                "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 9}})
        elif scenario in ("tools", "tools_bad_args"):  # issue 18: the same answer, streamed
            def blk(i, b):
                return ("content_block_start", {"type": "content_block_start", "index": i, "content_block": b})

            def dl(i, d):
                return ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d})

            def stop(i):
                return ("content_block_stop", {"type": "content_block_stop", "index": i})
            if scenario == "tools":
                calls = [blk(2, {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}),
                         dl(2, {"type": "input_json_delta", "partial_json": ""}),
                         dl(2, {"type": "input_json_delta", "partial_json": '{"unit": '}),
                         dl(2, {"type": "input_json_delta", "partial_json": '"celsius"}'}), stop(2),
                         # a proxy's shape: the whole input in the block's start, no pieces
                         blk(3, {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {"zone": "utc"}}),
                         stop(3)]
            else:
                calls = [blk(2, {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}),
                         dl(2, {"type": "input_json_delta", "partial_json": '{"unit": '}), stop(2)]
            self._events([start, blk(0, {"type": "thinking", "thinking": ""}),
                          dl(0, {"type": "thinking_delta", "thinking": "Let me "}),
                          dl(0, {"type": "thinking_delta", "thinking": "think"}),
                          dl(0, {"type": "signature_delta", "signature": "sig"}), stop(0),
                          blk(1, {"type": "text", "text": ""}),
                          dl(1, {"type": "text_delta", "text": "Checking."}), stop(1), *calls,
                          ("message_delta", {"type": "message_delta",
                                             "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                             "usage": {"output_tokens": 9}}),
                          ("message_stop", {"type": "message_stop"})])
        elif scenario == "unauthorized":
            error(401, "authentication_error", "invalid x-api-key")
        elif scenario == "forbidden":
            error(403, "permission_error", "Your API key does not have permission to use the specified resource")
        elif scenario == "bad_request":
            error(400, "invalid_request_error", "messages: at least one message is required")
        elif scenario == "rate_limited":
            error(429, "rate_limit_error", "Number of requests has exceeded your rate limit",
                  [("retry-after", "9")])
        elif scenario == "overloaded":
            error(529, "overloaded_error", "Overloaded")
        elif scenario == "billing":
            error(400, "billing_error", "Your credit balance is too low")
        elif scenario == "midstream_error":
            self._events([start, block, delta("Hel"),
                          ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})])
        elif scenario == "no_done":
            self._events([start, block, delta("Hel")])
        else:
            error(404, "not_found_error", "no such scenario")

    # ---- Sipp gateway protocol ----------------------------------------------------------------
    CODES = {"blocked": 403, "rate_limited": 429, "authentication": 401, "invalid_json": 400,
             "authorization": 403, "resolution": 404, "admission": 429, "invalidrequest": 400,
             "execution": 500, "cancelled": 408, "payload_too_large": 413,
             "method_not_allowed": 405, "not_found": 404}

    def _gateway(self, scenario, op):
        rid = self.headers.get("x-request-id") or "gw-req-1"
        if scenario.startswith("code_"):
            code = scenario[5:]
            headers = [("x-request-id", rid)] + ([("retry-after", "3")] if self.CODES[code] == 429 else [])
            return self._json(self.CODES[code], {"error": {"code": code, "message": f"scripted {code}"}}, headers)
        if op == "embed":
            if scenario == "ok":
                return self._json(200, {"id": rid, "model": "t", "embedding": [3.0, 4.0],
                                        "usage": {"input_tokens": 2, "output_tokens": 0, "total_tokens": 2}},
                                  [("x-request-id", rid)])
            return self._json(200, {"id": rid, "model": "t", "embedding": ["x"]})
        tok = lambda t, i: ("token", {"text": t, "sequence": i})
        if scenario == "ok":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("x-request-id", rid)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b": ping\n\n")
            for name, obj in [tok("Hel", 0), tok("lo", 1),
                              ("usage", {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}),
                              ("done", {"finish_reason": "length"})]:
                self.wfile.write(f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode())
        elif scenario in ("tools", "tools_answer", "tools_bad_args"):
            # issue 18, the Sipp profile's events: reasoning, text, then two calls (id and name
            # first, the arguments in pieces); after tool results, the final text
            msgs = (self.server.seen[-1]["body"] or {}).get("messages") or [{}]
            if scenario == "tools_answer" or msgs[-1].get("role") == "tool":
                evs, finish = [tok("It is 21 C.", 0)], "stop"
            elif scenario == "tools_bad_args":
                evs = [("tool_call", {"index": 0, "id": "call_a", "name": "get_weather",
                                      "arguments": "{unit: celsius"})]
                finish = "tool_calls"
            else:
                evs = [("reasoning", {"text": "Let me think", "sequence": 0}), tok("Checking.", 1),
                       ("tool_call", {"index": 0, "id": "call_a", "name": "get_weather", "arguments": ""}),
                       ("tool_call", {"index": 0, "arguments": '{"unit": '}),
                       ("tool_call", {"index": 0, "arguments": '"celsius"}'}),
                       ("tool_call", {"index": 1, "id": "call_b", "name": "get_time",
                                      "arguments": '{"zone": "utc"}'})]
                finish = "tool_calls"
            self._events(evs + [("usage", {"input_tokens": 20, "output_tokens": 9, "total_tokens": 29}),
                                ("done", {"finish_reason": finish})])
        elif scenario == "midstream_error":
            self._events([tok("Hel", 0), ("error", {"error": {"code": "execution", "message": "engine failed"}})])
        elif scenario == "no_done":
            self._events([tok("Hel", 0)])
        elif scenario == "huge_event":
            self._stream_start()
            self.wfile.write(b"event: token\ndata: " + b"y" * (2 << 20) + b"\n\n")
        elif scenario == "huge_error":
            data = b'{"error": {"code": "execution", "message": "' + b"x" * (5 << 20) + b'"}}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._json(404, {"error": {"code": "not_found", "message": "no such scenario"}})


class FaultServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen_auth = []
        self.seen = []
        self.echo_seen = False
        self.stopping = False
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scenario):
        return f"http://127.0.0.1:{self.server_address[1]}/{scenario}/v1"

    def root(self, scenario):
        """A gateway base URL (the client appends /v1/...)."""
        return f"http://127.0.0.1:{self.server_address[1]}/{scenario}"

    def close(self):
        self.stopping = True
        self.shutdown()
        self.server_close()


if __name__ == "__main__":  # for tests in other processes (tests/api): the port, then each
    import sys                # request seen, a JSON line each, until stdin closes
    srv = FaultServer()
    srv.echo_seen = True
    print(srv.server_address[1], flush=True)
    sys.stdin.read()  # until the test closes our stdin
    srv.close()
