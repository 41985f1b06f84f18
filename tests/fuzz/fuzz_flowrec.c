/*
 * Fuzz target for flowrec_parse, the flow-log reader behind `sluicectl
 * suggest` (logs are files anyone may edit, cut or replace). The input is one
 * line. Checked: no overrun (ASan), every string field NUL-terminated and of
 * printable ASCII only, and a line that parses still parses after a
 * whitespace-only change around it and gives the same record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowrec.h"
#include "fuzz.h"


static void check_str(const char *s, size_t size)
{
    size_t i, n = strnlen(s, size);

    CHECK(n < size);
    for (i = 0; i < n; i++)
        CHECK(s[i] >= 0x20 && s[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct flowrec r, again;
    char *padded;

    if (flowrec_parse((const char *)data, size, &r) < 0)
        return 0;
    check_str(r.ts, sizeof(r.ts));
    check_str(r.sandbox, sizeof(r.sandbox));
    check_str(r.event, sizeof(r.event));
    check_str(r.proto, sizeof(r.proto));
    check_str(r.verdict, sizeof(r.verdict));
    check_str(r.reason, sizeof(r.reason));
    check_str(r.host, sizeof(r.host));
    check_str(r.qname, sizeof(r.qname));
    check_str(r.orig_dst, sizeof(r.orig_dst));
    if (size + 2 > FLOWREC_LINE_MAX)
        return 0;
    padded = malloc(size + 2);
    if (!padded)
        return 0;
    padded[0] = ' ';
    memcpy(padded + 1, data, size);
    padded[size + 1] = '\t';
    CHECK(flowrec_parse(padded, size + 2, &again) == 0);
    CHECK(memcmp(&r, &again, sizeof(r)) == 0);
    free(padded);
    return 0;
}
