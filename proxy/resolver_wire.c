/*
 * Reading what upstream servers answer, and writing the names the resolver
 * asks: pure functions over bytes. Only records on the CNAME chain from the
 * asked name are believed, and only hostname bytes pass.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "cursor.h"
#include "dns_msg.h"
#include "resolver_int.h"

#define CHAIN_MAX 8             /* CNAME links followed before the answer is refused */

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c | 0x20) : c;
}

static bool host_byte(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/*
 * NAME in dotted form (one trailing dot allowed) as lowercase wire labels.
 * Hostname bytes only: c-ares would read a backslash as an escape and send
 * another name than the one its answer is checked against.
 */
int resolver_name_to_wire(const char *name, uint8_t *wire, size_t *wlen)
{
    size_t len = strnlen(name, RESOLVER_NAME_MAX + 2), i = 0, n = 0;

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > RESOLVER_NAME_MAX || name[len - 1] == '.')
        return -EINVAL;
    while (i < len) {
        size_t j = i;

        while (j < len && name[j] != '.')
            j++;
        if (j == i || j - i > 63)
            return -EINVAL;
        wire[n++] = (uint8_t)(j - i);
        for (; i < j; i++) {
            wire[n] = lower((uint8_t)name[i]);
            if (!host_byte(wire[n++]))
                return -EINVAL;
        }
        i = j + 1;
    }
    wire[n++] = 0;
    *wlen = n;
    return 0;
}

/* The name at *OFF, lowercase (compared with the asked name byte for byte). */
static int name_read(const uint8_t *msg, size_t len, size_t *off, uint8_t *wire, size_t *wlen)
{
    size_t i;

    if (!dns_name_read(msg, len, off, wire, wlen))
        return -EBADMSG;
    for (i = 0; i < *wlen; i++)
        wire[i] = lower(wire[i]);
    return 0;
}

/*
 * WIRE as a dotted hostname into TEXT (RESOLVER_NAME_MAX + 1 bytes). Only
 * hostname bytes pass: a dot or a control byte inside a label would change
 * the name's meaning once it is written out again.
 */
static int wire_to_text(const uint8_t *wire, char *text)
{
    size_t i = 0, n = 0;

    while (wire[i]) {
        uint8_t l = wire[i++];

        if (n)
            text[n++] = '.';
        for (; l; l--, i++) {
            if (!host_byte(wire[i]))
                return -EBADMSG;
            text[n++] = (char)wire[i];
        }
    }
    if (n == 0)
        return -EBADMSG;
    text[n] = '\0';
    return 0;
}

struct rr {
    uint8_t owner[DNS_NAME_WIRE_MAX];
    size_t owner_len;
    uint16_t type, cls;
    uint32_t ttl;
    size_t rdoff, rdlen;
};

static int rr_read(const uint8_t *msg, size_t len, size_t *off, struct rr *rr)
{
    struct cur c;

    if (name_read(msg, len, off, rr->owner, &rr->owner_len) < 0)
        return -EBADMSG;
    c = cur_init(msg + *off, len - *off);
    rr->type = cur_u16(&c);
    rr->cls = cur_u16(&c);
    rr->ttl = (uint32_t)cur_u16(&c) << 16;
    rr->ttl |= cur_u16(&c);
    rr->rdlen = cur_u16(&c);
    rr->rdoff = *off + 10;
    cur_skip(&c, rr->rdlen);
    if (c.bad)
        return -EBADMSG;
    *off = len - c.n;
    if (rr->ttl > INT32_MAX)            /* RFC 2181 §8: read as zero */
        rr->ttl = 0;
    return 0;
}

static bool wire_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

int resolver_parse_answer(const uint8_t *msg, size_t len, const char *name, int family,
                          struct resolver_addr *addrs, size_t cap, size_t *n, char *cname)
{
    uint8_t want[DNS_NAME_WIRE_MAX];
    size_t wlen, off, answers, hops;
    uint16_t qtype = family == AF_INET ? DNS_TYPE_A : DNS_TYPE_AAAA;
    size_t alen = family == AF_INET ? 4 : 16;
    uint32_t chain_ttl = UINT32_MAX;
    uint16_t flags, qd, an;
    struct cur c = cur_init(msg, len);
    struct rr rr;

    *n = 0;
    cname[0] = '\0';
    if ((family != AF_INET && family != AF_INET6) || resolver_name_to_wire(name, want, &wlen) < 0)
        return -EINVAL;
    cur_skip(&c, 2);                    /* id: c-ares matched it */
    flags = cur_u16(&c);
    qd = cur_u16(&c);
    an = cur_u16(&c);
    cur_skip(&c, 4);
    if (c.bad || !(flags & 0x8000) || qd != 1)
        return -EBADMSG;

    off = 12;
    if (name_read(msg, len, &off, rr.owner, &rr.owner_len) < 0 ||
        !wire_eq(rr.owner, rr.owner_len, want, wlen))
        return -EBADMSG;
    c = cur_init(msg + off, len - off);
    if (cur_u16(&c) != qtype || cur_u16(&c) != DNS_CLASS_IN || c.bad)
        return -EBADMSG;
    if ((flags & 0xf) == DNS_RCODE_NXDOMAIN)
        return RESOLVER_NXDOMAIN;
    if ((flags & 0xf) != DNS_RCODE_NOERROR)
        return RESOLVER_FAILED;
    answers = off + 4;

    /* Follow the chain, one pass over the answers per link: order is not promised. */
    for (hops = 0;; hops++) {
        bool linked = false;

        off = answers;
        for (size_t i = 0; i < an; i++) {
            size_t end;

            if (rr_read(msg, len, &off, &rr) < 0)
                return -EBADMSG;
            if (linked || rr.type != DNS_TYPE_CNAME || rr.cls != DNS_CLASS_IN ||
                !wire_eq(rr.owner, rr.owner_len, want, wlen))
                continue;
            end = rr.rdoff;
            if (name_read(msg, len, &end, want, &wlen) < 0 || end != rr.rdoff + rr.rdlen)
                return -EBADMSG;
            if (rr.ttl < chain_ttl)
                chain_ttl = rr.ttl;
            linked = true;
        }
        if (!linked)
            break;
        if (hops == CHAIN_MAX)
            return -EBADMSG;
    }
    if (hops > 0 && wire_to_text(want, cname) < 0)
        return -EBADMSG;

    off = answers;
    for (size_t i = 0; i < an; i++) {
        struct resolver_addr *a;

        if (rr_read(msg, len, &off, &rr) < 0)
            return -EBADMSG;
        if (rr.type != qtype || rr.cls != DNS_CLASS_IN ||
            !wire_eq(rr.owner, rr.owner_len, want, wlen))
            continue;
        if (rr.rdlen != alen)
            return -EBADMSG;
        if (*n == cap)
            continue;
        a = &addrs[(*n)++];
        memset(a, 0, sizeof(*a));
        a->family = family;
        memcpy(a->addr, msg + rr.rdoff, alen);
        a->ttl = rr.ttl < chain_ttl ? rr.ttl : chain_ttl;
    }
    return 0;
}
