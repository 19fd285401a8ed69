/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of server/waiters.c, the hub of held requests: wait and notify, the change
 * counter that refuses a hold after a change, deadlines served in order by the timer thread,
 * cancellation, the per-request cap, waking everything (and closing), and the hand-off of an
 * approval to a held request.
 *
 * The hub's only contact with libmicrohttpd is suspending and resuming a connection (and, for
 * a hand-off, asking whether its client left). This executable defines those three functions
 * itself, over a connection record of its own, so that the hub is tested alone and every
 * suspension and resumption is counted; no daemon is started, so libmicrohttpd's own calls to
 * them never happen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "http.h"
#include "qrlogin/limits.h"

struct MHD_Connection {
    _Atomic int suspended, resumed;
    _Atomic int resume_order; /* the resumption's rank among all of this test's, from 1 */
};

static _Atomic int resumptions;

void MHD_suspend_connection(struct MHD_Connection *c)
{
    c->suspended++;
}

void MHD_resume_connection(struct MHD_Connection *c)
{
    c->resumed++;
    c->resume_order = ++resumptions;
}

/* No socket behind the test's connections: qrl__peer_gone sees a client that is still there. */
const union MHD_ConnectionInfo *MHD_get_connection_info(struct MHD_Connection *c,
                                                        enum MHD_ConnectionInfoType t, ...)
{
    (void)c;
    (void)t;
    return NULL;
}

typedef struct held {
    struct MHD_Connection conn;
    qrl__req req;
} held;

static held *held_new(void)
{
    held *h = calloc(1, sizeof *h);

    assert_non_null(h);
    h->req.conn = &h->conn;
    return h;
}

/* Ends a request as the server does at completion: its waiter goes. */
static void held_free(struct qrl__hub *hub, held *h)
{
    qrl__hub_cancel(hub, &h->req);
    assert_null(h->req.waiter);
    free(h);
}

static bool resumed_within(held *h, int ms)
{
    for (int i = 0; i < ms && h->conn.resumed == 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    return h->conn.resumed > 0;
}

static int setup(void **state)
{
    resumptions = 0;
    *state = qrl__hub_new();
    return *state == NULL;
}

static int teardown(void **state)
{
    qrl__hub_free(*state);
    return 0;
}

static int64_t in_ms(int64_t ms)
{
    return qrl__mono_ms() + ms;
}

static void test_wait_notify(void **state)
{
    struct qrl__hub *hub = *state;
    held *a = held_new(), *b = held_new();

    assert_int_equal(qrl__hub_wait(hub, &a->req, 7, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    assert_int_equal(qrl__hub_wait(hub, &b->req, 8, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    assert_int_equal(a->conn.suspended, 1);
    assert_int_equal(qrl__hub_count(hub), 2);
    /* Another request's change wakes nobody here. */
    qrl__hub_notify(hub, 9);
    assert_int_equal(a->conn.resumed + b->conn.resumed, 0);
    qrl__hub_notify(hub, 7);
    assert_int_equal(a->conn.resumed, 1);
    assert_int_equal(b->conn.resumed, 0);
    assert_int_equal(qrl__hub_count(hub), 1);
    assert_false(qrl__hub_finish(hub, &a->req)); /* woken by a change, not by its deadline */
    held_free(hub, a);
    held_free(hub, b);
    assert_int_equal(qrl__hub_count(hub), 0);
}

static void test_change_before_hold(void **state)
{
    struct qrl__hub *hub = *state;
    held *a = held_new();
    uint64_t seq = qrl__hub_seq(hub);

    /* A change between reading the state and holding: the handler must read again. */
    qrl__hub_notify(hub, 7);
    assert_int_equal(qrl__hub_wait(hub, &a->req, 7, in_ms(60000), seq), QRL_ERR_CONFLICT);
    assert_int_equal(a->conn.suspended, 0);
    assert_int_equal(qrl__hub_count(hub), 0);
    held_free(hub, a);
}

static void test_timeout_order(void **state)
{
    struct qrl__hub *hub = *state;
    held *h[3] = {held_new(), held_new(), held_new()};
    const int64_t after[3] = {300, 100, 200};

    for (int i = 0; i < 3; i++)
        assert_int_equal(qrl__hub_wait(hub, &h[i]->req, 10 + i, in_ms(after[i]), qrl__hub_seq(hub)),
                         QRL_OK);
    for (int i = 0; i < 3; i++)
        assert_true(resumed_within(h[i], 5000));
    /* Served by deadline, not by arrival. */
    assert_int_equal(h[1]->conn.resume_order, 1);
    assert_int_equal(h[2]->conn.resume_order, 2);
    assert_int_equal(h[0]->conn.resume_order, 3);
    for (int i = 0; i < 3; i++) {
        assert_true(qrl__hub_finish(hub, &h[i]->req));
        held_free(hub, h[i]);
    }
}

static void test_reuse_waiter(void **state)
{
    struct qrl__hub *hub = *state;
    held *a = held_new();

    /* A request held, woken, and held again keeps its one waiter record. */
    assert_int_equal(qrl__hub_wait(hub, &a->req, 7, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    qrl__hub_notify(hub, 7);
    assert_int_equal(qrl__hub_wait(hub, &a->req, 7, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    assert_int_equal(a->conn.suspended, 2);
    qrl__hub_notify(hub, 7);
    assert_int_equal(a->conn.resumed, 2);
    held_free(hub, a);
}

static void test_cancel(void **state)
{
    struct qrl__hub *hub = *state;
    held *a = held_new(), *b = held_new();

    assert_int_equal(qrl__hub_wait(hub, &a->req, 7, in_ms(100), qrl__hub_seq(hub)), QRL_OK);
    assert_int_equal(qrl__hub_wait(hub, &b->req, 7, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    /* The connection closed while held: the waiter goes, and nothing resumes it later. */
    qrl__hub_cancel(hub, &a->req);
    assert_null(a->req.waiter);
    assert_int_equal(qrl__hub_count(hub), 1);
    nanosleep(&(struct timespec){.tv_nsec = 300000000}, NULL);
    assert_int_equal(a->conn.resumed, 0);
    qrl__hub_notify(hub, 7);
    assert_int_equal(a->conn.resumed, 0);
    assert_int_equal(b->conn.resumed, 1);
    qrl__hub_cancel(hub, &a->req); /* twice is harmless */
    held_free(hub, a);
    held_free(hub, b);
}

static void test_per_request_cap(void **state)
{
    struct qrl__hub *hub = *state;
    held *h[QRL_MAX_WAITERS_PER_REQUEST + 1];
    held *other = held_new();

    for (int i = 0; i < QRL_MAX_WAITERS_PER_REQUEST; i++) {
        h[i] = held_new();
        assert_int_equal(qrl__hub_wait(hub, &h[i]->req, 7, in_ms(60000), qrl__hub_seq(hub)),
                         QRL_OK);
    }
    h[QRL_MAX_WAITERS_PER_REQUEST] = held_new();
    assert_int_equal(qrl__hub_wait(hub, &h[QRL_MAX_WAITERS_PER_REQUEST]->req, 7, in_ms(60000),
                                   qrl__hub_seq(hub)),
                     QRL_ERR_BUSY);
    assert_int_equal(h[QRL_MAX_WAITERS_PER_REQUEST]->conn.suspended, 0);
    /* The cap is per request: another one is held. */
    assert_int_equal(qrl__hub_wait(hub, &other->req, 8, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    qrl__hub_notify(hub, 7);
    for (int i = 0; i < QRL_MAX_WAITERS_PER_REQUEST; i++)
        assert_int_equal(h[i]->conn.resumed, 1);
    for (int i = 0; i <= QRL_MAX_WAITERS_PER_REQUEST; i++)
        held_free(hub, h[i]);
    held_free(hub, other);
}

static void test_wake_all(void **state)
{
    struct qrl__hub *hub = *state;
    held *a = held_new(), *b = held_new();

    assert_int_equal(qrl__hub_wait(hub, &a->req, 7, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    assert_int_equal(qrl__hub_wait(hub, &b->req, 8, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    /* The clock moved: everyone re-reads, and may be held again. */
    qrl__hub_wake_all(hub, false);
    assert_int_equal(a->conn.resumed + b->conn.resumed, 2);
    assert_false(qrl__hub_finish(hub, &a->req));
    assert_int_equal(qrl__hub_wait(hub, &a->req, 7, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    /* Shutting down: everyone is answered now and no one is held any more. */
    qrl__hub_wake_all(hub, true);
    assert_int_equal(a->conn.resumed, 2);
    assert_true(qrl__hub_finish(hub, &a->req));
    assert_int_equal(qrl__hub_wait(hub, &b->req, 8, in_ms(60000), qrl__hub_seq(hub)), QRL_ERR_BUSY);
    assert_int_equal(qrl__hub_count(hub), 0);
    held_free(hub, a);
    held_free(hub, b);
}

static void test_take_give(void **state)
{
    struct qrl__hub *hub = *state;
    qrl_server srv = {.hub = hub};
    held *a = held_new();
    qrl_tokens t = {.access_token = "qrl_at_x", .expires_in_s = 60};
    char addr[QRL_MAX_ADDRESS + 1];

    strcpy(a->req.address, "10.0.0.7");
    assert_null(qrl__hub_take(&srv, 7, addr, sizeof addr));
    assert_int_equal(qrl__hub_wait(hub, &a->req, 7, in_ms(60000), qrl__hub_seq(hub)), QRL_OK);
    assert_null(qrl__hub_take(&srv, 8, addr, sizeof addr));
    assert_ptr_equal(qrl__hub_take(&srv, 7, addr, sizeof addr), &a->req);
    assert_string_equal(addr, "10.0.0.7");
    /* Taken: no longer held, so neither a change nor the timer touches it. */
    assert_int_equal(qrl__hub_count(hub), 0);
    qrl__hub_notify(hub, 7);
    assert_int_equal(a->conn.resumed, 0);
    qrl__hub_give(&srv, &a->req, QRL_OK, &t);
    assert_int_equal(a->conn.resumed, 1);
    assert_true(a->req.handed);
    assert_string_equal(a->req.handed_tokens.access_token, "qrl_at_x");
    held_free(hub, a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wait_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_before_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_waiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_request_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wake_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_give, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
