/*
 * Flows driven in-process over loopback, on the proxy's own event loop: a
 * test listener hands each client connection to conn_accept() as TPROXY's
 * listener would, and plays the origin for the connection the proxy then
 * makes to the dialled address (a cidr rule allows 127.0.0.1 on the
 * listener's port). Sniffing and denials, the relay and half-closes, a
 * reload's revalidation, and the connection limit, each checked on the wire
 * and in the flow log.
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
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "feedback.h"
#include "resolver.h"

#define WAIT_MS 3000                    /* the most any step here may take */

struct world {
    struct proxy px;
    int lfd;                            /* the test listener */
    uint16_t port;
    struct event *lev;
    int origin;                         /* the proxy's upstream connection, accepted */
    char log[64];
};

static const char policy_fmt[] =
    "version: 1\n"
    "egress:\n"
    "  - domain: allowed.test\n"
    "    ports: [80]\n"
    "%s"
    "destinations:\n"
    "  allow_ranges: [127.0.0.0/8]\n"
    "timeouts:\n"
    "  sniff: 300ms\n"
    "limits:\n"
    "  max_connections: %u\n";

static struct policy *make_policy(uint16_t cidr_port, unsigned max_conns)
{
    char rule[96] = "", text[512];
    struct diag_list d;
    struct policy *p = NULL;

    if (cidr_port)
        snprintf(rule, sizeof(rule), "  - cidr: 127.0.0.1/32\n    ports: [%u]\n", cidr_port);
    snprintf(text, sizeof(text), policy_fmt, rule, max_conns);
    diag_init(&d, "test.yaml");
    policy_load_buffer("test.yaml", (const uint8_t *)text, strlen(text), &p, &d);
    diag_clear(&d);
    assert_non_null(p);
    return p;
}

/* The first connection after a client dialled is the client's: it goes to the
 * proxy. The next one is the proxy's own, to the dialled address: the origin. */
static bool expect_client;

static void on_listener(evutil_socket_t fd, short what, void *arg)
{
    struct world *w = arg;
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    int c = accept4(fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

    (void)what;
    if (c < 0)
        return;
    if (expect_client) {
        expect_client = false;
        conn_accept(&w->px, c, &peer);
    } else {
        assert_int_equal(w->origin, -1);
        w->origin = c;
    }
}

static int setup(void **state)
{
    struct world *w = calloc(1, sizeof(*w));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd;

    assert_non_null(w);
    w->origin = -1;
    w->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(w->lfd >= 0);
    assert_int_equal(bind(w->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(w->lfd, 16), 0);
    assert_int_equal(getsockname(w->lfd, (struct sockaddr *)&sa, &len), 0);
    w->port = ntohs(sa.sin_port);

    snprintf(w->log, sizeof(w->log), "/tmp/sluice-test-conn-XXXXXX");
    fd = mkstemp(w->log);
    assert_true(fd >= 0);
    close(fd);
    list_init(&w->px.conns);
    w->px.id = "unit";
    w->px.base = event_base_new();
    w->px.log = flowlog_open(w->log);
    w->px.relay = relay_pool_new(&w->px);
    w->px.resolver = resolver_new(w->px.base, "127.0.0.1:9");    /* asked by no test */
    w->px.policy = make_policy(w->port, 0);
    assert_non_null(w->px.base);
    assert_non_null(w->px.log);
    assert_non_null(w->px.relay);
    assert_non_null(w->px.resolver);
    w->lev = event_new(w->px.base, w->lfd, EV_READ | EV_PERSIST, on_listener, w);
    assert_int_equal(event_add(w->lev, NULL), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;

    conn_close_all(&w->px);
    assert_int_equal(w->px.n_conns, 0);
    relay_pool_free(w->px.relay);
    resolver_free(w->px.resolver);
    flowlog_close(w->px.log);
    feedback_free(w->px.feedback);
    policy_free(w->px.policy);
    event_free(w->lev);
    event_base_free(w->px.base);
    close(w->lfd);
    if (w->origin >= 0)
        close(w->origin);
    unlink(w->log);
    free(w);
    return 0;
}

/* Turns the loop until PRED holds (at most WAIT_MS). */
static bool run_until(struct world *w, bool (*pred)(struct world *, int), int fd)
{
    uint64_t end = clock_now_ms() + WAIT_MS;

    while (!pred(w, fd) && clock_now_ms() < end) {
        struct timeval tv = clock_tv(5);

        event_base_loopexit(w->px.base, &tv);
        event_base_loop(w->px.base, EVLOOP_ONCE);
    }
    return pred(w, fd);
}

/* Bytes, an EOF or an error are there to read (poll: a peek would eat a reset). */
static bool readable(struct world *w, int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    (void)w;
    return poll(&p, 1, 0) == 1;
}

static bool origin_up(struct world *w, int fd)
{
    (void)fd;
    return w->origin >= 0;
}

static bool no_flows(struct world *w, int fd)
{
    (void)fd;
    return w->px.n_conns == 0;
}

/* A client connected to the listener, already handed to the proxy. */
static int dial(struct world *w)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(w->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    expect_client = true;
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    while (expect_client)
        event_base_loop(w->px.base, EVLOOP_ONCE);
    return fd;
}

/* Everything FD sends until EOF, a reset, or WAIT_MS; *RESET tells which end it was. */
static size_t drain(struct world *w, int fd, char *buf, size_t cap, bool *reset)
{
    size_t n = 0;

    *reset = false;
    for (;;) {
        ssize_t r;

        if (!run_until(w, readable, fd))
            fail_msg("nothing from fd %d in %d ms", fd, WAIT_MS);
        r = recv(fd, buf + n, cap - n - 1, MSG_DONTWAIT);
        if (r == 0)
            break;
        if (r < 0) {
            *reset = errno == ECONNRESET;
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static char *log_text(struct world *w)
{
    static char text[65536];
    FILE *f = fopen(w->log, "r");
    size_t n;

    assert_non_null(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static void test_http_denied_with_403(void **state)
{
    struct world *w = *state;
    char req[128], buf[1024];
    bool reset;
    int fd, n;

    /* the cidr rule is for another port: this flow is sniffed for a name */
    policy_free(w->px.policy);
    w->px.policy = make_policy(1, 0);
    /* the Host names the port dialled, or it would be host_mismatch */
    n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: evil.test:%u\r\n\r\n", w->port);
    fd = dial(w);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    drain(w, fd, buf, sizeof(buf), &reset);
    assert_non_null(strstr(buf, "HTTP/1.1 403 "));
    assert_non_null(strstr(buf, "X-Sluice-Reason: not_allowlisted"));
    assert_true(run_until(w, no_flows, -1));
    assert_non_null(strstr(log_text(w), "\"event\":\"deny\""));
    assert_non_null(strstr(log_text(w), "\"reason\":\"not_allowlisted\""));
    assert_int_equal(w->origin, -1);     /* nothing was connected */
    close(fd);
}

static void test_unknown_protocol_is_reset(void **state)
{
    struct world *w = *state;
    static const uint8_t junk[] = {0, 1, 2, 3, 0xff, '\n'};
    char buf[64];
    bool reset;
    int fd;

    policy_free(w->px.policy);
    w->px.policy = make_policy(1, 0);
    fd = dial(w);
    assert_int_equal(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    assert_int_equal(drain(w, fd, buf, sizeof(buf), &reset), 0);
    assert_true(reset);
    assert_non_null(strstr(log_text(w), "\"reason\":\"unknown_protocol\""));
    close(fd);
}

static void test_sniff_timeout(void **state)
{
    struct world *w = *state;
    char buf[64];
    bool reset;
    uint64_t t0;
    int fd;

    policy_free(w->px.policy);
    w->px.policy = make_policy(1, 0);
    t0 = clock_now_ms();
    fd = dial(w);
    assert_int_equal(send(fd, "GET", 3, 0), 3);     /* and nothing more */
    drain(w, fd, buf, sizeof(buf), &reset);
    assert_true(clock_now_ms() - t0 >= 250);
    assert_non_null(strstr(log_text(w), "\"reason\":\"sniff_timeout\""));
    close(fd);
}

/* Bytes both ways, each half-close passed on, then flow_end with the counts. */
static void test_relay_and_half_close(void **state)
{
    struct world *w = *state;
    char buf[64];
    bool reset;
    int fd = dial(w);

    assert_true(run_until(w, origin_up, -1));
    assert_int_equal(send(fd, "ping", 4, 0), 4);
    assert_true(run_until(w, readable, w->origin));
    assert_int_equal(recv(w->origin, buf, sizeof(buf), 0), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(send(w->origin, "pong!", 5, 0), 5);
    shutdown(w->origin, SHUT_WR);                   /* the origin is done */
    assert_int_equal(drain(w, fd, buf, sizeof(buf), &reset), 5);
    assert_false(reset);
    assert_string_equal(buf, "pong!");
    /* the client may still send: its half of the flow is open */
    assert_int_equal(send(fd, "more", 4, 0), 4);
    assert_true(run_until(w, readable, w->origin));
    assert_int_equal(recv(w->origin, buf, sizeof(buf), 0), 4);
    shutdown(fd, SHUT_WR);
    assert_true(run_until(w, readable, w->origin));
    assert_int_equal(recv(w->origin, buf, sizeof(buf), 0), 0);   /* passed on */
    assert_true(run_until(w, no_flows, -1));
    assert_non_null(strstr(log_text(w), "\"event\":\"flow_end\""));
    assert_non_null(strstr(log_text(w), "\"bytes_up\":8,\"bytes_down\":5"));
    close(fd);
}

/* A reload that drops the cidr rule ends the flow: deny and flow_end, revoked. */
static void test_revalidation_revokes(void **state)
{
    struct world *w = *state;
    char buf[64];
    bool reset;
    int fd = dial(w);

    assert_true(run_until(w, origin_up, -1));
    assert_int_equal(send(fd, "x", 1, 0), 1);
    assert_true(run_until(w, readable, w->origin));
    policy_free(w->px.policy);
    w->px.policy = make_policy(1, 0);
    conn_revalidate(&w->px);
    assert_int_equal(w->px.n_conns, 0);
    drain(w, fd, buf, sizeof(buf), &reset);
    assert_non_null(strstr(log_text(w), "\"event\":\"deny\""));
    assert_non_null(strstr(log_text(w), "\"event\":\"flow_end\""));
    assert_non_null(strstr(log_text(w), "\"reason\":\"revoked\""));
    close(fd);
}

/* limits.max_connections: the connection beyond it is reset at once, logged. */
static void test_max_connections(void **state)
{
    struct world *w = *state;
    char buf[64];
    bool reset;
    int first, second;

    policy_free(w->px.policy);
    w->px.policy = make_policy(w->port, 1);
    first = dial(w);
    assert_true(run_until(w, origin_up, -1));
    second = dial(w);
    assert_int_equal(drain(w, second, buf, sizeof(buf), &reset), 0);
    assert_true(reset);
    assert_int_equal(w->px.n_conns, 1);
    assert_non_null(strstr(log_text(w), "\"reason\":\"too_many_connections\""));
    close(second);
    close(first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_http_denied_with_403, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_protocol_is_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sniff_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relay_and_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revalidation_revokes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
