/*
 * ClientHello parsing (RFC 8446 4.1.2, RFC 6066 3). Strict where the policy
 * depends on it: one server_name extension, one host_name, no duplicate
 * extensions, no trailing bytes; anything else is not a usable SNI.
 */
#include "tls_hello.h"

#include <string.h>

#include "cursor.h"

#define CONTENT_HANDSHAKE 22
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_ECH 0xfe0d
#define NAME_TYPE_HOST 0
#define MAX_RECORDS 64          /* a hello split finer than this is an attack, not a client */

static void parse_sni(struct cur ext, struct tls_hello *out)
{
    struct cur list = cur_sub(&ext, cur_u16(&ext));
    const uint8_t *name;
    uint8_t type;
    uint16_t nlen;

    out->sni_state = TLS_SNI_INVALID;
    if (ext.bad || ext.n != 0)
        return;
    type = cur_u8(&list);
    nlen = cur_u16(&list);
    if (!cur_take(&list, nlen, &name) || list.n != 0 || type != NAME_TYPE_HOST)
        return;         /* truncated, more than one entry, or not a host_name */
    if (hostname_normalize(name, nlen, out->sni, &out->sni_len) == HOSTNAME_OK)
        out->sni_state = TLS_SNI_OK;
}

static bool alpn_has_h2(struct cur ext)
{
    struct cur list = cur_sub(&ext, cur_u16(&ext));

    while (!list.bad && list.n > 0) {
        uint8_t len = cur_u8(&list);
        const uint8_t *proto;

        if (cur_take(&list, len, &proto) && len == 2 && memcmp(proto, "h2", 2) == 0)
            return true;
    }
    return false;
}

static enum tls_hello_status parse_body(struct cur c, struct tls_hello *out)
{
    uint64_t seen[65536 / 64];
    struct cur exts;
    uint16_t cs_len;
    uint8_t sid_len, comp_len;

    out->version = cur_u16(&c);
    cur_skip(&c, 32);                               /* random */
    sid_len = cur_u8(&c);
    if (sid_len > 32)
        return TLS_HELLO_MALFORMED;
    cur_skip(&c, sid_len);
    cs_len = cur_u16(&c);
    if (cs_len < 2 || cs_len % 2)
        return TLS_HELLO_MALFORMED;
    cur_skip(&c, cs_len);
    comp_len = cur_u8(&c);
    if (comp_len < 1)
        return TLS_HELLO_MALFORMED;
    cur_skip(&c, comp_len);
    if (c.bad)
        return TLS_HELLO_MALFORMED;
    if (c.n == 0)
        return TLS_HELLO_OK;                        /* no extensions: no SNI */

    exts = cur_sub(&c, cur_u16(&c));
    if (c.bad || c.n != 0)
        return TLS_HELLO_MALFORMED;
    memset(seen, 0, sizeof(seen));
    while (exts.n > 0) {
        uint16_t type = cur_u16(&exts);
        struct cur data = cur_sub(&exts, cur_u16(&exts));

        if (exts.bad)
            return TLS_HELLO_MALFORMED;
        if (seen[type / 64] & (1ull << (type % 64)))
            return TLS_HELLO_MALFORMED;             /* RFC 8446 4.2: at most one of each */
        seen[type / 64] |= 1ull << (type % 64);
        if (type == EXT_SERVER_NAME)
            parse_sni(data, out);
        else if (type == EXT_ECH)
            out->ech = true;
        else if (type == EXT_ALPN)
            out->alpn_h2 = alpn_has_h2(data);
    }
    return TLS_HELLO_OK;
}

enum tls_hello_status tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *out)
{
    uint8_t hs[TLS_HELLO_MAX + 4];
    size_t hs_len = 0, records = 0;
    struct cur c = cur_init(buf, len);

    memset(out, 0, sizeof(*out));
    if (len == 0)
        return TLS_HELLO_NEED_MORE;
    if (buf[0] != CONTENT_HANDSHAKE)
        return TLS_HELLO_NOT_TLS;
    if (len >= 2 && buf[1] != 3)
        return TLS_HELLO_NOT_TLS;                   /* record version 3.x */

    for (;;) {
        const uint8_t *frag;
        uint16_t rlen;
        uint32_t mlen;

        if (c.n < 5)
            return TLS_HELLO_NEED_MORE;
        if (cur_u8(&c) != CONTENT_HANDSHAKE || cur_u8(&c) != 3)
            return TLS_HELLO_MALFORMED;             /* another record type mid-hello */
        cur_skip(&c, 1);
        rlen = cur_u16(&c);
        if (rlen == 0 || rlen > TLS_RECORD_MAX)
            return TLS_HELLO_MALFORMED;
        if (++records > MAX_RECORDS)
            return TLS_HELLO_TOO_BIG;
        if (c.n < rlen)
            return TLS_HELLO_NEED_MORE;
        cur_take(&c, rlen, &frag);
        if (hs_len + rlen > sizeof(hs))
            return TLS_HELLO_TOO_BIG;
        memcpy(hs + hs_len, frag, rlen);
        hs_len += rlen;
        if (hs_len < 4)
            continue;
        if (hs[0] != HS_CLIENT_HELLO)
            return TLS_HELLO_MALFORMED;
        mlen = (uint32_t)hs[1] << 16 | (uint32_t)hs[2] << 8 | hs[3];
        if (mlen > TLS_HELLO_MAX)
            return TLS_HELLO_TOO_BIG;
        if (hs_len >= 4 + mlen)
            return parse_body(cur_init(hs + 4, mlen), out);
    }
}
