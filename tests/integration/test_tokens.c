/* SPDX-License-Identifier: MIT */
/*
 * What happens to a screen's credential after sign-in: refresh-token rotation and theft
 * detection (RFC 6749 section 6 + our reuse rule), revoking a device from the phone, RFC 7009
 * revocation and RFC 7662 introspection as a resource server sees it. "Dead" always means
 * dead from the next request on: introspection says inactive and refresh is refused.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

static void expect_refresh_refused(const it_server *s, const char *rt)
{
    it_resp *r = it_refresh(s, IT_CLIENT_ID, rt);
    it_expect_oauth_error(r, "invalid_grant");
    assert_null(it_jstr(r, "access_token"));
    it_resp_free(r);
}

static void test_refresh_rotates(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens t1, t2;
    it_login_screen(s, &phone, &t1, NULL);

    it_resp *r = it_refresh(s, IT_CLIENT_ID, t1.refresh_token);
    it_expect_tokens(r, &t2);
    assert_true(it_contains_ci(r->pragma, "no-cache"));
    assert_string_equal(it_jstr(r, "scope"), "profile");
    it_resp_free(r);
    assert_string_not_equal(t2.refresh_token, t1.refresh_token);
    assert_string_not_equal(t2.access_token, t1.access_token);
    assert_int_equal(it_introspect_active(s, t2.access_token), 1);

    /* The new refresh token rotates again. */
    it_tokens t3;
    r = it_refresh(s, IT_CLIENT_ID, t2.refresh_token);
    it_expect_tokens(r, &t3);
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t3.access_token), 1);

    expect_refresh_refused(s, "qrl_rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
}

static void test_refresh_reuse_revokes_device(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens t1, t2;
    long long tv;
    it_login_screen(s, &phone, &t1, &tv);
    it_resp *r = it_refresh(s, IT_CLIENT_ID, t1.refresh_token);
    it_expect_tokens(r, &t2);
    it_resp_free(r);

    /* Someone presents the spent refresh token: theft. */
    expect_refresh_refused(s, t1.refresh_token);

    /* The whole device is gone: the legitimate new tokens too. */
    expect_refresh_refused(s, t2.refresh_token);
    assert_int_equal(it_introspect_active(s, t2.access_token), 0);
    assert_int_equal(it_introspect_active(s, t1.access_token), 0);
    assert_int_equal(it_find_device(s, &phone, "Living Room TV"), -1);

    /* The phone is not affected. */
    assert_int_equal(it_introspect_active(s, phone.session), 1);
}

/* RFC 6749 section 6 asks a public client for no authentication, and oauthlib's default
 * refresh request carries no client_id: the token's own client is taken. A client_id that is
 * sent must still be the token's, and a wrong one spends nothing. */
static void test_refresh_without_client_id(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_tokens t1, t2, t3;
    it_resp *r;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_login_screen(s, &phone, &t1, NULL);

    r = it_form_post(
        s, "/oauth/token",
        (const char *[]){"grant_type", "refresh_token", "refresh_token", t1.refresh_token, NULL},
        NULL);
    assert_non_null(r);
    it_expect_tokens(r, &t2);
    assert_string_equal(it_jstr(r, "scope"), "profile");
    it_resp_free(r);
    assert_string_not_equal(t2.refresh_token, t1.refresh_token);
    assert_int_equal(it_introspect_active(s, t2.access_token), 1);
    r = it_introspect(s, t2.access_token);
    assert_string_equal(it_jstr(r, "client_id"), IT_CLIENT_ID);
    it_resp_free(r);

    /* Another client's id is refused and the token stays good for its own client. */
    r = it_refresh(s, "other-app", t2.refresh_token);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
    r = it_refresh(s, IT_CLIENT_ID, t2.refresh_token);
    it_expect_tokens(r, &t3);
    it_resp_free(r);

    /* Without client_id the refresh token is still required. */
    r = it_form_post(s, "/oauth/token", (const char *[]){"grant_type", "refresh_token", NULL},
                     NULL);
    assert_non_null(r);
    it_expect_oauth_error(r, "invalid_request");
    it_resp_free(r);
}

static void test_delete_device_kills_its_tokens(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens tv_tok, other_tok;
    long long tv;
    it_login_screen(s, &phone, &tv_tok, &tv);
    /* A second screen that must keep working. */
    it_devauth da;
    it_device_authorization(s, "desktop-app", "Work laptop", "desktop", NULL, &da);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_token_poll(s, "desktop-app", da.device_code, 0);
    it_expect_tokens(r, &other_tok);
    it_resp_free(r);

    assert_int_equal(it_introspect_active(s, tv_tok.access_token), 1);
    r = it_revoke_device(s, &phone, tv);
    it_expect(r, 204, NULL);
    it_resp_free(r);

    assert_int_equal(it_introspect_active(s, tv_tok.access_token), 0);
    expect_refresh_refused(s, tv_tok.refresh_token);
    assert_int_equal(it_find_device(s, &phone, "Living Room TV"), -1);
    /* Revoking twice: an already revoked device is "not found". */
    r = it_revoke_device(s, &phone, tv);
    it_expect(r, 404, "not_found");
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, tv_tok.access_token), 0);

    assert_int_equal(it_introspect_active(s, other_tok.access_token), 1);
    r = it_refresh(s, "desktop-app", other_tok.refresh_token);
    it_expect_tokens(r, NULL);
    it_resp_free(r);
}

static void test_rfc7009_revoke_access_token(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens t;
    it_login_screen(s, &phone, &t, NULL);

    it_resp *r = it_form_post(s, "/oauth/revoke",
                              (const char *[]){"token", t.access_token, "token_type_hint",
                                               "access_token", "client_id", IT_CLIENT_ID, NULL},
                              NULL);
    it_expect(r, 200, NULL);
    assert_true(json_is_object(r->json));
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t.access_token), 0);

    /* Revoking an access token ends that token only: the device can refresh. */
    it_tokens t2;
    r = it_refresh(s, IT_CLIENT_ID, t.refresh_token);
    it_expect_tokens(r, &t2);
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t2.access_token), 1);

    /* Revoking again is still 200. */
    r = it_form_post(s, "/oauth/revoke",
                     (const char *[]){"token", t.access_token, "client_id", IT_CLIENT_ID, NULL},
                     NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

static void test_rfc7009_revoke_refresh_token_revokes_device(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens t;
    it_login_screen(s, &phone, &t, NULL);

    it_resp *r = it_form_post(
        s, "/oauth/revoke",
        (const char *[]){"token", t.refresh_token, "client_id", IT_CLIENT_ID, NULL}, NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t.access_token), 0);
    expect_refresh_refused(s, t.refresh_token);
    assert_int_equal(it_find_device(s, &phone, "Living Room TV"), -1);
}

static void test_access_token_expires(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens t;
    it_login_screen(s, &phone, &t, NULL);
    it_resp *r = it_introspect(s, t.access_token);
    it_expect(r, 200, NULL);
    long long ttl = it_jint(r, "exp") - it_jint(r, "iat");
    it_resp_free(r);
    assert_int_equal(ttl, t.expires_in);

    it_clock_advance(s, (t.expires_in + 1) * 1000);
    assert_int_equal(it_introspect_active(s, t.access_token), 0);
    /* The refresh token lives longer and gets a fresh access token. */
    it_tokens t2;
    r = it_refresh(s, IT_CLIENT_ID, t.refresh_token);
    it_expect_tokens(r, &t2);
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t2.access_token), 1);
}

/* Phone sessions and refresh tokens are long-lived (30 days by default), not eternal. */
static void test_long_lived_credentials_expire(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens t;
    it_login_screen(s, &phone, &t, NULL);

    it_clock_advance(s, (2592000LL + 60) * 1000);
    it_resp *r = it_json_send(s, "GET", "/v1/me", phone.session, NULL);
    it_expect(r, 401, "unauthorized");
    assert_true(it_contains_ci(r->www_authenticate, "Bearer"));
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, phone.session), 0);
    expect_refresh_refused(s, t.refresh_token);
}

static void test_introspection_after_phone_revoked(void **state)
{
    it_server *s = *state;
    it_phone phone, laptop;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", &phone);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's laptop", &laptop);
    it_tokens t;
    long long tv;
    it_login_screen(s, &phone, &t, &tv);

    /* The user revokes the lost phone from the laptop: its session stops at once; the TV it
     * approved earlier (already redeemed) is a device of its own and keeps working. */
    it_resp *r = it_revoke_device(s, &laptop, phone.device_id);
    it_expect(r, 204, NULL);
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, phone.session), 0);
    r = it_json_send(s, "GET", "/v1/devices", phone.session, NULL);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t.access_token), 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_refresh_rotates),
        T(test_refresh_reuse_revokes_device),
        T(test_refresh_without_client_id),
        T(test_delete_device_kills_its_tokens),
        T(test_rfc7009_revoke_access_token),
        T(test_rfc7009_revoke_refresh_token_revokes_device),
        T(test_access_token_expires),
        T(test_long_lived_credentials_expire),
        T(test_introspection_after_phone_revoked),
    };
#undef T
    return cmocka_run_group_tests_name("integration/tokens", tests, NULL, NULL);
}
