/*
 * route_is_local(): the kernel's answer for addresses whose locality is
 * known in any namespace (loopback, an address of one of this machine's own
 * interfaces, a documentation address nobody routes to us), and the IPv4-mapped
 * form asked as IPv4; the same answers again from what the probe keeps, and
 * after a change announcement made it forget. Read-only lookups: nothing is
 * changed anywhere (tests/integration/test_revocation.py changes an address
 * in a namespace of its own and sees the kept answer forgotten).
 */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "route.h"

static int ask(struct route_probe *rp, const char *text)
{
    uint8_t a[16];
    int family = strchr(text, ':') ? AF_INET6 : AF_INET;

    assert_int_equal(inet_pton(family, text, a), 1);
    return route_is_local(rp, family, a);
}

static void test_known_addresses(void **state)
{
    static const struct {
        const char *addr;
        int local;
        const char *why;
    } rows[] = {
        {"127.0.0.1", 1, "loopback"},
        {"127.1.2.3", 1, "all of 127/8 is local"},
        {"::ffff:127.0.0.1", 1, "IPv4-mapped: asked as IPv4"},
        {"192.0.2.77", 0, "TEST-NET-1: routed elsewhere or nowhere, never ours"},
        {"::ffff:192.0.2.77", 0, "the same, mapped"},
    };
    struct route_probe *rp;
    size_t i;
    int pass;

    (void)state;
    assert_int_equal(route_probe_open(&rp), 0);
    assert_true(route_probe_watch_fd(rp) >= 0);     /* answers are kept */
    for (pass = 0; pass < 3; pass++) {  /* asked, kept, forgotten and asked again */
        for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            int got = ask(rp, rows[i].addr);

            if (got != rows[i].local)
                fail_msg("pass %d: %s (%s): got %d", pass, rows[i].addr, rows[i].why, got);
        }
        if (pass == 1)
            route_probe_changed(rp);
    }
    route_probe_free(rp);
}

/* Every address on this machine's interfaces is its own, whatever its range. */
static void test_interface_addresses(void **state)
{
    struct ifaddrs *ifs, *i;
    struct route_probe *rp;
    size_t seen = 0;

    (void)state;
    assert_int_equal(route_probe_open(&rp), 0);
    assert_int_equal(getifaddrs(&ifs), 0);
    for (i = ifs; i; i = i->ifa_next) {
        const struct sockaddr *sa = i->ifa_addr;
        const uint8_t *a;
        int got;

        if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
            continue;
        a = sa->sa_family == AF_INET
                ? (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr
                : (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (sa->sa_family == AF_INET6 && a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
            continue;                   /* link-local: needs a scope to be looked up */
        got = route_is_local(rp, sa->sa_family, a);
        if (got != 1)
            fail_msg("%s: own address not local (%d)", i->ifa_name, got);
        seen++;
    }
    freeifaddrs(ifs);
    assert_true(seen >= 1);             /* at least 127.0.0.1 */
    route_probe_free(rp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_addresses),
        cmocka_unit_test(test_interface_addresses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
