/* cidr_parse and the prefix table: longest match first, whatever the size. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cidr.h"
#include "hostport.h"

struct parse_row {
    const char *in;
    enum cidr_status want;
    const char *canon;          /* cidr_format of the result (fixed form on HOST_BITS) */
};

static const struct parse_row parse_rows[] = {
    {"192.0.2.0/24", CIDR_OK, "192.0.2.0/24"},
    {"192.0.2.1", CIDR_OK, "192.0.2.1/32"},
    {"0.0.0.0/0", CIDR_OK, "0.0.0.0/0"},
    {"192.0.2.1/24", CIDR_HOST_BITS, "192.0.2.0/24"},
    {"192.0.2.0/33", CIDR_BAD_LENGTH, NULL},
    {"192.0.2.0/", CIDR_SYNTAX, NULL},
    {"192.0.2.0/-1", CIDR_SYNTAX, NULL},
    {"192.0.2.0/24x", CIDR_SYNTAX, NULL},
    {"192.0.2/24", CIDR_SYNTAX, NULL},
    {"example.org/24", CIDR_SYNTAX, NULL},
    {"", CIDR_SYNTAX, NULL},
    {"/8", CIDR_SYNTAX, NULL},
    {"2001:db8::/32", CIDR_OK, "2001:db8::/32"},
    {"2001:DB8::1", CIDR_OK, "2001:db8::1/128"},
    {"2001:db8::1/32", CIDR_HOST_BITS, "2001:db8::/32"},
    {"2001:db8::/129", CIDR_BAD_LENGTH, NULL},
    {"::/0", CIDR_OK, "::/0"},
    {"10.0.0.0/0009", CIDR_SYNTAX, NULL},
};

static void test_parse(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(parse_rows) / sizeof(parse_rows[0]); i++) {
        const struct parse_row *r = &parse_rows[i];
        char buf[CIDR_STRLEN];
        struct cidr c;
        enum cidr_status st = cidr_parse(r->in, &c);

        if (st != r->want)
            fail_msg("'%s': got %d want %d", r->in, st, r->want);
        if (r->canon) {
            cidr_format(&c, buf);
            assert_string_equal(buf, r->canon);
        }
    }
}

static void add(struct cidr_table *t, const char *s, int32_t v)
{
    struct cidr c;

    assert_int_equal(cidr_parse(s, &c), CIDR_OK);
    assert_int_equal(cidr_table_add(t, &c, v, NULL), 0);
}

static size_t match(struct cidr_table *t, const char *addr, int32_t *out, size_t max)
{
    uint8_t a[16];
    int family = strchr(addr, ':') ? AF_INET6 : AF_INET;

    assert_int_equal(inet_pton(family, addr, a), 1);
    return cidr_table_match(t, family, a, out, max);
}

static void test_table(void **state)
{
    struct cidr_table *t = cidr_table_new();
    int32_t v[8], existing = -1;
    struct cidr c;

    (void)state;
    add(t, "10.0.0.0/8", 1);
    add(t, "10.1.0.0/16", 2);
    add(t, "10.1.2.3/32", 3);
    add(t, "2001:db8::/32", 4);
    add(t, "::/0", 5);

    assert_int_equal(match(t, "10.1.2.3", v, 8), 3);
    assert_int_equal(v[0], 3);      /* longest first */
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 1);
    assert_int_equal(match(t, "10.2.0.1", v, 8), 1);
    assert_int_equal(v[0], 1);
    assert_int_equal(match(t, "11.0.0.1", v, 8), 0);
    assert_int_equal(match(t, "10.1.2.3", v, 1), 1);  /* max respected */
    assert_int_equal(v[0], 3);
    /* a v4 address never matches v6 prefixes, ::/0 included */
    assert_int_equal(match(t, "192.0.2.1", v, 8), 0);
    assert_int_equal(match(t, "2001:db8:1::1", v, 8), 2);
    assert_int_equal(v[0], 4);
    assert_int_equal(v[1], 5);
    assert_int_equal(match(t, "::ffff:10.1.2.3", v, 8), 1);  /* mapped form is v6 here */
    assert_int_equal(v[0], 5);

    assert_int_equal(cidr_parse("10.1.0.0/16", &c), CIDR_OK);
    assert_int_equal(cidr_table_add(t, &c, 9, &existing), -EEXIST);
    assert_int_equal(existing, 2);
    assert_int_equal(cidr_table_count(t), 5);
    cidr_table_free(t);
    cidr_table_free(NULL);
}

static void test_table_grows(void **state)
{
    struct cidr_table *t = cidr_table_new();
    char buf[32];
    int32_t v[4];
    int i;

    (void)state;
    for (i = 0; i < 5000; i++) {
        snprintf(buf, sizeof(buf), "10.%d.%d.0/24", i / 256, i % 256);
        add(t, buf, i);
    }
    for (i = 0; i < 5000; i += 97) {
        snprintf(buf, sizeof(buf), "10.%d.%d.77", i / 256, i % 256);
        assert_int_equal(match(t, buf, v, 4), 1);
        assert_int_equal(v[0], i);
    }
    cidr_table_free(t);
}

static void test_port_parse(void **state)
{
    static const struct {
        const char *s;
        int want;               /* -1: rejected */
    } rows[] = {
        {"1", 1}, {"443", 443}, {"65535", 65535}, {"00080", 80},
        {"0", -1}, {"65536", -1}, {"", -1}, {"+80", -1}, {" 80", -1}, {"80 ", -1},
        {"-1", -1}, {"123456", -1}, {"8o", -1}, {"0x50", -1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint16_t p = 0;
        bool ok = port_parse(rows[i].s, &p);

        if (ok != (rows[i].want >= 0) || (ok && p != rows[i].want))
            fail_msg("'%s': got %s %u", rows[i].s, ok ? "ok" : "rejected", p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_table_grows),
        cmocka_unit_test(test_port_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
