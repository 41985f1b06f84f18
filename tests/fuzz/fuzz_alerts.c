/*
 * Fuzz target for the alert detectors' handling of what a sandbox picks: query
 * names (any bytes: refused non-names too), destinations and their lengths.
 * Each input line is one event; its first byte picks the kind and the clock
 * step. Every alert that fires must hold its promise: a count at or past its
 * threshold, printable samples, no more samples or flows than ALERT_SAMPLES.
 */
#include <stdbool.h>
#include <string.h>

#include "alerts.h"
#include "fuzz.h"

static void check_alert(const struct alert *a)
{
    size_t i, j;

    CHECK(a->kind < ALERT_COUNT);
    CHECK(a->n_samples <= ALERT_SAMPLES && a->n_flows <= ALERT_SAMPLES);
    CHECK(a->why == NULL || a->kind == ALERT_UPLOAD_BURST || a->kind == ALERT_DNS_TUNNEL);
    if (a->kind != ALERT_UPLOAD_BURST || strcmp(a->why, "bytes") == 0)
        CHECK(a->count >= a->threshold);
    for (i = 0; i < a->n_samples; i++) {
        CHECK(memchr(a->samples[i], '\0', ALERT_SAMPLE_MAX) != NULL);
        for (j = 0; a->samples[i][j]; j++)
            CHECK(a->samples[i][j] >= 0x20 && a->samples[i][j] < 0x7f);
    }
    CHECK(memchr(a->subject, '\0', ALERT_SAMPLE_MAX) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t key[2] = {1, 2};
    struct policy_settings s;
    struct alert out[ALERTS_PER_EVENT];
    struct alert_flow flows[4] = {{0}};
    struct alerts *a;
    uint64_t now = 1, up = 0;
    size_t off = 0, n, i;

    policy_settings_default(&s);
    /* small thresholds, so that inputs reach the firing paths */
    s.alerts.port_scan.ports = 3;
    s.alerts.dns_tunnel.names = 3;
    s.alerts.dns_tunnel.encoded = 2;
    s.alerts.dns_tunnel.label_length = 8;
    s.alerts.upload_burst.bytes = 1000;
    s.alerts.upload_burst.ratio_after = 100;
    s.alerts.denied_burst.denials = 4;
    a = alerts_new(&s.alerts, key);
    CHECK(a != NULL);
    while (off < size) {
        const uint8_t *line = data + off, *nl = memchr(line, '\n', size - off);
        size_t len = nl ? (size_t)(nl - line) : size - off;
        char text[512];
        uint8_t op = len ? line[0] : 0;
        struct flow_record r = {.flow = off + 1, .port = 443};

        off += len + 1;
        if (len)
            len--, line++;
        if (len > sizeof(text) - 1)
            len = sizeof(text) - 1;
        memcpy(text, line, len);                    /* names are strings in records */
        text[len] = '\0';
        now += (op >> 4) * 1000u;
        switch (op & 7) {
        case 0: case 1: case 2:
            r.event = EV_DNS;
            r.qname = text;
            r.qname_len = len;
            r.verdict = op & 1 ? VERDICT_DENY : VERDICT_ALLOW;
            r.reason = op & 1 ? REASON_NOT_ALLOWLISTED : REASON_NONE;
            n = alerts_note(a, &r, (op & 7) == 2, now, out);
            break;
        case 3: case 4:
            r.event = EV_DENY;
            r.verdict = VERDICT_DENY;
            r.reason = REASON_NOT_ALLOWLISTED;
            if (op & 1)
                r.orig_dst = text;
            else
                r.host = text, r.host_len = len;
            n = alerts_note(a, &r, false, now, out);
            break;
        case 5:
            r.event = EV_REQUEST;
            r.verdict = VERDICT_DENY;
            r.host = text;
            n = alerts_note(a, &r, false, now, out);
            break;
        default:
            up += len * 7;
            n = alerts_upload(a, &flows[op >> 6], (op >> 6) + 1, text, len * 7, up,
                              len, now, out);
            break;
        }
        CHECK(n <= ALERTS_PER_EVENT);
        for (i = 0; i < n; i++)
            check_alert(&out[i]);
    }
    alerts_free(a);
    return 0;
}
