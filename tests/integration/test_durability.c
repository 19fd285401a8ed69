/* SPDX-License-Identifier: MIT */
/*
 * Crash safety: whatever the server answered before it was killed with SIGKILL is still true
 * after it restarts on the same database. A user would notice a failure as an approval that
 * "did not take", a TV that is signed out after a server crash, or - worse - a spent refresh
 * token that works again.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

static void crash_and_restart(it_server *s)
{
    it_server_kill9(s);
    it_server_start(s);
}

static void test_approval_survives_kill9(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", &phone);
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", "profile", &da);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    crash_and_restart(s);

    /* The screen redeems against the restarted server. */
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_tokens tok;
    it_expect_tokens(r, &tok);
    assert_string_equal(it_jstr(r, "scope"), "profile");
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, tok.access_token), 1);
    /* The phone's session survived too. */
    assert_true(it_find_device(s, &phone, "Living Room TV") > 0);
}

static void test_pending_request_survives_kill9(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    crash_and_restart(s);

    /* Still claimed by this phone, still approvable, still redeemable. */
    r = it_view(s, &phone, da.user_code);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_tokens(r, NULL);
    it_resp_free(r);
}

static void test_redeemed_and_rotated_tokens_survive_kill9(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_tokens t1, t2, t3;
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_tokens(r, &t1);
    it_resp_free(r);

    crash_and_restart(s);

    /* The redemption stuck: the code is spent, the tokens work. (One interval later, so the
     * answer cannot be slow_down if the last poll time was kept.) */
    it_clock_advance(s, 5000);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t1.access_token), 1);
    r = it_refresh(s, IT_CLIENT_ID, t1.refresh_token);
    it_expect_tokens(r, &t2);
    it_resp_free(r);

    crash_and_restart(s);

    /* The rotation stuck: the new refresh token works... */
    r = it_refresh(s, IT_CLIENT_ID, t2.refresh_token);
    it_expect_tokens(r, &t3);
    it_resp_free(r);

    crash_and_restart(s);

    /* ...and the spent ones are still spent: presenting one is theft and ends the device. */
    r = it_refresh(s, IT_CLIENT_ID, t1.refresh_token);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
    r = it_refresh(s, IT_CLIENT_ID, t3.refresh_token);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t3.access_token), 0);
}

static void test_revocation_survives_kill9(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens t;
    long long tv;
    it_login_screen(s, &phone, &t, &tv);
    it_resp *r = it_revoke_device(s, &phone, tv);
    it_expect(r, 204, NULL);
    it_resp_free(r);

    crash_and_restart(s);

    assert_int_equal(it_introspect_active(s, t.access_token), 0);
    r = it_refresh(s, IT_CLIENT_ID, t.refresh_token);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
}

/* A clean stop (SIGTERM, exit 0) and a start keep everything as well. */
static void test_clean_restart_keeps_state(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens t;
    it_login_screen(s, &phone, &t, NULL);
    it_server_stop(s);
    it_server_start(s);
    assert_int_equal(it_introspect_active(s, t.access_token), 1);
    it_resp *r = it_json_send(s, "GET", "/v1/me", phone.session, NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_approval_survives_kill9),
        T(test_pending_request_survives_kill9),
        T(test_redeemed_and_rotated_tokens_survive_kill9),
        T(test_revocation_survives_kill9),
        T(test_clean_restart_keeps_state),
    };
#undef T
    return cmocka_run_group_tests_name("integration/durability", tests, NULL, NULL);
}
