/*
 * sluice's nftables rules with libnftnl: batch building (pure), sending with
 * every ACK checked, and reading back (existence, counters, rule text).
 */
#include "nft_rules.h"

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

#define BATCH_LIMIT (128 * 1024)        /* bytes of messages in one batch */
#define NL_BUF_SIZE 16384               /* one recv of ACKs or a dump */
#define BATCH_MAX_MSGS 512
#define DESC_LEN 64
#define TYPE_IFNAME 41                  /* nft's datatype id, so `nft list` shows names */
#define BYTEORDER_HOST 1                /* nft's enum byteorder */

#define SET_PRE "sandbox_pre"
#define SET_NAT "sandbox_nat"
#define SET_IFS "sandboxes"

/* Counter comments, read back by status. */
#define C_PROXY "proxy"
#define C_DNS "dns"
#define C_REJECT "rejected"
#define C_DROP "dropped"

struct nft_batch {
    char *buf;
    struct mnl_nlmsg_batch *mb;
    uint32_t seq0, seq;
    char (*desc)[DESC_LEN];     /* per message, indexed by seq - seq0 */
    bool ended;
    int err;                    /* sticky: the first failure while building */
};

struct nft_batch *nft_batch_new(void)
{
    struct nft_batch *b = calloc(1, sizeof(*b));

    if (!b)
        return NULL;
    b->buf = malloc(BATCH_LIMIT * 2);   /* libmnl lets the last message overflow */
    b->desc = calloc(BATCH_MAX_MSGS, DESC_LEN);
    if (!b->buf || !b->desc) {
        nft_batch_free(b);
        return NULL;
    }
    b->mb = mnl_nlmsg_batch_start(b->buf, BATCH_LIMIT);
    b->seq0 = b->seq = (uint32_t)time(NULL) << 8;
    snprintf(b->desc[0], DESC_LEN, "batch begin");
    nftnl_batch_begin(mnl_nlmsg_batch_current(b->mb), b->seq++);
    mnl_nlmsg_batch_next(b->mb);
    return b;
}

void nft_batch_free(struct nft_batch *b)
{
    if (!b)
        return;
    if (b->mb)
        mnl_nlmsg_batch_stop(b->mb);
    free(b->buf);
    free(b->desc);
    free(b);
}

__attribute__((format(printf, 4, 5)))
static struct nlmsghdr *msg_start(struct nft_batch *b, uint16_t type, uint16_t flags,
                                  const char *fmt, ...)
{
    uint32_t i = b->seq - b->seq0;
    va_list ap;

    if (i < BATCH_MAX_MSGS) {
        va_start(ap, fmt);
        vsnprintf(b->desc[i], DESC_LEN, fmt, ap);
        va_end(ap);
    } else {
        b->err = -E2BIG;
    }
    return nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(b->mb), type, NFPROTO_INET,
                                 flags | NLM_F_ACK, b->seq++);
}

static void msg_end(struct nft_batch *b)
{
    if (!mnl_nlmsg_batch_next(b->mb) && !b->err)
        b->err = -E2BIG;
}

const char *nft_batch_describe(const struct nft_batch *b, uint32_t seq)
{
    uint32_t i = seq - b->seq0;

    return i < BATCH_MAX_MSGS && i < b->seq - b->seq0 ? b->desc[i] : "batch";
}

const void *nft_batch_data(struct nft_batch *b, size_t *len)
{
    if (!b->ended) {
        nftnl_batch_end(mnl_nlmsg_batch_current(b->mb), b->seq++);
        msg_end(b);
        b->ended = true;
    }
    *len = mnl_nlmsg_batch_size(b->mb);
    return mnl_nlmsg_batch_head(b->mb);
}

/* ---- objects ---- */

static void put_table(struct nft_batch *b, uint16_t type, uint16_t flags)
{
    struct nftnl_table *t = nftnl_table_alloc();
    struct nlmsghdr *nlh;

    if (!t) {
        b->err = -ENOMEM;
        return;
    }
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, NFT_TABLE);
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nlh = msg_start(b, type, flags, "%s table inet " NFT_TABLE,
                    type == NFT_MSG_NEWTABLE ? "NFT_MSG_NEWTABLE" : "NFT_MSG_DELTABLE");
    nftnl_table_nlmsg_build_payload(nlh, t);
    msg_end(b);
    nftnl_table_free(t);
}

/* A base chain when HOOK >= 0, a regular chain otherwise. */
static void put_chain(struct nft_batch *b, uint16_t type, const char *name, int hook,
                      int prio, const char *ctype)
{
    struct nftnl_chain *c = nftnl_chain_alloc();
    struct nlmsghdr *nlh;

    if (!c) {
        b->err = -ENOMEM;
        return;
    }
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, NFT_TABLE);
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
    if (hook >= 0 && type == NFT_MSG_NEWCHAIN) {
        nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, (uint32_t)hook);
        nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
        nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, ctype);
        nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
    }
    nlh = msg_start(b, type, type == NFT_MSG_NEWCHAIN ? NLM_F_CREATE : 0, "%s %s",
                    type == NFT_MSG_NEWCHAIN ? "NFT_MSG_NEWCHAIN" : "NFT_MSG_DELCHAIN", name);
    nftnl_chain_nlmsg_build_payload(nlh, c);
    msg_end(b);
    nftnl_chain_free(c);
}

/* Deletes every rule of CHAIN (nft flush chain). */
static void put_flush(struct nft_batch *b, const char *chain)
{
    struct nftnl_rule *r = nftnl_rule_alloc();
    struct nlmsghdr *nlh;

    if (!r) {
        b->err = -ENOMEM;
        return;
    }
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFT_TABLE);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
    nlh = msg_start(b, NFT_MSG_DELRULE, 0, "NFT_MSG_DELRULE flush %s", chain);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    msg_end(b);
    nftnl_rule_free(r);
}

static void put_set(struct nft_batch *b, const char *name, bool map, uint32_t id)
{
    struct nftnl_set *s = nftnl_set_alloc();
    struct nlmsghdr *nlh;

    if (!s) {
        b->err = -ENOMEM;
        return;
    }
    nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE);
    nftnl_set_set_str(s, NFTNL_SET_NAME, name);
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, TYPE_IFNAME);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, IFNAMSIZ);
    nftnl_set_set_u32(s, NFTNL_SET_ID, id);
    {   /* so that `nft list` prints the names: keys are host-order strings */
        struct nftnl_udata_buf *u = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);

        if (u && nftnl_udata_put_u32(u, NFTNL_UDATA_SET_KEYBYTEORDER, BYTEORDER_HOST))
            nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(u),
                               nftnl_udata_buf_len(u));
        nftnl_udata_buf_free(u);
    }
    if (map) {
        nftnl_set_set_u32(s, NFTNL_SET_FLAGS, NFT_SET_MAP);
        nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
    }
    nlh = msg_start(b, NFT_MSG_NEWSET, NLM_F_CREATE, "NFT_MSG_NEWSET %s", name);
    nftnl_set_nlmsg_build_payload(nlh, s);
    msg_end(b);
    nftnl_set_free(s);
}

/* Adds or deletes IFNAME in SET, mapped to "jump CHAIN" when CHAIN is given. */
static void put_elem(struct nft_batch *b, uint16_t type, const char *set, const char *ifname,
                     const char *chain)
{
    struct nftnl_set *s = nftnl_set_alloc();
    struct nftnl_set_elem *e = nftnl_set_elem_alloc();
    char key[IFNAMSIZ] = {0};
    struct nlmsghdr *nlh;

    if (!s || !e) {
        nftnl_set_free(s);
        nftnl_set_elem_free(e);
        b->err = -ENOMEM;
        return;
    }
    strncpy(key, ifname, IFNAMSIZ - 1);
    nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE);
    nftnl_set_set_str(s, NFTNL_SET_NAME, set);
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, IFNAMSIZ);
    if (chain && type == NFT_MSG_NEWSETELEM) {
        nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, (uint32_t)NFT_JUMP);
        nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, chain);
    }
    nftnl_set_elem_add(s, e);       /* s owns e from here */
    nlh = msg_start(b, type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, "%s %s in %s",
                    type == NFT_MSG_NEWSETELEM ? "NFT_MSG_NEWSETELEM" : "NFT_MSG_DELSETELEM",
                    ifname, set);
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    msg_end(b);
    nftnl_set_free(s);
}

/* ---- rule expressions ---- */

static void add(struct nftnl_rule *r, struct nftnl_expr *e, bool *oom)
{
    if (e)
        nftnl_rule_add_expr(r, e);
    else
        *oom = true;
}

struct rb {                     /* a rule being built */
    struct nftnl_rule *r;
    bool oom;
};

static struct nftnl_expr *expr(struct rb *rb, const char *name)
{
    struct nftnl_expr *e = nftnl_expr_alloc(name);

    add(rb->r, e, &rb->oom);
    return e;
}

static void meta_load(struct rb *rb, uint32_t key)
{
    struct nftnl_expr *e = expr(rb, "meta");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
}

static void cmp(struct rb *rb, uint32_t op, const void *data, uint32_t len)
{
    struct nftnl_expr *e = expr(rb, "cmp");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
}

static void match_u8(struct rb *rb, uint32_t key, uint8_t v)
{
    meta_load(rb, key);
    cmp(rb, NFT_CMP_EQ, &v, 1);
}

static void match_u32(struct rb *rb, uint32_t key, uint32_t op, uint32_t v)
{
    meta_load(rb, key);
    cmp(rb, op, &v, 4);
}

static void payload(struct rb *rb, uint32_t base, uint32_t off, uint32_t len)
{
    struct nftnl_expr *e = expr(rb, "payload");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
}

static void match_dport(struct rb *rb, uint16_t port)
{
    uint16_t be = htons(port);

    payload(rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    cmp(rb, NFT_CMP_EQ, &be, 2);
}

static void match_sport(struct rb *rb, uint16_t port)
{
    uint16_t be = htons(port);

    payload(rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2);
    cmp(rb, NFT_CMP_EQ, &be, 2);
}

/* the packet travels in a connection's reply direction (someone else opened it) */
static void match_ct_reply(struct rb *rb)
{
    struct nftnl_expr *e = expr(rb, "ct");
    uint8_t reply = IP_CT_DIR_REPLY;

    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_DIRECTION);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    }
    cmp(rb, NFT_CMP_EQ, &reply, 1);
}

/* reg1 = the type of the packet's source address as a route lookup sees it
 * (RTN_LOCAL: one of this namespace's own) */
static void fib_saddr_type(struct rb *rb)
{
    struct nftnl_expr *e = expr(rb, "fib");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_SADDR);
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
}

/* reg1 = (reg1 & MASK) ^ 0, then compare with V */
static void masked_cmp(struct rb *rb, const void *mask, const void *v, uint32_t len,
                       uint32_t op)
{
    struct nftnl_expr *e = expr(rb, "bitwise");
    uint8_t zero[16] = {0};

    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, len);
    }
    cmp(rb, op, v, len);
}

/*
 * A new connection beyond MAX of this rule's own (so: of one sandbox) in the
 * connection-tracking table, which every sandbox and the host share.
 */
static void ct_new_over(struct rb *rb, uint32_t max)
{
    struct nftnl_expr *e = expr(rb, "ct");
    uint32_t new_bit = NF_CT_STATE_BIT(IP_CT_NEW), zero = 0;

    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    }
    masked_cmp(rb, &new_bit, &zero, 4, NFT_CMP_NEQ);
    e = expr(rb, "connlimit");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_COUNT, max);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);
    }
}

static void in_set(struct rb *rb, uint32_t key, const char *set, bool vmap)
{
    struct nftnl_expr *e;

    meta_load(rb, key);
    e = expr(rb, "lookup");
    if (!e)
        return;
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    if (vmap)
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
}

static void imm(struct rb *rb, uint32_t reg, const void *data, uint32_t len)
{
    struct nftnl_expr *e = expr(rb, "immediate");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, reg);
    nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
}

static void verdict(struct rb *rb, int v)
{
    struct nftnl_expr *e = expr(rb, "immediate");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)v);
}

static void counter(struct rb *rb)
{
    expr(rb, "counter");
}

static void set_mark(struct rb *rb)
{
    uint32_t mark = NFT_MARK;
    struct nftnl_expr *e;

    imm(rb, NFT_REG_1, &mark, 4);
    e = expr(rb, "meta");
    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_MARK);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
}

static void to_addr_port(struct rb *rb, const char *kind, int family, const uint8_t *addr,
                         uint16_t port)
{
    uint16_t be = htons(port);
    struct nftnl_expr *e;

    imm(rb, NFT_REG_1, addr, family == NFPROTO_IPV4 ? 4 : 16);
    imm(rb, NFT_REG_2, &be, 2);
    e = expr(rb, kind);
    if (!e)
        return;
    if (strcmp(kind, "tproxy") == 0) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_FAMILY, (uint32_t)family);
        nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_REG_ADDR, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_REG_PORT, NFT_REG_2);
    } else {
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, (uint32_t)family);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFT_REG_2);
    }
}

static void reject_port_unreach(struct rb *rb)
{
    struct nftnl_expr *e = expr(rb, "reject");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, NFT_REJECT_ICMPX_PORT_UNREACH);
}

static void reject_tcp_reset(struct rb *rb)
{
    struct nftnl_expr *e = expr(rb, "reject");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_TCP_RST);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, 0);
}

static void rb_start(struct rb *rb, const char *chain)
{
    rb->oom = false;
    rb->r = nftnl_rule_alloc();
    if (!rb->r) {
        rb->oom = true;
        return;
    }
    nftnl_rule_set_str(rb->r, NFTNL_RULE_TABLE, NFT_TABLE);
    nftnl_rule_set_str(rb->r, NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u32(rb->r, NFTNL_RULE_FAMILY, NFPROTO_INET);
}

/* Appends the rule, with COMMENT (may be NULL) as its userdata, to the batch. */
static void rb_end(struct nft_batch *b, struct rb *rb, const char *comment)
{
    struct nlmsghdr *nlh;

    if (rb->r && comment) {
        struct nftnl_udata_buf *u = nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN);

        if (u && nftnl_udata_put_strz(u, NFTNL_UDATA_RULE_COMMENT, comment))
            nftnl_rule_set_data(rb->r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(u),
                                nftnl_udata_buf_len(u));
        else
            rb->oom = true;
        nftnl_udata_buf_free(u);
    }
    if (rb->oom) {
        b->err = -ENOMEM;
    } else {
        nlh = msg_start(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
                        "NFT_MSG_NEWRULE in %s", nftnl_rule_get_str(rb->r, NFTNL_RULE_CHAIN));
        nftnl_rule_nlmsg_build_payload(nlh, rb->r);
        msg_end(b);
    }
    nftnl_rule_free(rb->r);
    rb->r = NULL;
}

/* ---- router mode ---- */

static const struct {
    const char *name;
    int hook, prio;
    const char *type;
} base_chains[] = {
    {"prerouting", NF_INET_PRE_ROUTING, -150, "filter"},   /* mangle: before routing */
    {"dstnat", NF_INET_PRE_ROUTING, -100, "nat"},
    {"input", NF_INET_LOCAL_IN, 0, "filter"},
    {"forward", NF_INET_FORWARD, 0, "filter"},
};

int nft_build_base(struct nft_batch *b)
{
    uint32_t dnat = IPS_DST_NAT, zero = 0;
    struct rb rb;
    size_t i;

    put_table(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
    put_set(b, SET_PRE, true, 1);
    put_set(b, SET_NAT, true, 2);
    put_set(b, SET_IFS, false, 3);
    for (i = 0; i < sizeof(base_chains) / sizeof(base_chains[0]); i++) {
        put_chain(b, NFT_MSG_NEWCHAIN, base_chains[i].name, base_chains[i].hook,
                  base_chains[i].prio, base_chains[i].type);
        put_flush(b, base_chains[i].name);
    }

    rb_start(&rb, "prerouting");            /* iifname vmap @sandbox_pre */
    in_set(&rb, NFT_META_IIFNAME, SET_PRE, true);
    rb_end(b, &rb, NULL);
    rb_start(&rb, "dstnat");                /* iifname vmap @sandbox_nat */
    in_set(&rb, NFT_META_IIFNAME, SET_NAT, true);
    rb_end(b, &rb, NULL);

    rb_start(&rb, "input");                 /* TPROXY-delivered TCP */
    in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
    match_u32(&rb, NFT_META_MARK, NFT_CMP_EQ, NFT_MARK);
    verdict(&rb, NF_ACCEPT);
    rb_end(b, &rb, NULL);
    rb_start(&rb, "input");                 /* DNS, DNATed to the proxy */
    in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
    {
        struct nftnl_expr *e = expr(&rb, "ct");

        if (e) {
            nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATUS);
            nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
        }
    }
    masked_cmp(&rb, &dnat, &zero, 4, NFT_CMP_NEQ);
    verdict(&rb, NF_ACCEPT);
    rb_end(b, &rb, NULL);
    for (i = 0; i < 2; i++) {               /* IPv6 neighbour discovery with the gateway */
        uint8_t type = i == 0 ? 135 : 136;

        rb_start(&rb, "input");
        in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
        match_u8(&rb, NFT_META_L4PROTO, IPPROTO_ICMPV6);
        payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
        cmp(&rb, NFT_CMP_EQ, &type, 1);
        verdict(&rb, NF_ACCEPT);
        rb_end(b, &rb, NULL);
    }
    rb_start(&rb, "input");                 /* anything else for the host: never */
    in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);

    rb_start(&rb, "forward");               /* nothing from a sandbox is forwarded */
    in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);
    rb_start(&rb, "forward");               /* and nothing reaches one by forwarding */
    in_set(&rb, NFT_META_OIFNAME, SET_IFS, false);
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);
    return b->err;
}

void nft_chain_names(const char *name, char pre[64], char nat[64])
{
    snprintf(pre, 64, "pre-%s", name);
    snprintf(nat, 64, "nat-%s", name);
}

/* The rules of one family in the sandbox's prerouting and nat chains. */
static void sandbox_family_rules(struct nft_batch *b, const struct nft_sandbox *s,
                                 const char *pre, const char *nat, uint8_t family)
{
    const uint8_t *gw = family == NFPROTO_IPV4 ? s->gw4 : s->gw6;
    static const uint8_t l4[] = {IPPROTO_TCP, IPPROTO_UDP};
    struct rb rb;
    size_t i;

    for (i = 0; i < 2; i++) {               /* DNS: leave it to the nat chain */
        rb_start(&rb, pre);
        match_u8(&rb, NFT_META_NFPROTO, family);
        match_u8(&rb, NFT_META_L4PROTO, l4[i]);
        match_dport(&rb, 53);
        verdict(&rb, NF_ACCEPT);
        rb_end(b, &rb, NULL);

        rb_start(&rb, nat);                 /* ... which sends it to the proxy */
        match_u8(&rb, NFT_META_NFPROTO, family);
        match_u8(&rb, NFT_META_L4PROTO, l4[i]);
        match_dport(&rb, 53);
        counter(&rb);
        to_addr_port(&rb, "nat", family, gw, s->dns_port);
        rb_end(b, &rb, C_DNS);
    }
    rb_start(&rb, pre);                     /* every other TCP flow: TPROXY */
    match_u8(&rb, NFT_META_NFPROTO, family);
    match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
    counter(&rb);
    to_addr_port(&rb, "tproxy", family, gw, s->proxy_port);
    set_mark(&rb);
    verdict(&rb, NF_ACCEPT);
    rb_end(b, &rb, C_PROXY);
    /* tproxy finds no socket when the proxy is down: refuse at once, never route */
    rb_start(&rb, pre);
    match_u8(&rb, NFT_META_NFPROTO, family);
    match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
    counter(&rb);
    reject_tcp_reset(&rb);
    rb_end(b, &rb, C_REJECT);
    if (family == NFPROTO_IPV6) {
        for (i = 0; i < 2; i++) {           /* neighbour discovery, nothing else of ICMPv6 */
            uint8_t type = i == 0 ? 135 : 136;

            rb_start(&rb, pre);
            match_u8(&rb, NFT_META_L4PROTO, IPPROTO_ICMPV6);
            payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
            cmp(&rb, NFT_CMP_EQ, &type, 1);
            verdict(&rb, NF_ACCEPT);
            rb_end(b, &rb, NULL);
        }
    }
}

/*
 * First in the sandbox's prerouting chain: a packet whose source is not the
 * sandbox's own address is dropped. Otherwise a sandbox with a raw socket could
 * name another host as the source of a DNS query or a SYN, and the proxy's
 * answer (the echoed question, a SYN-ACK, an ICMP error quoting the packet)
 * would carry its bytes there. ICMPv6 is let on to the neighbour-discovery
 * rules below, whose sources are link-local (or unspecified) addresses.
 */
static void sandbox_source_rules(struct nft_batch *b, const struct nft_sandbox *s,
                                 const char *pre)
{
    struct rb rb;

    rb_start(&rb, pre);
    match_u8(&rb, NFT_META_NFPROTO, NFPROTO_IPV4);
    payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 12, 4);
    cmp(&rb, NFT_CMP_NEQ, s->addr4, 4);
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);
    rb_start(&rb, pre);                     /* a sandbox without IPv6: none at all */
    match_u8(&rb, NFT_META_NFPROTO, NFPROTO_IPV6);
    if (s->v6) {
        meta_load(&rb, NFT_META_L4PROTO);
        cmp(&rb, NFT_CMP_NEQ, (const uint8_t[]){IPPROTO_ICMPV6}, 1);
        payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 8, 16);
        cmp(&rb, NFT_CMP_NEQ, s->addr6, 16);
    }
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);
    rb_start(&rb, pre);                     /* its share of the shared conntrack table */
    ct_new_over(&rb, s->max_conntrack);
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);
}

int nft_build_sandbox_add(struct nft_batch *b, const struct nft_sandbox *s)
{
    char pre[64], nat[64];
    struct rb rb;

    nft_chain_names(s->name, pre, nat);
    put_chain(b, NFT_MSG_NEWCHAIN, pre, -1, 0, NULL);
    put_chain(b, NFT_MSG_NEWCHAIN, nat, -1, 0, NULL);
    put_flush(b, pre);
    put_flush(b, nat);

    sandbox_source_rules(b, s, pre);
    sandbox_family_rules(b, s, pre, nat, NFPROTO_IPV4);
    if (s->v6)
        sandbox_family_rules(b, s, pre, nat, NFPROTO_IPV6);

    rb_start(&rb, pre);                     /* QUIC: refuse, so clients fall back to TCP */
    match_u8(&rb, NFT_META_L4PROTO, IPPROTO_UDP);
    match_dport(&rb, 443);
    counter(&rb);
    reject_port_unreach(&rb);
    rb_end(b, &rb, C_REJECT);
    rb_start(&rb, pre);                     /* everything else */
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);

    put_elem(b, NFT_MSG_NEWSETELEM, SET_IFS, s->ifname, NULL);
    put_elem(b, NFT_MSG_NEWSETELEM, SET_PRE, s->ifname, pre);
    put_elem(b, NFT_MSG_NEWSETELEM, SET_NAT, s->ifname, nat);
    return b->err;
}

int nft_build_sandbox_del(struct nft_batch *b, const struct nft_sandbox *s, bool elems,
                          bool chains)
{
    char pre[64], nat[64];

    nft_chain_names(s->name, pre, nat);
    if (elems) {
        put_elem(b, NFT_MSG_DELSETELEM, SET_PRE, s->ifname, NULL);
        put_elem(b, NFT_MSG_DELSETELEM, SET_NAT, s->ifname, NULL);
        put_elem(b, NFT_MSG_DELSETELEM, SET_IFS, s->ifname, NULL);
    }
    if (chains) {
        put_flush(b, pre);
        put_flush(b, nat);
        put_chain(b, NFT_MSG_DELCHAIN, pre, -1, 0, NULL);
        put_chain(b, NFT_MSG_DELCHAIN, nat, -1, 0, NULL);
    }
    return b->err;
}

int nft_build_table_del(struct nft_batch *b)
{
    put_table(b, NFT_MSG_DELTABLE, 0);
    return b->err;
}

/* ---- pod mode ---- */

/* "not loopback": the destination is outside 127.0.0.0/8 and not ::1 */
static void match_loopback(struct rb *rb, uint8_t family)
{
    static const uint8_t net8[4] = {127, 0, 0, 0}, mask8[4] = {255, 0, 0, 0};
    static const uint8_t lo6[16] = {[15] = 1};

    match_u8(rb, NFT_META_NFPROTO, family);
    if (family == NFPROTO_IPV4) {
        payload(rb, NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
        masked_cmp(rb, mask8, net8, 4, NFT_CMP_EQ);
    } else {
        payload(rb, NFT_PAYLOAD_NETWORK_HEADER, 24, 16);
        cmp(rb, NFT_CMP_EQ, lo6, 16);
    }
}

int nft_build_pod(struct nft_batch *b, const struct nft_pod *p)
{
    static const uint8_t lo4[4] = {127, 0, 0, 1}, lo6[16] = {[15] = 1};
    static const char loname[IFNAMSIZ] = "lo";
    static const uint8_t fams[] = {NFPROTO_IPV4, NFPROTO_IPV6};
    static const uint8_t l4[] = {IPPROTO_TCP, IPPROTO_UDP};
    const uint16_t own[] = {p->proxy_port, p->dns_port, p->metrics_port};
    uint32_t dnat = IPS_DST_NAT, zero = 0;
    struct rb rb;
    size_t f, i, j;

    put_table(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
    put_chain(b, NFT_MSG_NEWCHAIN, "pod_mark", NF_INET_LOCAL_OUT, -150, "route");
    put_chain(b, NFT_MSG_NEWCHAIN, "pod_tproxy", NF_INET_PRE_ROUTING, -150, "filter");
    put_chain(b, NFT_MSG_NEWCHAIN, "pod_dns", NF_INET_LOCAL_OUT, -100, "nat");
    put_chain(b, NFT_MSG_NEWCHAIN, "pod_out", NF_INET_LOCAL_OUT, 0, "filter");
    put_flush(b, "pod_mark");
    put_flush(b, "pod_tproxy");
    put_flush(b, "pod_dns");
    put_flush(b, "pod_out");

    /* pod_mark: the workload's TCP to anything but loopback is marked and so
     * rerouted to lo, where pod_tproxy hands it to the proxy. */
    /* Replies are not the workload's: the proxy's SYN-ACK leaves from a request
     * socket, which has no UID to match, and must go back unmarked. */
    rb_start(&rb, "pod_mark");
    match_ct_reply(&rb);
    verdict(&rb, NFT_RETURN);
    rb_end(b, &rb, NULL);
    rb_start(&rb, "pod_mark");
    match_u32(&rb, NFT_META_SKUID, NFT_CMP_EQ, p->proxy_uid);
    verdict(&rb, NFT_RETURN);
    rb_end(b, &rb, NULL);
    for (f = 0; f < 2; f++) {
        rb_start(&rb, "pod_mark");
        match_loopback(&rb, fams[f]);
        verdict(&rb, NFT_RETURN);
        rb_end(b, &rb, NULL);
    }
    for (i = 0; i < 2; i++) {           /* DNS is pod_dns's: leave it unmarked */
        rb_start(&rb, "pod_mark");
        match_u8(&rb, NFT_META_L4PROTO, l4[i]);
        match_dport(&rb, 53);
        verdict(&rb, NFT_RETURN);
        rb_end(b, &rb, NULL);
    }
    rb_start(&rb, "pod_mark");
    match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
    counter(&rb);
    set_mark(&rb);
    rb_end(b, &rb, C_PROXY);

    for (f = 0; f < 2; f++) {
        rb_start(&rb, "pod_tproxy");
        match_u8(&rb, NFT_META_NFPROTO, fams[f]);
        match_u32(&rb, NFT_META_MARK, NFT_CMP_EQ, NFT_MARK);
        match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
        to_addr_port(&rb, "tproxy", fams[f], fams[f] == NFPROTO_IPV4 ? lo4 : lo6,
                     p->proxy_port);
        verdict(&rb, NF_ACCEPT);
        rb_end(b, &rb, NULL);
        rb_start(&rb, "pod_tproxy");    /* no proxy listening: refuse at once */
        match_u8(&rb, NFT_META_NFPROTO, fams[f]);
        match_u32(&rb, NFT_META_MARK, NFT_CMP_EQ, NFT_MARK);
        match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
        counter(&rb);
        reject_tcp_reset(&rb);
        rb_end(b, &rb, C_REJECT);

        for (i = 0; i < 2; i++) {       /* the workload's DNS, to any address */
            rb_start(&rb, "pod_dns");
            match_u8(&rb, NFT_META_NFPROTO, fams[f]);
            match_u32(&rb, NFT_META_SKUID, NFT_CMP_NEQ, p->proxy_uid);
            match_u8(&rb, NFT_META_L4PROTO, l4[i]);
            match_dport(&rb, 53);
            counter(&rb);
            to_addr_port(&rb, "nat", fams[f], fams[f] == NFPROTO_IPV4 ? lo4 : lo6,
                         p->dns_port);
            rb_end(b, &rb, C_DNS);
        }
    }


    /* pod_out: what may leave a workload socket at all. First, IPv6 neighbour
     * discovery as the kernel sends it: hop limit 255, to a link-local or
     * multicast address (which no router forwards), nothing else: a raw socket
     * could put a payload in an "ND" packet to any address. */
    for (i = 0; i < 3; i++) {
        static const uint8_t nd[] = {133, 135, 136}, hops = 255;
        static const uint8_t scope_mask[2][16] = {{0xff, 0xc0}, {0xff}};
        static const uint8_t scope[2][16] = {{0xfe, 0x80}, {0xff}};   /* fe80::/10, ff00::/8 */

        for (j = 0; j < 2; j++) {
            rb_start(&rb, "pod_out");
            match_u8(&rb, NFT_META_L4PROTO, IPPROTO_ICMPV6);
            payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
            cmp(&rb, NFT_CMP_EQ, &nd[i], 1);
            payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 7, 1);
            cmp(&rb, NFT_CMP_EQ, &hops, 1);
            payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 24, 16);
            masked_cmp(&rb, scope_mask[j], scope[j], 16, NFT_CMP_EQ);
            verdict(&rb, NF_ACCEPT);
            rb_end(b, &rb, NULL);
        }
    }
    /* A packet leaving the pod must carry one of the pod's own addresses as
     * its source (as a veth sandbox's must): a spoofed one would have the
     * proxy, or conntrack's idea of a reply, answer another host. On lo,
     * sources are not the pod's own: the proxy's transparent sockets answer the
     * workload from the address it dialled. */
    rb_start(&rb, "pod_out");
    meta_load(&rb, NFT_META_OIFNAME);
    cmp(&rb, NFT_CMP_NEQ, loname, IFNAMSIZ);
    fib_saddr_type(&rb);
    {
        uint32_t local = RTN_LOCAL;

        cmp(&rb, NFT_CMP_NEQ, &local, 4);
    }
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);
    rb_start(&rb, "pod_out");
    match_u32(&rb, NFT_META_SKUID, NFT_CMP_EQ, p->proxy_uid);
    verdict(&rb, NF_ACCEPT);
    rb_end(b, &rb, NULL);
    rb_start(&rb, "pod_out");           /* the workload's share of conntrack */
    ct_new_over(&rb, p->max_conntrack);
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);
    rb_start(&rb, "pod_out");
    match_u32(&rb, NFT_META_MARK, NFT_CMP_EQ, NFT_MARK);
    verdict(&rb, NF_ACCEPT);
    rb_end(b, &rb, NULL);
    rb_start(&rb, "pod_out");
    {
        struct nftnl_expr *e = expr(&rb, "ct");

        if (e) {
            nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATUS);
            nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
        }
    }
    masked_cmp(&rb, &dnat, &zero, 4, NFT_CMP_NEQ);
    verdict(&rb, NF_ACCEPT);
    rb_end(b, &rb, NULL);
    /* The metrics port answers connections from outside the pod (the kubelet's
     * probes, a Prometheus scrape): its SYN-ACK leaves from a request socket,
     * which has no UID for the proxy-UID rule to match. Only replies, only that
     * port, and never from another UID's socket: a workload listening there
     * itself (or writing raw packets) would have a channel both ways. A packet
     * without a full socket has no UID, so the skuid rule does not match it. */
    if (p->metrics_port) {
        rb_start(&rb, "pod_out");
        match_ct_reply(&rb);
        match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
        match_sport(&rb, p->metrics_port);
        match_u32(&rb, NFT_META_SKUID, NFT_CMP_NEQ, p->proxy_uid);
        counter(&rb);
        verdict(&rb, NF_DROP);
        rb_end(b, &rb, C_DROP);
        rb_start(&rb, "pod_out");
        match_ct_reply(&rb);
        match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
        match_sport(&rb, p->metrics_port);
        verdict(&rb, NF_ACCEPT);
        rb_end(b, &rb, NULL);
    }
    for (f = 0; f < 2; f++) {
        for (i = 0; i < 2; i++) {
            for (j = 0; j < sizeof(own) / sizeof(own[0]); j++) {
                if (own[j] == 0)
                    continue;
                rb_start(&rb, "pod_out");   /* the proxy's own ports: its UID only */
                match_loopback(&rb, fams[f]);
                match_u8(&rb, NFT_META_L4PROTO, l4[i]);
                match_dport(&rb, own[j]);
                counter(&rb);
                reject_port_unreach(&rb);
                rb_end(b, &rb, C_REJECT);
            }
        }
    }
    /* The rest of what stays on this host (loopback, the pod's own address, the
     * ICMP errors pod_tproxy sends back) is local, not egress. */
    rb_start(&rb, "pod_out");
    meta_load(&rb, NFT_META_OIFNAME);
    cmp(&rb, NFT_CMP_EQ, loname, IFNAMSIZ);
    verdict(&rb, NF_ACCEPT);
    rb_end(b, &rb, NULL);
    /* QUIC: refused, so clients fall back to TCP at once. In OUTPUT that means
     * send() fails with EPERM, and the port-unreachable (local, so accepted
     * above) makes the next receive fail with ECONNREFUSED. */
    rb_start(&rb, "pod_out");
    match_u8(&rb, NFT_META_L4PROTO, IPPROTO_UDP);
    match_dport(&rb, 443);
    counter(&rb);
    reject_port_unreach(&rb);
    rb_end(b, &rb, C_REJECT);
    rb_start(&rb, "pod_out");
    counter(&rb);
    verdict(&rb, NF_DROP);
    rb_end(b, &rb, C_DROP);
    return b->err;
}

/* ---- talking to the kernel ---- */

static struct mnl_socket *nf_open(uint32_t *portid)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);

    if (!nl)
        return NULL;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int e = errno;

        mnl_socket_close(nl);
        errno = e;
        return NULL;
    }
    *portid = mnl_socket_get_portid(nl);
    return nl;
}

int nft_send(struct nft_batch *b, char *what, size_t what_len)
{
    return nft_send_keep(b, what, what_len, NULL);
}

void nft_release(struct nft_socket *s)
{
    if (s)
        mnl_socket_close((struct mnl_socket *)s);
}

int nft_send_keep(struct nft_batch *b, char *what, size_t what_len, struct nft_socket **keep)
{
    char buf[NL_BUF_SIZE];
    struct mnl_socket *nl;
    const void *data;
    uint32_t portid, acks, expect;
    size_t len;
    int ret = 0, left;

    snprintf(what, what_len, "building the batch");
    if (b->err)
        return b->err;
    data = nft_batch_data(b, &len);
    if (b->err)
        return b->err;
    snprintf(what, what_len, "socket(NETLINK_NETFILTER)");
    nl = nf_open(&portid);
    if (!nl)
        return -errno;
    snprintf(what, what_len, "sending the batch");
    if (mnl_socket_sendto(nl, data, len) < 0) {
        ret = -errno;
        goto out;
    }
    /* one ACK per message between begin and end */
    expect = b->seq - b->seq0 - 2;
    for (acks = 0; acks < expect;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
        const struct nlmsghdr *nlh;

        if (n < 0) {
            ret = -errno;
            goto out;
        }
        left = (int)n;
        for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, left);
             nlh = mnl_nlmsg_next(nlh, &left)) {
            if (nlh->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

                acks++;
                if (e->error && !ret) {
                    ret = e->error;
                    snprintf(what, what_len, "%s", nft_batch_describe(b, nlh->nlmsg_seq));
                }
            }
        }
        /* after a failure the kernel aborts the batch: no more ACKs come */
        if (ret)
            break;
    }
out:
    if (keep && ret == 0)
        *keep = (struct nft_socket *)nl;
    else
        mnl_socket_close(nl);
    return ret;
}

/* A GET request (dump when DUMP) run through CB; -ENOENT when the object is missing. */
static int nf_get(uint16_t type, bool dump, void (*build)(struct nlmsghdr *, const void *),
                  const void *arg, mnl_cb_t cb, void *data)
{
    char buf[NL_BUF_SIZE];
    struct mnl_socket *nl;
    struct nlmsghdr *nlh;
    uint32_t portid, seq = (uint32_t)time(NULL);
    int ret;

    nl = nf_open(&portid);
    if (!nl)
        return -errno;
    nlh = nftnl_nlmsg_build_hdr(buf, type, NFPROTO_INET, dump ? NLM_F_DUMP : NLM_F_ACK, seq);
    build(nlh, arg);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        ret = -errno;
        goto out;
    }
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));

        if (n < 0) {
            ret = -errno;
            break;
        }
        ret = mnl_cb_run(buf, (size_t)n, seq, portid, cb, data);
        if (ret <= 0) {
            ret = ret < 0 ? -errno : 0;
            break;
        }
    }
out:
    mnl_socket_close(nl);
    return ret;
}

static void build_table_get(struct nlmsghdr *nlh, const void *arg)
{
    struct nftnl_table *t = nftnl_table_alloc();

    (void)arg;
    if (!t)
        return;
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, NFT_TABLE);
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
}

static int count_cb(const struct nlmsghdr *nlh, void *data)
{
    (void)nlh;
    (*(int *)data)++;
    return MNL_CB_OK;
}

/* 1 when the GET found the object, 0 when the kernel says there is none, -errno. */
static int exists(uint16_t type, void (*build)(struct nlmsghdr *, const void *),
                  const void *arg)
{
    int n = 0, ret = nf_get(type, false, build, arg, count_cb, &n);

    if (ret == -ENOENT)
        return 0;
    return ret < 0 ? ret : n > 0;
}

int nft_table_exists(void)
{
    return exists(NFT_MSG_GETTABLE, build_table_get, NULL);
}

static void build_chain_get(struct nlmsghdr *nlh, const void *arg)
{
    struct nftnl_chain *c = nftnl_chain_alloc();

    if (!c)
        return;
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, NFT_TABLE);
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, arg);
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nftnl_chain_free(c);
}

int nft_chain_exists(const char *chain)
{
    return exists(NFT_MSG_GETCHAIN, build_chain_get, chain);
}

static void build_elem_get(struct nlmsghdr *nlh, const void *arg)
{
    struct nftnl_set *s = nftnl_set_alloc();
    struct nftnl_set_elem *e = nftnl_set_elem_alloc();
    char key[IFNAMSIZ] = {0};

    if (!s || !e) {
        nftnl_set_free(s);
        nftnl_set_elem_free(e);
        return;
    }
    strncpy(key, arg, IFNAMSIZ - 1);
    nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE);
    nftnl_set_set_str(s, NFTNL_SET_NAME, SET_IFS);
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, IFNAMSIZ);
    nftnl_set_elem_add(s, e);
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
}

int nft_sandbox_elem_exists(const char *ifname)
{
    return exists(NFT_MSG_GETSETELEM, build_elem_get, ifname);
}

static void build_rule_dump(struct nlmsghdr *nlh, const void *arg)
{
    struct nftnl_rule *r = nftnl_rule_alloc();

    if (!r)
        return;
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFT_TABLE);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, arg);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nftnl_rule_free(r);
}

static int comment_cb(const struct nftnl_udata *attr, void *data)
{
    if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT)
        *(const char **)data = nftnl_udata_get(attr);
    return 0;
}

static int counters_cb(const struct nlmsghdr *nlh, void *data)
{
    struct nft_counters *c = data;
    struct nftnl_rule *r = nftnl_rule_alloc();
    struct nftnl_expr_iter *it;
    struct nftnl_expr *e;
    const char *comment = NULL;
    const void *ud;
    uint32_t udlen;
    uint64_t pkts = 0;

    if (!r || nftnl_rule_nlmsg_parse(nlh, r) < 0)
        goto out;
    ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &udlen);
    if (!ud || nftnl_udata_parse(ud, udlen, comment_cb, &comment) < 0 || !comment)
        goto out;
    it = nftnl_expr_iter_create(r);
    while (it && (e = nftnl_expr_iter_next(it)) != NULL)
        if (strcmp(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "counter") == 0)
            pkts = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
    nftnl_expr_iter_destroy(it);
    if (strcmp(comment, C_PROXY) == 0)
        c->proxy += pkts;
    else if (strcmp(comment, C_DNS) == 0)
        c->dns += pkts;
    else if (strcmp(comment, C_REJECT) == 0)
        c->rejected += pkts;
    else if (strcmp(comment, C_DROP) == 0)
        c->dropped += pkts;
out:
    nftnl_rule_free(r);
    return MNL_CB_OK;
}

int nft_chain_counters(const char *chain, struct nft_counters *c)
{
    return nf_get(NFT_MSG_GETRULE, true, build_rule_dump, chain, counters_cb, c);
}

int nft_sandbox_counters(const char *name, struct nft_counters *c)
{
    char pre[64], nat[64];
    int r;

    memset(c, 0, sizeof(*c));
    nft_chain_names(name, pre, nat);
    r = nft_chain_counters(pre, c);
    if (r == 0)
        r = nft_chain_counters(nat, c);
    return r;
}

struct text_ctx {
    char *out;
    size_t len, off;
};

/* libnftnl's text of R with counter values and handle stripped. */
static void rule_text(struct nftnl_rule *r, struct text_ctx *t)
{
    char line[1024];
    struct nftnl_expr_iter *it = nftnl_expr_iter_create(r);
    struct nftnl_expr *e;
    size_t off = 0;
    int n;

    while (it && (e = nftnl_expr_iter_next(it)) != NULL && off < sizeof(line)) {
        const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);

        if (strcmp(name, "counter") == 0) {
            n = snprintf(line + off, sizeof(line) - off, "[ counter ] ");
        } else if (strcmp(name, "nat") == 0) {
            /* the kernel echoes addr_max/proto_max/flags it filled in itself */
            n = snprintf(line + off, sizeof(line) - off, "[ nat type %u family %u ] ",
                         nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_TYPE),
                         nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_FAMILY));
        } else {
            n = snprintf(line + off, sizeof(line) - off, "[ %s ", name);
            if (n > 0 && (size_t)n < sizeof(line) - off) {
                off += (size_t)n;
                n = nftnl_expr_snprintf(line + off, sizeof(line) - off, e, NFTNL_OUTPUT_DEFAULT,
                                        0);
                if (n >= 0 && (size_t)n < sizeof(line) - off) {
                    off += (size_t)n;
                    n = snprintf(line + off, sizeof(line) - off, "] ");
                }
            }
        }
        if (n < 0)
            break;
        off += (size_t)n;
    }
    nftnl_expr_iter_destroy(it);
    if (off >= sizeof(line))
        off = sizeof(line) - 1;
    line[off] = '\0';
    if (t->off < t->len) {
        n = snprintf(t->out + t->off, t->len - t->off, "%s\n", line);
        if (n > 0)
            t->off += (size_t)n;
    }
}

static int text_cb(const struct nlmsghdr *nlh, void *data)
{
    struct nftnl_rule *r = nftnl_rule_alloc();

    if (r && nftnl_rule_nlmsg_parse(nlh, r) == 0)
        rule_text(r, data);
    nftnl_rule_free(r);
    return MNL_CB_OK;
}

int nft_chain_text(const char *chain, char *out, size_t len)
{
    struct text_ctx t = {.out = out, .len = len};

    out[0] = '\0';
    return nf_get(NFT_MSG_GETRULE, true, build_rule_dump, chain, text_cb, &t);
}

int nft_expect_text(const struct nft_sandbox *s, const char *chain, char *out, size_t len)
{
    struct text_ctx t = {.out = out, .len = len};
    struct nft_batch *b = nft_batch_new();
    const struct nlmsghdr *nlh;
    const void *data;
    size_t size;
    int r, left;

    out[0] = '\0';
    if (!b)
        return -ENOMEM;
    r = nft_build_sandbox_add(b, s);
    data = nft_batch_data(b, &size);
    left = (int)size;
    for (nlh = data; r == 0 && mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
        struct nftnl_rule *rule;

        if ((nlh->nlmsg_type & 0xff) != NFT_MSG_NEWRULE)
            continue;
        rule = nftnl_rule_alloc();
        if (rule && nftnl_rule_nlmsg_parse(nlh, rule) == 0 &&
            strcmp(nftnl_rule_get_str(rule, NFTNL_RULE_CHAIN), chain) == 0)
            rule_text(rule, &t);
        nftnl_rule_free(rule);
    }
    nft_batch_free(b);
    return r;
}
