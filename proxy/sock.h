/*
 * Socket addresses and listening sockets: the one place the proxy turns an
 * ADDR:PORT argument into a bound socket, and a socket address into text.
 */
#ifndef SLUICE_SOCK_H
#define SLUICE_SOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define SOCK_ADDR_STR 64            /* "[v6]:port" and a NUL fit */

enum {
    SOCK_TRANSPARENT = 1,           /* IP(V6)_TRANSPARENT: TPROXY hands it any address */
    SOCK_NODELAY = 2,               /* TCP_NODELAY, inherited by accepted sockets */
    SOCK_V6ONLY = 4,                /* IPV6_V6ONLY: [::] without the IPv4 wildcard */
};

/* "ADDR:PORT" or "[V6]:PORT" (a port required) into a socket address. */
bool sock_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len);

/* "ADDR:PORT" or "[V6]:PORT" */
void sock_addr_str(const struct sockaddr_storage *ss, char out[SOCK_ADDR_STR]);

uint16_t sock_port(const struct sockaddr_storage *ss);

/* The address bytes: 4 for AF_INET, 16 for AF_INET6. */
const uint8_t *sock_addr(const struct sockaddr_storage *ss);

/*
 * A non-blocking, close-on-exec socket of TYPE (SOCK_STREAM, SOCK_DGRAM) with
 * SO_REUSEADDR and FLAGS, bound to SS, listening with BACKLOG when a stream.
 * Returns the descriptor, or -1 with errno set.
 */
int sock_bind(const struct sockaddr_storage *ss, socklen_t len, int type, int flags,
              int backlog);

#endif
