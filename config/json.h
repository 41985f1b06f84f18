/*
 * JSON text written into a buffer: the flow log's fixed lines (cut at the
 * cap, never overrun) and the control socket's replies (a growing buffer).
 * Every string goes through json_str(), which escapes anything that is not
 * printable ASCII, so hostile bytes can never break the text.
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_out {
    char *p;
    size_t cap, n;              /* fixed mode keeps one byte spare for a NUL */
    bool grow;                  /* realloc P as needed (owned by the writer) */
    bool failed;                /* growing failed: the text is incomplete */
};

void json_raw(struct json_out *o, const char *s, size_t len);
__attribute__((format(printf, 2, 3)))
void json_printf(struct json_out *o, const char *fmt, ...);
/* A JSON string of LEN bytes: printable ASCII as is, everything else \u00XX. */
void json_str(struct json_out *o, const char *s, size_t len);
/* ,"KEY":"V" (nothing when V is NULL; LEN 0 means strlen) and ,"KEY":N */
void json_key_str(struct json_out *o, const char *key, const char *v, size_t len);
void json_key_u64(struct json_out *o, const char *key, uint64_t v);

#endif
