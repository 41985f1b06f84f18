/*
 * nftables batches with libnftnl: one begin ... end per command, each message
 * described for errors, and the expressions rules are built from. Pure: a
 * buffer of netlink messages; nothing here talks to the kernel.
 */
#include "nft_int.h"

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
struct nlmsghdr *nb_msg_start(struct nft_batch *b, uint16_t type, uint16_t flags,
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

void nb_msg_end(struct nft_batch *b)
{
    if (!mnl_nlmsg_batch_next(b->mb) && !b->err)
        b->err = -E2BIG;
}

size_t nft_batch_msgs(const struct nft_batch *b)
{
    return b->seq - b->seq0 - 1 - (b->ended ? 1 : 0);
}

size_t nft_batch_bytes(struct nft_batch *b)
{
    return mnl_nlmsg_batch_size(b->mb);
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
        nb_msg_end(b);
        b->ended = true;
    }
    *len = mnl_nlmsg_batch_size(b->mb);
    return mnl_nlmsg_batch_head(b->mb);
}

/* ---- objects ---- */

void nb_put_table(struct nft_batch *b, uint16_t type, uint16_t flags)
{
    struct nftnl_table *t = nftnl_table_alloc();
    struct nlmsghdr *nlh;

    if (!t) {
        b->err = -ENOMEM;
        return;
    }
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, NFT_TABLE);
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nlh = nb_msg_start(b, type, flags, "%s table inet " NFT_TABLE,
                    type == NFT_MSG_NEWTABLE ? "NFT_MSG_NEWTABLE" : "NFT_MSG_DELTABLE");
    nftnl_table_nlmsg_build_payload(nlh, t);
    nb_msg_end(b);
    nftnl_table_free(t);
}

/* A base chain when HOOK >= 0, a regular chain otherwise. */
void nb_put_chain(struct nft_batch *b, uint16_t type, const char *name, int hook,
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
    nlh = nb_msg_start(b, type, type == NFT_MSG_NEWCHAIN ? NLM_F_CREATE : 0, "%s %s",
                    type == NFT_MSG_NEWCHAIN ? "NFT_MSG_NEWCHAIN" : "NFT_MSG_DELCHAIN", name);
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nb_msg_end(b);
    nftnl_chain_free(c);
}

/* Deletes every rule of CHAIN (nft flush chain). */
void nb_put_flush(struct nft_batch *b, const char *chain)
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
    nlh = nb_msg_start(b, NFT_MSG_DELRULE, 0, "NFT_MSG_DELRULE flush %s", chain);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nb_msg_end(b);
    nftnl_rule_free(r);
}

void nb_put_set(struct nft_batch *b, const char *name, bool map, uint32_t id)
{
    nb_put_set_key(b, name, TYPE_IFNAME, IFNAMSIZ, true, map, id);
}

void nb_put_set_key(struct nft_batch *b, const char *name, uint32_t key_type,
                    uint32_t key_len, bool host_order, bool map, uint32_t id)
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
    nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, key_type);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, key_len);
    nftnl_set_set_u32(s, NFTNL_SET_ID, id);
    if (host_order) {   /* so that `nft list` prints the names: keys are host-order strings */
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
    nlh = nb_msg_start(b, NFT_MSG_NEWSET, NLM_F_CREATE, "NFT_MSG_NEWSET %s", name);
    nftnl_set_nlmsg_build_payload(nlh, s);
    nb_msg_end(b);
    nftnl_set_free(s);
}

/* Adds or deletes IFNAME in SET, mapped to "jump CHAIN" when CHAIN is given. */
void nb_put_elem(struct nft_batch *b, uint16_t type, const char *set, const char *ifname,
                 const char *chain)
{
    char key[IFNAMSIZ] = {0};

    strncpy(key, ifname, IFNAMSIZ - 1);
    nb_put_elem_key(b, type, set, key, IFNAMSIZ, chain, ifname);
}

void nb_put_elem_key(struct nft_batch *b, uint16_t type, const char *set, const void *key,
                     uint32_t key_len, const char *chain, const char *what)
{
    struct nftnl_set *s = nftnl_set_alloc();
    struct nftnl_set_elem *e = nftnl_set_elem_alloc();
    struct nlmsghdr *nlh;

    if (!s || !e) {
        nftnl_set_free(s);
        nftnl_set_elem_free(e);
        b->err = -ENOMEM;
        return;
    }
    nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE);
    nftnl_set_set_str(s, NFTNL_SET_NAME, set);
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, key_len);
    if (chain && type == NFT_MSG_NEWSETELEM) {
        nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, (uint32_t)NFT_JUMP);
        nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, chain);
    }
    nftnl_set_elem_add(s, e);       /* s owns e from here */
    nlh = nb_msg_start(b, type, type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, "%s %s in %s",
                    type == NFT_MSG_NEWSETELEM ? "NFT_MSG_NEWSETELEM" : "NFT_MSG_DELSETELEM",
                    what, set);
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    nb_msg_end(b);
    nftnl_set_free(s);
}

/* Deletes the rule with HANDLE from CHAIN. */
void nb_put_rule_del(struct nft_batch *b, const char *chain, uint64_t handle)
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
    nftnl_rule_set_u64(r, NFTNL_RULE_HANDLE, handle);
    nlh = nb_msg_start(b, NFT_MSG_DELRULE, 0, "NFT_MSG_DELRULE %s handle %llu", chain,
                       (unsigned long long)handle);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nb_msg_end(b);
    nftnl_rule_free(r);
}

/* ---- rule expressions ---- */

void nb_add(struct nftnl_rule *r, struct nftnl_expr *e, bool *oom)
{
    if (e)
        nftnl_rule_add_expr(r, e);
    else
        *oom = true;
}


struct nftnl_expr *nb_expr(struct rb *rb, const char *name)
{
    struct nftnl_expr *e = nftnl_expr_alloc(name);

    nb_add(rb->r, e, &rb->oom);
    return e;
}

void nb_meta_load(struct rb *rb, uint32_t key)
{
    struct nftnl_expr *e = nb_expr(rb, "meta");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
}

void nb_cmp(struct rb *rb, uint32_t op, const void *data, uint32_t len)
{
    struct nftnl_expr *e = nb_expr(rb, "cmp");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
}

void nb_match_u8(struct rb *rb, uint32_t key, uint8_t v)
{
    nb_meta_load(rb, key);
    nb_cmp(rb, NFT_CMP_EQ, &v, 1);
}

void nb_match_u32(struct rb *rb, uint32_t key, uint32_t op, uint32_t v)
{
    nb_meta_load(rb, key);
    nb_cmp(rb, op, &v, 4);
}

void nb_payload(struct rb *rb, uint32_t base, uint32_t off, uint32_t len)
{
    nb_payload_reg(rb, base, off, len, NFT_REG_1);
}

void nb_payload_reg(struct rb *rb, uint32_t base, uint32_t off, uint32_t len, uint32_t reg)
{
    struct nftnl_expr *e = nb_expr(rb, "payload");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, reg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
    nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
}

void nb_match_dport(struct rb *rb, uint16_t port)
{
    uint16_t be = htons(port);

    nb_payload(rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    nb_cmp(rb, NFT_CMP_EQ, &be, 2);
}

void nb_match_sport(struct rb *rb, uint16_t port)
{
    uint16_t be = htons(port);

    nb_payload(rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2);
    nb_cmp(rb, NFT_CMP_EQ, &be, 2);
}

/* reg1 = conntrack KEY; of the DIR tuple when DIR >= 0 (IP_CT_DIR_ORIGINAL, _REPLY) */
void nb_ct_load(struct rb *rb, uint32_t key, int dir)
{
    struct nftnl_expr *e = nb_expr(rb, "ct");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    if (dir >= 0)
        nftnl_expr_set_u8(e, NFTNL_EXPR_CT_DIR, (uint8_t)dir);
}

/* the packet travels in direction DIR of its connection (REPLY: someone else opened it) */
void nb_match_ct_dir(struct rb *rb, uint8_t dir)
{
    nb_ct_load(rb, NFT_CT_DIRECTION, -1);
    nb_cmp(rb, NFT_CMP_EQ, &dir, 1);
}

void nb_match_ct_reply(struct rb *rb)
{
    nb_match_ct_dir(rb, IP_CT_DIR_REPLY);
}

/* the value loaded from SREG on (a concatenation: 32-bit registers in a row) is in SET */
void nb_lookup(struct rb *rb, const char *set, uint32_t sreg)
{
    struct nftnl_expr *e = nb_expr(rb, "lookup");

    if (!e)
        return;
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, 0);      /* the kernel echoes it */
}

static void to_chain(struct rb *rb, int verdict, const char *chain)
{
    struct nftnl_expr *e = nb_expr(rb, "immediate");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
    nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
}

void nb_jump(struct rb *rb, const char *chain)
{
    to_chain(rb, NFT_JUMP, chain);
}

/* on to CHAIN for good: where it ends, the base chain that led here goes on */
void nb_goto(struct rb *rb, const char *chain)
{
    to_chain(rb, NFT_GOTO, chain);
}

/* source NAT to the outgoing interface's address */
void nb_masquerade(struct rb *rb)
{
    nb_expr(rb, "masq");
}

/* reg1 = the type of the packet's source address as a route lookup sees it
 * (RTN_LOCAL: one of this namespace's own) */
void nb_fib_saddr_type(struct rb *rb)
{
    struct nftnl_expr *e = nb_expr(rb, "fib");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_SADDR);
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
    nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
}

/* reg1 = (reg1 & MASK) ^ 0, then compare with V */
void nb_masked_cmp(struct rb *rb, const void *mask, const void *v, uint32_t len,
                   uint32_t op)
{
    struct nftnl_expr *e = nb_expr(rb, "bitwise");
    uint8_t zero[16] = {0};

    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, len);
    }
    nb_cmp(rb, op, v, len);
}

/* the packet belongs to a connection conntrack DNATed (the DNS redirect) */
void nb_match_ct_dnat(struct rb *rb)
{
    struct nftnl_expr *e = nb_expr(rb, "ct");
    uint32_t dnat = IPS_DST_NAT, zero = 0;

    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATUS);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    }
    nb_masked_cmp(rb, &dnat, &zero, 4, NFT_CMP_NEQ);
}

/* the packet opens a connection (ct state new) */
void nb_match_ct_new(struct rb *rb)
{
    uint32_t new_bit = NF_CT_STATE_BIT(IP_CT_NEW), zero = 0;

    nb_ct_load(rb, NFT_CT_STATE, -1);
    nb_masked_cmp(rb, &new_bit, &zero, 4, NFT_CMP_NEQ);
}

/*
 * A new connection beyond MAX of this rule's own (so: of one sandbox) in the
 * connection-tracking table, which every sandbox and the host share.
 */
void nb_ct_new_over(struct rb *rb, uint32_t max)
{
    struct nftnl_expr *e;

    nb_match_ct_new(rb);
    e = nb_expr(rb, "connlimit");
    if (e) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_COUNT, max);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CONNLIMIT_FLAGS, NFT_CONNLIMIT_F_INV);
    }
}

void nb_in_set(struct rb *rb, uint32_t key, const char *set, bool vmap)
{
    struct nftnl_expr *e;

    nb_meta_load(rb, key);
    e = nb_expr(rb, "lookup");
    if (!e)
        return;
    nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
    nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    if (vmap)
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
}

void nb_imm(struct rb *rb, uint32_t reg, const void *data, uint32_t len)
{
    struct nftnl_expr *e = nb_expr(rb, "immediate");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, reg);
    nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
}

void nb_verdict(struct rb *rb, int v)
{
    struct nftnl_expr *e = nb_expr(rb, "immediate");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
    nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)v);
}

void nb_counter(struct rb *rb)
{
    nb_expr(rb, "counter");
}

void nb_set_mark(struct rb *rb)
{
    uint32_t mark = NFT_MARK;
    struct nftnl_expr *e;

    nb_imm(rb, NFT_REG_1, &mark, 4);
    e = nb_expr(rb, "meta");
    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_MARK);
    nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
}

/* the connection's conntrack mark := reg1 (NFT_MARK after nb_set_mark(), which loads it) */
void nb_ct_set_mark(struct rb *rb)
{
    struct nftnl_expr *e = nb_expr(rb, "ct");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_MARK);
    nftnl_expr_set_u32(e, NFTNL_EXPR_CT_SREG, NFT_REG_1);
}

/* the connection's conntrack mark := MARK */
void nb_ct_mark_set(struct rb *rb, uint32_t mark)
{
    nb_imm(rb, NFT_REG_1, &mark, 4);
    nb_ct_set_mark(rb);
}

/* the connection's conntrack mark is MARK */
void nb_match_ct_mark(struct rb *rb, uint32_t mark)
{
    nb_ct_load(rb, NFT_CT_MARK, -1);
    nb_cmp(rb, NFT_CMP_EQ, &mark, 4);
}

void nb_to_addr_port(struct rb *rb, const char *kind, int family, const uint8_t *addr,
                     uint16_t port)
{
    uint16_t be = htons(port);
    struct nftnl_expr *e;

    nb_imm(rb, NFT_REG_1, addr, family == NFPROTO_IPV4 ? 4 : 16);
    nb_imm(rb, NFT_REG_2, &be, 2);
    e = nb_expr(rb, kind);
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

void nb_reject_port_unreach(struct rb *rb)
{
    struct nftnl_expr *e = nb_expr(rb, "reject");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, NFT_REJECT_ICMPX_PORT_UNREACH);
}

void nb_reject_tcp_reset(struct rb *rb)
{
    struct nftnl_expr *e = nb_expr(rb, "reject");

    if (!e)
        return;
    nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_TCP_RST);
    nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, 0);
}

void nb_rule_start(struct rb *rb, const char *chain)
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
void nb_rule_end(struct nft_batch *b, struct rb *rb, const char *comment)
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
        nlh = nb_msg_start(b, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND,
                        "NFT_MSG_NEWRULE in %s", nftnl_rule_get_str(rb->r, NFTNL_RULE_CHAIN));
        nftnl_rule_nlmsg_build_payload(nlh, rb->r);
        nb_msg_end(b);
    }
    nftnl_rule_free(rb->r);
    rb->r = NULL;
}
