/* SPDX-License-Identifier: MIT */
/*
 * The whole story with two processes, as a person would run it: `qrlogin tv` in a
 * pseudo-terminal shows a QR code (and writes it as a PNG), `qrlogin phone approve --image`
 * decodes that PNG with zbar, shows what is asking, and approves with a signature made by the
 * PIN-protected device key; the TV prints who signed in. The TV's login request is bound to its
 * key, which its QR code names: the phone says the sign-in goes only to that key, and refuses to
 * approve from a QR code that names another. Also: declining, a wrong PIN, whoami, logout and
 * revoking from the phone.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "harness.h"

#define PIN "4711-pin"

typedef struct tv_proc {
    pid_t pid;
    int fd; /* pty master */
    char out[256 * 1024];
    size_t len;
} tv_proc;

static const char *bin(void)
{
    const char *b = getenv("QRLOGIN_BIN");
    assert_non_null(b);
    return b;
}

/* Runs the qrlogin binary with argv, feeding `input` on stdin; captures stdout+stderr. */
static int run(const char *input, char *out, size_t outlen, const char *const *args)
{
    int in[2], o[2], status;
    const char *argv[32];
    size_t n = 0, got = 0;
    pid_t pid;

    argv[n++] = bin();
    for (size_t i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(o), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(o[1], 1);
        dup2(o[1], 2);
        close(in[1]);
        close(o[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    if (input != NULL && write(in[1], input, strlen(input)) < 0)
        fail_msg("write to child: %s", strerror(errno));
    close(in[1]);
    for (;;) {
        ssize_t r = read(o[0], out + got, outlen - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == outlen - 1)
            break;
    }
    out[got] = '\0';
    close(o[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    fprintf(stderr, "--- qrlogin %s %s -> %d\n%s", args[0], args[1] ? args[1] : "",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void tv_start(tv_proc *tv, const it_server *s, const char *cred, const char *png)
{
    memset(tv, 0, sizeof *tv);
    tv->pid = forkpty(&tv->fd, NULL, NULL, NULL);
    assert_true(tv->pid >= 0);
    if (tv->pid == 0) {
        execl(bin(), bin(), "tv", "--server", s->base, "--name", "Living Room TV", "--credentials",
              cred, "--qr-png", png, (char *)NULL);
        _exit(127);
    }
    fcntl(tv->fd, F_SETFL, O_NONBLOCK);
}

/* Reads the TV's terminal until `needle` shows up (true) or `seconds` pass (false). */
static bool tv_expect(tv_proc *tv, const char *needle, double seconds)
{
    double end = it_now() + seconds;

    while (it_now() < end) {
        struct pollfd p = {.fd = tv->fd, .events = POLLIN};
        if (strstr(tv->out, needle) != NULL)
            return true;
        if (poll(&p, 1, 100) > 0) {
            ssize_t r = read(tv->fd, tv->out + tv->len, sizeof tv->out - 1 - tv->len);
            if (r > 0) {
                tv->len += (size_t)r;
                tv->out[tv->len] = '\0';
            } else if (r == 0 || (r < 0 && errno != EAGAIN)) {
                break; /* the TV exited */
            }
        }
    }
    return strstr(tv->out, needle) != NULL;
}

static int tv_wait(tv_proc *tv)
{
    int status;

    (void)tv_expect(tv, "\x01never\x01", 0.3); /* drain what is left */
    assert_int_equal(waitpid(tv->pid, &status, 0), tv->pid);
    close(tv->fd);
    fprintf(stderr, "--- qrlogin tv terminal:\n%s\n", tv->out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void wait_for_file(const char *path)
{
    struct stat st;
    double end = it_now() + 15;

    while (it_now() < end) {
        if (stat(path, &st) == 0 && st.st_size > 0)
            return;
        it_sleep_ms(50);
    }
    fail_msg("%s was not written", path);
}

static void phone_login(const it_server *s, const char *cfg)
{
    char out[8192];
    const char *args[] = {"phone", "login",  "--server",      s->base, "--config",
                          cfg,     "--name", "Alice's phone", IT_USER, NULL};

    assert_int_equal(run(IT_PASSWORD "\n" PIN "\n" PIN "\n", out, sizeof out, args), 0);
    assert_non_null(strstr(out, "device key registered"));
}

static void paths(const it_server *s, char *cfg, char *cred, char *png)
{
    snprintf(cfg, 512, "%s/phone/phone.json", s->dir);
    snprintf(cred, 512, "%s/tv/tv.json", s->dir);
    snprintf(png, 512, "%s/qr.png", s->dir);
}

static void test_full_story(void **state)
{
    it_server *s = *state;
    char cfg[512], cred[512], png[512], out[16384];
    struct stat st;
    tv_proc tv;

    paths(s, cfg, cred, png);
    phone_login(s, cfg);
    assert_int_equal(stat(cfg, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* The private key is not in the state file in the clear. */
    FILE *f = fopen(cfg, "r");
    char text[8192] = "";
    assert_non_null(f);
    assert_true(fread(text, 1, sizeof text - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(text, "key_box"));
    assert_null(strstr(text, "secret_key"));

    tv_start(&tv, s, cred, png);
    assert_true(tv_expect(&tv, "Scan the code", 15));
    assert_true(tv_expect(&tv, "\xe2\x96", 1)); /* half-block characters of the QR code */
    /* The SDK named the terminal's key: the TV says what the phone will show for it. */
    assert_true(tv_expect(&tv, "which your phone shows as  ", 5));
    char fp[16] = "";
    const char *at = strstr(tv.out, "shows as  ");
    snprintf(fp, sizeof fp, "%.9s", at + strlen("shows as  "));
    assert_int_equal(fp[4], '-');
    wait_for_file(png);
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM login_requests WHERE dpop_jkt <> ''"), 1);

    const char *approve[] = {"phone", "approve", "--config", cfg, "--image", png, NULL};
    assert_int_equal(run("a\n" PIN "\n", out, sizeof out, approve), 0);
    assert_non_null(strstr(out, "Living Room TV"));
    assert_non_null(strstr(out, "your network"));
    assert_non_null(strstr(out, "it matches the code you scanned"));
    assert_non_null(strstr(out, fp));
    assert_true(tv_expect(&tv, "Scanned", 10));
    assert_true(tv_expect(&tv, "Signed in as Alice", 15));
    assert_int_equal(tv_wait(&tv), 0);

    assert_int_equal(stat(cred, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* The credential holds the terminal's key, to which its tokens are bound (DPoP): the
     * access token alone is refused as a bearer token. */
    json_t *cj = json_load_file(cred, 0, NULL);
    assert_non_null(cj);
    assert_string_equal(json_string_value(json_object_get(cj, "token_type")), "DPoP");
    assert_int_equal(strlen(json_string_value(json_object_get(cj, "dpop_key"))), 43);
    it_resp *bare = it_json_send(s, "GET", "/v1/me",
                                 json_string_value(json_object_get(cj, "access_token")), NULL);
    it_expect(bare, 401, "invalid_token");
    it_resp_free(bare);
    json_decref(cj);
    const char *whoami[] = {"tv", "whoami", "--credentials", cred, NULL};
    assert_int_equal(run(NULL, out, sizeof out, whoami), 0);
    assert_non_null(strstr(out, "Signed in as Alice (alice)"));
    /* An hour on, the access token has expired: whoami refreshes with the stored key (and on
     * the server's clock, which the test moved). */
    it_clock_advance(s, 3601000);
    assert_int_equal(run(NULL, out, sizeof out, whoami), 0);
    assert_non_null(strstr(out, "Signed in as Alice (alice)"));

    const char *devices[] = {"phone", "devices", "--config", cfg, NULL};
    assert_int_equal(run(NULL, out, sizeof out, devices), 0);
    assert_non_null(strstr(out, "Living Room TV"));
    assert_non_null(strstr(out, "(this phone)"));

    const char *logout[] = {"tv", "logout", "--credentials", cred, NULL};
    assert_int_equal(run(NULL, out, sizeof out, logout), 0);
    assert_int_not_equal(run(NULL, out, sizeof out, whoami), 0);
    assert_int_equal(run(NULL, out, sizeof out, devices), 0);
    assert_null(strstr(out, "Living Room TV"));
}

/* A QR code whose short form of the key is not the key of the request it opens: the phone warns
 * and offers no approval; the request stays as it was, and can be declined. A typed code has
 * nothing to compare: the phone names the key. */
static void test_key_mismatch_refused(void **state)
{
    it_server *s = *state;
    static const char jkt[] = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
    char cfg[512], cred[512], png[512], out[16384], link[600], *k;

    paths(s, cfg, cred, png);
    phone_login(s, cfg);
    const char *kv[] = {"client_id",      IT_CLIENT_ID,  "device_name",
                        "Living Room TV", "device_kind", "tv",
                        "dpop_jkt",       jkt,           NULL};
    it_resp *r = it_form_post(s, "/oauth/device_authorization", kv, NULL);
    it_expect(r, 200, NULL);
    snprintf(link, sizeof link, "%s", it_jstr(r, "verification_uri_complete"));
    char user_code[32];
    snprintf(user_code, sizeof user_code, "%s", it_jstr(r, "user_code"));
    it_resp_free(r);
    k = strstr(link, "?k=kPrK_qmx#");
    assert_non_null(k);

    /* The code typed: the key is named, nothing to compare; leave it undecided. */
    const char *typed[] = {"phone", "approve", "--config", cfg, user_code, NULL};
    assert_int_equal(run("x\n", out, sizeof out, typed), 1);
    assert_non_null(strstr(out, "goes only to this TV's key 90FA-CAFE."));

    /* Another key's short form in the link. */
    memcpy(k + 3, "AAAAAAAA", 8);
    const char *approve[] = {"phone", "approve", "--config", cfg, link, NULL};
    assert_int_equal(run("a\n" PIN "\n", out, sizeof out, approve), 1);
    assert_non_null(strstr(out, "DO NOT APPROVE"));
    assert_non_null(strstr(out, "90FA-CAFE"));
    assert_non_null(strstr(out, "[d] decline"));
    assert_null(strstr(out, "[a] approve"));
    assert_non_null(strstr(out, "not approved"));
    assert_int_equal(it_db_count(s, "SELECT max(state) FROM login_requests"), 1); /* scanned */
    /* A short form that is none at all is no better. */
    memcpy(k + 3, "AAAA*AAA", 8);
    assert_int_equal(run("a\n", out, sizeof out, approve), 1);
    assert_non_null(strstr(out, "DO NOT APPROVE"));
    /* The right one: approving is offered again. Decline it here. */
    memcpy(k + 3, "kPrK_qmx", 8);
    assert_int_equal(run("d\n", out, sizeof out, approve), 3);
    assert_non_null(strstr(out, "it matches the code you scanned"));
    assert_int_equal(it_db_count(s, "SELECT max(state) FROM login_requests"), 4); /* denied */
}

static void test_decline_and_wrong_pin(void **state)
{
    it_server *s = *state;
    char cfg[512], cred[512], png[512], out[16384];
    tv_proc tv;

    paths(s, cfg, cred, png);
    phone_login(s, cfg);
    tv_start(&tv, s, cred, png);
    wait_for_file(png);

    /* A wrong PIN: nothing is sent, the TV keeps waiting. */
    const char *approve[] = {"phone", "approve", "--config", cfg, "--image", png, NULL};
    assert_int_equal(run("a\nnot-the-pin\n", out, sizeof out, approve), 1);
    assert_non_null(strstr(out, "wrong PIN"));
    assert_false(tv_expect(&tv, "Signed in", 1));

    /* Declining is one keystroke. */
    assert_int_equal(run("d\n", out, sizeof out, approve), 3);
    assert_non_null(strstr(out, "Declined"));
    assert_true(tv_expect(&tv, "declined", 10));
    assert_int_equal(tv_wait(&tv), 3);
    /* The last message starts on a line of its own, not after the countdown. */
    const char *msg = strstr(tv.out, "qrlogin: the sign-in was declined");
    assert_non_null(msg);
    assert_true(msg == tv.out || msg[-1] == '\n' ||
                (msg - tv.out >= 4 && memcmp(msg - 4, "\r\033[K", 4) == 0));
    struct stat st;
    assert_int_not_equal(stat(cred, &st), 0); /* no credential was stored */
}

static void test_revoke_from_phone(void **state)
{
    it_server *s = *state;
    char cfg[512], cred[512], png[512], out[16384], id[32];
    tv_proc tv;

    paths(s, cfg, cred, png);
    phone_login(s, cfg);
    tv_start(&tv, s, cred, png);
    wait_for_file(png);
    const char *approve[] = {"phone", "approve", "--config", cfg, "--image", png, NULL};
    assert_int_equal(run("a\n" PIN "\n", out, sizeof out, approve), 0);
    assert_true(tv_expect(&tv, "Signed in as Alice", 15));
    assert_int_equal(tv_wait(&tv), 0);

    const char *devices[] = {"phone", "devices", "--config", cfg, NULL};
    assert_int_equal(run(NULL, out, sizeof out, devices), 0);
    /* The TV's row: "<id> tv ...". */
    char *row = strstr(out, "\n");
    long long tv_id = -1;
    while (row != NULL) {
        long long v;
        char kind[16];
        if (sscanf(row + 1, "%lld %15s", &v, kind) == 2 && strcmp(kind, "tv") == 0)
            tv_id = v;
        row = strchr(row + 1, '\n');
    }
    assert_true(tv_id > 0);
    snprintf(id, sizeof id, "%lld", tv_id);
    const char *revoke[] = {"phone", "revoke", "--config", cfg, id, NULL};
    assert_int_equal(run(NULL, out, sizeof out, revoke), 0);
    const char *whoami[] = {"tv", "whoami", "--credentials", cred, NULL};
    assert_int_not_equal(run(NULL, out, sizeof out, whoami), 0);
    assert_non_null(strstr(out, "not signed in"));
}

/* Signing in again on the same terminal replaces the stored credential and signs the old one
 * out at the server: the user's list keeps one device for this terminal, not an orphan. */
static void test_signing_in_again_replaces_the_credential(void **state)
{
    it_server *s = *state;
    char cfg[512], cred[512], png[512], out[16384], old[8192] = "";
    const char *approve[] = {"phone", "approve", "--config", cfg, "--image", png, NULL};
    const char *devices[] = {"phone", "devices", "--config", cfg, NULL};
    tv_proc tv;
    FILE *f;

    paths(s, cfg, cred, png);
    phone_login(s, cfg);
    for (int round = 0; round < 2; round++) {
        unlink(png);
        tv_start(&tv, s, cred, png);
        wait_for_file(png);
        assert_int_equal(run("a\n" PIN "\n", out, sizeof out, approve), 0);
        assert_true(tv_expect(&tv, "Signed in as Alice", 15));
        if (round == 1)
            assert_true(tv_expect(&tv, "previous sign-in of this terminal was signed out", 5));
        assert_int_equal(tv_wait(&tv), 0);
        if (round == 0) {
            f = fopen(cred, "r");
            assert_non_null(f);
            assert_true(fread(old, 1, sizeof old - 1, f) > 0);
            fclose(f);
        }
    }
    assert_int_equal(run(NULL, out, sizeof out, devices), 0);
    char *first = strstr(out, "Living Room TV");
    assert_non_null(first);
    assert_null(strstr(first + 1, "Living Room TV"));

    /* The old refresh token is dead; the new credential works. */
    json_t *j = json_loads(old, 0, NULL);
    assert_non_null(j);
    it_resp *r = it_refresh(s, json_string_value(json_object_get(j, "client_id")),
                            json_string_value(json_object_get(j, "refresh_token")));
    assert_int_equal(r->status, 400);
    it_resp_free(r);
    json_decref(j);
    const char *whoami[] = {"tv", "whoami", "--credentials", cred, NULL};
    assert_int_equal(run(NULL, out, sizeof out, whoami), 0);
}

/* Starts qrlogin with `args` in a pseudo-terminal. */
static void pty_start(tv_proc *p, const char *const *args)
{
    const char *argv[32];
    size_t n = 0;

    argv[n++] = bin();
    for (size_t i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    memset(p, 0, sizeof *p);
    p->pid = forkpty(&p->fd, NULL, NULL, NULL);
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    fcntl(p->fd, F_SETFL, O_NONBLOCK);
}

/* Ctrl-C stops a waiting TV and a phone at its password prompt: a short "cancelled", exit
 * status 130, and the phone's terminal echoes again. */
static void test_ctrl_c_cancels(void **state)
{
    it_server *s = *state;
    char cfg[512], cred[512], png[512], slave[256];
    struct termios tio;
    tv_proc tv, phone;

    paths(s, cfg, cred, png);
    tv_start(&tv, s, cred, png);
    assert_true(tv_expect(&tv, "Scan the code", 15));
    kill(tv.pid, SIGINT);
    assert_true(tv_expect(&tv, "qrlogin: cancelled", 10));
    assert_int_equal(tv_wait(&tv), 130);
    assert_null(strstr(tv.out, "sign-in failed"));

    const char *login[] = {"phone", "login", "--server", s->base, "--config", cfg, IT_USER, NULL};
    pty_start(&phone, login);
    assert_true(tv_expect(&phone, "Password:", 15));
    assert_int_equal(ptsname_r(phone.fd, slave, sizeof slave), 0);
    it_sleep_ms(100); /* the prompt is printed just before echo is turned off */
    kill(phone.pid, SIGINT);
    assert_true(tv_expect(&phone, "qrlogin: cancelled", 10));
    int fd = open(slave, O_RDWR | O_NOCTTY);
    assert_true(fd >= 0);
    assert_int_equal(tcgetattr(fd, &tio), 0);
    close(fd);
    assert_int_equal(tv_wait(&phone), 130);
    assert_true((tio.c_lflag & ECHO) != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_story, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_decline_and_wrong_pin, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_key_mismatch_refused, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_revoke_from_phone, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_signing_in_again_replaces_the_credential,
                                        it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_ctrl_c_cancels, it_setup_alice, it_teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
