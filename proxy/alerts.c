/*
 * The detectors (alerts.h). Distinct things are counted in fixed open-
 * addressing sets of SipHash keys, sized from the thresholds and never
 * filled past them: once a count reaches its threshold nothing more is added
 * in that window, so a flood of new keys costs no memory.
 */
#include "alerts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostname.h"
#include "psl.h"
#include "siphash.h"

/* The distinct keys of one window: at most LIMIT of them, in twice the room. */
struct keyset {
    uint64_t *v;
    uint32_t mask, n, limit;
};

struct samples {
    char s[ALERT_SAMPLES][ALERT_SAMPLE_MAX];
    size_t n_s;
    uint64_t flows[ALERT_SAMPLES];
    size_t n_f;
};

struct window {
    uint64_t start;
    bool live;
};

struct parent {                     /* dns_tunnel: one registrable domain */
    uint64_t key;                   /* 0: a free slot */
    struct window w;
    uint32_t names, encoded;
    struct keyset seen;
    char name[ALERT_SAMPLE_MAX];
    struct samples smp;
};

struct dest {                       /* upload_burst: one destination */
    uint64_t key;
    struct window w;
    uint64_t bytes;
    char name[ALERT_SAMPLE_MAX];
    uint64_t flows[ALERT_SAMPLES];
    size_t n_f;
};

struct alerts {
    struct policy_alerts cfg;
    uint64_t key[2];
    uint64_t quiet_until[ALERT_COUNT];  /* once per window per kind */
    struct {
        struct window w;
        struct keyset seen;
        struct samples smp;
    } scan;
    struct {
        struct window w;
        uint64_t n;
        struct samples smp;
    } denied;
    struct parent parents[ALERT_PARENTS];
    struct dest dests[ALERT_DESTS];
    size_t memory;
};

/* ---- building blocks ---- */

static bool keyset_init(struct keyset *s, uint32_t limit, size_t *memory)
{
    uint32_t cap = 4;

    while (cap < 2 * limit)
        cap *= 2;
    s->v = calloc(cap, sizeof(*s->v));
    s->mask = cap - 1;
    s->n = 0;
    s->limit = limit;
    *memory += cap * sizeof(*s->v);
    return s->v != NULL;
}

static void keyset_clear(struct keyset *s)
{
    if (s->n)
        memset(s->v, 0, ((size_t)s->mask + 1) * sizeof(*s->v));
    s->n = 0;
}

/* Adds K; true when it was not there. Nothing is added once LIMIT keys are. */
static bool keyset_add(struct keyset *s, uint64_t k)
{
    uint32_t i;

    k |= 1;                         /* 0 marks a free slot */
    for (i = (uint32_t)k & s->mask; s->v[i]; i = (i + 1) & s->mask)
        if (s->v[i] == k)
            return false;
    if (s->n >= s->limit)
        return false;
    s->v[i] = k;
    s->n++;
    return true;
}

/* True when a new window begins at NOW (the state it counts must be reset). */
static bool window_roll(struct window *w, uint32_t len, uint64_t now)
{
    if (w->live && now - w->start < len)
        return false;
    w->start = now;
    w->live = true;
    return true;
}

/* S's text, printable ASCII only, cut to ALERT_SAMPLE_MAX - 1 (evidence, not data). */
static void copy_text(char out[ALERT_SAMPLE_MAX], const char *s, size_t len)
{
    hostname_printable(out, ALERT_SAMPLE_MAX, s, len);
}

/* Adds FLOW to the first ALERT_SAMPLES distinct ones in V (*N of them). */
static void add_flow(uint64_t *v, size_t *n, uint64_t flow)
{
    size_t i;

    if (!flow)
        return;
    for (i = 0; i < *n; i++)
        if (v[i] == flow)
            return;
    if (*n < ALERT_SAMPLES)
        v[(*n)++] = flow;
}

static void sample(struct samples *smp, const char *text, size_t len, uint64_t flow)
{
    if (text && smp->n_s < ALERT_SAMPLES)
        copy_text(smp->s[smp->n_s++], text, len);
    add_flow(smp->flows, &smp->n_f, flow);
}

/* Whether KIND may fire at NOW; if so, it is quiet for its window from now on. */
static bool may_fire(struct alerts *a, enum alert_kind kind, uint32_t window, uint64_t now)
{
    if (now < a->quiet_until[kind])
        return false;
    a->quiet_until[kind] = now + window;
    return true;
}

static void fill(struct alert *out, enum alert_kind kind, uint64_t count, uint64_t threshold,
                 uint32_t window, const char *subject, const char *why,
                 const struct samples *smp)
{
    memset(out, 0, sizeof(*out));
    out->kind = kind;
    out->count = count;
    out->threshold = threshold;
    out->window_ms = window;
    if (subject)
        copy_text(out->subject, subject, strlen(subject));
    out->why = why;
    if (smp) {
        memcpy(out->samples, smp->s, sizeof(out->samples));
        out->n_samples = smp->n_s;
        memcpy(out->flows, smp->flows, sizeof(out->flows));
        out->n_flows = smp->n_f;
    }
}

/* C in lower case (ASCII: names on the wire differ only there). */
static char fold(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

/* The key of LEN bytes of S, case folded (names differ only in case on the wire). */
static uint64_t key_of(const struct alerts *a, const char *s, size_t len)
{
    uint8_t low[HOSTNAME_MAX + 8];
    size_t i;

    if (len > sizeof(low))
        len = sizeof(low);
    for (i = 0; i < len; i++)
        low[i] = (uint8_t)fold(s[i]);
    return siphash24(a->key, low, len);
}

/* ---- making ---- */

struct alerts *alerts_new(const struct policy_alerts *cfg, const uint64_t key[2])
{
    struct alerts *a = calloc(1, sizeof(*a));
    uint32_t per_parent;
    size_t i;

    if (!a)
        return NULL;
    a->cfg = *cfg;
    a->key[0] = key[0];
    a->key[1] = key[1];
    a->memory = sizeof(*a);
    per_parent = cfg->dns_tunnel.names + cfg->dns_tunnel.encoded;
    if (!keyset_init(&a->scan.seen, cfg->port_scan.ports, &a->memory))
        goto fail;
    for (i = 0; i < ALERT_PARENTS; i++)
        if (!keyset_init(&a->parents[i].seen, per_parent, &a->memory))
            goto fail;
    return a;
fail:
    alerts_free(a);
    return NULL;
}

void alerts_free(struct alerts *a)
{
    size_t i;

    if (!a)
        return;
    free(a->scan.seen.v);
    for (i = 0; i < ALERT_PARENTS; i++)
        free(a->parents[i].seen.v);
    free(a);
}

bool alerts_wanted(const struct policy_alerts *cfg)
{
    return cfg->port_scan.ports || cfg->dns_tunnel.names || cfg->dns_tunnel.encoded ||
           cfg->upload_burst.bytes || cfg->upload_burst.ratio || cfg->denied_burst.denials;
}

/* Field by field: the struct has padding (before upload_burst), which memcmp
 * would compare too, and a reload would then reset detectors that did not change. */
bool alerts_same(const struct alerts *a, const struct policy_alerts *cfg)
{
    const struct policy_alerts *o = &a->cfg;

    return o->port_scan.ports == cfg->port_scan.ports &&
           o->port_scan.window_ms == cfg->port_scan.window_ms &&
           o->dns_tunnel.names == cfg->dns_tunnel.names &&
           o->dns_tunnel.encoded == cfg->dns_tunnel.encoded &&
           o->dns_tunnel.window_ms == cfg->dns_tunnel.window_ms &&
           o->dns_tunnel.label_length == cfg->dns_tunnel.label_length &&
           o->dns_tunnel.entropy_centi == cfg->dns_tunnel.entropy_centi &&
           o->upload_burst.bytes == cfg->upload_burst.bytes &&
           o->upload_burst.window_ms == cfg->upload_burst.window_ms &&
           o->upload_burst.ratio == cfg->upload_burst.ratio &&
           o->upload_burst.ratio_after == cfg->upload_burst.ratio_after &&
           o->denied_burst.denials == cfg->denied_burst.denials &&
           o->denied_burst.window_ms == cfg->denied_burst.window_ms;
}

size_t alerts_memory(const struct alerts *a)
{
    return a->memory;
}

/* ---- detectors ---- */

/* Shannon entropy of a label in hundredths of a bit per character, case folded. */
static unsigned label_entropy_centi(const char *s, size_t len)
{
    unsigned count[256] = {0};
    double h = 0;
    size_t i;

    for (i = 0; i < len; i++)
        count[(uint8_t)fold(s[i])]++;
    for (i = 0; i < 256; i++)
        if (count[i])
            h -= (double)count[i] / (double)len * log2((double)count[i] / (double)len);
    return (unsigned)(h * 100 + 0.5);
}

/*
 * Encoded data in a label: long, no hyphen, digits in a tenth of it or more, and
 * characters spread evenly. Hex, base32 and base36 look like that; words and
 * dash-joined names (my-service-prod-eu-west-1) are as even but have no digits
 * or have hyphens, and a 32-digit hex label has about 3.5 bits per character.
 */
static bool label_encoded(const struct policy_alerts *cfg, const char *s, size_t len)
{
    size_t digits = 0, i;

    if (len < cfg->dns_tunnel.label_length)
        return false;
    for (i = 0; i < len; i++) {
        if (s[i] == '-')
            return false;
        digits += s[i] >= '0' && s[i] <= '9';
    }
    return digits * 10 >= len && label_entropy_centi(s, len) >= cfg->dns_tunnel.entropy_centi;
}

bool alerts_label_encoded(const struct policy_alerts *cfg, const char *name, size_t len)
{
    size_t start = 0, i;

    for (i = 0; i <= len; i++) {
        if (i < len && name[i] != '.')
            continue;
        if (label_encoded(cfg, name + start, i - start))
            return true;
        start = i + 1;
    }
    return false;
}

static bool port_scan(struct alerts *a, const struct flow_record *r, uint64_t now,
                      struct alert *out)
{
    const uint32_t thr = a->cfg.port_scan.ports, win = a->cfg.port_scan.window_ms;
    char dst[HOSTNAME_MAX + 8];
    int n;

    if (!thr)
        return false;
    if (r->orig_dst)
        n = snprintf(dst, sizeof(dst), "%s", r->orig_dst);
    else
        n = snprintf(dst, sizeof(dst), "%.*s:%u", r->host ? (int)(r->host_len ? r->host_len
                     : strlen(r->host)) : 1, r->host ? r->host : "-", r->port);
    if (n < 0)
        return false;
    if ((size_t)n >= sizeof(dst))
        n = (int)sizeof(dst) - 1;
    if (window_roll(&a->scan.w, win, now)) {
        keyset_clear(&a->scan.seen);
        memset(&a->scan.smp, 0, sizeof(a->scan.smp));
    }
    if (keyset_add(&a->scan.seen, key_of(a, dst, (size_t)n)))
        sample(&a->scan.smp, dst, (size_t)n, r->flow);
    if (a->scan.seen.n < thr || !may_fire(a, ALERT_PORT_SCAN, win, now))
        return false;
    fill(out, ALERT_PORT_SCAN, a->scan.seen.n, thr, win, NULL, NULL, &a->scan.smp);
    return true;
}

static bool denied_burst(struct alerts *a, const struct flow_record *r, uint64_t now,
                         struct alert *out)
{
    const uint32_t thr = a->cfg.denied_burst.denials, win = a->cfg.denied_burst.window_ms;
    const char *host = r->event == EV_DNS ? r->qname : r->host ? r->host : r->orig_dst;
    size_t len = r->event == EV_DNS ? r->qname_len : r->host ? r->host_len : 0;

    if (!thr)
        return false;
    if (window_roll(&a->denied.w, win, now)) {
        a->denied.n = 0;
        memset(&a->denied.smp, 0, sizeof(a->denied.smp));
    }
    a->denied.n++;
    if (a->denied.smp.n_s < ALERT_SAMPLES) {  /* "reason host" */
        char *t = a->denied.smp.s[a->denied.smp.n_s++];
        size_t n = (size_t)snprintf(t, ALERT_SAMPLE_MAX, "%s ", reason_name(r->reason));

        if (host && !len)
            len = strlen(host);
        if (!hostname_printable(t + n, ALERT_SAMPLE_MAX - n, host, len))
            snprintf(t + n, ALERT_SAMPLE_MAX - n, "-");
    }
    add_flow(a->denied.smp.flows, &a->denied.smp.n_f, r->flow);
    if (a->denied.n < thr || !may_fire(a, ALERT_DENIED_BURST, win, now))
        return false;
    fill(out, ALERT_DENIED_BURST, a->denied.n, thr, win, NULL, NULL, &a->denied.smp);
    return true;
}

/* The slot for domain KEY: its own, a free one, one whose window ended, or the one
 * with the least evidence (a flood of other domains cannot push a tunnel out). */
static struct parent *parent_slot(struct alerts *a, uint64_t key, uint64_t now)
{
    struct parent *victim = NULL;
    size_t i;

    for (i = 0; i < ALERT_PARENTS; i++)
        if (a->parents[i].key == key)
            return &a->parents[i];
    for (i = 0; i < ALERT_PARENTS; i++) {
        struct parent *p = &a->parents[i];

        if (!p->key || now - p->w.start >= a->cfg.dns_tunnel.window_ms) {
            victim = p;
            break;
        }
        if (!victim || p->names + p->encoded < victim->names + victim->encoded)
            victim = p;
    }
    victim->key = key;
    victim->w.live = false;         /* a new window, and the counts with it */
    return victim;
}

static bool dns_tunnel(struct alerts *a, const struct flow_record *r, bool suspect,
                       uint64_t now, struct alert *out)
{
    const struct policy_alerts *c = &a->cfg;
    const uint32_t win = c->dns_tunnel.window_ms;
    char name[HOSTNAME_MAX + 1], parent[HOSTNAME_MAX + 1];
    size_t len = r->qname_len ? r->qname_len : strlen(r->qname), i;
    bool valid, encoded, fired;
    const char *why;
    struct parent *p;

    if (!c->dns_tunnel.names && !c->dns_tunnel.encoded)
        return false;
    valid = hostname_normalize((const uint8_t *)r->qname, len, name, &len) == HOSTNAME_OK;
    if (!valid) {                   /* a refused non-name: its bytes, case folded */
        len = len > HOSTNAME_MAX ? HOSTNAME_MAX : len;
        for (i = 0; i < len; i++)
            name[i] = fold(r->qname[i]);
        name[len] = '\0';
    }
    encoded = c->dns_tunnel.encoded && alerts_label_encoded(c, name, len);
    if (!(suspect && c->dns_tunnel.names) && !encoded)
        return false;
    if (!valid || !psl_registrable(name, parent, sizeof(parent))) {
        const char *dot = strchr(name, '.');    /* a suffix itself: the name less a label */

        snprintf(parent, sizeof(parent), "%s", dot ? dot + 1 : name);
    }
    p = parent_slot(a, key_of(a, parent, strlen(parent)), now);
    if (window_roll(&p->w, win, now)) {
        p->names = p->encoded = 0;
        keyset_clear(&p->seen);
        memset(&p->smp, 0, sizeof(p->smp));
        copy_text(p->name, parent, strlen(parent));
    }
    if (keyset_add(&p->seen, key_of(a, name, len))) {
        p->names += suspect;
        p->encoded += encoded;
        sample(&p->smp, name, len, 0);
    }
    fired = c->dns_tunnel.names && p->names >= c->dns_tunnel.names;
    why = fired ? "names" : "encoded";
    fired = fired || (c->dns_tunnel.encoded && p->encoded >= c->dns_tunnel.encoded);
    if (!fired || !may_fire(a, ALERT_DNS_TUNNEL, win, now))
        return false;
    fill(out, ALERT_DNS_TUNNEL, why[0] == 'n' ? p->names : p->encoded,
         why[0] == 'n' ? c->dns_tunnel.names : c->dns_tunnel.encoded, win, p->name, why,
         &p->smp);
    return true;
}

size_t alerts_note(struct alerts *a, const struct flow_record *r, bool wildcard,
                   uint64_t now_ms, struct alert out[ALERTS_PER_EVENT])
{
    /* audit mode lets through what enforce would deny: the same evidence */
    bool refused = r->verdict == VERDICT_DENY || r->verdict == VERDICT_AUDIT;
    size_t n = 0;

    if (!a)
        return 0;
    switch (r->event) {
    case EV_FLOW_START:
        if (r->verdict != VERDICT_AUDIT)
            break;
        /* fall through */
    case EV_DENY:
        n += port_scan(a, r, now_ms, &out[n]);
        n += denied_burst(a, r, now_ms, &out[n]);
        break;
    case EV_DNS:
        if (r->qname)
            n += dns_tunnel(a, r, refused || wildcard, now_ms, &out[n]);
        if (refused)
            n += denied_burst(a, r, now_ms, &out[n]);
        break;
    case EV_REQUEST:
        if (refused)
            n += denied_burst(a, r, now_ms, &out[n]);
        break;
    default:
        break;
    }
    return n;
}

/* The slot for destination KEY: as parent_slot(), the least bytes giving way. */
static struct dest *dest_slot(struct alerts *a, uint64_t key, const char *name, size_t len,
                              uint64_t now, uint32_t *slot)
{
    struct dest *victim = NULL;
    size_t i;

    for (i = 0; i < ALERT_DESTS; i++) {
        struct dest *d = &a->dests[i];

        if (d->key == key) {
            *slot = (uint32_t)i;
            return d;
        }
    }
    for (i = 0; i < ALERT_DESTS; i++) {
        struct dest *d = &a->dests[i];

        if (!d->key || now - d->w.start >= a->cfg.upload_burst.window_ms) {
            victim = d;
            break;
        }
        if (!victim || d->bytes < victim->bytes)
            victim = d;
    }
    memset(victim, 0, sizeof(*victim));
    victim->key = key;
    copy_text(victim->name, name, len);
    *slot = (uint32_t)(victim - a->dests);
    return victim;
}

bool alerts_upload(struct alerts *a, struct alert_flow *f, uint64_t flow, const char *dest,
                   uint64_t n, uint64_t up, uint64_t down, uint64_t now_ms, struct alert *out)
{
    const struct policy_alerts *c;
    struct dest *d;

    if (!a)
        return false;
    c = &a->cfg;
    if (c->upload_burst.bytes) {
        if (!f->key || a->dests[f->slot].key != f->key) {
            f->key = key_of(a, dest, strlen(dest)) | 1;
            d = dest_slot(a, f->key, dest, strlen(dest), now_ms, &f->slot);
        } else {
            d = &a->dests[f->slot];
        }
        if (window_roll(&d->w, c->upload_burst.window_ms, now_ms)) {
            d->bytes = 0;
            d->n_f = 0;
        }
        d->bytes += n;
        add_flow(d->flows, &d->n_f, flow);
        if (d->bytes > c->upload_burst.bytes &&
            may_fire(a, ALERT_UPLOAD_BURST, c->upload_burst.window_ms, now_ms)) {
            fill(out, ALERT_UPLOAD_BURST, d->bytes, c->upload_burst.bytes,
                 c->upload_burst.window_ms, d->name, "bytes", NULL);
            memcpy(out->flows, d->flows, sizeof(out->flows));
            out->n_flows = d->n_f;
            return true;
        }
    }
    if (c->upload_burst.ratio && !f->ratio_fired && up >= c->upload_burst.ratio_after &&
        up / c->upload_burst.ratio > down) {
        f->ratio_fired = true;      /* one flow, one verdict on its shape */
        if (!may_fire(a, ALERT_UPLOAD_BURST, c->upload_burst.window_ms, now_ms))
            return false;
        fill(out, ALERT_UPLOAD_BURST, up / (down ? down : 1), c->upload_burst.ratio,
             c->upload_burst.window_ms, NULL, "ratio", NULL);
        copy_text(out->subject, dest, strlen(dest));
        out->flows[0] = flow;
        out->n_flows = 1;
        snprintf(out->samples[0], ALERT_SAMPLE_MAX, "up %llu down %llu",
                 (unsigned long long)up, (unsigned long long)down);
        out->n_samples = 1;
        return true;
    }
    return false;
}
