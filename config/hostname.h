/*
 * Hostname validation and normalization: the one place that decides what a
 * name is. Pure functions over bytes; used on policy patterns, SNI, Host
 * headers and DNS question names alike.
 */
#ifndef SLUICE_HOSTNAME_H
#define SLUICE_HOSTNAME_H

#include <stddef.h>
#include <stdint.h>

#define HOSTNAME_MAX 253        /* RFC 1035 presentation length, no trailing dot */
#define HOSTNAME_LABEL_MAX 63

enum hostname_status {
    HOSTNAME_OK = 0,
    HOSTNAME_EMPTY,
    HOSTNAME_TOO_LONG,
    HOSTNAME_LABEL_EMPTY,
    HOSTNAME_LABEL_TOO_LONG,
    HOSTNAME_BAD_CHAR,          /* outside letters, digits, '-', '.' */
    HOSTNAME_NON_ASCII,
    HOSTNAME_HYPHEN,            /* a label starts or ends with '-' */
    HOSTNAME_IP_LITERAL,        /* an address in any form inet_aton/inet_pton take */
};

/*
 * Validates NAME (LEN bytes, untrusted, not NUL-terminated) and writes its
 * canonical form to OUT: ASCII lowercase, one trailing dot removed. OUT holds
 * HOSTNAME_MAX + 1 bytes and is NUL-terminated on success; *OUT_LEN gets the
 * length. Returns HOSTNAME_OK or the first problem found.
 */
enum hostname_status hostname_normalize(const uint8_t *name, size_t len,
                                        char out[HOSTNAME_MAX + 1], size_t *out_len);

/*
 * LEN bytes of S (untrusted: what a sandbox sent) as printable ASCII into OUT
 * (CAP bytes, NUL-terminated, cut to fit): every other byte, space included,
 * becomes '?'. Returns the length written. For messages and pages that show a
 * name, never for deciding on one.
 */
size_t hostname_printable(char *out, size_t cap, const char *s, size_t len);

/* A short description ("label longer than 63 characters"). */
const char *hostname_strerror(enum hostname_status st);

#endif
