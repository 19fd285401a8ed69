/* SPDX-License-Identifier: MIT */
/*
 * The patterns of phishing kits through the real server (docs/security.md, "Detection"):
 * `qrlogin serve --trusted-proxy 127.0.0.1/32` so that X-Forwarded-For places the screen and
 * the phones on any network, `--deny-networks 203.0.113.0/24`, and
 * `--max-approvers-per-address 2` to need few accounts. Each pattern is answered
 * `403 suspicious_request` with its reason and a sentence for the phone, the screen is told
 * `access_denied`, and the server's log holds the audit event request_blocked with the reason.
 * The account whose phone was stopped is told on its other devices: a request_blocked
 * notification, which wakes a held GET /v1/notifications of another phone of that account,
 * names the screen, the reason and the phone, and is acknowledged per device; an unrelated
 * account is told nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "harness.h"

/* How long a held request gets to be parked before the block (an ordering aid only). */
#define PARK_MS 300
#define WAIT_S 30

static const it_account accounts[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME},
                                      {"bob", "bob's password", "Bob"},
                                      {"carol", "carol's password", "Carol"},
                                      {NULL, NULL, NULL}};

static int setup(void **state)
{
    static const char *const args[] = {"--trusted-proxy",
                                       "127.0.0.1/32",
                                       "--deny-networks",
                                       "203.0.113.0/24",
                                       "--max-approvers-per-address",
                                       "2",
                                       NULL};
    it_server *s = it_server_new_with_accounts(accounts);

    s->extra_args = args;
    it_server_start(s);
    *state = s;
    return 0;
}

/* A device authorization from `from`. */
static void authorize_from(const it_server *s, const char *from, it_devauth *out)
{
    char hdr[96];
    const char *kv[] = {"client_id",   IT_CLIENT_ID, "device_name",     "Living Room TV",
                        "device_kind", "tv",         "device_platform", "Samsung Tizen",
                        NULL};
    it_resp *r;
    const char *uri, *code;

    snprintf(hdr, sizeof hdr, "X-Forwarded-For: %s", from);
    r = it_form_post(s, "/oauth/device_authorization", kv, &(it_req){.extra_header = hdr});
    it_expect(r, 200, NULL);
    memset(out, 0, sizeof *out);
    uri = it_jstr(r, "verification_uri_complete");
    code = it_jstr(r, "device_code");
    assert_non_null(uri);
    assert_non_null(code);
    assert_non_null(strchr(uri, '#'));
    snprintf(out->scan_secret, sizeof out->scan_secret, "%s", strchr(uri, '#') + 1);
    snprintf(out->device_code, sizeof out->device_code, "%s", code);
    snprintf(out->user_code, sizeof out->user_code, "%s", it_jstr(r, "user_code"));
    it_resp_free(r);
}

static it_resp *view_from(const it_server *s, const it_phone *p, const char *code, const char *from)
{
    char path[256], hdr[96];

    snprintf(path, sizeof path, "/v1/login-requests/%s", code);
    snprintf(hdr, sizeof hdr, "X-Forwarded-For: %s", from);
    return it_http(s, &(it_req){.path = path, .bearer = p->session, .extra_header = hdr});
}

static it_resp *approve_from(const it_server *s, const it_phone *p, const it_devauth *da,
                             const char *password, const char *from)
{
    char path[256], hdr[96], *body;
    json_t *o = json_pack("{s:s, s:s}", "user_code", da->user_code, "password", password);
    it_resp *r;

    snprintf(path, sizeof path, "/v1/login-requests/%s/approve", da->scan_secret);
    snprintf(hdr, sizeof hdr, "X-Forwarded-For: %s", from);
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    r = it_http(s, &(it_req){.method = "POST",
                             .path = path,
                             .bearer = p->session,
                             .content_type = "application/json",
                             .body = body,
                             .extra_header = hdr});
    free(body);
    return r;
}

/* Asserts a refusal as suspicious_request with `reason` and a description holding `words`. */
static void expect_blocked(const it_resp *r, const char *reason, const char *words)
{
    it_expect(r, 403, "suspicious_request");
    assert_non_null(it_jstr(r, "reason"));
    assert_string_equal(it_jstr(r, "reason"), reason);
    assert_non_null(it_jstr(r, "error_description"));
    if (strstr(it_jstr(r, "error_description"), words) == NULL)
        fail_msg("'%s' not in %s", words, r->body);
}

/* The screen's next poll is told the request was declined. */
static void expect_screen_denied(const it_server *s, const it_devauth *da)
{
    it_resp *r;

    it_clock_advance(s, 6000);
    r = it_token_poll(s, IT_CLIENT_ID, da->device_code, 0);
    it_expect_oauth_error(r, "access_denied");
    it_resp_free(r);
}

/* Waits (up to 5 s: the server's stderr reaches the log through a thread) for the audit line
 * request_blocked with `reason` and the account id, and checks it holds no secret. */
static void expect_audit(const it_server *s, const char *reason, long long account_id)
{
    char want[64];

    snprintf(want, sizeof want, "\"reason\":\"%s\"", reason);
    for (int tries = 0; tries < 100; tries++) {
        FILE *f = fopen(s->log, "r");
        char line[4096];
        assert_non_null(f);
        while (fgets(line, sizeof line, f) != NULL) {
            if (strstr(line, "\"event\":\"request_blocked\"") == NULL || strstr(line, want) == NULL)
                continue;
            json_t *o = json_loads(line, 0, NULL);
            assert_non_null(o);
            assert_string_equal(json_string_value(json_object_get(o, "error")),
                                "suspicious_request");
            assert_int_equal(json_integer_value(json_object_get(o, "account_id")), account_id);
            assert_true(json_integer_value(json_object_get(o, "login_request_id")) > 0);
            assert_null(strstr(line, "qrl_ss_"));
            json_decref(o);
            fclose(f);
            return;
        }
        fclose(f);
        it_sleep_ms(50);
    }
    fail_msg("no request_blocked line with %s in %s", want, s->log);
}

/* --- what the account is told ---------------------------------------------------------- */

/* A GET /v1/notifications held on a thread (Prefer: wait) while the main thread acts. */
typedef struct held {
    const it_server *s;
    it_req req;
    double t_start, t_done;
    int done;
    it_resp *r;
    pthread_t th;
} held;

static void *held_main(void *arg)
{
    held *h = arg;

    h->r = it_http(h->s, &h->req);
    h->t_done = it_now();
    __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Starts the held request of `p` and checks it is held (nothing new for it yet). */
static void held_start(held *h, const it_server *s, const it_phone *p)
{
    memset(h, 0, sizeof *h);
    h->s = s;
    h->req = (it_req){.path = "/v1/notifications", .bearer = p->session, .prefer_wait = WAIT_S};
    h->t_start = it_now();
    assert_int_equal(pthread_create(&h->th, NULL, held_main, h), 0);
    it_sleep_ms(PARK_MS);
    if (__atomic_load_n(&h->done, __ATOMIC_ACQUIRE)) {
        pthread_join(h->th, NULL);
        fail_msg("GET /v1/notifications was answered at once (%ld: %s) instead of being held",
                 h->r ? h->r->status : 0L, h->r ? h->r->body : "");
    }
}

/* Joins the held request: it must have woken well before its wait was over. */
static it_resp *held_join(held *h)
{
    assert_int_equal(pthread_join(h->th, NULL), 0);
    assert_non_null(h->r);
    printf("request_blocked: the held notifications request was answered after %.3f s (of %d)\n",
           h->t_done - h->t_start, WAIT_S);
    assert_true(h->t_done - h->t_start < WAIT_S / 2);
    return h->r;
}

static it_resp *notifications(const it_server *s, const it_phone *p)
{
    return it_json_send(s, "GET", "/v1/notifications", p->session, NULL);
}

static it_resp *notice_post(const it_server *s, const it_phone *p, long long id, const char *verb)
{
    char path[96];

    snprintf(path, sizeof path, "/v1/notifications/%lld/%s", id, verb);
    return it_json_send(s, "POST", path, p->session, json_object());
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v != NULL ? v : "(absent)";
}

/* The request_blocked notifications of an answer (into out, at most 8): how many. */
static size_t blocked_of(const it_resp *r, json_t **out)
{
    json_t *arr = json_object_get(r->json, "notifications"), *n;
    size_t i, k = 0;

    it_expect(r, 200, NULL);
    assert_true(json_is_array(arr));
    json_array_foreach(arr, i, n)
    {
        if (strcmp(jstr(n, "kind"), "request_blocked") == 0 && k < 8)
            out[k++] = n;
    }
    return k;
}

/* `r` holds exactly one request_blocked notification: of the screen made at `screen_at`,
 * refused for `reason` while phone `stopped` was about to approve it, shown to `me`. Its id. */
static long long expect_notified(const it_resp *r, const it_phone *me, const it_phone *stopped,
                                 const char *screen_at, const char *reason)
{
    json_t *got[8], *n, *screen, *dev;

    assert_int_equal(blocked_of(r, got), 1);
    n = got[0];
    assert_true(jint(n, "id") > 0);
    assert_true(jint(n, "created_at") > 0);
    assert_true(jint(n, "age_seconds") >= 0);
    assert_string_equal(jstr(n, "reason"), reason);
    assert_true(json_is_null(json_object_get(n, "revoke_until")));
    assert_int_equal(jint(n, "revoke_in"), 0);
    screen = json_object_get(n, "screen");
    assert_true(json_is_object(screen));
    assert_string_equal(jstr(screen, "name"), "Living Room TV");
    assert_string_equal(jstr(screen, "kind"), "tv");
    assert_string_equal(jstr(screen, "platform"), "Samsung Tizen");
    assert_string_equal(jstr(screen, "address"), screen_at);
    /* No country database here: the country is unknown. */
    assert_true(json_is_null(json_object_get(screen, "country")));
    dev = json_object_get(n, "device");
    assert_int_equal(jint(dev, "id"), stopped->device_id);
    assert_string_equal(jstr(dev, "kind"), "phone");
    assert_true(json_is_boolean(json_object_get(dev, "current")));
    assert_int_equal(json_is_true(json_object_get(dev, "current")),
                     me->device_id == stopped->device_id);
    return jint(n, "id");
}

/* Nothing blocked was told to `p`. */
static void expect_not_notified(const it_server *s, const it_phone *p)
{
    json_t *got[8];
    it_resp *r = notifications(s, p);

    assert_int_equal(blocked_of(r, got), 0);
    it_resp_free(r);
}

/* After a refusal with `reason` of phone `stopped`: `other` (another phone of that account, its
 * notifications request held since before the refusal in `h`) was woken with it; `stopped` lists
 * it too; the one-tap revoke has nothing to remove; `other`'s acknowledgement hides it from
 * `other` only. */
static void expect_account_told(const it_server *s, held *h, const it_phone *stopped,
                                const it_phone *other, const char *screen_at, const char *reason)
{
    it_resp *r = held_join(h);
    long long id = expect_notified(r, other, stopped, screen_at, reason);

    it_resp_free(r);
    r = notifications(s, stopped);
    assert_int_equal(expect_notified(r, stopped, stopped, screen_at, reason), id);
    it_resp_free(r);
    r = notice_post(s, stopped, id, "revoke");
    it_expect(r, 409, "not_revocable");
    it_resp_free(r);
    r = notice_post(s, other, id, "ack");
    it_expect(r, 204, NULL);
    it_resp_free(r);
    expect_not_notified(s, other);
    r = notifications(s, stopped);
    assert_int_equal(expect_notified(r, stopped, stopped, screen_at, reason), id);
    it_resp_free(r);
}

/* A code opened from a fourth network: refused, the request denied, the screen stopped. */
static void test_many_networks(void **state)
{
    it_server *s = *state;
    it_phone alice, bob, bob2, carol;
    it_devauth da;
    it_resp *r;
    held h;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &alice);
    it_phone_sign_in(s, "bob", "bob's password", NULL, &bob);
    it_phone_sign_in(s, "bob", "bob's password", "Bob's tablet", &bob2);
    it_phone_sign_in(s, "carol", "carol's password", NULL, &carol);
    authorize_from(s, "198.51.100.7", &da);
    r = view_from(s, &alice, da.scan_secret, "192.0.2.10");
    it_expect(r, 200, NULL);
    assert_true(json_is_null(json_object_get(r->json, "blocked")));
    it_resp_free(r);
    /* The same /24 is the same network; other phones count their networks. */
    r = view_from(s, &alice, da.scan_secret, "192.0.2.99");
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = view_from(s, &bob, da.user_code, "198.18.1.1");
    it_expect(r, 409, "already_claimed");
    it_resp_free(r);
    r = view_from(s, &bob, da.user_code, "2001:db8:7::1");
    it_expect(r, 409, "already_claimed");
    it_resp_free(r);
    held_start(&h, s, &bob2);
    r = view_from(s, &bob, da.user_code, "100.64.9.9");
    expect_blocked(r, "many_networks", "opened from too many places");
    it_resp_free(r);
    expect_audit(s, "many_networks", bob.account_id);
    /* Bob's phone was stopped: bob is told; alice (whose phone only looked) and carol are not. */
    expect_account_told(s, &h, &bob, &bob2, "198.51.100.7", "many_networks");
    expect_not_notified(s, &alice);
    expect_not_notified(s, &carol);
    /* The phone that claimed it cannot approve it any more; the screen stops. */
    r = approve_from(s, &alice, &da, IT_PASSWORD, "192.0.2.10");
    it_expect(r, 409, "invalid_state");
    it_resp_free(r);
    expect_screen_denied(s, &da);
    /* Another request from the same screen goes on. */
    authorize_from(s, "198.51.100.7", &da);
    r = view_from(s, &alice, da.scan_secret, "100.64.9.9");
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

/* A request started from a denied network: the view says so, the approval is refused. */
static void test_denied_network(void **state)
{
    it_server *s = *state;
    it_phone alice, alice2, bob;
    it_devauth da;
    it_resp *r;
    held h;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &alice);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's tablet", &alice2);
    it_phone_sign_in(s, "bob", "bob's password", NULL, &bob);
    authorize_from(s, "203.0.113.9", &da);
    r = view_from(s, &alice, da.scan_secret, "192.0.2.10");
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "blocked"), "denied_network");
    it_resp_free(r);
    held_start(&h, s, &alice2);
    r = approve_from(s, &alice, &da, IT_PASSWORD, "192.0.2.10");
    expect_blocked(r, "denied_network", "may not sign in here");
    it_resp_free(r);
    expect_audit(s, "denied_network", alice.account_id);
    expect_account_told(s, &h, &alice, &alice2, "203.0.113.9", "denied_network");
    expect_not_notified(s, &bob);
    expect_screen_denied(s, &da);
    /* A request from elsewhere is approved. */
    authorize_from(s, "198.51.100.20", &da);
    r = view_from(s, &alice, da.scan_secret, "192.0.2.10");
    it_expect(r, 200, NULL);
    assert_true(json_is_null(json_object_get(r->json, "blocked")));
    it_resp_free(r);
    r = approve_from(s, &alice, &da, IT_PASSWORD, "192.0.2.10");
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

/* One screen address approved by a third account (--max-approvers-per-address 2). */
static void test_many_accounts(void **state)
{
    it_server *s = *state;
    it_phone alice, bob, carol, carol2;
    it_devauth da;
    it_resp *r;
    held h;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &alice);
    it_phone_sign_in(s, "bob", "bob's password", NULL, &bob);
    it_phone_sign_in(s, "carol", "carol's password", NULL, &carol);
    it_phone_sign_in(s, "carol", "carol's password", "Carol's tablet", &carol2);
    const it_phone *ok[] = {&alice, &bob};
    const char *pw[] = {IT_PASSWORD, "bob's password"};
    for (int i = 0; i < 2; i++) {
        authorize_from(s, "198.51.100.66", &da);
        r = view_from(s, ok[i], da.scan_secret, "192.0.2.10");
        it_expect(r, 200, NULL);
        it_resp_free(r);
        r = approve_from(s, ok[i], &da, pw[i], "192.0.2.10");
        it_expect(r, 200, NULL);
        it_resp_free(r);
    }
    authorize_from(s, "198.51.100.66", &da);
    r = view_from(s, &carol, da.scan_secret, "192.0.2.10");
    it_expect(r, 200, NULL);
    it_resp_free(r);
    held_start(&h, s, &carol2);
    r = approve_from(s, &carol, &da, "carol's password", "192.0.2.10");
    expect_blocked(r, "many_accounts", "too many accounts");
    it_resp_free(r);
    expect_audit(s, "many_accounts", carol.account_id);
    expect_account_told(s, &h, &carol, &carol2, "198.51.100.66", "many_accounts");
    expect_not_notified(s, &alice);
    expect_not_notified(s, &bob);
    expect_screen_denied(s, &da);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_networks, setup, it_teardown),
        cmocka_unit_test_setup_teardown(test_denied_network, setup, it_teardown),
        cmocka_unit_test_setup_teardown(test_many_accounts, setup, it_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
