/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of lib/core.c: configuration defaults and validation, the test clock, the change
 * callback, the failure-limit helpers, housekeeping, and the small name tables; and of
 * lib/error.c's descriptions.
 */
#include <pthread.h>

#include "core_fixture.h"

static void test_config_defaults(void **state)
{
    qrl_config c;

    (void)state;
    memset(&c, 0x5a, sizeof c);
    qrl_config_defaults(&c);
    /* RFC 8628 section 3.2: interval defaults to 5 s; the request lives two minutes. */
    assert_int_equal(c.interval_s, 5);
    assert_int_equal(c.request_ttl_s, 120);
    assert_int_equal(c.access_ttl_s, 3600);
    assert_int_equal(c.refresh_ttl_s, 30 * 24 * 3600);
    assert_int_equal(c.session_ttl_s, 30 * 24 * 3600);
    assert_int_equal(c.sign_in_user.count, 10);
    assert_int_equal(c.sign_in_user.window_s, 900);
    assert_int_equal(c.user_code_account.count, 5);
    assert_int_equal(c.user_code_account.window_s, 900);
    assert_int_equal(c.user_code_addr.count, 20);
    assert_int_equal(c.device_auth_addr.count, 120);
    assert_int_equal(c.device_auth_addr.window_s, 600);
    assert_int_equal(c.approve_account.count, 30);
    assert_int_equal(c.refresh_device.count, 30);
    qrl_config_no_limits(&c);
    assert_int_equal(c.device_auth_addr.count + c.device_auth_client.count +
                         c.approve_account.count + c.refresh_device.count +
                         c.user_code_addr.count + c.user_code_account.count +
                         c.sign_in_user.count + c.sign_in_addr.count,
                     0);
    assert_null(c.on_change);
    assert_int_equal(c.pwhash_ops, 0);
}

static void test_config_refused(void **state)
{
    fx *f = *state;
    qrl_config c;
    qrl_core *core = (qrl_core *)1;

    qrl_config_defaults(&c);
    c.interval_s = 0;
    assert_int_equal(qrl_core_new(&c, f->st, &core), QRL_ERR_INVALID);
    assert_null(core);
    qrl_config_defaults(&c);
    c.request_ttl_s = 5;
    assert_int_equal(qrl_core_new(&c, f->st, &core), QRL_ERR_INVALID);
    qrl_config_defaults(&c);
    c.interval_s = 61;
    assert_int_equal(qrl_core_new(&c, f->st, &core), QRL_ERR_INVALID);
    qrl_config_defaults(&c);
    assert_int_equal(qrl_core_new(&c, NULL, &core), QRL_ERR_INVALID);
    assert_int_equal(qrl_core_new(NULL, f->st, &core), QRL_ERR_INVALID);
    assert_int_equal(qrl_core_new(&c, f->st, &core), QRL_OK);
    assert_int_equal(qrl_core_config(core)->interval_s, 5);
    qrl_core_free(core);
    qrl_core_free(NULL);
}

static void test_clock(void **state)
{
    fx *f = *state;
    int64_t t0 = qrl_core_now_ms(f->core);

    assert_true(t0 > 1600000000000LL); /* wall-clock milliseconds */
    qrl_core_clock_advance(f->core, 3600 * 1000);
    int64_t t1 = qrl_core_now_ms(f->core);
    assert_true(t1 - t0 >= 3600 * 1000 && t1 - t0 < 3600 * 1000 + 5000);
}

static void test_notify_on_change(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_lr_view v;
    qrl_lr_rec lr;

    fx_start(f, &da);
    f->changes = 0;
    assert_int_equal(qrl_lr_view_claim(f->core, &f->alice, da.scan_secret, "", &v), QRL_OK);
    assert_int_equal(f->changes, 1);
    assert_int_equal(f->last_change, da.lr_id);
    assert_int_equal(qrl_lr_deny(f->core, &f->alice, da.scan_secret, NULL, "", &lr), QRL_OK);
    assert_int_equal(f->changes, 2);
    /* A read changes nothing and calls nobody. */
    qrl_poll_result res;
    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(fx_poll(f, &da, &res), QRL_ERR_DENIED);
    assert_int_equal(f->changes, 2);
}

/* GCRA: 4 per 60 s is 4 at once, then one every 15 s; a given-back attempt is free again; the
 * wait a refusal reports is until the next attempt is taken. */
static void test_limits(void **state)
{
    fx *f = *state;

    for (int i = 0; i < 4; i++)
        assert_int_equal(qrl__limit_take(f->core, "unit:k", 4, 60), QRL_OK);
    assert_int_equal(qrl__limit_take(f->core, "unit:k", 4, 60), QRL_ERR_RATE_LIMITED);
    assert_true(qrl_retry_after_s() >= 10 && qrl_retry_after_s() <= 15);
    assert_int_equal(qrl__limit_take(f->core, "unit:other", 4, 60), QRL_OK);
    assert_int_equal(qrl__limit_take(f->core, "unit:off", 0, 60), QRL_OK); /* 0: no limit */
    qrl__limit_give(f->core, "unit:k", 4, 60);
    assert_int_equal(qrl__limit_take(f->core, "unit:k", 4, 60), QRL_OK);
    assert_int_equal(qrl__limit_take(f->core, "unit:k", 4, 60), QRL_ERR_RATE_LIMITED);
    /* 15 s later exactly one more; after a whole window the burst is back. */
    qrl_core_clock_advance(f->core, 15 * 1000);
    assert_int_equal(qrl__limit_take(f->core, "unit:k", 4, 60), QRL_OK);
    assert_int_equal(qrl__limit_take(f->core, "unit:k", 4, 60), QRL_ERR_RATE_LIMITED);
    qrl_core_clock_advance(f->core, 60 * 1000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(qrl__limit_take(f->core, "unit:k", 4, 60), QRL_OK);
    assert_int_equal(qrl__limit_take(f->core, "unit:k", 4, 60), QRL_ERR_RATE_LIMITED);
}

/* Many threads at once cannot take more than the limit: the check and the count are one
 * atomic step in the store. */
struct take_arg {
    fx *f;
    int taken;
};

static void *take_many(void *p)
{
    struct take_arg *a = p;

    for (int i = 0; i < 20; i++)
        if (qrl__limit_take(a->f->core, "unit:race", 10, 3600) == QRL_OK)
            a->taken++;
    return NULL;
}

static void test_limits_concurrent(void **state)
{
    fx *f = *state;
    pthread_t t[8];
    struct take_arg a[8];
    int total = 0;

    for (int i = 0; i < 8; i++) {
        a[i] = (struct take_arg){f, 0};
        assert_int_equal(pthread_create(&t[i], NULL, take_many, &a[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        total += a[i].taken;
    }
    /* 10 at once; the clock moves a little while they run (one more per 6 minutes). */
    assert_int_equal(total, 10);
}

/* Address keys: IPv6 counts by /64, IPv4-mapped as IPv4, anything else as it is. */
static void test_address_key(void **state)
{
    char k[QRL_MAX_ADDRESS + 1];

    (void)state;
    qrl__address_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", k, sizeof k);
    assert_string_equal(k, "2001:0db8:0001:0002::/64");
    qrl__address_key("2001:db8:1:2::1", k, sizeof k);
    assert_string_equal(k, "2001:0db8:0001:0002::/64");
    qrl__address_key("::ffff:192.0.2.7", k, sizeof k);
    assert_string_equal(k, "192.0.2.7");
    qrl__address_key("192.0.2.7", k, sizeof k);
    assert_string_equal(k, "192.0.2.7");
    qrl__address_key("", k, sizeof k);
    assert_string_equal(k, "");
    qrl__address_key(NULL, k, sizeof k);
    assert_string_equal(k, "");
}

static void test_sweep_and_scopes(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;

    fx_start(f, &da);
    qrl_core_read_begin(f->core);
    assert_int_equal(fx_poll(f, &da, &res), QRL_ERR_PENDING);
    qrl_core_read_end(f->core);
    qrl_core_clock_advance(f->core, 2LL * 24 * 3600 * 1000);
    assert_int_equal(qrl_core_sweep(f->core), QRL_OK);
    assert_int_not_equal(fx_poll(f, &da, &res), QRL_OK);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(qrl_lr_state_name(QRL_LR_PENDING), "pending");
    assert_string_equal(qrl_lr_state_name(QRL_LR_SCANNED), "scanned");
    assert_string_equal(qrl_lr_state_name(QRL_LR_APPROVED), "approved");
    assert_string_equal(qrl_lr_state_name(QRL_LR_REDEEMED), "redeemed");
    assert_string_equal(qrl_lr_state_name(QRL_LR_DENIED), "denied");
    assert_string_equal(qrl_lr_state_name(QRL_LR_EXPIRED), "expired");
    assert_string_equal(qrl_lr_state_name((qrl_lr_state)99), "unknown");
    assert_true(qrl_device_kind_valid("tv"));
    assert_true(qrl_device_kind_valid("phone"));
    assert_false(qrl_device_kind_valid("toaster"));
    assert_false(qrl_device_kind_valid(NULL));
}

static void test_strerror(void **state)
{
    (void)state;
    for (int e = 0; e < QRL_ERR__COUNT; e++) {
        const char *s = qrl_strerror((qrl_err)e);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
    }
    assert_string_equal(qrl_strerror(QRL_ERR__COUNT), "unknown error");
    assert_string_equal(qrl_strerror((qrl_err)-1), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test_setup_teardown(test_config_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_clock, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_notify_on_change, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_limits, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_limits_concurrent, fx_setup, fx_teardown),
        cmocka_unit_test(test_address_key),
        cmocka_unit_test_setup_teardown(test_sweep_and_scopes, fx_setup, fx_teardown),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
