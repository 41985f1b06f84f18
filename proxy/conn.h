/*
 * One flow from a sandbox: sniffed, decided, resolved, connected, relayed,
 * closed. Everything a flow owns is released by one function, which also
 * writes its flow record.
 */
#ifndef SLUICE_CONN_H
#define SLUICE_CONN_H

#include "proxy.h"

#define CONN_SNIFF_MAX (16384 + 4 + 5 * 64)  /* a 16 KiB hello in small records */

/* Takes an accepted, transparent socket; closes it itself on any failure. */
void conn_accept(struct proxy *px, int fd);

/* After a reload: closes flows whose host the new policy no longer allows. */
void conn_revalidate(struct proxy *px);

/* Closes every flow (shutdown after the drain period). */
void conn_close_all(struct proxy *px);

/* Closes the pool of idle splice pipes (at exit). */
void conn_pipes_free(struct proxy *px);

#endif
