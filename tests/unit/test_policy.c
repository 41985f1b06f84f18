/*
 * The policy engine: the matching table (one row per case, each with why),
 * the parser's errors with their exact line and column, settings, http rules.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "policy.h"

static const char match_policy[] =
    "version: 1\n"                                  /* 1 */
    "egress:\n"                                     /* 2 */
    "  - domain: pypi.org\n"                        /* 3 */
    "  - domain: \"*.pythonhosted.org\"\n"          /* 4 */
    "  - domain: Example.ORG.\n"                    /* 5 */
    "    ports: [80, 443]\n"                        /* 6 */
    "  - domain: \"*.example.org\"\n"               /* 7 */
    "    ports: [8443]\n"                           /* 8 */
    "  - domain: api.example.org\n"                 /* 9 */
    "  - domain: \"*.deep.example.net\"\n"          /* 10 */
    "  - domain: \"*.example.net\"\n"               /* 11 */
    "    ports: [443, 8080]\n"                      /* 12 */
    "  - domain: xn--bcher-kva.test\n"              /* 13 */
    "  - domain: intranet\n"                        /* 14 */
    "  - cidr: 192.0.2.0/24\n"                      /* 15 */
    "    ports: [5432]\n"                           /* 16 */
    "  - cidr: 192.0.2.128/25\n"                    /* 17 */
    "    ports: [6432]\n"                           /* 18 */
    "  - cidr: 2001:db8::/32\n"                     /* 19 */
    "    ports: [5432]\n"                           /* 20 */
    "  - cidr: 198.51.100.7/32\n"                   /* 21 */
    "    ports: [22]\n";                            /* 22 */

struct match_row {
    const char *host;           /* a name, or an address for cidr rules */
    uint16_t port;
    bool allow;
    enum reason reason;
    unsigned rule_line;         /* line of the deciding rule; 0 for none */
    const char *why;
};

static const struct match_row match_rows[] = {
    /* exact names */
    {"pypi.org", 443, true, REASON_NONE, 3, "exact name, default port"},
    {"PYPI.ORG", 443, true, REASON_NONE, 3, "matching ignores case"},
    {"PyPi.Org.", 443, true, REASON_NONE, 3, "trailing dot is the root"},
    {"pypi.org", 80, false, REASON_PORT_NOT_ALLOWED, 3, "default ports are [443] only"},
    {"pypi.org", 0, true, REASON_NONE, 3, "ANY_PORT: some rule names it (DNS use)"},
    {"www.pypi.org", 443, false, REASON_NOT_ALLOWLISTED, 0, "an exact rule allows no subdomain"},
    {"evilpypi.org", 443, false, REASON_NOT_ALLOWLISTED, 0, "lookalike prefix"},
    {"pypi.org.evil.test", 443, false, REASON_NOT_ALLOWLISTED, 0, "allowed name as a prefix"},
    {"pypi.org..", 443, false, REASON_INVALID_HOSTNAME, 0, "two root dots: empty label"},
    {"pypi.orgx", 443, false, REASON_NOT_ALLOWLISTED, 0, "longer TLD"},
    {"ypi.org", 443, false, REASON_NOT_ALLOWLISTED, 0, "suffix of the name"},
    {"pypi", 443, false, REASON_NOT_ALLOWLISTED, 0, "first label alone"},
    {"org", 443, false, REASON_NOT_ALLOWLISTED, 0, "TLD alone"},
    /* wildcards */
    {"files.pythonhosted.org", 443, true, REASON_NONE, 4, "one label in front"},
    {"a.b.c.pythonhosted.org", 443, true, REASON_NONE, 4, "several labels in front"},
    {"pythonhosted.org", 443, false, REASON_NOT_ALLOWLISTED, 0, "wildcard never covers the apex"},
    {"evilpythonhosted.org", 443, false, REASON_NOT_ALLOWLISTED, 0,
     "suffix without a label boundary"},
    {"files.pythonhosted.org.evil.test", 443, false, REASON_NOT_ALLOWLISTED, 0,
     "wildcard name as a prefix"},
    {"FILES.PythonHosted.ORG", 443, true, REASON_NONE, 4, "wildcard ignores case"},
    {"files.pythonhosted.org.", 443, true, REASON_NONE, 4, "wildcard with root dot"},
    {"files.pythonhosted.org", 80, false, REASON_PORT_NOT_ALLOWED, 4, "wildcard port"},
    {".pythonhosted.org", 443, false, REASON_INVALID_HOSTNAME, 0, "empty first label"},
    {"*.pythonhosted.org", 443, false, REASON_INVALID_HOSTNAME, 0, "a star is not a name"},
    /* exact vs wildcard on the same suffix */
    {"example.org", 80, true, REASON_NONE, 5, "policy wrote Example.ORG. with a dot"},
    {"example.org", 443, true, REASON_NONE, 5, "second port of the list"},
    {"example.org", 8443, false, REASON_PORT_NOT_ALLOWED, 5,
     "the apex is not covered by *.example.org"},
    {"www.example.org", 8443, true, REASON_NONE, 7, "wildcard's own port"},
    {"www.example.org", 443, false, REASON_PORT_NOT_ALLOWED, 7, "exact rule's port does not leak"},
    {"api.example.org", 443, true, REASON_NONE, 9, "exact beats wildcard"},
    {"api.example.org", 8443, true, REASON_NONE, 7,
     "exact rule lacks the port, the wildcard has it"},
    {"api.example.org", 80, false, REASON_PORT_NOT_ALLOWED, 9,
     "no rule has the port: the most specific is named"},
    {"x.api.example.org", 8443, true, REASON_NONE, 7, "subdomain of an exact rule uses wildcard"},
    /* nested wildcards: longest suffix first */
    {"a.deep.example.net", 443, true, REASON_NONE, 10, "longest wildcard decides"},
    {"a.deep.example.net", 8080, true, REASON_NONE, 11, "shorter wildcard has the port"},
    {"deep.example.net", 443, true, REASON_NONE, 11, "apex of inner is covered by outer"},
    {"deep.example.net", 8080, true, REASON_NONE, 11, "outer wildcard's second port"},
    {"example.net", 443, false, REASON_NOT_ALLOWLISTED, 0, "apex of outer"},
    {"a.deep.example.net", 22, false, REASON_PORT_NOT_ALLOWED, 10,
     "port denial names the most specific rule"},
    /* A-labels and odd names */
    {"xn--bcher-kva.test", 443, true, REASON_NONE, 13, "A-label matches"},
    {"XN--BCHER-KVA.TEST", 443, true, REASON_NONE, 13, "A-label ignores case"},
    {"b\xc3\xbc" "cher.test", 443, false, REASON_INVALID_HOSTNAME, 0,
     "U-label is not a hostname"},
    {"intranet", 443, true, REASON_NONE, 14, "single-label exact rule"},
    {"intranet.", 443, true, REASON_NONE, 14, "single label with root dot"},
    {"", 443, false, REASON_INVALID_HOSTNAME, 0, "empty name"},
    {".", 443, false, REASON_INVALID_HOSTNAME, 0, "root only"},
    {"a..pypi.org", 443, false, REASON_INVALID_HOSTNAME, 0, "empty inner label"},
    {"pyp_i.org", 443, false, REASON_INVALID_HOSTNAME, 0, "underscore"},
    {"pypi.org:443", 443, false, REASON_INVALID_HOSTNAME, 0, "port glued to the name"},
    {"-pypi.org", 443, false, REASON_INVALID_HOSTNAME, 0, "leading hyphen"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.pythonhosted.org", 443,
     false, REASON_INVALID_HOSTNAME, 0, "64-byte label"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.pythonhosted.org", 443,
     true, REASON_NONE, 4, "63-byte label"},
    /* IP literals as names are never allowed, whatever the CIDR rules say */
    {"192.0.2.10", 5432, false, REASON_INVALID_HOSTNAME, 0, "v4 literal as SNI"},
    {"192.0.2.10.", 5432, false, REASON_INVALID_HOSTNAME, 0, "v4 literal with root dot"},
    {"3221225994", 5432, false, REASON_INVALID_HOSTNAME, 0, "integer form of 192.0.2.10"},
    {"0xc0.0.2.10", 5432, false, REASON_INVALID_HOSTNAME, 0, "hex first part"},
    {"0300.0.2.10", 5432, false, REASON_INVALID_HOSTNAME, 0, "octal first part"},
    {"192.0.522", 5432, false, REASON_INVALID_HOSTNAME, 0, "three-part inet_aton form"},
    {"2001:db8::1", 5432, false, REASON_INVALID_HOSTNAME, 0, "v6 literal as SNI"},
    {"[2001:db8::1]", 5432, false, REASON_INVALID_HOSTNAME, 0, "bracketed v6 literal"},
    {"::ffff:192.0.2.10", 5432, false, REASON_INVALID_HOSTNAME, 0, "v4-mapped literal"},
};

/* Addresses against CIDR rules (policy_match_addr). */
static const struct match_row addr_rows[] = {
    {"192.0.2.10", 5432, true, REASON_NONE, 15, "inside the /24"},
    {"192.0.2.10", 6432, false, REASON_PORT_NOT_ALLOWED, 15, "port of the /25 only"},
    {"192.0.2.200", 6432, true, REASON_NONE, 17, "the /25 is more specific"},
    {"192.0.2.200", 5432, true, REASON_NONE, 15, "the /24 still has its port"},
    {"192.0.2.200", 80, false, REASON_PORT_NOT_ALLOWED, 17, "longest prefix is named"},
    {"192.0.3.1", 5432, false, REASON_NOT_ALLOWLISTED, 0, "next /24"},
    {"198.51.100.7", 22, true, REASON_NONE, 21, "host route"},
    {"198.51.100.8", 22, false, REASON_NOT_ALLOWLISTED, 0, "neighbour of the host route"},
    {"2001:db8:ffff::1", 5432, true, REASON_NONE, 19, "v6 prefix"},
    {"2001:db9::1", 5432, false, REASON_NOT_ALLOWLISTED, 0, "next v6 /32"},
    {"::ffff:192.0.2.10", 5432, false, REASON_NOT_ALLOWLISTED, 0,
     "v4-mapped is not the v4 prefix"},
    {"0.0.0.0", 5432, false, REASON_NOT_ALLOWLISTED, 0, "unspecified"},
};

static struct policy *load_str(const char *text, struct diag_list *d)
{
    struct policy *p = NULL;

    diag_init(d, "t.yaml");
    policy_load_buffer("t.yaml", (const uint8_t *)text, strlen(text), &p, d);
    return p;
}

static void check_row(const struct match_row *r, const struct policy_verdict *v, size_t i)
{
    if (v->allow != r->allow || v->reason != r->reason)
        fail_msg("row %zu %s:%u (%s): got %s/%s want %s/%s", i, r->host, r->port, r->why,
                 v->allow ? "allow" : "deny", reason_name(v->reason),
                 r->allow ? "allow" : "deny", reason_name(r->reason));
    if ((v->rule ? v->rule->line : 0) != r->rule_line)
        fail_msg("row %zu %s:%u (%s): decided by line %u, want %u", i, r->host, r->port,
                 r->why, v->rule ? v->rule->line : 0, r->rule_line);
}

static void test_match_hosts(void **state)
{
    struct diag_list d;
    struct policy *p = load_str(match_policy, &d);
    size_t i;

    (void)state;
    if (!p) {
        diag_print(&d, stderr);
        fail();
    }
    assert_int_equal(d.n_errors, 0);
    for (i = 0; i < sizeof(match_rows) / sizeof(match_rows[0]); i++) {
        const struct match_row *r = &match_rows[i];
        struct policy_verdict v;

        policy_match_host(p, (const uint8_t *)r->host, strlen(r->host), r->port, &v);
        check_row(r, &v, i);
    }
    policy_free(p);
    diag_clear(&d);
}

static void test_match_addrs(void **state)
{
    struct diag_list d;
    struct policy *p = load_str(match_policy, &d);
    size_t i;

    (void)state;
    assert_non_null(p);
    for (i = 0; i < sizeof(addr_rows) / sizeof(addr_rows[0]); i++) {
        const struct match_row *r = &addr_rows[i];
        int family = strchr(r->host, ':') ? AF_INET6 : AF_INET;
        struct policy_verdict v;
        uint8_t a[16];

        assert_int_equal(inet_pton(family, r->host, a), 1);
        policy_match_addr(p, family, a, r->port, &v);
        check_row(r, &v, i);
    }
    policy_free(p);
    diag_clear(&d);
}

static void test_embedded_nul(void **state)
{
    static const uint8_t host[] = "pypi.org\0.evil.test";
    struct diag_list d;
    struct policy *p = load_str(match_policy, &d);
    struct policy_verdict v;

    (void)state;
    assert_non_null(p);
    /* an SNI with a NUL must not be read as the name before it */
    policy_match_host(p, host, sizeof(host) - 1, 443, &v);
    assert_false(v.allow);
    assert_int_equal(v.reason, REASON_INVALID_HOSTNAME);
    policy_free(p);
    diag_clear(&d);
}

static void test_broad(void **state)
{
    struct diag_list d;
    struct policy *p = load_str("version: 1\negress:\n"
                                "  - domain: \"*\"\n    allow_broad: true\n    ports: [80]\n"
                                "  - domain: \"*.com\"\n    allow_broad: true\n"
                                "  - domain: \"*.corp.test\"\n"
                                /* below a public suffix: a registrable domain's names */
                                "  - domain: \"*.example.co.uk\"\n"
                                "  - domain: \"*.me.github.io\"\n"
                                "  - domain: \"*.corp.internal\"\n", &d);
    struct policy_verdict v;

    (void)state;
    assert_non_null(p);
    policy_match_host(p, (const uint8_t *)"anything.test", 13, 80, &v);
    assert_true(v.allow);
    assert_int_equal(v.rule->line, 3);
    policy_match_host(p, (const uint8_t *)"a.com", 5, 443, &v);
    assert_true(v.allow);
    assert_int_equal(v.rule->line, 6);
    policy_match_host(p, (const uint8_t *)"com", 3, 443, &v);   /* apex of *.com */
    assert_false(v.allow);
    assert_int_equal(v.reason, REASON_PORT_NOT_ALLOWED);       /* "*" names it, port 80 only */
    policy_match_host(p, (const uint8_t *)"x.corp.test", 11, 80, &v);  /* falls to "*" */
    assert_true(v.allow);
    assert_int_equal(v.rule->line, 3);
    policy_match_host(p, (const uint8_t *)"1.2.3.4", 7, 80, &v);  /* "*" is names only */
    assert_false(v.allow);
    assert_int_equal(v.reason, REASON_INVALID_HOSTNAME);
    /* both broad rules are warned about */
    assert_int_equal(d.n, 2);
    assert_int_equal(d.v[0].level, DIAG_WARNING);
    policy_free(p);
    diag_clear(&d);
}

/* One parse error: the first diagnostic must be an error at LINE:COL containing WANT. */
struct error_row {
    const char *text;
    unsigned line, col;
    const char *want;
    const char *why;
};

static const struct error_row error_rows[] = {
    {"version: 1\negress:\n  - domain: a.test\n    ports: [70000]\n", 4, 13,
     "port 70000 out of range (1-65535)", "port above 65535"},
    {"version: 1\negress:\n  - domain: a.test\n    ports: [0]\n", 4, 13,
     "port 0 out of range", "port zero"},
    {"version: 1\negress:\n  - domain: a.test\n    ports: [https]\n", 4, 13,
     "port must be a whole number, not 'https'", "service name as port"},
    {"version: 1\negress:\n  - domain: a.test\n    ports: 443\n", 4, 12,
     "ports must be a list, not a scalar", "scalar where a list belongs"},
    {"version: 1\negress:\n  - domain: a.test\n    ports: []\n", 4, 12,
     "ports is empty", "empty port list"},
    {"version: 1\negres:\n  - domain: a.test\n", 2, 1, "unknown key 'egres' in the policy; "
     "did you mean 'egress'?", "misspelled top-level key"},
    {"version: 1\negress:\n  - domain: a.test\n    port: [80]\n", 4, 5,
     "did you mean 'ports'?", "misspelled rule key"},
    {"version: 1\negress:\n  - domain: a.test\n    colour: red\n", 4, 5,
     "unknown key 'colour' in an egress rule (known keys: domain, cidr, ports",
     "unknown rule key lists the known ones"},
    {"version: 1\negress:\n  - domain: \"\"\n", 3, 13, "domain '' is not a valid name: empty",
     "empty domain"},
    {"version: 1\negress:\n  - domain: a..test\n", 3, 13, "empty label", "empty label"},
    {"version: 1\negress:\n  - domain: b\xc3\xbc" "cher.test\n", 3, 13, "is not ASCII",
     "non-ASCII domain"},
    {"version: 1\negress:\n  - domain: a_b.test\n", 3, 13, "character other than",
     "underscore in domain"},
    {"version: 1\negress:\n  - domain: 192.0.2.1\n", 3, 13,
     "is an IP address; use 'cidr: 192.0.2.1/32'", "IP literal as domain"},
    {"version: 1\negress:\n  - domain: \"*\"\n", 3, 13, "add 'allow_broad: true'",
     "star without allow_broad"},
    {"version: 1\negress:\n  - domain: \"*.com\"\n", 3, 13,
     "every name under the public suffix 'com'", "*.tld without allow_broad"},
    {"version: 1\negress:\n  - domain: \"*.co.uk\"\n", 3, 13,
     "every name under the public suffix 'co.uk'", "*.co.uk: a public suffix (libpsl)"},
    {"version: 1\negress:\n  - domain: \"*.github.io\"\n", 3, 13,
     "under the public suffix 'github.io'", "the list's private section counts too"},
    {"version: 1\negress:\n  - domain: \"*.s3.amazonaws.com\"\n", 3, 13,
     "under the public suffix 's3.amazonaws.com'", "a cloud provider's private suffix"},
    {"version: 1\negress:\n  - domain: \"*.internal\"\n", 3, 13,
     "under the public suffix 'internal'", "an unlisted top-level domain"},
    {"version: 1\negress:\n  - domain: \"a.*.test\"\n", 3, 13,
     "'*' may only stand as the whole first label", "star in the middle"},
    {"version: 1\negress:\n  - domain: \"*a.test\"\n", 3, 13,
     "'*' may only stand as the whole first label", "star glued to a label"},
    {"version: 1\negress:\n  - cidr: 192.0.2.1/24\n", 3, 11,
     "has host bits set; write 192.0.2.0/24", "CIDR host bits"},
    {"version: 1\negress:\n  - cidr: 192.0.2.0/40\n", 3, 11, "prefix length out of range",
     "CIDR length"},
    {"version: 1\negress:\n  - cidr: example.org\n", 3, 11,
     "is not an address/prefix", "CIDR syntax"},
    {"version: 1\negress:\n  - ports: [443]\n", 3, 5, "needs 'domain: NAME' or 'cidr:",
     "rule without a target"},
    {"version: 1\negress:\n  - domain: a.test\n    cidr: 192.0.2.0/24\n", 3, 5,
     "'domain' or 'cidr', not both", "rule with two targets"},
    {"version: 1\negress:\n  - domain: a.test\n  - domain: A.test.\n", 4, 5,
     "duplicate rule for 'a.test' (first at line 3)", "same name twice, spelled differently"},
    {"version: 1\negress:\n  - cidr: 192.0.2.0/24\n  - cidr: 192.0.2.0/24\n", 4, 5,
     "duplicate rule for '192.0.2.0/24' (first at line 3)", "same CIDR twice"},
    {"version: 1\negress:\n  - domain: \"*.a.test\"\n  - domain: \"*.A.test\"\n", 4, 5,
     "duplicate rule for '*.a.test'", "same wildcard twice"},
    {"version: 1\nversion: 1\n", 2, 1, "key 'version' appears twice", "repeated key"},
    {"version: 2\n", 1, 10, "unknown policy version '2' (this sluice reads version: 1)",
     "future version"},
    {"egress: []\n", 1, 1, "the policy has no 'version'", "missing version"},
    {"", 1, 1, "empty policy", "empty file"},
    {"- a\n- b\n", 1, 1, "the policy must be a mapping, not a list", "list at top"},
    {"version: 1\nmode: permissive\n", 2, 7, "mode must be enforce or audit", "bad mode"},
    {"version: 1\negress:\n  - domain: a.test\n    inspect: yes\n", 4, 14,
     "inspect must be true or false, not 'yes'", "YAML 1.1 boolean"},
    {"version: 1\negress: {}\n", 2, 9, "egress must be a list, not a mapping", "wrong type"},
    {"version: 1\negress:\n  - pypi.org\n", 3, 5, "write '- domain: pypi.org'",
     "bare name as a rule"},
    {"version: 1\ndns:\n  unlisted: servfail\n", 3, 13,
     "dns.unlisted must be nxdomain or refused", "bad dns answer"},
    {"version: 1\ndns:\n  answers: fake\n", 3, 12,
     "dns.answers must be real or virtual", "bad dns.answers"},
    {"version: 1\ndns:\n  max_name_length: 300\n", 3, 20, "out of range (1-253)",
     "name length over 253"},
    {"version: 1\ntimeouts:\n  sniff: 5 seconds\n", 3, 10, "write it like '5s'",
     "unreadable duration"},
    {"version: 1\ntimeouts:\n  idle: 0s\n", 3, 9, "timeouts.idle 0s out of range",
     "zero timeout"},
    {"version: 1\nlimits:\n  upload_bytes_per_second: 1 MiB\n", 3, 28, "write it like",
     "unit with a space"},
    {"version: 1\nlimits:\n  max_connections: -1\n", 3, 20, "must be a whole number",
     "negative number"},
    {"version: 1\ndestinations:\n  allow_ranges: [10.0.0.1/8]\n", 3, 18,
     "has host bits set; write 10.0.0.0/8", "allow_ranges host bits"},
    {"version: 1\ntls:\n  ech: allow\n", 3, 8, "tls.ech must be deny or allow-outer",
     "bad ech"},
    {"version: 1\negress:\n  - cidr: 192.0.2.0/24\n    inspect: true\n", 3, 5,
     "inspect needs a name", "inspect on a CIDR"},
    {"version: 1\negress:\n  - domain: a.test\n    http:\n      - methods: [get]\n", 5, 19,
     "method 'get' is not an uppercase HTTP method", "lowercase method"},
    {"version: 1\negress:\n  - domain: a.test\n    http:\n      - paths: [repos]\n", 5, 17,
     "path 'repos' must start with '/'", "relative path"},
    {"version: 1\negress:\n  - domain: a.test\n    http:\n      - paths: [\"/a/../b\"]\n", 5,
     17, "be a canonical path", "dot segment in a path"},
    {"version: 1\negress:\n  - domain: a.test\n    http:\n      - paths: [\"/s?q=*\"]\n", 5,
     17, "no '?' (the query is not matched)", "query in a path"},
    {"version: 1\negress:\n  - domain: a.test\n    http:\n      - paths: [\"*/%2e%2E/*\"]\n",
     5, 17, "no '.' or '..' segment", "escaped dot segment after a star"},
    {"version: 1\negress:\n  - &r {domain: a.test}\n  - *r\n", 3, 5,
     "YAML aliases are not supported", "alias to a rule"},
    {"version: 1\negress: [\n", 3, 1, "YAML syntax error", "unterminated flow list"},
    {"version: 1\n---\nversion: 1\n", 3, 1, "a second YAML document", "two documents"},
    {"version: 1\n\tegress: []\n", 2, 1, "YAML syntax error", "tab indentation"},
    {"version: 1\negress:\n  - cidr: 192.0.2.0/24\n    budget: {upload: 1MiB}\n", 4, 13,
     "a budget is per name; it cannot apply to cidr", "a budget on a cidr rule"},
    {"version: 1\negress:\n  - domain: a.test\n    budget: {per: 1h}\n", 4, 13,
     "a budget needs 'upload: SIZE' or 'download: SIZE'", "a budget of nothing"},
    {"version: 1\negress:\n  - domain: a.test\n    budget: {upload: lots}\n", 4, 22,
     "budget.upload: cannot read 'lots'", "a budget that is no size"},
    {"version: 1\nalerts: {port_scan: true}\n", 2, 21, "true is the default",
     "a detector set to true"},
    {"version: 1\nalerts:\n  dns_tunnel: {entropy: 7}\n", 3, 25,
     "bits per character from 1.0 to 6.0", "entropy above base64's"},
    {"version: 1\nalerts:\n  dns_tunnel: {entropy: 3.125}\n", 3, 25,
     "at most two decimals", "entropy with three decimals"},
    {"version: 1\nalerts:\n  dns_tunnel: {entropy: 3.}\n", 3, 25, "not '3.'",
     "entropy with a dangling point"},
    {"version: 1\nalerts:\n  port_scan: {ports: 5000}\n", 3, 22,
     "alerts.port_scan.ports 5000 out of range (1-4096)", "a set larger than the bound"},
    {"version: 1\nalerts:\n  upload_burst: {byte: 1MiB}\n", 3, 18,
     "did you mean 'bytes'?", "misspelled detector key"},
    {"version: 1\nalerts:\n  portscan: false\n", 3, 3, "did you mean 'port_scan'?",
     "misspelled detector"},
};

static void test_errors(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(error_rows) / sizeof(error_rows[0]); i++) {
        const struct error_row *r = &error_rows[i];
        struct diag_list d;
        struct policy *p = load_str(r->text, &d);
        const struct diag *e = NULL;
        size_t j;

        for (j = 0; j < d.n && !e; j++)
            if (d.v[j].level == DIAG_ERROR)
                e = &d.v[j];
        if (p || !e) {
            fail_msg("row %zu (%s): no error reported", i, r->why);
        }
        if (e->line != r->line || e->col != r->col || !strstr(e->msg, r->want))
            fail_msg("row %zu (%s): got %u:%u '%s', want %u:%u '%s'", i, r->why, e->line,
                     e->col, e->msg, r->line, r->col, r->want);
        diag_clear(&d);
    }
}

struct warn_row {
    const char *text;
    unsigned line;
    const char *want;
};

static const struct warn_row warn_rows[] = {
    {"version: 1\nmode: audit\n", 2, "mode: audit allows every flow"},
    {"version: 1\negress:\n  - cidr: 10.0.0.0/8\n    ports: [22]\n", 3, "wider than /16"},
    {"version: 1\negress:\n  - domain: \"*.com\"\n    allow_broad: true\n", 3, "is broad"},
    {"version: 1\negress:\n  - domain: a.test\n    ports: [443, 443]\n", 4, "listed twice"},
    {"version: 1\ndestinations:\n  allow_ranges: [169.254.0.0/16]\n", 3, "cloud metadata"},
    {"version: 1\negress:\n  - domain: a.test\n    http:\n      - methods: [GET]\n", 3,
     "apply to plain HTTP only"},
    {"version: 1\n", 1, "no 'egress' rules"},
    {"version: 1\negress:\n  - domain: db.test\n    ports: [443, 5432]\n", 3,
     "port 5432 of 'db.test' needs dns.answers: virtual unless it carries TLS or HTTP"},
};

static void test_warnings(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(warn_rows) / sizeof(warn_rows[0]); i++) {
        const struct warn_row *r = &warn_rows[i];
        struct diag_list d;
        struct policy *p = load_str(r->text, &d);

        if (!p || d.n_errors != 0 || d.n == 0)
            fail_msg("row %zu: expected a valid policy with a warning", i);
        if (d.v[0].level != DIAG_WARNING || d.v[0].line != r->line ||
            !strstr(d.v[0].msg, r->want))
            fail_msg("row %zu: got %u '%s', want %u '%s'", i, d.v[0].line, d.v[0].msg,
                     r->line, r->want);
        policy_free(p);
        diag_clear(&d);
    }
}

static void test_many_errors_reported(void **state)
{
    struct diag_list d;
    struct policy *p = load_str("version: 1\negress:\n"
                                "  - domain: a.test\n    ports: [70000]\n"
                                "  - cidr: 1.2.3.4/8\n"
                                "  - domain: \"*\"\n", &d);

    (void)state;
    assert_null(p);
    assert_int_equal(d.n_errors, 3);    /* one run shows every problem */
    assert_int_equal(d.v[0].line, 4);
    assert_int_equal(d.v[1].line, 5);
    assert_int_equal(d.v[2].line, 6);
    diag_clear(&d);
}

static void test_settings(void **state)
{
    struct diag_list d;
    struct policy *p = load_str("version: 1\nmode: enforce\negress: []\n"
                                "dns: {unlisted: refused, queries_per_second: 7,"
                                " max_name_length: 80, max_ttl: 30}\n"
                                "timeouts: {sniff: 250ms, connect: 2m, idle: 1h}\n"
                                "limits: {max_connections: 0, new_connections_per_second: 3,"
                                " upload_bytes_per_second: 512KiB,"
                                " download_bytes_per_second: 10MB}\n"
                                "destinations: {allow_ranges: [192.0.2.0/24, 2001:db8::/32]}\n"
                                "tls: {ech: allow-outer}\n", &d);
    const struct policy_settings *s;
    uint8_t a[16];

    (void)state;
    if (!p) {
        diag_print(&d, stderr);
        fail();
    }
    s = &p->settings;
    assert_int_equal(s->dns.unlisted, DNS_UNLISTED_REFUSED);
    assert_int_equal(s->dns.queries_per_second, 7);
    assert_int_equal(s->dns.max_name_length, 80);
    assert_int_equal(s->dns.max_ttl, 30);
    assert_int_equal(s->timeouts.sniff_ms, 250);
    assert_int_equal(s->timeouts.connect_ms, 120000);
    assert_int_equal(s->timeouts.idle_ms, 3600000);
    assert_int_equal(s->limits.max_connections, 0);
    assert_int_equal(s->limits.new_connections_per_second, 3);
    assert_int_equal(s->limits.upload_bytes_per_second, 512 * 1024);
    assert_int_equal(s->limits.download_bytes_per_second, 10000000);
    assert_int_equal(s->ech, ECH_ALLOW_OUTER);
    assert_int_equal(p->n_allow_ranges, 2);
    inet_pton(AF_INET, "192.0.2.99", a);
    assert_true(policy_range_allowed(p, AF_INET, a));
    inet_pton(AF_INET, "192.0.3.1", a);
    assert_false(policy_range_allowed(p, AF_INET, a));
    inet_pton(AF_INET6, "2001:db8::5", a);
    assert_true(policy_range_allowed(p, AF_INET6, a));
    assert_int_equal(strlen(p->hash), POLICY_HASH_HEX);
    policy_free(p);
    diag_clear(&d);

    /* a port beside 80 and 443 is what virtual answers are for: no warning; nor
     * on rules whose traffic is HTTP(S) by definition */
    p = load_str("version: 1\negress:\n  - domain: db.test\n    ports: [5432]\n"
                 "  - domain: api.test\n    ports: [8443]\n    inspect: true\n"
                 "dns: {answers: virtual}\n", &d);
    assert_non_null(p);
    assert_int_equal(p->settings.dns.answers, DNS_ANSWERS_VIRTUAL);
    assert_int_equal(d.n, 0);
    policy_free(p);
    diag_clear(&d);
    p = load_str("version: 1\negress:\n  - domain: api.test\n    ports: [8443]\n"
                 "    http: [{methods: [GET]}]\n", &d);
    assert_non_null(p);
    assert_int_equal(d.n, 1);                   /* only "http rules apply to plain HTTP" */
    assert_non_null(strstr(d.v[0].msg, "plain HTTP only"));
    policy_free(p);
    diag_clear(&d);

    /* alerts: thresholds, a detector turned off, all turned off */
    p = load_str("version: 1\negress: []\nalerts:\n"
                 "  port_scan: {ports: 50, window: 30s}\n"
                 "  dns_tunnel: {names: 10, encoded: 2, window: 1m, label_length: 20,"
                 " entropy: 4.25}\n"
                 "  upload_burst: false\n"
                 "  denied_burst: {denials: 7}\n", &d);
    assert_non_null(p);
    s = &p->settings;
    assert_int_equal(s->alerts.port_scan.ports, 50);
    assert_int_equal(s->alerts.port_scan.window_ms, 30000);
    assert_int_equal(s->alerts.dns_tunnel.names, 10);
    assert_int_equal(s->alerts.dns_tunnel.encoded, 2);
    assert_int_equal(s->alerts.dns_tunnel.window_ms, 60000);
    assert_int_equal(s->alerts.dns_tunnel.label_length, 20);
    assert_int_equal(s->alerts.dns_tunnel.entropy_centi, 425);
    assert_int_equal(s->alerts.upload_burst.bytes, 0);
    assert_int_equal(s->alerts.upload_burst.ratio, 0);
    assert_int_equal(s->alerts.denied_burst.denials, 7);
    assert_int_equal(s->alerts.denied_burst.window_ms, 60000);   /* the default kept */
    policy_free(p);
    diag_clear(&d);
    p = load_str("version: 1\negress: []\nalerts: false\n", &d);
    assert_non_null(p);
    assert_int_equal(p->settings.alerts.port_scan.ports, 0);
    assert_int_equal(p->settings.alerts.dns_tunnel.names, 0);
    assert_int_equal(p->settings.alerts.denied_burst.denials, 0);
    policy_free(p);
    diag_clear(&d);

    /* defaults */
    p = load_str("version: 1\negress: []\n", &d);
    assert_non_null(p);
    assert_int_equal(p->settings.dns.answers, DNS_ANSWERS_REAL);
    assert_int_equal(p->settings.mode, POLICY_ENFORCE);
    assert_int_equal(p->settings.timeouts.sniff_ms, 5000);
    assert_int_equal(p->settings.dns.max_ttl, 60);
    assert_int_equal(p->settings.limits.max_connections, 256);
    assert_int_equal(p->settings.ech, ECH_DENY);
    assert_int_equal(p->settings.alerts.port_scan.ports, 20);
    assert_int_equal(p->settings.alerts.dns_tunnel.entropy_centi, 300);
    assert_int_equal(p->settings.alerts.upload_burst.bytes, 16u << 20);
    policy_free(p);
    diag_clear(&d);
}

static void test_http(void **state)
{
    struct diag_list d;
    struct policy *p = load_str("version: 1\negress:\n"
                                "  - domain: api.test\n    inspect: true\n    http:\n"
                                "      - methods: [GET, HEAD]\n"
                                "        paths: [\"/repos/*\", /meta]\n"
                                "      - methods: [POST]\n"
                                "        paths: [\"/repos/*/issues\"]\n"
                                "  - domain: open.test\n", &d);
    static const struct {
        const char *method, *path;
        bool allow;
        enum reason reason;
    } rows[] = {
        {"GET", "/repos/a/b", true, REASON_NONE},
        {"HEAD", "/meta", true, REASON_NONE},
        {"GET", "/meta/x", false, REASON_PATH_NOT_ALLOWED},   /* no star: exact */
        {"GET", "/repos", false, REASON_PATH_NOT_ALLOWED},    /* star needs the slash */
        {"GET", "/repos/", true, REASON_NONE},                /* star matches empty */
        {"POST", "/repos/a/issues", true, REASON_NONE},
        {"POST", "/repos/a/b/issues", true, REASON_NONE},     /* star crosses slashes */
        {"POST", "/repos/a/pulls", false, REASON_PATH_NOT_ALLOWED},
        {"DELETE", "/repos/a", false, REASON_METHOD_NOT_ALLOWED},
        {"get", "/repos/a", false, REASON_METHOD_NOT_ALLOWED}, /* methods are case-sensitive */
        {"GET", "/meta?x=1", true, REASON_NONE},              /* the query is not matched */
        {"GET", "/meta/?", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/other?/repos/x", false, REASON_PATH_NOT_ALLOWED},  /* nor matches */
        {"GET", "/repos/a%20b", true, REASON_NONE},
        /* paths origins would resolve or decode to something else: never matched */
        {"GET", "/repos/../admin", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos/%2e%2E/admin", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos/..%2fadmin", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos%2F../admin", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos//../admin", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos/x/..;/admin", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos/./x", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos/x\\..\\admin", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos/%252e%252e/admin", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos/%zz", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "/repos/%2", false, REASON_PATH_NOT_ALLOWED},
        {"GET", "*", false, REASON_PATH_NOT_ALLOWED},
    };
    struct policy_verdict v;
    size_t i;

    (void)state;
    assert_non_null(p);
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        policy_match_http(&p->rules[0], rows[i].method, rows[i].path, strlen(rows[i].path),
                          &v);
        if (v.allow != rows[i].allow || v.reason != rows[i].reason)
            fail_msg("%s %s: got %s", rows[i].method, rows[i].path, reason_name(v.reason));
    }
    /* the target is its length, not up to a NUL: the bytes after it (the rest of
     * a request head) are never matched, nor is a '?' beyond it */
    policy_match_http(&p->rules[0], "HEAD", "/meta/x", 5, &v);
    assert_true(v.allow);
    policy_match_http(&p->rules[0], "HEAD", "/meta?x", 6, &v);
    assert_true(v.allow);                       /* "/meta?" is the path "/meta"... */
    policy_match_http(&p->rules[0], "HEAD", "/metaX?", 6, &v);
    assert_false(v.allow);                      /* ...and "/metaX" is not */
    policy_match_http(&p->rules[1], "DELETE", "/anything", 9, &v);   /* no http section */
    assert_true(v.allow);
    policy_free(p);
    diag_clear(&d);
}

/* dns.max_name_length bounds what a wildcard allows, on every path (P6). */
static void test_wildcard_name_length(void **state)
{
    struct diag_list d;
    struct policy *p = load_str("version: 1\negress:\n"
                                "  - domain: \"*.w.test\"\n"
                                "  - domain: a-long-but-exact-name.w.test\n"
                                "dns:\n  max_name_length: 20\n", &d);
    static const struct {
        const char *host;
        bool allow;
    } rows[] = {
        {"abcdefghijkl.w.test", true},          /* 19 */
        {"abcdefghijklm.w.test", true},         /* 20 */
        {"abcdefghijklmn.w.test", false},       /* 21: under a wildcard, too long */
        {"a-long-but-exact-name.w.test", true}, /* an exact rule: any length */
    };
    struct policy_verdict v;
    size_t i;

    (void)state;
    assert_non_null(p);
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        policy_match_host(p, (const uint8_t *)rows[i].host, strlen(rows[i].host), 443, &v);
        if (v.allow != rows[i].allow)
            fail_msg("%s: got %s", rows[i].host, v.allow ? "allow" : reason_name(v.reason));
        if (!v.allow)
            assert_int_equal(v.reason, REASON_NOT_ALLOWLISTED);
    }
    policy_free(p);
    diag_clear(&d);
}

/*
 * policy_decide(): every reason the engine gives or is handed, under enforce
 * and under audit. Audit turns each denial into a pass with the same reason
 * and rule; nothing else about the decision changes.
 */
static const char decide_policy[] =
    "version: 1\n"                                  /* 1 */
    "mode: %s\n"                                    /* 2 */
    "egress:\n"                                     /* 3 */
    "  - domain: api.test\n"                        /* 4 */
    "    http:\n"                                   /* 5 */
    "      - methods: [GET]\n"                      /* 6 */
    "        paths: [\"/ok/*\"]\n"                  /* 7 */
    "  - domain: \"*.w.test\"\n"                    /* 8 */
    "  - cidr: 192.0.2.0/24\n"                      /* 9 */
    "    ports: [5432]\n"                           /* 10 */
    "dns:\n  max_name_length: 20\n";

static void test_decide(void **state)
{
    static const struct {
        const char *host;       /* a name, an address (cidr rules), or NULL */
        uint16_t port;
        const char *method, *target;
        enum reason refused;
        enum reason reason;     /* what enforce says */
        unsigned rule_line;
        const char *why;
    } rows[] = {
        {"api.test", 443, NULL, NULL, REASON_NONE, REASON_NONE, 4, "exact name"},
        {"api.test", 443, "GET", "/ok/1", REASON_NONE, REASON_NONE, 4, "request allowed"},
        {"api.test", 443, "POST", "/ok/1", REASON_NONE, REASON_METHOD_NOT_ALLOWED, 4,
         "http rules apply to the request"},
        {"api.test", 443, "GET", "/no", REASON_NONE, REASON_PATH_NOT_ALLOWED, 4, "path"},
        {"api.test", 80, "GET", "/ok/1", REASON_NONE, REASON_PORT_NOT_ALLOWED, 4,
         "the port decides before the request"},
        {"x.w.test", 0, NULL, NULL, REASON_NONE, REASON_NONE, 8, "any port (DNS)"},
        {"abcdefghijklmn.w.test", 443, NULL, NULL, REASON_NONE, REASON_NOT_ALLOWLISTED, 8,
         "over max_name_length under a wildcard"},
        {"other.test", 443, NULL, NULL, REASON_NONE, REASON_NOT_ALLOWLISTED, 0, "no rule"},
        {"bad_name.test", 443, NULL, NULL, REASON_NONE, REASON_INVALID_HOSTNAME, 0, "syntax"},
        {"192.0.2.9", 5432, NULL, NULL, REASON_NONE, REASON_NONE, 9, "cidr rule"},
        {"192.0.2.9", 22, NULL, NULL, REASON_NONE, REASON_PORT_NOT_ALLOWED, 9, "cidr port"},
        {"198.51.100.1", 5432, NULL, NULL, REASON_NONE, REASON_NOT_ALLOWLISTED, 0,
         "no cidr rule"},
        {NULL, 443, NULL, NULL, REASON_NONE, REASON_NOT_ALLOWLISTED, 0, "nothing to match"},
        /* refusals the caller found before the policy: only the mode applies */
        {"api.test", 443, NULL, NULL, REASON_NO_SNI, REASON_NO_SNI, 0, "no SNI"},
        {NULL, 443, NULL, NULL, REASON_UNKNOWN_PROTOCOL, REASON_UNKNOWN_PROTOCOL, 0,
         "unknown protocol"},
        {NULL, 443, NULL, NULL, REASON_SNIFF_TIMEOUT, REASON_SNIFF_TIMEOUT, 0, "timeout"},
        {"api.test", 443, NULL, NULL, REASON_ECH_REJECTED, REASON_ECH_REJECTED, 0, "ECH"},
        {"api.test", 443, NULL, NULL, REASON_HOST_MISMATCH, REASON_HOST_MISMATCH, 0,
         "Host names another port"},
        {"api.test", 443, NULL, NULL, REASON_INVALID_HOSTNAME, REASON_INVALID_HOSTNAME, 0,
         "an SNI that is no hostname"},
    };
    static const char *const modes[] = {"enforce", "audit"};
    size_t m, i;

    (void)state;
    for (m = 0; m < 2; m++) {
        char text[sizeof(decide_policy) + 16];
        struct diag_list d;
        struct policy *p;

        snprintf(text, sizeof(text), decide_policy, modes[m]);
        p = load_str(text, &d);
        assert_non_null(p);
        for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            struct policy_query q = {.port = rows[i].port, .method = rows[i].method,
                                     .target = rows[i].target,
                                     .target_len = rows[i].target ? strlen(rows[i].target) : 0,
                                     .refused = rows[i].refused};
            struct policy_decision dec;
            enum policy_outcome want;
            uint8_t a[16];

            if (rows[i].host && inet_pton(AF_INET, rows[i].host, a) == 1) {
                q.family = AF_INET;
                q.addr = a;
            } else if (rows[i].host) {
                q.host = (const uint8_t *)rows[i].host;
                q.host_len = strlen(rows[i].host);
            }
            policy_decide(p, &q, &dec);
            want = rows[i].reason == REASON_NONE ? DECISION_ALLOW
                   : m == 1                     ? DECISION_AUDIT
                                                : DECISION_DENY;
            if (dec.outcome != want || dec.reason != rows[i].reason ||
                (dec.rule ? dec.rule->line : 0) != rows[i].rule_line)
                fail_msg("%s, row %zu (%s): outcome %d reason %s line %u", modes[m], i,
                         rows[i].why, (int)dec.outcome, reason_name(dec.reason),
                         dec.rule ? dec.rule->line : 0);
        }
        policy_free(p);
        diag_clear(&d);
    }
}

static void test_path_canonical(void **state)
{
    static const struct {
        const char *path;
        bool ok;
    } rows[] = {
        {"/", true}, {"/a", true}, {"/a/", true}, {"/a/b.c", true}, {"/.well-known/x", true},
        {"/a/...", true}, {"/a/..b", true}, {"/a/b..", true}, {"/a;v=1/b", true},
        {"/caf%C3%A9", true}, {"/a%20b", true}, {"/a/;p", true}, {"/a/%41", true},
        {"", false}, {"a", false}, {"*", false}, {"//", false}, {"/a//b", false},
        {"/.", false}, {"/..", false}, {"/a/.", false}, {"/a/..", false}, {"/a/./b", false},
        {"/a/../b", false}, {"/%2e", false}, {"/%2E%2e/b", false}, {"/.%2e/b", false},
        {"/..;x/b", false}, {"/.;/b", false}, {"/;p/b", false}, {"/a%2fb", false},
        {"/a%2Fb", false}, {"/a%5cb", false}, {"/a%25b", false}, {"/a%00b", false},
        {"/a\\b", false}, {"/a#b", false}, {"/a b", false}, {"/a\tb", false},
        {"/a%", false}, {"/a%4", false}, {"/a%g0", false}, {"/a\x7f", false},
        {"/a\xc3\xa9", false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (policy_path_canonical(rows[i].path, strlen(rows[i].path)) != rows[i].ok)
            fail_msg("'%s': expected %s", rows[i].path, rows[i].ok ? "canonical" : "not");
}

static void test_generation(void **state)
{
    struct diag_list d1, d2;
    struct policy *a = load_str("version: 1\n", &d1), *b = load_str("version: 1\n", &d2);

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_true(b->generation > a->generation);
    assert_string_equal(a->hash, b->hash);  /* same bytes, same policy hash */
    policy_free(a);
    policy_free(b);
    diag_clear(&d1);
    diag_clear(&d2);
    policy_free(NULL);
}

static void test_load_file(void **state)
{
    struct diag_list d;
    struct policy *p;
    char path[] = "/tmp/sluice-test-XXXXXX";
    int fd = mkstemp(path);
    FILE *f;

    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs("version: 1\negress:\n  - domain: a.test\n", f);
    fclose(f);
    diag_init(&d, path);
    assert_int_equal(policy_load_file(path, &p, &d), 0);
    assert_int_equal(p->n_rules, 1);
    policy_free(p);
    diag_clear(&d);
    unlink(path);

    diag_init(&d, path);
    assert_int_equal(policy_load_file(path, &p, &d), -ENOENT);
    assert_null(p);
    assert_non_null(strstr(d.v[0].msg, "No such file"));
    diag_clear(&d);

    diag_init(&d, "/tmp");
    assert_int_equal(policy_load_file("/tmp", &p, &d), -EINVAL);
    diag_clear(&d);
}

/* ---- inject ---- */

#define SECRET "s3cr3t-XYZZY"

struct secrets {
    char dir[64];
    char path[128];             /* DIR/NAME of the last write */
};

static const char *secret_file(struct secrets *s, const char *name, const void *data,
                               size_t len)
{
    FILE *f;

    snprintf(s->path, sizeof(s->path), "%s/%s", s->dir, name);
    f = fopen(s->path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return s->path;
}

/* A policy whose rule 3 injects ENTRY (the list item's text, "{...}"); INSPECT adds inspect. */
static struct policy *load_inject(const char *entry, bool inspect, struct diag_list *d)
{
    size_t cap = strlen(entry) + 256;
    char *text = malloc(cap);
    struct policy *p;

    assert_non_null(text);
    snprintf(text, cap,
             "version: 1\n"                      /* 1 */
             "egress:\n"                         /* 2 */
             "  - domain: api.example.test\n"    /* 3 */
             "%s"                                /* 4 (inspect) */
             "    inject:\n"                     /* 4 or 5 */
             "      - %s\n", inspect ? "    inspect: true\n" : "", entry);
    p = load_str(text, d);
    free(text);
    return p;
}

/* No diagnostic may hold a byte of the secret. */
static void no_secret_in(const struct diag_list *d)
{
    size_t i;

    for (i = 0; i < d->n; i++)
        if (strstr(d->v[i].msg, SECRET) || strstr(d->v[i].msg, "XYZZY"))
            fail_msg("the secret is in a message: %s", d->v[i].msg);
}

static void test_inject(void **state)
{
    struct secrets s;
    struct diag_list d;
    struct policy *p;
    char entry[512], big[POLICY_SECRET_MAX + 2];
    const struct policy_inject *j;

    (void)state;
    snprintf(s.dir, sizeof(s.dir), "/tmp/sluice-inject-XXXXXX");
    assert_non_null(mkdtemp(s.dir));

    /* prefix + contents, one trailing newline (LF or CRLF) cut */
    secret_file(&s, "gh", SECRET "\r\n", strlen(SECRET) + 2);
    snprintf(entry, sizeof(entry), "{header: Authorization, value_file: %s, prefix: \"Bearer \"}",
             s.path);
    p = load_inject(entry, true, &d);
    assert_non_null(p);
    assert_int_equal(p->rules[0].n_inject, 1);
    j = &p->rules[0].inject[0];
    assert_string_equal(j->header, "Authorization");
    assert_int_equal(j->value_len, strlen("Bearer " SECRET));
    assert_memory_equal(j->value, "Bearer " SECRET, j->value_len);
    assert_int_equal(j->line, 6);
    policy_free(p);
    diag_clear(&d);

    /* without inspect: an error at the inject list, and no secret in it */
    secret_file(&s, "gh", SECRET "\n", strlen(SECRET) + 1);
    snprintf(entry, sizeof(entry), "{header: Authorization, value_file: %s}", s.path);
    assert_null(load_inject(entry, false, &d));
    assert_int_equal(d.n_errors, 1);
    assert_int_equal(d.v[0].line, 5);
    assert_int_equal(d.v[0].col, 7);
    assert_non_null(strstr(d.v[0].msg, "needs 'inspect: true'"));
    no_secret_in(&d);
    diag_clear(&d);

    /* on a cidr rule: no name to inspect under, so the error says so rather than asking for
     * 'inspect: true', which would only be refused next */
    {
        static const char *const inspect[] = {"", "    inspect: true\n"};
        char text[512];
        size_t i;

        for (i = 0; i < 2; i++) {
            snprintf(text, sizeof(text),
                     "version: 1\n"
                     "egress:\n"
                     "  - cidr: 192.0.2.0/24\n"
                     "%s"
                     "    inject:\n"
                     "      - {header: Authorization, value_file: %s}\n", inspect[i], s.path);
            assert_null(load_str(text, &d));
            assert_non_null(strstr(d.v[0].msg, "cannot apply to cidr 192.0.2.0/24"));
            assert_int_equal(d.v[0].line, 5 + i);
            assert_int_equal(d.v[0].col, 7);
            no_secret_in(&d);
            diag_clear(&d);
        }
    }

    /* the same file twice loads the same; a changed file, or another entry, does not */
    {
        struct policy *a = load_inject(entry, true, &d), *b;

        diag_clear(&d);
        b = load_inject(entry, true, &d);
        diag_clear(&d);
        assert_non_null(a);
        assert_non_null(b);
        assert_true(policy_same_secrets(a, b));
        policy_free(b);
        secret_file(&s, "gh", SECRET "2\n", strlen(SECRET) + 2);
        b = load_inject(entry, true, &d);
        diag_clear(&d);
        assert_non_null(b);
        assert_false(policy_same_secrets(a, b));
        policy_free(b);
        snprintf(big, sizeof(big), "%s, {header: X-Other, value_file: %s}]", entry, s.path);
        b = load_inject(big, true, &d);     /* "[a, b]" as one flow sequence */
        policy_free(b);
        diag_clear(&d);
        policy_free(a);
    }

    /* each malformed entry: an error naming the problem, never the secret */
    {
        static const struct {
            const char *before, *after; /* the entry around the secret file's path */
            const char *file, *data;    /* the file's name and contents (NULL: no file) */
            size_t len;
            const char *says;
        } rows[] = {
            {"{value_file: ", "}", "a", SECRET, 12, "needs 'header: NAME'"},
            {"{header: Authorization", "}", NULL, NULL, 0, "needs 'header: NAME'"},
            {"{header: Authorization, value_file: relative", "}", "b", SECRET, 12,
             "absolute path"},
            {"{header: Host, value_file: ", "}", "c", SECRET, 12, "frames or routes"},
            {"{header: content-length, value_file: ", "}", "d", SECRET, 12, "frames or routes"},
            {"{header: \"Bad Header\", value_file: ", "}", "e", SECRET, 12,
             "not an HTTP field"},
            {"{header: Authorization, value_file: ", ", prefix: \"a\\r\\nb\"}", "f", SECRET,
             12, "line break"},
            {"{header: Authorization, value_file: ", "}", "g", "", 0, "is empty"},
            {"{header: Authorization, value_file: ", "}", "h", SECRET "\nX-Evil: 1", 22,
             "byte 13"},
            {"{header: Authorization, value_file: ", "}", "i", SECRET "\0tail", 17, "byte 13"},
            /* only LF or CRLF ends a file; a lone CR is a control byte like any other */
            {"{header: Authorization, value_file: ", "}", "k", SECRET "\r", 13, "byte 13"},
            {"{header: Authorization, value_file: ", "}", "l", SECRET "\n\n", 14, "byte 13"},
            {"{header: Authorization, value_file: ", ", extra: 1}", "j", SECRET, 12,
             "unknown key 'extra'"},
        };
        size_t i;

        for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            const char *path = rows[i].file
                ? secret_file(&s, rows[i].file, rows[i].data, rows[i].len) : "";

            snprintf(entry, sizeof(entry), "%s%s%s", rows[i].before, path, rows[i].after);
            p = load_inject(entry, true, &d);
            if (p || d.n_errors == 0)
                fail_msg("row %zu (%s): loaded", i, rows[i].says);
            if (!strstr(d.v[0].msg, rows[i].says))
                fail_msg("row %zu: '%s' does not say '%s'", i, d.v[0].msg, rows[i].says);
            no_secret_in(&d);
            diag_clear(&d);
        }
    }

    /* missing, a directory, too large: named, with the cause */
    snprintf(entry, sizeof(entry), "{header: Authorization, value_file: %s/missing}", s.dir);
    assert_null(load_inject(entry, true, &d));
    assert_non_null(strstr(d.v[0].msg, "No such file"));
    assert_non_null(strstr(d.v[0].msg, "/missing"));
    diag_clear(&d);
    snprintf(entry, sizeof(entry), "{header: Authorization, value_file: %s}", s.dir);
    assert_null(load_inject(entry, true, &d));
    assert_non_null(strstr(d.v[0].msg, "not a regular file"));
    diag_clear(&d);
    memset(big, 'a', sizeof(big));
    memcpy(big, SECRET, strlen(SECRET));
    snprintf(entry, sizeof(entry), "{header: Authorization, value_file: %s}",
             secret_file(&s, "big", big, POLICY_SECRET_MAX + 1));
    assert_null(load_inject(entry, true, &d));
    assert_non_null(strstr(d.v[0].msg, "larger than 8 KiB"));
    no_secret_in(&d);
    diag_clear(&d);

    /* exactly 8 KiB loads: the cap is the largest file, not one byte under it */
    snprintf(entry, sizeof(entry), "{header: Authorization, value_file: %s}",
             secret_file(&s, "big", big, POLICY_SECRET_MAX));
    p = load_inject(entry, true, &d);
    assert_non_null(p);
    assert_int_equal(p->rules[0].inject[0].value_len, POLICY_SECRET_MAX);
    policy_free(p);
    diag_clear(&d);

    /* a FIFO is refused before it is opened: open() would wait for a writer forever */
    snprintf(s.path, sizeof(s.path), "%s/fifo", s.dir);
    assert_int_equal(mkfifo(s.path, 0600), 0);
    snprintf(entry, sizeof(entry), "{header: Authorization, value_file: %s}", s.path);
    assert_null(load_inject(entry, true, &d));
    assert_non_null(strstr(d.v[0].msg, "not a regular file"));
    assert_non_null(strstr(d.v[0].msg, "/fifo"));
    diag_clear(&d);
    unlink(s.path);
    assert_null(load_inject("{header: Authorization, value_file: /dev/null}", true, &d));
    assert_non_null(strstr(d.v[0].msg, "not a regular file"));
    diag_clear(&d);

    /* st_size is a hint: /proc files say 0 and still have contents */
    p = load_inject("{header: X-Comm, value_file: /proc/self/comm}", true, &d);
    assert_non_null(p);
    assert_true(p->rules[0].inject[0].value_len > 0);
    policy_free(p);
    diag_clear(&d);

    /* a read that fails is an error, not a short value (/proc/self/mem at offset 0: EIO) */
    assert_null(load_inject("{header: Authorization, value_file: /proc/self/mem}", true, &d));
    assert_int_equal(d.n_errors, 1);
    assert_non_null(strstr(d.v[0].msg, "/proc/self/mem"));
    assert_non_null(strstr(d.v[0].msg, "readable by that user"));
    diag_clear(&d);

    /* the same header twice, whatever its case */
    secret_file(&s, "gh", SECRET, strlen(SECRET));
    snprintf(big, sizeof(big), "{header: Authorization, value_file: %s}\n"
             "      - {header: AUTHORIZATION, value_file: %s}", s.path, s.path);
    assert_null(load_inject(big, true, &d));
    assert_non_null(strstr(d.v[0].msg, "injected twice"));
    assert_int_equal(d.v[0].line, 7);
    no_secret_in(&d);
    diag_clear(&d);

    /* at most POLICY_INJECT_MAX headers a rule */
    {
        size_t i, off = 0;
        const char *path = s.path;

        for (i = 0; i <= POLICY_INJECT_MAX; i++)
            off += (size_t)snprintf(big + off, sizeof(big) - off,
                                    "%s{header: X-H%zu, value_file: %s}", i ? "\n      - " : "",
                                    i, path);
        assert_null(load_inject(big, true, &d));
        assert_int_equal(d.n_errors, 1);
        assert_non_null(strstr(d.v[0].msg, "at most 16"));
        diag_clear(&d);
    }

    unlink(s.path);
    {
        static const char *const names[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
                                            "k", "l", "big"};
        size_t i;

        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            snprintf(s.path, sizeof(s.path), "%s/%s", s.dir, names[i]);
            unlink(s.path);
        }
    }
    assert_int_equal(rmdir(s.dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_hosts),
        cmocka_unit_test(test_match_addrs),
        cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_broad),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_many_errors_reported),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_path_canonical),
        cmocka_unit_test(test_wildcard_name_length),
        cmocka_unit_test(test_generation),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_inject),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
