/* Collects and prints positioned diagnostics. */
#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void diag_init(struct diag_list *d, const char *file)
{
    memset(d, 0, sizeof(*d));
    d->file = strdup(file ? file : "<policy>");
}

void diag_clear(struct diag_list *d)
{
    size_t i;

    for (i = 0; i < d->n; i++) {
        free(d->v[i].msg);
        free(d->v[i].file);
    }
    free(d->v);
    free(d->file);
    memset(d, 0, sizeof(*d));
}

static void vdiag_add(struct diag_list *d, const char *file, enum diag_level level,
                      unsigned line, unsigned col, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

static void vdiag_add(struct diag_list *d, const char *file, enum diag_level level,
                      unsigned line, unsigned col, const char *fmt, va_list ap)
{
    struct diag *e;

    if (level == DIAG_ERROR)
        d->n_errors++;
    if (d->n == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 8;
        struct diag *nv = realloc(d->v, ncap * sizeof(*nv));

        if (!nv)
            return;     /* n_errors already counts it: the load still fails */
        d->v = nv;
        d->cap = ncap;
    }
    e = &d->v[d->n];
    e->level = level;
    e->line = line;
    e->col = col;
    e->file = NULL;
    if (file && (!d->file || strcmp(file, d->file) != 0) && !(e->file = strdup(file)))
        return;
    if (vasprintf(&e->msg, fmt, ap) < 0) {
        free(e->file);
        return;
    }
    d->n++;
}

void diag_add(struct diag_list *d, enum diag_level level, unsigned line, unsigned col,
              const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vdiag_add(d, NULL, level, line, col, fmt, ap);
    va_end(ap);
}

void diag_add_in(struct diag_list *d, const char *file, enum diag_level level, unsigned line,
                 unsigned col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vdiag_add(d, file, level, line, col, fmt, ap);
    va_end(ap);
}

const char *diag_file(const struct diag_list *d, const struct diag *e)
{
    return e->file ? e->file : d->file;
}

void diag_print(const struct diag_list *d, FILE *out)
{
    size_t i;

    for (i = 0; i < d->n; i++) {
        const struct diag *e = &d->v[i];
        const char *lvl = e->level == DIAG_WARNING ? "warning: " : "";

        if (e->line)
            fprintf(out, "%s:%u:%u: %s%s\n", diag_file(d, e), e->line, e->col, lvl, e->msg);
        else
            fprintf(out, "%s: %s%s\n", diag_file(d, e), lvl, e->msg);
    }
}
