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

/* Takes the state lock (noted in E): an fd for state_unlock(), or -errno. */
int sandbox_lock(struct ns_error *e);

/* Sends B, every ACK checked; on failure E names the message the kernel refused. */
int sandbox_nft_commit(struct ns_error *e, struct nft_batch *b);

/* Keeps RT's call text in E when R is an error; returns R. */
int sandbox_rtnl_check(struct ns_error *e, const struct rtnl *rt, int r);

/* The rule builder's view of S. */
void sandbox_nft_view(const struct sandbox *s, struct nft_sandbox *n);

/* ... and of S's forward F; KEY (FORWARD_KEY_LEN) holds its name. */
void sandbox_forward_view(const struct sandbox *s, const struct forward *f, char *key,
                          struct nft_forward *out);

/* Adds every forward of S to B (what up's rules plus forward's make). */
int sandbox_build_forwards(struct nft_batch *b, const struct sandbox *s);

/* Sets S's interface's forwarding and route_localnet from the records ALL (N). */
int sandbox_peer_sysctls(struct ns_error *e, const struct sandbox *s,
                         const struct sandbox *all, size_t n);

/* down: adds to B the removal of S's forward rules and of the link elements
 * from and to S (ALL, N: every record, S's included; DONE, when not NULL, marks
 * those whose links went in this batch already, so no element is deleted
 * twice); then sandbox_forget_peer() drops the links to S from the others'
 * records. */
int sandbox_build_peer_del(struct ns_error *e, struct nft_batch *b, const struct sandbox *s,
                           const struct sandbox *all, size_t n, const bool *done);
void sandbox_forget_peer(const struct sandbox *s, struct sandbox *all, size_t n);

#endif
