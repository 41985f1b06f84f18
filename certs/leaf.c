/*
 * Leaf minting (OpenSSL 3 EVP/X509) and the LRU that keeps them: a hash
 * table on the lowercase name for the lookup, a list for the eviction order.
 */
#include "leaf.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hostname.h"

#define SERIAL_BYTES 16

struct leaf {
    struct leaf *next_hash;
    struct leaf *prev, *next;       /* LRU: most recently used at the head */
    char name[HOSTNAME_MAX + 1];
    uint64_t hash;
    X509 *cert;
    EVP_PKEY *key;
    time_t not_after;
};

struct leaf_cache {
    X509 *ca;
    EVP_PKEY *ca_key;
    time_t ca_not_before, ca_not_after;
    struct leaf **table;
    size_t n_buckets;               /* a power of two, at least twice MAX */
    struct leaf *head, *tail;
    size_t n, max;
    struct leaf_stats stats;
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static time_t asn1_time(const ASN1_TIME *t)
{
    struct tm tm;

    return ASN1_TIME_to_tm(t, &tm) == 1 ? timegm(&tm) : 0;
}

struct leaf_cache *leaf_cache_new(X509 *ca_cert, EVP_PKEY *ca_key, size_t max)
{
    struct leaf_cache *lc = calloc(1, sizeof(*lc));

    if (!lc || max == 0)
        goto fail;
    lc->max = max;
    for (lc->n_buckets = 16; lc->n_buckets < 2 * max; lc->n_buckets *= 2)
        ;
    lc->table = calloc(lc->n_buckets, sizeof(*lc->table));
    if (!lc->table || X509_up_ref(ca_cert) != 1)
        goto fail;
    lc->ca = ca_cert;
    if (EVP_PKEY_up_ref(ca_key) != 1)
        goto fail;
    lc->ca_key = ca_key;
    lc->ca_not_before = asn1_time(X509_get0_notBefore(ca_cert));
    lc->ca_not_after = asn1_time(X509_get0_notAfter(ca_cert));
    return lc;
fail:
    leaf_cache_free(lc);
    return NULL;
}

static void leaf_free(struct leaf *l)
{
    X509_free(l->cert);
    EVP_PKEY_free(l->key);
    free(l);
}

void leaf_cache_free(struct leaf_cache *lc)
{
    struct leaf *l, *next;

    if (!lc)
        return;
    for (l = lc->head; l; l = next) {
        next = l->next;
        leaf_free(l);
    }
    free(lc->table);
    X509_free(lc->ca);
    EVP_PKEY_free(lc->ca_key);
    free(lc);
}

/* ---- the LRU ---- */

static void lru_unlink(struct leaf_cache *lc, struct leaf *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        lc->head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    else
        lc->tail = l->prev;
    l->prev = l->next = NULL;
}

static void lru_push(struct leaf_cache *lc, struct leaf *l)
{
    l->next = lc->head;
    if (lc->head)
        lc->head->prev = l;
    lc->head = l;
    if (!lc->tail)
        lc->tail = l;
}

static struct leaf **bucket(struct leaf_cache *lc, uint64_t hash)
{
    return &lc->table[hash & (lc->n_buckets - 1)];
}

static void cache_remove(struct leaf_cache *lc, struct leaf *l)
{
    struct leaf **p = bucket(lc, l->hash);

    while (*p != l)
        p = &(*p)->next_hash;
    *p = l->next_hash;
    lru_unlink(lc, l);
    lc->n--;
    leaf_free(l);
}

/* ---- minting ---- */

static bool add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    bool ok = e && X509_add_ext(cert, e, -1) == 1;

    X509_EXTENSION_free(e);
    return ok;
}

static bool set_serial(X509 *cert)
{
    unsigned char b[SERIAL_BYTES];
    BIGNUM *bn;
    bool ok;

    if (RAND_bytes(b, sizeof(b)) != 1)
        return false;
    b[0] &= 0x7f;                       /* positive, as RFC 5280 wants */
    b[0] |= 0x01;                       /* and never shorter than its size */
    bn = BN_bin2bn(b, sizeof(b), NULL);
    ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok;
}

static int mint(struct leaf_cache *lc, struct leaf *l, time_t now)
{
    time_t from = now - LEAF_BACKDATE_S, until;
    X509_NAME *subject = X509_NAME_new();
    char san[HOSTNAME_MAX + 8];
    X509V3_CTX ctx;
    bool ok;

    if (from < lc->ca_not_before)
        from = lc->ca_not_before;
    until = from + LEAF_VALIDITY_S < lc->ca_not_after ? from + LEAF_VALIDITY_S
                                                      : lc->ca_not_after;
    l->key = EVP_EC_gen("P-256");
    l->cert = X509_new();
    snprintf(san, sizeof(san), "DNS:%s", l->name);
    ok = subject && l->key && l->cert && set_serial(l->cert) &&
         X509_set_version(l->cert, X509_VERSION_3) == 1 &&
         X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                    (const unsigned char *)l->name, -1, -1, 0) == 1 &&
         X509_set_subject_name(l->cert, subject) == 1 &&
         X509_set_issuer_name(l->cert, X509_get_subject_name(lc->ca)) == 1 &&
         X509_time_adj_ex(X509_getm_notBefore(l->cert), 0, 0, &from) != NULL &&
         X509_time_adj_ex(X509_getm_notAfter(l->cert), 0, 0, &until) != NULL &&
         X509_set_pubkey(l->cert, l->key) == 1;
    if (ok) {
        X509V3_set_ctx(&ctx, lc->ca, l->cert, NULL, NULL, 0);
        ok = add_ext(l->cert, &ctx, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(l->cert, &ctx, NID_key_usage, "critical,digitalSignature") &&
             add_ext(l->cert, &ctx, NID_ext_key_usage, "serverAuth") &&
             add_ext(l->cert, &ctx, NID_subject_key_identifier, "hash") &&
             add_ext(l->cert, &ctx, NID_authority_key_identifier, "keyid:always") &&
             add_ext(l->cert, &ctx, NID_subject_alt_name, san) &&
             X509_sign(l->cert, lc->ca_key, EVP_sha256()) > 0;
    }
    X509_NAME_free(subject);
    l->not_after = until;
    return ok ? 0 : -ENOMEM;
}

int leaf_get(struct leaf_cache *lc, const char *name, time_t now, X509 **cert, EVP_PKEY **key)
{
    char low[HOSTNAME_MAX + 1];
    struct leaf *l;
    struct timespec t0, t1;
    uint64_t hash;
    size_t i;

    for (i = 0; name[i] && i < HOSTNAME_MAX; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[i] = '\0';
    if (now < lc->ca_not_before || now >= lc->ca_not_after)
        return -EKEYEXPIRED;
    hash = name_hash(low);
    for (l = *bucket(lc, hash); l; l = l->next_hash)
        if (l->hash == hash && strcmp(l->name, low) == 0)
            break;
    if (l && l->not_after - now <= LEAF_BACKDATE_S && l->not_after < lc->ca_not_after) {
        cache_remove(lc, l);            /* expiring: a fresh one */
        l = NULL;
    }
    if (l) {
        lru_unlink(lc, l);
        lru_push(lc, l);
        lc->stats.hits++;
    } else {
        l = calloc(1, sizeof(*l));
        if (!l)
            return -ENOMEM;
        memcpy(l->name, low, i + 1);
        l->hash = hash;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (mint(lc, l, now) < 0) {
            leaf_free(l);
            return -ENOMEM;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        lc->stats.mint_ns += (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000L +
                                        (t1.tv_nsec - t0.tv_nsec));
        lc->stats.minted++;
        if (lc->n == lc->max)
            cache_remove(lc, lc->tail);
        l->next_hash = *bucket(lc, hash);
        *bucket(lc, hash) = l;
        lru_push(lc, l);
        lc->n++;
    }
    *cert = l->cert;
    *key = l->key;
    return 0;
}

void leaf_stats(const struct leaf_cache *lc, struct leaf_stats *st)
{
    *st = lc->stats;
    st->entries = lc->n;
}
