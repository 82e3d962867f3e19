/*
 * test_gw_policy.c — the gateway's pure policy logic (src/gateway/policy.c): CIDR parsing and
 * matching, client IP selection behind trusted proxies, rate-limit keys (IPv6 by /64), the
 * token-bucket limiter (requests, token reservations, LRU eviction), the shared-store breaker,
 * admission counters and the constant-time digest compare.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "policy.h"

#include <stdio.h>
#include <string.h>

static sipp__gw_ip ip(const char *s) {
    sipp__gw_ip x;
    assert_true(sipp__gw_ip_parse(s, &x));
    return x;
}

static void test_cidr(void **state) {
    (void)state;
    sipp__gw_cidr c;
    assert_true(sipp__gw_cidr_parse("10.0.0.0/8", &c));
    sipp__gw_ip a = ip("10.1.2.3"), b = ip("11.0.0.1");
    assert_true(sipp__gw_cidr_match(&c, &a));
    assert_false(sipp__gw_cidr_match(&c, &b));
    assert_true(sipp__gw_cidr_parse("192.168.1.7", &c)); /* a single address */
    sipp__gw_ip d = ip("192.168.1.7"), e = ip("192.168.1.8");
    assert_true(sipp__gw_cidr_match(&c, &d));
    assert_false(sipp__gw_cidr_match(&c, &e));
    assert_true(sipp__gw_cidr_parse("fd00::/8", &c));
    sipp__gw_ip f = ip("fd12::1"), g = ip("fe80::1");
    assert_true(sipp__gw_cidr_match(&c, &f));
    assert_false(sipp__gw_cidr_match(&c, &g));
    assert_false(sipp__gw_cidr_match(&c, &a)); /* v4 never inside a v6 range like this */
    assert_true(sipp__gw_cidr_parse("0.0.0.0/0", &c));
    assert_true(sipp__gw_cidr_match(&c, &a));
    assert_false(sipp__gw_cidr_match(&c, &f)); /* 0.0.0.0/0 is all IPv4, not IPv6 */
    assert_true(sipp__gw_cidr_parse("10.0.0.0/9", &c));
    sipp__gw_ip h = ip("10.127.255.255"), i = ip("10.128.0.0");
    assert_true(sipp__gw_cidr_match(&c, &h));
    assert_false(sipp__gw_cidr_match(&c, &i));
    /* refused */
    const char *bad[] = {"", "10.0.0.0/33", "10.0.0.1/8", "::1/129", "10.0.0.0/", "10.0.0.0/-1",
                         "x", "10.0.0.0/8/8", "1.2.3.4.5", "[::1]", "10.0.0.0/08x"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        assert_false(sipp__gw_cidr_parse(bad[k], &c));
}

static void test_client_ip(void **state) {
    (void)state;
    sipp__gw_cidr trusted[2];
    assert_true(sipp__gw_cidr_parse("127.0.0.1", &trusted[0]));
    assert_true(sipp__gw_cidr_parse("10.0.0.0/8", &trusted[1]));
    char buf[64];
    sipp__gw_ip peer = ip("127.0.0.1"), stranger = ip("203.0.113.9"), got;
    /* trusted peer: the rightmost untrusted hop */
    got = sipp__gw_client_ip(&peer, "198.51.100.1, 10.0.0.5", true, trusted, 2);
    sipp__gw_ip_format(&got, buf, sizeof buf);
    assert_string_equal(buf, "198.51.100.1");
    /* a spoofed left part does not matter: the right hop is believed first */
    got = sipp__gw_client_ip(&peer, "1.1.1.1, 198.51.100.1", true, trusted, 2);
    sipp__gw_ip_format(&got, buf, sizeof buf);
    assert_string_equal(buf, "198.51.100.1");
    /* untrusted peer: the header is ignored */
    got = sipp__gw_client_ip(&stranger, "1.1.1.1", true, trusted, 2);
    sipp__gw_ip_format(&got, buf, sizeof buf);
    assert_string_equal(buf, "203.0.113.9");
    /* no trusted proxies at all: ignored */
    got = sipp__gw_client_ip(&peer, "1.1.1.1", true, NULL, 0);
    sipp__gw_ip_format(&got, buf, sizeof buf);
    assert_string_equal(buf, "127.0.0.1");
    /* garbage: falls back */
    got = sipp__gw_client_ip(&peer, "not-an-ip", true, trusted, 2);
    sipp__gw_ip_format(&got, buf, sizeof buf);
    assert_string_equal(buf, "127.0.0.1");
    /* X-Real-IP */
    got = sipp__gw_client_ip(&peer, " 2001:db8::7 ", false, trusted, 2);
    sipp__gw_ip_format(&got, buf, sizeof buf);
    assert_string_equal(buf, "2001:db8::7");
}

static void test_request_bucket(void **state) {
    (void)state;
    sipp__gw_limiter *l = sipp__gw_limiter_new(100);
    sipp__gw_rate req = {60, 3}, none = {0, 0};
    uint32_t wait = 0;
    for (int i = 0; i < 3; i++) assert_true(sipp__gw_limiter_take(l, "k", req, none, 100.0, &wait));
    assert_false(sipp__gw_limiter_take(l, "k", req, none, 100.0, &wait));
    assert_int_equal(wait, 1); /* one request per second refills */
    assert_true(sipp__gw_limiter_take(l, "other", req, none, 100.0, &wait)); /* keys are apart */
    assert_true(sipp__gw_limiter_take(l, "k", req, none, 101.0, &wait));
    assert_false(sipp__gw_limiter_take(l, "k", req, none, 101.5, &wait));
    /* unlimited */
    for (int i = 0; i < 100; i++) assert_true(sipp__gw_limiter_take(l, "u", none, none, 0, &wait));
    sipp__gw_limiter_free(l);
}

static void test_token_bucket(void **state) {
    (void)state;
    sipp__gw_limiter *l = sipp__gw_limiter_new(100);
    sipp__gw_rate none = {0, 0}, tok = {600, 0}; /* 10 tokens per second, 600 burst */
    uint32_t wait = 0;
    assert_true(sipp__gw_limiter_take(l, "c", none, tok, 0, &wait));
    sipp__gw_limiter_settle(l, "c", tok, 0, 900, 0); /* nothing reserved, 900 tokens used */
    assert_false(sipp__gw_limiter_take(l, "c", none, tok, 1.0, &wait));
    assert_true(wait >= 20 && wait <= 31); /* 300 in debt minus 10 refilled: ~29 s */
    assert_true(sipp__gw_limiter_take(l, "c", none, tok, 40.0, &wait));
    sipp__gw_limiter_free(l);
}

/* Finding 5 of issue 19: admission reserved nothing, so parallel requests all saw a positive
 * level and spent the budget many times over. */
static void test_token_reservation(void **state) {
    (void)state;
    sipp__gw_limiter *l = sipp__gw_limiter_new(100);
    sipp__gw_rate tok = {100, 0}; /* 100 a minute; the clock stands still below */
    uint32_t wait = 0;
    uint64_t held[8];
    /* eight parallel requests that may each spend 36: two fit, six are refused */
    int admitted = 0;
    for (int i = 0; i < 8; i++) {
        bool ok = sipp__gw_limiter_reserve(l, "p", tok, 36, 5.0, &held[i], &wait);
        admitted += ok;
        if (ok) assert_int_equal(held[i], 36);
        else {
            assert_int_equal(held[i], 0);
            assert_int_equal(wait, 5); /* 8 more tokens at 100/min: 4.8 s */
        }
    }
    assert_int_equal(admitted, 2);
    /* the unused part comes back: the first used 22, so 28 + 14 = 42 and a third fits */
    sipp__gw_limiter_settle(l, "p", tok, 36, 22, 5.0);
    assert_true(sipp__gw_limiter_reserve(l, "p", tok, 36, 5.0, &held[2], &wait));
    assert_false(sipp__gw_limiter_reserve(l, "p", tok, 36, 5.0, &held[3], &wait));

    /* debt is kept: reserved 50, used 130 -> level -30; nothing passes until it refills */
    assert_true(sipp__gw_limiter_reserve(l, "d", tok, 50, 0, &held[0], &wait));
    sipp__gw_limiter_settle(l, "d", tok, held[0], 130, 0);
    assert_false(sipp__gw_limiter_take(l, "d", (sipp__gw_rate){0, 0}, tok, 0, &wait));
    assert_int_equal(wait, 19); /* 31 tokens at 100/min */
    assert_false(sipp__gw_limiter_reserve(l, "d", tok, 1, 0, &held[1], &wait));
    assert_true(sipp__gw_limiter_reserve(l, "d", tok, 1, 19.0, &held[1], &wait));

    /* a request larger than the whole bucket runs when the bucket is full, and alone */
    assert_true(sipp__gw_limiter_reserve(l, "big", tok, 500, 0, &held[0], &wait));
    assert_int_equal(held[0], 500);
    assert_false(sipp__gw_limiter_reserve(l, "big", tok, 1, 0, &held[1], &wait));
    sipp__gw_limiter_settle(l, "big", tok, 500, 40, 0); /* -400 + 460 = 60 */
    assert_true(sipp__gw_limiter_reserve(l, "big", tok, 60, 0, &held[1], &wait));
    assert_false(sipp__gw_limiter_reserve(l, "big", tok, 1, 0, &held[1], &wait));

    /* the debt floor (ten minutes = -1000) bounds what is held, so the refund cannot credit
     * more than was taken: 100 - 1100 + 1050 = 50 */
    assert_true(sipp__gw_limiter_reserve(l, "huge", tok, 1000000000, 0, &held[0], &wait));
    assert_int_equal(held[0], 1100);
    sipp__gw_limiter_settle(l, "huge", tok, held[0], 50, 0);
    assert_true(sipp__gw_limiter_reserve(l, "huge", tok, 50, 0, &held[1], &wait));
    assert_false(sipp__gw_limiter_reserve(l, "huge", tok, 1, 0, &held[1], &wait));

    /* unlimited: nothing held */
    assert_true(sipp__gw_limiter_reserve(l, "u", (sipp__gw_rate){0, 0}, 99, 0, &held[0], &wait));
    assert_int_equal(held[0], 0);
    sipp__gw_limiter_free(l);
}

static void test_limiter_bounded(void **state) {
    (void)state;
    sipp__gw_limiter *l = sipp__gw_limiter_new(10);
    sipp__gw_rate req = {60, 1}, none = {0, 0};
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "ip:%d", i);
        sipp__gw_limiter_take(l, key, req, none, (double)i, NULL);
        assert_true(sipp__gw_limiter_size(l) <= 10);
    }
    sipp__gw_limiter_free(l);
}

/* Finding 8 of issue 19: a full table scanned every entry to find one to drop; now it drops the
 * least recently used, whatever the clock says. */
static void test_limiter_lru_eviction(void **state) {
    (void)state;
    sipp__gw_limiter *l = sipp__gw_limiter_new(3);
    sipp__gw_rate req = {60, 1}, none = {0, 0};
    uint32_t wait;
    /* the same instant for every operation: recency alone decides */
    assert_true(sipp__gw_limiter_take(l, "a", req, none, 7.0, &wait));
    assert_true(sipp__gw_limiter_take(l, "b", req, none, 7.0, &wait));
    assert_true(sipp__gw_limiter_take(l, "c", req, none, 7.0, &wait));
    assert_false(sipp__gw_limiter_take(l, "a", req, none, 7.0, &wait)); /* a is used again */
    assert_true(sipp__gw_limiter_take(l, "d", req, none, 7.0, &wait)); /* evicts b */
    assert_int_equal(sipp__gw_limiter_size(l), 3);
    assert_false(sipp__gw_limiter_has(l, "b"));
    assert_true(sipp__gw_limiter_has(l, "a") && sipp__gw_limiter_has(l, "c") &&
                sipp__gw_limiter_has(l, "d"));
    /* order now (newest first): d a c; touching c makes a the oldest */
    assert_false(sipp__gw_limiter_take(l, "c", req, none, 7.0, &wait)); /* kept its state */
    assert_true(sipp__gw_limiter_take(l, "b", req, none, 7.0, &wait)); /* fresh; evicts a */
    assert_false(sipp__gw_limiter_has(l, "a"));
    assert_true(sipp__gw_limiter_has(l, "c") && sipp__gw_limiter_has(l, "d"));
    /* reservations and settlements count as use too */
    uint64_t held;
    assert_true(sipp__gw_limiter_reserve(l, "d", (sipp__gw_rate){100, 0}, 1, 7.0, &held, &wait));
    assert_true(sipp__gw_limiter_take(l, "e", req, none, 7.0, &wait)); /* evicts c, not d */
    assert_false(sipp__gw_limiter_has(l, "c"));
    assert_true(sipp__gw_limiter_has(l, "d"));
    sipp__gw_limiter_free(l);
}

/* A big table stays O(1) per operation: 200k distinct keys through a 100k table. */
static void test_limiter_churn(void **state) {
    (void)state;
    sipp__gw_limiter *l = sipp__gw_limiter_new(100000);
    sipp__gw_rate req = {60, 1}, none = {0, 0};
    char key[32];
    for (int i = 0; i < 200000; i++) {
        snprintf(key, sizeof key, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_true(sipp__gw_limiter_take(l, key, req, none, 1.0, NULL));
    }
    assert_int_equal(sipp__gw_limiter_size(l), 100000);
    assert_false(sipp__gw_limiter_has(l, "10.0.0.0"));
    assert_true(sipp__gw_limiter_has(l, "10.3.13.63")); /* key 199999 */
    sipp__gw_limiter_free(l);
}

static void rate_key(const char *addr, char *buf) {
    sipp__gw_ip x = ip(addr);
    sipp__gw_ip_rate_key(&x, buf, 64);
}

/* Finding 8 of issue 19: an IPv6 client holds a whole /64 and could use a fresh bucket per
 * address. */
static void test_ip_rate_key(void **state) {
    (void)state;
    char a[64], b[64];
    rate_key("203.0.113.9", a);
    assert_string_equal(a, "203.0.113.9");
    rate_key("203.0.113.10", b);
    assert_string_equal(b, "203.0.113.10"); /* IPv4: every address its own */
    rate_key("::ffff:203.0.113.9", b);
    assert_string_equal(b, "203.0.113.9"); /* mapped = plain IPv4 */
    rate_key("2001:db8:1:2::1", a);
    assert_string_equal(a, "2001:db8:1:2::/64");
    rate_key("2001:db8:1:2:ffff:ffff:ffff:ffff", b);
    assert_string_equal(a, b);
    rate_key("2001:db8:1:3::1", b);
    assert_string_equal(b, "2001:db8:1:3::/64");
    rate_key("::1", a);
    assert_string_equal(a, "::/64");
    rate_key("fe80::1:2:3:4", a);
    assert_string_equal(a, "fe80::/64");
}

/* Finding 6 of issue 19: one slow Redis answer switched every request to "no limit" for a
 * second. The breaker switches only after separate, consecutive failures. */
static void test_breaker(void **state) {
    (void)state;
    sipp__gw_breaker b;
    sipp__gw_breaker_init(&b, 3, 1.0);
    bool probe;
    /* one 50 ms stall catches eight operations at once: one failure, no switch */
    for (int i = 0; i < 8; i++) {
        assert_true(sipp__gw_breaker_allow(&b, 0.001 * i, &probe));
        assert_false(probe);
    }
    for (int i = 0; i < 8; i++)
        assert_false(sipp__gw_breaker_done(&b, false, false, 0.001 * i, 0.05 + 0.001 * i));
    assert_false(b.open);
    assert_int_equal(b.fails, 1);
    /* then Redis answers: the count starts over */
    assert_false(sipp__gw_breaker_done(&b, true, false, 0.1, 0.101));
    assert_int_equal(b.fails, 0);
    /* three failures one after another: switch (reported once) */
    assert_false(sipp__gw_breaker_done(&b, false, false, 1.00, 1.05));
    assert_false(sipp__gw_breaker_done(&b, false, false, 1.06, 1.11));
    assert_true(sipp__gw_breaker_done(&b, false, false, 1.12, 1.17));
    assert_true(b.open);
    /* a late failure of the same outage changes nothing */
    assert_false(sipp__gw_breaker_done(&b, false, false, 1.13, 1.18));
    /* open: skipped until the probe time, then one probe at a time */
    assert_false(sipp__gw_breaker_allow(&b, 1.5, &probe));
    assert_true(sipp__gw_breaker_allow(&b, 2.2, &probe));
    assert_true(probe);
    assert_false(sipp__gw_breaker_allow(&b, 2.2, &probe));
    assert_false(sipp__gw_breaker_done(&b, false, true, 2.2, 2.25)); /* probe failed */
    assert_false(sipp__gw_breaker_allow(&b, 3.0, &probe));
    assert_true(sipp__gw_breaker_allow(&b, 3.3, &probe));
    assert_true(probe);
    assert_true(sipp__gw_breaker_done(&b, true, true, 3.3, 3.31)); /* back (reported once) */
    assert_false(b.open);
    assert_true(sipp__gw_breaker_allow(&b, 3.4, &probe));
    assert_false(probe);
}

static void test_admission(void **state) {
    (void)state;
    sipp__gw_admission a;
    uint32_t per[2] = {1, 0};
    assert_int_equal(sipp__gw_admission_init(&a, 3, per, 2), 0);
    assert_true(sipp__gw_admission_acquire(&a, 0));
    assert_false(sipp__gw_admission_acquire(&a, 0)); /* caller 0 holds its one */
    assert_true(sipp__gw_admission_acquire(&a, 1));
    assert_true(sipp__gw_admission_acquire(&a, SIZE_MAX));
    assert_false(sipp__gw_admission_acquire(&a, 1)); /* global 3 full */
    assert_int_equal(sipp__gw_admission_active(&a), 3);
    sipp__gw_admission_release(&a, 0);
    assert_true(sipp__gw_admission_acquire(&a, 0));
    sipp__gw_admission_destroy(&a);
}

/* A reload sets a caller's concurrency limit in place; permits already held stay counted. */
static void test_admission_set_caller_max(void **state) {
    (void)state;
    sipp__gw_admission a;
    assert_int_equal(sipp__gw_admission_init(&a, 0, NULL, 2), 0);
    assert_true(sipp__gw_admission_acquire(&a, 1));
    assert_true(sipp__gw_admission_acquire(&a, 1)); /* no limit yet */
    sipp__gw_admission_set_caller_max(&a, 1, 2);
    assert_false(sipp__gw_admission_acquire(&a, 1)); /* the two it holds count */
    sipp__gw_admission_release(&a, 1);
    assert_true(sipp__gw_admission_acquire(&a, 1));
    sipp__gw_admission_set_caller_max(&a, 1, 0); /* none again */
    assert_true(sipp__gw_admission_acquire(&a, 1));
    sipp__gw_admission_set_caller_max(&a, 7, 1); /* out of range: ignored */
    assert_true(sipp__gw_admission_acquire(&a, 7));
    sipp__gw_admission_destroy(&a);
}

static void test_digest_equal(void **state) {
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0};
    assert_true(sipp__gw_digest_equal(a, b));
    b[31] = 1;
    assert_false(sipp__gw_digest_equal(a, b));
    b[31] = 0;
    b[0] = 0x80;
    assert_false(sipp__gw_digest_equal(a, b));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr),           cmocka_unit_test(test_client_ip),
        cmocka_unit_test(test_request_bucket), cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_token_reservation), cmocka_unit_test(test_limiter_bounded),
        cmocka_unit_test(test_limiter_lru_eviction), cmocka_unit_test(test_limiter_churn),
        cmocka_unit_test(test_ip_rate_key),     cmocka_unit_test(test_breaker),
        cmocka_unit_test(test_admission),       cmocka_unit_test(test_digest_equal),
        cmocka_unit_test(test_admission_set_caller_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
