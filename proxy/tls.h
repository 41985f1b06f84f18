/*
 * The proxy's TLS for inspect mode (OpenSSL): the context that faces the
 * sandbox (a leaf minted per name under the inspect-mode CA, HTTP/1.1 only,
 * session resumption on) and the one that faces real servers (the chain
 * verified against the system store or --upstream-ca, and the name).
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>

struct leaf_stats;
struct policy;
struct diag_list;

#define TLS_ERR_MAX 512

struct tls_ctx;

/*
 * Reads the CA (before the privilege drop: the key file is never opened
 * again) and the trust store for upstream servers (UPSTREAM_CA, or the
 * system's), and makes both contexts. Returns 0, or -1 with ERR.
 */
int tls_ctx_open(struct tls_ctx **out, const char *ca_cert, const char *ca_key,
                 const char *upstream_ca, char err[TLS_ERR_MAX]);
void tls_ctx_free(struct tls_ctx *t);

/*
 * Adds an error to DIAGS for every inspect rule of P that cannot be served:
 * with no CA (T is NULL) every one of them, else each one the CA's name
 * constraints do not cover. Returns how many.
 */
size_t tls_policy_check(const struct tls_ctx *t, const struct policy *p,
                        struct diag_list *diags);

/*
 * An SSL that terminates the sandbox's TLS on FD as NAME, the bytes already
 * read from the socket (PRE, PRE_LEN: the ClientHello) read first. NULL when
 * no leaf could be made (the CA expired) or out of memory.
 */
SSL *tls_server_new(struct tls_ctx *t, int fd, const char *name, const uint8_t *pre,
                    size_t pre_len);

/* An SSL that connects to NAME on FD, verifying its chain and its name. */
SSL *tls_client_new(struct tls_ctx *t, int fd, const char *name);

/* The leaf cache's counters. */
void tls_leaf_stats(const struct tls_ctx *t, struct leaf_stats *st);

#endif
