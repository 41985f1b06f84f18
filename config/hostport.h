/*
 * Ports and HOST[:PORT] as people write them on command lines: one parser for
 * --listen, --dns-listen, --metrics, --upstream-dns and sluicectl's targets.
 */
#ifndef SLUICE_HOSTPORT_H
#define SLUICE_HOSTPORT_H

#include <stdbool.h>
#include <stdint.h>

/* A port: 1-5 decimal digits, 1-65535, nothing else (no sign, no space). */
bool port_parse(const char *s, uint16_t *out);

/*
 * Splits S in place: "HOST", "HOST:PORT", "[V6]" or "[V6]:PORT", and a bare
 * IPv6 address (two colons or more: it cannot carry a port). *HOST points into
 * S, without brackets. A missing port is DEFAULT_PORT; with DEFAULT_PORT 0 a
 * port is required. False when S is none of these (an empty host included).
 */
bool hostport_split(char *s, uint16_t default_port, char **host, uint16_t *port);

#endif
