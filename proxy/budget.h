/*
 * Data budgets: how many bytes each name may move each way per window
 * (a rule's `budget`, or `limits.upload_per_destination`). One table per
 * sandbox, of at most BUDGET_NAMES names, made on first use and kept across
 * reloads: what a name spent in its window stays spent, against the limits
 * the reloaded policy gives it (a raised limit lets it go on, a lowered one
 * may stop it at once).
 *
 * Windows are tumbling: one begins at a name's first byte after the last one
 * ended. A flow finds its entry once (budget_get) and then costs O(1) per
 * read (budget_left, budget_spend), checked by key in case the slot changed
 * hands.
 */
#ifndef SLUICE_BUDGET_H
#define SLUICE_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

#define BUDGET_NAMES 4096           /* names followed at once per sandbox */
#define BUDGET_UP 0
#define BUDGET_DOWN 1

struct budgets;

/* A flow's hold on its name's entry. */
struct budget_ref {
    int32_t slot;                   /* -1: no budget */
    uint64_t key;
};

struct budgets *budgets_new(const uint64_t key[2]);
void budgets_free(struct budgets *b);

/*
 * The budget a flow to NAME (LEN bytes, any case) decided by RULE has, from
 * the rule or from P's default; false when it has none. Fills *OUT.
 */
bool budget_of(const struct policy *p, const struct policy_rule *rule,
               struct policy_budget *out);

/*
 * The entry of NAME under LIM, made (or, when LIM changed, started over) as
 * needed; when the table is full, the entry whose window ended, else the one
 * that spent least, gives way. Sets *REF. Returns whether the budget is spent
 * in some direction it limits (a new flow is then denied).
 */
bool budget_get(struct budgets *b, const char *name, size_t len,
                const struct policy_budget *lim, uint64_t now, struct budget_ref *ref);

/*
 * Bytes REF's name may still move in direction WAY (BUDGET_UP, BUDGET_DOWN) now:
 * UINT64_MAX when that way has no budget or REF's entry is gone. With none
 * left, *WAIT_MS is the time until the window moves on.
 */
uint64_t budget_left(struct budgets *b, const struct budget_ref *ref, int way, uint64_t now,
                     uint64_t *wait_ms);
void budget_spend(struct budgets *b, const struct budget_ref *ref, int way, uint64_t n);

/* One entry, as `stats` shows it. */
struct budget_view {
    const char *name;
    uint64_t limit[2], spent[2];    /* limit 0: no budget that way */
    uint64_t window_left_ms;
};

/* Calls FN for each entry in use. */
void budgets_each(const struct budgets *b, uint64_t now,
                  void (*fn)(const struct budget_view *v, void *arg), void *arg);

#endif
