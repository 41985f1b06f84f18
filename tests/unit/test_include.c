/*
 * include: rule files merged into a policy. A table of file trees, each loaded
 * from a fresh directory: what loads (rules, their files, the hash) and every
 * error with the file, line and column it must name.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "policy.h"

struct file {
    const char *path;           /* under the test's directory */
    const char *text;
};

struct tree_row {
    const char *why;
    struct file files[5];       /* files[0] is the policy */
    size_t rules;               /* when it loads: the rules, and of them from includes */
    size_t included;
    const char *err_file;       /* else: the first error's file (relative), line, col, */
    unsigned line, col;
    const char *msg;            /* and a part of its message */
};

static const struct tree_row rows[] = {
    {"rules of a nested include, relative to the including file's directory",
     {{"p.yaml", "version: 1\ninclude: [sub/a.yaml]\negress:\n  - domain: main.test\n"},
      {"sub/a.yaml", "egress:\n  - domain: a.test\ninclude: [b.yaml]\n"},
      {"sub/b.yaml", "version: 1\negress:\n  - domain: b.test\n    ports: [80]\n"}},
     3, 2, NULL, 0, 0, NULL},
    {"an include alone: no warning about a missing egress",
     {{"p.yaml", "version: 1\ninclude:\n  - a.yaml\n"},
      {"a.yaml", "egress:\n  - cidr: 192.0.2.0/24\n    ports: [5432]\n"}},
     1, 1, NULL, 0, 0, NULL},
    {"an error inside an included file is at that file's line and column",
     {{"p.yaml", "version: 1\ninclude: [a.yaml]\n"},
      {"a.yaml", "egress:\n  - domain: a.test\n    ports: [70000]\n"}},
     0, 0, "a.yaml", 3, 13, "port 70000 out of range"},
    {"a YAML syntax error in an included file",
     {{"p.yaml", "version: 1\ninclude: [a.yaml]\n"},
      {"a.yaml", "egress:\n  - domain: [a.test\n"}},
     0, 0, "a.yaml", 3, 1, "YAML syntax error"},
    {"a missing file is an error at the include's item",
     {{"p.yaml", "version: 1\ninclude:\n  - here.yaml\n  - gone.yaml\n"},
      {"here.yaml", "egress: []\n"}},
     0, 0, "p.yaml", 4, 5, "gone.yaml: cannot open: No such file"},
    {"a cycle",
     {{"p.yaml", "version: 1\ninclude: [a.yaml]\n"},
      {"a.yaml", "include: [b.yaml]\n"},
      {"b.yaml", "include: [a.yaml]\n"}},
     0, 0, "b.yaml", 1, 11, "is a cycle"},
    {"the policy including itself",
     {{"p.yaml", "version: 1\ninclude: [a.yaml]\n"},
      {"a.yaml", "include: [p.yaml]\n"}},
     0, 0, "a.yaml", 1, 11, "is a cycle"},
    {"the same file twice, through two others",
     {{"p.yaml", "version: 1\ninclude: [a.yaml, b.yaml]\n"},
      {"a.yaml", "include: [c.yaml]\n"},
      {"b.yaml", "include: [./c.yaml]\n"},
      {"c.yaml", "egress:\n  - domain: c.test\n"}},
     0, 0, "b.yaml", 1, 11, "/a.yaml:1:11); include it once"},
    {"the same rule in two files",
     {{"p.yaml", "version: 1\ninclude: [a.yaml]\negress:\n  - domain: \"*.dup.test\"\n"},
      {"a.yaml", "egress:\n  - domain: x.test\n  - domain: \"*.dup.test\"\n"}},
     0, 0, "p.yaml", 4, 5, "/a.yaml:3:5); keep one of the two"},
    {"a setting in an included file",
     {{"p.yaml", "version: 1\ninclude: [a.yaml]\n"},
      {"a.yaml", "egress: []\ndns:\n  unlisted: refused\n"}},
     0, 0, "a.yaml", 2, 1, "'dns' is a setting of the policy"},
    {"a broad wildcard in an included file needs allow_broad there",
     {{"p.yaml", "version: 1\ninclude: [a.yaml]\n"},
      {"a.yaml", "egress:\n  - domain: \"*.github.io\"\n"}},
     0, 0, "a.yaml", 2, 13, "under the public suffix 'github.io'"},
    {"include is a list of paths",
     {{"p.yaml", "version: 1\ninclude: a.yaml\n"}},
     0, 0, "p.yaml", 2, 10, "include must be a list"},
    {"an empty path",
     {{"p.yaml", "version: 1\ninclude: [\"\"]\n"}},
     0, 0, "p.yaml", 2, 11, "this one is empty"},
    {"a directory",
     {{"p.yaml", "version: 1\ninclude: [sub]\n"}, {"sub/x.yaml", "egress: []\n"}},
     0, 0, "p.yaml", 2, 11, "not a regular file"},
};

static char dir[] = "/tmp/sluice-include-XXXXXX";

static void put(const char *rel, const char *text)
{
    char path[512], *slash;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void clear_dir(const struct file *files, size_t n)
{
    char path[512];
    size_t i;

    for (i = 0; i < n && files[i].path; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i].path);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/sub", dir);
    rmdir(path);
}

static struct policy *load_tree(const struct file *files, size_t n, struct diag_list *d)
{
    char path[512];
    struct policy *p;
    size_t i;

    for (i = 0; i < n && files[i].path; i++)
        put(files[i].path, files[i].text);
    snprintf(path, sizeof(path), "%s/%s", dir, files[0].path);
    diag_init(d, path);
    policy_load_file(path, &p, d);
    return p;
}

/* The first error of D, or NULL. */
static const struct diag *first_error(const struct diag_list *d)
{
    size_t i;

    for (i = 0; i < d->n; i++)
        if (d->v[i].level == DIAG_ERROR)
            return &d->v[i];
    return NULL;
}

static void test_trees(void **state)
{
    size_t i, k, n;

    (void)state;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct tree_row *r = &rows[i];
        const size_t nf = sizeof(r->files) / sizeof(r->files[0]);
        struct diag_list d;
        struct policy *p = load_tree(r->files, nf, &d);
        const struct diag *e = first_error(&d);
        char want[512];

        print_message("# %s\n", r->why);
        if (!r->err_file) {
            if (!p) {
                diag_print(&d, stderr);
                fail_msg("row %zu (%s) did not load", i, r->why);
            }
            assert_int_equal(p->n_rules, r->rules);
            for (k = 0, n = 0; k < p->n_rules; k++)
                n += p->rules[k].file != p->file;
            assert_int_equal(n, r->included);
            for (k = 0; k < d.n; k++)
                assert_int_not_equal(d.v[k].level, DIAG_ERROR);
            assert_null(strstr(d.n ? d.v[0].msg : "", "no 'egress'"));
        } else {
            if (p || !e)
                fail_msg("row %zu (%s) loaded", i, r->why);
            snprintf(want, sizeof(want), "%s/%s", dir, r->err_file);
            if (strcmp(diag_file(&d, e), want) != 0 || e->line != r->line ||
                e->col != r->col || !strstr(e->msg, r->msg))
                fail_msg("row %zu (%s): got %s:%u:%u: %s", i, r->why, diag_file(&d, e),
                         e->line, e->col, e->msg);
        }
        policy_free(p);
        diag_clear(&d);
        clear_dir(r->files, nf);
    }
}

/* A rule names the file it is in; the policy's hash covers what it includes. */
static void test_files_and_hash(void **state)
{
    const struct file tree[] = {
        {"p.yaml", "version: 1\ninclude: [sub/a.yaml]\negress:\n  - domain: main.test\n"},
        {"sub/a.yaml", "egress:\n  - domain: a.test\n"},
    };
    char main_only[POLICY_HASH_HEX + 1], first[POLICY_HASH_HEX + 1], want[512];
    struct policy_verdict v;
    struct diag_list d;
    struct policy *p;

    (void)state;
    p = load_tree(tree, 2, &d);
    assert_non_null(p);
    assert_int_equal(p->n_includes, 1);
    snprintf(want, sizeof(want), "%s/sub/a.yaml", dir);
    assert_string_equal(p->includes[0], want);
    policy_match_host(p, (const uint8_t *)"a.test", 6, 443, &v);
    assert_true(v.allow);
    assert_ptr_equal(v.rule->file, p->includes[0]);
    assert_int_equal(v.rule->line, 2);
    policy_match_host(p, (const uint8_t *)"main.test", 9, 443, &v);
    assert_ptr_equal(v.rule->file, p->file);
    memcpy(first, p->hash, sizeof(first));
    policy_free(p);
    diag_clear(&d);

    /* the included file changed, the policy did not: another hash (a reload applies it) */
    put("sub/a.yaml", "egress:\n  - domain: a.test\n    ports: [80]\n");
    p = load_tree(tree, 1, &d);
    assert_non_null(p);
    assert_string_not_equal(p->hash, first);
    policy_free(p);
    diag_clear(&d);

    /* with no include, the hash is still the file's own SHA-256 (the records' promise) */
    put("p.yaml", "version: 1\negress:\n  - domain: main.test\n");
    p = load_tree(tree, 0, &d);
    assert_non_null(p);
    memcpy(main_only, p->hash, sizeof(main_only));
    assert_string_equal(main_only, "fdc5e3fe193c");
    policy_free(p);
    diag_clear(&d);
    clear_dir(tree, 2);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trees),
        cmocka_unit_test(test_files_and_hash),
    };
    int r;

    if (!mkdtemp(dir))
        return 1;
    r = cmocka_run_group_tests(tests, NULL, NULL);
    nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);    /* what a failed row left too */
    return r;
}
