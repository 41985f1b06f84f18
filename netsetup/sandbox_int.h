/*
 * What sandbox.c (the lifecycle) shares with verify.c (reading it back and
 * probing it), and nothing else uses.
 */
#ifndef SLUICE_SANDBOX_INT_H
#define SLUICE_SANDBOX_INT_H

#include "nft_rules.h"
#include "rtnl.h"
#include "sandbox.h"

#define TEXT_MAX 8192               /* one chain's rules as text */

/* Notes the step about to be tried in E: if it fails, the message names it. */
__attribute__((format(printf, 2, 3)))
void sandbox_note(struct ns_error *e, const char *fmt, ...);

/* Keeps RT's call text in E when R is an error; returns R. */
int sandbox_rtnl_check(struct ns_error *e, const struct rtnl *rt, int r);

/* The rule builder's view of S. */
void sandbox_nft_view(const struct sandbox *s, struct nft_sandbox *n);

#endif
