/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of lib/core.c: configuration defaults and validation, the test clock, the change
 * callback, the failure-limit helpers, housekeeping, and the small name tables; and of
 * lib/error.c's descriptions.
 */
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
    assert_int_equal(c.login_fail_window_s, 900);
    assert_int_equal(c.user_code_fail_window_s, 600);
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

static void test_limits(void **state)
{
    fx *f = *state;

    assert_int_equal(qrl__limit_check(f->core, "unit:k", 2, 60), QRL_OK);
    qrl__limit_fail(f->core, "unit:k", 60);
    assert_int_equal(qrl__limit_check(f->core, "unit:k", 2, 60), QRL_OK);
    qrl__limit_fail(f->core, "unit:k", 60);
    assert_int_equal(qrl__limit_check(f->core, "unit:k", 2, 60), QRL_ERR_RATE_LIMITED);
    assert_int_equal(qrl__limit_check(f->core, "unit:other", 2, 60), QRL_OK);
    qrl_core_clock_advance(f->core, 61 * 1000);
    assert_int_equal(qrl__limit_check(f->core, "unit:k", 2, 60), QRL_OK);
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
        cmocka_unit_test_setup_teardown(test_sweep_and_scopes, fx_setup, fx_teardown),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
