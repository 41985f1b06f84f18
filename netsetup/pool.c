/* Address pool: first fit over /30 slots, skipping whatever is in use. */
#include "pool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

bool cidr_overlaps(const struct cidr *a, const struct cidr *b)
{
    const struct cidr *wide = a->len <= b->len ? a : b, *narrow = wide == a ? b : a;

    if (a->family != b->family)
        return false;
    return cidr_contains(wide, narrow->family, narrow->addr);
}

static uint32_t v4(const struct cidr *c)
{
    uint32_t x;

    memcpy(&x, c->addr, 4);
    return ntohl(x);
}

int pool_pick(const struct cidr *pool, unsigned slot_len, const struct cidr *used,
              size_t n_used, struct cidr *out)
{
    uint32_t base, step, count, i;
    size_t j;

    if (pool->family != AF_INET || slot_len > 32 || slot_len < pool->len)
        return -EINVAL;
    base = v4(pool);
    step = slot_len == 32 ? 1 : 1u << (32 - slot_len);
    count = slot_len - pool->len >= 32 ? UINT32_MAX : 1u << (slot_len - pool->len);
    for (i = 0; i < count; i++) {
        uint32_t net = htonl(base + i * step);
        struct cidr c = {.family = AF_INET, .len = (uint8_t)slot_len};

        memcpy(c.addr, &net, 4);
        for (j = 0; j < n_used && !cidr_overlaps(&c, &used[j]); j++)
            ;
        if (j == n_used) {
            *out = c;
            return 0;
        }
    }
    return -ENOSPC;
}
