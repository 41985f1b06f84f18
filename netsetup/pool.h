/* The address pool sandbox subnets come from. Pure: no I/O. */
#ifndef SLUICE_POOL_H
#define SLUICE_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "cidr.h"

#define POOL_DEFAULT "10.200.0.0/16"
#define POOL_SLOT_LEN 30                /* a /30: network, gateway, sandbox, broadcast */

/* True when A and B share an address. */
bool cidr_overlaps(const struct cidr *a, const struct cidr *b);

/*
 * The first /SLOT_LEN inside POOL that overlaps none of USED; -ENOSPC when
 * the pool is full.
 */
int pool_pick(const struct cidr *pool, unsigned slot_len, const struct cidr *used,
              size_t n_used, struct cidr *out);

#endif
