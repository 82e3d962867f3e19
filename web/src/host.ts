// The engine host: owns the wasm module, the loaded models and their runs. It runs in the Web
// Worker (worker.ts) or, in main-thread mode, on the page; the client talks to it only through
// messages (protocol.ts), so both modes behave alike.
//
// Driving the engine: the single-thread artifact has no engine thread, so the host calls
// sippw_step() (one admission + one decode tick) in slices of a few milliseconds, polls every
// run after each step and yields to the event loop between slices so that cancel messages get
// through. The pthread artifact's engine thread runs by itself; the host only polls.

import type { HostRequest, HostEvent } from './protocol.js';
import { findBySource, listLocal, removeLocal, storeFile, storeShards, storeUrl } from './store.js';
import { GpuModel, WebGpuLlama, describeAdapter, gpuUnsupported, inspectAdapter, kvOp, launchForward, parseGguf, requestDevice } from './gpu.js';
import type { AdapterInfo } from './types.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Module = any;

const SLICE_MS = 8;
// The load-time warm-up (see warmup()): runs of a prompt of about 14 tokens x REPEAT, each
// generating WARMUP_TOKENS, until one is no faster than the one before, at most
// WARMUP_MAX_RUNS runs; a run still going after WARMUP_MAX_MS is cancelled at its next step,
// so a large model pays at most one short prefill step more than that.
const WARMUP_MAX_RUNS = 12;
const WARMUP_MAX_MS = 1500;
const WARMUP_PROMPT_REPEAT = 2;
const WARMUP_TOKENS = 8;
// sizeof(sippw_text_opts) in wasm32 (web/wasm/sipp_wasm.c); its fields are written below.
const TEXT_OPTS_BYTES = 60;

interface Model { ptr: number; dir: string; mount: boolean; gpu?: GpuModel }
interface RunState { ptr: number; model: Model; kind: string; cancelled: boolean }

export class Host {
  private mod: Module | null = null;
  private variant: 'st' | 'mt' = 'st';
  private nThreads = 1;
  private models = new Map<string, Model>();
  private runs = new Map<number, RunState>();
  private pumping = false;
  private batch = 0; // sippw_batch scratch in the heap
  private aborts = new Map<number, AbortController>();
  private utf8 = new TextDecoder();
  // WebGPU: one device per host, made on the first model that runs on it; the pipelines by
  // Module.sippKv handle.
  private gpu: Promise<{ device: any; info: AdapterInfo } | null> | null = null;
  private gpuModels = new Map<number, WebGpuLlama>();
  private nextGpuId = 1;

  constructor(private post: (e: HostEvent) => void, private mainThread: boolean) {}

  async handle(m: HostRequest): Promise<void> {
    try {
      switch (m.type) {
        case 'init': return this.reply(m.reqId, await this.init(m.wasmBaseUrl, m.variant, m.nThreads));
        case 'load': return this.reply(m.reqId, await this.load(m));
        case 'unload': return this.reply(m.reqId, this.unload(m.endpoint));
        case 'listLocal': return this.reply(m.reqId, await listLocal());
        case 'removeLocal': return this.reply(m.reqId, await removeLocal(m.id));
        case 'abortLoad': this.aborts.get(m.loadReq)?.abort(); return;
        case 'run': return this.startRun(m);
        case 'estimate': return this.reply(m.reqId, this.estimate(m));
        case 'setPrices': return this.reply(m.reqId, this.setPrices(m.endpoint, m.inputPerMtok, m.outputPerMtok));
        case 'cancel': {
          const r = this.runs.get(m.runId);
          if (r && !r.cancelled) { r.cancelled = true; this.mod._sippw_run_cancel(r.ptr); this.pump(); }
          return;
        }
      }
    } catch (e) {
      const err = e as Error;
      if ('reqId' in m) this.post({ type: 'reply', reqId: m.reqId, error: { status: (err as any).status ?? 'internal', message: err.message ?? String(e) } });
      else if (m.type === 'run') this.post({ type: 'runError', runId: m.runId, error: { status: (err as any).status ?? 'internal', message: err.message } });
    }
  }

  private reply(reqId: number, value: unknown) { this.post({ type: 'reply', reqId, value }); }

  private async init(base: string, variant: 'st' | 'mt', nThreads: number) {
    if (this.mod) return { variant: this.variant, nThreads: this.nThreads };
    const url = new URL(`sipp-${variant}.js`, base).href;
    const g = globalThis as any;
    if (typeof g.importScripts === 'function') g.importScripts(url);
    else await new Promise<void>((ok, fail) => {
      const s = document.createElement('script');
      s.src = url; s.onload = () => ok(); s.onerror = () => fail(new Error(`cannot load ${url}`));
      document.head.appendChild(s);
    });
    this.mod = await g.createSippModule({
      locateFile: (p: string) => new URL(p, base).href,
      mainScriptUrlOrBlob: url,
      print: () => {},
      printErr: (s: string) => console.warn('[sipp]', s),
    });
    this.variant = variant;
    this.nThreads = variant === 'mt' ? Math.max(1, nThreads) : 1;
    this.batch = this.mod._malloc(16);
    this.mod.FS.mkdir('/models');
    this.mod.sippKv = (id: number, op: string, a: number, b: number, c: number) => {
      const m = this.gpuModels.get(id);
      return m ? kvOp(this.mod, m, op, a, b, c) : false;
    };
    return { variant, nThreads: this.nThreads };
  }

  private progress(reqId: number, phase: 'download' | 'verify' | 'store' | 'load', loaded: number, total: number,
                   kind?: 'resume' | 'retry' | 'restart', reason?: string) {
    this.post({ type: 'progress', reqId, phase, loaded, total, ...(kind ? { kind, reason } : {}) });
  }

  private async load(m: Extract<HostRequest, { type: 'load' }>) {
    const mod = this.mod;
    if (!mod) throw new Error('the runtime is not initialised');
    if (this.models.has(m.endpoint)) throw Object.assign(new Error(`endpoint '${m.endpoint}' is already loaded`), { status: 'invalid_argument' });
    const ac = new AbortController();
    this.aborts.set(m.reqId, ac);
    try {
      const opts = {
        shardThresholdBytes: m.shardThresholdBytes, shardSizeBytes: m.shardSizeBytes,
        progress: (p: 'download' | 'verify' | 'store', n: number, t: number, kind?: 'resume' | 'retry' | 'restart', reason?: string) =>
          this.progress(m.reqId, p, n, t, kind, reason),
        signal: ac.signal, sha256: m.sha256, maxRetries: m.maxRetries, partialMaxAgeMs: m.partialMaxAgeMs,
      };
      let stored: { meta: any; files: File[] } | null = null;
      let loadedFrom: 'network' | 'opfs' | 'file' = 'opfs';
      const src = m.source;
      if (src.kind === 'url' || src.kind === 'shards') {
        const key = src.kind === 'url' ? src.url : src.urls.join('\n');
        stored = m.cache ? await findBySource(key) : null;
        // An entry not verified against the sha256 asked for now is fetched (and verified) again.
        if (stored && m.sha256 && JSON.stringify(stored.meta.sha256) !== JSON.stringify(m.sha256)) stored = null;
        if (!stored) {
          loadedFrom = 'network';
          stored = src.kind === 'url' ? await storeUrl(src.url, opts) : await storeShards(src.urls, opts);
        }
      } else {
        loadedFrom = 'file';
        stored = await storeFile(src.blob, opts);
      }
      const dir = `/models/${m.endpoint.replace(/[^A-Za-z0-9_.-]/g, '_')}-${Date.now()}`;
      let mount = false;
      if (!this.mainThread) {
        // WORKERFS reads slices of the OPFS files straight into the heap (FileReaderSync).
        mod.FS.mkdir(dir);
        mod.FS.mount(mod.WORKERFS, { files: stored.files }, dir);
        mount = true;
      } else {
        mod.FS.mkdir(dir);
        for (const f of stored.files) mod.FS.writeFile(`${dir}/${f.name}`, new Uint8Array(await f.arrayBuffer()));
      }
      this.progress(m.reqId, 'load', 0, stored.meta.bytes);
      const path = `${dir}/${stored.files[0].name}`;
      let choice: { llama: WebGpuLlama | null; reason: string; adapter: AdapterInfo | null };
      try {
        choice = await this.chooseBackend(m, stored.files);
      } catch (e) {
        this.dropDir(dir, mount);
        throw e;
      }
      let ptr = 0, gpu: GpuModel | undefined;
      try {
        if (choice.llama) {
          const L = choice.llama, id = this.nextGpuId++;
          const split = mod.ccall('sippw_open_external', 'number', ['string', 'number', 'number', 'number', 'number', 'number', 'number'],
            [path, m.nParallel ?? 1, 0, L.hp.nVocab, L.hp.nEmbd, L.nCtx, id]);
          if (split) {
            gpu = { id, split, llama: L, inflight: null, logits: 0, logitsBytes: 0, lastError: '', closed: false };
            this.gpuModels.set(id, L);
            ptr = mod._sippw_split_engine(split);
          } else L.destroy();
        } else {
          ptr = mod.ccall('sippw_open', 'number', ['string', 'number', 'number', 'number', 'number'],
            [path, m.nCtx ?? 0, this.nThreads, m.nParallel ?? 1, 0]);
        }
      } catch (e) {
        choice.llama?.destroy();
        this.dropDir(dir, mount);
        throw cxxException(e, 'internal', 'the model could not be loaded');
      }
      if (!ptr) {
        this.dropDir(dir, mount);
        throw Object.assign(new Error(mod.UTF8ToString(mod._sippw_last_error())), { status: this.statusName() });
      }
      this.progress(m.reqId, 'load', stored.meta.bytes, stored.meta.bytes);
      this.models.set(m.endpoint, { ptr, dir, mount, gpu });
      const info = JSON.parse(mod.UTF8ToString(mod._sippw_info(ptr)));
      if (gpu) { // a vocab-only load knows no weights: the pipeline does
        const L = gpu.llama;
        if (!info.description) info.description = `${L.hp.arch} ${L.hp.nLayer} layers ${L.hp.nEmbd} wide, ${[...L.types].sort().join('/')}`;
        if (!info.sizeBytes) info.sizeBytes = stored.meta.bytes;
      }
      // The warm-up is for the wasm tiers (see warmup()); the GPU's pipelines are compiled at load.
      const warmupMs = m.warmup && info.canGenerate && !gpu ? await this.warmup(ptr) : 0;
      return { ...info, cacheId: stored.meta.id, loadedFrom, shards: stored.files.length,
               threads: this.variant, nThreads: this.nThreads, warmupMs,
               backend: gpu ? 'webgpu' : 'cpu', backendReason: choice.reason, adapter: choice.adapter };
    } finally {
      this.aborts.delete(m.reqId);
    }
  }

  /**
   * The backend of a model being loaded (docs/browser.md, Backends): for 'webgpu' or 'auto',
   * the pipeline loaded on this host's device, or why not. 'webgpu' throws ('unsupported')
   * naming what is missing; 'auto' falls back to the CPU with the reason.
   */
  private async chooseBackend(m: Extract<HostRequest, { type: 'load' }>, files: File[]):
      Promise<{ llama: WebGpuLlama | null; reason: string; adapter: AdapterInfo | null }> {
    const want = m.backend ?? 'cpu';
    if (want === 'cpu') return { llama: null, reason: 'backend cpu requested', adapter: null };
    let adapter: AdapterInfo | null = null;
    const no = (reason: string) => {
      if (want === 'webgpu') throw Object.assign(new Error(`backend 'webgpu': ${reason}`), { status: 'unsupported' });
      return { llama: null, reason: `${reason}: using the CPU`, adapter };
    };
    if (this.variant !== 'st') return no("the WebGPU backend runs with the single-thread runtime (threads: 'st'), this one is 'mt'");
    const gpu = (globalThis as any).navigator?.gpu;
    if (!gpu) return no('no WebGPU in this browser (navigator.gpu is missing)');
    let current: typeof this.gpu = null;
    this.gpu ??= current = (async () => {
      const a = await inspectAdapter(gpu);
      if (!a) return null;
      const { device } = await requestDevice(gpu);
      // A lost device fails the forwards in flight (their runs end with the reason); the next
      // add() makes a new device, so removing and adding the endpoint again recovers.
      device.lost?.then((l: any) => {
        console.warn('[sipp] webgpu device lost:', l?.message);
        if (this.gpu === current) this.gpu = null;
      });
      return { device, info: a.info };
    })().catch(() => null);
    const dev = await this.gpu;
    if (!dev) { this.gpu = null; return no('no WebGPU adapter (or its device could not be created)'); }
    adapter = dev.info;
    if (want === 'auto' && adapter.isFallback && !m.allowSoftwareAdapter)
      return no(`the WebGPU adapter is a software one (${describeAdapter(adapter)}), counted as no GPU`);
    if (files.length !== 1) return no('the WebGPU pipeline reads one GGUF file, this model is sharded');
    const bytes = new Uint8Array(await files[0].arrayBuffer());
    let reason: string | null;
    try {
      reason = gpuUnsupported(parseGguf(bytes), dev.device.limits.maxStorageBufferBindingSize);
    } catch (e) {
      reason = (e as Error).message;
    }
    if (reason) return no(reason);
    const np = Math.max(1, m.nParallel ?? 1);
    try {
      // The engine's sequences: one per slot and one for embeddings (backend.h).
      const llama = await WebGpuLlama.load(dev.device, bytes, { nCtx: m.nCtx || undefined, nParallel: np + 1 });
      return { llama, reason: `WebGPU adapter ${describeAdapter(adapter)}${want === 'auto' ? '; the model is supported' : ''}`, adapter };
    } catch (e) {
      return no((e as Error).message.replace(/^webgpu: /, ''));
    }
  }

  private statusName(): string {
    return this.mod.UTF8ToString(this.mod._sippw_last_status());
  }

  private dropDir(dir: string, mount: boolean) {
    const FS = this.mod.FS;
    try {
      if (mount) FS.unmount(dir);
      else for (const n of FS.readdir(dir)) if (n !== '.' && n !== '..') FS.unlink(`${dir}/${n}`);
      FS.rmdir(dir);
    } catch { /* best effort */ }
  }

  private unload(endpoint: string) {
    const md = this.models.get(endpoint);
    if (!md) return false;
    for (const [id, r] of this.runs) if (r.model === md) { this.finishRun(id, r); }
    if (md.gpu) {
      const g = md.gpu;
      g.closed = true; // a forward still in flight commits nothing; the close fails it
      this.mod._sippw_close_split(g.split);
      this.gpuModels.delete(g.id);
      if (g.logits) this.mod._free(g.logits);
      if (g.inflight) void g.inflight.then(() => g.llama.destroy()); else g.llama.destroy();
    } else this.mod._sippw_close(md.ptr);
    this.dropDir(md.dir, md.mount);
    this.models.delete(endpoint);
    return true;
  }

  /**
   * Runs the model for a moment and discards the result; returns the milliseconds it took.
   * Browsers start WebAssembly in a baseline tier (V8's Liftoff) and compile a function with
   * the optimizing tier only after it has run a while, in the background; measured on the
   * tiny chat model, the baseline tier makes prefill about 5x and decode up to 3x slower. A
   * few short runs here (prefill chunks, decode steps, the sampler chain) trigger that for the
   * hot functions before the first request instead of during it. Only engine entry points
   * are used: the run has no context key, so nothing of it stays in the KV cache for later
   * requests. Runs before the endpoint is visible, so no other run can be in flight.
   */
  private async warmup(engine: number): Promise<number> {
    const mod = this.mod;
    const t0 = performance.now();
    const prompt = this.cstr('Once upon a time, a little bird sang a song to the sun. '.repeat(WARMUP_PROMPT_REPEAT));
    const opts = mod._malloc(TEXT_OPTS_BYTES);
    mod.HEAPU8.fill(0, opts, opts + TEXT_OPTS_BYTES);
    const dv = new DataView(mod.HEAPU8.buffer);
    dv.setUint32(opts + 0, WARMUP_TOKENS, true);
    dv.setFloat32(opts + 4, 0.8, true);
    dv.setInt32(opts + 8, 40, true);
    dv.setFloat32(opts + 12, 0.95, true);
    dv.setFloat32(opts + 16, 0.05, true);
    dv.setFloat32(opts + 20, 1.1, true);
    dv.setUint32(opts + 24, 1, true);
    dv.setUint32(opts + 32, 1, true); // ignoreEos: always the same amount of work
    try {
      let best = Infinity;
      for (let i = 0; i < WARMUP_MAX_RUNS; i++) {
        const t1 = performance.now();
        const run = mod._sippw_query(engine, prompt, opts);
        if (!run) return performance.now() - t0; // best effort: the real request will say why
        try {
          for (let cancelled = false, slice = performance.now(); ;) {
            const now = performance.now();
            if (!cancelled && now - t0 > WARMUP_MAX_MS) { cancelled = true; mod._sippw_run_cancel(run); }
            if (now - slice > SLICE_MS) { await yieldToEventLoop(); slice = performance.now(); } // main-thread mode stays responsive
            if (this.variant === 'st') mod._sippw_step(engine);
            const rc = mod._sippw_run_next(run, this.variant === 'mt' ? 2 : 0, this.batch);
            if (rc < 0 || (rc === 1 && new DataView(mod.HEAPU8.buffer).getUint32(this.batch + 12, true) !== 0)) break;
          }
        } finally {
          mod._sippw_run_free(run);
        }
        // Done once a run is no faster than the best so far (the optimized code has arrived),
        // or when the time is up.
        const took = performance.now() - t1;
        if (i > 0 && took > 0.85 * best) break;
        best = Math.min(best, took);
        if (took > WARMUP_MAX_MS || performance.now() - t0 > WARMUP_MAX_MS) break;
        await yieldToEventLoop(); // let abort and other messages through between runs
      }
    } finally {
      mod._free(prompt);
      mod._free(opts);
    }
    return performance.now() - t0;
  }

  // ---- runs --------------------------------------------------------------------------------

  private cstr(s: string): number {
    const n = this.mod.lengthBytesUTF8(s) + 1;
    const p = this.mod._malloc(n);
    this.mod.stringToUTF8(s, p, n);
    return p;
  }

  private packed(list: string[]): number {
    const enc = new TextEncoder();
    const parts = list.map((s) => enc.encode(s));
    const n = parts.reduce((a, b) => a + b.byteLength + 1, 0);
    const p = this.mod._malloc(Math.max(1, n));
    let o = p;
    for (const b of parts) { this.mod.HEAPU8.set(b, o); o += b.byteLength; this.mod.HEAPU8[o++] = 0; }
    return p;
  }

  /** A sippw_text_opts for the request options `o` in the heap; what it allocates goes to `keep`. */
  private textOpts(o: Record<string, any>, keep: (p: number) => number): number {
    const mod = this.mod;
    const opts = keep(mod._malloc(TEXT_OPTS_BYTES));
    const dv = new DataView(mod.HEAPU8.buffer);
    const stop = o.stop ?? [];
    const str = (s: string | undefined) => (s == null ? 0 : keep(this.cstr(s)));
    dv.setUint32(opts + 0, o.maxTokens ?? 256, true);
    dv.setFloat32(opts + 4, o.temperature ?? 0.8, true);
    dv.setInt32(opts + 8, o.topK ?? 40, true);
    dv.setFloat32(opts + 12, o.topP ?? 0.95, true);
    dv.setFloat32(opts + 16, o.minP ?? 0.05, true);
    dv.setFloat32(opts + 20, o.repeatPenalty ?? 1.0, true);
    dv.setUint32(opts + 24, o.seed ?? 0xffffffff, true);
    dv.setUint32(opts + 28, o.timeoutMs ?? 0, true);
    dv.setUint32(opts + 32, o.ignoreEos ? 1 : 0, true);
    dv.setUint32(opts + 36, stop.length, true);
    const packedStop = stop.length ? keep(this.packed(stop)) : 0; // may grow the heap: before the next write
    const grammar = str(o.grammar), schema = str(o.jsonSchema), key = str(o.contextKey);
    const dv2 = new DataView(mod.HEAPU8.buffer);
    dv2.setUint32(opts + 40, packedStop, true);
    dv2.setUint32(opts + 44, grammar, true);
    dv2.setUint32(opts + 48, schema, true);
    dv2.setUint32(opts + 52, key, true);
    dv2.setUint32(opts + 56, o.logprobs ? 1 : 0, true);
    return opts;
  }

  /** The routing estimate of a query or chat on a loaded model (sippw_estimate). */
  private estimate(m: Extract<HostRequest, { type: 'estimate' }>) {
    const mod = this.mod;
    const md = this.models.get(m.endpoint);
    if (!md) throw Object.assign(new Error(`no local endpoint '${m.endpoint}'`), { status: 'not_found' });
    const frees: number[] = [];
    const keep = (p: number) => { frees.push(p); return p; };
    try {
      const opts = this.textOpts(m.opts, keep);
      let json: number;
      if (m.kind === 'query') {
        json = mod._sippw_estimate(md.ptr, keep(this.cstr(m.input as string)), 0, 0, opts);
      } else {
        const msgs = m.input as { role: string; content: string }[];
        json = mod._sippw_estimate(md.ptr, 0, keep(this.packed(msgs.flatMap((x) => [String(x.role), String(x.content)]))), msgs.length, opts);
      }
      if (!json) throw Object.assign(new Error(mod.UTF8ToString(mod._sippw_last_error())), { status: this.statusName() });
      return JSON.parse(mod.UTF8ToString(json));
    } catch (e) {
      throw cxxException(e, 'internal', `estimate: the ${m.kind} could not be estimated`);
    } finally {
      for (const p of frees) mod._free(p);
    }
  }

  private setPrices(endpoint: string, inputPerMtok: number, outputPerMtok: number) {
    const md = this.models.get(endpoint);
    if (!md) throw Object.assign(new Error(`no local endpoint '${endpoint}'`), { status: 'not_found' });
    if (!this.mod._sippw_set_prices(md.ptr, inputPerMtok, outputPerMtok)) {
      throw Object.assign(new Error(this.mod.UTF8ToString(this.mod._sippw_last_error())), { status: this.statusName() });
    }
    return true;
  }

  private startRun(m: Extract<HostRequest, { type: 'run' }>) {
    const mod = this.mod;
    const md = this.models.get(m.endpoint);
    if (!md) throw new Error(`no local endpoint '${m.endpoint}'`);
    const frees: number[] = [];
    const keep = (p: number) => { frees.push(p); return p; };
    let ptr = 0;
    try {
      if (m.kind === 'embed') {
        ptr = mod._sippw_embed(md.ptr, keep(this.cstr(m.input as string)), m.opts.normalize === false ? 0 : 1);
      } else {
        const opts = this.textOpts(m.opts, keep);
        if (m.kind === 'query') {
          ptr = mod._sippw_query(md.ptr, keep(this.cstr(m.input as string)), opts);
        } else {
          const msgs = m.input as { role: string; content: string }[];
          const flat = msgs.flatMap((x) => [String(x.role), String(x.content)]);
          ptr = mod._sippw_chat(md.ptr, keep(this.packed(flat)), msgs.length, opts);
        }
      }
    } catch (e) {
      const o = m.opts;
      throw cxxException(e, o.grammar != null || o.jsonSchema != null ? 'invalid_argument' : 'internal',
        `${m.kind}: the request could not start${o.grammar != null ? ' (is the grammar valid GBNF with a \'root\' rule?)' : o.jsonSchema != null ? ' (is the JSON schema valid?)' : ''}`);
    } finally {
      for (const p of frees) mod._free(p);
    }
    if (!ptr) {
      this.post({ type: 'runError', runId: m.runId,
                  error: { status: this.statusName(), message: mod.UTF8ToString(mod._sippw_last_error()) } });
      return;
    }
    mod._sippw_observe(md.ptr, ptr); // the app's runs feed the endpoint's routing signals
    this.runs.set(m.runId, { ptr, model: md, kind: m.kind, cancelled: false });
    this.post({ type: 'started', runId: m.runId });
    this.pump();
  }

  /** Takes what a run produced; returns true once it ended (and was reported and freed). */
  private poll(id: number, r: RunState, timeoutMs: number): boolean {
    const mod = this.mod;
    const rc = mod._sippw_run_next(r.ptr, timeoutMs, this.batch);
    if (rc !== 1) return false;
    const dv = new DataView(mod.HEAPU8.buffer);
    const len = dv.getUint32(this.batch + 4, true);
    const textPtr = dv.getUint32(this.batch, true);
    const nTok = dv.getUint32(this.batch + 8, true);
    const done = dv.getUint32(this.batch + 12, true) !== 0;
    if (len > 0) {
      const text = this.utf8.decode(mod.HEAPU8.slice(textPtr, textPtr + len)); // a copy: the mt heap is shared
      this.post({ type: 'tokens', runId: id, text, nTokens: nTok });
    }
    if (done) { this.finishRun(id, r); return true; }
    return false;
  }

  private finishRun(id: number, r: RunState) {
    const mod = this.mod;
    const json = mod._sippw_run_response(r.ptr);
    const resp = json ? JSON.parse(mod.UTF8ToString(json)) : { status: 'internal', errorMessage: 'no response' };
    const lenp = mod._malloc(4);
    const tp = mod._sippw_run_text(r.ptr, lenp);
    const tlen = new DataView(mod.HEAPU8.buffer).getUint32(lenp, true);
    mod._free(lenp);
    resp.text = tp ? new TextDecoder().decode(mod.HEAPU8.slice(tp, tp + tlen)) : '';
    if (resp.status !== 'ok' && r.model.gpu?.lastError && /backend's forward failed/.test(resp.errorMessage ?? ''))
      resp.errorMessage += `: ${r.model.gpu.lastError}`;
    if (r.kind === 'embed' && resp.nEmbd > 0) {
      const ep = mod._sippw_run_embedding(r.ptr);
      if (ep) resp.embedding = new Float32Array(mod.HEAPU8.slice(ep, ep + 4 * resp.nEmbd).buffer);
    }
    mod._sippw_run_free(r.ptr);
    this.runs.delete(id);
    this.post({ type: 'done', runId: id, response: resp });
  }

  /** Drives the engines and polls the runs until none is left. */
  private async pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.runs.size) {
        const t0 = performance.now();
        let waiting: Promise<void>[] = [], active = 0;
        do {
          waiting = [];
          const models = new Set([...this.runs.values()].map((r) => r.model));
          active = models.size;
          if (this.variant === 'st') {
            for (const md of models) {
              // A model on the GPU is not stepped while its forward is in flight: the step
              // after the commit samples from the logits and plans the next batch.
              if (!md.gpu?.inflight) {
                this.mod._sippw_step(md.ptr);
                if (md.gpu) launchForward(this.mod, md.gpu, () => {});
              }
              if (md.gpu?.inflight) waiting.push(md.gpu.inflight);
            }
          }
          const wait = this.variant === 'mt' ? 2 : 0;
          for (const [id, r] of [...this.runs]) this.poll(id, r, wait);
        } while (this.runs.size && performance.now() - t0 < SLICE_MS && waiting.length < active);
        // Every model waits for its GPU: sleep until one forward completes (messages such as
        // cancel still get through meanwhile).
        if (waiting.length && waiting.length >= active) await Promise.race(waiting);
        else await yieldToEventLoop();
      }
    } finally {
      this.pumping = false;
    }
  }
}

/**
 * What a wasm call threw, as an Error. The artifacts catch C++ exceptions (-fwasm-exceptions),
 * so llama.cpp's failures reported by throwing (a grammar that does not parse, a template
 * error) come back as ordinary errors with their native messages. Should an exception still
 * leave the module (one thrown where no C++ frame catches it), it arrives here as a bare value
 * and is reported with `status` and what the caller was doing.
 */
function cxxException(e: unknown, status: string, what: string): Error {
  if (e instanceof Error) return e;
  return Object.assign(new Error(`${what}: llama.cpp raised a C++ exception that nothing caught`), { status });
}

/** Resolves on the next turn of the event loop (no 4 ms clamp as with nested setTimeout). */
function yieldToEventLoop(): Promise<void> {
  return new Promise((ok) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); ok(); };
    ch.port2.postMessage(0);
  });
}
