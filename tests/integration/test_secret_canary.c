/* SPDX-License-Identifier: MIT */
/*
 * The secret canary of test builds (lib/secret.c): every secret the server draws carries
 * QRLCANARYtst, so that tests/scan_secrets.sh can find any of them written in plain text in a
 * database, a WAL or a log. The scan proves nothing unless the canary really is in every kind
 * of secret, and the canary must not break them: each keeps its documented length and
 * alphabet, and works.
 */
#include "harness.h"

#include <string.h>

#define CANARY "QRLCANARYtst"

/* prefix + base64url of an 8-byte id and 32 bytes (61 characters), or of an 8-byte id and
 * 24 bytes (50 characters, a scan secret); the canary right after the first 12 characters
 * of the body (bytes 9 to 17). */
static void expect_canary(const char *what, const char *secret, const char *prefix, size_t len)
{
    if (secret == NULL || !it_has_prefix(secret, prefix) || strlen(secret) != len ||
        strspn(secret + 7, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
            len - 7 ||
        strncmp(secret + 7 + 12, CANARY, strlen(CANARY)) != 0) {
        print_error("%s \"%s\" is not %s + %zu base64url characters with " CANARY
                    " at body offset 12\n",
                    what, secret != NULL ? secret : "(none)", prefix, len - 7);
        fail();
    }
}

static void test_every_secret_carries_the_canary(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_devauth da;
    it_tokens t1, t2;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Canary phone", &phone);
    expect_canary("the session token", phone.session, "qrl_st_", 61);
    it_device_authorization(s, IT_CLIENT_ID, "Canary TV", "tv", NULL, &da);
    expect_canary("the device code", da.device_code, "qrl_dc_", 61);
    expect_canary("the scan secret", da.scan_secret, "qrl_ss_", 50);
    /* The screen can have its QR code again: the scan secret is derived again from the device
     * code, canary and all (tests/integration/test_screen.c decodes the image). */
    it_resp *r = it_form_post(s, "/v1/screen/qr",
                              (const char *[]){"client_id", IT_CLIENT_ID, "device_code",
                                               da.device_code, "format", "svg", NULL},
                              NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    /* They work: claim, approve, redeem, refresh. */
    r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_tokens(r, &t1);
    it_resp_free(r);
    expect_canary("the access token", t1.access_token, "qrl_at_", 61);
    expect_canary("the refresh token", t1.refresh_token, "qrl_rt_", 61);
    r = it_refresh(s, IT_CLIENT_ID, t1.refresh_token);
    it_expect_tokens(r, &t2);
    it_resp_free(r);
    expect_canary("the rotated refresh token", t2.refresh_token, "qrl_rt_", 61);
    assert_int_equal(it_introspect_active(s, t2.access_token), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_secret_carries_the_canary, it_setup_alice,
                                        it_teardown),
    };
    return cmocka_run_group_tests_name("integration/secret_canary", tests, NULL, NULL);
}
