/*
 * sluice-proxy's privilege drop (docs/design.md, P8): once every socket is bound and every
 * file opened, become an unprivileged user, give up every capability, set
 * no_new_privs and confine the process to the syscalls it uses from then on.
 */
#ifndef SLUICE_PRIVDROP_H
#define SLUICE_PRIVDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The user a root-started proxy becomes when --user is not given: this one if
 * it exists, else PRIVDROP_FALLBACK_USER. */
#define PRIVDROP_DEFAULT_USER "sluice"
#define PRIVDROP_FALLBACK_USER "nobody"

/* What privdrop_apply() did, for the startup line and for tests. */
struct privdrop_result {
    uid_t uid;
    gid_t gid;
    char user[64];              /* the user name, or the number if it has none */
    bool switched;              /* the process changed user (it was root) */
    bool bounding_dropped;      /* false: no CAP_SETPCAP to empty the bounding set */
    bool seccomp;               /* the filter is installed */
};

/*
 * Drops everything: USER (NULL: the default above; a name or a numeric UID)
 * when the process is root, otherwise it stays who it is; then every
 * capability, no_new_privs, and with SECCOMP the syscall filter. Returns 0, or
 * -errno with a message naming the step, the cause and the fix in ERR. A
 * failure leaves the process in an unknown state: the caller must exit.
 */
int privdrop_apply(const char *user, bool seccomp, struct privdrop_result *out, char *err,
                   size_t errlen);

/* Installs the steady-state syscall filter alone (default action: kill the
 * process). Returns 0 or -errno. privdrop_apply() calls it last. */
int privdrop_seccomp_install(void);

/* Rows in the allowlist table (a syscall restricted by argument may take
 * several rows), and how many of them are for sanitizer builds only. */
size_t privdrop_syscall_rows(size_t *sanitizer_rows);

#endif
