/*
 * The sandbox's recent denials: which records are kept, the ring's order and
 * bound, hostile names, and the page as text and as JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feedback.h"

static struct flow_record denial(enum flow_event ev, const char *host, uint16_t port,
                                 enum reason why, time_t t)
{
    struct flow_record r;

    memset(&r, 0, sizeof(r));
    r.ts.tv_sec = t;
    r.event = ev;
    r.verdict = VERDICT_DENY;
    r.reason = why;
    r.port = port;
    r.proto = ev == EV_DNS ? PROTO_DNS : PROTO_TLS;
    if (ev == EV_DNS)
        r.qname = host;
    else
        r.host = host;
    r.rule = "/etc/sluice/policy.yaml:12";
    return r;
}

/* The page's body, NUL-terminated (the page itself is bytes and a length). */
static char *body_of(const struct feedback *f, bool json)
{
    char *page, *text, *body;
    size_t len;

    assert_int_equal(feedback_page(f, "84c7041f8ff5", json, &page, &len), 0);
    text = malloc(len + 1);
    assert_non_null(text);
    memcpy(text, page, len);
    text[len] = '\0';
    free(page);
    body = strstr(text, "\r\n\r\n");
    assert_non_null(body);
    assert_int_equal((size_t)(body + 4 - text) + strtoul(strstr(text, "Content-Length: ") + 16,
                                                         NULL, 10), len);
    body = strdup(body + 4);
    free(text);
    return body;
}

static void test_kept_newest_first_and_bounded(void **state)
{
    struct feedback *f = feedback_new(3);
    struct flow_record r;
    char *text;
    int i;

    (void)state;
    /* not denials: an allowed flow, an audited one, a limit record, NOTIMP */
    r = denial(EV_FLOW_START, "ok.test", 443, REASON_NONE, 1);
    r.verdict = VERDICT_ALLOW;
    feedback_note(f, &r);
    r = denial(EV_DENY, "audit.test", 443, REASON_NOT_ALLOWLISTED, 1);
    r.verdict = VERDICT_AUDIT;
    feedback_note(f, &r);
    r = denial(EV_LIMIT, "limit.test", 443, REASON_RATE_LIMITED, 1);
    feedback_note(f, &r);
    r = denial(EV_DNS, "any.test", 0, REASON_NONE, 1);
    feedback_note(f, &r);
    text = body_of(f, false);
    assert_string_equal(text, "sluice: the last 0 denials of this sandbox, newest first "
                              "(policy 84c7041f8ff5)\n");
    free(text);
    for (i = 0; i < 5; i++) {
        char host[32];

        snprintf(host, sizeof(host), "n%d.test", i);
        r = denial(i % 2 ? EV_DNS : EV_DENY, host, i % 2 ? 0 : 443, REASON_NOT_ALLOWLISTED,
                   1764936000 + i);
        feedback_note(f, &r);
    }
    text = body_of(f, false);
    assert_string_equal(text,
        "sluice: the last 3 denials of this sandbox, newest first (policy 84c7041f8ff5)\n"
        "2025-12-05T12:00:04Z  tls   n4.test:443  not_allowlisted  no allowlist rule names "
        "this host (the rule at line 12 of policy.yaml)\n"
        "2025-12-05T12:00:03Z  dns   n3.test  not_allowlisted  no allowlist rule names this "
        "host (the rule at line 12 of policy.yaml)\n"
        "2025-12-05T12:00:02Z  tls   n2.test:443  not_allowlisted  no allowlist rule names "
        "this host (the rule at line 12 of policy.yaml)\n");
    free(text);
    feedback_free(f);
}

static void test_json_and_hostile_names(void **state)
{
    struct feedback *f = feedback_new(4);
    struct flow_record r = denial(EV_DENY, "a\"b\\c\n.test", 80, REASON_HOST_MISMATCH, 0);
    char *json;

    (void)state;
    r.rule = NULL;
    feedback_note(f, &r);
    json = body_of(f, true);
    assert_string_equal(json, "{\"policy\":\"84c7041f8ff5\",\"denials\":[{\"ts\":"
                              "\"1970-01-01T00:00:00Z\",\"proto\":\"tls\",\"host\":"
                              "\"a\\\"b\\\\c?.test\",\"port\":80,\"reason\":\"host_mismatch\","
                              "\"hint\":\"the HTTP Host does not match the name\"}]}\n");
    free(json);
    feedback_free(f);
    /* no feedback yet (made on the first denial): an empty page all the same */
    json = body_of(NULL, true);
    assert_string_equal(json, "{\"policy\":\"84c7041f8ff5\",\"denials\":[]}\n");
    free(json);
}

static void test_wants_json(void **state)
{
    static const char yes[] = "GET / HTTP/1.1\r\nHost: sluice.internal\r\n"
                              "ACCEPT: text/html, application/json;q=0.9\r\n\r\n";
    static const char no[] = "GET / HTTP/1.1\r\nHost: sluice.internal\r\n"
                             "Accept: */*\r\nX-Note: application/json\r\n\r\n";

    (void)state;
    assert_true(feedback_wants_json((const uint8_t *)yes, sizeof(yes) - 1));
    assert_false(feedback_wants_json((const uint8_t *)no, sizeof(no) - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kept_newest_first_and_bounded),
        cmocka_unit_test(test_json_and_hostile_names),
        cmocka_unit_test(test_wants_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
