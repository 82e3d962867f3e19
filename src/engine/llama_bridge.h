/*
 * llama_bridge.h — C linkage to llama.cpp's C++-only helpers in libllama-common: Jinja chat
 * templates and the JSON-schema-to-grammar converter. Implemented in llama_bridge.cpp, the only
 * C++ file of the engine. No exception ever crosses this boundary.
 */
#ifndef SIPP_LLAMA_BRIDGE_H
#define SIPP_LLAMA_BRIDGE_H

#include "sipp.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct llama_model;
typedef struct sipp__chat_templates sipp__chat_templates;

/* Parses the model's chat template. Returns NULL (with a message in errbuf) when the model has
 * none or it does not parse. Free with sipp__chat_templates_free(). */
sipp__chat_templates *sipp__chat_templates_new(const struct llama_model *model, char *errbuf,
                                               size_t errcap);
void sipp__chat_templates_free(sipp__chat_templates *t);

/* Renders `messages` with a generation prompt. On success returns 0 and *out (free with free()).
 * On failure returns -1 with a message in errbuf. Not thread-safe for one `t`. */
int sipp__chat_render(sipp__chat_templates *t, const sipp_message *messages, size_t n,
                      char **out, char *errbuf, size_t errcap);

/* Converts a JSON schema to GBNF. Returns 0 and *out (free with free()), or -1 with errbuf. */
int sipp__json_schema_to_grammar(const char *schema, char **out, char *errbuf, size_t errcap);

#ifdef __cplusplus
}
#endif

#endif
