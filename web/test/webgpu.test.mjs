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
