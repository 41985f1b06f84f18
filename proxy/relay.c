/*
 * The relay of an allowed flow: each direction moves bytes with splice(2)
 * through a pipe lent from a pool (or through a user-space window where the
 * proxy must read what passes: the sniffed bytes, plain HTTP's request heads),
 * passes half-closes on, and waits on one sandbox-wide token bucket per
 * direction when a bandwidth limit is reached.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alerts.h"
#include "clock.h"
#include "conn_int.h"

#define SPLICE_CHUNK (256 * 1024)       /* bytes moved per splice(2) call, and pipe size */
#define PIPE_POOL 64                    /* idle splice pipes kept for the next busy flow */
#define BANDWIDTH_WAKE 16384            /* a throttled direction waits for this much budget */
#define DRAINED_MAX 16384               /* a short read below this emptied the socket */
#define BUDGET_POLL_MS 1000             /* a direction out of its name's budget looks again */

struct bandwidth {              /* limits.{upload,download}_bytes_per_second */
    struct proxy *px;
    struct limit_bucket bucket;
    struct list waiting;        /* directions (struct dir) out of budget, oldest first */
    struct event *timer;        /* wakes them; made on first use */
};

struct relay_pool {
    int pipes[PIPE_POOL][2];    /* empty splice pipes */
    size_t n_pipes;
    struct bandwidth bw[2];     /* RELAY_UP, RELAY_DOWN */
    struct list spent;          /* directions whose name's budget is spent */
    struct event *spent_timer;  /* looks at them again each BUDGET_POLL_MS */
};

struct relay_pool *relay_pool_new(struct proxy *px)
{
    struct relay_pool *pool = calloc(1, sizeof(*pool));
    int way;

    if (!pool)
        return NULL;
    for (way = 0; way < 2; way++) {
        pool->bw[way].px = px;
        list_init(&pool->bw[way].waiting);
    }
    list_init(&pool->spent);
    return pool;
}

void relay_pool_free(struct relay_pool *pool)
{
    int way;

    if (!pool)
        return;
    while (pool->n_pipes > 0) {
        pool->n_pipes--;
        close(pool->pipes[pool->n_pipes][0]);
        close(pool->pipes[pool->n_pipes][1]);
    }
    for (way = 0; way < 2; way++)
        if (pool->bw[way].timer)
            event_free(pool->bw[way].timer);
    if (pool->spent_timer)
        event_free(pool->spent_timer);
    free(pool);
}

/*
 * Splice pipes are lent from the pool while a direction has data moving and
 * given back when it goes quiet, so an idle flow holds two descriptors
 * instead of six and no pipe buffers.
 */
static int pipe_get(struct relay_pool *pool, int p[2])
{
    if (pool->n_pipes > 0) {
        pool->n_pipes--;
        p[0] = pool->pipes[pool->n_pipes][0];
        p[1] = pool->pipes[pool->n_pipes][1];
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
static void pipe_put(struct relay_pool *pool, struct dir *d)
{
    if (d->pipe[0] < 0)
        return;
    if (d->in_pipe == 0 && pool->n_pipes < PIPE_POOL) {
        pool->pipes[pool->n_pipes][0] = d->pipe[0];
        pool->pipes[pool->n_pipes][1] = d->pipe[1];
        pool->n_pipes++;
    } else {
        close(d->pipe[0]);
        close(d->pipe[1]);
    }
    d->pipe[0] = d->pipe[1] = -1;
    d->in_pipe = 0;
}

/* ---- bandwidth limits: one bucket per direction for the whole sandbox ---- */

static uint64_t bandwidth_rate(const struct proxy *px, int way)
{
    const struct policy_settings *set = &px->policy->settings;

    return way == RELAY_UP ? set->limits.upload_bytes_per_second
                           : set->limits.download_bytes_per_second;
}

/* A tenth of a second of traffic, and at least one wake-up's worth (or the whole rate). */
static uint64_t bandwidth_depth(uint64_t rate)
{
    uint64_t floor = rate < BANDWIDTH_WAKE ? rate : BANDWIDTH_WAKE;

    return rate / 10 > floor ? rate / 10 : floor;
}

/* The first time D's flow finds its name's budget spent: a limit record. */
static void budget_record(struct dir *d)
{
    struct flow_record r;

    if (d->budget_logged)
        return;
    conn_record(d->c, &r, EV_LIMIT);
    r.reason = REASON_BUDGET_EXCEEDED;
    r.limit = LIMIT_BUDGET;
    proxy_log(d->c->px, &r);
    d->budget_logged = true;
}

/*
 * How many of WANT bytes D may move now: what its name's budget has left
 * (0, with d->budget_wait_ms set, when it is spent), then the bandwidth bucket
 * (all of it when there is no limit).
 */
size_t relay_take(struct dir *d, size_t want, uint64_t *wait_ms)
{
    struct proxy *px = d->c->px;
    struct bandwidth *bw = &px->relay->bw[d->way];
    uint64_t rate = bandwidth_rate(px, d->way), now = clock_now_ms(), left, need;
    size_t got;

    d->budget_wait_ms = 0;
    left = budget_left(px->budgets, &d->c->budget, d->way == RELAY_UP ? BUDGET_UP : BUDGET_DOWN,
                       now, &d->budget_wait_ms);
    if (left == 0) {
        budget_record(d);
        *wait_ms = d->budget_wait_ms < BUDGET_POLL_MS ? d->budget_wait_ms : BUDGET_POLL_MS;
        return 0;
    }
    if (left < want)
        want = (size_t)left;
    if (rate == 0)
        return want;
    got = (size_t)limit_bucket_take(&bw->bucket, rate, bandwidth_depth(rate), want, now);
    if (got == 0) {
        need = bandwidth_depth(rate);
        *wait_ms = limit_bucket_wait_ms(&bw->bucket, rate,
                                        need < BANDWIDTH_WAKE ? need : BANDWIDTH_WAKE);
    }
    return got;
}

/* Gives back what a read of USED bytes did not use of GRANTED, and spends USED of the
 * name's budget. */
void relay_give_back(struct dir *d, size_t granted, size_t used)
{
    struct proxy *px = d->c->px;

    budget_spend(px->budgets, &d->c->budget, d->way == RELAY_UP ? BUDGET_UP : BUDGET_DOWN,
                 used);
    if (bandwidth_rate(px, d->way) != 0 && granted > used)
        limit_bucket_refund(&px->relay->bw[d->way].bucket, granted - used);
}

/* Every direction waiting on LIST tries to read again. */
static void wake_all(struct list *list)
{
    while (!list_empty(list)) {
        struct dir *d = list_entry(list->next, struct dir, wait);

        list_remove(&d->wait);
        event_active(d->rev, EV_READ, 0);
    }
}

/* Budget is back (or the limit changed): every waiting direction tries again. */
static void on_bandwidth(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wake_all(&((struct bandwidth *)arg)->waiting);
}

/* The directions out of their names' budgets look again: a window may have moved
 * on, or a reload changed a budget. */
static void on_spent(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    wake_all(&((struct relay_pool *)arg)->spent);
}

void relay_limits_changed(struct proxy *px)
{
    on_bandwidth(-1, 0, &px->relay->bw[RELAY_UP]);
    on_bandwidth(-1, 0, &px->relay->bw[RELAY_DOWN]);
    on_spent(-1, 0, px->relay);
}

/* D's name has spent its budget this way: D stops reading (the sandbox feels TCP's
 * back-pressure) and looks again each BUDGET_POLL_MS, or when its window ends. */
static enum step dir_spent(struct dir *d)
{
    struct relay_pool *pool = d->c->px->relay;
    struct timeval tv = clock_tv(d->budget_wait_ms < BUDGET_POLL_MS ? d->budget_wait_ms
                                                                   : BUDGET_POLL_MS);

    event_del(d->rev);
    event_del(d->wev);
    pipe_put(pool, d);
    if (!pool->spent_timer && !(pool->spent_timer = evtimer_new(d->c->px->base, on_spent, pool)))
        return STEP_CLOSE;
    if (!list_linked(&d->wait))
        list_push_back(&pool->spent, &d->wait);
    if (!evtimer_pending(pool->spent_timer, NULL))
        evtimer_add(pool->spent_timer, &tv);
    return STEP_WAIT;
}

/*
 * D is out of budget: it stops reading (the sender feels TCP's back-pressure,
 * and zero copy is kept: nothing is read that cannot be sent) until the
 * bucket holds a wake-up's worth again. The flow's first wait in each
 * direction is a limit record.
 */
static enum step dir_throttle(struct dir *d)
{
    struct conn *c = d->c;
    struct bandwidth *bw = &c->px->relay->bw[d->way];
    uint64_t rate = bandwidth_rate(c->px, d->way), need = bandwidth_depth(rate);

    if (d->budget_wait_ms)
        return dir_spent(d);
    event_del(d->rev);
    event_del(d->wev);
    pipe_put(c->px->relay, d);
    if (!bw->timer) {
        bw->timer = evtimer_new(c->px->base, on_bandwidth, bw);
        if (!bw->timer)
            return STEP_CLOSE;
    }
    if (!list_linked(&d->wait))
        list_push_back(&bw->waiting, &d->wait);
    if (!d->limit_logged) {
        struct flow_record r;

        conn_record(c, &r, EV_LIMIT);
        r.reason = REASON_RATE_LIMITED;
        r.limit = d->way == RELAY_UP ? LIMIT_UPLOAD : LIMIT_DOWNLOAD;
        proxy_log(c->px, &r);
        d->limit_logged = true;
    }
    if (!evtimer_pending(bw->timer, NULL)) {
        struct timeval tv = clock_tv(limit_bucket_wait_ms(
            &bw->bucket, rate, need < BANDWIDTH_WAKE ? need : BANDWIDTH_WAKE));

        evtimer_add(bw->timer, &tv);
    }
    return STEP_WAIT;
}

/* ---- directions ---- */

/* Frees D's events and gives back its pipe; its buffer stays. */
void dir_release(struct dir *d)
{
    list_remove(&d->wait);
    if (d->c)
        pipe_put(d->c->px->relay, d);
    if (d->rev)
        event_free(d->rev);
    if (d->wev)
        event_free(d->wev);
    d->rev = d->wev = NULL;
}

void dir_free(struct dir *d)
{
    dir_release(d);
    free(d->buf);
}

/*
 * The up direction's events exist already: its read event is the one that
 * watched the client while sniffing (when resolving and connecting took no
 * loop turn it is still registered, and moving on to the relay costs no
 * epoll_ctl at all), its write event the one that waited for the connect.
 * Both are persistent: a direction's wish changes epoll only when it changes.
 */
static int dir_init(struct dir *d, struct conn *c, int way)
{
    d->c = c;
    d->way = way;
    d->total = way == RELAY_UP ? &c->px->metrics.bytes_up : &c->px->metrics.bytes_down;
    d->from = way == RELAY_UP ? c->cfd : c->ufd;
    d->to = way == RELAY_UP ? c->ufd : c->cfd;
    d->pipe[0] = d->pipe[1] = -1;
    d->use_splice = true;
    if (!d->rev)
        d->rev = event_new(c->px->base, d->from, EV_READ | EV_PERSIST, on_dir, d);
    if (d->wev)                         /* the connect's wait, done: now the relay's */
        event_assign(d->wev, c->px->base, d->to, EV_WRITE | EV_PERSIST, on_dir, d);
    else
        d->wev = event_new(c->px->base, d->to, EV_WRITE | EV_PERSIST, on_dir, d);
    return d->rev && d->wev ? 0 : -ENOMEM;
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

/* Makes room in D's user-space window; a request head as long as the window is refused. */
static enum step dir_window(struct dir *d)
{
    if (!d->buf) {
        d->cap = HTTP_BUF_MAX;
        d->buf = malloc(d->cap);
        if (!d->buf)
            return STEP_CLOSE;
    }
    window_compact(d->buf, d->cap, &d->off, &d->len, &d->checked);
    return d->len == d->cap ? conn_refuse(d->c, REASON_UNKNOWN_PROTOCOL) : STEP_WAIT;
}

void relay_moved(struct dir *d, uint64_t n)
{
    struct conn *c = d->c;
    const char *dest = c->host[0] ? c->host : c->dst_s;
    struct alert a;

    if (d->way == RELAY_UP && c->px->alerts &&
        alerts_upload(c->px->alerts, &c->alert, c->id, dest, n, c->up.bytes,
                      c->down.bytes, clock_now_ms(), &a))
        proxy_alert(c->px, &a);
}

/* dir_flush() without the accounting of what moved. */
static int dir_flush_some(struct dir *d)
{
    ssize_t n;

    while (d->off < d->checked) {
        n = send(d->to, d->buf + d->off, d->checked - d->off, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN)
            return -1;
        if (n <= 0)
            return 1;
        d->off += (size_t)n;
        d->bytes += (uint64_t)n;
        *d->total += (uint64_t)n;
    }
    if (d->off == d->len && d->buf && !d->http) {
        free(d->buf);               /* an idle flow keeps no buffer */
        d->buf = NULL;
        d->cap = d->off = d->len = d->checked = 0;
    }
    if (d->rehost)
        return 0;                   /* the held request waits for its own upstream */
    while (d->in_pipe > 0) {
        n = splice(d->pipe[0], NULL, d->to, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EAGAIN)
            return -1;
        if (n <= 0)
            return 1;
        d->in_pipe -= (size_t)n;
        d->bytes += (uint64_t)n;
        *d->total += (uint64_t)n;
    }
    return 0;
}

/* Sends what is waiting: the user-space window, then the pipe. -1 on EAGAIN, 0 when all
 * is out, 1 when the destination broke. */
static int dir_flush(struct dir *d)
{
    uint64_t before = d->bytes;
    int r = dir_flush_some(d);

    if (d->bytes != before)
        relay_moved(d, d->bytes - before);
    return r;
}

/*
 * Moves what it can and says which event it waits for; both sides done means
 * STEP_CLOSE. DRAINED: the caller's read emptied the source (see
 * read_drained()), so the pump waits for its next readable event.
 */
enum step dir_pump(struct dir *d, bool drained)
{
    struct conn *c = d->c;
    struct dir *other = d == &c->up ? &c->down : &c->up;
    enum step st;
    ssize_t n;

    for (;;) {
        /* 1. what is waiting goes first */
        int flushed = dir_flush(d);

        if (flushed < 0)
            goto wait_write;
        if (flushed > 0)
            return STEP_CLOSE;
        if (d->rehost) {
            dir_finish(d);      /* all for the old host is out: the server may finish */
            return STEP_WAIT;
        }
        c->last_active_ms = clock_now_ms();

        /* 2. the source ended and everything was delivered: pass the half-close on
         * (unless the server ended so that a held request gets its own) */
        if (d->eof && d == &c->down && c->up.rehost)
            return conn_rehost(c);
        if (d->eof) {
            if (other->shut)
                return STEP_CLOSE;      /* close() sends this side's FIN itself */
            dir_finish(d);
            return STEP_WAIT;
        }

        /* 3. read more */
        if (drained)
            goto wait_read;
        if (d == &c->down && c->up.await_upgrade) {
            int answered = upgrade_answered(c, &st);

            if (answered < 0)
                return st;
            if (answered == 0)
                goto wait_read;             /* the status line is not all here yet */
            if (d->off < d->checked)
                continue;                   /* it goes first */
        }
        if (d->use_splice && !d->http && d->off == d->len) {
            uint64_t wait;
            size_t budget = relay_take(d, SPLICE_CHUNK, &wait);

            if (budget == 0)
                return dir_throttle(d);
            if (d->pipe[0] < 0 && pipe_get(c->px->relay, d->pipe) < 0)
                return STEP_CLOSE;
            n = splice(d->from, NULL, d->pipe[1], NULL, budget,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            relay_give_back(d, budget, n > 0 ? (size_t)n : 0);
            if (n < 0 && errno == EINVAL) {
                d->use_splice = false;  /* not spliceable: the buffered path */
                continue;
            }
            if (n > 0)
                d->in_pipe += (size_t)n;
            drained = read_drained(n, budget);
        } else {
            uint64_t wait;
            size_t budget;

            if ((st = dir_window(d)) != STEP_WAIT)
                return st;
            budget = relay_take(d, d->cap - d->len, &wait);
            if (budget == 0)
                return dir_throttle(d);
            n = recv(d->from, d->buf + d->len, budget, 0);
            relay_give_back(d, budget, n > 0 ? (size_t)n : 0);
            drained = read_drained(n, budget);
            if (n > 0) {
                d->len += (size_t)n;
                if (!d->http)
                    d->checked = d->len;
                else if ((st = http_check(d)) != STEP_WAIT)
                    return st;
            }
        }
        if (n == 0) {
            d->eof = true;
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            goto wait_read;
        if (n < 0)
            return STEP_CLOSE;
    }

wait_read:
    pipe_put(c->px->relay, d);          /* quiet now: the pipe (empty) goes back */
    event_del(d->wev);
    event_add(d->rev, NULL);
    return STEP_WAIT;
wait_write:
    event_del(d->rev);
    event_add(d->wev, NULL);
    return STEP_WAIT;
}

void on_dir(evutil_socket_t fd, short what, void *arg)
{
    struct dir *d = arg;
    struct conn *c = d->c;
    enum step st;

    (void)fd;
    (void)what;
    if (c->state == CONN_PEEK) {
        /* the server spoke first (conn.c, peek_start()): a raw relay, whose
         * down direction has bytes (or the end) to move now */
        st = peek_over(c);
        if (st == STEP_WAIT && c->state == CONN_RELAY)
            st = dir_pump(d, false);
        conn_settle(c, st);
        return;
    }
    conn_settle(c, dir_pump(d, false));
}

/* Connected: the relay starts, the sniffed bytes first. */
enum step relay_start(struct conn *c)
{
    struct flow_record r;
    enum step st;
    int one = 1;

    c->state = CONN_RELAY;
    /* a relay must not add Nagle's wait to the endpoints' own (the client's
     * side inherited TCP_NODELAY from the listener) */
    setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    free(c->addrs);                     /* the answer is spent once connected */
    c->addrs = NULL;
    c->n_addrs = c->next_addr = 0;
    if (dir_init(&c->down, c, RELAY_DOWN) < 0 || dir_init(&c->up, c, RELAY_UP) < 0)
        return STEP_CLOSE;
    /* the sniffed bytes are the up direction's first window */
    c->up.http = c->proto == PROTO_HTTP;
    c->up.checked = c->up.http ? 0 : c->up.len;
    if (c->up.http && c->up.cap < HTTP_BUF_MAX) {
        uint8_t *nb = realloc(c->up.buf, HTTP_BUF_MAX);

        if (!nb)
            return STEP_CLOSE;
        c->up.buf = nb;
        c->up.cap = HTTP_BUF_MAX;
    }
    /* the first request decides the verdict flow_start carries (audit included) */
    if (c->up.http && (st = http_check(&c->up)) != STEP_WAIT)
        return st;
    conn_record(c, &r, EV_FLOW_START);
    r.verdict = c->verdict;
    proxy_log(c->px, &r);
    c->started = true;
    c->last_active_ms = clock_now_ms();
    conn_arm(c, c->px->policy->settings.timeouts.idle_ms);
    /* the server speaks after the sniffed bytes reach it: send them now, not a
     * loop turn later; anything the client sent after them wakes the up
     * direction's read event */
    if (event_add(c->down.rev, NULL) < 0)
        return STEP_CLOSE;
    return dir_pump(&c->up, true);
}
