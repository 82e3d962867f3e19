// Browser tests of routing in @sipp/web (docs/routing.md, "In the browser"), in headless
// Chromium like browser.test.mjs: the estimates of a local endpoint (the C engine in the
// single-thread wasm artifact) and of a gateway endpoint (the real sipp-gateway from
// SIPP_BIN_DIR, and an unreachable one), the policy's rules (the cases of
// tests/api/test_routing.c, whose C policy the TypeScript one ports), draft-then-audit and the
// never-switch-a-stream guarantee (a scripted gateway, fake-gateway.mjs, whose 'fail' prompt
// breaks a stream after its first token: a real gateway does not on demand).
// Environment: as browser.test.mjs (SIPP_BIN_DIR, SIPP_TEST_MODELS_DIR, SIPP_CHROMIUM,
// SIPP_WASM_VARIANTS: the pthread artifact's test runs when it lists mt).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
const CHAT = 'tinystories-instruct-3m-soda-chat-Q4_0.gguf';
const wasmVariants = (process.env.SIPP_WASM_VARIANTS ?? 'st mt').trim().split(/\s+/);

let browser, server, tmp, ctx, page;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sipp-web-routing-'));
  server = await startStatic({ webDir, modelsDirs: [modelsDir] });
  browser = await chromium.launch({ executablePath: process.env.SIPP_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
  ctx = await browser.newContext();
  page = await ctx.newPage();
  await page.goto(`${server.origin}/test/test.html`);
  await page.waitForFunction(() => window.sippReady === true);
  // Synthetic estimates as tests/api/test_routing.c builds them (local_est, remote_est).
  await page.evaluate(() => {
    const unknown = { value: 0, samples: 0, source: 'unknown' };
    const base = {
      local: false, loaded: true, healthy: true, promptTokens: 0, cachedTokens: 0, cacheSource: 'none',
      cacheOnDisk: false, prefillTokens: 0, nCtx: 0, running: 0, queued: 0, freeSlots: 0, ttftMs: unknown,
      decodeTokensPerS: unknown, totalMs: unknown, priceInputPerMtok: unknown, priceOutputPerMtok: unknown,
      errorRate: unknown, busyRate: unknown,
    };
    window.localEst = (prompt, cached, ttft, nCtx) => ({
      ...base, local: true, promptTokens: prompt, cachedTokens: cached, cacheSource: cached ? 'live' : 'none',
      prefillTokens: prompt - cached, nCtx, freeSlots: 1,
      ttftMs: ttft >= 0 ? { value: ttft, samples: 5, source: 'predicted' } : unknown,
    });
    window.remoteEst = (ttft, pin, pout, healthy) => ({
      ...base, healthy,
      ttftMs: ttft >= 0 ? { value: ttft, samples: 10, source: 'measured' } : unknown,
      ...(pin >= 0 ? { priceInputPerMtok: { value: pin, samples: 0, source: 'configured' },
                       priceOutputPerMtok: { value: pout, samples: 0, source: 'configured' } } : {}),
    });
    // choose() over candidates named first, second, third (endpoints a, b, c): [index, reasons]
    window.choose = (rules, ests, tags, maxTokens) => {
      const ch = new window.Sipp.Policy(rules).choose(
        ests.map((estimate, i) => ({ endpoint: 'abc'[i], estimate, name: ['first', 'second', 'third'][i] })), { tags, maxTokens });
      if ((ch.index >= 0) !== (ch.endpoint !== null) || (ch.index >= 0 && ch.endpoint !== 'abc'[ch.index])) throw new Error('endpoint and index disagree');
      return [ch.index, ch.reasons];
    };
  });
});

after(async () => {
  await ctx?.close();
  await browser?.close();
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the policy (the rule cases of tests/api/test_routing.c)', () => {
  test('each rule: filters, preferences, the default, no route, and the reasons with their figures', async () => {
    const r = await page.evaluate(() => {
      const { choose, localEst: L, remoteEst: R } = window;
      const out = {};
      out.none = choose([], [L(100, 0, 500, 2048), R(300, 3, 15, true)], [], 64);
      const priv = [['local_only_tag', 'private'], 'fit_context'];
      const big = [L(3000, 0, 500, 2048), R(300, 3, 15, true)];
      out.privTagged = choose(priv, big, ['private'], 64);
      out.privUntagged = choose(priv, big, [], 64);
      const sick = [L(10, 0, 50, 2048), R(100, 1, 1, false), R(100, 1, 1, true)];
      sick[0].freeSlots = 0;
      sick[0].queued = 2;
      out.skip = choose([['skip_unavailable', 2]], sick, [], 16);
      sick[0].queued = 1;
      out.skipUnder = choose([['skip_unavailable', 2]], sick, [], 16);
      const unloaded = L(10, 0, 50, 2048);
      unloaded.loaded = false;
      out.skipUnloaded = choose(['skip_unavailable'], [unloaded, R(100, 1, 1, true)], [], 16);
      out.ttft = choose([['max_ttft_ms', 400]], [L(100, 0, 900, 2048), R(-1, 3, 15, true)], [], 16);
      out.cost = choose([['max_cost', 0.01]], [R(100, 3, 15, true), L(1000, 0, 900, 4096)], [], 1000);
      const w = [R(100, 3, 15, true), L(1000, 800, 400, 4096)];
      out.warm = choose([['prefer_warm', 0.5]], w, [], 16);
      w[1].cachedTokens = 300;
      out.lukewarm = choose([['prefer_warm', 0.5]], w, [], 16);
      const u = [R(100, 3, 15, true), L(100, 0, 200, 4096)];
      out.under = choose([['prefer_local_under_ttft', 300]], u, [], 16);
      u[1].ttftMs = { ...u[1].ttftMs, value: 350 };
      out.over = choose([['prefer_local_under_ttft', 300]], u, [], 16);
      u[1].ttftMs = { value: 0, samples: 0, source: 'unknown' };
      out.unknownTtft = choose([['prefer_local_under_ttft', 300]], u, [], 16);
      const ch = [R(100, 3, 15, true), R(100, 0.1, 0.4, true), L(100, 0, 200, 4096)];
      out.cheapest = choose(['prefer_cheapest'], ch, [], 16);
      out.cheapestNoCount = choose(['prefer_cheapest'], ch.slice(0, 2), [], 16);
      out.cheapestRemotes = choose(['prefer_cheapest'], [R(100, 3, 15, true), R(100, 0.1, 0.4, true), L(100, 0, 200, 4096)].map((e, i) => (i === 2 ? { ...e, priceInputPerMtok: { value: 50, samples: 0, source: 'configured' }, priceOutputPerMtok: { value: 50, samples: 0, source: 'configured' } } : e)), [], 16);
      out.order = choose([['prefer_warm', 0.1], ['local_only_tag', 'private']], [R(100, 3, 15, true), L(100, 90, 200, 4096)], ['private'], 16);
      out.afterRun = choose([['escalate_low_confidence', 0.9]], [R(100, 3, 15, true), L(100, 0, 50, 4096)], [], 16);
      return out;
    });
    assert.deepEqual(r.none, [0, 'default: chose first, the first candidate left\n']);
    // privacy: a tagged request never leaves the machine, even when local is dropped
    assert.equal(r.privTagged[0], -1);
    assert.equal(r.privTagged[1],
      "rule 1 local_only_tag: dropped second: the request is tagged 'private' and the endpoint is remote\n" +
      'rule 2 fit_context: dropped first: 3000 prompt + 64 max tokens > n_ctx 2048\n' +
      'no candidate is left\n');
    assert.equal(r.privUntagged[0], 1, 'untagged: escalates');
    assert.equal(r.skip[0], 2);
    assert.match(r.skip[1], /rule 1 skip_unavailable: dropped first: no free sequence and 2 queued \(limit 2\)/);
    assert.match(r.skip[1], /rule 1 skip_unavailable: dropped second: unhealthy/);
    assert.equal(r.skipUnder[0], 0, 'under the queue limit: kept');
    assert.equal(r.skipUnloaded[0], 1);
    assert.match(r.skipUnloaded[1], /dropped first: the model is not loaded/);
    assert.equal(r.ttft[0], 1, 'a TTFT budget: above it is dropped, unknown passes');
    assert.match(r.ttft[1], /rule 1 max_ttft_ms: dropped first: TTFT 900 ms predicted over 5 > 400 ms/);
    assert.equal(r.cost[0], 1, '1,000 in + 1,000 out at 3/15 per M = 0.018 > 0.01');
    assert.match(r.cost[1], /rule 1 max_cost: dropped first: expected cost 0\.018 > 0\.01\n/);
    assert.equal(r.warm[0], 1);
    assert.match(r.warm[1], /rule 1 prefer_warm: chose second: 800 of 1000 prompt tokens cached \(live\) >= 50%/);
    assert.equal(r.lukewarm[0], 0, '30 %: not warm enough, the order decides');
    assert.equal(r.under[0], 1);
    assert.match(r.under[1], /rule 1 prefer_local_under_ttft: chose second: TTFT 200 ms predicted over 5 < 300 ms/);
    assert.equal(r.over[0], 0);
    assert.equal(r.unknownTtft[0], 0, 'an unknown local TTFT never qualifies');
    assert.equal(r.cheapest[0], 2, 'a local without a price costs 0');
    assert.match(r.cheapest[1], /rule 1 prefer_cheapest: chose third: expected cost 0\n/);
    assert.deepEqual(r.cheapestNoCount, [0, 'default: chose first, the first candidate left\n'],
      'two remotes and no local to count the prompt: their costs are unknown');
    assert.equal(r.cheapestRemotes[0], 1, "a local count prices the remotes: 100 in + 16 out at 0.1/0.4");
    assert.equal(r.order[0], 1, 'filters act before preferences wherever they are listed');
    assert.match(r.order[1], /^rule 2 local_only_tag: dropped first/);
    assert.deepEqual(r.afterRun, [0, 'default: chose first, the first candidate left\n'], 'escalate_low_confidence acts after a run');
  });

  test('bad rules and bad candidates are clear errors', async () => {
    const r = await page.evaluate(() => {
      const err = (f) => { try { f(); return null; } catch (e) { return `${e.status}: ${e.message}`; } };
      const P = window.Sipp.Policy;
      const ok = new P(['fit_context']);
      return [
        err(() => new P([['nonsense', 1]])), err(() => new P([['max_ttft_ms', -1]])),
        err(() => new P([['prefer_warm', 1.5]])), err(() => new P(['local_only_tag'])),
        err(() => new P([['escalate_low_confidence', 0]])), err(() => new P([['escalate_low_confidence', 1.5]])),
        err(() => new P('fit_context')), err(() => ok.choose([])),
        err(() => ok.choose([{ endpoint: '', estimate: window.localEst(10, 0, 1, 100) }])),
        err(() => ok.choose([{ endpoint: 'a' }])),
        // an app-built estimate with missing or malformed fields: unknown, never a crash
        ok.choose([{ endpoint: 'a', estimate: { local: true, promptTokens: 'x', ttftMs: { value: NaN, source: 'measured' } } }]).endpoint,
      ];
    });
    assert.match(r[0], /^invalid_argument: rule 0: unknown kind "nonsense"/);
    assert.equal(r[1], 'invalid_argument: rule 0 (max_ttft_ms): value must be a finite number >= 0');
    assert.equal(r[2], 'invalid_argument: rule 0 (prefer_warm): value is a fraction of the prompt, in [0, 1]');
    assert.equal(r[3], 'invalid_argument: rule 0 (local_only_tag): the tag is required');
    assert.match(r[4], /escalate_low_confidence\): value is a probability, in \(0, 1\]/);
    assert.match(r[5], /escalate_low_confidence\): value is a probability, in \(0, 1\]/);
    assert.equal(r[6], 'invalid_argument: rules must be an array');
    assert.equal(r[7], 'invalid_argument: 1 to 64 candidates are required');
    assert.equal(r[8], 'invalid_argument: candidate 0 needs an endpoint and an estimate');
    assert.equal(r[9], 'invalid_argument: candidate 0 needs an endpoint and an estimate');
    assert.equal(r[10], 'a');
  });

  test('the draft check: confidence, each outcome and retry safety (synthetic responses)', async () => {
    const r = await page.evaluate(() => {
      const { Policy, responseConfidence } = window.Sipp;
      const pol = (t) => new Policy(t > 0 ? [['local_only_tag', 'private'], ['escalate_low_confidence', t]] : [['local_only_tag', 'private']]);
      // probabilities 0.8 and 0.2: geometric mean 0.4, least likely 0.2
      const draft = { status: 'ok', errorMessage: '', text: 'ab', finishReason: 'stop',
                      usage: { inputTokens: 1, outputTokens: 2, totalTokens: 3 }, logprobs: [Math.log(0.8), Math.log(0.2)] };
      const bare = { ...draft, logprobs: undefined };
      const broke = { ...draft, status: 'transport' };
      const refused = { status: 'overloaded', errorMessage: 'busy', text: '', finishReason: 'none', usage: { inputTokens: 0, outputTokens: 0, totalTokens: 0 } };
      const d = (p, x) => { const v = p.checkDraft(x); return [v.outcome, v.retrySafe, v.reasons]; };
      return {
        conf: responseConfidence(draft), bareConf: responseConfidence(bare).confidence,
        none: d(pol(0), draft), lax: d(pol(0.3), draft), strict: d(pol(0.5), draft), bare: d(pol(0.3), bare),
        broke: d(pol(0.3), broke), refused: d(pol(0.3), refused),
      };
    });
    assert.ok(Math.abs(r.conf.confidence - 0.4) < 1e-9 && Math.abs(r.conf.minProb - 0.2) < 1e-9 && r.conf.nTokens === 2);
    assert.ok(Number.isNaN(r.bareConf), 'NaN: no log-probabilities');
    assert.deepEqual(r.none, ['draft', false, 'no escalate_low_confidence rule: the draft stands\n']);
    assert.equal(r.lax[0], 'draft');
    assert.match(r.lax[2], /confidence 0\.400/);
    assert.equal(r.strict[0], 'escalated');
    assert.equal(r.strict[2], 'rule 2 escalate_low_confidence: escalate: confidence 0.400 (geometric mean token probability over 2 tokens, least likely 0.2) < 0.5\n');
    assert.equal(r.bare[0], 'escalated');
    assert.match(r.bare[2], /unknown/);
    assert.deepEqual(r.broke.slice(0, 2), ['draft_failed', false], 'failed after its output began: not sent elsewhere');
    assert.deepEqual(r.refused.slice(0, 2), ['draft_failed', true], 'failed before any output token: the app may');
  });
});

describe('estimates', () => {
  let gw;
  before(async () => {
    gw = await startRealGateway({ binDir, model: join(modelsDir, CHAT), origins: [server.origin], tmp });
    await page.evaluate(async () => {
      window.client = new window.Sipp.SippClient({ threads: 'st' });
      await window.client.add('story', { kind: 'local', source: '/models/stories260K.gguf' });
      await window.client.add('chat', { kind: 'local', source: '/models/tinystories-instruct-3m-soda-chat-Q4_0.gguf', warmup: false });
    });
  });
  after(async () => { await gw?.close(); });

  test('local: exact tokens, the cached prefix of a warm key (cold before), load, TTFT unknown then predicted', async () => {
    const r = await page.evaluate(async () => {
      const c = window.client;
      const o = { endpoint: 'story', temperature: 0, maxTokens: 8, contextKey: 'doc-1' };
      const first = 'Once upon a time there was a little girl named Lily.';
      const cold = await c.estimate(first, o);
      const run1 = await c.query(first, o).response;
      const follow = `${first}${run1.text} She liked`;
      const warm = await c.estimate(follow, o);
      const run2 = await c.query(follow, o).response;
      const otherKey = await c.estimate(follow, { ...o, contextKey: 'doc-2' });
      const noKey = await c.estimate(follow, { endpoint: 'story' });
      // the load: a long run in flight on the one sequence
      const long = c.query('Once upon a time', { endpoint: 'story', maxTokens: Math.min(400, cold.nCtx - 16), ignoreEos: true });
      const busy = await c.estimate('Once upon a time', { endpoint: 'story' });
      long.cancel();
      await long.response;
      await c.setPrices('story', 0, 0.5);
      const priced = await c.estimate('Once upon a time', { endpoint: 'story' });
      const msgs = [{ role: 'user', content: 'Do you like to play outside?' }];
      const chatEst = await c.estimate(msgs, { endpoint: 'chat' });
      const chatRun = await c.chat(msgs, { endpoint: 'chat', maxTokens: 4, temperature: 0 }).response;
      const err = async (f) => { try { await f(); return null; } catch (e) { return `${e.status}: ${e.message}`; } };
      const bad = [await err(() => c.estimate('', { endpoint: 'story' })), await err(() => c.estimate([], { endpoint: 'story' })),
                   await err(() => c.estimate('hi', { endpoint: 'nope' })),
                   await err(() => c.estimate([{ role: 'robot', content: 'x' }], { endpoint: 'chat' })),
                   await err(() => c.setPrices('story', NaN, 1))];
      return { cold, run1, warm, run2, otherKey, noKey, busy, priced, chatEst, chatRun, bad };
    });
    const { cold, warm } = r;
    assert.deepEqual([cold.local, cold.loaded, cold.healthy], [true, true, true]);
    assert.ok(cold.promptTokens > 8, `${cold.promptTokens} prompt tokens`);
    assert.equal(cold.cachedTokens, 0);
    assert.equal(cold.cacheSource, 'none');
    assert.equal(cold.prefillTokens, cold.promptTokens);
    assert.deepEqual([cold.running, cold.queued, cold.freeSlots], [0, 0, 1]);
    assert.ok(cold.nCtx > cold.promptTokens);
    // nothing measured yet (the load-time warm-up is not the app's request): nothing made up
    assert.deepEqual(cold.ttftMs, { value: 0, samples: 0, source: 'unknown' });
    assert.equal(cold.decodeTokensPerS.source, 'unknown');
    assert.equal(cold.errorRate.source, 'unknown');
    assert.equal(cold.priceInputPerMtok.source, 'unknown');
    // the run that follows counts the same tokens and finds what the estimate said
    assert.equal(r.run1.usage.inputTokens, cold.promptTokens);
    assert.equal(r.run1.stats.cachedTokens, cold.cachedTokens);
    // a follow-up on the key: the first prompt and its answer are live in the sequence
    assert.equal(warm.cacheSource, 'live');
    assert.ok(warm.cachedTokens >= cold.promptTokens, `${warm.cachedTokens} cached of ${warm.promptTokens}`);
    assert.equal(warm.prefillTokens, warm.promptTokens - warm.cachedTokens);
    assert.equal(warm.ttftMs.source, 'predicted');
    assert.ok(warm.ttftMs.value > 0);
    assert.equal(warm.ttftMs.samples, 1);
    assert.equal(warm.decodeTokensPerS.source, 'measured');
    assert.equal(warm.totalMs.source, 'measured');
    assert.deepEqual(warm.errorRate, { value: 0, samples: 1, source: 'measured' });
    assert.deepEqual(warm.busyRate, { value: 0, samples: 1, source: 'measured' });
    assert.equal(r.run2.stats.cacheSource, 'live');
    assert.equal(r.run2.stats.cachedTokens, warm.cachedTokens, 'the estimate was right');
    assert.equal(r.otherKey.cachedTokens, 0, 'another key finds nothing');
    assert.equal(r.noKey.cachedTokens, 0, 'no key finds nothing');
    // a run in flight: no free sequence, the wait is in the predicted TTFT
    assert.equal(r.busy.freeSlots, 0);
    assert.equal(r.busy.running + r.busy.queued, 1);
    assert.equal(r.busy.ttftMs.source, 'predicted');
    assert.equal(r.priced.freeSlots, 1);
    assert.ok(r.busy.ttftMs.value > r.priced.ttftMs.value, 'waiting for the sequence is predicted on top of the prefill');
    assert.deepEqual(r.priced.priceInputPerMtok, { value: 0, samples: 0, source: 'configured' });
    assert.deepEqual(r.priced.priceOutputPerMtok, { value: 0.5, samples: 0, source: 'configured' });
    assert.equal(r.priced.errorRate.samples, 2, 'the cancelled run is not counted');
    // a chat is estimated with the template rendered, as the run counts it
    assert.equal(r.chatEst.promptTokens, r.chatRun.usage.inputTokens);
    assert.equal(r.bad[0], 'invalid_argument: estimate: the prompt is empty');
    assert.equal(r.bad[1], 'invalid_argument: estimate: no messages');
    assert.equal(r.bad[2], "not_found: no endpoint 'nope'");
    assert.match(r.bad[3], /^invalid_argument: chat: message 0 has unknown role 'robot'/);
    assert.match(r.bad[4], /^invalid_argument: prices must be numbers/);
  });

  test('gateway: moving averages of this client\'s requests to sipp-gateway with a count, prices, busy share; an unreachable one turns unhealthy', async () => {
    const r = await page.evaluate(async ({ url, token, limited }) => {
      const c = new window.Sipp.SippClient();
      await c.add('gw', { kind: 'gateway', baseUrl: url, target: 'tiny', authentication: { kind: 'bearer', token } });
      await c.add('lim', { kind: 'gateway', baseUrl: url, target: 'tiny', authentication: { kind: 'bearer', token: limited } });
      await c.add('down', { kind: 'gateway', baseUrl: 'http://127.0.0.1:9', target: 'tiny' });
      const msgs = [{ role: 'user', content: 'Do you like to play outside?' }];
      const before = await c.estimate(msgs, { endpoint: 'gw' });
      await c.setPrices('gw', 3, 15);
      const runs = [];
      for (let i = 0; i < 2; i++) runs.push(await c.chat(msgs, { endpoint: 'gw', maxTokens: 8, temperature: 0 }).response);
      const after = await c.estimate(msgs, { endpoint: 'gw' });
      // one request a minute for this caller: of two in a row, at least the second is refused
      const lim = [];
      for (let i = 0; i < 2; i++) lim.push((await c.query('Once upon a time', { endpoint: 'lim', maxTokens: 2 }).response).status);
      const limEst = await c.estimate('x', { endpoint: 'lim' });
      const down = [];
      for (let i = 0; i < 3; i++) {
        const s = (await c.query('hi', { endpoint: 'down', maxTokens: 2 }).response).status;
        down.push([s, (await c.estimate('hi', { endpoint: 'down' })).healthy]);
      }
      const downEst = await c.estimate('hi', { endpoint: 'down' });
      const choice = new window.Sipp.Policy([['skip_unavailable', 4]]).choose([['down', downEst], ['gw', after]]);
      return { before, runs, after, lim, limEst, down, downEst, choice };
    }, { url: gw.url, token: REAL_TOKEN, limited: LIMITED_TOKEN });
    const { before, after } = r;
    assert.deepEqual([before.local, before.loaded, before.healthy, before.promptTokens, before.nCtx], [false, true, true, 0, 0]);
    for (const k of ['ttftMs', 'totalMs', 'decodeTokensPerS', 'errorRate', 'busyRate', 'priceInputPerMtok']) {
      assert.equal(before[k].source, 'unknown', `${k} before any request`);
    }
    for (const x of r.runs) assert.equal(x.status, 'ok', x.errorMessage);
    const mean = (f) => (f(r.runs[0]) + f(r.runs[1])) / 2; // two samples: a plain mean
    assert.equal(after.ttftMs.source, 'measured');
    assert.equal(after.ttftMs.samples, 2);
    assert.ok(Math.abs(after.ttftMs.value - mean((x) => x.stats.ttftMs)) < 1e-6);
    assert.equal(after.totalMs.samples, 2);
    assert.ok(Math.abs(after.totalMs.value - mean((x) => x.stats.totalMs)) < 1e-6);
    assert.ok(after.totalMs.value >= after.ttftMs.value);
    assert.deepEqual(after.errorRate, { value: 0, samples: 2, source: 'measured' });
    assert.deepEqual(after.busyRate, { value: 0, samples: 2, source: 'measured' });
    assert.deepEqual(after.priceInputPerMtok, { value: 3, samples: 0, source: 'configured' });
    assert.deepEqual(after.priceOutputPerMtok, { value: 15, samples: 0, source: 'configured' });
    assert.equal(after.healthy, true);
    assert.equal(r.lim[1], 'rate_limited');
    assert.ok(r.limEst.busyRate.value >= 0.5 && r.limEst.busyRate.samples === 2, JSON.stringify(r.limEst.busyRate));
    assert.equal(r.limEst.errorRate.value, 0, 'refused as busy is not a failure');
    assert.deepEqual(r.down, [['transport', true], ['transport', true], ['transport', false]], 'three failures in a row');
    assert.deepEqual(r.downEst.errorRate, { value: 1, samples: 3, source: 'measured' });
    assert.equal(r.choice.endpoint, 'gw');
    assert.match(r.choice.reasons, /rule 1 skip_unavailable: dropped down: unhealthy/);
  });
});

// The pthread artifact: runs end on the engine thread, which feeds the signals there.
test('the pthread artifact estimates alike: cold, then warm with measured signals', { skip: !wasmVariants.includes('mt') && 'SIPP_WASM_VARIANTS has no mt' }, async () => {
  const iso = await startStatic({ webDir, modelsDirs: [modelsDir], isolated: true });
  const c2 = await browser.newContext();
  try {
    const p2 = await c2.newPage();
    await p2.goto(`${iso.origin}/test/test.html`);
    await p2.waitForFunction(() => window.sippReady === true);
    const r = await p2.evaluate(async () => {
      const c = new window.Sipp.SippClient({ threads: 'mt' });
      const info = await c.add('story', { kind: 'local', source: '/models/stories260K.gguf' });
      const o = { endpoint: 'story', temperature: 0, maxTokens: 8, contextKey: 'doc-1' };
      const first = 'Once upon a time there was a little girl named Lily.';
      const cold = await c.estimate(first, o);
      const run = await c.query(first, o).response;
      const warm = await c.estimate(`${first}${run.text} She liked`, o);
      return { threads: info.runtime.threads, cold, warm };
    });
    assert.equal(r.threads, 'mt');
    assert.equal(r.cold.cachedTokens, 0);
    assert.equal(r.cold.ttftMs.source, 'unknown');
    assert.equal(r.warm.cacheSource, 'live');
    assert.ok(r.warm.cachedTokens >= r.cold.promptTokens);
    assert.equal(r.warm.ttftMs.source, 'predicted');
    assert.deepEqual(r.warm.errorRate, { value: 0, samples: 1, source: 'measured' });
  } finally {
    await c2.close();
    await iso.close();
  }
});

describe('never switching a stream; draft-then-audit', () => {
  let fake;
  before(async () => {
    fake = await startFakeGateway(server.origin);
    await page.evaluate(async ({ url, token }) => {
      const c = window.client;
      for (const [id, target] of [['flaky', 'a'], ['spare', 'b']]) {
        await c.add(id, { kind: 'gateway', baseUrl: url, target, authentication: { kind: 'bearer', token } });
      }
    }, { url: fake.url, token: TOKEN });
  });
  after(async () => { await fake?.close(); });

  test('a stream that breaks after its first token fails on its endpoint: nothing is sent elsewhere', async () => {
    const r = await page.evaluate(async () => {
      const c = window.client;
      const msgs = [{ role: 'user', content: 'fail' }];
      const pol = new window.Sipp.Policy(['skip_unavailable']);
      const ch = pol.choose([['flaky', await c.estimate(msgs, { endpoint: 'flaky' })], ['spare', await c.estimate(msgs, { endpoint: 'spare' })]]);
      const run = c.chat(msgs, { endpoint: ch.endpoint, maxTokens: 8 });
      const pieces = [];
      for await (const t of run.tokens) pieces.push(t);
      return { chosen: ch.endpoint, r: await run.response, pieces, est: await c.estimate(msgs, { endpoint: 'flaky' }) };
    });
    assert.equal(r.chosen, 'flaky');
    assert.deepEqual(r.pieces, ['par']);
    assert.equal(r.r.status, 'upstream_error');
    assert.equal(r.r.text, 'par', 'the failed run, as it was');
    const models = fake.seen.map((s) => JSON.parse(s.body).model);
    assert.deepEqual(models, ['a'], 'one request, to the chosen endpoint only');
    assert.deepEqual(r.est.errorRate, { value: 1, samples: 1, source: 'measured' }, 'the failure is in its signals');
  });

  test('draft-then-audit: a confident local draft stands; an unsure one goes with the draft to the gateway, whose stream alone the caller sees', async () => {
    fake.seen.length = 0;
    const r = await page.evaluate(async () => {
      const c = window.client;
      const { Policy, responseConfidence } = window.Sipp;
      const msgs = [{ role: 'user', content: 'What did the cat see in the garden?' }];
      const o = { temperature: 0, maxTokens: 12 };
      const ref = await c.chat(msgs, { ...o, endpoint: 'chat', logprobs: true }).response;
      const conf = responseConfidence(ref).confidence;
      const pol = (t) => new Policy([['local_only_tag', 'private'], ['escalate_low_confidence', t]]);
      const read = async (run) => { const p = []; for await (const t of run.tokens) p.push(t); return { pieces: p, r: await run.response }; };
      const lax = await c.draftThenAudit(pol(conf * 0.9), 'chat', 'spare', msgs, { ...o, contextKey: 'file:garden.txt' });
      const laxRun = await read(lax.run);
      const strict = await c.draftThenAudit(pol((conf + 1) / 2), 'chat', 'spare', msgs, { ...o, contextKey: 'file:garden.txt' });
      const strictRun = await read(strict.run);
      const bare = await c.draftThenAudit(pol((conf + 1) / 2), 'chat', 'spare', msgs, { ...o, sendDraft: false });
      await bare.run.response;
      const err = async (f) => { try { await f(); return null; } catch (e) { return `${e.status}: ${e.message}`; } };
      const refused = await c.draftThenAudit(pol(0.5), 'chat', 'spare', msgs, { ...o, maxTokens: 0 });
      return { ref, conf, lax: { d: lax.decision, ...laxRun }, strict: { d: strict.decision, ...strictRun }, 
               refused: { run: refused.run, d: refused.decision },
               gwDraft: await err(() => c.draftThenAudit(pol(0.5), 'spare', 'chat', msgs, o)) };
    });
    assert.ok(r.ref.logprobs.length > 0 && r.conf > 0 && r.conf < 1, `confidence ${r.conf}`);
    assert.equal(r.lax.d.outcome, 'draft');
    assert.ok(Math.abs(r.lax.d.confidence - r.conf) < 1e-6);
    assert.equal(r.lax.r.text, r.ref.text, 'the draft is the answer');
    assert.equal(fake.seen.filter((s) => s.path === '/v1/chat').length, 2, 'the confident draft did not reach the gateway; the two escalations did');
    assert.equal(r.strict.d.outcome, 'escalated');
    assert.match(r.strict.d.reasons, /rule 2 escalate_low_confidence: escalate: confidence .* < .*\nescalated to the target with the draft\n$/);
    assert.equal(r.strict.r.text, 'Hello world');
    assert.deepEqual(r.strict.pieces, ['Hel', 'lo', ' wor', 'ld'], 'the caller sees the target\'s stream, nothing of the draft');
    const withDraft = JSON.parse(fake.seen[0].body);
    assert.equal(withDraft.messages[0].content, 'What did the cat see in the garden?');
    assert.ok(withDraft.messages[1].content.startsWith('A quick draft answer') && withDraft.messages[1].content.endsWith(`Draft:\n${r.ref.text}`));
    assert.ok(!fake.seen[0].body.includes('garden.txt'), 'no local cache hint goes to the gateway');
    assert.equal(JSON.parse(fake.seen[1].body).messages.length, 1, 'sendDraft false: the question only');
    assert.equal(r.refused.run, null);
    assert.equal(r.refused.d.outcome, 'draft_failed');
    assert.equal(r.refused.d.retrySafe, true);
    assert.equal(fake.seen.length, 2, 'a refused draft is not sent elsewhere');
    assert.match(r.gwDraft, /^invalid_argument: draftThenAudit: the draft endpoint must be local/);
  });
});
