/* netsetup_args_parse: sluice-netsetup's command line, parsed without running anything. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "args.h"

#define ARGV_MAX 12

struct row {
    const char *argv[ARGV_MAX];     /* command word first, NULL-terminated */
    int want;                       /* 0, -EINVAL or -ENOENT */
    const char *msg;                /* the whole message on error */
};

static const struct row rows[] = {
    /* Accepted: the forms the README and the integration tests use. */
    {{"up", "a1"}, 0, NULL},
    {{"up", "a1", "--subnet", "10.201.0.0/30", "--ipv6", "fd00:5c::/64", "--json"}, 0, NULL},
    {{"up", "--proxy-port=16001", "a1", "--dns-port", "16053"}, 0, NULL},    /* permuted */
    {{"up", "--", "a1"}, 0, NULL},
    {{"up", "a1", "--isolated", "--json"}, 0, NULL},
    {{"attach", "vm-7", "--iface", "tap0"}, 0, NULL},
    {{"pod", "--proxy-uid", "4294967294", "--metrics-port", "9"}, 0, NULL},
    {{"down", "--pod"}, 0, NULL},
    {{"down", "a1"}, 0, NULL},
    {{"status"}, 0, NULL},
    {{"status", "--json", "a1"}, 0, NULL},
    {{"verify", "a1"}, 0, NULL},
    {{"verify", "--pod"}, 0, NULL},
    {{"up", "a1", "a2", "a3", "--isolated"}, 0, NULL},                 /* many: each its own */
    {{"up", "a1", "Bad", "a3"}, 0, NULL},               /* ... so Bad fails alone, later */
    {{"up", "--from-file", "-", "--json"}, 0, NULL},
    {{"down", "a1", "a2", "--json"}, 0, NULL},
    {{"down", "--from-file", "/tmp/x"}, 0, NULL},
    {{"forward", "a1", "8080", "80"}, 0, NULL},
    {{"forward", "a1", "192.0.2.1:53", "53", "--udp", "--from", "10.0.0.0/8,192.0.2.0/24",
      "--from", "198.51.100.7/32"}, 0, NULL},
    {{"unforward", "a1", "127.0.0.1:8080"}, 0, NULL},
    {{"unforward", "a1", "8080", "--tcp"}, 0, NULL},
    {{"link", "a1", "b2", "--ports", "80,443,5432"}, 0, NULL},
    {{"unlink", "a1", "b2"}, 0, NULL},
    /* Refused, with the message main() prints after "sluice-netsetup: ". */
    {{"up", "a1", "--isolated", "--subnet", "10.201.0.0/30"}, -EINVAL,
     "--isolated has no network: it takes no --subnet, --ipv6, --ca, ports or --max-conntrack"},
    {{"up", "a1", "--isolated", "--dns-port", "53"}, -EINVAL,
     "--isolated has no network: it takes no --subnet, --ipv6, --ca, ports or --max-conntrack"},
    {{"attach", "vm-7", "--iface", "tap0", "--isolated"}, -EINVAL,
     "--isolated belongs to up (attach adopts an interface)"},
    {{"up", "a1", "--subnet", "10.0.0.0/31"}, -EINVAL,
     "--subnet '10.0.0.0/31' is not an IPv4 network from /8 to /30 (e.g. 10.201.0.0/30)"},
    {{"up", "a1", "--subnet", "10.0.0.1/30"}, -EINVAL,         /* host bits */
     "--subnet '10.0.0.1/30' is not an IPv4 network from /8 to /30 (e.g. 10.201.0.0/30)"},
    {{"up", "a1", "--ipv6", "2001:db8::/40"}, -EINVAL,
     "--ipv6 '2001:db8::/40' is not an IPv6 network from /48 to /126 (e.g. fd00:5c::/64)"},
    {{"up", "a1", "--dns-port", "65536"}, -EINVAL, "--dns-port '65536' is not a port (1-65535)"},
    {{"up", "a1", "--proxy-port", "16000", "--dns-port", "16000"}, -EINVAL,
     "--proxy-port and --dns-port must differ"},
    {{"up", "a1", "--iface", "tap0"}, -EINVAL, "--iface belongs to attach"},
    {{"up", "a1", "--bogus"}, -EINVAL, "up: unknown or incomplete option '--bogus'"},
    {{"up", "a1", "--subnet"}, -EINVAL, "up: unknown or incomplete option '--subnet'"},
    {{"up", "a1", "--json=1"}, -EINVAL, "up: unknown or incomplete option '--json=1'"},
    {{"pod", "--proxy", "1"}, -EINVAL,                       /* ambiguous */
     "pod: unknown or incomplete option '--proxy'"},
    /* Short options: a cluster used to be named by its neighbour ('a1'); found by fuzzing. */
    {{"up", "a1", "-xy"}, -EINVAL, "up: unknown option '-x'"},
    {{"up", "-own", "n"}, -EINVAL, "up: unknown option '-o'"},
    {{"up", "a1", "-x"}, -EINVAL, "up: unknown option '-x'"},
    {{"pod", "-jx"}, -EINVAL, "pod: unknown option '-j'"},
    {{"pod", "-\xe9"}, -EINVAL, "pod: unknown option '-\xe9'"},
    {{"up"}, -EINVAL, "up takes a NAME (or several, or --from-file FILE)"},
    {{"up", "a1", "a2", "--subnet", "10.201.0.0/30"}, -EINVAL,
     "--subnet and --ipv6 name one sandbox's networks: give them per line with --from-file"},
    {{"up", "a1", "--from-file", "-"}, -EINVAL,
     "up --from-file takes its NAMEs from the file, not the command line"},
    {{"attach", "vm-7", "vm-8", "--iface", "tap0"}, -EINVAL, "attach takes exactly one NAME"},
    {{"up", "a_b"}, -EINVAL, "NAME 'a_b' must be 1-15 characters of [a-z0-9-]"},
    {{"attach", "vm-7"}, -EINVAL, "attach needs --iface IFACE"},
    {{"attach", "vm-7", "--iface", "aaaaaaaaaaaaaaaa"}, -EINVAL,
     "--iface 'aaaaaaaaaaaaaaaa' is not an interface name"},
    {{"pod", "--proxy-uid", "0"}, -EINVAL, "--proxy-uid 0 would exempt root from interception"},
    {{"pod", "--proxy-uid", "4294967295"}, -EINVAL, "--proxy-uid '4294967295' is not a UID"},
    {{"pod", "--proxy-uid", "+1"}, -EINVAL, "--proxy-uid '+1' is not a UID"},
    {{"pod", "extra"}, -EINVAL, "pod takes no NAME: it works on the namespace it runs in"},
    {{"down"}, -EINVAL, "down takes a NAME (or several, or --from-file FILE), or --pod"},
    {{"down", "--bogus"}, -EINVAL, "down: unknown or incomplete option '--bogus'"},
    {{"down", "--pod", "a1"}, -EINVAL, "down --pod takes nothing else"},
    {{"forward", "a1", "8080"}, -EINVAL, "forward takes NAME [ADDR:]PORT SANDBOX_PORT"},
    {{"forward", "a1", "::1:8080", "80"}, -EINVAL,
     "'::1:8080' is not [ADDR:]PORT with an IPv4 ADDR and a port 1-65535 (e.g. 8080 or "
     "127.0.0.1:8080)"},
    {{"forward", "a1", "8080", "0"}, -EINVAL, "SANDBOX_PORT '0' is not a port (1-65535)"},
    {{"forward", "a1", "8080", "80", "--tcp", "--udp"}, -EINVAL,
     "forward: --tcp and --udp exclude each other"},
    {{"forward", "a1", "8080", "80", "--from", "2001:db8::/32"}, -EINVAL,
     "--from '2001:db8::/32' is not an IPv4 network (e.g. 192.0.2.0/24)"},
    {{"unforward", "a1", "8080", "--from", "10.0.0.0/8"}, -EINVAL,
     "unforward takes no --from: it removes the whole forward"},
    {{"link", "a1", "b2"}, -EINVAL,
     "link needs --ports P[,P...]: the ports of NAME2 that NAME1 may open"},
    {{"link", "a1", "a1", "--ports", "80"}, -EINVAL, "link: a sandbox cannot be linked to itself"},
    {{"link", "a1", "b2", "--ports", "80,80"}, -EINVAL,
     "--ports '80,80' is not 1 to 16 ports (1-65535) separated by commas, none twice"},
    {{"link", "a1", "b2", "--ports", "80,"}, -EINVAL,
     "--ports '80,' is not 1 to 16 ports (1-65535) separated by commas, none twice"},
    {{"unlink", "a1", "b2", "--ports", "80"}, -EINVAL,
     "unlink takes no --ports: it removes the whole link"},
    {{"down", ""}, -EINVAL, "NAME '' must be 1-15 characters of [a-z0-9-]"},
    {{"status", "a", "b"}, -EINVAL, "status takes at most one NAME"},
    {{"status", "-"}, -EINVAL, "status: unknown option '-'"},
    {{"verify", "a", "b"}, -EINVAL,
     "verify takes one NAME of 1-15 characters of [a-z0-9-], or --pod"},
    {{"frobnicate"}, -ENOENT, "unknown command 'frobnicate'"},
};

/* Parses ROW's argv from a fresh copy, as main() would from its own. */
static int parse(const char *const *words, struct netsetup_args *a, char err[NETSETUP_ERR_MAX],
                 char store[ARGV_MAX][64], char *argv[ARGV_MAX + 1])
{
    int argc = 0;

    while (argc < ARGV_MAX && words[argc]) {
        snprintf(store[argc], 64, "%s", words[argc]);
        argv[argc] = store[argc];
        argc++;
    }
    argv[argc] = NULL;
    return netsetup_args_parse(argv[0], argc, argv, a, err);
}

static void test_table(void **state)
{
    char store[ARGV_MAX][64], *argv[ARGV_MAX + 1], err[NETSETUP_ERR_MAX];
    struct netsetup_args a;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        int got = parse(r->argv, &a, err, store, argv);

        if (got != r->want)
            fail_msg("row %zu (%s %s): got %d want %d: %s", i, r->argv[0],
                     r->argv[1] ? r->argv[1] : "", got, r->want, err);
        if (r->msg)
            assert_string_equal(err, r->msg);
        else
            assert_string_equal(err, "");
    }
}

static void test_up_fields(void **state)
{
    static const char *const words[] = {"up", "--json", "a1", "--subnet", "10.201.0.0/30",
                                        "--ipv6=fd00:5c::/64", "--proxy-port", "1", NULL};
    char store[ARGV_MAX][64], *argv[ARGV_MAX + 1], err[NETSETUP_ERR_MAX], buf[CIDR_STRLEN];
    struct netsetup_args a;

    (void)state;
    assert_int_equal(parse(words, &a, err, store, argv), 0);
    assert_string_equal(a.name, "a1");
    assert_true(a.json);
    assert_true(a.up.have_subnet && a.up.v6);
    cidr_format(&a.up.subnet, buf);
    assert_string_equal(buf, "10.201.0.0/30");
    cidr_format(&a.up.subnet6, buf);
    assert_string_equal(buf, "fd00:5c::/64");
    assert_int_equal(a.up.proxy_port, 1);
    assert_int_equal(a.up.dns_port, DEFAULT_DNS_PORT);
    assert_null(a.up.iface);
}

static void test_pod_defaults(void **state)
{
    static const char *const words[] = {"pod", NULL};
    char store[ARGV_MAX][64], *argv[ARGV_MAX + 1], err[NETSETUP_ERR_MAX];
    struct netsetup_args a;

    (void)state;
    assert_int_equal(parse(words, &a, err, store, argv), 0);
    assert_null(a.name);
    assert_false(a.json);
    assert_int_equal(a.pod.proxy_uid, DEFAULT_PROXY_UID);
    assert_int_equal(a.pod.proxy_port, DEFAULT_PROXY_PORT);
    assert_int_equal(a.pod.dns_port, DEFAULT_DNS_PORT);
    assert_int_equal(a.pod.metrics_port, DEFAULT_METRICS_PORT);
}

/*
 * A parse that stops inside a cluster of short options ("-xy") leaves glibc's
 * getopt pointing at "y" in that argv. Resetting with optind = 1 kept that
 * pointer, so the next parse read the old argv (a use after free when it was
 * gone) and refused a good command line; optind = 0 starts over.
 */
static void test_parse_after_short_cluster(void **state)
{
    static const char *const bad[] = {"up", "a1", "-xy", NULL};
    static const char *const good[] = {"up", "b2", NULL};
    char store[ARGV_MAX][64], *argv[ARGV_MAX + 1], err[NETSETUP_ERR_MAX];
    char store2[ARGV_MAX][64], *argv2[ARGV_MAX + 1];
    struct netsetup_args a;

    (void)state;
    assert_int_equal(parse(bad, &a, err, store, argv), -EINVAL);
    assert_int_equal(parse(good, &a, err, store2, argv2), 0);
    assert_string_equal(a.name, "b2");
}

/* A long argument is cut to fit the message buffer, never written past it. */
static void test_long_argument(void **state)
{
    static char arg[3 * NETSETUP_ERR_MAX];
    char *argv[] = {"up", "a1", "--subnet", arg, NULL}, err[NETSETUP_ERR_MAX];
    struct netsetup_args a;

    (void)state;
    memset(arg, '9', sizeof(arg) - 1);
    assert_int_equal(netsetup_args_parse("up", 4, argv, &a, err), -EINVAL);
    assert_int_equal(strlen(err), NETSETUP_ERR_MAX - 1);
    assert_memory_equal(err, "--subnet '999", 13);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_up_fields),
        cmocka_unit_test(test_pod_defaults),
        cmocka_unit_test(test_parse_after_short_cluster),
        cmocka_unit_test(test_long_argument),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
