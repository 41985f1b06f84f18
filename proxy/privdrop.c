/*
 * The privilege drop: user, capabilities, no_new_privs, then a seccomp
 * allowlist of the syscalls sluice-proxy makes once it is serving. Everything
 * that needs privilege or a file outside the policy's directory happens
 * before (main.c binds, opens and watches first).
 */
#include "privdrop.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * Sanitizer builds (meson -Db_sanitize=..., which defines SLUICE_SANITIZE; or
 * any compiler that says ASan is on) need a few more syscalls: LeakSanitizer's
 * check at exit stops the world by cloning a tracer task that ptraces the
 * process's threads, and the runtimes read /proc/self/maps and write reports.
 */
#if !defined(SLUICE_SANITIZE) && defined(__SANITIZE_ADDRESS__)
#define SLUICE_SANITIZE 1
#endif
#if !defined(SLUICE_SANITIZE) && defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define SLUICE_SANITIZE 1
#endif
#endif

/* One row: a syscall, allowed outright (arg < 0) or only when argument ARG,
 * masked with MASK, equals VALUE. Rows for the same syscall are alternatives. */
struct sc_row {
    int nr;
    int arg;
    uint64_t mask, value;
};

#define ANY(name) {SCMP_SYS(name), -1, 0, 0}
#define ARG_IS(name, i, v) {SCMP_SYS(name), (i), UINT64_MAX, (uint64_t)(v)}
#define ARG_WITHOUT(name, i, bits) {SCMP_SYS(name), (i), (uint64_t)(bits), 0}

/*
 * Every syscall sluice-proxy makes once it serves, as strace saw them over the
 * integration suite (README, "Privileges", says how to redo that), plus what
 * the metrics endpoint and the control socket make (accepting on a TCP and a
 * unix socket, /proc/self/statm, /proc/self/fd, getrusage). Anything else
 * kills the process (SCMP_ACT_KILL_PROCESS); the kernel logs a seccomp audit
 * record naming the syscall.
 */
static const struct sc_row steady[] = {
    /* descriptors: sockets, splice pipes, the flow log, inotify events */
    ANY(read), ANY(write), ANY(readv), ANY(writev), ANY(close), ANY(lseek),
    ANY(pipe2), ANY(splice), ANY(fcntl), ARG_IS(ioctl, 1, FIONREAD),
    /* files, read by path: the policy on reload, the flow log on SIGUSR1,
     * /etc/localtime, /proc/self/statm and /proc/self/fd for the metrics */
    ANY(openat), ANY(fstat), ANY(newfstatat), ANY(getdents64),
    /* the control socket's path, removed at exit */
    ANY(unlink), ANY(unlinkat),
    /* sockets of three families only: no packet, netlink or raw sockets (the
     * one rtnetlink socket, for route lookups, is opened before the filter) */
    ARG_IS(socket, 0, AF_INET), ARG_IS(socket, 0, AF_INET6), ARG_IS(socket, 0, AF_UNIX),
    ANY(connect), ANY(accept4), ANY(shutdown),
    ANY(sendto), ANY(recvfrom), ANY(sendmsg), ANY(recvmsg),
    ANY(setsockopt), ANY(getsockopt), ANY(getsockname), ANY(getpeername),
    /* the event loop (libevent's epoll backend) and its clocks */
    ANY(epoll_wait), ANY(epoll_pwait), ANY(epoll_ctl), ANY(clock_gettime), ANY(gettimeofday),
    /* memory for malloc and buffers; nothing ever becomes executable */
    ANY(brk), ANY(munmap), ANY(mremap), ANY(madvise), ANY(futex),
    ARG_WITHOUT(mmap, 2, PROT_EXEC), ARG_WITHOUT(mprotect, 2, PROT_EXEC),
    /* signals (SIGHUP, SIGTERM, SIGUSR1 through libevent; handlers reset at
     * exit) and abort() on a bug */
    ANY(rt_sigreturn), ANY(rt_sigprocmask), ANY(rt_sigaction), ANY(restart_syscall),
    ANY(getpid), ANY(gettid), ANY(tgkill),
    /* process metrics */
    ANY(getrusage), ANY(getrlimit), ANY(prlimit64),
    /* inspect mode: OpenSSL's primary DRBG, seeded before the drop, reseeds
     * from the kernel an hour later (its reseed_time_interval), and a reseed
     * that failed would kill TLS; getrandom has no side effect to abuse */
    ANY(getrandom),
    /* a reloaded policy's included files: their directories are watched too (the
     * inotify descriptor is made before the drop; a watch only reports events) */
    ANY(inotify_add_watch),
    /* leaving */
    ANY(exit), ANY(exit_group),
};

#ifdef SLUICE_SANITIZE
static const struct sc_row sanitizer[] = {
    /* LeakSanitizer's check at exit: it clones a tracer task (its own process,
     * not a thread) that sets its death signal, checks its parent, takes its
     * own signal stack, lists /proc/self/task and ptraces every thread, while
     * the process waits and yields. A row missing here does not fail loudly:
     * the tracer is killed and the process waits for it forever. Measured by
     * running the ASan proxy with a preloaded leak until the report came out. */
    ANY(clone), ANY(ptrace), ANY(wait4), ANY(sched_yield), ANY(prctl), ANY(sigaltstack),
    ANY(getppid), ANY(open), ANY(getdents),
    /* the report: the executable's path, isatty() on the stream for colours */
    ANY(readlink), ARG_IS(ioctl, 1, TCGETS),
};
#endif

#define N_ROWS(t) (sizeof(t) / sizeof((t)[0]))

size_t privdrop_syscall_rows(size_t *sanitizer_rows)
{
#ifdef SLUICE_SANITIZE
    if (sanitizer_rows)
        *sanitizer_rows = N_ROWS(sanitizer);
    return N_ROWS(steady) + N_ROWS(sanitizer);
#else
    if (sanitizer_rows)
        *sanitizer_rows = 0;
    return N_ROWS(steady);
#endif
}

static int add_rows(scmp_filter_ctx ctx, const struct sc_row *rows, size_t n)
{
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        const struct sc_row *r = &rows[i];

        if (r->arg < 0)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 0);
        else
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1,
                                  SCMP_CMP((unsigned)r->arg, SCMP_CMP_MASKED_EQ, r->mask,
                                           r->value));
        /* a syscall this architecture does not have needs no rule */
        if (rc < 0 && !(rc == -EDOM && r->nr < 0))
            return rc;
    }
    return 0;
}

int privdrop_seccomp_install(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    int rc;

    if (!ctx)
        return -ENOMEM;
    rc = add_rows(ctx, steady, N_ROWS(steady));
#ifdef SLUICE_SANITIZE
    if (rc == 0)
        rc = add_rows(ctx, sanitizer, N_ROWS(sanitizer));
#endif
    if (rc == 0)
        rc = seccomp_load(ctx);     /* sets no_new_privs itself as well */
    seccomp_release(ctx);
    return rc;
}

/* ---- user and capabilities ---- */

static int fail(char *err, size_t errlen, int e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return e > 0 ? -e : (e < 0 ? e : -EPERM);
}

/*
 * The entry of NAME (or, with NAME NULL, of UID) in /etc/passwd, read with
 * fgetpwent(): system users live there, and reading the file directly keeps
 * the NSS modules (libnss_systemd and what it pulls in: about 1 MiB of pages
 * for the life of the process) out of a proxy that looks up one user once.
 */
static struct passwd *passwd_file_find(const char *name, uid_t uid)
{
    FILE *f = fopen("/etc/passwd", "re");
    struct passwd *pw = NULL;

    if (!f)
        return NULL;
    while ((pw = fgetpwent(f)) != NULL)
        if (name ? strcmp(pw->pw_name, name) == 0 : pw->pw_uid == uid)
            break;
    fclose(f);                      /* PW points into fgetpwent's static buffer, not F */
    return pw;
}

static struct passwd *find_by_name(const char *name)
{
    struct passwd *pw = passwd_file_find(name, 0);

    return pw ? pw : getpwnam(name);    /* elsewhere (LDAP, homed): ask NSS */
}

static struct passwd *find_by_uid(uid_t uid)
{
    struct passwd *pw = passwd_file_find(NULL, uid);

    return pw ? pw : getpwuid(uid);
}

/* Finds USER (a name or a number) in the user database. */
static int lookup_user(const char *user, uid_t *uid, gid_t *gid, char *name, size_t name_len)
{
    struct passwd *pw;
    char *end;
    unsigned long n;

    pw = find_by_name(user);
    if (!pw && user[0] >= '0' && user[0] <= '9') {
        errno = 0;
        n = strtoul(user, &end, 10);
        if (*end || n >= (uid_t)-1)
            return -EINVAL;
        pw = find_by_uid((uid_t)n);
        if (!pw) {                  /* a bare UID is fine: its own number as group */
            *uid = (uid_t)n;
            *gid = (gid_t)n;
            snprintf(name, name_len, "%lu", n);
            return 0;
        }
    }
    if (!pw)                        /* errno varies with the NSS module: not found */
        return -ENOENT;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    snprintf(name, name_len, "%s", pw->pw_name);
    return 0;
}

static int cap_get(struct __user_cap_data_struct d[2])
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};

    memset(d, 0, 2 * sizeof(*d));
    return syscall(SYS_capget, &h, d) < 0 ? -errno : 0;
}

static bool has_cap(int cap)
{
    struct __user_cap_data_struct d[2];

    return cap_get(d) == 0 && (d[cap / 32].effective & (1u << (cap % 32)));
}

/* Empties the bounding set; false if the process may not (no CAP_SETPCAP). */
static int drop_bounding(bool *dropped)
{
    int cap;

    *dropped = false;
    if (!has_cap(CAP_SETPCAP))
        return 0;
    for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return -errno;
    *dropped = true;
    return 0;
}

int privdrop_apply(const char *user, bool seccomp, struct privdrop_result *out, char *err,
                   size_t errlen)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    const char *want = user;
    int rc;

    memset(out, 0, sizeof(*out));
    out->uid = geteuid();
    out->gid = getegid();
    snprintf(out->user, sizeof(out->user), "%u", (unsigned)out->uid);

    if (out->uid == 0) {
        if (!want) {
            want = PRIVDROP_DEFAULT_USER;
            if (!passwd_file_find(want, 0))     /* a system user: /etc/passwd */
                want = PRIVDROP_FALLBACK_USER;
        }
        rc = lookup_user(want, &out->uid, &out->gid, out->user, sizeof(out->user));
        if (rc < 0)
            return fail(err, errlen, rc, "--user %s: %s (create the user, or name another "
                        "with --user)", want, rc == -ENOENT ? "no such user" : strerror(-rc));
        if (out->uid == 0)
            return fail(err, errlen, EINVAL, "--user %s: that is root; the proxy does not "
                        "keep root while serving (name an unprivileged user)", want);
        out->switched = true;
    } else if (user) {
        uid_t uid;
        gid_t gid;
        char name[64];

        rc = lookup_user(user, &uid, &gid, name, sizeof(name));
        if (rc < 0 || uid != out->uid)
            return fail(err, errlen, EPERM, "--user %s: the proxy runs as uid %u and only "
                        "root can switch users (start it as root, or leave out --user)", user,
                        (unsigned)out->uid);
        snprintf(out->user, sizeof(out->user), "%s", name);
    }

    /* the bounding set first: emptying it needs CAP_SETPCAP, which goes next */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return fail(err, errlen, errno, "clearing the ambient capabilities: %s",
                    strerror(errno));
    rc = drop_bounding(&out->bounding_dropped);
    if (rc < 0)
        return fail(err, errlen, rc, "emptying the capability bounding set: %s",
                    strerror(-rc));
    if (out->switched &&
        (setgroups(0, NULL) < 0 || setresgid(out->gid, out->gid, out->gid) < 0 ||
         setresuid(out->uid, out->uid, out->uid) < 0))
        return fail(err, errlen, errno, "switching to user %s (uid %u, gid %u): %s",
                    out->user, (unsigned)out->uid, (unsigned)out->gid, strerror(errno));
    /* effective, permitted and inheritable: all empty (a non-root start with
     * CAP_NET_ADMIN keeps it across nothing) */
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capset, &h, d) < 0)
        return fail(err, errlen, errno, "dropping capabilities: %s", strerror(errno));
    if ((rc = cap_get(d)) < 0 || d[0].effective || d[1].effective || d[0].permitted ||
        d[1].permitted || d[0].inheritable || d[1].inheritable)
        return fail(err, errlen, rc < 0 ? rc : EPERM, "capabilities are still held after "
                    "dropping them; refusing to serve");
    if (out->switched && (setresuid(0, 0, 0) == 0 || setresgid(0, 0, 0) == 0))
        return fail(err, errlen, EPERM, "the switch to user %s can be undone; refusing to "
                    "serve", out->user);
#ifdef SLUICE_SANITIZE
    /* LeakSanitizer's tracer may only attach to a dumpable process, and the
     * switch of user made this one non-dumpable. Sanitizer builds only. */
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        return fail(err, errlen, errno, "PR_SET_DUMPABLE: %s", strerror(errno));
#else
    /* no core dump and no ptrace by the same user, even when no switch of
     * user made it so (a sidecar started as its UID): the process holds the
     * inspect-mode CA key and injected credentials */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return fail(err, errlen, errno, "PR_SET_DUMPABLE: %s", strerror(errno));
#endif
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail(err, errlen, errno, "setting no_new_privs: %s", strerror(errno));
    if (seccomp) {
        rc = privdrop_seccomp_install();
        if (rc < 0)
            return fail(err, errlen, rc, "installing the seccomp filter: %s (the kernel "
                        "needs CONFIG_SECCOMP_FILTER; --no-seccomp runs without it, for "
                        "debugging only)", strerror(-rc));
        out->seccomp = true;
    }
    return 0;
}
