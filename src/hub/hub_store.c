/*
 * hub_store.c — the local store of pulled models, offline: its files and locks, manifests,
 * resolving a pulled name to its file (sipp__hub_resolve, and sipp_model_resolve(): pulled
 * names wherever libsipp takes a model path), the projector stored beside a pulled model
 * (sipp__hub_mmproj_for), listing (`sipp models`) and removing (`sipp rm`).
 * Never touches the network (hub_pull.c does). The layout of the store is in hub_int.h.
 *
 * Any thread; state lives in the file system only. Invariants:
 * - A name is visible only through its manifest entry; a manifest is replaced whole by
 *   sipp__file_write_atomic (src/common/file.c), never seen half written.
 * - Read-modify-writes of manifests hold the manifest lock exclusive; `sipp rm` takes the gc
 *   lock exclusive (non-blocking: BUSY while a pull holds it shared) before deleting blobs, and
 *   deletes only blobs and links no manifest names.
 * - A manifest that cannot be read stops a removal: deleting blobs it may name would lose data.
 */
#define _GNU_SOURCE
#include "hub_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small file helpers ------------------------------------------------------------------ */

sipp_status sipp__hub_io_fail(sipp_error *err, const char *what, const char *path) {
    return sipp__fail(err, SIPP_IO_ERROR, errno, "cannot %s '%s': %s", what, path, strerror(errno));
}

sipp_status sipp__hub_mkdir_p(const char *path, sipp_error *err) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "path too long");
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return sipp__hub_io_fail(err, "create", buf);
            *p = c;
            if (!c) return SIPP_OK;
        }
    }
}

static sipp_status read_all(const char *path, size_t max, char **out, size_t *len,
                            sipp_error *err) {
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return SIPP_NOT_FOUND;
        return sipp__hub_io_fail(err, "read", path);
    }
    sipp__buf b;
    sipp__buf_init(&b, max);
    char chunk[65536];
    ssize_t n;
    sipp_status st = SIPP_OK;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        if ((st = sipp__buf_append(&b, chunk, (size_t)n)) != SIPP_OK) break;
    if (n < 0) st = sipp__hub_io_fail(err, "read", path);
    else if (st != SIPP_OK) st = sipp__fail(err, SIPP_IO_ERROR, 0, "'%s' is too large", path);
    close(fd);
    if (st != SIPP_OK) {
        sipp__buf_free(&b);
        return st;
    }
    *out = b.data ? b.data : sipp__strdup("");
    *len = b.len;
    return *out ? SIPP_OK : sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
}

/* Opens (creating) a lock file and takes the lock; returns the fd, or -1 with errno
 * (EWOULDBLOCK when `nb` and someone holds it). */
int sipp__hub_lock(const char *path, int how, bool nb) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    while (flock(fd, how | (nb ? LOCK_NB : 0)) != 0) {
        if (errno == EINTR) continue;
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

void sipp__hub_unlock(int fd) {
    if (fd >= 0) close(fd); /* closing drops the flock */
}

/* ---- store paths --------------------------------------------------------------------------- */

void sipp__hub_path(char *buf, size_t cap, const char *models_dir, const char *sub) {
    snprintf(buf, cap, "%s/hub%s%s", models_dir, sub[0] ? "/" : "", sub);
}

void sipp__hub_blob_path(char *buf, size_t cap, const char *models_dir, const char *sha) {
    snprintf(buf, cap, "%s/hub/blobs/sha256-%s", models_dir, sha);
}

void sipp__hub_link_path(char *buf, size_t cap, const char *models_dir, const char *owner,
                         const char *repo, const char *commit, const char *path) {
    snprintf(buf, cap, "%s/hub/files/%s/%s/%s/%s", models_dir, owner, repo, commit, path);
}

static void manifest_path(char *buf, size_t cap, const char *models_dir, const char *owner,
                          const char *repo) {
    snprintf(buf, cap, "%s/hub/manifests/%s/%s.json", models_dir, owner, repo);
}

/* Loads a repo's manifest; a missing one is an empty manifest. */
sipp_status sipp__hub_manifest_load(const char *models_dir, const char *owner, const char *repo,
                                    sipp__hub_manifest *m, sipp_error *err) {
    char path[PATH_MAX];
    manifest_path(path, sizeof path, models_dir, owner, repo);
    char *data;
    size_t len;
    sipp_status st = read_all(path, SIPP__HUB_JSON_MAX, &data, &len, err);
    if (st == SIPP_NOT_FOUND) {
        memset(m, 0, sizeof *m);
        snprintf(m->owner, sizeof m->owner, "%s", owner);
        snprintf(m->repo, sizeof m->repo, "%s", repo);
        return SIPP_OK;
    }
    if (st != SIPP_OK) return st;
    sipp_error perr = sipp__error_defaults();
    st = sipp__hub_manifest_parse(data, len, m, &perr);
    free(data);
    if (st == SIPP_OK && (strcmp(m->owner, owner) != 0 || strcmp(m->repo, repo) != 0)) {
        sipp__hub_manifest_free(m);
        st = SIPP_INVALID_ARGUMENT;
    }
    if (st != SIPP_OK)
        return sipp__fail(err, SIPP_IO_ERROR, 0, "the manifest '%s' is corrupt; delete it and pull again",
                          path);
    return SIPP_OK;
}

sipp_status sipp__hub_manifest_save(const char *models_dir, const sipp__hub_manifest *m,
                                    sipp_error *err) {
    char path[PATH_MAX];
    manifest_path(path, sizeof path, models_dir, m->owner, m->repo);
    if (m->n == 0) {
        if (unlink(path) != 0 && errno != ENOENT) return sipp__hub_io_fail(err, "delete", path);
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/hub/manifests/%s", models_dir, m->owner);
        rmdir(dir); /* fails while other repos of the owner remain: fine */
        return SIPP_OK;
    }
    char *data = sipp__hub_manifest_dump(m);
    if (!data) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/hub/manifests/%s", models_dir, m->owner);
    sipp_status st = sipp__hub_mkdir_p(dir, err);
    if (st == SIPP_OK) {
        const sipp__file_part part = {data, strlen(data)};
        if (sipp__file_write_atomic(path, &part, 1, 0644) != 0) st = sipp__hub_io_fail(err, "write", path);
    }
    free(data);
    return st;
}

/* ---- reading the store --------------------------------------------------------------------- */

sipp_status sipp__hub_resolve(const char *models_dir, const char *name, char *path, size_t cap,
                              sipp_error *err) {
    sipp__hub_ref ref;
    sipp_status st = sipp__hub_ref_parse(name, &ref, err);
    if (st != SIPP_OK) return st;
    sipp__hub_manifest m;
    st = sipp__hub_manifest_load(models_dir, ref.owner, ref.repo, &m, err);
    if (st != SIPP_OK) return st;
    const sipp__hub_entry *e = sipp__hub_manifest_find(&m, &ref);
    char canon[sizeof(((sipp__hub_pulled *)0)->name)];
    sipp__hub_ref_name(&ref, canon, sizeof canon);
    if (!e && ref.kind == SIPP__HUB_DEFAULT && !strchr(name, ':')) {
        /* OWNER/REPO may as well be a mistyped relative path: say both */
        st = sipp__fail(err, SIPP_NOT_FOUND, 0,
                        "no file '%s', and no pulled model of that name; pull it with: sipp pull "
                        "%s (models directory: %s)",
                        name, canon, models_dir);
    } else if (!e) {
        st = sipp__fail(err, SIPP_NOT_FOUND, 0,
                        "'%s' was not pulled; pull it with: sipp pull %s (models directory: %s)",
                        canon, canon, models_dir);
    } else {
        sipp__hub_link_path(path, cap, models_dir, ref.owner, ref.repo, e->commit, e->files[0].path);
        struct stat sb;
        for (size_t i = 0; i < e->n_files && st == SIPP_OK; i++) {
            char b[PATH_MAX];
            sipp__hub_blob_path(b, sizeof b, models_dir, e->files[i].sha256);
            if (stat(b, &sb) != 0)
                st = sipp__fail(err, SIPP_NOT_FOUND, 0,
                                "files of '%s' are missing from the store; pull it again: sipp pull %s",
                                canon, canon);
        }
    }
    sipp__hub_manifest_free(&m);
    return st;
}

void sipp__hub_models_dir(char *buf, size_t cap) {
    const char *d = getenv("SIPP_MODELS_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (d && *d) snprintf(buf, cap, "%s", d);
    else if (xdg && *xdg) snprintf(buf, cap, "%s/sipp/models", xdg);
    else snprintf(buf, cap, "%s/.cache/sipp/models", home ? home : ".");
}

/* A model name where a path is accepted. Offline: an existing path or a name that is not a
 * reference is returned as it is (the engine reports a missing file); a reference is looked up
 * in the local manifests only, never on the hub. */
sipp_status sipp_model_resolve(const char *name, char *buf, size_t cap, sipp_error *err) {
    if (!name || !name[0] || !buf || cap == 0)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "a model name and a buffer are required");
    struct stat sb;
    sipp__hub_ref ref;
    if (stat(name, &sb) == 0 || sipp__hub_ref_parse(name, &ref, NULL) != SIPP_OK) {
        if ((size_t)snprintf(buf, cap, "%s", name) >= cap)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "model path too long for the buffer");
        return SIPP_OK;
    }
    char dir[PATH_MAX], path[PATH_MAX];
    sipp__hub_models_dir(dir, sizeof dir);
    sipp_status st = sipp__hub_resolve(dir, name, path, sizeof path, err);
    if (st != SIPP_OK) return st;
    if ((size_t)snprintf(buf, cap, "%s", path) >= cap)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "model path too long for the buffer");
    return SIPP_OK;
}

static int cmp_item(const void *a, const void *b) {
    return strcmp(((const sipp__hub_item *)a)->name, ((const sipp__hub_item *)b)->name);
}

static bool is_json_name(const char *n, size_t *stem) {
    size_t l = strlen(n);
    if (l <= 5 || strcmp(n + l - 5, ".json") != 0) return false;
    *stem = l - 5;
    return true;
}

static sipp_status list_repo(const char *models_dir, const char *owner, const char *repo,
                             sipp__hub_item **items, size_t *n, size_t *cap, sipp_error *err) {
    sipp__hub_manifest m;
    if (sipp__hub_manifest_load(models_dir, owner, repo, &m, NULL) != SIPP_OK) return SIPP_OK; /* skip */
    sipp_status st = SIPP_OK;
    for (size_t i = 0; i < m.n && st == SIPP_OK; i++) {
        const sipp__hub_entry *e = &m.entries[i];
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            sipp__hub_item *v = realloc(*items, nc * sizeof *v);
            if (!v) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
            *items = v;
            *cap = nc;
        }
        sipp__hub_item *it = &(*items)[*n];
        memset(it, 0, sizeof *it);
        sipp__hub_ref r = {.kind = e->kind};
        snprintf(r.owner, sizeof r.owner, "%s", owner);
        snprintf(r.repo, sizeof r.repo, "%s", repo);
        snprintf(r.tag, sizeof r.tag, "%s", e->tag);
        char name[sizeof(((sipp__hub_pulled *)0)->name)], p[PATH_MAX];
        sipp__hub_ref_name(&r, name, sizeof name);
        it->name = sipp__strdup(name);
        sipp__hub_link_path(p, sizeof p, models_dir, owner, repo, e->commit, e->files[0].path);
        it->path = sipp__strdup(p);
        it->commit = sipp__strdup(e->commit);
        it->complete = true;
        for (size_t k = 0; k <= e->n_files; k++) {
            const sipp__hub_file *f = k < e->n_files ? &e->files[k] : e->mmproj.path ? &e->mmproj : NULL;
            if (!f) break;
            it->bytes += f->size;
            char b[PATH_MAX];
            struct stat sb;
            sipp__hub_blob_path(b, sizeof b, models_dir, f->sha256);
            if (stat(b, &sb) != 0) it->complete = false;
        }
        it->n_files = e->n_files;
        if (e->mmproj.path) {
            sipp__hub_link_path(p, sizeof p, models_dir, owner, repo, e->commit, e->mmproj.path);
            it->mmproj = sipp__strdup(p);
        }
        (*n)++;
        if (!it->name || !it->path || !it->commit || (e->mmproj.path && !it->mmproj))
            st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    sipp__hub_manifest_free(&m);
    return st;
}

/* Calls fn(models_dir, owner, repo, ud, err) for each manifests/OWNER/REPO.json, stopping at
 * the first status other than SIPP_OK. */
typedef sipp_status (*manifest_fn)(const char *models_dir, const char *owner, const char *repo,
                                   void *ud, sipp_error *err);

static sipp_status each_manifest(const char *models_dir, manifest_fn fn, void *ud,
                                 sipp_error *err) {
    char dir[PATH_MAX];
    sipp__hub_path(dir, sizeof dir, models_dir, "manifests");
    DIR *d = opendir(dir);
    if (!d) return SIPP_OK;
    sipp_status st = SIPP_OK;
    struct dirent *de;
    while (st == SIPP_OK && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name) >= (int)sizeof sub) continue;
        DIR *od = opendir(sub);
        if (!od) continue;
        struct dirent *re;
        while (st == SIPP_OK && (re = readdir(od)) != NULL) {
            size_t stem;
            if (re->d_name[0] == '.' || !is_json_name(re->d_name, &stem) ||
                stem > SIPP__HUB_NAME_MAX)
                continue;
            char repo[SIPP__HUB_NAME_MAX + 1];
            memcpy(repo, re->d_name, stem);
            repo[stem] = '\0';
            st = fn(models_dir, de->d_name, repo, ud, err);
        }
        closedir(od);
    }
    closedir(d);
    return st;
}

typedef struct list_acc {
    sipp__hub_item **items;
    size_t *n, cap;
} list_acc;

static sipp_status list_one(const char *models_dir, const char *owner, const char *repo,
                            void *ud, sipp_error *err) {
    list_acc *acc = ud;
    if (strlen(owner) > SIPP__HUB_NAME_MAX) return SIPP_OK;
    return list_repo(models_dir, owner, repo, acc->items, acc->n, &acc->cap, err);
}

sipp_status sipp__hub_list(const char *models_dir, sipp__hub_item **items, size_t *n,
                           sipp_error *err) {
    *items = NULL;
    *n = 0;
    list_acc acc = {items, n, 0};
    sipp_status st = each_manifest(models_dir, list_one, &acc, err);
    if (st != SIPP_OK) {
        sipp__hub_list_free(*items, *n);
        *items = NULL;
        *n = 0;
        return st;
    }
    if (*n) qsort(*items, *n, sizeof **items, cmp_item);
    return SIPP_OK;
}

void sipp__hub_list_free(sipp__hub_item *items, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(items[i].name);
        free(items[i].path);
        free(items[i].mmproj);
        free(items[i].commit);
    }
    free(items);
}

bool sipp__hub_mmproj_for(const char *models_dir, const char *model_path, char *buf, size_t cap) {
    size_t dl = strlen(models_dir);
    /* a path outside the store is no pulled model: no manifest is read for it */
    if (strncmp(model_path, models_dir, dl) != 0 || model_path[dl] != '/') return false;
    sipp__hub_item *items;
    size_t n;
    if (sipp__hub_list(models_dir, &items, &n, NULL) != SIPP_OK) return false;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        const sipp__hub_item *it = &items[i];
        /* complete: every blob of the entry, the projector's included, is there */
        if (it->mmproj && it->complete && strcmp(it->path, model_path) == 0)
            found = (size_t)snprintf(buf, cap, "%s", it->mmproj) < cap;
    }
    sipp__hub_list_free(items, n);
    return found;
}

/* ---- removing ------------------------------------------------------------------------------ */

typedef struct refs {
    char (*sha)[65];
    size_t n, cap;
} refs;

static bool refs_add(refs *r, const char *sha) {
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 64;
        char(*v)[65] = realloc(r->sha, nc * sizeof *v);
        if (!v) return false;
        r->sha = v;
        r->cap = nc;
    }
    memcpy(r->sha[r->n++], sha, 65);
    return true;
}

static bool refs_has(const refs *r, const char *sha) {
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->sha[i], sha) == 0) return true;
    return false;
}

static sipp_status refs_of(const char *models_dir, const char *owner, const char *repo,
                           void *ud, sipp_error *err) {
    refs *r = ud;
    sipp__hub_manifest m;
    sipp_status st = sipp__hub_manifest_load(models_dir, owner, repo, &m, err);
    for (size_t i = 0; i < m.n && st == SIPP_OK; i++) {
        for (size_t k = 0; k < m.entries[i].n_files && st == SIPP_OK; k++)
            if (!refs_add(r, m.entries[i].files[k].sha256)) st = SIPP_OUT_OF_MEMORY;
        if (m.entries[i].mmproj.path && !refs_add(r, m.entries[i].mmproj.sha256))
            st = SIPP_OUT_OF_MEMORY;
    }
    if (st == SIPP_OUT_OF_MEMORY) sipp__fail(err, st, 0, "out of memory");
    if (st == SIPP_OK || st == SIPP_OUT_OF_MEMORY) sipp__hub_manifest_free(&m);
    return st;
}

/* Collects the blobs every manifest names. A manifest that cannot be read stops the collection
 * (deleting blobs it may name would lose data). */
static sipp_status collect_refs(const char *models_dir, refs *r, sipp_error *err) {
    return each_manifest(models_dir, refs_of, r, err);
}

/* Deletes links under `dir` whose blob no manifest names, then directories left empty. */
static void prune_links(const char *dir, const refs *r, int depth) {
    if (depth > 64) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p) continue;
        struct stat sb;
        if (lstat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            prune_links(p, r, depth + 1);
            rmdir(p);
        } else if (S_ISLNK(sb.st_mode)) {
            char t[PATH_MAX];
            ssize_t n = readlink(p, t, sizeof t - 1);
            if (n <= 0) continue;
            t[n] = '\0';
            const char *s = strstr(t, "blobs/sha256-");
            if (!s || !refs_has(r, s + strlen("blobs/sha256-"))) unlink(p);
        }
    }
    closedir(d);
}

sipp_status sipp__hub_remove(const char *models_dir, const char *name, uint64_t *freed,
                             sipp_error *err) {
    *freed = 0;
    sipp__hub_ref ref;
    sipp_status st = sipp__hub_ref_parse(name, &ref, err);
    if (st != SIPP_OK) return st;
    char path[PATH_MAX];
    sipp__hub_path(path, sizeof path, models_dir, "");
    struct stat sb;
    if (stat(path, &sb) != 0) {
        char canon[sizeof(((sipp__hub_pulled *)0)->name)];
        sipp__hub_ref_name(&ref, canon, sizeof canon);
        return sipp__fail(err, SIPP_NOT_FOUND, 0, "'%s' was not pulled", canon);
    }
    sipp__hub_path(path, sizeof path, models_dir, ".gc.lock");
    int gc_fd = sipp__hub_lock(path, LOCK_EX, true);
    if (gc_fd < 0)
        return errno == EWOULDBLOCK
                   ? sipp__fail(err, SIPP_BUSY, 0, "a sipp pull is running; remove when it ends")
                   : sipp__hub_io_fail(err, "lock", path);
    sipp__hub_path(path, sizeof path, models_dir, ".manifest.lock");
    int mf_fd = sipp__hub_lock(path, LOCK_EX, false);
    if (mf_fd < 0) st = sipp__hub_io_fail(err, "lock", path);
    sipp__hub_manifest m = {0};
    if (st == SIPP_OK) st = sipp__hub_manifest_load(models_dir, ref.owner, ref.repo, &m, err);
    if (st == SIPP_OK) {
        const sipp__hub_entry *e = sipp__hub_manifest_find(&m, &ref);
        if (!e) {
            char canon[sizeof(((sipp__hub_pulled *)0)->name)];
            sipp__hub_ref_name(&ref, canon, sizeof canon);
            st = sipp__fail(err, SIPP_NOT_FOUND, 0, "'%s' was not pulled", canon);
        } else {
            size_t i = (size_t)(e - m.entries);
            sipp__hub_entry_free(&m.entries[i]);
            memmove(&m.entries[i], &m.entries[i + 1], (m.n - i - 1) * sizeof *m.entries);
            m.n--;
            st = sipp__hub_manifest_save(models_dir, &m, err);
        }
    }
    sipp__hub_manifest_free(&m);
    refs r = {0};
    if (st == SIPP_OK && collect_refs(models_dir, &r, err) == SIPP_OK) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/hub/files/%s/%s", models_dir, ref.owner, ref.repo);
        prune_links(dir, &r, 0);
        rmdir(dir);
        snprintf(dir, sizeof dir, "%s/hub/files/%s", models_dir, ref.owner);
        rmdir(dir);
        sipp__hub_path(dir, sizeof dir, models_dir, "blobs");
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            const char *n = de->d_name;
            if (strncmp(n, "sha256-", 7) != 0 || !sipp__hub_hex_ok(n + 7, 64) || refs_has(&r, n + 7))
                continue;
            char b[PATH_MAX];
            if (snprintf(b, sizeof b, "%s/%s", dir, n) >= (int)sizeof b) continue;
            if (lstat(b, &sb) == 0 && unlink(b) == 0) *freed += (uint64_t)sb.st_size;
        }
        if (d) closedir(d);
    }
    free(r.sha);
    sipp__hub_unlock(mf_fd);
    sipp__hub_unlock(gc_fd);
    return st;
}
