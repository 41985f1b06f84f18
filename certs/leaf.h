/*
 * Leaf certificates for inspect mode: minted under the CA on a name's first
 * use and kept in a bounded in-memory LRU. A leaf is P-256 with its own key,
 * its SNI as its only name, serverAuth, valid at most LEAF_VALIDITY_S and
 * never past the CA; keys never touch disk.
 */
#ifndef SLUICE_LEAF_H
#define SLUICE_LEAF_H

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define LEAF_VALIDITY_S (24 * 3600)     /* a leaf's whole validity, at most */
#define LEAF_BACKDATE_S 3600            /* notBefore this far back, for a client with a slow clock */
#define LEAF_CACHE_DEFAULT 1024

struct leaf_cache;

struct leaf_stats {
    uint64_t hits, minted;
    uint64_t mint_ns;                   /* time spent minting, in all */
    size_t entries;
};

/* A cache of at most MAX leaves signed by CA_CERT with CA_KEY (it takes its own references). */
struct leaf_cache *leaf_cache_new(X509 *ca_cert, EVP_PKEY *ca_key, size_t max);
void leaf_cache_free(struct leaf_cache *lc);

/*
 * The leaf for NAME (a valid hostname, matched case-insensitively): cached,
 * or minted now (also when the cached one expires within LEAF_BACKDATE_S of
 * NOW). 0 with *CERT and *KEY borrowed until the next leaf_get() or
 * leaf_cache_free(); -EKEYEXPIRED when the CA is not valid at NOW; -ENOMEM.
 */
int leaf_get(struct leaf_cache *lc, const char *name, time_t now, X509 **cert, EVP_PKEY **key);

void leaf_stats(const struct leaf_cache *lc, struct leaf_stats *st);

#endif
