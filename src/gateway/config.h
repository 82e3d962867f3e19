/*
 * config.h — the gateway's configuration as plain C structs, and the loader that fills them from
 * TOML (docs/gateway.md lists every key). The TOML text is parsed by toml11 in toml_shim.cpp into
 * a generic tree (sipp__toml_node); config.c walks that tree, rejects unknown keys and wrong
 * types naming the key and its line, applies defaults and validates the whole (binds differ,
 * routes, duplicates, ranges). Loading never reads a secret: tokens and keys are env var names.
 */
#ifndef SIPP_GATEWAY_CONFIG_H
#define SIPP_GATEWAY_CONFIG_H

#include "sipp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the generic TOML tree (toml_shim.cpp) --------------------------------------------- */

#define SIPP__TOML_MAX_DEPTH 32

typedef enum sipp__toml_kind {
    SIPP__TOML_TABLE,
    SIPP__TOML_ARRAY,
    SIPP__TOML_STRING,
    SIPP__TOML_INT,
    SIPP__TOML_FLOAT,
    SIPP__TOML_BOOL,
    SIPP__TOML_OTHER, /* dates and times */
} sipp__toml_kind;

typedef struct sipp__toml_node {
    sipp__toml_kind kind;
    char *key;  /* the key in its table; NULL for array items and the root */
    int line;   /* 1-based line of the value */
    char *str;
    int64_t i;
    double f;
    bool b;
    struct sipp__toml_node *items; /* table entries (ordered by line) or array items */
    size_t n_items;
} sipp__toml_node;

/* Parses `text` (need not be NUL-terminated). Returns 0 and a tree freed with sipp__toml_free,
 * or -1 with a one-line message in errbuf. */
int sipp__toml_parse(const char *text, size_t len, const char *name, sipp__toml_node **out,
                     char *errbuf, size_t errcap);
void sipp__toml_free(sipp__toml_node *root);

/* ---- the configuration ----------------------------------------------------------------- */

typedef enum sipp__gw_target_type {
    SIPP__GW_LOCAL,
    SIPP__GW_OPENAI,
    SIPP__GW_OPENAI_COMPATIBLE,
    SIPP__GW_ANTHROPIC,
} sipp__gw_target_type;

/* [targets.runtime]: the engine settings of a local target and the defaults of its requests. Its
 * keys are the rows of SIPP_LOCAL_SETTINGS and SIPP_TEXT_SETTINGS (include/sipp_settings.h)
 * that name a TOML key, parsed into `local` and `text` over the tables' defaults; the strings
 * there are owned by the config. */
typedef struct sipp__gw_runtime {
    sipp_local_params local; /* model_path and sha256 are the target's own keys, not set here */
    sipp_text_params text;   /* its fields with a TOML key (ignore_eos) go into every request */
    bool has_n_gpu_layers; /* else n_gpu_layers comes from `backend`: cpu = 0, else -1 */
    bool cache;            /* false = snapshots off */
} sipp__gw_runtime;

#define SIPP__GW_MAX_REPLICAS 64

/* [targets.pool]: how a remote target spreads requests over its replicas. */
typedef struct sipp__gw_pool_cfg {
    char *health_path;       /* appended to each base URL by the active probe; NULL = none
                              * (default "/models" with several replicas, none with one) */
    uint32_t health_interval_seconds;  /* probes of healthy replicas (default 10) */
    uint32_t health_timeout_seconds;   /* one probe (default 5) */
    uint32_t failure_threshold;        /* consecutive 5xx/busy that take a replica out (3) */
    uint32_t backoff_initial_seconds;  /* first time out, doubled per failed return (1) */
    uint32_t backoff_max_seconds;      /* (60) */
    uint32_t max_retries;              /* other replicas tried for a request never sent (2) */
    char *affinity_header;   /* conversation key header; NULL = [cache] scope_header if set */
    bool retry_lost;         /* also retry a request whose connection broke before its first
                              * token (the replica died with it queued); default true */
} sipp__gw_pool_cfg;

typedef struct sipp__gw_target {
    char *name;
    sipp__gw_target_type type;
    char *model;       /* GGUF path (local) or the provider's model name */
    char *backend;     /* local: auto|cpu|cuda|vulkan */
    char *sha256;      /* local: the model file's pinned SHA-256 (64 hex digits), or NULL */
    char *token_env;   /* openai_compatible (optional): its api_key_env */
    uint32_t timeout_seconds; /* 0 = the client's default */
    /* Providers: the keys of the rows of SIPP_PROVIDER_SETTINGS that name a TOML key (base_url,
     * api_key_env, version, allow_private_network), over the table's defaults; the strings are
     * owned by the config. kind, model and the timeouts are set when the target is added. */
    sipp_provider_params provider;
    sipp__gw_runtime runtime;
    int line;
    /* ---- upstream pools (remote targets; docs/gateway.md "Upstream pools") ---- */
    char **base_urls;   /* the replicas: `base_urls`, or `base_url` alone (then base_urls[0] is
                         * a copy of it); empty = the provider's default URL */
    size_t n_base_urls;
    sipp__gw_pool_cfg pool; /* [targets.pool] */
    /* ---- residency (local targets; docs/gateway.md "Residency") ---- */
    bool load_on_use;             /* load = "on_use": loaded by the first request, not at start */
    uint32_t idle_unload_seconds; /* unloaded after this long without a request; 0 = never */
} sipp__gw_target;

typedef struct sipp__gw_token {
    char *env;
    char *caller;
    char **targets;   /* empty = all */
    size_t n_targets;
    uint32_t requests_per_minute, tokens_per_minute, max_concurrent; /* 0 = no limit */
    int line;
} sipp__gw_token;

typedef enum sipp__gw_ip_source {
    SIPP__GW_IP_PEER,
    SIPP__GW_IP_X_FORWARDED_FOR,
    SIPP__GW_IP_X_REAL_IP,
} sipp__gw_ip_source;

/* Route slots; the order is the [routes] key order of docs/gateway.md. */
typedef enum sipp__gw_route {
    SIPP__GW_R_QUERY,
    SIPP__GW_R_CHAT,
    SIPP__GW_R_EMBED,
    SIPP__GW_R_CHAT_COMPLETIONS,
    SIPP__GW_R_COMPLETIONS,
    SIPP__GW_R_EMBEDDINGS,
    SIPP__GW_R_MODELS,
    SIPP__GW_R_MESSAGES,
    SIPP__GW_R_HEALTHZ,
    SIPP__GW_R_READYZ,
    SIPP__GW_R_METRICS,
    SIPP__GW_R_ADMIN,
    SIPP__GW_R_TRANSCRIPTIONS, /* issue 17: OpenAI /v1/audio/transcriptions (multipart) */
    SIPP__GW_N_ROUTES
} sipp__gw_route;

/* The TOML key and default path of each route. */
extern const char *const sipp__gw_route_keys[SIPP__GW_N_ROUTES];
extern const char *const sipp__gw_route_defaults[SIPP__GW_N_ROUTES];

/* Defaults of the media limits (docs/gateway.md): decoded bytes of one request's media, and the
 * declared pixels of one image, which is also the most a key may set (the engine and the
 * providers refuse more themselves: SIPP__MEDIA_MAX_PIXELS). */
#define SIPP__GW_MAX_MEDIA_BYTES (20u << 20)
#define SIPP__GW_MAX_IMAGE_PIXELS (4096u * 4096u)
#define SIPP__GW_MAX_AUDIO_SECONDS 600u /* seconds of audio in one request (issue 17) */

typedef struct sipp__gw_config {
    char *public_bind;
    char *management_bind;
    uint64_t max_request_bytes;
    char **allowed_origins;
    size_t n_allowed_origins;
    /* Host names (no port) a request's Host header may name besides the built-in loopback
     * ones; "*" = any. Checked on loopback binds always, on other binds only when set. */
    char **allowed_hosts;
    size_t n_allowed_hosts;
    char *admin_password_env;
    uint32_t max_concurrent_requests; /* 0 = no limit */
    uint32_t sse_heartbeat_seconds;
    uint32_t header_timeout_seconds;  /* request line + headers must arrive within this */
    uint32_t body_timeout_seconds;    /* ... and the body within this after the headers */
    uint32_t idle_timeout_seconds;    /* no progress (read or write) for this long: closed */
    uint32_t max_header_bytes;
    uint32_t max_json_depth;
    uint64_t max_embedding_floats; /* inputs x dimensions of one embeddings request */
    uint32_t max_schema_bytes;     /* a request's JSON schema, compact (issue 18) */
    uint64_t max_media_bytes;      /* decoded media of one request (issue 17) */
    uint64_t max_image_pixels;     /* declared width x height of one image (issue 17) */
    uint32_t max_connections;
    uint32_t max_connections_per_ip; /* public listener, per TCP peer; 0 = no limit */
    uint32_t shutdown_grace_seconds;
    char *routes[SIPP__GW_N_ROUTES];

    /* [security] */
    sipp__gw_ip_source client_ip_source;
    char **trusted_proxy_cidrs;
    size_t n_trusted_proxy_cidrs;
    char **ip_blocklist;
    size_t n_ip_blocklist;
    bool rate_limit_enabled;
    uint32_t rate_limit_rpm, rate_limit_burst, rate_limit_tpm;

    /* [cache] */
    char *cache_scope_header; /* header naming the end user (set by a trusted front), or NULL */

    /* [redis] (redis_url NULL = limits in memory) */
    char *redis_url;
    char *redis_password_env; /* env var of the AUTH password; never in the URL */
    uint32_t redis_timeout_ms; /* connect and command timeout */
    bool redis_fail_closed;    /* on_error = "closed": 503 while Redis is unreachable */
    char *redis_key_prefix;

    sipp__gw_target *targets;
    size_t n_targets;
    sipp__gw_token *tokens;
    size_t n_tokens;

    /* [models] (residency): the estimated bytes all loaded local targets may take; 0 = none */
    uint64_t memory_budget_bytes;

    uint32_t max_audio_seconds; /* seconds of audio in one request (issue 17) */
} sipp__gw_config;

#define SIPP__GW_CONFIG_MAX_BYTES (1u << 20)

/* Parses and validates TOML text. On success returns 0 and fills *cfg (free with
 * sipp__gw_config_free); on failure returns -1 with "LINE: message" or a whole-file message in
 * errbuf and leaves *cfg empty. Never reads the environment. */
int sipp__gw_config_parse(const char *text, size_t len, const char *name, sipp__gw_config *cfg,
                          char *errbuf, size_t errcap);
/* Reads the file (at most SIPP__GW_CONFIG_MAX_BYTES) and parses it. */
int sipp__gw_config_load(const char *path, sipp__gw_config *cfg, char *errbuf, size_t errcap);
void sipp__gw_config_free(sipp__gw_config *cfg);

const char *sipp__gw_target_type_name(sipp__gw_target_type t);

/* A parsed [redis] url: `redis://HOST[:PORT][/DB]` (HOST may be `[v6]`; parsed by libcurl's
 * URL API) or `unix:///PATH`. A password in the URL is refused (it belongs in
 * redis.password_env), and so are a query, a fragment and any `%`. */
typedef struct sipp__gw_redis_addr {
    char host[256]; /* "" for unix */
    int port;
    char path[108]; /* unix socket path, else "" */
    int db;
} sipp__gw_redis_addr;
bool sipp__gw_redis_url_parse(const char *url, sipp__gw_redis_addr *out, char *errbuf,
                              size_t errcap);

#ifdef __cplusplus
}
#endif

#endif
