// Types of the Sipp Node binding (lib/index.js). Reference: docs/bindings.md.

/** Status names of sipp.h. */
export type SippErrorKind =
  | 'invalid_argument' | 'not_found' | 'unsupported' | 'model_invalid' | 'out_of_memory' | 'busy'
  | 'cancelled' | 'deadline_exceeded' | 'context_overflow' | 'io_error' | 'internal' | 'closed'
  | 'timeout' | 'authentication' | 'authorization' | 'rate_limited' | 'quota_exceeded'
  | 'model_not_found' | 'overloaded' | 'upstream_error' | 'transport' | 'upstream_timeout'
  | 'no_route';

/** A failed call or run. */
export class SippError extends Error {
  readonly name: 'SippError';
  /** The status name of sipp.h. */
  readonly kind: SippErrorKind;
  /** The status number of sipp.h. */
  readonly status: number;
  /** The remote peer's error code (sipp_response.error_code: a gateway envelope's
   *  'authentication', 'authorization', 'admission'..., an OpenAI code), or "". */
  readonly code: string;
  /** The HTTP status of a remote answer, or 0. */
  readonly httpStatus: number;
  /** The errno or HTTP status a failing call reported (sipp_error.subcode), or 0. */
  readonly subcode: number;
  /** The remote peer's request id, or "". */
  readonly requestId: string;
  /** Seconds the peer asked to wait (rate limits), when it said. */
  readonly retryAfterS?: number;
}

export interface TextOptions {
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  seed?: number;
  stop?: string | string[];
  contextKey?: string;
  cacheScope?: string;
  grammar?: string;
  jsonSchema?: string | object;
  timeoutMs?: number;
  ignoreEos?: boolean;
  /** Remote only: endpoint-specific options merged into the request body. */
  extra?: Record<string, unknown>;
  /** The same as `extra`, already JSON-encoded (give one of the two). */
  extraJson?: string;
  /** Remote only: sent as x-request-id (printable ASCII, at most 128 bytes). */
  requestId?: string;
  /**
   * Multimodal (docs/multimodal.md): encoded images (PNG, JPEG, GIF, BMP), one part each; in a
   * chat they go to the last user message, at its `<__media__>` markers or in front of its text.
   * A local endpoint needs a projector (`mmproj`).
   */
  images?: Array<Uint8Array | ArrayBuffer>;
  /** Aborting it cancels the run (the response then has finishReason 'cancelled'). */
  signal?: AbortSignal;
  /** Each output token's log-probability (Response.logprobs). */
  logprobs?: boolean;
  /** With logprobs: 0..20 alternatives per token. */
  topLogprobs?: number;
  /** Chat: tools the model may call (issue 18). */
  tools?: (Tool | { type: 'function'; function: Tool })[];
  /** 'auto' (default), 'none', 'required' or a tool's name. */
  toolChoice?: 'auto' | 'none' | 'required' | string;
  /** More than one call per answer (default true). */
  parallelToolCalls?: boolean;
  /** A thinking model's reasoning: 'separate' (default: Response.reasoning), 'inline', 'drop'. */
  reasoning?: 'separate' | 'inline' | 'drop';
}

/** A tool the model may call: a name ([A-Za-z0-9_-], 1-64), what it does, a JSON Schema of its
 *  arguments (an object schema, as an object or JSON text). */
export interface Tool {
  name: string;
  description?: string;
  parameters?: object | string;
}

/** A call the model made; `arguments` is a JSON object as text. */
export interface ToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** One piece of a chat's stream (Run.deltas()). A call's first delta has toolId and toolName,
 *  later ones (same toolIndex) pieces of its arguments. */
export interface Delta {
  kind: 'content' | 'reasoning' | 'toolCall';
  text: string;
  toolIndex?: number;
  toolId?: string;
  toolName?: string;
}

/** One output token's log-probability and its most likely alternatives. */
export interface TokenLogprob {
  token: string;
  logprob: number;
  top: { token: string; logprob: number }[];
}

export interface EmbedOptions {
  normalize?: boolean;
  /** Remote only: merged into the request body, e.g. {dimensions: 256}. */
  extra?: Record<string, unknown>;
  extraJson?: string;
  /** Remote only: sent as x-request-id. */
  requestId?: string;
  signal?: AbortSignal;
}

/** Static headers sent with every request (values are treated as secrets). */
export type Headers = Record<string, string> | string[];

// LocalOptions is generated from include/sipp_settings.h (scripts/gen-settings).
import { LocalOptions } from './local_options';
export { LocalOptions };

export interface ProviderOptions {
  provider?: 'openai' | 'openai_compatible' | 'anthropic';
  model: string;
  baseUrl?: string;
  apiKey?: string;
  apiKeyEnv?: string;
  /** Anthropic only: the anthropic-version header. */
  version?: string;
  headers?: Headers;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** Allow private-network and link-local addresses (and plain http to them); default false. */
  allowPrivateNetwork?: boolean;
}

export interface GatewayOptions {
  /** The gateway's public listener, e.g. 'https://gw.example.com'. */
  baseUrl: string;
  /** The gateway's target name. */
  target: string;
  /** 'bearer' (default): Authorization: Bearer; 'header': `${authHeader}: token`; 'none'. */
  auth?: 'none' | 'bearer' | 'header';
  token?: string;
  /** Environment variable holding the token (default SIPP_GATEWAY_TOKEN). */
  tokenEnv?: string;
  authHeader?: string;
  headers?: Headers;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** Allow private-network and link-local addresses (and plain http to them); default false. */
  allowPrivateNetwork?: boolean;
}

export type EndpointDescriptor =
  | ({ kind: 'local'; id: string; modelPath: string } & LocalOptions)
  | ({ kind: 'provider'; id: string } & ProviderOptions)
  | ({ kind: 'gateway'; id: string } & GatewayOptions);

export interface Message {
  role: 'system' | 'user' | 'assistant' | 'tool';
  /** null: an assistant turn that only calls tools */
  content: string | null;
  /** assistant: the calls it made (arguments as JSON text or an object) */
  toolCalls?: (ToolCall | { id: string; name: string; arguments: object })[];
  /** tool: the id of the call this result answers */
  toolCallId?: string;
}

/** The message that answers a tool call. */
export function toolResult(call: ToolCall | string, content: string): Message;
/** The answer of a response as an assistant message with its tool calls. */
export function assistantMessage(response: Response): Message;

export interface TokenBatch {
  text: string;
  nTokens: number;
}

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
  cacheSource: 'none' | 'live' | 'snapshot';
  cachedTokens: number;
  /** Media encoding (the projector) within prefillMs. */
  encodeMs: number;
  /** Media parts encoded for this request (not reused from the cache). */
  mediaChunks: number;
}

export interface Response {
  text: string;
  finishReason: 'stop' | 'length' | 'cancelled' | 'tool_calls' | 'none';
  usage: Usage;
  stats: Stats;
  /** embed only */
  embedding: Float32Array | null;
  normalized: boolean;
  /** remote endpoints: the HTTP status (0 for local), the peer's request id and error code */
  httpStatus: number;
  requestId: string;
  errorCode: string;
  /** the calls the answer ends with (finishReason 'tool_calls') */
  toolCalls: ToolCall[];
  /** a thinking model's reasoning (reasoning 'separate'), else '' */
  reasoning: string;
  /** with logprobs: one entry per output token, else null */
  logprobs: TokenLogprob[] | null;
  /** The answer as an assistant message (with its calls), to send back with the results. */
  message(): Message;
}

export interface EndpointInfo {
  canGenerate: boolean;
  canChat: boolean;
  canEmbed: boolean;
  nCtx: number;
  nCtxTrain: number;
  nEmbd: number;
  nParallel: number;
  nParams: number;
  sizeBytes: number;
  architecture: string;
  description: string;
  /** Images in query/chat (a vision projector is loaded). */
  vision: boolean;
  /** Audio in query/chat (an audio encoder is loaded). */
  audioIn: boolean;
  /** Speech out (not yet: always false for local endpoints). */
  audioOut: boolean;
}

export interface EngineStats {
  running: number;
  queued: number;
  completed: number;
  cancelled: number;
  failed: number;
  rejectedBusy: number;
  promptTokens: number;
  generatedTokens: number;
  ticks: number;
  batchTokens: number;
  batchFill: number;
  cacheHits: number;
  cacheMisses: number;
  cacheEvictions: number;
  cacheRamBytes: number;
  cacheDiskBytes: number;
  /** Times the watchdog saw no scheduler round for stallAlarmMs with work pending. */
  stalls: number;
  /** True while it sees that now. */
  stalled: boolean;
  /** Media chunks encoded (images, audio clips) and the time spent on them. */
  mediaEncoded: number;
  mediaEncodeMs: number;
}

/** One request. Iterate it for token batches; await `response` for the end. */
export class Run implements AsyncIterable<TokenBatch> {
  readonly endpoint: Endpoint;
  /** Resolves at the end; rejects with SippError if the run failed. Reading it makes the run
   *  read to its end (batches not yet iterated stay available). */
  readonly response: Promise<Response>;
  /** True once the end of the run has reached JS. */
  readonly done: boolean;
  result(): Promise<Response>;
  /** Stops the run (any time); it ends with finishReason 'cancelled' and the text so far. */
  cancel(): void;
  /** Leaving a for-await loop early cancels the run. */
  [Symbol.asyncIterator](): AsyncIterator<TokenBatch>;
  /** The stream as deltas (content, reasoning, tool-call pieces) instead of batches: call it
   *  before iterating the run. */
  deltas(): AsyncIterator<Delta> & AsyncIterable<Delta>;
}

export class Endpoint {
  readonly client: Client;
  readonly id: string;
  readonly kind: 'local' | 'provider' | 'gateway';
  /** True once removed, replaced or its client closed. */
  readonly closed: boolean;
  query(prompt: string, options?: TextOptions): Run;
  chat(messages: string | Message[], options?: TextOptions): Run;
  embed(text: string, options?: EmbedOptions): Run;
  info(): EndpointInfo;
  stats(): EngineStats;
  /** Estimates a query or a chat without running it (docs/routing.md). */
  estimate(prompt: string | { messages: string | Message[] }, options?: TextOptions): Estimate;
  /** The prices estimates report, per million tokens (null = unknown). */
  setPrices(inputPerMtok: number | null, outputPerMtok: number | null): void;
}

/** A figure and where it comes from; `unknown` has value 0: do not use it. */
export interface Figure {
  value: number;
  /** requests it was measured over (0 when not measured) */
  samples: number;
  source: 'unknown' | 'measured' | 'configured' | 'predicted';
}

/** What an endpoint expects of one prepared request (sipp_estimate). */
export interface Estimate {
  local: boolean;
  loaded: boolean;
  healthy: boolean;
  promptTokens: number;
  cachedTokens: number;
  cacheSource: 'none' | 'live' | 'snapshot';
  cacheOnDisk: boolean;
  prefillTokens: number;
  nCtx: number;
  running: number;
  queued: number;
  freeSlots: number;
  ttftMs: Figure;
  decodeTokensPerS: Figure;
  totalMs: Figure;
  priceInputPerMtok: Figure;
  priceOutputPerMtok: Figure;
  errorRate: Figure;
  busyRate: Figure;
}

export type RuleKind =
  | 'local_only_tag' | 'skip_unavailable' | 'fit_context' | 'max_ttft_ms' | 'max_cost'
  | 'prefer_warm' | 'prefer_local_under_ttft' | 'prefer_cheapest' | 'escalate_low_confidence';

export type Rule =
  | RuleKind
  | [RuleKind, number | string]
  | { kind: RuleKind; value?: number; tag?: string };

export interface RouteCandidate {
  endpoint: Endpoint;
  estimate: Estimate;
  /** for the reasons; default the endpoint's id */
  name?: string;
}

export interface RouteChoice {
  /** null when every candidate was dropped */
  endpoint: Endpoint | null;
  /** into the candidates; -1 when every candidate was dropped */
  index: number;
  /** the candidates a filter dropped */
  dropped: number[];
  /** one line per rule that acted, with the figures it used and their sources */
  reasons: string;
}

/** What a draft check or a draft-then-audit decided (sipp_audit_decision). */
export interface AuditDecision {
  /** 'draft': the draft stands; 'escalated': the request went to the target; 'draft_failed':
   *  the draft failed and was not sent elsewhere */
  outcome: 'none' | 'draft' | 'escalated' | 'draft_failed';
  /** the draft's geometric mean token probability; NaN when unknown */
  confidence: number;
  /** its least likely token's probability; NaN when unknown */
  minProb: number;
  /** the tokens the confidence was computed over */
  nTokens: number;
  /** draft_failed: nothing of the draft was produced, the app may send it elsewhere */
  retrySafe: boolean;
  /** one line per rule or check that acted, with its figures */
  reasons: string;
}

/** An ordered, explainable set of routing rules (sipp_policy). choose() sends nothing. */
export class Policy {
  constructor(rules: Rule[]);
  choose(candidates: Array<RouteCandidate | [Endpoint, Estimate]>,
    options?: { tags?: string[]; maxTokens?: number }): RouteChoice;
  /** sipp_policy_check_draft on a finished run's response. Pure. */
  checkDraft(response: Response): AuditDecision;
  /**
   * Draft-then-audit (sipp_route_draft_audit): the draft runs (not streamed to the caller) and
   * is checked off the JS thread; `run` is the finished draft ('draft'), the target's started
   * run ('escalated', with the draft in a last user message when sendDraft, the default) or
   * the failed draft ('draft_failed', never sent elsewhere). Rejects when the draft is refused
   * at submission (nothing was sent anywhere).
   */
  draftAudit(draft: Endpoint, target: Endpoint, messages: string | Message[],
    options?: TextOptions & { sendDraft?: boolean }): Promise<{ run: Run; decision: AuditDecision }>;
}

export class Client {
  constructor(options?: { logLevel?: 'none' | 'error' | 'warn' | 'info' | 'debug' });
  /** Registers an endpoint; a local model loads off the JS thread. Re-adding an id replaces it. */
  add(descriptor: EndpointDescriptor): Promise<Endpoint>;
  addLocal(id: string, modelPath: string, options?: LocalOptions): Promise<Endpoint>;
  addProvider(id: string, options: ProviderOptions): Promise<Endpoint>;
  addGateway(id: string, options: GatewayOptions): Promise<Endpoint>;
  endpoint(id: string): Endpoint | undefined;
  remove(id: string): void;
  query(endpoint: Endpoint | string, prompt: string, options?: TextOptions): Run;
  chat(endpoint: Endpoint | string, messages: string | Message[], options?: TextOptions): Run;
  embed(endpoint: Endpoint | string, text: string, options?: EmbedOptions): Run;
  /** Cancels every run, stops the engines and frees the client; runs stay readable. */
  close(): void;
}

/** The version of the loaded libsipp. */
export function version(): string;

/** Live native runs and glibc's malloc heap in use (-1 where unknown): for leak checks. */
export function diagnostics(): { liveRuns: number; liveHandles: number; heapBytes: number };
