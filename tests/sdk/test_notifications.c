/* SPDX-License-Identifier: MIT */
/*
 * The SDK's notifications against the real server: a signed-in TV app waiting in
 * qrl_client_notifications() hears of another screen linked to its account at once, can
 * acknowledge it, and is told QRL_ERR_UNAUTHORIZED once it is removed itself; it hears as fast
 * of a sign-in request stopped as phishing while a phone of its account was about to approve it
 * (the screen, the reason, the phone; nothing to remove).
 *
 * The waiting call runs on a thread (only the main thread asserts); the main thread plays the
 * phone and the other screen with the harness.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qrlogin/client.h"

#define PARK_MS 300
#define PROMPT_S 3.0

typedef struct app {
    it_server *s;
    qrl_client *c;
    pthread_mutex_t mu;
    char payload[512], user_code[32];
    int started;
} app;

static void on_event(void *user, const qrl_client_event *ev)
{
    app *a = user;

    if (ev->type != QRL_CLIENT_EV_STARTED)
        return;
    pthread_mutex_lock(&a->mu);
    snprintf(a->payload, sizeof a->payload, "%s", ev->qr_payload);
    snprintf(a->user_code, sizeof a->user_code, "%s", ev->user_code);
    a->started = 1;
    pthread_mutex_unlock(&a->mu);
}

static void *login_main(void *arg)
{
    app *a = arg;
    qrl_err *rc = malloc(sizeof *rc);

    *rc = qrl_client_login(a->c, NULL);
    return rc;
}

typedef struct waiting {
    app *a;
    long long after;
    qrl_client_notification out[8];
    size_t n;
    qrl_err rc;
    double t_done;
    pthread_t th;
} waiting;

static void *wait_main(void *arg)
{
    waiting *w = arg;

    w->rc = qrl_client_notifications(w->a->c, w->after, 20, w->out, 8, &w->n);
    w->t_done = it_now();
    return NULL;
}

/* The app "Kitchen TV" signs in, `phone` approving it. */
static void app_sign_in(app *a, const it_phone *phone)
{
    it_server *s = a->s;
    qrl_client_notification out[8];
    pthread_t th;
    size_t n = 9;
    void *res;

    pthread_mutex_init(&a->mu, NULL);
    qrl_client_options o = {.server_url = s->base,
                            .client_id = IT_CLIENT_ID,
                            .device_name = "Kitchen TV",
                            .device_kind = "tv",
                            .on_event = on_event,
                            .user = a};
    assert_int_equal(qrl_client_new(&o, &a->c), QRL_OK);
    /* Not signed in yet: no token to ask with. */
    assert_int_equal(qrl_client_notifications(a->c, 0, 0, out, 8, &n), QRL_ERR_CONFLICT);
    assert_int_equal(n, 0);

    /* The app signs in; the phone approves it. */
    assert_int_equal(pthread_create(&th, NULL, login_main, a), 0);
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&a->mu);
        int started = a->started;
        pthread_mutex_unlock(&a->mu);
        if (started)
            break;
        it_sleep_ms(50);
    }
    assert_true(a->started);
    it_resp *r = it_view(s, phone, strchr(a->payload, '#') + 1);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, phone, strchr(a->payload, '#') + 1, a->user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    assert_int_equal(pthread_join(th, &res), 0);
    assert_int_equal(*(qrl_err *)res, QRL_OK);
    free(res);
}

static void test_sdk_notifications(void **state)
{
    it_server *s = *state;
    app a = {.s = s};
    qrl_client_notification out[8];
    it_phone phone;
    it_tokens other;
    waiting w = {.a = &a};
    size_t n = 9;
    it_resp *r;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Phone", &phone);
    app_sign_in(&a, &phone);
    qrl_err rc = qrl_client_notifications(a.c, 0, 0, out, 8, &n);
    if (rc == QRL_ERR_NOT_FOUND) {
        printf("sdk notifications: the server keeps none: skipped\n");
        goto out;
    }
    assert_int_equal(rc, QRL_OK);
    assert_int_equal(n, 0);

    /* Held in the SDK; another screen is linked to the account: answered at once. */
    assert_int_equal(pthread_create(&w.th, NULL, wait_main, &w), 0);
    it_sleep_ms(PARK_MS);
    it_login_screen(s, &phone, &other, NULL);
    double t_linked = it_now();
    assert_int_equal(pthread_join(w.th, NULL), 0);
    printf("sdk notifications: answered %.1f ms after the other screen had its tokens\n",
           (w.t_done - t_linked) * 1000.0);
    assert_int_equal(w.rc, QRL_OK);
    assert_true(w.t_done - t_linked < PROMPT_S);
    assert_int_equal(w.n, 1);
    assert_true(w.out[0].id > 0);
    assert_string_equal(w.out[0].device_name, "Living Room TV");
    assert_string_equal(w.out[0].device_kind, "tv");
    assert_string_equal(w.out[0].device_platform, "");
    assert_string_equal(w.out[0].device_address, "127.0.0.1");
    assert_true(w.out[0].device_id > 0);
    assert_true(w.out[0].created_at > 0);
    assert_int_equal(w.out[0].revoke_until, w.out[0].created_at + 3600);
    assert_int_equal(w.out[0].kind, QRL_CLIENT_NOTICE_DEVICE_LINKED);
    assert_int_equal(w.out[0].device_current, 0);
    assert_string_equal(w.out[0].reason, "");
    assert_string_equal(w.out[0].screen_name, "");

    /* Acknowledged: no longer listed to this app. */
    assert_int_equal(qrl_client_notification_ack(a.c, w.out[0].id), QRL_OK);
    assert_int_equal(qrl_client_notifications(a.c, 0, 0, out, 8, &n), QRL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(qrl_client_notification_ack(a.c, 12345), QRL_ERR_NOT_FOUND);

    /* Removed itself: the app is told to refresh, which fails too. */
    long long self = it_find_device(s, &phone, "Kitchen TV");
    assert_true(self > 0);
    r = it_revoke_device(s, &phone, self);
    it_expect(r, 204, NULL);
    it_resp_free(r);
    assert_int_equal(qrl_client_notifications(a.c, 0, 0, out, 8, &n), QRL_ERR_UNAUTHORIZED);
    assert_true(strlen(qrl_client_last_error(a.c)) > 0);
out:
    qrl_client_free(a.c);
    pthread_mutex_destroy(&a.mu);
}

/* A server that takes X-Forwarded-For from this machine and denies 203.0.113.0/24. */
static int setup_deny(void **state)
{
    static const it_account alice[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME},
                                       {NULL, NULL, NULL}};
    static const char *const args[] = {"--trusted-proxy", "127.0.0.1/32", "--deny-networks",
                                       "203.0.113.0/24", NULL};
    it_server *s = it_server_new_with_accounts(alice);

    s->extra_args = args;
    it_server_start(s);
    *state = s;
    return 0;
}

/* The phone approves a request a screen on a denied network made: stopped. The app, waiting,
 * hears of it at once. */
static void test_sdk_request_blocked(void **state)
{
    it_server *s = *state;
    app a = {.s = s};
    qrl_client_notification out[8];
    const char *kv[] = {"client_id",   IT_CLIENT_ID, "device_name",     "Evil TV",
                        "device_kind", "tv",         "device_platform", "Samsung Tizen",
                        NULL};
    char ss[IT_SECRET_MAX], uc[32];
    waiting w = {.a = &a};
    it_phone phone;
    size_t n = 9;
    it_resp *r;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", &phone);
    app_sign_in(&a, &phone);
    qrl_err rc = qrl_client_notifications(a.c, 0, 0, out, 8, &n);
    if (rc == QRL_ERR_NOT_FOUND) {
        printf("sdk notifications: the server keeps none: skipped\n");
        goto out;
    }
    assert_int_equal(rc, QRL_OK);
    assert_int_equal(n, 0);

    r = it_form_post(s, "/oauth/device_authorization", kv,
                     &(it_req){.extra_header = "X-Forwarded-For: 203.0.113.9"});
    it_expect(r, 200, NULL);
    snprintf(uc, sizeof uc, "%s", it_jstr(r, "user_code"));
    snprintf(ss, sizeof ss, "%s", strchr(it_jstr(r, "verification_uri_complete"), '#') + 1);
    it_resp_free(r);
    r = it_view(s, &phone, ss);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    assert_int_equal(pthread_create(&w.th, NULL, wait_main, &w), 0);
    it_sleep_ms(PARK_MS);
    r = it_approve(s, &phone, ss, uc, IT_PASSWORD);
    double t_blocked = it_now();
    it_expect(r, 403, "suspicious_request");
    it_resp_free(r);
    assert_int_equal(pthread_join(w.th, NULL), 0);
    printf("sdk notifications: answered %.1f ms after the request was stopped\n",
           (w.t_done - t_blocked) * 1000.0);
    assert_int_equal(w.rc, QRL_OK);
    assert_true(w.t_done - t_blocked < PROMPT_S);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.out[0].kind, QRL_CLIENT_NOTICE_REQUEST_BLOCKED);
    assert_true(w.out[0].id > 0);
    assert_true(w.out[0].created_at > 0);
    assert_int_equal(w.out[0].revoke_until, 0);
    assert_string_equal(w.out[0].reason, "denied_network");
    assert_string_equal(w.out[0].screen_name, "Evil TV");
    assert_string_equal(w.out[0].screen_kind, "tv");
    assert_string_equal(w.out[0].screen_platform, "Samsung Tizen");
    assert_string_equal(w.out[0].screen_address, "203.0.113.9");
    assert_string_equal(w.out[0].screen_country, "");
    assert_string_equal(w.out[0].screen_country_name, "");
    /* The device is the phone that was stopped, not this app. */
    assert_int_equal(w.out[0].device_id, phone.device_id);
    assert_string_equal(w.out[0].device_name, "Alice's phone");
    assert_string_equal(w.out[0].device_kind, "phone");
    assert_int_equal(w.out[0].device_current, 0);

    /* Acknowledged: no longer listed to this app. */
    assert_int_equal(qrl_client_notification_ack(a.c, w.out[0].id), QRL_OK);
    assert_int_equal(qrl_client_notifications(a.c, 0, 0, out, 8, &n), QRL_OK);
    assert_int_equal(n, 0);
out:
    qrl_client_free(a.c);
    pthread_mutex_destroy(&a.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sdk_notifications, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_sdk_request_blocked, setup_deny, it_teardown),
    };
    return cmocka_run_group_tests_name("sdk_notifications", tests, NULL, NULL);
}
