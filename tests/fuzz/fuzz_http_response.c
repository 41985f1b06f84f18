/*
 * Fuzz target for the HTTP response-head parser and the body framing after
 * it: any bytes are what an origin might answer, read as the answer to a GET
 * and to a HEAD, response after response as a keep-alive connection would
 * carry them. Checks that a head lies inside the input, that the body rules
 * hold, that a verdict depends on neither the bytes after the head nor how the
 * body arrives, and that the framing never takes more than a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http_head.h"


#define RESPONSES_MAX 16        /* responses read from one input */

/* Feeds LEN bytes to F in pieces of STEP as reads would; the message's bytes, or -1. */
static long feed(struct http_framing *f, const uint8_t *p, size_t len, size_t step)
{
    size_t off = 0;

    while (off < len && f->state != HTTP_FRAME_HEAD) {
        size_t n = len - off < step ? len - off : step;
        long used = http_framing_advance(f, p + off, n);

        if (used < 0)
            return -1;
        CHECK((size_t)used <= n);
        off += (size_t)used;
        if ((size_t)used < n)
            break;
    }
    return (long)off;
}

static void check_head(const uint8_t *p, size_t len, bool head_request,
                       const struct http_response *r)
{
    struct http_response again;

    CHECK(r->head_len >= 16 && r->head_len <= len && r->head_len <= HTTP_HEAD_MAX);
    CHECK(memcmp(p + r->head_len - 4, "\r\n\r\n", 4) == 0);
    CHECK(r->status >= 100 && r->status <= 999 && r->minor <= 9);
    if (head_request || r->status < 200 || r->status == 204 || r->status == 304)
        CHECK(r->body == HTTP_BODY_NONE);
    if (r->body == HTTP_BODY_CLOSE)
        CHECK(r->close);
    if (r->body != HTTP_BODY_LENGTH)
        CHECK(r->content_length == 0);
    /* only the head counts, and a head is not complete before its last byte */
    CHECK(http_response_parse(p, r->head_len, head_request, &again) == HTTP_HEAD_OK);
    CHECK(again.head_len == r->head_len && again.status == r->status &&
          again.minor == r->minor && again.body == r->body &&
          again.content_length == r->content_length && again.close == r->close);
    CHECK(http_response_parse(p, r->head_len - 1, head_request, &again) ==
          HTTP_HEAD_NEED_MORE);
}

static void run(const uint8_t *data, size_t size, bool head_request)
{
    size_t off = 0, k;

    for (k = 0; k < RESPONSES_MAX && off < size; k++) {
        const uint8_t *p = data + off;
        size_t len = size - off, rest;
        struct http_response r;
        struct http_framing whole, split;
        enum http_head_status st = http_response_parse(p, len, head_request, &r);
        long used, used_split;

        if (st == HTTP_HEAD_NEED_MORE)
            CHECK(len < HTTP_HEAD_MAX);
        if (st != HTTP_HEAD_OK)
            return;
        check_head(p, len, head_request, &r);

        /* the body, whole and in small reads: the same bytes end the message */
        http_framing_start_response(&whole, &r);
        http_framing_start_response(&split, &r);
        rest = len - r.head_len;
        used = feed(&whole, p + r.head_len, rest, rest ? rest : 1);
        used_split = feed(&split, p + r.head_len, rest, 1 + data[0] % 7);
        CHECK(used == used_split);
        if (used < 0)
            return;
        CHECK(whole.state == split.state && whole.left == split.left);
        CHECK((size_t)used <= rest);
        if (r.body == HTTP_BODY_NONE || r.body == HTTP_BODY_CLOSE)
            CHECK(used == 0 && whole.state == HTTP_FRAME_HEAD);
        if (r.body == HTTP_BODY_LENGTH)
            CHECK((uint64_t)used == (r.content_length < rest ? r.content_length : rest));
        if (whole.state != HTTP_FRAME_HEAD || r.body == HTTP_BODY_CLOSE || r.close)
            return;                     /* the body runs on, or nothing may follow it */
        off += r.head_len + (size_t)used;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, false);
    run(data, size, true);
    return 0;
}
