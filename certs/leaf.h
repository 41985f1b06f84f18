/*
 * Inspect mode's leaf certificates: one per name, minted with the CA's key on
 * first use (a fresh P-256 key each, never written anywhere) and kept in a
 * bounded in-memory LRU so that a name's next connections reuse it. One thread.
 */
#ifndef SLUICE_LEAF_H
#define SLUICE_LEAF_H

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define LEAF_VALIDITY_S (24 * 3600) /* a leaf's whole validity, at most */
#define LEAF_BACKDATE_S 3600        /* notBefore this far back, for clients with a slow clock */
#define LEAF_CACHE_DEFAULT 1024
#define LEAF_CACHE_MAX (1u << 16)   /* about 5 KiB of heap a leaf: 320 MiB at most */

struct leaf_cache;

struct leaf_stats {
    uint64_t hits, minted;
    uint64_t mint_ns;                   /* total time spent minting */
    size_t entries;
};

/*
 * A cache of at most MAX leaves (0: LEAF_CACHE_DEFAULT) signed by CA_KEY as CA_CERT's subject;
 * it takes its own references to both. NULL when out of memory, when MAX is over
 * LEAF_CACHE_MAX or when CA_CERT's validity cannot be read.
 */
struct leaf_cache *leaf_cache_new(X509 *ca_cert, EVP_PKEY *ca_key, size_t max);
void leaf_cache_free(struct leaf_cache *lc);

/*
 * The leaf for NAME (a valid hostname; matched case-insensitively): cached, or minted now.
 * 0 and *CERT, *KEY borrowed (valid until the next leaf_get() or leaf_cache_free()), or -errno:
 * -EINVAL for anything but a hostname (IP literals included: the CA excludes every address),
 * -EKEYEXPIRED when the CA is no longer (or not yet) valid at NOW, -ENOMEM, -EIO when OpenSSL
 * fails otherwise.
 */
int leaf_get(struct leaf_cache *lc, const char *name, time_t now, X509 **cert, EVP_PKEY **key);

void leaf_stats(const struct leaf_cache *lc, struct leaf_stats *st);

#endif
