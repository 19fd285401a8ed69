/* SPDX-License-Identifier: MIT */
/*
 * Notices of new devices in the core (lib/notice.c): a login that links a device tells the
 * account's other devices, each until it acknowledges; the one-tap revoke works in its window
 * and not after it; a store without notices turns all of it off without breaking a login.
 * What a user would notice: the banner on the phone, and that "Remove it" ends the new
 * device's access at once. A login request refused as phishing while a phone was about to
 * approve it tells every device of that phone's account (the phone too, also after it was
 * removed), offers nothing to remove, and is acknowledged per device.
 */
#include "core_fixture.h"

static size_t list(fx *f, const qrl_auth *who, qrl_notice *out)
{
    size_t n = 99;

    assert_int_equal(qrl_notices_list(f->core, who, out, QRL_MAX_NOTICES_LISTED, &n), QRL_OK);
    return n;
}

/* A screen linked by alice's phone, with a platform; its auth (as its access token) in *tv,
 * and the access token in `token` (QRL_SECRET_BUF bytes) unless NULL. */
static void link_tv_token(fx *f, const char *name, qrl_auth *tv, char *token)
{
    qrl_device_auth da;
    qrl_poll_result res;

    assert_int_equal(qrl_device_authorize_platform(f->core, FX_CLIENT, NULL, name, "tv",
                                                   "Samsung Tizen", "10.0.0.7", &da),
                     QRL_OK);
    fx_approve(f, &f->alice, &da);
    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(fx_poll(f, &da, &res), QRL_OK);
    assert_int_equal(qrl_device_auth_any(f->core, res.tokens.access_token, "10.0.0.7", tv), QRL_OK);
    if (token != NULL)
        memcpy(token, res.tokens.access_token, QRL_SECRET_BUF);
    sodium_memzero(&res, sizeof res);
}

static void link_tv(fx *f, const char *name, qrl_auth *tv)
{
    link_tv_token(f, name, tv, NULL);
}

/* Whether `dev` is among the active devices of `who`'s account. */
static bool listed(fx *f, const qrl_auth *who, int64_t dev)
{
    qrl_device_rec d[8];
    size_t n = 0;

    assert_int_equal(qrl_devices_list(f->core, who, d, 8, &n), QRL_OK);
    for (size_t i = 0; i < n; i++)
        if (d[i].id == dev)
            return true;
    return false;
}

/* The approving phone and a phone signed in before hear of the TV; the TV itself, a phone
 * signed in after it and another account do not; the change hook names the account. */
static void test_linked_device_is_listed(void **state)
{
    fx *f = *state;
    qrl_notice got[QRL_MAX_NOTICES_LISTED];
    qrl_auth phone2, later, tv;
    int64_t t0;

    assert_true(qrl_notices_enabled(f->core));
    fx_sign_in(f, "alice", &phone2);
    t0 = qrl_core_now_ms(f->core);
    link_tv(f, "Living Room TV", &tv);
    assert_int_equal(f->last_change, qrl_notice_key(f->alice.account_id));
    assert_true(f->last_change < -QRL_NOTICE_KEY_BASE);

    assert_int_equal(list(f, &f->alice, got), 1);
    assert_true(got[0].rec.id > 0);
    assert_int_equal(got[0].rec.device_id, tv.device_id);
    assert_string_equal(got[0].rec.device.name, "Living Room TV");
    assert_string_equal(got[0].rec.device.kind, "tv");
    assert_string_equal(got[0].rec.platform, "Samsung Tizen");
    assert_true(got[0].rec.created_ms >= t0);
    assert_int_equal(got[0].revoke_until_ms, got[0].rec.created_ms + 3600 * 1000);
    assert_int_equal(list(f, &phone2, got), 1);
    assert_int_equal(list(f, &tv, got), 0);
    assert_int_equal(list(f, &f->bob, got), 0);
    qrl_core_clock_advance(f->core, 1000);
    fx_sign_in(f, "alice", &later);
    assert_int_equal(list(f, &later, got), 0);
}

/* Acknowledging is per device; an unknown id or another account's is not found. */
static void test_ack(void **state)
{
    fx *f = *state;
    qrl_notice got[QRL_MAX_NOTICES_LISTED];
    qrl_auth phone2, tv;

    fx_sign_in(f, "alice", &phone2);
    link_tv(f, "Living Room TV", &tv);
    assert_int_equal(list(f, &f->alice, got), 1);
    assert_int_equal(qrl_notice_ack(f->core, &f->alice, got[0].rec.id), QRL_OK);
    assert_int_equal(qrl_notice_ack(f->core, &f->alice, got[0].rec.id), QRL_OK);
    assert_int_equal(qrl_notice_ack(f->core, &f->bob, got[0].rec.id), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_notice_ack(f->core, &f->alice, 0), QRL_ERR_NOT_FOUND);
    assert_int_equal(list(f, &f->alice, got), 0);
    assert_int_equal(list(f, &phone2, got), 1);
    /* A second link is news again, listed first. */
    qrl_auth tv2;
    link_tv(f, "Bedroom TV", &tv2);
    assert_int_equal(list(f, &phone2, got), 2);
    assert_string_equal(got[0].rec.device.name, "Bedroom TV");
    assert_true(got[0].rec.id > got[1].rec.id);
    assert_int_equal(list(f, &f->alice, got), 1);
}

/* In the window the tap revokes the device (its token stops at once) and the notice is gone
 * for everyone; the new device cannot use its own notice; another account cannot at all. */
static void test_revoke_in_window(void **state)
{
    fx *f = *state;
    qrl_notice got[QRL_MAX_NOTICES_LISTED], n;
    qrl_auth phone2, tv, again;
    char token[QRL_SECRET_BUF];

    fx_sign_in(f, "alice", &phone2);
    link_tv_token(f, "Living Room TV", &tv, token);
    assert_int_equal(list(f, &f->alice, got), 1);
    int64_t id = got[0].rec.id;
    assert_int_equal(qrl_notice_revoke(f->core, &tv, id, &n), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_notice_revoke(f->core, &f->bob, id, &n), QRL_ERR_NOT_FOUND);
    qrl_core_clock_advance(f->core, 50 * 60 * 1000);
    assert_int_equal(qrl_device_auth_any(f->core, token, "10.0.0.7", &again), QRL_OK);
    assert_int_equal(qrl_notice_revoke(f->core, &f->alice, id, &n), QRL_OK);
    assert_int_equal(n.rec.device_id, tv.device_id);
    assert_int_equal(qrl_device_auth_any(f->core, token, "10.0.0.7", &again), QRL_ERR_UNAUTHORIZED);
    assert_false(listed(f, &f->alice, tv.device_id));
    assert_int_equal(list(f, &f->alice, got), 0);
    assert_int_equal(list(f, &phone2, got), 0);
    /* Twice: the device is gone already. */
    assert_int_equal(qrl_notice_revoke(f->core, &phone2, id, &n), QRL_ERR_NOT_FOUND);
    sodium_memzero(token, sizeof token);
}

/* After the window: 403 for the tap, nothing changes; the device list still removes it. */
static void test_revoke_after_window(void **state)
{
    fx *f = *state;
    qrl_notice got[QRL_MAX_NOTICES_LISTED], n;
    qrl_auth tv;

    link_tv(f, "Living Room TV", &tv);
    assert_int_equal(list(f, &f->alice, got), 1);
    qrl_core_clock_advance(f->core, 3600 * 1000);
    assert_int_equal(qrl_notice_revoke(f->core, &f->alice, got[0].rec.id, &n), QRL_ERR_FORBIDDEN);
    assert_int_equal(n.rec.device_id, tv.device_id);
    assert_true(listed(f, &f->alice, tv.device_id));
    assert_int_equal(list(f, &f->alice, got), 1);
    assert_int_equal(qrl_device_revoke(f->core, &f->alice, tv.device_id), QRL_OK);
    assert_int_equal(list(f, &f->alice, got), 0);
}

/* A window of 0 turns the tap off: the notice is there, revoke_until is 0, the tap is 403. */
static void test_window_off(void **state)
{
    fx *f = *state;
    qrl_notice got[QRL_MAX_NOTICES_LISTED], n;
    qrl_config cfg;
    qrl_core *core0;
    qrl_auth tv;

    fx_config(f, &cfg);
    cfg.notice_revoke_window_s = 0;
    assert_int_equal(qrl_core_new(&cfg, f->st, &core0), QRL_OK);
    link_tv(f, "Living Room TV", &tv);
    size_t k = 0;
    assert_int_equal(qrl_notices_list(core0, &f->alice, got, QRL_MAX_NOTICES_LISTED, &k), QRL_OK);
    assert_int_equal(k, 1);
    assert_int_equal(got[0].revoke_until_ms, 0);
    assert_int_equal(qrl_notice_revoke(core0, &f->alice, got[0].rec.id, &n), QRL_ERR_FORBIDDEN);
    qrl_core_free(core0);
    /* Out of range: refused. */
    cfg.notice_revoke_window_s = 7 * 24 * 3600 + 1;
    assert_int_equal(qrl_core_new(&cfg, f->st, &core0), QRL_ERR_INVALID);
    cfg.notice_revoke_window_s = -1;
    assert_int_equal(qrl_core_new(&cfg, f->st, &core0), QRL_ERR_INVALID);
}

/* A store without the notice methods (an older backend, or one that keeps none): logins work
 * as before, nothing is recorded, and the functions say there is nothing. */
static void test_store_without_notices(void **state)
{
    fx *f = *state;
    const qrl_store_methods *real = f->st->m;
    qrl_store_methods without = *real, old = *real;
    qrl_notice got[QRL_MAX_NOTICES_LISTED], n;
    qrl_config cfg;
    qrl_core *core;
    qrl_tokens t;
    size_t k = 7;

    without.notice_add = NULL;
    without.notice_list = NULL;
    without.notice_get = NULL;
    without.notice_ack = NULL;
    old.version = 9;
    fx_config(f, &cfg);
    for (int i = 0; i < 2; i++) {
        f->st->m = i == 0 ? &without : &old;
        assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
        assert_false(qrl_notices_enabled(core));
        qrl_core *keep = f->core;
        f->core = core;
        f->changes = 0;
        fx_login(f, &f->alice, &t);
        f->core = keep;
        assert_int_not_equal(f->last_change, qrl_notice_key(f->alice.account_id));
        assert_int_equal(qrl_notices_list(core, &f->alice, got, QRL_MAX_NOTICES_LISTED, &k),
                         QRL_ERR_NOT_FOUND);
        assert_int_equal(k, 0);
        assert_int_equal(qrl_notice_ack(core, &f->alice, 1), QRL_ERR_NOT_FOUND);
        assert_int_equal(qrl_notice_revoke(core, &f->alice, 1, &n), QRL_ERR_NOT_FOUND);
        qrl_core_free(core);
        sodium_memzero(&t, sizeof t);
    }
    f->st->m = real;
    /* Nothing was recorded meanwhile. */
    assert_int_equal(list(f, &f->alice, got), 0);
}

/* The deny list of these tests: 203.0.113.0/24. */
static int deny_test_net(void *ud, const char *address)
{
    (void)ud;
    return address != NULL && strncmp(address, "203.0.113.", 10) == 0;
}

/* Replaces the fixture's core by one that denies 203.0.113.0/24. */
static void deny_core(fx *f)
{
    qrl_config cfg;

    fx_config(f, &cfg);
    cfg.network_denied = deny_test_net;
    qrl_core_free(f->core);
    assert_int_equal(qrl_core_new(&cfg, f->st, &f->core), QRL_OK);
}

/* A request of "Evil TV" from a denied network that `phone` tries to approve: refused. */
static void blocked_by(fx *f, const qrl_auth *phone)
{
    const qrl_proof pw = {.password = FX_PW};
    qrl_device_auth da;
    qrl_lr_view v;
    qrl_lr_rec lr;

    assert_int_equal(qrl_device_authorize_platform(f->core, FX_CLIENT, NULL, "Evil TV", "tv",
                                                   "Samsung Tizen", "203.0.113.9", &da),
                     QRL_OK);
    assert_int_equal(qrl_lr_view_claim(f->core, phone, da.scan_secret, "10.0.0.9", &v), QRL_OK);
    assert_int_equal(
        qrl_lr_approve(f->core, phone, da.scan_secret, da.user_code, &pw, "10.0.0.9", &lr),
        QRL_ERR_SUSPICIOUS);
}

/* A blocked request is told to every device of the account: the stopped phone, another phone,
 * a screen; with no one-tap revoke; acknowledged per device; still told after the phone is
 * removed; never to another account or to a device linked after it. */
static void test_blocked_request(void **state)
{
    fx *f = *state;
    qrl_notice got[QRL_MAX_NOTICES_LISTED], n;
    qrl_auth phone2, tv, later;

    deny_core(f);
    fx_sign_in(f, "alice", &phone2);
    link_tv(f, "Living Room TV", &tv);
    /* Both phones have seen the TV's link. */
    assert_int_equal(list(f, &f->alice, got), 1);
    assert_int_equal(qrl_notice_ack(f->core, &f->alice, got[0].rec.id), QRL_OK);
    assert_int_equal(qrl_notice_ack(f->core, &phone2, got[0].rec.id), QRL_OK);
    qrl_core_clock_advance(f->core, 1000);
    f->changes = 0;
    blocked_by(f, &f->alice);
    assert_int_equal(f->last_change, qrl_notice_key(f->alice.account_id));

    assert_int_equal(list(f, &f->alice, got), 1);
    assert_int_equal(got[0].rec.kind, QRL_NOTICE_REQUEST_BLOCKED);
    assert_int_equal(got[0].rec.device_id, f->alice.device_id);
    assert_string_equal(got[0].rec.device.name, "Phone");
    assert_string_equal(got[0].rec.reason, "denied_network");
    assert_string_equal(got[0].rec.screen_name, "Evil TV");
    assert_string_equal(got[0].rec.screen_kind, "tv");
    assert_string_equal(got[0].rec.screen_address, "203.0.113.9");
    assert_string_equal(got[0].rec.platform, "Samsung Tizen");
    assert_int_equal(got[0].revoke_until_ms, 0);
    int64_t id = got[0].rec.id;
    assert_int_equal(list(f, &phone2, got), 1);
    assert_int_equal(got[0].rec.id, id);
    assert_int_equal(list(f, &tv, got), 1);
    assert_int_equal(got[0].rec.id, id);
    assert_int_equal(list(f, &f->bob, got), 0);

    /* Nothing to remove: refused, and nothing changes. */
    assert_int_equal(qrl_notice_revoke(f->core, &phone2, id, &n), QRL_ERR_CONFLICT);
    assert_int_equal(n.rec.id, id);
    assert_true(listed(f, &phone2, f->alice.device_id));
    assert_int_equal(list(f, &phone2, got), 1);

    /* Acknowledged by the stopped phone: gone for it only. */
    assert_int_equal(qrl_notice_ack(f->core, &f->alice, id), QRL_OK);
    assert_int_equal(list(f, &f->alice, got), 0);
    assert_int_equal(list(f, &phone2, got), 1);

    /* The phone is removed (it was not the owner's, say): the others still hear of it. */
    assert_int_equal(qrl_device_revoke(f->core, &phone2, f->alice.device_id), QRL_OK);
    assert_int_equal(list(f, &phone2, got), 1);
    assert_int_equal(got[0].rec.id, id);
    assert_true(got[0].rec.device.revoked_ms > 0);

    /* A phone signed in afterwards hears nothing of it. */
    qrl_core_clock_advance(f->core, 1000);
    fx_sign_in(f, "alice", &later);
    assert_int_equal(list(f, &later, got), 0);
}

/* A store of version 10 keeps notices of new devices only: a blocked request is refused as ever
 * and records nothing. */
static void test_blocked_store_v10(void **state)
{
    fx *f = *state;
    const qrl_store_methods *real = f->st->m;
    qrl_store_methods v10 = *real;
    qrl_notice got[QRL_MAX_NOTICES_LISTED];

    v10.version = 10;
    f->st->m = &v10;
    deny_core(f);
    assert_true(qrl_notices_enabled(f->core));
    blocked_by(f, &f->alice);
    assert_int_equal(list(f, &f->alice, got), 0);
    f->st->m = real;
}

/* The keys of the three kinds of holds never meet. */
static void test_keys(void **state)
{
    (void)state;
    assert_true(qrl_notice_key(1) < -((int64_t)1 << 62));
    assert_true(qrl_notice_key(((int64_t)1 << 62) - 1) > INT64_MIN + 0);
    assert_true(qrl_notice_key(1) != qrl_notice_key(2));
    assert_true(-(int64_t)((int64_t)1 << 53) > qrl_notice_key(1));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_linked_device_is_listed), T(test_ack),        T(test_revoke_in_window),
        T(test_revoke_after_window),     T(test_window_off), T(test_store_without_notices),
        T(test_blocked_request),         T(test_blocked_store_v10),
        cmocka_unit_test(test_keys),
    };
#undef T
    return cmocka_run_group_tests_name("notifications", tests, NULL, NULL);
}
