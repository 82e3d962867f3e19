/*
 * test_gw_pool.c — upstream pools (src/gateway/pool.c) as pure functions: the health state
 * machine (out at once on a hard failure, at the threshold on soft ones, back on a probe or a
 * served request, exponential backoff), the choice of a replica (least outstanding, the tried
 * set, healthy first, every untried one when none is healthy) and rendezvous hashing (a key
 * stays put; a replica leaving or coming back moves only its own keys). Time is an argument:
 * nothing here sleeps. Then the pool object without a probe: counting, metrics text, the
 * dashboard rows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const sipp__pool_policy POLICY = {.failure_threshold = 3, .backoff_initial_s = 1,
                                         .backoff_max_s = 8};

static sipp__pool_replica healthy(void) { return (sipp__pool_replica){.healthy = true}; }

static void test_backoff_doubles_up_to_the_cap(void **state) {
    (void)state;
    assert_true(sipp__pool_backoff(&POLICY, 1) == 1);
    assert_true(sipp__pool_backoff(&POLICY, 2) == 2);
    assert_true(sipp__pool_backoff(&POLICY, 3) == 4);
    assert_true(sipp__pool_backoff(&POLICY, 4) == 8);
    assert_true(sipp__pool_backoff(&POLICY, 40) == 8);
}

static void test_hard_failure_takes_out_at_once(void **state) {
    (void)state;
    sipp__pool_replica r = healthy();
    assert_true(sipp__pool_record(&r, &POLICY, SIPP__POOL_HARD, 100));
    assert_false(r.healthy);
    assert_int_equal(r.ejections, 1);
    assert_true(r.retry_at == 101);
    /* more failures while out change nothing: its probe decides */
    assert_false(sipp__pool_record(&r, &POLICY, SIPP__POOL_HARD, 100.5));
    assert_true(r.retry_at == 101);
}

static void test_soft_failures_count_to_the_threshold(void **state) {
    (void)state;
    sipp__pool_replica r = healthy();
    assert_false(sipp__pool_record(&r, &POLICY, SIPP__POOL_BUSY, 0));
    assert_false(sipp__pool_record(&r, &POLICY, SIPP__POOL_SOFT, 0));
    assert_false(sipp__pool_record(&r, &POLICY, SIPP__POOL_OK, 0)); /* a success clears them */
    assert_int_equal(r.failures, 0);
    assert_false(sipp__pool_record(&r, &POLICY, SIPP__POOL_SOFT, 0));
    assert_false(sipp__pool_record(&r, &POLICY, SIPP__POOL_NEUTRAL, 0)); /* says nothing */
    assert_false(sipp__pool_record(&r, &POLICY, SIPP__POOL_BUSY, 0));
    assert_true(r.healthy);
    assert_true(sipp__pool_record(&r, &POLICY, SIPP__POOL_SOFT, 5));
    assert_false(r.healthy);
    assert_true(r.retry_at == 6);
}

static void test_probes_bring_back_with_backoff(void **state) {
    (void)state;
    sipp__pool_replica r = healthy();
    assert_true(sipp__pool_probe_result(&r, &POLICY, false, 0)); /* a failed probe: out */
    assert_false(r.healthy);
    assert_true(r.retry_at == 1);
    assert_false(sipp__pool_probe_result(&r, &POLICY, false, 1)); /* still down: 2 s */
    assert_true(r.retry_at == 3);
    assert_false(sipp__pool_probe_result(&r, &POLICY, false, 3)); /* 4 s */
    assert_true(r.retry_at == 7);
    assert_true(sipp__pool_probe_result(&r, &POLICY, true, 7)); /* back */
    assert_true(r.healthy);
    /* back but not proven: out again, the exponent goes on (8 s, the cap) */
    assert_true(sipp__pool_record(&r, &POLICY, SIPP__POOL_HARD, 10));
    assert_true(r.retry_at == 18);
    assert_true(sipp__pool_probe_result(&r, &POLICY, true, 18));
    /* a served request resets the exponent */
    assert_false(sipp__pool_record(&r, &POLICY, SIPP__POOL_OK, 19));
    assert_int_equal(r.ejections, 0);
    assert_true(sipp__pool_record(&r, &POLICY, SIPP__POOL_HARD, 20));
    assert_true(r.retry_at == 21);
    /* a good probe of a healthy replica changes nothing */
    sipp__pool_replica h = healthy();
    assert_false(sipp__pool_probe_result(&h, &POLICY, true, 0));
    assert_true(h.healthy);
    /* a request served by an out replica (every replica was out) brings it back */
    assert_true(sipp__pool_record(&r, &POLICY, SIPP__POOL_OK, 20.5));
    assert_true(r.healthy);
}

static const char *const IDS[] = {"http://a/v1", "http://b/v1", "http://c/v1", "http://d/v1",
                                  "http://e/v1"};

static void test_choose_least_outstanding(void **state) {
    (void)state;
    sipp__pool_replica r[3] = {healthy(), healthy(), healthy()};
    r[0].outstanding = 2;
    r[1].outstanding = 1;
    r[2].outstanding = 3;
    assert_int_equal(sipp__pool_choose(r, IDS, 3, 0, NULL, 0), 1);
    r[1].healthy = false; /* out: skipped while another is healthy */
    assert_int_equal(sipp__pool_choose(r, IDS, 3, 0, NULL, 0), 0);
    assert_int_equal(sipp__pool_choose(r, IDS, 3, 1u << 0, NULL, 0), 2); /* 0 was tried */
    /* only the out one is untried: better a try than a certain failure */
    assert_int_equal(sipp__pool_choose(r, IDS, 3, 1u << 0 | 1u << 2, NULL, 0), 1);
    assert_int_equal(sipp__pool_choose(r, IDS, 3, 7, NULL, 0), -1); /* all tried */
    /* ties: from `start` on, so a rotating start spreads them */
    sipp__pool_replica t[3] = {healthy(), healthy(), healthy()};
    assert_int_equal(sipp__pool_choose(t, IDS, 3, 0, NULL, 0), 0);
    assert_int_equal(sipp__pool_choose(t, IDS, 3, 0, NULL, 1), 1);
    assert_int_equal(sipp__pool_choose(t, IDS, 3, 0, NULL, 5), 2);
}

static void key_of(int k, uint8_t key[32]) {
    memset(key, 0, 32);
    memcpy(key, &k, sizeof k);
}

static void test_affinity_is_rendezvous_hashing(void **state) {
    (void)state;
    enum { N = 5, KEYS = 2000 };
    sipp__pool_replica r[N];
    for (int i = 0; i < N; i++) r[i] = healthy();
    int home[KEYS], count[N] = {0};
    uint8_t key[32];
    for (int k = 0; k < KEYS; k++) {
        key_of(k, key);
        home[k] = sipp__pool_choose(r, IDS, N, 0, key, (size_t)k);
        assert_in_range(home[k], 0, N - 1);
        count[home[k]]++;
        /* the same key, whatever the load and the rotation */
        r[(k + 1) % N].outstanding += 7;
        assert_int_equal(sipp__pool_choose(r, IDS, N, 0, key, (size_t)k + 3), home[k]);
    }
    for (int i = 0; i < N; i++) assert_true(count[i] > KEYS / N / 2); /* every replica has keys */
    /* replica 2 goes out: only its keys move, and they spread over the others */
    r[2].healthy = false;
    int moved_to[N] = {0};
    for (int k = 0; k < KEYS; k++) {
        key_of(k, key);
        int now = sipp__pool_choose(r, IDS, N, 0, key, 0);
        if (home[k] == 2) {
            assert_int_not_equal(now, 2);
            moved_to[now]++;
        } else {
            assert_int_equal(now, home[k]);
        }
    }
    int receivers = 0;
    for (int i = 0; i < N; i++) receivers += moved_to[i] > 0;
    assert_true(receivers >= 3);
    /* it comes back: every key is home again */
    r[2].healthy = true;
    for (int k = 0; k < KEYS; k++) {
        key_of(k, key);
        assert_int_equal(sipp__pool_choose(r, IDS, N, 0, key, 0), home[k]);
    }
    /* the score depends on the replica's id, not its position in the list */
    key_of(7, key);
    assert_true(sipp__pool_score(key, "http://a/v1") != sipp__pool_score(key, "http://b/v1"));
    assert_true(sipp__pool_score(key, "http://a/v1") == sipp__pool_score(key, "http://a/v1"));
    /* a tried replica is skipped even for its keys (the retry goes elsewhere) */
    for (int k = 0; k < 50; k++) {
        key_of(k, key);
        int next = sipp__pool_choose(r, IDS, N, (uint64_t)1 << home[k], key, 0);
        assert_int_not_equal(next, home[k]);
        assert_true(next >= 0);
    }
}

static void test_pool_object_counts_and_renders(void **state) {
    (void)state;
    const char *urls[] = {"http://a/v1", "http://b:81/v1"}, *hosts[] = {"a", "b:81"};
    sipp__gw_pool_params p = {.target = "t", .urls = urls, .hosts = hosts, .n = 2,
                              .policy = {.failure_threshold = 1, .backoff_initial_s = 3600,
                                         .backoff_max_s = 3600}};
    sipp__gw_pool *pool = sipp__gw_pool_new(&p);
    assert_non_null(pool);
    assert_int_equal(sipp__gw_pool_size(pool), 2);
    int a = sipp__gw_pool_acquire(pool, NULL, 0);
    int b = sipp__gw_pool_acquire(pool, NULL, 0);
    assert_int_not_equal(a, b); /* the second goes to the one with fewer outstanding */
    sipp__gw_pool_release(pool, a, SIPP__POOL_OK, 0.2);
    sipp__gw_pool_release(pool, b, SIPP__POOL_HARD, 0.01);
    sipp__gw_pool_count_retry(pool);
    /* b is out for an hour: every request goes to a */
    for (int i = 0; i < 4; i++) {
        int c = sipp__gw_pool_acquire(pool, NULL, 0);
        assert_int_equal(c, a);
        sipp__gw_pool_release(pool, c, SIPP__POOL_OK, 0.1);
    }
    sipp__gw_pool *pools[] = {pool, NULL};
    char *text = sipp__gw_pools_render(pools, 2);
    assert_non_null(text);
    char want[256];
    snprintf(want, sizeof want,
             "sipp_upstream_requests_total{target=\"t\",replica=\"%d\",host=\"%s\"} 5\n", a,
             hosts[a]);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want,
             "sipp_upstream_healthy{target=\"t\",replica=\"%d\",host=\"%s\"} 0\n", b, hosts[b]);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want,
             "sipp_upstream_errors_total{target=\"t\",replica=\"%d\",host=\"%s\","
             "kind=\"connection\"} 1\n",
             b, hosts[b]);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "sipp_upstream_retries_total{target=\"t\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE sipp_upstream_request_seconds histogram\n"));
    snprintf(want, sizeof want,
             "sipp_upstream_request_seconds_count{target=\"t\",replica=\"%d\",host=\"%s\"} 5\n", a,
             hosts[a]);
    assert_non_null(strstr(text, want));
    free(text);
    json_t *rows = sipp__gw_pool_json(pool);
    assert_int_equal(json_array_size(rows), 2);
    json_t *row_b = json_array_get(rows, 1);
    assert_string_equal(json_string_value(json_object_get(row_b, "host")), "b:81");
    char *dump = json_dumps(rows, 0);
    assert_null(strstr(dump, "/v1")); /* no path of a URL is shown */
    free(dump);
    json_t *out_row = json_array_get(rows, (size_t)b);
    assert_string_equal(json_string_value(json_object_get(out_row, "state")), "out");
    json_decref(rows);
    sipp__gw_pool_free(pool);
    /* no pool at all: no text */
    sipp__gw_pool *none[] = {NULL};
    text = sipp__gw_pools_render(none, 1);
    assert_string_equal(text, "");
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_up_to_the_cap),
        cmocka_unit_test(test_hard_failure_takes_out_at_once),
        cmocka_unit_test(test_soft_failures_count_to_the_threshold),
        cmocka_unit_test(test_probes_bring_back_with_backoff),
        cmocka_unit_test(test_choose_least_outstanding),
        cmocka_unit_test(test_affinity_is_rendezvous_hashing),
        cmocka_unit_test(test_pool_object_counts_and_renders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
