/*
 * Plain HTTP through the relay: every request head of a keep-alive connection
 * is checked before it passes (its host, method and path), a request for
 * another allowed host gets an upstream connection of its own, and a
 * websocket upgrade becomes a blind relay only once the server accepts it.
 */
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "conn_int.h"

#define STATUS_101_LEN 13               /* "HTTP/1.1 101 ": an accepted upgrade's answer */

/* Whether a request for another host than the flow's may have a flow of its own. */
static bool other_host_allowed(const struct conn *c, const struct http_head *h)
{
    struct policy_query q = {.host = (const uint8_t *)h->host, .host_len = h->host_len,
                             .port = c->port, .method = h->method,
                             .target = (const char *)h->path, .target_len = h->path_len};
    struct policy_decision d;

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
enum step conn_rehost(struct conn *c)
{
    struct dir *up = &c->up;
    struct http_head h;

    if (up->off != up->checked ||
        http_head_parse(up->buf + up->checked, up->len - up->checked, &h) != HTTP_HEAD_OK)
        return STEP_CLOSE;
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
    c->start_ms = clock_now_ms();
    return conn_resolve(c);             /* the client is read again once relaying */
}

/*
 * Checks the request heads in [checked, len): each must be complete, for
 * the flow's host, and allowed; bodies pass by their framing.
 */
enum step http_check(struct dir *d)
{
    struct conn *c = d->c;

    while (d->checked < d->len && !d->await_upgrade) {
        const uint8_t *p = d->buf + d->checked;
        size_t n = d->len - d->checked;
        struct http_head h;
        struct policy_decision dec;
        long used;

        if (d->fr.state != HTTP_FRAME_HEAD) {
            used = http_framing_advance(&d->fr, p, n);
            if (used < 0)
                return conn_refuse(c, REASON_UNKNOWN_PROTOCOL);
            d->checked += (size_t)used;
            continue;
        }
        switch (http_head_parse(p, n, &h)) {
        case HTTP_HEAD_NEED_MORE:
            return STEP_WAIT;
        case HTTP_HEAD_OK:
            break;
        default:
            return conn_refuse(c, REASON_UNKNOWN_PROTOCOL);
        }
        if (h.host_state == HTTP_HOST_OK && h.port == c->port && !c->virt &&
            strcmp(h.host, c->host) != 0 && other_host_allowed(c, &h)) {
            d->rehost = true;                       /* held here: see conn_rehost() */
            return STEP_WAIT;
        }
        if (h.host_state == HTTP_HOST_MISMATCH || (h.host_state == HTTP_HOST_OK &&
            (strcmp(h.host, c->host) != 0 || h.port != c->port)))
            return conn_refuse(c, REASON_HOST_MISMATCH);   /* another host, not allowed */
        if (h.host_state != HTTP_HOST_OK)
            return conn_refuse(c, REASON_INVALID_HOSTNAME);
        if (h.connect || h.upgrade_h2c)
            return conn_refuse(c, h.connect ? REASON_METHOD_NOT_ALLOWED
                                            : REASON_UNKNOWN_PROTOCOL);
        if (h.upgrade_websocket && d->requests > 0) {
            /* the answer to an upgrade is judged by the first bytes the server
             * sends for it; behind other requests those would be where their
             * answers end, which the proxy does not parse, and a client could
             * make them read "HTTP/1.1 101 " (e.g. a file it uploaded) to turn
             * the connection into a blind relay. Clients open a connection for a
             * websocket, so the upgrade must be its first request. */
            return conn_refuse(c, REASON_UNKNOWN_PROTOCOL);
        }
        if (!conn_decide(c, h.host, h.host_len, &h, false, &dec))
            return conn_refuse(c, dec.reason);
        d->checked += h.head_len;
        d->requests++;
        http_framing_start(&d->fr, &h);
        if (h.upgrade_websocket)
            d->await_upgrade = true;        /* see upgrade_answered() */
    }
    return STEP_WAIT;
}

/*
 * The down direction's first bytes after a websocket upgrade request: a 101
 * makes the client's side a blind relay (frames, not requests); any other
 * status keeps every later request checked. The first STATUS_101_LEN bytes
 * are read into the down direction's window (they are sent on from there, the
 * rest by the splice path); a server that sends them a few at a time is
 * waited for, not polled. Returns 1 when decided (or at the source's EOF or
 * error, which the pump's next read reports), 0 while the bytes are not all
 * here, -1 when the flow must end (*ST says how).
 */
int upgrade_answered(struct conn *c, enum step *st)
{
    struct dir *d = &c->down;
    ssize_t n;

    if (!d->buf) {
        d->buf = malloc(STATUS_101_LEN);
        if (!d->buf) {
            *st = STEP_CLOSE;
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
    } else if ((*st = http_check(&c->up)) != STEP_WAIT) {
        return -1;
    }
    event_active(c->up.wev, EV_WRITE, 0);
    return 1;
}
