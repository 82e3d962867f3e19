/*
 * test_gw_policy.c — the gateway's pure policy logic (src/gateway/policy.c): CIDR parsing and
 * matching, client IP selection behind trusted proxies, the token-bucket limiter (requests and
 * token-aware), admission counters and the constant-time digest compare.
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
    sipp__gw_limiter_charge(l, "c", tok, 900, 0); /* one request burnt 900 tokens */
    assert_false(sipp__gw_limiter_take(l, "c", none, tok, 1.0, &wait));
    assert_true(wait >= 20 && wait <= 31); /* 300 in debt minus 10 refilled: ~29 s */
    assert_true(sipp__gw_limiter_take(l, "c", none, tok, 40.0, &wait));
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
        cmocka_unit_test(test_limiter_bounded), cmocka_unit_test(test_admission),
        cmocka_unit_test(test_digest_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
