/*
 * Sandbox names and the names derived from them (interfaces, nft chains).
 * Pure functions: a NAME that fails sandbox_name_valid() is never passed on.
 */
#ifndef SLUICE_SANDBOX_NAME_H
#define SLUICE_SANDBOX_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define SANDBOX_NAME_MAX 15     /* [a-z0-9-]{1,15}, as netsetup's usage says */
#define IFNAME_LEN 16           /* IFNAMSIZ, NUL included */

/* True when S is 1-15 characters of [a-z0-9-]. */
bool sandbox_name_valid(const char *s);

/*
 * The host-side interface name for sandbox NAME: "sl-NAME" when that fits in
 * 15 characters, otherwise "sl-" + the first 7 characters + a 5-hex-digit hash
 * of the whole name, so long names stay readable and distinct.
 */
void sandbox_host_ifname(const char *name, char out[IFNAME_LEN]);

#endif
