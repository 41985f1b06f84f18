/*
 * Fuzz target for the DNS service's message code: any datagram a sandbox
 * sends. A parsed query must have a valid question echo, and the response
 * built around it must stay within the limit it was given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns_msg.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[] = {DNS_UDP_MAX, DNS_EDNS_MAX, 12, 40};
    static const struct dns_ede ede = {DNS_EDE_BLOCKED, "sluice: not_allowlisted"};
    struct dns_answer ans[20];
    uint8_t out[DNS_EDNS_MAX];
    struct dns_query q;
    size_t i, n;

    if (dns_query_parse(data, size, &q) == DNS_PARSE_DROP)
        return 0;
    CHECK(q.qname_wire_len <= DNS_NAME_WIRE_MAX);
    CHECK(q.qname_len <= HOSTNAME_MAX + 1);
    memset(ans, 0x5a, sizeof(ans));
    for (i = 0; i < 20; i++)
        ans[i].type = i % 2 ? DNS_TYPE_AAAA : DNS_TYPE_A;
    for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        n = dns_build_response(out, sizeof(out), limits[i], &q, DNS_RCODE_NOERROR, ans, 20,
                               i % 2 ? &ede : NULL);
        CHECK(n <= limits[i]);
        if (n)
            CHECK(out[0] == data[0] && out[1] == data[1]);     /* the id comes back */
    }
    return 0;
}
