/*
 * hub_parse.c — the pure half of the hub client: model references, the hub's JSON answers
 * (refs, tree listings), the choice of files in a repo, and the store's manifests. No I/O, so
 * every parser here is fuzzed (tests/fuzz/fuzz_hub_files.c, fuzz_hub_manifest.c).
 *
 * Invariants: every path that leaves this file passed sipp__hub_path_ok (it becomes a file name
 * under the store and a URL path, so no "..", no empty segment, a small character set); every
 * sha256 is 64 lower-case hex digits and every commit 40; parsers fail with a message and free
 * what they built, and never trust a size or count from the input to allocate.
 */
#define _GNU_SOURCE
#include "hub_int.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- references -------------------------------------------------------------------------- */

static bool name_ok(const char *s, size_t n) {
    if (n == 0 || n > SIPP__HUB_NAME_MAX || s[0] == '.' || s[0] == '-') return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.') return false;
    return !(n >= 5 && strncasecmp(s + n - 5, ".gguf", 5) == 0);
}

static bool path_char_ok(char c) {
    return isalnum((unsigned char)c) || strchr("._+~()@,=-", c) != NULL;
}

bool sipp__hub_path_ok(const char *path) {
    size_t n = strlen(path);
    if (n == 0 || n > SIPP__HUB_PATH_MAX) return false;
    const char *seg = path;
    for (const char *p = path;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t l = (size_t)(p - seg);
            if (l == 0 || (l == 1 && seg[0] == '.') || (l == 2 && seg[0] == '.' && seg[1] == '.'))
                return false;
            if (*p == '\0') return true;
            seg = p + 1;
        } else if (!path_char_ok(*p)) {
            return false;
        }
    }
}

bool sipp__hub_hex_ok(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f')) return false;
    return s[n] == '\0';
}

static bool ends_with_gguf(const char *s) {
    size_t n = strlen(s);
    return n >= 5 && strcasecmp(s + n - 5, ".gguf") == 0;
}

static bool quant_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.') return false;
    return !ends_with_gguf(s);
}

sipp_status sipp__hub_ref_parse(const char *s, sipp__hub_ref *out, sipp_error *err) {
    memset(out, 0, sizeof *out);
    if (!s) return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "a model name is required");
    static const char *const prefixes[] = {"https://huggingface.co/", "https://hf.co/",
                                           "huggingface.co/", "hf.co/"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0) {
            s += strlen(prefixes[i]);
            break;
        }
    const char *slash = strchr(s, '/');
    if (!slash)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "a hub model is OWNER/REPO[:QUANT] or OWNER/REPO/FILE.gguf");
    size_t ol = (size_t)(slash - s);
    const char *rest = slash + 1;
    const char *slash2 = strchr(rest, '/');
    const char *colon = strchr(rest, ':');
    size_t rl = slash2 ? (size_t)(slash2 - rest) : colon ? (size_t)(colon - rest) : strlen(rest);
    /* an owner that reads as a hub host would not survive a round trip through its name */
    bool host_owner = (ol == 5 && strncasecmp(s, "hf.co", 5) == 0) ||
                      (ol == 14 && strncasecmp(s, "huggingface.co", 14) == 0);
    if (host_owner || !name_ok(s, ol) || !name_ok(rest, rl))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "'%.*s' is not a hub repo name (OWNER/REPO: letters, digits, '-', '_', '.')",
                          (int)(ol + 1 + rl) > 200 ? 200 : (int)(ol + 1 + rl), s);
    memcpy(out->owner, s, ol);
    memcpy(out->repo, rest, rl);
    if (slash2) {
        const char *path = slash2 + 1;
        if (colon || !sipp__hub_path_ok(path) || !ends_with_gguf(path))
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "the file must be a .gguf path inside the repo (no '..', no ':')");
        out->kind = SIPP__HUB_FILE;
        snprintf(out->tag, sizeof out->tag, "%s", path);
        return SIPP_OK;
    }
    if (!colon || !colon[1] || strcasecmp(colon + 1, "latest") == 0) {
        if (colon && !colon[1])
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "an empty quantization after ':'");
        out->kind = SIPP__HUB_DEFAULT;
        return SIPP_OK;
    }
    if (!quant_ok(colon + 1))
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                          "the quantization after ':' is a tag such as Q4_K_M (letters, digits, '_', '-', '.')");
    out->kind = SIPP__HUB_QUANT;
    size_t i = 0;
    for (const char *q = colon + 1; *q; q++) out->tag[i++] = (char)toupper((unsigned char)*q);
    return SIPP_OK;
}

void sipp__hub_ref_name(const sipp__hub_ref *r, char *buf, size_t cap) {
    if (r->kind == SIPP__HUB_QUANT) snprintf(buf, cap, "%s/%s:%s", r->owner, r->repo, r->tag);
    else if (r->kind == SIPP__HUB_FILE) snprintf(buf, cap, "%s/%s/%s", r->owner, r->repo, r->tag);
    else snprintf(buf, cap, "%s/%s", r->owner, r->repo);
}

/* ---- the hub's answers ------------------------------------------------------------------- */

static json_t *load_json(const char *json, size_t len, const char *what, sipp_error *err) {
    if (len > SIPP__HUB_JSON_MAX) {
        sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the %s is larger than %u MiB", what,
                   SIPP__HUB_JSON_MAX >> 20);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the %s is not valid JSON (%s)", what, je.text);
    return root;
}

sipp_status sipp__hub_refs_parse(const char *json, size_t len, char commit[41], sipp_error *err) {
    commit[0] = '\0';
    json_t *root = load_json(json, len, "hub's list of branches", err);
    if (!root) return err ? err->code : SIPP_UPSTREAM_ERROR;
    json_t *branches = json_object_get(root, "branches");
    size_t i;
    json_t *b;
    if (json_is_array(branches)) {
        json_array_foreach(branches, i, b) {
            const char *name = json_string_value(json_object_get(b, "name"));
            const char *c = json_string_value(json_object_get(b, "targetCommit"));
            if (!name || !c || !sipp__hub_hex_ok(c, 40)) continue;
            if (strcmp(name, "main") == 0 || !commit[0]) memcpy(commit, c, 41);
            if (strcmp(name, "main") == 0) break;
        }
    }
    json_decref(root);
    if (!commit[0])
        return sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the hub listed no branch with a valid commit");
    return SIPP_OK;
}

static bool json_size(json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static sipp_status files_push(sipp__hub_files *out, const char *path, const char *sha,
                              uint64_t size) {
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 64;
        sipp__hub_file *v = realloc(out->v, cap * sizeof *v);
        if (!v) return SIPP_OUT_OF_MEMORY;
        out->v = v;
        out->cap = cap;
    }
    sipp__hub_file *f = &out->v[out->n];
    memset(f, 0, sizeof *f);
    if (!(f->path = sipp__strdup(path))) return SIPP_OUT_OF_MEMORY;
    if (sha) memcpy(f->sha256, sha, 65);
    f->size = size;
    out->n++;
    return SIPP_OK;
}

sipp_status sipp__hub_files_parse(const char *json, size_t len, sipp__hub_files *out,
                                  sipp_error *err) {
    json_t *root = load_json(json, len, "hub's file list", err);
    if (!root) return err ? err->code : SIPP_UPSTREAM_ERROR;
    if (!json_is_array(root)) {
        json_decref(root);
        return sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the hub's file list is not a JSON array");
    }
    size_t i;
    json_t *it;
    sipp_status st = SIPP_OK;
    json_array_foreach(root, i, it) {
        const char *type = json_string_value(json_object_get(it, "type"));
        const char *path = json_string_value(json_object_get(it, "path"));
        if (!type || strcmp(type, "file") != 0 || !path || !sipp__hub_path_ok(path)) continue;
        json_t *lfs = json_object_get(it, "lfs");
        const char *sha = NULL;
        uint64_t size = 0;
        if (json_is_object(lfs)) {
            sha = json_string_value(json_object_get(lfs, "oid"));
            if (sha && !sipp__hub_hex_ok(sha, 64)) sha = NULL;
            if (!json_size(json_object_get(lfs, "size"), &size)) sha = NULL;
        }
        if (!sha && !json_size(json_object_get(it, "size"), &size)) size = 0;
        if (out->n >= SIPP__HUB_MAX_FILES) {
            st = sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the repo lists more than %u files",
                            SIPP__HUB_MAX_FILES);
            break;
        }
        if (files_push(out, path, sha, size) != SIPP_OK) {
            st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
            break;
        }
    }
    json_decref(root);
    return st;
}

void sipp__hub_files_free(sipp__hub_files *f) {
    for (size_t i = 0; i < f->n; i++) free(f->v[i].path);
    free(f->v);
    memset(f, 0, sizeof *f);
}

/* ---- choosing files ---------------------------------------------------------------------- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static bool contains_ci(const char *s, const char *needle) { return strcasestr(s, needle) != NULL; }

bool sipp__hub_quant_match(const char *path, const char *quant) {
    size_t ql = strlen(quant);
    if (ql == 0) return false;
    for (const char *p = path; (p = strcasestr(p, quant)) != NULL; p++) {
        bool before = p == path || !isalnum((unsigned char)p[-1]);
        bool after = p[ql] == '.' || p[ql] == '-';
        if (before && after) return true;
    }
    return false;
}

bool sipp__hub_split_info(const char *path, size_t *prefix_len, unsigned *index, unsigned *count) {
    /* <prefix>-NNNNN-of-MMMMM.gguf: 5 digits each, as llama.cpp's gguf-split writes them */
    size_t n = strlen(path);
    const size_t tail = strlen("-00001-of-00003.gguf");
    if (n <= tail) return false;
    const char *t = path + n - tail;
    if (t[0] != '-' || strncmp(t + 6, "-of-", 4) != 0 || strcasecmp(t + 15, ".gguf") != 0) return false;
    unsigned a = 0, b = 0;
    for (int i = 1; i <= 5; i++) {
        if (!isdigit((unsigned char)t[i]) || !isdigit((unsigned char)t[i + 9])) return false;
        a = a * 10 + (unsigned)(t[i] - '0');
        b = b * 10 + (unsigned)(t[i + 9] - '0');
    }
    if (a == 0 || b == 0 || a > b) return false;
    if (prefix_len) *prefix_len = n - tail;
    if (index) *index = a;
    if (count) *count = b;
    return true;
}

static bool is_model_file(const char *path) {
    const char *b = base_name(path);
    return ends_with_gguf(path) && !contains_ci(b, "mmproj") && !contains_ci(b, "imatrix");
}

/* A model file that starts a model: not a second or later shard. */
static bool is_model_start(const char *path) {
    unsigned idx;
    return is_model_file(path) && (!sipp__hub_split_info(path, NULL, &idx, NULL) || idx == 1);
}

/* Bits of the first quant-looking token (Q4_K_M -> 4, F16 -> 16, BF16 -> 16), 0 when none. */
static int quant_bits(const char *path) {
    const char *b = base_name(path);
    for (const char *p = b; *p; p++) {
        bool start = p == b || !isalnum((unsigned char)p[-1]);
        if (!start) continue;
        const char *q = p;
        if (toupper((unsigned char)*q) == 'I' && toupper((unsigned char)q[1]) == 'Q') q++;
        else if (toupper((unsigned char)*q) == 'B' && toupper((unsigned char)q[1]) == 'F') q++;
        char c = (char)toupper((unsigned char)*q);
        if ((c == 'Q' || c == 'F') && isdigit((unsigned char)q[1])) return atoi(q + 1);
    }
    return 0;
}

static size_t dir_len(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? (size_t)(s - path) : 0;
}

static const sipp__hub_file *find_mmproj(const sipp__hub_files *files, const char *model) {
    size_t mdir = dir_len(model);
    int mbits = quant_bits(model);
    const sipp__hub_file *best = NULL;
    size_t best_depth = 0;
    int best_diff = 0;
    for (size_t i = 0; i < files->n; i++) {
        const char *p = files->v[i].path;
        if (!ends_with_gguf(p) || !contains_ci(base_name(p), "mmproj")) continue;
        size_t d = dir_len(p);
        /* its directory must be the model's or one above it */
        if (d > mdir || strncmp(p, model, d) != 0 || (d > 0 && d < mdir && model[d] != '/'))
            continue;
        int diff = abs(quant_bits(p) - mbits);
        if (!best || d > best_depth || (d == best_depth && diff < best_diff)) {
            best = &files->v[i];
            best_depth = d;
            best_diff = diff;
        }
    }
    return best;
}

static sipp_status add_shards(const sipp__hub_files *files, const sipp__hub_file *first,
                              sipp__hub_plan *out, sipp_error *err) {
    size_t plen;
    unsigned idx, count;
    if (!sipp__hub_split_info(first->path, &plen, &idx, &count)) {
        out->model[0] = first;
        out->n_model = 1;
        return SIPP_OK;
    }
    if (count > SIPP__HUB_MAX_SHARDS)
        return sipp__fail(err, SIPP_UNSUPPORTED, 0, "'%s' is split in %u files; at most %d",
                          first->path, count, SIPP__HUB_MAX_SHARDS);
    memset(out->model, 0, sizeof out->model);
    for (size_t i = 0; i < files->n; i++) {
        size_t pl;
        unsigned ix, c;
        const char *p = files->v[i].path;
        if (sipp__hub_split_info(p, &pl, &ix, &c) && c == count && pl == plen &&
            strncmp(p, first->path, plen) == 0 && !out->model[ix - 1])
            out->model[ix - 1] = &files->v[i];
    }
    for (unsigned i = 0; i < count; i++)
        if (!out->model[i])
            return sipp__fail(err, SIPP_NOT_FOUND, 0, "the split model '%.*s' lacks part %u of %u",
                              (int)plen, first->path, i + 1, count);
    out->n_model = count;
    return SIPP_OK;
}

sipp_status sipp__hub_plan_make(const sipp__hub_files *files, const sipp__hub_ref *ref,
                                sipp__hub_plan *out, sipp_error *err) {
    out->n_model = 0;
    out->mmproj = NULL;
    const sipp__hub_file *first = NULL;
    if (ref->kind == SIPP__HUB_FILE) {
        for (size_t i = 0; i < files->n && !first; i++)
            if (strcmp(files->v[i].path, ref->tag) == 0) first = &files->v[i];
        if (!first)
            return sipp__fail(err, SIPP_NOT_FOUND, 0, "%s/%s has no file '%s'", ref->owner,
                              ref->repo, ref->tag);
        size_t plen;
        unsigned idx;
        if (sipp__hub_split_info(first->path, &plen, &idx, NULL) && idx != 1) {
            /* a later shard was named: start from shard 1 of its set */
            const sipp__hub_file *one = NULL;
            for (size_t i = 0; i < files->n && !one; i++) {
                size_t pl;
                unsigned ix;
                if (sipp__hub_split_info(files->v[i].path, &pl, &ix, NULL) && ix == 1 &&
                    pl == plen && strncmp(files->v[i].path, first->path, plen) == 0)
                    one = &files->v[i];
            }
            if (!one)
                return sipp__fail(err, SIPP_NOT_FOUND, 0, "the split model '%.*s' lacks part 1",
                                  (int)plen, first->path);
            first = one;
        }
    } else {
        const char *defaults[] = {"Q4_K_M", "Q8_0"};
        const char *const *tags = ref->kind == SIPP__HUB_QUANT ? (const char *const[]){ref->tag}
                                                               : defaults;
        size_t n_tags = ref->kind == SIPP__HUB_QUANT ? 1 : 2;
        for (size_t t = 0; t < n_tags && !first; t++)
            for (size_t i = 0; i < files->n && !first; i++)
                if (is_model_start(files->v[i].path) &&
                    sipp__hub_quant_match(files->v[i].path, tags[t]))
                    first = &files->v[i];
        for (size_t i = 0; i < files->n && !first && ref->kind == SIPP__HUB_DEFAULT; i++)
            if (is_model_start(files->v[i].path)) first = &files->v[i];
        if (!first) {
            char avail[200] = "";
            size_t al = 0;
            for (size_t i = 0; i < files->n && al < sizeof avail - 1; i++)
                if (is_model_start(files->v[i].path))
                    al += (size_t)snprintf(avail + al, sizeof avail - al, "%s%s", al ? ", " : "",
                                           base_name(files->v[i].path));
            if (al >= sizeof avail) al = sizeof avail - 1;
            if (ref->kind == SIPP__HUB_QUANT)
                return sipp__fail(err, SIPP_NOT_FOUND, 0, "%s/%s has no %s model file%s%s",
                                  ref->owner, ref->repo, ref->tag, al ? "; it has: " : "", avail);
            return sipp__fail(err, SIPP_NOT_FOUND, 0, "%s/%s has no GGUF model file", ref->owner,
                              ref->repo);
        }
    }
    sipp_status st = add_shards(files, first, out, err);
    if (st == SIPP_OK) out->mmproj = find_mmproj(files, first->path);
    return st;
}

/* ---- manifests --------------------------------------------------------------------------- */

static const char *const kind_names[] = {"default", "quant", "file"};

static json_t *file_json(const sipp__hub_file *f) {
    return json_pack("{s:s,s:s,s:I}", "path", f->path, "sha256", f->sha256, "size",
                     (json_int_t)f->size);
}

char *sipp__hub_manifest_dump(const sipp__hub_manifest *m) {
    char repo[2 * SIPP__HUB_NAME_MAX + 2];
    snprintf(repo, sizeof repo, "%s/%s", m->owner, m->repo);
    json_t *entries = json_array();
    json_t *root = json_pack("{s:i,s:s,s:o}", "schema", 1, "repo", repo, "entries", entries);
    if (!root) return NULL;
    bool ok = true;
    for (size_t i = 0; i < m->n && ok; i++) {
        const sipp__hub_entry *e = &m->entries[i];
        json_t *files = json_array();
        for (size_t k = 0; k < e->n_files && files; k++)
            if (json_array_append_new(files, file_json(&e->files[k])) != 0) ok = false;
        json_t *je = json_pack("{s:s,s:s,s:s,s:o}", "kind", kind_names[e->kind], "tag", e->tag,
                               "commit", e->commit, "files", files);
        if (je && e->mmproj.path) json_object_set_new(je, "mmproj", file_json(&e->mmproj));
        if (!je || json_array_append_new(entries, je) != 0) ok = false;
    }
    char *s = ok ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    return s;
}

static bool file_from_json(json_t *j, sipp__hub_file *f) {
    const char *p = json_string_value(json_object_get(j, "path"));
    const char *sha = json_string_value(json_object_get(j, "sha256"));
    if (!p || !sipp__hub_path_ok(p) || !sha || !sipp__hub_hex_ok(sha, 64) ||
        !json_size(json_object_get(j, "size"), &f->size))
        return false;
    memcpy(f->sha256, sha, 65);
    return (f->path = sipp__strdup(p)) != NULL;
}

void sipp__hub_entry_free(sipp__hub_entry *e) {
    free(e->tag);
    for (size_t i = 0; i < e->n_files; i++) free(e->files[i].path);
    free(e->files);
    free(e->mmproj.path);
    memset(e, 0, sizeof *e);
}

static bool entry_from_json(json_t *j, sipp__hub_entry *e) {
    memset(e, 0, sizeof *e);
    const char *kind = json_string_value(json_object_get(j, "kind"));
    const char *tag = json_string_value(json_object_get(j, "tag"));
    const char *commit = json_string_value(json_object_get(j, "commit"));
    json_t *files = json_object_get(j, "files");
    if (!kind || !tag || !commit || !sipp__hub_hex_ok(commit, 40) || !json_is_array(files) ||
        json_array_size(files) == 0 || json_array_size(files) > SIPP__HUB_MAX_SHARDS)
        return false;
    int k = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(kind, kind_names[i]) == 0) k = i;
    if (k < 0) return false;
    e->kind = (sipp__hub_kind)k;
    if ((e->kind == SIPP__HUB_DEFAULT && tag[0]) || (e->kind == SIPP__HUB_QUANT && !quant_ok(tag)) ||
        (e->kind == SIPP__HUB_FILE && (!sipp__hub_path_ok(tag) || !ends_with_gguf(tag))))
        return false;
    memcpy(e->commit, commit, 41);
    if (!(e->tag = sipp__strdup(tag))) return false;
    size_t n = json_array_size(files);
    if (!(e->files = calloc(n, sizeof *e->files))) return false;
    for (size_t i = 0; i < n; i++) {
        if (!file_from_json(json_array_get(files, i), &e->files[i])) return false;
        e->n_files++;
    }
    json_t *mm = json_object_get(j, "mmproj");
    if (mm && !file_from_json(mm, &e->mmproj)) return false;
    return true;
}

void sipp__hub_manifest_free(sipp__hub_manifest *m) {
    for (size_t i = 0; i < m->n; i++) sipp__hub_entry_free(&m->entries[i]);
    free(m->entries);
    m->entries = NULL;
    m->n = 0;
}

sipp_status sipp__hub_manifest_parse(const char *json, size_t len, sipp__hub_manifest *out,
                                     sipp_error *err) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = len <= SIPP__HUB_JSON_MAX ? json_loadb(json, len, JSON_REJECT_DUPLICATES, &je)
                                             : NULL;
    const char *repo = json_string_value(json_object_get(root, "repo"));
    json_t *schema = json_object_get(root, "schema");
    json_t *entries = json_object_get(root, "entries");
    sipp__hub_ref r;
    bool ok = repo && json_is_integer(schema) && json_integer_value(schema) == 1 &&
              json_is_array(entries) && json_array_size(entries) <= 4096 &&
              sipp__hub_ref_parse(repo, &r, NULL) == SIPP_OK && r.kind == SIPP__HUB_DEFAULT;
    if (ok) { /* the canonical OWNER/REPO, nothing else */
        char canon[2 * SIPP__HUB_NAME_MAX + 2];
        sipp__hub_ref_name(&r, canon, sizeof canon);
        ok = strcmp(canon, repo) == 0;
    }
    if (ok) {
        memcpy(out->owner, r.owner, sizeof out->owner);
        memcpy(out->repo, r.repo, sizeof out->repo);
        size_t n = json_array_size(entries);
        out->entries = n ? calloc(n, sizeof *out->entries) : NULL;
        ok = n == 0 || out->entries;
        for (size_t i = 0; i < n && ok; i++) {
            ok = entry_from_json(json_array_get(entries, i), &out->entries[i]);
            out->n++; /* a half-built entry is freed with the rest */
            for (size_t k = 0; k + 1 < out->n && ok; k++)
                if (out->entries[k].kind == out->entries[i].kind &&
                    strcmp(out->entries[k].tag, out->entries[i].tag) == 0)
                    ok = false; /* one entry per name */
        }
    }
    json_decref(root);
    if (!ok) {
        sipp__hub_manifest_free(out);
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "corrupt manifest");
    }
    return SIPP_OK;
}

const sipp__hub_entry *sipp__hub_manifest_find(const sipp__hub_manifest *m,
                                               const sipp__hub_ref *ref) {
    for (size_t i = 0; i < m->n; i++)
        if (m->entries[i].kind == ref->kind && strcmp(m->entries[i].tag, ref->tag) == 0)
            return &m->entries[i];
    for (size_t i = 0; i < m->n; i++) {
        const sipp__hub_entry *e = &m->entries[i];
        if (ref->kind == SIPP__HUB_QUANT && sipp__hub_quant_match(e->files[0].path, ref->tag))
            return e;
        if (ref->kind == SIPP__HUB_FILE)
            for (size_t k = 0; k < e->n_files; k++)
                if (strcmp(e->files[k].path, ref->tag) == 0) return e;
        if (ref->kind == SIPP__HUB_DEFAULT && sipp__hub_quant_match(e->files[0].path, "Q4_K_M"))
            return e;
    }
    return ref->kind == SIPP__HUB_DEFAULT && m->n ? &m->entries[0] : NULL;
}

sipp_status sipp__hub_manifest_put(sipp__hub_manifest *m, sipp__hub_entry *e) {
    for (size_t i = 0; i < m->n; i++)
        if (m->entries[i].kind == e->kind && strcmp(m->entries[i].tag, e->tag) == 0) {
            sipp__hub_entry_free(&m->entries[i]);
            m->entries[i] = *e;
            memset(e, 0, sizeof *e);
            return SIPP_OK;
        }
    sipp__hub_entry *v = realloc(m->entries, (m->n + 1) * sizeof *v);
    if (!v) return SIPP_OUT_OF_MEMORY;
    m->entries = v;
    m->entries[m->n++] = *e;
    memset(e, 0, sizeof *e);
    return SIPP_OK;
}
