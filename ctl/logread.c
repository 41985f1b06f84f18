/* Streaming flow logs for sluicectl suggest and report (flowrec.h): plain or gzip. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "flowrec.h"

int flowrec_read(const char *who, const char *path,
                 int (*fn)(const struct flowrec *r, void *arg), void *arg, uint64_t *bad)
{
    gzFile gz = (errno = 0, strcmp(path, "-") == 0 ? gzdopen(dup(0), "rb") : gzopen(path, "rb"));
    char *line = malloc(FLOWREC_LINE_MAX + 2);
    struct flowrec *r = malloc(sizeof(*r));
    int rc = 0;

    if (!gz || !line || !r) {
        fprintf(stderr, "%s: %s: %s\n", who, path, errno ? strerror(errno) : "cannot open");
        if (gz)
            gzclose(gz);
        free(line);
        free(r);
        return -1;
    }
    gzbuffer(gz, 128 * 1024);
    while (rc >= 0 && gzgets(gz, line, FLOWREC_LINE_MAX + 2)) {
        size_t len = strlen(line);

        if (len > 0 && line[len - 1] == '\n') {
            line[--len] = '\0';
        } else if (!gzeof(gz)) {        /* longer than any record: skip to its end */
            int ch;

            while ((ch = gzgetc(gz)) != -1 && ch != '\n')
                ;
            (*bad)++;
            continue;
        }
        if (len == 0)
            continue;
        if (flowrec_parse(line, len, r) < 0) {
            (*bad)++;
            continue;
        }
        rc = fn(r, arg);
    }
    if (rc >= 0 && !gzeof(gz)) {
        int err;
        const char *msg = gzerror(gz, &err);

        fprintf(stderr, "%s: %s: %s\n", who, path, err ? msg : "read error");
        rc = -1;
    }
    gzclose(gz);
    free(line);
    free(r);
    return rc < 0 ? -1 : 0;
}
