/*
 * HTTP/1.x heads as pure functions over the bytes received so far: request
 * heads (what the policy and the relay need, checked strictly: CRLF only, no
 * folding, one Host, no conflicting framing), response heads (where the body
 * ends), and the framing of the bodies that follow them.
 */
#ifndef SLUICE_HTTP_HEAD_H
#define SLUICE_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hostname.h"

#define HTTP_HEAD_MAX 16384     /* largest head accepted, request or response */
#define HTTP_METHOD_MAX 24
#define HTTP_HEADERS_MAX 100

enum http_head_status {
    HTTP_HEAD_OK = 0,
    HTTP_HEAD_NEED_MORE,        /* a prefix of a plausible head: read more */
    HTTP_HEAD_NOT_HTTP,         /* the first bytes are not an HTTP/1 request (status) line */
    HTTP_HEAD_BAD,              /* HTTP, but malformed or ambiguous */
    HTTP_HEAD_TOO_BIG,          /* no end of head within HTTP_HEAD_MAX, or too many headers */
};

enum http_host {
    HTTP_HOST_OK,               /* exactly one valid Host; see host, port */
    HTTP_HOST_MISSING,
    HTTP_HOST_DUPLICATE,
    HTTP_HOST_INVALID,          /* not a hostname (an IP literal, a bad name or port) */
    HTTP_HOST_MISMATCH,         /* an absolute-form target names another authority */
};

enum http_body {
    HTTP_BODY_NONE,
    HTTP_BODY_LENGTH,           /* content_length bytes */
    HTTP_BODY_CHUNKED,
    HTTP_BODY_CLOSE,            /* responses only: the body runs until the server closes */
};

struct http_head {
    size_t head_len;            /* bytes up to and including the blank line */
    char method[HTTP_METHOD_MAX + 1];
    const uint8_t *target;      /* points into the input; not NUL-terminated */
    size_t target_len;
    const uint8_t *path;        /* the target's path ("/" for absolute-form "http://h") */
    size_t path_len;
    unsigned minor;             /* HTTP/1.<minor> */
    enum http_host host_state;
    char host[HOSTNAME_MAX + 1];
    size_t host_len;
    uint16_t port;              /* from Host, or 80 when it names none */
    bool port_given;            /* Host named the port */
    enum http_body body;
    uint64_t content_length;
    bool connect;               /* CONNECT method */
    bool close;                 /* Connection: close, or HTTP/1.0 without keep-alive */
    bool upgrade_websocket;
    bool upgrade_h2c;
};

enum http_head_status http_head_parse(const uint8_t *buf, size_t len, struct http_head *out);

/*
 * Copies the request head of HEAD_LEN bytes at BUF (already parsed by http_head_parse())
 * into OUT, leaving out every header whose name equals one of the N_DROP names
 * (case-insensitive), and adding the ADD_LEN bytes of ADD (complete "Name: value\r\n"
 * lines) just before the blank line. Returns the length written, or 0 when CAP is too small
 * (or BUF is not a complete head). The request line and the other headers stay byte for
 * byte, in order. OUT must not overlap BUF. The result can exceed HTTP_HEAD_MAX or
 * HTTP_HEADERS_MAX when ADD is longer than what was dropped.
 */
size_t http_head_rewrite(const uint8_t *buf, size_t head_len, const char *const *drop,
                         size_t n_drop, const uint8_t *add, size_t add_len,
                         uint8_t *out, size_t cap);

struct http_response {
    size_t head_len;            /* bytes up to and including the blank line */
    unsigned status;            /* 100..999 */
    unsigned minor;             /* HTTP/1.<minor> */
    enum http_body body;
    uint64_t content_length;    /* when body is HTTP_BODY_LENGTH */
    bool close;                 /* the server closes after this response (see below) */
};

/*
 * Parses a response head; HEAD_REQUEST says it answers a HEAD, which makes it
 * bodiless whatever it says. The body follows RFC 9112 6.3: none for HEAD,
 * 1xx, 204 and 304; chunked when that is the final transfer coding (a
 * Content-Length beside it is ignored); until close for any other coding or
 * when neither header is there; else Content-Length. Strict where readers
 * could disagree on where the body ends: a malformed or conflicting
 * Content-Length is HTTP_HEAD_BAD even where it does not count, and so are
 * chunked applied twice, an empty coding, and parameters on chunked. The
 * close flag is set by "Connection: close", by HTTP/1.0 without keep-alive, by
 * a body that ends at close, and by a framing RFC 9112 6.1 calls faulty
 * (Transfer-Encoding with Content-Length, or in an HTTP/1.0 response, whose
 * body then ends at close): no further response is read on such a connection.
 */
enum http_head_status http_response_parse(const uint8_t *buf, size_t len, bool head_request,
                                          struct http_response *out);

/*
 * Message framing on a keep-alive connection: where one message's body ends
 * and the next head begins. Only reads; the bytes pass on unchanged.
 */
enum http_frame_state {
    HTTP_FRAME_HEAD,            /* between messages: a head comes next */
    HTTP_FRAME_LENGTH,          /* left bytes of a Content-Length body */
    HTTP_FRAME_CHUNK_SIZE,      /* a chunk-size line */
    HTTP_FRAME_CHUNK_DATA,      /* left bytes of chunk data */
    HTTP_FRAME_CHUNK_CRLF,      /* the CRLF after chunk data */
    HTTP_FRAME_TRAILER,         /* trailer lines up to the empty one */
};

#define HTTP_FRAME_LINE_MAX 4096    /* longest chunk-size or trailer line */

struct http_framing {
    enum http_frame_state state;
    uint64_t left;
    size_t line;                /* bytes of the current line so far */
    bool cr;                    /* the line's CR was seen: LF must follow */
    bool digits;                /* the chunk size has a digit */
    bool ext;                   /* in a chunk extension */
};

/* Starts the body of request H (or nothing, when it has none). */
void http_framing_start(struct http_framing *f, const struct http_head *h);

/*
 * Starts the body of response R. HTTP_BODY_NONE and HTTP_BODY_CLOSE both
 * start in HTTP_FRAME_HEAD: a close-delimited body is the caller's to read
 * to EOF (nothing on the connection follows it).
 */
void http_framing_start_response(struct http_framing *f, const struct http_response *r);

/*
 * Consumes up to LEN bytes of body; returns how many belong to the current
 * message (the state is HTTP_FRAME_HEAD when it ended), or -1 when the
 * chunked framing is malformed.
 */
long http_framing_advance(struct http_framing *f, const uint8_t *p, size_t len);

#endif
