/*
 * fuzz_gw_request.c — libFuzzer target for the gateway's request-body path
 * (src/gateway/profiles.c and profile_*.c: sipp__gw_decode_body, the same call the gateway's decode phase makes:
 * the depth cap on the raw text, the jansson parse with duplicate keys refused, and the profile
 * decoder). The first byte picks the profile (bit 0: Sipp or OpenAI; bit 4 set: Anthropic
 * Messages, whose decoder also joins text blocks into new strings), the operation (bits 1-2:
 * query, chat, embed; 3 wraps to query), a small or the default depth cap (bit 3) and small or
 * the default media limits (bit 5: max_media_bytes 64, bit 6: max_image_pixels 16, as the
 * gateway's configuration keys set them); the rest is the body. Invariants: a refusal always
 * says why; an accepted call has its operation's input and a model, every message has a known
 * role and content, and its media stay within the bytes limit unless flagged too large; the
 * tool path (issue 18: tools, tool_choice, assistant tool_calls, tool results) gives at most
 * SIPP_MAX_TOOLS named tools, every call an id, a name and arguments, every tool result its
 * call id, all readable.
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
    call.max_media_bytes = (data[0] & 32) ? 64 : 0;   /* 0: the default */
    call.max_image_pixels = (data[0] & 64) ? 16 : 0;
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
                (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") &&
                 strcmp(r, "tool")))
                __builtin_trap();
            (void)strlen(call.messages[i].content); /* joined text blocks live in root too */
            if (!call.chat) __builtin_trap(); /* every profile builds the tool messages */
            const sipp_chat_message *cm = &call.chat[i];
            if (strcmp(cm->role, r) || cm->content != call.messages[i].content) __builtin_trap();
            if (strcmp(r, "tool") == 0 && (!cm->tool_call_id || !cm->tool_call_id[0]))
                __builtin_trap();
            if (cm->n_tool_calls && (strcmp(r, "assistant") || !cm->tool_calls)) __builtin_trap();
            for (size_t k = 0; k < cm->n_tool_calls; k++) {
                const sipp_tool_call *tc = &cm->tool_calls[k];
                if (!tc->id || !tc->name || !tc->arguments) __builtin_trap();
                (void)(strlen(tc->id) + strlen(tc->name) + strlen(tc->arguments));
            }
        }
        if (call.n_tools > SIPP_MAX_TOOLS || (call.n_tools && !call.tools)) __builtin_trap();
        size_t schema_bytes = 0;
        for (size_t i = 0; i < call.n_tools; i++) {
            const sipp_tool *t = &call.tools[i];
            if (!t->name || !t->name[0] || strlen(t->name) > 64) __builtin_trap();
            if (t->description) (void)strlen(t->description);
            if (t->parameters) schema_bytes += strlen(t->parameters);
        }
        if (schema_bytes != call.tool_schema_bytes) __builtin_trap();
        if (call.tool_choice == SIPP_TOOL_CHOICE_NAMED && !call.tool_choice_name) __builtin_trap();
        for (size_t i = 0; i < call.n_inputs; i++)
            if (!call.inputs[i]) __builtin_trap();
        if (call.n_stop > SIPP_MAX_STOP_STRINGS) __builtin_trap();
        /* the strings point into root: touching them must be safe */
        for (size_t i = 0; i < call.n_stop; i++) (void)strlen(call.stop[i]);
        if (call.invalid[0] && strlen(call.invalid) >= sizeof call.invalid) __builtin_trap();
        uint64_t max_bytes = call.max_media_bytes ? call.max_media_bytes : SIPP__GW_MAX_MEDIA_BYTES;
        if (!call.media_too_large && call.media_bytes > max_bytes) __builtin_trap();
    }
    json_decref(root);
    free(call.messages);
    free(call.inputs);
    sipp__gw_call_free_media(&call);
    return 0;
}
