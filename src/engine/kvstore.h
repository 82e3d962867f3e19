/*
 * kvstore.h — prefix snapshots of sequence state, in two tiers: RAM (byte budget) and an
 * optional directory on disk (byte budget) that survives restarts. Used only by the engine
 * thread; no locking inside.
 *
 * An entry is (scope, token prefix) -> llama_state_seq bytes. The scope is the context key
 * together with the caller identity, so a lookup never sees another caller's state. Every entry
 * also carries the compatibility record of the context that made it (model fingerprint, KV types,
 * context size): entries made under another record are never returned.
 *
 * Snapshot file layout (little endian), name = hex SHA-256 of (fingerprint, scope, tokens) + ".kv":
 *   magic "SIPPKVS\0" | u32 version | u8 fingerprint[32] | u32 type_k | u32 type_v | u32 n_ctx
 *   | u32 scope_len | u32 n_tokens | u64 state_len | u8 checksum[32] (SHA-256 of what follows)
 *   | scope bytes | n_tokens x i32 | state bytes
 * Files are written to a temporary name, flushed and renamed, so a reader sees a whole file or
 * none; anything truncated, corrupt, oversized or foreign is ignored (and the prompt recomputed).
 */
#ifndef SIPP_KVSTORE_H
#define SIPP_KVSTORE_H

#include "../common/common_int.h"

#define SIPP__KV_FILE_VERSION 1
#define SIPP__KV_HEADER_LEN 104
/* Largest file the store accepts: bounds every allocation made while reading one. */
#define SIPP__KV_FILE_MAX ((uint64_t)16 << 30)

typedef struct sipp__kv_compat {
    uint8_t fingerprint[32];
    uint32_t type_k, type_v, n_ctx;
} sipp__kv_compat;

/* A parsed snapshot file. Pointers point into the buffer given to the parser. */
typedef struct sipp__kv_file {
    sipp__kv_compat compat;
    const char *scope;
    uint32_t scope_len;
    const int32_t *tokens; /* may be unaligned: read with memcpy */
    uint32_t n_tokens;
    const uint8_t *state;
    uint64_t state_len;
} sipp__kv_file;

/* Parses and verifies a whole snapshot file in memory: magic, version, lengths against `len`,
 * checksum, and (when `want` is not NULL) the compatibility record. */
sipp_status sipp__kv_file_parse(const uint8_t *data, size_t len, const sipp__kv_compat *want,
                                sipp__kv_file *out, sipp_error *err);
/* Parses only the fixed header (first SIPP__KV_HEADER_LEN bytes) to learn the lengths. */
sipp_status sipp__kv_header_parse(const uint8_t *data, size_t len, uint64_t file_len,
                                  sipp__kv_file *out, sipp_error *err);

typedef struct sipp__kvstore sipp__kvstore;
typedef struct sipp__kv_entry sipp__kv_entry;

/* Creates `dir` (mode 0700) when it does not exist and checks that it may hold snapshots: a
 * directory (a symlink to one is followed) owned by this process's effective uid and writable
 * by neither its group nor others. Snapshots are restored into sequences as they are and their
 * names are predictable, so a directory another user can write to would let that user plant
 * state or symlinks. SIPP_OK, or SIPP_IO_ERROR naming the directory and what is wrong with it. */
sipp_status sipp__kvstore_dir_check(const char *dir, sipp_error *err);

/* `dir` may be NULL (RAM tier only). Checks the directory (sipp__kvstore_dir_check) and indexes
 * the snapshot files already there (headers only). Files are created with O_EXCL|O_NOFOLLOW and
 * renamed into place; snapshot and memo files are opened with O_NOFOLLOW and must be regular
 * files, so a symlink in the directory is never followed. */
sipp_status sipp__kvstore_new(const sipp__kv_compat *compat, uint64_t ram_budget, const char *dir,
                              uint64_t disk_budget, sipp__kvstore **out, sipp_error *err);
/* Writes what is only in RAM to disk (when a directory is set), then frees everything. */
void sipp__kvstore_free(sipp__kvstore *s);

/* Stores a snapshot; takes ownership of `state` (malloc'd). Replaces an entry with the same
 * scope and tokens. Evicts least-recently-used entries past the RAM budget, writing them to the
 * disk tier first when there is one. */
void sipp__kvstore_put(sipp__kvstore *s, const char *scope, size_t scope_len,
                       const int32_t *tokens, uint32_t n_tokens, uint8_t *state,
                       size_t state_len);

/* Finds the entry of `scope` sharing the longest common prefix with `prompt`, among both tiers,
 * and sets *n_common to that length. With `whole` set only entries whose tokens are all a
 * prefix of the prompt count (models whose state cannot be cut back). NULL when none. */
const sipp__kv_entry *sipp__kvstore_find(sipp__kvstore *s, const char *scope, size_t scope_len,
                                         const int32_t *prompt, uint32_t n_prompt, bool whole,
                                         uint32_t *n_common);
uint32_t sipp__kv_entry_tokens(const sipp__kv_entry *e);
/* The same search without using the entry (no LRU move), for routing estimates: any thread.
 * Returns the common prefix length; *on_disk tells whether that entry's state is on disk only. */
uint32_t sipp__kvstore_peek(sipp__kvstore *s, const char *scope, size_t scope_len,
                            const int32_t *prompt, uint32_t n_prompt, bool whole, bool *on_disk);

/* Loads an entry's state bytes (reading and verifying the file for disk entries). On success
 * *state points to bytes owned by the store, valid until the next call on it. A disk entry that
 * fails to verify is dropped and its file removed. */
sipp_status sipp__kvstore_load(sipp__kvstore *s, const sipp__kv_entry *e, const uint8_t **state,
                               size_t *state_len, sipp_error *err);

void sipp__kvstore_usage(const sipp__kvstore *s, uint64_t *ram_bytes, uint64_t *disk_bytes);

/* Content fingerprint of a model file. With a disk tier (`cache_dir`), the SHA-256 of the whole
 * file: snapshots outlive the process, so two files that differ anywhere never share one. It is
 * computed once per file identity (device, inode, size, mtime, ctime) and memoised as
 * `fp-<hex>` in the directory. Without one (RAM snapshots live only as long as this loaded
 * model), SHA-256 over the size, the first 8 MiB and 64 blocks of 64 KiB spread over the rest.
 * `known_sha256`, when not NULL, is the file's SHA-256 already computed (the sha256 pin check):
 * with a disk tier it is the fingerprint, and the file is not read again. */
sipp_status sipp__model_fingerprint(const char *path, const char *cache_dir,
                                    const uint8_t *known_sha256, uint8_t out[32],
                                    sipp_error *err);

#endif
