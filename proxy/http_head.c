/*
 * Request- and response-head parsing (RFC 9112), strict on purpose: a proxy
 * that reads a head differently from the origin (or a response differently
 * from the client) is a smuggling vector, so whatever two readers could
 * disagree on (bare LF, folding, two Hosts, two lengths, Transfer-Encoding
 * with Content-Length in a request) is refused rather than guessed.
 */
#include "http_head.h"

#include <string.h>
#include <strings.h>

static bool is_tchar(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Compares bytes S..S+LEN with the word W, ignoring ASCII case. */
static bool word_eq(const uint8_t *s, size_t len, const char *w)
{
    return strlen(w) == len && strncasecmp((const char *)s, w, len) == 0;
}

static void trim(const uint8_t **s, size_t *len)
{
    while (*len > 0 && ((*s)[0] == ' ' || (*s)[0] == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

/*
 * The elements of a comma-separated header value, trimmed, empty ones
 * included: where a reader that skips them and one that does not could
 * disagree (the final transfer coding), the caller refuses them.
 */
struct list {
    const uint8_t *p;
    size_t left;
    bool end;
};

static struct list list_init(const uint8_t *v, size_t len)
{
    struct list l = {v, len, len == 0};

    return l;
}

static bool list_next(struct list *l, const uint8_t **t, size_t *n)
{
    const uint8_t *comma;
    size_t k;

    if (l->end)
        return false;
    comma = memchr(l->p, ',', l->left);
    k = comma ? (size_t)(comma - l->p) : l->left;
    *t = l->p;
    *n = k;
    trim(t, n);
    if (comma) {
        l->p = comma + 1;
        l->left -= k + 1;
    } else {
        l->end = true;
    }
    return true;
}

/* "close" ends the connection after this message; "keep-alive" keeps an HTTP/1.0 one. */
static void connection_tokens(const uint8_t *v, size_t len, unsigned minor, bool *close)
{
    struct list l = list_init(v, len);
    const uint8_t *t;
    size_t n;

    while (list_next(&l, &t, &n)) {
        if (word_eq(t, n, "close"))
            *close = true;
        else if (word_eq(t, n, "keep-alive") && minor == 0)
            *close = false;
    }
}

/*
 * A Content-Length value: digits (at most 19, so no overflow), or, when LIST,
 * a comma-separated list of equal ones (RFC 9110 8.6 lets a recipient take
 * those as one). False on anything else.
 */
static bool parse_length(const uint8_t *v, size_t len, bool list, uint64_t *out)
{
    size_t i = 0;
    bool have = false;

    for (;;) {
        size_t start = i;
        uint64_t cl = 0;

        for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
            if (i - start == 19)
                return false;
            cl = cl * 10 + (uint64_t)(v[i] - '0');
        }
        if (i == start || (have && cl != *out))
            return false;
        *out = cl;
        have = true;
        if (i == len)
            return true;
        if (!list)
            return false;
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i == len || v[i] != ',')
            return false;
        for (i++; i < len && (v[i] == ' ' || v[i] == '\t'); i++)
            ;
    }
}

/* "host[:port]" to a normalized name and a port; false if it is not one. */
static bool parse_authority(const uint8_t *s, size_t len, char name[HOSTNAME_MAX + 1],
                            size_t *name_len, uint16_t *port)
{
    size_t colon = len, i;
    unsigned long p = 0;

    if (len == 0 || s[0] == '[')
        return false;                   /* empty, or an IPv6 literal */
    for (i = 0; i < len; i++)
        if (s[i] == ':')
            colon = i;
    *port = 80;
    if (colon < len) {
        if (colon + 1 == len || len - colon - 1 > 5)
            return false;
        for (i = colon + 1; i < len; i++) {
            if (s[i] < '0' || s[i] > '9')
                return false;
            p = p * 10 + (unsigned long)(s[i] - '0');
        }
        if (p < 1 || p > 65535)
            return false;
        *port = (uint16_t)p;
    }
    return hostname_normalize(s, colon, name, name_len) == HOSTNAME_OK;
}

/* Where the head ends (the index after CRLF CRLF), 0 if not yet; -1 on a bare LF. */
static long find_end(const uint8_t *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i == 0 || buf[i - 1] != '\r')
            return -1;
        if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return (long)(i + 1);
    }
    return 0;
}

/*
 * Where a head ends (HEAD_LEN, the blank line included) and how long its start
 * line is (LINE_LEN, without its CRLF), looking no further than HTTP_HEAD_MAX.
 */
static enum http_head_status head_bounds(const uint8_t *buf, size_t len, size_t *head_len,
                                         size_t *line_len)
{
    long end = find_end(buf, len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX);
    const uint8_t *cr;

    if (end < 0)
        return HTTP_HEAD_BAD;
    if (end == 0)
        return len >= HTTP_HEAD_MAX ? HTTP_HEAD_TOO_BIG : HTTP_HEAD_NEED_MORE;
    *head_len = (size_t)end;
    cr = memchr(buf, '\r', (size_t)end - 2);
    if (!cr || cr[1] != '\n')
        return HTTP_HEAD_BAD;           /* a bare CR */
    *line_len = (size_t)(cr - buf);
    return HTTP_HEAD_OK;
}

struct field {
    const uint8_t *name;        /* a token */
    size_t name_len;
    const uint8_t *value;       /* trimmed of surrounding whitespace */
    size_t value_len;
};

/*
 * Splits the field line at *P (the head's lines run up to END, the blank
 * line) and moves *P past it; COUNT caps the lines at HTTP_HEADERS_MAX.
 */
static enum http_head_status field_next(const uint8_t **p, const uint8_t *end, size_t *count,
                                        struct field *f)
{
    const uint8_t *s = *p, *eol = memchr(s, '\r', (size_t)(end - s)), *colon;
    size_t i;

    if (!eol || eol[1] != '\n')
        return HTTP_HEAD_BAD;           /* a bare CR inside a line */
    if (++*count > HTTP_HEADERS_MAX)
        return HTTP_HEAD_TOO_BIG;
    if (s[0] == ' ' || s[0] == '\t')
        return HTTP_HEAD_BAD;           /* obsolete line folding */
    colon = memchr(s, ':', (size_t)(eol - s));
    if (!colon || colon == s)
        return HTTP_HEAD_BAD;
    f->name = s;
    f->name_len = (size_t)(colon - s);
    for (i = 0; i < f->name_len; i++)
        if (!is_tchar(s[i]))
            return HTTP_HEAD_BAD;       /* includes space before the colon */
    f->value = colon + 1;
    f->value_len = (size_t)(eol - f->value);
    for (i = 0; i < f->value_len; i++)
        if ((f->value[i] < 0x20 && f->value[i] != '\t') || f->value[i] == 0x7f)
            return HTTP_HEAD_BAD;
    trim(&f->value, &f->value_len);
    *p = eol + 2;
    return HTTP_HEAD_OK;
}

static enum http_head_status request_line(const uint8_t *line, size_t len,
                                          struct http_head *h)
{
    size_t i = 0, m, t;

    while (i < len && is_tchar(line[i]))
        i++;
    if (i == 0 || i > HTTP_METHOD_MAX || i == len || line[i] != ' ')
        return HTTP_HEAD_BAD;
    memcpy(h->method, line, i);
    h->method[i] = '\0';
    m = ++i;
    while (i < len && line[i] > 0x20 && line[i] < 0x7f)
        i++;
    t = i - m;
    if (t == 0 || i == len || line[i] != ' ')
        return HTTP_HEAD_BAD;
    h->target = line + m;
    h->target_len = t;
    i++;
    if (len - i != 8 || memcmp(line + i, "HTTP/1.", 7) != 0 ||
        line[i + 7] < '0' || line[i + 7] > '9')
        return HTTP_HEAD_BAD;
    h->minor = (unsigned)(line[i + 7] - '0');
    h->close = h->minor == 0;
    return HTTP_HEAD_OK;
}

/* The upgrades a request asks for that the relay must see coming. */
static void upgrade_tokens(const uint8_t *v, size_t len, struct http_head *h)
{
    struct list l = list_init(v, len);
    const uint8_t *t;
    size_t n;

    while (list_next(&l, &t, &n)) {
        if (word_eq(t, n, "websocket"))
            h->upgrade_websocket = true;
        else if (word_eq(t, n, "h2c"))
            h->upgrade_h2c = true;
    }
}

enum http_head_status http_head_parse(const uint8_t *buf, size_t len, struct http_head *out)
{
    const uint8_t *host_v = NULL, *p, *end;
    size_t host_n = 0, headers = 0, line_len = 0, i;
    bool have_cl = false, have_te = false;
    enum http_head_status st;

    memset(out, 0, sizeof(*out));
    /* Not HTTP as soon as the first bytes cannot start a request line. */
    for (i = 0; i < len && i <= HTTP_METHOD_MAX && buf[i] != ' '; i++)
        if (!is_tchar(buf[i]))
            return HTTP_HEAD_NOT_HTTP;
    if (i > HTTP_METHOD_MAX || (i < len && i == 0))
        return HTTP_HEAD_NOT_HTTP;

    /* A complete first line that is no request line (SMTP, SSH...) is not HTTP:
     * say so now rather than wait for a blank line that will never come. */
    p = memchr(buf, '\n', len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX);
    if (p) {
        const uint8_t *eol = p > buf && p[-1] == '\r' ? p - 1 : p;

        if (eol - buf < 10 || memcmp(eol - 9, " HTTP/1.", 8) != 0)
            return HTTP_HEAD_NOT_HTTP;
    }

    if ((st = head_bounds(buf, len, &out->head_len, &line_len)) != HTTP_HEAD_OK)
        return st;
    if ((st = request_line(buf, line_len, out)) != HTTP_HEAD_OK)
        return st;
    end = buf + out->head_len - 2;      /* the final CRLF */
    for (p = buf + line_len + 2; p < end;) {
        struct field f;

        if ((st = field_next(&p, end, &headers, &f)) != HTTP_HEAD_OK)
            return st;
        if (word_eq(f.name, f.name_len, "host")) {
            if (host_v) {
                out->host_state = HTTP_HOST_DUPLICATE;
            } else {
                host_v = f.value;
                host_n = f.value_len;
            }
        } else if (word_eq(f.name, f.name_len, "content-length")) {
            uint64_t cl = 0;

            if (!parse_length(f.value, f.value_len, false, &cl) ||
                (have_cl && cl != out->content_length))
                return HTTP_HEAD_BAD;
            have_cl = true;
            out->content_length = cl;
        } else if (word_eq(f.name, f.name_len, "transfer-encoding")) {
            if (have_te || !word_eq(f.value, f.value_len, "chunked"))
                return HTTP_HEAD_BAD;   /* only a lone "chunked" is read the same by all */
            have_te = true;
        } else if (word_eq(f.name, f.name_len, "connection")) {
            connection_tokens(f.value, f.value_len, out->minor, &out->close);
        } else if (word_eq(f.name, f.name_len, "upgrade")) {
            upgrade_tokens(f.value, f.value_len, out);
        }
    }
    if (have_te && have_cl)
        return HTTP_HEAD_BAD;
    out->body = have_te ? HTTP_BODY_CHUNKED : have_cl ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    out->connect = strcmp(out->method, "CONNECT") == 0;

    if (out->host_state == HTTP_HOST_DUPLICATE)
        ;
    else if (!host_v)
        out->host_state = HTTP_HOST_MISSING;
    else if (!parse_authority(host_v, host_n, out->host, &out->host_len, &out->port))
        out->host_state = HTTP_HOST_INVALID;
    else
        out->host_state = HTTP_HOST_OK;
    /* inside TLS a Host without a port means the TLS port, not 80 */
    out->port_given = out->host_state == HTTP_HOST_OK && memchr(host_v, ':', host_n) != NULL;

    /* the target: origin-form, asterisk-form, or absolute-form agreeing with Host */
    out->path = out->target;
    out->path_len = out->target_len;
    if (out->connect || out->target[0] == '/' ||
        (out->target_len == 1 && out->target[0] == '*'))
        return HTTP_HEAD_OK;
    if (out->target_len < 7 || strncasecmp((const char *)out->target, "http://", 7) != 0)
        return HTTP_HEAD_BAD;
    {
        const uint8_t *auth = out->target + 7, *stop = out->target + out->target_len, *q;
        char name[HOSTNAME_MAX + 1];
        size_t name_len;
        uint16_t port;

        for (q = auth; q < stop && *q != '/' && *q != '?' && *q != '#'; q++)
            ;
        if (memchr(auth, '@', (size_t)(q - auth)))
            return HTTP_HEAD_BAD;       /* userinfo: never guess whose host it is */
        out->path = q < stop ? q : (const uint8_t *)"/";
        out->path_len = q < stop ? (size_t)(stop - q) : 1;
        if (out->host_state == HTTP_HOST_OK &&
            (!parse_authority(auth, (size_t)(q - auth), name, &name_len, &port) ||
             name_len != out->host_len || memcmp(name, out->host, name_len) != 0 ||
             port != out->port))
            out->host_state = HTTP_HOST_MISMATCH;
    }
    return HTTP_HEAD_OK;
}

/* Whether the field line at LINE (up to its CR at EOL) is named one of DROP. */
static bool dropped(const uint8_t *line, const uint8_t *eol, const char *const *drop,
                    size_t n_drop)
{
    const uint8_t *colon = memchr(line, ':', (size_t)(eol - line));
    size_t i;

    for (i = 0; colon && i < n_drop; i++)
        if (word_eq(line, (size_t)(colon - line), drop[i]))
            return true;
    return false;
}

size_t http_head_rewrite(const uint8_t *buf, size_t head_len, const char *const *drop,
                         size_t n_drop, const uint8_t *add, size_t add_len,
                         uint8_t *out, size_t cap)
{
    const uint8_t *p, *eol, *end;
    size_t n = 0;

    if (head_len < 4 || memcmp(buf + head_len - 4, "\r\n\r\n", 4) != 0)
        return 0;
    end = buf + head_len - 2;           /* the blank line */
    for (p = buf; p < end; p = eol + 2) {
        size_t line;

        eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol[1] != '\n')
            return 0;                   /* not a head http_head_parse() accepted */
        line = (size_t)(eol + 2 - p);
        if (p != buf && dropped(p, eol, drop, n_drop))
            continue;                   /* the request line is never a header */
        if (line > cap - n)
            return 0;
        memcpy(out + n, p, line);
        n += line;
    }
    if (add_len > cap - n || 2 > cap - n - add_len)
        return 0;
    if (add_len)
        memcpy(out + n, add, add_len);
    memcpy(out + n + add_len, "\r\n", 2);
    return n + add_len + 2;
}

/* "HTTP/1.x DDD [reason]"; the reason is free text without control bytes. */
static enum http_head_status status_line(const uint8_t *line, size_t len,
                                         struct http_response *r)
{
    size_t i;

    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' ||
        line[8] != ' ')
        return HTTP_HEAD_BAD;
    if (line[9] < '1' || line[9] > '9' || line[10] < '0' || line[10] > '9' ||
        line[11] < '0' || line[11] > '9')
        return HTTP_HEAD_BAD;
    /* the SP before an empty reason is required by the grammar, but servers
     * that leave it out exist and no reader ends the line elsewhere */
    if (len > 12 && line[12] != ' ')
        return HTTP_HEAD_BAD;
    for (i = 13; i < len; i++)
        if ((line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f)
            return HTTP_HEAD_BAD;
    r->minor = (unsigned)(line[7] - '0');
    r->status = (unsigned)(line[9] - '0') * 100 + (unsigned)(line[10] - '0') * 10 +
                (unsigned)(line[11] - '0');
    r->close = r->minor == 0;
    return HTTP_HEAD_OK;
}

/*
 * The codings of one Transfer-Encoding line, in order: CHUNKED_FINAL tells
 * whether the last one (so far, over all lines) is chunked. Refused: an empty
 * element (a reader that skips it and one that takes it as the final coding
 * disagree), a coding that is no token, chunked with parameters or twice.
 */
static bool transfer_codings(const uint8_t *v, size_t len, bool *chunked_seen,
                             bool *chunked_final)
{
    struct list l = list_init(v, len);
    const uint8_t *t;
    size_t n, i;

    if (len == 0)
        return false;
    while (list_next(&l, &t, &n)) {
        for (i = 0; i < n && is_tchar(t[i]); i++)
            ;
        if (i == 0)
            return false;
        *chunked_final = word_eq(t, i, "chunked");
        if (*chunked_final && (i < n || *chunked_seen))
            return false;
        *chunked_seen = *chunked_seen || *chunked_final;
        while (i < n && (t[i] == ' ' || t[i] == '\t'))
            i++;
        if (i < n && t[i] != ';')
            return false;               /* only parameters may follow a coding */
    }
    return true;
}

enum http_head_status http_response_parse(const uint8_t *buf, size_t len, bool head_request,
                                          struct http_response *out)
{
    static const char start[] = "HTTP/1.# ";    /* '#': a digit */
    const uint8_t *p, *end;
    size_t headers = 0, line_len = 0, i;
    bool have_cl = false, have_te = false, chunked_seen = false, chunked_final = false;
    enum http_head_status st;

    memset(out, 0, sizeof(*out));
    /* Not HTTP as soon as the first bytes cannot start "HTTP/1.x ": an
     * HTTP/2 or HTTP/0.9 server, or TLS where plain text was expected. */
    for (i = 0; i < len && i < sizeof(start) - 1; i++)
        if (start[i] == '#' ? buf[i] < '0' || buf[i] > '9' : buf[i] != (uint8_t)start[i])
            return HTTP_HEAD_NOT_HTTP;

    if ((st = head_bounds(buf, len, &out->head_len, &line_len)) != HTTP_HEAD_OK)
        return st;
    if ((st = status_line(buf, line_len, out)) != HTTP_HEAD_OK)
        return st;
    end = buf + out->head_len - 2;      /* the final CRLF */
    for (p = buf + line_len + 2; p < end;) {
        struct field f;

        if ((st = field_next(&p, end, &headers, &f)) != HTTP_HEAD_OK)
            return st;
        if (word_eq(f.name, f.name_len, "content-length")) {
            uint64_t cl = 0;

            if (!parse_length(f.value, f.value_len, true, &cl) ||
                (have_cl && cl != out->content_length))
                return HTTP_HEAD_BAD;
            have_cl = true;
            out->content_length = cl;
        } else if (word_eq(f.name, f.name_len, "transfer-encoding")) {
            if (!transfer_codings(f.value, f.value_len, &chunked_seen, &chunked_final))
                return HTTP_HEAD_BAD;
            have_te = true;
        } else if (word_eq(f.name, f.name_len, "connection")) {
            connection_tokens(f.value, f.value_len, out->minor, &out->close);
        }
    }

    if (head_request || out->status < 200 || out->status == 204 || out->status == 304)
        out->body = HTTP_BODY_NONE;
    else if (have_te)
        out->body = chunked_final && out->minor > 0 ? HTTP_BODY_CHUNKED : HTTP_BODY_CLOSE;
    else if (have_cl)
        out->body = HTTP_BODY_LENGTH;
    else
        out->body = HTTP_BODY_CLOSE;
    if (out->body != HTTP_BODY_LENGTH)
        out->content_length = 0;
    if (out->body == HTTP_BODY_CLOSE || (have_te && (have_cl || out->minor == 0)))
        out->close = true;
    return HTTP_HEAD_OK;
}

/* One start for requests and responses: only the body kind and length differ. */
static void framing_start(struct http_framing *f, enum http_body body, uint64_t length)
{
    memset(f, 0, sizeof(*f));
    if (body == HTTP_BODY_CHUNKED) {
        f->state = HTTP_FRAME_CHUNK_SIZE;
    } else if (body == HTTP_BODY_LENGTH && length > 0) {
        f->state = HTTP_FRAME_LENGTH;
        f->left = length;
    } else {
        f->state = HTTP_FRAME_HEAD;     /* none, or until close: see the header */
    }
}

void http_framing_start(struct http_framing *f, const struct http_head *h)
{
    framing_start(f, h->body, h->content_length);
}

void http_framing_start_response(struct http_framing *f, const struct http_response *r)
{
    framing_start(f, r->body, r->content_length);
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (uint8_t)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

long http_framing_advance(struct http_framing *f, const uint8_t *p, size_t len)
{
    size_t i = 0;

    while (i < len && f->state != HTTP_FRAME_HEAD) {
        uint8_t c = p[i];

        if (f->state == HTTP_FRAME_LENGTH || f->state == HTTP_FRAME_CHUNK_DATA) {
            size_t n = len - i < f->left ? len - i : (size_t)f->left;

            i += n;
            f->left -= n;
            if (f->left == 0)
                f->state = f->state == HTTP_FRAME_LENGTH ? HTTP_FRAME_HEAD
                                                         : HTTP_FRAME_CHUNK_CRLF;
            continue;
        }
        i++;
        if (++f->line > HTTP_FRAME_LINE_MAX)
            return -1;
        if (c == '\r') {
            if (f->cr)
                return -1;
            f->cr = true;
            continue;
        }
        if (f->cr != (c == '\n'))
            return -1;              /* a bare CR, or a bare LF */
        switch (f->state) {
        case HTTP_FRAME_CHUNK_SIZE:         /* HEX [; extension] CRLF */
            if (c == '\n') {
                if (!f->digits)
                    return -1;
                f->state = f->left ? HTTP_FRAME_CHUNK_DATA : HTTP_FRAME_TRAILER;
            } else if (!f->ext && hexval(c) >= 0) {
                if (f->left >> 59)
                    return -1;      /* a size no body has */
                f->left = f->left * 16 + (uint64_t)hexval(c);
                f->digits = true;
            } else if (f->digits && (c == ';' || c == ' ' || c == '\t')) {
                f->ext = true;      /* chunk extensions: skipped up to the CRLF */
            } else if (!f->ext) {
                return -1;
            }
            break;
        case HTTP_FRAME_CHUNK_CRLF:         /* exactly CRLF after the data */
            if (c != '\n' || f->line != 2)
                return -1;
            f->state = HTTP_FRAME_CHUNK_SIZE;
            break;
        case HTTP_FRAME_TRAILER:            /* header lines up to an empty one */
            if (c == '\n' && f->line == 2)
                f->state = HTTP_FRAME_HEAD;
            break;
        default:
            break;
        }
        if (c == '\n') {
            f->line = 0;
            f->cr = false;
            f->digits = false;
            f->ext = false;
        }
    }
    return (long)i;
}
