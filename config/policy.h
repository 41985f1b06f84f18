/*
 * The compiled policy: an immutable object built once from a policy file and
 * asked, per flow, whether a (host, port) or (address, port) may pass. A
 * reload builds a new one and swaps the pointer; the generation tells them
 * apart.
 */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cidr.h"
#include "diag.h"
#include "reason.h"

#define POLICY_ANY_PORT 0           /* as a port to match: any port a rule lists */
#define POLICY_MAX_FILE (64u << 20) /* a policy file larger than this is refused */
#define POLICY_HASH_HEX 12          /* hex digits of SHA-256 that name a policy */

enum policy_mode { POLICY_ENFORCE, POLICY_AUDIT };
enum policy_rule_kind { RULE_EXACT, RULE_WILDCARD, RULE_CIDR };
enum policy_dns_unlisted { DNS_UNLISTED_NXDOMAIN, DNS_UNLISTED_REFUSED };
/* dns.answers: the real addresses, or one of the proxy's virtual ones per name */
enum policy_dns_answers { DNS_ANSWERS_REAL, DNS_ANSWERS_VIRTUAL };
enum policy_ech { ECH_DENY, ECH_ALLOW_OUTER };

struct policy_http_rule {
    char **methods;             /* uppercase tokens; none means any method */
    size_t n_methods;
    char **paths;               /* path globs: a star matches any run of bytes */
    size_t n_paths;             /* none means any path */
    unsigned line, col;
};

/*
 * inject: a header the proxy adds to every request an inspect rule allows,
 * replacing any of that name the sandbox sent (the sandbox holds a
 * placeholder, the proxy the real credential).
 */
#define POLICY_INJECT_MAX 16        /* headers one rule may inject */
#define POLICY_SECRET_MAX 8192      /* largest value_file */

struct policy_inject {
    char *header;               /* an HTTP token, as written */
    char *value;                /* prefix + the file's contents: a secret, never logged,
                                   printed or put in a message */
    size_t value_len;
    char *file;                 /* value_file, for messages */
    unsigned line, col;         /* the list item */
};

/* budget: bytes a name may move each way per window (0: no budget that way) */
#define POLICY_BUDGET_PER_MS 3600000    /* the window when none is given: 1 h */

struct policy_budget {
    uint64_t up, down;
    uint32_t per_ms;
};

struct policy_rule {
    enum policy_rule_kind kind;
    char *pattern;              /* "pypi.org", "*.pythonhosted.org", "192.0.2.0/24", "*" */
    struct cidr cidr;           /* RULE_CIDR only */
    uint16_t *ports;            /* sorted, unique, never empty */
    size_t n_ports;
    bool inspect;
    bool allow_broad;
    struct policy_http_rule *http;
    size_t n_http;
    struct policy_inject *inject;
    size_t n_inject;
    struct policy_budget budget;    /* per name the rule allows (domain rules only) */
    const char *file;           /* the file it is in: the policy's, or one it includes
                                   (a string the policy owns) */
    unsigned line, col;         /* where the rule's list item starts */
};

/*
 * alerts: the proxy's detectors and their thresholds (README, "Alerts"). A
 * detector with a zero count is off; windows are in milliseconds.
 */
#define POLICY_ALERT_SET_MAX 4096   /* the most distinct keys one detector keeps per window */

struct policy_alerts {
    struct {
        uint32_t ports, window_ms;      /* denied (address, port) pairs */
    } port_scan;
    struct {
        uint32_t names, encoded, window_ms; /* under one registrable domain: denied or
                                               wildcard-matched names; encoded-looking ones */
        uint32_t label_length, entropy_centi; /* encoded-looking: a label this long with
                                                 this many bits per character (x100),
                                                 digits and no hyphen (alerts.c) */
    } dns_tunnel;
    struct {
        uint64_t bytes;                 /* up to one destination within the window */
        uint32_t window_ms;
        uint32_t ratio;                 /* up/down of one flow... */
        uint64_t ratio_after;           /* ...once it sent this much up */
    } upload_burst;
    struct {
        uint32_t denials, window_ms;    /* of any kind */
    } denied_burst;
};

struct policy_settings {
    enum policy_mode mode;
    struct {
        enum policy_dns_unlisted unlisted;
        enum policy_dns_answers answers;
        uint32_t queries_per_second;
        uint32_t max_name_length;
        uint32_t max_ttl;
    } dns;
    struct {
        uint32_t sniff_ms, connect_ms, idle_ms;
    } timeouts;
    struct {                    /* 0 means no limit */
        uint32_t max_connections;
        uint32_t new_connections_per_second;
        uint64_t upload_bytes_per_second;
        uint64_t download_bytes_per_second;
        uint64_t upload_per_destination;    /* the upload budget of a name whose rule
                                               has none, per POLICY_BUDGET_PER_MS */
    } limits;
    enum policy_ech ech;
    bool feedback;              /* tell the sandbox why it was refused: EDE text, hints in
                                   a 403, http://sluice.internal/ (default true) */
    struct policy_alerts alerts;
};

struct policy_names;

struct name_ref {               /* a rule as the lookup tables hold it (policy.c) */
    int32_t rule;
    uint8_t n_ports;
    uint16_t ports[3];
};

struct policy {
    uint64_t generation;        /* unique per compiled policy in this process */
    char *file;                 /* where it came from */
    char **includes;            /* the files it includes (include:, nested ones too), as
                                   opened: relative to the including file's directory */
    size_t n_includes;
    char hash[POLICY_HASH_HEX + 1];
    struct policy_settings settings;
    struct policy_rule *rules;
    size_t n_rules;
    struct cidr *allow_ranges;  /* destinations.allow_ranges, in file order */
    size_t n_allow_ranges;

    /* lookup structures, built by policy_compile() */
    struct policy_names *names;
    int32_t broad_rule;         /* index of the "*" rule, or -1 */
    struct name_ref broad_ref;
    struct cidr_table *cidr_rules;
    struct cidr_table *allow_table;
};

struct policy_verdict {
    bool allow;
    enum reason reason;         /* REASON_NONE when allowed */
    const struct policy_rule *rule; /* the deciding rule; NULL when none matched */
};

/*
 * The last component of a policy file's PATH: how hints to the sandbox name a
 * rule's file ("line 12 of pypi.yaml"), without the operator's directories.
 */
static inline const char *policy_file_base(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

/* The defaults a policy starts from before its file overrides them. */
void policy_settings_default(struct policy_settings *s);

/*
 * Reads and compiles a policy. Returns 0 and sets *OUT, or -EINVAL when the
 * file has errors (all in DIAGS), or another -errno when it could not be read
 * (also described in DIAGS). Warnings are added to DIAGS either way.
 */
int policy_load_file(const char *path, struct policy **out, struct diag_list *diags);
int policy_load_buffer(const char *name, const uint8_t *buf, size_t len,
                       struct policy **out, struct diag_list *diags);

void policy_free(struct policy *p);

/*
 * Decides a flow to HOST (untrusted bytes: an SNI, a Host header, a DNS name)
 * on PORT. The most specific rule naming the host decides: an exact rule,
 * then wildcards from the longest suffix, then "*"; the first of them that
 * lists PORT allows. POLICY_ANY_PORT asks whether any rule names the host.
 * A name longer than dns.max_name_length is allowed by an exact rule only,
 * never by a wildcard (not_allowlisted, V->rule the wildcard).
 * The policy mode is not applied here: audit is the caller's business.
 */
void policy_match_host(const struct policy *p, const uint8_t *host, size_t len,
                       uint16_t port, struct policy_verdict *v);

/* The same for a destination address (4 or 16 bytes of FAMILY), against CIDR rules. */
void policy_match_addr(const struct policy *p, int family, const uint8_t *addr,
                       uint16_t port, struct policy_verdict *v);

/*
 * Applies RULE's http section to one request. Allows when the rule has no
 * http section, or when one of its entries allows both METHOD and TARGET.
 * Paths are matched on TARGET's path, the query cut off, and only when that
 * path is canonical (policy_path_canonical()): any other never satisfies a
 * `paths` entry, since origins would not agree on what it names.
 */
void policy_match_http(const struct policy_rule *rule, const char *method,
                       const char *target, size_t target_len, struct policy_verdict *v);

/*
 * Whether the LEN bytes of PATH name the same resource for every origin: it
 * starts with '/'; no segment is "." or ".." (an escaped dot counted as a dot,
 * ";parameters" ignored); no segment is empty but a trailing one ("//"); no
 * '\', '#', space or control byte; no escape of '/', '\', '%' or NUL, and no
 * malformed escape. Origins resolve, merge and decode such paths each their
 * own way, so a rule matched on the bytes could pass "/allowed/../secret".
 */
bool policy_path_canonical(const char *path, size_t len);

/*
 * One decision of the policy, with its mode applied: the one place where
 * audit turns a denial into a pass, so that the proxy's TCP path, its DNS
 * service, a reload's revalidation and `sluicectl explain` cannot drift.
 */
enum policy_outcome { DECISION_ALLOW, DECISION_DENY, DECISION_AUDIT };

struct policy_query {
    const uint8_t *host;        /* an SNI, a Host, a DNS name (untrusted bytes); or NULL */
    size_t host_len;
    int family;                 /* without a host: the destination address (cidr rules) */
    const uint8_t *addr;
    uint16_t port;              /* POLICY_ANY_PORT: any port a rule lists (DNS) */
    const char *method;         /* an HTTP request's method and target, or NULL */
    const char *target;         /* TARGET_LEN bytes, not NUL-terminated */
    size_t target_len;
    enum reason refused;        /* the caller already refused the flow for this
                                   protocol-level reason (no_sni, unknown_protocol...):
                                   no rule is consulted, only the mode */
};

struct policy_decision {
    enum policy_outcome outcome;
    enum reason reason;         /* what enforce says: REASON_NONE when allowed */
    const struct policy_rule *rule; /* the deciding rule; NULL when none matched */
};

/*
 * Decides Q: the host (or, without one, the address) with its port, then the
 * deciding rule's http section when Q carries a request. A denial is
 * DECISION_AUDIT under `mode: audit` (the flow goes on, logged as what
 * enforce would say), DECISION_DENY otherwise.
 */
void policy_decide(const struct policy *p, const struct policy_query *q,
                   struct policy_decision *d);

/* Whether A and B inject the same values: a reload with only a secret file
 * changed is a change. */
bool policy_same_secrets(const struct policy *a, const struct policy *b);

/* True when destinations.allow_ranges covers ADDR. */
bool policy_range_allowed(const struct policy *p, int family, const uint8_t *addr);

#endif
