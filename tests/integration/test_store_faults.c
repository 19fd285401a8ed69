/* SPDX-License-Identifier: MIT */
/*
 * The database in trouble.
 *
 * Locked by another process (an operator's `sqlite3` shell holding a write transaction, a
 * backup tool): writes cannot go through, and the client must be told to come back later (503
 * with Retry-After), not that the server is broken (500), and told soon (the writer waits 2 s
 * for the lock, lib/store/sqlite/connections.c); reads go on; nothing half happens, and once the
 * lock goes the server works on as before.
 *
 * The disk full (a small tmpfs holds the database; the suite runs as root, and without the
 * permission to mount the test fails and says why, it never skips): every request that writes
 * is a 503 with Retry-After and a JSON error, every read still works, nothing is half written
 * (the database is read directly afterwards), and once space is freed the same requests
 * succeed, without a restart.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static const it_account alice_only[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME},
                                        {NULL, NULL, NULL}};

/* A 503 as the client must see it: temporarily_unavailable in the RFC 6749 5.2 shape (JSON),
 * with Retry-After. */
#define expect_unavailable(r) expect_unavailable_((r), __FILE__, __LINE__)
static void expect_unavailable_(it_resp *r, const char *file, int line)
{
    it_expect_(r, 503, "temporarily_unavailable", file, line);
    it_expect_error_shape_(r, file, line);
    if (r->retry_after[0] == '\0') {
        print_error("a 503 without Retry-After\n");
        _fail(file, line);
    }
    it_resp_free(r);
}

/* --- the database, read directly ---------------------------------------------------------- */

static long long db_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        print_error("%s: %s\n", sql, sqlite3_errmsg(db));
        fail();
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void expect_intact(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *ok = (const char *)sqlite3_column_text(st, 0);
    if (ok == NULL || strcmp(ok, "ok") != 0) {
        print_error("integrity_check of %s: %s\n", path, ok != NULL ? ok : "(null)");
        fail();
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Every redeemed login request has exactly one device and that device one access and one
 * refresh token at most unspent; no device of a screen without its request, no token without
 * its device. */
static void expect_consistent(const char *path)
{
    expect_intact(path);
    assert_int_equal(db_int(path, "SELECT count(*) FROM login_requests l WHERE l.state = 3 AND"
                                  " (SELECT count(*) FROM devices d WHERE"
                                  "  d.id = l.redeemed_device_id) != 1"),
                     0);
    assert_int_equal(db_int(path, "SELECT count(*) FROM devices d WHERE d.kind != 'phone' AND"
                                  " NOT EXISTS (SELECT 1 FROM login_requests l WHERE"
                                  "  l.redeemed_device_id = d.id)"),
                     0);
    assert_int_equal(db_int(path, "SELECT count(*) FROM tokens t WHERE NOT EXISTS"
                                  " (SELECT 1 FROM devices d WHERE d.id = t.device_id)"),
                     0);
    assert_int_equal(db_int(path, "SELECT count(*) FROM (SELECT device_id FROM tokens"
                                  " WHERE kind = 2 AND used_ms = 0 AND revoked_ms = 0"
                                  " GROUP BY device_id HAVING count(*) > 1)"),
                     0);
}

/* --- locked --------------------------------------------------------------------------------- */

static void test_locked_database_is_503_with_retry_after(void **state)
{
    it_server *s = *state;
    sqlite3 *db = NULL;
    it_devauth da;
    it_phone phone;
    it_tokens t;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_login_screen(s, &phone, &t, NULL);

    assert_int_equal(sqlite3_open(s->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    const char *kv[] = {"client_id", IT_CLIENT_ID, "device_name", "Locked TV", NULL};
    it_req opt = {.timeout_ms = 30000};
    it_resp *r = it_form_post(s, "/oauth/device_authorization", kv, &opt);
    /* The writer waited for the lock (2 s), not for ever: SQLite's 10 s made it 10.0 s. */
    double waited = r->elapsed_s;
    fprintf(stderr, "store_faults: 503 after %.2f s of a held lock\n", waited);
    assert_true(waited >= 1.5 && waited < 5.0);
    expect_unavailable(r);
    /* Reads do not wait for the lock (WAL). */
    double t0 = it_now();
    assert_int_equal(it_introspect_active(s, t.access_token), 1);
    assert_true(it_now() - t0 < 1.0);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* The lock is gone: the same request goes through. */
    it_device_authorization(s, IT_CLIENT_ID, "Unlocked TV", "tv", NULL, &da);
    assert_true(da.device_code[0] != '\0');
    assert_int_equal(db_int(s->db, "SELECT count(*) FROM login_requests WHERE"
                                   " device_name = 'Locked TV'"),
                     0);
    expect_consistent(s->db);
}

/* --- disk full ------------------------------------------------------------------------------ */

/* Large enough for the database and its WAL index, small enough to fill in a moment. */
#define SMALL_FS "size=4m,mode=0700"

typedef struct full_fixture {
    char mnt[64];
    char filler[128];
    int mounted;
    it_server *s;
} full_fixture;

/* Moves a file to another file system (a missing one is fine: -wal and -shm may not exist). */
static void move_file(const char *from, const char *to)
{
    char buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC), out;
    ssize_t n;

    if (in < 0) {
        assert_int_equal(errno, ENOENT);
        return;
    }
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(out >= 0);
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    assert_int_equal(close(out), 0);
    assert_int_equal(unlink(from), 0);
}

static int full_setup(void **state)
{
    full_fixture *f = calloc(1, sizeof *f);
    static const char *const suffixes[] = {"", "-wal", "-shm"};

    assert_non_null(f);
    *state = f;
    snprintf(f->mnt, sizeof f->mnt, "/tmp/qrl-full-XXXXXX");
    assert_non_null(mkdtemp(f->mnt));
    if (mount("qrl-full", f->mnt, "tmpfs", MS_NOSUID | MS_NODEV, SMALL_FS) != 0) {
        print_error("cannot mount a small tmpfs (%s) at %s for the disk-full test: %s. The test "
                    "needs root (CAP_SYS_ADMIN); it fails rather than skip, so that a run "
                    "without it cannot pass for a run with it.\n",
                    SMALL_FS, f->mnt, strerror(errno));
        rmdir(f->mnt);
        f->mnt[0] = '\0';
        return -1;
    }
    f->mounted = 1;
    snprintf(f->filler, sizeof f->filler, "%s/filler", f->mnt);
    /* A database with alice in it, moved onto the small file system. */
    f->s = it_server_new_with_accounts(alice_only);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char from[320], to[320];
        snprintf(from, sizeof from, "%s%s", f->s->db, suffixes[i]);
        snprintf(to, sizeof to, "%s/qrlogin.db%s", f->mnt, suffixes[i]);
        move_file(from, to);
    }
    snprintf(f->s->db, sizeof f->s->db, "%s/qrlogin.db", f->mnt);
    return 0;
}

static int full_teardown(void **state)
{
    full_fixture *f = *state;

    if (f == NULL)
        return 0;
    if (f->s != NULL && f->s->pid > 0)
        it_server_stop(f->s);
    it_server_free(f->s); /* keeps the artifacts first, from the small file system */
    if (f->mounted && umount(f->mnt) != 0)
        fprintf(stderr, "store_faults: umount %s: %s\n", f->mnt, strerror(errno));
    if (f->mnt[0] != '\0')
        rmdir(f->mnt);
    free(f);
    *state = NULL;
    return 0;
}

/* Fills the file system to its last byte. */
static void fill(const full_fixture *f)
{
    static char block[65536];
    static const size_t sizes[] = {sizeof block, 4096, 1};
    int fd = open(f->filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    memset(block, 'x', sizeof block);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        while (write(fd, block, sizes[i]) > 0) {
        }
        assert_int_equal(errno, ENOSPC);
    }
    close(fd);
}

static it_resp *device_authorization(const it_server *s, const char *name)
{
    const char *kv[] = {"client_id", IT_CLIENT_ID, "device_name", name, NULL};
    it_resp *r = it_form_post(s, "/oauth/device_authorization", kv, NULL);
    assert_non_null(r);
    return r;
}

static it_resp *sign_in(const it_server *s)
{
    return it_json_send(s, "POST", "/v1/sessions", NULL,
                        json_pack("{s:s, s:s, s:s}", "username", IT_USER, "password", IT_PASSWORD,
                                  "device_name", "Full phone"));
}

static void test_disk_full_is_503_and_recovers(void **state)
{
    full_fixture *f = *state;
    it_server *s = f->s;
    it_phone phone;
    it_tokens t, t2;
    it_devauth claimed, approved;
    long long tv;

    /* Before: a phone, a signed-in TV, a request claimed by the phone, one approved and not
     * yet redeemed. */
    it_server_start(s);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", &phone);
    it_login_screen(s, &phone, &t, &tv);
    it_device_authorization(s, IT_CLIENT_ID, "Claimed TV", "tv", NULL, &claimed);
    it_resp *r = it_view(s, &phone, claimed.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_device_authorization(s, IT_CLIENT_ID, "Approved TV", "tv", NULL, &approved);
    r = it_view(s, &phone, approved.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, approved.scan_secret, approved.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    /* A clean restart empties the WAL (checkpointed and removed at close): with the disk full,
     * every write must then grow it, and none can reuse space it already had. */
    it_server_stop(s);
    it_server_start(s);
    long long requests = db_int(s->db, "SELECT count(*) FROM login_requests");
    long long tokens = db_int(s->db, "SELECT count(*) FROM tokens");
    long long devices = db_int(s->db, "SELECT count(*) FROM devices");

    fill(f);

    /* Every kind of write: a new login request, a sign-in, an approval, a redemption, a
     * refresh, a revocation. */
    expect_unavailable(device_authorization(s, "Full TV"));
    expect_unavailable(sign_in(s));
    expect_unavailable(it_approve(s, &phone, claimed.scan_secret, claimed.user_code, IT_PASSWORD));
    expect_unavailable(it_token_poll(s, IT_CLIENT_ID, approved.device_code, 0));
    expect_unavailable(it_refresh(s, IT_CLIENT_ID, t.refresh_token));
    expect_unavailable(it_revoke_device(s, &phone, tv));

    /* Reads work: introspection, the phone's list of devices, the view of its claimed request,
     * a screen's poll of a pending one. */
    assert_int_equal(it_introspect_active(s, t.access_token), 1);
    assert_true(it_find_device(s, &phone, "Living Room TV") == tv);
    r = it_view(s, &phone, claimed.scan_secret);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);
    it_clock_advance(s, 6000);
    r = it_token_poll(s, IT_CLIENT_ID, claimed.device_code, 0);
    it_expect_oauth_error(r, "authorization_pending");
    it_resp_free(r);

    /* Nothing half written: no new request, token or device; the claimed request is still
     * only claimed, the approved one still only approved; the file is sound. */
    assert_int_equal(db_int(s->db, "SELECT count(*) FROM login_requests"), requests);
    assert_int_equal(db_int(s->db, "SELECT count(*) FROM tokens"), tokens);
    assert_int_equal(db_int(s->db, "SELECT count(*) FROM devices"), devices);
    assert_int_equal(db_int(s->db, "SELECT state FROM login_requests WHERE"
                                   " device_name = 'Claimed TV'"),
                     1);
    assert_int_equal(db_int(s->db, "SELECT state FROM login_requests WHERE"
                                   " device_name = 'Approved TV'"),
                     2);
    assert_int_equal(db_int(s->db, "SELECT revoked_ms FROM devices WHERE name ="
                                   " 'Living Room TV'"),
                     0);
    expect_consistent(s->db);

    /* Space again: the same requests go through, on the same server. */
    assert_int_equal(unlink(f->filler), 0);
    r = device_authorization(s, "Full TV");
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = sign_in(s);
    it_expect(r, 201, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, claimed.scan_secret, claimed.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_clock_advance(s, 6000);
    r = it_token_poll(s, IT_CLIENT_ID, approved.device_code, 0);
    it_expect_tokens(r, NULL);
    it_resp_free(r);
    r = it_refresh(s, IT_CLIENT_ID, t.refresh_token);
    it_expect_tokens(r, &t2);
    it_resp_free(r);
    r = it_revoke_device(s, &phone, tv);
    it_expect(r, 204, NULL);
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t2.access_token), 0);
    expect_consistent(s->db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_locked_database_is_503_with_retry_after,
                                        it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_is_503_and_recovers, full_setup,
                                        full_teardown),
    };
    return cmocka_run_group_tests_name("integration/store_faults", tests, NULL, NULL);
}
