/*
 * Fuzz target for the HTTP request-head parser: any bytes are what a sandbox
 * might send first. Checks that the head it reports lies inside the input,
 * that a reported Host is a valid, normalized name, and that a verdict never
 * depends on bytes after the head. A head that parses is then rewritten as
 * inspect mode injects credentials: the result must be the same request to
 * the parser, without the dropped headers, and never longer than allowed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "http_head.h"


/* Whether a field line in OUT..N (a request line, field lines, 2 bytes) is named one of DROP. */
static bool has_dropped(const uint8_t *out, size_t n, const char *const *drop, size_t n_drop)
{
    const uint8_t *p = memchr(out, '\n', n) + 1, *end = out + n - 2;
    size_t i;

    while (p < end) {
        const uint8_t *eol = memchr(p, '\r', (size_t)(end - p));
        const uint8_t *colon = memchr(p, ':', (size_t)(eol - p));

        for (i = 0; i < n_drop; i++)
            if (strlen(drop[i]) == (size_t)(colon - p) &&
                strncasecmp((const char *)p, drop[i], strlen(drop[i])) == 0)
                return true;
        p = eol + 2;
    }
    return false;
}

static void check_rewrite(const uint8_t *data, size_t size, const struct http_head *h)
{
    static const char *const drop[] = {"authorization", "Proxy-Authorization", "COOKIE",
                                       "x-api-key", "X-Pad"};
    static const char add[] = "Authorization: Bearer fuzz\r\nX-Api-Key: fuzz\r\n";
    static uint8_t out[HTTP_HEAD_MAX + sizeof(add)];
    size_t n_drop = size % (sizeof(drop) / sizeof(drop[0]) + 1), add_len = size & 8 ? 0 : sizeof(add) - 1;
    size_t n, lines = 0, i;
    struct http_head again;
    enum http_head_status st;

    n = http_head_rewrite(data, h->head_len, drop, n_drop, (const uint8_t *)add, add_len, out,
                          sizeof(out));
    CHECK(n >= 4 && n <= h->head_len + add_len);
    CHECK(memcmp(out + n - 2 - add_len, add, add_len) == 0);
    CHECK(memcmp(out + n - 2, "\r\n", 2) == 0);
    CHECK(!has_dropped(out, n - add_len, drop, n_drop));
    if (n_drop == 0)
        CHECK(memcmp(out, data, h->head_len - 2) == 0);
    CHECK(http_head_rewrite(data, h->head_len, drop, n_drop, (const uint8_t *)add, add_len, out,
                            n - 1) == 0);
    CHECK(http_head_rewrite(data, h->head_len, drop, n_drop, (const uint8_t *)add, add_len, out,
                            n) == n);

    /* the same request, unless the additions pushed it over a cap */
    for (i = 0; i + 1 < n; i++)
        lines += out[i] == '\r' && out[i + 1] == '\n';
    st = http_head_parse(out, n, &again);
    if (n > HTTP_HEAD_MAX || lines - 2 > HTTP_HEADERS_MAX) {
        CHECK(st == HTTP_HEAD_TOO_BIG);
        return;
    }
    CHECK(st == HTTP_HEAD_OK && again.head_len == n);
    CHECK(strcmp(again.method, h->method) == 0 && again.minor == h->minor);
    CHECK(again.target_len == h->target_len &&
          memcmp(again.target, h->target, h->target_len) == 0);
    CHECK(again.path_len == h->path_len && memcmp(again.path, h->path, h->path_len) == 0);
    CHECK(again.host_state == h->host_state && strcmp(again.host, h->host) == 0 &&
          again.port == h->port);
    CHECK(again.body == h->body && again.content_length == h->content_length);
    CHECK(again.close == h->close && again.connect == h->connect &&
          again.upgrade_websocket == h->upgrade_websocket && again.upgrade_h2c == h->upgrade_h2c);
}

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
    check_rewrite(data, size, &h);
    return 0;
}
