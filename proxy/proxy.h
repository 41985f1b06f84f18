/*
 * One sluice-proxy process, which serves one sandbox: the state its flows,
 * its DNS service and its admin endpoints share (the event loop, the policy
 * in force, the resolver, the flow log, the live flows), and the process
 * core that binds the listeners, reloads the policy and drains on SIGTERM.
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
struct resolver;
struct route_probe;
struct relay_pool;
struct proxy_core;
struct tls_ctx;
struct vpool;
struct feedback;

#define PROXY_LOG_PER_SECOND 100    /* dns and limit records a second; the rest are counted */
#define PROXY_MAX_LISTENERS 8       /* --listen */
#define PROXY_MAX_DNS 4             /* --dns-listen */
#define PROXY_DRAIN_GRACE_MS 10000  /* SIGTERM: how long flows may finish */
#define PROXY_VIRTUAL_POOL 16384    /* --virtual-pool default: names with an address at once */
/* a virtual address outlives the TTL it was answered with by this much: the
 * sandbox's resolve-then-connect, and clients that keep an answer a little long */
#define PROXY_VIRTUAL_GRACE_MS 5000
/* the name the proxy serves the sandbox its own recent denials under (feedback: true) */
#define PROXY_FEEDBACK_NAME "sluice.internal"
#define PROXY_FEEDBACK_MAX 50      /* denials it keeps for that page */

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
    struct relay_pool *relay;       /* the relay's own: idle splice pipes, bandwidth queues */
    struct metrics metrics;
    struct log_gate gate;           /* bounds dns and limit records under a flood */
    struct limit_bucket new_conns;  /* limits.new_connections_per_second */
    struct limit_bucket dns_queries;    /* dns.queries_per_second */
    struct proxy_core *core;        /* the process core's own (proxy.c) */
    struct tls_ctx *tls;            /* inspect mode: the CA and both TLS contexts, or NULL */
    struct vpool *vpool;            /* dns.answers: virtual's addresses; made when a policy
                                       first asks for them, kept across reloads */
    uint32_t vpool_max;             /* --virtual-pool */
    uint64_t hash_key[2];           /* SipHash key of the tables keyed by what the sandbox
                                       picks (vpool, alerts), drawn once at start */
    bool v6;                        /* a --listen is IPv6: the sandbox has IPv6 (AAAA answers) */
    uint8_t gw4[4], gw6[16];        /* the first --listen of each family (the sandbox's
                                       gateway): where sluice.internal is; 0: none */
    struct feedback *feedback;      /* the sandbox's recent denials; made on the first */
    struct alerts *alerts;          /* the detectors the policy turns on, or NULL */
    struct budgets *budgets;        /* names' data budgets; made on the first flow that
                                       has one, kept across reloads */
};

/* What the command line asks of a process (sluice-proxy --help says each). */
struct proxy_options {
    const char *policy_path;
    const char *listens[PROXY_MAX_LISTENERS];
    size_t n_listens;
    const char *dns[PROXY_MAX_DNS];
    size_t n_dns;
    const char *upstream, *id, *log_path, *metrics, *control, *user;
    const char *ca_cert, *ca_key, *upstream_ca;     /* inspect mode */
    uint32_t virtual_pool;          /* --virtual-pool, 0: the default */
    bool seccomp;
};

/*
 * Takes POLICY (loaded from opt->policy_path) and opens everything OPT names:
 * the flow log, the resolver, the listeners, the DNS service, the admin
 * endpoints, signals and the policy file's watch. Returns 0, or an exit code
 * (1 runtime, 2 usage) after saying why on standard error; proxy_close() is
 * owed either way, and frees POLICY.
 */
int proxy_open(struct proxy *px, const struct proxy_options *opt, struct policy *policy);

/* Drops privileges for good, then serves until a SIGTERM's drain ends. Returns
 * the exit code. */
int proxy_run(struct proxy *px, const struct proxy_options *opt);

/* Closes every flow and frees everything proxy_open() made. */
void proxy_close(struct proxy *px);

/*
 * Fills the fields every record has (time, sandbox, and the policy in force
 * unless R names the one that decided), counts R in the metrics and writes it;
 * dns and limit records pass the log gate first.
 */
void proxy_log(struct proxy *px, struct flow_record *r);

/* Writes an alert record for A (the detectors' firing, alerts.h). */
void proxy_alert(struct proxy *px, const struct alert *a);

/*
 * Loads the policy file again and swaps it in when it is valid, servable (an
 * inspect rule needs the CA, and the CA's constraints must cover it) and
 * changed (its bytes, or a secret it injects).
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

/* Whether NAME (LEN bytes, lowercase) is PROXY_FEEDBACK_NAME, which is never forwarded. */
bool proxy_is_feedback_name(const char *name, size_t len);

/*
 * The address sluice.internal has for the sandbox in FAMILY (4 or 16 bytes
 * into OUT): the gateway, or in pod mode, where the proxy listens on loopback,
 * 198.18.0.0 (the virtual pool's base, never a name's), which is routed to the
 * proxy like any destination. False when there is none (no IPv6).
 */
bool proxy_feedback_addr(const struct proxy *px, int family, uint8_t *out);

/*
 * Makes the virtual-address pool when policy P answers virtual and there is
 * none yet (at start, or on the reload that first asks for it). -ENOMEM when
 * it cannot be made.
 */
int proxy_vpool_ensure(struct proxy *px, const struct policy *p);

#endif
