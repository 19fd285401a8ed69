/* SPDX-License-Identifier: MIT */
/*
 * Fault injection for allocations (test builds only).
 *
 * SQLite's way of proving out-of-memory paths: in builds with QRL_TEST_HOOKS, every malloc,
 * calloc, realloc and strdup written in lib/ and server/ goes through a counter that a test can
 * arm to fail one chosen allocation (qrl__alloc_fail_nth). The test then runs a whole flow once
 * for each allocation in it and checks each run ends in a clean error and leaks nothing
 * (tests/unit/lib/test_alloc_failure.c). Libraries' own allocations (SQLite, libsodium, jansson,
 * libmicrohttpd) are not counted. Release builds define nothing here: the names are the C
 * library's.
 *
 * Included by lib/internal.h and server/http.h, after the C library's headers it replaces names
 * from, so that their declarations are not rewritten.
 */
#ifndef QRLOGIN_LIB_ALLOC_H
#define QRLOGIN_LIB_ALLOC_H

#ifdef QRL_TEST_HOOKS
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void *qrl__alloc_malloc(size_t n);
void *qrl__alloc_calloc(size_t n, size_t size);
void *qrl__alloc_realloc(void *p, size_t n);
char *qrl__alloc_strdup(const char *s);

/* Counts allocations from now on and makes the nth of them (1 = the next one) return NULL;
 * n = 0 disarms. Only that one fails: the code after it runs with working allocations, as after
 * a transient shortage. Thread-safe. */
void qrl__alloc_fail_nth(long n);
/* Allocations counted since the last qrl__alloc_fail_nth(). */
long qrl__alloc_count(void);
/* True when the armed failure has happened. */
bool qrl__alloc_failed(void);

#define malloc(n) qrl__alloc_malloc(n)
#define calloc(n, size) qrl__alloc_calloc(n, size)
#define realloc(p, n) qrl__alloc_realloc(p, n)
#define strdup(s) qrl__alloc_strdup(s)
#endif

#endif
