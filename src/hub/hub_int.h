/*
 * hub_int.h — the model hub client behind `sipp pull`, `sipp models` and `sipp rm`: model
 * references (OWNER/REPO[:QUANT], OWNER/REPO/FILE.gguf), the hub's JSON answers, the choice of
 * files in a repo, and the local store of pulled models.
 *
 * Part of libsipp, whose only public entry into it is sipp_model_resolve() (pulled names where a
 * model path is accepted: sipp_client_add_local, sipp_model_inspect); pulling, listing and
 * removing stay internal (used by `sipp`). hub_parse.c is pure (no I/O: fuzzed); hub_store.c is
 * the local store, offline (manifests, resolve, list, remove); hub_pull.c is the network half
 * (`sipp pull`, through src/http/http_fetch.c), writing into the store through hub_store.c.
 *
 * The store, under <models dir>/hub/:
 *   blobs/sha256-<hex>            verified file content, read-only; one copy per content
 *   blobs/sha256-<hex>.partial    a download in progress (resumed by the next pull)
 *   files/<owner>/<repo>/<commit>/<path>
 *                                 symlinks to blobs under the repo's own file names (so a split
 *                                 model's shards find each other the way llama.cpp expects)
 *   manifests/<owner>/<repo>.json the names pulled from that repo and the files each one is
 * A name becomes visible only when its manifest entry is written, after every blob it needs was
 * verified against the hub's sha256 and renamed into place.
 */
#ifndef SIPP_HUB_INT_H
#define SIPP_HUB_INT_H

#include "../common/common_int.h"

#define SIPP__HUB_NAME_MAX 96      /* owner and repo, as the hub allows */
#define SIPP__HUB_PATH_MAX 512     /* a file path inside a repo */
#define SIPP__HUB_MAX_FILES 100000 /* entries in a repo listing */
#define SIPP__HUB_MAX_SHARDS 512   /* files of one split model */
#define SIPP__HUB_JSON_MAX (32u << 20)

/* ---- references (hub_parse.c) ------------------------------------------------------------ */

typedef enum sipp__hub_kind {
    SIPP__HUB_DEFAULT = 0, /* OWNER/REPO: Q4_K_M, else Q8_0, else the first model file */
    SIPP__HUB_QUANT,       /* OWNER/REPO:QUANT (tag upper-cased) */
    SIPP__HUB_FILE,        /* OWNER/REPO/PATH.gguf */
} sipp__hub_kind;

typedef struct sipp__hub_ref {
    char owner[SIPP__HUB_NAME_MAX + 1];
    char repo[SIPP__HUB_NAME_MAX + 1];
    sipp__hub_kind kind;
    char tag[SIPP__HUB_PATH_MAX + 1]; /* "" / the quant / the file path */
} sipp__hub_ref;

/* Parses a reference. A leading "hf.co/", "huggingface.co/" or "https://huggingface.co/" is
 * dropped; ":latest" means the default. Names that are not references (no '/', a path that
 * starts with '.', '/' or '~', a repo part ending in .gguf) give SIPP_INVALID_ARGUMENT. */
sipp_status sipp__hub_ref_parse(const char *s, sipp__hub_ref *out, sipp_error *err);
/* The canonical name: OWNER/REPO, OWNER/REPO:QUANT or OWNER/REPO/PATH. */
void sipp__hub_ref_name(const sipp__hub_ref *r, char *buf, size_t cap);
/* A file path a repo may hold and the store may use as a file name: 1..SIPP__HUB_PATH_MAX
 * bytes of [A-Za-z0-9._+~()@,=-] in '/'-separated segments, none empty, "." or "..". */
bool sipp__hub_path_ok(const char *path);
bool sipp__hub_hex_ok(const char *s, size_t n); /* exactly n lower-case hex digits */

/* ---- the hub's answers (hub_parse.c) ----------------------------------------------------- */

typedef struct sipp__hub_file {
    char *path;
    char sha256[65]; /* "" when the hub gave none (not an LFS file) */
    uint64_t size;
} sipp__hub_file;

typedef struct sipp__hub_files {
    sipp__hub_file *v;
    size_t n, cap;
} sipp__hub_files;

/* Parses GET /api/models/OWNER/REPO/refs: the commit of branch main (else of the first
 * branch) into commit[41]. */
sipp_status sipp__hub_refs_parse(const char *json, size_t len, char commit[41], sipp_error *err);
/* Parses one page of GET /api/models/OWNER/REPO/tree/COMMIT?recursive=true and appends its
 * files (directories are skipped; so are paths sipp__hub_path_ok refuses). */
sipp_status sipp__hub_files_parse(const char *json, size_t len, sipp__hub_files *out,
                                  sipp_error *err);
void sipp__hub_files_free(sipp__hub_files *f);

/* ---- choosing files (hub_parse.c) -------------------------------------------------------- */

/* True when `path` names quantization `quant` the way llama.cpp's -hf matches it: the tag,
 * case-insensitive, not preceded by a letter or digit and followed by '.' or '-'. */
bool sipp__hub_quant_match(const char *path, const char *quant);
/* Split files "<prefix>-00001-of-00003.gguf": index and count (1-based), else false. */
bool sipp__hub_split_info(const char *path, size_t *prefix_len, unsigned *index, unsigned *count);

typedef struct sipp__hub_plan {
    const sipp__hub_file *model[SIPP__HUB_MAX_SHARDS]; /* shard 1 first; pointers into files */
    size_t n_model;
    const sipp__hub_file *mmproj; /* NULL when the repo has none */
} sipp__hub_plan;

/* Picks the files of `ref` among `files`: the named file, or the first model file matching the
 * quant (default: Q4_K_M, then Q8_0, then the first model file), with all shards of a split
 * model, and the best projector (mmproj*.gguf) in the model's directory or above it. Model
 * files exclude mmproj and imatrix files. SIPP_NOT_FOUND names what is missing. */
sipp_status sipp__hub_plan_make(const sipp__hub_files *files, const sipp__hub_ref *ref,
                                sipp__hub_plan *out, sipp_error *err);

/* ---- manifests (hub_parse.c) ------------------------------------------------------------- */

typedef struct sipp__hub_entry {
    sipp__hub_kind kind;
    char *tag;                 /* as in sipp__hub_ref */
    char commit[41];
    sipp__hub_file *files;     /* model files, shard 1 first */
    size_t n_files;
    sipp__hub_file mmproj;     /* path NULL when none */
} sipp__hub_entry;

typedef struct sipp__hub_manifest {
    char owner[SIPP__HUB_NAME_MAX + 1];
    char repo[SIPP__HUB_NAME_MAX + 1];
    sipp__hub_entry *entries;
    size_t n;
} sipp__hub_manifest;

/* Parses a manifest; anything out of shape is SIPP_INVALID_ARGUMENT ("corrupt manifest"). */
sipp_status sipp__hub_manifest_parse(const char *json, size_t len, sipp__hub_manifest *out,
                                     sipp_error *err);
/* Serialises a manifest (malloc'd, NUL-terminated), or NULL when out of memory. */
char *sipp__hub_manifest_dump(const sipp__hub_manifest *m);
void sipp__hub_manifest_free(sipp__hub_manifest *m);
/* The entry a reference names: the same kind and tag; else, for a quant, an entry whose model
 * file matches it; for a file, an entry holding that file; for the default, the Q4_K_M entry,
 * else the first. NULL when none. */
const sipp__hub_entry *sipp__hub_manifest_find(const sipp__hub_manifest *m,
                                               const sipp__hub_ref *ref);
/* Replaces the entry of the same kind and tag, or appends. Takes ownership of *e's memory
 * (and zeroes *e) on SIPP_OK. */
sipp_status sipp__hub_manifest_put(sipp__hub_manifest *m, sipp__hub_entry *e);
void sipp__hub_entry_free(sipp__hub_entry *e);

/* ---- the store's files and locks (hub_store.c; used by hub_pull.c) ----------------------- */

/* Fills `err` with "cannot <what> '<path>': <strerror(errno)>" and returns SIPP_IO_ERROR. */
sipp_status sipp__hub_io_fail(sipp_error *err, const char *what, const char *path);
/* mkdir -p with mode 0755. */
sipp_status sipp__hub_mkdir_p(const char *path, sipp_error *err);
/* Opens (creating) a lock file and takes the flock `how` (LOCK_SH/LOCK_EX); returns the fd, or
 * -1 with errno (EWOULDBLOCK when `nb` and someone holds it). */
int sipp__hub_lock(const char *path, int how, bool nb);
/* Drops a lock taken by sipp__hub_lock (-1 is a no-op). */
void sipp__hub_unlock(int fd);
/* <models_dir>/hub[/sub], <models_dir>/hub/blobs/sha256-<sha>, and
 * <models_dir>/hub/files/<owner>/<repo>/<commit>/<path>. */
void sipp__hub_path(char *buf, size_t cap, const char *models_dir, const char *sub);
void sipp__hub_blob_path(char *buf, size_t cap, const char *models_dir, const char *sha);
void sipp__hub_link_path(char *buf, size_t cap, const char *models_dir, const char *owner,
                         const char *repo, const char *commit, const char *path);
/* Loads a repo's manifest (a missing one is an empty manifest); SIPP_IO_ERROR when it is corrupt. */
sipp_status sipp__hub_manifest_load(const char *models_dir, const char *owner, const char *repo,
                                    sipp__hub_manifest *m, sipp_error *err);
/* Writes a repo's manifest atomically, or deletes it when it has no entries. Hold the manifest
 * lock (hub/.manifest.lock) exclusive around load + save. */
sipp_status sipp__hub_manifest_save(const char *models_dir, const sipp__hub_manifest *m,
                                    sipp_error *err);

/* ---- pull (hub_pull.c); resolve, list, remove (hub_store.c) ------------------------------- */

typedef enum sipp__hub_event_kind {
    SIPP__HUB_EV_RESOLVED, /* the plan is known: file = the model's first file */
    SIPP__HUB_EV_START,    /* a download starts (done = bytes already on disk, resumed) */
    SIPP__HUB_EV_DATA,     /* bytes arrived */
    SIPP__HUB_EV_VERIFY,   /* all bytes are here; checking sha256 */
    SIPP__HUB_EV_DONE,     /* verified and stored */
    SIPP__HUB_EV_HAVE,     /* already in the store: nothing to download */
    SIPP__HUB_EV_RESTART,  /* the server ignored the range or the partial was bad: from 0 */
} sipp__hub_event_kind;

typedef struct sipp__hub_event {
    sipp__hub_event_kind kind;
    const char *path;   /* the file in the repo */
    size_t index, count; /* this file's place among the files to fetch (1-based) */
    uint64_t done, total;
    const char *commit; /* RESOLVED */
} sipp__hub_event;

typedef struct sipp__hub_params {
    const char *models_dir;
    const char *base_url;   /* e.g. https://huggingface.co; checked with sipp__http_url_check_ex */
    const char *token;      /* may be NULL; sent as a bearer token to the hub's origin only */
    bool with_mmproj;       /* fetch the projector when the repo has one */
    /* The network policy of every connection (src/http/net_policy.c): loopback and public
     * addresses; private and link-local ones only when this is set. */
    bool allow_private_network;
    const char *proxy;      /* a proxy for every request, or NULL: none (environment ignored) */
    void (*on_event)(const sipp__hub_event *ev, void *ud);
    bool (*should_abort)(void *ud);
    void *ud;
} sipp__hub_params;

typedef struct sipp__hub_pulled {
    char name[SIPP__HUB_PATH_MAX + 2 * SIPP__HUB_NAME_MAX + 4];
    char path[4096];        /* the model's first file (a symlink into blobs/) */
    char mmproj[4096];      /* "" when none */
    uint64_t bytes;         /* all files of the name */
    uint64_t downloaded;    /* bytes fetched by this pull */
} sipp__hub_pulled;

/* Pulls `name`. Errors: SIPP_INVALID_ARGUMENT (bad name, URL or token), SIPP_AUTHENTICATION
 * (401), SIPP_AUTHORIZATION (403: gated), SIPP_NOT_FOUND (404, no matching file),
 * SIPP_RATE_LIMITED, SIPP_UPSTREAM_ERROR (bad answer, sha256 mismatch), SIPP_TRANSPORT, SIPP_TIMEOUT,
 * SIPP_CANCELLED (should_abort: the partial file stays for a resume), SIPP_BUSY (another pull
 * downloads the same file), SIPP_IO_ERROR. No message contains the token. */
sipp_status sipp__hub_pull(const sipp__hub_params *p, const char *name, sipp__hub_pulled *out,
                           sipp_error *err);

/* The local path of a pulled name, from the local manifests only (no network). SIPP_NOT_FOUND
 * when it was not pulled or its files are gone (the message says how to pull it);
 * SIPP_INVALID_ARGUMENT when `name` is not a reference at all. sipp_model_resolve() (sipp.h) is
 * the entry point for names given where a model path is accepted. */
sipp_status sipp__hub_resolve(const char *models_dir, const char *name, char *path, size_t cap,
                              sipp_error *err);

/* The models directory: $SIPP_MODELS_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/sipp/models. */
void sipp__hub_models_dir(char *buf, size_t cap);

typedef struct sipp__hub_item {
    char *name;      /* canonical */
    char *path;      /* the model's first file */
    char *mmproj;    /* NULL when none */
    char *commit;
    uint64_t bytes;  /* all files */
    size_t n_files;
    bool complete;   /* every blob is present */
} sipp__hub_item;

/* The projector a pull stored beside a model (issue 17): when `model_path` is the first file
 * of a pulled name in models_dir (the path sipp__hub_resolve and sipp__hub_list give) and that
 * pull stored a projector whose blob is present, its path goes into buf and true is returned;
 * any other path, or a store that cannot be read, is false. Offline, reads manifests only. */
bool sipp__hub_mmproj_for(const char *models_dir, const char *model_path, char *buf, size_t cap);

/* Every pulled name, sorted by name. Free with sipp__hub_list_free. */
sipp_status sipp__hub_list(const char *models_dir, sipp__hub_item **items, size_t *n,
                           sipp_error *err);
void sipp__hub_list_free(sipp__hub_item *items, size_t n);

/* Forgets a pulled name and deletes the blobs and links no other name uses; *freed gets the
 * bytes deleted. SIPP_NOT_FOUND when it was not pulled; SIPP_BUSY while a pull runs. */
sipp_status sipp__hub_remove(const char *models_dir, const char *name, uint64_t *freed,
                             sipp_error *err);

/* The quantization of a local GGUF (general.file_type, else its dominant weight type), e.g.
 * "Q4_K_M"; "" when unknown. Implemented in src/engine/model.c. */
void sipp__model_quant_name(const char *path, char *buf, size_t cap);

#endif
