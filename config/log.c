/*
 * One prefix for every line a program writes to standard error.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static const char *log_prog = "sluice";

void log_init(const char *prog)
{
    log_prog = prog;
}

void log_warnx(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", log_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int log_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", log_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see '%s --help')\n", log_prog);
    return LOG_EXIT_USAGE;
}
