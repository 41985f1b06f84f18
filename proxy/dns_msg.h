/*
 * DNS messages as the proxy's DNS service sees them: a query from the
 * sandbox parsed strictly (one question, names walked with backward-only
 * compression pointers and a hop limit) and a response built around it.
 * Pure functions over bytes.
 */
#ifndef SLUICE_DNS_MSG_H
#define SLUICE_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hostname.h"

#define DNS_HEADER_LEN 12
#define DNS_UDP_MAX 512             /* a response without EDNS fits in this */
#define DNS_EDNS_MAX 1232           /* the largest UDP response we send (DNS flag day 2020) */
#define DNS_TCP_MAX 65535
#define DNS_NAME_WIRE_MAX 255
#define DNS_POINTER_HOPS 127        /* compression pointers per name: no name needs more
                                       than it can have labels */
#define DNS_CLASS_IN 1

enum {
    DNS_TYPE_A = 1, DNS_TYPE_NS = 2, DNS_TYPE_CNAME = 5, DNS_TYPE_SOA = 6,
    DNS_TYPE_NULL = 10, DNS_TYPE_PTR = 12, DNS_TYPE_MX = 15, DNS_TYPE_TXT = 16,
    DNS_TYPE_AAAA = 28,
    DNS_TYPE_SRV = 33, DNS_TYPE_OPT = 41, DNS_TYPE_SVCB = 64, DNS_TYPE_HTTPS = 65,
    DNS_TYPE_AXFR = 252, DNS_TYPE_IXFR = 251, DNS_TYPE_ANY = 255, DNS_TYPE_CAA = 257,
};

enum {
    DNS_RCODE_NOERROR = 0, DNS_RCODE_FORMERR = 1, DNS_RCODE_SERVFAIL = 2,
    DNS_RCODE_NXDOMAIN = 3, DNS_RCODE_NOTIMP = 4, DNS_RCODE_REFUSED = 5,
};

enum dns_parse_status {
    DNS_PARSE_OK = 0,
    DNS_PARSE_FORMERR,          /* answerable, with FORMERR: the header is readable */
    DNS_PARSE_NOTIMP,           /* an opcode other than QUERY */
    DNS_PARSE_DROP,             /* not a query at all (a response, or no header): no answer */
};

struct dns_query {
    uint16_t id;
    uint16_t flags;             /* the query's flags word, for RD and CD */
    uint8_t qname_wire[DNS_NAME_WIRE_MAX];  /* as sent, uncompressed: echoed back */
    size_t qname_wire_len;
    char qname[HOSTNAME_MAX + 2];           /* presentation form, lowercase, no root dot */
    size_t qname_len;
    bool qname_valid;           /* a hostname (LDH, no IP literal) */
    uint16_t qtype, qclass;
    bool edns;
    uint16_t edns_size;         /* the client's UDP payload size (512 without EDNS) */
};

enum dns_parse_status dns_query_parse(const uint8_t *msg, size_t len, struct dns_query *q);

/* One answer record, owned by the question's name. */
struct dns_answer {
    uint16_t type;              /* A or AAAA */
    uint32_t ttl;
    uint8_t addr[16];
};

/* An Extended DNS Error (RFC 8914): why an answer is what it is. */
#define DNS_EDE_BLOCKED 15          /* "Blocked": the name is refused by policy */
#define DNS_EDE_TEXT_MAX 200        /* EXTRA-TEXT bytes kept */

struct dns_ede {
    uint16_t code;
    const char *text;               /* UTF-8 (here: ASCII), NUL-terminated; may be "" */
};

/*
 * Builds the response to Q in OUT (CAP bytes, at most LIMIT used): the
 * question echoed, RCODE, the answers, an OPT record when the query had one,
 * carrying EDE (or NULL: none). Answers that do not fit set TC. Returns the
 * length, 0 if even the header does not fit.
 */
size_t dns_build_response(uint8_t *out, size_t cap, size_t limit, const struct dns_query *q,
                          int rcode, const struct dns_answer *ans, size_t n,
                          const struct dns_ede *ede);

/*
 * Reads the name at *OFF of MSG into WIRE (DNS_NAME_WIRE_MAX bytes:
 * uncompressed, bytes as sent) and moves *OFF past it. A compression pointer
 * must point before the labels that led to it, so pointers cannot loop, and
 * at most DNS_POINTER_HOPS are followed. False when malformed. The DNS
 * service's questions and the resolver's answers are read with it.
 */
bool dns_name_read(const uint8_t *msg, size_t len, size_t *off, uint8_t *wire,
                   size_t *wire_len);

const char *dns_type_name(uint16_t type, char buf[8]);
const char *dns_rcode_name(int rcode);

#endif
