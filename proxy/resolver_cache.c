/*
 * The resolver's name table: entries hashed with a secret SipHash key into
 * BUCKETS chains, cached ones on an LRU list (RESOLVER_CACHE_MAX at most),
 * answers handed out with their TTLs aged.
 */
#include <stdlib.h>
#include <string.h>

#include "resolver_int.h"

struct entry **cache_bucket(struct resolver *r, uint64_t hash)
{
    return &r->buckets[hash & (BUCKETS - 1)];
}

struct entry *cache_find(struct resolver *r, const char *name, size_t len, uint64_t hash)
{
    struct entry *e;

    for (e = *cache_bucket(r, hash); e; e = e->hnext)
        if (e->hash == hash && e->len == len && memcmp(e->name, name, len) == 0)
            return e;
    return NULL;
}

void cache_lru_unlink(struct resolver *r, struct entry *e)
{
    if (!list_linked(&e->lru))
        return;
    list_remove(&e->lru);
    r->cached--;
}

void cache_lru_push(struct resolver *r, struct entry *e)
{
    list_push_back(&r->lru, &e->lru);
    r->cached++;
}

struct entry *cache_lru_oldest(struct resolver *r)
{
    return list_empty(&r->lru) ? NULL : list_entry(r->lru.next, struct entry, lru);
}

/* Unhooks E from its bucket and frees it; E must not be on the LRU list. */
void cache_entry_free(struct resolver *r, struct entry *e)
{
    struct entry **p;

    for (p = cache_bucket(r, e->hash); *p != e; p = &(*p)->hnext)
        ;
    *p = e->hnext;
    free(e->cname);
    free(e);
}

void cache_entry_drop(struct resolver *r, struct entry *e)
{
    cache_lru_unlink(r, e);
    cache_entry_free(r, e);
}

void cache_answer(const struct entry *e, uint64_t now, struct resolver_result *res,
                        char *cname)
{
    uint64_t age = (now - e->answered_ms) / 1000;

    *res = e->res;
    for (size_t i = 0; i < res->n; i++) {
        uint32_t *ttl = &res->addrs[i].ttl;

        *ttl = *ttl > age ? (uint32_t)(*ttl - age) : 0;
    }
    res->cname = NULL;
    if (e->cname) {
        memcpy(cname, e->cname, strlen(e->cname) + 1);
        res->cname = cname;
    }
}
