/*
 * The proxy's own resolver (SPEC P4): c-ares on the proxy's event loop,
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

struct resolver_addr {
    int family;                         /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint32_t ttl;                       /* seconds left, as answered (before the cap) */
};

struct resolver_result {
    int status;                         /* 0, or RESOLVER_NXDOMAIN / RESOLVER_FAILED */
    size_t n;                           /* A answers first, then AAAA */
    struct resolver_addr addrs[2 * RESOLVER_MAX_ADDRS];
    const char *cname;                  /* the canonical name when the answer had a CNAME chain, or NULL */
};

enum { RESOLVER_NXDOMAIN = 1, RESOLVER_FAILED = 2 };

struct resolver;
struct resolver_query;

/*
 * SERVERS is a comma-separated list of "ADDR", "ADDR:PORT" or "[V6]:PORT"
 * (port 53 by default). Returns NULL and sets errno on failure.
 */
struct resolver *resolver_new(struct event_base *base, const char *servers);
void resolver_free(struct resolver *r);

typedef void (*resolver_cb)(const struct resolver_result *res, void *arg);

/*
 * Resolves NAME (a normalized hostname) to A and AAAA. The callback runs
 * exactly once, later from the event loop (never from inside this call),
 * unless the query is cancelled first. A cache hit still answers from the
 * loop. Returns NULL (and errno) only when the query could not be started.
 */
struct resolver_query *resolver_lookup(struct resolver *r, const char *name, resolver_cb cb,
                                       void *arg);

/* Cancels a pending query: its callback never runs. */
void resolver_cancel(struct resolver_query *q);

/* Drops every cached answer (after a policy reload, say). */
void resolver_flush(struct resolver *r);

#endif
