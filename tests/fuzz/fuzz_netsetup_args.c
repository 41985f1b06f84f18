/*
 * Fuzz target for sluice-netsetup's command line (netsetup_args_parse): the
 * input is the argv after the program name, NUL-separated, command word
 * first. Parsing alone runs; nothing is executed. Whatever it accepts must be
 * what the commands rely on: a valid NAME, subnets in range with no host
 * bits, distinct nonzero ports, an interface name that fits.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "args.h"
#include "fuzz.h"

#define ARGS_MAX 64             /* longer command lines are cut here */


/* True when S is one of the ARGC strings of ARGV (the pointer, not a copy). */
static bool from_argv(const char *s, char **argv, int argc)
{
    int i;

    for (i = 0; i < argc; i++) {
        if (argv[i] == s)
            return true;
    }
    return false;
}

static void check_subnet(const struct cidr *c, int family, unsigned min, unsigned max)
{
    char text[CIDR_STRLEN];
    struct cidr again;

    CHECK(c->family == family);
    CHECK(c->len >= min && c->len <= max);
    cidr_format(c, text);
    CHECK(cidr_parse(text, &again) == CIDR_OK);
    CHECK(again.len == c->len && memcmp(again.addr, c->addr, sizeof(c->addr)) == 0);
}

static void check_name(const char *name, char **argv, int argc)
{
    char ifname[IFNAME_LEN];

    CHECK(name && from_argv(name, argv, argc));
    CHECK(sandbox_name_valid(name));
    sandbox_host_ifname(name, ifname);
    CHECK(strlen(ifname) < IFNAME_LEN && strncmp(ifname, "sl-", 3) == 0);
}

/* up and down: one valid NAME, several (each checked later, one by one), or a file */
static void check_names(const struct netsetup_args *a, char **argv, int argc)
{
    if (a->from_file) {
        CHECK(a->n_names == 0 && !a->name);
        CHECK(from_argv(a->from_file, argv, argc) || a->from_file[-1] == '=');
        return;
    }
    CHECK(a->n_names >= 1 && a->n_names <= NETSETUP_NAMES_MAX && a->name == a->names[0]);
    if (a->n_names == 1)
        check_name(a->name, argv, argc);
    for (int i = 0; i < a->n_names; i++)
        CHECK(from_argv(a->names[i], argv, argc));
}

static void check_parsed(const char *cmd, const struct netsetup_args *a, char **argv,
                         int argc)
{
    bool attach = strcmp(cmd, "attach") == 0;

    if (strcmp(cmd, "up") == 0 || attach) {
        const struct up_opts *o = &a->up;

        if (attach)
            check_name(a->name, argv, argc);
        else
            check_names(a, argv, argc);
        if (o->have_subnet)
            check_subnet(&o->subnet, AF_INET, 8, 30);
        if (o->v6)
            check_subnet(&o->subnet6, AF_INET6, 48, 126);
        CHECK(o->proxy_port != 0 && o->dns_port != 0 && o->proxy_port != o->dns_port);
        CHECK(attach == (o->iface != NULL));
        if (o->iface) {
            CHECK(from_argv(o->iface, argv, argc) || o->iface[-1] == '=');
            CHECK(strlen(o->iface) >= 1 && strlen(o->iface) < IFNAME_LEN);
            CHECK(!strchr(o->iface, '/'));
        }
    } else if (strcmp(cmd, "pod") == 0) {
        CHECK(!a->name);
        CHECK(a->pod.proxy_uid != 0 && a->pod.proxy_uid != 0xffffffffu);
        CHECK(a->pod.proxy_port && a->pod.dns_port && a->pod.metrics_port);
    } else if (strcmp(cmd, "down") == 0) {
        CHECK(a->down_pod == (!a->name && !a->from_file));
        if (!a->down_pod)
            check_names(a, argv, argc);
    } else if (strcmp(cmd, "forward") == 0 || strcmp(cmd, "unforward") == 0) {
        const struct forward *f = &a->forward;
        char key[FORWARD_KEY_LEN];

        check_name(a->name, argv, argc);
        CHECK(f->port != 0 && f->n_from <= FORWARD_FROM_MAX);
        CHECK(cmd[0] == 'u' ? f->to_port == 0 && f->n_from == 0
                            : f->to_port != 0 && f->proto != 0);
        CHECK(f->proto == 0 || f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP);
        for (size_t i = 0; i < f->n_from; i++)
            check_subnet(&f->from[i], AF_INET, 0, 32);
        forward_key(f, key);
        CHECK(strlen(key) < FORWARD_KEY_LEN && strchr(key, ':'));
    } else if (strcmp(cmd, "link") == 0 || strcmp(cmd, "unlink") == 0) {
        check_name(a->name, argv, argc);
        check_name(a->peer, argv, argc);
        CHECK(strcmp(a->name, a->peer) != 0);
        CHECK(cmd[0] == 'u' ? a->link.n_ports == 0
                            : a->link.n_ports >= 1 && a->link.n_ports <= LINK_PORTS_MAX);
        for (size_t i = 0; i < a->link.n_ports; i++) {
            CHECK(a->link.ports[i] != 0);
            for (size_t j = 0; j < i; j++)
                CHECK(a->link.ports[i] != a->link.ports[j]);
        }
    } else if (strcmp(cmd, "status") == 0) {
        if (a->name)
            check_name(a->name, argv, argc);
    } else {
        CHECK(strcmp(cmd, "verify") == 0);
        check_name(a->name, argv, argc);
    }
}

/* In "CMD: unknown option 'X'" and the like, where X starts; NULL for other messages. */
static const char *refused_option(const char *cmd, const char *err)
{
    static const char *const forms[] = {": unknown or incomplete option '",
                                        ": unknown option '"};
    size_t n = strlen(cmd), i;

    if (strncmp(err, cmd, n) != 0)
        return NULL;
    for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        if (strncmp(err + n, forms[i], strlen(forms[i])) == 0)
            return err + n + strlen(forms[i]);
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[NETSETUP_ERR_MAX], *buf, **argv, **orig;
    struct netsetup_args a;
    size_t i, start = 0;
    int argc = 0, r;

    if (size == 0)
        return 0;
    buf = malloc(size + 1);
    argv = calloc(ARGS_MAX + 1, sizeof(*argv));
    orig = calloc(ARGS_MAX + 1, sizeof(*orig));
    if (!buf || !argv || !orig)
        goto out;
    memcpy(buf, data, size);
    buf[size] = '\0';
    for (i = 0; i <= size && argc < ARGS_MAX; i++) {
        if (buf[i] != '\0')
            continue;
        argv[argc++] = buf + start;
        start = i + 1;
    }
    memcpy(orig, argv, (size_t)argc * sizeof(*argv));

    memset(err, 0x5a, sizeof(err));
    r = netsetup_args_parse(argv[0], argc, argv, &a, err);
    CHECK(r == 0 || r == -EINVAL || r == -ENOENT);
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    if (r == 0) {
        CHECK(err[0] == '\0');
        check_parsed(argv[0], &a, orig, argc);
    } else {
        const char *quoted = r == -EINVAL ? refused_option(argv[0], err) : NULL;

        CHECK(err[0] != '\0');
        /* A refused option is named as the user wrote it, not by a neighbour. */
        if (quoted)
            CHECK(quoted[0] == '-');
    }
    /* getopt may reorder ARGV, but never lose or invent an argument. */
    CHECK(argv[argc] == NULL);
    for (i = 0; i < (size_t)argc; i++)
        CHECK(from_argv(orig[i], argv, argc));
out:
    free(orig);
    free(argv);
    free(buf);
    return 0;
}
