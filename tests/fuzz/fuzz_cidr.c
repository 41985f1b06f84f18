/*
 * Fuzz target for cidr_parse and port_parse, the parsers behind policy 'cidr'
 * rules and sluice-netsetup's --subnet, --ipv6 and port options. The input is
 * NUL-separated strings; each is parsed both ways and checked against what
 * the parsers promise, and the CIDRs that parse go into one prefix table
 * whose lookups must find each of them again, longest prefix first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cidr.h"
#include "hostport.h"
#include "fuzz.h"

#define TOKENS_MAX 64           /* strings per input that go into the table */


static unsigned bits_of(const struct cidr *c)
{
    return c->family == AF_INET ? 32 : 128;
}

/* True when every bit of C's address past its prefix length is zero. */
static bool host_bits_clear(const struct cidr *c)
{
    unsigned i;

    for (i = c->len; i < bits_of(c); i++) {
        if (c->addr[i / 8] & (0x80 >> (i % 8)))
            return false;
    }
    return true;
}

static bool same(const struct cidr *a, const struct cidr *b)
{
    return a->family == b->family && a->len == b->len &&
           memcmp(a->addr, b->addr, bits_of(a) / 8) == 0;
}

/* A port: the reference reading of "1-5 digits, 1-65535, nothing else". */
static void check_port(const char *s)
{
    uint16_t got = 0;
    size_t n = strlen(s), i;
    unsigned long v = 0;
    bool digits = n >= 1 && n <= 5, ok;

    for (i = 0; digits && i < n; i++) {
        digits = s[i] >= '0' && s[i] <= '9';
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    ok = digits && v >= 1 && v <= 65535;
    CHECK(port_parse(s, &got) == ok);
    if (ok)
        CHECK(got == v);
}

/*
 * Checks one string against cidr_parse's contract and returns its status;
 * *OUT is the prefix (fixed on CIDR_HOST_BITS).
 */
static enum cidr_status check_cidr(const char *s, struct cidr *out)
{
    enum cidr_status st = cidr_parse(s, out);
    const char *slash = strchr(s, '/');
    char text[CIDR_STRLEN], addr_only[CIDR_STRLEN + 8];
    struct cidr again, host;
    size_t alen;

    CHECK(st == CIDR_OK || st == CIDR_SYNTAX || st == CIDR_BAD_LENGTH ||
          st == CIDR_HOST_BITS);
    if (st == CIDR_SYNTAX)
        return st;
    CHECK(out->family == AF_INET || out->family == AF_INET6);
    if (st == CIDR_BAD_LENGTH) {
        CHECK(slash != NULL);
        return st;
    }
    CHECK(out->len <= bits_of(out));
    CHECK(host_bits_clear(out));
    CHECK(slash != NULL || out->len == bits_of(out));
    CHECK(cidr_host_bits(out) == bits_of(out) - out->len);
    CHECK(cidr_contains(out, out->family, out->addr));
    CHECK(!cidr_contains(out, out->family == AF_INET ? AF_INET6 : AF_INET, out->addr));

    /* The canonical form parses back to the same prefix, with no host bits. */
    cidr_format(out, text);
    CHECK(strlen(text) < CIDR_STRLEN - 1);
    CHECK(cidr_parse(text, &again) == CIDR_OK);
    CHECK(same(out, &again));

    /*
     * The address alone is a full-length prefix; masked to the length, it is
     * *OUT, and it differs from *OUT exactly when the status says host bits.
     */
    alen = slash ? (size_t)(slash - s) : strlen(s);
    CHECK(alen < sizeof(addr_only));
    memcpy(addr_only, s, alen);
    addr_only[alen] = '\0';
    CHECK(cidr_parse(addr_only, &host) == CIDR_OK);
    CHECK(host.family == out->family && host.len == bits_of(out));
    CHECK(cidr_contains(out, host.family, host.addr));
    CHECK((st == CIDR_HOST_BITS) == (memcmp(host.addr, out->addr, bits_of(out) / 8) != 0));
    return st;
}

/* Every prefix in the table is found from its own address, longest first. */
static void check_table(const struct cidr *c, size_t n)
{
    struct cidr_table *t = cidr_table_new();
    int32_t values[TOKENS_MAX], existing;
    size_t i, j, added = 0, got;
    int r;

    if (!t)
        return;
    for (i = 0; i < n; i++) {
        r = cidr_table_add(t, &c[i], (int32_t)i, &existing);
        if (r == -ENOMEM)
            goto out;
        if (r == -EEXIST) {
            CHECK(existing >= 0 && (size_t)existing < i && same(&c[existing], &c[i]));
            continue;
        }
        CHECK(r == 0);
        added++;
    }
    CHECK(cidr_table_count(t) == added);
    for (i = 0; i < n; i++) {
        bool self = false;

        got = cidr_table_match(t, c[i].family, c[i].addr, values, TOKENS_MAX);
        CHECK(got >= 1 && got <= added);
        for (j = 0; j < got; j++) {
            const struct cidr *m;

            CHECK(values[j] >= 0 && (size_t)values[j] < n);
            m = &c[values[j]];
            CHECK(cidr_contains(m, c[i].family, c[i].addr));
            if (j > 0)
                CHECK(m->len < c[values[j - 1]].len);
            self |= same(m, &c[i]);
        }
        CHECK(self);
    }
out:
    cidr_table_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cidr prefixes[TOKENS_MAX];
    size_t n = 0, start = 0, i;
    char *buf = malloc(size + 1);

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    /* Each NUL ends a string; the copy's final NUL ends the last one. */
    for (i = 0; i <= size; i++) {
        enum cidr_status st;
        struct cidr c;

        if (buf[i] != '\0')
            continue;
        check_port(buf + start);
        st = check_cidr(buf + start, &c);
        if ((st == CIDR_OK || st == CIDR_HOST_BITS) && n < TOKENS_MAX)
            prefixes[n++] = c;
        start = i + 1;
    }
    check_table(prefixes, n);
    free(buf);
    return 0;
}
