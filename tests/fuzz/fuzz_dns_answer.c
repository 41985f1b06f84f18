/*
 * Fuzz target for the resolver's answer parser: the bytes an upstream DNS
 * server (or anyone spoofing one) sends back. Checks that what it accepts
 * stays within its caps and is of the family asked for.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "hostname.h"
#include "resolver.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"www.example.test", "a.b", "x"};
    static const int families[] = {AF_INET, AF_INET6};
    struct resolver_addr addrs[RESOLVER_MAX_ADDRS];
    char cname[HOSTNAME_MAX + 1];
    size_t i, j, k, n;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        for (j = 0; j < 2; j++) {
            n = 0;
            cname[0] = '\0';
            if (resolver_parse_answer(data, size, names[i], families[j], addrs,
                                      RESOLVER_MAX_ADDRS, &n, cname) < 0)
                continue;
            CHECK(n <= RESOLVER_MAX_ADDRS);
            CHECK(strlen(cname) <= HOSTNAME_MAX);
            for (k = 0; k < n; k++)
                CHECK(addrs[k].family == families[j]);
        }
    }
    return 0;
}
