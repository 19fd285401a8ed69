/* SPDX-License-Identifier: MIT */
/*
 * The poll table (lib/pollrate.c), the RFC 8628 interval rules, on its own: many requests
 * answered, so that the table doubles several times while entries are added, forgotten and
 * swept; every answer must stay the same as with a handful of entries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

#define T0 1700000000000LL
#define N 300000 /* more than four times the first size of the indexes */

static int64_t id_of(int64_t i)
{
    return (T0 + i) << 11 | (i & 2047);
}

static void test_grows_and_answers(void **state)
{
    struct qrl__polltab *t = qrl__polltab_new();
    int interval;
    qrl_lr_state last;

    (void)state;
    assert_non_null(t);
    for (int64_t i = 0; i < N; i++) {
        assert_int_equal(qrl__poll_answer(t, id_of(i), T0 + (i < N / 2 ? 0 : 100000), 5,
                                          QRL_LR_PENDING, &interval),
                         QRL_OK);
        assert_int_equal(interval, 5);
    }
    /* Every request keeps its own clock: polled again within its interval, slow_down and
     * 5 s more; after the (longer) interval, answered again. */
    for (int64_t i = 0; i < N; i += 7) {
        assert_int_equal(
            qrl__poll_answer(t, id_of(i), T0 + 100002, 5, QRL_LR_SCANNED, &interval),
            i < N / 2 ? QRL_OK : QRL_ERR_SLOW_DOWN);
        assert_int_equal(interval, i < N / 2 ? 5 : 10);
    }
    /* What the client was told is kept per request. */
    assert_int_equal(qrl__poll_last_state(t, id_of(0)), QRL_LR_SCANNED);
    assert_int_equal(qrl__poll_last_state(t, id_of(1)), QRL_LR_PENDING);
    /* A held wait for at least the interval is exempt; a plain one is not. */
    assert_int_equal(qrl__poll_arrive(t, id_of(0), T0 + 100003, 5, 1, &interval, &last), QRL_OK);
    assert_int_equal(last, QRL_LR_SCANNED);
    assert_int_equal(qrl__poll_arrive(t, id_of(0), T0 + 100004, 5, 0, &interval, &last),
                     QRL_ERR_SLOW_DOWN);

    /* forget drops the entry: its next poll starts afresh. */
    for (int64_t i = 1; i < N; i += 3)
        qrl__poll_forget(t, id_of(i));
    assert_int_equal(qrl__poll_arrive(t, id_of(1), T0 + 100001, 5, 0, &interval, &last), QRL_OK);
    assert_int_equal(qrl__poll_arrive(t, id_of(N / 2 + 2), T0 + 100001, 5, 0, &interval, &last),
                     QRL_ERR_SLOW_DOWN);

    /* The sweep drops entries untouched since before its mark, and only those: a dropped
     * entry is lenient again, a kept one still counts. */
    assert_int_equal(qrl__poll_answer(t, id_of(N), T0 + 500000, 5, QRL_LR_PENDING, &interval),
                     QRL_OK);
    qrl__poll_sweep(t, T0 + 450000);
    for (int64_t i = 2; i < N; i += 3)
        assert_int_equal(qrl__poll_answer(t, id_of(i), T0 + 500001, 5, QRL_LR_PENDING, &interval),
                         QRL_OK);
    assert_int_equal(qrl__poll_answer(t, id_of(N), T0 + 500001, 5, QRL_LR_PENDING, &interval),
                     QRL_ERR_SLOW_DOWN);
    qrl__polltab_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_and_answers),
    };

    return cmocka_run_group_tests_name("pollrate", tests, NULL, NULL);
}
