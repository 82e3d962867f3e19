// Tests of Sipp's WebGPU pipeline (web/src/webgpu, dist/sipp-webgpu.js) in headless Chromium on
// SwiftShader (no GPU needed), against llama.cpp's CPU logits for the same GGUF from
// build/bin/sipp-logits-ref (F32 KV cache, no flash attention). Run by ctest (`browser_webgpu`,
// label `browser`) or `node --test web/test/webgpu.test.mjs`. Environment: SIPP_BIN_DIR
// (sipp-logits-ref, sipp-make-model), SIPP_TEST_MODELS_DIR, SIPP_LLAMA_SRC (the vocab files),
// SIPP_LLAMA_LIB (llama.cpp's shared libraries when they are not on the loader's path),
// SIPP_CHROMIUM.
//
// Tolerances (max |logit - llama.cpp's logit| over every row compared):
// - F32 weights: 2e-4. Both sides compute in f32 with the same operations; what differs is
//   the order of the sums (measured 9e-6 on stories260K, whose logits reach 19).
// - F16 weights: llama.cpp's CPU rounds the activations to f16 before every f16 matmul (its
//   vec_dot type); the pipeline keeps them in f32. One f16 rounding is a relative 2^-11 (5e-4)
//   of each input, so logits differ by about that fraction of their magnitude: 5e-3 * max|logit|
//   (measured 6e-4 to 8e-4 on the tiny shapes).
// - Quantized weights: the reference is llama.cpp on the same file dequantized to F32 by
//   ggml's own dequantizers (sipp-logits-ref --dequantize): the same weights, all math in f32
//   on both sides, so the F32 bound holds (2e-4) and top-1 must agree at >= 99 % of 256
//   teacher-forced positions. (Against llama.cpp on the quantized file itself the logits differ
//   by 2-4 % of max|logit| and top-1 by 5-10 % on these flat random-weight logits: there
//   llama.cpp rounds the activations to 8 bits, Q8_0/Q8_K, for its dot products.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startStatic } from './server.mjs';

const webDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(webDir, '..');
const binDir = process.env.SIPP_BIN_DIR ?? join(repo, 'build', 'bin');
const modelsDir = process.env.SIPP_TEST_MODELS_DIR ?? join(repo, '..', 'shared', 'models');
const llamaSrc = process.env.SIPP_LLAMA_SRC ?? join(process.env.SIPP_CACHE_DIR ?? join(homedir(), '.cache', 'sipp'),
  'llama.cpp', `src-${/NODE_LLAMA_CPP_VERSION=(\S+)/.exec(readFileSync(join(repo, 'scripts', 'deps.env'), 'utf8'))[1]}`);
const env = { ...process.env, SIPP_LLAMA_SRC: llamaSrc };
if (process.env.SIPP_LLAMA_LIB) env.LD_LIBRARY_PATH = [process.env.SIPP_LLAMA_LIB, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');

let tmp, server, browser, page;
const files = {};

/** Deterministic token ids in [1, n) (xorshift). */
function tokens(n, vocab, seed = 7) {
  let s = seed >>> 0 || 1;
  const out = [];
  for (let i = 0; i < n; i++) { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; out.push(1 + (s % (vocab - 1))); }
  return out;
}

function makeModel(shape, type = 'f16') {
  const out = join(tmp, `${shape}-${type}.gguf`);
  execFileSync(join(binDir, 'sipp-make-model'), ['--shape', shape, '--type', type, '--out', out], { stdio: 'ignore', env });
  files[`${shape}-${type}.gguf`] = out;
  return `${shape}-${type}.gguf`;
}

/** NAME quantized to TYPE by llama.cpp, and that file dequantized to F32 by ggml (NAME-TYPE-f32). */
function quantize(name, type) {
  const out = name.replace(/-f16\.gguf$/, `-${type}.gguf`), deq = out.replace(/\.gguf$/, '-f32.gguf');
  execFileSync(join(binDir, 'sipp-logits-ref'), ['--quantize', type, files[name], join(tmp, out)], { stdio: 'ignore', env });
  execFileSync(join(binDir, 'sipp-logits-ref'), ['--dequantize', join(tmp, out), join(tmp, deq)], { stdio: 'ignore', env });
  files[out] = join(tmp, out);
  files[deq] = join(tmp, deq);
  return { name: out, deq };
}

/** llama.cpp's logits (served as /models/NAME.ref) and greedy continuation. */
function reference(name, prompt, nGen) {
  const ref = `${name}.${nGen}.ref`;
  const r = JSON.parse(execFileSync(join(binDir, 'sipp-logits-ref'),
    ['-m', files[name] ?? join(modelsDir, name), '-t', prompt.join(','), '-g', String(nGen), '--out', join(tmp, ref)],
    { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  files[ref] = join(tmp, ref);
  return { ...r, ref };
}

/**
 * Runs the model in the page: the prompt in one forward (every row's logits; the tiled
 * prefill path), then nGen greedy tokens one forward each (the decode path), and compares with
 * the reference rows there (the logits stay in the page).
 */
function runInPage(name, ref, prompt, nGen) {
  return page.evaluate(async ({ name, ref, prompt, nGen }) => {
    const G = window.SippGpu;
    const file = new Uint8Array(await (await fetch(`/models/${name}`)).arrayBuffer());
    const m = await G.WebGpuLlama.load(window.gpuDevice, file, { nCtx: 512, nParallel: 2, nBatch: 256, nOutputs: 256 });
    try {
      const want = new Float32Array((await (await fetch(`/models/${ref}`)).arrayBuffer()).slice(8));
      const V = m.hp.nVocab;
      const am = (a) => { let b = 0; for (let i = 1; i < a.length; i++) if (a[i] > a[b]) b = i; return b; };
      const rows = [];
      const lp = await m.forward({ tokens: prompt, pos: prompt.map((_, i) => i), seq: prompt.map(() => 0) });
      for (let i = 0; i < prompt.length; i++) rows.push(lp.subarray(i * V, (i + 1) * V));
      const greedy = [];
      for (let g = 0; g < nGen; g++) {
        const t = am(rows[rows.length - 1]);
        greedy.push(t);
        if (g + 1 < nGen) rows.push(await m.forward({ tokens: [t], pos: [prompt.length + g], seq: [0] }));
      }
      let maxDiff = 0, maxAbs = 0, agree = 0;
      for (let r = 0; r < rows.length; r++) {
        const w = want.subarray(r * V, (r + 1) * V);
        for (let i = 0; i < V; i++) { maxDiff = Math.max(maxDiff, Math.abs(rows[r][i] - w[i])); maxAbs = Math.max(maxAbs, Math.abs(w[i])); }
        if (am(rows[r]) === am(w)) agree++;
      }
      return { greedy, maxDiff, maxAbs, agree, rows: rows.length, types: [...m.types].sort() };
    } finally { m.destroy(); }
  }, { name, ref, prompt, nGen });
}

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'sipp-webgpu-'));
  server = await startStatic({ webDir, modelsDirs: [modelsDir], extraFiles: files });
  browser = await chromium.launch({ executablePath: process.env.SIPP_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--enable-unsafe-webgpu'] });
  page = await browser.newPage();
  await page.goto(`${server.origin}/test/webgpu.html`);
  await page.waitForFunction(() => window.sippGpuReady === true);
  await page.evaluate(async () => {
    const { device } = await window.SippGpu.requestDevice(navigator.gpu);
    window.gpuDevice = device;
    window.gpuErrors = [];
    device.addEventListener('uncapturederror', (e) => window.gpuErrors.push(e.error.message));
  });
});

after(async () => {
  if (page) assert.deepEqual(await page.evaluate(() => window.gpuErrors), [], 'no uncaptured WebGPU error');
  await browser?.close();
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('greedy continuations equal llama.cpp (F32, F16)', () => {
  const cases = [
    // [model, make-model shape or null, tolerance: absolute, or relative to max|logit|, types]
    ['stories260K.gguf', null, { abs: 2e-4 }, ['F32']],
    ['llama-tiny', 'llama-tiny', { rel: 5e-3 }, ['F16']],   // GQA 4/2, tied, rope_freqs, base 50000
    ['qwen2-tiny', 'qwen2-tiny', { rel: 5e-3 }, ['F16']],   // QKV bias, NEOX rope
    ['qwen3-tiny', 'qwen3-tiny', { rel: 5e-3 }, ['F16']],   // QK norm, separate output
  ];
  for (const [label, shape, tol, types] of cases) {
    test(`${label}: 32 greedy tokens and every row's logits`, async () => {
      const name = shape ? makeModel(shape) : label;
      const prompt = tokens(12, shape ? 50257 : 512);
      const ref = reference(name, prompt, 32);
      const got = await runInPage(name, ref.ref, prompt, 32);
      assert.deepEqual(got.types, types);
      assert.equal(got.rows, ref.rows);
      assert.deepEqual(got.greedy, ref.greedy);
      const bound = tol.abs ?? tol.rel * got.maxAbs;
      assert.ok(got.maxDiff <= bound, `max |diff| ${got.maxDiff} > ${bound} (max |logit| ${got.maxAbs})`);
      console.log(`# ${label}: max |diff| ${got.maxDiff.toExponential(2)}, max |logit| ${got.maxAbs.toFixed(2)}, top-1 ${got.agree}/${got.rows}`);
    });
  }
});

describe('quantized types: 256 teacher-forced positions against llama.cpp', () => {
  // llama.cpp's own quantizer (sipp-logits-ref --quantize) from the F16 tiny llama; the types
  // each file holds are checked, so every block layout is exercised.
  const cases = [
    ['q8_0', ['Q8_0']],
    ['q4_0', ['Q4_0', 'Q6_K']],
    ['q4_k_m', ['Q4_K', 'Q6_K']],
    ['q5_k_m', ['Q5_K', 'Q6_K']],
    ['q6_k', ['Q6_K']],
  ];
  for (const [type, types] of cases) {
    test(`${type}: top-1 >= 99 % and logits within 2e-4 of llama.cpp on the same weights`, async () => {
      const f16 = files['llama-tiny-f16.gguf'] ? 'llama-tiny-f16.gguf' : makeModel('llama-tiny');
      const { name, deq } = quantize(f16, type);
      const prompt = tokens(256, 50257, 11);
      const ref = reference(deq, prompt, 0);
      const got = await runInPage(name, ref.ref, prompt, 0);
      console.log(`# ${type} ${got.types}: max |diff| ${got.maxDiff.toExponential(2)}, max |logit| ${got.maxAbs.toFixed(2)}, top-1 ${got.agree}/${got.rows}`);
      assert.deepEqual(got.types, types);
      assert.equal(got.rows, 256);
      assert.ok(got.agree >= 0.99 * 256, `top-1 agrees at ${got.agree} of 256 positions`);
      assert.ok(got.maxDiff <= 2e-4, `max |diff| ${got.maxDiff} > 2e-4 (max |logit| ${got.maxAbs})`);
    });
  }
});

describe('kernels and the KV cache (stories260K)', () => {
  test("the GPU kernels (workgroup matvec, tiled prefill matmul) give llama.cpp's greedy tokens", async () => {
    // CI's SwiftShader uses the barrier-free thread kernels by default; this runs the ones a GPU gets.
    const prompt = tokens(20, 512, 3);
    const ref = reference('stories260K.gguf', prompt, 16);
    const got = await page.evaluate(async ({ prompt, ref }) => {
      const G = window.SippGpu;
      const file = new Uint8Array(await (await fetch('/models/stories260K.gguf')).arrayBuffer());
      const m = await G.WebGpuLlama.load(window.gpuDevice, file, { nCtx: 128, nBatch: 64, nOutputs: 64, kernels: 'workgroup' });
      try {
        const want = new Float32Array((await (await fetch(`/models/${ref}`)).arrayBuffer()).slice(8));
        const V = m.hp.nVocab;
        const am = (a) => { let b = 0; for (let i = 1; i < a.length; i++) if (a[i] > a[b]) b = i; return b; };
        const lp = await m.forward({ tokens: prompt, pos: prompt.map((_, i) => i), seq: prompt.map(() => 0) });
        let maxDiff = 0;
        for (let i = 0; i < lp.length; i++) maxDiff = Math.max(maxDiff, Math.abs(lp[i] - want[i]));
        const greedy = [am(lp.subarray((prompt.length - 1) * V))];
        while (greedy.length < 16) {
          const l = await m.forward({ tokens: [greedy.at(-1)], pos: [prompt.length + greedy.length - 1], seq: [0] });
          greedy.push(am(l));
        }
        return { kernels: m.kernels, maxDiff, greedy };
      } finally { m.destroy(); }
    }, { prompt, ref: ref.ref });
    assert.equal(got.kernels, 'workgroup');
    assert.deepEqual(got.greedy, ref.greedy);
    assert.ok(got.maxDiff <= 2e-4, `prefill logits differ by ${got.maxDiff}`);
  });

  test('batched sequences equal sequential runs; cut, copy prefix, save and restore', async () => {
    const got = await page.evaluate(async () => {
      const G = window.SippGpu;
      const file = new Uint8Array(await (await fetch('/models/stories260K.gguf')).arrayBuffer());
      const m = await G.WebGpuLlama.load(window.gpuDevice, file, { nCtx: 64, nParallel: 4, nBatch: 32, nOutputs: 8 });
      const V = m.hp.nVocab;
      const max = (a, b) => { let d = 0; for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i])); return d; };
      const A = [1, 403, 261, 300, 280, 9, 70], Bt = [1, 33, 290, 350, 261];
      const last = async (toks, seq) => (await m.forward({ tokens: toks, pos: toks.map((_, i) => i), seq: toks.map(() => seq),
        logits: toks.map((_, i) => i === toks.length - 1) }));
      try {
        // Sequential: A alone in seq 0, B alone in seq 1.
        const la = await last(A, 0), lb = await last(Bt, 1);
        // Batched: A's prefix in seq 2 and B in seq 3 interleaved in one batch, then A's rest
        // with one decode token of B.
        m.clear(2); m.clear(3);
        const b1 = await m.forward({ tokens: [...A.slice(0, 4), ...Bt], pos: [0, 1, 2, 3, 0, 1, 2, 3, 4], seq: [2, 2, 2, 2, 3, 3, 3, 3, 3],
          logits: [0, 0, 0, 0, 0, 0, 0, 0, 1] });
        const b2 = await m.forward({ tokens: [...A.slice(4)], pos: [4, 5, 6], seq: [2, 2, 2], logits: [0, 0, 1] });
        // Cut seq 0 back to 4 and redo the tail: the same logits.
        m.cut(0, 4);
        const lcut = await m.forward({ tokens: A.slice(4), pos: [4, 5, 6], seq: [0, 0, 0], logits: [0, 0, 1] });
        // Copy seq 0's first 4 positions into seq 3 and continue there.
        m.copyPrefix(0, 3, 4);
        const lcopy = await m.forward({ tokens: A.slice(4), pos: [4, 5, 6], seq: [3, 3, 3], logits: [0, 0, 1] });
        // Save seq 0, clear it, restore it into seq 1, continue with one more token.
        const bytes = await m.save(0);
        const next = await m.forward({ tokens: [5], pos: [7], seq: [0] });
        m.clear(0);
        m.restore(1, bytes);
        const restored = await m.forward({ tokens: [5], pos: [7], seq: [1] });
        let badRestore = '';
        try { m.restore(1, bytes.subarray(0, 10)); } catch (e) { badRestore = String(e.message); }
        let gap = '';
        try { await m.forward({ tokens: [5], pos: [9], seq: [2] }); } catch (e) { gap = String(e.message); }
        return { batched: max(b1, lb), batched2: max(b2, la), cut: max(lcut, la), copy: max(lcopy, la), restore: max(restored, next),
                 n: bytes.byteLength, len: m.seqLen.slice(), badRestore, gap, V };
      } finally { m.destroy(); }
    });
    // The same operations in another order: only the sums' order may differ (none here: each
    // row is computed alone), so the logits are equal to within f32 noise.
    for (const k of ['batched', 'batched2', 'cut', 'copy', 'restore']) assert.ok(got[k] <= 1e-5, `${k}: logits differ by ${got[k]}`);
    assert.deepEqual(got.len, [0, 8, 7, 7]);
    assert.match(got.badRestore, /do not match/);
    assert.match(got.gap, /leaves a gap/);
  });
});
