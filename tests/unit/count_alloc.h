/*
 * Counting allocations in a unit test, for code that must not allocate per
 * event: malloc and calloc interposed on glibc's own, counted in `allocations`.
 * Not under a sanitizer, whose allocator they would bypass: COUNT_ALLOCATIONS
 * is 0 there and the count stays 0. Include it in one file of a test only.
 */
#ifndef SLUICE_COUNT_ALLOC_H
#define SLUICE_COUNT_ALLOC_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef COUNT_ALLOCATIONS
#define COUNT_ALLOCATIONS 1
#endif

static size_t allocations;

#if COUNT_ALLOCATIONS
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);

void *malloc(size_t n)
{
    allocations++;
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    allocations++;
    return __libc_calloc(n, size);
}
#endif

#endif
