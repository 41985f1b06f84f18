/*
 * verify: reads a sandbox's live state back (links, policy routing, the nft
 * chains rule by rule against what up installs) and probes it from inside,
 * proving P1 by the rules' own counters; verify --pod does the same for a pod.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netns.h"
#include "pool.h"
#include "sandbox_int.h"

__attribute__((format(printf, 3, 4)))
static void problem(FILE *out, int *n, const char *fmt, ...)
{
    va_list ap;

    fprintf(out, "FAIL: ");
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fprintf(out, "\n");
    (*n)++;
}

/* CHAIN's rules (those commented PREFIX..., when given) against what up and
 * forward install for S. */
static void compare_chain(const struct sandbox *s, const char *chain, const char *prefix,
                          FILE *out, int *n)
{
    struct nft_sandbox ns;
    struct nft_batch *b = nft_batch_new();
    char *live = malloc(TEXT_MAX), *want = malloc(TEXT_MAX);

    sandbox_nft_view(s, &ns);
    if (!live || !want || !b)
        problem(out, n, "out of memory comparing chain %s", chain);
    else if (nft_chain_text(chain, prefix, live, TEXT_MAX) < 0)
        problem(out, n, "chain %s in table inet %s cannot be read", chain, NFT_TABLE);
    else if (nft_build_sandbox_add(b, &ns) < 0 || sandbox_build_forwards(b, s) < 0 ||
             nft_expect_text(b, chain, prefix, want, TEXT_MAX) < 0 || strcmp(live, want) != 0)
        problem(out, n, "chain %s%s%s%s differs from what up and forward install:\n--- live\n"
                "%s--- expected\n%s", chain, prefix ? " (the rules of " : "",
                prefix ? s->name : "", prefix ? ")" : "", live, want);
    nft_batch_free(b);
    free(live);
    free(want);
}

/* Reads the sandbox's counters; N names what the probe should have moved. */
static uint64_t counter_of(const char *name, int which)
{
    struct nft_counters c;

    if (nft_sandbox_counters(name, &c) < 0)
        return 0;
    return which == 0 ? c.proxy : which == 1 ? c.rejected : c.dropped;
}

/*
 * Probes from inside the namespace, proving by the rules' own counters that
 * each packet was handled as P1 says: TCP to a port of the gateway is taken
 * by TPROXY, QUIC is refused at once, other UDP and ICMP are dropped, and a
 * DNS query with another host's source address is dropped before anything
 * could answer that host.
 */
/* Whether an echo reply arrives on raw ICMP socket FD within MS (other ICMP, such
 * as the port-unreachable the QUIC probe earned, is skipped). */
static bool echo_answered(int fd, int ms)
{
    uint8_t pkt[256];

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t got;
        size_t ihl;

        if (poll(&p, 1, ms) != 1)
            return false;
        got = recv(fd, pkt, sizeof(pkt), MSG_DONTWAIT);
        if (got < 20)
            continue;
        ihl = (size_t)(pkt[0] & 0x0f) * 4;
        if ((size_t)got > ihl && pkt[ihl] == 0)       /* ICMP_ECHOREPLY */
            return true;
    }
}

/* An IPv4 UDP datagram to DST:53 from 192.0.2.2 (TEST-NET-1: not the sandbox);
 * the kernel fills in the IP checksum, length and id; the UDP checksum is 0. */
static size_t spoofed_dns(uint8_t pkt[33], const struct in_addr *dst)
{
    static const uint8_t head[20] = {0x45, 0, 0, 0, 0, 0, 0, 0, 64, IPPROTO_UDP, 0, 0,
                                     192, 0, 2, 2};
    static const uint8_t udp[13] = {0x9c, 0x40, 0, 53, 0, 13, 0, 0, 'p', 'r', 'o', 'b', 'e'};

    memcpy(pkt, head, sizeof(head));
    memcpy(pkt + 16, &dst->s_addr, 4);
    memcpy(pkt + 20, udp, sizeof(udp));
    return 33;
}

static void probe(const struct sandbox *s, FILE *out, int *n)
{
    struct sockaddr_in gw = {.sin_family = AF_INET}, far = {.sin_family = AF_INET};
    static const uint8_t echo[8] = {8, 0, 0xf7, 0xff, 0, 0, 0, 0};   /* checksum set */
    int tcp = -1, quic = -1, udp = -1, icmp = -1, raw = -1, nsfd, saved;
    uint8_t spoof[33];
    uint64_t before;
    uint8_t a[16];
    char buf[64];

    sandbox_gateway(&s->subnet, a);
    memcpy(&gw.sin_addr, a, 4);
    inet_pton(AF_INET, "192.0.2.1", &far.sin_addr);   /* TEST-NET-1: never routed */

    /* Sockets belong to the namespace they are made in: make them inside, then
     * come back, so that the counters are read from the host's rules. */
    nsfd = netns_open(s->name);
    if (nsfd < 0 || netns_enter(nsfd, &saved) < 0) {
        problem(out, n, "cannot enter network namespace %s", s->name);
        if (nsfd >= 0)
            close(nsfd);
        return;
    }
    tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    quic = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    icmp = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (netns_leave(saved) < 0)
        problem(out, n, "cannot return to the host's network namespace");
    close(nsfd);
    if (tcp < 0 || quic < 0 || udp < 0 || icmp < 0 || raw < 0) {
        problem(out, n, "cannot open probe sockets in %s: %s", s->name, strerror(errno));
        goto out;
    }

    before = counter_of(s->name, 0);                 /* TCP: intercepted, whatever port */
    gw.sin_port = htons(22);
    {
        struct pollfd p = {.fd = tcp, .events = POLLOUT};

        connect(tcp, (struct sockaddr *)&gw, sizeof(gw));
        poll(&p, 1, 500);
    }
    if (counter_of(s->name, 0) == before)
        problem(out, n, "TCP to the gateway's port 22 was not taken by TPROXY");

    before = counter_of(s->name, 1);                 /* QUIC: refused at once */
    far.sin_port = htons(443);
    {
        struct pollfd p = {.fd = quic, .events = POLLIN};
        ssize_t got = -1;

        errno = 0;
        if (connect(quic, (struct sockaddr *)&far, sizeof(far)) == 0 &&
            send(quic, "quic", 4, 0) == 4 && poll(&p, 1, 1000) == 1)
            got = recv(quic, buf, sizeof(buf), MSG_DONTWAIT);
        if (!(got < 0 && errno == ECONNREFUSED))
            problem(out, n, "UDP to port 443 was not refused (QUIC must fail at once)");
    }
    if (counter_of(s->name, 1) == before)
        problem(out, n, "UDP to port 443 did not hit the reject rule");

    before = counter_of(s->name, 2);                 /* other UDP and ICMP: dropped */
    far.sin_port = htons(9);
    sendto(udp, "probe", 5, 0, (struct sockaddr *)&far, sizeof(far));
    sendto(icmp, echo, sizeof(echo), 0, (struct sockaddr *)&gw, sizeof(gw));
    if (echo_answered(icmp, 300))
        problem(out, n, "ICMP echo to the gateway was answered");
    if (counter_of(s->name, 2) < before + 2)
        problem(out, n, "UDP to port 9 and ICMP were not both dropped by the sandbox chain");

    before = counter_of(s->name, 2);                 /* another host's source: dropped */
    sendto(raw, spoof, spoofed_dns(spoof, &gw.sin_addr), 0, (struct sockaddr *)&gw,
           sizeof(gw));
    if (counter_of(s->name, 2) < before + 1)
        problem(out, n, "a DNS query with a source other than the sandbox's was not dropped");
out:
    if (tcp >= 0)
        close(tcp);
    if (quic >= 0)
        close(quic);
    if (udp >= 0)
        close(udp);
    if (icmp >= 0)
        close(icmp);
    if (raw >= 0)
        close(raw);
}

/* Whether a connection to ADDR:PORT (SOCKTYPE) from here finds no way out. */
static bool no_route(int family, const char *addr, uint16_t port, int socktype)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    int fd, r, err;

    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;

        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, addr, &a->sin_addr);
        len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, addr, &a->sin6_addr);
        len = sizeof(*a);
    }
    fd = socket(family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno == EAFNOSUPPORT;   /* no IPv6 at all: nothing to leave by */
    r = connect(fd, (struct sockaddr *)&ss, len);
    err = errno;
    close(fd);
    return r < 0 && (err == ENETUNREACH || err == EHOSTUNREACH || err == EADDRNOTAVAIL);
}

/*
 * up --isolated: the namespace holds lo and no other interface, and a
 * connection anywhere, v4 or v6, TCP or UDP, finds no route.
 */
static int verify_isolated(const struct sandbox *s, FILE *out)
{
    static const struct {
        int family, socktype;
        const char *addr;
        uint16_t port;
    } probes[] = {
        {AF_INET, SOCK_STREAM, "203.0.113.1", 443}, {AF_INET, SOCK_DGRAM, "192.0.2.53", 53},
        {AF_INET, SOCK_STREAM, "10.0.0.1", 22}, {AF_INET6, SOCK_STREAM, "2001:db8::1", 443},
        {AF_INET6, SOCK_DGRAM, "2001:db8::53", 53},
    };
    struct if_nameindex *ifs, *i;
    int n = 0, fd = netns_open(s->name), saved;
    size_t k;

    if (fd < 0) {
        problem(out, &n, "network namespace %s/%s is missing", NETNS_RUN_DIR, s->name);
        return n;
    }
    if (netns_enter(fd, &saved) < 0) {
        problem(out, &n, "cannot enter network namespace %s: %s", s->name, strerror(errno));
        close(fd);
        return n;
    }
    ifs = if_nameindex();
    for (i = ifs; i && i->if_index; i++)
        if (strcmp(i->if_name, "lo") != 0)
            problem(out, &n, "interface %s in isolated sandbox %s: packets can leave by it",
                    i->if_name, s->name);
    if (!ifs)
        problem(out, &n, "cannot list the interfaces of %s: %s", s->name, strerror(errno));
    if_freenameindex(ifs);
    for (k = 0; k < sizeof(probes) / sizeof(probes[0]); k++)
        if (!no_route(probes[k].family, probes[k].addr, probes[k].port, probes[k].socktype))
            problem(out, &n, "a %s connection to %s port %u found a route out of %s",
                    probes[k].socktype == SOCK_STREAM ? "TCP" : "UDP", probes[k].addr,
                    probes[k].port, s->name);
    if (netns_leave(saved) < 0)
        problem(out, &n, "cannot return to the host's namespace: %s", strerror(errno));
    close(fd);
    if (n == 0)
        fprintf(out, "ok: sandbox %s is isolated (only lo; no route for v4 or v6, TCP or "
                "UDP)\n", s->name);
    return n;
}

/* Every link S opens is an element of the links set, each port of it. */
static void verify_links(const struct sandbox *s, FILE *out, int *n)
{
    uint8_t a[16], b[16];
    struct sandbox peer;

    sandbox_address(&s->subnet, a);
    for (size_t i = 0; i < s->n_links; i++) {
        if (state_load(s->links[i].peer, &peer) < 0) {
            problem(out, n, "sandbox %s is linked to %s, which has no record", s->name,
                    s->links[i].peer);
            continue;
        }
        sandbox_address(&peer.subnet, b);
        for (size_t j = 0; j < s->links[i].n_ports; j++)
            if (nft_link_exists(a, b, s->links[i].ports[j]) != 1)
                problem(out, n, "the link %s -> %s port %u is not in set links of table "
                        "inet %s", s->name, peer.name, s->links[i].ports[j], NFT_TABLE);
    }
}

int sandbox_verify(struct ns_error *e, const char *name, FILE *out)
{
    struct sandbox s;
    struct rtnl *rt = NULL;
    struct nft_chains c;
    char mine[SANDBOX_NAME_MAX + 2];
    int n = 0, r, fd;

    sandbox_note(e, "reading the record of %s in %s", name, state_dir());
    if ((r = state_load(name, &s)) < 0)
        return r;
    if (s.mode == SANDBOX_ISOLATED)
        return verify_isolated(&s, out);
    if ((r = sandbox_rtnl_check(e, rt, rtnl_open(&rt))) < 0)
        return r;
    if (rtnl_link_is_up(rt, s.host_if) != 1)
        problem(out, &n, "interface %s is missing or down", s.host_if);
    if (rtnl_rule_fwmark_exists(rt, AF_INET, NFT_MARK, NFT_ROUTE_TABLE) != 1)
        problem(out, &n, "policy rule 'fwmark 0x%x lookup %u' is missing", NFT_MARK,
                NFT_ROUTE_TABLE);
    if (rtnl_route_local_default_exists(rt, AF_INET, NFT_ROUTE_TABLE) != 1)
        problem(out, &n, "route 'local default dev lo table %u' is missing", NFT_ROUTE_TABLE);
    rtnl_close(rt);

    nft_chain_names(s.name, &c);
    if (nft_sandbox_elem_exists(s.host_if) != 1)
        problem(out, &n, "%s is not in the sandboxes set of table inet %s", s.host_if,
                NFT_TABLE);
    compare_chain(&s, c.pre, NULL, out, &n);
    compare_chain(&s, c.nat, NULL, out, &n);
    compare_chain(&s, c.post, NULL, out, &n);
    compare_chain(&s, c.fwd, NULL, out, &n);
    snprintf(mine, sizeof(mine), "%s ", s.name);  /* its forwards' DNAT rules */
    compare_chain(&s, NFT_CHAIN_FORWARDS, mine, out, &n);
    verify_links(&s, out, &n);

    if (s.mode == SANDBOX_NETNS) {
        fd = netns_open(s.name);
        if (fd < 0)
            problem(out, &n, "network namespace %s/%s is missing", NETNS_RUN_DIR, s.name);
        else
            close(fd);
        if (n == 0)
            probe(&s, out, &n);
    }
    if (n == 0)
        fprintf(out, "ok: sandbox %s holds P1 (rules, routing and probes checked)\n", name);
    return n;
}

/* ---- verify --pod ---- */

#define POD_METRICS_PROBE_PORT 15090    /* the default --metrics-port */

static void pod_counters(struct nft_counters *c)
{
    memset(c, 0, sizeof(*c));
    nft_chain_counters("pod_mark", c);
    nft_chain_counters("pod_out", c);
}

static uint64_t caught(const struct nft_counters *c)
{
    return c->proxy + c->rejected + c->dropped;
}

static uint16_t sum16(const uint8_t *p, size_t n, uint32_t acc)
{
    size_t i;

    for (i = 0; i + 1 < n; i += 2)
        acc += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        acc += (uint32_t)(p[n - 1] << 8);
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}

/* An IPv4 TCP segment with FLAGS from SRC:SPORT to DST:DPORT and a 5-byte body;
 * the kernel fills in the IP checksum, length and id. */
static size_t tcp_segment(uint8_t pkt[45], const struct in_addr *src, uint16_t sport,
                          const struct in_addr *dst, uint16_t dport, uint8_t flags)
{
    uint8_t pseudo[12 + 25];
    uint16_t c;

    memset(pkt, 0, 45);
    pkt[0] = 0x45;
    pkt[8] = 64;
    pkt[9] = IPPROTO_TCP;
    memcpy(pkt + 12, &src->s_addr, 4);
    memcpy(pkt + 16, &dst->s_addr, 4);
    pkt[20] = (uint8_t)(sport >> 8);
    pkt[21] = (uint8_t)sport;
    pkt[22] = (uint8_t)(dport >> 8);
    pkt[23] = (uint8_t)dport;
    pkt[27] = pkt[31] = 1;                      /* seq, ack */
    pkt[32] = 5 << 4;
    pkt[33] = flags;
    pkt[34] = pkt[35] = 0xff;                   /* window */
    memcpy(pkt + 40, "probe", 5);
    memcpy(pseudo, pkt + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = IPPROTO_TCP;
    pseudo[10] = 0;
    pseudo[11] = 25;
    memcpy(pseudo + 12, pkt + 20, 25);
    c = sum16(pseudo, sizeof(pseudo), 0);
    pkt[36] = (uint8_t)(c >> 8);
    pkt[37] = (uint8_t)c;
    return 45;
}

/* Neighbour discovery with a body, to a global address: must not leave. */
static void pod_probe_nd(FILE *out, int *n)
{
    struct sockaddr_in6 far = {.sin6_family = AF_INET6};
    uint8_t ns[8 + 16 + 5] = {135};
    struct nft_counters before, after;
    int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6), hops = 255;
    ssize_t r;

    if (fd < 0) {
        fprintf(out, "skipped: neighbour-discovery probe (no IPv6 here: %s)\n",
                strerror(errno));
        return;
    }
    inet_pton(AF_INET6, "2001:db8::1", &far.sin6_addr);     /* documentation: never ours */
    memcpy(ns + 8, &far.sin6_addr, 16);
    memcpy(ns + 24, "probe", 5);
    setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops));
    pod_counters(&before);
    r = sendto(fd, ns, sizeof(ns), 0, (struct sockaddr *)&far, sizeof(far));
    if (r < 0 && errno == ENETUNREACH)
        fprintf(out, "skipped: neighbour-discovery probe (no IPv6 route out of the pod)\n");
    else if (pod_counters(&after), r >= 0 || after.dropped == before.dropped)
        problem(out, n, "neighbour discovery with a body, to a global address, was not "
                "dropped by pod_out");
    close(fd);
}

/* A spoofed ACK to the metrics port, then a forged "reply" from it: the first
 * is dropped for its source, the second never leaves as a reply. */
static void pod_probe_spoof(FILE *out, int *n)
{
    struct sockaddr_in far = {.sin_family = AF_INET, .sin_port = htons(9)}, self;
    struct nft_counters before, after;
    socklen_t len = sizeof(self);
    uint8_t pkt[45];
    int fd = -1, u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    inet_pton(AF_INET, "192.0.2.2", &far.sin_addr);         /* TEST-NET-1: never ours */
    /* the source the kernel would pick for the outside: the pod's own address */
    if (u < 0 || connect(u, (struct sockaddr *)&far, sizeof(far)) < 0 ||
        getsockname(u, (struct sockaddr *)&self, &len) < 0) {
        fprintf(out, "skipped: spoofed-source probes (no IPv4 route out of the pod)\n");
        goto out;
    }
    fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) {
        problem(out, n, "cannot open a raw socket: %s", strerror(errno));
        goto out;
    }
    pod_counters(&before);
    sendto(fd, pkt, tcp_segment(pkt, &far.sin_addr, 40000, &self.sin_addr,
                                POD_METRICS_PROBE_PORT, 0x10), 0,
           (struct sockaddr *)&self, sizeof(self));
    pod_counters(&after);
    if (after.dropped == before.dropped)
        problem(out, n, "a packet with another host's source address was not dropped");
    before = after;
    sendto(fd, pkt, tcp_segment(pkt, &self.sin_addr, POD_METRICS_PROBE_PORT, &far.sin_addr,
                                40000, 0x18), 0, (struct sockaddr *)&far, sizeof(far));
    pod_counters(&after);
    if (caught(&after) == caught(&before))
        problem(out, n, "a forged reply from the metrics port was neither intercepted nor "
                "dropped");
out:
    if (u >= 0)
        close(u);
    if (fd >= 0)
        close(fd);
}

int pod_verify(FILE *out)
{
    static const char *const chains[] = {"pod_mark", "pod_tproxy", "pod_dns", "pod_out"};
    size_t i;
    int n = 0;

    for (i = 0; i < sizeof(chains) / sizeof(chains[0]); i++)
        if (nft_chain_exists(chains[i]) != 1)
            problem(out, &n, "chain %s is missing from table inet %s (run 'sluice-netsetup "
                    "pod')", chains[i], NFT_TABLE);
    if (n == 0) {
        pod_probe_nd(out, &n);
        pod_probe_spoof(out, &n);
    }
    if (n == 0)
        fprintf(out, "ok: the pod's rules hold P1 (chains, and probes: neighbour discovery "
                "to a global address, a spoofed source, a forged metrics reply)\n");
    fprintf(out, "not checked (not visible from inside the pod): that the workload never "
            "runs as root, as the proxy's UID, or with CAP_SETUID, CAP_NET_ADMIN or "
            "CAP_NET_RAW; the pod spec must say so\n");
    return n;
}
