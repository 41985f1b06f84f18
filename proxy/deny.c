/* Denial responses: TLS alerts and HTTP 403s. */
#include "deny.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hostname.h"
#include "policy.h"

#define TLS_ALERT 21
#define ALERT_FATAL 2
#define ALERT_ACCESS_DENIED 49
#define ALERT_UNRECOGNIZED_NAME 112

size_t deny_tls_alert(uint8_t out[DENY_TLS_ALERT_LEN], enum reason why)
{
    out[0] = TLS_ALERT;
    out[1] = 3;                 /* record version TLS 1.2, as 1.3 sends it too */
    out[2] = 3;
    out[3] = 0;
    out[4] = 2;
    out[5] = ALERT_FATAL;
    out[6] = why == REASON_NOT_ALLOWLISTED ? ALERT_UNRECOGNIZED_NAME : ALERT_ACCESS_DENIED;
    return DENY_TLS_ALERT_LEN;
}

/* HOST as printable ASCII (anything else '?'), at most 253 bytes, "-" when empty. */
static void safe_host(const char *host, char out[HOSTNAME_MAX + 1])
{
    if (!hostname_printable(out, HOSTNAME_MAX + 1, host, host ? strlen(host) : 0))
        snprintf(out, HOSTNAME_MAX + 1, "-");
}

size_t deny_http(char *out, size_t cap, const char *host, uint16_t port, enum reason why,
                 bool keep_alive, const char *hint)
{
    char safe[HOSTNAME_MAX + 1], body[HOSTNAME_MAX + 64 + DENY_HINT_MAX];
    int n, b;

    safe_host(host, safe);
    b = snprintf(body, sizeof(body), "sluice: %s:%u denied (%s)\n%s", safe, port,
                 reason_name(why), hint ? hint : "");
    if (b < 0 || (size_t)b >= sizeof(body))
        b = 0;
    n = snprintf(out, cap,
                 "HTTP/1.1 %s\r\n"
                 "Content-Type: text/plain; charset=us-ascii\r\n"
                 "Content-Length: %d\r\n"
                 "X-Sluice-Reason: %s\r\n"
                 "%s"
                 "\r\n%.*s", reason_is_upstream(why) ? "502 Bad Gateway" : "403 Forbidden", b,
                 reason_name(why), keep_alive ? "" : "Connection: close\r\n", b, body);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* Appends to OUT (DENY_HINT_MAX) at *OFF; what does not fit is cut. */
__attribute__((format(printf, 3, 4)))
static void add(char *out, size_t *off, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*off >= DENY_HINT_MAX - 1)
        return;
    va_start(ap, fmt);
    n = vsnprintf(out + *off, DENY_HINT_MAX - *off, fmt, ap);
    va_end(ap);
    if (n > 0)
        *off += (size_t)n < DENY_HINT_MAX - *off ? (size_t)n : DENY_HINT_MAX - 1 - *off;
}

void deny_hint(char out[DENY_HINT_MAX], const struct policy_rule *rule, enum reason why,
               const char *host, uint16_t port)
{
    char safe[HOSTNAME_MAX + 1];
    size_t off = 0, i, j;
    bool any = false;

    out[0] = '\0';
    safe_host(host, safe);
    if (why == REASON_PORT_NOT_ALLOWED && rule) {
        add(out, &off, "the rule at line %u of %s allows %s on port", rule->line,
            policy_file_base(rule->file), safe);
        for (i = 0; i < rule->n_ports; i++)
            add(out, &off, "%s %u", i ? "," : rule->n_ports > 1 ? "s" : "", rule->ports[i]);
        add(out, &off, "; listing %u there would allow this\n", port);
    } else if ((why == REASON_METHOD_NOT_ALLOWED || why == REASON_PATH_NOT_ALLOWED) && rule) {
        add(out, &off, "the rule at line %u of %s allows %s for:\n", rule->line,
            policy_file_base(rule->file), safe);
        for (i = 0; i < rule->n_http; i++) {
            const struct policy_http_rule *h = &rule->http[i];

            add(out, &off, "  methods");
            for (j = 0; j < h->n_methods; j++)
                add(out, &off, "%s %s", j ? "," : "", h->methods[j]);
            add(out, &off, "%s, paths", h->n_methods ? "" : " any");
            for (j = 0; j < h->n_paths; j++)
                add(out, &off, "%s %s", j ? "," : "", h->paths[j]);
            add(out, &off, "%s\n", h->n_paths ? "" : " any");
            any = true;
        }
        if (!any)
            add(out, &off, "  (no http entries)\n");
    } else if (why == REASON_NOT_ALLOWLISTED) {
        add(out, &off, "no rule names %s; a rule '- domain: %s' with ports [%u] would allow "
            "this\n", safe, safe, port);
    } else {
        add(out, &off, "%s\n", reason_describe(why));
    }
    add(out, &off, "this sandbox's recent denials: http://sluice.internal/\n");
}
