/*
 * The resolver against a fake DNS server that runs in this process, on
 * 127.0.0.1 and on the same event loop: answers, cache lifetimes, sharing of
 * one upstream query, cancellation, timeouts and the cache bound. Plus the
 * answer parser on hand-built messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "resolver.h"

/* ---- a DNS message encoder ---- */

struct msg {
    uint8_t b[4096];
    size_t n;
};

static void put8(struct msg *m, unsigned v)
{
    assert_true(m->n < sizeof(m->b));
    m->b[m->n++] = (uint8_t)v;
}

static void put16(struct msg *m, unsigned v)
{
    put8(m, v >> 8 & 0xff);
    put8(m, v & 0xff);
}

static void put32(struct msg *m, uint32_t v)
{
    put16(m, v >> 16);
    put16(m, v & 0xffff);
}

/* A dotted name as labels; NULL is a pointer to the question's name. */
static void put_name(struct msg *m, const char *name)
{
    if (!name) {
        put16(m, 0xc00c);
        return;
    }
    while (*name) {
        size_t len = strcspn(name, ".");

        put8(m, (unsigned)len);
        for (size_t i = 0; i < len; i++)
            put8(m, (uint8_t)name[i]);
        name += len + (name[len] == '.');
    }
    put8(m, 0);
}

static size_t name_len(const char *name)
{
    struct msg tmp = {.n = 0};

    put_name(&tmp, name);
    return tmp.n;
}

enum { T_A = 1, T_CNAME = 5, T_AAAA = 28 };
enum { F_ANSWER = 0x8180 };             /* QR, RD, RA */

static void put_header(struct msg *m, unsigned flags, unsigned an)
{
    put16(m, 0x1234);
    put16(m, flags);
    put16(m, 1);
    put16(m, an);
    put32(m, 0);
}

static void put_question(struct msg *m, const char *name, unsigned type)
{
    put_name(m, name);
    put16(m, type);
    put16(m, 1);
}

static void put_rr(struct msg *m, const char *owner, unsigned type, uint32_t ttl, unsigned rdlen)
{
    put_name(m, owner);
    put16(m, type);
    put16(m, 1);
    put32(m, ttl);
    put16(m, rdlen);
}

static void put_addr(struct msg *m, const char *owner, uint32_t ttl, const char *text)
{
    uint8_t a[16];
    int v6 = strchr(text, ':') != NULL;

    assert_int_equal(inet_pton(v6 ? AF_INET6 : AF_INET, text, a), 1);
    put_rr(m, owner, v6 ? T_AAAA : T_A, ttl, v6 ? 16 : 4);
    for (int i = 0; i < (v6 ? 16 : 4); i++)
        put8(m, a[i]);
}

static void put_cname(struct msg *m, const char *owner, uint32_t ttl, const char *target)
{
    put_rr(m, owner, T_CNAME, ttl, (unsigned)name_len(target));
    put_name(m, target);
}

/* ---- the fake server ---- */

/* What the fake server knows; names ending in .lru.test all get 192.0.2.100. */
struct zone {
    const char *name;
    int rcode;
    int silent;                         /* 1: never answers; 2: answers A only */
    int garbage;                        /* an A record with 5 bytes of data */
    const char *chain[3];               /* CNAME links from name, in order */
    uint32_t chain_ttl;
    const char *addrs[4];               /* owned by the chain's end */
    uint32_t ttl;
    int many;                           /* this many A records instead of addrs */
};

static const struct zone zones[] = {
    {.name = "dual.test", .addrs = {"192.0.2.1", "2001:db8::1", "192.0.2.2"}, .ttl = 60},
    {.name = "v4.test", .addrs = {"192.0.2.3"}, .ttl = 60},
    {.name = "v6.test", .addrs = {"2001:db8::6"}, .ttl = 60},
    {.name = "nodata.test"},
    {.name = "alias.test", .chain = {"mid.test", "real.test"}, .chain_ttl = 30,
     .addrs = {"192.0.2.9", "2001:db8::9"}, .ttl = 60},
    {.name = "loop.test", .chain = {"loop2.test", "loop.test"}, .chain_ttl = 60},
    {.name = "many.test", .many = 20, .ttl = 60},
    {.name = "nx.test", .rcode = 3},
    {.name = "fail.test", .rcode = 2},
    {.name = "garbage.test", .garbage = 1},
    {.name = "silent.test", .silent = 1},
    {.name = "half.test", .silent = 2, .addrs = {"192.0.2.7"}, .ttl = 60},
    {.name = "short.test", .addrs = {"192.0.2.5"}, .ttl = 1},
    {.name = "long.test", .addrs = {"192.0.2.6"}, .ttl = 1000},
};
#define NZONES (sizeof(zones) / sizeof(zones[0]))

struct fake {
    int fd;
    uint16_t port;
    struct event *ev;
    unsigned total;                     /* queries received */
    unsigned count[NZONES][2];          /* per zone: A, AAAA */
};

static const struct zone *zone_find(const char *name, size_t *idx)
{
    for (size_t i = 0; i < NZONES; i++) {
        if (strcmp(zones[i].name, name) == 0) {
            *idx = i;
            return &zones[i];
        }
    }
    return NULL;
}

static void fake_answer(struct fake *fk, const uint8_t *q, size_t qlen, struct msg *m)
{
    static const struct zone lru = {.name = "lru", .addrs = {"192.0.2.100"}, .ttl = 60};
    char name[256];
    size_t pos = 12, n = 0, idx = 0, an = 0;
    unsigned type;
    const struct zone *z;
    const char *owner = NULL;

    while (pos < qlen && q[pos]) {
        size_t l = q[pos++];

        assert_true(pos + l < qlen && n + l + 1 < sizeof(name));
        if (n)
            name[n++] = '.';
        memcpy(name + n, q + pos, l);
        n += l;
        pos += l;
    }
    name[n] = '\0';
    assert_true(pos + 5 <= qlen);
    type = (unsigned)q[pos + 1] << 8 | q[pos + 2];
    pos += 5;
    fk->total++;

    z = zone_find(name, &idx);
    if (!z && n > 9 && strcmp(name + n - 9, ".lru.test") == 0)
        z = &lru;
    else if (z)
        fk->count[idx][type == T_AAAA]++;
    if (z && (z->silent == 1 || (z->silent == 2 && type == T_AAAA)))
        return;

    put16(m, (unsigned)q[0] << 8 | q[1]);
    put16(m, F_ANSWER | (z ? (unsigned)z->rcode : 3));
    put16(m, 1);
    put16(m, 0);                        /* the answer count, patched below */
    put32(m, 0);
    for (size_t i = 12; i < pos; i++)
        put8(m, q[i]);
    if (!z || z->rcode)
        return;
    for (int i = 0; i < 3 && z->chain[i]; i++, an++) {
        put_cname(m, owner, z->chain_ttl, z->chain[i]);
        owner = z->chain[i];
    }
    if (z->garbage) {
        put_rr(m, owner, T_A, 60, 5);
        put32(m, 0x01020304);
        put8(m, 5);
        an++;
    }
    for (int i = 0; i < z->many && type == T_A; i++, an++) {
        char a[32];

        snprintf(a, sizeof(a), "198.51.100.%d", i + 1);
        put_addr(m, owner, z->ttl, a);
    }
    for (int i = 0; i < 4 && z->addrs[i]; i++) {
        if ((strchr(z->addrs[i], ':') != NULL) == (type == T_AAAA)) {
            put_addr(m, owner, z->ttl, z->addrs[i]);
            an++;
        }
    }
    m->b[6] = (uint8_t)(an >> 8);
    m->b[7] = (uint8_t)an;
}

static void on_fake_read(evutil_socket_t fd, short what, void *arg)
{
    struct fake *fk = arg;
    uint8_t q[1500];
    struct sockaddr_storage from;
    socklen_t fromlen;
    ssize_t len;

    (void)what;
    for (;;) {
        struct msg m = {.n = 0};

        fromlen = sizeof(from);
        len = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
        if (len < 0)
            return;
        if (len < 17)
            continue;
        fake_answer(fk, q, (size_t)len, &m);
        if (m.n)
            sendto(fd, m.b, m.n, 0, (struct sockaddr *)&from, fromlen);
    }
}

static void fake_start(struct fake *fk, struct event_base *base)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);

    memset(fk, 0, sizeof(*fk));
    fk->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fk->fd >= 0);
    assert_int_equal(bind(fk->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fk->fd, (struct sockaddr *)&sin, &len), 0);
    fk->port = ntohs(sin.sin_port);
    fk->ev = event_new(base, fk->fd, EV_READ | EV_PERSIST, on_fake_read, fk);
    assert_non_null(fk->ev);
    assert_int_equal(event_add(fk->ev, NULL), 0);
}

static void fake_stop(struct fake *fk)
{
    event_free(fk->ev);
    close(fk->fd);
}

static unsigned zone_count(const struct fake *fk, const char *name)
{
    size_t idx = 0;

    assert_non_null(zone_find(name, &idx));
    return fk->count[idx][0] + fk->count[idx][1];
}

/* ---- the world each test runs in ---- */

struct world {
    struct event_base *base;
    struct event *tick;
    struct fake fake;
    struct resolver *r;
    uint64_t clock_ms;                  /* the cache's clock once a test sets it */
};

static uint64_t real_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t fake_clock(void *arg)
{
    return ((struct world *)arg)->clock_ms;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static struct resolver *resolver_for(struct world *w, int copies)
{
    char servers[256] = "";
    size_t n = 0;

    for (int i = 0; i < copies; i++)
        n += (size_t)snprintf(servers + n, sizeof(servers) - n, "%s127.0.0.1:%u",
                              i ? "," : "", w->fake.port);
    return resolver_new(w->base, servers);
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    struct timeval tv = {0, 50000};

    assert_non_null(w);
    w->base = event_base_new();
    assert_non_null(w->base);
    /* a heartbeat, so that a loop waiting for something that never comes still returns */
    w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, NULL);
    assert_int_equal(event_add(w->tick, &tv), 0);
    fake_start(&w->fake, w->base);
    w->r = resolver_for(w, 1);
    assert_non_null(w->r);
    w->clock_ms = 1000000;
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;

    resolver_free(w->r);
    fake_stop(&w->fake);
    event_free(w->tick);
    event_base_free(w->base);
    free(w);
    return 0;
}

/* Runs the loop until *COUNTER reaches WANT; fails after MAX_MS. */
static void run_until(struct world *w, const int *counter, int want, unsigned max_ms)
{
    uint64_t end = real_ms() + max_ms;

    while (*counter < want) {
        assert_true(real_ms() < end);
        event_base_loop(w->base, EVLOOP_ONCE);
    }
}

static void run_for(struct world *w, unsigned ms)
{
    uint64_t end = real_ms() + ms;

    while (real_ms() < end)
        event_base_loop(w->base, EVLOOP_ONCE);
}

/* What a callback saw. */
struct got {
    int calls;
    int *total;                         /* also counted here, if set */
    struct resolver_result res;
    char cname[RESOLVER_NAME_MAX + 1];
    uint64_t at_ms;
};

static void on_result(const struct resolver_result *res, void *arg)
{
    struct got *g = arg;

    g->calls++;
    if (g->total)
        (*g->total)++;
    g->res = *res;
    g->res.cname = NULL;
    g->cname[0] = '\0';
    if (res->cname)
        snprintf(g->cname, sizeof(g->cname), "%s", res->cname);
    g->at_ms = real_ms();
}

static void addr_text(const struct resolver_addr *a, char *buf, size_t cap)
{
    assert_non_null(inet_ntop(a->family, a->addr, buf, (socklen_t)cap));
}

/* One lookup, run to its answer. */
static void lookup(struct world *w, const char *name, struct got *g)
{
    memset(g, 0, sizeof(*g));
    assert_non_null(resolver_lookup(w->r, name, on_result, g));
    assert_int_equal(g->calls, 0);              /* not even a cache hit answers at once */
    run_until(w, &g->calls, 1, 2000);
}

/* ---- the answer parser on hand-built messages ---- */

static void msg_plain(struct msg *m)
{
    put_header(m, F_ANSWER, 2);
    put_question(m, "www.example.test", T_A);
    put_addr(m, NULL, 300, "192.0.2.1");
    put_addr(m, "WWW.Example.TEST", 200, "192.0.2.2");  /* names match without case */
}

static void msg_wrong_question(struct msg *m)
{
    put_header(m, F_ANSWER, 1);
    put_question(m, "other.test", T_A);
    put_addr(m, NULL, 300, "192.0.2.1");
}

static void msg_not_answer(struct msg *m)
{
    put_header(m, 0x0100, 1);
    put_question(m, "www.example.test", T_A);
    put_addr(m, NULL, 300, "192.0.2.1");
}

static void msg_wrong_type(struct msg *m)
{
    put_header(m, F_ANSWER, 1);
    put_question(m, "www.example.test", T_AAAA);
    put_addr(m, NULL, 300, "2001:db8::1");
}

static void msg_truncated(struct msg *m)
{
    msg_plain(m);
    m->n -= 2;
}

static void msg_pointer_loop(struct msg *m)
{
    put_header(m, F_ANSWER, 1);
    put_question(m, "www.example.test", T_A);
    put16(m, (unsigned)(0xc000 | m->n));        /* points at itself */
    put16(m, T_A);
    put16(m, 1);
    put32(m, 60);
    put16(m, 4);
    put32(m, 0xc0000201);
}

static void msg_pointer_forward(struct msg *m)
{
    put_header(m, F_ANSWER, 1);
    put_question(m, "www.example.test", T_A);
    put16(m, (unsigned)(0xc000 | (m->n + 14)));  /* past itself, into its own data */
    put16(m, T_A);
    put16(m, 1);
    put32(m, 60);
    put16(m, 4);
    put32(m, 0xc0000201);
}

static void msg_unrelated(struct msg *m)
{
    put_header(m, F_ANSWER, 2);
    put_question(m, "www.example.test", T_A);
    put_addr(m, "evil.test", 300, "203.0.113.66");      /* not on the chain: ignored */
    put_cname(m, "evil.test", 300, "www.example.test");
}

static void msg_chain_unordered(struct msg *m)
{
    put_header(m, F_ANSWER, 3);
    put_question(m, "www.example.test", T_A);
    put_addr(m, "edge.cdn.test", 120, "192.0.2.8");
    put_cname(m, "cdn.test", 40, "edge.cdn.test");
    put_cname(m, NULL, 500, "CDN.test");
}

static void msg_bad_rdlen(struct msg *m)
{
    put_header(m, F_ANSWER, 1);
    put_question(m, "www.example.test", T_A);
    put_rr(m, NULL, T_A, 60, 5);
    put32(m, 0xc0000201);
    put8(m, 0);
}

static void msg_high_ttl(struct msg *m)
{
    put_header(m, F_ANSWER, 1);
    put_question(m, "www.example.test", T_A);
    put_addr(m, NULL, 0x80000000u, "192.0.2.1");
}

static void msg_bad_target(struct msg *m)
{
    put_header(m, F_ANSWER, 1);
    put_question(m, "www.example.test", T_A);
    put_rr(m, NULL, T_CNAME, 60, 6);
    put8(m, 4);
    put8(m, 'a'), put8(m, '.'), put8(m, 'b'), put8(m, 'c');     /* a dot inside a label */
    put8(m, 0);
}

static void msg_many(struct msg *m)
{
    put_header(m, F_ANSWER, 20);
    put_question(m, "www.example.test", T_A);
    for (unsigned i = 1; i <= 20; i++)
        put_addr(m, NULL, 60, "192.0.2.1");
}

static void put_chain(struct msg *m, int links)
{
    char from[32] = "www.example.test", to[32];

    put_header(m, F_ANSWER, (unsigned)links + 1);
    put_question(m, from, T_A);
    for (int i = 0; i < links; i++) {
        snprintf(to, sizeof(to), "c%d.test", i);
        put_cname(m, from, 60, to);
        memcpy(from, to, sizeof(to));
    }
    put_addr(m, from, 60, "192.0.2.1");
}

static void msg_chain8(struct msg *m)
{
    put_chain(m, 8);
}

static void msg_chain9(struct msg *m)
{
    put_chain(m, 9);
}

static void msg_nxdomain(struct msg *m)
{
    put_header(m, F_ANSWER | 3, 0);
    put_question(m, "www.example.test", T_A);
}

static void msg_refused(struct msg *m)
{
    put_header(m, F_ANSWER | 5, 0);
    put_question(m, "www.example.test", T_A);
}

static const struct parse_case {
    void (*build)(struct msg *m);
    int rc;
    size_t n;
    uint32_t ttl;                       /* of the first address */
    const char *cname;
    const char *why;
} parse_cases[] = {
    {msg_plain, 0, 2, 300, "", "two addresses, the second owner in other case"},
    {msg_wrong_question, -EBADMSG, 0, 0, "", "an answer to another name"},
    {msg_not_answer, -EBADMSG, 0, 0, "", "QR clear: a query, not an answer"},
    {msg_wrong_type, -EBADMSG, 0, 0, "", "an answer to another type"},
    {msg_truncated, -EBADMSG, 0, 0, "", "the last record cut short"},
    {msg_pointer_loop, -EBADMSG, 0, 0, "", "a compression pointer to itself"},
    {msg_pointer_forward, -EBADMSG, 0, 0, "", "a compression pointer forwards"},
    {msg_unrelated, 0, 0, 0, "", "records off the chain are not believed"},
    {msg_chain_unordered, 0, 1, 40, "edge.cdn.test", "chain in any order; lowest TTL on it"},
    {msg_bad_rdlen, -EBADMSG, 0, 0, "", "an A record of 5 bytes"},
    {msg_high_ttl, 0, 1, 0, "", "a TTL with the top bit set counts as zero"},
    {msg_bad_target, -EBADMSG, 0, 0, "", "a CNAME target that is no hostname"},
    {msg_many, 0, 16, 60, "", "addresses beyond the cap are dropped"},
    {msg_chain8, 0, 1, 60, "c7.test", "eight links are followed"},
    {msg_chain9, -EBADMSG, 0, 0, "", "a ninth link is refused"},
    {msg_nxdomain, RESOLVER_NXDOMAIN, 0, 0, "", "NXDOMAIN"},
    {msg_refused, RESOLVER_FAILED, 0, 0, "", "REFUSED"},
};

static void test_parse_answer(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        struct resolver_addr addrs[RESOLVER_MAX_ADDRS];
        char cname[RESOLVER_NAME_MAX + 1];
        struct msg m = {.n = 0};
        size_t n = 99;
        int rc;

        c->build(&m);
        rc = resolver_parse_answer(m.b, m.n, "www.example.test", AF_INET, addrs,
                                   RESOLVER_MAX_ADDRS, &n, cname);
        print_message("# %s\n", c->why);
        assert_int_equal(rc, c->rc);
        if (rc < 0)
            continue;
        assert_int_equal(n, c->n);
        assert_string_equal(cname, c->cname);
        if (n)
            assert_int_equal(addrs[0].ttl, c->ttl);
    }
}

static void test_parse_every_prefix(void **state)
{
    struct resolver_addr addrs[RESOLVER_MAX_ADDRS];
    char cname[RESOLVER_NAME_MAX + 1];
    struct msg m = {.n = 0};
    size_t n;

    (void)state;
    msg_chain_unordered(&m);
    for (size_t len = 0; len < m.n; len++) {
        uint8_t *copy = malloc(len ? len : 1);  /* exact size, so ASan sees any overread */

        assert_non_null(copy);
        memcpy(copy, m.b, len);
        assert_int_equal(resolver_parse_answer(copy, len, "www.example.test", AF_INET, addrs,
                                               RESOLVER_MAX_ADDRS, &n, cname), -EBADMSG);
        free(copy);
    }
}

/* ---- the resolver against the fake server ---- */

static const struct answer_case {
    const char *name;
    int status;
    size_t n;
    const char *addrs[4];               /* the first ones, in order */
    uint32_t ttl;
    const char *cname;
    const char *why;
    bool unsent;                        /* refused before any query */
} answer_cases[] = {
    {"dual.test", 0, 3, {"192.0.2.1", "192.0.2.2", "2001:db8::1"}, 60, "",
     "A first, then AAAA, whichever came back first", false},
    {"v4.test", 0, 1, {"192.0.2.3"}, 60, "", "no AAAA: the A alone", false},
    {"v6.test", 0, 1, {"2001:db8::6"}, 60, "", "no A: the AAAA alone", false},
    {"nodata.test", 0, 0, {NULL}, 0, "", "NODATA: status 0, no address", false},
    {"alias.test", 0, 2, {"192.0.2.9", "2001:db8::9"}, 30, "real.test",
     "the chain's end, and its TTL when lower", false},
    {"many.test", 0, RESOLVER_MAX_ADDRS, {"198.51.100.1", "198.51.100.2"}, 60, "",
     "at most RESOLVER_MAX_ADDRS per family", false},
    {"nx.test", RESOLVER_NXDOMAIN, 0, {NULL}, 0, "", "NXDOMAIN", false},
    {"fail.test", RESOLVER_FAILED, 0, {NULL}, 0, "", "SERVFAIL", false},
    {"garbage.test", RESOLVER_FAILED, 0, {NULL}, 0, "", "a malformed answer", false},
    {"loop.test", RESOLVER_FAILED, 0, {NULL}, 0, "", "a CNAME loop", false},
    {"bad..name", RESOLVER_FAILED, 0, {NULL}, 0, "", "an empty label", true},
    {"bad\\.nx.test", RESOLVER_FAILED, 0, {NULL}, 0, "", "c-ares's escape byte", true},
};

static void test_answers(void **state)
{
    struct world *w = *state;

    for (size_t i = 0; i < sizeof(answer_cases) / sizeof(answer_cases[0]); i++) {
        const struct answer_case *c = &answer_cases[i];
        unsigned before = w->fake.total;
        struct got g;

        print_message("# %s: %s\n", c->name, c->why);
        lookup(w, c->name, &g);
        assert_int_equal(w->fake.total == before, c->unsent);
        assert_int_equal(g.calls, 1);
        assert_int_equal(g.res.status, c->status);
        assert_int_equal(g.res.n, c->n);
        assert_string_equal(g.cname, c->cname);
        for (size_t k = 0; k < 4 && c->addrs[k]; k++) {
            char text[INET6_ADDRSTRLEN];

            addr_text(&g.res.addrs[k], text, sizeof(text));
            assert_string_equal(text, c->addrs[k]);
            assert_int_equal(g.res.addrs[k].ttl, c->ttl);
        }
    }
}

static void test_name_too_long(void **state)
{
    struct world *w = *state;
    char name[RESOLVER_NAME_MAX + 2];
    struct got g = {0};

    memset(name, 'a', sizeof(name) - 1);
    for (size_t i = 63; i < sizeof(name) - 1; i += 64)
        name[i] = '.';
    name[sizeof(name) - 1] = '\0';
    assert_non_null(resolver_lookup(w->r, name, on_result, &g));
    assert_int_equal(g.calls, 0);               /* never from inside the call */
    run_until(w, &g.calls, 1, 1000);
    assert_int_equal(g.res.status, RESOLVER_FAILED);
    assert_int_equal(w->fake.total, 0);

    name[RESOLVER_NAME_MAX] = '\0';             /* 253 is still a name */
    lookup(w, name, &g);
    assert_int_equal(w->fake.total, 2);
}

static void test_ttl_honoured(void **state)
{
    struct world *w = *state;
    struct got g;

    resolver_set_clock(w->r, fake_clock, w);

    lookup(w, "long.test", &g);                 /* TTL 1000, kept at most the cap */
    assert_int_equal(zone_count(&w->fake, "long.test"), 2);
    assert_int_equal(g.res.addrs[0].ttl, 1000);
    w->clock_ms += 100 * 1000;
    lookup(w, "long.test", &g);
    assert_int_equal(zone_count(&w->fake, "long.test"), 2);
    assert_int_equal(g.res.addrs[0].ttl, 900); /* counted down */
    w->clock_ms += (RESOLVER_TTL_CAP - 100) * 1000 - 1;
    lookup(w, "long.test", &g);
    assert_int_equal(zone_count(&w->fake, "long.test"), 2);
    w->clock_ms += 1;
    lookup(w, "long.test", &g);
    assert_int_equal(zone_count(&w->fake, "long.test"), 4);
    assert_int_equal(g.res.addrs[0].ttl, 1000);

    lookup(w, "short.test", &g);                /* TTL 1, kept the floor */
    assert_int_equal(zone_count(&w->fake, "short.test"), 2);
    w->clock_ms += RESOLVER_TTL_FLOOR * 1000 - 1;
    lookup(w, "short.test", &g);
    assert_int_equal(zone_count(&w->fake, "short.test"), 2);
    assert_int_equal(g.res.addrs[0].ttl, 0);
    w->clock_ms += 1;
    lookup(w, "short.test", &g);
    assert_int_equal(zone_count(&w->fake, "short.test"), 4);
}

/* resolver_cached(): the same answer as a lookup, at once, only while fresh. */
static void test_cached_peek(void **state)
{
    struct world *w = *state;
    struct resolver_result res;
    char cname[RESOLVER_NAME_MAX + 1];
    struct got g;

    resolver_set_clock(w->r, fake_clock, w);
    assert_false(resolver_cached(w->r, "long.test", &res, cname));  /* never asked */
    assert_int_equal(zone_count(&w->fake, "long.test"), 0);         /* and not asked now */
    lookup(w, "long.test", &g);
    w->clock_ms += 100 * 1000;
    assert_true(resolver_cached(w->r, "long.test", &res, cname));
    assert_int_equal(res.status, 0);
    assert_int_equal(res.n, g.res.n);
    assert_memory_equal(res.addrs[0].addr, g.res.addrs[0].addr, 16);
    assert_int_equal(res.addrs[0].ttl, 900);                        /* counted down */
    w->clock_ms += RESOLVER_TTL_CAP * 1000;
    assert_false(resolver_cached(w->r, "long.test", &res, cname));  /* expired */
    assert_int_equal(zone_count(&w->fake, "long.test"), 2);
}

static void test_negative_cache(void **state)
{
    static const char *const names[] = {"nx.test", "fail.test", "nodata.test"};
    struct world *w = *state;
    struct got g;

    resolver_set_clock(w->r, fake_clock, w);
    for (size_t i = 0; i < 3; i++) {
        unsigned before;

        lookup(w, names[i], &g);
        before = zone_count(&w->fake, names[i]);
        assert_true(before >= 2);
        w->clock_ms += RESOLVER_NEG_TTL * 1000 - 1;
        lookup(w, names[i], &g);
        assert_int_equal(zone_count(&w->fake, names[i]), before);
        w->clock_ms += 1;
        lookup(w, names[i], &g);
        assert_true(zone_count(&w->fake, names[i]) > before);
    }
}

static void test_coalesce(void **state)
{
    struct world *w = *state;
    int total = 0;
    struct got g1 = {.total = &total}, g2 = {.total = &total};

    assert_non_null(resolver_lookup(w->r, "dual.test", on_result, &g1));
    assert_non_null(resolver_lookup(w->r, "dual.test", on_result, &g2));
    run_until(w, &total, 2, 2000);
    run_for(w, 100);
    assert_int_equal(g1.calls, 1);
    assert_int_equal(g2.calls, 1);
    assert_int_equal(zone_count(&w->fake, "dual.test"), 2);    /* one A, one AAAA */
    assert_int_equal(g1.res.n, 3);
    assert_int_equal(g2.res.n, 3);
    assert_memory_equal(g1.res.addrs, g2.res.addrs, 3 * sizeof(g1.res.addrs[0]));
}

static void test_cancel(void **state)
{
    struct world *w = *state;
    char name[300];
    struct got g1 = {0}, g2 = {0};
    struct resolver_query *q;

    /* in flight: the answer still arrives and is cached, nobody is called */
    q = resolver_lookup(w->r, "dual.test", on_result, &g1);
    assert_non_null(q);
    resolver_cancel(q);
    run_for(w, 200);
    assert_int_equal(g1.calls, 0);
    assert_int_equal(zone_count(&w->fake, "dual.test"), 2);
    assert_int_equal(resolver_cache_size(w->r), 1);

    /* a cache hit waiting for the loop */
    q = resolver_lookup(w->r, "dual.test", on_result, &g1);
    resolver_cancel(q);
    run_for(w, 100);
    assert_int_equal(g1.calls, 0);

    /* one of two waiters on the same fetch */
    q = resolver_lookup(w->r, "v4.test", on_result, &g1);
    assert_non_null(resolver_lookup(w->r, "v4.test", on_result, &g2));
    resolver_cancel(q);
    run_until(w, &g2.calls, 1, 2000);
    run_for(w, 100);
    assert_int_equal(g1.calls, 0);
    assert_int_equal(g2.calls, 1);

    /* a failure waiting for the loop */
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    q = resolver_lookup(w->r, name, on_result, &g1);
    resolver_cancel(q);
    run_for(w, 100);
    assert_int_equal(g1.calls, 0);

    resolver_cancel(NULL);
}

static void test_free_pending(void **state)
{
    struct world *w = *state;
    struct got g[4] = {{0}}, warm;

    lookup(w, "v4.test", &warm);
    assert_non_null(resolver_lookup(w->r, "dual.test", on_result, &g[0]));     /* in flight */
    assert_non_null(resolver_lookup(w->r, "silent.test", on_result, &g[1]));
    assert_non_null(resolver_lookup(w->r, "v4.test", on_result, &g[2]));       /* cache hit */
    assert_non_null(resolver_lookup(w->r, "no..name", on_result, &g[3]));      /* failure */
    resolver_free(w->r);
    w->r = NULL;
    run_for(w, 300);
    for (int i = 0; i < 4; i++)
        assert_int_equal(g[i].calls, 0);
}

static struct resolver *freed_in_callback;

static void on_result_free(const struct resolver_result *res, void *arg)
{
    on_result(res, arg);
    resolver_free(freed_in_callback);
    freed_in_callback = NULL;
}

static void test_free_in_callback(void **state)
{
    struct world *w = *state;
    int total = 0;
    struct got g1 = {.total = &total}, g2 = {.total = &total}, warm;

    lookup(w, "v4.test", &warm);
    freed_in_callback = w->r;
    w->r = NULL;
    assert_non_null(resolver_lookup(freed_in_callback, "v4.test", on_result_free, &g1));
    assert_non_null(resolver_lookup(freed_in_callback, "v4.test", on_result_free, &g2));
    run_until(w, &total, 1, 1000);
    run_for(w, 100);
    assert_int_equal(total, 1);                 /* the other went with the resolver */
    assert_null(freed_in_callback);
}

static void test_timeouts(void **state)
{
    struct world *w = *state;
    struct resolver *three = resolver_for(w, 3);
    int total = 0;
    struct got one = {.total = &total}, many = {.total = &total}, half = {.total = &total};
    uint64_t start = real_ms();
    unsigned before;

    assert_non_null(three);
    resolver_set_clock(w->r, fake_clock, w);
    /* one server: c-ares gives up after its two tries, 1 s and 2 s */
    assert_non_null(resolver_lookup(w->r, "silent.test", on_result, &one));
    /* three servers, and c-ares would go on for 7 s: the deadline stops it */
    assert_non_null(resolver_lookup(three, "silent.test", on_result, &many));
    /* an answer for A but none for AAAA */
    assert_non_null(resolver_lookup(w->r, "half.test", on_result, &half));
    run_until(w, &total, 3, RESOLVER_TIMEOUT_MS + 2000);

    assert_int_equal(one.res.status, RESOLVER_FAILED);
    assert_in_range(one.at_ms - start, 2500, 3800);
    assert_int_equal(many.res.status, RESOLVER_FAILED);
    assert_in_range(many.at_ms - start, RESOLVER_TIMEOUT_MS - 100, RESOLVER_TIMEOUT_MS + 600);
    assert_int_equal(half.res.status, 0);
    assert_int_equal(half.res.n, 1);

    /* half an answer is kept only as long as a failure */
    before = zone_count(&w->fake, "half.test");
    w->clock_ms += RESOLVER_NEG_TTL * 1000 - 1;
    lookup(w, "half.test", &half);
    assert_int_equal(zone_count(&w->fake, "half.test"), before);
    w->clock_ms += 1;
    assert_non_null(resolver_lookup(w->r, "half.test", on_result, &half));
    run_for(w, 200);
    assert_true(zone_count(&w->fake, "half.test") > before);

    /* its queries are still with c-ares: freeing now must drop them cleanly */
    resolver_free(three);
}

static void on_count(const struct resolver_result *res, void *arg)
{
    assert_int_equal(res->status, 0);
    (*(int *)arg)++;
}

static void test_lru_bound(void **state)
{
    struct world *w = *state;
    const int names = RESOLVER_CACHE_MAX + 10, batch = 64;
    char name[64];
    int done = 0;
    unsigned before;
    struct got g;

    for (int i = 0; i < names; i += batch) {
        int n = names - i < batch ? names - i : batch;

        for (int k = 0; k < n; k++) {
            snprintf(name, sizeof(name), "n%d.lru.test", i + k);
            assert_non_null(resolver_lookup(w->r, name, on_count, &done));
        }
        run_until(w, &done, i + n, 5000);
        if (i == 0)                             /* n0 used again: now newer than n1..n63 */
            lookup(w, "n0.lru.test", &g);
    }
    assert_int_equal(resolver_cache_size(w->r), RESOLVER_CACHE_MAX);

    before = w->fake.total;
    lookup(w, "n0.lru.test", &g);               /* kept: it was used */
    lookup(w, "n11.lru.test", &g);              /* kept: n1..n10 went first */
    assert_int_equal(w->fake.total, before);
    lookup(w, "n1.lru.test", &g);               /* evicted */
    assert_int_equal(w->fake.total, before + 2);
    assert_int_equal(resolver_cache_size(w->r), RESOLVER_CACHE_MAX);
}

static void test_flush(void **state)
{
    struct world *w = *state;
    struct got g, g2 = {0};

    lookup(w, "dual.test", &g);
    assert_int_equal(resolver_cache_size(w->r), 1);
    assert_non_null(resolver_lookup(w->r, "v4.test", on_result, &g2));   /* in flight */
    resolver_flush(w->r);
    assert_int_equal(resolver_cache_size(w->r), 0);
    run_until(w, &g2.calls, 1, 2000);
    assert_int_equal(g2.res.status, 0);
    assert_int_equal(resolver_cache_size(w->r), 1);
    lookup(w, "dual.test", &g);
    assert_int_equal(zone_count(&w->fake, "dual.test"), 4);
}

static const struct servers_case {
    const char *servers;
    bool ok;
} servers_cases[] = {
    {"192.0.2.53", true},
    {"192.0.2.53:5353", true},
    {"2001:db8::53", true},
    {"[2001:db8::53]", true},
    {"[2001:db8::53]:5353", true},
    {"192.0.2.53,[2001:db8::53]:53,198.51.100.53:65535", true},
    {"", false},
    {"192.0.2.53,", false},                     /* an empty item */
    {"192.0.2.53:0", false},
    {"192.0.2.53:65536", false},
    {"192.0.2.53:53x", false},
    {"[2001:db8::53", false},
    {"[2001:db8::53]53", false},
    {"[192.0.2.53]:53", false},                 /* brackets are for IPv6 */
    {"dns.example.test", false},                /* no names: nothing to resolve them with */
    {" 192.0.2.53", false},
};

static void test_servers(void **state)
{
    struct world *w = *state;

    for (size_t i = 0; i < sizeof(servers_cases) / sizeof(servers_cases[0]); i++) {
        const struct servers_case *c = &servers_cases[i];
        struct resolver *r;

        errno = 0;
        r = resolver_new(w->base, c->servers);
        print_message("# servers '%s'\n", c->servers);
        if (c->ok) {
            assert_non_null(r);
        } else {
            assert_null(r);
            assert_int_equal(errno, EINVAL);
        }
        resolver_free(r);
    }
    assert_null(resolver_new(w->base, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_answer),
        cmocka_unit_test(test_parse_every_prefix),
        cmocka_unit_test_setup_teardown(test_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_peek, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negative_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_coalesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_servers, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
