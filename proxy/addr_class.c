/*
 * The special-purpose table. It is a short fixed list, so a scan of it costs
 * the same for every lookup; ranges that are globally reachable in the IANA
 * registry but are metadata or platform endpoints are listed on purpose.
 */
#include "addr_class.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include "cidr.h"

struct range {
    const char *cidr;
    const char *what;
};

/* Most specific first where ranges nest, so the name says the most. */
static const struct range ranges4[] = {
    {"169.254.169.254/32", "cloud metadata"},
    {"169.254.170.2/32", "cloud metadata (ECS task)"},
    {"100.100.100.200/32", "cloud metadata (Alibaba)"},
    {"168.63.129.16/32", "cloud platform endpoint (Azure)"},
    {"0.0.0.0/8", "this network"},
    {"10.0.0.0/8", "private (RFC 1918)"},
    {"100.64.0.0/10", "shared address space (CGNAT)"},
    {"127.0.0.0/8", "loopback"},
    {"169.254.0.0/16", "link-local"},
    {"172.16.0.0/12", "private (RFC 1918)"},
    {"192.0.0.0/24", "IETF protocol assignments"},
    {"192.0.2.0/24", "documentation (TEST-NET-1)"},
    {"192.88.99.0/24", "6to4 relay anycast (deprecated)"},
    {"192.168.0.0/16", "private (RFC 1918)"},
    {"198.18.0.0/15", "benchmarking"},
    {"198.51.100.0/24", "documentation (TEST-NET-2)"},
    {"203.0.113.0/24", "documentation (TEST-NET-3)"},
    {"224.0.0.0/4", "multicast"},
    {"240.0.0.0/4", "reserved"},
};

static const struct range ranges6[] = {
    {"fd00:ec2::254/128", "cloud metadata (AWS)"},
    {"::/128", "unspecified"},
    {"::1/128", "loopback"},
    {"64:ff9b:1::/48", "local-use NAT64"},
    {"100::/64", "discard-only"},
    {"2001::/23", "IETF protocol assignments (Teredo, benchmarking, ORCHID)"},
    {"2001:db8::/32", "documentation"},
    {"3fff::/20", "documentation"},
    {"5f00::/16", "segment routing (SRv6)"},
    {"fc00::/7", "unique local"},
    {"fe80::/10", "link-local"},
    {"fec0::/10", "site-local (deprecated)"},
    {"ff00::/8", "multicast"},
};

#define N4 (sizeof(ranges4) / sizeof(ranges4[0]))
#define N6 (sizeof(ranges6) / sizeof(ranges6[0]))

/* The tables in binary form, parsed once (the proxy is one thread). */
static struct cidr parsed4[N4], parsed6[N6];
static bool parsed;

static void parse_tables(void)
{
    size_t i;

    for (i = 0; i < N4; i++)
        cidr_parse(ranges4[i].cidr, &parsed4[i]);
    for (i = 0; i < N6; i++)
        cidr_parse(ranges6[i].cidr, &parsed6[i]);
    parsed = true;
}

static bool in_table(const struct range *t, const struct cidr *c, size_t n, int family,
                     const uint8_t *addr, const char **what)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (cidr_contains(&c[i], family, addr)) {
            if (what)
                *what = t[i].what;
            return true;
        }
    }
    return false;
}

/* The IPv4 address an IPv6 address stands for, if it is one of the embedding forms. */
static bool embedded_v4(const uint8_t *a, uint8_t out[4])
{
    static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
    static const uint8_t compat[12] = {0};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};

    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 ||
        (memcmp(a, compat, 12) == 0 && (a[12] | a[13] | a[14]) != 0)) {
        memcpy(out, a + 12, 4);         /* ::a.b.c.d, but not :: and ::1 themselves */
        return true;
    }
    if (a[0] == 0x20 && a[1] == 0x02) { /* 6to4: 2002:AABB:CCDD::/48 */
        memcpy(out, a + 2, 4);
        return true;
    }
    return false;
}

bool addr_is_special(int family, const uint8_t *addr, const char **what)
{
    uint8_t v4[4];

    if (!parsed)
        parse_tables();
    if (family == AF_INET)
        return in_table(ranges4, parsed4, N4, AF_INET, addr, what);
    if (family != AF_INET6) {
        if (what)
            *what = "unknown address family";
        return true;
    }
    if (embedded_v4(addr, v4))
        return addr_is_special(AF_INET, v4, what);
    return in_table(ranges6, parsed6, N6, AF_INET6, addr, what);
}
