/*
 * Runs a fuzz target's entry point over files, without libFuzzer, so that CI
 * can replay the seed corpus and saved crashers with any compiler. Arguments
 * are files or directories (read one level deep); exits 1 when one cannot be
 * read. A crash in the target is the test failure.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define REPLAY_MAX_INPUT (64u << 20)    /* larger than any policy the loader accepts */

static int replay_file(const char *path, size_t *count)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    long end;
    FILE *f = fopen(path, "rb");
    int r = -1;

    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (end = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "replay: %s: cannot seek: %s\n", path, strerror(errno));
        goto out;
    }
    if ((unsigned long)end > REPLAY_MAX_INPUT) {
        fprintf(stderr, "replay: %s: larger than %u MiB\n", path, REPLAY_MAX_INPUT >> 20);
        goto out;
    }
    /* A copy of exactly LEN bytes, so ASan sees any read past the input. */
    buf = malloc(end > 0 ? (size_t)end : 1);
    if (!buf) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        goto out;
    }
    len = fread(buf, 1, (size_t)end, f);
    if (ferror(f)) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
        goto out;
    }
    LLVMFuzzerTestOneInput(buf, len);
    (*count)++;
    r = 0;
out:
    free(buf);
    fclose(f);
    return r;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays a directory's regular files in name order, so runs are repeatable. */
static int replay_dir(const char *dir, size_t *count)
{
    struct dirent *e;
    char **names = NULL, **nv;
    size_t n = 0, cap = 0, i;
    DIR *d = opendir(dir);
    int r = 0;

    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        char *path;
        struct stat st;

        if (e->d_name[0] == '.')
            continue;
        if (asprintf(&path, "%s/%s", dir, e->d_name) < 0) {
            r = -1;
            break;
        }
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            nv = realloc(names, cap * sizeof(*names));
            if (!nv) {
                free(path);
                r = -1;
                break;
            }
            names = nv;
        }
        names[n++] = path;
    }
    closedir(d);
    if (r < 0)
        fprintf(stderr, "replay: %s: out of memory\n", dir);
    if (n > 0)
        qsort(names, n, sizeof(*names), compare_names);
    for (i = 0; i < n; i++) {
        if (r == 0 && replay_file(names[i], count) < 0)
            r = -1;
        free(names[i]);
    }
    free(names);
    return r;
}

int main(int argc, char **argv)
{
    size_t count = 0;
    int i, failed = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n"
                "Runs the fuzz target once per file (directories: each file in them).\n"
                "Exit status: 0 all inputs ran, 1 an input could not be read or there\n"
                "were none.\n", argv[0]);
        return 1;
    }
    for (i = 1; i < argc; i++) {
        struct stat st;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failed = 1;
        } else if (S_ISDIR(st.st_mode)) {
            failed |= replay_dir(argv[i], &count) < 0;
        } else {
            failed |= replay_file(argv[i], &count) < 0;
        }
    }
    printf("replay: %zu input%s\n", count, count == 1 ? "" : "s");
    if (count == 0) {
        fprintf(stderr, "replay: no inputs found; check the paths given\n");
        failed = 1;
    }
    return failed;
}
