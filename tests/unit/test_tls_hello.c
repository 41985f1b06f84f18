/*
 * tls_hello_parse: real hellos from curl and openssl (tests/fuzz/corpus), and
 * built ones for every way a hello can be odd, split every way TCP can.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tls_hello.h"

static const char *corpus_dir;

/* ---- a small ClientHello builder ---- */

struct buf {
    uint8_t b[40000];
    size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof(b->b));
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void put8(struct buf *b, unsigned v)
{
    uint8_t x = (uint8_t)v;

    put(b, &x, 1);
}

static void put16(struct buf *b, unsigned v)
{
    put8(b, v >> 8);
    put8(b, v);
}

static void put24(struct buf *b, unsigned v)
{
    put8(b, v >> 16);
    put16(b, v & 0xffff);
}

static void ext(struct buf *e, unsigned type, const void *data, size_t n)
{
    put16(e, type);
    put16(e, (unsigned)n);
    put(e, data, n);
}

/* A server_name extension body with one name of TYPE. */
static size_t sni_body(uint8_t *out, const char *name, size_t nlen, unsigned type)
{
    out[0] = (uint8_t)((nlen + 3) >> 8);
    out[1] = (uint8_t)(nlen + 3);
    out[2] = (uint8_t)type;
    out[3] = (uint8_t)(nlen >> 8);
    out[4] = (uint8_t)nlen;
    memcpy(out + 5, name, nlen);
    return nlen + 5;
}

static void ext_sni(struct buf *e, const char *name)
{
    uint8_t body[300];

    ext(e, 0, body, sni_body(body, name, strlen(name), 0));
}

/* The handshake message: a ClientHello with EXTS (NULL: no extensions block). */
static void hello(struct buf *hs, const struct buf *exts)
{
    static const uint8_t random[32] = {1};
    struct buf body = {.n = 0};

    put16(&body, 0x0303);
    put(&body, random, 32);
    put8(&body, 0);                 /* session id */
    put16(&body, 4);                /* two cipher suites */
    put16(&body, 0x1301);
    put16(&body, 0x1302);
    put8(&body, 1);                 /* null compression */
    put8(&body, 0);
    if (exts) {
        put16(&body, (unsigned)exts->n);
        put(&body, exts->b, exts->n);
    }
    hs->n = 0;
    put8(hs, 1);
    put24(hs, (unsigned)body.n);
    put(hs, body.b, body.n);
}

/* Wraps handshake bytes in records of at most CHUNK bytes. */
static void records(struct buf *out, const struct buf *hs, size_t chunk)
{
    size_t off;

    out->n = 0;
    for (off = 0; off < hs->n; off += chunk) {
        size_t n = hs->n - off < chunk ? hs->n - off : chunk;

        put8(out, 22);
        put16(out, 0x0301);
        put16(out, (unsigned)n);
        put(out, hs->b + off, n);
    }
}

static enum tls_hello_status parse_exts(const struct buf *exts, struct tls_hello *h)
{
    static struct buf hs, rec;

    hello(&hs, exts);
    records(&rec, &hs, 16384);
    return tls_hello_parse(rec.b, rec.n, h);
}

/* ---- tests ---- */

static size_t read_file(const char *name, uint8_t *out, size_t cap)
{
    char path[512];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "%s/%s", corpus_dir, name);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    n = fread(out, 1, cap, f);
    fclose(f);
    return n;
}

static void test_real_hellos(void **state)
{
    uint8_t b[4096];
    struct tls_hello h;
    size_t n, i;

    (void)state;
    n = read_file("curl-pypi.org", b, sizeof(b));
    assert_int_equal(tls_hello_parse(b, n, &h), TLS_HELLO_OK);
    assert_int_equal(h.sni_state, TLS_SNI_OK);
    assert_string_equal(h.sni, "pypi.org");
    assert_false(h.ech);
    for (i = 0; i < n; i++)         /* every TCP split point: more, never a verdict */
        assert_int_equal(tls_hello_parse(b, i, &h), TLS_HELLO_NEED_MORE);

    n = read_file("python-ssl", b, sizeof(b));
    assert_int_equal(tls_hello_parse(b, n, &h), TLS_HELLO_OK);
    assert_string_equal(h.sni, "api.example.test");

    n = read_file("openssl-alpn-h2", b, sizeof(b));
    assert_int_equal(tls_hello_parse(b, n, &h), TLS_HELLO_OK);
    assert_string_equal(h.sni, "files.pythonhosted.org");      /* sent as Files.PythonHosted.org */
    assert_true(h.alpn_h2);
}

static void test_sni_rows(void **state)
{
    static const struct {
        const char *name;
        size_t len;                 /* 0: strlen */
        unsigned type;
        enum tls_sni want;
        const char *why;
    } rows[] = {
        {"example.test", 0, 0, TLS_SNI_OK, "plain"},
        {"EXAMPLE.test.", 0, 0, TLS_SNI_OK, "case and root dot normalized"},
        {"example.test", 0, 1, TLS_SNI_INVALID, "name type other than host_name"},
        {"", 0, 0, TLS_SNI_INVALID, "empty name"},
        {"a\0b.test", 8, 0, TLS_SNI_INVALID, "NUL inside: no truncation to 'a'"},
        {"192.0.2.1", 0, 0, TLS_SNI_INVALID, "IP literal"},
        {"a_b.test", 0, 0, TLS_SNI_INVALID, "non-LDH byte"},
        {"b\xc3\xbc" "cher.test", 0, 0, TLS_SNI_INVALID, "UTF-8"},
        {"a..test", 0, 0, TLS_SNI_INVALID, "empty label"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct buf exts = {.n = 0};
        struct tls_hello h;
        uint8_t body[300];
        size_t len = rows[i].len ? rows[i].len : strlen(rows[i].name);

        ext(&exts, 0, body, sni_body(body, rows[i].name, len, rows[i].type));
        assert_int_equal(parse_exts(&exts, &h), TLS_HELLO_OK);
        if (h.sni_state != rows[i].want)
            fail_msg("row %zu (%s): got %d", i, rows[i].why, h.sni_state);
    }
}

static void test_sni_shapes(void **state)
{
    struct buf exts = {.n = 0};
    struct tls_hello h;
    uint8_t body[64];

    (void)state;
    assert_int_equal(parse_exts(NULL, &h), TLS_HELLO_OK);          /* no extensions */
    assert_int_equal(h.sni_state, TLS_SNI_NONE);

    ext(&exts, 10, "\x00\x02\x00\x1d", 4);                          /* others only */
    assert_int_equal(parse_exts(&exts, &h), TLS_HELLO_OK);
    assert_int_equal(h.sni_state, TLS_SNI_NONE);

    exts.n = 0;                                                     /* two names in one list */
    memcpy(body, "\x00\x0d\x00\x00\x04" "a.ab" "\x00\x00\x03" "b.c", 15);
    ext(&exts, 0, body, 15);
    assert_int_equal(parse_exts(&exts, &h), TLS_HELLO_OK);
    assert_int_equal(h.sni_state, TLS_SNI_INVALID);

    exts.n = 0;                                                     /* list length lies */
    ext(&exts, 0, "\x00\x09\x00\x00\x04" "a.ab", 9);
    assert_int_equal(parse_exts(&exts, &h), TLS_HELLO_OK);
    assert_int_equal(h.sni_state, TLS_SNI_INVALID);

    exts.n = 0;                                                     /* two server_name exts */
    ext_sni(&exts, "a.test");
    ext_sni(&exts, "b.test");
    assert_int_equal(parse_exts(&exts, &h), TLS_HELLO_MALFORMED);

    exts.n = 0;                                                     /* ECH */
    ext_sni(&exts, "public.test");
    ext(&exts, 0xfe0d, "\x00\x01", 2);
    assert_int_equal(parse_exts(&exts, &h), TLS_HELLO_OK);
    assert_true(h.ech);
    assert_string_equal(h.sni, "public.test");
}

static void test_post_quantum_hello(void **state)
{
    static struct buf exts, hs, rec;
    static uint8_t share[2 + 2 + 2 + 1216 + 2 + 2 + 32];
    struct tls_hello h;
    size_t i;

    (void)state;
    /* key_share: X25519MLKEM768 (0x11ec, 1216 bytes) and x25519 (32 bytes) */
    share[0] = (uint8_t)((sizeof(share) - 2) >> 8);
    share[1] = (uint8_t)(sizeof(share) - 2);
    share[2] = 0x11;
    share[3] = 0xec;
    share[4] = 1216 >> 8;
    share[5] = 1216 & 0xff;
    share[6 + 1216] = 0x00;
    share[6 + 1216 + 1] = 0x1d;
    share[6 + 1216 + 3] = 32;
    exts.n = 0;
    ext_sni(&exts, "pq.example.test");
    ext(&exts, 10, "\x00\x04\x11\xec\x00\x1d", 6);
    ext(&exts, 51, share, sizeof(share));
    hello(&hs, &exts);
    assert_true(hs.n > 1300);                   /* what PQ key shares weigh */
    records(&rec, &hs, 16384);
    for (i = 1; i < rec.n; i += 1)              /* 1-byte segments: never a verdict early */
        assert_int_equal(tls_hello_parse(rec.b, i, &h), TLS_HELLO_NEED_MORE);
    assert_int_equal(tls_hello_parse(rec.b, rec.n, &h), TLS_HELLO_OK);
    assert_string_equal(h.sni, "pq.example.test");
}

static void test_splits_and_sizes(void **state)
{
    static struct buf exts, hs, rec;
    static uint8_t pad[20000];
    struct tls_hello h;
    size_t i;

    (void)state;
    exts.n = 0;
    ext_sni(&exts, "big.test");
    ext(&exts, 21, pad, 8000);                  /* an 8 KiB padded / PQ-sized hello */
    hello(&hs, &exts);
    records(&rec, &hs, 1000);                   /* in 9 records */
    assert_int_equal(tls_hello_parse(rec.b, rec.n, &h), TLS_HELLO_OK);
    assert_string_equal(h.sni, "big.test");
    for (i = 0; i < rec.n; i += 97)
        assert_int_equal(tls_hello_parse(rec.b, i, &h), TLS_HELLO_NEED_MORE);

    records(&rec, &hs, 100);                    /* 81 records: split finer than clients do */
    assert_int_equal(tls_hello_parse(rec.b, rec.n, &h), TLS_HELLO_TOO_BIG);

    exts.n = 0;
    ext_sni(&exts, "huge.test");
    ext(&exts, 21, pad, 16400);                 /* over the 16 KiB cap */
    hello(&hs, &exts);
    records(&rec, &hs, 16384);
    assert_int_equal(tls_hello_parse(rec.b, rec.n, &h), TLS_HELLO_TOO_BIG);
}

static void test_not_tls_and_malformed(void **state)
{
    static struct buf exts, hs, rec;
    struct tls_hello h;
    uint8_t b[600];

    (void)state;
    assert_int_equal(tls_hello_parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, &h),
                     TLS_HELLO_NOT_TLS);
    assert_int_equal(tls_hello_parse((const uint8_t *)"\x80\x2e\x01\x00\x02", 5, &h),
                     TLS_HELLO_NOT_TLS);                            /* SSLv2 hello */
    assert_int_equal(tls_hello_parse((const uint8_t *)"\x16\x02\x00", 3, &h),
                     TLS_HELLO_NOT_TLS);                            /* record version 2.x */
    assert_int_equal(tls_hello_parse((const uint8_t *)"\x16", 1, &h), TLS_HELLO_NEED_MORE);
    assert_int_equal(tls_hello_parse((const uint8_t *)"\x16\x03\x01\x00\x00", 5, &h),
                     TLS_HELLO_MALFORMED);                          /* empty record */

    exts.n = 0;
    ext_sni(&exts, "a.test");
    hello(&hs, &exts);
    records(&rec, &hs, 20);
    memcpy(b, rec.b, rec.n);
    b[25] = 21;                                 /* second record: alert, not handshake */
    assert_int_equal(tls_hello_parse(b, rec.n, &h), TLS_HELLO_MALFORMED);

    records(&rec, &hs, 16384);
    memcpy(b, rec.b, rec.n);
    b[5] = 2;                                   /* ServerHello, not ClientHello */
    assert_int_equal(tls_hello_parse(b, rec.n, &h), TLS_HELLO_MALFORMED);
    memcpy(b, rec.b, rec.n);
    b[5 + 4 + 2 + 32] = 33;                     /* session id longer than 32 */
    assert_int_equal(tls_hello_parse(b, rec.n, &h), TLS_HELLO_MALFORMED);
    memcpy(b, rec.b, rec.n);
    b[5 + 4 + 2 + 32 + 1 + 1] = 3;              /* odd cipher-suite length */
    assert_int_equal(tls_hello_parse(b, rec.n, &h), TLS_HELLO_MALFORMED);

    /* bytes after the extensions block, inside the hello: not a well-formed hello */
    hs.b[3] = (uint8_t)(hs.b[3] + 1);
    put8(&hs, 0);
    records(&rec, &hs, 16384);
    assert_int_equal(tls_hello_parse(rec.b, rec.n, &h), TLS_HELLO_MALFORMED);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_hellos),
        cmocka_unit_test(test_sni_rows),
        cmocka_unit_test(test_sni_shapes),
        cmocka_unit_test(test_post_quantum_hello),
        cmocka_unit_test(test_splits_and_sizes),
        cmocka_unit_test(test_not_tls_and_malformed),
    };

    corpus_dir = argc > 1 ? argv[1] : "tests/fuzz/corpus/tls_hello";
    return cmocka_run_group_tests(tests, NULL, NULL);
}
