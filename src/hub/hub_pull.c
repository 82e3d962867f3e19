/*
 * hub_pull.c — `sipp pull`, the network half of the hub client: resolve a reference through the
 * hub's API (refs, paged tree listing), pick the files (hub_parse.c), download with resume,
 * verify, and store through hub_store.c.
 *
 * The caller's thread (blocking; should_abort is polled). Invariants:
 * - A blob is written only as blobs/sha256-<hex>.partial (locked with flock while written) and
 *   renamed to its final name after its bytes hashed to <hex>: a final blob is always verified.
 * - A name becomes visible only when its manifest entry is written, after all its blobs and
 *   links exist.
 * - A pull holds the store's gc lock shared for its whole run, so `sipp rm` never deletes a blob
 *   a running pull is about to name.
 * - The token goes into one header line given to http_fetch.c, never into a message.
 */
#define _GNU_SOURCE
#include "hub_int.h"

#include "../http/http_int.h"

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
    sipp__hub_blob_path(blob, sizeof blob, md, f->sha256);
    snprintf(part, sizeof part, "%s.partial", blob);
    struct stat sb;
    if (stat(blob, &sb) == 0 && (uint64_t)sb.st_size == f->size) {
        emit(c, SIPP__HUB_EV_HAVE, f->path, index, count, f->size, f->size);
        return SIPP_OK;
    }
    dl d = {.c = c, .f = f, .index = index, .count = count};
    d.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d.fd < 0) return sipp__hub_io_fail(err, "create", part);
    if (flock(d.fd, LOCK_EX | LOCK_NB) != 0) {
        close(d.fd);
        return sipp__fail(err, SIPP_BUSY, 0, "another sipp pull is downloading %s; wait for it",
                          f->path);
    }
    sipp_status st = SIPP_OK;
    if (fstat(d.fd, &sb) != 0) st = sipp__hub_io_fail(err, "read", part);
    d.have = st == SIPP_OK ? (uint64_t)sb.st_size : 0;
    if (st == SIPP_OK && d.have > f->size) {
        if (ftruncate(d.fd, 0) != 0) st = sipp__hub_io_fail(err, "truncate", part);
        d.have = 0;
    }
    if (st == SIPP_OK && !(d.sha = sipp__sha256_begin()))
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (st == SIPP_OK && d.have && !hash_prefix(d.fd, d.have, d.sha))
        st = sipp__hub_io_fail(err, "read", part);
    if (st == SIPP_OK && lseek(d.fd, (off_t)d.have, SEEK_SET) < 0) st = sipp__hub_io_fail(err, "seek", part);
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
            if (ftruncate(d.fd, 0) != 0 || lseek(d.fd, 0, SEEK_SET) != 0) st = sipp__hub_io_fail(err, "truncate", part);
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
        if (fsync(d.fd) != 0) st = sipp__hub_io_fail(err, "write", part);
        else if (fchmod(d.fd, 0444) != 0 || rename(part, blob) != 0) st = sipp__hub_io_fail(err, "store", blob);
        else sipp__file_sync_parent(blob);
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
    sipp__hub_link_path(out, cap, md, c->ref.owner, c->ref.repo, commit, f->path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", out);
    *strrchr(dir, '/') = '\0';
    sipp_status st = sipp__hub_mkdir_p(dir, err);
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
    if (symlink(target, tmp) != 0) return sipp__hub_io_fail(err, "link", tmp);
    if (rename(tmp, out) != 0) {
        unlink(tmp);
        return sipp__hub_io_fail(err, "link", out);
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
        sipp__hub_path(path, sizeof path, p->models_dir, "blobs");
        st = sipp__hub_mkdir_p(path, err);
    }
    if (st == SIPP_OK) {
        sipp__hub_path(path, sizeof path, p->models_dir, ".gc.lock");
        if ((gc_fd = sipp__hub_lock(path, LOCK_SH, false)) < 0) st = sipp__hub_io_fail(err, "lock", path);
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
            sipp__hub_blob_path(b, sizeof b, p->models_dir, todo[i]->sha256);
            snprintf(pb, sizeof pb, "%s.partial", b);
            if (stat(b, &sb) == 0) continue;
            uint64_t have = stat(pb, &sb) == 0 ? (uint64_t)sb.st_size : 0;
            need += todo[i]->size > have ? todo[i]->size - have : 0;
        }
        struct statvfs vfs;
        sipp__hub_path(path, sizeof path, p->models_dir, "blobs");
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
        sipp__hub_path(path, sizeof path, p->models_dir, ".manifest.lock");
        if ((mf_fd = sipp__hub_lock(path, LOCK_EX, false)) < 0) st = sipp__hub_io_fail(err, "lock", path);
    }
    if (st == SIPP_OK) st = sipp__hub_manifest_load(p->models_dir, c->ref.owner, c->ref.repo, &m, err);
    if (st == SIPP_OK && sipp__hub_manifest_put(&m, &e) != SIPP_OK)
        st = sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    if (st == SIPP_OK) st = sipp__hub_manifest_save(p->models_dir, &m, err);
    if (st == SIPP_OK) snprintf(out->name, sizeof out->name, "%s", c->name);
    sipp__hub_unlock(mf_fd);
    sipp__hub_unlock(gc_fd);
    sipp__hub_entry_free(&e);
    sipp__hub_manifest_free(&m);
    sipp__hub_files_free(&files);
    free(plan);
    free(c);
    return st;
}

