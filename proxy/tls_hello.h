/*
 * TLS ClientHello sniffing: a pure function over the bytes a client sent
 * first. It reassembles the hello across TLS records (and so across TCP
 * segments: the caller passes everything received so far) and extracts what
 * the policy needs: the SNI and whether the client asks for ECH.
 */
#ifndef SLUICE_TLS_HELLO_H
#define SLUICE_TLS_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hostname.h"

#define TLS_HELLO_MAX 16384     /* largest ClientHello accepted (PQ key shares fit) */
#define TLS_RECORD_MAX 16384    /* RFC 8446 5.1: plaintext record limit */
/* Bytes a sniff buffer needs for the largest hello in the smallest records. */
#define TLS_SNIFF_MAX (TLS_HELLO_MAX + 4 + 5 * 64)

enum tls_hello_status {
    TLS_HELLO_OK = 0,
    TLS_HELLO_NEED_MORE,        /* a prefix of a plausible hello: read more */
    TLS_HELLO_NOT_TLS,          /* the first bytes are not a TLS handshake record */
    TLS_HELLO_MALFORMED,        /* TLS, but not a well-formed ClientHello */
    TLS_HELLO_TOO_BIG,          /* a hello over TLS_HELLO_MAX, or in too many records */
};

enum tls_sni {
    TLS_SNI_NONE,               /* no server_name extension */
    TLS_SNI_OK,                 /* exactly one valid host_name; see sni */
    TLS_SNI_INVALID,            /* several, an unknown name type, or a bad hostname */
};

struct tls_hello {
    uint16_t version;           /* legacy_version of the hello */
    enum tls_sni sni_state;
    char sni[HOSTNAME_MAX + 1]; /* normalized (lowercase, no root dot) when TLS_SNI_OK */
    size_t sni_len;
    bool ech;                   /* carries encrypted_client_hello */
    bool alpn_h2;               /* offers "h2" in ALPN */
};

/* Parses BUF (LEN bytes received so far) into *OUT. */
enum tls_hello_status tls_hello_parse(const uint8_t *buf, size_t len, struct tls_hello *out);

#endif
