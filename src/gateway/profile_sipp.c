/*
 * profile_sipp.c — the Sipp profile (/v1/query, /v1/chat, /v1/embed; docs/gateway-protocol.md):
 * its request decoder and every answer it sends, together, behind sipp__gw_sipp_codec.
 *
 * Answers: {"id", "model", "text", "finish_reason", "usage"} for text, {"id", "model",
 * "embedding", "usage"} for embeddings (one input), {"error": {"code", "message"}} for errors;
 * streams are named SSE events `token` {"text", "sequence"}, `usage`, `done` {"finish_reason"}
 * and `error`, the terminal event being `done` or `error`. Usage counts are input_tokens /
 * output_tokens / total_tokens. Shared decoding pieces and the frame writer are in profiles.c.
 */
#define _POSIX_C_SOURCE 200809L
#include "profiles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- decoding ---------------------------------------------------------------------------------- */

static bool decode(gw_op op, json_t *root, gw_call *c, char *msg, size_t cap, char *param,
                        size_t pcap) {
    const char *k;
    json_t *v;
    int r;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "model") == 0) {
            if (!json_is_string(v)) return sipp__gw_bad(msg, cap, "field 'model' must be a string");
            c->model = json_string_value(v);
        } else if (op == GW_OP_QUERY && strcmp(k, "prompt") == 0) {
            if (!json_is_string(v))
                return sipp__gw_bad(msg, cap, "field 'prompt' must be a string");
            c->prompt = json_string_value(v);
        } else if (op == GW_OP_CHAT && strcmp(k, "messages") == 0) {
            if (!sipp__gw_decode_messages(c, v, false, msg, cap, param, pcap)) return false;
        } else if (op == GW_OP_EMBED && strcmp(k, "input") == 0) {
            if (!json_is_string(v)) return sipp__gw_bad(msg, cap, "field 'input' must be a string");
            c->inputs = calloc(1, sizeof *c->inputs);
            if (!c->inputs) return sipp__gw_bad(msg, cap, "out of memory");
            c->inputs[0] = json_string_value(v);
            c->n_inputs = 1;
        } else if (op == GW_OP_EMBED && strcmp(k, "encoding_format") == 0) {
            if (!sipp__gw_decode_encoding(c, v, msg, cap)) return false;
        } else if ((r = sipp__gw_decode_logprobs(c, op, k, v, false, msg, cap, param, pcap)) != 0 ||
                   (r = sipp__gw_decode_schema(c, op, k, v, false, msg, cap, param, pcap)) != 0 ||
                   (r = sipp__gw_decode_tools(c, op, k, v, false, msg, cap, param, pcap)) != 0 ||
                   (r = sipp__gw_decode_reasoning(c, op, k, v, false, msg, cap, param, pcap)) != 0 ||
                   (r = sipp__gw_decode_budget(c, op, k, v, false, msg, cap, param, pcap)) != 0) {
            if (r < 0) return false;
        } else if (sipp__gw_is_local_only(k)) {
            sipp__gw_invalid(c, k,
                             "field '%s' is local-only: the gateway does not let clients steer "
                             "server KV state or local sampling",
                             k);
        } else {
            r = op == GW_OP_EMBED ? 0
                                  : sipp__gw_decode_option(c, k, v, msg, cap, param, pcap, false);
            if (r < 0) return false;
            if (r == 0) sipp__gw_invalid(c, k, "unknown field '%.40s'", k);
        }
    }
    sipp__gw_check_logprobs(c);
    sipp__gw_check_tools(c);
    return sipp__gw_decode_required(op, c, msg, cap);
}

/* ---- encoding ---------------------------------------------------------------------------------- */

/* Log-probabilities (issue 18): `logprobs`, an array of {token, logprob, bytes, top_logprobs},
 * in the text answer and in each token event, when the request asked for them. */
static void add_logprobs(json_t *obj, const gw_answer *a) {
    if (obj && a->logprobs_on)
        json_object_set_new(obj, "logprobs", sipp__gw_logprobs_content(a->logprobs, a->n_logprobs));
}

static json_t *usage(const gw_answer *a) {
    return json_pack("{s:I, s:I, s:I}", "input_tokens", (json_int_t)a->in_tok, "output_tokens",
                     (json_int_t)a->out_tok, "total_tokens", (json_int_t)(a->in_tok + a->out_tok));
}

static json_t *error(gw_code code, const char *param, const char *msg) {
    (void)param;
    return json_pack("{s:{s:s, s:s}}", "error", "code", sipp__gw_code_name(code), "message", msg);
}

static json_t *text(const gw_answer *a, const char *s, size_t len, sipp_finish_reason f) {
    json_t *t = json_pack("{s:s, s:s, s:s%, s:s, s:o}", "id", a->id, "model", a->model, "text", s,
                          len, "finish_reason", sipp__gw_finish_name(f), "usage", usage(a));
    add_logprobs(t, a);
    /* issue 18: the calls [{id, name, arguments}] and the separated reasoning, when any */
    if (t && a->n_tool_calls)
        json_object_set_new(t, "tool_calls",
                            sipp__gw_tool_calls_json(a->tool_calls, a->n_tool_calls, false));
    if (t && a->reasoning && a->reasoning[0])
        json_object_set_new(t, "reasoning", json_string(a->reasoning));
    return t;
}

static void stream_text(sipp__buf *out, const gw_answer *a, gw_stream_state *st, const char *s,
                        size_t len, uint32_t n_tokens) {
    json_t *ev = json_pack("{s:s%, s:I}", "text", s, len, "sequence", (json_int_t)st->sequence);
    add_logprobs(ev, a);
    sipp__gw_sse_frame(out, "token", ev);
    st->sequence += n_tokens;
}

static void stream_error(sipp__buf *out, gw_code code, const char *msg) {
    sipp__gw_sse_frame(out, "error", error(code, NULL, msg));
}

/* Issue 18: `reasoning` {"text"} and `tool_call` {"index", "id", "name", "arguments"} (id and
 * name on a call's first event, argument pieces after). Counted in `sequence` as one each. */
static void stream_delta(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                         const sipp_delta *d) {
    (void)a;
    json_t *ev;
    if (d->kind == SIPP_DELTA_REASONING) {
        ev = json_pack("{s:s%, s:I}", "text", d->text, d->len, "sequence",
                       (json_int_t)st->sequence);
    } else {
        ev = json_pack("{s:i, s:s%}", "index", (int)d->tool_index, "arguments", d->text, d->len);
        if (ev && d->tool_id) {
            json_object_set_new(ev, "id", json_string(d->tool_id));
            json_object_set_new(ev, "name", json_string(d->tool_name ? d->tool_name : ""));
        }
        st->tool_calls_sent = true;
    }
    sipp__gw_sse_frame(out, d->kind == SIPP_DELTA_REASONING ? "reasoning" : "tool_call", ev);
    st->sequence++;
}

static void stream_end(sipp__buf *out, const gw_answer *a, gw_stream_state *st,
                       sipp_finish_reason f) {
    (void)st;
    if (a->usage_known || a->in_tok + a->out_tok > 0) sipp__gw_sse_frame(out, "usage", usage(a));
    sipp__gw_sse_frame(out, "done", json_pack("{s:s}", "finish_reason", sipp__gw_finish_name(f)));
}

/* {"id", "model", "embedding": <the vector>, "usage"}: the head is the object up to
 * `"embedding":`, the tail the usage and the closing brace. */
static char *embed_head(const gw_answer *a) {
    char *idm = sipp__gw_json_text(json_pack("{s:s, s:s}", "id", a->id, "model", a->model));
    if (!idm) return NULL;
    idm[strlen(idm) - 1] = '\0'; /* drop the `}`: `"embedding":` follows */
    size_t n = strlen(idm) + sizeof ",\"embedding\":";
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s,\"embedding\":", idm);
    free(idm);
    return s;
}

static char *embed_tail(const gw_answer *a) {
    char *u = sipp__gw_json_text(usage(a));
    if (!u) return NULL;
    size_t n = strlen(u) + sizeof ",\"usage\":}";
    char *s = malloc(n);
    if (s) snprintf(s, n, ",\"usage\":%s}", u);
    free(u);
    return s;
}

static size_t embed_open(char *p, size_t cap, size_t index) {
    (void)p, (void)cap, (void)index;
    return 0;
}

const gw_codec sipp__gw_sipp_codec = {
    .decode = decode,
    .error = error,
    .text = text,
    .stream_text = stream_text,
    .stream_error = stream_error,
    .stream_end = stream_end,
    .stream_delta = stream_delta,
    .embed_head = embed_head,
    .embed_tail = embed_tail,
    .embed_open = embed_open,
    .embed_close = "",
};
