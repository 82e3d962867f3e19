/*
 * bench_engine.c — `sipp-bench-engine`: the local engine against llama-server from the same
 * llama.cpp build, on the same model, threads and slot count, measured in the same run.
 *
 * Scenarios (each prints Sipp, llama-server and the ratio):
 *   single  one stream: TTFT of a 512-token prompt and decode tok/s over 128 tokens
 *   mixed   4 streams decoding while a 2,048-token prompt arrives: p50/p99 inter-token latency
 *           of the 4 streams during that prefill, and total tokens/s over the scenario
 *   burst   16 concurrent short requests: total generated tokens/s
 *   warm    follow-up TTFT on a warm context key with a 2,048-token shared prefix, vs cold
 *   rotate  16 conversations rotating over 4 sequences, 10 turns each: p50/p99 TTFT
 *   restart first-turn TTFT after a restart with the disk tier, vs cold (Sipp only)
 *   shared  a second request on a key whose first request (2,048-token prefix) is decoding:
 *           its TTFT vs a cold request of the same prompt (Sipp only)
 *   media   (with --mmproj and --image, not in the default set) image-encode ms and TTFT of a
 *           chat with one image, then the same request again (Sipp: the context key's cached
 *           prefix, image included; llama-server: cache_prompt), the two sides alternating
 *           image by image; llama-server over /v1/chat/completions with a data: URL, its
 *           encode time read from its log (server_log_encode_ms)
 * The last three turn prompt reuse on: Sipp's context keys and snapshots, llama-server's
 * cache_prompt with its host-memory prompt cache (on by default).
 *
 * Sipp is driven in-process through the public API; llama-server over HTTP on loopback with
 * streaming, `cache_prompt: false` and `ignore_eos` (both sides generate exactly n tokens).
 * Token times are taken where a consumer sees them: when sipp_run_next returns, when an SSE
 * event arrives.
 */
#define _GNU_SOURCE
#include "sipp.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static pid_t g_server_pid; /* the running llama-server, killed on every exit path */

static void die(const char *msg) {
    fprintf(stderr, "sipp-bench-engine: error: %s\n", msg);
    if (g_server_pid > 0) {
        kill(g_server_pid, SIGKILL);
        waitpid(g_server_pid, NULL, 0);
    }
    exit(1);
}

/* ---- settings ----------------------------------------------------------------------------- */

static const char *g_model, *g_server_bin = "build/bin/llama-server";
static int g_threads = 0, g_port = 18411, g_gpu_layers = 0, g_reps = 3;
static uint32_t g_prefill_chunk = 0, g_itl_target = 0, g_resident = 0;
static const char *g_scenarios = "single,mixed,burst,warm,rotate,restart,shared";
static const char *g_mmproj;         /* --mmproj: the projector of the media scenario */
static const char *g_images[16];     /* --image (repeatable): the first one warms up */
static int g_n_images;
static char g_server_log[64];        /* llama-server's --log-file in the media scenario, else "" */

/* ---- prompts: one common English word per token in GPT-2 and Llama-3 BPE vocabs ----------- */

static const char *const words[] = {
    "the", "cat", "sat", "on", "mat", "and", "dog", "ran", "to", "park", "with", "ball",
    "red", "big", "small", "house", "tree", "bird", "sun", "day", "night", "man", "woman",
    "boy", "girl", "book", "car", "road", "water", "fire", "city", "world", "king", "game",
    "food", "door", "room", "hand", "head", "time", "year", "light", "music", "story", "friend",
    "school", "money", "river", "mountain", "ship", "horse", "garden", "window", "letter",
};

/* Prompt tokens per word for this model's tokenizer, measured once at start. */
static double g_tokens_per_word = 1.0;

/* A prompt of about n_tokens tokens: words in a seed-dependent order (so no two requests
 * share a long prefix). */
static char *make_prompt(int n_tokens, unsigned seed) {
    int n = (int)(n_tokens / g_tokens_per_word);
    if (n < 1) n = 1;
    size_t cap = (size_t)n * 12 + 16, len = 0;
    char *s = malloc(cap);
    unsigned x = seed * 2654435761u + 12345u;
    len += (size_t)snprintf(s, cap, "Once");
    for (int i = 1; i < n; i++) {
        x = x * 1103515245u + 12345u;
        len += (size_t)snprintf(s + len, cap - len, " %s",
                                words[(x >> 16) % (sizeof words / sizeof words[0])]);
    }
    return s;
}

/* ---- one stream's measurements -------------------------------------------------------------- */

typedef struct stream {
    /* request */
    char *prompt;
    int n_predict;
    double start_at; /* absolute ms; the driver sleeps until then */
    const char *key;   /* Sipp: context key (NULL: none); llama-server: cache_prompt on */
    struct stream **wait_for; /* and then until each of these has decoded 8 tokens */
    int n_wait_for;
    /* result */
    double t_submit, t_first, t_end;
    double *tok_t; /* arrival time of each token */
    int n_tok, n_prompt;
    bool ok;
} stream;

static void stream_init(stream *s, char *prompt, int n_predict) {
    memset(s, 0, sizeof *s);
    s->prompt = prompt;
    s->n_predict = n_predict;
    s->tok_t = calloc((size_t)n_predict + 8, sizeof(double));
}

static void stream_record(stream *s, double t, int n) {
    if (s->t_first == 0 && n > 0) s->t_first = t;
    for (int i = 0; i < n && s->n_tok < s->n_predict + 8; i++) {
        s->tok_t[s->n_tok] = t;
        __atomic_store_n(&s->n_tok, s->n_tok + 1, __ATOMIC_RELEASE);
    }
}

static void sleep_until(double t) {
    double d = t - now_ms();
    if (d > 0) {
        struct timespec ts = {(time_t)(d / 1e3), (long)(fmod(d, 1e3) * 1e6)};
        nanosleep(&ts, NULL);
    }
}

/* Sleeps until s->start_at, then until every stream in s->wait_for is decoding. */
static void wait_to_start(stream *s) {
    sleep_until(s->start_at);
    for (int i = 0; i < s->n_wait_for; i++)
        while (__atomic_load_n(&s->wait_for[i]->n_tok, __ATOMIC_ACQUIRE) < 8)
            sleep_until(now_ms() + 0.5);
}

/* ---- Sipp driver ------------------------------------------------------------------------------ */

static sipp_endpoint *g_ep;
static int g_n_ctx_train = 1 << 30; /* the model's training context, read at calibration */

static void *sipp_stream(void *arg) {
    stream *s = arg;
    wait_to_start(s);
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    p.temperature = 0;
    p.max_tokens = (uint32_t)s->n_predict;
    p.ignore_eos = true;
    p.context_key = s->key;
    sipp_run *run = NULL;
    s->t_submit = now_ms();
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_query(g_ep, s->prompt, &p, &run, &err) != SIPP_OK) {
        fprintf(stderr, "sipp: %s\n", err.message);
        return NULL;
    }
    sipp_token_batch b;
    do {
        sipp_token_batch_init(&b, sizeof b);
        sipp_status st = sipp_run_next(run, -1, &b, &err);
        /* a stream that fails must end the benchmark: others may be waiting for it to decode */
        if (st != SIPP_OK) die(err.message);
        stream_record(s, now_ms(), (int)b.n_tokens);
    } while (!b.done);
    s->t_end = now_ms();
    const sipp_response *r;
    sipp_run_wait(run, &r, NULL);
    s->n_prompt = (int)r->usage->input_tokens;
    /* tokens whose text was empty were counted in later batches; use the engine's count */
    s->ok = r->status == SIPP_OK && (int)r->usage->output_tokens == s->n_predict;
    sipp_run_free(run);
    return NULL;
}

/* ---- llama-server driver ---------------------------------------------------------------------- */

typedef struct http_ctx {
    stream *s;
    char line[1 << 16];
    size_t len;
} http_ctx;

static void sse_line(http_ctx *h, const char *line) {
    if (strncmp(line, "data: ", 6) != 0) return;
    json_t *j = json_loads(line + 6, 0, NULL);
    if (!j) return;
    double t = now_ms();
    if (json_is_true(json_object_get(j, "stop"))) {
        json_t *tm = json_object_get(j, "timings");
        h->s->n_prompt = (int)json_integer_value(json_object_get(tm, "prompt_n"));
        h->s->ok = (int)json_integer_value(json_object_get(tm, "predicted_n")) == h->s->n_predict;
    } else if (json_object_get(j, "content")) {
        stream_record(h->s, t, 1);
    }
    json_decref(j);
}

static size_t on_http_data(char *data, size_t size, size_t nmemb, void *ud) {
    http_ctx *h = ud;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            h->line[h->len] = '\0';
            sse_line(h, h->line);
            h->len = 0;
        } else if (h->len + 1 < sizeof h->line) {
            h->line[h->len++] = data[i];
        }
    }
    return n;
}

static void *server_stream(void *arg) {
    stream *s = arg;
    wait_to_start(s);
    json_t *body = json_pack("{s:s,s:i,s:f,s:b,s:b,s:b}", "prompt", s->prompt, "n_predict",
                             s->n_predict, "temperature", 0.0, "ignore_eos", 1, "stream", 1,
                             "cache_prompt", s->key != NULL);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/completion", g_port);
    http_ctx *h = calloc(1, sizeof *h);
    h->s = s;
    CURL *c = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_http_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    s->t_submit = now_ms();
    CURLcode rc = curl_easy_perform(c);
    s->t_end = now_ms();
    if (rc != CURLE_OK) {
        fprintf(stderr, "llama-server: %s\n", curl_easy_strerror(rc));
        s->ok = false;
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    free(text);
    free(h);
    return NULL;
}

/* HTTP status of a GET, or 0 when nothing answers. */
static long http_status(const char *url) {
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    return code;
}

static pid_t start_server(int n_parallel, uint32_t n_ctx) {
    char np[16], ctx[16], th[16], port[16], ngl[16];
    snprintf(np, sizeof np, "%d", n_parallel);
    snprintf(ctx, sizeof ctx, "%u", n_ctx * (uint32_t)n_parallel);
    snprintf(th, sizeof th, "%d", g_threads);
    snprintf(port, sizeof port, "%d", g_port);
    snprintf(ngl, sizeof ngl, "%d", g_gpu_layers);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", g_port);
    if (http_status(url) != 0) die("something already answers on the benchmark port (--port)");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDOUT_FILENO);
        if (!getenv("BENCH_SERVER_LOG")) dup2(devnull, STDERR_FILENO);
        /* the media scenario adds the projector and keeps the log (its encode times) */
        const char *argv[32] = {g_server_bin, "-m", g_model, "--host", "127.0.0.1", "--port",
                                port, "-t", th, "-tb", th, "-np", np, "-c", ctx, "-ngl", ngl,
                                "--no-webui"};
        int n = 18;
        if (g_server_log[0]) {
            argv[n++] = "--mmproj";
            argv[n++] = g_mmproj;
            argv[n++] = "--log-file";
            argv[n++] = g_server_log;
            argv[n++] = "-lv"; /* mtmd's INFO lines are llama.cpp's verbosity 4 */
            argv[n++] = "4";
        } else {
            argv[n++] = "--log-disable";
        }
        argv[n] = NULL;
        execv(g_server_bin, (char *const *)argv);
        _exit(127);
    }
    g_server_pid = pid;
    for (int i = 0; i < 600; i++) {
        if (http_status(url) == 200) return pid;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) die("llama-server exited during start-up");
        usleep(100 * 1000);
    }
    kill(pid, SIGKILL);
    die("llama-server did not become healthy in 60 s");
    return -1;
}

static void stop_server(pid_t pid) {
    g_server_pid = 0;
    kill(pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return;
        usleep(100 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ---- running a set of streams on one side ------------------------------------------------------ */

typedef enum side { SIDE_SIPP, SIDE_SERVER } side;

static void run_streams(side sd, stream *ss, int n) {
    pthread_t th[64];
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, sd == SIDE_SIPP ? sipp_stream : server_stream, &ss[i]);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++)
        if (!ss[i].ok) die(sd == SIDE_SIPP ? "a Sipp stream failed" : "a llama-server stream failed");
}

static const char *g_cache_dir; /* disk tier for the next open_sipp, NULL for none */
static uint32_t g_n_resident;    /* n_resident for the next open_sipp */

static void open_sipp(sipp_client **c, int n_parallel, uint32_t n_ctx) {
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = g_model;
    lp.n_threads = g_threads;
    lp.n_parallel = (uint32_t)n_parallel;
    lp.n_ctx = n_ctx;
    lp.n_gpu_layers = g_gpu_layers;
    lp.prefill_chunk = g_prefill_chunk;
    lp.itl_target_ms = g_itl_target;
    lp.n_resident = g_n_resident;
    lp.cache_dir = g_cache_dir;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_new(NULL, c, &err) != SIPP_OK ||
        sipp_client_add_local(*c, "m", &lp, &g_ep, &err) != SIPP_OK)
        die(err.message);
}

/* Measures tokens per word with one Sipp query of a 400-word prompt. */
static void calibrate_prompt_length(void) {
    sipp_client *c = NULL;
    open_sipp(&c, 1, 4096);
    char *prompt = make_prompt(400, 1);
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    p.max_tokens = 1;
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_query(g_ep, prompt, &p, &run, &err) != SIPP_OK) die(err.message);
    const sipp_response *r;
    sipp_run_wait(run, &r, NULL);
    g_tokens_per_word = r->usage->input_tokens / 400.0;
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    if (sipp_endpoint_get_info(g_ep, &info, NULL) == SIPP_OK && info.n_ctx_train > 0)
        g_n_ctx_train = (int)info.n_ctx_train;
    sipp_run_free(run);
    sipp_client_free(c);
    free(prompt);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *v, int n, double p) {
    if (n == 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int k = (int)ceil(p * n) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static double median_of(double a[], int n) {
    double v[16];
    memcpy(v, a, (size_t)n * sizeof *v);
    return percentile(v, n, 0.5);
}

static void row(const char *what, double sipp, double server, bool lower_is_better) {
    if (server <= 0) { /* e.g. no encode on either side: no ratio to give */
        printf("| %-44s | %10.2f | %12.2f | %7s |\n", what, sipp, server, "-");
        return;
    }
    double ratio = sipp / server;
    printf("| %-44s | %10.2f | %12.2f | %6.2fx %s |\n", what, sipp, server, ratio,
           lower_is_better ? "(lower is better)" : "(higher is better)");
}

/* ---- scenarios ------------------------------------------------------------------------------------ */

static void scenario_single(void) {
    const int n_prompt = 512, n_gen = 128;
    double ttft[2][16], tps[2][16];
    int np[2] = {0, 0};
    for (int sd = 0; sd < 2; sd++) {
        sipp_client *c = NULL;
        pid_t pid = 0;
        if (sd == SIDE_SIPP)
            open_sipp(&c, 1, 4096);
        else
            pid = start_server(1, 4096);
        for (int r = 0; r <= g_reps; r++) { /* rep 0 warms up */
            stream s;
            stream_init(&s, make_prompt(n_prompt, (unsigned)(r + 1) * 7919u), n_gen);
            run_streams((side)sd, &s, 1);
            if (r > 0) {
                ttft[sd][r - 1] = s.t_first - s.t_submit;
                tps[sd][r - 1] = (s.n_tok - 1) / ((s.tok_t[s.n_tok - 1] - s.t_first) / 1e3);
            }
            np[sd] = s.n_prompt;
            free(s.prompt);
            free(s.tok_t);
        }
        if (c) sipp_client_free(c);
        if (pid) stop_server(pid);
    }
    printf("\n### single stream (%d-token prompt as tokenized: sipp %d, server %d; %d generated; "
           "median of %d)\n\n", n_prompt, np[0], np[1], n_gen, g_reps);
    printf("| metric | sipp | llama-server | ratio |\n|---|---|---|---|\n");
    row("decode tok/s", median_of(tps[0], g_reps), median_of(tps[1], g_reps), false);
    row("TTFT ms", median_of(ttft[0], g_reps), median_of(ttft[1], g_reps), true);
}

/* One run of the mixed scenario on one side: fills the metrics of rep `r`. */
typedef struct mixed_metrics {
    double p50, p99, tput, long_ttft;
    int n_gaps;
} mixed_metrics;

static mixed_metrics mixed_once(side sd, int n_streams, int n_gen, int n_long, int long_gen,
                                unsigned seed) {
    stream ss[8];
    double t0 = now_ms() + 50;
    for (int i = 0; i < n_streams; i++) {
        stream_init(&ss[i], make_prompt(32, seed + (unsigned)i + 11), n_gen);
        ss[i].start_at = t0;
    }
    /* the long prompt arrives once every stream is decoding */
    stream *decoding[8];
    for (int i = 0; i < n_streams; i++) decoding[i] = &ss[i];
    stream_init(&ss[n_streams], make_prompt(n_long, seed + 4242), long_gen);
    ss[n_streams].start_at = t0;
    ss[n_streams].wait_for = decoding;
    ss[n_streams].n_wait_for = n_streams;
    run_streams(sd, ss, n_streams + 1);

    stream *lg = &ss[n_streams];
    double w0 = lg->t_submit, w1 = lg->t_first;
    double *gaps = malloc(sizeof(double) * (size_t)n_streams * (size_t)n_gen);
    int n_gaps = 0;
    double t_start = 1e300, t_end = 0;
    long total_tokens = 0;
    for (int i = 0; i <= n_streams; i++) {
        stream *s = &ss[i];
        if (s->t_submit < t_start) t_start = s->t_submit;
        if (s->t_end > t_end) t_end = s->t_end;
        total_tokens += s->n_tok + s->n_prompt;
        if (i == n_streams) continue;
        /* gaps that overlap the long prompt's prefill window */
        for (int k = 1; k < s->n_tok; k++)
            if (s->tok_t[k] > w0 && s->tok_t[k - 1] < w1) gaps[n_gaps++] = s->tok_t[k] - s->tok_t[k - 1];
    }
    mixed_metrics m;
    m.n_gaps = n_gaps;
    m.p50 = percentile(gaps, n_gaps, 0.50);
    m.p99 = percentile(gaps, n_gaps, 0.99);
    m.tput = total_tokens / ((t_end - t_start) / 1e3);
    m.long_ttft = lg->t_first - lg->t_submit;
    free(gaps);
    for (int i = 0; i <= n_streams; i++) {
        free(ss[i].prompt);
        free(ss[i].tok_t);
    }
    return m;
}

static void scenario_mixed(void) {
    const int n_streams = 4, n_gen = 256, long_gen = 8;
    /* a 2,048-token prompt, or what the model's context allows (llama-server caps slots there) */
    const int n_long = g_n_ctx_train - 300 < 2048 ? g_n_ctx_train - 300 : 2048;
    double p50[2][16], p99[2][16], tput[2][16], ttft[2][16];
    int n_gaps[2] = {0, 0};
    for (int sd = 0; sd < 2; sd++) {
        sipp_client *c = NULL;
        pid_t pid = 0;
        if (sd == SIDE_SIPP)
            open_sipp(&c, n_streams + 1, 4096);
        else
            pid = start_server(n_streams + 1, 4096);
        stream w; /* warm-up */
        stream_init(&w, make_prompt(64, 99), 8);
        run_streams((side)sd, &w, 1);
        free(w.prompt);
        free(w.tok_t);
        for (int r = 0; r < g_reps; r++) {
            mixed_metrics m = mixed_once((side)sd, n_streams, n_gen, n_long, long_gen,
                                         (unsigned)r * 1000u);
            p50[sd][r] = m.p50;
            p99[sd][r] = m.p99;
            tput[sd][r] = m.tput;
            ttft[sd][r] = m.long_ttft;
            n_gaps[sd] += m.n_gaps;
        }
        if (c) sipp_client_free(c);
        if (pid) stop_server(pid);
    }
    printf("\n### mixed: %d streams decoding while a %d-token prompt arrives (%d slots; median of "
           "%d; inter-token gaps inside the prefill window: sipp %d, server %d)\n\n",
           n_streams, n_long, n_streams + 1, g_reps, n_gaps[0], n_gaps[1]);
    printf("| metric | sipp | llama-server | ratio |\n|---|---|---|---|\n");
    row("p50 inter-token latency during prefill, ms", median_of(p50[0], g_reps), median_of(p50[1], g_reps), true);
    row("p99 inter-token latency during prefill, ms", median_of(p99[0], g_reps), median_of(p99[1], g_reps), true);
    row("total tokens/s (prompt + generated)", median_of(tput[0], g_reps), median_of(tput[1], g_reps), false);
    row("TTFT of the long prompt, ms", median_of(ttft[0], g_reps), median_of(ttft[1], g_reps), true);
}

static void scenario_burst(void) {
    const int n = 16, n_gen = 64;
    double tput[2][16];
    for (int sd = 0; sd < 2; sd++) {
        sipp_client *c = NULL;
        pid_t pid = 0;
        if (sd == SIDE_SIPP)
            open_sipp(&c, n, 1024);
        else
            pid = start_server(n, 1024);
        stream w;
        stream_init(&w, make_prompt(32, 99), 8);
        run_streams((side)sd, &w, 1);
        free(w.prompt);
        free(w.tok_t);
        for (int r = 0; r < g_reps; r++) {
            stream ss[16];
            double t0 = now_ms() + 20;
            for (int i = 0; i < n; i++) {
                stream_init(&ss[i], make_prompt(32, (unsigned)(r * 100 + i) + 101), n_gen);
                ss[i].start_at = t0;
            }
            run_streams((side)sd, ss, n);
            double t_start = 1e300, t_end = 0;
            long gen = 0;
            for (int i = 0; i < n; i++) {
                if (ss[i].t_submit < t_start) t_start = ss[i].t_submit;
                if (ss[i].t_end > t_end) t_end = ss[i].t_end;
                gen += ss[i].n_tok;
                free(ss[i].prompt);
                free(ss[i].tok_t);
            }
            tput[sd][r] = gen / ((t_end - t_start) / 1e3);
        }
        if (c) sipp_client_free(c);
        if (pid) stop_server(pid);
    }
    printf("\n### burst: %d concurrent requests (32-token prompts, %d generated each, %d slots; "
           "median of %d)\n\n", n, n_gen, n, g_reps);
    printf("| metric | sipp | llama-server | ratio |\n|---|---|---|---|\n");
    row("generated tokens/s", median_of(tput[0], g_reps), median_of(tput[1], g_reps), false);
}

/* One request on `sd` and its TTFT in ms. */
static double ttft_of(side sd, char *prompt, const char *key, int n_gen) {
    stream s;
    stream_init(&s, prompt, n_gen);
    s.key = key;
    run_streams(sd, &s, 1);
    double t = s.t_first - s.t_submit;
    free(s.tok_t);
    return t;
}

/* Appends n words (seeded) to a prompt: the new part of a follow-up. */
static char *extend(const char *prompt, int n_tokens, unsigned seed) {
    char *more = make_prompt(n_tokens, seed);
    char *out = NULL;
    if (asprintf(&out, "%s %s", prompt, more) < 0) die("out of memory");
    free(more);
    return out;
}

static void scenario_warm(void) {
    const int n_prefix = g_n_ctx_train - 300 < 2048 ? g_n_ctx_train - 300 : 2048;
    double cold[2][16], warm[2][16];
    for (int sd = 0; sd < 2; sd++) {
        sipp_client *c = NULL;
        pid_t pid = 0;
        if (sd == SIDE_SIPP) open_sipp(&c, 1, 4096);
        else pid = start_server(1, 4096);
        for (int r = 0; r < g_reps; r++) {
            char key[32];
            snprintf(key, sizeof key, "doc-%d", r);
            char *prefix = make_prompt(n_prefix, (unsigned)r * 31u + 5u);
            char *follow = extend(prefix, 32, (unsigned)r + 77u);
            cold[sd][r] = ttft_of((side)sd, prefix, key, 8);
            warm[sd][r] = ttft_of((side)sd, follow, key, 8);
            free(prefix);
            free(follow);
        }
        if (c) sipp_client_free(c);
        if (pid) stop_server(pid);
    }
    printf("\n### warm: follow-up on a key with a %d-token shared prefix (+32 new tokens; 1 slot; "
           "median of %d)\n\n", n_prefix, g_reps);
    printf("| metric | sipp | llama-server | ratio |\n|---|---|---|---|\n");
    double sc = median_of(cold[0], g_reps), sw = median_of(warm[0], g_reps);
    double lc = median_of(cold[1], g_reps), lw = median_of(warm[1], g_reps);
    row("cold TTFT ms", sc, lc, true);
    row("warm follow-up TTFT ms", sw, lw, true);
    printf("| %-44s | %9.3fx | %11.3fx | (target <= 0.1x) |\n", "warm / cold", sw / sc, lw / lc);
}

static void scenario_rotate(void) {
    enum { N_CONV = 16, N_SEQ = 4, N_TURNS = 10 };
    const int n_system = 256, n_turn = 32, n_gen = 16;
    double ttft[2][N_CONV * N_TURNS];
    for (int sd = 0; sd < 2; sd++) {
        sipp_client *c = NULL;
        pid_t pid = 0;
        if (sd == SIDE_SIPP) {
            g_n_resident = g_resident; /* --resident: warm conversations beyond the 4 slots */
            open_sipp(&c, N_SEQ, 2048);
            g_n_resident = 0;
        } else {
            pid = start_server(N_SEQ, 2048);
        }
        char *conv[N_CONV];
        char keys[N_CONV][16];
        for (int k = 0; k < N_CONV; k++) {
            conv[k] = make_prompt(n_system, 1000u + (unsigned)k);
            snprintf(keys[k], sizeof keys[k], "conv-%d", k);
        }
        int n = 0;
        for (int t = 0; t < N_TURNS; t++)
            for (int k = 0; k < N_CONV; k++) {
                char *next = extend(conv[k], n_turn, (unsigned)(t * 100 + k));
                free(conv[k]);
                conv[k] = next;
                ttft[sd][n++] = ttft_of((side)sd, conv[k], keys[k], n_gen);
            }
        for (int k = 0; k < N_CONV; k++) free(conv[k]);
        if (c) sipp_client_free(c);
        if (pid) stop_server(pid);
    }
    int n = N_CONV * N_TURNS;
    if (getenv("BENCH_DUMP"))
        for (int i = 0; i < n; i++)
            fprintf(stderr, "rotate turn %d conv %d: sipp %.1f ms, server %.1f ms\n", i / N_CONV,
                    i % N_CONV, ttft[0][i], ttft[1][i]);
    printf("\n### rotate: %d conversations over %d sequences, %d turns each (%d-token start, +%d "
           "tokens a turn, %d generated)\n\n", N_CONV, N_SEQ, N_TURNS, n_system, n_turn, n_gen);
    printf("| metric | sipp | llama-server | ratio |\n|---|---|---|---|\n");
    double a[N_CONV * N_TURNS], b[N_CONV * N_TURNS];
    memcpy(a, ttft[0], sizeof a);
    memcpy(b, ttft[1], sizeof b);
    row("p50 TTFT ms", percentile(a, n, 0.5), percentile(b, n, 0.5), true);
    row("p99 TTFT ms", percentile(ttft[0], n, 0.99), percentile(ttft[1], n, 0.99), true);
}

static void scenario_restart(void) {
    const int n_prefix = g_n_ctx_train - 300 < 2048 ? g_n_ctx_train - 300 : 2048;
    char dir[] = "/tmp/sipp-bench-kv-XXXXXX";
    if (!mkdtemp(dir)) die("mkdtemp failed");
    double cold[16], restored[16];
    for (int r = 0; r < g_reps; r++) {
        char key[32];
        snprintf(key, sizeof key, "doc-%d", r);
        char *prefix = make_prompt(n_prefix, (unsigned)r * 17u + 3u);
        char *follow = extend(prefix, 32, (unsigned)r + 55u);
        sipp_client *c = NULL;
        g_cache_dir = dir;
        open_sipp(&c, 1, 4096);
        ttft_of(SIDE_SIPP, prefix, key, 8);
        sipp_client_free(c); /* the warm sequence goes to the disk tier */
        open_sipp(&c, 1, 4096); /* a new engine: empty RAM, the directory indexed afresh */
        restored[r] = ttft_of(SIDE_SIPP, follow, key, 8);
        char *other = extend(prefix, 32, (unsigned)r + 99u);
        cold[r] = ttft_of(SIDE_SIPP, other, NULL, 8);
        sipp_client_free(c);
        g_cache_dir = NULL;
        free(prefix);
        free(follow);
        free(other);
    }
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    double rc = median_of(restored, g_reps), cc = median_of(cold, g_reps);
    printf("\n### restart: first turn after a restart, disk tier vs cold (%d-token prefix, Sipp only; "
           "median of %d)\n\n", n_prefix, g_reps);
    printf("| metric | sipp |\n|---|---|\n| cold TTFT ms | %.2f |\n| restored TTFT ms | %.2f |\n"
           "| restored / cold (target <= 0.2x) | %.3fx |\n", cc, rc, rc / cc);
}

/* A second request on a key while the first (a long prefix) decodes: it copies the shared
 * prefix from the first's sequence. Against a cold request of the same prompt (no key). */
static void scenario_shared(void) {
    const int n_prefix = g_n_ctx_train - 300 < 2048 ? g_n_ctx_train - 300 : 2048;
    double cold[16], shared[16];
    char *second[16];
    sipp_client *c = NULL;
    open_sipp(&c, 2, 4096);
    for (int r = 0; r < g_reps; r++) {
        char key[32];
        snprintf(key, sizeof key, "shared-%d", r);
        char *prefix = make_prompt(n_prefix, (unsigned)r * 13u + 9u);
        stream ss[2];
        stream_init(&ss[0], prefix, 64);
        ss[0].key = key;
        stream_init(&ss[1], extend(prefix, 32, (unsigned)r + 21u), 8);
        ss[1].key = key;
        stream *first = &ss[0];
        ss[1].wait_for = &first; /* arrives once the first is decoding */
        ss[1].n_wait_for = 1;
        run_streams(SIDE_SIPP, ss, 2);
        shared[r] = ss[1].t_first - ss[1].t_submit;
        second[r] = ss[1].prompt;
        free(ss[0].tok_t);
        free(ss[1].tok_t);
        free(prefix);
    }
    sipp_client_free(c);
    /* cold: the same prompts on a fresh engine with no key (nothing to evict or reuse) */
    open_sipp(&c, 1, 4096);
    for (int r = 0; r < g_reps; r++) {
        cold[r] = ttft_of(SIDE_SIPP, second[r], NULL, 8);
        free(second[r]);
    }
    sipp_client_free(c);
    double sc = median_of(shared, g_reps), cc = median_of(cold, g_reps);
    printf("\n### shared: second request on a key while the first decodes (%d-token prefix, +32 "
           "tokens; 2 slots; Sipp only; median of %d)\n\n", n_prefix, g_reps);
    printf("| metric | sipp |\n|---|---|\n| cold TTFT ms | %.2f |\n| shared-prefix TTFT ms | "
           "%.2f |\n| shared / cold (target <= 0.2x) | %.3fx |\n", cc, sc, sc / cc);
}

/* ---- media: image encode and TTFT with an image (issue 17) ---------------------------------- */

static unsigned char *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open an --image file");
    unsigned char *b = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)n)) &&
        fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (!b) die("cannot read an --image file");
    *len = (size_t)n;
    return b;
}

typedef struct media_result {
    double ttft, encode; /* ms; encode: the vision encoder's time for this request */
    int encoded;         /* images encoded (0: reused from the cache) */
    int cached;          /* prompt positions reused */
} media_result;

static const char g_media_prompt[] = "Describe the picture.";

/* One chat with one image through the public API; the context key keeps the prefix. */
static media_result media_sipp(const unsigned char *img, size_t len, const char *key) {
    sipp_media m = {SIPP_MEDIA_IMAGE, img, len, NULL, 0};
    sipp_message msg = {"user", g_media_prompt};
    sipp_text_params p;
    sipp_text_params_init(&p, sizeof p);
    p.temperature = 0;
    p.max_tokens = 8;
    p.ignore_eos = true;
    p.context_key = key;
    p.media = &m;
    p.n_media = 1;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_run *run = NULL;
    double t0 = now_ms(), t_first = 0;
    if (sipp_chat(g_ep, &msg, 1, &p, &run, &err) != SIPP_OK) die(err.message);
    sipp_token_batch b;
    do {
        sipp_token_batch_init(&b, sizeof b);
        if (sipp_run_next(run, -1, &b, &err) != SIPP_OK) die(err.message);
        if (t_first == 0 && b.n_tokens > 0) t_first = now_ms();
    } while (!b.done);
    const sipp_response *r;
    sipp_run_wait(run, &r, NULL);
    if (r->status != SIPP_OK) die("a Sipp media request failed");
    media_result out = {t_first - t0, r->stats->encode_ms, (int)r->stats->media_chunks,
                        (int)r->stats->cached_tokens};
    sipp_run_free(run);
    return out;
}

/* llama-server's log line time stamp ("M.SS.mmm.uuu "), in ms; -1 when the line has none. */
static double log_stamp_ms(const char *line) {
    int m, sec, ms, us;
    if (sscanf(line, "%d.%d.%d.%d ", &m, &sec, &ms, &us) != 4) return -1;
    return m * 60e3 + sec * 1e3 + ms + us / 1e3;
}

/* The images llama-server encoded after byte *off of its log, and their total encode time:
 * from "encoding mtmd batch" (mtmd_batch_encode starts) to "decoding image batch" (the
 * embeddings go into the model), both stamped by its logger at verbosity 4. */
static double server_log_encode_ms(long *off, int *n_images) {
    FILE *f = fopen(g_server_log, "r");
    double total = 0, t_enc = -1;
    *n_images = 0;
    if (!f) return 0;
    fseek(f, *off, SEEK_SET);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "encoding mtmd batch")) {
            t_enc = log_stamp_ms(line);
        } else if (t_enc >= 0 && strstr(line, "decoding image batch 1/")) {
            double t = log_stamp_ms(line);
            if (t >= t_enc) total += t - t_enc;
            (*n_images)++;
            t_enc = -1;
        }
    }
    *off = ftell(f);
    fclose(f);
    return total;
}

typedef struct media_http {
    char line[1 << 16];
    size_t len;
    double t_first;
    int cache_n;
} media_http;

static size_t on_media_data(char *data, size_t size, size_t nmemb, void *ud) {
    media_http *h = ud;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n; i++) {
        if (data[i] != '\n') {
            if (h->len + 1 < sizeof h->line) h->line[h->len++] = data[i];
            continue;
        }
        h->line[h->len] = '\0';
        h->len = 0;
        if (strncmp(h->line, "data: ", 6) != 0) continue;
        json_t *j = json_loads(h->line + 6, 0, NULL);
        if (!j) continue; /* "[DONE]" */
        json_t *delta = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
        const char *c = json_string_value(json_object_get(delta, "content"));
        if (h->t_first == 0 && c) h->t_first = now_ms();
        json_t *tm = json_object_get(j, "timings");
        if (tm) h->cache_n = (int)json_integer_value(json_object_get(tm, "cache_n"));
        json_decref(j);
    }
    return n;
}

/* The same chat over llama-server's /v1/chat/completions: the image as a data: URL. */
static media_result media_server(const char *data_url, long *log_off) {
    json_t *body = json_pack(
        "{s:[{s:s,s:[{s:s,s:s},{s:s,s:{s:s}}]}],s:i,s:f,s:b,s:b,s:b}", "messages", "role", "user",
        "content", "type", "text", "text", g_media_prompt, "type", "image_url", "image_url", "url",
        data_url, "max_tokens", 8, "temperature", 0.0, "ignore_eos", 1, "stream", 1,
        "cache_prompt", 1);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", g_port);
    media_http *h = calloc(1, sizeof *h);
    if (!h || !text) die("out of memory");
    h->cache_n = -1;
    CURL *c = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_media_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    double t0 = now_ms();
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    free(text);
    if (rc != CURLE_OK || code != 200 || h->t_first == 0) die("a llama-server media request failed");
    int n_images;
    double enc = server_log_encode_ms(log_off, &n_images);
    media_result out = {h->t_first - t0, enc, n_images, h->cache_n};
    free(h);
    return out;
}

static char *data_url_of(const unsigned char *img, size_t len) {
    const char *mime = len > 3 && img[0] == 0xFF && img[1] == 0xD8 ? "image/jpeg" : "image/png";
    size_t head = strlen("data:;base64,") + strlen(mime);
    char *u = malloc(head + 4 * ((len + 2) / 3) + 1);
    if (!u) die("out of memory");
    snprintf(u, head + 1, "data:%s;base64,", mime);
    EVP_EncodeBlock((unsigned char *)u + head, img, (int)len);
    return u;
}

static void scenario_media(void) {
    if (!g_mmproj || g_n_images < 2) die("media: --mmproj and at least two --image files are needed");
    snprintf(g_server_log, sizeof g_server_log, "/tmp/sipp-bench-media-%d.log", (int)getpid());
    unlink(g_server_log);
    /* both sides stay up and take turns, image by image, so that load on the machine falls on
     * both alike */
    sipp_client *c = NULL;
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = g_model;
    lp.mmproj = g_mmproj;
    lp.n_threads = g_threads;
    lp.n_parallel = 1;
    lp.n_ctx = 4096;
    lp.n_gpu_layers = g_gpu_layers;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_new(NULL, &c, &err) != SIPP_OK ||
        sipp_client_add_local(c, "m", &lp, &g_ep, &err) != SIPP_OK)
        die(err.message);
    pid_t pid = start_server(1, 4096);
    long log_off = 0;
    enum { N = 16 };
    media_result cold[2][N], again[2][N];
    int n = 0;
    for (int i = 0; i < g_n_images; i++) {
        size_t len;
        unsigned char *img = read_whole(g_images[i], &len);
        char *url = data_url_of(img, len);
        char key[32];
        snprintf(key, sizeof key, "img-%d", i);
        for (int k = 0; k < 2; k++) {
            int sd = (i + k) % 2; /* alternate which side goes first */
            media_result a, b;
            if (sd == SIDE_SIPP) {
                a = media_sipp(img, len, key);
                b = media_sipp(img, len, key);
            } else {
                a = media_server(url, &log_off);
                b = media_server(url, &log_off);
            }
            if (i > 0) { /* image 0 warms both sides up */
                cold[sd][n] = a;
                again[sd][n] = b;
            }
            if (getenv("BENCH_DUMP"))
                fprintf(stderr, "media image %d %s: ttft %.1f/%.1f ms, encode %.1f/%.1f ms, "
                        "encoded %d/%d, cached %d/%d\n", i, sd == SIDE_SIPP ? "sipp" : "server",
                        a.ttft, b.ttft, a.encode, b.encode, a.encoded, b.encoded, a.cached, b.cached);
        }
        if (i > 0) n++;
        free(url);
        free(img);
    }
    stop_server(pid);
    sipp_client_free(c);
    if (getenv("BENCH_DUMP")) fprintf(stderr, "llama-server's log: %s\n", g_server_log);
    else unlink(g_server_log);
    g_server_log[0] = '\0';
    double v[2][4][N];
    int enc_again[2] = {0, 0}, cached_again[2][N];
    for (int sd = 0; sd < 2; sd++)
        for (int i = 0; i < n; i++) {
            v[sd][0][i] = cold[sd][i].encode;
            v[sd][1][i] = cold[sd][i].ttft;
            v[sd][2][i] = again[sd][i].ttft;
            v[sd][3][i] = again[sd][i].encode;
            enc_again[sd] += again[sd][i].encoded;
            cached_again[sd][i] = again[sd][i].cached;
        }
    printf("\n### media: one image per chat (%d images after a warm-up one; median; the sides "
           "alternate)\n\n", n);
    printf("| metric | sipp | llama-server | ratio |\n|---|---|---|---|\n");
    row("image encode ms (first request)", median_of(v[0][0], n), median_of(v[1][0], n), true);
    row("TTFT ms with one image (first request)", median_of(v[0][1], n), median_of(v[1][1], n), true);
    row("TTFT ms, same image again", median_of(v[0][2], n), median_of(v[1][2], n), true);
    row("image encode ms, same image again", median_of(v[0][3], n), median_of(v[1][3], n), true);
    printf("| %-44s | %10d | %12d | |\n", "images re-encoded on the second requests", enc_again[0],
           enc_again[1]);
    double ca[2][N];
    for (int sd = 0; sd < 2; sd++)
        for (int i = 0; i < n; i++) ca[sd][i] = cached_again[sd][i];
    printf("| %-44s | %10.0f | %12.0f | |\n", "prompt positions reused (second request)",
           median_of(ca[0], n), median_of(ca[1], n));
}

static const char usage[] =
    "usage: sipp-bench-engine --model FILE [--threads N] [--gpu-layers N] [--reps N]\n"
    "                         [--scenarios single,mixed,burst,warm,rotate,restart,shared,media]\n"
    "                         [--mmproj FILE --image FILE [--image FILE ...]]\n"
    "                         [--prefill-chunk N] [--itl-target MS] [--resident N]\n"
    "                         [--server PATH] [--port N]\n"
    "\n"
    "Runs Sipp's engine and llama-server (same llama.cpp build) on the same model, threads and\n"
    "slots in one run and prints a Markdown table of each side and their ratio.\n";

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!v) die("every option takes a value (see --help)");
        if (!strcmp(a, "--model")) g_model = v;
        else if (!strcmp(a, "--threads")) g_threads = atoi(v);
        else if (!strcmp(a, "--gpu-layers")) g_gpu_layers = atoi(v);
        else if (!strcmp(a, "--reps")) g_reps = atoi(v);
        else if (!strcmp(a, "--scenarios")) g_scenarios = v;
        else if (!strcmp(a, "--prefill-chunk")) g_prefill_chunk = (uint32_t)atoi(v);
        else if (!strcmp(a, "--itl-target")) g_itl_target = (uint32_t)atoi(v);
        else if (!strcmp(a, "--resident")) g_resident = (uint32_t)atoi(v);
        else if (!strcmp(a, "--server")) g_server_bin = v;
        else if (!strcmp(a, "--port")) g_port = atoi(v);
        else if (!strcmp(a, "--mmproj")) g_mmproj = v;
        else if (!strcmp(a, "--image")) {
            if (g_n_images == (int)(sizeof g_images / sizeof g_images[0])) die("at most 16 --image");
            g_images[g_n_images++] = v;
        }
        else die("unknown option (see --help)");
        i++;
    }
    if (!g_model) die("--model is required");
    if (g_reps < 1 || g_reps > 16) die("--reps must be in [1, 16]");
    if (g_threads <= 0) g_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    calibrate_prompt_length();
    printf("model %s | threads %d | gpu layers %d | prefill chunk %u | itl target %u | resident "
           "%u (0 = default)\n", g_model, g_threads, g_gpu_layers, g_prefill_chunk, g_itl_target,
           g_resident);
    if (strstr(g_scenarios, "single")) scenario_single();
    if (strstr(g_scenarios, "mixed")) scenario_mixed();
    if (strstr(g_scenarios, "burst")) scenario_burst();
    if (strstr(g_scenarios, "warm")) scenario_warm();
    if (strstr(g_scenarios, "rotate")) scenario_rotate();
    if (strstr(g_scenarios, "restart")) scenario_restart();
    if (strstr(g_scenarios, "shared")) scenario_shared();
    if (strstr(g_scenarios, "media")) scenario_media();
    curl_global_cleanup();
    return 0;
}
