/*
 * sluicectl: the operator's tool. Validates policies and explains which rule
 * decides a destination. Subcommands come from one table; --help prints it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define EXIT_USAGE 2

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
    const char *help;
};

static int cmd_check(int argc, char **argv);
static int cmd_explain(int argc, char **argv);

static const struct command commands[] = {
    {"check", cmd_check, "check POLICY",
     "validate a policy; errors as FILE:LINE:COL: message.\n"
     "      exit 0 valid (warnings may be printed), 1 invalid, 2 usage"},
    {"explain", cmd_explain, "explain POLICY HOST[:PORT] [--method M --path P]",
     "say which rule decides a destination (port defaults to 443;\n"
     "      HOST may be an address for cidr rules, [v6]:PORT with a port).\n"
     "      exit 0 allow, 1 deny, 2 usage or invalid policy"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    size_t i;

    fprintf(out, "usage: sluicectl COMMAND [ARGS]\n\ncommands:\n");
    for (i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  sluicectl %s\n      %s\n", commands[i].usage, commands[i].help);
    fprintf(out, "\nsluicectl --help prints this text; exit 2 on a usage error.\n");
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sluicectl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'sluicectl --help')\n");
    return EXIT_USAGE;
}

/* Loads PATH, printing diagnostics to stderr; NULL when it has errors. */
static struct policy *load(const char *path)
{
    struct diag_list d;
    struct policy *p;

    diag_init(&d, path);
    policy_load_file(path, &p, &d);
    diag_print(&d, stderr);
    diag_clear(&d);
    return p;
}

static int cmd_check(int argc, char **argv)
{
    struct policy *p;

    if (argc != 2)
        return usage_error("check takes one POLICY file");
    p = load(argv[1]);
    if (!p) {
        fprintf(stderr, "%s: invalid policy\n", argv[1]);
        return 1;
    }
    printf("%s: ok, %zu rule%s, mode %s, policy %s\n", argv[1], p->n_rules,
           p->n_rules == 1 ? "" : "s",
           p->settings.mode == POLICY_AUDIT ? "audit" : "enforce", p->hash);
    policy_free(p);
    return 0;
}

static void print_ports(const struct policy_rule *r)
{
    size_t i;

    printf("[");
    for (i = 0; i < r->n_ports; i++)
        printf("%s%u", i ? ", " : "", r->ports[i]);
    printf("]");
}

static void print_rule(const struct policy *p, const struct policy_rule *r)
{
    printf("  rule: %s:%u:%u %s %s ports ", p->file, r->line, r->col,
           r->kind == RULE_CIDR ? "cidr" : "domain", r->pattern);
    print_ports(r);
    printf("%s\n", r->inspect ? " inspect" : "");
}

/* Splits HOST[:PORT] and [V6]:PORT; returns false on a malformed port. */
static bool split_target(char *arg, char **host, uint16_t *port)
{
    char *colon;

    *port = 443;
    if (arg[0] == '[') {
        char *close = strchr(arg, ']');

        if (!close)
            return false;
        *close = '\0';
        *host = arg + 1;
        colon = close[1] == ':' ? close + 1 : NULL;
        if (!colon && close[1] != '\0')
            return false;
    } else {
        *host = arg;
        colon = strchr(arg, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL;       /* a bare IPv6 address */
    }
    if (!colon)
        return true;
    *colon = '\0';
    return port_parse(colon + 1, port);
}

static int cmd_explain(int argc, char **argv)
{
    static const struct option opts[] = {
        {"method", required_argument, NULL, 'm'},
        {"path", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    const char *method = NULL, *path = NULL;
    struct policy_verdict v;
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
            return EXIT_USAGE;
    }
    if (argc - optind != 2)
        return usage_error("explain takes POLICY and HOST[:PORT]");
    if (!split_target(argv[optind + 1], &host, &port))
        return usage_error("'%s' is not HOST[:PORT] with a port in 1-65535",
                           argv[optind + 1]);
    if ((method == NULL) != (path == NULL))
        return usage_error("--method and --path go together");
    p = load(argv[optind]);
    if (!p) {
        fprintf(stderr, "%s: invalid policy; fix it first ('sluicectl check')\n",
                argv[optind]);
        return EXIT_USAGE;
    }

    if (inet_pton(AF_INET, host, addr) == 1)
        family = AF_INET;
    else if (inet_pton(AF_INET6, host, addr) == 1)
        family = AF_INET6;
    if (family)
        policy_match_addr(p, family, addr, port, &v);
    else
        policy_match_host(p, (const uint8_t *)host, strlen(host), port, &v);
    if (v.allow && method)
        policy_match_http(v.rule, method, path, &v);

    printf("%s: %s%s%s:%u", v.allow ? "allow" : "deny", family == AF_INET6 ? "[" : "",
           host, family == AF_INET6 ? "]" : "", port);
    if (method)
        printf(" %s %s", method, path);
    printf(v.allow ? "\n" : " (%s)\n", reason_name(v.reason));
    if (!v.allow)
        printf("  %s\n", reason_describe(v.reason));
    if (v.rule)
        print_rule(p, v.rule);
    if (v.allow && v.rule->n_http && !method)
        printf("  http rules apply to each request: pass --method and --path to check one\n");
    if (v.allow && family)
        printf("  the address must also be public or in destinations.allow_ranges\n");
    else if (v.allow)
        printf("  the name must also resolve to a public address or one in "
               "destinations.allow_ranges\n");
    if (!v.allow && p->settings.mode == POLICY_AUDIT)
        printf("  mode is audit: the flow would pass and be logged with verdict audit\n");
    printf("  policy %s generation %llu\n", p->hash, (unsigned long long)p->generation);
    rc = v.allow ? 0 : 1;
    policy_free(p);
    return rc;
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc < 2)
        return usage(stderr), EXIT_USAGE;
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout), 0;
    for (i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    return usage_error("unknown command '%s'", argv[1]);
}
