/* Denial responses: TLS alerts and HTTP 403s. */
#include "deny.h"

#include <stdio.h>
#include <string.h>

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

size_t deny_http(char *out, size_t cap, const char *host, uint16_t port, enum reason why,
                 bool keep_alive)
{
    char safe[256], body[384];
    size_t i, j = 0;
    int n, b;

    for (i = 0; host && host[i] && j < sizeof(safe) - 1; i++)
        safe[j++] = host[i] > 0x20 && host[i] < 0x7f ? host[i] : '?';
    safe[j] = '\0';
    b = snprintf(body, sizeof(body), "sluice: %s:%u denied (%s)\n", j ? safe : "-", port,
                 reason_name(why));
    if (b < 0 || (size_t)b >= sizeof(body))
        b = 0;
    n = snprintf(out, cap,
                 "HTTP/1.1 %s\r\n"
                 "Content-Type: text/plain; charset=us-ascii\r\n"
                 "Content-Length: %d\r\n"
                 "X-Sluice-Reason: %s\r\n"
                 "%s"
                 "\r\n%s", reason_is_upstream(why) ? "502 Bad Gateway" : "403 Forbidden", b,
                 reason_name(why), keep_alive ? "" : "Connection: close\r\n", body);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}
