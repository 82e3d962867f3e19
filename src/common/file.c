/*
 * file.c — crash-safe file replacement, the one writer of whole files that must never be seen
 * half written: snapshot files and fingerprint memos (src/engine/kvstore.c) and the hub's
 * manifests (src/hub/hub_store.c).
 *
 * Any thread; no shared state. Invariants:
 * - The final name only ever holds a complete file: bytes go to "<path>.tmp.<pid>", are
 *   fsync'd, and the temporary is renamed over `path`; the directory is fsync'd after, so the
 *   rename survives a power cut too.
 * - The temporary is created O_EXCL|O_NOFOLLOW: a symlink planted under its name, or the file
 *   of a dead writer whose pid this process now has, is unlinked (unlink does not follow a
 *   link) and never written through.
 * - On failure the temporary is gone and `path` is untouched; errno says why.
 */
#define _GNU_SOURCE
#include "common_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = EIO;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

void sipp__file_sync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int sipp__file_write_atomic(const char *path, const sipp__file_part *parts, size_t n_parts,
                            unsigned mode) {
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
        errno = ENOMEM;
        return -1;
    }
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = open(tmp, flags, (mode_t)mode);
    if (fd < 0 && errno == EEXIST && unlink(tmp) == 0) fd = open(tmp, flags, (mode_t)mode);
    bool ok = fd >= 0;
    for (size_t i = 0; ok && i < n_parts; i++) ok = write_all(fd, parts[i].data, parts[i].len);
    ok = ok && fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0) ok = false;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        errno = e;
        return -1;
    }
    free(tmp);
    sipp__file_sync_parent(path);
    return 0;
}
