/* SPDX-License-Identifier: MIT */
/*
 * The fixture the core's unit tests share: a core over a real SQLite store in a temporary
 * directory, fast password hashes, the test clock, a change counter, two accounts (alice and
 * bob, password FX_PW) and helpers that walk a login request to its tokens. Each test gets a
 * fresh one (fx_setup / fx_teardown as cmocka's setup and teardown).
 */
#ifndef QRLOGIN_TESTS_CORE_FIXTURE_H
#define QRLOGIN_TESTS_CORE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "internal.h"
#include "qrlogin/core.h"

#define FX_PW "correct horse"
#define FX_CLIENT "tv-app"

typedef struct fx {
    char dir[64], db[96];
    qrl_store *st;
    qrl_core *core;
    int changes;
    int64_t last_change;
    qrl_auth alice, bob; /* a signed-in phone of each */
} fx;

static inline void fx_on_change(void *ud, int64_t id)
{
    fx *f = ud;

    f->changes++;
    f->last_change = id;
}

/* The fixture's configuration: defaults with fast password hashes and small failure limits. */
static inline void fx_config(fx *f, qrl_config *cfg)
{
    qrl_config_defaults(cfg);
    cfg->pwhash_ops = crypto_pwhash_OPSLIMIT_MIN; /* these tests are not about hashing cost */
    cfg->pwhash_mem = crypto_pwhash_MEMLIMIT_MIN;
    cfg->sign_in_user.count = 3;
    cfg->sign_in_addr.count = 5;
    cfg->on_change = fx_on_change;
    cfg->on_change_ud = f;
}

static inline void fx_sign_in(fx *f, const char *user, qrl_auth *auth)
{
    qrl_session s;

    assert_int_equal(qrl_session_create(f->core, user, FX_PW, "Phone", NULL, "10.0.0.5", &s),
                     QRL_OK);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "10.0.0.5", auth), QRL_OK);
}

static inline int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    qrl_config cfg;
    char err[128];

    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/qrl-unit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/t.db", f->dir);
    assert_int_equal(qrl_store_sqlite_open(f->db, &f->st, err, sizeof err), QRL_OK);
    fx_config(f, &cfg);
    assert_int_equal(qrl_core_new(&cfg, f->st, &f->core), QRL_OK);
    assert_int_equal(qrl_account_add(f->core, "alice", "Alice", FX_PW, NULL), QRL_OK);
    assert_int_equal(qrl_account_add(f->core, "bob", NULL, FX_PW, NULL), QRL_OK);
    fx_sign_in(f, "alice", &f->alice);
    fx_sign_in(f, "bob", &f->bob);
    *state = f;
    return 0;
}

static inline int fx_teardown(void **state)
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

/* A new login request of FX_CLIENT. */
static inline void fx_start(fx *f, qrl_device_auth *da)
{
    assert_int_equal(
        qrl_device_authorize(f->core, FX_CLIENT, "profile", "Living Room TV", "tv", "10.0.0.7", da),
        QRL_OK);
}

static inline qrl_err fx_poll(fx *f, const qrl_device_auth *da, qrl_poll_result *res)
{
    return qrl_token_device_code(f->core, FX_CLIENT, da->device_code, 0, 30, "10.0.0.7", res);
}

/* Scans and approves da with `phone`; leaves the request APPROVED. */
static inline void fx_approve(fx *f, const qrl_auth *phone, const qrl_device_auth *da)
{
    const qrl_proof pw = {.password = FX_PW};
    qrl_lr_view v;
    qrl_lr_rec lr;

    assert_int_equal(qrl_lr_view_claim(f->core, phone, da->scan_secret, "10.0.0.9", &v), QRL_OK);
    assert_int_equal(
        qrl_lr_approve(f->core, phone, da->scan_secret, da->user_code, &pw, "10.0.0.9", &lr),
        QRL_OK);
}

/* A whole login of a screen approved by `phone`: its tokens in *t. */
static inline void fx_login(fx *f, const qrl_auth *phone, qrl_tokens *t)
{
    qrl_device_auth da;
    qrl_poll_result res;

    fx_start(f, &da);
    fx_approve(f, phone, &da);
    qrl_core_clock_advance(f->core, 5000); /* one interval after the request was made */
    assert_int_equal(fx_poll(f, &da, &res), QRL_OK);
    *t = res.tokens;
}

#endif
