/*
 * Request paths against policy_path_canonical() and policy_match_http(): the
 * input is a request-target. Properties:
 *
 *   - a path called canonical, decoded the way an origin does (every %XX,
 *     once; ";parameters" dropped per segment), has no "." or ".." segment and
 *     no empty segment but the last, and decoding it leaves no '/' or '\\'
 *     that was not there before: the rule matched its bytes, the origin will
 *     serve those segments;
 *   - a path that is not canonical is never allowed by a `paths` entry;
 *   - the query (from the first '?') never changes a decision.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "fuzz.h"
#include "policy.h"

#define TARGET_MAX 4096

static const char POLICY[] = "version: 1\n"
                             "egress:\n"
                             "  - domain: api.test\n"
                             "    http:\n"
                             "      - paths: [\"/allowed*\", \"*.html\", \"/a/*/b\"]\n";

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The reference: decode the path like an origin would and check its segments. */
static void check_decoded(const char *p, size_t n)
{
    char seg[TARGET_MAX];
    size_t i = 1, k;

    CHECK(n > 0 && p[0] == '/');
    while (i <= n) {
        bool params = false;

        for (k = 0; i < n && p[i] != '/'; i++) {
            char c = p[i];

            CHECK(c != '\\');
            if (c == '%') {
                CHECK(i + 2 < n && hex(p[i + 1]) >= 0 && hex(p[i + 2]) >= 0);
                c = (char)(hex(p[i + 1]) * 16 + hex(p[i + 2]));
                CHECK(c != '/' && c != '\\' && c != '%' && c != '\0');
                i += 2;
            }
            if (c == ';')
                params = true;
            if (!params)
                seg[k++] = c;
        }
        seg[k] = '\0';
        CHECK(strcmp(seg, ".") != 0 && strcmp(seg, "..") != 0);
        CHECK(k > 0 || i >= n);         /* an empty segment only at the end */
        i++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct policy *p;
    static const char query[] = "?x=/allowed/y.html";
    char target[TARGET_MAX + sizeof(query)];
    struct policy_verdict v, vq;
    size_t path_len;
    bool canonical;

    if (!p) {
        struct diag_list d;

        diag_init(&d, "fuzz.yaml");
        CHECK(policy_load_buffer("fuzz.yaml", (const uint8_t *)POLICY, sizeof(POLICY) - 1, &p,
                                 &d) == 0);
        diag_clear(&d);
    }
    if (size > TARGET_MAX || memchr(data, '\0', size))
        return 0;
    memcpy(target, data, size);
    target[size] = '\0';
    path_len = strcspn(target, "?");
    canonical = policy_path_canonical(target, path_len);
    if (canonical)
        check_decoded(target, path_len);

    policy_match_http(&p->rules[0], "GET", target, strlen(target), &v);
    CHECK(canonical || !v.allow);
    /* the same path with another query: the same decision */
    target[path_len] = '\0';
    memcpy(target + path_len, query, sizeof(query));
    policy_match_http(&p->rules[0], "GET", target, strlen(target), &vq);
    CHECK(v.allow == vq.allow && v.reason == vq.reason);
    return 0;
}
