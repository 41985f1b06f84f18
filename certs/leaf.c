/*
 * Leaf certificates for inspect mode: minting one (OpenSSL 3 EVP and X509)
 * and the cache that keeps them, a SipHash table on the lowercase name plus an
 * LRU list, so that a hit costs one hash and one short chain.
 */
#include "leaf.h"

#include <errno.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hostname.h"
#include "siphash.h"

#define LEAF_SERIAL_BYTES 16
#define LEAF_CN_MAX 64                  /* ub-common-name (RFC 5280): longer names in SAN only */

struct leaf {
    struct leaf *hnext;                 /* the bucket's chain */
    struct leaf *newer, *older;         /* the LRU list */
    uint64_t hash;
    X509 *cert;
    EVP_PKEY *key;
    time_t not_after;
    size_t len;
    char name[];                        /* lowercase, LEN bytes and a NUL */
};

struct leaf_cache {
    X509 *ca_cert;
    EVP_PKEY *ca_key;
    time_t ca_not_before, ca_not_after;
    EVP_PKEY_CTX *keygen;               /* set up once: fetching P-256 per leaf costs */
    uint64_t hash_key[2];               /* secret: a sandbox picks names under a wildcard */
    struct leaf **buckets;
    size_t n_buckets;                   /* a power of two, at least MAX: short chains */
    struct leaf *newest, *oldest;
    size_t n, max;
    struct leaf_stats stats;
};

static bool asn1_time_t(const ASN1_TIME *a, time_t *t)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(a, &tm) != 1)
        return false;
    *t = timegm(&tm);
    return *t != (time_t)-1;
}

struct leaf_cache *leaf_cache_new(X509 *ca_cert, EVP_PKEY *ca_key, size_t max)
{
    struct leaf_cache *lc;

    if (max == 0)
        max = LEAF_CACHE_DEFAULT;
    if (max > LEAF_CACHE_MAX)
        return NULL;
    lc = calloc(1, sizeof(*lc));
    if (!lc)
        return NULL;
    lc->max = max;
    for (lc->n_buckets = 1; lc->n_buckets < max; lc->n_buckets <<= 1)
        ;
    lc->buckets = calloc(lc->n_buckets, sizeof(*lc->buckets));
    lc->keygen = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!lc->buckets || !lc->keygen || EVP_PKEY_keygen_init(lc->keygen) != 1 ||
        EVP_PKEY_CTX_set_group_name(lc->keygen, "P-256") != 1 ||
        RAND_bytes((unsigned char *)lc->hash_key, sizeof(lc->hash_key)) != 1 ||
        !asn1_time_t(X509_get0_notBefore(ca_cert), &lc->ca_not_before) ||
        !asn1_time_t(X509_get0_notAfter(ca_cert), &lc->ca_not_after) ||
        X509_up_ref(ca_cert) != 1) {
        ERR_clear_error();
        leaf_cache_free(lc);
        return NULL;
    }
    lc->ca_cert = ca_cert;
    if (EVP_PKEY_up_ref(ca_key) != 1) {
        leaf_cache_free(lc);
        return NULL;
    }
    lc->ca_key = ca_key;
    return lc;
}

static void leaf_free(struct leaf *e)
{
    X509_free(e->cert);
    EVP_PKEY_free(e->key);
    free(e);
}

void leaf_cache_free(struct leaf_cache *lc)
{
    struct leaf *e, *next;

    if (!lc)
        return;
    for (e = lc->newest; e; e = next) {
        next = e->older;
        leaf_free(e);
    }
    free(lc->buckets);
    EVP_PKEY_CTX_free(lc->keygen);
    X509_free(lc->ca_cert);
    EVP_PKEY_free(lc->ca_key);
    free(lc);
}

/* ---- minting ---- */

static bool add_ext(X509 *cert, int nid, const char *value, X509V3_CTX *ctx)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    bool ok = e && X509_add_ext(cert, e, -1) == 1;

    X509_EXTENSION_free(e);
    return ok;
}

/* The name itself, not a config string with it inside: it came from a sandbox. */
static bool add_san(X509 *cert, const char *name, size_t len, bool critical)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    bool ok = gens && gn && s && ASN1_STRING_set(s, name, (int)len) == 1;

    if (ok) {
        GENERAL_NAME_set0_value(gn, GEN_DNS, s);
        s = NULL;
        ok = sk_GENERAL_NAME_push(gens, gn) > 0;
        if (ok)
            gn = NULL;
    }
    ok = ok && X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, critical,
                                 X509V3_ADD_DEFAULT) == 1;
    ASN1_IA5STRING_free(s);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(gens);
    return ok;
}

static bool set_serial(X509 *cert)
{
    unsigned char serial[LEAF_SERIAL_BYTES];
    BIGNUM *bn;
    bool ok;

    if (RAND_bytes(serial, sizeof(serial)) != 1)
        return false;
    serial[0] &= 0x7f;                  /* positive, as RFC 5280 wants */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok;
}

/* A subject of CN=NAME, or none for a name too long for a CN (then the SAN is critical). */
static bool set_subject(X509 *cert, const char *name, size_t len)
{
    X509_NAME *subject;
    bool ok;

    if (len > LEAF_CN_MAX)
        return true;
    subject = X509_NAME_new();
    ok = subject &&
         X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)name,
                                    (int)len, -1, 0) == 1 &&
         X509_set_subject_name(cert, subject) == 1;
    X509_NAME_free(subject);
    return ok;
}

/*
 * A leaf for NAME (lowercase, valid) at NOW, within the CA's validity, which
 * the caller checked. 0, or -ENOMEM/-EIO with nothing allocated.
 */
static int mint(struct leaf_cache *lc, const char *name, size_t len, time_t now,
                X509 **out_cert, EVP_PKEY **out_key, time_t *out_not_after)
{
    time_t nb = now - LEAF_BACKDATE_S, na;
    EVP_PKEY *key = NULL;
    X509 *cert = X509_new();
    X509V3_CTX ctx;
    bool ok;

    /* inside the CA's validity, or a strict client refuses the chain */
    if (nb < lc->ca_not_before)
        nb = lc->ca_not_before;
    na = nb + LEAF_VALIDITY_S;
    if (na > lc->ca_not_after)
        na = lc->ca_not_after;
    if (!cert)
        return -ENOMEM;
    ok = EVP_PKEY_generate(lc->keygen, &key) == 1 &&
         X509_set_version(cert, X509_VERSION_3) == 1 && set_serial(cert) &&
         X509_set_issuer_name(cert, X509_get_subject_name(lc->ca_cert)) == 1 &&
         set_subject(cert, name, len) &&
         ASN1_TIME_set(X509_getm_notBefore(cert), nb) != NULL &&
         ASN1_TIME_set(X509_getm_notAfter(cert), na) != NULL &&
         X509_set_pubkey(cert, key) == 1;
    if (ok) {
        X509V3_set_ctx(&ctx, lc->ca_cert, cert, NULL, NULL, 0);
        ok = add_ext(cert, NID_basic_constraints, "CA:FALSE", &ctx) &&
             add_ext(cert, NID_key_usage, "critical,digitalSignature", &ctx) &&
             add_ext(cert, NID_ext_key_usage, "serverAuth", &ctx) &&
             add_ext(cert, NID_subject_key_identifier, "hash", &ctx) &&
             add_ext(cert, NID_authority_key_identifier, "keyid", &ctx) &&
             add_san(cert, name, len, len > LEAF_CN_MAX) &&
             X509_sign(cert, lc->ca_key, EVP_sha256()) > 0;
    }
    if (!ok) {
        /* nothing stale for the proxy's next SSL_get_error() to trip on */
        ERR_clear_error();
        X509_free(cert);
        EVP_PKEY_free(key);
        return -EIO;
    }
    *out_cert = cert;
    *out_key = key;
    *out_not_after = na;
    return 0;
}

/* mint() with its time added to the stats. */
static int mint_timed(struct leaf_cache *lc, const char *name, size_t len, time_t now,
                      X509 **cert, EVP_PKEY **key, time_t *not_after)
{
    struct timespec t0, t1;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = mint(lc, name, len, now, cert, key, not_after);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    lc->stats.mint_ns += (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u +
                         (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
    if (rc == 0)
        lc->stats.minted++;
    return rc;
}

/* ---- the cache ---- */

static struct leaf **bucket_of(struct leaf_cache *lc, uint64_t hash)
{
    return &lc->buckets[hash & (lc->n_buckets - 1)];
}

static void lru_unlink(struct leaf_cache *lc, struct leaf *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        lc->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        lc->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(struct leaf_cache *lc, struct leaf *e)
{
    e->newer = NULL;
    e->older = lc->newest;
    if (lc->newest)
        lc->newest->newer = e;
    else
        lc->oldest = e;
    lc->newest = e;
}

static void evict_oldest(struct leaf_cache *lc)
{
    struct leaf *e = lc->oldest, **p;

    for (p = bucket_of(lc, e->hash); *p != e; p = &(*p)->hnext)
        ;
    *p = e->hnext;
    lru_unlink(lc, e);
    leaf_free(e);
    lc->n--;
}

/*
 * Whether E still serves at NOW: not within LEAF_BACKDATE_S of its end, unless
 * it ends with the CA, when a new one would end no later.
 */
static bool fresh(const struct leaf_cache *lc, const struct leaf *e, time_t now)
{
    return e->not_after - now > LEAF_BACKDATE_S || e->not_after >= lc->ca_not_after;
}

int leaf_get(struct leaf_cache *lc, const char *name, time_t now, X509 **cert, EVP_PKEY **key)
{
    char lower[HOSTNAME_MAX + 1];
    struct leaf *e, **b;
    X509 *c;
    EVP_PKEY *k;
    time_t na;
    uint64_t hash;
    size_t len;
    int rc;

    if (hostname_normalize((const uint8_t *)name, strlen(name), lower, &len) != HOSTNAME_OK)
        return -EINVAL;
    if (now < lc->ca_not_before || now >= lc->ca_not_after)
        return -EKEYEXPIRED;
    hash = siphash24(lc->hash_key, (const uint8_t *)lower, len);
    b = bucket_of(lc, hash);
    for (e = *b; e; e = e->hnext)
        if (e->hash == hash && e->len == len && memcmp(e->name, lower, len) == 0)
            break;
    if (e && fresh(lc, e, now)) {
        lc->stats.hits++;
    } else if (e) {
        rc = mint_timed(lc, lower, len, now, &c, &k, &na);
        if (rc < 0)
            return rc;
        X509_free(e->cert);
        EVP_PKEY_free(e->key);
        e->cert = c;
        e->key = k;
        e->not_after = na;
    } else {
        e = malloc(sizeof(*e) + len + 1);
        if (!e)
            return -ENOMEM;
        rc = mint_timed(lc, lower, len, now, &e->cert, &e->key, &e->not_after);
        if (rc < 0) {
            free(e);
            return rc;
        }
        if (lc->n == lc->max)
            evict_oldest(lc);
        e->hash = hash;
        e->len = len;
        memcpy(e->name, lower, len + 1);
        e->hnext = *b;
        *b = e;
        lru_push(lc, e);
        lc->n++;
    }
    if (lc->newest != e) {
        lru_unlink(lc, e);
        lru_push(lc, e);
    }
    *cert = e->cert;
    *key = e->key;
    return 0;
}

void leaf_stats(const struct leaf_cache *lc, struct leaf_stats *st)
{
    *st = lc->stats;
    st->entries = lc->n;
}
