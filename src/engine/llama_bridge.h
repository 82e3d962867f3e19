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

/* ---- tools and reasoning (issue 18) ------------------------------------------------------
 * A chat is prepared with common_chat_templates_apply (tools, tool choice, parallel calls,
 * reasoning format) and its output parsed with common_chat_parse: no per-model code here. */

struct llama_vocab;
struct llama_sampler;
typedef struct sipp__chat_parser sipp__chat_parser;

/* What a prepared chat needs from the engine; every pointer owned (sipp__chat_prepared_free
 * frees what is still set, so a caller takes a field by setting it to NULL). */
typedef struct sipp__chat_prepared {
    char *prompt;
    struct llama_sampler *grammar; /* the template's tool-call grammar (lazy or not), or NULL */
    char **stops;                  /* the template's additional stop strings */
    size_t n_stops;
    int32_t *preserved;            /* tokens whose text the parser must see (special tokens) */
    size_t n_preserved;
    sipp__chat_parser *parser;
    /* issue 18: llama.cpp's reasoning-budget sampler (reasoning_budget >= 0 on a template with
     * a reasoning block), the generation prompt already accepted; or NULL */
    struct llama_sampler *budget;
} sipp__chat_prepared;

/* Renders `messages` with `p`'s tools, tool choice and reasoning mode and builds the grammar
 * sampler and the output parser. Returns SIPP_OK, or a status with a message in errbuf:
 * UNSUPPORTED when tools are asked of a template without tool support, INVALID_ARGUMENT when
 * the template or llama.cpp refuses the input (e.g. a schema it cannot enforce). */
sipp_status sipp__chat_prepare(sipp__chat_templates *t, const struct llama_vocab *vocab,
                               const sipp_chat_message *messages, size_t n,
                               const sipp_text_params *p, sipp__chat_prepared *out,
                               char *errbuf, size_t errcap);
void sipp__chat_prepared_free(sipp__chat_prepared *pr);

/* Called by the parser for each delta, in order (see sipp_delta). */
typedef sipp_status (*sipp__delta_emit_fn)(void *user_data, sipp_delta_kind kind,
                                           uint32_t tool_index, const char *tool_id,
                                           const char *tool_name, const char *text, size_t len);

/* Appends `len` bytes of generated text and reports what is new since the last call: the whole
 * text is parsed (partially unless `final`) and diffed against the last parse. A call's name
 * and id come before its first argument piece. A final parse the parser rejects keeps the last
 * partial parse. Returns the first non-OK status of `emit`, else SIPP_OK. */
sipp_status sipp__chat_parser_feed(sipp__chat_parser *ps, const char *text, size_t len,
                                   bool final, sipp__delta_emit_fn emit, void *user_data);
/* True once the answer is complete before its end: parallel calls are off and a second call
 * began (the engine then ends the run; the answer is the first call). */
bool sipp__chat_parser_complete(const sipp__chat_parser *ps);
/* The tool calls of the last parse; the array and strings live as long as the parser. */
size_t sipp__chat_parser_calls(sipp__chat_parser *ps, const sipp_tool_call **calls);
void sipp__chat_parser_free(sipp__chat_parser *ps);

/* Parses `text` as a complete answer of the chat (fuzzing and tests): returns the number of
 * tool calls, or -1 when the parser rejects it. */
int sipp__chat_parse_once(sipp__chat_parser *ps, const char *text, size_t len);

#ifdef __cplusplus
}
#endif

#endif
