/*
 * The sandbox lifecycle: up, attach, down, pod mode, status and verify, put
 * together from the netns, rtnl, nft_rules and state modules. Every function
 * returns 0 or -errno; on failure its struct ns_error says which call failed
 * on which object (and how to fix it, when known), and whatever was
 * half-built has been rolled back.
 */
#ifndef SLUICE_SANDBOX_H
#define SLUICE_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "state.h"

#define DEFAULT_PROXY_PORT 15001
#define DEFAULT_DNS_PORT 15053
#define DEFAULT_METRICS_PORT 15090
#define DEFAULT_PROXY_UID 1337
/* Connections one sandbox may hold in the kernel's connection-tracking table
 * (shared by every sandbox and the host): generous, but a flood from one
 * cannot fill it for the others. */
#define DEFAULT_MAX_CONNTRACK 65536
#define CONNTRACK_MAX_LIMIT (1u << 24)

struct up_opts {
    bool have_subnet;
    struct cidr subnet;
    bool v6;
    struct cidr subnet6;
    uint16_t proxy_port;
    uint16_t dns_port;
    uint32_t max_conntrack;     /* --max-conntrack */
    const char *iface;          /* attach: the interface to adopt */
    const char *ca;             /* up --ca: the inspect-mode CA certificate, trusted in
                                   /etc/netns/NAME/ssl (see ca_install()) */
    bool isolated;              /* up --isolated: only lo, no network at all */
};

#define SANDBOX_CA_MAX (64 * 1024)

struct pod_opts {
    uint32_t proxy_uid;
    uint16_t proxy_port;
    uint16_t dns_port;
    uint16_t metrics_port;
    uint32_t max_conntrack;
};

/* What failed, carried by the caller (no module keeps it): the step, and the fix. */
struct ns_error {
    char what[256];             /* "RTM_NEWLINK veth sl-a1": the step that failed last */
    const char *hint;           /* how to fix it ("pick another name"), or NULL; NAME
                                   in it stands for the sandbox */
};

int sandbox_up(struct ns_error *e, const char *name, const struct up_opts *o,
               struct sandbox *out);
int sandbox_attach(struct ns_error *e, const char *name, const struct up_opts *o,
                   struct sandbox *out);
/* 0 also when there is no such sandbox; *FOUND says which. */
int sandbox_down(struct ns_error *e, const char *name, bool *found);
int pod_up(struct ns_error *e, const struct pod_opts *o);

/*
 * Many sandboxes in one call, under one lock: each job succeeds or fails on
 * its own (its err and e), and a failed one leaves nothing behind. A job
 * whose err is set on entry (an invalid name, a bad line) is skipped.
 * Returns 0, or -errno when nothing could be tried (the lock).
 */
struct sandbox_job {
    const char *name;
    struct up_opts opts;        /* up */
    int err;
    struct ns_error e;
    char usage[1100];           /* a usage problem found before (err -EINVAL): room
                                   for NETSETUP_ERR_MAX and a line number */
    struct sandbox s;           /* up: what was made */
    bool found;                 /* down: there was such a sandbox */
};
int sandbox_up_many(struct sandbox_job *jobs, size_t n);
int sandbox_down_many(struct sandbox_job *jobs, size_t n);
int pod_down(struct ns_error *e);

/*
 * forward: PROTO ADDR:PORT of this namespace to the sandbox's F->to_port (again
 * on the same PROTO ADDR:PORT: replaces it). unforward: PROTO 0 means both;
 * a forward that is not there is no error. link: NAME1 may open TCP to
 * NAME2's address on PORTS->ports (again: the ports replace the old ones);
 * unlink: a link that is not there is no error. -EOPNOTSUPP: the sandbox has
 * no network (isolated) or this namespace is in pod mode (usage, exit 2).
 */
int sandbox_forward(struct ns_error *e, const char *name, const struct forward *f);
int sandbox_unforward(struct ns_error *e, const char *name, uint8_t proto,
                      const uint8_t addr[4], uint16_t port);
int sandbox_link(struct ns_error *e, const char *a, const char *b, const struct link *ports);
int sandbox_unlink(struct ns_error *e, const char *a, const char *b);

/* Prints what up/attach print, as key=value lines or one JSON object. */
void sandbox_print(const struct sandbox *s, bool json, FILE *out);
void pod_print(const struct pod_opts *o, bool json, FILE *out);

/* status: NAME or every sandbox (NAME NULL); -ENOENT for an unknown NAME. */
int sandbox_status(struct ns_error *e, const char *name, bool json, FILE *out);

/* verify: prints each problem found; returns the number of problems, or -errno. */
int sandbox_verify(struct ns_error *e, const char *name, FILE *out);

/*
 * The same for pod mode, in the namespace it runs in: the chains exist, and
 * probes from raw sockets show that neighbour discovery to a global address,
 * a spoofed source, and a forged reply from the metrics port do not leave.
 * Returns the number of problems (0: P1 holds as far as netsetup can see).
 */
int pod_verify(FILE *out);

#endif
