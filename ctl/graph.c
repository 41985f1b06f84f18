/*
 * sluicectl graph: a policy as a picture, laid out by Graphviz's library
 * (libcgraph builds the graph, libgvc lays it out with dot and renders SVG;
 * nothing is shelled out). The sandbox, its DNS, each rule with its ports,
 * inspect and http parts, and the default-deny edge; with --log, what flowed
 * laid over it (edge width by bytes) and the denied destinations in a cluster
 * of their own, coloured by reason.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <graphviz/gvc.h>

#include "ctl.h"
#include "flowrec.h"
#include "reason.h"

#define DENIED_SHOWN 12             /* denied destinations drawn; the rest are counted */
#define DENIED_PORTS 8              /* ports listed per denied address */

struct denied {
    char name[HOSTNAME_MAX + 1];    /* a name, or an address (its ports apart) */
    char reason[32];
    uint64_t count;
    uint16_t ports[DENIED_PORTS];
    size_t n_ports, more_ports;
};

struct traffic {
    const struct policy *p;
    uint64_t *flows, *bytes;        /* per rule */
    struct denied denied[DENIED_SHOWN];
    size_t n_denied;
    uint64_t denied_more;           /* denials of destinations past DENIED_SHOWN */
};

/* Counts PORT once among D's ports. */
static void add_port(struct denied *d, uint16_t port)
{
    size_t i;

    for (i = 0; i < d->n_ports; i++)
        if (d->ports[i] == port)
            return;
    if (d->n_ports < DENIED_PORTS)
        d->ports[d->n_ports++] = port;
    else
        d->more_ports++;
}

static int note(const struct flowrec *r, void *arg)
{
    struct traffic *t = arg;
    struct policy_verdict v;
    char name[HOSTNAME_MAX + 1];
    size_t i;

    if (strcmp(r->event, "deny") == 0 && strcmp(r->verdict, "deny") == 0) {
        /* a name as it is; an address without its port (a scan is one destination) */
        snprintf(name, sizeof(name), "%s", r->host[0] ? r->host : r->orig_dst[0]
                 ? r->orig_dst : "-");
        if (!r->host[0] && strrchr(name, ':') && name[0] != ':')
            *strrchr(name, ':') = '\0';
        for (i = 0; i < t->n_denied; i++)
            if (strcmp(t->denied[i].name, name) == 0 &&
                strcmp(t->denied[i].reason, r->reason) == 0)
                break;
        if (i == t->n_denied) {
            if (i == DENIED_SHOWN) {
                t->denied_more++;
                return 0;
            }
            memcpy(t->denied[i].name, name, sizeof(name));
            snprintf(t->denied[i].reason, sizeof(t->denied[i].reason), "%s", r->reason);
            t->n_denied++;
        }
        t->denied[i].count++;
        if (r->port)
            add_port(&t->denied[i], r->port);
        return 0;
    }
    if (strcmp(r->event, "flow_end") != 0 || !r->host[0])
        return 0;
    policy_match_host(t->p, (const uint8_t *)r->host, strlen(r->host), r->port, &v);
    if (v.allow && v.rule) {
        t->flows[v.rule - t->p->rules]++;
        t->bytes[v.rule - t->p->rules] += r->bytes_up + r->bytes_down;
    }
    return 0;
}

/* Appends text S to the label OUT. Graphviz reads backslash escapes in labels (\N,
 * \l...): a name from a policy or a log keeps its backslashes as they are. */
static void label_append(char *out, size_t cap, const char *s)
{
    size_t n = strlen(out);

    for (; *s && n + 2 < cap; s++) {
        if (*s == '\\')
            out[n++] = '\\';
        out[n++] = *s;
    }
    out[n] = '\0';
}

/* Starts a new line in the label OUT. */
static void label_break(char *out, size_t cap)
{
    size_t n = strlen(out);

    if (n + 3 < cap)
        memcpy(out + n, "\\n", 3);
}

static void ports_text(const struct policy_rule *r, char *out, size_t cap)
{
    size_t i, n = 0;

    out[0] = '\0';
    for (i = 0; i < r->n_ports && n + 8 < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%u", i ? ", " : "", r->ports[i]);
}

/* A colour per reason, from a small palette: the same reason, the same colour (into
 * OUT: Graphviz 2.42 takes attribute values as char *). */
static char *reason_colour(const char *reason, char out[8])
{
    static const char *const palette[] = {"#c0392b", "#8e44ad", "#d35400", "#7f8c8d",
                                          "#b03a2e", "#6c3483", "#a04000"};
    unsigned h = 0;

    for (; *reason; reason++)
        h = h * 31 + (unsigned char)*reason;
    memcpy(out, palette[h % (sizeof(palette) / sizeof(palette[0]))], 8);
    return out;
}

/* "port 22, " or "ports 1, 2, 3 and 27 more, " for D, onto the label OUT */
static void ports_of(const struct denied *d, char *out, size_t cap)
{
    char buf[96];
    size_t i, n = 0;

    if (!d->n_ports)
        return;
    n += (size_t)snprintf(buf, sizeof(buf), "port%s ", d->n_ports > 1 ? "s" : "");
    for (i = 0; i < d->n_ports && n < sizeof(buf); i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%u", i ? ", " : "", d->ports[i]);
    if (d->more_ports && n < sizeof(buf))
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, " and %zu more", d->more_ports);
    if (n < sizeof(buf))
        snprintf(buf + n, sizeof(buf) - n, ", ");
    label_append(out, cap, buf);
}

static void rule_label(const struct policy_rule *r, char *out, size_t cap)
{
    char ports[256];
    size_t i, j;

    ports_text(r, ports, sizeof(ports));
    snprintf(out, cap, "%s %s\\nports %s%s", r->kind == RULE_CIDR ? "cidr" : "domain",
             r->pattern, ports, r->inspect ? "\\ninspect" : "");
    for (i = 0; i < r->n_http; i++) {
        const struct policy_http_rule *h = &r->http[i];

        label_break(out, cap);
        label_append(out, cap, "http: ");
        for (j = 0; j < h->n_methods; j++) {
            label_append(out, cap, j ? "," : "");
            label_append(out, cap, h->methods[j]);
        }
        label_append(out, cap, h->n_methods ? " " : "any method ");
        for (j = 0; j < h->n_paths; j++) {
            label_append(out, cap, j ? " " : "");
            label_append(out, cap, h->paths[j]);
        }
        if (!h->n_paths)
            label_append(out, cap, "any path");
    }
    for (i = 0; i < r->n_inject; i++) {
        if (!i)
            label_break(out, cap);
        label_append(out, cap, i ? ", " : "injects ");
        label_append(out, cap, r->inject[i].header);
    }
}

static Agraph_t *build(const struct policy *p, const struct traffic *t)
{
    Agraph_t *g = agopen("policy", Agdirected, NULL);
    Agnode_t *sb, *dns, *deny;
    Agedge_t *e;
    char name[32], label[1024], v[64], b[CTL_BYTES_MAX], colour[8];
    uint64_t max_bytes = 1;
    size_t i;

    agattr(g, AGRAPH, "rankdir", "LR");
    agattr(g, AGRAPH, "label", "");
    agattr(g, AGRAPH, "fontname", "Helvetica");
    agattr(g, AGNODE, "shape", "box");
    agattr(g, AGNODE, "style", "rounded,filled");
    agattr(g, AGNODE, "fillcolor", "#eef5ee");
    agattr(g, AGNODE, "color", "#3b8f4f");
    agattr(g, AGNODE, "fontname", "Helvetica");
    agattr(g, AGNODE, "fontsize", "11");
    agattr(g, AGEDGE, "color", "#3b8f4f");
    agattr(g, AGEDGE, "label", "");
    agattr(g, AGEDGE, "style", "solid");
    agattr(g, AGEDGE, "penwidth", "1");
    agattr(g, AGEDGE, "fontname", "Helvetica");
    agattr(g, AGEDGE, "fontsize", "10");
    snprintf(label, sizeof(label), "policy %s (%s)", p->hash,
             p->settings.mode == POLICY_AUDIT ? "audit" : "enforce");
    agsafeset(g, "label", label, "");
    sb = agnode(g, "sandbox", 1);
    agsafeset(sb, "label", "sandbox", "");
    agsafeset(sb, "fillcolor", "#dde6f3", "");
    agsafeset(sb, "color", "#2c6fbb", "");
    dns = agnode(g, "dns", 1);
    agsafeset(dns, "label", p->settings.dns.answers == DNS_ANSWERS_VIRTUAL
              ? "sluice DNS\\nallowed names only\\n(virtual addresses)"
              : "sluice DNS\\nallowed names only", "");
    agsafeset(dns, "fillcolor", "#f4f4f4", "");
    agsafeset(dns, "color", "#555555", "");
    e = agedge(g, sb, dns, NULL, 1);
    agsafeset(e, "label", "53", "");
    agsafeset(e, "color", "#555555", "");
    for (i = 0; i < p->n_rules && t; i++)
        if (t->bytes[i] > max_bytes)
            max_bytes = t->bytes[i];
    for (i = 0; i < p->n_rules; i++) {
        const struct policy_rule *r = &p->rules[i];
        Agnode_t *n;

        snprintf(name, sizeof(name), "rule%zu", i + 1);
        n = agnode(g, name, 1);
        rule_label(r, label, sizeof(label));
        agsafeset(n, "label", label, "");
        if (r->kind == RULE_CIDR) {
            agsafeset(n, "fillcolor", "#eaf1fb", "");
            agsafeset(n, "color", "#2c6fbb", "");
        }
        if (r->inspect) {
            agsafeset(n, "fillcolor", "#fdf2e0", "");
            agsafeset(n, "color", "#d9a400", "");
        }
        e = agedge(g, sb, n, NULL, 1);
        if (t && t->flows[i]) {
            ctl_bytes(t->bytes[i], b);
            snprintf(v, sizeof(v), "%llu flow%s, %s", (unsigned long long)t->flows[i],
                     t->flows[i] == 1 ? "" : "s", b);
            agsafeset(e, "label", v, "");
            snprintf(v, sizeof(v), "%.1f",
                     1 + 5 * log1p((double)t->bytes[i]) / log1p((double)max_bytes));
            agsafeset(e, "penwidth", v, "");
        } else if (t) {
            agsafeset(e, "style", "dotted", "");
        }
    }
    deny = agnode(g, "default_deny", 1);
    agsafeset(deny, "label", "everything else\\n(default deny)", "");
    agsafeset(deny, "fillcolor", "#fbeaea", "");
    agsafeset(deny, "color", "#c0392b", "");
    e = agedge(g, sb, deny, NULL, 1);
    agsafeset(e, "label", "denied", "");
    agsafeset(e, "style", "dashed", "");
    agsafeset(e, "color", "#c0392b", "");
    if (t && (t->n_denied || t->denied_more)) {
        Agraph_t *c = agsubg(g, "cluster_denied", 1);

        agsafeset(c, "label", "denied destinations (from the logs)", "");
        agsafeset(c, "color", "#c0392b", "");
        agsafeset(c, "style", "dashed", "");
        for (i = 0; i < t->n_denied; i++) {
            Agnode_t *n;

            snprintf(name, sizeof(name), "denied%zu", i + 1);
            n = agnode(c, name, 1);
            label[0] = '\0';
            label_append(label, sizeof(label), t->denied[i].name);
            label_break(label, sizeof(label));
            ports_of(&t->denied[i], label, sizeof(label));
            label_append(label, sizeof(label), t->denied[i].reason);
            agsafeset(n, "label", label, "");
            agsafeset(n, "fillcolor", "#fbeaea", "");
            agsafeset(n, "color", reason_colour(t->denied[i].reason, colour), "");
            e = agedge(g, deny, n, NULL, 1);
            snprintf(v, sizeof(v), "%llu", (unsigned long long)t->denied[i].count);
            agsafeset(e, "label", v, "");
            agsafeset(e, "color", colour, "");
        }
        if (t->denied_more) {
            Agnode_t *n = agnode(c, "denied_more", 1);

            snprintf(label, sizeof(label), "%llu more denials",
                     (unsigned long long)t->denied_more);
            agsafeset(n, "label", label, "");
            agsafeset(n, "fillcolor", "#fbeaea", "");
            agsafeset(n, "color", "#c0392b", "");
            e = agedge(g, deny, n, NULL, 1);
            agsafeset(e, "color", "#c0392b", "");
        }
    }
    return g;
}

int cmd_graph(int argc, char **argv)
{
    static const struct option opts[] = {
        {"log", required_argument, NULL, 'l'},
        {"format", required_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL, *format = "svg", **logs = calloc((size_t)argc, sizeof(char *));
    struct traffic t = {0};
    struct policy *p = NULL;
    size_t n_logs = 0, i;
    uint64_t bad = 0;
    GVC_t *gvc = NULL;
    Agraph_t *g = NULL;
    FILE *f = stdout;
    int c, rc = 1;

    optind = 1;
    while (logs && (c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 'l': logs[n_logs++] = optarg; break;
        default: rc = LOG_EXIT_USAGE; goto done;
        }
    }
    if (!logs)
        goto done;
    if (strcmp(format, "svg") != 0 && strcmp(format, "dot") != 0) {
        rc = log_usage("--format %s: svg or dot", format);
        goto done;
    }
    if (argc - optind != 1) {
        rc = log_usage("graph takes one POLICY (and --log LOG, as often as needed)");
        goto done;
    }
    if (!(p = ctl_load(argv[optind]))) {
        fprintf(stderr, "%s: invalid policy; fix it first ('sluicectl check')\n", argv[optind]);
        rc = LOG_EXIT_USAGE;
        goto done;
    }
    if (n_logs) {
        t.p = p;
        t.flows = calloc(p->n_rules + 1, sizeof(uint64_t));
        t.bytes = calloc(p->n_rules + 1, sizeof(uint64_t));
        if (!t.flows || !t.bytes)
            goto done;
        for (i = 0; i < n_logs; i++)
            if (flowrec_read("sluicectl graph", logs[i], note, &t, &bad) < 0)
                goto done;
    }
    g = build(p, n_logs ? &t : NULL);
    if (out && !(f = fopen(out, "w"))) {
        perror(out);
        goto done;
    }
    if (strcmp(format, "dot") == 0) {
        rc = agwrite(g, f) == 0 ? 0 : 1;
    } else {
        gvc = gvContext();
        if (!gvc || gvLayout(gvc, g, "dot") != 0) {
            fprintf(stderr, "sluicectl graph: Graphviz cannot lay the graph out (is libgvc's "
                    "dot plugin installed? libgvc6 provides it)\n");
            goto done;
        }
        rc = gvRender(gvc, g, "svg", f) == 0 ? 0 : 1;
        gvFreeLayout(gvc, g);
    }
    if (ferror(f))
        rc = 1;
    if (bad)
        fprintf(stderr, "sluicectl graph: %llu lines were not flow records and were skipped\n",
                (unsigned long long)bad);
done:
    if (f && f != stdout && fclose(f) != 0)
        rc = 1;
    if (g)
        agclose(g);
    if (gvc)
        gvFreeContext(gvc);
    policy_free(p);
    free(t.flows);
    free(t.bytes);
    free(logs);
    return rc;
}
