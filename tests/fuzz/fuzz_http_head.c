/*
 * Fuzz target for the HTTP request-head parser: any bytes are what a sandbox
 * might send first. Checks that the head it reports lies inside the input,
 * that a reported Host is a valid, normalized name, and that a verdict never
 * depends on bytes after the head.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http_head.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "fuzz_http_head: %s:%d: check failed: %s\n", __FILE__,    \
                    __LINE__, #cond);                                                \
            abort();                                                                 \
        }                                                                            \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_head h, again;
    enum http_head_status st = http_head_parse(data, size, &h);

    if (st != HTTP_HEAD_OK)
        return 0;
    CHECK(h.head_len >= 4 && h.head_len <= size && h.head_len <= HTTP_HEAD_MAX);
    CHECK(h.target >= data && h.target + h.target_len <= data + h.head_len);
    CHECK(h.path_len > 0);
    if (h.host_state == HTTP_HOST_OK) {
        char norm[HOSTNAME_MAX + 1];
        size_t len;

        CHECK(h.port > 0);
        CHECK(hostname_normalize((const uint8_t *)h.host, h.host_len, norm, &len) ==
              HOSTNAME_OK);
        CHECK(len == h.host_len && memcmp(norm, h.host, len) == 0);
    }
    /* only the head counts: the same head followed by anything parses the same */
    if (h.head_len < size) {
        CHECK(http_head_parse(data, h.head_len, &again) == HTTP_HEAD_OK);
        CHECK(again.host_state == h.host_state && again.body == h.body &&
              again.content_length == h.content_length);
    }
    return 0;
}
