/* SPDX-License-Identifier: MIT */
/*
 * The patterns of phishing kits in the core (lib/phishing.c): a code opened from too many
 * networks, a request started from a denied network, one screen address approved by too many
 * accounts. Below each threshold everything works; at it the call is refused with
 * QRL_ERR_SUSPICIOUS and its reason, and the request is denied, so the attacker's screen stops;
 * other requests go on; the counts live in the store and survive a new core. The account whose
 * phone was stopped is told on all its devices (a request_blocked notice, once per request and
 * account, waking its waiters); no other account is.
 */
#include "core_fixture.h"

/* A new login request started at `address`. */
static void start_at(fx *f, const char *address, qrl_device_auth *da)
{
    assert_int_equal(
        qrl_device_authorize(f->core, FX_CLIENT, "profile", "Living Room TV", "tv", address, da),
        QRL_OK);
}

static qrl_err view_from(fx *f, const qrl_auth *phone, const qrl_device_auth *da,
                         const char *address, qrl_lr_view *v)
{
    qrl_lr_view tmp;

    return qrl_lr_view_claim(f->core, phone, da->scan_secret, address, v != NULL ? v : &tmp);
}

/* Views (claims) and approves da with `phone` from `address`; the approval's result. */
static qrl_err approve_from(fx *f, const qrl_auth *phone, const qrl_device_auth *da,
                            const char *address)
{
    const qrl_proof pw = {.password = FX_PW};
    qrl_lr_rec lr;
    qrl_err rc = view_from(f, phone, da, address, NULL);

    if (rc != QRL_OK)
        return rc;
    return qrl_lr_approve(f->core, phone, da->scan_secret, da->user_code, &pw, address, &lr);
}

static qrl_lr_state state_of(fx *f, const qrl_device_auth *da)
{
    qrl_lr_rec lr;

    assert_int_equal(f->st->m->lr_get(f->st, da->lr_id, &lr), QRL_OK);
    return lr.state;
}

/* Replaces the fixture's core by a new one on the same store, with `cfg`. */
static void new_core(fx *f, const qrl_config *cfg)
{
    qrl_core_free(f->core);
    assert_int_equal(qrl_core_new(cfg, f->st, &f->core), QRL_OK);
}

static void restart(fx *f)
{
    qrl_config cfg;

    fx_config(f, &cfg);
    new_core(f, &cfg);
}

/* Signs in a phone of a new account `user`. */
static void account_phone(fx *f, const char *user, qrl_auth *out)
{
    assert_int_equal(qrl_account_add(f->core, user, NULL, FX_PW, NULL), QRL_OK);
    fx_sign_in(f, user, out);
}

/* The notices of blocked requests `who` lists, into out (room for QRL_MAX_NOTICES_LISTED). */
static size_t blocked_notices(fx *f, const qrl_auth *who, qrl_notice *out)
{
    qrl_notice all[QRL_MAX_NOTICES_LISTED];
    size_t n = 0, k = 0;

    assert_int_equal(qrl_notices_list(f->core, who, all, QRL_MAX_NOTICES_LISTED, &n), QRL_OK);
    for (size_t i = 0; i < n; i++)
        if (all[i].rec.kind == QRL_NOTICE_REQUEST_BLOCKED)
            out[k++] = all[i];
    return k;
}

/* `who` lists exactly one notice of a blocked request: of a request of "Living Room TV" made at
 * `address`, refused for `reason` while `phone` was about to approve it. */
static void expect_told(fx *f, const qrl_auth *who, const qrl_auth *phone, const char *address,
                        const char *reason)
{
    qrl_notice got[QRL_MAX_NOTICES_LISTED];

    assert_int_equal(blocked_notices(f, who, got), 1);
    assert_int_equal(got[0].rec.account_id, phone->account_id);
    assert_int_equal(got[0].rec.device_id, phone->device_id);
    assert_int_equal(got[0].rec.device.id, phone->device_id);
    assert_string_equal(got[0].rec.reason, reason);
    assert_string_equal(got[0].rec.screen_name, "Living Room TV");
    assert_string_equal(got[0].rec.screen_kind, "tv");
    assert_string_equal(got[0].rec.screen_address, address);
    assert_int_equal(got[0].revoke_until_ms, 0);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(qrl_block_reason_name(QRL_BLOCK_MANY_NETWORKS), "many_networks");
    assert_string_equal(qrl_block_reason_name(QRL_BLOCK_DENIED_NETWORK), "denied_network");
    assert_string_equal(qrl_block_reason_name(QRL_BLOCK_MANY_ACCOUNTS), "many_accounts");
    assert_string_equal(qrl_block_reason_name(QRL_BLOCK_NONE), "");
    assert_string_equal(qrl_strerror(QRL_ERR_SUSPICIOUS), "blocked as suspicious");
}

static void test_defaults_and_validation(void **state)
{
    fx *f = *state;
    qrl_config cfg;
    qrl_core *c = NULL;

    qrl_config_defaults(&cfg);
    assert_int_equal(cfg.max_lookup_networks, 3);
    assert_int_equal(cfg.max_approvers_per_address, 5);
    assert_int_equal(cfg.approvers_window_s, 86400);
    cfg.max_lookup_networks = -1;
    assert_int_equal(qrl_core_new(&cfg, f->st, &c), QRL_ERR_INVALID);
    qrl_config_defaults(&cfg);
    cfg.approvers_window_s = 0;
    assert_int_equal(qrl_core_new(&cfg, f->st, &c), QRL_ERR_INVALID);
    cfg.max_approvers_per_address = 0; /* off: the window does not matter */
    assert_int_equal(qrl_core_new(&cfg, f->st, &c), QRL_OK);
    qrl_core_free(c);
}

/* Three networks may open a code; the fourth is refused and ends the request. Addresses of one
 * IPv4 /24 or one IPv6 /64 are one network. */
static void test_many_networks(void **state)
{
    fx *f = *state;
    qrl_device_auth da, other;
    qrl_poll_result res;
    qrl_notice got[QRL_MAX_NOTICES_LISTED];
    qrl_auth bob2;
    qrl_lr_view v;

    fx_sign_in(f, "bob", &bob2);
    start_at(f, "10.0.0.7", &da);
    assert_int_equal(view_from(f, &f->alice, &da, "10.1.0.5", &v), QRL_OK);
    assert_int_equal(v.blocked, QRL_BLOCK_NONE);
    /* Another phone is told the request is taken, and its network counts all the same. */
    assert_int_equal(view_from(f, &f->bob, &da, "2001:db8:1:2::1", NULL), QRL_ERR_CLAIMED);
    assert_int_equal(view_from(f, &f->bob, &da, "2001:db8:1:2::99", NULL), QRL_ERR_CLAIMED);
    assert_int_equal(view_from(f, &f->alice, &da, "10.1.0.77", NULL), QRL_OK);
    assert_int_equal(view_from(f, &f->bob, &da, "10.3.0.5", NULL), QRL_ERR_CLAIMED);
    assert_int_equal(state_of(f, &da), QRL_LR_SCANNED);
    /* A fourth network. */
    f->changes = 0;
    assert_int_equal(view_from(f, &f->bob, &da, "10.4.0.5", &v), QRL_ERR_SUSPICIOUS);
    assert_int_equal(qrl_last_block_reason(), QRL_BLOCK_MANY_NETWORKS);
    assert_int_equal(v.lr.id, da.lr_id);
    assert_int_equal(state_of(f, &da), QRL_LR_DENIED);
    assert_true(f->changes > 0); /* the held screen wakes */
    /* Bob's phone was stopped: bob is told on both his phones, and wakes; alice, whose phone
     * merely looked, is not. */
    assert_int_equal(f->last_change, qrl_notice_key(f->bob.account_id));
    expect_told(f, &f->bob, &f->bob, "10.0.0.7", "many_networks");
    expect_told(f, &bob2, &f->bob, "10.0.0.7", "many_networks");
    assert_int_equal(blocked_notices(f, &f->alice, got), 0);
    /* Blocked again (a race, another node): still one notice for bob; alice's own refusal of
     * it is hers. */
    qrl_lr_rec lr;
    assert_int_equal(f->st->m->lr_get(f->st, da.lr_id, &lr), QRL_OK);
    assert_int_equal(qrl__phish_block(f->core, &f->bob, &lr, QRL_BLOCK_MANY_NETWORKS,
                                      qrl_core_now_ms(f->core)),
                     QRL_ERR_SUSPICIOUS);
    assert_int_equal(blocked_notices(f, &bob2, got), 1);
    assert_int_equal(qrl__phish_block(f->core, &f->alice, &lr, QRL_BLOCK_MANY_NETWORKS,
                                      qrl_core_now_ms(f->core)),
                     QRL_ERR_SUSPICIOUS);
    expect_told(f, &f->alice, &f->alice, "10.0.0.7", "many_networks");
    assert_int_equal(blocked_notices(f, &bob2, got), 1);
    /* The screen stops, and the phone that claimed it cannot approve it any more. */
    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(fx_poll(f, &da, &res), QRL_ERR_DENIED);
    const qrl_proof pw = {.password = FX_PW};
    assert_int_equal(
        qrl_lr_approve(f->core, &f->alice, da.scan_secret, da.user_code, &pw, "10.1.0.5", &lr),
        QRL_ERR_CONFLICT);
    /* Other requests, from the same networks, are not touched. */
    start_at(f, "10.0.0.7", &other);
    assert_int_equal(approve_from(f, &f->bob, &other, "10.4.0.5"), QRL_OK);
    assert_int_equal(blocked_notices(f, &bob2, got), 1);
}

/* An approval from a network that did not look before is a lookup too. */
static void test_approval_counts_as_lookup(void **state)
{
    fx *f = *state;
    const qrl_proof pw = {.password = FX_PW};
    qrl_device_auth da;
    qrl_lr_rec lr;

    start_at(f, "10.0.0.7", &da);
    assert_int_equal(view_from(f, &f->alice, &da, "10.1.0.5", NULL), QRL_OK);
    assert_int_equal(view_from(f, &f->bob, &da, "10.2.0.5", NULL), QRL_ERR_CLAIMED);
    assert_int_equal(view_from(f, &f->bob, &da, "10.3.0.5", NULL), QRL_ERR_CLAIMED);
    assert_int_equal(
        qrl_lr_approve(f->core, &f->alice, da.scan_secret, da.user_code, &pw, "10.9.0.5", &lr),
        QRL_ERR_SUSPICIOUS);
    assert_int_equal(qrl_last_block_reason(), QRL_BLOCK_MANY_NETWORKS);
    assert_int_equal(state_of(f, &da), QRL_LR_DENIED);
    expect_told(f, &f->alice, &f->alice, "10.0.0.7", "many_networks");
}

/* The networks seen are the store's: a new core (a restart, another node) goes on counting. */
static void test_networks_survive_restart(void **state)
{
    fx *f = *state;
    qrl_device_auth da;

    start_at(f, "10.0.0.7", &da);
    assert_int_equal(view_from(f, &f->alice, &da, "10.1.0.5", NULL), QRL_OK);
    assert_int_equal(view_from(f, &f->bob, &da, "10.2.0.5", NULL), QRL_ERR_CLAIMED);
    restart(f);
    assert_int_equal(view_from(f, &f->bob, &da, "10.3.0.5", NULL), QRL_ERR_CLAIMED);
    assert_int_equal(view_from(f, &f->alice, &da, "10.1.0.6", NULL), QRL_OK);
    assert_int_equal(view_from(f, &f->bob, &da, "10.4.0.5", NULL), QRL_ERR_SUSPICIOUS);
    assert_int_equal(state_of(f, &da), QRL_LR_DENIED);
}

/* max_lookup_networks 0: as many networks as anyone likes. */
static void test_networks_off(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_config cfg;
    char addr[32];

    fx_config(f, &cfg);
    cfg.max_lookup_networks = 0;
    new_core(f, &cfg);
    start_at(f, "10.0.0.7", &da);
    assert_int_equal(view_from(f, &f->alice, &da, "10.1.0.5", NULL), QRL_OK);
    for (int i = 2; i < 10; i++) {
        snprintf(addr, sizeof addr, "10.%d.0.5", i);
        assert_int_equal(view_from(f, &f->bob, &da, addr, NULL), QRL_ERR_CLAIMED);
    }
    assert_int_equal(approve_from(f, &f->alice, &da, "10.1.0.5"), QRL_OK);
}

/* The deny list of the tests: 203.0.113.0/24. */
static int deny_test_net(void *ud, const char *address)
{
    (void)ud;
    return address != NULL && strncmp(address, "203.0.113.", 10) == 0;
}

/* A request started from a denied network says so when viewed and cannot be approved; one
 * started elsewhere is approved as ever. */
static void test_denied_network(void **state)
{
    fx *f = *state;
    qrl_device_auth bad, good;
    qrl_notice got[QRL_MAX_NOTICES_LISTED];
    qrl_poll_result res;
    qrl_config cfg;
    qrl_lr_view v;

    fx_config(f, &cfg);
    cfg.network_denied = deny_test_net;
    new_core(f, &cfg);
    start_at(f, "203.0.113.9", &bad);
    assert_int_equal(view_from(f, &f->alice, &bad, "10.1.0.5", &v), QRL_OK);
    assert_int_equal(v.blocked, QRL_BLOCK_DENIED_NETWORK);
    /* Viewing it says so, and tells nobody: nothing was stopped yet. */
    assert_int_equal(blocked_notices(f, &f->alice, got), 0);
    assert_int_equal(approve_from(f, &f->alice, &bad, "10.1.0.5"), QRL_ERR_SUSPICIOUS);
    assert_int_equal(qrl_last_block_reason(), QRL_BLOCK_DENIED_NETWORK);
    assert_int_equal(state_of(f, &bad), QRL_LR_DENIED);
    assert_int_equal(f->last_change, qrl_notice_key(f->alice.account_id));
    expect_told(f, &f->alice, &f->alice, "203.0.113.9", "denied_network");
    assert_int_equal(blocked_notices(f, &f->bob, got), 0);
    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(fx_poll(f, &bad, &res), QRL_ERR_DENIED);

    start_at(f, "10.0.0.7", &good);
    assert_int_equal(view_from(f, &f->alice, &good, "10.1.0.5", &v), QRL_OK);
    assert_int_equal(v.blocked, QRL_BLOCK_NONE);
    assert_int_equal(approve_from(f, &f->alice, &good, "10.1.0.5"), QRL_OK);
}

/* Five accounts may approve requests of one screen address; the sixth is refused, its request
 * denied, and stays refused; the five go on; another address is not touched; the count
 * survives a new core. */
static void test_many_accounts(void **state)
{
    fx *f = *state;
    qrl_notice got[QRL_MAX_NOTICES_LISTED];
    qrl_auth u[5];
    qrl_device_auth da;
    char name[16];

    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "user%d", i);
        account_phone(f, name, &u[i]);
    }
    /* alice, bob, user0, user1, user2: five accounts. */
    const qrl_auth *ok[] = {&f->alice, &f->bob, &u[0], &u[1], &u[2]};
    for (int i = 0; i < 5; i++) {
        start_at(f, "198.51.100.7", &da);
        assert_int_equal(approve_from(f, ok[i], &da, "10.1.0.5"), QRL_OK);
    }
    start_at(f, "198.51.100.7", &da);
    assert_int_equal(approve_from(f, &u[3], &da, "10.1.0.5"), QRL_ERR_SUSPICIOUS);
    assert_int_equal(qrl_last_block_reason(), QRL_BLOCK_MANY_ACCOUNTS);
    assert_int_equal(state_of(f, &da), QRL_LR_DENIED);
    /* user3 is told; the five that approved are not. */
    expect_told(f, &u[3], &u[3], "198.51.100.7", "many_accounts");
    for (int i = 0; i < 5; i++)
        assert_int_equal(blocked_notices(f, ok[i], got), 0);
    /* Refused again, not waved through as an account counted already: another request,
     * another notice. */
    start_at(f, "198.51.100.7", &da);
    assert_int_equal(approve_from(f, &u[3], &da, "10.1.0.5"), QRL_ERR_SUSPICIOUS);
    assert_int_equal(blocked_notices(f, &u[3], got), 2);
    assert_true(got[0].rec.id > got[1].rec.id);
    /* An account among the first five approves as before. */
    start_at(f, "198.51.100.7", &da);
    assert_int_equal(approve_from(f, &f->alice, &da, "10.1.0.5"), QRL_OK);
    /* Another screen address is another count. */
    start_at(f, "198.51.100.8", &da);
    assert_int_equal(approve_from(f, &u[3], &da, "10.1.0.5"), QRL_OK);
    /* A new core on the same store remembers. */
    restart(f);
    start_at(f, "198.51.100.7", &da);
    assert_int_equal(approve_from(f, &u[4], &da, "10.1.0.5"), QRL_ERR_SUSPICIOUS);
    assert_int_equal(state_of(f, &da), QRL_LR_DENIED);
    /* After the window, the address starts afresh. */
    qrl_core_clock_advance(f->core, 86400 * 1000LL + 1000);
    start_at(f, "198.51.100.7", &da);
    assert_int_equal(approve_from(f, &u[4], &da, "10.1.0.5"), QRL_OK);
}

/* A failed step-up is no approval: it counts no account. */
static void test_failed_proof_counts_nothing(void **state)
{
    fx *f = *state;
    const qrl_proof bad = {.password = "wrong"};
    qrl_config cfg;
    qrl_device_auth da;
    qrl_lr_rec lr;

    fx_config(f, &cfg);
    cfg.max_approvers_per_address = 1;
    new_core(f, &cfg);
    start_at(f, "198.51.100.7", &da);
    assert_int_equal(view_from(f, &f->bob, &da, "10.1.0.5", NULL), QRL_OK);
    assert_int_equal(
        qrl_lr_approve(f->core, &f->bob, da.scan_secret, da.user_code, &bad, "10.1.0.5", &lr),
        QRL_ERR_UNAUTHORIZED);
    start_at(f, "198.51.100.7", &da);
    assert_int_equal(approve_from(f, &f->alice, &da, "10.1.0.5"), QRL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_defaults_and_validation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_networks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_approval_counts_as_lookup, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_networks_survive_restart, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_networks_off, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_denied_network, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_accounts, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_failed_proof_counts_nothing, fx_setup, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
