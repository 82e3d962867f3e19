// Benchmark of Sipp's WebGPU pipeline in Node through the `webgpu` npm package (Dawn): batch-1
// decode tok/s, prefill of N tokens, 4-stream decode, and the fraction of the device's measured
// streaming read bandwidth that decode reaches (weight bytes read per token / step time).
//
//   node bench/webgpu/bench.mjs MODEL.gguf [--webgpu DIR] [--prefill 512] [--decode 64]
//        [--streams 4] [--reps 3] [--kernels workgroup|thread] [--profile]
//
// DIR is the unpacked `webgpu` package (default $SIPP_WEBGPU_PKG, else .gpu/package in the
// repository root: ../shared/tools/webgpu-probe.md says how to carry it and Node to the GPU
// machine). The pipeline is web/dist/sipp-webgpu.js (`node web/build.mjs`; carry web/dist).
// Prints one JSON object; times are medians of --reps runs.
import { createRequire } from 'node:module';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const model = args.find((a, i) => !a.startsWith('--') && (i === 0 || !args[i - 1].startsWith('--')));
if (!model) { console.error('usage: node bench/webgpu/bench.mjs MODEL.gguf [--webgpu DIR] [--prefill 512] [--decode 64] [--streams 4] [--reps 3]'); process.exit(2); }
const pkg = resolve(opt('--webgpu', process.env.SIPP_WEBGPU_PKG ?? join(repo, '.gpu', 'package')));
const nPrefill = Number(opt('--prefill', 512)), nDecode = Number(opt('--decode', 64));
const nStreams = Number(opt('--streams', 4)), reps = Number(opt('--reps', 3));

const require = createRequire(import.meta.url);
const { create, globals } = require(join(pkg, 'index.js'));
Object.assign(globalThis, globals);
const G = await import(join(repo, 'web', 'dist', 'sipp-webgpu.js'));
const { device, adapter } = await G.requestDevice(create([]));
const info = adapter.info ?? {};
const kernels = opt('--kernels', info.architecture === 'swiftshader' ? 'thread' : 'workgroup');
device.addEventListener?.('uncapturederror', (e) => console.error('webgpu error:', e.error?.message));
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

// Streaming read bandwidth (as ../shared/tools/webgpu-probe.mjs measures it).
async function bandwidth() {
  const N = Math.min(256 * 1024 * 1024, Math.floor(device.limits.maxStorageBufferBindingSize / 16) * 4);
  const buf = device.createBuffer({ size: N * 4, usage: GPUBufferUsage.STORAGE });
  const out = device.createBuffer({ size: 4 * 65536, usage: GPUBufferUsage.STORAGE });
  const code = `@group(0) @binding(0) var<storage, read> a: array<vec4<u32>>; @group(0) @binding(1) var<storage, read_write> o: array<u32>;
  @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    var s: u32 = 0u; let total = arrayLength(&a); let stride = nw.x * 256u;
    for (var i = g.x; i < total; i = i + stride) { let v = a[i]; s = s ^ v.x ^ v.y ^ v.z ^ v.w; }
    if (s == 12345u) { o[g.x % 65536u] = s; } }`;
  const p = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
  const bg = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }, { binding: 1, resource: { buffer: out } }] });
  const run = async (k) => {
    const e = device.createCommandEncoder();
    for (let i = 0; i < k; i++) { const ps = e.beginComputePass(); ps.setPipeline(p); ps.setBindGroup(0, bg); ps.dispatchWorkgroups(2048); ps.end(); }
    device.queue.submit([e.finish()]); await device.queue.onSubmittedWorkDone();
  };
  await run(2);
  const t0 = performance.now(); await run(10);
  const s = (performance.now() - t0) / 1000;
  buf.destroy(); out.destroy();
  return 10 * N * 4 / s;
}

const bw = await bandwidth();
const file = new Uint8Array(readFileSync(model));
const t0 = performance.now();
const m = await G.WebGpuLlama.load(device, file, { nCtx: Math.max(1024, nPrefill + nDecode + 8), nParallel: Math.max(1, nStreams), nBatch: 512, nOutputs: Math.max(8, nStreams), kernels });
const loadMs = performance.now() - t0;
const V = m.hp.nVocab;
const am = (a, off = 0) => { let b = 0; for (let i = 1; i < V; i++) if (a[off + i] > a[off + b]) b = i; return b; };
const toks = (n, seed) => Array.from({ length: n }, (_, i) => 1 + ((i * 7919 + seed * 104729) % (V - 1)));

// Prefill: nPrefill tokens of sequence 0, logits of the last row only.
const prefillMs = [];
for (let r = 0; r < reps + 1; r++) {
  m.clear(0);
  const p = toks(nPrefill, r);
  const s = performance.now();
  await m.forward({ tokens: p, pos: p.map((_, i) => i), seq: p.map(() => 0), logits: p.map((_, i) => i === p.length - 1) });
  if (r) prefillMs.push(performance.now() - s); // the first run compiles and warms up
}
// Batch-1 decode: greedy, one forward (and one logits read-back) per token, as the engine does.
async function decode(streams) {
  const times = [];
  for (let r = 0; r < reps; r++) {
    const last = [];
    for (let s = 0; s < streams; s++) {
      m.clear(s);
      const p = toks(16, s + 1);
      const l = await m.forward({ tokens: p, pos: p.map((_, i) => i), seq: p.map(() => s), logits: p.map((_, i) => i === 15) });
      last.push(am(l));
    }
    const t = performance.now();
    for (let i = 0; i < nDecode; i++) {
      const l = await m.forward({ tokens: last, pos: last.map(() => 16 + i), seq: last.map((_, s) => s) });
      for (let s = 0; s < streams; s++) last[s] = am(l, s * V);
    }
    times.push((performance.now() - t) / nDecode);
  }
  return median(times);
}
const stepMs = await decode(1);
const stepMs4 = nStreams > 1 ? await decode(nStreams) : null;
let profile;
if (args.includes('--profile')) {
  m.profile = new Map();
  for (let i = 0; i < 8; i++) await m.forward({ tokens: [5], pos: [16 + nDecode + i], seq: [0] });
  profile = Object.fromEntries([...m.profile].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, +(v / 8).toFixed(3)]));
}
// Bytes read per decoded token: every weight once (the tied output reads token_embd again).
const g = G.parseGguf(file);
let weightBytes = 0;
for (const t of g.tensors.values()) weightBytes += t.bytes;
if (m.hp.tied) weightBytes += g.tensors.get('token_embd.weight').bytes;
console.log(JSON.stringify({
  model: model.split('/').pop(), modelBytes: statSync(model).size, arch: m.hp.arch, types: [...m.types],
  adapter: { vendor: info.vendor, architecture: info.architecture, description: info.description }, kernels,
  loadMs: +loadMs.toFixed(0), streamGBs: +(bw / 1e9).toFixed(0),
  prefill: { tokens: nPrefill, ms: +median(prefillMs).toFixed(2), tokPerS: +(nPrefill / median(prefillMs) * 1000).toFixed(1) },
  decode: { ms: +stepMs.toFixed(3), tokPerS: +(1000 / stepMs).toFixed(1),
            bandwidthFraction: +(weightBytes / (stepMs / 1000) / bw).toFixed(3) },
  decodeStreams: stepMs4 && { streams: nStreams, ms: +stepMs4.toFixed(3), tokPerS: +(nStreams * 1000 / stepMs4).toFixed(1) },
  profile,
}, null, 1));
m.destroy();
process.exit(0);
