/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the login request state machine and the token rules, through the core API on a
 * real SQLite store in a temporary directory, with the core's test clock instead of sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "internal.h"
#include "qrlogin/core.h"

#define PW "correct horse"

static const qrl_proof PWP = {.password = PW};
static const qrl_proof WRONGP = {.password = "wrong"};

typedef struct fx {
    char dir[64], db[96];
    qrl_store *st;
    qrl_core *core;
    int changes;
    int64_t last_change;
    qrl_auth phone, phone2;
} fx;

static void on_change(void *ud, int64_t id)
{
    fx *f = ud;
    f->changes++;
    f->last_change = id;
}

static void sign_in(fx *f, const char *user, qrl_auth *auth)
{
    qrl_session s;

    assert_int_equal(qrl_session_create(f->core, user, PW, "Phone", NULL, "10.0.0.5", &s), QRL_OK);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "10.0.0.5", auth), QRL_OK);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    qrl_config cfg;
    char err[128];

    snprintf(f->dir, sizeof f->dir, "/tmp/qrl-unit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/t.db", f->dir);
    assert_int_equal(qrl_store_sqlite_open(f->db, &f->st, err, sizeof err), QRL_OK);
    qrl_config_defaults(&cfg);
    cfg.pwhash_ops = crypto_pwhash_OPSLIMIT_MIN; /* fast hashes: these tests are not about cost */
    cfg.pwhash_mem = crypto_pwhash_MEMLIMIT_MIN;
    cfg.user_code_addr.count = 3;
    cfg.user_code_account.count = 3;
    cfg.on_change = on_change;
    cfg.on_change_ud = f;
    assert_int_equal(qrl_core_new(&cfg, f->st, &f->core), QRL_OK);
    assert_int_equal(qrl_account_add(f->core, "alice", "Alice", PW, NULL), QRL_OK);
    assert_int_equal(qrl_account_add(f->core, "bob", NULL, PW, NULL), QRL_OK);
    sign_in(f, "alice", &f->phone);
    sign_in(f, "alice", &f->phone2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    char cmd[128];

    qrl_core_free(f->core);
    f->st->m->close(f->st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static qrl_err poll(fx *f, const qrl_device_auth *da, unsigned flags, qrl_poll_result *res)
{
    return qrl_token_device_code(f->core, "tv-app", da->device_code, flags, 30, "10.0.0.7", res);
}

static void start(fx *f, qrl_device_auth *da)
{
    assert_int_equal(
        qrl_device_authorize(f->core, "tv-app", "profile", "Living Room TV", "tv", "10.0.0.7", da),
        QRL_OK);
}

static void scan_secret_of(const qrl_device_auth *da, char *out)
{
    strcpy(out, da->scan_secret);
}

static void test_full_flow(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_lr_view v;
    qrl_lr_rec lr;
    qrl_introspection in;
    char ss[QRL_SECRET_BUF];

    start(f, &da);
    assert_int_equal(strncmp(da.device_code, "qrl_dc_", 7), 0);
    assert_int_equal(strncmp(da.scan_secret, "qrl_ss_", 7), 0);
    assert_int_equal(da.expires_in_s, 120);
    assert_int_equal(da.interval_s, 5);
    scan_secret_of(&da, ss);

    assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_PENDING);
    assert_int_equal(res.state, QRL_LR_PENDING);

    f->changes = 0;
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, ss, "10.0.0.9", &v), QRL_OK);
    assert_int_equal(v.lr.state, QRL_LR_SCANNED);
    assert_string_equal(v.lr.device_name, "Living Room TV");
    assert_string_equal(v.user_code, da.user_code);
    assert_true(v.same_network);
    assert_int_equal(f->changes, 1);
    assert_int_equal(f->last_change, da.lr_id);
    /* Viewing again from the same phone is fine and changes nothing. */
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, ss, "10.0.0.9", &v), QRL_OK);
    assert_int_equal(f->changes, 1);

    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_PENDING);
    assert_int_equal(res.state, QRL_LR_SCANNED);

    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, "wdjb", &PWP, "10.0.0.9", &lr),
                     QRL_ERR_CODE_MISMATCH);
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, da.user_code, &WRONGP, "10.0.0.9", &lr),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(f->changes, 1);
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, da.user_code, &PWP, "10.0.0.9", &lr),
                     QRL_OK);
    assert_int_equal(lr.state, QRL_LR_APPROVED);
    assert_int_equal(f->changes, 2);

    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(poll(f, &da, 0, &res), QRL_OK);
    assert_int_equal(strncmp(res.tokens.access_token, "qrl_at_", 7), 0);
    assert_int_equal(strncmp(res.tokens.refresh_token, "qrl_rt_", 7), 0);
    assert_string_equal(res.tokens.scope, "profile");
    assert_int_equal(res.tokens.account_id, f->phone.account_id);
    assert_int_equal(qrl_introspect(f->core, res.tokens.access_token, &in), QRL_OK);
    assert_true(in.active);
    assert_string_equal(in.username, "alice");
    assert_int_equal(in.device_id, res.tokens.device_id);
    /* The screen's access token reads /v1/me but can never act as a phone. */
    qrl_auth tv;
    assert_int_equal(qrl_session_auth(f->core, res.tokens.access_token, "", &tv),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_device_auth_any(f->core, res.tokens.access_token, "", &tv), QRL_OK);
    assert_string_equal(tv.account.display_name, "Alice");
    assert_string_equal(tv.device.name, "Living Room TV");
    assert_int_equal(qrl_device_auth_any(f->core, res.tokens.refresh_token, "", &tv),
                     QRL_ERR_UNAUTHORIZED);

    /* Replay of the redeemed device code. */
    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_REDEEMED);
}

static void test_second_phone_and_replays(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_lr_view v;
    qrl_lr_rec lr;

    start(f, &da);
    /* Approve before scanning: not allowed. */
    assert_int_equal(
        qrl_lr_approve(f->core, &f->phone, da.scan_secret, da.user_code, &PWP, "", &lr),
        QRL_ERR_CONFLICT);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, da.user_code, "", &v), QRL_OK);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone2, da.scan_secret, "", &v),
                     QRL_ERR_CLAIMED);
    assert_int_equal(
        qrl_lr_approve(f->core, &f->phone2, da.scan_secret, da.user_code, &PWP, "", &lr),
        QRL_ERR_CLAIMED);
    assert_int_equal(qrl_lr_deny(f->core, &f->phone2, da.scan_secret, NULL, "", &lr),
                     QRL_ERR_CLAIMED);
    assert_int_equal(
        qrl_lr_approve(f->core, &f->phone, da.scan_secret, da.user_code, &PWP, "", &lr), QRL_OK);
    assert_int_equal(
        qrl_lr_approve(f->core, &f->phone, da.scan_secret, da.user_code, &PWP, "", &lr),
        QRL_ERR_CONFLICT);
    assert_int_equal(lr.state, QRL_LR_APPROVED);
    assert_int_equal(qrl_lr_deny(f->core, &f->phone, da.scan_secret, NULL, "", &lr),
                     QRL_ERR_CONFLICT);
}

static void test_deny(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_lr_rec lr;
    qrl_lr_view v;

    start(f, &da);
    assert_int_equal(qrl_lr_deny(f->core, &f->phone, da.scan_secret, NULL, "", &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_DENIED);
    assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_DENIED);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, da.scan_secret, "", &v),
                     QRL_ERR_CONFLICT);
    assert_int_equal(v.lr.state, QRL_LR_DENIED);
    /* Terminal: stays denied even after expiry time passes. */
    qrl_core_clock_advance(f->core, 200000);
    assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_DENIED);
}

static void test_expiry(void **state)
{
    fx *f = *state;
    qrl_device_auth a, b;
    qrl_poll_result res;
    qrl_lr_view v;
    qrl_lr_rec lr;

    start(f, &a);
    start(f, &b);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, b.scan_secret, "", &v), QRL_OK);
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, b.scan_secret, b.user_code, &PWP, "", &lr),
                     QRL_OK);
    qrl_core_clock_advance(f->core, 120000);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, a.scan_secret, "", &v), QRL_ERR_EXPIRED);
    assert_int_equal(poll(f, &a, 0, &res), QRL_ERR_EXPIRED);
    /* APPROVED but not redeemed in time: expired too (the state table in login_request.c). */
    assert_int_equal(poll(f, &b, 0, &res), QRL_ERR_EXPIRED);
    assert_int_equal(poll(f, &b, 0, &res), QRL_ERR_EXPIRED);
}

static void test_slow_down(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;

    start(f, &da);
    assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_PENDING);
    assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_SLOW_DOWN);
    assert_int_equal(res.interval_s, 10);
    /* The new interval holds from now on: 5 s is now too soon, 10 s is fine. */
    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_SLOW_DOWN);
    assert_int_equal(res.interval_s, 15);
    qrl_core_clock_advance(f->core, 15000);
    assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_PENDING);
    /* A compliant client polling at its interval never sees slow_down. */
    for (int i = 0; i < 5; i++) {
        qrl_core_clock_advance(f->core, 15000);
        assert_int_equal(poll(f, &da, 0, &res), QRL_ERR_PENDING);
    }
}

static void test_hold_decisions(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_lr_view v;

    start(f, &da);
    /* Nothing new for the client: hold it. */
    assert_int_equal(poll(f, &da, QRL_POLL_WAIT, &res), QRL_ERR_PENDING);
    assert_true(res.hold);
    /* Deadline passed: answer pending. */
    assert_int_equal(poll(f, &da, QRL_POLL_WAIT | QRL_POLL_RECHECK | QRL_POLL_FINAL, &res),
                     QRL_ERR_PENDING);
    assert_false(res.hold);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, da.scan_secret, "", &v), QRL_OK);
    /* Scanned is news to this client: answer at once even though it asked to wait. */
    assert_int_equal(poll(f, &da, QRL_POLL_WAIT | QRL_POLL_RECHECK, &res), QRL_ERR_PENDING);
    assert_false(res.hold);
    assert_int_equal(res.state, QRL_LR_SCANNED);
    /* Told scanned already: hold again, and a held client is never slowed down. */
    assert_int_equal(poll(f, &da, QRL_POLL_WAIT, &res), QRL_ERR_PENDING);
    assert_true(res.hold);
}

static void test_revoked_approver(void **state)
{
    fx *f = *state;
    qrl_device_auth a, b;
    qrl_poll_result res;
    qrl_lr_view v;
    qrl_lr_rec lr;
    qrl_auth gone;

    start(f, &a);
    start(f, &b);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, a.scan_secret, "", &v), QRL_OK);
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, a.scan_secret, a.user_code, &PWP, "", &lr),
                     QRL_OK);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, b.scan_secret, "", &v), QRL_OK);
    f->changes = 0;
    /* The other phone of the account revokes this one. */
    assert_int_equal(qrl_device_revoke(f->core, &f->phone2, f->phone.device_id), QRL_OK);
    assert_int_equal(f->changes, 2); /* both requests declined, waiters told */
    assert_int_equal(poll(f, &a, 0, &res), QRL_ERR_DENIED);
    assert_int_equal(poll(f, &b, 0, &res), QRL_ERR_DENIED);
    gone = f->phone;
    (void)gone;
    /* Revoking a device of another account is "not found". */
    qrl_auth bob;
    sign_in(f, "bob", &bob);
    assert_int_equal(qrl_device_revoke(f->core, &bob, f->phone2.device_id), QRL_ERR_NOT_FOUND);
}

static void test_refresh_rotation(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_lr_view v;
    qrl_lr_rec lr;
    qrl_tokens t1, t2;
    qrl_introspection in;

    start(f, &da);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, da.scan_secret, "", &v), QRL_OK);
    assert_int_equal(
        qrl_lr_approve(f->core, &f->phone, da.scan_secret, da.user_code, &PWP, "", &lr), QRL_OK);
    assert_int_equal(poll(f, &da, 0, &res), QRL_OK);
    assert_int_equal(qrl_token_refresh(f->core, "other-app", res.tokens.refresh_token, &t1),
                     QRL_ERR_INVALID_CLIENT);
    assert_int_equal(qrl_token_refresh(f->core, "tv-app", res.tokens.refresh_token, &t1), QRL_OK);
    assert_string_not_equal(t1.refresh_token, res.tokens.refresh_token);
    assert_int_equal(qrl_introspect(f->core, t1.access_token, &in), QRL_OK);
    assert_true(in.active);
    /* Reuse of the spent token: the whole device is signed out. */
    assert_int_equal(qrl_token_refresh(f->core, "tv-app", res.tokens.refresh_token, &t2),
                     QRL_ERR_TOKEN_REUSED);
    assert_int_equal(qrl_introspect(f->core, t1.access_token, &in), QRL_OK);
    assert_false(in.active);
    assert_int_not_equal(qrl_token_refresh(f->core, "tv-app", t1.refresh_token, &t2), QRL_OK);
}

static void test_user_code_rate_limit(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_lr_view v;
    const char *wrong[] = {"BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD"};

    start(f, &da);
    for (int i = 0; i < 3; i++)
        if (strcmp(wrong[i], da.user_code) != 0)
            assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, wrong[i], "10.1.1.1", &v),
                             QRL_ERR_NOT_FOUND);
    /* The limit is reached: even the right code is refused now, and a success would not have
     * reset the counter anyway. */
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, da.user_code, "10.1.1.1", &v),
                     QRL_ERR_RATE_LIMITED);
    /* The scan secret is not a guessable code and is not limited. */
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, da.scan_secret, "10.1.1.1", &v), QRL_OK);
}

/* Parallel guesses of one account cannot pass the limit together: each takes its attempt
 * before it looks, so exactly the limit's worth are looked up and the rest are refused. */
struct guess_arg {
    fx *f;
    char code[16];
    qrl_err rc;
};

static void *guess(void *p)
{
    struct guess_arg *a = p;
    qrl_lr_view v;

    a->rc = qrl_lr_view_claim(a->f->core, &a->f->phone, a->code, "10.1.1.2", &v);
    return NULL;
}

static void test_user_code_guesses_in_parallel(void **state)
{
    fx *f = *state;
    pthread_t t[12];
    struct guess_arg a[12];
    int missed = 0, limited = 0;

    for (int i = 0; i < 12; i++) {
        a[i].f = f;
        snprintf(a[i].code, sizeof a[i].code, "BBBB-BBB%c", "BCDFGHJKLMNP"[i]);
        assert_int_equal(pthread_create(&t[i], NULL, guess, &a[i]), 0);
    }
    for (int i = 0; i < 12; i++) {
        pthread_join(t[i], NULL);
        missed += a[i].rc == QRL_ERR_NOT_FOUND;
        limited += a[i].rc == QRL_ERR_RATE_LIMITED;
    }
    assert_int_equal(missed, 3); /* the fixture's limit per account */
    assert_int_equal(limited, 9);
}

/* Device authorizations per address (an IPv6 address by its /64) and per client_id: past the
 * limit a 429 with the wait; another address is not affected; the live requests of the limited
 * address still work. */
static void test_device_authorization_limits(void **state)
{
    fx *f = *state;
    qrl_config cfg;
    qrl_core *core;
    qrl_device_auth da[4];
    qrl_poll_result res;

    qrl_config_defaults(&cfg);
    cfg.device_auth_addr = (qrl_limit){3, 600};
    cfg.device_auth_client = (qrl_limit){5, 600};
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "192.0.2.1", &da[i]), QRL_OK);
    assert_int_equal(qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "192.0.2.1", &da[3]),
                     QRL_ERR_RATE_LIMITED);
    assert_true(qrl_retry_after_s() >= 190 && qrl_retry_after_s() <= 200);
    /* The limited address's own requests are untouched. */
    assert_int_equal(qrl_token_device_code(core, "tv-app", da[0].device_code, 0, 0, "", &res),
                     QRL_ERR_PENDING);
    /* IPv6: two addresses of one /64 share a count; another /64 has its own. */
    assert_int_equal(
        qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "2001:db8:0:1::a", &da[3]), QRL_OK);
    assert_int_equal(
        qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "2001:db8:0:1::b", &da[3]), QRL_OK);
    /* The client_id's 5 are spent now, from any address; another client_id is not. */
    assert_int_equal(
        qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "2001:db8:0:2::a", &da[3]),
        QRL_ERR_RATE_LIMITED);
    assert_int_equal(
        qrl_device_authorize(core, "other-app", NULL, "TV", "tv", "2001:db8:0:2::a", &da[3]),
        QRL_OK);
    /* A refusal by the client_id did not spend the address's attempt: 2001:db8:0:2::/64 has
     * used one of its three. */
    assert_int_equal(
        qrl_device_authorize(core, "other-app", NULL, "TV", "tv", "2001:db8:0:2::b", &da[3]),
        QRL_OK);
    assert_int_equal(
        qrl_device_authorize(core, "other-app", NULL, "TV", "tv", "2001:db8:0:2::c", &da[3]),
        QRL_OK);
    assert_int_equal(
        qrl_device_authorize(core, "other-app", NULL, "TV", "tv", "2001:db8:0:2::d", &da[3]),
        QRL_ERR_RATE_LIMITED);
    /* 200 s later (600 / 3) the address may make one more. */
    qrl_core_clock_advance(core, 200 * 1000);
    assert_int_equal(qrl_device_authorize(core, "other-app", NULL, "TV", "tv", "192.0.2.1", &da[3]),
                     QRL_OK);
    qrl_core_free(core);
}

/* Approvals per account are limited; denials never are. */
static void test_approval_limit(void **state)
{
    fx *f = *state;
    qrl_config cfg;
    qrl_core *core;
    qrl_device_auth da;
    qrl_lr_view v;
    qrl_lr_rec lr;
    qrl_session s;
    qrl_auth phone;

    qrl_config_defaults(&cfg);
    cfg.pwhash_ops = crypto_pwhash_OPSLIMIT_MIN;
    cfg.pwhash_mem = crypto_pwhash_MEMLIMIT_MIN;
    cfg.approve_account = (qrl_limit){2, 600};
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
    assert_int_equal(qrl_session_create(core, "bob", PW, "Phone", NULL, "10.0.0.5", &s), QRL_OK);
    assert_int_equal(qrl_session_auth(core, s.session_token, "10.0.0.5", &phone), QRL_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "", &da), QRL_OK);
        assert_int_equal(qrl_lr_view_claim(core, &phone, da.scan_secret, "", &v), QRL_OK);
        assert_int_equal(qrl_lr_approve(core, &phone, da.scan_secret, da.user_code, &PWP, "", &lr),
                         i < 2 ? QRL_OK : QRL_ERR_RATE_LIMITED);
    }
    /* The third request is still there to be denied. */
    assert_int_equal(qrl_lr_deny(core, &phone, da.scan_secret, NULL, "", &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_DENIED);
    sodium_memzero(&s, sizeof s);
    qrl_core_free(core);
}

/* A request nobody answered is deleted by the sweep a minute after its expiry (until then its
 * screen hears "expired"); an answered one is kept for a day. */
static void test_sweep_undecided(void **state)
{
    fx *f = *state;
    qrl_device_auth idle, denied;
    qrl_lr_rec lr;

    start(f, &idle);
    start(f, &denied);
    assert_int_equal(qrl_lr_deny(f->core, &f->phone, denied.scan_secret, NULL, "", &lr), QRL_OK);
    qrl_core_clock_advance(f->core, 121 * 1000);
    assert_int_equal(qrl_core_sweep(f->core), QRL_OK);
    assert_int_equal(f->st->m->lr_get(f->st, idle.lr_id, &lr), QRL_OK);
    qrl_core_clock_advance(f->core, 60 * 1000);
    assert_int_equal(qrl_core_sweep(f->core), QRL_OK);
    assert_int_equal(f->st->m->lr_get(f->st, idle.lr_id, &lr), QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->lr_get(f->st, denied.lr_id, &lr), QRL_OK);
}

/* The screen's platform is stored with the request and shown to the phone that claims it; an
 * absent one is ""; one too long, with control characters or broken UTF-8 is refused and
 * stores nothing. */
/* A device name is shown on the phone as the screen gave it: text that reorders or hides itself
 * (a right-to-left override turning "…TV" into something else, zero-width or C1 characters) is
 * refused at the device authorization, while other scripts, emoji and their joiners pass. */
static void test_device_name_display_safety(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_lr_rec lr;
    const char *bad[] = {
        "Living Room TV\xe2\x80\xaeVT ruoy", /* U+202E right-to-left override */
        "TV\xe2\x80\xadx",                   /* U+202D left-to-right override */
        "TV\xe2\x81\xa7x",                   /* U+2067 right-to-left isolate */
        "TV\xe2\x80\x8bx",                   /* U+200B zero-width space */
        "TV\xe2\x80\x8fx",                   /* U+200F right-to-left mark */
        "TV\xd8\x9cx",                       /* U+061C Arabic letter mark */
        "\xef\xbb\xbfTV",                    /* U+FEFF byte order mark */
        "TV\xc2\x85x",                       /* U+0085 next line (C1) */
        "TV\xe2\x81\xa0x",                   /* U+2060 word joiner */
    };
    const char *good[] = {
        "Wohnzimmer-Fernseher \xc3\xa4\xc3\xb6",           /* Latin with umlauts */
        "\xd8\xaa\xd9\x84\xd9\x81\xd8\xa7\xd8\xb2",        /* Arabic */
        "TV \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9", /* emoji joined by ZWJ */
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(qrl_device_authorize(f->core, "tv-app", NULL, bad[i], "tv", "", &da),
                         QRL_ERR_INVALID);
        assert_int_equal(
            qrl_device_authorize_platform(f->core, "tv-app", NULL, "TV", "tv", bad[i], "", &da),
            QRL_ERR_INVALID);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(qrl_device_authorize(f->core, "tv-app", NULL, good[i], "tv", "", &da),
                         QRL_OK);
        assert_int_equal(f->st->m->lr_get(f->st, da.lr_id, &lr), QRL_OK);
        assert_string_equal(lr.device_name, good[i]);
    }
}

static void test_device_platform(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_lr_view v;
    qrl_lr_rec lr;
    char longest[QRL_MAX_DEVICE_PLATFORM + 1], toolong[QRL_MAX_DEVICE_PLATFORM + 2];
    const char *bad[] = {"Tizen\n6.5", "Tizen\t6.5", "Tizen\x7f",
                         "Tizen \xc3", "\xc0\xaf",   "\xed\xa0\x80"};

    assert_int_equal(qrl_device_authorize_platform(f->core, "tv-app", NULL, "Living Room TV", "tv",
                                                   "Samsung Tizen", "10.0.0.7", &da),
                     QRL_OK);
    assert_int_equal(f->st->m->lr_get(f->st, da.lr_id, &lr), QRL_OK);
    assert_string_equal(lr.device_platform, "Samsung Tizen");
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, da.scan_secret, "10.0.0.9", &v), QRL_OK);
    assert_string_equal(v.lr.device_name, "Living Room TV");
    assert_string_equal(v.lr.device_kind, "tv");
    assert_string_equal(v.lr.device_platform, "Samsung Tizen");

    /* Non-ASCII text is fine; exactly the limit is fine. */
    assert_int_equal(qrl_device_authorize_platform(f->core, "tv-app", NULL, "TV", "tv",
                                                   "LG webOS \xe2\x80\x94 6.0", "", &da),
                     QRL_OK);
    assert_int_equal(f->st->m->lr_get(f->st, da.lr_id, &lr), QRL_OK);
    assert_string_equal(lr.device_platform, "LG webOS \xe2\x80\x94 6.0");
    memset(longest, 'p', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    assert_int_equal(
        qrl_device_authorize_platform(f->core, "tv-app", NULL, "TV", "tv", longest, "", &da),
        QRL_OK);
    assert_int_equal(f->st->m->lr_get(f->st, da.lr_id, &lr), QRL_OK);
    assert_string_equal(lr.device_platform, longest);

    /* Absent, or empty: "". The old entry point says nothing about it. */
    assert_int_equal(
        qrl_device_authorize_platform(f->core, "tv-app", NULL, "TV", "tv", NULL, "", &da), QRL_OK);
    assert_int_equal(f->st->m->lr_get(f->st, da.lr_id, &lr), QRL_OK);
    assert_string_equal(lr.device_platform, "");
    assert_int_equal(
        qrl_device_authorize_platform(f->core, "tv-app", NULL, "TV", "tv", "", "", &da), QRL_OK);
    assert_int_equal(f->st->m->lr_get(f->st, da.lr_id, &lr), QRL_OK);
    assert_string_equal(lr.device_platform, "");
    start(f, &da);
    assert_int_equal(f->st->m->lr_get(f->st, da.lr_id, &lr), QRL_OK);
    assert_string_equal(lr.device_platform, "");

    /* Refused: one byte over the limit, control characters, broken UTF-8. */
    memset(toolong, 'p', sizeof toolong - 1);
    toolong[sizeof toolong - 1] = '\0';
    assert_false(qrl_device_platform_valid(toolong));
    assert_int_equal(
        qrl_device_authorize_platform(f->core, "tv-app", NULL, "TV", "tv", toolong, "", &da),
        QRL_ERR_INVALID);
    assert_int_equal(da.lr_id, 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(qrl_device_platform_valid(bad[i]));
        assert_int_equal(
            qrl_device_authorize_platform(f->core, "tv-app", NULL, "TV", "tv", bad[i], "", &da),
            QRL_ERR_INVALID);
    }
    assert_true(qrl_device_platform_valid(NULL));
    assert_true(qrl_device_platform_valid(longest));
}

static void test_bad_input(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;
    char longname[QRL_MAX_DEVICE_NAME + 2];

    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(qrl_device_authorize(f->core, "", NULL, NULL, NULL, "", &da), QRL_ERR_INVALID);
    assert_int_equal(qrl_device_authorize(f->core, "a b", NULL, NULL, NULL, "", &da),
                     QRL_ERR_INVALID);
    assert_int_equal(qrl_device_authorize(f->core, "tv", NULL, longname, NULL, "", &da),
                     QRL_ERR_INVALID);
    assert_int_equal(qrl_device_authorize(f->core, "tv", NULL, "TV", "toaster", "", &da),
                     QRL_ERR_INVALID);
    assert_int_equal(qrl_device_authorize(f->core, "tv", "a\"b", "TV", "tv", "", &da),
                     QRL_ERR_INVALID);
    start(f, &da);
    assert_int_equal(qrl_token_device_code(f->core, "other", da.device_code, 0, 0, "", &res),
                     QRL_ERR_INVALID_CLIENT);
    assert_int_equal(qrl_token_device_code(f->core, "tv-app", "qrl_dc_nope", 0, 0, "", &res),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_account_add(f->core, "alice", NULL, PW, NULL), QRL_ERR_EXISTS);
    assert_int_equal(qrl_account_add(f->core, "bad name", NULL, PW, NULL), QRL_ERR_INVALID);
    assert_int_equal(qrl_account_add(f->core, "carol", NULL, "", NULL), QRL_ERR_INVALID);
}

static void test_sessions(void **state)
{
    fx *f = *state;
    qrl_session s;
    qrl_auth a;

    assert_int_equal(qrl_session_create(f->core, "alice", "nope", NULL, NULL, "", &s),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_session_create(f->core, "nobody", PW, NULL, NULL, "", &s),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_session_create(f->core, "alice", PW, NULL, NULL, "", &s), QRL_OK);
    assert_int_equal(strncmp(s.session_token, "qrl_st_", 7), 0);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "", &a), QRL_OK);
    assert_string_equal(a.device.kind, "phone");
    assert_int_equal(qrl_device_revoke(f->core, &a, a.device_id), QRL_OK);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "", &a), QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_session_auth(f->core, "qrl_st_garbage-garbage-garbage", "", &a),
                     QRL_ERR_UNAUTHORIZED);
    /* Sessions expire. */
    assert_int_equal(qrl_session_create(f->core, "alice", PW, NULL, NULL, "", &s), QRL_OK);
    qrl_core_clock_advance(f->core, 31LL * 24 * 3600 * 1000);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "", &a), QRL_ERR_UNAUTHORIZED);
}

/* Tokens issued before tokens carried an id (stored under their BLAKE2b-256) stay valid: a
 * session token and an access token of that format, put into the store as they were then. */
static void test_old_format_tokens(void **state)
{
    fx *f = *state;
    qrl_session s;
    qrl_auth a;
    qrl_introspection in;
    qrl_token_rec rec;
    char st[QRL_SECRET_BUF], at[QRL_SECRET_BUF];
    int64_t now = qrl_core_now_ms(f->core);

    assert_int_equal(qrl_session_create(f->core, "alice", PW, NULL, NULL, "", &s), QRL_OK);
    assert_int_equal(strlen(s.session_token), 61); /* the current format */
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "", &a), QRL_OK);

    qrl__secret_new(QRL__PFX_SESSION, QRL__TOKEN_BYTES, st);
    qrl__secret_new(QRL__PFX_ACCESS, QRL__TOKEN_BYTES, at);
    assert_int_equal(strlen(st), 50);
    memset(&rec, 0, sizeof rec);
    rec.kind = QRL_TOKEN_SESSION;
    rec.device_id = a.device_id;
    rec.created_ms = now;
    rec.expires_ms = now + 3600 * 1000;
    qrl__secret_hash(st, &rec.hash);
    assert_int_equal(f->st->m->token_insert(f->st, &rec), QRL_OK);
    rec.kind = QRL_TOKEN_ACCESS;
    snprintf(rec.client_id, sizeof rec.client_id, "tv-app");
    qrl__secret_hash(at, &rec.hash);
    assert_int_equal(f->st->m->token_insert(f->st, &rec), QRL_OK);

    memset(&a, 0, sizeof a);
    assert_int_equal(qrl_session_auth(f->core, st, "", &a), QRL_OK);
    assert_string_equal(a.account.username, "alice");
    assert_int_equal(qrl_introspect(f->core, at, &in), QRL_OK);
    assert_int_equal(in.active, 1);
    assert_int_equal(qrl_revoke_token(f->core, at), QRL_OK);
    assert_int_equal(qrl_introspect(f->core, at, &in), QRL_OK);
    assert_int_equal(in.active, 0);
}

/* Signs a decision the way a phone does. */
static void sign(const unsigned char *sk, const qrl_lr_view *v, const char *decision, char *out)
{
    char msg[200], canon[QRL_USER_CODE_LEN + 1];
    unsigned char sig[crypto_sign_BYTES];
    size_t n;

    assert_int_equal(qrl_user_code_normalize(v->user_code, canon), QRL_OK);
    n = qrl_decision_message(v->lr.id, decision, v->lr.nonce, canon, msg, sizeof msg);
    assert_true(n > 0);
    crypto_sign_detached(sig, NULL, (const unsigned char *)msg, n, sk);
    sodium_bin2base64(out, 100, sig, sizeof sig, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void test_signed_decisions(void **state)
{
    fx *f = *state;
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
    char pkb[64], sig[100], sig_b[100];
    qrl_session s;
    qrl_auth a;
    qrl_device_auth da, db;
    qrl_lr_view va, vb;
    qrl_lr_rec lr;
    qrl_proof p = {0};

    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    sodium_bin2base64(pkb, sizeof pkb, pk, sizeof pk, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_int_equal(qrl_session_create(f->core, "alice", PW, "Signer", NULL, "", &s), QRL_OK);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "", &a), QRL_OK);
    start(f, &da);
    start(f, &db);
    assert_int_equal(qrl_lr_view_claim(f->core, &a, da.scan_secret, "", &va), QRL_OK);
    assert_int_equal(qrl_lr_view_claim(f->core, &a, db.scan_secret, "", &vb), QRL_OK);
    assert_true(strlen(va.lr.nonce) >= 22);
    assert_string_not_equal(va.lr.nonce, vb.lr.nonce);

    /* Without a registered key a signature is refused. */
    sign(sk, &va, "approve", sig);
    p.signature = sig;
    assert_int_equal(qrl_lr_approve(f->core, &a, da.scan_secret, da.user_code, &p, "", &lr),
                     QRL_ERR_FORBIDDEN);
    /* Registering a key needs the password. */
    assert_int_equal(qrl_device_set_key(f->core, &a, pkb, "wrong", ""), QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_device_set_key(f->core, &a, "not-a-key", PW, ""), QRL_ERR_INVALID);
    assert_int_equal(qrl_device_set_key(f->core, &a, pkb, PW, ""), QRL_OK);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "", &a), QRL_OK);
    assert_true(a.device.has_pubkey);

    /* Tampering: another request's signature, the opposite decision, another key. */
    sign(sk, &vb, "approve", sig_b);
    p.signature = sig_b;
    assert_int_equal(qrl_lr_approve(f->core, &a, da.scan_secret, da.user_code, &p, "", &lr),
                     QRL_ERR_FORBIDDEN);
    sign(sk, &va, "deny", sig);
    p.signature = sig;
    assert_int_equal(qrl_lr_approve(f->core, &a, da.scan_secret, da.user_code, &p, "", &lr),
                     QRL_ERR_FORBIDDEN);
    sign(sk2, &va, "approve", sig);
    assert_int_equal(qrl_lr_approve(f->core, &a, da.scan_secret, da.user_code, &p, "", &lr),
                     QRL_ERR_FORBIDDEN);
    sign(sk, &va, "approve", sig);
    sig[3] = sig[3] == 'A' ? 'B' : 'A';
    assert_int_equal(qrl_lr_approve(f->core, &a, da.scan_secret, da.user_code, &p, "", &lr),
                     QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_lr_view_claim(f->core, &a, da.scan_secret, "", &va), QRL_OK);
    assert_int_equal(va.lr.state, QRL_LR_SCANNED); /* nothing changed */

    /* The real thing. */
    sign(sk, &va, "approve", sig);
    assert_int_equal(qrl_lr_approve(f->core, &a, da.scan_secret, da.user_code, &p, "", &lr),
                     QRL_OK);
    assert_int_equal(lr.state, QRL_LR_APPROVED);
    /* Replaying it: on the same request (decided) and, with A's id and nonce, on B. */
    assert_int_equal(qrl_lr_approve(f->core, &a, da.scan_secret, da.user_code, &p, "", &lr),
                     QRL_ERR_CONFLICT);
    assert_int_equal(qrl_lr_approve(f->core, &a, db.scan_secret, db.user_code, &p, "", &lr),
                     QRL_ERR_FORBIDDEN);
    /* Signed decline of B. */
    assert_int_equal(qrl_lr_view_claim(f->core, &a, db.scan_secret, "", &vb), QRL_OK);
    sign(sk, &vb, "approve", sig_b);
    p.signature = sig_b;
    assert_int_equal(qrl_lr_deny(f->core, &a, db.scan_secret, &p, "", &lr), QRL_ERR_FORBIDDEN);
    sign(sk, &vb, "deny", sig_b);
    assert_int_equal(qrl_lr_deny(f->core, &a, db.scan_secret, &p, "", &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_DENIED);
}

static void test_screen_scan_secret(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_lr_view v;
    qrl_lr_rec lr;
    char scan[QRL_SECRET_BUF];

    start(f, &da);
    assert_int_equal(qrl_screen_scan_secret(f->core, "tv-app", da.device_code, scan), QRL_OK);
    assert_string_equal(scan, da.scan_secret);
    assert_int_equal(qrl_screen_scan_secret(f->core, "other", da.device_code, scan),
                     QRL_ERR_INVALID_CLIENT);
    assert_int_equal(
        qrl_screen_scan_secret(f->core, "tv-app", "qrl_dc_unknown-unknown-unknown", scan),
        QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, da.scan_secret, "", &v), QRL_OK);
    assert_int_equal(qrl_screen_scan_secret(f->core, "tv-app", da.device_code, scan), QRL_OK);
    assert_int_equal(qrl_lr_deny(f->core, &f->phone, da.scan_secret, NULL, "", &lr), QRL_OK);
    assert_int_equal(qrl_screen_scan_secret(f->core, "tv-app", da.device_code, scan),
                     QRL_ERR_DENIED);
}

/* A device code or scan secret that names a real request's id but not its secret finds
 * nothing, whether the poll would be answered from memory or from the store; nothing changes. */
static void test_forged_secrets(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_lr_view v;
    qrl_lr_rec lr;
    char forged[QRL_SECRET_BUF], scan[QRL_SECRET_BUF];

    start(f, &da);
    qrl__device_code_new(da.lr_id, forged);
    assert_string_not_equal(forged, da.device_code);
    assert_int_equal(qrl_token_device_code(f->core, "tv-app", forged, 0, 0, "", &res),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_token_device_code(f->core, "tv-app", forged, QRL_POLL_WAIT, 30, "", &res),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_screen_scan_secret(f->core, "tv-app", forged, scan), QRL_ERR_NOT_FOUND);
    /* A scan secret derived from the forged code: right id, wrong secret part. */
    assert_true(qrl__scan_from_device_code(forged, scan));
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, scan, "", &v), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, scan, da.user_code, &PWP, "", &lr),
                     QRL_ERR_NOT_FOUND);
    /* An old-format device code (no id) is unknown too. */
    qrl__secret_new(QRL__PFX_DEVICE_CODE, QRL__TOKEN_BYTES, forged);
    assert_int_equal(qrl_token_device_code(f->core, "tv-app", forged, 0, 0, "", &res),
                     QRL_ERR_NOT_FOUND);
    /* The real ones still work, and the request was not touched. */
    assert_int_equal(qrl_token_device_code(f->core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_PENDING);
    assert_int_equal(qrl_lr_view_claim(f->core, &f->phone, da.scan_secret, "", &v), QRL_OK);
    assert_int_equal(v.lr.state, QRL_LR_SCANNED);
}

/* A fake held screen request for the handoff test. */
struct fake_held {
    int taken, given;
    qrl_err rc;
    qrl_tokens t;
};

static void *fake_take(void *ud, int64_t lr_id, char *address, size_t len)
{
    struct fake_held *h = ud;
    (void)lr_id;
    if (h->taken)
        return NULL;
    h->taken = 1;
    snprintf(address, len, "10.0.0.7");
    return h;
}

static void fake_give(void *ud, void *held, qrl_err rc, const qrl_tokens *t)
{
    struct fake_held *h = held;
    (void)ud;
    h->given++;
    h->rc = rc;
    if (rc == QRL_OK)
        h->t = *t;
}

static void test_approval_hands_tokens_to_waiting_screen(void **state)
{
    fx *f = *state;
    struct fake_held held = {0};
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_introspection in;
    qrl_lr_view v;
    qrl_lr_rec lr;
    qrl_config cfg;
    qrl_core *core;

    qrl_config_defaults(&cfg);
    cfg.handoff = (qrl_handoff){.take = fake_take, .give = fake_give, .ud = &held};
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
    assert_int_equal(qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "10.0.0.7", &da),
                     QRL_OK);
    assert_int_equal(qrl_lr_view_claim(core, &f->phone, da.scan_secret, "", &v), QRL_OK);
    /* A failed approval never touches the waiting screen. */
    assert_int_equal(
        qrl_lr_approve(core, &f->phone, da.scan_secret, da.user_code, &WRONGP, "", &lr),
        QRL_ERR_UNAUTHORIZED);
    assert_int_equal(held.taken, 0);
    assert_int_equal(qrl_lr_approve(core, &f->phone, da.scan_secret, da.user_code, &PWP, "", &lr),
                     QRL_OK);
    assert_int_equal(lr.state, QRL_LR_APPROVED);
    assert_int_equal(held.given, 1);
    assert_int_equal(held.rc, QRL_OK);
    assert_int_equal(strncmp(held.t.access_token, "qrl_at_", 7), 0);
    assert_int_equal(qrl_introspect(core, held.t.access_token, &in), QRL_OK);
    assert_true(in.active);
    assert_string_equal(in.username, "alice");
    /* Redeemed already: the device code is spent. */
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_REDEEMED);
    qrl_core_free(core);
}

/* The DPoP key a held request proved (qrl_handoff.dpop_key): the one test_bound_request sets. */
static const unsigned char *held_key;

static int fake_dpop_key(void *ud, void *held, unsigned char key[QRL_PUBKEY_BYTES])
{
    (void)ud;
    (void)held;
    if (held_key == NULL)
        return 0;
    memcpy(key, held_key, QRL_PUBKEY_BYTES);
    return 1;
}

/* A request bound to a key at device authorization (dpop_jkt): it answers only a proof of that
 * key, from the store (never from memory), in every state; a refusal changes nothing; a screen
 * held with another key is not handed the tokens at approval, one held with the key is. */
static void test_bound_request(void **state)
{
    fx *f = *state;
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
    char jkt[QRL_DPOP_JKT_LEN + 1], scan[QRL_SECRET_BUF], qr_jkt[QRL_DPOP_JKT_LEN + 1];
    struct fake_held held = {0};
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_introspection in;
    qrl_lr_view v;
    qrl_lr_rec lr;
    qrl_config cfg;
    qrl_core *core;

    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    qrl_dpop_thumbprint(pk, jkt);
    assert_true(qrl_dpop_jkt_valid(jkt));
    qrl_config_defaults(&cfg);
    cfg.handoff =
        (qrl_handoff){.take = fake_take, .give = fake_give, .ud = &held, .dpop_key = fake_dpop_key};
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);

    assert_int_equal(qrl_device_authorize_dpop(core, "tv-app", NULL, "TV", "tv", NULL,
                                               "not-a-thumbprint", "", &da),
                     QRL_ERR_INVALID);
    assert_int_equal(
        qrl_device_authorize_dpop(core, "tv-app", NULL, "TV", "tv", NULL, jkt, "", &da), QRL_OK);
    assert_string_equal(da.dpop_jkt, jkt);
    assert_int_equal(qrl_screen_qr_secret(core, "tv-app", da.device_code, scan, qr_jkt), QRL_OK);
    assert_string_equal(scan, da.scan_secret);
    assert_string_equal(qr_jkt, jkt);

    /* Waiting: never from memory; without the key, or with another, refused before the poll
     * counts (no slow_down after); with it, pending. */
    assert_int_equal(
        qrl_token_device_code(core, "tv-app", da.device_code, QRL_POLL_MEMORY, 0, "", &res),
        QRL_ERR_NOT_FOUND);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            qrl_token_device_code_dpop(core, "tv-app", da.device_code, 0, 0, "", NULL, &res),
            QRL_ERR_UNAUTHORIZED);
        assert_int_equal(
            qrl_token_device_code_dpop(core, "tv-app", da.device_code, 0, 0, "", pk2, &res),
            QRL_ERR_FORBIDDEN);
    }
    assert_int_equal(qrl_token_device_code_dpop(core, "tv-app", da.device_code, 0, 0, "", pk, &res),
                     QRL_ERR_PENDING);
    /* Another client's code is that client's answer first. */
    assert_int_equal(qrl_token_device_code_dpop(core, "other", da.device_code, 0, 0, "", pk, &res),
                     QRL_ERR_INVALID_CLIENT);

    /* A screen held with another key: not handed the tokens; the approval stands. */
    held_key = pk2;
    assert_int_equal(qrl_lr_view_claim(core, &f->phone, da.scan_secret, "", &v), QRL_OK);
    assert_string_equal(v.lr.dpop_jkt, jkt);
    assert_int_equal(qrl_lr_approve(core, &f->phone, da.scan_secret, da.user_code, &PWP, "", &lr),
                     QRL_OK);
    assert_int_equal(held.given, 1);
    assert_int_not_equal(held.rc, QRL_OK);
    assert_int_equal(lr.state, QRL_LR_APPROVED);
    qrl_core_clock_advance(core, 10000);
    assert_int_equal(
        qrl_token_device_code_dpop(core, "tv-app", da.device_code, 0, 0, "", pk2, &res),
        QRL_ERR_FORBIDDEN);
    assert_int_equal(
        qrl_token_device_code_dpop(core, "tv-app", da.device_code, 0, 0, "", NULL, &res),
        QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_token_device_code_dpop(core, "tv-app", da.device_code, 0, 0, "", pk, &res),
                     QRL_OK);
    assert_int_equal(res.tokens.dpop_bound, 1);
    assert_int_equal(qrl_introspect(core, res.tokens.access_token, &in), QRL_OK);
    assert_true(in.active && in.dpop_bound);
    assert_memory_equal(in.dpop_key, pk, sizeof pk);
    sodium_memzero(&res, sizeof res);

    /* A screen held with the key is handed its tokens, bound. */
    memset(&held, 0, sizeof held);
    held_key = pk;
    assert_int_equal(
        qrl_device_authorize_dpop(core, "tv-app", NULL, "TV", "tv", NULL, jkt, "", &da), QRL_OK);
    assert_int_equal(qrl_lr_view_claim(core, &f->phone, da.scan_secret, "", &v), QRL_OK);
    assert_int_equal(qrl_lr_approve(core, &f->phone, da.scan_secret, da.user_code, &PWP, "", &lr),
                     QRL_OK);
    assert_int_equal(held.given, 1);
    assert_int_equal(held.rc, QRL_OK);
    assert_int_equal(held.t.dpop_bound, 1);
    assert_int_equal(qrl_introspect(core, held.t.access_token, &in), QRL_OK);
    assert_memory_equal(in.dpop_key, pk, sizeof pk);
    sodium_memzero(&held, sizeof held);
    held_key = NULL;
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(sk2, sizeof sk2);
    qrl_core_free(core);
}

/* Counts the store's device-code lookups: the fixture's store gets a copy of its method table
 * whose lr_find counts and calls the real one. */
static qrl_store_methods counting_m;
static const qrl_store_methods *real_m;
static int dc_finds;

static qrl_err counting_lr_find(qrl_store *st, qrl_lr_key kind, const void *key, int64_t now_ms,
                                qrl_lr_rec *out)
{
    if (kind == QRL_LR_KEY_DEVICE_CODE)
        dc_finds++;
    return real_m->lr_find(st, kind, key, now_ms, out);
}

/* Session authentication reads the token, account and device with one token_auth where the
 * store has it, and falls back to three lookups for a store without it (version < 4); both give
 * the same answer, and both refuse a revoked device. */
static int account_gets;
static qrl_err counting_account_get(qrl_store *st, int64_t id, qrl_account_rec *out)
{
    account_gets++;
    return real_m->account_get(st, id, out);
}

static void test_session_auth_one_lookup(void **state)
{
    fx *f = *state;
    qrl_session s;
    qrl_auth a, b;

    assert_int_equal(qrl_session_create(f->core, "bob", PW, "Tablet", NULL, "10.0.0.6", &s),
                     QRL_OK);
    real_m = f->st->m;
    counting_m = *real_m;
    counting_m.account_get = counting_account_get;
    f->st->m = &counting_m;
    account_gets = 0;
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "10.0.0.6", &a), QRL_OK);
    assert_int_equal(account_gets, 0);
    counting_m.token_auth = NULL; /* a store without it */
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "10.0.0.6", &b), QRL_OK);
    assert_int_equal(account_gets, 1);
    assert_string_equal(a.account.username, "bob");
    assert_int_equal(a.account_id, b.account_id);
    assert_int_equal(a.device_id, b.device_id);
    assert_string_equal(a.device.name, "Tablet");
    assert_string_equal(b.device.name, "Tablet");
    assert_int_equal(qrl_device_revoke(f->core, &a, a.device_id), QRL_OK);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "", &b), QRL_ERR_UNAUTHORIZED);
    counting_m.token_auth = real_m->token_auth;
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "", &b), QRL_ERR_UNAUTHORIZED);
    f->st->m = real_m;
    sodium_memzero(&s, sizeof s);
}

/* QRL_POLL_MEMORY answers only what memory knows and never reads the store: the server uses it
 * to answer pending polls without a store call, and falls back to a plain poll on NOT_FOUND. */
static void test_poll_memory_only(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_lr_view v;
    qrl_lr_rec lr;
    qrl_config cfg;
    qrl_core *core, *fresh;
    char forged[QRL_SECRET_BUF];

    real_m = f->st->m;
    counting_m = *real_m;
    counting_m.lr_find = counting_lr_find;
    f->st->m = &counting_m;
    dc_finds = 0;
    qrl_config_defaults(&cfg);
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
    assert_int_equal(qrl_core_new(&cfg, f->st, &fresh), QRL_OK); /* like a restarted server */
    assert_int_equal(qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "", &da), QRL_OK);

    assert_int_equal(
        qrl_token_device_code(core, "tv-app", da.device_code, QRL_POLL_MEMORY, 0, "", &res),
        QRL_ERR_PENDING);
    assert_int_equal(res.lr_id, da.lr_id);
    assert_int_equal(
        qrl_token_device_code(core, "tv-app", da.device_code, QRL_POLL_MEMORY, 0, "", &res),
        QRL_ERR_SLOW_DOWN); /* the interval rules apply */
    /* Unknown to memory: NOT_FOUND, and the store was not asked. */
    assert_int_equal(
        qrl_token_device_code(fresh, "tv-app", da.device_code, QRL_POLL_MEMORY, 0, "", &res),
        QRL_ERR_NOT_FOUND);
    qrl__device_code_new(da.lr_id, forged);
    assert_int_equal(qrl_token_device_code(core, "tv-app", forged, QRL_POLL_MEMORY, 0, "", &res),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(dc_finds, 0);
    /* Once the request moved on, memory no longer answers; the plain poll does. */
    assert_int_equal(qrl_lr_view_claim(core, &f->phone, da.scan_secret, "", &v), QRL_OK);
    assert_int_equal(qrl_lr_approve(core, &f->phone, da.scan_secret, da.user_code, &PWP, "", &lr),
                     QRL_OK);
    qrl_core_clock_advance(core, 10000);
    assert_int_equal(
        qrl_token_device_code(core, "tv-app", da.device_code, QRL_POLL_MEMORY, 0, "", &res),
        QRL_ERR_NOT_FOUND);
    assert_int_equal(dc_finds, 0);
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res), QRL_OK);
    assert_true(res.tokens.access_token[0] != '\0');
    sodium_memzero(&res, sizeof res);
    f->st->m = real_m;
    qrl_core_free(fresh);
    qrl_core_free(core);
}

static void test_polls_answered_from_memory_follow_every_change(void **state)
{
    fx *f = *state;
    qrl_device_auth da, db;
    qrl_poll_result res;
    qrl_lr_view v;
    qrl_lr_rec lr;
    qrl_config cfg;
    qrl_core *core, *other;

    /* One core plays the server: the screen's polls and the phone's actions all go through
     * it, as they do through one `qrlogin serve`. */
    real_m = f->st->m;
    counting_m = *real_m;
    counting_m.lr_find = counting_lr_find;
    f->st->m = &counting_m;
    dc_finds = 0;
    qrl_config_defaults(&cfg);
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
    assert_int_equal(qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "10.0.0.7", &da),
                     QRL_OK);

    /* Pending polls of a request this core created need no store read. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                         QRL_ERR_PENDING);
        assert_int_equal(res.state, QRL_LR_PENDING);
        assert_int_equal(res.lr_id, da.lr_id);
        qrl_core_clock_advance(core, 5000);
    }
    assert_int_equal(dc_finds, 0);
    /* The rules still apply: too fast is slow_down, another client's poll is refused. */
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_PENDING);
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_SLOW_DOWN);
    assert_int_equal(res.interval_s, 10);
    assert_int_equal(qrl_token_device_code(core, "other-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_INVALID_CLIENT);
    assert_int_equal(dc_finds, 0);

    /* Each transition is seen by the very next poll: scan, approve (tokens), replay. */
    assert_int_equal(qrl_lr_view_claim(core, &f->phone, da.scan_secret, "", &v), QRL_OK);
    qrl_core_clock_advance(core, 10000);
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_PENDING);
    assert_int_equal(res.state, QRL_LR_SCANNED);
    assert_int_equal(qrl_lr_approve(core, &f->phone, da.scan_secret, da.user_code, &PWP, "", &lr),
                     QRL_OK);
    qrl_core_clock_advance(core, 10000);
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res), QRL_OK);
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_REDEEMED);

    /* A request created before this core existed (as after a restart) is read once, then
     * answered from memory; a decline is seen at once; expiry too. */
    assert_int_equal(qrl_device_authorize(f->core, "tv-app", NULL, "TV", "tv", "", &db), QRL_OK);
    dc_finds = 0;
    assert_int_equal(qrl_token_device_code(core, "tv-app", db.device_code, 0, 0, "", &res),
                     QRL_ERR_PENDING);
    qrl_core_clock_advance(core, 5000);
    assert_int_equal(qrl_token_device_code(core, "tv-app", db.device_code, 0, 0, "", &res),
                     QRL_ERR_PENDING);
    assert_int_equal(dc_finds, 1);
    assert_int_equal(qrl_lr_deny(core, &f->phone, db.scan_secret, NULL, "", &lr), QRL_OK);
    qrl_core_clock_advance(core, 5000);
    assert_int_equal(qrl_token_device_code(core, "tv-app", db.device_code, 0, 0, "", &res),
                     QRL_ERR_DENIED);
    assert_int_equal(qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "", &db), QRL_OK);
    qrl_core_clock_advance(core, 120000);
    assert_int_equal(qrl_token_device_code(core, "tv-app", db.device_code, 0, 0, "", &res),
                     QRL_ERR_EXPIRED);
    qrl_core_free(core);

    /* Another process on the same database (here: a second store handle with its own
     * connections, writer and mapping of the stamp file, and a core over it) denies a request
     * this core answers from memory: the very next poll reads the store and says so. */
    qrl_store *st2;
    char err[128];
    assert_int_equal(qrl_store_sqlite_open(f->db, &st2, err, sizeof err), QRL_OK);
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
    assert_int_equal(qrl_core_new(&cfg, st2, &other), QRL_OK);
    assert_int_equal(qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "", &da), QRL_OK);
    dc_finds = 0;
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_PENDING);
    assert_int_equal(dc_finds, 0); /* from memory */
    assert_int_equal(qrl_lr_deny(other, &f->phone, da.scan_secret, NULL, "", &lr), QRL_OK);
    qrl_core_clock_advance(core, 5000);
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_DENIED);
    assert_int_equal(dc_finds, 1);
    qrl_core_free(other);
    qrl_core_free(core);
    st2->m->close(st2);

    /* The same with a real second process: a child opens the database itself and approves a
     * request the parent has learned; the parent's next poll gets the tokens. */
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
    assert_int_equal(qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "", &da), QRL_OK);
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_PENDING);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        qrl_store *cst;
        qrl_core *cc;
        qrl_lr_view cv;
        qrl_lr_rec clr;
        int ok = qrl_store_sqlite_open(f->db, &cst, err, sizeof err) == QRL_OK &&
                 qrl_core_new(&cfg, cst, &cc) == QRL_OK &&
                 qrl_lr_view_claim(cc, &f->phone, da.scan_secret, "", &cv) == QRL_OK &&
                 qrl_lr_approve(cc, &f->phone, da.scan_secret, da.user_code, &PWP, "", &clr) ==
                     QRL_OK;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    qrl_core_clock_advance(core, 5000);
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res), QRL_OK);
    assert_true(res.tokens.access_token[0] != '\0');
    sodium_memzero(&res, sizeof res);
    qrl_core_free(core);
    f->st->m = real_m;
}

/* A store shared by several nodes keeps the interval rules (store.h, lr_poll): the core asks
 * it about every poll instead of its own memory, passes the RFC 8628 numbers, and answers
 * slow_down with the interval the store gives. */
static int polls_asked, poll_exempt_seen;

static qrl_err shared_lr_poll(qrl_store *st, int64_t id, int64_t now_ms, int exempt, int slack_ms,
                              int step_s, int max_s, int *interval_s)
{
    (void)st;
    (void)id;
    (void)now_ms;
    assert_int_equal(slack_ms, 1000);
    assert_int_equal(step_s, 5);
    assert_int_equal(max_s, QRL_MAX_POLL_INTERVAL_S);
    polls_asked++;
    poll_exempt_seen += exempt;
    *interval_s = polls_asked == 2 ? 10 : 5;
    return polls_asked == 2 ? QRL_ERR_SLOW_DOWN : QRL_OK;
}

static void test_interval_rules_kept_by_a_shared_store(void **state)
{
    fx *f = *state;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_config cfg;
    qrl_core *core;

    real_m = f->st->m;
    counting_m = *real_m;
    counting_m.lr_poll = shared_lr_poll;
    counting_m.lr_stamp = NULL; /* as a shared backend: no per-node cache */
    f->st->m = &counting_m;
    polls_asked = poll_exempt_seen = 0;
    qrl_config_defaults(&cfg);
    assert_int_equal(qrl_core_new(&cfg, f->st, &core), QRL_OK);
    assert_int_equal(qrl_device_authorize(core, "tv-app", NULL, "TV", "tv", "", &da), QRL_OK);
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_PENDING);
    /* The store says the previous poll (answered by any node) was too recent. */
    assert_int_equal(qrl_token_device_code(core, "tv-app", da.device_code, 0, 0, "", &res),
                     QRL_ERR_SLOW_DOWN);
    assert_int_equal(res.interval_s, 10);
    /* A held wait for at least the interval is exempt, and the store is told so. */
    assert_int_equal(
        qrl_token_device_code(core, "tv-app", da.device_code, QRL_POLL_WAIT | QRL_POLL_FINAL, 30,
                              "", &res),
        QRL_ERR_PENDING);
    assert_int_equal(polls_asked, 3);
    assert_int_equal(poll_exempt_seen, 1);
    qrl_core_free(core);
    f->st->m = real_m;
}

/* The sweep forgets what memory held about old requests and deletes rows expired for a day:
 * afterwards their codes are simply unknown. */
static void test_sweep(void **state)
{
    fx *f = *state;
    qrl_device_auth old, fresh;
    qrl_poll_result res;

    start(f, &old);
    assert_int_equal(poll(f, &old, 0, &res), QRL_ERR_PENDING); /* learned, then polled */
    qrl_core_clock_advance(f->core, 25LL * 3600 * 1000);
    start(f, &fresh);
    assert_int_equal(poll(f, &old, 0, &res), QRL_ERR_EXPIRED);
    assert_int_equal(qrl_core_sweep(f->core), QRL_OK);
    assert_int_equal(poll(f, &old, 0, &res), QRL_ERR_NOT_FOUND);
    /* A live request is untouched, in memory and in the store. */
    assert_int_equal(poll(f, &fresh, 0, &res), QRL_ERR_PENDING);
    assert_int_equal(res.lr_id, fresh.lr_id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_phone_and_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deny, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_auth_one_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_memory_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_decisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoked_approver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_code_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_code_guesses_in_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_authorization_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_undecided, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interval_rules_kept_by_a_shared_store, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_platform, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_name_display_safety, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_format_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signed_decisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_screen_scan_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_hands_tokens_to_waiting_screen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bound_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_polls_answered_from_memory_follow_every_change, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
