/*
 * The proxy's seccomp filter and privilege drop, loaded for real in forked
 * children: what the proxy does in steady state still works, everything a
 * compromised proxy would want (execve, ptrace, mount, new privileges, packet
 * sockets, executable memory) kills the process with SIGSYS.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "privdrop.h"

/* ---- what a child does under the filter; returns 0 when it worked ---- */

static int do_relay_calls(void)
{
    int p[2], s4, s6, su;
    char c = 'x';

    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0 || write(p[1], &c, 1) != 1 ||
        read(p[0], &c, 1) != 1)
        return 1;
    s4 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    s6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    su = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s4 < 0 || s6 < 0 || su < 0)
        return 2;
    close(s4);
    close(s6);
    close(su);
    close(p[0]);
    close(p[1]);
    return 0;
}

static int do_process_metrics(void)
{
    char buf[256];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC), n = 0;
    DIR *d;

    if (fd < 0 || read(fd, buf, sizeof(buf)) <= 0)
        return 1;
    close(fd);
    d = opendir("/proc/self/fd");
    if (!d)
        return 2;
    while (readdir(d))
        n++;
    closedir(d);
    return n > 2 ? 0 : 3;
}

static int do_getrandom(void)
{
    uint8_t b[16];

    return syscall(SYS_getrandom, b, sizeof(b), 0) == (long)sizeof(b) ? 0 : 1;
}

static int watch_fd = -1;      /* made before the filter, as the proxy makes its own */

static int do_inotify_watch(void)
{
    return inotify_add_watch(watch_fd, "/tmp", IN_CLOSE_WRITE) >= 0 ? 0 : 1;
}

static int do_malloc(void)
{
    size_t i;

    for (i = 1; i < (64u << 20); i <<= 1) {        /* brk and mmap-sized blocks */
        char *p = malloc(i);

        if (!p)
            return 1;
        p[i - 1] = 1;
        free(p);
    }
    return 0;
}

static int do_execve(void)
{
    char *const argv[] = {"true", NULL}, *const envp[] = {NULL};

    execve("/bin/true", argv, envp);
    return 0;
}

static int do_packet_socket(void)
{
    socket(AF_PACKET, SOCK_RAW, 0);
    return 0;
}

static int do_netlink_socket(void)
{
    socket(AF_NETLINK, SOCK_RAW, 0);
    return 0;
}

static int do_ptrace(void)
{
    ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    return 0;
}

static int do_mount(void)
{
    mount("none", "/tmp", "tmpfs", 0, NULL);
    return 0;
}

static int do_exec_memory(void)
{
    mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return 0;
}

static int do_setuid(void)
{
    syscall(SYS_setuid, 0);
    return 0;
}

static int do_fork(void)
{
    syscall(SYS_fork);
    return 0;
}

static int do_raw_clone(void)
{
    syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, 0);
    return 0;
}

/* Runs FN in a child under the filter; its wait status. */
static int in_filtered_child(int (*fn)(void))
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        if (privdrop_seccomp_install() < 0)
            _exit(100);
        _exit(fn());                    /* _exit: no atexit handlers, no leak check */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

enum outcome { WORKS, KILLED, KILLED_UNLESS_SANITIZER };

struct row {
    const char *what;
    int (*fn)(void);
    enum outcome want;
};

static const struct row rows[] = {
    {"pipes, splice-style descriptors and IPv4/IPv6/unix sockets", do_relay_calls, WORKS},
    {"/proc/self/statm and /proc/self/fd for the metrics", do_process_metrics, WORKS},
    {"malloc of small and large blocks", do_malloc, WORKS},
    {"getrandom: OpenSSL's hourly reseed in inspect mode", do_getrandom, WORKS},
    {"inotify_add_watch: a reload's included files watched", do_inotify_watch, WORKS},
    {"execve: a compromised proxy must not run anything", do_execve, KILLED},
    {"AF_PACKET socket: sniffing other traffic", do_packet_socket, KILLED},
    {"AF_NETLINK socket: changing routes or nftables", do_netlink_socket, KILLED},
    {"mount", do_mount, KILLED},
    {"mmap with PROT_EXEC: no new code", do_exec_memory, KILLED},
    {"setuid", do_setuid, KILLED},
    {"fork", do_fork, KILLED},
    /* LeakSanitizer's exit check clones and ptraces, so sanitizer builds allow
     * these two (privdrop.c, the sanitizer table) */
    {"ptrace", do_ptrace, KILLED_UNLESS_SANITIZER},
    {"clone", do_raw_clone, KILLED_UNLESS_SANITIZER},
};

static void test_filter_table(void **state)
{
    size_t i, sanitizer_rows;

    (void)state;
    privdrop_syscall_rows(&sanitizer_rows);
    watch_fd = inotify_init1(IN_CLOEXEC);
    assert_true(watch_fd >= 0);
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        int st = in_filtered_child(r->fn);
        bool killed = r->want == KILLED ||
                      (r->want == KILLED_UNLESS_SANITIZER && sanitizer_rows == 0);

        print_message("# %s: %s\n", r->what,
                      WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exited");
        if (killed) {
            assert_true(WIFSIGNALED(st));
            assert_int_equal(WTERMSIG(st), SIGSYS);
        } else if (r->want == WORKS) {
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 0);
        } else {
            /* allowed in sanitizer builds: it must not be SIGSYS */
            assert_false(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
        }
    }
    close(watch_fd);
}

/* A /proc/self/status field's value ("CapEff:\t0000000000000000" -> the hex). */
static int status_field(const char *text, const char *key, char *out, size_t cap)
{
    const char *p = strstr(text, key);
    size_t n = 0;

    if (!p)
        return -1;
    p += strlen(key);
    while (*p == ':' || *p == '\t' || *p == ' ')
        p++;
    while (p[n] && p[n] != '\n' && n + 1 < cap) {
        out[n] = p[n];
        n++;
    }
    out[n] = '\0';
    return 0;
}

/* The whole drop, as root, in a child: it reports through its exit code which
 * check failed (0: none). */
static int child_full_drop(void)
{
    static const char *const zero[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    struct privdrop_result res;
    char err[256], text[4096], v[64], want[64];
    ssize_t n;
    size_t i;
    int fd;

    if (privdrop_apply("nobody", true, &res, err, sizeof(err)) < 0) {
        fprintf(stderr, "privdrop_apply: %s\n", err);
        return 10;
    }
    if (!res.switched || !res.seccomp || !res.bounding_dropped || res.uid == 0)
        return 11;
    fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || (n = read(fd, text, sizeof(text) - 1)) <= 0)
        return 12;
    text[n] = '\0';
    close(fd);
    /* real, effective, saved and filesystem IDs (getuid() is not in the filter) */
    snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)res.uid, (unsigned)res.uid,
             (unsigned)res.uid, (unsigned)res.uid);
    if (status_field(text, "Uid", v, sizeof(v)) < 0 || strcmp(v, want) != 0)
        return 13;
    snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", (unsigned)res.gid, (unsigned)res.gid,
             (unsigned)res.gid, (unsigned)res.gid);
    if (status_field(text, "Gid", v, sizeof(v)) < 0 || strcmp(v, want) != 0)
        return 14;
    if (status_field(text, "Groups", v, sizeof(v)) < 0 || v[0] != '\0')
        return 15;
    for (i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
        if (status_field(text, zero[i], v, sizeof(v)) < 0 || strspn(v, "0") != strlen(v))
            return 20 + (int)i;
    if (status_field(text, "NoNewPrivs", v, sizeof(v)) < 0 || strcmp(v, "1") != 0)
        return 30;
    if (status_field(text, "Seccomp", v, sizeof(v)) < 0 || strcmp(v, "2") != 0)
        return 31;
    if (socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) >= 0 || errno != EPERM)
        return 32;                      /* no CAP_NET_RAW any more */
    return 0;
}

static void test_full_drop_as_root(void **state)
{
    int status;
    pid_t pid;

    (void)state;
    if (geteuid() != 0) {
        print_message("# skipped: needs root to switch users\n");
        skip();
    }
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_full_drop());
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_refuses_root_and_unknown_users(void **state)
{
    struct privdrop_result res;
    char err[256];

    (void)state;
    if (geteuid() != 0)
        skip();
    /* these fail before anything is changed, so the test process may call it */
    assert_int_equal(privdrop_apply("root", false, &res, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--user root"));
    assert_int_equal(privdrop_apply("no-such-user-sluice", false, &res, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "no such user"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_table),
        cmocka_unit_test(test_full_drop_as_root),
        cmocka_unit_test(test_refuses_root_and_unknown_users),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
