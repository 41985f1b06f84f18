/*
 * Hostname rules: LDH labels of 1-63 bytes, 253 in all, no IP literals. A
 * name whose last label is all digits is an IP literal in some form (TLDs are
 * never numeric), which catches 127.1, 2130706433 and 0177.0.0.1; inet_aton
 * catches the hex forms (0x7f.1) and inet_pton the v6 ones.
 */
#include "hostname.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

static bool is_ldh(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static bool looks_like_ip(const char *s, size_t len)
{
    unsigned char buf[sizeof(struct in6_addr)];
    struct in_addr a4;
    size_t i = len;

    if (inet_aton(s, &a4) || inet_pton(AF_INET6, s, buf) == 1)
        return true;
    /* all-digit last label */
    while (i > 0 && s[i - 1] >= '0' && s[i - 1] <= '9')
        i--;
    return i < len && (i == 0 || s[i - 1] == '.');
}

enum hostname_status hostname_normalize(const uint8_t *name, size_t len,
                                        char out[HOSTNAME_MAX + 1], size_t *out_len)
{
    size_t i, label = 0;
    bool has_colon = false;

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0)
        return HOSTNAME_EMPTY;
    if (len > HOSTNAME_MAX)
        return HOSTNAME_TOO_LONG;

    for (i = 0; i < len; i++) {
        uint8_t c = name[i];

        if (c >= 0x80)
            return HOSTNAME_NON_ASCII;
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        if (c == ':')
            has_colon = true;
        out[i] = (char)c;
    }
    out[len] = '\0';

    /* Bracketed or colon forms are v6 literals; say so rather than "bad char". */
    if (has_colon || out[0] == '[' || looks_like_ip(out, len))
        return HOSTNAME_IP_LITERAL;

    for (i = 0; i <= len; i++) {
        if (i == len || out[i] == '.') {
            if (label == 0)
                return HOSTNAME_LABEL_EMPTY;
            if (label > HOSTNAME_LABEL_MAX)
                return HOSTNAME_LABEL_TOO_LONG;
            if (out[i - label] == '-' || out[i - 1] == '-')
                return HOSTNAME_HYPHEN;
            label = 0;
            continue;
        }
        if (!is_ldh((uint8_t)out[i]))
            return HOSTNAME_BAD_CHAR;
        label++;
    }
    *out_len = len;
    return HOSTNAME_OK;
}

const char *hostname_strerror(enum hostname_status st)
{
    switch (st) {
    case HOSTNAME_OK: return "valid";
    case HOSTNAME_EMPTY: return "empty name";
    case HOSTNAME_TOO_LONG: return "name longer than 253 characters";
    case HOSTNAME_LABEL_EMPTY: return "empty label (two dots in a row, or a leading dot)";
    case HOSTNAME_LABEL_TOO_LONG: return "label longer than 63 characters";
    case HOSTNAME_BAD_CHAR: return "character other than a-z, 0-9, '-' and '.'";
    case HOSTNAME_NON_ASCII: return "non-ASCII character";
    case HOSTNAME_HYPHEN: return "label starts or ends with '-'";
    case HOSTNAME_IP_LITERAL: return "IP address literal, not a name";
    }
    return "invalid name";
}

size_t hostname_printable(char *out, size_t cap, const char *s, size_t len)
{
    size_t i;

    if (cap == 0)
        return 0;
    for (i = 0; s && i < len && i + 1 < cap; i++)
        out[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[i] = '\0';
    return i;
}
