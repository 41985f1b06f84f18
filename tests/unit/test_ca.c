/*
 * The inspect-mode CA's subtree arithmetic: which dNSName subtree a rule
 * needs, and which subtrees cover which rules (one row per case).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ca.h"

static void test_subtrees(void **state)
{
    static const struct {
        enum policy_rule_kind kind;
        const char *pattern;
        const char *subtree;        /* what the rule needs */
        const char *base;           /* a permitted subtree */
        bool covered;
        const char *why;
    } rows[] = {
        {RULE_EXACT, "api.example.org", "api.example.org", "api.example.org", true, "itself"},
        {RULE_EXACT, "api.example.org", "api.example.org", "example.org", true,
         "a parent subtree covers its names"},
        {RULE_EXACT, "api.example.org", "api.example.org", ".example.org", true,
         "a dotted parent covers names under it"},
        {RULE_EXACT, "example.org", "example.org", ".example.org", false,
         "a dotted subtree is not its apex"},
        {RULE_EXACT, "badexample.org", "badexample.org", "example.org", false,
         "a suffix is not a parent"},
        {RULE_EXACT, "API.Example.org", "API.Example.org", "api.example.org", true,
         "case does not matter"},
        {RULE_WILDCARD, "*.example.org", ".example.org", ".example.org", true, "itself"},
        {RULE_WILDCARD, "*.example.org", ".example.org", "example.org", true,
         "the parent covers apex and below"},
        {RULE_WILDCARD, "*.a.example.org", ".a.example.org", ".example.org", true, "deeper"},
        {RULE_WILDCARD, "*.example.org", ".example.org", "a.example.org", false,
         "a name does not cover its siblings"},
        {RULE_CIDR, "192.0.2.0/24", "192.0.2.0/24", "", false, "no cidr rule is a name"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct policy_rule r = {.kind = rows[i].kind, .pattern = (char *)rows[i].pattern};
        char need[HOSTNAME_MAX + 2];

        if (rows[i].kind != RULE_CIDR) {
            ca_subtree_of(&r, need);
            assert_string_equal(need, rows[i].subtree);
        }
        if (ca_subtree_covers(rows[i].base, &r) != rows[i].covered)
            fail_msg("%s under %s (%s)", rows[i].pattern, rows[i].base, rows[i].why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subtrees),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
