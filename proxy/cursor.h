/*
 * Bounds-checked reading of untrusted bytes. Every read either succeeds
 * whole or marks the cursor failed and returns zero; a failed cursor stays
 * failed, so a parser can read a run of fields and check once at the end.
 */
#ifndef SLUICE_CURSOR_H
#define SLUICE_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cur {
    const uint8_t *p;
    size_t n;                   /* bytes left */
    bool bad;                   /* a read ran past the end */
};

static inline struct cur cur_init(const uint8_t *p, size_t n)
{
    struct cur c = {p, n, false};

    return c;
}

static inline bool cur_take(struct cur *c, size_t len, const uint8_t **out)
{
    if (c->bad || c->n < len) {
        c->bad = true;
        c->n = 0;
        *out = NULL;
        return false;
    }
    *out = c->p;
    c->p += len;
    c->n -= len;
    return true;
}

static inline uint8_t cur_u8(struct cur *c)
{
    const uint8_t *b;

    return cur_take(c, 1, &b) ? b[0] : 0;
}

static inline uint16_t cur_u16(struct cur *c)
{
    const uint8_t *b;

    return cur_take(c, 2, &b) ? (uint16_t)((unsigned)b[0] << 8 | b[1]) : 0;
}

static inline uint32_t cur_u24(struct cur *c)
{
    const uint8_t *b;

    return cur_take(c, 3, &b) ? (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2] : 0;
}

static inline void cur_skip(struct cur *c, size_t len)
{
    const uint8_t *b;

    cur_take(c, len, &b);
}

/* A sub-cursor over the next LEN bytes (failed, and C failed, if there are fewer). */
static inline struct cur cur_sub(struct cur *c, size_t len)
{
    const uint8_t *b;
    struct cur s = {NULL, 0, true};

    if (cur_take(c, len, &b))
        s = cur_init(b, len);
    return s;
}

#endif
