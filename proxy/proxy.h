/*
 * The state one sluice-proxy process shares between its connections: the
 * event loop, the policy in force, the resolver, the flow log and the list
 * of live flows. One process serves one sandbox.
 */
#ifndef SLUICE_PROXY_H
#define SLUICE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "flowlog.h"
#include "policy.h"

struct event_base;
struct resolver;
struct conn;

#define PROXY_PIPE_POOL 64          /* idle splice pipes kept for the next busy flow */

struct proxy {
    struct event_base *base;
    const char *id;                 /* --id: the sandbox's name in every record */
    const char *policy_path;
    struct policy *policy;          /* in force; replaced whole on reload */
    struct resolver *resolver;
    struct flowlog *log;
    uint64_t last_flow;             /* flow ids: 1, 2, ... */
    struct conn *conns;             /* live flows, newest first */
    size_t n_conns;
    bool draining;                  /* SIGTERM: no new flows */
    int pipes[PROXY_PIPE_POOL][2];  /* empty splice pipes, lent by conn.c */
    size_t n_pipes;
};

/* Fills the fields every record has (time, sandbox, policy) and writes R. */
void proxy_log(struct proxy *px, struct flow_record *r);

/* "ADDR:PORT" or "[V6]:PORT" into a socket address; false if it is neither. */
bool proxy_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);

#endif
