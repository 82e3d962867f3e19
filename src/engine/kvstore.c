/*
 * kvstore.c — prefix snapshots in RAM and on disk (see kvstore.h for the contract and the file
 * layout). Engine-thread only, but for sipp__kvstore_peek (routing estimates, any thread): every
 * public function that reads or changes the list holds `mu`, which only a peek ever contends.
 *
 * Both tiers are one list of entries, most recently used first. An entry has its state in RAM,
 * a file on disk, or both. Budgets: `ram_used` counts RAM state bytes, `disk_used` counts file
 * sizes; past a budget the least recently used entries leave that tier (RAM entries move to
 * disk when there is a directory).
 *
 * Crash safety: a file is complete under its `.kv` name or absent (temp + fsync + rename +
 * directory fsync). Opening a directory removes temp files of writers that are gone and `.kv`
 * files of this version cut short; checksums catch the rest when a file is restored.
 *
 * Hardening: the directory must belong to this uid and be writable by no one else
 * (sipp__kvstore_dir_check); temporary files are created O_EXCL|O_NOFOLLOW, and every file read
 * back is opened O_NOFOLLOW and must be a regular file. Files are written by
 * sipp__file_write_atomic (src/common/file.c), which gives both properties.
 */
#define _GNU_SOURCE
#include "kvstore.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

static const char KV_MAGIC[8] = {'S', 'I', 'P', 'P', 'K', 'V', 'S', '\0'};

struct sipp__kv_entry {
    struct sipp__kv_entry *prev, *next; /* LRU list, most recent first */
    char *scope;
    uint32_t scope_len;
    int32_t *tokens;
    uint32_t n_tokens;
    uint8_t *state; /* NULL when the entry lives on disk only */
    size_t state_len;
    char *path;     /* NULL when the entry is in RAM only */
    uint64_t file_len;
};

struct sipp__kvstore {
    sipp__kv_compat compat;
    uint64_t ram_budget, disk_budget;
    uint64_t ram_used, disk_used;
    char *dir;
    sipp__kv_entry *head, *tail;
    uint8_t *load_buf; /* the bytes of the last disk load */
    pthread_mutex_t mu;
};

/* ============================================================================================
 * File format
 * ========================================================================================== */

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

/* Header offsets */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_FINGERPRINT = 12, H_TYPE_K = 44, H_TYPE_V = 48, H_N_CTX = 52,
    H_SCOPE_LEN = 56, H_N_TOKENS = 60, H_STATE_LEN = 64, H_CHECKSUM = 72, H_END = 104,
};
_Static_assert(H_END == SIPP__KV_HEADER_LEN, "header length");

sipp_status sipp__kv_header_parse(const uint8_t *d, size_t len, uint64_t file_len,
                                  sipp__kv_file *out, sipp_error *err) {
    if (len < H_END) return sipp__fail(err, SIPP_IO_ERROR, 0, "snapshot: truncated header");
    if (memcmp(d + H_MAGIC, KV_MAGIC, 8) != 0)
        return sipp__fail(err, SIPP_IO_ERROR, 0, "snapshot: bad magic");
    uint32_t version = rd32(d + H_VERSION);
    if (version != SIPP__KV_FILE_VERSION)
        return sipp__fail(err, SIPP_IO_ERROR, 0, "snapshot: unsupported version %u", version);
    memset(out, 0, sizeof *out);
    memcpy(out->compat.fingerprint, d + H_FINGERPRINT, 32);
    out->compat.type_k = rd32(d + H_TYPE_K);
    out->compat.type_v = rd32(d + H_TYPE_V);
    out->compat.n_ctx = rd32(d + H_N_CTX);
    out->scope_len = rd32(d + H_SCOPE_LEN);
    out->n_tokens = rd32(d + H_N_TOKENS);
    out->state_len = rd64(d + H_STATE_LEN);
    if (file_len > SIPP__KV_FILE_MAX)
        return sipp__fail(err, SIPP_IO_ERROR, 0, "snapshot: file too large");
    uint64_t need = (uint64_t)H_END + out->scope_len + (uint64_t)out->n_tokens * 4 + out->state_len;
    if (out->scope_len > (1u << 20) || out->n_tokens > (1u << 24) ||
        out->state_len > SIPP__KV_FILE_MAX || need != file_len)
        return sipp__fail(err, SIPP_IO_ERROR, 0, "snapshot: lengths do not match the file");
    if (out->n_tokens == 0 || out->state_len == 0)
        return sipp__fail(err, SIPP_IO_ERROR, 0, "snapshot: empty");
    return SIPP_OK;
}

sipp_status sipp__kv_file_parse(const uint8_t *d, size_t len, const sipp__kv_compat *want,
                                sipp__kv_file *out, sipp_error *err) {
    sipp_status st = sipp__kv_header_parse(d, len, len, out, err);
    if (st != SIPP_OK) return st;
    uint8_t sum[32];
    if (!sipp__sha256_once(d + H_END, len - H_END, sum))
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "snapshot: out of memory");
    if (memcmp(sum, d + H_CHECKSUM, 32) != 0)
        return sipp__fail(err, SIPP_IO_ERROR, 0, "snapshot: checksum mismatch (corrupt file)");
    if (want && memcmp(want, &out->compat, sizeof *want) != 0)
        return sipp__fail(err, SIPP_IO_ERROR, 0, "snapshot: made for another model or context");
    out->scope = (const char *)(d + H_END);
    out->tokens = (const int32_t *)(const void *)(d + H_END + out->scope_len);
    out->state = d + H_END + out->scope_len + (size_t)out->n_tokens * 4;
    return SIPP_OK;
}

/* ============================================================================================
 * Entries and the LRU list
 * ========================================================================================== */

static void list_unlink(sipp__kvstore *s, sipp__kv_entry *e) {
    if (e->prev) e->prev->next = e->next; else s->head = e->next;
    if (e->next) e->next->prev = e->prev; else s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_front(sipp__kvstore *s, sipp__kv_entry *e) {
    e->prev = NULL;
    e->next = s->head;
    if (s->head) s->head->prev = e; else s->tail = e;
    s->head = e;
}

static void entry_drop_ram(sipp__kvstore *s, sipp__kv_entry *e) {
    if (!e->state) return;
    s->ram_used -= e->state_len;
    free(e->state);
    e->state = NULL;
}

static void entry_drop_file(sipp__kvstore *s, sipp__kv_entry *e) {
    if (!e->path) return;
    unlink(e->path);
    s->disk_used -= e->file_len;
    free(e->path);
    e->path = NULL;
    e->file_len = 0;
}

static void entry_free(sipp__kvstore *s, sipp__kv_entry *e) {
    list_unlink(s, e);
    entry_drop_ram(s, e);
    if (e->path) { /* forget, keep the file: it stays valid for a later process */
        s->disk_used -= e->file_len;
        free(e->path);
    }
    free(e->scope);
    free(e->tokens);
    free(e);
}

/* ============================================================================================
 * Disk tier
 * ========================================================================================== */

static char *entry_path(const sipp__kvstore *s, const char *scope, size_t scope_len,
                        const int32_t *tokens, uint32_t n) {
    sipp__sha256 *h = sipp__sha256_begin();
    if (!h) return NULL;
    sipp__sha256_update(h, s->compat.fingerprint, 32);
    uint8_t lens[8];
    wr32(lens, (uint32_t)scope_len);
    wr32(lens + 4, n);
    sipp__sha256_update(h, lens, 8);
    sipp__sha256_update(h, scope, scope_len);
    sipp__sha256_update(h, tokens, n * 4u);
    uint8_t sum[32];
    sipp__sha256_end(h, sum);
    /* The name is a hash: nothing a caller puts in a key can leave the directory. */
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", sum[i]);
    char *p = NULL;
    if (asprintf(&p, "%s/%s.kv", s->dir, hex) < 0) return NULL;
    return p;
}

/* Opens a snapshot or memo file for reading: never through a symlink, and only a regular file
 * (O_NONBLOCK: a FIFO planted under a snapshot's name must not block the open). -1 otherwise. */
static int open_regular(const char *path) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        errno = EINVAL;
        fd = -1;
    }
    return fd;
}

/* Writes the entry's RAM state to its file (temp + fsync + rename). */
static bool entry_write_file(sipp__kvstore *s, sipp__kv_entry *e) {
    if (!s->dir || !e->state || e->path) return e->path != NULL;
    char *path = entry_path(s, e->scope, e->scope_len, e->tokens, e->n_tokens);
    if (!path) return false;
    uint8_t hdr[H_END];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr + H_MAGIC, KV_MAGIC, 8);
    wr32(hdr + H_VERSION, SIPP__KV_FILE_VERSION);
    memcpy(hdr + H_FINGERPRINT, s->compat.fingerprint, 32);
    wr32(hdr + H_TYPE_K, s->compat.type_k);
    wr32(hdr + H_TYPE_V, s->compat.type_v);
    wr32(hdr + H_N_CTX, s->compat.n_ctx);
    wr32(hdr + H_SCOPE_LEN, e->scope_len);
    wr32(hdr + H_N_TOKENS, e->n_tokens);
    wr64(hdr + H_STATE_LEN, e->state_len);
    sipp__sha256 *h = sipp__sha256_begin();
    if (!h) {
        free(path);
        return false;
    }
    sipp__sha256_update(h, e->scope, e->scope_len);
    sipp__sha256_update(h, e->tokens, e->n_tokens * 4u);
    sipp__sha256_update(h, e->state, e->state_len);
    sipp__sha256_end(h, hdr + H_CHECKSUM);

    /* temp + fsync + rename + directory fsync: sipp__file_write_atomic (src/common/file.c) */
    const sipp__file_part parts[] = {{hdr, sizeof hdr},
                                     {e->scope, e->scope_len},
                                     {e->tokens, e->n_tokens * 4u},
                                     {e->state, e->state_len}};
    bool ok = sipp__file_write_atomic(path, parts, sizeof parts / sizeof parts[0], 0600) == 0;
    if (!ok) {
        free(path);
        sipp__log(SIPP_LOG_WARN, "snapshot: cannot write to %s: %s", s->dir, strerror(errno));
    } else {
        e->path = path;
        e->file_len = sizeof hdr + e->scope_len + e->n_tokens * 4u + e->state_len;
        s->disk_used += e->file_len;
    }
    return ok;
}

/* Removes least-recently-used files until the disk tier fits its budget. */
static void enforce_disk_budget(sipp__kvstore *s) {
    for (sipp__kv_entry *e = s->tail; e && s->disk_used > s->disk_budget;) {
        sipp__kv_entry *prev = e->prev;
        if (e->path) {
            entry_drop_file(s, e);
            if (!e->state) entry_free(s, e);
        }
        e = prev;
    }
}

/* Moves least-recently-used RAM states out until the RAM tier fits (to disk when possible). */
static void enforce_ram_budget(sipp__kvstore *s) {
    for (sipp__kv_entry *e = s->tail; e && s->ram_used > s->ram_budget;) {
        sipp__kv_entry *prev = e->prev;
        if (e->state) {
            if (s->dir) entry_write_file(s, e);
            entry_drop_ram(s, e);
            if (!e->path) entry_free(s, e);
        }
        e = prev;
    }
    enforce_disk_budget(s);
}

/* Reads a file's header and its scope and tokens into a new disk-only entry. Sets *torn when
 * the file is ours (magic and version) but its lengths do not match its size: a file cut short
 * (files are renamed into place only when complete, so this is damage, not a write in
 * progress). A file of another version or with another magic is left alone. */
static sipp__kv_entry *index_file(sipp__kvstore *s, const char *path, bool *torn) {
    *torn = false;
    int fd = open_regular(path);
    if (fd < 0) return NULL;
    struct stat st;
    uint8_t hdr[H_END];
    sipp__kv_file f;
    sipp__kv_entry *e = NULL;
    bool stat_ok = fstat(fd, &st) == 0;
    ssize_t got = stat_ok ? pread(fd, hdr, sizeof hdr, 0) : -1;
    if (stat_ok && got >= 12 && memcmp(hdr, KV_MAGIC, 8) == 0 &&
        rd32(hdr + H_VERSION) == SIPP__KV_FILE_VERSION &&
        (got != (ssize_t)sizeof hdr ||
         sipp__kv_header_parse(hdr, sizeof hdr, (uint64_t)st.st_size, &f, NULL) != SIPP_OK))
        *torn = true;
    if (stat_ok && got == (ssize_t)sizeof hdr &&
        sipp__kv_header_parse(hdr, sizeof hdr, (uint64_t)st.st_size, &f, NULL) == SIPP_OK &&
        memcmp(&f.compat, &s->compat, sizeof f.compat) == 0) {
        e = calloc(1, sizeof *e);
        if (e) {
            e->scope_len = f.scope_len;
            e->n_tokens = f.n_tokens;
            e->scope = malloc(f.scope_len + 1);
            e->tokens = malloc((size_t)f.n_tokens * 4);
            e->path = strdup(path);
            e->file_len = (uint64_t)st.st_size;
            if (!e->scope || !e->tokens || !e->path ||
                pread(fd, e->scope, f.scope_len, H_END) != (ssize_t)f.scope_len ||
                pread(fd, e->tokens, (size_t)f.n_tokens * 4, (off_t)H_END + f.scope_len) !=
                    (ssize_t)((size_t)f.n_tokens * 4)) {
                free(e->scope);
                free(e->tokens);
                free(e->path);
                free(e);
                e = NULL;
            }
        }
    }
    close(fd);
    return e;
}

/* ============================================================================================
 * Store
 * ========================================================================================== */

/* The writer's pid when `name` is a temporary file of entry_write_file ("<64 hex>.kv.tmp.PID")
 * or of a fingerprint memo ("fp-<32 hex>.tmp.PID"), else 0. */
static long stale_temp_pid(const char *name) {
    size_t l = strlen(name), n_hex;
    const char *hex, *rest;
    if (strncmp(name, "fp-", 3) == 0 && l > 3 + 32 + 5 && strncmp(name + 35, ".tmp.", 5) == 0) {
        hex = name + 3, n_hex = 32, rest = name + 40;
    } else if (l > 64 + 8 && strncmp(name + 64, ".kv.tmp.", 8) == 0) {
        hex = name, n_hex = 64, rest = name + 72;
    } else {
        return 0;
    }
    for (size_t i = 0; i < n_hex; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'))) return 0;
    long pid = 0;
    for (const char *p = rest; *p; p++) {
        if (*p < '0' || *p > '9' || pid > 1000000000L) return 0;
        pid = pid * 10 + (*p - '0');
    }
    return pid;
}

sipp_status sipp__kvstore_dir_check(const char *dir, sipp_error *err) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return sipp__fail(err, SIPP_IO_ERROR, errno, "cache directory '%s': %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0)
        return sipp__fail(err, SIPP_IO_ERROR, errno, "cache directory '%s': %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sipp__fail(err, SIPP_IO_ERROR, ENOTDIR, "cache directory '%s' is not a directory", dir);
    if (st.st_uid != geteuid())
        return sipp__fail(err, SIPP_IO_ERROR, EPERM,
                          "cache directory '%s' is owned by uid %ld, not by this process's uid "
                          "%ld: another user could plant or read snapshots there; use a "
                          "directory of your own", dir, (long)st.st_uid, (long)geteuid());
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return sipp__fail(err, SIPP_IO_ERROR, EPERM,
                          "cache directory '%s' is writable by %s (mode %04o): other users could "
                          "plant snapshots or symlinks there; chmod go-w it or use another",
                          dir, (st.st_mode & S_IWOTH) ? "others" : "its group",
                          (unsigned)(st.st_mode & 07777));
    return SIPP_OK;
}

sipp_status sipp__kvstore_new(const sipp__kv_compat *compat, uint64_t ram_budget, const char *dir,
                              uint64_t disk_budget, sipp__kvstore **out, sipp_error *err) {
    sipp__kvstore *s = calloc(1, sizeof *s);
    if (!s) return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    s->compat = *compat;
    s->ram_budget = ram_budget;
    s->disk_budget = disk_budget;
    if (dir && dir[0]) {
        sipp_status st = sipp__kvstore_dir_check(dir, err);
        if (st != SIPP_OK) {
            free(s);
            return st;
        }
        s->dir = strdup(dir);
        DIR *d = opendir(dir);
        if (!s->dir || !d) {
            if (d) closedir(d);
            free(s->dir);
            free(s);
            return sipp__fail(err, SIPP_IO_ERROR, errno, "cache directory '%s': %s", dir, strerror(errno));
        }
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            char *path = NULL;
            long pid = stale_temp_pid(de->d_name);
            if (pid > 0) { /* a writer killed mid-write leaves its temp file behind */
                if (kill((pid_t)pid, 0) != 0 && errno == ESRCH &&
                    asprintf(&path, "%s/%s", dir, de->d_name) >= 0) {
                    sipp__log(SIPP_LOG_INFO, "snapshot: removing %s (its writer %ld is gone)",
                              path, pid);
                    unlink(path);
                    free(path);
                }
                continue;
            }
            if (l < 4 || strcmp(de->d_name + l - 3, ".kv") != 0) continue;
            if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) continue;
            bool torn;
            sipp__kv_entry *e = index_file(s, path, &torn);
            if (torn) {
                sipp__log(SIPP_LOG_WARN, "snapshot: removing %s (cut short)", path);
                unlink(path);
            }
            free(path);
            if (!e) continue; /* foreign, torn or corrupt: ignored, recomputed on demand */
            list_push_front(s, e);
            s->disk_used += e->file_len;
        }
        closedir(d);
        enforce_disk_budget(s);
    }
    *out = s;
    return SIPP_OK;
}

void sipp__kvstore_free(sipp__kvstore *s) {
    if (!s) return;
    while (s->head) {
        sipp__kv_entry *e = s->head;
        if (s->dir && e->state && !e->path && s->disk_used + e->state_len <= s->disk_budget)
            entry_write_file(s, e);
        entry_free(s, e);
    }
    free(s->load_buf);
    free(s->dir);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void put_locked(sipp__kvstore *s, const char *scope, size_t scope_len,
                       const int32_t *tokens, uint32_t n_tokens, uint8_t *state,
                       size_t state_len) {
    /* An entry of the same scope whose tokens are a prefix of the new ones is superseded: any
     * prompt shares at least as long a prefix with the new entry. Drop it (and its file). */
    for (sipp__kv_entry *e = s->head; e;) {
        sipp__kv_entry *next = e->next;
        if (e->scope_len == scope_len && memcmp(e->scope, scope, scope_len) == 0 &&
            e->n_tokens <= n_tokens && memcmp(e->tokens, tokens, e->n_tokens * 4u) == 0) {
            if (e->n_tokens < n_tokens) entry_drop_file(s, e); /* same tokens: same file name */
            entry_free(s, e);
        }
        e = next;
    }
    sipp__kv_entry *e = calloc(1, sizeof *e);
    if (!e || state_len > s->ram_budget || !(e->scope = malloc(scope_len + 1)) ||
        !(e->tokens = malloc((size_t)n_tokens * 4))) {
        if (e) {
            free(e->scope);
            free(e);
        }
        free(state);
        return;
    }
    memcpy(e->scope, scope, scope_len);
    e->scope_len = (uint32_t)scope_len;
    memcpy(e->tokens, tokens, (size_t)n_tokens * 4);
    e->n_tokens = n_tokens;
    e->state = state;
    e->state_len = state_len;
    s->ram_used += state_len;
    list_push_front(s, e);
    enforce_ram_budget(s);
}

/* The entry of `scope` sharing the longest prefix with `prompt` (see sipp__kvstore_find). */
static sipp__kv_entry *best_entry(sipp__kvstore *s, const char *scope, size_t scope_len,
                                  const int32_t *prompt, uint32_t n_prompt, bool whole,
                                  uint32_t *n_common) {
    sipp__kv_entry *best = NULL;
    uint32_t best_n = 0;
    for (sipp__kv_entry *e = s->head; e; e = e->next) {
        if (e->scope_len != scope_len || memcmp(e->scope, scope, scope_len) != 0) continue;
        uint32_t n = e->n_tokens < n_prompt ? e->n_tokens : n_prompt, k = 0;
        while (k < n && e->tokens[k] == prompt[k]) k++;
        if (whole && k < e->n_tokens) continue;
        if (k > best_n) {
            best = e;
            best_n = k;
        }
    }
    *n_common = best_n;
    return best;
}

void sipp__kvstore_put(sipp__kvstore *s, const char *scope, size_t scope_len,
                       const int32_t *tokens, uint32_t n_tokens, uint8_t *state,
                       size_t state_len) {
    pthread_mutex_lock(&s->mu);
    put_locked(s, scope, scope_len, tokens, n_tokens, state, state_len);
    pthread_mutex_unlock(&s->mu);
}

const sipp__kv_entry *sipp__kvstore_find(sipp__kvstore *s, const char *scope, size_t scope_len,
                                         const int32_t *prompt, uint32_t n_prompt, bool whole,
                                         uint32_t *n_common) {
    pthread_mutex_lock(&s->mu);
    uint32_t best_n = 0;
    sipp__kv_entry *best = best_entry(s, scope, scope_len, prompt, n_prompt, whole, &best_n);
    if (best) { /* used: most recent now */
        list_unlink(s, best);
        list_push_front(s, best);
    }
    pthread_mutex_unlock(&s->mu);
    *n_common = best_n;
    return best;
}

uint32_t sipp__kvstore_peek(sipp__kvstore *s, const char *scope, size_t scope_len,
                            const int32_t *prompt, uint32_t n_prompt, bool whole, bool *on_disk) {
    pthread_mutex_lock(&s->mu);
    uint32_t n = 0;
    const sipp__kv_entry *e = best_entry(s, scope, scope_len, prompt, n_prompt, whole, &n);
    *on_disk = e && !e->state;
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint32_t sipp__kv_entry_tokens(const sipp__kv_entry *e) { return e->n_tokens; }

static sipp_status load_locked(sipp__kvstore *s, const sipp__kv_entry *ce,
                               const uint8_t **state, size_t *state_len, sipp_error *err) {
    sipp__kv_entry *e = (sipp__kv_entry *)ce;
    if (e->state) {
        *state = e->state;
        *state_len = e->state_len;
        return SIPP_OK;
    }
    free(s->load_buf);
    s->load_buf = NULL;
    sipp_status st = SIPP_IO_ERROR;
    int fd = open_regular(e->path);
    struct stat sb;
    if (fd >= 0 && fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == e->file_len &&
        e->file_len <= SIPP__KV_FILE_MAX && (s->load_buf = malloc(e->file_len)) != NULL &&
        pread(fd, s->load_buf, e->file_len, 0) == (ssize_t)e->file_len) {
        sipp__kv_file f;
        st = sipp__kv_file_parse(s->load_buf, e->file_len, &s->compat, &f, err);
        if (st == SIPP_OK &&
            (f.scope_len != e->scope_len || memcmp(f.scope, e->scope, e->scope_len) != 0 ||
             f.n_tokens != e->n_tokens || memcmp(f.tokens, e->tokens, e->n_tokens * 4u) != 0))
            st = sipp__fail(err, SIPP_IO_ERROR, 0, "snapshot: file changed since it was indexed");
        if (st == SIPP_OK) {
            *state = f.state;
            *state_len = (size_t)f.state_len;
        }
    } else {
        sipp__fail(err, SIPP_IO_ERROR, errno, "snapshot: cannot read %s", e->path);
    }
    if (fd >= 0) close(fd);
    if (st != SIPP_OK) {
        sipp__log(SIPP_LOG_WARN, "ignoring snapshot %s: %s", e->path, err ? err->message : "");
        entry_drop_file(s, e);
        entry_free(s, e);
    }
    return st;
}

sipp_status sipp__kvstore_load(sipp__kvstore *s, const sipp__kv_entry *e, const uint8_t **state,
                               size_t *state_len, sipp_error *err) {
    pthread_mutex_lock(&s->mu);
    sipp_status st = load_locked(s, e, state, state_len, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

void sipp__kvstore_usage(const sipp__kvstore *s, uint64_t *ram_bytes, uint64_t *disk_bytes) {
    *ram_bytes = s ? s->ram_used : 0;
    *disk_bytes = s ? s->disk_used : 0;
}

/* ============================================================================================
 * Model fingerprint
 * ========================================================================================== */

/* The sampled fingerprint: SHA-256 over the size, the first 8 MiB and 64 blocks of 64 KiB. */
static sipp_status fingerprint_sampled(int fd, uint64_t size, uint8_t out[32], sipp_error *err) {
    enum { HEAD = 8 << 20, BLOCK = 64 << 10, N_BLOCKS = 64 };
    uint8_t *buf = malloc(HEAD);
    sipp__sha256 *h = buf ? sipp__sha256_begin() : NULL;
    if (!h) {
        free(buf);
        return sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory");
    }
    uint8_t size_le[8];
    wr64(size_le, size);
    sipp__sha256_update(h, size_le, 8);
    ssize_t n = pread(fd, buf, HEAD, 0);
    if (n > 0) sipp__sha256_update(h, buf, (size_t)n);
    if (size > HEAD) {
        uint64_t rest = size - HEAD;
        for (int i = 0; i < N_BLOCKS; i++) {
            n = pread(fd, buf, BLOCK, (off_t)(HEAD + rest / N_BLOCKS * (uint64_t)i));
            if (n > 0) sipp__sha256_update(h, buf, (size_t)n);
        }
    }
    sipp__sha256_end(h, out);
    free(buf);
    return SIPP_OK;
}

/* The memo of a full fingerprint in the cache directory: "fp-<hex of the identity>", holding
 * FP_MAGIC, the identity record and the digest. The identity is the file's device, inode, size,
 * mtime and ctime (ns): a rewritten, replaced or touched file gets a new identity and is hashed
 * again; a stale memo is never read for another file. */
static const char FP_MAGIC[8] = {'S', 'I', 'P', 'P', 'F', 'P', '1', '\0'};
enum { FP_ID = 8 * 7, FP_FILE = 8 + FP_ID + 32 };

static void fingerprint_identity(const struct stat *st, uint8_t id[FP_ID]) {
    wr64(id, (uint64_t)st->st_dev);
    wr64(id + 8, (uint64_t)st->st_ino);
    wr64(id + 16, (uint64_t)st->st_size);
    wr64(id + 24, (uint64_t)st->st_mtim.tv_sec);
    wr64(id + 32, (uint64_t)st->st_mtim.tv_nsec);
    wr64(id + 40, (uint64_t)st->st_ctim.tv_sec);
    wr64(id + 48, (uint64_t)st->st_ctim.tv_nsec);
}

static char *fingerprint_memo_path(const char *dir, const uint8_t id[FP_ID]) {
    uint8_t d[32];
    if (!sipp__sha256_once(id, FP_ID, d)) return NULL;
    char hex[33];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    char *p = NULL;
    return asprintf(&p, "%s/fp-%s", dir, hex) < 0 ? NULL : p;
}

static bool fingerprint_memo_read(const char *memo, const uint8_t id[FP_ID], uint8_t out[32]) {
    int fd = open_regular(memo);
    if (fd < 0) return false;
    uint8_t rec[FP_FILE + 1];
    ssize_t n = read(fd, rec, sizeof rec);
    close(fd);
    if (n != FP_FILE || memcmp(rec, FP_MAGIC, 8) != 0 || memcmp(rec + 8, id, FP_ID) != 0)
        return false;
    memcpy(out, rec + 8 + FP_ID, 32);
    return true;
}

/* Best effort: a memo that cannot be written only means hashing again next time. */
static void fingerprint_memo_write(const char *dir, const char *memo, const uint8_t id[FP_ID],
                                   const uint8_t digest[32]) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return;
    uint8_t rec[FP_FILE];
    memcpy(rec, FP_MAGIC, 8);
    memcpy(rec + 8, id, FP_ID);
    memcpy(rec + 8 + FP_ID, digest, 32);
    const sipp__file_part part = {rec, sizeof rec};
    (void)sipp__file_write_atomic(memo, &part, 1, 0600);
}

sipp_status sipp__model_fingerprint(const char *path, const char *cache_dir,
                                    const uint8_t *known_sha256, uint8_t out[32],
                                    sipp_error *err) {
    if (known_sha256 && cache_dir && cache_dir[0]) { /* the pin check just hashed the file */
        memcpy(out, known_sha256, 32);
        return SIPP_OK;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        return sipp__fail(err, SIPP_IO_ERROR, errno, "cannot read model '%s': %s", path, strerror(errno));
    }
    sipp_status rc;
    if (!cache_dir || !cache_dir[0]) {
        rc = fingerprint_sampled(fd, (uint64_t)st.st_size, out, err);
    } else {
        uint8_t id[FP_ID];
        fingerprint_identity(&st, id);
        char *memo = fingerprint_memo_path(cache_dir, id);
        if (memo && fingerprint_memo_read(memo, id, out)) {
            rc = SIPP_OK;
        } else {
            sipp__log(SIPP_LOG_INFO, "snapshot: hashing model '%s' (%.1f MiB) for the disk tier",
                      path, (double)st.st_size / (1 << 20));
            int e = sipp__sha256_fd(fd, out);
            rc = e == 0        ? SIPP_OK
                 : e == ENOMEM ? sipp__fail(err, SIPP_OUT_OF_MEMORY, 0, "out of memory")
                               : sipp__fail(err, SIPP_IO_ERROR, e, "cannot read model '%s': %s", path,
                                            strerror(e));
            if (rc == SIPP_OK && memo) fingerprint_memo_write(cache_dir, memo, id, out);
        }
        free(memo);
    }
    close(fd);
    return rc;
}
