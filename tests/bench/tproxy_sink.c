/*
 * The proxy's stand-in for bench_netsetup.py: transparent TCP listeners on
 * ADDR:PORT (one per address) that accept every connection TPROXY hands them
 * and close it at once. On SIGTERM it prints how many it accepted and how many
 * of those kept a local address other than their listener's (the sandbox's
 * original destination, which is the proof that TPROXY, not routing, took them).
 *
 * usage: tproxy_sink PORT ADDR...      prints "ready" once every socket listens
 */
#define _GNU_SOURCE                 /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SINK_MAX_ADDRS 4096
#define SINK_BACKLOG 4096
#define SINK_EVENTS 64
#ifndef IP_TRANSPARENT
#define IP_TRANSPARENT 19
#endif

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static int listen_on(const char *addr, unsigned port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd, one = 1;

    if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
        fprintf(stderr, "tproxy_sink: bad address %s\n", addr);
        return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, SINK_BACKLOG) < 0) {
        fprintf(stderr, "tproxy_sink: listening on %s:%u: %s\n", addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_term};     /* no SA_RESTART: wake epoll_wait */
    struct epoll_event ev, events[SINK_EVENTS];
    unsigned long accepted = 0, orig_dst = 0;
    struct rlimit rl;
    unsigned port;
    int ep, i, n;

    if (argc < 3 || argc - 2 > SINK_MAX_ADDRS) {
        fprintf(stderr, "usage: tproxy_sink PORT ADDR...\n");
        return 2;
    }
    port = (unsigned)strtoul(argv[1], NULL, 10);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {     /* one socket per sandbox */
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return 1;
    for (i = 2; i < argc; i++) {
        struct in_addr self;
        int fd = listen_on(argv[i], port);

        if (fd < 0)
            return 1;
        inet_pton(AF_INET, argv[i], &self);
        ev.events = EPOLLIN;       /* the listener's address rides along with its fd */
        ev.data.u64 = ((uint64_t)self.s_addr << 32) | (uint32_t)fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            return 1;
    }
    printf("ready\n");
    fflush(stdout);

    while (!stop) {
        n = epoll_wait(ep, events, SINK_EVENTS, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 1;
        for (i = 0; i < n; i++) {
            int lfd = (int)(uint32_t)events[i].data.u64;
            uint32_t listen_addr = (uint32_t)(events[i].data.u64 >> 32);
            int c;

            while ((c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                struct sockaddr_in local;
                socklen_t len = sizeof(local);

                accepted++;
                if (getsockname(c, (struct sockaddr *)&local, &len) == 0 &&
                    local.sin_addr.s_addr != listen_addr)
                    orig_dst++;
                close(c);
            }
        }
    }
    printf("accepted=%lu orig_dst=%lu\n", accepted, orig_dst);
    return 0;
}
