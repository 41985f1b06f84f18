/*
 * What the four nft_*.c files share and nothing else uses: the batch, the
 * rule-building expressions (nb_*), the names of sets and counter comments.
 * nft_batch.c builds (pure), nft_host.c and nft_pod.c are the two rulesets,
 * nft_query.c talks to the kernel.
 */
#ifndef SLUICE_NFT_INT_H
#define SLUICE_NFT_INT_H

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tuple_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nft_rules.h"

#define BATCH_LIMIT (128 * 1024)        /* bytes of messages in one batch */
#define NL_BUF_SIZE 16384               /* one recv of ACKs or a dump */
#define BATCH_MAX_MSGS 512
#define DESC_LEN 64
#define TYPE_IFNAME 41                  /* nft's datatype id, so `nft list` shows names */
#define BYTEORDER_HOST 1                /* nft's enum byteorder */

#define SET_PRE "sandbox_pre"
#define SET_NAT "sandbox_nat"
#define SET_IFS "sandboxes"
#define SET_POST "sandbox_post"
#define SET_LINKS "links"
#define CHAIN_FORWARDS NFT_CHAIN_FORWARDS
#define TYPE_IPADDR 7                   /* nft's datatype ids, for `nft list` */
#define TYPE_INET_SERVICE 13
#define TYPE_BITS 6                     /* a concatenation's type: ids shifted in */

/* Counter comments, read back by status. */
#define C_PROXY "proxy"
#define C_DNS "dns"
#define C_REJECT "rejected"
#define C_DROP "dropped"
#define C_IN "in"                       /* every packet to the sandbox (post-NAME) */
#define C_OUT "out"                     /* every packet from it (pre-NAME) */

struct nft_batch {
    char *buf;
    struct mnl_nlmsg_batch *mb;
    uint32_t seq0, seq;
    char (*desc)[DESC_LEN];     /* per message, indexed by seq - seq0 */
    bool ended;
    int err;                    /* sticky: the first failure while building */
};

struct rb {                     /* a rule being built */
    struct nftnl_rule *r;
    bool oom;
};

struct nlmsghdr *nb_msg_start(struct nft_batch *b, uint16_t type, uint16_t flags,
                              const char *fmt, ...);
void nb_msg_end(struct nft_batch *b);
void nb_put_table(struct nft_batch *b, uint16_t type, uint16_t flags);
void nb_put_chain(struct nft_batch *b, uint16_t type, const char *name, int hook,
                  int prio, const char *ctype);
void nb_put_flush(struct nft_batch *b, const char *chain);
void nb_put_set(struct nft_batch *b, const char *name, bool map, uint32_t id);
void nb_put_set_key(struct nft_batch *b, const char *name, uint32_t key_type,
                    uint32_t key_len, bool host_order, bool map, uint32_t id);
void nb_put_elem(struct nft_batch *b, uint16_t type, const char *set, const char *ifname,
                 const char *chain);
void nb_put_elem_key(struct nft_batch *b, uint16_t type, const char *set, const void *key,
                     uint32_t key_len, const char *chain, const char *what);
void nb_put_rule_del(struct nft_batch *b, const char *chain, uint64_t handle);
void nb_add(struct nftnl_rule *r, struct nftnl_expr *e, bool *oom);
struct nftnl_expr *nb_expr(struct rb *rb, const char *name);
void nb_meta_load(struct rb *rb, uint32_t key);
void nb_cmp(struct rb *rb, uint32_t op, const void *data, uint32_t len);
void nb_match_u8(struct rb *rb, uint32_t key, uint8_t v);
void nb_match_u32(struct rb *rb, uint32_t key, uint32_t op, uint32_t v);
void nb_payload(struct rb *rb, uint32_t base, uint32_t off, uint32_t len);
void nb_payload_reg(struct rb *rb, uint32_t base, uint32_t off, uint32_t len, uint32_t reg);
void nb_match_dport(struct rb *rb, uint16_t port);
void nb_match_sport(struct rb *rb, uint16_t port);
void nb_ct_load(struct rb *rb, uint32_t key, int dir);
void nb_match_ct_dir(struct rb *rb, uint8_t dir);
void nb_match_ct_reply(struct rb *rb);
void nb_lookup(struct rb *rb, const char *set, uint32_t sreg);
void nb_jump(struct rb *rb, const char *chain);
void nb_goto(struct rb *rb, const char *chain);
void nb_match_ct_new(struct rb *rb);
void nb_masquerade(struct rb *rb);
void nb_ct_mark_set(struct rb *rb, uint32_t mark);
void nb_fib_saddr_type(struct rb *rb);
void nb_masked_cmp(struct rb *rb, const void *mask, const void *v, uint32_t len,
                   uint32_t op);
void nb_ct_new_over(struct rb *rb, uint32_t max);
void nb_match_ct_dnat(struct rb *rb);
void nb_in_set(struct rb *rb, uint32_t key, const char *set, bool vmap);
void nb_imm(struct rb *rb, uint32_t reg, const void *data, uint32_t len);
void nb_verdict(struct rb *rb, int v);
void nb_counter(struct rb *rb);
void nb_set_mark(struct rb *rb);
void nb_ct_set_mark(struct rb *rb);
void nb_match_ct_mark(struct rb *rb, uint32_t mark);
void nb_to_addr_port(struct rb *rb, const char *kind, int family, const uint8_t *addr,
                     uint16_t port);
void nb_reject_port_unreach(struct rb *rb);
void nb_reject_tcp_reset(struct rb *rb);
void nb_rule_start(struct rb *rb, const char *chain);
void nb_rule_end(struct nft_batch *b, struct rb *rb, const char *comment);

#endif
