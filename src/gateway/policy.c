/*
 * policy.c — pure policy logic of the gateway (policy.h): addresses and CIDR ranges, the
 * token-bucket limiter, the shared-store breaker and the admission counters.
 *
 * Limiter invariants: each key has a request bucket and a token bucket; levels refill at
 * per_minute/60 per second up to their burst and are updated lazily when the key is touched.
 * The request bucket never goes below zero (a refused request takes nothing); the token bucket
 * may (a reservation larger than the bucket, or a request that used more than it reserved),
 * down to ten minutes of refill. Entries live in a chained hash table (a power-of-two bucket
 * array at least as large as max_keys, so chains stay short) and on one doubly-linked LRU list,
 * newest first; a lookup moves its entry to the front and a new key past max_keys evicts the
 * tail. One mutex per table guards both; every operation is O(1) and never blocks on I/O.
 */
#define _POSIX_C_SOURCE 200809L
#include "policy.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- addresses ----------------------------------------------------------------------------- */

bool sipp__gw_ip_parse(const char *s, sipp__gw_ip *out) {
    if (!s || !*s || strlen(s) >= INET6_ADDRSTRLEN) return false;
    struct in_addr v4;
    if (inet_pton(AF_INET, s, &v4) == 1) {
        memset(out->b, 0, 10);
        out->b[10] = out->b[11] = 0xff;
        memcpy(out->b + 12, &v4, 4);
        return true;
    }
    struct in6_addr v6;
    if (inet_pton(AF_INET6, s, &v6) == 1) {
        memcpy(out->b, &v6, 16);
        return true;
    }
    return false;
}

static bool is_mapped_v4(const sipp__gw_ip *ip) {
    static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(ip->b, pfx, 12) == 0;
}

bool sipp__gw_cidr_parse(const char *s, sipp__gw_cidr *out) {
    if (!s) return false;
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof addr) return false;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (!sipp__gw_ip_parse(addr, &out->net)) return false;
    bool v4 = strchr(addr, ':') == NULL;
    unsigned max = v4 ? 32 : 128, prefix = max;
    if (slash) {
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3) return false;
        prefix = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9') return false;
            prefix = prefix * 10 + (unsigned)(*p - '0');
        }
        if (prefix > max) return false;
    }
    out->prefix = v4 ? prefix + 96 : prefix;
    /* host bits must be zero */
    for (unsigned bit = out->prefix; bit < 128; bit++)
        if (out->net.b[bit / 8] & (0x80u >> (bit % 8))) return false;
    return true;
}

bool sipp__gw_cidr_match(const sipp__gw_cidr *c, const sipp__gw_ip *ip) {
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->net.b, ip->b, full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (c->net.b[full] & mask) == (ip->b[full] & mask);
}

bool sipp__gw_cidr_list_match(const sipp__gw_cidr *list, size_t n, const sipp__gw_ip *ip) {
    for (size_t i = 0; i < n; i++)
        if (sipp__gw_cidr_match(&list[i], ip)) return true;
    return false;
}

void sipp__gw_ip_format(const sipp__gw_ip *ip, char *buf, size_t cap) {
    char tmp[INET6_ADDRSTRLEN];
    if (is_mapped_v4(ip)) inet_ntop(AF_INET, ip->b + 12, tmp, sizeof tmp);
    else inet_ntop(AF_INET6, ip->b, tmp, sizeof tmp);
    snprintf(buf, cap, "%s", tmp);
}

void sipp__gw_ip_rate_key(const sipp__gw_ip *ip, char *buf, size_t cap) {
    if (is_mapped_v4(ip)) {
        sipp__gw_ip_format(ip, buf, cap);
        return;
    }
    uint8_t net[16] = {0};
    memcpy(net, ip->b, 8);
    char tmp[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, net, tmp, sizeof tmp);
    snprintf(buf, cap, "%s/64", tmp);
}

/* Copies one comma-separated item of `s` (trimmed) into buf; false if it does not fit. */
static bool item(const char *s, size_t len, char *buf, size_t cap) {
    while (len && (*s == ' ' || *s == '\t')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    if (len == 0 || len >= cap) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return true;
}

sipp__gw_ip sipp__gw_client_ip(const sipp__gw_ip *peer, const char *header, bool is_xff,
                               const sipp__gw_cidr *trusted, size_t n_trusted) {
    if (!header || !sipp__gw_cidr_list_match(trusted, n_trusted, peer)) return *peer;
    char buf[INET6_ADDRSTRLEN + 1];
    sipp__gw_ip ip;
    if (!is_xff) return item(header, strlen(header), buf, sizeof buf) && sipp__gw_ip_parse(buf, &ip)
                           ? ip
                           : *peer;
    /* Walk from the right: each hop appended the address it saw. The first one that is not a
     * trusted proxy is the client; if all are trusted, the leftmost is. */
    const char *end = header + strlen(header);
    sipp__gw_ip last = *peer;
    while (end > header) {
        const char *start = end;
        while (start > header && start[-1] != ',') start--;
        if (!item(start, (size_t)(end - start), buf, sizeof buf) || !sipp__gw_ip_parse(buf, &ip))
            return last; /* garbage: trust nothing to its left */
        last = ip;
        if (!sipp__gw_cidr_list_match(trusted, n_trusted, &ip)) return ip;
        end = start > header ? start - 1 : header;
    }
    return last;
}

bool sipp__gw_digest_equal(const uint8_t a[32], const uint8_t b[32]) {
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < 32; i++) diff |= (uint8_t)(a[i] ^ b[i]);
    return diff == 0;
}

/* ---- limiter ------------------------------------------------------------------------------ */

typedef struct entry {
    struct entry *hnext;         /* hash chain */
    struct entry *newer, *older; /* LRU list */
    double req_level, tok_level, last_s;
    bool has_req, has_tok; /* the bucket has been used (a level never used reads as full) */
    char key[];
} entry;

struct sipp__gw_limiter {
    pthread_mutex_t mu;
    entry **buckets;
    size_t mask;           /* bucket count - 1 (a power of two) */
    entry *newest, *oldest;
    size_t n, max;
    uint64_t seed;         /* per table: chains cannot be lined up by choosing keys */
};

sipp__gw_limiter *sipp__gw_limiter_new(size_t max_keys) {
    sipp__gw_limiter *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->max = max_keys ? max_keys : 1;
    size_t nb = 16;
    while (nb < l->max) nb *= 2;
    l->buckets = calloc(nb, sizeof *l->buckets);
    if (!l->buckets) {
        free(l);
        return NULL;
    }
    l->mask = nb - 1;
    if (getrandom(&l->seed, sizeof l->seed, GRND_NONBLOCK) != (ssize_t)sizeof l->seed)
        l->seed = (uint64_t)(uintptr_t)l * 0x9e3779b97f4a7c15ull;
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void sipp__gw_limiter_free(sipp__gw_limiter *l) {
    if (!l) return;
    for (entry *e = l->newest, *nx; e; e = nx) {
        nx = e->older;
        free(e);
    }
    free(l->buckets);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static size_t slot_of(const sipp__gw_limiter *l, const char *s) {
    uint64_t h = 1469598103934665603ull ^ l->seed; /* FNV-1a, seeded */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32)) & l->mask;
}

static double cap_of(sipp__gw_rate r) { return r.burst ? r.burst : r.per_minute; }

static void lru_unlink(sipp__gw_limiter *l, entry *e) {
    if (e->newer) e->newer->older = e->older;
    else l->newest = e->older;
    if (e->older) e->older->newer = e->newer;
    else l->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_front(sipp__gw_limiter *l, entry *e) {
    e->newer = NULL;
    e->older = l->newest;
    if (l->newest) l->newest->newer = e;
    l->newest = e;
    if (!l->oldest) l->oldest = e;
}

static entry *find(sipp__gw_limiter *l, const char *key) {
    for (entry *e = l->buckets[slot_of(l, key)]; e; e = e->hnext)
        if (strcmp(e->key, key) == 0) return e;
    return NULL;
}

/* Drops the least recently used entry. Called with the lock held and n > 0. */
static void evict_oldest(sipp__gw_limiter *l) {
    entry *dead = l->oldest;
    lru_unlink(l, dead);
    for (entry **pe = &l->buckets[slot_of(l, dead->key)]; *pe; pe = &(*pe)->hnext)
        if (*pe == dead) {
            *pe = dead->hnext;
            break;
        }
    free(dead);
    l->n--;
}

/* The entry of `key`, refilled to now_s and made the most recent; created (full) when absent.
 * NULL only when out of memory. Called with the lock held. */
static entry *lookup(sipp__gw_limiter *l, const char *key, sipp__gw_rate req, sipp__gw_rate tok,
                     double now_s) {
    entry *e = find(l, key);
    if (e) {
        double dt = now_s > e->last_s ? now_s - e->last_s : 0;
        if (req.per_minute) {
            e->req_level = e->has_req ? e->req_level + dt * req.per_minute / 60.0 : cap_of(req);
            if (e->req_level > cap_of(req)) e->req_level = cap_of(req);
            e->has_req = true;
        }
        if (tok.per_minute) {
            e->tok_level = e->has_tok ? e->tok_level + dt * tok.per_minute / 60.0 : cap_of(tok);
            if (e->tok_level > cap_of(tok)) e->tok_level = cap_of(tok);
            e->has_tok = true;
        }
        e->last_s = now_s;
        if (e != l->newest) {
            lru_unlink(l, e);
            lru_push_front(l, e);
        }
        return e;
    }
    if (l->n >= l->max) evict_oldest(l);
    size_t kl = strlen(key);
    e = malloc(sizeof *e + kl + 1);
    if (!e) return NULL;
    memcpy(e->key, key, kl + 1);
    e->req_level = cap_of(req);
    e->tok_level = cap_of(tok);
    e->has_req = req.per_minute != 0;
    e->has_tok = tok.per_minute != 0;
    e->last_s = now_s;
    size_t h = slot_of(l, key);
    e->hnext = l->buckets[h];
    l->buckets[h] = e;
    lru_push_front(l, e);
    l->n++;
    return e;
}

static uint32_t seconds_until(double missing, uint32_t per_minute) {
    double s = ceil(missing * 60.0 / per_minute);
    if (s < 1) s = 1;
    if (s > 3600) s = 3600;
    return (uint32_t)s;
}

bool sipp__gw_limiter_take(sipp__gw_limiter *l, const char *key, sipp__gw_rate req,
                           sipp__gw_rate tok, double now_s, uint32_t *retry_after_s) {
    if (!req.per_minute && !tok.per_minute) return true;
    pthread_mutex_lock(&l->mu);
    entry *e = lookup(l, key, req, tok, now_s);
    bool ok = true;
    uint32_t wait = 0;
    if (!e) {
        ok = true; /* out of memory: fail open rather than refuse everyone */
    } else {
        if (req.per_minute && e->req_level < 1.0) {
            ok = false;
            wait = seconds_until(1.0 - e->req_level, req.per_minute);
        }
        if (tok.per_minute && e->tok_level <= 0.0) {
            ok = false;
            uint32_t w = seconds_until(-e->tok_level + 1.0, tok.per_minute);
            if (w > wait) wait = w;
        }
        if (ok && req.per_minute) e->req_level -= 1.0;
    }
    pthread_mutex_unlock(&l->mu);
    if (!ok && retry_after_s) *retry_after_s = wait;
    return ok;
}

static double debt_floor(sipp__gw_rate tok) { return -10.0 * tok.per_minute; }

bool sipp__gw_limiter_reserve(sipp__gw_limiter *l, const char *key, sipp__gw_rate tok,
                              uint64_t tokens, double now_s, uint64_t *held,
                              uint32_t *retry_after_s) {
    *held = 0;
    if (!tok.per_minute || tokens == 0) return true;
    sipp__gw_rate none = {0, 0};
    pthread_mutex_lock(&l->mu);
    entry *e = lookup(l, key, none, tok, now_s);
    bool ok = true;
    uint32_t wait = 0;
    if (e) { /* out of memory: fail open, as take */
        double need = (double)tokens < cap_of(tok) ? (double)tokens : cap_of(tok);
        if (e->tok_level >= need) {
            double room = floor(e->tok_level - debt_floor(tok));
            double take = (double)tokens < room ? (double)tokens : room;
            e->tok_level -= take;
            *held = (uint64_t)take;
        } else {
            ok = false;
            wait = seconds_until(need - e->tok_level, tok.per_minute);
        }
    }
    pthread_mutex_unlock(&l->mu);
    if (!ok && retry_after_s) *retry_after_s = wait;
    return ok;
}

void sipp__gw_limiter_settle(sipp__gw_limiter *l, const char *key, sipp__gw_rate tok,
                             uint64_t held, uint64_t used, double now_s) {
    if (!tok.per_minute || held == used) return;
    sipp__gw_rate none = {0, 0};
    pthread_mutex_lock(&l->mu);
    entry *e = lookup(l, key, none, tok, now_s);
    if (e) {
        e->tok_level += (double)held - (double)used;
        if (e->tok_level < debt_floor(tok)) e->tok_level = debt_floor(tok);
        if (e->tok_level > cap_of(tok)) e->tok_level = cap_of(tok);
    }
    pthread_mutex_unlock(&l->mu);
}

size_t sipp__gw_limiter_size(sipp__gw_limiter *l) {
    pthread_mutex_lock(&l->mu);
    size_t n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

bool sipp__gw_limiter_has(sipp__gw_limiter *l, const char *key) {
    pthread_mutex_lock(&l->mu);
    bool has = find(l, key) != NULL;
    pthread_mutex_unlock(&l->mu);
    return has;
}

/* ---- breaker ------------------------------------------------------------------------------ */

void sipp__gw_breaker_init(sipp__gw_breaker *b, unsigned trip_after, double probe_every_s) {
    memset(b, 0, sizeof *b);
    b->trip_after = trip_after ? trip_after : 1;
    b->probe_every_s = probe_every_s;
    b->last_fail_s = -INFINITY;
}

bool sipp__gw_breaker_allow(sipp__gw_breaker *b, double now_s, bool *probe) {
    *probe = false;
    if (!b->open) return true;
    if (b->probing || now_s < b->next_probe_s) return false;
    b->probing = true;
    *probe = true;
    return true;
}

bool sipp__gw_breaker_done(sipp__gw_breaker *b, bool ok, bool probe, double started_s,
                           double now_s) {
    if (probe) b->probing = false;
    if (ok) {
        b->fails = 0;
        if (!b->open) return false;
        b->open = false; /* the store answers again */
        return true;
    }
    if (started_s >= b->last_fail_s) b->fails++; /* else: the same stall as the last failure */
    if (now_s > b->last_fail_s) b->last_fail_s = now_s;
    if (b->open) {
        if (probe) b->next_probe_s = now_s + b->probe_every_s;
        return false;
    }
    if (b->fails < b->trip_after) return false;
    b->open = true;
    b->next_probe_s = now_s + b->probe_every_s;
    return true;
}

/* ---- admission ---------------------------------------------------------------------------- */

int sipp__gw_admission_init(sipp__gw_admission *a, uint32_t global_max, const uint32_t *caller_max,
                            size_t n_callers) {
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    a->global_max = global_max;
    a->n_callers = n_callers;
    a->caller_max = calloc(n_callers + 1, sizeof *a->caller_max);
    a->caller_active = calloc(n_callers + 1, sizeof *a->caller_active);
    if (!a->caller_max || !a->caller_active) return -1;
    for (size_t i = 0; i < n_callers; i++) a->caller_max[i] = caller_max ? caller_max[i] : 0;
    return 0;
}

void sipp__gw_admission_destroy(sipp__gw_admission *a) {
    free(a->caller_max);
    free(a->caller_active);
    pthread_mutex_destroy(&a->mu);
}

bool sipp__gw_admission_acquire(sipp__gw_admission *a, size_t caller) {
    pthread_mutex_lock(&a->mu);
    bool ok = !a->global_max || a->global_active < a->global_max;
    if (ok && caller < a->n_callers && a->caller_max[caller])
        ok = a->caller_active[caller] < a->caller_max[caller];
    if (ok) {
        a->global_active++;
        if (caller < a->n_callers) a->caller_active[caller]++;
    }
    pthread_mutex_unlock(&a->mu);
    return ok;
}

void sipp__gw_admission_release(sipp__gw_admission *a, size_t caller) {
    pthread_mutex_lock(&a->mu);
    if (a->global_active) a->global_active--;
    if (caller < a->n_callers && a->caller_active[caller]) a->caller_active[caller]--;
    pthread_mutex_unlock(&a->mu);
}

uint32_t sipp__gw_admission_active(sipp__gw_admission *a) {
    pthread_mutex_lock(&a->mu);
    uint32_t n = a->global_active;
    pthread_mutex_unlock(&a->mu);
    return n;
}

uint32_t sipp__gw_admission_global_max(sipp__gw_admission *a) {
    pthread_mutex_lock(&a->mu);
    uint32_t n = a->global_max;
    pthread_mutex_unlock(&a->mu);
    return n;
}

void sipp__gw_admission_set_global_max(sipp__gw_admission *a, uint32_t max) {
    pthread_mutex_lock(&a->mu);
    a->global_max = max;
    pthread_mutex_unlock(&a->mu);
}

void sipp__gw_admission_set_caller_max(sipp__gw_admission *a, size_t caller, uint32_t max) {
    pthread_mutex_lock(&a->mu);
    if (caller < a->n_callers) a->caller_max[caller] = max;
    pthread_mutex_unlock(&a->mu);
}
