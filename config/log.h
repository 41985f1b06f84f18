/*
 * Messages for people on standard error, each line prefixed with the
 * program's name: one helper for sluice-proxy, sluice-netsetup and sluicectl.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#define LOG_EXIT_USAGE 2

/* Sets the prefix ("sluice-proxy"); until then it is "sluice". */
void log_init(const char *prog);

/* "PROG: message" */
__attribute__((format(printf, 1, 2)))
void log_warnx(const char *fmt, ...);

/* "PROG: message (see 'PROG --help')"; returns LOG_EXIT_USAGE. */
__attribute__((format(printf, 1, 2)))
int log_usage(const char *fmt, ...);

#endif
