/*
 * The virtual-address pool: slots in one array (slot I is the addresses
 * base + 1 + I), a SipHash-keyed chained table from name to slot, and a list
 * of the idle slots (mapped, no flow holding them) in the order their lives
 * end, whose head is the one to reuse when the pool is full.
 */
#include "vpool.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "siphash.h"

#define NONE (-1)

struct slot {
    char name[HOSTNAME_MAX + 1];    /* "" while free (or forgotten and still held) */
    uint64_t hash;
    int32_t next_hash;
    int32_t prev, next;             /* idle list */
    bool idle;                      /* on the idle list */
    uint32_t refs;                  /* flows using the addresses */
    uint64_t ttl_ms;                /* what it was last answered with */
    uint64_t expires_ms;            /* its life ends; reusable after, when idle */
};

struct vpool {
    uint32_t max;
    struct slot *slots;
    int32_t *buckets;
    uint32_t n_buckets;             /* a power of two, at least twice MAX */
    uint32_t next_unused;           /* how many slots were ever handed out */
    uint32_t start;                 /* the first slot handed out (see take_slot()) */
    int32_t idle_head, idle_tail;   /* the life that ends first at the head */
    uint8_t ula[12];
    uint64_t key[2];
    uint32_t mapped, in_use;
    uint64_t evictions;
};

struct vpool *vpool_new(uint32_t max, const uint8_t ula_prefix[12], const uint64_t key[2])
{
    struct vpool *p;

    if (max < 1 || max > VPOOL_MAX || ula_prefix[0] != 0xfd)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->max = max;
    for (p->n_buckets = 16; p->n_buckets < 2 * max; p->n_buckets *= 2)
        ;
    p->slots = calloc(max, sizeof(*p->slots));    /* pages are touched only when used */
    p->buckets = malloc(p->n_buckets * sizeof(*p->buckets));
    if (!p->slots || !p->buckets) {
        vpool_free(p);
        return NULL;
    }
    memset(p->buckets, 0xff, p->n_buckets * sizeof(*p->buckets));     /* NONE */
    p->idle_head = p->idle_tail = NONE;
    memcpy(p->ula, ula_prefix, sizeof(p->ula));
    p->key[0] = key[0];
    p->key[1] = key[1];
    p->start = (uint32_t)(key[1] % max);
    return p;
}

void vpool_free(struct vpool *p)
{
    if (!p)
        return;
    free(p->slots);
    free(p->buckets);
    free(p);
}

/* ---- the idle list: sorted by the end of life, inserted from the tail ---- */

static void idle_unlink(struct vpool *p, int32_t i)
{
    struct slot *s = &p->slots[i];

    if (!s->idle)
        return;
    if (s->prev != NONE)
        p->slots[s->prev].next = s->next;
    else
        p->idle_head = s->next;
    if (s->next != NONE)
        p->slots[s->next].prev = s->prev;
    else
        p->idle_tail = s->prev;
    s->prev = s->next = NONE;
    s->idle = false;
}

static void idle_insert(struct vpool *p, int32_t i)
{
    struct slot *s = &p->slots[i];
    int32_t after = p->idle_tail;

    /* one TTL for every answer keeps this O(1): the new life ends last */
    while (after != NONE && p->slots[after].expires_ms > s->expires_ms)
        after = p->slots[after].prev;
    s->prev = after;
    s->next = after == NONE ? p->idle_head : p->slots[after].next;
    if (s->next != NONE)
        p->slots[s->next].prev = i;
    else
        p->idle_tail = i;
    if (after != NONE)
        p->slots[after].next = i;
    else
        p->idle_head = i;
    s->idle = true;
}

/* ---- the name table ---- */

static int32_t *bucket(struct vpool *p, uint64_t hash)
{
    return &p->buckets[hash & (p->n_buckets - 1)];
}

static int32_t find(struct vpool *p, const char *name, uint64_t hash)
{
    int32_t i;

    for (i = *bucket(p, hash); i != NONE; i = p->slots[i].next_hash)
        if (p->slots[i].hash == hash && strcmp(p->slots[i].name, name) == 0)
            return i;
    return NONE;
}

/* Takes slot I's name away (out of the table); its addresses then map to nothing. */
static void unname(struct vpool *p, int32_t i)
{
    struct slot *s = &p->slots[i];
    int32_t *at = bucket(p, s->hash);

    while (*at != i)
        at = &p->slots[*at].next_hash;
    *at = s->next_hash;
    s->name[0] = '\0';
    p->mapped--;
}

static void addrs_of(const struct vpool *p, uint32_t i, struct vpool_addr *out)
{
    uint32_t v4 = VPOOL_V4_BASE + 1 + i, n = i + 1;

    out->v4[0] = (uint8_t)(v4 >> 24);
    out->v4[1] = (uint8_t)(v4 >> 16);
    out->v4[2] = (uint8_t)(v4 >> 8);
    out->v4[3] = (uint8_t)v4;
    memcpy(out->v6, p->ula, sizeof(p->ula));
    out->v6[12] = (uint8_t)(n >> 24);
    out->v6[13] = (uint8_t)(n >> 16);
    out->v6[14] = (uint8_t)(n >> 8);
    out->v6[15] = (uint8_t)n;
}

/*
 * A slot for a new name: one never used, else the idle one whose life ended
 * first. Fresh slots are handed out from a random start, so that a restarted
 * proxy is unlikely to give a name the address another name had before (an
 * answer the sandbox still holds then maps to nothing, not to another name).
 */
static int32_t take_slot(struct vpool *p, uint64_t now_ms, bool *evicted)
{
    int32_t i;

    if (p->next_unused < p->max)
        return (int32_t)((p->start + p->next_unused++) % p->max);
    i = p->idle_head;
    if (i == NONE || p->slots[i].expires_ms > now_ms)
        return NONE;
    idle_unlink(p, i);
    unname(p, i);
    p->evictions++;
    *evicted = true;
    return i;
}

int vpool_map(struct vpool *p, const char *name, uint64_t now_ms, uint64_t ttl_ms,
              struct vpool_addr *out, bool *evicted)
{
    size_t len = strlen(name);
    uint64_t hash = siphash24(p->key, (const uint8_t *)name, len);
    int32_t i = find(p, name, hash);
    struct slot *s;

    *evicted = false;
    if (len == 0 || len > HOSTNAME_MAX)
        return -EINVAL;
    if (i == NONE) {
        i = take_slot(p, now_ms, evicted);
        if (i == NONE)
            return -ENOSPC;
        s = &p->slots[i];
        memcpy(s->name, name, len + 1);
        s->hash = hash;
        s->next_hash = *bucket(p, hash);
        *bucket(p, hash) = i;
        s->expires_ms = 0;
        p->mapped++;
    }
    s = &p->slots[i];
    s->ttl_ms = ttl_ms;
    if (now_ms + ttl_ms > s->expires_ms)
        s->expires_ms = now_ms + ttl_ms;
    if (s->refs == 0) {
        idle_unlink(p, i);
        idle_insert(p, i);
    }
    addrs_of(p, (uint32_t)i, out);
    return 0;
}

bool vpool_contains(const struct vpool *p, int family, const uint8_t *addr)
{
    if (family == AF_INET) {
        uint32_t a = (uint32_t)addr[0] << 24 | (uint32_t)addr[1] << 16 |
                     (uint32_t)addr[2] << 8 | addr[3];

        return (a >> (32 - VPOOL_V4_PREFIX)) == (VPOOL_V4_BASE >> (32 - VPOOL_V4_PREFIX)) &&
               a != VPOOL_V4_BASE;
    }
    return family == AF_INET6 && memcmp(addr, p->ula, sizeof(p->ula)) == 0;
}

/* The slot ADDR names, or NONE. */
static int32_t slot_of(const struct vpool *p, int family, const uint8_t *addr)
{
    const uint8_t *b = family == AF_INET ? addr : addr + 12;
    uint32_t n = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];

    if (!vpool_contains(p, family, addr))
        return NONE;
    if (family == AF_INET)
        n -= VPOOL_V4_BASE;
    if (n < 1 || n > p->max)
        return NONE;
    return (int32_t)(n - 1);
}

const char *vpool_lookup(struct vpool *p, int family, const uint8_t *addr, bool hold)
{
    int32_t i = slot_of(p, family, addr);
    struct slot *s;

    if (i == NONE || !p->slots[i].name[0])
        return NULL;
    s = &p->slots[i];
    if (hold) {
        if (s->refs++ == 0) {
            idle_unlink(p, i);
            p->in_use++;
        }
    }
    return s->name;
}

void vpool_release(struct vpool *p, int family, const uint8_t *addr, uint64_t now_ms)
{
    int32_t i = slot_of(p, family, addr);
    struct slot *s;

    if (i == NONE || p->slots[i].refs == 0)
        return;
    s = &p->slots[i];
    if (--s->refs > 0)
        return;
    p->in_use--;
    if (now_ms + s->ttl_ms > s->expires_ms)
        s->expires_ms = now_ms + s->ttl_ms;
    idle_insert(p, i);
}

void vpool_stats(const struct vpool *p, struct vpool_stats *st)
{
    st->size = p->max;
    st->mapped = p->mapped;
    st->in_use = p->in_use;
    st->evictions = p->evictions;
}
