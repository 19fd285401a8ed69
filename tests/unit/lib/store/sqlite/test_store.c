/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the store interface (include/qrlogin/store.h) over the SQLite backend.
 *
 * Every test gets a fresh temporary directory with a new database (fixture_setup) and removes
 * it afterwards, so tests are independent and can run in any order. They call the backend only
 * through its method table, as the core does; a separate sqlite3 connection is used only to
 * check what the file holds (schema version, deleted rows). Besides one test per method family
 * there are two race tests (16 threads on one handle compete for one login request and exactly
 * one may win), a test of many readers during writes, and a durability test (a child killed
 * with SIGKILL right after a write returned; the parent must find the row).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "qrlogin/core.h"
#include "qrlogin/store.h"
#include "store/sqlite/test_hooks.h"
#include "tmpdir.h"

#define T0 1700000000000LL /* a plausible "now" in ms */
#define TTL 120000LL       /* login request lifetime */
#define NTHREADS 16
/* The schema version of this build (schema.c), and what undoes version 8 (the DPoP key of a
 * request, notices of blocked requests, WebAuthn challenges) and version 7 with it (notices) in a
 * test that turns a database back into an older one. */
#define SCHEMA_NOW 8
#define DROP_V8                                                                                    \
    "DROP TABLE webauthn_challenges; ALTER TABLE login_requests DROP COLUMN dpop_jkt;"            \
    "ALTER TABLE notices DROP COLUMN kind; ALTER TABLE notices DROP COLUMN reason;"               \
    "ALTER TABLE notices DROP COLUMN screen_name; ALTER TABLE notices DROP COLUMN screen_kind;"   \
    "ALTER TABLE notices DROP COLUMN screen_address;"
#define DROP_V7 DROP_V8 "DROP TABLE notice_acks; DROP TABLE notices;"

typedef struct fixture {
    char dir[64];
    char path[128];
    qrl_store *st;
} fixture;

/* --- fixture ------------------------------------------------------------------------------ */

static int fixture_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[256];

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/qrl_test_store_XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    if (qrl_store_sqlite_open(f->path, &f->st, err, sizeof err) != QRL_OK) {
        fprintf(stderr, "open: %s\n", err);
        remove_dir(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    fixture *f = *state;

    if (f->st != NULL)
        f->st->m->close(f->st);
    remove_dir(f->dir);
    free(f);
    return 0;
}

/* Reopens the fixture's store (closing every connection in between). */
static void reopen(fixture *f)
{
    char err[256] = "";

    f->st->m->close(f->st);
    f->st = NULL;
    assert_int_equal(qrl_store_sqlite_open(f->path, &f->st, err, sizeof err), QRL_OK);
}

/* One integer from a query on a separate connection: what is really in the file. */
static int64_t db_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -1;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void db_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* --- record builders ---------------------------------------------------------------------- */

static qrl_hash hash_of(unsigned seed)
{
    qrl_hash h;

    for (size_t i = 0; i < sizeof h.b; i++)
        h.b[i] = (unsigned char)(seed * 31u + i * 7u + (seed >> 8));
    return h;
}

static int64_t add_account(qrl_store *st, const char *name, int disabled)
{
    qrl_account_rec a;

    memset(&a, 0, sizeof a);
    snprintf(a.username, sizeof a.username, "%s", name);
    snprintf(a.display_name, sizeof a.display_name, "User %s", name);
    snprintf(a.pw_hash, sizeof a.pw_hash, "$argon2id$v=19$m=65536,t=2,p=1$fake");
    a.created_ms = T0;
    a.disabled = disabled;
    assert_int_equal(st->m->account_create(st, &a), QRL_OK);
    assert_true(a.id > 0);
    return a.id;
}

static qrl_token_rec make_token(unsigned seed, qrl_token_kind kind, int64_t created,
                                int64_t expires)
{
    qrl_token_rec t;

    memset(&t, 0, sizeof t);
    t.hash = hash_of(seed);
    t.kind = kind;
    t.created_ms = created;
    t.expires_ms = expires;
    snprintf(t.client_id, sizeof t.client_id, "tv-app");
    snprintf(t.scope, sizeof t.scope, "openid profile");
    return t;
}

static qrl_device_rec make_device(int64_t account_id, const char *name, int64_t created)
{
    qrl_device_rec d;

    memset(&d, 0, sizeof d);
    d.account_id = account_id;
    snprintf(d.name, sizeof d.name, "%s", name);
    snprintf(d.kind, sizeof d.kind, "phone");
    snprintf(d.address, sizeof d.address, "192.0.2.10");
    d.created_ms = created;
    return d;
}

static int64_t add_device(qrl_store *st, int64_t account_id, const char *name, int64_t created)
{
    qrl_device_rec d = make_device(account_id, name, created);

    assert_int_equal(st->m->device_create(st, &d, NULL, 0), QRL_OK);
    assert_true(d.id > 0);
    return d.id;
}

static qrl_lr_rec make_lr(unsigned seed, const char *user_code, int64_t created)
{
    qrl_lr_rec lr;

    memset(&lr, 0, sizeof lr);
    lr.id = 1000 + (int64_t)seed; /* the caller chooses ids (store.h: lr_create) */
    lr.device_code_hash = hash_of(seed * 2 + 1000);
    lr.scan_hash = hash_of(seed * 2 + 1001);
    snprintf(lr.user_code, sizeof lr.user_code, "%s", user_code);
    snprintf(lr.client_id, sizeof lr.client_id, "tv-app");
    snprintf(lr.scope, sizeof lr.scope, "openid");
    snprintf(lr.device_name, sizeof lr.device_name, "Living Room TV");
    snprintf(lr.device_kind, sizeof lr.device_kind, "tv");
    snprintf(lr.device_platform, sizeof lr.device_platform, "Samsung Tizen");
    snprintf(lr.address, sizeof lr.address, "198.51.100.7");
    lr.created_ms = created;
    lr.updated_ms = created;
    lr.expires_ms = created + TTL;
    lr.interval_s = 5;
    lr.state = QRL_LR_PENDING;
    return lr;
}

static int64_t add_lr(qrl_store *st, unsigned seed, const char *user_code, int64_t created)
{
    qrl_lr_rec lr = make_lr(seed, user_code, created);

    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    assert_true(lr.id > 0);
    return lr.id;
}

static qrl_err move(qrl_store *st, int64_t id, unsigned from_mask, qrl_lr_state to, int64_t now)
{
    qrl_lr_cas cas = {.id = id, .from_mask = from_mask, .to = to, .now_ms = now};

    return st->m->lr_transition(st, &cas);
}

/* A request taken to APPROVED by phone `phone` of account `acct`. */
static int64_t add_approved_lr(qrl_store *st, unsigned seed, const char *code, int64_t acct,
                               int64_t phone)
{
    int64_t id = add_lr(st, seed, code, T0);
    qrl_lr_cas scan = {.id = id,
                       .from_mask = QRL_LR_BIT(QRL_LR_PENDING),
                       .to = QRL_LR_SCANNED,
                       .now_ms = T0 + 1000,
                       .set_claimed_device_id = phone};
    qrl_lr_cas approve = {.id = id,
                          .from_mask = QRL_LR_BIT(QRL_LR_SCANNED),
                          .to = QRL_LR_APPROVED,
                          .now_ms = T0 + 2000,
                          .require_claimed_by = phone,
                          .set_account_id = acct,
                          .set_approving_device_id = phone};

    assert_int_equal(st->m->lr_transition(st, &scan), QRL_OK);
    assert_int_equal(st->m->lr_transition(st, &approve), QRL_OK);
    return id;
}

/* --- open, schema ------------------------------------------------------------------------- */

static void test_open_migrate_reopen(void **state)
{
    fixture *f = *state;
    qrl_account_rec a;

    assert_int_equal(f->st->m->version, QRL_STORE_VERSION);
    assert_string_equal(f->st->m->name, "sqlite");
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), SCHEMA_NOW);
    add_account(f->st, "alice", 0);

    reopen(f);
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), SCHEMA_NOW);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                                     " AND name IN ('accounts', 'devices', 'tokens',"
                                     " 'login_requests', 'rate_limits')"),
                     5);
    assert_int_equal(f->st->m->account_by_name(f->st, "alice", &a), QRL_OK);
    assert_string_equal(a.display_name, "User alice");
    /* WAL is persistent in the file header: a fresh connection sees it. */
    assert_int_equal(db_int(f->path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
}

static void test_open_errors(void **state)
{
    fixture *f = *state;
    char path[192];
    char err[256];
    qrl_store *st = NULL;
    FILE *fp;

    err[0] = 'x';
    snprintf(path, sizeof path, "%s/no/such/dir/x.db", f->dir);
    assert_int_equal(qrl_store_sqlite_open(path, &st, err, sizeof err), QRL_ERR_STORE);
    assert_null(st);
    assert_true(strlen(err) > 0);

    assert_int_equal(qrl_store_sqlite_open(":memory:", &st, err, sizeof err), QRL_ERR_INVALID);
    assert_int_equal(qrl_store_sqlite_open("", &st, NULL, 0), QRL_ERR_INVALID);
    assert_int_equal(qrl_store_sqlite_open(NULL, &st, NULL, 0), QRL_ERR_INVALID);

    /* A file that is not a database. */
    snprintf(path, sizeof path, "%s/garbage.db", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 200; i++)
        fputs("this is not an SQLite database file\n", fp);
    fclose(fp);
    err[0] = '\0';
    assert_int_equal(qrl_store_sqlite_open(path, &st, err, sizeof err), QRL_ERR_STORE);
    assert_null(st);
    assert_true(strlen(err) > 0);

    /* A schema newer than this program must not be touched. */
    f->st->m->close(f->st);
    f->st = NULL;
    db_exec(f->path, "PRAGMA user_version = 99");
    err[0] = '\0';
    assert_int_equal(qrl_store_sqlite_open(f->path, &st, err, sizeof err), QRL_ERR_STORE);
    assert_null(st);
    assert_non_null(strstr(err, "99"));
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), 99);

    /* close accepts NULL */
    f->st = st;
}

/* --- accounts ----------------------------------------------------------------------------- */

static void test_accounts(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    qrl_account_rec a, b;
    int64_t id = add_account(st, "alice", 0);
    char pw[QRL_PWHASH_MAX + 2];

    memset(&b, 0, sizeof b);
    snprintf(b.username, sizeof b.username, "alice");
    assert_int_equal(st->m->account_create(st, &b), QRL_ERR_EXISTS);
    snprintf(b.username, sizeof b.username, "Alice"); /* case-sensitive: a different name */
    assert_int_equal(st->m->account_create(st, &b), QRL_OK);
    assert_true(b.id != id);

    assert_int_equal(st->m->account_get(st, id, &a), QRL_OK);
    assert_int_equal(a.id, id);
    assert_string_equal(a.username, "alice");
    assert_string_equal(a.display_name, "User alice");
    assert_string_equal(a.pw_hash, "$argon2id$v=19$m=65536,t=2,p=1$fake");
    assert_int_equal(a.created_ms, T0);
    assert_int_equal(a.disabled, 0);
    assert_int_equal(st->m->account_get(st, id + 100, &a), QRL_ERR_NOT_FOUND);

    assert_int_equal(st->m->account_by_name(st, "Alice", &a), QRL_OK);
    assert_int_equal(a.id, b.id);
    assert_int_equal(st->m->account_by_name(st, "ALICE", &a), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->account_by_name(st, "alic", &a), QRL_ERR_NOT_FOUND);

    assert_int_equal(st->m->account_set_password(st, id, "$argon2id$new"), QRL_OK);
    assert_int_equal(st->m->account_get(st, id, &a), QRL_OK);
    assert_string_equal(a.pw_hash, "$argon2id$new");
    assert_int_equal(st->m->account_set_password(st, id + 100, "$argon2id$new"), QRL_ERR_NOT_FOUND);

    /* Over-long strings are refused, never truncated. */
    memset(pw, 'p', sizeof pw - 1);
    pw[sizeof pw - 1] = '\0';
    assert_int_equal(st->m->account_set_password(st, id, pw), QRL_ERR_INVALID);
    memset(b.username, 'u', sizeof b.username); /* no NUL inside the array */
    assert_int_equal(st->m->account_create(st, &b), QRL_ERR_INVALID);
    assert_int_equal(st->m->account_by_name(st, pw, &a), QRL_ERR_INVALID);

    /* The longest legal name round-trips. */
    memset(&b, 0, sizeof b);
    memset(b.username, 'n', QRL_MAX_USERNAME);
    memset(b.display_name, 'd', QRL_MAX_DISPLAY_NAME);
    memset(b.pw_hash, 'h', QRL_PWHASH_MAX);
    b.disabled = 1;
    assert_int_equal(st->m->account_create(st, &b), QRL_OK);
    assert_int_equal(st->m->account_by_name(st, b.username, &a), QRL_OK);
    assert_int_equal(strlen(a.username), QRL_MAX_USERNAME);
    assert_int_equal(strlen(a.display_name), QRL_MAX_DISPLAY_NAME);
    assert_int_equal(strlen(a.pw_hash), QRL_PWHASH_MAX);
    assert_int_equal(a.disabled, 1);
}

/* --- devices ------------------------------------------------------------------------------ */

static void test_device_create_list(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    int64_t other = add_account(st, "bob", 0);
    qrl_device_rec d = make_device(acct, "Pixel", T0);
    qrl_token_rec tok[2] = {make_token(1, QRL_TOKEN_SESSION, T0, T0 + 1000000),
                            make_token(2, QRL_TOKEN_ACCESS, T0, T0 + 1000000)};
    qrl_device_rec list[8], got;
    qrl_token_rec t;
    int64_t ids[5];
    size_t n = 99;

    d.last_seen_ms = 5;
    d.revoked_ms = 7; /* ignored on create */
    assert_int_equal(st->m->device_create(st, &d, tok, 2), QRL_OK);
    assert_true(d.id > 0);
    assert_int_equal(d.last_seen_ms, T0);
    assert_int_equal(d.revoked_ms, 0);
    assert_int_equal(tok[0].device_id, d.id);
    assert_int_equal(tok[1].device_id, d.id);
    assert_int_equal(st->m->token_lookup(st, &tok[1].hash, &t), QRL_OK);
    assert_int_equal(t.device_id, d.id);
    assert_int_equal(t.kind, QRL_TOKEN_ACCESS);

    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.account_id, acct);
    assert_string_equal(got.name, "Pixel");
    assert_string_equal(got.kind, "phone");
    assert_string_equal(got.address, "192.0.2.10");
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.last_seen_ms, T0);
    assert_int_equal(got.revoked_ms, 0);
    assert_int_equal(st->m->device_get(st, d.id + 100, &got), QRL_ERR_NOT_FOUND);

    /* A failing token rolls the whole device back. */
    {
        qrl_device_rec d2 = make_device(acct, "Dup", T0);
        qrl_token_rec dup = make_token(1, QRL_TOKEN_SESSION, T0, T0 + 1);

        assert_int_equal(st->m->device_create(st, &d2, &dup, 1), QRL_ERR_EXISTS);
        assert_int_equal(db_int(f->path, "SELECT count(*) FROM devices WHERE name = 'Dup'"), 0);
    }

    /* Listing: oldest first, revoked excluded, max honoured, other accounts invisible. */
    ids[0] = d.id;
    ids[1] = add_device(st, acct, "Laptop", T0 + 10);
    ids[2] = add_device(st, acct, "TV", T0 + 20);
    ids[3] = add_device(st, acct, "Tablet", T0 + 30);
    ids[4] = add_device(st, other, "Bob's phone", T0 + 5);
    assert_int_equal(st->m->device_revoke(st, acct, ids[2], T0 + 40), QRL_OK);

    assert_int_equal(st->m->device_list(st, acct, list, 8, &n), QRL_OK);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].id, ids[0]);
    assert_int_equal(list[1].id, ids[1]);
    assert_int_equal(list[2].id, ids[3]);
    assert_string_equal(list[2].name, "Tablet");
    assert_int_equal(st->m->device_list(st, acct, list, 2, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[1].id, ids[1]);
    assert_int_equal(st->m->device_list(st, acct, NULL, 0, &n), QRL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(st->m->device_list(st, other, list, 8, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, ids[4]);
    assert_int_equal(st->m->device_list(st, acct + 100, list, 8, &n), QRL_OK);
    assert_int_equal(n, 0);

    /* Invalid input. */
    memset(d.name, 'x', sizeof d.name);
    assert_int_equal(st->m->device_create(st, &d, NULL, 0), QRL_ERR_INVALID);
    d = make_device(acct, "ok", T0);
    tok[0].kind = (qrl_token_kind)9;
    assert_int_equal(st->m->device_create(st, &d, tok, 1), QRL_ERR_INVALID);
}

static void test_device_touch(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    int64_t id = add_device(st, acct, "Pixel", T0);
    qrl_device_rec d;
    char addr[QRL_MAX_ADDRESS + 2];

    assert_int_equal(st->m->device_touch(st, id, T0 + 500, "2001:db8::1"), QRL_OK);
    assert_int_equal(st->m->device_get(st, id, &d), QRL_OK);
    assert_int_equal(d.last_seen_ms, T0 + 500);
    assert_string_equal(d.address, "2001:db8::1");

    assert_int_equal(st->m->device_touch(st, id, T0 + 900, NULL), QRL_OK);
    assert_int_equal(st->m->device_get(st, id, &d), QRL_OK);
    assert_int_equal(d.last_seen_ms, T0 + 900);
    assert_string_equal(d.address, "2001:db8::1");

    memset(addr, '1', sizeof addr - 1);
    addr[sizeof addr - 1] = '\0';
    assert_int_equal(st->m->device_touch(st, id, T0 + 950, addr), QRL_ERR_INVALID);

    assert_int_equal(st->m->device_touch(st, id + 100, T0 + 1000, NULL), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_revoke(st, acct, id, T0 + 1000), QRL_OK);
    assert_int_equal(st->m->device_touch(st, id, T0 + 2000, NULL), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_get(st, id, &d), QRL_OK);
    assert_int_equal(d.last_seen_ms, T0 + 900);

    /* A touch does not weaken the durability of the next write on the same connection. */
    add_account(st, "after-touch", 0);
    reopen(f);
    assert_int_equal(f->st->m->device_get(f->st, id, &d), QRL_OK);
    assert_int_equal(d.last_seen_ms, T0 + 900);
}

static void test_device_revoke(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    int64_t other = add_account(st, "bob", 0);
    qrl_device_rec d = make_device(acct, "Pixel", T0);
    qrl_token_rec tok[3] = {make_token(1, QRL_TOKEN_SESSION, T0, T0 + 1000000),
                            make_token(2, QRL_TOKEN_ACCESS, T0, T0 + 1000000),
                            make_token(3, QRL_TOKEN_REFRESH, T0, T0 + 1000000)};
    int64_t keep = add_device(st, acct, "Other", T0);
    qrl_token_rec t, kt = make_token(4, QRL_TOKEN_ACCESS, T0, T0 + 1000000);
    qrl_device_rec got;

    tok[2].revoked_ms = T0 + 5; /* revoked on its own before */
    assert_int_equal(st->m->device_create(st, &d, tok, 3), QRL_OK);
    kt.device_id = keep;
    assert_int_equal(st->m->token_insert(st, &kt), QRL_OK);

    assert_int_equal(st->m->device_revoke(st, other, d.id, T0 + 100), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_revoke(st, acct, d.id + 100, T0 + 100), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, 0);

    assert_int_equal(st->m->device_revoke(st, acct, d.id, T0 + 100), QRL_OK);
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, T0 + 100);
    assert_int_equal(st->m->token_lookup(st, &tok[0].hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, T0 + 100);
    assert_int_equal(t.device_revoked, 1);
    assert_int_equal(st->m->token_lookup(st, &tok[1].hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, T0 + 100);
    assert_int_equal(st->m->token_lookup(st, &tok[2].hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, T0 + 5); /* its own earlier revocation stays */
    /* Other devices are untouched. */
    assert_int_equal(st->m->token_lookup(st, &kt.hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, 0);
    assert_int_equal(t.device_revoked, 0);

    /* Idempotent: a second revocation changes nothing. */
    assert_int_equal(st->m->device_revoke(st, acct, d.id, T0 + 999), QRL_OK);
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, T0 + 100);
    assert_int_equal(st->m->token_lookup(st, &tok[0].hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, T0 + 100);
    /* ... and another account still cannot see it. */
    assert_int_equal(st->m->device_revoke(st, other, d.id, T0 + 999), QRL_ERR_NOT_FOUND);
}

/* --- tokens ------------------------------------------------------------------------------- */

static void test_token_insert_lookup_revoke(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    int64_t off = add_account(st, "mallory", 1);
    int64_t dev = add_device(st, acct, "Pixel", T0);
    int64_t offdev = add_device(st, off, "Old", T0);
    qrl_token_rec t = make_token(7, QRL_TOKEN_REFRESH, T0, T0 + 5000), got;
    qrl_hash unknown = hash_of(999);

    t.device_id = dev;
    t.used_ms = 0;
    assert_int_equal(st->m->token_insert(st, &t), QRL_OK);
    assert_int_equal(st->m->token_insert(st, &t), QRL_ERR_EXISTS);

    memset(&got, 0xff, sizeof got);
    assert_int_equal(st->m->token_lookup(st, &t.hash, &got), QRL_OK);
    assert_memory_equal(got.hash.b, t.hash.b, QRL_HASH_BYTES);
    assert_int_equal(got.kind, QRL_TOKEN_REFRESH);
    assert_int_equal(got.device_id, dev);
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.expires_ms, T0 + 5000);
    assert_int_equal(got.used_ms, 0);
    assert_int_equal(got.revoked_ms, 0);
    assert_string_equal(got.client_id, "tv-app");
    assert_string_equal(got.scope, "openid profile");
    assert_int_equal(got.account_id, acct);
    assert_int_equal(got.device_revoked, 0);
    assert_int_equal(got.account_disabled, 0);

    /* The join reports a disabled account. */
    t = make_token(8, QRL_TOKEN_ACCESS, T0, T0 + 5000);
    t.device_id = offdev;
    assert_int_equal(st->m->token_insert(st, &t), QRL_OK);
    assert_int_equal(st->m->token_lookup(st, &t.hash, &got), QRL_OK);
    assert_int_equal(got.account_id, off);
    assert_int_equal(got.account_disabled, 1);
    assert_int_equal(got.device_revoked, 0);

    assert_int_equal(st->m->token_lookup(st, &unknown, &got), QRL_ERR_NOT_FOUND);

    /* Revocation of one token; the second call keeps the first time. */
    assert_int_equal(st->m->token_revoke(st, &t.hash, T0 + 10), QRL_OK);
    assert_int_equal(st->m->token_revoke(st, &t.hash, T0 + 20), QRL_OK);
    assert_int_equal(st->m->token_lookup(st, &t.hash, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, T0 + 10);
    assert_int_equal(st->m->token_revoke(st, &unknown, T0 + 20), QRL_ERR_NOT_FOUND);

    /* Invalid input: unknown kind, over-long scope, token for a device that does not exist. */
    t = make_token(9, (qrl_token_kind)0, T0, T0 + 1);
    t.device_id = dev;
    assert_int_equal(st->m->token_insert(st, &t), QRL_ERR_INVALID);
    t.kind = QRL_TOKEN_ACCESS;
    memset(t.scope, 's', sizeof t.scope);
    assert_int_equal(st->m->token_insert(st, &t), QRL_ERR_INVALID);
    t = make_token(9, QRL_TOKEN_ACCESS, T0, T0 + 1);
    t.device_id = dev + 1000;
    assert_int_equal(st->m->token_insert(st, &t), QRL_ERR_STORE); /* foreign key */
    assert_int_equal(st->m->token_lookup(st, &t.hash, &got), QRL_ERR_NOT_FOUND);
}

/* token_auth reads what token_lookup, account_get and device_get read, in one lookup. */
static void test_token_auth(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    int64_t dev = add_device(st, acct, "Pixel", T0);
    unsigned char pk[QRL_PUBKEY_BYTES];
    qrl_token_rec t = make_token(7, QRL_TOKEN_SESSION, T0, T0 + 5000), tok, tok2;
    qrl_account_rec a, a2;
    qrl_device_rec d, d2;
    qrl_hash unknown = hash_of(999);

    memset(pk, 0x5a, sizeof pk);
    assert_int_equal(st->m->device_set_pubkey(st, acct, dev, pk), QRL_OK);
    t.device_id = dev;
    assert_int_equal(st->m->token_insert(st, &t), QRL_OK);
    assert_true(st->m->version >= 4);
    assert_non_null(st->m->token_auth);

    assert_int_equal(st->m->token_auth(st, &t.hash, &tok, &a, &d), QRL_OK);
    assert_int_equal(st->m->token_lookup(st, &t.hash, &tok2), QRL_OK);
    assert_int_equal(st->m->account_get(st, acct, &a2), QRL_OK);
    assert_int_equal(st->m->device_get(st, dev, &d2), QRL_OK);
    assert_memory_equal(&tok, &tok2, sizeof tok);
    assert_memory_equal(&a, &a2, sizeof a);
    assert_memory_equal(&d, &d2, sizeof d);
    assert_string_equal(a.username, "alice");
    assert_string_equal(d.name, "Pixel");
    assert_true(d.has_pubkey);
    assert_memory_equal(d.pubkey, pk, sizeof pk);

    /* Revocation shows, as in token_lookup. */
    assert_int_equal(st->m->device_revoke(st, acct, dev, T0 + 1), QRL_OK);
    assert_int_equal(st->m->token_auth(st, &t.hash, &tok, &a, &d), QRL_OK);
    assert_int_equal(tok.device_revoked, 1);
    assert_int_equal(d.revoked_ms, T0 + 1);

    assert_int_equal(st->m->token_auth(st, &unknown, &tok, &a, &d), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->token_auth(st, NULL, &tok, &a, &d), QRL_ERR_INVALID);
}

/* An account record for the blocking tests. */
static void fiona(qrl_account_rec *acc)
{
    memset(acc, 0, sizeof *acc);
    snprintf(acc->username, sizeof acc->username, "fiona");
    snprintf(acc->display_name, sizeof acc->display_name, "Fiona");
    snprintf(acc->pw_hash, sizeof acc->pw_hash, "$argon2id$v=19$m=8,t=1,p=1$x$y");
    acc->created_ms = T0;
}

/* A write blocks its calling thread until the batch holding it is committed (store.h): with the
 * writer held, the caller does not return; once the writer goes on it returns its own result,
 * and two callers whose writes share a batch each get theirs. */
struct blocked_write {
    qrl_store *st;
    qrl_account_rec acc;
    qrl_err rc;
    atomic_int done;
    pthread_t th;
};

static void *blocked_write_main(void *arg)
{
    struct blocked_write *w = arg;

    w->rc = w->st->m->account_create(w->st, &w->acc);
    atomic_store(&w->done, 1);
    return NULL;
}

static void wait_queued(int n)
{
    for (int i = 0; i < 5000 && qrl__sqlite_test_held_queued() < n; i++)
        usleep(1000);
    assert_true(qrl__sqlite_test_held_queued() >= n);
}

static void test_write_blocks_until_commit(void **state)
{
    fixture *f = *state;
    struct blocked_write w[2];
    qrl_account_rec got;

    memset(w, 0, sizeof w);
    for (int i = 0; i < 2; i++) {
        w[i].st = f->st;
        w[i].rc = QRL_ERR_INTERNAL;
        fiona(&w[i].acc);
    }
    qrl__sqlite_test_hold(1, 0);
    assert_int_equal(pthread_create(&w[0].th, NULL, blocked_write_main, &w[0]), 0);
    wait_queued(1);
    usleep(20000);
    assert_int_equal(atomic_load(&w[0].done), 0); /* queued, its caller blocked */
    qrl__sqlite_test_hold(0, 0);
    assert_int_equal(pthread_join(w[0].th, NULL), 0);
    assert_int_equal(w[0].rc, QRL_OK);
    assert_true(w[0].acc.id > 0);
    assert_int_equal(f->st->m->account_by_name(f->st, "fiona", &got), QRL_OK);
    assert_int_equal(got.id, w[0].acc.id);

    /* Two callers in one batch, the name now taken: each hears of its own write's error. */
    w[0].rc = QRL_ERR_INTERNAL;
    w[0].acc.id = 0;
    atomic_store(&w[0].done, 0);
    qrl__sqlite_test_hold(1, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&w[i].th, NULL, blocked_write_main, &w[i]), 0);
    wait_queued(2);
    assert_int_equal(atomic_load(&w[0].done) + atomic_load(&w[1].done), 0);
    qrl__sqlite_test_hold(0, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(w[i].th, NULL), 0);
        assert_int_equal(w[i].rc, QRL_ERR_EXISTS);
    }
}

/* --- read scopes (version 5) --- */

/* A commit made by another thread, as another request's would be. */
struct other_move {
    qrl_store *st;
    int64_t id;
    unsigned from_mask;
    qrl_lr_state to;
    qrl_err rc;
};

static void *other_move_main(void *arg)
{
    struct other_move *m = arg;
    m->rc = move(m->st, m->id, m->from_mask, m->to, T0 + 1000);
    return NULL;
}

static qrl_err move_elsewhere(qrl_store *st, int64_t id, unsigned from_mask, qrl_lr_state to)
{
    struct other_move m = {.st = st, .id = id, .from_mask = from_mask, .to = to};
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, other_move_main, &m), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    return m.rc;
}

static qrl_lr_state state_now(qrl_store *st, int64_t id)
{
    qrl_lr_rec lr;

    assert_int_equal(st->m->lr_get(st, id, &lr), QRL_OK);
    return lr.state;
}

/* The reads of a scope share the snapshot of its first read, across methods and nested scopes,
 * until the outermost scope ends or the thread writes; then reads see every commit again. */
static void test_read_scope(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t id = add_lr(st, 1, "WDJBMJHT", T0);
    int64_t id2 = add_lr(st, 2, "CDFGHJKL", T0);
    qrl_lr_rec lr;

    assert_true(st->m->version >= 5);
    assert_non_null(st->m->read_begin);
    assert_non_null(st->m->read_end);

    assert_int_equal(st->m->read_begin(st), QRL_OK);
    assert_int_equal(state_now(st, id), QRL_LR_PENDING);
    assert_int_equal(move_elsewhere(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED), QRL_OK);
    assert_int_equal(state_now(st, id), QRL_LR_PENDING); /* the scope's snapshot */
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0 + 1, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_PENDING);
    assert_int_equal(st->m->read_begin(st), QRL_OK); /* nested: the same snapshot */
    assert_int_equal(state_now(st, id), QRL_LR_PENDING);
    st->m->read_end(st);
    assert_int_equal(state_now(st, id), QRL_LR_PENDING); /* the outer scope goes on */
    st->m->read_end(st);
    assert_int_equal(state_now(st, id), QRL_LR_SCANNED);

    /* A write of this thread ends the scope for good: this thread's reads see its write and,
     * after it, other threads' commits too. */
    assert_int_equal(st->m->read_begin(st), QRL_OK);
    assert_int_equal(state_now(st, id2), QRL_LR_PENDING);
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_DENIED, T0 + 2000), QRL_OK);
    assert_int_equal(state_now(st, id), QRL_LR_DENIED);
    assert_int_equal(move_elsewhere(st, id2, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED), QRL_OK);
    assert_int_equal(state_now(st, id2), QRL_LR_SCANNED);
    st->m->read_end(st);
    st->m->read_end(st); /* without a scope: nothing */
    assert_int_equal(state_now(st, id2), QRL_LR_SCANNED);

    assert_int_equal(st->m->read_begin(NULL), QRL_ERR_INVALID);
    st->m->read_end(NULL);
}

/* A scope belongs to the thread that began it: a thread with no scope sees other threads'
 * commits at once while another thread's scope keeps its snapshot, until that thread writes. */
struct scoped_thread {
    qrl_store *st;
    int64_t id;
    qrl_account_rec acc;
    qrl_lr_state before, during, after;
    qrl_err rc;
    sem_t read, moved;
};

static void *scoped_thread_main(void *arg)
{
    struct scoped_thread *t = arg;

    t->st->m->read_begin(t->st);
    t->before = state_now(t->st, t->id);
    sem_post(&t->read);
    sem_wait(&t->moved);
    t->during = state_now(t->st, t->id);              /* its scope's snapshot */
    t->rc = t->st->m->account_create(t->st, &t->acc); /* ends the scope */
    t->after = state_now(t->st, t->id);
    t->st->m->read_end(t->st);
    return NULL;
}

static void test_read_scope_per_thread(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    struct scoped_thread t = {.st = st, .rc = QRL_ERR_INTERNAL};
    pthread_t th;

    t.id = add_lr(st, 1, "WDJBMJHT", T0);
    fiona(&t.acc);
    sem_init(&t.read, 0, 0);
    sem_init(&t.moved, 0, 0);
    assert_int_equal(pthread_create(&th, NULL, scoped_thread_main, &t), 0);
    sem_wait(&t.read);
    assert_int_equal(move(st, t.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1000), QRL_OK);
    assert_int_equal(state_now(st, t.id), QRL_LR_SCANNED); /* this thread has no scope */
    sem_post(&t.moved);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(t.before, QRL_LR_PENDING);
    assert_int_equal(t.during, QRL_LR_PENDING);
    assert_int_equal(t.rc, QRL_OK);
    assert_int_equal(t.after, QRL_LR_SCANNED);
    sem_destroy(&t.read);
    sem_destroy(&t.moved);
}

/* --- changes made elsewhere (version 7) --- */

static atomic_int notified;
static void count_notify(void *ud, int64_t lr_id)
{
    (void)ud;
    (void)lr_id;
    atomic_fetch_add(&notified, 1);
}

/* The SQLite backend accepts the hook and never calls it: every change it sees is a caller's
 * of this process, which the core reports itself. */
static void test_set_notify(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t id;

    assert_true(st->m->version >= 7);
    assert_non_null(st->m->set_notify);
    atomic_store(&notified, 0);
    assert_int_equal(st->m->set_notify(st, count_notify, NULL), QRL_OK);
    id = add_lr(st, 1, "WDJBMJHT", T0);
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1), QRL_OK);
    assert_int_equal(move_elsewhere(st, id, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_DENIED), QRL_OK);
    assert_int_equal(atomic_load(&notified), 0);
    assert_int_equal(st->m->set_notify(st, NULL, NULL), QRL_OK);
    assert_int_equal(st->m->set_notify(NULL, count_notify, NULL), QRL_ERR_INVALID);
}

/* The core installs its hook in every store that has one: a login request the backend reports
 * reaches the core's change callback as one changed here, and the hook is removed when the
 * core is freed. A backend of another kind is stood in for by the SQLite methods with a
 * set_notify that keeps what it is given. */
static qrl_store_methods hook_m;
static struct {
    void (*fn)(void *ud, int64_t lr_id);
    void *ud;
    int calls;
} hook;

static qrl_err keep_notify(qrl_store *st, void (*fn)(void *ud, int64_t lr_id), void *ud)
{
    (void)st;
    hook.fn = fn;
    hook.ud = ud;
    hook.calls++;
    return QRL_OK;
}

static int64_t changed_id;
static void on_change(void *ud, int64_t lr_id)
{
    (void)ud;
    changed_id = lr_id;
}

static void test_core_installs_notify(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    const qrl_store_methods *real = st->m;
    qrl_config cfg;
    qrl_core *core = NULL;

    hook_m = *real;
    hook_m.set_notify = keep_notify;
    memset(&hook, 0, sizeof hook);
    st->m = &hook_m;
    qrl_config_defaults(&cfg);
    cfg.on_change = on_change;
    changed_id = 0;
    assert_int_equal(qrl_core_new(&cfg, st, &core), QRL_OK);
    assert_int_equal(hook.calls, 1);
    assert_non_null(hook.fn);
    hook.fn(hook.ud, 42); /* as another node's approval would be reported */
    assert_int_equal(changed_id, 42);
    qrl_core_free(core);
    assert_int_equal(hook.calls, 2);
    assert_null(hook.fn);
    st->m = real;
}

static void test_token_rotate(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    qrl_device_rec d = make_device(acct, "TV", T0);
    qrl_token_rec rt[2] = {make_token(1, QRL_TOKEN_ACCESS, T0, T0 + 3600000),
                           make_token(2, QRL_TOKEN_REFRESH, T0, T0 + 86400000)};
    qrl_token_rec fresh[2] = {make_token(3, QRL_TOKEN_ACCESS, T0 + 100, T0 + 3600100),
                              make_token(4, QRL_TOKEN_REFRESH, T0 + 100, T0 + 86400100)};
    qrl_token_rec again[2] = {make_token(5, QRL_TOKEN_ACCESS, T0 + 200, T0 + 3600200),
                              make_token(6, QRL_TOKEN_REFRESH, T0 + 200, T0 + 86400200)};
    qrl_token_rec old, t;
    qrl_device_rec got;
    qrl_hash unknown = hash_of(4242);

    assert_int_equal(st->m->device_create(st, &d, rt, 2), QRL_OK);

    /* Only refresh tokens rotate. */
    assert_int_equal(st->m->token_rotate(st, &rt[0].hash, T0 + 100, fresh, 2, &old),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->token_rotate(st, &unknown, T0 + 100, fresh, 2, &old),
                     QRL_ERR_NOT_FOUND);

    memset(&old, 0, sizeof old);
    assert_int_equal(st->m->token_rotate(st, &rt[1].hash, T0 + 100, fresh, 2, &old), QRL_OK);
    assert_int_equal(old.device_id, d.id);
    assert_int_equal(old.account_id, acct);
    assert_string_equal(old.client_id, "tv-app");
    assert_string_equal(old.scope, "openid profile");
    assert_int_equal(fresh[0].device_id, d.id);
    assert_int_equal(fresh[1].device_id, d.id);
    assert_int_equal(st->m->token_lookup(st, &rt[1].hash, &t), QRL_OK);
    assert_int_equal(t.used_ms, T0 + 100);
    assert_int_equal(st->m->token_lookup(st, &fresh[1].hash, &t), QRL_OK);
    assert_int_equal(t.device_id, d.id);
    assert_int_equal(t.used_ms, 0);
    assert_int_equal(t.kind, QRL_TOKEN_REFRESH);

    /* The new refresh token rotates in turn; NULL old_out is fine. */
    assert_int_equal(st->m->token_rotate(st, &fresh[1].hash, T0 + 200, again, 2, NULL), QRL_OK);

    /* Reuse of the first (rotated) token: the whole device goes, and that is committed. */
    {
        qrl_token_rec late[1] = {make_token(7, QRL_TOKEN_REFRESH, T0 + 300, T0 + 999999)};

        assert_int_equal(st->m->token_rotate(st, &rt[1].hash, T0 + 300, late, 1, &old),
                         QRL_ERR_TOKEN_REUSED);
        assert_int_equal(old.device_id, d.id);
        assert_int_equal(st->m->token_lookup(st, &late[0].hash, &t), QRL_ERR_NOT_FOUND);
    }
    reopen(f);
    st = f->st;
    assert_int_equal(st->m->device_get(st, d.id, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, T0 + 300);
    assert_int_equal(st->m->token_lookup(st, &again[1].hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, T0 + 300);
    assert_int_equal(t.device_revoked, 1);
    assert_int_equal(st->m->token_lookup(st, &fresh[0].hash, &t), QRL_OK);
    assert_int_equal(t.revoked_ms, T0 + 300);
    /* Every token of the family is now refused as revoked, nothing changes any more. */
    assert_int_equal(st->m->token_rotate(st, &again[1].hash, T0 + 400, NULL, 0, NULL),
                     QRL_ERR_REVOKED);
    assert_int_equal(st->m->token_rotate(st, &rt[1].hash, T0 + 400, NULL, 0, NULL),
                     QRL_ERR_REVOKED);
}

static void test_token_rotate_refused(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    int64_t off = add_account(st, "mallory", 1);
    int64_t dev = add_device(st, acct, "TV", T0);
    int64_t offdev = add_device(st, off, "TV", T0);
    qrl_token_rec exp = make_token(1, QRL_TOKEN_REFRESH, T0, T0 + 1000);
    qrl_token_rec rev = make_token(2, QRL_TOKEN_REFRESH, T0, T0 + 100000);
    qrl_token_rec dis = make_token(3, QRL_TOKEN_REFRESH, T0, T0 + 100000);
    qrl_token_rec fresh[1] = {make_token(10, QRL_TOKEN_REFRESH, T0, T0 + 100000)};
    qrl_token_rec t, old;
    qrl_device_rec got;

    exp.device_id = dev;
    rev.device_id = dev;
    dis.device_id = offdev;
    assert_int_equal(st->m->token_insert(st, &exp), QRL_OK);
    assert_int_equal(st->m->token_insert(st, &rev), QRL_OK);
    assert_int_equal(st->m->token_insert(st, &dis), QRL_OK);
    assert_int_equal(st->m->token_revoke(st, &rev.hash, T0 + 1), QRL_OK);

    /* expires_ms <= now is expired: the boundary itself counts. */
    assert_int_equal(st->m->token_rotate(st, &exp.hash, T0 + 1000, fresh, 1, &old),
                     QRL_ERR_EXPIRED);
    assert_int_equal(old.expires_ms, T0 + 1000);
    assert_int_equal(st->m->token_lookup(st, &exp.hash, &t), QRL_OK);
    assert_int_equal(t.used_ms, 0);
    assert_int_equal(st->m->token_lookup(st, &fresh[0].hash, &t), QRL_ERR_NOT_FOUND);

    assert_int_equal(st->m->token_rotate(st, &rev.hash, T0 + 10, fresh, 1, NULL), QRL_ERR_REVOKED);
    assert_int_equal(st->m->token_rotate(st, &dis.hash, T0 + 10, fresh, 1, NULL), QRL_ERR_REVOKED);
    assert_int_equal(st->m->token_lookup(st, &dis.hash, &t), QRL_OK);
    assert_int_equal(t.used_ms, 0);

    /* An expired, already used token is just expired: no revocation. */
    assert_int_equal(st->m->token_rotate(st, &exp.hash, T0 + 999, fresh, 1, NULL), QRL_OK);
    assert_int_equal(st->m->token_rotate(st, &exp.hash, T0 + 5000, NULL, 0, NULL), QRL_ERR_EXPIRED);
    assert_int_equal(st->m->device_get(st, dev, &got), QRL_OK);
    assert_int_equal(got.revoked_ms, 0);

    /* A clash of a new token's hash rolls the rotation back. */
    {
        qrl_token_rec r = make_token(20, QRL_TOKEN_REFRESH, T0, T0 + 100000);
        qrl_token_rec clash[2] = {make_token(21, QRL_TOKEN_ACCESS, T0, T0 + 1),
                                  make_token(10, QRL_TOKEN_REFRESH, T0, T0 + 1)};

        r.device_id = dev;
        assert_int_equal(st->m->token_insert(st, &r), QRL_OK);
        assert_int_equal(st->m->token_rotate(st, &r.hash, T0 + 10, clash, 2, NULL), QRL_ERR_EXISTS);
        assert_int_equal(st->m->token_lookup(st, &r.hash, &t), QRL_OK);
        assert_int_equal(t.used_ms, 0);
        assert_int_equal(st->m->token_lookup(st, &clash[0].hash, &t), QRL_ERR_NOT_FOUND);
    }
}

/* --- login requests ----------------------------------------------------------------------- */

static void test_lr_create(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    qrl_lr_rec lr = make_lr(1, "WDJBMJHT", T0), b, got;
    int64_t first;

    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    first = lr.id;
    assert_true(first > 0);
    assert_int_equal(st->m->lr_get(st, first, &got), QRL_OK);
    assert_int_equal(got.id, first);
    assert_memory_equal(got.device_code_hash.b, lr.device_code_hash.b, QRL_HASH_BYTES);
    assert_memory_equal(got.scan_hash.b, lr.scan_hash.b, QRL_HASH_BYTES);
    assert_string_equal(got.user_code, "WDJBMJHT");
    assert_string_equal(got.client_id, "tv-app");
    assert_string_equal(got.scope, "openid");
    assert_string_equal(got.device_name, "Living Room TV");
    assert_string_equal(got.device_kind, "tv");
    assert_string_equal(got.device_platform, "Samsung Tizen");
    assert_string_equal(got.address, "198.51.100.7");
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.expires_ms, T0 + TTL);
    assert_int_equal(got.interval_s, 5);
    assert_int_equal(got.state, QRL_LR_PENDING);
    assert_int_equal(got.updated_ms, T0);
    assert_int_equal(got.claimed_device_id, 0);
    assert_int_equal(got.account_id, 0);
    assert_int_equal(got.approving_device_id, 0);
    assert_int_equal(got.redeemed_device_id, 0);
    assert_int_equal(st->m->lr_get(st, first + 100, &got), QRL_ERR_NOT_FOUND);

    /* Same user code while the first is alive: taken. */
    b = make_lr(2, "WDJBMJHT", T0 + TTL - 1);
    assert_int_equal(st->m->lr_create(st, &b), QRL_ERR_EXISTS);
    /* Same id: taken, and the first is unchanged. */
    b = make_lr(3, "BCDFGHJK", T0);
    b.id = first;
    assert_int_equal(st->m->lr_create(st, &b), QRL_ERR_EXISTS);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM login_requests"), 1);
    assert_int_equal(st->m->lr_get(st, first, &got), QRL_OK);
    assert_string_equal(got.user_code, "WDJBMJHT");
    /* No id: refused. */
    b = make_lr(3, "BCDFGHJK", T0);
    b.id = 0;
    assert_int_equal(st->m->lr_create(st, &b), QRL_ERR_INVALID);

    /* Once the first has expired (expires_ms <= created_ms of the new one) the code is free,
     * even though the first still says PENDING. */
    b = make_lr(4, "WDJBMJHT", T0 + TTL);
    assert_int_equal(st->m->lr_create(st, &b), QRL_OK);
    assert_true(b.id > first);

    /* A decided request does not hold its code either. */
    lr = make_lr(5, "ZZZZZZZZ", T0);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    assert_int_equal(move(st, lr.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 10), QRL_OK);
    b = make_lr(6, "ZZZZZZZZ", T0 + 20);
    assert_int_equal(st->m->lr_create(st, &b), QRL_OK);
    /* ... but a SCANNED or APPROVED one does. */
    assert_int_equal(move(st, b.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 30), QRL_OK);
    lr = make_lr(7, "ZZZZZZZZ", T0 + 40);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_EXISTS);
    assert_int_equal(move(st, b.id, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_APPROVED, T0 + 50), QRL_OK);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_EXISTS);

    /* Invalid input. */
    lr = make_lr(8, "QQQQQQQQ", T0);
    lr.state = QRL_LR_SCANNED;
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_INVALID);
    lr = make_lr(8, "QQQQQQQQ", T0);
    memset(lr.user_code, 'Q', sizeof lr.user_code);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_INVALID);
    lr = make_lr(8, "QQQQQQQQ", T0);
    memset(lr.device_name, 'n', sizeof lr.device_name);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_INVALID);
    lr = make_lr(8, "QQQQQQQQ", T0);
    memset(lr.device_platform, 'p', sizeof lr.device_platform);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_INVALID);

    /* The platform at its limit, and none at all, come back as they went in. */
    lr = make_lr(9, "RRRRRRRR", T0);
    memset(lr.device_platform, 'p', QRL_MAX_DEVICE_PLATFORM);
    lr.device_platform[QRL_MAX_DEVICE_PLATFORM] = '\0';
    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    assert_int_equal(st->m->lr_get(st, lr.id, &got), QRL_OK);
    assert_string_equal(got.device_platform, lr.device_platform);
    lr = make_lr(10, "SSSSSSSS", T0);
    lr.device_platform[0] = '\0';
    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    assert_int_equal(st->m->lr_get(st, lr.id, &got), QRL_OK);
    assert_string_equal(got.device_platform, "");
}

static void test_lr_find(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    qrl_lr_rec lr = make_lr(1, "WDJBMJHT", T0), got;
    qrl_lr_secret_key dc, scan, bad;
    int64_t newer;

    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    dc = (qrl_lr_secret_key){.id = lr.id, .hash = lr.device_code_hash};
    scan = (qrl_lr_secret_key){.id = lr.id, .hash = lr.scan_hash};

    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &dc, T0, &got), QRL_OK);
    assert_int_equal(got.id, lr.id);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_SCAN, &scan, T0, &got), QRL_OK);
    assert_int_equal(got.id, lr.id);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0, &got), QRL_OK);
    assert_int_equal(got.id, lr.id);
    assert_string_equal(got.device_name, "Living Room TV");

    /* The two hashes are different keys; the right id with a wrong hash is no match, nor the
     * right hash under another id. */
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_SCAN, &dc, T0, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &scan, T0, &got),
                     QRL_ERR_NOT_FOUND);
    bad = dc;
    bad.hash.b[QRL_HASH_BYTES - 1] ^= 1;
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &bad, T0, &got), QRL_ERR_NOT_FOUND);
    bad = dc;
    bad.id = lr.id + 1;
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &bad, T0, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHX", T0, &got),
                     QRL_ERR_NOT_FOUND);

    /* The user code matches only before expiry; the hashes match whatever the expiry. */
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0 + TTL - 1, &got),
                     QRL_OK);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0 + TTL, &got),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &dc, T0 + 10 * TTL, &got), QRL_OK);
    assert_int_equal(got.id, lr.id);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_SCAN, &scan, T0 + 10 * TTL, &got), QRL_OK);

    /* Several alive with the same code (the older one decided): the newest wins. */
    assert_int_equal(move(st, lr.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 5), QRL_OK);
    newer = add_lr(st, 2, "WDJBMJHT", T0 + 10);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0 + 20, &got), QRL_OK);
    assert_int_equal(got.id, newer);
    /* After the older one's expiry only the newer matches, until it expires too. */
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0 + TTL + 5, &got),
                     QRL_OK);
    assert_int_equal(got.id, newer);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0 + TTL + 10, &got),
                     QRL_ERR_NOT_FOUND);

    assert_int_equal(st->m->lr_find(st, (qrl_lr_key)0, "WDJBMJHT", T0, &got), QRL_ERR_INVALID);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHTW", T0, &got),
                     QRL_ERR_INVALID);
}

static void test_lr_transition(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t id = add_lr(st, 1, "WDJBMJHT", T0);
    qrl_lr_rec got;
    qrl_lr_cas cas;

    /* Wrong state in the mask. */
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_APPROVED, T0 + 1),
                     QRL_ERR_CONFLICT);
    /* Unknown id. */
    assert_int_equal(move(st, id + 100, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1),
                     QRL_ERR_CONFLICT);
    /* Not yet expired: cannot move to EXPIRED. */
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_EXPIRED, T0 + TTL - 1),
                     QRL_ERR_CONFLICT);
    /* Expired (expires_ms <= now): cannot move anywhere but EXPIRED. */
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + TTL),
                     QRL_ERR_CONFLICT);

    /* Scan with a claimer; the set_* fields are written only when nonzero. */
    memset(&cas, 0, sizeof cas);
    cas.id = id;
    cas.from_mask = QRL_LR_BIT(QRL_LR_PENDING) | QRL_LR_BIT(QRL_LR_SCANNED);
    cas.to = QRL_LR_SCANNED;
    cas.now_ms = T0 + 1000;
    cas.set_claimed_device_id = 42;
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_OK);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_SCANNED);
    assert_int_equal(got.updated_ms, T0 + 1000);
    assert_int_equal(got.claimed_device_id, 42);
    assert_int_equal(got.account_id, 0);
    assert_int_equal(got.approving_device_id, 0);

    /* require_claimed_by: another phone loses, nothing changes. */
    memset(&cas, 0, sizeof cas);
    cas.id = id;
    cas.from_mask = QRL_LR_BIT(QRL_LR_SCANNED);
    cas.to = QRL_LR_APPROVED;
    cas.now_ms = T0 + 2000;
    cas.require_claimed_by = 43;
    cas.set_account_id = 7;
    cas.set_approving_device_id = 43;
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_ERR_CONFLICT);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_SCANNED);
    assert_int_equal(got.account_id, 0);
    assert_int_equal(got.updated_ms, T0 + 1000);

    /* The claimer wins; claimed_device_id stays (set_claimed_device_id is 0). */
    cas.require_claimed_by = 42;
    cas.set_approving_device_id = 42;
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_OK);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
    assert_int_equal(got.updated_ms, T0 + 2000);
    assert_int_equal(got.claimed_device_id, 42);
    assert_int_equal(got.account_id, 7);
    assert_int_equal(got.approving_device_id, 42);
    /* Once only. */
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_ERR_CONFLICT);

    /* APPROVED -> EXPIRED only after expiry. */
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_APPROVED), QRL_LR_EXPIRED, T0 + TTL - 1),
                     QRL_ERR_CONFLICT);
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_APPROVED), QRL_LR_EXPIRED, T0 + TTL), QRL_OK);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_EXPIRED);
    assert_int_equal(got.updated_ms, T0 + TTL);
    assert_int_equal(got.account_id, 7);

    /* Terminal states stay when the caller's mask does not name them. */
    assert_int_equal(
        move(st, id,
             QRL_LR_BIT(QRL_LR_PENDING) | QRL_LR_BIT(QRL_LR_SCANNED) | QRL_LR_BIT(QRL_LR_APPROVED),
             QRL_LR_EXPIRED, T0 + TTL + 1),
        QRL_ERR_CONFLICT);

    /* PENDING -> DENIED before expiry. */
    id = add_lr(st, 2, "BCDFGHJK", T0);
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 1), QRL_OK);
    assert_int_equal(move(st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 2),
                     QRL_ERR_CONFLICT);

    memset(&cas, 0, sizeof cas);
    cas.id = id;
    cas.to = (qrl_lr_state)6;
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_ERR_INVALID);
}

static void test_lr_redeem(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    int64_t phone = add_device(st, acct, "Pixel", T0);
    int64_t id;
    qrl_device_rec d;
    qrl_token_rec tok[2] = {make_token(1, QRL_TOKEN_ACCESS, T0 + 3000, T0 + 3603000),
                            make_token(2, QRL_TOKEN_REFRESH, T0 + 3000, T0 + 86403000)};
    qrl_lr_state s;
    qrl_lr_rec got;
    qrl_device_rec list[4];
    qrl_token_rec t;
    size_t n;

    /* Not approved: CONFLICT with the current state. */
    id = add_lr(st, 1, "WDJBMJHT", T0);
    d = make_device(0, "Living Room TV", T0 + 3000);
    s = QRL_LR_EXPIRED;
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d, tok, 2, &s), QRL_ERR_CONFLICT);
    assert_int_equal(s, QRL_LR_PENDING);
    assert_int_equal(st->m->lr_redeem(st, id + 100, T0 + 3000, &d, tok, 2, &s), QRL_ERR_NOT_FOUND);

    /* Approved but expired: EXPIRED, nothing changes. */
    id = add_approved_lr(st, 2, "BCDFGHJK", acct, phone);
    assert_int_equal(st->m->lr_redeem(st, id, T0 + TTL, &d, tok, 2, NULL), QRL_ERR_EXPIRED);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
    assert_int_equal(got.redeemed_device_id, 0);

    /* Success. */
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d, tok, 2, &s), QRL_OK);
    assert_int_equal(s, QRL_LR_REDEEMED);
    assert_true(d.id > phone);
    assert_int_equal(d.account_id, acct);
    assert_int_equal(tok[0].device_id, d.id);
    assert_int_equal(tok[1].device_id, d.id);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_REDEEMED);
    assert_int_equal(got.redeemed_device_id, d.id);
    assert_int_equal(got.updated_ms, T0 + 3000);
    assert_int_equal(st->m->token_lookup(st, &tok[1].hash, &t), QRL_OK);
    assert_int_equal(t.device_id, d.id);
    assert_int_equal(t.account_id, acct);
    assert_int_equal(st->m->device_list(st, acct, list, 4, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_string_equal(list[1].name, "Living Room TV");
    /* Once only. */
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3001, &d, tok, 2, &s), QRL_ERR_CONFLICT);
    assert_int_equal(s, QRL_LR_REDEEMED);

    /* The approving phone was revoked meanwhile: DENIED, committed. */
    {
        int64_t phone2 = add_device(st, acct, "Old phone", T0);
        qrl_device_rec d2 = make_device(0, "TV 2", T0 + 3000);
        qrl_token_rec tok2[1] = {make_token(3, QRL_TOKEN_REFRESH, T0, T0 + 99999)};

        id = add_approved_lr(st, 3, "CDFGHJKL", acct, phone2);
        assert_int_equal(st->m->device_revoke(st, acct, phone2, T0 + 2500), QRL_OK);
        assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d2, tok2, 1, &s), QRL_ERR_DENIED);
        assert_int_equal(s, QRL_LR_DENIED);
        assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
        assert_int_equal(got.state, QRL_LR_DENIED);
        assert_int_equal(got.updated_ms, T0 + 3000);
        assert_int_equal(got.redeemed_device_id, 0);
        assert_int_equal(st->m->token_lookup(st, &tok2[0].hash, &t), QRL_ERR_NOT_FOUND);
    }

    /* The approving account was disabled: DENIED too. */
    {
        int64_t off = add_account(st, "mallory", 1);
        int64_t offphone = add_device(st, off, "Phone", T0);
        qrl_device_rec d3 = make_device(0, "TV 3", T0 + 3000);

        id = add_approved_lr(st, 4, "DFGHJKLM", off, offphone);
        assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d3, NULL, 0, NULL), QRL_ERR_DENIED);
        assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
        assert_int_equal(got.state, QRL_LR_DENIED);
        assert_int_equal(st->m->device_list(st, off, list, 4, &n), QRL_OK);
        assert_int_equal(n, 1);
    }

    /* Invalid input changes nothing. */
    id = add_approved_lr(st, 5, "FGHJKLMN", acct, phone);
    d = make_device(0, "TV", T0);
    memset(d.kind, 'k', sizeof d.kind);
    assert_int_equal(st->m->lr_redeem(st, id, T0 + 3000, &d, NULL, 0, NULL), QRL_ERR_INVALID);
    assert_int_equal(st->m->lr_get(st, id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
}

static void test_lr_by_device(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    int64_t acct = add_account(st, "alice", 0);
    int64_t phone = add_device(st, acct, "Pixel", T0);
    int64_t other = add_device(st, acct, "Other", T0);
    int64_t scanned, approved, redeemed, ids[8];
    qrl_lr_cas cas;
    qrl_device_rec d = make_device(0, "TV", T0);
    size_t n;

    add_lr(st, 1, "BBBBBBBB", T0); /* PENDING: not listed */
    scanned = add_lr(st, 2, "CCCCCCCC", T0);
    memset(&cas, 0, sizeof cas);
    cas.id = scanned;
    cas.from_mask = QRL_LR_BIT(QRL_LR_PENDING);
    cas.to = QRL_LR_SCANNED;
    cas.now_ms = T0 + 1;
    cas.set_claimed_device_id = phone;
    assert_int_equal(st->m->lr_transition(st, &cas), QRL_OK);
    approved = add_approved_lr(st, 3, "DDDDDDDD", acct, phone);
    redeemed = add_approved_lr(st, 4, "FFFFFFFF", acct, phone);
    assert_int_equal(st->m->lr_redeem(st, redeemed, T0 + 3000, &d, NULL, 0, NULL), QRL_OK);
    add_approved_lr(st, 5, "GGGGGGGG", acct, other);

    assert_int_equal(st->m->lr_by_device(st, phone, ids, 8, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], scanned);
    assert_int_equal(ids[1], approved);
    assert_int_equal(st->m->lr_by_device(st, phone, ids, 1, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(st->m->lr_by_device(st, other, ids, 8, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(st->m->lr_by_device(st, 9999, ids, 8, &n), QRL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(st->m->lr_by_device(st, phone, NULL, 0, &n), QRL_OK);
    assert_int_equal(n, 0);
}

/* --- rate limits, sweep ------------------------------------------------------------------- */

/* GCRA: take allows `limit` at once, then one per window / limit; give returns one; a refusal
 * says how long until the next attempt is taken; keys are independent. */
static void test_ratelimit_take(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    const int64_t w = 60000;
    int64_t retry = 0;

    for (int i = 0; i < 3; i++)
        assert_int_equal(st->m->ratelimit_take(st, "g:k", T0, w, 3, &retry), QRL_OK);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0, w, 3, &retry), QRL_ERR_RATE_LIMITED);
    assert_int_equal(retry, 20000);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 5000, w, 3, &retry),
                     QRL_ERR_RATE_LIMITED);
    assert_int_equal(retry, 15000); /* refusals do not push it further */
    assert_int_equal(st->m->ratelimit_take(st, "g:other", T0, w, 3, NULL), QRL_OK);
    assert_int_equal(st->m->ratelimit_give(st, "g:k", T0 + 5000, w, 3), QRL_OK);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 5000, w, 3, NULL), QRL_OK);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 5000, w, 3, NULL), QRL_ERR_RATE_LIMITED);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 20000, w, 3, NULL), QRL_OK);
    /* Giving back more than was taken never banks attempts beyond the burst. */
    for (int i = 0; i < 10; i++)
        assert_int_equal(st->m->ratelimit_give(st, "g:k", T0 + 200000, w, 3), QRL_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 200000, w, 3, NULL), QRL_OK);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0 + 200000, w, 3, NULL),
                     QRL_ERR_RATE_LIMITED);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0, 0, 3, NULL), QRL_ERR_INVALID);
    assert_int_equal(st->m->ratelimit_take(st, "g:k", T0, w, 0, NULL), QRL_ERR_INVALID);
    assert_int_equal(st->m->ratelimit_give(st, "g:unknown", T0, w, 3), QRL_OK);
}

static void test_ratelimit(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    const int64_t w = 60000;
    int64_t c = -1;
    char longkey[300];

    assert_int_equal(st->m->ratelimit_peek(st, "uc:addr:192.0.2.1", T0, w, &c), QRL_OK);
    assert_int_equal(c, 0);
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0, w, &c), QRL_OK);
    assert_int_equal(c, 1);
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0 + 10, w, &c), QRL_OK);
    assert_int_equal(c, 2);
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0 + w - 1, w, &c), QRL_OK);
    assert_int_equal(c, 3);
    assert_int_equal(st->m->ratelimit_peek(st, "uc:addr:192.0.2.1", T0 + w - 1, w, &c), QRL_OK);
    assert_int_equal(c, 3);
    /* Keys are independent. */
    assert_int_equal(st->m->ratelimit_peek(st, "uc:addr:192.0.2.2", T0, w, &c), QRL_OK);
    assert_int_equal(c, 0);
    /* The window started at the first hit and is over at T0 + w. */
    assert_int_equal(st->m->ratelimit_peek(st, "uc:addr:192.0.2.1", T0 + w, w, &c), QRL_OK);
    assert_int_equal(c, 0);
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0 + w + 5, w, &c), QRL_OK);
    assert_int_equal(c, 1);
    /* The new window started at T0 + w + 5. */
    assert_int_equal(st->m->ratelimit_hit(st, "uc:addr:192.0.2.1", T0 + 2 * w + 4, w, &c), QRL_OK);
    assert_int_equal(c, 2);
    assert_int_equal(st->m->ratelimit_peek(st, "uc:addr:192.0.2.1", T0 + 2 * w + 5, w, &c), QRL_OK);
    assert_int_equal(c, 0);

    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(st->m->ratelimit_hit(st, longkey, T0, w, &c), QRL_ERR_INVALID);
    assert_int_equal(st->m->ratelimit_hit(st, "k", T0, 0, &c), QRL_ERR_INVALID);
}

static void test_sweep(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    const int64_t keep = 3600000;
    int64_t now = T0 + 10 * keep;
    int64_t c;
    qrl_lr_rec got;
    int64_t old_lr = add_lr(st, 1, "BBBBBBBB", now - keep - TTL - 1); /* expired keep+1 ago */
    int64_t edge_lr = add_lr(st, 2, "CCCCCCCC", now - keep - TTL);    /* expired exactly keep */
    int64_t live_lr = add_lr(st, 3, "DDDDDDDD", now - 10);
    /* Ids drawn from the clock as secret.c does: the sweep bounds the primary key by them. */
    qrl_lr_rec clock_old = make_lr(4, "FFFFFFFF", now - keep - TTL - 1);
    qrl_lr_rec clock_edge = make_lr(5, "GGGGGGGG", now - keep - TTL);
    qrl_lr_rec clock_live = make_lr(6, "HHHHHHHH", now - 10);

    clock_old.id = (now - keep - TTL - 1) << 11 | 2047;
    clock_edge.id = (now - keep - TTL) << 11;
    clock_live.id = (now - 10) << 11 | 1;
    assert_int_equal(st->m->lr_create(st, &clock_old), QRL_OK);
    assert_int_equal(st->m->lr_create(st, &clock_edge), QRL_OK);
    assert_int_equal(st->m->lr_create(st, &clock_live), QRL_OK);
    /* The ones kept for a day are those somebody answered: denied here. */
    const unsigned any = QRL_LR_BIT(QRL_LR_PENDING);
    assert_int_equal(move(st, edge_lr, any, QRL_LR_DENIED, now - keep - TTL + 1), QRL_OK);
    assert_int_equal(move(st, clock_edge.id, any, QRL_LR_DENIED, now - keep - TTL + 1), QRL_OK);
    /* Undecided ones go a minute after they expired; not before. */
    int64_t idle_lr = add_lr(st, 7, "JJJJJJJJ", now - TTL - 60001);   /* expired 60.001 s ago */
    int64_t idle_live = add_lr(st, 8, "KKKKKKKK", now - TTL - 59999); /* expired 59.999 s ago */

    /* Window [start, start + 1000) ended keep + 1 ago, keep ago, and is current. */
    assert_int_equal(st->m->ratelimit_hit(st, "old", now - keep - 1001, 1000, &c), QRL_OK);
    assert_int_equal(st->m->ratelimit_hit(st, "edge", now - keep - 1000, 1000, &c), QRL_OK);
    assert_int_equal(st->m->ratelimit_hit(st, "live", now - 10, 1000, &c), QRL_OK);

    assert_int_equal(st->m->sweep(st, now, keep), QRL_OK);
    assert_int_equal(st->m->lr_get(st, old_lr, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_get(st, edge_lr, &got), QRL_OK);
    assert_int_equal(st->m->lr_get(st, live_lr, &got), QRL_OK);
    assert_int_equal(st->m->lr_get(st, clock_old.id, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_get(st, clock_edge.id, &got), QRL_OK);
    assert_int_equal(st->m->lr_get(st, clock_live.id, &got), QRL_OK);
    assert_int_equal(st->m->lr_get(st, idle_lr, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(st->m->lr_get(st, idle_live, &got), QRL_OK);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM rate_limits WHERE key = 'old'"), 0);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM rate_limits WHERE key = 'edge'"), 1);
    assert_int_equal(st->m->ratelimit_peek(st, "live", now, 1000, &c), QRL_OK);
    assert_int_equal(c, 1);

    assert_int_equal(st->m->sweep(st, now, -1), QRL_ERR_INVALID);
}

/* --- concurrency and durability ----------------------------------------------------------- */

struct race {
    qrl_store *st;
    pthread_barrier_t barrier;
    int64_t lr_id;
    int64_t phone;
    int64_t acct;
    qrl_err rc[NTHREADS];
    qrl_lr_state state[NTHREADS];
    int64_t dev_id[NTHREADS];
};

struct racer {
    struct race *r;
    int i;
};

static void *approve_racer(void *arg)
{
    struct racer *me = arg;
    struct race *r = me->r;
    qrl_lr_rec warm;
    qrl_lr_cas cas = {.id = r->lr_id,
                      .from_mask = QRL_LR_BIT(QRL_LR_SCANNED),
                      .to = QRL_LR_APPROVED,
                      .now_ms = T0 + 2000,
                      .require_claimed_by = r->phone,
                      .set_account_id = r->acct,
                      .set_approving_device_id = r->phone};

    /* Open this thread's connection first, so that the race is on the write itself. */
    (void)r->st->m->lr_get(r->st, r->lr_id, &warm);
    pthread_barrier_wait(&r->barrier);
    r->rc[me->i] = r->st->m->lr_transition(r->st, &cas);
    return NULL;
}

static void *redeem_racer(void *arg)
{
    struct racer *me = arg;
    struct race *r = me->r;
    qrl_lr_rec warm;
    qrl_device_rec d = make_device(0, "TV", T0 + 3000);
    qrl_token_rec tok[2] = {
        make_token(100 + 2 * (unsigned)me->i, QRL_TOKEN_ACCESS, T0 + 3000, T0 + 3603000),
        make_token(101 + 2 * (unsigned)me->i, QRL_TOKEN_REFRESH, T0 + 3000, T0 + 86403000)};

    (void)r->st->m->lr_get(r->st, r->lr_id, &warm);
    pthread_barrier_wait(&r->barrier);
    r->rc[me->i] = r->st->m->lr_redeem(r->st, r->lr_id, T0 + 3000, &d, tok, 2, &r->state[me->i]);
    r->dev_id[me->i] = d.id;
    return NULL;
}

static void run_race(struct race *r, void *(*fn)(void *))
{
    pthread_t th[NTHREADS];
    struct racer who[NTHREADS];

    assert_int_equal(pthread_barrier_init(&r->barrier, NULL, NTHREADS), 0);
    for (int i = 0; i < NTHREADS; i++) {
        who[i].r = r;
        who[i].i = i;
        assert_int_equal(pthread_create(&th[i], NULL, fn, &who[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r->barrier);
}

static void test_race_transition(void **state)
{
    fixture *f = *state;
    struct race r;
    qrl_lr_cas scan;
    qrl_lr_rec got;
    int wins = 0;

    memset(&r, 0, sizeof r);
    r.st = f->st;
    r.acct = add_account(f->st, "alice", 0);
    r.phone = add_device(f->st, r.acct, "Pixel", T0);
    r.lr_id = add_lr(f->st, 1, "WDJBMJHT", T0);
    memset(&scan, 0, sizeof scan);
    scan.id = r.lr_id;
    scan.from_mask = QRL_LR_BIT(QRL_LR_PENDING);
    scan.to = QRL_LR_SCANNED;
    scan.now_ms = T0 + 1000;
    scan.set_claimed_device_id = r.phone;
    assert_int_equal(f->st->m->lr_transition(f->st, &scan), QRL_OK);

    run_race(&r, approve_racer);
    for (int i = 0; i < NTHREADS; i++) {
        if (r.rc[i] == QRL_OK)
            wins++;
        else
            assert_int_equal(r.rc[i], QRL_ERR_CONFLICT);
    }
    assert_int_equal(wins, 1);
    assert_int_equal(f->st->m->lr_get(f->st, r.lr_id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
    assert_int_equal(got.approving_device_id, r.phone);
}

static void test_race_redeem(void **state)
{
    fixture *f = *state;
    struct race r;
    qrl_lr_rec got;
    qrl_device_rec list[NTHREADS + 2];
    size_t n;
    int wins = 0, winner = -1;

    memset(&r, 0, sizeof r);
    r.st = f->st;
    r.acct = add_account(f->st, "alice", 0);
    r.phone = add_device(f->st, r.acct, "Pixel", T0);
    r.lr_id = add_approved_lr(f->st, 1, "WDJBMJHT", r.acct, r.phone);

    run_race(&r, redeem_racer);
    for (int i = 0; i < NTHREADS; i++) {
        if (r.rc[i] == QRL_OK) {
            wins++;
            winner = i;
        } else {
            assert_int_equal(r.rc[i], QRL_ERR_CONFLICT);
            assert_int_equal(r.state[i], QRL_LR_REDEEMED);
        }
    }
    assert_int_equal(wins, 1);
    assert_int_equal(f->st->m->device_list(f->st, r.acct, list, NTHREADS + 2, &n), QRL_OK);
    assert_int_equal(n, 2); /* the phone and exactly one TV */
    assert_int_equal(list[1].id, r.dev_id[winner]);
    assert_int_equal(f->st->m->lr_get(f->st, r.lr_id, &got), QRL_OK);
    assert_int_equal(got.redeemed_device_id, r.dev_id[winner]);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM tokens"), 2);
}

static void test_durability_sigkill(void **state)
{
    fixture *f = *state;
    char path[192];
    qrl_store *st = NULL;
    qrl_account_rec a;
    int status = 0;
    pid_t pid;

    /* The parent keeps no connection to this file across the fork: SQLite connections must not
     * cross a fork, and the child must be the only writer. It has no other threads either (the
     * fixture's store, with its writer and checkpoint threads, is closed first): a lock held by
     * another thread at the fork would stay locked forever in the child. */
    snprintf(path, sizeof path, "%s/durable.db", f->dir);
    f->st->m->close(f->st);
    f->st = NULL;
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        qrl_account_rec c;

        if (qrl_store_sqlite_open(path, &st, NULL, 0) != QRL_OK)
            _exit(2);
        memset(&c, 0, sizeof c);
        snprintf(c.username, sizeof c.username, "survivor");
        c.created_ms = T0;
        if (st->m->account_create(st, &c) != QRL_OK)
            _exit(3);
        raise(SIGKILL);
        _exit(4);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    assert_int_equal(qrl_store_sqlite_open(path, &st, NULL, 0), QRL_OK);
    assert_int_equal(st->m->account_by_name(st, "survivor", &a), QRL_OK);
    assert_int_equal(a.created_ms, T0);
    f->st = st; /* closed by the teardown */
}

/* --- version 2: device keys and nonces ------------------------------------------------------- */

static void test_device_pubkey(void **state)
{
    fixture *f = *state;
    unsigned char pk[QRL_PUBKEY_BYTES];
    qrl_device_rec d;
    int64_t alice = add_account(f->st, "alice", 0), bob = add_account(f->st, "bob", 0);
    int64_t dev = add_device(f->st, alice, "Phone", T0);

    memset(pk, 0xab, sizeof pk);
    assert_int_equal(f->st->m->device_get(f->st, dev, &d), QRL_OK);
    assert_false(d.has_pubkey);
    /* Another account's device, or an unknown one, is not found and nothing changes. */
    assert_int_equal(f->st->m->device_set_pubkey(f->st, bob, dev, pk), QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->device_set_pubkey(f->st, alice, dev + 100, pk), QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->device_get(f->st, dev, &d), QRL_OK);
    assert_false(d.has_pubkey);
    assert_int_equal(f->st->m->device_set_pubkey(f->st, alice, dev, pk), QRL_OK);
    reopen(f);
    assert_int_equal(f->st->m->device_get(f->st, dev, &d), QRL_OK);
    assert_true(d.has_pubkey);
    assert_memory_equal(d.pubkey, pk, sizeof pk);
    /* A revoked device cannot get a key. */
    assert_int_equal(f->st->m->device_revoke(f->st, alice, dev, T0 + 1), QRL_OK);
    assert_int_equal(f->st->m->device_set_pubkey(f->st, alice, dev, pk), QRL_ERR_NOT_FOUND);
}

/* Store version 11: the key a request names (dpop_jkt) is written by lr_create and comes back
 * from every read of the request, whatever its state; a request that names none reads "". */
static void test_lr_dpop_jkt(void **state)
{
    fixture *f = *state;
    qrl_store *st = f->st;
    static const char jkt[] = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
    qrl_lr_rec lr = make_lr(1, "WDJBMJHT", T0), plain = make_lr(2, "BCDFGHJK", T0), got;
    qrl_lr_secret_key dc, scan;

    memcpy(lr.dpop_jkt, jkt, sizeof jkt);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_OK);
    assert_int_equal(st->m->lr_create(st, &plain), QRL_OK);
    assert_int_equal(st->m->lr_get(st, lr.id, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, jkt);
    dc = (qrl_lr_secret_key){.id = lr.id, .hash = lr.device_code_hash};
    scan = (qrl_lr_secret_key){.id = lr.id, .hash = lr.scan_hash};
    memset(&got, 0, sizeof got);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_DEVICE_CODE, &dc, T0, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, jkt);
    memset(&got, 0, sizeof got);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_SCAN, &scan, T0, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, jkt);
    memset(&got, 0, sizeof got);
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, jkt);
    assert_int_equal(st->m->lr_get(st, plain.id, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, "");
    assert_int_equal(st->m->lr_find(st, QRL_LR_KEY_USER_CODE, "BCDFGHJK", T0, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, "");

    /* It stays through the request's life, and no transition touches the other's. */
    assert_int_equal(move(st, lr.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 10), QRL_OK);
    assert_int_equal(move(st, lr.id, QRL_LR_BIT(QRL_LR_SCANNED), QRL_LR_APPROVED, T0 + 20), QRL_OK);
    assert_int_equal(move(st, plain.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 30),
                     QRL_OK);
    assert_int_equal(st->m->lr_get(st, lr.id, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_APPROVED);
    assert_string_equal(got.dpop_jkt, jkt);
    assert_int_equal(st->m->lr_get(st, plain.id, &got), QRL_OK);
    assert_string_equal(got.dpop_jkt, "");

    /* A field without its terminating NUL is refused, and nothing is written. */
    lr = make_lr(3, "CCCCCCCC", T0);
    memset(lr.dpop_jkt, 'k', sizeof lr.dpop_jkt);
    assert_int_equal(st->m->lr_create(st, &lr), QRL_ERR_INVALID);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM login_requests"), 2);
}

static void test_lr_nonce(void **state)
{
    fixture *f = *state;
    qrl_lr_rec lr;
    int64_t id = add_lr(f->st, 1, "BCDFGHJK", T0);

    qrl_lr_cas claim = {.id = id,
                        .from_mask = QRL_LR_BIT(QRL_LR_PENDING),
                        .to = QRL_LR_SCANNED,
                        .now_ms = T0 + 1,
                        .set_claimed_device_id = 7,
                        .set_nonce = "nonce-one"};
    assert_int_equal(f->st->m->lr_transition(f->st, &claim), QRL_OK);
    assert_int_equal(f->st->m->lr_get(f->st, id, &lr), QRL_OK);
    assert_string_equal(lr.nonce, "nonce-one");
    /* A decision naming another nonce does not apply. */
    qrl_lr_cas approve = {.id = id,
                          .from_mask = QRL_LR_BIT(QRL_LR_SCANNED),
                          .to = QRL_LR_APPROVED,
                          .now_ms = T0 + 2,
                          .require_claimed_by = 7,
                          .set_account_id = 1,
                          .set_approving_device_id = 7,
                          .require_nonce = "nonce-two"};
    assert_int_equal(f->st->m->lr_transition(f->st, &approve), QRL_ERR_CONFLICT);
    assert_int_equal(f->st->m->lr_get(f->st, id, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_SCANNED);
    approve.require_nonce = "nonce-one";
    assert_int_equal(f->st->m->lr_transition(f->st, &approve), QRL_OK);
}

static void test_migrate_from_v1(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    qrl_device_rec d;
    int64_t alice = add_account(f->st, "alice", 0);
    int64_t dev = add_device(f->st, alice, "Phone", T0);

    /* Turn the file back into a version-1 database holding data, then open it again. */
    f->st->m->close(f->st);
    f->st = NULL;
    db_exec(f->path,
            "DROP TABLE passkeys; ALTER TABLE devices DROP COLUMN pubkey;"
            "ALTER TABLE login_requests DROP COLUMN device_platform;"
            "ALTER TABLE login_requests DROP COLUMN nonce;" DROP_V7 "PRAGMA user_version = 1;");
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(qrl_store_sqlite_open(f->path, &f->st, err, sizeof err), QRL_OK);
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), SCHEMA_NOW);
    assert_int_equal(f->st->m->device_get(f->st, dev, &d), QRL_OK);
    assert_string_equal(d.name, "Phone");
    assert_false(d.has_pubkey);
}

/* Version 3 drops the unique indexes of the two secret hashes and keeps every row; version 4
 * drops the user-code index, and the migrated request is still found by its code and keeps it
 * taken. */
static void test_migrate_from_v2(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    qrl_lr_rec lr = make_lr(1, "WDJBMJHT", T0), got;
    qrl_lr_secret_key dc;

    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_OK);
    assert_int_equal(move(f->st, lr.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1),
                     QRL_OK);
    f->st->m->close(f->st);
    f->st = NULL;
    /* The version-2 table: both hashes UNIQUE. */
    db_exec(
        f->path,
        DROP_V7 "DROP TABLE passkeys; ALTER TABLE login_requests DROP COLUMN device_platform;"
        "CREATE TABLE v2 (id INTEGER PRIMARY KEY,"
        " device_code_hash BLOB NOT NULL UNIQUE CHECK (length(device_code_hash) = 32),"
        " scan_hash BLOB NOT NULL UNIQUE CHECK (length(scan_hash) = 32),"
        " user_code TEXT NOT NULL, client_id TEXT NOT NULL, scope TEXT NOT NULL,"
        " device_name TEXT NOT NULL, device_kind TEXT NOT NULL, address TEXT NOT NULL,"
        " created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,"
        " interval_s INTEGER NOT NULL, state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 5),"
        " updated_ms INTEGER NOT NULL, claimed_device_id INTEGER NOT NULL DEFAULT 0,"
        " account_id INTEGER NOT NULL DEFAULT 0,"
        " approving_device_id INTEGER NOT NULL DEFAULT 0,"
        " redeemed_device_id INTEGER NOT NULL DEFAULT 0, nonce TEXT NOT NULL DEFAULT '');"
        "INSERT INTO v2 SELECT * FROM login_requests; DROP TABLE login_requests;"
        "ALTER TABLE v2 RENAME TO login_requests;"
        "CREATE INDEX login_requests_user_code ON login_requests(user_code, expires_ms);"
        "PRAGMA user_version = 2;");
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                     " AND tbl_name = 'login_requests'"),
                     3);
    assert_int_equal(qrl_store_sqlite_open(f->path, &f->st, err, sizeof err), QRL_OK);
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), SCHEMA_NOW);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                     " AND tbl_name = 'login_requests'"),
                     0);
    dc = (qrl_lr_secret_key){.id = lr.id, .hash = lr.device_code_hash};
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_DEVICE_CODE, &dc, T0, &got), QRL_OK);
    assert_int_equal(got.state, QRL_LR_SCANNED);
    assert_string_equal(got.user_code, "WDJBMJHT");
    assert_string_equal(got.device_platform, "");
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, "WDJBMJHT", T0, &got), QRL_OK);
    assert_int_equal(got.id, lr.id);
    lr = make_lr(2, "WDJBMJHT", T0 + 2);
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_ERR_EXISTS);
}

/* The n-th of many distinct user codes. */
static void nth_code(unsigned n, char out[QRL_USER_CODE_LEN + 1])
{
    static const char alphabet[] = "BCDFGHJKLMNPQRSTVWXZ";

    for (int i = QRL_USER_CODE_LEN - 1; i >= 0; i--, n /= 20)
        out[i] = alphabet[n % 20];
    out[QRL_USER_CODE_LEN] = '\0';
}

/* User codes are looked up in memory (lib/store/sqlite/user_codes.c): the map grows past its
 * first size, is loaded again from the file after a reopen, keeps codes of live requests taken
 * and frees those of expired ones. */
static void test_user_codes(void **state)
{
    fixture *f = *state;
    enum { N = 3000 };
    char code[QRL_USER_CODE_LEN + 1];
    qrl_lr_rec lr, got;
    struct timespec ts;
    int64_t wall_ms, recent_id, old_id;

    for (unsigned i = 0; i < N; i++) {
        nth_code(i, code);
        add_lr(f->st, 10 + i, code, T0 + i);
    }
    for (unsigned i = 0; i < N; i++) {
        nth_code(i, code);
        assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, code, T0 + N, &got),
                         QRL_OK);
        assert_int_equal(got.id, 1000 + 10 + (int64_t)i);
    }
    nth_code(N, code);
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, code, T0 + N, &got),
                     QRL_ERR_NOT_FOUND);

    /* Ids drawn from the clock (secret.c): one from now, one from three hours ago. Requests
     * live an hour at most, so the store does not look at ids from more than two hours ago
     * when it loads the map; such a request cannot be unexpired unless its row is forged. */
    clock_gettime(CLOCK_REALTIME, &ts);
    wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    lr = make_lr(N + 10, "ZZZZZZZZ", T0 + N);
    lr.id = recent_id = wall_ms << 11 | 7;
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_OK);
    lr = make_lr(N + 11, "ZZZZZZZX", T0 + N);
    lr.id = old_id = (wall_ms - 3 * 3600 * 1000) << 11 | 7;
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_OK);
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, "ZZZZZZZX", T0 + N, &got),
                     QRL_OK);
    assert_int_equal(got.id, old_id);

    reopen(f);
    for (unsigned i = 0; i < N; i += 7) {
        nth_code(i, code);
        assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, code, T0 + N, &got),
                         QRL_OK);
        assert_int_equal(got.id, 1000 + 10 + (int64_t)i);
    }
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, "ZZZZZZZZ", T0 + N, &got),
                     QRL_OK);
    assert_int_equal(got.id, recent_id);
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, "ZZZZZZZX", T0 + N, &got),
                     QRL_ERR_NOT_FOUND);

    /* After the reopen a live request's code is still taken, also once its entry moved in a
     * rebuild of the map (more than N new entries force one). */
    nth_code(5, code);
    lr = make_lr(N + 20, code, T0 + N);
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_ERR_EXISTS);
    for (unsigned i = 0; i < N; i++) {
        nth_code(N + 100 + i, code);
        add_lr(f->st, 2 * N + i, code, T0 + N);
    }
    nth_code(5, code);
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_ERR_EXISTS);
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, code, T0 + N, &got), QRL_OK);
    assert_int_equal(got.id, 1000 + 10 + 5);

    /* Once expired, a code is free again and names the new request. */
    lr = make_lr(N + 21, code, T0 + 5 + TTL);
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_OK);
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, code, T0 + 5 + TTL, &got),
                     QRL_OK);
    assert_int_equal(got.id, lr.id);
    /* A decided request keeps its code until it expires, then frees it. */
    assert_int_equal(move(f->st, lr.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_DENIED, T0 + 6 + TTL),
                     QRL_OK);
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_USER_CODE, code, T0 + 6 + TTL, &got),
                     QRL_OK);
    assert_int_equal(got.state, QRL_LR_DENIED);
}

static void test_lr_approve_redeem(void **state)
{
    fixture *f = *state;
    qrl_lr_rec lr;
    qrl_token_rec tok[2];
    qrl_device_rec dev;
    int64_t alice = add_account(f->st, "alice", 0);
    int64_t phone = add_device(f->st, alice, "Phone", T0);
    int64_t id = add_lr(f->st, 1, "BCDFGHJK", T0);

    assert_int_equal(move(f->st, id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1), QRL_OK);
    qrl_lr_cas cas = {.id = id,
                      .from_mask = QRL_LR_BIT(QRL_LR_SCANNED),
                      .to = QRL_LR_APPROVED,
                      .now_ms = T0 + 2,
                      .set_account_id = alice,
                      .set_approving_device_id = phone,
                      .require_claimed_by = 99};
    /* The compare-and-set fails (wrong claimer): nothing at all happens. */
    dev = make_device(0, "Living Room TV", T0 + 2);
    tok[0] = make_token(1, QRL_TOKEN_ACCESS, T0 + 2, T0 + 100000);
    tok[1] = make_token(2, QRL_TOKEN_REFRESH, T0 + 2, T0 + 100000);
    assert_int_equal(f->st->m->lr_approve_redeem(f->st, &cas, &dev, tok, 2), QRL_ERR_CONFLICT);
    assert_int_equal(f->st->m->lr_get(f->st, id, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_SCANNED);
    qrl_token_rec probe;
    assert_int_equal(f->st->m->token_lookup(f->st, &tok[0].hash, &probe), QRL_ERR_NOT_FOUND);

    /* Approved and redeemed in one unit: device and tokens exist, state REDEEMED. */
    cas.require_claimed_by = 0;
    assert_int_equal(f->st->m->lr_approve_redeem(f->st, &cas, &dev, tok, 2), QRL_OK);
    assert_true(dev.id > 0);
    assert_int_equal(dev.account_id, alice);
    assert_int_equal(f->st->m->lr_get(f->st, id, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_REDEEMED);
    assert_int_equal(lr.approving_device_id, phone);
    assert_int_equal(lr.redeemed_device_id, dev.id);
    assert_int_equal(f->st->m->token_lookup(f->st, &tok[1].hash, &probe), QRL_OK);
    assert_int_equal(probe.device_id, dev.id);

    /* If redemption would fail (approver revoked), the approval is undone as well. */
    int64_t id2 = add_lr(f->st, 2, "CDFGHJKL", T0);
    assert_int_equal(move(f->st, id2, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1), QRL_OK);
    assert_int_equal(f->st->m->device_revoke(f->st, alice, phone, T0 + 3), QRL_OK);
    cas.id = id2;
    cas.now_ms = T0 + 4;
    dev = make_device(0, "Kitchen TV", T0 + 4);
    tok[0] = make_token(3, QRL_TOKEN_ACCESS, T0 + 4, T0 + 100000);
    tok[1] = make_token(4, QRL_TOKEN_REFRESH, T0 + 4, T0 + 100000);
    assert_int_equal(f->st->m->lr_approve_redeem(f->st, &cas, &dev, tok, 2), QRL_ERR_DENIED);
    assert_int_equal(f->st->m->lr_get(f->st, id2, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_SCANNED);
}

/* Many threads reading while writes commit: every read sees the writes committed before it
 * started, and the store keeps a few reading connections whatever the number of threads (each
 * is a file descriptor on the database, and each cold connection re-reads pages). */
#define READERS 32
#define READS_EACH 200

struct reader_arg {
    qrl_store *st;
    const int64_t *ids;
    _Atomic int *committed; /* ids[0..*committed) are committed */
    int bad;
};

static void *reader_main(void *arg)
{
    struct reader_arg *a = arg;
    qrl_lr_rec got;

    for (int i = 0; i < READS_EACH; i++) {
        int n = *a->committed;
        if (n == 0)
            continue;
        int64_t id = a->ids[(unsigned)i % (unsigned)n];
        if (a->st->m->lr_get(a->st, id, &got) != QRL_OK || got.id != id)
            a->bad++;
    }
    return NULL;
}

static int db_fds(const char *path)
{
    char link[PATH_MAX], target[PATH_MAX];
    struct dirent *e;
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strcmp(target, path) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void test_many_readers_few_connections(void **state)
{
    fixture *f = *state;
    static int64_t ids[64];
    _Atomic int committed = 0;
    pthread_t th[READERS];
    struct reader_arg args[READERS];
    char real[PATH_MAX];

    ids[0] = add_lr(f->st, 1, "WDJBMJHT", T0);
    committed = 1;
    for (int i = 0; i < READERS; i++) {
        args[i] = (struct reader_arg){.st = f->st, .ids = ids, .committed = &committed};
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &args[i]), 0);
    }
    for (int i = 1; i < 64; i++) {
        char uc[9];
        snprintf(uc, sizeof uc, "BCDFGH%c%c", "BCDFGHJKLMNPQRSTVWXZ"[i % 20],
                 "BCDFGHJKLMNPQRSTVWXZ"[i / 20]);
        ids[i] = add_lr(f->st, 10 + (unsigned)i, uc, T0);
        committed = i + 1;
    }
    for (int i = 0; i < READERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].bad, 0);
    }
    /* The opening connection, the writer, the checkpointer and at most 4 shared readers:
     * never one per thread. */
    assert_non_null(realpath(f->path, real));
    assert_in_range(db_fds(real), 1, 7);
}

/* --- passkeys (store version 6) -------------------------------------------------------------- */

static qrl_passkey_rec make_passkey(int64_t account_id, unsigned char seed, size_t cred_len,
                                    int64_t created)
{
    qrl_passkey_rec pk;

    memset(&pk, 0, sizeof pk);
    pk.account_id = account_id;
    memset(pk.cred_id, seed, cred_len);
    pk.cred_id_len = cred_len;
    pk.alg = -7;
    pk.pubkey[0] = 0x04;
    memset(pk.pubkey + 1, seed ^ 0x5a, 64);
    pk.pubkey_len = 65;
    pk.sign_count = 7;
    snprintf(pk.name, sizeof pk.name, "Key %u", seed);
    pk.created_ms = created;
    return pk;
}

static void test_passkey_add_get_list(void **state)
{
    fixture *f = *state;
    int64_t alice = add_account(f->st, "alice", 0), bob = add_account(f->st, "bob", 0);
    qrl_passkey_rec a = make_passkey(alice, 1, 16, T0 + 2);
    qrl_passkey_rec b = make_passkey(alice, 2, QRL_MAX_CRED_ID, T0 + 1);
    qrl_passkey_rec c = make_passkey(bob, 3, 32, T0);
    qrl_passkey_rec got, list[4];
    size_t n = 99;

    assert_true(f->st->m->version >= 6);
    a.last_used_ms = 12345; /* ignored on insert */
    assert_int_equal(f->st->m->passkey_add(f->st, &a), QRL_OK);
    assert_true(a.id > 0);
    assert_int_equal(a.last_used_ms, 0);
    assert_int_equal(f->st->m->passkey_add(f->st, &b), QRL_OK);
    assert_int_equal(f->st->m->passkey_add(f->st, &c), QRL_OK);
    reopen(f);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM passkeys"), 3);

    assert_int_equal(f->st->m->passkey_get(f->st, b.cred_id, b.cred_id_len, &got), QRL_OK);
    assert_int_equal(got.id, b.id);
    assert_int_equal(got.account_id, alice);
    assert_int_equal(got.cred_id_len, QRL_MAX_CRED_ID);
    assert_memory_equal(got.cred_id, b.cred_id, QRL_MAX_CRED_ID);
    assert_int_equal(got.alg, -7);
    assert_int_equal(got.pubkey_len, 65);
    assert_memory_equal(got.pubkey, b.pubkey, 65);
    assert_int_equal(got.sign_count, 7);
    assert_string_equal(got.name, "Key 2");
    assert_int_equal(got.created_ms, T0 + 1);
    assert_int_equal(got.last_used_ms, 0);
    /* A prefix of an id, or an unknown one, is not found. */
    assert_int_equal(f->st->m->passkey_get(f->st, b.cred_id, 16, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->passkey_get(f->st, (const unsigned char *)"zz", 2, &got),
                     QRL_ERR_NOT_FOUND);

    /* Oldest first, only the account's own. */
    assert_int_equal(f->st->m->passkey_list(f->st, alice, list, 4, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, b.id);
    assert_int_equal(list[1].id, a.id);
    assert_int_equal(f->st->m->passkey_list(f->st, alice, list, 1, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(f->st->m->passkey_list(f->st, bob, list, 4, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, c.id);
    assert_int_equal(f->st->m->passkey_list(f->st, bob + 100, list, 4, &n), QRL_OK);
    assert_int_equal(n, 0);
}

static void test_passkey_add_refused(void **state)
{
    fixture *f = *state;
    int64_t alice = add_account(f->st, "alice", 0), bob = add_account(f->st, "bob", 0);
    qrl_passkey_rec a = make_passkey(alice, 1, 16, T0), dup = make_passkey(bob, 1, 16, T0);
    qrl_passkey_rec bad;

    assert_int_equal(f->st->m->passkey_add(f->st, &a), QRL_OK);
    /* The same credential id, even for another account, is taken. */
    assert_int_equal(f->st->m->passkey_add(f->st, &dup), QRL_ERR_EXISTS);
    bad = make_passkey(alice, 2, 0, T0);
    assert_int_equal(f->st->m->passkey_add(f->st, &bad), QRL_ERR_INVALID);
    bad = make_passkey(alice, 2, 16, T0);
    bad.cred_id_len = QRL_MAX_CRED_ID + 1;
    assert_int_equal(f->st->m->passkey_add(f->st, &bad), QRL_ERR_INVALID);
    bad = make_passkey(alice, 2, 16, T0);
    bad.pubkey_len = 0;
    assert_int_equal(f->st->m->passkey_add(f->st, &bad), QRL_ERR_INVALID);
    bad = make_passkey(alice, 2, 16, T0);
    memset(bad.name, 'x', sizeof bad.name); /* no NUL */
    assert_int_equal(f->st->m->passkey_add(f->st, &bad), QRL_ERR_INVALID);
    bad = make_passkey(alice + bob + 100, 2, 16, T0); /* no such account */
    assert_int_equal(f->st->m->passkey_add(f->st, &bad), QRL_ERR_NOT_FOUND);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM passkeys"), 1);
}

static void test_passkey_use(void **state)
{
    fixture *f = *state;
    int64_t alice = add_account(f->st, "alice", 0);
    qrl_passkey_rec a = make_passkey(alice, 1, 16, T0), got;

    assert_int_equal(f->st->m->passkey_add(f->st, &a), QRL_OK);
    /* The counter is a compare-and-set: a stale old value changes nothing. */
    assert_int_equal(f->st->m->passkey_use(f->st, a.id, 6, 9, T0 + 5), QRL_ERR_CONFLICT);
    assert_int_equal(f->st->m->passkey_use(f->st, a.id, 7, 9, T0 + 5), QRL_OK);
    assert_int_equal(f->st->m->passkey_use(f->st, a.id, 7, 10, T0 + 6), QRL_ERR_CONFLICT);
    assert_int_equal(f->st->m->passkey_use(f->st, a.id + 100, 0, 1, T0 + 6), QRL_ERR_NOT_FOUND);
    reopen(f);
    assert_int_equal(f->st->m->passkey_get(f->st, a.cred_id, a.cred_id_len, &got), QRL_OK);
    assert_int_equal(got.sign_count, 9);
    assert_int_equal(got.last_used_ms, T0 + 5);
    /* Counters are unsigned 32-bit values (WebAuthn signCount). */
    assert_int_equal(f->st->m->passkey_use(f->st, a.id, 9, UINT32_MAX, T0 + 7), QRL_OK);
    assert_int_equal(f->st->m->passkey_get(f->st, a.cred_id, a.cred_id_len, &got), QRL_OK);
    assert_true(got.sign_count == UINT32_MAX);
}

static void test_passkey_delete(void **state)
{
    fixture *f = *state;
    int64_t alice = add_account(f->st, "alice", 0), bob = add_account(f->st, "bob", 0);
    qrl_passkey_rec a = make_passkey(alice, 1, 16, T0), got;

    assert_int_equal(f->st->m->passkey_add(f->st, &a), QRL_OK);
    /* Another account cannot delete it, and it stays. */
    assert_int_equal(f->st->m->passkey_delete(f->st, bob, a.id), QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->passkey_delete(f->st, alice, a.id + 1), QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->passkey_get(f->st, a.cred_id, a.cred_id_len, &got), QRL_OK);
    assert_int_equal(f->st->m->passkey_delete(f->st, alice, a.id), QRL_OK);
    assert_int_equal(f->st->m->passkey_delete(f->st, alice, a.id), QRL_ERR_NOT_FOUND);
    reopen(f);
    assert_int_equal(f->st->m->passkey_get(f->st, a.cred_id, a.cred_id_len, &got),
                     QRL_ERR_NOT_FOUND);
    /* Its credential id can be registered again. */
    assert_int_equal(f->st->m->passkey_add(f->st, &a), QRL_OK);
}

/* --- WebAuthn challenges (store version 11) ------------------------------------------------- */

#define CHAL_TTL 120000LL
#define CHAL_MAX QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE

static qrl_challenge_rec make_chal(unsigned seed, int64_t device_id, int64_t expires)
{
    qrl_challenge_rec c;

    memset(&c, 0, sizeof c);
    c.hash = hash_of(seed);
    c.account_id = 1;
    c.device_id = device_id;
    c.purpose = 1;
    c.expires_ms = expires;
    return c;
}

static int64_t chal_count(const fixture *f, int64_t device_id)
{
    char sql[96];

    snprintf(sql, sizeof sql, "SELECT count(*) FROM webauthn_challenges WHERE device_id = %lld",
             (long long)device_id);
    return db_int(f->path, sql);
}

/* Put, take once, never twice; what was put comes back; refusals change nothing. */
static void test_challenge_put_take(void **state)
{
    fixture *f = *state;
    qrl_challenge_rec a = make_chal(1, 7, T0 + CHAL_TTL), b = make_chal(2, 7, T0 + CHAL_TTL);
    qrl_challenge_rec got, bad;
    qrl_hash unknown = hash_of(99);

    assert_true(f->st->m->version >= 11);
    assert_non_null(f->st->m->challenge_put);
    assert_non_null(f->st->m->challenge_take);
    a.account_id = 3;
    a.lr_id = 42;
    a.purpose = 2;
    assert_int_equal(f->st->m->challenge_put(f->st, &a, T0), QRL_OK);
    assert_int_equal(f->st->m->challenge_put(f->st, &b, T0), QRL_OK);
    assert_int_equal(f->st->m->challenge_put(f->st, &a, T0), QRL_ERR_EXISTS);
    /* A put survives the process (lazy: a power loss may lose it, a close does not). */
    reopen(f);
    assert_int_equal(chal_count(f, 7), 2);

    memset(&got, 0xff, sizeof got);
    assert_int_equal(f->st->m->challenge_take(f->st, &a.hash, T0 + 1000, &got), QRL_OK);
    assert_memory_equal(got.hash.b, a.hash.b, QRL_HASH_BYTES);
    assert_int_equal(got.account_id, 3);
    assert_int_equal(got.device_id, 7);
    assert_int_equal(got.lr_id, 42);
    assert_int_equal(got.purpose, 2);
    assert_int_equal(got.expires_ms, T0 + CHAL_TTL);
    /* One use. */
    assert_int_equal(f->st->m->challenge_take(f->st, &a.hash, T0 + 1000, &got), QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->challenge_take(f->st, &b.hash, T0 + 1000, NULL), QRL_OK);
    assert_int_equal(f->st->m->challenge_take(f->st, &unknown, T0 + 1000, &got),
                     QRL_ERR_NOT_FOUND);
    /* A take is durable: gone after a reopen too. */
    reopen(f);
    assert_int_equal(chal_count(f, 7), 0);

    assert_int_equal(f->st->m->challenge_put(f->st, NULL, T0), QRL_ERR_INVALID);
    assert_int_equal(f->st->m->challenge_take(f->st, NULL, T0, &got), QRL_ERR_INVALID);
    bad = make_chal(3, 7, T0 + CHAL_TTL);
    bad.account_id = 0;
    assert_int_equal(f->st->m->challenge_put(f->st, &bad, T0), QRL_ERR_INVALID);
    bad = make_chal(3, 0, T0 + CHAL_TTL);
    assert_int_equal(f->st->m->challenge_put(f->st, &bad, T0), QRL_ERR_INVALID);
    bad = make_chal(3, 7, T0 + CHAL_TTL);
    bad.lr_id = -1;
    assert_int_equal(f->st->m->challenge_put(f->st, &bad, T0), QRL_ERR_INVALID);
    bad = make_chal(3, 7, T0 + CHAL_TTL);
    bad.purpose = 0;
    assert_int_equal(f->st->m->challenge_put(f->st, &bad, T0), QRL_ERR_INVALID);
    bad = make_chal(3, 7, T0); /* expired as it is put */
    assert_int_equal(f->st->m->challenge_put(f->st, &bad, T0), QRL_ERR_INVALID);
    assert_int_equal(chal_count(f, 7), 0);
}

/* An expired challenge is never taken (and goes all the same); the sweep deletes the expired
 * and keeps the live. */
static void test_challenge_expired(void **state)
{
    fixture *f = *state;
    qrl_challenge_rec a = make_chal(1, 7, T0 + CHAL_TTL), b = make_chal(2, 7, T0 + 1000);
    qrl_challenge_rec c = make_chal(3, 8, T0 + CHAL_TTL), got;

    assert_int_equal(f->st->m->challenge_put(f->st, &a, T0), QRL_OK);
    assert_int_equal(f->st->m->challenge_take(f->st, &a.hash, T0 + CHAL_TTL, &got),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(chal_count(f, 7), 0);

    assert_int_equal(f->st->m->challenge_put(f->st, &b, T0), QRL_OK);
    assert_int_equal(f->st->m->challenge_put(f->st, &c, T0), QRL_OK);
    assert_int_equal(f->st->m->sweep(f->st, T0 + 999, 3600000), QRL_OK);
    assert_int_equal(chal_count(f, 7), 1);
    assert_int_equal(f->st->m->sweep(f->st, T0 + 1000, 3600000), QRL_OK);
    assert_int_equal(chal_count(f, 7), 0);
    assert_int_equal(chal_count(f, 8), 1);
    assert_int_equal(f->st->m->challenge_take(f->st, &c.hash, T0 + 1000, &got), QRL_OK);
}

/* However often one phone asks, it holds at most CHAL_MAX challenges: its newest. Another
 * phone's are left alone. Its expired ones go at its next put. */
static void test_challenge_per_device_bound(void **state)
{
    fixture *f = *state;
    qrl_challenge_rec other = make_chal(1, 8, T0 + CHAL_TTL), got;

    assert_int_equal(f->st->m->challenge_put(f->st, &other, T0), QRL_OK);
    for (unsigned i = 0; i < CHAL_MAX + 3; i++) {
        qrl_challenge_rec c = make_chal(10 + i, 7, T0 + CHAL_TTL + i);
        assert_int_equal(f->st->m->challenge_put(f->st, &c, T0 + i), QRL_OK);
        assert_true(chal_count(f, 7) <= CHAL_MAX);
    }
    assert_int_equal(chal_count(f, 7), CHAL_MAX);
    for (unsigned i = 0; i < CHAL_MAX + 3; i++) {
        qrl_challenge_rec c = make_chal(10 + i, 7, 0);
        assert_int_equal(f->st->m->challenge_take(f->st, &c.hash, T0 + 100, &got),
                         i < 3 ? QRL_ERR_NOT_FOUND : QRL_OK);
    }
    assert_int_equal(f->st->m->challenge_take(f->st, &other.hash, T0 + 100, &got), QRL_OK);

    for (unsigned i = 0; i < CHAL_MAX; i++) {
        qrl_challenge_rec c = make_chal(30 + i, 9, T0 + 1000 + i);
        assert_int_equal(f->st->m->challenge_put(f->st, &c, T0), QRL_OK);
    }
    /* At T0 + 1002 three have expired: they make the room, no live one goes. */
    qrl_challenge_rec late = make_chal(50, 9, T0 + 1002 + CHAL_TTL);
    assert_int_equal(f->st->m->challenge_put(f->st, &late, T0 + 1002), QRL_OK);
    assert_int_equal(chal_count(f, 9), CHAL_MAX - 3 + 1);
    qrl_challenge_rec live = make_chal(30 + 3, 9, 0);
    assert_int_equal(f->st->m->challenge_take(f->st, &live.hash, T0 + 1002, &got), QRL_OK);
}

struct chal_race {
    qrl_store *st;
    qrl_hash h;
    int64_t device_id; /* puts: the one phone they all put for */
    pthread_barrier_t barrier;
    qrl_err rc[NTHREADS];
};

struct chal_racer {
    struct chal_race *r;
    int i;
};

static void *chal_take_racer(void *arg)
{
    struct chal_racer *me = arg;
    qrl_challenge_rec got;

    pthread_barrier_wait(&me->r->barrier);
    me->r->rc[me->i] = me->r->st->m->challenge_take(me->r->st, &me->r->h, T0 + 1000, &got);
    if (me->r->rc[me->i] == QRL_OK && got.device_id != 7)
        me->r->rc[me->i] = QRL_ERR_STORE;
    return NULL;
}

static void *chal_put_racer(void *arg)
{
    struct chal_racer *me = arg;
    qrl_challenge_rec c = make_chal(200 + (unsigned)me->i, me->r->device_id, T0 + CHAL_TTL);

    pthread_barrier_wait(&me->r->barrier);
    me->r->rc[me->i] = me->r->st->m->challenge_put(me->r->st, &c, T0);
    return NULL;
}

static void run_chal_race(struct chal_race *r, void *(*fn)(void *))
{
    pthread_t th[NTHREADS];
    struct chal_racer who[NTHREADS];

    assert_int_equal(pthread_barrier_init(&r->barrier, NULL, NTHREADS), 0);
    for (int i = 0; i < NTHREADS; i++) {
        who[i].r = r;
        who[i].i = i;
        assert_int_equal(pthread_create(&th[i], NULL, fn, &who[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&r->barrier);
}

/* 16 threads take one challenge at once: exactly one gets it. 16 threads put for one phone at
 * once: it holds CHAL_MAX afterwards, not more. */
static void test_challenge_races(void **state)
{
    fixture *f = *state;
    struct chal_race r;

    for (unsigned round = 0; round < 4; round++) {
        qrl_challenge_rec c = make_chal(100 + round, 7, T0 + CHAL_TTL);
        int wins = 0;

        memset(&r, 0, sizeof r);
        r.st = f->st;
        r.h = c.hash;
        assert_int_equal(f->st->m->challenge_put(f->st, &c, T0), QRL_OK);
        run_chal_race(&r, chal_take_racer);
        for (int i = 0; i < NTHREADS; i++) {
            if (r.rc[i] == QRL_OK)
                wins++;
            else
                assert_int_equal(r.rc[i], QRL_ERR_NOT_FOUND);
        }
        assert_int_equal(wins, 1);
    }
    memset(&r, 0, sizeof r);
    r.st = f->st;
    r.device_id = 11;
    run_chal_race(&r, chal_put_racer);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(r.rc[i], QRL_OK);
    assert_int_equal(chal_count(f, 11), CHAL_MAX);
}

/* A version-4 database (before passkeys) gains the table and keeps its rows. */
static void test_migrate_from_v4(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    int64_t alice = add_account(f->st, "alice", 0);
    qrl_passkey_rec a = make_passkey(alice, 1, 16, T0);
    qrl_account_rec acc;

    f->st->m->close(f->st);
    f->st = NULL;
    db_exec(f->path,
            "DROP TABLE passkeys; ALTER TABLE login_requests DROP COLUMN device_platform;" DROP_V7
            "PRAGMA user_version = 4;");
    assert_int_equal(qrl_store_sqlite_open(f->path, &f->st, err, sizeof err), QRL_OK);
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), SCHEMA_NOW);
    assert_int_equal(f->st->m->account_get(f->st, alice, &acc), QRL_OK);
    assert_int_equal(f->st->m->passkey_add(f->st, &a), QRL_OK);
}

/* A version-5 database (before the screen's platform) gains the column; its requests keep
 * every field and read back with platform "", and new ones store theirs. */
static void test_migrate_from_v5(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    qrl_lr_rec lr = make_lr(1, "WDJBMJHT", T0), lr2 = make_lr(2, "BCDFGHJK", T0), got;
    qrl_lr_secret_key sk;

    lr.device_platform[0] = '\0';
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_OK);
    assert_int_equal(move(f->st, lr.id, QRL_LR_BIT(QRL_LR_PENDING), QRL_LR_SCANNED, T0 + 1),
                     QRL_OK);
    f->st->m->close(f->st);
    f->st = NULL;
    db_exec(f->path, "ALTER TABLE login_requests DROP COLUMN device_platform;" DROP_V7
                     "PRAGMA user_version = 5;");
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_table_info('login_requests')"
                                     " WHERE name = 'device_platform'"),
                     0);
    assert_int_equal(qrl_store_sqlite_open(f->path, &f->st, err, sizeof err), QRL_OK);
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), SCHEMA_NOW);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM login_requests"), 1);
    sk = (qrl_lr_secret_key){.id = lr.id, .hash = lr.scan_hash};
    assert_int_equal(f->st->m->lr_find(f->st, QRL_LR_KEY_SCAN, &sk, T0, &got), QRL_OK);
    assert_int_equal(got.id, lr.id);
    assert_int_equal(got.state, QRL_LR_SCANNED);
    assert_string_equal(got.user_code, "WDJBMJHT");
    assert_string_equal(got.device_name, "Living Room TV");
    assert_string_equal(got.device_kind, "tv");
    assert_string_equal(got.address, "198.51.100.7");
    assert_int_equal(got.expires_ms, T0 + TTL);
    assert_string_equal(got.device_platform, "");
    /* The migrated request still holds its user code. */
    lr = make_lr(3, "WDJBMJHT", T0 + 2);
    assert_int_equal(f->st->m->lr_create(f->st, &lr), QRL_ERR_EXISTS);
    assert_int_equal(f->st->m->lr_create(f->st, &lr2), QRL_OK);
    reopen(f);
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), SCHEMA_NOW);
    assert_int_equal(f->st->m->lr_get(f->st, lr2.id, &got), QRL_OK);
    assert_string_equal(got.device_platform, "Samsung Tizen");
}

/* --- notices of new devices (store version 10) --------------------------------------------- */

static qrl_notice_rec make_notice(int64_t id, int64_t account_id, int64_t device_id,
                                  int64_t created)
{
    qrl_notice_rec n;

    memset(&n, 0, sizeof n);
    n.id = id;
    n.account_id = account_id;
    n.device_id = device_id;
    n.created_ms = created;
    snprintf(n.platform, sizeof n.platform, "Chrome on Linux");
    return n;
}

static size_t notices_of(qrl_store *st, int64_t account, int64_t device, int64_t since,
                         qrl_notice_rec *out, size_t max)
{
    size_t n = 99;

    assert_int_equal(st->m->notice_list(st, account, device, since, out, max, &n), QRL_OK);
    return n;
}

/* A notice is listed to the account's other devices with its device's row, until each
 * acknowledges it; get finds it for its own account only; ids are the caller's. */
static void test_notice_add_list_get_ack(void **state)
{
    fixture *f = *state;
    qrl_notice_rec got[4], one;
    int64_t alice = add_account(f->st, "alice", 0), bob = add_account(f->st, "bob", 0);
    int64_t phone = add_device(f->st, alice, "Phone", T0);
    int64_t phone2 = add_device(f->st, alice, "Tablet", T0 + 5);
    int64_t bob_phone = add_device(f->st, bob, "Bob's phone", T0);
    qrl_device_rec tv = make_device(alice, "Living Room TV", T0 + 10);
    qrl_notice_rec n, bad;

    snprintf(tv.kind, sizeof tv.kind, "tv");
    snprintf(tv.address, sizeof tv.address, "198.51.100.7");
    assert_int_equal(f->st->m->device_create(f->st, &tv, NULL, 0), QRL_OK);
    assert_true(f->st->m->version >= 10);
    n = make_notice(5000, alice, tv.id, T0 + 20);
    assert_int_equal(f->st->m->notice_add(f->st, &n, T0 - 1000), QRL_OK);
    assert_int_equal(f->st->m->notice_add(f->st, &n, T0 - 1000), QRL_ERR_EXISTS);
    bad = make_notice(0, alice, tv.id, T0 + 20);
    assert_int_equal(f->st->m->notice_add(f->st, &bad, T0 - 1000), QRL_ERR_INVALID);
    bad = make_notice(5001, alice, 999999, T0 + 20); /* no such device */
    assert_int_equal(f->st->m->notice_add(f->st, &bad, T0 - 1000), QRL_ERR_NOT_FOUND);

    assert_int_equal(notices_of(f->st, alice, phone, T0, got, 4), 1);
    assert_int_equal(got[0].id, 5000);
    assert_int_equal(got[0].account_id, alice);
    assert_int_equal(got[0].device_id, tv.id);
    assert_int_equal(got[0].created_ms, T0 + 20);
    assert_string_equal(got[0].platform, "Chrome on Linux");
    assert_int_equal(got[0].device.id, tv.id);
    assert_string_equal(got[0].device.name, "Living Room TV");
    assert_string_equal(got[0].device.kind, "tv");
    assert_string_equal(got[0].device.address, "198.51.100.7");
    assert_int_equal(got[0].device.revoked_ms, 0);
    /* Not to the new device itself, not before `since`, not to another account. */
    assert_int_equal(notices_of(f->st, alice, tv.id, T0, got, 4), 0);
    assert_int_equal(notices_of(f->st, alice, phone, T0 + 21, got, 4), 0);
    assert_int_equal(notices_of(f->st, bob, bob_phone, T0, got, 4), 0);

    assert_int_equal(f->st->m->notice_get(f->st, alice, 5000, &one), QRL_OK);
    assert_int_equal(one.device_id, tv.id);
    assert_string_equal(one.device.name, "Living Room TV");
    assert_int_equal(f->st->m->notice_get(f->st, bob, 5000, &one), QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->notice_get(f->st, alice, 5002, &one), QRL_ERR_NOT_FOUND);

    /* Acknowledged by one device: gone for it, still there for the other; twice is fine. */
    assert_int_equal(f->st->m->notice_ack(f->st, alice, 5000, phone, T0 + 30), QRL_OK);
    assert_int_equal(f->st->m->notice_ack(f->st, alice, 5000, phone, T0 + 31), QRL_OK);
    assert_int_equal(f->st->m->notice_ack(f->st, bob, 5000, bob_phone, T0 + 31), QRL_ERR_NOT_FOUND);
    assert_int_equal(f->st->m->notice_ack(f->st, alice, 5009, phone, T0 + 31), QRL_ERR_NOT_FOUND);
    assert_int_equal(notices_of(f->st, alice, phone, T0, got, 4), 0);
    assert_int_equal(notices_of(f->st, alice, phone2, T0, got, 4), 1);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM notice_acks"), 1);

    /* Newest first, at most `max`. */
    int64_t tv2 = add_device(f->st, alice, "Bedroom TV", T0 + 40);
    n = make_notice(6000, alice, tv2, T0 + 41);
    n.platform[0] = '\0';
    assert_int_equal(f->st->m->notice_add(f->st, &n, T0 - 1000), QRL_OK);
    assert_int_equal(notices_of(f->st, alice, phone2, T0, got, 4), 2);
    assert_int_equal(got[0].id, 6000);
    assert_string_equal(got[0].platform, "");
    assert_int_equal(got[1].id, 5000);
    assert_int_equal(notices_of(f->st, alice, phone2, T0, got, 1), 1);
    assert_int_equal(got[0].id, 6000);

    /* A revoked device drops out of every list; get still finds its notice. */
    assert_int_equal(f->st->m->device_revoke(f->st, alice, tv.id, T0 + 50), QRL_OK);
    assert_int_equal(notices_of(f->st, alice, phone2, T0, got, 4), 1);
    assert_int_equal(got[0].id, 6000);
    assert_int_equal(f->st->m->notice_get(f->st, alice, 5000, &one), QRL_OK);
    assert_int_equal(one.device.revoked_ms, T0 + 50);
}

/* Adding a notice deletes the account's notices older than the horizon, with their
 * acknowledgements, and no other account's. */
static void test_notice_prune(void **state)
{
    fixture *f = *state;
    qrl_notice_rec got[4], n;
    int64_t alice = add_account(f->st, "alice", 0), bob = add_account(f->st, "bob", 0);
    int64_t phone = add_device(f->st, alice, "Phone", T0 - 10);
    int64_t tv = add_device(f->st, alice, "TV", T0);
    int64_t tv2 = add_device(f->st, alice, "TV 2", T0 + 100000);
    int64_t bob_phone = add_device(f->st, bob, "Phone", T0 - 10);
    int64_t bob_tv = add_device(f->st, bob, "TV", T0);

    n = make_notice(100, alice, tv, T0);
    assert_int_equal(f->st->m->notice_add(f->st, &n, 0), QRL_OK);
    n = make_notice(101, bob, bob_tv, T0);
    assert_int_equal(f->st->m->notice_add(f->st, &n, 0), QRL_OK);
    assert_int_equal(f->st->m->notice_ack(f->st, alice, 100, phone, T0 + 1), QRL_OK);
    n = make_notice(200, alice, tv2, T0 + 100000);
    assert_int_equal(f->st->m->notice_add(f->st, &n, T0 + 1), QRL_OK);
    assert_int_equal(f->st->m->notice_get(f->st, alice, 100, &n), QRL_ERR_NOT_FOUND);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM notice_acks"), 0);
    assert_int_equal(notices_of(f->st, alice, phone, 0, got, 4), 1);
    assert_int_equal(got[0].id, 200);
    assert_int_equal(notices_of(f->st, bob, bob_phone, 0, got, 4), 1);
    assert_int_equal(got[0].id, 101);
}

/* Notices and acknowledgements are in the file: a reopened store lists the same. */
static void test_notice_reopen(void **state)
{
    fixture *f = *state;
    qrl_notice_rec got[4], n;
    int64_t alice = add_account(f->st, "alice", 0);
    int64_t phone = add_device(f->st, alice, "Phone", T0);
    int64_t phone2 = add_device(f->st, alice, "Phone 2", T0);
    int64_t tv = add_device(f->st, alice, "TV", T0 + 1);

    n = make_notice(300, alice, tv, T0 + 1);
    assert_int_equal(f->st->m->notice_add(f->st, &n, 0), QRL_OK);
    assert_int_equal(f->st->m->notice_ack(f->st, alice, 300, phone, T0 + 2), QRL_OK);
    reopen(f);
    assert_int_equal(notices_of(f->st, alice, phone, T0, got, 4), 0);
    assert_int_equal(notices_of(f->st, alice, phone2, T0, got, 4), 1);
    assert_string_equal(got[0].device.name, "TV");
}

/* A version-6 database (before notices) gains the two tables and keeps its devices. */
static void test_migrate_from_v6(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    qrl_notice_rec got[2], n;
    int64_t alice = add_account(f->st, "alice", 0);
    int64_t phone = add_device(f->st, alice, "Phone", T0);
    int64_t tv = add_device(f->st, alice, "TV", T0 + 1);

    f->st->m->close(f->st);
    f->st = NULL;
    db_exec(f->path, DROP_V7 "PRAGMA user_version = 6;");
    assert_int_equal(qrl_store_sqlite_open(f->path, &f->st, err, sizeof err), QRL_OK);
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), SCHEMA_NOW);
    n = make_notice(400, alice, tv, T0 + 1);
    assert_int_equal(f->st->m->notice_add(f->st, &n, 0), QRL_OK);
    assert_int_equal(notices_of(f->st, alice, phone, T0, got, 2), 1);
}

/* --- notices of blocked requests (store version 11) ------------------------------------------ */

/* A notice that phone `device` of `account` was stopped from approving a phishing request. */
static qrl_notice_rec make_blocked(int64_t id, int64_t account_id, int64_t device_id,
                                   int64_t created)
{
    qrl_notice_rec n = make_notice(id, account_id, device_id, created);

    n.kind = QRL_NOTICE_REQUEST_BLOCKED;
    snprintf(n.platform, sizeof n.platform, "Samsung Tizen");
    snprintf(n.reason, sizeof n.reason, "many_networks");
    snprintf(n.screen_name, sizeof n.screen_name, "Living Room TV");
    snprintf(n.screen_kind, sizeof n.screen_kind, "tv");
    snprintf(n.screen_address, sizeof n.screen_address, "198.51.100.7");
    return n;
}

/* A blocked request's notice keeps every field, is listed to every device of the account (the
 * stopped phone too) and to no other account, is acknowledged per device, and stays listed
 * after the phone is revoked; a notice of a new device is listed as before beside it. */
static void test_notice_blocked(void **state)
{
    fixture *f = *state;
    qrl_notice_rec got[4], one, bad;
    int64_t alice = add_account(f->st, "alice", 0), bob = add_account(f->st, "bob", 0);
    int64_t phone = add_device(f->st, alice, "Phone", T0);
    int64_t tablet = add_device(f->st, alice, "Tablet", T0 + 5);
    int64_t bob_phone = add_device(f->st, bob, "Bob's phone", T0);
    int64_t tv = add_device(f->st, alice, "TV", T0 + 10);
    qrl_notice_rec n = make_blocked(7000, alice, phone, T0 + 20), linked;

    assert_true(f->st->m->version >= 11);
    assert_int_equal(f->st->m->notice_add(f->st, &n, T0 - 1000), QRL_OK);
    /* A kind that is none, and strings too long for their fields, are refused. */
    bad = make_blocked(7001, alice, phone, T0 + 20);
    bad.kind = (qrl_notice_kind)3;
    assert_int_equal(f->st->m->notice_add(f->st, &bad, T0 - 1000), QRL_ERR_INVALID);
    bad = make_blocked(7001, alice, phone, T0 + 20);
    memset(bad.reason, 'r', sizeof bad.reason);
    assert_int_equal(f->st->m->notice_add(f->st, &bad, T0 - 1000), QRL_ERR_INVALID);
    bad = make_blocked(7001, alice, phone, T0 + 20);
    memset(bad.screen_name, 'n', sizeof bad.screen_name);
    assert_int_equal(f->st->m->notice_add(f->st, &bad, T0 - 1000), QRL_ERR_INVALID);
    bad = make_blocked(7001, alice, phone, T0 + 20);
    memset(bad.screen_kind, 'k', sizeof bad.screen_kind);
    assert_int_equal(f->st->m->notice_add(f->st, &bad, T0 - 1000), QRL_ERR_INVALID);
    bad = make_blocked(7001, alice, phone, T0 + 20);
    memset(bad.screen_address, 'a', sizeof bad.screen_address);
    assert_int_equal(f->st->m->notice_add(f->st, &bad, T0 - 1000), QRL_ERR_INVALID);
    /* Kind 0 is a new device's notice. */
    linked = make_notice(6900, alice, tv, T0 + 15);
    linked.kind = (qrl_notice_kind)0;
    assert_int_equal(f->st->m->notice_add(f->st, &linked, T0 - 1000), QRL_OK);

    /* The stopped phone hears of it, and so does the account's other device. */
    assert_int_equal(notices_of(f->st, alice, phone, T0, got, 4), 2);
    assert_int_equal(got[0].id, 7000);
    assert_int_equal(got[0].kind, QRL_NOTICE_REQUEST_BLOCKED);
    assert_int_equal(got[0].account_id, alice);
    assert_int_equal(got[0].device_id, phone);
    assert_int_equal(got[0].created_ms, T0 + 20);
    assert_string_equal(got[0].platform, "Samsung Tizen");
    assert_string_equal(got[0].reason, "many_networks");
    assert_string_equal(got[0].screen_name, "Living Room TV");
    assert_string_equal(got[0].screen_kind, "tv");
    assert_string_equal(got[0].screen_address, "198.51.100.7");
    assert_int_equal(got[0].device.id, phone);
    assert_string_equal(got[0].device.name, "Phone");
    assert_int_equal(got[1].id, 6900);
    assert_int_equal(got[1].kind, QRL_NOTICE_DEVICE_LINKED);
    assert_string_equal(got[1].reason, "");
    assert_string_equal(got[1].screen_name, "");
    assert_int_equal(notices_of(f->st, alice, tablet, T0, got, 4), 2);
    assert_int_equal(got[0].id, 7000);
    /* The new device hears of the blocked request, not of itself. */
    assert_int_equal(notices_of(f->st, alice, tv, T0, got, 4), 1);
    assert_int_equal(got[0].id, 7000);
    assert_int_equal(notices_of(f->st, bob, bob_phone, T0, got, 4), 0);
    assert_int_equal(notices_of(f->st, alice, tablet, T0 + 21, got, 4), 0);
    assert_int_equal(f->st->m->notice_get(f->st, alice, 7000, &one), QRL_OK);
    assert_int_equal(one.kind, QRL_NOTICE_REQUEST_BLOCKED);
    assert_string_equal(one.reason, "many_networks");
    assert_int_equal(f->st->m->notice_get(f->st, bob, 7000, &one), QRL_ERR_NOT_FOUND);

    /* Acknowledged by the phone: gone for it only. */
    assert_int_equal(f->st->m->notice_ack(f->st, alice, 7000, phone, T0 + 30), QRL_OK);
    assert_int_equal(notices_of(f->st, alice, phone, T0, got, 4), 1);
    assert_int_equal(got[0].id, 6900);
    assert_int_equal(notices_of(f->st, alice, tablet, T0, got, 4), 2);
    assert_int_equal(f->st->m->notice_ack(f->st, bob, 7000, bob_phone, T0 + 30), QRL_ERR_NOT_FOUND);

    /* The phone is revoked: the blocked request is still told to the others (and to the phone's
     * own list); revoking the new device drops its notice as ever. */
    assert_int_equal(f->st->m->device_revoke(f->st, alice, phone, T0 + 40), QRL_OK);
    assert_int_equal(f->st->m->device_revoke(f->st, alice, tv, T0 + 41), QRL_OK);
    assert_int_equal(notices_of(f->st, alice, tablet, T0, got, 4), 1);
    assert_int_equal(got[0].id, 7000);
    assert_int_equal(got[0].device.revoked_ms, T0 + 40);
    reopen(f);
    assert_int_equal(notices_of(f->st, alice, tablet, T0, got, 4), 1);
    assert_string_equal(got[0].screen_name, "Living Room TV");
    assert_int_equal(notices_of(f->st, alice, phone, T0, got, 4), 0);
}

/* A version-7 database (notices of new devices only) gains the columns: its notice reads back as
 * a new device's with empty request fields, its acknowledgement is kept, and a blocked request's
 * notice can be added beside it. */
static void test_migrate_from_v7(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    qrl_notice_rec got[4], n;
    int64_t alice = add_account(f->st, "alice", 0);
    int64_t phone = add_device(f->st, alice, "Phone", T0);
    int64_t phone2 = add_device(f->st, alice, "Phone 2", T0);
    int64_t tv = add_device(f->st, alice, "TV", T0 + 1);

    n = make_notice(500, alice, tv, T0 + 1);
    assert_int_equal(f->st->m->notice_add(f->st, &n, 0), QRL_OK);
    assert_int_equal(f->st->m->notice_ack(f->st, alice, 500, phone, T0 + 2), QRL_OK);
    f->st->m->close(f->st);
    f->st = NULL;
    db_exec(f->path, DROP_V8 "PRAGMA user_version = 7;");
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_table_info('notices')"
                                     " WHERE name = 'kind'"),
                     0);
    assert_int_equal(qrl_store_sqlite_open(f->path, &f->st, err, sizeof err), QRL_OK);
    assert_int_equal(db_int(f->path, "PRAGMA user_version"), SCHEMA_NOW);
    assert_int_equal(db_int(f->path, "SELECT count(*) FROM notice_acks"), 1);
    assert_int_equal(notices_of(f->st, alice, phone, T0, got, 4), 0);
    assert_int_equal(notices_of(f->st, alice, phone2, T0, got, 4), 1);
    assert_int_equal(got[0].id, 500);
    assert_int_equal(got[0].kind, QRL_NOTICE_DEVICE_LINKED);
    assert_string_equal(got[0].platform, "Chrome on Linux");
    assert_string_equal(got[0].reason, "");
    assert_string_equal(got[0].screen_name, "");
    assert_string_equal(got[0].screen_address, "");
    n = make_blocked(600, alice, phone, T0 + 3);
    assert_int_equal(f->st->m->notice_add(f->st, &n, 0), QRL_OK);
    assert_int_equal(notices_of(f->st, alice, phone, T0, got, 4), 1);
    assert_int_equal(got[0].id, 600);
    assert_int_equal(got[0].kind, QRL_NOTICE_REQUEST_BLOCKED);
}

/* The methods of version 11 that spare a store shared by several nodes a round trip: one
 * process keeps the poll bookkeeping in its own memory (lr_poll is NULL), and its rate-limit
 * calls are in-process, so it leaves them NULL and the core calls lr_find and the two
 * rate-limit methods (tests/unit/lib/test_login_request.c, test_phishing.c). */
static void test_v11_one_statement_methods(void **state)
{
    fixture *f = *state;

    assert_null(f->st->m->lr_poll);
    assert_null(f->st->m->lr_poll_find);
    assert_null(f->st->m->ratelimit_first_hit);
    assert_non_null(f->st->m->ratelimit_take);
    assert_non_null(f->st->m->ratelimit_hit);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_device_pubkey),
        T(test_lr_nonce),
        T(test_lr_dpop_jkt),
        T(test_migrate_from_v1),
        T(test_migrate_from_v2),
        T(test_user_codes),
        T(test_lr_approve_redeem),
        T(test_many_readers_few_connections),
        T(test_open_migrate_reopen),
        T(test_open_errors),
        T(test_accounts),
        T(test_device_create_list),
        T(test_device_touch),
        T(test_device_revoke),
        T(test_token_insert_lookup_revoke),
        T(test_token_auth),
        T(test_write_blocks_until_commit),
        T(test_read_scope),
        T(test_read_scope_per_thread),
        T(test_set_notify),
        T(test_core_installs_notify),
        T(test_token_rotate),
        T(test_token_rotate_refused),
        T(test_lr_create),
        T(test_lr_find),
        T(test_lr_transition),
        T(test_lr_redeem),
        T(test_lr_by_device),
        T(test_ratelimit),
        T(test_ratelimit_take),
        T(test_sweep),
        T(test_race_transition),
        T(test_race_redeem),
        T(test_durability_sigkill),
        T(test_passkey_add_get_list),
        T(test_passkey_add_refused),
        T(test_passkey_use),
        T(test_passkey_delete),
        T(test_challenge_put_take),
        T(test_challenge_expired),
        T(test_challenge_per_device_bound),
        T(test_challenge_races),
        T(test_migrate_from_v4),
        T(test_migrate_from_v5),
        T(test_notice_add_list_get_ack),
        T(test_notice_prune),
        T(test_notice_reopen),
        T(test_migrate_from_v6),
        T(test_notice_blocked),
        T(test_migrate_from_v7),
        T(test_v11_one_statement_methods),
    };
#undef T
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
