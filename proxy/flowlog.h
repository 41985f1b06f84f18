/*
 * The flow log: one JSON object per line for every decision (docs/design.md, P9).
 * Formatting is a pure function into a caller's buffer; every string is
 * escaped, so a hostile SNI, Host or query name can never break a line.
 */
#ifndef SLUICE_FLOWLOG_H
#define SLUICE_FLOWLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "reason.h"

#define FLOWLOG_LINE_MAX 4096   /* one record, escaped; longer fields are cut */
#define FLOWLOG_PATH_MAX 256    /* a request's path is cut here (before escaping) */

enum flow_event { EV_FLOW_START, EV_FLOW_END, EV_DENY, EV_DNS, EV_RELOAD, EV_LIMIT, EV_REQUEST,
                  EV_ALERT };
enum flow_verdict { VERDICT_NONE, VERDICT_ALLOW, VERDICT_DENY, VERDICT_AUDIT };
/* NONE: the record has no such key */
enum flow_proto { PROTO_NONE, PROTO_TLS, PROTO_HTTP, PROTO_TCP, PROTO_DNS, PROTO_COUNT };
enum flow_limit {
    LIMIT_NONE,
    LIMIT_MAX_CONNECTIONS,
    LIMIT_NEW_CONNECTIONS,
    LIMIT_UPLOAD,
    LIMIT_DOWNLOAD,
    LIMIT_DNS_QUERIES,
    LIMIT_VIRTUAL_POOL,         /* dns.answers: virtual, every address in use or in its life */
    LIMIT_BUDGET,               /* a name's data budget (a rule's budget, or
                                   limits.upload_per_destination) is spent */
    LIMIT_COUNT
};

/* Alerts (alerts.h fires them): the kinds, and what an alert record carries. */
enum alert_kind { ALERT_PORT_SCAN, ALERT_DNS_TUNNEL, ALERT_UPLOAD_BURST, ALERT_DENIED_BURST,
                  ALERT_COUNT };

#define ALERT_SAMPLES 8             /* sample names or destinations, and flows, per alert */
#define ALERT_SAMPLE_MAX 80         /* a sample's characters, cut (printable ASCII) */

/* One firing: what its `alert` record carries. */
struct alert {
    enum alert_kind kind;
    uint64_t count;                 /* what reached the threshold (upload_burst's
                                       ratio: up over down) */
    uint64_t threshold;
    uint32_t window_ms;
    char subject[ALERT_SAMPLE_MAX]; /* the domain (dns_tunnel), the destination
                                       (upload_burst); empty otherwise */
    const char *why;                /* which test fired, when a detector has two */
    char samples[ALERT_SAMPLES][ALERT_SAMPLE_MAX];
    size_t n_samples;
    uint64_t flows[ALERT_SAMPLES];  /* the flows involved (the first ones) */
    size_t n_flows;
};

const char *alert_kind_name(enum alert_kind k);

/* A record; NULL strings and zero-valued optional fields are left out. */
struct flow_record {
    struct timespec ts;
    const char *sandbox;
    enum flow_event event;
    uint64_t flow;              /* 0: none */
    enum flow_proto proto;
    const char *src;            /* "ADDR:PORT" */
    const char *orig_dst;
    const char *host;
    size_t host_len;            /* 0: strlen(host); hosts may hold any byte */
    uint16_t port;
    const char *rule;           /* "FILE:LINE" */
    enum flow_verdict verdict;
    enum reason reason;
    const char *upstream;
    bool has_bytes;             /* flow_end: bytes and duration are present */
    uint64_t bytes_up, bytes_down, duration_ms;
    const char *qname;
    size_t qname_len;
    bool has_qtype;
    uint16_t qtype;
    const char *rcode;
    const char *policy;         /* POLICY_HASH_HEX digits */
    const char *error;          /* reload: why a policy was rejected */
    enum flow_limit limit;      /* limit: which limit */
    uint64_t suppressed;        /* dns: records left out under a flood since the last one */
    const char *method;         /* request: an inspected HTTP request's method... */
    const char *path;           /* ...its path, query left out (untrusted bytes, cut at
                                   FLOWLOG_PATH_MAX)... */
    size_t path_len;
    unsigned status;            /* ...and the status the sandbox got; 0: none */
    const char *injected;       /* the names of the headers the proxy added, "A,B" */
    const struct alert *alert;  /* alert: the kind and its evidence (alerts.h) */
    bool wildcard;              /* not written: a wildcard rule decided this DNS query
                                   (what dns_tunnel counts) */
};

/* The names the log (and the metrics' labels) use; NULL for the NONE values. */
const char *flow_proto_name(enum flow_proto p);
const char *flow_limit_name(enum flow_limit l);

/* Writes R as one line (with the newline) into BUF; returns its length. */
size_t flowlog_format(char *buf, size_t cap, const struct flow_record *r);

struct flowlog;

/* Opens PATH for appending ("-" is standard output); NULL and errno on failure. */
struct flowlog *flowlog_open(const char *path);
/* Reopens the file (after logrotate moved it); keeps the old one on failure. */
int flowlog_reopen(struct flowlog *l);
void flowlog_close(struct flowlog *l);
/* Formats and writes one record with a single write(2). */
int flowlog_write(struct flowlog *l, const struct flow_record *r);

#endif
