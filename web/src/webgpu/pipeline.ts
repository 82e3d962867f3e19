// The WebGPU forward pass for llama-family GGUF models (llama, qwen2, qwen3), shaped like the
// engine's compute seam: forward(batch) returns the logits of the rows asked for, and the KV
// cache (on the GPU, n_parallel sequences of n_ctx positions) has the seam's operations: clear
// a sequence, cut it back to a position, copy a prefix, save and restore its bytes.
//
// Ownership: a WebGpuLlama owns every GPU buffer it creates (weights, activations, cache) and
// frees them in destroy(); the GPUDevice is the caller's. The cache of a sequence holds
// positions 0..len-1; a batch token at position p attends to its sequence's positions 0..p
// (causal), so a sequence's tokens must arrive in position order with no gap.

import { GGML, GgufFile, LlamaParams, TYPE_INFO, TensorInfo, llamaParams, parseGguf } from './model.js';
import { attentionWgsl, embedWgsl, gatherWgsl, kvStoreWgsl, matmulWgsl, matvecThreadWgsl, matvecWgsl, ropeWgsl, rmsnormWgsl, swigluWgsl } from './kernels.js';

export interface ForwardBatch {
  tokens: ArrayLike<number>;
  pos: ArrayLike<number>;
  seq: ArrayLike<number>;
  /** Rows whose logits are returned (in batch order); all rows when absent. */
  logits?: ArrayLike<boolean | number>;
}

export interface PipelineOptions {
  nCtx?: number;       // positions per sequence (default min(4096, the model's))
  nParallel?: number;  // sequences (default 1)
  nBatch?: number;     // tokens per forward step (default 512; larger batches are split)
  nOutputs?: number;   // logit rows per step (default 64)
  /** Decode kernels: 'workgroup' (8 outputs per workgroup, K split across lanes: GPUs) or
   *  'thread' (one output per thread, no barriers: SwiftShader). Default: 'thread' on a
   *  fallback (CPU) adapter, else 'workgroup'. */
  kernels?: 'workgroup' | 'thread';
}

// The WebGPU objects are typed loosely: the TypeScript DOM library has no WebGPU types and the
// package carries no @webgpu/types; the flags are the spec's constants (GPUBufferUsage,
// GPUMapMode), so that Node's `webgpu` package works without installing globals.
/* eslint-disable @typescript-eslint/no-explicit-any */
export type GPUDevice = any;
type GPUBuffer = any;
type GPUComputePipeline = any;
type GPUBindGroup = any;
const U = { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 64, STORAGE: 128 } as const;
const MAP_READ = 1;
const MAXWG = 65535;
/** Compiled pipelines per device, shared by the models loaded on it (compiling is slow). */
const PIPELINES = new WeakMap<object, Map<string, any>>();

interface Op { pipeline: GPUComputePipeline; bind: GPUBindGroup; groups: (t: number, o: number) => [number, number]; label?: string }

export class WebGpuLlama {
  readonly hp: LlamaParams;
  readonly nCtx: number;
  readonly nParallel: number;
  readonly nBatch: number;
  readonly nOutputs: number;
  /** Cached positions per sequence. */
  readonly seqLen: number[];
  readonly types: Set<string>;
  readonly kernels: 'workgroup' | 'thread';
  private buffers: GPUBuffer[] = [];
  private pipelines: Map<string, GPUComputePipeline>;
  private ops: { decode: Op[]; prefill: Op[] } = { decode: [], prefill: [] };
  private batchU!: GPUBuffer;
  private metaB!: GPUBuffer;
  private logitsB!: GPUBuffer;
  private readB!: GPUBuffer;
  private kc: GPUBuffer[] = [];
  /** When set, forward() times each kernel into it (milliseconds by pipeline label). */
  profile: Map<string, number> | null = null;
  private vc: GPUBuffer[] = [];

  private constructor(readonly device: GPUDevice, private g: GgufFile, private file: Uint8Array, opts: PipelineOptions) {
    this.hp = llamaParams(g);
    this.nCtx = opts.nCtx ?? Math.min(4096, this.hp.nCtxTrain);
    this.nParallel = opts.nParallel ?? 1;
    this.nBatch = opts.nBatch ?? 512;
    this.nOutputs = Math.min(opts.nOutputs ?? 64, this.nBatch);
    this.seqLen = new Array(this.nParallel).fill(0);
    const arch = String(device.adapterInfo?.architecture ?? '');
    this.kernels = opts.kernels ?? (arch === 'swiftshader' || device.adapterInfo?.isFallbackAdapter ? 'thread' : 'workgroup');
    let cache = PIPELINES.get(device);
    if (!cache) PIPELINES.set(device, cache = new Map());
    this.pipelines = cache;
    this.types = new Set();
  }

  /** Loads a GGUF (the whole file in memory) onto `device`. Errors name what is unsupported. */
  static async load(device: GPUDevice, file: Uint8Array, opts: PipelineOptions = {}): Promise<WebGpuLlama> {
    const m = new WebGpuLlama(device, parseGguf(file), file, opts);
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    m.build();
    const valid = await device.popErrorScope();
    const oom = await device.popErrorScope();
    if (valid || oom) { m.destroy(); throw new Error(`webgpu: building the pipeline failed: ${(valid ?? oom)!.message}`); }
    m.file = new Uint8Array(0);
    return m;
  }

  destroy() {
    for (const b of this.buffers) b.destroy();
    this.buffers = [];
  }

  private buf(bytes: number, usage: number, label?: string): GPUBuffer {
    const b = this.device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 4) * 4), usage, label });
    this.buffers.push(b);
    return b;
  }

  private upload(data: ArrayBufferView, usage: number = U.STORAGE, label?: string): GPUBuffer {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const b = this.device.createBuffer({ size: Math.max(16, Math.ceil(bytes.byteLength / 4) * 4), usage, label, mappedAtCreation: true });
    new Uint8Array(b.getMappedRange()).set(bytes);
    b.unmap();
    this.buffers.push(b);
    return b;
  }

  private tensor(name: string, optional = false): { info: TensorInfo; buf: GPUBuffer } | undefined {
    const info = this.g.tensors.get(name);
    if (!info) { if (optional) return undefined; throw new Error(`webgpu: the GGUF has no tensor ${name}`); }
    if (!TYPE_INFO[info.type]) throw new Error(`webgpu: tensor ${name} has type ${info.type}, which the WebGPU pipeline does not read (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)`);
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (info.bytes > max) throw new Error(`webgpu: tensor ${name} (${info.bytes} bytes) is larger than the adapter's maxStorageBufferBindingSize (${max})`);
    this.types.add(TYPE_INFO[info.type].name);
    return { info, buf: this.upload(this.file.subarray(info.offset, info.offset + info.bytes), U.STORAGE, name) };
  }

  /** An f32 vector tensor (norm weights, biases, rope factors) as f32 on the GPU. */
  private vec(name: string, optional = false): GPUBuffer | undefined {
    const t = this.g.tensors.get(name);
    if (!t) { if (optional) return undefined; throw new Error(`webgpu: the GGUF has no tensor ${name}`); }
    return this.upload(this.vecData(t), U.STORAGE, name);
  }

  private vecData(t: TensorInfo): Float32Array {
    const n = t.dims.reduce((a, b) => a * b, 1);
    if (t.type === GGML.F32) return new Float32Array(this.file.slice(t.offset, t.offset + n * 4).buffer);
    if (t.type === GGML.F16) {
      const dv = new DataView(this.file.buffer, this.file.byteOffset + t.offset, n * 2);
      const o = new Float32Array(n);
      for (let i = 0; i < n; i++) o[i] = f16(dv.getUint16(2 * i, true));
      return o;
    }
    throw new Error(`webgpu: vector ${t.name} must be F32 or F16`);
  }

  private pipe(key: string, code: () => string): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module: this.device.createShaderModule({ code: code(), label: key }), entryPoint: 'main' }, label: key });
      this.pipelines.set(key, p);
    }
    return p;
  }

  private params(u: number[], f: number[] = []): GPUBuffer {
    const a = new ArrayBuffer(48);
    const ui = new Uint32Array(a, 0, 8), fl = new Float32Array(a, 32, 4);
    u.forEach((v, i) => { ui[i] = v; });
    f.forEach((v, i) => { fl[i] = v; });
    return this.upload(new Uint8Array(a), U.UNIFORM, 'params');
  }

  private bind(p: GPUComputePipeline, entries: Record<number, GPUBuffer>): GPUBindGroup {
    return this.device.createBindGroup({ layout: p.getBindGroupLayout(0),
      entries: Object.entries(entries).map(([k, b]) => ({ binding: Number(k), resource: { buffer: b } })) });
  }

  private build() {
    const hp = this.hp, E = hp.nEmbd, hd = hp.headDim, qd = hp.nHead * hd, kvd = hp.nHeadKv * hd, F = hp.nFf, V = hp.nVocab;
    const NB = this.nBatch, NO = this.nOutputs, cap = NB;
    if (hd > 256) throw new Error(`webgpu: head size ${hd} is larger than 256`);
    if (hp.nHead % hp.nHeadKv) throw new Error('webgpu: n_head is not a multiple of n_head_kv');
    const S = U.STORAGE | U.COPY_SRC | U.COPY_DST;
    this.batchU = this.buf(16, U.UNIFORM | U.COPY_DST, 'batch');
    this.metaB = this.buf(4 * cap * 4, S, 'meta');
    const x = this.buf(NB * E * 4, S, 'x'), xn = this.buf(NB * E * 4, S, 'xn');
    const q = this.buf(NB * qd * 4, S, 'q'), k = this.buf(NB * kvd * 4, S, 'k'), v = this.buf(NB * kvd * 4, S, 'v');
    const att = this.buf(NB * qd * 4, S, 'att');
    const gate = this.buf(NB * F * 4, S, 'gate'), up = this.buf(NB * F * 4, S, 'up');
    const hsel = this.buf(NO * E * 4, S, 'hsel'), hseln = this.buf(NO * E * 4, S, 'hseln');
    this.logitsB = this.buf(NO * V * 4, S, 'logits');
    this.readB = this.buf(NO * V * 4, U.MAP_READ | U.COPY_DST, 'read');
    const dummy = this.buf(16, U.STORAGE, 'dummy');
    for (let l = 0; l < hp.nLayer; l++) {
      this.kc.push(this.buf(this.nParallel * this.nCtx * kvd * 4, S, `k${l}`));
      this.vc.push(this.buf(this.nParallel * this.nCtx * kvd * 4, S, `v${l}`));
    }
    // RoPE: cos and sin of every (position, pair), Llama-3 frequency factors divided in; the
    // angle as ggml computes it (theta_scale^i in f32), the trigonometry in double precision.
    const ff = this.g.tensors.get('rope_freqs.weight');
    const ffv = ff ? this.vecData(ff) : undefined;
    const half = hp.nRot / 2, scale = Math.fround(Math.pow(hp.ropeBase, -2 / hp.nRot));
    const cs = new Float32Array(this.nCtx * half * 2);
    for (let p = 0; p < this.nCtx; p++)
      for (let i = 0, th = p; i < half; i++, th = Math.fround(th * scale)) {
        const a = ffv ? Math.fround(th / ffv[i]) : th;
        cs[2 * (p * half + i)] = Math.cos(a); cs[2 * (p * half + i) + 1] = Math.sin(a);
      }
    const freqB = this.upload(cs, U.STORAGE, 'rope');

    const both = (op: Op) => { this.ops.decode.push(op); this.ops.prefill.push(op); };
    const wide = (n: number): [number, number] => [Math.min(n, MAXWG), Math.ceil(n / MAXWG)];
    const rowsOf = (out: boolean) => (t: number, o: number) => out ? o : t;

    // matmul: Y (+)= X W^T (+ bias); a matvec kernel for the decode op list, tiled for prefill.
    const matmul = (w: { info: TensorInfo; buf: GPUBuffer }, X: GPUBuffer, Y: GPUBuffer, K: number, N: number,
                    o: { acc?: boolean; bias?: GPUBuffer; out?: boolean } = {}) => {
      if (w.info.dims[0] !== K || (w.info.dims[1] ?? 1) < N) throw new Error(`webgpu: tensor ${w.info.name} has shape ${w.info.dims} (expected ${K} x ${N})`);
      const rb = w.info.bytes / (w.info.dims[1] ?? 1);
      const flags = (o.acc ? 1 : 0) | (o.bias ? 2 : 0) | (o.out ? 4 : 0);
      const thread = this.kernels === 'thread';
      const [nx] = wide(Math.ceil(N / 8));
      const P = this.params([K, N, rb, flags, K, N, nx]);
      const ty = w.info.type;
      const rows = rowsOf(!!o.out);
      const e = { 0: this.batchU, 1: P, 2: w.buf, 3: X, 4: Y, 5: o.bias ?? dummy };
      if (thread) {
        // SwiftShader: one thread per output for decode and prefill (no barriers).
        if (N / 64 > MAXWG) throw new Error(`webgpu: ${w.info.name} has too many rows for the thread kernels`);
        const mvt = this.pipe(`mvt${ty}`, () => matvecThreadWgsl(ty)), op = { pipeline: mvt, bind: this.bind(mvt, e) };
        const g = (t: number, oo: number): [number, number] => [Math.ceil(N / 64), Math.ceil(rows(t, oo) / 8)];
        this.ops.decode.push({ ...op, groups: g });
        this.ops.prefill.push({ ...op, groups: g });
        return;
      }
      const mv = this.pipe(`mv${ty}`, () => matvecWgsl(ty)), mm = this.pipe(`mm${ty}`, () => matmulWgsl(ty));
      this.ops.decode.push({ pipeline: mv, bind: this.bind(mv, e), groups: (_t, oo) => o.out && oo === 0 ? [0, 0] : wide(Math.ceil(N / 8)) });
      this.ops.prefill.push({ pipeline: mm, bind: this.bind(mm, e), groups: (t, oo) => [Math.ceil(N / 32), Math.ceil(rows(t, oo) / 32)] });
    };
    const norm = (X: GPUBuffer, Y: GPUBuffer | null, w: GPUBuffer, K: number, mult: number, out = false) => {
      const p = this.pipe(Y ? 'norm' : 'normip', () => rmsnormWgsl(!Y));
      const P = this.params([K, mult, 0, out ? 4 : 0, 0, 0, MAXWG], [hp.eps]);
      const e: Record<number, GPUBuffer> = { 0: this.batchU, 1: P, 2: X, 3: w };
      if (Y) e[4] = Y;
      both({ pipeline: p, bind: this.bind(p, e), groups: (t, o) => wide((out ? o : t) * mult) });
    };

    const emb = this.tensor('token_embd.weight')!;
    {
      const ty = emb.info.type, p = this.pipe(`emb${ty}`, () => embedWgsl(ty));
      const P = this.params([E, 0, emb.info.bytes / V]);
      both({ pipeline: p, bind: this.bind(p, { 0: this.batchU, 1: P, 2: emb.buf, 3: this.metaB, 4: x }), groups: (t) => [Math.ceil(Math.ceil(E / 32) / 64), t] });
    }
    const rope = this.pipe('rope', () => ropeWgsl), kvs = this.pipe('kvstore', () => kvStoreWgsl);
    const attn = this.pipe('attn', () => attentionWgsl), glu = this.pipe('swiglu', () => swigluWgsl);
    for (let l = 0; l < hp.nLayer; l++) {
      const n = (s: string) => `blk.${l}.${s}`;
      norm(x, xn, this.vec(n('attn_norm.weight'))!, E, 1);
      matmul(this.tensor(n('attn_q.weight'))!, xn, q, E, qd, { bias: this.vec(n('attn_q.bias'), true) });
      matmul(this.tensor(n('attn_k.weight'))!, xn, k, E, kvd, { bias: this.vec(n('attn_k.bias'), true) });
      matmul(this.tensor(n('attn_v.weight'))!, xn, v, E, kvd, { bias: this.vec(n('attn_v.bias'), true) });
      const qn = this.vec(n('attn_q_norm.weight'), true), kn = this.vec(n('attn_k_norm.weight'), true);
      if (qn) norm(q, null, qn, hd, hp.nHead);
      if (kn) norm(k, null, kn, hd, hp.nHeadKv);
      for (const [B, nh] of [[q, hp.nHead], [k, hp.nHeadKv]] as [GPUBuffer, number][]) {
        const P = this.params([nh, hd, hp.nRot, hp.ropeNeox ? 1 : 0, 0, 0, 0, cap]);
        both({ pipeline: rope, bind: this.bind(rope, { 0: this.batchU, 1: P, 2: B, 3: freqB, 4: this.metaB }), groups: (t) => [Math.ceil(nh * hp.nRot / 2 / 64), t] });
      }
      {
        const P = this.params([kvd, this.nCtx, 0, 0, 0, 0, 0, cap]);
        both({ pipeline: kvs, bind: this.bind(kvs, { 0: this.batchU, 1: P, 2: k, 3: v, 4: this.kc[l], 5: this.vc[l], 6: this.metaB }), groups: (t) => [Math.ceil(kvd / 64), t] });
        const PA = this.params([hp.nHead, hp.nHeadKv, hd, this.nCtx, 0, 0, 0, cap], [1 / Math.sqrt(hd)]);
        both({ pipeline: attn, bind: this.bind(attn, { 0: this.batchU, 1: PA, 2: q, 3: this.kc[l], 4: this.vc[l], 5: att, 6: this.metaB }), groups: (t) => [hp.nHead, t] });
      }
      matmul(this.tensor(n('attn_output.weight'))!, att, x, qd, E, { acc: true });
      norm(x, xn, this.vec(n('ffn_norm.weight'))!, E, 1);
      matmul(this.tensor(n('ffn_gate.weight'))!, xn, gate, E, F);
      matmul(this.tensor(n('ffn_up.weight'))!, xn, up, E, F);
      {
        const P = this.params([F]);
        both({ pipeline: glu, bind: this.bind(glu, { 0: this.batchU, 1: P, 2: gate, 3: up }), groups: (t) => { const g = Math.ceil(t * F / 64); return [Math.min(g, MAXWG), Math.ceil(g / MAXWG)]; } });
      }
      matmul(this.tensor(n('ffn_down.weight'))!, gate, x, F, E, { acc: true });
    }
    {
      const p = this.pipe('gather', () => gatherWgsl);
      const P = this.params([E, 0, 0, 0, 0, 0, 0, cap]);
      both({ pipeline: p, bind: this.bind(p, { 0: this.batchU, 1: P, 2: x, 3: this.metaB, 4: hsel }), groups: (_t, o) => [Math.ceil(E / 64), o] });
    }
    norm(hsel, hseln, this.vec('output_norm.weight')!, E, 1, true);
    const out = hp.tied ? emb : this.tensor('output.weight')!;
    matmul(out, hseln, this.logitsB, E, V, { out: true });
  }

  /**
   * Runs a batch (any size: split into steps of nBatch tokens with at most nOutputs logit rows)
   * and returns the logits of the rows asked for, n_rows x n_vocab, in batch order.
   */
  async forward(batch: ForwardBatch): Promise<Float32Array> {
    const n = batch.tokens.length;
    if (batch.pos.length !== n || batch.seq.length !== n || (batch.logits && batch.logits.length !== n))
      throw new Error('webgpu: tokens, pos, seq and logits must have the same length');
    const want = (i: number) => batch.logits ? !!batch.logits[i] : true;
    let nWant = 0;
    for (let i = 0; i < n; i++) if (want(i)) nWant++;
    const V = this.hp.nVocab;
    const result = new Float32Array(nWant * V);
    const next = this.seqLen.slice();
    for (let i = 0; i < n; i++) {
      const t = batch.tokens[i], p = batch.pos[i], s = batch.seq[i];
      if (!(t >= 0 && t < V)) throw new Error(`webgpu: token ${t} is out of the vocabulary (${V})`);
      if (!(s >= 0 && s < this.nParallel)) throw new Error(`webgpu: sequence ${s} is out of range (n_parallel ${this.nParallel})`);
      if (!(p >= 0 && p < this.nCtx)) throw new Error(`webgpu: position ${p} is out of range (n_ctx ${this.nCtx})`);
      if (p > next[s]) throw new Error(`webgpu: sequence ${s} has ${next[s]} positions cached; position ${p} leaves a gap`);
      next[s] = p + 1;
    }
    let done = 0, i0 = 0;
    while (i0 < n) {
      // One step: at most nBatch tokens and nOutputs logit rows.
      let i1 = i0, outs = 0;
      while (i1 < n && i1 - i0 < this.nBatch && outs + (want(i1) ? 1 : 0) <= this.nOutputs) { if (want(i1)) outs++; i1++; }
      const T = i1 - i0, cap = this.nBatch;
      const meta = new Uint32Array(4 * cap);
      let o = 0;
      for (let i = 0; i < T; i++) {
        meta[i] = batch.tokens[i0 + i]; meta[cap + i] = batch.pos[i0 + i]; meta[2 * cap + i] = batch.seq[i0 + i];
        if (want(i0 + i)) meta[3 * cap + o++] = i;
      }
      const q = this.device.queue;
      q.writeBuffer(this.batchU, 0, new Uint32Array([T, outs, 0, 0]));
      q.writeBuffer(this.metaB, 0, meta);
      const ops = T <= 8 && outs <= 8 ? this.ops.decode : this.ops.prefill;
      if (this.profile) {
        // One submission per op, waited for: the time of each kernel (debugging only).
        for (const op of ops) {
          const [gx, gy] = op.groups(T, outs);
          if (gx === 0 || gy === 0) continue;
          const t0 = performance.now();
          const e = this.device.createCommandEncoder(), p = e.beginComputePass();
          p.setPipeline(op.pipeline); p.setBindGroup(0, op.bind); p.dispatchWorkgroups(gx, gy); p.end();
          q.submit([e.finish()]);
          await q.onSubmittedWorkDone();
          const k = `${op.pipeline.label || '?'}:${gx}x${gy}`;
          this.profile.set(k, (this.profile.get(k) ?? 0) + performance.now() - t0);
        }
      }
      const enc = this.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (const op of this.profile ? [] : ops) {
        const [gx, gy] = op.groups(T, outs);
        if (gx === 0 || gy === 0) continue;
        pass.setPipeline(op.pipeline);
        pass.setBindGroup(0, op.bind);
        pass.dispatchWorkgroups(gx, gy);
      }
      pass.end();
      if (outs) enc.copyBufferToBuffer(this.logitsB, 0, this.readB, 0, outs * V * 4);
      q.submit([enc.finish()]);
      if (outs) {
        await this.readB.mapAsync(MAP_READ, 0, outs * V * 4);
        result.set(new Float32Array(this.readB.getMappedRange(0, outs * V * 4)), done * V);
        this.readB.unmap();
        done += outs;
      } else {
        await q.onSubmittedWorkDone();
      }
      i0 = i1;
    }
    for (let s = 0; s < this.nParallel; s++) this.seqLen[s] = next[s];
    return result;
  }

  // ---- KV cache operations (the seam's) ---------------------------------------------------

  private checkSeq(s: number) {
    if (!(Number.isInteger(s) && s >= 0 && s < this.nParallel)) throw new Error(`webgpu: sequence ${s} is out of range (n_parallel ${this.nParallel})`);
  }

  /** Forgets a sequence's cache. */
  clear(seq: number) { this.checkSeq(seq); this.seqLen[seq] = 0; }

  /** Keeps positions 0..pos-1 of a sequence. */
  cut(seq: number, pos: number) { this.checkSeq(seq); this.seqLen[seq] = Math.max(0, Math.min(this.seqLen[seq], pos)); }

  /** Copies positions 0..n-1 of `src` to `dst` (dst's other positions are dropped). */
  copyPrefix(src: number, dst: number, n: number) {
    this.checkSeq(src); this.checkSeq(dst);
    n = Math.min(n, this.seqLen[src]);
    if (src !== dst && n > 0) {
      const row = this.hp.nHeadKv * this.hp.headDim * 4, stride = this.nCtx * row;
      // WebGPU does not copy within one buffer: through a scratch buffer.
      const all = [...this.kc, ...this.vc], per = n * row;
      const tmp = this.device.createBuffer({ size: per * all.length, usage: U.COPY_SRC | U.COPY_DST });
      const enc = this.device.createCommandEncoder();
      all.forEach((c, i) => enc.copyBufferToBuffer(c, src * stride, tmp, i * per, per));
      all.forEach((c, i) => enc.copyBufferToBuffer(tmp, i * per, c, dst * stride, per));
      this.device.queue.submit([enc.finish()]);
      tmp.destroy();
    }
    this.seqLen[dst] = n;
  }

  /** The bytes of a sequence's cache (u32 length, then K and V of each layer). */
  async save(seq: number): Promise<Uint8Array> {
    this.checkSeq(seq);
    const n = this.seqLen[seq], row = this.hp.nHeadKv * this.hp.headDim * 4, stride = this.nCtx * row;
    const per = n * row, total = 4 + per * 2 * this.hp.nLayer;
    const out = new Uint8Array(total);
    new DataView(out.buffer).setUint32(0, n, true);
    if (per === 0) return out;
    const st = this.device.createBuffer({ size: per * 2 * this.hp.nLayer, usage: U.MAP_READ | U.COPY_DST });
    const enc = this.device.createCommandEncoder();
    [...this.kc, ...this.vc].forEach((c, i) => enc.copyBufferToBuffer(c, seq * stride, st, i * per, per));
    this.device.queue.submit([enc.finish()]);
    await st.mapAsync(MAP_READ);
    out.set(new Uint8Array(st.getMappedRange()), 4);
    st.destroy();
    return out;
  }

  /** Restores bytes from save() into a sequence. */
  restore(seq: number, bytes: Uint8Array) {
    this.checkSeq(seq);
    const row = this.hp.nHeadKv * this.hp.headDim * 4, stride = this.nCtx * row;
    if (bytes.byteLength < 4) throw new Error('webgpu: the KV bytes are truncated');
    const n = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true), per = n * row;
    if (n > this.nCtx || bytes.byteLength !== 4 + per * 2 * this.hp.nLayer) throw new Error('webgpu: the KV bytes do not match this model and context');
    [...this.kc, ...this.vc].forEach((c, i) => { if (per) this.device.queue.writeBuffer(c, seq * stride, bytes, 4 + i * per, per); });
    this.seqLen[seq] = n;
  }
}

function f16(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
