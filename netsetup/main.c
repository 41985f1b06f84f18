/*
 * sluice-netsetup: builds the cage around each sandbox (namespace, link,
 * addresses, routes, nftables rules) over netlink; never runs a command.
 * Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 missing privilege.
 */
#include <errno.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "args.h"
#include "log.h"
#include "sandbox.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_PRIVILEGE = 3 };

struct command {
    const char *name;
    int (*fn)(const struct netsetup_args *a);
    const char *usage;
    uint64_t caps;              /* capabilities it needs */
};

#define CAP(c) (1ull << (c))
#define NEEDS_NS (CAP(CAP_NET_ADMIN) | CAP(CAP_SYS_ADMIN))

static int cmd_up(const struct netsetup_args *a);
static int cmd_attach(const struct netsetup_args *a);
static int cmd_pod(const struct netsetup_args *a);
static int cmd_down(const struct netsetup_args *a);
static int cmd_status(const struct netsetup_args *a);
static int cmd_verify(const struct netsetup_args *a);

static const struct command commands[] = {
    {"up", cmd_up, "up NAME [--subnet CIDR] [--ipv6 CIDR] [--proxy-port P] [--dns-port P] "
     "[--max-conntrack N] [--ca FILE] [--json] | up NAME --isolated [--json]", NEEDS_NS},
    {"attach", cmd_attach, "attach NAME --iface IFACE [--subnet CIDR] [--ipv6 CIDR] "
     "[--proxy-port P] [--dns-port P] [--max-conntrack N] [--json]", CAP(CAP_NET_ADMIN)},
    {"pod", cmd_pod, "pod [--proxy-uid UID] [--proxy-port P] [--dns-port P] "
     "[--metrics-port P] [--max-conntrack N] [--json]", CAP(CAP_NET_ADMIN)},
    {"down", cmd_down, "down NAME | down --pod", NEEDS_NS},
    {"status", cmd_status, "status [NAME] [--json]", CAP(CAP_NET_ADMIN)},
    /* verify also probes with a raw ICMP socket */
    {"verify", cmd_verify, "verify NAME | verify --pod", NEEDS_NS | CAP(CAP_NET_RAW)},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char *current;     /* the command running, for messages */

static void usage(FILE *out)
{
    size_t i;

    fprintf(out, "usage:\n");
    for (i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  sluice-netsetup %s\n", commands[i].usage);
    fprintf(out,
            "\nNAME is 1-15 characters of [a-z0-9-]. up --isolated makes a namespace with only\n"
            "lo: no interface, address or rule, so nothing leaves it (status lists it, down\n"
            "removes it, verify proves it). Subnets come from %s in /30s\n"
            "unless --subnet is given; ports default to proxy %u, DNS %u (pod: metrics %u,\n"
            "proxy UID %u). --max-conntrack (default %u) bounds the sandbox's entries in\n"
            "the connection-tracking table all sandboxes share. State is kept in\n"
            "$SLUICE_RUN_DIR (default %s).\n"
            "\nexit codes: 0 ok, 1 runtime failure (the message names the netlink call,\n"
            "the object and the error), 2 usage, 3 missing privilege (CAP_NET_ADMIN; up,\n"
            "down and verify also CAP_SYS_ADMIN for namespaces, verify CAP_NET_RAW for its\n"
            "raw-socket probes: ICMP, and DNS from a spoofed source).\n",
            "10.200.0.0/16", DEFAULT_PROXY_PORT, DEFAULT_DNS_PORT, DEFAULT_METRICS_PORT,
            DEFAULT_PROXY_UID, DEFAULT_MAX_CONNTRACK, STATE_DEFAULT_DIR);
}

static int runtime_error(const struct ns_error *e, const char *name, int err)
{
    const char *hint = e->hint, *p;

    if (!hint && err == -ENOSPC)
        hint = "the pool is full: run 'sluice-netsetup down' on unused sandboxes";
    else if (!hint && err == -EADDRINUSE)
        hint = "pick a free --subnet";
    else if (!hint && (err == -EPERM || err == -EACCES))
        hint = "run as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN";
    fprintf(stderr, "sluice-netsetup: %s%s%s: %s: %s", current, name ? " " : "",
            name ? name : "", e->what, strerror(-err));
    if (hint && name && (p = strstr(hint, "NAME")) != NULL)
        fprintf(stderr, " (%.*s%s%s)", (int)(p - hint), hint, name, p + 4);
    else if (hint)
        fprintf(stderr, " (%s)", hint);
    fprintf(stderr, "\n");
    return EXIT_RUNTIME;
}

static int create_cmd(const struct netsetup_args *a, bool attach)
{
    struct ns_error e = {.hint = NULL};
    struct sandbox s;
    int r = attach ? sandbox_attach(&e, a->name, &a->up, &s)
                   : sandbox_up(&e, a->name, &a->up, &s);

    if (r < 0)
        return runtime_error(&e, a->name, r);
    sandbox_print(&s, a->json, stdout);
    return 0;
}

static int cmd_up(const struct netsetup_args *a)
{
    return create_cmd(a, false);
}

static int cmd_attach(const struct netsetup_args *a)
{
    return create_cmd(a, true);
}

static int cmd_pod(const struct netsetup_args *a)
{
    struct ns_error e = {.hint = NULL};
    int r;

    if ((r = pod_up(&e, &a->pod)) < 0)
        return runtime_error(&e, NULL, r);
    pod_print(&a->pod, a->json, stdout);
    log_warnx("pod mode exempts UID %u from every rule: the workload must never run as "
              "root, as UID %u, or with CAP_SETUID, CAP_NET_ADMIN or CAP_NET_RAW, or it can "
              "bypass the proxy", (unsigned)a->pod.proxy_uid, (unsigned)a->pod.proxy_uid);
    return 0;
}

static int cmd_down(const struct netsetup_args *a)
{
    struct ns_error e = {.hint = NULL};
    bool found;
    int r;

    if (a->down_pod) {
        if ((r = pod_down(&e)) < 0)
            return runtime_error(&e, NULL, r);
        return 0;
    }
    if ((r = sandbox_down(&e, a->name, &found)) < 0)
        return runtime_error(&e, a->name, r);
    return 0;
}

static int cmd_status(const struct netsetup_args *a)
{
    struct ns_error e = {.hint = NULL};
    int r = sandbox_status(&e, a->name, a->json, stdout);

    if (r == -ENOENT) {
        log_warnx("status: no sandbox named %s", a->name);
        return EXIT_RUNTIME;
    }
    return r < 0 ? runtime_error(&e, a->name, r) : 0;
}

static int cmd_verify(const struct netsetup_args *a)
{
    struct ns_error e = {.hint = NULL};
    int r = a->verify_pod ? pod_verify(stdout) : sandbox_verify(&e, a->name, stdout);

    if (r == -ENOENT) {
        log_warnx("verify: no sandbox named %s", a->name);
        return EXIT_RUNTIME;
    }
    if (r < 0)
        return runtime_error(&e, a->name, r);
    return r == 0 ? 0 : EXIT_RUNTIME;
}

/* The effective capability set, straight from the kernel (no libcap needed). */
static uint64_t effective_caps(void)
{
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];

    memset(d, 0, sizeof(d));
    if (syscall(SYS_capget, &h, d) < 0)
        return 0;
    return (uint64_t)d[0].effective | ((uint64_t)d[1].effective << 32);
}

int main(int argc, char **argv)
{
    struct netsetup_args args;
    char err[NETSETUP_ERR_MAX];
    size_t i;

    log_init("sluice-netsetup");
    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout), 0;
    for (i = 0; i < N_COMMANDS; i++) {
        const struct command *c = &commands[i];
        uint64_t missing;

        if (strcmp(argv[1], c->name) != 0)
            continue;
        current = c->name;
        missing = c->caps & ~effective_caps();
        if (missing) {
            static const struct { int cap; const char *name; } names[] = {
                {CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
                {CAP_NET_RAW, "CAP_NET_RAW"},
            };
            size_t j, n = 0;

            fprintf(stderr, "sluice-netsetup: %s needs ", c->name);
            for (j = 0; j < sizeof(names) / sizeof(names[0]); j++)
                if (missing & CAP(names[j].cap))
                    fprintf(stderr, "%s%s", n++ ? " and " : "", names[j].name);
            fprintf(stderr, "; run it as root or grant the capabilities\n");
            return EXIT_PRIVILEGE;
        }
        if (netsetup_args_parse(c->name, argc - 1, argv + 1, &args, err) < 0)
            return log_usage("%s", err);
        return c->fn(&args);
    }
    return log_usage("unknown command '%s'", argv[1]);
}
