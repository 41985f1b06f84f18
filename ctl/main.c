/*
 * sluicectl: the operator's tool. Validates policies, explains which rule
 * decides a destination, and talks to a running proxy over its control
 * socket. Subcommands come from one table; --help prints it.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
    const char *help;
};

static const struct command commands[] = {
    {"check", cmd_check, "check POLICY [--ca CA.pem]",
     "validate a policy; errors as FILE:LINE:COL: message. With --ca, every\n"
     "      inspect rule must lie inside the CA's name constraints.\n"
     "      exit 0 valid (warnings may be printed), 1 invalid, 2 usage"},
    {"explain", cmd_explain, "explain POLICY HOST[:PORT] [--method M --path P]",
     "say which rule decides a destination (port defaults to 443;\n"
     "      HOST may be an address for cidr rules, [v6]:PORT with a port).\n"
     "      exit 0 allow, 1 deny, 2 usage or invalid policy"},
    {"ca", cmd_ca, "ca init DIR --policy POLICY [--days N] | ca show DIR",
     "make the inspect-mode CA in DIR (ca.pem, and ca.key mode 0600), its name\n"
     "      constraints permitting exactly the policy's inspect rules and no IP\n"
     "      address (--days: 1-3650, default 365); or print one. exit 0 ok, 1 failed\n"
     "      (an existing key is never replaced), 2 usage or invalid policy"},
    {"suggest", cmd_suggest,
     "suggest LOG... [--policy CURRENT] [--min-runs K] [--merge N] [--diff] [--json]",
     "learn a policy from flow logs (plain or gzip, - for standard input; a run\n"
     "      is a file, or a sandbox id in it): each name seen in at least K runs\n"
     "      (default 1) with its ports and evidence; N or more names under a\n"
     "      parent that is not a public suffix merged into *.parent; names only\n"
     "      resolved and bare addresses listed as comments. --policy keeps that\n"
     "      policy's settings; --diff prints what would be added and removed.\n"
     "      exit 0 (--diff: no change), 1 (--diff: a change; or an error), 2 usage"},
    {"report", cmd_report,
     "report LOG... [-o FILE] [--format html|text|json] [--since T] [--until T]",
     "what flow logs (plain or gzip, - for standard input) say, in one pass:\n"
     "      decisions over time by verdict, top destinations by connections and\n"
     "      bytes, denials by reason and sandbox, alerts with their evidence, each\n"
     "      sandbox, the policies seen. html (the default with -o) is one file with\n"
     "      no script and nothing to fetch; text (the default) for a terminal. T: an\n"
     "      RFC 3339 UTC time or a prefix of one (2026-12-05, 2026-12-05T10:00);\n"
     "      --since keeps records at or after it, --until those before it.\n"
     "      Lines that are not records are counted and skipped. exit 0, 1 error, 2 usage"},
    {"graph", cmd_graph, "graph POLICY [--log LOG...] [-o FILE] [--format svg|dot]",
     "the policy as a picture, laid out by Graphviz (libgvc): the sandbox, its\n"
     "      DNS, each rule with its ports, inspect and http parts, and the default\n"
     "      deny; with --log (plain or gzip, - for standard input), what flowed over\n"
     "      each rule (edge width by bytes) and the denied destinations, coloured by\n"
     "      reason. svg (default) or dot (the graph before layout). exit 0, 1 error,\n"
     "      2 usage or invalid policy"},
    {"--control", cmd_control, "--control PATH stats|flows|reload [--json]",
     "ask the proxy behind a control socket: its counters and policy (stats),\n"
     "      its live flows (flows), or to load its policy file again (reload).\n"
     "      --json prints the proxy's reply as it is. exit 0 ok, 1 the proxy\n"
     "      refused (a reload error says FILE:LINE:COL) or cannot be reached, 2 usage"},
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

int main(int argc, char **argv)
{
    size_t i;

    log_init("sluicectl");
    if (argc < 2)
        return usage(stderr), LOG_EXIT_USAGE;
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout), 0;
    for (i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    return log_usage("unknown command '%s'", argv[1]);
}
