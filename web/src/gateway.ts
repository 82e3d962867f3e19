// The browser's gateway client: the Sipp profile of docs/gateway-protocol.md (POST /v1/query,
// /v1/chat, /v1/embed; SSE events token/usage/done/error) with the same response shape as a
// local run. Safety rules: the base URL is absolute with no userinfo, query or fragment, and
// plain http only for loopback hosts; requests never follow redirects and never send cookies;
// error bodies and each SSE event are capped at 1 MiB; secrets (the bearer token or header
// value) never appear in an error message, whatever the peer echoes.

import type { Authentication, GatewayEndpointSpec, Message, RequestOptions, SippResponse } from './types.js';
import { SippError } from './types.js';

export const MAX_EVENT_BYTES = 1024 * 1024;
export const MAX_ERROR_BODY_BYTES = 1024 * 1024;
const MAX_BODY_BYTES = 64 * 1024 * 1024;

const CODE_STATUS: Record<string, string> = {
  blocked: 'authorization', rate_limited: 'rate_limited', authentication: 'authentication',
  invalid_json: 'invalid_argument', authorization: 'authorization', resolution: 'model_not_found',
  admission: 'busy', invalidrequest: 'invalid_argument', execution: 'upstream_error',
  cancelled: 'cancelled', payload_too_large: 'invalid_argument',
  method_not_allowed: 'upstream_error', not_found: 'upstream_error',
};

function httpStatusName(s: number): string {
  switch (s) {
    case 400: case 413: case 422: return 'invalid_argument';
    case 401: return 'authentication';
    case 402: return 'quota_exceeded';
    case 403: return 'authorization';
    case 404: return 'model_not_found';
    case 408: case 504: return 'upstream_timeout';
    case 429: return 'rate_limited';
    case 503: case 529: return 'overloaded';
    default: return s >= 500 ? 'upstream_error' : 'invalid_argument';
  }
}

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** Checks a gateway base URL; returns it without a trailing slash. Throws SippError. */
export function validateBaseUrl(raw: string): string {
  const bad = (why: string) => new SippError('invalid_argument', `gateway baseUrl ${why}`);
  if (typeof raw !== 'string' || !raw) throw bad('is required');
  let u: URL;
  try { u = new URL(raw); } catch { throw bad('is not an absolute URL'); }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw bad(`has scheme '${u.protocol}' (http or https)`);
  if (u.username || u.password || /^[a-z]+:\/\/[^/]*@/i.test(raw)) throw bad('may not contain userinfo');
  if (u.search || raw.includes('?')) throw bad('may not contain a query');
  if (u.hash || raw.includes('#')) throw bad('may not contain a fragment');
  if (u.protocol === 'http:' && !isLoopback(u.hostname)) throw bad('must use https (plain http only for loopback hosts)');
  return u.href.replace(/\/+$/, '');
}

const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const FORBIDDEN_HEADERS = new Set(['cookie', 'host', 'content-length', 'content-type', 'origin', 'referer', 'accept']);

export class GatewayEndpoint {
  readonly baseUrl: string;
  readonly target: string;
  private auth: Authentication;
  private timeoutMs: number;
  private secrets = new Set<string>();

  constructor(spec: GatewayEndpointSpec) {
    this.baseUrl = validateBaseUrl(spec.baseUrl);
    if (typeof spec.target !== 'string' || !spec.target) throw new SippError('invalid_argument', 'gateway target is required');
    this.target = spec.target;
    this.auth = spec.authentication ?? { kind: 'none' };
    this.timeoutMs = spec.timeoutMs ?? 0;
    const a = this.auth;
    if (a.kind === 'bearer') {
      if (typeof a.token === 'string') this.secret(a.token);
      else if (typeof a.token !== 'function') throw new SippError('invalid_argument', 'bearer token must be a string or a function');
    } else if (a.kind === 'header') {
      if (!TOKEN_RE.test(a.name ?? '') || FORBIDDEN_HEADERS.has(a.name.toLowerCase())) {
        throw new SippError('invalid_argument', `authentication header name '${String(a.name).slice(0, 64)}' is not allowed`);
      }
      if (typeof a.value === 'string') this.secret(a.value);
    } else if (a.kind !== 'none') {
      throw new SippError('invalid_argument', 'authentication kind must be none, bearer or header');
    }
  }

  private secret(s: string) {
    if (/[\r\n\0]/.test(s)) throw new SippError('invalid_argument', 'the credential contains a line break or NUL');
    if (s.length >= 4) this.secrets.add(s);
  }

  /** Replaces every known secret in `s`. */
  redact(s: string): string {
    let out = s;
    for (const k of this.secrets) out = out.split(k).join('[redacted]');
    return out;
  }

  private async headers(): Promise<Record<string, string>> {
    const h: Record<string, string> = { 'content-type': 'application/json' };
    const a = this.auth;
    if (a.kind === 'bearer') {
      const t = typeof a.token === 'function' ? await a.token() : a.token;
      if (typeof t !== 'string' || !t) throw new SippError('authentication', 'the bearer token provider gave no token');
      this.secret(t);
      h.authorization = `Bearer ${t}`;
    } else if (a.kind === 'header') {
      const v = typeof a.value === 'function' ? await a.value() : a.value;
      if (typeof v !== 'string') throw new SippError('authentication', 'the header value provider gave no value');
      this.secret(v);
      h[a.name.toLowerCase()] = v;
    }
    return h;
  }

  body(op: 'query' | 'chat', input: string | Message[], o: RequestOptions, stream: boolean): Record<string, unknown> {
    for (const k of ['contextKey', 'grammar', 'jsonSchema', 'ignoreEos', 'logprobs'] as const) {
      if (o[k] != null && o[k] !== false) throw new SippError('invalid_argument', `${k} is for local endpoints; the gateway does not accept it`);
    }
    const b: Record<string, unknown> = { model: this.target };
    if (op === 'query') b.prompt = input;
    else b.messages = (input as Message[]).map((m) => ({ role: m.role, content: m.content }));
    if (o.maxTokens != null) b.max_tokens = o.maxTokens;
    if (o.temperature != null) b.temperature = o.temperature;
    if (o.topP != null) b.top_p = o.topP;
    if (o.stop?.length) b.stop = o.stop;
    b.stream = stream;
    return b;
  }

  /** Starts a request; `onText` gets streamed text. Resolves with the response (a failure
   *  after the request started is a response with status != 'ok', as in C). */
  async run(op: 'query' | 'chat' | 'embed', body: Record<string, unknown>, signal: AbortSignal,
            onText: (t: string) => void): Promise<SippResponse> {
    const t0 = performance.now();
    let ttft = 0;
    const resp: SippResponse = {
      status: 'ok', errorMessage: '', text: '', finishReason: 'none',
      usage: { inputTokens: 0, outputTokens: 0, totalTokens: 0 },
    };
    const fail = (status: string, msg: string, http = 0, code = '') => {
      resp.status = status;
      resp.errorMessage = this.redact(msg).slice(0, 1024);
      resp.httpStatus = http;
      if (code) resp.errorCode = code.slice(0, 47);
      return resp;
    };
    const timeout = this.timeoutMs > 0 ? AbortSignal.timeout(this.timeoutMs) : null;
    const sig = timeout ? AbortSignal.any([signal, timeout]) : signal;
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}/v1/${op}`, {
        method: 'POST', headers: await this.headers(), body: JSON.stringify(body),
        redirect: 'error', credentials: 'omit', cache: 'no-store', mode: 'cors', signal: sig,
      });
    } catch (e) {
      if (signal.aborted) { resp.finishReason = 'cancelled'; return resp; }
      if (timeout?.aborted) return fail('upstream_timeout', `the gateway did not answer within ${this.timeoutMs} ms`);
      if (e instanceof SippError) return fail(e.status, e.message);
      return fail('transport', `cannot reach the gateway: ${(e as Error).message ?? e}`);
    }
    resp.httpStatus = res.status;
    resp.requestId = (res.headers.get('x-request-id') ?? '').slice(0, 63);
    try {
      if (!res.ok) {
        const text = await readCapped(res, MAX_ERROR_BODY_BYTES, true);
        let code = '', msg = '';
        try {
          const j = JSON.parse(text);
          code = typeof j?.error?.code === 'string' ? j.error.code : '';
          msg = typeof j?.error?.message === 'string' ? j.error.message : '';
        } catch { /* not the envelope */ }
        const ra = Number(res.headers.get('retry-after'));
        if (Number.isFinite(ra) && ra > 0) resp.retryAfterS = Math.floor(ra);
        const status = CODE_STATUS[code] ?? httpStatusName(res.status);
        return fail(status, `gateway: HTTP ${res.status}${code ? ` ${code}` : ''}${msg ? `: ${msg}` : ''}`, res.status, code);
      }
      const ctype = res.headers.get('content-type') ?? '';
      if (body.stream && ctype.startsWith('text/event-stream')) {
        await readSse(res, sig, (event, data) => {
          let j: any;
          try { j = JSON.parse(data); } catch { throw new SippError('upstream_error', `gateway: a '${event}' event is not JSON`); }
          if (event === 'token') {
            if (typeof j?.text !== 'string') throw new SippError('upstream_error', 'gateway: a token event has no text');
            if (!ttft) ttft = performance.now() - t0;
            resp.text += j.text;
            onText(j.text);
          } else if (event === 'usage') {
            resp.usage = usageOf(j);
          } else if (event === 'done') {
            resp.finishReason = finishOf(j?.finish_reason);
            return true;
          } else if (event === 'error') {
            const code = String(j?.error?.code ?? '');
            throw Object.assign(new SippError(CODE_STATUS[code] ?? 'upstream_error',
              `gateway: ${code || 'error'}: ${String(j?.error?.message ?? '')}`), { code });
          }
          return false;
        });
        if (resp.finishReason === 'none' && !signal.aborted) throw new SippError('transport', 'gateway: the stream ended without a done event');
      } else {
        const text = await readCapped(res, MAX_BODY_BYTES, false);
        let j: any;
        try { j = JSON.parse(text); } catch { throw new SippError('upstream_error', 'gateway: the answer is not JSON'); }
        if (op === 'embed') {
          if (!Array.isArray(j?.embedding) || j.embedding.some((x: unknown) => typeof x !== 'number')) {
            throw new SippError('upstream_error', "gateway: the embed answer has no vector");
          }
          resp.embedding = Float32Array.from(j.embedding as number[]);
          resp.finishReason = 'stop';
        } else {
          if (typeof j?.text !== 'string') throw new SippError('upstream_error', 'gateway: the answer has no text');
          resp.text = j.text;
          ttft = performance.now() - t0;
          if (resp.text) onText(resp.text);
          resp.finishReason = finishOf(j.finish_reason);
        }
        if (j?.usage) resp.usage = usageOf(j.usage);
      }
    } catch (e) {
      if (signal.aborted) { resp.finishReason = 'cancelled'; return resp; }
      if (timeout?.aborted) return fail('upstream_timeout', `the gateway did not finish within ${this.timeoutMs} ms`, res.status);
      if (e instanceof SippError) return fail(e.status, e.message, res.status, (e as any).code ?? '');
      return fail('transport', `gateway: the connection broke: ${(e as Error).message ?? e}`, res.status);
    }
    const total = performance.now() - t0;
    resp.stats = {
      queueMs: 0, ttftMs: ttft, prefillMs: 0, decodeMs: total - ttft, prefillTokS: 0,
      decodeTokS: resp.usage.outputTokens > 1 && total > ttft ? (resp.usage.outputTokens - 1) / ((total - ttft) / 1000) : 0,
      totalMs: total, itlAvgMs: 0, itlP99Ms: 0, prefillTokens: 0, cacheSource: 'none', cachedTokens: 0,
    };
    return resp;
  }
}

function usageOf(j: any) {
  const n = (x: unknown) => (typeof x === 'number' && x >= 0 ? x : 0);
  return { inputTokens: n(j?.input_tokens), outputTokens: n(j?.output_tokens), totalTokens: n(j?.total_tokens) };
}

function finishOf(x: unknown): SippResponse['finishReason'] {
  return x === 'stop' || x === 'length' || x === 'cancelled' ? x : 'none';
}

/** Reads a body up to `cap` bytes; over it: truncates (error bodies) or fails. */
async function readCapped(res: Response, cap: number, truncate: boolean): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (n + value.byteLength > cap) {
      await reader.cancel().catch(() => {});
      if (!truncate) throw new SippError('upstream_error', `gateway: the answer is over ${cap} bytes`);
      parts.push(value.subarray(0, cap - n));
      n = cap;
      break;
    }
    parts.push(value);
    n += value.byteLength;
  }
  const all = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { all.set(p, o); o += p.byteLength; }
  return new TextDecoder().decode(all);
}

/** Incremental SSE reader (event/data fields, comments ignored). `onEvent` returns true to
 *  stop (the done event). An event whose data grows past MAX_EVENT_BYTES is an error. */
export async function readSse(res: Response, signal: AbortSignal,
                              onEvent: (event: string, data: string) => boolean): Promise<void> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = '', event = '', data = '', dataBytes = 0, hasData = false;
  const onAbort = () => { reader.cancel().catch(() => {}); };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      if (buf.length > 2 * MAX_EVENT_BYTES + 64) throw new SippError('upstream_error', 'gateway: an SSE line is over 1 MiB');
      let nl: number;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (hasData) {
            const stop = onEvent(event || 'message', data);
            if (stop) { await reader.cancel().catch(() => {}); return; }
          }
          event = ''; data = ''; dataBytes = 0; hasData = false;
          continue;
        }
        if (line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let val = c < 0 ? '' : line.slice(c + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') event = val;
        else if (field === 'data') {
          dataBytes += new TextEncoder().encode(val).byteLength + 1;
          if (dataBytes > MAX_EVENT_BYTES) throw new SippError('upstream_error', 'gateway: an SSE event is over 1 MiB');
          data = hasData ? `${data}\n${val}` : val;
          hasData = true;
        }
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
