/*
 * sluice-netsetup's argument parsing, one function per command, over getopt_long.
 * Nothing here prints or touches the system; main() reports the message.
 */
#include "args.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "hostport.h"

#define NAME_RULE "must be 1-15 characters of [a-z0-9-]"

__attribute__((format(printf, 2, 3)))
static int fail(char err[NETSETUP_ERR_MAX], const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, NETSETUP_ERR_MAX, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/*
 * getopt keeps its position in globals, including a pointer into the last
 * argv it saw; optind = 0 makes glibc start over, so that a second call (a
 * unit test, a fuzzer) never resumes inside an argv that is gone.
 */
static void getopt_reset(void)
{
    optind = 0;
    opterr = 0;
}

/* --subnet: IPv4, /30 or wider, with room for network, gateway, sandbox, broadcast. */
static bool parse_subnet(const char *s, int family, struct cidr *out)
{
    unsigned max = family == AF_INET ? 30 : 126;

    return cidr_parse(s, out) == CIDR_OK && out->family == family && out->len <= max &&
           out->len >= (family == AF_INET ? 8 : 48);
}

/* Long options only: every value is above any letter getopt returns. */
enum { OPT_SUBNET = 256, OPT_IPV6, OPT_PROXY_PORT, OPT_DNS_PORT, OPT_JSON, OPT_IFACE,
       OPT_MAX_CONNTRACK, OPT_CA, OPT_ISOLATED, OPT_FROM_FILE,
       OPT_PROXY_UID, OPT_METRICS_PORT, OPT_TCP, OPT_UDP, OPT_FROM, OPT_PORTS, OPT_POD };

/*
 * The option getopt_long refused. A long one (unknown, ambiguous, missing its
 * argument) was argv[optind - 1]; a short one in a cluster ("-xy") leaves
 * optind on the cluster's argument until its last letter, so argv[optind - 1]
 * would be a neighbour (the NAME, the command), and only optopt names it.
 */
static int bad_option(const char *cmd, char **argv, char err[NETSETUP_ERR_MAX])
{
    if (optopt != 0 && optopt < OPT_SUBNET)  /* glibc stores a letter as a signed char */
        return fail(err, "%s: unknown option '-%c'", cmd, (char)optopt);
    return fail(err, "%s: unknown or incomplete option '%s'", cmd, argv[optind - 1]);
}

/* --max-conntrack N: 1 to CONNTRACK_MAX_LIMIT */
static bool parse_conntrack(const char *arg, uint32_t *out)
{
    unsigned long v;
    char *end;

    errno = 0;
    v = strtoul(arg, &end, 10);
    if (*arg < '0' || *arg > '9' || *end || errno || v < 1 || v > CONNTRACK_MAX_LIMIT)
        return false;
    *out = (uint32_t)v;
    return true;
}

/*
 * The NAMEs from ARGV[optind] on. One NAME must be valid (a usage error);
 * of several, each succeeds or fails on its own, so an invalid one is that
 * NAME's failure, reported by the caller (netsetup_name_error()).
 */
static int take_names(const char *cmd, int argc, char **argv, struct netsetup_args *a,
                      char err[NETSETUP_ERR_MAX])
{
    if (argc - optind > NETSETUP_NAMES_MAX)
        return fail(err, "%s takes at most %d NAMEs in one call", cmd, NETSETUP_NAMES_MAX);
    a->names = argv + optind;
    a->n_names = argc - optind;
    a->name = a->n_names ? a->names[0] : NULL;
    if (a->n_names == 1 && !sandbox_name_valid(a->name))
        return fail(err, "NAME '%s' " NAME_RULE, a->name);
    return 0;
}

bool netsetup_name_error(const char *name, char err[NETSETUP_ERR_MAX])
{
    if (sandbox_name_valid(name))
        return false;
    fail(err, "NAME '%s' " NAME_RULE, name);
    return true;
}

/* up and attach */
static int parse_up(const char *cmd, int argc, char **argv, struct netsetup_args *a,
                    char err[NETSETUP_ERR_MAX])
{
    static const struct option opts[] = {
        {"subnet", required_argument, NULL, OPT_SUBNET},
        {"ipv6", required_argument, NULL, OPT_IPV6},
        {"proxy-port", required_argument, NULL, OPT_PROXY_PORT},
        {"dns-port", required_argument, NULL, OPT_DNS_PORT},
        {"json", no_argument, NULL, OPT_JSON},
        {"iface", required_argument, NULL, OPT_IFACE},
        {"max-conntrack", required_argument, NULL, OPT_MAX_CONNTRACK},
        {"ca", required_argument, NULL, OPT_CA},
        {"isolated", no_argument, NULL, OPT_ISOLATED},
        {"from-file", required_argument, NULL, OPT_FROM_FILE},
        {NULL, 0, NULL, 0},
    };
    struct up_opts *o = &a->up;
    bool attach = strcmp(cmd, "attach") == 0;
    int c, r;

    o->proxy_port = DEFAULT_PROXY_PORT;
    o->dns_port = DEFAULT_DNS_PORT;
    o->max_conntrack = DEFAULT_MAX_CONNTRACK;
    getopt_reset();
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_SUBNET:
            if (!parse_subnet(optarg, AF_INET, &o->subnet))
                return fail(err, "--subnet '%s' is not an IPv4 network from /8 to /30 "
                            "(e.g. 10.201.0.0/30)", optarg);
            o->have_subnet = true;
            break;
        case OPT_IPV6:
            if (!parse_subnet(optarg, AF_INET6, &o->subnet6))
                return fail(err, "--ipv6 '%s' is not an IPv6 network from /48 to /126 "
                            "(e.g. fd00:5c::/64)", optarg);
            o->v6 = true;
            break;
        case OPT_PROXY_PORT:
        case OPT_DNS_PORT:
            if (!port_parse(optarg, c == OPT_PROXY_PORT ? &o->proxy_port : &o->dns_port))
                return fail(err, "%s '%s' is not a port (1-65535)",
                            c == OPT_PROXY_PORT ? "--proxy-port" : "--dns-port", optarg);
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_IFACE:
            if (!attach)
                return fail(err, "--iface belongs to attach");
            if (strlen(optarg) == 0 || strlen(optarg) >= IFNAME_LEN || strchr(optarg, '/'))
                return fail(err, "--iface '%s' is not an interface name", optarg);
            o->iface = optarg;
            break;
        case OPT_MAX_CONNTRACK:
            if (!parse_conntrack(optarg, &o->max_conntrack))
                return fail(err, "--max-conntrack '%s' is not a count from 1 to %u",
                            optarg, CONNTRACK_MAX_LIMIT);
            break;
        case OPT_CA:
            if (attach)
                return fail(err, "--ca belongs to up (an attached interface has no "
                            "/etc/netns directory; give the VM the CA itself)");
            o->ca = optarg;
            break;
        case OPT_ISOLATED:
            if (attach)
                return fail(err, "--isolated belongs to up (attach adopts an interface)");
            o->isolated = true;
            break;
        case OPT_FROM_FILE:
            if (attach)
                return fail(err, "--from-file belongs to up and down");
            a->from_file = optarg;
            break;
        default:
            return bad_option(cmd, argv, err);
        }
    }
    if (attach && argc - optind != 1)
        return fail(err, "%s takes exactly one NAME", cmd);
    if (a->from_file && argc - optind != 0)
        return fail(err, "%s --from-file takes its NAMEs from the file, not the command line",
                    cmd);
    if (!a->from_file && argc - optind < 1)
        return fail(err, "%s takes a NAME (or several, or --from-file FILE)", cmd);
    if ((r = take_names(cmd, argc, argv, a, err)) < 0)
        return r;
    if (a->n_names > 1 && (o->have_subnet || o->v6))
        return fail(err, "--subnet and --ipv6 name one sandbox's networks: give them per "
                    "line with --from-file");
    if (o->proxy_port == o->dns_port)
        return fail(err, "--proxy-port and --dns-port must differ");
    if (attach && !o->iface)
        return fail(err, "attach needs --iface IFACE");
    if (o->isolated && (o->have_subnet || o->v6 || o->ca || o->proxy_port != DEFAULT_PROXY_PORT ||
                        o->dns_port != DEFAULT_DNS_PORT ||
                        o->max_conntrack != DEFAULT_MAX_CONNTRACK))
        return fail(err, "--isolated has no network: it takes no --subnet, --ipv6, --ca, "
                    "ports or --max-conntrack");
    return 0;
}

static int parse_pod(int argc, char **argv, struct netsetup_args *a,
                     char err[NETSETUP_ERR_MAX])
{
    static const struct option opts[] = {
        {"proxy-uid", required_argument, NULL, OPT_PROXY_UID},
        {"proxy-port", required_argument, NULL, OPT_PROXY_PORT},
        {"dns-port", required_argument, NULL, OPT_DNS_PORT},
        {"metrics-port", required_argument, NULL, OPT_METRICS_PORT},
        {"max-conntrack", required_argument, NULL, OPT_MAX_CONNTRACK},
        {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    struct pod_opts *o = &a->pod;
    unsigned long v;
    char *end;
    int c;

    *o = (struct pod_opts){DEFAULT_PROXY_UID, DEFAULT_PROXY_PORT, DEFAULT_DNS_PORT,
                           DEFAULT_METRICS_PORT, DEFAULT_MAX_CONNTRACK};
    getopt_reset();
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_PROXY_UID:
            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || errno || v > 0xfffffffeul)
                return fail(err, "--proxy-uid '%s' is not a UID", optarg);
            o->proxy_uid = (uint32_t)v;
            break;
        case OPT_PROXY_PORT:
            if (!port_parse(optarg, &o->proxy_port))
                return fail(err, "--proxy-port '%s' is not a port (1-65535)", optarg);
            break;
        case OPT_DNS_PORT:
            if (!port_parse(optarg, &o->dns_port))
                return fail(err, "--dns-port '%s' is not a port (1-65535)", optarg);
            break;
        case OPT_METRICS_PORT:
            if (!port_parse(optarg, &o->metrics_port))
                return fail(err, "--metrics-port '%s' is not a port (1-65535)", optarg);
            break;
        case OPT_MAX_CONNTRACK:
            if (!parse_conntrack(optarg, &o->max_conntrack))
                return fail(err, "--max-conntrack '%s' is not a count from 1 to %u",
                            optarg, CONNTRACK_MAX_LIMIT);
            break;
        case OPT_JSON:
            a->json = true;
            break;
        default:
            return bad_option("pod", argv, err);
        }
    }
    if (optind != argc)
        return fail(err, "pod takes no NAME: it works on the namespace it runs in");
    if (o->proxy_uid == 0)
        return fail(err, "--proxy-uid 0 would exempt root from interception");
    return 0;
}

static int parse_down(int argc, char **argv, struct netsetup_args *a,
                      char err[NETSETUP_ERR_MAX])
{
    static const struct option opts[] = {
        {"from-file", required_argument, NULL, OPT_FROM_FILE},
        {"pod", no_argument, NULL, OPT_POD},
        {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    int c;

    getopt_reset();
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == OPT_FROM_FILE)
            a->from_file = optarg;
        else if (c == OPT_POD)
            a->down_pod = true;
        else if (c == OPT_JSON)
            a->json = true;
        else
            return bad_option("down", argv, err);
    }
    if (a->down_pod && (argc != 2 || optind != 2))
        return fail(err, "down --pod takes nothing else");
    if (a->down_pod)
        return 0;
    if (a->from_file && optind != argc)
        return fail(err, "down --from-file takes its NAMEs from the file, not the command "
                    "line");
    if (!a->from_file && optind == argc)
        return fail(err, "down takes a NAME (or several, or --from-file FILE), or --pod");
    return take_names("down", argc, argv, a, err);
}

/* forward NAME [ADDR:]PORT SANDBOX_PORT [--tcp|--udp] [--from CIDR...]; unforward NAME [ADDR:]PORT */
static int parse_forward(const char *cmd, int argc, char **argv, struct netsetup_args *a,
                         char err[NETSETUP_ERR_MAX])
{
    static const struct option opts[] = {
        {"tcp", no_argument, NULL, OPT_TCP},
        {"udp", no_argument, NULL, OPT_UDP},
        {"from", required_argument, NULL, OPT_FROM},
        {NULL, 0, NULL, 0},
    };
    bool un = strcmp(cmd, "unforward") == 0;
    struct forward *f = &a->forward;
    int c, want = un ? 2 : 3;

    getopt_reset();
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_TCP:
        case OPT_UDP: {
            uint8_t p = c == OPT_TCP ? IPPROTO_TCP : IPPROTO_UDP;

            if (f->proto && f->proto != p)
                return fail(err, "%s: --tcp and --udp exclude each other", cmd);
            f->proto = p;
            break;
        }
        case OPT_FROM: {
            char buf[1024], *save = NULL, *tok;

            if (un)
                return fail(err, "unforward takes no --from: it removes the whole forward");
            if (strlen(optarg) >= sizeof(buf))
                return fail(err, "--from '%.64s...' is too long", optarg);
            strcpy(buf, optarg);
            for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                struct cidr *net = &f->from[f->n_from];

                if (f->n_from == FORWARD_FROM_MAX)
                    return fail(err, "--from: at most %d networks", FORWARD_FROM_MAX);
                if (cidr_parse(tok, net) != CIDR_OK || net->family != AF_INET)
                    return fail(err, "--from '%s' is not an IPv4 network (e.g. 192.0.2.0/24)",
                                tok);
                f->n_from++;
            }
            break;
        }
        default:
            return bad_option(cmd, argv, err);
        }
    }
    if (argc - optind != want)
        return fail(err, un ? "unforward takes NAME [ADDR:]PORT"
                            : "forward takes NAME [ADDR:]PORT SANDBOX_PORT");
    a->name = argv[optind];
    if (!sandbox_name_valid(a->name))
        return fail(err, "NAME '%s' " NAME_RULE, a->name);
    if (!forward_addr_parse(argv[optind + 1], f->addr, &f->port))
        return fail(err, "'%s' is not [ADDR:]PORT with an IPv4 ADDR and a port 1-65535 "
                    "(e.g. 8080 or 127.0.0.1:8080)", argv[optind + 1]);
    if (!un && !port_parse(argv[optind + 2], &f->to_port))
        return fail(err, "SANDBOX_PORT '%s' is not a port (1-65535)", argv[optind + 2]);
    if (!un && !f->proto)
        f->proto = IPPROTO_TCP;
    return 0;
}

/* link NAME1 NAME2 --ports P[,P...]; unlink NAME1 NAME2 */
static int parse_link(const char *cmd, int argc, char **argv, struct netsetup_args *a,
                      char err[NETSETUP_ERR_MAX])
{
    static const struct option opts[] = {
        {"ports", required_argument, NULL, OPT_PORTS},
        {NULL, 0, NULL, 0},
    };
    bool un = strcmp(cmd, "unlink") == 0;
    int c, i;

    getopt_reset();
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != OPT_PORTS)
            return bad_option(cmd, argv, err);
        if (un)
            return fail(err, "unlink takes no --ports: it removes the whole link");
        if (!link_ports_parse(optarg, &a->link))
            return fail(err, "--ports '%s' is not 1 to %d ports (1-65535) separated by "
                        "commas, none twice", optarg, LINK_PORTS_MAX);
    }
    if (argc - optind != 2)
        return fail(err, "%s takes NAME1 NAME2", cmd);
    for (i = 0; i < 2; i++)
        if (!sandbox_name_valid(argv[optind + i]))
            return fail(err, "NAME '%s' " NAME_RULE, argv[optind + i]);
    a->name = argv[optind];
    a->peer = argv[optind + 1];
    if (strcmp(a->name, a->peer) == 0)
        return fail(err, "%s: a sandbox cannot be linked to itself", cmd);
    if (!un && a->link.n_ports == 0)
        return fail(err, "link needs --ports P[,P...]: the ports of NAME2 that NAME1 may open");
    return 0;
}

static int parse_status(int argc, char **argv, struct netsetup_args *a,
                        char err[NETSETUP_ERR_MAX])
{
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            a->json = true;
        else if (argv[i][0] == '-')
            return fail(err, "status: unknown option '%s'", argv[i]);
        else if (a->name)
            return fail(err, "status takes at most one NAME");
        else if (!sandbox_name_valid(argv[i]))
            return fail(err, "NAME '%s' " NAME_RULE, argv[i]);
        else
            a->name = argv[i];
    }
    return 0;
}

static int parse_verify(int argc, char **argv, struct netsetup_args *a,
                        char err[NETSETUP_ERR_MAX])
{
    if (argc == 2 && strcmp(argv[1], "--pod") == 0) {
        a->verify_pod = true;
        return 0;
    }
    if (argc != 2 || !sandbox_name_valid(argv[1]))
        return fail(err, "verify takes one NAME of 1-15 characters of [a-z0-9-], or --pod");
    a->name = argv[1];
    return 0;
}

int netsetup_args_parse(const char *cmd, int argc, char **argv, struct netsetup_args *a,
                        char err[NETSETUP_ERR_MAX])
{
    memset(a, 0, sizeof(*a));
    err[0] = '\0';
    if (strcmp(cmd, "up") == 0 || strcmp(cmd, "attach") == 0)
        return parse_up(cmd, argc, argv, a, err);
    if (strcmp(cmd, "pod") == 0)
        return parse_pod(argc, argv, a, err);
    if (strcmp(cmd, "down") == 0)
        return parse_down(argc, argv, a, err);
    if (strcmp(cmd, "status") == 0)
        return parse_status(argc, argv, a, err);
    if (strcmp(cmd, "verify") == 0)
        return parse_verify(argc, argv, a, err);
    if (strcmp(cmd, "forward") == 0 || strcmp(cmd, "unforward") == 0)
        return parse_forward(cmd, argc, argv, a, err);
    if (strcmp(cmd, "link") == 0 || strcmp(cmd, "unlink") == 0)
        return parse_link(cmd, argc, argv, a, err);
    fail(err, "unknown command '%s'", cmd);
    return -ENOENT;
}
