/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of lib/device.c: listing an account's devices, revoking one (its tokens stop at
 * once, and the login requests it had claimed are declined so their screens are answered), and
 * another account's device, which is refused as "not found".
 */
#include "core_fixture.h"

static void test_list(void **state)
{
    fx *f = *state;
    qrl_device_rec devs[8];
    qrl_tokens t;
    size_t n = 99;
    bool phone = false, tv = false;

    fx_login(f, &f->alice, &t);
    assert_int_equal(qrl_devices_list(f->core, &f->alice, devs, 8, &n), QRL_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(devs[i].account_id, f->alice.account_id);
        phone |= devs[i].id == f->alice.device_id && strcmp(devs[i].kind, "phone") == 0;
        tv |= devs[i].id == t.device_id && strcmp(devs[i].name, "Living Room TV") == 0;
    }
    assert_true(phone && tv);
    /* bob sees only his own phone. */
    assert_int_equal(qrl_devices_list(f->core, &f->bob, devs, 8, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(devs[0].id, f->bob.device_id);
}

static void test_revoke(void **state)
{
    fx *f = *state;
    qrl_device_rec devs[8];
    qrl_introspection in;
    qrl_tokens t, t2;
    size_t n;

    fx_login(f, &f->alice, &t);
    assert_int_equal(qrl_device_revoke(f->core, &f->alice, t.device_id), QRL_OK);
    assert_int_equal(qrl_introspect(f->core, t.access_token, &in), QRL_OK);
    assert_false(in.active);
    assert_int_not_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2), QRL_OK);
    assert_int_equal(qrl_devices_list(f->core, &f->alice, devs, 8, &n), QRL_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(devs[i].id, t.device_id);
    /* Gone from the user's point of view: a second revocation is "not found". */
    assert_int_equal(qrl_device_revoke(f->core, &f->alice, t.device_id), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_device_revoke(f->core, &f->alice, 0), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_device_revoke(f->core, &f->alice, 987654321), QRL_ERR_NOT_FOUND);
}

static void test_revoke_declines_claimed(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_lr_view v;
    qrl_auth phone;

    fx_sign_in(f, "alice", &phone);
    fx_start(f, &da);
    assert_int_equal(qrl_lr_view_claim(f->core, &phone, da.scan_secret, "", &v), QRL_OK);
    f->changes = 0;
    assert_int_equal(qrl_device_revoke(f->core, &f->alice, phone.device_id), QRL_OK);
    /* The screen is told at once (a change of its request), and its next poll is denied. */
    assert_true(f->changes >= 1);
    assert_int_equal(f->last_change, da.lr_id);
    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(fx_poll(f, &da, &res), QRL_ERR_DENIED);
}

static void test_other_accounts_device(void **state)
{
    fx *f = *state;
    qrl_introspection in;
    qrl_tokens t;

    fx_login(f, &f->alice, &t);
    assert_int_equal(qrl_device_revoke(f->core, &f->bob, t.device_id), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_device_revoke(f->core, &f->bob, f->alice.device_id), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_introspect(f->core, t.access_token, &in), QRL_OK);
    assert_true(in.active);
}

static void test_set_key(void **state)
{
    fx *f = *state;
    unsigned char pk[QRL_PUBKEY_BYTES], sk[crypto_sign_SECRETKEYBYTES];
    char b64[64];

    crypto_sign_keypair(pk, sk);
    sodium_bin2base64(b64, sizeof b64, pk, sizeof pk, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_int_equal(qrl_device_set_key(f->core, &f->alice, "not base64!", FX_PW, ""),
                     QRL_ERR_INVALID);
    assert_int_equal(qrl_device_set_key(f->core, &f->alice, "AAAA", FX_PW, ""), QRL_ERR_INVALID);
    /* A byte outside the alphabet where a '_' or another character was is refused, not read as
     * '_' (one key, one spelling). */
    char odd[64];
    strcpy(odd, b64);
    odd[5] = (char)0xC3;
    assert_int_equal(qrl_device_set_key(f->core, &f->alice, odd, FX_PW, ""), QRL_ERR_INVALID);
    assert_int_equal(qrl_device_set_key(f->core, &f->alice, b64, "wrong", ""),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_device_set_key(f->core, &f->alice, b64, FX_PW, ""), QRL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoke, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_declines_claimed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_other_accounts_device, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_set_key, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
