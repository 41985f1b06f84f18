/*
 * TLS client for bench_proxy.py, run inside a client namespace: many full TLS
 * handshakes (certificate verified, no session resumption) to ADDR:PORT with
 * SNI NAME, CONCURRENCY at a time, on one epoll loop.
 *
 *   rate: each connection sends `GET / HTTP/1.1` (Connection: close) and reads
 *         the response to the end; prints
 *         ok=N failed=N seconds=S rate=CONN_PER_S ttfb_p10_us=.. ttfb_p50_us=..
 *         ttfb_p90_us=.. handshake_p50_us=..
 *         (time to first byte: from connect() to the first response byte; the
 *         handshake: from connect() to the end of the TLS handshake)
 *   hold: completes COUNT handshakes and keeps them open; prints
 *         held ok=N failed=N seconds=S
 *         then waits for a line (or EOF) on standard input, or until the time
 *         limit, closes everything and prints `released`.
 *
 * Exits 1 if any connection failed or the time limit ran out.
 *
 * usage: tls_client rate|hold ADDR PORT NAME CAFILE COUNT CONCURRENCY TIME_LIMIT_SECONDS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_FD_MAX 65536         /* slots are indexed by descriptor */
#define CLIENT_MAX_CONCURRENCY 4096
#define CLIENT_MAX_COUNT 1000000
#define CLIENT_EVENTS 256
#define CLIENT_ERRORS_SHOWN 5

enum slot_state { S_FREE, S_CONNECTING, S_HANDSHAKE, S_WRITE, S_READ, S_HELD };

struct slot {
    enum slot_state state;
    SSL *ssl;
    double t0;
    double hs;                      /* seconds from connect() to the handshake's end */
    bool first;                     /* a response byte arrived */
    char head[13];                  /* the first bytes of the response */
    size_t head_len;
};

static struct {
    SSL_CTX *ctx;
    struct sockaddr_in dst;
    const char *name;
    bool hold;
    int ep;
    struct slot *slots;
    unsigned long started, ok, failed, held, inflight, errors_shown;
    double *ttfb;                   /* microseconds, one per successful connection */
    double *hs;                     /* the handshake's share of it */
    char request[512];
    size_t request_len;
} g;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void complain(const char *what, int fd)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "";

    if (g.errors_shown++ >= CLIENT_ERRORS_SHOWN)
        return;
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    fprintf(stderr, "tls_client: fd %d: %s: %s\n", fd, what, e ? buf : strerror(errno));
}

static void finish(int fd, bool ok)
{
    struct slot *s = &g.slots[fd];

    if (ok && s->first && s->head_len >= 12 && memcmp(s->head, "HTTP/1.1 200", 12) == 0) {
        g.hs[g.ok] = s->hs * 1e6;
        g.ttfb[g.ok++] = s->t0;     /* by now the time to first byte, in us */
    } else {
        if (ok)
            complain("response is not `HTTP/1.1 200`", fd);
        g.failed++;
    }
    if (s->ssl)
        SSL_free(s->ssl);
    memset(s, 0, sizeof(*s));
    close(fd);                      /* also leaves the epoll set */
    g.inflight--;
    ERR_clear_error();
}

static void want(int fd, int err)
{
    struct epoll_event ev = {.events = err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN,
                             .data.fd = fd};

    epoll_ctl(g.ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Moves connection FD on as far as it can go without blocking. */
static void drive(int fd)
{
    struct slot *s = &g.slots[fd];
    char buf[16384];
    int r, err;

    switch (s->state) {
    case S_CONNECTING: {
        int soerr = 0;
        socklen_t len = sizeof(soerr);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr) {
            errno = soerr ? soerr : errno;
            complain("connect", fd);
            finish(fd, false);
            return;
        }
        s->ssl = SSL_new(g.ctx);
        if (!s->ssl || !SSL_set_fd(s->ssl, fd) || !SSL_set_tlsext_host_name(s->ssl, g.name) ||
            !SSL_set1_host(s->ssl, g.name)) {
            complain("SSL_new", fd);
            finish(fd, false);
            return;
        }
        SSL_set_connect_state(s->ssl);
        s->state = S_HANDSHAKE;
    }
        /* fall through */
    case S_HANDSHAKE:
        r = SSL_do_handshake(s->ssl);
        if (r != 1) {
            err = SSL_get_error(s->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                want(fd, err);
                return;
            }
            complain("handshake", fd);
            finish(fd, false);
            return;
        }
        s->hs = now() - s->t0;
        if (g.hold) {
            /* held: out of the loop (the server's tickets would keep it readable) */
            epoll_ctl(g.ep, EPOLL_CTL_DEL, fd, NULL);
            s->state = S_HELD;
            g.held++;
            g.inflight--;
            return;
        }
        s->state = S_WRITE;
        /* fall through */
    case S_WRITE:
        r = SSL_write(s->ssl, g.request, (int)g.request_len);
        if (r <= 0) {
            err = SSL_get_error(s->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                want(fd, err);
                return;
            }
            complain("write", fd);
            finish(fd, false);
            return;
        }
        s->state = S_READ;
        /* fall through */
    case S_READ:
        for (;;) {
            r = SSL_read(s->ssl, buf, sizeof(buf));
            if (r > 0) {
                size_t n = (size_t)r, room = sizeof(s->head) - 1 - s->head_len;

                if (!s->first) {
                    s->first = true;
                    s->t0 = (now() - s->t0) * 1e6;     /* from now on: the TTFB */
                }
                memcpy(s->head + s->head_len, buf, n < room ? n : room);
                s->head_len += n < room ? n : room;
                continue;
            }
            err = SSL_get_error(s->ssl, r);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                want(fd, err);
                return;
            }
            if (err == SSL_ERROR_ZERO_RETURN) {     /* close_notify or a clean EOF */
                finish(fd, true);
                return;
            }
            complain("read", fd);
            finish(fd, false);
            return;
        }
    default:
        return;
    }
}

/* Opens one more connection; one that fails at once is counted as failed. */
static void start_one(void)
{
    struct epoll_event ev = {.events = EPOLLOUT};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    g.started++;
    if (fd < 0 || fd >= CLIENT_FD_MAX) {
        complain("socket", fd);
        if (fd >= 0)
            close(fd);
        g.failed++;
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    g.slots[fd].t0 = now();
    if (connect(fd, (const struct sockaddr *)&g.dst, sizeof(g.dst)) < 0 && errno != EINPROGRESS) {
        complain("connect", fd);
        close(fd);
        g.failed++;
        return;
    }
    g.slots[fd].state = S_CONNECTING;
    ev.data.fd = fd;
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        complain("epoll_ctl", fd);
        close(fd);
        g.slots[fd].state = S_FREE;
        g.failed++;
        return;
    }
    g.inflight++;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double pct(const double *v, unsigned long n, double p)
{
    return n ? v[(unsigned long)(p * (double)(n - 1) + 0.5)] : 0;
}

int main(int argc, char **argv)
{
    struct epoll_event events[CLIENT_EVENTS];
    unsigned long count, conc;
    double limit, t0, t1;
    struct rlimit rl;
    int fd;

    if (argc != 9 || (strcmp(argv[1], "rate") != 0 && strcmp(argv[1], "hold") != 0)) {
        fprintf(stderr, "usage: tls_client rate|hold ADDR PORT NAME CAFILE COUNT CONCURRENCY "
                        "TIME_LIMIT_SECONDS\n");
        return 2;
    }
    g.hold = strcmp(argv[1], "hold") == 0;
    g.dst.sin_family = AF_INET;
    if (inet_pton(AF_INET, argv[2], &g.dst.sin_addr) != 1)
        return 2;
    g.dst.sin_port = htons((uint16_t)strtoul(argv[3], NULL, 10));
    g.name = argv[4];
    count = strtoul(argv[6], NULL, 10);
    conc = strtoul(argv[7], NULL, 10);
    limit = strtod(argv[8], NULL);
    if (count < 1 || count > CLIENT_MAX_COUNT || conc < 1 || conc > CLIENT_MAX_CONCURRENCY ||
        !(limit > 0))
        return 2;
    g.request_len = (size_t)snprintf(g.request, sizeof(g.request),
                                     "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: tls_client\r\n"
                                     "Connection: close\r\n\r\n", g.name);

    /* every held connection is a descriptor */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    g.ctx = SSL_CTX_new(TLS_client_method());
    if (!g.ctx || SSL_CTX_load_verify_locations(g.ctx, argv[5], NULL) != 1) {
        fprintf(stderr, "tls_client: loading %s failed\n", argv[5]);
        return 1;
    }
    SSL_CTX_set_verify(g.ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_OFF);  /* every handshake is full */
    SSL_CTX_set_options(g.ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    g.slots = calloc(CLIENT_FD_MAX, sizeof(*g.slots));
    g.ttfb = calloc(count, sizeof(*g.ttfb));
    g.hs = calloc(count, sizeof(*g.hs));
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!g.slots || !g.ttfb || !g.hs || g.ep < 0)
        return 1;

    t0 = now();
    while (g.ok + g.failed + g.held < count) {
        int i, n;

        while (g.inflight < conc && g.started < count)
            start_one();
        if (g.inflight == 0)
            continue;
        if (now() - t0 > limit)
            break;
        n = epoll_wait(g.ep, events, CLIENT_EVENTS, 100);
        if (n < 0 && errno != EINTR)
            return 1;
        for (i = 0; i < n; i++)
            drive(events[i].data.fd);
    }
    t1 = now();
    g.failed = count - g.ok - g.held;       /* what the time limit cut off, too */

    if (g.hold) {
        struct pollfd in = {.fd = 0, .events = POLLIN};
        double left = limit - (now() - t0);
        char line[64];

        printf("held ok=%lu failed=%lu seconds=%.6f\n", g.held, g.failed, t1 - t0);
        fflush(stdout);
        if (left > 0 && poll(&in, 1, (int)(left * 1000)) > 0)
            (void)!read(0, line, sizeof(line));
        for (fd = 0; fd < CLIENT_FD_MAX; fd++) {
            if (g.slots[fd].state != S_FREE) {
                SSL_free(g.slots[fd].ssl);
                close(fd);
            }
        }
        printf("released\n");
        return g.held == count ? 0 : 1;
    }
    qsort(g.ttfb, g.ok, sizeof(*g.ttfb), cmp_double);
    qsort(g.hs, g.ok, sizeof(*g.hs), cmp_double);
    printf("ok=%lu failed=%lu seconds=%.6f rate=%.1f ttfb_p10_us=%.0f ttfb_p50_us=%.0f "
           "ttfb_p90_us=%.0f handshake_p50_us=%.0f\n", g.ok, g.failed, t1 - t0,
           (double)g.ok / (t1 - t0), pct(g.ttfb, g.ok, 0.1), pct(g.ttfb, g.ok, 0.5),
           pct(g.ttfb, g.ok, 0.9), pct(g.hs, g.ok, 0.5));
    return g.ok == count ? 0 : 1;
}
