/*
 * sluice-netsetup's command line: a command's arguments parsed into one struct
 * with no I/O, so that main() only checks privilege and executes, and the
 * parser can be unit-tested and fuzzed without touching the network.
 */
#ifndef SLUICE_NETSETUP_ARGS_H
#define SLUICE_NETSETUP_ARGS_H

#include <stdbool.h>

#include "sandbox.h"

/* Longest usage message, NUL included; an argument quoted in it is cut to fit. */
#define NETSETUP_ERR_MAX 1024

#define NETSETUP_NAMES_MAX 4096     /* names in one up or down */

struct netsetup_args {
    const char *name;           /* the sandbox NAME (points into ARGV), or NULL */
    char **names;               /* up, down: every NAME given (names[0] == name) */
    int n_names;
    const char *from_file;      /* up, down --from-file FILE|-: a NAME [options] a line */
    const char *peer;           /* link, unlink: NAME2 */
    struct forward forward;     /* forward; unforward: proto (0: both), addr and port */
    struct link link;           /* link --ports */
    bool json;                  /* --json */
    bool down_pod;              /* down --pod */
    bool verify_pod;            /* verify --pod */
    struct up_opts up;          /* up, attach */
    struct pod_opts pod;        /* pod */
};

/*
 * Parses the arguments of command CMD ("up", "attach", "pod", "down", "status",
 * "verify", "forward", "unforward", "link" or "unlink"); ARGV[0] is the command
 * word itself, as main() passes it on.
 * getopt_long may reorder ARGV, and strings in *A point into it.
 * Returns 0, or -EINVAL with the message in ERR (no "sluice-netsetup: "
 * prefix, no hint), or -ENOENT when CMD is not a command.
 */
int netsetup_args_parse(const char *cmd, int argc, char **argv, struct netsetup_args *a,
                        char err[NETSETUP_ERR_MAX]);

/* True, with the message in ERR, when NAME is not a valid sandbox name. */
bool netsetup_name_error(const char *name, char err[NETSETUP_ERR_MAX]);

#endif
