// The WebGPU adapter as the client reports it (types.ts AdapterInfo). Kept apart from the
// pipeline so that the page's module (client.ts) does not bundle the WGSL kernels.
import type { AdapterInfo } from './types.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

/** What the page or worker's WebGPU adapter is, or null when there is none. */
export async function inspectAdapter(gpu: any): Promise<{ adapter: any; info: AdapterInfo } | null> {
  if (!gpu) return null;
  try {
    const a = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!a) return null;
    const i = a.info ?? (a.requestAdapterInfo ? await a.requestAdapterInfo() : {});
    const features = [...(a.features ?? [])].map(String).sort();
    const info: AdapterInfo = {
      vendor: i.vendor ?? '', architecture: i.architecture ?? '', description: i.description ?? '', features,
      shaderF16: features.includes('shader-f16'),
      isFallback: !!(a.isFallbackAdapter ?? i.isFallbackAdapter) || i.architecture === 'swiftshader',
    };
    return { adapter: a, info };
  } catch {
    return null;
  }
}

export function describeAdapter(a: AdapterInfo): string {
  return `${a.vendor || 'unknown vendor'}${a.architecture ? ' ' + a.architecture : ''}${a.shaderF16 ? ', shader-f16' : ', no shader-f16'}`;
}
