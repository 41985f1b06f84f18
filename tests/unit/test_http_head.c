/*
 * http_head_parse and http_response_parse: one row per head, with the verdict
 * it must get and why; the framing of the bodies that follow them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "deny.h"
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

struct resp_row {
    const char *head;
    bool head_request;          /* the answer to a HEAD */
    enum http_head_status st;
    unsigned status;            /* the rest is checked when st is OK */
    enum http_body body;
    uint64_t length;
    bool close;
    const char *why;
};

#define OK HTTP_HEAD_OK
#define BAD HTTP_HEAD_BAD
#define NOT HTTP_HEAD_NOT_HTTP
#define NONE HTTP_BODY_NONE
#define LEN HTTP_BODY_LENGTH
#define CHUNKED HTTP_BODY_CHUNKED
#define CLOSE HTTP_BODY_CLOSE
static const struct resp_row resp_rows[] = {
    /* bodiless whatever the headers say (RFC 9112 6.3, rules 1 and 2) */
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, OK, 200, NONE, 0, false,
     "HEAD: the length is the GET's, no body follows"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, OK, 200, NONE, 0, false,
     "HEAD: not even a last chunk"},
    {"HTTP/1.1 200 OK\r\n\r\n", true, OK, 200, NONE, 0, false,
     "HEAD without framing headers: not close-delimited"},
    {"HTTP/1.1 100 Continue\r\n\r\n", false, OK, 100, NONE, 0, false, "100"},
    {"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     false, OK, 101, NONE, 0, false, "101: what follows is no longer HTTP"},
    {"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nContent-Length: 9\r\n\r\n",
     false, OK, 103, NONE, 0, false, "1xx with a length: still none"},
    {"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", false, OK, 204, NONE, 0, false,
     "204 with a length"},
    {"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", false, OK, 204, NONE, 0,
     false, "204 with chunked"},
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n", false, OK, 304, NONE, 0,
     false, "304: the length is the representation's"},
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n", false, BAD, 0, 0, 0, false,
     "304 with a malformed length: refused though it does not count"},
    {"HTTP/1.1 205 Reset Content\r\nContent-Length: 0\r\n\r\n", false, OK, 205, LEN, 0,
     false, "205 is not bodiless by status"},
    /* Transfer-Encoding (rules 3 and 4) */
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, OK, 200, CHUNKED, 0,
     false, "chunked"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", false, OK, 200, CHUNKED,
     0, false, "chunked final after another coding, any case"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;level=1\r\nTransfer-Encoding: chunked\r\n"
     "\r\n", false, OK, 200, CHUNKED, 0, false, "two lines, parameters, chunked last"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n", false,
     OK, 200, CHUNKED, 0, true, "chunked wins over a length; the connection is not reused"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, OK, 200, CLOSE, 0,
     true, "chunked not final: until close"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
     false, OK, 200, CLOSE, 0, true, "chunked not final across lines"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", false, OK,
     200, CLOSE, 0, true, "another coding alone: until close, the length ignored"},
    {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
     false, OK, 200, CLOSE, 0, true, "HTTP/1.0 with a coding: faulty framing, until close"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", false, BAD, 0, 0, 0,
     false, "chunked twice"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     false, BAD, 0, 0, 0, false, "chunked twice over two lines"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", false, BAD, 0, 0, 0, false,
     "chunked takes no parameters"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n", false, BAD, 0, 0, 0, false,
     "an empty final element: is chunked final or not?"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, , chunked\r\n\r\n", false, BAD, 0, 0, 0,
     false, "an empty element"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", false, BAD, 0, 0, 0, false,
     "no coding"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chun ked\r\n\r\n", false, BAD, 0, 0, 0, false,
     "a coding with a space"},
    {"HTTP/1.1 204 No Content\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", false, BAD, 0, 0,
     0, false, "not a token, even where no body follows"},
    /* Content-Length (rules 5 and 6) */
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, OK, 200, LEN, 5, false, "length"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, OK, 200, LEN, 0, false,
     "empty body"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length:5 \r\n\r\n", false, OK, 200,
     LEN, 5, false, "two equal lengths"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5, 5,5\r\n\r\n", false, OK, 200, LEN, 5, false,
     "a list of equal lengths"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n", false, OK, 200, LEN,
     9999999999999999999u, false, "19 digits: the most that cannot overflow"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false, BAD, 0, 0,
     0, false, "two lengths"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", false, BAD, 0, 0, 0, false,
     "a list of two lengths"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n", false, BAD, 0, 0, 0, false,
     "an empty list element"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n", false, BAD, 0, 0, 0, false,
     "two numbers without a comma"},
    {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, BAD, 0, 0, 0, false, "negative"},
    {"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false, BAD, 0, 0, 0, false, "a sign"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", false, BAD, 0, 0, 0, false, "hex"},
    {"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", false, BAD, 0, 0, 0, false, "empty"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n", false, BAD, 0, 0, 0,
     false, "2^64: overflow"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 00000000000000000005\r\n\r\n", false, BAD, 0, 0, 0,
     false, "20 digits, even with a small value"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\nTransfer-Encoding: chunked\r\n\r\n", false,
     BAD, 0, 0, 0, false, "a malformed length beside chunked: refused, not ignored"},
    /* neither: until close (rule 8), and Connection */
    {"HTTP/1.1 200 OK\r\n\r\n", false, OK, 200, CLOSE, 0, true, "no framing: until close"},
    {"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n", false, OK, 200, CLOSE, 0, true,
     "keep-alive cannot keep a close-delimited body"},
    {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", false, OK, 200,
     LEN, 2, true, "Connection: close"},
    {"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 2\r\n\r\n",
     false, OK, 200, LEN, 2, true, "close in a list"},
    {"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", false, OK,
     200, LEN, 2, false, "1.1 keep-alive"},
    {"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false, OK, 200, LEN, 2, true,
     "1.0 closes by default"},
    {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", false, OK,
     200, LEN, 2, false, "1.0 keep-alive"},
    {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false, OK, 200, CLOSE, 0, true,
     "1.0 keep-alive without a length: until close"},
    {"HTTP/1.0 304 Not Modified\r\nConnection: keep-alive\r\n\r\n", false, OK, 304, NONE, 0,
     false, "1.0 keep-alive, bodiless"},
    /* the status line */
    {"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, OK, 200, LEN, 0, false,
     "no reason and no SP before it"},
    {"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", false, OK, 200, LEN, 0, false,
     "an empty reason"},
    {"HTTP/1.1 599 Some\treason \xe9t\xe9\r\nContent-Length: 0\r\n\r\n", false, OK, 599,
     LEN, 0, false, "unknown status, tab and obs-text in the reason"},
    {"HTTP/1.9 999 X\r\nContent-Length: 0\r\n\r\n", false, OK, 999, LEN, 0, false,
     "the highest status, a later minor version"},
    {"HTTP/1.1 099 X\r\n\r\n", false, BAD, 0, 0, 0, false, "status below 100"},
    {"HTTP/1.1 20 OK\r\n\r\n", false, BAD, 0, 0, 0, false, "two digits"},
    {"HTTP/1.1 2000 OK\r\n\r\n", false, BAD, 0, 0, 0, false, "four digits"},
    {"HTTP/1.1 20x OK\r\n\r\n", false, BAD, 0, 0, 0, false, "not a digit"},
    {"HTTP/1.1  200 OK\r\n\r\n", false, BAD, 0, 0, 0, false, "two spaces"},
    {"HTTP/1.1 \r\n\r\n", false, BAD, 0, 0, 0, false, "no status"},
    {"HTTP/1.1 200 O\x01K\r\n\r\n", false, BAD, 0, 0, 0, false, "control byte in the reason"},
    {"HTTP/1.1 200 OK\x7f\r\n\r\n", false, BAD, 0, 0, 0, false, "DEL in the reason"},
    {"HTTP/1.1 200 OK\rX\r\n\r\n", false, BAD, 0, 0, 0, false, "bare CR in the status line"},
    {"HTTP/1.1 200 OK\n\n", false, BAD, 0, 0, 0, false, "bare LF"},
    {"http/1.1 200 OK\r\n\r\n", false, NOT, 0, 0, 0, false, "HTTP-name is case-sensitive"},
    {"HTTP/2 200\r\n\r\n", false, NOT, 0, 0, 0, false, "HTTP/2"},
    {"HTTP/1.10 200 OK\r\n\r\n", false, NOT, 0, 0, 0, false, "a two-digit minor version"},
    {"HTTP/1.x 200 OK\r\n\r\n", false, NOT, 0, 0, 0, false, "not a version"},
    {"HTTP/1.1\r\n\r\n", false, NOT, 0, 0, 0, false, "a version and no status"},
    {"<html><body>", false, NOT, 0, 0, 0, false, "HTTP/0.9: a body without a head"},
    {"\x16\x03\x03\x00\x02", false, NOT, 0, 0, 0, false, "TLS"},
    {" HTTP/1.1 200 OK\r\n\r\n", false, NOT, 0, 0, 0, false, "leading space"},
    {"\r\nHTTP/1.1 200 OK\r\n\r\n", false, NOT, 0, 0, 0, false, "leading empty line"},
    /* header lines, as strict as a request's */
    {"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 0\r\n\r\n", false, BAD, 0, 0,
     0, false, "obsolete folding"},
    {"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", false, BAD, 0, 0, 0, false,
     "space before the colon"},
    {"HTTP/1.1 200 OK\r\nX-A\r\n\r\n", false, BAD, 0, 0, 0, false, "no colon"},
    {"HTTP/1.1 200 OK\r\n: v\r\n\r\n", false, BAD, 0, 0, 0, false, "empty name"},
    {"HTTP/1.1 200 OK\r\nX(y): v\r\n\r\n", false, BAD, 0, 0, 0, false, "name not a token"},
    {"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", false, BAD, 0, 0, 0, false, "bare CR in a value"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", false, HTTP_HEAD_NEED_MORE, 0, 0, 0, false,
     "head not finished"},
    {"HTTP/1.", false, HTTP_HEAD_NEED_MORE, 0, 0, 0, false, "part of the version"},
};
#undef OK
#undef BAD
#undef NOT
#undef NONE
#undef LEN
#undef CHUNKED
#undef CLOSE

static void test_response_rows(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(resp_rows) / sizeof(resp_rows[0]); i++) {
        const struct resp_row *r = &resp_rows[i];
        size_t len = strlen(r->head);
        struct http_response h;
        enum http_head_status st = http_response_parse((const uint8_t *)r->head, len,
                                                       r->head_request, &h);

        if (st != r->st)
            fail_msg("row %zu (%s): status %d, want %d", i, r->why, st, r->st);
        if (st != HTTP_HEAD_OK)
            continue;
        if (h.status != r->status || h.body != r->body || h.content_length != r->length ||
            h.close != r->close)
            fail_msg("row %zu (%s): %u body %d length %llu close %d, want %u %d %llu %d", i,
                     r->why, h.status, h.body, (unsigned long long)h.content_length, h.close,
                     r->status, r->body, (unsigned long long)r->length, r->close);
        assert_int_equal(h.head_len, len);
        assert_int_equal(h.minor, (unsigned)(r->head[7] - '0'));
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

/* Feeds S to framing F in pieces of STEP bytes; returns bytes consumed, or -1. */
static long feed(struct http_framing f, const char *s, size_t step, enum http_frame_state *end)
{
    size_t off = 0, len = strlen(s);

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

/* The same after request HEAD. */
static long frame(const char *head, const char *s, size_t step, enum http_frame_state *end)
{
    struct http_head h;
    struct http_framing f;

    assert_int_equal(http_head_parse((const uint8_t *)head, strlen(head), &h), HTTP_HEAD_OK);
    http_framing_start(&f, &h);
    return feed(f, s, step, end);
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

static void test_response_fields(void **state)
{
    static const char pipelined[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
    static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n";
    const uint8_t *b = (const uint8_t *)pipelined;
    struct http_response r;
    struct http_framing f;
    size_t off;

    (void)state;
    assert_int_equal(http_response_parse(b, sizeof(pipelined) - 1, false, &r), HTTP_HEAD_OK);
    assert_int_equal(r.head_len, 38);
    assert_int_equal(r.body, HTTP_BODY_LENGTH);
    /* the body ends where the next response's head starts: parse it from there */
    http_framing_start_response(&f, &r);
    off = r.head_len;
    assert_int_equal(http_framing_advance(&f, b + off, sizeof(pipelined) - 1 - off), 3);
    assert_int_equal(f.state, HTTP_FRAME_HEAD);
    off += 3;
    assert_int_equal(http_response_parse(b + off, sizeof(pipelined) - 1 - off, false, &r),
                     HTTP_HEAD_OK);
    assert_int_equal(r.status, 204);
    assert_true(r.close);
    assert_int_equal(off + r.head_len, sizeof(pipelined) - 1);

    /* the same bytes answering a HEAD: no body, "abc" would be the next head */
    assert_int_equal(http_response_parse(b, sizeof(pipelined) - 1, true, &r), HTTP_HEAD_OK);
    assert_int_equal(r.body, HTTP_BODY_NONE);
    assert_int_equal(http_response_parse(b + r.head_len, 3, false, &r), HTTP_HEAD_NOT_HTTP);

    assert_int_equal(http_response_parse((const uint8_t *)nul, sizeof(nul) - 1, false, &r),
                     HTTP_HEAD_BAD);                        /* a NUL in a value */
}

static void test_response_sizes_and_prefixes(void **state)
{
    static uint8_t big[HTTP_HEAD_MAX + 100];
    static const char *const heads[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.0 304 Not Modified\r\n\r\n",
    };
    struct http_response r;
    size_t i, j, n;

    (void)state;
    for (j = 0; j < sizeof(heads) / sizeof(heads[0]); j++) {
        for (i = 0; i < strlen(heads[j]); i++) {       /* every split point: read more */
            if (http_response_parse((const uint8_t *)heads[j], i, false, &r) !=
                HTTP_HEAD_NEED_MORE)
                fail_msg("head %zu, prefix of %zu bytes: not NEED_MORE", j, i);
        }
        assert_int_equal(http_response_parse((const uint8_t *)heads[j], i, false, &r),
                         HTTP_HEAD_OK);
    }

    n = (size_t)sprintf((char *)big, "HTTP/1.1 200 OK\r\n");
    while (n + 20 < sizeof(big))
        n += (size_t)sprintf((char *)big + n, "X-Pad: %010zu\r\n", n);
    assert_int_equal(http_response_parse(big, n, false, &r), HTTP_HEAD_TOO_BIG);
    assert_int_equal(http_response_parse(big, HTTP_HEAD_MAX, false, &r), HTTP_HEAD_TOO_BIG);
    assert_int_equal(http_response_parse(big, HTTP_HEAD_MAX - 1, false, &r),
                     HTTP_HEAD_NEED_MORE);

    /* a head of exactly HTTP_HEAD_MAX bytes is still one */
    n = (size_t)sprintf((char *)big, "HTTP/1.1 200 OK\r\nX-Pad: ");
    memset(big + n, 'a', HTTP_HEAD_MAX - n - 4);
    memcpy(big + HTTP_HEAD_MAX - 4, "\r\n\r\n", 4);
    assert_int_equal(http_response_parse(big, HTTP_HEAD_MAX + 1, false, &r), HTTP_HEAD_OK);
    assert_int_equal(r.head_len, HTTP_HEAD_MAX);

    n = (size_t)sprintf((char *)big, "HTTP/1.1 200 OK\r\n");
    for (i = 0; i < HTTP_HEADERS_MAX; i++)
        n += (size_t)sprintf((char *)big + n, "X%zu: y\r\n", i);
    n += (size_t)sprintf((char *)big + n, "\r\n");
    assert_int_equal(http_response_parse(big, n, false, &r), HTTP_HEAD_OK);
    n = (size_t)sprintf((char *)big + n - 2, "Y: z\r\n\r\n") + n - 2;
    assert_int_equal(http_response_parse(big, n, false, &r), HTTP_HEAD_TOO_BIG);
}

/* Responses share the request bodies' framing; NONE and CLOSE start between messages. */
static void test_response_framing(void **state)
{
    static const struct {
        const char *head;
        bool head_request;
        const char *body;
        long used;              /* bytes of the first message; -1: malformed */
        const char *why;
    } frames[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, "helloHTTP", 5,
         "length body, then the next head"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, "HTTP", 0, "empty body"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, "HTTP", 0, "HEAD"},
        {"HTTP/1.1 304 Not Modified\r\n\r\n", false, "HTTP", 0, "304"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false,
         "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nHTTP", 21, "chunked with a trailer"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, "3\r\nabcd\r\n", -1,
         "chunk longer than its size"},
        {"HTTP/1.1 200 OK\r\n\r\n", false, "everything until close", 0,
         "until close: the caller reads to EOF"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, "3\r\nabc", 0,
         "not chunked last: until close"},
    };
    size_t i, step;

    (void)state;
    for (i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        struct http_response r;
        struct http_framing f;

        assert_int_equal(http_response_parse((const uint8_t *)frames[i].head,
                                             strlen(frames[i].head), frames[i].head_request,
                                             &r), HTTP_HEAD_OK);
        http_framing_start_response(&f, &r);
        for (step = 1; step <= 64; step *= 4) {     /* any split gives the same answer */
            enum http_frame_state end;
            long used = feed(f, frames[i].body, step, &end);

            if (used != frames[i].used)
                fail_msg("row %zu (%s), step %zu: used %ld, want %ld", i, frames[i].why, step,
                         used, frames[i].used);
            if (used >= 0)
                assert_int_equal(end, HTTP_FRAME_HEAD);
        }
    }
}

static void test_rewrite(void **state)
{
    static const char head[] =
        "POST /v1/x?q=1 HTTP/1.1\r\nHost: api.test\r\nAuthorization: Basic c2FuZGJveA==\r\n"
        "Auth: keep\r\nAuthorization-Hint: keep\r\nX-Api-Key: sandbox\r\ncookie: a=b\r\n"
        "Content-Length: 2\r\naUTHORIZATION: again\r\n\r\n";
    static const char *const auth[] = {"authorization"};
    static const char *const several[] = {"Authorization", "x-api-key", "COOKIE"};
    static const char *const host[] = {"host"};
    static const char bearer[] = "Authorization: Bearer real\r\nX-Api-Key: real\r\n";
    static const struct {
        const char *const *drop;
        size_t n_drop;
        const char *add;
        const char *want;
        const char *why;
    } cases[] = {
        {auth, 1, "",
         "POST /v1/x?q=1 HTTP/1.1\r\nHost: api.test\r\nAuth: keep\r\nAuthorization-Hint: keep\r\n"
         "X-Api-Key: sandbox\r\ncookie: a=b\r\nContent-Length: 2\r\n\r\n",
         "one name, every line of it, in any case; its prefix and extension stay"},
        {several, 3, bearer,
         "POST /v1/x?q=1 HTTP/1.1\r\nHost: api.test\r\nAuth: keep\r\nAuthorization-Hint: keep\r\n"
         "Content-Length: 2\r\nAuthorization: Bearer real\r\nX-Api-Key: real\r\n\r\n",
         "several names, names in other cases; lines added before the blank line"},
        {NULL, 0, bearer,
         "POST /v1/x?q=1 HTTP/1.1\r\nHost: api.test\r\nAuthorization: Basic c2FuZGJveA==\r\n"
         "Auth: keep\r\nAuthorization-Hint: keep\r\nX-Api-Key: sandbox\r\ncookie: a=b\r\n"
         "Content-Length: 2\r\naUTHORIZATION: again\r\nAuthorization: Bearer real\r\n"
         "X-Api-Key: real\r\n\r\n", "nothing dropped: only added"},
        {NULL, 0, "", head, "nothing to do: the same bytes"},
    };
    uint8_t out[sizeof(head) + sizeof(bearer)];
    struct http_head h, again;
    size_t i, n, want;

    (void)state;
    assert_int_equal(http_head_parse((const uint8_t *)head, sizeof(head) - 1, &h), HTTP_HEAD_OK);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        want = strlen(cases[i].want);
        n = http_head_rewrite((const uint8_t *)head, h.head_len, cases[i].drop, cases[i].n_drop,
                              (const uint8_t *)cases[i].add, strlen(cases[i].add), out,
                              sizeof(out));
        if (n != want || memcmp(out, cases[i].want, n) != 0)
            fail_msg("row %zu (%s): got %zu bytes \"%.*s\"", i, cases[i].why, n, (int)n, out);
        /* it is still the same request to the parser */
        assert_int_equal(http_head_parse(out, n, &again), HTTP_HEAD_OK);
        assert_int_equal(again.head_len, n);
        assert_string_equal(again.method, h.method);
        assert_int_equal(again.path_len, h.path_len);
        assert_memory_equal(again.path, h.path, h.path_len);
        assert_int_equal(again.host_state, HTTP_HOST_OK);
        assert_string_equal(again.host, h.host);
        assert_int_equal(again.body, h.body);
        assert_int_equal(again.content_length, h.content_length);
        /* one byte short of the result is too small, whatever the cut */
        assert_int_equal(http_head_rewrite((const uint8_t *)head, h.head_len, cases[i].drop,
                                           cases[i].n_drop, (const uint8_t *)cases[i].add,
                                           strlen(cases[i].add), out, want - 1), 0);
    }
    assert_int_equal(http_head_rewrite((const uint8_t *)head, h.head_len, auth, 1, NULL, 0, out,
                                       0), 0);
    /* only what the caller names goes: dropping Host leaves a head with none */
    n = http_head_rewrite((const uint8_t *)head, h.head_len, host, 1, NULL, 0, out, sizeof(out));
    assert_int_equal(http_head_parse(out, n, &again), HTTP_HEAD_OK);
    assert_int_equal(again.host_state, HTTP_HOST_MISSING);
    /* a head without headers, and bytes that are no complete head */
    n = http_head_rewrite((const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18, auth, 1,
                          (const uint8_t *)"Authorization: x\r\n", 18, out, sizeof(out));
    assert_int_equal(n, 36);
    assert_memory_equal(out, "GET / HTTP/1.1\r\nAuthorization: x\r\n\r\n", 36);
    assert_int_equal(http_head_rewrite((const uint8_t *)"GET / HTTP/1.1\r\n", 16, auth, 1,
                                       NULL, 0, out, sizeof(out)), 0);
}

/* What a refused request is told: a 403, or a 502 for an upstream failure inside inspected
 * TLS; "Connection: close" unless the connection may go on. It parses as a response. */
static void test_deny_answers(void **state)
{
    char out[DENY_HTTP_MAX];
    struct http_response r;
    size_t n;

    (void)state;
    n = deny_http(out, sizeof(out), "api.example.test", 443, REASON_METHOD_NOT_ALLOWED, true,
                  NULL);
    assert_true(n > 0);
    assert_string_equal(out, "HTTP/1.1 403 Forbidden\r\n"
                             "Content-Type: text/plain; charset=us-ascii\r\n"
                             "Content-Length: 57\r\n"
                             "X-Sluice-Reason: method_not_allowed\r\n"
                             "\r\n"
                             "sluice: api.example.test:443 denied (method_not_allowed)\n");
    assert_int_equal(http_response_parse((const uint8_t *)out, n, false, &r), HTTP_HEAD_OK);
    assert_int_equal(r.status, 403);
    assert_false(r.close);
    assert_int_equal(r.head_len + r.content_length, n);
    n = deny_http(out, sizeof(out), "x\r\ny.test", 443, REASON_UPSTREAM_CERT_INVALID,
                  false, NULL);
    assert_int_equal(http_response_parse((const uint8_t *)out, n, false, &r), HTTP_HEAD_OK);
    assert_int_equal(r.status, 502);
    assert_true(r.close);
    assert_non_null(strstr(out, "X-Sluice-Reason: upstream_cert_invalid\r\n"));
    assert_non_null(strstr(out, "sluice: x??y.test:443 denied"));   /* no header injection */
    /* the way to the server failed, whatever the protocol: a gateway's answer */
    n = deny_http(out, sizeof(out), "db.test", 80, REASON_PRIVATE_DESTINATION, false, NULL);
    assert_int_equal(http_response_parse((const uint8_t *)out, n, false, &r), HTTP_HEAD_OK);
    assert_int_equal(r.status, 502);
    n = deny_http(out, sizeof(out), "db.test", 80, REASON_HOST_MISMATCH, false,
                  "a hint\n");
    assert_non_null(strstr(out, "denied (host_mismatch)\na hint\n"));
    assert_int_equal(http_response_parse((const uint8_t *)out, n, false, &r), HTTP_HEAD_OK);
    assert_int_equal(r.status, 403);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_sizes_and_prefixes),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_response_rows),
        cmocka_unit_test(test_response_fields),
        cmocka_unit_test(test_response_sizes_and_prefixes),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_deny_answers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
