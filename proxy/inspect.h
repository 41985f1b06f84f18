/*
 * Inspect mode's flows (inspect.c): TLS terminated under the inspect-mode
 * CA, each HTTP request checked and its credentials injected, TLS to the
 * real server verified. Driven by conn.c and connect.c; a flow is in
 * inspect mode when c->in is set.
 */
#ifndef SLUICE_INSPECT_H
#define SLUICE_INSPECT_H

#include <stdbool.h>

#include "conn_int.h"

/* The SNI is allowed by an inspect rule: the sandbox's handshake, then its requests. */
enum step inspect_start(struct conn *c);

/* The upstream TCP connection is up: its TLS handshake, then the waiting request. */
enum step inspect_connected(struct conn *c);

/* Makes all the progress the flow can, and says which events it waits for. */
enum step inspect_pump(struct conn *c);

/* Forgets the upstream connection's TLS (the caller closes the socket). */
void inspect_upstream_drop(struct conn *c);

/*
 * The inspected flow is refused for WHY: inside the sandbox's TLS when it is
 * up (502 for an upstream failure, else 403), else nothing is said.
 */
void inspect_refuse(struct conn *c, enum reason why);

void inspect_free(struct conn *c);

#endif
