/*
 * The inspect-mode CA: an ECDSA P-256 certificate authority whose certificate
 * carries critical X.509 name constraints, permitting exactly the names of the
 * policy's inspect rules and excluding every IP address, so that its key, if
 * stolen, mints for nothing else. Shared by sluicectl (ca init, ca show,
 * check --ca) and, for inspect mode, the proxy.
 */
#ifndef SLUICE_CA_H
#define SLUICE_CA_H

#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "diag.h"
#include "hostname.h"
#include "policy.h"

#define CA_CERT_FILE "ca.pem"
#define CA_KEY_FILE "ca.key"
#define CA_DAYS_DEFAULT 365
#define CA_DAYS_MAX 3650
#define CA_ERR_MAX 512

/*
 * The dNSName subtree an inspect rule needs, as X.509 (and OpenSSL) match
 * them: an exact rule "api.example.org" is the subtree "api.example.org"
 * (that name and, X.509 cannot say otherwise, the names under it); a wildcard
 * "*.example.org" is ".example.org" (only the names under it). OUT holds
 * HOSTNAME_MAX + 2 bytes.
 */
void ca_subtree_of(const struct policy_rule *r, char *out);

/* Whether the permitted dNSName subtree BASE covers every name RULE allows. */
bool ca_subtree_covers(const char *base, const struct policy_rule *r);

/*
 * Creates DIR (0700) if missing, then DIR/ca.key (0600, never printed) and
 * DIR/ca.pem for the inspect rules of P, valid for DAYS. Refuses to replace an
 * existing key. Returns 0, or -1 with ERR saying what, why and the fix.
 */
int ca_init(const char *dir, const struct policy *p, unsigned days, char err[CA_ERR_MAX]);

/* What a CA certificate says, as ca_read() found it. */
struct ca_info {
    char subject[256];
    char not_before[64], not_after[64];     /* "2026-12-05 08:10:00 UTC" */
    char fingerprint[3 * 32];               /* SHA-256, "AB:CD:..." */
    char **permitted;                       /* dNSName subtrees */
    size_t n_permitted;
    char **excluded;                        /* iPAddress ranges, "0.0.0.0/0" */
    size_t n_excluded;
    bool constraints_critical;
    bool is_ca;
};

/* Reads the PEM certificate at PATH. Returns 0, or -1 with ERR. */
int ca_read(const char *path, struct ca_info *info, char err[CA_ERR_MAX]);

/* What CERT says; NAME names it in ERR. */
int ca_info_of(X509 *cert, const char *name, struct ca_info *info, char err[CA_ERR_MAX]);

/*
 * Reads the CA certificate and its key for the proxy (before its privilege
 * drop). Refuses a key file readable by any user, a certificate that
 * is not a CA or not valid now, and a key that is not the certificate's.
 * Returns 0 with *CERT and *KEY (the caller frees them), or -1 with ERR
 * naming the file, the cause and the fix.
 */
int ca_load(const char *cert_path, const char *key_path, X509 **cert, EVP_PKEY **key,
            char err[CA_ERR_MAX]);
void ca_info_clear(struct ca_info *info);

/* Prints INFO for people: subject, validity, constraints, fingerprint. */
void ca_print(const struct ca_info *info, FILE *out);

/*
 * Adds an error to DIAGS (at the rule's line and column) for every inspect
 * rule of P that none of INFO's permitted subtrees covers; CERT names the
 * certificate in the message. Returns how many.
 */
size_t ca_check_policy(const struct ca_info *info, const struct policy *p, const char *cert,
                       struct diag_list *diags);

#endif
