/* SPDX-License-Identifier: MIT */
/*
 * The index computations the hash tables share (lib/hashtab.h): sizes and shifts agree, every
 * index falls inside its table, doubling a table splits each bucket in two, and the login
 * request ids the poll table and the hub hash (the clock in milliseconds shifted left by 11,
 * plus a counter) spread evenly, so that chains stay short.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "hashtab.h"

static void sizes_and_shifts(void **state)
{
    (void)state;
    assert_int_equal(qrl__hash_shift(2), 63);
    assert_int_equal(qrl__hash_shift(1024), 54);
    assert_int_equal(qrl__hash_shift((size_t)1 << 16), 48);
    assert_int_equal(qrl__hash_size(0, 1024), 1024);
    assert_int_equal(qrl__hash_size(1024, 1024), 1024);
    assert_int_equal(qrl__hash_size(1025, 1024), 2048);
    assert_int_equal(qrl__hash_size(2 * (1536 + 1), 1024), 4096);
    assert_int_equal(qrl__hash_size(3, 2), 4);
}

static void indexes_in_range(void **state)
{
    uint64_t key = 1, mul = 0x2545F4914F6CDD1Dull; /* any odd multiplier, as user codes use */

    (void)state;
    for (size_t n = 2; n <= ((size_t)1 << 20); n *= 2) {
        unsigned shift = qrl__hash_shift(n);
        for (int i = 0; i < 1000; i++) {
            key = key * 6364136223846793005ull + 1442695040888963407ull;
            assert_true(qrl__hash_index(key, QRL__HASH_FIB, shift) < n);
            assert_true(qrl__hash_index(key, mul, shift) < n);
        }
    }
}

/* A table that doubles moves each entry of bucket i to bucket 2i or 2i + 1. */
static void doubling_splits_buckets(void **state)
{
    (void)state;
    for (uint64_t key = 0; key < 100000; key++) {
        size_t small = qrl__hash_index(key, QRL__HASH_FIB, 48);
        size_t large = qrl__hash_index(key, QRL__HASH_FIB, 47);
        assert_true(large == 2 * small || large == 2 * small + 1);
    }
}

/* Ids made within the same few seconds, as a server making 1 to 1024 requests a millisecond
 * makes them, in a table with as many buckets as ids: no chain grows past a few entries. */
static void request_ids_spread(void **state)
{
    enum { BITS = 16, N = 1 << BITS };
    int64_t t0 = INT64_C(1700000000000);

    (void)state;
    for (int per_ms = 1; per_ms <= 1024; per_ms *= 4) {
        unsigned char *count = calloc(N, 1);
        unsigned longest = 0, used = 0;
        assert_non_null(count);
        for (int64_t i = 0; i < N; i++) {
            int64_t id = (t0 + i / per_ms) << 11 | (i % per_ms);
            size_t b = qrl__hash_index((uint64_t)id, QRL__HASH_FIB, 64 - BITS);
            used += count[b] == 0;
            if (++count[b] > longest)
                longest = count[b];
        }
        free(count);
        assert_true(longest <= 6);
        /* Such regular keys fill 40 to 85 % of the buckets (random ones 63 %); far fewer would
         * mean the ids cluster. */
        assert_true(used > N / 3);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sizes_and_shifts),
        cmocka_unit_test(indexes_in_range),
        cmocka_unit_test(doubling_splits_buckets),
        cmocka_unit_test(request_ids_spread),
    };

    return cmocka_run_group_tests_name("hashtab", tests, NULL, NULL);
}
