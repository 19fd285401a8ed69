/* SPDX-License-Identifier: MIT */
/*
 * Bad input gets a clear error (HTTP status + JSON error) and changes nothing: oversized
 * bodies, non-JSON bodies, unknown paths, wrong methods, missing credentials. Every answer here
 * is something a client developer sees while integrating, so each must be a JSON error body in
 * the RFC 6749 section 5.2 shape with the documented status.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define BIG (16 * 1024 + 1024)

static void test_oversized_bodies_are_413(void **state)
{
    it_server *s = *state;
    char *pad = malloc(BIG + 1);
    assert_non_null(pad);
    memset(pad, 'A', BIG);
    pad[BIG] = '\0';

    /* Form endpoints. */
    static const char *const form_paths[] = {"/oauth/device_authorization", "/oauth/token",
                                             "/oauth/introspect", "/oauth/revoke"};
    for (size_t i = 0; i < sizeof(form_paths) / sizeof(form_paths[0]); i++) {
        it_req opt = {.bearer = IT_INTROSPECTION_SECRET};
        it_resp *r = it_form_post(
            s, form_paths[i], (const char *[]){"client_id", IT_CLIENT_ID, "pad", pad, NULL}, &opt);
        if (r->status != 413) {
            print_error("POST %s with a %d-byte body\n", form_paths[i], BIG);
        }
        it_expect(r, 413, "payload_too_large");
        it_expect_error_shape(r);
        it_resp_free(r);
    }

    /* JSON endpoints. */
    it_resp *r = it_json_send(
        s, "POST", "/v1/sessions", NULL,
        json_pack("{s:s, s:s, s:s}", "username", IT_USER, "password", IT_PASSWORD, "pad", pad));
    it_expect(r, 413, "payload_too_large");
    it_expect_error_shape(r);
    assert_null(it_jstr(r, "session_token"));
    it_resp_free(r);

    /* A body just under the limit is not refused for its size. */
    pad[16 * 1024 - 200] = '\0';
    r = it_json_send(
        s, "POST", "/v1/sessions", NULL,
        json_pack("{s:s, s:s, s:s}", "username", IT_USER, "password", IT_PASSWORD, "pad", pad));
    assert_true(r->status != 413 && r->status != 0);
    it_resp_free(r);
    free(pad);

    /* The server is still fine. */
    r = it_http(s, &(it_req){.path = "/.well-known/oauth-authorization-server"});
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

static void test_non_json_bodies_on_v1(void **state)
{
    it_server *s = *state;
    static const char *const bodies[] = {
        "not json {", "[1,2,3]", "\"alice\"", "42", "", "{\"username\":\"alice\",\"password\":"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        it_req req = {.method = "POST",
                      .path = "/v1/sessions",
                      .content_type = "application/json",
                      .body = bodies[i][0] != '\0' ? bodies[i] : NULL};
        it_resp *r = it_http(s, &req);
        if (r->status != 400) {
            print_error("POST /v1/sessions with body \"%s\"\n", bodies[i]);
        }
        it_expect(r, 400, "invalid_request");
        it_expect_error_shape(r);
        it_resp_free(r);
    }

    /* An authenticated endpoint too. */
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    char path[256];
    snprintf(path, sizeof(path), "/v1/login-requests/%s/approve", da.scan_secret);
    it_req req = {.method = "POST",
                  .path = path,
                  .bearer = phone.session,
                  .content_type = "application/json",
                  .body = "user_code=x&password=y"};
    r = it_http(s, &req);
    it_expect(r, 400, "invalid_request");
    it_expect_error_shape(r);
    it_resp_free(r);
}

static void test_wrong_media_type_on_v1(void **state)
{
    it_server *s = *state;
    char json[256];
    snprintf(json, sizeof(json), "{\"username\":\"%s\",\"password\":\"%s\"}", IT_USER, IT_PASSWORD);
    it_req req = {
        .method = "POST", .path = "/v1/sessions", .content_type = "text/plain", .body = json};
    it_resp *r = it_http(s, &req);
    it_expect(r, 415, "unsupported_media_type");
    it_expect_error_shape(r);
    it_resp_free(r);

    req.content_type = "application/x-www-form-urlencoded";
    r = it_http(s, &req);
    it_expect(r, 415, "unsupported_media_type");
    it_resp_free(r);

    /* A charset parameter is still JSON. */
    req.content_type = "application/json; charset=utf-8";
    r = it_http(s, &req);
    it_expect(r, 201, NULL);
    it_resp_free(r);
}

static void test_unknown_paths_are_404_json(void **state)
{
    it_server *s = *state;
    static const struct {
        const char *method, *path;
    } cases[] = {
        {"GET", "/nope"},
        {"GET", "/v1/nope"},
        {"POST", "/oauth/nope"},
        {"GET", "/.well-known/openid-configuration-nope"},
        {"DELETE", "/v1/devices/3/extra"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        it_req req = {.method = cases[i].method, .path = cases[i].path};
        it_resp *r = it_http(s, &req);
        if (r->status != 404) {
            print_error("%s %s\n", cases[i].method, cases[i].path);
        }
        it_expect(r, 404, "not_found");
        it_expect_error_shape(r);
        it_resp_free(r);
    }
}

static void test_wrong_method_is_405_with_allow(void **state)
{
    it_server *s = *state;
    static const struct {
        const char *method, *path, *allowed;
    } cases[] = {
        {"GET", "/oauth/token", "POST"},
        {"GET", "/oauth/device_authorization", "POST"},
        {"PUT", "/oauth/introspect", "POST"},
        {"GET", "/oauth/revoke", "POST"},
        {"DELETE", "/.well-known/oauth-authorization-server", "GET"},
        {"GET", "/v1/sessions", "POST"},
        {"POST", "/v1/devices", "GET"},
        {"PUT", "/v1/devices/1", "DELETE"},
        {"POST", "/v1/me", "GET"},
        {"GET", "/v1/login-requests/BBBB-BBBB/approve", "POST"},
        {"DELETE", "/v1/login-requests/BBBB-BBBB/deny", "POST"},
        {"GET", "/_test/clock", "POST"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        it_req req = {.method = cases[i].method, .path = cases[i].path};
        it_resp *r = it_http(s, &req);
        if (r->status != 405 || !it_contains_ci(r->allow, cases[i].allowed)) {
            print_error("%s %s: status %ld, Allow \"%s\" (want 405 with %s)\n", cases[i].method,
                        cases[i].path, r->status, r->allow, cases[i].allowed);
        }
        it_expect(r, 405, "method_not_allowed");
        it_expect_error_shape(r);
        assert_true(it_contains_ci(r->allow, cases[i].allowed));
        it_resp_free(r);
    }
}

static void test_unauthenticated_v1_is_401(void **state)
{
    it_server *s = *state;
    static const char *const tokens[] = {NULL, "qrl_st_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                         "garbage", IT_INTROSPECTION_SECRET};
    static const struct {
        const char *method, *path;
    } cases[] = {
        {"GET", "/v1/devices"},
        {"GET", "/v1/me"},
        {"DELETE", "/v1/devices/1"},
        {"GET", "/v1/login-requests/BBBB-BBBB"},
        {"POST", "/v1/login-requests/BBBB-BBBB/deny"},
    };
    for (size_t t = 0; t < sizeof(tokens) / sizeof(tokens[0]); t++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            it_resp *r = it_json_send(s, cases[i].method, cases[i].path, tokens[t],
                                      strcmp(cases[i].method, "POST") == 0 ? json_object() : NULL);
            if (r->status != 401) {
                print_error("%s %s with token %s\n", cases[i].method, cases[i].path,
                            tokens[t] ? tokens[t] : "(none)");
            }
            it_expect(r, 401, "unauthorized");
            it_expect_error_shape(r);
            if (!it_contains_ci(r->www_authenticate, "Bearer")) {
                print_error("401 without WWW-Authenticate: Bearer (got \"%s\")\n",
                            r->www_authenticate);
                fail();
            }
            it_resp_free(r);
        }
    }

    /* An access token of a screen is not a phone session. */
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens tok;
    it_login_screen(s, &phone, &tok, NULL);
    it_resp *r = it_json_send(s, "GET", "/v1/devices", tok.access_token, NULL);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
}

static void test_introspection_requires_the_secret(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);

    /* No credentials, a wrong bearer, a wrong Basic password. */
    it_req opts[] = {
        {0},
        {.bearer = "not-the-secret"},
        {.basic_user = "rs", .basic_pass = "not-the-secret"},
        {.bearer = phone.session},
    };
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        it_resp *r = it_form_post(s, "/oauth/introspect",
                                  (const char *[]){"token", phone.session, NULL}, &opts[i]);
        if (r->status != 401) {
            print_error("introspection case %zu\n", i);
        }
        it_expect(r, 401, "invalid_client");
        it_expect_error_shape(r);
        assert_true(r->www_authenticate[0] != '\0');
        assert_null(json_object_get(r->json, "active"));
        it_resp_free(r);
    }

    /* HTTP Basic with any user name and the secret as password. */
    it_req basic = {.basic_user = "any-resource-server", .basic_pass = IT_INTROSPECTION_SECRET};
    it_resp *r = it_form_post(s, "/oauth/introspect",
                              (const char *[]){"token", phone.session, NULL}, &basic);
    it_expect(r, 200, NULL);
    assert_int_equal(it_jbool(r, "active"), 1);
    assert_string_equal(it_jstr(r, "username"), IT_USER);
    it_resp_free(r);

    /* Unknown tokens are just inactive, with nothing else said. */
    r = it_introspect(s, "qrl_at_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    it_expect(r, 200, NULL);
    assert_int_equal(it_jbool(r, "active"), 0);
    assert_null(it_jstr(r, "username"));
    it_resp_free(r);

    /* Missing token parameter: a bad request. */
    it_req bearer = {.bearer = IT_INTROSPECTION_SECRET};
    r = it_form_post(s, "/oauth/introspect", (const char *[]){"token_type_hint", "x", NULL},
                     &bearer);
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);
}

static void test_revoke_unknown_token_is_200(void **state)
{
    it_server *s = *state;
    it_resp *r =
        it_form_post(s, "/oauth/revoke",
                     (const char *[]){"token", "qrl_rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                      "client_id", IT_CLIENT_ID, NULL},
                     NULL);
    it_expect(r, 200, NULL);
    assert_true(json_is_object(r->json));
    assert_int_equal(json_object_size(r->json), 0);
    it_resp_free(r);
}

static int setup_no_secret(void **state)
{
    static const it_account alice[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME}, {NULL, NULL, NULL}};
    it_server *s = it_server_new_with_accounts(alice);
    s->no_introspection_secret = 1;
    it_server_start(s);
    *state = s;
    return 0;
}

/* Without a configured secret introspection is off, whatever the caller sends. */
static void test_introspection_disabled_without_secret(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_req opts[] = {
        {0},
        {.bearer = IT_INTROSPECTION_SECRET},
        {.bearer = ""},
        {.basic_user = "rs", .basic_pass = ""},
    };
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        it_resp *r = it_form_post(s, "/oauth/introspect",
                                  (const char *[]){"token", phone.session, NULL}, &opts[i]);
        if (r->status != 401) {
            print_error("introspection case %zu\n", i);
        }
        it_expect(r, 401, "invalid_client");
        assert_null(json_object_get(r->json, "active"));
        it_resp_free(r);
    }
}

/* Opens a TCP connection that sends half a request and then stalls. */
static int stalled_connection(const it_server *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    static const char half[] = "POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Content-Type: application/x-www-form-urlencoded\r\n"
                               "Content-Length: 100\r\n\r\ngrant_type=";
    assert_int_equal(write(fd, half, sizeof(half) - 1), (ssize_t)(sizeof(half) - 1));
    return fd;
}

/* The server keeps answering under slow or abusive clients. */
static void test_stalled_clients_do_not_block_others(void **state)
{
    it_server *s = *state;
    enum { N = 32 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = stalled_connection(s);
    }
    double t0 = it_now();
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_tokens t;
    it_login_screen(s, &phone, &t, NULL);
    double took = it_now() - t0;
    printf("errors: a whole sign-in with %d stalled connections open took %.3f s\n", N, took);
    assert_true(took < 5.0);
    for (int i = 0; i < N; i++) {
        close(fds[i]);
    }
    /* And after they went away, still fine. */
    assert_int_equal(it_introspect_active(s, t.access_token), 1);
}

/* Sends `req` on a new connection and reads until the server closes it or 3 s pass; returns the
 * bytes read (malloc'd, NUL-terminated) and sets *closed when the server closed. */
static char *raw_exchange(const it_server *s, const char *req, int *closed)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    struct timeval tv = {.tv_sec = 3};
    size_t n = 0, cap = 65536;
    char *buf = malloc(cap);

    assert_true(fd >= 0);
    assert_non_null(buf);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    *closed = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k == 0) {
            *closed = 1;
            break;
        }
        if (k < 0)
            break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    close(fd);
    return buf;
}

static int count(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        c++;
    return c;
}

/* RFC 9112 section 6.1: a request framed by both Content-Length and Transfer-Encoding is
 * refused and the connection closed, so the bytes after its body can never be read as a second
 * request (request smuggling behind a proxy that reads the other header). */
static void test_conflicting_framing_is_refused_and_closed(void **state)
{
    it_server *s = *state;
    int closed;
    char *out = raw_exchange(s,
                             "POST /oauth/device_authorization HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Content-Type: application/x-www-form-urlencoded\r\n"
                             "Content-Length: 14\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "0\r\n\r\n"
                             "GET /.well-known/oauth-authorization-server HTTP/1.1\r\n"
                             "Host: 127.0.0.1\r\n\r\n",
                             &closed);

    assert_non_null(strstr(out, "HTTP/1.1 400"));
    assert_non_null(strstr(out, "\"invalid_request\""));
    assert_int_equal(count(out, "HTTP/1.1 "), 1); /* the smuggled request got no answer */
    assert_null(strstr(out, "issuer"));
    assert_int_equal(closed, 1);
    free(out);
}

/* An encoded NUL in the path would end the C string early: the lookup of "CODE%00junk" must not
 * find CODE. */
static void test_encoded_nul_in_path_is_refused(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_phone phone;
    char path[160];

    it_device_authorization(s, IT_CLIENT_ID, "NUL TV", "tv", NULL, &da);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    snprintf(path, sizeof path, "/v1/login-requests/%s%%00junk", da.user_code);
    it_req req = {.path = path, .bearer = phone.session};
    it_resp *r = it_http(s, &req);
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);
    /* Nothing changed: the request is still pending for the phone that opens it properly. */
    r = it_view(s, &phone, da.user_code);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_oversized_bodies_are_413),
        T(test_non_json_bodies_on_v1),
        T(test_wrong_media_type_on_v1),
        T(test_unknown_paths_are_404_json),
        T(test_wrong_method_is_405_with_allow),
        T(test_unauthenticated_v1_is_401),
        T(test_introspection_requires_the_secret),
        T(test_revoke_unknown_token_is_200),
        cmocka_unit_test_setup_teardown(test_introspection_disabled_without_secret, setup_no_secret,
                                        it_teardown),
        T(test_stalled_clients_do_not_block_others),
        T(test_conflicting_framing_is_refused_and_closed),
        T(test_encoded_nul_in_path_is_refused),
    };
#undef T
    return cmocka_run_group_tests_name("integration/errors", tests, NULL, NULL);
}
