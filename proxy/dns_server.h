/*
 * The DNS service (docs/design.md, P6): every DNS packet the sandbox sends, to any
 * address, is answered here. Names the policy allows are resolved through
 * the same resolver and cache as the TCP path; any other name is answered
 * NXDOMAIN (or REFUSED) and never forwarded, so no data leaves in names.
 */
#ifndef SLUICE_DNS_SERVER_H
#define SLUICE_DNS_SERVER_H

#include "proxy.h"

#define DNS_TCP_IDLE_MS 10000       /* a TCP client silent this long is dropped */
#define DNS_TCP_CLIENTS_MAX 64      /* concurrent TCP clients; more are refused */
#define DNS_PENDING_MAX 256         /* queries waiting on the resolver at once */

struct dns_server;

/* Binds UDP and TCP on SPEC ("ADDR:PORT" or "[V6]:PORT"); NULL (logged) on failure. */
struct dns_server *dns_server_new(struct proxy *px, const char *spec);
void dns_server_free(struct dns_server *s);

#endif
