/* limit.c: token buckets and the log gate, against a clock the test moves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "limit.h"

/* One row: a take at time T of WANT tokens, and what it must grant. */
struct take_row {
    uint64_t t_ms, want, expect;
    const char *why;
};

static void run_bucket(const struct take_row *rows, size_t n, uint64_t rate, uint64_t depth)
{
    struct limit_bucket b;
    size_t i;

    limit_bucket_init(&b, depth, 0);
    for (i = 0; i < n; i++) {
        uint64_t got = limit_bucket_take(&b, rate, depth, rows[i].want, rows[i].t_ms);

        if (got != rows[i].expect)
            fail_msg("row %zu (%s): got %llu, want %llu", i, rows[i].why,
                     (unsigned long long)got, (unsigned long long)rows[i].expect);
    }
}

static void test_connections(void **state)
{
    /* 20 a second, one second deep */
    static const struct take_row rows[] = {
        {0, 20, 20, "a full bucket gives a second's worth at once"},
        {0, 1, 0, "then nothing"},
        {49, 1, 0, "0.98 of a token is not one"},
        {50, 1, 1, "one token every 50 ms"},
        {50, 1, 0, "and only one"},
        {10000, 100, 20, "a long pause refills to the depth, not beyond"},
    };

    (void)state;
    run_bucket(rows, sizeof(rows) / sizeof(rows[0]), 20, 20);
}

static void test_bytes(void **state)
{
    /* 1 MiB/s with 100 KiB depth: a tenth of a second */
    static const struct take_row rows[] = {
        {0, 65536, 65536, "a chunk out of a full bucket"},
        {0, 65536, 36864, "the rest of the depth, partly"},
        {0, 65536, 0, "empty"},
        {10, 65536, 10485, "10 ms of 1 MiB/s (10485.76 bytes)"},
        {1000, 1 << 20, 102400, "capped at the depth after a pause"},
    };

    (void)state;
    run_bucket(rows, sizeof(rows) / sizeof(rows[0]), 1 << 20, 102400);
}

static void test_refund_and_wait(void **state)
{
    struct limit_bucket b;

    (void)state;
    limit_bucket_init(&b, 1000, 0);
    assert_int_equal(limit_bucket_take(&b, 1000, 1000, 1000, 0), 1000);
    limit_bucket_refund(&b, 400);           /* a read moved 600 of 1000 */
    assert_int_equal(limit_bucket_take(&b, 1000, 1000, 1000, 0), 400);
    assert_int_equal(limit_bucket_wait_ms(&b, 1000, 500), 501);    /* 500 tokens at 1/ms */
    assert_int_equal(limit_bucket_take(&b, 1000, 1000, 1000, 501), 501);
    /* a clock that goes backwards (it should not) changes nothing */
    assert_int_equal(limit_bucket_take(&b, 1000, 1000, 1000, 100), 0);
    /* a reload that lowers the depth takes effect at the next take */
    limit_bucket_init(&b, 1000, 0);
    assert_int_equal(limit_bucket_take(&b, 10, 10, 1000, 0), 10);
}

static void test_log_gate(void **state)
{
    struct log_gate g = {0};
    uint64_t suppressed = 99, t;
    int passed = 0;

    (void)state;
    for (t = 5000; t < 5000 + 1000; t += 1) /* 1000 records in one second */
        passed += log_gate_pass(&g, 100, t, &suppressed);
    assert_int_equal(passed, 100);
    assert_int_equal(suppressed, 0);        /* the first ones had nothing to report */
    assert_true(log_gate_pass(&g, 100, 6000, &suppressed));
    assert_int_equal(suppressed, 900);      /* the next second's first record says it */
    assert_true(log_gate_pass(&g, 100, 6001, &suppressed));
    assert_int_equal(suppressed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connections),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_refund_and_wait),
        cmocka_unit_test(test_log_gate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
