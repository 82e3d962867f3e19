/*
 * fuzz_remote_stream.c — libFuzzer target for the remote endpoints' response decoders
 * (src/providers: the OpenAI, Anthropic and Sipp-gateway dialects). The first byte picks the
 * dialect, the operation and whether log-probabilities were asked for (then the peer's logprobs
 * objects, in every shape, are decoded too: issue 18); the rest is decoded as the peer's SSE
 * stream (events into a real run channel), as an error body and as an embeddings answer. Nothing may crash, leak or hang, and a
 * stream never yields more text than it carried.
 */
#include "providers/providers_int.h"

#include <stdlib.h>
#include <string.h>

static bool on_sse(const sipp__sse_event *ev, void *ud) {
    sipp__remote_run *rr = ud;
    return rr->rm->dialect->on_event(rr, ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    if (len == 0) return 0;
    static const sipp__dialect *const dialects[] = {&sipp__dialect_openai, &sipp__dialect_anthropic,
                                                    &sipp__dialect_gateway};
    const sipp__dialect *d = dialects[data[0] % 3];
    sipp__remote rm = {.dialect = d, .model = "m"};
    sipp__remote_run rr = {.rm = &rm, .op = (data[0] >> 2) & 1 ? SIPP__OP_CHAT : SIPP__OP_QUERY,
                           .top_logprobs = (data[0] >> 3) & 1 ? SIPP_MAX_TOP_LOGPROBS : -1};
    rr.run = sipp__run_new(NULL, NULL);
    if (!rr.run) return 0;
    const char *body = (const char *)data + 1;
    size_t n = len - 1;

    sipp__sse_init(&rr.sse, 4096);
    sipp__sse_feed(&rr.sse, body, n, on_sse, &rr, NULL);
    sipp__sse_free(&rr.sse);
    if (sipp__run_backlog(rr.run) > n) abort(); /* text out of nothing */

    json_t *j = json_loadb(body, n, 0, NULL);
    const char *msg = NULL, *code = NULL;
    sipp_status st = d->read_error(400 + data[0] % 200, j, &msg, &code);
    if (st == SIPP_OK) abort(); /* an error answer is never OK */
    if (d->read_embedding) {
        float *vec = NULL;
        uint32_t dims = 0;
        if (d->read_embedding(&rr, j, &vec, &dims, NULL) == SIPP_OK && (!vec || dims == 0)) abort();
        free(vec);
    }
    json_decref(j);
    sipp__run_discard(rr.run, SIPP_CANCELLED);
    return 0;
}
