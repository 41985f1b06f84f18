/*
 * Diagnostics: errors and warnings about a file, each with its position, in
 * the FILE:LINE:COL: form editors and people can jump to.
 */
#ifndef SLUICE_DIAG_H
#define SLUICE_DIAG_H

#include <stdio.h>
#include <stddef.h>

#define DIAG_MAX_ERRORS 50      /* past this, one "too many errors" and stop */

enum diag_level { DIAG_ERROR, DIAG_WARNING };

struct diag {
    enum diag_level level;
    unsigned line, col;         /* 1-based; 0 when the problem has no position */
    char *file;                 /* the file LINE:COL are in when not the list's own (an
                                   included file), else NULL */
    char *msg;
};

struct diag_list {
    char *file;                 /* name used in messages */
    struct diag *v;
    size_t n, cap;
    size_t n_errors;
};

void diag_init(struct diag_list *d, const char *file);
void diag_clear(struct diag_list *d);

/* Records a problem; allocation failure is itself reported as an error. */
void diag_add(struct diag_list *d, enum diag_level level, unsigned line, unsigned col,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The same for a position in FILE (NULL: the list's own file). */
void diag_add_in(struct diag_list *d, const char *file, enum diag_level level, unsigned line,
                 unsigned col, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The file entry E of D is about. */
const char *diag_file(const struct diag_list *d, const struct diag *e);

/* Prints every entry as "FILE:LINE:COL: msg" ("... warning: msg" for warnings). */
void diag_print(const struct diag_list *d, FILE *out);

#endif
