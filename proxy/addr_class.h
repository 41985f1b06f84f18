/*
 * Which destination addresses a sandbox may never reach by default (docs/design.md, P5):
 * the IANA special-purpose ranges that are not globally reachable, the
 * documentation and benchmark ranges, and cloud metadata and platform
 * endpoints, also when written in an IPv6 form that embeds an IPv4 address.
 */
#ifndef SLUICE_ADDR_CLASS_H
#define SLUICE_ADDR_CLASS_H

#include <stdbool.h>
#include <stdint.h>

/*
 * True when ADDR (4 or 16 bytes of FAMILY) is special; *WHAT (may be NULL)
 * gets the range's name ("loopback", "private (RFC 1918)", "cloud metadata").
 * IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4 (2002::/16)
 * addresses are judged by the IPv4 address inside them.
 */
bool addr_is_special(int family, const uint8_t *addr, const char **what);

#endif
