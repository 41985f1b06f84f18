/*
 * SipHash-2-4 with a secret key: for hash tables whose keys a sandbox picks
 * (names it resolves, names it connects to), so that it cannot pick the buckets.
 */
#ifndef SLUICE_SIPHASH_H
#define SLUICE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t siphash24(const uint64_t key[2], const uint8_t *p, size_t len);

#endif
