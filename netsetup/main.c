/*
 * sluice-netsetup: builds the cage around each sandbox (namespace, link,
 * addresses, routes, nftables rules) over netlink; never runs a command.
 * Exit codes: 0 ok, 1 runtime failure, 2 usage, 3 missing privilege.
 */
#include <errno.h>
#include <getopt.h>
#include <linux/capability.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_PRIVILEGE = 3 };

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
    uint64_t caps;              /* capabilities it needs */
};

#define CAP(c) (1ull << (c))
#define NEEDS_NS (CAP(CAP_NET_ADMIN) | CAP(CAP_SYS_ADMIN))

static int cmd_up(int argc, char **argv);
static int cmd_attach(int argc, char **argv);
static int cmd_pod(int argc, char **argv);
static int cmd_down(int argc, char **argv);
static int cmd_status(int argc, char **argv);
static int cmd_verify(int argc, char **argv);

static const struct command commands[] = {
    {"up", cmd_up, "up NAME [--subnet CIDR] [--ipv6 CIDR] [--proxy-port P] [--dns-port P] "
     "[--json]", NEEDS_NS},
    {"attach", cmd_attach, "attach NAME --iface IFACE [--subnet CIDR] [--ipv6 CIDR] "
     "[--proxy-port P] [--dns-port P] [--json]", CAP(CAP_NET_ADMIN)},
    {"pod", cmd_pod, "pod [--proxy-uid UID] [--proxy-port P] [--dns-port P] "
     "[--metrics-port P] [--json]", CAP(CAP_NET_ADMIN)},
    {"down", cmd_down, "down NAME | down --pod", NEEDS_NS},
    {"status", cmd_status, "status [NAME] [--json]", CAP(CAP_NET_ADMIN)},
    /* verify also probes with a raw ICMP socket */
    {"verify", cmd_verify, "verify NAME", NEEDS_NS | CAP(CAP_NET_RAW)},
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
            "\nNAME is 1-15 characters of [a-z0-9-]. Subnets come from %s in /30s\n"
            "unless --subnet is given; ports default to proxy %u, DNS %u (pod: metrics %u,\n"
            "proxy UID %u). State is kept in $SLUICE_RUN_DIR (default %s).\n"
            "\nexit codes: 0 ok, 1 runtime failure (the message names the netlink call,\n"
            "the object and the error), 2 usage, 3 missing privilege (CAP_NET_ADMIN; up,\n"
            "down and verify also CAP_SYS_ADMIN for namespaces, verify CAP_NET_RAW for its\n"
            "ICMP probe).\n",
            "10.200.0.0/16", DEFAULT_PROXY_PORT, DEFAULT_DNS_PORT, DEFAULT_METRICS_PORT,
            DEFAULT_PROXY_UID, STATE_DEFAULT_DIR);
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sluice-netsetup: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'sluice-netsetup --help')\n");
    return EXIT_USAGE;
}

static int runtime_error(const char *name, int err)
{
    const char *hint = netsetup_hint(), *p;

    if (!hint && err == -ENOSPC)
        hint = "the pool is full: run 'sluice-netsetup down' on unused sandboxes";
    else if (!hint && err == -EADDRINUSE)
        hint = "pick a free --subnet";
    else if (!hint && (err == -EPERM || err == -EACCES))
        hint = "run as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN";
    fprintf(stderr, "sluice-netsetup: %s%s%s: %s: %s", current, name ? " " : "",
            name ? name : "", netsetup_error(), strerror(-err));
    if (hint && name && (p = strstr(hint, "NAME")) != NULL)
        fprintf(stderr, " (%.*s%s%s)", (int)(p - hint), hint, name, p + 4);
    else if (hint)
        fprintf(stderr, " (%s)", hint);
    fprintf(stderr, "\n");
    return EXIT_RUNTIME;
}

/* --subnet: IPv4, /30 or wider, with room for network, gateway, sandbox, broadcast. */
static bool parse_subnet(const char *s, int family, struct cidr *out)
{
    unsigned max = family == AF_INET ? 30 : 126;

    return cidr_parse(s, out) == CIDR_OK && out->family == family && out->len <= max &&
           out->len >= (family == AF_INET ? 8 : 48);
}

enum { OPT_SUBNET = 256, OPT_IPV6, OPT_PROXY_PORT, OPT_DNS_PORT, OPT_JSON, OPT_IFACE,
       OPT_PROXY_UID, OPT_METRICS_PORT, OPT_POD };

static const struct option up_options[] = {
    {"subnet", required_argument, NULL, OPT_SUBNET},
    {"ipv6", required_argument, NULL, OPT_IPV6},
    {"proxy-port", required_argument, NULL, OPT_PROXY_PORT},
    {"dns-port", required_argument, NULL, OPT_DNS_PORT},
    {"json", no_argument, NULL, OPT_JSON},
    {"iface", required_argument, NULL, OPT_IFACE},
    {NULL, 0, NULL, 0},
};

/* Parses up/attach options; returns 0 or an exit code. */
static int parse_up(int argc, char **argv, struct up_opts *o, bool *json, const char **name)
{
    int c;

    memset(o, 0, sizeof(*o));
    o->proxy_port = DEFAULT_PROXY_PORT;
    o->dns_port = DEFAULT_DNS_PORT;
    *json = false;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", up_options, NULL)) != -1) {
        switch (c) {
        case OPT_SUBNET:
            if (!parse_subnet(optarg, AF_INET, &o->subnet))
                return usage_error("--subnet '%s' is not an IPv4 network from /8 to /30 "
                                   "(e.g. 10.201.0.0/30)", optarg);
            o->have_subnet = true;
            break;
        case OPT_IPV6:
            if (!parse_subnet(optarg, AF_INET6, &o->subnet6))
                return usage_error("--ipv6 '%s' is not an IPv6 network from /48 to /126 "
                                   "(e.g. fd00:5c::/64)", optarg);
            o->v6 = true;
            break;
        case OPT_PROXY_PORT:
        case OPT_DNS_PORT:
            if (!port_parse(optarg, c == OPT_PROXY_PORT ? &o->proxy_port : &o->dns_port))
                return usage_error("%s '%s' is not a port (1-65535)",
                                   c == OPT_PROXY_PORT ? "--proxy-port" : "--dns-port", optarg);
            break;
        case OPT_JSON:
            *json = true;
            break;
        case OPT_IFACE:
            if (strcmp(current, "attach") != 0)
                return usage_error("--iface belongs to attach");
            if (strlen(optarg) == 0 || strlen(optarg) >= IFNAME_LEN || strchr(optarg, '/'))
                return usage_error("--iface '%s' is not an interface name", optarg);
            o->iface = optarg;
            break;
        default:
            return usage_error("%s: unknown or incomplete option '%s'", current,
                               argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return usage_error("%s takes exactly one NAME", current);
    *name = argv[optind];
    if (!sandbox_name_valid(*name))
        return usage_error("NAME '%s' must be 1-15 characters of [a-z0-9-]", *name);
    if (o->proxy_port == o->dns_port)
        return usage_error("--proxy-port and --dns-port must differ");
    if (strcmp(current, "attach") == 0 && !o->iface)
        return usage_error("attach needs --iface IFACE");
    return 0;
}

static int create_cmd(int argc, char **argv, bool attach)
{
    struct sandbox s;
    struct up_opts o;
    const char *name = NULL;
    bool json;
    int r = parse_up(argc, argv, &o, &json, &name);

    if (r)
        return r;
    r = attach ? sandbox_attach(name, &o, &s) : sandbox_up(name, &o, &s);
    if (r < 0)
        return runtime_error(name, r);
    sandbox_print(&s, json, stdout);
    return 0;
}

static int cmd_up(int argc, char **argv)
{
    return create_cmd(argc, argv, false);
}

static int cmd_attach(int argc, char **argv)
{
    return create_cmd(argc, argv, true);
}

static int cmd_pod(int argc, char **argv)
{
    static const struct option opts[] = {
        {"proxy-uid", required_argument, NULL, OPT_PROXY_UID},
        {"proxy-port", required_argument, NULL, OPT_PROXY_PORT},
        {"dns-port", required_argument, NULL, OPT_DNS_PORT},
        {"metrics-port", required_argument, NULL, OPT_METRICS_PORT},
        {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    struct pod_opts o = {DEFAULT_PROXY_UID, DEFAULT_PROXY_PORT, DEFAULT_DNS_PORT,
                         DEFAULT_METRICS_PORT};
    bool json = false;
    char *end;
    int c, r;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PROXY_UID: {
            unsigned long v;

            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || errno || v > 0xfffffffeul)
                return usage_error("--proxy-uid '%s' is not a UID", optarg);
            o.proxy_uid = (uint32_t)v;
            break;
        }
        case OPT_PROXY_PORT:
            if (!port_parse(optarg, &o.proxy_port))
                return usage_error("--proxy-port '%s' is not a port (1-65535)", optarg);
            break;
        case OPT_DNS_PORT:
            if (!port_parse(optarg, &o.dns_port))
                return usage_error("--dns-port '%s' is not a port (1-65535)", optarg);
            break;
        case OPT_METRICS_PORT:
            if (!port_parse(optarg, &o.metrics_port))
                return usage_error("--metrics-port '%s' is not a port (1-65535)", optarg);
            break;
        case OPT_JSON:
            json = true;
            break;
        default:
            return usage_error("pod: unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return usage_error("pod takes no NAME: it works on the namespace it runs in");
    if (o.proxy_uid == 0)
        return usage_error("--proxy-uid 0 would exempt root from interception");
    if ((r = pod_up(&o)) < 0)
        return runtime_error(NULL, r);
    pod_print(&o, json, stdout);
    return 0;
}

static int cmd_down(int argc, char **argv)
{
    bool found;
    int r;

    if (argc == 2 && strcmp(argv[1], "--pod") == 0) {
        if ((r = pod_down()) < 0)
            return runtime_error(NULL, r);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-')
        return usage_error("down takes one NAME, or --pod");
    if (!sandbox_name_valid(argv[1]))
        return usage_error("NAME '%s' must be 1-15 characters of [a-z0-9-]", argv[1]);
    if ((r = sandbox_down(argv[1], &found)) < 0)
        return runtime_error(argv[1], r);
    return 0;
}

static int cmd_status(int argc, char **argv)
{
    const char *name = NULL;
    bool json = false;
    int i, r;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (argv[i][0] == '-')
            return usage_error("status: unknown option '%s'", argv[i]);
        else if (name)
            return usage_error("status takes at most one NAME");
        else if (!sandbox_name_valid(argv[i]))
            return usage_error("NAME '%s' must be 1-15 characters of [a-z0-9-]", argv[i]);
        else
            name = argv[i];
    }
    r = sandbox_status(name, json, stdout);
    if (r == -ENOENT) {
        fprintf(stderr, "sluice-netsetup: status: no sandbox named %s\n", name);
        return EXIT_RUNTIME;
    }
    return r < 0 ? runtime_error(name, r) : 0;
}

static int cmd_verify(int argc, char **argv)
{
    int r;

    if (argc != 2 || !sandbox_name_valid(argv[1]))
        return usage_error("verify takes one NAME of 1-15 characters of [a-z0-9-]");
    r = sandbox_verify(argv[1], stdout);
    if (r == -ENOENT) {
        fprintf(stderr, "sluice-netsetup: verify: no sandbox named %s\n", argv[1]);
        return EXIT_RUNTIME;
    }
    if (r < 0)
        return runtime_error(argv[1], r);
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
    size_t i;

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
        return c->fn(argc - 1, argv + 1);
    }
    return usage_error("unknown command '%s'", argv[1]);
}
