/*
 * What netsetup made, kept under the run directory (/run/sluice, or
 * $SLUICE_RUN_DIR) as one key=value file per sandbox, written before the
 * first object is created so that a crash half-way can always be undone.
 * One lock file serialises every command that changes anything.
 */
#ifndef SLUICE_STATE_H
#define SLUICE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cidr.h"
#include "sandbox_name.h"

#define STATE_DEFAULT_DIR "/run/sluice"

/* ISOLATED: a namespace with only lo (up --isolated): no interface, subnet or rules */
enum sandbox_mode { SANDBOX_NETNS, SANDBOX_ATTACH, SANDBOX_ISOLATED };

/* "netns", "attach", "isolated" */
const char *sandbox_mode_name(enum sandbox_mode m);

#define SANDBOX_FORWARDS_MAX 16
#define FORWARD_FROM_MAX 8
#define SANDBOX_LINKS_MAX 16
#define LINK_PORTS_MAX 16

/* forward: ADDR:PORT of the host namespace, DNATed to the sandbox's TO_PORT */
struct forward {
    uint8_t proto;                      /* IPPROTO_TCP or IPPROTO_UDP */
    uint8_t addr[4];
    uint16_t port;
    uint16_t to_port;
    uint8_t n_from;                     /* 0: any source */
    struct cidr from[FORWARD_FROM_MAX]; /* IPv4 */
};

/* link: this sandbox may open TCP to PEER's address on PORTS */
struct link {
    char peer[SANDBOX_NAME_MAX + 1];
    uint8_t n_ports;
    uint16_t ports[LINK_PORTS_MAX];
};

struct sandbox {
    char name[SANDBOX_NAME_MAX + 1];
    enum sandbox_mode mode;
    char host_if[IFNAME_LEN];
    char sandbox_if[IFNAME_LEN];        /* "" in attach mode: it lives in the VM */
    struct cidr subnet;
    bool v6;
    struct cidr subnet6;
    uint16_t proxy_port;
    uint16_t dns_port;
    uint32_t max_conntrack;             /* 0 in a record from before it existed: the default */
    uint8_t n_forwards;
    struct forward forwards[SANDBOX_FORWARDS_MAX];
    uint8_t n_links;                    /* the links this sandbox opens (it is NAME1) */
    struct link links[SANDBOX_LINKS_MAX];
};

/* "tcp 127.0.0.1:8080": what names a forward in the record, rules and status */
#define FORWARD_KEY_LEN 32
void forward_key(const struct forward *f, char out[FORWARD_KEY_LEN]);

/* "[ADDR:]PORT", ADDR IPv4 (default 127.0.0.1), PORT 1-65535. */
bool forward_addr_parse(const char *s, uint8_t addr[4], uint16_t *port);

/* "80,443": 1 to LINK_PORTS_MAX ports, none twice. */
bool link_ports_parse(const char *s, struct link *l);

/* The forward of S on PROTO ADDR:PORT, or NULL. */
struct forward *sandbox_find_forward(struct sandbox *s, uint8_t proto, const uint8_t addr[4],
                                uint16_t port);
/* The link of S to PEER, or NULL. */
struct link *sandbox_find_link(struct sandbox *s, const char *peer);

/* The run directory in use. */
const char *state_dir(void);

/* Takes the global lock (blocking); returns an fd for state_unlock, or -errno. */
int state_lock(void);
void state_unlock(int fd);

/* 0 and *S filled, -ENOENT when there is no such sandbox, -EINVAL when the file is bad. */
int state_load(const char *name, struct sandbox *s);
int state_save(const struct sandbox *s);
int state_remove(const char *name);

/* Every sandbox on record, sorted by name; *N gets the count. Caller frees. */
int state_list(struct sandbox **out, size_t *n);

/* The gateway (first host) and sandbox (second host) address of a subnet. */
void sandbox_gateway(const struct cidr *net, uint8_t out[16]);
void sandbox_address(const struct cidr *net, uint8_t out[16]);

#endif
