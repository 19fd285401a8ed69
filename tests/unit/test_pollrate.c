/* SPDX-License-Identifier: MIT */
/*
 * The poll table (lib/pollrate.c) on its own: many requests learned, so that both of its
 * indexes grow several times while entries are added, forgotten and swept; every answer must
 * stay the same as with a handful of entries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "internal.h"

#define T0 1700000000000LL
#define N 300000 /* more than four times the first size of the indexes */

static qrl_lr_rec lr_of(int64_t i)
{
    qrl_lr_rec lr;

    memset(&lr, 0, sizeof lr);
    lr.id = (T0 + i) << 11 | (i & 2047);
    crypto_generichash(lr.device_code_hash.b, sizeof lr.device_code_hash.b,
                       (const unsigned char *)&i, sizeof i, NULL, 0);
    strcpy(lr.client_id, "tv-app");
    lr.state = QRL_LR_PENDING;
    lr.expires_ms = T0 + 600000;
    lr.interval_s = 5;
    return lr;
}

static qrl_err fast(struct qrl__polltab *t, int64_t i, int64_t now, qrl_poll_result *res)
{
    qrl_lr_rec lr = lr_of(i);

    memset(res, 0, sizeof *res);
    return qrl__poll_fast(t, &lr.device_code_hash, "tv-app", now, res);
}

static void test_grows_and_answers(void **state)
{
    struct qrl__polltab *t = qrl__polltab_new();
    qrl_poll_result res;
    qrl_lr_rec lr;
    int interval;
    qrl_lr_state last;

    (void)state;
    assert_non_null(t);
    for (int64_t i = 0; i < N; i++) {
        lr = lr_of(i);
        qrl__poll_learn(t, qrl__poll_gen(t), &lr, T0 + (i < N / 2 ? 0 : 100000));
    }
    /* Every learned request is answered from memory, under the right id. */
    for (int64_t i = 0; i < N; i++) {
        assert_int_equal(fast(t, i, T0 + 200000, &res), QRL_ERR_PENDING);
        assert_int_equal(res.lr_id, lr_of(i).id);
    }
    /* A code never learned is not; nor one for another client. */
    assert_int_equal(fast(t, N + 1, T0 + 200000, &res), QRL_ERR_NOT_FOUND);
    lr = lr_of(7);
    assert_int_equal(qrl__poll_fast(t, &lr.device_code_hash, "other", T0 + 200000, &res),
                     QRL_ERR_INVALID_CLIENT);
    /* Polled again at once: slow_down, from the same entry. */
    assert_int_equal(fast(t, 9, T0 + 200001, &res), QRL_ERR_SLOW_DOWN);

    /* A transition forgets what was learned; forget drops the entry. */
    for (int64_t i = 0; i < N; i += 3)
        qrl__poll_unlearn(t, lr_of(i).id);
    for (int64_t i = 1; i < N; i += 3)
        qrl__poll_forget(t, lr_of(i).id);
    for (int64_t i = 0; i < N; i++) {
        qrl_err want = i % 3 == 2 ? QRL_ERR_PENDING : QRL_ERR_NOT_FOUND;
        assert_int_equal(fast(t, i, T0 + 400000, &res), want);
    }
    /* The rate state of an unlearned entry is kept (answered at T0 + 200000, so a poll 2 ms
     * later is too early); a forgotten one starts afresh. */
    assert_int_equal(qrl__poll_arrive(t, lr_of(3).id, T0 + 200002, 5, 0, &interval, &last),
                     QRL_ERR_SLOW_DOWN);
    assert_int_equal(qrl__poll_arrive(t, lr_of(4).id, T0 + 200002, 5, 0, &interval, &last), QRL_OK);

    /* The sweep drops entries untouched since before its mark, and only those. */
    lr = lr_of(N);
    qrl__poll_learn(t, qrl__poll_gen(t), &lr, T0 + 500000);
    qrl__poll_sweep(t, T0 + 450000);
    for (int64_t i = 0; i < N; i++)
        assert_int_equal(fast(t, i, T0 + 500001, &res), QRL_ERR_NOT_FOUND);
    assert_int_equal(fast(t, N, T0 + 500001, &res), QRL_ERR_PENDING);
    qrl__polltab_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_and_answers),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("pollrate", tests, NULL, NULL);
}
