/*
 * sluicectl suggest: a policy learnt from flow logs (audit runs, or enforce
 * runs whose denials a rule would fix). The logs are streamed once, line by
 * line (gzip or plain, "-" for standard input); memory grows with the number
 * of distinct names and runs, never with the number of records.
 *
 * A run is one log file, or one sandbox id within it. A name's evidence: its
 * ports, the runs it was seen in, connections, bytes each way, first and last
 * time. Names seen in fewer than --min-runs runs are left out (listed in a
 * comment), names only resolved are listed apart, flows to bare addresses
 * become commented cidr suggestions, and with --merge N, N or more names under
 * one parent become one wildcard when that parent is not a public suffix.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <yaml.h>

#include "ctl.h"
#include "flowrec.h"
#include "json.h"
#include "psl.h"
#include "siphash.h"

#define PORTS_MAX 32                /* ports kept per name; more are counted, not listed */
#define ADDRS_MAX 4096              /* bare addresses kept for cidr suggestions */

struct name {
    char *name;
    uint64_t hash;
    uint16_t ports[PORTS_MAX];
    size_t n_ports;
    uint64_t conns, up, down;
    char first[32], last[32];
    uint64_t *runs;                 /* a bit per run the name had a flow (or a denial) in */
    size_t runs_words, n_runs;
    bool flowed, denied, resolved, dns_refused;
    bool merged, used;              /* folded into a wildcard; --diff: a rule of the policy */
    const struct policy_rule *included; /* --policy: a rule of a file it includes allows
                                           every port (the include is kept, so no rule) */
};

struct table {
    struct name **slots;            /* open addressing, a power of two */
    size_t cap, n;
    uint64_t key[2];
};

struct addr {
    char ip[48];
    uint16_t ports[PORTS_MAX];
    size_t n_ports;
    uint64_t conns;
};

struct suggest {
    struct table names;
    struct addr *addrs;
    size_t n_addrs, addrs_dropped;
    char **run_keys;                /* "FILEINDEX SANDBOX" */
    size_t n_run_keys, cap_run_keys, last_run;
    uint64_t records, bad_lines;
    unsigned min_runs, merge;
};

/* ---- names ---- */

static struct name *name_get(struct table *t, const char *s)
{
    size_t len = strlen(s), i;
    uint64_t h = siphash24(t->key, (const uint8_t *)s, len);
    struct name *n;

    if (t->n * 2 >= t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 1024, j;
        struct name **ns = calloc(ncap, sizeof(*ns));

        if (!ns)
            return NULL;
        for (j = 0; j < t->cap; j++) {
            if (!t->slots[j])
                continue;
            for (i = t->slots[j]->hash & (ncap - 1); ns[i]; i = (i + 1) & (ncap - 1))
                ;
            ns[i] = t->slots[j];
        }
        free(t->slots);
        t->slots = ns;
        t->cap = ncap;
    }
    for (i = h & (t->cap - 1); t->slots[i]; i = (i + 1) & (t->cap - 1))
        if (t->slots[i]->hash == h && strcmp(t->slots[i]->name, s) == 0)
            return t->slots[i];
    n = calloc(1, sizeof(*n));
    if (!n || !(n->name = strdup(s))) {
        free(n);
        return NULL;
    }
    n->hash = h;
    t->slots[i] = n;
    t->n++;
    return n;
}

static void add_port(uint16_t *ports, size_t *n, uint16_t port)
{
    size_t i;

    for (i = 0; i < *n; i++)
        if (ports[i] == port)
            return;
    if (*n < PORTS_MAX && port)
        ports[(*n)++] = port;
}

static int mark_run(struct name *n, size_t run)
{
    size_t w = run / 64;

    if (w >= n->runs_words) {
        uint64_t *nr = realloc(n->runs, (w + 1) * sizeof(*nr));

        if (!nr)
            return -ENOMEM;
        memset(nr + n->runs_words, 0, (w + 1 - n->runs_words) * sizeof(*nr));
        n->runs = nr;
        n->runs_words = w + 1;
    }
    if (!(n->runs[w] & (1ull << (run % 64)))) {
        n->runs[w] |= 1ull << (run % 64);
        n->n_runs++;
    }
    return 0;
}

static void seen_at(struct name *n, const char *ts)
{
    if (!ts[0])
        return;
    if (!n->first[0] || strcmp(ts, n->first) < 0)
        memcpy(n->first, ts, sizeof(n->first));
    if (strcmp(ts, n->last) > 0)
        memcpy(n->last, ts, sizeof(n->last));
}

/* ---- runs and records ---- */

static long run_of(struct suggest *s, size_t file, const char *sandbox)
{
    char key[160];
    size_t i;

    snprintf(key, sizeof(key), "%zu %s", file, sandbox);
    if (s->n_run_keys && strcmp(s->run_keys[s->last_run], key) == 0)
        return (long)s->last_run;
    for (i = 0; i < s->n_run_keys; i++)
        if (strcmp(s->run_keys[i], key) == 0)
            return (long)(s->last_run = i);
    if (s->n_run_keys == s->cap_run_keys) {
        size_t ncap = s->cap_run_keys ? s->cap_run_keys * 2 : 16;
        char **nk = realloc(s->run_keys, ncap * sizeof(*nk));

        if (!nk)
            return -ENOMEM;
        s->run_keys = nk;
        s->cap_run_keys = ncap;
    }
    if (!(s->run_keys[s->n_run_keys] = strdup(key)))
        return -ENOMEM;
    return (long)(s->last_run = s->n_run_keys++);
}

/* The canonical hostname of NAME, or false (not one: never a rule). */
static bool valid_name(const char *name, char out[HOSTNAME_MAX + 1])
{
    size_t len;

    return name[0] && hostname_normalize((const uint8_t *)name, strlen(name), out, &len) ==
                          HOSTNAME_OK;
}

static int note_addr(struct suggest *s, const char *dst, uint16_t port)
{
    char ip[48];
    const char *colon = strrchr(dst, ':');
    size_t len = colon ? (size_t)(colon - dst) : strlen(dst), i;

    if (dst[0] == '[' && len >= 2) {
        dst++;
        len -= 2;
    }
    if (len >= sizeof(ip))
        return 0;
    memcpy(ip, dst, len);
    ip[len] = '\0';
    for (i = 0; i < s->n_addrs; i++)
        if (strcmp(s->addrs[i].ip, ip) == 0)
            break;
    if (i == s->n_addrs) {
        if (s->n_addrs == ADDRS_MAX) {
            s->addrs_dropped++;
            return 0;
        }
        if (!s->addrs && !(s->addrs = calloc(ADDRS_MAX, sizeof(*s->addrs))))
            return -ENOMEM;
        memcpy(s->addrs[s->n_addrs++].ip, ip, len + 1);
    }
    add_port(s->addrs[i].ports, &s->addrs[i].n_ports, port);
    s->addrs[i].conns++;
    return 0;
}

static int note(struct suggest *s, size_t file, const struct flowrec *r)
{
    bool allowed = strcmp(r->verdict, "allow") == 0 || strcmp(r->verdict, "audit") == 0;
    char name[HOSTNAME_MAX + 1];
    struct name *n;
    long run;

    if (strcmp(r->event, "flow_start") == 0 && allowed) {
        if (!valid_name(r->host, name))
            return r->orig_dst[0] && !r->host[0] ? note_addr(s, r->orig_dst, r->port) : 0;
        if ((run = run_of(s, file, r->sandbox)) < 0 || !(n = name_get(&s->names, name)))
            return -ENOMEM;
        n->flowed = true;
        n->conns++;
        add_port(n->ports, &n->n_ports, r->port);
        seen_at(n, r->ts);
        return mark_run(n, (size_t)run);
    }
    if (strcmp(r->event, "flow_end") == 0 && valid_name(r->host, name)) {
        if (!(n = name_get(&s->names, name)))
            return -ENOMEM;
        n->up += r->bytes_up;
        n->down += r->bytes_down;
        return 0;
    }
    if (strcmp(r->event, "deny") == 0 && strcmp(r->verdict, "deny") == 0 &&
        (strcmp(r->reason, "not_allowlisted") == 0 || strcmp(r->reason, "port_not_allowed") == 0)
        && valid_name(r->host, name)) {
        if ((run = run_of(s, file, r->sandbox)) < 0 || !(n = name_get(&s->names, name)))
            return -ENOMEM;
        n->denied = true;                       /* a rule would fix this one */
        n->conns++;
        add_port(n->ports, &n->n_ports, r->port);
        seen_at(n, r->ts);
        return mark_run(n, (size_t)run);
    }
    if (strcmp(r->event, "dns") == 0 && valid_name(r->qname, name) &&
        (allowed || strcmp(r->reason, "not_allowlisted") == 0)) {
        if (!(n = name_get(&s->names, name)))
            return -ENOMEM;
        if (allowed)
            n->resolved = true;
        else
            n->dns_refused = true;
        return 0;
    }
    return 0;
}

struct reading {
    struct suggest *s;
    size_t file;
};

static int note_record(const struct flowrec *r, void *arg)
{
    struct reading *rd = arg;

    rd->s->records++;
    return note(rd->s, rd->file, r);
}

/* ---- merging ---- */

static const char *parent_of(const char *name)
{
    const char *dot = strchr(name, '.');

    return dot ? dot + 1 : NULL;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp((*(struct name *const *)a)->name, (*(struct name *const *)b)->name);
}

static int cmp_port(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

/*
 * --merge N: N or more names with a flow directly under one parent that is
 * not a public suffix become "*.parent" (a new entry; the members are marked
 * merged). Two passes over the names: count each parent's, then fold each
 * name into its parent's wildcard when that has enough.
 */
static int merge(struct suggest *s, struct name **v, size_t n)
{
    struct table parents = {.key = {s->names.key[0] ^ 1, s->names.key[1]}};
    struct name **grp = calloc(n + 1, sizeof(*grp));
    size_t i, k;
    int rc = grp ? 0 : -ENOMEM;

    for (i = 0; i < n && rc == 0; i++) {
        const char *p = parent_of(v[i]->name);

        if (!(v[i]->flowed || v[i]->denied) || !p || psl_name_is_public(p))
            continue;
        if (!(grp[i] = name_get(&parents, p)))
            rc = -ENOMEM;
        else
            grp[i]->conns++;            /* how many distinct names */
    }
    for (i = 0; i < n && rc == 0; i++) {
        char pattern[HOSTNAME_MAX + 3];
        struct name *w;

        if (!grp[i] || grp[i]->conns < s->merge)
            continue;
        snprintf(pattern, sizeof(pattern), "*.%s", grp[i]->name);
        if (!(w = name_get(&s->names, pattern))) {
            rc = -ENOMEM;
            break;
        }
        v[i]->merged = true;
        w->flowed |= v[i]->flowed;
        w->denied |= v[i]->denied;
        w->conns += v[i]->conns;
        w->up += v[i]->up;
        w->down += v[i]->down;
        seen_at(w, v[i]->first);
        seen_at(w, v[i]->last);
        for (k = 0; k < v[i]->n_ports; k++)
            add_port(w->ports, &w->n_ports, v[i]->ports[k]);
        for (k = 0; k < v[i]->runs_words * 64 && rc == 0; k++)
            if (v[i]->runs[k / 64] & (1ull << (k % 64)))
                rc = mark_run(w, k);
    }
    for (i = 0; i < parents.cap; i++)
        if (parents.slots[i]) {
            free(parents.slots[i]->name);
            free(parents.slots[i]->runs);
            free(parents.slots[i]);
        }
    free(parents.slots);
    free(grp);
    return rc;
}

/* ---- output ---- */

static void print_ports(FILE *out, const struct name *n)
{
    size_t i;

    fprintf(out, "[");
    for (i = 0; i < n->n_ports; i++)
        fprintf(out, "%s%u", i ? ", " : "", n->ports[i]);
    fprintf(out, "]");
}

static void evidence(FILE *out, const struct suggest *s, const struct name *n)
{
    char up[CTL_BYTES_MAX], down[CTL_BYTES_MAX];

    ctl_bytes(n->up, up);
    ctl_bytes(n->down, down);
    fprintf(out, "seen in %zu of %zu runs, %llu connections, %s up, %s down, %s .. %s",
            n->n_runs, s->n_run_keys, (unsigned long long)n->conns, up, down,
            n->first[0] ? n->first : "-", n->last[0] ? n->last : "-");
}

/* Whether N becomes a rule: a flow or a fixable denial in enough runs, not merged away. */
static bool kept(const struct suggest *s, const struct name *n)
{
    return (n->flowed || n->denied) && !n->merged && n->n_runs >= s->min_runs && n->n_ports;
}

static void print_rules(FILE *out, const struct suggest *s, struct name **v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!kept(s, v[i]))
            continue;
        if (v[i]->included) {
            fprintf(out, "  # %s: allowed by the included %s:%u\n", v[i]->name,
                    v[i]->included->file, v[i]->included->line);
            continue;
        }
        fprintf(out, "  # ");
        evidence(out, s, v[i]);
        fprintf(out, "\n%s  - domain: \"%s\"\n    ports: ",
                v[i]->denied && !v[i]->flowed
                    ? "  # denied in enforce mode: this rule would have allowed it\n" : "",
                v[i]->name);
        print_ports(out, v[i]);
        fprintf(out, "\n");
    }
}

static void print_tail(FILE *out, const struct suggest *s, struct name **v, size_t n)
{
    size_t i, k;
    bool head = false;

    for (i = 0; i < n; i++) {
        if ((v[i]->flowed || v[i]->denied) && !v[i]->merged && !kept(s, v[i])) {
            if (!head)
                fprintf(out, "\n# left out: seen in fewer than %u runs\n", s->min_runs);
            head = true;
            fprintf(out, "#   - domain: \"%s\"  # ", v[i]->name);
            evidence(out, s, v[i]);
            fprintf(out, "\n");
        }
    }
    head = false;
    for (i = 0; i < n; i++) {
        if (v[i]->flowed || v[i]->denied || (!v[i]->resolved && !v[i]->dns_refused))
            continue;
        if (!head)
            fprintf(out, "\n# resolved but never connected to (not allowed):\n");
        head = true;
        fprintf(out, "#   %s%s\n", v[i]->name, v[i]->dns_refused && !v[i]->resolved
                                                 ? "  (refused at DNS)" : "");
    }
    if (s->n_addrs)
        fprintf(out, "\n# flows to addresses with no name (a cidr rule allows raw TCP to an "
                     "address; review before allowing):\n");
    for (i = 0; i < s->n_addrs; i++) {
        const struct addr *a = &s->addrs[i];

        fprintf(out, "#   - cidr: %s/%d\n#     ports: [", a->ip, strchr(a->ip, ':') ? 128 : 32);
        for (k = 0; k < a->n_ports; k++)
            fprintf(out, "%s%u", k ? ", " : "", a->ports[k]);
        fprintf(out, "]  # %llu connections\n", (unsigned long long)a->conns);
    }
    if (s->addrs_dropped)
        fprintf(out, "#   (and %zu more addresses)\n", s->addrs_dropped);
}

/*
 * The policy: the current one's text with its egress section replaced (its
 * settings and comments kept), or a fresh one. -1 when the current file
 * cannot be read as YAML.
 */
static int print_policy(FILE *out, const struct suggest *s, struct name **v, size_t n,
                        const char *current)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    yaml_node_pair_t *pair;
    FILE *f;
    char *text = NULL;
    size_t len = 0, from = 0, to = 0;
    bool found = false;

    fprintf(out, "# sluicectl suggest: %zu runs, %llu records%s\n", s->n_run_keys,
            (unsigned long long)s->records, s->bad_lines ? " (some lines were not records)" : "");
    if (!current) {
        fprintf(out, "version: 1\nmode: enforce\negress:\n");
        print_rules(out, s, v, n);
        print_tail(out, s, v, n);
        return 0;
    }
    f = fopen(current, "rb");
    if (!f || !(text = malloc(POLICY_MAX_FILE + 1)) ||
        (len = fread(text, 1, POLICY_MAX_FILE, f)) == 0 || !yaml_parser_initialize(&parser)) {
        if (f)
            fclose(f);
        free(text);
        return -1;
    }
    fclose(f);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_parser_delete(&parser);
        free(text);
        return -1;
    }
    root = yaml_document_get_root_node(&doc);
    for (pair = root && root->type == YAML_MAPPING_NODE ? root->data.mapping.pairs.start : NULL;
         pair && pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(&doc, pair->key);
        yaml_node_t *val = yaml_document_get_node(&doc, pair->value);

        if (k && val && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, "egress") == 0) {
            from = k->start_mark.index;
            to = val->end_mark.index;
            /* a block sequence ends where the next key's line starts: keep that
             * line; a flow one ends inside its last line: drop the rest of it */
            if (val->end_mark.column > 0)
                while (to < len && text[to] != '\n')
                    to++;
            found = true;
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (found) {
        bool eol = to < len && text[to] == '\n';

        fwrite(text, 1, from, out);
        fprintf(out, "egress:\n");
        print_rules(out, s, v, n);
        fwrite(text + to + eol, 1, len - to - eol, out);
    } else {
        fwrite(text, 1, len, out);
        if (len && text[len - 1] != '\n')
            fprintf(out, "\n");
        fprintf(out, "egress:\n");
        print_rules(out, s, v, n);
    }
    print_tail(out, s, v, n);
    free(text);
    return 0;
}

/* The rule of P that allows NM on PORT (a wildcard asked with a name under it), or NULL. */
static const struct policy_rule *allowing_rule(const struct policy *p, const struct name *nm,
                                               uint16_t port)
{
    char probe[HOSTNAME_MAX + 3];
    struct policy_query q = {.port = port};
    struct policy_decision d;

    snprintf(probe, sizeof(probe), "%s%s", nm->name[0] == '*' ? "x." : "",
             nm->name[0] == '*' ? nm->name + 2 : nm->name);
    q.host = (const uint8_t *)probe;
    q.host_len = strlen(probe);
    policy_decide(p, &q, &d);
    return d.outcome == DECISION_ALLOW ? d.rule : NULL;
}

/* --policy: marks the names a file P includes allows on every port (the include stays) */
static void mark_included(const struct policy *p, struct name **v, size_t n)
{
    size_t i, k;

    for (i = 0; i < n; i++) {
        const struct policy_rule *r = NULL;

        for (k = 0; k < v[i]->n_ports; k++) {
            r = allowing_rule(p, v[i], v[i]->ports[k]);
            if (!r || r->file == p->file)
                break;
        }
        if (k == v[i]->n_ports && v[i]->n_ports)
            v[i]->included = r;
    }
}

/*
 * --diff: what the suggestion adds to the current policy (a kept name and port
 * it does not allow) and what it would remove (a rule no observed flow used),
 * rule by rule with the evidence. Returns whether anything would change.
 */
static bool print_diff(FILE *out, const struct suggest *s, struct name **v, size_t n,
                       const struct policy *p)
{
    bool *used = calloc(p->n_rules + 1, sizeof(bool));
    bool changed = false;
    size_t i, k;

    for (i = 0; i < n; i++) {
        uint16_t missing[PORTS_MAX];
        size_t n_missing = 0;

        if (!kept(s, v[i]))
            continue;
        for (k = 0; k < v[i]->n_ports; k++) {
            const struct policy_rule *r = allowing_rule(p, v[i], v[i]->ports[k]);

            if (r && used)
                used[r - p->rules] = true;
            else if (!r)
                missing[n_missing++] = v[i]->ports[k];
        }
        if (!n_missing)
            continue;
        changed = true;
        fprintf(out, "+ domain: %s ports [", v[i]->name);
        for (k = 0; k < n_missing; k++)
            fprintf(out, "%s%u", k ? ", " : "", missing[k]);
        fprintf(out, "]%s\n    ", v[i]->denied && !v[i]->flowed ? " (denied in enforce mode)"
                                                               : "");
        evidence(out, s, v[i]);
        fprintf(out, "\n");
    }
    for (i = 0; i < p->n_rules; i++) {
        const struct policy_rule *r = &p->rules[i];

        /* an included file is kept whole: a preset's unused rules are no drift */
        if ((used && used[i]) || r->file != p->file)
            continue;
        changed = true;
        fprintf(out, "- %s: %s (%s:%u): no observed flow used it\n",
                r->kind == RULE_CIDR ? "cidr" : "domain", r->pattern, r->file, r->line);
    }
    if (!changed)
        fprintf(out, "no change: every observed name and port is allowed, every rule used\n");
    free(used);
    return changed;
}

static void print_json(FILE *out, const struct suggest *s, struct name **v, size_t n)
{
    struct json_out o = {.grow = true};
    size_t i, k;
    bool first = true;

    json_printf(&o, "{\"runs\":%zu,\"records\":%llu,\"bad_lines\":%llu,\"names\":[",
                s->n_run_keys, (unsigned long long)s->records, (unsigned long long)s->bad_lines);
    for (i = 0; i < n; i++) {
        const struct name *m = v[i];

        if (m->merged)
            continue;
        json_printf(&o, "%s{\"name\":", first ? "" : ",");
        first = false;
        json_str(&o, m->name, strlen(m->name));
        json_printf(&o, ",\"rule\":%s,\"ports\":[", kept(s, m) ? "true" : "false");
        for (k = 0; k < m->n_ports; k++)
            json_printf(&o, "%s%u", k ? "," : "", m->ports[k]);
        json_printf(&o, "],\"runs\":%zu,\"connections\":%llu,\"bytes_up\":%llu,"
                    "\"bytes_down\":%llu", m->n_runs, (unsigned long long)m->conns,
                    (unsigned long long)m->up, (unsigned long long)m->down);
        json_key_str(&o, "first", m->first[0] ? m->first : NULL, 0);
        json_key_str(&o, "last", m->last[0] ? m->last : NULL, 0);
        json_printf(&o, ",\"flowed\":%s,\"denied\":%s,\"resolved_only\":%s}",
                    m->flowed ? "true" : "false", m->denied ? "true" : "false",
                    !m->flowed && !m->denied ? "true" : "false");
    }
    json_printf(&o, "],\"addresses\":[");
    for (i = 0; i < s->n_addrs; i++) {
        json_printf(&o, "%s{\"address\":", i ? "," : "");
        json_str(&o, s->addrs[i].ip, strlen(s->addrs[i].ip));
        json_printf(&o, ",\"ports\":[");
        for (k = 0; k < s->addrs[i].n_ports; k++)
            json_printf(&o, "%s%u", k ? "," : "", s->addrs[i].ports[k]);
        json_printf(&o, "],\"connections\":%llu}", (unsigned long long)s->addrs[i].conns);
    }
    json_printf(&o, "]}\n");
    if (!o.failed)
        fwrite(o.p, 1, o.n, out);
    free(o.p);
}

static void suggest_free(struct suggest *s)
{
    size_t i;

    for (i = 0; i < s->names.cap; i++)
        if (s->names.slots[i]) {
            free(s->names.slots[i]->name);
            free(s->names.slots[i]->runs);
            free(s->names.slots[i]);
        }
    free(s->names.slots);
    for (i = 0; i < s->n_run_keys; i++)
        free(s->run_keys[i]);
    free(s->run_keys);
    free(s->addrs);
}

static bool parse_count(const char *arg, const char *opt, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(arg, &end, 10);
    if (errno || end == arg || *end || arg[0] == '-' || v < 1 || v > 1000000) {
        log_usage("%s '%s': not a count in 1-1000000", opt, arg);
        return false;
    }
    *out = (unsigned)v;
    return true;
}

int cmd_suggest(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"min-runs", required_argument, NULL, 'k'},
        {"merge", required_argument, NULL, 'm'},
        {"diff", no_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    struct suggest s = {.min_runs = 1};
    const char *current = NULL;
    struct policy *p = NULL;
    struct name **v = NULL;
    bool diff = false, json = false;
    size_t i, n = 0;
    int c, rc = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': current = optarg; break;
        case 'k': if (!parse_count(optarg, "--min-runs", &s.min_runs)) return LOG_EXIT_USAGE;
                  break;
        case 'm': if (!parse_count(optarg, "--merge", &s.merge)) return LOG_EXIT_USAGE;
                  break;
        case 'd': diff = true; break;
        case 'j': json = true; break;
        default: return LOG_EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return log_usage("suggest takes at least one LOG (- for standard input)");
    if (diff && !current)
        return log_usage("--diff compares with --policy CURRENT: name one");
    if (current && !(p = ctl_load(current))) {
        fprintf(stderr, "%s: invalid policy; fix it first ('sluicectl check')\n", current);
        return LOG_EXIT_USAGE;
    }
    if (getrandom(s.names.key, sizeof(s.names.key), 0) != (ssize_t)sizeof(s.names.key))
        goto out;
    for (i = (size_t)optind; i < (size_t)argc; i++)
        if (flowrec_read("sluicectl suggest", argv[i], note_record,
                         &(struct reading){&s, i - (size_t)optind}, &s.bad_lines) < 0)
            goto out;
    v = malloc((s.names.n * 2 + 1) * sizeof(*v));   /* room for the wildcards merging adds */
    if (!v)
        goto out;
    for (i = 0; i < s.names.cap; i++)
        if (s.names.slots[i])
            v[n++] = s.names.slots[i];
    if (s.merge && merge(&s, v, n) < 0)
        goto out;
    n = 0;                              /* the list again: the wildcards are in the table now */
    for (i = 0; i < s.names.cap; i++)
        if (s.names.slots[i])
            v[n++] = s.names.slots[i];
    qsort(v, n, sizeof(*v), cmp_names);
    for (i = 0; i < n; i++)
        qsort(v[i]->ports, v[i]->n_ports, sizeof(uint16_t), cmp_port);
    if (p)
        mark_included(p, v, n);
    if (json) {
        print_json(stdout, &s, v, n);
        rc = 0;
    } else if (diff) {
        rc = print_diff(stdout, &s, v, n, p) ? 1 : 0;
    } else if (print_policy(stdout, &s, v, n, current) < 0) {
        fprintf(stderr, "sluicectl suggest: %s: cannot be read again\n", current);
    } else {
        rc = 0;
    }
    if (s.bad_lines)
        fprintf(stderr, "sluicectl suggest: %llu lines were not flow records and were skipped\n",
                (unsigned long long)s.bad_lines);
out:
    free(v);
    suggest_free(&s);
    policy_free(p);
    return rc;
}
