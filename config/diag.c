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

    for (i = 0; i < d->n; i++)
        free(d->v[i].msg);
    free(d->v);
    free(d->file);
    memset(d, 0, sizeof(*d));
}

void diag_add(struct diag_list *d, enum diag_level level, unsigned line, unsigned col,
              const char *fmt, ...)
{
    struct diag *e;
    va_list ap;
    int r;

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
    va_start(ap, fmt);
    r = vasprintf(&e->msg, fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    d->n++;
}

void diag_print(const struct diag_list *d, FILE *out)
{
    size_t i;

    for (i = 0; i < d->n; i++) {
        const struct diag *e = &d->v[i];
        const char *lvl = e->level == DIAG_WARNING ? "warning: " : "";

        if (e->line)
            fprintf(out, "%s:%u:%u: %s%s\n", d->file, e->line, e->col, lvl, e->msg);
        else
            fprintf(out, "%s: %s%s\n", d->file, lvl, e->msg);
    }
}
