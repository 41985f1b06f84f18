/* addr_is_special: the P5 table, one row per address with why it is (not) special. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "addr_class.h"

struct row {
    const char *addr;
    bool special;
    const char *why;
};

static const struct row rows[] = {
    /* IPv4 */
    {"8.8.8.8", false, "public resolver"},
    {"1.1.1.1", false, "public"},
    {"151.101.0.223", false, "public CDN (pypi)"},
    {"0.0.0.0", true, "unspecified"},
    {"0.1.2.3", true, "this network"},
    {"10.0.0.1", true, "RFC 1918 10/8"},
    {"10.255.255.255", true, "RFC 1918 top"},
    {"11.0.0.0", false, "just past 10/8"},
    {"100.64.0.1", true, "CGNAT bottom"},
    {"100.127.255.254", true, "CGNAT top"},
    {"100.128.0.1", false, "just past CGNAT"},
    {"100.63.255.255", false, "just before CGNAT"},
    {"100.100.100.200", true, "Alibaba metadata"},
    {"127.0.0.1", true, "loopback"},
    {"127.255.255.254", true, "loopback /8"},
    {"169.254.169.254", true, "cloud metadata"},
    {"169.254.170.2", true, "ECS task metadata"},
    {"169.254.1.1", true, "link-local"},
    {"168.63.129.16", true, "Azure platform endpoint (globally routable)"},
    {"168.63.129.17", false, "next to the Azure endpoint"},
    {"172.16.0.1", true, "RFC 1918 172.16/12"},
    {"172.31.255.255", true, "RFC 1918 172.16/12 top"},
    {"172.32.0.1", false, "just past 172.16/12"},
    {"172.15.255.255", false, "just before 172.16/12"},
    {"192.0.0.8", true, "IETF protocol assignments"},
    {"192.0.2.1", true, "TEST-NET-1"},
    {"192.88.99.1", true, "6to4 relay anycast"},
    {"192.168.1.1", true, "RFC 1918 192.168/16"},
    {"192.169.0.1", false, "just past 192.168/16"},
    {"198.18.0.1", true, "benchmarking"},
    {"198.19.255.255", true, "benchmarking /15 top"},
    {"198.20.0.1", false, "just past benchmarking"},
    {"198.51.100.7", true, "TEST-NET-2"},
    {"203.0.113.10", true, "TEST-NET-3"},
    {"224.0.0.1", true, "multicast"},
    {"239.255.255.250", true, "SSDP multicast"},
    {"240.0.0.1", true, "reserved"},
    {"255.255.255.255", true, "broadcast"},
    /* IPv6 */
    {"2606:4700::1111", false, "public"},
    {"2a04:4e42::223", false, "public CDN"},
    {"::", true, "unspecified"},
    {"::1", true, "loopback"},
    {"::ffff:127.0.0.1", true, "IPv4-mapped loopback"},
    {"::ffff:169.254.169.254", true, "IPv4-mapped metadata"},
    {"::ffff:10.1.2.3", true, "IPv4-mapped RFC 1918"},
    {"::ffff:8.8.8.8", false, "IPv4-mapped public"},
    {"::127.0.0.1", true, "IPv4-compatible loopback"},
    {"::8.8.8.8", false, "IPv4-compatible public"},
    {"64:ff9b::a9fe:a9fe", true, "NAT64 of 169.254.169.254"},
    {"64:ff9b::7f00:1", true, "NAT64 of 127.0.0.1"},
    {"64:ff9b::808:808", false, "NAT64 of 8.8.8.8"},
    {"64:ff9b:1::1", true, "local-use NAT64"},
    {"2002:7f00:1::1", true, "6to4 of 127.0.0.1"},
    {"2002:c0a8:101::1", true, "6to4 of 192.168.1.1"},
    {"2002:808:808::1", false, "6to4 of 8.8.8.8"},
    {"2001::1", true, "Teredo"},
    {"2001:0:4136:e378:8000:63bf:3fff:fdd2", true, "Teredo address"},
    {"2001:2::1", true, "benchmarking"},
    {"2001:db8::1", true, "documentation"},
    {"2001:db8:ffff::1", true, "documentation /32 top"},
    {"3fff::1", true, "documentation (2024)"},
    {"100::1", true, "discard-only"},
    {"5f00::1", true, "SRv6"},
    {"fc00::1", true, "ULA fc00::/7"},
    {"fd00:ec2::254", true, "AWS metadata"},
    {"fd12:3456::1", true, "ULA"},
    {"fe80::1", true, "link-local"},
    {"febf::1", true, "link-local /10 top"},
    {"fec0::1", true, "site-local"},
    {"ff02::1", true, "multicast"},
    {"2001:200::1", false, "just past 2001::/23"},
};

static void test_rows(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint8_t a[16];
        int family = strchr(rows[i].addr, ':') ? AF_INET6 : AF_INET;
        const char *what = NULL;

        assert_int_equal(inet_pton(family, rows[i].addr, a), 1);
        if (addr_is_special(family, a, &what) != rows[i].special)
            fail_msg("%s (%s): want %s", rows[i].addr, rows[i].why,
                     rows[i].special ? "special" : "public");
        if (rows[i].special)
            assert_non_null(what);
    }
}

static void test_names(void **state)
{
    uint8_t a[16];
    const char *what = NULL;

    (void)state;
    inet_pton(AF_INET, "169.254.169.254", a);
    assert_true(addr_is_special(AF_INET, a, &what));
    assert_string_equal(what, "cloud metadata");        /* the most specific name */
    inet_pton(AF_INET6, "::ffff:10.0.0.1", a);
    assert_true(addr_is_special(AF_INET6, a, &what));
    assert_string_equal(what, "private (RFC 1918)");
    assert_true(addr_is_special(AF_UNIX, a, NULL));      /* no family: never reachable */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
