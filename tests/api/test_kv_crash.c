/*
 * test_kv_crash.c — the disk tier of prefix snapshots survives kill -9. Child processes write
 * snapshots in a loop (three keys on one sequence: two evictions to RAM snapshots, everything
 * written to the cache directory when the client closes) and are killed with SIGKILL at random
 * points, several times. A stale temporary file of a dead writer, one of a live process and a
 * snapshot cut short are planted too. A fresh client on the directory then starts, removes the
 * dead writers' temporary files and the torn snapshot (a live process's temporary file stays),
 * indexes every remaining snapshot, and a restored prefix answers as an uncached run does.
 *
 * The kills happen before this process creates any thread (fork stays safe), so this test
 * file holds one test.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BASE "Once upon a time there was a little girl named Lily. She loved to play outside"
static const char *const prompts[3] = {BASE " with a ball", BASE " with a dog", BASE " with a cat"};
static const char *const keys[3] = {"k0", "k1", "k2"};

static char dir[256];

static sipp_endpoint *open_ep(sipp_client **c, uint64_t ram) {
    assert_int_equal(sipp_client_new(NULL, c, NULL), SIPP_OK);
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = STORY_MODEL;
    lp.n_threads = 1;
    lp.n_parallel = 1;
    lp.cache_dir = dir;
    lp.cache_ram_bytes = ram;
    sipp_endpoint *ep = NULL;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_add_local(*c, "m", &lp, &ep, &err) != SIPP_OK) fail_msg("%s", err.message);
    return ep;
}

/* The child: writes snapshots until killed (or `rounds` times when rounds > 0). */
static void child_main(int rounds) {
    for (int r = 0; rounds <= 0 || r < rounds; r++) {
        sipp_client *c = NULL;
        if (sipp_client_new(NULL, &c, NULL) != SIPP_OK) _exit(2);
        sipp_local_params lp;
        sipp_local_params_init(&lp, sizeof lp);
        lp.model_path = STORY_MODEL;
        lp.n_threads = 1;
        lp.n_parallel = 1;
        lp.cache_dir = dir;
        sipp_endpoint *ep = NULL;
        if (sipp_client_add_local(c, "m", &lp, &ep, NULL) != SIPP_OK) _exit(3);
        for (int i = 0; i < 3; i++) {
            sipp_text_params p = greedy(4 + (uint32_t)r % 5);
            p.context_key = keys[i];
            sipp_run *run = NULL;
            if (sipp_query(ep, prompts[i], &p, &run, NULL) != SIPP_OK) _exit(4);
            const sipp_response *resp = NULL;
            sipp_run_wait(run, &resp, NULL);
            sipp_run_free(run);
        }
        sipp_client_free(c); /* writes every snapshot to the directory */
    }
    _exit(0);
}

typedef struct listing {
    int kv, tmp_dead, tmp_live, memo, other;
    uint64_t kv_bytes;
} listing;

static listing list_dir(pid_t live) {
    listing l = {0};
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] == '.') continue;
        size_t len = strlen(n);
        /* snapshot temps "<hex>.kv.tmp.PID", fingerprint memos "fp-<hex>" and their temps */
        const char *t = strncmp(n, "fp-", 3) == 0 ? strstr(n, ".tmp.") : strstr(n, ".kv.tmp.");
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, n);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        if (t) {
            pid_t pid = (pid_t)atol(strstr(t, ".tmp.") + 5);
            if (pid == live) l.tmp_live++; else l.tmp_dead++;
        } else if (strncmp(n, "fp-", 3) == 0) {
            l.memo++;
        } else if (len > 3 && strcmp(n + len - 3, ".kv") == 0) {
            l.kv++;
            l.kv_bytes += (uint64_t)st.st_size;
        } else {
            l.other++;
        }
    }
    closedir(d);
    return l;
}

static void copy_file(const char *from, const char *to, long len) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    for (long i = 0; i < len; i++) {
        int ch = fgetc(a);
        if (ch == EOF) break;
        fputc(ch, b);
    }
    fclose(a);
    fclose(b);
}

static pid_t spawn(int rounds) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) child_main(rounds);
    return pid;
}

static void kill_9_mid_write_leaves_a_usable_tier(void **state) {
    (void)state;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    print_message("seed %u\n", seed);
    /* one clean run first, so complete snapshots exist to be overwritten mid-write */
    pid_t pid = spawn(1);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pid_t dead = 0;
    int killed_with_tmp = 0;
    for (int k = 0; k < 8; k++) {
        pid = spawn(0);
        struct timespec ts = {0, (long)(20 + rand() % 400) * 1000000L};
        nanosleep(&ts, NULL);
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status)); /* it was killed, not finished */
        dead = pid;
        listing l = list_dir(getpid());
        killed_with_tmp += l.tmp_dead > 0;
    }
    print_message("%d of 8 kills left a temporary file behind\n", killed_with_tmp);

    /* plant: a dead writer's temp file, a live process's, and a snapshot cut in half */
    listing before = list_dir(getpid());
    assert_true(before.kv >= 1);
    DIR *d = opendir(dir);
    char some_kv[600] = "";
    struct dirent *de;
    while ((de = readdir(d)))
        if (strlen(de->d_name) == 67 && strcmp(de->d_name + 64, ".kv") == 0)
            snprintf(some_kv, sizeof some_kv, "%s/%s", dir, de->d_name);
    closedir(d);
    assert_true(some_kv[0]);
    struct stat st;
    assert_int_equal(stat(some_kv, &st), 0);
    char p1[700], p2[700], p3[700];
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    snprintf(p1, sizeof p1, "%s/%s.kv.tmp.%d", dir, hex, (int)dead);
    snprintf(p2, sizeof p2, "%s/%s.kv.tmp.%d", dir, hex, (int)getpid());
    snprintf(p3, sizeof p3, "%s/%.62s99.kv", dir, hex);
    copy_file(some_kv, p1, st.st_size / 2);
    copy_file(some_kv, p2, st.st_size / 2);
    copy_file(some_kv, p3, st.st_size / 2);

    /* a fresh client: starts, cleans up, indexes every remaining snapshot */
    sipp_client *c = NULL;
    sipp_endpoint *ep = open_ep(&c, 0);
    listing after = list_dir(getpid());
    assert_int_equal(after.tmp_dead, 0);
    assert_int_equal(after.tmp_live, 1);
    assert_int_equal(after.other, 0);
    assert_int_equal(after.memo, 1); /* one model, one fingerprint memo */
    assert_int_equal(access(p3, F_OK), -1); /* the torn snapshot is gone */
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_disk_bytes, after.kv_bytes); /* every .kv left is a valid one */

    /* a restored prefix answers as an uncached run does */
    sipp_client *u = NULL;
    sipp_endpoint *fresh = open_ep(&u, SIPP_CACHE_DISABLED);
    int restored = 0;
    for (int i = 0; i < 3; i++) {
        char follow[300];
        snprintf(follow, sizeof follow, "%s. Then she ran home", prompts[i]);
        sipp_text_params p = greedy(12);
        p.context_key = keys[i];
        test_response r;
        char *t = query_text(ep, follow, &p, &r);
        restored += r.stats.cache_source == SIPP_CACHE_SNAPSHOT;
        sipp_text_params g = greedy(12);
        char *want = query_text(fresh, follow, &g, NULL);
        assert_string_equal(t, want);
        free(t);
        free(want);
    }
    assert_true(restored >= 1);
    sipp_client_free(u);
    sipp_client_free(c);
    unlink(p2);
}

static int teardown(void **state) {
    (void)state;
    return scratch_dir_remove(dir);
}

int main(void) {
    if (scratch_dir_make(dir, sizeof dir, "kv-crash") != 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill_9_mid_write_leaves_a_usable_tier),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
