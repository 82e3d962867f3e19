// bench/browser/run.mjs: Sipp's WebAssembly runtime in headless Chromium against the native
// library and against wllama (web/node_modules/@wllama/wllama, pinned in web/package-lock.json),
// on the same model file, prompt, sampling (greedy by default) and generated-token count.
// Prints one table per model with the ratios. Not a test: timing never gates anything
// (docs/benchmarks.md, Browser).
//
//   node bench/browser/run.mjs [--models tiny,l135] [--reps 5] [--gen 128] [--temperature 0]
//        [--only sipp,wllama,native] [--no-warmup] [--chromium-arg=--js-flags=...]
//
// --no-warmup loads Sipp with warmup: false (docs/browser.md, Speed): compare the "first run"
// column with and without it. SIPP_BENCH_VERBOSE=1 adds every run's figures as comments.
//
// Models: tiny = the 3.4M-parameter chat model in SIPP_TEST_MODELS_DIR (default
// ../shared/models); l135 = a random-weight llama-135m Q8_0 made with sipp-make-model into
// /tmp/l135.gguf (once). Sides: sipp st (always), sipp mt (when web/dist/wasm/sipp-mt.wasm
// exists; on a cross-origin isolated page), wllama single thread (n_threads 1, no WebGPU
// layers), native `sipp query --json --threads 1` (one core, as the single-thread artifact).
// Each side is loaded once, then the sides take turns run by run, so that a change in the
// shared machine's load hits all of them alike. Browser numbers are taken where the page sees
// the tokens: TTFT from the call to the first text, decode tok/s over the tokens after it. The
// native numbers and the "engine" columns are the engine's own stats.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from '../../web/node_modules/playwright-core/index.mjs';
import { startStatic } from '../../web/test/server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const webDir = join(repo, 'web');
const binDir = process.env.SIPP_BIN_DIR ?? join(repo, 'build', 'bin');
const modelsDir = process.env.SIPP_TEST_MODELS_DIR ?? join(repo, '..', 'shared', 'models');
const llamaVersion = /NODE_LLAMA_CPP_VERSION=(\S+)/.exec(readFileSync(join(repo, 'scripts', 'deps.env'), 'utf8'))[1];
const llamaSrc = process.env.SIPP_LLAMA_SRC ??
  join(process.env.SIPP_CACHE_DIR ?? join(homedir(), '.cache', 'sipp'), 'llama.cpp', `src-${llamaVersion}`);

const { values: a } = parseArgs({ options: {
  models: { type: 'string', default: 'tiny,l135' }, reps: { type: 'string', default: '5' },
  gen: { type: 'string', default: '128' }, temperature: { type: 'string', default: '0' },
  'chromium-arg': { type: 'string', multiple: true, default: [] }, 'no-warmup': { type: 'boolean', default: false }, only: { type: 'string', default: '' },
} });
const reps = Number(a.reps), nGen = Number(a.gen), temperature = Number(a.temperature);
const only = a.only ? new Set(a.only.split(',')) : null;
const want = (side) => !only || only.has(side);

// About 100 tokens of plain English: the same text for every side.
const PROMPT = 'Once upon a time, in a small village at the edge of a great forest, there lived a girl ' +
  'named Lily who loved to explore. Every morning she walked past the old mill, waved to the baker, ' +
  'and followed the river until it disappeared between the tall pine trees. One day she found a ' +
  'tiny wooden door hidden under the roots of an oak. She knocked three times, and to her surprise, ' +
  'a voice answered from inside and asked her what she was looking for.';

const MODELS = {
  tiny: () => join(modelsDir, 'tinystories-instruct-3m-soda-chat-Q4_0.gguf'),
  l135: () => {
    const f = '/tmp/l135.gguf';
    if (!existsSync(f)) {
      execFileSync(join(binDir, 'sipp-make-model'), ['--shape', 'llama-135m', '--type', 'q8_0', '--out', f],
        { stdio: 'ignore', env: { ...process.env, SIPP_LLAMA_SRC: llamaSrc } });
    }
    return f;
  },
};

const median = (v) => { const s = [...v].sort((x, y) => x - y); return s[Math.floor((s.length - 1) / 2)]; };

function nativeOnce(model) {
  const out = JSON.parse(execFileSync(join(binDir, 'sipp'), ['query', '-m', model, '--temperature', String(temperature),
    '--seed', '42', '-n', String(nGen), '--threads', '1', '--ctx-size', '2048', '--json', PROMPT],
    { encoding: 'utf8', env: { ...process.env, SIPP_LOG: 'error' } }));
  return { ttftMs: out.stats.ttft_ms, decodeTokS: out.stats.decode_tokens_per_s, nIn: out.usage.input_tokens,
           nOut: out.usage.output_tokens };
}

const fmt = (x, d = 1) => (x == null || Number.isNaN(x) ? '-' : x.toFixed(d));

async function main() {
  const files = Object.fromEntries(a.models.split(',').map((m) => [m, MODELS[m]()]));
  const extraFiles = Object.fromEntries(Object.values(files).map((f) => [basename(f), f]));
  const roots = { extraFiles, extraRoots: { '/bench/': here }, webDir, modelsDirs: [modelsDir] };
  const plain = await startStatic(roots);
  const hasMt = existsSync(join(webDir, 'dist', 'wasm', 'sipp-mt.wasm'));
  const isolated = hasMt ? await startStatic({ ...roots, isolated: true }) : null;
  const browser = await chromium.launch({ executablePath: process.env.SIPP_CHROMIUM ?? '/usr/bin/chromium',
                                          args: ['--no-sandbox', ...a['chromium-arg']] });
  const openPage = async (server) => {
    const page = await (await browser.newContext()).newPage();
    page.on('pageerror', (e) => console.error('page error:', String(e)));
    await page.goto(`${server.origin}/bench/bench.html`);
    await page.waitForFunction(() => window.benchReady === true);
    return page;
  };
  console.log(`# browser benchmark: ${nGen} generated tokens (ignore EOS, temperature ${temperature}), ` +
              `median of ${reps} runs after one unmeasured run, sides alternating; ` +
              `Chromium ${browser.version()}, ${new Date().toISOString().slice(0, 10)}`);
  try {
    for (const [name, file] of Object.entries(files)) {
      const url = `/models/${basename(file)}`;
      const job = { prompt: PROMPT, nGen, temperature };
      // Each side: open() once, then run() per rep. The browser sides share one page.
      const page = await openPage(plain);
      const sides = [];
      if (want('sipp')) sides.push({ key: 'sipp-st', ...(await page.evaluate(([k, x]) => window.openSipp(k, x), ['sipp-st', { url, threads: 'st', warmup: !a['no-warmup'] }])), page });
      if (want('sipp') && isolated) {
        const ip = await openPage(isolated);
        sides.push({ key: 'sipp-mt', ...(await ip.evaluate(([k, x]) => window.openSipp(k, x), ['sipp-mt', { url, threads: 'mt', warmup: !a['no-warmup'] }])), page: ip });
      }
      if (want('wllama')) sides.push({ key: 'wllama', ...(await page.evaluate(([k, x]) => window.openWllama(k, x), ['wllama', { url, nThreads: 1 }])), page });
      if (want('native')) sides.push({ key: 'native', runtime: 'native 1 thread', native: true });
      for (const s of sides) s.runs = [];
      for (let r = 0; r <= reps; r++) {
        for (const s of sides) {
          const m = s.native ? nativeOnce(file) : await s.page.evaluate(([k, x]) => window.runSide(k, x), [s.key, job]);
          if (r === 0) s.cold = m; else s.runs.push(m);
        }
      }
      for (const s of sides) if (!s.native) await s.page.evaluate((k) => window.closeSide(k), s.key);
      for (const p of new Set(sides.filter((s) => s.page).map((s) => s.page))) await p.context().close();
      const med = (s, k) => (s.runs[0]?.[k] == null ? null : median(s.runs.map((x) => x[k])));
      const st = sides.find((s) => s.key === 'sipp-st');
      console.log(`\n## ${name}: ${basename(file)}\n`);
      console.log('| runtime | prompt tok | gen tok | TTFT ms | decode tok/s | decode vs sipp st | engine TTFT ms | engine decode tok/s | first run: TTFT ms, tok/s |');
      console.log('|---|---|---|---|---|---|---|---|---|');
      for (const s of sides) {
        const d = med(s, 'decodeTokS');
        console.log(`| ${s.runtime} | ${s.runs[0].nIn} | ${s.runs[0].nOut} | ${fmt(med(s, 'ttftMs'))} | ${fmt(d)} | ` +
                    `${st ? fmt(d / med(st, 'decodeTokS'), 2) + 'x' : '-'} | ${fmt(med(s, 'engineTtftMs'))} | ` +
                    `${fmt(med(s, 'engineDecodeTokS'))} | ${s.native ? '-' : fmt(s.cold.ttftMs) + ', ' + fmt(s.cold.decodeTokS)} |`);
        if (process.env.SIPP_BENCH_VERBOSE) {
          console.log(`<!-- ${s.key} warmupMs=${fmt(s.warmupMs ?? 0, 0)} runs(ttft,tok/s)=` +
                      `${JSON.stringify([s.cold, ...s.runs].map((x) => [Math.round(x.ttftMs), Math.round(x.decodeTokS)]))} -->`);
        }
      }
      const wl = sides.find((s) => s.key === 'wllama');
      const n1 = sides.find((s) => s.native);
      if (st && wl) console.log(`\nsipp st / wllama: decode ${fmt(med(st, 'decodeTokS') / med(wl, 'decodeTokS'), 2)}x (target >= 1.0), TTFT ${fmt(med(st, 'ttftMs') / med(wl, 'ttftMs'), 2)}x (lower is better)`);
      if (st && n1) console.log(`sipp st / native 1 thread (engine stats): decode ${fmt(med(st, 'engineDecodeTokS') / med(n1, 'decodeTokS'), 2)}x, TTFT ${fmt(med(st, 'engineTtftMs') / med(n1, 'ttftMs'), 2)}x`);
    }
  } finally {
    await browser.close();
    await plain.close();
    await isolated?.close();
  }
}

await main();
