/*
 * SipHash-2-4 (Aumasson and Bernstein), the reference's output for the same
 * key and bytes on any host: little-endian words whatever the CPU.
 */
#include "siphash.h"

#include <endian.h>
#include <string.h>

static uint64_t rotl(uint64_t x, int b)
{
    return x << b | x >> (64 - b);
}

static void sipround(uint64_t v[4])
{
    v[0] += v[1], v[1] = rotl(v[1], 13), v[1] ^= v[0], v[0] = rotl(v[0], 32);
    v[2] += v[3], v[3] = rotl(v[3], 16), v[3] ^= v[2];
    v[0] += v[3], v[3] = rotl(v[3], 21), v[3] ^= v[0];
    v[2] += v[1], v[1] = rotl(v[1], 17), v[1] ^= v[2], v[2] = rotl(v[2], 32);
}

uint64_t siphash24(const uint64_t key[2], const uint8_t *p, size_t len)
{
    uint64_t v[4] = {
        0x736f6d6570736575ULL ^ key[0], 0x646f72616e646f6dULL ^ key[1],
        0x6c7967656e657261ULL ^ key[0], 0x7465646279746573ULL ^ key[1],
    };
    uint64_t m, last = (uint64_t)len << 56;
    size_t i;

    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&m, p + i, 8);
        m = le64toh(m);
        v[3] ^= m;
        sipround(v);
        sipround(v);
        v[0] ^= m;
    }
    for (size_t k = 0; i + k < len; k++)
        last |= (uint64_t)p[i + k] << (8 * k);
    v[3] ^= last;
    sipround(v);
    sipround(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for (int k = 0; k < 4; k++)
        sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}
