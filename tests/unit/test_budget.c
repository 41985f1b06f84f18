/*
 * Data budgets on a test clock: what a name may still move, spent across flows,
 * a window that moves on, limits changed by a reload, names in any case, and a
 * full table where the name that spent most never gives way.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "budget.h"

static const uint64_t key[2] = {7, 9};
static const struct policy_budget five_up = {.up = 5 << 20, .per_ms = 60000};

static void test_spend_and_window(void **state)
{
    struct budgets *b = budgets_new(key);
    struct budget_ref r1, r2;
    uint64_t wait = 0;

    (void)state;
    assert_false(budget_get(b, "up.example", 10, &five_up, 1000, &r1));
    assert_int_equal(budget_left(b, &r1, BUDGET_UP, 1000, &wait), 5 << 20);
    assert_true(budget_left(b, &r1, BUDGET_DOWN, 1000, &wait) == UINT64_MAX);
    budget_spend(b, &r1, BUDGET_UP, 3 << 20);
    /* a second flow to the same name, spelled otherwise: the same budget */
    assert_false(budget_get(b, "UP.Example.", 11, &five_up, 2000, &r2));
    assert_int_equal(budget_left(b, &r2, BUDGET_UP, 2000, &wait), 2 << 20);
    budget_spend(b, &r2, BUDGET_UP, 2 << 20);
    assert_int_equal(budget_left(b, &r1, BUDGET_UP, 3000, &wait), 0);
    assert_int_equal(wait, 58000);              /* the window began at 1000 */
    assert_true(budget_get(b, "up.example", 10, &five_up, 3000, &r2));     /* spent */
    /* the window moves on: all of it again */
    assert_int_equal(budget_left(b, &r1, BUDGET_UP, 61000, &wait), 5 << 20);
    assert_false(budget_get(b, "up.example", 10, &five_up, 61000, &r2));
    budgets_free(b);
}

static void test_limits_changed_keep_what_was_spent(void **state)
{
    struct policy_budget ten = five_up;
    struct budgets *b = budgets_new(key);
    struct budget_ref r, stale;
    uint64_t wait;

    (void)state;
    budget_get(b, "a.example", 9, &five_up, 0, &r);
    budget_spend(b, &r, BUDGET_UP, 5 << 20);
    stale = r;
    /* the same limits (a reload of an unchanged rule): still spent */
    assert_true(budget_get(b, "a.example", 9, &five_up, 10, &r));
    /* raised: the window's 5 MiB still count; lowered: spent at once */
    ten.up = 10 << 20;
    assert_false(budget_get(b, "a.example", 9, &ten, 20, &r));
    assert_int_equal(budget_left(b, &r, BUDGET_UP, 20, &wait), 5 << 20);
    assert_int_equal(budget_left(b, &stale, BUDGET_UP, 20, &wait), 5 << 20);   /* one entry */
    ten.up = 1 << 20;
    assert_true(budget_get(b, "a.example", 9, &ten, 30, &r));
    /* a window of another length: the one under way is measured by it */
    ten.up = 10 << 20;
    ten.per_ms = 10;
    assert_false(budget_get(b, "a.example", 9, &ten, 40, &r));
    assert_int_equal(budget_left(b, &r, BUDGET_UP, 40, &wait), 10 << 20);
    budgets_free(b);
}

struct seen {
    size_t n;
    uint64_t up_spent_of_a;
};

static void count(const struct budget_view *v, void *arg)
{
    struct seen *s = arg;

    s->n++;
    if (strcmp(v->name, "a.example") == 0)
        s->up_spent_of_a = v->spent[BUDGET_UP];
}

static void test_full_table_keeps_the_big_spender(void **state)
{
    struct budgets *b = budgets_new(key);
    struct budget_ref big, r, again;
    struct seen s = {0};
    char name[32];
    uint64_t wait;
    size_t i;

    (void)state;
    budget_get(b, "a.example", 9, &five_up, 0, &big);
    budget_spend(b, &big, BUDGET_UP, 5 << 20);
    for (i = 0; i < 3 * BUDGET_NAMES; i++) {    /* a flood of other names */
        snprintf(name, sizeof(name), "n%zu.example", i);
        budget_get(b, name, strlen(name), &five_up, 100, &r);
        budget_spend(b, &r, BUDGET_UP, 1);
    }
    assert_int_equal(budget_left(b, &big, BUDGET_UP, 200, &wait), 0);
    assert_true(budget_get(b, "a.example", 9, &five_up, 200, &again));
    budgets_each(b, 200, count, &s);
    assert_int_equal(s.n, BUDGET_NAMES);
    assert_int_equal(s.up_spent_of_a, 5 << 20);
    budgets_free(b);
}

/* Which budget a flow has: its rule's, else the policy's default upload one, never a
 * cidr rule's. */
static void test_budget_of(void **state)
{
    static const char text[] =
        "version: 1\n"
        "egress:\n"
        "  - domain: a.example\n"
        "    budget: {upload: 5MiB, download: 1GiB, per: 10m}\n"
        "  - domain: b.example\n"
        "  - cidr: 192.0.2.0/24\n"
        "limits: {upload_per_destination: 100MiB}\n";
    struct policy_budget lim;
    struct diag_list d;
    struct policy *p;

    (void)state;
    diag_init(&d, "t.yaml");
    assert_int_equal(policy_load_buffer("t.yaml", (const uint8_t *)text, strlen(text), &p, &d),
                     0);
    assert_true(budget_of(p, &p->rules[0], &lim));
    assert_true(lim.up == 5 << 20 && lim.down == 1ull << 30 && lim.per_ms == 600000);
    assert_true(budget_of(p, &p->rules[1], &lim));
    assert_true(lim.up == 100 << 20 && lim.down == 0 && lim.per_ms == POLICY_BUDGET_PER_MS);
    assert_false(budget_of(p, &p->rules[2], &lim));
    assert_false(budget_of(p, NULL, &lim));
    policy_free(p);
    diag_clear(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spend_and_window),
        cmocka_unit_test(test_limits_changed_keep_what_was_spent),
        cmocka_unit_test(test_full_table_keeps_the_big_spender),
        cmocka_unit_test(test_budget_of),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
