/* SPDX-License-Identifier: MIT */
/*
 * Allocation failures, SQLite's way: one whole login flow (sign-in, device authorization, a
 * pending poll, claim, approve, redeem, refresh) is run once with allocation 1 failing, once with
 * allocation 2 failing, and so on until a run makes fewer allocations than the one armed to fail.
 * lib/alloc.h counts the allocations of lib/ and server/; jansson's go through the same counter
 * (json_set_alloc_funcs), libmicrohttpd's and SQLite's do not.
 *
 * The flow runs twice: through the core API, where a run must end in the flow's normal results
 * (a failure the code absorbs, such as a cache entry it can do without) or in QRL_ERR_NOMEM at
 * the step that met it; and over HTTP against a server in this process, where each answer must
 * be the usual one, 503 temporarily_unavailable, or a closed connection without an answer
 * (libmicrohttpd's way when a handler cannot build its response). Either way nothing may be
 * left behind: under ASan, LeakSanitizer checks at exit that every run freed what it allocated.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <jansson.h>

#include "core_fixture.h"
#include "qrlogin/server.h"

/* The flow's steps, in order; each expects its usual result. */
enum step { SIGN_IN, AUTHORIZE, POLL_PENDING, CLAIM, APPROVE, REDEEM, REFRESH, DONE };

static const char *const step_name[] = {"sign-in", "authorize", "pending poll", "claim",
                                        "approve", "redeem",    "refresh"};

/* Runs the flow until a step fails; returns the step it reached (DONE when all passed) and that
 * step's result in *rc. */
static enum step run_flow(fx *f, qrl_err *rc)
{
    const qrl_proof pw = {.password = FX_PW};
    qrl_session s;
    qrl_auth phone;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_lr_view v;
    qrl_lr_rec lr;
    qrl_tokens t;

    *rc = qrl_session_create(f->core, "alice", FX_PW, "Phone", NULL, "10.0.0.5", &s);
    if (*rc == QRL_OK)
        *rc = qrl_session_auth(f->core, s.session_token, "10.0.0.5", &phone);
    if (*rc != QRL_OK)
        return SIGN_IN;
    *rc = qrl_device_authorize(f->core, FX_CLIENT, "profile", "TV", "tv", "10.0.0.7", &da);
    if (*rc != QRL_OK)
        return AUTHORIZE;
    *rc = qrl_token_device_code(f->core, FX_CLIENT, da.device_code, 0, 30, "10.0.0.7", &res);
    if (*rc != QRL_ERR_PENDING)
        return POLL_PENDING;
    *rc = qrl_lr_view_claim(f->core, &phone, da.scan_secret, "10.0.0.9", &v);
    if (*rc != QRL_OK)
        return CLAIM;
    *rc = qrl_lr_approve(f->core, &phone, da.scan_secret, da.user_code, &pw, "10.0.0.9", &lr);
    if (*rc != QRL_OK)
        return APPROVE;
    qrl_core_clock_advance(f->core, 5000);
    *rc = qrl_token_device_code(f->core, FX_CLIENT, da.device_code, 0, 30, "10.0.0.7", &res);
    if (*rc != QRL_OK)
        return REDEEM;
    *rc = qrl_token_refresh(f->core, FX_CLIENT, res.tokens.refresh_token, &t);
    if (*rc != QRL_OK)
        return REFRESH;
    return DONE;
}

static void test_each_allocation_fails(void **state)
{
    long n, hits = 0, absorbed = 0;

    (void)state;
    for (n = 1; n < 10000; n++) {
        void *st = NULL;
        enum step reached;
        qrl_err rc;
        bool failed;

        assert_int_equal(fx_setup(&st), 0);
        qrl__alloc_fail_nth(n);
        reached = run_flow(st, &rc);
        failed = qrl__alloc_failed();
        qrl__alloc_fail_nth(0);
        if (reached != DONE) {
            if (rc != QRL_ERR_NOMEM)
                print_error("allocation %ld: %s ended in %s\n", n, step_name[reached],
                            qrl_strerror(rc));
            assert_true(failed);
            assert_int_equal(rc, QRL_ERR_NOMEM);
            hits++;
        } else if (failed) {
            absorbed++;
        }
        assert_int_equal(fx_teardown(&st), 0);
        if (!failed)
            break; /* the flow made fewer than n allocations: every one has failed once */
    }
    print_message("flow makes %ld allocations: %ld failures answered QRL_ERR_NOMEM, %ld absorbed\n",
                  n - 1, hits, absorbed);
    assert_true(n > 1);
}

/* --- the same flow over HTTP ------------------------------------------------------------ */

typedef struct hfx {
    fx f;
    qrl_server *srv;
    unsigned short port;
} hfx;

static void hfx_start(hfx *h)
{
    qrl_server_config sc;
    qrl_config cfg;
    char err[128];

    memset(h, 0, sizeof *h);
    snprintf(h->f.dir, sizeof h->f.dir, "/tmp/qrl-unit-XXXXXX");
    assert_non_null(mkdtemp(h->f.dir));
    snprintf(h->f.db, sizeof h->f.db, "%s/t.db", h->f.dir);
    assert_int_equal(qrl_store_sqlite_open(h->f.db, &h->f.st, err, sizeof err), QRL_OK);
    qrl_server_config_defaults(&sc);
    sc.port = 0; /* any free port: tests run side by side */
    sc.threads = 2;
    assert_int_equal(qrl_server_new(&sc, &h->srv), QRL_OK);
    fx_config(&h->f, &cfg);
    cfg.on_change = qrl_server_on_change;
    cfg.on_change_ud = h->srv;
    qrl_server_handoff(h->srv, &cfg.handoff);
    assert_int_equal(qrl_core_new(&cfg, h->f.st, &h->f.core), QRL_OK);
    assert_int_equal(qrl_account_add(h->f.core, "alice", "Alice", FX_PW, NULL), QRL_OK);
    assert_int_equal(qrl_server_listen(h->srv, h->f.core, err, sizeof err), QRL_OK);
    h->port = qrl_server_port(h->srv);
}

static void hfx_stop(hfx *h)
{
    char cmd[128];

    qrl_server_stop(h->srv);
    qrl_core_free(h->f.core);
    h->f.st->m->close(h->f.st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->f.dir);
    assert_int_equal(system(cmd), 0);
}

/* One request on its own connection; returns the status, 0 when the server closed the
 * connection without an answer. The answer (headers and body) is in out. */
static int http(hfx *h, const char *method, const char *path, const char *type, const char *auth,
                const char *body, char *out, size_t outlen)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(h->port)};
    struct timeval tv = {.tv_sec = 30};
    char req[4096];
    size_t got = 0;
    int fd, n, status = 0;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    n = snprintf(req, sizeof req,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                 "Content-Type: %s\r\nContent-Length: %zu\r\n%s%s%s\r\n%s",
                 method, path, type, strlen(body), auth != NULL ? "Authorization: Bearer " : "",
                 auth != NULL ? auth : "", auth != NULL ? "\r\n" : "", body);
    assert_true(n > 0 && (size_t)n < sizeof req);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    while (got + 1 < outlen) {
        ssize_t k = recv(fd, out + got, outlen - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    out[got] = '\0';
    close(fd);
    if (got > 12 && strncmp(out, "HTTP/1.1 ", 9) == 0)
        status = atoi(out + 9);
    return status;
}

/* Copies the string member `key` of a flat JSON answer into val; false when it is absent. */
static bool member(const char *answer, const char *key, char *val, size_t len)
{
    char pat[64];
    const char *p, *e;

    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    if ((p = strstr(answer, pat)) == NULL)
        return false;
    p += strlen(pat);
    if ((e = strchr(p, '"')) == NULL || (size_t)(e - p) >= len)
        return false;
    memcpy(val, p, (size_t)(e - p));
    val[e - p] = '\0';
    return true;
}

/* The answer to one step: the expected status; or the server was out of memory and said so
 * (503) or closed the connection. Returns false when the flow cannot go on. */
static bool step_ok(int status, int expected, const char *what, const char *answer)
{
    if (status == expected)
        return true;
    if (status != 503 && status != 0)
        print_error("%s: status %d instead of %d, 503 or a closed connection:\n%s\n", what, status,
                    expected, answer);
    assert_true(status == 503 || status == 0);
    if (status == 503)
        assert_non_null(strstr(answer, "temporarily_unavailable"));
    return false;
}

#define FORM "application/x-www-form-urlencoded"
#define JSON "application/json"
#define DC_GRANT "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Adevice_code"

/* The flow over HTTP; true when every step got its usual answer. */
static bool run_http_flow(hfx *h)
{
    char ans[16384], st[128], dc[128], uc[32], uri[512], rt[128], path[256], body[512];
    const char *ss;
    int s;

    s = http(h, "POST", "/v1/sessions", JSON, NULL,
             "{\"username\":\"alice\",\"password\":\"" FX_PW "\"}", ans, sizeof ans);
    if (!step_ok(s, 201, "sign-in", ans))
        return false;
    assert_true(member(ans, "session_token", st, sizeof st));
    s = http(h, "POST", "/oauth/device_authorization", FORM, NULL,
             "client_id=" FX_CLIENT "&scope=profile", ans, sizeof ans);
    if (!step_ok(s, 200, "device authorization", ans))
        return false;
    assert_true(member(ans, "device_code", dc, sizeof dc));
    assert_true(member(ans, "user_code", uc, sizeof uc));
    assert_true(member(ans, "verification_uri_complete", uri, sizeof uri));
    assert_non_null(ss = strchr(uri, '#'));
    ss++;
    snprintf(body, sizeof body, DC_GRANT "&client_id=" FX_CLIENT "&device_code=%s", dc);
    s = http(h, "POST", "/oauth/token", FORM, NULL, body, ans, sizeof ans);
    if (!step_ok(s, 400, "pending poll", ans))
        return false;
    assert_non_null(strstr(ans, "authorization_pending"));
    snprintf(path, sizeof path, "/v1/login-requests/%s", ss);
    s = http(h, "GET", path, JSON, st, "", ans, sizeof ans);
    if (!step_ok(s, 200, "claim", ans))
        return false;
    snprintf(path, sizeof path, "/v1/login-requests/%s/approve", ss);
    snprintf(body, sizeof body, "{\"user_code\":\"%s\",\"password\":\"" FX_PW "\"}", uc);
    s = http(h, "POST", path, JSON, st, body, ans, sizeof ans);
    if (!step_ok(s, 200, "approve", ans))
        return false;
    qrl_core_clock_advance(h->f.core, 5000);
    snprintf(body, sizeof body, DC_GRANT "&client_id=" FX_CLIENT "&device_code=%s", dc);
    s = http(h, "POST", "/oauth/token", FORM, NULL, body, ans, sizeof ans);
    if (!step_ok(s, 200, "redeem", ans))
        return false;
    assert_true(member(ans, "refresh_token", rt, sizeof rt));
    snprintf(body, sizeof body, "grant_type=refresh_token&client_id=" FX_CLIENT "&refresh_token=%s",
             rt);
    s = http(h, "POST", "/oauth/token", FORM, NULL, body, ans, sizeof ans);
    if (!step_ok(s, 200, "refresh", ans))
        return false;
    assert_true(member(ans, "access_token", rt, sizeof rt));
    return true;
}

static void test_each_allocation_fails_http(void **state)
{
    long n, hits = 0, absorbed = 0;

    (void)state;
    for (n = 1; n < 100000; n++) {
        hfx h;
        bool done, failed;

        hfx_start(&h);
        qrl__alloc_fail_nth(n);
        done = run_http_flow(&h);
        failed = qrl__alloc_failed();
        qrl__alloc_fail_nth(0);
        hfx_stop(&h);
        if (!done) {
            assert_true(failed);
            hits++;
        } else if (failed) {
            absorbed++;
        } else {
            break;
        }
    }
    print_message("flow over HTTP makes %ld allocations: %ld failures answered 503 or closed, "
                  "%ld absorbed\n",
                  n - 1, hits, absorbed);
    assert_true(n > 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_allocation_fails),
        cmocka_unit_test(test_each_allocation_fails_http),
    };

    /* Before any JSON is made: jansson's allocations are counted too. */
    json_set_alloc_funcs(qrl__alloc_malloc, free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
