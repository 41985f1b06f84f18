/*
 * A strict reader of flat JSON objects: strings (with the escapes JSON has),
 * numbers, true, false and null as values; nothing nested. What the flow log
 * writes, and nothing more.
 */
#include "flowrec.h"

#include <stddef.h>
#include <string.h>

struct cur {
    const char *p, *end;
};

static const struct {
    const char *key;
    size_t off, size;
} str_fields[] = {
    {"ts", offsetof(struct flowrec, ts), sizeof(((struct flowrec *)0)->ts)},
    {"sandbox", offsetof(struct flowrec, sandbox), sizeof(((struct flowrec *)0)->sandbox)},
    {"event", offsetof(struct flowrec, event), sizeof(((struct flowrec *)0)->event)},
    {"proto", offsetof(struct flowrec, proto), sizeof(((struct flowrec *)0)->proto)},
    {"verdict", offsetof(struct flowrec, verdict), sizeof(((struct flowrec *)0)->verdict)},
    {"reason", offsetof(struct flowrec, reason), sizeof(((struct flowrec *)0)->reason)},
    {"host", offsetof(struct flowrec, host), sizeof(((struct flowrec *)0)->host)},
    {"qname", offsetof(struct flowrec, qname), sizeof(((struct flowrec *)0)->qname)},
    {"orig_dst", offsetof(struct flowrec, orig_dst), sizeof(((struct flowrec *)0)->orig_dst)},
    {"policy", offsetof(struct flowrec, policy), sizeof(((struct flowrec *)0)->policy)},
    {"kind", offsetof(struct flowrec, kind), sizeof(((struct flowrec *)0)->kind)},
    {"why", offsetof(struct flowrec, why), sizeof(((struct flowrec *)0)->why)},
    {"subject", offsetof(struct flowrec, subject), sizeof(((struct flowrec *)0)->subject)},
};

static const struct {
    const char *key;
    size_t off;
} num_fields[] = {
    {"flow", offsetof(struct flowrec, flow)},
    {"bytes_up", offsetof(struct flowrec, bytes_up)},
    {"bytes_down", offsetof(struct flowrec, bytes_down)},
    {"count", offsetof(struct flowrec, count)},
    {"threshold", offsetof(struct flowrec, threshold)},
};

static void ws(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
        c->p++;
}

static int hexval(char h)
{
    if (h >= '0' && h <= '9')
        return h - '0';
    if (h >= 'a' && h <= 'f')
        return h - 'a' + 10;
    if (h >= 'A' && h <= 'F')
        return h - 'A' + 10;
    return -1;
}

/*
 * A string at the cursor, decoded into OUT (CAP bytes, NUL-terminated; OUT
 * NULL: only skipped). Anything that is not printable ASCII, escaped or
 * raw (\t, \u00e9, a UTF-8 byte), becomes '?'. -1 when malformed or too long.
 */
static int string(struct cur *c, char *out, size_t cap)
{
    size_t n = 0;

    if (c->p >= c->end || *c->p != '"')
        return -1;
    c->p++;
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p++;

        if (ch < 0x20)
            return -1;                  /* a control byte: not JSON */
        if (ch == '\\') {
            if (c->p >= c->end)
                return -1;
            switch (*c->p++) {
            case '"': ch = '"'; break;
            case '\\': ch = '\\'; break;
            case '/': ch = '/'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case 'u': {
                int i, v = 0;

                if (c->end - c->p < 4)
                    return -1;
                for (i = 0; i < 4; i++) {
                    int h = hexval(c->p[i]);

                    if (h < 0)
                        return -1;
                    v = v << 4 | h;
                }
                c->p += 4;
                ch = v > 0x20 && v < 0x7f ? (unsigned char)v : '?';
                break;
            }
            default:
                return -1;
            }
        }
        if (ch < 0x20 || ch >= 0x7f)    /* escaped controls too: fields are printable */
            ch = '?';
        if (out) {
            if (n + 1 >= cap)
                return -1;
            out[n++] = (char)ch;
        }
    }
    if (c->p >= c->end)
        return -1;
    c->p++;                             /* the closing quote */
    if (out)
        out[n] = '\0';
    return 0;
}

/* A number: an unsigned integer at most MAX into *OUT, or (OUT NULL) any JSON number. */
static int number(struct cur *c, uint64_t max, uint64_t *out)
{
    const char *start = c->p;
    uint64_t v = 0;

    if (!out) {
        if (c->p < c->end && *c->p == '-')
            c->p++;
        while (c->p < c->end && strchr("0123456789.eE+-", *c->p))
            c->p++;
        return c->p > start ? 0 : -1;
    }
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        uint64_t d = (uint64_t)(*c->p++ - '0');

        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (c->p == start || (c->p < c->end && strchr(".eE", *c->p)))
        return -1;
    *out = v;
    return 0;
}

static int literal(struct cur *c, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return -1;
    c->p += n;
    return 0;
}

/* A list at C: '[' ITEM (',' ITEM)* ']' or '[]', each ITEM read by FN. */
static int list(struct cur *c, int (*fn)(struct cur *c, void *arg), void *arg)
{
    if (c->p >= c->end || *c->p++ != '[')
        return -1;
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 0;
    }
    for (;;) {
        ws(c);
        if (fn(c, arg) < 0)
            return -1;
        ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            return 0;
        }
        return -1;
    }
}

static int skip(struct cur *c, bool array_ok);

static int skip_scalar(struct cur *c, void *arg)
{
    (void)arg;
    return skip(c, false);
}

/* A value of no interest, skipped: a scalar, or (ARRAY_OK) a list of scalars, as an
 * alert's flows are; nothing deeper. */
static int skip(struct cur *c, bool array_ok)
{
    if (c->p >= c->end)
        return -1;
    switch (*c->p) {
    case '"': return string(c, NULL, 0);
    case 't': return literal(c, "true");
    case 'f': return literal(c, "false");
    case 'n': return literal(c, "null");
    case '[': return array_ok ? list(c, skip_scalar, NULL) : -1;
    default: return number(c, 0, NULL);
    }
}

/* One of an alert's samples: the first FLOWREC_SAMPLES kept (one longer than a sample
 * may be is refused, as any field is). */
static int sample(struct cur *c, void *arg)
{
    struct flowrec *r = arg;
    char *out = r->n_samples < FLOWREC_SAMPLES ? r->samples[r->n_samples] : NULL;

    if (string(c, out, out ? FLOWREC_SAMPLE_MAX : 0) < 0)
        return -1;
    r->n_samples += out != NULL;
    return 0;
}

static int value(struct cur *c, const char *key, struct flowrec *r)
{
    size_t i;
    uint64_t v;

    if (c->p >= c->end)
        return -1;
    for (i = 0; i < sizeof(str_fields) / sizeof(str_fields[0]); i++)
        if (strcmp(key, str_fields[i].key) == 0)
            return string(c, (char *)r + str_fields[i].off, str_fields[i].size);
    if (strcmp(key, "port") == 0) {
        if (number(c, 65535, &v) < 0)
            return -1;
        r->port = (uint16_t)v;
        return 0;
    }
    for (i = 0; i < sizeof(num_fields) / sizeof(num_fields[0]); i++)
        if (strcmp(key, num_fields[i].key) == 0)
            return number(c, UINT64_MAX, (uint64_t *)((char *)r + num_fields[i].off));
    if (strcmp(key, "samples") == 0)
        return list(c, sample, r);
    return skip(c, true);
}

int flowrec_parse(const char *line, size_t len, struct flowrec *r)
{
    struct cur c = {line, line + len};
    char key[32];

    memset(r, 0, sizeof(*r));
    if (len > FLOWREC_LINE_MAX)
        return -1;
    ws(&c);
    if (c.p >= c.end || *c.p++ != '{')
        return -1;
    ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            ws(&c);
            if (string(&c, key, sizeof(key)) < 0)
                return -1;
            ws(&c);
            if (c.p >= c.end || *c.p++ != ':')
                return -1;
            ws(&c);
            if (value(&c, key, r) < 0)
                return -1;
            ws(&c);
            if (c.p < c.end && *c.p == ',') {
                c.p++;
                continue;
            }
            if (c.p < c.end && *c.p == '}') {
                c.p++;
                break;
            }
            return -1;
        }
    }
    ws(&c);
    return c.p == c.end ? 0 : -1;
}
