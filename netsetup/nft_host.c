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
};

int nft_build_base(struct nft_batch *b)
{
    struct rb rb;
    size_t i;

    nb_put_table(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
    nb_put_set(b, SET_PRE, true, 1);
    nb_put_set(b, SET_NAT, true, 2);
    nb_put_set(b, SET_IFS, false, 3);
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

    nb_rule_start(&rb, "forward");               /* nothing from a sandbox is forwarded */
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

int nft_build_sandbox_add(struct nft_batch *b, const struct nft_sandbox *s)
{
    char pre[64], nat[64];
    struct rb rb;

    nft_chain_names(s->name, pre, nat);
    nb_put_chain(b, NFT_MSG_NEWCHAIN, pre, -1, 0, NULL);
    nb_put_chain(b, NFT_MSG_NEWCHAIN, nat, -1, 0, NULL);
    nb_put_flush(b, pre);
    nb_put_flush(b, nat);

    sandbox_source_rules(b, s, pre);
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

    nb_put_elem(b, NFT_MSG_NEWSETELEM, SET_IFS, s->ifname, NULL);
    nb_put_elem(b, NFT_MSG_NEWSETELEM, SET_PRE, s->ifname, pre);
    nb_put_elem(b, NFT_MSG_NEWSETELEM, SET_NAT, s->ifname, nat);
    return b->err;
}

int nft_build_sandbox_del(struct nft_batch *b, const struct nft_sandbox *s, bool elems,
                          bool chains)
{
    char pre[64], nat[64];

    nft_chain_names(s->name, pre, nat);
    if (elems) {
        nb_put_elem(b, NFT_MSG_DELSETELEM, SET_PRE, s->ifname, NULL);
        nb_put_elem(b, NFT_MSG_DELSETELEM, SET_NAT, s->ifname, NULL);
        nb_put_elem(b, NFT_MSG_DELSETELEM, SET_IFS, s->ifname, NULL);
    }
    if (chains) {
        nb_put_flush(b, pre);
        nb_put_flush(b, nat);
        nb_put_chain(b, NFT_MSG_DELCHAIN, pre, -1, 0, NULL);
        nb_put_chain(b, NFT_MSG_DELCHAIN, nat, -1, 0, NULL);
    }
    return b->err;
}

int nft_build_table_del(struct nft_batch *b)
{
    nb_put_table(b, NFT_MSG_DELTABLE, 0);
    return b->err;
}
