/*
 * sluicectl report: one pass over flow logs, a picture of what happened. The
 * tables have fixed bounds (REPORT_HOSTS names, REPORT_SANDBOXES sandboxes,
 * REPORT_POLICIES hashes, REPORT_ALERTS alerts kept, REPORT_BUCKETS time
 * buckets whose width doubles as the logs span more), so memory does not grow
 * with the records: names past the bound are counted as "(other)".
 *
 * html is one self-contained file: inline CSS and SVG, no script, and a
 * Content-Security-Policy that lets it load nothing. Every string from a log
 * is escaped for the text it lands in.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "flowrec.h"
#include "json.h"
#include "reason.h"
#include "siphash.h"

#define REPORT_HOSTS 65536
#define REPORT_SANDBOXES 4096
#define REPORT_POLICIES 256
#define REPORT_ALERTS 200
#define REPORT_BUCKETS 96
#define REPORT_TOP 15
#define OTHER "(other)"

enum verdict { V_ALLOW, V_AUDIT, V_DENY, V_COUNT };
static const char *const verdicts[V_COUNT] = {"allow", "audit", "deny"};

struct stat_row {                   /* a host or a sandbox */
    char *name;
    uint64_t conns, up, down, denials, dns, alerts;
    char first[32], last[32];
};

struct table {                      /* open addressing over rows, at most MAX of them */
    struct stat_row **slots;
    size_t cap, n, max;
    struct stat_row other;          /* what did not fit */
};

struct alert_row {
    char ts[32], sandbox[128], kind[16], why[16], subject[FLOWREC_SAMPLE_MAX];
    uint64_t count, threshold;
    char samples[FLOWREC_SAMPLES][FLOWREC_SAMPLE_MAX];
    size_t n_samples;
};

struct policy_row {
    char hash[16], first[32], last[32];
    uint64_t records;
};

struct report {
    const char *since, *until;
    uint64_t records, bad, skipped;
    uint64_t key[2];
    struct table hosts, sandboxes;
    uint64_t by_reason[REASON_COUNT + 1];     /* the last: a reason not in the set */
    struct alert_row alerts[REPORT_ALERTS];
    size_t n_alerts;
    uint64_t alerts_total;
    struct policy_row policies[REPORT_POLICIES];
    size_t n_policies;
    char first[32], last[32];
    /* decisions over time: bucket i covers [(base + i) * width, ...) seconds */
    uint64_t buckets[REPORT_BUCKETS][V_COUNT];
    int64_t base, lo, hi;           /* lo..hi: the absolute indexes in use */
    int64_t width;
    bool any_time;
};

/* ---- tables ---- */

static int table_init(struct table *t, size_t max)
{
    t->cap = 1024;
    t->max = max;
    t->slots = calloc(t->cap, sizeof(*t->slots));
    t->other.name = (char *)OTHER;
    return t->slots ? 0 : -1;
}

static void table_free(struct table *t)
{
    size_t i;

    for (i = 0; i < t->cap; i++)
        if (t->slots[i]) {
            free(t->slots[i]->name);
            free(t->slots[i]);
        }
    free(t->slots);
}

static int table_grow(struct table *t, const uint64_t key[2])
{
    size_t ncap = t->cap * 2, i, j;
    struct stat_row **nv = calloc(ncap, sizeof(*nv));

    if (!nv)
        return -1;
    for (i = 0; i < t->cap; i++) {
        if (!t->slots[i])
            continue;
        j = siphash24(key, (const uint8_t *)t->slots[i]->name, strlen(t->slots[i]->name));
        for (j &= ncap - 1; nv[j]; j = (j + 1) & (ncap - 1))
            ;
        nv[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = nv;
    t->cap = ncap;
    return 0;
}

/* NAME's row: made while there is room, else the "(other)" row. NULL: no memory. */
static struct stat_row *row_of(struct table *t, const uint64_t key[2], const char *name)
{
    size_t len = strlen(name), i;
    struct stat_row *r;

    for (i = siphash24(key, (const uint8_t *)name, len) & (t->cap - 1); t->slots[i];
         i = (i + 1) & (t->cap - 1))
        if (strcmp(t->slots[i]->name, name) == 0)
            return t->slots[i];
    if (t->n >= t->max)
        return &t->other;
    if ((t->n + 1) * 2 > t->cap) {
        if (table_grow(t, key) < 0)
            return NULL;
        return row_of(t, key, name);
    }
    if (!(r = calloc(1, sizeof(*r))) || !(r->name = strdup(name))) {
        free(r);
        return NULL;
    }
    t->slots[i] = r;
    t->n++;
    return r;
}

static void seen(char first[32], char last[32], const char *ts)
{
    if (!first[0] || strcmp(ts, first) < 0)
        snprintf(first, 32, "%s", ts);
    if (strcmp(ts, last) > 0)
        snprintf(last, 32, "%s", ts);
}

/* ---- time ---- */

/* Seconds since the epoch of an RFC 3339 UTC time as the log writes it; -1 if not. */
static int64_t ts_seconds(const char *ts)
{
    struct tm tm = {0};
    const char *end = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);

    if (!end)
        return -1;
    return (int64_t)timegm(&tm);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* Bucket widths in seconds, each a multiple of the one before (so that buckets merge
 * whole) and each a round figure on a clock; past the last, weeks double. */
static const int64_t widths[] = {1, 2, 10, 20, 60, 120, 600, 1200, 3600, 7200, 21600, 43200,
                                 86400, 172800, 604800};

static int64_t next_width(int64_t w)
{
    size_t i;

    for (i = 0; i + 1 < sizeof(widths) / sizeof(widths[0]); i++)
        if (widths[i] == w)
            return widths[i + 1];
    return w * 2;
}

/* Widens the buckets to the next width, merging those that fall together. */
static void widen(struct report *rp)
{
    uint64_t old[REPORT_BUCKETS][V_COUNT];
    int64_t k = next_width(rp->width) / rp->width, i, nbase = floor_div(rp->base, k);
    int v;

    memcpy(old, rp->buckets, sizeof(old));
    memset(rp->buckets, 0, sizeof(rp->buckets));
    for (i = 0; i < REPORT_BUCKETS; i++)
        for (v = 0; v < V_COUNT; v++)
            rp->buckets[floor_div(rp->base + i, k) - nbase][v] += old[i][v];
    rp->base = nbase;
    rp->lo = floor_div(rp->lo, k);
    rp->hi = floor_div(rp->hi, k);
    rp->width *= k;
}

static void count_time(struct report *rp, int64_t t, enum verdict v)
{
    int64_t idx;

    if (!rp->any_time) {
        rp->any_time = true;
        rp->width = 1;              /* doubled as the logs span more than the buckets */
        rp->base = rp->lo = rp->hi = floor_div(t, rp->width);
    }
    for (;;) {
        int64_t lo, hi;

        idx = floor_div(t, rp->width);
        lo = idx < rp->lo ? idx : rp->lo;
        hi = idx > rp->hi ? idx : rp->hi;
        if (hi - lo < REPORT_BUCKETS)
            break;
        widen(rp);
    }
    if (idx < rp->base || idx >= rp->base + REPORT_BUCKETS) {
        /* move the window so that lo..hi fits: shift the counts with it */
        int64_t lo = idx < rp->lo ? idx : rp->lo, shift = lo - rp->base, i;
        uint64_t old[REPORT_BUCKETS][V_COUNT];

        memcpy(old, rp->buckets, sizeof(old));
        memset(rp->buckets, 0, sizeof(rp->buckets));
        for (i = 0; i < REPORT_BUCKETS; i++)
            if (i - shift >= 0 && i - shift < REPORT_BUCKETS)
                memcpy(rp->buckets[i - shift], old[i], sizeof(old[i]));
        rp->base = lo;
    }
    if (idx < rp->lo)
        rp->lo = idx;
    if (idx > rp->hi)
        rp->hi = idx;
    rp->buckets[idx - rp->base][v]++;
}

/* ---- reading ---- */

static enum verdict verdict_of(const char *v)
{
    return strcmp(v, "deny") == 0 ? V_DENY : strcmp(v, "audit") == 0 ? V_AUDIT : V_ALLOW;
}

static void count_reason(struct report *rp, const char *reason)
{
    int i;

    for (i = 1; i < REASON_COUNT; i++)
        if (strcmp(reason, reason_name((enum reason)i)) == 0) {
            rp->by_reason[i]++;
            return;
        }
    rp->by_reason[REASON_COUNT]++;
}

static void note_policy(struct report *rp, const struct flowrec *r)
{
    size_t i;

    if (!r->policy[0])
        return;
    for (i = 0; i < rp->n_policies; i++)
        if (strcmp(rp->policies[i].hash, r->policy) == 0)
            break;
    if (i == rp->n_policies) {
        if (i == REPORT_POLICIES)
            return;
        snprintf(rp->policies[i].hash, sizeof(rp->policies[i].hash), "%s", r->policy);
        rp->n_policies++;
    }
    rp->policies[i].records++;
    seen(rp->policies[i].first, rp->policies[i].last, r->ts);
}

static void note_alert(struct report *rp, const struct flowrec *r, struct stat_row *sb)
{
    struct alert_row *a;

    rp->alerts_total++;
    sb->alerts++;
    if (rp->n_alerts == REPORT_ALERTS)
        return;
    a = &rp->alerts[rp->n_alerts++];
    snprintf(a->ts, sizeof(a->ts), "%s", r->ts);
    snprintf(a->sandbox, sizeof(a->sandbox), "%s", r->sandbox);
    snprintf(a->kind, sizeof(a->kind), "%s", r->kind);
    snprintf(a->why, sizeof(a->why), "%s", r->why);
    memcpy(a->subject, r->subject, sizeof(a->subject));
    a->count = r->count;
    a->threshold = r->threshold;
    memcpy(a->samples, r->samples, sizeof(a->samples));
    a->n_samples = r->n_samples;
}

static int note(const struct flowrec *r, void *arg)
{
    struct report *rp = arg;
    const char *dest = r->host[0] ? r->host : r->orig_dst[0] ? r->orig_dst : "-";
    bool denied = strcmp(r->verdict, "deny") == 0;
    struct stat_row *sb, *h;
    int64_t t;

    if ((rp->since && strcmp(r->ts, rp->since) < 0) ||
        (rp->until && strcmp(r->ts, rp->until) >= 0)) {
        rp->skipped++;
        return 0;
    }
    rp->records++;
    if (!(sb = row_of(&rp->sandboxes, rp->key, r->sandbox[0] ? r->sandbox : "-")))
        return -1;
    seen(sb->first, sb->last, r->ts);
    seen(rp->first, rp->last, r->ts);
    note_policy(rp, r);
    t = ts_seconds(r->ts);
    if (strcmp(r->event, "alert") == 0) {
        note_alert(rp, r, sb);
        return 0;
    }
    if (strcmp(r->event, "flow_start") == 0 || strcmp(r->event, "deny") == 0 ||
        strcmp(r->event, "request") == 0 || strcmp(r->event, "dns") == 0) {
        if (strcmp(r->event, "dns") == 0) {
            sb->dns++;
            dest = r->qname[0] ? r->qname : "-";
        } else if (strcmp(r->event, "flow_start") == 0) {
            sb->conns++;
        }
        if (t >= 0 && (strcmp(r->event, "dns") != 0 || denied))
            count_time(rp, t, verdict_of(r->verdict));
        if (!(h = row_of(&rp->hosts, rp->key, dest)))
            return -1;
        if (strcmp(r->event, "flow_start") == 0)
            h->conns++;
        if (denied) {
            h->denials++;
            sb->denials++;
            count_reason(rp, r->reason);
        }
        seen(h->first, h->last, r->ts);
    } else if (strcmp(r->event, "flow_end") == 0) {
        if (!(h = row_of(&rp->hosts, rp->key, dest)))
            return -1;
        h->up += r->bytes_up;
        h->down += r->bytes_down;
        sb->up += r->bytes_up;
        sb->down += r->bytes_down;
    }
    return 0;
}

/* ---- the tables, sorted ---- */

struct sorted {
    struct stat_row **v;
    size_t n;
};

static size_t sort_key;             /* offsetof the field to sort on (qsort has no arg) */

static int cmp_rows(const void *a, const void *b)
{
    const struct stat_row *x = *(struct stat_row *const *)a, *y = *(struct stat_row *const *)b;
    uint64_t u = *(const uint64_t *)((const char *)x + sort_key);
    uint64_t w = *(const uint64_t *)((const char *)y + sort_key);

    if (u != w)
        return u < w ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* The rows of T (and "(other)" when used) sorted by the field at KEY, largest first;
 * with KEY 0, by name. */
static int sorted(const struct table *t, size_t key, struct sorted *out)
{
    size_t i;

    out->n = 0;
    out->v = malloc((t->n + 1) * sizeof(*out->v));
    if (!out->v)
        return -1;
    for (i = 0; i < t->cap; i++)
        if (t->slots[i])
            out->v[out->n++] = t->slots[i];
    if (t->other.conns || t->other.denials || t->other.up || t->other.down || t->other.dns ||
        t->other.alerts)
        out->v[out->n++] = (struct stat_row *)&t->other;
    sort_key = key;
    qsort(out->v, out->n, sizeof(*out->v), cmp_rows);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp((*(struct stat_row *const *)a)->name, (*(struct stat_row *const *)b)->name);
}

/* ---- output: text ---- */

static void text_top(FILE *f, const struct table *t, size_t key, const char *title)
{
    struct sorted s;
    size_t i;
    char up[CTL_BYTES_MAX], down[CTL_BYTES_MAX];

    if (sorted(t, key, &s) < 0)
        return;
    fprintf(f, "\n%s\n", title);
    fprintf(f, "  %-48s %8s %8s %10s %10s\n", "destination", "conns", "denials", "up", "down");
    for (i = 0; i < s.n && i < REPORT_TOP; i++) {
        uint64_t v = *(const uint64_t *)((const char *)s.v[i] + key);

        if (!v)
            break;
        ctl_bytes(s.v[i]->up, up);
        ctl_bytes(s.v[i]->down, down);
        fprintf(f, "  %-48s %8llu %8llu %10s %10s\n", s.v[i]->name,
                (unsigned long long)s.v[i]->conns, (unsigned long long)s.v[i]->denials, up,
                down);
    }
    free(s.v);
}

static void print_text(FILE *f, const struct report *rp)
{
    struct sorted s;
    size_t i, k;
    char up[CTL_BYTES_MAX], down[CTL_BYTES_MAX];

    fprintf(f, "sluice report: %llu records, %s .. %s\n", (unsigned long long)rp->records,
            rp->first[0] ? rp->first : "-", rp->last[0] ? rp->last : "-");
    if (rp->bad)
        fprintf(f, "  %llu lines were not flow records and were skipped\n",
                (unsigned long long)rp->bad);
    text_top(f, &rp->hosts, offsetof(struct stat_row, conns), "top destinations by connections");
    text_top(f, &rp->hosts, offsetof(struct stat_row, up), "top destinations by bytes up");
    text_top(f, &rp->hosts, offsetof(struct stat_row, down), "top destinations by bytes down");
    fprintf(f, "\ndenials by reason\n");
    for (i = 1; i <= REASON_COUNT; i++)
        if (rp->by_reason[i])
            fprintf(f, "  %-28s %8llu\n", i < REASON_COUNT ? reason_name((enum reason)i)
                                                           : "(unknown)",
                    (unsigned long long)rp->by_reason[i]);
    if (sorted(&rp->sandboxes, offsetof(struct stat_row, denials), &s) == 0) {
        fprintf(f, "\ndenials by sandbox\n");
        for (i = 0; i < s.n && s.v[i]->denials; i++)
            fprintf(f, "  %-28s %8llu\n", s.v[i]->name, (unsigned long long)s.v[i]->denials);
        qsort(s.v, s.n, sizeof(*s.v), cmp_names);
        fprintf(f, "\nsandboxes\n  %-20s %8s %8s %8s %8s %10s %10s  %-24s %s\n", "sandbox",
                "conns", "denials", "dns", "alerts", "up", "down", "first", "last");
        for (i = 0; i < s.n; i++) {
            ctl_bytes(s.v[i]->up, up);
            ctl_bytes(s.v[i]->down, down);
            fprintf(f, "  %-20s %8llu %8llu %8llu %8llu %10s %10s  %-24s %s\n", s.v[i]->name,
                    (unsigned long long)s.v[i]->conns, (unsigned long long)s.v[i]->denials,
                    (unsigned long long)s.v[i]->dns, (unsigned long long)s.v[i]->alerts, up,
                    down, s.v[i]->first, s.v[i]->last);
        }
        free(s.v);
    }
    fprintf(f, "\nalerts (%llu)\n", (unsigned long long)rp->alerts_total);
    for (i = 0; i < rp->n_alerts; i++) {
        const struct alert_row *a = &rp->alerts[i];

        fprintf(f, "  %s %s %s%s%s %s%s%llu/%llu", a->ts, a->sandbox, a->kind,
                a->why[0] ? " " : "", a->why, a->subject, a->subject[0] ? " " : "",
                (unsigned long long)a->count, (unsigned long long)a->threshold);
        for (k = 0; k < a->n_samples; k++)
            fprintf(f, "%s%s", k ? ", " : ": ", a->samples[k]);
        fprintf(f, "\n");
    }
    fprintf(f, "\npolicies\n");
    for (i = 0; i < rp->n_policies; i++)
        fprintf(f, "  %-14s %8llu records  %s .. %s\n", rp->policies[i].hash,
                (unsigned long long)rp->policies[i].records, rp->policies[i].first,
                rp->policies[i].last);
}

/* ---- output: json ---- */

static void json_rows(struct json_out *o, const struct table *t, size_t key, bool all)
{
    struct sorted s;
    size_t i;

    if (sorted(t, key, &s) < 0) {
        o->failed = true;
        return;
    }
    json_printf(o, "[");
    for (i = 0; i < s.n && (all || i < REPORT_TOP); i++) {
        const struct stat_row *r = s.v[i];

        if (!all && !*(const uint64_t *)((const char *)r + key))
            break;
        json_printf(o, "%s{\"name\":", i ? "," : "");
        json_str(o, r->name, strlen(r->name));
        json_key_u64(o, "conns", r->conns);
        json_key_u64(o, "denials", r->denials);
        json_key_u64(o, "bytes_up", r->up);
        json_key_u64(o, "bytes_down", r->down);
        if (all) {
            json_key_u64(o, "dns", r->dns);
            json_key_u64(o, "alerts", r->alerts);
            json_key_str(o, "first", r->first, 0);
            json_key_str(o, "last", r->last, 0);
        }
        json_printf(o, "}");
    }
    json_printf(o, "]");
    free(s.v);
}

static void print_json(FILE *f, const struct report *rp)
{
    struct json_out o = {.grow = true};
    size_t i, k;
    int v;

    json_printf(&o, "{\"records\":%llu,\"bad_lines\":%llu", (unsigned long long)rp->records,
                (unsigned long long)rp->bad);
    json_key_str(&o, "first", rp->first, 0);
    json_key_str(&o, "last", rp->last, 0);
    json_printf(&o, ",\"bucket_seconds\":%lld,\"timeline\":[", (long long)rp->width);
    for (i = 0; rp->any_time && (int64_t)i <= rp->hi - rp->lo; i++) {
        const uint64_t *b = rp->buckets[rp->lo - rp->base + (int64_t)i];

        json_printf(&o, "%s{\"start\":%lld", i ? "," : "",
                    (long long)((rp->lo + (int64_t)i) * rp->width));
        for (v = 0; v < V_COUNT; v++)
            json_key_u64(&o, verdicts[v], b[v]);
        json_printf(&o, "}");
    }
    json_printf(&o, "],\"top_by_connections\":");
    json_rows(&o, &rp->hosts, offsetof(struct stat_row, conns), false);
    json_printf(&o, ",\"top_by_bytes_up\":");
    json_rows(&o, &rp->hosts, offsetof(struct stat_row, up), false);
    json_printf(&o, ",\"top_by_bytes_down\":");
    json_rows(&o, &rp->hosts, offsetof(struct stat_row, down), false);
    json_printf(&o, ",\"denials_by_reason\":{");
    for (i = 1, k = 0; i <= REASON_COUNT; i++)
        if (rp->by_reason[i])
            json_printf(&o, "%s\"%s\":%llu", k++ ? "," : "",
                        i < REASON_COUNT ? reason_name((enum reason)i) : "(unknown)",
                        (unsigned long long)rp->by_reason[i]);
    json_printf(&o, "},\"sandboxes\":");
    json_rows(&o, &rp->sandboxes, 0, true);
    json_printf(&o, ",\"alerts_total\":%llu,\"alerts\":[", (unsigned long long)rp->alerts_total);
    for (i = 0; i < rp->n_alerts; i++) {
        const struct alert_row *a = &rp->alerts[i];

        json_printf(&o, "%s{", i ? "," : "");
        json_printf(&o, "\"ts\":");
        json_str(&o, a->ts, strlen(a->ts));
        json_key_str(&o, "sandbox", a->sandbox, 0);
        json_key_str(&o, "kind", a->kind, 0);
        json_key_str(&o, "why", a->why, 0);
        json_key_str(&o, "subject", a->subject, 0);
        json_key_u64(&o, "count", a->count);
        json_key_u64(&o, "threshold", a->threshold);
        json_printf(&o, ",\"samples\":[");
        for (k = 0; k < a->n_samples; k++) {
            json_printf(&o, "%s", k ? "," : "");
            json_str(&o, a->samples[k], strlen(a->samples[k]));
        }
        json_printf(&o, "]}");
    }
    json_printf(&o, "],\"policies\":[");
    for (i = 0; i < rp->n_policies; i++) {
        json_printf(&o, "%s{\"hash\":", i ? "," : "");
        json_str(&o, rp->policies[i].hash, strlen(rp->policies[i].hash));
        json_key_u64(&o, "records", rp->policies[i].records);
        json_key_str(&o, "first", rp->policies[i].first, 0);
        json_key_str(&o, "last", rp->policies[i].last, 0);
        json_printf(&o, "}");
    }
    json_printf(&o, "]}\n");
    if (!o.failed)
        fwrite(o.p, 1, o.n, f);
    free(o.p);
}

/* ---- output: html ---- */

/* S escaped for HTML text and attribute values (and SVG, which is XML). */
static void esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char *const colours[V_COUNT] = {"#3b8f4f", "#d9a400", "#c0392b"};

static void html_timeline(FILE *f, const struct report *rp)
{
    const int w = 860, h = 220, left = 50, bottom = 30, top = 10;
    int64_t n = rp->any_time ? rp->hi - rp->lo + 1 : 0, i;
    uint64_t max = 1;
    double bw;
    char t0[32], t1[32];
    time_t a, b;
    int v;

    for (i = 0; i < n; i++) {
        const uint64_t *c = rp->buckets[rp->lo - rp->base + i];

        if (c[0] + c[1] + c[2] > max)
            max = c[0] + c[1] + c[2];
    }
    bw = n ? (double)(w - left - 10) / (double)(int)n : 0;
    fprintf(f, "<svg role=\"img\" aria-label=\"decisions over time\" width=\"%d\" "
            "height=\"%d\" viewBox=\"0 0 %d %d\" xmlns=\"http://www.w3.org/2000/svg\">\n",
            w, h, w, h);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#555\"/>\n", left,
            h - bottom, w - 10, h - bottom);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"end\">%llu</text>\n",
            left - 4, top + 10, (unsigned long long)max);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"end\">0</text>\n",
            left - 4, h - bottom);
    for (i = 0; i < n; i++) {
        const uint64_t *c = rp->buckets[rp->lo - rp->base + i];
        double y = h - bottom;

        for (v = 0; v < V_COUNT; v++) {
            double bh = (double)c[v] / (double)max * (h - bottom - top);

            if (!c[v])
                continue;
            y -= bh;
            fprintf(f, "<rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                    "height=\"%.1f\" fill=\"%s\"><title>%llu %s</title></rect>\n",
                    verdicts[v], left + (double)(int)i * bw, y, bw > 2 ? bw - 1 : bw, bh,
                    colours[v],
                    (unsigned long long)c[v], verdicts[v]);
        }
    }
    if (n) {
        a = (time_t)(rp->lo * rp->width);
        b = (time_t)((rp->hi + 1) * rp->width);
        strftime(t0, sizeof(t0), "%Y-%m-%d %H:%M", gmtime(&a));
        strftime(t1, sizeof(t1), "%Y-%m-%d %H:%M", gmtime(&b));
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\">%s</text>\n", left, h - 10, t0);
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"end\">%s UTC</text>\n",
                w - 10, h - 10, t1);
    }
    fprintf(f, "</svg>\n<p class=\"legend\">");
    for (v = 0; v < V_COUNT; v++)
        fprintf(f, "<span class=\"key\" style=\"background:%s\"></span>%s ", colours[v],
                verdicts[v]);
    fprintf(f, "&#8212; buckets of %lld s</p>\n", (long long)rp->width);
}

/* A horizontal bar chart of the top rows of T by the field at KEY. */
static void html_bars(FILE *f, const struct table *t, size_t key, const char *id,
                      const char *what, bool bytes)
{
    struct sorted s;
    size_t i, n = 0;
    uint64_t max;
    char label[CTL_BYTES_MAX];

    if (sorted(t, key, &s) < 0)
        return;
    while (n < s.n && n < REPORT_TOP && *(const uint64_t *)((const char *)s.v[n] + key))
        n++;
    max = n ? *(const uint64_t *)((const char *)s.v[0] + key) : 1;
    fprintf(f, "<section id=\"%s\"><h2>Top destinations by %s</h2>\n", id, what);
    if (!n)
        fprintf(f, "<p>none</p>\n");
    else
        fprintf(f, "<svg role=\"img\" aria-label=\"top destinations by %s\" width=\"860\" "
                "height=\"%zu\" xmlns=\"http://www.w3.org/2000/svg\">\n", what, n * 22 + 4);
    for (i = 0; i < n; i++) {
        uint64_t v = *(const uint64_t *)((const char *)s.v[i] + key);
        double bw = (double)v / (double)max * 420;

        if (bytes)
            ctl_bytes(v, label);
        else
            snprintf(label, sizeof(label), "%llu", (unsigned long long)v);
        fprintf(f, "<text x=\"0\" y=\"%zu\" class=\"name\">", i * 22 + 16);
        esc(f, s.v[i]->name);
        fprintf(f, "</text><rect x=\"330\" y=\"%zu\" width=\"%.1f\" height=\"16\" "
                "fill=\"#2c6fbb\"/><text x=\"%.1f\" y=\"%zu\" class=\"axis\">%s</text>\n",
                i * 22 + 3, bw < 1 ? 1 : bw, 336 + bw, i * 22 + 16, label);
    }
    if (n)
        fprintf(f, "</svg>\n");
    fprintf(f, "</section>\n");
    free(s.v);
}

static void print_html(FILE *f, const struct report *rp)
{
    struct sorted s;
    size_t i, k;
    char up[CTL_BYTES_MAX], down[CTL_BYTES_MAX];

    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">\n<title>sluice report</title>\n<style>\n"
            "body{font:14px/1.4 sans-serif;margin:2em;color:#222;max-width:900px}\n"
            "h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}\n"
            "table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;"
            "text-align:left}td.n{text-align:right}\n"
            ".axis{font-size:11px;fill:#555}.name{font-size:12px}\n"
            ".key{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}\n"
            "td{vertical-align:top}code{font-size:12px;word-break:break-all}\n"
            ".ts{white-space:nowrap}</style></head><body>\n");
    fprintf(f, "<h1>sluice report</h1>\n<section id=\"summary\"><p>%llu records from ",
            (unsigned long long)rp->records);
    esc(f, rp->first[0] ? rp->first : "-");
    fprintf(f, " to ");
    esc(f, rp->last[0] ? rp->last : "-");
    fprintf(f, "; %llu lines were not flow records and were skipped.</p></section>\n",
            (unsigned long long)rp->bad);
    fprintf(f, "<section id=\"timeline\"><h2>Decisions over time</h2>\n");
    html_timeline(f, rp);
    fprintf(f, "</section>\n");
    html_bars(f, &rp->hosts, offsetof(struct stat_row, conns), "top-connections",
              "connections", false);
    html_bars(f, &rp->hosts, offsetof(struct stat_row, up), "top-bytes-up", "bytes up", true);
    html_bars(f, &rp->hosts, offsetof(struct stat_row, down), "top-bytes-down", "bytes down",
              true);
    fprintf(f, "<section id=\"denials-reason\"><h2>Denials by reason</h2>\n<table>"
            "<tr><th>reason</th><th>denials</th></tr>\n");
    for (i = 1; i <= REASON_COUNT; i++)
        if (rp->by_reason[i])
            fprintf(f, "<tr><td>%s</td><td class=\"n\">%llu</td></tr>\n",
                    i < REASON_COUNT ? reason_name((enum reason)i) : "(unknown)",
                    (unsigned long long)rp->by_reason[i]);
    fprintf(f, "</table></section>\n");
    if (sorted(&rp->sandboxes, offsetof(struct stat_row, denials), &s) == 0) {
        fprintf(f, "<section id=\"denials-sandbox\"><h2>Denials by sandbox</h2>\n<table>"
                "<tr><th>sandbox</th><th>denials</th></tr>\n");
        for (i = 0; i < s.n && s.v[i]->denials; i++) {
            fprintf(f, "<tr><td>");
            esc(f, s.v[i]->name);
            fprintf(f, "</td><td class=\"n\">%llu</td></tr>\n",
                    (unsigned long long)s.v[i]->denials);
        }
        fprintf(f, "</table></section>\n");
        qsort(s.v, s.n, sizeof(*s.v), cmp_names);
        fprintf(f, "<section id=\"sandboxes\"><h2>Sandboxes</h2>\n<table><tr><th>sandbox</th>"
                "<th>connections</th><th>denials</th><th>DNS</th><th>alerts</th><th>up</th>"
                "<th>down</th><th>first</th><th>last</th></tr>\n");
        for (i = 0; i < s.n; i++) {
            ctl_bytes(s.v[i]->up, up);
            ctl_bytes(s.v[i]->down, down);
            fprintf(f, "<tr><td>");
            esc(f, s.v[i]->name);
            fprintf(f, "</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td>"
                    "<td class=\"n\">%llu</td><td class=\"n\">%llu</td><td class=\"n\">%s</td>"
                    "<td class=\"n\">%s</td><td>", (unsigned long long)s.v[i]->conns,
                    (unsigned long long)s.v[i]->denials, (unsigned long long)s.v[i]->dns,
                    (unsigned long long)s.v[i]->alerts, up, down);
            esc(f, s.v[i]->first);
            fprintf(f, "</td><td>");
            esc(f, s.v[i]->last);
            fprintf(f, "</td></tr>\n");
        }
        fprintf(f, "</table></section>\n");
        free(s.v);
    }
    fprintf(f, "<section id=\"alerts\"><h2>Alerts (%llu)</h2>\n",
            (unsigned long long)rp->alerts_total);
    if (!rp->n_alerts)
        fprintf(f, "<p>none</p>\n");
    else
        fprintf(f, "<table><tr><th>time</th><th>sandbox</th><th>kind</th><th>subject</th>"
                "<th>count / threshold</th><th>evidence</th></tr>\n");
    for (i = 0; i < rp->n_alerts; i++) {
        const struct alert_row *a = &rp->alerts[i];

        fprintf(f, "<tr><td>");
        esc(f, a->ts);
        fprintf(f, "</td><td>");
        esc(f, a->sandbox);
        fprintf(f, "</td><td>");
        esc(f, a->kind);
        if (a->why[0]) {
            fprintf(f, " (");
            esc(f, a->why);
            fprintf(f, ")");
        }
        fprintf(f, "</td><td>");
        esc(f, a->subject);
        fprintf(f, "</td><td class=\"n\">%llu / %llu</td><td>", (unsigned long long)a->count,
                (unsigned long long)a->threshold);
        for (k = 0; k < a->n_samples; k++) {
            fprintf(f, "%s<code>", k ? " " : "");
            esc(f, a->samples[k]);
            fprintf(f, "</code>");
        }
        fprintf(f, "</td></tr>\n");
    }
    if (rp->n_alerts)
        fprintf(f, "</table>\n");
    fprintf(f, "</section>\n<section id=\"policies\"><h2>Policies</h2>\n<table><tr>"
            "<th>hash</th><th>records</th><th>first</th><th>last</th></tr>\n");
    for (i = 0; i < rp->n_policies; i++) {
        fprintf(f, "<tr><td><code>");
        esc(f, rp->policies[i].hash);
        fprintf(f, "</code></td><td class=\"n\">%llu</td><td>",
                (unsigned long long)rp->policies[i].records);
        esc(f, rp->policies[i].first);
        fprintf(f, "</td><td>");
        esc(f, rp->policies[i].last);
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table></section>\n</body></html>\n");
}

/* ---- the command ---- */

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, NULL, 'f'},
        {"since", required_argument, NULL, 's'},
        {"until", required_argument, NULL, 'u'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL, *format = NULL;
    struct report *rp = calloc(1, sizeof(*rp));
    FILE *f = stdout;
    int c, rc = 1, i;

    if (!rp || table_init(&rp->hosts, REPORT_HOSTS) < 0 ||
        table_init(&rp->sandboxes, REPORT_SANDBOXES) < 0) {
        fprintf(stderr, "sluicectl report: out of memory\n");
        goto out;
    }
    rp->key[0] = 0x736c75696365ull;       /* the names are the logs': no secret needed */
    rp->key[1] = 0x7265706f7274ull;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': format = optarg; break;
        case 's': rp->since = optarg; break;
        case 'u': rp->until = optarg; break;
        default: rc = LOG_EXIT_USAGE; goto out;
        }
    }
    if (!format)
        format = out ? "html" : "text";
    if (strcmp(format, "html") != 0 && strcmp(format, "text") != 0 &&
        strcmp(format, "json") != 0) {
        rc = log_usage("--format %s: one of html, text, json", format);
        goto out;
    }
    if (optind >= argc) {
        rc = log_usage("report takes at least one LOG (- for standard input)");
        goto out;
    }
    for (i = optind; i < argc; i++)
        if (flowrec_read("sluicectl report", argv[i], note, rp, &rp->bad) < 0)
            goto out;
    if (out && !(f = fopen(out, "w"))) {
        perror(out);
        goto out;
    }
    if (strcmp(format, "html") == 0)
        print_html(f, rp);
    else if (strcmp(format, "json") == 0)
        print_json(f, rp);
    else
        print_text(f, rp);
    rc = ferror(f) ? 1 : 0;
    if (f != stdout && fclose(f) != 0)
        rc = 1;
    if (rc == 0 && rp->bad)
        fprintf(stderr, "sluicectl report: %llu lines were not flow records and were skipped\n",
                (unsigned long long)rp->bad);
out:
    if (rp) {
        table_free(&rp->hosts);
        table_free(&rp->sandboxes);
    }
    free(rp);
    return rc;
}
