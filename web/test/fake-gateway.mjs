// A scripted gateway speaking the Sipp profile (docs/gateway-protocol.md) for the browser
// client's tests: CORS allowlist, bearer auth, streaming and JSON answers, and the faults a
// real gateway should not produce on demand (oversized SSE event, redirect, echoed secret).
import { createServer } from 'node:http';

export const TOKEN = 's3cret-token-123';

export async function startFakeGateway(allowedOrigin) {
  const seen = [];
  const server = createServer(async (req, res) => {
    const origin = req.headers.origin;
    if (origin === allowedOrigin) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Headers', 'authorization, content-type, x-request-id, x-api-key');
      res.setHeader('Access-Control-Expose-Headers', 'x-request-id, retry-after');
      res.setHeader('Vary', 'Origin');
    }
    if (req.method === 'OPTIONS') { res.writeHead(204); res.end(); return; }
    let body = '';
    for await (const c of req) body += c;
    seen.push({ path: req.url, headers: req.headers, body, cookie: req.headers.cookie ?? null });
    const envelope = (status, code, message, headers = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': 'req-1', ...headers });
      res.end(JSON.stringify({ error: { code, message } }));
    };
    const auth = req.headers.authorization ?? '';
    const key = req.headers['x-api-key'];
    if (auth !== `Bearer ${TOKEN}` && key !== TOKEN) {
      // A careless peer that echoes the credential: the client must redact it.
      return envelope(401, 'authentication', `unknown token '${auth.replace(/^Bearer /, '') || key}'`);
    }
    let j;
    try { j = JSON.parse(body); } catch { return envelope(400, 'invalid_json', 'body is not JSON'); }
    if (req.url === '/v1/embed') {
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'req-2' });
      res.end(JSON.stringify({ id: 'e1', model: j.model, embedding: [0.5, -0.25, 1], usage: { input_tokens: 2, output_tokens: 0, total_tokens: 2 } }));
      return;
    }
    const prompt = j.prompt ?? j.messages?.at(-1)?.content ?? '';
    if (prompt === 'redirect') { res.writeHead(302, { location: 'http://127.0.0.1:9/elsewhere' }); res.end(); return; }
    if (!j.stream) {
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'req-3' });
      res.end(JSON.stringify({ id: 'q1', model: j.model, text: 'Hello world', finish_reason: 'stop', usage: { input_tokens: 3, output_tokens: 2, total_tokens: 5 } }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': 'req-4' });
    if (prompt === 'big') {
      res.write(`event: token\ndata: {"text":"ok","sequence":0}\n\n`);
      res.write(`event: token\ndata: {"text":"${'x'.repeat(1100 * 1024)}","sequence":1}\n\n`);
      res.end('event: done\ndata: {"finish_reason":"stop"}\n\n');
      return;
    }
    if (prompt === 'fail') {
      res.write(`event: token\ndata: {"text":"par","sequence":0}\n\n`);
      res.end(`event: error\ndata: {"error":{"code":"execution","message":"engine failed"}}\n\n`);
      return;
    }
    const pieces = ['Hel', 'lo', ' wor', 'ld'];
    res.write(': ping\n\n');
    for (let i = 0; i < pieces.length; i++) {
      res.write(`event: token\ndata: ${JSON.stringify({ text: pieces[i], sequence: i })}\n\n`);
      await new Promise((ok) => setTimeout(ok, 20));
    }
    res.write(`event: usage\ndata: {"input_tokens":3,"output_tokens":4,"total_tokens":7}\n\n`);
    res.end(`event: done\ndata: {"finish_reason":"stop"}\n\n`);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}`, seen,
           close: () => new Promise((ok) => { server.closeAllConnections(); server.close(ok); }) };
}
