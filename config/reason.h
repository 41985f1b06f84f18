/*
 * The closed set of reason codes that every denial (and every limit) carries,
 * shared by the policy engine, the proxy and the flow log (docs/design.md; names: README).
 */
#ifndef SLUICE_REASON_H
#define SLUICE_REASON_H

#include <stdbool.h>

enum reason {
    REASON_NONE = 0,            /* allowed: no reason */
    REASON_NOT_ALLOWLISTED,
    REASON_PORT_NOT_ALLOWED,
    REASON_NO_SNI,
    REASON_INVALID_HOSTNAME,
    REASON_UNKNOWN_PROTOCOL,
    REASON_SNIFF_TIMEOUT,
    REASON_PRIVATE_DESTINATION,
    REASON_RESOLVE_FAILED,
    REASON_CONNECT_FAILED,
    REASON_RATE_LIMITED,
    REASON_TOO_MANY_CONNECTIONS,
    REASON_ECH_REJECTED,
    REASON_HOST_MISMATCH,
    REASON_METHOD_NOT_ALLOWED,
    REASON_PATH_NOT_ALLOWED,
    REASON_UPSTREAM_CERT_INVALID,
    REASON_REVOKED,
    REASON_BUDGET_EXCEEDED,
    REASON_COUNT
};

/* The wire name ("not_allowlisted"); "" for REASON_NONE, never NULL. */
const char *reason_name(enum reason r);

/* A one-line explanation for people ("no allowlist rule names this host"). */
const char *reason_describe(enum reason r);

/* Whether R says the way to the server failed (it could not be resolved,
 * reached or trusted) rather than the policy refusing: a 502, not a 403. */
bool reason_is_upstream(enum reason r);

#endif
