/*
 * The proxy's Prometheus metrics (docs/design.md; names: README): counters fed from the flow
 * records themselves, so the metrics and the log always tell the same story,
 * and the text exposition format. Every label comes from a closed set (no
 * host names), so the number of series stays bounded.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "flowlog.h"
#include "reason.h"

struct evbuffer;

#define METRICS_PROTOS 3            /* tls, http, tcp */
#define METRICS_VERDICTS 4          /* indexed by enum flow_verdict */
#define METRICS_QTYPES 17           /* the named query types, then "other" */
#define METRICS_CONNECT_BUCKETS 13
#define METRICS_ALERT_KINDS 4       /* ALERT_COUNT (alerts.h) */

struct metrics {
    uint64_t flows[METRICS_VERDICTS][REASON_COUNT][METRICS_PROTOS];
    uint64_t bytes_up, bytes_down;
    uint64_t dns[METRICS_VERDICTS][METRICS_QTYPES];
    uint64_t reloads_ok, reloads_failed;
    uint64_t connect_le[METRICS_CONNECT_BUCKETS];   /* not cumulative; summed on output */
    uint64_t connect_count;
    double connect_sum;
    uint64_t rate_limited[LIMIT_COUNT];             /* indexed by enum flow_limit */
    uint64_t requests[METRICS_VERDICTS][REASON_COUNT];  /* inspected HTTP requests */
    uint64_t alerts[METRICS_ALERT_KINDS];               /* indexed by enum alert_kind */
};

/* What the process knows at scrape time, beside the counters. */
struct metrics_gauges {
    uint64_t active_flows;
    uint64_t policy_generation;
    double cpu_seconds;
    uint64_t rss_bytes;             /* 0: unknown, left out */
    uint64_t open_fds, max_fds;
    double start_time;              /* Unix time */
    bool inspect;                   /* inspect mode is configured: its leaf counters */
    uint64_t leaf_cached, leaf_minted;
    double leaf_mint_seconds;
    bool virtual_pool;              /* dns.answers: virtual has a pool: its gauges */
    uint64_t virtual_mapped, virtual_in_use, virtual_evictions;
};

/* Counts one flow-log record (flow_start, deny, dns, reload, limit, request). */
void metrics_count(struct metrics *m, const struct flow_record *r);

void metrics_observe_connect(struct metrics *m, double seconds);

/* Appends the text exposition format (version 0.0.4) to OUT; -ENOMEM on failure. */
int metrics_render(const struct metrics *m, const struct metrics_gauges *g,
                   struct evbuffer *out);

#endif
