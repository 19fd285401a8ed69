/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of lib/account.c: adding accounts, the username and password rules, sign-in,
 * bearer authentication, the failure limits per username and per address, and disabled
 * accounts.
 */
#include "core_fixture.h"

static void test_add(void **state)
{
    fx *f = *state;
    int64_t id = 0;
    qrl_auth a;

    assert_int_equal(qrl_account_add(f->core, "carol.k@x-y_z", "Carol", FX_PW, &id), QRL_OK);
    assert_true(id > 0);
    fx_sign_in(f, "carol.k@x-y_z", &a);
    assert_int_equal(a.account_id, id);
    assert_string_equal(a.account.display_name, "Carol");
    /* No display name: the username stands in. */
    assert_string_equal(f->bob.account.display_name, "bob");
    assert_int_equal(qrl_account_add(f->core, "alice", NULL, FX_PW, NULL), QRL_ERR_EXISTS);
}

static void test_bad_names_and_passwords(void **state)
{
    fx *f = *state;
    char longname[QRL_MAX_USERNAME + 2], longpw[QRL_MAX_PASSWORD + 2];

    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    memset(longpw, 'p', sizeof longpw - 1);
    longpw[sizeof longpw - 1] = '\0';
    assert_int_equal(qrl_account_add(f->core, "", NULL, FX_PW, NULL), QRL_ERR_INVALID);
    assert_int_equal(qrl_account_add(f->core, NULL, NULL, FX_PW, NULL), QRL_ERR_INVALID);
    assert_int_equal(qrl_account_add(f->core, "has space", NULL, FX_PW, NULL), QRL_ERR_INVALID);
    assert_int_equal(qrl_account_add(f->core, "naïve", NULL, FX_PW, NULL), QRL_ERR_INVALID);
    assert_int_equal(qrl_account_add(f->core, longname, NULL, FX_PW, NULL), QRL_ERR_INVALID);
    assert_int_equal(qrl_account_add(f->core, "dave", NULL, "", NULL), QRL_ERR_INVALID);
    assert_int_equal(qrl_account_add(f->core, "dave", NULL, NULL, NULL), QRL_ERR_INVALID);
    assert_int_equal(qrl_account_add(f->core, "dave", NULL, longpw, NULL), QRL_ERR_INVALID);
    longname[QRL_MAX_USERNAME] = '\0';
    assert_int_equal(qrl_account_add(f->core, longname, NULL, FX_PW, NULL), QRL_OK);
}

static void test_sign_in(void **state)
{
    fx *f = *state;
    qrl_session s;
    qrl_auth a;

    assert_int_equal(qrl_session_create(f->core, "alice", FX_PW, "Pixel", "phone", "1.2.3.4", &s),
                     QRL_OK);
    assert_int_equal(strncmp(s.session_token, "qrl_st_", 7), 0);
    assert_int_equal(s.account.id, f->alice.account_id);
    assert_int_equal(s.expires_in_s, 30 * 24 * 3600);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "1.2.3.4", &a), QRL_OK);
    assert_int_equal(a.device_id, s.device_id);
    assert_string_equal(a.device.name, "Pixel");
    assert_string_equal(a.device.kind, "phone");
    assert_int_equal(qrl_session_create(f->core, "alice", "wrong", NULL, NULL, "1.2.3.4", &s),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(s.session_token[0], '\0');
    /* An unknown user is the same answer as a wrong password. */
    assert_int_equal(qrl_session_create(f->core, "nobody", FX_PW, NULL, NULL, "1.2.3.4", &s),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_session_create(f->core, "alice", FX_PW, NULL, "toaster", "1.2.3.4", &s),
                     QRL_ERR_INVALID);
    assert_int_equal(qrl_session_auth(f->core, "qrl_st_unknown", "", &a), QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_session_auth(f->core, "junk", "", &a), QRL_ERR_UNAUTHORIZED);
}

static void test_session_expiry(void **state)
{
    fx *f = *state;
    qrl_session s;
    qrl_auth a;

    assert_int_equal(qrl_session_create(f->core, "alice", FX_PW, NULL, NULL, "", &s), QRL_OK);
    qrl_core_clock_advance(f->core, 30LL * 24 * 3600 * 1000 + 1000);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "", &a), QRL_ERR_UNAUTHORIZED);
}

static void test_rate_limit_per_user(void **state)
{
    fx *f = *state;
    qrl_session s;

    /* The fixture allows 3 failures per username in the window. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(qrl_session_create(f->core, "alice", "wrong", NULL, NULL, "10.1.0.1", &s),
                         QRL_ERR_UNAUTHORIZED);
    /* Even the right password waits for the window, from any address. */
    assert_int_equal(qrl_session_create(f->core, "alice", FX_PW, NULL, NULL, "10.1.0.2", &s),
                     QRL_ERR_RATE_LIMITED);
    assert_int_equal(qrl_session_create(f->core, "bob", FX_PW, NULL, NULL, "10.1.0.2", &s), QRL_OK);
    qrl_core_clock_advance(f->core, 900 * 1000 + 1000);
    assert_int_equal(qrl_session_create(f->core, "alice", FX_PW, NULL, NULL, "10.1.0.2", &s),
                     QRL_OK);
}

static void test_rate_limit_per_address(void **state)
{
    fx *f = *state;
    const char *users[] = {"u1", "u2", "u3", "u4", "u5"};
    qrl_session s;

    /* The fixture allows 5 failures per address: unknown users count too. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(qrl_session_create(f->core, users[i], "x", NULL, NULL, "10.2.0.1", &s),
                         QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_session_create(f->core, "bob", FX_PW, NULL, NULL, "10.2.0.1", &s),
                     QRL_ERR_RATE_LIMITED);
    assert_int_equal(qrl_session_create(f->core, "bob", FX_PW, NULL, NULL, "10.2.0.2", &s), QRL_OK);
}

/* A phone session unused for longer than the idle lifetime stops working, though its token
 * has not expired; one in use stays. */
static void test_idle_session(void **state)
{
    fx *f = *state;
    qrl_session s;
    qrl_auth a;
    qrl_config cfg;
    qrl_core *core;

    fx_config(f, &cfg);
    cfg.device_idle_ttl_s = 7 * 24 * 3600;
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
    assert_int_equal(qrl_session_create(core, "bob", FX_PW, NULL, NULL, "", &s), QRL_OK);
    qrl_core_clock_advance(core, 6LL * 24 * 3600 * 1000);
    assert_int_equal(qrl_session_auth(core, s.session_token, "", &a), QRL_OK); /* a use */
    qrl_core_clock_advance(core, 6LL * 24 * 3600 * 1000);
    assert_int_equal(qrl_session_auth(core, s.session_token, "", &a), QRL_OK);
    qrl_core_clock_advance(core, 8LL * 24 * 3600 * 1000);
    assert_int_equal(qrl_session_auth(core, s.session_token, "", &a), QRL_ERR_UNAUTHORIZED);
    sodium_memzero(&s, sizeof s);
    qrl_core_free(core);
}

static void test_set_password(void **state)
{
    fx *f = *state;
    qrl_session s;

    assert_int_equal(qrl_account_set_password(f->core, "alice", "new secret"), QRL_OK);
    assert_int_equal(qrl_session_create(f->core, "alice", FX_PW, NULL, NULL, "", &s),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_session_create(f->core, "alice", "new secret", NULL, NULL, "", &s),
                     QRL_OK);
    assert_int_equal(qrl_account_set_password(f->core, "nobody", "x"), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_account_set_password(f->core, "alice", ""), QRL_ERR_INVALID);
}

static void test_disabled(void **state)
{
    fx *f = *state;
    qrl_account_rec alice, eve = {0};
    qrl_session s;

    /* The core has no call to disable an account (an operator does it in the store), so the
     * test makes one with the store's own method, with alice's password hash. */
    assert_int_equal(f->st->m->account_by_name(f->st, "alice", &alice), QRL_OK);
    strcpy(eve.username, "eve");
    strcpy(eve.display_name, "Eve");
    memcpy(eve.pw_hash, alice.pw_hash, sizeof eve.pw_hash);
    eve.disabled = 1;
    assert_int_equal(f->st->m->account_create(f->st, &eve), QRL_OK);
    assert_int_equal(qrl_session_create(f->core, "eve", FX_PW, NULL, NULL, "", &s),
                     QRL_ERR_UNAUTHORIZED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_names_and_passwords, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sign_in, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_session_expiry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_per_user, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_per_address, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_idle_session, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_set_password, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_disabled, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
