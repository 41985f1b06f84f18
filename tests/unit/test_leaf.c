/*
 * Inspect mode's leaves against the CA that ca_init() makes: they verify as a
 * TLS client verifies them (X509_verify_cert, host and purpose set), the cache
 * hits, evicts and re-mints as documented, and the name constraints refuse
 * what the policy does not inspect. Also ca_load()'s refusals and ca_info_of().
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ca.h"
#include "leaf.h"

static const char policy_text[] =
    "version: 1\n"
    "egress:\n"
    "  - domain: api.example.test\n"
    "    inspect: true\n"
    "  - domain: \"*.inspect.test\"\n"
    "    inspect: true\n"
    "  - domain: plain.example.test\n";

/* A 100-byte name under *.inspect.test: too long for a CN (64 at most). */
#define LONG_NAME "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa." \
                  "bbbbbbbbbbbbbbbbbbbbbbb.inspect.test"

struct ca_pair {
    char dir[128];
    char cert_path[160], key_path[160];
    X509 *cert;
    EVP_PKEY *key;
    time_t not_before, not_after;
};

struct fixture {
    char root[64];
    struct ca_pair main;                /* --days 30 */
    struct ca_pair other;               /* another CA for the same policy: a key not ours */
    struct ca_pair brief;               /* --days 1: leaves run into its notAfter */
};

static time_t time_of(const ASN1_TIME *a)
{
    struct tm tm;

    assert_int_equal(ASN1_TIME_to_tm(a, &tm), 1);
    return timegm(&tm);
}

static void make_ca(struct fixture *fx, struct ca_pair *ca, const char *sub, unsigned days)
{
    char err[CA_ERR_MAX];
    struct diag_list d;
    struct policy *p = NULL;

    diag_init(&d, "inspect.yaml");
    policy_load_buffer("inspect.yaml", (const uint8_t *)policy_text, strlen(policy_text), &p,
                       &d);
    diag_clear(&d);
    assert_non_null(p);
    snprintf(ca->dir, sizeof(ca->dir), "%s/%s", fx->root, sub);
    snprintf(ca->cert_path, sizeof(ca->cert_path), "%s/%s", ca->dir, CA_CERT_FILE);
    snprintf(ca->key_path, sizeof(ca->key_path), "%s/%s", ca->dir, CA_KEY_FILE);
    if (ca_init(ca->dir, p, days, err) < 0)
        fail_msg("ca_init: %s", err);
    policy_free(p);
    if (ca_load(ca->cert_path, ca->key_path, &ca->cert, &ca->key, err) < 0)
        fail_msg("ca_load: %s", err);
    ca->not_before = time_of(X509_get0_notBefore(ca->cert));
    ca->not_after = time_of(X509_get0_notAfter(ca->cert));
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    snprintf(fx->root, sizeof(fx->root), "/tmp/test_leaf.XXXXXX");
    assert_non_null(mkdtemp(fx->root));
    make_ca(fx, &fx->main, "main", 30);
    make_ca(fx, &fx->other, "other", 30);
    make_ca(fx, &fx->brief, "brief", 1);
    *state = fx;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void ca_pair_clear(struct ca_pair *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;

    ca_pair_clear(&fx->main);
    ca_pair_clear(&fx->other);
    ca_pair_clear(&fx->brief);
    nftw(fx->root, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* What a TLS client that trusts CA and dialled NAME makes of LEAF at AT. */
static int verify_at(X509 *ca, X509 *leaf, const char *name, time_t at)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_VERIFY_PARAM *vp;
    int rc;

    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    vp = X509_STORE_CTX_get0_param(ctx);
    assert_int_equal(X509_VERIFY_PARAM_set1_host(vp, name, 0), 1);
    X509_VERIFY_PARAM_set_time(vp, at);
    /* RFC 5280's musts too (key identifiers, a critical SAN with an empty subject) */
    X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_X509_STRICT);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER), 1);
    rc = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

static void assert_verifies(X509 *ca, X509 *leaf, const char *name, time_t at)
{
    int rc = verify_at(ca, leaf, name, at);

    if (rc != X509_V_OK)
        fail_msg("%s: %s", name, X509_verify_cert_error_string(rc));
}

static bool ext_critical(X509 *cert, int nid)
{
    int i = X509_get_ext_by_NID(cert, nid, -1);

    assert_true(i >= 0);
    return X509_EXTENSION_get_critical(X509_get_ext(cert, i)) == 1;
}

/* The one dNSName of CERT's SAN, which must be exactly that. */
static void assert_san(X509 *cert, const char *name)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    const GENERAL_NAME *gn;

    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    gn = sk_GENERAL_NAME_value(gens, 0);
    assert_int_equal(gn->type, GEN_DNS);
    assert_int_equal(ASN1_STRING_length(gn->d.dNSName), (int)strlen(name));
    assert_memory_equal(ASN1_STRING_get0_data(gn->d.dNSName), name, strlen(name));
    GENERAL_NAMES_free(gens);
}

static void test_leaf_verifies(void **state)
{
    struct fixture *fx = *state;
    struct leaf_cache *lc = leaf_cache_new(fx->main.cert, fx->main.key, 0);
    time_t now = time(NULL);
    char cn[128];
    X509 *cert, *cert2;
    EVP_PKEY *key, *key2;
    BIGNUM *serial;
    ASN1_INTEGER *serial1;

    assert_non_null(lc);
    assert_int_equal(leaf_get(lc, "Api.Example.TEST", now, &cert, &key), 0);
    assert_verifies(fx->main.cert, cert, "api.example.test", now);

    /* the CN in lowercase, the SAN the name only, the CA's subject as issuer */
    assert_int_equal(X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
                                               sizeof(cn)), (int)strlen("api.example.test"));
    assert_string_equal(cn, "api.example.test");
    assert_san(cert, "api.example.test");
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(cert),
                                   X509_get_subject_name(fx->main.cert)), 0);

    /* a server's certificate and nothing else */
    assert_int_equal(X509_get_key_usage(cert), KU_DIGITAL_SIGNATURE);
    assert_true(ext_critical(cert, NID_key_usage));
    assert_int_equal(X509_get_extended_key_usage(cert), XKU_SSL_SERVER);
    assert_int_equal(X509_check_ca(cert), 0);
    assert_true(X509_get_extension_flags(cert) & EXFLAG_BCONS);
    assert_false(ext_critical(cert, NID_subject_alt_name));
    assert_non_null(X509_get0_subject_key_id(cert));
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(cert),
                                           X509_get0_subject_key_id(fx->main.cert)), 0);

    /* its own P-256 key */
    assert_true(EVP_PKEY_is_a(key, "EC"));
    assert_int_equal(EVP_PKEY_get_bits(key), 256);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), key), 1);
    assert_int_not_equal(EVP_PKEY_eq(key, fx->main.key), 1);

    /* a positive serial of at most 128 bits */
    serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    assert_non_null(serial);
    assert_false(BN_is_negative(serial));
    assert_true(BN_num_bits(serial) <= 128);
    assert_true(BN_num_bits(serial) > 64);  /* fails once in 2^64 runs */
    BN_free(serial);

    /* a second leaf: another key, another serial; a wildcard rule's name verifies too */
    serial1 = ASN1_INTEGER_dup(X509_get0_serialNumber(cert));
    assert_non_null(serial1);
    assert_int_equal(leaf_get(lc, "x.inspect.test", now, &cert2, &key2), 0);
    assert_verifies(fx->main.cert, cert2, "x.inspect.test", now);
    assert_int_not_equal(ASN1_INTEGER_cmp(serial1, X509_get0_serialNumber(cert2)), 0);
    assert_int_not_equal(EVP_PKEY_eq(key2, key), 1);
    ASN1_INTEGER_free(serial1);
    leaf_cache_free(lc);
}

static void test_validity(void **state)
{
    struct fixture *fx = *state;
    struct leaf_cache *lc = leaf_cache_new(fx->main.cert, fx->main.key, 0);
    time_t now = fx->main.not_before + 5 * 86400, nb, na;
    X509 *cert;
    EVP_PKEY *key;

    /* well inside the CA's validity: backdated an hour, a day long */
    assert_non_null(lc);
    assert_int_equal(leaf_get(lc, "api.example.test", now, &cert, &key), 0);
    nb = time_of(X509_get0_notBefore(cert));
    na = time_of(X509_get0_notAfter(cert));
    assert_int_equal(nb, now - LEAF_BACKDATE_S);
    assert_int_equal(na - nb, LEAF_VALIDITY_S);
    assert_verifies(fx->main.cert, cert, "api.example.test", now);
    assert_int_equal(verify_at(fx->main.cert, cert, "api.example.test", na + 1),
                     X509_V_ERR_CERT_HAS_EXPIRED);

    /* at the CA's start: never backdated before it */
    assert_int_equal(leaf_get(lc, "a.inspect.test", fx->main.not_before, &cert, &key), 0);
    assert_int_equal(time_of(X509_get0_notBefore(cert)), fx->main.not_before);
    assert_verifies(fx->main.cert, cert, "a.inspect.test", fx->main.not_before);
    leaf_cache_free(lc);
}

static void test_ca_end(void **state)
{
    struct fixture *fx = *state;
    const struct ca_pair *ca = &fx->brief;
    struct leaf_cache *lc = leaf_cache_new(ca->cert, ca->key, 0);
    time_t now = ca->not_after - 3600;
    struct leaf_stats st;
    X509 *cert, *again;
    EVP_PKEY *key;

    /* an hour before the CA ends: the leaf ends with it, not a day later */
    assert_non_null(lc);
    assert_in_range(ca->not_after - ca->not_before, 86400, 86401);     /* two time() calls */
    assert_int_equal(leaf_get(lc, "api.example.test", now, &cert, &key), 0);
    assert_int_equal(time_of(X509_get0_notBefore(cert)), now - LEAF_BACKDATE_S);
    assert_int_equal(time_of(X509_get0_notAfter(cert)), ca->not_after);
    assert_verifies(ca->cert, cert, "api.example.test", now);

    /* closer to the end still: kept, as a new one would end no later */
    assert_int_equal(leaf_get(lc, "api.example.test", ca->not_after - 1, &again, &key), 0);
    assert_ptr_equal(again, cert);
    leaf_stats(lc, &st);
    assert_int_equal(st.minted, 1);
    assert_int_equal(st.hits, 1);

    /* after it, or before it began, nothing */
    assert_int_equal(leaf_get(lc, "api.example.test", ca->not_after, &cert, &key), -EKEYEXPIRED);
    assert_int_equal(leaf_get(lc, "b.inspect.test", ca->not_after + 86400, &cert, &key),
                     -EKEYEXPIRED);
    assert_int_equal(leaf_get(lc, "b.inspect.test", ca->not_before - 1, &cert, &key),
                     -EKEYEXPIRED);
    leaf_stats(lc, &st);
    assert_int_equal(st.minted, 1);
    assert_int_equal(st.entries, 1);
    leaf_cache_free(lc);
}

static void test_hits(void **state)
{
    struct fixture *fx = *state;
    struct leaf_cache *lc = leaf_cache_new(fx->main.cert, fx->main.key, 0);
    static const char *const same[] = {"api.example.test", "API.EXAMPLE.TEST", "aPi.ExAmple.test",
                                       "api.example.test."};
    time_t now = time(NULL);
    struct leaf_stats st;
    X509 *first, *cert;
    EVP_PKEY *first_key, *key;
    size_t i;

    assert_non_null(lc);
    assert_int_equal(leaf_get(lc, same[0], now, &first, &first_key), 0);
    for (i = 1; i < sizeof(same) / sizeof(same[0]); i++) {
        assert_int_equal(leaf_get(lc, same[i], now, &cert, &key), 0);
        if (cert != first || key != first_key)
            fail_msg("%s is not the entry of %s", same[i], same[0]);
    }
    leaf_stats(lc, &st);
    assert_int_equal(st.minted, 1);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.entries, 1);
    assert_true(st.mint_ns > 0);
    leaf_cache_free(lc);
}

static void test_lru(void **state)
{
    struct fixture *fx = *state;
    struct leaf_cache *lc = leaf_cache_new(fx->main.cert, fx->main.key, 2);
    time_t now = time(NULL);
    struct leaf_stats st;
    X509 *a, *cert;
    EVP_PKEY *key;

    assert_non_null(lc);
    assert_int_equal(leaf_get(lc, "a.inspect.test", now, &a, &key), 0);
    assert_int_equal(leaf_get(lc, "b.inspect.test", now, &cert, &key), 0);
    /* a used after b: b is the least recently used when c comes */
    assert_int_equal(leaf_get(lc, "a.inspect.test", now, &cert, &key), 0);
    assert_int_equal(leaf_get(lc, "c.inspect.test", now, &cert, &key), 0);
    leaf_stats(lc, &st);
    assert_int_equal(st.minted, 3);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.entries, 2);

    /* a and c stay; b was freed and is minted again (evicting a, now the oldest) */
    assert_int_equal(leaf_get(lc, "a.inspect.test", now, &cert, &key), 0);
    assert_ptr_equal(cert, a);
    assert_int_equal(leaf_get(lc, "c.inspect.test", now, &cert, &key), 0);
    assert_int_equal(leaf_get(lc, "b.inspect.test", now, &cert, &key), 0);
    leaf_stats(lc, &st);
    assert_int_equal(st.minted, 4);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.entries, 2);
    assert_int_equal(leaf_get(lc, "a.inspect.test", now, &cert, &key), 0);
    leaf_stats(lc, &st);
    assert_int_equal(st.minted, 5);
    leaf_cache_free(lc);
}

static void test_remint(void **state)
{
    struct fixture *fx = *state;
    struct leaf_cache *lc = leaf_cache_new(fx->main.cert, fx->main.key, 0);
    time_t now = fx->main.not_before + 86400, na, na2;
    struct leaf_stats st;
    X509 *cert;
    EVP_PKEY *key;

    assert_non_null(lc);
    assert_int_equal(leaf_get(lc, "api.example.test", now, &cert, &key), 0);
    na = time_of(X509_get0_notAfter(cert));

    /* a second more than LEAF_BACKDATE_S before its end: still served */
    assert_int_equal(leaf_get(lc, "api.example.test", na - LEAF_BACKDATE_S - 1, &cert, &key), 0);
    leaf_stats(lc, &st);
    assert_int_equal(st.minted, 1);
    assert_int_equal(st.hits, 1);

    /* within it: a client whose clock runs ahead would refuse it, so a new one */
    now = na - LEAF_BACKDATE_S;
    assert_int_equal(leaf_get(lc, "api.example.test", now, &cert, &key), 0);
    na2 = time_of(X509_get0_notAfter(cert));
    assert_int_equal(na2, now - LEAF_BACKDATE_S + LEAF_VALIDITY_S);
    assert_verifies(fx->main.cert, cert, "api.example.test", now);
    leaf_stats(lc, &st);
    assert_int_equal(st.minted, 2);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.entries, 1);
    leaf_cache_free(lc);
}

static void test_constraints(void **state)
{
    static const struct {
        const char *name;
        const char *why;
    } rows[] = {
        {"evil.example.org", "no inspect rule names it"},
        {"plain.example.test", "allowed, but not inspected"},
        {"inspect.test", "*.inspect.test covers the names under it, not its apex"},
        {"api.example.test.evil.org", "a permitted name as a prefix is nothing"},
    };
    struct fixture *fx = *state;
    struct leaf_cache *lc = leaf_cache_new(fx->main.cert, fx->main.key, 0);
    time_t now = time(NULL);
    X509 *cert;
    EVP_PKEY *key;
    size_t i;
    int rc;

    /* the cache mints whatever it is asked for: the CA's constraints are the boundary */
    assert_non_null(lc);
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_int_equal(leaf_get(lc, rows[i].name, now, &cert, &key), 0);
        rc = verify_at(fx->main.cert, cert, rows[i].name, now);
        if (rc != X509_V_ERR_PERMITTED_VIOLATION)
            fail_msg("%s (%s): %s", rows[i].name, rows[i].why,
                     X509_verify_cert_error_string(rc));
    }
    leaf_cache_free(lc);
}

static void test_names(void **state)
{
    static const struct {
        const char *name;
        int rc;
        const char *why;
    } rows[] = {
        {"", -EINVAL, "empty"},
        {"not a name", -EINVAL, "spaces"},
        {"a..inspect.test", -EINVAL, "an empty label"},
        {"x_y.inspect.test", -EINVAL, "an underscore"},
        {"a.inspect.test,DNS:b.inspect.test", -EINVAL, "a second name smuggled in"},
        {"192.0.2.1", -EINVAL, "an IPv4 literal: the CA excludes every address"},
        {"2001:db8::1", -EINVAL, "an IPv6 literal"},
        {"a.inspect.test", 0, "a name"},
        {LONG_NAME, 0, "longer than a CN may be"},
    };
    struct fixture *fx = *state;
    struct leaf_cache *lc = leaf_cache_new(fx->main.cert, fx->main.key, 0);
    time_t now = time(NULL);
    X509 *cert;
    EVP_PKEY *key;
    size_t i;

    assert_non_null(lc);
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (leaf_get(lc, rows[i].name, now, &cert, &key) != rows[i].rc)
            fail_msg("'%s' (%s)", rows[i].name, rows[i].why);

    /* the long one: no CN at all, so the SAN is critical (RFC 5280, 4.2.1.6) */
    assert_int_equal(leaf_get(lc, LONG_NAME, now, &cert, &key), 0);
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(cert)), 0);
    assert_true(ext_critical(cert, NID_subject_alt_name));
    assert_san(cert, LONG_NAME);
    assert_verifies(fx->main.cert, cert, LONG_NAME, now);
    leaf_cache_free(lc);
}

static void test_cache_new(void **state)
{
    struct fixture *fx = *state;
    struct leaf_cache *lc;

    assert_null(leaf_cache_new(fx->main.cert, fx->main.key, LEAF_CACHE_MAX + 1));
    lc = leaf_cache_new(fx->main.cert, fx->main.key, LEAF_CACHE_MAX);
    assert_non_null(lc);
    leaf_cache_free(lc);
    leaf_cache_free(NULL);
}

/* ---- ca_load ---- */

static void write_key(const char *path, EVP_PKEY *key, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f;

    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(fclose(f), 0);
}

static void write_cert(const char *path, X509 *cert)
{
    FILE *f = fopen(path, "we");

    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    assert_int_equal(fclose(f), 0);
}

static void test_ca_load(void **state)
{
    struct fixture *fx = *state;
    struct leaf_cache *lc = leaf_cache_new(fx->main.cert, fx->main.key, 0);
    char group_key[192], open_key[192], leaf_pem[192], leaf_key[192], expired_pem[192];
    char err[CA_ERR_MAX];
    time_t now = time(NULL);
    X509 *leaf, *expired;
    EVP_PKEY *leaf_k;
    const struct {
        const char *cert, *key;
        const char *names[2];           /* what ERR must mention */
        const char *why;
    } rows[] = {
        {fx->main.cert_path, open_key, {open_key, "chmod 600"}, "a key anyone may read"},
        {fx->main.cert_path, fx->other.key_path, {fx->other.key_path, fx->main.cert_path},
         "another CA's key"},
        {leaf_pem, leaf_key, {leaf_pem, "not a CA"}, "a leaf, not a CA"},
        {expired_pem, fx->main.key_path, {expired_pem, "not valid now"}, "an expired CA"},
        {fx->main.cert_path, fx->main.dir, {fx->main.dir, "not a regular file"},
         "a directory"},
        {"/nonexistent/ca.pem", fx->main.key_path, {"/nonexistent/ca.pem", "No such file"},
         "no certificate"},
    };
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    size_t i, j;

    assert_non_null(lc);
    snprintf(group_key, sizeof(group_key), "%s/group.key", fx->root);
    snprintf(open_key, sizeof(open_key), "%s/open.key", fx->root);
    snprintf(leaf_pem, sizeof(leaf_pem), "%s/leaf.pem", fx->root);
    snprintf(leaf_key, sizeof(leaf_key), "%s/leaf.key", fx->root);
    snprintf(expired_pem, sizeof(expired_pem), "%s/expired.pem", fx->root);
    write_key(group_key, fx->main.key, 0640);
    write_key(open_key, fx->main.key, 0644);
    assert_int_equal(leaf_get(lc, "api.example.test", now, &leaf, &leaf_k), 0);
    write_cert(leaf_pem, leaf);
    write_key(leaf_key, leaf_k, 0600);
    /* the main CA as it was last year, signed by its own key */
    expired = X509_dup(fx->main.cert);
    assert_non_null(expired);
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(expired), now - 400 * 86400));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(expired), now - 35 * 86400));
    assert_true(X509_sign(expired, fx->main.key, EVP_sha256()) > 0);
    write_cert(expired_pem, expired);
    X509_free(expired);

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (ca_load(rows[i].cert, rows[i].key, &cert, &key, err) != -1)
            fail_msg("%s: loaded", rows[i].why);
        assert_null(cert);
        assert_null(key);
        for (j = 0; j < 2; j++)
            if (!strstr(err, rows[i].names[j]))
                fail_msg("%s: '%s' does not say '%s'", rows[i].why, err, rows[i].names[j]);
    }

    /* 0400 is as private as 0600; group read is how Kubernetes hands a secret
     * to a non-root container (fsGroup) */
    assert_int_equal(chmod(open_key, 0400), 0);
    for (i = 0; i < 2; i++) {
        const char *path = i ? group_key : open_key;

        if (ca_load(fx->main.cert_path, path, &cert, &key, err) < 0)
            fail_msg("%s: %s", path, err);
        assert_int_equal(X509_cmp(cert, fx->main.cert), 0);
        assert_int_equal(EVP_PKEY_eq(key, fx->main.key), 1);
        X509_free(cert);
        EVP_PKEY_free(key);
    }
    leaf_cache_free(lc);
}

static void test_info_of(void **state)
{
    struct fixture *fx = *state;
    struct leaf_cache *lc = leaf_cache_new(fx->main.cert, fx->main.key, 0);
    struct ca_info from_file, of_cert;
    char err[CA_ERR_MAX];
    X509 *leaf;
    EVP_PKEY *key;
    size_t i;

    /* what ca_read() finds in the file is what ca_info_of() finds in the loaded certificate */
    assert_non_null(lc);
    if (ca_read(fx->main.cert_path, &from_file, err) < 0 ||
        ca_info_of(fx->main.cert, fx->main.cert_path, &of_cert, err) < 0)
        fail_msg("%s", err);
    assert_string_equal(of_cert.subject, from_file.subject);
    assert_string_equal(of_cert.not_before, from_file.not_before);
    assert_string_equal(of_cert.not_after, from_file.not_after);
    assert_string_equal(of_cert.fingerprint, from_file.fingerprint);
    assert_true(of_cert.is_ca && of_cert.constraints_critical);
    assert_int_equal(of_cert.n_permitted, 2);
    assert_int_equal(of_cert.n_permitted, from_file.n_permitted);
    for (i = 0; i < of_cert.n_permitted; i++)
        assert_string_equal(of_cert.permitted[i], from_file.permitted[i]);
    assert_string_equal(of_cert.permitted[0], "api.example.test");
    assert_string_equal(of_cert.permitted[1], ".inspect.test");
    assert_int_equal(of_cert.n_excluded, 2);
    assert_string_equal(of_cert.excluded[0], "0.0.0.0/0");
    assert_string_equal(of_cert.excluded[1], "::/0");
    ca_info_clear(&from_file);
    ca_info_clear(&of_cert);

    /* a leaf has no name constraints: refused, as ca_read() refuses such a file */
    assert_int_equal(leaf_get(lc, "api.example.test", time(NULL), &leaf, &key), 0);
    assert_int_equal(ca_info_of(leaf, "leaf", &of_cert, err), -1);
    assert_non_null(strstr(err, "no name constraints"));
    assert_int_equal(of_cert.n_permitted, 0);
    leaf_cache_free(lc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leaf_verifies),
        cmocka_unit_test(test_validity),
        cmocka_unit_test(test_ca_end),
        cmocka_unit_test(test_hits),
        cmocka_unit_test(test_lru),
        cmocka_unit_test(test_remint),
        cmocka_unit_test(test_constraints),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_cache_new),
        cmocka_unit_test(test_ca_load),
        cmocka_unit_test(test_info_of),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
