// @sipp/web: Sipp in the browser. See docs/browser.md.
export { SippClient, detectBackend, pickVariant } from './client.js';
export { validateBaseUrl, MAX_EVENT_BYTES, MAX_ERROR_BODY_BYTES } from './gateway.js';
export { Policy, responseConfidence } from './routing.js';
export { planShards, readGgufHeader, shardName } from './gguf.js';
export * from './types.js';
