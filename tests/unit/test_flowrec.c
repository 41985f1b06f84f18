/* flowrec_parse: the flow log's own lines, escapes, and what is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "flowrec.h"

static int parse(const char *line, struct flowrec *r)
{
    return flowrec_parse(line, strlen(line), r);
}

static void test_records(void **state)
{
    struct flowrec r;

    (void)state;
    assert_int_equal(parse("{\"ts\":\"2026-11-23T12:50:00.140Z\",\"sandbox\":\"a1\","
                           "\"event\":\"flow_end\",\"flow\":7,\"proto\":\"tls\",\"host\":"
                           "\"www.example.test\",\"port\":443,\"verdict\":\"allow\","
                           "\"bytes_up\":517,\"bytes_down\":18446744073709551615,"
                           "\"duration_ms\":17,\"ok\":true,\"x\":null,\"f\":-1.5e3}", &r), 0);
    assert_string_equal(r.ts, "2026-11-23T12:50:00.140Z");
    assert_string_equal(r.sandbox, "a1");
    assert_string_equal(r.event, "flow_end");
    assert_string_equal(r.host, "www.example.test");
    assert_int_equal(r.port, 443);
    assert_int_equal(r.bytes_up, 517);
    assert_true(r.bytes_down == UINT64_MAX);
    /* escapes: the log writes \\u00XX for bytes outside printable ASCII */
    assert_int_equal(parse(" { \"qname\" : \"a\\u0001b\\\"c\\\\d\\/e\\u00e9.\\ttest\" } ", &r),
                     0);
    assert_string_equal(r.qname, "a?b\"c\\d/e?.?test");     /* found by fuzz_flowrec */
    assert_int_equal(parse("{}", &r), 0);
    assert_string_equal(r.host, "");
    /* an alert's evidence: its samples kept (the first FLOWREC_SAMPLES), other lists of
     * scalars skipped */
    assert_int_equal(parse("{\"event\":\"alert\",\"kind\":\"port_scan\",\"count\":20,"
                           "\"samples\":[\"a:1\", \"b\",\"c\",\"d\",\"e\"],"
                           "\"flows\":[1,2, 3],\"none\":[ ],\"port\":22}", &r), 0);
    assert_string_equal(r.event, "alert");
    assert_string_equal(r.kind, "port_scan");
    assert_int_equal(r.count, 20);
    assert_int_equal(r.n_samples, FLOWREC_SAMPLES);
    assert_string_equal(r.samples[0], "a:1");
    assert_string_equal(r.samples[3], "d");
    assert_int_equal(r.port, 22);
}

static void test_refused(void **state)
{
    static const char *const bad[] = {
        "", "[]", "{", "{\"a\":1", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{\"a\":{}}",
        "{\"a\":[[1]]}", "{\"a\":[{}]}", "{\"a\":[1,]}", "{\"a\":[1}", "{\"a\":[\"x\"",
        "{\"host\":[\"x\"]}", "{\"port\":[1]}", "{\"port\":65536}", "{\"port\":-1}",
        "{\"samples\":[1]}", "{\"samples\":\"x\"}", "{\"samples\":[\"x\",]}",
        "{\"port\":4.5}",
        "{\"bytes_up\":18446744073709551616}", "{\"host\":\"\\x\"}", "{\"host\":\"\\u12\"}",
        "{\"host\":\"a\nb\"}", "{\"a\":tru}", "{\"a\":1} x", "{\"a\":\"unterminated}",
        /* longer than its field: never cut into another name */
        "{\"event\":\"flow_start_and_then_some\"}",
    };
    char longkey[64];
    struct flowrec r;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], &r) == 0)
            fail_msg("accepted: %s", bad[i]);
    memset(longkey, 'k', sizeof(longkey));
    memcpy(longkey, "{\"", 2);
    memcpy(longkey + sizeof(longkey) - 5, "\":1}", 5);
    assert_int_equal(parse(longkey, &r), -1);       /* no key of ours is that long */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
