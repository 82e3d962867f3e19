// SippClient: the page-side API. Local endpoints run in the host (a Web Worker by default,
// see host.ts); gateway endpoints run here with fetch (gateway.ts). Both return the same Run.

import { GatewayEndpoint } from './gateway.js';
import { describeAdapter, inspectAdapter } from './adapter.js';
import { Host } from './host.js';
import { Policy, Signals } from './routing.js';
import type { HostEvent, HostRequest, LoadSource } from './protocol.js';
import type {
  AuditDecision, BackendReport, EmbedOptions, EndpointInfo, EndpointSpec, Estimate, LocalModel,
  Message, ProgressEvent, RequestOptions, Run, SippClientOptions, SippResponse,
} from './types.js';
import { SippError } from './types.js';

const GiB = 1024 * 1024 * 1024;

// The request draftThenAudit adds for the target when it sends the draft (as in C).
const AUDIT_ASK = 'A quick draft answer to the question above follows. Check it; answer the ' +
  'question correctly and completely, fixing the draft where it is wrong.\n\nDraft:\n';

/** An async queue of text batches that ends when the run ends. */
class TokenStream implements AsyncIterable<string> {
  private items: string[] = [];
  private ended = false;
  private waiter: (() => void) | null = null;
  push(t: string) { this.items.push(t); this.wake(); }
  end() { this.ended = true; this.wake(); }
  private wake() { const w = this.waiter; this.waiter = null; w?.(); }
  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      if (this.items.length) { yield this.items.shift()!; continue; }
      if (this.ended) return;
      await new Promise<void>((ok) => { this.waiter = ok; });
    }
  }
}

interface PendingRun { stream: TokenStream; resolve: (r: SippResponse) => void; reject: (e: Error) => void }

/** Which artifact the page can run: the pthread one needs cross-origin isolation. */
export function pickVariant(want: 'auto' | 'st' | 'mt' = 'auto'): 'st' | 'mt' {
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true &&
    typeof SharedArrayBuffer !== 'undefined';
  if (want === 'mt' && !isolated) throw new SippError('unsupported', 'the pthread runtime needs a cross-origin isolated page (COOP/COEP headers)');
  if (want === 'st') return 'st';
  return isolated ? 'mt' : 'st';
}

/**
 * Reports the page's WebGPU adapter and what `want` makes of it before any model is seen:
 * 'cpu' selects the CPU; 'webgpu' selects WebGPU when there is an adapter (else throws
 * 'unsupported'); 'auto' selects WebGPU on a hardware adapter (a software one, SwiftShader,
 * counts as none unless `allowSoftwareAdapter`). Each add() then checks the model itself
 * (architecture, tensor types, sizes) in the host; see EndpointInfo.runtime.
 */
export async function detectBackend(want: 'cpu' | 'webgpu' | 'auto' = 'auto', opts: { allowSoftwareAdapter?: boolean } = {}): Promise<BackendReport> {
  const a = await inspectAdapter((navigator as unknown as { gpu?: unknown }).gpu);
  const webgpu = a?.info ?? null;
  if (want === 'webgpu' && !webgpu) throw new SippError('unsupported', "backend 'webgpu': no WebGPU adapter");
  if (want === 'cpu') return { selected: 'cpu', reason: 'backend cpu requested', webgpu };
  if (!webgpu) return { selected: 'cpu', reason: 'no WebGPU adapter: using the CPU', webgpu };
  if (want === 'auto' && webgpu.isFallback && !opts.allowSoftwareAdapter)
    return { selected: 'cpu', reason: `the WebGPU adapter is a software one (${describeAdapter(webgpu)}), counted as no GPU: using the CPU`, webgpu };
  return { selected: 'webgpu', reason: `WebGPU adapter ${describeAdapter(webgpu)}`, webgpu };
}

/** The `sha256` of a local spec, lowercased: one hash for a URL or a File, one per shard. */
function checkSha256(v: unknown, source: LoadSource): string | string[] | undefined {
  if (v == null) return undefined;
  const one = (h: unknown) => {
    if (typeof h !== 'string' || !/^[0-9a-fA-F]{64}$/.test(h)) throw new SippError('invalid_argument', 'sha256 must be 64 hex digits');
    return h.toLowerCase();
  };
  if (source.kind === 'shards') {
    if (!Array.isArray(v) || v.length !== source.urls.length) throw new SippError('invalid_argument', 'sha256 of a shard list must be a list with one hash per shard');
    return v.map(one);
  }
  if (Array.isArray(v)) throw new SippError('invalid_argument', 'sha256 must be one hash for a URL or a File');
  return one(v);
}

export class SippClient {
  private opts: Required<Pick<SippClientOptions, 'mode' | 'backend' | 'threads' | 'shardThresholdBytes' | 'shardSizeBytes'>> & SippClientOptions;
  private worker: Worker | null = null;
  private host: Host | null = null;
  private ready: Promise<{ variant: 'st' | 'mt'; nThreads: number }> | null = null;
  private nextId = 1;
  private replies = new Map<number, { ok: (v: any) => void; fail: (e: Error) => void; progress?: (e: ProgressEvent) => void }>();
  private runs = new Map<number, PendingRun>();
  private endpoints = new Map<string, { kind: 'local'; info: EndpointInfo } | { kind: 'gateway'; gw: GatewayEndpoint; info: EndpointInfo; signals: Signals }>();
  private backendReport: Promise<BackendReport> | null = null;

  constructor(options: SippClientOptions = {}) {
    this.opts = {
      mode: 'worker', backend: 'cpu', threads: 'auto',
      shardThresholdBytes: 2 * GiB, shardSizeBytes: 512 * 1024 * 1024, ...options,
    };
    if (this.opts.shardSizeBytes < 1024 * 1024) throw new SippError('invalid_argument', 'shardSizeBytes must be at least 1 MiB');
    const r = this.opts.downloadRetries;
    if (r != null && !(Number.isInteger(r) && r >= 0 && r <= 100)) throw new SippError('invalid_argument', 'downloadRetries must be an integer in [0, 100]');
    const age = this.opts.partialMaxAgeMs;
    if (age != null && !(typeof age === 'number' && age >= 0)) throw new SippError('invalid_argument', 'partialMaxAgeMs must be a number >= 0');
  }

  /** The backend decision ('auto' reports the WebGPU adapter). */
  backend(): Promise<BackendReport> {
    this.backendReport ??= detectBackend(this.opts.backend, { allowSoftwareAdapter: this.opts.allowSoftwareAdapter });
    return this.backendReport;
  }

  private base(): string {
    return this.opts.wasmBaseUrl ?? new URL('./wasm/', import.meta.url).href;
  }

  private send(m: HostRequest) {
    if (this.worker) this.worker.postMessage(m);
    else void this.host!.handle(m);
  }

  private onEvent = (e: HostEvent) => {
    switch (e.type) {
      case 'reply': {
        const r = this.replies.get(e.reqId);
        if (!r) return;
        this.replies.delete(e.reqId);
        if (e.error) r.fail(new SippError(e.error.status, e.error.message));
        else r.ok(e.value);
        return;
      }
      case 'progress': this.replies.get(e.reqId)?.progress?.({ endpoint: '', phase: e.phase, loaded: e.loaded, total: e.total,
                                                               ...(e.kind ? { kind: e.kind, reason: e.reason } : {}) }); return;
      case 'started': return;
      case 'runError': {
        const r = this.runs.get(e.runId);
        if (!r) return;
        this.runs.delete(e.runId);
        r.stream.end();
        r.reject(new SippError(e.error.status, e.error.message));
        return;
      }
      case 'tokens': this.runs.get(e.runId)?.stream.push(e.text); return;
      case 'done': {
        const r = this.runs.get(e.runId);
        if (!r) return;
        this.runs.delete(e.runId);
        r.stream.end();
        r.resolve(e.response);
      }
    }
  };

  private request<T>(m: Record<string, unknown> & { type: string }, progress?: (e: ProgressEvent) => void): Promise<T> & { reqId: number } {
    const reqId = this.nextId++;
    const p = new Promise<T>((ok, fail) => {
      this.replies.set(reqId, { ok, fail, progress });
      this.send({ ...m, reqId } as HostRequest);
    }) as Promise<T> & { reqId: number };
    p.reqId = reqId;
    return p;
  }

  /** Starts the runtime (worker and wasm); add() calls it. */
  start(): Promise<{ variant: 'st' | 'mt'; nThreads: number }> {
    if (this.ready) return this.ready;
    // The WebGPU backend runs with the single-thread runtime (the engine's KV operations call
    // the pipeline on the host's thread): 'webgpu' picks it when threads are 'auto'.
    const variant = this.opts.backend === 'webgpu' && this.opts.threads === 'auto' ? 'st' : pickVariant(this.opts.threads);
    if (this.opts.mode === 'worker') {
      const url = this.opts.workerUrl ?? new URL('./sipp-worker.js', import.meta.url).href;
      this.worker = new Worker(url);
      this.worker.onmessage = (e) => this.onEvent(e.data as HostEvent);
    } else {
      this.host = new Host((e) => queueMicrotask(() => this.onEvent(e)), true);
    }
    const hc = (globalThis.navigator?.hardwareConcurrency ?? 4) || 4;
    const nThreads = this.opts.nThreads ?? Math.min(hc, 4);
    this.ready = this.request({ type: 'init', wasmBaseUrl: this.base(), variant, nThreads });
    return this.ready;
  }

  /** Registers an endpoint. Local: downloads (or finds in OPFS) and loads the model. */
  async add(id: string, spec: EndpointSpec): Promise<EndpointInfo> {
    if (typeof id !== 'string' || !id) throw new SippError('invalid_argument', 'endpoint id is required');
    if (this.endpoints.has(id)) throw new SippError('invalid_argument', `endpoint '${id}' already exists`);
    if (spec.kind === 'gateway') {
      const gw = new GatewayEndpoint(spec);
      const info: EndpointInfo = { kind: 'gateway', canGenerate: true, canChat: true, canEmbed: true };
      this.endpoints.set(id, { kind: 'gateway', gw, info, signals: new Signals() });
      return info;
    }
    if (spec.kind !== 'local') throw new SippError('invalid_argument', "endpoint kind must be 'local' or 'gateway'");
    const want = spec.backend ?? this.opts.backend;
    if (want !== 'cpu' && want !== 'webgpu' && want !== 'auto') throw new SippError('invalid_argument', "backend must be 'cpu', 'webgpu' or 'auto'");
    if (this.opts.backend === 'auto' && this.opts.threads === 'auto' && !this.ready) {
      // 'auto' with a usable adapter: the single-thread runtime, which the GPU path needs.
      if ((await this.backend()).selected === 'webgpu') this.opts.threads = 'st';
    }
    const rt = await this.start();
    let source: LoadSource;
    const s = spec.source;
    if (typeof s === 'string') source = { kind: 'url', url: new URL(s, globalThis.location?.href).href };
    else if (Array.isArray(s)) {
      if (!s.length || s.some((u) => typeof u !== 'string')) throw new SippError('invalid_argument', 'shard source must be a non-empty list of URLs');
      source = { kind: 'shards', urls: s.map((u) => new URL(u, globalThis.location?.href).href) };
    } else if (s instanceof Blob) source = { kind: 'blob', blob: s };
    else throw new SippError('invalid_argument', 'local source must be a URL, a File or a list of shard URLs');
    const sha256 = checkSha256(spec.sha256, source);
    const progress = (e: ProgressEvent) => {
      const ev = { ...e, endpoint: id };
      spec.onProgress?.(ev);
      this.opts.onProgress?.(ev);
    };
    const p = this.request<any>({
      type: 'load', endpoint: id, source, cache: spec.cache !== false, nCtx: spec.nCtx,
      nParallel: spec.nParallel, warmup: spec.warmup !== false, shardThresholdBytes: this.opts.shardThresholdBytes,
      shardSizeBytes: this.opts.shardSizeBytes, sha256, maxRetries: this.opts.downloadRetries ?? 5,
      partialMaxAgeMs: this.opts.partialMaxAgeMs ?? 7 * 24 * 3600 * 1000,
      backend: want, allowSoftwareAdapter: this.opts.allowSoftwareAdapter === true,
    }, progress);
    const onAbort = () => this.send({ type: 'abortLoad', loadReq: p.reqId });
    spec.signal?.addEventListener('abort', onAbort, { once: true });
    let v: any;
    try { v = await p; } finally { spec.signal?.removeEventListener('abort', onAbort); }
    const info: EndpointInfo = {
      kind: 'local', architecture: v.architecture, description: v.description, nCtx: v.nCtx,
      nEmbd: v.nEmbd, nParams: v.nParams, sizeBytes: v.sizeBytes, canGenerate: v.canGenerate,
      canChat: v.canChat, canEmbed: v.canEmbed, cacheId: v.cacheId, loadedFrom: v.loadedFrom,
      shards: v.shards, warmupMs: v.warmupMs,
      runtime: { threads: rt.variant, nThreads: rt.nThreads, backend: v.backend, backendReason: v.backendReason, adapter: v.adapter ?? null },
    };
    this.endpoints.set(id, { kind: 'local', info });
    return info;
  }

  info(id: string): EndpointInfo | undefined { return this.endpoints.get(id)?.info; }

  async remove(id: string): Promise<void> {
    const ep = this.endpoints.get(id);
    if (!ep) return;
    this.endpoints.delete(id);
    if (ep.kind === 'local') await this.request({ type: 'unload', endpoint: id });
  }

  async listLocal(): Promise<LocalModel[]> {
    await this.start();
    return this.request({ type: 'listLocal' });
  }

  async removeLocal(id: string): Promise<boolean> {
    await this.start();
    return this.request({ type: 'removeLocal', id });
  }

  query(prompt: string, options: RequestOptions = {}): Run { return this.submit('query', prompt, options); }
  chat(messages: Message[], options: RequestOptions = {}): Run { return this.submit('chat', messages, options); }
  embed(text: string, options: EmbedOptions = {}): Run { return this.submit('embed', text, options); }

  private pick(name?: string) {
    if (name != null) {
      const ep = this.endpoints.get(name);
      if (!ep) throw new SippError('not_found', `no endpoint '${name}'`);
      return [name, ep] as const;
    }
    const first = this.endpoints.entries().next();
    if (first.done) throw new SippError('not_found', 'no endpoint: add() one first');
    return first.value;
  }

  private submit(kind: 'query' | 'chat' | 'embed', input: unknown, o: RequestOptions & EmbedOptions): Run {
    const stream = new TokenStream();
    let cancel = () => {};
    const response = (async (): Promise<SippResponse> => {
      const [name, ep] = this.pick(o.endpoint);
      if (kind === 'chat' && (!Array.isArray(input) || !input.length)) throw new SippError('invalid_argument', 'chat: no messages');
      if (kind !== 'chat' && (typeof input !== 'string' || !input)) throw new SippError('invalid_argument', `${kind}: the ${kind === 'embed' ? 'text' : 'prompt'} is empty`);
      if (ep.kind === 'gateway') {
        const ac = new AbortController();
        cancel = () => ac.abort();
        if (o.signal?.aborted) ac.abort();
        o.signal?.addEventListener('abort', cancel, { once: true });
        try {
          const body = kind === 'embed' ? { model: ep.gw.target, input } : ep.gw.body(kind, input as string, o, true);
          const r = await ep.gw.run(kind, body, ac.signal, (t) => stream.push(t));
          ep.signals.record(r); // this client's own requests: the gateway's routing signals
          return r;
        } finally {
          o.signal?.removeEventListener('abort', cancel);
          stream.end();
        }
      }
      const runId = this.nextId++;
      const opts: Record<string, unknown> = { ...o };
      delete opts.signal;
      delete opts.endpoint;
      const p = new Promise<SippResponse>((resolve, reject) => this.runs.set(runId, { stream, resolve, reject }));
      cancel = () => this.send({ type: 'cancel', runId });
      if (o.signal?.aborted) queueMicrotask(cancel);
      o.signal?.addEventListener('abort', cancel, { once: true });
      this.send({ type: 'run', runId, endpoint: name, kind, input, opts });
      try { return await p; } finally { o.signal?.removeEventListener('abort', cancel); }
    })();
    response.catch(() => stream.end());
    return { response, tokens: stream, cancel: () => cancel() };
  }

  // ---- routing (docs/routing.md "In the browser") ------------------------------------------

  /**
   * What `options.endpoint` expects of a query (a prompt) or a chat (messages), without running
   * it. Local: from the engine (exact tokens, the prefix cached for `contextKey`, the load, TTFT
   * predicted by its cost model); the tokens are kept for the run of the same text that
   * follows. Gateway: moving averages of this client's own requests, configured prices,
   * error and busy shares, health. Each figure says whether it is measured, configured,
   * predicted or unknown. Rejects (SippError) on bad input or an unknown endpoint.
   */
  async estimate(input: string | Message[], options: RequestOptions = {}): Promise<Estimate> {
    const [name, ep] = this.pick(options.endpoint);
    const kind = Array.isArray(input) ? 'chat' : 'query';
    if (kind === 'chat' && !(input as Message[]).length) throw new SippError('invalid_argument', 'estimate: no messages');
    if (kind === 'query' && (typeof input !== 'string' || !input)) throw new SippError('invalid_argument', 'estimate: the prompt is empty');
    if (ep.kind === 'gateway') return ep.signals.estimate();
    const opts: Record<string, unknown> = { ...options };
    delete opts.signal;
    delete opts.endpoint;
    return this.request<Estimate>({ type: 'estimate', endpoint: name, kind, input, opts });
  }

  /** Sets the prices an endpoint's estimates report, per million tokens in the app's currency
   *  (null or negative: unknown). */
  async setPrices(endpoint: string, inputPerMtok: number | null, outputPerMtok: number | null): Promise<void> {
    const [name, ep] = this.pick(endpoint);
    for (const p of [inputPerMtok, outputPerMtok]) {
      if (p != null && (typeof p !== 'number' || Number.isNaN(p))) throw new SippError('invalid_argument', 'prices must be numbers or null');
    }
    if (ep.kind === 'gateway') { ep.signals.setPrices(inputPerMtok, outputPerMtok); return; }
    await this.request({ type: 'setPrices', endpoint: name, inputPerMtok: inputPerMtok ?? -1, outputPerMtok: outputPerMtok ?? -1 });
  }

  /**
   * Draft-then-audit (sipp_route_draft_audit): runs the chat on the local `draftEndpoint` with
   * log-probabilities and without streaming it to the caller, checks it (policy.checkDraft)
   * and then: 'draft': `run` is the finished draft; 'escalated': `run` is the chat on
   * `targetEndpoint`, started (it streams as any run), with a last user message carrying the
   * draft when `sendDraft` (the default), and without local-only options (contextKey, ...)
   * when the target is a gateway; 'draft_failed': `run` is the failed draft, never sent
   * elsewhere (decision.retrySafe says whether the app may). A draft refused at submission
   * gives `run` null and 'draft_failed' with retrySafe. No stream the caller saw is switched.
   */
  async draftThenAudit(policy: Policy, draftEndpoint: string, targetEndpoint: string, messages: Message[],
                       options: RequestOptions & { sendDraft?: boolean } = {}): Promise<{ run: Run | null; decision: AuditDecision }> {
    if (!(policy instanceof Policy)) throw new SippError('invalid_argument', 'draftThenAudit: a Policy is required');
    const [, draftEp] = this.pick(draftEndpoint);
    const [, targetEp] = this.pick(targetEndpoint);
    if (draftEp.kind !== 'local') throw new SippError('invalid_argument', 'draftThenAudit: the draft endpoint must be local (a gateway reports no log-probabilities)');
    if (!Array.isArray(messages) || !messages.length) throw new SippError('invalid_argument', 'draftThenAudit: no messages');
    const { sendDraft = true, ...o } = options;
    const draft = this.chat(messages, { ...o, endpoint: draftEndpoint, logprobs: true });
    let r: SippResponse;
    try {
      r = await draft.response;
    } catch (e) {
      const err = e as SippError;
      return { run: null, decision: { outcome: 'draft_failed', confidence: NaN, minProb: NaN, nTokens: 0, retrySafe: true,
        reasons: `draft refused at submission (${err.status ?? 'internal'}: ${err.message}): the app may send it elsewhere\n` } };
    }
    const decision = policy.checkDraft(r);
    if (decision.outcome !== 'escalated') return { run: draft, decision };
    const t: RequestOptions = { ...o, endpoint: targetEndpoint };
    delete t.logprobs;
    if (targetEp.kind === 'gateway') for (const k of ['contextKey', 'grammar', 'jsonSchema', 'ignoreEos'] as const) delete t[k];
    const m = sendDraft ? [...messages, { role: 'user' as const, content: AUDIT_ASK + r.text }] : messages;
    decision.reasons += `escalated to the target${sendDraft ? ' with the draft' : ' (question only)'}\n`;
    return { run: this.chat(m, t), decision };
  }

  /** Ends the worker; every run in flight ends. */
  close() {
    this.worker?.terminate();
    this.worker = null;
    for (const r of this.runs.values()) { r.stream.end(); r.reject(new SippError('closed', 'the client was closed')); }
    this.runs.clear();
  }
}
