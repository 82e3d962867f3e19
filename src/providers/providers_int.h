/*
 * providers_int.h — provider adapters: requests to remote model APIs over the HTTP layer,
 * answering through the same run channel as the local engine. Today: OpenAI and any
 * OpenAI-compatible server (openai.c).
 */
#ifndef SIPP_PROVIDERS_INT_H
#define SIPP_PROVIDERS_INT_H

#include "../common/common_int.h"
#include "../http/http_int.h"

typedef struct sipp__provider sipp__provider;

/* Validates the params (URL rules, model, key) and keeps copies. `http` outlives the provider. */
sipp_status sipp__provider_new(const sipp_provider_params *p, sipp__http *http,
                               sipp__provider **out, sipp_error *err);
/* Cancels the provider's runs, waits until each has ended, frees it. */
void sipp__provider_free(sipp__provider *pv);

/* `messages` NULL: a completion of `prompt`; else a chat. */
sipp_status sipp__provider_submit_text(sipp__provider *pv, const char *prompt,
                                       const sipp_message *messages, size_t n_messages,
                                       const sipp_text_params *p, sipp_run **out, sipp_error *err);
sipp_status sipp__provider_submit_embed(sipp__provider *pv, const char *text,
                                        const sipp_embed_params *p, sipp_run **out,
                                        sipp_error *err);

/* Maps an HTTP error status (and the error code/type strings of the body, may be NULL) to a
 * status: 401 authentication, 403 authorization, 404 model_not_found, 429 rate_limited (or
 * quota when the code says so), 400/422 invalid_argument, 408/504 upstream_timeout,
 * 503/529 overloaded, other 5xx upstream_error. */
sipp_status sipp__provider_classify(long http_status, const char *code, const char *type);

#endif
