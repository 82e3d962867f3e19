/*
 * bench_gateway.c — `sipp-bench-gateway`: the same requests through a running sipp-gateway and
 * through libsipp's local endpoint on the same model, in one process, interleaved (one direct,
 * one through the gateway, ...) so both see the same machine noise. Driven by
 * bench/gateway_bench.py, which starts the gateway; see docs/benchmarks.md.
 *
 *   sipp-bench-gateway latency --model M --url http://127.0.0.1:P --target T [--n 200]
 *                      [--max-tokens 8] [--threads 1]
 *     finite and streaming requests: p50/p99 end-to-end ms of each side and the added ms
 *   sipp-bench-gateway relay --model M --url ... --target T [--max-tokens 512] [--reps 3]
 *     one long stream: tokens/s each side carries, and the ratio
 *
 * The gateway side is a plain HTTP client (libcurl, one kept-alive connection): POST /v1/query,
 * the whole JSON body for finite requests, the SSE stream up to its `done` event for streaming.
 * The direct side is sipp_query on a local endpoint with the gateway's runtime settings
 * (ignore_eos, the same context key and cache scope), waited with sipp_run_wait or pulled with
 * sipp_run_next. Output: one JSON object on stdout.
 */
#define _GNU_SOURCE
#include "sipp.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "sipp-bench-gateway: %s\n", what);
    exit(1);
}

typedef struct sink {
    char *buf;
    size_t len, cap;
    bool done; /* saw the stream's done event */
} sink;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
    sink *s = ud;
    size_t k = sz * n;
    if (s->len + k + 1 > s->cap) {
        s->cap = (s->len + k + 1) * 2;
        s->buf = realloc(s->buf, s->cap);
        if (!s->buf) die("out of memory");
    }
    memcpy(s->buf + s->len, p, k);
    s->len += k;
    s->buf[s->len] = '\0';
    if (strstr(s->buf + (s->len > k + 16 ? s->len - k - 16 : 0), "event: done")) s->done = true;
    return k;
}

/* One request through the gateway; returns ms, and the output tokens in *out_tok. */
static double via_gateway(CURL *c, const char *url, const char *body, bool stream,
                          long *out_tok) {
    sink s = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    double t0 = now_ms();
    CURLcode rc = curl_easy_perform(c);
    double t = now_ms() - t0;
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
        fprintf(stderr, "%s\n", s.buf ? s.buf : "");
        die("a gateway request failed");
    }
    *out_tok = 0;
    const char *u = s.buf ? strstr(s.buf, "\"output_tokens\":") : NULL;
    if (u) *out_tok = strtol(u + 16, NULL, 10);
    if (stream && !s.done) die("a gateway stream ended without done");
    free(s.buf);
    return t;
}

static double direct(sipp_endpoint *ep, const char *prompt, uint32_t max_tokens, bool stream,
                     long *out_tok) {
    sipp_text_params tp;
    sipp_text_params_init(&tp, sizeof tp);
    tp.max_tokens = max_tokens;
    tp.temperature = 0;
    tp.ignore_eos = true;
    tp.cache_scope = "anonymous"; /* what the gateway uses for an open gateway */
    tp.context_key = "gateway";
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    double t0 = now_ms();
    if (sipp_query(ep, prompt, &tp, &run, &err) != SIPP_OK) die(err.message);
    if (stream) {
        sipp_token_batch b = {.struct_size = sizeof b};
        do {
            b = (sipp_token_batch){.struct_size = sizeof b};
            sipp_run_next(run, -1, &b, NULL);
        } while (!b.done);
    }
    const sipp_response *resp;
    sipp_run_wait(run, &resp, NULL);
    double t = now_ms() - t0;
    if (resp->status != SIPP_OK) die(resp->error_message);
    *out_tok = (long)resp->usage->output_tokens;
    sipp_run_free(run);
    return t;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
    qsort(v, n, sizeof *v, cmp);
    size_t k = (size_t)(p * (double)n + 0.999999);
    return v[k ? k - 1 : 0];
}

int main(int argc, char **argv) {
    if (argc < 2) die("usage: sipp-bench-gateway latency|relay --model M --url U --target T");
    const char *mode = argv[1], *model = NULL, *url = NULL, *target = "bench";
    int n = 200, max_tokens = -1, threads = 1, reps = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--url")) url = argv[i + 1];
        else if (!strcmp(argv[i], "--target")) target = argv[i + 1];
        else if (!strcmp(argv[i], "--n")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-tokens")) max_tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else die("unknown option");
    }
    bool relay = !strcmp(mode, "relay");
    if (!model || !url || (!relay && strcmp(mode, "latency"))) die("need latency|relay, --model, --url");
    if (max_tokens < 0) max_tokens = relay ? 512 : 8;

    sipp_client *client;
    sipp_client_params cp;
    sipp_client_params_init(&cp, sizeof cp);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_new(&cp, &client, &err) != SIPP_OK) die(err.message);
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = model;
    lp.n_ctx = relay ? 1024 : 256;
    lp.n_parallel = 1;
    lp.n_threads = threads;
    lp.n_gpu_layers = 0;
    sipp_endpoint *ep;
    if (sipp_client_add_local(client, "direct", &lp, &ep, &err) != SIPP_OK) die(err.message);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "content-type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    char qurl[512];
    snprintf(qurl, sizeof qurl, "%s/v1/query", url);
    const char *prompt = "Once upon a time there was a little";
    json_t *out = json_object();

    if (!relay) {
        double *d = calloc((size_t)n, sizeof *d), *g = calloc((size_t)n, sizeof *g);
        double *diff = calloc((size_t)n, sizeof *diff);
        for (int s = 0; s < 2; s++) {
            bool stream = s == 1;
            char body[512];
            snprintf(body, sizeof body,
                     "{\"model\":\"%s\",\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,"
                     "\"stream\":%s}",
                     target, prompt, max_tokens, stream ? "true" : "false");
            long tk;
            for (int w = 0; w < 5; w++) { /* warm both (prefix caches, connections) */
                direct(ep, prompt, (uint32_t)max_tokens, stream, &tk);
                via_gateway(c, qurl, body, stream, &tk);
            }
            for (int i = 0; i < n; i++) {
                long t1, t2;
                d[i] = direct(ep, prompt, (uint32_t)max_tokens, stream, &t1);
                g[i] = via_gateway(c, qurl, body, stream, &t2);
                if (t1 != t2) die("the two sides generated different token counts");
                diff[i] = g[i] - d[i];
            }
            double dp50 = pct(d, (size_t)n, 0.5), dp99 = pct(d, (size_t)n, 0.99);
            double gp50 = pct(g, (size_t)n, 0.5), gp99 = pct(g, (size_t)n, 0.99);
            json_object_set_new(
                out, stream ? "streaming" : "finite",
                json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "n", n,
                          "max_tokens", max_tokens, "direct_p50_ms", dp50, "direct_p99_ms", dp99,
                          "gateway_p50_ms", gp50, "gateway_p99_ms", gp99, "added_p50_ms",
                          gp50 - dp50, "added_p99_ms", gp99 - dp99, "paired_diff_p50_ms",
                          pct(diff, (size_t)n, 0.5), "paired_diff_p99_ms",
                          pct(diff, (size_t)n, 0.99)));
        }
        free(d);
        free(g);
        free(diff);
    } else {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"model\":\"%s\",\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,"
                 "\"stream\":true}",
                 target, prompt, max_tokens);
        json_t *runs = json_array();
        double *rd = calloc((size_t)reps, sizeof *rd), *rg = calloc((size_t)reps, sizeof *rg);
        long tk;
        direct(ep, prompt, 8, true, &tk); /* warm */
        via_gateway(c, qurl, body, true, &tk);
        for (int r = 0; r < reps; r++) {
            long t1, t2;
            double a = direct(ep, prompt, (uint32_t)max_tokens, true, &t1);
            double b = via_gateway(c, qurl, body, true, &t2);
            rd[r] = t1 / (a / 1e3);
            rg[r] = t2 / (b / 1e3);
            json_array_append_new(runs, json_pack("{s:f, s:f, s:I, s:I}", "direct_tok_s", rd[r],
                                                  "gateway_tok_s", rg[r], "direct_tokens",
                                                  (json_int_t)t1, "gateway_tokens", (json_int_t)t2));
        }
        double md = pct(rd, (size_t)reps, 0.5), mg = pct(rg, (size_t)reps, 0.5);
        json_object_set_new(out, "relay",
                            json_pack("{s:i, s:f, s:f, s:f, s:o}", "max_tokens", max_tokens,
                                      "direct_tok_s", md, "gateway_tok_s", mg, "ratio", mg / md,
                                      "runs", runs));
        free(rd);
        free(rg);
    }
    char *s = json_dumps(out, JSON_COMPACT);
    puts(s);
    free(s);
    json_decref(out);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    sipp_client_free(client);
    return 0;
}
