/*
 * One flow from a sandbox: sniffed, decided, resolved, connected, relayed,
 * closed. Everything a flow owns is released by one function, which also
 * writes its flow record.
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include "proxy.h"

#define CONN_SNIFF_MAX (16384 + 4 + 5 * 64)  /* a 16 KiB hello in small records */

/* Takes an accepted, transparent socket and its peer's address (accept4's);
 * closes it itself on any failure. */
void conn_accept(struct proxy *px, int fd, const struct sockaddr_storage *peer);

/* After a reload: closes flows whose host the new policy no longer allows. */
void conn_revalidate(struct proxy *px);

/* Closes every flow (shutdown after the drain period). */
void conn_close_all(struct proxy *px);

/* What the relay keeps across flows: idle splice pipes, one bandwidth queue per
 * direction. NULL on failure. */
struct relay_pool *relay_pool_new(struct proxy *px);

/* Frees the pool (after every flow is closed); accepts NULL. */
void relay_pool_free(struct relay_pool *pool);

/* A live flow as the control socket shows it; the strings live as long as the flow. */
struct conn_info {
    uint64_t id;
    const char *state;          /* "sniff", "tls", "resolve", "connect", "peek", "relay" */
    const char *proto;
    const char *src, *orig_dst, *host, *upstream;  /* host and upstream may be "" */
    bool virt;                  /* orig_dst is a virtual address; host is its name */
    uint16_t port;
    uint64_t bytes_up, bytes_down;
    uint64_t age_ms;
};

/* Describes up to MAX live flows into OUT, newest first; returns how many. */
size_t conn_list(const struct proxy *px, struct conn_info *out, size_t max);

#endif
