/*
 * fuzz_gw_request.c — libFuzzer target for the gateway's request-body path
 * (src/gateway/profiles.c and profile_*.c: sipp__gw_decode_body, the same call the gateway's decode phase makes:
 * the depth cap on the raw text, the jansson parse with duplicate keys refused, and the profile
 * decoder). The first byte picks the profile (bit 0: Sipp or OpenAI; bit 4 set: Anthropic
 * Messages, whose decoder also joins text blocks into new strings), the operation (bits 1-2:
 * query, chat, embed; 3 wraps to query) and a small or the default depth cap (bit 3); the rest
 * is the body. Invariants: a refusal always says why; an accepted call has its operation's
 * input and a model, and every message has a known role and content.
 */
#define _POSIX_C_SOURCE 200809L
#include "gateway/profiles.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    if (len == 0) return 0;
    gw_profile prof = (data[0] & 16)  ? GW_PROFILE_ANTHROPIC
                      : (data[0] & 1) ? GW_PROFILE_OPENAI
                                      : GW_PROFILE_SIPP;
    gw_op op = (gw_op)(((data[0] >> 1) & 3) % 3);
    unsigned depth = (data[0] & 8) ? 4 : 32;
    const char *body = (const char *)data + 1;
    size_t n = len - 1;

    gw_call call;
    memset(&call, 0, sizeof call);
    json_t *root = NULL;
    char msg[256], param[64];
    msg[0] = '\0';
    bool ok = sipp__gw_decode_body(prof, op, body, n, depth, &root, &call, msg, sizeof msg, param,
                                   sizeof param);
    if (!ok) {
        if (!msg[0]) __builtin_trap(); /* a refusal always says why */
    } else {
        if (!root || call.op != op || !call.model) __builtin_trap();
        if (sipp__nesting_depth_len(body, n, false, depth) > depth) __builtin_trap(); /* cap bypassed */
        if (op == GW_OP_QUERY && !call.prompt) __builtin_trap();
        if (op == GW_OP_CHAT && (!call.messages || call.n_messages == 0)) __builtin_trap();
        if (op == GW_OP_EMBED && (!call.inputs || call.n_inputs == 0)) __builtin_trap();
        for (size_t i = 0; i < call.n_messages; i++) {
            const char *r = call.messages[i].role;
            if (!r || !call.messages[i].content ||
                (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")))
                __builtin_trap();
            (void)strlen(call.messages[i].content); /* joined text blocks live in root too */
        }
        for (size_t i = 0; i < call.n_inputs; i++)
            if (!call.inputs[i]) __builtin_trap();
        if (call.n_stop > SIPP_MAX_STOP_STRINGS) __builtin_trap();
        /* the strings point into root: touching them must be safe */
        for (size_t i = 0; i < call.n_stop; i++) (void)strlen(call.stop[i]);
        if (call.invalid[0] && strlen(call.invalid) >= sizeof call.invalid) __builtin_trap();
    }
    json_decref(root);
    free(call.messages);
    free(call.inputs);
    sipp__gw_call_free_media(&call);
    return 0;
}
