/*
 * The upstream side of a flow: its name resolved with the proxy's own
 * resolver (never the address the sandbox chose, P4), the answer filtered
 * (P5), and its addresses tried in turn, each within timeouts.connect; or,
 * for a cidr rule, the address the sandbox dialled.
 */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "conn_int.h"
#include "inspect.h"
#include "resolver.h"

static enum step resolved(struct conn *c, const struct resolver_result *res)
{
    size_t i, refused = 0;

    c->n_addrs = 0;
    c->addrs = res->n ? calloc(res->n, sizeof(*c->addrs)) : NULL;
    for (i = 0; c->addrs && res->status == 0 && i < res->n; i++) {
        const struct resolver_addr *a = &res->addrs[i];

        if (proxy_dest_allowed(c->px, a->family, a->addr))
            c->addrs[c->n_addrs++] = *a;
        else
            refused++;
    }
    if (c->n_addrs == 0)
        return conn_refuse(c, refused ? REASON_PRIVATE_DESTINATION : REASON_RESOLVE_FAILED);
    c->state = CONN_CONNECT;
    c->next_addr = 0;
    return conn_connect_next(c);
}

static void on_resolved(const struct resolver_result *res, void *arg)
{
    struct conn *c = arg;

    c->rq = NULL;
    conn_settle(c, resolved(c, res));
}

/* The name is allowed: resolve it ourselves (P4) and connect. */
enum step conn_resolve(struct conn *c)
{
    struct resolver_result res;
    char cname[RESOLVER_NAME_MAX + 1];

    c->state = CONN_RESOLVE;
    conn_arm(c, c->px->policy->settings.timeouts.connect_ms);  /* it counts against connect */
    if (resolver_cached(c->px->resolver, c->host, &res, cname))
        return resolved(c, &res);           /* a name seen before: connect at once */
    if (c->up.rev)
        event_del(c->up.rev);               /* what the client sends next waits */
    c->rq = resolver_lookup(c->px->resolver, c->host, on_resolved, c);
    return c->rq ? STEP_WAIT : conn_refuse(c, REASON_RESOLVE_FAILED);
}

static enum step conn_connected(struct conn *c)
{
    metrics_observe_connect(&c->px->metrics, clock_now_s() - c->connect_start);
    if (c->in)
        return inspect_connected(c);
    return c->peek ? peek_start(c) : relay_start(c);
}

/* The upstream socket is writable: the handshake is done, or failed. */
static void on_upstream(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    (void)fd;
    (void)what;
    if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        close(c->ufd);
        c->ufd = -1;
        conn_settle(c, conn_connect_next(c));
        return;
    }
    conn_settle(c, conn_connected(c));
}

/*
 * Whether the handshake of a connect() that said EINPROGRESS is already done:
 * on a fast path (a neighbour, a veth) the answer is processed before connect()
 * returns, and the relay can start without a loop turn.
 */
static bool connect_done(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
           ti.tcpi_state == TCP_ESTABLISHED;
}

/* Tries the next address of the answer, each within timeouts.connect;
 * connect_failed when none is left. */
enum step conn_connect_next(struct conn *c)
{
    struct sockaddr_storage ss;
    socklen_t len;

    while (c->next_addr < c->n_addrs) {
        const struct resolver_addr *a = &c->addrs[c->next_addr++];

        memset(&ss, 0, sizeof(ss));
        if (a->family == AF_INET) {
            struct sockaddr_in *s = (struct sockaddr_in *)&ss;

            s->sin_family = AF_INET;
            s->sin_port = htons(c->port);
            memcpy(&s->sin_addr, a->addr, 4);
            len = sizeof(*s);
        } else {
            struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

            s->sin6_family = AF_INET6;
            s->sin6_port = htons(c->port);
            memcpy(&s->sin6_addr, a->addr, 16);
            len = sizeof(*s);
        }
        c->ufd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->ufd < 0)
            continue;
        sock_addr_str(&ss, c->up_s);
        c->upstream = ss;
        c->connect_start = clock_now_s();
        if (connect(c->ufd, (struct sockaddr *)&ss, len) == 0 || errno == EINPROGRESS) {
            if (connect_done(c->ufd))
                return conn_connected(c);
            if (c->up.rev)
                event_del(c->up.rev);       /* what the client sends next waits */
            /* the up direction's write event waits for the handshake (relay.c
             * takes it over for the relay) */
            if (c->up.wev)
                event_free(c->up.wev);
            c->up.wev = event_new(c->px->base, c->ufd, EV_WRITE, on_upstream, c);
            conn_arm(c, c->px->policy->settings.timeouts.connect_ms);
            if (c->up.wev && event_add(c->up.wev, NULL) == 0)
                return STEP_WAIT;
        }
        close(c->ufd);
        c->ufd = -1;
    }
    return conn_refuse(c, REASON_CONNECT_FAILED);
}

/* Connects to the address the sandbox dialled (cidr rules, audit mode without a name). */
enum step conn_connect_orig(struct conn *c)
{
    const uint8_t *a = sock_addr(&c->dst);
    int family = c->dst.ss_family;

    if (!proxy_dest_allowed(c->px, family, a))
        return conn_refuse(c, REASON_PRIVATE_DESTINATION);
    c->addrs = calloc(1, sizeof(*c->addrs));
    if (!c->addrs)
        return STEP_CLOSE;
    c->addrs[0].family = family;
    memcpy(c->addrs[0].addr, a, family == AF_INET ? 4 : 16);
    c->n_addrs = 1;
    c->next_addr = 0;
    c->state = CONN_CONNECT;
    return conn_connect_next(c);
}
