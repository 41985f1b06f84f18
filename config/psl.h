/*
 * Public suffixes, from libpsl and Debian's publicsuffix list (the newer of
 * the list the library was built with and /usr/share/publicsuffix): whether a
 * name is one under which anyone may register names (com, co.uk, and the
 * list's private section too: github.io, s3.amazonaws.com), and a name's
 * registrable domain. Loaded once per process, on first use.
 */
#ifndef SLUICE_PSL_H
#define SLUICE_PSL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Whether NAME (lowercase, no trailing dot) is a public suffix. A single label
 * always is (an unlisted top-level domain such as "internal" or "test" too).
 */
bool psl_name_is_public(const char *name);

/*
 * NAME's registrable domain (the public suffix and one label more), copied
 * into OUT (CAP bytes); false when NAME has none (it is a public suffix
 * itself) or it does not fit.
 */
bool psl_registrable(const char *name, char *out, size_t cap);

#endif
