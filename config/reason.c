/* Names and descriptions of the reason codes; the table is the closed set. */
#include "reason.h"

static const struct {
    const char *name;
    const char *text;
} reasons[REASON_COUNT] = {
    [REASON_NONE] = {"", "allowed"},
    [REASON_NOT_ALLOWLISTED] = {"not_allowlisted", "no allowlist rule names this host"},
    [REASON_PORT_NOT_ALLOWED] = {"port_not_allowed",
                                 "a rule names this host, but not on this port"},
    [REASON_NO_SNI] = {"no_sni", "the TLS ClientHello carries no usable server name"},
    [REASON_INVALID_HOSTNAME] = {"invalid_hostname",
                                 "the name is not a valid hostname (or is an IP literal)"},
    [REASON_UNKNOWN_PROTOCOL] = {"unknown_protocol", "the flow is neither TLS nor HTTP"},
    [REASON_SNIFF_TIMEOUT] = {"sniff_timeout",
                              "the ClientHello or request head did not arrive in time"},
    [REASON_PRIVATE_DESTINATION] = {"private_destination",
                                    "the name resolves to a special-purpose address"},
    [REASON_RESOLVE_FAILED] = {"resolve_failed", "the name could not be resolved"},
    [REASON_CONNECT_FAILED] = {"connect_failed", "the upstream connection failed"},
    [REASON_RATE_LIMITED] = {"rate_limited", "a rate limit was exceeded"},
    [REASON_TOO_MANY_CONNECTIONS] = {"too_many_connections",
                                     "the sandbox has too many open connections"},
    [REASON_ECH_REJECTED] = {"ech_rejected", "the ClientHello uses encrypted client hello"},
    [REASON_HOST_MISMATCH] = {"host_mismatch", "the HTTP Host does not match the name"},
    [REASON_METHOD_NOT_ALLOWED] = {"method_not_allowed",
                                   "the rule's http section does not allow this method"},
    [REASON_PATH_NOT_ALLOWED] = {"path_not_allowed",
                                 "the rule's http section does not allow this path"},
    [REASON_UPSTREAM_CERT_INVALID] = {"upstream_cert_invalid",
                                      "the upstream certificate did not verify"},
    [REASON_REVOKED] = {"revoked", "a reloaded policy no longer allows this flow"},
    [REASON_BUDGET_EXCEEDED] = {"budget_exceeded",
                                "this name's data budget for the window is spent"},
};

const char *reason_name(enum reason r)
{
    if ((unsigned)r >= REASON_COUNT)
        return "";
    return reasons[r].name;
}

bool reason_is_upstream(enum reason r)
{
    return r == REASON_RESOLVE_FAILED || r == REASON_CONNECT_FAILED ||
           r == REASON_PRIVATE_DESTINATION || r == REASON_UPSTREAM_CERT_INVALID;
}

const char *reason_describe(enum reason r)
{
    if ((unsigned)r >= REASON_COUNT)
        return "";
    return reasons[r].text;
}
