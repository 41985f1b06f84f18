/* JSON writing helpers shared by the flow log and the control socket. */
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(struct json_out *o, size_t len)
{
    size_t cap;
    char *np;

    if (o->n + len < o->cap)
        return true;
    if (!o->grow || o->failed)
        return false;
    for (cap = o->cap ? o->cap : 256; o->n + len >= cap; cap *= 2)
        ;
    np = realloc(o->p, cap);
    if (!np) {
        o->failed = true;
        return false;
    }
    o->p = np;
    o->cap = cap;
    return true;
}

void json_raw(struct json_out *o, const char *s, size_t len)
{
    if (!reserve(o, len)) {
        if (o->grow)
            return;
        len = o->n + 1 < o->cap ? o->cap - o->n - 1 : 0;   /* fixed: cut at the cap */
    }
    memcpy(o->p + o->n, s, len);
    o->n += len;
}

void json_printf(struct json_out *o, const char *f, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, f);
    n = vsnprintf(tmp, sizeof(tmp), f, ap);
    va_end(ap);
    if (n > 0)
        json_raw(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

void json_str(struct json_out *o, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    json_raw(o, "\"", 1);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

        if (c == '"' || c == '\\')
            json_raw(o, (const char[]){'\\', (char)c}, 2);
        else if (c >= 0x20 && c < 0x7f)
            json_raw(o, (const char *)&c, 1);
        else
            json_raw(o, e, 6);
    }
    json_raw(o, "\"", 1);
}

void json_key_str(struct json_out *o, const char *key, const char *v, size_t len)
{
    if (!v)
        return;
    json_printf(o, ",\"%s\":", key);
    json_str(o, v, len ? len : strlen(v));
}

void json_key_u64(struct json_out *o, const char *key, uint64_t v)
{
    json_printf(o, ",\"%s\":%llu", key, (unsigned long long)v);
}
