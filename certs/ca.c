/*
 * The inspect-mode CA with OpenSSL 3's EVP and X509 APIs: key generation,
 * the self-signed certificate with its name constraints, reading one back,
 * and the coverage check of a policy against it.
 */
#include "ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hostname.h"

#define CA_SUBJECT_CN "sluice inspect-mode CA"
#define CA_SERIAL_BYTES 16

__attribute__((format(printf, 2, 3)))
static int fail(char err[CA_ERR_MAX], const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, CA_ERR_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

void ca_subtree_of(const struct policy_rule *r, char *out)
{
    /* "*.example.org" -> ".example.org"; an exact name stays as it is */
    snprintf(out, HOSTNAME_MAX + 2, "%s", r->kind == RULE_WILDCARD ? r->pattern + 1 : r->pattern);
}

/* Whether NAME (a dotted name, or ".suffix" for "any name under it") lies in BASE. */
static bool in_subtree(const char *base, const char *name)
{
    size_t bl = strlen(base), nl = strlen(name);

    if (bl == 0)
        return true;
    if (nl < bl || strcasecmp(name + nl - bl, base) != 0)
        return false;
    /* the same length: the same name (".x" covers only ".x" and below) */
    return nl == bl || base[0] == '.' || name[nl - bl - 1] == '.';
}

bool ca_subtree_covers(const char *base, const struct policy_rule *r)
{
    char need[HOSTNAME_MAX + 2];

    if (r->kind == RULE_CIDR)
        return false;
    ca_subtree_of(r, need);
    return in_subtree(base, need);
}

static bool is_inspect(const struct policy_rule *r)
{
    return r->inspect && r->kind != RULE_CIDR;
}

/* ---- making one ---- */

static bool add_ext(X509 *cert, int nid, const char *value, X509V3_CTX *ctx)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    bool ok = e && X509_add_ext(cert, e, -1) == 1;

    X509_EXTENSION_free(e);
    return ok;
}

/* The critical name constraints: every inspect rule's subtree, no IP address. */
/* Pushes a subtree of GN onto SK; GN is the subtree's from here on (freed on failure). */
static bool push_subtree(STACK_OF(GENERAL_SUBTREE) *sk, GENERAL_NAME *gn)
{
    GENERAL_SUBTREE *st = gn ? GENERAL_SUBTREE_new() : NULL;

    if (!st) {
        GENERAL_NAME_free(gn);
        return false;
    }
    GENERAL_NAME_free(st->base);
    st->base = gn;
    if (sk_GENERAL_SUBTREE_push(sk, st) > 0)
        return true;
    GENERAL_SUBTREE_free(st);
    return false;
}

static bool add_constraints(X509 *cert, const struct policy *p)
{
    NAME_CONSTRAINTS *nc = NAME_CONSTRAINTS_new();
    static const char *const all_ip[] = {"0.0.0.0/0.0.0.0", "::/::"};   /* addr/mask */
    bool ok = nc != NULL;
    size_t i;

    if (ok) {
        nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null();
        nc->excludedSubtrees = sk_GENERAL_SUBTREE_new_null();
        ok = nc->permittedSubtrees && nc->excludedSubtrees;
    }
    for (i = 0; ok && i < p->n_rules; i++) {
        char name[HOSTNAME_MAX + 2];

        if (!is_inspect(&p->rules[i]))
            continue;
        ca_subtree_of(&p->rules[i], name);
        ok = push_subtree(nc->permittedSubtrees,
                          a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS, name, 0));
    }
    for (i = 0; ok && i < 2; i++)
        ok = push_subtree(nc->excludedSubtrees,
                          a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_IPADD, all_ip[i], 1));
    ok = ok && X509_add1_ext_i2d(cert, NID_name_constraints, nc, 1, X509V3_ADD_DEFAULT) == 1;
    NAME_CONSTRAINTS_free(nc);
    return ok;
}

static X509 *make_cert(EVP_PKEY *key, const struct policy *p, unsigned days)
{
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();
    unsigned char serial[CA_SERIAL_BYTES];
    BIGNUM *bn = NULL;
    X509V3_CTX ctx;
    bool ok;

    ok = cert && name && RAND_bytes(serial, sizeof(serial)) == 1;
    if (ok) {
        serial[0] &= 0x7f;                  /* positive, as RFC 5280 wants */
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL &&
             X509_set_version(cert, X509_VERSION_3) == 1 &&
             X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                        (const unsigned char *)"sluice", -1, -1, 0) == 1 &&
             X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                        (const unsigned char *)CA_SUBJECT_CN, -1, -1, 0) == 1 &&
             X509_set_subject_name(cert, name) == 1 && X509_set_issuer_name(cert, name) == 1 &&
             X509_gmtime_adj(X509_getm_notBefore(cert), 0) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400) != NULL &&
             X509_set_pubkey(cert, key) == 1;
    }
    if (ok) {
        X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
        ok = add_ext(cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", &ctx) &&
             add_ext(cert, NID_key_usage, "critical,keyCertSign,cRLSign", &ctx) &&
             add_ext(cert, NID_subject_key_identifier, "hash", &ctx) &&
             add_constraints(cert, p) && X509_sign(cert, key, EVP_sha256()) > 0;
    }
    BN_free(bn);
    X509_NAME_free(name);
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

/* Opens PATH for writing with MODE, never over an existing file. */
static FILE *create_file(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    FILE *f;

    if (fd < 0)
        return NULL;
    if (fchmod(fd, mode) < 0 || !(f = fdopen(fd, "w"))) {
        close(fd);
        return NULL;
    }
    return f;
}

int ca_init(const char *dir, const struct policy *p, unsigned days, char err[CA_ERR_MAX])
{
    char key_path[4096], cert_path[4096];
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    FILE *kf = NULL, *cf = NULL;
    size_t i, n = 0;
    int rc = -1;

    for (i = 0; i < p->n_rules; i++)
        n += is_inspect(&p->rules[i]);
    if (n == 0)
        return fail(err, "%s has no inspect rule: a CA for it would permit no name (add "
                    "'inspect: true' to the rules whose traffic must be inspected)", p->file);
    if (days < 1 || days > CA_DAYS_MAX)
        return fail(err, "--days %u out of range (1-%u)", days, CA_DAYS_MAX);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return fail(err, "creating %s: %s", dir, strerror(errno));
    snprintf(key_path, sizeof(key_path), "%s/%s", dir, CA_KEY_FILE);
    snprintf(cert_path, sizeof(cert_path), "%s/%s", dir, CA_CERT_FILE);
    if (access(key_path, F_OK) == 0)
        return fail(err, "%s exists: a CA is never replaced in place (remove it, or pick "
                    "another DIR)", key_path);

    key = EVP_EC_gen("P-256");
    cert = key ? make_cert(key, p, days) : NULL;
    if (!cert) {
        fail(err, "making the CA's %s: %s", key ? "certificate" : "P-256 key",
             ERR_reason_error_string(ERR_peek_last_error()) ?: "OpenSSL failed");
        goto out;
    }
    kf = create_file(key_path, 0600);
    if (!kf) {
        fail(err, "writing %s: %s", key_path, strerror(errno));
        goto out;
    }
    if (PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL) != 1 || fclose(kf) != 0) {
        kf = NULL;
        fail(err, "writing %s: %s", key_path, strerror(errno));
        goto out;
    }
    kf = NULL;
    unlink(cert_path);                      /* a certificate without its key is stale */
    cf = create_file(cert_path, 0644);
    if (!cf || PEM_write_X509(cf, cert) != 1 || fclose(cf) != 0) {
        cf = NULL;
        fail(err, "writing %s: %s", cert_path, strerror(errno));
        unlink(key_path);
        goto out;
    }
    cf = NULL;
    rc = 0;
out:
    if (kf) {
        fclose(kf);
        unlink(key_path);
    }
    if (cf)
        fclose(cf);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

/* ---- reading one back ---- */

static void time_text(const ASN1_TIME *t, char *out, size_t cap)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1 || strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, cap, "?");
}

static char *subtree_text(const GENERAL_SUBTREE *st)
{
    const GENERAL_NAME *gn = st->base;
    char buf[128];

    if (gn->type == GEN_DNS) {
        const ASN1_IA5STRING *s = gn->d.dNSName;

        return strndup((const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
    }
    if (gn->type == GEN_IPADD) {
        const unsigned char *b = ASN1_STRING_get0_data(gn->d.iPAddress);
        int len = ASN1_STRING_length(gn->d.iPAddress), bits = 0, i;
        char addr[64];

        if (len != 8 && len != 32)
            return strdup("?");
        for (i = len / 2; i < len; i++)
            bits += __builtin_popcount(b[i]);
        if (!inet_ntop(len == 8 ? AF_INET : AF_INET6, b, addr, sizeof(addr)))
            return strdup("?");
        snprintf(buf, sizeof(buf), "%s/%d", addr, bits);
        return strdup(buf);
    }
    return strdup("(other)");
}

static bool collect(const STACK_OF(GENERAL_SUBTREE) *sk, char ***out, size_t *n)
{
    int i, count = sk ? sk_GENERAL_SUBTREE_num(sk) : 0;

    *out = count ? calloc((size_t)count, sizeof(**out)) : NULL;
    *n = 0;
    if (count && !*out)
        return false;
    for (i = 0; i < count; i++) {
        char *t = subtree_text(sk_GENERAL_SUBTREE_value(sk, i));

        if (!t)
            return false;
        (*out)[(*n)++] = t;
    }
    return true;
}

int ca_info_of(X509 *cert, const char *name, struct ca_info *info, char err[CA_ERR_MAX])
{
    NAME_CONSTRAINTS *nc;
    unsigned char md[32];
    unsigned int mdlen = 0, i;
    int crit = -1, rc = -1;

    memset(info, 0, sizeof(*info));
    X509_NAME_oneline(X509_get_subject_name(cert), info->subject, sizeof(info->subject));
    time_text(X509_get0_notBefore(cert), info->not_before, sizeof(info->not_before));
    time_text(X509_get0_notAfter(cert), info->not_after, sizeof(info->not_after));
    if (X509_digest(cert, EVP_sha256(), md, &mdlen) == 1)
        for (i = 0; i < mdlen; i++)
            snprintf(info->fingerprint + 3 * i, 4, "%02X%s", md[i], i + 1 < mdlen ? ":" : "");
    info->is_ca = X509_check_ca(cert) > 0;
    nc = X509_get_ext_d2i(cert, NID_name_constraints, &crit, NULL);
    info->constraints_critical = crit == 1;
    if (!nc) {
        fail(err, "%s has no name constraints: it could mint for any name (make one with "
             "'sluicectl ca init')", name);
        goto out;
    }
    if (!collect(nc->permittedSubtrees, &info->permitted, &info->n_permitted) ||
        !collect(nc->excludedSubtrees, &info->excluded, &info->n_excluded)) {
        fail(err, "%s: out of memory", name);
        goto out;
    }
    rc = 0;
out:
    NAME_CONSTRAINTS_free(nc);
    if (rc < 0)
        ca_info_clear(info);
    return rc;
}

static X509 *read_cert(const char *path, char err[CA_ERR_MAX])
{
    FILE *f = fopen(path, "re");
    X509 *cert;

    if (!f) {
        fail(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!cert)
        fail(err, "%s: not a PEM certificate", path);
    return cert;
}

int ca_read(const char *path, struct ca_info *info, char err[CA_ERR_MAX])
{
    X509 *cert = read_cert(path, err);
    int rc;

    memset(info, 0, sizeof(*info));
    if (!cert)
        return -1;
    rc = ca_info_of(cert, path, info, err);
    X509_free(cert);
    return rc;
}

int ca_load(const char *cert_path, const char *key_path, X509 **cert, EVP_PKEY **key,
            char err[CA_ERR_MAX])
{
    struct stat st;
    FILE *f;

    *cert = NULL;
    *key = NULL;
    f = fopen(key_path, "re");
    if (!f)
        return fail(err, "--ca-key %s: %s", key_path, strerror(errno));
    /* group read stays allowed: Kubernetes gives a secret to a non-root
     * container only through its group (fsGroup) */
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return fail(err, "--ca-key %s: not a regular file (give the ca.key 'sluicectl ca init' "
                    "made)", key_path);
    }
    if (st.st_mode & 007) {
        fclose(f);
        return fail(err, "--ca-key %s: readable by any user (mode %03o): a CA key must be "
                    "private (chmod 600 %s)", key_path, (unsigned)(st.st_mode & 0777),
                    key_path);
    }
    *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!*key)
        return fail(err, "--ca-key %s: not a PEM private key (or one with a passphrase, which "
                    "the proxy cannot ask for)", key_path);
    *cert = read_cert(cert_path, err);
    if (!*cert)
        goto bad;
    if (!(X509_get_extension_flags(*cert) & EXFLAG_CA)) {     /* basicConstraints CA:TRUE */
        fail(err, "--ca-cert %s is not a CA certificate (make one with 'sluicectl ca init')",
             cert_path);
        goto bad;
    }
    if (X509_check_private_key(*cert, *key) != 1) {
        fail(err, "--ca-key %s does not belong to --ca-cert %s (give the pair 'sluicectl ca "
             "init' made together)", key_path, cert_path);
        goto bad;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(*cert)) > 0 ||
        X509_cmp_current_time(X509_get0_notAfter(*cert)) < 0) {
        fail(err, "--ca-cert %s is not valid now (make a new CA with 'sluicectl ca init')",
             cert_path);
        goto bad;
    }
    ERR_clear_error();
    return 0;
bad:
    X509_free(*cert);
    EVP_PKEY_free(*key);
    *cert = NULL;
    *key = NULL;
    ERR_clear_error();
    return -1;
}

void ca_info_clear(struct ca_info *info)
{
    size_t i;

    for (i = 0; i < info->n_permitted; i++)
        free(info->permitted[i]);
    for (i = 0; i < info->n_excluded; i++)
        free(info->excluded[i]);
    free(info->permitted);
    free(info->excluded);
    info->permitted = info->excluded = NULL;
    info->n_permitted = info->n_excluded = 0;
}

void ca_print(const struct ca_info *info, FILE *out)
{
    size_t i;

    fprintf(out, "subject      %s\n", info->subject);
    fprintf(out, "valid        %s to %s\n", info->not_before, info->not_after);
    fprintf(out, "CA           %s\n", info->is_ca ? "yes" : "no");
    fprintf(out, "constraints  %s\n", info->constraints_critical ? "critical" : "NOT critical");
    for (i = 0; i < info->n_permitted; i++)
        fprintf(out, "  permitted  DNS:%s\n", info->permitted[i]);
    for (i = 0; i < info->n_excluded; i++)
        fprintf(out, "  excluded   IP:%s\n", info->excluded[i]);
    fprintf(out, "sha256       %s\n", info->fingerprint);
}

size_t ca_check_policy(const struct ca_info *info, const struct policy *p, const char *cert,
                       struct diag_list *diags)
{
    size_t i, j, missing = 0;

    for (i = 0; i < p->n_rules; i++) {
        const struct policy_rule *r = &p->rules[i];
        bool covered = false;

        if (!is_inspect(r))
            continue;
        for (j = 0; j < info->n_permitted && !covered; j++)
            covered = ca_subtree_covers(info->permitted[j], r);
        if (!covered) {
            diag_add_in(diags, r->file, DIAG_ERROR, r->line, r->col,
                        "inspect rule '%s' is outside the name constraints of %s; make a CA "
                     "for this policy with 'sluicectl ca init DIR --policy %s'",
                     r->pattern, cert, p->file);
            missing++;
        }
    }
    return missing;
}
