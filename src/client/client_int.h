/*
 * client_int.h — internal declarations of src/client: the checks of tools and tool messages
 * (tools.c, issue 18), shared by every endpoint kind.
 */
#ifndef SIPP_CLIENT_INT_H
#define SIPP_CLIENT_INT_H

#include "../common/common_int.h"

/* Tools, tool choice and reasoning mode of `p`: INVALID_ARGUMENT naming the field. */
sipp_status sipp__tools_check(const sipp_text_params *p, sipp_error *err);
/* Roles, contents, tool calls (arguments a JSON object) and tool results (an earlier call's
 * id) of a chat's messages: INVALID_ARGUMENT naming the message. */
sipp_status sipp__chat_messages_check(const sipp_chat_message *m, size_t n, sipp_error *err);

#endif
