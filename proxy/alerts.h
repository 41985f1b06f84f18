/*
 * Live alerts: detectors that watch one sandbox's records and bytes for what
 * attacks look like (a port scan, data tunnelled through DNS, a burst of
 * uploads, a burst of denials) and say so once per window, with evidence.
 *
 * Every event costs O(1): a bounded scan of fixed tables at most, no
 * allocation. Memory is fixed when the detectors are made, from the
 * thresholds (alerts_memory(); README, "Alerts", gives the bound).
 * Windows are tumbling: one begins at the first event after the last one
 * ended, so N events within T always fire when they fall in one window.
 */
#ifndef SLUICE_ALERTS_H
#define SLUICE_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flowlog.h"
#include "policy.h"

#define ALERT_PARENTS 64            /* domains dns_tunnel follows at once */
#define ALERT_DESTS 256             /* destinations upload_burst follows at once */

/* What upload_burst keeps on a flow: its destination's slot, checked by key. */
struct alert_flow {
    uint64_t key;                   /* 0: not looked up yet */
    uint32_t slot;
    bool ratio_fired;
};

struct alerts;

/* Detectors for CFG; KEY keys the hashes (names are the sandbox's choice). NULL when
 * out of memory. */
struct alerts *alerts_new(const struct policy_alerts *cfg, const uint64_t key[2]);
void alerts_free(struct alerts *a);

/* Whether CFG turns any detector on. */
bool alerts_wanted(const struct policy_alerts *cfg);

/* Whether A runs with CFG (a reload that left the thresholds alone keeps the counts). */
bool alerts_same(const struct alerts *a, const struct policy_alerts *cfg);

/* Bytes A holds: fixed from alerts_new() on. */
size_t alerts_memory(const struct alerts *a);

#define ALERTS_PER_EVENT 2          /* a record can complete two detectors at once */

/*
 * A record the proxy writes (denials, DNS queries, requests), at NOW_MS. WILDCARD:
 * a DNS query a wildcard rule answered. Returns how many alerts it fired, in OUT.
 */
size_t alerts_note(struct alerts *a, const struct flow_record *r, bool wildcard,
                   uint64_t now_ms, struct alert out[ALERTS_PER_EVENT]);

/*
 * N bytes sent up on flow FLOW (DEST: its host or address, a string only read
 * when the flow looks its destination up), which has sent UP and received DOWN
 * bytes in all. True, with OUT filled, when it fires. Per chunk the relay moves:
 * O(1) once the flow holds its slot.
 */
bool alerts_upload(struct alerts *a, struct alert_flow *f, uint64_t flow, const char *dest,
                   uint64_t n, uint64_t up, uint64_t down, uint64_t now_ms, struct alert *out);

/* Whether some label of NAME (LEN bytes) looks like encoded data under CFG. */
bool alerts_label_encoded(const struct policy_alerts *cfg, const char *name, size_t len);

#endif
