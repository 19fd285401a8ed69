/* SPDX-License-Identifier: MIT */
/*
 * "New device linked - not you?" over HTTP against the real server: a phone holding
 * GET /v1/notifications (Prefer: wait) hears of a TV the moment it is linked, long before its
 * wait is over; acknowledging is per device; the one-tap revoke ends the TV's access within its
 * window and is refused after it (the test clock moves past it); a notice survives a restart of
 * the server; a screen's own access token reads its notices but cannot revoke.
 *
 * The held requests run on worker threads (it_http is thread-safe and never asserts); the main
 * thread plays the phones and the screens and checks the results after joining. Latencies are
 * printed; assertions only ask for an answer far inside the wait, never tight timings.
 *
 * A store without notices (the PostgreSQL store until it has them) answers
 * 404 not_available: then there is nothing to test here, and the test says so and passes.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a request gets to reach the server and be parked before the others act. Only an
 * ordering aid: a request not parked yet is answered from the new state. */
#define PARK_MS 300
/* The wait a held request asks for, and what "at once" means next to it. */
#define WAIT_S 30
#define PROMPT_S 3.0

typedef struct held {
    const it_server *s;
    it_req req;
    char path[96];
    double t_start, t_done;
    int done;
    it_resp *r;
    pthread_t th;
} held;

/* When the last approval of link_tv() was answered. */
static double t_approved;

static void *held_main(void *arg)
{
    held *h = arg;
    h->r = it_http(h->s, &h->req);
    h->t_done = it_now();
    __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* GET /v1/notifications[?after=A] with Prefer: wait=wait_s, on a thread; asserts it is held. */
static void held_start(held *h, const it_server *s, const char *bearer, long long after, int wait_s)
{
    memset(h, 0, sizeof *h);
    h->s = s;
    if (after > 0)
        snprintf(h->path, sizeof h->path, "/v1/notifications?after=%lld", after);
    else
        snprintf(h->path, sizeof h->path, "/v1/notifications");
    h->req = (it_req){.method = "GET", .path = h->path, .bearer = bearer, .prefer_wait = wait_s};
    h->t_start = it_now();
    assert_int_equal(pthread_create(&h->th, NULL, held_main, h), 0);
    it_sleep_ms(PARK_MS);
    if (__atomic_load_n(&h->done, __ATOMIC_ACQUIRE)) {
        pthread_join(h->th, NULL);
        print_error("GET %s was answered at once (%ld: %s) instead of being held\n", h->path,
                    h->r ? h->r->status : 0L, h->r ? h->r->body : "");
        fail();
    }
}

static it_resp *held_join(held *h)
{
    assert_int_equal(pthread_join(h->th, NULL), 0);
    assert_non_null(h->r);
    return h->r;
}

static it_resp *notifications(const it_server *s, const char *bearer)
{
    return it_json_send(s, "GET", "/v1/notifications", bearer, NULL);
}

static json_t *list_of(const it_resp *r)
{
    json_t *a = json_object_get(r->json, "notifications");
    assert_true(json_is_array(a));
    return a;
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static it_resp *notice_post(const it_server *s, const char *bearer, long long id, const char *verb)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/notifications/%lld/%s", id, verb);
    return it_json_send(s, "POST", path, bearer, json_object());
}

/* A TV named `name` (platform "Samsung Tizen") approved by `phone`. With `held_screen` the
 * screen waits on its token request (the approval hands it its tokens: one commit), else it
 * polls once after the approval. Returns its tokens; *dev its device id. */
static void link_tv(const it_server *s, const it_phone *phone, const char *name, int held_screen,
                    it_tokens *out, long long *dev)
{
    const char *kv[] = {"client_id", IT_CLIENT_ID,      "device_name",   name, "device_kind",
                        "tv",        "device_platform", "Samsung Tizen", NULL};
    it_resp *r = it_form_post(s, "/oauth/device_authorization", kv, NULL);
    char dc[IT_SECRET_MAX], ss[IT_SECRET_MAX], uc[32];
    held screen;

    it_expect(r, 200, NULL);
    snprintf(dc, sizeof dc, "%s", it_jstr(r, "device_code"));
    snprintf(uc, sizeof uc, "%s", it_jstr(r, "user_code"));
    snprintf(ss, sizeof ss, "%s", strchr(it_jstr(r, "verification_uri_complete"), '#') + 1);
    it_resp_free(r);
    r = it_view(s, phone, ss);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    if (held_screen) {
        /* The screen hears "scanned" first, then waits for the decision. */
        r = it_token_poll(s, IT_CLIENT_ID, dc, 0);
        it_expect(r, 400, "authorization_pending");
        it_resp_free(r);
        memset(&screen, 0, sizeof screen);
        screen.s = s;
        screen.t_start = it_now();
        char *form = it_form((const char *[]){"grant_type", IT_DEVICE_CODE_GRANT, "device_code", dc,
                                              "client_id", IT_CLIENT_ID, NULL});
        screen.req = (it_req){.path = "/oauth/token",
                              .content_type = "application/x-www-form-urlencoded",
                              .body = form,
                              .prefer_wait = WAIT_S};
        assert_int_equal(pthread_create(&screen.th, NULL, held_main, &screen), 0);
        it_sleep_ms(PARK_MS);
        r = it_approve(s, phone, ss, uc, IT_PASSWORD);
        t_approved = it_now();
        it_expect(r, 200, NULL);
        it_resp_free(r);
        r = held_join(&screen);
        free(form);
    } else {
        r = it_approve(s, phone, ss, uc, IT_PASSWORD);
        it_expect(r, 200, NULL);
        it_resp_free(r);
        r = it_token_poll(s, IT_CLIENT_ID, dc, 0);
    }
    it_expect_tokens(r, out);
    it_resp_free(r);
    *dev = it_find_device(s, phone, name);
    assert_true(*dev > 0);
}

/* Whether the server keeps notices at all; a store without them answers 404 not_available. */
static int available(const it_server *s, const it_phone *p)
{
    it_resp *r = notifications(s, p->session);
    int ok = r->status == 200;
    if (!ok) {
        it_expect(r, 404, "not_available");
        printf("notifications: this server's store keeps none (404 not_available): skipped\n");
    }
    it_resp_free(r);
    return ok;
}

static void test_notifications(void **state)
{
    it_server *s = *state;
    it_phone a, b, later;
    it_tokens tv, tv2, tv3;
    long long tv_dev, tv2_dev, tv3_dev;
    held h;
    it_resp *r;
    json_t *n;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Phone A", &a);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Phone B", &b);
    if (!available(s, &a))
        return;
    r = notifications(s, a.session);
    it_expect(r, 200, NULL);
    assert_int_equal(json_array_size(list_of(r)), 0);
    it_resp_free(r);

    /* Phone A holds; phone B links a TV: A is answered at once with it. */
    held_start(&h, s, a.session, 0, WAIT_S);
    link_tv(s, &b, "Living Room TV", 1, &tv, &tv_dev);
    r = held_join(&h);
    printf("notifications: the held request was answered %.1f ms after the phone's approval "
           "(held %.3f s of %d)\n",
           (h.t_done - t_approved) * 1000.0, h.t_done - h.t_start, WAIT_S);
    it_expect(r, 200, NULL);
    assert_true(h.t_done - t_approved < PROMPT_S);
    assert_true(h.t_done - h.t_start < WAIT_S / 2);
    assert_true(it_contains_ci(r->preference_applied, "wait=30"));
    assert_int_equal(json_array_size(list_of(r)), 1);
    n = json_array_get(list_of(r), 0);
    long long id = jint(n, "id");
    assert_true(id > 0);
    assert_string_equal(jstr(n, "kind"), "device_linked");
    json_t *d = json_object_get(n, "device");
    assert_int_equal(jint(d, "id"), tv_dev);
    assert_string_equal(jstr(d, "name"), "Living Room TV");
    assert_string_equal(jstr(d, "kind"), "tv");
    assert_string_equal(jstr(d, "platform"), "Samsung Tizen");
    assert_string_equal(jstr(d, "address"), "127.0.0.1");
    assert_true(jint(n, "created_at") > 0);
    assert_int_equal(jint(n, "revoke_until"), jint(n, "created_at") + 3600);
    assert_true(jint(n, "revoke_in") > 3500 && jint(n, "revoke_in") <= 3600);
    it_resp_free(r);

    /* The approving phone hears of it too; the TV itself does not. */
    r = notifications(s, b.session);
    it_expect(r, 200, NULL);
    assert_int_equal(json_array_size(list_of(r)), 1);
    it_resp_free(r);
    r = notifications(s, tv.access_token);
    it_expect(r, 200, NULL);
    assert_int_equal(json_array_size(list_of(r)), 0);
    it_resp_free(r);

    /* A acknowledges: gone for A, still there for B. */
    r = notice_post(s, a.session, id, "ack");
    it_expect(r, 204, NULL);
    it_resp_free(r);
    r = notifications(s, a.session);
    assert_int_equal(json_array_size(list_of(r)), 0);
    it_resp_free(r);

    /* B has seen it (after = its id): held for the whole wait, then the same list. */
    held_start(&h, s, b.session, id, 2);
    r = held_join(&h);
    it_expect(r, 200, NULL);
    assert_true(h.t_done - h.t_start >= 1.5);
    assert_int_equal(json_array_size(list_of(r)), 1);
    it_resp_free(r);

    /* In the window: a screen's token may not revoke; B's one tap does, and the TV's token
     * stops at once. */
    r = notice_post(s, tv.access_token, id, "revoke");
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
    r = it_json_send(s, "GET", "/v1/me", tv.access_token, NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = notice_post(s, b.session, id, "revoke");
    it_expect(r, 204, NULL);
    it_resp_free(r);
    r = it_json_send(s, "GET", "/v1/me", tv.access_token, NULL);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, tv.access_token), 0);
    assert_int_equal(it_find_device(s, &b, "Living Room TV"), -1);
    r = notifications(s, b.session);
    assert_int_equal(json_array_size(list_of(r)), 0);
    it_resp_free(r);
    r = notice_post(s, b.session, id, "revoke");
    it_expect(r, 404, "not_found");
    it_resp_free(r);

    /* A second TV, polled for (redeemed by the screen's poll); after the window the tap is
     * refused with a pointer to the devices list, and nothing changes. */
    link_tv(s, &a, "Bedroom TV", 0, &tv2, &tv2_dev);
    r = notifications(s, b.session);
    assert_int_equal(json_array_size(list_of(r)), 1);
    long long id2 = jint(json_array_get(list_of(r), 0), "id");
    assert_true(id2 > id);
    it_resp_free(r);
    it_clock_advance(s, 3600LL * 1000 + 1000);
    r = notice_post(s, b.session, id2, "revoke");
    it_expect(r, 403, "revoke_window_over");
    it_expect_error_shape(r);
    assert_true(it_contains_ci(it_jstr(r, "error_description"), "devices list"));
    it_resp_free(r);
    assert_int_equal(it_find_device(s, &b, "Bedroom TV"), tv2_dev);
    r = notifications(s, b.session);
    assert_int_equal(json_array_size(list_of(r)), 1);
    assert_int_equal(jint(json_array_get(list_of(r), 0), "revoke_in"), 0);
    it_resp_free(r);

    /* The notice survives a restart: B still has it, with the same id. */
    it_server_stop(s);
    it_server_start(s);
    r = notifications(s, b.session);
    it_expect(r, 200, NULL);
    assert_int_equal(json_array_size(list_of(r)), 1);
    n = json_array_get(list_of(r), 0);
    assert_int_equal(jint(n, "id"), id2);
    assert_string_equal(jstr(json_object_get(n, "device"), "name"), "Bedroom TV");
    it_resp_free(r);

    /* A phone signed in after the link hears nothing of it; a TV linked after, by its own
     * access token, neither (and not of itself). */
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Phone C", &later);
    r = notifications(s, later.session);
    assert_int_equal(json_array_size(list_of(r)), 0);
    it_resp_free(r);
    link_tv(s, &a, "Kitchen TV", 0, &tv3, &tv3_dev);
    r = notifications(s, tv3.access_token);
    it_expect(r, 200, NULL);
    assert_int_equal(json_array_size(list_of(r)), 0);
    it_resp_free(r);
    r = notifications(s, later.session);
    assert_int_equal(json_array_size(list_of(r)), 1);
    it_resp_free(r);
}

/* What a client gets wrong is told: no token, a bad `after`, an unknown id, another account. */
static void test_errors(void **state)
{
    it_server *s = *state;
    it_phone a;
    it_resp *r;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Phone A", &a);
    if (!available(s, &a))
        return;
    r = notifications(s, NULL);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
    r = it_json_send(s, "GET", "/v1/notifications?after=x", a.session, NULL);
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);
    r = notice_post(s, a.session, 12345, "ack");
    it_expect(r, 404, "not_found");
    it_resp_free(r);
    r = notice_post(s, a.session, 12345, "revoke");
    it_expect(r, 404, "not_found");
    it_resp_free(r);
    r = it_json_send(s, "DELETE", "/v1/notifications/1/ack", a.session, NULL);
    it_expect(r, 405, NULL);
    it_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_notifications, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_errors, it_setup_alice, it_teardown),
    };
    return cmocka_run_group_tests_name("notifications", tests, NULL, NULL);
}
