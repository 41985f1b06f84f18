/*
 * The nft batch builder, without a kernel: build the batch, walk its netlink
 * messages, parse each back with libnftnl and check what it says.
 */
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "nft_rules.h"

struct parsed {
    size_t n_msgs, n_rules, n_chains, n_sets, n_elems, n_deltable, n_delchain, n_flush;
    bool begin, end;
    char text[32768];           /* every rule as libnftnl prints it, one per line */
};

static void parse(struct nft_batch *b, struct parsed *p)
{
    size_t size, off = 0;
    const struct nlmsghdr *nlh;
    const void *data = nft_batch_data(b, &size);
    int left = (int)size;

    memset(p, 0, sizeof(*p));
    for (nlh = data; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
        uint16_t type = nlh->nlmsg_type;

        p->n_msgs++;
        if (type == NFNL_MSG_BATCH_BEGIN) {
            p->begin = p->n_msgs == 1;
            continue;
        }
        if (type == NFNL_MSG_BATCH_END) {
            p->end = true;
            continue;
        }
        assert_int_equal(type >> 8, NFNL_SUBSYS_NFTABLES);
        assert_true(nlh->nlmsg_flags & NLM_F_ACK);          /* every message is ACKed */
        switch (type & 0xff) {
        case NFT_MSG_NEWRULE: {
            struct nftnl_rule *r = nftnl_rule_alloc();
            int n;

            assert_int_equal(nftnl_rule_nlmsg_parse(nlh, r), 0);
            n = snprintf(p->text + off, sizeof(p->text) - off, "%s: ",
                         nftnl_rule_get_str(r, NFTNL_RULE_CHAIN));
            off += (size_t)n;
            n = nftnl_rule_snprintf(p->text + off, sizeof(p->text) - off, r,
                                    NFTNL_OUTPUT_DEFAULT, 0);
            off += (size_t)n;
            p->text[off++] = '\n';
            p->text[off] = '\0';
            assert_true(off < sizeof(p->text) - 512);
            nftnl_rule_free(r);
            p->n_rules++;
            break;
        }
        case NFT_MSG_DELRULE:
            p->n_flush++;
            break;
        case NFT_MSG_NEWCHAIN: {
            struct nftnl_chain *c = nftnl_chain_alloc();

            assert_int_equal(nftnl_chain_nlmsg_parse(nlh, c), 0);
            assert_string_equal(nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE), NFT_TABLE);
            nftnl_chain_free(c);
            p->n_chains++;
            break;
        }
        case NFT_MSG_NEWSET:
            p->n_sets++;
            break;
        case NFT_MSG_NEWSETELEM:
        case NFT_MSG_DELSETELEM:
            p->n_elems++;
            break;
        case NFT_MSG_DELTABLE:
            p->n_deltable++;
            break;
        case NFT_MSG_DELCHAIN:
            p->n_delchain++;
            break;
        }
    }
    assert_int_equal(left, 0);      /* no trailing garbage */
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static const struct nft_sandbox sb = {
    .name = "a1", .ifname = "sl-a1", .gw4 = {10, 200, 0, 1}, .addr4 = {10, 200, 0, 2},
    .proxy_port = 15001, .dns_port = 15053, .max_conntrack = 300,
};

static void test_base_and_sandbox(void **state)
{
    struct nft_batch *b = nft_batch_new();
    struct parsed *p = malloc(sizeof(*p));

    (void)state;
    assert_int_equal(nft_build_base(b), 0);
    assert_int_equal(nft_build_sandbox_add(b, &sb), 0);
    parse(b, p);
    assert_true(p->begin);
    assert_true(p->end);
    /* three verdict maps, the interface set and the links set */
    assert_int_equal(p->n_sets, 5);
    /* base chains and forwards, then fwd-a1, pre-a1, nat-a1, post-a1 */
    assert_int_equal(p->n_chains, 8 + 4);
    assert_int_equal(p->n_flush, 7 + 4);       /* rewritten, so a rerun never duplicates */
    assert_int_equal(p->n_elems, 4);
    /* first every packet from the sandbox is counted, with its bytes */
    assert_non_null(strstr(p->text, "pre-a1: inet sluice pre-a1\n  [ counter pkts 0 bytes 0 ]\n"
                                    "  userdata = { \\x00\\x04out\\x00 }\npre-a1: "));
    /* then any source but the sandbox's own address is dropped (IPv6: all of it) */
    assert_int_equal(count(p->text, "pre-a1: "), 13);
    assert_non_null(strstr(p->text, "pre-a1: inet sluice pre-a1\n"
                                    "  [ meta load nfproto => reg 1 ]\n"
                                    "  [ cmp eq reg 1 0x00000002 ]\n"
                                    "  [ payload load 4b @ network header + 12 => reg 1 ]\n"
                                    "  [ cmp neq reg 1 0x0200c80a ]\n"
                                    "  [ counter"));
    /* then its new connections beyond --max-conntrack (300 = 0x12c), counted per rule */
    assert_int_equal(count(p->text, "[ connlimit count 300 flags 1 ]"), 1);
    /* TPROXY to the gateway, once, with the mark */
    assert_int_equal(count(p->text, "[ reject type 1 code 0 ]"), 1);   /* no proxy: RST */
    assert_int_equal(count(p->text, "tproxy ip addr reg 1 port reg 2"), 1);
    assert_int_equal(count(p->text, "[ meta set mark with reg 1 ]"), 1);
    /* DNS is DNATed, tcp and udp */
    assert_int_equal(count(p->text, "nat-a1: "), 2);
    assert_int_equal(count(p->text, "nat dnat ip addr_min reg 1 proto_min reg 2"), 2);
    /* QUIC rejected, the rest dropped, nothing forwarded */
    assert_int_equal(count(p->text, "[ reject type 2 code 1 ]"), 1);
    assert_int_equal(count(p->text, "forward: "), 4);
    assert_int_equal(count(p->text, "lookup reg 1 set sandbox_pre dreg 0"), 1);
    /* ... but replies of what a forward or link opened (conntrack marks 0x534d, 0x534e) */
    assert_int_equal(count(p->text, "forward: inet sluice forward\n  [ ct load mark => reg 1 ]\n"
                                    "  [ cmp eq reg 1 0x0000534d ]\n  [ immediate reg 0 accept ]"),
                     1);
    /* in the sandbox's chain: a forward's replies go on to its counters for good, a
     * link's connection passes both ways */
    assert_int_equal(count(p->text, "pre-a1: inet sluice pre-a1\n  [ ct load direction => reg 1 ]\n"
                                    "  [ cmp eq reg 1 0x00000001 ]\n  [ ct load mark => reg 1 ]\n"
                                    "  [ cmp eq reg 1 0x0000534d ]\n"
                                    "  [ immediate reg 0 goto -> fwd-a1 ]"), 1);
    assert_int_equal(count(p->text, "pre-a1: inet sluice pre-a1\n  [ ct load mark => reg 1 ]\n"
                                    "  [ cmp eq reg 1 0x0000534e ]\n  [ immediate reg 0 accept ]"),
                     1);
    /* a sandbox's own new TCP to a linked peer: one lookup of saddr . daddr . dport,
     * for a connection's first packet only */
    assert_int_equal(count(p->text, "pre-a1: inet sluice pre-a1\n  [ ct load state => reg 1 ]\n"
                                    "  [ bitwise reg 1 = ( reg 1 & 0x00000008 ) ^ 0x00000000 ]\n"
                                    "  [ cmp neq reg 1 0x00000000 ]\n  [ meta load nfproto => reg 1 ]"),
                     1);
    assert_int_equal(count(p->text, "[ lookup reg 1 set links 0x0 ]"), 1);
    assert_int_equal(count(p->text, "[ ct set mark with reg 1 ]"), 1);
    /* every packet to it is counted in post-a1 */
    assert_int_equal(count(p->text, "postrouting: "), 1);
    assert_int_equal(count(p->text, "post-a1: "), 2);
    /* forwards: never for a sandbox's packets, masqueraded to the gateway */
    assert_int_equal(count(p->text, "[ lookup reg 1 set sandboxes 0x1 ]\n  [ immediate reg 0 jump -> forwards ]"), 1);
    assert_int_equal(count(p->text, "dstnat_local: "), 1);
    assert_int_equal(count(p->text, "[ masq ]"), 1);
    /* IPv6 off: no v6 TPROXY, no v6 DNAT */
    assert_int_equal(count(p->text, "tproxy ip6"), 0);
    assert_int_equal(count(p->text, "dnat ip6"), 0);
    free(p);
    nft_batch_free(b);
}

static void test_sandbox_v6(void **state)
{
    struct nft_sandbox s6 = sb;
    struct nft_batch *b = nft_batch_new();
    struct parsed *p = malloc(sizeof(*p));

    (void)state;
    s6.v6 = true;
    inet_pton(AF_INET6, "2001:db8:200::1", s6.gw6);
    assert_int_equal(nft_build_sandbox_add(b, &s6), 0);
    parse(b, p);
    assert_int_equal(count(p->text, "tproxy ip6 addr reg 1 port reg 2"), 1);
    assert_int_equal(count(p->text, "nat dnat ip6"), 2);
    assert_int_equal(count(p->text, "[ reject type 1 code 0 ]"), 2);
    /* an IPv6 source other than the sandbox's: dropped unless ICMPv6 (neighbours) */
    assert_int_equal(count(p->text, "[ payload load 16b @ network header + 8 => reg 1 ]"), 1);
    assert_int_equal(count(p->text, "[ cmp neq reg 1 0x0000003a ]"), 1);
    free(p);
    nft_batch_free(b);
}

static void test_delete(void **state)
{
    struct nft_batch *b = nft_batch_new();
    struct parsed *p = malloc(sizeof(*p));

    (void)state;
    assert_int_equal(nft_build_sandbox_del(b, &sb, true, true), 0);
    parse(b, p);
    assert_int_equal(p->n_elems, 4);           /* elements go before their chains */
    assert_int_equal(p->n_delchain, 4);
    assert_int_equal(p->n_rules, 0);
    nft_batch_free(b);

    b = nft_batch_new();
    assert_int_equal(nft_build_sandbox_del(b, &sb, false, true), 0);
    parse(b, p);
    assert_int_equal(p->n_elems, 0);
    nft_batch_free(b);

    b = nft_batch_new();
    assert_int_equal(nft_build_table_del(b), 0);
    parse(b, p);
    assert_int_equal(p->n_deltable, 1);
    assert_int_equal(p->n_msgs, 3);
    free(p);
    nft_batch_free(b);
}

static void test_pod(void **state)
{
    struct nft_pod pod = {.proxy_uid = 1337, .proxy_port = 15001, .dns_port = 15053,
                          .metrics_port = 15090, .max_conntrack = 500};
    struct nft_batch *b = nft_batch_new();
    struct parsed *p = malloc(sizeof(*p));

    (void)state;
    assert_int_equal(nft_build_pod(b, &pod), 0);
    parse(b, p);
    assert_int_equal(p->n_chains, 4);
    /* the proxy's UID is exempt: compared in the mark, dns and output chains */
    assert_true(count(p->text, "cmp eq reg 1 0x00000539") >= 2);
    assert_int_equal(count(p->text, "tproxy ip addr reg 1 port reg 2"), 1);
    assert_int_equal(count(p->text, "tproxy ip6 addr reg 1 port reg 2"), 1);
    /* the proxy's own three ports, tcp and udp, v4 and v6, plus QUIC */
    assert_int_equal(count(p->text, "[ reject type 2 code 1 ]"), 3 * 2 * 2 + 1);
    /* replies leave unmarked (pod_mark), and the metrics port may answer
     * connections from outside the pod, e.g. the kubelet's probes (pod_out):
     * dropped from any other UID's socket, accepted from the proxy's or from a
     * request socket (no UID) */
    assert_int_equal(count(p->text, "ct load direction"), 4);
    /* the workload's intercepted connections are marked in conntrack, and their
     * replies may leave by lo only (a spoofed SYN to the pod's own address) */
    assert_int_equal(count(p->text, "[ ct set mark with reg 1 ]"), 1);
    assert_int_equal(count(p->text, "[ ct load mark => reg 1 ]"), 1);
    /* its source port, matched twice; as a destination, in the four rejects */
    assert_int_equal(count(p->text, "[ payload load 2b @ transport header + 0 => reg 1 ]"), 2);
    assert_int_equal(count(p->text, "[ cmp eq reg 1 0x0000f23a ]"), 2 + 2 * 2);
    /* not the proxy's UID: the workload's DNS (2 x 2) and the metrics port's replies */
    assert_int_equal(count(p->text, "[ cmp neq reg 1 0x00000539 ]"), 2 * 2 + 1);
    /* neighbour discovery: 3 types x (link-local, link-scope multicast, from a
     * socket: dropped, from the kernel), hop limit 255 each */
    assert_int_equal(count(p->text, "[ payload load 1b @ network header + 7 => reg 1 ]"), 12);
    assert_int_equal(count(p->text, "[ cmp eq reg 1 0x000000ff ]"), 12);
    assert_int_equal(count(p->text, "[ bitwise reg 1 = ( reg 1 & 0x0000c0ff "), 3);
    assert_int_equal(count(p->text, "[ bitwise reg 1 = ( reg 1 & 0x0000ffff "), 3);
    assert_int_equal(count(p->text, "[ cmp gte reg 1 0x00000000 ]"), 3);
    /* the workload's new connections beyond --max-conntrack */
    assert_int_equal(count(p->text, "[ connlimit count 500 flags 1 ]"), 1);
    /* a source that is not one of the pod's own addresses: dropped */
    assert_int_equal(count(p->text, "fib saddr type"), 1);
    free(p);
    nft_batch_free(b);

    pod.metrics_port = 0;       /* no metrics port: nothing to guard */
    b = nft_batch_new();
    p = malloc(sizeof(*p));
    assert_int_equal(nft_build_pod(b, &pod), 0);
    parse(b, p);
    assert_int_equal(count(p->text, "[ reject type 2 code 1 ]"), 2 * 2 * 2 + 1);
    assert_int_equal(count(p->text, "ct load direction"), 2);
    assert_int_equal(count(p->text, "[ payload load 2b @ transport header + 0 => reg 1 ]"), 0);
    assert_int_equal(count(p->text, "[ cmp neq reg 1 0x00000539 ]"), 2 * 2);
    free(p);
    nft_batch_free(b);
}

static void test_describe(void **state)
{
    struct nft_batch *b = nft_batch_new();
    size_t size;
    const struct nlmsghdr *nlh;
    int left;

    (void)state;
    assert_int_equal(nft_build_sandbox_add(b, &sb), 0);
    nlh = nft_batch_data(b, &size);
    left = (int)size;
    nlh = mnl_nlmsg_next(nlh, &left);          /* the first message after begin */
    assert_string_equal(nft_batch_describe(b, nlh->nlmsg_seq), "NFT_MSG_NEWCHAIN fwd-a1");
    nft_batch_free(b);
    nft_batch_free(NULL);
}

static void test_expect_text(void **state)
{
    struct nft_batch *b = nft_batch_new();
    char text[8192];

    (void)state;
    assert_int_equal(nft_build_sandbox_add(b, &sb), 0);
    assert_int_equal(nft_expect_text(b, "pre-a1", NULL, text, sizeof(text)), 0);
    assert_int_equal(count(text, "\n"), 13);
    assert_non_null(strstr(text, "[ counter ]"));
    assert_null(strstr(text, "packets"));      /* counter values never enter comparisons */
    assert_int_equal(nft_expect_text(b, "nat-a1", NULL, text, sizeof(text)), 0);
    assert_int_equal(count(text, "\n"), 2);
    assert_int_equal(nft_expect_text(b, "nat-a1", "dns", text, sizeof(text)), 0);
    assert_int_equal(count(text, "\n"), 2);   /* both commented "dns" */
    assert_int_equal(nft_expect_text(b, "pre-a1", "proxy", text, sizeof(text)), 0);
    assert_int_equal(count(text, "\n"), 1);
    nft_batch_free(b);
}

static const struct nft_forward fwd = {
    .name = "a1", .key = "tcp 127.0.0.1:8080", .proto = 6, .addr = {127, 0, 0, 1},
    .port = 8080, .to_addr = {10, 200, 0, 2}, .to_port = 80, .n_from = 2,
    .from_addr = {{192, 0, 2, 0}, {10, 1, 2, 3}}, .from_len = {24, 32},
};

static void test_forward_and_link(void **state)
{
    struct nft_batch *b = nft_batch_new();
    struct parsed *p = malloc(sizeof(*p));
    const uint8_t a[4] = {10, 200, 0, 2}, c[4] = {10, 200, 0, 6};

    (void)state;
    assert_int_equal(nft_build_forward_add(b, &fwd), 0);
    assert_int_equal(nft_build_link(b, true, a, c, 5432), 0);
    assert_int_equal(nft_build_rule_del(b, "forwards", 7), 0);
    parse(b, p);
    /* one DNAT rule per --from network, each: daddr, dport, source under its mask */
    assert_int_equal(count(p->text, "forwards: "), 2);
    assert_int_equal(count(p->text, "[ cmp eq reg 1 0x0100007f ]\n  [ payload load 2b @ transport "
                                    "header + 2 => reg 1 ]\n  [ cmp eq reg 1 0x0000901f ]"), 2);
    assert_int_equal(count(p->text, "[ bitwise reg 1 = ( reg 1 & 0x00ffffff ) ^ 0x00000000 ]\n"
                                    "  [ cmp eq reg 1 0x000200c0 ]"), 1);
    assert_int_equal(count(p->text, "[ bitwise reg 1 = ( reg 1 & 0xffffffff ) ^ 0x00000000 ]\n"
                                    "  [ cmp eq reg 1 0x0302010a ]"), 1);
    assert_int_equal(count(p->text, "[ immediate reg 1 0x0000534d ]\n  [ ct set mark with reg 1 ]"), 2);
    assert_int_equal(count(p->text, "[ immediate reg 1 0x0200c80a ]\n  [ immediate reg 2 0x00005000 ]\n"
                                    "  [ nat dnat ip addr_min reg 1 proto_min reg 2 ]"), 2);
    /* its packets counted both ways by the original tuple */
    assert_int_equal(count(p->text, "fwd-a1: "), 2);
    assert_int_equal(count(p->text, "[ ct load dst_ip => reg 1 , dir original ]"), 2);
    assert_int_equal(count(p->text, "[ ct load proto_dst => reg 1 , dir original ]"), 2);
    assert_int_equal(p->n_elems, 1);
    assert_int_equal(p->n_flush, 1);           /* the rule deleted by its handle */
    free(p);
    nft_batch_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_and_sandbox),
        cmocka_unit_test(test_sandbox_v6),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_pod),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_expect_text),
        cmocka_unit_test(test_forward_and_link),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
