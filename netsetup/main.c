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
#include "state.h"
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
static int cmd_forward(const struct netsetup_args *a);
static int cmd_unforward(const struct netsetup_args *a);
static int cmd_link(const struct netsetup_args *a);
static int cmd_unlink(const struct netsetup_args *a);

static const struct command commands[] = {
    {"up", cmd_up, "up NAME... [--subnet CIDR] [--ipv6 CIDR] [--proxy-port P] [--dns-port P] "
     "[--max-conntrack N] [--ca FILE] [--isolated] [--json] | up --from-file FILE|- [--json]",
     NEEDS_NS},
    {"attach", cmd_attach, "attach NAME --iface IFACE [--subnet CIDR] [--ipv6 CIDR] "
     "[--proxy-port P] [--dns-port P] [--max-conntrack N] [--json]", CAP(CAP_NET_ADMIN)},
    {"pod", cmd_pod, "pod [--proxy-uid UID] [--proxy-port P] [--dns-port P] "
     "[--metrics-port P] [--max-conntrack N] [--json]", CAP(CAP_NET_ADMIN)},
    {"down", cmd_down, "down NAME... | down --from-file FILE|- [--json] | down --pod", NEEDS_NS},
    {"forward", cmd_forward, "forward NAME [ADDR:]PORT SANDBOX_PORT [--tcp|--udp] "
     "[--from CIDR...]", CAP(CAP_NET_ADMIN)},
    {"unforward", cmd_unforward, "unforward NAME [ADDR:]PORT [--tcp|--udp]", CAP(CAP_NET_ADMIN)},
    {"link", cmd_link, "link NAME1 NAME2 --ports P[,P...]", CAP(CAP_NET_ADMIN)},
    {"unlink", cmd_unlink, "unlink NAME1 NAME2", CAP(CAP_NET_ADMIN)},
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
            "\nNAME is 1-15 characters of [a-z0-9-]. up and down take many NAMEs, or a file\n"
            "(- for stdin) with one NAME and its up options a line ('#' comments); each\n"
            "succeeds or fails on its own, the output (--json: an array) says which, and the\n"
            "exit code is 1 if any failed. up --isolated makes a namespace with only lo: no\n"
            "interface, address or rule, so nothing leaves it (status lists it, down removes\n"
            "it, verify proves it).\n"
            "\nforward DNATs [ADDR:]PORT of this namespace (ADDR default 127.0.0.1; IPv4) to\n"
            "the sandbox's SANDBOX_PORT, from --from networks only if given; the sandbox sees\n"
            "its gateway as the client. Replies go back; the sandbox can open nothing through\n"
            "it. link lets NAME1 open TCP to NAME2's IPv4 address on --ports, nothing else and\n"
            "not the other way; both are removed when a side goes down. Remote clients of a\n"
            "forward need forwarding on the interface they arrive by (netsetup does not\n"
            "change the host's interfaces).\n"
            "\nSubnets come from %s in /30s\n"
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

/* ---- many names: up/down NAME... and --from-file ---- */

/* What runtime_error() would print for job J, without the program's prefix. */
static void job_message(const struct sandbox_job *j, char *buf, size_t len)
{
    const char *hint = j->e.hint, *p;
    int n;

    if (j->err == -EINVAL && j->usage[0]) {
        snprintf(buf, len, "%s", j->usage);
        return;
    }
    n = snprintf(buf, len, "%s: %s", j->e.what, strerror(-j->err));
    if (n < 0 || (size_t)n >= len || !hint)
        return;
    if ((p = strstr(hint, "NAME")) != NULL)
        snprintf(buf + n, len - (size_t)n, " (%.*s%s%s)", (int)(p - hint), hint, j->name,
                 p + 4);
    else
        snprintf(buf + n, len - (size_t)n, " (%s)", hint);
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* One line (text) or object (JSON) per job; failures also on stderr. */
static int report_jobs(const char *cmd, const struct sandbox_job *jobs, size_t n, bool json)
{
    char msg[512];
    size_t i, failed = 0;

    if (json)
        printf("[");
    for (i = 0; i < n; i++) {
        const struct sandbox_job *j = &jobs[i];

        if (j->err) {
            failed++;
            job_message(j, msg, sizeof(msg));
            fprintf(stderr, "sluice-netsetup: %s %s: %s\n", cmd, j->name, msg);
        }
        if (!json) {
            if (j->err)
                printf("%s failed: %s\n", j->name, msg);
            else
                printf("%s ok\n", j->name);
            continue;
        }
        printf("%s{\"name\": ", i ? ",\n " : "");
        json_string(stdout, j->name);
        if (j->err) {
            printf(", \"ok\": false, \"error\": ");
            json_string(stdout, msg);
            printf("}");
        } else if (strcmp(cmd, "up") == 0) {
            printf(", \"ok\": true, \"sandbox\": ");
            sandbox_print(&j->s, true, stdout);
            printf("}");
        } else {
            printf(", \"ok\": true, \"found\": %s}", j->found ? "true" : "false");
        }
    }
    if (json)
        printf("]\n");
    return failed ? EXIT_RUNTIME : 0;
}

/* One line of --from-file: NAME [up options], split at blanks. */
static void job_from_line(const char *cmd, char *line, size_t lineno, struct sandbox_job *j)
{
    char *argv[64], *save = NULL, *tok, err[NETSETUP_ERR_MAX];
    struct netsetup_args la;
    int argc = 0;

    argv[argc++] = (char *)cmd;
    for (tok = strtok_r(line, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
        if (argc == 63) {
            j->err = -EINVAL;
            snprintf(j->usage, sizeof(j->usage), "line %zu: too many words", lineno);
            return;
        }
        argv[argc++] = tok;
    }
    argv[argc] = NULL;
    j->name = argc > 1 ? argv[1] : "";
    if (netsetup_args_parse(cmd, argc, argv, &la, err) < 0 || la.n_names != 1 ||
        la.from_file || netsetup_name_error(la.name, err)) {
        j->err = -EINVAL;
        snprintf(j->usage, sizeof(j->usage), "line %zu: %s", lineno,
                 la.from_file ? "--from-file inside --from-file"
                 : la.n_names > 1 ? "one NAME a line" : err);
        return;
    }
    j->name = la.name;
    j->opts = la.up;
}

/* All of FILE (- for stdin), at most 64 MiB, NUL-terminated; NULL on failure. */
static char *read_all(const char *cmd, const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
    char *text = NULL, buf[65536];
    size_t len = 0, got;

    if (!f) {
        log_warnx("%s: cannot read --from-file %s: %s", cmd, path, strerror(errno));
        return NULL;
    }
    do {
        char *t;

        got = fread(buf, 1, sizeof(buf), f);
        if (len + got > (64u << 20) || !(t = realloc(text, len + got + 1))) {
            log_warnx("%s: --from-file %s is larger than 64 MiB", cmd, path);
            free(text);
            text = NULL;
            break;
        }
        text = t;
        memcpy(text + len, buf, got);
        len += got;
        text[len] = '\0';
    } while (got > 0);
    if (f != stdin)
        fclose(f);
    return text;
}

/* The jobs of A: its NAMEs, or the lines of --from-file (kept in *TEXT). */
static struct sandbox_job *jobs_of(const char *cmd, const struct netsetup_args *a, size_t *n,
                                   char **text)
{
    struct sandbox_job *jobs;
    char err[NETSETUP_ERR_MAX], *line, *next;
    size_t i, lines = 1, lineno = 0;

    *n = 0;
    *text = NULL;
    if (!a->from_file) {
        if (!(jobs = calloc((size_t)a->n_names, sizeof(*jobs))))
            return NULL;
        for (i = 0; i < (size_t)a->n_names; i++) {
            jobs[i].name = a->names[i];
            jobs[i].opts = a->up;
            if (netsetup_name_error(jobs[i].name, err)) {
                jobs[i].err = -EINVAL;
                snprintf(jobs[i].usage, sizeof(jobs[i].usage), "%s", err);
            }
        }
        *n = (size_t)a->n_names;
        return jobs;
    }
    if (!(*text = read_all(cmd, a->from_file)))
        return NULL;
    for (line = *text; *line; line++)
        lines += *line == '\n';
    if (!(jobs = calloc(lines, sizeof(*jobs))))
        return NULL;
    for (line = *text; line; line = next) {
        char *nl = strchr(line, '\n'), *hash;

        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        lineno++;
        if ((hash = strchr(line, '#')) != NULL)
            *hash = '\0';
        if (line[strspn(line, " \t\r")] != '\0')
            job_from_line(cmd, line, lineno, &jobs[(*n)++]);
    }
    return jobs;
}

static int many_cmd(const char *cmd, const struct netsetup_args *a)
{
    struct ns_error e = {.hint = NULL};
    struct sandbox_job *jobs;
    char *text;
    size_t n;
    int r;

    if (!(jobs = jobs_of(cmd, a, &n, &text))) {
        free(text);
        return EXIT_RUNTIME;
    }
    r = strcmp(cmd, "up") == 0 ? sandbox_up_many(jobs, n) : sandbox_down_many(jobs, n);
    if (r < 0) {
        snprintf(e.what, sizeof(e.what), "locking %s/lock", state_dir());
        r = runtime_error(&e, NULL, r);
    } else {
        r = report_jobs(cmd, jobs, n, a->json);
    }
    free(jobs);
    free(text);
    return r;
}

static bool many(const struct netsetup_args *a)
{
    return a->from_file || a->n_names > 1;
}

static int cmd_up(const struct netsetup_args *a)
{
    return many(a) ? many_cmd("up", a) : create_cmd(a, false);
}

static int cmd_attach(const struct netsetup_args *a)
{
    return create_cmd(a, true);
}

/* forward, link and their undoing: -EOPNOTSUPP is a usage error (exit 2) */
static int peer_result(const struct ns_error *e, const char *name, int r)
{
    if (r == -EOPNOTSUPP)
        return log_usage("%s %s: %s%s%s", current, name, e->what, e->hint ? ": " : "",
                         e->hint ? e->hint : "");
    return r < 0 ? runtime_error(e, name, r) : 0;
}

static int cmd_forward(const struct netsetup_args *a)
{
    struct ns_error e = {.hint = NULL};

    return peer_result(&e, a->name, sandbox_forward(&e, a->name, &a->forward));
}

static int cmd_unforward(const struct netsetup_args *a)
{
    struct ns_error e = {.hint = NULL};

    return peer_result(&e, a->name, sandbox_unforward(&e, a->name, a->forward.proto,
                                                      a->forward.addr, a->forward.port));
}

static int cmd_link(const struct netsetup_args *a)
{
    struct ns_error e = {.hint = NULL};

    return peer_result(&e, a->name, sandbox_link(&e, a->name, a->peer, &a->link));
}

static int cmd_unlink(const struct netsetup_args *a)
{
    struct ns_error e = {.hint = NULL};

    return peer_result(&e, a->name, sandbox_unlink(&e, a->name, a->peer));
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
    if (many(a))
        return many_cmd("down", a);
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
