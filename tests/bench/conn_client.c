/*
 * Connection-rate client for bench_netsetup.py, run inside a sandbox: opens
 * COUNT short TCP connections to ADDR:PORT, CONCURRENCY at a time, each one
 * finished when the far end (the transparent listener TPROXY hands it to) has
 * accepted and closed it. Prints one line:
 *     ok=N failed=N seconds=S rate=CONNECTIONS_PER_SECOND
 * and exits 1 if any connection failed or the time limit ran out.
 *
 * usage: conn_client ADDR PORT COUNT CONCURRENCY TIME_LIMIT_SECONDS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_MAX_CONCURRENCY 1024
#define CLIENT_EVENTS 64

enum { SLOT_CONNECTING = 1, SLOT_WAIT_EOF };

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts one connection; its fd is the epoll key, its state rides in STATE[fd]. */
static int start(int ep, const struct sockaddr_in *dst, unsigned char *state, int state_len)
{
    struct epoll_event ev = {.events = EPOLLOUT};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0 || fd >= state_len) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    state[fd] = SLOT_CONNECTING;
    ev.data.fd = fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sockaddr_in dst = {.sin_family = AF_INET};
    struct epoll_event events[CLIENT_EVENTS];
    unsigned long count, started = 0, ok = 0, failed = 0;
    unsigned long inflight = 0, conc;
    double limit, t0, t1;
    unsigned char *state;
    int ep, state_len = 65536;

    if (argc != 6) {
        fprintf(stderr, "usage: conn_client ADDR PORT COUNT CONCURRENCY TIME_LIMIT_SECONDS\n");
        return 2;
    }
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1)
        return 2;
    dst.sin_port = htons((uint16_t)strtoul(argv[2], NULL, 10));
    count = strtoul(argv[3], NULL, 10);
    conc = strtoul(argv[4], NULL, 10);
    limit = strtod(argv[5], NULL);
    if (conc < 1 || conc > CLIENT_MAX_CONCURRENCY)
        return 2;
    state = calloc((size_t)state_len, 1);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!state || ep < 0)
        return 1;

    t0 = now();
    while (ok + failed < count) {
        int i, n;

        while (inflight < conc && started < count) {
            started++;
            if (start(ep, &dst, state, state_len) < 0)
                failed++;
            else
                inflight++;
        }
        if (inflight == 0)
            continue;
        if (now() - t0 > limit)
            break;
        n = epoll_wait(ep, events, CLIENT_EVENTS, 100);
        if (n < 0 && errno != EINTR)
            return 1;
        for (i = 0; i < n; i++) {
            int fd = events[i].data.fd, err = 0;
            socklen_t len = sizeof(err);
            char byte;

            if (state[fd] == SLOT_CONNECTING) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};

                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0 &&
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) == 0) {
                    state[fd] = SLOT_WAIT_EOF;
                    continue;
                }
                failed++;
            } else if (read(fd, &byte, 1) == 0) {
                ok++;                   /* the listener accepted and closed: done */
            } else if (errno == EAGAIN) {
                continue;
            } else {
                failed++;
            }
            state[fd] = 0;
            close(fd);                  /* also takes it out of the epoll set */
            inflight--;
        }
    }
    t1 = now();
    printf("ok=%lu failed=%lu seconds=%.6f rate=%.1f\n", ok, failed + (count - ok - failed),
           t1 - t0, (double)ok / (t1 - t0));
    return ok == count ? 0 : 1;
}
