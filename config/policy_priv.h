/* Between the policy loader and the compiler; not part of the interface. */
#ifndef SLUICE_POLICY_PRIV_H
#define SLUICE_POLICY_PRIV_H

#include "policy.h"

/* An empty policy with default settings, owned by the caller. */
struct policy *policy_new(const char *file);

/*
 * Builds the lookup structures from p->rules and p->allow_ranges; reports
 * duplicate rules to D. Returns 0, -EINVAL (errors in D) or -ENOMEM.
 */
int policy_compile(struct policy *p, struct diag_list *d);

void policy_rule_clear(struct policy_rule *r);

#endif
