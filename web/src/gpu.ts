// The WebGPU backend of local endpoints: the adapter report, the backend decision, and the
// glue between the engine's external backend (web/wasm/sipp_wasm.c, sippw_open_external) and
// Sipp's WGSL pipeline (webgpu/pipeline.ts). The engine plans each batch in wasm; the host
// reads the plan from the heap, runs WebGpuLlama.forward (asynchronously, on the GPU) and
// commits the logits back; the engine's KV operations reach the pipeline through
// Module.sippKv, synchronously. Sampling, stop strings and streaming stay in the engine.

export { describeAdapter, inspectAdapter } from './adapter.js';
import { WebGpuLlama, requestDevice } from './webgpu/index.js';
import { SUPPORTED_ARCHS, TYPE_INFO, llamaParams, parseGguf } from './webgpu/model.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

/** ggml's names of the types the pipeline does not read (for the reason it gives). */
const GGML_NAMES: Record<number, string> = {
  3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 15: 'Q8_K', 16: 'IQ2_XXS',
  17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS',
  24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

/**
 * Why the pipeline cannot run this GGUF, or null when it can: the architecture and
 * hyperparameters (llamaParams), every tensor's type, and each tensor against the device's
 * largest binding.
 */
export function gpuUnsupported(g: ReturnType<typeof parseGguf>, maxBinding: number): string | null {
  try { llamaParams(g); } catch (e) { return (e as Error).message.replace(/^webgpu: /, ''); }
  const bad = new Map<number, string>();
  for (const t of g.tensors.values()) {
    if (!TYPE_INFO[t.type]) bad.set(t.type, t.name);
    else if (t.bytes > maxBinding) return `tensor ${t.name} (${t.bytes} bytes) is larger than the adapter's maxStorageBufferBindingSize (${maxBinding})`;
  }
  if (bad.size) {
    const list = [...bad].map(([ty, name]) => `${GGML_NAMES[ty] ?? `type ${ty}`} (${name})`).join(', ');
    return `tensor type ${list} is not one the WebGPU pipeline reads (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)`;
  }
  return null;
}

export { SUPPORTED_ARCHS, WebGpuLlama, parseGguf, requestDevice };

/** A model on the GPU behind the engine's external backend. */
export interface GpuModel {
  id: number;             // Module.sippKv's handle
  split: number;          // sippw_split*
  llama: WebGpuLlama;
  inflight: Promise<void> | null;
  logits: number;         // the heap buffer of the last commit
  logitsBytes: number;
  lastError: string;      // the last forward's failure, shown in the runs it failed
  closed: boolean;
}

/** Module.sippKv: the engine's KV operations on the pipeline (sipp_wasm.c, js_kv_op). */
export function kvOp(mod: any, m: WebGpuLlama, op: string, a: number, b: number, c: number): boolean {
  try {
    switch (op) {
      case 'remove': { // (seq, p0, p1): p1 < 0 = to the end
        const [seq, p0, p1] = [a, b, c];
        if (p1 >= 0 && p1 < m.seqLen[seq]) return false; // the middle of a sequence: unsupported
        if (p0 <= 0) m.clear(seq); else m.cut(seq, p0);
        return true;
      }
      case 'copy': m.copyPrefix(a, b, c < 0 ? m.nCtx : c); return true;
      case 'restore': m.restore(a, mod.HEAPU8.slice(b, b + c)); return true;
      default: return false;
    }
  } catch (e) {
    console.warn('[sipp] webgpu KV', op, (e as Error).message);
    return false;
  }
}

/**
 * Starts the forward of the plan the engine left pending, if any: reads the plan (wasm32
 * layout, sipp_wasm.c), runs it on the GPU and commits the logits (or a failure) when it
 * completes. `inflight` is set until then; the engine is not stepped meanwhile.
 */
export function launchForward(mod: any, g: GpuModel, onDone: () => void) {
  if (g.inflight || g.closed) return;
  const plan = mod._sippw_split_plan(g.split);
  if (!plan) return;
  const dv = new DataView(mod.HEAPU8.buffer);
  const n = dv.getInt32(plan, true), nOut = dv.getInt32(plan + 4, true);
  const arr = (off: number) => new Int32Array(mod.HEAPU8.buffer.slice(dv.getUint32(plan + off, true), dv.getUint32(plan + off, true) + 4 * n));
  const embd = dv.getUint32(plan + 12, true);
  const tokens = arr(8), pos = arr(16), seq = arr(20);
  const lp = dv.getUint32(plan + 24, true);
  const want = mod.HEAPU8.slice(lp, lp + n);
  g.inflight = (async () => {
    let rc = 0;
    let result: Float32Array | null = null;
    try {
      if (embd) throw new Error('webgpu: input embeddings (media) are not supported');
      result = await g.llama.forward({ tokens, pos, seq, logits: want });
      if (result.length !== nOut * g.llama.hp.nVocab) throw new Error('webgpu: the forward returned the wrong number of rows');
    } catch (e) {
      rc = -1;
      g.lastError = (e as Error).message ?? String(e);
    }
    if (g.closed) return;
    let ptr = 0;
    if (rc === 0 && result) {
      const bytes = Math.max(4, result.byteLength);
      if (g.logitsBytes < bytes) {
        if (g.logits) mod._free(g.logits);
        g.logits = mod._malloc(bytes);
        g.logitsBytes = g.logits ? bytes : 0;
      }
      ptr = g.logits;
      if (ptr) new Float32Array(mod.HEAPU8.buffer, ptr, result.length).set(result);
      else { rc = -1; g.lastError = 'out of memory for the logits'; }
    }
    mod._sippw_split_commit(g.split, rc, ptr);
  })().finally(() => { g.inflight = null; onDone(); });
}
