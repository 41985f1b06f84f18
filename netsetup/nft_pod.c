/*
 * Pod mode: the workload's TCP marked and rerouted to the proxy on lo, its
 * DNS to the proxy's port, and what may leave the pod at all.
 */
#include "nft_int.h"

/* ---- pod mode ---- */

/* "not loopback": the destination is outside 127.0.0.0/8 and not ::1 */
static void match_loopback(struct rb *rb, uint8_t family)
{
    static const uint8_t net8[4] = {127, 0, 0, 0}, mask8[4] = {255, 0, 0, 0};
    static const uint8_t lo6[16] = {[15] = 1};

    nb_match_u8(rb, NFT_META_NFPROTO, family);
    if (family == NFPROTO_IPV4) {
        nb_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, 16, 4);
        nb_masked_cmp(rb, mask8, net8, 4, NFT_CMP_EQ);
    } else {
        nb_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, 24, 16);
        nb_cmp(rb, NFT_CMP_EQ, lo6, 16);
    }
}

int nft_build_pod(struct nft_batch *b, const struct nft_pod *p)
{
    static const uint8_t lo4[4] = {127, 0, 0, 1}, lo6[16] = {[15] = 1};
    static const char loname[IFNAMSIZ] = "lo";
    static const uint8_t fams[] = {NFPROTO_IPV4, NFPROTO_IPV6};
    static const uint8_t l4[] = {IPPROTO_TCP, IPPROTO_UDP};
    const uint16_t own[] = {p->proxy_port, p->dns_port, p->metrics_port};
    struct rb rb;
    size_t f, i, j;

    nb_put_table(b, NFT_MSG_NEWTABLE, NLM_F_CREATE);
    nb_put_chain(b, NFT_MSG_NEWCHAIN, "pod_mark", NF_INET_LOCAL_OUT, -150, "route");
    nb_put_chain(b, NFT_MSG_NEWCHAIN, "pod_tproxy", NF_INET_PRE_ROUTING, -150, "filter");
    nb_put_chain(b, NFT_MSG_NEWCHAIN, "pod_dns", NF_INET_LOCAL_OUT, -100, "nat");
    nb_put_chain(b, NFT_MSG_NEWCHAIN, "pod_out", NF_INET_LOCAL_OUT, 0, "filter");
    nb_put_flush(b, "pod_mark");
    nb_put_flush(b, "pod_tproxy");
    nb_put_flush(b, "pod_dns");
    nb_put_flush(b, "pod_out");

    /* pod_mark: the workload's TCP to anything but loopback is marked and so
     * rerouted to lo, where pod_tproxy hands it to the proxy. */
    /* Replies are not the workload's: the proxy's SYN-ACK leaves from a request
     * socket, which has no UID to match, and must go back unmarked. */
    nb_rule_start(&rb, "pod_mark");
    nb_match_ct_reply(&rb);
    nb_verdict(&rb, NFT_RETURN);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, "pod_mark");
    nb_match_u32(&rb, NFT_META_SKUID, NFT_CMP_EQ, p->proxy_uid);
    nb_verdict(&rb, NFT_RETURN);
    nb_rule_end(b, &rb, NULL);
    for (f = 0; f < 2; f++) {
        nb_rule_start(&rb, "pod_mark");
        match_loopback(&rb, fams[f]);
        nb_verdict(&rb, NFT_RETURN);
        nb_rule_end(b, &rb, NULL);
    }
    for (i = 0; i < 2; i++) {           /* DNS is pod_dns's: leave it unmarked */
        nb_rule_start(&rb, "pod_mark");
        nb_match_u8(&rb, NFT_META_L4PROTO, l4[i]);
        nb_match_dport(&rb, 53);
        nb_verdict(&rb, NFT_RETURN);
        nb_rule_end(b, &rb, NULL);
    }
    nb_rule_start(&rb, "pod_mark");
    nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
    nb_counter(&rb);
    nb_set_mark(&rb);
    nb_ct_set_mark(&rb);                /* the connection is the workload's, for pod_out */
    nb_rule_end(b, &rb, C_PROXY);

    for (f = 0; f < 2; f++) {
        nb_rule_start(&rb, "pod_tproxy");
        nb_match_u8(&rb, NFT_META_NFPROTO, fams[f]);
        nb_match_u32(&rb, NFT_META_MARK, NFT_CMP_EQ, NFT_MARK);
        nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
        nb_to_addr_port(&rb, "tproxy", fams[f], fams[f] == NFPROTO_IPV4 ? lo4 : lo6,
                     p->proxy_port);
        nb_verdict(&rb, NF_ACCEPT);
        nb_rule_end(b, &rb, NULL);
        nb_rule_start(&rb, "pod_tproxy");    /* no proxy listening: refuse at once */
        nb_match_u8(&rb, NFT_META_NFPROTO, fams[f]);
        nb_match_u32(&rb, NFT_META_MARK, NFT_CMP_EQ, NFT_MARK);
        nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
        nb_counter(&rb);
        nb_reject_tcp_reset(&rb);
        nb_rule_end(b, &rb, C_REJECT);

        for (i = 0; i < 2; i++) {       /* the workload's DNS, to any address */
            nb_rule_start(&rb, "pod_dns");
            nb_match_u8(&rb, NFT_META_NFPROTO, fams[f]);
            nb_match_u32(&rb, NFT_META_SKUID, NFT_CMP_NEQ, p->proxy_uid);
            nb_match_u8(&rb, NFT_META_L4PROTO, l4[i]);
            nb_match_dport(&rb, 53);
            nb_counter(&rb);
            nb_to_addr_port(&rb, "nat", fams[f], fams[f] == NFPROTO_IPV4 ? lo4 : lo6,
                         p->dns_port);
            nb_rule_end(b, &rb, C_DNS);
        }
    }


    /* pod_out: what may leave a workload socket at all. First, IPv6 neighbour
     * discovery as real ND looks: hop limit 255, to a link-local or link-scope
     * multicast address, which no router forwards. The kernel's own unicast
     * probe of a neighbour it knows (which may have a global address) leaves
     * from no socket and is let out too; ND from a socket with a UID (a raw
     * socket, which could carry a payload to any address) is dropped first. */
    for (i = 0; i < 3; i++) {
        static const uint8_t nd[] = {133, 135, 136}, hops = 255;
        static const uint8_t scope_mask[2][16] = {{0xff, 0xc0}, {0xff, 0xff}};
        /* fe80::/10, ff02::/16 */
        static const uint8_t scope[2][16] = {{0xfe, 0x80}, {0xff, 0x02}};
        uint32_t zero = 0;

        for (j = 0; j < 4; j++) {
            nb_rule_start(&rb, "pod_out");
            nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_ICMPV6);
            nb_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
            nb_cmp(&rb, NFT_CMP_EQ, &nd[i], 1);
            nb_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 7, 1);
            nb_cmp(&rb, NFT_CMP_EQ, &hops, 1);
            if (j < 2) {
                nb_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, 24, 16);
                nb_masked_cmp(&rb, scope_mask[j], scope[j], 16, NFT_CMP_EQ);
            } else if (j == 2) {        /* a UID loads only for a packet from a socket */
                nb_meta_load(&rb, NFT_META_SKUID);
                nb_cmp(&rb, NFT_CMP_GTE, &zero, 4);
                nb_counter(&rb);
                nb_verdict(&rb, NF_DROP);
                nb_rule_end(b, &rb, C_DROP);
                continue;
            }
            nb_verdict(&rb, NF_ACCEPT);
            nb_rule_end(b, &rb, NULL);
        }
    }
    /* A packet leaving the pod must carry one of the pod's own addresses as
     * its source (as a veth sandbox's must): a spoofed one would have the
     * proxy, or conntrack's idea of a reply, answer another host. On lo,
     * sources are not the pod's own: the proxy's transparent sockets answer the
     * workload from the address it dialled. */
    nb_rule_start(&rb, "pod_out");
    nb_meta_load(&rb, NFT_META_OIFNAME);
    nb_cmp(&rb, NFT_CMP_NEQ, loname, IFNAMSIZ);
    nb_fib_saddr_type(&rb);
    {
        uint32_t local = RTN_LOCAL;

        nb_cmp(&rb, NFT_CMP_NEQ, &local, 4);
    }
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);
    /* A connection the workload opened was handed to the proxy on lo: its
     * replies go back on lo, never out by another interface. A raw SYN to the
     * pod's own address, with an outside host as its source, would otherwise
     * have the proxy's SYN-ACK (from the proxy's UID) go there. (Only replies:
     * the hook's output interface is the one before pod_mark rerouted.) */
    nb_rule_start(&rb, "pod_out");
    nb_match_ct_reply(&rb);
    nb_meta_load(&rb, NFT_META_OIFNAME);
    nb_cmp(&rb, NFT_CMP_NEQ, loname, IFNAMSIZ);
    nb_match_ct_mark(&rb, NFT_MARK);
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);
    nb_rule_start(&rb, "pod_out");
    nb_match_u32(&rb, NFT_META_SKUID, NFT_CMP_EQ, p->proxy_uid);
    nb_verdict(&rb, NF_ACCEPT);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, "pod_out");           /* the workload's share of conntrack */
    nb_ct_new_over(&rb, p->max_conntrack);
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);
    nb_rule_start(&rb, "pod_out");
    nb_match_u32(&rb, NFT_META_MARK, NFT_CMP_EQ, NFT_MARK);
    nb_verdict(&rb, NF_ACCEPT);
    nb_rule_end(b, &rb, NULL);
    nb_rule_start(&rb, "pod_out");
    nb_match_ct_dnat(&rb);
    nb_verdict(&rb, NF_ACCEPT);
    nb_rule_end(b, &rb, NULL);
    /* The metrics port answers connections from outside the pod (the kubelet's
     * probes, a Prometheus scrape): its SYN-ACK leaves from a request socket,
     * which has no UID for the proxy-UID rule to match. Only replies, only that
     * port, and never from another UID's socket: a workload listening there
     * itself (or writing raw packets) would have a channel both ways. A packet
     * without a full socket has no UID, so the skuid rule does not match it. */
    if (p->metrics_port) {
        nb_rule_start(&rb, "pod_out");
        nb_match_ct_reply(&rb);
        nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
        nb_match_sport(&rb, p->metrics_port);
        nb_match_u32(&rb, NFT_META_SKUID, NFT_CMP_NEQ, p->proxy_uid);
        nb_counter(&rb);
        nb_verdict(&rb, NF_DROP);
        nb_rule_end(b, &rb, C_DROP);
        nb_rule_start(&rb, "pod_out");
        nb_match_ct_reply(&rb);
        nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_TCP);
        nb_match_sport(&rb, p->metrics_port);
        nb_verdict(&rb, NF_ACCEPT);
        nb_rule_end(b, &rb, NULL);
    }
    for (f = 0; f < 2; f++) {
        for (i = 0; i < 2; i++) {
            for (j = 0; j < sizeof(own) / sizeof(own[0]); j++) {
                if (own[j] == 0)
                    continue;
                nb_rule_start(&rb, "pod_out");   /* the proxy's own ports: its UID only */
                match_loopback(&rb, fams[f]);
                nb_match_u8(&rb, NFT_META_L4PROTO, l4[i]);
                nb_match_dport(&rb, own[j]);
                nb_counter(&rb);
                nb_reject_port_unreach(&rb);
                nb_rule_end(b, &rb, C_REJECT);
            }
        }
    }
    /* The rest of what stays on this host (loopback, the pod's own address, the
     * ICMP errors pod_tproxy sends back) is local, not egress. */
    nb_rule_start(&rb, "pod_out");
    nb_meta_load(&rb, NFT_META_OIFNAME);
    nb_cmp(&rb, NFT_CMP_EQ, loname, IFNAMSIZ);
    nb_verdict(&rb, NF_ACCEPT);
    nb_rule_end(b, &rb, NULL);
    /* QUIC: refused, so clients fall back to TCP at once. In OUTPUT that means
     * send() fails with EPERM, and the port-unreachable (local, so accepted
     * above) makes the next receive fail with ECONNREFUSED. */
    nb_rule_start(&rb, "pod_out");
    nb_match_u8(&rb, NFT_META_L4PROTO, IPPROTO_UDP);
    nb_match_dport(&rb, 443);
    nb_counter(&rb);
    nb_reject_port_unreach(&rb);
    nb_rule_end(b, &rb, C_REJECT);
    nb_rule_start(&rb, "pod_out");
    nb_counter(&rb);
    nb_verdict(&rb, NF_DROP);
    nb_rule_end(b, &rb, C_DROP);
    return b->err;
}
