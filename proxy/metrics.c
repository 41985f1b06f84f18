/* Prometheus counters fed from flow records, and their text form. */
#include "metrics.h"

#include <errno.h>
#include <event2/buffer.h>
#include <string.h>

static const char *const limit_names[LIMIT_COUNT] = {
    [LIMIT_MAX_CONNECTIONS] = "max_connections",
    [LIMIT_NEW_CONNECTIONS] = "new_connections_per_second",
    [LIMIT_UPLOAD] = "upload_bytes_per_second",
    [LIMIT_DOWNLOAD] = "download_bytes_per_second",
    [LIMIT_DNS_QUERIES] = "dns_queries_per_second",
};

static const char *const protos[METRICS_PROTOS] = {"tls", "http", "tcp"};

static const char *const verdicts[METRICS_VERDICTS] = {
    [VERDICT_NONE] = "none", [VERDICT_ALLOW] = "allow", [VERDICT_DENY] = "deny",
    [VERDICT_AUDIT] = "audit",
};

/* The query types dns_type_name() names get a series each; any other is "other". */
static const char *const qtypes[METRICS_QTYPES] = {
    "A", "AAAA", "CNAME", "NS", "SOA", "PTR", "MX", "TXT", "SRV", "SVCB", "HTTPS",
    "CAA", "NULL", "ANY", "AXFR", "IXFR", "other",
};

static const double connect_bounds[METRICS_CONNECT_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

const char *metrics_limit_name(enum metrics_limit l)
{
    return l < LIMIT_COUNT ? limit_names[l] : "";
}

static size_t index_of(const char *const *set, size_t n, const char *s, size_t fallback)
{
    size_t i;

    for (i = 0; s && i < n; i++)
        if (strcmp(set[i], s) == 0)
            return i;
    return fallback;
}

void metrics_count(struct metrics *m, const struct flow_record *r)
{
    size_t v = r->verdict < METRICS_VERDICTS ? r->verdict : VERDICT_NONE;
    size_t why = r->reason < REASON_COUNT ? r->reason : REASON_NONE;

    switch (r->event) {
    case EV_FLOW_START:
    case EV_DENY:
        m->flows[v][why][index_of(protos, METRICS_PROTOS, r->proto, 2)]++;
        break;
    case EV_DNS:
        m->dns[v][index_of(qtypes, METRICS_QTYPES, r->qtype, METRICS_QTYPES - 1)]++;
        break;
    case EV_RELOAD:
        if (r->verdict == VERDICT_ALLOW)
            m->reloads_ok++;
        else
            m->reloads_failed++;
        break;
    case EV_LIMIT:
        m->rate_limited[index_of(limit_names, LIMIT_COUNT, r->limit, 0)]++;
        /* connection limits refuse a flow, the DNS limit a query: count those too */
        if (r->reason == REASON_TOO_MANY_CONNECTIONS ||
            (r->limit && strcmp(r->limit, limit_names[LIMIT_NEW_CONNECTIONS]) == 0))
            m->flows[VERDICT_DENY][why][index_of(protos, METRICS_PROTOS, r->proto, 2)]++;
        else if (r->proto && strcmp(r->proto, "dns") == 0)
            m->dns[VERDICT_DENY][index_of(qtypes, METRICS_QTYPES, r->qtype,
                                           METRICS_QTYPES - 1)]++;
        break;
    case EV_FLOW_END:
        break;
    }
}

void metrics_observe_connect(struct metrics *m, double seconds)
{
    size_t i;

    for (i = 0; i < METRICS_CONNECT_BUCKETS && seconds > connect_bounds[i]; i++)
        ;
    if (i < METRICS_CONNECT_BUCKETS)
        m->connect_le[i]++;
    m->connect_count++;
    m->connect_sum += seconds;
}

static void head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_render(const struct metrics *m, const struct metrics_gauges *g,
                   struct evbuffer *out)
{
    uint64_t cum = 0;
    size_t v, r, p, i;

    head(out, "sluice_flows_total", "counter",
         "Flow decisions (flow_start and deny records) by verdict, reason and protocol.");
    for (v = 0; v < METRICS_VERDICTS; v++)
        for (r = 0; r < REASON_COUNT; r++)
            for (p = 0; p < METRICS_PROTOS; p++)
                if (m->flows[v][r][p])
                    evbuffer_add_printf(out,
                        "sluice_flows_total{verdict=\"%s\",reason=\"%s\",proto=\"%s\"} %llu\n",
                        verdicts[v], r ? reason_name((enum reason)r) : "none", protos[p],
                        (unsigned long long)m->flows[v][r][p]);
    head(out, "sluice_active_flows", "gauge", "Open client connections, in any state.");
    evbuffer_add_printf(out, "sluice_active_flows %llu\n",
                        (unsigned long long)g->active_flows);
    head(out, "sluice_bytes_total", "counter", "Bytes relayed: up is sandbox to server.");
    evbuffer_add_printf(out, "sluice_bytes_total{direction=\"up\"} %llu\n"
                        "sluice_bytes_total{direction=\"down\"} %llu\n",
                        (unsigned long long)m->bytes_up, (unsigned long long)m->bytes_down);
    head(out, "sluice_dns_queries_total", "counter", "DNS queries by verdict and type.");
    for (v = 0; v < METRICS_VERDICTS; v++)
        for (i = 0; i < METRICS_QTYPES; i++)
            if (m->dns[v][i])
                evbuffer_add_printf(out,
                    "sluice_dns_queries_total{verdict=\"%s\",qtype=\"%s\"} %llu\n",
                    verdicts[v], qtypes[i], (unsigned long long)m->dns[v][i]);
    head(out, "sluice_policy_reloads_total", "counter", "Policy reloads by result.");
    evbuffer_add_printf(out, "sluice_policy_reloads_total{result=\"ok\"} %llu\n"
                        "sluice_policy_reloads_total{result=\"error\"} %llu\n",
                        (unsigned long long)m->reloads_ok,
                        (unsigned long long)m->reloads_failed);
    head(out, "sluice_policy_generation", "gauge", "Generation of the policy in force.");
    evbuffer_add_printf(out, "sluice_policy_generation %llu\n",
                        (unsigned long long)g->policy_generation);
    head(out, "sluice_upstream_connect_seconds", "histogram",
         "Time from connect() to an established upstream connection.");
    for (i = 0; i < METRICS_CONNECT_BUCKETS; i++) {
        cum += m->connect_le[i];
        evbuffer_add_printf(out, "sluice_upstream_connect_seconds_bucket{le=\"%g\"} %llu\n",
                            connect_bounds[i], (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "sluice_upstream_connect_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "sluice_upstream_connect_seconds_sum %.6f\n"
                        "sluice_upstream_connect_seconds_count %llu\n",
                        (unsigned long long)m->connect_count, m->connect_sum,
                        (unsigned long long)m->connect_count);
    head(out, "sluice_rate_limited_total", "counter",
         "Limit hits: connections or queries refused, flows throttled.");
    for (i = 0; i < LIMIT_COUNT; i++)
        evbuffer_add_printf(out, "sluice_rate_limited_total{limit=\"%s\"} %llu\n",
                            limit_names[i], (unsigned long long)m->rate_limited[i]);
    head(out, "process_cpu_seconds_total", "counter", "User and system CPU time.");
    evbuffer_add_printf(out, "process_cpu_seconds_total %.3f\n", g->cpu_seconds);
    if (g->rss_bytes) {
        head(out, "process_resident_memory_bytes", "gauge", "Resident memory.");
        evbuffer_add_printf(out, "process_resident_memory_bytes %llu\n",
                            (unsigned long long)g->rss_bytes);
    }
    head(out, "process_open_fds", "gauge", "Open file descriptors.");
    evbuffer_add_printf(out, "process_open_fds %llu\n", (unsigned long long)g->open_fds);
    head(out, "process_max_fds", "gauge", "The descriptor limit.");
    evbuffer_add_printf(out, "process_max_fds %llu\n", (unsigned long long)g->max_fds);
    head(out, "process_start_time_seconds", "gauge", "Start time, Unix seconds.");
    if (evbuffer_add_printf(out, "process_start_time_seconds %.3f\n", g->start_time) < 0)
        return -ENOMEM;
    return 0;
}
