/* SPDX-License-Identifier: MIT */
/*
 * The terminal phone says where a request comes from: `qrlogin phone approve` against a server
 * with a country database (--geoip) prints "This request comes from Brazil, you are in
 * Germany." and a warning that cannot be missed when the countries differ, only the good news
 * when they are the same, and nothing about countries for a screen on this machine.
 *
 * The server trusts 127.0.0.1 as a proxy. The screen's device authorization sends
 * X-Forwarded-For itself; the phone, which sends no such header, talks to the server through a
 * small relay in this test that adds one to each request, as a reverse proxy would. The
 * addresses' countries come from the test database (tests/geoip, QRL_GEOIP_DB).
 *
 * `qrlogin phone notifications` tells of a sign-in request the server stopped as phishing while
 * another phone of the account was opening it: the screen, its country, why, what to do, and
 * the command to dismiss it (the one-tap removal has nothing to remove).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define PIN "4711-pin"
#define BRAZIL "200.160.2.3"
#define GERMANY "193.99.144.80"
#define GERMANY_V6 "2003:de::1"

static const it_account alice[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME}, {NULL, NULL, NULL}};

/* --- the relay: the phone's reverse proxy ----------------------------------------------- */

typedef struct relay {
    int listen_fd;
    int server_port;
    const char *from; /* the X-Forwarded-For it adds */
    char base[64];    /* http://127.0.0.1:PORT of the relay */
    atomic_bool stop;
    pthread_t thread;
} relay;

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* One connection: the request line, our header, then bytes both ways until either side
 * closes. The phone makes one request per connection. */
static void relay_one(relay *rl, int client)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rl->server_port)};
    char buf[16384], hdr[128];
    size_t have = 0;
    char *eol = NULL;
    int up = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (up < 0 || connect(up, (struct sockaddr *)&sa, sizeof sa) != 0)
        goto out;
    while (eol == NULL && have < sizeof buf - 1) {
        ssize_t r = read(client, buf + have, sizeof buf - 1 - have);
        if (r <= 0)
            goto out;
        have += (size_t)r;
        buf[have] = '\0';
        eol = strstr(buf, "\r\n");
    }
    if (eol == NULL)
        goto out;
    snprintf(hdr, sizeof hdr, "X-Forwarded-For: %s\r\n", rl->from);
    if (!write_all(up, buf, (size_t)(eol + 2 - buf)) || !write_all(up, hdr, strlen(hdr)) ||
        !write_all(up, eol + 2, have - (size_t)(eol + 2 - buf)))
        goto out;
    for (;;) {
        struct pollfd p[2] = {{.fd = client, .events = POLLIN}, {.fd = up, .events = POLLIN}};
        if (poll(p, 2, 10000) <= 0)
            break;
        int from = (p[0].revents & (POLLIN | POLLHUP)) ? client : up;
        int to = from == client ? up : client;
        ssize_t r = read(from, buf, sizeof buf);
        if (r <= 0 || !write_all(to, buf, (size_t)r))
            break;
    }
out:
    if (up >= 0)
        close(up);
    close(client);
}

static void *relay_main(void *arg)
{
    relay *rl = arg;

    while (!atomic_load(&rl->stop)) {
        struct pollfd p = {.fd = rl->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept(rl->listen_fd, NULL, NULL);
        if (c >= 0)
            relay_one(rl, c);
    }
    return NULL;
}

static void relay_start(relay *rl, const it_server *s, const char *from)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;

    memset(rl, 0, sizeof *rl);
    rl->server_port = s->port;
    rl->from = from;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    rl->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(rl->listen_fd >= 0);
    assert_int_equal(bind(rl->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(rl->listen_fd, 8), 0);
    assert_int_equal(getsockname(rl->listen_fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(rl->base, sizeof rl->base, "http://127.0.0.1:%d", ntohs(sa.sin_port));
    assert_int_equal(pthread_create(&rl->thread, NULL, relay_main, rl), 0);
}

static void relay_stop(relay *rl)
{
    atomic_store(&rl->stop, true);
    pthread_join(rl->thread, NULL);
    close(rl->listen_fd);
}

/* --- the phone and the screen ------------------------------------------------------------ */

/* Runs the qrlogin binary with argv, feeding `input` on stdin; captures stdout+stderr. */
static int run(const char *input, char *out, size_t outlen, const char *const *args)
{
    const char *bin = getenv("QRLOGIN_BIN"), *argv[32];
    int in[2], o[2], status;
    size_t n = 0, got = 0;
    pid_t pid;

    assert_non_null(bin);
    argv[n++] = bin;
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
    for (ssize_t r; got < outlen - 1 && (r = read(o[0], out + got, outlen - 1 - got)) > 0;)
        got += (size_t)r;
    out[got] = '\0';
    close(o[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    fprintf(stderr, "--- qrlogin %s %s -> %d\n%s", args[0], args[1] ? args[1] : "",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A screen's device authorization from `from` (NULL: this machine); its QR code's URL. */
static void screen_from(const it_server *s, const char *from, char *url, size_t len)
{
    char hdr[96];
    const char *kv[] = {"client_id", IT_CLIENT_ID, "device_name", "Living Room TV", NULL};
    it_resp *r;

    snprintf(hdr, sizeof hdr, "X-Forwarded-For: %s", from != NULL ? from : "");
    r = it_form_post(s, "/oauth/device_authorization", kv,
                     &(it_req){.extra_header = from != NULL ? hdr : NULL});
    it_expect(r, 200, NULL);
    assert_non_null(it_jstr(r, "verification_uri_complete"));
    snprintf(url, len, "%s", it_jstr(r, "verification_uri_complete"));
    it_resp_free(r);
}

static void test_phone_in_another_country(void **state)
{
    static const char *args[5];
    char cfg[512], url[512], out[16384];
    it_server *s = it_server_new_with_accounts(alice);
    relay rl;

    (void)state;
    args[0] = "--geoip";
    args[1] = getenv("QRL_GEOIP_DB");
    args[2] = "--trusted-proxy";
    args[3] = "127.0.0.1/32";
    if (args[1] == NULL)
        fail_msg("QRL_GEOIP_DB must name the test country database (tests/geoip/install.sh)");
    s->extra_args = args;
    it_server_start(s);
    relay_start(&rl, s, GERMANY);
    snprintf(cfg, sizeof cfg, "%s/phone/phone.json", s->dir);
    const char *login[] = {"phone", "login",  "--server",      rl.base, "--config",
                           cfg,     "--name", "Alice's phone", IT_USER, NULL};
    assert_int_equal(run(IT_PASSWORD "\n" PIN "\n" PIN "\n", out, sizeof out, login), 0);

    /* A screen in Brazil: the phone in Germany is warned, and declines. */
    screen_from(s, BRAZIL, url, sizeof url);
    const char *approve[] = {"phone", "approve", "--config", cfg, url, NULL};
    assert_int_equal(run("d\n", out, sizeof out, approve), 3);
    assert_non_null(strstr(out, "\n  This request comes from Brazil, you are in Germany.\n"));
    assert_non_null(strstr(out, "WARNING: this request comes from another country (Brazil) "
                                "than this phone (Germany)"));
    assert_non_null(strstr(out, "answer d"));
    /* The warning comes before the question. */
    assert_true(strstr(out, "WARNING") < strstr(out, "[a] approve"));
    assert_non_null(strstr(out, "Declined"));

    /* A screen in Germany, on another network: the country line, no warning; approved. */
    screen_from(s, GERMANY_V6, url, sizeof url);
    assert_int_equal(run("a\n" PIN "\n", out, sizeof out, approve), 0);
    assert_non_null(strstr(out, "This request comes from Germany, you are in Germany."));
    assert_null(strstr(out, "WARNING"));
    assert_non_null(strstr(out, "NOT your network"));

    /* A screen on this machine has no country: nothing is said about countries. */
    screen_from(s, NULL, url, sizeof url);
    assert_int_equal(run("d\n", out, sizeof out, approve), 3);
    assert_null(strstr(out, "This request comes from"));
    assert_null(strstr(out, "WARNING"));

    relay_stop(&rl);
    it_server_stop(s);
    it_server_free(s);
}

/* The phone's GET /v1/login-requests/{scan secret of url} from `from`: its status. */
static long view_from(const it_server *s, const it_phone *p, const char *url, const char *from)
{
    char path[512], hdr[96];
    it_resp *r;
    long status;

    snprintf(path, sizeof path, "/v1/login-requests/%s", strchr(url, '#') + 1);
    snprintf(hdr, sizeof hdr, "X-Forwarded-For: %s", from);
    r = it_http(s, &(it_req){.path = path, .bearer = p->session, .extra_header = hdr});
    status = r->status;
    it_resp_free(r);
    return status;
}

static void test_phone_told_of_blocked_request(void **state)
{
    static const char *args[5];
    static const char *const nets[] = {GERMANY, "192.0.2.10", "198.18.0.10"};
    char cfg[512], url[512], out[16384], id[32];
    it_server *s = it_server_new_with_accounts(alice);
    it_phone tablet;
    const char *p;

    (void)state;
    args[0] = "--geoip";
    args[1] = getenv("QRL_GEOIP_DB");
    args[2] = "--trusted-proxy";
    args[3] = "127.0.0.1/32";
    if (args[1] == NULL)
        fail_msg("QRL_GEOIP_DB must name the test country database (tests/geoip/install.sh)");
    s->extra_args = args;
    it_server_start(s);
    snprintf(cfg, sizeof cfg, "%s/phone/phone.json", s->dir);
    const char *login[] = {"phone", "login",  "--server",      s->base, "--config",
                           cfg,     "--name", "Alice's phone", IT_USER, NULL};
    assert_int_equal(run(IT_PASSWORD "\n" PIN "\n" PIN "\n", out, sizeof out, login), 0);
    const char *list[] = {"phone", "notifications", "--config", cfg, NULL};
    assert_int_equal(run(NULL, out, sizeof out, list), 0);
    assert_non_null(strstr(out, "Nothing new"));

    /* Alice's tablet opens a code from Brazil that three other networks opened: stopped. */
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's tablet", &tablet);
    screen_from(s, BRAZIL, url, sizeof url);
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++)
        assert_int_equal(view_from(s, &tablet, url, nets[i]), 200);
    assert_int_equal(view_from(s, &tablet, url, "100.64.0.10"), 403);

    assert_int_equal(run(NULL, out, sizeof out, list), 0);
    assert_non_null(strstr(out, "Sign-in request stopped: \"Living Room TV\" ("));
    assert_non_null(strstr(out, "), from Brazil (" BRAZIL "), "));
    assert_non_null(strstr(out, "\n  \"Alice's tablet\" was about to approve it. It looked like a "
                                "phishing attempt: the code was opened from many places.\n"));
    assert_non_null(strstr(out, "If someone asked you to scan a code, do not. Nothing was linked "
                                "to your account."));
    assert_null(strstr(out, "revoke-new"));
    p = strstr(out, "qrlogin phone dismiss ");
    assert_non_null(p);
    snprintf(id, sizeof id, "%.*s", (int)strspn(p + 22, "0123456789"), p + 22);
    assert_true(strlen(id) > 0);
    /* Nothing to remove; dismissed, it is gone from this phone. */
    const char *revoke[] = {"phone", "revoke-new", "--config", cfg, id, NULL};
    assert_int_equal(run(NULL, out, sizeof out, revoke), 1);
    assert_non_null(strstr(out, "not_revocable"));
    const char *dismiss[] = {"phone", "dismiss", "--config", cfg, id, NULL};
    assert_int_equal(run(NULL, out, sizeof out, dismiss), 0);
    assert_int_equal(run(NULL, out, sizeof out, list), 0);
    assert_non_null(strstr(out, "Nothing new"));
    it_server_stop(s);
    it_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_phone_in_another_country),
        cmocka_unit_test(test_phone_told_of_blocked_request),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    rc = cmocka_run_group_tests_name("e2e/phone_country", tests, NULL, NULL);
    return rc;
}
