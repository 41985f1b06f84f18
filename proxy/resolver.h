/*
 * The proxy's own resolver (docs/design.md, P4): c-ares on the proxy's event loop,
 * asking only the --upstream-dns servers, with a cache that honours each
 * answer's TTL within a floor and a cap. The TCP path and the DNS service
 * ask the same cache, so the address a sandbox learns is the one the proxy
 * connects to.
 */
#ifndef SLUICE_RESOLVER_H
#define SLUICE_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

#define RESOLVER_MAX_ADDRS 16           /* addresses kept per name and family */
#define RESOLVER_TTL_FLOOR 5            /* seconds: a TTL below this is raised to it */
#define RESOLVER_TTL_CAP 300            /* seconds: a TTL above this is cut to it */
#define RESOLVER_NEG_TTL 5              /* seconds a failure (NXDOMAIN, SERVFAIL) is cached */
#define RESOLVER_CACHE_MAX 4096         /* names; the least recently used goes first */
#define RESOLVER_NAME_MAX 253           /* longer names fail without a query */
#define RESOLVER_TIMEOUT_MS 4000        /* a lookup that gets no answer by then fails */

struct resolver_addr {
    int family;                         /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint32_t ttl;                       /* seconds left, as answered (before the cap) */
};

/*
 * Status 0 with n == 0 is NODATA: the name exists but has no A or AAAA. The
 * result and the cname string it points to are valid only during the callback.
 */
struct resolver_result {
    int status;                         /* 0, or RESOLVER_NXDOMAIN / RESOLVER_FAILED */
    size_t n;                           /* A answers first, then AAAA */
    struct resolver_addr addrs[2 * RESOLVER_MAX_ADDRS];
    const char *cname;                  /* the CNAME chain's end, if any, or NULL */
};

enum { RESOLVER_NXDOMAIN = 1, RESOLVER_FAILED = 2 };

struct resolver;
struct resolver_query;

/*
 * SERVERS is a comma-separated list of "ADDR", "ADDR:PORT" or "[V6]:PORT"
 * (port 53 by default). Returns NULL and sets errno on failure.
 */
struct resolver *resolver_new(struct event_base *base, const char *servers);
/* Drops every pending query without calling it back; fine from inside a callback. */
void resolver_free(struct resolver *r);

typedef void (*resolver_cb)(const struct resolver_result *res, void *arg);

/*
 * Resolves NAME (a normalized hostname) to A and AAAA; a name of more than
 * RESOLVER_NAME_MAX bytes, or of bytes no hostname has, fails unasked. The
 * callback runs exactly once, later from the event loop (never from inside
 * this call), unless the query is cancelled first. A cache hit still answers
 * from the loop. Returns NULL (and errno) only when the query could not be
 * started.
 */
struct resolver_query *resolver_lookup(struct resolver *r, const char *name, resolver_cb cb,
                                       void *arg);

/*
 * The cache's answer for NAME, now, when it has a fresh one: the same answer
 * resolver_lookup() would deliver, without a query object or a trip through
 * the loop (the hot path of the DNS service and of connections to a name
 * seen before). OUT->cname points into CNAME. False when a lookup is needed.
 */
bool resolver_cached(struct resolver *r, const char *name, struct resolver_result *out,
                     char cname[RESOLVER_NAME_MAX + 1]);

/*
 * Cancels a pending query: its callback never runs. Once the callback has run
 * the handle is gone, so it must not be cancelled from or after the callback.
 * Lookups already sent upstream still complete and fill the cache.
 */
void resolver_cancel(struct resolver_query *q);

/* Drops every cached answer (after a policy reload, say); lookups in flight go on. */
void resolver_flush(struct resolver *r);

/* Names with a cached answer (fresh or not yet evicted), at most RESOLVER_CACHE_MAX. */
size_t resolver_cache_size(const struct resolver *r);

/*
 * For tests: the clock the cache's expiry reads, in milliseconds (monotonic
 * by default). Timeouts of queries in flight stay on the event loop's clock.
 */
void resolver_set_clock(struct resolver *r, uint64_t (*now_ms)(void *arg), void *arg);

/*
 * For tests and fuzzing; the resolver calls it on every upstream answer.
 * Parses MSG, an answer to an A (FAMILY AF_INET) or AAAA (AF_INET6) query for
 * NAME. Follows the CNAME chain from NAME (at most 8 links) and keeps only
 * the addresses its end owns, at most CAP, each with the smallest TTL on its
 * way. CNAME (RESOLVER_NAME_MAX + 1 bytes) gets the chain's end, or "".
 * Returns 0 (*N addresses, maybe none), RESOLVER_NXDOMAIN, RESOLVER_FAILED
 * (any other rcode), or -EBADMSG (malformed, or not an answer for NAME).
 */
int resolver_parse_answer(const uint8_t *msg, size_t len, const char *name, int family,
                          struct resolver_addr *addrs, size_t cap, size_t *n, char *cname);

#endif
