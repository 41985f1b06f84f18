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
};

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
