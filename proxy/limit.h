/*
 * The arithmetic of P7's limits, pure (callers pass the time, which tests
 * invent and the proxy reads with clock_now_ms()): token buckets for
 * connections, bytes and DNS queries a second, and the gate that keeps the
 * flow log bounded under a flood.
 */
#ifndef SLUICE_LIMIT_H
#define SLUICE_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct limit_bucket {
    double tokens;
    uint64_t last_ms;
};

/* A full bucket of DEPTH tokens at time NOW. */
void limit_bucket_init(struct limit_bucket *b, uint64_t depth, uint64_t now_ms);

/*
 * Refills at RATE tokens a second up to DEPTH, then takes up to WANT whole
 * tokens; returns how many it took (0 when fewer than one is there).
 */
uint64_t limit_bucket_take(struct limit_bucket *b, uint64_t rate, uint64_t depth,
                           uint64_t want, uint64_t now_ms);

/* Puts back N tokens taken but not used (a read that moved fewer bytes). */
void limit_bucket_refund(struct limit_bucket *b, uint64_t n);

/* Milliseconds until N tokens are there at RATE (at least 1). */
uint64_t limit_bucket_wait_ms(const struct limit_bucket *b, uint64_t rate, uint64_t n);

struct log_gate {
    uint64_t second, count, suppressed;
};

/*
 * PER_SECOND records a second pass; the rest are counted. When a record
 * passes, *SUPPRESSED says how many were left out since the last one.
 */
bool log_gate_pass(struct log_gate *g, uint64_t per_second, uint64_t now_ms,
                   uint64_t *suppressed);

#endif
