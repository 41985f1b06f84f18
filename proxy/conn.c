/*
 * A flow's life and its decisions: SNIFF (read the ClientHello or request
 * head) -> decide with the policy -> RESOLVE and CONNECT (connect.c) ->
 * RELAY (relay.c, conn_http.c) -> conn_close(), which every flow reaches
 * through conn_settle() and which writes the flow record. One timer per flow
 * carries whichever deadline its state has. A reload re-decides every flow.
 */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "budget.h"
#include "clock.h"
#include "conn_int.h"
#include "deny.h"
#include "feedback.h"
#include "inspect.h"
#include "resolver.h"
#include "tls_hello.h"
#include "vpool.h"

/* ---- records and teardown ---- */

void conn_record(const struct conn *c, struct flow_record *r, enum flow_event ev)
{
    memset(r, 0, sizeof(*r));
    r->event = ev;
    r->flow = c->id;
    r->proto = c->proto;
    r->src = c->src_s;
    r->orig_dst = c->dst_s;
    r->host = c->host[0] ? c->host : NULL;
    r->port = c->port;
    r->rule = c->rule[0] ? c->rule : NULL;
    r->upstream = c->up_s[0] ? c->up_s : NULL;
    r->policy = c->policy[0] ? c->policy : NULL;
    r->injected = c->injected[0] ? c->injected : NULL;
}

/* flow_end, with the bytes and the time, for a flow that got its flow_start. */
void conn_end_record(struct conn *c)
{
    struct flow_record r;

    if (!c->started)
        return;
    conn_record(c, &r, EV_FLOW_END);
    r.verdict = c->verdict;
    r.reason = c->end_reason;
    r.has_bytes = true;
    r.bytes_up = c->up.bytes;
    r.bytes_down = c->down.bytes;
    r.duration_ms = clock_now_ms() - c->start_ms;
    proxy_log(c->px, &r);
    c->started = false;
}

/* The one way out: writes flow_end if the flow started, frees everything. */
static void conn_close(struct conn *c)
{
    struct proxy *px = c->px;

    conn_end_record(c);
    if (c->virt)                        /* its mapping lives on for its TTL */
        vpool_release(px->vpool, c->dst.ss_family, sock_addr(&c->dst), clock_now_ms());
    inspect_free(c);
    if (c->rq)
        resolver_cancel(c->rq);
    free(c->addrs);
    if (c->timer)
        event_free(c->timer);
    dir_free(&c->up);
    dir_free(&c->down);
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->ufd >= 0)
        close(c->ufd);
    list_remove(&c->link);
    px->n_conns--;
    free(c);
}

const char *conn_hint(const struct conn *c, enum reason why, char *buf)
{
    const struct policy *p = c->px->policy;

    if (!p->settings.feedback)
        return NULL;
    deny_hint(buf, c->deny_gen == p->generation ? c->deny_rule : NULL, why, c->host, c->port);
    return buf;
}

/* Refuses the flow the way its protocol understands, logs why, and closes it. */
static void conn_deny(struct conn *c, enum reason why)
{
    struct flow_record r;
    uint8_t alert[DENY_TLS_ALERT_LEN];
    char resp[DENY_HTTP_MAX], hint[DENY_HINT_MAX];

    if (c->in) {
        inspect_refuse(c, why);         /* said inside the sandbox's TLS, if it is up */
        shutdown(c->cfd, SHUT_WR);
    } else if (c->proto == PROTO_TLS || c->proto == PROTO_HTTP) {
        size_t n = c->proto == PROTO_TLS
                       ? deny_tls_alert(alert, why)
                       : deny_http(resp, sizeof(resp), c->host[0] ? c->host : "-", c->port,
                                   why, false, conn_hint(c, why, hint));

        /* best effort: a few bytes into an empty socket buffer; failure changes nothing */
        (void)!send(c->cfd, c->proto == PROTO_TLS ? (const void *)alert : resp, n,
                    MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(c->cfd, SHUT_WR);
    } else {
        struct linger rst = {1, 0};     /* anything else: a TCP reset */

        setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
    }
    conn_record(c, &r, EV_DENY);
    r.verdict = VERDICT_DENY;
    r.reason = why;
    proxy_log(c->px, &r);
    /* a flow denied mid-relay (a later request) still gets its flow_end, with bytes */
    conn_close(c);
}

void conn_settle(struct conn *c, enum step st)
{
    if (st == STEP_DENY)
        conn_deny(c, c->why);
    else if (st == STEP_CLOSE)
        conn_close(c);
}

enum step conn_refuse(struct conn *c, enum reason why)
{
    c->why = why;
    return STEP_DENY;
}

void conn_arm(struct conn *c, uint64_t ms)
{
    struct timeval tv = clock_tv(ms);

    evtimer_add(c->timer, &tv);
}

/* ---- the decision ---- */

/* Keeps what decided the flow: the rule (as FILE:LINE), the policy's hash, the verdict. */
static void conn_note(struct conn *c, const struct policy_decision *d)
{
    const struct policy *p = c->px->policy;

    if (d->rule)
        snprintf(c->rule, sizeof(c->rule), "%s:%u", d->rule->file, d->rule->line);
    memcpy(c->policy, p->hash, sizeof(c->policy));
    if (d->outcome != DECISION_DENY)    /* a denied flow ends: its records say deny */
        c->verdict = d->outcome == DECISION_ALLOW ? VERDICT_ALLOW : VERDICT_AUDIT;
}

/* What policy_decide() said in D: noted; true when the flow may go on (allowed,
 * or audited: then, unless QUIET, with a deny record of verdict audit saying
 * what enforce would have done). */
static bool conn_decided(struct conn *c, const struct policy_decision *d, const char *host,
                         size_t len, bool quiet)
{
    struct flow_record r;

    conn_note(c, d);
    if (d->outcome == DECISION_DENY) {
        c->deny_rule = d->rule;
        c->deny_gen = c->px->policy->generation;
        return false;
    }
    if (d->outcome == DECISION_AUDIT && !quiet) {
        conn_record(c, &r, EV_DENY);
        if (host) {
            r.host = host;
            r.host_len = len;
        }
        r.verdict = VERDICT_AUDIT;
        r.reason = d->reason;
        proxy_log(c->px, &r);
    }
    return true;
}

/*
 * The data budget of the name HOST (LEN bytes) under D's rule: the flow holds its
 * entry from now on (none when the rule gives no budget). True when it is spent.
 */
static bool conn_budget(struct conn *c, const char *host, size_t len,
                        const struct policy_decision *d)
{
    struct proxy *px = c->px;
    struct policy_budget lim;

    c->budget.key = 0;
    if (d->outcome == DECISION_DENY || !host || !budget_of(px->policy, d->rule, &lim))
        return false;
    if (!px->budgets && !(px->budgets = budgets_new(px->hash_key)))
        return false;           /* no memory: no budget rather than no service */
    return budget_get(px->budgets, host, len, &lim, clock_now_ms(), &c->budget);
}

/* policy_decide() for a flow: a virtual address's name that the policy no
 * longer knows was taken away by a reload (it was allowed when answered); a name
 * whose budget is spent gets no new flow until its window moves on. */
static void decide(struct conn *c, const struct policy_query *q, struct policy_decision *d)
{
    policy_decide(c->px->policy, q, d);
    if (c->virt && d->outcome != DECISION_ALLOW && d->reason == REASON_NOT_ALLOWLISTED)
        d->reason = REASON_REVOKED;
    if (conn_budget(c, (const char *)q->host, q->host_len, d) && d->reason == REASON_NONE) {
        d->reason = REASON_BUDGET_EXCEEDED;
        d->outcome = c->px->policy->settings.mode == POLICY_AUDIT ? DECISION_AUDIT
                                                                  : DECISION_DENY;
    }
}

/* Applies the policy to HOST on the flow's port (and to REQ's method and path when given). */
bool conn_decide(struct conn *c, const char *host, size_t len, const struct http_head *req,
                 bool quiet, struct policy_decision *d)
{
    struct policy_query q = {.host = (const uint8_t *)host, .host_len = len, .port = c->port};

    if (req) {
        q.method = req->method;
        q.target = (const char *)req->path;
        q.target_len = req->path_len;
    }

    decide(c, &q, d);
    return conn_decided(c, d, host, len, quiet);
}

/* A refusal found before any rule (no SNI, no protocol, another Host...): only the mode decides. */
bool conn_decide_refused(struct conn *c, enum reason why, bool quiet, struct policy_decision *d)
{
    struct policy_query q = {.refused = why};

    policy_decide(c->px->policy, &q, d);
    return conn_decided(c, d, NULL, 0, quiet);
}

/* The same, for a whole flow: denied, or in audit mode let through. */
static enum step conn_deny_or_audit(struct conn *c, enum reason why)
{
    struct policy_decision d;

    if (!conn_decide_refused(c, why, false, &d))
        return conn_refuse(c, why);
    c->refused = why;                   /* a reload to enforce revokes the flow */
    return c->host[0] ? sniff_go(c) : conn_connect_orig(c);
}

/* ---- raw TCP by name (virtual addresses) ---- */

enum step sniff_go(struct conn *c)
{
    return c->state == CONN_PEEK ? relay_start(c) : conn_resolve(c);
}

static enum step sniff_decide(struct conn *c, bool full);

enum step peek_over(struct conn *c)
{
    return c->up.len ? sniff_decide(c, true) : sniff_go(c);
}

/*
 * The server's side is watched by the event that becomes the relay's down
 * direction (on_dir() sends its first wake-up here): the server speaking first
 * costs no epoll change, and its greeting is relayed in the same loop turn.
 * The client's side is not read now but when epoll says so: a read here found
 * nothing whenever the server speaks first (an extra recv per connection,
 * measured with strace), and bytes already there are reported at once.
 */
enum step peek_start(struct conn *c)
{
    c->state = CONN_PEEK;
    conn_arm(c, c->px->policy->settings.timeouts.sniff_ms);
    c->down.rev = event_new(c->px->base, c->ufd, EV_READ | EV_PERSIST, on_dir, &c->down);
    if (!c->down.rev || event_add(c->down.rev, NULL) < 0 || event_add(c->up.rev, NULL) < 0)
        return STEP_CLOSE;
    return STEP_WAIT;
}

/*
 * A connection to a virtual address (dns.answers: virtual) means the name the
 * address was handed out for. True when that settled the flow (*ST): an
 * address with no mapping, a name the policy refuses on this port, or raw TCP
 * by name, connected at once (the server may speak first) and PEEKed; false
 * to sniff as usual (not a virtual address; or TLS or HTTP expected, port 80
 * or 443 or an inspect or http rule: then SNI and Host must be the name).
 */
static bool conn_virtual(struct conn *c, enum step *st)
{
    struct proxy *px = c->px;
    const uint8_t *addr = sock_addr(&c->dst);
    const char *name;
    struct policy_query q = {.port = c->port};
    struct policy_decision d;

    if (!px->vpool || !vpool_contains(px->vpool, c->dst.ss_family, addr))
        return false;
    name = vpool_lookup(px->vpool, c->dst.ss_family, addr, true);
    if (!name) {
        *st = conn_refuse(c, REASON_NOT_ALLOWLISTED);   /* never handed out (here) */
        return true;
    }
    c->virt = true;
    q.host_len = strlen(name);
    memcpy(c->host, name, q.host_len + 1);
    if (c->port == 80 || c->port == 443)
        return false;                   /* decided once, by the SNI or Host sniffed */
    q.host = (const uint8_t *)c->host;
    decide(c, &q, &d);
    if (d.rule && (d.rule->inspect || d.rule->n_http))
        return false;
    if (!conn_decided(c, &d, NULL, 0, false))
        *st = conn_refuse(c, d.reason);
    else
        *st = (c->peek = true, conn_resolve(c));
    return true;
}

/* ---- the timer ---- */

/* The flow's one deadline passed; what it meant depends on where the flow is. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    uint64_t idle, quiet;

    (void)fd;
    (void)what;
    switch (c->state) {
    case CONN_SNIFF:
        conn_settle(c, conn_deny_or_audit(c, REASON_SNIFF_TIMEOUT));
        return;
    case CONN_TLS:                      /* decided already: no audit pass-through */
        conn_settle(c, conn_refuse(c, REASON_SNIFF_TIMEOUT));
        return;
    case CONN_RESOLVE:
        conn_settle(c, conn_refuse(c, REASON_RESOLVE_FAILED));
        return;
    case CONN_PEEK:                     /* neither side spoke: a quiet raw protocol */
        conn_settle(c, peek_over(c));
        return;
    case CONN_CONNECT:                  /* this address did not answer: the next one */
        if (c->in)
            inspect_upstream_drop(c);   /* its TLS, if the handshake had begun */
        if (c->up.wev)
            event_del(c->up.wev);
        close(c->ufd);
        c->ufd = -1;
        conn_settle(c, conn_connect_next(c));
        return;
    case CONN_RELAY:
        idle = c->px->policy->settings.timeouts.idle_ms;
        quiet = clock_now_ms() - c->last_active_ms;
        if (quiet >= idle)
            conn_settle(c, STEP_CLOSE);
        else
            conn_arm(c, idle - quiet);
        return;
    }
}

/* ---- sniffing ---- */

/* http://sluice.internal/: the sandbox's recent denials, from the proxy itself. */
static enum step feedback_serve(struct conn *c, const uint8_t *head, size_t len)
{
    int sndbuf = 1 << 16;           /* the whole page in one send */
    char *page;
    size_t n;

    if (feedback_page(c->px->feedback, c->px->policy->hash, feedback_wants_json(head, len),
                      &page, &n) < 0)
        return STEP_CLOSE;
    setsockopt(c->cfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    (void)!send(c->cfd, page, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(page);
    shutdown(c->cfd, SHUT_WR);
    return STEP_CLOSE;                  /* no record: nothing left the proxy */
}

/* An inspect rule allowed the SNI: the flow is inspected, never passed on by
 * its SNI alone (a proxy without a CA refuses such a policy; fail closed). */
static enum step conn_inspect(struct conn *c, const struct policy_rule *r)
{
    size_t i, off = 0;

    if (!c->px->tls)
        return conn_refuse(c, REASON_UPSTREAM_CERT_INVALID);
    for (i = 0; i < r->n_inject; i++) {
        int n = snprintf(c->injected + off, sizeof(c->injected) - off, "%s%s", i ? "," : "",
                         r->inject[i].header);

        if (n < 0 || (size_t)n >= sizeof(c->injected) - off)
            break;
        off += (size_t)n;
    }
    return inspect_start(c);
}

/* What the first bytes say; STEP_WAIT with the state still SNIFF while more are needed. */
static enum step sniff_decide(struct conn *c, bool full)
{
    const uint8_t *b = c->up.buf;
    size_t n = c->up.len;
    struct tls_hello hello;
    struct http_head head;
    enum tls_hello_status ts = tls_hello_parse(b, n, &hello);
    enum http_head_status hs;
    enum reason why = REASON_NONE;
    struct policy_decision d;
    const struct policy_settings *set = &c->px->policy->settings;

    if (ts == TLS_HELLO_NEED_MORE && !full)
        return STEP_WAIT;
    if (ts != TLS_HELLO_NOT_TLS) {
        c->proto = PROTO_TLS;
        if (ts != TLS_HELLO_OK || hello.sni_state == TLS_SNI_NONE)
            why = REASON_NO_SNI;
        else if (hello.sni_state != TLS_SNI_OK)
            why = REASON_INVALID_HOSTNAME;
        else if (hello.ech && set->ech == ECH_DENY)
            why = REASON_ECH_REJECTED;
        if (ts == TLS_HELLO_OK && hello.sni_state == TLS_SNI_OK && !c->virt)
            memcpy(c->host, hello.sni, hello.sni_len + 1);
        if (why == REASON_NONE && proxy_is_feedback_name(hello.sni, hello.sni_len))
            return conn_refuse(c, REASON_NOT_ALLOWLISTED);  /* plain HTTP only; never sent on */
        if (why != REASON_NONE)
            return conn_deny_or_audit(c, why);  /* refused before any rule is asked */
        if (c->virt && strcmp(hello.sni, c->host) != 0)
            return conn_refuse(c, REASON_HOST_MISMATCH);    /* another name's address */
        if (!conn_decide(c, hello.sni, hello.sni_len, NULL, false, &d))
            return conn_refuse(c, d.reason);
        if (d.rule && d.rule->inspect)  /* (a reload made it one since the peek began) */
            return c->state == CONN_PEEK ? conn_refuse(c, REASON_REVOKED)
                                         : conn_inspect(c, d.rule);
        return sniff_go(c);
    }

    hs = http_head_parse(b, n, &head);
    if (hs == HTTP_HEAD_NEED_MORE && !full)
        return STEP_WAIT;
    if (hs == HTTP_HEAD_NOT_HTTP) {
        c->proto = PROTO_TCP;
        if (c->state == CONN_PEEK)
            return sniff_go(c);         /* raw TCP by name: what its rule allowed */
        return conn_deny_or_audit(c, REASON_UNKNOWN_PROTOCOL);
    }
    c->proto = PROTO_HTTP;
    if (hs != HTTP_HEAD_OK)
        return conn_refuse(c, REASON_UNKNOWN_PROTOCOL);
    if (head.host_state == HTTP_HOST_OK && !c->virt)
        memcpy(c->host, head.host, head.host_len + 1);
    if (head.host_state == HTTP_HOST_OK && proxy_is_feedback_name(head.host, head.host_len))
        return set->feedback ? feedback_serve(c, b, head.head_len)
                             : conn_refuse(c, REASON_NOT_ALLOWLISTED);
    if (head.host_state == HTTP_HOST_OK && c->virt && strcmp(head.host, c->host) != 0)
        why = REASON_HOST_MISMATCH;         /* another name's address */
    else if (head.host_state == HTTP_HOST_MISMATCH)
        why = REASON_HOST_MISMATCH;
    else if (head.host_state != HTTP_HOST_OK)
        why = REASON_INVALID_HOSTNAME;
    else if (head.port != c->port)
        why = REASON_HOST_MISMATCH;         /* Host names another port than the one dialled */
    if (why != REASON_NONE)
        return conn_refuse(c, why);
    /* the head itself is checked again, with its method and path, by the relay,
     * which also writes the audit record: this look is quiet */
    if (!conn_decide(c, head.host, head.host_len, NULL, true, &d))
        return conn_refuse(c, d.reason);
    return sniff_go(c);
}

/* Reads what the client sent and decides when it is enough. */
static enum step sniff_read(struct conn *c)
{
    ssize_t n = recv(c->cfd, c->up.buf + c->up.len, CONN_SNIFF_MAX - c->up.len, 0);

    if (n < 0 && errno == EAGAIN)
        return STEP_WAIT;
    if (n <= 0) {
        enum step st;

        /* the client gave up: decide on what there is. A connection that closed
         * without a byte (a port scan) is an attempt too: it is logged as one no
         * protocol could be read from (and in audit mode let through as such) */
        if (c->up.len == 0)
            return c->state == CONN_PEEK ? sniff_go(c)
                                         : conn_deny_or_audit(c, REASON_UNKNOWN_PROTOCOL);
        st = sniff_decide(c, true);
        return st == STEP_WAIT && (c->state == CONN_SNIFF || c->state == CONN_PEEK)
                   ? STEP_CLOSE : st;
    }
    c->up.len += (size_t)n;
    return sniff_decide(c, c->up.len == CONN_SNIFF_MAX);
}

/* The client's socket is readable: while sniffing, more of the first bytes;
 * then (the same event) the up direction's. */
void on_client(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    conn_settle(c, c->state == CONN_RELAY ? dir_pump(&c->up, false) : sniff_read(c));
}

/* ---- accepting ---- */

/* Raw TCP to an address a cidr rule allows: no name, no sniffing. */
static bool try_cidr(struct conn *c, enum step *st)
{
    struct policy_query q = {.family = c->dst.ss_family, .addr = sock_addr(&c->dst),
                             .port = c->port};
    struct policy_decision d;

    policy_decide(c->px->policy, &q, &d);
    if (d.outcome != DECISION_ALLOW)
        return false;               /* sniffed for a name instead (audit included) */
    c->proto = PROTO_TCP;
    conn_note(c, &d);
    *st = conn_connect_orig(c);
    return true;
}

/*
 * Over limits.max_connections or new_connections_per_second: a reset at
 * once (the client stops waiting), and a limit record.
 */
static void conn_refuse_early(struct proxy *px, int fd, const struct sockaddr_storage *src,
                              enum flow_limit limit, enum reason why)
{
    struct linger rst = {1, 0};
    struct sockaddr_storage dst;
    char src_s[SOCK_ADDR_STR], dst_s[SOCK_ADDR_STR];
    socklen_t len = sizeof(dst);
    struct flow_record r;

    memset(&r, 0, sizeof(r));
    sock_addr_str(src, src_s);
    r.src = src_s;
    if (getsockname(fd, (struct sockaddr *)&dst, &len) == 0) {
        sock_addr_str(&dst, dst_s);
        r.orig_dst = dst_s;
        r.port = sock_port(&dst);
    }
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
    close(fd);
    r.event = EV_LIMIT;
    r.proto = PROTO_TCP;
    r.verdict = VERDICT_DENY;
    r.reason = why;
    r.limit = limit;
    proxy_log(px, &r);
}

void conn_accept(struct proxy *px, int fd, const struct sockaddr_storage *peer)
{
    const struct policy_settings *set = &px->policy->settings;
    uint32_t rate = set->limits.new_connections_per_second;
    struct conn *c;
    socklen_t len;
    enum step st;

    if (set->limits.max_connections && px->n_conns >= set->limits.max_connections) {
        conn_refuse_early(px, fd, peer, LIMIT_MAX_CONNECTIONS, REASON_TOO_MANY_CONNECTIONS);
        return;
    }
    /* one second deep: a client may open a second's worth at once */
    if (rate && limit_bucket_take(&px->new_conns, rate, rate, 1, clock_now_ms()) == 0) {
        conn_refuse_early(px, fd, peer, LIMIT_NEW_CONNECTIONS, REASON_RATE_LIMITED);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->px = px;
    c->id = ++px->last_flow;
    c->cfd = fd;
    c->ufd = -1;
    c->proto = PROTO_TCP;
    c->up.c = c->down.c = c;
    c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
    c->start_ms = clock_now_ms();
    list_push_front(&px->conns, &c->link);
    px->n_conns++;

    c->src = *peer;
    len = sizeof(c->dst);           /* TPROXY: the address the sandbox dialled */
    getsockname(fd, (struct sockaddr *)&c->dst, &len);
    sock_addr_str(&c->src, c->src_s);
    sock_addr_str(&c->dst, c->dst_s);
    c->port = sock_port(&c->dst);

    c->up.rev = event_new(px->base, fd, EV_READ | EV_PERSIST, on_client, c);
    c->timer = evtimer_new(px->base, on_timer, c);
    c->up.buf = malloc(CONN_SNIFF_MAX);
    if (!c->up.rev || !c->timer || !c->up.buf) {
        conn_close(c);
        return;
    }
    c->up.cap = CONN_SNIFF_MAX;
    if (conn_virtual(c, &st) || (!c->virt && try_cidr(c, &st))) {
        conn_settle(c, st);
        return;
    }
    conn_arm(c, set->timeouts.sniff_ms);
    /* the first bytes often came with the handshake's last ACK: read them now,
     * and watch the socket only if they did not */
    st = sniff_read(c);
    if (st == STEP_WAIT && c->state == CONN_SNIFF && event_add(c->up.rev, NULL) < 0)
        st = STEP_CLOSE;
    conn_settle(c, st);
}

/* ---- reloads ---- */

/*
 * Whether the policy now in force still lets C go on; either way it becomes
 * the flow's deciding policy (the records name it). Asked again: its host
 * (or, without one, the address it dialled), what audit let through, and the
 * address it is connected to or still to try (P5; the addresses not yet tried
 * that the new policy refuses are dropped).
 */
static bool conn_recheck(struct conn *c)
{
    struct policy_query q = {.port = c->port, .refused = c->refused};
    struct policy_decision d;
    size_t i, n;

    if (c->host[0]) {
        q.host = (const uint8_t *)c->host;
        q.host_len = strlen(c->host);
    } else {
        q.family = c->dst.ss_family;    /* a cidr rule, or audit without a name */
        q.addr = sock_addr(&c->dst);
        q.refused = REASON_NONE;        /* enforce asks cidr rules before sniffing */
    }
    policy_decide(c->px->policy, &q, &d);
    if (d.outcome == DECISION_DENY && !c->host[0] && c->refused != REASON_NONE) {
        q.refused = c->refused;         /* no cidr rule: what audit let through decides */
        policy_decide(c->px->policy, &q, &d);
    }
    c->rule[0] = '\0';                  /* the old policy's rule names nothing now */
    conn_note(c, &d);
    /* the name's budget as the new rule gives it (kept when unchanged); spent or not,
     * an open flow goes on: it waits for the window, it is not revoked */
    conn_budget(c, c->host[0] ? c->host : NULL, strlen(c->host), &d);
    if (d.outcome == DECISION_DENY)
        return false;
    /* a flow passed on by its SNI that an inspect rule now covers could not
     * have its requests checked: it ends, and its next connection is inspected */
    if (d.rule && d.rule->inspect && !c->in && c->proto == PROTO_TLS)
        return false;
    if (c->ufd >= 0 &&
        !proxy_dest_allowed(c->px, c->upstream.ss_family, sock_addr(&c->upstream)))
        return false;
    for (i = n = c->next_addr; i < c->n_addrs; i++)
        if (proxy_dest_allowed(c->px, c->addrs[i].family, c->addrs[i].addr))
            c->addrs[n++] = c->addrs[i];
    c->n_addrs = n;
    return true;
}

void conn_revalidate(struct proxy *px)
{
    struct list *n, *next;

    relay_limits_changed(px);           /* bandwidth limits may have changed */
    for (n = px->conns.next; n != &px->conns; n = next) {
        struct conn *c = list_entry(n, struct conn, link);
        struct flow_record r;

        next = n->next;
        /* a flow still sniffing is decided by the new policy when its bytes are in */
        if (c->state == CONN_SNIFF || conn_recheck(c))
            continue;
        if (c->state != CONN_RELAY) {
            /* nothing relayed yet: the protocol's refusal */
            conn_settle(c, conn_refuse(c, REASON_REVOKED));
            continue;
        }
        conn_record(c, &r, EV_DENY);
        r.verdict = VERDICT_DENY;
        r.reason = REASON_REVOKED;
        proxy_log(px, &r);
        c->end_reason = REASON_REVOKED;
        conn_settle(c, STEP_CLOSE);
    }
}

void conn_close_all(struct proxy *px)
{
    while (!list_empty(&px->conns))
        conn_close(list_entry(px->conns.next, struct conn, link));
}

size_t conn_list(const struct proxy *px, struct conn_info *out, size_t max)
{
    static const char *const states[] = {
        [CONN_SNIFF] = "sniff", [CONN_TLS] = "tls", [CONN_RESOLVE] = "resolve",
        [CONN_CONNECT] = "connect", [CONN_PEEK] = "peek",
        [CONN_RELAY] = "relay",
    };
    const struct list *l;
    uint64_t now = clock_now_ms();
    size_t n = 0;

    for (l = px->conns.next; l != &px->conns && n < max; l = l->next, n++) {
        const struct conn *c = list_entry(l, const struct conn, link);
        struct conn_info *i = &out[n];

        i->id = c->id;
        i->state = states[c->state];
        i->proto = flow_proto_name(c->proto);
        i->src = c->src_s;
        i->orig_dst = c->dst_s;
        i->virt = c->virt;
        i->host = c->host;
        i->upstream = c->up_s;
        i->port = c->port;
        i->bytes_up = c->up.bytes;
        i->bytes_down = c->down.bytes;
        i->age_ms = now - c->start_ms;
    }
    return n;
}
