/*
 * The operator's endpoints of one proxy: Prometheus metrics over HTTP
 * (--metrics) and the control socket (--control) that sluicectl talks to.
 * Neither is reachable from the sandbox: netsetup sends all of its TCP to
 * the transparent listeners.
 */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include "proxy.h"

#define ADMIN_REQUEST_MAX 4096      /* a control request line */
#define ADMIN_CLIENTS_MAX 16        /* control connections at once */
#define ADMIN_TIMEOUT_S 10          /* to send a request, or read a reply */

struct admin;

/*
 * Binds METRICS ("ADDR:PORT") and CONTROL (a unix socket path, created
 * mode 0600); either may be NULL. Returns NULL, with the reason on stderr,
 * when one cannot be bound.
 */
struct admin *admin_new(struct proxy *px, const char *metrics, const char *control);

/* Closes both endpoints (the control socket's file is removed). Accepts NULL. */
void admin_free(struct admin *a);

#endif
