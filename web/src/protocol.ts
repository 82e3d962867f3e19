// Messages between the client (the page) and the host (the worker, or the page itself in
// main-thread mode). Requests with a reqId get exactly one 'reply'; a run gets 'started' or
// 'runError', then 'tokens'* and one 'done'.

import type { SippResponse } from './types.js';

export type LoadSource =
  | { kind: 'url'; url: string }
  | { kind: 'shards'; urls: string[] }
  | { kind: 'blob'; blob: Blob };

export type HostRequest =
  | { type: 'init'; reqId: number; wasmBaseUrl: string; variant: 'st' | 'mt'; nThreads: number }
  | { type: 'load'; reqId: number; endpoint: string; source: LoadSource; cache: boolean;
      nCtx?: number; nParallel?: number; warmup: boolean; shardThresholdBytes: number; shardSizeBytes: number;
      sha256?: string | string[]; maxRetries: number; partialMaxAgeMs: number;
      backend: 'cpu' | 'webgpu' | 'auto'; allowSoftwareAdapter: boolean }
  | { type: 'abortLoad'; loadReq: number }
  | { type: 'unload'; reqId: number; endpoint: string }
  | { type: 'listLocal'; reqId: number }
  | { type: 'removeLocal'; reqId: number; id: string }
  | { type: 'run'; runId: number; endpoint: string; kind: 'query' | 'chat' | 'embed';
      input: unknown; opts: Record<string, any> }
  | { type: 'cancel'; runId: number }
  | { type: 'estimate'; reqId: number; endpoint: string; kind: 'query' | 'chat'; input: unknown; opts: Record<string, any> }
  | { type: 'setPrices'; reqId: number; endpoint: string; inputPerMtok: number; outputPerMtok: number };

export type HostEvent =
  | { type: 'reply'; reqId: number; value?: unknown; error?: { status: string; message: string } }
  | { type: 'progress'; reqId: number; phase: 'download' | 'verify' | 'store' | 'load'; loaded: number; total: number;
      kind?: 'resume' | 'retry' | 'restart'; reason?: string }
  | { type: 'started'; runId: number }
  | { type: 'runError'; runId: number; error: { status: string; message: string } }
  | { type: 'tokens'; runId: number; text: string; nTokens: number }
  | { type: 'done'; runId: number; response: SippResponse };
