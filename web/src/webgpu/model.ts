// GGUF reading for the WebGPU pipeline: the metadata values and tensor infos (dims, type,
// offset) of a whole file in memory, and the llama-family hyperparameters taken from them.
// Invariants: every read is bounds-checked (a bad file is an Error naming what is wrong);
// tensor data is never copied or converted here: the pipeline uploads each tensor's bytes
// in their own block layout.

export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14, BF16: 30 } as const;

/** Elements per block and bytes per block of the tensor types the pipeline reads. */
export const TYPE_INFO: Record<number, { name: string; blck: number; bytes: number }> = {
  0: { name: 'F32', blck: 1, bytes: 4 },
  1: { name: 'F16', blck: 1, bytes: 2 },
  30: { name: 'BF16', blck: 1, bytes: 2 },
  2: { name: 'Q4_0', blck: 32, bytes: 18 },
  8: { name: 'Q8_0', blck: 32, bytes: 34 },
  12: { name: 'Q4_K', blck: 256, bytes: 144 },
  13: { name: 'Q5_K', blck: 256, bytes: 176 },
  14: { name: 'Q6_K', blck: 256, bytes: 210 },
};

export interface TensorInfo {
  name: string;
  dims: number[];  // ne0 (row length) first
  type: number;
  offset: number;  // absolute, in the file
  bytes: number;
}

export interface GgufFile {
  meta: Map<string, unknown>;
  tensors: Map<string, TensorInfo>;
}

export function parseGguf(buf: Uint8Array): GgufFile {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const need = (n: number) => { if (pos + n > buf.byteLength) throw new Error('GGUF: the file is truncated'); };
  const u32 = () => { need(4); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const u64 = () => {
    need(8); const lo = dv.getUint32(pos, true), hi = dv.getUint32(pos + 4, true); pos += 8;
    if (hi >= 0x200000) throw new Error('GGUF: a 64-bit value is too large');
    return hi * 0x100000000 + lo;
  };
  const str = () => { const n = u64(); need(n); const s = new TextDecoder().decode(buf.subarray(pos, pos + n)); pos += n; return s; };
  const value = (t: number, depth = 0): unknown => {
    switch (t) {
      case 0: need(1); return dv.getUint8(pos++);
      case 1: need(1); return dv.getInt8(pos++);
      case 2: need(2); pos += 2; return dv.getUint16(pos - 2, true);
      case 3: need(2); pos += 2; return dv.getInt16(pos - 2, true);
      case 4: return u32();
      case 5: need(4); pos += 4; return dv.getInt32(pos - 4, true);
      case 6: need(4); pos += 4; return dv.getFloat32(pos - 4, true);
      case 7: need(1); return dv.getUint8(pos++) !== 0;
      case 8: return str();
      case 9: {
        if (depth > 2) throw new Error('GGUF: arrays nested too deep');
        const et = u32(), n = u64();
        // Large arrays (the tokenizer's) are skipped: the pipeline needs only numbers.
        if (n > 4096) { for (let i = 0; i < n; i++) value(et, depth + 1); return undefined; }
        const a: unknown[] = [];
        for (let i = 0; i < n; i++) a.push(value(et, depth + 1));
        return a;
      }
      case 10: return u64();
      case 11: { need(8); const v = dv.getBigInt64(pos, true); pos += 8; return Number(v); }
      case 12: need(8); pos += 8; return dv.getFloat64(pos - 8, true);
      default: throw new Error(`GGUF: unknown value type ${t}`);
    }
  };
  if (u32() !== 0x46554747) throw new Error('GGUF: bad magic (not a GGUF file)');
  const version = u32();
  if (version < 2 || version > 3) throw new Error(`GGUF: unsupported version ${version}`);
  const nTensors = u64(), nKv = u64();
  const meta = new Map<string, unknown>();
  for (let i = 0; i < nKv; i++) { const k = str(); meta.set(k, value(u32())); }
  const infos: Omit<TensorInfo, 'bytes'>[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str(); const nd = u32();
    if (nd > 4) throw new Error(`GGUF: tensor ${name} has ${nd} dimensions`);
    const dims: number[] = [];
    for (let d = 0; d < nd; d++) dims.push(u64());
    const type = u32(); const offset = u64();
    infos.push({ name, dims, type, offset });
  }
  const align = Number(meta.get('general.alignment') ?? 32);
  const dataStart = Math.ceil(pos / align) * align;
  const tensors = new Map<string, TensorInfo>();
  for (const t of infos) {
    const ti = TYPE_INFO[t.type];
    const n = t.dims.reduce((a, b) => a * b, 1);
    const bytes = ti ? n / ti.blck * ti.bytes : 0;
    const off = dataStart + t.offset;
    if (ti && off + bytes > buf.byteLength) throw new Error(`GGUF: tensor ${t.name} runs past the end of the file`);
    tensors.set(t.name, { ...t, offset: off, bytes });
  }
  return { meta, tensors };
}

export interface LlamaParams {
  arch: 'llama' | 'qwen2' | 'qwen3';
  nEmbd: number; nLayer: number; nHead: number; nHeadKv: number; headDim: number; nFf: number;
  nVocab: number; nCtxTrain: number; eps: number; ropeBase: number; nRot: number;
  ropeNeox: boolean; tied: boolean;
}

export const SUPPORTED_ARCHS = ['llama', 'qwen2', 'qwen3'];

/** The hyperparameters of a llama-family GGUF; an Error naming what is unsupported. */
export function llamaParams(g: GgufFile): LlamaParams {
  const arch = String(g.meta.get('general.architecture'));
  if (!SUPPORTED_ARCHS.includes(arch)) throw new Error(`webgpu: architecture '${arch}' is not supported (supported: ${SUPPORTED_ARCHS.join(', ')})`);
  const num = (k: string, def?: number): number => {
    const v = g.meta.get(`${arch}.${k}`);
    if (typeof v === 'number') return v;
    if (def === undefined) throw new Error(`webgpu: the GGUF has no ${arch}.${k}`);
    return def;
  };
  const nEmbd = num('embedding_length'), nHead = num('attention.head_count');
  const emb = g.tensors.get('token_embd.weight');
  if (!emb) throw new Error('webgpu: the GGUF has no token_embd.weight');
  const headDim = num('attention.key_length', nEmbd / nHead);
  if (num('attention.value_length', headDim) !== headDim) throw new Error('webgpu: key and value head sizes differ');
  const scaling = g.meta.get(`${arch}.rope.scaling.type`);
  if (scaling !== undefined && scaling !== 'none' && scaling !== 'llama3')
    throw new Error(`webgpu: rope scaling '${String(scaling)}' is not supported`);
  if (g.meta.get(`${arch}.attention.sliding_window`) !== undefined && arch === 'llama')
    throw new Error('webgpu: sliding-window attention is not supported');
  return {
    arch: arch as LlamaParams['arch'],
    nEmbd, nLayer: num('block_count'), nHead, nHeadKv: num('attention.head_count_kv', nHead), headDim,
    nFf: num('feed_forward_length'), nVocab: emb.dims[1], nCtxTrain: num('context_length', 2048),
    eps: num('attention.layer_norm_rms_epsilon', 1e-5), ropeBase: num('rope.freq_base', 10000),
    nRot: num('rope.dimension_count', headDim), ropeNeox: arch !== 'llama',
    tied: !g.tensors.has('output.weight'),
  };
}
