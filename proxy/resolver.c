/*
 * The proxy's resolver: c-ares on the proxy's libevent loop, a cache keyed by
 * name with TTLs and LRU eviction, and one upstream query per name however
 * many callers wait for it. Answers are parsed here, not by c-ares, so that
 * only records on the CNAME chain from the asked name are believed.
 */
#include "resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "cursor.h"
#include "dns_msg.h"
#include "hostport.h"
#include "list.h"

#define TRY_MS 1000             /* c-ares: first try per server; a retry waits twice as long */
#define TRIES 2                 /* one server: 1 s + 2 s, inside RESOLVER_TIMEOUT_MS */
#define CHAIN_MAX 8             /* CNAME links followed before the answer is refused */
#define BUCKETS 8192            /* power of two; cached names plus those in flight */
#define SERVER_MAX 64           /* one "ADDR:PORT" item of the servers list */

_Static_assert((BUCKETS & (BUCKETS - 1)) == 0, "BUCKETS must be a power of two");
_Static_assert(BUCKETS >= 2 * RESOLVER_CACHE_MAX, "hash chains must stay short");

enum { ANSWER_PENDING = -1 };

struct resolver_query;

struct resolver_query {
    struct resolver *r;
    struct list link;                   /* on a fetch's waiters, or on r->ready */
    struct event *ev;                   /* runs the callback from the loop */
    resolver_cb cb;
    void *arg;
    struct resolver_result res;         /* a copy: the cache entry may go before delivery */
    char cname[RESOLVER_NAME_MAX + 1];
};

struct fetch;

/* One family's half of a fetch: the c-ares callback argument. */
struct half {
    struct fetch *f;
    int family;
    int status;                         /* ANSWER_PENDING, 0, RESOLVER_NXDOMAIN/FAILED */
    size_t n;
    struct resolver_addr addrs[RESOLVER_MAX_ADDRS];
    char cname[RESOLVER_NAME_MAX + 1];
};

/*
 * The upstream queries (A and AAAA) for one name. It outlives its entry when
 * the deadline gives up on it: c-ares still owns the queries and calls back
 * later, so the fetch is freed only when both have.
 */
struct fetch {
    struct resolver *r;
    struct entry *e;                    /* NULL once finished */
    struct event *deadline;
    int pending;                        /* c-ares queries yet to call back */
    struct half half[2];                /* A, then AAAA */
    struct list waiters;                /* struct resolver_query */
};

/* A name: either being fetched (fetch set) or cached (on the LRU list). */
struct entry {
    struct entry *hnext;
    struct list lru;                    /* on r->lru while cached */
    struct fetch *fetch;
    uint64_t hash;
    uint64_t answered_ms, expires_ms;
    struct resolver_result res;         /* res.cname unused: see cname */
    char *cname;
    size_t len;
    char name[];
};

/* A socket c-ares asked us to watch. */
struct sock_watch {
    struct resolver *r;
    struct sock_watch *next;
    ares_socket_t fd;
    short what;
    struct event *ev;
};

struct resolver {
    struct event_base *base;
    ares_channel channel;
    struct event *timer;                /* c-ares's next timeout */
    struct sock_watch *socks;
    struct entry **buckets;
    struct list lru;                    /* cached entries, oldest first */
    size_t cached;
    struct list ready;                  /* answered queries waiting for the loop */
    uint64_t key[2];                    /* hash key: sandboxes choose the names */
    uint64_t (*now_ms)(void *arg);
    void *clock_arg;
    bool closing;
    bool lib_init;
};

/* ---- answer parsing (pure) ---- */

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c | 0x20) : c;
}

static bool host_byte(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/*
 * NAME in dotted form (one trailing dot allowed) as lowercase wire labels.
 * Hostname bytes only: c-ares would read a backslash as an escape and send
 * another name than the one its answer is checked against.
 */
static int name_to_wire(const char *name, uint8_t *wire, size_t *wlen)
{
    size_t len = strnlen(name, RESOLVER_NAME_MAX + 2), i = 0, n = 0;

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > RESOLVER_NAME_MAX || name[len - 1] == '.')
        return -EINVAL;
    while (i < len) {
        size_t j = i;

        while (j < len && name[j] != '.')
            j++;
        if (j == i || j - i > 63)
            return -EINVAL;
        wire[n++] = (uint8_t)(j - i);
        for (; i < j; i++) {
            wire[n] = lower((uint8_t)name[i]);
            if (!host_byte(wire[n++]))
                return -EINVAL;
        }
        i = j + 1;
    }
    wire[n++] = 0;
    *wlen = n;
    return 0;
}

/* The name at *OFF, lowercase (compared with the asked name byte for byte). */
static int name_read(const uint8_t *msg, size_t len, size_t *off, uint8_t *wire, size_t *wlen)
{
    size_t i;

    if (!dns_name_read(msg, len, off, wire, wlen))
        return -EBADMSG;
    for (i = 0; i < *wlen; i++)
        wire[i] = lower(wire[i]);
    return 0;
}

/*
 * WIRE as a dotted hostname into TEXT (RESOLVER_NAME_MAX + 1 bytes). Only
 * hostname bytes pass: a dot or a control byte inside a label would change
 * the name's meaning once it is written out again.
 */
static int wire_to_text(const uint8_t *wire, char *text)
{
    size_t i = 0, n = 0;

    while (wire[i]) {
        uint8_t l = wire[i++];

        if (n)
            text[n++] = '.';
        for (; l; l--, i++) {
            if (!host_byte(wire[i]))
                return -EBADMSG;
            text[n++] = (char)wire[i];
        }
    }
    if (n == 0)
        return -EBADMSG;
    text[n] = '\0';
    return 0;
}

struct rr {
    uint8_t owner[DNS_NAME_WIRE_MAX];
    size_t owner_len;
    uint16_t type, cls;
    uint32_t ttl;
    size_t rdoff, rdlen;
};

static int rr_read(const uint8_t *msg, size_t len, size_t *off, struct rr *rr)
{
    struct cur c;

    if (name_read(msg, len, off, rr->owner, &rr->owner_len) < 0)
        return -EBADMSG;
    c = cur_init(msg + *off, len - *off);
    rr->type = cur_u16(&c);
    rr->cls = cur_u16(&c);
    rr->ttl = (uint32_t)cur_u16(&c) << 16;
    rr->ttl |= cur_u16(&c);
    rr->rdlen = cur_u16(&c);
    rr->rdoff = *off + 10;
    cur_skip(&c, rr->rdlen);
    if (c.bad)
        return -EBADMSG;
    *off = len - c.n;
    if (rr->ttl > INT32_MAX)            /* RFC 2181 §8: read as zero */
        rr->ttl = 0;
    return 0;
}

static bool wire_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

int resolver_parse_answer(const uint8_t *msg, size_t len, const char *name, int family,
                          struct resolver_addr *addrs, size_t cap, size_t *n, char *cname)
{
    uint8_t want[DNS_NAME_WIRE_MAX];
    size_t wlen, off, answers, hops;
    uint16_t qtype = family == AF_INET ? DNS_TYPE_A : DNS_TYPE_AAAA;
    size_t alen = family == AF_INET ? 4 : 16;
    uint32_t chain_ttl = UINT32_MAX;
    uint16_t flags, qd, an;
    struct cur c = cur_init(msg, len);
    struct rr rr;

    *n = 0;
    cname[0] = '\0';
    if ((family != AF_INET && family != AF_INET6) || name_to_wire(name, want, &wlen) < 0)
        return -EINVAL;
    cur_skip(&c, 2);                    /* id: c-ares matched it */
    flags = cur_u16(&c);
    qd = cur_u16(&c);
    an = cur_u16(&c);
    cur_skip(&c, 4);
    if (c.bad || !(flags & 0x8000) || qd != 1)
        return -EBADMSG;

    off = 12;
    if (name_read(msg, len, &off, rr.owner, &rr.owner_len) < 0 ||
        !wire_eq(rr.owner, rr.owner_len, want, wlen))
        return -EBADMSG;
    c = cur_init(msg + off, len - off);
    if (cur_u16(&c) != qtype || cur_u16(&c) != DNS_CLASS_IN || c.bad)
        return -EBADMSG;
    if ((flags & 0xf) == DNS_RCODE_NXDOMAIN)
        return RESOLVER_NXDOMAIN;
    if ((flags & 0xf) != DNS_RCODE_NOERROR)
        return RESOLVER_FAILED;
    answers = off + 4;

    /* Follow the chain, one pass over the answers per link: order is not promised. */
    for (hops = 0;; hops++) {
        bool linked = false;

        off = answers;
        for (size_t i = 0; i < an; i++) {
            size_t end;

            if (rr_read(msg, len, &off, &rr) < 0)
                return -EBADMSG;
            if (linked || rr.type != DNS_TYPE_CNAME || rr.cls != DNS_CLASS_IN ||
                !wire_eq(rr.owner, rr.owner_len, want, wlen))
                continue;
            end = rr.rdoff;
            if (name_read(msg, len, &end, want, &wlen) < 0 || end != rr.rdoff + rr.rdlen)
                return -EBADMSG;
            if (rr.ttl < chain_ttl)
                chain_ttl = rr.ttl;
            linked = true;
        }
        if (!linked)
            break;
        if (hops == CHAIN_MAX)
            return -EBADMSG;
    }
    if (hops > 0 && wire_to_text(want, cname) < 0)
        return -EBADMSG;

    off = answers;
    for (size_t i = 0; i < an; i++) {
        struct resolver_addr *a;

        if (rr_read(msg, len, &off, &rr) < 0)
            return -EBADMSG;
        if (rr.type != qtype || rr.cls != DNS_CLASS_IN || !wire_eq(rr.owner, rr.owner_len, want, wlen))
            continue;
        if (rr.rdlen != alen)
            return -EBADMSG;
        if (*n == cap)
            continue;
        a = &addrs[(*n)++];
        memset(a, 0, sizeof(*a));
        a->family = family;
        memcpy(a->addr, msg + rr.rdoff, alen);
        a->ttl = rr.ttl < chain_ttl ? rr.ttl : chain_ttl;
    }
    return 0;
}

/* ---- clock and hash ---- */

static uint64_t mono_ms(void *arg)
{
    struct timespec ts;

    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rotl(uint64_t x, int b)
{
    return x << b | x >> (64 - b);
}

static void sipround(uint64_t v[4])
{
    v[0] += v[1], v[1] = rotl(v[1], 13), v[1] ^= v[0], v[0] = rotl(v[0], 32);
    v[2] += v[3], v[3] = rotl(v[3], 16), v[3] ^= v[2];
    v[0] += v[3], v[3] = rotl(v[3], 21), v[3] ^= v[0];
    v[2] += v[1], v[1] = rotl(v[1], 17), v[1] ^= v[2], v[2] = rotl(v[2], 32);
}

/* SipHash-2-4: a sandbox picks the names, so it must not be able to pick the buckets. */
static uint64_t siphash(const uint64_t key[2], const uint8_t *p, size_t len)
{
    uint64_t v[4] = {
        0x736f6d6570736575ULL ^ key[0], 0x646f72616e646f6dULL ^ key[1],
        0x6c7967656e657261ULL ^ key[0], 0x7465646279746573ULL ^ key[1],
    };
    uint64_t m, last = (uint64_t)len << 56;
    size_t i;

    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&m, p + i, 8);
        m = le64toh(m);
        v[3] ^= m;
        sipround(v);
        sipround(v);
        v[0] ^= m;
    }
    for (size_t k = 0; i + k < len; k++)
        last |= (uint64_t)p[i + k] << (8 * k);
    v[3] ^= last;
    sipround(v);
    sipround(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for (int k = 0; k < 4; k++)
        sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
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

/* E's answer as of NOW: TTLs aged, the CNAME copied into CNAME. */
static void answer_from(const struct entry *e, uint64_t now, struct resolver_result *res,
                        char *cname)
{
    uint64_t age = (now - e->answered_ms) / 1000;

    *res = e->res;
    for (size_t i = 0; i < res->n; i++) {
        uint32_t *ttl = &res->addrs[i].ttl;

        *ttl = *ttl > age ? (uint32_t)(*ttl - age) : 0;
    }
    res->cname = NULL;
    if (e->cname) {
        memcpy(cname, e->cname, strlen(e->cname) + 1);
        res->cname = cname;
    }
}

static void query_answer(struct resolver_query *q, const struct entry *e, uint64_t now)
{
    answer_from(e, now, &q->res, q->cname);
}

/* ---- cache ---- */

static struct entry **bucket(struct resolver *r, uint64_t hash)
{
    return &r->buckets[hash & (BUCKETS - 1)];
}

static struct entry *entry_find(struct resolver *r, const char *name, size_t len, uint64_t hash)
{
    struct entry *e;

    for (e = *bucket(r, hash); e; e = e->hnext)
        if (e->hash == hash && e->len == len && memcmp(e->name, name, len) == 0)
            return e;
    return NULL;
}

static void lru_unlink(struct resolver *r, struct entry *e)
{
    if (!list_linked(&e->lru))
        return;
    list_remove(&e->lru);
    r->cached--;
}

static void lru_push(struct resolver *r, struct entry *e)
{
    list_push_back(&r->lru, &e->lru);
    r->cached++;
}

static struct entry *lru_oldest(struct resolver *r)
{
    return list_empty(&r->lru) ? NULL : list_entry(r->lru.next, struct entry, lru);
}

/* Unhooks E from its bucket and frees it; E must not be on the LRU list. */
static void entry_free(struct resolver *r, struct entry *e)
{
    struct entry **p;

    for (p = bucket(r, e->hash); *p != e; p = &(*p)->hnext)
        ;
    *p = e->hnext;
    free(e->cname);
    free(e);
}

static void entry_drop(struct resolver *r, struct entry *e)
{
    lru_unlink(r, e);
    entry_free(r, e);
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
    lru_push(r, e);
    while (r->cached > RESOLVER_CACHE_MAX)
        entry_drop(r, lru_oldest(r));
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
    struct timeval tv = {RESOLVER_TIMEOUT_MS / 1000, RESOLVER_TIMEOUT_MS % 1000 * 1000};

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
    if (len > RESOLVER_NAME_MAX || name_to_wire(name, wire, &wlen) < 0) {
        q->res.status = RESOLVER_FAILED;
        query_ready(q);
        return q;
    }

    hash = siphash(r->key, (const uint8_t *)name, len);
    now = r->now_ms(r->clock_arg);
    e = entry_find(r, name, len, hash);
    if (e && e->fetch) {
        list_push_front(&e->fetch->waiters, &q->link);
        return q;
    }
    if (e && now < e->expires_ms) {
        lru_unlink(r, e);
        lru_push(r, e);
        query_answer(q, e, now);
        query_ready(q);
        return q;
    }
    if (e) {
        lru_unlink(r, e);               /* expired: fetched again in place */
    } else {
        e = calloc(1, sizeof(*e) + len + 1);
        if (!e)
            goto nomem;
        e->hash = hash;
        e->len = len;
        memcpy(e->name, name, len);
        e->hnext = *bucket(r, hash);
        *bucket(r, hash) = e;
    }
    f = fetch_new(r, e);
    if (!f) {
        entry_free(r, e);
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
    e = entry_find(r, name, len, siphash(r->key, (const uint8_t *)name, len));
    if (!e || e->fetch)
        return false;
    now = r->now_ms(r->clock_arg);
    if (now >= e->expires_ms)
        return false;
    lru_unlink(r, e);
    lru_push(r, e);
    answer_from(e, now, out, cname);
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

    while ((e = lru_oldest(r)) != NULL)
        entry_drop(r, e);
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
