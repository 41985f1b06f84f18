/*
 * hostport_split(): the one HOST[:PORT] reader of --listen, --dns-listen,
 * --metrics, --upstream-dns and sluicectl explain. One row per case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "hostport.h"

static void test_split(void **state)
{
    static const struct {
        const char *in;
        uint16_t default_port;
        bool ok;
        const char *host;
        uint16_t port;
        const char *why;
    } rows[] = {
        {"127.0.0.1:15001", 0, true, "127.0.0.1", 15001, "v4 and port"},
        {"[::1]:15001", 0, true, "::1", 15001, "bracketed v6 and port"},
        {"example.org:8443", 443, true, "example.org", 8443, "a name and port"},
        {"example.org", 443, true, "example.org", 443, "the default port"},
        {"2001:db8::53", 53, true, "2001:db8::53", 53, "bare v6: no port in it"},
        {"[2001:db8::53]", 53, true, "2001:db8::53", 53, "bracketed v6, default port"},
        {"127.0.0.1", 0, false, NULL, 0, "a port is required"},
        {"::1", 0, false, NULL, 0, "bare v6 cannot carry the required port"},
        {"127.0.0.1:0", 0, false, NULL, 0, "port 0"},
        {"127.0.0.1:65536", 0, false, NULL, 0, "port out of range"},
        {"127.0.0.1:+80", 0, false, NULL, 0, "a sign"},
        {"127.0.0.1:", 0, false, NULL, 0, "an empty port"},
        {":80", 0, false, NULL, 0, "an empty host"},
        {"[]:80", 0, false, NULL, 0, "empty brackets"},
        {"[::1", 0, false, NULL, 0, "an unclosed bracket"},
        {"[::1]x", 0, false, NULL, 0, "bytes after the bracket"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char buf[64], *host = NULL;
        uint16_t port = 0;
        bool ok;

        snprintf(buf, sizeof(buf), "%s", rows[i].in);
        ok = hostport_split(buf, rows[i].default_port, &host, &port);
        if (ok != rows[i].ok)
            fail_msg("%s (%s): got %s", rows[i].in, rows[i].why, ok ? "ok" : "refused");
        if (ok && (strcmp(host, rows[i].host) != 0 || port != rows[i].port))
            fail_msg("%s (%s): got %s port %u", rows[i].in, rows[i].why, host, port);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
