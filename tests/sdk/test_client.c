/* SPDX-License-Identifier: MIT */
/*
 * The client SDK against the real server: what a TV app sees. Each test starts `qrlogin serve`
 * (tests/integration/harness.h) with account alice, runs the SDK the way an app does - usually
 * qrl_client_login() on a "screen" thread whose callback records every event - and plays the
 * phone from the main thread with the harness's phone helpers.
 *
 * Time: instead of sleeping through polling intervals and two-minute lifetimes, tests give the
 * SDK a sleep hook (opts.sleep) that records the delay the SDK asked for and moves the server's
 * clock (POST /_test/clock) by that much; some hooks also wait for the main thread's go-ahead
 * ("gate") so that each poll happens exactly when the test wants it. Expiry is reached by moving
 * the server clock past the request lifetime while the SDK is held.
 *
 * Threads: only the main thread asserts. The screen thread touches the harness only through
 * its thread-safe functions (it_json_send) and records everything under a mutex.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "qrlogin/client.h"

/* Generous for sanitizer builds; a healthy run answers in milliseconds. */
#define EVENT_TIMEOUT_S 20.0
/* Time the SDK needs to get its token request parked at the server before the phone acts.
 * Only an ordering aid: an unparked request is answered from the new state anyway. */
#define PARK_MS 300
/* "Promptly": far below any wait or interval in play, far above scheduler noise. */
#define PROMPT_S 2.0
#define MAX_EVENTS 64
#define MAX_SLEEPS 256

typedef struct rec {
    qrl_client_event_type type;
    char payload[512];
    char user_code[32];
    int expires_in, interval, renewals, push;
    qrl_err error;
    long retry_in_ms;
    double t;
} rec;

typedef struct screen {
    it_server *s;
    qrl_client_options opts;
    qrl_client *c;
    pthread_t th;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rec ev[MAX_EVENTS];
    int nev;
    long sleeps[MAX_SLEEPS];
    int nsleep;
    /* sleep hook behaviour */
    int advance;           /* move the server clock by each sleep */
    long first_advance_ms; /* > 0: the first sleep moves it by this much only */
    int gate;              /* each sleep waits for a tick from the main thread */
    int ticks;
    /* result of qrl_client_login on the screen thread */
    int done;
    qrl_err rc;
    double t_done;
    qrl_client_tokens tok;
    char last_error[QRL_CLIENT_ERROR_MAX];
} screen;

static void record(screen *sc, const qrl_client_event *ev)
{
    pthread_mutex_lock(&sc->mu);
    if (sc->nev < MAX_EVENTS) {
        rec *r = &sc->ev[sc->nev++];
        r->type = ev->type;
        snprintf(r->payload, sizeof r->payload, "%s", ev->qr_payload);
        snprintf(r->user_code, sizeof r->user_code, "%s", ev->user_code);
        r->expires_in = ev->expires_in;
        r->interval = ev->interval;
        r->renewals = ev->renewals;
        r->push = ev->push;
        r->error = ev->error;
        r->retry_in_ms = ev->retry_in_ms;
        r->t = it_now();
    }
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

static void on_event(void *user, const qrl_client_event *ev)
{
    record(user, ev);
}

/* POST /_test/clock without assertions (worker threads). */
static void clock_advance_quiet(const it_server *s, long ms)
{
    it_resp *r = it_json_send(s, "POST", "/_test/clock", NULL,
                              json_pack("{s:I}", "advance_ms", (json_int_t)ms));
    if (r == NULL || r->status != 200)
        fprintf(stderr, "test: clock advance failed\n");
    it_resp_free(r);
}

static void on_sleep(void *user, long ms)
{
    screen *sc = user;
    long adv = ms;

    pthread_mutex_lock(&sc->mu);
    if (sc->nsleep == 0 && sc->first_advance_ms > 0)
        adv = sc->first_advance_ms;
    if (sc->nsleep < MAX_SLEEPS)
        sc->sleeps[sc->nsleep++] = ms;
    pthread_cond_broadcast(&sc->cv);
    while (sc->gate && sc->ticks == 0)
        pthread_cond_wait(&sc->cv, &sc->mu);
    if (sc->gate)
        sc->ticks--;
    pthread_mutex_unlock(&sc->mu);
    if (sc->advance)
        clock_advance_quiet(sc->s, adv);
}

static void screen_init(screen *sc, it_server *s)
{
    memset(sc, 0, sizeof *sc);
    sc->s = s;
    pthread_mutex_init(&sc->mu, NULL);
    pthread_cond_init(&sc->cv, NULL);
    sc->opts.server_url = s->base;
    sc->opts.client_id = IT_CLIENT_ID;
    sc->opts.scope = "profile";
    sc->opts.device_name = "Living Room TV";
    sc->opts.device_kind = "tv";
    sc->opts.on_event = on_event;
    sc->opts.user = sc;
}

/* Creates the client from sc->opts (tests adjust opts between init and create). */
static void screen_create(screen *sc)
{
    char why[256];
    qrl_err rc = qrl_client_new(&sc->opts, &sc->c);
    if (rc != QRL_OK) {
        qrl_client_check_options(&sc->opts, why, sizeof why);
        print_error("qrl_client_new: %s (%s)\n", qrl_client_strerror(rc), why);
        fail();
    }
}

static void *screen_main(void *arg)
{
    screen *sc = arg;
    qrl_err rc = qrl_client_login(sc->c, &sc->tok);
    pthread_mutex_lock(&sc->mu);
    snprintf(sc->last_error, sizeof sc->last_error, "%s", qrl_client_last_error(sc->c));
    sc->rc = rc;
    sc->t_done = it_now();
    sc->done = 1;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    return NULL;
}

static void screen_run(screen *sc)
{
    if (sc->c == NULL)
        screen_create(sc);
    assert_int_equal(pthread_create(&sc->th, NULL, screen_main, sc), 0);
    sc->thread_started = 1;
}

static void deadline_ts(struct timespec *ts, double secs)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)secs;
    ts->tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int count_events(const screen *sc, qrl_client_event_type type)
{
    int n = 0;
    for (int i = 0; i < sc->nev; i++)
        n += sc->ev[i].type == type;
    return n;
}

/* Waits for the nth (1-based) event of `type` and returns a copy of it. */
static rec screen_wait_event(screen *sc, qrl_client_event_type type, int nth)
{
    struct timespec ts;
    rec out;

    deadline_ts(&ts, EVENT_TIMEOUT_S);
    pthread_mutex_lock(&sc->mu);
    while (count_events(sc, type) < nth && !sc->done)
        if (pthread_cond_timedwait(&sc->cv, &sc->mu, &ts) != 0)
            break;
    int seen = 0, found = -1;
    for (int i = 0; i < sc->nev && found < 0; i++)
        if (sc->ev[i].type == type && ++seen == nth)
            found = i;
    if (found >= 0)
        out = sc->ev[found];
    int done = sc->done;
    qrl_err rc = sc->rc;
    pthread_mutex_unlock(&sc->mu);
    if (found < 0) {
        print_error("event %d #%d did not come (login %s: %s; %s)\n", (int)type, nth,
                    done ? "ended" : "still running", done ? qrl_client_strerror(rc) : "-",
                    sc->last_error);
        fail();
    }
    return out;
}

/* Waits until the SDK has asked for `n` sleeps in total. */
static void screen_wait_sleeps(screen *sc, int n)
{
    struct timespec ts;

    deadline_ts(&ts, EVENT_TIMEOUT_S);
    pthread_mutex_lock(&sc->mu);
    while (sc->nsleep < n && !sc->done)
        if (pthread_cond_timedwait(&sc->cv, &sc->mu, &ts) != 0)
            break;
    int got = sc->nsleep;
    pthread_mutex_unlock(&sc->mu);
    if (got < n) {
        print_error("the SDK asked for %d sleeps, expected %d (%s)\n", got, n, sc->last_error);
        fail();
    }
}

/* Lets one gated sleep of the SDK end. */
static void screen_tick(screen *sc)
{
    pthread_mutex_lock(&sc->mu);
    sc->ticks++;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

/* Waits for qrl_client_login to return on the screen thread; returns its result. */
static qrl_err screen_join(screen *sc)
{
    struct timespec ts;

    deadline_ts(&ts, EVENT_TIMEOUT_S);
    pthread_mutex_lock(&sc->mu);
    while (!sc->done)
        if (pthread_cond_timedwait(&sc->cv, &sc->mu, &ts) != 0)
            break;
    int done = sc->done;
    pthread_mutex_unlock(&sc->mu);
    if (!done) {
        print_error("qrl_client_login did not return within %.0f s\n", EVENT_TIMEOUT_S);
        qrl_client_cancel(sc->c);
    }
    pthread_join(sc->th, NULL);
    sc->thread_started = 0;
    assert_true(done);
    return sc->rc;
}

static void screen_free(screen *sc)
{
    if (sc->thread_started) {
        qrl_client_cancel(sc->c);
        pthread_join(sc->th, NULL);
    }
    qrl_client_tokens_clear(&sc->tok);
    qrl_client_free(sc->c);
    pthread_cond_destroy(&sc->cv);
    pthread_mutex_destroy(&sc->mu);
}

static const char *scan_secret(const rec *r)
{
    const char *h = strchr(r->payload, '#');
    assert_non_null(h);
    assert_true(it_has_prefix(h + 1, "qrl_ss_"));
    return h + 1;
}

static void phone_view(it_server *s, const it_phone *p, const rec *r)
{
    it_resp *v = it_view(s, p, scan_secret(r));
    it_expect(v, 200, NULL);
    assert_string_equal(it_jstr(v, "device_name"), "Living Room TV");
    assert_string_equal(it_jstr(v, "user_code"), r->user_code);
    it_resp_free(v);
}

static void phone_approve(it_server *s, const it_phone *p, const rec *r)
{
    it_resp *a = it_approve(s, p, scan_secret(r), r->user_code, IT_PASSWORD);
    it_expect(a, 200, NULL);
    it_resp_free(a);
}

static void expect_tokens(const qrl_client_tokens *t)
{
    assert_true(it_has_prefix(t->access_token, "qrl_at_"));
    assert_true(it_has_prefix(t->refresh_token, "qrl_rt_"));
    assert_string_equal(t->scope, "profile");
    assert_true(t->expires_in > 0);
    long long now = (long long)time(NULL);
    assert_true(t->expires_at >= now + t->expires_in - 60 && t->expires_at <= now + t->expires_in);
}

/* Signs the screen in from start to end (push), as the phone. */
static void full_login(screen *sc, it_phone *p)
{
    screen_run(sc);
    rec st = screen_wait_event(sc, QRL_CLIENT_EV_STARTED, 1);
    phone_view(sc->s, p, &st);
    screen_wait_event(sc, QRL_CLIENT_EV_SCANNED, 1);
    phone_approve(sc->s, p, &st);
    assert_int_equal(screen_join(sc), QRL_OK);
    expect_tokens(&sc->tok);
}

/* --- tests ------------------------------------------------------------------------------------ */

/* The whole login with push: the TV shows the code, says "Confirm on your phone" the moment the
 * phone scans, and is signed in the moment the phone approves - without ever polling. */
static void test_login_push(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Alice's phone", &p);
    screen_init(&sc, s);
    sc.opts.sleep = on_sleep; /* records any sleep: with push there must be none */
    screen_run(&sc);

    rec st = screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    assert_true(it_has_prefix(st.payload, s->base));
    assert_non_null(strstr(st.payload, "#qrl_ss_"));
    assert_int_equal(strlen(st.user_code), 9);
    assert_int_equal(st.user_code[4], '-');
    assert_int_equal(st.expires_in, 120);
    assert_int_equal(st.interval, 5);
    assert_int_equal(st.renewals, 0);

    it_sleep_ms(PARK_MS);
    double t_scan = it_now();
    phone_view(s, &p, &st);
    rec sn = screen_wait_event(&sc, QRL_CLIENT_EV_SCANNED, 1);
    assert_true(sn.t - t_scan < PROMPT_S);
    assert_int_equal(sn.push, 1);
    assert_string_equal(sn.user_code, st.user_code);

    it_sleep_ms(PARK_MS);
    double t_approve = it_now();
    phone_approve(s, &p, &st);
    assert_int_equal(screen_join(&sc), QRL_OK);
    assert_true(sc.t_done - t_approve < PROMPT_S);
    expect_tokens(&sc.tok);

    /* Exactly what the app was told, in order, and no polling sleeps at all. */
    assert_int_equal(sc.nev, 3);
    assert_int_equal(sc.ev[0].type, QRL_CLIENT_EV_STARTED);
    assert_int_equal(sc.ev[1].type, QRL_CLIENT_EV_SCANNED);
    assert_int_equal(sc.ev[2].type, QRL_CLIENT_EV_APPROVED);
    assert_int_equal(sc.nsleep, 0);

    /* The tokens work and the handle keeps them; the phone lists the TV. The server takes DPoP
     * proofs, so they are bound to the handle's key (RFC 9449). */
    assert_int_equal(it_introspect_active(s, sc.tok.access_token), 1);
    assert_int_equal(qrl_client_dpop_bound(sc.c), 1);
    qrl_client_tokens held;
    assert_int_equal(qrl_client_get_tokens(sc.c, &held), QRL_OK);
    assert_string_equal(held.refresh_token, sc.tok.refresh_token);
    qrl_client_tokens_clear(&held);
    assert_true(it_find_device(s, &p, "Living Room TV") > 0);
    screen_free(&sc);
}

/* With push turned off the SDK polls, waiting the interval before every token request
 * (RFC 8628 section 3.4); the server's rate check (slow_down) never fires. */
static void test_polling(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    sc.opts.disable_push = 1;
    sc.opts.sleep = on_sleep;
    sc.advance = 1;
    sc.gate = 1;
    screen_run(&sc);

    rec st = screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    screen_wait_sleeps(&sc, 1); /* before the first poll */
    screen_tick(&sc);           /* poll 1: pending */
    screen_wait_sleeps(&sc, 2);
    phone_view(s, &p, &st);
    screen_tick(&sc); /* poll 2: scanned */
    rec sn = screen_wait_event(&sc, QRL_CLIENT_EV_SCANNED, 1);
    assert_int_equal(sn.push, 0);
    screen_wait_sleeps(&sc, 3);
    phone_approve(s, &p, &st);
    screen_tick(&sc); /* poll 3: tokens */
    assert_int_equal(screen_join(&sc), QRL_OK);
    expect_tokens(&sc.tok);
    assert_int_equal(sc.nsleep, 3);
    for (int i = 0; i < sc.nsleep; i++)
        assert_int_equal(sc.sleeps[i], 5000);
    screen_free(&sc);
}

/* A poll that comes too early gets slow_down; the SDK adds 5 s to its interval for good
 * (RFC 8628 section 3.5) and then polls on time. */
static void test_slow_down(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    sc.opts.disable_push = 1;
    sc.opts.sleep = on_sleep;
    sc.advance = 1;
    sc.gate = 1;
    screen_run(&sc);

    rec st = screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    screen_wait_sleeps(&sc, 1);
    screen_tick(&sc); /* poll 1 on time: pending */
    screen_wait_sleeps(&sc, 2);
    pthread_mutex_lock(&sc.mu);
    sc.advance = 0; /* this sleep takes no server time: poll 2 is early */
    pthread_mutex_unlock(&sc.mu);
    screen_tick(&sc);
    screen_wait_sleeps(&sc, 3);
    assert_int_equal(sc.sleeps[2], 10000);
    pthread_mutex_lock(&sc.mu);
    sc.advance = 1;
    pthread_mutex_unlock(&sc.mu);
    phone_view(s, &p, &st);
    phone_approve(s, &p, &st);
    screen_tick(&sc);
    assert_int_equal(screen_join(&sc), QRL_OK);
    assert_int_equal(sc.nsleep, 3);
    assert_int_equal(sc.sleeps[0], 5000);
    assert_int_equal(sc.sleeps[1], 5000);
    assert_int_equal(sc.sleeps[2], 10000);
    screen_free(&sc);
}

/* A code nobody scanned expires; the SDK fetches a new one by itself and tells the app, which
 * replaces the QR code. The new code signs in; the old one is dead. */
static void test_renewal(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    screen_run(&sc);
    rec first = screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    it_sleep_ms(PARK_MS);
    it_clock_advance(s, 121000);
    rec again = screen_wait_event(&sc, QRL_CLIENT_EV_RENEWED, 1);
    assert_int_equal(again.renewals, 1);
    assert_string_not_equal(again.payload, first.payload);
    assert_int_equal(again.expires_in, 120);

    it_resp *old = it_view(s, &p, scan_secret(&first));
    assert_true(old->status == 410 || old->status == 404);
    it_resp_free(old);

    phone_view(s, &p, &again);
    phone_approve(s, &p, &again);
    assert_int_equal(screen_join(&sc), QRL_OK);
    expect_tokens(&sc.tok);
    assert_int_equal(count_events(&sc, QRL_CLIENT_EV_STARTED), 1);
    assert_int_equal(count_events(&sc, QRL_CLIENT_EV_RENEWED), 1);
    screen_free(&sc);
}

/* Renewal stops at max_renewals: the login ends with QRL_ERR_EXPIRED. With renewal off, the
 * first expiry ends it. */
static void test_renewal_limit(void **state)
{
    it_server *s = *state;
    screen sc;

    screen_init(&sc, s);
    sc.opts.max_renewals = 2;
    screen_run(&sc);
    screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    it_clock_advance(s, 121000);
    screen_wait_event(&sc, QRL_CLIENT_EV_RENEWED, 1);
    it_clock_advance(s, 121000);
    rec r2 = screen_wait_event(&sc, QRL_CLIENT_EV_RENEWED, 2);
    assert_int_equal(r2.renewals, 2);
    it_clock_advance(s, 121000);
    assert_int_equal(screen_join(&sc), QRL_ERR_EXPIRED);
    assert_non_null(strstr(sc.last_error, "renewal limit (2)"));
    assert_int_equal(count_events(&sc, QRL_CLIENT_EV_RENEWED), 2);
    screen_free(&sc);

    screen_init(&sc, s);
    sc.opts.max_renewals = QRL_CLIENT_NO_RENEWAL;
    screen_run(&sc);
    screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    it_clock_advance(s, 121000);
    assert_int_equal(screen_join(&sc), QRL_ERR_EXPIRED);
    assert_int_equal(count_events(&sc, QRL_CLIENT_EV_RENEWED), 0);
    screen_free(&sc);
}

/* The user declines on the phone: the TV learns it at once. */
static void test_deny(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    screen_run(&sc);
    rec st = screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    phone_view(s, &p, &st);
    screen_wait_event(&sc, QRL_CLIENT_EV_SCANNED, 1);
    it_sleep_ms(PARK_MS);
    double t0 = it_now();
    it_resp *d = it_deny(s, &p, scan_secret(&st));
    it_expect(d, 200, NULL);
    it_resp_free(d);
    assert_int_equal(screen_join(&sc), QRL_ERR_DENIED);
    assert_true(sc.t_done - t0 < PROMPT_S);
    assert_non_null(strstr(sc.last_error, "access_denied"));
    assert_int_equal(count_events(&sc, QRL_CLIENT_EV_APPROVED), 0);
    qrl_client_tokens t;
    assert_int_equal(qrl_client_get_tokens(sc.c, &t), QRL_ERR_CONFLICT);
    screen_free(&sc);
}

/* Refresh rotates: each refresh gives new tokens and the handle keeps the newest refresh
 * token. The tokens are bound to the handle's key: a handle restored after a restart needs the
 * saved key too, and a spent refresh token without the key is refused without harm. Replaying
 * a spent one with the key (theft of the whole credential, as the server sees it) kills the
 * device, and the SDK then reports QRL_ERR_UNAUTHORIZED and drops its tokens. */
static void test_refresh_rotation(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;
    qrl_client_tokens t1, t2, held;
    char key[QRL_CLIENT_KEY_MAX];

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    full_login(&sc, &p);
    assert_int_equal(qrl_client_dpop_bound(sc.c), 1);

    assert_int_equal(qrl_client_refresh(sc.c, &t1), QRL_OK);
    expect_tokens(&t1);
    assert_int_equal(qrl_client_dpop_bound(sc.c), 1); /* the new pair stays bound */
    assert_string_not_equal(t1.refresh_token, sc.tok.refresh_token);
    assert_string_not_equal(t1.access_token, sc.tok.access_token);
    assert_int_equal(qrl_client_refresh(sc.c, &t2), QRL_OK);
    assert_string_not_equal(t2.refresh_token, t1.refresh_token);
    assert_int_equal(qrl_client_get_tokens(sc.c, &held), QRL_OK);
    assert_string_equal(held.refresh_token, t2.refresh_token);
    assert_string_equal(held.access_token, t2.access_token);
    assert_int_equal(it_introspect_active(s, t2.access_token), 1);

    /* A new handle with the saved refresh token but a key of its own is refused: the token is
     * bound to the first handle's key. Nothing is spent. */
    screen stranger;
    screen_init(&stranger, s);
    screen_create(&stranger);
    assert_int_equal(qrl_client_set_refresh_token(stranger.c, t2.refresh_token), QRL_OK);
    qrl_client_tokens tx;
    assert_int_equal(qrl_client_refresh(stranger.c, &tx), QRL_ERR_UNAUTHORIZED);
    assert_non_null(strstr(qrl_client_last_error(stranger.c), "another DPoP key"));
    screen_free(&stranger);

    /* A new handle restored from the saved refresh token and the saved key carries on. */
    assert_int_equal(qrl_client_get_key(sc.c, key, sizeof key), QRL_OK);
    assert_int_equal(strlen(key), 43);
    screen other;
    screen_init(&other, s);
    screen_create(&other);
    assert_int_equal(qrl_client_get_tokens(other.c, &held), QRL_ERR_CONFLICT);
    assert_int_equal(qrl_client_set_key(other.c, "not a key"), QRL_ERR_INVALID);
    assert_int_equal(qrl_client_set_key(other.c, key), QRL_OK);
    assert_int_equal(qrl_client_set_refresh_token(other.c, t2.refresh_token), QRL_OK);
    assert_int_equal(qrl_client_get_tokens(other.c, &held), QRL_OK);
    assert_string_equal(held.access_token, "");
    assert_int_equal(qrl_client_dpop_bound(other.c), 0); /* not known before the refresh */
    qrl_client_tokens t3;
    assert_int_equal(qrl_client_refresh(other.c, &t3), QRL_OK);
    expect_tokens(&t3);
    assert_int_equal(qrl_client_dpop_bound(other.c), 1);

    /* The spent t1 refresh token alone, without the key: refused, and the device lives on. */
    it_resp *r = it_refresh(s, IT_CLIENT_ID, t1.refresh_token);
    it_expect(r, 400, "invalid_dpop_proof");
    it_resp_free(r);
    assert_int_equal(it_introspect_active(s, t3.access_token), 1);

    /* Theft of key and token: the spent t1 comes back with a proof of the key. The whole
     * device is revoked. */
    screen thief;
    screen_init(&thief, s);
    screen_create(&thief);
    assert_int_equal(qrl_client_set_key(thief.c, key), QRL_OK);
    assert_int_equal(qrl_client_set_refresh_token(thief.c, t1.refresh_token), QRL_OK);
    assert_int_equal(qrl_client_refresh(thief.c, &tx), QRL_ERR_UNAUTHORIZED);
    assert_non_null(strstr(qrl_client_last_error(thief.c), "invalid_grant"));
    screen_free(&thief);
    assert_int_equal(qrl_client_refresh(other.c, &t2), QRL_ERR_UNAUTHORIZED);
    assert_non_null(strstr(qrl_client_last_error(other.c), "invalid_grant"));
    assert_int_equal(qrl_client_get_tokens(other.c, &held), QRL_ERR_CONFLICT);
    assert_int_equal(qrl_client_refresh(other.c, &t2), QRL_ERR_CONFLICT);

    sodium_memzero(key, sizeof key);
    qrl_client_tokens_clear(&t1);
    qrl_client_tokens_clear(&t2);
    qrl_client_tokens_clear(&t3);
    qrl_client_tokens_clear(&tx);
    qrl_client_tokens_clear(&held);
    screen_free(&other);
    screen_free(&sc);
}

/* The SDK's DPoP (RFC 9449): the tokens are bound to the handle's key (introspection names its
 * thumbprint), the access token works at the server's own API only with a proof from
 * qrl_client_dpop_proof(), and a screen whose clock is off by minutes still signs in and
 * refreshes: the SDK takes the server's time from a refused proof's Date and tries once more. */
static void test_dpop_binding(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;
    qrl_client_tokens t;
    char proof[QRL_CLIENT_PROOF_MAX], auth[256], dpop[QRL_CLIENT_PROOF_MAX + 8], url[256];

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    full_login(&sc, &p);
    assert_int_equal(qrl_client_dpop_bound(sc.c), 1);

    it_resp *in = it_introspect(s, sc.tok.access_token);
    it_expect(in, 200, NULL);
    assert_string_equal(it_jstr(in, "token_type"), "DPoP");
    json_t *cnf = json_object_get(in->json, "cnf");
    assert_non_null(json_string_value(json_object_get(cnf, "jkt")));
    assert_int_equal(strlen(json_string_value(json_object_get(cnf, "jkt"))), 43);
    it_resp_free(in);

    /* As a bearer token it is refused, and the answer says to use DPoP. */
    it_resp *me = it_json_send(s, "GET", "/v1/me", sc.tok.access_token, NULL);
    it_expect(me, 401, "invalid_token");
    assert_true(it_has_prefix(me->www_authenticate, "DPoP "));
    it_resp_free(me);

    /* With a proof of the handle's key it works; a proof is good for one request only. */
    snprintf(url, sizeof url, "%s/v1/me", s->base);
    assert_int_equal(qrl_client_dpop_proof(sc.c, "GET", url, sc.tok.access_token, proof,
                                           sizeof proof),
                     QRL_OK);
    snprintf(auth, sizeof auth, "Authorization: DPoP %s", sc.tok.access_token);
    snprintf(dpop, sizeof dpop, "DPoP: %s", proof);
    const char *hdrs[] = {auth, dpop, NULL};
    it_req req = {.method = "GET", .path = "/v1/me", .headers = hdrs};
    me = it_http(s, &req);
    it_expect(me, 200, NULL);
    it_resp_free(me);
    me = it_http(s, &req);
    it_expect(me, 401, "invalid_dpop_proof");
    it_resp_free(me);
    assert_int_equal(qrl_client_dpop_proof(sc.c, "get me", url, NULL, proof, sizeof proof),
                     QRL_ERR_INVALID);
    assert_int_equal(qrl_client_dpop_proof(sc.c, "GET", url, NULL, proof, 100),
                     QRL_ERR_TOO_LARGE);

    /* The server's clock is ten minutes ahead of ours: the first proof is refused for its
     * time, the second, on the server's time, passes. */
    it_clock_advance(s, 600000);
    assert_int_equal(qrl_client_refresh(sc.c, &t), QRL_OK);
    expect_tokens(&t);
    assert_int_equal(qrl_client_dpop_bound(sc.c), 1);
    qrl_client_tokens_clear(&t);
    screen_free(&sc);

    /* A whole login with the clock that far off. */
    screen_init(&sc, s);
    full_login(&sc, &p);
    assert_int_equal(qrl_client_dpop_bound(sc.c), 1);
    screen_free(&sc);
}

/* The SDK names the handle's key when it asks for a login request (dpop_jkt): the request is
 * bound to it, the QR payload carries its short form ("?k=" and the thumbprint's first 8
 * characters), the phone's view names the same thumbprint, and the tokens are bound to it. */
static void test_login_names_key(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;
    char jkt[QRL_CLIENT_JKT_MAX], want[160], sql[160];

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    screen_create(&sc);
    assert_int_equal(qrl_client_dpop_jkt(sc.c, jkt, sizeof jkt), QRL_OK);
    assert_int_equal(strlen(jkt), 43);
    assert_int_equal(qrl_client_dpop_jkt(sc.c, jkt, 43), QRL_ERR_TOO_LARGE);
    assert_int_equal(qrl_client_dpop_jkt(sc.c, jkt, sizeof jkt), QRL_OK);
    screen_run(&sc);
    rec st = screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    snprintf(want, sizeof want, "%s/s?k=%.8s#qrl_ss_", s->base, jkt);
    assert_true(it_has_prefix(st.payload, want));
    snprintf(sql, sizeof sql, "SELECT count(*) FROM login_requests WHERE dpop_jkt = '%s'", jkt);
    assert_int_equal(it_db_count(s, sql), 1);

    it_resp *v = it_view(s, &p, scan_secret(&st));
    it_expect(v, 200, NULL);
    assert_string_equal(it_jstr(v, "dpop_jkt"), jkt);
    assert_true(it_has_prefix(it_jstr(v, "key_fingerprint"), "KEY "));
    it_resp_free(v);
    screen_wait_event(&sc, QRL_CLIENT_EV_SCANNED, 1);
    phone_approve(s, &p, &st);
    assert_int_equal(screen_join(&sc), QRL_OK);
    assert_int_equal(qrl_client_dpop_bound(sc.c), 1);
    it_resp *in = it_introspect(s, sc.tok.access_token);
    it_expect(in, 200, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(in->json, "cnf"), "jkt")),
                        jkt);
    it_resp_free(in);
    screen_free(&sc);
}

/* Sign out: the server revokes the device, the handle forgets the tokens. */
static void test_logout(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    full_login(&sc, &p);
    assert_int_equal(it_introspect_active(s, sc.tok.access_token), 1);
    assert_int_equal(qrl_client_logout(sc.c), QRL_OK);
    assert_int_equal(it_introspect_active(s, sc.tok.access_token), 0);
    it_resp *r = it_refresh(s, IT_CLIENT_ID, sc.tok.refresh_token);
    it_expect(r, 400, "invalid_grant");
    it_resp_free(r);
    qrl_client_tokens t;
    assert_int_equal(qrl_client_get_tokens(sc.c, &t), QRL_ERR_CONFLICT);
    assert_int_equal(qrl_client_logout(sc.c), QRL_ERR_CONFLICT);
    screen_free(&sc);
}

static void cancel_after(screen *sc, int park_ms, qrl_err *rc, double *latency)
{
    screen_wait_event(sc, QRL_CLIENT_EV_STARTED, 1);
    it_sleep_ms(park_ms);
    double t0 = it_now();
    qrl_client_cancel(sc->c);
    *rc = screen_join(sc);
    *latency = sc->t_done - t0;
}

/* Cancel from another thread ends a held wait and a polling sleep within moments; a cancel
 * with nothing running stops the next call, once. */
static void test_cancel(void **state)
{
    it_server *s = *state;
    screen sc;
    qrl_err rc;
    double latency;

    screen_init(&sc, s);
    screen_run(&sc);
    cancel_after(&sc, PARK_MS, &rc, &latency);
    assert_int_equal(rc, QRL_CLIENT_ERR_CANCELLED);
    assert_true(latency < 1.0);
    assert_string_equal(qrl_client_strerror(rc), "cancelled");

    /* The handle is usable again: a new login starts. */
    sc.nev = 0;
    sc.done = 0;
    screen_run(&sc);
    cancel_after(&sc, 0, &rc, &latency);
    assert_int_equal(rc, QRL_CLIENT_ERR_CANCELLED);
    screen_free(&sc);

    /* Polling: the SDK sleeps 5 s before its first poll; the cancel cuts it short. */
    screen_init(&sc, s);
    sc.opts.disable_push = 1;
    screen_run(&sc);
    cancel_after(&sc, PARK_MS, &rc, &latency);
    assert_int_equal(rc, QRL_CLIENT_ERR_CANCELLED);
    assert_true(latency < 1.0);

    /* Nothing running: the next call returns at once, and only that one. */
    qrl_client_event ev;
    qrl_client_cancel(sc.c);
    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_CLIENT_ERR_CANCELLED);
    assert_int_equal(ev.type, QRL_CLIENT_EV_NONE);
    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_OK);
    assert_int_equal(ev.type, QRL_CLIENT_EV_STARTED);
    qrl_client_cancel(sc.c);
    assert_int_equal(qrl_client_reset(sc.c), QRL_OK); /* reset drops a pending cancel */
    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_OK);
    assert_int_equal(ev.type, QRL_CLIENT_EV_STARTED);
    screen_free(&sc);
}

/* The server dies while the TV waits: the SDK retries with growing delays, tells the app,
 * and gives up after max_retries instead of hanging. */
static void test_network_backoff(void **state)
{
    it_server *s = *state;
    screen sc;

    screen_init(&sc, s);
    sc.opts.max_retries = 3;
    sc.opts.retry_base_ms = 50;
    sc.opts.retry_max_ms = 200;
    sc.opts.connect_timeout_ms = 2000;
    screen_run(&sc);
    screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    it_sleep_ms(PARK_MS);
    double t0 = it_now();
    it_server_kill9(s);
    assert_int_equal(screen_join(&sc), QRL_ERR_BUSY);
    assert_true(sc.t_done - t0 < 5.0);
    assert_int_equal(count_events(&sc, QRL_CLIENT_EV_RETRYING), 3);
    for (int i = 0, n = 0; i < sc.nev; i++) {
        if (sc.ev[i].type != QRL_CLIENT_EV_RETRYING)
            continue;
        n++;
        long cap = n == 1 ? 50 : n == 2 ? 100 : 200;
        assert_int_equal(sc.ev[i].error, QRL_ERR_BUSY);
        assert_true(sc.ev[i].retry_in_ms >= cap / 2 && sc.ev[i].retry_in_ms <= cap);
    }
    assert_non_null(strstr(sc.last_error, "127.0.0.1"));
    screen_free(&sc);
}

/* The step API: the app drives the login itself, one event per call. */
static void test_step_api(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;
    qrl_client_event ev;
    rec st;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    sc.opts.on_event = NULL; /* the step API does not need it */
    screen_create(&sc);

    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_OK);
    assert_int_equal(ev.type, QRL_CLIENT_EV_STARTED);
    record(&sc, &ev);
    st = sc.ev[0];
    phone_view(s, &p, &st);
    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_OK); /* answered at once: news */
    assert_int_equal(ev.type, QRL_CLIENT_EV_SCANNED);
    assert_string_equal(ev.user_code, st.user_code);
    phone_approve(s, &p, &st);
    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_OK);
    assert_int_equal(ev.type, QRL_CLIENT_EV_APPROVED);
    assert_string_equal(ev.qr_payload, "");
    qrl_client_tokens t;
    assert_int_equal(qrl_client_get_tokens(sc.c, &t), QRL_OK);
    expect_tokens(&t);
    qrl_client_tokens_clear(&t);

    /* Without on_event, the blocking login refuses to run: nobody could see the code. */
    assert_int_equal(qrl_client_login(sc.c, &t), QRL_ERR_INVALID);
    assert_non_null(strstr(qrl_client_last_error(sc.c), "on_event"));

    /* After APPROVED the next step starts a new login. */
    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_OK);
    assert_int_equal(ev.type, QRL_CLIENT_EV_STARTED);
    assert_string_not_equal(ev.user_code, st.user_code);
    screen_free(&sc);
}

/* One thread per handle: a second blocking call while a login runs is refused, not raced. */
static void test_busy_handle(void **state)
{
    it_server *s = *state;
    screen sc;
    qrl_client_tokens t;
    qrl_client_event ev;

    screen_init(&sc, s);
    screen_run(&sc);
    screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    assert_int_equal(qrl_client_refresh(sc.c, &t), QRL_ERR_CONFLICT);
    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_ERR_CONFLICT);
    assert_int_equal(qrl_client_reset(sc.c), QRL_ERR_CONFLICT);
    qrl_client_cancel(sc.c);
    assert_int_equal(screen_join(&sc), QRL_CLIENT_ERR_CANCELLED);
    screen_free(&sc);
}

/* The QR code of the current request, rendered for a terminal, a web view and an image. */
static void test_qr_render(void **state)
{
    it_server *s = *state;
    screen sc;
    qrl_client_event ev;
    char *txt = NULL;
    unsigned char *png = NULL;
    size_t len = 0;

    screen_init(&sc, s);
    screen_create(&sc);
    assert_int_equal(qrl_client_qr_terminal(sc.c, 0, &txt, &len), QRL_ERR_CONFLICT);
    assert_null(txt);
    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_OK);
    assert_int_equal(ev.type, QRL_CLIENT_EV_STARTED);

    assert_int_equal(qrl_client_qr_terminal(sc.c, 0, &txt, &len), QRL_OK);
    assert_true(len > 100 && strlen(txt) == len);
    assert_non_null(strstr(txt, "\xe2\x96")); /* U+2580 block elements */
    assert_null(strchr(txt, '\033'));
    qrl_client_buf_free(sc.c, txt);
    assert_int_equal(qrl_client_qr_terminal(sc.c, 1, &txt, &len), QRL_OK);
    assert_non_null(strchr(txt, '\033'));
    qrl_client_buf_free(sc.c, txt);
    assert_int_equal(qrl_client_qr_svg(sc.c, 4, &txt, &len), QRL_OK);
    assert_non_null(strstr(txt, "<svg"));
    qrl_client_buf_free(sc.c, txt);
    assert_int_equal(qrl_client_qr_png(sc.c, 4, &png, &len), QRL_OK);
    assert_true(len > 8 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
    qrl_client_buf_free(sc.c, png);
    assert_int_not_equal(qrl_client_qr_png(sc.c, 0, &png, &len), QRL_OK); /* bad scale */
    assert_null(png);
    screen_free(&sc);
}

/* Options are checked up front with a sentence that says what is wrong. */
static void test_options(void **state)
{
    it_server *s = *state;
    screen sc;
    char why[256];
    qrl_client *c = (qrl_client *)&why; /* must be reset to NULL on failure */

    screen_init(&sc, s);
    qrl_client_options o = sc.opts;
    assert_int_equal(qrl_client_check_options(&o, why, sizeof why), QRL_OK);
    assert_string_equal(why, "");

    struct {
        const char *field;
        qrl_client_options o;
        qrl_err rc;
        const char *says;
    } bad[] = {
        {"server_url", sc.opts, QRL_ERR_INVALID, "server_url"},
        {"http", sc.opts, QRL_ERR_INVALID, "https"},
        {"client_id", sc.opts, QRL_ERR_INVALID, "client_id"},
        {"kind", sc.opts, QRL_ERR_INVALID, "device_kind"},
        {"scope", sc.opts, QRL_ERR_TOO_LARGE, "scope"},
        {"name", sc.opts, QRL_ERR_INVALID, "device_name"},
        {"wait", sc.opts, QRL_ERR_INVALID, "wait_s"},
        {"renewals", sc.opts, QRL_ERR_INVALID, "max_renewals"},
        {"allocator", sc.opts, QRL_ERR_INVALID, "allocator"},
    };
    char long_scope[400];
    memset(long_scope, 'a', sizeof long_scope - 1);
    long_scope[sizeof long_scope - 1] = '\0';
    qrl_client_allocator half = {.malloc_fn = NULL};
    bad[0].o.server_url = NULL;
    bad[1].o.server_url = "http://login.example.com";
    bad[2].o.client_id = "tv app";
    bad[3].o.device_kind = "fridge";
    bad[4].o.scope = long_scope;
    bad[5].o.device_name = "TV\n";
    bad[6].o.wait_s = 61;
    bad[7].o.max_renewals = -2;
    bad[8].o.allocator = &half;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        if (qrl_client_check_options(&bad[i].o, why, sizeof why) != bad[i].rc ||
            strstr(why, bad[i].says) == NULL) {
            print_error("option %s: got \"%s\"\n", bad[i].field, why);
            fail();
        }
        assert_int_equal(qrl_client_new(&bad[i].o, &c), bad[i].rc);
        assert_null(c);
    }
    assert_int_equal(qrl_client_check_options(NULL, why, sizeof why), QRL_ERR_INVALID);
    o.server_url = "http://login.example.com";
    o.allow_insecure_http = 1;
    assert_int_equal(qrl_client_check_options(&o, NULL, 0), QRL_OK);

    /* Every code has words; the cancel code reads as such. */
    for (int e = QRL_OK; e <= QRL_ERR_INVALID_CLIENT; e++)
        assert_string_not_equal(qrl_client_strerror((qrl_err)e), "unknown error");
    assert_string_equal(qrl_client_strerror((qrl_err)9999), "unknown error");

    /* Nothing to act on yet. */
    screen_create(&sc);
    qrl_client_tokens t;
    assert_int_equal(qrl_client_get_tokens(sc.c, &t), QRL_ERR_CONFLICT);
    assert_int_equal(qrl_client_refresh(sc.c, &t), QRL_ERR_CONFLICT);
    assert_int_equal(qrl_client_logout(sc.c), QRL_ERR_CONFLICT);
    assert_int_equal(qrl_client_set_refresh_token(sc.c, ""), QRL_ERR_INVALID);
    assert_string_equal(qrl_client_last_error(sc.c), "the refresh token is empty or garbled");
    qrl_client_free(NULL);
    screen_free(&sc);

    /* The issuer must be the server_url (RFC 8414 section 3.3): localhost is not 127.0.0.1. */
    char other[96];
    snprintf(other, sizeof other, "http://localhost:%d", s->port);
    screen_init(&sc, s);
    sc.opts.server_url = other;
    screen_create(&sc);
    qrl_client_event ev;
    assert_int_equal(qrl_client_step(sc.c, &ev), QRL_ERR_INVALID);
    assert_non_null(strstr(qrl_client_last_error(sc.c), "issuer"));
    screen_free(&sc);
}

/* The app's allocator gets every allocation the SDK makes, and all of it back. */
typedef struct counting {
    long allocs, frees;
} counting;

static void *count_malloc(void *ctx, size_t n)
{
    __atomic_add_fetch(&((counting *)ctx)->allocs, 1, __ATOMIC_RELAXED);
    return malloc(n);
}

static void count_free(void *ctx, void *p)
{
    __atomic_add_fetch(&((counting *)ctx)->frees, 1, __ATOMIC_RELAXED);
    free(p);
}

static void test_allocator(void **state)
{
    it_server *s = *state;
    it_phone p;
    screen sc;
    counting n = {0, 0};
    qrl_client_allocator al = {count_malloc, count_free, &n};
    char *txt;
    size_t len;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    screen_init(&sc, s);
    sc.opts.allocator = &al;
    screen_run(&sc);
    rec st = screen_wait_event(&sc, QRL_CLIENT_EV_STARTED, 1);
    phone_view(s, &p, &st);
    phone_approve(s, &p, &st);
    assert_int_equal(screen_join(&sc), QRL_OK);
    qrl_client_tokens t;
    assert_int_equal(qrl_client_refresh(sc.c, &t), QRL_OK);
    qrl_client_tokens_clear(&t);
    assert_int_equal(qrl_client_qr_terminal(sc.c, 0, &txt, &len), QRL_ERR_CONFLICT);
    screen_free(&sc);
    assert_true(n.allocs > 5);
    assert_int_equal(n.allocs, n.frees);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_login_push, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_polling, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_slow_down, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_renewal, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_renewal_limit, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_deny, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_refresh_rotation, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_dpop_binding, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_login_names_key, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_logout, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_network_backoff, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_step_api, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_busy_handle, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_qr_render, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_options, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_allocator, it_setup_alice, it_teardown),
    };
    return cmocka_run_group_tests_name("sdk/client", tests, NULL, NULL);
}
