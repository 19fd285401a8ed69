/* SPDX-License-Identifier: MIT */
/*
 * What the `qrlogin` command says when something is off, as a new user meets it: the version
 * and every command's help, numeric options that name their unit and where the bad value came
 * from (flag or environment variable), a taken port or a foreign address in one line with the
 * real reason, usage errors with exit status 2, a database that cannot be written (read-only
 * file, read-only directory, missing directory) refused at start by `serve` and `account add`,
 * and the demo account's password kept across restarts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* The unprivileged ids a root test run drops to, so that file modes apply. */
#define NOBODY 65534

typedef struct run_result {
    int status; /* exit status, -1 when killed */
    char out[16384], err[16384];
} run_result;

static const char *bin(void)
{
    const char *b = getenv("QRLOGIN_BIN");
    assert_non_null(b);
    return b;
}

static void slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;

    if (f != NULL) {
        n = fread(buf, 1, len - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

/* A copy of the binary (and the client library it links) that an unprivileged user can run:
 * the build tree may sit in a directory only its owner can enter (mktemp -d makes them 0700).
 * Made once; the library is found through LD_LIBRARY_PATH. */
static char nobody_dir[64];

static const char *nobody_bin(void)
{
    static char path[128];
    char cmd[1024];
    const char *b = bin();
    const char *slash = strrchr(b, '/');

    if (path[0] != '\0')
        return path;
    snprintf(nobody_dir, sizeof nobody_dir, "/tmp/qrl-cli-bin-XXXXXX");
    assert_non_null(mkdtemp(nobody_dir));
    assert_int_equal(chmod(nobody_dir, 0755), 0);
    snprintf(cmd, sizeof cmd, "cp '%s' %.*s/libqrlogin-client.so* '%s'/ && chmod 0755 '%s'/*", b,
             slash != NULL ? (int)(slash - b) : 1, slash != NULL ? b : ".", nobody_dir, nobody_dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/qrlogin", nobody_dir);
    return path;
}

/* Runs qrlogin with `args` (NULL-terminated) and the environment variables `env` ("NAME=VALUE",
 * NULL-terminated, or NULL), `input` on stdin, as user `uid` when not -1. */
static void run_as(run_result *r, int uid, const char *input, const char *const *env,
                   const char *const *args)
{
    char dir[] = "/tmp/qrl-cli-XXXXXX", out[64], err[64], in[64];
    const char *argv[32];
    size_t n = 0;
    int status;
    pid_t pid;

    assert_non_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    snprintf(in, sizeof in, "%s/in", dir);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    fputs(input != NULL ? input : "", f);
    fclose(f);
    argv[n++] = uid >= 0 ? nobody_bin() : bin();
    for (size_t i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int i = open(in, O_RDONLY), o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0666),
            e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (i < 0 || o < 0 || e < 0)
            _exit(126);
        dup2(i, 0);
        dup2(o, 1);
        dup2(e, 2);
        for (size_t k = 0; env != NULL && env[k] != NULL; k++)
            putenv((char *)env[k]);
        if (uid >= 0) {
            char ld[96];
            snprintf(ld, sizeof ld, "LD_LIBRARY_PATH=%s", nobody_dir);
            putenv(ld);
            if (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0)
                _exit(125);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    slurp(out, r->out, sizeof r->out);
    slurp(err, r->err, sizeof r->err);
    unlink(in);
    unlink(out);
    unlink(err);
    rmdir(dir);
    fprintf(stderr, "--- qrlogin %s %s -> %d\n%s%s", args[0], args[1] != NULL ? args[1] : "",
            r->status, r->out, r->err);
}

static void run(run_result *r, const char *const *env, const char *const *args)
{
    run_as(r, -1, NULL, env, args);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* One line on stderr, "qrlogin: " first, that holds every one of `needles`. */
static void expect_one_line(const run_result *r, const char *const *needles)
{
    assert_int_equal(count_lines(r->err), 1);
    assert_memory_equal(r->err, "qrlogin: ", 9);
    for (size_t i = 0; needles[i] != NULL; i++)
        if (strstr(r->err, needles[i]) == NULL)
            fail_msg("'%s' is not in: %s", needles[i], r->err);
}

static void test_version_and_help(void **state)
{
    const char *want = getenv("QRL_PROJECT_VERSION");
    char line[64];
    run_result *r = malloc(sizeof *r);

    (void)state;
    assert_non_null(r);
    run(r, NULL, (const char *[]){"--version", NULL});
    assert_int_equal(r->status, 0);
    assert_memory_equal(r->out, "qrlogin ", 8);
    if (want != NULL) {
        snprintf(line, sizeof line, "qrlogin %s\n", want);
        assert_string_equal(r->out, line);
    }
    snprintf(line, sizeof line, "%.60s", r->out);
    run(r, NULL, (const char *[]){"version", NULL});
    assert_int_equal(r->status, 0);
    assert_string_equal(r->out, line);

    /* `help COMMAND` and `COMMAND --help`, also after a verb, show that command's help on
     * stdout and exit 0. */
    static const char *const helps[][4] = {
        {"help", "serve", NULL},
        {"serve", "--help", NULL},
        {"help", "account", NULL},
        {"account", "--help", NULL},
        {"account", "add", "--help", NULL},
        {"help", "tv", NULL},
        {"tv", "--help", NULL},
        {"tv", "whoami", "--help", NULL},
        {"help", "phone", NULL},
        {"phone", "--help", NULL},
        {"phone", "approve", "--help", NULL},
    };
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        const char *cmd = strcmp(helps[i][0], "help") == 0 ? helps[i][1] : helps[i][0];
        char head[64];
        run(r, NULL, helps[i]);
        assert_int_equal(r->status, 0);
        snprintf(head, sizeof head, "usage: qrlogin %s", cmd);
        assert_memory_equal(r->out, head, strlen(head));
    }
    run(r, NULL, (const char *[]){"help", NULL});
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "help [COMMAND]"));
    run(r, NULL, (const char *[]){"help", "nonsense", NULL});
    assert_int_equal(r->status, 2);

    /* The phone's help names --password-stdin and the order of the lines it reads. */
    run(r, NULL, (const char *[]){"phone", "--help", NULL});
    assert_non_null(strstr(r->out, "--password-stdin"));
    assert_non_null(strstr(r->out, "PIN (4-64 characters) twice"));
    assert_non_null(strstr(r->out, "then the app PIN"));
    free(r);
}

/* A bad number names its unit and where it came from, in one line, with status 2. */
static void test_numeric_options_say_unit_and_source(void **state)
{
    static const struct {
        const char *env, *flag, *value, *source, *unit;
    } cases[] = {
        {NULL, "--threads", "abc", "--threads", "whole number of threads"},
        {NULL, "--max-connections", "0", "--max-connections", "of connections"},
        {NULL, "--connection-memory", "100", "--connection-memory", "of bytes"},
        {NULL, "--per-ip-limit", "-1", "--per-ip-limit", "of connections"},
        {NULL, "--request-ttl", "5", "--request-ttl", "of seconds from 10 to 3600"},
        {"QRLOGIN_CONNECTION_TIMEOUT=0", NULL, NULL, "QRLOGIN_CONNECTION_TIMEOUT", "of seconds"},
        {"QRLOGIN_THREADS=many", NULL, NULL, "QRLOGIN_THREADS", "of threads"},
        {"QRLOGIN_ACCESS_TTL=59", NULL, NULL, "QRLOGIN_ACCESS_TTL", "from 60 to"},
    };
    run_result *r = malloc(sizeof *r);

    (void)state;
    assert_non_null(r);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *env[] = {cases[i].env, NULL};
        const char *args[] = {"serve",       "--db",         "/nonexistent/never.db",
                              cases[i].flag, cases[i].value, NULL};
        char src[64];
        run(r, env, args);
        assert_int_equal(r->status, 2);
        snprintf(src, sizeof src, "qrlogin: %s must be", cases[i].source);
        assert_memory_equal(r->err, src, strlen(src));
        expect_one_line(r, (const char *[]){cases[i].unit, NULL});
    }
    /* A flag wins over its environment variable. */
    run(r, (const char *[]){"QRLOGIN_THREADS=many", NULL},
        (const char *[]){"serve", "--threads", "0", NULL});
    assert_int_equal(r->status, 2);
    assert_non_null(strstr(r->err, "--threads must be"));
    free(r);
}

/* A port another program listens on, or an address this machine does not have: one line with
 * the system's reason, exit status 1, and nothing on stdout. */
static void test_listen_failures_give_the_reason(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof a;
    char listen_at[64], dir[] = "/tmp/qrl-cli-XXXXXX", db[128];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    run_result *r = malloc(sizeof *r);

    (void)state;
    assert_non_null(r);
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/t.db", dir);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    snprintf(listen_at, sizeof listen_at, "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));

    run(r, NULL, (const char *[]){"serve", "--listen", listen_at, "--db", db, NULL});
    close(fd);
    assert_int_equal(r->status, 1);
    assert_string_equal(r->out, "");
    expect_one_line(r, (const char *[]){listen_at, strerror(EADDRINUSE), NULL});
    assert_null(strstr(r->err, "port 0"));

    /* 192.0.2.1 is TEST-NET-1 (RFC 5737): no machine has it. */
    run(r, NULL, (const char *[]){"serve", "--listen", "192.0.2.1:8080", "--db", db, NULL});
    assert_int_equal(r->status, 1);
    expect_one_line(r, (const char *[]){"192.0.2.1:8080", strerror(EADDRNOTAVAIL), NULL});
    assert_null(strstr(r->err, "in use"));
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(r);
}

static void test_usage_errors_exit_2(void **state)
{
    run_result *r = malloc(sizeof *r);

    (void)state;
    assert_non_null(r);
    run(r, NULL, (const char *[]){"serve", "--listen", "localhost:8080", NULL});
    assert_int_equal(r->status, 2);
    expect_one_line(r, (const char *[]){"--listen", "numeric", "localhost:8080", NULL});
    run(r, (const char *[]){"QRLOGIN_LISTEN=localhost:8080", NULL},
        (const char *[]){"serve", NULL});
    assert_int_equal(r->status, 2);
    expect_one_line(r, (const char *[]){"QRLOGIN_LISTEN", NULL});

    /* An invalid user name is refused before any password prompt or database. */
    run(r, NULL,
        (const char *[]){"account", "add", "bad user", "--db", "/nonexistent/never.db", NULL});
    assert_int_equal(r->status, 2);
    expect_one_line(r, (const char *[]){"invalid username", NULL});

    run(r, NULL,
        (const char *[]){"phone", "approve", "", "--config", "/nonexistent/phone.json", NULL});
    assert_int_equal(r->status, 2);
    expect_one_line(r, (const char *[]){"not a login code", NULL});
    run(r, NULL, (const char *[]){"phone", "approve", "--config", "/nonexistent/p.json", NULL});
    assert_int_equal(r->status, 2);
    run(r, NULL, (const char *[]){"serve", "extra", NULL});
    assert_int_equal(r->status, 2);
    run(r, NULL, (const char *[]){"frobnicate", NULL});
    assert_int_equal(r->status, 2);
    free(r);
}

/* `serve` and `account add` with `db` as `uid`: status 1, nothing on stdout, one line on
 * stderr holding `why`. */
static void expect_db_refused(int uid, const char *db, const char *why)
{
    run_result *r = malloc(sizeof *r);

    assert_non_null(r);
    run_as(r, uid, NULL, NULL,
           (const char *[]){"serve", "--listen", "127.0.0.1:0", "--db", db, NULL});
    assert_int_equal(r->status, 1);
    assert_string_equal(r->out, "");
    expect_one_line(r, (const char *[]){db, why, NULL});
    run_as(r, uid, "pw-12345678\n", NULL,
           (const char *[]){"account", "add", "bob", "--password-stdin", "--db", db, NULL});
    assert_int_equal(r->status, 1);
    assert_string_equal(r->out, "");
    expect_one_line(r, (const char *[]){db, why, NULL});
    free(r);
}

/* A database that cannot be written is refused at start, with what is wrong, instead of a
 * server that prints "listening" and then fails every sign-in. File modes do not bind root,
 * so a root test run checks them as an unprivileged user. */
static void test_database_must_be_writable(void **state)
{
    char dir[] = "/tmp/qrl-cli-XXXXXX", db[128], missing[160], cmd[200];
    int uid = geteuid() == 0 ? NOBODY : -1;
    run_result *r = malloc(sizeof *r);

    (void)state;
    assert_non_null(r);
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/q.db", dir);
    snprintf(missing, sizeof missing, "%s/no/such/dir/q.db", dir);
    expect_db_refused(-1, missing, "does not exist");

    /* A database made by the owner... */
    run_as(r, -1, "pw-12345678\n", NULL,
           (const char *[]){"account", "add", "alice", "--password-stdin", "--db", db, NULL});
    assert_int_equal(r->status, 0);
    assert_int_equal(chmod(dir, 0777), 0);
    /* ...then made read-only: its directory is writable, the file is not. */
    assert_int_equal(chmod(db, 0444), 0);
    expect_db_refused(uid, db, "read-only");

    /* A writable file in a directory that is not: SQLite's -wal file could not be made. */
    assert_int_equal(chmod(db, 0666), 0);
    assert_int_equal(chmod(dir, uid >= 0 ? 0755 : 0555), 0);
    expect_db_refused(uid, db, "not writable");

    assert_int_equal(chmod(dir, 0700), 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(r);
}

/* Starts `serve --demo` (plus `extra`), reads its first two stdout lines, stops it. */
static void demo_run(const char *db, const char *extra, char *url, size_t urllen, char *pw,
                     size_t pwlen)
{
    const char *argv[] = {bin(), "serve", "--listen", "127.0.0.1:0", "--db", db, extra, NULL};
    char buf[1024];
    size_t got = 0, lines = 0;
    int p[2], status;
    pid_t pid;

    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    while (lines < 2 && got < sizeof buf - 1) {
        ssize_t n = read(p[0], buf + got, 1);
        if (n <= 0)
            break;
        lines += buf[got++] == '\n';
    }
    buf[got] = '\0';
    close(p[0]);
    fprintf(stderr, "--- serve %s:\n%s", extra, buf);
    /* The first line is the one scripts wait for; the demo credentials follow it. */
    assert_int_equal(sscanf(buf, "qrlogin: listening on %255s", url), 1);
    (void)urllen;
    char *at = strstr(buf, "password '");
    assert_non_null(at);
    snprintf(pw, pwlen, "%.*s", (int)strcspn(at + 10, "'"), at + 10);
    assert_int_equal(strlen(pw), 16);
    /* The password works: a phone signs in with it. */
    char cmd[1024], code[16] = "";
    snprintf(cmd, sizeof cmd,
             "curl -s -o /dev/null -w '%%{http_code}' -H 'Content-Type: application/json' "
             "-d '{\"username\":\"demo\",\"password\":\"%s\"}' %s/v1/sessions",
             pw, url);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(code, sizeof code, f));
    pclose(f);
    assert_string_equal(code, "201");
    kill(pid, SIGTERM);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The demo password stays the same across restarts (a phone already has it) until
 * --demo-reset; it is kept next to the database, readable by its owner only. */
static void test_demo_password_is_kept(void **state)
{
    char dir[] = "/tmp/qrl-cli-XXXXXX", db[128], keep[160], url[256], pw1[64], pw2[64], pw3[64],
         cmd[200];
    struct stat st;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/q.db", dir);
    snprintf(keep, sizeof keep, "%s.demo-password", db);
    demo_run(db, "--demo", url, sizeof url, pw1, sizeof pw1);
    assert_int_equal(stat(keep, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    demo_run(db, "--demo", url, sizeof url, pw2, sizeof pw2);
    assert_string_equal(pw1, pw2);
    demo_run(db, "--demo-reset", url, sizeof url, pw3, sizeof pw3);
    assert_string_not_equal(pw1, pw3);
    demo_run(db, "--demo", url, sizeof url, pw2, sizeof pw2);
    assert_string_equal(pw2, pw3);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_help),
        cmocka_unit_test(test_numeric_options_say_unit_and_source),
        cmocka_unit_test(test_listen_failures_give_the_reason),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_database_must_be_writable),
        cmocka_unit_test(test_demo_password_is_kept),
    };
    signal(SIGPIPE, SIG_IGN);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (nobody_dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", nobody_dir);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}
