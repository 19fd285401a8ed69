/* SPDX-License-Identifier: MIT */
/*
 * Clients that hang up in the middle of a request. A request handler blocks its worker thread
 * while it waits for the store's group commit; the client may be gone by the time the commit is
 * done and the answer is sent. The server must finish such handlers
 * cleanly (their writes commit, their answers go nowhere), keep serving everyone else, and
 * still shut down cleanly: a user would notice a crash, a stuck connection or a server that
 * cannot stop.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HANGUP_THREADS 8
#define HANGUPS_EACH 150

typedef struct hanger {
    const it_server *s;
    int sent;
    pthread_t th;
} hanger;

/* Sends one complete request and, delay_us later, closes the connection with a reset
 * (SO_LINGER 0), without reading the answer. */
static int send_and_hang_up(int port, const char *req, size_t len, unsigned delay_us)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int ok = 0;

    if (fd < 0)
        return 0;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        send(fd, req, len, MSG_NOSIGNAL) == (ssize_t)len)
        ok = 1;
    if (delay_us > 0)
        usleep(delay_us);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    return ok;
}

static void *hanger_main(void *arg)
{
    hanger *h = arg;
    static const char body[] = "client_id=tv-app&device_name=Hangup%20TV&device_kind=tv";
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /oauth/device_authorization HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     sizeof body - 1, body);

    /* Resets from 0 to 0.9 ms after the request, so that some come while its handler waits
     * for its commit, and the answer then goes to a connection that has ended. */
    for (int i = 0; i < HANGUPS_EACH; i++)
        h->sent += send_and_hang_up(h->s->port, req, (size_t)n, (unsigned)(i % 10) * 100);
    return NULL;
}

static void test_hangups_during_commits(void **state)
{
    it_server *s = *state;
    hanger hs[HANGUP_THREADS];
    it_phone phone;
    it_tokens tok;
    int sent = 0, served = 0;

    memset(hs, 0, sizeof hs);
    for (int i = 0; i < HANGUP_THREADS; i++) {
        hs[i].s = s;
        assert_int_equal(pthread_create(&hs[i].th, NULL, hanger_main, &hs[i]), 0);
    }
    /* Meanwhile an ordinary screen keeps being served. */
    for (int i = 0; i < 50; i++) {
        it_devauth da;
        it_device_authorization(s, "tv-app", "Living Room TV", "tv", NULL, &da);
        served++;
    }
    for (int i = 0; i < HANGUP_THREADS; i++) {
        pthread_join(hs[i].th, NULL);
        sent += hs[i].sent;
    }
    assert_int_equal(sent, HANGUP_THREADS * HANGUPS_EACH);
    assert_int_equal(served, 50);

    /* Everything still works end to end afterwards... */
    it_phone_sign_in(s, "alice", IT_PASSWORD, NULL, &phone);
    it_login_screen(s, &phone, &tok, NULL);
    assert_true(it_introspect_active(s, tok.access_token));
    /* ...and the server stops cleanly (exit status 0, no suspended connection left behind). */
    it_server_stop(s);
}

/* libmicrohttpd logs a hung-up client's request path ("Failed to send the response headers for
 * the request for `...'"). A phone's claim carries the scan secret in its path and waits for a
 * commit, so hanging up there makes such a line: it must reach stderr with the secret
 * redacted, and no session token may appear either. libmicrohttpd writes that line only when the
 * reset arrives after it has read the request and before it answers; a reset that comes first
 * ends the connection without a path. So the claims hang up after delays from 0 to 0.9 ms, which
 * spread the resets over that window: without them, a slow (ASan) server on a busy machine could
 * see every reset first and log no path at all. */
#define CLAIMS 300

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 1 << 22);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 22) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_hung_up_paths_are_redacted_in_the_log(void **state)
{
    static it_devauth da[CLAIMS];
    char logpath[] = "/tmp/qrl-hangup-log-XXXXXX", req[1024], *log;
    int logfd = mkstemp(logpath), saved = dup(2), sent = 0;
    it_server *s;
    it_phone phone;

    (void)state;
    assert_true(logfd >= 0 && saved >= 0);
    /* The server inherits our stderr: point it at the file. */
    fflush(stderr);
    assert_true(dup2(logfd, 2) >= 0);
    s = it_server_new();
    it_account_add(s, "alice", IT_PASSWORD, "Alice");
    it_server_start(s);
    it_phone_sign_in(s, "alice", IT_PASSWORD, NULL, &phone);
    for (int i = 0; i < CLAIMS; i++)
        it_device_authorization(s, "tv-app", "Log TV", "tv", NULL, &da[i]);
    for (int i = 0; i < CLAIMS; i++) {
        int n = snprintf(req, sizeof req,
                         "GET /v1/login-requests/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Authorization: Bearer %s\r\n\r\n",
                         da[i].scan_secret, phone.session);
        sent += send_and_hang_up(s->port, req, (size_t)n, 100u * (unsigned)(i % 10));
    }
    it_server_stop(s);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(logfd);
    it_server_free(s);

    log = slurp(logpath);
    unlink(logpath);
    if (getenv("QRL_IT_SHOW_LOG") != NULL)
        fputs(log, stderr);
    assert_int_equal(sent, CLAIMS);
    /* No secret reached the log... */
    for (int i = 0; i < CLAIMS; i++)
        if (strstr(log, da[i].scan_secret + 7) != NULL)
            fail_msg("scan secret %d is in the log", i);
    if (strstr(log, phone.session + 7) != NULL)
        fail_msg("the session token is in the log");
    /* ...although libmicrohttpd did log hung-up claims (else this test proves nothing). */
    if (strstr(log, "\"source\":\"libmicrohttpd\"") == NULL ||
        strstr(log, "/v1/[redacted]") == NULL)
        fail_msg("no hung-up claim was logged; the log was:\n%s", log);
    free(log);
}

/* A screen that gives up on a held token request (Ctrl-C, a client timeout) is normal: the end
 * of the hold logs it as a client that left, not as an error of the server. */
static void test_abandoned_hold_is_not_an_error(void **state)
{
    char logpath[] = "/tmp/qrl-abandon-log-XXXXXX", req[1024], *log;
    int logfd = mkstemp(logpath), saved = dup(2);
    it_server *s;
    it_devauth da;

    (void)state;
    assert_true(logfd >= 0 && saved >= 0);
    fflush(stderr);
    assert_true(dup2(logfd, 2) >= 0);
    s = it_server_new();
    s->access_log = 1;
    it_server_start(s);
    it_device_authorization(s, "tv-app", "Quitting TV", "tv", NULL, &da);
    char body[300];
    int blen = snprintf(body, sizeof body,
                        "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Adevice_code"
                        "&client_id=tv-app&device_code=%s",
                        da.device_code);
    int n = snprintf(req, sizeof req,
                     "POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nPrefer: wait=2\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %d\r\n\r\n%s",
                     blen, body);
    /* Held for 2 s; the client leaves after 0.3 s, before the hold ends. */
    assert_int_equal(send_and_hang_up(s->port, req, (size_t)n, 300000), 1);
    it_sleep_ms(2500);
    it_server_stop(s);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(logfd);
    it_server_free(s);

    log = slurp(logpath);
    unlink(logpath);
    if (strstr(log, "internal error") != NULL)
        fail_msg("an abandoned hold was logged as an error:\n%s", log);
    /* The access line (JSON) of the hold: route token, no status, the client gone. */
    if (strstr(log, "\"route\":\"token\",\"status\":0,") == NULL ||
        strstr(log, "\"client_gone\":true") == NULL)
        fail_msg("the abandoned hold is not in the access log:\n%s", log);
    free(log);
}

int main(void)
{
    /* Hundreds of requests from one address: a test of hang-ups, not of the rate limits
     * (tests/integration/test_limits.c), which would refuse most of them. */
    setenv("QRLOGIN_RATE_LIMITS", "off", 1);
    /* The same for the cap on connections per address: hundreds of them come from 127.0.0.1
     * at once, more on a slower store. */
    setenv("QRLOGIN_PER_IP_LIMIT", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hangups_during_commits, it_setup_alice, it_teardown),
        cmocka_unit_test(test_hung_up_paths_are_redacted_in_the_log),
        cmocka_unit_test(test_abandoned_hold_is_not_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
