/*
 * sluicectl explain: which rule decides a destination, and why, asked of
 * policy_decide() as the proxy asks it.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <getopt.h>

#include "ctl.h"
#include "hostport.h"

static void print_ports(const struct policy_rule *r)
{
    size_t i;

    printf("[");
    for (i = 0; i < r->n_ports; i++)
        printf("%s%u", i ? ", " : "", r->ports[i]);
    printf("]");
}

static void print_rule(const struct policy_rule *r)
{
    size_t i;

    printf("  rule: %s:%u:%u %s %s ports ", r->file, r->line, r->col,
           r->kind == RULE_CIDR ? "cidr" : "domain", r->pattern);
    print_ports(r);
    printf("%s", r->inspect ? " inspect" : "");
    /* the header names only: a value is the sandbox's credential, and explain output ends
     * up in terminals, tickets and CI logs */
    for (i = 0; i < r->n_inject; i++)
        printf("%s%s", i ? ", " : " injects [", r->inject[i].header);
    printf("%s\n", r->n_inject ? "]" : "");
}

int cmd_explain(int argc, char **argv)
{
    static const struct option opts[] = {
        {"method", required_argument, NULL, 'm'},
        {"path", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    const char *method = NULL, *path = NULL;
    struct policy_query q = {0};
    struct policy_decision v;
    bool allow;
    struct policy *p;
    uint8_t addr[16];
    char *host;
    uint16_t port;
    int c, family = 0, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'm')
            method = optarg;
        else if (c == 'p')
            path = optarg;
        else
            return LOG_EXIT_USAGE;
    }
    if (argc - optind != 2)
        return log_usage("explain takes POLICY and HOST[:PORT]");
    if (!hostport_split(argv[optind + 1], 443, &host, &port))
        return log_usage("'%s' is not HOST[:PORT] with a port in 1-65535",
                           argv[optind + 1]);
    if ((method == NULL) != (path == NULL))
        return log_usage("--method and --path go together");
    p = ctl_load(argv[optind]);
    if (!p) {
        fprintf(stderr, "%s: invalid policy; fix it first ('sluicectl check')\n",
                argv[optind]);
        return LOG_EXIT_USAGE;
    }

    if (inet_pton(AF_INET, host, addr) == 1)
        family = AF_INET;
    else if (inet_pton(AF_INET6, host, addr) == 1)
        family = AF_INET6;
    if (family) {
        q.family = family;
        q.addr = addr;
    } else {
        q.host = (const uint8_t *)host;
        q.host_len = strlen(host);
    }
    q.port = port;
    q.method = method;
    q.target = path;
    q.target_len = path ? strlen(path) : 0;
    policy_decide(p, &q, &v);
    allow = v.outcome == DECISION_ALLOW;

    printf("%s: %s%s%s:%u", allow ? "allow" : "deny", family == AF_INET6 ? "[" : "",
           host, family == AF_INET6 ? "]" : "", port);
    if (method)
        printf(" %s %s", method, path);
    printf(allow ? "\n" : " (%s)\n", reason_name(v.reason));
    if (!allow)
        printf("  %s\n", reason_describe(v.reason));
    if (v.rule)
        print_rule(v.rule);
    if (allow && v.rule->n_http && !method)
        printf("  http rules apply to each request: pass --method and --path to check one\n");
    if (allow && family)
        printf("  the address must also be public or in destinations.allow_ranges, and not "
               "the proxy host's own\n");
    else if (allow)
        printf("  the name must also resolve to a public address or one in "
               "destinations.allow_ranges, never one of the proxy host's own\n");
    if (!family && v.rule) {
        bool web = port == 80 || port == 443 || v.rule->inspect || v.rule->n_http;

        if (p->settings.dns.answers == DNS_ANSWERS_VIRTUAL)
            printf("  reached through a virtual address: the proxy's DNS answers %s with an "
                   "address of 198.18.0.0/15 (or its ULA /96) that means this name%s\n", host,
                   web ? "; TLS or HTTP on it must name it too (SNI, Host)"
                       : "; any TCP protocol on it is relayed by that name");
        else if (!web)
            printf("  dns.answers is real: only TLS or HTTP naming %s (SNI, Host) reaches it "
                   "on port %u; other protocols need dns.answers: virtual\n", host, port);
    }
    if (v.outcome == DECISION_AUDIT)
        printf("  mode is audit: the flow would pass and be logged with verdict audit\n");
    printf("  policy %s generation %llu\n", p->hash, (unsigned long long)p->generation);
    rc = allow ? 0 : 1;
    policy_free(p);
    return rc;
}
