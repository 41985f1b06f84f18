/*
 * Asks the kernel whether an address is this host's own: a route lookup
 * (RTM_GETROUTE) answered with a route of type local or broadcast. A name
 * whose DNS an attacker controls can resolve to one of the host's public
 * addresses, which no special-purpose range knows (docs/design.md, P5).
 */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <stdint.h>

struct route_probe;

/* Opens the rtnetlink socket (before the seccomp filter, which allows no new
 * netlink socket). Returns 0 and sets *OUT, or a negative errno. */
int route_probe_open(struct route_probe **out);

void route_probe_free(struct route_probe *rp);

/*
 * The descriptor that becomes readable when the kernel announces a change of
 * links, addresses, routes or routing rules (the event loop watches it and
 * calls route_probe_changed()), or -1: then no answer is kept and every
 * question goes to the kernel.
 */
int route_probe_watch_fd(const struct route_probe *rp);

/* Reads the announcements and forgets every kept answer. */
void route_probe_changed(struct route_probe *rp);

/*
 * 1 when the kernel would deliver a packet to ADDR (4 or 16 bytes of FAMILY;
 * an IPv4-mapped IPv6 address is asked as IPv4) to this host itself, 0 when
 * it would route it elsewhere or nowhere, a negative errno when it could not
 * tell (callers fail closed). An answer is kept per address until the next
 * change (see route_probe_watch_fd()); an error is never kept.
 */
int route_is_local(struct route_probe *rp, int family, const uint8_t *addr);

#endif
