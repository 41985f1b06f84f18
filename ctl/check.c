/*
 * sluicectl check: validates a policy; every problem as FILE:LINE:COL. With
 * --ca, every inspect rule must lie inside the CA's name constraints too.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "ca.h"
#include "ctl.h"

struct policy *ctl_load(const char *path)
{
    struct diag_list d;
    struct policy *p;

    diag_init(&d, path);
    policy_load_file(path, &p, &d);
    diag_print(&d, stderr);
    diag_clear(&d);
    return p;
}

/* Each inspect rule of P inside CERT's constraints; prints the misses, returns 0 or 1. */
static int check_ca(const struct policy *p, const char *cert)
{
    struct ca_info info;
    struct diag_list d;
    char err[CA_ERR_MAX];
    size_t missing;

    if (ca_read(cert, &info, err) < 0) {
        log_warnx("%s", err);
        return 1;
    }
    diag_init(&d, p->file);
    missing = ca_check_policy(&info, p, cert, &d);
    diag_print(&d, stderr);
    diag_clear(&d);
    ca_info_clear(&info);
    return missing ? 1 : 0;
}

static size_t included_rules(const struct policy *p)
{
    size_t i, n = 0;

    for (i = 0; i < p->n_rules; i++)
        n += p->rules[i].file != p->file;
    return n;
}

int cmd_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    const char *ca = NULL;
    struct policy *p;
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != 'c')
            return log_usage("check: unknown or incomplete option '%s'", argv[optind - 1]);
        ca = optarg;
    }
    if (argc - optind != 1)
        return log_usage("check takes one POLICY file");
    p = ctl_load(argv[optind]);
    if (!p) {
        fprintf(stderr, "%s: invalid policy\n", argv[optind]);
        return 1;
    }
    rc = ca ? check_ca(p, ca) : 0;
    if (rc == 0) {
        printf("%s: ok, %zu rule%s", argv[optind], p->n_rules, p->n_rules == 1 ? "" : "s");
        if (p->n_includes)
            printf(" (%zu from %zu included file%s)", included_rules(p), p->n_includes,
                   p->n_includes == 1 ? "" : "s");
        printf(", mode %s, policy %s%s%s\n",
               p->settings.mode == POLICY_AUDIT ? "audit" : "enforce", p->hash,
               ca ? ", inspect rules inside the constraints of " : "", ca ? ca : "");
    } else {
        fprintf(stderr, "%s: invalid for the CA %s\n", argv[optind], ca);
    }
    policy_free(p);
    return rc;
}
