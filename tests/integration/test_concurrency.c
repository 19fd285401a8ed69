/* SPDX-License-Identifier: MIT */
/*
 * Exactly one winner. Each login-request transition is one atomic compare-and-set in the store
 * (docs/architecture.md), so however many callers race, one succeeds and the others get a clear
 * error. A user would notice a failure here as a TV that got two credentials, two linked devices
 * for one sign-in, or an approval and a decline both "succeeding".
 *
 * Every racer runs on its own thread with its own curl handle and starts from a barrier; only
 * the main thread asserts.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RACERS 16

typedef enum { OP_APPROVE, OP_DENY, OP_VIEW, OP_REDEEM } op_kind;

typedef struct racer {
    const it_server *s;
    op_kind op;
    const char *session;
    const it_devauth *da;
    pthread_barrier_t *go;
    it_resp *r;
    pthread_t th;
} racer;

static void *racer_main(void *arg)
{
    racer *x = arg;
    char path[256];
    pthread_barrier_wait(x->go);
    switch (x->op) {
    case OP_APPROVE:
        x->r = it_try_approve(x->s, x->session, x->da->scan_secret, x->da->user_code, IT_PASSWORD);
        break;
    case OP_DENY:
        snprintf(path, sizeof(path), "/v1/login-requests/%s/deny", x->da->scan_secret);
        x->r = it_json_send(x->s, "POST", path, x->session, json_object());
        break;
    case OP_VIEW:
        snprintf(path, sizeof(path), "/v1/login-requests/%s", x->da->scan_secret);
        x->r = it_json_send(x->s, "GET", path, x->session, NULL);
        break;
    case OP_REDEEM:
        x->r = it_try_token_poll(x->s, IT_CLIENT_ID, x->da->device_code, 0);
        break;
    }
    return NULL;
}

/* Runs n racers (ops[i], sessions[i]) against one login request from a common barrier. */
static void race(const it_server *s, const it_devauth *da, int n, const op_kind *ops,
                 const char *const *sessions, racer *out)
{
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, (unsigned)n), 0);
    for (int i = 0; i < n; i++) {
        out[i] = (racer){.s = s, .op = ops[i], .session = sessions[i], .da = da, .go = &go};
        assert_int_equal(pthread_create(&out[i].th, NULL, racer_main, &out[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        assert_int_equal(pthread_join(out[i].th, NULL), 0);
        assert_non_null(out[i].r);
    }
    pthread_barrier_destroy(&go);
}

static int is_error(const it_resp *r, long status, const char *error)
{
    const char *e = it_jstr(r, "error");
    return r->status == status && e != NULL && strcmp(e, error) == 0;
}

static int count_devices_named(const it_server *s, const it_phone *p, const char *name)
{
    it_resp *r = it_json_send(s, "GET", "/v1/devices", p->session, NULL);
    it_expect(r, 200, NULL);
    int n = 0;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(r->json, "devices"), i, d)
    {
        const char *dn = json_string_value(json_object_get(d, "name"));
        n += dn != NULL && strcmp(dn, name) == 0;
    }
    it_resp_free(r);
    return n;
}

static void scanned_request(const it_server *s, const it_phone *p, it_devauth *da)
{
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, da);
    it_resp *r = it_view(s, p, da->scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

static void test_sixteen_approvals_one_winner(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    scanned_request(s, &phone, &da);

    op_kind ops[RACERS];
    const char *sessions[RACERS];
    racer rs[RACERS];
    for (int i = 0; i < RACERS; i++) {
        ops[i] = OP_APPROVE;
        sessions[i] = phone.session;
    }
    double t0 = it_now();
    race(s, &da, RACERS, ops, sessions, rs);
    int ok = 0, conflict = 0;
    for (int i = 0; i < RACERS; i++) {
        if (rs[i].r->status == 200) {
            ok++;
            assert_string_equal(it_jstr(rs[i].r, "state"), "approved");
        } else if (is_error(rs[i].r, 409, "invalid_state")) {
            conflict++;
        } else {
            print_error("approver %d: %ld %s %s\n", i, rs[i].r->status, rs[i].r->curl_error,
                        rs[i].r->body);
        }
        it_resp_free(rs[i].r);
    }
    printf("race: %d approvals in %.3f s: %d x 200, %d x 409\n", RACERS, it_now() - t0, ok,
           conflict);
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, RACERS - 1);

    it_resp *r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_tokens(r, NULL);
    it_resp_free(r);
    assert_int_equal(count_devices_named(s, &phone, "Living Room TV"), 1);
}

static void test_sixteen_redemptions_one_credential(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    scanned_request(s, &phone, &da);
    it_resp *r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    op_kind ops[RACERS];
    const char *sessions[RACERS] = {0};
    racer rs[RACERS];
    for (int i = 0; i < RACERS; i++) {
        ops[i] = OP_REDEEM;
    }
    race(s, &da, RACERS, ops, sessions, rs);
    int ok = 0, invalid_grant = 0, slow_down = 0, winner = -1;
    for (int i = 0; i < RACERS; i++) {
        if (rs[i].r->status == 200) {
            ok++;
            winner = i;
        } else if (is_error(rs[i].r, 400, "invalid_grant")) {
            invalid_grant++;
        } else if (is_error(rs[i].r, 400, "slow_down")) {
            slow_down++; /* these polled within the interval of another poll */
        } else {
            print_error("redeemer %d: %ld %s %s\n", i, rs[i].r->status, rs[i].r->curl_error,
                        rs[i].r->body);
        }
        if (rs[i].r->status != 200) {
            assert_null(it_jstr(rs[i].r, "access_token"));
        }
    }
    printf("race: %d redemptions: %d x 200, %d x invalid_grant, %d x slow_down\n", RACERS, ok,
           invalid_grant, slow_down);
    assert_int_equal(ok, 1);
    assert_int_equal(invalid_grant + slow_down, RACERS - 1);
    it_tokens tok;
    it_expect_tokens(rs[winner].r, &tok);
    for (int i = 0; i < RACERS; i++) {
        it_resp_free(rs[i].r);
    }
    assert_int_equal(it_introspect_active(s, tok.access_token), 1);
    assert_int_equal(count_devices_named(s, &phone, "Living Room TV"), 1);
}

#define PHONES 8

static void test_eight_phones_scan_one_claims(void **state)
{
    it_server *s = *state;
    it_phone phones[PHONES];
    const char *sessions[PHONES];
    op_kind ops[PHONES];
    for (int i = 0; i < PHONES; i++) {
        char name[32];
        snprintf(name, sizeof(name), "Phone %d", i);
        it_phone_sign_in(s, IT_USER, IT_PASSWORD, name, &phones[i]);
        sessions[i] = phones[i].session;
        ops[i] = OP_VIEW;
    }
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    racer rs[PHONES];
    race(s, &da, PHONES, ops, sessions, rs);
    int ok = 0, claimed = 0, winner = -1;
    for (int i = 0; i < PHONES; i++) {
        if (rs[i].r->status == 200) {
            ok++;
            winner = i;
        } else if (is_error(rs[i].r, 409, "already_claimed")) {
            claimed++;
        } else {
            print_error("phone %d: %ld %s\n", i, rs[i].r->status, rs[i].r->body);
        }
        it_resp_free(rs[i].r);
    }
    printf("race: %d phones scanning: %d x 200, %d x already_claimed\n", PHONES, ok, claimed);
    assert_int_equal(ok, 1);
    assert_int_equal(claimed, PHONES - 1);

    /* The winner can approve; a loser cannot. */
    it_resp *r =
        it_approve(s, &phones[(winner + 1) % PHONES], da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 409, "already_claimed");
    it_resp_free(r);
    r = it_approve(s, &phones[winner], da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

static void test_approve_and_deny_race_one_outcome(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_devauth da;
    scanned_request(s, &phone, &da);

    enum { N = 8 };
    op_kind ops[N];
    const char *sessions[N];
    for (int i = 0; i < N; i++) {
        ops[i] = i % 2 == 0 ? OP_APPROVE : OP_DENY;
        sessions[i] = phone.session;
    }
    racer rs[N];
    race(s, &da, N, ops, sessions, rs);
    int ok = 0, conflict = 0;
    op_kind won = OP_VIEW;
    for (int i = 0; i < N; i++) {
        if (rs[i].r->status == 200) {
            ok++;
            won = rs[i].op;
        } else if (is_error(rs[i].r, 409, "invalid_state")) {
            conflict++;
        } else {
            print_error("racer %d: %ld %s\n", i, rs[i].r->status, rs[i].r->body);
        }
        it_resp_free(rs[i].r);
    }
    printf("race: approve vs deny: %s won, %d x 409\n", won == OP_APPROVE ? "approve" : "deny",
           conflict);
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, N - 1);

    it_resp *r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    if (won == OP_APPROVE) {
        it_expect_tokens(r, NULL);
    } else {
        it_expect_oauth_error(r, "access_denied");
    }
    it_resp_free(r);
}

int main(void)
{
    /* Sixteen phones of one account approve and redeem at once: a race test, not a test of the
     * rate limits (tests/integration/test_limits.c), which would refuse some of them. */
    setenv("QRLOGIN_RATE_LIMITS", "off", 1);
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_sixteen_approvals_one_winner),
        T(test_sixteen_redemptions_one_credential),
        T(test_eight_phones_scan_one_claims),
        T(test_approve_and_deny_race_one_outcome),
    };
#undef T
    return cmocka_run_group_tests_name("integration/concurrency", tests, NULL, NULL);
}
