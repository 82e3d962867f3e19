// Sipp's WebGPU pipeline as a standalone module (dist/sipp-webgpu.js): the same code runs in
// the page, in a worker and in Node through the `webgpu` package (Dawn).
export { WebGpuLlama } from './pipeline.js';
export type { ForwardBatch, PipelineOptions } from './pipeline.js';
export { parseGguf, llamaParams, SUPPORTED_ARCHS, TYPE_INFO } from './model.js';

/**
 * A device with the adapter's storage limits (models need large bindings). `gpu` is
 * navigator.gpu or the `webgpu` package's create([]). Throws when there is no adapter.
 */
export async function requestDevice(gpu: any, opts: { powerPreference?: string } = {}): Promise<{ device: any; adapter: any; info: any }> {
  if (!gpu) throw new Error('webgpu: no WebGPU in this environment');
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) throw new Error('webgpu: no WebGPU adapter');
  const L = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
      maxBufferSize: L.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(L.maxStorageBuffersPerShaderStage, 10),
      maxComputeWorkgroupStorageSize: L.maxComputeWorkgroupStorageSize,
    },
  });
  return { device, adapter, info: adapter.info ?? {} };
}
