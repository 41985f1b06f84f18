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

/* Sets up what flows share in PX (the list of flows, the bandwidth queues); first. */
void conn_shared_init(struct proxy *px);

/* Frees what flows share in PX: the idle splice pipes, the bandwidth timers (at exit). */
void conn_shared_free(struct proxy *px);

/* A live flow as the control socket shows it; the strings live as long as the flow. */
struct conn_info {
    uint64_t id;
    const char *state;          /* "sniff", "resolve", "connect", "relay" */
    const char *proto;
    const char *src, *host, *upstream;  /* host and upstream may be "" */
    uint16_t port;
    uint64_t bytes_up, bytes_down;
    uint64_t age_ms;
};

/* Describes up to MAX live flows into OUT, newest first; returns how many. */
size_t conn_list(const struct proxy *px, struct conn_info *out, size_t max);

#endif
