// Random-weight llama-family GGUFs made in memory, for benchmarking the WebGPU pipeline on a
// machine where neither a real model nor sipp-make-model is at hand (the GPU machine receives at
// most 64 MiB). Speed does not depend on the values; the values are kept finite and small
// (every block scale is a fixed small f16, F16 weights have a small exponent) so no kernel runs
// on NaN or Inf. The tokenizer is absent: the pipeline needs none.
//
//   makeSynthetic('llama-1b', 'q4_k_m') -> Uint8Array (a GGUF v3 file)
import { randomFillSync } from 'node:crypto';

export const SHAPES = {
  // Llama 3.2 1B: 2048 wide, 16 layers, 32 heads (8 KV), FFN 8192, vocab 128256, tied output.
  'llama-1b': { nEmbd: 2048, nLayer: 16, nHead: 32, nHeadKv: 8, nFf: 8192, nVocab: 128256, ropeBase: 500000 },
  'llama-135m': { nEmbd: 576, nLayer: 30, nHead: 9, nHeadKv: 3, nFf: 1536, nVocab: 49152, ropeBase: 10000 },
};
const T = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, Q4_K: 12, Q6_K: 14 };
const BLOCK = { 0: [1, 4], 1: [1, 2], 2: [32, 18], 8: [32, 34], 12: [256, 144], 14: [256, 210] };
// Where the f16 scales of a block are (bytes): Q4_0/Q8_0 d at 0; Q4_K d, dmin at 0, 2; Q6_K d at 208.
const SCALES = { 2: [0], 8: [0], 12: [0, 2], 14: [208] };

function types(kind) {
  switch (kind) {
    case 'f16': return { mat: T.F16, emb: T.F16 };
    case 'q8_0': return { mat: T.Q8_0, emb: T.Q8_0 };
    case 'q4_0': return { mat: T.Q4_0, emb: T.Q4_0 };
    case 'q4_k_m': return { mat: T.Q4_K, emb: T.Q6_K, down: T.Q6_K }; // as llama.cpp's Q4_K_M: some Q6_K
    default: throw new Error(`synthetic type ${kind}: f16, q8_0, q4_0 or q4_k_m`);
  }
}

function fill(buf, type) {
  if (type === T.F32) { new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).fill(1); return; }
  for (let o = 0; o < buf.byteLength; o += 65536) randomFillSync(buf, o, Math.min(65536, buf.byteLength - o));
  if (type === T.F16) {
    const u = new Uint16Array(buf.buffer, buf.byteOffset, buf.byteLength / 2);
    for (let i = 0; i < u.length; i++) u[i] = (u[i] & 0x83ff) | 0x2000; // |x| in [2^-7, 2^-6)
    return;
  }
  const [, bytes] = BLOCK[type];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let b = 0; b < buf.byteLength; b += bytes) for (const s of SCALES[type]) dv.setUint16(b + s, 0x1c00, true); // 2^-8
}

export function makeSynthetic(shape, kind) {
  const s = SHAPES[shape];
  if (!s) throw new Error(`synthetic shape ${shape}: ${Object.keys(SHAPES).join(', ')}`);
  const ty = types(kind), hd = s.nEmbd / s.nHead, kvd = s.nHeadKv * hd;
  const tensors = [['token_embd.weight', [s.nEmbd, s.nVocab], ty.emb], ['output_norm.weight', [s.nEmbd], T.F32]];
  for (let l = 0; l < s.nLayer; l++) {
    const n = (x) => `blk.${l}.${x}`;
    tensors.push([n('attn_norm.weight'), [s.nEmbd], T.F32], [n('attn_q.weight'), [s.nEmbd, s.nEmbd], ty.mat],
      [n('attn_k.weight'), [s.nEmbd, kvd], ty.mat], [n('attn_v.weight'), [s.nEmbd, kvd], ty.down ?? ty.mat],
      [n('attn_output.weight'), [s.nEmbd, s.nEmbd], ty.mat], [n('ffn_norm.weight'), [s.nEmbd], T.F32],
      [n('ffn_gate.weight'), [s.nEmbd, s.nFf], ty.mat], [n('ffn_up.weight'), [s.nEmbd, s.nFf], ty.mat],
      [n('ffn_down.weight'), [s.nFf, s.nEmbd], ty.down ?? ty.mat]);
  }
  const meta = [['general.architecture', 8, 'llama'], ['llama.embedding_length', 4, s.nEmbd], ['llama.block_count', 4, s.nLayer],
    ['llama.attention.head_count', 4, s.nHead], ['llama.attention.head_count_kv', 4, s.nHeadKv],
    ['llama.feed_forward_length', 4, s.nFf], ['llama.context_length', 4, 8192], ['llama.rope.freq_base', 6, s.ropeBase],
    ['llama.attention.layer_norm_rms_epsilon', 6, 1e-5]];
  const enc = new TextEncoder(), parts = [];
  let size = 0;
  const put = (b) => { parts.push(b); size += b.byteLength; };
  const u32 = (v) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); put(b); };
  const u64 = (v) => { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v), true); put(b); };
  const str = (x) => { const b = enc.encode(x); u64(b.byteLength); put(b); };
  u32(0x46554747); u32(3); u64(tensors.length); u64(meta.length);
  for (const [k, t, v] of meta) {
    str(k); u32(t);
    if (t === 8) str(v); else if (t === 4) u32(v);
    else { const b = new Uint8Array(4); new DataView(b.buffer).setFloat32(0, v, true); put(b); }
  }
  let off = 0;
  const data = [];
  for (const [name, dims, t] of tensors) {
    const n = dims.reduce((a, b) => a * b, 1), [blck, bytes] = BLOCK[t];
    if (dims[0] % blck) throw new Error(`synthetic ${shape} ${kind}: ${name}'s rows of ${dims[0]} are no multiple of ${blck}`);
    str(name); u32(dims.length); for (const d of dims) u64(d); u32(t); u64(off);
    data.push([off, n / blck * bytes, t]);
    off += Math.ceil(n / blck * bytes / 32) * 32;
  }
  const start = Math.ceil(size / 32) * 32;
  const file = new Uint8Array(start + off);
  let p = 0;
  for (const b of parts) { file.set(b, p); p += b.byteLength; }
  for (const [o, n, t] of data) fill(file.subarray(start + o, start + o + n), t);
  return file;
}
