'use strict';
// Sipp for Node: the idiomatic layer over the N-API addon (src/addon.c), itself a thin layer over
// include/sipp.h. Reference: docs/bindings.md. Types: index.d.ts.
//
// Nothing here blocks the JS thread on inference: model loads run as async work and each run's
// stream is read by a native pump thread that hands batches over through a threadsafe function.

const fs = require('fs');
const path = require('path');

function loadAddon() {
  const candidates = [
    process.env.SIPP_NODE_ADDON,
    path.join(__dirname, '..', 'build', 'Release', 'sipp.node'), // node-gyp, at package install
    path.join(__dirname, '..', '..', '..', 'build', 'lib', 'sipp.node'), // the CMake build
  ].filter(Boolean);
  for (const p of candidates) {
    if (fs.existsSync(p)) return require(p);
  }
  throw new Error(`sipp: the native addon was not found (tried ${candidates.join(', ')}); ` +
    'build it with scripts/setup or set SIPP_NODE_ADDON');
}

const native = loadAddon();

/**
 * A failed call or run. kind: the status name of sipp.h; status: its number; code: the remote
 * peer's error code (a gateway envelope's 'authentication', an OpenAI code...) or ''; httpStatus:
 * the HTTP status of a remote answer or 0; subcode: the errno/HTTP status a failing call reported.
 */
class SippError extends Error {
  constructor(kind, message, status = -1, code = '', requestId = '', httpStatus = 0, subcode = 0) {
    super(message || kind);
    this.name = 'SippError';
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.httpStatus = httpStatus;
    this.subcode = subcode;
  }
}

const STATUS = native.statusNames(); // index = status number
const statusOf = (kind) => STATUS.indexOf(kind);
const sippError = (kind, message) => new SippError(kind, message, statusOf(kind));

// Runs some JS code waits on (an iterator step, `response`): kept reachable while their pump
// works, since the addon holds only a weak reference to them.
const active = new Set();
// A run nobody can reach any more is abandoned: cancelled, drained and freed by the addon.
const registry = new FinalizationRegistry((h) => native.runPull(h, null, 2));

native.init(SippError, (run, kind, a, b) => run._deliver(kind, a, b));

const MODE_NEXT = 0;
const MODE_DRAIN = 1;
const MODE_DELTA = 3; // issue 18: the run is read as deltas

/** The answer of a response as an assistant message (with its tool calls), to send back with
 *  the tools' results. */
function assistantMessage(response) {
  return { role: 'assistant', content: response.text, toolCalls: response.toolCalls };
}

/** The message that answers a tool call: {role: 'tool', content, toolCallId}. */
function toolResult(call, content) {
  return { role: 'tool', content: String(content), toolCallId: typeof call === 'string' ? call : call.id };
}

/** One request: async-iterate it for token batches, await `response` for the end. */
class Run {
  #h;
  #queue = [];
  #waiters = [];
  #ended = false;
  #draining = false;
  #error = null;
  #errorSeen = false;
  #response = null;
  #settle = null;
  #responsePromise = null;
  #signal = null;
  #onAbort = null;
  #mode = MODE_NEXT;

  constructor(h, endpoint, signal) {
    this.#h = h;
    this.endpoint = endpoint;
    registry.register(this, h, this);
    if (signal) {
      if (signal.aborted) {
        this.cancel();
      } else {
        this.#signal = signal;
        this.#onAbort = () => this.cancel();
        signal.addEventListener('abort', this.#onAbort, { once: true });
      }
    }
  }

  /** Asks the run to stop; it ends with finishReason 'cancelled' and the text so far. */
  cancel() {
    native.runCancel(this.#h);
  }

  /** True once the end of the run has reached JS. */
  get done() {
    return this.#ended;
  }

  /** The response (a Promise). Reading it makes the run read to its end; batches not yet
   *  iterated stay available to an iterator. Rejects with SippError if the run failed. */
  get response() {
    if (!this.#responsePromise) {
      this.#responsePromise = new Promise((resolve, reject) => {
        this.#settle = { resolve, reject };
      });
      if (this.#ended) {
        this.#settleResponse();
      } else {
        this.#draining = true;
        active.add(this);
        native.runPull(this.#h, this, MODE_DRAIN);
      }
    }
    return this.#responsePromise;
  }

  /** Same as `response`. */
  result() {
    return this.response;
  }

  /**
   * The stream as deltas instead of text batches (issue 18): {kind: 'content' | 'reasoning' |
   * 'toolCall', text, toolIndex?, toolId?, toolName?}, in order. A call's first delta has its
   * toolId and toolName, later ones pieces of its arguments. A run is read one way or the other:
   * call this before iterating it.
   */
  deltas() {
    this.#mode = MODE_DELTA;
    return this[Symbol.asyncIterator]();
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => this.#next(),
      return: () => {
        // leaving a for-await loop early stops the run, as with a ReadableStream
        if (!this.#ended) {
          this.cancel();
          this.#draining = true;
          active.add(this);
          native.runPull(this.#h, this, MODE_DRAIN);
        }
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  #next() {
    if (this.#queue.length > 0) return Promise.resolve({ value: this.#queue.shift(), done: false });
    if (this.#ended) {
      if (this.#error && !this.#errorSeen) {
        this.#errorSeen = true;
        return Promise.reject(this.#error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      active.add(this);
      native.runPull(this.#h, this, this.#mode);
    });
  }

  // Called by the addon on the JS thread.
  _deliver(kind, a, b) {
    if (kind === 'batch' || kind === 'delta') {
      const batch = kind === 'batch' ? { text: a, nTokens: b } : a;
      const w = this.#waiters.shift();
      if (w) w.resolve({ value: batch, done: false });
      else this.#queue.push(batch);
    } else {
      this.#ended = true;
      if (a) Object.defineProperty(a, 'message', { value: () => assistantMessage(a) });
      this.#response = a;
      this.#error = b;
      for (const w of this.#waiters.splice(0)) {
        if (this.#error && !this.#errorSeen && this.#queue.length === 0) {
          this.#errorSeen = true;
          w.reject(this.#error);
        } else {
          w.resolve({ value: undefined, done: true });
        }
      }
      if (this.#settle) this.#settleResponse();
      if (this.#signal) this.#signal.removeEventListener('abort', this.#onAbort);
      this.#signal = null;
      registry.unregister(this);
    }
    if (this.#ended || (this.#waiters.length === 0 && !this.#draining)) {
      active.delete(this);
      if (!this.#ended) native.runIdle(this.#h);
    }
  }

  #settleResponse() {
    if (this.#error) {
      this.#errorSeen = true;
      this.#settle.reject(this.#error);
    } else {
      this.#settle.resolve(this.#response);
    }
  }
}

/** A registered endpoint; dead once removed, replaced or its client closed. */
class Endpoint {
  #h;

  constructor(client, id, kind, h) {
    this.client = client;
    this.id = id;
    this.kind = kind;
    this.#h = h;
  }

  get closed() {
    return this.#h === null;
  }

  _kill() {
    this.#h = null;
  }

  _revive(h) {
    this.#h = h;
  }

  _handle() {
    if (this.#h === null) {
      throw sippError('closed', `endpoint '${this.id}' was removed, replaced or its client closed`);
    }
    return this.#h;
  }

  /** Starts a raw completion. Option errors throw here (no run exists then). */
  query(prompt, options = {}) {
    return new Run(native.query(this._handle(), prompt, textOptions(options)), this, options.signal);
  }

  /**
   * Starts a chat: a string (one user message) or [{role, content}]. Tools (issue 18): an
   * assistant message may carry toolCalls [{id, name, arguments}] (arguments JSON text or an
   * object), a tool message answers one: {role: 'tool', content, toolCallId} (toolResult()).
   */
  chat(messages, options = {}) {
    if (typeof messages === 'string') messages = [{ role: 'user', content: messages }];
    if (Array.isArray(messages)) messages = messages.map(chatMessage);
    return new Run(native.chat(this._handle(), messages, textOptions(options)), this, options.signal);
  }

  /** Starts an embedding; `(await run.response).embedding` is a Float32Array. */
  embed(text, options = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const { signal, ...rest } = options;
    return new Run(native.embed(this._handle(), text, extraOptions(rest)), this, signal);
  }

  /**
   * Estimates a query (a string prompt) or a chat ({messages}: an array, or a string for one
   * user message) without running it (docs/routing.md). `options` as for query/chat; their
   * contextKey and cacheScope decide which cached prefix counts.
   */
  estimate(prompt, options = {}) {
    if (prompt !== null && typeof prompt === 'object' && !Array.isArray(prompt)) {
      let { messages, ...rest } = prompt;
      if (typeof messages === 'string') messages = [{ role: 'user', content: messages }];
      return native.estimate(this._handle(), null, messages, textOptions({ ...rest, ...options }));
    }
    if (typeof prompt !== 'string') throw new TypeError('estimate(prompt) or estimate({messages})');
    return native.estimate(this._handle(), prompt, null, textOptions(options));
  }

  /** The prices estimates report, per million tokens (null = unknown). */
  setPrices(inputPerMtok, outputPerMtok) {
    native.setPrices(this._handle(), inputPerMtok ?? -1, outputPerMtok ?? -1);
  }

  info() {
    return native.endpointInfo(this._handle());
  }

  stats() {
    return native.endpointStats(this._handle());
  }
}

/** A message with tool calls: arguments as JSON text, content '' when there is none. */
function chatMessage(m) {
  if (m === null || typeof m !== 'object' || (m.toolCalls === undefined && m.content !== null)) return m;
  const calls = m.toolCalls === undefined ? undefined : m.toolCalls.map((c) => ({
    id: c.id,
    name: c.name ?? c.function?.name,
    arguments: (() => {
      const a = c.arguments ?? c.function?.arguments ?? '{}';
      return typeof a === 'string' ? a : JSON.stringify(a);
    })(),
  }));
  return { ...m, content: m.content ?? '', toolCalls: calls };
}

const TOOL_CHOICES = { auto: 0, none: 1, required: 2 }; // else a tool's name: named (3)
const REASONING = { separate: 0, inline: 1, drop: 2 };

/** tools [{name, description, parameters}] (or OpenAI's {type: 'function', function}),
 *  toolChoice 'auto' | 'none' | 'required' | a tool's name, reasoning 'separate' | 'inline' |
 *  'drop': as the addon reads them. */
function toolOptions(options) {
  const out = { ...options };
  if (options.tools !== undefined) {
    if (!Array.isArray(options.tools)) throw new TypeError('tools must be an array');
    out.tools = options.tools.map((t) => {
      const f = t && t.type === 'function' && t.function ? t.function : t;
      if (f === null || typeof f !== 'object') throw new TypeError('each tool must be an object {name, description, parameters}');
      const params = f.parameters ?? { type: 'object', properties: {} };
      return { name: f.name, description: f.description ?? '',
               parameters: typeof params === 'string' ? params : JSON.stringify(params) };
    });
  }
  if (options.toolChoice !== undefined) {
    if (typeof options.toolChoice !== 'string') throw new TypeError("toolChoice must be 'auto', 'none', 'required' or a tool's name");
    if (options.toolChoice in TOOL_CHOICES) {
      out.toolChoice = TOOL_CHOICES[options.toolChoice];
    } else {
      out.toolChoice = 3;
      out.toolChoiceName = options.toolChoice;
    }
  }
  if (options.reasoning !== undefined) {
    if (!(options.reasoning in REASONING)) throw new SippError('invalid_argument', "reasoning must be 'separate', 'inline' or 'drop'", statusOf('invalid_argument'));
    out.reasoning = REASONING[options.reasoning];
  }
  return out;
}

function textOptions(options) {
  if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
  const out = toolOptions(extraOptions(options));
  if (out.jsonSchema !== undefined && typeof out.jsonSchema !== 'string') {
    return { ...out, jsonSchema: JSON.stringify(out.jsonSchema) };
  }
  return out;
}

/** `extra` (a plain object merged into a remote request body) becomes the extraJson string. */
function extraOptions(options) {
  if (options.extra === undefined) return options;
  const { extra, ...rest } = options;
  if (extra === null || typeof extra !== 'object' || Array.isArray(extra)) {
    throw new TypeError('extra must be a plain object (a JSON object)');
  }
  if (rest.extraJson !== undefined) throw new TypeError("give 'extra' or 'extraJson', not both");
  return { ...rest, extraJson: JSON.stringify(extra) };
}

/** Static headers: {name: value} or ['Name: value'] become the array the addon reads. */
function headerOptions(options) {
  const h = options.headers;
  if (h === undefined || Array.isArray(h)) return options;
  if (h === null || typeof h !== 'object') {
    throw new TypeError("headers must be an object {name: value} or an array of 'Name: value' strings");
  }
  return { ...options, headers: Object.entries(h).map(([k, v]) => `${k}: ${v}`) };
}

const RULE_KINDS = {
  local_only_tag: 1, skip_unavailable: 2, fit_context: 3, max_ttft_ms: 4, max_cost: 5,
  prefer_warm: 6, prefer_local_under_ttft: 7, prefer_cheapest: 8, escalate_low_confidence: 9,
};

/**
 * An ordered, explainable set of routing rules (sipp_policy; docs/routing.md). Each rule is a
 * name ('fit_context'), [name, value] (['prefer_warm', 0.5], ['local_only_tag', 'private']) or
 * {kind, value, tag}. choose() is pure: it sends nothing.
 */
class Policy {
  #h;

  constructor(rules) {
    if (!Array.isArray(rules)) throw new TypeError('rules must be an array');
    const raw = rules.map((r, i) => {
      if (typeof r === 'string') r = { kind: r };
      else if (Array.isArray(r)) {
        r = r[0] === 'local_only_tag' ? { kind: r[0], tag: r[1] } : { kind: r[0], value: r[1] };
      }
      if (r === null || typeof r !== 'object' || !(r.kind in RULE_KINDS)) {
        throw sippError('invalid_argument',
          `rule ${i}: unknown kind ${JSON.stringify(r && r.kind)} (one of ${Object.keys(RULE_KINDS).join(', ')})`);
      }
      return { kind: RULE_KINDS[r.kind], value: r.value ?? 0, tag: r.tag };
    });
    this.#h = native.policyNew(raw);
  }

  /**
   * Chooses among candidates: [{endpoint, estimate, name?}] or [[endpoint, estimate], ...].
   * Returns {endpoint, index, dropped, reasons}; endpoint is null (index -1) when every
   * candidate was dropped, and the reasons say why each one went.
   */
  choose(candidates, { tags = [], maxTokens = 256 } = {}) {
    if (!Array.isArray(candidates)) throw new TypeError('candidates must be an array');
    const list = candidates.map((c) => (Array.isArray(c) ? { endpoint: c[0], estimate: c[1] } : c));
    for (const c of list) {
      if (!(c && c.endpoint instanceof Endpoint)) throw new TypeError('a candidate needs an Endpoint');
    }
    const raw = list.map((c) => ({ endpoint: c.endpoint._handle(), estimate: c.estimate,
      name: c.name ?? c.endpoint.id }));
    const ch = native.policyChoose(this.#h, raw, tags, maxTokens);
    return { endpoint: ch.index >= 0 ? list[ch.index].endpoint : null, ...ch };
  }

  /**
   * Decides whether a finished draft stands (sipp_policy_check_draft), by the first
   * escalate_low_confidence rule (none: the draft always stands): 'escalated' for a draft
   * without log-probabilities or below the threshold, else 'draft'. `response`: what
   * `await run.response` gave. Returns {outcome, confidence, minProb, nTokens, retrySafe,
   * reasons}; confidence is NaN when unknown. Pure: nothing is sent.
   */
  checkDraft(response) {
    if (response === null || typeof response !== 'object') throw new TypeError('checkDraft: a response object is required');
    return native.policyCheckDraft(this.#h, response);
  }

  /**
   * Draft-then-audit (sipp_route_draft_audit): runs the chat on `draft` (a local endpoint,
   * usually) with log-probabilities and without streaming it to the caller, waits for it off
   * the JS thread and checks it (checkDraft). Resolves to {run, decision}:
   * 'draft': run is the finished draft; 'escalated': run is the chat on `target`, started (read
   * it as any run), with a last user message carrying the draft when `sendDraft` (the default)
   * and without contextKey/cacheScope when the target is remote; 'draft_failed': run is the
   * failed draft, never sent elsewhere (decision.retrySafe says whether the app may). A draft
   * refused at submission (busy, a bad option) rejects: nothing was sent anywhere. No stream
   * the caller saw is ever switched.
   */
  async draftAudit(draft, target, messages, options = {}) {
    if (!(draft instanceof Endpoint) || !(target instanceof Endpoint)) {
      throw new TypeError('draftAudit: the draft and the target are Endpoints');
    }
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    if (typeof messages === 'string') messages = [{ role: 'user', content: messages }];
    if (!Array.isArray(messages)) throw new TypeError('messages must be a string or an array');
    const { sendDraft = true, signal, ...rest } = options;
    const { run, decision } = await native.draftAudit(this.#h, draft.client._native(), draft._handle(),
      target.client._native(), target._handle(), messages, textOptions(rest), Boolean(sendDraft));
    const owner = decision.outcome === 'escalated' ? target : draft;
    return { run: new Run(run, owner, signal), decision };
  }
}

const LOG_LEVELS = { none: 0, error: 1, warn: 2, info: 3, debug: 4 };
const PROVIDER_KINDS = { openai: 1, openai_compatible: 2, anthropic: 3 };
const GATEWAY_AUTH = { none: 0, bearer: 1, header: 2 };

/** A registry of endpoints (sipp_client). */
class Client {
  #h;
  #endpoints = new Map();
  #adding = new Set();
  #closed = false;

  constructor(options = {}) {
    const { logLevel } = options;
    if (logLevel !== undefined && !(logLevel in LOG_LEVELS)) {
      throw sippError('invalid_argument', `logLevel must be one of ${Object.keys(LOG_LEVELS).join(', ')}`);
    }
    this.#h = native.clientNew(logLevel === undefined ? -1 : LOG_LEVELS[logLevel]);
  }

  #check(id) {
    if (this.#closed) throw sippError('closed', 'the client is closed');
    if (typeof id !== 'string' || id === '') throw new TypeError('id must be a non-empty string');
    if (this.#adding.has(id)) throw sippError('busy', `endpoint '${id}' is being added`);
  }

  /**
   * Registers an endpoint and resolves to it:
   *   {kind: 'local', id, modelPath, ...local options}  (loads on a worker thread)
   *   {kind: 'provider', id, provider, model, baseUrl, apiKey, apiKeyEnv, headers, version, ...timeouts}
   *   {kind: 'gateway', id, baseUrl, target, auth, token, tokenEnv, authHeader, headers, ...timeouts}
   * Adding an id again replaces that endpoint (its runs are cancelled).
   */
  async add(descriptor) {
    if (descriptor === null || typeof descriptor !== 'object') throw new TypeError('add() takes a descriptor object');
    const { kind, id, ...rest } = descriptor;
    if (kind === 'local') return this.addLocal(id, rest.modelPath, rest);
    if (kind === 'provider') return this.addProvider(id, rest);
    if (kind === 'gateway') return this.addGateway(id, rest);
    throw sippError('invalid_argument', `unknown endpoint kind '${kind}' (local, provider or gateway)`);
  }

  /** Registers a local GGUF model; the load runs off the JS thread. */
  async addLocal(id, modelPath, options = {}) {
    this.#check(id);
    const old = this.#endpoints.get(id);
    const oldHandle = old && !old.closed ? old._handle() : null;
    if (old) old._kill(); // the library frees it at the end of the load, on the worker
    this.#adding.add(id);
    try {
      const h = await native.addLocal(this.#h, id, { ...options, modelPath });
      const ep = new Endpoint(this, id, 'local', h);
      this.#endpoints.set(id, ep);
      return ep;
    } catch (e) {
      if (old && oldHandle && !this.#closed) old._revive(oldHandle); // a failed add replaces nothing
      throw e;
    } finally {
      this.#adding.delete(id);
    }
  }

  /** Registers a provider endpoint (provider: 'openai', 'openai_compatible' or 'anthropic'). */
  async addProvider(id, options = {}) {
    this.#check(id);
    const { provider = 'openai_compatible', ...rest } = options;
    if (!Object.hasOwn(PROVIDER_KINDS, provider)) {
      throw sippError('invalid_argument', `provider must be one of ${Object.keys(PROVIDER_KINDS).join(', ')}`);
    }
    return this.#registered(id, 'provider',
      native.addProvider(this.#h, id, PROVIDER_KINDS[provider], headerOptions(rest)));
  }

  /**
   * Registers a Sipp gateway endpoint: baseUrl is the gateway's public listener, target its
   * target name; auth 'bearer' (default), 'header' (authHeader: token) or 'none'; the token is
   * `token`, else the environment variable `tokenEnv` (default SIPP_GATEWAY_TOKEN).
   */
  async addGateway(id, options = {}) {
    this.#check(id);
    const { auth = 'bearer', ...rest } = options;
    if (!Object.hasOwn(GATEWAY_AUTH, auth)) {
      throw sippError('invalid_argument', `auth must be one of ${Object.keys(GATEWAY_AUTH).join(', ')}`);
    }
    return this.#registered(id, 'gateway',
      native.addGateway(this.#h, id, GATEWAY_AUTH[auth], headerOptions(rest)));
  }

  #registered(id, kind, h) {
    const old = this.#endpoints.get(id);
    if (old) old._kill();
    const ep = new Endpoint(this, id, kind, h);
    this.#endpoints.set(id, ep);
    return ep;
  }

  /** The native client, for calls that keep it alive while they run (draftAudit). */
  _native() {
    if (this.#closed) throw sippError('closed', 'the client is closed');
    return this.#h;
  }

  /** The endpoint registered under `id`, or undefined. */
  endpoint(id) {
    return this.#endpoints.get(id);
  }

  /** Removes an endpoint: cancels its runs and unloads its model. */
  remove(id) {
    this.#check(id);
    native.remove(this.#h, id);
    const ep = this.#endpoints.get(id);
    if (ep) ep._kill();
    this.#endpoints.delete(id);
  }

  #resolve(endpoint) {
    if (endpoint instanceof Endpoint) return endpoint;
    const ep = this.#endpoints.get(endpoint);
    if (!ep) throw sippError('not_found', `no endpoint '${endpoint}'`);
    return ep;
  }

  query(endpoint, prompt, options) {
    return this.#resolve(endpoint).query(prompt, options);
  }

  chat(endpoint, messages, options) {
    return this.#resolve(endpoint).chat(messages, options);
  }

  embed(endpoint, text, options) {
    return this.#resolve(endpoint).embed(text, options);
  }

  /** Cancels every run, stops the engines, frees the client. Runs stay readable. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    for (const ep of this.#endpoints.values()) ep._kill();
    this.#endpoints.clear();
    native.clientClose(this.#h);
  }
}

module.exports = {
  Client, Endpoint, Run, SippError, Policy, toolResult, assistantMessage,
  version: () => native.version(),
  /** Live native runs and glibc's malloc heap in use: for leak checks. */
  diagnostics: () => native.diag(),
};
