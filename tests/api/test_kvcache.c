/*
 * test_kvcache.c — the KV cache as runtime state: warm follow-ups compute only what is new and
 * answer as an uncached run would; LRU eviction with more keys than sequences; snapshot restore
 * after eviction, and in a new client from the disk tier; corrupted, truncated and foreign
 * snapshot files are rejected and the answer is still right; disk snapshots need the same model
 * bytes and context size, and the disk tier keeps to its budget; scopes never share state; two
 * requests on one key at once both complete; context shift; hostile keys never leave the cache
 * directory; eviction under a tight RAM budget while two threads restore; a second request on
 * a running key copies the prefix it shares with the first instead of computing it, also when an
 * embedding starts before that copy is applied.
 */
#define _POSIX_C_SOURCE 200809L
#include "helpers.h"

#include "ggml.h"
#include "gguf.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BASE "Once upon a time there was a little girl named Lily. She loved to play outside"

static char tmpdir[256];

static int setup(void **state) {
    (void)state;
    assert_int_equal(scratch_dir_make(tmpdir, sizeof tmpdir, "kvcache"), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return scratch_dir_remove(tmpdir);
}

static sipp_client *open_params(const sipp_local_params *lp, sipp_endpoint **ep) {
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    if (sipp_client_add_local(c, "m", lp, ep, &err) != SIPP_OK) fail_msg("%s", err.message);
    return c;
}

static sipp_local_params model_params(const char *path, uint32_t n_parallel,
                                      const char *cache_dir) {
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = path;
    lp.n_threads = 2;
    lp.n_parallel = n_parallel;
    lp.cache_dir = cache_dir;
    return lp;
}

static sipp_client *open_model(const char *path, uint32_t n_parallel, const char *cache_dir,
                               sipp_endpoint **ep) {
    sipp_local_params lp = model_params(path, n_parallel, cache_dir);
    return open_params(&lp, ep);
}

/* Runs a greedy query on `key` (NULL for none) and returns its response copy and text. */
static char *ask(sipp_endpoint *ep, const char *key, const char *scope, const char *prompt,
                 test_response *r) {
    sipp_text_params p = greedy(8);
    p.context_key = key;
    p.cache_scope = scope;
    return query_text(ep, prompt, &p, r);
}

static void expect_same_as_uncached(sipp_endpoint *ep, const char *prompt, const char *text) {
    test_response r;
    char *fresh = ask(ep, NULL, NULL, prompt, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    assert_string_equal(text, fresh);
    free(fresh);
}

static void warm_follow_up_computes_only_the_new_tokens(void **state) {
    (void)state;
    sipp_endpoint *ep;
    sipp_client *c = open_model(STORY_MODEL, 1, NULL, &ep);
    test_response r1, r2;
    free(ask(ep, "doc", NULL, BASE " and the sun", &r1));
    assert_int_equal(r1.stats.cache_source, SIPP_CACHE_NONE);
    assert_int_equal(r1.stats.prefill_tokens, r1.usage.input_tokens);

    const char *follow = BASE " and the sun. Then she went home to see her mom";
    char *t2 = ask(ep, "doc", NULL, follow, &r2);
    assert_int_equal(r2.stats.cache_source, SIPP_CACHE_LIVE);
    assert_true(r2.stats.cached_tokens >= r1.usage.input_tokens - 1);
    assert_int_equal(r2.stats.cached_tokens + r2.stats.prefill_tokens, r2.usage.input_tokens);
    assert_true(r2.stats.prefill_tokens < r2.usage.input_tokens / 2);
    expect_same_as_uncached(ep, follow, t2);
    free(t2);

    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_hits, 1);
    assert_int_equal(es.cache_misses, 1);
    sipp_client_free(c);
}

static void lru_eviction_and_snapshot_restore(void **state) {
    (void)state;
    sipp_endpoint *ep;
    sipp_client *c = open_model(STORY_MODEL, 2, NULL, &ep);
    test_response r;
    const char *prompts[] = {BASE " with a ball", BASE " with a dog", BASE " with a cat"};
    const char *keys[] = {"A", "B", "C"};
    for (int i = 0; i < 3; i++) free(ask(ep, keys[i], NULL, prompts[i], &r));
    /* 3 keys, 2 sequences: A (least recently used) was evicted when C came */
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_evictions, 1);
    assert_true(es.cache_ram_bytes > 0);
    /* B and C are resident */
    free(ask(ep, "B", NULL, prompts[1], &r));
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_LIVE);
    free(ask(ep, "C", NULL, prompts[2], &r));
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_LIVE);
    /* A comes back from its snapshot, and answers as an uncached run */
    char *t = ask(ep, "A", NULL, prompts[0], &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    assert_true(r.stats.cached_tokens > 0);
    expect_same_as_uncached(ep, prompts[0], t);
    free(t);
    sipp_client_free(c);
}

/* D5: two sessions alternating on one sequence do not thrash: each visit restores its session's
 * prefix (the other session holds the sequence in between) and computes only the new sentence.
 * Gate: after the first visits, the prompt tokens computed are at most 0.3x of what recomputing
 * every prompt (the thrash baseline) would cost. */
static void alternating_sessions_keep_their_prefixes(void **state) {
    (void)state;
    sipp_endpoint *ep;
    sipp_client *c = open_model(STORY_MODEL, 1, NULL, &ep);
    static const char *const more[] = {" She saw a bird.", " It was red.", " The bird sang.",
                                       " Lily smiled.", " Then she went home."};
    char conv[2][1024] = {BASE ". " BASE " with a ball.", BASE ". " BASE " with a dog."};
    const char *keys[] = {"A", "B"};
    uint32_t computed = 0, baseline = 0;
    for (int turn = 0; turn < 5; turn++) {
        for (int k = 0; k < 2; k++) {
            strcat(conv[k], more[turn]);
            test_response r;
            char *t = ask(ep, keys[k], NULL, conv[k], &r);
            if (turn > 0) {
                assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
                computed += r.stats.prefill_tokens;
                baseline += r.usage.input_tokens;
            }
            if (turn == 4) expect_same_as_uncached(ep, conv[k], t);
            free(t);
        }
    }
    print_message("alternating sessions: %u of %u prompt tokens computed (%.2fx)\n", computed,
                  baseline, (double)computed / baseline);
    assert_true(computed * 10 <= baseline * 3);
    sipp_client_free(c);
}

static void scopes_never_share_state(void **state) {
    (void)state;
    sipp_endpoint *ep;
    sipp_client *c = open_model(STORY_MODEL, 2, NULL, &ep);
    test_response r;
    free(ask(ep, "doc", "alice", BASE, &r));
    free(ask(ep, "doc", "bob", BASE, &r));
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    free(ask(ep, "doc", "alice", BASE, &r));
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_LIVE);
    sipp_client_free(c);
}

/* Lists the snapshot files of the cache directory into names (returns the count). */
/* The paths of the `.kv` files in `dir` (at most cap); returns how many. */
static int list_snapshots_in(const char *dir, char names[][512], int cap) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < cap) {
        size_t l = strlen(de->d_name);
        if (l > 3 && strcmp(de->d_name + l - 3, ".kv") == 0)
            snprintf(names[n++], 512, "%s/%s", dir, de->d_name);
    }
    closedir(d);
    return n;
}

static int list_snapshots(char names[][512], int cap) {
    return list_snapshots_in(tmpdir, names, cap);
}

static void disk_tier_survives_a_restart_and_rejects_bad_files(void **state) {
    (void)state;
    const char *follow = BASE " and the sun. Then she ran home";
    sipp_endpoint *ep;
    test_response r;
    /* process 1: leaves its warm sequence on disk when it closes */
    sipp_client *c = open_model(STORY_MODEL, 1, tmpdir, &ep);
    free(ask(ep, "doc", NULL, BASE " and the sun", &r));
    sipp_client_free(c);
    char files[8][512];
    assert_int_equal(list_snapshots(files, 8), 1);

    /* process 2: restores from disk */
    c = open_model(STORY_MODEL, 1, tmpdir, &ep);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    char *t = ask(ep, "doc", NULL, follow, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    assert_true(r.stats.cached_tokens > 10);
    expect_same_as_uncached(ep, follow, t);
    sipp_client_free(c);

    /* a corrupted byte in the state of every snapshot: rejected by the checksum, recomputed,
     * same answer */
    int n = list_snapshots(files, 8);
    assert_true(n >= 1);
    for (int i = 0; i < n; i++) {
        struct stat st;
        assert_int_equal(stat(files[i], &st), 0);
        FILE *f = fopen(files[i], "r+b");
        assert_non_null(f);
        fseek(f, st.st_size - 10, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, st.st_size - 10, SEEK_SET);
        fputc(ch ^ 0x5a, f);
        fclose(f);
    }
    c = open_model(STORY_MODEL, 1, tmpdir, &ep);
    char *t2 = ask(ep, "doc", NULL, follow, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    assert_string_equal(t, t2);
    free(t2);
    sipp_client_free(c); /* writes a fresh snapshot */

    /* a truncated file: ignored when indexed */
    n = list_snapshots(files, 8);
    assert_true(n >= 1);
    for (int i = 0; i < n; i++) assert_int_equal(truncate(files[i], 150), 0);
    c = open_model(STORY_MODEL, 1, tmpdir, &ep);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_disk_bytes, 0);
    t2 = ask(ep, "doc", NULL, follow, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    assert_string_equal(t, t2);
    free(t2);
    sipp_client_free(c);

    /* a snapshot of another model: never restored */
    c = open_model(CHAT_MODEL, 1, tmpdir, &ep);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_disk_bytes, 0); /* the story model's files are foreign here */
    free(ask(ep, "doc", NULL, follow, &r));
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    sipp_client_free(c);
    free(t);
}

/* Copies `from` to `to` with `pad` zero bytes appended (llama.cpp ignores bytes after the
 * tensor data); when `poke` is non-zero, the byte at that offset becomes 0x5a. */
static void write_padded_copy(const char *from, const char *to, size_t pad, long poke) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) assert_int_equal(fwrite(buf, 1, n, out), n);
    memset(buf, 0, sizeof buf);
    for (size_t left = pad; left > 0; left -= n) {
        n = left < sizeof buf ? left : sizeof buf;
        assert_int_equal(fwrite(buf, 1, n, out), n);
    }
    if (poke) {
        assert_int_equal(fseek(out, poke, SEEK_SET), 0);
        fputc(0x5a, out);
    }
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* Disk snapshots belong to the exact bytes of a model file: a copy that differs in one byte
 * 8 MiB + 64 KiB into the file, where no sampled hash looks, restores nothing the original
 * wrote, while the original restores its own; the fingerprint is memoised per file. */
static void disk_snapshots_need_the_same_model_bytes(void **state) {
    (void)state;
    char a[300], b[300], cache[300];
    snprintf(a, sizeof a, "%s/fp-a.gguf", tmpdir);
    snprintf(b, sizeof b, "%s/fp-b.gguf", tmpdir);
    snprintf(cache, sizeof cache, "%s/fp-cache", tmpdir);
    write_padded_copy(STORY_MODEL, a, 16u << 20, 0);
    write_padded_copy(STORY_MODEL, b, 16u << 20, (8L << 20) + (64L << 10) + 7);
    const char *follow = BASE " and the sun. Then she ran home";
    sipp_endpoint *ep;
    test_response r;
    sipp_client *c = open_model(a, 1, cache, &ep);
    char *t = ask(ep, "doc", NULL, BASE " and the sun", &r);
    free(t);
    sipp_client_free(c); /* the warm sequence goes to disk */

    c = open_model(b, 1, cache, &ep);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_disk_bytes, 0); /* a's snapshot is foreign to b */
    t = ask(ep, "doc", NULL, follow, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    free(t);
    sipp_client_free(c);

    c = open_model(a, 1, cache, &ep);
    t = ask(ep, "doc", NULL, follow, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    expect_same_as_uncached(ep, follow, t);
    free(t);
    sipp_client_free(c);

    int memos = 0;
    DIR *d = opendir(cache);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) memos += strncmp(de->d_name, "fp-", 3) == 0;
    closedir(d);
    assert_int_equal(memos, 2); /* one per model file, reused by the second open of a */
}

/* The disk tier keeps to cache_disk_bytes, dropping the least recently used snapshots. */
static void disk_tier_keeps_to_its_budget(void **state) {
    (void)state;
    char cache[300];
    snprintf(cache, sizeof cache, "%s/budget", tmpdir);
    char prompt[6][200];
    for (int i = 0; i < 6; i++) snprintf(prompt[i], sizeof prompt[i], BASE " and toy %d", i);
    char key[6][8];
    for (int i = 0; i < 6; i++) snprintf(key[i], sizeof key[i], "k%d", i);

    /* the size of one snapshot file of these prompts */
    sipp_endpoint *ep;
    test_response r;
    sipp_client *c = open_model(STORY_MODEL, 1, cache, &ep);
    free(ask(ep, key[0], NULL, prompt[0], &r));
    sipp_client_free(c);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    c = open_model(STORY_MODEL, 1, cache, &ep);
    sipp_endpoint_get_stats(ep, &es, NULL);
    sipp_client_free(c);
    uint64_t one = es.cache_disk_bytes;
    assert_true(one > 0);

    /* one snapshot fits in RAM, two and a half on disk; one sequence, so each new key sends
     * the previous one's state to RAM, and the one before that to disk */
    sipp_local_params lp = model_params(STORY_MODEL, 1, cache);
    lp.cache_ram_bytes = one;
    lp.cache_disk_bytes = one * 5 / 2;
    c = open_params(&lp, &ep);
    for (int i = 1; i < 6; i++) {
        free(ask(ep, key[i], NULL, prompt[i], &r));
        sipp_endpoint_get_stats(ep, &es, NULL);
        assert_true(es.cache_disk_bytes <= lp.cache_disk_bytes);
    }
    assert_true(es.cache_disk_bytes >= one); /* the tier is in use, not just empty */
    /* k3 (recent, on disk) restores; k0 and k1 (the oldest) were dropped */
    free(ask(ep, key[3], NULL, prompt[3], &r));
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    free(ask(ep, key[0], NULL, prompt[0], &r));
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    sipp_client_free(c);

    uint64_t on_disk = 0;
    DIR *d = opendir(cache);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 3 && strcmp(de->d_name + l - 3, ".kv") == 0) {
            char path[600];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", cache, de->d_name);
            assert_int_equal(stat(path, &st), 0);
            on_disk += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    assert_true(on_disk <= lp.cache_disk_bytes); /* also after shutdown wrote what was warm */
}

/* A snapshot made under another context size is never restored (the KV layout differs). */
static void snapshots_of_another_context_size_are_ignored(void **state) {
    (void)state;
    char cache[300];
    snprintf(cache, sizeof cache, "%s/nctx", tmpdir);
    sipp_local_params lp = model_params(STORY_MODEL, 1, cache);
    lp.n_ctx = 512;
    sipp_endpoint *ep;
    test_response r;
    sipp_client *c = open_params(&lp, &ep);
    free(ask(ep, "doc", NULL, BASE " and the sun", &r));
    sipp_client_free(c);

    lp.n_ctx = 256;
    c = open_params(&lp, &ep);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_disk_bytes, 0);
    char *t = ask(ep, "doc", NULL, BASE " and the sun. Then", &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    free(t);
    sipp_client_free(c);

    lp.n_ctx = 512; /* the original settings still restore it */
    c = open_params(&lp, &ep);
    t = ask(ep, "doc", NULL, BASE " and the sun. Then", &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    free(t);
    sipp_client_free(c);
}

static void concurrent_requests_on_one_key_both_complete(void **state) {
    (void)state;
    sipp_endpoint *ep;
    sipp_client *c = open_model(STORY_MODEL, 2, NULL, &ep);
    test_response r;
    free(ask(ep, "shared", NULL, BASE, &r)); /* the key is warm */
    const char *prompts[2] = {BASE " and a dog", BASE " and a cat"};
    sipp_run *runs[2];
    sipp_text_params p = greedy(24);
    p.context_key = "shared";
    for (int i = 0; i < 2; i++) assert_int_equal(sipp_query(ep, prompts[i], &p, &runs[i], NULL), SIPP_OK);
    int live = 0, none = 0;
    for (int i = 0; i < 2; i++) {
        const sipp_response *rr = NULL;
        sipp_run_wait(runs[i], &rr, NULL);
        assert_int_equal(rr->status, SIPP_OK);
        live += rr->stats->cache_source == SIPP_CACHE_LIVE;
        none += rr->stats->cache_source == SIPP_CACHE_NONE;
        sipp_text_params g = greedy(24);
        char *fresh = query_text(ep, prompts[i], &g, NULL);
        assert_string_equal(rr->text, fresh); /* both answer as uncached runs */
        free(fresh);
        sipp_run_free(runs[i]);
    }
    /* the first took the warm sequence; the second did not wait: it copied the prefix the
     * first shares with it into another sequence */
    assert_int_equal(live, 2);
    assert_int_equal(none, 0);
    sipp_client_free(c);
}

/* n_resident above n_parallel: three conversations over one decode slot all stay warm in
 * memory (no eviction, every follow-up a live hit), while only one request runs at a time. */
static void resident_sequences_beyond_the_decode_slots_stay_warm(void **state) {
    (void)state;
    sipp_local_params lp = model_params(STORY_MODEL, 1, NULL);
    lp.n_resident = 3;
    sipp_endpoint *ep;
    sipp_client *c = open_params(&lp, &ep);
    sipp_endpoint_info info;
    sipp_endpoint_info_init(&info, sizeof info);
    assert_int_equal(sipp_endpoint_get_info(ep, &info, NULL), SIPP_OK);
    assert_int_equal(info.n_parallel, 1);
    const char *prompts[] = {BASE " with a ball", BASE " with a dog", BASE " with a cat"};
    const char *keys[] = {"A", "B", "C"};
    test_response r;
    for (int i = 0; i < 3; i++) free(ask(ep, keys[i], NULL, prompts[i], &r));
    for (int i = 0; i < 3; i++) {
        char follow[256];
        snprintf(follow, sizeof follow, "%s and then they went home", prompts[i]);
        char *t = ask(ep, keys[i], NULL, follow, &r);
        assert_int_equal(r.stats.cache_source, SIPP_CACHE_LIVE);
        free(t);
    }
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_evictions, 0);
    assert_int_equal(es.cache_hits, 3);
    sipp_client_free(c);

    lp.n_resident = 65; /* past the limit: a clear error */
    sipp_client *c2 = NULL;
    assert_int_equal(sipp_client_new(NULL, &c2, NULL), SIPP_OK);
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_client_add_local(c2, "m", &lp, NULL, &err), SIPP_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "n_resident"));
    sipp_client_free(c2);
}

/* A second request on a key whose first request is still running copies the shared prefix
 * from the first's sequence: it prefills only its own suffix (counted by the engine), and
 * answers as an uncached run would at temperature 0. */
static void second_request_on_a_running_key_copies_the_prefix(void **state) {
    (void)state;
    sipp_local_params lp = model_params(STORY_MODEL, 2, NULL);
    lp.stream_buffer_bytes = 1; /* the unread first request pauses: it stays running */
    sipp_endpoint *ep;
    sipp_client *c = open_params(&lp, &ep);
    const char *first = BASE " and the sun was warm on the grass";
    const char *second = BASE " and the sun was warm on the grass. Then she went home";
    sipp_text_params p = greedy(64);
    p.context_key = "doc";
    p.ignore_eos = true;
    sipp_run *run1 = NULL;
    assert_int_equal(sipp_query(ep, first, &p, &run1, NULL), SIPP_OK);
    sipp_token_batch b;
    sipp_token_batch_init(&b, sizeof b);
    assert_int_equal(sipp_run_next(run1, -1, &b, NULL), SIPP_OK); /* it is decoding */
    assert_false(b.done);

    sipp_engine_stats before, after;
    sipp_engine_stats_init(&before, sizeof before);
    sipp_engine_stats_init(&after, sizeof after);
    /* the tick that delivered the first's token publishes its prompt tokens just after: wait
     * for them, or they would count as the second's */
    for (;;) {
        sipp_endpoint_get_stats(ep, &before, NULL);
        if (before.prompt_tokens > 0) break;
        nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
    }
    test_response r2;
    char *t2 = ask(ep, "doc", NULL, second, &r2);
    sipp_endpoint_get_stats(ep, &after, NULL);
    assert_int_equal(r2.stats.cache_source, SIPP_CACHE_LIVE);
    assert_true(r2.stats.cached_tokens > r2.usage.input_tokens / 2);
    assert_int_equal(r2.stats.cached_tokens + r2.stats.prefill_tokens, r2.usage.input_tokens);
    /* the engine computed the suffix only (the first is paused: it adds no prompt tokens) */
    assert_int_equal(after.prompt_tokens - before.prompt_tokens, r2.stats.prefill_tokens);
    assert_true(r2.stats.prefill_tokens < r2.usage.input_tokens / 2);

    sipp_run_cancel(run1);
    const sipp_response *rr = NULL;
    sipp_run_wait(run1, &rr, NULL);
    sipp_run_free(run1);
    expect_same_as_uncached(ep, second, t2);
    free(t2);
    sipp_client_free(c);
}

/* The embedding of `text` on ep, copied out (n_embd floats in *n). */
static float *embed_vec(sipp_run *run, uint32_t *n) {
    const sipp_response *r = NULL;
    assert_int_equal(sipp_run_wait(run, &r, NULL), SIPP_OK);
    assert_int_equal(r->status, SIPP_OK);
    assert_non_null(r->embedding);
    *n = r->n_embd;
    float *v = malloc(r->n_embd * sizeof *v);
    assert_non_null(v);
    memcpy(v, r->embedding, r->n_embd * sizeof *v);
    sipp_run_free(run);
    return v;
}

/* Starts a greedy, unread (so paused: stream_buffer_bytes 1) request and waits for its first
 * token: it is then running, decoding. */
static sipp_run *start_paused(sipp_endpoint *ep, const char *key, const char *prompt) {
    sipp_text_params p = greedy(64);
    p.context_key = key;
    p.ignore_eos = true;
    sipp_run *run = NULL;
    assert_int_equal(sipp_query(ep, prompt, &p, &run, NULL), SIPP_OK);
    sipp_token_batch b;
    sipp_token_batch_init(&b, sizeof b);
    assert_int_equal(sipp_run_next(run, -1, &b, NULL), SIPP_OK);
    assert_false(b.done);
    return run;
}

static void cancel_and_free(sipp_run *run) {
    sipp_run_cancel(run);
    const sipp_response *r = NULL;
    sipp_run_wait(run, &r, NULL);
    sipp_run_free(run);
}

/* An embedding admitted in the same round as a request that copied a running key's prefix
 * (the soak's crash): llama.cpp applies that copy at the next decode, here the embedding's,
 * and re-reserving its graph with embeddings on aborted the process (n_seq_max 3 does not
 * divide n_ubatch 512). Both are answered, the embedding as it is alone, the request as
 * uncached. Both slots busy hold the two in the queue until one ends, so they start together. */
static void embedding_beside_a_pending_prefix_copy(void **state) {
    (void)state;
    sipp_local_params lp = model_params(STORY_MODEL, 2, NULL);
    lp.stream_buffer_bytes = 1;
    sipp_endpoint *ep;
    sipp_client *c = open_params(&lp, &ep);
    const char *first = BASE " and the sun was warm on the grass";
    const char *second = BASE " and the sun was warm on the grass. Then she went home";
    const char *text = "a red ball in the garden";
    uint32_t n_alone = 0, n = 0;
    sipp_run *run = NULL;
    assert_int_equal(sipp_embed(ep, text, NULL, &run, NULL), SIPP_OK);
    float *alone = embed_vec(run, &n_alone);

    sipp_run *a = start_paused(ep, "doc", first);
    sipp_run *other = start_paused(ep, NULL, "The dog ran to the park"); /* both slots busy */
    sipp_text_params p = greedy(8);
    p.context_key = "doc";
    sipp_run *b = NULL, *emb = NULL;
    assert_int_equal(sipp_query(ep, second, &p, &b, NULL), SIPP_OK);
    assert_int_equal(sipp_embed(ep, text, NULL, &emb, NULL), SIPP_OK);
    cancel_and_free(other); /* frees a slot: the next round starts b (copying), then emb */

    float *v = embed_vec(emb, &n);
    assert_int_equal(n, n_alone);
    for (uint32_t i = 0; i < n; i++) assert_true(fabsf(v[i] - alone[i]) < 1e-4f);
    const sipp_response *r = NULL;
    assert_int_equal(sipp_run_wait(b, &r, NULL), SIPP_OK);
    assert_int_equal(r->status, SIPP_OK);
    assert_int_equal(r->stats->cache_source, SIPP_CACHE_LIVE);
    char *t2 = strdup(r->text);
    sipp_run_free(b);
    cancel_and_free(a);
    expect_same_as_uncached(ep, second, t2);
    free(t2);
    free(v);
    free(alone);
    sipp_client_free(c);
}

static void context_shift_keeps_generating(void **state) {
    (void)state;
    /* the chat model's context holds 256 tokens per sequence */
    for (int shift = 0; shift < 3; shift++) {
        sipp_client *c = NULL;
        assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
        sipp_local_params lp;
        sipp_local_params_init(&lp, sizeof lp);
        lp.model_path = CHAT_MODEL;
        lp.n_parallel = 1;
        lp.context_shift = shift;
        lp.n_keep = shift == 2 ? UINT32_MAX : 4; /* C1: past the context: capped at half */
        sipp_endpoint *ep = NULL;
        assert_int_equal(sipp_client_add_local(c, "m", &lp, &ep, NULL), SIPP_OK);
        sipp_text_params p = greedy(400);
        p.ignore_eos = true;
        test_response r;
        free(query_text(ep, "User: tell me a long story\nBot:", &p, &r));
        assert_int_equal(r.finish_reason, SIPP_FINISH_LENGTH);
        if (shift)
            assert_int_equal(r.usage.output_tokens, 400);
        else
            assert_true(r.usage.output_tokens < 256);
        sipp_client_free(c);
    }
}

/* D3: hostile keys and scopes never become paths: every snapshot of the disk tier is
 * "<64 hex>.kv" inside the cache directory (beside the model's fingerprint memo "fp-<32 hex>"),
 * nothing appears next to it, and a hostile key's
 * snapshot restores like any other. */
static void hostile_keys_stay_inside_the_cache_dir(void **state) {
    (void)state;
    char parent[300], cache[320];
    snprintf(parent, sizeof parent, "%s/d3", tmpdir);
    assert_int_equal(mkdir(parent, 0700), 0);
    snprintf(cache, sizeof cache, "%s/cache", parent);
    static char long_key[70000];
    memset(long_key, 'k', sizeof long_key - 1);
    const char *hostile[] = {"../../escape", "/tmp/absolute", "a/../../b\\..\\c", long_key,
                             "..", "%2e%2e%2f", "\xff\xfe/\n"};
    enum { N = sizeof hostile / sizeof *hostile };
    char prompts[N][200];
    sipp_endpoint *ep;
    sipp_client *c = open_model(STORY_MODEL, 1, cache, &ep);
    test_response r;
    for (int i = 0; i < N; i++) {
        snprintf(prompts[i], sizeof prompts[i], BASE " and toy %d", i);
        free(ask(ep, hostile[i], hostile[(i + 1) % N], prompts[i], &r));
    }
    sipp_client_free(c); /* every key's state goes to disk */
    DIR *d = opendir(parent);
    assert_non_null(d);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            entries++;
            assert_string_equal(de->d_name, "cache");
        }
    closedir(d);
    assert_int_equal(entries, 1);
    d = opendir(cache);
    assert_non_null(d);
    int files = 0, memos = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (strncmp(de->d_name, "fp-", 3) == 0) { /* the model's fingerprint memo */
            memos++;
            assert_int_equal(strlen(de->d_name), 3 + 32);
            continue;
        }
        files++;
        assert_int_equal(strlen(de->d_name), 67);
        assert_int_equal(strspn(de->d_name, "0123456789abcdef"), 64);
        assert_string_equal(de->d_name + 64, ".kv");
    }
    closedir(d);
    assert_int_equal(files, N);
    assert_int_equal(memos, 1);
    assert_int_equal(access("/tmp/absolute", F_OK), -1);
    c = open_model(STORY_MODEL, 1, cache, &ep);
    char follow[300];
    snprintf(follow, sizeof follow, "%s. Then", prompts[0]);
    char *t = ask(ep, hostile[0], hostile[1], follow, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    expect_same_as_uncached(ep, follow, t);
    free(t);
    sipp_client_free(c);
}

/* Expects opening STORY_MODEL with `cache` as the snapshot directory to fail with SIPP_IO_ERROR and
 * a message containing `needle`, leaving nothing in the directory. */
static void expect_cache_dir_refused(const char *cache, const char *needle) {
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_local_params lp = model_params(STORY_MODEL, 1, cache);
    sipp_endpoint *ep = (sipp_endpoint *)0x1;
    sipp_error err;
    sipp_error_init(&err, sizeof err);
    assert_int_equal(sipp_client_add_local(c, "m", &lp, &ep, &err), SIPP_IO_ERROR);
    assert_null(ep);
    if (!strstr(err.message, needle)) fail_msg("message '%s' lacks '%s'", err.message, needle);
    sipp_client_free(c);
    DIR *d = opendir(cache);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') fail_msg("'%s' was written to a refused directory", de->d_name);
    closedir(d);
}

/* A snapshot directory that another user owns or that its group or others may write to is
 * refused (SIPP_IO_ERROR naming the directory and the problem) before anything is written there:
 * another user could plant a snapshot, which would be restored into a sequence as it is, or a
 * symlink. Modes 0755 and 0700 of one's own are fine. */
static void unsafe_cache_dirs_are_refused(void **state) {
    (void)state;
    char cache[300];
    snprintf(cache, sizeof cache, "%s/shared", tmpdir);
    assert_int_equal(mkdir(cache, 0700), 0);
    assert_int_equal(chmod(cache, 0777), 0);
    expect_cache_dir_refused(cache, "is writable by others (mode 0777)");
    assert_int_equal(chmod(cache, 01777), 0); /* sticky, as /tmp: others still create names */
    expect_cache_dir_refused(cache, "is writable by others (mode 1777)");
    assert_int_equal(chmod(cache, 0770), 0);
    expect_cache_dir_refused(cache, "is writable by its group (mode 0770)");
    if (geteuid() == 0) { /* only root can give a directory away */
        assert_int_equal(chmod(cache, 0700), 0);
        assert_int_equal(chown(cache, 65534, 65534), 0);
        expect_cache_dir_refused(cache, "is owned by uid 65534, not by this process's uid 0");
        assert_int_equal(chown(cache, 0, 0), 0);
    }
    assert_int_equal(chmod(cache, 0755), 0);
    sipp_endpoint *ep;
    sipp_client *c = open_model(STORY_MODEL, 1, cache, &ep);
    sipp_client_free(c);
    /* a file where the directory should be */
    char file[320];
    snprintf(file, sizeof file, "%s/not-a-dir", tmpdir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    sipp_client *c2 = NULL;
    assert_int_equal(sipp_client_new(NULL, &c2, NULL), SIPP_OK);
    sipp_local_params lp = model_params(STORY_MODEL, 1, file);
    assert_int_equal(sipp_client_add_local(c2, "m", &lp, NULL, NULL), SIPP_IO_ERROR);
    sipp_client_free(c2);
}

/* Reads a whole small file into buf (NUL-terminated). */
static void read_small(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Symlinks planted in the snapshot directory are never followed: one at a snapshot's name is
 * not indexed or restored (the state it points to lies outside the directory), and one at the
 * temporary name a snapshot is written under is not written through (its target keeps its
 * bytes; the snapshot is written as a file of its own). */
static void planted_symlinks_are_not_followed(void **state) {
    (void)state;
    char cache[300], outside[300], victim[300];
    snprintf(cache, sizeof cache, "%s/links", tmpdir);
    snprintf(outside, sizeof outside, "%s/outside.kv.bak", tmpdir);
    snprintf(victim, sizeof victim, "%s/victim", tmpdir);
    const char *prompt = BASE " and the sun", *follow = BASE " and the sun. Then she ran home";
    sipp_endpoint *ep;
    test_response r;
    sipp_client *c = open_model(STORY_MODEL, 1, cache, &ep);
    free(ask(ep, "doc", NULL, prompt, &r));
    sipp_client_free(c); /* the warm sequence goes to disk */
    char files[4][512];
    assert_int_equal(list_snapshots_in(cache, files, 4), 1);
    char snap[512];
    snprintf(snap, sizeof snap, "%s", files[0]);

    /* the snapshot moved out and a symlink to it left at its name */
    assert_int_equal(rename(snap, outside), 0);
    assert_int_equal(symlink(outside, snap), 0);
    c = open_model(STORY_MODEL, 1, cache, &ep);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_disk_bytes, 0);
    char *t = ask(ep, "doc", NULL, follow, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    free(t);
    sipp_client_free(c);

    /* a symlink at the temporary name of the snapshot this process writes next */
    int n = list_snapshots_in(cache, files, 4);
    for (int i = 0; i < n; i++) assert_int_equal(unlink(files[i]), 0);
    FILE *f = fopen(victim, "w");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", snap, (int)getpid());
    assert_int_equal(symlink(victim, tmp), 0);
    c = open_model(STORY_MODEL, 1, cache, &ep);
    free(ask(ep, "doc", NULL, prompt, &r));
    sipp_client_free(c); /* writes `snap` again, through its temporary name */
    char got[64];
    read_small(victim, got, sizeof got);
    assert_string_equal(got, "precious");
    struct stat st;
    assert_int_equal(lstat(snap, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(lstat(tmp, &st), -1);
    /* and the snapshot written past the link restores */
    c = open_model(STORY_MODEL, 1, cache, &ep);
    t = ask(ep, "doc", NULL, follow, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    expect_same_as_uncached(ep, follow, t);
    free(t);
    sipp_client_free(c);
}

/* Writes STORY_MODEL as a split model of two parts, as llama-gguf-split does: every key-value
 * and the first half of the tensors in `<prefix>-00001-of-00002.gguf`, the rest in part 2, the
 * split.* keys in both. The first part's path goes to `first`. */
static void write_split_story(const char *prefix, char *first, size_t cap) {
    struct ggml_context *meta = NULL;
    struct gguf_init_params ip = {.no_alloc = false, .ctx = &meta};
    struct gguf_context *src = gguf_init_from_file(STORY_MODEL, ip);
    assert_non_null(src);
    int64_t n = gguf_get_n_tensors(src);
    for (int part = 0; part < 2; part++) {
        struct gguf_context *g = gguf_init_empty();
        if (part == 0) gguf_set_kv(g, src);
        gguf_set_val_u16(g, "split.no", (uint16_t)part);
        gguf_set_val_u16(g, "split.count", 2);
        gguf_set_val_i32(g, "split.tensors.count", (int32_t)n);
        for (int64_t i = part ? n / 2 : 0; i < (part ? n : n / 2); i++)
            gguf_add_tensor(g, ggml_get_tensor(meta, gguf_get_tensor_name(src, i)));
        char path[400];
        snprintf(path, sizeof path, "%s-%05d-of-00002.gguf", prefix, part + 1);
        assert_true(gguf_write_to_file(g, path, false));
        gguf_free(g);
        if (part == 0) snprintf(first, cap, "%s", path);
    }
    gguf_free(src);
    ggml_free(meta);
}

/* A split model loads and answers as the whole file does, and its disk snapshots belong to
 * the bytes of every part: after a byte of part 2's tensor data changes, nothing the split
 * model wrote is restored (the fingerprint of a split model covers all its parts). */
static void split_model_snapshots_cover_every_part(void **state) {
    (void)state;
    char prefix[300], first[400], cache[300];
    snprintf(prefix, sizeof prefix, "%s/split-story", tmpdir);
    snprintf(cache, sizeof cache, "%s/split-cache", tmpdir);
    write_split_story(prefix, first, sizeof first);
    const char *follow = BASE " and the sun. Then she ran home";
    sipp_endpoint *ep;
    test_response r;
    sipp_client *c = open_model(STORY_MODEL, 1, NULL, &ep);
    char *whole = ask(ep, NULL, NULL, follow, &r);
    sipp_client_free(c);
    c = open_model(first, 1, cache, &ep);
    char *t = ask(ep, "doc", NULL, BASE " and the sun", &r);
    free(t);
    t = ask(ep, NULL, NULL, follow, &r);
    assert_string_equal(t, whole);
    free(t);
    sipp_client_free(c); /* the warm sequence goes to disk */

    /* the same parts restore their snapshot */
    c = open_model(first, 1, cache, &ep);
    t = ask(ep, "doc", NULL, follow, &r);
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_SNAPSHOT);
    assert_string_equal(t, whole);
    free(t);
    sipp_client_free(c);

    /* part 2 changes in its last byte (tensor data); part 1 is the same file */
    char second[400];
    snprintf(second, sizeof second, "%s-00002-of-00002.gguf", prefix);
    FILE *f = fopen(second, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, -1, SEEK_END), 0);
    int ch = fgetc(f);
    assert_int_equal(fseek(f, -1, SEEK_END), 0);
    fputc(ch ^ 0x01, f);
    assert_int_equal(fclose(f), 0);
    c = open_model(first, 1, cache, &ep);
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_int_equal(es.cache_disk_bytes, 0);
    free(ask(ep, "doc", NULL, follow, &r));
    assert_int_equal(r.stats.cache_source, SIPP_CACHE_NONE);
    sipp_client_free(c);
    free(whole);
}

/* D6: eviction under a RAM budget that holds about one snapshot while requests on two threads
 * keep restoring and evicting (run under ASan): every answer equals the uncached one. */
typedef struct churn {
    sipp_endpoint *ep;
    const char *const *want;
    int id, bad;
} churn;

static const char *const churn_prompts[4] = {BASE " with a ball", BASE " with a dog",
                                             BASE " with a cat", BASE " with a bird"};

static void *churn_main(void *arg) {
    churn *w = arg;
    for (int i = 0; i < 12; i++) {
        int k = (i * 3 + w->id) % 4;
        char key[8];
        snprintf(key, sizeof key, "k%d", k);
        sipp_text_params p = greedy(8);
        p.context_key = key;
        sipp_run *run = NULL;
        if (sipp_query(w->ep, churn_prompts[k], &p, &run, NULL) != SIPP_OK) {
            w->bad++;
            continue;
        }
        const sipp_response *r = NULL;
        sipp_run_wait(run, &r, NULL);
        if (r->status != SIPP_OK || strcmp(r->text, w->want[k]) != 0) w->bad++;
        sipp_run_free(run);
    }
    return NULL;
}

static void eviction_while_requests_restore(void **state) {
    (void)state;
    sipp_client *c = NULL;
    assert_int_equal(sipp_client_new(NULL, &c, NULL), SIPP_OK);
    sipp_local_params lp;
    sipp_local_params_init(&lp, sizeof lp);
    lp.model_path = STORY_MODEL;
    lp.n_threads = 2;
    lp.n_parallel = 2;
    sipp_endpoint *ep = NULL;
    assert_int_equal(sipp_client_add_local(c, "m", &lp, &ep, NULL), SIPP_OK);
    char *want[4];
    for (int k = 0; k < 4; k++) {
        sipp_text_params g = greedy(8);
        want[k] = query_text(ep, churn_prompts[k], &g, NULL);
    }
    /* learn one snapshot's size, then reopen with a budget of about one and a half */
    test_response r;
    for (int k = 0; k < 3; k++) {
        const char *key[3] = {"a", "b", "c"};
        free(ask(ep, key[k], NULL, churn_prompts[k], &r));
    }
    sipp_engine_stats es;
    sipp_engine_stats_init(&es, sizeof es);
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_true(es.cache_ram_bytes > 0);
    lp.cache_ram_bytes = es.cache_ram_bytes * 3 / 2;
    assert_int_equal(sipp_client_add_local(c, "m", &lp, &ep, NULL), SIPP_OK);
    pthread_t th[2];
    churn w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (churn){ep, (const char *const *)want, i, 0};
        pthread_create(&th[i], NULL, churn_main, &w[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].bad, 0);
    }
    sipp_endpoint_get_stats(ep, &es, NULL);
    assert_true(es.cache_evictions > 4);
    assert_true(es.cache_ram_bytes <= lp.cache_ram_bytes);
    for (int k = 0; k < 4; k++) free(want[k]);
    sipp_client_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(warm_follow_up_computes_only_the_new_tokens),
        cmocka_unit_test(lru_eviction_and_snapshot_restore),
        cmocka_unit_test(alternating_sessions_keep_their_prefixes),
        cmocka_unit_test(scopes_never_share_state),
        cmocka_unit_test(disk_tier_survives_a_restart_and_rejects_bad_files),
        cmocka_unit_test(disk_snapshots_need_the_same_model_bytes),
        cmocka_unit_test(disk_tier_keeps_to_its_budget),
        cmocka_unit_test(snapshots_of_another_context_size_are_ignored),
        cmocka_unit_test(concurrent_requests_on_one_key_both_complete),
        cmocka_unit_test(second_request_on_a_running_key_copies_the_prefix),
        cmocka_unit_test(resident_sequences_beyond_the_decode_slots_stay_warm),
        cmocka_unit_test(embedding_beside_a_pending_prefix_copy),
        cmocka_unit_test(context_shift_keeps_generating),
        cmocka_unit_test(hostile_keys_stay_inside_the_cache_dir),
        cmocka_unit_test(unsafe_cache_dirs_are_refused),
        cmocka_unit_test(planted_symlinks_are_not_followed),
        cmocka_unit_test(split_model_snapshots_cover_every_part),
        cmocka_unit_test(eviction_while_requests_restore),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
