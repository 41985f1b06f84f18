/* Address pool: first fit over /30 slots, skipping whatever is in use. */
#include "pool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
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
    uint32_t base, step, count, i, bits;
    uint64_t *taken;
    size_t j;

    if (pool->family != AF_INET || slot_len > 32 || slot_len < pool->len ||
        slot_len - pool->len > 22)
        return -EINVAL;             /* at most 4M slots: a bitmap of 512 KiB */
    base = v4(pool);
    bits = 32 - slot_len;
    step = 1u << bits;
    count = 1u << (slot_len - pool->len);
    taken = calloc((count + 63) / 64, sizeof(uint64_t));
    if (!taken)
        return -ENOMEM;
    /* mark the slots each used prefix touches: one pass, whatever N is */
    for (j = 0; j < n_used; j++) {
        uint64_t p_lo = base, p_hi = (uint64_t)base + (uint64_t)count * step - 1;
        uint64_t lo, hi, u_lo, u_hi;

        if (used[j].family != AF_INET)
            continue;
        u_lo = v4(&used[j]);
        u_hi = u_lo + ((uint64_t)1 << (32 - used[j].len)) - 1;
        lo = u_lo > p_lo ? u_lo : p_lo;
        hi = u_hi < p_hi ? u_hi : p_hi;
        for (uint64_t s = (lo - base) >> bits; lo <= hi && s <= (hi - base) >> bits; s++)
            taken[s / 64] |= 1ull << (s % 64);
    }
    for (i = 0; i < count; i++) {
        if (!(taken[i / 64] & (1ull << (i % 64)))) {
            uint32_t net = htonl(base + i * step);

            memset(out, 0, sizeof(*out));
            out->family = AF_INET;
            out->len = (uint8_t)slot_len;
            memcpy(out->addr, &net, 4);
            free(taken);
            return 0;
        }
    }
    free(taken);
    return -ENOSPC;
}
