/*
 * Inspect mode: a flow whose SNI an `inspect: true` rule allows has its TLS
 * terminated here, under a leaf the inspect-mode CA signs, and every HTTP
 * request in it is checked before it goes on: its Host must be the SNI, and
 * the rule's methods and paths must allow it. An allowed request gets the
 * rule's injected headers and goes to the real server over TLS the proxy
 * verifies; a denied one gets a 403 inside the sandbox's TLS and never leaves.
 *
 * One request at a time: the next request is read only once the answer to
 * the one before is all back. That keeps every answer in its request's order
 * (a 403 written by the proxy cannot overtake a server's answer), and lets
 * the upstream connection open on the first allowed request, not before: a
 * flow whose requests are all denied never reaches the server.
 */
#include "inspect.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clock.h"
#include "conn_int.h"
#include "deny.h"
#include "tls.h"

#define INSPECT_BUF (HTTP_HEAD_MAX + 4096)  /* plaintext window of each direction */
#define INJECT_MAX 8192                     /* injected header lines of one request, at most */

/* One TLS side of the flow: the sandbox's (the proxy is the server) or the upstream's. */
struct side {
    SSL *ssl;
    int fd;
    struct event *ev;
    short want;                 /* the events its blocked calls wait for (this turn) */
    bool ready;                 /* handshake done */
    bool eof;                   /* the peer's stream ended */
};

/* Plaintext one way: PRE (bytes the proxy wrote: a rewritten head, a 403) goes
 * out first, then [off, checked) of the window; [checked, len) is examined. */
struct plain {
    uint8_t buf[INSPECT_BUF];
    size_t off, checked, len;
    uint8_t *pre;
    size_t pre_off, pre_len;
    struct dir *count;          /* the flow's byte counters (and limit record) for this way */
    uint64_t wait_ms;           /* out of bandwidth budget: until a wake-up's worth is back */
};

struct inspect {
    struct side cs, us;         /* the sandbox, the server */
    struct plain up, down;      /* requests, answers */
    struct event *throttle;     /* wakes a way that ran out of bandwidth budget */
    bool in_pump;               /* inspect_pump() is running: a connect done at once does
                                   not start a second one */
    bool pending;               /* the head at up.checked is allowed and waits for the upstream */
    bool busy;                  /* a request went upstream: its answer is not all back */
    bool req_done;              /* ... its body is all out */
    bool resp_started;          /* ... its final status line came */
    bool resp_to_eof;           /* ... its body ends when the server closes */
    bool head_req;              /* ... it is a HEAD: its answer has no body */
    bool closing;               /* close once what is queued for the sandbox is out */
    struct http_framing req_fr, resp_fr;
    /* the request in progress, for its record */
    char method[HTTP_METHOD_MAX + 1];
    char path[FLOWLOG_PATH_MAX + 1];    /* NUL-terminated: a path of length 0 is "" */
    size_t path_len;
    unsigned status;
    enum flow_verdict verdict;
    enum reason reason;
    uint64_t ex_up, ex_down, ex_start_ms;
};

static void on_side(evutil_socket_t fd, short what, void *arg);

/* ---- TLS calls ---- */

/* After an SSL call that returned R: true when it only has to wait (for what, in S->want). */
static bool side_blocked(struct side *s, int r)
{
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        s->want |= EV_READ;
        return true;
    case SSL_ERROR_WANT_WRITE:
        s->want |= EV_WRITE;
        return true;
    default:
        return false;
    }
}

/* 1: progress, 0: waiting, -1: failed. */
static int side_handshake(struct side *s)
{
    int r = SSL_do_handshake(s->ssl);

    if (r == 1) {
        s->ready = true;
        return 1;
    }
    return side_blocked(s, r) ? 0 : -1;
}

/*
 * Reads into P's window, within the name's data budget and the sandbox's
 * bandwidth for that way (what a read did not use goes back). 1: bytes or the
 * end of the stream came, 0: waiting, full or out of budget (P->wait_ms), -1:
 * failed.
 */
static int side_read(struct side *s, struct plain *p)
{
    size_t n = 0, room, budget;
    int r;

    window_compact(p->buf, sizeof(p->buf), &p->off, &p->len, &p->checked);
    if (s->eof || p->len == sizeof(p->buf))
        return 0;
    room = sizeof(p->buf) - p->len;
    budget = relay_take(p->count, room, &p->wait_ms);
    if (budget == 0)
        return 0;
    r = SSL_read_ex(s->ssl, p->buf + p->len, budget, &n);
    relay_give_back(p->count, budget, r == 1 ? n : 0);
    if (r == 1) {
        p->len += n;
        return 1;
    }
    if (side_blocked(s, r))
        return 0;
    if (SSL_get_error(s->ssl, r) == SSL_ERROR_ZERO_RETURN) {
        s->eof = true;
        return 1;
    }
    return -1;
}

static int write_some(struct side *s, struct plain *p, const uint8_t *b, size_t *off, size_t end)
{
    while (*off < end) {
        size_t n = 0;
        int r = SSL_write_ex(s->ssl, b + *off, end - *off, &n);

        if (r != 1)
            return side_blocked(s, r) ? 0 : -1;
        *off += n;
        p->count->bytes += n;
        *p->count->total += n;
    }
    return 1;
}

/* Sends what waits in P. 1: all out, 0: waiting, -1: failed. MOVED: bytes went out (what
 * waited behind them, a pipelined request say, may go on now). */
static int side_flush(struct side *s, struct plain *p, bool *moved)
{
    uint64_t before = p->count->bytes;
    int r = 1;

    if (p->pre) {
        r = write_some(s, p, p->pre, &p->pre_off, p->pre_len);
        if (r > 0) {
            explicit_bzero(p->pre, p->pre_len);     /* a rewritten head holds a credential */
            free(p->pre);
            p->pre = NULL;
            p->pre_off = p->pre_len = 0;
        }
    }
    if (r > 0)
        r = write_some(s, p, p->buf, &p->off, p->checked);
    if (p->count->bytes != before) {
        *moved = true;
        relay_moved(p->count, p->count->bytes - before);
    }
    return r;
}

static bool plain_empty(const struct plain *p)
{
    return !p->pre && p->off == p->checked;
}

/* Queues LEN bytes ahead of P's window (it has none queued: one request at a time). */
static int plain_prepend(struct plain *p, const void *b, size_t len)
{
    if (p->pre)
        return -1;
    p->pre = malloc(len);
    if (!p->pre)
        return -1;
    memcpy(p->pre, b, len);
    p->pre_off = 0;
    p->pre_len = len;
    return 0;
}

/* ---- records ---- */

static void request_record(struct conn *c)
{
    struct inspect *in = c->in;
    struct flow_record r;

    conn_record(c, &r, EV_REQUEST);
    r.method = in->method;
    r.path = in->path;
    r.path_len = in->path_len;
    r.status = in->status;
    r.verdict = in->verdict;
    r.reason = in->reason;
    r.has_bytes = true;
    r.bytes_up = in->ex_up;
    r.bytes_down = in->ex_down;
    r.duration_ms = clock_now_ms() - in->ex_start_ms;
    proxy_log(c->px, &r);
}

static void request_begin(struct inspect *in, const struct http_head *h)
{
    snprintf(in->method, sizeof(in->method), "%s", h->method);
    in->path_len = 0;
    while (in->path_len < h->path_len && in->path_len < FLOWLOG_PATH_MAX &&
           h->path[in->path_len] != '?')
        in->path_len++;
    if (in->path_len)                   /* the query may hold tokens: never logged */
        memcpy(in->path, h->path, in->path_len);
    in->path[in->path_len] = '\0';
    in->status = 0;
    in->verdict = VERDICT_ALLOW;
    in->reason = REASON_NONE;
    in->ex_up = in->ex_down = 0;
    in->ex_start_ms = clock_now_ms();
}

/* ---- the upstream side ---- */

/* Forgets the upstream connection (it closed, or this address failed); the next
 * allowed request opens a new one. */
void inspect_upstream_drop(struct conn *c)
{
    struct inspect *in = c->in;

    if (in->us.ev)
        event_free(in->us.ev);
    SSL_free(in->us.ssl);
    memset(&in->us, 0, sizeof(in->us));
    in->us.fd = -1;
}

enum step inspect_connected(struct conn *c)
{
    struct inspect *in = c->in;

    free(c->addrs);                     /* the answer is spent once connected */
    c->addrs = NULL;
    c->n_addrs = c->next_addr = 0;
    if (c->up.wev) {                    /* the connect's wait */
        event_free(c->up.wev);
        c->up.wev = NULL;
    }
    in->us.fd = c->ufd;
    in->us.ssl = tls_client_new(c->px->tls, c->ufd, c->host);
    in->us.ev = event_new(c->px->base, c->ufd, 0, on_side, c);
    if (!in->us.ssl || !in->us.ev)
        return STEP_CLOSE;
    /* the handshake counts against timeouts.connect, still armed; a pump
     * already running drives it on its next turn */
    return in->in_pump ? STEP_WAIT : inspect_pump(c);
}

/* ---- requests ---- */

/* The sandbox is told why, inside its TLS; KEEP: the connection may carry more requests. */
static int answer_denied(struct conn *c, enum reason why, bool keep)
{
    char resp[DENY_HTTP_MAX], hint[DENY_HINT_MAX];
    size_t n = deny_http(resp, sizeof(resp), c->host, c->port, why, keep,
                         conn_hint(c, why, hint));

    c->in->status = reason_is_upstream(why) ? 502 : 403;
    c->in->ex_down = n;
    return plain_prepend(&c->in->down, resp, n);
}

/*
 * Whether the request H may go on: Host is the SNI (and the port the flow's),
 * then the policy on the SNI with its method and path. *D says what decided;
 * QUIET: asked again for a request already decided (no second audit record).
 */
static bool request_allowed(struct conn *c, const struct http_head *h, bool quiet,
                            struct policy_decision *d)
{
    enum reason why = REASON_NONE;

    if (h->host_state == HTTP_HOST_MISMATCH ||
        (h->host_state == HTTP_HOST_OK &&
         (strcmp(h->host, c->host) != 0 || (h->port_given && h->port != c->port))))
        why = REASON_HOST_MISMATCH;         /* fronting: another name inside this SNI */
    else if (h->host_state != HTTP_HOST_OK)
        why = REASON_INVALID_HOSTNAME;
    else if (h->connect || h->upgrade_h2c || h->upgrade_websocket)
        why = h->connect ? REASON_METHOD_NOT_ALLOWED : REASON_UNKNOWN_PROTOCOL;
    if (why != REASON_NONE)
        return conn_decide_refused(c, why, quiet, d);
    return conn_decide(c, c->host, strlen(c->host), h, quiet, d);
}

/* The allowed head H goes upstream, with the rule's headers in place of any the sandbox sent. */
static int request_send(struct conn *c, const struct http_head *h, const struct policy_rule *r)
{
    struct inspect *in = c->in;
    struct plain *p = &in->up;
    const char *drop[POLICY_INJECT_MAX];
    uint8_t *add = NULL, *out = NULL;
    size_t i, add_len = 0, n;
    int rc = -1;

    if (r && r->n_inject > 0) {
        add = malloc(INJECT_MAX);
        out = malloc(h->head_len + INJECT_MAX);
        if (!add || !out)
            goto done;
        for (i = 0; i < r->n_inject && i < POLICY_INJECT_MAX; i++) {
            const struct policy_inject *j = &r->inject[i];
            size_t need = strlen(j->header) + 2 + j->value_len + 2;

            if (add_len + need > INJECT_MAX)
                goto done;
            drop[i] = j->header;
            add_len += (size_t)snprintf((char *)add + add_len, INJECT_MAX - add_len, "%s: ",
                                        j->header);
            memcpy(add + add_len, j->value, j->value_len);
            add_len += j->value_len;
            memcpy(add + add_len, "\r\n", 2);
            add_len += 2;
        }
        n = http_head_rewrite(p->buf + p->checked, h->head_len, drop, i, add, add_len, out,
                              h->head_len + INJECT_MAX);
        if (n == 0 || plain_prepend(p, out, n) < 0)
            goto done;
        p->off = p->checked += h->head_len;     /* the original head is replaced */
    } else {
        p->checked += h->head_len;
    }
    in->ex_up = p->pre ? p->pre_len : h->head_len;
    in->busy = true;
    in->resp_started = in->resp_to_eof = false;
    in->head_req = strcmp(h->method, "HEAD") == 0;
    http_framing_start(&in->req_fr, h);
    in->req_done = in->req_fr.state == HTTP_FRAME_HEAD;
    if (h->close)
        in->closing = true;                     /* after its answer */
    rc = 0;
done:
    if (add)
        explicit_bzero(add, INJECT_MAX);        /* the secrets live in the policy only */
    if (out) {
        explicit_bzero(out, h->head_len + INJECT_MAX);
        free(out);
    }
    free(add);
    return rc;
}

/* A request the policy refuses: its record, a 403, and its head skipped. A
 * request with a body ends the connection: the sandbox may hold the body back
 * (Expect: 100-continue), and its next request could not be told from it. */
static enum step request_deny(struct conn *c, const struct http_head *h, enum reason why)
{
    struct inspect *in = c->in;
    bool keep = (h->body == HTTP_BODY_NONE ||
                 (h->body == HTTP_BODY_LENGTH && h->content_length == 0)) && !h->close;

    in->verdict = VERDICT_DENY;
    in->reason = why;
    in->ex_up = h->head_len;
    if (answer_denied(c, why, keep) < 0)
        return STEP_CLOSE;
    request_record(c);
    in->up.off = in->up.checked += h->head_len;
    if (!keep)
        in->closing = true;
    return STEP_WAIT;
}

/* Requests: each head checked when the answer to the one before is back, bodies by framing. */
static enum step process_up(struct conn *c, bool *moved)
{
    struct inspect *in = c->in;
    struct plain *p = &in->up;

    while (p->checked < p->len && !in->closing) {
        struct http_head h;
        struct policy_decision d;
        enum http_head_status hs;

        if (in->busy) {
            long used;

            if (in->req_done)
                return STEP_WAIT;               /* the next request waits for this answer */
            used = http_framing_advance(&in->req_fr, p->buf + p->checked, p->len - p->checked);
            if (used < 0)
                return conn_refuse(c, REASON_UNKNOWN_PROTOCOL);
            p->checked += (size_t)used;
            in->ex_up += (uint64_t)used;
            in->req_done = in->req_fr.state == HTTP_FRAME_HEAD;
            *moved = true;
            continue;
        }
        if (!plain_empty(p) || !plain_empty(&in->down))
            return STEP_WAIT;                   /* a head is read once all before it is out */
        hs = http_head_parse(p->buf + p->checked, p->len - p->checked, &h);
        if (hs == HTTP_HEAD_NEED_MORE && p->len - p->checked < sizeof(p->buf))
            return STEP_WAIT;
        if (hs != HTTP_HEAD_OK) {
            /* not HTTP/1 (an h2 preface from a client that ignored ALPN), or a
             * head too large for the window: refused, the connection ends */
            memset(&h, 0, sizeof(h));
            h.head_len = p->len - p->checked;
            h.close = true;
            request_begin(in, &h);
            *moved = true;
            return request_deny(c, &h, REASON_UNKNOWN_PROTOCOL);
        }
        if (!in->pending)
            request_begin(in, &h);
        if (!request_allowed(c, &h, in->pending, &d)) {
            enum step st;

            in->pending = false;
            *moved = true;
            if ((st = request_deny(c, &h, d.reason)) != STEP_WAIT)
                return st;
            continue;
        }
        if (d.outcome == DECISION_AUDIT) {
            in->verdict = VERDICT_AUDIT;
            in->reason = d.reason;
        }
        if (!in->us.ready) {
            if (in->pending)
                return STEP_WAIT;               /* connecting */
            in->pending = true;
            *moved = true;                      /* a connect done at once: its handshake next */
            if (in->us.ssl || c->ufd >= 0)
                return STEP_WAIT;
            return conn_resolve(c);             /* the first allowed request opens it */
        }
        in->pending = false;
        if (request_send(c, &h, d.rule) < 0)
            return STEP_CLOSE;
        *moved = true;
    }
    return STEP_WAIT;
}

/* ---- answers ---- */

static void answer_done(struct conn *c)
{
    struct inspect *in = c->in;

    request_record(c);
    in->busy = false;
    if (!in->req_done)
        in->closing = true;     /* answered before its body was all sent: no telling what follows */
}

static enum step process_down(struct conn *c, bool *moved)
{
    struct inspect *in = c->in;
    struct plain *p = &in->down;

    while (p->checked < p->len) {
        struct http_response r;
        long used;

        if (!in->busy)
            return STEP_CLOSE;                  /* bytes nobody asked for */
        if (in->resp_to_eof) {
            in->ex_down += p->len - p->checked;
            p->checked = p->len;
            *moved = true;
            continue;
        }
        if (in->resp_started) {
            used = http_framing_advance(&in->resp_fr, p->buf + p->checked, p->len - p->checked);
            if (used < 0)
                return STEP_CLOSE;
            p->checked += (size_t)used;
            in->ex_down += (uint64_t)used;
            if (in->resp_fr.state == HTTP_FRAME_HEAD)
                answer_done(c);
            *moved = true;
            continue;
        }
        switch (http_response_parse(p->buf + p->checked, p->len - p->checked, in->head_req, &r)) {
        case HTTP_HEAD_OK:
            break;
        case HTTP_HEAD_NEED_MORE:
            return p->len - p->checked < sizeof(p->buf) ? STEP_WAIT : STEP_CLOSE;
        default:
            return STEP_CLOSE;                  /* not an HTTP/1.1 answer */
        }
        p->checked += r.head_len;
        in->ex_down += r.head_len;
        *moved = true;
        if (r.status < 200) {
            if (r.status == 101)
                return STEP_CLOSE;              /* no upgrade was let through */
            continue;                           /* interim (100 Continue): the final follows */
        }
        in->status = r.status;
        in->resp_started = true;
        if (r.close)
            in->closing = true;
        if (r.body == HTTP_BODY_CLOSE) {
            in->resp_to_eof = in->closing = true;
            continue;
        }
        http_framing_start_response(&in->resp_fr, &r);
        if (in->resp_fr.state == HTTP_FRAME_HEAD)
            answer_done(c);
    }
    return STEP_WAIT;
}

/* The server closed. Between requests: a new connection for the next one. */
static enum step upstream_ended(struct conn *c)
{
    struct inspect *in = c->in;

    if (in->busy) {
        if (in->resp_to_eof) {
            answer_done(c);
        } else if (!in->resp_started && in->ex_down == 0) {
            in->reason = REASON_CONNECT_FAILED;     /* closed without an answer */
            if (answer_denied(c, REASON_CONNECT_FAILED, false) < 0)
                return STEP_CLOSE;
            request_record(c);
            in->busy = false;
        } else {
            return STEP_CLOSE;                      /* an answer cut short */
        }
        in->closing = true;
    }
    inspect_upstream_drop(c);
    close(c->ufd);
    c->ufd = -1;
    return STEP_WAIT;
}

/* ---- the pump ---- */

static void side_arm(struct conn *c, struct side *s)
{
    if (!s->ev)
        return;
    event_del(s->ev);
    event_assign(s->ev, c->px->base, s->fd, s->want, on_side, c);
    if (s->want)
        event_add(s->ev, NULL);
}

static enum step pump_once(struct conn *c, bool *moved)
{
    struct inspect *in = c->in;
    enum step st;
    int r;

    if (!in->cs.ready) {
        r = side_handshake(&in->cs);
        if (r < 0)
            return STEP_CLOSE;                  /* the sandbox refused the leaf, or left */
        if (r == 0)
            return STEP_WAIT;
        c->state = CONN_RELAY;
        conn_arm(c, c->px->policy->settings.timeouts.idle_ms);
        *moved = true;
    }
    if (in->us.ssl && !in->us.ready) {
        r = side_handshake(&in->us);
        if (r < 0)
            return conn_refuse(c, SSL_get_verify_result(in->us.ssl) != X509_V_OK
                                      ? REASON_UPSTREAM_CERT_INVALID : REASON_CONNECT_FAILED);
        if (r > 0) {
            c->state = CONN_RELAY;
            conn_arm(c, c->px->policy->settings.timeouts.idle_ms);
            *moved = true;
        }
    }
    /* what is queued goes first */
    if (in->us.ready && (r = side_flush(&in->us, &in->up, moved)) < 0)
        return STEP_CLOSE;
    if ((r = side_flush(&in->cs, &in->down, moved)) < 0)
        return STEP_CLOSE;
    if (in->closing && !in->busy && plain_empty(&in->down)) {
        SSL_shutdown(in->cs.ssl);               /* close_notify, best effort */
        return STEP_CLOSE;
    }
    /* then what came in */
    if (!in->closing && (r = side_read(&in->cs, &in->up)) != 0) {
        if (r < 0)
            return STEP_CLOSE;
        *moved = true;
    }
    if (in->us.ready && (r = side_read(&in->us, &in->down)) != 0) {
        if (r < 0)
            return STEP_CLOSE;
        *moved = true;
    }
    if ((st = process_down(c, moved)) != STEP_WAIT)
        return st;
    if (in->us.eof && (st = upstream_ended(c)) != STEP_WAIT)
        return st;
    if ((st = process_up(c, moved)) != STEP_WAIT)
        return st;
    if (in->cs.eof && !in->busy && !in->pending && plain_empty(&in->down))
        return STEP_CLOSE;      /* the sandbox is done (a partial head is no request) */
    return STEP_WAIT;
}

/* A way out of budget waits for its timer, not its socket; its first wait is a limit record. */
static void throttle(struct conn *c, struct plain *p, uint64_t *wait)
{
    struct flow_record r;

    if (!p->wait_ms)
        return;
    if (!p->count->limit_logged) {
        conn_record(c, &r, EV_LIMIT);
        r.reason = REASON_RATE_LIMITED;
        r.limit = p->count->way == RELAY_UP ? LIMIT_UPLOAD : LIMIT_DOWNLOAD;
        proxy_log(c->px, &r);
        p->count->limit_logged = true;
    }
    if (!*wait || p->wait_ms < *wait)
        *wait = p->wait_ms;
}

enum step inspect_pump(struct conn *c)
{
    struct inspect *in = c->in;
    uint64_t wait = 0;
    enum step st;
    bool moved;

    in->in_pump = true;
    do {
        moved = false;
        in->cs.want = in->us.want = 0;
        in->up.wait_ms = in->down.wait_ms = 0;
        st = pump_once(c, &moved);
        if (moved)
            c->last_active_ms = clock_now_ms();
    } while (st == STEP_WAIT && moved);
    in->in_pump = false;
    if (st == STEP_WAIT) {
        side_arm(c, &in->cs);
        side_arm(c, &in->us);
        throttle(c, &in->up, &wait);
        throttle(c, &in->down, &wait);
        if (wait) {
            struct timeval tv = clock_tv(wait);

            evtimer_add(in->throttle, &tv);
        }
    }
    return st;
}

static void on_side(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_settle(arg, inspect_pump(arg));
}

static void on_throttle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_settle(arg, inspect_pump(arg));
}

/* ---- the flow ---- */

enum step inspect_start(struct conn *c)
{
    struct inspect *in = calloc(1, sizeof(*in));
    struct flow_record r;

    if (!in)
        return STEP_CLOSE;
    c->in = in;
    in->cs.fd = c->cfd;
    in->us.fd = -1;
    in->up.count = &c->up;
    in->down.count = &c->down;
    c->up.way = RELAY_UP;
    c->down.way = RELAY_DOWN;
    c->up.total = &c->px->metrics.bytes_up;
    c->down.total = &c->px->metrics.bytes_down;
    in->throttle = evtimer_new(c->px->base, on_throttle, c);
    if (c->up.rev) {                    /* the sniff's watch: the pump has its own */
        event_free(c->up.rev);
        c->up.rev = NULL;
    }
    in->cs.ssl = tls_server_new(c->px->tls, c->cfd, c->host, c->up.buf, c->up.len);
    in->cs.ev = event_new(c->px->base, c->cfd, 0, on_side, c);
    free(c->up.buf);                    /* the ClientHello is the BIO's now */
    c->up.buf = NULL;
    c->up.len = c->up.cap = 0;
    if (!in->cs.ssl || !in->cs.ev || !in->throttle)
        return STEP_CLOSE;
    /* the flow starts now, as a spliced one does once connected: a sandbox that
     * then refuses the leaf (it does not trust the CA) still leaves a flow_end */
    conn_record(c, &r, EV_FLOW_START);
    r.verdict = c->verdict;
    proxy_log(c->px, &r);
    c->started = true;
    c->state = CONN_TLS;                /* the handshake is due within timeouts.sniff */
    return inspect_pump(c);
}

void inspect_refuse(struct conn *c, enum reason why)
{
    struct inspect *in = c->in;

    if (in->cs.ready && !in->resp_started && answer_denied(c, why, false) == 0) {
        if (in->pending || in->busy) {          /* the request it answers */
            in->verdict = VERDICT_DENY;
            in->reason = why;
            request_record(c);
        }
        bool moved = false;

        in->cs.want = 0;
        side_flush(&in->cs, &in->down, &moved); /* best effort: the flow ends now */
        SSL_shutdown(in->cs.ssl);
    }
}

void inspect_free(struct conn *c)
{
    struct inspect *in = c->in;

    if (!in)
        return;
    inspect_upstream_drop(c);
    if (in->throttle)
        event_free(in->throttle);
    if (in->cs.ev)
        event_free(in->cs.ev);
    SSL_free(in->cs.ssl);
    if (in->up.pre)
        explicit_bzero(in->up.pre, in->up.pre_len);
    free(in->up.pre);
    free(in->down.pre);
    free(in);
    c->in = NULL;
}
