/*
 * One flow-log line read back (sluicectl suggest): the fields a policy can be
 * learnt from, out of one flat JSON object as sluice-proxy writes them. Lines
 * are untrusted (a log may be edited, cut, or not sluice's at all): the reader
 * is strict, bounded, and fuzzed (tests/fuzz/fuzz_flowrec.c).
 */
#ifndef SLUICE_FLOWREC_H
#define SLUICE_FLOWREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hostname.h"

#define FLOWREC_LINE_MAX 8192       /* longer lines are not sluice's: skipped */
#define FLOWREC_SAMPLES 4           /* an alert's samples kept */
#define FLOWREC_SAMPLE_MAX 80       /* as the proxy writes them: 79 characters at most */

struct flowrec {
    char ts[32];                    /* as written: RFC 3339, sortable as text */
    char sandbox[128];
    char event[16];                 /* flow_start, flow_end, deny, dns, ... */
    char proto[8];
    char verdict[8];
    char reason[32];
    char host[HOSTNAME_MAX + 1];    /* "" when absent */
    char qname[HOSTNAME_MAX + 1];
    char orig_dst[64];
    char policy[16];
    uint16_t port;                  /* 0 when absent */
    uint64_t flow;
    uint64_t bytes_up, bytes_down;
    /* alert records */
    char kind[16], why[16];
    char subject[FLOWREC_SAMPLE_MAX];
    uint64_t count, threshold;
    char samples[FLOWREC_SAMPLES][FLOWREC_SAMPLE_MAX];  /* the first ones */
    size_t n_samples;
};

/*
 * Reads the JSON object in LINE (LEN bytes, no newline) into R. Unknown keys
 * are skipped (their value a scalar or a list of scalars, as an alert's
 * evidence); a string longer than its field, an object or a nested list as a
 * value, a number out of range or anything that is not one JSON object of that
 * shape is an error. Returns 0 or -1.
 */
int flowrec_parse(const char *line, size_t len, struct flowrec *r);

/*
 * Streams the log at PATH (plain or gzip; "-" is standard input), calling FN
 * for each record and counting in *BAD the lines that are not one (cut, too
 * long, not sluice's). FN returns a negative number to stop. Returns 0, or -1
 * after saying why on standard error, as WHO.
 */
int flowrec_read(const char *who, const char *path,
                 int (*fn)(const struct flowrec *r, void *arg), void *arg, uint64_t *bad);

#endif
