/* Prometheus counters fed from flow records, and their text form. */
#include "metrics.h"

#include <errno.h>
#include <event2/buffer.h>

#include "alerts.h"
#include "dns_msg.h"

/* The protocols a TCP flow is counted under (index: proto - PROTO_TLS). */
static const enum flow_proto protos[METRICS_PROTOS] = {PROTO_TLS, PROTO_HTTP, PROTO_TCP};

static const char *const verdicts[METRICS_VERDICTS] = {
    [VERDICT_NONE] = "none", [VERDICT_ALLOW] = "allow", [VERDICT_DENY] = "deny",
    [VERDICT_AUDIT] = "audit",
};

/* The query types dns_type_name() names get a series each; any other is "other",
 * the last. */
static const uint16_t qtypes[METRICS_QTYPES - 1] = {
    DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_CNAME, DNS_TYPE_NS, DNS_TYPE_SOA, DNS_TYPE_PTR,
    DNS_TYPE_MX, DNS_TYPE_TXT, DNS_TYPE_SRV, DNS_TYPE_SVCB, DNS_TYPE_HTTPS, DNS_TYPE_CAA,
    DNS_TYPE_NULL, DNS_TYPE_ANY, DNS_TYPE_AXFR, DNS_TYPE_IXFR,
};

static const double connect_bounds[METRICS_CONNECT_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

/* A TCP flow's protocol index; anything else counts as tcp. */
static size_t proto_index(enum flow_proto p)
{
    return p == PROTO_TLS || p == PROTO_HTTP ? (size_t)(p - PROTO_TLS) : 2;
}

static size_t qtype_index(uint16_t type)
{
    size_t i;

    for (i = 0; i < METRICS_QTYPES - 1 && qtypes[i] != type; i++)
        ;
    return i;                           /* METRICS_QTYPES - 1: "other" */
}

void metrics_count(struct metrics *m, const struct flow_record *r)
{
    size_t v = r->verdict < METRICS_VERDICTS ? r->verdict : VERDICT_NONE;
    size_t why = r->reason < REASON_COUNT ? r->reason : REASON_NONE;

    switch (r->event) {
    case EV_FLOW_START:
    case EV_DENY:
        m->flows[v][why][proto_index(r->proto)]++;
        break;
    case EV_DNS:
        m->dns[v][qtype_index(r->qtype)]++;
        break;
    case EV_RELOAD:
        if (r->verdict == VERDICT_ALLOW)
            m->reloads_ok++;
        else
            m->reloads_failed++;
        break;
    case EV_LIMIT:
        if (r->limit < LIMIT_COUNT)
            m->rate_limited[r->limit]++;
        /* connection limits refuse a flow, the DNS limit a query: count those too */
        if (r->limit == LIMIT_MAX_CONNECTIONS || r->limit == LIMIT_NEW_CONNECTIONS)
            m->flows[VERDICT_DENY][why][proto_index(r->proto)]++;
        else if (r->limit == LIMIT_DNS_QUERIES || r->limit == LIMIT_VIRTUAL_POOL)
            m->dns[VERDICT_DENY][qtype_index(r->qtype)]++;
        break;
    case EV_REQUEST:
        m->requests[v][why]++;
        break;
    case EV_ALERT:
        if (r->alert && r->alert->kind < METRICS_ALERT_KINDS)
            m->alerts[r->alert->kind]++;
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
    char other[8];

    head(out, "sluice_flows_total", "counter",
         "Flow decisions (flow_start and deny records) by verdict, reason and protocol.");
    for (v = 0; v < METRICS_VERDICTS; v++)
        for (r = 0; r < REASON_COUNT; r++)
            for (p = 0; p < METRICS_PROTOS; p++)
                if (m->flows[v][r][p])
                    evbuffer_add_printf(out,
                        "sluice_flows_total{verdict=\"%s\",reason=\"%s\",proto=\"%s\"} %llu\n",
                        verdicts[v], r ? reason_name((enum reason)r) : "none",
                        flow_proto_name(protos[p]),
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
                    verdicts[v],
                    i < METRICS_QTYPES - 1 ? dns_type_name(qtypes[i], other) : "other",
                    (unsigned long long)m->dns[v][i]);
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
    for (i = LIMIT_NONE + 1; i < LIMIT_COUNT; i++)
        evbuffer_add_printf(out, "sluice_rate_limited_total{limit=\"%s\"} %llu\n",
                            flow_limit_name((enum flow_limit)i),
                            (unsigned long long)m->rate_limited[i]);
    head(out, "sluice_alerts_total", "counter",
         "Alerts fired (alert records) by detector.");
    for (i = 0; i < METRICS_ALERT_KINDS; i++)
        evbuffer_add_printf(out, "sluice_alerts_total{kind=\"%s\"} %llu\n",
                            alert_kind_name((enum alert_kind)i),
                            (unsigned long long)m->alerts[i]);
    head(out, "sluice_requests_total", "counter",
         "HTTP requests on inspected flows (request records) by verdict and reason.");
    for (v = 0; v < METRICS_VERDICTS; v++)
        for (r = 0; r < REASON_COUNT; r++)
            if (m->requests[v][r])
                evbuffer_add_printf(out,
                                    "sluice_requests_total{verdict=\"%s\",reason=\"%s\"} %llu\n",
                                    verdicts[v], r ? reason_name((enum reason)r) : "none",
                                    (unsigned long long)m->requests[v][r]);
    if (g->inspect) {
        head(out, "sluice_inspect_leaf_certs_total", "counter",
             "Leaf certificates served to the sandbox: from the cache, or minted.");
        evbuffer_add_printf(out, "sluice_inspect_leaf_certs_total{result=\"cached\"} %llu\n"
                            "sluice_inspect_leaf_certs_total{result=\"minted\"} %llu\n",
                            (unsigned long long)g->leaf_cached,
                            (unsigned long long)g->leaf_minted);
        head(out, "sluice_inspect_leaf_mint_seconds_total", "counter",
             "Time spent minting leaf certificates.");
        evbuffer_add_printf(out, "sluice_inspect_leaf_mint_seconds_total %.6f\n",
                            g->leaf_mint_seconds);
    }
    if (g->virtual_pool) {
        head(out, "sluice_virtual_addresses", "gauge",
             "dns.answers: virtual: names holding an address, held by a flow or idle.");
        evbuffer_add_printf(out, "sluice_virtual_addresses{state=\"in_use\"} %llu\n"
                            "sluice_virtual_addresses{state=\"idle\"} %llu\n",
                            (unsigned long long)g->virtual_in_use,
                            (unsigned long long)(g->virtual_mapped - g->virtual_in_use));
        head(out, "sluice_virtual_address_evictions_total", "counter",
             "Idle mappings whose address went to another name (the pool was full).");
        evbuffer_add_printf(out, "sluice_virtual_address_evictions_total %llu\n",
                            (unsigned long long)g->virtual_evictions);
    }
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

_Static_assert(METRICS_ALERT_KINDS == ALERT_COUNT, "one counter per alert kind");
