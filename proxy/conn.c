/*
 * A flow's life: SNIFF (read the ClientHello or request head) -> decide with
 * the policy -> RESOLVE the name with our own resolver (never trusting the
 * address the sandbox chose) -> CONNECT to an allowed address -> RELAY with
 * splice(2) -> conn_close(), which every path reaches and which writes the
 * flow record. Plain HTTP keeps the client-to-server direction in user space
 * so that every request head on a keep-alive connection is checked.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "deny.h"
#include "http_head.h"
#include "resolver.h"
#include "tls_hello.h"

#define SPLICE_CHUNK (256 * 1024)       /* bytes moved per splice(2) call, and pipe size */
#define BANDWIDTH_WAKE 16384            /* a throttled direction waits for this much budget */
#define HTTP_BUF_MAX (HTTP_HEAD_MAX + 4096) /* user-space window of an HTTP direction */
#define ADDR_STR 64
#define DRAINED_MAX 16384               /* a short read below this emptied the socket */
#define STATUS_101_LEN 13               /* "HTTP/1.1 101 ": an accepted upgrade's answer */

enum conn_state { CONN_SNIFF, CONN_RESOLVE, CONN_CONNECT, CONN_RELAY };

struct conn;

/* One direction of the relay. Bytes in buf go first, then the pipe is used. */
struct dir {
    struct conn *c;
    int from, to;
    struct event *rev, *wev;
    uint8_t *buf;               /* user-space bytes: [off, checked) may be written */
    size_t cap, off, len, checked;
    int pipe[2];                /* splice path; -1 until first used */
    size_t in_pipe;
    bool use_splice;
    bool http;                  /* check each request head (client to server, plain HTTP) */
    bool await_upgrade;         /* a websocket upgrade went out: hold the rest until the
                                   server's status line says whether it was accepted */
    uint32_t requests;          /* heads let through to this upstream connection */
    bool rehost;                /* a request for another allowed host is held at checked:
                                   it gets its own upstream once this one is done */
    struct http_framing fr;
    bool eof, shut;
    uint64_t bytes;
    uint64_t *total;            /* the process's counter for this direction */
    int way;                    /* PROXY_UP or PROXY_DOWN */
    struct list wait;           /* on px->bandwidth[way].waiting while out of budget */
    bool limit_logged;          /* this flow's limit record for this direction is out */
};

struct conn {
    struct list link;           /* on px->conns */
    struct proxy *px;
    uint64_t id;
    enum conn_state state;
    int cfd, ufd;
    struct sockaddr_storage src, dst;
    struct sockaddr_storage upstream;   /* connected to (or trying), once CONNECT */
    char src_s[ADDR_STR], dst_s[ADDR_STR], up_s[ADDR_STR];
    enum flow_proto proto;      /* tls, http, tcp */
    char host[HOSTNAME_MAX + 1];
    uint16_t port;
    char rule[128];
    char policy[POLICY_HASH_HEX + 1];   /* the policy that decided; records carry it */
    enum flow_verdict verdict;
    enum reason refused;        /* a protocol-level refusal audit mode let through */
    enum reason end_reason;     /* why flow_end came early (revoked), or none */
    bool started;               /* flow_start written: flow_end is owed */
    struct event *cev;          /* client readable, while sniffing; then the up
                                   direction's read event (see dir_init()) */
    struct event *timer;        /* sniff, connect or idle deadline */
    struct resolver_query *rq;
    struct resolver_addr *addrs;    /* where to connect, until connected */
    size_t n_addrs, next_addr;
    struct dir up, down;        /* client to server, server to client */
    struct timespec start;
    struct timespec connect_start;  /* for sluice_upstream_connect_seconds */
    uint64_t last_active_ms;
};

static void addr_str(const struct sockaddr_storage *ss, char out[ADDR_STR])
{
    char a[INET6_ADDRSTRLEN] = "?";

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
        snprintf(out, ADDR_STR, "%s:%u", a, ntohs(s->sin_port));
    } else {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
        snprintf(out, ADDR_STR, "[%s]:%u", a, ntohs(s->sin6_port));
    }
}

static uint16_t ss_port(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static const uint8_t *ss_addr(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET
               ? (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr
               : (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
}

/* ---- records and teardown ---- */

static void record_base(const struct conn *c, struct flow_record *r, enum flow_event ev)
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
}

/*
 * Splice pipes are lent from a small pool while a direction has data moving
 * and given back when it goes quiet, so an idle flow holds two descriptors
 * instead of six and no pipe buffers.
 */
static int pipe_get(struct proxy *px, int p[2])
{
    if (px->n_pipes > 0) {
        px->n_pipes--;
        p[0] = px->pipes[px->n_pipes][0];
        p[1] = px->pipes[px->n_pipes][1];
        return 0;
    }
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    /* one splice moves up to a pipe's capacity: a larger pipe, fewer calls and
     * wake-ups per MiB (best effort: pipe-max-size or the user's pipe quota may
     * refuse, and 64 KiB still works) */
    fcntl(p[1], F_SETPIPE_SZ, SPLICE_CHUNK);
    return 0;
}

/* Returns D's pipe to the pool (or closes it when full, or when it holds data). */
static void pipe_put(struct proxy *px, struct dir *d)
{
    if (d->pipe[0] < 0)
        return;
    if (d->in_pipe == 0 && px->n_pipes < PROXY_PIPE_POOL) {
        px->pipes[px->n_pipes][0] = d->pipe[0];
        px->pipes[px->n_pipes][1] = d->pipe[1];
        px->n_pipes++;
    } else {
        close(d->pipe[0]);
        close(d->pipe[1]);
    }
    d->pipe[0] = d->pipe[1] = -1;
    d->in_pipe = 0;
}

void conn_shared_init(struct proxy *px)
{
    int way;

    list_init(&px->conns);
    for (way = 0; way < 2; way++) {
        px->bandwidth[way].px = px;
        px->bandwidth[way].way = way;
        list_init(&px->bandwidth[way].waiting);
    }
}

void conn_shared_free(struct proxy *px)
{
    int way;

    while (px->n_pipes > 0) {
        px->n_pipes--;
        close(px->pipes[px->n_pipes][0]);
        close(px->pipes[px->n_pipes][1]);
    }
    for (way = 0; way < 2; way++)
        if (px->bandwidth[way].timer)
            event_free(px->bandwidth[way].timer);
}

/* ---- bandwidth limits: one bucket per direction for the whole sandbox ---- */

static uint64_t bandwidth_rate(const struct proxy *px, int way)
{
    const struct policy_settings *set = &px->policy->settings;

    return way == PROXY_UP ? set->limits.upload_bytes_per_second
                           : set->limits.download_bytes_per_second;
}

/* A tenth of a second of traffic, and at least one wake-up's worth (or the whole rate). */
static uint64_t bandwidth_depth(uint64_t rate)
{
    uint64_t floor = rate < BANDWIDTH_WAKE ? rate : BANDWIDTH_WAKE;

    return rate / 10 > floor ? rate / 10 : floor;
}

/* How many of WANT bytes D may move now (all of them when there is no limit). */
static size_t dir_budget(struct dir *d, size_t want)
{
    struct proxy *px = d->c->px;
    uint64_t rate = bandwidth_rate(px, d->way);

    if (rate == 0)
        return want;
    return (size_t)limit_bucket_take(&px->bandwidth[d->way].bucket, rate,
                                     bandwidth_depth(rate), want, limit_now_ms());
}

/* Gives back the part of a budget of GRANTED bytes that a read of N did not use. */
static void dir_refund(struct dir *d, size_t granted, ssize_t n)
{
    struct proxy *px = d->c->px;
    size_t used = n > 0 ? (size_t)n : 0;

    if (bandwidth_rate(px, d->way) != 0 && granted > used)
        limit_bucket_refund(&px->bandwidth[d->way].bucket, granted - used);
}

/* Budget is back (or the limit changed): every waiting direction tries again. */
static void on_bandwidth(evutil_socket_t fd, short what, void *arg)
{
    struct proxy_bandwidth *bw = arg;

    (void)fd;
    (void)what;
    while (!list_empty(&bw->waiting)) {
        struct dir *d = list_entry(bw->waiting.next, struct dir, wait);

        list_remove(&d->wait);
        event_active(d->rev, EV_READ, 0);
    }
}

/*
 * D is out of budget: it stops reading (the sender feels TCP's back-pressure,
 * and zero copy is kept: nothing is read that cannot be sent) until the
 * bucket holds a wake-up's worth again. The flow's first wait in each
 * direction is a limit record. False when the flow had to be closed.
 */
static bool dir_throttle(struct dir *d)
{
    struct conn *c = d->c;
    struct proxy_bandwidth *bw = &c->px->bandwidth[d->way];
    uint64_t rate = bandwidth_rate(c->px, d->way), need = bandwidth_depth(rate);
    struct timeval tv;
    uint64_t ms;

    event_del(d->rev);
    event_del(d->wev);
    pipe_put(c->px, d);
    if (!bw->timer) {
        bw->timer = evtimer_new(c->px->base, on_bandwidth, bw);
        if (!bw->timer)
            return false;
    }
    if (!list_linked(&d->wait))
        list_push_back(&bw->waiting, &d->wait);
    if (!d->limit_logged) {
        struct flow_record r;

        record_base(c, &r, EV_LIMIT);
        r.reason = REASON_RATE_LIMITED;
        r.limit = d->way == PROXY_UP ? LIMIT_UPLOAD : LIMIT_DOWNLOAD;
        proxy_log(c->px, &r);
        d->limit_logged = true;
    }
    if (!evtimer_pending(bw->timer, NULL)) {
        ms = limit_bucket_wait_ms(&bw->bucket, rate, need < BANDWIDTH_WAKE ? need
                                                                           : BANDWIDTH_WAKE);
        tv.tv_sec = (time_t)(ms / 1000);
        tv.tv_usec = (suseconds_t)(ms % 1000 * 1000);
        evtimer_add(bw->timer, &tv);
    }
    return true;
}

/* Frees D's events and gives back its pipe; its buffer stays. */
static void dir_release(struct dir *d)
{
    list_remove(&d->wait);
    if (d->c)
        pipe_put(d->c->px, d);
    if (d->rev)
        event_free(d->rev);
    if (d->wev)
        event_free(d->wev);
    d->rev = d->wev = NULL;
}

static void dir_free(struct dir *d)
{
    dir_release(d);
    free(d->buf);
}

/* flow_end, with the bytes and the time, for a flow that got its flow_start. */
static void conn_end_record(struct conn *c)
{
    struct flow_record r;
    struct timespec t;

    if (!c->started)
        return;
    record_base(c, &r, EV_FLOW_END);
    clock_gettime(CLOCK_MONOTONIC, &t);
    r.verdict = c->verdict;
    r.reason = c->end_reason;
    r.has_bytes = true;
    r.bytes_up = c->up.bytes;
    r.bytes_down = c->down.bytes;
    r.duration_ms = (uint64_t)((t.tv_sec - c->start.tv_sec) * 1000 +
                               (t.tv_nsec - c->start.tv_nsec) / 1000000);
    proxy_log(c->px, &r);
    c->started = false;
}

/* The one way out: writes flow_end if the flow started, frees everything. */
static void conn_close(struct conn *c)
{
    struct proxy *px = c->px;

    conn_end_record(c);
    if (c->rq)
        resolver_cancel(c->rq);
    free(c->addrs);
    if (c->cev)
        event_free(c->cev);
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

/* Refuses the flow the way its protocol understands, logs why, and closes it. */
static void conn_deny(struct conn *c, enum reason why)
{
    struct flow_record r;
    uint8_t alert[DENY_TLS_ALERT_LEN];
    char resp[DENY_HTTP_MAX];
    size_t n = 0;
    const void *msg = NULL;

    if (c->proto == PROTO_TLS) {
        n = deny_tls_alert(alert, why);
        msg = alert;
    } else if (c->proto == PROTO_HTTP) {
        n = deny_http_403(resp, sizeof(resp), c->host[0] ? c->host : "-", c->port, why);
        msg = resp;
    }
    if (msg) {
        /* best effort: a few bytes into an empty socket buffer; failure changes nothing */
        (void)!send(c->cfd, msg, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(c->cfd, SHUT_WR);
    } else {
        struct linger rst = {1, 0};     /* anything else: a TCP reset */

        setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
    }
    record_base(c, &r, EV_DENY);
    r.verdict = VERDICT_DENY;
    r.reason = why;
    proxy_log(c->px, &r);
    /* a flow denied mid-relay (a later request) still gets its flow_end, with bytes */
    conn_close(c);
}

/* ---- the decision ---- */

/* Keeps what decided the flow: the rule (as FILE:LINE), the policy's hash, the verdict. */
static void conn_note(struct conn *c, const struct policy_decision *d)
{
    const struct policy *p = c->px->policy;

    if (d->rule)
        snprintf(c->rule, sizeof(c->rule), "%s:%u", p->file, d->rule->line);
    memcpy(c->policy, p->hash, sizeof(c->policy));
    if (d->outcome != DECISION_DENY)    /* a denied flow ends: its records say deny */
        c->verdict = d->outcome == DECISION_ALLOW ? VERDICT_ALLOW : VERDICT_AUDIT;
}

/*
 * Applies the policy to HOST on the flow's port (and to METHOD/PATH when
 * given). Returns true when the flow may go on: allowed, or audited (then,
 * unless QUIET, with a deny record of verdict audit saying what enforce
 * would have done).
 */
static bool conn_decide(struct conn *c, const char *host, size_t len, const char *method,
                        const char *path, bool quiet, enum reason *why)
{
    struct policy_query q = {.host = (const uint8_t *)host, .host_len = len, .port = c->port,
                             .method = method, .target = path};
    struct policy_decision d;
    struct flow_record r;

    policy_decide(c->px->policy, &q, &d);
    *why = d.reason;
    conn_note(c, &d);
    if (d.outcome == DECISION_DENY)
        return false;
    if (d.outcome == DECISION_AUDIT && !quiet) {
        record_base(c, &r, EV_DENY);
        r.host = host;
        r.host_len = len;
        r.verdict = VERDICT_AUDIT;
        r.reason = d.reason;
        proxy_log(c->px, &r);
    }
    return true;
}

static void conn_connect_next(struct conn *c);
static void conn_start_relay(struct conn *c);
static void on_sniff_timeout(evutil_socket_t fd, short what, void *arg);
static void conn_deny_or_audit(struct conn *c, enum reason why);

static void on_resolved(const struct resolver_result *res, void *arg)
{
    struct conn *c = arg;
    size_t i, refused = 0;

    c->rq = NULL;
    c->n_addrs = 0;
    c->addrs = res->n ? calloc(res->n, sizeof(*c->addrs)) : NULL;
    for (i = 0; c->addrs && res->status == 0 && i < res->n; i++) {
        const struct resolver_addr *a = &res->addrs[i];

        if (proxy_dest_allowed(c->px, a->family, a->addr))
            c->addrs[c->n_addrs++] = *a;
        else
            refused++;
    }
    if (c->n_addrs == 0) {
        conn_deny(c, refused ? REASON_PRIVATE_DESTINATION : REASON_RESOLVE_FAILED);
        return;
    }
    c->state = CONN_CONNECT;
    c->next_addr = 0;
    conn_connect_next(c);
}

/* The name is allowed: resolve it ourselves (P4) and connect. */
static void conn_resolve(struct conn *c)
{
    uint32_t ms = c->px->policy->settings.timeouts.connect_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

    struct resolver_result res;
    char cname[RESOLVER_NAME_MAX + 1];

    c->state = CONN_RESOLVE;
    evtimer_add(c->timer, &tv);             /* resolving counts against the connect time */
    if (resolver_cached(c->px->resolver, c->host, &res, cname)) {
        on_resolved(&res, c);               /* a name seen before: connect at once */
        return;
    }
    if (c->cev)
        event_del(c->cev);                  /* what the client sends next waits */
    c->rq = resolver_lookup(c->px->resolver, c->host, on_resolved, c);
    if (!c->rq)
        conn_deny(c, REASON_RESOLVE_FAILED);
}

static void conn_connected(struct conn *c)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    metrics_observe_connect(&c->px->metrics,
                            (double)(t.tv_sec - c->connect_start.tv_sec) +
                                (double)(t.tv_nsec - c->connect_start.tv_nsec) / 1e9);
    conn_start_relay(c);
}

static void on_connected(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    int err = 0;
    socklen_t len = sizeof(err);

    (void)fd;
    if (what & EV_TIMEOUT)
        err = ETIMEDOUT;
    else if (getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        close(c->ufd);
        c->ufd = -1;
        conn_connect_next(c);
        return;
    }
    conn_connected(c);
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

/* Tries the next address of the answer; denies connect_failed when none is left. */
static void conn_connect_next(struct conn *c)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct timeval tv;
    uint32_t ms = c->px->policy->settings.timeouts.connect_ms;

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
        addr_str(&ss, c->up_s);
        c->upstream = ss;
        clock_gettime(CLOCK_MONOTONIC, &c->connect_start);
        if (connect(c->ufd, (struct sockaddr *)&ss, len) == 0 || errno == EINPROGRESS) {
            if (connect_done(c->ufd)) {
                conn_connected(c);
                return;
            }
            if (c->cev)
                event_del(c->cev);          /* what the client sends next waits */
            if (c->timer)
                event_free(c->timer);
            c->timer = event_new(c->px->base, c->ufd, EV_WRITE, on_connected, c);
            tv.tv_sec = ms / 1000;
            tv.tv_usec = (ms % 1000) * 1000;
            if (c->timer && event_add(c->timer, &tv) == 0)
                return;
        }
        close(c->ufd);
        c->ufd = -1;
    }
    conn_deny(c, REASON_CONNECT_FAILED);
}

/* ---- the relay ---- */

static void dir_pump(struct dir *d, bool drained);
static bool sniff_read(struct conn *c);

static void on_dir(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dir_pump(arg, false);
}

/* The client's socket is readable: while sniffing, more of the first bytes;
 * then (the same event) the up direction's. */
static void on_client(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == CONN_RELAY)
        dir_pump(&c->up, false);
    else
        sniff_read(c);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    uint64_t idle = c->px->policy->settings.timeouts.idle_ms, quiet = limit_now_ms() -
                                                                      c->last_active_ms;
    struct timeval tv;

    (void)fd;
    (void)what;
    if (quiet >= idle) {
        conn_close(c);
        return;
    }
    tv.tv_sec = (time_t)((idle - quiet) / 1000);
    tv.tv_usec = (suseconds_t)((idle - quiet) % 1000 * 1000);
    event_add(c->timer, &tv);
}

static int dir_init(struct dir *d, struct conn *c, int way)
{
    int from = way == PROXY_UP ? c->cfd : c->ufd, to = way == PROXY_UP ? c->ufd : c->cfd;

    d->c = c;
    d->way = way;
    d->total = way == PROXY_UP ? &c->px->metrics.bytes_up : &c->px->metrics.bytes_down;
    d->from = from;
    d->to = to;
    d->pipe[0] = d->pipe[1] = -1;
    d->use_splice = true;
    /* persistent: a direction's wish (read or write) changes epoll only when it
     * changes. The up direction reads with the sniffing event: when resolving
     * and connecting took no loop turn it is still registered, and moving from
     * sniffing to relaying costs no epoll_ctl at all. */
    if (way == PROXY_UP && c->cev) {
        d->rev = c->cev;
        c->cev = NULL;
    } else {
        d->rev = way == PROXY_UP
                     ? event_new(c->px->base, from, EV_READ | EV_PERSIST, on_client, c)
                     : event_new(c->px->base, from, EV_READ | EV_PERSIST, on_dir, d);
    }
    d->wev = event_new(c->px->base, to, EV_WRITE | EV_PERSIST, on_dir, d);
    return d->rev && d->wev ? 0 : -ENOMEM;
}

/* Whether a request for another host than the flow's may have a flow of its own. */
static bool other_host_allowed(const struct conn *c, const struct http_head *h)
{
    char path[HTTP_HEAD_MAX + 1];
    struct policy_query q = {.host = (const uint8_t *)h->host, .host_len = h->host_len,
                             .port = c->port, .method = h->method, .target = path};
    struct policy_decision d;

    memcpy(path, h->path, h->path_len);
    path[h->path_len] = '\0';
    policy_decide(c->px->policy, &q, &d);
    return d.outcome != DECISION_DENY;
}

/*
 * The server has closed after answering everything sent to it, and a request
 * for another allowed host waits at the front of the client's window: the
 * flow ends (flow_end) and the same client connection becomes a new flow for
 * that host, resolved and connected like any other, its held request checked
 * again. When the server closed early (requests of the old host unsent),
 * there is nothing right to do but close.
 */
static void conn_rehost(struct conn *c)
{
    struct dir *up = &c->up;
    struct http_head h;

    if (up->off != up->checked ||
        http_head_parse(up->buf + up->checked, up->len - up->checked, &h) != HTTP_HEAD_OK) {
        conn_close(c);
        return;
    }
    conn_end_record(c);
    dir_release(&c->up);
    dir_release(&c->down);
    memset(&c->down, 0, sizeof(c->down));
    c->down.pipe[0] = c->down.pipe[1] = -1;
    memmove(up->buf, up->buf + up->off, up->len - up->off);
    up->len -= up->off;
    up->off = up->checked = 0;
    up->eof = up->shut = up->rehost = up->limit_logged = false;
    up->requests = 0;                       /* the held request is the new upstream's first */
    up->bytes = 0;
    close(c->ufd);
    c->ufd = -1;
    memcpy(c->host, h.host, h.host_len + 1);
    c->up_s[0] = c->rule[0] = '\0';
    c->refused = REASON_NONE;
    c->id = ++c->px->last_flow;
    clock_gettime(CLOCK_MONOTONIC, &c->start);
    event_free(c->timer);
    c->timer = evtimer_new(c->px->base, on_sniff_timeout, c);
    if (!c->timer) {
        conn_close(c);
        return;
    }
    conn_resolve(c);
}

/*
 * Checks the request heads in [checked, len): each must be complete, for
 * the flow's host, and allowed; bodies pass by their framing. Returns false
 * when the flow was denied (and closed).
 */
static bool http_check(struct dir *d)
{
    struct conn *c = d->c;

    while (d->checked < d->len && !d->await_upgrade) {
        const uint8_t *p = d->buf + d->checked;
        size_t n = d->len - d->checked;
        struct http_head h;
        enum reason why;
        char path[HTTP_HEAD_MAX + 1];
        long used;

        if (d->fr.state != HTTP_FRAME_HEAD) {
            used = http_framing_advance(&d->fr, p, n);
            if (used < 0) {
                conn_deny(c, REASON_UNKNOWN_PROTOCOL);
                return false;
            }
            d->checked += (size_t)used;
            continue;
        }
        switch (http_head_parse(p, n, &h)) {
        case HTTP_HEAD_NEED_MORE:
            return true;
        case HTTP_HEAD_OK:
            break;
        default:
            conn_deny(c, REASON_UNKNOWN_PROTOCOL);
            return false;
        }
        if (h.host_state == HTTP_HOST_OK && h.port == c->port &&
            strcmp(h.host, c->host) != 0 && other_host_allowed(c, &h)) {
            d->rehost = true;                       /* held here: see conn_rehost() */
            return true;
        }
        if (h.host_state == HTTP_HOST_MISMATCH || (h.host_state == HTTP_HOST_OK &&
            (strcmp(h.host, c->host) != 0 || h.port != c->port))) {
            conn_deny(c, REASON_HOST_MISMATCH);     /* another host, not allowed */
            return false;
        }
        if (h.host_state != HTTP_HOST_OK) {
            conn_deny(c, REASON_INVALID_HOSTNAME);
            return false;
        }
        if (h.connect || h.upgrade_h2c) {
            conn_deny(c, h.connect ? REASON_METHOD_NOT_ALLOWED : REASON_UNKNOWN_PROTOCOL);
            return false;
        }
        if (h.upgrade_websocket && d->requests > 0) {
            /* the answer to an upgrade is judged by the first bytes the server
             * sends for it; behind other requests those would be where their
             * answers end, which the proxy does not parse, and a client could
             * make them read "HTTP/1.1 101 " (e.g. a file it uploaded) to turn
             * the connection into a blind relay. Clients open a connection for a
             * websocket, so the upgrade must be its first request. */
            conn_deny(c, REASON_UNKNOWN_PROTOCOL);
            return false;
        }
        memcpy(path, h.path, h.path_len);
        path[h.path_len] = '\0';
        if (!conn_decide(c, h.host, h.host_len, h.method, path, false, &why)) {
            conn_deny(c, why);
            return false;
        }
        d->checked += h.head_len;
        d->requests++;
        http_framing_start(&d->fr, &h);
        if (h.upgrade_websocket)
            d->await_upgrade = true;        /* see upgrade_answered() */
    }
    return true;
}

/*
 * The down direction's first bytes after a websocket upgrade request: a 101
 * makes the client's side a blind relay (frames, not requests); any other
 * status keeps every later request checked. The first STATUS_101_LEN bytes
 * are read into the down direction's window (they are sent on from there, the
 * rest by the splice path); a server that sends them a few at a time is
 * waited for, not polled. Returns 1 when decided (or at the source's EOF or
 * error, which the pump's next read reports), 0 while the bytes are not all
 * here, -1 when the flow was closed.
 */
static int upgrade_answered(struct conn *c)
{
    struct dir *d = &c->down;
    ssize_t n;

    if (!d->buf) {
        d->buf = malloc(STATUS_101_LEN);
        if (!d->buf) {
            conn_close(c);
            return -1;
        }
        d->cap = STATUS_101_LEN;
        d->off = d->len = d->checked = 0;
    }
    n = recv(d->from, d->buf + d->len, STATUS_101_LEN - d->len, 0);
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n <= 0) {
        d->checked = d->len;                /* what came before the end goes on */
        return 1;
    }
    d->len += (size_t)n;
    if (d->len < STATUS_101_LEN)
        return 0;
    d->checked = d->len;                    /* the status line goes on to the client */
    c->up.await_upgrade = false;
    if (memcmp(d->buf, "HTTP/1.1 101 ", STATUS_101_LEN) == 0) {
        c->up.http = false;
        c->up.checked = c->up.len;          /* what the client sent since: frames */
    } else if (!http_check(&c->up)) {
        return -1;
    }
    event_active(c->up.wev, EV_WRITE, 0);
    return 1;
}

/* D has sent all it will: the half-close goes on to its destination, it waits no more. */
static void dir_finish(struct dir *d)
{
    if (!d->shut) {
        shutdown(d->to, SHUT_WR);
        d->shut = true;
    }
    event_del(d->rev);
    event_del(d->wev);
}

/*
 * Whether a read of N bytes out of WANT left the socket empty, so that asking
 * again would only earn an EAGAIN: a short read of a few messages (a
 * handshake, a request) did; a short read of a bulk transfer more likely
 * raced bytes still arriving, and reading on saves a loop turn. A wrong guess
 * costs one call either way: epoll is level-triggered, so bytes or an EOF
 * that came in meanwhile still wake the pump.
 */
static bool read_drained(ssize_t n, size_t want)
{
    return n > 0 && (size_t)n < want && n < DRAINED_MAX;
}

/*
 * Moves what it can; says which event it waits for; closes the flow when both
 * sides are done. DRAINED: the caller's read emptied the source (see
 * read_drained()), so the pump waits for its next readable event.
 */
static void dir_pump(struct dir *d, bool drained)
{
    struct conn *c = d->c;
    struct dir *other = d == &c->up ? &c->down : &c->up;
    ssize_t n;

    for (;;) {
        /* 1. what is waiting goes first: the user-space window, then the pipe */
        while (d->off < d->checked) {
            n = send(d->to, d->buf + d->off, d->checked - d->off, MSG_NOSIGNAL);
            if (n < 0 && errno == EAGAIN)
                goto wait_write;
            if (n <= 0)
                goto broken;
            d->off += (size_t)n;
            d->bytes += (uint64_t)n;
            *d->total += (uint64_t)n;
        }
        if (d->off == d->len && d->buf && !d->http) {
            free(d->buf);               /* an idle flow keeps no buffer */
            d->buf = NULL;
            d->cap = d->off = d->len = d->checked = 0;
        }
        if (d->rehost) {
            dir_finish(d);      /* all for the old host is out: the server may finish */
            return;
        }
        while (d->in_pipe > 0) {
            n = splice(d->pipe[0], NULL, d->to, NULL, d->in_pipe,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0 && errno == EAGAIN)
                goto wait_write;
            if (n <= 0)
                goto broken;
            d->in_pipe -= (size_t)n;
            d->bytes += (uint64_t)n;
            *d->total += (uint64_t)n;
        }
        c->last_active_ms = limit_now_ms();

        /* 2. the source ended and everything was delivered: pass the half-close on
         * (unless the server ended so that a held request gets its own) */
        if (d->eof && d == &c->down && c->up.rehost) {
            conn_rehost(c);
            return;
        }
        if (d->eof) {
            if (other->shut) {
                conn_close(c);          /* close() sends this side's FIN itself */
                return;
            }
            dir_finish(d);
            return;
        }

        /* 3. read more */
        if (drained)
            goto wait_read;
        if (d == &c->down && c->up.await_upgrade) {
            int answered = upgrade_answered(c);

            if (answered < 0)
                return;
            if (answered == 0)
                goto wait_read;             /* the status line is not all here yet */
            if (d->off < d->checked)
                continue;                   /* it goes first */
        }
        if (d->use_splice && !d->http && d->off == d->len) {
            size_t budget = dir_budget(d, SPLICE_CHUNK);

            if (budget == 0)
                goto throttle;
            if (d->pipe[0] < 0 && pipe_get(c->px, d->pipe) < 0)
                goto broken;
            n = splice(d->from, NULL, d->pipe[1], NULL, budget,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            dir_refund(d, budget, n);
            if (n < 0 && errno == EINVAL) {
                d->use_splice = false;  /* not spliceable: the buffered path */
                continue;
            }
            if (n > 0)
                d->in_pipe += (size_t)n;
            drained = read_drained(n, budget);
        } else {
            size_t budget;

            if (!d->buf) {
                d->cap = HTTP_BUF_MAX;
                d->buf = malloc(d->cap);
                if (!d->buf)
                    goto broken;
            }
            if (d->off > 0 && d->off == d->len) {
                d->off = d->len = d->checked = 0;
            } else if (d->len == d->cap && d->off > 0) {
                memmove(d->buf, d->buf + d->off, d->len - d->off);
                d->len -= d->off;
                d->checked -= d->off;
                d->off = 0;
            }
            if (d->len == d->cap) {
                conn_deny(c, REASON_UNKNOWN_PROTOCOL);  /* a head longer than the window */
                return;
            }
            budget = dir_budget(d, d->cap - d->len);
            if (budget == 0)
                goto throttle;
            n = recv(d->from, d->buf + d->len, budget, 0);
            dir_refund(d, budget, n);
            drained = read_drained(n, budget);
            if (n > 0) {
                d->len += (size_t)n;
                if (!d->http)
                    d->checked = d->len;
                else if (!http_check(d))
                    return;
            }
        }
        if (n == 0) {
            d->eof = true;
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            goto wait_read;
        if (n < 0)
            goto broken;
    }

wait_read:
    pipe_put(c->px, d);             /* quiet now: the pipe (empty) goes back */
    event_del(d->wev);
    event_add(d->rev, NULL);
    return;
wait_write:
    event_del(d->rev);
    event_add(d->wev, NULL);
    return;
throttle:
    if (dir_throttle(d))
        return;
broken:
    conn_close(c);
}

static void conn_start_relay(struct conn *c)
{
    struct flow_record r;
    struct timeval tv;
    uint32_t idle = c->px->policy->settings.timeouts.idle_ms;
    int one = 1;

    c->state = CONN_RELAY;
    /* a relay must not add Nagle's wait to the endpoints' own (the client's
     * side inherited TCP_NODELAY from the listener) */
    setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    free(c->addrs);                     /* the answer is spent once connected */
    c->addrs = NULL;
    c->n_addrs = c->next_addr = 0;
    if (dir_init(&c->down, c, PROXY_DOWN) < 0 || dir_init(&c->up, c, PROXY_UP) < 0) {
        conn_close(c);
        return;
    }
    /* the sniffed bytes are the up direction's first window */
    c->up.http = c->proto == PROTO_HTTP;
    c->up.checked = c->up.http ? 0 : c->up.len;
    if (c->up.http && c->up.cap < HTTP_BUF_MAX) {
        uint8_t *nb = realloc(c->up.buf, HTTP_BUF_MAX);

        if (!nb) {
            conn_close(c);
            return;
        }
        c->up.buf = nb;
        c->up.cap = HTTP_BUF_MAX;
    }
    /* the first request decides the verdict flow_start carries (audit included) */
    if (c->up.http && !http_check(&c->up))
        return;
    record_base(c, &r, EV_FLOW_START);
    r.verdict = c->verdict;
    proxy_log(c->px, &r);
    c->started = true;
    c->last_active_ms = limit_now_ms();
    event_free(c->timer);
    c->timer = evtimer_new(c->px->base, on_idle, c);
    tv.tv_sec = idle / 1000;
    tv.tv_usec = (idle % 1000) * 1000;
    if (!c->timer || evtimer_add(c->timer, &tv) < 0) {
        conn_close(c);
        return;
    }
    /* the server speaks after the sniffed bytes reach it: send them now, not a
     * loop turn later (the pump may close the flow, so it comes last); anything
     * the client sent after them wakes the up direction's read event */
    if (event_add(c->down.rev, NULL) < 0) {
        conn_close(c);
        return;
    }
    dir_pump(&c->up, true);
}

/* ---- sniffing ---- */

static void on_sniff_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == CONN_SNIFF)
        conn_deny_or_audit(c, REASON_SNIFF_TIMEOUT);
    else
        conn_deny(c, c->state == CONN_RESOLVE ? REASON_RESOLVE_FAILED : REASON_CONNECT_FAILED);
}

/* What the first bytes say; returns false while more are needed. */
static bool sniff_decide(struct conn *c, bool full)
{
    const uint8_t *b = c->up.buf;
    size_t n = c->up.len;
    struct tls_hello hello;
    struct http_head head;
    enum tls_hello_status ts = tls_hello_parse(b, n, &hello);
    enum http_head_status hs;
    enum reason why = REASON_NONE;
    const struct policy_settings *set = &c->px->policy->settings;

    if (ts == TLS_HELLO_NEED_MORE && !full)
        return false;
    if (ts != TLS_HELLO_NOT_TLS) {
        c->proto = PROTO_TLS;
        if (ts != TLS_HELLO_OK || hello.sni_state == TLS_SNI_NONE)
            why = REASON_NO_SNI;
        else if (hello.sni_state != TLS_SNI_OK)
            why = REASON_INVALID_HOSTNAME;
        else if (hello.ech && set->ech == ECH_DENY)
            why = REASON_ECH_REJECTED;
        if (ts == TLS_HELLO_OK && hello.sni_state == TLS_SNI_OK)
            memcpy(c->host, hello.sni, hello.sni_len + 1);
        if (why != REASON_NONE) {
            conn_deny_or_audit(c, why);     /* refused before any rule is asked */
            return true;
        }
        if (!conn_decide(c, hello.sni, hello.sni_len, NULL, NULL, false, &why)) {
            conn_deny(c, why);
            return true;
        }
        conn_resolve(c);
        return true;
    }

    hs = http_head_parse(b, n, &head);
    if (hs == HTTP_HEAD_NEED_MORE && !full)
        return false;
    if (hs == HTTP_HEAD_NOT_HTTP) {
        c->proto = PROTO_TCP;
        conn_deny_or_audit(c, REASON_UNKNOWN_PROTOCOL);
        return true;
    }
    c->proto = PROTO_HTTP;
    if (hs != HTTP_HEAD_OK) {
        conn_deny(c, REASON_UNKNOWN_PROTOCOL);
        return true;
    }
    if (head.host_state == HTTP_HOST_OK)
        memcpy(c->host, head.host, head.host_len + 1);
    if (head.host_state == HTTP_HOST_MISMATCH)
        why = REASON_HOST_MISMATCH;
    else if (head.host_state != HTTP_HOST_OK)
        why = REASON_INVALID_HOSTNAME;
    else if (head.port != c->port)
        why = REASON_HOST_MISMATCH;         /* Host names another port than the one dialled */
    if (why != REASON_NONE) {
        conn_deny(c, why);
        return true;
    }
    /* the head itself is checked again, with its method and path, by the relay,
     * which also writes the audit record: this look is quiet */
    if (!conn_decide(c, head.host, head.host_len, NULL, NULL, true, &why)) {
        conn_deny(c, why);
        return true;
    }
    conn_resolve(c);
    return true;
}

/* Reads what the client sent; false while the flow waits for more (C lives on). */
static bool sniff_read(struct conn *c)
{
    ssize_t n = recv(c->cfd, c->up.buf + c->up.len, CONN_SNIFF_MAX - c->up.len, 0);

    if (n < 0 && errno == EAGAIN)
        return false;
    if (n <= 0) {
        /* the client gave up: decide on what there is. A connection that closed
         * without a byte (a port scan) is an attempt too: it is logged as one no
         * protocol could be read from (and in audit mode let through as such) */
        if (c->up.len == 0)
            conn_deny_or_audit(c, REASON_UNKNOWN_PROTOCOL);
        else if (!sniff_decide(c, true))
            conn_close(c);
        return true;
    }
    c->up.len += (size_t)n;
    return sniff_decide(c, c->up.len == CONN_SNIFF_MAX);
}

/* Connects to the address the sandbox dialled (cidr rules, audit mode without a name). */
static void conn_connect_orig(struct conn *c)
{
    const uint8_t *a = ss_addr(&c->dst);
    int family = c->dst.ss_family;

    if (!proxy_dest_allowed(c->px, family, a)) {
        conn_deny(c, REASON_PRIVATE_DESTINATION);
        return;
    }
    c->addrs = calloc(1, sizeof(*c->addrs));
    if (!c->addrs) {
        conn_close(c);
        return;
    }
    c->addrs[0].family = family;
    memcpy(c->addrs[0].addr, a, family == AF_INET ? 4 : 16);
    c->n_addrs = 1;
    c->next_addr = 0;
    c->state = CONN_CONNECT;
    conn_connect_next(c);
}

/* A denial in audit mode: logged as what enforce would have said, then let through. */
static void conn_deny_or_audit(struct conn *c, enum reason why)
{
    struct policy_query q = {.refused = why};
    struct policy_decision d;
    struct flow_record r;

    policy_decide(c->px->policy, &q, &d);
    conn_note(c, &d);
    if (d.outcome == DECISION_DENY) {
        conn_deny(c, why);
        return;
    }
    c->refused = why;                   /* a reload to enforce revokes the flow */
    record_base(c, &r, EV_DENY);
    r.verdict = VERDICT_AUDIT;
    r.reason = why;
    proxy_log(c->px, &r);
    if (c->host[0])
        conn_resolve(c);
    else
        conn_connect_orig(c);
}

/* Raw TCP to an address a cidr rule allows: no name, no sniffing. */
static bool try_cidr(struct conn *c)
{
    struct policy_query q = {.family = c->dst.ss_family, .addr = ss_addr(&c->dst),
                             .port = c->port};
    struct policy_decision d;

    policy_decide(c->px->policy, &q, &d);
    if (d.outcome != DECISION_ALLOW)
        return false;               /* sniffed for a name instead (audit included) */
    c->proto = PROTO_TCP;
    conn_note(c, &d);
    conn_connect_orig(c);
    return true;
}

/*
 * Over limits.max_connections or new_connections_per_second: a reset at
 * once (the client stops waiting), and a limit record.
 */
static void conn_refuse(struct proxy *px, int fd, const struct sockaddr_storage *src,
                        enum flow_limit limit, enum reason why)
{
    struct linger rst = {1, 0};
    struct sockaddr_storage dst;
    char src_s[ADDR_STR], dst_s[ADDR_STR];
    socklen_t len = sizeof(dst);
    struct flow_record r;

    memset(&r, 0, sizeof(r));
    addr_str(src, src_s);
    r.src = src_s;
    if (getsockname(fd, (struct sockaddr *)&dst, &len) == 0) {
        addr_str(&dst, dst_s);
        r.orig_dst = dst_s;
        r.port = ss_port(&dst);
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
    struct timeval tv;
    uint32_t ms = set->timeouts.sniff_ms;

    if (set->limits.max_connections && px->n_conns >= set->limits.max_connections) {
        conn_refuse(px, fd, peer, LIMIT_MAX_CONNECTIONS, REASON_TOO_MANY_CONNECTIONS);
        return;
    }
    /* one second deep: a client may open a second's worth at once */
    if (rate && limit_bucket_take(&px->new_conns, rate, rate, 1, limit_now_ms()) == 0) {
        conn_refuse(px, fd, peer, LIMIT_NEW_CONNECTIONS, REASON_RATE_LIMITED);
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
    c->up.pipe[0] = c->up.pipe[1] = c->down.pipe[0] = c->down.pipe[1] = -1;
    clock_gettime(CLOCK_MONOTONIC, &c->start);
    list_push_front(&px->conns, &c->link);
    px->n_conns++;

    c->src = *peer;
    len = sizeof(c->dst);           /* TPROXY: the address the sandbox dialled */
    getsockname(fd, (struct sockaddr *)&c->dst, &len);
    addr_str(&c->src, c->src_s);
    addr_str(&c->dst, c->dst_s);
    c->port = ss_port(&c->dst);

    c->cev = event_new(px->base, fd, EV_READ | EV_PERSIST, on_client, c);
    c->timer = evtimer_new(px->base, on_sniff_timeout, c);
    c->up.buf = malloc(CONN_SNIFF_MAX);
    if (!c->cev || !c->timer || !c->up.buf) {
        conn_close(c);
        return;
    }
    c->up.cap = CONN_SNIFF_MAX;
    if (try_cidr(c))
        return;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    if (evtimer_add(c->timer, &tv) < 0) {
        conn_close(c);
        return;
    }
    /* the first bytes often came with the handshake's last ACK: read them now,
     * and watch the socket only if they did not */
    if (!sniff_read(c) && event_add(c->cev, NULL) < 0)
        conn_close(c);
}

/*
 * Whether the policy now in force still lets C go on; either way it becomes
 * the flow's deciding policy (the records name it). Asked again: its host (or, without one, the address it
 * dialled), what audit let through, and the address it is connected to or
 * still to try (P5; the addresses not yet tried that the new policy refuses
 * are dropped).
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
        q.addr = ss_addr(&c->dst);
        q.refused = REASON_NONE;        /* enforce asks cidr rules before sniffing */
    }
    policy_decide(c->px->policy, &q, &d);
    if (d.outcome == DECISION_DENY && !c->host[0] && c->refused != REASON_NONE) {
        q.refused = c->refused;         /* no cidr rule: what audit let through decides */
        policy_decide(c->px->policy, &q, &d);
    }
    c->rule[0] = '\0';                  /* the old policy's rule names nothing now */
    conn_note(c, &d);
    if (d.outcome == DECISION_DENY)
        return false;
    if (c->ufd >= 0 &&
        !proxy_dest_allowed(c->px, c->upstream.ss_family, ss_addr(&c->upstream)))
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

    /* bandwidth limits may have changed: the waiting directions look again */
    on_bandwidth(-1, 0, &px->bandwidth[PROXY_UP]);
    on_bandwidth(-1, 0, &px->bandwidth[PROXY_DOWN]);

    for (n = px->conns.next; n != &px->conns; n = next) {
        struct conn *c = list_entry(n, struct conn, link);
        struct flow_record r;

        next = n->next;
        /* a flow still sniffing is decided by the new policy when its bytes are in */
        if (c->state == CONN_SNIFF || conn_recheck(c))
            continue;
        if (c->state != CONN_RELAY) {
            conn_deny(c, REASON_REVOKED);   /* nothing relayed yet: the protocol's refusal */
            continue;
        }
        record_base(c, &r, EV_DENY);
        r.verdict = VERDICT_DENY;
        r.reason = REASON_REVOKED;
        proxy_log(px, &r);
        c->end_reason = REASON_REVOKED;
        conn_close(c);
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
        [CONN_SNIFF] = "sniff", [CONN_RESOLVE] = "resolve", [CONN_CONNECT] = "connect",
        [CONN_RELAY] = "relay",
    };
    const struct list *l;
    struct timespec t;
    size_t n = 0;

    clock_gettime(CLOCK_MONOTONIC, &t);
    for (l = px->conns.next; l != &px->conns && n < max; l = l->next, n++) {
        const struct conn *c = list_entry(l, const struct conn, link);
        struct conn_info *i = &out[n];

        i->id = c->id;
        i->state = states[c->state];
        i->proto = flow_proto_name(c->proto);
        i->src = c->src_s;
        i->host = c->host;
        i->upstream = c->up_s;
        i->port = c->port;
        i->bytes_up = c->up.bytes;
        i->bytes_down = c->down.bytes;
        i->age_ms = (uint64_t)((t.tv_sec - c->start.tv_sec) * 1000 +
                               (t.tv_nsec - c->start.tv_nsec) / 1000000);
    }
    return n;
}
