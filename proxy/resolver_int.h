/*
 * The resolver's insides, shared by its three files and nothing else:
 * resolver.c (c-ares on the event loop, queries and fetches),
 * resolver_cache.c (the name table: SipHash buckets, TTLs, LRU) and
 * resolver_wire.c (reading answers and names, pure).
 */
#ifndef SLUICE_RESOLVER_INT_H
#define SLUICE_RESOLVER_INT_H

#include <ares.h>

#include "list.h"
#include "resolver.h"
#include "siphash.h"

#define BUCKETS 8192            /* power of two; cached names plus those in flight */

_Static_assert((BUCKETS & (BUCKETS - 1)) == 0, "BUCKETS must be a power of two");
_Static_assert(BUCKETS >= 2 * RESOLVER_CACHE_MAX, "hash chains must stay short");

struct resolver_query;

struct resolver_query {
    struct resolver *r;
    struct list link;                   /* on a fetch's waiters, or on r->ready */
    struct event *ev;                   /* runs the callback from the loop */
    resolver_cb cb;
    void *arg;
    struct resolver_result res;         /* a copy: the cache entry may go before delivery */
    char cname[RESOLVER_NAME_MAX + 1];
};

struct fetch;

/* One family's half of a fetch: the c-ares callback argument. */
struct half {
    struct fetch *f;
    int family;
    int status;                         /* ANSWER_PENDING, 0, RESOLVER_NXDOMAIN/FAILED */
    size_t n;
    struct resolver_addr addrs[RESOLVER_MAX_ADDRS];
    char cname[RESOLVER_NAME_MAX + 1];
};

/*
 * The upstream queries (A and AAAA) for one name. It outlives its entry when
 * the deadline gives up on it: c-ares still owns the queries and calls back
 * later, so the fetch is freed only when both have.
 */
struct fetch {
    struct resolver *r;
    struct entry *e;                    /* NULL once finished */
    struct event *deadline;
    int pending;                        /* c-ares queries yet to call back */
    struct half half[2];                /* A, then AAAA */
    struct list waiters;                /* struct resolver_query */
};

/* A name: either being fetched (fetch set) or cached (on the LRU list). */
struct entry {
    struct entry *hnext;
    struct list lru;                    /* on r->lru while cached */
    struct fetch *fetch;
    uint64_t hash;
    uint64_t answered_ms, expires_ms;
    struct resolver_result res;         /* res.cname unused: see cname */
    char *cname;
    size_t len;
    char name[];
};

/* A socket c-ares asked us to watch. */
struct sock_watch {
    struct resolver *r;
    struct sock_watch *next;
    ares_socket_t fd;
    short what;
    struct event *ev;
};

struct resolver {
    struct event_base *base;
    ares_channel channel;
    struct event *timer;                /* c-ares's next timeout */
    struct sock_watch *socks;
    struct entry **buckets;
    struct list lru;                    /* cached entries, oldest first */
    size_t cached;
    struct list ready;                  /* answered queries waiting for the loop */
    uint64_t key[2];                    /* hash key: sandboxes choose the names */
    uint64_t (*now_ms)(void *arg);
    void *clock_arg;
    bool closing;
    bool lib_init;
};

/* resolver_wire.c */
/* NAME in dotted form (one trailing dot allowed) as lowercase wire labels
 * (DNS_NAME_WIRE_MAX bytes); -EINVAL for anything but hostname bytes. */
int resolver_name_to_wire(const char *name, uint8_t *wire, size_t *wlen);

/* resolver_cache.c */
struct entry **cache_bucket(struct resolver *r, uint64_t hash);
struct entry *cache_find(struct resolver *r, const char *name, size_t len, uint64_t hash);
void cache_lru_unlink(struct resolver *r, struct entry *e);
void cache_lru_push(struct resolver *r, struct entry *e);
struct entry *cache_lru_oldest(struct resolver *r);
void cache_entry_free(struct resolver *r, struct entry *e);    /* E off the LRU list */
void cache_entry_drop(struct resolver *r, struct entry *e);
/* E's answer as of NOW: TTLs aged, the CNAME copied into CNAME. */
void cache_answer(const struct entry *e, uint64_t now, struct resolver_result *res,
                  char *cname);

#endif
