/* metrics.c: counting from flow records, and the text a scraper reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "metrics.h"

static char *render(const struct metrics *m)
{
    struct metrics_gauges g = {.active_flows = 3, .policy_generation = 2, .open_fds = 9,
                               .max_fds = 1024, .rss_bytes = 4096};
    struct evbuffer *b = evbuffer_new();
    size_t n;
    char *s;

    assert_non_null(b);
    assert_int_equal(metrics_render(m, &g, b), 0);
    n = evbuffer_get_length(b);
    s = malloc(n + 1);
    assert_non_null(s);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

static void expect_line(const char *text, const char *line)
{
    char want[256];

    snprintf(want, sizeof(want), "\n%s\n", line);
    if (!strstr(text, want))
        fail_msg("no line '%s' in:\n%s", line, text);
}

static void test_counting(void **state)
{
    static const struct flow_record records[] = {
        {.event = EV_FLOW_START, .proto = PROTO_TLS, .verdict = VERDICT_ALLOW},
        {.event = EV_FLOW_START, .proto = PROTO_TLS, .verdict = VERDICT_ALLOW},
        {.event = EV_FLOW_END, .proto = PROTO_TLS, .verdict = VERDICT_ALLOW},  /* no decision */
        {.event = EV_DENY, .proto = PROTO_HTTP, .verdict = VERDICT_DENY,
         .reason = REASON_NOT_ALLOWLISTED},
        {.event = EV_DENY, .proto = PROTO_TLS, .verdict = VERDICT_AUDIT,
         .reason = REASON_NO_SNI},
        {.event = EV_DNS, .proto = PROTO_DNS, .has_qtype = true, .qtype = 28,  /* AAAA */
         .verdict = VERDICT_ALLOW},
        {.event = EV_DNS, .proto = PROTO_DNS, .has_qtype = true, .qtype = 65280,
         .verdict = VERDICT_DENY},
        {.event = EV_RELOAD, .verdict = VERDICT_ALLOW},
        {.event = EV_RELOAD, .verdict = VERDICT_DENY},
        {.event = EV_LIMIT, .proto = PROTO_TCP, .verdict = VERDICT_DENY,
         .reason = REASON_TOO_MANY_CONNECTIONS, .limit = LIMIT_MAX_CONNECTIONS},
        {.event = EV_LIMIT, .proto = PROTO_TCP, .verdict = VERDICT_DENY,
         .reason = REASON_RATE_LIMITED, .limit = LIMIT_NEW_CONNECTIONS},
        {.event = EV_LIMIT, .proto = PROTO_TLS, .reason = REASON_RATE_LIMITED,
         .limit = LIMIT_DOWNLOAD},                     /* throttled, not refused */
        {.event = EV_LIMIT, .proto = PROTO_DNS, .has_qtype = true, .qtype = 16,  /* TXT */
         .reason = REASON_RATE_LIMITED, .limit = LIMIT_DNS_QUERIES},
    };
    struct metrics *m = calloc(1, sizeof(*m));
    char *text;
    size_t i;

    (void)state;
    assert_non_null(m);
    for (i = 0; i < sizeof(records) / sizeof(records[0]); i++)
        metrics_count(m, &records[i]);
    metrics_observe_connect(m, 0.0004);
    metrics_observe_connect(m, 0.003);
    metrics_observe_connect(m, 60);         /* beyond the last bound: only +Inf */
    text = render(m);
    expect_line(text, "sluice_flows_total{verdict=\"allow\",reason=\"none\",proto=\"tls\"} 2");
    expect_line(text, "sluice_flows_total{verdict=\"deny\",reason=\"not_allowlisted\","
                      "proto=\"http\"} 1");
    expect_line(text, "sluice_flows_total{verdict=\"audit\",reason=\"no_sni\",proto=\"tls\"} 1");
    expect_line(text, "sluice_flows_total{verdict=\"deny\",reason=\"too_many_connections\","
                      "proto=\"tcp\"} 1");
    expect_line(text, "sluice_flows_total{verdict=\"deny\",reason=\"rate_limited\","
                      "proto=\"tcp\"} 1");
    assert_null(strstr(text, "proto=\"tls\"} 1\nsluice_flows_total{verdict=\"deny\","
                             "reason=\"rate_limited\",proto=\"tls\"}"));
    expect_line(text, "sluice_active_flows 3");
    expect_line(text, "sluice_dns_queries_total{verdict=\"allow\",qtype=\"AAAA\"} 1");
    expect_line(text, "sluice_dns_queries_total{verdict=\"deny\",qtype=\"TXT\"} 1");
    expect_line(text, "sluice_dns_queries_total{verdict=\"deny\",qtype=\"other\"} 1");
    expect_line(text, "sluice_policy_reloads_total{result=\"ok\"} 1");
    expect_line(text, "sluice_policy_reloads_total{result=\"error\"} 1");
    expect_line(text, "sluice_upstream_connect_seconds_bucket{le=\"0.001\"} 1");
    expect_line(text, "sluice_upstream_connect_seconds_bucket{le=\"0.005\"} 2");
    expect_line(text, "sluice_upstream_connect_seconds_bucket{le=\"10\"} 2");
    expect_line(text, "sluice_upstream_connect_seconds_bucket{le=\"+Inf\"} 3");
    expect_line(text, "sluice_upstream_connect_seconds_count 3");
    expect_line(text, "sluice_rate_limited_total{limit=\"max_connections\"} 1");
    expect_line(text, "sluice_rate_limited_total{limit=\"new_connections_per_second\"} 1");
    expect_line(text, "sluice_rate_limited_total{limit=\"download_bytes_per_second\"} 1");
    expect_line(text, "sluice_rate_limited_total{limit=\"upload_bytes_per_second\"} 0");
    expect_line(text, "sluice_rate_limited_total{limit=\"dns_queries_per_second\"} 1");
    expect_line(text, "process_resident_memory_bytes 4096");
    /* a throttled flow is not a refused one */
    assert_null(strstr(text, "reason=\"rate_limited\",proto=\"tls\""));
    free(text);
    free(m);
}

static void test_quiet_process(void **state)
{
    struct metrics *m = calloc(1, sizeof(*m));
    char *text;

    (void)state;
    assert_non_null(m);
    text = render(m);
    /* no decision yet: the family is declared, with no series */
    expect_line(text, "# TYPE sluice_flows_total counter");
    assert_null(strstr(text, "sluice_flows_total{"));
    expect_line(text, "sluice_bytes_total{direction=\"up\"} 0");
    free(text);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counting),
        cmocka_unit_test(test_quiet_process),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
