/*
 * The detectors, on a test clock: each fires at its threshold and not below,
 * once per window per kind, again in a later window; what a window counts
 * starts over when it ends; memory stays what alerts_new() made under 100,000
 * distinct names (no allocation per event).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "alerts.h"
#include "count_alloc.h"

static const uint64_t key[2] = {0x0123456789abcdefull, 0xfedcba9876543210ull};

static struct policy_alerts defaults(void)
{
    struct policy_settings s;

    policy_settings_default(&s);
    return s.alerts;
}

static struct flow_record deny_to(const char *dst, uint64_t flow)
{
    struct flow_record r = {.event = EV_DENY, .verdict = VERDICT_DENY, .flow = flow,
                            .orig_dst = dst, .reason = REASON_NOT_ALLOWLISTED};
    return r;
}

static struct flow_record query(const char *name, enum flow_verdict v)
{
    struct flow_record r = {.event = EV_DNS, .verdict = v, .qname = name,
                            .reason = v == VERDICT_DENY ? REASON_NOT_ALLOWLISTED : REASON_NONE};
    return r;
}

/* How many alerts of KIND R fires at NOW (the first of them into *LAST). */
static size_t fires(struct alerts *a, const struct flow_record *r, bool wildcard, uint64_t now,
                    enum alert_kind kind, struct alert *last)
{
    struct alert out[ALERTS_PER_EVENT];
    size_t n = alerts_note(a, r, wildcard, now, out), i, k = 0;

    for (i = 0; i < n; i++)
        if (out[i].kind == kind) {
            if (last)
                *last = out[i];
            k++;
        }
    return k;
}

static void test_port_scan(void **state)
{
    struct policy_alerts cfg = defaults();
    struct alerts *a;
    struct alert al;
    char dst[32];
    size_t i, n = 0;

    (void)state;
    cfg.denied_burst.denials = 0;
    a = alerts_new(&cfg, key);
    assert_non_null(a);
    /* 19 distinct pairs, each twice: below the threshold of 20 */
    for (i = 0; i < 38; i++) {
        snprintf(dst, sizeof(dst), "203.0.113.5:%zu", 1000 + i % 19);
        struct flow_record r = deny_to(dst, i + 1);

        n += fires(a, &r, false, 1000 + i * 10, ALERT_PORT_SCAN, NULL);
    }
    assert_int_equal(n, 0);
    {
        struct flow_record r = deny_to("203.0.113.5:22", 99);

        assert_int_equal(fires(a, &r, false, 2000, ALERT_PORT_SCAN, &al), 1);
    }
    assert_int_equal(al.count, 20);
    assert_int_equal(al.threshold, 20);
    assert_int_equal(al.window_ms, 10000);
    assert_int_equal(al.n_samples, ALERT_SAMPLES);
    assert_string_equal(al.samples[0], "203.0.113.5:1000");
    assert_int_equal(al.n_flows, ALERT_SAMPLES);
    assert_int_equal(al.flows[0], 1);
    /* once per window: 30 more distinct pairs in it fire nothing */
    for (i = 0; i < 30; i++) {
        snprintf(dst, sizeof(dst), "203.0.113.6:%zu", i);
        struct flow_record r = deny_to(dst, 0);

        n += fires(a, &r, false, 3000 + i, ALERT_PORT_SCAN, NULL);
    }
    assert_int_equal(n, 0);
    /* a later window counts anew: 19 are not enough, the 20th fires */
    for (i = 0; i < 20; i++) {
        snprintf(dst, sizeof(dst), "198.51.100.1:%zu", i);
        struct flow_record r = deny_to(dst, 0);

        n += fires(a, &r, false, 20000 + i, ALERT_PORT_SCAN, NULL);
        assert_int_equal(n, i == 19);
    }
    alerts_free(a);
}

static void test_port_scan_spread_over_two_windows_is_not_one(void **state)
{
    struct policy_alerts cfg = defaults();
    struct alerts *a = alerts_new(&cfg, key);
    char dst[32];
    size_t i, n = 0;

    (void)state;
    /* 15 in the first window, 15 after it ended: never 20 within one */
    for (i = 0; i < 30; i++) {
        snprintf(dst, sizeof(dst), "203.0.113.7:%zu", i);
        struct flow_record r = deny_to(dst, 0);

        n += fires(a, &r, false, i < 15 ? 100 + i : 10200 + i, ALERT_PORT_SCAN, NULL);
    }
    assert_int_equal(n, 0);
    alerts_free(a);
}

static void test_denied_burst(void **state)
{
    struct policy_alerts cfg = defaults();
    struct alerts *a;
    struct alert al;
    size_t i, n = 0;

    (void)state;
    cfg.port_scan.ports = 0;
    cfg.dns_tunnel.names = cfg.dns_tunnel.encoded = 0;
    cfg.denied_burst.denials = 5;
    cfg.denied_burst.window_ms = 1000;
    a = alerts_new(&cfg, key);
    for (i = 0; i < 4; i++) {       /* a TCP denial, a DNS one, a request: all count */
        struct flow_record r = i % 2 ? query("x.test", VERDICT_DENY)
                                     : deny_to("203.0.113.5:443", i + 1);

        n += fires(a, &r, false, 10 + i, ALERT_DENIED_BURST, NULL);
    }
    assert_int_equal(n, 0);
    {
        struct flow_record r = {.event = EV_REQUEST, .verdict = VERDICT_DENY, .host = "h.test",
                                .reason = REASON_METHOD_NOT_ALLOWED, .flow = 9};
        struct flow_record ok = query("fine.test", VERDICT_ALLOW);

        assert_int_equal(fires(a, &ok, false, 20, ALERT_DENIED_BURST, NULL), 0);
        assert_int_equal(fires(a, &r, false, 21, ALERT_DENIED_BURST, &al), 1);
    }
    assert_int_equal(al.count, 5);
    assert_string_equal(al.samples[1], "not_allowlisted x.test");
    assert_string_equal(al.samples[4], "method_not_allowed h.test");
    alerts_free(a);
}

static void test_dns_tunnel_by_names(void **state)
{
    struct policy_alerts cfg = defaults();
    struct alerts *a;
    struct alert al;
    char name[64];
    size_t i, n = 0;

    (void)state;
    cfg.denied_burst.denials = 0;
    a = alerts_new(&cfg, key);
    /* 29 denied names under evil.test (in two spellings each), and allowed names under it
     * by an exact rule, and denied names elsewhere: none of it is 30 under one domain */
    for (i = 0; i < 29; i++) {
        struct flow_record r;

        snprintf(name, sizeof(name), "n%zu.evil.test", i);
        r = query(name, VERDICT_DENY);
        n += fires(a, &r, false, 100, ALERT_DNS_TUNNEL, NULL);
        snprintf(name, sizeof(name), "N%zu.EVIL.test.", i);
        r = query(name, VERDICT_DENY);
        n += fires(a, &r, false, 100, ALERT_DNS_TUNNEL, NULL);
        snprintf(name, sizeof(name), "ok%zu.evil.test", i);
        r = query(name, VERDICT_ALLOW);
        n += fires(a, &r, false, 100, ALERT_DNS_TUNNEL, NULL);
        snprintf(name, sizeof(name), "n%zu.other%zu.test", i, i);
        r = query(name, VERDICT_DENY);
        n += fires(a, &r, false, 100, ALERT_DNS_TUNNEL, NULL);
    }
    assert_int_equal(n, 0);
    /* the 30th: a name a wildcard rule let through, deeper under the same domain */
    {
        struct flow_record r = query("a.b.c.evil.test", VERDICT_ALLOW);

        assert_int_equal(fires(a, &r, true, 200, ALERT_DNS_TUNNEL, &al), 1);
    }
    assert_string_equal(al.subject, "evil.test");
    assert_string_equal(al.why, "names");
    assert_int_equal(al.count, 30);
    assert_int_equal(al.threshold, 30);
    assert_string_equal(al.samples[0], "n0.evil.test");
    alerts_free(a);
}

static void test_dns_tunnel_by_encoded_labels(void **state)
{
    static const char *const labels[] = {
        /* encoded data: hex, base32, base36 */
        "f2ada9b4ec25d44dd20fc24306e7d53b4a1d4435",
        "wdrnaagvtxu4dswolzm6rpnn2ely4pudrhekwy2n",
        "k3j9x0q2m8v7b1n4c6z5l0p9o8i7u6y5t4r3e2w1",
        "e3b0c44298fc1c149afbf4c8996fb924",
        "9b74c9897bac770ffc029102a200c5de0000000000",
    };
    static const char *const words[] = {    /* long, even, but words and dashes */
        "thisisaverylonglabelnameforatestdomainxx",
        "my-very-long-service-name-production-eu-west-1",
        "ip-10-0-0-1-ec2-internal-compute-amazonaws",
        "short1234",
    };
    struct policy_alerts cfg = defaults();
    struct alerts *a;
    struct alert al;
    char name[128];
    size_t i, n = 0;

    (void)state;
    for (i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (!alerts_label_encoded(&cfg, labels[i], strlen(labels[i])))
            fail_msg("%s: not taken for encoded data", labels[i]);
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (alerts_label_encoded(&cfg, words[i], strlen(words[i])))
            fail_msg("%s: taken for encoded data", words[i]);
    a = alerts_new(&cfg, key);
    /* allowed by an exact rule each, so only the labels count: the fifth fires */
    for (i = 0; i < 5; i++) {
        struct flow_record r;

        snprintf(name, sizeof(name), "%s.x.tunnel.example", labels[i]);
        r = query(name, VERDICT_ALLOW);
        n += fires(a, &r, false, 50 + i, ALERT_DNS_TUNNEL, &al);
        assert_int_equal(n, i == 4);
    }
    assert_string_equal(al.subject, "tunnel.example");
    assert_string_equal(al.why, "encoded");
    assert_int_equal(al.count, 5);
    alerts_free(a);
}

static void test_upload_burst(void **state)
{
    struct policy_alerts cfg = defaults();
    struct alert_flow f1 = {0}, f2 = {0}, f3 = {0};
    struct alerts *a;
    struct alert al;
    uint64_t up = 0;
    size_t i, n = 0;

    (void)state;
    cfg.upload_burst.ratio = 0;
    a = alerts_new(&cfg, key);
    /* two flows to one destination, 16 MiB together in the window: not more */
    for (i = 0; i < 16; i++)
        n += alerts_upload(a, i % 2 ? &f1 : &f2, i % 2 ? 1 : 2, "up.example", 1u << 20,
                           up += 1u << 20, 0, 100 + i, &al);
    /* other destinations do not add to it */
    n += alerts_upload(a, &f3, 3, "other.example", 64u << 20, 64u << 20, 0, 200, &al);
    assert_int_equal(n, 1);
    assert_string_equal(al.subject, "other.example");
    n = 0;
    /* the window has its alert of this kind: one more byte to up.example waits */
    assert_false(alerts_upload(a, &f1, 1, "up.example", 1, up + 1, 0, 300, &al));
    /* the next window: over 16 MiB fires, naming the flows */
    for (i = 0; i < 17; i++)
        n += alerts_upload(a, i % 2 ? &f1 : &f2, i % 2 ? 1 : 2, "up.example", 1u << 20,
                           0, 0, 70000 + i, &al);
    assert_int_equal(n, 1);
    assert_string_equal(al.subject, "up.example");
    assert_string_equal(al.why, "bytes");
    assert_int_equal(al.count, 17u << 20);
    assert_int_equal(al.n_flows, 2);
    alerts_free(a);
}

static void test_upload_ratio(void **state)
{
    struct policy_alerts cfg = defaults();
    struct alert_flow f = {0}, g = {0};
    struct alerts *a;
    struct alert al;

    (void)state;
    cfg.upload_burst.bytes = 0;
    a = alerts_new(&cfg, key);
    /* 8 MiB up against 1 MiB down: a ratio of 8, under 20 */
    assert_false(alerts_upload(a, &g, 1, "dl.example", 1, 8u << 20, 1u << 20, 10, &al));
    /* 7 MiB up against nothing: not yet a large flow */
    assert_false(alerts_upload(a, &f, 2, "ul.example", 1, 7u << 20, 0, 10, &al));
    assert_true(alerts_upload(a, &f, 2, "ul.example", 1, 8u << 20, 100, 20, &al));
    assert_string_equal(al.why, "ratio");
    assert_int_equal(al.count, (8u << 20) / 100);
    assert_int_equal(al.threshold, 20);
    assert_string_equal(al.samples[0], "up 8388608 down 100");
    assert_int_equal(al.flows[0], 2);
    /* one verdict per flow, whatever it sends next */
    assert_false(alerts_upload(a, &f, 2, "ul.example", 1, 80u << 20, 100, 90000, &al));
    alerts_free(a);
}

/*
 * alerts_same() compares what a policy says, not the bytes between fields: a
 * copy of CFG whose padding is garbage is the same, and a change of any one
 * field is not.
 */
static void same_field_by_field(const struct alerts *a, const struct policy_alerts *cfg)
{
    union {
        struct policy_alerts c;
        unsigned char b[sizeof(struct policy_alerts)];
    } u;
    int field;

    for (field = -1; field < 13; field++) {
        memset(u.b, 0xa5, sizeof(u.b));        /* padding: not configuration */
        u.c.port_scan = cfg->port_scan;
        u.c.dns_tunnel = cfg->dns_tunnel;
        u.c.upload_burst = cfg->upload_burst;
        u.c.denied_burst = cfg->denied_burst;
        switch (field) {
        case 0: u.c.port_scan.ports++; break;
        case 1: u.c.port_scan.window_ms++; break;
        case 2: u.c.dns_tunnel.names++; break;
        case 3: u.c.dns_tunnel.encoded++; break;
        case 4: u.c.dns_tunnel.window_ms++; break;
        case 5: u.c.dns_tunnel.label_length++; break;
        case 6: u.c.dns_tunnel.entropy_centi++; break;
        case 7: u.c.upload_burst.bytes++; break;
        case 8: u.c.upload_burst.window_ms++; break;
        case 9: u.c.upload_burst.ratio++; break;
        case 10: u.c.upload_burst.ratio_after++; break;
        case 11: u.c.denied_burst.denials++; break;
        case 12: u.c.denied_burst.window_ms++; break;
        default: break;                         /* -1: nothing changed */
        }
        if (alerts_same(a, &u.c) != (field < 0))
            fail_msg("field %d: alerts_same() says %d", field, alerts_same(a, &u.c));
    }
}

static void test_off_and_same(void **state)
{
    struct policy_alerts cfg = defaults(), off;
    struct alerts *a = alerts_new(&cfg, key);
    char dst[32];
    size_t i, n = 0;

    (void)state;
    memset(&off, 0, sizeof(off));
    assert_false(alerts_wanted(&off));
    assert_true(alerts_wanted(&cfg));
    assert_true(alerts_same(a, &cfg));
    same_field_by_field(a, &cfg);
    cfg.port_scan.ports = 0;
    assert_false(alerts_same(a, &cfg));
    alerts_free(a);
    a = alerts_new(&cfg, key);
    for (i = 0; i < 100; i++) {
        snprintf(dst, sizeof(dst), "203.0.113.5:%zu", i);
        struct flow_record r = deny_to(dst, 0);

        n += fires(a, &r, false, 10, ALERT_PORT_SCAN, NULL);
    }
    assert_int_equal(n, 0);
    alerts_free(a);
}

/* 100,000 distinct names, denied, under 100,000 domains and under one; 100,000 scanned
 * ports; 100,000 destinations: the memory is what alerts_new() took, and nothing is
 * allocated per event. */
static void test_memory_bound(void **state)
{
    struct policy_alerts cfg = defaults();
    struct alerts *a = alerts_new(&cfg, key);
    struct alert out[ALERTS_PER_EVENT];
    struct alert_flow f;
    size_t before, mem = alerts_memory(a), i;
    char name[64];

    (void)state;
    printf("# alerts memory with the default thresholds: %zu bytes\n", mem);
    assert_true(mem < 512 * 1024);
    alerts_label_encoded(&cfg, "warm.up", 7);
    {
        struct flow_record r = query("warm.up.example.com", VERDICT_DENY);

        alerts_note(a, &r, false, 1, out);     /* libpsl loads its list on first use */
    }
    before = allocations;
    for (i = 0; i < 100000; i++) {
        struct flow_record r;

        snprintf(name, sizeof(name), "n%zu.d%zu.example", i, i);
        r = query(name, VERDICT_DENY);
        alerts_note(a, &r, false, 10 + i / 1000, out);
        snprintf(name, sizeof(name), "n%zu.one.example", i);
        r = query(name, VERDICT_DENY);
        alerts_note(a, &r, false, 10 + i / 1000, out);
        snprintf(name, sizeof(name), "203.0.113.%zu:%zu", i % 256, i);
        r = deny_to(name, i + 1);
        alerts_note(a, &r, false, 10 + i / 1000, out);
        memset(&f, 0, sizeof(f));
        snprintf(name, sizeof(name), "d%zu.example", i);
        alerts_upload(a, &f, i + 1, name, 4096, 4096, 0, 10 + i / 1000, out);
    }
    assert_int_equal(allocations - before, 0);     /* under a sanitizer: not counted */
    assert_int_equal(alerts_memory(a), mem);
    alerts_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_port_scan),
        cmocka_unit_test(test_port_scan_spread_over_two_windows_is_not_one),
        cmocka_unit_test(test_denied_burst),
        cmocka_unit_test(test_dns_tunnel_by_names),
        cmocka_unit_test(test_dns_tunnel_by_encoded_labels),
        cmocka_unit_test(test_upload_burst),
        cmocka_unit_test(test_upload_ratio),
        cmocka_unit_test(test_off_and_same),
        cmocka_unit_test(test_memory_bound),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
