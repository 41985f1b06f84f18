/*
 * CIDR prefixes and a table that finds every prefix containing an address,
 * longest first. A lookup costs one hash probe per distinct prefix length in
 * the table (at most 33 for v4, 129 for v6), never a scan over the entries.
 */
#ifndef SLUICE_CIDR_H
#define SLUICE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIDR_STRLEN 50          /* "ffff:...:ffff/128" plus NUL, with room */

struct cidr {
    uint8_t family;             /* AF_INET or AF_INET6 */
    uint8_t len;                /* prefix length */
    uint8_t addr[16];           /* network address, host bits zero */
};

enum cidr_status {
    CIDR_OK = 0,
    CIDR_SYNTAX,                /* not ADDR/LEN */
    CIDR_BAD_LENGTH,            /* length outside 0-32 / 0-128 */
    CIDR_HOST_BITS,             /* bits set past the prefix; OUT holds the fixed network */
};

/*
 * Parses "192.0.2.0/24" or "2001:db8::/32" (a bare address is a /32 or /128).
 * On CIDR_HOST_BITS, *OUT is the prefix with the host bits cleared, so a
 * message can suggest it.
 */
enum cidr_status cidr_parse(const char *s, struct cidr *out);

/* Writes the canonical text form ("192.0.2.0/24") to BUF. */
void cidr_format(const struct cidr *c, char buf[CIDR_STRLEN]);

/* True when ADDR (4 or 16 bytes of FAMILY) lies inside C. */
bool cidr_contains(const struct cidr *c, int family, const uint8_t *addr);

/* Number of addresses as a power of two: 32 - len for v4, 128 - len for v6. */
unsigned cidr_host_bits(const struct cidr *c);

struct cidr_table;

struct cidr_table *cidr_table_new(void);
void cidr_table_free(struct cidr_table *t);

/* Adds C with VALUE; -EEXIST if C is already there (*EXISTING gets its value), -ENOMEM. */
int cidr_table_add(struct cidr_table *t, const struct cidr *c, int32_t value,
                   int32_t *existing);

/*
 * Writes the values of up to MAX prefixes containing ADDR to VALUES, longest
 * prefix first, and returns how many it wrote.
 */
size_t cidr_table_match(const struct cidr_table *t, int family, const uint8_t *addr,
                        int32_t *values, size_t max);

size_t cidr_table_count(const struct cidr_table *t);

#endif
