/* dns_query_parse and dns_build_response, with messages built by hand. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "dns_msg.h"

/* A query for NAME (dotted) of TYPE, optionally with an OPT record. */
static size_t query(uint8_t *out, const char *name, uint16_t type, bool edns)
{
    size_t off = 12;
    const char *p = name;

    memset(out, 0, 12);
    out[0] = 0x12;
    out[1] = 0x34;
    out[2] = 0x01;                  /* RD */
    out[5] = 1;                     /* QDCOUNT */
    out[11] = edns;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);

        out[off++] = (uint8_t)l;
        memcpy(out + off, p, l);
        off += l;
        p += l + (dot != NULL);
    }
    out[off++] = 0;
    out[off++] = (uint8_t)(type >> 8);
    out[off++] = (uint8_t)type;
    out[off++] = 0;
    out[off++] = 1;
    if (edns) {
        static const uint8_t opt[11] = {0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0};

        memcpy(out + off, opt, 11);
        off += 11;
    }
    return off;
}

static void test_parse(void **state)
{
    uint8_t m[600];
    struct dns_query q;
    size_t n;

    (void)state;
    n = query(m, "WWW.Example.test", DNS_TYPE_A, false);
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_OK);
    assert_string_equal(q.qname, "www.example.test");
    assert_true(q.qname_valid);
    assert_int_equal(q.qtype, DNS_TYPE_A);
    assert_int_equal(q.id, 0x1234);
    assert_false(q.edns);
    assert_int_equal(q.edns_size, 512);
    assert_memory_equal(q.qname_wire, "\x03WWW\x07" "Example\x04test", 18);  /* case kept */

    n = query(m, "a.test", DNS_TYPE_AAAA, true);
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_OK);
    assert_true(q.edns);
    assert_int_equal(q.edns_size, 4096);

    n = query(m, "a_b.test", DNS_TYPE_TXT, false);          /* not a hostname: flagged */
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_OK);
    assert_false(q.qname_valid);

    n = query(m, "x", DNS_TYPE_A, false);                   /* a dot inside a label */
    m[12] = 8;
    memcpy(m + 13, "pypi.org", 8);
    m[21] = 0;
    m[22] = 0;
    m[23] = 1;
    m[24] = 0;
    m[25] = 1;
    assert_int_equal(dns_query_parse(m, 26, &q), DNS_PARSE_OK);
    assert_false(q.qname_valid);
}

static void test_malformed(void **state)
{
    uint8_t m[600] = {0};
    struct dns_query q;
    size_t n;

    (void)state;
    assert_int_equal(dns_query_parse(m, 11, &q), DNS_PARSE_DROP);      /* no header */
    n = query(m, "a.test", DNS_TYPE_A, false);
    m[2] |= 0x80;                                                    /* a response */
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_DROP);
    n = query(m, "a.test", DNS_TYPE_A, false);
    m[2] |= 0x10;                                                    /* opcode 2 */
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_NOTIMP);
    n = query(m, "a.test", DNS_TYPE_A, false);
    m[5] = 2;                                                        /* two questions */
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_FORMERR);
    n = query(m, "a.test", DNS_TYPE_A, false);
    m[5] = 0;                                                        /* none */
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_FORMERR);
    n = query(m, "a.test", DNS_TYPE_A, false);
    assert_int_equal(dns_query_parse(m, n - 1, &q), DNS_PARSE_FORMERR);  /* truncated */
    assert_int_equal(dns_query_parse(m, n + 1, &q), DNS_PARSE_FORMERR);  /* trailing byte */
    n = query(m, "a.test", DNS_TYPE_A, false);
    m[12] = 0xc0;                                                    /* pointer to itself */
    m[13] = 12;
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_FORMERR);
    m[13] = 20;                                                      /* forward pointer */
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_FORMERR);
    m[12] = 0x40;                                                    /* extended label */
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_FORMERR);
    {   /* 128 labels of 1: a name longer than 255 bytes on the wire */
        uint8_t big[600] = {0x12, 0x34, 0, 0, 0, 1};
        size_t i, off = 12;

        for (i = 0; i < 128; i++) {
            big[off++] = 1;
            big[off++] = 'a';
        }
        big[off++] = 0;
        off += 4;
        assert_int_equal(dns_query_parse(big, off, &q), DNS_PARSE_FORMERR);
    }
}

static void test_build(void **state)
{
    uint8_t m[600], r[DNS_EDNS_MAX];
    struct dns_query q;
    struct dns_answer a[40];
    size_t n, i, len;

    (void)state;
    n = query(m, "Www.example.test", DNS_TYPE_A, true);
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_OK);
    a[0].type = DNS_TYPE_A;
    a[0].ttl = 60;
    inet_pton(AF_INET, "203.0.113.10", a[0].addr);
    len = dns_build_response(r, sizeof(r), DNS_EDNS_MAX, &q, DNS_RCODE_NOERROR, a, 1, NULL);
    assert_int_equal(len, n + 16);                  /* the query, plus one A record */
    assert_int_equal(r[2] & 0x80, 0x80);            /* QR */
    assert_int_equal(r[2] & 0x01, 0x01);            /* RD echoed */
    assert_int_equal(r[7], 1);                      /* ANCOUNT */
    assert_int_equal(r[11], 1);                     /* our OPT */
    assert_memory_equal(r + 12, m + 12, 18);        /* the question as asked, case kept */

    for (i = 0; i < 40; i++)                        /* more than 512 bytes of answers */
        a[i] = a[0];
    q.edns = false;
    len = dns_build_response(r, sizeof(r), DNS_UDP_MAX, &q, DNS_RCODE_NOERROR, a, 40, NULL);
    assert_true(len <= DNS_UDP_MAX);
    assert_int_equal(r[2] & 0x02, 0x02);            /* TC: retry over TCP */
    assert_true(r[7] < 40);

    len = dns_build_response(r, sizeof(r), DNS_EDNS_MAX, &q, DNS_RCODE_NXDOMAIN, NULL, 0,
                             &(struct dns_ede){DNS_EDE_BLOCKED, "x"});
    assert_int_equal(r[3] & 0x0f, DNS_RCODE_NXDOMAIN);
    assert_int_equal(r[7], 0);
    assert_int_equal(len, n - 11);                  /* without EDNS: no OPT, so no EDE */
}

/* An Extended DNS Error rides in the OPT record of a query that had EDNS. */
static void test_ede(void **state)
{
    static const char why[] = "sluice: not_allowlisted (policy 84c7041f8ff5)";
    uint8_t m[600], r[DNS_EDNS_MAX];
    struct dns_query q;
    struct dns_ede e = {DNS_EDE_BLOCKED, why};
    size_t n, len, opt;
    char long_text[DNS_EDE_TEXT_MAX + 50];

    (void)state;
    n = query(m, "exfil.example.test", DNS_TYPE_A, true);
    assert_int_equal(dns_query_parse(m, n, &q), DNS_PARSE_OK);
    len = dns_build_response(r, sizeof(r), DNS_EDNS_MAX, &q, DNS_RCODE_NXDOMAIN, NULL, 0, &e);
    opt = len - 11 - 6 - (sizeof(why) - 1);        /* where the OPT record starts */
    assert_int_equal(r[11], 1);                     /* ARCOUNT: the OPT */
    assert_int_equal(r[opt], 0);                    /* root */
    assert_int_equal(r[opt + 1] << 8 | r[opt + 2], DNS_TYPE_OPT);
    assert_int_equal(r[opt + 9] << 8 | r[opt + 10], 6 + sizeof(why) - 1);   /* RDLENGTH */
    assert_int_equal(r[opt + 11] << 8 | r[opt + 12], 15);                   /* EDE */
    assert_int_equal(r[opt + 13] << 8 | r[opt + 14], 2 + sizeof(why) - 1);
    assert_int_equal(r[opt + 15] << 8 | r[opt + 16], DNS_EDE_BLOCKED);
    assert_memory_equal(r + opt + 17, why, sizeof(why) - 1);
    /* a long text is cut, and a response limit the EDE does not fit in is refused
     * whole rather than sent without its OPT */
    memset(long_text, 'a', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    e.text = long_text;
    len = dns_build_response(r, sizeof(r), DNS_EDNS_MAX, &q, DNS_RCODE_NXDOMAIN, NULL, 0, &e);
    assert_int_equal(r[len - DNS_EDE_TEXT_MAX - 1], DNS_EDE_BLOCKED);   /* its code's low byte */
    assert_int_equal(r[len - 1], 'a');
    assert_int_equal(dns_build_response(r, sizeof(r), n, &q, DNS_RCODE_NXDOMAIN, NULL, 0, &e),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_build),
        cmocka_unit_test(test_ede),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
