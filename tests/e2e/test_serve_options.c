/* SPDX-License-Identifier: MIT */
/*
 * `qrlogin serve` options that shape connections, seen from a client: the per-address cap, the
 * idle timeout, the public URL in answers, bad values refused, and a shutdown that answers every
 * held request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

typedef struct srv {
    pid_t pid;
    int port;
    char dir[128];
} srv;

/* Every server started, so that one left running by a failed test is stopped at the end (it
 * would keep our stdout open, and ctest would wait for it until its timeout). */
static pid_t started[64];
static size_t nstarted;

static int stop_leftovers(void **state)
{
    (void)state;
    for (size_t i = 0; i < nstarted; i++)
        if (started[i] > 0 && kill(started[i], SIGKILL) == 0)
            waitpid(started[i], NULL, 0);
    return 0;
}

/* A server reaped by the test itself is no longer ours to stop (its pid may be reused). */
static void reaped(pid_t pid)
{
    for (size_t i = 0; i < nstarted; i++)
        if (started[i] == pid)
            started[i] = 0;
}

static const char *bin(void)
{
    const char *b = getenv("QRLOGIN_BIN");
    assert_non_null(b);
    return b;
}

/* Starts `qrlogin serve` with extra arguments; returns false if it exited instead. */
static bool start(srv *s, const char *const *extra, int *exit_status)
{
    int out[2];
    char db[256], line[512];
    const char *argv[32] = {bin(), "serve", "--listen", "127.0.0.1:0", "--db", db};
    size_t n = 6, got = 0;

    snprintf(s->dir, sizeof s->dir, "/tmp/qrl-opt-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(db, sizeof db, "%s/t.db", s->dir);
    for (size_t i = 0; extra[i] != NULL && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    assert_int_equal(pipe(out), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid > 0 && nstarted < sizeof started / sizeof started[0])
        started[nstarted++] = s->pid;
    if (s->pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    while (got < sizeof line - 1) {
        ssize_t r = read(out[0], line + got, 1);
        if (r <= 0)
            break;
        if (line[got++] == '\n')
            break;
    }
    line[got] = '\0';
    close(out[0]);
    char *p = strstr(line, "http://127.0.0.1:");
    if (p == NULL) {
        int st;
        waitpid(s->pid, &st, 0);
        reaped(s->pid);
        *exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        return false;
    }
    s->port = atoi(p + strlen("http://127.0.0.1:"));
    return true;
}

static int stop(srv *s)
{
    int st;
    char cmd[200];

    kill(s->pid, SIGTERM);
    assert_int_equal(waitpid(s->pid, &st, 0), s->pid);
    reaped(s->pid);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    assert_int_equal(system(cmd), 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int connect_to(const srv *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Reads what arrives within `ms`; returns bytes read, 0 on EOF with nothing, -1 on timeout. */
static ssize_t read_within(int fd, char *buf, size_t len, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    size_t got = 0;

    while (got < len - 1) {
        int pr = poll(&p, 1, ms);
        if (pr <= 0)
            return got > 0 ? (ssize_t)got : -1;
        ssize_t r = read(fd, buf + got, len - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL && strchr(strstr(buf, "\r\n\r\n"), '}') != NULL)
            break;
    }
    buf[got] = '\0';
    return (ssize_t)got;
}

static void send_str(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Sends a screen's device authorization on fd and reads its answer into buf. */
static void device_authorization(int fd, char *buf, size_t len)
{
    const char *body = "client_id=tv&device_kind=tv";

    snprintf(buf, len,
             "POST /oauth/device_authorization HTTP/1.1\r\nHost: x\r\n"
             "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    send_str(fd, buf);
    assert_true(read_within(fd, buf, len, 5000) > 0);
}

/* One server per database file (it keeps pending polls and user codes in memory): a second
 * `qrlogin serve` on the same file exits with status 1 and says why, while the first keeps
 * serving; the account command still works beside it. */
static void test_second_server_on_the_same_database_is_refused(void **state)
{
    srv a;
    int status = -1, second, account;
    char cmd[1024], out[512] = "", buf[4096] = "";
    ssize_t got;
    FILE *f;
    int fd;

    (void)state;
    assert_true(start(&a, (const char *const[]){NULL}, &status));
    /* Everything is observed first and asserted after the first server is stopped, so that a
     * failure does not leave it running. */
    snprintf(cmd, sizeof cmd,
             "timeout 10 '%s' serve --listen 127.0.0.1:0 --db '%s/t.db' >/dev/null 2>'%s/err'",
             bin(), a.dir, a.dir);
    second = system(cmd);
    snprintf(cmd, sizeof cmd, "%s/err", a.dir);
    f = fopen(cmd, "r");
    if (f != NULL) {
        (void)!fread(out, 1, sizeof out - 1, f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd,
             "echo pw12345678 | '%s' account add bob --password-stdin --db '%s/t.db' >/dev/null",
             bin(), a.dir);
    account = system(cmd);
    fd = connect_to(&a);
    send_str(fd, "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: x\r\n\r\n");
    got = read_within(fd, buf, sizeof buf, 5000);
    close(fd);
    assert_int_equal(stop(&a), 0);

    assert_true(WIFEXITED(second));
    assert_int_equal(WEXITSTATUS(second), 1);
    assert_non_null(strstr(out, "in use by another qrlogin serve"));
    assert_int_equal(account, 0);
    assert_true(got > 0);
    assert_non_null(strstr(buf, "200 OK"));
}

static void test_bad_values_are_refused(void **state)
{
    srv s;
    int status = -1;
    const char *bad[][3] = {
        {"--max-connections", "abc", NULL},
        {"--connection-memory", "100", NULL},
        {"--per-ip-limit", "-1", NULL},
        {"--connection-timeout", "0", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(start(&s, bad[i], &status));
        assert_int_equal(status, 2);
        char cmd[200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s.dir);
        assert_int_equal(system(cmd), 0);
    }
}

/* Starts a server whose public URL is http://127.0.0.1:PORT/<path>/ and checks the device
 * authorization's verification URIs against it. */
static void check_public_url(const char *path)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), status = -1, fd;
    char listen_at[64], url[300], want[400], buf[8192];
    const char *js;
    json_t *j;
    srv s;

    /* A free port, named in the public URL that the server prints (and start() reads). */
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    close(lfd);
    snprintf(listen_at, sizeof listen_at, "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    snprintf(url, sizeof url, "http://%s/%s/", listen_at, path);
    const char *opts[] = {"--listen", listen_at, "--public-url", url, NULL};
    assert_true(start(&s, opts, &status));

    fd = connect_to(&s);
    device_authorization(fd, buf, sizeof buf);
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_non_null(strstr(buf, "\r\n\r\n"));
    j = json_loads(strstr(buf, "\r\n\r\n") + 4, 0, NULL);
    assert_non_null(j);
    snprintf(want, sizeof want, "http://%s/%s/device", listen_at, path);
    assert_string_equal(json_string_value(json_object_get(j, "verification_uri")), want);
    js = json_string_value(json_object_get(j, "verification_uri_complete"));
    snprintf(want, sizeof want, "http://%s/%s/s#qrl_ss_", listen_at, path);
    assert_non_null(js);
    assert_memory_equal(js, want, strlen(want));
    assert_true(strlen(js) > strlen(want) + 20);
    assert_non_null(json_string_value(json_object_get(j, "device_code")));
    assert_int_equal(strlen(json_string_value(json_object_get(j, "user_code"))), 9);
    assert_true(json_integer_value(json_object_get(j, "expires_in")) > 0);
    assert_true(json_integer_value(json_object_get(j, "interval")) > 0);
    json_decref(j);
    assert_int_equal(stop(&s), 0);
}

/* A public URL goes into every verification URI, escaped as JSON needs (quotes, backslashes,
 * UTF-8), with its trailing slash dropped, however long it is; one that is not an http(s) URL a
 * JSON string can carry is refused at start with status 1. */
static void test_public_url_in_answers(void **state)
{
    char quotes[240];
    int status = -1;
    srv s;

    (void)state;
    check_public_url("q\"r\\s/\xc3\xa9");
    /* Escaped, twice in the answer: too long for the text form, so built by jansson. */
    memset(quotes, '"', 225);
    quotes[225] = '\0';
    check_public_url(quotes);

    char longurl[400] = "https://login.example/";
    memset(longurl + strlen(longurl), 'a', 300);
    longurl[322] = '\0';
    const char *bad[] = {"ftp://login.example", "https://login.example/a b",
                         "https://login.example/\xff", "login.example", longurl};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *o[] = {"--public-url", bad[i], NULL};
        char cmd[200];
        assert_false(start(&s, o, &status));
        assert_int_equal(status, 1);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s.dir);
        assert_int_equal(system(cmd), 0);
    }
}

static void test_per_ip_cap_and_idle_timeout(void **state)
{
    const char *opts[] = {"--max-connections",
                          "50",
                          "--connection-memory",
                          "4096",
                          "--per-ip-limit",
                          "1",
                          "--connection-timeout",
                          "2",
                          "--threads",
                          "2",
                          NULL};
    char buf[4096];
    srv s;
    int status;

    (void)state;
    assert_true(start(&s, opts, &status));
    /* The first connection is served, so the server has surely taken it (its worker threads
     * accept in no particular order)... */
    int a = connect_to(&s);
    send_str(a, "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(read_within(a, buf, sizeof buf, 3000) > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    /* ...and a second one from the same address is over the cap: closed unanswered. */
    int b = connect_to(&s);
    send_str(b, "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(read_within(b, buf, sizeof buf, 3000) <= 0);
    close(b);
    /* The first connection, now idle, is closed by the server after about two seconds. */
    assert_int_equal(read_within(a, buf, sizeof buf, 6000), 0);
    close(a);
    /* With the slot free again, requests are served. */
    usleep(100000);
    int c = connect_to(&s);
    send_str(c, "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(read_within(c, buf, sizeof buf, 3000) > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    close(c);
    assert_int_equal(stop(&s), 0);
}

#define HELD 200

/* SIGTERM while many token requests are held: every one of them gets its pending answer. */
static void test_shutdown_answers_every_held_request(void **state)
{
    /* 200 device authorizations from one address are past its rate limit. */
    const char *opts[] = {"--request-ttl", "600", "--rate-limits", "off", NULL};
    static int fds[HELD];
    char buf[4096], req[1024];
    srv s;
    int status, answered = 0;

    (void)state;
    assert_true(start(&s, opts, &status));
    for (int i = 0; i < HELD; i++) {
        char code[128] = "";
        int fd = connect_to(&s);
        device_authorization(fd, buf, sizeof buf);
        char *dc = strstr(buf, "\"device_code\":\"");
        assert_non_null(dc);
        sscanf(dc + 15, "%127[^\"]", code);
        /* Same connection, now a held token request. */
        char form[256];
        snprintf(form, sizeof form,
                 "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Adevice_code"
                 "&client_id=tv&device_code=%s",
                 code);
        snprintf(req, sizeof req,
                 "POST /oauth/token HTTP/1.1\r\nHost: x\r\nPrefer: wait=60\r\n"
                 "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n%s",
                 strlen(form), form);
        send_str(fd, req);
        fds[i] = fd;
    }
    usleep(300000);
    kill(s.pid, SIGTERM);
    for (int i = 0; i < HELD; i++) {
        if (read_within(fds[i], buf, sizeof buf, 15000) > 0 &&
            strstr(buf, "authorization_pending") != NULL)
            answered++;
        close(fds[i]);
    }
    assert_int_equal(waitpid(s.pid, &status, 0), s.pid);
    reaped(s.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s.dir);
    assert_int_equal(system(cmd), 0);
    printf("shutdown: %d of %d held requests answered\n", answered, HELD);
    assert_int_equal(answered, HELD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_server_on_the_same_database_is_refused),
        cmocka_unit_test(test_bad_values_are_refused),
        cmocka_unit_test(test_public_url_in_answers),
        cmocka_unit_test(test_per_ip_cap_and_idle_timeout),
        cmocka_unit_test(test_shutdown_answers_every_held_request),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, stop_leftovers);
}
