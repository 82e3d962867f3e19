/*
 * test_routing.c — routing signals and the policy (sipp.h, "Routing signals and policy"):
 * the estimate of a local endpoint (exact tokens, cached prefix live and as a snapshot, load,
 * TTFT unknown until measured, then predicted), of a remote one (measured failures make it
 * unhealthy; the peer is a thread of this test answering 503, a fault a real provider does not
 * produce on demand), and each rule of the policy on synthetic estimates.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

static sipp_estimate estimate_query(sipp_endpoint *ep, const char *prompt,
                                    const sipp_text_params *p) {
    sipp_estimate e;
    sipp_estimate_init(&e, sizeof e);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_estimate_query(ep, prompt, p, &e, &err) != SIPP_OK) fail_msg("estimate: %s", err.message);
    return e;
}

/* ---- local ----------------------------------------------------------------------------------- */

static void local_estimate_tokens_cache_and_ttft(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *ep = add_model(c, "story", STORY_MODEL, 2);
    sipp_text_params p = greedy(8);
    p.context_key = "doc-1";
    const char *first = "Once upon a time there was a little girl named Lily.";

    sipp_estimate cold = estimate_query(ep, first, &p);
    assert_true(cold.local && cold.loaded && cold.healthy);
    assert_true(cold.prompt_tokens > 8);
    assert_int_equal(cold.cached_tokens, 0);
    assert_int_equal(cold.cache_source, SIPP_CACHE_NONE);
    assert_int_equal(cold.prefill_tokens, cold.prompt_tokens);
    assert_int_equal(cold.free_slots, 2);
    assert_int_equal(cold.running + cold.queued, 0);
    assert_true(cold.n_ctx > cold.prompt_tokens);
    /* nothing measured yet: no TTFT is made up */
    assert_int_equal(cold.ttft_ms.source, SIPP_FIGURE_UNKNOWN);
    assert_int_equal(cold.price_input_per_mtok.source, SIPP_FIGURE_UNKNOWN);

    /* the run that follows (it takes the estimate's tokens) counts the same tokens */
    test_response r;
    char *a = query_text(ep, first, &p, &r);
    assert_int_equal(r.usage.input_tokens, cold.prompt_tokens);
    /* and says what the estimate said about the cache */
    assert_int_equal(r.stats.cached_tokens, cold.cached_tokens);

    /* a follow-up on the key: the first prompt and its answer are live in the sequence */
    char follow[512];
    snprintf(follow, sizeof follow, "%s%s She liked", first, a);
    sipp_estimate warm = estimate_query(ep, follow, &p);
    assert_int_equal(warm.cache_source, SIPP_CACHE_LIVE);
    assert_true(warm.cached_tokens >= cold.prompt_tokens);
    assert_int_equal(warm.prefill_tokens, warm.prompt_tokens - warm.cached_tokens);
    assert_int_equal(warm.ttft_ms.source, SIPP_FIGURE_PREDICTED);
    assert_true(warm.ttft_ms.value > 0 && warm.ttft_ms.samples == 1);
    assert_int_equal(warm.decode_tokens_per_s.source, SIPP_FIGURE_MEASURED);
    assert_int_equal(warm.error_rate.source, SIPP_FIGURE_MEASURED);
    assert_true(warm.error_rate.value == 0);
    test_response r2;
    char *b = query_text(ep, follow, &p, &r2);
    assert_int_equal(r2.stats.cached_tokens, warm.cached_tokens); /* the estimate was right */
    assert_int_equal(r2.stats.cache_source, SIPP_CACHE_LIVE);

    /* another key, or no key, finds nothing */
    sipp_text_params other = p;
    other.context_key = "doc-2";
    assert_int_equal(estimate_query(ep, follow, &other).cached_tokens, 0);
    sipp_text_params none = greedy(8);
    assert_int_equal(estimate_query(ep, follow, &none).cached_tokens, 0);
    /* nor does the same key in another scope */
    sipp_text_params scoped = p;
    scoped.cache_scope = "someone-else";
    assert_int_equal(estimate_query(ep, follow, &scoped).cached_tokens, 0);
    free(a);
    free(b);
    sipp_client_free(c);
}

/* One sequence and two keys: the second key evicts the first, whose prefix is then a snapshot
 * in RAM; the estimate says so, and the run restores it. */
static void local_estimate_sees_snapshots(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *ep = add_model(c, "story", STORY_MODEL, 1);
    sipp_text_params a = greedy(4), b = greedy(4);
    a.context_key = "a";
    b.context_key = "b";
    const char *pa = "Once upon a time there was a dog called Max who loved the park.";
    free(query_text(ep, pa, &a, NULL));
    free(query_text(ep, "The sun was warm and the birds were singing in the trees.", &b, NULL));
    sipp_estimate e = estimate_query(ep, pa, &a);
    assert_int_equal(e.cache_source, SIPP_CACHE_SNAPSHOT);
    assert_false(e.cache_on_disk);
    assert_int_equal(e.cached_tokens, e.prompt_tokens - 1);
    test_response r;
    free(query_text(ep, pa, &a, &r));
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    assert_int_equal(r.stats.cached_tokens, e.cached_tokens);
    sipp_client_free(c);
}

/* Chat estimates render the template as a chat run does. */
static void chat_estimate_counts_the_rendered_prompt(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *ep = add_model(c, "chat", CHAT_MODEL, 1);
    sipp_message m[] = {{"user", "Do you like to play outside?"}};
    sipp_text_params p = greedy(4);
    sipp_estimate e;
    sipp_estimate_init(&e, sizeof e);
    assert_int_equal(sipp_estimate_chat(ep, m, 1, &p, &e, NULL), SIPP_OK);
    sipp_run *run = NULL;
    assert_int_equal(sipp_chat(ep, m, 1, &p, &run, NULL), SIPP_OK);
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(r->usage->input_tokens, e.prompt_tokens);
    sipp_run_free(run);
    /* bad input: a clear error, nothing else */
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_estimate_chat(ep, NULL, 0, &p, &e, &err), SIPP_INVALID_ARGUMENT);
    assert_int_equal(sipp_estimate_query(ep, "", &p, &e, &err), SIPP_INVALID_ARGUMENT);
    sipp_estimate big = e;
    big.struct_size = sizeof big + 8; /* from a newer header */
    assert_int_equal(sipp_estimate_query(ep, "hi", &p, &big, &err), SIPP_INVALID_ARGUMENT);
    sipp_client_free(c);
}

/* ---- remote: a peer that answers 503 ----------------------------------------------------------- */

enum peer_mode {
    PEER_503 = 0,        /* refuses every request before any token */
    PEER_ONE_TOKEN = 1,  /* streams one token, then the connection drops */
    PEER_ANSWER = 2,     /* streams "audited answer" and ends */
};

typedef struct peer {
    int fd, port;
    pthread_t thread;
    atomic_bool stop;
    /* appended for the draft-then-audit tests */
    int mode;
    atomic_int requests;
    char last_body[16384];
} peer;

static void *peer_main(void *arg) {
    peer *p = arg;
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                               "Content-Length: 45\r\nConnection: close\r\n\r\n"
                               "{\"error\":{\"message\":\"overloaded\",\"type\":\"x\"}}";
    while (!atomic_load(&p->stop)) {
        int c = accept(p->fd, NULL, NULL);
        if (c < 0) continue;
        char buf[8192];
        /* read the whole request before answering: closing with unread bytes sends a reset */
        struct timeval rt = {0, 200 * 1000};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt);
        size_t got = 0;
        ssize_t n;
        while ((n = recv(c, buf + got, sizeof buf - 1 - got, 0)) > 0) {
            got += (size_t)n;
            buf[got] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            char *cl = strcasestr(buf, "content-length:");
            if (end && (!cl || got >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10)))
                break;
        }
        atomic_fetch_add(&p->requests, 1);
        char *body = strstr(buf, "\r\n\r\n");
        snprintf(p->last_body, sizeof p->last_body, "%s", body ? body + 4 : "");
        static const char sse[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                  "Connection: close\r\n\r\n";
        static const char one[] =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":"
            "{\"content\":[{\"token\":\"Hel\",\"logprob\":-0.1,\"top_logprobs\":[]}]},"
            "\"finish_reason\":null}]}\n\n";
        static const char answer[] =
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"audited answer\"},"
            "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        if (p->mode == PEER_503) {
            send(c, busy, sizeof busy - 1, MSG_NOSIGNAL);
        } else {
            send(c, sse, sizeof sse - 1, MSG_NOSIGNAL);
            if (p->mode == PEER_ONE_TOKEN) send(c, one, sizeof one - 1, MSG_NOSIGNAL);
            else send(c, answer, sizeof answer - 1, MSG_NOSIGNAL);
        }
        shutdown(c, SHUT_WR);
        while (recv(c, buf, sizeof buf, 0) > 0) {
        }
        close(c);
    }
    return NULL;
}

static void peer_start(peer *pr, int mode) {
    memset(pr, 0, sizeof *pr);
    pr->mode = mode;
    pr->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(pr->fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(pr->fd, (struct sockaddr *)&a, &len);
    pr->port = ntohs(a.sin_port);
    listen(pr->fd, 16);
    struct timeval tv = {0, 100 * 1000};
    setsockopt(pr->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    pthread_create(&pr->thread, NULL, peer_main, pr);
}

static void peer_stop(peer *pr) {
    atomic_store(&pr->stop, true);
    pthread_join(pr->thread, NULL);
    close(pr->fd);
}

/* An OpenAI-compatible endpoint on the peer. */
static sipp_endpoint *add_peer(sipp_client *c, const char *id, const peer *pr) {
    sipp_provider_params pp;
    sipp_provider_params_init(&pp, sizeof pp);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", pr->port);
    pp.kind = SIPP_PROVIDER_OPENAI_COMPATIBLE;
    pp.base_url = url;
    pp.model = "m";
    pp.allow_private_network = true;
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_add_provider(c, id, &pp, &ep, &err) != SIPP_OK) fail_msg("%s", err.message);
    return ep;
}

static void remote_failures_make_it_unhealthy(void **state) {
    (void)state;
    peer pr;
    peer_start(&pr, PEER_503);
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *ep = add_peer(c, "remote", &pr);
    assert_int_equal(sipp_endpoint_set_prices(ep, 3.0, 15.0, NULL), SIPP_OK);

    sipp_text_params p = greedy(4);
    sipp_estimate e = estimate_query(ep, "hi", &p);
    assert_false(e.local);
    assert_true(e.healthy);
    assert_int_equal(e.prompt_tokens, 0);
    assert_int_equal(e.ttft_ms.source, SIPP_FIGURE_UNKNOWN);
    assert_int_equal(e.error_rate.source, SIPP_FIGURE_UNKNOWN);
    assert_int_equal(e.price_input_per_mtok.source, SIPP_FIGURE_CONFIGURED);
    assert_true(e.price_output_per_mtok.value == 15.0);
    for (int i = 0; i < 3; i++) {
        sipp_run *run = NULL;
        assert_int_equal(sipp_query(ep, "hi", &p, &run, NULL), SIPP_OK);
        const sipp_response *r = NULL;
        sipp_run_wait(run, &r, NULL);
        assert_int_equal(r->status, SIPP_OVERLOADED);
        sipp_run_free(run);
        e = estimate_query(ep, "hi", &p);
        assert_int_equal(e.healthy, i < 2); /* three failures in a row */
    }
    assert_int_equal(e.error_rate.source, SIPP_FIGURE_MEASURED);
    assert_int_equal(e.error_rate.samples, 3);
    assert_true(e.error_rate.value == 1.0 && e.busy_rate.value == 1.0);
    assert_int_equal(e.ttft_ms.source, SIPP_FIGURE_UNKNOWN); /* no answer, no TTFT */
    sipp_client_free(c);
    peer_stop(&pr);
}

/* ---- the policy, on synthetic estimates --------------------------------------------------------- */

static sipp_estimate local_est(uint32_t prompt, uint32_t cached, double ttft, uint32_t n_ctx) {
    sipp_estimate e = {.struct_size = sizeof e, .local = true, .loaded = true, .healthy = true,
                       .prompt_tokens = prompt, .cached_tokens = cached,
                       .cache_source = cached ? SIPP_CACHE_LIVE : SIPP_CACHE_NONE,
                       .prefill_tokens = prompt - cached, .n_ctx = n_ctx, .free_slots = 1};
    if (ttft >= 0) e.ttft_ms = (sipp_figure){ttft, 5, SIPP_FIGURE_PREDICTED};
    return e;
}

static sipp_estimate remote_est(double ttft, double price_in, double price_out, bool healthy) {
    sipp_estimate e = {.struct_size = sizeof e, .loaded = true, .healthy = healthy};
    if (ttft >= 0) e.ttft_ms = (sipp_figure){ttft, 10, SIPP_FIGURE_MEASURED};
    if (price_in >= 0) {
        e.price_input_per_mtok = (sipp_figure){price_in, 0, SIPP_FIGURE_CONFIGURED};
        e.price_output_per_mtok = (sipp_figure){price_out, 0, SIPP_FIGURE_CONFIGURED};
    }
    return e;
}

/* Endpoint handles are only carried through by the policy: any distinct pointers do. */
static sipp_endpoint *const EP_LOCAL = (sipp_endpoint *)0x10, *const EP_REMOTE = (sipp_endpoint *)0x20,
                           *const EP_REMOTE2 = (sipp_endpoint *)0x30;

static int choose(const sipp_rule *rules, size_t n_rules, const sipp_estimate *e, size_t n,
                  const char *const *tags, size_t n_tags, uint32_t max_tokens, char **reasons) {
    sipp_endpoint *eps[] = {EP_LOCAL, EP_REMOTE, EP_REMOTE2};
    const char *names[] = {"first", "second", "third"};
    sipp_route_candidate c[3];
    for (size_t i = 0; i < n; i++) c[i] = (sipp_route_candidate){eps[i], &e[i], names[i]};
    sipp_policy *pol = NULL;
    assert_int_equal(sipp_policy_new(rules, n_rules, &pol, NULL), SIPP_OK);
    sipp_route_choice ch;
    sipp_status st = sipp_policy_choose(pol, c, n, tags, n_tags, max_tokens, &ch, NULL);
    assert_int_equal(st, ch.index >= 0 ? SIPP_OK : SIPP_NO_ROUTE);
    if (ch.index >= 0) assert_ptr_equal(ch.endpoint, eps[ch.index]);
    assert_non_null(ch.reasons);
    if (reasons) *reasons = strdup(ch.reasons);
    int idx = ch.index;
    sipp_route_choice_free(&ch);
    sipp_policy_free(pol);
    return idx;
}

static void policy_rules(void **state) {
    (void)state;
    char *why = NULL;
    /* no rules: the app's order */
    sipp_estimate e2[] = {local_est(100, 0, 500, 2048), remote_est(300, 3, 15, true)};
    assert_int_equal(choose(NULL, 0, e2, 2, NULL, 0, 64, &why), 0);
    assert_non_null(strstr(why, "default: chose first"));
    free(why);

    /* privacy: a tagged request never leaves the machine, even when local is dropped */
    sipp_rule priv[] = {{SIPP_RULE_LOCAL_ONLY_TAG, 0, "private"}, {SIPP_RULE_FIT_CONTEXT, 0, NULL}};
    sipp_estimate big[] = {local_est(3000, 0, 500, 2048), remote_est(300, 3, 15, true)};
    const char *tags[] = {"private"};
    assert_int_equal(choose(priv, 2, big, 2, tags, 1, 64, &why), -1);
    assert_non_null(strstr(why, "tagged 'private'"));
    assert_non_null(strstr(why, "3000 prompt + 64 max tokens > n_ctx 2048"));
    free(why);
    assert_int_equal(choose(priv, 2, big, 2, NULL, 0, 64, NULL), 1); /* untagged: escalates */

    /* unhealthy remotes and saturated locals are skipped */
    sipp_rule skip[] = {{SIPP_RULE_SKIP_UNAVAILABLE, 2, NULL}};
    sipp_estimate sick[] = {local_est(10, 0, 50, 2048), remote_est(100, 1, 1, false),
                            remote_est(100, 1, 1, true)};
    sick[0].free_slots = 0;
    sick[0].queued = 2;
    assert_int_equal(choose(skip, 1, sick, 3, NULL, 0, 16, &why), 2);
    assert_non_null(strstr(why, "dropped second: unhealthy"));
    assert_non_null(strstr(why, "no free sequence and 2 queued"));
    free(why);
    sick[0].queued = 1; /* under the limit: kept */
    assert_int_equal(choose(skip, 1, sick, 3, NULL, 0, 16, NULL), 0);

    /* a TTFT budget: unknown passes, above it is dropped */
    sipp_rule ttft[] = {{SIPP_RULE_MAX_TTFT_MS, 400, NULL}};
    sipp_estimate slow[] = {local_est(100, 0, 900, 2048), remote_est(-1, 3, 15, true)};
    assert_int_equal(choose(ttft, 1, slow, 2, NULL, 0, 16, &why), 1);
    assert_non_null(strstr(why, "TTFT 900 ms predicted over 5 > 400 ms"));
    free(why);

    /* a cost budget: 1,000 in + 1,000 out at 3/15 per M = 0.018 */
    sipp_rule cost[] = {{SIPP_RULE_MAX_COST, 0.01, NULL}};
    sipp_estimate pricey[] = {remote_est(100, 3, 15, true), local_est(1000, 0, 900, 4096)};
    assert_int_equal(choose(cost, 1, pricey, 2, NULL, 0, 1000, &why), 1);
    assert_non_null(strstr(why, "expected cost 0.018 > 0.01"));
    free(why);

    /* prefer warm: the local one with enough of the prompt cached wins over the order */
    sipp_rule warm[] = {{SIPP_RULE_PREFER_WARM, 0.5, NULL}};
    sipp_estimate w[] = {remote_est(100, 3, 15, true), local_est(1000, 800, 400, 4096)};
    assert_int_equal(choose(warm, 1, w, 2, NULL, 0, 16, &why), 1);
    assert_non_null(strstr(why, "800 of 1000 prompt tokens cached (live)"));
    free(why);
    w[1].cached_tokens = 300; /* 30 %: not warm enough, the order decides */
    assert_int_equal(choose(warm, 1, w, 2, NULL, 0, 16, NULL), 0);

    /* prefer local under a TTFT: unknown local TTFT never qualifies */
    sipp_rule under[] = {{SIPP_RULE_PREFER_LOCAL_UNDER_TTFT, 300, NULL}};
    sipp_estimate u[] = {remote_est(100, 3, 15, true), local_est(100, 0, 200, 4096)};
    assert_int_equal(choose(under, 1, u, 2, NULL, 0, 16, NULL), 1);
    u[1].ttft_ms.value = 350;
    assert_int_equal(choose(under, 1, u, 2, NULL, 0, 16, NULL), 0);
    u[1].ttft_ms.source = SIPP_FIGURE_UNKNOWN;
    assert_int_equal(choose(under, 1, u, 2, NULL, 0, 16, NULL), 0);

    /* cheapest: local without a price costs 0 */
    sipp_rule cheap[] = {{SIPP_RULE_PREFER_CHEAPEST, 0, NULL}};
    sipp_estimate ch[] = {remote_est(100, 3, 15, true), remote_est(100, 0.1, 0.4, true),
                          local_est(100, 0, 200, 4096)};
    assert_int_equal(choose(cheap, 1, ch, 3, NULL, 0, 16, NULL), 2);
    /* two remotes and no local to count the prompt: their costs are unknown, the order decides */
    assert_int_equal(choose(cheap, 1, ch, 2, NULL, 0, 16, &why), 0);
    assert_non_null(strstr(why, "default: chose first"));
    free(why);

    /* filters act before preferences wherever they are listed */
    sipp_rule order[] = {{SIPP_RULE_PREFER_WARM, 0.1, NULL}, {SIPP_RULE_LOCAL_ONLY_TAG, 0, "private"}};
    sipp_estimate o[] = {remote_est(100, 3, 15, true), local_est(100, 90, 200, 4096)};
    int got = choose(order, 2, o, 2, tags, 1, 16, &why);
    if (got != 1) fail_msg("%s", why);
    free(why);
}

static void policy_refuses_bad_rules(void **state) {
    (void)state;
    sipp_policy *p = (sipp_policy *)0x1;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_rule bad_kind[] = {{(sipp_rule_kind)99, 0, NULL}};
    assert_int_equal(sipp_policy_new(bad_kind, 1, &p, &err), SIPP_INVALID_ARGUMENT);
    assert_null(p);
    assert_non_null(strstr(err.message, "unknown kind"));
    sipp_rule neg[] = {{SIPP_RULE_MAX_TTFT_MS, -1, NULL}};
    assert_int_equal(sipp_policy_new(neg, 1, &p, &err), SIPP_INVALID_ARGUMENT);
    sipp_rule frac[] = {{SIPP_RULE_PREFER_WARM, 1.5, NULL}};
    assert_int_equal(sipp_policy_new(frac, 1, &p, &err), SIPP_INVALID_ARGUMENT);
    sipp_rule notag[] = {{SIPP_RULE_LOCAL_ONLY_TAG, 0, NULL}};
    assert_int_equal(sipp_policy_new(notag, 1, &p, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "tag is required"));
    sipp_rule ok[] = {{SIPP_RULE_FIT_CONTEXT, 0, NULL}};
    assert_int_equal(sipp_policy_new(ok, 1, &p, &err), SIPP_OK);
    sipp_route_choice ch;
    assert_int_equal(sipp_policy_choose(p, NULL, 0, NULL, 0, 1, &ch, &err), SIPP_INVALID_ARGUMENT);
    sipp_estimate e = local_est(10, 0, 1, 100);
    sipp_route_candidate c = {NULL, &e, "x"};
    assert_int_equal(sipp_policy_choose(p, &c, 1, NULL, 0, 1, &ch, &err), SIPP_INVALID_ARGUMENT);
    sipp_policy_free(p);
}


/* ---- after a run: confidence, the draft check and draft-then-audit ---------------------------- */

static sipp_policy *audit_policy(double threshold) {
    sipp_rule r[] = {{SIPP_RULE_LOCAL_ONLY_TAG, 0, "private"},
                     {SIPP_RULE_ESCALATE_LOW_CONFIDENCE, threshold, NULL}};
    sipp_policy *p = NULL;
    assert_int_equal(sipp_policy_new(r, threshold > 0 ? 2 : 1, &p, NULL), SIPP_OK);
    return p;
}

static sipp_audit_outcome check(const sipp_policy *p, const sipp_response *r, bool *retry_safe,
                                char **why) {
    sipp_audit_decision d;
    assert_int_equal(sipp_policy_check_draft(p, r, &d, NULL), SIPP_OK);
    assert_non_null(d.reasons);
    if (retry_safe) *retry_safe = d.retry_safe;
    if (why) *why = strdup(d.reasons);
    sipp_audit_outcome o = d.outcome;
    sipp_audit_decision_free(&d);
    return o;
}

/* Each decision of the draft check, on synthetic responses. */
static void draft_check_decisions(void **state) {
    (void)state;
    /* probabilities 0.8 and 0.2: geometric mean 0.4, least likely 0.2 */
    sipp_token_logprob lp[] = {{"a", 1, logf(0.8f), NULL, 0}, {"b", 1, logf(0.2f), NULL, 0}};
    sipp_usage u = {.struct_size = sizeof u, .output_tokens = 2};
    sipp_response r = {.struct_size = sizeof r, .status = SIPP_OK, .text = "ab", .text_len = 2,
                       .usage = &u, .logprobs = lp, .n_logprobs = 2};
    double min = 0;
    uint32_t n = 0;
    assert_float_equal(sipp_response_confidence(&r, &min, &n), 0.4, 1e-6);
    assert_float_equal(min, 0.2, 1e-6);
    assert_int_equal(n, 2);

    char *why = NULL;
    sipp_policy *none = audit_policy(0), *lax = audit_policy(0.3), *strict = audit_policy(0.5);
    /* no confidence rule: the draft always stands */
    assert_int_equal(check(none, &r, NULL, &why), SIPP_AUDIT_DRAFT);
    assert_non_null(strstr(why, "no escalate_low_confidence rule"));
    free(why);
    assert_int_equal(check(lax, &r, NULL, &why), SIPP_AUDIT_DRAFT);
    assert_non_null(strstr(why, "confidence 0.400"));
    free(why);
    assert_int_equal(check(strict, &r, NULL, &why), SIPP_AUDIT_ESCALATED);
    assert_non_null(strstr(why, "rule 2 escalate_low_confidence: escalate: confidence 0.400"));
    free(why);
    /* no log-probabilities: the confidence is unknown, the draft is not vouched for */
    sipp_response bare = r;
    bare.logprobs = NULL;
    bare.n_logprobs = 0;
    assert_true(isnan(sipp_response_confidence(&bare, NULL, NULL)));
    assert_int_equal(check(lax, &bare, NULL, &why), SIPP_AUDIT_ESCALATED);
    assert_non_null(strstr(why, "unknown"));
    free(why);
    /* a draft that failed after its output began may not go elsewhere... */
    sipp_response broke = r;
    broke.status = SIPP_TRANSPORT;
    bool safe = true;
    assert_int_equal(check(lax, &broke, &safe, NULL), SIPP_AUDIT_DRAFT_FAILED);
    assert_false(safe);
    /* ...one that failed before any output token may, by the app's call */
    sipp_usage u0 = {.struct_size = sizeof u0};
    sipp_response refused = {.struct_size = sizeof refused, .status = SIPP_OVERLOADED, .text = "",
                             .usage = &u0};
    assert_int_equal(check(lax, &refused, &safe, NULL), SIPP_AUDIT_DRAFT_FAILED);
    assert_true(safe);

    /* the rule acts after a run: sipp_policy_choose ignores it */
    sipp_estimate e[] = {remote_est(100, 3, 15, true), local_est(100, 0, 50, 4096)};
    sipp_rule only[] = {{SIPP_RULE_ESCALATE_LOW_CONFIDENCE, 0.9, NULL}};
    assert_int_equal(choose(only, 1, e, 2, NULL, 0, 16, &why), 0);
    assert_non_null(strstr(why, "default: chose first"));
    free(why);
    /* a threshold is a probability */
    sipp_policy *bad = NULL;
    sipp_rule zero[] = {{SIPP_RULE_ESCALATE_LOW_CONFIDENCE, 0, NULL}};
    sipp_rule big[] = {{SIPP_RULE_ESCALATE_LOW_CONFIDENCE, 1.5, NULL}};
    assert_int_equal(sipp_policy_new(zero, 1, &bad, NULL), SIPP_INVALID_ARGUMENT);
    assert_int_equal(sipp_policy_new(big, 1, &bad, NULL), SIPP_INVALID_ARGUMENT);
    sipp_audit_decision d;
    assert_int_equal(sipp_policy_check_draft(lax, NULL, &d, NULL), SIPP_INVALID_ARGUMENT);
    /* bad input to draft-then-audit: refused before anything is sent */
    sipp_run *run = (sipp_run *)0x1;
    assert_int_equal(sipp_route_draft_audit(lax, EP_LOCAL, EP_REMOTE, NULL, 0, NULL, false, &run,
                                            &d, NULL),
                     SIPP_INVALID_ARGUMENT);
    assert_null(run);
    sipp_message m = {"user", "x"};
    sipp_text_params newer;
    sipp_text_params_init(&newer, sizeof newer);
    newer.struct_size = sizeof newer + 8; /* from a newer header */
    assert_int_equal(sipp_route_draft_audit(lax, EP_LOCAL, EP_REMOTE, &m, 1, &newer, false, &run,
                                            &d, NULL),
                     SIPP_INVALID_ARGUMENT);
    sipp_audit_decision_free(&d);
    sipp_policy_free(none);
    sipp_policy_free(lax);
    sipp_policy_free(strict);
}

typedef struct seen {
    char text[4096];
    size_t len;
} seen;

static void on_seen(const char *text, size_t len, uint32_t n, void *ud) {
    (void)n;
    seen *s = ud;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = '\0';
    }
}

static sipp_audit_outcome audit(const sipp_policy *pol, sipp_endpoint *draft, sipp_endpoint *target,
                                const sipp_message *m, sipp_text_params *p, bool send_draft,
                                sipp_run **run, sipp_audit_decision *d, sipp_status want) {
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp_status st = sipp_route_draft_audit(pol, draft, target, m, 1, p, send_draft, run, d, &err);
    if (st != want) fail_msg("draft_audit: %s (%s)", sipp_status_name(st), err.message);
    return d->outcome;
}

/* A local draft that is confident stands; one that is unsure goes, with the draft, to the
 * target, whose run streams to the caller (who never sees the draft). */
static void draft_audit_local_then_remote(void **state) {
    (void)state;
    peer pr;
    peer_start(&pr, PEER_ANSWER);
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *local = add_model(c, "chat", CHAT_MODEL, 1);
    sipp_endpoint *cloud = add_peer(c, "cloud", &pr);
    sipp_message m[] = {{"user", "What did the cat see in the garden?"}};
    sipp_text_params p = greedy(12);
    p.logprobs = true;
    sipp_run *run = NULL;
    assert_int_equal(sipp_chat(local, m, 1, &p, &run, NULL), SIPP_OK);
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(r->status, SIPP_OK);
    uint32_t n = 0;
    double conf = sipp_response_confidence(r, NULL, &n);
    assert_true(n > 0 && conf > 0 && conf < 1);
    char *draft_text = strdup(r->text);
    sipp_run_free(run);

    seen s = {0};
    p.logprobs = false; /* the helper asks the draft for them itself */
    p.on_tokens = on_seen;
    p.user_data = &s;
    p.context_key = "file:garden.txt"; /* local cache hint: not sent to the remote */
    sipp_audit_decision d;
    /* confident enough (greedy: the same draft): it stands, the cloud is not asked */
    sipp_policy *lax = audit_policy(conf * 0.9);
    assert_int_equal(audit(lax, local, cloud, m, &p, true, &run, &d, SIPP_OK), SIPP_AUDIT_DRAFT);
    assert_float_equal(d.confidence, conf, 1e-6);
    sipp_run_wait(run, &r, NULL);
    assert_string_equal(r->text, draft_text);
    assert_int_equal(s.len, 0); /* the draft was never streamed to the caller */
    assert_int_equal(atomic_load(&pr.requests), 0);
    sipp_run_free(run);
    sipp_audit_decision_free(&d);

    /* unsure: the question and the draft go to the cloud; its answer streams to the caller */
    sipp_policy *strict = audit_policy((conf + 1) / 2);
    assert_int_equal(audit(strict, local, cloud, m, &p, true, &run, &d, SIPP_OK),
                     SIPP_AUDIT_ESCALATED);
    assert_non_null(strstr(d.reasons, "escalated to the target with the draft"));
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(r->status, SIPP_OK);
    assert_string_equal(r->text, "audited answer");
    assert_string_equal(s.text, "audited answer"); /* and nothing of the draft */
    assert_int_equal(atomic_load(&pr.requests), 1);
    assert_non_null(strstr(pr.last_body, "What did the cat see in the garden?"));
    assert_non_null(strstr(pr.last_body, "Draft:"));
    assert_null(strstr(pr.last_body, "garden.txt"));
    sipp_run_free(run);
    sipp_audit_decision_free(&d);
    /* without the draft: the question only */
    s.len = 0;
    assert_int_equal(audit(strict, local, cloud, m, &p, false, &run, &d, SIPP_OK),
                     SIPP_AUDIT_ESCALATED);
    sipp_run_wait(run, &r, NULL);
    assert_null(strstr(pr.last_body, "Draft:"));
    sipp_run_free(run);
    sipp_audit_decision_free(&d);
    sipp_policy_free(lax);
    sipp_policy_free(strict);
    free(draft_text);
    sipp_client_free(c);
    peer_stop(&pr);
}

/* Never switch a stream: a draft that fails after its first token is returned failed and is
 * not sent to the target; one refused before any token is not sent either, but the app may
 * send it (retry_safe), and does so with its own explicit call. */
static void draft_audit_never_switches_a_stream(void **state) {
    (void)state;
    peer broken, refusing, target;
    peer_start(&broken, PEER_ONE_TOKEN);
    peer_start(&refusing, PEER_503);
    peer_start(&target, PEER_ANSWER);
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *b = add_peer(c, "broken", &broken), *rf = add_peer(c, "refusing", &refusing),
                  *t = add_peer(c, "target", &target);
    sipp_policy *pol = audit_policy(0.99);
    sipp_message m[] = {{"user", "hi"}};
    sipp_text_params p = greedy(8);
    sipp_run *run = NULL;
    sipp_audit_decision d;

    assert_int_equal(audit(pol, b, t, m, &p, true, &run, &d, SIPP_OK), SIPP_AUDIT_DRAFT_FAILED);
    assert_false(d.retry_safe);
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_int_not_equal(r->status, SIPP_OK);
    assert_string_equal(r->text, "Hel"); /* the failed draft, as it was */
    assert_int_equal(atomic_load(&target.requests), 0);
    sipp_run_free(run);
    sipp_audit_decision_free(&d);

    assert_int_equal(audit(pol, rf, t, m, &p, true, &run, &d, SIPP_OK), SIPP_AUDIT_DRAFT_FAILED);
    assert_true(d.retry_safe);
    assert_int_equal(atomic_load(&target.requests), 0); /* Sipp did not move it */
    sipp_run_free(run);
    sipp_audit_decision_free(&d);
    /* the app's explicit call */
    assert_int_equal(sipp_chat(t, m, 1, &p, &run, NULL), SIPP_OK);
    sipp_run_wait(run, &r, NULL);
    assert_string_equal(r->text, "audited answer");
    sipp_run_free(run);
    assert_int_equal(atomic_load(&target.requests), 1);

    /* refused at submission (a bad request here): the error, no run, the target untouched */
    sipp_text_params bad = p;
    bad.max_tokens = 0;
    assert_int_equal(audit(pol, b, t, m, &bad, true, &run, &d, SIPP_INVALID_ARGUMENT),
                     SIPP_AUDIT_DRAFT_FAILED);
    assert_null(run);
    assert_true(d.retry_safe);
    sipp_audit_decision_free(&d);
    assert_int_equal(atomic_load(&target.requests), 1);
    sipp_policy_free(pol);
    sipp_client_free(c);
    peer_stop(&broken);
    peer_stop(&refusing);
    peer_stop(&target);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(local_estimate_tokens_cache_and_ttft),
        cmocka_unit_test(local_estimate_sees_snapshots),
        cmocka_unit_test(chat_estimate_counts_the_rendered_prompt),
        cmocka_unit_test(remote_failures_make_it_unhealthy),
        cmocka_unit_test(policy_rules),
        cmocka_unit_test(policy_refuses_bad_rules),
        cmocka_unit_test(draft_check_decisions),
        cmocka_unit_test(draft_audit_local_then_remote),
        cmocka_unit_test(draft_audit_never_switches_a_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
