/* SPDX-License-Identifier: MIT */
/*
 * The happy path a user walks through, end to end against the real server: discovery metadata,
 * a TV asks for a login request, a phone signs in, scans, checks the details, approves with its
 * password and the code on the screen, and the TV gets its own tokens that a resource server
 * accepts. docs/api.md is the contract.
 */
#include "harness.h"

#include <regex.h>
#include <stdio.h>
#include <string.h>

static void expect_endpoint(const it_server *s, const it_resp *meta, const char *key,
                            const char *path)
{
    const char *url = it_jstr(meta, key);
    if (url == NULL) {
        print_error("metadata lacks \"%s\": %s\n", key, meta->body);
        fail();
    }
    char want[256];
    snprintf(want, sizeof(want), "%s%s", s->base, path);
    assert_string_equal(url, want);

    /* The endpoint must exist: an empty POST is a client error, never 404 or 405. */
    it_resp *r = it_form_post(s, path, (const char *[]){NULL}, NULL);
    assert_non_null(r);
    if (r->status == 404 || r->status == 405 || r->status < 200 || r->status >= 500) {
        print_error("POST %s (advertised as %s) answered %ld: %s\n", path, key, r->status, r->body);
        fail();
    }
    it_resp_free(r);
}

static int array_has(json_t *arr, const char *value)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), value) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_metadata_lists_every_endpoint_under_issuer(void **state)
{
    it_server *s = *state;
    it_resp *r = it_http(s, &(it_req){.path = "/.well-known/oauth-authorization-server"});
    it_expect(r, 200, NULL);
    assert_true(json_is_object(r->json));
    assert_true(it_contains_ci(r->content_type, "application/json"));
    const char *issuer = it_jstr(r, "issuer");
    assert_non_null(issuer);
    assert_string_equal(issuer, s->base);

    expect_endpoint(s, r, "device_authorization_endpoint", "/oauth/device_authorization");
    expect_endpoint(s, r, "token_endpoint", "/oauth/token");
    expect_endpoint(s, r, "introspection_endpoint", "/oauth/introspect");
    expect_endpoint(s, r, "revocation_endpoint", "/oauth/revoke");

    json_t *grants = json_object_get(r->json, "grant_types_supported");
    assert_true(json_is_array(grants));
    assert_true(array_has(grants, IT_DEVICE_CODE_GRANT));
    assert_true(array_has(grants, "refresh_token"));
    json_t *auth = json_object_get(r->json, "token_endpoint_auth_methods_supported");
    assert_true(json_is_array(auth));
    assert_true(array_has(auth, "none"));
    assert_true(json_is_array(json_object_get(r->json, "response_types_supported")));
    json_t *iauth = json_object_get(r->json, "introspection_endpoint_auth_methods_supported");
    assert_true(array_has(iauth, "client_secret_basic"));
    assert_true(array_has(iauth, "bearer"));
    it_resp_free(r);
}

static int matches(const char *pattern, const char *text)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int ok = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/* "WDJB-MJHT" -> "wdjb mjht": how a person might type it on the phone. */
static void typed_form(const char *user_code, char *out)
{
    size_t n = 0;
    for (const char *p = user_code; *p != '\0'; p++) {
        out[n++] = *p == '-' ? ' ' : (char)(*p - 'A' + 'a');
    }
    out[n] = '\0';
}

static void check_device_authorization_shape(const it_server *s, const it_devauth *da)
{
    if (!matches("^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$", da->user_code)) {
        print_error("user_code \"%s\" is not XXXX-XXXX of the RFC 8628 base-20 alphabet\n",
                    da->user_code);
        fail();
    }
    assert_true(it_has_prefix(da->device_code, "qrl_dc_"));
    assert_true(strlen(da->device_code) >= 7 + 22); /* >= 128 bits of base64url */
    assert_true(it_has_prefix(da->scan_secret, "qrl_ss_"));
    assert_true(strlen(da->scan_secret) >= 7 + 22);
    assert_true(strstr(da->verification_uri_complete, "qrl_ss_") != NULL);
    /* The scan secret is a separate secret, never the device code. */
    assert_true(strstr(da->verification_uri_complete, da->device_code) == NULL);
    assert_string_not_equal(da->scan_secret + 7, da->device_code + 7);
    assert_true(it_has_prefix(da->verification_uri, s->base));
    assert_true(it_has_prefix(da->verification_uri_complete, s->base));
    assert_int_equal(da->expires_in, 120);
    assert_int_equal(da->interval, 5);
}

static void check_view(const it_resp *r, const char *user_code)
{
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    assert_string_equal(it_jstr(r, "user_code"), user_code);
    assert_string_equal(it_jstr(r, "device_name"), "Living Room TV");
    assert_string_equal(it_jstr(r, "device_kind"), "tv");
    assert_string_equal(it_jstr(r, "client_id"), IT_CLIENT_ID);
    assert_string_equal(it_jstr(r, "scope"), "profile");
    assert_string_equal(it_jstr(r, "address"), "127.0.0.1");
    assert_int_equal(it_jbool(r, "same_network"), 1);
    assert_true(it_jint(r, "id") > 0);
    assert_true(it_jint(r, "age_seconds") >= 0 && it_jint(r, "age_seconds") <= 5);
    assert_true(it_jint(r, "expires_in") > 100 && it_jint(r, "expires_in") <= 120);
    assert_true(it_jint(r, "created_at") > 1600000000);
}

static void test_full_flow(void **state)
{
    it_server *s = *state;

    /* The screen asks for a login request. */
    it_resp *r =
        it_form_post(s, "/oauth/device_authorization",
                     (const char *[]){"client_id", IT_CLIENT_ID, "device_name", "Living Room TV",
                                      "device_kind", "tv", "scope", "profile", NULL},
                     NULL);
    it_expect(r, 200, NULL);
    /* The response carries secrets. */
    assert_true(it_contains_ci(r->cache_control, "no-store"));
    it_resp_free(r);
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", "profile", &da);
    check_device_authorization_shape(s, &da);

    /* The phone signs in. */
    r = it_json_send(s, "POST", "/v1/sessions", NULL,
                     json_pack("{s:s, s:s, s:s, s:s}", "username", IT_USER, "password", IT_PASSWORD,
                               "device_name", "Alice's phone", "device_kind", "phone"));
    it_expect(r, 201, NULL);
    assert_true(it_contains_ci(r->cache_control, "no-store"));
    it_phone phone = {0};
    snprintf(phone.session, sizeof(phone.session), "%s", it_jstr(r, "session_token"));
    phone.device_id = it_jint(r, "device_id");
    assert_true(it_has_prefix(phone.session, "qrl_st_"));
    assert_string_equal(it_jstr(r, "token_type"), "Bearer");
    assert_true(it_jint(r, "expires_in") > 0);
    assert_true(phone.device_id > 0);
    json_t *acct = json_object_get(r->json, "account");
    assert_string_equal(json_string_value(json_object_get(acct, "username")), IT_USER);
    assert_string_equal(json_string_value(json_object_get(acct, "display_name")), IT_DISPLAY_NAME);
    it_resp_free(r);

    /* The phone scans the QR code: the details of what it is about to approve. */
    r = it_view(s, &phone, da.scan_secret);
    check_view(r, da.user_code);
    long long lr_id = it_jint(r, "id");
    it_resp_free(r);

    /* ...and the same request by the user code, typed lowercase with a space. */
    char typed[32];
    typed_form(da.user_code, typed);
    r = it_view(s, &phone, typed);
    check_view(r, da.user_code);
    assert_int_equal(it_jint(r, "id"), lr_id);
    it_resp_free(r);

    /* The phone approves with its password and the code the user compared. */
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "approved");
    assert_int_equal(it_jint(r, "id"), lr_id);
    it_resp_free(r);

    /* The screen redeems its device code for its own credential. */
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_tokens tok;
    it_expect_tokens(r, &tok);
    assert_true(it_contains_ci(r->pragma, "no-cache"));
    assert_string_equal(it_jstr(r, "scope"), "profile");
    assert_true(it_jint(r, "expires_in") > 0);
    it_resp_free(r);

    /* A resource server accepts the access token. */
    r = it_introspect(s, tok.access_token);
    it_expect(r, 200, NULL);
    assert_int_equal(it_jbool(r, "active"), 1);
    assert_string_equal(it_jstr(r, "username"), IT_USER);
    assert_string_equal(it_jstr(r, "client_id"), IT_CLIENT_ID);
    assert_string_equal(it_jstr(r, "token_type"), "access_token");
    assert_string_equal(it_jstr(r, "scope"), "profile");
    assert_non_null(it_jstr(r, "sub"));
    assert_true(it_jint(r, "exp") > it_jint(r, "iat"));
    long long tv_id = it_jint(r, "device_id");
    assert_true(tv_id > 0);
    it_resp_free(r);

    /* The phone's session token introspects as a session token. */
    r = it_introspect(s, phone.session);
    it_expect(r, 200, NULL);
    assert_int_equal(it_jbool(r, "active"), 1);
    assert_string_equal(it_jstr(r, "token_type"), "session_token");
    it_resp_free(r);

    /* The user sees the TV among the linked devices, next to the phone. */
    r = it_json_send(s, "GET", "/v1/devices", phone.session, NULL);
    it_expect(r, 200, NULL);
    json_t *devices = json_object_get(r->json, "devices");
    assert_true(json_is_array(devices));
    int saw_tv = 0, saw_phone = 0;
    size_t i;
    json_t *d;
    json_array_foreach(devices, i, d)
    {
        long long id = (long long)json_integer_value(json_object_get(d, "id"));
        const char *name = json_string_value(json_object_get(d, "name"));
        const char *kind = json_string_value(json_object_get(d, "kind"));
        json_t *current = json_object_get(d, "current");
        assert_true(json_is_boolean(current));
        assert_true(json_is_integer(json_object_get(d, "created_at")));
        assert_true(json_is_integer(json_object_get(d, "last_seen_at")));
        if (id == tv_id) {
            saw_tv = 1;
            assert_string_equal(name, "Living Room TV");
            assert_string_equal(kind, "tv");
            assert_false(json_is_true(current));
            assert_string_equal(json_string_value(json_object_get(d, "address")), "127.0.0.1");
        } else if (id == phone.device_id) {
            saw_phone = 1;
            assert_string_equal(name, "Alice's phone");
            assert_string_equal(kind, "phone");
            assert_true(json_is_true(current));
        }
    }
    assert_true(saw_tv);
    assert_true(saw_phone);
    it_resp_free(r);

    r = it_json_send(s, "GET", "/v1/me", phone.session, NULL);
    it_expect(r, 200, NULL);
    acct = json_object_get(r->json, "account");
    assert_string_equal(json_string_value(json_object_get(acct, "username")), IT_USER);
    assert_string_equal(json_string_value(json_object_get(acct, "display_name")), IT_DISPLAY_NAME);
    json_t *dev = json_object_get(r->json, "device");
    assert_int_equal(json_integer_value(json_object_get(dev, "id")), phone.device_id);
    assert_string_equal(json_string_value(json_object_get(dev, "name")), "Alice's phone");
    assert_string_equal(json_string_value(json_object_get(dev, "kind")), "phone");
    it_resp_free(r);

    /* The signed-in TV can greet the user by name: /v1/me takes its access token too. */
    r = it_json_send(s, "GET", "/v1/me", tok.access_token, NULL);
    it_expect(r, 200, NULL);
    acct = json_object_get(r->json, "account");
    assert_string_equal(json_string_value(json_object_get(acct, "username")), IT_USER);
    dev = json_object_get(r->json, "device");
    assert_int_equal(json_integer_value(json_object_get(dev, "id")), tv_id);
    assert_string_equal(json_string_value(json_object_get(dev, "name")), "Living Room TV");
    assert_string_equal(json_string_value(json_object_get(dev, "kind")), "tv");
    it_resp_free(r);
}

static void test_defaults_and_no_scope(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, "cli.tool:v1", NULL, NULL, NULL, &da);
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "device_name"), "Unnamed device");
    assert_string_equal(it_jstr(r, "device_kind"), "other");
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_token_poll(s, "cli.tool:v1", da.device_code, 0);
    it_expect_tokens(r, NULL);
    /* No scope was asked for, so none is echoed. */
    assert_null(json_object_get(r->json, "scope"));
    it_resp_free(r);

    /* The phone's default device name is "Phone". */
    r = it_json_send(s, "GET", "/v1/me", phone.session, NULL);
    it_expect(r, 200, NULL);
    json_t *dev = json_object_get(r->json, "device");
    assert_string_equal(json_string_value(json_object_get(dev, "name")), "Phone");
    assert_string_equal(json_string_value(json_object_get(dev, "kind")), "phone");
    it_resp_free(r);
}

/* device_name is untrusted text: the phone gets it back byte for byte (as JSON text), so the
 * app can show it as text. */
static void test_device_name_is_returned_verbatim(void **state)
{
    it_server *s = *state;
    const char *name = "<b>TV</b> \"x\" \\ & \xc3\xa9\xe2\x9c\x93";
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, name, "browser", NULL, &da);
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "device_name"), name);
    assert_string_equal(it_jstr(r, "device_kind"), "browser");
    it_resp_free(r);
}

static int setup_short_ttl(void **state)
{
    static const it_account alice[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME}, {NULL, NULL, NULL}};
    it_server *s = it_server_new_with_accounts(alice);
    s->request_ttl = 30;
    it_server_start(s);
    *state = s;
    return 0;
}

/* --request-ttl is the login request lifetime the screen is told and that the server keeps. */
static void test_request_ttl_option(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    assert_int_equal(da.expires_in, 30);
    it_resp *r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect(r, 400, "authorization_pending");
    it_resp_free(r);
    it_clock_advance(s, 31000);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "expired_token");
    it_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metadata_lists_every_endpoint_under_issuer,
                                        it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_full_flow, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_defaults_and_no_scope, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_device_name_is_returned_verbatim, it_setup_alice,
                                        it_teardown),
        cmocka_unit_test_setup_teardown(test_request_ttl_option, setup_short_ttl, it_teardown),
    };
    return cmocka_run_group_tests_name("integration/flow", tests, NULL, NULL);
}
