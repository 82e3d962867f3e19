/*
 * codes.c — the table behind codes.h: for each error code its wire name, HTTP status and OpenAI
 * error type, and the mapping of libsipp statuses onto codes.
 *
 * Sits at the bottom of the gateway: no state, no I/O, nothing but sipp.h. The table is indexed
 * by gw_code and complete (every code up to GW_N_CODES has all three fields); a value past it
 * maps to `internal` / 500 / server_error rather than reading out of bounds.
 */
#include "codes.h"

static const struct {
    const char *name;
    int status;
    const char *openai_type;
} CODES[GW_N_CODES] = {
    [GW_OK] = {"ok", 200, ""},
    [GW_BLOCKED] = {"blocked", 403, "permission_error"},
    [GW_RATE_LIMITED] = {"rate_limited", 429, "rate_limit_error"},
    [GW_AUTHENTICATION] = {"authentication", 401, "authentication_error"},
    [GW_INVALID_JSON] = {"invalid_json", 400, "invalid_request_error"},
    [GW_AUTHORIZATION] = {"authorization", 403, "permission_error"},
    [GW_RESOLUTION] = {"resolution", 404, "not_found_error"},
    [GW_ADMISSION] = {"admission", 429, "rate_limit_error"},
    [GW_INVALID_REQUEST] = {"invalidrequest", 400, "invalid_request_error"},
    [GW_EXECUTION] = {"execution", 500, "server_error"},
    [GW_CANCELLED] = {"cancelled", 408, "timeout_error"},
    [GW_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413, "invalid_request_error"},
    [GW_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405, "invalid_request_error"},
    [GW_NOT_FOUND] = {"not_found", 404, "not_found_error"},
    [GW_UNAVAILABLE] = {"unavailable", 503, "unavailable_error"},
    [GW_HOST_NOT_ALLOWED] = {"host_not_allowed", 403, "permission_error"},
    [GW_ORIGIN_NOT_ALLOWED] = {"origin_not_allowed", 403, "permission_error"},
    [GW_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", 415, "invalid_request_error"},
};

const char *sipp__gw_op_name(gw_op op) {
    switch (op) {
    case GW_OP_QUERY: return "query";
    case GW_OP_CHAT: return "chat";
    case GW_OP_EMBED: return "embed";
    case GW_OP_MODELS: return "models";
    case GW_OP_TRANSCRIBE: return "transcribe";
    default: return "unknown";
    }
}

const char *sipp__gw_code_name(gw_code c) { return c < GW_N_CODES ? CODES[c].name : "internal"; }
int sipp__gw_code_status(gw_code c) { return c < GW_N_CODES ? CODES[c].status : 500; }
const char *sipp__gw_code_openai_type(gw_code c) {
    return c < GW_N_CODES ? CODES[c].openai_type : "server_error";
}

gw_code sipp__gw_code_for_status(sipp_status st) {
    switch (st) {
    case SIPP_INVALID_ARGUMENT:
    case SIPP_UNSUPPORTED:
    case SIPP_CONTEXT_OVERFLOW: return GW_INVALID_REQUEST;
    case SIPP_BUSY: return GW_ADMISSION;
    case SIPP_CANCELLED:
    case SIPP_DEADLINE_EXCEEDED: return GW_CANCELLED;
    default: return GW_EXECUTION;
    }
}
