/* SPDX-License-Identifier: MIT */
/*
 * Where a request comes from, through the real server: `qrlogin serve --geoip FILE` behind a
 * trusted proxy (--trusted-proxy 127.0.0.1/32, so that X-Forwarded-For places the screen and
 * the phone anywhere), and the phone's view of a login request says which country each is in
 * and whether they are the same. Without --geoip, and for loopback addresses, the country
 * members are null and the network comparison is what it always was. The notification of a
 * request blocked as phishing names the blocked screen's country too. A country database that
 * cannot be opened stops the start (exit 1) with the file named.
 *
 * The addresses' countries come from the test database (tests/geoip, QRL_GEOIP_DB): Brazil's
 * registry (200.160.2.3), a German publisher (193.99.144.80) and a German carrier's IPv6 block
 * (2003:de::1), as tests/unit/server/test_geoip.c checks them.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define BRAZIL "200.160.2.3"
#define GERMANY "193.99.144.80"
#define GERMANY_V6 "2003:de::1"

static const it_account alice[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME}, {NULL, NULL, NULL}};

static const char *db_path(void)
{
    const char *p = getenv("QRL_GEOIP_DB");

    if (p == NULL || p[0] == '\0')
        fail_msg("QRL_GEOIP_DB must name the test country database (tests/geoip/install.sh)");
    return p;
}

static int setup_geoip(void **state)
{
    static const char *args[5];
    it_server *s = it_server_new_with_accounts(alice);

    args[0] = "--geoip";
    args[1] = db_path();
    args[2] = "--trusted-proxy";
    args[3] = "127.0.0.1/32";
    args[4] = NULL;
    s->extra_args = args;
    it_server_start(s);
    *state = s;
    return 0;
}

/* A device authorization from `from` (NULL: this machine, no header); its scan secret. */
static void authorize_from(const it_server *s, const char *from, const char *name, char *scan,
                           size_t len)
{
    char hdr[96];
    const char *kv[] = {"client_id", IT_CLIENT_ID, "device_name", name, NULL};
    it_resp *r;
    const char *uri;

    snprintf(hdr, sizeof hdr, "X-Forwarded-For: %s", from != NULL ? from : "");
    r = it_form_post(s, "/oauth/device_authorization", kv,
                     &(it_req){.extra_header = from != NULL ? hdr : NULL});
    it_expect(r, 200, NULL);
    uri = it_jstr(r, "verification_uri_complete");
    assert_non_null(uri);
    assert_non_null(strchr(uri, '#'));
    snprintf(scan, len, "%s", strchr(uri, '#') + 1);
    it_resp_free(r);
}

/* The phone's GET /v1/login-requests/{code} from `from` (NULL: this machine). */
static it_resp *view_from(const it_server *s, const it_phone *p, const char *code, const char *from)
{
    char path[256], hdr[96];

    snprintf(path, sizeof path, "/v1/login-requests/%s", code);
    snprintf(hdr, sizeof hdr, "X-Forwarded-For: %s", from != NULL ? from : "");
    return it_http(
        s,
        &(it_req){.path = path, .bearer = p->session, .extra_header = from != NULL ? hdr : NULL});
}

/* Asserts that member `key` is the country {code, name}, or null when code is NULL. */
static void expect_country(const it_resp *r, const char *key, const char *code, const char *name)
{
    json_t *c = json_object_get(r->json, key);

    if (c == NULL)
        fail_msg("no member %s in %s", key, r->body);
    if (code == NULL) {
        if (!json_is_null(c))
            fail_msg("%s should be null in %s", key, r->body);
        return;
    }
    assert_true(json_is_object(c));
    assert_string_equal(json_string_value(json_object_get(c, "code")), code);
    assert_string_equal(json_string_value(json_object_get(c, "name")), name);
}

/* -1: null; 0 false; 1 true; fails when absent. */
static int same_country(const it_resp *r)
{
    json_t *v = json_object_get(r->json, "same_country");

    if (v == NULL)
        fail_msg("no same_country in %s", r->body);
    return json_is_null(v) ? -1 : json_is_true(v);
}

static void test_other_country(void **state)
{
    it_server *s = *state;
    char scan[IT_SECRET_MAX];
    it_phone phone;
    it_resp *r;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    authorize_from(s, BRAZIL, "Living Room TV", scan, sizeof scan);
    r = view_from(s, &phone, scan, GERMANY);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "address"), BRAZIL);
    expect_country(r, "request_country", "BR", "Brazil");
    expect_country(r, "phone_country", "DE", "Germany");
    assert_int_equal(same_country(r), 0);
    assert_int_equal(it_jbool(r, "same_network"), 0);
    it_resp_free(r);
    /* The phone looks again from home, in Brazil too: now the same country. */
    r = view_from(s, &phone, scan, "200.160.2.77");
    it_expect(r, 200, NULL);
    expect_country(r, "phone_country", "BR", "Brazil");
    assert_int_equal(same_country(r), 1);
    it_resp_free(r);
}

static void test_same_country_other_network(void **state)
{
    it_server *s = *state;
    char scan[IT_SECRET_MAX];
    it_phone phone;
    it_resp *r;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    /* A device name that needs escaping: the answer is built by jansson, not as text. */
    authorize_from(s, GERMANY, "Fernseher \xc3\xbc \"oben\"", scan, sizeof scan);
    r = view_from(s, &phone, scan, GERMANY_V6);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "device_name"), "Fernseher \xc3\xbc \"oben\"");
    expect_country(r, "request_country", "DE", "Germany");
    expect_country(r, "phone_country", "DE", "Germany");
    assert_int_equal(same_country(r), 1);
    assert_int_equal(it_jbool(r, "same_network"), 0);
    it_resp_free(r);
}

/* A code from Brazil opened from a fourth network is blocked (many_networks); the account's
 * request_blocked notification says the screen was in Brazil. */
static void test_blocked_notice_country(void **state)
{
    static const char *const from[] = {GERMANY, "192.0.2.10", "198.18.0.10"};
    it_server *s = *state;
    char scan[IT_SECRET_MAX];
    it_phone phone;
    it_resp *r;
    json_t *n, *screen;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    authorize_from(s, BRAZIL, "Living Room TV", scan, sizeof scan);
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        r = view_from(s, &phone, scan, from[i]);
        it_expect(r, 200, NULL);
        it_resp_free(r);
    }
    r = view_from(s, &phone, scan, "100.64.0.10");
    it_expect(r, 403, "suspicious_request");
    it_resp_free(r);
    r = it_json_send(s, "GET", "/v1/notifications", phone.session, NULL);
    it_expect(r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r->json, "notifications")), 1);
    n = json_array_get(json_object_get(r->json, "notifications"), 0);
    assert_string_equal(json_string_value(json_object_get(n, "kind")), "request_blocked");
    screen = json_object_get(n, "screen");
    assert_string_equal(json_string_value(json_object_get(screen, "address")), BRAZIL);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(screen, "country"), "code")), "BR");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(screen, "country"), "name")), "Brazil");
    it_resp_free(r);
}

/* Loopback has no country: today's network comparison is all there is. */
static void test_loopback_has_no_country(void **state)
{
    it_server *s = *state;
    char scan[IT_SECRET_MAX];
    it_phone phone;
    it_resp *r;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    authorize_from(s, NULL, "Living Room TV", scan, sizeof scan);
    r = view_from(s, &phone, scan, NULL);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "address"), "127.0.0.1");
    expect_country(r, "request_country", NULL, NULL);
    expect_country(r, "phone_country", NULL, NULL);
    assert_int_equal(same_country(r), -1);
    assert_int_equal(it_jbool(r, "same_network"), 1);
    it_resp_free(r);
    /* The phone abroad, the screen on this machine: only the phone's country is known. */
    r = view_from(s, &phone, scan, GERMANY);
    it_expect(r, 200, NULL);
    expect_country(r, "request_country", NULL, NULL);
    expect_country(r, "phone_country", "DE", "Germany");
    assert_int_equal(same_country(r), -1);
    it_resp_free(r);
}

/* Without --geoip the members are there and null, whatever the addresses. */
static void test_without_database(void **state)
{
    static const char *args[] = {"--trusted-proxy", "127.0.0.1/32", NULL};
    it_server *s = it_server_new_with_accounts(alice);
    char scan[IT_SECRET_MAX];
    it_phone phone;
    it_resp *r;

    (void)state;
    s->extra_args = args;
    it_server_start(s);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    authorize_from(s, BRAZIL, "Living Room TV", scan, sizeof scan);
    r = view_from(s, &phone, scan, GERMANY);
    it_expect(r, 200, NULL);
    expect_country(r, "request_country", NULL, NULL);
    expect_country(r, "phone_country", NULL, NULL);
    assert_int_equal(same_country(r), -1);
    assert_int_equal(it_jbool(r, "same_network"), 0);
    it_resp_free(r);
    it_server_stop(s);
    it_server_free(s);
}

/* Runs `qrlogin serve ARGS` (on a database that cannot be made, so a start that got past the
 * country database would fail anyway) with the variable `env` (name=value, or NULL); its exit
 * status and standard error. */
static int serve_status(const char *const *args, const char *env, char *err, size_t errlen)
{
    const char *bin = getenv("QRLOGIN_BIN");
    int pipefd[2], status = 0;
    pid_t pid;
    size_t n = 0;

    assert_non_null(bin);
    assert_int_equal(pipe(pipefd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *argv[16] = {bin, "serve", "--listen", "127.0.0.1:0", "--db"};
        size_t i = 5;
        char dbarg[64];
        snprintf(dbarg, sizeof dbarg, "/tmp/qrl-geoip-it-%d.db", (int)getpid());
        argv[i++] = dbarg;
        for (size_t k = 0; args[k] != NULL && i < 15; k++)
            argv[i++] = args[k];
        argv[i] = NULL;
        setenv("QRLOGIN_CONFIG", "none", 1);
        if (env != NULL)
            putenv((char *)env);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    for (ssize_t k; n + 1 < errlen && (k = read(pipefd[0], err + n, errlen - n - 1)) > 0;)
        n += (size_t)k;
    err[n] = '\0';
    close(pipefd[0]);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_unopenable_database(void **state)
{
    static const char *missing[] = {"--geoip", "/nonexistent/countries.mmdb", NULL};
    static const char *check[] = {"--geoip", "/nonexistent/countries.mmdb", "--check-config", NULL};
    static const char *none[] = {NULL};
    char err[2048], notmmdb[] = "/tmp/qrl-geoip-it-XXXXXX", env[PATH_MAX + 32];
    const char *junk[] = {"--geoip", notmmdb, NULL};
    int fd, st;

    (void)state;
    st = serve_status(missing, NULL, err, sizeof err);
    if (st != 1 ||
        strstr(err, "cannot open the country database /nonexistent/countries.mmdb") == NULL ||
        strstr(err, "No such file or directory") == NULL || strstr(err, "--geoip") == NULL)
        fail_msg("exit %d, stderr: %s", st, err);
    /* From the environment: the message names the variable. */
    st = serve_status(none, "QRLOGIN_GEOIP=/nonexistent/countries.mmdb", err, sizeof err);
    if (st != 1 || strstr(err, "QRLOGIN_GEOIP") == NULL)
        fail_msg("exit %d, stderr: %s", st, err);
    /* A file of another kind. */
    fd = mkstemp(notmmdb);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "DE,Germany\n", 11), 11);
    close(fd);
    st = serve_status(junk, NULL, err, sizeof err);
    if (st != 1 || strstr(err, notmmdb) == NULL || strstr(err, "not a MaxMind DB file") == NULL)
        fail_msg("exit %d, stderr: %s", st, err);
    unlink(notmmdb);
    /* --check-config checks it too: a bad configuration, exit 2. */
    st = serve_status(check, NULL, err, sizeof err);
    if (st != 2 || strstr(err, "/nonexistent/countries.mmdb") == NULL)
        fail_msg("exit %d, stderr: %s", st, err);
    /* And a good one passes --check-config, which shows where it came from. */
    /* The database lies in the source tree, wherever that was cloned: never cut its path. */
    assert_true((size_t)snprintf(env, sizeof env, "QRLOGIN_GEOIP=%s", db_path()) < sizeof env);
    {
        static const char *only_check[] = {"--check-config", NULL};
        st = serve_status(only_check, env, err, sizeof err);
        if (st != 0)
            fail_msg("exit %d, stderr: %s", st, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_other_country, setup_geoip, it_teardown),
        cmocka_unit_test_setup_teardown(test_same_country_other_network, setup_geoip, it_teardown),
        cmocka_unit_test_setup_teardown(test_loopback_has_no_country, setup_geoip, it_teardown),
        cmocka_unit_test_setup_teardown(test_blocked_notice_country, setup_geoip, it_teardown),
        cmocka_unit_test(test_without_database),
        cmocka_unit_test(test_unopenable_database),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests_name("integration/geoip", tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
