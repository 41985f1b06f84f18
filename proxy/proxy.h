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
#include <time.h>

#include "flowlog.h"
#include "limit.h"
#include "list.h"
#include "metrics.h"
#include "policy.h"

struct event_base;
struct event;
struct resolver;
struct route_probe;
struct conn;
struct dir;

#define PROXY_PIPE_POOL 64          /* idle splice pipes kept for the next busy flow */
#define PROXY_LOG_PER_SECOND 100    /* dns and limit records a second; the rest are counted */

enum { PROXY_UP, PROXY_DOWN };      /* directions: sandbox to server, server to sandbox */

struct proxy {
    struct event_base *base;
    const char *id;                 /* --id: the sandbox's name in every record */
    const char *policy_path;
    struct policy *policy;          /* in force; replaced whole on reload */
    struct resolver *resolver;
    struct route_probe *route;      /* asks whether an address is the host's own */
    struct flowlog *log;
    uint64_t last_flow;             /* flow ids: 1, 2, ... */
    struct list conns;              /* live flows (struct conn), newest first */
    size_t n_conns;
    bool draining;                  /* SIGTERM: no new flows */
    struct timespec started;        /* CLOCK_REALTIME at start */
    int pipes[PROXY_PIPE_POOL][2];  /* empty splice pipes, lent by conn.c */
    size_t n_pipes;
    struct metrics metrics;
    struct log_gate gate;           /* bounds dns and limit records under a flood */
    struct limit_bucket new_conns;  /* limits.new_connections_per_second */
    struct limit_bucket dns_queries;    /* dns.queries_per_second */
    struct proxy_bandwidth {        /* limits.{upload,download}_bytes_per_second */
        struct proxy *px;
        int way;
        struct limit_bucket bucket;
        struct list waiting;        /* directions (struct dir) out of budget, oldest first */
        struct event *timer;        /* wakes them; made on first use */
    } bandwidth[2];
};

/*
 * Fills the fields every record has (time, sandbox, policy), counts R in the
 * metrics and writes it; dns and limit records pass the log gate first.
 */
void proxy_log(struct proxy *px, struct flow_record *r);

/*
 * Loads the policy file again and swaps it in when it is valid and changed.
 * Returns 1 when swapped, 0 when the file is unchanged, or a negative errno
 * when rejected (the old policy stays; MSG gets the errors as FILE:LINE:COL).
 * A swap and a rejection each write a reload record.
 */
int proxy_reload(struct proxy *px, const char *why, char *msg, size_t cap);

/*
 * Whether the proxy may connect to ADDR, or tell the sandbox about it (P5):
 * not in a special-purpose range unless destinations.allow_ranges lists it,
 * and never one of the host's own addresses, whatever its range (the host's
 * services are no sandbox's destination; an answer the kernel cannot check
 * is refused).
 */
bool proxy_dest_allowed(const struct proxy *px, int family, const uint8_t *addr);

/* "ADDR:PORT" or "[V6]:PORT" into a socket address; false if it is neither. */
bool proxy_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);

#endif
