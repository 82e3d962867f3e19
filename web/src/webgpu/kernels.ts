// WGSL kernels of the WebGPU pipeline, generated per weight type. Weights stay in the GGUF's
// block layout in an array<u32> and are dequantized in the kernel (no f16 feature needed:
// f16 is read packed and unpacked with unpack2x16float). Every kernel reads the batch sizes
// from the uniform `B` and its own static parameters from the uniform `P`.
//
// The unit of dequantization is 32 consecutive weights of a row (one Q8_0/Q4_0 block, one
// sub-block of a K-quant super-block); F32/F16/BF16 rows need not be a multiple of 32 (the
// tail is read as zeros).

import { GGML } from './model.js';

const HEADER = /* wgsl */`
struct Batch { n_tok: u32, n_out: u32, r0: u32, r1: u32 }
struct Params { u0: u32, u1: u32, u2: u32, u3: u32, u4: u32, u5: u32, u6: u32, u7: u32,
                f0: f32, f1: f32, f2: f32, f3: f32 }
@group(0) @binding(0) var<uniform> B: Batch;
@group(0) @binding(1) var<uniform> P: Params;
`;

/** Byte and half reads from the weight array W (little-endian). */
const READS = /* wgsl */`
fn rb(o: u32) -> u32 { return (W[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu; }
fn ri8(o: u32) -> f32 { return f32(bitcast<i32>(rb(o) << 24u) >> 24u); }
fn rh(o: u32) -> f32 { let w = W[o >> 2u]; return unpack2x16float(select(w, w >> 16u, (o & 2u) != 0u) & 0xffffu).x; }
fn kscale(s: u32, j: u32) -> vec2<f32> {
  if (j < 4u) { return vec2<f32>(f32(rb(s + j) & 63u), f32(rb(s + j + 4u) & 63u)); }
  let a = rb(s + j + 4u);
  return vec2<f32>(f32((a & 15u) | ((rb(s + j - 4u) >> 6u) << 4u)), f32((a >> 4u) | ((rb(s + j) >> 6u) << 4u)));
}
`;

type Emit = (i: string, v: string) => string;

/**
 * The body that produces the 32 weights u*32.. of row `row` (K = P.u0 the row length, P.u2
 * the row bytes), calling emit(i, value) for each; zero(i) for the tail past K of an
 * F32/F16/BF16 row. Straight-line code over scalars: no private arrays (which compilers such
 * as SwiftShader's keep in memory when indexed dynamically).
 */
function deqBody(type: number, emit: Emit, zero: (i: string) => string): string {
  const tail = (load: string) => `  for (var i = 0u; i < 32u; i++) {
    if (u * 32u + i < P.u0) { ${load} ${emit('i', 'v')} } else { ${zero('i')} }
  }`;
  switch (type) {
    case GGML.F32: return `  let b = row * P.u2 / 4u + u * 32u;\n` + tail('let v = bitcast<f32>(W[b + i]);');
    case GGML.F16: return `  let b = row * P.u2 + u * 64u;
  if ((b & 3u) == 0u && u * 32u + 32u <= P.u0) {
    for (var i = 0u; i < 16u; i++) { let v2 = unpack2x16float(W[b / 4u + i]); ${emit('2u * i', 'v2.x')} ${emit('2u * i + 1u', 'v2.y')} }
  } else {
` + tail('let v = rh(b + 2u * i);') + '\n  }';
    case GGML.BF16: return `  let b = row * P.u2 + u * 64u;\n` +
      tail('let o2 = b + 2u * i; let w = W[o2 >> 2u]; let v = bitcast<f32>(select(w << 16u, w & 0xffff0000u, (o2 & 2u) != 0u));');
    case GGML.Q8_0: return `  let b = row * P.u2 + u * 34u;
  let d = rh(b);
  for (var i = 0u; i < 32u; i++) { ${emit('i', 'd * ri8(b + 2u + i)')} }`;
    case GGML.Q4_0: return `  let b = row * P.u2 + u * 18u;
  let d = rh(b);
  for (var i = 0u; i < 16u; i++) { let q = rb(b + 2u + i);
    ${emit('i', 'd * (f32(q & 15u) - 8.0)')} ${emit('i + 16u', 'd * (f32(q >> 4u) - 8.0)')} }`;
    case GGML.Q4_K: return `  let b = row * P.u2 + (u / 8u) * 144u; let sb = u % 8u;
  let sm = kscale(b + 4u, sb);
  let d = rh(b) * sm.x; let m = rh(b + 2u) * sm.y;
  let q0 = b + 16u + (sb / 2u) * 32u; let sh = (sb & 1u) * 4u;
  for (var i = 0u; i < 32u; i++) { ${emit('i', 'd * f32((rb(q0 + i) >> sh) & 15u) - m')} }`;
    case GGML.Q5_K: return `  let b = row * P.u2 + (u / 8u) * 176u; let sb = u % 8u;
  let sm = kscale(b + 4u, sb);
  let d = rh(b) * sm.x; let m = rh(b + 2u) * sm.y;
  let q0 = b + 48u + (sb / 2u) * 32u; let sh = (sb & 1u) * 4u;
  for (var i = 0u; i < 32u; i++) {
    let q = ((rb(q0 + i) >> sh) & 15u) | (((rb(b + 16u + i) >> sb) & 1u) << 4u);
    ${emit('i', 'd * f32(q) - m')} }`;
    case GGML.Q6_K: return `  let b = row * P.u2 + (u / 8u) * 210u; let su = u % 8u;
  let h = su / 4u; let g = su % 4u;
  let d = rh(b + 208u);
  let ql = b + h * 64u + (g & 1u) * 32u; let qsh = (g / 2u) * 4u;
  let qh = b + 128u + h * 32u; let hsh = 2u * g;
  let sc = b + 192u + h * 8u + 2u * g;
  for (var i = 0u; i < 32u; i++) {
    let q = ((rb(ql + i) >> qsh) & 15u) | (((rb(qh + i) >> hsh) & 3u) << 4u);
    ${emit('i', 'd * ri8(sc + i / 16u) * (f32(q) - 32.0)')} }`;
    default: throw new Error(`webgpu: no kernel for tensor type ${type}`);
  }
}

/** wdot(row, u, xb): sum over the unit's 32 weights of w[i] * X[xb + i]. */
const dotFn = (type: number) => `fn wdot(row: u32, u: u32, xb: u32) -> f32 {\n  var s = 0.0;\n${
  deqBody(type, (i, v) => `s += (${v}) * X[xb + ${i}];`, () => '')}\n  return s;\n}\n`;
/** wtile(row, u, wb): the unit's weights into Ws[wb..wb+31] (zeros past K). */
const tileFn = (type: number) => `fn wtile(row: u32, u: u32, wb: u32) {\n${
  deqBody(type, (i, v) => `Ws[wb + ${i}] = ${v};`, (i) => `Ws[wb + ${i}] = 0.0;`)}\n}\n`;
/** wrow(row, u, yb): the unit's weights into Y[yb..] (not past K). */
const rowFn = (type: number) => `fn wrow(row: u32, u: u32, yb: u32) {\n${
  deqBody(type, (i, v) => `Y[yb + ${i}] = ${v};`, () => '')}\n}\n`;

const WEIGHT = (fn: string) => `@group(0) @binding(2) var<storage, read> W: array<u32>;\n${READS}\n${fn}\n`;

/**
 * Matrix-vector product for up to 8 rows (decode): Y[r][n] (+)= sum_k X[r][k] W[n][k] (+ bias).
 * A workgroup of 64 computes 8 outputs n, 8 lanes each splitting K. P: u0 K, u1 N, u2 row
 * bytes, u3 flags (1 accumulate, 2 bias, 4 rows = B.n_out else B.n_tok), u4 ldx, u5 ldy,
 * u6 workgroups per dispatch row.
 */
export function matvecWgsl(type: number): string {
  return HEADER + WEIGHT(dotFn(type)) + /* wgsl */`
@group(0) @binding(3) var<storage, read> X: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read> Bias: array<f32>;
var<workgroup> red: array<f32, 512>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let lane = t % 8u;
  let n = (wg.x + wg.y * P.u6) * 8u + t / 8u;
  let M = min(select(B.n_tok, B.n_out, (P.u3 & 4u) != 0u), 8u);
  let nu = (P.u0 + 31u) / 32u;
  for (var r = 0u; r < 8u; r++) {
    var acc = 0.0;
    if (n < P.u1 && r < M) {
      for (var u = lane; u < nu; u += 8u) { acc += wdot(n, u, r * P.u4 + u * 32u); }
    }
    red[r * 64u + t] = acc;
  }
  workgroupBarrier();
  for (var s = 4u; s > 0u; s >>= 1u) {
    if (lane < s) { for (var r = 0u; r < 8u; r++) { red[r * 64u + t] += red[r * 64u + t + s]; } }
    workgroupBarrier();
  }
  if (lane < M && n < P.u1) {
    var v = red[lane * 64u + t - lane];
    if ((P.u3 & 2u) != 0u) { v += Bias[n]; }
    let yi = lane * P.u5 + n;
    if ((P.u3 & 1u) != 0u) { v += Y[yi]; }
    Y[yi] = v;
  }
}`;
}

/**
 * Matrix-vector product, one thread per output (no workgroup memory, no barrier): for
 * devices where barriers are costly (SwiftShader runs a workgroup's invocations as coroutines).
 * Same P as matvecWgsl; dispatch (ceil(N / 64), ceil(rows / 8)): 8 rows per workgroup row.
 */
export function matvecThreadWgsl(type: number): string {
  return HEADER + WEIGHT(dotFn(type)) + /* wgsl */`
@group(0) @binding(3) var<storage, read> X: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read> Bias: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let n = wg.x * 64u + t;
  let M = select(B.n_tok, B.n_out, (P.u3 & 4u) != 0u);
  if (n >= P.u1) { return; }
  let nu = (P.u0 + 31u) / 32u;
  for (var r = wg.y * 8u; r < min(M, wg.y * 8u + 8u); r++) {
    var v = 0.0;
    for (var u = 0u; u < nu; u++) { v += wdot(n, u, r * P.u4 + u * 32u); }
    if ((P.u3 & 2u) != 0u) { v += Bias[n]; }
    let yi = r * P.u5 + n;
    if ((P.u3 & 1u) != 0u) { v += Y[yi]; }
    Y[yi] = v;
  }
}`;
}

/**
 * Tiled matrix product for prefill rows: a 32x32 tile of Y per workgroup of 256 threads (2x2
 * each), the W tile dequantized into workgroup memory once per 32 k. Same P as matvec.
 */
export function matmulWgsl(type: number): string {
  return HEADER + WEIGHT(tileFn(type)) + /* wgsl */`
@group(0) @binding(3) var<storage, read> X: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read> Bias: array<f32>;
var<workgroup> Ws: array<f32, 1056>;
var<workgroup> Xs: array<f32, 1056>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let n0 = wg.x * 32u; let m0 = wg.y * 32u;
  let M = select(B.n_tok, B.n_out, (P.u3 & 4u) != 0u);
  let tx = t % 16u; let ty = t / 16u;
  var a00 = 0.0; var a01 = 0.0; var a10 = 0.0; var a11 = 0.0;
  let nu = (P.u0 + 31u) / 32u;
  for (var u = 0u; u < nu; u++) {
    if (t < 32u) {
      if (n0 + t < P.u1) { wtile(n0 + t, u, t * 33u); }
      else { for (var i = 0u; i < 32u; i++) { Ws[t * 33u + i] = 0.0; } }
    }
    for (var e = t; e < 1024u; e += 256u) {
      let r = e / 32u; let i = e % 32u; let m = m0 + r; let k = u * 32u + i;
      var v = 0.0;
      if (m < M && k < P.u0) { v = X[m * P.u4 + k]; }
      Xs[r * 33u + i] = v;
    }
    workgroupBarrier();
    for (var i = 0u; i < 32u; i++) {
      let x0 = Xs[(ty * 2u) * 33u + i]; let x1 = Xs[(ty * 2u + 1u) * 33u + i];
      let w0 = Ws[(tx * 2u) * 33u + i]; let w1 = Ws[(tx * 2u + 1u) * 33u + i];
      a00 += x0 * w0; a01 += x0 * w1; a10 += x1 * w0; a11 += x1 * w1;
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) {
    let m = m0 + ty * 2u + j / 2u; let n = n0 + tx * 2u + j % 2u;
    if (m < M && n < P.u1) {
      var v = select(select(a11, a10, j == 2u), select(a01, a00, j == 0u), j < 2u);
      if ((P.u3 & 2u) != 0u) { v += Bias[n]; }
      let yi = m * P.u5 + n;
      if ((P.u3 & 1u) != 0u) { v += Y[yi]; }
      Y[yi] = v;
    }
  }
}`;
}

/** Embedding rows: Y[t][k] = W[ids[t]][k]. P: u0 K, u2 row bytes. Dispatch (ceil(units/64), n_tok). */
export function embedWgsl(type: number): string {
  return HEADER + WEIGHT(rowFn(type)) + /* wgsl */`
@group(0) @binding(3) var<storage, read> Meta: array<u32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let u = id.x; let t = id.y;
  if (t >= B.n_tok || u * 32u >= P.u0) { return; }
  wrow(Meta[t], u, t * P.u0 + u * 32u);
}`;
}

/**
 * RMSNorm of rows of length P.u0: Y = X / rms(X) * Wn; rows = (B.n_tok or B.n_out when u3&4) * u1.
 * In place when `inPlace` (X only). f0 eps, u6 workgroups per dispatch row.
 */
export function rmsnormWgsl(inPlace: boolean): string {
  return HEADER + (inPlace ? `@group(0) @binding(2) var<storage, read_write> X: array<f32>;\n`
    : `@group(0) @binding(2) var<storage, read> X: array<f32>;\n@group(0) @binding(4) var<storage, read_write> Y: array<f32>;\n`) + /* wgsl */`
@group(0) @binding(3) var<storage, read> Wn: array<f32>;
var<workgroup> red: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = wg.x + wg.y * P.u6;
  let rows = select(B.n_tok, B.n_out, (P.u3 & 4u) != 0u) * P.u1;
  let K = P.u0; let b = row * K;
  var s = 0.0;
  if (row < rows) { for (var k = t; k < K; k += 64u) { let v = X[b + k]; s += v * v; } }
  red[t] = s;
  workgroupBarrier();
  for (var h = 32u; h > 0u; h >>= 1u) { if (t < h) { red[t] += red[t + h]; } workgroupBarrier(); }
  if (row >= rows) { return; }
  let inv = 1.0 / sqrt(red[0] / f32(K) + P.f0);
  for (var k = t; k < K; k += 64u) { ${inPlace ? 'X' : 'Y'}[b + k] = X[b + k] * inv * Wn[k]; }
}`;
}

/**
 * RoPE in place on X = [n_tok][u0 heads][u1 head dim], the first u2 dims rotated; u3 = 1 NEOX
 * layout (pairs i, i + n/2), else normal (pairs 2i, 2i+1). Cs = [n_ctx][n/2] (cos, sin),
 * computed on the CPU in double precision (WGSL's sin and cos may be off by 2^-11).
 * Dispatch (ceil(heads * n/2 / 64), n_tok).
 */
export const ropeWgsl = HEADER + /* wgsl */`
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<storage, read> Cs: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> Meta: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let half = P.u2 / 2u; let t = id.y;
  if (t >= B.n_tok || id.x >= P.u0 * half) { return; }
  let h = id.x / half; let i = id.x % half;
  let cs = Cs[Meta[P.u7 + t] * half + i];
  let base = (t * P.u0 + h) * P.u1;
  var i0 = base + 2u * i; var i1 = i0 + 1u;
  if (P.u3 == 1u) { i0 = base + i; i1 = base + i + half; }
  let x0 = X[i0]; let x1 = X[i1];
  X[i0] = x0 * cs.x - x1 * cs.y;
  X[i1] = x0 * cs.y + x1 * cs.x;
}`;

/**
 * K and V rows of the batch into the cache: C[(seq * n_ctx + pos) * kvd + j]. P: u0 kvd,
 * u1 n_ctx, u7 the batch capacity (Meta: ids, pos, seq, out-rows, each u7 long).
 */
export const kvStoreWgsl = HEADER + /* wgsl */`
@group(0) @binding(2) var<storage, read> Ks: array<f32>;
@group(0) @binding(3) var<storage, read> Vs: array<f32>;
@group(0) @binding(4) var<storage, read_write> Kc: array<f32>;
@group(0) @binding(5) var<storage, read_write> Vc: array<f32>;
@group(0) @binding(6) var<storage, read> Meta: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let j = id.x; let t = id.y;
  if (t >= B.n_tok || j >= P.u0) { return; }
  let c = (Meta[2u * P.u7 + t] * P.u1 + Meta[P.u7 + t]) * P.u0 + j;
  Kc[c] = Ks[t * P.u0 + j];
  Vc[c] = Vs[t * P.u0 + j];
}`;

/**
 * Causal attention of one (token, head) per workgroup over its sequence's cache positions
 * 0..pos, with an online softmax in chunks of 64 positions. P: u0 n_head, u1 n_head_kv,
 * u2 head dim (<= 256), u3 n_ctx, u7 batch capacity, f0 scale.
 */
export const attentionWgsl = HEADER + /* wgsl */`
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(3) var<storage, read> Kc: array<f32>;
@group(0) @binding(4) var<storage, read> Vc: array<f32>;
@group(0) @binding(5) var<storage, read_write> O: array<f32>;
@group(0) @binding(6) var<storage, read> Meta: array<u32>;
var<workgroup> qs: array<f32, 256>;
var<workgroup> ps: array<f32, 64>;
var<workgroup> npos: u32;
var<workgroup> cbase: u32;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let tok = wg.y; let h = wg.x;
  if (tok >= B.n_tok) { return; }
  let hd = P.u2; let kvd = P.u1 * hd;
  let hk = h / (P.u0 / P.u1);
  if (t == 0u) {
    npos = Meta[P.u7 + tok] + 1u;
    cbase = Meta[2u * P.u7 + tok] * P.u3;
  }
  let qb = (tok * P.u0 + h) * hd;
  for (var d = t; d < hd; d += 64u) { qs[d] = Q[qb + d]; }
  let n = workgroupUniformLoad(&npos);
  let cb = cbase;
  var m = -3.0e38; var l = 0.0;
  var acc: array<f32, 4>;
  for (var c0 = 0u; c0 < n; c0 += 64u) {
    let p = c0 + t;
    var s = -3.0e38;
    if (p < n) {
      let kb = (cb + p) * kvd + hk * hd;
      var dot = 0.0;
      for (var d = 0u; d < hd; d++) { dot += qs[d] * Kc[kb + d]; }
      s = dot * P.f0;
    }
    ps[t] = s;
    workgroupBarrier();
    var mx = m;
    let cn = min(64u, n - c0);
    for (var j = 0u; j < cn; j++) { mx = max(mx, ps[j]); }
    workgroupBarrier();
    ps[t] = select(0.0, exp(s - mx), p < n);
    workgroupBarrier();
    let corr = exp(m - mx);
    var sum = 0.0;
    for (var j = 0u; j < cn; j++) { sum += ps[j]; }
    l = l * corr + sum;
    for (var i = 0u; i < 4u; i++) {
      let d = t + i * 64u;
      if (d < hd) {
        var a = acc[i] * corr;
        for (var j = 0u; j < cn; j++) { a += ps[j] * Vc[(cb + c0 + j) * kvd + hk * hd + d]; }
        acc[i] = a;
      }
    }
    m = mx;
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let d = t + i * 64u;
    if (d < hd) { O[qb + d] = acc[i] / l; }
  }
}`;

/** SwiGLU in place: G = silu(G) * U over n_tok * P.u0 values. */
export const swigluWgsl = HEADER + /* wgsl */`
@group(0) @binding(2) var<storage, read_write> G: array<f32>;
@group(0) @binding(3) var<storage, read> U: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x + id.y * 65535u * 64u;
  if (i >= B.n_tok * P.u0) { return; }
  let g = G[i];
  G[i] = g / (1.0 + exp(-g)) * U[i];
}`;

/** The rows that need logits: Y[r] = X[out[r]] (rows of P.u0). */
export const gatherWgsl = HEADER + /* wgsl */`
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> Meta: array<u32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let k = id.x; let r = id.y;
  if (r >= B.n_out || k >= P.u0) { return; }
  Y[r * P.u0 + k] = X[Meta[3u * P.u7 + r] * P.u0 + k];
}`;
