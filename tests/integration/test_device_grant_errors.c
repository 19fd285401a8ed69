/* SPDX-License-Identifier: MIT */
/*
 * Every RFC 8628 answer a screen can get from the token endpoint other than tokens, and the
 * input checks of the device authorization endpoint. A standard OAuth device-flow client relies
 * on these exact error codes to decide whether to keep polling, slow down or start over, so a
 * wrong code here is a broken TV app. Time moves with POST /_test/clock, never with sleeps.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

static it_resp *poll_once(const it_server *s, const it_devauth *da)
{
    return it_token_poll(s, IT_CLIENT_ID, da->device_code, 0);
}

static void expect_pending(const it_resp *r, const char *status)
{
    it_expect_oauth_error(r, "authorization_pending");
    const char *got = it_jstr(r, "status");
    if (got == NULL || strcmp(got, status) != 0) {
        print_error("expected \"status\":\"%s\" in: %s\n", status, r->body);
        fail();
    }
}

static void test_pending_then_scanned(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);

    it_resp *r = poll_once(s, &da);
    expect_pending(r, "pending");
    it_resp_free(r);

    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    it_clock_advance(s, 5000);
    r = poll_once(s, &da);
    expect_pending(r, "scanned"); /* the screen can show "Confirm on your phone" */
    it_resp_free(r);
}

static void test_slow_down_when_polling_too_fast(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);

    it_resp *r = poll_once(s, &da);
    expect_pending(r, "pending");
    it_resp_free(r);

    r = poll_once(s, &da);
    it_expect_oauth_error(r, "slow_down");
    /* RFC 8628 section 3.5: the interval grows by 5 s from now on. */
    assert_int_equal(it_jint(r, "interval"), 10);
    it_resp_free(r);

    /* A client that now keeps to the new 10 s interval is fine again. */
    it_clock_advance(s, 10000);
    r = poll_once(s, &da);
    expect_pending(r, "pending");
    it_resp_free(r);
}

/* Plain pending answers are made once per state and interval and shared between requests
 * (server/http_oauth.c): each request must still get its own state and interval, with the
 * headers of a token endpoint answer, however many times the answer is reused. */
static void test_pending_answers_per_request(void **state)
{
    it_server *s = *state;
    it_devauth a, b, c;
    it_phone phone;
    it_resp *r;

    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &a);
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &b);
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &c);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    r = it_view(s, &phone, c.scan_secret); /* the phone scanned c */
    it_expect(r, 200, NULL);
    it_resp_free(r);

    for (int round = 0; round < 3; round++) {
        r = poll_once(s, &a);
        if (round == 1) {
            /* a polled too soon once: its interval is 10 s from now on, b's stays 5 s. */
            it_expect_oauth_error(r, "slow_down");
            it_resp_free(r);
            it_clock_advance(s, 10000);
            r = poll_once(s, &a);
        }
        expect_pending(r, "pending");
        assert_int_equal(it_jint(r, "interval"), round == 0 ? 5 : 10);
        it_resp_free(r);
        r = poll_once(s, &b);
        expect_pending(r, "pending");
        assert_int_equal(it_jint(r, "interval"), 5);
        it_resp_free(r);
        r = poll_once(s, &c);
        expect_pending(r, "scanned");
        assert_int_equal(it_jint(r, "interval"), 5);
        it_resp_free(r);
        if (round == 0)
            continue; /* round 1 polls a again at once, to be told slow_down */
        it_clock_advance(s, 10000);
    }
}

static void test_no_slow_down_when_keeping_interval(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    for (int i = 0; i < 4; i++) {
        if (i > 0) {
            it_clock_advance(s, 5000);
        }
        it_resp *r = poll_once(s, &da);
        expect_pending(r, "pending");
        it_resp_free(r);
    }
}

static void test_access_denied_after_deny(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);

    /* Declined after scanning. */
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_deny(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "denied");
    it_resp_free(r);
    r = poll_once(s, &da);
    it_expect_oauth_error(r, "access_denied");
    it_resp_free(r);
    /* Terminal: it stays denied. */
    it_clock_advance(s, 5000);
    r = poll_once(s, &da);
    it_expect_oauth_error(r, "access_denied");
    it_resp_free(r);

    /* Declined by user code while still PENDING (typed, never scanned). */
    it_devauth da2;
    it_device_authorization(s, IT_CLIENT_ID, "Kitchen TV", "tv", NULL, &da2);
    r = it_deny(s, &phone, da2.user_code);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "denied");
    it_resp_free(r);
    r = poll_once(s, &da2);
    it_expect_oauth_error(r, "access_denied");
    it_resp_free(r);
}

static void test_expired_token(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    it_resp *r = poll_once(s, &da);
    expect_pending(r, "pending");
    it_resp_free(r);

    it_clock_advance(s, 121000);
    r = poll_once(s, &da);
    it_expect_oauth_error(r, "expired_token");
    it_resp_free(r);

    /* A phone that scans the stale QR code is told it expired. */
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 410, "expired");
    it_expect_error_shape(r);
    it_resp_free(r);
}

static void test_expired_after_approval_not_redeemed(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    /* APPROVED but not redeemed in time: EXPIRED, no tokens. */
    it_clock_advance(s, 121000);
    r = poll_once(s, &da);
    it_expect_oauth_error(r, "expired_token");
    it_resp_free(r);
}

static void test_invalid_grant_unknown_code(void **state)
{
    it_server *s = *state;
    it_resp *r =
        it_token_poll(s, IT_CLIENT_ID, "qrl_dc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
    r = it_token_poll(s, IT_CLIENT_ID, "not-a-device-code", 0);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);

    /* The scan secret is not a device code. */
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    r = it_token_poll(s, IT_CLIENT_ID, da.scan_secret, 0);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
}

static void test_invalid_grant_other_client(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    /* Another client presenting the code gets nothing... */
    r = it_token_poll(s, "evil-app", da.device_code, 0);
    it_expect_oauth_error(r, "invalid_grant");
    assert_null(it_jstr(r, "access_token"));
    it_resp_free(r);

    /* ...and did not spoil the request for its rightful client. */
    it_clock_advance(s, 5000);
    r = poll_once(s, &da);
    it_expect_tokens(r, NULL);
    it_resp_free(r);
}

static void test_invalid_grant_on_second_redeem(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = poll_once(s, &da);
    it_expect_tokens(r, NULL);
    it_resp_free(r);

    for (int i = 0; i < 2; i++) {
        it_clock_advance(s, 5000);
        r = poll_once(s, &da);
        it_expect_oauth_error(r, "invalid_grant");
        assert_null(it_jstr(r, "access_token"));
        it_resp_free(r);
    }
}

static void test_unsupported_grant_type(void **state)
{
    it_server *s = *state;
    static const char *const grants[] = {"password", "client_credentials", "authorization_code",
                                         "urn:ietf:params:oauth:grant-type:jwt-bearer"};
    for (size_t i = 0; i < sizeof(grants) / sizeof(grants[0]); i++) {
        it_resp *r =
            it_form_post(s, "/oauth/token",
                         (const char *[]){"grant_type", grants[i], "client_id", IT_CLIENT_ID,
                                          "username", IT_USER, "password", IT_PASSWORD, NULL},
                         NULL);
        it_expect_oauth_error(r, "unsupported_grant_type");
        it_resp_free(r);
    }
}

static void test_invalid_request_missing_or_repeated(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    const char *dc = da.device_code;
    const char *g = IT_DEVICE_CODE_GRANT;
    const char *c = IT_CLIENT_ID;
    const char *const *cases[] = {
        /* missing */
        (const char *[]){"grant_type", g, "client_id", c, NULL},
        (const char *[]){"grant_type", g, "device_code", dc, NULL},
        (const char *[]){"device_code", dc, "client_id", c, NULL},
        /* repeated, even with the same value (RFC 6749 section 3.1) */
        (const char *[]){"grant_type", g, "device_code", dc, "device_code", dc, "client_id", c,
                         NULL},
        (const char *[]){"grant_type", g, "device_code", dc, "client_id", c, "client_id", c, NULL},
        (const char *[]){"grant_type", g, "grant_type", g, "device_code", dc, "client_id", c, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        it_resp *r = it_form_post(s, "/oauth/token", cases[i], NULL);
        if (r->status != 400 || it_jstr(r, "error") == NULL ||
            strcmp(it_jstr(r, "error"), "invalid_request") != 0) {
            print_error("case %zu: expected 400 invalid_request\n", i);
        }
        it_expect_oauth_error(r, "invalid_request");
        it_resp_free(r);
    }

    /* None of that touched the login request. */
    it_clock_advance(s, 5000);
    it_resp *r = poll_once(s, &da);
    expect_pending(r, "pending");
    it_resp_free(r);
}

/* "invalid_request: a parameter missing, repeated or too long" (docs/api.md); the limits are
 * those of include/qrlogin/limits.h (QRL_MAX_TOKEN 128, QRL_MAX_CLIENT_ID 64). */
static void test_invalid_request_too_long(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);

    char longcode[300];
    memset(longcode, 'A', sizeof(longcode) - 1);
    longcode[sizeof(longcode) - 1] = '\0';
    memcpy(longcode, "qrl_dc_", 7);
    it_resp *r = it_token_poll(s, IT_CLIENT_ID, longcode, 0);
    it_expect_oauth_error(r, "invalid_request");
    it_resp_free(r);

    char long_client[80];
    memset(long_client, 'c', sizeof(long_client) - 1);
    long_client[sizeof(long_client) - 1] = '\0';
    r = it_token_poll(s, long_client, da.device_code, 0);
    it_expect_oauth_error(r, "invalid_request");
    it_resp_free(r);
}

static void test_device_authorization_rejects_bad_input(void **state)
{
    it_server *s = *state;
    char long_client[66], long_name[66], long_scope[258];
    memset(long_client, 'a', 65);
    long_client[65] = '\0';
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    memset(long_scope, 's', 257);
    long_scope[257] = '\0';
    const char *const *cases[] = {
        (const char *[]){"device_name", "TV", NULL},
        (const char *[]){"client_id", "", NULL},
        (const char *[]){"client_id", long_client, NULL},
        (const char *[]){"client_id", "tv app", NULL},
        (const char *[]){"client_id", "tv/app", NULL},
        (const char *[]){"client_id", IT_CLIENT_ID, "device_kind", "toaster", NULL},
        (const char *[]){"client_id", IT_CLIENT_ID, "device_kind", "phone", NULL},
        (const char *[]){"client_id", IT_CLIENT_ID, "device_name", long_name, NULL},
        (const char *[]){"client_id", IT_CLIENT_ID, "scope", long_scope, NULL},
        (const char *[]){"client_id", IT_CLIENT_ID, "client_id", IT_CLIENT_ID, NULL},
        (const char *[]){"client_id", IT_CLIENT_ID, "device_name", "a", "device_name", "b", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        it_resp *r = it_form_post(s, "/oauth/device_authorization", cases[i], NULL);
        if (r->status != 400) {
            print_error("device_authorization case %zu: expected 400, got %ld\n", i, r->status);
        }
        it_expect(r, 400, "invalid_request");
        it_expect_error_shape(r);
        it_resp_free(r);
    }

    /* Bytes that are not text, or text that hides or reorders itself, in a name shown to the
     * phone; a body that is not a form. Raw bodies, as a hostile client sends them. */
    const char *raw[] = {
        "client_id=tv-app&device_name=%FF%FE",            /* invalid UTF-8 */
        "client_id=tv-app&device_name=TV%00Evil",         /* NUL */
        "client_id=tv-app&device_name=TV%1B%5B31m",       /* C0 control (an escape sequence) */
        "client_id=tv-app&device_name=TV%C2%85",          /* C1 control */
        "client_id=tv-app&device_name=VT%E2%80%AEmooR",   /* right-to-left override */
        "client_id=tv-app&device_name=T%E2%80%8BV",       /* zero-width space */
        "client_id=tv-app&device_platform=%E2%81%A6x",    /* left-to-right isolate */
        "client_id=tv-app&device_name=%C0%AF",            /* overlong encoding */
        "client_id=tv-app&device_name=%ED%A0%80",         /* a UTF-16 surrogate */
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        it_req req = {.path = "/oauth/device_authorization",
                      .content_type = "application/x-www-form-urlencoded",
                      .body = raw[i]};
        it_resp *r = it_http(s, &req);
        if (r->status != 400)
            print_error("raw case %zu: expected 400, got %ld\n", i, r->status);
        it_expect(r, 400, "invalid_request");
        it_expect_error_shape(r);
        it_resp_free(r);
    }
    it_req json = {.path = "/oauth/device_authorization",
                   .content_type = "application/json",
                   .body = "{\"client_id\":\"tv-app\"}"};
    it_resp *r = it_http(s, &json);
    assert_true(r->status == 400 || r->status == 415);
    it_expect_error_shape(r);
    it_resp_free(r);
    /* None of them created anything. */
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM login_requests"), 0);

    /* The limits themselves are accepted: 64-byte client_id and device_name, 256-byte scope. */
    long_client[64] = '\0';
    long_name[64] = '\0';
    long_scope[256] = '\0';
    it_devauth da;
    it_device_authorization(s, long_client, long_name, "desktop", long_scope, &da);
    assert_true(it_has_prefix(da.device_code, "qrl_dc_"));
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM login_requests"), 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_pending_then_scanned),
        T(test_slow_down_when_polling_too_fast),
        T(test_no_slow_down_when_keeping_interval),
        T(test_pending_answers_per_request),
        T(test_access_denied_after_deny),
        T(test_expired_token),
        T(test_expired_after_approval_not_redeemed),
        T(test_invalid_grant_unknown_code),
        T(test_invalid_grant_other_client),
        T(test_invalid_grant_on_second_redeem),
        T(test_unsupported_grant_type),
        T(test_invalid_request_missing_or_repeated),
        T(test_invalid_request_too_long),
        T(test_device_authorization_rejects_bad_input),
    };
#undef T
    return cmocka_run_group_tests_name("integration/device_grant_errors", tests, NULL, NULL);
}
