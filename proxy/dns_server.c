/*
 * The DNS service: UDP and TCP on --dns-listen, where netsetup's DNAT sends
 * every port-53 packet of the sandbox (conntrack turns the replies' source
 * back into the address the client asked). Only A and AAAA answers leave,
 * flattened onto the question's name, with special-purpose addresses removed
 * and TTLs capped; everything else is answered empty, NOTIMP or NXDOMAIN.
 */
#include "dns_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "dns_msg.h"
#include "log.h"
#include "resolver.h"
#include "sock.h"
#include "vpool.h"

#define TCP_BUF (2 + 4096)          /* a query over TCP: length and message */
#define DNS_TCP_BACKLOG 64

struct dns_server;

struct dns_tcp {
    struct list link;               /* on s->clients */
    struct dns_server *s;
    int fd;
    struct event *ev, *timer;
    uint8_t buf[TCP_BUF];
    size_t len;
    size_t refs;                    /* queries of this client still resolving */
    bool closing;
};

struct dns_pending {
    struct list link;               /* on s->pending */
    struct dns_server *s;
    struct dns_query q;
    struct resolver_query *rq;
    struct dns_tcp *tcp;            /* NULL: answer over UDP to peer */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    enum flow_verdict verdict;
    bool wildcard;                  /* a wildcard rule allowed the name (alerts.h) */
};

struct dns_server {
    struct proxy *px;
    int udp, tcp;
    struct event *uev, *tev;
    struct list clients;            /* struct dns_tcp */
    size_t n_clients;
    struct list pending;            /* struct dns_pending */
    size_t n_pending;
};

static bool rate_ok(struct dns_server *s)
{
    uint32_t qps = s->px->policy->settings.dns.queries_per_second;

    /* one second deep; shared by all DNS listeners: the limit is the sandbox's */
    return qps == 0 || limit_bucket_take(&s->px->dns_queries, qps, qps, 1, clock_now_ms()) == 1;
}

/* The dns record of Q's answer (RCODE), or with LIMIT the limit record that refused it. */
static void dns_log(struct dns_server *s, const struct dns_query *q, enum flow_limit limit,
                    int rcode, enum flow_verdict verdict, enum reason why, bool wildcard)
{
    struct flow_record r;

    memset(&r, 0, sizeof(r));
    r.event = limit == LIMIT_NONE ? EV_DNS : EV_LIMIT;
    r.limit = limit;
    r.proto = PROTO_DNS;
    r.qname = q->qname;
    r.qname_len = q->qname_len;
    r.has_qtype = true;
    r.qtype = q->qtype;
    r.rcode = limit == LIMIT_NONE ? dns_rcode_name(rcode) : NULL;
    r.verdict = verdict;
    r.reason = why;
    r.wildcard = wildcard;
    proxy_log(s->px, &r);
}

static void tcp_close(struct dns_tcp *c);

/* Sends a response (with EDE, when not NULL) over UDP to PEER, or framed over the TCP client. */
static void send_message(struct dns_server *s, struct dns_tcp *tcp,
                         const struct sockaddr_storage *peer, socklen_t peer_len,
                         const struct dns_query *q, int rcode, const struct dns_answer *a,
                         size_t n, const struct dns_ede *ede)
{
    uint8_t out[2 + DNS_EDNS_MAX * 4];
    size_t limit = tcp ? sizeof(out) - 2 : (q->edns ? (q->edns_size < DNS_EDNS_MAX
                                                               ? q->edns_size : DNS_EDNS_MAX)
                                                         : DNS_UDP_MAX);
    size_t len = dns_build_response(out + 2, sizeof(out) - 2, limit, q, rcode, a, n, ede);

    if (len == 0 || (!tcp && peer_len == 0))
        return;                     /* nothing fits, or its TCP client went away */
    if (!tcp) {
        sendto(s->udp, out + 2, len, MSG_DONTWAIT, (const struct sockaddr *)peer, peer_len);
        return;
    }
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)len;
    if (send(tcp->fd, out, len + 2, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)(len + 2))
        tcp->closing = true;        /* a client that does not read its answers */
}

static void send_response(struct dns_server *s, struct dns_tcp *tcp,
                          const struct sockaddr_storage *peer, socklen_t peer_len,
                          const struct dns_query *q, int rcode, const struct dns_answer *a,
                          size_t n)
{
    send_message(s, tcp, peer, peer_len, q, rcode, a, n, NULL);
}

/*
 * A name the policy refuses: RCODE, and (feedback: true, and the query had
 * EDNS) an Extended DNS Error "Blocked" whose text says why, under which
 * policy, and where the sandbox can read its recent denials.
 */
static void send_refusal(struct dns_server *s, struct dns_tcp *tcp,
                         const struct sockaddr_storage *peer, socklen_t peer_len,
                         const struct dns_query *q, int rcode, enum reason why)
{
    const struct policy *p = s->px->policy;
    char text[DNS_EDE_TEXT_MAX + 1];
    struct dns_ede ede = {DNS_EDE_BLOCKED, text};

    snprintf(text, sizeof(text), "sluice: %s by policy %s; recent denials: http://%s/",
             reason_name(why), p->hash, PROXY_FEEDBACK_NAME);
    send_message(s, tcp, peer, peer_len, q, rcode, NULL, 0, p->settings.feedback ? &ede : NULL);
}

/*
 * sluice.internal, the proxy's own page of the sandbox's denials: answered
 * here (the gateway's address), never forwarded; NXDOMAIN with feedback off.
 */
static void answer_feedback(struct dns_server *s, struct dns_tcp *tcp,
                            const struct sockaddr_storage *peer, socklen_t peer_len,
                            const struct dns_query *q)
{
    const struct policy *p = s->px->policy;
    struct dns_answer a = {.type = q->qtype, .ttl = p->settings.dns.max_ttl};
    int family = q->qtype == DNS_TYPE_A ? AF_INET : AF_INET6;
    size_t n;

    if (!p->settings.feedback) {
        send_response(s, tcp, peer, peer_len, q, DNS_RCODE_NXDOMAIN, NULL, 0);
        dns_log(s, q, LIMIT_NONE, DNS_RCODE_NXDOMAIN, VERDICT_DENY, REASON_NOT_ALLOWLISTED,
                false);
        return;
    }
    n = (q->qtype == DNS_TYPE_A || q->qtype == DNS_TYPE_AAAA) &&
        proxy_feedback_addr(s->px, family, a.addr);
    send_response(s, tcp, peer, peer_len, q, DNS_RCODE_NOERROR, &a, n);
    dns_log(s, q, LIMIT_NONE, DNS_RCODE_NOERROR, VERDICT_ALLOW, REASON_NONE, false);
}

static void pending_free(struct dns_pending *p)
{
    struct dns_server *s = p->s;

    if (p->rq)
        resolver_cancel(p->rq);
    list_remove(&p->link);
    s->n_pending--;
    if (p->tcp) {
        p->tcp->refs--;
        if (p->tcp->closing && p->tcp->refs == 0)
            tcp_close(p->tcp);
    }
    free(p);
}

/*
 * dns.answers: virtual: Q's name gets its own address of the pool, to live
 * TTL seconds (and the grace) past now, in ANS. Returns 1, or 0 when the
 * sandbox has no IPv6 for an AAAA, or -1 when the pool is exhausted (a
 * limit record said so).
 */
static int answer_virtual(struct dns_server *s, const struct dns_query *q, uint32_t ttl,
                          struct dns_answer *ans)
{
    struct proxy *px = s->px;
    struct vpool_addr va;
    bool evicted;

    if (q->qtype == DNS_TYPE_AAAA && !px->v6)
        return 0;
    if (vpool_map(px->vpool, q->qname, clock_now_ms(),
                  (uint64_t)ttl * 1000 + PROXY_VIRTUAL_GRACE_MS, &va, &evicted) == 0) {
        ans->type = q->qtype;
        ans->ttl = ttl;
        memcpy(ans->addr, q->qtype == DNS_TYPE_A ? va.v4 : va.v6,
               q->qtype == DNS_TYPE_A ? 4 : 16);
        return 1;
    }
    dns_log(s, q, LIMIT_VIRTUAL_POOL, 0, VERDICT_NONE, REASON_NONE, false);
    return -1;
}

/*
 * Answers Q (A or AAAA) from the resolver's RES: P5's ranges removed, TTLs
 * capped. Under dns.answers: virtual the answer is the name's virtual
 * address, when the name has any address (of either family) the proxy would
 * connect to; the proxy resolves it again at connect time.
 */
static void answer(struct dns_server *s, struct dns_tcp *tcp,
                   const struct sockaddr_storage *peer, socklen_t peer_len,
                   const struct dns_query *q, enum flow_verdict verdict, bool wildcard,
                   const struct resolver_result *res)
{
    const struct policy *pol = s->px->policy;
    bool virt = pol->settings.dns.answers == DNS_ANSWERS_VIRTUAL;
    struct dns_answer ans[RESOLVER_MAX_ADDRS] = {{0}};
    int family = q->qtype == DNS_TYPE_A ? AF_INET : AF_INET6, rcode;
    size_t i, n = 0, removed = 0, usable = 0;
    uint32_t ttl, min_ttl = pol->settings.dns.max_ttl;

    if (res->status == RESOLVER_NXDOMAIN)
        rcode = DNS_RCODE_NXDOMAIN;
    else if (res->status != 0)
        rcode = DNS_RCODE_SERVFAIL;
    else
        rcode = DNS_RCODE_NOERROR;
    for (i = 0; rcode == DNS_RCODE_NOERROR && i < res->n && n < RESOLVER_MAX_ADDRS; i++) {
        const struct resolver_addr *a = &res->addrs[i];

        if (a->family != family && !virt)
            continue;
        /* the sandbox learns only what the proxy would connect to (P5) */
        if (!proxy_dest_allowed(s->px, a->family, a->addr)) {
            removed++;
            continue;
        }
        ttl = a->ttl < pol->settings.dns.max_ttl ? a->ttl : pol->settings.dns.max_ttl;
        if (virt) {
            usable++;
            min_ttl = ttl < min_ttl ? ttl : min_ttl;
            continue;
        }
        ans[n].type = q->qtype;
        ans[n].ttl = ttl;
        memcpy(ans[n].addr, a->addr, family == AF_INET ? 4 : 16);
        n++;
    }
    if (usable) {
        int got = answer_virtual(s, q, min_ttl, ans);

        if (got < 0) {
            send_response(s, tcp, peer, peer_len, q, DNS_RCODE_SERVFAIL, NULL, 0);
            return;
        }
        n = (size_t)got;
    }
    send_response(s, tcp, peer, peer_len, q, rcode, ans, n);
    dns_log(s, q, LIMIT_NONE, rcode, verdict,
            n == 0 && removed && !usable ? REASON_PRIVATE_DESTINATION
            : rcode == DNS_RCODE_SERVFAIL ? REASON_RESOLVE_FAILED : REASON_NONE, wildcard);
}

static void on_resolved(const struct resolver_result *res, void *arg)
{
    struct dns_pending *p = arg;

    p->rq = NULL;
    answer(p->s, p->tcp, &p->peer, p->peer_len, &p->q, p->verdict, p->wildcard, res);
    pending_free(p);
}

/* Decides one query; answers now, or starts a lookup that answers later. */
static void handle(struct dns_server *s, struct dns_tcp *tcp, const uint8_t *msg, size_t len,
                   const struct sockaddr_storage *peer, socklen_t peer_len)
{
    const struct policy *pol = s->px->policy;
    int unlisted = pol->settings.dns.unlisted == DNS_UNLISTED_REFUSED ? DNS_RCODE_REFUSED
                                                                       : DNS_RCODE_NXDOMAIN;
    struct policy_query pq = {.port = POLICY_ANY_PORT};
    struct policy_decision d;
    struct dns_pending *p;
    struct dns_query q;
    enum flow_verdict verdict = VERDICT_ALLOW;
    bool wildcard;
    struct resolver_result res;
    char cname[RESOLVER_NAME_MAX + 1];

    switch (dns_query_parse(msg, len, &q)) {
    case DNS_PARSE_DROP:
        return;
    case DNS_PARSE_NOTIMP:
        send_response(s, tcp, peer, peer_len, &q, DNS_RCODE_NOTIMP, NULL, 0);
        return;
    case DNS_PARSE_FORMERR:
        q.qname_wire_len = 0;       /* echo no question: it did not parse */
        send_response(s, tcp, peer, peer_len, &q, DNS_RCODE_FORMERR, NULL, 0);
        return;
    case DNS_PARSE_OK:
        break;
    }
    if (!rate_ok(s)) {
        send_response(s, tcp, peer, peer_len, &q, DNS_RCODE_REFUSED, NULL, 0);
        dns_log(s, &q, LIMIT_DNS_QUERIES, 0, VERDICT_NONE, REASON_RATE_LIMITED, false);
        return;
    }
    if (proxy_is_feedback_name(q.qname, q.qname_len)) {
        answer_feedback(s, tcp, peer, peer_len, &q);
        return;
    }
    if (q.qtype == DNS_TYPE_ANY || q.qtype == DNS_TYPE_AXFR || q.qtype == DNS_TYPE_IXFR ||
        q.qclass != 1) {
        send_response(s, tcp, peer, peer_len, &q, DNS_RCODE_NOTIMP, NULL, 0);
        dns_log(s, &q, LIMIT_NONE, DNS_RCODE_NOTIMP, VERDICT_DENY, REASON_NONE, false);
        return;
    }

    /* any rule, any port: an exact rule allows only its name, a wildcard its subdomains */
    /* long names under a wildcard are refused by the engine (max_name_length) */
    pq.host = (const uint8_t *)q.qname;
    pq.host_len = q.qname_len;
    pq.refused = q.qname_valid ? REASON_NONE : REASON_INVALID_HOSTNAME;
    policy_decide(pol, &pq, &d);
    if (d.outcome == DECISION_DENY) {
        send_refusal(s, tcp, peer, peer_len, &q, unlisted, d.reason);
        dns_log(s, &q, LIMIT_NONE, unlisted, VERDICT_DENY, d.reason, false);
        return;
    }
    if (d.outcome == DECISION_AUDIT)
        verdict = VERDICT_AUDIT;
    wildcard = d.rule && d.rule->kind == RULE_WILDCARD;     /* what dns_tunnel counts */
    if (q.qtype != DNS_TYPE_A && q.qtype != DNS_TYPE_AAAA) {
        /* TXT, MX, SRV, HTTPS...: the name exists for the sandbox, its data does not */
        send_response(s, tcp, peer, peer_len, &q, DNS_RCODE_NOERROR, NULL, 0);
        dns_log(s, &q, LIMIT_NONE, DNS_RCODE_NOERROR, verdict, REASON_NONE, wildcard);
        return;
    }
    if (resolver_cached(s->px->resolver, q.qname, &res, cname)) {
        answer(s, tcp, peer, peer_len, &q, verdict, wildcard, &res);   /* no allocation */
        return;
    }
    if (s->n_pending >= DNS_PENDING_MAX || !(p = calloc(1, sizeof(*p)))) {
        send_response(s, tcp, peer, peer_len, &q, DNS_RCODE_SERVFAIL, NULL, 0);
        return;
    }
    p->s = s;
    p->q = q;
    p->tcp = tcp;
    p->verdict = verdict;
    p->wildcard = wildcard;
    if (peer)
        memcpy(&p->peer, peer, peer_len);
    p->peer_len = peer_len;
    list_push_front(&s->pending, &p->link);
    s->n_pending++;
    if (tcp)
        tcp->refs++;
    p->rq = resolver_lookup(s->px->resolver, q.qname, on_resolved, p);
    if (!p->rq) {
        send_response(s, tcp, peer, peer_len, &q, DNS_RCODE_SERVFAIL, NULL, 0);
        pending_free(p);
    }
}

static void on_udp(evutil_socket_t fd, short what, void *arg)
{
    struct dns_server *s = arg;
    uint8_t buf[DNS_EDNS_MAX * 4];
    int i;

    (void)what;
    for (i = 0; i < 64; i++) {          /* a bounded batch per wakeup */
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&peer,
                             &len);

        if (n < 0)
            return;
        handle(s, NULL, buf, (size_t)n, &peer, len);
    }
}

static void tcp_close(struct dns_tcp *c)
{
    struct dns_server *s = c->s;
    struct list *l;

    if (c->refs > 0) {
        /* answers still coming: detach them, they are dropped */
        for (l = s->pending.next; l != &s->pending; l = l->next) {
            struct dns_pending *p = list_entry(l, struct dns_pending, link);

            if (p->tcp == c)
                p->tcp = NULL, p->peer_len = 0;
        }
    }
    event_free(c->ev);
    event_free(c->timer);
    close(c->fd);
    list_remove(&c->link);
    s->n_clients--;
    free(c);
}

static void on_tcp_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tcp_close(arg);
}

static void on_tcp_data(evutil_socket_t fd, short what, void *arg)
{
    struct dns_tcp *c = arg;
    struct timeval tv = clock_tv(DNS_TCP_IDLE_MS);
    ssize_t n;

    (void)what;
    n = recv(fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        tcp_close(c);
        return;
    }
    c->len += (size_t)n;
    for (;;) {                          /* every complete message in the buffer */
        size_t mlen;

        if (c->len < 2)
            break;
        mlen = (size_t)c->buf[0] << 8 | c->buf[1];
        if (mlen == 0 || mlen > sizeof(c->buf) - 2) {
            tcp_close(c);               /* longer than any query: not a client of ours */
            return;
        }
        if (c->len < 2 + mlen)
            break;
        handle(c->s, c, c->buf + 2, mlen, NULL, 0);
        if (c->closing) {
            tcp_close(c);
            return;
        }
        memmove(c->buf, c->buf + 2 + mlen, c->len - 2 - mlen);
        c->len -= 2 + mlen;
    }
    evtimer_add(c->timer, &tv);
}

static void on_tcp_accept(evutil_socket_t fd, short what, void *arg)
{
    struct dns_server *s = arg;
    struct timeval tv = clock_tv(DNS_TCP_IDLE_MS);
    struct dns_tcp *c;
    int cfd;

    (void)what;
    cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    if (s->n_clients >= DNS_TCP_CLIENTS_MAX || !(c = calloc(1, sizeof(*c)))) {
        close(cfd);
        return;
    }
    c->s = s;
    c->fd = cfd;
    c->ev = event_new(s->px->base, cfd, EV_READ | EV_PERSIST, on_tcp_data, c);
    c->timer = evtimer_new(s->px->base, on_tcp_timeout, c);
    list_push_front(&s->clients, &c->link);
    s->n_clients++;
    if (!c->ev || !c->timer || event_add(c->ev, NULL) < 0 || evtimer_add(c->timer, &tv) < 0)
        tcp_close(c);
}

struct dns_server *dns_server_new(struct proxy *px, const char *spec)
{
    struct dns_server *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    socklen_t len;

    if (!s)
        return NULL;
    s->px = px;
    s->udp = s->tcp = -1;
    list_init(&s->clients);
    list_init(&s->pending);
    if (!sock_parse(spec, &ss, &len)) {
        log_warnx("--dns-listen %s: not ADDR:PORT or [ADDR]:PORT", spec);
        goto fail;
    }
    s->udp = sock_bind(&ss, len, SOCK_DGRAM, 0, 0);
    s->tcp = s->udp < 0 ? -1 : sock_bind(&ss, len, SOCK_STREAM, 0, DNS_TCP_BACKLOG);
    if (s->udp < 0 || s->tcp < 0) {
        log_warnx("--dns-listen %s: %s (the address must be local, e.g. the dns_listen "
                  "address sluice-netsetup printed)", spec, strerror(errno));
        goto fail;
    }
    s->uev = event_new(px->base, s->udp, EV_READ | EV_PERSIST, on_udp, s);
    s->tev = event_new(px->base, s->tcp, EV_READ | EV_PERSIST, on_tcp_accept, s);
    if (!s->uev || !s->tev || event_add(s->uev, NULL) < 0 || event_add(s->tev, NULL) < 0)
        goto fail;
    return s;
fail:
    dns_server_free(s);
    return NULL;
}

void dns_server_free(struct dns_server *s)
{
    if (!s)
        return;
    while (!list_empty(&s->pending))
        pending_free(list_entry(s->pending.next, struct dns_pending, link));
    while (!list_empty(&s->clients))
        tcp_close(list_entry(s->clients.next, struct dns_tcp, link));
    if (s->uev)
        event_free(s->uev);
    if (s->tev)
        event_free(s->tev);
    if (s->udp >= 0)
        close(s->udp);
    if (s->tcp >= 0)
        close(s->tcp);
    free(s);
}
