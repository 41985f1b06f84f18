/* Data budgets per name (budget.h): a fixed array, chained buckets by a keyed hash. */
#include "budget.h"

#include <stdlib.h>
#include <string.h>

#include "hostname.h"
#include "siphash.h"

#define BUCKETS 2048                /* a power of two: BUDGET_NAMES / 2 */

struct entry {
    uint64_t key;                   /* 0: free */
    int32_t next;                   /* the bucket's chain, -1 at its end */
    char name[HOSTNAME_MAX + 1];
    struct policy_budget lim;
    uint64_t start;
    bool live;
    uint64_t spent[2];
};

struct budgets {
    uint64_t key[2];
    int32_t bucket[BUCKETS];
    struct entry e[BUDGET_NAMES];
    size_t n;
};

struct budgets *budgets_new(const uint64_t key[2])
{
    struct budgets *b = calloc(1, sizeof(*b));
    size_t i;

    if (!b)
        return NULL;
    b->key[0] = key[0];
    b->key[1] = key[1];
    for (i = 0; i < BUCKETS; i++)
        b->bucket[i] = -1;
    return b;
}

void budgets_free(struct budgets *b)
{
    free(b);
}

bool budget_of(const struct policy *p, const struct policy_rule *rule,
               struct policy_budget *out)
{
    if (!rule || rule->kind == RULE_CIDR)
        return false;
    if (rule->budget.up || rule->budget.down) {
        *out = rule->budget;
        return true;
    }
    if (!p->settings.limits.upload_per_destination)
        return false;
    *out = (struct policy_budget){.up = p->settings.limits.upload_per_destination,
                                  .per_ms = POLICY_BUDGET_PER_MS};
    return true;
}

/* Starts a new window at NOW when the last one ended. */
static void roll(struct entry *e, uint64_t now)
{
    if (e->live && now - e->start < e->lim.per_ms)
        return;
    e->start = now;
    e->live = true;
    e->spent[0] = e->spent[1] = 0;
}

static bool spent(const struct entry *e)
{
    return (e->lim.up && e->spent[BUDGET_UP] >= e->lim.up) ||
           (e->lim.down && e->spent[BUDGET_DOWN] >= e->lim.down);
}

static void unlink_entry(struct budgets *b, int32_t i)
{
    int32_t *p = &b->bucket[b->e[i].key & (BUCKETS - 1)];

    while (*p != i)
        p = &b->e[*p].next;
    *p = b->e[i].next;
}

/* A free slot, or the one that gives way: its window ended, else it spent least. */
static int32_t take_slot(struct budgets *b, uint64_t now)
{
    int32_t i, victim = -1;
    uint64_t least = UINT64_MAX;

    if (b->n < BUDGET_NAMES)
        return (int32_t)b->n++;
    for (i = 0; i < BUDGET_NAMES; i++) {
        const struct entry *e = &b->e[i];
        uint64_t sum = e->spent[0] + e->spent[1];

        if (!e->live || now - e->start >= e->lim.per_ms) {
            victim = i;
            break;
        }
        if (sum < least) {
            least = sum;
            victim = i;
        }
    }
    unlink_entry(b, victim);
    return victim;
}

bool budget_get(struct budgets *b, const char *name, size_t len,
                const struct policy_budget *lim, uint64_t now, struct budget_ref *ref)
{
    char low[HOSTNAME_MAX + 1];
    uint64_t key;
    int32_t i;
    size_t k;

    if (len > HOSTNAME_MAX)
        len = HOSTNAME_MAX;
    for (k = 0; k < len; k++)
        low[k] = (char)(name[k] >= 'A' && name[k] <= 'Z' ? name[k] + 32 : name[k]);
    while (len && low[len - 1] == '.')
        len--;
    low[len] = '\0';
    key = siphash24(b->key, (const uint8_t *)low, len) | 1;
    for (i = b->bucket[key & (BUCKETS - 1)]; i >= 0; i = b->e[i].next)
        if (b->e[i].key == key && strcmp(b->e[i].name, low) == 0)
            break;
    if (i < 0) {
        i = take_slot(b, now);
        memset(&b->e[i], 0, sizeof(b->e[i]));
        b->e[i].key = key;
        memcpy(b->e[i].name, low, len + 1);
        b->e[i].next = b->bucket[key & (BUCKETS - 1)];
        b->bucket[key & (BUCKETS - 1)] = i;
    }
    b->e[i].lim = *lim;             /* a reload may change the limits: what the window
                                       spent so far counts against the new ones */
    roll(&b->e[i], now);
    ref->slot = i;
    ref->key = key;
    return spent(&b->e[i]);
}

static struct entry *entry_of(struct budgets *b, const struct budget_ref *ref)
{
    if (!b || ref->slot < 0 || b->e[ref->slot].key != ref->key)
        return NULL;
    return &b->e[ref->slot];
}

uint64_t budget_left(struct budgets *b, const struct budget_ref *ref, int way, uint64_t now,
                     uint64_t *wait_ms)
{
    struct entry *e = entry_of(b, ref);
    uint64_t lim;

    if (!e)
        return UINT64_MAX;
    lim = way == BUDGET_UP ? e->lim.up : e->lim.down;
    if (!lim)
        return UINT64_MAX;
    roll(e, now);
    if (e->spent[way] < lim)
        return lim - e->spent[way];
    *wait_ms = e->start + e->lim.per_ms - now;
    return 0;
}

void budget_spend(struct budgets *b, const struct budget_ref *ref, int way, uint64_t n)
{
    struct entry *e = entry_of(b, ref);

    if (e)
        e->spent[way] += n;
}

void budgets_each(const struct budgets *b, uint64_t now,
                  void (*fn)(const struct budget_view *v, void *arg), void *arg)
{
    size_t i;

    for (i = 0; b && i < b->n; i++) {
        const struct entry *e = &b->e[i];
        bool over = !e->live || now - e->start >= e->lim.per_ms;
        struct budget_view v = {
            .name = e->name,
            .limit = {e->lim.up, e->lim.down},
            .spent = {over ? 0 : e->spent[0], over ? 0 : e->spent[1]},
            .window_left_ms = over ? e->lim.per_ms : e->start + e->lim.per_ms - now,
        };

        fn(&v, arg);
    }
}
