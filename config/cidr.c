/*
 * CIDR parsing and the prefix table. The table is one open-addressing hash
 * keyed by (family, length, network) plus, per family, the set of lengths in
 * use; a lookup masks the address once per length in use, longest first.
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned family_bits(int family)
{
    return family == AF_INET ? 32 : 128;
}

static void mask_addr(uint8_t *dst, const uint8_t *src, unsigned nbytes, unsigned len)
{
    unsigned i;

    for (i = 0; i < nbytes; i++) {
        if (len >= 8) {
            dst[i] = src[i];
            len -= 8;
        } else {
            dst[i] = (uint8_t)(src[i] & (uint8_t)(0xff << (8 - len)));
            len = 0;
        }
    }
}

enum cidr_status cidr_parse(const char *s, struct cidr *out)
{
    char buf[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    uint8_t raw[16] = {0};
    unsigned long len;
    unsigned nbytes;

    if (alen == 0 || alen >= sizeof(buf))
        return CIDR_SYNTAX;
    memcpy(buf, s, alen);
    buf[alen] = '\0';

    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, raw) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, raw) == 1)
        out->family = AF_INET6;
    else
        return CIDR_SYNTAX;

    if (slash) {
        const char *p = slash + 1;
        char *end;

        if (*p < '0' || *p > '9' || strlen(p) > 3)
            return CIDR_SYNTAX;
        len = strtoul(p, &end, 10);
        if (*end != '\0')
            return CIDR_SYNTAX;
        if (len > family_bits(out->family))
            return CIDR_BAD_LENGTH;
    } else {
        len = family_bits(out->family);
    }
    out->len = (uint8_t)len;
    nbytes = family_bits(out->family) / 8;
    mask_addr(out->addr, raw, nbytes, out->len);
    return memcmp(out->addr, raw, nbytes) == 0 ? CIDR_OK : CIDR_HOST_BITS;
}

void cidr_format(const struct cidr *c, char buf[CIDR_STRLEN])
{
    char a[INET6_ADDRSTRLEN];

    if (!inet_ntop(c->family, c->addr, a, sizeof(a)))
        snprintf(a, sizeof(a), "?");
    snprintf(buf, CIDR_STRLEN, "%s/%u", a, c->len);
}

bool cidr_contains(const struct cidr *c, int family, const uint8_t *addr)
{
    uint8_t m[16];
    unsigned nbytes = family_bits(family) / 8;

    if (c->family != family)
        return false;
    mask_addr(m, addr, nbytes, c->len);
    return memcmp(m, c->addr, nbytes) == 0;
}

unsigned cidr_host_bits(const struct cidr *c)
{
    return family_bits(c->family) - c->len;
}

struct cidr_slot {
    struct cidr key;
    int32_t value;
    uint8_t used;
};

struct cidr_table {
    struct cidr_slot *slots;
    size_t cap;                 /* power of two, at least twice count */
    size_t count;
    /* Lengths in use per family, bit L set when some prefix has length L. */
    uint64_t lens4;
    uint64_t lens6[3];
};

static uint32_t cidr_hash(const struct cidr *c)
{
    uint32_t h = 2166136261u;
    unsigned i, n = family_bits(c->family) / 8;

    h = (h ^ c->family) * 16777619u;
    h = (h ^ c->len) * 16777619u;
    for (i = 0; i < n; i++)
        h = (h ^ c->addr[i]) * 16777619u;
    return h;
}

static bool cidr_equal(const struct cidr *a, const struct cidr *b)
{
    return a->family == b->family && a->len == b->len &&
           memcmp(a->addr, b->addr, family_bits(a->family) / 8) == 0;
}

static struct cidr_slot *table_find(const struct cidr_table *t, const struct cidr *c)
{
    size_t i;

    if (t->cap == 0)
        return NULL;
    for (i = cidr_hash(c) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->slots[i].used || cidr_equal(&t->slots[i].key, c))
            return &t->slots[i];
    }
}

static int table_grow(struct cidr_table *t)
{
    size_t ncap = t->cap ? t->cap * 2 : 16, i;
    struct cidr_table nt = *t;

    nt.slots = calloc(ncap, sizeof(*nt.slots));
    if (!nt.slots)
        return -ENOMEM;
    nt.cap = ncap;
    for (i = 0; i < t->cap; i++) {
        if (t->slots[i].used)
            *table_find(&nt, &t->slots[i].key) = t->slots[i];
    }
    free(t->slots);
    *t = nt;
    return 0;
}

struct cidr_table *cidr_table_new(void)
{
    return calloc(1, sizeof(struct cidr_table));
}

void cidr_table_free(struct cidr_table *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t);
}

int cidr_table_add(struct cidr_table *t, const struct cidr *c, int32_t value,
                   int32_t *existing)
{
    struct cidr_slot *s;
    int r;

    if ((t->count + 1) * 2 > t->cap && (r = table_grow(t)) < 0)
        return r;
    s = table_find(t, c);
    if (s->used) {
        if (existing)
            *existing = s->value;
        return -EEXIST;
    }
    s->key = *c;
    s->value = value;
    s->used = 1;
    t->count++;
    if (c->family == AF_INET)
        t->lens4 |= 1ull << c->len;
    else
        t->lens6[c->len / 64] |= 1ull << (c->len % 64);
    return 0;
}

size_t cidr_table_match(const struct cidr_table *t, int family, const uint8_t *addr,
                        int32_t *values, size_t max)
{
    struct cidr probe = {.family = (uint8_t)family};
    unsigned nbytes = family_bits(family) / 8;
    size_t n = 0;
    int len;

    if (t->count == 0 || (family != AF_INET && family != AF_INET6))
        return 0;
    for (len = (int)family_bits(family); len >= 0 && n < max; len--) {
        const struct cidr_slot *s;
        bool in_use = family == AF_INET ? (t->lens4 >> len) & 1
                                        : (t->lens6[len / 64] >> (len % 64)) & 1;

        if (!in_use)
            continue;
        probe.len = (uint8_t)len;
        mask_addr(probe.addr, addr, nbytes, (unsigned)len);
        s = table_find(t, &probe);
        if (s && s->used)
            values[n++] = s->value;
    }
    return n;
}

size_t cidr_table_count(const struct cidr_table *t)
{
    return t->count;
}
