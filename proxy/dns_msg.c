/* DNS query parsing and response building (RFC 1035, RFC 6891 for EDNS). */
#include "dns_msg.h"

#include <stdio.h>
#include <string.h>

#include "cursor.h"

#define FLAG_QR 0x8000
#define FLAG_AA 0x0400
#define FLAG_TC 0x0200
#define FLAG_RD 0x0100
#define FLAG_RA 0x0080
#define FLAG_CD 0x0010
#define OPCODE(f) (((f) >> 11) & 0xf)

bool dns_name_read(const uint8_t *msg, size_t len, size_t *off, uint8_t *wire,
                   size_t *wire_len)
{
    size_t pos = *off, run = *off, w = 0, hops = 0;
    bool jumped = false;

    for (;;) {
        uint8_t l;

        if (pos >= len)
            return false;
        l = msg[pos];
        if ((l & 0xc0) == 0xc0) {
            size_t to;

            if (pos + 1 >= len || ++hops > DNS_POINTER_HOPS)
                return false;
            to = (size_t)(l & 0x3f) << 8 | msg[pos + 1];
            if (to >= run)
                return false;       /* forward or self pointers: refused */
            if (!jumped)
                *off = pos + 2;
            jumped = true;
            pos = run = to;
            continue;
        }
        if (l & 0xc0)
            return false;           /* 0x40 and 0x80: the obsolete extended label types */
        if (w + 1 + l > DNS_NAME_WIRE_MAX || pos + 1 + l > len)
            return false;
        wire[w++] = l;
        if (l == 0)
            break;
        memcpy(wire + w, msg + pos + 1, l);
        w += l;
        pos += 1 + l;
    }
    if (!jumped)
        *off = pos + 1;
    *wire_len = w;
    return true;
}

/*
 * WIRE as dotted, lowercase text for the policy (HOSTNAME_MAX + 2 bytes): any
 * byte survives the wire form, but a dot inside a label must not pass there
 * for a separator.
 */
static size_t wire_text(const uint8_t *wire, char *text)
{
    size_t i = 0, t = 0;

    while (wire[i]) {
        uint8_t l = wire[i++];

        if (t)
            text[t++] = '.';
        for (; l; l--, i++) {
            uint8_t c = wire[i];

            text[t++] = (char)(c == '.' ? '\\' : c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
    }
    text[t] = '\0';
    return t;
}

enum dns_parse_status dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *q)
{
    struct cur c = cur_init(msg, len);
    uint16_t qd, an, ns, ar;
    size_t off;
    char norm[HOSTNAME_MAX + 1];

    memset(q, 0, sizeof(*q));
    q->edns_size = DNS_UDP_MAX;
    if (len < DNS_HEADER_LEN)
        return DNS_PARSE_DROP;
    q->id = cur_u16(&c);
    q->flags = cur_u16(&c);
    if (q->flags & FLAG_QR)
        return DNS_PARSE_DROP;      /* a response: never answer those (no loops) */
    qd = cur_u16(&c);
    an = cur_u16(&c);
    ns = cur_u16(&c);
    ar = cur_u16(&c);
    if (OPCODE(q->flags) != 0)
        return DNS_PARSE_NOTIMP;
    if (qd != 1 || an != 0 || ns != 0 || ar > 1)
        return DNS_PARSE_FORMERR;
    off = DNS_HEADER_LEN;
    if (!dns_name_read(msg, len, &off, q->qname_wire, &q->qname_wire_len) || off + 4 > len)
        return DNS_PARSE_FORMERR;
    q->qname_len = wire_text(q->qname_wire, q->qname);
    q->qtype = (uint16_t)(msg[off] << 8 | msg[off + 1]);
    q->qclass = (uint16_t)(msg[off + 2] << 8 | msg[off + 3]);
    off += 4;
    q->qname_valid = q->qname_len <= HOSTNAME_MAX &&
                     hostname_normalize((const uint8_t *)q->qname, q->qname_len, norm,
                                        &q->qname_len) == HOSTNAME_OK;
    if (q->qname_valid)
        memcpy(q->qname, norm, q->qname_len + 1);
    if (ar == 1) {                  /* EDNS: an OPT record with the root name */
        struct cur o = cur_init(msg + off, len - off);
        uint16_t type, size, rdlen;

        if (cur_u8(&o) != 0)
            return DNS_PARSE_FORMERR;
        type = cur_u16(&o);
        size = cur_u16(&o);
        cur_skip(&o, 4);            /* extended rcode, version, flags */
        rdlen = cur_u16(&o);
        cur_skip(&o, rdlen);
        if (o.bad || type != DNS_TYPE_OPT || o.n != 0)
            return DNS_PARSE_FORMERR;
        q->edns = true;
        q->edns_size = size < DNS_UDP_MAX ? DNS_UDP_MAX : size;
        off = len;
    }
    if (off != len)
        return DNS_PARSE_FORMERR;   /* trailing bytes */
    return DNS_PARSE_OK;
}

static void put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

size_t dns_build_response(uint8_t *out, size_t cap, size_t limit, const struct dns_query *q,
                          int rcode, const struct dns_answer *ans, size_t n,
                          const struct dns_ede *ede)
{
    size_t text = ede && q->edns ? strnlen(ede->text, DNS_EDE_TEXT_MAX) : 0;
    size_t rdata = ede && q->edns ? 6 + text : 0;  /* option code, length, info code, text */
    size_t off = DNS_HEADER_LEN, opt = q->edns ? 11 + rdata : 0, i, written = 0;
    uint16_t flags = (uint16_t)(FLAG_QR | FLAG_RA | (q->flags & (FLAG_RD | FLAG_CD)) |
                                (rcode & 0xf));

    if (limit > cap)
        limit = cap;
    if (limit < DNS_HEADER_LEN + q->qname_wire_len + 4 + opt)
        return 0;
    if (q->qname_wire_len) {        /* none when the question did not parse (FORMERR) */
        memcpy(out + off, q->qname_wire, q->qname_wire_len);
        off += q->qname_wire_len;
        put16(out + off, q->qtype);
        put16(out + off + 2, q->qclass);
        off += 4;
    }
    for (i = 0; i < n && q->qname_wire_len; i++) {
        size_t rdlen = ans[i].type == DNS_TYPE_A ? 4 : 16;

        if (off + 12 + rdlen + opt > limit) {
            flags |= FLAG_TC;       /* the client retries over TCP */
            break;
        }
        put16(out + off, 0xc000 | DNS_HEADER_LEN);     /* owner: the question's name */
        put16(out + off + 2, ans[i].type);
        put16(out + off + 4, DNS_CLASS_IN);
        put16(out + off + 6, ans[i].ttl >> 16);
        put16(out + off + 8, ans[i].ttl & 0xffff);
        put16(out + off + 10, rdlen);
        memcpy(out + off + 12, ans[i].addr, rdlen);
        off += 12 + rdlen;
        written++;
    }
    if (q->edns) {                  /* OPT: root, type 41, our size, no flags */
        out[off] = 0;
        put16(out + off + 1, DNS_TYPE_OPT);
        put16(out + off + 3, DNS_EDNS_MAX);
        memset(out + off + 5, 0, 4);
        put16(out + off + 9, rdata);
        off += 11;
        if (rdata) {                /* option 15: Extended DNS Error */
            put16(out + off, 15);
            put16(out + off + 2, 2 + text);
            put16(out + off + 4, ede->code);
            memcpy(out + off + 6, ede->text, text);
            off += rdata;
        }
    }
    put16(out, q->id);
    put16(out + 2, flags);
    put16(out + 4, q->qname_wire_len ? 1 : 0);
    put16(out + 6, written);
    put16(out + 8, 0);
    put16(out + 10, q->edns ? 1 : 0);
    return off;
}

const char *dns_type_name(uint16_t type, char buf[8])
{
    static const struct {
        uint16_t type;
        const char *name;
    } names[] = {
        {DNS_TYPE_A, "A"}, {DNS_TYPE_NS, "NS"}, {DNS_TYPE_CNAME, "CNAME"},
        {DNS_TYPE_SOA, "SOA"}, {DNS_TYPE_PTR, "PTR"}, {DNS_TYPE_MX, "MX"},
        {DNS_TYPE_TXT, "TXT"}, {DNS_TYPE_AAAA, "AAAA"}, {DNS_TYPE_SRV, "SRV"},
        {DNS_TYPE_SVCB, "SVCB"}, {DNS_TYPE_HTTPS, "HTTPS"}, {DNS_TYPE_AXFR, "AXFR"},
        {DNS_TYPE_IXFR, "IXFR"}, {DNS_TYPE_ANY, "ANY"}, {DNS_TYPE_CAA, "CAA"},
        {DNS_TYPE_NULL, "NULL"},
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].type == type)
            return names[i].name;
    snprintf(buf, 8, "%u", type);   /* a closed alphabet for the log and metrics */
    return buf;
}

const char *dns_rcode_name(int rcode)
{
    static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                        "NOTIMP", "REFUSED"};

    return rcode >= 0 && rcode < 6 ? names[rcode] : "OTHER";
}
