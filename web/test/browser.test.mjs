// Browser tests of @sipp/web in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core), against pages served on 127.0.0.1 by the test itself. Run by ctest (label
// `browser`) or `node web/test/browser.test.mjs`. Environment: SIPP_BIN_DIR (native sipp and
// sipp-make-model, for the reference outputs), SIPP_TEST_MODELS_DIR, SIPP_LLAMA_SRC,
// SIPP_CHROMIUM (default /usr/bin/chromium). The gateway client runs against the real
// sipp-gateway from SIPP_BIN_DIR (real-gateway.mjs) and, for the faults a real gateway does not
// produce (oversized SSE event, redirect, an echoed secret), a scripted server (fake-gateway.mjs).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startStatic } from './server.mjs';
import { startFakeGateway, TOKEN } from './fake-gateway.mjs';
import { LIMITED_TOKEN, REAL_TOKEN, startRealGateway } from './real-gateway.mjs';

const webDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(webDir, '..');
const binDir = process.env.SIPP_BIN_DIR ?? join(repo, 'build', 'bin');
const modelsDir = process.env.SIPP_TEST_MODELS_DIR ?? join(repo, '..', 'shared', 'models');
const outDir = process.env.SIPP_TEST_OUT ?? join(webDir, 'test-results');
const STORY = 'stories260K.gguf';
const CHAT = 'tinystories-instruct-3m-soda-chat-Q4_0.gguf';
const llamaSrc = process.env.SIPP_LLAMA_SRC ?? join(process.env.SIPP_CACHE_DIR ?? join(homedir(), '.cache', 'sipp'),
  'llama.cpp', `src-${/NODE_LLAMA_CPP_VERSION=(\S+)/.exec(readFileSync(join(repo, 'scripts', 'deps.env'), 'utf8'))[1]}`);
const hasMt = existsSync(join(webDir, 'dist', 'wasm', 'sipp-mt.wasm'));

function native(args) {
  return JSON.parse(execFileSync(join(binDir, 'sipp'), [...args, '--json'], {
    encoding: 'utf8', env: { ...process.env, SIPP_LOG: 'error' },
  }));
}

let browser, plain, isolated, tmp, bigModel;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sipp-web-'));
  // A random-weight model larger than the test's shard threshold (the sharding path).
  bigModel = join(tmp, 'random-135m.gguf');
  execFileSync(join(binDir, 'sipp-make-model'), ['--shape', 'llama-135m', '--type', 'q4_k_m', '--out', bigModel],
    { stdio: 'ignore', env: { ...process.env, SIPP_LLAMA_SRC: llamaSrc } });
  const extraFiles = { 'random-135m.gguf': bigModel };
  plain = await startStatic({ webDir, modelsDirs: [modelsDir], extraFiles });
  isolated = await startStatic({ webDir, modelsDirs: [modelsDir], extraFiles, isolated: true });
  browser = await chromium.launch({
    executablePath: process.env.SIPP_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--enable-unsafe-webgpu'],
  });
});

after(async () => {
  await browser?.close();
  await plain?.close();
  await isolated?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function openPage(server, context) {
  const ctx = context ?? await browser.newContext();
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${server.origin}/test/test.html`);
  await page.waitForFunction(() => window.sippReady === true);
  return { ctx, page, errors };
}

/** Runs `fn` in the page with a fresh client in window.client. */
function inPage(page, fn, arg) {
  return page.evaluate(fn, arg);
}

describe('local models (single-thread artifact)', () => {
  let ctx, page;
  before(async () => {
    ({ ctx, page } = await openPage(plain));
    await inPage(page, () => { window.client = new window.Sipp.SippClient({ threads: 'st' }); });
  });
  after(async () => { await ctx.close(); });

  test('query from a URL streams the same text as the native library at temperature 0', async () => {
    const want = native(['query', '-m', join(modelsDir, STORY), '--temperature', '0', '-n', '40', 'Once upon a time']);
    const got = await inPage(page, async () => {
      const events = [];
      const info = await window.client.add('story', { kind: 'local', source: '/models/stories260K.gguf', onProgress: (e) => events.push(e.phase) });
      const run = window.client.query('Once upon a time', { endpoint: 'story', temperature: 0, maxTokens: 40 });
      const pieces = [];
      for await (const t of run.tokens) pieces.push(t);
      const r = await run.response;
      return { info, r, pieces, phases: [...new Set(events)] };
    });
    assert.equal(got.info.loadedFrom, 'network');
    assert.equal(got.info.runtime.threads, 'st');
    assert.ok(got.info.warmupMs > 0, 'warmed up at load by default');
    assert.deepEqual(got.phases, ['download', 'load']);
    assert.equal(got.r.status, 'ok');
    assert.equal(got.r.text, want.text);
    assert.ok(got.pieces.length > 1, 'streamed in several batches');
    assert.equal(got.pieces.join(''), got.r.text);
    assert.equal(got.r.finishReason, want.finish_reason);
    assert.equal(got.r.usage.outputTokens, want.usage.output_tokens);
  });

  test('chat renders the model template and matches the native library', async () => {
    const want = native(['chat', '-m', join(modelsDir, CHAT), '--temperature', '0', '-n', '48', 'Do you like to play outside?']);
    const { info, r } = await inPage(page, async () => {
      const info = await window.client.add('chat', { kind: 'local', source: '/models/tinystories-instruct-3m-soda-chat-Q4_0.gguf', warmup: false });
      return { info, r: await window.client.chat([{ role: 'user', content: 'Do you like to play outside?' }],
        { endpoint: 'chat', temperature: 0, maxTokens: 48 }).response };
    });
    assert.equal(info.warmupMs, 0);
    assert.equal(r.status, 'ok');
    assert.equal(r.text, want.text);
  });

  test('embed gives the native vector', async () => {
    const want = native(['embed', '-m', join(modelsDir, STORY), 'hello world']);
    const r = await inPage(page, async () => {
      const r = await window.client.embed('hello world', { endpoint: 'story' }).response;
      return { ...r, embedding: Array.from(r.embedding) };
    });
    assert.equal(r.embedding.length, want.dims);
    const maxDiff = Math.max(...r.embedding.map((x, i) => Math.abs(x - want.embedding[i])));
    assert.ok(maxDiff < 1e-4, `max difference ${maxDiff}`);
  });

  test('abort mid-stream ends the run as cancelled', async () => {
    const r = await inPage(page, async () => {
      const ac = new AbortController();
      const run = window.client.query('Once upon a time', { endpoint: 'story', maxTokens: 4000, ignoreEos: true, signal: ac.signal });
      let n = 0;
      for await (const _ of run.tokens) { if (++n === 2) ac.abort(); }
      return run.response;
    });
    assert.equal(r.finishReason, 'cancelled');
    assert.ok(r.usage.outputTokens < 4000);
  });

  test('bad input is a clear error, and the engine goes on', async () => {
    const r = await inPage(page, async () => {
      const out = [];
      for (const f of [() => window.client.query('', { endpoint: 'story' }),
                       () => window.client.query('x', { endpoint: 'nope' }),
                       () => window.client.query('x', { endpoint: 'story', temperature: -1 }),
                       () => window.client.chat([{ role: 'user', content: 'hi' }], { endpoint: 'story' })]) {
        try { await f().response; out.push('resolved'); } catch (e) { out.push(`${e.status}: ${e.message}`); }
      }
      const ok = await window.client.query('Once', { endpoint: 'story', maxTokens: 4, temperature: 0 }).response;
      return { out, ok: ok.status };
    });
    assert.match(r.out[0], /^invalid_argument: query: the prompt is empty/);
    assert.match(r.out[1], /^not_found: no endpoint 'nope'/);
    assert.match(r.out[2], /^invalid_argument: .*temperature/);
    assert.match(r.out[3], /^unsupported: chat: the model has no chat template/);
    assert.equal(r.ok, 'ok');
  });
});

describe('OPFS model cache', () => {
  test('a second load comes from OPFS with no network request; files load; listLocal/removeLocal', async () => {
    const ctx = await browser.newContext();
    const first = await openPage(plain, ctx);
    const a = await inPage(first.page, async () => {
      const c = new window.Sipp.SippClient({ threads: 'st' });
      const info = await c.add('s', { kind: 'local', source: '/models/stories260K.gguf' });
      c.close();
      return info;
    });
    await first.page.close();
    plain.log.length = 0;
    const second = await openPage(plain, ctx);
    const b = await inPage(second.page, async () => {
      const c = new window.Sipp.SippClient({ threads: 'st' });
      const info = await c.add('s', { kind: 'local', source: '/models/stories260K.gguf' });
      const r = await c.query('Once upon a time', { temperature: 0, maxTokens: 8 }).response;
      return { info, r, list: await c.listLocal() };
    });
    assert.equal(a.loadedFrom, 'network');
    assert.equal(b.info.loadedFrom, 'opfs');
    assert.equal(b.info.cacheId, a.cacheId, 'the id is stable');
    assert.equal(b.r.status, 'ok');
    assert.deepEqual(plain.log.filter((l) => l.includes('/models/')), [], 'no model request on the second load');
    assert.ok(b.list.some((m) => m.id === a.cacheId && m.bytes === statSync(join(modelsDir, STORY)).size));

    const c = await inPage(second.page, async (id) => {
      const resp = await fetch('/models/stories260K.gguf');
      const file = new File([await resp.blob()], 'stories260K.gguf');
      const cl = new window.Sipp.SippClient({ threads: 'st' });
      const removed = await cl.removeLocal(id);
      const after = (await cl.listLocal()).map((m) => m.id);
      const info = await cl.add('f', { kind: 'local', source: file });
      const r = await cl.query('Once upon a time', { temperature: 0, maxTokens: 8 }).response;
      return { removed, after, info, r };
    }, a.cacheId);
    assert.equal(c.removed, true);
    assert.ok(!c.after.includes(a.cacheId));
    assert.equal(c.info.loadedFrom, 'file');
    assert.equal(c.r.text, b.r.text);
    await ctx.close();
  });

  test('a model above the shard threshold is split into GGUF shards and loads', async () => {
    const want = native(['query', '-m', bigModel, '--temperature', '0', '-n', '6', 'Hello']);
    const { ctx, page } = await openPage(plain);
    const MiB = 1024 * 1024;
    const r = await inPage(page, async (MiB) => {
      const c = new window.Sipp.SippClient({ threads: 'st', shardThresholdBytes: 16 * MiB, shardSizeBytes: 24 * MiB });
      const stored = [];
      const info = await c.add('big', { kind: 'local', source: '/models/random-135m.gguf', nCtx: 256,
                                        onProgress: (e) => { if (e.phase === 'store') stored.push(e.loaded); } });
      const r = await c.query('Hello', { temperature: 0, maxTokens: 6 }).response;
      const list = await c.listLocal();
      return { info, r, stored: stored.length, files: list.find((m) => m.id === info.cacheId).files };
    }, MiB);
    const size = statSync(bigModel).size;
    assert.ok(size > 24 * MiB, `the model (${size} bytes) is larger than a shard`);
    assert.ok(r.info.shards >= Math.ceil(size / (24 * MiB)), `${r.info.shards} shards`);
    assert.match(r.files[0], /^model-00001-of-0000\d\.gguf$/);
    assert.ok(r.stored > 0, 'store progress events');
    assert.equal(r.r.status, 'ok');
    assert.equal(r.r.text, want.text);
    await ctx.close();
  });
});

describe('runtime selection', () => {
  test('backend auto reports the WebGPU adapter and picks the CPU, saying why', async () => {
    const { ctx, page } = await openPage(plain);
    const r = await inPage(page, async () => {
      const b = await window.Sipp.detectBackend('auto');
      let webgpuErr = '';
      try { await window.Sipp.detectBackend('webgpu'); } catch (e) { webgpuErr = e.message; }
      return { b, webgpuErr };
    });
    assert.equal(r.b.selected, 'cpu');
    assert.ok(r.b.reason.length > 10);
    if (r.b.webgpu) assert.equal(typeof r.b.webgpu.shaderF16, 'boolean');
    assert.match(r.webgpuErr, /no WebGPU inference path/);
    await ctx.close();
  });

  test('the pthread artifact is used only when the page is cross-origin isolated', { skip: !hasMt && 'no pthread artifact built' }, async () => {
    const want = native(['query', '-m', join(modelsDir, STORY), '--temperature', '0', '-n', '24', 'Once upon a time']);
    const runOn = async (server) => {
      const { ctx, page } = await openPage(server);
      const r = await inPage(page, async () => {
        const c = new window.Sipp.SippClient();
        const info = await c.add('s', { kind: 'local', source: '/models/stories260K.gguf' });
        const r = await c.query('Once upon a time', { temperature: 0, maxTokens: 24 }).response;
        return { isolated: window.crossOriginIsolated, threads: info.runtime.threads, text: r.text };
      });
      await ctx.close();
      return r;
    };
    const iso = await runOn(isolated);
    const pl = await runOn(plain);
    assert.equal(iso.isolated, true);
    assert.equal(iso.threads, 'mt');
    assert.equal(iso.text, want.text);
    assert.equal(pl.isolated, false);
    assert.equal(pl.threads, 'st');
  });
});

describe('gateway client (scripted SSE server)', () => {
  let gw, ctx, page;
  before(async () => {
    gw = await startFakeGateway(plain.origin);
    ({ ctx, page } = await openPage(plain));
  });
  after(async () => { await ctx.close(); await gw.close(); });

  test('streams, answers JSON and embeds with a bearer token; no cookies', async () => {
    await ctx.addCookies([{ name: 'session', value: 'c00kie', url: gw.url }]);
    const r = await inPage(page, async ({ url, token }) => {
      const c = new window.Sipp.SippClient();
      await c.add('gw', { kind: 'gateway', baseUrl: url, target: 'tiny', authentication: { kind: 'bearer', token: async () => token } });
      const run = c.chat([{ role: 'user', content: 'hi' }], { maxTokens: 8 });
      const pieces = [];
      for await (const t of run.tokens) pieces.push(t);
      const chat = await run.response;
      const emb = await c.embed('hello').response;
      return { pieces, chat, emb: Array.from(emb.embedding) };
    }, { url: gw.url, token: TOKEN });
    assert.deepEqual(r.pieces, ['Hel', 'lo', ' wor', 'ld']);
    assert.equal(r.chat.text, 'Hello world');
    assert.equal(r.chat.finishReason, 'stop');
    assert.equal(r.chat.usage.outputTokens, 4);
    assert.equal(r.chat.requestId, 'req-4');
    assert.deepEqual(r.emb, [0.5, -0.25, 1]);
    const chatReq = gw.seen.find((s) => s.path === '/v1/chat');
    assert.deepEqual(JSON.parse(chatReq.body), { model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, stream: true });
    assert.ok(gw.seen.every((s) => s.cookie === null), 'credentials: omit');
  });

  // What sipp-gateway does not do on demand: echo a secret, send an oversized event, redirect,
  // fail mid-stream. (Streaming, 401, 429 and CORS run against the real gateway below.)
  test('an echoed secret is redacted; oversized event, redirect and stream errors fail cleanly', async () => {
    const r = await inPage(page, async ({ url, token }) => {
      const c = new window.Sipp.SippClient();
      await c.add('bad', { kind: 'gateway', baseUrl: url, target: 't', authentication: { kind: 'bearer', token: 'wrong-secret-value' } });
      await c.add('hdr', { kind: 'gateway', baseUrl: url, target: 't', authentication: { kind: 'header', name: 'x-api-key', value: token } });
      const q = (ep, p) => c.query(p, { endpoint: ep }).response;
      return { unauth: await q('bad', 'hi'), big: await q('hdr', 'big'),
               redirect: await q('hdr', 'redirect'), fail: await q('hdr', 'fail'), ok: await q('hdr', 'hi') };
    }, { url: gw.url, token: TOKEN });
    assert.equal(r.unauth.status, 'authentication');
    assert.equal(r.unauth.httpStatus, 401);
    assert.equal(r.unauth.errorCode, 'authentication');
    assert.ok(!r.unauth.errorMessage.includes('wrong-secret-value'), r.unauth.errorMessage);
    assert.match(r.unauth.errorMessage, /\[redacted\]/);
    assert.equal(r.big.status, 'upstream_error');
    assert.match(r.big.errorMessage, /over 1 MiB/);
    assert.equal(r.redirect.status, 'transport');
    assert.equal(r.fail.status, 'upstream_error');
    assert.match(r.fail.errorMessage, /execution: engine failed/);
    assert.equal(r.ok.text, 'Hello world');
  });

  test('base URL and option validation', async () => {
    const r = await inPage(page, async () => {
      const bad = ['http://example.com', 'https://u:p@example.com', 'https://example.com/?a=1',
                   'https://example.com/#x', 'ftp://example.com', 'relative/path'];
      const out = bad.map((u) => { try { window.Sipp.validateBaseUrl(u); return 'accepted'; } catch (e) { return e.message; } });
      const good = ['http://127.0.0.1:8080/', 'http://localhost:1', 'http://[::1]:2', 'https://gw.example.com/base/']
        .map((u) => window.Sipp.validateBaseUrl(u));
      const c = new window.Sipp.SippClient();
      await c.add('g', { kind: 'gateway', baseUrl: 'http://127.0.0.1:9', target: 't' });
      let local = '';
      try { await c.query('x', { contextKey: 'k' }).response; } catch (e) { local = e.message; }
      return { out, good, local };
    });
    assert.match(r.out[0], /https/);
    assert.match(r.out[1], /userinfo/);
    assert.match(r.out[2], /query/);
    assert.match(r.out[3], /fragment/);
    assert.match(r.out[4], /scheme/);
    assert.match(r.out[5], /absolute/);
    assert.deepEqual(r.good, ['http://127.0.0.1:8080', 'http://localhost:1', 'http://[::1]:2', 'https://gw.example.com/base']);
    assert.match(r.local, /contextKey is for local endpoints/);
  });
});

describe('gateway client (the real sipp-gateway)', () => {
  // sipp-gateway with a local target on the tiny chat model, this page's origin in
  // allowed_origins (the isolated server's is not: another origin), two bearer tokens.
  let gw, ctx, page;
  before(async () => {
    gw = await startRealGateway({ binDir, model: join(modelsDir, CHAT), origins: [plain.origin], tmp });
    ({ ctx, page } = await openPage(plain));
  });
  after(async () => { await ctx?.close(); await gw?.close(); });

  test('chat streams through sipp-gateway and matches the native library', async () => {
    const want = native(['chat', '-m', join(modelsDir, CHAT), '--temperature', '0', '-n', '24', 'Do you like to play outside?']);
    const r = await inPage(page, async ({ url, token }) => {
      const c = new window.Sipp.SippClient();
      await c.add('gw', { kind: 'gateway', baseUrl: url, target: 'tiny', authentication: { kind: 'bearer', token: async () => token } });
      const run = c.chat([{ role: 'user', content: 'Do you like to play outside?' }], { maxTokens: 24, temperature: 0 });
      const pieces = [];
      for await (const t of run.tokens) pieces.push(t);
      return { r: await run.response, pieces };
    }, { url: gw.url, token: REAL_TOKEN });
    assert.equal(r.r.status, 'ok', r.r.errorMessage);
    assert.equal(r.r.text, want.text);
    // How many tokens share one SSE event depends on timing (the gateway sends what the engine
    // has produced); one piece per event is proven against the scripted server above.
    assert.ok(r.pieces.length >= 1 && r.pieces.every((p) => p.length > 0), 'streamed non-empty pieces');
    assert.equal(r.pieces.join(''), r.r.text);
    assert.equal(r.r.usage.outputTokens, want.usage.output_tokens);
    assert.match(r.r.requestId, /^req-/);
  });

  test('a wrong token is 401 with the token redacted; requests_per_minute gives 429 with retryAfterS', async () => {
    const r = await inPage(page, async ({ url, limited }) => {
      const c = new window.Sipp.SippClient();
      const wrong = 'not-the-token-xyz-' + 'q'.repeat(8);
      await c.add('bad', { kind: 'gateway', baseUrl: url, target: 'tiny', authentication: { kind: 'bearer', token: wrong } });
      await c.add('lim', { kind: 'gateway', baseUrl: url, target: 'tiny', authentication: { kind: 'bearer', token: limited } });
      const q = (ep) => c.query('Once upon a time', { endpoint: ep, maxTokens: 4, temperature: 0 }).response;
      return { wrong, unauth: await q('bad'), first: await q('lim'), second: await q('lim') };
    }, { url: gw.url, limited: LIMITED_TOKEN });
    assert.equal(r.unauth.status, 'authentication');
    assert.equal(r.unauth.httpStatus, 401);
    assert.equal(r.unauth.errorCode, 'authentication');
    assert.ok(!r.unauth.errorMessage.includes(r.wrong), r.unauth.errorMessage);
    assert.equal(r.first.status, 'ok', r.first.errorMessage);
    assert.equal(r.second.status, 'rate_limited');
    assert.equal(r.second.httpStatus, 429);
    assert.ok(r.second.retryAfterS >= 1 && r.second.retryAfterS <= 60, `retryAfterS ${r.second.retryAfterS}`);
    assert.ok(!r.second.errorMessage.includes(LIMITED_TOKEN), r.second.errorMessage);
    assert.ok(!gw.log().includes(LIMITED_TOKEN) && !gw.log().includes(r.wrong), 'no secret in the gateway log');
  });

  test('a page of another origin is refused by CORS', async () => {
    const other = await openPage(isolated); // another port: another origin, not in allowed_origins
    const r = await inPage(other.page, async ({ url, token }) => {
      const c = new window.Sipp.SippClient();
      await c.add('gw', { kind: 'gateway', baseUrl: url, target: 'tiny', authentication: { kind: 'bearer', token } });
      return c.query('Once upon a time', { maxTokens: 4 }).response;
    }, { url: gw.url, token: REAL_TOKEN });
    await other.ctx.close();
    assert.equal(r.status, 'transport');
    assert.ok(!r.errorMessage.includes(REAL_TOKEN), r.errorMessage);
    // The preflight itself is refused by the gateway (no CORS headers for that origin).
    const pre = await fetch(`${gw.url}/v1/query`, { method: 'OPTIONS', headers: {
      origin: isolated.origin, 'access-control-request-method': 'POST' } });
    assert.equal(pre.headers.get('access-control-allow-origin'), null);
    assert.notEqual(pre.status, 204);
  });
});

test('demo page: a local chat, TTFT and tok/s shown, screenshot saved', async () => {
  const { ctx, page, errors } = await openPage(plain);
  await page.goto(`${plain.origin}/demo/index.html`);
  await page.waitForSelector('#status:has-text("ready")', { timeout: 60000 });
  await page.fill('#prompt', 'Do you like to play outside?');
  await page.click('#send');
  await page.waitForSelector('#metrics:has-text("tok/s")', { timeout: 60000 });
  const answer = await page.textContent('.msg.assistant:last-child');
  assert.ok(answer && answer.trim().length > 0, 'an answer is shown');
  const shot = join(outDir, 'demo.png');
  execFileSync('mkdir', ['-p', outDir]);
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(statSync(shot).size > 1000);
  assert.deepEqual(errors, []);
  await ctx.close();
});
