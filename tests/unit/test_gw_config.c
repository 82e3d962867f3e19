/*
 * test_gw_config.c — the gateway's config loader (src/gateway/config.c + toml_shim.cpp): good
 * configs fill the structs with defaults, every kind of mistake is refused with a message that
 * names the key and its line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "sipp_settings.h"

#include <stdio.h>
#include <string.h>

#define TARGET "[[targets]]\nname = \"t\"\ntype = \"local\"\nmodel = \"m.gguf\"\n"

static char err[512];

static int parse(const char *text, sipp__gw_config *cfg) {
    return sipp__gw_config_parse(text, strlen(text), "test.toml", cfg, err, sizeof err);
}

/* Expects a failure whose message contains `needle`. */
static void refused(const char *text, const char *needle) {
    sipp__gw_config cfg;
    err[0] = '\0';
    int rc = parse(text, &cfg);
    if (rc == 0 || !strstr(err, needle)) {
        fprintf(stderr, "input:\n%s\nrc=%d err='%s' (wanted '%s')\n", text, rc, err, needle);
        fail();
    }
}

static void test_full_config(void **state) {
    (void)state;
    const char *text =
        "public_bind = \"127.0.0.1:8081\"\n"
        "management_bind = \"[::1]:9091\"\n"
        "max_request_bytes = 2048\n"
        "allowed_origins = [\"https://app.example\"]\n"
        "allowed_hosts = [\"gw.example\", \"10.0.0.5\", \"[fd00::1]\"]\n"
        "max_concurrent_requests = 8\n"
        "sse_heartbeat_seconds = 5\n"
        "[routes]\nquery = \"/q\"\n"
        "[cache]\nscope_header = \"X-Sipp-User\"\n"
        "[security.client_ip]\nsource = \"x_forwarded_for\"\ntrusted_proxy_cidrs = [\"10.0.0.0/8\"]\n"
        "[security.rate_limit]\nenabled = true\nrequests_per_minute = 60\nburst = 10\n"
        "[[targets]]\nname = \"local\"\ntype = \"local\"\nmodel = \"m.gguf\"\nbackend = \"cpu\"\n"
        "[targets.runtime]\nn_ctx = 512\nn_parallel = 2\ncache = false\n"
        "[[targets]]\nname = \"gpt\"\ntype = \"openai\"\nmodel = \"gpt-4o-mini\"\napi_key_env = \"OPENAI_API_KEY\"\n"
        "[[targets]]\nname = \"claude\"\ntype = \"anthropic\"\nmodel = \"c\"\napi_key_env = \"ANTHROPIC_API_KEY\"\nversion = \"2023-06-01\"\n"
        "[[tokens]]\nenv = \"TOK_A\"\ncaller = \"alice\"\ntargets = [\"local\"]\nrequests_per_minute = 5\ntokens_per_minute = 100\nmax_concurrent = 2\n";
    sipp__gw_config cfg;
    assert_int_equal(parse(text, &cfg), 0);
    assert_string_equal(cfg.public_bind, "127.0.0.1:8081");
    assert_string_equal(cfg.management_bind, "[::1]:9091");
    assert_int_equal(cfg.max_request_bytes, 2048);
    assert_int_equal(cfg.n_allowed_origins, 1);
    assert_int_equal(cfg.n_allowed_hosts, 3);
    assert_string_equal(cfg.allowed_hosts[2], "[fd00::1]");
    assert_string_equal(cfg.cache_scope_header, "X-Sipp-User");
    assert_string_equal(cfg.routes[SIPP__GW_R_QUERY], "/q");
    assert_string_equal(cfg.routes[SIPP__GW_R_CHAT], "/v1/chat");
    assert_int_equal(cfg.client_ip_source, SIPP__GW_IP_X_FORWARDED_FOR);
    assert_true(cfg.rate_limit_enabled);
    assert_int_equal(cfg.rate_limit_burst, 10);
    assert_int_equal(cfg.n_targets, 3);
    assert_int_equal(cfg.targets[0].runtime.local.n_ctx, 512);
    assert_int_equal(cfg.targets[0].runtime.local.n_gpu_layers, 0); /* backend cpu */
    assert_false(cfg.targets[0].runtime.cache);
    assert_int_equal(cfg.targets[2].type, SIPP__GW_ANTHROPIC);
    assert_int_equal(cfg.n_tokens, 1);
    assert_int_equal(cfg.tokens[0].n_targets, 1);
    assert_int_equal(cfg.tokens[0].max_concurrent, 2);
    sipp__gw_config_free(&cfg);
}

/* Every row of SIPP_LOCAL_SETTINGS with a TOML key is a [targets.runtime] key: its max is
 * accepted and lands in its field of runtime.local, max + 1 (or min - 1) is refused naming the
 * key, and the other fields keep the table's defaults. */
static void test_runtime_keys_come_from_the_settings_table(void **state) {
    (void)state;
    static const sipp_setting rows[] = {SIPP_LOCAL_SETTINGS(SIPP_LOCAL_SETTING_ROW)};
    size_t n_keys = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const sipp_setting *s = &rows[i];
        if (!s->toml) continue;
        n_keys++;
        char text[512], want[96];
        const char *value = s->kind == SIPP_SETTING_BOOL ? "true"
                            : s->kind == SIPP_SETTING_STR ? "\"/tmp/x\""
                                                          : NULL;
        if (value)
            snprintf(text, sizeof text, TARGET "[targets.runtime]\n%s = %s\n", s->toml, value);
        else
            snprintf(text, sizeof text, TARGET "[targets.runtime]\n%s = %llu\n", s->toml,
                     (unsigned long long)s->max);
        sipp__gw_config cfg;
        if (parse(text, &cfg) != 0) {
            fprintf(stderr, "%s: %s\n", s->toml, err);
            fail();
        }
        const char *f = (const char *)&cfg.targets[0].runtime.local + s->offset;
        if (s->kind == SIPP_SETTING_U32 || s->kind == SIPP_SETTING_I32) {
            uint32_t v;
            memcpy(&v, f, sizeof v);
            assert_int_equal(v, (uint32_t)s->max);
        } else if (s->kind == SIPP_SETTING_U64) {
            uint64_t v;
            memcpy(&v, f, sizeof v);
            assert_true(v == s->max);
        } else if (s->kind == SIPP_SETTING_BOOL) {
            assert_true(*(const bool *)f);
        } else {
            const char *v;
            memcpy(&v, f, sizeof v);
            assert_string_equal(v, "/tmp/x");
        }
        assert_int_equal(cfg.targets[0].runtime.local.struct_size, sizeof(sipp_local_params));
        sipp__gw_config_free(&cfg);
        snprintf(want, sizeof want, "targets.runtime.%s", s->toml);
        if (s->kind == SIPP_SETTING_U32 || s->kind == SIPP_SETTING_I32) {
            snprintf(text, sizeof text, TARGET "[targets.runtime]\n%s = %llu\n", s->toml,
                     (unsigned long long)s->max + 1);
            refused(text, want);
            snprintf(text, sizeof text, TARGET "[targets.runtime]\n%s = %lld\n", s->toml,
                     (long long)s->min - 1);
            refused(text, want);
        }
    }
    assert_true(n_keys >= 15);
}

/* A provider target's keys past model and timeout_seconds are the rows of SIPP_PROVIDER_SETTINGS
 * with a TOML key, parsed into the target's sipp_provider_params over the table's defaults; the
 * text rows with a TOML key (ignore_eos) are [targets.runtime] keys, parsed into runtime.text. */
static void test_provider_and_text_keys_come_from_the_settings_tables(void **state) {
    (void)state;
    sipp__gw_config cfg;
    assert_int_equal(parse("[[targets]]\nname = \"a\"\ntype = \"anthropic\"\nmodel = \"m\"\n"
                           "api_key_env = \"K\"\nbase_url = \"http://10.0.0.1/v1\"\n"
                           "version = \"2024-01-01\"\nallow_private_network = true\n"
                           "timeout_seconds = 5\n",
                           &cfg),
                     0);
    const sipp_provider_params *pp = &cfg.targets[0].provider;
    assert_string_equal(pp->api_key_env, "K");
    assert_string_equal(pp->base_url, "http://10.0.0.1/v1");
    assert_string_equal(pp->version, "2024-01-01");
    assert_true(pp->allow_private_network);
    assert_int_equal(pp->struct_size, sizeof(sipp_provider_params));
    assert_int_equal(pp->connect_timeout_ms, 0); /* no key: the table's default */
    assert_int_equal(cfg.targets[0].timeout_seconds, 5);
    sipp__gw_config_free(&cfg);
    /* each type takes the provider keys it has a use for */
    refused("[[targets]]\nname = \"o\"\ntype = \"openai\"\nmodel = \"m\"\napi_key_env = \"K\"\n"
            "version = \"x\"\n",
            "unknown key 'targets.version' for a target of type openai");
    refused(TARGET "base_url = \"http://x\"\n", "unknown key 'targets.base_url' for a target of type local");
    refused("[[targets]]\nname = \"o\"\ntype = \"openai\"\nmodel = \"m\"\napi_key_env = \"K\"\n"
            "allow_private_network = 1\n",
            "key 'targets.allow_private_network' must be a boolean");
    assert_int_equal(parse(TARGET "[targets.runtime]\nignore_eos = true\n", &cfg), 0);
    assert_true(cfg.targets[0].runtime.text.ignore_eos);
    assert_int_equal(cfg.targets[0].runtime.text.max_tokens, 256); /* the table's default */
    sipp__gw_config_free(&cfg);
    refused(TARGET "[targets.runtime]\nignore_eos = 1\n", "key 'targets.runtime.ignore_eos' must be a boolean");
}

static void test_defaults(void **state) {
    (void)state;
    sipp__gw_config cfg;
    assert_int_equal(parse(TARGET, &cfg), 0);
    assert_string_equal(cfg.public_bind, "127.0.0.1:8080");
    assert_string_equal(cfg.management_bind, "127.0.0.1:9090");
    assert_int_equal(cfg.max_request_bytes, 1048576);
    assert_int_equal(cfg.sse_heartbeat_seconds, 15);
    assert_string_equal(cfg.routes[SIPP__GW_R_CHAT_COMPLETIONS], "/v1/chat/completions");
    assert_string_equal(cfg.targets[0].backend, "auto");
    assert_int_equal(cfg.targets[0].runtime.local.n_gpu_layers, -1);
    assert_true(cfg.targets[0].runtime.cache);
    assert_int_equal(cfg.n_allowed_hosts, 0);
    assert_null(cfg.cache_scope_header); /* one scope per caller */
    sipp__gw_config_free(&cfg);
}

static void test_unknown_keys_name_key_and_line(void **state) {
    (void)state;
    refused("colour = 1\n" TARGET, "line 1: unknown key 'colour'");
    refused(TARGET "speed = 3\n", "line 5: unknown key 'targets.speed' for a target of type local");
    refused(TARGET "[targets.runtime]\nn_ctxx = 3\n", "line 6: unknown key 'targets.runtime.n_ctxx'");
    refused(TARGET "[routes]\nquerry = \"/q\"\n", "unknown key 'routes.querry'");
    refused(TARGET "[security.rate_limit]\nrpm = 1\n", "unknown key 'security.rate_limit.rpm'");
    refused(TARGET "[[tokens]]\nenv = \"A\"\ncaller = \"a\"\nrole = \"x\"\n", "unknown key 'tokens.role'");
    refused(TARGET "[redis]\nhost = \"x\"\n", "unknown key 'redis.host'");
    refused(TARGET "[cache]\nheader = \"x\"\n", "unknown key 'cache.header'");
    /* a key of another target type */
    refused("[[targets]]\nname = \"t\"\ntype = \"openai_compatible\"\nmodel = \"m\"\nbase_url = \"http://x\"\napi_key_env = \"K\"\n",
            "unknown key 'targets.api_key_env' for a target of type openai_compatible");
}

static void test_types_and_ranges(void **state) {
    (void)state;
    refused("max_request_bytes = \"big\"\n" TARGET, "key 'max_request_bytes' must be an integer, not a string");
    refused("max_request_bytes = 10\n" TARGET, "key 'max_request_bytes' must be between");
    refused("sse_heartbeat_seconds = -1\n" TARGET, "sse_heartbeat_seconds");
    refused("max_schema_bytes = 1\n" TARGET, "key 'max_schema_bytes' must be between");
    refused("max_schema_bytes = 99999999\n" TARGET, "key 'max_schema_bytes' must be between");
    refused("allowed_origins = \"https://a\"\n" TARGET, "must be an array of strings");
    refused("allowed_origins = [\"*\"]\n" TARGET, "exact origin");
    refused("allowed_origins = [\"https://a.example/\"]\n" TARGET, "exact origin");
    /* allowed_hosts: names or addresses, never a scheme, a port or a path */
    refused("allowed_hosts = \"gw.example\"\n" TARGET, "must be an array of strings");
    refused("allowed_hosts = [\"gw.example:8080\"]\n" TARGET, "without scheme or port");
    refused("allowed_hosts = [\"http://gw.example\"]\n" TARGET, "without scheme or port");
    refused("allowed_hosts = [\"gw.example/x\"]\n" TARGET, "without scheme or port");
    refused("allowed_hosts = [\"[::1]:80\"]\n" TARGET, "without scheme or port");
    refused("allowed_hosts = [\"*.example\"]\n" TARGET, "without scheme or port");
    /* the scope header: a plain header name */
    refused("[cache]\nscope_header = \"x user\"\n" TARGET, "key 'cache.scope_header' must be an HTTP header name");
    refused("[cache]\nscope_header = \"x:y\"\n" TARGET, "cache.scope_header");
    refused("[cache]\nscope_header = \"\"\n" TARGET, "cache.scope_header");
    refused("[cache]\nscope_header = 1\n" TARGET, "cache.scope_header");
    refused("cache = 1\n" TARGET, "key 'cache' must be a table");
    refused(TARGET "[targets.runtime]\nn_parallel = 100000\n", "targets.runtime.n_parallel");
    refused(TARGET "backend = \"tpu\"\n", "auto, cpu, cuda or vulkan");
    /* the model pin: 64 hex digits, checked without reading the file */
    refused(TARGET "sha256 = \"abc\"\n", "key 'targets.sha256' must be 64 hex digits");
    refused(TARGET "sha256 = \"" "zz00000000000000000000000000000000000000000000000000000000000000"
            "\"\n", "key 'targets.sha256' must be 64 hex digits");
    refused(TARGET "sha256 = 12\n", "targets.sha256");
    refused("[[targets]]\nname = \"o\"\ntype = \"openai\"\nmodel = \"m\"\napi_key_env = \"K\"\n"
            "sha256 = \"00\"\n", "unknown key 'targets.sha256' for a target of type openai");
    {
        sipp__gw_config cfg;
        const char *pin = "E28CA6C7371AF7AA396FA18936BCDBC222190C96B259348D5A5F6ADEBD0870C2";
        char text[512];
        snprintf(text, sizeof text, TARGET "sha256 = \"%s\"\n", pin);
        assert_int_equal(parse(text, &cfg), 0);
        assert_string_equal(cfg.targets[0].sha256, pin);
        sipp__gw_config_free(&cfg);
    }
    refused("[[targets]]\nname = \"t\"\ntype = \"mystery\"\nmodel = \"m\"\n", "key 'targets.type' must be");
    refused("[security.client_ip]\nsource = \"header\"\n" TARGET, "peer, x_forwarded_for or x_real_ip");
    refused("[security.client_ip]\ntrusted_proxy_cidrs = [\"10.0.0.1/8\"]\n" TARGET, "not an address or CIDR");
    refused("[security]\nip_blocklist = [\"banana\"]\n" TARGET, "not an address or CIDR");
    refused("[security.rate_limit]\nenabled = true\n" TARGET, "sets neither");
    refused("[redis]\nurl = \"http://x\"\n" TARGET, "redis://");
    refused("[redis]\nurl = \"redis://:pw@h:6379\"\n" TARGET, "redis.password_env");
    refused("[redis]\nurl = \"redis://h:99999\"\n" TARGET, "redis://HOST[:PORT][/DB]");
    refused("[redis]\nurl = \"unix://relative\"\n" TARGET, "unix:///absolute/path");
    refused("[redis]\nurl = \"redis://h\"\non_error = \"maybe\"\n" TARGET, "\"open\" or \"closed\"");
    refused("[redis]\nurl = \"redis://h\"\ntimeout_ms = 0\n" TARGET, "redis.timeout_ms");
    refused("[redis]\ntimeout_ms = 10\n" TARGET, "[redis] needs a url");
    refused("t = 1979-05-27T07:32:00Z\n" TARGET, "unknown key 't'");
}

static void test_whole_config_rules(void **state) {
    (void)state;
    refused("public_bind = \"127.0.0.1:9000\"\nmanagement_bind = \"127.0.0.1:9000\"\n" TARGET, "must differ");
    refused("public_bind = \"localhost:9000\"\n" TARGET, "literal address");
    refused("public_bind = \"127.0.0.1:99999\"\n" TARGET, "public_bind");
    refused("[routes]\nquery = \"v1/q\"\n" TARGET, "key 'routes.query' must start with '/'");
    refused("[routes]\nquery = \"/q?x=1\"\n" TARGET, "must not contain '?', '#'");
    refused("[routes]\nquery = \"/q#f\"\n" TARGET, "must not contain '?', '#'");
    refused("[routes]\nquery = \"/v1/chat\"\n" TARGET, "duplicate route '/v1/chat'");
    refused("[routes]\nmetrics = \"/v1/models\"\n" TARGET, "duplicate route");
    refused(TARGET TARGET, "duplicate target 't'");
    refused(TARGET "[[tokens]]\nenv = \"A\"\ncaller = \"a\"\n[[tokens]]\nenv = \"B\"\ncaller = \"a\"\n", "duplicate caller 'a'");
    refused(TARGET "[[tokens]]\nenv = \"A\"\ncaller = \"a\"\n[[tokens]]\nenv = \"A\"\ncaller = \"b\"\n", "same env var");
    refused(TARGET "[[tokens]]\nenv = \"A\"\ncaller = \"a\"\ntargets = [\"nope\"]\n", "unknown target 'nope'");
    refused(TARGET "[[tokens]]\nenv = \"NOT-AN-ENV\"\ncaller = \"a\"\n", "not an environment variable name");
    refused(TARGET "[[tokens]]\ncaller = \"a\"\n", "needs 'env'");
    refused("[[targets]]\nname = \"g\"\ntype = \"openai\"\nmodel = \"m\"\n", "needs 'api_key_env'");
    refused("[[targets]]\nname = \"g\"\ntype = \"openai_compatible\"\nmodel = \"m\"\n", "needs 'base_url'");
    refused("[[targets]]\nname = \"g\"\ntype = \"local\"\n", "needs 'model'");
    refused("[[targets]]\ntype = \"local\"\nmodel = \"m\"\n", "no 'name'");
    refused("public_bind = \"127.0.0.1:1\"\n", "no [[targets]]");
}

static void test_bad_toml(void **state) {
    (void)state;
    refused("a = \n", "not valid TOML");
    refused("[[targets]\n", "not valid TOML");
    refused("x = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
            "nests brackets deeper");
    /* regression (fuzz_gw_config): a byte that is not UTF-8 in a literal string made toml11
     * read past its buffer; such input is refused before the parser, with its line */
    refused("'\xff'", "not valid UTF-8");
    refused("a = 1\nb = '\xc0\xaf'\n", "line 2");
    refused("a = \"\xed\xa0\x80\"\n", "not valid UTF-8"); /* a surrogate */
    refused("a = '\xf4\x90\x80\x80'\n", "not valid UTF-8"); /* past U+10FFFF */
    refused("a = '\xe2\x82'\n", "not valid UTF-8");        /* cut short */
    sipp__gw_config ok;
    assert_int_equal(parse("# caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n[[targets]]\nname = \"l\"\n"
                           "type = \"local\"\nmodel = \"m\xc3\xa9.gguf\"\n", &ok), 0);
    sipp__gw_config_free(&ok);
    char nul[] = "a = 1\n\0b = 2\n";
    sipp__gw_config cfg;
    assert_int_equal(sipp__gw_config_parse(nul, sizeof nul - 1, "t", &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "NUL"));
}

/* Every form [redis] url accepts, and the refusals (pinned before the hand-written parser was
 * replaced by libcurl's URL API: the accepted forms and the messages stay the same). */
static void url_ok(const char *url, const char *host, int port, const char *path, int db) {
    sipp__gw_redis_addr a;
    char why[200] = "";
    if (!sipp__gw_redis_url_parse(url, &a, why, sizeof why)) {
        fprintf(stderr, "url '%s' refused: %s\n", url, why);
        fail();
    }
    assert_string_equal(a.host, host);
    assert_int_equal(a.port, port);
    assert_string_equal(a.path, path);
    assert_int_equal(a.db, db);
}

static void url_bad(const char *url, const char *needle) {
    sipp__gw_redis_addr a;
    char why[200] = "";
    if (sipp__gw_redis_url_parse(url, &a, why, sizeof why) || !strstr(why, needle)) {
        fprintf(stderr, "url '%s': why='%s' (wanted '%s')\n", url, why, needle);
        fail();
    }
}

static void test_redis_url_forms(void **state) {
    (void)state;
    url_ok("redis://localhost", "localhost", 6379, "", 0);
    url_ok("redis://localhost/", "localhost", 6379, "", 0);
    url_ok("redis://redis.internal:6380", "redis.internal", 6380, "", 0);
    url_ok("redis://10.0.0.5:7000/3", "10.0.0.5", 7000, "", 3);
    url_ok("redis://my_host-1/15", "my_host-1", 6379, "", 15);
    url_ok("redis://[::1]", "::1", 6379, "", 0);
    url_ok("redis://[fd00::5]:6390/2", "fd00::5", 6390, "", 2);
    url_ok("unix:///run/redis/redis.sock", "", 6379, "/run/redis/redis.sock", 0);
    const char *shape = "expected redis://HOST[:PORT][/DB] or unix:///PATH";
    url_bad("http://h", "must start with redis:// or unix://");
    url_bad("rediss://h", "must start with redis:// or unix://");
    url_bad("localhost:6379", "must start with redis:// or unix://");
    url_bad("redis://:pw@h:6379", "redis.password_env");
    url_bad("redis://user:pw@h", "redis.password_env");
    url_bad("redis://user@h", "redis.password_env");
    url_bad("redis://", shape);
    url_bad("redis://h:0", shape);
    url_bad("redis://h:99999", shape);
    url_bad("redis://h:12x", shape);
    url_bad("redis://h/x", shape);
    url_bad("redis://h/1/2", shape);
    url_bad("redis://h?db=1", shape);
    url_bad("redis://h/1#x", shape);
    url_bad("redis://h o", shape);
    url_bad("redis://h%41", shape);
    url_bad("redis://[::1", shape);
    url_bad("unix://relative", "unix:///absolute/path");
    char long_path[200] = "unix:///";
    memset(long_path + 8, 'a', 150);
    long_path[158] = '\0';
    url_bad(long_path, "unix:///absolute/path");
}

#define COMPAT "[[targets]]\nname = \"p\"\ntype = \"openai_compatible\"\nmodel = \"m\"\n"

static void test_upstream_pools(void **state) {
    (void)state;
    sipp__gw_config cfg;
    /* several replicas: the list, base_url = the first, a probe of /models by default */
    assert_int_equal(parse(COMPAT "base_urls = [\"http://a:1/v1\", \"https://b/v1\"]\n"
                           "[targets.pool]\naffinity_header = \"X-Conversation\"\nmax_retries = 0\n",
                           &cfg), 0);
    const sipp__gw_target *t = &cfg.targets[0];
    assert_int_equal(t->n_base_urls, 2);
    assert_string_equal(t->base_urls[1], "https://b/v1");
    assert_string_equal(t->provider.base_url, "http://a:1/v1");
    assert_string_equal(t->pool.health_path, "/models");
    assert_string_equal(t->pool.affinity_header, "X-Conversation");
    assert_int_equal(t->pool.max_retries, 0);
    assert_int_equal(t->pool.health_interval_seconds, 10);
    assert_int_equal(t->pool.failure_threshold, 3);
    assert_true(t->pool.retry_lost);
    sipp__gw_config_free(&cfg);
    /* one base_url: a pool of one, as before, no probe unless asked for */
    assert_int_equal(parse(COMPAT "base_url = \"http://a:1/v1\"\n", &cfg), 0);
    assert_int_equal(cfg.targets[0].n_base_urls, 1);
    assert_string_equal(cfg.targets[0].base_urls[0], "http://a:1/v1");
    assert_null(cfg.targets[0].pool.health_path);
    assert_int_equal(cfg.targets[0].pool.max_retries, 2);
    sipp__gw_config_free(&cfg);
    /* "" turns the probe off */
    assert_int_equal(parse(COMPAT "base_urls = [\"http://a/v1\", \"http://b/v1\"]\n"
                           "[targets.pool]\nhealth_path = \"\"\nretry_lost = false\n", &cfg), 0);
    assert_null(cfg.targets[0].pool.health_path);
    assert_false(cfg.targets[0].pool.retry_lost);
    sipp__gw_config_free(&cfg);
    refused(COMPAT "base_url = \"http://a/v1\"\nbase_urls = [\"http://b/v1\"]\n", "not both");
    refused(COMPAT "base_urls = []\n", "1 to 64 URLs");
    refused(COMPAT "base_urls = [\"ftp://a/v1\"]\n", "is not an http:// or https:// URL");
    refused(COMPAT "base_urls = [\"http://a/v\\\"1\"]\n", "is not an http:// or https:// URL");
    refused(COMPAT "base_urls = [\"http://a/v1\", \"http://a/v1\"]\n", "twice");
    refused(COMPAT "base_urls = [\"http://a/v1\"]\n[targets.pool]\nhealth_path = \"models\"\n",
            "must be a path starting with '/'");
    refused(COMPAT "base_urls = [\"http://a/v1\"]\n[targets.pool]\naffinity_header = \"a b\"\n",
            "targets.pool.affinity_header");
    refused(COMPAT "base_urls = [\"http://a/v1\"]\n[targets.pool]\nmax_retries = 17\n",
            "targets.pool.max_retries' must be between 0 and 16");
    refused(COMPAT "base_urls = [\"http://a/v1\"]\n[targets.pool]\nbackoff_initial_seconds = 9\n"
            "backoff_max_seconds = 3\n", "below");
    refused(COMPAT "base_urls = [\"http://a/v1\"]\n[targets.pool]\nweight = 1\n",
            "unknown key 'targets.pool.weight'");
    refused(TARGET "base_urls = [\"http://a/v1\"]\n", "unknown key 'targets.base_urls'");
    refused("[[targets]]\nname = \"g\"\ntype = \"openai\"\nmodel = \"m\"\n"
            "api_key_env = \"K\"\n[targets.pool]\nhealth_path = \"/models\"\n",
            "a health probe needs 'base_url' or 'base_urls'");
}

static void test_load_missing_file(void **state) {
    (void)state;
    sipp__gw_config cfg;
    assert_int_equal(sipp__gw_config_load("/nonexistent/gw.toml", &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/gw.toml"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_runtime_keys_come_from_the_settings_table),
        cmocka_unit_test(test_provider_and_text_keys_come_from_the_settings_tables),
        cmocka_unit_test(test_unknown_keys_name_key_and_line),
        cmocka_unit_test(test_types_and_ranges),
        cmocka_unit_test(test_whole_config_rules),
        cmocka_unit_test(test_bad_toml),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_redis_url_forms),
        cmocka_unit_test(test_upstream_pools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
