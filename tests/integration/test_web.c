/* SPDX-License-Identifier: MIT */
/*
 * The web pages' server side, spoken to over HTTP the way a browser does: cookies, Origin and
 * the X-CSRF-Token header. What a person would notice if it broke: the pages answer with their
 * security headers, a request from another site changes nothing, the screen's wait ends the
 * moment the phone decides, the screen's credential is an HttpOnly cookie, and a revoked screen
 * hears of it at once. The pages themselves are driven in a real browser by tests/browser/.
 */
#include "harness.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A browser: its cookie jar, and the Origin it sends. */
typedef struct browser {
    const it_server *s;
    char origin[128];
    char user_agent[200];
    struct {
        char name[32];
        char value[200];
    } jar[8];
    int n;
} browser;

static const char *jar_get(const browser *b, const char *name)
{
    for (int i = 0; i < b->n; i++)
        if (strcmp(b->jar[i].name, name) == 0)
            return b->jar[i].value;
    return NULL;
}

/* Keeps what the response's Set-Cookie headers say (Max-Age=0 deletes). */
static void jar_update(browser *b, const it_resp *r)
{
    for (int c = 0; c < r->n_set_cookie; c++) {
        const char *sc = r->set_cookie[c], *eq = strchr(sc, '=');
        size_t nl = eq != NULL ? (size_t)(eq - sc) : 0, vl;
        if (eq == NULL || nl >= sizeof b->jar[0].name)
            continue;
        vl = strcspn(eq + 1, ";");
        int i;
        for (i = 0; i < b->n; i++)
            if (strlen(b->jar[i].name) == nl && strncmp(b->jar[i].name, sc, nl) == 0)
                break;
        bool del = strstr(sc, "Max-Age=0") != NULL;
        if (i == b->n) {
            if (del || b->n == (int)(sizeof b->jar / sizeof b->jar[0]))
                continue;
            b->n++;
        }
        snprintf(b->jar[i].name, sizeof b->jar[i].name, "%.*s", (int)nl, sc);
        snprintf(b->jar[i].value, sizeof b->jar[i].value, "%.*s", (int)vl, eq + 1);
        if (del) {
            b->jar[i] = b->jar[b->n - 1];
            b->n--;
        }
    }
}

/* The Set-Cookie header of `name` in r, or NULL. */
static const char *set_cookie(const it_resp *r, const char *name)
{
    for (int i = 0; i < r->n_set_cookie; i++)
        if (strncmp(r->set_cookie[i], name, strlen(name)) == 0 &&
            r->set_cookie[i][strlen(name)] == '=')
            return r->set_cookie[i];
    return NULL;
}

/* One request as the browser would send it from our pages: cookies, Origin, the CSRF token,
 * a JSON body. `csrf` 0 leaves out the X-CSRF-Token header. Thread-safe (no assertions). */
static it_resp *send_as(browser *b, const char *method, const char *path, const char *json,
                        int wait_s, int csrf)
{
    char cookie[1400] = "Cookie: ", origin[160], token[160], ua[240];
    const char *hdrs[6];
    int h = 0;

    for (int i = 0; i < b->n; i++)
        snprintf(cookie + strlen(cookie), sizeof cookie - strlen(cookie), "%s%s=%s",
                 i > 0 ? "; " : "", b->jar[i].name, b->jar[i].value);
    if (b->n > 0)
        hdrs[h++] = cookie;
    snprintf(origin, sizeof origin, "Origin: %s", b->origin);
    if (b->origin[0] != '\0')
        hdrs[h++] = origin;
    const char *ck = jar_get(b, "qrl_csrf");
    snprintf(token, sizeof token, "X-CSRF-Token: %s", ck != NULL ? ck : "");
    if (csrf && ck != NULL)
        hdrs[h++] = token;
    snprintf(ua, sizeof ua, "User-Agent: %s", b->user_agent);
    if (b->user_agent[0] != '\0')
        hdrs[h++] = ua;
    hdrs[h] = NULL;
    it_req req = {.method = method,
                  .path = path,
                  .body = json,
                  .content_type = json != NULL ? "application/json" : NULL,
                  .prefer_wait = wait_s,
                  .headers = hdrs};
    return it_http(b->s, &req);
}

static it_resp *web(browser *b, const char *method, const char *path, const char *json)
{
    it_resp *r = send_as(b, method, path, json, 0, 1);
    assert_non_null(r);
    jar_update(b, r);
    return r;
}

/* A browser that has opened one of our pages (and so holds the CSRF cookie). */
static void browser_open(browser *b, const it_server *s, const char *page, const char *ua)
{
    memset(b, 0, sizeof *b);
    b->s = s;
    snprintf(b->origin, sizeof b->origin, "%s", s->base);
    snprintf(b->user_agent, sizeof b->user_agent, "%s", ua);
    it_resp *r = web(b, "GET", page, NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    assert_non_null(jar_get(b, "qrl_csrf"));
}

#define TV_UA "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
#define PHONE_UA                                                                                   \
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "             \
    "Chrome/120.0 Mobile Safari/537.36"

static void phone_sign_in(browser *p, const it_server *s)
{
    browser_open(p, s, "/s", PHONE_UA);
    it_resp *r = web(p, "POST", "/web/session",
                     "{\"username\":\"" IT_USER "\",\"password\":\"" IT_PASSWORD "\"}");
    it_expect(r, 200, NULL);
    const char *sc = set_cookie(r, "qrl_ps");
    assert_non_null(sc);
    assert_non_null(strstr(sc, "HttpOnly"));
    assert_non_null(strstr(sc, "SameSite=Strict"));
    it_resp_free(r);
}

/* The TV starts a login request; returns its user code in `uc`. */
static void tv_start(browser *tv, const it_server *s, char uc[32])
{
    browser_open(tv, s, "/", TV_UA);
    it_resp *r = web(tv, "POST", "/web/screen/start", "{}");
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "device_name"), "Chrome on Linux");
    snprintf(uc, 32, "%s", it_jstr(r, "user_code"));
    const char *sc = set_cookie(r, "qrl_scr");
    assert_non_null(sc);
    assert_non_null(strstr(sc, "HttpOnly"));
    assert_non_null(strstr(sc, "SameSite=Strict"));
    /* The device code is in the cookie only, never in what the page's script can read. */
    assert_null(strstr(r->body, "qrl_dc_"));
    it_resp_free(r);
}

struct wait_job {
    browser *b;
    const char *method, *path;
    it_resp *r;
    pthread_t th;
};

static void *wait_main(void *arg)
{
    struct wait_job *j = arg;
    j->r = send_as(j->b, j->method, j->path, j->method[0] == 'P' ? "{}" : NULL, 20, 1);
    return NULL;
}

static void wait_begin(struct wait_job *j, browser *b, const char *method, const char *path)
{
    *j = (struct wait_job){.b = b, .method = method, .path = path};
    assert_int_equal(pthread_create(&j->th, NULL, wait_main, j), 0);
    it_sleep_ms(300); /* let the request reach the server and be held */
}

static it_resp *wait_end(struct wait_job *j)
{
    pthread_join(j->th, NULL);
    assert_non_null(j->r);
    jar_update(j->b, j->r);
    return j->r;
}

static void test_pages_and_headers(void **state)
{
    const it_server *s = *state;
    static const char *const pages[] = {"/", "/home", "/s", "/device", "/devices", "/account"};

    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        it_req req = {.path = pages[i]};
        it_resp *r = it_http(s, &req);
        it_expect(r, 200, NULL);
        assert_true(it_contains_ci(r->content_type, "text/html"));
        assert_non_null(strstr(r->body, "<html"));
        assert_non_null(strstr(r->csp, "frame-ancestors 'none'"));
        assert_non_null(strstr(r->csp, "script-src 'self'"));
        assert_null(strstr(r->csp, "unsafe-inline"));
        assert_string_equal(r->referrer_policy, "no-referrer");
        assert_string_equal(r->nosniff, "nosniff");
        assert_true(it_contains_ci(r->cache_control, "no-store"));
        const char *sc = set_cookie(r, "qrl_csrf");
        assert_non_null(sc);
        assert_non_null(strstr(sc, "SameSite=Strict"));
        /* Plain http on loopback: a Secure cookie would be dropped by the browser. */
        assert_null(strstr(sc, "Secure"));
        it_resp_free(r);
    }
    it_req css = {.path = "/static/app.css"};
    it_resp *r = it_http(s, &css);
    it_expect(r, 200, NULL);
    assert_true(it_contains_ci(r->content_type, "text/css"));
    it_resp_free(r);
    it_req missing = {.path = "/static/nothing-here.js"};
    r = it_http(s, &missing);
    it_expect(r, 404, "not_found");
    it_resp_free(r);
}

static void test_cross_site_requests_refused(void **state)
{
    const it_server *s = *state;
    browser tv;
    it_resp *r;

    browser_open(&tv, s, "/", TV_UA);
    /* Without the CSRF header (a form posted by another site cannot add it). */
    r = send_as(&tv, "POST", "/web/screen/start", "{}", 0, 0);
    it_expect(r, 403, "csrf_failed");
    assert_null(set_cookie(r, "qrl_scr"));
    it_resp_free(r);
    /* With the token but from another origin. */
    snprintf(tv.origin, sizeof tv.origin, "http://evil.example");
    r = send_as(&tv, "POST", "/web/screen/start", "{}", 0, 1);
    it_expect(r, 403, "csrf_failed");
    it_resp_free(r);
    /* No Origin at all. */
    tv.origin[0] = '\0';
    r = send_as(&tv, "POST", "/web/session",
                "{\"username\":\"" IT_USER "\",\"password\":\"" IT_PASSWORD "\"}", 0, 1);
    it_expect(r, 403, "csrf_failed");
    assert_null(set_cookie(r, "qrl_ps"));
    it_resp_free(r);
    /* A token that is not the cookie's. */
    snprintf(tv.origin, sizeof tv.origin, "%s", s->base);
    snprintf(tv.jar[0].value, sizeof tv.jar[0].value, "%s",
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    const char *hdrs[] = {"X-CSRF-Token: BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", NULL};
    char origin[160];
    snprintf(origin, sizeof origin, "Origin: %s", s->base);
    const char *hdrs2[] = {hdrs[0], origin,
                           "Cookie: qrl_csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL};
    it_req req = {.method = "POST",
                  .path = "/web/screen/start",
                  .body = "{}",
                  .content_type = "application/json",
                  .headers = hdrs2};
    r = it_http(s, &req);
    it_expect(r, 403, "csrf_failed");
    it_resp_free(r);
    /* And the same browser from our own page succeeds. */
    browser_open(&tv, s, "/", TV_UA);
    r = web(&tv, "POST", "/web/screen/start", "{}");
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

static void test_screen_signed_in_on_approval(void **state)
{
    const it_server *s = *state;
    browser tv, phone;
    char uc[32], body[256];
    struct wait_job j;
    it_resp *r;

    tv_start(&tv, s, uc);
    r = web(&tv, "GET", "/web/screen/qr.svg?v=1", NULL);
    it_expect(r, 200, NULL);
    assert_true(it_contains_ci(r->content_type, "image/svg+xml"));
    assert_true(it_contains_ci(r->cache_control, "no-store"));
    it_resp_free(r);
    r = web(&tv, "GET", "/web/screen/me", NULL);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);

    phone_sign_in(&phone, s);
    r = web(&phone, "GET", "/web/session", NULL);
    it_expect(r, 200, NULL);
    assert_int_equal(it_jint(r, "passkeys"), 0);
    it_resp_free(r);

    wait_begin(&j, &tv, "POST", "/web/screen/wait");
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", uc);
    r = web(&phone, "POST", "/web/lr/view", body);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "device_name"), "Chrome on Linux");
    assert_string_equal(it_jstr(r, "device_kind"), "browser");
    assert_string_equal(it_jstr(r, "platform"), "Chrome on Linux");
    assert_int_equal(it_jbool(r, "same_network"), 1);
    assert_int_equal(it_jbool(r, "passkey"), 0);
    json_t *choices = json_object_get(r->json, "choices");
    assert_int_equal(json_array_size(choices), 3);
    int real = 0;
    char wrong[32] = "";
    for (size_t i = 0; i < 3; i++) {
        const char *c = json_string_value(json_array_get(choices, i));
        assert_non_null(c);
        assert_int_equal(strlen(c), 9);
        if (strcmp(c, uc) == 0)
            real++;
        else
            snprintf(wrong, sizeof wrong, "%s", c);
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(c, json_string_value(json_array_get(choices, k)));
    }
    assert_int_equal(real, 1);
    it_resp_free(r);

    /* The screen's wait ended when the phone claimed the request. */
    r = wait_end(&j);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);

    /* A wrong pick approves nothing. */
    snprintf(body, sizeof body,
             "{\"code\":\"%s\",\"user_code\":\"%s\",\"password\":\"" IT_PASSWORD "\"}", uc, wrong);
    r = web(&phone, "POST", "/web/lr/approve", body);
    it_expect(r, 400, "user_code_mismatch");
    it_resp_free(r);
    /* A wrong password neither. */
    snprintf(body, sizeof body, "{\"code\":\"%s\",\"user_code\":\"%s\",\"password\":\"nope\"}", uc,
             uc);
    r = web(&phone, "POST", "/web/lr/approve", body);
    it_expect(r, 403, "step_up_failed");
    it_resp_free(r);

    wait_begin(&j, &tv, "POST", "/web/screen/wait");
    snprintf(body, sizeof body,
             "{\"code\":\"%s\",\"user_code\":\"%s\",\"password\":\"" IT_PASSWORD "\"}", uc, uc);
    r = web(&phone, "POST", "/web/lr/approve", body);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "device_name"), "Chrome on Linux");
    it_resp_free(r);
    r = wait_end(&j);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "approved");
    const char *at = set_cookie(r, "qrl_at");
    assert_non_null(at);
    assert_non_null(strstr(at, "HttpOnly"));
    assert_non_null(strstr(at, "SameSite=Strict"));
    assert_null(strstr(r->body, "qrl_at_"));
    it_resp_free(r);

    r = web(&tv, "GET", "/web/screen/me", NULL);
    it_expect(r, 200, NULL);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r->json, "account"), "display_name")),
        IT_DISPLAY_NAME);
    it_resp_free(r);

    /* Both browsers are linked devices of the account. */
    r = web(&phone, "GET", "/web/devices", NULL);
    it_expect(r, 200, NULL);
    json_t *devs = json_object_get(r->json, "devices");
    assert_int_equal(json_array_size(devs), 2);
    int current = 0;
    for (size_t i = 0; i < 2; i++)
        current += json_is_true(json_object_get(json_array_get(devs, i), "current"));
    assert_int_equal(current, 1);
    it_resp_free(r);
}

/* Signs a TV in through the pages' API; returns the TV's device id. */
static long long tv_signed_in(const it_server *s, browser *tv, browser *phone)
{
    char uc[32], body[256];
    it_resp *r;

    tv_start(tv, s, uc);
    phone_sign_in(phone, s);
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", uc);
    r = web(phone, "POST", "/web/lr/view", body);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    snprintf(body, sizeof body,
             "{\"code\":\"%s\",\"user_code\":\"%s\",\"password\":\"" IT_PASSWORD "\"}", uc, uc);
    r = web(phone, "POST", "/web/lr/approve", body);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = web(tv, "POST", "/web/screen/wait", "{}");
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "approved");
    it_resp_free(r);
    r = web(tv, "GET", "/web/screen/me", NULL);
    it_expect(r, 200, NULL);
    long long id = json_integer_value(json_object_get(json_object_get(r->json, "device"), "id"));
    it_resp_free(r);
    assert_true(id > 0);
    return id;
}

static void test_revoked_screen_hears_at_once(void **state)
{
    const it_server *s = *state;
    browser tv, phone;
    struct wait_job j;
    char path[64];
    long long id = tv_signed_in(s, &tv, &phone);
    it_resp *r;

    wait_begin(&j, &tv, "GET", "/web/screen/watch");
    double t0 = it_now();
    snprintf(path, sizeof path, "/web/devices/%lld", id);
    r = web(&phone, "DELETE", path, NULL);
    it_expect(r, 204, NULL);
    it_resp_free(r);
    r = wait_end(&j);
    /* Woken by the revocation, not by the end of its 20-second hold. */
    assert_true(it_now() - t0 < 10.0);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
    r = web(&tv, "GET", "/web/screen/me", NULL);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
}

static void test_signout_and_deny(void **state)
{
    const it_server *s = *state;
    browser tv, phone, tv2;
    char uc[32], body[256];
    struct wait_job j;
    it_resp *r;

    tv_signed_in(s, &tv, &phone);
    r = web(&tv, "POST", "/web/screen/signout", "{}");
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = web(&tv, "GET", "/web/screen/me", NULL);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);

    tv_start(&tv2, s, uc);
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", uc);
    r = web(&phone, "POST", "/web/lr/view", body);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    /* The screen learns of the claim first (it would show "Confirm on your phone"). */
    r = web(&tv2, "POST", "/web/screen/wait", "{}");
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);
    wait_begin(&j, &tv2, "POST", "/web/screen/wait");
    r = web(&phone, "POST", "/web/lr/deny", body);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "denied");
    it_resp_free(r);
    r = wait_end(&j);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "denied");
    assert_null(set_cookie(r, "qrl_at"));
    it_resp_free(r);
    /* Deciding again changes nothing. */
    r = web(&phone, "POST", "/web/lr/deny", body);
    it_expect(r, 409, "invalid_state");
    it_resp_free(r);

    /* The phone signs out: its session no longer works. */
    r = web(&phone, "POST", "/web/signout", "{}");
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = web(&phone, "GET", "/web/devices", NULL);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
}

static void test_expiry_and_bad_input(void **state)
{
    const it_server *s = *state;
    browser tv, phone;
    char uc[32];
    it_resp *r;

    tv_start(&tv, s, uc);
    it_clock_advance(s, 130000);
    r = web(&tv, "POST", "/web/screen/wait", "{}");
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "expired");
    it_resp_free(r);
    r = web(&tv, "GET", "/web/screen/qr.svg", NULL);
    it_expect(r, 404, "no_request");
    it_resp_free(r);

    phone_sign_in(&phone, s);
    r = web(&phone, "POST", "/web/lr/view", "{\"code\":\"BBBB-BBBB\"}");
    it_expect(r, 404, "not_found");
    it_resp_free(r);
    r = web(&phone, "POST", "/web/lr/view", "{\"code\":7}");
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);
    r = web(&phone, "POST", "/web/lr/view", "not json");
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);
    r = web(&tv, "POST", "/web/screen/start",
            "{\"device_name\":"
            "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}");
    it_expect(r, 400, "invalid_device_name");
    it_resp_free(r);
    /* A name that would read differently on the phone (a right-to-left override). */
    r = web(&tv, "POST", "/web/screen/start", "{\"device_name\":\"Living Room TV\\u202eVT\"}");
    it_expect(r, 400, "invalid_device_name");
    it_resp_free(r);
    r = web(&phone, "POST", "/web/session", "{\"username\":\"" IT_USER "\",\"password\":\"x\"}");
    it_expect(r, 401, "invalid_credentials");
    assert_null(set_cookie(r, "qrl_ps"));
    it_resp_free(r);
    r = web(&phone, "DELETE", "/web/devices/abc", NULL);
    it_expect(r, 404, "not_found");
    it_resp_free(r);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_pages_and_headers),
        T(test_cross_site_requests_refused),
        T(test_screen_signed_in_on_approval),
        T(test_revoked_screen_hears_at_once),
        T(test_signout_and_deny),
        T(test_expiry_and_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
