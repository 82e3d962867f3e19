/*
 * policy.c — the routing policy (include/sipp.h, "Routing signals and policy"): an ordered list
 * of rules the app builds, evaluated over candidates (an endpoint and its estimate each).
 *
 * Filters drop candidates; a preference picks one of those left; when none picks, the first one
 * left in the app's order wins. Each rule that acted writes one line of `reasons`, with the
 * figures it used and where they came from, so a choice can always be explained. Pure: no
 * I/O, no locks; a policy is immutable after sipp_policy_new.
 */
#define _GNU_SOURCE
#include "client_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CANDIDATES 64

struct sipp_policy {
    sipp_rule *rules;
    size_t n_rules;
};

static const char *rule_name(sipp_rule_kind k) {
    switch (k) {
    case SIPP_RULE_LOCAL_ONLY_TAG: return "local_only_tag";
    case SIPP_RULE_SKIP_UNAVAILABLE: return "skip_unavailable";
    case SIPP_RULE_FIT_CONTEXT: return "fit_context";
    case SIPP_RULE_MAX_TTFT_MS: return "max_ttft_ms";
    case SIPP_RULE_MAX_COST: return "max_cost";
    case SIPP_RULE_PREFER_WARM: return "prefer_warm";
    case SIPP_RULE_PREFER_LOCAL_UNDER_TTFT: return "prefer_local_under_ttft";
    case SIPP_RULE_PREFER_CHEAPEST: return "prefer_cheapest";
    case SIPP_RULE_ESCALATE_LOW_CONFIDENCE: return "escalate_low_confidence";
    }
    return NULL;
}

void sipp_policy_free(sipp_policy *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_rules; i++) free((char *)p->rules[i].tag);
    free(p->rules);
    free(p);
}

sipp_status sipp_policy_new(const sipp_rule *rules, size_t n, sipp_policy **out, sipp_error *err) {
    if (!out) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "out is required");
    *out = NULL;
    if (n && !rules) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "rules is NULL");
    for (size_t i = 0; i < n; i++) {
        const sipp_rule *r = &rules[i];
        if (!rule_name(r->kind))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "rule %zu: unknown kind %d", i,
                              (int)r->kind);
        if (!isfinite(r->value) || r->value < 0)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "rule %zu (%s): value must be a finite number >= 0", i,
                              rule_name(r->kind));
        if (r->kind == SIPP_RULE_PREFER_WARM && r->value > 1)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "rule %zu (prefer_warm): value is a fraction of the prompt, in [0, 1]",
                              i);
        if (r->kind == SIPP_RULE_ESCALATE_LOW_CONFIDENCE && (r->value <= 0 || r->value > 1))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "rule %zu (escalate_low_confidence): value is a probability, in "
                              "(0, 1]",
                              i);
        if (r->kind == SIPP_RULE_LOCAL_ONLY_TAG && (!r->tag || !r->tag[0]))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "rule %zu (local_only_tag): the tag is required", i);
    }
    sipp_policy *p = calloc(1, sizeof *p);
    if (!p || (n && !(p->rules = calloc(n, sizeof *p->rules)))) {
        free(p);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        p->rules[i] = rules[i];
        p->rules[i].tag = NULL;
        if (rules[i].tag && !(p->rules[i].tag = strdup(rules[i].tag))) {
            p->n_rules = i;
            sipp_policy_free(p);
            return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        }
        p->n_rules = i + 1;
    }
    *out = p;
    return SIPP_OK;
}

/* ---- evaluation ---------------------------------------------------------------------------- */

typedef struct eval {
    const sipp_route_candidate *c;
    size_t n;
    uint32_t max_tokens;
    bool dropped[MAX_CANDIDATES];
    sipp__buf reasons;
} eval;

static void say(eval *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(eval *v, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    sipp__buf_append(&v->reasons, line, strlen(line));
    sipp__buf_append(&v->reasons, "\n", 1);
}

static const char *name_of(const eval *v, size_t i, char *buf, size_t cap) {
    if (v->c[i].name) return v->c[i].name;
    snprintf(buf, cap, "#%zu", i);
    return buf;
}

/* "820 ms measured over 12" / "unknown" */
static const char *figure(const sipp_figure *f, const char *unit, char *buf, size_t cap) {
    if (f->source == SIPP_FIGURE_UNKNOWN) return "unknown";
    if (f->samples)
        snprintf(buf, cap, "%.4g%s %s over %u", f->value, unit, sipp_figure_source_name(f->source),
                 f->samples);
    else
        snprintf(buf, cap, "%.4g%s %s", f->value, unit, sipp_figure_source_name(f->source));
    return buf;
}

/* Expected cost of the request: prices x (prompt tokens, max_tokens). Unknown (NaN) when a
 * remote price or a remote prompt size is unknown; a local endpoint without a price costs 0. */
static double cost_of(const eval *v, size_t i) {
    const sipp_estimate *e = v->c[i].estimate;
    bool priced = e->price_input_per_mtok.source != SIPP_FIGURE_UNKNOWN &&
                  e->price_output_per_mtok.source != SIPP_FIGURE_UNKNOWN;
    if (!priced) return e->local ? 0 : NAN;
    /* a remote endpoint does not tokenize: take the largest prompt count a local one gave */
    uint32_t in = e->prompt_tokens;
    for (size_t k = 0; in == 0 && k < v->n; k++)
        if (v->c[k].estimate->prompt_tokens > in) in = v->c[k].estimate->prompt_tokens;
    if (in == 0) return NAN;
    return (in * e->price_input_per_mtok.value + v->max_tokens * e->price_output_per_mtok.value) /
           1e6;
}

static bool has_tag(const char *const *tags, size_t n, const char *tag) {
    for (size_t i = 0; i < n; i++)
        if (tags[i] && strcmp(tags[i], tag) == 0) return true;
    return false;
}

static void drop(eval *v, size_t i, size_t rule, const sipp_rule *r, const char *why) {
    char nb[24];
    v->dropped[i] = true;
    say(v, "rule %zu %s: dropped %s: %s", rule + 1, rule_name(r->kind), name_of(v, i, nb, sizeof nb),
        why);
}

static void apply_filter(eval *v, size_t k, const sipp_rule *r, const char *const *tags,
                         size_t n_tags) {
    char why[256], fb[64];
    for (size_t i = 0; i < v->n; i++) {
        if (v->dropped[i]) continue;
        const sipp_estimate *e = v->c[i].estimate;
        switch (r->kind) {
        case SIPP_RULE_LOCAL_ONLY_TAG:
            if (!e->local && has_tag(tags, n_tags, r->tag)) {
                snprintf(why, sizeof why, "the request is tagged '%s' and the endpoint is remote",
                         r->tag);
                drop(v, i, k, r, why);
            }
            break;
        case SIPP_RULE_SKIP_UNAVAILABLE:
            if (!e->local && !e->healthy) {
                drop(v, i, k, r, "unhealthy (its recent requests keep failing)");
            } else if (e->local && (!e->loaded || !e->healthy)) {
                drop(v, i, k, r, !e->loaded ? "the model is not loaded" : "the engine is stalled");
            } else if (e->local && e->free_slots == 0 && e->queued >= r->value) {
                snprintf(why, sizeof why, "no free sequence and %u queued (limit %.0f)", e->queued,
                         r->value);
                drop(v, i, k, r, why);
            }
            break;
        case SIPP_RULE_FIT_CONTEXT:
            if (e->local && e->n_ctx && (uint64_t)e->prompt_tokens + v->max_tokens > e->n_ctx) {
                snprintf(why, sizeof why, "%u prompt + %u max tokens > n_ctx %u", e->prompt_tokens,
                         v->max_tokens, e->n_ctx);
                drop(v, i, k, r, why);
            }
            break;
        case SIPP_RULE_MAX_TTFT_MS:
            if (e->ttft_ms.source != SIPP_FIGURE_UNKNOWN && e->ttft_ms.value > r->value) {
                snprintf(why, sizeof why, "TTFT %s > %.0f ms",
                         figure(&e->ttft_ms, " ms", fb, sizeof fb), r->value);
                drop(v, i, k, r, why);
            }
            break;
        case SIPP_RULE_MAX_COST: {
            double c = cost_of(v, i);
            if (!isnan(c) && c > r->value) {
                snprintf(why, sizeof why, "expected cost %.6g > %.6g", c, r->value);
                drop(v, i, k, r, why);
            }
            break;
        }
        default: break;
        }
    }
}

/* Returns the candidate a preference picks, or -1. */
static int apply_preference(eval *v, size_t k, const sipp_rule *r) {
    char fb[64], nb[24];
    int best = -1;
    switch (r->kind) {
    case SIPP_RULE_PREFER_WARM: {
        double best_frac = -1;
        for (size_t i = 0; i < v->n; i++) {
            const sipp_estimate *e = v->c[i].estimate;
            if (v->dropped[i] || !e->local || e->prompt_tokens == 0) continue;
            double frac = (double)e->cached_tokens / e->prompt_tokens;
            if (e->cached_tokens > 0 && frac >= r->value && frac > best_frac) {
                best = (int)i;
                best_frac = frac;
            }
        }
        if (best >= 0) {
            const sipp_estimate *e = v->c[best].estimate;
            say(v, "rule %zu prefer_warm: chose %s: %u of %u prompt tokens cached (%s%s) >= %.0f%%",
                k + 1, name_of(v, (size_t)best, nb, sizeof nb), e->cached_tokens, e->prompt_tokens,
                sipp_cache_source_name(e->cache_source), e->cache_on_disk ? ", on disk" : "",
                100 * r->value);
        }
        break;
    }
    case SIPP_RULE_PREFER_LOCAL_UNDER_TTFT:
        for (size_t i = 0; i < v->n && best < 0; i++) {
            const sipp_estimate *e = v->c[i].estimate;
            if (v->dropped[i] || !e->local || e->ttft_ms.source == SIPP_FIGURE_UNKNOWN) continue;
            if (e->ttft_ms.value < r->value) {
                best = (int)i;
                say(v, "rule %zu prefer_local_under_ttft: chose %s: TTFT %s < %.0f ms", k + 1,
                    name_of(v, i, nb, sizeof nb), figure(&e->ttft_ms, " ms", fb, sizeof fb),
                    r->value);
            }
        }
        break;
    case SIPP_RULE_PREFER_CHEAPEST: {
        double best_cost = INFINITY;
        for (size_t i = 0; i < v->n; i++) {
            double c = cost_of(v, i);
            if (v->dropped[i] || isnan(c)) continue;
            if (c < best_cost) {
                best_cost = c;
                best = (int)i;
            }
        }
        if (best >= 0)
            say(v, "rule %zu prefer_cheapest: chose %s: expected cost %.6g", k + 1,
                name_of(v, (size_t)best, nb, sizeof nb), best_cost);
        break;
    }
    default: break;
    }
    return best;
}

static bool is_filter(sipp_rule_kind k) { return k <= SIPP_RULE_MAX_COST; }

sipp_status sipp_policy_choose(const sipp_policy *p, const sipp_route_candidate *c, size_t n,
                               const char *const *tags, size_t n_tags, uint32_t max_tokens,
                               sipp_route_choice *out, sipp_error *err) {
    if (!out) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "out is required");
    memset(out, 0, sizeof *out);
    out->index = -1;
    if (!p || !c || n == 0 || n > MAX_CANDIDATES)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "policy and 1 to %d candidates are required", MAX_CANDIDATES);
    for (size_t i = 0; i < n; i++)
        if (!c[i].endpoint || !c[i].estimate)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "candidate %zu needs an endpoint and an estimate", i);
    eval v = {.c = c, .n = n, .max_tokens = max_tokens};
    sipp__buf_init(&v.reasons, 1 << 16);
    int chosen = -1;
    /* Filters act wherever they are in the list (a preference never sees what a filter drops);
     * preferences act in order, and the first that picks decides. */
    for (size_t k = 0; k < p->n_rules; k++)
        if (is_filter(p->rules[k].kind)) apply_filter(&v, k, &p->rules[k], tags, n_tags);
    for (size_t k = 0; k < p->n_rules && chosen < 0; k++)
        if (!is_filter(p->rules[k].kind) && p->rules[k].kind != SIPP_RULE_ESCALATE_LOW_CONFIDENCE)
            chosen = apply_preference(&v, k, &p->rules[k]);
    char nb[24];
    if (chosen < 0) {
        for (size_t i = 0; i < n && chosen < 0; i++)
            if (!v.dropped[i]) chosen = (int)i;
        if (chosen >= 0)
            say(&v, "default: chose %s, the first candidate left", name_of(&v, (size_t)chosen, nb,
                                                                          sizeof nb));
        else
            say(&v, "no candidate is left");
    }
    for (size_t i = 0; i < n; i++)
        if (v.dropped[i]) out->dropped |= (uint64_t)1 << i;
    out->index = chosen;
    out->endpoint = chosen >= 0 ? c[chosen].endpoint : NULL;
    sipp__buf_append(&v.reasons, "", 1);
    out->reasons = v.reasons.data ? strdup(v.reasons.data) : NULL;
    sipp__buf_free(&v.reasons);
    if (chosen < 0)
        return sipp__fail(err, SIPP_NO_ROUTE, 0, "no endpoint passes the policy's rules");
    return SIPP_OK;
}

void sipp_route_choice_free(sipp_route_choice *choice) {
    if (!choice) return;
    free(choice->reasons);
    choice->reasons = NULL;
}

/* ---- after a run: confidence and draft-then-audit (issue 20) -------------------------------- */

double sipp_response_confidence(const sipp_response *r, double *min_prob, uint32_t *n_tokens) {
    if (min_prob) *min_prob = NAN;
    if (n_tokens) *n_tokens = 0;
    if (!r || !r->logprobs || r->n_logprobs == 0) return NAN;
    double sum = 0, min = 0;
    for (size_t i = 0; i < r->n_logprobs; i++) {
        double lp = r->logprobs[i].logprob;
        if (!isfinite(lp)) lp = -1e4; /* -inf: a token the model gave no chance */
        sum += lp;
        if (i == 0 || lp < min) min = lp;
    }
    if (min_prob) *min_prob = exp(min);
    if (n_tokens) *n_tokens = (uint32_t)r->n_logprobs;
    return exp(sum / (double)r->n_logprobs);
}

const char *sipp_audit_outcome_name(sipp_audit_outcome o) {
    switch (o) {
    case SIPP_AUDIT_DRAFT: return "draft";
    case SIPP_AUDIT_ESCALATED: return "escalated";
    case SIPP_AUDIT_DRAFT_FAILED: return "draft_failed";
    default: return "none";
    }
}

void sipp_audit_decision_free(sipp_audit_decision *d) {
    if (!d) return;
    free(d->reasons);
    d->reasons = NULL;
}

static void decision_reset(sipp_audit_decision *d) {
    memset(d, 0, sizeof *d);
    d->confidence = NAN;
    d->min_prob = NAN;
}

static void decision_say(sipp_audit_decision *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void decision_say(sipp_audit_decision *d, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t old = d->reasons ? strlen(d->reasons) : 0, add = strlen(line);
    char *r = realloc(d->reasons, old + add + 2);
    if (!r) return; /* the reasons are an explanation; the decision stands without them */
    memcpy(r + old, line, add);
    r[old + add] = '\n';
    r[old + add + 1] = '\0';
    d->reasons = r;
}

/* A failed run is safe to send elsewhere only when nothing of its answer was produced. */
static bool failed_before_output(const sipp_response *r) {
    return r->text_len == 0 && r->n_logprobs == 0 && (!r->usage || r->usage->output_tokens == 0);
}

sipp_status sipp_policy_check_draft(const sipp_policy *p, const sipp_response *draft,
                                    sipp_audit_decision *out, sipp_error *err) {
    if (!out) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "out is required");
    decision_reset(out);
    if (!p || !draft)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "policy and draft are required");
    out->confidence = sipp_response_confidence(draft, &out->min_prob, &out->n_tokens);
    if (draft->status != SIPP_OK) {
        out->outcome = SIPP_AUDIT_DRAFT_FAILED;
        out->retry_safe = failed_before_output(draft);
        decision_say(out, "draft failed (%s: %s) %s", sipp_status_name(draft->status),
                     draft->error_message,
                     out->retry_safe ? "before any output token: the app may send it elsewhere"
                                     : "after its output began: it is not sent elsewhere");
        return SIPP_OK;
    }
    const sipp_rule *rule = NULL;
    size_t k = 0;
    for (; k < p->n_rules && !rule; k++)
        if (p->rules[k].kind == SIPP_RULE_ESCALATE_LOW_CONFIDENCE) rule = &p->rules[k];
    if (!rule) {
        out->outcome = SIPP_AUDIT_DRAFT;
        decision_say(out, "no escalate_low_confidence rule: the draft stands");
    } else if (isnan(out->confidence)) {
        out->outcome = SIPP_AUDIT_ESCALATED;
        decision_say(out,
                     "rule %zu escalate_low_confidence: escalate: the draft has no token "
                     "log-probabilities, its confidence is unknown",
                     k);
    } else if (out->confidence < rule->value) {
        out->outcome = SIPP_AUDIT_ESCALATED;
        decision_say(out,
                     "rule %zu escalate_low_confidence: escalate: confidence %.3f (geometric mean "
                     "token probability over %u tokens, least likely %.3g) < %.3g",
                     k, out->confidence, out->n_tokens, out->min_prob, rule->value);
    } else {
        out->outcome = SIPP_AUDIT_DRAFT;
        decision_say(out,
                     "rule %zu escalate_low_confidence: the draft stands: confidence %.3f "
                     "(geometric mean token probability over %u tokens, least likely %.3g) >= %.3g",
                     k, out->confidence, out->n_tokens, out->min_prob, rule->value);
    }
    return SIPP_OK;
}

#define AUDIT_ASK "A quick draft answer to the question above follows. Check it; answer the " \
                  "question correctly and completely, fixing the draft where it is wrong.\n\n" \
                  "Draft:\n"

sipp_status sipp_route_draft_audit(const sipp_policy *p, sipp_endpoint *draft_ep,
                                   sipp_endpoint *target_ep, const sipp_message *messages,
                                   size_t n_messages, const sipp_text_params *params,
                                   bool send_draft, sipp_run **out, sipp_audit_decision *d,
                                   sipp_error *err) {
    if (!out || !d)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "out and decision are required");
    *out = NULL;
    decision_reset(d);
    if (!p || !draft_ep || !target_ep || !messages || n_messages == 0 || n_messages > 4096)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "policy, both endpoints and 1 to 4096 messages are required");
    /* the caller's params over the defaults, up to its struct_size (an older header's) */
    sipp_text_params dp;
    sipp_text_params_init(&dp, sizeof dp);
    if (params) {
        if (params->struct_size > sizeof dp || params->struct_size < sizeof(uint32_t))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "params: struct_size %u is not one this library knows",
                              params->struct_size);
        memcpy(&dp, params, params->struct_size);
        dp.struct_size = sizeof dp;
    }
    sipp_text_params tp = dp; /* the target's: the caller's own, streaming included */
    /* the draft: with log-probabilities, never streamed to the caller */
    dp.struct_size = sizeof dp;
    dp.logprobs = true;
    dp.on_tokens = NULL;
    dp.user_data = NULL;
    sipp_run *draft = NULL;
    sipp_status st = sipp_chat(draft_ep, messages, n_messages, &dp, &draft, err);
    if (st != SIPP_OK) {
        d->outcome = SIPP_AUDIT_DRAFT_FAILED;
        d->retry_safe = true;
        decision_say(d, "draft refused at submission (%s): the app may send it elsewhere",
                     sipp_status_name(st));
        return st;
    }
    const sipp_response *r = NULL;
    if ((st = sipp_run_wait(draft, &r, err)) != SIPP_OK ||
        (st = sipp_policy_check_draft(p, r, d, err)) != SIPP_OK) {
        sipp_run_free(draft);
        return st;
    }
    if (d->outcome != SIPP_AUDIT_ESCALATED) {
        *out = draft;
        return SIPP_OK;
    }
    /* escalate: the question (and the draft) to the target. A remote target gets no local
     * cache hints (they say where a prefix is warm here, nothing about the answer). */
    if (target_ep->kind != ENDPOINT_LOCAL) {
        tp.context_key = NULL;
        tp.cache_scope = NULL;
    }
    sipp_message *m = calloc(n_messages + 1, sizeof *m);
    char *ask = NULL;
    if (!m || (send_draft && asprintf(&ask, AUDIT_ASK "%s", r->text ? r->text : "") < 0)) {
        free(m);
        sipp_run_free(draft);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    memcpy(m, messages, n_messages * sizeof *m);
    size_t n = n_messages;
    if (send_draft) m[n++] = (sipp_message){"user", ask};
    decision_say(d, "escalated to the target%s",
                 send_draft ? " with the draft" : " (question only)");
    st = sipp_chat(target_ep, m, n, &tp, out, err); /* copies messages before it returns */
    free(ask);
    free(m);
    sipp_run_free(draft);
    return st;
}
