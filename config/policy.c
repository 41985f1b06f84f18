/*
 * The compiled policy and its lookups. Exact names and wildcard suffixes share
 * one hash table; a host is hashed once, right to left, and every suffix that
 * ends at a label boundary is probed on the way, so a lookup costs one probe
 * per label whatever the number of rules. CIDR rules live in a cidr_table.
 */
#include "policy_priv.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "hostname.h"

#define FNV_OFFSET 2166136261u
#define FNV_PRIME 16777619u
#define MAX_LABELS ((HOSTNAME_MAX + 1) / 2)
#define HUGE_PAGE (2u << 20)

/*
 * One rule as a slot sees it: the index, and its ports inline when there are
 * few, so that deciding a hit reads the slot's cache line and nothing else.
 */
#define REF_PORTS 3             /* sizeof(name_ref.ports) / 2 */
#define REF_MANY_PORTS 0xff     /* n_ports: more than REF_PORTS, look in the rule */

#define SLOT_NAME_INLINE 32     /* names up to this long live in the slot itself */

struct name_slot {              /* 64 bytes: one cache line */
    uint32_t hash;
    uint16_t len;               /* 0: empty slot (no name is empty) */
    struct name_ref exact;      /* "name" */
    struct name_ref wild;       /* "*.name" */
    union {
        char text[SLOT_NAME_INLINE];
        const char *ptr;        /* longer names: borrowed from the rule's pattern */
    } name;
};

struct policy_names {
    struct name_slot *slots;
    size_t cap;                 /* power of two, at least twice count */
    size_t count;
};

static atomic_uint_fast64_t next_generation = 1;

static uint32_t hash_step(uint32_t h, char c)
{
    return (h ^ (uint8_t)c) * FNV_PRIME;
}

/* Right to left, so that every suffix's hash is a step of the whole name's. */
static uint32_t name_hash(const char *s, size_t len)
{
    uint32_t h = FNV_OFFSET;

    while (len > 0)
        h = hash_step(h, s[--len]);
    return h;
}

static const char *slot_name(const struct name_slot *e)
{
    return e->len <= SLOT_NAME_INLINE ? e->name.text : e->name.ptr;
}

/* The slot holding S, or the empty slot where it would go. */
static struct name_slot *names_find(const struct policy_names *t, const char *s,
                                    size_t len, uint32_t h)
{
    size_t i;

    for (i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        struct name_slot *e = &t->slots[i];

        if (e->len == 0)
            return e;
        if (e->hash == h && e->len == len && memcmp(slot_name(e), s, len) == 0)
            return e;
    }
}

/*
 * Large tables are aligned to and advised into huge pages: a lookup touches a
 * few random slots, and with 4 KiB pages each one would also miss the TLB.
 */
static int names_reserve(struct policy_names *t, size_t n)
{
    size_t cap = 16, bytes;

    while (cap < n * 2)
        cap *= 2;
    bytes = cap * sizeof(*t->slots);
    if (bytes >= HUGE_PAGE) {
        t->slots = aligned_alloc(HUGE_PAGE, bytes);     /* bytes is a multiple of it */
        if (t->slots)
            madvise(t->slots, bytes, MADV_HUGEPAGE);    /* advice only: failure is fine */
    } else {
        t->slots = malloc(bytes);
    }
    if (!t->slots)
        return -ENOMEM;
    memset(t->slots, 0, bytes);
    t->cap = cap;
    return 0;
}

/* Returns the slot for NAME, creating it empty if needed (capacity reserved up front). */
static struct name_slot *names_get(struct policy_names *t, const char *name)
{
    size_t len = strlen(name);
    uint32_t h = name_hash(name, len);
    struct name_slot *e = names_find(t, name, len, h);

    if (e->len == 0) {
        e->len = (uint16_t)len;
        e->hash = h;
        if (len <= SLOT_NAME_INLINE)
            memcpy(e->name.text, name, len);
        else
            e->name.ptr = name;
        e->exact.rule = -1;
        e->wild.rule = -1;
        t->count++;
    }
    return e;
}

static void ref_set(struct name_ref *ref, const struct policy_rule *r, int32_t idx)
{
    size_t i;

    ref->rule = idx;
    ref->n_ports = r->n_ports <= REF_PORTS ? (uint8_t)r->n_ports : REF_MANY_PORTS;
    for (i = 0; i < REF_PORTS && i < r->n_ports; i++)
        ref->ports[i] = r->ports[i];
}

struct policy *policy_new(const char *file)
{
    struct policy *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->file = strdup(file ? file : "<policy>");
    p->names = calloc(1, sizeof(*p->names));
    p->cidr_rules = cidr_table_new();
    p->allow_table = cidr_table_new();
    if (!p->file || !p->names || !p->cidr_rules || !p->allow_table) {
        policy_free(p);
        return NULL;
    }
    p->broad_rule = -1;
    policy_settings_default(&p->settings);
    return p;
}

void policy_settings_default(struct policy_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->mode = POLICY_ENFORCE;
    s->dns.unlisted = DNS_UNLISTED_NXDOMAIN;
    s->dns.answers = DNS_ANSWERS_REAL;
    s->feedback = true;
    s->dns.queries_per_second = 50;
    s->dns.max_name_length = 100;
    s->dns.max_ttl = 60;
    s->timeouts.sniff_ms = 5000;
    s->timeouts.connect_ms = 10000;
    s->timeouts.idle_ms = 300000;
    s->limits.max_connections = 256;
    s->limits.new_connections_per_second = 20;
    s->limits.upload_bytes_per_second = 1u << 20;
    s->limits.download_bytes_per_second = 50u << 20;
    s->ech = ECH_DENY;
    /* attacks, not builds: a build's denials are few and to few ports, its names
     * resolve, and it downloads far more than it sends */
    s->alerts.port_scan.ports = 20;
    s->alerts.port_scan.window_ms = 10000;
    s->alerts.dns_tunnel.names = 30;
    s->alerts.dns_tunnel.encoded = 5;
    s->alerts.dns_tunnel.window_ms = 10000;
    s->alerts.dns_tunnel.label_length = 32;
    s->alerts.dns_tunnel.entropy_centi = 300;
    s->alerts.upload_burst.bytes = 16u << 20;
    s->alerts.upload_burst.window_ms = 60000;
    s->alerts.upload_burst.ratio = 20;
    s->alerts.upload_burst.ratio_after = 8u << 20;
    s->alerts.denied_burst.denials = 300;
    s->alerts.denied_burst.window_ms = 60000;
}

static void free_strv(char **v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void policy_rule_clear(struct policy_rule *r)
{
    size_t i;

    for (i = 0; i < r->n_http; i++) {
        free_strv(r->http[i].methods, r->http[i].n_methods);
        free_strv(r->http[i].paths, r->http[i].n_paths);
    }
    free(r->http);
    for (i = 0; i < r->n_inject; i++) {
        struct policy_inject *j = &r->inject[i];

        if (j->value)
            explicit_bzero(j->value, j->value_len);   /* no secret left in freed memory */
        free(j->value);
        free(j->header);
        free(j->file);
    }
    free(r->inject);
    free(r->ports);
    free(r->pattern);
    memset(r, 0, sizeof(*r));
}

bool policy_same_secrets(const struct policy *a, const struct policy *b)
{
    size_t i, k;

    if (a->n_rules != b->n_rules)
        return false;
    for (i = 0; i < a->n_rules; i++) {
        const struct policy_rule *x = &a->rules[i], *y = &b->rules[i];

        if (x->n_inject != y->n_inject)
            return false;
        for (k = 0; k < x->n_inject; k++)
            if (x->inject[k].value_len != y->inject[k].value_len ||
                memcmp(x->inject[k].value, y->inject[k].value, x->inject[k].value_len) != 0)
                return false;
    }
    return true;
}

void policy_free(struct policy *p)
{
    size_t i;

    if (!p)
        return;
    for (i = 0; i < p->n_rules; i++)
        policy_rule_clear(&p->rules[i]);
    free(p->rules);
    free(p->allow_ranges);
    if (p->names)
        free(p->names->slots);
    free(p->names);
    cidr_table_free(p->cidr_rules);
    cidr_table_free(p->allow_table);
    for (i = 0; i < p->n_includes; i++)
        free(p->includes[i]);
    free(p->includes);
    free(p->file);
    free(p);
}

static void report_duplicate(struct diag_list *d, const struct policy_rule *r,
                             const struct policy_rule *first)
{
    if (first->file == r->file)
        diag_add_in(d, r->file, DIAG_ERROR, r->line, r->col, "duplicate rule for '%s' (first "
                    "at line %u); merge the two into one rule", r->pattern, first->line);
    else
        diag_add_in(d, r->file, DIAG_ERROR, r->line, r->col, "duplicate rule for '%s' (first "
                    "at %s:%u:%u); keep one of the two", r->pattern, first->file, first->line,
                    first->col);
}

int policy_compile(struct policy *p, struct diag_list *d)
{
    size_t i;
    int r;

    if ((r = names_reserve(p->names, p->n_rules)) < 0)
        return r;

    for (i = 0; i < p->n_rules; i++) {
        struct policy_rule *rule = &p->rules[i];
        int32_t idx = (int32_t)i, existing = -1;
        struct name_slot *e;

        switch (rule->kind) {
        case RULE_EXACT:
            e = names_get(p->names, rule->pattern);
            if (e->exact.rule >= 0)
                report_duplicate(d, rule, &p->rules[e->exact.rule]);
            else
                ref_set(&e->exact, rule, idx);
            break;
        case RULE_WILDCARD:
            if (strcmp(rule->pattern, "*") == 0) {
                if (p->broad_rule >= 0)
                    report_duplicate(d, rule, &p->rules[p->broad_rule]);
                else
                    p->broad_rule = idx;
                ref_set(&p->broad_ref, rule, p->broad_rule);
                break;
            }
            e = names_get(p->names, rule->pattern + 2);
            if (e->wild.rule >= 0)
                report_duplicate(d, rule, &p->rules[e->wild.rule]);
            else
                ref_set(&e->wild, rule, idx);
            break;
        case RULE_CIDR:
            r = cidr_table_add(p->cidr_rules, &rule->cidr, idx, &existing);
            if (r == -EEXIST)
                report_duplicate(d, rule, &p->rules[existing]);
            else if (r < 0)
                return r;
            break;
        }
    }
    for (i = 0; i < p->n_allow_ranges; i++) {
        r = cidr_table_add(p->allow_table, &p->allow_ranges[i], (int32_t)i, NULL);
        if (r < 0 && r != -EEXIST)
            return r;
    }
    if (d->n_errors > 0)
        return -EINVAL;
    p->generation = atomic_fetch_add(&next_generation, 1);
    return 0;
}

static bool rule_has_port(const struct policy_rule *r, uint16_t port)
{
    size_t lo = 0, hi = r->n_ports;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (r->ports[mid] == port)
            return true;
        if (r->ports[mid] < port)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static bool ref_has_port(const struct policy *p, const struct name_ref *ref, uint16_t port)
{
    size_t i;

    if (port == POLICY_ANY_PORT)
        return true;
    if (ref->n_ports == REF_MANY_PORTS)
        return rule_has_port(&p->rules[ref->rule], port);
    for (i = 0; i < ref->n_ports; i++)
        if (ref->ports[i] == port)
            return true;
    return false;
}

/* CANDS: the rules naming the target, most specific first; the first listing PORT allows. */
static void decide(const struct policy *p, const struct name_ref *const *cands, size_t n,
                   uint16_t port, struct policy_verdict *v)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (ref_has_port(p, cands[i], port)) {
            v->allow = true;
            v->reason = REASON_NONE;
            v->rule = &p->rules[cands[i]->rule];
            return;
        }
    }
    v->allow = false;
    v->reason = n > 0 ? REASON_PORT_NOT_ALLOWED : REASON_NOT_ALLOWLISTED;
    v->rule = n > 0 ? &p->rules[cands[0]->rule] : NULL;
}

void policy_match_host(const struct policy *p, const uint8_t *host, size_t len,
                       uint16_t port, struct policy_verdict *v)
{
    char name[HOSTNAME_MAX + 1];
    const struct name_ref *cands[MAX_LABELS + 2];
    struct {
        uint32_t hash;
        size_t off;
    } probes[MAX_LABELS];
    size_t nlen, i, np = 0, n = 0;
    const struct name_slot *e;
    uint32_t h = FNV_OFFSET;

    if (hostname_normalize(host, len, name, &nlen) != HOSTNAME_OK) {
        v->allow = false;
        v->reason = REASON_INVALID_HOSTNAME;
        v->rule = NULL;
        return;
    }

    /*
     * Walk right to left; at each dot, the hash so far is that of the suffix
     * after it. All slots are prefetched before any is read, so in a table
     * larger than the cache their misses overlap instead of adding up.
     */
    for (i = nlen; i > 0; i--) {
        if (name[i - 1] == '.') {
            probes[np].hash = h;
            probes[np++].off = i;
            __builtin_prefetch(&p->names->slots[h & (p->names->cap - 1)]);
        }
        h = hash_step(h, name[i - 1]);
    }
    __builtin_prefetch(&p->names->slots[h & (p->names->cap - 1)]);
    e = names_find(p->names, name, nlen, h);
    if (e->len && e->exact.rule >= 0)
        cands[n++] = &e->exact;
    while (np > 0) {                    /* the longest suffix was found last */
        np--;
        e = names_find(p->names, name + probes[np].off, nlen - probes[np].off,
                       probes[np].hash);
        if (e->len && e->wild.rule >= 0)
            cands[n++] = &e->wild;
    }
    if (p->broad_rule >= 0)
        cands[n++] = &p->broad_ref;
    decide(p, cands, n, port, v);
    /* a long name under a wildcard is the shape of data carried in labels (P6):
     * refused alike whether it comes as a DNS query, an SNI or a Host, since
     * the proxy resolving it would carry it upstream just the same */
    if (v->allow && v->rule->kind == RULE_WILDCARD && nlen > p->settings.dns.max_name_length) {
        v->allow = false;
        v->reason = REASON_NOT_ALLOWLISTED;
    }
}

void policy_match_addr(const struct policy *p, int family, const uint8_t *addr,
                       uint16_t port, struct policy_verdict *v)
{
    int32_t idx[129 + 1];
    struct name_ref refs[129 + 1];
    const struct name_ref *cands[129 + 1];
    size_t n = cidr_table_match(p->cidr_rules, family, addr, idx,
                                sizeof(idx) / sizeof(idx[0])), i;

    for (i = 0; i < n; i++) {
        ref_set(&refs[i], &p->rules[idx[i]], idx[i]);
        cands[i] = &refs[i];
    }
    decide(p, cands, n, port, v);
}

/* '*' matches any run of bytes (slashes included); everything else literally. */
static bool glob_match(const char *pat, const char *s, size_t n)
{
    const char *star = NULL;
    size_t i = 0, resume = 0;

    while (i < n) {
        if (*pat == '*') {
            star = pat++;
            resume = i;
        } else if (*pat != '\0' && *pat == s[i]) {
            pat++;
            i++;
        } else if (star) {
            pat = star + 1;
            i = ++resume;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool policy_path_canonical(const char *path, size_t len)
{
    size_t i = 0;

    if (len == 0 || path[0] != '/')
        return false;
    while (i < len) {
        size_t dots = 0, other = 0;
        bool params = false;

        for (i++; i < len && path[i] != '/'; i++) {
            unsigned char c = (unsigned char)path[i];

            if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '#')
                return false;
            if (c == '%') {
                int hi = i + 2 < len ? hex_value(path[i + 1]) : -1;
                int lo = hi >= 0 ? hex_value(path[i + 2]) : -1;

                if (lo < 0)
                    return false;
                c = (unsigned char)(hi * 16 + lo);
                if (c == '/' || c == '\\' || c == '%' || c == 0)
                    return false;
                i += 2;
            }
            if (params)
                continue;
            if (c == ';')
                params = true;
            else if (c == '.')
                dots++;
            else
                other++;
        }
        if (other == 0 && (dots == 1 || dots == 2))
            return false;                   /* "." or ".." */
        if (other == 0 && dots == 0 && i < len)
            return false;                   /* "//" (or "/;p/") */
    }
    return true;
}

static bool strv_has(char *const *v, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static bool paths_match(char *const *v, size_t n, const char *path, size_t len)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (glob_match(v[i], path, len))
            return true;
    return false;
}

void policy_match_http(const struct policy_rule *rule, const char *method,
                       const char *target, size_t target_len, struct policy_verdict *v)
{
    const char *query = memchr(target, '?', target_len);
    size_t len = query ? (size_t)(query - target) : target_len;    /* a query is not matched */
    bool canonical = policy_path_canonical(target, len), method_seen = false;
    size_t i;

    v->rule = rule;
    for (i = 0; i < rule->n_http; i++) {
        const struct policy_http_rule *h = &rule->http[i];

        if (h->n_methods > 0 && !strv_has(h->methods, h->n_methods, method))
            continue;
        method_seen = true;
        if (h->n_paths == 0 ||
            (canonical && paths_match(h->paths, h->n_paths, target, len))) {
            v->allow = true;
            v->reason = REASON_NONE;
            return;
        }
    }
    v->allow = rule->n_http == 0;
    v->reason = v->allow ? REASON_NONE
              : method_seen ? REASON_PATH_NOT_ALLOWED : REASON_METHOD_NOT_ALLOWED;
}

void policy_decide(const struct policy *p, const struct policy_query *q,
                   struct policy_decision *d)
{
    struct policy_verdict v = {.allow = false, .reason = q->refused, .rule = NULL};

    if (q->refused == REASON_NONE) {
        if (q->host)
            policy_match_host(p, q->host, q->host_len, q->port, &v);
        else if (q->addr)
            policy_match_addr(p, q->family, q->addr, q->port, &v);
        else
            v.reason = REASON_NOT_ALLOWLISTED;
        if (v.allow && q->method)
            policy_match_http(v.rule, q->method, q->target, q->target_len, &v);
    }
    d->reason = v.reason;
    d->rule = v.rule;
    if (v.allow)
        d->outcome = DECISION_ALLOW;
    else
        d->outcome = p->settings.mode == POLICY_AUDIT ? DECISION_AUDIT : DECISION_DENY;
}

bool policy_range_allowed(const struct policy *p, int family, const uint8_t *addr)
{
    int32_t one;

    return cidr_table_match(p->allow_table, family, addr, &one, 1) > 0;
}
