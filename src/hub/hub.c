/*
 * hub.c — the I/O half of the hub client: `sipp pull` (resolve through the hub's API, download,
 * verify, store), the store's reads and removals (`sipp models`, `sipp rm`), and
 * sipp_model_resolve(): pulled names wherever libsipp takes a model path (add_local, inspect).
 * The layout of the store is in hub_int.h.
 *
 * Invariants:
 * - A blob is written only as blobs/sha256-<hex>.partial (locked with flock while written) and
 *   renamed to its final name after its bytes hashed to <hex>: a final blob is always verified.
 * - A name is visible only through its manifest entry, written (temporary file, fsync, rename)
 *   after all its blobs and links exist.
 * - A pull holds the store's gc lock shared for its whole run; `sipp rm` takes it exclusive
 *   before deleting blobs, so it never deletes a blob a running pull is about to name. Manifest
 *   read-modify-writes hold the manifest lock exclusive.
 * - The token goes into one header line given to http_fetch.c, never into a message.
 */
#define _GNU_SOURCE
#include "hub_int.h"

#include "../http/http_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 30000
#define IDLE_TIMEOUT_MS 60000
#define MAX_REDIRECTS 5
#define MAX_PAGES 100

/* ---- small file helpers ------------------------------------------------------------------ */

static sipp_status io_fail(sipp_error *err, const char *what, const char *path) {
    return sipp__fail(err, SIPP_IO_ERROR, errno, "cannot %s '%s': %s", what, path, strerror(errno));
}

static sipp_status mkdir_p(const char *path, sipp_error *err) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "path too long");
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) return io_fail(err, "create", buf);
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
        return io_fail(err, "read", path);
    }
    sipp__buf b;
    sipp__buf_init(&b, max);
    char chunk[65536];
    ssize_t n;
    sipp_status st = SIPP_OK;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        if ((st = sipp__buf_append(&b, chunk, (size_t)n)) != SIPP_OK) break;
    if (n < 0) st = io_fail(err, "read", path);
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

static void fsync_dir(const char *file) {
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s", file);
    char *s = strrchr(d, '/');
    if (!s) return;
    *s = '\0';
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Writes `data` to `path` atomically: a temporary file beside it, fsync, rename. */
static sipp_status write_atomic(const char *path, const char *data, size_t len, sipp_error *err) {
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return io_fail(err, "write", tmp);
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            sipp_status st = io_fail(err, "write", tmp);
            close(fd);
            unlink(tmp);
            return st;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        sipp_status st = io_fail(err, "write", path);
        unlink(tmp);
        return st;
    }
    fsync_dir(path);
    return SIPP_OK;
}

/* Opens (creating) a lock file and takes the lock; returns the fd, or -1 with errno
 * (EWOULDBLOCK when `nb` and someone holds it). */
static int lock_file(const char *path, int how, bool nb) {
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

static void unlock_file(int fd) {
    if (fd >= 0) close(fd); /* closing drops the flock */
}

/* ---- store paths --------------------------------------------------------------------------- */

static void hub_path(char *buf, size_t cap, const char *models_dir, const char *sub) {
    snprintf(buf, cap, "%s/hub%s%s", models_dir, sub[0] ? "/" : "", sub);
}

static void blob_path(char *buf, size_t cap, const char *models_dir, const char *sha) {
    snprintf(buf, cap, "%s/hub/blobs/sha256-%s", models_dir, sha);
}

static void link_path(char *buf, size_t cap, const char *models_dir, const char *owner,
                      const char *repo, const char *commit, const char *path) {
    snprintf(buf, cap, "%s/hub/files/%s/%s/%s/%s", models_dir, owner, repo, commit, path);
}

static void manifest_path(char *buf, size_t cap, const char *models_dir, const char *owner,
                          const char *repo) {
    snprintf(buf, cap, "%s/hub/manifests/%s/%s.json", models_dir, owner, repo);
}

/* Loads a repo's manifest; a missing one is an empty manifest. */
static sipp_status manifest_load(const char *models_dir, const char *owner, const char *repo,
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

static sipp_status manifest_save(const char *models_dir, const sipp__hub_manifest *m,
                                 sipp_error *err) {
    char path[PATH_MAX];
    manifest_path(path, sizeof path, models_dir, m->owner, m->repo);
    if (m->n == 0) {
        if (unlink(path) != 0 && errno != ENOENT) return io_fail(err, "delete", path);
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/hub/manifests/%s", models_dir, m->owner);
        rmdir(dir); /* fails while other repos of the owner remain: fine */
        return SIPP_OK;
    }
    char *data = sipp__hub_manifest_dump(m);
    if (!data) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/hub/manifests/%s", models_dir, m->owner);
    sipp_status st = mkdir_p(dir, err);
    if (st == SIPP_OK) st = write_atomic(path, data, strlen(data), err);
    free(data);
    return st;
}

/* ---- talking to the hub -------------------------------------------------------------------- */

typedef struct hub_ctx {
    const sipp__hub_params *p;
    char base[2048];        /* without a trailing '/' */
    char auth[8192];        /* "Authorization: Bearer ..." or "" */
    sipp__hub_ref ref;
    char name[sizeof(((sipp__hub_pulled *)0)->name)];
    char next_page[4096];   /* Link: <...>; rel="next" of the last listing page */
} hub_ctx;

static void emit(hub_ctx *c, sipp__hub_event_kind kind, const char *path, size_t index,
                 size_t count, uint64_t done, uint64_t total) {
    if (!c->p->on_event) return;
    sipp__hub_event ev = {.kind = kind, .path = path, .index = index, .count = count,
                          .done = done, .total = total};
    c->p->on_event(&ev, c->p->ud);
}

static bool ctx_abort(void *ud) {
    hub_ctx *c = ud;
    return c->p->should_abort && c->p->should_abort(c->p->ud);
}

/* The hub's {"error": "..."} text, cut to printable ASCII, or "". */
static void hub_error_text(const sipp__buf *body, char *out, size_t cap) {
    out[0] = '\0';
    if (!body->len) return;
    json_t *j = json_loadb(body->data, body->len, 0, NULL);
    const char *m = json_string_value(json_object_get(j, "error"));
    if (m) {
        size_t k = 0;
        for (const char *s = m; *s && k + 1 < cap && k < 160; s++)
            out[k++] = (*s >= 0x20 && *s < 0x7f) ? *s : ' ';
        out[k] = '\0';
    }
    json_decref(j);
}

/* Maps a final non-2xx HTTP status to an error naming `what`. */
static sipp_status http_fail(hub_ctx *c, long status, const sipp__buf *body, const char *what,
                             sipp_error *err) {
    char hub[200];
    hub_error_text(body, hub, sizeof hub);
    const char *sep = hub[0] ? " (hub: " : "", *end = hub[0] ? ")" : "";
    int code = (int)status;
    if (status == 401)
        return c->auth[0]
                   ? sipp__fail(err, SIPP_AUTHENTICATION, code,
                                "the hub refused HF_TOKEN for %s (401): check the token%s%s%s",
                                what, sep, hub, end)
                   : sipp__fail(err, SIPP_AUTHENTICATION, code,
                                "%s needs a login or does not exist (401): check the name, or "
                                "set HF_TOKEN to a token with access%s%s%s", what, sep, hub, end);
    if (status == 403)
        return sipp__fail(err, SIPP_AUTHORIZATION, code,
                          "no access to %s (403): a gated repo; accept its terms on the hub with "
                          "the account of HF_TOKEN%s%s%s", what, sep, hub, end);
    if (status == 404)
        return sipp__fail(err, SIPP_NOT_FOUND, code, "%s was not found on the hub (404)%s%s%s",
                          what, sep, hub, end);
    if (status == 429)
        return sipp__fail(err, SIPP_RATE_LIMITED, code,
                          "the hub's rate limit was hit (429); try again later%s%s%s", sep, hub, end);
    return sipp__fail(err, SIPP_UPSTREAM_ERROR, code, "the hub answered HTTP %ld for %s%s%s%s", status,
                      what, sep, hub, end);
}

typedef struct api_read {
    sipp__buf body;
    hub_ctx *c;
    bool too_big;
} api_read;

static bool api_abort(void *ud) { return ctx_abort(((api_read *)ud)->c); }

static bool api_body(const char *data, size_t len, void *ud) {
    api_read *r = ud;
    if (sipp__buf_append(&r->body, data, len) == SIPP_OK) return true;
    r->too_big = true;
    return false;
}

/* Link: <https://hub/api/...?cursor=...>; rel="next" */
static void api_header(int hop, const char *name, size_t nl, const char *v, size_t vl, void *ud) {
    (void)hop;
    api_read *r = ud;
    if (nl != 4 || strncasecmp(name, "link", 4) != 0) return;
    const char *lt = memchr(v, '<', vl);
    const char *gt = lt ? memchr(lt, '>', vl - (size_t)(lt - v)) : NULL;
    if (!gt || !memmem(gt, vl - (size_t)(gt - v), "rel=\"next\"", 10)) return;
    size_t ul = (size_t)(gt - lt - 1);
    if (ul < sizeof r->c->next_page) {
        memcpy(r->c->next_page, lt + 1, ul);
        r->c->next_page[ul] = '\0';
    }
}

/* GETs an API URL into *body (SIPP__HUB_JSON_MAX at most); a non-2xx answer is an error. */
static sipp_status api_get(hub_ctx *c, const char *url, const char *what, sipp__buf *body,
                           sipp_error *err) {
    api_read r = {.c = c};
    sipp__buf_init(&r.body, SIPP__HUB_JSON_MAX);
    sipp__buf ebody;
    sipp__buf_init(&ebody, SIPP__HTTP_FETCH_ERROR_MAX);
    const char *headers[] = {"Accept: application/json"};
    sipp__http_get g = {.url = url, .auth_header = c->auth[0] ? c->auth : NULL,
                        .headers = headers, .n_headers = 1,
                        .connect_timeout_ms = CONNECT_TIMEOUT_MS, .idle_timeout_ms = IDLE_TIMEOUT_MS,
                        .max_redirects = MAX_REDIRECTS,
                        .allow_private_network = c->p->allow_private_network, .proxy = c->p->proxy,
                        .on_header = api_header, .on_body = api_body, .should_abort = api_abort, .ud = &r,
                        .error_body = &ebody};
    c->next_page[0] = '\0';
    long status = 0;
    sipp_status st = sipp__http_get_run(&g, &status, err);
    if (st == SIPP_CANCELLED && r.too_big)
        st = sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the hub's answer for %s is over %u MiB", what,
                        SIPP__HUB_JSON_MAX >> 20);
    if (st == SIPP_OK && (status < 200 || status >= 300)) st = http_fail(c, status, &ebody, what, err);
    sipp__buf_free(&ebody);
    if (st != SIPP_OK) {
        sipp__buf_free(&r.body);
        return st;
    }
    *body = r.body;
    return SIPP_OK;
}

static sipp_status list_files(hub_ctx *c, char commit[41], sipp__hub_files *files,
                              sipp_error *err) {
    char url[4096], what[300];
    snprintf(what, sizeof what, "%s/%s", c->ref.owner, c->ref.repo);
    snprintf(url, sizeof url, "%s/api/models/%s/%s/refs", c->base, c->ref.owner, c->ref.repo);
    sipp__buf body;
    sipp_status st = api_get(c, url, what, &body, err);
    if (st != SIPP_OK) return st;
    st = sipp__hub_refs_parse(body.data ? body.data : "", body.len, commit, err);
    sipp__buf_free(&body);
    if (st != SIPP_OK) return st;
    snprintf(url, sizeof url, "%s/api/models/%s/%s/tree/%s?recursive=true", c->base, c->ref.owner,
             c->ref.repo, commit);
    for (int page = 0; page < MAX_PAGES; page++) {
        st = api_get(c, url, what, &body, err);
        if (st != SIPP_OK) return st;
        st = sipp__hub_files_parse(body.data ? body.data : "", body.len, files, err);
        sipp__buf_free(&body);
        if (st != SIPP_OK || !c->next_page[0]) return st;
        /* the next page must stay on the hub's origin: it gets the token */
        if (strncmp(c->next_page, c->base, strlen(c->base)) != 0 ||
            c->next_page[strlen(c->base)] != '/')
            return sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the hub's next page is on another host");
        snprintf(url, sizeof url, "%s", c->next_page);
    }
    return sipp__fail(err, SIPP_UPSTREAM_ERROR, 0, "the repo's file list has more than %d pages",
                      MAX_PAGES);
}

/* ---- downloading one blob ------------------------------------------------------------------ */

typedef struct dl {
    hub_ctx *c;
    const sipp__hub_file *f;
    size_t index, count;
    int fd;
    sipp__sha256 *sha;
    uint64_t have;
    long status;          /* of the hop in progress */
    int hop;
    bool body_started;
    bool restarted;       /* the server sent the whole file for a range request */
    uint64_t range_start; /* from Content-Range of a 206 */
    bool range_seen;
    char linked_etag[80];
    uint64_t linked_size;
    sipp_status fail;     /* set by a callback that stopped the transfer */
    char fail_msg[256];
} dl;

static bool dl_abort(void *ud) { return ctx_abort(((dl *)ud)->c); }

static void dl_status(int hop, long status, void *ud) {
    dl *d = ud;
    d->hop = hop;
    d->status = status;
}

static void dl_header(int hop, const char *name, size_t nl, const char *v, size_t vl, void *ud) {
    dl *d = ud;
    (void)hop;
    char val[128];
    if (vl >= sizeof val) return;
    memcpy(val, v, vl);
    val[vl] = '\0';
    if (nl == 13 && strncasecmp(name, "x-linked-etag", nl) == 0) {
        const char *s = val[0] == '"' ? val + 1 : val;
        snprintf(d->linked_etag, sizeof d->linked_etag, "%.*s", (int)strcspn(s, "\""), s);
    } else if (nl == 13 && strncasecmp(name, "x-linked-size", nl) == 0) {
        d->linked_size = strtoull(val, NULL, 10);
    } else if (nl == 13 && strncasecmp(name, "content-range", nl) == 0) {
        unsigned long long a;
        if (sscanf(val, "bytes %llu-", &a) == 1) {
            d->range_start = a;
            d->range_seen = true;
        }
    }
}

static bool dl_fail(dl *d, sipp_status st, const char *msg) {
    d->fail = st;
    snprintf(d->fail_msg, sizeof d->fail_msg, "%s", msg);
    return false;
}

static bool dl_body(const char *data, size_t len, void *ud) {
    dl *d = ud;
    if (!d->body_started) {
        d->body_started = true;
        if (d->status == 200 && d->have > 0) { /* the range was ignored: start over */
            if (ftruncate(d->fd, 0) != 0 || lseek(d->fd, 0, SEEK_SET) != 0)
                return dl_fail(d, SIPP_IO_ERROR, "cannot truncate the partial file");
            sipp__sha256_end(d->sha, (uint8_t[32]){0});
            if (!(d->sha = sipp__sha256_begin())) return dl_fail(d, SIPP_OUT_OF_MEMORY, "out of memory");
            d->have = 0;
            d->restarted = true;
            emit(d->c, SIPP__HUB_EV_RESTART, d->f->path, d->index, d->count, 0, d->f->size);
        } else if (d->status == 206 && (!d->range_seen || d->range_start != d->have)) {
            return dl_fail(d, SIPP_UPSTREAM_ERROR, "the hub answered a different range than asked");
        }
    }
    if (len > d->f->size - d->have)
        return dl_fail(d, SIPP_UPSTREAM_ERROR, "the hub sent more bytes than the file's size");
    for (size_t off = 0; off < len;) {
        ssize_t n = write(d->fd, data + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            char m[200];
            snprintf(m, sizeof m, "cannot write the partial file: %s", strerror(errno));
            return dl_fail(d, SIPP_IO_ERROR, m);
        }
        off += (size_t)n;
    }
    sipp__sha256_update(d->sha, data, len);
    d->have += len;
    emit(d->c, SIPP__HUB_EV_DATA, d->f->path, d->index, d->count, d->have, d->f->size);
    return true;
}

static void hex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Hashes the first `len` bytes of fd into h. */
static bool hash_prefix(int fd, uint64_t len, sipp__sha256 *h) {
    char buf[1 << 16];
    uint64_t off = 0;
    while (off < len) {
        size_t want = len - off < sizeof buf ? (size_t)(len - off) : sizeof buf;
        ssize_t n = pread(fd, buf, want, (off_t)off);
        if (n <= 0) return false;
        sipp__sha256_update(h, buf, (size_t)n);
        off += (uint64_t)n;
    }
    return true;
}

/* Ensures blobs/sha256-<f->sha256> holds the file: downloads (resuming a partial) and verifies. */
static sipp_status fetch_blob(hub_ctx *c, const char *commit, const sipp__hub_file *f,
                              size_t index, size_t count, uint64_t *downloaded, sipp_error *err) {
    const char *md = c->p->models_dir;
    char blob[PATH_MAX], part[PATH_MAX + 16];
    blob_path(blob, sizeof blob, md, f->sha256);
    snprintf(part, sizeof part, "%s.partial", blob);
    struct stat sb;
    if (stat(blob, &sb) == 0 && (uint64_t)sb.st_size == f->size) {
        emit(c, SIPP__HUB_EV_HAVE, f->path, index, count, f->size, f->size);
        return SIPP_OK;
    }
    dl d = {.c = c, .f = f, .index = index, .count = count};
    d.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d.fd < 0) return io_fail(err, "create", part);
    if (flock(d.fd, LOCK_EX | LOCK_NB) != 0) {
        close(d.fd);
        return sipp__fail(err, SIPP_BUSY, 0, "another sipp pull is downloading %s; wait for it",
                          f->path);
    }
    sipp_status st = SIPP_OK;
    if (fstat(d.fd, &sb) != 0) st = io_fail(err, "read", part);
    d.have = st == SIPP_OK ? (uint64_t)sb.st_size : 0;
    if (st == SIPP_OK && d.have > f->size) {
        if (ftruncate(d.fd, 0) != 0) st = io_fail(err, "truncate", part);
        d.have = 0;
    }
    if (st == SIPP_OK && !(d.sha = sipp__sha256_begin()))
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (st == SIPP_OK && d.have && !hash_prefix(d.fd, d.have, d.sha))
        st = io_fail(err, "read", part);
    if (st == SIPP_OK && lseek(d.fd, (off_t)d.have, SEEK_SET) < 0) st = io_fail(err, "seek", part);
    uint64_t resumed = d.have;
    char url[4096], what[SIPP__HUB_PATH_MAX + 300];
    snprintf(url, sizeof url, "%s/%s/%s/resolve/%s/%s", c->base, c->ref.owner, c->ref.repo,
             commit, f->path);
    snprintf(what, sizeof what, "%s in %s/%s", f->path, c->ref.owner, c->ref.repo);
    for (int attempt = 0; st == SIPP_OK && d.have < f->size && attempt < 2; attempt++) {
        emit(c, SIPP__HUB_EV_START, f->path, index, count, d.have, f->size);
        sipp__buf ebody;
        sipp__buf_init(&ebody, SIPP__HTTP_FETCH_ERROR_MAX);
        sipp__http_get g = {.url = url, .auth_header = c->auth[0] ? c->auth : NULL,
                            .range_from = d.have, .connect_timeout_ms = CONNECT_TIMEOUT_MS,
                            .idle_timeout_ms = IDLE_TIMEOUT_MS, .max_redirects = MAX_REDIRECTS,
                            .allow_private_network = c->p->allow_private_network,
                            .proxy = c->p->proxy,
                            .on_status = dl_status, .on_header = dl_header, .on_body = dl_body,
                            .should_abort = dl_abort, .ud = &d, .error_body = &ebody};
        d.body_started = d.range_seen = false;
        long status = 0;
        uint64_t before = d.have;
        st = sipp__http_get_run(&g, &status, err);
        if (d.fail != SIPP_OK) st = sipp__fail(err, d.fail, 0, "%s: %s", f->path, d.fail_msg);
        *downloaded += d.have >= before ? d.have - before : d.have;
        if (st == SIPP_OK && status == 416 && d.have < f->size) {
            /* the hub cannot serve our range: the partial is not a prefix of its file */
            if (ftruncate(d.fd, 0) != 0 || lseek(d.fd, 0, SEEK_SET) != 0) st = io_fail(err, "truncate", part);
            sipp__sha256_end(d.sha, (uint8_t[32]){0});
            d.sha = sipp__sha256_begin();
            d.have = 0;
            if (st == SIPP_OK && !d.sha) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
            if (st == SIPP_OK) emit(c, SIPP__HUB_EV_RESTART, f->path, index, count, 0, f->size);
            sipp__buf_free(&ebody);
            continue;
        }
        if (st == SIPP_OK && (status < 200 || status >= 300)) st = http_fail(c, status, &ebody, what, err);
        sipp__buf_free(&ebody);
        if (st == SIPP_OK && d.linked_etag[0] && sipp__hub_hex_ok(d.linked_etag, 64) &&
            strcmp(d.linked_etag, f->sha256) != 0)
            st = sipp__fail(err, SIPP_UPSTREAM_ERROR, 0,
                            "%s: the hub's file list and its download disagree on the sha256",
                            f->path);
        if (st == SIPP_OK && d.linked_size && d.linked_size != f->size)
            st = sipp__fail(err, SIPP_UPSTREAM_ERROR, 0,
                            "%s: the hub's file list and its download disagree on the size", f->path);
        break;
    }
    if (st == SIPP_OK && d.have < f->size)
        st = sipp__fail(err, SIPP_TRANSPORT, 0,
                        "the download of %s stopped at %llu of %llu bytes; pull again to resume",
                        f->path, (unsigned long long)d.have, (unsigned long long)f->size);
    if (st == SIPP_CANCELLED)
        st = sipp__fail(err, SIPP_CANCELLED, 0,
                        "interrupted: %llu of %llu bytes of %s kept; pull again to resume",
                        (unsigned long long)d.have, (unsigned long long)f->size, f->path);
    if (st == SIPP_OK) {
        emit(c, SIPP__HUB_EV_VERIFY, f->path, index, count, d.have, f->size);
        uint8_t digest[32];
        char got[65];
        sipp__sha256_end(d.sha, digest);
        d.sha = NULL;
        hex(digest, 32, got);
        if (strcmp(got, f->sha256) != 0) {
            close(d.fd);
            unlink(part);
            return sipp__fail(err, SIPP_UPSTREAM_ERROR, 0,
                              "%s failed its sha256 check (expected %.12s..., got %.12s...); the "
                              "download was deleted",
                              f->path, f->sha256, got);
        }
        if (fsync(d.fd) != 0) st = io_fail(err, "write", part);
        else if (fchmod(d.fd, 0444) != 0 || rename(part, blob) != 0) st = io_fail(err, "store", blob);
        else fsync_dir(blob);
        if (st == SIPP_OK) emit(c, SIPP__HUB_EV_DONE, f->path, index, count, f->size, f->size);
    }
    (void)resumed;
    if (d.sha) sipp__sha256_end(d.sha, (uint8_t[32]){0});
    close(d.fd);
    return st;
}

/* files/<owner>/<repo>/<commit>/<path> -> ../(depth)/blobs/sha256-<hex> */
static sipp_status make_link(hub_ctx *c, const char *commit, const sipp__hub_file *f,
                             char *out, size_t cap, sipp_error *err) {
    const char *md = c->p->models_dir;
    link_path(out, cap, md, c->ref.owner, c->ref.repo, commit, f->path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", out);
    *strrchr(dir, '/') = '\0';
    sipp_status st = mkdir_p(dir, err);
    if (st != SIPP_OK) return st;
    char target[PATH_MAX] = "";
    size_t depth = 4; /* files, owner, repo, commit */
    for (const char *p = f->path; *p; p++) depth += *p == '/';
    for (size_t i = 0; i < depth; i++) strcat(target, "../");
    strcat(target, "blobs/sha256-");
    strcat(target, f->sha256);
    char cur[PATH_MAX];
    ssize_t n = readlink(out, cur, sizeof cur - 1);
    if (n > 0 && (cur[n] = '\0', strcmp(cur, target) == 0)) return SIPP_OK;
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", out, (long)getpid());
    unlink(tmp);
    if (symlink(target, tmp) != 0) return io_fail(err, "link", tmp);
    if (rename(tmp, out) != 0) {
        unlink(tmp);
        return io_fail(err, "link", out);
    }
    return SIPP_OK;
}

/* ---- pull ---------------------------------------------------------------------------------- */

static sipp_status ctx_init(hub_ctx *c, const sipp__hub_params *p, sipp_error *err) {
    memset(c, 0, sizeof *c);
    c->p = p;
    const char *base = p->base_url && *p->base_url ? p->base_url : "https://huggingface.co";
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') bl--;
    if (bl == 0 || bl >= sizeof c->base)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "the hub URL is empty or too long");
    memcpy(c->base, base, bl);
    sipp_error uerr = sipp__error_defaults();
    if (sipp__http_url_check_ex(c->base, p->allow_private_network ? SIPP__URL_ALLOW_PRIVATE : 0,
                                &uerr) != SIPP_OK)
        return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0, "the hub URL (SIPP_HUB_URL): %s",
                          uerr.message);
    if (p->token && *p->token) {
        size_t tl = strlen(p->token);
        bool ok = tl < sizeof c->auth - 32;
        for (size_t i = 0; i < tl && ok; i++)
            ok = p->token[i] > 0x20 && p->token[i] < 0x7f;
        if (!ok)
            return sipp__fail(err, SIPP_INVALID_ARGUMENT, 0,
                              "HF_TOKEN holds characters a token cannot have (spaces, control "
                              "characters) or is too long");
        snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", p->token);
    }
    return SIPP_OK;
}

sipp_status sipp__hub_pull(const sipp__hub_params *p, const char *name, sipp__hub_pulled *out,
                           sipp_error *err) {
    memset(out, 0, sizeof *out);
    hub_ctx *c = calloc(1, sizeof *c);
    if (!c) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    sipp__hub_files files = {0};
    sipp__hub_plan *plan = calloc(1, sizeof *plan);
    sipp__hub_manifest m = {0};
    sipp__hub_entry e = {0};
    int gc_fd = -1, mf_fd = -1;
    char path[PATH_MAX], commit[41] = "";
    sipp_status st = plan ? ctx_init(c, p, err) : sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (st == SIPP_OK) st = sipp__hub_ref_parse(name, &c->ref, err);
    if (st == SIPP_OK) {
        sipp__hub_ref_name(&c->ref, c->name, sizeof c->name);
        hub_path(path, sizeof path, p->models_dir, "blobs");
        st = mkdir_p(path, err);
    }
    if (st == SIPP_OK) {
        hub_path(path, sizeof path, p->models_dir, ".gc.lock");
        if ((gc_fd = lock_file(path, LOCK_SH, false)) < 0) st = io_fail(err, "lock", path);
    }
    if (st == SIPP_OK) st = list_files(c, commit, &files, err);
    if (st == SIPP_OK) st = sipp__hub_plan_make(&files, &c->ref, plan, err);
    const sipp__hub_file *todo[SIPP__HUB_MAX_SHARDS + 1];
    size_t n_todo = 0;
    if (st == SIPP_OK) {
        for (size_t i = 0; i < plan->n_model; i++) todo[n_todo++] = plan->model[i];
        if (p->with_mmproj && plan->mmproj) todo[n_todo++] = plan->mmproj;
        if (p->on_event) {
            sipp__hub_event ev = {.kind = SIPP__HUB_EV_RESOLVED, .path = plan->model[0]->path,
                                  .count = n_todo, .commit = commit};
            for (size_t i = 0; i < n_todo; i++) ev.total += todo[i]->size;
            p->on_event(&ev, p->ud);
        }
        for (size_t i = 0; i < n_todo && st == SIPP_OK; i++)
            if (!todo[i]->sha256[0])
                st = sipp__fail(err, SIPP_UPSTREAM_ERROR, 0,
                                "the hub gives no sha256 for %s (not an LFS file); Sipp stores "
                                "only verified files", todo[i]->path);
    }
    if (st == SIPP_OK) { /* room on disk for what is missing */
        uint64_t need = 0;
        for (size_t i = 0; i < n_todo; i++) {
            char b[PATH_MAX], pb[PATH_MAX + 16];
            struct stat sb;
            blob_path(b, sizeof b, p->models_dir, todo[i]->sha256);
            snprintf(pb, sizeof pb, "%s.partial", b);
            if (stat(b, &sb) == 0) continue;
            uint64_t have = stat(pb, &sb) == 0 ? (uint64_t)sb.st_size : 0;
            need += todo[i]->size > have ? todo[i]->size - have : 0;
        }
        struct statvfs vfs;
        hub_path(path, sizeof path, p->models_dir, "blobs");
        if (statvfs(path, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < need)
            st = sipp__fail(err, SIPP_IO_ERROR, 0, "not enough disk space in %s: %llu MiB needed, %llu MiB free",
                            p->models_dir, (unsigned long long)(need >> 20),
                            (unsigned long long)(((uint64_t)vfs.f_bavail * vfs.f_frsize) >> 20));
    }
    for (size_t i = 0; i < n_todo && st == SIPP_OK; i++)
        st = fetch_blob(c, commit, todo[i], i + 1, n_todo, &out->downloaded, err);
    for (size_t i = 0; i < n_todo && st == SIPP_OK; i++) {
        char lp[PATH_MAX];
        st = make_link(c, commit, todo[i], lp, sizeof lp, err);
        if (st == SIPP_OK && i == 0) snprintf(out->path, sizeof out->path, "%s", lp);
        if (st == SIPP_OK && todo[i] == plan->mmproj) snprintf(out->mmproj, sizeof out->mmproj, "%s", lp);
        out->bytes += todo[i]->size;
    }
    if (st == SIPP_OK) { /* the entry: built, then put under the manifest lock */
        e.kind = c->ref.kind;
        memcpy(e.commit, commit, 41);
        e.tag = sipp__strdup(c->ref.tag);
        e.files = calloc(plan->n_model, sizeof *e.files);
        if (!e.tag || !e.files) st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        for (size_t i = 0; i < plan->n_model && st == SIPP_OK; i++) {
            e.files[i] = *plan->model[i];
            if (!(e.files[i].path = sipp__strdup(plan->model[i]->path)))
                st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
            else e.n_files++;
        }
        if (st == SIPP_OK && p->with_mmproj && plan->mmproj) {
            e.mmproj = *plan->mmproj;
            if (!(e.mmproj.path = sipp__strdup(plan->mmproj->path)))
                st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
        }
    }
    if (st == SIPP_OK) {
        hub_path(path, sizeof path, p->models_dir, ".manifest.lock");
        if ((mf_fd = lock_file(path, LOCK_EX, false)) < 0) st = io_fail(err, "lock", path);
    }
    if (st == SIPP_OK) st = manifest_load(p->models_dir, c->ref.owner, c->ref.repo, &m, err);
    if (st == SIPP_OK && sipp__hub_manifest_put(&m, &e) != SIPP_OK)
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (st == SIPP_OK) st = manifest_save(p->models_dir, &m, err);
    if (st == SIPP_OK) snprintf(out->name, sizeof out->name, "%s", c->name);
    unlock_file(mf_fd);
    unlock_file(gc_fd);
    sipp__hub_entry_free(&e);
    sipp__hub_manifest_free(&m);
    sipp__hub_files_free(&files);
    free(plan);
    free(c);
    return st;
}

/* ---- reading the store --------------------------------------------------------------------- */

sipp_status sipp__hub_resolve(const char *models_dir, const char *name, char *path, size_t cap,
                              sipp_error *err) {
    sipp__hub_ref ref;
    sipp_status st = sipp__hub_ref_parse(name, &ref, err);
    if (st != SIPP_OK) return st;
    sipp__hub_manifest m;
    st = manifest_load(models_dir, ref.owner, ref.repo, &m, err);
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
        link_path(path, cap, models_dir, ref.owner, ref.repo, e->commit, e->files[0].path);
        struct stat sb;
        for (size_t i = 0; i < e->n_files && st == SIPP_OK; i++) {
            char b[PATH_MAX];
            blob_path(b, sizeof b, models_dir, e->files[i].sha256);
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
    if (manifest_load(models_dir, owner, repo, &m, NULL) != SIPP_OK) return SIPP_OK; /* skip */
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
        link_path(p, sizeof p, models_dir, owner, repo, e->commit, e->files[0].path);
        it->path = sipp__strdup(p);
        it->commit = sipp__strdup(e->commit);
        it->complete = true;
        for (size_t k = 0; k <= e->n_files; k++) {
            const sipp__hub_file *f = k < e->n_files ? &e->files[k] : e->mmproj.path ? &e->mmproj : NULL;
            if (!f) break;
            it->bytes += f->size;
            char b[PATH_MAX];
            struct stat sb;
            blob_path(b, sizeof b, models_dir, f->sha256);
            if (stat(b, &sb) != 0) it->complete = false;
        }
        it->n_files = e->n_files;
        if (e->mmproj.path) {
            link_path(p, sizeof p, models_dir, owner, repo, e->commit, e->mmproj.path);
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
    hub_path(dir, sizeof dir, models_dir, "manifests");
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
    sipp_status st = manifest_load(models_dir, owner, repo, &m, err);
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
    hub_path(path, sizeof path, models_dir, "");
    struct stat sb;
    if (stat(path, &sb) != 0) {
        char canon[sizeof(((sipp__hub_pulled *)0)->name)];
        sipp__hub_ref_name(&ref, canon, sizeof canon);
        return sipp__fail(err, SIPP_NOT_FOUND, 0, "'%s' was not pulled", canon);
    }
    hub_path(path, sizeof path, models_dir, ".gc.lock");
    int gc_fd = lock_file(path, LOCK_EX, true);
    if (gc_fd < 0)
        return errno == EWOULDBLOCK
                   ? sipp__fail(err, SIPP_BUSY, 0, "a sipp pull is running; remove when it ends")
                   : io_fail(err, "lock", path);
    hub_path(path, sizeof path, models_dir, ".manifest.lock");
    int mf_fd = lock_file(path, LOCK_EX, false);
    if (mf_fd < 0) st = io_fail(err, "lock", path);
    sipp__hub_manifest m = {0};
    if (st == SIPP_OK) st = manifest_load(models_dir, ref.owner, ref.repo, &m, err);
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
            st = manifest_save(models_dir, &m, err);
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
        hub_path(dir, sizeof dir, models_dir, "blobs");
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
    unlock_file(mf_fd);
    unlock_file(gc_fd);
    return st;
}
