/*
 * Fuzz target for the ClientHello parser: any bytes are what a sandbox might
 * send first. Checks that a verdict never depends on bytes past the input and
 * that an SNI it reports is a valid, normalized hostname.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "hostname.h"
#include "tls_hello.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tls_hello h, again;
    enum tls_hello_status st = tls_hello_parse(data, size, &h);

    if (st == TLS_HELLO_OK && h.sni_state == TLS_SNI_OK) {
        char norm[HOSTNAME_MAX + 1];
        size_t len;

        CHECK(h.sni_len == strlen(h.sni));
        CHECK(hostname_normalize((const uint8_t *)h.sni, h.sni_len, norm, &len) == HOSTNAME_OK);
        CHECK(len == h.sni_len && memcmp(norm, h.sni, len) == 0);
    }
    /* A complete verdict stays the same when more bytes follow (they are not read). */
    if (st == TLS_HELLO_OK && size < 65536) {
        uint8_t *more = malloc(size + 7);

        if (more) {
            memcpy(more, data, size);
            memset(more + size, 0xa5, 7);
            CHECK(tls_hello_parse(more, size + 7, &again) == TLS_HELLO_OK);
            CHECK(again.sni_state == h.sni_state && again.ech == h.ech);
            free(more);
        }
    }
    return 0;
}
