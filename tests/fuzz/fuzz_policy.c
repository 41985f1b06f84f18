/*
 * Fuzz target for the policy loader and the lookups on what it compiles. Any
 * byte string is a policy file; when one compiles, every lookup is asked with
 * fixed queries, queries built from the rules themselves (which must allow)
 * and queries cut from the input, so a bad index or a broken table shows up.
 * inject entries read real files: /proc/self/comm (in the dictionary) is one
 * that always loads. The policy is named as if it were in include/, so that
 * include: finds the rule files there (nested, cyclic, broken, with settings).
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "diag.h"
#include "fuzz.h"
#include "hostname.h"
#include "policy.h"

#define HOST_SLICE_MAX (HOSTNAME_MAX + 8)   /* a little past the longest valid name */

/* Fails the run loudly: a broken invariant is as much a finding as a crash. */

static const char *const fixed_hosts[] = {
    "pypi.org", "PyPI.org.", "files.pythonhosted.org", "a.b.c.pythonhosted.org",
    "pythonhosted.org", "example.org", "api.github.com", "localhost", "x", "a..b",
    "-a.example", "192.0.2.1", "[::1]", "xn--bcher-kva.example", "",
};

static const uint16_t fixed_ports[] = {POLICY_ANY_PORT, 1, 80, 443, 5432, 65535};

static const struct {
    const char *method, *path;
} fixed_requests[] = {
    {"GET", "/"}, {"HEAD", "/repos/a/b"}, {"POST", "/upload"}, {"DELETE", "*"},
    {"", ""}, {"get", "/repos/"},
};

static const struct {
    int family;
    const char *text;
} fixed_addrs[] = {
    {AF_INET, "192.0.2.1"}, {AF_INET, "10.0.0.1"}, {AF_INET, "127.0.0.1"},
    {AF_INET, "169.254.169.254"}, {AF_INET, "0.0.0.0"}, {AF_INET, "255.255.255.255"},
    {AF_INET6, "::1"}, {AF_INET6, "2001:db8::1"}, {AF_INET6, "fd00:ec2::254"},
    {AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
};

static void check_verdict(const struct policy *p, const struct policy_verdict *v)
{
    if (v->allow) {
        CHECK(v->reason == REASON_NONE);
        CHECK(v->rule != NULL);
    }
    if (v->rule)
        CHECK(v->rule >= p->rules && v->rule < p->rules + p->n_rules);
}

/* policy_decide() agrees with the match it wraps; audit only ever turns a denial
 * into a pass, with the same reason and rule. */
static void check_decision(const struct policy *p, const struct policy_query *q,
                           const struct policy_verdict *v)
{
    struct policy_decision d;

    policy_decide(p, q, &d);
    CHECK(d.reason == v->reason && d.rule == v->rule);
    if (v->allow)
        CHECK(d.outcome == DECISION_ALLOW);
    else
        CHECK(d.outcome == (p->settings.mode == POLICY_AUDIT ? DECISION_AUDIT
                                                             : DECISION_DENY));
}

static void ask_host(const struct policy *p, const uint8_t *host, size_t len)
{
    struct policy_verdict v;
    size_t i;

    for (i = 0; i < sizeof(fixed_ports) / sizeof(fixed_ports[0]); i++) {
        struct policy_query q = {.host = host, .host_len = len, .port = fixed_ports[i]};

        policy_match_host(p, host, len, fixed_ports[i], &v);
        check_verdict(p, &v);
        check_decision(p, &q, &v);
    }
}

static void ask_addr(const struct policy *p, int family, const uint8_t *addr)
{
    struct policy_verdict v;
    size_t i;

    for (i = 0; i < sizeof(fixed_ports) / sizeof(fixed_ports[0]); i++) {
        struct policy_query q = {.family = family, .addr = addr, .port = fixed_ports[i]};

        policy_match_addr(p, family, addr, fixed_ports[i], &v);
        check_verdict(p, &v);
        check_decision(p, &q, &v);
    }
    (void)policy_range_allowed(p, family, addr);
}

/* A rule must allow what it names, on its own first port, whatever else is listed. */
static void ask_rule(const struct policy *p, const struct policy_rule *r)
{
    char host[HOSTNAME_MAX + 16];
    struct policy_verdict v;
    size_t i;
    int n;

    switch (r->kind) {
    case RULE_EXACT:
        policy_match_host(p, (const uint8_t *)r->pattern, strlen(r->pattern), r->ports[0], &v);
        CHECK(v.allow);
        break;
    case RULE_WILDCARD:
        n = snprintf(host, sizeof(host), "x.%s", strcmp(r->pattern, "*") ? r->pattern + 2
                                                                         : "example");
        if (n > 0 && (size_t)n <= HOSTNAME_MAX) {
            policy_match_host(p, (const uint8_t *)host, (size_t)n, r->ports[0], &v);
            /* a wildcard allows names up to dns.max_name_length only */
            CHECK(v.allow == ((size_t)n <= p->settings.dns.max_name_length) ||
                  (v.allow && v.rule->kind == RULE_EXACT));
        }
        break;
    case RULE_CIDR:
        policy_match_addr(p, r->cidr.family, r->cidr.addr, r->ports[0], &v);
        CHECK(v.allow);
        break;
    }
    check_verdict(p, &v);

    for (i = 0; i < sizeof(fixed_requests) / sizeof(fixed_requests[0]); i++) {
        policy_match_http(r, fixed_requests[i].method, fixed_requests[i].path,
                          strlen(fixed_requests[i].path), &v);
        CHECK(v.rule == r);
    }
    /* Each http entry allows its own first method and a path equal to its first glob
     * ('*' taken literally; after a leading '*', with a '/' before it): a glob that
     * loads is a canonical path itself. */
    for (i = 0; i < r->n_http; i++) {
        const struct policy_http_rule *h = &r->http[i];
        char path[4096];

        snprintf(path, sizeof(path), "%s%s", h->n_paths && h->paths[0][0] == '*' ? "/" : "",
                 h->n_paths ? h->paths[0] : "/");
        policy_match_http(r, h->n_methods ? h->methods[0] : "GET", path, strlen(path), &v);
        CHECK(v.allow);
    }
    if (r->n_http == 0) {
        policy_match_http(r, "GET", "/", 1, &v);
        CHECK(v.allow);
    }
}

/* What a rule injects passed every check of the loader: only an inspect rule on a name
 * injects, each header once, a value a header line carries whole (no CR, LF, NUL or other
 * control byte), the file named by an absolute path. */
static void check_inject(const struct policy_rule *r)
{
    size_t i, k;

    CHECK(r->n_inject == 0 || (r->inspect && r->kind != RULE_CIDR));
    CHECK(r->n_inject <= POLICY_INJECT_MAX);
    for (i = 0; i < r->n_inject; i++) {
        const struct policy_inject *j = &r->inject[i];

        CHECK(j->header && j->header[0] && j->file && j->file[0] == '/');
        CHECK(j->value && j->value_len > 0 && strlen(j->value) == j->value_len);
        for (k = 0; k < j->value_len; k++) {
            unsigned char c = (unsigned char)j->value[k];

            CHECK((c >= 0x20 || c == '\t') && c != 0x7f);
        }
        for (k = 0; k < i; k++)
            CHECK(strcasecmp(r->inject[k].header, j->header) != 0);
    }
}

static void exercise(const struct policy *p, const uint8_t *data, size_t size)
{
    uint8_t addr[16];
    const uint8_t *line;
    size_t i, len;

    for (i = 0; i < sizeof(fixed_hosts) / sizeof(fixed_hosts[0]); i++)
        ask_host(p, (const uint8_t *)fixed_hosts[i], strlen(fixed_hosts[i]));

    /* The input's last line and its head, as raw host bytes. */
    line = memrchr(data, '\n', size);
    line = line ? line + 1 : data;
    len = size - (size_t)(line - data);
    ask_host(p, line, len < HOST_SLICE_MAX ? len : HOST_SLICE_MAX);
    ask_host(p, data, size < HOST_SLICE_MAX ? size : HOST_SLICE_MAX);

    for (i = 0; i < sizeof(fixed_addrs) / sizeof(fixed_addrs[0]); i++) {
        CHECK(inet_pton(fixed_addrs[i].family, fixed_addrs[i].text, addr) == 1);
        ask_addr(p, fixed_addrs[i].family, addr);
    }
    /* The input's last 16 bytes as an address of each family. */
    if (size >= sizeof(addr)) {
        memcpy(addr, data + size - sizeof(addr), sizeof(addr));
        ask_addr(p, AF_INET, addr);
        ask_addr(p, AF_INET6, addr);
    }

    for (i = 0; i < p->n_rules; i++) {
        ask_rule(p, &p->rules[i]);
        check_inject(&p->rules[i]);
    }
    CHECK(policy_same_secrets(p, p));
    for (i = 0; i < p->n_allow_ranges; i++)
        CHECK(policy_range_allowed(p, p->allow_ranges[i].family, p->allow_ranges[i].addr));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    struct diag_list diags;
    struct policy *p = NULL;
    int r;

    if (!devnull)
        devnull = fopen("/dev/null", "w");
    diag_init(&diags, FUZZ_DIR "/include/fuzz.yaml");
    r = policy_load_buffer(FUZZ_DIR "/include/fuzz.yaml", data, size, &p, &diags);
    CHECK((r == 0) == (p != NULL));
    CHECK(r != 0 || diags.n_errors == 0);
    CHECK(r == 0 || diags.n_errors > 0);
    if (devnull)
        diag_print(&diags, devnull);
    if (p)
        exercise(p, data, size);
    policy_free(p);
    diag_clear(&diags);
    return 0;
}
