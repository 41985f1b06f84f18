/*
 * The sandbox's recent denials: a ring of fixed entries (no allocation per
 * record once made), and the page that shows them.
 */
#include "feedback.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hostname.h"
#include "json.h"
#include "policy.h"
#include "reason.h"

struct entry {
    struct timespec ts;
    enum flow_proto proto;
    char host[HOSTNAME_MAX + 1];    /* the name asked (SNI, Host, query), printable ASCII */
    uint16_t port;
    enum reason reason;
    unsigned line;                  /* the deciding rule's line, 0: none */
    char file[64];                  /* and the last part of its file's name */
};

struct feedback {
    size_t max, n, next;            /* entries kept, held, and where the next one goes */
    struct entry e[];
};

struct feedback *feedback_new(size_t max)
{
    struct feedback *f = calloc(1, sizeof(*f) + max * sizeof(struct entry));

    if (f)
        f->max = max;
    return f;
}

void feedback_free(struct feedback *f)
{
    free(f);
}

/* The rule's line and file's last part from its "FILE:LINE" into E (not the directories:
 * the page shows no more of the policy than that). */
static void note_rule(struct entry *e, const char *rule)
{
    const char *colon = rule ? strrchr(rule, ':') : NULL, *base;

    e->line = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
    e->file[0] = '\0';
    if (!e->line)
        return;
    base = policy_file_base(rule);
    hostname_printable(e->file, sizeof(e->file), base, (size_t)(colon - base));
}

void feedback_note(struct feedback *f, const struct flow_record *r)
{
    const char *host = r->event == EV_DNS ? r->qname : r->host;
    size_t len = r->event == EV_DNS ? r->qname_len : r->host_len;
    struct entry *e;

    if (!f || r->verdict != VERDICT_DENY ||
        (r->event != EV_DENY && r->event != EV_DNS && r->event != EV_REQUEST))
        return;
    if (r->event == EV_DNS && r->reason == REASON_NONE)
        return;                     /* NOTIMP for ANY and the like: no policy said no */
    e = &f->e[f->next];
    f->next = (f->next + 1) % f->max;
    if (f->n < f->max)
        f->n++;
    e->ts = r->ts;
    e->proto = r->proto;
    e->port = r->port;
    e->reason = r->reason;
    note_rule(e, r->rule);
    if (host && len == 0)
        len = strlen(host);
    hostname_printable(e->host, sizeof(e->host), host, len);   /* hostile bytes: '?' */
}

static void entry_hint(const struct entry *e, char *out, size_t cap)
{
    if (e->line)
        snprintf(out, cap, "%s (the rule at line %u of %s)", reason_describe(e->reason),
                 e->line, e->file);
    else
        snprintf(out, cap, "%s", reason_describe(e->reason));
}

/* Whether the N bytes at P are LOWER (lowercase) in any case; P is not a string. */
static bool same_caseless(const uint8_t *p, const char *lower, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]) != (uint8_t)lower[i])
            return false;
    return true;
}

bool feedback_wants_json(const uint8_t *buf, size_t len)
{
    static const char key[] = "\naccept:";
    size_t i;

    for (i = 0; i + sizeof(key) - 1 < len; i++) {
        const uint8_t *v, *eol;

        if (!same_caseless(buf + i, key, sizeof(key) - 1))
            continue;
        v = buf + i + sizeof(key) - 1;
        eol = memchr(v, '\n', len - (size_t)(v - buf));
        if (eol && memmem(v, (size_t)(eol - v), "application/json", 16))
            return true;
    }
    return false;
}

int feedback_page(const struct feedback *f, const char *policy, bool json, char **out,
                  size_t *len)
{
    struct json_out o = {.grow = true};
    char head[256], hint[256], ts[32];
    size_t i, n = f ? f->n : 0;
    int hlen;

    if (json) {
        json_printf(&o, "{\"policy\":\"%s\",\"denials\":[", policy);
    } else {
        json_printf(&o, "sluice: the last %zu denials of this sandbox, newest first "
                    "(policy %s)\n", n, policy);
    }
    for (i = 0; i < n; i++) {
        const struct entry *e = &f->e[(f->next + f->max - 1 - i) % f->max];
        struct tm tm;

        gmtime_r(&e->ts.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        entry_hint(e, hint, sizeof(hint));
        if (json) {
            json_printf(&o, "%s{\"ts\":\"%s\"", i ? "," : "", ts);
            json_key_str(&o, "proto", flow_proto_name(e->proto), 0);
            json_key_str(&o, "host", e->host[0] ? e->host : NULL, 0);
            if (e->port)
                json_key_u64(&o, "port", e->port);
            json_key_str(&o, "reason", reason_name(e->reason), 0);
            json_key_str(&o, "hint", hint, 0);
            json_printf(&o, "}");
        } else {
            json_printf(&o, "%s  %-4s  ", ts, flow_proto_name(e->proto));
            json_raw(&o, e->host[0] ? e->host : "-", e->host[0] ? strlen(e->host) : 1);
            if (e->port)
                json_printf(&o, ":%u", e->port);
            json_printf(&o, "  %s  ", reason_name(e->reason));
            json_raw(&o, hint, strlen(hint));
            json_raw(&o, "\n", 1);
        }
    }
    if (json)
        json_printf(&o, "]}\n");
    if (o.failed) {
        free(o.p);
        return -ENOMEM;
    }
    hlen = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
                    "Content-Length: %zu\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                    json ? "application/json" : "text/plain; charset=us-ascii", o.n);
    *out = malloc((size_t)hlen + o.n);
    if (!*out) {
        free(o.p);
        return -ENOMEM;
    }
    memcpy(*out, head, (size_t)hlen);
    memcpy(*out + hlen, o.p, o.n);
    *len = (size_t)hlen + o.n;
    free(o.p);
    return 0;
}
