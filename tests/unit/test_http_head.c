/* http_head_parse: one row per request head, with the verdict it must get and why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "http_head.h"

struct row {
    const char *head;
    enum http_head_status st;
    enum http_host host;        /* checked when st is OK */
    const char *name;           /* expected host, or NULL */
    uint16_t port;
    const char *why;
};

#define H(x) x
static const struct row rows[] = {
    {"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_OK,
     "example.test", 80, "plain GET"},
    {"GET /a?b HTTP/1.1\r\nHOST: Example.TEST.:8080\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_OK,
     "example.test", 8080, "header name case, host case, root dot, port"},
    {"GET / HTTP/1.1\r\nHost:example.test  \r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_OK,
     "example.test", 80, "no space after the colon, trailing spaces"},
    {"GET / HTTP/1.1\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_MISSING, NULL, 0, "no Host"},
    {"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", HTTP_HEAD_OK,
     HTTP_HOST_DUPLICATE, NULL, 0, "two Hosts"},
    {"GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n", HTTP_HEAD_OK,
     HTTP_HOST_DUPLICATE, NULL, 0, "two Hosts, even equal"},
    {"GET / HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_INVALID, NULL, 0,
     "IP literal"},
    {"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_INVALID,
     NULL, 0, "v6 literal"},
    {"GET / HTTP/1.1\r\nHost: a.test:0\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_INVALID, NULL, 0,
     "port 0"},
    {"GET / HTTP/1.1\r\nHost: a.test:65536\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_INVALID, NULL, 0,
     "port too big"},
    {"GET / HTTP/1.1\r\nHost: a.test:\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_INVALID, NULL, 0,
     "empty port"},
    {"GET / HTTP/1.1\r\nHost: \r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_INVALID, NULL, 0,
     "empty Host"},
    {"GET / HTTP/1.1\r\nHost: a_b.test\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_INVALID, NULL, 0,
     "non-LDH host"},
    {"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_OK,
     "a.test", 80, "absolute form agreeing with Host"},
    {"GET http://A.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_OK,
     "a.test", 80, "absolute form, explicit default port, no path"},
    {"GET http://evil.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", HTTP_HEAD_OK,
     HTTP_HOST_MISMATCH, NULL, 0, "absolute form naming another host"},
    {"GET http://a.test:8080/ HTTP/1.1\r\nHost: a.test\r\n\r\n", HTTP_HEAD_OK,
     HTTP_HOST_MISMATCH, NULL, 0, "absolute form naming another port"},
    {"GET http://a.test@evil.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", HTTP_HEAD_BAD, 0,
     NULL, 0, "userinfo in the target"},
    {"GET https://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", HTTP_HEAD_BAD, 0, NULL, 0,
     "https scheme on plain HTTP"},
    {"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_OK,
     "a.test", 443, "CONNECT parses (and is flagged)"},
    {"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", HTTP_HEAD_OK, HTTP_HOST_OK, "a.test", 80,
     "asterisk form"},
    {"GET / HTTP/1.1\r\nHost: a.test\r\n folded: x\r\n\r\n", HTTP_HEAD_BAD, 0, NULL, 0,
     "obsolete folding"},
    {"GET / HTTP/1.1\nHost: a.test\n\n", HTTP_HEAD_BAD, 0, NULL, 0, "bare LF"},
    {"GET / HTTP/1.1\r\nHost: a.test\rX: y\r\n\r\n", HTTP_HEAD_BAD, 0, NULL, 0, "bare CR"},
    {"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n", HTTP_HEAD_BAD, 0, NULL, 0,
     "space before the colon"},
    {"GET / HTTP/1.1\r\nHost: a.test\r\nX: a\x01" "b\r\n\r\n", HTTP_HEAD_BAD, 0, NULL, 0,
     "control byte in a value"},
    {"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
     HTTP_HEAD_BAD, 0, NULL, 0, "two different lengths"},
    {"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
     "\r\n\r\n", HTTP_HEAD_BAD, 0, NULL, 0, "length and chunked together"},
    {"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     HTTP_HEAD_BAD, 0, NULL, 0, "a coding other than a lone chunked"},
    {"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: -1\r\n\r\n", HTTP_HEAD_BAD, 0, NULL,
     0, "negative length"},
    {"GET / HTTP/2.0\r\nHost: a.test\r\n\r\n", HTTP_HEAD_NOT_HTTP, 0, NULL, 0,
     "HTTP/2 line: not HTTP/1"},
    {"GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n", HTTP_HEAD_BAD, 0, NULL, 0, "double space"},
    {"GET / HTTP/1.1 \r\nHost: a.test\r\n\r\n", HTTP_HEAD_NOT_HTTP, 0, NULL, 0,
     "trailing space on the request line"},
    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HTTP_HEAD_NOT_HTTP, 0, NULL, 0,
     "h2 prior knowledge"},
    {"EHLO x\r\n", HTTP_HEAD_NOT_HTTP, 0, NULL, 0, "SMTP: a complete line, no version"},
    {"GET / HTTP/1.1\r\nHost: a.test\r\n", HTTP_HEAD_NEED_MORE, 0, NULL, 0,
     "head not finished"},
    {"GE", HTTP_HEAD_NEED_MORE, 0, NULL, 0, "two bytes of a method"},
    {"\x16\x03\x01\x02\x00", HTTP_HEAD_NOT_HTTP, 0, NULL, 0, "TLS"},
    {"SSH-2.0-OpenSSH_9.2\r\n", HTTP_HEAD_NOT_HTTP, 0, NULL, 0, "SSH banner"},
    {" GET / HTTP/1.1\r\n\r\n", HTTP_HEAD_NOT_HTTP, 0, NULL, 0, "leading space"},
    {"\r\n", HTTP_HEAD_NOT_HTTP, 0, NULL, 0, "empty line"},
};

static void test_rows(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct http_head h;
        enum http_head_status st = http_head_parse((const uint8_t *)r->head, strlen(r->head),
                                                   &h);

        if (st != r->st)
            fail_msg("row %zu (%s): status %d, want %d", i, r->why, st, r->st);
        if (st != HTTP_HEAD_OK)
            continue;
        if (h.host_state != r->host)
            fail_msg("row %zu (%s): host state %d, want %d", i, r->why, h.host_state, r->host);
        if (r->name && (strcmp(h.host, r->name) != 0 || h.port != r->port))
            fail_msg("row %zu (%s): host %s:%u", i, r->why, h.host, h.port);
        assert_int_equal(h.head_len, strlen(r->head));
    }
}

static void test_fields(void **state)
{
    static const char pipelined[] =
        "POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc"
        "GET /next HTTP/1.1\r\nHost: b.test\r\n\r\n";
    struct http_head h;
    const uint8_t *b = (const uint8_t *)pipelined;

    (void)state;
    assert_int_equal(http_head_parse(b, sizeof(pipelined) - 1, &h), HTTP_HEAD_OK);
    assert_string_equal(h.method, "POST");
    assert_int_equal(h.body, HTTP_BODY_LENGTH);
    assert_int_equal(h.content_length, 3);
    assert_int_equal(h.path_len, 3);
    assert_memory_equal(h.path, "/up", 3);
    /* the next request starts after head and body: parse it from there */
    assert_int_equal(http_head_parse(b + h.head_len + 3, sizeof(pipelined) - 1 - h.head_len - 3,
                                     &h), HTTP_HEAD_OK);
    assert_string_equal(h.host, "b.test");
    assert_false(h.close);

    assert_int_equal(http_head_parse((const uint8_t *)"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n",
                                     32, &h), HTTP_HEAD_OK);
    assert_true(h.close);                                   /* 1.0 closes by default */
    assert_int_equal(http_head_parse((const uint8_t *)"GET / HTTP/1.1\r\nHost: a.test\r\n"
                                     "Connection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
                                     85, &h), HTTP_HEAD_OK);
    assert_true(h.close);
    assert_true(h.upgrade_websocket);
    assert_int_equal(http_head_parse((const uint8_t *)"GET / HTTP/1.1\r\nHost: a.test\r\n"
                                     "Upgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\n",
                                     76, &h), HTTP_HEAD_OK);
    assert_true(h.upgrade_h2c);
    assert_int_equal(h.body, HTTP_BODY_CHUNKED);
    assert_int_equal(http_head_parse((const uint8_t *)"GET http://a.test HTTP/1.1\r\n"
                                     "Host: a.test\r\n\r\n", 44, &h), HTTP_HEAD_OK);
    assert_int_equal(h.path_len, 1);                        /* absolute form, no path */
    assert_memory_equal(h.path, "/", 1);
}

static void test_sizes_and_prefixes(void **state)
{
    static uint8_t big[HTTP_HEAD_MAX + 100];
    static const char head[] = "GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\r\n";
    struct http_head h;
    size_t i, n = 0;

    (void)state;
    for (i = 0; i < sizeof(head) - 1; i++)      /* every split point: read more */
        assert_int_equal(http_head_parse((const uint8_t *)head, i, &h), HTTP_HEAD_NEED_MORE);

    n += (size_t)sprintf((char *)big, "GET / HTTP/1.1\r\nHost: a.test\r\n");
    while (n + 20 < sizeof(big))
        n += (size_t)sprintf((char *)big + n, "X-Pad: %010zu\r\n", n);
    assert_int_equal(http_head_parse(big, n, &h), HTTP_HEAD_TOO_BIG);  /* no end in 16 KiB */

    n = (size_t)sprintf((char *)big, "GET / HTTP/1.1\r\nHost: a.test\r\n");
    for (i = 0; i < HTTP_HEADERS_MAX + 1; i++)
        n += (size_t)sprintf((char *)big + n, "X%zu: y\r\n", i);
    n += (size_t)sprintf((char *)big + n, "\r\n");
    assert_int_equal(http_head_parse(big, n, &h), HTTP_HEAD_TOO_BIG);  /* too many headers */
}

/* Feeds S to a framing in pieces of STEP bytes; returns bytes consumed, or -1. */
static long frame(const char *head, const char *s, size_t step, enum http_frame_state *end)
{
    struct http_head h;
    struct http_framing f;
    size_t off = 0, len = strlen(s);

    assert_int_equal(http_head_parse((const uint8_t *)head, strlen(head), &h), HTTP_HEAD_OK);
    http_framing_start(&f, &h);
    while (off < len && f.state != HTTP_FRAME_HEAD) {
        size_t n = len - off < step ? len - off : step;
        long used = http_framing_advance(&f, (const uint8_t *)s + off, n);

        if (used < 0)
            return -1;
        off += (size_t)used;
        if ((size_t)used < n)
            break;
    }
    *end = f.state;
    return (long)off;
}

static void test_framing(void **state)
{
    static const char cl[] = "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\n";
    static const char ch[] = "POST / HTTP/1.1\r\nHost: a.test\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n";
    static const char none[] = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    static const struct {
        const char *head, *body;
        long used;              /* bytes of the first message; -1: malformed */
        const char *why;
    } frames[] = {
        {cl, "helloGET", 5, "length body, then the next head"},
        {none, "GET", 0, "no body at all"},
        {ch, "5\r\nhello\r\n0\r\n\r\nGET", 15, "one chunk, last chunk, no trailer"},
        {ch, "5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nNEXT", 29, "extension and trailer"},
        {ch, "A\r\n0123456789\r\n0\r\n\r\n", 20, "hex size"},
        {ch, "5\nhello\r\n0\r\n\r\n", -1, "bare LF after the size"},
        {ch, "5\r\nhelloXX0\r\n\r\n", -1, "no CRLF after the data"},
        {ch, "zz\r\n", -1, "not hex"},
        {ch, "\r\n", -1, "empty size line"},
        {ch, "fffffffffffffffff\r\n", -1, "size overflow"},
        {ch, "0\r\nX: 1\rY\r\n\r\n", -1, "bare CR in a trailer"},
    };
    size_t i, step;

    (void)state;
    for (i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        for (step = 1; step <= 64; step *= 4) {     /* any split gives the same answer */
            enum http_frame_state end;
            long used = frame(frames[i].head, frames[i].body, step, &end);

            if (used != frames[i].used)
                fail_msg("row %zu (%s), step %zu: used %ld, want %ld", i, frames[i].why, step,
                         used, frames[i].used);
            if (used >= 0)
                assert_int_equal(end, HTTP_FRAME_HEAD);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_sizes_and_prefixes),
        cmocka_unit_test(test_framing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
