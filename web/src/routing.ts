// Routing in the browser (docs/routing.md, "In the browser"): the signals a gateway endpoint
// measures of this client's own requests, and the policy helper.
//
// Local endpoints answer estimates from the C engine in the wasm module (sippw_estimate: the
// same code and cost model as the native library). The gateway client and the policy run on
// the page, where no C runs, so they are TypeScript ports of src/common/signals.c and
// src/client/policy.c: the same averages, health rule, rules, order and reasons (the reasons'
// lines are the C ones, numbers formatted as printf does). The browser suite checks them
// against the rule cases of tests/api/test_routing.c. Change one, change the other.

import type {
  AuditDecision, Estimate, Figure, FigureSource, Rule, RuleKind, RouteCandidate, RouteChoice,
  SippResponse,
} from './types.js';
import { SippError } from './types.js';

// ---- signals (src/common/signals.c) ------------------------------------------------------

/** Weight of a new sample once there are enough of them; the first ones are plain means. */
const EWMA_WEIGHT = 0.2;
/** Unhealthy: this many failures in a row, the last one less than UNHEALTHY_FOR_MS ago. */
const UNHEALTHY_AFTER = 3;
const UNHEALTHY_FOR_MS = 30000;

const FAILURES = new Set(['transport', 'upstream_timeout', 'upstream_error', 'overloaded', 'internal']);
const BUSY = new Set(['busy', 'rate_limited', 'overloaded']);

class Average {
  value = 0;
  n = 0;
  add(x: number) {
    this.n++;
    this.value += Math.max(1 / this.n, EWMA_WEIGHT) * (x - this.value);
  }
  measured(): Figure {
    return this.n ? { value: this.value, samples: this.n, source: 'measured' } : unknown();
  }
}

function unknown(): Figure { return { value: 0, samples: 0, source: 'unknown' }; }

/** What a gateway endpoint measured of this client's requests, and its configured prices. */
export class Signals {
  private ttft = new Average();
  private total = new Average();
  private decode = new Average();
  private error = new Average();
  private busy = new Average();
  private consecutiveFailures = 0;
  private lastFailureMs = 0;
  private priceIn = -1;
  private priceOut = -1;

  /** One finished request (cancelled ones say nothing about the endpoint: not counted). */
  record(r: SippResponse, nowMs = performance.now()) {
    if (r.status === 'cancelled' || r.finishReason === 'cancelled') return;
    const failed = FAILURES.has(r.status);
    this.error.add(failed ? 1 : 0);
    this.busy.add(BUSY.has(r.status) ? 1 : 0);
    if (failed) { this.consecutiveFailures++; this.lastFailureMs = nowMs; } else this.consecutiveFailures = 0;
    const st = r.stats;
    if (r.status === 'ok' && st) {
      if (st.ttftMs > 0) this.ttft.add(st.ttftMs);
      if (st.totalMs > 0) this.total.add(st.totalMs);
      if (st.decodeTokS > 0) this.decode.add(st.decodeTokS);
    }
  }

  setPrices(inputPerMtok: number | null, outputPerMtok: number | null) {
    const p = (x: number | null) => (x == null || x < 0 ? -1 : x);
    if (Number.isNaN(inputPerMtok) || Number.isNaN(outputPerMtok)) throw new SippError('invalid_argument', 'prices must be numbers');
    this.priceIn = p(inputPerMtok);
    this.priceOut = p(outputPerMtok);
  }

  /** The estimate of a remote endpoint: measured averages, configured prices, health. */
  estimate(nowMs = performance.now()): Estimate {
    const configured = (v: number): Figure => (v >= 0 ? { value: v, samples: 0, source: 'configured' } : unknown());
    return {
      local: false, loaded: true,
      healthy: !(this.consecutiveFailures >= UNHEALTHY_AFTER && nowMs - this.lastFailureMs < UNHEALTHY_FOR_MS),
      promptTokens: 0, cachedTokens: 0, cacheSource: 'none', cacheOnDisk: false, prefillTokens: 0,
      nCtx: 0, running: 0, queued: 0, freeSlots: 0,
      ttftMs: this.ttft.measured(), decodeTokensPerS: this.decode.measured(), totalMs: this.total.measured(),
      priceInputPerMtok: configured(this.priceIn), priceOutputPerMtok: configured(this.priceOut),
      errorRate: this.error.measured(), busyRate: this.busy.measured(),
    };
  }
}

// ---- printf's %g, for reasons identical to C's ---------------------------------------------

/** `%.<p>g`. */
export function formatG(v: number, p: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  if (v === 0) return '0';
  const [m, e] = v.toExponential(p - 1).split('e');
  const x = Number(e);
  const strip = (s: string) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (x < -4 || x >= p) return `${strip(m)}e${x < 0 ? '-' : '+'}${String(Math.abs(x)).padStart(2, '0')}`;
  return strip(v.toFixed(p - 1 - x));
}

// ---- the policy (src/client/policy.c) ------------------------------------------------------

export const RULE_KINDS: readonly RuleKind[] = [
  'local_only_tag', 'skip_unavailable', 'fit_context', 'max_ttft_ms', 'max_cost',
  'prefer_warm', 'prefer_local_under_ttft', 'prefer_cheapest', 'escalate_low_confidence',
];
const FILTERS = new Set<RuleKind>(['local_only_tag', 'skip_unavailable', 'fit_context', 'max_ttft_ms', 'max_cost']);
const MAX_CANDIDATES = 64;

interface RuleSpec { kind: RuleKind; value: number; tag?: string }

/** A figure as given (an estimate may be built by the app): anything malformed is unknown. */
function fig(f: unknown): Figure {
  const x = f as Partial<Figure> | null;
  if (!x || typeof x !== 'object' || typeof x.value !== 'number' || !Number.isFinite(x.value)) return unknown();
  const source: FigureSource = x.source === 'measured' || x.source === 'configured' || x.source === 'predicted' ? x.source : 'unknown';
  if (source === 'unknown') return unknown();
  const samples = typeof x.samples === 'number' && x.samples > 0 ? Math.floor(x.samples) : 0;
  return { value: x.value, samples, source };
}

function uint(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.min(Math.floor(v), 0xffffffff) : 0;
}

/** An estimate with every field present and typed (what the C struct always has). */
function normalize(e: Partial<Estimate>): Estimate {
  const cs = e.cacheSource === 'live' || e.cacheSource === 'snapshot' ? e.cacheSource : 'none';
  return {
    local: e.local === true, loaded: e.loaded === true, healthy: e.healthy === true,
    promptTokens: uint(e.promptTokens), cachedTokens: uint(e.cachedTokens), cacheSource: cs,
    cacheOnDisk: e.cacheOnDisk === true, prefillTokens: uint(e.prefillTokens), nCtx: uint(e.nCtx),
    running: uint(e.running), queued: uint(e.queued), freeSlots: uint(e.freeSlots),
    ttftMs: fig(e.ttftMs), decodeTokensPerS: fig(e.decodeTokensPerS), totalMs: fig(e.totalMs),
    priceInputPerMtok: fig(e.priceInputPerMtok), priceOutputPerMtok: fig(e.priceOutputPerMtok),
    errorRate: fig(e.errorRate), busyRate: fig(e.busyRate),
  };
}

/** "820 ms measured over 12" / "unknown" */
function figure(f: Figure, unit: string): string {
  if (f.source === 'unknown') return 'unknown';
  return f.samples ? `${formatG(f.value, 4)}${unit} ${f.source} over ${f.samples}` : `${formatG(f.value, 4)}${unit} ${f.source}`;
}

/**
 * An ordered, explainable set of routing rules: the C policy (sipp_policy) for the browser.
 * Each rule is a name ('fit_context'), [name, value] (['prefer_warm', 0.5],
 * ['local_only_tag', 'private']) or {kind, value, tag}. choose() is pure: it sends nothing.
 */
export class Policy {
  private rules: RuleSpec[];

  constructor(rules: Rule[]) {
    if (!Array.isArray(rules)) throw new SippError('invalid_argument', 'rules must be an array');
    this.rules = rules.map((raw, i) => {
      let r: any = raw;
      if (typeof r === 'string') r = { kind: r };
      else if (Array.isArray(r)) r = r[0] === 'local_only_tag' ? { kind: r[0], tag: r[1] } : { kind: r[0], value: r[1] };
      if (r === null || typeof r !== 'object' || !RULE_KINDS.includes(r.kind)) {
        throw new SippError('invalid_argument', `rule ${i}: unknown kind ${JSON.stringify(r?.kind ?? null)} (one of ${RULE_KINDS.join(', ')})`);
      }
      const kind = r.kind as RuleKind;
      const value = r.value ?? 0;
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
        throw new SippError('invalid_argument', `rule ${i} (${kind}): value must be a finite number >= 0`);
      }
      if (kind === 'prefer_warm' && value > 1) {
        throw new SippError('invalid_argument', `rule ${i} (prefer_warm): value is a fraction of the prompt, in [0, 1]`);
      }
      if (kind === 'escalate_low_confidence' && (value <= 0 || value > 1)) {
        throw new SippError('invalid_argument', `rule ${i} (escalate_low_confidence): value is a probability, in (0, 1]`);
      }
      if (kind === 'local_only_tag' && (typeof r.tag !== 'string' || !r.tag)) {
        throw new SippError('invalid_argument', `rule ${i} (local_only_tag): the tag is required`);
      }
      return kind === 'local_only_tag' ? { kind, value, tag: r.tag as string } : { kind, value };
    });
  }

  /**
   * Chooses among candidates ({endpoint, estimate, name?} or [endpoint, estimate]; at most 64)
   * for a request with `tags` that may generate up to `maxTokens` (default 256). Filters drop
   * candidates wherever they are listed; then the first preference that picks decides; else
   * the first candidate left. `endpoint` is null (index -1) when every candidate was dropped;
   * `reasons` has one line per rule that acted, with the figures it used and their sources.
   */
  choose(candidates: Array<RouteCandidate | [string, Estimate]>,
         options: { tags?: string[]; maxTokens?: number } = {}): RouteChoice {
    if (!Array.isArray(candidates) || candidates.length === 0 || candidates.length > MAX_CANDIDATES) {
      throw new SippError('invalid_argument', `1 to ${MAX_CANDIDATES} candidates are required`);
    }
    const list = candidates.map((c, i) => {
      const x = Array.isArray(c) ? { endpoint: c[0], estimate: c[1] } : c;
      if (!x || typeof x.endpoint !== 'string' || !x.endpoint || !x.estimate || typeof x.estimate !== 'object') {
        throw new SippError('invalid_argument', `candidate ${i} needs an endpoint and an estimate`);
      }
      return { endpoint: x.endpoint, name: (x as RouteCandidate).name ?? x.endpoint, e: normalize(x.estimate) };
    });
    const tags = options.tags ?? [];
    const maxTokens = uint(options.maxTokens ?? 256);
    const dropped = list.map(() => false);
    const lines: string[] = [];
    const say = (s: string) => lines.push(s);

    // Expected cost: prices x (prompt tokens, maxTokens). NaN when a remote price or a remote
    // prompt size is unknown; a local endpoint without a price costs 0.
    const costOf = (i: number): number => {
      const e = list[i].e;
      const priced = e.priceInputPerMtok.source !== 'unknown' && e.priceOutputPerMtok.source !== 'unknown';
      if (!priced) return e.local ? 0 : NaN;
      // a remote endpoint does not tokenize: take the largest prompt count a local one gave
      let n = e.promptTokens;
      for (let k = 0; n === 0 && k < list.length; k++) if (list[k].e.promptTokens > n) n = list[k].e.promptTokens;
      if (n === 0) return NaN;
      return (n * e.priceInputPerMtok.value + maxTokens * e.priceOutputPerMtok.value) / 1e6;
    };
    const drop = (i: number, k: number, r: RuleSpec, why: string) => {
      dropped[i] = true;
      say(`rule ${k + 1} ${r.kind}: dropped ${list[i].name}: ${why}`);
    };

    this.rules.forEach((r, k) => {
      if (!FILTERS.has(r.kind)) return;
      list.forEach(({ e }, i) => {
        if (dropped[i]) return;
        switch (r.kind) {
          case 'local_only_tag':
            if (!e.local && tags.includes(r.tag!)) drop(i, k, r, `the request is tagged '${r.tag}' and the endpoint is remote`);
            break;
          case 'skip_unavailable':
            if (!e.local && !e.healthy) drop(i, k, r, 'unhealthy (its recent requests keep failing)');
            else if (e.local && (!e.loaded || !e.healthy)) drop(i, k, r, !e.loaded ? 'the model is not loaded' : 'the engine is stalled');
            else if (e.local && e.freeSlots === 0 && e.queued >= r.value) {
              drop(i, k, r, `no free sequence and ${e.queued} queued (limit ${r.value.toFixed(0)})`);
            }
            break;
          case 'fit_context':
            if (e.local && e.nCtx && e.promptTokens + maxTokens > e.nCtx) {
              drop(i, k, r, `${e.promptTokens} prompt + ${maxTokens} max tokens > n_ctx ${e.nCtx}`);
            }
            break;
          case 'max_ttft_ms':
            if (e.ttftMs.source !== 'unknown' && e.ttftMs.value > r.value) {
              drop(i, k, r, `TTFT ${figure(e.ttftMs, ' ms')} > ${r.value.toFixed(0)} ms`);
            }
            break;
          case 'max_cost': {
            const c = costOf(i);
            if (!Number.isNaN(c) && c > r.value) drop(i, k, r, `expected cost ${formatG(c, 6)} > ${formatG(r.value, 6)}`);
            break;
          }
        }
      });
    });

    const prefer = (k: number, r: RuleSpec): number => {
      let best = -1;
      switch (r.kind) {
        case 'prefer_warm': {
          let bestFrac = -1;
          list.forEach(({ e }, i) => {
            if (dropped[i] || !e.local || e.promptTokens === 0) return;
            const frac = e.cachedTokens / e.promptTokens;
            if (e.cachedTokens > 0 && frac >= r.value && frac > bestFrac) { best = i; bestFrac = frac; }
          });
          if (best >= 0) {
            const e = list[best].e;
            say(`rule ${k + 1} prefer_warm: chose ${list[best].name}: ${e.cachedTokens} of ${e.promptTokens} prompt tokens cached (${e.cacheSource}${e.cacheOnDisk ? ', on disk' : ''}) >= ${(100 * r.value).toFixed(0)}%`);
          }
          break;
        }
        case 'prefer_local_under_ttft':
          for (let i = 0; i < list.length && best < 0; i++) {
            const e = list[i].e;
            if (dropped[i] || !e.local || e.ttftMs.source === 'unknown') continue;
            if (e.ttftMs.value < r.value) {
              best = i;
              say(`rule ${k + 1} prefer_local_under_ttft: chose ${list[i].name}: TTFT ${figure(e.ttftMs, ' ms')} < ${r.value.toFixed(0)} ms`);
            }
          }
          break;
        case 'prefer_cheapest': {
          let bestCost = Infinity;
          list.forEach((_, i) => {
            const c = costOf(i);
            if (dropped[i] || Number.isNaN(c)) return;
            if (c < bestCost) { bestCost = c; best = i; }
          });
          if (best >= 0) say(`rule ${k + 1} prefer_cheapest: chose ${list[best].name}: expected cost ${formatG(bestCost, 6)}`);
          break;
        }
      }
      return best;
    };
    let chosen = -1;
    for (let k = 0; k < this.rules.length && chosen < 0; k++) {
      const r = this.rules[k];
      if (!FILTERS.has(r.kind) && r.kind !== 'escalate_low_confidence') chosen = prefer(k, r);
    }
    if (chosen < 0) {
      chosen = dropped.indexOf(false);
      say(chosen >= 0 ? `default: chose ${list[chosen].name}, the first candidate left` : 'no candidate is left');
    }
    return {
      endpoint: chosen >= 0 ? list[chosen].endpoint : null, index: chosen,
      dropped: dropped.flatMap((d, i) => (d ? [i] : [])),
      reasons: lines.map((l) => `${l}\n`).join(''),
    };
  }

  /**
   * Decides whether a finished draft stands (sipp_policy_check_draft): by the first
   * escalate_low_confidence rule (none: the draft always stands); a failed draft is
   * 'draft_failed' (retrySafe when nothing of it was produced); a draft without
   * log-probabilities, or below the threshold, is 'escalated'. Pure.
   */
  checkDraft(draft: SippResponse): AuditDecision {
    const c = responseConfidence(draft);
    const d: AuditDecision = { outcome: 'draft', confidence: c.confidence, minProb: c.minProb, nTokens: c.nTokens, retrySafe: false, reasons: '' };
    const say = (s: string) => { d.reasons += `${s}\n`; };
    if (draft.status !== 'ok') {
      d.outcome = 'draft_failed';
      d.retrySafe = !draft.text && !c.nTokens && !(draft.usage?.outputTokens > 0);
      say(`draft failed (${draft.status}: ${draft.errorMessage}) ${d.retrySafe ? 'before any output token: the app may send it elsewhere' : 'after its output began: it is not sent elsewhere'}`);
      return d;
    }
    const k = this.rules.findIndex((r) => r.kind === 'escalate_low_confidence');
    const stats = () => `confidence ${d.confidence.toFixed(3)} (geometric mean token probability over ${d.nTokens} tokens, least likely ${formatG(d.minProb, 3)})`;
    if (k < 0) {
      say('no escalate_low_confidence rule: the draft stands');
    } else if (Number.isNaN(d.confidence)) {
      d.outcome = 'escalated';
      say(`rule ${k + 1} escalate_low_confidence: escalate: the draft has no token log-probabilities, its confidence is unknown`);
    } else if (d.confidence < this.rules[k].value) {
      d.outcome = 'escalated';
      say(`rule ${k + 1} escalate_low_confidence: escalate: ${stats()} < ${formatG(this.rules[k].value, 3)}`);
    } else {
      say(`rule ${k + 1} escalate_low_confidence: the draft stands: ${stats()} >= ${formatG(this.rules[k].value, 3)}`);
    }
    return d;
  }
}

/**
 * The confidence of a finished run from its token log-probabilities (sipp_response_confidence):
 * the geometric mean of the output tokens' probabilities, exp(mean logprob), in (0, 1]; NaN
 * (0 tokens) when the response has none. `minProb`: the least likely token's probability.
 */
export function responseConfidence(r: SippResponse): { confidence: number; minProb: number; nTokens: number } {
  const lps = r.logprobs ?? [];
  if (!lps.length) return { confidence: NaN, minProb: NaN, nTokens: 0 };
  let sum = 0, min = 0;
  lps.forEach((x, i) => {
    const lp = typeof x === 'number' && Number.isFinite(x) ? x : -1e4; // null (-inf): a token the model gave no chance
    sum += lp;
    if (i === 0 || lp < min) min = lp;
  });
  return { confidence: Math.exp(sum / lps.length), minProb: Math.exp(min), nTokens: lps.length };
}
