// GGUF header reading and splitting into shards that llama.cpp loads as one model (the layout
// of llama.cpp's gguf-split: every shard carries split.no / split.count / split.tensors.count,
// the first one all the other metadata; shards are named <prefix>-0000k-of-0000n.gguf).
// Invariants: header parsing is bounded by the bytes read (a bad file is an Error, never a
// hang); tensor data is copied as whole, alignment-padded spans, never re-encoded.

const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
const TYPE_U8 = 0, TYPE_I8 = 1, TYPE_U16 = 2, TYPE_I16 = 3, TYPE_U32 = 4, TYPE_I32 = 5;
const TYPE_F32 = 6, TYPE_BOOL = 7, TYPE_STRING = 8, TYPE_ARRAY = 9, TYPE_U64 = 10;
const TYPE_I64 = 11, TYPE_F64 = 12;
const FIXED: Record<number, number> = {
  [TYPE_U8]: 1, [TYPE_I8]: 1, [TYPE_U16]: 2, [TYPE_I16]: 2, [TYPE_U32]: 4, [TYPE_I32]: 4,
  [TYPE_F32]: 4, [TYPE_BOOL]: 1, [TYPE_U64]: 8, [TYPE_I64]: 8, [TYPE_F64]: 8,
};
const MAX_HEADER = 256 * 1024 * 1024;

export interface GgufTensor {
  name: string;
  infoBytes: Uint8Array; // name + dims + type, without the offset
  offset: number;        // relative to the data section
  size: number;          // bytes up to the next tensor (alignment padding included)
}

export interface GgufHeader {
  version: number;
  alignment: number;
  kvBytes: Uint8Array;   // the raw key/value section
  kvCount: number;
  keys: string[];
  tensors: GgufTensor[];
  dataOffset: number;    // start of tensor data in the file
}

class Reader {
  pos = 0;
  private dv: DataView;
  constructor(private buf: Uint8Array) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  need(n: number) {
    if (this.pos + n > this.buf.byteLength) throw new RangeError('short');
  }
  u32() { this.need(4); const v = this.dv.getUint32(this.pos, true); this.pos += 4; return v; }
  u64() {
    this.need(8);
    const lo = this.dv.getUint32(this.pos, true), hi = this.dv.getUint32(this.pos + 4, true);
    this.pos += 8;
    if (hi >= 0x200000) throw new Error('GGUF: a 64-bit count or offset is too large');
    return hi * 0x100000000 + lo;
  }
  str() {
    const n = this.u64();
    this.need(n);
    const s = new TextDecoder().decode(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  skipValue(type: number, depth = 0): void {
    if (type in FIXED) { this.need(FIXED[type]); this.pos += FIXED[type]; return; }
    if (type === TYPE_STRING) { const n = this.u64(); this.need(n); this.pos += n; return; }
    if (type === TYPE_ARRAY && depth < 4) {
      const t = this.u32(), n = this.u64();
      if (t in FIXED) { this.need(n * FIXED[t]); this.pos += n * FIXED[t]; return; }
      for (let i = 0; i < n; i++) this.skipValue(t, depth + 1);
      return;
    }
    throw new Error(`GGUF: bad value type ${type}`);
  }
  u32At(pos: number) { return this.dv.getUint32(pos, true); }
}

/** Reads the header of a GGUF blob, fetching more of it as needed. */
export async function readGgufHeader(blob: Blob): Promise<GgufHeader> {
  let want = Math.min(blob.size, 4 * 1024 * 1024);
  for (;;) {
    const buf = new Uint8Array(await blob.slice(0, want).arrayBuffer());
    try {
      return parseHeader(buf, blob.size);
    } catch (e) {
      if (!(e instanceof RangeError) || want >= blob.size || want >= MAX_HEADER) {
        throw e instanceof RangeError ? new Error('GGUF: the header is truncated') : e;
      }
      want = Math.min(blob.size, want * 4, MAX_HEADER);
    }
  }
}

function parseHeader(buf: Uint8Array, fileSize: number): GgufHeader {
  const r = new Reader(buf);
  if (r.u32() !== GGUF_MAGIC) throw new Error('not a GGUF file (bad magic)');
  const version = r.u32();
  if (version < 2 || version > 3) throw new Error(`GGUF: unsupported version ${version}`);
  const nTensors = r.u64(), nKv = r.u64();
  if (nTensors > fileSize / 8 || nKv > fileSize / 8) throw new Error('GGUF: counts larger than the file');
  const kvStart = r.pos;
  const keys: string[] = [];
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const key = r.str();
    const type = r.u32();
    keys.push(key);
    if (key === 'general.alignment' && type === TYPE_U32) {
      r.need(4);
      alignment = r.u32At(r.pos);
    }
    r.skipValue(type);
  }
  if (!alignment || alignment & (alignment - 1)) throw new Error('GGUF: bad alignment');
  const kvBytes = buf.slice(kvStart, r.pos);
  const tensors: GgufTensor[] = [];
  for (let i = 0; i < nTensors; i++) {
    const start = r.pos;
    const name = r.str();
    const nDims = r.u32();
    if (nDims > 8) throw new Error(`GGUF: tensor '${name}' has ${nDims} dimensions`);
    for (let d = 0; d < nDims; d++) r.u64();
    r.u32(); // type
    const infoBytes = buf.slice(start, r.pos);
    const offset = r.u64();
    tensors.push({ name, infoBytes, offset, size: 0 });
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  const dataSize = fileSize - dataOffset;
  for (let i = 0; i < sorted.length; i++) {
    const end = i + 1 < sorted.length ? sorted[i + 1].offset : dataSize;
    if (sorted[i].offset % alignment || end < sorted[i].offset || end > dataSize) {
      throw new Error(`GGUF: tensor '${sorted[i].name}' lies outside the file`);
    }
    sorted[i].size = end - sorted[i].offset;
  }
  return { version, alignment, kvBytes, kvCount: nKv, keys, tensors: sorted, dataOffset };
}

// ---- writing ------------------------------------------------------------------------------

class Writer {
  parts: Uint8Array[] = [];
  length = 0;
  bytes(b: Uint8Array) { this.parts.push(b); this.length += b.byteLength; }
  u16(v: number) { const b = new Uint8Array(2); new DataView(b.buffer).setUint16(0, v, true); this.bytes(b); }
  u32(v: number) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); this.bytes(b); }
  i32(v: number) { const b = new Uint8Array(4); new DataView(b.buffer).setInt32(0, v, true); this.bytes(b); }
  u64(v: number) {
    const b = new Uint8Array(8), dv = new DataView(b.buffer);
    dv.setUint32(0, v % 0x100000000, true);
    dv.setUint32(4, Math.floor(v / 0x100000000), true);
    this.bytes(b);
  }
  str(s: string) { const b = new TextEncoder().encode(s); this.u64(b.byteLength); this.bytes(b); }
  pad(alignment: number) {
    const n = (alignment - (this.length % alignment)) % alignment;
    if (n) this.bytes(new Uint8Array(n));
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of this.parts) { out.set(p, o); o += p.byteLength; }
    return out;
  }
}

export interface ShardPlan {
  count: number;
  groups: GgufTensor[][];
  /** The size of each shard file, header included (what writeShard writes). */
  sizes: number[];
}

const SPLIT_KEYS = ['split.no', 'split.count', 'split.tensors.count'];

/** Bytes of a GGUF string key. */
function keyBytes(k: string) { return 8 + new TextEncoder().encode(k).byteLength; }

/** The bytes of a shard's header before its tensor infos: the fixed fields, the metadata (all
 *  of it in the first shard; in the others only general.alignment, when it is not 32) and the
 *  three split.* keys. Mirrors shardHeader(). */
function headerBase(h: GgufHeader, first: boolean): number {
  let n = 4 + 4 + 8 + 8;
  if (first) n += h.kvBytes.byteLength;
  else if (h.alignment !== 32) n += keyBytes('general.alignment') + 4 + 4;
  n += keyBytes(SPLIT_KEYS[0]) + 4 + 2 + keyBytes(SPLIT_KEYS[1]) + 4 + 2 + keyBytes(SPLIT_KEYS[2]) + 4 + 4;
  return n;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Groups tensors in file order into shards whose files (header, tensor infos, padding and
 *  data) are at most `maxBytes` each. Throws when a tensor with its shard's header cannot fit
 *  in `maxBytes` (raise the shard size). */
export function planShards(h: GgufHeader, maxBytes: number): ShardPlan {
  const groups: GgufTensor[][] = [];
  const sizes: number[] = [];
  let cur: GgufTensor[] = [], infos = 0, data = 0;
  const size = (infoBytes: number, dataBytes: number) =>
    alignUp(headerBase(h, groups.length === 0) + infoBytes, h.alignment) + dataBytes;
  for (const t of h.tensors) {
    const info = t.infoBytes.byteLength + 8, bytes = alignUp(t.size, h.alignment);
    if (cur.length && size(infos + info, data + bytes) > maxBytes) {
      sizes.push(size(infos, data));
      groups.push(cur);
      cur = []; infos = 0; data = 0;
    }
    if (size(info, bytes) > maxBytes) {
      throw Object.assign(new Error(`GGUF: tensor '${t.name}' (${t.size} bytes${groups.length === 0 ? ', with the model\'s metadata' : ''}) ` +
                                    `does not fit in a shard of ${maxBytes} bytes; use a larger shardSizeBytes`),
                          { status: 'invalid_argument' });
    }
    cur.push(t);
    infos += info;
    data += bytes;
  }
  if (cur.length || !groups.length) { sizes.push(size(infos, data)); groups.push(cur); }
  return { count: groups.length, groups, sizes };
}

export function shardName(prefix: string, i: number, n: number): string {
  const p = (x: number) => String(x).padStart(5, '0');
  return `${prefix}-${p(i + 1)}-of-${p(n)}.gguf`;
}

/** The header (metadata, tensor infos, padding) of shard `i` of the plan. */
export function shardHeader(h: GgufHeader, plan: ShardPlan, i: number): Uint8Array {
  if (h.keys.some((k) => k.startsWith('split.'))) throw new Error('GGUF: the model is already split');
  const w = new Writer();
  const tensors = plan.groups[i];
  const extra = i === 0 ? 0 : (h.alignment !== 32 ? 1 : 0);
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64((i === 0 ? h.kvCount : extra) + 3);
  if (i === 0) w.bytes(h.kvBytes);
  else if (extra) { w.str('general.alignment'); w.u32(TYPE_U32); w.u32(h.alignment); }
  w.str(SPLIT_KEYS[0]); w.u32(TYPE_U16); w.u16(i);
  w.str(SPLIT_KEYS[1]); w.u32(TYPE_U16); w.u16(plan.count);
  w.str(SPLIT_KEYS[2]); w.u32(TYPE_I32); w.i32(h.tensors.length);
  let off = 0;
  for (const t of tensors) {
    w.bytes(t.infoBytes);
    w.u64(off);
    off += Math.ceil(t.size / h.alignment) * h.alignment;
  }
  w.pad(h.alignment);
  return w.concat();
}

/** Writes shard `i`: its header, then each tensor's span copied from `src` (padded). */
export async function writeShard(src: Blob, h: GgufHeader, plan: ShardPlan, i: number,
                                 write: (chunk: Uint8Array) => Promise<void>): Promise<number> {
  const head = shardHeader(h, plan, i);
  await write(head);
  let n = head.byteLength;
  for (const t of plan.groups[i]) {
    const start = h.dataOffset + t.offset;
    for (let o = 0; o < t.size; o += 16 * 1024 * 1024) {
      const end = Math.min(t.size, o + 16 * 1024 * 1024);
      await write(new Uint8Array(await src.slice(start + o, start + end).arrayBuffer()));
    }
    n += t.size;
    const pad = (h.alignment - (t.size % h.alignment)) % h.alignment;
    if (pad) { await write(new Uint8Array(pad)); n += pad; }
  }
  if (n !== plan.sizes[i]) throw new Error(`GGUF: shard ${i + 1} has ${n} bytes, planned ${plan.sizes[i]}`);
  return n;
}
