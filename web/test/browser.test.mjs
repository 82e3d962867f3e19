// Browser tests of @sipp/web in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core), against pages served on 127.0.0.1 by the test itself. Run by ctest (label
// `browser`) or `node web/test/browser.test.mjs`. Environment: SIPP_BIN_DIR (native sipp and
// sipp-make-model, for the reference outputs), SIPP_TEST_MODELS_DIR, SIPP_LLAMA_SRC,
// SIPP_CHROMIUM (default /usr/bin/chromium), SIPP_WASM_VARIANTS (the artifacts scripts/setup was
// asked to build, default "st mt"; each must be in web/dist/wasm/). The gateway client runs against the real
// sipp-gateway from SIPP_BIN_DIR (real-gateway.mjs) and, for the faults a real gateway does not
// produce (oversized SSE event, redirect, an echoed secret), a scripted server (fake-gateway.mjs).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startStatic } from './server.mjs';
import { createRangeFiles } from './range-server.mjs';
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
// What set-up was asked to build (CMake passes SIPP_WASM_VARIANTS from scripts/setup); an
// artifact asked for but missing is a failure, not a skipped test.
const wasmVariants = (process.env.SIPP_WASM_VARIANTS ?? 'st mt').trim().split(/\s+/);
const MiB = 1024 * 1024;

function native(args) {
  return JSON.parse(execFileSync(join(binDir, 'sipp'), [...args, '--json'], {
    encoding: 'utf8', env: { ...process.env, SIPP_LOG: 'error' },
  }));
}

let browser, plain, isolated, tmp, bigModel, uploads, dl;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sipp-web-'));
  // A random-weight model larger than the test's shard threshold (the sharding path).
  bigModel = join(tmp, 'random-135m.gguf');
  execFileSync(join(binDir, 'sipp-make-model'), ['--shape', 'llama-135m', '--type', 'q4_k_m', '--out', bigModel],
    { stdio: 'ignore', env: { ...process.env, SIPP_LLAMA_SRC: llamaSrc } });
  const extraFiles = { 'random-135m.gguf': bigModel };
  uploads = join(tmp, 'uploads'); // the shards a page wrote to OPFS, served back as /models/NAME
  mkdirSync(uploads);
  dl = createRangeFiles(); // /dl/NAME: scripted downloads (drops, stalls, ignored ranges)
  plain = await startStatic({ webDir, modelsDirs: [modelsDir], extraFiles, uploadDir: uploads,
                              handlers: { '/dl/': dl.handle } });
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

  test('stop ends the text before the stop string, as in the native library', async () => {
    const full = native(['query', '-m', join(modelsDir, STORY), '--temperature', '0', '-n', '40', 'Once upon a time']);
    const want = native(['query', '-m', join(modelsDir, STORY), '--temperature', '0', '-n', '40', '--stop', 'park', 'Once upon a time']);
    assert.ok(full.text.includes('park') && !full.text.startsWith('park'), `the stop string is inside the full text: ${full.text}`);
    const r = await inPage(page, async () => {
      const run = window.client.query('Once upon a time', { endpoint: 'story', temperature: 0, maxTokens: 40, stop: ['park'] });
      const pieces = [];
      for await (const t of run.tokens) pieces.push(t);
      return { r: await run.response, streamed: pieces.join('') };
    });
    assert.equal(r.r.status, 'ok');
    assert.equal(r.r.finishReason, 'stop');
    assert.equal(r.r.text, full.text.slice(0, full.text.indexOf('park')));
    assert.equal(r.r.text, want.text);
    assert.ok(!r.streamed.includes('park'), 'the stop string is not streamed either');
  });

  test('a GBNF grammar constrains the output', async () => {
    const gbnf = join(tmp, 'yes-no.gbnf');
    const grammar = 'root ::= "yes" | "no"\n';
    writeFileSync(gbnf, grammar);
    const want = native(['query', '-m', join(modelsDir, STORY), '--temperature', '0', '-n', '16', '--grammar-file', gbnf, 'Is the sky blue?']);
    const r = await inPage(page, async (grammar) => {
      const ok = await window.client.query('Is the sky blue?', { endpoint: 'story', temperature: 0, maxTokens: 16, grammar }).response;
      const hot = await window.client.query('Is the sky blue?', { endpoint: 'story', temperature: 1.5, seed: 3, maxTokens: 16, grammar }).response;
      let bad = '';
      try { await window.client.query('x', { endpoint: 'story', grammar: 'root ::= "yes' }).response; } catch (e) { bad = `${e.status}: ${e.message}`; }
      const after = await window.client.query('Is the sky blue?', { endpoint: 'story', temperature: 0, maxTokens: 16, grammar }).response;
      return { ok, hot, bad, after };
    }, grammar);
    assert.equal(r.ok.status, 'ok');
    assert.ok(['yes', 'no'].includes(r.ok.text), `constrained output: ${JSON.stringify(r.ok.text)}`);
    assert.equal(r.ok.text, want.text);
    assert.equal(r.ok.finishReason, 'stop');
    assert.ok(['yes', 'no'].includes(r.hot.text), `constrained at temperature 1.5 too: ${JSON.stringify(r.hot.text)}`);
    // llama.cpp's grammar parser throws; the wasm build catches C++ exceptions as the desktop
    // does (-fwasm-exceptions), so the page gets the native library's own message.
    assert.match(r.bad, /^invalid_argument: the grammar does not parse/);
    assert.equal(r.after.text, r.ok.text, 'the engine goes on after a bad grammar');
  });

  test('topP is applied and validated', async () => {
    const greedy = native(['query', '-m', join(modelsDir, STORY), '--temperature', '0', '-n', '40', 'Once upon a time']);
    const r = await inPage(page, async () => {
      const q = (topP) => window.client.query('Once upon a time', { endpoint: 'story', temperature: 1.5, seed: 7, maxTokens: 40, topP }).response;
      const narrow = await q(0.001), wide = await q(1);
      const bad = [];
      for (const topP of [1.5, -0.1]) {
        try { await q(topP); bad.push('resolved'); } catch (e) { bad.push(`${e.status}: ${e.message}`); }
      }
      return { narrow, wide, bad };
    });
    // top-p 0.001 keeps only the most likely token: greedy text whatever the temperature.
    assert.equal(r.narrow.status, 'ok');
    assert.equal(r.narrow.text, greedy.text);
    assert.equal(r.wide.status, 'ok');
    assert.notEqual(r.wide.text, greedy.text, 'temperature 1.5 without the top-p cut is not greedy (the control)');
    assert.match(r.bad[0], /^invalid_argument: top_p must be in \[0, 1\] \(got 1\.5\)/);
    assert.match(r.bad[1], /^invalid_argument: top_p must be in \[0, 1\]/);
  });

  test('a repeated contextKey reuses the warm sequence (cached tokens in the stats)', async () => {
    const want = native(['query', '-m', join(modelsDir, STORY), '--temperature', '0', '-n', '16', 'Once upon a time']);
    const r = await inPage(page, async () => {
      const q = (contextKey) => window.client.query('Once upon a time', { endpoint: 'story', temperature: 0, maxTokens: 16, contextKey }).response;
      return { first: await q('doc-1'), second: await q('doc-1'), other: await q('doc-2') };
    });
    assert.equal(r.first.stats.cacheSource, 'none');
    assert.equal(r.first.stats.cachedTokens, 0);
    assert.equal(r.second.stats.cacheSource, 'live');
    // Everything but the last prompt token (its logits start the generation) comes from the cache.
    assert.equal(r.second.stats.cachedTokens, r.second.usage.inputTokens - 1);
    assert.equal(r.second.stats.prefillTokens, 1);
    assert.equal(r.other.stats.cacheSource, 'none', 'another key does not get the sequence');
    assert.equal(r.other.stats.cachedTokens, 0);
    for (const x of [r.first, r.second, r.other]) assert.equal(x.text, want.text);
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

  // The random 135M model (133 MiB) in shards of at most 32 MiB: the first shard carries 1.7 MiB
  // of metadata, which must count (every shard file <= shardSizeBytes); its 29 MiB token
  // embedding does not fit in 16 MiB shards at all.
  test('a model above the shard threshold is split into GGUF shards of at most shardSizeBytes and loads', async () => {
    const want = native(['query', '-m', bigModel, '--temperature', '0', '-n', '6', 'Hello']);
    const { ctx, page } = await openPage(plain);
    const r = await inPage(page, async (MiB) => {
      const entries = async () => {
        const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('sipp-models', { create: true });
        const out = [];
        for await (const [name] of dir.entries()) out.push(name);
        return out;
      };
      const small = new window.Sipp.SippClient({ threads: 'st', shardThresholdBytes: 16 * MiB, shardSizeBytes: 16 * MiB });
      let tooSmall = '';
      try { await small.add('big', { kind: 'local', source: '/models/random-135m.gguf', nCtx: 256 }); } catch (e) { tooSmall = `${e.status}: ${e.message}`; }
      const left = await entries();
      small.close();

      const c = new window.Sipp.SippClient({ threads: 'st', shardThresholdBytes: 16 * MiB, shardSizeBytes: 32 * MiB });
      const stored = [];
      const info = await c.add('big', { kind: 'local', source: '/models/random-135m.gguf', nCtx: 256,
                                        onProgress: (e) => { if (e.phase === 'store') stored.push(e.loaded); } });
      const r = await c.query('Hello', { temperature: 0, maxTokens: 6 }).response;
      const files = (await c.listLocal()).find((m) => m.id === info.cacheId).files;
      // Serve the shards back (the next test loads them as a list of URLs).
      const dir = await (await (await navigator.storage.getDirectory()).getDirectoryHandle('sipp-models')).getDirectoryHandle(info.cacheId);
      const sizes = [];
      for (const name of files) {
        const f = await (await dir.getFileHandle(name)).getFile();
        sizes.push(f.size);
        const up = await fetch(`/upload/${name}`, { method: 'PUT', body: f });
        if (up.status !== 201) throw new Error(`upload of ${name}: HTTP ${up.status}`);
      }
      return { tooSmall, left, info, r, stored: stored.length, files, sizes };
    }, MiB);
    assert.match(r.tooSmall, /^invalid_argument: GGUF: tensor 'token_embd\.weight' \(\d+ bytes.*\) does not fit in a shard of 16777216 bytes/);
    assert.deepEqual(r.left, [], 'the failed add left nothing in OPFS');
    const size = statSync(bigModel).size;
    assert.ok(size > 32 * MiB, `the model (${size} bytes) is larger than a shard`);
    assert.ok(r.info.shards >= Math.ceil(size / (32 * MiB)), `${r.info.shards} shards`);
    assert.equal(r.files.length, r.info.shards);
    assert.match(r.files[0], /^model-00001-of-0000\d\.gguf$/);
    for (const [i, n] of r.sizes.entries()) assert.ok(n <= 32 * MiB, `shard ${i + 1} is ${n} bytes, over the 32 MiB shard size`);
    for (const [i, name] of r.files.entries()) assert.equal(statSync(join(uploads, name)).size, r.sizes[i], `${name} uploaded whole`);
    assert.ok(r.stored > 0, 'store progress events');
    assert.equal(r.r.status, 'ok');
    assert.equal(r.r.text, want.text);
    await ctx.close();
  });

  test('a model given as a list of shard URLs loads and gives the native text', async () => {
    const want = native(['query', '-m', bigModel, '--temperature', '0', '-n', '6', 'Hello']);
    const shards = readdirSync(uploads).filter((n) => /^model-\d{5}-of-\d{5}\.gguf$/.test(n)).sort();
    assert.ok(shards.length > 1, 'the shards of the test above');
    const { ctx, page } = await openPage(plain); // a fresh context: an empty OPFS
    plain.log.length = 0;
    const r = await inPage(page, async (urls) => {
      const c = new window.Sipp.SippClient({ threads: 'st' });
      const phases = new Set();
      const info = await c.add('split', { kind: 'local', source: urls, nCtx: 256, onProgress: (e) => phases.add(e.phase) });
      const r = await c.query('Hello', { temperature: 0, maxTokens: 6 }).response;
      return { info, r, phases: [...phases] };
    }, shards.map((n) => `/models/${n}`));
    assert.equal(r.info.loadedFrom, 'network');
    assert.equal(r.info.shards, shards.length);
    assert.deepEqual(r.phases, ['download', 'load']);
    assert.deepEqual(plain.log.filter((l) => l.includes('/models/')), shards.map((n) => `GET /models/${n}`));
    assert.equal(r.r.status, 'ok');
    assert.equal(r.r.text, want.text);
    await ctx.close();
  });
});

describe('resumable downloads', () => {
  // Every test gets a fresh context (an empty OPFS) and a model under /dl/ scripted by
  // range-server.mjs; the stored bytes are compared with the original by SHA-256.
  const sha = (f) => createHash('sha256').update(readFileSync(f)).digest('hex');
  const rangeStart = (r) => { const m = /^bytes=(\d+)-$/.exec(r ?? ''); return m ? Number(m[1]) : null; };
  const storySize = () => statSync(join(modelsDir, STORY)).size;

  // The page has all `n` bytes the server sent before holding the connection ({stall: n}):
  // break the connection now. (A connection closed right after sending loses what Chromium had
  // buffered but not yet handed to the page: the resume point would be anywhere below n.)
  async function dropAfter(page, n) {
    await page.waitForFunction((n) => window.loaded >= n, n);
    dl.closeStalled();
  }

  // The worker writes the partial through a sync access handle; main-thread mode has none and
  // uses a writable stream (docs/browser.md).
  for (const mode of ['worker', 'main-thread']) test(`${mode} mode: a connection dropped half way is resumed with Range and If-Range; the bytes are the original`, async () => {
    const file = join(modelsDir, STORY);
    const half = Math.floor(storySize() / 2);
    const name = `drop-${mode}.gguf`;
    dl.set(name, { file, etag: '"d1"', plan: [{ stall: half }] });
    const want = native(['query', '-m', file, '--temperature', '0', '-n', '16', 'Once upon a time']);
    const { ctx, page } = await openPage(plain);
    // sha256: hashed as the bytes arrive, across the retry.
    await inPage(page, ({ mode, name, sha256 }) => window.startAdd({ threads: 'st', mode }, { kind: 'local', source: `/dl/${name}`, warmup: false, sha256 }),
                 { mode, name, sha256: sha(file) });
    await dropAfter(page, half);
    const r = await inPage(page, async () => {
      const r = await window.loading;
      const q = r.info && await window.client.query('Once upon a time', { temperature: 0, maxTokens: 16 }).response;
      return { ...r, q, events: window.events, partials: await window.partials() };
    });
    await ctx.close();
    assert.equal(r.err, undefined);
    const reqs = dl.of(name);
    assert.equal(reqs.length, 2, JSON.stringify(reqs));
    assert.equal(reqs[0].range, null);
    assert.equal(rangeStart(reqs[1].range), half, 'resumed at the first byte not received');
    assert.equal(reqs[1].ifRange, '"d1"');
    assert.equal(reqs[1].status, 206);
    assert.deepEqual(r.events.map((e) => [e.kind, e.loaded]), [['retry', half]]);
    assert.match(r.events[0].reason, /connection broke at byte \d+/);
    assert.equal(r.digest, sha(file));
    assert.deepEqual(r.partials, [], 'the partial became the cache entry');
    assert.equal(r.info.loadedFrom, 'network');
    assert.equal(r.q.text, want.text);
  });

  for (const mode of ['worker', 'main-thread']) test(`${mode} mode: retries are bounded: the add fails with transport, the partial stays, and the next add resumes it`, async () => {
    const file = join(modelsDir, STORY);
    const third = Math.floor(storySize() / 3);
    const name = `flaky-${mode}.gguf`;
    dl.set(name, { file, etag: '"f1"', plan: [{ stall: third }, { drop: 0 }] });
    const { ctx, page } = await openPage(plain);
    await inPage(page, ({ mode, name }) => window.startAdd({ threads: 'st', mode, downloadRetries: 1 }, { kind: 'local', source: `/dl/${name}`, warmup: false }), { mode, name });
    await dropAfter(page, third);
    // The resumed add verifies a sha256: the kept bytes are read back into the hash.
    const r = await inPage(page, async ({ mode, name, sha256 }) => {
      const failed = await window.loading;
      const kept = await window.partials();
      window.startAdd({ threads: 'st', mode }, { kind: 'local', source: `/dl/${name}`, warmup: false, sha256 });
      return { failed, kept, ...(await window.loading), events: window.events };
    }, { mode, name, sha256: sha(file) });
    await ctx.close();
    assert.equal(r.failed.err?.status, 'transport', JSON.stringify(r.failed));
    assert.equal(r.err, undefined, JSON.stringify(r.err));
    assert.match(r.failed.err.message, new RegExp(`failed 2 time\\(s\\) in a row .*; ${third} of ${storySize()} bytes are kept in OPFS and the next attempt resumes there$`));
    assert.equal(r.kept.length, 1);
    const kept = r.kept[0].journal;
    assert.equal(kept.bytes, third, `journal: ${JSON.stringify(kept)}`);
    assert.equal(kept.size, storySize());
    assert.equal(kept.validator, '"f1"');
    const reqs = dl.of(name);
    assert.deepEqual(reqs.map((q) => [rangeStart(q.range), q.status]), [[null, 200], [third, 206], [third, 206]]);
    assert.deepEqual(r.events.map((e) => [e.kind, e.reason, e.loaded]), [['resume', 'journal', third]]);
    assert.equal(r.digest, sha(file));
  });

  test('a page closed mid-download: a new page resumes from the journal, not from 0', async () => {
    const size = statSync(bigModel).size;
    const half = Math.floor(size / 2);
    dl.set('big.gguf', { file: bigModel, etag: '"b1"', plan: [{ stall: half }] });
    const ctx = await browser.newContext();
    const first = await openPage(plain, ctx);
    await inPage(first.page, () => {
      const c = new window.Sipp.SippClient({ threads: 'st' });
      window.loading = c.add('b', { kind: 'local', source: '/dl/big.gguf', nCtx: 256, warmup: false }).catch((e) => e.message);
    });
    // Wait until the journal counts some bytes (the server has sent half the file and holds
    // the connection open), then close the page: its worker dies mid-download.
    const journal = await inPage(first.page, async () => {
      for (let i = 0; i < 1200; i++) {
        const j = (await window.partials())[0]?.journal;
        if (j && j.bytes > 0) return j;
        await new Promise((ok) => setTimeout(ok, 100));
      }
      return { error: 'no journal with bytes after 120 s', loading: await Promise.race([window.loading, 'pending']) };
    });
    assert.ok(journal.bytes > 0, `the journal records the bytes done: ${JSON.stringify(journal)}`);
    await first.page.close();
    dl.closeStalled();
    const second = await openPage(plain, ctx);
    const r = await inPage(second.page, async (sha256) => {
      const c = new window.Sipp.SippClient({ threads: 'st' });
      const events = [];
      const info = await c.add('b', { kind: 'local', source: '/dl/big.gguf', nCtx: 256, warmup: false, sha256,
                                      onProgress: (e) => { if (e.kind) events.push(e); } });
      return { info, events, digest: await window.digestEntry(info.cacheId) };
    }, sha(bigModel));
    await ctx.close();
    const reqs = dl.of('big.gguf');
    assert.equal(reqs.length, 2, JSON.stringify(reqs));
    const from = rangeStart(reqs[1].range);
    assert.ok(from >= journal.bytes && from > 0 && from <= half, `the new page asked for bytes from ${from} (journal ${journal.bytes}, sent ${half})`);
    assert.equal(reqs[1].ifRange, '"b1"');
    assert.equal(reqs[1].status, 206);
    assert.deepEqual(r.events.map((e) => [e.kind, e.loaded]), [['resume', from]]);
    assert.equal(r.digest, sha(bigModel));
  });

  test('a server that ignores Range: the whole file again, with a restart event', async () => {
    const file = join(modelsDir, STORY);
    const half = Math.floor(storySize() / 2);
    dl.set('norange.gguf', { file, etag: '"n1"', ignoreRange: true, plan: [{ stall: half }] });
    const { ctx, page } = await openPage(plain);
    // sha256: the hash restarts with the bytes.
    await inPage(page, (sha256) => window.startAdd({ threads: 'st' }, { kind: 'local', source: '/dl/norange.gguf', warmup: false, sha256 }), sha(file));
    await dropAfter(page, half);
    const r = await inPage(page, async () => ({ ...(await window.loading), events: window.events }));
    await ctx.close();
    assert.equal(r.err, undefined);
    const reqs = dl.of('norange.gguf');
    assert.deepEqual(reqs.map((q) => [rangeStart(q.range), q.status]), [[null, 200], [half, 200]], 'a Range request answered with the whole file');
    assert.deepEqual(r.events.map((e) => [e.kind, e.loaded]), [['retry', half], ['restart', 0]]);
    assert.equal(r.events[1].reason, 'range-not-supported');
    assert.equal(r.digest, sha(file));
  });

  test('a file that changed on the server (another ETag) restarts and stores the new file', async () => {
    const oldFile = join(modelsDir, STORY), newFile = join(modelsDir, CHAT);
    const half = Math.floor(storySize() / 2);
    dl.set('changing.gguf', { file: oldFile, etag: '"c1"', plan: [{ stall: half, then: { file: newFile, etag: '"c2"' } }] });
    const { ctx, page } = await openPage(plain);
    await inPage(page, (sha256) => window.startAdd({ threads: 'st' }, { kind: 'local', source: '/dl/changing.gguf', warmup: false, sha256 }), sha(newFile));
    await dropAfter(page, half);
    const r = await inPage(page, async () => ({ ...(await window.loading), events: window.events }));
    await ctx.close();
    assert.equal(r.err, undefined);
    const reqs = dl.of('changing.gguf');
    assert.deepEqual(reqs.map((q) => [rangeStart(q.range), q.ifRange, q.status]), [[null, null, 200], [half, '"c1"', 200]]);
    assert.deepEqual(r.events.map((e) => [e.kind, e.loaded]), [['retry', half], ['restart', 0]]);
    assert.equal(r.events[1].reason, 'changed');
    assert.equal(r.digest, sha(newFile));
    assert.equal(r.info.canChat, true, 'the new file (the chat model) was loaded');
  });

  test('a file without a validator (no ETag, no Last-Modified) is not resumed: a drop restarts it from 0', async () => {
    const file = join(modelsDir, STORY);
    const half = Math.floor(storySize() / 2);
    dl.set('novalidator.gguf', { file, etag: null, plan: [{ stall: half }] });
    const { ctx, page } = await openPage(plain);
    await inPage(page, () => window.startAdd({ threads: 'st' }, { kind: 'local', source: '/dl/novalidator.gguf', warmup: false }));
    await dropAfter(page, half);
    const r = await inPage(page, async () => ({ ...(await window.loading), events: window.events }));
    await ctx.close();
    assert.equal(r.err, undefined);
    assert.deepEqual(dl.of('novalidator.gguf').map((q) => [q.range, q.ifRange]), [[null, null], [null, null]], 'no Range without a validator');
    assert.deepEqual(r.events.map((e) => [e.kind, e.kind === 'restart' ? e.reason : '']), [['retry', ''], ['restart', 'no-validator']]);
    assert.equal(r.digest, sha(file));
  });

  test('a wrong sha256 is refused and deleted; the right one is verified; a malformed one is invalid_argument', async () => {
    const file = join(modelsDir, STORY);
    dl.set('sum.gguf', { file, etag: '"s1"' });
    const { ctx, page } = await openPage(plain);
    const r = await inPage(page, async (good) => {
      const c = new window.Sipp.SippClient({ threads: 'st' });
      const out = {};
      try { await c.add('bad', { kind: 'local', source: '/dl/sum.gguf', warmup: false, sha256: '0'.repeat(64) }); out.bad = 'resolved'; } catch (e) { out.bad = `${e.status}: ${e.message}`; }
      out.partials = await window.partials();
      out.entries = await window.entries();
      try { await c.add('m', { kind: 'local', source: '/dl/sum.gguf', sha256: 'xyz' }); out.malformed = 'resolved'; } catch (e) { out.malformed = `${e.status}: ${e.message}`; }
      const phases = new Set();
      const info = await c.add('ok', { kind: 'local', source: '/dl/sum.gguf', warmup: false, sha256: good.toUpperCase(),
                                       onProgress: (e) => phases.add(e.phase) });
      out.phases = [...phases];
      out.list = (await c.listLocal()).find((m) => m.id === info.cacheId);
      return out;
    }, sha(file));
    await ctx.close();
    assert.match(r.bad, new RegExp(`^model_invalid: sha256 mismatch for .*/dl/sum\\.gguf: expected 0{64}, got ${sha(file)}; the download was deleted$`));
    assert.deepEqual(r.partials, [], 'no partial left');
    assert.deepEqual(r.entries, [], 'no cache entry');
    assert.match(r.malformed, /^invalid_argument: sha256 must be 64 hex digits/);
    assert.deepEqual(r.phases, ['download', 'verify', 'load']);
    assert.equal(r.list.sha256, sha(file));
    assert.deepEqual(dl.of('sum.gguf').map((q) => q.range), [null, null], 'two full downloads, nothing resumed');
  });

  test('a stale partial (journal older than partialMaxAgeMs, default 7 days) is expired, not resumed', async () => {
    const file = join(modelsDir, STORY);
    const half = Math.floor(storySize() / 2);
    dl.set('stale.gguf', { file, etag: '"t1"', plan: [{ stall: half }] });
    const { ctx, page } = await openPage(plain);
    await inPage(page, () => window.startAdd({ threads: 'st', downloadRetries: 0 }, { kind: 'local', source: '/dl/stale.gguf', warmup: false }));
    await dropAfter(page, half);
    const r = await inPage(page, async () => {
      const failed = await window.loading;
      const [p] = await window.partials();
      // Eight days ago: older than the default age limit.
      await window.setJournal(p.name, { ...p.journal, updatedAt: new Date(Date.now() - 8 * 86400e3).toISOString() });
      window.startAdd({ threads: 'st' }, { kind: 'local', source: '/dl/stale.gguf', warmup: false });
      return { failed, before: p.journal, ...(await window.loading), events: window.events, after: await window.partials() };
    });
    await ctx.close();
    assert.equal(r.failed.err?.status, 'transport');
    assert.equal(r.before.bytes, half, 'there was a partial to resume');
    assert.deepEqual(r.events, [], 'nothing resumed');
    assert.deepEqual(dl.of('stale.gguf').map((q) => q.range), [null, null], 'the second download started from 0');
    assert.equal(r.digest, sha(file));
    assert.deepEqual(r.after, []);
  });
});

describe('main-thread mode', () => {
  test('a main-thread client gives the native text at temperature 0, and the page runs timers while it streams', async () => {
    const want = native(['query', '-m', join(modelsDir, STORY), '--temperature', '0', '-n', '40', 'Once upon a time']);
    const { ctx, page, errors } = await openPage(plain);
    const r = await inPage(page, async () => {
      const c = new window.Sipp.SippClient({ mode: 'main-thread', threads: 'st' });
      const info = await c.add('s', { kind: 'local', source: '/models/stories260K.gguf', warmup: false });
      const onPage = typeof window.createSippModule === 'function'; // the module was loaded into the page
      const r = await c.query('Once upon a time', { temperature: 0, maxTokens: 40 }).response;
      // A long run on the page's own thread; a timer chain counts the turns the page got.
      let ticks = 0, ticking = true;
      const tick = () => { ticks++; if (ticking) setTimeout(tick, 0); };
      setTimeout(tick, 0);
      const run = c.query('Once upon a time', { temperature: 0.8, seed: 1, maxTokens: 400, ignoreEos: true });
      const seen = [];
      for await (const _ of run.tokens) seen.push(ticks);
      const long = await run.response;
      ticking = false;
      return { info, r, onPage, long, first: seen[0], last: seen[seen.length - 1], batches: seen.length };
    });
    assert.equal(r.onPage, true, 'the wasm module runs on the page');
    assert.equal(r.info.runtime.threads, 'st');
    assert.equal(r.r.status, 'ok');
    assert.equal(r.r.text, want.text);
    assert.equal(r.r.finishReason, want.finish_reason);
    assert.equal(r.long.usage.outputTokens, 400);
    assert.ok(r.batches > 1, `streamed in ${r.batches} batches`);
    assert.ok(r.last > r.first, `timers ran between the first and the last batch (ticks ${r.first} -> ${r.last})`);
    assert.deepEqual(errors, []);
    await ctx.close();
  });
});

describe('runtime selection', () => {
  test('backend auto reports the WebGPU adapter and picks the CPU, saying why', async () => {
    const { ctx, page } = await openPage(plain);
    const r = await inPage(page, async () => {
      const b = await window.Sipp.detectBackend('auto');
      const viaClient = await new window.Sipp.SippClient({ backend: 'auto' }).backend();
      let webgpuErr = '';
      try { await window.Sipp.detectBackend('webgpu'); } catch (e) { webgpuErr = e.message; }
      return { b, viaClient, webgpuErr };
    });
    // Chromium runs with --enable-unsafe-webgpu: an adapter is there (SwiftShader's, on a
    // machine without a GPU).
    assert.ok(r.b.webgpu, `the WebGPU adapter is reported (reason: ${r.b.reason})`);
    assert.ok(r.b.webgpu.vendor.length > 0, 'vendor');
    assert.ok(r.b.webgpu.architecture.length > 0, 'architecture');
    assert.equal(typeof r.b.webgpu.shaderF16, 'boolean');
    if (r.b.webgpu.architecture === 'swiftshader') {
      assert.equal(r.b.webgpu.shaderF16, false, 'SwiftShader has no shader-f16');
      assert.equal(r.b.webgpu.isFallback, true);
    }
    assert.equal(r.b.selected, 'cpu');
    assert.ok(r.b.reason.includes(`${r.b.webgpu.vendor} ${r.b.webgpu.architecture}`), r.b.reason);
    assert.match(r.b.reason, r.b.webgpu.shaderF16 ? /, shader-f16\)/ : /no shader-f16/);
    assert.match(r.b.reason, /no WebGPU inference path yet.*: using the CPU$/);
    assert.deepEqual(r.viaClient, r.b, 'SippClient.backend() gives the same report');
    assert.match(r.webgpuErr, /no WebGPU inference path/);
    await ctx.close();
  });

  test('every wasm artifact set-up was asked for (SIPP_WASM_VARIANTS) is built', () => {
    assert.ok(wasmVariants.length > 0 && wasmVariants.every((v) => v === 'st' || v === 'mt'), `SIPP_WASM_VARIANTS: ${wasmVariants}`);
    for (const v of wasmVariants) {
      for (const ext of ['js', 'wasm']) {
        const f = join(webDir, 'dist', 'wasm', `sipp-${v}.${ext}`);
        assert.ok(existsSync(f), `SIPP_WASM_VARIANTS asks for '${v}' but ${f} is missing (run scripts/setup)`);
      }
    }
  });

  test('the pthread artifact is used only when the page is cross-origin isolated',
       { skip: !wasmVariants.includes('mt') && 'SIPP_WASM_VARIANTS has no mt: the pthread artifact was not asked for' }, async () => {
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

// The compute seam's split step (web/wasm/sipp_wasm.c, docs/engine.md): sippw_step plans a batch
// and returns with the forward pending; the page reads the plan from the heap, lets the event
// loop run (the forward completes later, as a GPU's would), runs the pass-through compute and
// commits the logits; the next step samples from them. Same answers as the default backend.
describe('split step (a forward run from JavaScript)', () => {
  test('a pass-through forward committed asynchronously gives the default backend\'s text', async () => {
    const want = native(['query', '-m', join(modelsDir, STORY), '--temperature', '0', '-n', '40', 'Once upon a time']);
    const { ctx, page, errors } = await openPage(plain);
    const r = await inPage(page, async () => {
      await new Promise((ok, fail) => {
        const s = document.createElement('script');
        s.src = '/dist/wasm/sipp-st.js'; s.onload = () => ok(); s.onerror = () => fail(new Error('no sipp-st.js'));
        document.head.appendChild(s);
      });
      const mod = await window.createSippModule({ locateFile: (p) => `/dist/wasm/${p}`, print: () => {}, printErr: () => {} });
      mod.FS.writeFile('/m.gguf', new Uint8Array(await (await fetch('/models/stories260K.gguf')).arrayBuffer()));
      const cstr = (s) => { const n = mod.lengthBytesUTF8(s) + 1; const p = mod._malloc(n); mod.stringToUTF8(s, p, n); return p; };
      const path = cstr('/m.gguf');
      const opts = mod._malloc(56);
      mod.HEAPU8.fill(0, opts, opts + 56);
      let dv = new DataView(mod.HEAPU8.buffer);
      dv.setUint32(opts + 0, 40, true); // max_tokens
      dv.setFloat32(opts + 4, 0, true); // temperature
      dv.setInt32(opts + 8, 40, true);
      dv.setFloat32(opts + 12, 0.95, true);
      dv.setFloat32(opts + 16, 0.05, true);
      dv.setFloat32(opts + 20, 1.0, true);
      dv.setUint32(opts + 24, 0xffffffff, true);
      const batch = mod._malloc(16), lenp = mod._malloc(4);
      const plans = [];
      async function generate(engine, split, prompt, key) {
        dv = new DataView(mod.HEAPU8.buffer);
        dv.setUint32(opts + 52, key ? cstr(key) : 0, true); // context_key
        const run = mod._sippw_query(engine, cstr(prompt), opts);
        if (!run) throw new Error(mod.UTF8ToString(mod._sippw_last_error()));
        for (;;) {
          mod._sippw_step(engine);
          const plan = split ? mod._sippw_split_plan(split) : 0;
          if (plan) {
            dv = new DataView(mod.HEAPU8.buffer);
            const n = dv.getInt32(plan, true), nOut = dv.getInt32(plan + 4, true);
            const pos = new Int32Array(mod.HEAPU8.buffer, dv.getUint32(plan + 16, true), n);
            const seq = new Int32Array(mod.HEAPU8.buffer, dv.getUint32(plan + 20, true), n);
            plans.push({ n, nOut, first: pos[0], last: pos[n - 1], seq: seq[0] });
            await new Promise((ok) => setTimeout(ok, 0)); // the forward completes later
            const logits = mod._sippw_split_forward(split);
            mod._sippw_split_commit(split, logits ? 0 : -1, logits);
          }
          const rc = mod._sippw_run_next(run, 0, batch);
          if (rc < 0) throw new Error(mod.UTF8ToString(mod._sippw_last_error()));
          if (rc === 1 && new DataView(mod.HEAPU8.buffer).getUint32(batch + 12, true)) break;
        }
        const tp = mod._sippw_run_text(run, lenp);
        const text = mod.UTF8ToString(tp, new DataView(mod.HEAPU8.buffer).getUint32(lenp, true));
        const resp = JSON.parse(mod.UTF8ToString(mod._sippw_run_response(run)));
        mod._sippw_run_free(run);
        return { text, resp };
      }
      const ref = mod._sippw_open(path, 0, 1, 1, 0);
      const split = mod._sippw_open_split(path, 0, 1, 0);
      if (!ref || !split) throw new Error(mod.UTF8ToString(mod._sippw_last_error()));
      const engine = mod._sippw_split_engine(split);
      const out = { plans };
      out.ref = await generate(ref, 0, 'Once upon a time');
      out.split = await generate(engine, split, 'Once upon a time');
      // a warm prefix on a context key: the follow-up plans only the new tokens
      const follow = 'Once upon a time there was a girl. She';
      out.refWarm = [await generate(ref, 0, 'Once upon a time there was', 'k'), await generate(ref, 0, follow, 'k')];
      const before = plans.length;
      out.splitWarm = [await generate(engine, split, 'Once upon a time there was', 'k'), await generate(engine, split, follow, 'k')];
      out.warmPlans = plans.slice(before);
      mod._sippw_close_split(split);
      mod._sippw_close(ref);
      return out;
    });
    assert.equal(r.ref.text, want.text);
    assert.equal(r.split.text, want.text);
    assert.equal(r.split.resp.usage.outputTokens, want.usage.output_tokens);
    // the page saw the plans: the prompt in one batch from position 0, then one row per token
    const first = r.plans[0];
    assert.ok(first.n > 1 && first.nOut === 1 && first.first === 0 && first.last === first.n - 1, JSON.stringify(first));
    assert.ok(r.plans.slice(1, 5).every((p) => p.n === 1 && p.nOut === 1), JSON.stringify(r.plans.slice(1, 5)));
    for (let i = 0; i < 2; i++) assert.equal(r.splitWarm[i].text, r.refWarm[i].text);
    assert.equal(r.splitWarm[1].resp.stats.cacheSource, 'live');
    assert.equal(r.splitWarm[1].resp.stats.cachedTokens, r.refWarm[1].resp.stats.cachedTokens);
    assert.ok(r.splitWarm[1].resp.stats.cachedTokens > 0);
    assert.deepEqual(errors, []);
    await ctx.close();
  });
});
