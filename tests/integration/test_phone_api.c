/* SPDX-License-Identifier: MIT */
/*
 * The phone side (/v1/): sign-in, claiming a login request, and every way an approval or a
 * decline can be refused. Each refusal must leave the login request exactly as it was, so the
 * checks after a refusal look at the request from the phone and from the waiting screen.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* alice plus a second account, bob, whose phone plays the "other phone". */
static int setup_two(void **state)
{
    static const it_account two[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME},
                                     {"bob", "bob's own password", "Bob"},
                                     {NULL, NULL, NULL}};
    it_server *s = it_server_new_with_accounts(two);
    it_server_start(s);
    *state = s;
    return 0;
}

/* A login request the phone has scanned (SCANNED). */
static void scanned_request(const it_server *s, const it_phone *p, it_devauth *da)
{
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, da);
    it_resp *r = it_view(s, p, da->scan_secret);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);
}

/* The request is still SCANNED, seen from the phone and from the screen. */
static void expect_still_scanned(const it_server *s, const it_phone *p, const it_devauth *da)
{
    it_resp *r = it_view(s, p, da->scan_secret);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);
    it_clock_advance(s, 5000);
    r = it_token_poll(s, IT_CLIENT_ID, da->device_code, 0);
    it_expect(r, 400, "authorization_pending");
    assert_string_equal(it_jstr(r, "status"), "scanned");
    it_resp_free(r);
}

static void expect_invalid_state(const it_resp *r, const char *state)
{
    it_expect(r, 409, "invalid_state");
    it_expect_error_shape(r);
    const char *got = it_jstr(r, "state");
    if (got == NULL || strcmp(got, state) != 0) {
        print_error("expected \"state\":\"%s\" in the 409 body: %s\n", state, r->body);
        fail();
    }
}

static void redeem_ok(const it_server *s, const it_devauth *da)
{
    it_resp *r = it_token_poll(s, IT_CLIENT_ID, da->device_code, 0);
    it_expect_tokens(r, NULL);
    it_resp_free(r);
}

static void test_sign_in_errors(void **state)
{
    it_server *s = *state;
    it_resp *r = it_json_send(s, "POST", "/v1/sessions", NULL,
                              json_pack("{s:s, s:s}", "username", IT_USER, "password", "wrong"));
    it_expect(r, 401, "invalid_credentials");
    it_expect_error_shape(r);
    assert_null(it_jstr(r, "session_token"));
    it_resp_free(r);

    r = it_json_send(s, "POST", "/v1/sessions", NULL,
                     json_pack("{s:s, s:s}", "username", "mallory", "password", IT_PASSWORD));
    it_expect(r, 401, "invalid_credentials");
    it_resp_free(r);

    json_t *bad[] = {
        json_pack("{s:s}", "username", IT_USER),
        json_pack("{s:s}", "password", IT_PASSWORD),
        json_pack("{s:i, s:s}", "username", 7, "password", IT_PASSWORD),
        json_pack("{s:s, s:b}", "username", IT_USER, "password", 1),
        json_pack("{s:s, s:s, s:s}", "username", IT_USER, "password", IT_PASSWORD, "device_kind",
                  "toaster"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = it_json_send(s, "POST", "/v1/sessions", NULL, bad[i]);
        if (r->status != 400) {
            print_error("sign-in case %zu\n", i);
        }
        it_expect(r, 400, "invalid_request");
        it_expect_error_shape(r);
        it_resp_free(r);
    }
}

static void test_sign_in_rate_limited(void **state)
{
    it_server *s = *state;
    it_resp *r = NULL;
    int tries = 0;
    for (tries = 1; tries <= 30; tries++) {
        it_resp_free(r);
        r = it_json_send(s, "POST", "/v1/sessions", NULL,
                         json_pack("{s:s, s:s}", "username", IT_USER, "password", "guess"));
        if (r->status != 401) {
            break;
        }
    }
    printf("sign-in: rate limited after %d wrong passwords\n", tries - 1);
    it_expect(r, 429, "rate_limited");
    it_expect_error_shape(r);
    assert_true(r->retry_after[0] != '\0' && atol(r->retry_after) > 0);
    it_resp_free(r);

    /* Past the limit even the right password is refused until the window ends. */
    r = it_json_send(s, "POST", "/v1/sessions", NULL,
                     json_pack("{s:s, s:s}", "username", IT_USER, "password", IT_PASSWORD));
    it_expect(r, 429, "rate_limited");
    assert_null(it_jstr(r, "session_token"));
    long retry = atol(r->retry_after);
    it_resp_free(r);

    /* Retry-After is honest: once it has passed, the right password works again. */
    it_clock_advance(s, (retry + 1) * 1000LL);
    r = it_json_send(s, "POST", "/v1/sessions", NULL,
                     json_pack("{s:s, s:s}", "username", IT_USER, "password", IT_PASSWORD));
    if (r->status != 201) {
        print_error("Retry-After said %ld s, but %ld s later sign-in is still refused\n", retry,
                    retry + 1);
    }
    it_expect(r, 201, NULL);
    it_resp_free(r);
}

static void test_approve_twice_is_invalid_state(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    scanned_request(s, &phone, &da);
    it_resp *r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    expect_invalid_state(r, "approved");
    it_resp_free(r);

    /* Declining after approving changes nothing either. */
    r = it_deny(s, &phone, da.scan_secret);
    expect_invalid_state(r, "approved");
    it_resp_free(r);

    redeem_ok(s, &da);

    /* After redemption the request is over for the phone too. */
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    expect_invalid_state(r, "redeemed");
    it_resp_free(r);
}

static void test_approve_after_deny_is_invalid_state(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    scanned_request(s, &phone, &da);
    it_resp *r = it_deny(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "denied");
    it_resp_free(r);

    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    expect_invalid_state(r, "denied");
    it_resp_free(r);
    r = it_deny(s, &phone, da.scan_secret);
    expect_invalid_state(r, "denied");
    it_resp_free(r);

    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "access_denied");
    it_resp_free(r);
}

static void test_second_phone_gets_already_claimed(void **state)
{
    it_server *s = *state;
    it_phone alice, bob;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", &alice);
    it_phone_sign_in(s, "bob", "bob's own password", "Bob's phone", &bob);
    it_devauth da;
    scanned_request(s, &alice, &da);

    it_resp *r = it_view(s, &bob, da.scan_secret);
    it_expect(r, 409, "already_claimed");
    it_expect_error_shape(r);
    /* The other phone learns nothing about the request. */
    assert_null(it_jstr(r, "device_name"));
    assert_null(it_jstr(r, "user_code"));
    it_resp_free(r);
    r = it_view(s, &bob, da.user_code);
    it_expect(r, 409, "already_claimed");
    it_resp_free(r);
    r = it_approve(s, &bob, da.scan_secret, da.user_code, "bob's own password");
    it_expect(r, 409, "already_claimed");
    it_resp_free(r);
    r = it_deny(s, &bob, da.scan_secret);
    it_expect(r, 409, "already_claimed");
    it_resp_free(r);

    /* A second phone of the same account is another phone too. */
    it_phone alice2;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's tablet", &alice2);
    r = it_view(s, &alice2, da.scan_secret);
    it_expect(r, 409, "already_claimed");
    it_resp_free(r);

    expect_still_scanned(s, &alice, &da);
    r = it_approve(s, &alice, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_clock_advance(s, 5000); /* the screen polled in expect_still_scanned() */
    redeem_ok(s, &da);

    /* The TV is alice's, not bob's. */
    assert_true(it_find_device(s, &alice, "Living Room TV") > 0);
    assert_int_equal(it_find_device(s, &bob, "Living Room TV"), -1);
}

static void test_wrong_password_is_step_up_failed(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    scanned_request(s, &phone, &da);

    it_resp *r = it_approve(s, &phone, da.scan_secret, da.user_code, "not my password");
    it_expect(r, 403, "step_up_failed");
    it_expect_error_shape(r);
    it_resp_free(r);
    expect_still_scanned(s, &phone, &da);

    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_clock_advance(s, 5000);
    redeem_ok(s, &da);
}

/* A valid-looking user code that is not `code`: rotate each letter in the alphabet. */
static void other_user_code(const char *code, char *out)
{
    static const char alphabet[] = "BCDFGHJKLMNPQRSTVWXZ";
    size_t n = 0;
    for (const char *p = code; *p != '\0'; p++) {
        const char *at = strchr(alphabet, *p);
        out[n++] = at != NULL ? alphabet[(size_t)(at - alphabet + 1) % 20] : *p;
    }
    out[n] = '\0';
}

static void test_wrong_user_code_is_mismatch(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    scanned_request(s, &phone, &da);

    char wrong[32];
    other_user_code(da.user_code, wrong);
    it_resp *r = it_approve(s, &phone, da.scan_secret, wrong, IT_PASSWORD);
    it_expect(r, 400, "user_code_mismatch");
    it_expect_error_shape(r);
    it_resp_free(r);
    expect_still_scanned(s, &phone, &da);

    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_clock_advance(s, 5000);
    redeem_ok(s, &da);
}

/* Guessing user codes: 404 for each unknown code, then 429 with Retry-After. */
static void test_user_code_guessing_is_rate_limited(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    static const char alphabet[] = "BCDFGHJKLMNPQRSTVWXZ";
    it_resp *r = NULL;
    int tries;
    for (tries = 1; tries <= 40; tries++) {
        char guess[16];
        snprintf(guess, sizeof(guess), "BBBB-BB%c%c", alphabet[tries / 20], alphabet[tries % 20]);
        it_resp_free(r);
        r = it_view(s, &phone, guess);
        if (r->status != 404) {
            break;
        }
        assert_string_equal(it_jstr(r, "error"), "not_found");
    }
    printf("user code lookups: rate limited after %d unknown codes\n", tries - 1);
    it_expect(r, 429, "rate_limited");
    it_expect_error_shape(r);
    if (r->retry_after[0] == '\0' || atol(r->retry_after) <= 0) {
        print_error("429 without a positive Retry-After (got \"%s\")\n", r->retry_after);
        fail();
    }
    long retry = atol(r->retry_after);
    it_resp_free(r);

    /* Once Retry-After has passed, lookups are answered again. */
    it_clock_advance(s, (retry + 1) * 1000LL);
    r = it_view(s, &phone, "BBBB-BBBB");
    if (r->status != 404) {
        print_error("Retry-After said %ld s, but %ld s later lookups are still refused\n", retry,
                    retry + 1);
    }
    it_expect(r, 404, "not_found");
    it_resp_free(r);
}

/* "400 user_code_mismatch (mismatches count against the same limits as wrong user codes)". */
static void test_user_code_mismatch_is_rate_limited(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    scanned_request(s, &phone, &da);
    char wrong[32];
    other_user_code(da.user_code, wrong);
    it_resp *r = NULL;
    int tries;
    for (tries = 1; tries <= 30; tries++) {
        it_resp_free(r);
        r = it_approve(s, &phone, da.scan_secret, wrong, IT_PASSWORD);
        if (r->status != 400) {
            break;
        }
        assert_string_equal(it_jstr(r, "error"), "user_code_mismatch");
    }
    printf("approve: rate limited after %d user code mismatches\n", tries - 1);
    it_expect(r, 429, "rate_limited");
    assert_true(r->retry_after[0] != '\0' && atol(r->retry_after) > 0);
    it_resp_free(r);

    /* Still not approved. */
    it_clock_advance(s, 5000);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect(r, 400, "authorization_pending");
    it_resp_free(r);
}

/* The phone sees how old the request is and how long it has left, on the server's clock. */
static void test_view_age_follows_clock(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    scanned_request(s, &phone, &da);
    it_clock_advance(s, 10000);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    long long age = it_jint(r, "age_seconds"), left = it_jint(r, "expires_in");
    it_resp_free(r);
    if (age < 10 || age > 12 || left < 108 || left > 110) {
        print_error("after 10 s: age_seconds %lld, expires_in %lld (want ~10 and ~110)\n", age,
                    left);
        fail();
    }
}

/* POST /oauth/device_authorization for a TV with the given platform (NULL: not sent). */
static it_resp *authorize_with_platform(const it_server *s, const char *platform)
{
    const char *kv[9] = {"client_id",      IT_CLIENT_ID,  "device_name",
                         "Living Room TV", "device_kind", "tv"};
    if (platform != NULL) {
        kv[6] = "device_platform";
        kv[7] = platform;
    }
    return it_form_post(s, "/oauth/device_authorization", kv, NULL);
}

/* The phone's view of the request a device authorization answer names; asserts 200. */
static it_resp *view_of(const it_server *s, const it_phone *p, const it_resp *da)
{
    const char *complete = it_jstr(da, "verification_uri_complete");
    assert_non_null(complete);
    assert_non_null(strchr(complete, '#'));
    it_resp *r = it_view(s, p, strchr(complete, '#') + 1);
    it_expect(r, 200, NULL);
    return r;
}

/* What the screen says it runs on reaches the phone that scans it, as sent; a screen that says
 * nothing shows ""; a platform over the limit or with control characters is refused by name. */
static void test_view_shows_device_platform(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    /* Plain text, text that needs JSON escaping, non-ASCII text, exactly the limit. */
    const char *ok[] = {"Samsung Tizen", "Chrome \"Canary\" on Linux", "LG webOS \xe2\x80\x94 6",
                        "pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        it_resp *da = authorize_with_platform(s, ok[i]);
        it_expect(da, 200, NULL);
        it_resp *r = view_of(s, &phone, da);
        assert_string_equal(it_jstr(r, "device_name"), "Living Room TV");
        assert_string_equal(it_jstr(r, "device_kind"), "tv");
        assert_string_equal(it_jstr(r, "device_platform"), ok[i]);
        it_resp_free(r);
        it_resp_free(da);
    }

    it_resp *da = authorize_with_platform(s, NULL);
    it_expect(da, 200, NULL);
    it_resp *r = view_of(s, &phone, da);
    assert_string_equal(it_jstr(r, "device_platform"), "");
    it_resp_free(r);
    it_resp_free(da);

    const char *bad[] = {"ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp",
                         "Tizen\n6.5", "Tizen\x01", "Tizen \xc3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = authorize_with_platform(s, bad[i]);
        it_expect(r, 400, "invalid_request");
        it_expect_error_shape(r);
        const char *why = it_jstr(r, "error_description");
        assert_non_null(why);
        assert_non_null(strstr(why, "device_platform"));
        assert_non_null(strstr(why, "64"));
        it_resp_free(r);
    }
}

/* "Body optional ({})" for deny; and a JSON field given twice is a parameter given twice. */
static void test_deny_without_body_and_duplicate_fields(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);

    it_req req = {.method = "POST",
                  .path = "/v1/sessions",
                  .content_type = "application/json",
                  .body = "{\"username\":\"alice\",\"username\":\"bob\",\"password\":\"x\"}"};
    it_resp *r = it_http(s, &req);
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);

    it_devauth da;
    scanned_request(s, &phone, &da);
    char path[256];
    snprintf(path, sizeof(path), "/v1/login-requests/%s/deny", da.scan_secret);
    r = it_http(s, &(it_req){.method = "POST", .path = path, .bearer = phone.session});
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "denied");
    it_resp_free(r);
}

static void test_lookup_errors(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_view(s, &phone, "qrl_ss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    it_expect(r, 404, "not_found");
    it_expect_error_shape(r);
    it_resp_free(r);
    r = it_approve(s, &phone, "qrl_ss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "BBBB-BBBB",
                   IT_PASSWORD);
    it_expect(r, 404, "not_found");
    it_resp_free(r);

    /* Approve with a missing or mistyped field is a bad request and changes nothing. */
    it_devauth da;
    scanned_request(s, &phone, &da);
    char path[256];
    snprintf(path, sizeof(path), "/v1/login-requests/%s/approve", da.scan_secret);
    json_t *bad[] = {
        json_pack("{s:s}", "password", IT_PASSWORD),
        json_pack("{s:s}", "user_code", da.user_code),
        json_pack("{s:s, s:i}", "user_code", da.user_code, "password", 12345),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = it_json_send(s, "POST", path, phone.session, bad[i]);
        it_expect(r, 400, "invalid_request");
        it_resp_free(r);
    }
    expect_still_scanned(s, &phone, &da);
}

/* "The phone must have read (claimed) the request first": approving blind is refused and
 * changes nothing. */
static void test_approve_requires_claim(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    it_resp *r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    /* docs/api.md: "409 invalid_state (with "state"; a PENDING request must be read first)" */
    expect_invalid_state(r, "pending");
    it_resp_free(r);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect(r, 400, "authorization_pending");
    it_resp_free(r);
}

static void test_devices_and_revocation_scope(void **state)
{
    it_server *s = *state;
    it_phone alice, bob;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", &alice);
    it_phone_sign_in(s, "bob", "bob's own password", "Bob's phone", &bob);

    /* Another account's device and an unknown id are both "not found". */
    it_resp *r = it_revoke_device(s, &alice, bob.device_id);
    it_expect(r, 404, "not_found");
    it_resp_free(r);
    r = it_revoke_device(s, &alice, 999999);
    it_expect(r, 404, "not_found");
    it_resp_free(r);
    r = it_json_send(s, "GET", "/v1/me", bob.session, NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    /* Revoking the calling device signs the phone out. */
    r = it_revoke_device(s, &alice, alice.device_id);
    it_expect(r, 204, NULL);
    it_resp_free(r);
    r = it_json_send(s, "GET", "/v1/me", alice.session, NULL);
    it_expect(r, 401, "unauthorized");
    assert_true(it_contains_ci(r->www_authenticate, "Bearer"));
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, alice.session), 0);
}

/* A device unused for 30 days (the default) stops working and the devices list says so: the
 * screen's access token is no longer active and its refresh is refused; a phone signed in
 * again sees both the screen and its old session as expired, itself not. */
static void test_idle_devices_expire(void **state)
{
    it_server *s = *state;
    it_phone old, fresh;
    it_tokens tv;
    long long tv_id;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Old phone", &old);
    it_login_screen(s, &old, &tv, &tv_id);
    assert_true(it_introspect_active(s, tv.access_token) == 1);
    it_clock_advance(s, 31LL * 24 * 3600 * 1000);
    assert_int_equal(it_introspect_active(s, tv.access_token), 0);
    it_resp *r = it_refresh(s, IT_CLIENT_ID, tv.refresh_token);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
    r = it_json_send(s, "GET", "/v1/devices", old.session, NULL);
    it_expect(r, 401, NULL);
    it_resp_free(r);

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "New phone", &fresh);
    r = it_json_send(s, "GET", "/v1/devices", fresh.session, NULL);
    it_expect(r, 200, NULL);
    json_t *list = json_object_get(r->json, "devices");
    int checked = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *d = json_array_get(list, i);
        long long id = (long long)json_integer_value(json_object_get(d, "id"));
        int expired = json_is_true(json_object_get(d, "expired"));
        if (id == tv_id || id == old.device_id) {
            assert_true(expired);
            checked++;
        } else if (id == fresh.device_id) {
            assert_false(expired);
            checked++;
        }
    }
    assert_int_equal(checked, 3);
    it_resp_free(r);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
#define T2(fn) cmocka_unit_test_setup_teardown(fn, setup_two, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_sign_in_errors),
        T(test_sign_in_rate_limited),
        T(test_approve_twice_is_invalid_state),
        T(test_approve_after_deny_is_invalid_state),
        T2(test_second_phone_gets_already_claimed),
        T(test_wrong_password_is_step_up_failed),
        T(test_wrong_user_code_is_mismatch),
        T(test_user_code_guessing_is_rate_limited),
        T(test_user_code_mismatch_is_rate_limited),
        T(test_view_age_follows_clock),
        T(test_view_shows_device_platform),
        T(test_deny_without_body_and_duplicate_fields),
        T(test_lookup_errors),
        T(test_approve_requires_claim),
        T2(test_devices_and_revocation_scope),
        T(test_idle_devices_expire),
    };
#undef T
#undef T2
    return cmocka_run_group_tests_name("integration/phone_api", tests, NULL, NULL);
}
