/* SPDX-License-Identifier: MIT */
/*
 * Abuse limits of a real `qrlogin serve`, from outside, with its default settings:
 * - a flood of device authorizations from one address is refused with 429, Retry-After and a
 *   JSON error once the address's limit is spent; the table stops growing; another address is
 *   not affected; the address's own pending request still polls, is approved and redeemed;
 * - password failures and user-code misses get 429 with the wait of the limit that refused;
 * - 1,000 slow connections (headers never finished) from four addresses are held open while a
 *   fresh request is answered; connections past the per-address cap are refused at once.
 * Source addresses are loopback addresses of 127.0.0.0/8 (Linux routes all of them locally).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static const char *const DEVAUTH_KV[] = {"client_id", IT_CLIENT_ID, "device_name", "TV", NULL};

static it_resp *devauth_from(const it_server *s, const char *source)
{
    char *body = it_form(DEVAUTH_KV);
    it_req req = {.path = "/oauth/device_authorization",
                  .content_type = "application/x-www-form-urlencoded",
                  .body = body,
                  .source = source};
    it_resp *r = it_http(s, &req);
    free(body);
    return r;
}

static void test_device_authorization_flood(void **state)
{
    it_server *s = *state;
    it_devauth first;
    it_phone phone;
    int ok = 0, limited = 0;

    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &first);
    for (int i = 0; i < 300; i++) {
        it_resp *r = devauth_from(s, "127.0.0.1");
        assert_non_null(r);
        if (r->status == 200) {
            ok++;
        } else {
            it_expect(r, 429, "slow_down");
            it_expect_error_shape(r);
            long retry = atol(r->retry_after);
            assert_true(retry >= 1 && retry <= 5); /* one more every 600 / 120 s */
            limited++;
        }
        it_resp_free(r);
    }
    /* 120 at once, counting the first; a slow machine may have earned one or two more. */
    assert_true(ok >= 119 && ok <= 122);
    assert_int_equal(ok + limited, 300);
    /* Nothing of a refused request was written: the table holds the accepted ones only. */
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM login_requests"), ok + 1);

    /* Another address is not affected. */
    it_resp *r = devauth_from(s, "127.0.0.2");
    it_expect(r, 200, NULL);
    it_resp_free(r);

    /* The limited address's own request still works end to end. */
    r = it_try_token_poll(s, IT_CLIENT_ID, first.device_code, 0);
    it_expect_oauth_error(r, "authorization_pending");
    it_resp_free(r);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    r = it_view(s, &phone, first.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, first.scan_secret, first.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_clock_advance(s, 5000);
    r = it_try_token_poll(s, IT_CLIENT_ID, first.device_code, 0);
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

static void test_password_and_user_code_limits(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_resp *r;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    /* User-code misses: 5 per account per 15 minutes, then 429 for 180 s (900 / 5). */
    const char *wrong[] = {"BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD", "FFFF-FFFF", "GGGG-GGGG"};
    for (int i = 0; i < 5; i++) {
        r = it_view(s, &phone, wrong[i]);
        it_expect(r, 404, "not_found");
        it_resp_free(r);
    }
    r = it_view(s, &phone, "HHHH-HHHH");
    it_expect(r, 429, "rate_limited");
    assert_true(atol(r->retry_after) >= 150 && atol(r->retry_after) <= 180); /* less the time spent */
    it_resp_free(r);

    /* Password failures: 10 per username per 15 minutes, then 429 for 90 s (900 / 10), even
     * with the right password. */
    for (int i = 0; i < 10; i++) {
        r = it_json_send(s, "POST", "/v1/sessions", NULL,
                         json_pack("{s:s, s:s}", "username", IT_USER, "password", "wrong"));
        it_expect(r, 401, NULL);
        it_resp_free(r);
    }
    r = it_json_send(s, "POST", "/v1/sessions", NULL,
                     json_pack("{s:s, s:s}", "username", IT_USER, "password", IT_PASSWORD));
    it_expect(r, 429, "rate_limited");
    assert_true(atol(r->retry_after) >= 60 && atol(r->retry_after) <= 90); /* less the time spent */
    it_resp_free(r);
}

/* A TCP connection from `source` to the server that sends the start of a request and never
 * finishes its headers. Returns the socket. */
static int slow_connection(const it_server *s, const char *source)
{
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    inet_pton(AF_INET, source, &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    dst.sin_port = htons((unsigned short)s->port);
    assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&dst, sizeof dst), 0);
    const char *start = "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: x\r\n";
    assert_true(write(fd, start, strlen(start)) > 0);
    return fd;
}

/* True when the server has closed `fd` (or reset it) within `ms`. */
static int closed_by_server(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char b[64];

    if (poll(&p, 1, ms) <= 0)
        return 0;
    ssize_t n = read(fd, b, sizeof b);
    return n == 0 || (n < 0 && errno == ECONNRESET) || (n > 0 && strncmp(b, "HTTP/1.1 ", 9) == 0);
}

static void test_slow_connections(void **state)
{
    it_server *s = *state;
    static int fds[1000];
    const char *src[] = {"127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"};

    for (int i = 0; i < 1000; i++)
        fds[i] = slow_connection(s, src[i % 4]);
    /* All 1,000 are open; a fresh request is answered meanwhile. */
    for (int k = 0; k < 3; k++) {
        it_req req = {.path = "/.well-known/oauth-authorization-server", .timeout_ms = 5000};
        it_resp *r = it_http(s, &req);
        it_expect(r, 200, NULL);
        it_resp_free(r);
    }
    for (int i = 0; i < 1000; i += 97)
        assert_false(closed_by_server(fds[i], 0));

    /* One address holds at most 256: with 8 more from 127.0.1.1 (258 in all) exactly two of
     * its connections are closed at once, whichever the server accepted last. */
    int extra[8];
    for (int i = 0; i < 8; i++)
        extra[i] = slow_connection(s, "127.0.1.1");
    struct pollfd p[258];
    int n = 0;
    for (int i = 0; i < 1000; i += 4)
        p[n++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    for (int i = 0; i < 8; i++)
        p[n++] = (struct pollfd){.fd = extra[i], .events = POLLIN};
    assert_int_equal(n, 258);
    int closed = 0;
    for (double end = it_now() + 10; closed < 2 && it_now() < end;) {
        assert_true(poll(p, (nfds_t)n, 100) >= 0);
        for (int i = 0; i < n; i++)
            if (p[i].revents != 0 && p[i].fd >= 0) {
                assert_true(closed_by_server(p[i].fd, 0));
                p[i].fd = -p[i].fd - 1; /* counted: poll skips negative fds */
                closed++;
            }
    }
    assert_int_equal(closed, 2);
    assert_int_equal(poll(p, (nfds_t)n, 500), 0); /* and no third */
    for (int i = 0; i < 8; i++)
        close(extra[i]);
    for (int i = 0; i < 1000; i++)
        close(fds[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_device_authorization_flood, it_setup_alice,
                                        it_teardown),
        cmocka_unit_test_setup_teardown(test_password_and_user_code_limits, it_setup_alice,
                                        it_teardown),
        cmocka_unit_test_setup_teardown(test_slow_connections, it_setup_alice, it_teardown),
    };
    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
