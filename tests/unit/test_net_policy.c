/*
 * test_net_policy.c — the outbound network policy (src/http/net_policy.c): the class of each
 * kind of address, what each class may reach, and the enforcement at connect time in the HTTP
 * client (libcurl's open-socket callback), which is what stops a host name that resolves (or
 * re-resolves, DNS rebinding) to a refused address. The connect-time cases use IP literals
 * straight through sipp__http_start, past the registration check, so the callback is the only
 * thing that can refuse them; a refused address is never connected to, so no network is needed.
 * The hub's blocking fetch (http_fetch.c) gets the same check, shown with a listener the test
 * owns: 0.0.0.0 as a destination reaches a 127.0.0.1 listener on Linux, so a fetch that is not
 * refused would show up there.
 */
#define _GNU_SOURCE
#include "http/http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static sipp__net_class cls(const char *text) {
    uint8_t a[16];
    int fam;
    if (!sipp__net_host_literal(text, &fam, a)) fail_msg("not a literal: %s", text);
    return sipp__net_classify(fam, a);
}

static void classes(void **state) {
    (void)state;
    static const struct {
        const char *addr;
        sipp__net_class want;
    } cases[] = {
        {"127.0.0.1", SIPP__NET_LOOPBACK},       {"127.255.0.9", SIPP__NET_LOOPBACK},
        {"[::1]", SIPP__NET_LOOPBACK},           {"::ffff:127.0.0.1", SIPP__NET_LOOPBACK},
        {"10.0.0.1", SIPP__NET_PRIVATE},         {"172.16.0.1", SIPP__NET_PRIVATE},
        {"172.31.255.255", SIPP__NET_PRIVATE},   {"172.32.0.1", SIPP__NET_PUBLIC},
        {"192.168.0.1", SIPP__NET_PRIVATE},      {"100.64.0.1", SIPP__NET_PRIVATE},
        {"100.128.0.1", SIPP__NET_PUBLIC},       {"fc00::1", SIPP__NET_PRIVATE},
        {"fd12:3456::1", SIPP__NET_PRIVATE},     {"::ffff:10.1.2.3", SIPP__NET_PRIVATE},
        {"64:ff9b::a00:1", SIPP__NET_PRIVATE},   /* NAT64 of 10.0.0.1 */
        {"169.254.1.1", SIPP__NET_LINK_LOCAL},   {"fe80::1", SIPP__NET_LINK_LOCAL},
        {"[fe80::1%25eth0]", SIPP__NET_LINK_LOCAL},
        {"169.254.169.254", SIPP__NET_METADATA}, {"169.254.170.2", SIPP__NET_METADATA},
        {"fd00:ec2::254", SIPP__NET_METADATA},   {"100.100.100.200", SIPP__NET_METADATA},
        {"::ffff:169.254.169.254", SIPP__NET_METADATA},
        {"0.0.0.0", SIPP__NET_RESERVED},         {"::", SIPP__NET_RESERVED},
        {"224.0.0.1", SIPP__NET_RESERVED},       {"255.255.255.255", SIPP__NET_RESERVED},
        {"ff02::1", SIPP__NET_RESERVED},         {"::10.0.0.1", SIPP__NET_RESERVED},
        {"8.8.8.8", SIPP__NET_PUBLIC},           {"2606:4700::1111", SIPP__NET_PUBLIC},
        {"192.0.2.2", SIPP__NET_PUBLIC},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (cls(cases[i].addr) != cases[i].want)
            fail_msg("%s: class %d, want %d", cases[i].addr, cls(cases[i].addr), cases[i].want);
    uint8_t a[16];
    int fam;
    assert_false(sipp__net_host_literal("api.openai.com", &fam, a));
    assert_false(sipp__net_host_literal("10.0.0.1.nip.io", &fam, a));
}

static void refusals(void **state) {
    (void)state;
    assert_null(sipp__net_refusal(SIPP__NET_PUBLIC, false));
    assert_null(sipp__net_refusal(SIPP__NET_LOOPBACK, false));
    assert_non_null(sipp__net_refusal(SIPP__NET_PRIVATE, false));
    assert_null(sipp__net_refusal(SIPP__NET_PRIVATE, true));
    assert_non_null(sipp__net_refusal(SIPP__NET_LINK_LOCAL, false));
    assert_null(sipp__net_refusal(SIPP__NET_LINK_LOCAL, true));
    assert_non_null(strstr(sipp__net_refusal(SIPP__NET_METADATA, true), "metadata"));
    assert_non_null(sipp__net_refusal(SIPP__NET_RESERVED, true));
}

/* Loopback is a class of addresses: a host name is loopback only as "localhost" or a loopback
 * literal, never because it starts with "127." (127.anything.example resolves wherever its DNS
 * says). Issue 19, finding 7. */
static void loopback_by_name(void **state) {
    (void)state;
    const char *yes[] = {"127.0.0.1", "127.8.9.10", "[::1]", "::1", "localhost", "LocalHost",
                         "[::ffff:127.0.0.1]", NULL};
    const char *no[] = {"127.anything.example", "127.0.0.1.nip.io", "127.", "localhost.example",
                        "10.0.0.1", "example.com", "", NULL};
    for (int i = 0; yes[i]; i++)
        if (!sipp__net_host_is_loopback(yes[i])) fail_msg("%s: not loopback", yes[i]);
    for (int i = 0; no[i]; i++)
        if (sipp__net_host_is_loopback(no[i])) fail_msg("%s: loopback", no[i]);
}

/* The URL check lets plain http through only to loopback by name. */
static void plain_http_to_a_name_starting_with_127(void **state) {
    (void)state;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp__http_url_check("http://127.anything.example:8080/v1", &err),
                     SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "only to loopback"));
    assert_int_equal(sipp__http_url_check("http://127.0.0.1.nip.io/v1", NULL), SIPP_INVALID_ARGUMENT);
    assert_int_equal(sipp__http_url_check("http://127.0.0.1:8080/v1", NULL), SIPP_OK);
    assert_int_equal(sipp__http_url_check("http://127.1.2.3:8080", NULL), SIPP_OK);
    assert_int_equal(sipp__http_url_check("http://[::1]:8080", NULL), SIPP_OK);
    assert_int_equal(sipp__http_url_check("http://localhost:8080", NULL), SIPP_OK);
    assert_int_equal(sipp__http_url_check("https://127.anything.example", NULL), SIPP_OK);
}

static bool allowed(const sipp__net_rules *r, const char *addr, char *why, size_t cap) {
    struct sockaddr_storage ss = {0};
    uint8_t a[16];
    int fam;
    if (!sipp__net_host_literal(addr, &fam, a)) fail_msg("not a literal: %s", addr);
    if (fam == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, a, 4);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, a, 16);
    }
    why[0] = '\0';
    return sipp__net_connect_check(r, (const struct sockaddr *)&ss, why, cap);
}

/* The decision at connect time, on the address: class, plain http, loopback off a remote hub. */
static void connect_rules(void **state) {
    (void)state;
    char why[256];
    sipp__net_rules dflt = {0}, priv = {.allow_private = true}, http = {.plain_http = true},
                    http_priv = {.allow_private = true, .plain_http = true},
                    no_lo = {.refuse_loopback = true};
    assert_true(allowed(&dflt, "127.0.0.1", why, sizeof why));
    assert_true(allowed(&dflt, "::1", why, sizeof why));
    assert_true(allowed(&dflt, "8.8.8.8", why, sizeof why));
    assert_false(allowed(&dflt, "10.0.0.1", why, sizeof why));
    assert_non_null(strstr(why, "refused to connect to 10.0.0.1"));
    assert_true(allowed(&priv, "10.0.0.1", why, sizeof why));
    assert_false(allowed(&priv, "169.254.169.254", why, sizeof why));
    assert_false(allowed(&priv, "0.0.0.0", why, sizeof why));
    assert_true(allowed(&http, "127.0.0.1", why, sizeof why));
    assert_false(allowed(&http, "8.8.8.8", why, sizeof why));
    assert_non_null(strstr(why, "plain http"));
    assert_false(allowed(&http, "10.0.0.1", why, sizeof why));
    assert_true(allowed(&http_priv, "10.0.0.1", why, sizeof why));
    assert_false(allowed(&no_lo, "127.0.0.1", why, sizeof why));
    assert_non_null(strstr(why, "loopback"));
    assert_false(allowed(&no_lo, "::ffff:127.0.0.1", why, sizeof why));
    assert_true(allowed(&no_lo, "8.8.8.8", why, sizeof why));
}

/* ---- connect time ---------------------------------------------------------------------- */

typedef struct done {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool ended;
    sipp_status st;
    char msg[256];
} done;

static void on_done(sipp_status st, const char *message, void *ud) {
    done *d = ud;
    pthread_mutex_lock(&d->mu);
    d->st = st;
    snprintf(d->msg, sizeof d->msg, "%s", message ? message : "");
    d->ended = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* One GET through the transfer thread; returns its end status (message in d->msg). */
static sipp_status fetch(sipp__http *h, const char *url, bool allow_private, done *d) {
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    sipp__http_request req = {.method = "GET", .url = url, .connect_timeout_ms = 500,
                              .total_timeout_ms = 2000, .allow_private_network = allow_private};
    sipp__http_handlers hd = {.on_done = on_done};
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp__http_start(h, &req, &hd, d, &err), SIPP_OK);
    pthread_mutex_lock(&d->mu);
    while (!d->ended) pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    return d->st;
}

static void refused_at_connect_time(void **state) {
    (void)state;
    sipp__http *h = NULL;
    assert_int_equal(sipp__http_new(&h, NULL), SIPP_OK);
    done d;
    assert_int_equal(fetch(h, "http://169.254.169.254/latest/meta-data/", true, &d),
                     SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(d.msg, "refused to connect to 169.254.169.254"));
    assert_non_null(strstr(d.msg, "metadata"));
    assert_int_equal(fetch(h, "https://10.0.0.1/v1", false, &d), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(d.msg, "allow_private_network"));
    assert_int_equal(fetch(h, "https://[fe80::1]/v1", false, &d), SIPP_INVALID_ARGUMENT);
    assert_int_equal(fetch(h, "https://[::ffff:10.0.0.1]/v1", false, &d), SIPP_INVALID_ARGUMENT);
    assert_int_equal(fetch(h, "http://0.0.0.0:1/", true, &d), SIPP_INVALID_ARGUMENT);
    /* plain http goes only to loopback or (allowed) private addresses */
    assert_int_equal(fetch(h, "http://8.8.8.8/", true, &d), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(d.msg, "plain http"));
    /* allowed: loopback is connected to (nothing listens on port 1: a transport error) */
    assert_int_equal(fetch(h, "http://127.0.0.1:1/", false, &d), SIPP_IO_ERROR);
    assert_null(strstr(d.msg, "refused to connect to"));
    /* (a private address with the flag passes the policy: connect_rules checks that without
     * connecting, since tests send traffic to loopback only) */
    /* "localhost" is a name: resolved, then checked (loopback: allowed) */
    assert_int_equal(fetch(h, "http://localhost:1/", false, &d), SIPP_IO_ERROR);
    sipp__http_free(h);
}

/* A listener on 127.0.0.1 that never answers; *port gets its port. */
static int listener(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static sipp_status get(const char *url, sipp_error *err) {
    sipp__http_get g = {.url = url, .connect_timeout_ms = 2000, .idle_timeout_ms = 1000};
    long status = 0;
    sipp_error_init(err, sizeof *err);
    return sipp__http_get_run(&g, &status, err);
}

/* The hub's fetch (sipp pull): every address connected to passes the policy, as for providers.
 * Issue 19, finding 7: the fetch set no connect-time check, so 0.0.0.0 (here: the test's own
 * listener) was connected to. */
static void fetch_refused_at_connect_time(void **state) {
    (void)state;
    int port, ls = listener(&port);
    char url[64];
    sipp_error err;
    snprintf(url, sizeof url, "http://0.0.0.0:%d/", port);
    assert_int_equal(get(url, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "refused to connect to 0.0.0.0"));
    assert_int_equal(accept(ls, NULL, NULL), -1); /* nothing was connected to */
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    close(ls);
    assert_int_equal(get("https://10.0.0.1/", &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "allow_private_network"));
    assert_int_equal(get("https://[fe80::1]/", &err), SIPP_INVALID_ARGUMENT);
    assert_int_equal(get("http://169.254.169.254/latest/meta-data/", &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "metadata"));
    assert_int_equal(get("http://8.8.8.8/", &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "plain http"));
    /* loopback is connected to (nothing listens on port 1: a transport error) */
    assert_int_equal(get("http://127.0.0.1:1/", &err), SIPP_TRANSPORT);
    assert_null(strstr(err.message, "refused to connect to"));
    assert_int_equal(get("http://localhost:1/", &err), SIPP_TRANSPORT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(classes),
        cmocka_unit_test(refusals),
        cmocka_unit_test(refused_at_connect_time),
        cmocka_unit_test(loopback_by_name),
        cmocka_unit_test(plain_http_to_a_name_starting_with_127),
        cmocka_unit_test(connect_rules),
        cmocka_unit_test(fetch_refused_at_connect_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
