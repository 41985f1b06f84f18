/*
 * Inspect mode's two TLS contexts and the BIO both sides use: a socket BIO
 * that first hands OpenSSL the bytes the proxy already read (the sandbox's
 * ClientHello, read to decide the flow) and then reads the socket itself.
 */
#include "tls.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ca.h"
#include "diag.h"
#include "leaf.h"
#include "policy.h"

#define SESSION_CACHE 1024          /* sandbox sessions kept for resumption */
#define SESSION_ID_CONTEXT "sluice"

struct tls_ctx {
    SSL_CTX *server;                /* faces the sandbox */
    SSL_CTX *client;                /* faces real servers */
    struct leaf_cache *leaves;
    struct ca_info info;            /* the CA's constraints, for tls_policy_check() */
    BIO_METHOD *bio;
};

/* ---- the BIO: already-read bytes, then the socket ---- */

struct sock_bio {
    int fd;
    uint8_t *pre;                   /* read before the socket; freed once consumed */
    size_t pre_off, pre_len;
};

static int bio_read(BIO *b, char *out, size_t len, size_t *got)
{
    struct sock_bio *s = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    if (s->pre) {
        size_t k = s->pre_len - s->pre_off < len ? s->pre_len - s->pre_off : len;

        memcpy(out, s->pre + s->pre_off, k);
        s->pre_off += k;
        if (s->pre_off == s->pre_len) {
            free(s->pre);
            s->pre = NULL;
        }
        *got = k;
        return 1;
    }
    n = recv(s->fd, out, len, 0);
    if (n > 0) {
        *got = (size_t)n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        BIO_set_retry_read(b);
    return 0;                       /* no retry flag: the end of the stream, or an error */
}

static int bio_write(BIO *b, const char *in, size_t len, size_t *put)
{
    struct sock_bio *s = BIO_get_data(b);
    ssize_t n = send(s->fd, in, len, MSG_NOSIGNAL);

    BIO_clear_retry_flags(b);
    if (n >= 0) {
        *put = (size_t)n;
        return 1;
    }
    if (errno == EAGAIN || errno == EINTR)
        BIO_set_retry_write(b);
    return 0;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;   /* nothing is buffered here */
}

static int bio_destroy(BIO *b)
{
    struct sock_bio *s = BIO_get_data(b);

    if (s) {
        free(s->pre);
        free(s);
    }
    BIO_set_data(b, NULL);
    return 1;
}

static BIO *bio_new(const struct tls_ctx *t, int fd, const uint8_t *pre, size_t pre_len)
{
    struct sock_bio *s = calloc(1, sizeof(*s));
    BIO *b = s ? BIO_new(t->bio) : NULL;

    if (!b) {
        free(s);
        return NULL;
    }
    s->fd = fd;
    if (pre_len > 0) {
        s->pre = malloc(pre_len);
        if (!s->pre) {
            free(s);
            BIO_free(b);
            return NULL;
        }
        memcpy(s->pre, pre, pre_len);
        s->pre_len = pre_len;
    }
    BIO_set_data(b, s);
    BIO_set_init(b, 1);
    return b;
}

/* ---- contexts ---- */

/* HTTP/1.1 or nothing: a client that offers only h2 gets no ALPN, and speaks
 * HTTP/1.1 or gives up; it never waits on a protocol the proxy cannot read. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned int i = 0;

    (void)ssl;
    (void)arg;
    while (i < inlen) {
        unsigned int n = in[i];

        if (i + 1 + n > inlen)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *ctx_new(const SSL_METHOD *m)
{
    SSL_CTX *ctx = SSL_CTX_new(m);

    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* a peer that closes without close_notify has ended its stream: HTTP
     * framing, not TLS, says whether a message was cut short */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    /* writes resume from wherever the window moved; idle flows keep no
     * record buffers */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

static int openssl_fail(char err[TLS_ERR_MAX], const char *what)
{
    unsigned long e = ERR_get_error();

    snprintf(err, TLS_ERR_MAX, "%s: %s", what,
             e ? ERR_reason_error_string(e) : "out of memory");
    ERR_clear_error();
    return -1;
}

int tls_ctx_open(struct tls_ctx **out, const char *ca_cert, const char *ca_key,
                 const char *upstream_ca, char err[TLS_ERR_MAX])
{
    struct tls_ctx *t = calloc(1, sizeof(*t));
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    char cerr[CA_ERR_MAX];
    int rc = -1;

    *out = NULL;
    if (!t)
        return openssl_fail(err, "inspect mode");
    if (ca_load(ca_cert, ca_key, &cert, &key, cerr) < 0 ||
        ca_info_of(cert, ca_cert, &t->info, cerr) < 0) {
        snprintf(err, TLS_ERR_MAX, "%s", cerr);
        goto out;
    }
    t->leaves = leaf_cache_new(cert, key, LEAF_CACHE_DEFAULT);
    t->bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice socket");
    t->server = ctx_new(TLS_server_method());
    t->client = ctx_new(TLS_client_method());
    if (!t->leaves || !t->bio || !t->server || !t->client ||
        !BIO_meth_set_read_ex(t->bio, bio_read) || !BIO_meth_set_write_ex(t->bio, bio_write) ||
        !BIO_meth_set_ctrl(t->bio, bio_ctrl) || !BIO_meth_set_destroy(t->bio, bio_destroy)) {
        openssl_fail(err, "inspect mode");
        goto out;
    }
    SSL_CTX_set_alpn_select_cb(t->server, alpn_select, NULL);
    SSL_CTX_set_session_id_context(t->server, (const unsigned char *)SESSION_ID_CONTEXT,
                                   sizeof(SESSION_ID_CONTEXT) - 1);
    SSL_CTX_sess_set_cache_size(t->server, SESSION_CACHE);

    SSL_CTX_set_verify(t->client, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_alpn_protos(t->client, (const unsigned char *)"\x08http/1.1", 9) != 0) {
        openssl_fail(err, "inspect mode");
        goto out;
    }
    /* the store is read now, whole: after the privilege drop no file is opened for it */
    if (!upstream_ca)
        upstream_ca = X509_get_default_cert_file();
    if (SSL_CTX_load_verify_file(t->client, upstream_ca) != 1) {
        unsigned long e = ERR_get_error();

        snprintf(err, TLS_ERR_MAX, "%s: %s (the CA certificates that upstream servers' chains "
                 "are verified against: install ca-certificates, or name a PEM file with "
                 "--upstream-ca)", upstream_ca, e ? ERR_reason_error_string(e) : "unreadable");
        ERR_clear_error();
        goto out;
    }
    *out = t;
    t = NULL;
    rc = 0;
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    tls_ctx_free(t);
    return rc;
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->server);
    SSL_CTX_free(t->client);
    leaf_cache_free(t->leaves);
    ca_info_clear(&t->info);
    BIO_meth_free(t->bio);
    free(t);
}

size_t tls_policy_check(const struct tls_ctx *t, const struct policy *p,
                        struct diag_list *diags)
{
    size_t i, n = 0;

    if (t)
        return ca_check_policy(&t->info, p, "the CA (--ca-cert)", diags);
    for (i = 0; i < p->n_rules; i++) {
        const struct policy_rule *r = &p->rules[i];

        if (!r->inspect)
            continue;
        diag_add_in(diags, r->file, DIAG_ERROR, r->line, r->col,
                    "inspect rule for '%s' needs the inspect-mode CA: start sluice-proxy with "
                 "--ca-cert and --ca-key (sluicectl ca init makes them); without them it "
                 "would pass by SNI alone", r->pattern);
        n++;
    }
    return n;
}

/* ---- connections ---- */

static SSL *ssl_new(struct tls_ctx *t, SSL_CTX *ctx, int fd, const uint8_t *pre,
                    size_t pre_len)
{
    SSL *ssl = SSL_new(ctx);
    BIO *b = ssl ? bio_new(t, fd, pre, pre_len) : NULL;

    if (!b) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_bio(ssl, b, b);
    return ssl;
}

SSL *tls_server_new(struct tls_ctx *t, int fd, const char *name, const uint8_t *pre,
                    size_t pre_len)
{
    SSL *ssl;
    X509 *cert;
    EVP_PKEY *key;

    if (leaf_get(t->leaves, name, time(NULL), &cert, &key) < 0) {
        ERR_clear_error();              /* the next SSL_get_error() must not see it */
        return NULL;
    }
    ssl = ssl_new(t, t->server, fd, pre, pre_len);
    if (ssl && (SSL_use_certificate(ssl, cert) != 1 || SSL_use_PrivateKey(ssl, key) != 1)) {
        SSL_free(ssl);
        ssl = NULL;
    }
    if (ssl)
        SSL_set_accept_state(ssl);
    ERR_clear_error();
    return ssl;
}

SSL *tls_client_new(struct tls_ctx *t, int fd, const char *name)
{
    SSL *ssl = ssl_new(t, t->client, fd, NULL, 0);

    if (ssl && (SSL_set_tlsext_host_name(ssl, name) != 1 || SSL_set1_host(ssl, name) != 1)) {
        SSL_free(ssl);
        ssl = NULL;
    }
    if (ssl)
        SSL_set_connect_state(ssl);
    ERR_clear_error();
    return ssl;
}

void tls_leaf_stats(const struct tls_ctx *t, struct leaf_stats *st)
{
    leaf_stats(t->leaves, st);
}
