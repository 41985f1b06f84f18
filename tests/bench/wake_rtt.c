/*
 * Wake-up latency probe for bench_proxy.py: two processes pass one byte back
 * and forth over two pipes, each sleeping in read(2) between turns, the way a
 * relay hop sleeps in epoll_wait(2) between a sender's write and its own. The
 * round trip is two wake-ups; run it pinned to one CPU and spread over two to
 * see what waking a sleeping process on another CPU costs on this machine
 * (on a VM, an idle virtual CPU must be woken by the hypervisor).
 *
 *   usage: wake_rtt CPU_A CPU_B ROUNDS
 *   prints: rtt_p50_us=.. rtt_p10_us=.. rtt_p90_us=..
 *
 * The child runs on CPU_B, the parent on CPU_A (the same number: one CPU).
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS_MAX 100000
#define GAP_US 300                  /* between rounds: a TLS handshake step's order */

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int pin(int cpu)
{
    cpu_set_t set;

    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return -1;
    CPU_ZERO(&set);
    CPU_SET((size_t)cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int ping[2], pong[2], a, b, n, i, status;
    double *rtt;
    char c = 'x';
    pid_t pid;

    if (argc != 4 || (n = atoi(argv[3])) < 1 || n > ROUNDS_MAX) {
        fprintf(stderr, "usage: wake_rtt CPU_A CPU_B ROUNDS (1-%d)\n", ROUNDS_MAX);
        return 2;
    }
    a = atoi(argv[1]);
    b = atoi(argv[2]);
    rtt = calloc((size_t)n, sizeof(*rtt));
    if (!rtt || pipe(ping) < 0 || pipe(pong) < 0) {
        perror("wake_rtt");
        return 1;
    }
    pid = fork();
    if (pid < 0) {
        perror("wake_rtt: fork");
        return 1;
    }
    if (pid == 0) {
        if (pin(b) < 0)
            _exit(1);
        for (i = 0; i < n; i++)
            if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1)
                _exit(1);
        _exit(0);
    }
    if (pin(a) < 0) {
        perror("wake_rtt: sched_setaffinity");
        return 1;
    }
    usleep(10000);                  /* the child is asleep in read() */
    for (i = 0; i < n; i++) {
        double t0 = now_us();

        if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) {
            perror("wake_rtt");
            return 1;
        }
        rtt[i] = now_us() - t0;
        t0 = now_us();
        while (now_us() - t0 < GAP_US)
            ;                       /* the child falls asleep again */
    }
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "wake_rtt: the child failed\n");
        return 1;
    }
    qsort(rtt, (size_t)n, sizeof(*rtt), cmp);
    printf("rtt_p50_us=%.1f rtt_p10_us=%.1f rtt_p90_us=%.1f\n", rtt[n / 2], rtt[n / 10],
           rtt[n * 9 / 10]);
    free(rtt);
    return 0;
}
