/*
 * What a denied client is told (docs/design.md, P3), so that agents and people stop
 * retrying instead of waiting on a hang: a fatal TLS alert for TLS, a 403
 * with the reason for HTTP. Pure builders into a caller's buffer.
 */
#ifndef SLUICE_DENY_H
#define SLUICE_DENY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reason.h"

struct policy_rule;

#define DENY_TLS_ALERT_LEN 7
#define DENY_HTTP_MAX 2048
#define DENY_HINT_MAX 1024

/* A fatal alert record: unrecognized_name for names no rule knows, else access_denied. */
size_t deny_tls_alert(uint8_t out[DENY_TLS_ALERT_LEN], enum reason why);

/*
 * "HTTP/1.1 403 Forbidden" with X-Sluice-Reason and the one-line body
 * "sluice: HOST:PORT denied (REASON)". HOST is escaped to printable ASCII.
 * A reason that says the upstream failed (reason_is_upstream()) makes it a
 * 502 Bad Gateway instead. KEEP_ALIVE leaves out "Connection: close" (the
 * next request may follow).
 */
size_t deny_http(char *out, size_t cap, const char *host, uint16_t port, enum reason why,
                 bool keep_alive, const char *hint);

/*
 * What would allow the refused request, for the sandbox to act on (feedback:
 * true): for a port or a method or path the deciding RULE (NULL: none) does
 * not list, that rule's line and what it does allow; for a name no rule
 * knows, the rule that would; and where the sandbox's recent denials are.
 * Lines end in a newline; OUT holds DENY_HINT_MAX.
 */
void deny_hint(char out[DENY_HINT_MAX], const struct policy_rule *rule, enum reason why,
               const char *host, uint16_t port);

#endif
