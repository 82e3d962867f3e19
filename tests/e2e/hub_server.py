"""A Hugging Face-shaped model hub on loopback for the `sipp pull` tests. It serves the same URL
layout, headers and LFS metadata as the real hub:

  GET /api/models/OWNER/REPO/refs                        {"branches": [{"name", "targetCommit"}]}
  GET /api/models/OWNER/REPO/tree/REV?recursive=true     [{"type", "oid", "size", "path", "lfs"}]
                                                         (paged with a Link: rel="next" header)
  GET /OWNER/REPO/resolve/REV/PATH   302 to /cdn/SHA256?sig=... with ETag, X-Repo-Commit,
                                     X-Linked-Size and X-Linked-Etag, as the hub does for LFS
  GET /cdn/SHA256                    the bytes; Range: bytes=N- gives 206 + Content-Range

Knobs for faults a real hub cannot produce on demand: `throttle` (bytes per second on /cdn),
`corrupt` (sha256s served with one byte flipped), `page_size`, `redirect_to` (a Location for
resolve). Repos marked private answer 401 without the right bearer token, unknown ones 404.
Every request is logged with its headers in `log` (`target`: the request target as sent, an
absolute URL when it came through a proxy: the server answers those too, so it can stand in for
a forward proxy in front of another hub with the same repos). It listens on 127.0.0.1 unless
given another address (an IPv6 one too). Only for tests."""
import hashlib
import http.server
import json
import socket
import threading
import time
import urllib.parse


class Repo:
    def __init__(self, files, private=False, commit=None):
        self.files = dict(files)  # path -> bytes
        self.private = private
        self.commit = commit or hashlib.sha1(repr(sorted(self.files)).encode()).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", headers=(), ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status, message, code):
        self._send(status, {"error": message}, [("X-Error-Code", code)])

    def _repo(self, owner, name):
        hub = self.server.hub
        repo = hub.repos.get(f"{owner}/{name}")
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        if repo.private:
            auth = self.headers.get("Authorization", "")
            if not auth:
                self._error(401, "Invalid username or password.", "RepoNotFound")
                return None
            if auth != f"Bearer {hub.token}":
                self._error(401, "Invalid credentials in Authorization header", "RepoNotFound")
                return None
        return repo

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        hub = self.server.hub
        url = urllib.parse.urlsplit(self.path)
        hub.log.append({"method": self.command, "path": url.path, "query": url.query,
                        "target": self.path, "headers": dict(self.headers.items())})
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if parts[:2] == ["api", "models"] and len(parts) >= 5:
            repo = self._repo(parts[2], parts[3])
            if repo is None:
                return
            if parts[4] == "refs":
                self._send(200, {"branches": [{"name": "main", "ref": "refs/heads/main",
                                               "targetCommit": repo.commit}],
                                 "converts": [], "tags": []})
            elif parts[4] == "tree" and len(parts) >= 6:
                if parts[5] not in ("main", repo.commit):
                    return self._error(404, "Revision not found", "RevisionNotFound")
                self._tree(repo, parts, urllib.parse.parse_qs(url.query))
            else:
                self._error(404, "Not found", "EntryNotFound")
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo(parts[0], parts[1])
            if repo is None:
                return
            path = "/".join(parts[4:])
            data = repo.files.get(path)
            if data is None or parts[3] not in ("main", repo.commit):
                return self._error(404, "Entry not found", "EntryNotFound")
            sha = hashlib.sha256(data).hexdigest()
            location = hub.redirect_to or f"/cdn/{sha}?sig=signed-{len(data)}"
            hub.blobs[sha] = data
            self._send(302, f"Found. Redirecting to {location}".encode(),
                       [("Location", location), ("ETag", f'"{sha}"'),
                        ("X-Repo-Commit", repo.commit), ("X-Linked-Size", str(len(data))),
                        ("X-Linked-Etag", f'"{sha}"')], ctype="text/plain")
        elif len(parts) == 2 and parts[0] == "cdn":
            self._cdn(parts[1])
        else:
            self._error(404, "Not found", "EntryNotFound")

    def _tree(self, repo, parts, query):
        hub = self.server.hub
        prefix = "/".join(parts[6:])
        entries, dirs = [], set()
        for path in sorted(repo.files):
            if prefix and not path.startswith(prefix + "/"):
                continue
            d = path.rsplit("/", 1)[0] if "/" in path else ""
            if d and d not in dirs:
                dirs.add(d)
                entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(),
                                "size": 0, "path": d})
            data = repo.files[path]
            e = {"type": "file", "size": len(data), "path": path,
                 "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
            if path.endswith(".gguf"):  # the hub stores binaries in LFS
                e["oid"] = hashlib.sha1(path.encode()).hexdigest()  # the pointer's git oid
                e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "pointerSize": 134}
            entries.append(e)
        headers = []
        if hub.page_size:
            start = int(query.get("cursor", ["0"])[0])
            end = start + hub.page_size
            if end < len(entries):
                host = self.headers.get("Host")
                nxt = f"http://{host}/api/models/{parts[2]}/{parts[3]}/tree/{parts[5]}?recursive=true&cursor={end}"
                headers.append(("Link", f'<{nxt}>; rel="next"'))
            entries = entries[start:end]
        self._send(200, entries, headers)

    def _cdn(self, sha):
        hub = self.server.hub
        data = hub.blobs.get(sha)
        if data is None:
            return self._error(404, "Not found", "EntryNotFound")
        if sha in hub.corrupt:
            b = bytearray(data)
            b[len(b) // 2] ^= 0x01
            data = bytes(b)
        start, status, headers = 0, 200, [("Accept-Ranges", "bytes"), ("ETag", f'"{sha}"')]
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-") and not hub.ignore_range:
            start = int(rng[6:-1])
            if start >= len(data):
                return self._send(416, b"", [("Content-Range", f"bytes */{len(data)}")])
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"))
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            if not hub.throttle:
                self.wfile.write(body)
                return
            chunk = 16384
            for i in range(0, len(body), chunk):
                if not hub.throttle:
                    self.wfile.write(body[i:])
                    break
                self.wfile.write(body[i:i + chunk])
                self.wfile.flush()
                time.sleep(chunk / hub.throttle)
        except OSError:
            pass


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Hub:
    def __init__(self, host="127.0.0.1"):
        self.repos = {}
        self.blobs = {}
        self.log = []
        self.token = "hf_testtoken_0123456789abcdef"
        self.reset()
        v6 = ":" in host
        server = _Server6 if v6 else http.server.ThreadingHTTPServer
        self.server = server((host, 0), Handler)
        self.server.daemon_threads = True
        self.server.hub = self
        shown = f"[{host}]" if v6 else host
        self.url = f"http://{shown}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self):
        self.throttle = 0
        self.corrupt = set()
        self.page_size = 0
        self.redirect_to = None
        self.ignore_range = False
        self.log.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
