/* SPDX-License-Identifier: MIT */
/*
 * Two nodes, one database: two `qrlogin serve` processes on different ports share one
 * PostgreSQL database, as two nodes behind a load balancer do (docs/deploy.md, "Several
 * nodes"). The balancer may send the screen to node A and the phone to node B; a user would
 * notice a failure here as a TV that does not sign in when the phone approves, a TV that got two
 * credentials, a revoked TV that stays signed in, or a server that answers 500 while the
 * database restarts.
 *
 * What is checked:
 *   - the whole flow with the screen on A and the phone on B, with plain polls, then with a
 *     `Prefer: wait` request held on A and woken by the approval on B (the wake-up latency is
 *     printed; the assertion is only that the held request is answered with the tokens before
 *     its wait ends);
 *   - races spread over both nodes: 16 approvals (8 per node) of one request give exactly one
 *     200, 16 redemptions exactly one credential;
 *   - wake-ups across nodes: a held token request on A hears of the claim, the denial and the
 *     revocation of the claiming phone on B; a signed-in web screen's watch on A hears of its
 *     revocation on B;
 *   - RFC 8628 slow_down across nodes: a poll on A then at once on B is too fast;
 *   - notifications sent in batches: one NOTIFY naming several requests wakes every request
 *     held on A for one of them, and claims made on B at the same moment (which B's notifier
 *     sends several to a NOTIFY) wake each screen held on A; a refused poll (the device code
 *     with another client) counts for the interval on neither node;
 *   - passkey ceremonies across nodes (both nodes with one public URL, as behind one load
 *     balancer): a passkey registration and a passkey approval whose challenge the phone got
 *     from one node and whose answer it sent to the other succeed, and the challenge, spent by
 *     its first use (on either node, whatever the outcome), is refused on both;
 *   - the database going away in the middle of a flow (a cluster of the test's own, stopped and
 *     started with tests/pg/cluster.sh, so that the tests beside it on the shared cluster are
 *     left alone): every request during the outage gets 503 with Retry-After or a closed
 *     connection, never a 500 and never half a write (a refresh refused then leaves its refresh
 *     token working; only answered device authorizations exist); afterwards the flow
 *     completes, and the request held across the outage is answered before its wait ends
 *     rather than hanging.
 *
 * PostgreSQL only (QRL_TEST_BACKEND=postgres, tests/pg/README): one SQLite file takes one
 * server. Each node has its own test clock, so every clock move is made on both nodes.
 * Threads only send requests (harness.h); the main thread asserts.
 */
#include "harness.h"
#include "it_pg.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long we give a request to reach the server and be parked before acting on another node.
 * Only an ordering aid: a request not parked yet is answered from the new state. */
#define PARK_MS 300
/* The wait of held requests. A held request answered later than WAIT_S - MARGIN_S was not
 * woken: it ran to the end of its wait. */
#define WAIT_S 20
#define MARGIN_S 2.0
/* RFC 8628 section 3.5: the default polling interval, in milliseconds. */
#define INTERVAL_MS 5000
#define RACERS 16

typedef struct nodes {
    it_server *a, *b;
} nodes;

static const it_account alice[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME}, {NULL, NULL, NULL}};

static int setup_two_nodes(void **state)
{
    nodes *n = calloc(1, sizeof(*n));
    assert_non_null(n);
    n->a = it_server_new_with_accounts(alice);
    it_server_start(n->a);
    n->b = it_server_new_on(n->a);
    it_server_start(n->b);
    printf("two nodes: A %s, B %s, database %s\n", n->a->base, n->b->base, n->a->db);
    *state = n;
    return 0;
}

static int teardown_two_nodes(void **state)
{
    nodes *n = *state;
    if (n == NULL) {
        return 0;
    }
    if (n->b != NULL && n->b->pid > 0) {
        it_server_stop(n->b);
    }
    if (n->a != NULL && n->a->pid > 0) {
        it_server_stop(n->a);
    }
    it_server_free(n->b); /* B first: the database is A's */
    it_server_free(n->a);
    free(n);
    *state = NULL;
    return 0;
}

/* Both nodes move their test clocks together, as the real clocks of two machines would. */
static void clocks_advance(const nodes *n, long long ms)
{
    it_clock_advance(n->a, ms);
    it_clock_advance(n->b, ms);
}

/* --- held requests (a worker thread each) ----------------------------------------------------- */

typedef struct held {
    const it_server *s;
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
    h->r = it_try_token_poll(h->s, IT_CLIENT_ID, h->device_code, h->wait_s);
    h->t_done = it_now();
    __atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Starts a token request held for wait_s on `s` and checks that it is held. */
static void held_start(held *h, const it_server *s, const it_devauth *da, int wait_s)
{
    memset(h, 0, sizeof(*h));
    h->s = s;
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

/* Joins the held request, prints how long after `t_event` it was answered, and asserts that it
 * was answered before its wait ended. */
static void held_join(held *h, double t_event, const char *what)
{
    assert_int_equal(pthread_join(h->th, NULL), 0);
    assert_non_null(h->r);
    double held_for = h->t_done - h->t_start;
    printf("two nodes: held wait=%d on one node answered %.1f ms after the %s on the other "
           "(held %.3f s in all): %ld\n",
           h->wait_s, (h->t_done - t_event) * 1000.0, what, held_for, h->r->status);
    if (held_for >= h->wait_s - MARGIN_S) {
        print_error("the held request ran to the end of its wait (%.3f s of %d s): the %s on "
                    "the other node did not wake it\n",
                    held_for, h->wait_s, what);
        fail();
    }
}

/* --- flow steps ------------------------------------------------------------------------------- */

/* The screen on A asks; the phone on B signs in and claims; the screen on A polls once and
 * hears "scanned"; both clocks move one interval on, so the next poll is on time. */
static void claimed_across(const nodes *n, it_phone *phone, it_devauth *da)
{
    it_device_authorization(n->a, IT_CLIENT_ID, "Living Room TV", "tv", "profile", da);
    it_phone_sign_in(n->b, IT_USER, IT_PASSWORD, "Alice's phone", phone);
    it_resp *r = it_view(n->b, phone, da->scan_secret);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);
    r = it_token_poll(n->a, IT_CLIENT_ID, da->device_code, 0);
    it_expect_oauth_error(r, "authorization_pending");
    assert_string_equal(it_jstr(r, "status"), "scanned");
    it_resp_free(r);
    clocks_advance(n, INTERVAL_MS);
}

static int count_devices_named(const it_server *s, const it_phone *p, const char *name)
{
    it_resp *r = it_json_send(s, "GET", "/v1/devices", p->session, NULL);
    it_expect(r, 200, NULL);
    int count = 0;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(r->json, "devices"), i, d)
    {
        const char *dn = json_string_value(json_object_get(d, "name"));
        count += dn != NULL && strcmp(dn, name) == 0;
    }
    it_resp_free(r);
    return count;
}

static int is_error(const it_resp *r, long status, const char *error)
{
    const char *e = it_jstr(r, "error");
    return r->status == status && e != NULL && strcmp(e, error) == 0;
}

/* --- the flow across nodes -------------------------------------------------------------------- */

/* Screen on A, phone on B, plain polls; then the credential issued by A works on B, and a
 * revocation on B is seen on A at the next request. */
static void test_flow_screen_on_a_phone_on_b(void **state)
{
    nodes *n = *state;
    it_phone phone;
    it_devauth da;
    claimed_across(n, &phone, &da);

    it_resp *r = it_approve(n->b, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "approved");
    it_resp_free(r);

    r = it_token_poll(n->a, IT_CLIENT_ID, da.device_code, 0);
    it_tokens tok;
    it_expect_tokens(r, &tok);
    assert_string_equal(it_jstr(r, "scope"), "profile");
    it_resp_free(r);

    /* A second redemption, on either node, gets nothing. */
    clocks_advance(n, INTERVAL_MS);
    r = it_token_poll(n->b, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);

    assert_int_equal(it_introspect_active(n->b, tok.access_token), 1);
    assert_int_equal(it_introspect_active(n->a, tok.access_token), 1);
    long long tv = it_find_device(n->b, &phone, "Living Room TV");
    assert_true(tv > 0);
    assert_int_equal(count_devices_named(n->a, &phone, "Living Room TV"), 1);

    /* Refresh on B with the refresh token A issued; the new access token works on A. */
    r = it_refresh(n->b, IT_CLIENT_ID, tok.refresh_token);
    it_tokens rotated;
    it_expect_tokens(r, &rotated);
    it_resp_free(r);
    assert_int_equal(it_introspect_active(n->a, rotated.access_token), 1);

    /* Revoked on B: A refuses the next request with it. */
    r = it_revoke_device(n->b, &phone, tv);
    it_expect(r, 204, NULL);
    it_resp_free(r);
    assert_int_equal(it_introspect_active(n->a, rotated.access_token), 0);
    r = it_refresh(n->a, IT_CLIENT_ID, rotated.refresh_token);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
}

/* The screen's request is held on A; the approval on B wakes it with the tokens. */
static void test_held_on_a_woken_by_approval_on_b(void **state)
{
    nodes *n = *state;
    it_phone phone;
    it_devauth da;
    claimed_across(n, &phone, &da);

    held h;
    held_start(&h, n->a, &da, WAIT_S);
    it_resp *r = it_approve(n->b, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    double t_approved = it_now();
    it_expect(r, 200, NULL);
    it_resp_free(r);

    held_join(&h, t_approved, "approval");
    it_tokens tok;
    it_expect_tokens(h.r, &tok);
    it_resp_free(h.r);
    assert_int_equal(it_introspect_active(n->b, tok.access_token), 1);
    assert_int_equal(count_devices_named(n->b, &phone, "Living Room TV"), 1);
}

/* --- races over both nodes -------------------------------------------------------------------- */

typedef enum { OP_APPROVE, OP_REDEEM } op_kind;

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
    pthread_barrier_wait(x->go);
    if (x->op == OP_APPROVE) {
        x->r = it_try_approve(x->s, x->session, x->da->scan_secret, x->da->user_code, IT_PASSWORD);
    } else {
        x->r = it_try_token_poll(x->s, IT_CLIENT_ID, x->da->device_code, 0);
    }
    return NULL;
}

/* RACERS racers from one barrier, the even ones on A and the odd ones on B. */
static void race(const nodes *n, op_kind op, const it_devauth *da, const char *session, racer *out)
{
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, RACERS), 0);
    for (int i = 0; i < RACERS; i++) {
        out[i] = (racer){
            .s = i % 2 == 0 ? n->a : n->b, .op = op, .session = session, .da = da, .go = &go};
        assert_int_equal(pthread_create(&out[i].th, NULL, racer_main, &out[i]), 0);
    }
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(pthread_join(out[i].th, NULL), 0);
        assert_non_null(out[i].r);
    }
    pthread_barrier_destroy(&go);
}

static void test_sixteen_approvals_over_two_nodes(void **state)
{
    nodes *n = *state;
    it_phone phone;
    it_devauth da;
    claimed_across(n, &phone, &da);

    racer rs[RACERS];
    double t0 = it_now();
    race(n, OP_APPROVE, &da, phone.session, rs);
    int ok = 0, conflict = 0, ok_on[2] = {0, 0};
    for (int i = 0; i < RACERS; i++) {
        if (rs[i].r->status == 200) {
            ok++;
            ok_on[i % 2]++;
            assert_string_equal(it_jstr(rs[i].r, "state"), "approved");
        } else if (is_error(rs[i].r, 409, "invalid_state")) {
            conflict++;
        } else {
            print_error("approver %d (node %c): %ld %s %s\n", i, i % 2 ? 'B' : 'A', rs[i].r->status,
                        rs[i].r->curl_error, rs[i].r->body);
        }
        it_resp_free(rs[i].r);
    }
    printf("two nodes: %d approvals in %.3f s: %d x 200 (A %d, B %d), %d x 409\n", RACERS,
           it_now() - t0, ok, ok_on[0], ok_on[1], conflict);
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, RACERS - 1);

    it_resp *r = it_token_poll(n->b, IT_CLIENT_ID, da.device_code, 0);
    it_expect_tokens(r, NULL);
    it_resp_free(r);
    assert_int_equal(count_devices_named(n->a, &phone, "Living Room TV"), 1);
}

static void test_sixteen_redemptions_over_two_nodes(void **state)
{
    nodes *n = *state;
    it_phone phone;
    it_devauth da;
    claimed_across(n, &phone, &da);
    it_resp *r = it_approve(n->b, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    racer rs[RACERS];
    race(n, OP_REDEEM, &da, NULL, rs);
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
            print_error("redeemer %d (node %c): %ld %s %s\n", i, i % 2 ? 'B' : 'A', rs[i].r->status,
                        rs[i].r->curl_error, rs[i].r->body);
        }
        if (rs[i].r->status != 200) {
            assert_null(it_jstr(rs[i].r, "access_token"));
        }
    }
    printf("two nodes: %d redemptions: %d x 200 (node %c), %d x invalid_grant, %d x slow_down\n",
           RACERS, ok, winner % 2 ? 'B' : 'A', invalid_grant, slow_down);
    assert_int_equal(ok, 1);
    assert_int_equal(invalid_grant + slow_down, RACERS - 1);
    it_tokens tok;
    it_expect_tokens(rs[winner].r, &tok);
    for (int i = 0; i < RACERS; i++) {
        it_resp_free(rs[i].r);
    }
    /* The credential works on the node that did not issue it. */
    assert_int_equal(it_introspect_active(winner % 2 ? n->a : n->b, tok.access_token), 1);
    assert_int_equal(count_devices_named(n->a, &phone, "Living Room TV"), 1);
}

/* --- wake-ups across nodes -------------------------------------------------------------------- */

/* Held on A while pending; the phone's claim on B wakes it with "scanned". */
static void test_claim_on_b_wakes_a(void **state)
{
    nodes *n = *state;
    it_devauth da;
    it_device_authorization(n->a, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    it_phone phone;
    it_phone_sign_in(n->b, IT_USER, IT_PASSWORD, NULL, &phone);
    it_resp *r = it_token_poll(n->a, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "authorization_pending");
    assert_string_equal(it_jstr(r, "status"), "pending");
    it_resp_free(r);
    clocks_advance(n, INTERVAL_MS);

    held h;
    held_start(&h, n->a, &da, WAIT_S);
    r = it_view(n->b, &phone, da.scan_secret);
    double t_claimed = it_now();
    it_expect(r, 200, NULL);
    it_resp_free(r);

    held_join(&h, t_claimed, "claim");
    it_expect_oauth_error(h.r, "authorization_pending");
    assert_string_equal(it_jstr(h.r, "status"), "scanned");
    it_resp_free(h.r);
}

/* Held on A; the denial on B wakes it with access_denied. */
static void test_denial_on_b_wakes_a(void **state)
{
    nodes *n = *state;
    it_phone phone;
    it_devauth da;
    claimed_across(n, &phone, &da);

    held h;
    held_start(&h, n->a, &da, WAIT_S);
    it_resp *r = it_deny(n->b, &phone, da.scan_secret);
    double t_denied = it_now();
    it_expect(r, 200, NULL);
    it_resp_free(r);

    held_join(&h, t_denied, "denial");
    it_expect_oauth_error(h.r, "access_denied");
    it_resp_free(h.r);
}

/* Held on A; revoking the claiming phone from another device on B declines the request and
 * wakes A with access_denied. */
static void test_phone_revocation_on_b_wakes_a(void **state)
{
    nodes *n = *state;
    it_phone phone, laptop;
    it_devauth da;
    claimed_across(n, &phone, &da);
    it_phone_sign_in(n->b, IT_USER, IT_PASSWORD, "Alice's laptop", &laptop);

    held h;
    held_start(&h, n->a, &da, WAIT_S);
    it_resp *r = it_revoke_device(n->b, &laptop, phone.device_id);
    double t_revoked = it_now();
    it_expect(r, 204, NULL);
    it_resp_free(r);

    held_join(&h, t_revoked, "revocation of the claiming phone");
    it_expect_oauth_error(h.r, "access_denied");
    it_resp_free(h.r);
    /* The revoked phone is refused on A as well. */
    r = it_approve(n->a, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
}

/* A browser: its cookie jar and the Origin it sends (its node's own, or the public URL both
 * nodes share). */
typedef struct browser {
    const it_server *s;
    const char *origin; /* NULL: s->base */
    struct {
        char name[32];
        char value[200];
    } jar[8];
    int n;
} browser;

static const char *jar_get(const browser *b, const char *name)
{
    for (int i = 0; i < b->n; i++) {
        if (strcmp(b->jar[i].name, name) == 0) {
            return b->jar[i].value;
        }
    }
    return NULL;
}

/* Keeps what the response's Set-Cookie headers say (Max-Age=0 deletes). */
static void jar_update(browser *b, const it_resp *r)
{
    for (int c = 0; c < r->n_set_cookie; c++) {
        const char *sc = r->set_cookie[c], *eq = strchr(sc, '=');
        if (eq == NULL || (size_t)(eq - sc) >= sizeof(b->jar[0].name)) {
            continue;
        }
        size_t nl = (size_t)(eq - sc), vl = strcspn(eq + 1, ";");
        int del = strstr(sc, "Max-Age=0") != NULL, i;
        for (i = 0; i < b->n; i++) {
            if (strlen(b->jar[i].name) == nl && strncmp(b->jar[i].name, sc, nl) == 0) {
                break;
            }
        }
        if (i == b->n) {
            if (del || b->n == (int)(sizeof(b->jar) / sizeof(b->jar[0]))) {
                continue;
            }
            b->n++;
        }
        snprintf(b->jar[i].name, sizeof(b->jar[i].name), "%.*s", (int)nl, sc);
        snprintf(b->jar[i].value, sizeof(b->jar[i].value), "%.*s", (int)vl, eq + 1);
        if (del) {
            b->jar[i] = b->jar[b->n - 1];
            b->n--;
        }
    }
}

/* One request as our pages send it: cookies, Origin, X-CSRF-Token. Thread-safe. */
static it_resp *browser_send(const browser *b, const char *method, const char *path,
                             const char *json, int wait_s)
{
    char cookie[1400] = "Cookie: ", origin[160], token[160];
    const char *hdrs[4];
    int h = 0;

    for (int i = 0; i < b->n; i++) {
        snprintf(cookie + strlen(cookie), sizeof(cookie) - strlen(cookie), "%s%s=%s",
                 i > 0 ? "; " : "", b->jar[i].name, b->jar[i].value);
    }
    if (b->n > 0) {
        hdrs[h++] = cookie;
    }
    snprintf(origin, sizeof(origin), "Origin: %s", b->origin != NULL ? b->origin : b->s->base);
    hdrs[h++] = origin;
    const char *csrf = jar_get(b, "qrl_csrf");
    if (csrf != NULL) {
        snprintf(token, sizeof(token), "X-CSRF-Token: %s", csrf);
        hdrs[h++] = token;
    }
    hdrs[h] = NULL;
    it_req req = {.method = method,
                  .path = path,
                  .body = json,
                  .content_type = json != NULL ? "application/json" : NULL,
                  .prefer_wait = wait_s,
                  .headers = hdrs};
    return it_http(b->s, &req);
}

static it_resp *browser_call(browser *b, const char *method, const char *path, const char *json)
{
    it_resp *r = browser_send(b, method, path, json, 0);
    assert_non_null(r);
    jar_update(b, r);
    return r;
}

typedef struct watch_job {
    const browser *b;
    it_resp *r;
    double t_start, t_done;
    pthread_t th;
} watch_job;

static void *watch_main(void *arg)
{
    watch_job *j = arg;
    j->r = browser_send(j->b, "GET", "/web/screen/watch", NULL, WAIT_S);
    j->t_done = it_now();
    return NULL;
}

/* A web screen signed in on A (its page's API: start, wait) by a phone on B (the JSON API,
 * by user code); returns the screen's device id. */
static long long web_screen_signed_in_on_a(const nodes *n, browser *tv, it_phone *phone)
{
    memset(tv, 0, sizeof(*tv));
    tv->s = n->a;
    it_resp *r = browser_call(tv, "GET", "/", NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    assert_non_null(jar_get(tv, "qrl_csrf"));
    r = browser_call(tv, "POST", "/web/screen/start", "{}");
    it_expect(r, 200, NULL);
    char uc[32];
    assert_non_null(it_jstr(r, "user_code"));
    snprintf(uc, sizeof(uc), "%s", it_jstr(r, "user_code"));
    it_resp_free(r);

    it_phone_sign_in(n->b, IT_USER, IT_PASSWORD, "Alice's phone", phone);
    r = it_view(n->b, phone, uc);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(n->b, phone, uc, uc, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);

    r = browser_call(tv, "POST", "/web/screen/wait", "{}");
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "approved");
    it_resp_free(r);
    r = browser_call(tv, "GET", "/web/screen/me", NULL);
    it_expect(r, 200, NULL);
    long long id = json_integer_value(json_object_get(json_object_get(r->json, "device"), "id"));
    it_resp_free(r);
    assert_true(id > 0);
    return id;
}

/* A signed-in web screen on A watches for its revocation; the phone revokes it on B. */
static void test_web_screen_revoked_on_b_hears_on_a(void **state)
{
    nodes *n = *state;
    browser tv;
    it_phone phone;
    long long id = web_screen_signed_in_on_a(n, &tv, &phone);

    watch_job j = {.b = &tv, .t_start = it_now()};
    assert_int_equal(pthread_create(&j.th, NULL, watch_main, &j), 0);
    it_sleep_ms(PARK_MS);
    it_resp *r = it_revoke_device(n->b, &phone, id);
    double t_revoked = it_now();
    it_expect(r, 204, NULL);
    it_resp_free(r);

    assert_int_equal(pthread_join(j.th, NULL), 0);
    assert_non_null(j.r);
    double held_for = j.t_done - j.t_start;
    printf("two nodes: web watch on A answered %.1f ms after the revocation on B (held %.3f "
           "s): %ld\n",
           (j.t_done - t_revoked) * 1000.0, held_for, j.r->status);
    assert_true(held_for < WAIT_S - MARGIN_S);
    it_expect(j.r, 401, "unauthorized");
    jar_update(&tv, j.r);
    it_resp_free(j.r);
    r = browser_call(&tv, "GET", "/web/screen/me", NULL);
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
}

/* --- notifications in batches, polls counted once -------------------------------------------- */

#define BATCH 8

/* A statement that changes something (or notifies), on a connection of the test's own to the
 * nodes' database; returns the first column of its first row. it_db_count() is read-only. */
static long long db_write(const nodes *n, const char *sql)
{
    PGconn *c = PQconnectdb(n->a->db);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        print_error("%s: %s\n", sql, PQerrorMessage(c));
        fail();
    }
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

/* The id of the login request of a device authorization, by its user code. */
static long long request_id(const nodes *n, const it_devauth *da)
{
    char code[16] = "", sql[160];
    size_t k = 0;
    for (const char *p = da->user_code; *p != '\0' && k + 1 < sizeof(code); p++) {
        if (*p != '-') {
            code[k++] = *p;
        }
    }
    code[k] = '\0';
    snprintf(sql, sizeof(sql), "SELECT id FROM login_requests WHERE user_code = '%s'", code);
    long long id = it_db_count(n->a, sql);
    assert_true(id > 0);
    return id;
}

/* BATCH screens on A, each told "pending" once and then held. */
static void held_batch(const nodes *n, it_devauth *da, held *h)
{
    for (int i = 0; i < BATCH; i++) {
        it_device_authorization(n->a, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da[i]);
        it_resp *r = it_token_poll(n->a, IT_CLIENT_ID, da[i].device_code, 0);
        it_expect_oauth_error(r, "authorization_pending");
        it_resp_free(r);
    }
    clocks_advance(n, INTERVAL_MS);
    for (int i = 0; i < BATCH; i++) {
        held_start(&h[i], n->a, &da[i], WAIT_S);
    }
}

/* One notification names several requests (what a node's notifier sends when changes commit
 * faster than it sends, lib/store/postgres/notify.c): every request held for one of them on A
 * is woken. The requests are denied behind both nodes' backs, so that nothing else tells A. */
static void test_one_notification_wakes_each_held(void **state)
{
    nodes *n = *state;
    it_devauth da[BATCH];
    held h[BATCH];
    char list[BATCH * 24] = "", sql[BATCH * 24 + 160];

    held_batch(n, da, h);
    for (int i = 0; i < BATCH; i++) {
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%lld", i > 0 ? "," : "",
                 request_id(n, &da[i]));
    }
    snprintf(sql, sizeof(sql),
             "WITH u AS (UPDATE login_requests SET state = 4 WHERE id IN (%s) RETURNING 1)"
             " SELECT count(*) FROM u",
             list);
    assert_int_equal(db_write(n, sql), BATCH);
    snprintf(sql, sizeof(sql), "SELECT count(pg_notify('qrlogin', '%s'))", list);
    assert_int_equal(db_write(n, sql), 1);
    double t_sent = it_now();
    for (int i = 0; i < BATCH; i++) {
        held_join(&h[i], t_sent, "one notification of all of them");
        it_expect_oauth_error(h[i].r, "access_denied");
        it_resp_free(h[i].r);
    }
}

typedef struct claimer {
    const nodes *n;
    const it_phone *phone;
    const it_devauth *da;
    pthread_barrier_t *go;
    it_resp *r;
    pthread_t th;
} claimer;

static void *claimer_main(void *arg)
{
    claimer *c = arg;
    char path[256];
    snprintf(path, sizeof(path), "/v1/login-requests/%s", c->da->scan_secret);
    pthread_barrier_wait(c->go);
    c->r = it_json_send(c->n->b, "GET", path, c->phone->session, NULL);
    return NULL;
}

/* BATCH screens held on A; BATCH claims on B at the same moment, whose notifications B's
 * notifier sends as fast as they commit, several to a NOTIFY: every screen hears "scanned". */
static void test_claims_at_once_on_b_wake_each_on_a(void **state)
{
    nodes *n = *state;
    it_devauth da[BATCH];
    held h[BATCH];
    claimer c[BATCH];
    pthread_barrier_t go;
    it_phone phone;

    it_phone_sign_in(n->b, IT_USER, IT_PASSWORD, "Alice's phone", &phone);
    held_batch(n, da, h);
    assert_int_equal(pthread_barrier_init(&go, NULL, BATCH), 0);
    for (int i = 0; i < BATCH; i++) {
        c[i] = (claimer){.n = n, .phone = &phone, .da = &da[i], .go = &go};
        assert_int_equal(pthread_create(&c[i].th, NULL, claimer_main, &c[i]), 0);
    }
    for (int i = 0; i < BATCH; i++) {
        assert_int_equal(pthread_join(c[i].th, NULL), 0);
    }
    double t_claimed = it_now();
    pthread_barrier_destroy(&go);
    for (int i = 0; i < BATCH; i++) {
        it_expect(c[i].r, 200, NULL);
        assert_string_equal(it_jstr(c[i].r, "state"), "scanned");
        it_resp_free(c[i].r);
    }
    for (int i = 0; i < BATCH; i++) {
        held_join(&h[i], t_claimed, "claims");
        it_expect_oauth_error(h[i].r, "authorization_pending");
        assert_string_equal(it_jstr(h[i].r, "status"), "scanned");
        it_resp_free(h[i].r);
    }
}

/* A poll that is refused (the device code with another client) is no poll of the request: it
 * counts for the interval on neither node. The poll after it is on time; the next one, at once
 * on the other node, is not. */
static void test_refused_poll_not_counted_across_nodes(void **state)
{
    nodes *n = *state;
    it_devauth da;
    it_device_authorization(n->a, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    it_resp *r = it_token_poll(n->a, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "authorization_pending");
    it_resp_free(r);
    clocks_advance(n, INTERVAL_MS);

    r = it_token_poll(n->b, "another-app", da.device_code, 0);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
    r = it_token_poll(n->a, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "authorization_pending");
    it_resp_free(r);
    r = it_token_poll(n->b, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "slow_down");
    it_resp_free(r);
}

/* --- RFC 8628 slow_down across nodes ---------------------------------------------------------- */

/* RFC 8628 section 3.5: a poll sooner than the interval after the previous one is slow_down,
 * whichever node each went to; the interval then grows by 5 seconds. */
static void test_slow_down_across_nodes(void **state)
{
    nodes *n = *state;
    it_devauth da;
    it_device_authorization(n->a, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    assert_int_equal(da.interval * 1000, INTERVAL_MS);

    it_resp *r = it_token_poll(n->a, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "authorization_pending");
    it_resp_free(r);
    r = it_token_poll(n->b, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "slow_down");
    it_resp_free(r);

    /* Past the grown interval (5 + 5 s), on either node, the poll is on time again. */
    clocks_advance(n, 2 * INTERVAL_MS + 1000);
    r = it_token_poll(n->b, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "authorization_pending");
    it_resp_free(r);
}

/* --- passkey ceremonies across nodes ---------------------------------------------------------- */

/* Both nodes name themselves by this URL, as nodes behind one load balancer do: the relying
 * party of passkeys (its origin, and its host as the RP ID) is the same on both. */
#define PUBLIC_URL "http://localhost:8080"
#define RP_ID "localhost"

static int setup_two_nodes_public(void **state)
{
    nodes *n = calloc(1, sizeof(*n));
    assert_non_null(n);
    n->a = it_server_new_with_accounts(alice);
    n->a->public_url = PUBLIC_URL;
    it_server_start(n->a);
    n->b = it_server_new_on(n->a);
    n->b->public_url = PUBLIC_URL;
    it_server_start(n->b);
    printf("two nodes behind %s: A %s, B %s\n", PUBLIC_URL, n->a->base, n->b->base);
    *state = n;
    return 0;
}

/* A software authenticator with one Ed25519 credential (COSE algorithm -8), as a phone's
 * platform authenticator would hold. */
typedef struct authn {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    unsigned char id[16];
    uint32_t counter;
} authn;

static void authn_new(authn *k, unsigned char seed)
{
    memset(k, 0, sizeof(*k));
    assert_true(sodium_init() >= 0);
    crypto_sign_keypair(k->pk, k->sk);
    memset(k->id, seed, sizeof(k->id));
}

static void b64url(const unsigned char *p, size_t n, char *out, size_t cap)
{
    assert_true(cap >= sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING));
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* authenticatorData (W3C WebAuthn Level 2 section 6.1): the RP ID's hash, flags UP and UV
 * (and AT with the credential: section 6.5.1, its key as a COSE_Key), the counter. */
static size_t auth_data(const authn *k, int attested, unsigned char *out)
{
    /* COSE_Key {1: 1 (OKP), 3: -8 (EdDSA), -1: 6 (Ed25519), -2: the key}. */
    static const unsigned char cose_head[] = {0xa4, 0x01, 0x01, 0x03, 0x27,
                                              0x20, 0x06, 0x21, 0x58, 0x20};
    size_t n = 32;

    crypto_hash_sha256(out, (const unsigned char *)RP_ID, strlen(RP_ID));
    out[n++] = attested ? 0x45 : 0x05;
    out[n++] = (unsigned char)(k->counter >> 24);
    out[n++] = (unsigned char)(k->counter >> 16);
    out[n++] = (unsigned char)(k->counter >> 8);
    out[n++] = (unsigned char)k->counter;
    if (attested) {
        memset(out + n, 0, 16); /* AAGUID */
        n += 16;
        out[n++] = 0;
        out[n++] = sizeof(k->id);
        memcpy(out + n, k->id, sizeof(k->id));
        n += sizeof(k->id);
        memcpy(out + n, cose_head, sizeof(cose_head));
        n += sizeof(cose_head);
        memcpy(out + n, k->pk, sizeof(k->pk));
        n += sizeof(k->pk);
    }
    return n;
}

/* What the browser sends: clientDataJSON (base64url) for `type` over `challenge`, made on a
 * page of the public URL; `json` keeps it as signed. */
static void client_data(const char *type, const char *challenge, char *json, size_t jcap, char *b64,
                        size_t bcap)
{
    snprintf(json, jcap,
             "{\"type\":\"%s\",\"challenge\":\"%s\",\"origin\":\"" PUBLIC_URL
             "\",\"crossOrigin\":false}",
             type, challenge);
    b64url((const unsigned char *)json, strlen(json), b64, bcap);
}

/* The body of POST /web/passkeys: a new credential of `k` over `challenge` (attestation
 * "none", W3C WebAuthn Level 2 section 8.7), with the account password. */
static void registration(const authn *k, const char *challenge, char *body, size_t cap)
{
    unsigned char ad[256], ao[320];
    char json[512], cdj[700], aob[440];
    size_t adlen = auth_data(k, 1, ad), n = 0;
    /* {"fmt": "none", "attStmt": {}, "authData": bytes}, in CBOR. */
    static const unsigned char head[] = {0xa3, 0x63, 'f', 'm', 't', 0x64, 'n', 'o', 'n',  'e',
                                         0x67, 'a',  't', 't', 'S', 't',  'm', 't', 0xa0, 0x68,
                                         'a',  'u',  't', 'h', 'D', 'a',  't', 'a', 0x58};

    assert_true(adlen < 256);
    memcpy(ao, head, sizeof(head));
    n = sizeof(head);
    ao[n++] = (unsigned char)adlen;
    memcpy(ao + n, ad, adlen);
    n += adlen;
    client_data("webauthn.create", challenge, json, sizeof(json), cdj, sizeof(cdj));
    b64url(ao, n, aob, sizeof(aob));
    snprintf(body, cap,
             "{\"password\":\"" IT_PASSWORD "\",\"name\":\"Phone\",\"clientDataJSON\":\"%s\","
             "\"attestationObject\":\"%s\"}",
             cdj, aob);
}

/* The body of POST /web/lr/approve with `k`'s assertion over `challenge`; `bad_sig` flips a
 * bit of the signature. */
static void approval(const authn *k, const char *challenge, const it_devauth *da, int bad_sig,
                     char *body, size_t cap)
{
    unsigned char ad[64], msg[64 + crypto_hash_sha256_BYTES], sig[crypto_sign_BYTES];
    char json[512], cdj[700], adb[100], sigb[100], idb[40];
    size_t adlen = auth_data(k, 0, ad);

    client_data("webauthn.get", challenge, json, sizeof(json), cdj, sizeof(cdj));
    memcpy(msg, ad, adlen);
    crypto_hash_sha256(msg + adlen, (const unsigned char *)json, strlen(json));
    crypto_sign_detached(sig, NULL, msg, adlen + crypto_hash_sha256_BYTES, k->sk);
    if (bad_sig) {
        sig[10] ^= 1;
    }
    b64url(ad, adlen, adb, sizeof(adb));
    b64url(sig, sizeof(sig), sigb, sizeof(sigb));
    b64url(k->id, sizeof(k->id), idb, sizeof(idb));
    snprintf(body, cap,
             "{\"code\":\"%s\",\"user_code\":\"%s\",\"passkey\":{\"id\":\"%s\","
             "\"clientDataJSON\":\"%s\",\"authenticatorData\":\"%s\",\"signature\":\"%s\"}}",
             da->scan_secret, da->user_code, idb, cdj, adb, sigb);
}

/* POST /web/webauthn/options on the phone's current node; the challenge into `out`. */
static void options(browser *phone, const char *json, char out[64])
{
    it_resp *r = browser_call(phone, "POST", "/web/webauthn/options", json);
    it_expect(r, 200, NULL);
    const char *c = it_jstr(r, "challenge");
    assert_non_null(c);
    assert_int_equal(strlen(c), 43);
    snprintf(out, 64, "%s", c);
    it_resp_free(r);
}

static void expect_call(browser *phone, const it_server *s, const char *path, const char *body,
                        long status, const char *error)
{
    phone->s = s;
    it_resp *r = browser_call(phone, "POST", path, body);
    it_expect(r, status, error);
    it_resp_free(r);
}

/* The phone's browser asks one node for a challenge and sends the authenticator's answer to
 * the other, as a round-robin balancer may: a registration (A then B) and an approval step-up
 * (B then A) succeed. A challenge is spent by its first use on either node, whatever the
 * outcome: a second credential over the registration challenge is refused on both nodes, and
 * an approval whose first answer had a bad signature is refused on both with the good one. */
static void test_passkey_ceremonies_across_nodes(void **state)
{
    nodes *n = *state;
    browser phone = {.s = n->a, .origin = PUBLIC_URL};
    char chal[64], body[4096], reuse[4096], q[600];
    authn k, other;
    it_devauth da;

    authn_new(&k, 1);
    authn_new(&other, 2);
    it_resp *r = browser_call(&phone, "GET", "/s", NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    assert_non_null(jar_get(&phone, "qrl_csrf"));
    expect_call(&phone, n->a, "/web/session",
                "{\"username\":\"" IT_USER "\",\"password\":\"" IT_PASSWORD "\"}", 200, NULL);
    assert_non_null(jar_get(&phone, "qrl_ps"));

    /* Registration: the challenge from A, the new credential to B. */
    phone.s = n->a;
    options(&phone, "{\"purpose\":\"register\"}", chal);
    registration(&k, chal, body, sizeof(body));
    registration(&other, chal, reuse, sizeof(reuse));
    expect_call(&phone, n->b, "/web/passkeys", body, 201, NULL);
    expect_call(&phone, n->b, "/web/passkeys", reuse, 400, "passkey_invalid");
    expect_call(&phone, n->a, "/web/passkeys", reuse, 400, "passkey_invalid");
    r = browser_call(&phone, "GET", "/web/passkeys", NULL);
    it_expect(r, 200, NULL);
    assert_int_equal(json_array_size(json_object_get(r->json, "passkeys")), 1);
    it_resp_free(r);

    /* Approval: a screen asks on A; the phone claims the request on A and gets a challenge
     * there; its first answer, to B, has a bad signature and spends the challenge. */
    it_device_authorization(n->a, IT_CLIENT_ID, "Living Room TV", "tv", "profile", &da);
    snprintf(q, sizeof(q), "{\"code\":\"%s\"}", da.scan_secret);
    expect_call(&phone, n->a, "/web/lr/view", q, 200, NULL);
    snprintf(q, sizeof(q), "{\"purpose\":\"approve\",\"code\":\"%s\"}", da.scan_secret);
    options(&phone, q, chal);
    k.counter = 1;
    approval(&k, chal, &da, 1, body, sizeof(body));
    approval(&k, chal, &da, 0, reuse, sizeof(reuse));
    expect_call(&phone, n->b, "/web/lr/approve", body, 403, "passkey_failed");
    expect_call(&phone, n->b, "/web/lr/approve", reuse, 403, "passkey_failed");
    expect_call(&phone, n->a, "/web/lr/approve", reuse, 403, "passkey_failed");

    /* A new challenge from B, answered on A: approved, and the screen on B gets its tokens. */
    phone.s = n->b;
    options(&phone, q, chal);
    k.counter = 2;
    approval(&k, chal, &da, 0, body, sizeof(body));
    expect_call(&phone, n->a, "/web/lr/approve", body, 200, NULL);
    expect_call(&phone, n->b, "/web/lr/approve", body, 409, NULL);
    r = it_token_poll(n->b, IT_CLIENT_ID, da.device_code, 0);
    it_tokens tok;
    it_expect_tokens(r, &tok);
    it_resp_free(r);
    sodium_memzero(&k, sizeof(k));
    sodium_memzero(&other, sizeof(other));
}

/* --- the database restarts in the middle of a flow -------------------------------------------- */

/* Two nodes on a database of a cluster of this test's own (it_pg.h): stopping the shared
 * cluster would break every test running beside this one. */
static int setup_own_cluster(void **state)
{
    it_pg_own_cluster_start();
    nodes *n = calloc(1, sizeof(*n));
    assert_non_null(n);
    n->a = it_server_new();
    it_account_add(n->a, IT_USER, IT_PASSWORD, IT_DISPLAY_NAME);
    it_server_start(n->a);
    n->b = it_server_new_on(n->a);
    it_server_start(n->b);
    printf("two nodes on their own cluster: A %s, B %s, database %s\n", n->a->base, n->b->base,
           n->a->db);
    *state = n;
    return 0;
}

static int teardown_own_cluster(void **state)
{
    teardown_two_nodes(state);
    it_pg_own_cluster_stop();
    return 0;
}

/* Checks one answer given while the database was away: 503 with Retry-After, or a connection
 * closed without an answer (but not one that hung until our timeout). Returns 1 for a 200
 * (possible only for a request that needs no database), 0 otherwise. */
static int outage_answer(const it_resp *r, const char *what)
{
    assert_non_null(r);
    printf("two nodes: during the outage, %s: %ld %s (%.1f ms)%s%s\n", what, r->status,
           it_jstr(r, "error") ? it_jstr(r, "error") : "", r->elapsed_s * 1000.0,
           r->curl_error[0] ? " curl: " : "", r->curl_error);
    if (r->status == 200) {
        return 1;
    }
    if (r->status == 503) {
        it_expect(r, 503, "temporarily_unavailable");
        if (r->retry_after[0] == '\0') {
            print_error("%s: 503 without Retry-After\n", what);
            fail();
        }
        return 0;
    }
    if (r->status == 0 && r->elapsed_s < 8.0) {
        return 0; /* the node closed the connection */
    }
    print_error("%s while the database was down: %ld (expected 503 with Retry-After, or a "
                "closed connection); body: %.400s %s\n",
                what, r->status, r->body, r->curl_error);
    fail();
    return 0;
}

/* Sends `what` until it is not a 503 or a closed connection, for up to `limit_s` seconds after
 * the database came back (a node's connections may need a moment to come back too). */
static it_resp *after_outage(it_resp *(*send)(const nodes *, const void *), const nodes *n,
                             const void *arg, double limit_s)
{
    double t0 = it_now();
    for (;;) {
        it_resp *r = send(n, arg);
        assert_non_null(r);
        if ((r->status != 503 && r->status != 0) || it_now() - t0 > limit_s) {
            return r;
        }
        it_resp_free(r);
        it_sleep_ms(200);
    }
}

typedef struct flow_ctx {
    const it_phone *phone;
    const it_devauth *da;
    const char *refresh_token;
} flow_ctx;

static it_resp *send_approve_b(const nodes *n, const void *arg)
{
    const flow_ctx *c = arg;
    return it_try_approve(n->b, c->phone->session, c->da->scan_secret, c->da->user_code,
                          IT_PASSWORD);
}

static it_resp *send_claim_b(const nodes *n, const void *arg)
{
    const flow_ctx *c = arg;
    char path[256];
    snprintf(path, sizeof(path), "/v1/login-requests/%s", c->da->scan_secret);
    return it_json_send(n->b, "GET", path, c->phone->session, NULL);
}

static it_resp *send_poll_a(const nodes *n, const void *arg)
{
    const flow_ctx *c = arg;
    return it_try_token_poll(n->a, IT_CLIENT_ID, c->da->device_code, 0);
}

static it_resp *send_refresh(const it_server *s, const char *refresh_token)
{
    return it_form_post(s, "/oauth/token",
                        (const char *[]){"grant_type", "refresh_token", "refresh_token",
                                         refresh_token, "client_id", IT_CLIENT_ID, NULL},
                        NULL);
}

static it_resp *send_refresh_b(const nodes *n, const void *arg)
{
    const flow_ctx *c = arg;
    return send_refresh(n->b, c->refresh_token);
}

static it_resp *send_device_authorization(const it_server *s)
{
    return it_form_post(s, "/oauth/device_authorization",
                        (const char *[]){"client_id", IT_CLIENT_ID, "device_name", "Outage TV",
                                         "device_kind", "tv", NULL},
                        NULL);
}

/* Polls /readyz on `s` until it is not 200, for up to 5 s (a node checks readiness at most once
 * a second); returns that answer. */
static it_resp *readyz_until_not_ready(const it_server *s)
{
    double t0 = it_now();
    for (;;) {
        it_resp *r = it_http(s, &(it_req){.path = "/readyz"});
        assert_non_null(r);
        if (r->status != 200 || it_now() - t0 > 5.0) {
            return r;
        }
        it_resp_free(r);
        it_sleep_ms(100);
    }
}

/* A screen signed in before the outage (screen on A, phone on B); returns its tokens. */
static void signed_in_before(const nodes *n, const it_phone *phone, it_tokens *tok)
{
    it_devauth da;
    it_device_authorization(n->a, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);
    it_resp *r = it_view(n->b, phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(n->b, phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_token_poll(n->a, IT_CLIENT_ID, da.device_code, 0);
    it_expect_tokens(r, tok);
    it_resp_free(r);
}

/*
 * The database goes down while one screen is signed in and another waits on A (held, its
 * request not yet claimed), and comes back a moment later. During the outage: two device
 * authorizations, a refresh of the signed-in screen (a rotation: two writes in one
 * transaction), the phone's claim, and /readyz. After it: the refresh token the outage refused
 * still works (the rotation was not half done), exactly the answered device authorizations
 * exist, the claim wakes the screen held across the outage, and the flow completes.
 *
 * The claim right after the restart often reaches the database before node A listens again;
 * then what answers the held request is A's re-check of every held request once it listens
 * again, not the notification, which was lost.
 */
static void test_database_restart_mid_flow(void **state)
{
    nodes *n = *state;
    it_phone phone;
    it_phone_sign_in(n->b, IT_USER, IT_PASSWORD, "Alice's phone", &phone);
    it_tokens before;
    signed_in_before(n, &phone, &before);

    it_devauth da;
    it_device_authorization(n->a, IT_CLIENT_ID, "Kitchen TV", "tv", NULL, &da);
    it_resp *r = it_token_poll(n->a, IT_CLIENT_ID, da.device_code, 0);
    it_expect_oauth_error(r, "authorization_pending");
    it_resp_free(r);
    clocks_advance(n, INTERVAL_MS);
    flow_ctx ctx = {.phone = &phone, .da = &da, .refresh_token = before.refresh_token};
    long long requests_before = it_db_count(n->a, "SELECT count(*) FROM login_requests");

    held h;
    held_start(&h, n->a, &da, WAIT_S);

    double t_down = it_now();
    it_pg_own_cluster("down");
    printf("two nodes: the database is down (%.0f ms to stop it)\n", (it_now() - t_down) * 1000.0);

    int created = 0;
    r = send_device_authorization(n->a);
    created += outage_answer(r, "device authorization on A");
    it_resp_free(r);
    r = send_device_authorization(n->b);
    created += outage_answer(r, "device authorization on B");
    it_resp_free(r);
    r = send_refresh(n->a, before.refresh_token);
    int refreshed = outage_answer(r, "refresh on A");
    it_resp_free(r);
    r = send_claim_b(n, &ctx);
    int claimed = outage_answer(r, "the phone's claim on B");
    it_resp_free(r);
    for (int i = 0; i < 2; i++) {
        r = readyz_until_not_ready(i == 0 ? n->a : n->b);
        if (outage_answer(r, i == 0 ? "/readyz on A" : "/readyz on B")) {
            print_error("/readyz still said ready 5 s into the outage\n");
            fail();
        }
        it_resp_free(r);
    }
    r = it_http(n->a, &(it_req){.path = "/healthz"});
    it_expect(r, 200, NULL); /* alive: the process itself is fine */
    it_resp_free(r);

    double t_up = it_now();
    it_pg_own_cluster("up");
    printf("two nodes: the database was down %.3f s, back after %.0f ms\n", it_now() - t_down,
           (it_now() - t_up) * 1000.0);

    /* Nothing half written: the refresh token the outage refused still works, once. */
    r = after_outage(send_refresh_b, n, &ctx, 15.0);
    if (refreshed) {
        it_expect_oauth_error(r, "invalid_grant");
    } else {
        it_expect_tokens(r, NULL);
    }
    it_resp_free(r);
    /* And exactly the device authorizations answered 200 made a login request. */
    assert_int_equal(it_db_count(n->a, "SELECT count(*) FROM login_requests"),
                     requests_before + created);

    /* The phone claims (again, if the outage refused it); the held request hears of it. */
    r = after_outage(send_claim_b, n, &ctx, 15.0);
    double t_claimed = it_now();
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "scanned");
    it_resp_free(r);
    held_join(&h, claimed ? t_up : t_claimed, "claim after the outage");
    if (h.r->status != 0 && h.r->status != 503 && !is_error(h.r, 400, "authorization_pending")) {
        print_error("the request held across the outage got %ld: %.400s\n", h.r->status, h.r->body);
        fail();
    }
    it_resp_free(h.r);

    /* The flow completes. */
    r = after_outage(send_approve_b, n, &ctx, 15.0);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    clocks_advance(n, 3 * INTERVAL_MS);
    r = after_outage(send_poll_a, n, &ctx, 15.0);
    it_tokens tok;
    it_expect_tokens(r, &tok);
    it_resp_free(r);
    assert_int_equal(it_introspect_active(n->b, tok.access_token), 1);
    assert_int_equal(count_devices_named(n->b, &phone, "Kitchen TV"), 1);
    assert_int_equal(count_devices_named(n->a, &phone, "Living Room TV"), 1);
}

int main(void)
{
    if (!it_pg_enabled()) {
        print_error("integration/test_two_nodes needs QRL_TEST_BACKEND=postgres: two servers "
                    "share one database only on PostgreSQL (tests/pg/README)\n");
        return 1;
    }
    /* Our lines in order with the servers' (stderr) lines in the log. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Sixteen approvals of one account at once: a race test, not a test of the rate limits. */
    setenv("QRLOGIN_RATE_LIMITS", "off", 1);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_two_nodes, teardown_two_nodes)
    const struct CMUnitTest tests[] = {
        T(test_flow_screen_on_a_phone_on_b),
        T(test_held_on_a_woken_by_approval_on_b),
        T(test_sixteen_approvals_over_two_nodes),
        T(test_sixteen_redemptions_over_two_nodes),
        T(test_claim_on_b_wakes_a),
        T(test_denial_on_b_wakes_a),
        T(test_phone_revocation_on_b_wakes_a),
        T(test_web_screen_revoked_on_b_hears_on_a),
        T(test_slow_down_across_nodes),
        T(test_one_notification_wakes_each_held),
        T(test_claims_at_once_on_b_wake_each_on_a),
        T(test_refused_poll_not_counted_across_nodes),
        cmocka_unit_test_setup_teardown(test_passkey_ceremonies_across_nodes,
                                        setup_two_nodes_public, teardown_two_nodes),
        cmocka_unit_test_setup_teardown(test_database_restart_mid_flow, setup_own_cluster,
                                        teardown_own_cluster),
    };
#undef T
    return cmocka_run_group_tests_name("integration/two_nodes", tests, NULL, NULL);
}
