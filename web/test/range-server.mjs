// Scripted model downloads for the resumable-download tests, served under /dl/NAME by the test's
// static server (same origin as the page). Each name is set up by the test with `set(name,
// {file, etag, ignoreRange, plan})`: `file` and `etag` (null: no ETag) are what is served now; `plan` lists what
// the next requests do, one entry each, in order (after it runs out, requests are answered
// normally): `{drop: N}` sends the headers and N bytes of the body, then closes the
// connection; `{stall: N}` sends N bytes and then nothing more, holding the connection open;
// `then: {file, etag}` on an entry replaces the file served from the following request on.
// Range requests get 206 with Content-Range, unless `ignoreRange` (always 200 with the whole
// file) or an If-Range that is not the current ETag (200, as RFC 9110 says). Every request is
// recorded in `seen` with its Range and If-Range headers.
import { readFileSync } from 'node:fs';

export function createRangeFiles() {
  const files = new Map();
  const seen = [];
  const open = new Set();

  function handle(req, res, url) {
    const name = decodeURIComponent(url.pathname.slice('/dl/'.length));
    const f = files.get(name);
    const range = req.headers.range ?? null;
    const ifRange = req.headers['if-range'] ?? null;
    if (!f) { seen.push({ name, range, ifRange, status: 404 }); res.writeHead(404); res.end(); return; }
    const body = f.body;
    let start = 0;
    let status = 200;
    const m = range && /^bytes=(\d+)-$/.exec(range);
    if (m && !f.ignoreRange && (ifRange === null || ifRange === f.etag)) {
      start = Number(m[1]);
      if (start >= body.length) {
        seen.push({ name, range, ifRange, status: 416 });
        res.writeHead(416, { 'Content-Range': `bytes */${body.length}`, ETag: f.etag });
        res.end();
        return;
      }
      status = 206;
    }
    const step = f.plan.shift() ?? {};
    seen.push({ name, range, ifRange, status, ...(step.drop != null ? { drop: step.drop } : {}), ...(step.stall != null ? { stall: step.stall } : {}) });
    const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length - start,
                      ...(f.etag ? { ETag: f.etag } : {}), 'Accept-Ranges': f.ignoreRange ? 'none' : 'bytes' };
    if (status === 206) headers['Content-Range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(status, headers);
    if (step.then) set(name, { ...f, ...step.then, plan: f.plan });
    const part = body.subarray(start);
    if (step.drop != null) {
      res.write(part.subarray(0, step.drop), () => res.socket?.destroy());
    } else if (step.stall != null) {
      open.add(res);
      res.on('close', () => open.delete(res));
      res.write(part.subarray(0, step.stall));
    } else {
      res.end(part);
    }
  }

  function set(name, { file, etag, ignoreRange = false, plan = [] }) {
    files.set(name, { file, etag, ignoreRange, plan: [...plan], body: readFileSync(file) });
  }

  return {
    handle, set, seen,
    /** The requests for `name`. */
    of: (name) => seen.filter((s) => s.name === name),
    /** Ends the stalled responses (a test's tear-down). */
    closeStalled: () => { for (const r of open) r.socket?.destroy(); open.clear(); },
  };
}
