/* hostname_normalize: the rules every name in sluice goes through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hostname.h"

struct row {
    const char *in;
    size_t len;                 /* 0: strlen(in) */
    enum hostname_status want;
    const char *norm;           /* expected canonical form when valid */
    const char *why;
};

static const struct row rows[] = {
    {"pypi.org", 0, HOSTNAME_OK, "pypi.org", "plain name"},
    {"PyPI.ORG", 0, HOSTNAME_OK, "pypi.org", "case folds to lowercase"},
    {"pypi.org.", 0, HOSTNAME_OK, "pypi.org", "one trailing dot is the root"},
    {"pypi.org..", 0, HOSTNAME_LABEL_EMPTY, NULL, "two trailing dots leave an empty label"},
    {".pypi.org", 0, HOSTNAME_LABEL_EMPTY, NULL, "leading dot"},
    {"a..b", 0, HOSTNAME_LABEL_EMPTY, NULL, "empty label inside"},
    {"", 0, HOSTNAME_EMPTY, NULL, "empty"},
    {".", 0, HOSTNAME_EMPTY, NULL, "the root alone is no host"},
    {"localhost", 0, HOSTNAME_OK, "localhost", "single label is a valid name"},
    {"a-b.c-d.test", 0, HOSTNAME_OK, "a-b.c-d.test", "inner hyphens"},
    {"-a.test", 0, HOSTNAME_HYPHEN, NULL, "leading hyphen"},
    {"a-.test", 0, HOSTNAME_HYPHEN, NULL, "trailing hyphen"},
    {"xn--bcher-kva.test", 0, HOSTNAME_OK, "xn--bcher-kva.test", "A-label"},
    {"b\xc3\xbc" "cher.test", 0, HOSTNAME_NON_ASCII, NULL, "U-label (UTF-8)"},
    {"a_b.test", 0, HOSTNAME_BAD_CHAR, NULL, "underscore is not LDH"},
    {"a b.test", 0, HOSTNAME_BAD_CHAR, NULL, "space"},
    {"a\0b.test", 8, HOSTNAME_BAD_CHAR, NULL, "embedded NUL must not truncate"},
    {"a/b.test", 0, HOSTNAME_BAD_CHAR, NULL, "slash"},
    {"1.2.3.4", 0, HOSTNAME_IP_LITERAL, NULL, "dotted quad"},
    {"1.2.3.4.", 0, HOSTNAME_IP_LITERAL, NULL, "dotted quad with root dot"},
    {"127.1", 0, HOSTNAME_IP_LITERAL, NULL, "short form inet_aton takes"},
    {"2130706433", 0, HOSTNAME_IP_LITERAL, NULL, "integer form of 127.0.0.1"},
    {"0x7f.1", 0, HOSTNAME_IP_LITERAL, NULL, "hex form"},
    {"0x7f000001", 0, HOSTNAME_IP_LITERAL, NULL, "hex integer form"},
    {"0177.0.0.1", 0, HOSTNAME_IP_LITERAL, NULL, "octal form"},
    {"::1", 0, HOSTNAME_IP_LITERAL, NULL, "v6 loopback"},
    {"[::1]", 0, HOSTNAME_IP_LITERAL, NULL, "bracketed v6"},
    {"::ffff:1.2.3.4", 0, HOSTNAME_IP_LITERAL, NULL, "v4-mapped v6"},
    {"999.1.1.1", 0, HOSTNAME_IP_LITERAL, NULL, "numeric last label is never a TLD"},
    {"a.123", 0, HOSTNAME_IP_LITERAL, NULL, "numeric TLD"},
    {"123.test", 0, HOSTNAME_OK, "123.test", "numeric first label is fine"},
    {"0xdead.test", 0, HOSTNAME_OK, "0xdead.test", "hex-looking first label is a name"},
};

static void test_rows(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        char out[HOSTNAME_MAX + 1];
        size_t len = r->len ? r->len : strlen(r->in), olen = 0;
        enum hostname_status st = hostname_normalize((const uint8_t *)r->in, len, out, &olen);

        if (st != r->want)
            fail_msg("row %zu (%s): got %d want %d", i, r->why, st, r->want);
        if (r->norm) {
            assert_string_equal(out, r->norm);
            assert_int_equal(olen, strlen(r->norm));
        }
    }
}

static void test_lengths(void **state)
{
    char name[300], out[HOSTNAME_MAX + 1];
    size_t olen;

    (void)state;
    /* 63 is the longest label, 64 too long */
    memset(name, 'a', 63);
    memcpy(name + 63, ".test", 6);
    assert_int_equal(hostname_normalize((uint8_t *)name, 68, out, &olen), HOSTNAME_OK);
    memset(name, 'a', 64);
    memcpy(name + 64, ".test", 6);
    assert_int_equal(hostname_normalize((uint8_t *)name, 69, out, &olen),
                     HOSTNAME_LABEL_TOO_LONG);

    /* 253 bytes is the longest name, 254 too long; one more for a root dot is fine */
    for (size_t i = 0; i < 253; i++)
        name[i] = (i % 2) ? '.' : 'a';
    name[252] = 'a';
    assert_int_equal(hostname_normalize((uint8_t *)name, 253, out, &olen), HOSTNAME_OK);
    assert_int_equal(olen, 253);
    name[253] = '.';
    assert_int_equal(hostname_normalize((uint8_t *)name, 254, out, &olen), HOSTNAME_OK);
    name[253] = 'a';
    assert_int_equal(hostname_normalize((uint8_t *)name, 254, out, &olen), HOSTNAME_TOO_LONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_lengths),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
