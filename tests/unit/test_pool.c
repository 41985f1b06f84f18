/* The address pool and sandbox names: pure functions behind netsetup's choices. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "pool.h"
#include "sandbox_name.h"
#include "state.h"

static struct cidr C(const char *s)
{
    struct cidr c;

    assert_int_equal(cidr_parse(s, &c), CIDR_OK);
    return c;
}

static void assert_pick(const struct cidr *used, size_t n, const char *want)
{
    struct cidr pool = C(POOL_DEFAULT), got;
    char buf[CIDR_STRLEN];

    assert_int_equal(pool_pick(&pool, POOL_SLOT_LEN, used, n, &got), 0);
    cidr_format(&got, buf);
    assert_string_equal(buf, want);
}

static void test_pick(void **state)
{
    struct cidr used[4];

    (void)state;
    assert_pick(NULL, 0, "10.200.0.0/30");                  /* empty: first slot */
    used[0] = C("10.200.0.0/30");
    assert_pick(used, 1, "10.200.0.4/30");                  /* next slot */
    used[1] = C("10.200.0.8/29");                           /* a wider clash skips two */
    used[2] = C("10.200.0.4/30");
    assert_pick(used, 3, "10.200.0.16/30");
    used[0] = C("10.200.0.0/16");                           /* whole pool taken */
    {
        struct cidr pool = C(POOL_DEFAULT), got;

        assert_int_equal(pool_pick(&pool, POOL_SLOT_LEN, used, 1, &got), -ENOSPC);
    }
    used[0] = C("10.0.0.0/8");                              /* host address covering it */
    {
        struct cidr pool = C(POOL_DEFAULT), got;

        assert_int_equal(pool_pick(&pool, POOL_SLOT_LEN, used, 1, &got), -ENOSPC);
    }
    used[0] = C("10.200.0.2/32");                           /* a single address in slot 0 */
    assert_pick(used, 1, "10.200.0.4/30");
    used[0] = C("2001:db8::/32");                           /* other family: no clash */
    assert_pick(used, 1, "10.200.0.0/30");
}

static void test_overlaps(void **state)
{
    struct cidr a = C("10.0.0.0/8"), b = C("10.1.0.0/16"), c = C("11.0.0.0/8");
    struct cidr d = C("::/0");

    (void)state;
    assert_true(cidr_overlaps(&a, &b));
    assert_true(cidr_overlaps(&b, &a));
    assert_false(cidr_overlaps(&a, &c));
    assert_false(cidr_overlaps(&a, &d));
}

static void test_addresses(void **state)
{
    struct cidr net = C("10.200.0.4/30"), net6 = C("2001:db8:200::/64");
    char buf[INET6_ADDRSTRLEN];
    uint8_t a[16];

    (void)state;
    sandbox_gateway(&net, a);
    assert_string_equal(inet_ntop(AF_INET, a, buf, sizeof(buf)), "10.200.0.5");
    sandbox_address(&net, a);
    assert_string_equal(inet_ntop(AF_INET, a, buf, sizeof(buf)), "10.200.0.6");
    sandbox_gateway(&net6, a);
    assert_string_equal(inet_ntop(AF_INET6, a, buf, sizeof(buf)), "2001:db8:200::1");
}

static void test_names(void **state)
{
    static const struct {
        const char *name;
        bool valid;
    } rows[] = {
        {"a", true}, {"sandbox-01", true}, {"abcdefghijklmno", true},
        {"", false}, {"abcdefghijklmnop", false},   /* 16 characters */
        {"A1", false}, {"a_b", false}, {"a.b", false}, {"../x", false}, {"a b", false},
        {"a/b", false}, {"\xc3\xa4", false},
    };
    char ifname[IFNAME_LEN], other[IFNAME_LEN];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (sandbox_name_valid(rows[i].name) != rows[i].valid)
            fail_msg("'%s' should be %s", rows[i].name, rows[i].valid ? "valid" : "invalid");

    sandbox_host_ifname("a1", ifname);
    assert_string_equal(ifname, "sl-a1");
    sandbox_host_ifname("abcdefghijkl", ifname);            /* 12: still fits */
    assert_string_equal(ifname, "sl-abcdefghijkl");
    sandbox_host_ifname("abcdefghijklm", ifname);           /* 13: shortened with a hash */
    assert_int_equal(strlen(ifname), IFNAME_LEN - 1);
    assert_int_equal(strncmp(ifname, "sl-abcdefg", 10), 0);
    sandbox_host_ifname("abcdefghijklx", other);            /* same prefix, other name */
    assert_string_not_equal(ifname, other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_overlaps),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
