/*
 * sluice-proxy's command line: parses it, validates the policy for --check,
 * and hands everything else to the process core (proxy.c).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "privdrop.h"
#include "proxy.h"
#include "vpool.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice-proxy --policy FILE --listen ADDR:PORT [--listen ...]\n"
            "                    [--dns-listen ADDR:PORT ...] --upstream-dns ADDR[:PORT][,...]\n"
            "                    [--id NAME] [--log FILE|-] [--metrics ADDR:PORT]\n"
            "                    [--control PATH] [--user USER] [--no-seccomp]\n"
            "                    [--ca-cert FILE --ca-key FILE [--upstream-ca FILE]]\n"
            "                    [--virtual-pool N]\n"
            "                    [--check] [--foreground]\n"
            "\n"
            "  --policy FILE        the policy (see sluicectl check); reloaded on SIGHUP and\n"
            "                       when the file changes\n"
            "  --listen ADDR:PORT   a transparent TCP listener ([V6]:PORT for IPv6); the\n"
            "                       proxy_listen address sluice-netsetup printed\n"
            "  --dns-listen ADDR:PORT  the DNS service (UDP and TCP): the dns_listen address\n"
            "                       sluice-netsetup printed; names no rule allows get NXDOMAIN\n"
            "  --upstream-dns LIST  the resolvers the proxy asks (never the sandbox's choice)\n"
            "  --id NAME            the sandbox's name in every log record\n"
            "  --log FILE|-         the flow log, JSON Lines (default -: standard output)\n"
            "  --metrics ADDR:PORT  serve Prometheus metrics on GET /metrics and a health\n"
            "                       check on GET /healthz (an address the sandbox cannot\n"
            "                       reach, e.g. 127.0.0.1:15090 on the host);\n"
            "                       0.0.0.0:PORT serves [::]:PORT as well\n"
            "  --control PATH       the control socket (unix, mode 0600) for\n"
            "                       sluicectl --control PATH stats|flows|reload\n"
            "  --user USER          who to become after binding, when started as root\n"
            "                       (default: '%s' if /etc/passwd has it, else '%s'); a\n"
            "                       proxy started as another user stays that user. All\n"
            "                       capabilities are dropped and no_new_privs is set\n"
            "  --ca-cert FILE --ca-key FILE  the inspect-mode CA (sluicectl ca init): flows\n"
            "                       an 'inspect: true' rule allows are terminated under\n"
            "                       leaves it signs, and each HTTP request is checked. Read\n"
            "                       once, before the privilege drop (key mode 0600). A\n"
            "                       policy with inspect rules and no CA is refused\n"
            "  --upstream-ca FILE   PEM certificates that upstream servers' chains are\n"
            "                       verified against in inspect mode (default: the system\n"
            "                       store, read whole at start)\n"
            "  --virtual-pool N     dns.answers: virtual: how many names may hold an\n"
            "                       address of 198.18.0.0/15 (and fd73:6c75:6963:6576::/96\n"
            "                       when a --listen is IPv6) at once (1-%u, default %u);\n"
            "                       a full pool reuses the idle mapping whose TTL ended\n"
            "                       first, never one a flow uses\n"
            "  --no-seccomp         no syscall filter (debugging only; the default filter\n"
            "                       kills the process on a syscall it does not allow)\n"
            "  --check              validate the policy, print problems, exit 0 or 1\n"
            "  --foreground         stay in the foreground (it always does; for service files)\n"
            "\n"
            "signals: SIGHUP reloads, SIGUSR1 reopens the log, SIGTERM stops accepting and\n"
            "lets flows finish for %d s. exit codes: 0 ok, 1 runtime failure (including a\n"
            "failed privilege drop or an unreadable CA), 2 usage (including inspect rules\n"
            "without --ca-cert/--ca-key).\n",
            PRIVDROP_DEFAULT_USER, PRIVDROP_FALLBACK_USER, VPOOL_MAX, PROXY_VIRTUAL_POOL,
            PROXY_DRAIN_GRACE_MS / 1000);
}

static bool parse_pool(const char *s, uint32_t *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < 1 || v > VPOOL_MAX) {
        log_warnx("--virtual-pool '%s': not a number of addresses in 1-%u", s, VPOOL_MAX);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

int main(int argc, char **argv)
{
    enum { O_POLICY = 256, O_LISTEN, O_DNS, O_UPSTREAM, O_ID, O_LOG, O_CHECK, O_FOREGROUND,
           O_METRICS, O_CONTROL, O_HELP, O_USER, O_NO_SECCOMP, O_CA_CERT, O_CA_KEY,
           O_UPSTREAM_CA, O_VIRTUAL_POOL };
    static const struct option opts[] = {
        {"policy", required_argument, NULL, O_POLICY},
        {"listen", required_argument, NULL, O_LISTEN},
        {"dns-listen", required_argument, NULL, O_DNS},
        {"upstream-dns", required_argument, NULL, O_UPSTREAM},
        {"id", required_argument, NULL, O_ID},
        {"log", required_argument, NULL, O_LOG},
        {"check", no_argument, NULL, O_CHECK},
        {"foreground", no_argument, NULL, O_FOREGROUND},
        {"metrics", required_argument, NULL, O_METRICS},
        {"control", required_argument, NULL, O_CONTROL},
        {"help", no_argument, NULL, O_HELP},
        {"user", required_argument, NULL, O_USER},
        {"no-seccomp", no_argument, NULL, O_NO_SECCOMP},
        {"ca-cert", required_argument, NULL, O_CA_CERT},
        {"ca-key", required_argument, NULL, O_CA_KEY},
        {"upstream-ca", required_argument, NULL, O_UPSTREAM_CA},
        {"virtual-pool", required_argument, NULL, O_VIRTUAL_POOL},
        {NULL, 0, NULL, 0},
    };
    struct proxy_options o = {.log_path = "-", .seccomp = true};
    struct proxy px;
    struct policy *policy = NULL;
    struct diag_list d;
    bool check = false;
    int c, rc;

    log_init("sluice-proxy");
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_POLICY: o.policy_path = optarg; break;
        case O_LISTEN:
            if (o.n_listens == PROXY_MAX_LISTENERS) {
                log_warnx("at most %d --listen (see --help)", PROXY_MAX_LISTENERS);
                return LOG_EXIT_USAGE;
            }
            o.listens[o.n_listens++] = optarg;
            break;
        case O_DNS:
            if (o.n_dns == PROXY_MAX_DNS) {
                log_warnx("at most %d --dns-listen (see --help)", PROXY_MAX_DNS);
                return LOG_EXIT_USAGE;
            }
            o.dns[o.n_dns++] = optarg;
            break;
        case O_UPSTREAM: o.upstream = optarg; break;
        case O_ID: o.id = optarg; break;
        case O_LOG: o.log_path = optarg; break;
        case O_CHECK: check = true; break;
        case O_FOREGROUND: break;
        case O_METRICS: o.metrics = optarg; break;
        case O_CONTROL: o.control = optarg; break;
        case O_HELP: usage(stdout); return 0;
        case O_USER: o.user = optarg; break;
        case O_NO_SECCOMP: o.seccomp = false; break;
        case O_CA_CERT: o.ca_cert = optarg; break;
        case O_CA_KEY: o.ca_key = optarg; break;
        case O_UPSTREAM_CA: o.upstream_ca = optarg; break;
        case O_VIRTUAL_POOL:
            if (!parse_pool(optarg, &o.virtual_pool))
                return LOG_EXIT_USAGE;
            break;
        default:
            log_warnx("unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
            return LOG_EXIT_USAGE;
        }
    }
    if (optind != argc || !o.policy_path) {
        log_warnx("%s (see --help)", optind != argc ? "unexpected arguments"
                                                    : "--policy FILE is required");
        return LOG_EXIT_USAGE;
    }
    diag_init(&d, o.policy_path);
    policy_load_file(o.policy_path, &policy, &d);
    diag_print(&d, stderr);
    diag_clear(&d);
    if (check || !policy) {
        rc = policy ? 0 : 1;
        policy_free(policy);
        return rc;
    }
    if (o.n_listens == 0 || !o.upstream) {
        log_warnx("%s is required (see --help)", o.n_listens ? "--upstream-dns" : "--listen");
        policy_free(policy);
        return LOG_EXIT_USAGE;
    }
    rc = proxy_open(&px, &o, policy);
    if (rc == 0)
        rc = proxy_run(&px, &o);
    proxy_close(&px);
    return rc;
}
