/*
 * test_hub.c — the pure half of the hub client (src/hub/hub_parse.c): model references, quant
 * matching as llama.cpp's -hf does it, split names, the choice of files in a repo listing
 * (default, quant, file, split sets, mmproj), the hub's JSON answers and manifests; and, in a
 * temporary store, which projector a pulled model's path takes (sipp__hub_mmproj_for).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hub/hub_int.h"

static void test_refs(void **state) {
    (void)state;
    sipp__hub_ref r;
    char name[1024];
    assert_int_equal(sipp__hub_ref_parse("bartowski/Llama-3.2-1B-Instruct-GGUF", &r, NULL), SIPP_OK);
    assert_int_equal(r.kind, SIPP__HUB_DEFAULT);
    assert_string_equal(r.owner, "bartowski");
    assert_string_equal(r.repo, "Llama-3.2-1B-Instruct-GGUF");
    assert_int_equal(sipp__hub_ref_parse("a/b:q4_k_m", &r, NULL), SIPP_OK);
    assert_int_equal(r.kind, SIPP__HUB_QUANT);
    assert_string_equal(r.tag, "Q4_K_M");
    sipp__hub_ref_name(&r, name, sizeof name);
    assert_string_equal(name, "a/b:Q4_K_M");
    assert_int_equal(sipp__hub_ref_parse("hf.co/a/b:latest", &r, NULL), SIPP_OK);
    assert_int_equal(r.kind, SIPP__HUB_DEFAULT);
    assert_int_equal(sipp__hub_ref_parse("https://huggingface.co/a/b/dir/x-Q8_0.gguf", &r, NULL), SIPP_OK);
    assert_int_equal(r.kind, SIPP__HUB_FILE);
    assert_string_equal(r.tag, "dir/x-Q8_0.gguf");
    const char *bad[] = {"", "stories260K", "./x/y", "/abs/path.gguf", "~/m/x.gguf", "a/../b",
                         "a/b/../x.gguf", "a/b/c.bin", "a/b:", "a/b:Q4/x", "a/b/x.gguf:Q4",
                         "models/x.gguf", "-a/b", "a/b//x.gguf", "a/b/x y.gguf", "a b/c",
                         "a/b:x.gguf", "huggingface.co/hf.co/x", "hf.co/hf.co/x", NULL};
    for (int i = 0; bad[i]; i++) {
        sipp_error err;
        sipp_error_init(&err, sizeof err);
        if (sipp__hub_ref_parse(bad[i], &r, &err) == SIPP_OK) fail_msg("accepted '%s'", bad[i]);
        assert_true(err.message[0] != '\0');
    }
}

static void test_quant_match_and_splits(void **state) {
    (void)state;
    assert_true(sipp__hub_quant_match("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"));
    assert_true(sipp__hub_quant_match("model.q4_k_m.gguf", "Q4_K_M"));
    assert_true(sipp__hub_quant_match("Q4_K_M/big-Q4_K_M-00001-of-00002.gguf", "Q4_K_M"));
    assert_false(sipp__hub_quant_match("model-Q4_K_M.gguf", "Q4_K"));   /* not a prefix of a tag */
    assert_false(sipp__hub_quant_match("model-IQ4_XS.gguf", "Q4_XS"));  /* not inside another */
    assert_false(sipp__hub_quant_match("model-Q4_0_extra", "Q4_0"));
    size_t pl;
    unsigned idx, count;
    assert_true(sipp__hub_split_info("d/m-Q2_K-00002-of-00003.gguf", &pl, &idx, &count));
    assert_int_equal(pl, strlen("d/m-Q2_K"));
    assert_int_equal(idx, 2);
    assert_int_equal(count, 3);
    assert_false(sipp__hub_split_info("m-00004-of-00003.gguf", NULL, NULL, NULL));
    assert_false(sipp__hub_split_info("m-00000-of-00003.gguf", NULL, NULL, NULL));
    assert_false(sipp__hub_split_info("m-0001-of-00003.gguf", NULL, NULL, NULL));
    assert_false(sipp__hub_split_info("m.gguf", NULL, NULL, NULL));
}

static const char TREE[] =
    "[{\"type\":\"file\",\"oid\":\"x\",\"size\":10,\"path\":\".gitattributes\"},"
    "{\"type\":\"directory\",\"oid\":\"y\",\"size\":0,\"path\":\"Q2_K\"},"
    "{\"type\":\"file\",\"path\":\"Q2_K/m-Q2_K-00001-of-00002.gguf\",\"size\":5,"
    " \"lfs\":{\"oid\":\"" "1111111111111111111111111111111111111111111111111111111111111111" "\",\"size\":5}},"
    "{\"type\":\"file\",\"path\":\"Q2_K/m-Q2_K-00002-of-00002.gguf\",\"size\":6,"
    " \"lfs\":{\"oid\":\"" "2222222222222222222222222222222222222222222222222222222222222222" "\",\"size\":6}},"
    "{\"type\":\"file\",\"path\":\"m-IQ4_XS.gguf\",\"size\":7,"
    " \"lfs\":{\"oid\":\"" "3333333333333333333333333333333333333333333333333333333333333333" "\",\"size\":7}},"
    "{\"type\":\"file\",\"path\":\"m-Q8_0.gguf\",\"size\":8,"
    " \"lfs\":{\"oid\":\"" "4444444444444444444444444444444444444444444444444444444444444444" "\",\"size\":8}},"
    "{\"type\":\"file\",\"path\":\"imatrix-Q4_K_M.gguf\",\"size\":8,"
    " \"lfs\":{\"oid\":\"" "5555555555555555555555555555555555555555555555555555555555555555" "\",\"size\":8}},"
    "{\"type\":\"file\",\"path\":\"mmproj-m-F16.gguf\",\"size\":9,"
    " \"lfs\":{\"oid\":\"" "6666666666666666666666666666666666666666666666666666666666666666" "\",\"size\":9}},"
    "{\"type\":\"file\",\"path\":\"mmproj-m-Q8_0.gguf\",\"size\":9,"
    " \"lfs\":{\"oid\":\"" "7777777777777777777777777777777777777777777777777777777777777777" "\",\"size\":9}},"
    "{\"type\":\"file\",\"path\":\"../escape.gguf\",\"size\":1},"
    "{\"type\":\"file\",\"path\":\"no-lfs.gguf\",\"size\":3,\"lfs\":{\"oid\":\"short\",\"size\":3}}]";

static void test_plan(void **state) {
    (void)state;
    sipp__hub_files files = {0};
    assert_int_equal(sipp__hub_files_parse(TREE, strlen(TREE), &files, NULL), SIPP_OK);
    assert_int_equal(files.n, 9); /* the directory and the '..' path are skipped */
    assert_string_equal(files.v[files.n - 1].sha256, "");   /* a bad oid is no oid */
    sipp__hub_ref r;
    sipp__hub_plan *plan = calloc(1, sizeof *plan);

    sipp__hub_ref_parse("o/r", &r, NULL); /* no Q4_K_M model (imatrix does not count): Q8_0 */
    assert_int_equal(sipp__hub_plan_make(&files, &r, plan, NULL), SIPP_OK);
    assert_int_equal(plan->n_model, 1);
    assert_string_equal(plan->model[0]->path, "m-Q8_0.gguf");
    assert_non_null(plan->mmproj);
    assert_string_equal(plan->mmproj->path, "mmproj-m-Q8_0.gguf"); /* nearest bits to Q8_0 */

    sipp__hub_ref_parse("o/r:q2_k", &r, NULL);
    assert_int_equal(sipp__hub_plan_make(&files, &r, plan, NULL), SIPP_OK);
    assert_int_equal(plan->n_model, 2);
    assert_string_equal(plan->model[0]->path, "Q2_K/m-Q2_K-00001-of-00002.gguf");
    assert_string_equal(plan->model[1]->path, "Q2_K/m-Q2_K-00002-of-00002.gguf");
    assert_non_null(plan->mmproj); /* in a directory above the model's: allowed */

    sipp__hub_ref_parse("o/r/Q2_K/m-Q2_K-00002-of-00002.gguf", &r, NULL); /* a later shard */
    assert_int_equal(sipp__hub_plan_make(&files, &r, plan, NULL), SIPP_OK);
    assert_int_equal(plan->n_model, 2);
    assert_string_equal(plan->model[0]->path, "Q2_K/m-Q2_K-00001-of-00002.gguf");

    sipp__hub_ref_parse("o/r:IQ4_XS", &r, NULL);
    assert_int_equal(sipp__hub_plan_make(&files, &r, plan, NULL), SIPP_OK);
    assert_string_equal(plan->model[0]->path, "m-IQ4_XS.gguf");

    sipp_error err;
    sipp_error_init(&err, sizeof err);
    sipp__hub_ref_parse("o/r:Q4_XS", &r, NULL);
    assert_int_equal(sipp__hub_plan_make(&files, &r, plan, &err), SIPP_NOT_FOUND);
    assert_non_null(strstr(err.message, "has no Q4_XS model file; it has: "));

    /* a split set with a missing part is refused */
    free(files.v[2].path);
    files.v[2].path = strdup("Q2_K/m-Q2_K-00002-of-00003.gguf");
    sipp__hub_ref_parse("o/r:Q2_K", &r, NULL);
    assert_int_equal(sipp__hub_plan_make(&files, &r, plan, &err), SIPP_NOT_FOUND);
    assert_non_null(strstr(err.message, "lacks part 2 of 2"));
    free(plan);
    sipp__hub_files_free(&files);

    sipp__hub_files none = {0};
    const char *not_array = "{\"error\":\"x\"}";
    assert_int_equal(sipp__hub_files_parse(not_array, strlen(not_array), &none, NULL), SIPP_UPSTREAM_ERROR);
    assert_int_equal(sipp__hub_files_parse("[", 1, &none, NULL), SIPP_UPSTREAM_ERROR);
    sipp__hub_files_free(&none);
}

static void test_refs_answer(void **state) {
    (void)state;
    char commit[41];
    const char *ok = "{\"branches\":[{\"name\":\"dev\",\"targetCommit\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},"
                     "{\"name\":\"main\",\"targetCommit\":\"0123456789abcdef0123456789abcdef01234567\"}]}";
    assert_int_equal(sipp__hub_refs_parse(ok, strlen(ok), commit, NULL), SIPP_OK);
    assert_string_equal(commit, "0123456789abcdef0123456789abcdef01234567");
    const char *bad = "{\"branches\":[{\"name\":\"main\",\"targetCommit\":\"../../etc\"}]}";
    assert_int_equal(sipp__hub_refs_parse(bad, strlen(bad), commit, NULL), SIPP_UPSTREAM_ERROR);
}

static void test_manifest(void **state) {
    (void)state;
    sipp__hub_manifest m = {0};
    strcpy(m.owner, "o");
    strcpy(m.repo, "r");
    sipp__hub_entry e = {.kind = SIPP__HUB_QUANT, .tag = strdup("Q4_0"), .n_files = 1};
    strcpy(e.commit, "0123456789abcdef0123456789abcdef01234567");
    e.files = calloc(1, sizeof *e.files);
    e.files[0].path = strdup("m-Q4_0.gguf");
    memset(e.files[0].sha256, 'a', 64);
    e.files[0].size = 42;
    assert_int_equal(sipp__hub_manifest_put(&m, &e), SIPP_OK);
    sipp__hub_entry f = {.kind = SIPP__HUB_FILE, .tag = strdup("m-Q4_0.gguf"), .n_files = 1};
    strcpy(f.commit, "0123456789abcdef0123456789abcdef01234567");
    f.files = calloc(1, sizeof *f.files);
    f.files[0].path = strdup("m-Q4_0.gguf");
    memset(f.files[0].sha256, 'a', 64);
    f.mmproj.path = strdup("mmproj.gguf");
    memset(f.mmproj.sha256, 'b', 64);
    assert_int_equal(sipp__hub_manifest_put(&m, &f), SIPP_OK);
    char *json = sipp__hub_manifest_dump(&m);
    assert_non_null(json);

    sipp__hub_manifest back;
    assert_int_equal(sipp__hub_manifest_parse(json, strlen(json), &back, NULL), SIPP_OK);
    assert_int_equal(back.n, 2);
    assert_string_equal(back.entries[1].mmproj.path, "mmproj.gguf");
    char *again = sipp__hub_manifest_dump(&back);
    assert_string_equal(json, again); /* a round trip changes nothing */

    sipp__hub_ref r;
    sipp__hub_ref_parse("o/r:q4_0", &r, NULL);
    assert_ptr_equal(sipp__hub_manifest_find(&back, &r), &back.entries[0]);
    sipp__hub_ref_parse("o/r", &r, NULL); /* no default entry, no Q4_K_M: the first */
    assert_ptr_equal(sipp__hub_manifest_find(&back, &r), &back.entries[0]);
    sipp__hub_ref_parse("o/r:Q8_0", &r, NULL);
    assert_null(sipp__hub_manifest_find(&back, &r));
    sipp__hub_ref_parse("o/r/m-Q4_0.gguf", &r, NULL);
    assert_ptr_equal(sipp__hub_manifest_find(&back, &r), &back.entries[1]);

    /* out of shape: each is refused */
    const char *bad[] = {
        "{}", "[]", "{\"schema\":2,\"repo\":\"o/r\",\"entries\":[]}",
        "{\"schema\":1,\"repo\":\"o/r:Q4\",\"entries\":[]}",
        "{\"schema\":1,\"repo\":\"hf.co/o/r\",\"entries\":[]}",
        "{\"schema\":1,\"repo\":\"o/r\",\"entries\":[{\"kind\":\"quant\",\"tag\":\"Q4\",\"commit\":\"x\",\"files\":[]}]}",
        "{\"schema\":1,\"repo\":\"o/r\",\"entries\":[{\"kind\":\"file\",\"tag\":\"../x.gguf\","
        "\"commit\":\"0123456789abcdef0123456789abcdef01234567\",\"files\":[{\"path\":\"x.gguf\","
        "\"sha256\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"size\":1}]}]}",
        "{\"schema\":1,\"repo\":\"o/r\",\"entries\":[{\"kind\":\"quant\",\"tag\":\"Q4\","
        "\"commit\":\"0123456789abcdef0123456789abcdef01234567\",\"files\":[{\"path\":\"x.gguf\","
        "\"sha256\":\"AAAA\",\"size\":1}]}]}",
        NULL};
    for (int i = 0; bad[i]; i++) {
        sipp__hub_manifest x;
        if (sipp__hub_manifest_parse(bad[i], strlen(bad[i]), &x, NULL) == SIPP_OK)
            fail_msg("accepted manifest %d", i);
    }
    free(json);
    free(again);
    sipp__hub_manifest_free(&back);
    sipp__hub_manifest_free(&m);
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

/* A temporary store with one pulled name whose entry has a projector: the model's path (as the
 * store gives it) takes that projector while its blob is there; any other path takes none. */
static void test_mmproj_for(void **state) {
    (void)state;
    char dir[] = "/tmp/sipp-test-hub-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *commit = "0123456789abcdef0123456789abcdef01234567";
    sipp__hub_manifest m = {0};
    strcpy(m.owner, "o");
    strcpy(m.repo, "r");
    sipp__hub_entry e = {.kind = SIPP__HUB_QUANT, .tag = strdup("Q4_0"), .n_files = 1};
    strcpy(e.commit, commit);
    e.files = calloc(1, sizeof *e.files);
    e.files[0].path = strdup("m-Q4_0.gguf");
    memset(e.files[0].sha256, 'a', 64);
    e.mmproj.path = strdup("mmproj-m-F16.gguf");
    memset(e.mmproj.sha256, 'b', 64);
    assert_int_equal(sipp__hub_manifest_put(&m, &e), SIPP_OK); /* takes e's contents */
    assert_int_equal(sipp__hub_manifest_save(dir, &m, NULL), SIPP_OK);
    const sipp__hub_entry *in = &m.entries[0];
    char blobs[256], model_blob[512], mmproj_blob[512], model[1024], mmproj[1024], got[1024];
    snprintf(blobs, sizeof blobs, "%s/hub/blobs", dir);
    assert_int_equal(sipp__hub_mkdir_p(blobs, NULL), SIPP_OK);
    sipp__hub_blob_path(model_blob, sizeof model_blob, dir, in->files[0].sha256);
    sipp__hub_blob_path(mmproj_blob, sizeof mmproj_blob, dir, in->mmproj.sha256);
    touch(model_blob);
    touch(mmproj_blob);
    sipp__hub_link_path(model, sizeof model, dir, "o", "r", commit, "m-Q4_0.gguf");
    sipp__hub_link_path(mmproj, sizeof mmproj, dir, "o", "r", commit, "mmproj-m-F16.gguf");

    assert_true(sipp__hub_mmproj_for(dir, model, got, sizeof got));
    assert_string_equal(got, mmproj);
    assert_false(sipp__hub_mmproj_for(dir, "/elsewhere/m-Q4_0.gguf", got, sizeof got));
    assert_false(sipp__hub_mmproj_for(dir, mmproj, got, sizeof got)); /* no model of that path */
    char sibling[1100]; /* a directory whose name starts like the store's is not in it */
    snprintf(sibling, sizeof sibling, "%s-x/hub/files/o/r/%s/m-Q4_0.gguf", dir, commit);
    assert_false(sipp__hub_mmproj_for(dir, sibling, got, sizeof got));
    assert_false(sipp__hub_mmproj_for(dir, model, got, 8)); /* too small a buffer: none */
    unlink(mmproj_blob); /* the projector's blob is gone: none (the model alone still opens) */
    assert_false(sipp__hub_mmproj_for(dir, model, got, sizeof got));

    unlink(model_blob);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    sipp__hub_manifest_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refs),        cmocka_unit_test(test_quant_match_and_splits),
        cmocka_unit_test(test_plan),        cmocka_unit_test(test_refs_answer),
        cmocka_unit_test(test_manifest),    cmocka_unit_test(test_mmproj_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
