// Static pages for the browser tests on 127.0.0.1: web/dist, web/demo, web/test/pages and the
// models directory (/models/NAME, with ETag). Every request is logged so tests can assert what
// went over the network. `isolated` adds COOP/COEP (a cross-origin isolated page); `extraRoots`
// maps more URL prefixes to directories (the benchmark's page); `uploadDir` accepts
// `PUT /upload/NAME` into that directory (files a page made, e.g. the GGUF shards it wrote to
// OPFS), served back as /models/NAME. `handlers` maps more URL prefixes to functions
// `(req, res, url)` that answer the request themselves (the scripted downloads of range-server.mjs).
import { createServer } from 'node:http';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { extname, join, normalize, resolve } from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.wasm': 'application/wasm', '.map': 'application/json', '.css': 'text/css',
  '.gguf': 'application/octet-stream', '.json': 'application/json', '.png': 'image/png',
};

export async function startStatic({ webDir, modelsDirs, isolated = false, extraFiles = {}, extraRoots = {}, uploadDir = null, handlers = {} }) {
  const log = [];
  const roots = {
    '/dist/': join(webDir, 'dist'), '/demo/': join(webDir, 'demo'), '/test/': join(webDir, 'test', 'pages'),
    '/node_modules/': join(webDir, 'node_modules'), ...extraRoots,
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    log.push(`${req.method} ${url.pathname}`);
    if (isolated) {
      res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
      res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    }
    res.setHeader('Cache-Control', 'no-store');
    for (const [prefix, h] of Object.entries(handlers)) if (url.pathname.startsWith(prefix)) { h(req, res, url); return; }
    if (req.method === 'PUT' && uploadDir && url.pathname.startsWith('/upload/')) {
      const name = decodeURIComponent(url.pathname.slice(8));
      if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith('.')) { res.writeHead(400); res.end('bad name'); return; }
      const out = createWriteStream(join(uploadDir, name));
      req.pipe(out);
      out.on('finish', () => { res.writeHead(201); res.end(); });
      out.on('error', () => { res.writeHead(500); res.end(); });
      return;
    }
    let file = null;
    if (url.pathname.startsWith('/models/')) {
      const name = decodeURIComponent(url.pathname.slice(8));
      if (extraFiles[name]) file = extraFiles[name];
      else for (const d of uploadDir ? [...modelsDirs, uploadDir] : modelsDirs) {
        const f = join(d, name);
        if (!name.includes('/') && safeStat(f)) { file = f; break; }
      }
    } else {
      for (const [prefix, dir] of Object.entries(roots)) {
        if (!url.pathname.startsWith(prefix)) continue;
        const f = normalize(join(dir, decodeURIComponent(url.pathname.slice(prefix.length))));
        if (f.startsWith(resolve(dir))) file = f;
      }
    }
    const st = file && safeStat(file);
    if (!st || !st.isFile()) { res.writeHead(404); res.end('not found'); return; }
    res.writeHead(200, {
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': st.size, ETag: `"${st.size}-${st.mtimeMs}"`,
    });
    if (req.method === 'HEAD') { res.end(); return; }
    createReadStream(file).pipe(res);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, log, close: () => new Promise((ok) => { server.closeAllConnections(); server.close(ok); }) };
}

function safeStat(f) {
  try { return statSync(f); } catch { return null; }
}
