/* SPDX-License-Identifier: MIT */
/*
 * What qrlogin's in-memory hash tables share: a table of 2^k buckets or slots indexed by a
 * 64-bit key through multiplicative ("Fibonacci") hashing, the key times an odd constant, of
 * which the top k bits are the index. Consecutive keys (login request ids are clock-based and
 * nearly consecutive) land far apart, and doubling a table only adds one bit to each index.
 *
 * The tables that use it:
 * - the poll table, lib/pollrate.c: chained buckets by login request id, doubled whenever it
 *   holds more entries than buckets; the hottest path of the server;
 * - the user-code index, lib/store/sqlite/user_codes.c: open addressing with linear probing, a
 *   random odd multiplier (user codes are chosen by whoever makes requests), rebuilt when three
 *   quarters full, dropping expired entries on the way;
 * - the hub of held requests, server/waiters.c: a fixed array of doubly linked buckets.
 *
 * Only this much is shared, on purpose. Chains and linear probing want different load limits
 * (about one entry per bucket; at most three quarters of the slots), the user-code index drops
 * entries as it grows and the hub never grows, so one generic table would need callbacks for
 * keys, growth and removal: an indirect call per poll, and code harder to read than each table
 * on its own. These functions are static inline and compile to the same multiply and shift as
 * the hand-written index computations they replace.
 *
 * Thread safety: pure functions; each table guards itself.
 */
#ifndef QRL_HASHTAB_H
#define QRL_HASHTAB_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

/* 2^64 divided by the golden ratio, odd: the multiplier of keys nobody outside chooses. */
#define QRL__HASH_FIB UINT64_C(0x9E3779B97F4A7C15)

/* The shift that takes the top bits of a product as an index into `n` buckets, n a power of two
 * of at least 2: 64 - log2(n). Kept with the table, so that a lookup costs no more than a
 * multiply and a shift. */
static inline unsigned qrl__hash_shift(size_t n)
{
    unsigned shift = 64;

    assert(n >= 2 && (n & (n - 1)) == 0);
    while (n > 1) {
        n >>= 1;
        shift--;
    }
    return shift;
}

/* The bucket of `key` in a table of 2^(64 - shift) buckets; `mul` is odd. */
static inline size_t qrl__hash_index(uint64_t key, uint64_t mul, unsigned shift)
{
    return (size_t)((key * mul) >> shift);
}

/* The smallest power of two that is at least `want` and at least `min` (itself a power of two):
 * the size of a table that is to hold `want` buckets or slots. */
static inline size_t qrl__hash_size(size_t want, size_t min)
{
    size_t n = min;

    assert(min >= 2 && (min & (min - 1)) == 0);
    while (n < want)
        n *= 2;
    return n;
}

#endif
