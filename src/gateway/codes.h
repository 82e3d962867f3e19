/*
 * codes.h — the gateway's vocabulary: the operations, the public profiles and the error
 * codes of the protocol's table (docs/gateway-protocol.md), with their HTTP status and OpenAI
 * error type. Leaf header: every other gateway file may include it, it includes only sipp.h.
 */
#ifndef SIPP_GATEWAY_CODES_H
#define SIPP_GATEWAY_CODES_H

#include <sipp.h>

typedef enum gw_op { GW_OP_QUERY, GW_OP_CHAT, GW_OP_EMBED, GW_OP_MODELS, GW_OP_TRANSCRIBE, GW_N_OPS } gw_op;
typedef enum gw_profile { GW_PROFILE_SIPP, GW_PROFILE_OPENAI, GW_PROFILE_ANTHROPIC } gw_profile;

const char *sipp__gw_op_name(gw_op op);

/* The error codes of the protocol's table (plus `not_found`, `method_not_allowed`,
 * `payload_too_large`, `unavailable`, `internal` and the browser refusals `host_not_allowed`,
 * `origin_not_allowed` and `unsupported_media_type`). */
typedef enum gw_code {
    GW_OK,
    GW_BLOCKED,
    GW_RATE_LIMITED,
    GW_AUTHENTICATION,
    GW_INVALID_JSON,
    GW_AUTHORIZATION,
    GW_RESOLUTION,
    GW_ADMISSION,
    GW_INVALID_REQUEST,
    GW_EXECUTION,
    GW_CANCELLED,
    GW_PAYLOAD_TOO_LARGE,
    GW_METHOD_NOT_ALLOWED,
    GW_NOT_FOUND,
    GW_UNAVAILABLE,
    GW_HOST_NOT_ALLOWED,
    GW_ORIGIN_NOT_ALLOWED,
    GW_UNSUPPORTED_MEDIA_TYPE,
    GW_N_CODES
} gw_code;

/* The code's name on the wire ("internal" past the table). */
const char *sipp__gw_code_name(gw_code c);
/* Its HTTP status (500 past the table). */
int sipp__gw_code_status(gw_code c);
/* The OpenAI profile's `error.type` for it ("server_error" past the table). */
const char *sipp__gw_code_openai_type(gw_code c);
/* The code of a libsipp submission or run failure. */
gw_code sipp__gw_code_for_status(sipp_status st);

#endif
