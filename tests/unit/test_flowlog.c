/* flowlog_format: exact lines, and escaping that no hostile name can break. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "flowlog.h"

static const struct timespec ts = {.tv_sec = 1795438200, .tv_nsec = 123456789};

static void test_flow_end(void **state)
{
    struct flow_record r = {
        .ts = ts, .sandbox = "a1", .event = EV_FLOW_END, .flow = 42, .proto = PROTO_TLS,
        .src = "10.200.0.2:40000", .orig_dst = "203.0.113.10:443", .host = "pypi.org",
        .port = 443, .rule = "policy.yaml:3", .verdict = VERDICT_ALLOW,
        .upstream = "151.101.0.223:443", .has_bytes = true, .bytes_up = 517,
        .bytes_down = 9000, .duration_ms = 120, .policy = "84c7041f8ff5",
    };
    char buf[FLOWLOG_LINE_MAX];
    size_t n = flowlog_format(buf, sizeof(buf), &r);

    (void)state;
    assert_string_equal(buf,
        "{\"ts\":\"2026-11-23T12:50:00.123Z\",\"sandbox\":\"a1\",\"event\":\"flow_end\","
        "\"flow\":42,\"proto\":\"tls\",\"src\":\"10.200.0.2:40000\","
        "\"orig_dst\":\"203.0.113.10:443\",\"host\":\"pypi.org\",\"port\":443,"
        "\"rule\":\"policy.yaml:3\",\"verdict\":\"allow\",\"upstream\":\"151.101.0.223:443\","
        "\"bytes_up\":517,\"bytes_down\":9000,\"duration_ms\":120,"
        "\"policy\":\"84c7041f8ff5\"}\n");
    assert_int_equal(n, strlen(buf));
}

static void test_deny_reason(void **state)
{
    struct flow_record r = {.ts = ts, .sandbox = "a1", .event = EV_DENY, .proto = PROTO_TLS,
                            .host = "evil.test", .port = 443, .verdict = VERDICT_DENY,
                            .reason = REASON_NOT_ALLOWLISTED};
    char buf[FLOWLOG_LINE_MAX];

    (void)state;
    flowlog_format(buf, sizeof(buf), &r);
    assert_non_null(strstr(buf, ",\"verdict\":\"deny\",\"reason\":\"not_allowlisted\"}"));
    assert_null(strstr(buf, "bytes_up"));       /* absent fields are left out */
}

/* Keys carried as numbers and enums are spelled as the README's flow-log section names them. */
static void test_dns_and_limit_keys(void **state)
{
    static const struct {
        struct flow_record r;
        const char *want;
    } rows[] = {
        {{.event = EV_DNS, .proto = PROTO_DNS, .has_qtype = true, .qtype = 28, .rcode = "NOERROR"},
         ",\"proto\":\"dns\",\"qtype\":\"AAAA\",\"rcode\":\"NOERROR\"}"},
        {{.event = EV_DNS, .proto = PROTO_DNS, .has_qtype = true, .qtype = 0},
         ",\"qtype\":\"0\"}"},              /* a reserved type is still said */
        {{.event = EV_DNS, .proto = PROTO_DNS, .has_qtype = true, .qtype = 65280},
         ",\"qtype\":\"65280\"}"},
        {{.event = EV_LIMIT, .proto = PROTO_TCP, .limit = LIMIT_NEW_CONNECTIONS},
         ",\"proto\":\"tcp\",\"limit\":\"new_connections_per_second\"}"},
        {{.event = EV_LIMIT, .limit = LIMIT_DNS_QUERIES}, ",\"limit\":\"dns_queries_per_second\"}"},
        {{.event = EV_RELOAD}, ",\"event\":\"reload\"}"},   /* NONE values: no key */
    };
    char buf[FLOWLOG_LINE_MAX], want[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        flowlog_format(buf, sizeof(buf), &rows[i].r);
        snprintf(want, sizeof(want), "%s\n", rows[i].want);
        if (strlen(buf) < strlen(want) || strcmp(buf + strlen(buf) - strlen(want), want) != 0)
            fail_msg("row %zu: '%s' does not end with '%s'", i, buf, rows[i].want);
    }
}

static void test_hostile_strings(void **state)
{
    static const char host[] = "a\"b\\c\nd\0e\xff}{";
    struct flow_record r = {.ts = ts, .event = EV_DNS, .qname = host,
                            .qname_len = sizeof(host) - 1};
    char buf[FLOWLOG_LINE_MAX];
    size_t n, i;

    (void)state;
    n = flowlog_format(buf, sizeof(buf), &r);
    assert_non_null(strstr(buf, "\"qname\":\"a\\\"b\\\\c\\u000ad\\u0000e\\u00ff}{\""));
    for (i = 0; i < n - 1; i++)                 /* one line, printable ASCII only */
        assert_true(buf[i] >= 0x20 && buf[i] < 0x7f);
    assert_int_equal(buf[n - 1], '\n');
    assert_string_equal(strstr(buf, "\"sandbox\":\"\""), "\"sandbox\":\"\",\"event\":\"dns\","
                        "\"qname\":\"a\\\"b\\\\c\\u000ad\\u0000e\\u00ff}{\"}\n");
}

static void test_truncation_stays_one_line(void **state)
{
    char big[3000], buf[512];
    struct flow_record r = {.ts = ts, .event = EV_RELOAD, .error = big};
    size_t n;

    (void)state;
    memset(big, '\x01', sizeof(big) - 1);       /* escapes to 6 bytes each */
    big[sizeof(big) - 1] = '\0';
    n = flowlog_format(buf, sizeof(buf), &r);
    assert_true(n < sizeof(buf));
    assert_int_equal(buf[n - 1], '\n');
    assert_int_equal(buf[n - 2], '}');
    assert_null(strchr(buf, '\x01'));
}

/* An inspected request: its keys in order; a long path cut at FLOWLOG_PATH_MAX bytes,
 * then escaped; the injected header names only. */
static void test_request(void **state)
{
    char path[600], buf[FLOWLOG_LINE_MAX];
    struct flow_record r = {
        .ts = ts, .sandbox = "a1", .event = EV_REQUEST, .flow = 9, .proto = PROTO_TLS,
        .host = "api.github.com", .port = 443, .rule = "policy.yaml:8", .method = "POST",
        .path = "/repos/x/\"y\"", .status = 403, .verdict = VERDICT_DENY,
        .reason = REASON_METHOD_NOT_ALLOWED, .injected = "Authorization", .has_bytes = true,
        .bytes_up = 164, .bytes_down = 170,
    };
    const char *p;

    (void)state;
    r.path_len = strlen(r.path);
    flowlog_format(buf, sizeof(buf), &r);
    assert_non_null(strstr(buf, "\"event\":\"request\",\"flow\":9,"));
    assert_non_null(strstr(buf, "\"rule\":\"policy.yaml:8\",\"method\":\"POST\","
                                "\"path\":\"/repos/x/\\\"y\\\"\",\"status\":403,"
                                "\"verdict\":\"deny\",\"reason\":\"method_not_allowed\","
                                "\"injected\":\"Authorization\",\"bytes_up\":164,"));
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    r.path = path;
    r.path_len = sizeof(path);
    flowlog_format(buf, sizeof(buf), &r);
    p = strstr(buf, "\"path\":\"");
    assert_non_null(p);
    p += strlen("\"path\":\"");
    assert_int_equal(strchr(p, '"') - p, FLOWLOG_PATH_MAX);
}

/* An alert: its kind and evidence, samples as escaped strings, flows as numbers. */
static void test_alert(void **state)
{
    struct alert a = {.kind = ALERT_DNS_TUNNEL, .count = 30, .threshold = 30,
                      .window_ms = 10000, .subject = "evil.test", .why = "names",
                      .samples = {"n0.evil.test", "q\"x"}, .n_samples = 2,
                      .flows = {7, 12}, .n_flows = 2};
    struct flow_record r = {.ts = ts, .sandbox = "a1", .event = EV_ALERT, .alert = &a,
                            .policy = "84c7041f8ff5"};
    char buf[FLOWLOG_LINE_MAX];

    (void)state;
    flowlog_format(buf, sizeof(buf), &r);
    assert_string_equal(buf, "{\"ts\":\"2026-11-23T12:50:00.123Z\",\"sandbox\":\"a1\","
                        "\"event\":\"alert\",\"kind\":\"dns_tunnel\",\"why\":\"names\","
                        "\"subject\":\"evil.test\",\"count\":30,\"threshold\":30,"
                        "\"window_ms\":10000,\"samples\":[\"n0.evil.test\",\"q\\\"x\"],"
                        "\"flows\":[7,12],\"policy\":\"84c7041f8ff5\"}\n");
    a.n_samples = a.n_flows = 0;
    a.subject[0] = '\0';
    a.why = NULL;
    flowlog_format(buf, sizeof(buf), &r);
    assert_non_null(strstr(buf, "\"kind\":\"dns_tunnel\",\"count\":30,"));
    assert_non_null(strstr(buf, "\"samples\":[],\"flows\":[],"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow_end),
        cmocka_unit_test(test_deny_reason),
        cmocka_unit_test(test_dns_and_limit_keys),
        cmocka_unit_test(test_hostile_strings),
        cmocka_unit_test(test_truncation_stays_one_line),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_alert),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
