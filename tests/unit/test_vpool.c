/*
 * The virtual-address pool: addresses per name and back, lives and reuse,
 * held mappings never reused, where fresh slots start, exhaustion.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "vpool.h"

static const uint8_t ula[12] = {0xfd, 0x5c, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0};
/* the second word a multiple of every pool size below: fresh slots start at slot 0 */
static const uint64_t key[2] = {0x0123456789abcdefull, 1000ull * 0x123456789ull};

#define TTL 60000

static struct vpool_addr map_ok(struct vpool *p, const char *name, uint64_t now, bool want_evict)
{
    struct vpool_addr a;
    bool evicted;

    assert_int_equal(vpool_map(p, name, now, TTL, &a, &evicted), 0);
    assert_int_equal(evicted, want_evict);
    return a;
}

static void test_addresses_and_back(void **state)
{
    struct vpool *p = vpool_new(1000, ula, key);
    struct vpool_addr a, b, a2;
    static const uint8_t outside[4] = {198, 20, 0, 1}, never[4] = {198, 18, 0, 200};
    struct vpool_stats st;

    (void)state;
    assert_non_null(p);
    a = map_ok(p, "github.com", 0, false);
    b = map_ok(p, "db.internal.example", 0, false);
    assert_memory_equal(a.v4, ((uint8_t[]){198, 18, 0, 1}), 4);
    assert_memory_equal(b.v4, ((uint8_t[]){198, 18, 0, 2}), 4);
    assert_memory_equal(a.v6, ula, 12);
    assert_memory_equal(a.v6 + 12, ((uint8_t[]){0, 0, 0, 1}), 4);
    a2 = map_ok(p, "github.com", 1000, false);          /* the same name keeps its own */
    assert_memory_equal(a.v4, a2.v4, 4);
    assert_string_equal(vpool_lookup(p, AF_INET, a.v4, false), "github.com");
    assert_string_equal(vpool_lookup(p, AF_INET6, b.v6, false), "db.internal.example");
    assert_true(vpool_contains(p, AF_INET, never));
    assert_null(vpool_lookup(p, AF_INET, never, false));    /* never handed out */
    assert_false(vpool_contains(p, AF_INET, outside));      /* 198.20/16 is not the pool */
    assert_false(vpool_contains(p, AF_INET, ((uint8_t[]){198, 18, 0, 0})));  /* the base */
    assert_null(vpool_lookup(p, AF_INET, outside, false));
    vpool_stats(p, &st);
    assert_int_equal(st.size, 1000);
    assert_int_equal(st.mapped, 2);
    assert_int_equal(st.in_use, 0);
    assert_null(vpool_new(0, ula, key));
    assert_null(vpool_new(VPOOL_MAX + 1, ula, key));
    vpool_free(p);
}

static void test_full_pool_reuses_the_oldest_idle(void **state)
{
    struct vpool *p = vpool_new(2, ula, key);
    struct vpool_addr a, b, c;
    struct vpool_stats st;
    bool evicted;

    (void)state;
    a = map_ok(p, "a.test", 0, false);
    b = map_ok(p, "b.test", 10, false);
    /* full, and both within their lives: nothing is taken from them */
    assert_int_equal(vpool_map(p, "c.test", TTL - 1, TTL, &c, &evicted), -ENOSPC);
    /* a's life ended first: a's slot is c's now, a's address means c */
    c = map_ok(p, "c.test", TTL + 5, true);
    assert_memory_equal(c.v4, a.v4, 4);
    assert_string_equal(vpool_lookup(p, AF_INET, a.v4, false), "c.test");
    assert_string_equal(vpool_lookup(p, AF_INET, b.v4, false), "b.test");
    /* an answer again extends a life: b, asked again, outlives c */
    map_ok(p, "b.test", TTL + 6, false);
    a = map_ok(p, "a.test", 2 * TTL + 5, true);        /* c's ended at 2 TTL + 5 */
    assert_memory_equal(a.v4, c.v4, 4);
    vpool_stats(p, &st);
    assert_int_equal(st.evictions, 2);
    vpool_free(p);
}

static void test_held_mappings_are_never_reused(void **state)
{
    struct vpool *p = vpool_new(1, ula, key);
    struct vpool_addr a, b;
    struct vpool_stats st;
    bool evicted;

    (void)state;
    a = map_ok(p, "a.test", 0, false);
    assert_string_equal(vpool_lookup(p, AF_INET, a.v4, true), "a.test");  /* a flow */
    assert_string_equal(vpool_lookup(p, AF_INET6, a.v6, true), "a.test"); /* and another */
    vpool_stats(p, &st);
    assert_int_equal(st.in_use, 1);
    assert_int_equal(vpool_map(p, "b.test", 10 * TTL, TTL, &b, &evicted), -ENOSPC);
    vpool_release(p, AF_INET, a.v4, 10 * TTL);
    assert_int_equal(vpool_map(p, "b.test", 10 * TTL, TTL, &b, &evicted), -ENOSPC);
    /* the last flow ends: the mapping lives on for its TTL, then goes */
    vpool_release(p, AF_INET6, a.v6, 10 * TTL);
    assert_int_equal(vpool_map(p, "b.test", 11 * TTL - 1, TTL, &b, &evicted), -ENOSPC);
    b = map_ok(p, "b.test", 11 * TTL, true);
    assert_memory_equal(a.v4, b.v4, 4);
    vpool_stats(p, &st);
    assert_int_equal(st.in_use, 0);
    vpool_free(p);
}

static void test_fresh_slots_start_anywhere_and_wrap(void **state)
{
    static const uint64_t key7[2] = {1, 7};     /* the start is the key's second word mod max */
    struct vpool *p = vpool_new(9, ula, key7);
    struct vpool_addr a;
    char name[16];
    int i;

    (void)state;
    a = map_ok(p, "first.test", 0, false);
    assert_memory_equal(a.v4, ((uint8_t[]){198, 18, 0, 8}), 4);
    map_ok(p, "second.test", 0, false);         /* slot 8: 198.18.0.9, the last */
    a = map_ok(p, "third.test", 0, false);      /* wraps to slot 0 */
    assert_memory_equal(a.v4, ((uint8_t[]){198, 18, 0, 1}), 4);
    for (i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        map_ok(p, name, 0, false);
    }
    assert_int_equal(vpool_map(p, "tenth.test", 1, TTL, &a, &(bool){false}), -ENOSPC);
    vpool_free(p);
}

/*
 * Mapping an address back to its name runs on every accepted connection, and
 * answering a name on every query: neither may allocate.
 */
#include "count_alloc.h"

static void test_no_allocation_per_lookup_or_answer(void **state)
{
    struct vpool *p = vpool_new(64, ula, key);
    struct vpool_addr a[64];
    char name[32];
    size_t before, i, misses = 0;
    bool evicted;

    (void)state;
    assert_non_null(p);
    before = allocations;
    for (i = 0; i < 64 * 100; i++) {
        snprintf(name, sizeof(name), "n%zu.test", i % 64);
        misses += vpool_map(p, name, i, TTL, &a[i % 64], &evicted) != 0;
        misses += vpool_lookup(p, AF_INET, a[i % 64].v4, true) == NULL;
        vpool_release(p, AF_INET6, a[i % 64].v6, i);   /* the same slot, other family */
    }
    assert_int_equal(allocations - before, 0);     /* under a sanitizer: not counted */
    assert_int_equal(misses, 0);
    vpool_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses_and_back),
        cmocka_unit_test(test_full_pool_reuses_the_oldest_idle),
        cmocka_unit_test(test_held_mappings_are_never_reused),
        cmocka_unit_test(test_fresh_slots_start_anywhere_and_wrap),
        cmocka_unit_test(test_no_allocation_per_lookup_or_answer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
