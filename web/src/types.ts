// Public types of @sipp/web. The shapes follow the C API (include/sipp.h): a request returns a
// run whose `response` settles once, whose `tokens` stream the text, and which can be cancelled.

export type Backend = 'cpu' | 'webgpu' | 'auto';

export interface SippClientOptions {
  /** Where the wasm artifacts (sipp-st.js/.wasm, sipp-mt.js/.wasm) are served. Default: the
   *  `wasm/` folder beside this module. */
  wasmBaseUrl?: string;
  /** Where the worker script is served. Default: `sipp-worker.js` beside this module. */
  workerUrl?: string;
  /** Run inference in a Web Worker (default) or on the page's own thread. */
  mode?: 'worker' | 'main-thread';
  /** Where local models compute: 'cpu' (default: llama.cpp in wasm), 'webgpu' (Sipp's WGSL
   *  pipeline on the GPU; the add() fails naming what is missing when it cannot) or 'auto'
   *  (WebGPU on a hardware adapter when the model's architecture and tensor types are
   *  supported, else the CPU; the endpoint info's runtime says which and why). A local
   *  endpoint's spec may override it. See docs/browser.md, Backends. */
  backend?: Backend;
  /** 'auto' counts a software adapter (SwiftShader, a fallback adapter) as no GPU unless this
   *  is true. Default false. */
  allowSoftwareAdapter?: boolean;
  /** 'auto' (default): the pthread artifact when the page is cross-origin isolated, else the
   *  single-thread one. 'st' or 'mt' force one ('mt' fails without isolation). */
  threads?: 'auto' | 'st' | 'mt';
  /** Compute threads of the pthread artifact. Default: min(hardwareConcurrency, 4). */
  nThreads?: number;
  /** Files above this size are split into GGUF shards before loading. Default 2 GiB. */
  shardThresholdBytes?: number;
  /** Largest shard. Default 512 MiB. */
  shardSizeBytes?: number;
  /** Load progress of every local endpoint. */
  onProgress?: (event: ProgressEvent) => void;
  /** Partial downloads (kept in OPFS to be resumed) not updated for this long are removed when
   *  the next download starts. Default 7 days. */
  partialMaxAgeMs?: number;
  /** A download whose connection breaks is resumed after a backoff (250 ms doubling, at most
   *  4 s); it fails after this many failed attempts in a row without new bytes. Default 5. */
  downloadRetries?: number;
}

export interface ProgressEvent {
  endpoint: string;
  /** 'verify': hashing the download against the `sha256` given. */
  phase: 'download' | 'verify' | 'store' | 'load';
  /** Bytes done in this phase (load: 0..total as a fraction of the model). */
  loaded: number;
  /** Bytes of this phase, 0 when unknown. */
  total: number;
  /** Download only, on the events that report a change of course (see docs/browser.md):
   *  'resume' (a partial download continues at `loaded`), 'retry' (the connection broke or
   *  the server answered 408/429/5xx; the download resumes after a backoff), 'restart' (the
   *  partial was dropped and the download starts from 0). */
  kind?: 'resume' | 'retry' | 'restart';
  /** Why, with `kind`: resume 'journal'; restart 'range-not-supported' (the server answered
   *  a Range request with the whole file), 'changed' (the validator changed), 'range-mismatch'
   *  (a 206 for other bytes), 'no-validator' (nothing to check a resume against); retry a
   *  description of the failure. */
  reason?: string;
}

export type LocalSource = string | File | Blob | string[];

export interface LocalEndpointSpec {
  kind: 'local';
  /** A URL, a File/Blob, or the URLs of a model's GGUF shards (in order). */
  source: LocalSource;
  /** Context size per sequence; 0 = the model's, capped at 4096. */
  nCtx?: number;
  /** Parallel sequences (default 1 in the browser). */
  nParallel?: number;
  /** Keep the downloaded file in OPFS (default true). */
  cache?: boolean;
  /** Expected SHA-256 (64 hex digits) of the file: one for a URL or a File, one per shard for a
   *  list of shards. The download is hashed before it is stored; a mismatch fails the add()
   *  with 'model_invalid' and deletes the download. A cached entry stored without this hash
   *  (or with another) is downloaded again. */
  sha256?: string | string[];
  /** Run the model briefly right after loading (default true) so the browser compiles the hot
   *  WebAssembly functions with its optimizing tier before the first request; see
   *  docs/browser.md. The time it took is `warmupMs` in the endpoint info. */
  warmup?: boolean;
  /** This endpoint's backend; default: the client's `backend`. */
  backend?: Backend;
  onProgress?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
}

export type Authentication =
  | { kind: 'none' }
  | { kind: 'bearer'; token: string | (() => string | Promise<string>) }
  | { kind: 'header'; name: string; value: string | (() => string | Promise<string>) };

export interface GatewayEndpointSpec {
  kind: 'gateway';
  /** The gateway's base URL (absolute; no userinfo, query or fragment; http only for
   *  loopback hosts). Routes are appended: /v1/query, /v1/chat, /v1/embed. */
  baseUrl: string;
  /** The gateway target name (the request's `model`). */
  target: string;
  authentication?: Authentication;
  /** Per-request time limit in milliseconds; 0 = none. */
  timeoutMs?: number;
}

export type EndpointSpec = LocalEndpointSpec | GatewayEndpointSpec;

export interface Message {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface RequestOptions {
  /** The endpoint id given to add(); default: the only (or first) endpoint. */
  endpoint?: string;
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  seed?: number;
  stop?: string[];
  signal?: AbortSignal;
  /** Local only: keeps the sequence warm for a later request with the same key. */
  contextKey?: string;
  /** Local only: a GBNF grammar. */
  grammar?: string;
  /** Local only: a JSON schema converted to a grammar. */
  jsonSchema?: string;
  /** Deadline in milliseconds; 0 = none. */
  timeoutMs?: number;
  /** Local only: never stop at end-of-generation (benchmarks). */
  ignoreEos?: boolean;
  /** Local only: report each output token's log-probability (`SippResponse.logprobs`), the
   *  signal of a draft's confidence (docs/routing.md). */
  logprobs?: boolean;
}

export interface EmbedOptions {
  endpoint?: string;
  normalize?: boolean;
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length' | 'cancelled' | 'none';

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
}

export interface Stats {
  queueMs: number;
  ttftMs: number;
  prefillMs: number;
  decodeMs: number;
  prefillTokS: number;
  decodeTokS: number;
  totalMs: number;
  itlAvgMs: number;
  itlP99Ms: number;
  prefillTokens: number;
  cacheSource: string;
  cachedTokens: number;
}

/** The final result of a run (sipp_response). `status` is 'OK' or why the run failed. */
export interface SippResponse {
  status: string;
  errorMessage: string;
  text: string;
  finishReason: FinishReason;
  embedding?: Float32Array;
  usage: Usage;
  stats?: Stats;
  /** With the `logprobs` option (local): each output token's log-probability; null for a
   *  token the model gave no chance. */
  logprobs?: (number | null)[];
  /** Gateway endpoints: HTTP status, retry-after seconds, request id, error code. */
  httpStatus?: number;
  retryAfterS?: number;
  requestId?: string;
  errorCode?: string;
}

/** A request in flight. `response` rejects only when the request could not start (bad input,
 *  unknown endpoint); a run that fails later resolves with status != 'OK', as in C. A
 *  cancelled run resolves with finishReason 'cancelled'. */
export interface Run {
  response: Promise<SippResponse>;
  tokens: AsyncIterable<string>;
  cancel(): void;
}

export interface EndpointInfo {
  kind: 'local' | 'gateway';
  architecture?: string;
  description?: string;
  nCtx?: number;
  nEmbd?: number;
  nParams?: number;
  sizeBytes?: number;
  canGenerate: boolean;
  canChat: boolean;
  canEmbed: boolean;
  /** Local: which artifact runs it, and where the model came from. */
  runtime?: { threads: 'st' | 'mt'; nThreads: number; backend: 'cpu' | 'webgpu'; backendReason: string;
             /** The WebGPU adapter looked at (null when none was, e.g. backend 'cpu'). */
             adapter: AdapterInfo | null };
  cacheId?: string;
  loadedFrom?: 'network' | 'opfs' | 'file';
  shards?: number;
  /** Milliseconds the load-time warm-up took (0 when off; local endpoints). */
  warmupMs?: number;
}

export interface LocalModel {
  id: string;
  source: string;
  etag: string;
  bytes: number;
  files: string[];
  storedAt: string;
  /** The SHA-256 the download was verified against (one per shard for shards), if given. */
  sha256?: string | string[];
}

export interface AdapterInfo {
  vendor: string;
  architecture: string;
  description: string;
  features: string[];
  shaderF16: boolean;
  /** A software adapter (SwiftShader, or one the browser marks as fallback). */
  isFallback: boolean;
}

/** The page's WebGPU adapter and what the client's `backend` makes of it before a model is
 *  seen ('webgpu': a usable adapter; each add() then checks the model itself). */
export interface BackendReport {
  selected: 'cpu' | 'webgpu';
  reason: string;
  webgpu: null | AdapterInfo;
}

// ---- routing (docs/routing.md "In the browser"; the C shapes of sipp_estimate and sipp_policy) --

/** Where a figure comes from; 'unknown' has value 0: do not use it. */
export type FigureSource = 'unknown' | 'measured' | 'configured' | 'predicted';

export interface Figure {
  value: number;
  /** requests it was measured over (0 when not measured) */
  samples: number;
  source: FigureSource;
}

/** What an endpoint expects of one prepared request, without running it (sipp_estimate). */
export interface Estimate {
  /** a local model (else a gateway) */
  local: boolean;
  /** the model is loaded and accepts requests (gateway: true) */
  loaded: boolean;
  /** gateway: false after 3 failures in a row, for 30 s; local: false while the engine is stalled */
  healthy: boolean;
  /** local: the exact token count (the chat template rendered); gateway: 0 (unknown) */
  promptTokens: number;
  /** local: prompt tokens reusable for this contextKey (a warm sequence) */
  cachedTokens: number;
  cacheSource: 'none' | 'live' | 'snapshot';
  cacheOnDisk: boolean;
  /** local: promptTokens - cachedTokens */
  prefillTokens: number;
  /** local: the context of one sequence */
  nCtx: number;
  /** local: the engine's load now */
  running: number;
  queued: number;
  freeSlots: number;
  /** local: predicted by the engine's cost model (unknown until a run measured the prefill
   *  rate); gateway: measured moving average */
  ttftMs: Figure;
  decodeTokensPerS: Figure;
  /** measured moving average of whole requests (the round trip, for a gateway) */
  totalMs: Figure;
  /** configured with setPrices(), per million tokens */
  priceInputPerMtok: Figure;
  priceOutputPerMtok: Figure;
  /** measured share of recent requests that failed (transport, upstream_*, overloaded, internal) */
  errorRate: Figure;
  /** measured share of recent requests refused as busy (busy, rate_limited, overloaded) */
  busyRate: Figure;
}

export type RuleKind =
  | 'local_only_tag' | 'skip_unavailable' | 'fit_context' | 'max_ttft_ms' | 'max_cost'
  | 'prefer_warm' | 'prefer_local_under_ttft' | 'prefer_cheapest' | 'escalate_low_confidence';

/** A rule: a name, [name, value] (['local_only_tag', tag]) or {kind, value, tag}. */
export type Rule =
  | RuleKind
  | [RuleKind, number | string]
  | { kind: RuleKind; value?: number; tag?: string };

export interface RouteCandidate {
  /** the endpoint id given to add() */
  endpoint: string;
  estimate: Estimate;
  /** for the reasons; default the endpoint id */
  name?: string;
}

export interface RouteChoice {
  /** null when every candidate was dropped */
  endpoint: string | null;
  /** into the candidates; -1 when every candidate was dropped */
  index: number;
  /** the candidates a filter dropped */
  dropped: number[];
  /** one line per rule that acted, with the figures it used and their sources */
  reasons: string;
}

/** What a draft check or a draft-then-audit did (sipp_audit_decision). */
export interface AuditDecision {
  outcome: 'draft' | 'escalated' | 'draft_failed';
  /** the draft's confidence (geometric mean token probability); NaN when unknown */
  confidence: number;
  minProb: number;
  nTokens: number;
  /** draft_failed: nothing of the draft was produced, so the app may send it elsewhere */
  retrySafe: boolean;
  reasons: string;
}

export class SippError extends Error {
  status: string;
  constructor(status: string, message: string) {
    super(message);
    this.name = 'SippError';
    this.status = status;
  }
}
