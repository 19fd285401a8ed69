/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of lib/token.c: the token pair a login issues, refresh rotation, reuse detection
 * (RFC 9700 section 4.14.2), expiry, introspection (RFC 7662) and revocation (RFC 7009).
 */
#include "core_fixture.h"

static void test_issue(void **state)
{
    fx *f = *state;
    qrl_tokens t;
    qrl_introspection in;

    fx_login(f, &f->alice, &t);
    assert_int_equal(strncmp(t.access_token, "qrl_at_", 7), 0);
    assert_int_equal(strncmp(t.refresh_token, "qrl_rt_", 7), 0);
    assert_int_equal(t.expires_in_s, 3600);
    assert_string_equal(t.scope, "profile");
    assert_int_equal(t.account_id, f->alice.account_id);
    assert_true(t.device_id > 0);

    assert_int_equal(qrl_introspect(f->core, t.access_token, &in), QRL_OK);
    assert_true(in.active);
    assert_int_equal(in.kind, QRL_TOKEN_ACCESS);
    assert_string_equal(in.username, "alice");
    assert_string_equal(in.client_id, FX_CLIENT);
    assert_string_equal(in.scope, "profile");
    assert_int_equal(in.device_id, t.device_id);
    assert_int_equal(in.exp_s - in.iat_s, 3600);
    assert_int_equal(qrl_introspect(f->core, t.refresh_token, &in), QRL_OK);
    assert_true(in.active);
    assert_int_equal(in.kind, QRL_TOKEN_REFRESH);
}

static void test_rotate(void **state)
{
    fx *f = *state;
    qrl_tokens t, t2;
    qrl_introspection in;

    fx_login(f, &f->alice, &t);
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
    assert_string_not_equal(t2.access_token, t.access_token);
    assert_string_not_equal(t2.refresh_token, t.refresh_token);
    assert_int_equal(t2.device_id, t.device_id);
    assert_int_equal(t2.account_id, f->alice.account_id);
    assert_string_equal(t2.scope, "profile");
    /* RFC 6749 section 6: a public client need not name itself. */
    assert_int_equal(qrl_token_refresh(f->core, NULL, t2.refresh_token, &t), QRL_OK);
    /* The spent refresh token is no longer active; the new pair is. */
    assert_int_equal(qrl_introspect(f->core, t2.refresh_token, &in), QRL_OK);
    assert_false(in.active);
    assert_int_equal(qrl_introspect(f->core, t.access_token, &in), QRL_OK);
    assert_true(in.active);
}

/* Refreshes per device: the fixture's default is 30 per 10 minutes; a loop is refused before
 * it rotates anything, and the token it presented still works once the limit lets it in. */
static void test_refresh_limit_per_device(void **state)
{
    fx *f = *state;
    qrl_tokens t, t2, other;

    fx_login(f, &f->alice, &t);
    fx_login(f, &f->bob, &other);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
        t = t2;
    }
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2),
                     QRL_ERR_RATE_LIMITED);
    assert_true(qrl_retry_after_s() >= 15 && qrl_retry_after_s() <= 20);
    /* Another device is not affected. */
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, other.refresh_token, &t2), QRL_OK);
    qrl_core_clock_advance(f->core, 20 * 1000);
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
    sodium_memzero(&t, sizeof t);
    sodium_memzero(&t2, sizeof t2);
}

/* A device unused for 30 days (the default) stops working: its refresh token is refused as
 * expired without rotating, introspection says inactive, and the devices list marks it. A
 * device in use (refresh, introspection) stays. */
static void test_idle_device_stops_working(void **state)
{
    fx *f = *state;
    qrl_tokens idle, used, t2;
    qrl_introspection in;
    qrl_device_rec devs[8];
    size_t n = 0;

    fx_login(f, &f->alice, &idle);
    fx_login(f, &f->alice, &used);
    for (int day = 0; day < 31; day += 10) {
        qrl_core_clock_advance(f->core, 10LL * 24 * 3600 * 1000);
        assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, used.refresh_token, &t2), QRL_OK);
        used = t2;
    }
    /* 40 days later: the used one works, the idle one is over (30 days). */
    assert_int_equal(qrl_introspect(f->core, used.access_token, &in), QRL_OK);
    assert_true(in.active);
    assert_int_equal(qrl_introspect(f->core, idle.access_token, &in), QRL_OK);
    assert_false(in.active);
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, idle.refresh_token, &t2),
                     QRL_ERR_EXPIRED);
    assert_int_equal(qrl_devices_list(f->core, &f->alice, devs, 8, &n), QRL_OK);
    int seen = 0;
    int64_t now = qrl_core_now_ms(f->core);
    for (size_t i = 0; i < n; i++) {
        if (devs[i].id == idle.device_id) {
            assert_true(qrl_device_idle(f->core, &devs[i], now));
            seen++;
        }
        if (devs[i].id == used.device_id) {
            assert_false(qrl_device_idle(f->core, &devs[i], now));
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    sodium_memzero(&idle, sizeof idle);
    sodium_memzero(&used, sizeof used);
    sodium_memzero(&t2, sizeof t2);
}

/* However often it is rotated, a device's refresh token ends 180 days (the default) after the
 * device was linked. */
static void test_refresh_absolute_lifetime(void **state)
{
    fx *f = *state;
    qrl_tokens t, t2;

    fx_login(f, &f->alice, &t);
    for (int day = 7; day <= 175; day += 7) {
        qrl_core_clock_advance(f->core, 7LL * 24 * 3600 * 1000);
        assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
        t = t2;
    }
    qrl_core_clock_advance(f->core, 7LL * 24 * 3600 * 1000); /* day 182 */
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_ERR_EXPIRED);
    sodium_memzero(&t, sizeof t);
    sodium_memzero(&t2, sizeof t2);
}

static void test_reuse_revokes(void **state)
{
    fx *f = *state;
    qrl_tokens t, t2, t3;
    qrl_introspection in;

    fx_login(f, &f->alice, &t);
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
    /* Two parties hold the family: the whole device goes. */
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t3),
                     QRL_ERR_TOKEN_REUSED);
    assert_int_equal(t3.access_token[0], '\0');
    assert_int_equal(qrl_introspect(f->core, t2.access_token, &in), QRL_OK);
    assert_false(in.active);
    assert_int_not_equal(qrl_token_refresh(f->core, FX_CLIENT, t2.refresh_token, &t3), QRL_OK);
}

static void test_wrong_client_spends_nothing(void **state)
{
    fx *f = *state;
    qrl_tokens t, t2;

    fx_login(f, &f->alice, &t);
    assert_int_equal(qrl_token_refresh(f->core, "other-app", t.refresh_token, &t2),
                     QRL_ERR_INVALID_CLIENT);
    assert_int_equal(qrl_token_refresh(f->core, "", t.refresh_token, &t2), QRL_ERR_INVALID);
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
}

static void test_not_a_refresh_token(void **state)
{
    fx *f = *state;
    qrl_tokens t, t2;

    fx_login(f, &f->alice, &t);
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.access_token, &t2), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, "qrl_rt_unknown", &t2),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, "garbage", &t2), QRL_ERR_NOT_FOUND);
}

static void test_expiry(void **state)
{
    fx *f = *state;
    qrl_tokens t, t2;
    qrl_introspection in;

    fx_login(f, &f->alice, &t);
    qrl_core_clock_advance(f->core, 3600 * 1000 + 1000);
    assert_int_equal(qrl_introspect(f->core, t.access_token, &in), QRL_OK);
    assert_false(in.active);
    /* The refresh token lives 30 days: it still makes a new pair. */
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
    qrl_core_clock_advance(f->core, 31LL * 24 * 3600 * 1000);
    assert_int_not_equal(qrl_token_refresh(f->core, FX_CLIENT, t2.refresh_token, &t), QRL_OK);
    assert_int_equal(qrl_introspect(f->core, t2.refresh_token, &in), QRL_OK);
    assert_false(in.active);
}

static void test_introspect_unknown(void **state)
{
    fx *f = *state;
    qrl_introspection in;

    assert_int_equal(qrl_introspect(f->core, "nonsense", &in), QRL_OK);
    assert_false(in.active);
    assert_int_equal(qrl_introspect(f->core, "qrl_at_AAAA", &in), QRL_OK);
    assert_false(in.active);
}

static void test_revoke_access(void **state)
{
    fx *f = *state;
    qrl_tokens t, t2;
    qrl_introspection in;

    fx_login(f, &f->alice, &t);
    assert_int_equal(qrl_revoke_token(f->core, t.access_token), QRL_OK);
    assert_int_equal(qrl_introspect(f->core, t.access_token, &in), QRL_OK);
    assert_false(in.active);
    /* Only the access token: the grant goes on. */
    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
}

static void test_revoke_refresh_ends_device(void **state)
{
    fx *f = *state;
    qrl_tokens t, t2;
    qrl_introspection in;

    fx_login(f, &f->alice, &t);
    assert_int_equal(qrl_revoke_token(f->core, t.refresh_token), QRL_OK);
    assert_int_equal(qrl_introspect(f->core, t.access_token, &in), QRL_OK);
    assert_false(in.active);
    assert_int_not_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
    /* RFC 7009 section 2.2: unknown or repeated revocations are not errors. */
    assert_int_equal(qrl_revoke_token(f->core, t.refresh_token), QRL_OK);
    assert_int_equal(qrl_revoke_token(f->core, "qrl_at_unknown"), QRL_OK);
    assert_int_equal(qrl_revoke_token(f->core, "garbage"), QRL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_issue, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rotate, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refresh_limit_per_device, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_idle_device_stops_working, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refresh_absolute_lifetime, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reuse_revokes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_client_spends_nothing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_not_a_refresh_token, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_expiry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_introspect_unknown, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_access, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_refresh_ends_device, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
