/* SPDX-License-Identifier: MIT */
/*
 * `qrlogin serve --db FILE` where FILE is not a database qrlogin can use: a file that is not a
 * database at all, another program's SQLite database (with an application id of its own,
 * without one, or with a user_version that looks like a schema version), a qrlogin database
 * from a newer qrlogin, and a damaged one. The server must refuse to start (exit status 1) with
 * one sentence that names the file and what is wrong with it, and leave the file exactly as it
 * was: the same bytes, the same modification time, and no -wal, -shm or -journal file next to
 * it that was not there before. A user would notice a failure as another program's data
 * changed (or switched to WAL mode) by a mistyped --db, or a database restored later that a
 * newer qrlogin can no longer read.
 *
 * An empty file, for contrast, is a new database: the server starts on it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* How long a refusal may take (it happens before the server listens). */
#define REFUSE_WITHIN_MS 30000

typedef struct snapshot {
    unsigned char *bytes;
    size_t len;
    struct timespec mtime;
} snapshot;

static void snap(const char *path, snapshot *s)
{
    struct stat st;
    FILE *f = fopen(path, "rb");

    assert_non_null(f);
    assert_int_equal(stat(path, &st), 0);
    s->len = (size_t)st.st_size;
    s->mtime = st.st_mtim;
    s->bytes = malloc(s->len + 1);
    assert_non_null(s->bytes);
    assert_int_equal(fread(s->bytes, 1, s->len, f), s->len);
    fclose(f);
}

static void expect_untouched(const char *path, snapshot *before)
{
    static const char *const beside[] = {"-wal", "-shm", "-journal"};
    snapshot after;
    char p[512];

    snap(path, &after);
    if (after.len != before->len || memcmp(after.bytes, before->bytes, after.len) != 0) {
        print_error("%s changed: %zu bytes before, %zu after\n", path, before->len, after.len);
        fail();
    }
    if (after.mtime.tv_sec != before->mtime.tv_sec ||
        after.mtime.tv_nsec != before->mtime.tv_nsec) {
        print_error("%s was written to: its modification time changed\n", path);
        fail();
    }
    for (size_t i = 0; i < sizeof beside / sizeof beside[0]; i++) {
        snprintf(p, sizeof p, "%s%s", path, beside[i]);
        if (access(p, F_OK) == 0) {
            print_error("%s was left behind\n", p);
            fail();
        }
    }
    free(after.bytes);
    free(before->bytes);
}

/* Runs `qrlogin ARGS... --db db` with `input` (or nothing) on stdin; returns its exit status
 * (-1 when it had to be killed: it started instead of refusing) with its stderr in err. */
static int run_qrlogin(const char *const *args, const char *db, const char *input, char *err,
                       size_t len)
{
    char errpath[] = "/tmp/qrl-baddb-err-XXXXXX", inpath[] = "/tmp/qrl-baddb-in-XXXXXX";
    int fd = mkstemp(errpath), in = mkstemp(inpath), status = 0, n = 0;
    const char *argv[16];
    pid_t pid;

    assert_true(fd >= 0 && in >= 0);
    unlink(inpath);
    if (input != NULL) {
        assert_int_equal(write(in, input, strlen(input)), (ssize_t)strlen(input));
        assert_int_equal(lseek(in, 0, SEEK_SET), 0);
    }
    argv[n++] = getenv("QRLOGIN_BIN");
    assert_non_null(argv[0]);
    for (; *args != NULL; args++)
        argv[n++] = *args;
    argv[n++] = "--db";
    argv[n++] = db;
    argv[n] = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(in, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fd);
    close(in);
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (waited >= REFUSE_WITHIN_MS) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            status = -1;
            break;
        }
        it_sleep_ms(10);
    }
    FILE *f = fopen(errpath, "r");
    size_t got = f != NULL ? fread(err, 1, len - 1, f) : 0;
    err[got] = '\0';
    if (f != NULL)
        fclose(f);
    unlink(errpath);
    return status == -1 ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static const char *const serve_args[] = {"serve", "--listen", "127.0.0.1:0", NULL};

/* `qrlogin serve` refuses `path` with exit status 1 and a message naming it and saying
 * `what`; the file is left as it was. */
static void expect_refused(const char *path, const char *what)
{
    snapshot before;
    char err[8192];

    snap(path, &before);
    int status = run_qrlogin(serve_args, path, NULL, err, sizeof err);
    if (status != 1 || strstr(err, path) == NULL || strstr(err, what) == NULL) {
        print_error("qrlogin serve --db %s: exit status %d, expected 1 with \"%s\" and the "
                    "file's name; stderr:\n%s\n",
                    path, status, what, err);
        fail();
    }
    expect_untouched(path, &before);
}

/* A database made with SQLite directly, as another program would: `sql` runs on a new file. */
static void make_db(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        print_error("%s: %s\n", sql, msg);
        fail();
    }
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* A qrlogin database (made by `qrlogin account add`), cleanly closed. */
static it_server *qrlogin_db(void)
{
    it_server *s = it_server_new();
    it_account_add(s, IT_USER, IT_PASSWORD, IT_DISPLAY_NAME);
    return s;
}

static void test_not_a_database(void **state)
{
    it_server *s = it_server_new();
    FILE *f = fopen(s->db, "w");
    (void)state;

    assert_non_null(f);
    for (int i = 0; i < 100; i++)
        fputs("Dear diary, today I mistyped a --db path.\n", f);
    fclose(f);
    expect_refused(s->db, "is not an SQLite database");
    /* `qrlogin account add` opens the store the same way. */
    snapshot before;
    char err[8192];
    snap(s->db, &before);
    static const char *const add_args[] = {"account", "add", "bob", "--password-stdin", NULL};
    int status = run_qrlogin(add_args, s->db, "a password\n", err, sizeof err);
    if (status != 1 || strstr(err, "is not an SQLite database") == NULL) {
        print_error("qrlogin account add: exit status %d; stderr:\n%s\n", status, err);
        fail();
    }
    expect_untouched(s->db, &before);
    it_server_free(s);
}

static void test_another_programs_database(void **state)
{
    it_server *s = it_server_new();
    (void)state;

    make_db(s->db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
                   "INSERT INTO notes (body) VALUES ('remember the milk');");
    expect_refused(s->db, "is a database of another program");
    it_server_free(s);
}

/* Its own application id, and in WAL mode, where a careless open leaves -wal and -shm. */
static void test_another_programs_database_with_application_id(void **state)
{
    it_server *s = it_server_new();
    (void)state;

    make_db(s->db, "PRAGMA application_id = 252006674; PRAGMA journal_mode = WAL;"
                   "CREATE TABLE blob (rid INTEGER PRIMARY KEY, content BLOB);");
    expect_refused(s->db, "application_id 0x0f055112");
    it_server_free(s);
}

/* Another program that versions its schema with user_version, as we do. */
static void test_another_programs_database_with_user_version(void **state)
{
    it_server *s = it_server_new();
    (void)state;

    make_db(s->db, "CREATE TABLE accounts (id INTEGER PRIMARY KEY, iban TEXT);"
                   "PRAGMA user_version = 3;");
    expect_refused(s->db, "is a database of another program");
    it_server_free(s);
}

static void test_newer_schema(void **state)
{
    it_server *s = qrlogin_db();
    (void)state;

    make_db(s->db, "PRAGMA user_version = 99");
    expect_refused(s->db, "schema version 99, newer than this qrlogin knows");
    it_server_free(s);
}

static void test_damaged_database(void **state)
{
    it_server *s = qrlogin_db();
    unsigned char junk[200];
    (void)state;

    /* The first page's b-tree (the schema table) after the 100-byte file header. */
    memset(junk, 0xff, sizeof junk);
    int fd = open(s->db, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, junk, sizeof junk, 100), (ssize_t)sizeof junk);
    close(fd);
    expect_refused(s->db, "is damaged");
    it_server_free(s);
}

/* For contrast: an empty file is a new database, and the server starts on it. */
static void test_empty_file_is_a_new_database(void **state)
{
    it_server *s = it_server_new();
    (void)state;

    int fd = open(s->db, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    it_server_start(s);
    it_server_stop(s);
    /* And the database it made says whose it is (PRAGMA application_id "QRLG"). */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(s->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(st, 0), 0x51524c47);
    sqlite3_finalize(st);
    sqlite3_close(db);
    it_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_a_database),
        cmocka_unit_test(test_another_programs_database),
        cmocka_unit_test(test_another_programs_database_with_application_id),
        cmocka_unit_test(test_another_programs_database_with_user_version),
        cmocka_unit_test(test_newer_schema),
        cmocka_unit_test(test_damaged_database),
        cmocka_unit_test(test_empty_file_is_a_new_database),
    };
    return cmocka_run_group_tests_name("e2e/bad_database", tests, NULL, NULL);
}
