/* SPDX-License-Identifier: MIT */
/*
 * The pending-poll cache (lib/pending.c) on its own, and the SQLite store's change stamps it
 * relies on (lib/store/sqlite/stamps.c):
 * - many requests learned, so that the table doubles several times; each is found by its own
 *   device code only, for its own client only, and not past its expiry;
 * - forget and sweep drop exactly what they should;
 * - a stamp moves with every committed change of its request, seen through another handle on
 *   the same database as another process would see it, and not with a read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "internal.h"
#include "tmpdir.h"

#define T0 1700000000000LL
#define N 100000 /* many times the table's first size */

static qrl_lr_rec lr_of(int64_t i)
{
    qrl_lr_rec lr;

    memset(&lr, 0, sizeof lr);
    lr.id = (T0 + i) << 11 | (i & 2047);
    crypto_generichash(lr.device_code_hash.b, sizeof lr.device_code_hash.b,
                       (const unsigned char *)&i, sizeof i, NULL, 0);
    strcpy(lr.client_id, "tv-app");
    lr.state = i % 2 ? QRL_LR_SCANNED : QRL_LR_PENDING;
    lr.expires_ms = T0 + 600000 + i;
    lr.interval_s = 5;
    return lr;
}

static qrl_lr_secret_key key_of(int64_t i)
{
    qrl_lr_rec lr = lr_of(i);
    qrl_lr_secret_key k = {.id = lr.id, .hash = lr.device_code_hash};
    return k;
}

static void test_learn_find_forget_sweep(void **state)
{
    struct qrl__pending *t = qrl__pending_new();
    qrl__pending_hit hit;
    qrl_lr_secret_key k;
    qrl_lr_rec lr;

    (void)state;
    assert_non_null(t);
    for (int64_t i = 0; i < N; i++) {
        lr = lr_of(i);
        qrl__pending_learn(t, &lr, (uint64_t)i * 3);
    }
    for (int64_t i = 0; i < N; i++) {
        k = key_of(i);
        assert_int_equal(qrl__pending_find(t, &k, "tv-app", T0, &hit), QRL_OK);
        assert_int_equal(hit.stamp, (uint64_t)i * 3);
        assert_int_equal(hit.state, i % 2 ? QRL_LR_SCANNED : QRL_LR_PENDING);
        assert_int_equal(hit.expires_ms, T0 + 600000 + i);
        assert_int_equal(hit.interval_s, 5);
    }
    /* Another client's poll of the code; the right id with another code's hash; a request
     * never learned; a decided request is never learned. */
    k = key_of(5);
    assert_int_equal(qrl__pending_find(t, &k, "tv-ap", T0, &hit), QRL_ERR_INVALID_CLIENT);
    assert_int_equal(qrl__pending_find(t, &k, "tv-app2", T0, &hit), QRL_ERR_INVALID_CLIENT);
    k.hash = key_of(6).hash;
    assert_int_equal(qrl__pending_find(t, &k, "tv-app", T0, &hit), QRL_ERR_NOT_FOUND);
    k = key_of(N);
    assert_int_equal(qrl__pending_find(t, &k, "tv-app", T0, &hit), QRL_ERR_NOT_FOUND);
    lr = lr_of(N);
    lr.state = QRL_LR_APPROVED;
    qrl__pending_learn(t, &lr, 1);
    assert_int_equal(qrl__pending_find(t, &k, "tv-app", T0, &hit), QRL_ERR_NOT_FOUND);
    /* Past its expiry an entry is not used (the store must record EXPIRED). */
    k = key_of(0);
    assert_int_equal(qrl__pending_find(t, &k, "tv-app", T0 + 600000, &hit), QRL_ERR_NOT_FOUND);
    /* Learned again: the newer stamp and state replace the old ones. */
    lr = lr_of(2);
    lr.state = QRL_LR_SCANNED;
    qrl__pending_learn(t, &lr, 77);
    k = key_of(2);
    assert_int_equal(qrl__pending_find(t, &k, "tv-app", T0, &hit), QRL_OK);
    assert_int_equal(hit.stamp, 77);
    assert_int_equal(hit.state, QRL_LR_SCANNED);

    for (int64_t i = 0; i < N; i += 3)
        qrl__pending_forget(t, lr_of(i).id);
    /* Entries expired at the sweep's time go; i < N / 2 expire before T0 + 600000 + N / 2. */
    qrl__pending_sweep(t, T0 + 600000 + N / 2);
    for (int64_t i = 0; i < N; i++) {
        qrl_err want = i % 3 != 0 && i > N / 2 ? QRL_OK : QRL_ERR_NOT_FOUND;
        k = key_of(i);
        assert_int_equal(qrl__pending_find(t, &k, "tv-app", T0, &hit), want);
    }
    qrl__pending_free(t);
}

/* A login request row for the store tests below. */
static void make_lr(qrl_store *st, qrl_lr_rec *lr)
{
    memset(lr, 0, sizeof *lr);
    lr->id = ((int64_t)time(NULL) * 1000) << 11 | 7;
    randombytes_buf(lr->device_code_hash.b, sizeof lr->device_code_hash.b);
    randombytes_buf(lr->scan_hash.b, sizeof lr->scan_hash.b);
    strcpy(lr->user_code, "BCDFGHJK");
    strcpy(lr->client_id, "tv-app");
    strcpy(lr->device_name, "TV");
    strcpy(lr->device_kind, "tv");
    lr->created_ms = lr->updated_ms = T0;
    lr->expires_ms = T0 + 600000;
    lr->interval_s = 5;
    lr->state = QRL_LR_PENDING;
    assert_int_equal(st->m->lr_create(st, lr), QRL_OK);
}

static void test_stamps_follow_changes_across_handles(void **state)
{
    char dir[64], db[96], err[128];
    qrl_store *a, *b;
    qrl_lr_rec lr, other, got;
    qrl_lr_secret_key key;
    uint64_t s0, s1;

    (void)state;
    snprintf(dir, sizeof dir, "/tmp/qrl-unit-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/t.db", dir);
    assert_int_equal(qrl_store_sqlite_open(db, &a, err, sizeof err), QRL_OK);
    assert_int_equal(qrl_store_sqlite_open(db, &b, err, sizeof err), QRL_OK);
    assert_non_null(a->m->lr_stamp);
    make_lr(a, &lr);
    other = lr;
    other.id = lr.id + 1;
    randombytes_buf(other.device_code_hash.b, sizeof other.device_code_hash.b);
    strcpy(other.user_code, "BCDFGHJL");
    assert_int_equal(a->m->lr_create(a, &other), QRL_OK);

    /* Both handles see one stamp; a creation and a read do not move it. */
    s0 = a->m->lr_stamp(a, lr.id);
    assert_int_equal(b->m->lr_stamp(b, lr.id), s0);
    key.id = lr.id;
    key.hash = lr.device_code_hash;
    assert_int_equal(a->m->lr_find(a, QRL_LR_KEY_DEVICE_CODE, &key, T0, &got), QRL_OK);
    assert_int_equal(a->m->lr_stamp(a, lr.id), s0);

    /* A change through the other handle has moved it by the time the write returns, as seen
     * through this one; the stamp of an unrelated request did not move unless it shares the
     * slot (it does not here: consecutive ids land far apart). */
    uint64_t so = a->m->lr_stamp(a, other.id);
    qrl_lr_cas cas = {.id = lr.id, .from_mask = QRL_LR_BIT(QRL_LR_PENDING), .to = QRL_LR_DENIED,
                      .now_ms = T0 + 1};
    assert_int_equal(b->m->lr_transition(b, &cas), QRL_OK);
    s1 = a->m->lr_stamp(a, lr.id);
    assert_true(s1 != s0);
    assert_int_equal(b->m->lr_stamp(b, lr.id), s1);
    assert_int_equal(a->m->lr_stamp(a, other.id), so);
    /* A failed compare-and-set may move it too (harmless), never back. */
    assert_int_equal(b->m->lr_transition(b, &cas), QRL_ERR_CONFLICT);
    assert_true(a->m->lr_stamp(a, lr.id) >= s1);

    a->m->close(a);
    b->m->close(b);
    remove_dir(dir);
}

/* Where the stamp file cannot be made, every stamp differs from the last: nothing is ever
 * taken from memory, and the store still works. */
static void test_no_stamp_file_means_no_reuse(void **state)
{
    char dir[64], db[96], err[128], stamps[128];
    qrl_store *a;
    qrl_lr_rec lr;

    (void)state;
    snprintf(dir, sizeof dir, "/tmp/qrl-unit-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/t.db", dir);
    snprintf(stamps, sizeof stamps, "%s-stamps", db);
    /* A directory where the file would go: open() fails. */
    assert_int_equal(mkdir(stamps, 0700), 0);
    assert_int_equal(qrl_store_sqlite_open(db, &a, err, sizeof err), QRL_OK);
    make_lr(a, &lr);
    assert_true(a->m->lr_stamp(a, lr.id) != a->m->lr_stamp(a, lr.id));
    a->m->close(a);
    assert_int_equal(rmdir(stamps), 0);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learn_find_forget_sweep),
        cmocka_unit_test(test_stamps_follow_changes_across_handles),
        cmocka_unit_test(test_no_stamp_file_means_no_reuse),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("pending", tests, NULL, NULL);
}
