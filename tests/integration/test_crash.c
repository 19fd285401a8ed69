/* SPDX-License-Identifier: MIT */
/*
 * Crashes at the worst moments. For every crash point of the decisive writes (lib/crash.h:
 * approve, deny, redeem, refresh-token rotation, device revocation, and the group-commit
 * writer's before-commit and before-fdatasync), a server is started with QRL_CRASH_AT naming
 * it, the flow is driven to it, and the test sees the request fail without an answer and the
 * server die by SIGKILL (and its log name the point). The server then restarts on the same
 * database without the variable, and the test checks what a user relies on:
 *
 * - what was committed stands, answered or not: an approval whose answer never left is still
 *   an approval, and the screen gets its tokens;
 * - what was not committed changed nothing, and the same request, retried, goes through;
 * - a device code is redeemed at most once: one device and one token family per login request,
 *   counted in the database itself;
 * - a rotated refresh token is refused after the restart on whichever side of the crash the
 *   rotation fell, and the family has exactly one valid refresh token;
 * - a revoked device stays revoked.
 *
 * A user would notice a failure as an approval that "did not take", a TV signed in twice from
 * one code, a spent refresh token that works again, or a removed TV that comes back.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Login request states and token kinds as the store writes them (qrlogin/store.h). */
enum { LR_PENDING = 0, LR_SCANNED = 1, LR_APPROVED = 2, LR_REDEEMED = 3, LR_DENIED = 4 };
enum { TOKEN_ACCESS = 1, TOKEN_REFRESH = 2 };

/* A crashing server dies within this; generous for sanitizer builds. */
#define CRASH_WAIT_MS 20000

static const it_account alice_only[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME},
                                        {NULL, NULL, NULL}};

static void start_armed(it_server *s, const char *point)
{
    /* Only the server inherits it: `qrlogin account add` must never run armed. */
    assert_int_equal(setenv("QRL_CRASH_AT", point, 1), 0);
    it_server_start(s);
    assert_int_equal(unsetenv("QRL_CRASH_AT"), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 1 << 20);
    size_t n = 0;

    assert_non_null(buf);
    if (f != NULL) {
        n = fread(buf, 1, (1 << 20) - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    return buf;
}

/* The request `r` got no answer, the server died by SIGKILL, and it was at `point`. */
static void expect_crash(it_server *s, it_resp *r, const char *point)
{
    char line[128];

    assert_non_null(r);
    if (r->status != 0) {
        print_error("expected no answer (the server dies at %s), got HTTP %ld: %.400s\n", point,
                    r->status, r->body);
        fail();
    }
    it_resp_free(r);
    int status = it_server_wait_exit(s, CRASH_WAIT_MS);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        print_error("the server ended with wait status 0x%x, not by SIGKILL, at %s\n", status,
                    point);
        fail();
    }
    char *log = slurp(s->log);
    snprintf(line, sizeof line, "qrlogin: crash point %s: SIGKILL", point);
    if (strstr(log, line) == NULL) {
        print_error("the log does not say \"%s\":\n%s\n", line, log);
        fail();
    }
    free(log);
}

/* --- the database, read directly ---------------------------------------------------------- */

static sqlite3 *db_open(const it_server *s)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(s->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* One integer from `sql`, whose ?1 is `text` or else the blob; -1 when there is no row. */
static long long db_int(const it_server *s, const char *sql, const char *text, const void *blob,
                        int blob_len)
{
    sqlite3 *db = db_open(s);
    sqlite3_stmt *st = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        print_error("%s: %s\n", sql, sqlite3_errmsg(db));
        fail();
    }
    if (text != NULL)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    else if (blob != NULL)
        sqlite3_bind_blob(st, 1, blob, blob_len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE) {
        print_error("%s: %s\n", sql, sqlite3_errmsg(db));
        fail();
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The state of the login request of the screen named `name`. */
static long long lr_state(const it_server *s, const char *name)
{
    return db_int(s, "SELECT state FROM login_requests WHERE device_name = ?1", name, NULL, 0);
}

/* Devices made for screens named `name`: one per redemption of its login request. */
static long long devices_named(const it_server *s, const char *name)
{
    return db_int(s, "SELECT count(*) FROM devices WHERE name = ?1", name, NULL, 0);
}

/* Tokens of `kind` of the screen named `name`; `valid` counts only unspent, unrevoked ones. */
static long long tokens_of(const it_server *s, const char *name, int kind, int valid)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM tokens t JOIN devices d ON d.id = t.device_id"
             " WHERE d.name = ?1 AND t.kind = %d%s",
             kind, valid ? " AND t.used_ms = 0 AND t.revoked_ms = 0" : "");
    return db_int(s, sql, name, NULL, 0);
}

/* The store key of a token (docs/architecture.md, "Where secrets live"): its 8-byte id, then
 * BLAKE2b-192 of the whole token. */
static void token_key(const char *token, unsigned char key[32])
{
    unsigned char raw[40];
    size_t got = 0;

    assert_int_equal(sodium_base642bin(raw, sizeof raw, token + 7, strlen(token + 7), NULL, &got,
                                       NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    assert_int_equal(got, sizeof raw);
    memcpy(key, raw, 8);
    crypto_generichash(key + 8, 24, (const unsigned char *)token, strlen(token), NULL, 0);
}

/* 1 when the token's row is unspent and unrevoked, 0 when spent or revoked, -1 when absent. */
static long long token_valid(const it_server *s, const char *token)
{
    unsigned char key[32];
    token_key(token, key);
    return db_int(s, "SELECT used_ms = 0 AND revoked_ms = 0 FROM tokens WHERE hash = ?1", NULL, key,
                  sizeof key);
}

static long long device_revoked_ms(const it_server *s, long long id)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT revoked_ms FROM devices WHERE id = %lld", id);
    return db_int(s, sql, NULL, NULL, 0);
}

/* --- flow steps ---------------------------------------------------------------------------- */

/* A login request for the screen `name`, claimed by the phone. */
static void claimed_request(const it_server *s, const it_phone *p, const char *name, it_devauth *da)
{
    it_device_authorization(s, IT_CLIENT_ID, name, "tv", "profile", da);
    it_resp *r = it_view(s, p, da->scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

static void approve_ok(const it_server *s, const it_phone *p, const it_devauth *da)
{
    it_resp *r = it_approve(s, p, da->scan_secret, da->user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

/* A poll one interval after the last, so that it cannot be slow_down. */
static it_resp *poll_later(const it_server *s, const it_devauth *da)
{
    it_clock_advance(s, (da->interval + 1) * 1000);
    return it_token_poll(s, IT_CLIENT_ID, da->device_code, 0);
}

static void redeem_ok(const it_server *s, const it_devauth *da, it_tokens *t)
{
    it_resp *r = poll_later(s, da);
    it_expect_tokens(r, t);
    it_resp_free(r);
}

static void poll_refused(const it_server *s, const it_devauth *da, const char *error)
{
    it_resp *r = poll_later(s, da);
    it_expect_oauth_error(r, error);
    it_resp_free(r);
}

/* Exactly one device and one token family (an access and a refresh token) for the screen. */
static void one_family(const it_server *s, const char *name)
{
    assert_int_equal(lr_state(s, name), LR_REDEEMED);
    assert_int_equal(devices_named(s, name), 1);
    assert_int_equal(tokens_of(s, name, TOKEN_ACCESS, 0), 1);
    assert_int_equal(tokens_of(s, name, TOKEN_REFRESH, 0), 1);
}

static it_server *armed_server(const char *point, it_phone *phone)
{
    it_server *s = it_server_new_with_accounts(alice_only);
    start_armed(s, point);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", phone);
    return s;
}

/* --- approve --------------------------------------------------------------------------------- */

static void test_approve_before_submit(void **state)
{
    it_phone phone;
    it_devauth da;
    it_tokens t;
    it_server *s = armed_server("approve.before_submit", &phone);
    *state = s;
    claimed_request(s, &phone, "TV approve.before_submit", &da);

    expect_crash(s, it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD),
                 "approve.before_submit");
    it_server_start(s);

    /* Nothing changed: still claimed by this phone; the retry approves. */
    assert_int_equal(lr_state(s, "TV approve.before_submit"), LR_SCANNED);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);
    approve_ok(s, &phone, &da);
    redeem_ok(s, &da, &t);
    one_family(s, "TV approve.before_submit");
}

static void test_approve_committed(void **state)
{
    it_phone phone;
    it_devauth da;
    it_tokens t;
    it_server *s = armed_server("approve.committed", &phone);
    *state = s;
    claimed_request(s, &phone, "TV approve.committed", &da);

    expect_crash(s, it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD),
                 "approve.committed");
    it_server_start(s);

    /* The phone never heard, but the approval stands: the screen gets its tokens. */
    assert_int_equal(lr_state(s, "TV approve.committed"), LR_APPROVED);
    redeem_ok(s, &da, &t);
    assert_int_equal(it_introspect_active(s, t.access_token), 1);
    one_family(s, "TV approve.committed");
    poll_refused(s, &da, "invalid_grant");
    one_family(s, "TV approve.committed");
}

struct held_poll {
    const it_server *s;
    const it_devauth *da;
    it_resp *r;
};

static void *held_poll_main(void *arg)
{
    struct held_poll *h = arg;
    h->r = it_try_token_poll(h->s, IT_CLIENT_ID, h->da->device_code, 20);
    return NULL;
}

/* The screen waits on this server (Prefer: wait), so approval and redemption are one commit
 * handed to the held request: a crash after it loses the tokens, never the decision, and the
 * code stays spent. The screen asks for a new code. */
static void test_approve_handoff_committed(void **state)
{
    it_phone phone;
    it_devauth da;
    pthread_t th;
    it_server *s = armed_server("approve.handoff_committed", &phone);
    *state = s;
    claimed_request(s, &phone, "TV approve.handoff_committed", &da);
    /* The first poll is answered at once (the screen learns that its code was scanned); the
     * next one is held until something changes. */
    it_resp *r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 20);
    it_expect_oauth_error(r, "authorization_pending");
    it_resp_free(r);
    struct held_poll h = {.s = s, .da = &da};
    assert_int_equal(pthread_create(&th, NULL, held_poll_main, &h), 0);
    it_sleep_ms(1000); /* the poll is held by then, even in a sanitizer build */

    expect_crash(s, it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD),
                 "approve.handoff_committed");
    pthread_join(th, NULL);
    assert_non_null(h.r);
    assert_int_equal(h.r->status, 0); /* the held screen got no answer either */
    it_resp_free(h.r);
    it_server_start(s);

    one_family(s, "TV approve.handoff_committed");
    poll_refused(s, &da, "invalid_grant");
    one_family(s, "TV approve.handoff_committed");
}

/* --- deny ------------------------------------------------------------------------------------ */

static void test_deny_before_submit(void **state)
{
    it_phone phone;
    it_devauth da;
    it_server *s = armed_server("deny.before_submit", &phone);
    *state = s;
    claimed_request(s, &phone, "TV deny.before_submit", &da);

    expect_crash(s, it_deny(s, &phone, da.scan_secret), "deny.before_submit");
    it_server_start(s);

    assert_int_equal(lr_state(s, "TV deny.before_submit"), LR_SCANNED);
    it_resp *r = it_deny(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    assert_int_equal(lr_state(s, "TV deny.before_submit"), LR_DENIED);
    poll_refused(s, &da, "access_denied");
    assert_int_equal(devices_named(s, "TV deny.before_submit"), 0);
}

static void test_deny_committed(void **state)
{
    it_phone phone;
    it_devauth da;
    it_server *s = armed_server("deny.committed", &phone);
    *state = s;
    claimed_request(s, &phone, "TV deny.committed", &da);

    expect_crash(s, it_deny(s, &phone, da.scan_secret), "deny.committed");
    it_server_start(s);

    /* The denial stands: the screen is told, and nothing can approve the request now. */
    assert_int_equal(lr_state(s, "TV deny.committed"), LR_DENIED);
    poll_refused(s, &da, "access_denied");
    it_resp *r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    assert_true(r->status >= 400);
    it_resp_free(r);
    assert_int_equal(lr_state(s, "TV deny.committed"), LR_DENIED);
    assert_int_equal(devices_named(s, "TV deny.committed"), 0);
}

/* --- redeem ---------------------------------------------------------------------------------- */

static void test_redeem_before_submit(void **state)
{
    it_phone phone;
    it_devauth da;
    it_tokens t;
    it_server *s = armed_server("redeem.before_submit", &phone);
    *state = s;
    claimed_request(s, &phone, "TV redeem.before_submit", &da);
    approve_ok(s, &phone, &da);

    expect_crash(s, it_token_poll(s, IT_CLIENT_ID, da.device_code, 0), "redeem.before_submit");
    it_server_start(s);

    /* Still approved, nothing issued; the next poll redeems, once. */
    assert_int_equal(lr_state(s, "TV redeem.before_submit"), LR_APPROVED);
    assert_int_equal(devices_named(s, "TV redeem.before_submit"), 0);
    redeem_ok(s, &da, &t);
    one_family(s, "TV redeem.before_submit");
    poll_refused(s, &da, "invalid_grant");
    one_family(s, "TV redeem.before_submit");
}

static void test_redeem_committed(void **state)
{
    it_phone phone;
    it_devauth da;
    it_server *s = armed_server("redeem.committed", &phone);
    *state = s;
    claimed_request(s, &phone, "TV redeem.committed", &da);
    approve_ok(s, &phone, &da);

    expect_crash(s, it_token_poll(s, IT_CLIENT_ID, da.device_code, 0), "redeem.committed");
    it_server_start(s);

    /* The tokens never reached the screen, and the code is spent all the same: a second
     * redemption would be a second token family for one approval. */
    one_family(s, "TV redeem.committed");
    poll_refused(s, &da, "invalid_grant");
    poll_refused(s, &da, "invalid_grant");
    one_family(s, "TV redeem.committed");
}

/* --- refresh-token rotation ---------------------------------------------------------------- */

#define ROTATE_TV "Living Room TV" /* it_login_screen's name */

static void test_rotate_before_submit(void **state)
{
    it_phone phone;
    it_tokens t1, t2, t3;
    it_server *s = armed_server("rotate.before_submit", &phone);
    *state = s;
    it_login_screen(s, &phone, &t1, NULL);

    expect_crash(s, it_refresh(s, IT_CLIENT_ID, t1.refresh_token), "rotate.before_submit");
    it_server_start(s);

    /* Not rotated: the old refresh token is still the family's one valid refresh token. */
    assert_int_equal(token_valid(s, t1.refresh_token), 1);
    assert_int_equal(tokens_of(s, ROTATE_TV, TOKEN_REFRESH, 1), 1);
    assert_int_equal(it_introspect_active(s, t1.access_token), 1);
    /* The retry rotates; from then on the old one is refused and the new one works. */
    it_resp *r = it_refresh(s, IT_CLIENT_ID, t1.refresh_token);
    it_expect_tokens(r, &t2);
    it_resp_free(r);
    assert_int_equal(token_valid(s, t1.refresh_token), 0);
    assert_int_equal(token_valid(s, t2.refresh_token), 1);
    assert_int_equal(tokens_of(s, ROTATE_TV, TOKEN_REFRESH, 1), 1);
    r = it_refresh(s, IT_CLIENT_ID, t2.refresh_token);
    it_expect_tokens(r, &t3);
    it_resp_free(r);
    assert_int_equal(tokens_of(s, ROTATE_TV, TOKEN_REFRESH, 1), 1);
    r = it_refresh(s, IT_CLIENT_ID, t1.refresh_token);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
}

static void test_rotate_committed(void **state)
{
    it_phone phone;
    it_tokens t1;
    it_server *s = armed_server("rotate.committed", &phone);
    *state = s;
    it_login_screen(s, &phone, &t1, NULL);

    expect_crash(s, it_refresh(s, IT_CLIENT_ID, t1.refresh_token), "rotate.committed");
    it_server_start(s);

    /* Rotated before the crash: the presented token is spent, and the family has exactly one
     * valid refresh token, the new one, which never reached the client. */
    assert_int_equal(token_valid(s, t1.refresh_token), 0);
    assert_int_equal(tokens_of(s, ROTATE_TV, TOKEN_REFRESH, 1), 1);
    assert_int_equal(tokens_of(s, ROTATE_TV, TOKEN_REFRESH, 0), 2);
    assert_int_equal(it_introspect_active(s, t1.access_token), 1);
    /* The client's retry presents a spent token: refused, and by the reuse rule (RFC 9700
     * section 4.14.2) it ends the device; the screen signs in again. */
    it_resp *r = it_refresh(s, IT_CLIENT_ID, t1.refresh_token);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t1.access_token), 0);
    assert_int_equal(tokens_of(s, ROTATE_TV, TOKEN_REFRESH, 1), 0);
}

/* --- device revocation ----------------------------------------------------------------------- */

static void test_revoke_before_submit(void **state)
{
    it_phone phone;
    it_tokens t;
    long long tv;
    it_server *s = armed_server("revoke.before_submit", &phone);
    *state = s;
    it_login_screen(s, &phone, &t, &tv);

    expect_crash(s, it_revoke_device(s, &phone, tv), "revoke.before_submit");
    it_server_start(s);

    assert_int_equal(device_revoked_ms(s, tv), 0);
    assert_int_equal(it_introspect_active(s, t.access_token), 1);
    it_resp *r = it_revoke_device(s, &phone, tv);
    it_expect(r, 204, NULL);
    it_resp_free(r);
    assert_true(device_revoked_ms(s, tv) > 0);
    assert_int_equal(it_introspect_active(s, t.access_token), 0);
}

static void test_revoke_committed(void **state)
{
    it_phone phone;
    it_tokens t;
    long long tv;
    it_server *s = armed_server("revoke.committed", &phone);
    *state = s;
    it_login_screen(s, &phone, &t, &tv);

    expect_crash(s, it_revoke_device(s, &phone, tv), "revoke.committed");
    it_server_start(s);

    /* Revoked it stays: no token of the device works, and it is gone from the phone's list. */
    assert_true(device_revoked_ms(s, tv) > 0);
    assert_int_equal(it_introspect_active(s, t.access_token), 0);
    it_resp *r = it_refresh(s, IT_CLIENT_ID, t.refresh_token);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
    r = it_revoke_device(s, &phone, tv);
    it_expect(r, 404, NULL);
    it_resp_free(r);
    assert_int_equal(tokens_of(s, ROTATE_TV, TOKEN_REFRESH, 1), 0);
}

/* --- the writer: between the writes and COMMIT, between COMMIT and fdatasync ---------------- */

/* These points are in the writer, so they fire at the first durable batch of any kind: the
 * flow up to the approval runs on a server without them, and the approval is the first durable
 * write of the armed server. */
static it_server *approval_pending(const char *point, const char *name, it_phone *phone,
                                   it_devauth *da)
{
    it_server *s = it_server_new_with_accounts(alice_only);
    it_server_start(s);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", phone);
    claimed_request(s, phone, name, da);
    it_server_stop(s);
    start_armed(s, point);
    return s;
}

static void test_writer_before_commit(void **state)
{
    it_phone phone;
    it_devauth da;
    it_tokens t;
    it_server *s = approval_pending("sqlite.before_commit", "TV sqlite.before_commit", &phone, &da);
    *state = s;

    expect_crash(s, it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD),
                 "sqlite.before_commit");
    it_server_start(s);

    /* The batch's transaction was open: it is gone, and the approval can be made again. */
    assert_int_equal(lr_state(s, "TV sqlite.before_commit"), LR_SCANNED);
    approve_ok(s, &phone, &da);
    redeem_ok(s, &da, &t);
    one_family(s, "TV sqlite.before_commit");
}

static void test_writer_before_fdatasync(void **state)
{
    it_phone phone;
    it_devauth da;
    it_tokens t;
    it_server *s =
        approval_pending("sqlite.before_fdatasync", "TV sqlite.before_fdatasync", &phone, &da);
    *state = s;

    expect_crash(s, it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD),
                 "sqlite.before_fdatasync");
    it_server_start(s);

    /* Committed to the WAL, not yet flushed: a process crash keeps it (the OS has the pages;
     * only a power loss could take it, and then the phone was never answered either). */
    assert_int_equal(lr_state(s, "TV sqlite.before_fdatasync"), LR_APPROVED);
    redeem_ok(s, &da, &t);
    one_family(s, "TV sqlite.before_fdatasync");
}

/* A misspelt point must not pass as a crash that never came: the process refuses to run. */
static void test_unknown_point_is_refused(void **state)
{
    char out[] = "/tmp/qrl-crash-out-XXXXXX";
    int fd = mkstemp(out), status = 0;
    (void)state;

    assert_true(fd >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
        setenv("QRL_CRASH_AT", "approve.comitted", 1);
        execl(getenv("QRLOGIN_BIN"), "qrlogin", "--version", (char *)NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(fd);
    char *text = slurp(out);
    unlink(out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1 ||
        strstr(text, "QRL_CRASH_AT=approve.comitted names no crash point") == NULL) {
        print_error("wait status 0x%x, output: %s\n", status, text);
        fail();
    }
    free(text);
}

static int teardown(void **state)
{
    it_server *s = *state;
    if (s != NULL && s->pid > 0)
        it_server_stop(s);
    it_server_free(s);
    *state = NULL;
    return 0;
}

int main(void)
{
    assert_int_equal(sodium_init() >= 0, 1);
#define T(fn) cmocka_unit_test_teardown(fn, teardown)
    const struct CMUnitTest tests[] = {
        T(test_approve_before_submit),
        T(test_approve_committed),
        T(test_approve_handoff_committed),
        T(test_deny_before_submit),
        T(test_deny_committed),
        T(test_redeem_before_submit),
        T(test_redeem_committed),
        T(test_rotate_before_submit),
        T(test_rotate_committed),
        T(test_revoke_before_submit),
        T(test_revoke_committed),
        T(test_writer_before_commit),
        T(test_writer_before_fdatasync),
        cmocka_unit_test(test_unknown_point_is_refused),
    };
#undef T
    return cmocka_run_group_tests_name("integration/crash", tests, NULL, NULL);
}
