/*
 * The nftables rules of sluice, built with libnftnl into one batch per
 * command so that the kernel applies all of it or none of it. Building is
 * pure (a buffer of netlink messages); nft_send() is the only I/O.
 *
 * Router mode, table inet sluice:
 *   prerouting (filter, mangle): iifname vmap @sandbox_pre -> chain pre-NAME:
 *       DNS (tcp/udp 53) accept for the nat chain; other TCP -> tproxy to the
 *       proxy + mark, or a reset when no proxy listens; udp/443 reject (QUIC
 *       falls back at once); the rest drop.
 *   dstnat (nat): iifname vmap @sandbox_nat -> chain nat-NAME: DNS -> dnat to
 *       the proxy's DNS address.
 *   input, forward (filter): iifname @sandboxes: only marked (TPROXY) and
 *       DNATed (DNS) packets are delivered; nothing is forwarded but the
 *       connections a forward or a link opened (conntrack mark FWD or LINK).
 *   postrouting (filter): oifname vmap @sandbox_post -> chain post-NAME: the
 *       counter of every packet to the sandbox (pre-NAME's first rule counts
 *       every packet from it).
 *   dstnat_local (nat, output) and dstnat for packets not from a sandbox: jump
 *       forwards, one DNAT rule per forward (and --from network), commented
 *       "NAME PROTO ADDR:PORT", setting conntrack mark FWD; srcnat masquerades
 *       them to the gateway, so the sandbox never learns the client's address.
 *       Chain fwd-NAME counts each forward's packets both ways.
 *   set links (saddr . daddr . dport): a sandbox's new TCP connection to a
 *       linked peer's port is marked LINK and routed instead of TPROXYed; the
 *       mark lets the rest of it pass (the set is read by first packets only).
 * The maps and sets keep the per-packet cost flat however many sandboxes and
 * links there are; the forwards chain is read by a connection's first packet
 * only, and only for connections that do not come from a sandbox.
 */
#ifndef SLUICE_NFT_RULES_H
#define SLUICE_NFT_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NFT_TABLE "sluice"
#define NFT_MARK 0x534c         /* "SL": packets TPROXY hands to the proxy */
#define NFT_ROUTE_TABLE 0x534c  /* policy-routing table holding local default routes */
#define NFT_RULE_PRIO 9999      /* priority of the "fwmark -> table" rules */
#define NFT_CT_FWD 0x534d       /* conntrack mark: a connection a forward DNATed */
#define NFT_CT_LINK 0x534e      /* conntrack mark: a connection a link let through */
#define NFT_CHAIN_FORWARDS "forwards"
#define NFT_LINK_KEY_LEN 12     /* saddr . daddr . dport, each in a 32-bit register */

struct nft_sandbox {
    const char *name;
    const char *ifname;         /* where the sandbox's packets arrive */
    uint8_t gw4[4];
    uint8_t addr4[4];           /* the sandbox's own address: the only source accepted */
    bool v6;
    uint8_t gw6[16];
    uint8_t addr6[16];
    uint16_t proxy_port;
    uint16_t dns_port;
    uint32_t max_conntrack;     /* new connections beyond this many are dropped */
};

struct nft_forward {
    const char *name;           /* the sandbox */
    const char *key;            /* "tcp 127.0.0.1:8080" (forward_key()) */
    uint8_t proto;              /* IPPROTO_TCP or IPPROTO_UDP */
    uint8_t addr[4];            /* what clients connect to */
    uint16_t port;
    uint8_t to_addr[4];         /* the sandbox's address */
    uint16_t to_port;
    size_t n_from;              /* 0: any source */
    uint8_t from_addr[8][4];
    uint8_t from_len[8];
};

/* The chains of one sandbox. */
struct nft_chains {
    char pre[64], nat[64], post[64], fwd[64];
};

struct nft_pod {
    uint32_t proxy_uid;
    uint16_t proxy_port;
    uint16_t dns_port;
    uint16_t metrics_port;
    uint32_t max_conntrack;     /* the workload's, as for a sandbox */
};

struct nft_batch;

struct nft_batch *nft_batch_new(void);
void nft_batch_free(struct nft_batch *b);

/* Table, maps and base chains, created if missing and their rules rewritten. */
int nft_build_base(struct nft_batch *b);
/* One sandbox's chains (flushed and rewritten) and map elements. */
int nft_build_sandbox_add(struct nft_batch *b, const struct nft_sandbox *s);
/* Removes one sandbox: map elements first, then its chains. */
int nft_build_sandbox_del(struct nft_batch *b, const struct nft_sandbox *s, bool elems,
                          bool chains);
/* One forward: its DNAT rules in chain forwards, its counters in fwd-NAME. */
int nft_build_forward_add(struct nft_batch *b, const struct nft_forward *f);
/* Deletes rule HANDLE of CHAIN. */
int nft_build_rule_del(struct nft_batch *b, const char *chain, uint64_t handle);
/* Adds or deletes the link element SRC . DST . PORT. */
int nft_build_link(struct nft_batch *b, bool add, const uint8_t src[4], const uint8_t dst[4],
                   uint16_t port);
/* Removes the whole table. */
int nft_build_table_del(struct nft_batch *b);
/* The pod-mode ruleset (table inet sluice in the pod's namespace). */
int nft_build_pod(struct nft_batch *b, const struct nft_pod *p);

/* Messages in B so far, begin and end not counted; and its bytes. */
size_t nft_batch_msgs(const struct nft_batch *b);
size_t nft_batch_bytes(struct nft_batch *b);

/* The finished batch (begin ... end) as bytes, for sending or for tests. */
const void *nft_batch_data(struct nft_batch *b, size_t *len);

/* What message N of the batch does ("NFT_MSG_NEWCHAIN pre-a1"), for errors. */
const char *nft_batch_describe(const struct nft_batch *b, uint32_t seq);

/*
 * Sends B on a fresh NETLINK_NETFILTER socket and checks every ACK. On error
 * returns -errno and copies the failing message's description to WHAT.
 */
int nft_send(struct nft_batch *b, char *what, size_t what_len);

/*
 * The same, keeping the socket open (*KEEP) until nft_release(): closing a
 * socket whose batch deleted rules waits for their release, so a caller with
 * other slow work (deleting a veth) does that first and lets the waits overlap.
 */
struct nft_socket;
int nft_send_keep(struct nft_batch *b, char *what, size_t what_len, struct nft_socket **keep);
void nft_release(struct nft_socket *s);

/* 1 when table inet sluice exists, 0 when not, -errno. */
int nft_table_exists(void);

/* 1 when chain NAME exists in table inet sluice. */
int nft_chain_exists(const char *chain);

/* 1 when IFNAME is in the sandboxes set. */
int nft_sandbox_elem_exists(const char *ifname);

/* 1 when SRC . DST . PORT is in the links set. */
int nft_link_exists(const uint8_t src[4], const uint8_t dst[4], uint16_t port);

struct nft_counters {
    uint64_t proxy, dns, rejected, dropped;     /* packets */
    uint64_t packets_in, bytes_in, packets_out, bytes_out;  /* to and from the sandbox */
};

/* One forward's: connections DNATed, packets and bytes to and from the sandbox. */
struct nft_forward_counters {
    uint64_t connections, packets_in, bytes_in, packets_out, bytes_out;
};
int nft_forward_counters(const char *name, const char *key, struct nft_forward_counters *c);

/*
 * The handles of the rules of CHAIN whose comment is COMMENT, or starts with
 * it when PREFIX (at most MAX; *N gets the count). -ENOENT without the chain.
 */
int nft_rule_handles(const char *chain, const char *comment, bool prefix, uint64_t *out,
                     size_t max, size_t *n);

/* Per-sandbox counters, read back from the commented rules of its chains. */
int nft_sandbox_counters(const char *name, struct nft_counters *c);

/* The same for one chain (pod_out, say), added to C. */
int nft_chain_counters(const char *chain, struct nft_counters *c);

/*
 * The live rules of chain CHAIN printed by libnftnl, one per line, with
 * counters and handles left out: what verify compares against nft_expect().
 * Only rules whose comment starts with PREFIX, when it is not NULL.
 */
int nft_chain_text(const char *chain, const char *prefix, char *out, size_t len);

/* The same text for the rules of CHAIN in batch B (as built, not yet sent). */
int nft_expect_text(struct nft_batch *b, const char *chain, const char *prefix, char *out,
                    size_t len);

/* Chain names of a sandbox. */
void nft_chain_names(const char *name, struct nft_chains *c);

#endif
