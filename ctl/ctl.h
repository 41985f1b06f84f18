/*
 * sluicectl's commands, one file each (check.c, explain.c, control.c), and
 * what they share. main.c holds the table they are dispatched from.
 */
#ifndef SLUICE_CTL_H
#define SLUICE_CTL_H

#include "log.h"
#include "policy.h"

#define CTL_BYTES_MAX 24

/* N bytes as people read them: "512 B", "1.5 MiB". */
void ctl_bytes(uint64_t n, char out[CTL_BYTES_MAX]);

/* Loads PATH, printing diagnostics to stderr; NULL when it has errors. */
struct policy *ctl_load(const char *path);

/* Each takes its own argv (argv[0] is the command) and returns the exit code. */
int cmd_check(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_control(int argc, char **argv);
int cmd_ca(int argc, char **argv);
int cmd_suggest(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_graph(int argc, char **argv);

#endif
