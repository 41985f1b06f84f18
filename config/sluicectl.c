/*
 * sluicectl: the operator's tool. Validates policies, explains which rule
 * decides a destination, and talks to a running proxy over its control
 * socket. Subcommands come from one table; --help prints it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#include "hostport.h"
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
static int cmd_control(int argc, char **argv);

static const struct command commands[] = {
    {"check", cmd_check, "check POLICY",
     "validate a policy; errors as FILE:LINE:COL: message.\n"
     "      exit 0 valid (warnings may be printed), 1 invalid, 2 usage"},
    {"explain", cmd_explain, "explain POLICY HOST[:PORT] [--method M --path P]",
     "say which rule decides a destination (port defaults to 443;\n"
     "      HOST may be an address for cidr rules, [v6]:PORT with a port).\n"
     "      exit 0 allow, 1 deny, 2 usage or invalid policy"},
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

static int cmd_explain(int argc, char **argv)
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
            return EXIT_USAGE;
    }
    if (argc - optind != 2)
        return usage_error("explain takes POLICY and HOST[:PORT]");
    if (!hostport_split(argv[optind + 1], 443, &host, &port))
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
        print_rule(p, v.rule);
    if (allow && v.rule->n_http && !method)
        printf("  http rules apply to each request: pass --method and --path to check one\n");
    if (allow && family)
        printf("  the address must also be public or in destinations.allow_ranges, and not "
               "the proxy host's own\n");
    else if (allow)
        printf("  the name must also resolve to a public address or one in "
               "destinations.allow_ranges, never one of the proxy host's own\n");
    if (v.outcome == DECISION_AUDIT)
        printf("  mode is audit: the flow would pass and be logged with verdict audit\n");
    printf("  policy %s generation %llu\n", p->hash, (unsigned long long)p->generation);
    rc = allow ? 0 : 1;
    policy_free(p);
    return rc;
}

/* ---- --control: one JSON request line, one JSON reply line ---- */

#define CONTROL_REPLY_MAX (16u << 20)   /* flows of a busy proxy fit many times over */
#define CONTROL_TIMEOUT_S 10

/* Sends {"cmd": CMD} to the socket at PATH; returns the reply (malloc'd) or NULL. */
static char *control_ask(const char *path, const char *cmd, size_t *len)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct timeval tv = {CONTROL_TIMEOUT_S, 0};
    char req[64], *buf = NULL, *nb;
    size_t cap = 0, n = 0;
    ssize_t r;
    int fd, reqlen;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    reqlen = snprintf(req, sizeof(req), "{\"cmd\": \"%s\"}\n", cmd);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
        connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        write(fd, req, (size_t)reqlen) != reqlen)
        goto fail;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            if (cap > CONTROL_REPLY_MAX || !(nb = realloc(buf, cap + 1))) {
                errno = EMSGSIZE;
                goto fail;
            }
            buf = nb;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (n == 0) {
        free(buf);
        errno = ECONNRESET;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    r = errno;
    close(fd);
    free(buf);
    errno = (int)r;
    return NULL;
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    yaml_node_pair_t *pair;

    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(doc, pair->key);

        if (k && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, pair->value);
    }
    return NULL;
}

static const char *map_str(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    yaml_node_t *v = map_get(doc, map, key);

    return v && v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : "-";
}

/* stats: every member as a "key  value" line, nested objects as "outer.inner". */
static void print_members(yaml_document_t *doc, yaml_node_t *map, const char *prefix)
{
    yaml_node_pair_t *pair;

    for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(doc, pair->value);
        char name[128];

        if (!k || !v || k->type != YAML_SCALAR_NODE || strcmp((char *)k->data.scalar.value,
                                                               "ok") == 0)
            continue;
        snprintf(name, sizeof(name), "%s%s", prefix, (const char *)k->data.scalar.value);
        if (v->type == YAML_MAPPING_NODE) {
            strncat(name, ".", sizeof(name) - strlen(name) - 1);
            print_members(doc, v, name);
        } else if (v->type == YAML_SCALAR_NODE) {
            printf("%-44s %s\n", name, (const char *)v->data.scalar.value);
        }
    }
}

static void print_flows(yaml_document_t *doc, yaml_node_t *flows)
{
    yaml_node_item_t *it;

    printf("%-6s %-8s %-5s %-22s %-30s %-5s %-24s %10s %10s %8s\n", "ID", "STATE", "PROTO",
           "SOURCE", "HOST", "PORT", "UPSTREAM", "UP", "DOWN", "AGE_S");
    if (!flows || flows->type != YAML_SEQUENCE_NODE)
        return;
    for (it = flows->data.sequence.items.start; it < flows->data.sequence.items.top; it++) {
        yaml_node_t *f = yaml_document_get_node(doc, *it);

        printf("%-6s %-8s %-5s %-22s %-30s %-5s %-24s %10s %10s %8.1f\n",
               map_str(doc, f, "id"), map_str(doc, f, "state"), map_str(doc, f, "proto"),
               map_str(doc, f, "src"), map_str(doc, f, "host"), map_str(doc, f, "port"),
               map_str(doc, f, "upstream"), map_str(doc, f, "bytes_up"),
               map_str(doc, f, "bytes_down"), strtod(map_str(doc, f, "age_ms"), NULL) / 1000);
    }
}

static int cmd_control(int argc, char **argv)
{
    const char *path, *cmd;
    bool json = false;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    char *reply;
    size_t len;
    int rc = 1;

    if (argc == 4 && strcmp(argv[3], "--json") == 0)
        json = true;
    else if (argc != 3)
        return usage_error("--control takes PATH and one of stats, flows, reload");
    path = argv[1];
    cmd = argv[2];
    if (strcmp(cmd, "stats") != 0 && strcmp(cmd, "flows") != 0 && strcmp(cmd, "reload") != 0)
        return usage_error("unknown control command '%s' (stats, flows, reload)", cmd);
    reply = control_ask(path, cmd, &len);
    if (!reply) {
        fprintf(stderr, "sluicectl: %s: %s (is sluice-proxy running with --control %s? "
                "the socket is mode 0600: run as its owner)\n", path, strerror(errno), path);
        return 1;
    }
    if (!yaml_parser_initialize(&parser)) {
        free(reply);
        return 1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)reply, len);
    if (!yaml_parser_load(&parser, &doc)) {
        fprintf(stderr, "sluicectl: %s: the reply is not JSON: %.80s\n", path, reply);
        goto out_parser;
    }
    root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        fprintf(stderr, "sluicectl: %s: the reply is not a JSON object\n", path);
        goto out;
    }
    rc = strcmp(map_str(&doc, root, "ok"), "true") == 0 ? 0 : 1;
    if (json)
        fputs(reply, stdout);
    else if (rc != 0)
        fprintf(stderr, "sluicectl: %s %s: %s\n", path, cmd, map_str(&doc, root, "error"));
    else if (strcmp(cmd, "flows") == 0)
        print_flows(&doc, map_get(&doc, root, "flows"));
    else if (strcmp(cmd, "reload") == 0)
        printf("policy %s in force (%s)\n", map_str(&doc, root, "policy"),
               strcmp(map_str(&doc, root, "changed"), "true") == 0 ? "reloaded"
                                                                  : "the file is unchanged");
    else
        print_members(&doc, root, "");
out:
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&parser);
    free(reply);
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
