/*
 * One prefix for every line a program writes to standard error.
 */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

static const char *log_prog = "sluice";

void log_init(const char *prog)
{
    log_prog = prog;
}

__attribute__((format(printf, 2, 0)))
static void log_line(bool usage, const char *fmt, va_list ap)
{
    fprintf(stderr, "%s: ", log_prog);
    vfprintf(stderr, fmt, ap);
    if (usage)
        fprintf(stderr, " (see '%s --help')", log_prog);
    fputc('\n', stderr);
}

void log_warnx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_line(false, fmt, ap);
    va_end(ap);
}

int log_usage(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_line(true, fmt, ap);
    va_end(ap);
    return LOG_EXIT_USAGE;
}
