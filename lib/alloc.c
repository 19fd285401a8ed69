/* SPDX-License-Identifier: MIT */
/*
 * The allocation counter of lib/alloc.h: test builds only. This file calls the C library's
 * allocator itself, so it does not include alloc.h's renaming macros.
 */
#ifdef QRL_TEST_HOOKS
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void *qrl__alloc_malloc(size_t n);
void *qrl__alloc_calloc(size_t n, size_t size);
void *qrl__alloc_realloc(void *p, size_t n);
char *qrl__alloc_strdup(const char *s);
void qrl__alloc_fail_nth(long n);
long qrl__alloc_count(void);
bool qrl__alloc_failed(void);

static _Atomic long fail_at;  /* 0: disarmed */
static _Atomic long counted;  /* allocations since armed */
static _Atomic bool happened; /* the armed failure came */

/* True when this allocation is the one to fail. */
static bool fail_now(void)
{
    long at = atomic_load(&fail_at);

    if (at == 0)
        return false;
    if (atomic_fetch_add(&counted, 1) + 1 != at)
        return false;
    atomic_store(&happened, true);
    return true;
}

void *qrl__alloc_malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

void *qrl__alloc_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : calloc(n, size);
}

void *qrl__alloc_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

char *qrl__alloc_strdup(const char *s)
{
    return fail_now() ? NULL : strdup(s);
}

void qrl__alloc_fail_nth(long n)
{
    atomic_store(&fail_at, 0);
    atomic_store(&counted, 0);
    atomic_store(&happened, false);
    atomic_store(&fail_at, n);
}

long qrl__alloc_count(void)
{
    return atomic_load(&counted);
}

bool qrl__alloc_failed(void)
{
    return atomic_load(&happened);
}
#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int qrl__alloc_unused;
#endif
