/*
 * sluicectl check: validates a policy; every problem as FILE:LINE:COL.
 */
#include <stdio.h>

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

int cmd_check(int argc, char **argv)
{
    struct policy *p;

    if (argc != 2)
        return log_usage("check takes one POLICY file");
    p = ctl_load(argv[1]);
    if (!p) {
        fprintf(stderr, "%s: invalid policy\n", argv[1]);
        return 1;
    }
    printf("%s: ok, %zu rule%s, mode %s, policy %s\n", argv[1], p->n_rules,
           p->n_rules == 1 ? "" : "s",
           p->settings.mode == POLICY_AUDIT ? "audit" : "enforce", p->hash);
    policy_free(p);
    return 0;
}
