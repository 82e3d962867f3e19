/*
 * test_remote_lifecycle.c — remote runs against a peer that answers the headers and one chunk,
 * then stalls (a fault a real provider does not produce on demand; the peer is a thread of this
 * test on loopback). Removing or replacing the endpoint cancels its runs, a cancel closes the
 * connection at once, and many concurrent runs share one transfer thread. sipp_run_not_sent
 * tells a request that never left from one the peer had.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define N_RUNS 40

typedef struct stall_peer {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_int accepted;
    atomic_int closed_by_client; /* connections the client closed while we stalled */
    atomic_bool stop;
    atomic_int live; /* connection threads still running */
} stall_peer;

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n";

/* One connection: read the request, answer a first chunk, then wait for the client to hang up. */
static void *serve_one(void *arg) {
    stall_peer *p = ((void **)arg)[0];
    int fd = (int)(intptr_t)((void **)arg)[1];
    free(arg);
    pthread_setname_np(pthread_self(), "stall-peer"); /* before it answers: never counted */
    char buf[8192];
    ssize_t n = recv(fd, buf, sizeof buf, 0); /* the whole small request arrives at once */
    if (n > 0 && send(fd, RESPONSE, sizeof RESPONSE - 1, MSG_NOSIGNAL) > 0) {
        struct timeval tv = {0, 100 * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        while (!atomic_load(&p->stop)) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r == 0) { /* EOF: the client closed the connection */
                atomic_fetch_add(&p->closed_by_client, 1);
                break;
            }
        }
    }
    close(fd);
    atomic_fetch_sub(&p->live, 1); /* the last touch of p */
    return NULL;
}

static void *accept_loop(void *arg) {
    stall_peer *p = arg;
    pthread_setname_np(pthread_self(), "stall-peer");
    while (!atomic_load(&p->stop)) {
        int fd = accept(p->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        atomic_fetch_add(&p->accepted, 1);
        atomic_fetch_add(&p->live, 1);
        void **a = malloc(2 * sizeof *a);
        a[0] = p;
        a[1] = (void *)(intptr_t)fd;
        pthread_t t;
        pthread_create(&t, NULL, serve_one, a);
        pthread_detach(t);
    }
    return NULL;
}

static stall_peer *peer_start(void) {
    stall_peer *p = calloc(1, sizeof *p);
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(p->listen_fd, 128), 0);
    socklen_t len = sizeof a;
    getsockname(p->listen_fd, (struct sockaddr *)&a, &len);
    p->port = ntohs(a.sin_port);
    struct timeval tv = {0, 100 * 1000}; /* accept wakes up to see stop */
    setsockopt(p->listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    pthread_create(&p->thread, NULL, accept_loop, p);
    return p;
}

static void peer_stop(stall_peer *p) {
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    while (atomic_load(&p->live) > 0) usleep(10 * 1000); /* each sees stop within 100 ms */
    free(p);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Threads of this process other than the test peer's. */
static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[300], name[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(name, sizeof name, f)) n += strncmp(name, "stall-peer", 10) != 0;
        if (f) fclose(f);
    }
    if (d) closedir(d);
    return n;
}

static sipp_endpoint *add_peer(sipp_client *c, const char *id, const stall_peer *p) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", p->port);
    sipp_provider_params pp;
    sipp_provider_params_init(&pp, sizeof pp);
    pp.kind = SIPP_PROVIDER_OPENAI_COMPATIBLE;
    pp.base_url = url;
    pp.model = "m";
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_add_provider(c, id, &pp, &ep, &err) != SIPP_OK) fail_msg("%s", err.message);
    return ep;
}

static sipp_run *start_chat(sipp_endpoint *ep) {
    sipp_message m = {"user", "hi"};
    sipp_run *run = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_chat(ep, &m, 1, NULL, &run, &err) != SIPP_OK) fail_msg("%s", err.message);
    return run;
}

/* Waits until the peer has accepted `accepted` connections in all and each of the `n` runs has
 * its first chunk. */
static void wait_streaming(stall_peer *p, int accepted, sipp_run **runs, int n) {
    double deadline = now_ms() + 10000;
    while (atomic_load(&p->accepted) < accepted && now_ms() < deadline) usleep(5000);
    assert_int_equal(atomic_load(&p->accepted), accepted);
    for (int i = 0; i < n; i++) {
        sipp_token_batch b = {.struct_size = sizeof b};
        assert_int_equal(sipp_run_next(runs[i], 10000, &b, NULL), SIPP_OK);
        assert_int_equal(b.len, 2); /* "Hi" */
    }
}

static void many_runs_share_one_thread_and_removal_cancels_them(void **state) {
    (void)state;
    stall_peer *p = peer_start();
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *ep = add_peer(c, "peer", p);
    sipp_run *warm = start_chat(ep); /* the transfer thread exists from here on */
    wait_streaming(p, 1, &warm, 1);
    int threads = count_threads();
    sipp_run *runs[N_RUNS];
    for (int i = 0; i < N_RUNS; i++) runs[i] = start_chat(ep);
    wait_streaming(p, N_RUNS + 1, runs, N_RUNS);
    assert_int_equal(count_threads(), threads); /* no thread per request */

    double t0 = now_ms();
    assert_int_equal(sipp_client_remove(c, "peer", NULL), SIPP_OK);
    assert_true(now_ms() - t0 < 5000);
    for (int i = 0; i < N_RUNS; i++) {
        assert_true(sipp_run_is_done(runs[i])); /* removal waited for every run's end */
        const sipp_response *r = NULL;
        sipp_run_wait(runs[i], &r, NULL);
        assert_int_equal(r->status, SIPP_OK);
        assert_int_equal(r->finish_reason, SIPP_FINISH_CANCELLED);
        sipp_run_free(runs[i]);
    }
    sipp_run_free(warm);
    double deadline = now_ms() + 5000; /* and every connection was closed */
    while (atomic_load(&p->closed_by_client) < N_RUNS + 1 && now_ms() < deadline) usleep(5000);
    assert_int_equal(atomic_load(&p->closed_by_client), N_RUNS + 1);
    sipp_client_free(c);
    peer_stop(p);
}

static void cancel_closes_the_connection_and_readding_replaces(void **state) {
    (void)state;
    stall_peer *p = peer_start();
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_endpoint *ep = add_peer(c, "peer", p);
    sipp_run *run = start_chat(ep);
    wait_streaming(p, 1, &run, 1);
    double t0 = now_ms();
    sipp_run_cancel(run);
    while (atomic_load(&p->closed_by_client) < 1 && now_ms() - t0 < 5000) usleep(1000);
    assert_int_equal(atomic_load(&p->closed_by_client), 1);
    assert_true(now_ms() - t0 < 1000); /* promptly, not at a timeout */
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(r->finish_reason, SIPP_FINISH_CANCELLED);
    assert_string_equal(r->text, "Hi");
    sipp_run_free(run);

    /* re-adding the id replaces the endpoint: the old one's run is cancelled */
    run = start_chat(ep);
    wait_streaming(p, 2, &run, 1);
    sipp_endpoint *again = add_peer(c, "peer", p);
    assert_true(sipp_run_is_done(run));
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(r->finish_reason, SIPP_FINISH_CANCELLED);
    sipp_run_free(run);
    assert_ptr_equal(sipp_client_get_endpoint(c, "peer"), again);
    sipp_client_free(c);
    peer_stop(p);
}

/* sipp_run_not_sent: true only when the request never left (nothing listens on the port);
 * false while a run goes on, and after a peer that had the request broke the connection. */
static void not_sent_only_when_the_request_never_left(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    assert_false(sipp_run_not_sent(NULL));
    /* a port nothing listens on: bound, then closed */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    stall_peer dead = {.port = ntohs(a.sin_port)};
    close(fd);
    sipp_run *run = start_chat(add_peer(c, "dead", &dead));
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    assert_int_equal(r->status, SIPP_TRANSPORT);
    assert_true(sipp_run_not_sent(run));
    sipp_run_free(run);
    /* a peer that had the request and its first chunk out, then went away */
    stall_peer *p = peer_start();
    run = start_chat(add_peer(c, "peer", p));
    wait_streaming(p, 1, &run, 1);
    assert_false(sipp_run_not_sent(run)); /* still going */
    peer_stop(p); /* its connection is closed mid-stream */
    sipp_run_wait(run, &r, NULL);
    assert_int_not_equal(r->status, SIPP_OK);
    assert_false(sipp_run_not_sent(run));
    sipp_run_free(run);
    sipp_client_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(many_runs_share_one_thread_and_removal_cancels_them),
        cmocka_unit_test(cancel_closes_the_connection_and_readding_replaces),
        cmocka_unit_test(not_sent_only_when_the_request_never_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
