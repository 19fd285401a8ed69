/* SPDX-License-Identifier: MIT */
/*
 * Push instead of polling: a token request with `Prefer: wait=N` (RFC 7240) is held and
 * answered the moment the login request changes state. A user notices this as "the TV signed
 * in the instant I tapped Approve". Latencies are measured and printed; the assertions only
 * require an answer long before the wait would have ended, never tight timings.
 *
 * Held requests run on a worker thread (it_try_token_poll is thread-safe and never asserts);
 * the main thread acts as the phone and checks the results after joining.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* How long we give a request to arrive at the server and be parked before the phone acts.
 * Only an ordering aid: a request that is not parked yet is answered from the new state. */
#define PARK_MS 300
/* "Promptly": far below any wait used here, far above scheduler noise. */
#define PROMPT_S 2.0

typedef struct held {
    const it_server *s;
    const char *client_id;
    const char *device_code;
    int wait_s;
    double t_start, t_done;
    int done; /* set (atomically) once t_done and r are written */
    it_resp *r;
    pthread_t th;
} held;

static void *held_main(void *arg)
{
    held *h = arg;
    h->r = it_try_token_poll(h->s, h->client_id, h->device_code, h->wait_s);
    h->t_done = it_now();
    __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void held_start(held *h, const it_server *s, const it_devauth *da, int wait_s)
{
    memset(h, 0, sizeof(*h));
    h->s = s;
    h->client_id = IT_CLIENT_ID;
    h->device_code = da->device_code;
    h->wait_s = wait_s;
    h->t_start = it_now();
    assert_int_equal(pthread_create(&h->th, NULL, held_main, h), 0);
    it_sleep_ms(PARK_MS);
    if (__atomic_load_n(&h->done, __ATOMIC_ACQUIRE)) {
        pthread_join(h->th, NULL);
        print_error("the Prefer: wait=%d request was answered at once (%ld: %s) instead of "
                    "being held\n",
                    wait_s, h->r ? h->r->status : 0L, h->r ? h->r->body : "");
        fail();
    }
}

/* Joins the held request; returns the seconds between `t_event` (when the phone's request
 * came back) and the held answer, and prints it. */
static double held_join(held *h, double t_event, const char *what)
{
    assert_int_equal(pthread_join(h->th, NULL), 0);
    assert_non_null(h->r);
    double latency = h->t_done - t_event;
    printf("push: held wait=%d answered %.1f ms after the %s response (held %.3f s in all)\n",
           h->wait_s, latency * 1000.0, what, h->t_done - h->t_start);
    return latency;
}

static void expect_preference_applied(const it_resp *r, int wait_s)
{
    char want[32];
    snprintf(want, sizeof(want), "wait=%d", wait_s);
    if (!it_contains_ci(r->preference_applied, want)) {
        print_error("Preference-Applied is \"%s\", expected \"%s\"\n", r->preference_applied, want);
        fail();
    }
}

/* A login request that the phone scanned and the screen has polled once (so the screen has
 * been told "scanned"); the clock is moved one interval on so the next poll is on time. */
static void scanned_and_told(const it_server *s, it_phone *phone, it_devauth *da)
{
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, da);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", phone);
    it_resp *r = it_view(s, phone, da->scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_token_poll(s, IT_CLIENT_ID, da->device_code, 0);
    it_expect(r, 400, "authorization_pending");
    assert_string_equal(it_jstr(r, "status"), "scanned");
    it_resp_free(r);
    it_clock_advance(s, 5000);
}

static void test_held_request_answered_on_approve(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_devauth da;
    scanned_and_told(s, &phone, &da);

    held h;
    held_start(&h, s, &da, 30);
    it_resp *r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    double t_approved = it_now();
    it_expect(r, 200, NULL);
    it_resp_free(r);

    double latency = held_join(&h, t_approved, "approve");
    it_expect_tokens(h.r, NULL);
    expect_preference_applied(h.r, 30);
    assert_true(latency < PROMPT_S);
    assert_true(h.t_done - h.t_start < 10.0);
    it_resp_free(h.r);
}

static void test_held_request_answered_on_scan(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect(r, 400, "authorization_pending");
    assert_string_equal(it_jstr(r, "status"), "pending");
    it_resp_free(r);
    it_clock_advance(s, 5000);

    held h;
    held_start(&h, s, &da, 30);
    r = it_view(s, &phone, da.scan_secret);
    double t_scanned = it_now();
    it_expect(r, 200, NULL);
    it_resp_free(r);

    double latency = held_join(&h, t_scanned, "scan");
    it_expect_oauth_error(h.r, "authorization_pending");
    assert_string_equal(it_jstr(h.r, "status"), "scanned");
    expect_preference_applied(h.r, 30);
    assert_true(latency < PROMPT_S);
    it_resp_free(h.r);
}

/* The first poll after a scan answers at once even with a long wait: the screen has not been
 * told "scanned" yet. */
static void test_held_request_answers_at_once_when_state_is_news(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 30);
    printf("push: wait=30 with news answered in %.1f ms\n", r->elapsed_s * 1000.0);
    it_expect_oauth_error(r, "authorization_pending");
    assert_string_equal(it_jstr(r, "status"), "scanned");
    assert_true(r->elapsed_s < PROMPT_S);
    it_resp_free(r);
}

static void test_held_request_without_change_times_out_pending(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    it_resp *r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect(r, 400, "authorization_pending");
    it_resp_free(r);
    it_clock_advance(s, 5000);

    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 1);
    printf("push: wait=1 without change answered after %.3f s\n", r->elapsed_s);
    it_expect_oauth_error(r, "authorization_pending");
    assert_string_equal(it_jstr(r, "status"), "pending");
    expect_preference_applied(r, 1);
    assert_true(r->elapsed_s >= 0.8);
    assert_true(r->elapsed_s < 5.0);
    it_resp_free(r);
}

static void test_held_request_answered_on_deny(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_devauth da;
    scanned_and_told(s, &phone, &da);

    held h;
    held_start(&h, s, &da, 30);
    it_resp *r = it_deny(s, &phone, da.scan_secret);
    double t_denied = it_now();
    it_expect(r, 200, NULL);
    it_resp_free(r);

    double latency = held_join(&h, t_denied, "deny");
    it_expect_oauth_error(h.r, "access_denied");
    assert_true(latency < PROMPT_S);
    it_resp_free(h.r);
}

static void test_held_request_answered_at_expiry(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_devauth da;
    scanned_and_told(s, &phone, &da);

    held h;
    held_start(&h, s, &da, 30);
    it_clock_advance(s, 121000);
    double t_moved = it_now();

    double latency = held_join(&h, t_moved, "clock advance past expiry");
    it_expect_oauth_error(h.r, "expired_token");
    assert_true(latency < PROMPT_S);
    it_resp_free(h.r);
}

/* Revoking the phone that scanned a request declines it, and the screen waiting on it hears
 * access_denied at once (docs/api.md, DELETE /v1/devices/{id}). */
static void test_revoking_scanning_phone_ends_held_request(void **state)
{
    it_server *s = *state;
    it_phone phone, laptop;
    it_devauth da;
    scanned_and_told(s, &phone, &da);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's laptop", &laptop);

    held h;
    held_start(&h, s, &da, 30);
    it_resp *r = it_revoke_device(s, &laptop, phone.device_id);
    double t_revoked = it_now();
    it_expect(r, 204, NULL);
    it_resp_free(r);

    double latency = held_join(&h, t_revoked, "revoke");
    it_expect_oauth_error(h.r, "access_denied");
    assert_true(latency < PROMPT_S);
    it_resp_free(h.r);

    /* And it stays declined: the revoked phone cannot approve it any more. */
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
}

/* Revoking an approving phone before the screen redeems also declines (redeem re-checks the
 * approver). */
static void test_revoking_approving_phone_before_redeem(void **state)
{
    it_server *s = *state;
    it_phone phone, laptop;
    it_devauth da;
    scanned_and_told(s, &phone, &da);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's laptop", &laptop);
    it_resp *r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_revoke_device(s, &laptop, phone.device_id);
    it_expect(r, 204, NULL);
    it_resp_free(r);

    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "access_denied");
    it_resp_free(r);
}

/* A screen that gives up on a held request (app closed, network gone) leaves nothing broken:
 * the server neither crashes answering the dead connection nor loses the request. */
static void test_abandoned_held_request(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_devauth da;
    scanned_and_told(s, &phone, &da);

    it_req opt = {.prefer_wait = 30, .timeout_ms = 300};
    it_resp *r = it_form_post(s, "/oauth/token",
                              (const char *[]){"grant_type", IT_DEVICE_CODE_GRANT, "device_code",
                                               da.device_code, "client_id", IT_CLIENT_ID, NULL},
                              &opt);
    assert_int_equal(r->status, 0); /* we hung up */
    it_resp_free(r);

    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_clock_advance(s, 5000);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 30);
    if (r->status != 200) {
        print_error("the approval was answered (redeemed?) on the connection the screen had "
                    "already closed; the screen's next poll got: %s\n",
                    r->body);
    }
    it_expect_tokens(r, NULL);
    assert_true(r->elapsed_s < PROMPT_S);
    it_resp_free(r);
}

/* SIGTERM with a screen waiting: the server still exits promptly and cleanly (exit 0). */
static void test_shutdown_with_held_request(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_devauth da;
    scanned_and_told(s, &phone, &da);
    held h;
    held_start(&h, s, &da, 30);
    double t0 = it_now();
    it_server_stop(s);
    double took = it_now() - t0;
    assert_int_equal(pthread_join(h.th, NULL), 0);
    printf("push: SIGTERM with a held request: exited after %.3f s; the screen got %ld %s\n", took,
           h.r ? h.r->status : 0L, h.r ? (h.r->status ? h.r->body : h.r->curl_error) : "");
    assert_true(took < 5.0);
    assert_true(h.t_done - h.t_start < 10.0);
    it_resp_free(h.r);
}

/* Held requests do not occupy the server: while a dozen screens wait, others are served. */
#define N_HELD 12
static void test_held_requests_do_not_block_others(void **state)
{
    it_server *s = *state;
    static it_devauth das[N_HELD];
    static held hs[N_HELD];
    for (int i = 0; i < N_HELD; i++) {
        it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &das[i]);
        it_resp *r = it_token_poll(s, IT_CLIENT_ID, das[i].device_code, 0);
        it_expect(r, 400, "authorization_pending");
        it_resp_free(r);
    }
    it_clock_advance(s, 5000);
    for (int i = 0; i < N_HELD; i++) {
        memset(&hs[i], 0, sizeof(hs[i]));
        hs[i].s = s;
        hs[i].client_id = IT_CLIENT_ID;
        hs[i].device_code = das[i].device_code;
        hs[i].wait_s = 2;
        hs[i].t_start = it_now();
        assert_int_equal(pthread_create(&hs[i].th, NULL, held_main, &hs[i]), 0);
    }
    it_sleep_ms(PARK_MS);

    double t0 = it_now();
    it_resp *r = it_http(s, &(it_req){.path = "/.well-known/oauth-authorization-server"});
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_devauth extra;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &extra);
    double served = it_now() - t0;
    printf("push: with %d held requests, two other requests took %.1f ms\n", N_HELD,
           served * 1000.0);
    int still_held = 0;
    for (int i = 0; i < N_HELD; i++) {
        still_held += !__atomic_load_n(&hs[i].done, __ATOMIC_ACQUIRE);
    }

    int pending = 0;
    for (int i = 0; i < N_HELD; i++) {
        pthread_join(hs[i].th, NULL);
        if (hs[i].r != NULL && hs[i].r->status == 400 && it_jstr(hs[i].r, "error") != NULL &&
            strcmp(it_jstr(hs[i].r, "error"), "authorization_pending") == 0) {
            pending++;
        } else {
            print_error("held request %d: %ld %s\n", i, hs[i].r ? hs[i].r->status : 0L,
                        hs[i].r ? hs[i].r->body : "");
        }
        it_resp_free(hs[i].r);
    }
    assert_int_equal(still_held, N_HELD);
    assert_true(served < PROMPT_S);
    assert_int_equal(pending, N_HELD);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_held_request_answered_on_approve),
        T(test_held_request_answered_on_scan),
        T(test_held_request_answers_at_once_when_state_is_news),
        T(test_held_request_without_change_times_out_pending),
        T(test_held_request_answered_on_deny),
        T(test_held_request_answered_at_expiry),
        T(test_revoking_scanning_phone_ends_held_request),
        T(test_revoking_approving_phone_before_redeem),
        T(test_abandoned_held_request),
        T(test_shutdown_with_held_request),
        T(test_held_requests_do_not_block_others),
    };
#undef T
    return cmocka_run_group_tests_name("integration/push", tests, NULL, NULL);
}
