/*
 * Router mode: the base chains and verdict maps of table inet sluice, and one
 * sandbox's chains (its source check, conntrack share, DNS, TPROXY, QUIC).
 */
#include "nft_int.h"

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
    {"postrouting", NF_INET_POST_ROUTING, 0, "filter"},
    {"dstnat_local", NF_INET_LOCAL_OUT, -100, "nat"},
    {"srcnat", NF_INET_POST_ROUTING, 100, "nat"},
};

int nft_build_base(struct nft_batch *b)
{
    struct rb rb;
    size_t i;

    nb_put_table(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
    nb_put_set(b, SET_PRE, true, 1);
    nb_put_set(b, SET_NAT, true, 2);
    nb_put_set(b, SET_IFS, false, 3);
    nb_put_set(b, SET_POST, true, 4);
    nb_put_set_key(b, SET_LINKS, (((uint32_t)TYPE_IPADDR << TYPE_BITS | TYPE_IPADDR)
                                  << TYPE_BITS) | TYPE_INET_SERVICE,
                   NFT_LINK_KEY_LEN, false, false, 5);
    nb_put_chain(b, NFT_MSG_NEWCHAIN, CHAIN_FORWARDS, -1, 0, NULL);    /* kept: the rules */
    for (i = 0; i < sizeof(base_chains) / sizeof(base_chains[0]); i++) {
        nb_put_chain(b, NFT_MSG_NEWCHAIN, base_chains[i].name, base_chains[i].hook,
                  base_chains[i].prio, base_chains[i].type);
        nb_put_flush(b, base_chains[i].name);
    }

    nb_rule_start(&rb, "prerouting");            /* iifname vmap @sandbox_pre */
    nb_in_set(&rb, NFT_META_IIFNAME, SET_PRE, true);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, "dstnat");                /* iifname vmap @sandbox_nat */
    nb_in_set(&rb, NFT_META_IIFNAME, SET_NAT, true);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, "dstnat");                /* the rest: forwards, never a sandbox's */
    nb_meta_load(&rb, NFT_META_IIFNAME);
    {
        struct nftnl_expr *e = nb_expr(&rb, "lookup");

        if (e) {
            nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, SET_IFS);
            nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
            nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
        }
    }
    nb_jump(&rb, CHAIN_FORWARDS);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, "dstnat_local");          /* this namespace's own connections */
    nb_jump(&rb, CHAIN_FORWARDS);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, "srcnat");                /* forwarded: from the gateway */
    nb_in_set(&rb, NFT_META_OIFNAME, SET_IFS, false);
    nb_match_ct_mark(&rb, NFT_CT_FWD);
    nb_masquerade(&rb);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, "postrouting");           /* oifname vmap @sandbox_post */
    nb_in_set(&rb, NFT_META_OIFNAME, SET_POST, true);
    nb_rule_end(b, &rb, NULL);

    nb_rule_start(&rb, "input");                 /* TPROXY-delivered TCP */
    nb_in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
    nb_match_u32(&rb, NFT_META_MARK, NFT_CMP_EQ, NFT_MARK);
    nb_verdict(&rb, NF_ACCEPT);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, "input");                 /* DNS, DNATed to the proxy */
    nb_in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
    nb_match_ct_dnat(&rb);
    nb_verdict(&rb, NF_ACCEPT);
    nb_rule_end(b, &rb, NULL);
    for (i = 0; i < 2; i++) {               /* IPv6 neighbour discovery with the gateway */
        uint8_t type = i == 0 ? 135 : 136;

        nb_rule_start(&rb, "input");
        nb_in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
        nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_ICMPV6);
        nb_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
        nb_cmp(&rb, NFT_CMP_EQ, &type, 1);
        nb_verdict(&rb, NF_ACCEPT);
        nb_rule_end(b, &rb, NULL);
    }
    nb_rule_start(&rb, "input");                 /* anything else for the host: never */
    nb_in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);

    for (i = 0; i < 2; i++) {               /* but what a forward or a link opened */
        nb_rule_start(&rb, "forward");
        nb_match_ct_mark(&rb, i == 0 ? NFT_CT_FWD : NFT_CT_LINK);
        nb_verdict(&rb, NF_ACCEPT);
        nb_rule_end(b, &rb, NULL);
    }
    nb_rule_start(&rb, "forward");               /* nothing else from a sandbox is forwarded */
    nb_in_set(&rb, NFT_META_IIFNAME, SET_IFS, false);
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);
    nb_rule_start(&rb, "forward");               /* and nothing reaches one by forwarding */
    nb_in_set(&rb, NFT_META_OIFNAME, SET_IFS, false);
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);
    return b->err;
}

void nft_chain_names(const char *name, struct nft_chains *c)
{
    snprintf(c->pre, sizeof(c->pre), "pre-%s", name);
    snprintf(c->nat, sizeof(c->nat), "nat-%s", name);
    snprintf(c->post, sizeof(c->post), "post-%s", name);
    snprintf(c->fwd, sizeof(c->fwd), "fwd-%s", name);
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
        nb_rule_start(&rb, pre);
        nb_match_u8(&rb, NFT_META_NFPROTO, family);
        nb_match_u8(&rb, NFT_META_L4PROTO, l4[i]);
        nb_match_dport(&rb, 53);
        nb_verdict(&rb, NF_ACCEPT);
        nb_rule_end(b, &rb, NULL);

        nb_rule_start(&rb, nat);                 /* ... which sends it to the proxy */
        nb_match_u8(&rb, NFT_META_NFPROTO, family);
        nb_match_u8(&rb, NFT_META_L4PROTO, l4[i]);
        nb_match_dport(&rb, 53);
        nb_counter(&rb);
        nb_to_addr_port(&rb, "nat", family, gw, s->dns_port);
        nb_rule_end(b, &rb, C_DNS);
    }
    nb_rule_start(&rb, pre);                     /* every other TCP flow: TPROXY */
    nb_match_u8(&rb, NFT_META_NFPROTO, family);
    nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
    nb_counter(&rb);
    nb_to_addr_port(&rb, "tproxy", family, gw, s->proxy_port);
    nb_set_mark(&rb);
    nb_verdict(&rb, NF_ACCEPT);
    nb_rule_end(b, &rb, C_PROXY);
    /* tproxy finds no socket when the proxy is down: refuse at once, never route */
    nb_rule_start(&rb, pre);
    nb_match_u8(&rb, NFT_META_NFPROTO, family);
    nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
    nb_counter(&rb);
    nb_reject_tcp_reset(&rb);
    nb_rule_end(b, &rb, C_REJECT);
    if (family == NFPROTO_IPV6) {
        for (i = 0; i < 2; i++) {           /* neighbour discovery, nothing else of ICMPv6 */
            uint8_t type = i == 0 ? 135 : 136;

            nb_rule_start(&rb, pre);
            nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_ICMPV6);
            nb_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
            nb_cmp(&rb, NFT_CMP_EQ, &type, 1);
            nb_verdict(&rb, NF_ACCEPT);
            nb_rule_end(b, &rb, NULL);
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

    nb_rule_start(&rb, pre);                     /* bytes and packets out: all of them */
    nb_counter(&rb);
    nb_rule_end(b, &rb, C_OUT);
    nb_rule_start(&rb, pre);
    nb_match_u8(&rb, NFT_META_NFPROTO, NFPROTO_IPV4);
    nb_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 12, 4);
    nb_cmp(&rb, NFT_CMP_NEQ, s->addr4, 4);
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);
    nb_rule_start(&rb, pre);                     /* a sandbox without IPv6: none at all */
    nb_match_u8(&rb, NFT_META_NFPROTO, NFPROTO_IPV6);
    if (s->v6) {
        nb_meta_load(&rb, NFT_META_L4PROTO);
        nb_cmp(&rb, NFT_CMP_NEQ, (const uint8_t[]){IPPROTO_ICMPV6}, 1);
        nb_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 8, 16);
        nb_cmp(&rb, NFT_CMP_NEQ, s->addr6, 16);
    }
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);
    nb_rule_start(&rb, pre);                     /* its share of the shared conntrack table */
    nb_ct_new_over(&rb, s->max_conntrack);
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);
}

/*
 * After the source checks, three rules every packet from the sandbox passes,
 * each a conntrack load and a compare before it matches anything: replies of
 * connections a forward opened to the sandbox go back unproxied, counted per
 * forward (goto: fwd-NAME's end is the base chain's accept); a connection a
 * link opened passes both ways (the mark is set only by the rule after it);
 * and a new connection of the sandbox's to a linked peer's port is marked and
 * routed: one set lookup, for a connection's first packet only. A connection
 * the sandbox opens is never a forward's reply, so nothing here lets it open
 * one elsewhere.
 */
static void sandbox_peer_rules(struct nft_batch *b, const struct nft_chains *c)
{
    struct rb rb;

    nb_rule_start(&rb, c->pre);
    nb_match_ct_reply(&rb);
    nb_match_ct_mark(&rb, NFT_CT_FWD);
    nb_goto(&rb, c->fwd);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, c->pre);
    nb_match_ct_mark(&rb, NFT_CT_LINK);
    nb_verdict(&rb, NF_ACCEPT);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, c->pre);                  /* ip saddr . ip daddr . tcp dport @links */
    nb_match_ct_new(&rb);
    nb_match_u8(&rb, NFT_META_NFPROTO, NFPROTO_IPV4);
    nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
    /* reg 1 is the 32-bit register 8 (NFT_REG32_00): what the kernel dumps back */
    nb_payload_reg(&rb, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFT_REG_1);
    nb_payload_reg(&rb, NFT_PAYLOAD_NETWORK_HEADER, 16, 4, NFT_REG32_01);
    nb_payload_reg(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG32_02);
    nb_lookup(&rb, SET_LINKS, NFT_REG_1);
    nb_ct_mark_set(&rb, NFT_CT_LINK);
    nb_verdict(&rb, NF_ACCEPT);
    nb_rule_end(b, &rb, NULL);
}

int nft_build_sandbox_add(struct nft_batch *b, const struct nft_sandbox *s)
{
    struct nft_chains c;
    const char *pre, *nat;
    struct rb rb;

    nft_chain_names(s->name, &c);
    pre = c.pre;
    nat = c.nat;
    nb_put_chain(b, NFT_MSG_NEWCHAIN, c.fwd, -1, 0, NULL);     /* jumped to: first */
    nb_put_chain(b, NFT_MSG_NEWCHAIN, pre, -1, 0, NULL);
    nb_put_chain(b, NFT_MSG_NEWCHAIN, nat, -1, 0, NULL);
    nb_put_chain(b, NFT_MSG_NEWCHAIN, c.post, -1, 0, NULL);
    nb_put_flush(b, pre);
    nb_put_flush(b, nat);
    nb_put_flush(b, c.post);
    nb_put_flush(b, c.fwd);

    sandbox_source_rules(b, s, pre);
    sandbox_peer_rules(b, &c);
    sandbox_family_rules(b, s, pre, nat, NFPROTO_IPV4);
    if (s->v6)
        sandbox_family_rules(b, s, pre, nat, NFPROTO_IPV6);

    nb_rule_start(&rb, pre);                     /* QUIC: refuse, so clients fall back to TCP */
    nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_UDP);
    nb_match_dport(&rb, 443);
    nb_counter(&rb);
    nb_reject_port_unreach(&rb);
    nb_rule_end(b, &rb, C_REJECT);
    nb_rule_start(&rb, pre);                     /* everything else */
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);

    nb_rule_start(&rb, c.post);                  /* bytes and packets in */
    nb_counter(&rb);
    nb_rule_end(b, &rb, C_IN);
    nb_rule_start(&rb, c.post);
    nb_match_ct_mark(&rb, NFT_CT_FWD);
    nb_jump(&rb, c.fwd);
    nb_rule_end(b, &rb, NULL);

    nb_put_elem(b, NFT_MSG_NEWSETELEM, SET_IFS, s->ifname, NULL);
    nb_put_elem(b, NFT_MSG_NEWSETELEM, SET_PRE, s->ifname, pre);
    nb_put_elem(b, NFT_MSG_NEWSETELEM, SET_NAT, s->ifname, nat);
    nb_put_elem(b, NFT_MSG_NEWSETELEM, SET_POST, s->ifname, c.post);
    return b->err;
}

int nft_build_sandbox_del(struct nft_batch *b, const struct nft_sandbox *s, bool elems,
                          bool chains)
{
    struct nft_chains c;

    nft_chain_names(s->name, &c);
    if (elems) {
        nb_put_elem(b, NFT_MSG_DELSETELEM, SET_PRE, s->ifname, NULL);
        nb_put_elem(b, NFT_MSG_DELSETELEM, SET_NAT, s->ifname, NULL);
        nb_put_elem(b, NFT_MSG_DELSETELEM, SET_POST, s->ifname, NULL);
        nb_put_elem(b, NFT_MSG_DELSETELEM, SET_IFS, s->ifname, NULL);
    }
    if (chains) {
        nb_put_flush(b, c.pre);
        nb_put_flush(b, c.nat);
        nb_put_flush(b, c.post);
        nb_put_flush(b, c.fwd);
        nb_put_chain(b, NFT_MSG_DELCHAIN, c.pre, -1, 0, NULL);
        nb_put_chain(b, NFT_MSG_DELCHAIN, c.nat, -1, 0, NULL);
        nb_put_chain(b, NFT_MSG_DELCHAIN, c.post, -1, 0, NULL);
        nb_put_chain(b, NFT_MSG_DELCHAIN, c.fwd, -1, 0, NULL);
    }
    return b->err;
}

/* ip daddr ADDR PROTO dport PORT [ip saddr FROM] counter ct mark set FWD dnat to ... */
int nft_build_forward_add(struct nft_batch *b, const struct nft_forward *f)
{
    char comment[96], dir[96];
    struct nft_chains c;
    struct rb rb;
    size_t i, n = f->n_from ? f->n_from : 1;

    snprintf(comment, sizeof(comment), "%s %s", f->name, f->key);
    for (i = 0; i < n; i++) {
        nb_rule_start(&rb, CHAIN_FORWARDS);
        nb_match_u8(&rb, NFT_META_NFPROTO, NFPROTO_IPV4);
        nb_match_u8(&rb, NFT_META_L4PROTO, f->proto);
        nb_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
        nb_cmp(&rb, NFT_CMP_EQ, f->addr, 4);
        nb_match_dport(&rb, f->port);
        if (f->n_from) {
            uint8_t mask[4] = {0};
            unsigned len = f->from_len[i];

            for (unsigned bit = 0; bit < len; bit++)
                mask[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
            nb_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 12, 4);
            nb_masked_cmp(&rb, mask, f->from_addr[i], 4, NFT_CMP_EQ);
        }
        nb_counter(&rb);
        nb_ct_mark_set(&rb, NFT_CT_FWD);
        nb_to_addr_port(&rb, "nat", NFPROTO_IPV4, f->to_addr, f->to_port);
        nb_rule_end(b, &rb, comment);
    }
    nft_chain_names(f->name, &c);
    for (i = 0; i < 2; i++) {               /* in: to the sandbox; out: its replies */
        nb_rule_start(&rb, c.fwd);
        nb_match_ct_dir(&rb, i == 0 ? IP_CT_DIR_ORIGINAL : IP_CT_DIR_REPLY);
        nb_ct_load(&rb, NFT_CT_PROTOCOL, -1);       /* the same both ways */
        nb_cmp(&rb, NFT_CMP_EQ, &f->proto, 1);
        nb_ct_load(&rb, NFT_CT_DST_IP, IP_CT_DIR_ORIGINAL);
        nb_cmp(&rb, NFT_CMP_EQ, f->addr, 4);
        nb_ct_load(&rb, NFT_CT_PROTO_DST, IP_CT_DIR_ORIGINAL);
        nb_cmp(&rb, NFT_CMP_EQ, &(uint16_t){htons(f->port)}, 2);
        nb_counter(&rb);
        snprintf(dir, sizeof(dir), "%s %s", i == 0 ? C_IN : C_OUT, f->key);
        nb_rule_end(b, &rb, dir);
    }
    return b->err;
}

int nft_build_rule_del(struct nft_batch *b, const char *chain, uint64_t handle)
{
    nb_put_rule_del(b, chain, handle);
    return b->err;
}

int nft_build_link(struct nft_batch *b, bool add, const uint8_t src[4], const uint8_t dst[4],
                   uint16_t port)
{
    uint8_t key[NFT_LINK_KEY_LEN] = {0};
    uint16_t be = htons(port);
    char what[64], s4[INET_ADDRSTRLEN], d4[INET_ADDRSTRLEN];

    memcpy(key, src, 4);
    memcpy(key + 4, dst, 4);
    memcpy(key + 8, &be, 2);
    inet_ntop(AF_INET, src, s4, sizeof(s4));
    inet_ntop(AF_INET, dst, d4, sizeof(d4));
    snprintf(what, sizeof(what), "%s . %s . %u", s4, d4, port);
    nb_put_elem_key(b, add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, SET_LINKS, key,
                    sizeof(key), NULL, what);
    return b->err;
}

int nft_build_table_del(struct nft_batch *b)
{
    nb_put_table(b, NFT_MSG_DELTABLE, 0);
    return b->err;
}
