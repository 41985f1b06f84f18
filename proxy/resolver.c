/*
 * The proxy's resolver: c-ares on the proxy's libevent loop, a cache keyed by
 * name with TTLs and LRU eviction (resolver_cache.c), and one upstream query
 * per name however many callers wait for it. Answers are parsed by
 * resolver_wire.c, not by c-ares, so that only records on the CNAME chain
 * from the asked name are believed.
 */
#include "resolver_int.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "clock.h"
#include "dns_msg.h"
#include "hostport.h"

#define TRY_MS 1000             /* c-ares: first try per server; a retry waits twice as long */
#define TRIES 2                 /* one server: 1 s + 2 s, inside RESOLVER_TIMEOUT_MS */
#define SERVER_MAX 64           /* one "ADDR:PORT" item of the servers list */

enum { ANSWER_PENDING = -1 };

/* ---- clock ---- */

static uint64_t mono_ms(void *arg)
{
    (void)arg;
    return clock_now_ms();
}

/* ---- query lists and delivery ---- */

/* The first query on list L (which must not be empty). */
static struct resolver_query *first_query(struct list *l)
{
    return list_entry(l->next, struct resolver_query, link);
}

static void query_free(struct resolver_query *q)
{
    list_remove(&q->link);
    event_free(q->ev);
    free(q);
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct resolver_query *q = arg;

    (void)fd;
    (void)what;
    /* Off every list first: the callback may cancel others or free the resolver. */
    list_remove(&q->link);
    q->cb(&q->res, q->arg);
    event_free(q->ev);
    free(q);
}

static void query_ready(struct resolver_query *q)
{
    list_push_front(&q->r->ready, &q->link);
    event_active(q->ev, EV_TIMEOUT, 0);
}

static void query_answer(struct resolver_query *q, const struct entry *e, uint64_t now)
{
    cache_answer(e, now, &q->res, q->cname);
}

static uint32_t clamp_ttl(uint32_t ttl)
{
    if (ttl < RESOLVER_TTL_FLOOR)
        return RESOLVER_TTL_FLOOR;
    return ttl > RESOLVER_TTL_CAP ? RESOLVER_TTL_CAP : ttl;
}

/* E's result from both halves: A first, then AAAA. Returns its lifetime in seconds. */
static uint32_t combine(const struct fetch *f, struct entry *e)
{
    const struct half *h4 = &f->half[0], *h6 = &f->half[1];
    struct resolver_result *res = &e->res;
    uint32_t min_ttl = UINT32_MAX, life;
    const char *cname;

    memset(res, 0, sizeof(*res));
    memcpy(res->addrs, h4->addrs, h4->n * sizeof(h4->addrs[0]));
    memcpy(res->addrs + h4->n, h6->addrs, h6->n * sizeof(h6->addrs[0]));
    res->n = h4->n + h6->n;
    for (size_t i = 0; i < res->n; i++)
        if (res->addrs[i].ttl < min_ttl)
            min_ttl = res->addrs[i].ttl;

    if (res->n > 0) {
        res->status = 0;
        life = clamp_ttl(min_ttl);
        /* half an answer (the other family failed) is asked again soon */
        if ((h4->status == RESOLVER_FAILED || h6->status == RESOLVER_FAILED) &&
            life > RESOLVER_NEG_TTL)
            life = RESOLVER_NEG_TTL;
    } else {
        if (h4->status == RESOLVER_NXDOMAIN || h6->status == RESOLVER_NXDOMAIN)
            res->status = RESOLVER_NXDOMAIN;
        else if (h4->status == 0 && h6->status == 0)
            res->status = 0;            /* NODATA */
        else
            res->status = RESOLVER_FAILED;
        life = RESOLVER_NEG_TTL;
    }

    free(e->cname);
    e->cname = NULL;
    cname = h4->cname[0] ? h4->cname : h6->cname;
    /* without memory for it the answer stands, only unlabelled */
    if (res->status == 0 && cname[0])
        e->cname = strdup(cname);
    return life;
}

/* The fetch has its answer (or gave up): cache it and answer every waiter. */
static void fetch_finish(struct fetch *f)
{
    struct resolver *r = f->r;
    struct entry *e = f->e;
    uint64_t now = r->now_ms(r->clock_arg);
    struct resolver_query *q;

    e->expires_ms = now + (uint64_t)combine(f, e) * 1000;
    e->answered_ms = now;
    e->fetch = NULL;
    f->e = NULL;
    event_del(f->deadline);
    while (!list_empty(&f->waiters)) {
        q = first_query(&f->waiters);
        list_remove(&q->link);
        query_answer(q, e, now);
        query_ready(q);
    }
    cache_lru_push(r, e);
    while (r->cached > RESOLVER_CACHE_MAX)
        cache_entry_drop(r, cache_lru_oldest(r));
}

static void fetch_free(struct fetch *f)
{
    event_free(f->deadline);
    free(f);
}

static void timer_update(struct resolver *r)
{
    struct timeval tv, *t;

    if (r->closing)
        return;
    t = ares_timeout(r->channel, NULL, &tv);
    if (t)
        evtimer_add(r->timer, t);
    else
        evtimer_del(r->timer);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct half *h = arg;
    struct fetch *f = h->f;

    (void)status;                       /* the answer's rcode says more; no answer is a failure */
    (void)timeouts;
    if (f->e && !f->r->closing) {
        int rc = -EBADMSG;

        if (abuf && alen > 0)
            rc = resolver_parse_answer(abuf, (size_t)alen, f->e->name, h->family, h->addrs,
                                       RESOLVER_MAX_ADDRS, &h->n, h->cname);
        if (rc < 0) {
            h->n = 0;
            h->cname[0] = '\0';
        }
        h->status = rc < 0 ? RESOLVER_FAILED : rc;
    }
    if (--f->pending > 0)
        return;
    if (f->e && !f->r->closing)
        fetch_finish(f);
    fetch_free(f);
}

/* RESOLVER_TIMEOUT_MS passed: answer with what came, and leave the rest to c-ares. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct fetch *f = arg;

    (void)fd;
    (void)what;
    for (int i = 0; i < 2; i++)
        if (f->half[i].status == ANSWER_PENDING)
            f->half[i].status = RESOLVER_FAILED;
    fetch_finish(f);
}

static struct fetch *fetch_new(struct resolver *r, struct entry *e)
{
    struct fetch *f = calloc(1, sizeof(*f));

    if (!f)
        return NULL;
    f->deadline = evtimer_new(r->base, on_deadline, f);
    if (!f->deadline) {
        free(f);
        return NULL;
    }
    f->r = r;
    f->e = e;
    list_init(&f->waiters);
    for (int i = 0; i < 2; i++) {
        f->half[i].f = f;
        f->half[i].family = i == 0 ? AF_INET : AF_INET6;
        f->half[i].status = ANSWER_PENDING;
    }
    return f;
}

/* Sends F's queries. C-ares may call back before this returns; F may be gone after. */
static void fetch_send(struct resolver *r, struct fetch *f, const char *name)
{
    struct timeval tv = clock_tv(RESOLVER_TIMEOUT_MS);

    evtimer_add(f->deadline, &tv);
    f->pending = 2;
    ares_query(r->channel, name, DNS_CLASS_IN, DNS_TYPE_A, on_answer, &f->half[0]);
    ares_query(r->channel, name, DNS_CLASS_IN, DNS_TYPE_AAAA, on_answer, &f->half[1]);
    timer_update(r);
}

/* ---- c-ares sockets and timer on the event loop ---- */

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
    struct sock_watch *w = arg;
    struct resolver *r = w->r;

    /* c-ares may close this socket, and free W, while it processes */
    ares_process_fd(r->channel, what & EV_READ ? fd : ARES_SOCKET_BAD,
                    what & EV_WRITE ? fd : ARES_SOCKET_BAD);
    timer_update(r);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct resolver *r = arg;

    (void)fd;
    (void)what;
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    timer_update(r);
}

/*
 * C-ares says what it wants to hear about FD. Without memory to watch it, its
 * queries end by timeout: there is no way to refuse a socket to c-ares.
 */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;
    short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
    struct sock_watch **p, *w;

    for (p = &r->socks; *p && (*p)->fd != fd; p = &(*p)->next)
        ;
    w = *p;
    if (!what) {
        if (w) {
            *p = w->next;
            if (w->ev)
                event_free(w->ev);
            free(w);
        }
        return;
    }
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w)
            return;
        w->r = r;
        w->fd = fd;
        w->next = r->socks;
        r->socks = w;
    }
    if (w->ev && w->what == what)
        return;
    if (w->ev)
        event_free(w->ev);
    w->what = 0;
    w->ev = event_new(r->base, fd, (short)(what | EV_PERSIST), on_sock, w);
    if (w->ev && event_add(w->ev, NULL) == 0)
        w->what = what;
}

/* ---- servers ---- */

/* One item: "ADDR", "V4:PORT", "V6", "[V6]" or "[V6]:PORT". */
static int parse_server(char *s, struct ares_addr_port_node *node)
{
    char *host;
    uint16_t p;

    if (!hostport_split(s, 53, &host, &p))
        return -EINVAL;
    if (inet_pton(AF_INET, host, &node->addr.addr4) == 1 && host == s)
        node->family = AF_INET;         /* "[V4]" is not an address */
    else if (inet_pton(AF_INET6, host, &node->addr.addr6) == 1)
        node->family = AF_INET6;
    else
        return -EINVAL;
    node->udp_port = node->tcp_port = p;
    return 0;
}

static int set_servers(ares_channel channel, const char *servers)
{
    struct ares_addr_port_node *nodes;
    size_t count = 1, i = 0;
    const char *s = servers;
    int rc = 0;

    for (const char *c = servers; *c; c++)
        count += *c == ',';
    nodes = calloc(count, sizeof(*nodes));
    if (!nodes)
        return -ENOMEM;
    for (;;) {
        size_t len = strcspn(s, ",");
        char item[SERVER_MAX];

        if (len == 0 || len >= sizeof(item)) {
            rc = -EINVAL;
            goto out;
        }
        memcpy(item, s, len);
        item[len] = '\0';
        rc = parse_server(item, &nodes[i]);
        if (rc < 0)
            goto out;
        if (i > 0)
            nodes[i - 1].next = &nodes[i];
        i++;
        if (!s[len])
            break;
        s += len + 1;
    }
    rc = ares_set_servers_ports(channel, nodes) == ARES_SUCCESS ? 0 : -ENOMEM;
out:
    free(nodes);
    return rc;
}

/* ---- the interface ---- */

struct resolver *resolver_new(struct event_base *base, const char *servers)
{
    struct resolver *r = calloc(1, sizeof(*r));
    /* Every source of system configuration is shut off: only SERVERS are asked. */
    char lookups[] = "b", resolvconf[] = "/dev/null";
    struct ares_options opt = {
        .flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS,
        .timeout = TRY_MS,
        .tries = TRIES,
        .ndots = 1,
        .ndomains = 0,
        .lookups = lookups,
        .sock_state_cb = on_sock_state,
        .sock_state_cb_data = r,
        .ednspsz = DNS_EDNS_MAX,
        .resolvconf_path = resolvconf,
    };
    int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_NDOTS |
               ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB | ARES_OPT_EDNSPSZ |
               ARES_OPT_RESOLVCONF | ARES_OPT_NOROTATE;
    int rc = -ENOMEM;

    if (!r)
        return NULL;
    r->base = base;
    list_init(&r->lru);
    list_init(&r->ready);
    r->now_ms = mono_ms;
    if (getrandom(r->key, sizeof(r->key), 0) != (ssize_t)sizeof(r->key)) {
        rc = -errno;
        goto fail;
    }
    r->buckets = calloc(BUCKETS, sizeof(*r->buckets));
    r->timer = evtimer_new(base, on_timer, r);
    if (!r->buckets || !r->timer)
        goto fail;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
        goto fail;
    r->lib_init = true;
    if (ares_init_options(&r->channel, &opt, mask) != ARES_SUCCESS) {
        r->channel = NULL;
        goto fail;
    }
    rc = servers ? set_servers(r->channel, servers) : -EINVAL;
    if (rc < 0)
        goto fail;
    return r;
fail:
    resolver_free(r);
    errno = -rc;
    return NULL;
}

void resolver_free(struct resolver *r)
{
    if (!r)
        return;
    /* No callback may run from here on: waiters go first, quietly. */
    r->closing = true;
    while (!list_empty(&r->ready))
        query_free(first_query(&r->ready));
    for (size_t i = 0; r->buckets && i < BUCKETS; i++)
        for (struct entry *e = r->buckets[i]; e; e = e->hnext)
            if (e->fetch)
                while (!list_empty(&e->fetch->waiters))
                    query_free(first_query(&e->fetch->waiters));
    /* Calls back every query with ARES_EDESTRUCTION, which frees the fetches. */
    if (r->channel)
        ares_destroy(r->channel);
    while (r->socks) {
        struct sock_watch *w = r->socks;

        r->socks = w->next;
        if (w->ev)
            event_free(w->ev);
        free(w);
    }
    for (size_t i = 0; r->buckets && i < BUCKETS; i++) {
        while (r->buckets[i]) {
            struct entry *e = r->buckets[i];

            r->buckets[i] = e->hnext;
            free(e->cname);
            free(e);
        }
    }
    if (r->lib_init)
        ares_library_cleanup();
    if (r->timer)
        event_free(r->timer);
    free(r->buckets);
    free(r);
}

struct resolver_query *resolver_lookup(struct resolver *r, const char *name, resolver_cb cb,
                                       void *arg)
{
    struct resolver_query *q = calloc(1, sizeof(*q));
    size_t len = strnlen(name, RESOLVER_NAME_MAX + 1), wlen;
    uint8_t wire[DNS_NAME_WIRE_MAX];
    struct entry *e;
    struct fetch *f;
    uint64_t hash, now;

    if (!q)
        return NULL;
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->ev = event_new(r->base, -1, 0, on_deliver, q);
    if (!q->ev) {
        free(q);
        errno = ENOMEM;
        return NULL;
    }
    if (len > RESOLVER_NAME_MAX || resolver_name_to_wire(name, wire, &wlen) < 0) {
        q->res.status = RESOLVER_FAILED;
        query_ready(q);
        return q;
    }

    hash = siphash24(r->key, (const uint8_t *)name, len);
    now = r->now_ms(r->clock_arg);
    e = cache_find(r, name, len, hash);
    if (e && e->fetch) {
        list_push_front(&e->fetch->waiters, &q->link);
        return q;
    }
    if (e && now < e->expires_ms) {
        cache_lru_unlink(r, e);
        cache_lru_push(r, e);
        query_answer(q, e, now);
        query_ready(q);
        return q;
    }
    if (e) {
        cache_lru_unlink(r, e);               /* expired: fetched again in place */
    } else {
        e = calloc(1, sizeof(*e) + len + 1);
        if (!e)
            goto nomem;
        e->hash = hash;
        e->len = len;
        memcpy(e->name, name, len);
        e->hnext = *cache_bucket(r, hash);
        *cache_bucket(r, hash) = e;
    }
    f = fetch_new(r, e);
    if (!f) {
        cache_entry_free(r, e);
        goto nomem;
    }
    e->fetch = f;
    list_push_front(&f->waiters, &q->link);
    fetch_send(r, f, e->name);
    return q;
nomem:
    query_free(q);
    errno = ENOMEM;
    return NULL;
}

bool resolver_cached(struct resolver *r, const char *name, struct resolver_result *out,
                     char cname[RESOLVER_NAME_MAX + 1])
{
    size_t len = strnlen(name, RESOLVER_NAME_MAX + 1);
    struct entry *e;
    uint64_t now;

    if (len > RESOLVER_NAME_MAX)
        return false;
    e = cache_find(r, name, len, siphash24(r->key, (const uint8_t *)name, len));
    if (!e || e->fetch)
        return false;
    now = r->now_ms(r->clock_arg);
    if (now >= e->expires_ms)
        return false;
    cache_lru_unlink(r, e);
    cache_lru_push(r, e);
    cache_answer(e, now, out, cname);
    return true;
}

void resolver_cancel(struct resolver_query *q)
{
    if (q)
        query_free(q);
}

void resolver_flush(struct resolver *r)
{
    struct entry *e;

    while ((e = cache_lru_oldest(r)) != NULL)
        cache_entry_drop(r, e);
}

size_t resolver_cache_size(const struct resolver *r)
{
    return r->cached;
}

void resolver_set_clock(struct resolver *r, uint64_t (*now_ms)(void *arg), void *arg)
{
    r->now_ms = now_ms ? now_ms : mono_ms;
    r->clock_arg = arg;
}
