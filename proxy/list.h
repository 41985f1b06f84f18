/*
 * Intrusive doubly linked lists with a sentinel head: the node lives inside
 * its owner, and insertion and removal are O(1) without knowing which list
 * holds the node. A zeroed node (calloc) counts as not linked.
 */
#ifndef SLUICE_LIST_H
#define SLUICE_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
    struct list *prev, *next;
};

/* The owner of node P: list_entry(p, struct conn, link). */
#define list_entry(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

static inline void list_init(struct list *h)
{
    h->prev = h->next = h;
}

static inline bool list_empty(const struct list *h)
{
    return h->next == h;
}

static inline bool list_linked(const struct list *n)
{
    return n->next != NULL && n->next != n;
}

static inline void list_insert(struct list *prev, struct list *n, struct list *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

static inline void list_push_front(struct list *h, struct list *n)
{
    list_insert(h, n, h->next);
}

static inline void list_push_back(struct list *h, struct list *n)
{
    list_insert(h->prev, n, h);
}

/* Takes N off its list, if it is on one. */
static inline void list_remove(struct list *n)
{
    if (!list_linked(n))
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

#endif
