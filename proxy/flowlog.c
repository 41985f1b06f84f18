/*
 * Flow-log records. One write(2) per line, to a file opened O_APPEND, so
 * lines from one process never interleave and a reader never sees half a
 * record.
 */
#include "flowlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dns_msg.h"
#include "json.h"

static const char *const events[] = {
    [EV_FLOW_START] = "flow_start", [EV_FLOW_END] = "flow_end", [EV_DENY] = "deny",
    [EV_DNS] = "dns", [EV_RELOAD] = "reload", [EV_LIMIT] = "limit", [EV_REQUEST] = "request",
    [EV_ALERT] = "alert",
};

static const char *const verdicts[] = {
    [VERDICT_NONE] = NULL, [VERDICT_ALLOW] = "allow", [VERDICT_DENY] = "deny",
    [VERDICT_AUDIT] = "audit",
};

static const char *const protos[PROTO_COUNT] = {
    [PROTO_NONE] = NULL, [PROTO_TLS] = "tls", [PROTO_HTTP] = "http", [PROTO_TCP] = "tcp",
    [PROTO_DNS] = "dns",
};

/* As the policy spells them. */
static const char *const limits[LIMIT_COUNT] = {
    [LIMIT_NONE] = NULL,
    [LIMIT_MAX_CONNECTIONS] = "max_connections",
    [LIMIT_NEW_CONNECTIONS] = "new_connections_per_second",
    [LIMIT_UPLOAD] = "upload_bytes_per_second",
    [LIMIT_DOWNLOAD] = "download_bytes_per_second",
    [LIMIT_DNS_QUERIES] = "dns_queries_per_second",
    [LIMIT_VIRTUAL_POOL] = "virtual_pool",             /* sluice-proxy --virtual-pool */
    [LIMIT_BUDGET] = "budget",
};

static const char *const alert_kinds[ALERT_COUNT] = {
    [ALERT_PORT_SCAN] = "port_scan", [ALERT_DNS_TUNNEL] = "dns_tunnel",
    [ALERT_UPLOAD_BURST] = "upload_burst", [ALERT_DENIED_BURST] = "denied_burst",
};

const char *alert_kind_name(enum alert_kind k)
{
    return k < ALERT_COUNT ? alert_kinds[k] : NULL;
}

const char *flow_proto_name(enum flow_proto p)
{
    return p < PROTO_COUNT ? protos[p] : NULL;
}

const char *flow_limit_name(enum flow_limit l)
{
    return l < LIMIT_COUNT ? limits[l] : NULL;
}

/* An alert's kind and evidence: ,"kind":K,"count":N,...,"samples":[..],"flows":[..] */
static void format_alert(struct json_out *o, const struct alert *a)
{
    size_t i;

    json_key_str(o, "kind", alert_kind_name(a->kind), 0);
    json_key_str(o, "why", a->why, 0);
    json_key_str(o, "subject", a->subject[0] ? a->subject : NULL, 0);
    json_key_u64(o, "count", a->count);
    json_key_u64(o, "threshold", a->threshold);
    json_key_u64(o, "window_ms", a->window_ms);
    json_raw(o, ",\"samples\":[", 12);
    for (i = 0; i < a->n_samples; i++) {
        if (i)
            json_raw(o, ",", 1);
        json_str(o, a->samples[i], strlen(a->samples[i]));
    }
    json_raw(o, "],\"flows\":[", 11);
    for (i = 0; i < a->n_flows; i++)
        json_printf(o, "%s%llu", i ? "," : "", (unsigned long long)a->flows[i]);
    json_raw(o, "]", 1);
}

size_t flowlog_format(char *buf, size_t cap, const struct flow_record *r)
{
    struct json_out o = {.p = buf, .cap = cap};
    struct tm tm;
    char ts[32], qtype[8];

    gmtime_r(&r->ts.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    json_printf(&o, "{\"ts\":\"%s.%03ldZ\"", ts, r->ts.tv_nsec / 1000000);
    json_key_str(&o, "sandbox", r->sandbox ? r->sandbox : "", 0);
    json_key_str(&o, "event", events[r->event], 0);
    if (r->flow)
        json_key_u64(&o, "flow", r->flow);
    json_key_str(&o, "proto", flow_proto_name(r->proto), 0);
    json_key_str(&o, "src", r->src, 0);
    json_key_str(&o, "orig_dst", r->orig_dst, 0);
    json_key_str(&o, "host", r->host, r->host_len);
    if (r->port)
        json_key_u64(&o, "port", r->port);
    json_key_str(&o, "rule", r->rule, 0);
    json_key_str(&o, "method", r->method, 0);
    if (r->path)
        json_key_str(&o, "path", r->path,
                     r->path_len < FLOWLOG_PATH_MAX ? r->path_len : FLOWLOG_PATH_MAX);
    if (r->status)
        json_key_u64(&o, "status", r->status);
    json_key_str(&o, "verdict", verdicts[r->verdict], 0);
    if (r->reason != REASON_NONE)
        json_key_str(&o, "reason", reason_name(r->reason), 0);
    json_key_str(&o, "upstream", r->upstream, 0);
    json_key_str(&o, "injected", r->injected, 0);
    if (r->has_bytes) {
        json_key_u64(&o, "bytes_up", r->bytes_up);
        json_key_u64(&o, "bytes_down", r->bytes_down);
        json_key_u64(&o, "duration_ms", r->duration_ms);
    }
    json_key_str(&o, "qname", r->qname, r->qname_len);
    if (r->has_qtype)
        json_key_str(&o, "qtype", dns_type_name(r->qtype, qtype), 0);
    json_key_str(&o, "rcode", r->rcode, 0);
    json_key_str(&o, "limit", flow_limit_name(r->limit), 0);
    if (r->suppressed)
        json_key_u64(&o, "suppressed", r->suppressed);
    json_key_str(&o, "error", r->error, 0);
    if (r->alert)
        format_alert(&o, r->alert);
    json_key_str(&o, "policy", r->policy, 0);
    /* a record cut by the cap is still one valid line */
    if (o.n + 3 > cap)
        o.n = 0, json_raw(&o, "{\"event\":\"truncated\"", 20);
    o.p[o.n++] = '}';
    o.p[o.n++] = '\n';
    o.p[o.n] = '\0';
    return o.n;
}

struct flowlog {
    char *path;                 /* NULL for standard output */
    int fd;
};

static int open_log(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

struct flowlog *flowlog_open(const char *path)
{
    struct flowlog *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    if (strcmp(path, "-") == 0) {
        l->fd = STDOUT_FILENO;
        return l;
    }
    l->path = strdup(path);
    l->fd = l->path ? open_log(path) : -1;
    if (l->fd < 0) {
        int e = errno;

        flowlog_close(l);
        errno = e;
        return NULL;
    }
    return l;
}

int flowlog_reopen(struct flowlog *l)
{
    int fd;

    if (!l->path)
        return 0;
    fd = open_log(l->path);
    if (fd < 0)
        return -errno;
    close(l->fd);
    l->fd = fd;
    return 0;
}

void flowlog_close(struct flowlog *l)
{
    if (!l)
        return;
    if (l->path && l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l);
}

int flowlog_write(struct flowlog *l, const struct flow_record *r)
{
    char line[FLOWLOG_LINE_MAX];
    size_t n = flowlog_format(line, sizeof(line), r);
    ssize_t w;

    do
        w = write(l->fd, line, n);
    while (w < 0 && errno == EINTR);
    return w == (ssize_t)n ? 0 : -EIO;
}
