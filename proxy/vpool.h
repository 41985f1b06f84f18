/*
 * The virtual-address pool of `dns.answers: virtual`:
 * each allowed name the sandbox asks for is answered with an address of its
 * own from 198.18.0.0/15 (IPv4, the benchmarking range, never routed) and a
 * ULA /96 (IPv6), so that a connection to that address means that name,
 * whatever protocol it speaks. Slot I of the pool is always the addresses
 * base + 1 + I, so mapping an address back to its name is an index, not a
 * search, and costs no allocation.
 */
#ifndef SLUICE_VPOOL_H
#define SLUICE_VPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hostname.h"

#define VPOOL_V4_BASE 0xc6120000u       /* 198.18.0.0 */
#define VPOOL_V4_PREFIX 15
#define VPOOL_MAX ((1u << (32 - VPOOL_V4_PREFIX)) - 2)     /* .0 and the last left out */
/* The proxy's IPv6 pool: fd73:6c75:6963:6576::/96 ("sluicev" after fd) */
#define VPOOL_ULA {0xfd, 0x73, 0x6c, 0x75, 0x69, 0x63, 0x65, 0x76, 0, 0, 0, 0}

struct vpool;

struct vpool_addr {
    uint8_t v4[4];
    uint8_t v6[16];
};

/*
 * A pool of at most MAX names (1 to VPOOL_MAX), with the IPv6 addresses under
 * the /96 ULA_PREFIX (12 bytes, fd00::/8). NULL on bad arguments or no memory.
 */
struct vpool *vpool_new(uint32_t max, const uint8_t ula_prefix[12], const uint64_t key[2]);
void vpool_free(struct vpool *p);

/*
 * The addresses of NAME (a normalized hostname), valid until at least
 * NOW_MS + TTL_MS: the name's own if it has some (their life is extended),
 * else a slot never used, else the idle slot whose life ended longest ago (its old
 * name loses them: *EVICTED is set). -ENOSPC when every slot is in use or
 * still within its life: the caller answers as its pool-exhausted limit says.
 */
int vpool_map(struct vpool *p, const char *name, uint64_t now_ms, uint64_t ttl_ms,
              struct vpool_addr *out, bool *evicted);

/* Whether ADDR (4 or 16 bytes of FAMILY) lies in the pool's ranges. The IPv4
 * base, 198.18.0.0, is no slot's and not the pool's: the proxy's own name
 * sluice.internal has it in pod mode. */
bool vpool_contains(const struct vpool *p, int family, const uint8_t *addr);

/*
 * The name ADDR was handed out for, or NULL when it is no mapped address of
 * this pool. HOLD: a flow now uses the mapping; it is never reused until as
 * many vpool_release() calls came, and then lives on for its TTL.
 */
const char *vpool_lookup(struct vpool *p, int family, const uint8_t *addr, bool hold);
void vpool_release(struct vpool *p, int family, const uint8_t *addr, uint64_t now_ms);

struct vpool_stats {
    uint32_t size;              /* slots */
    uint32_t mapped;            /* slots holding a name */
    uint32_t in_use;            /* ... held by at least one flow */
    uint64_t evictions;
};

void vpool_stats(const struct vpool *p, struct vpool_stats *st);

#endif
