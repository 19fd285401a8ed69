/* SPDX-License-Identifier: MIT */
/*
 * The server's metrics, served at GET /metrics in the Prometheus text format (version 0.0.4).
 *
 * Counters live in stripes: each worker thread adds to the stripe it was given on its first
 * request, with relaxed atomic adds on cache lines that few other threads touch, and a scrape
 * sums the stripes. A request costs three atomic adds (count, latency bucket, latency sum) and
 * two reads of the monotonic clock; a scrape reads every counter once.
 *
 * Route labels are a fixed set (QRL__ROUTES below): every route of server.c has one, and the
 * requests that never reach a route have their own, so no raw path, which may hold a scan
 * secret or a user code, ever becomes a label, and the number of series is bounded.
 *
 * Adding a route: a line in QRL__ROUTES, its enum name in server.c's row. Adding a login
 * outcome: a line in QRL__OUTCOMES and a call of qrl__login_event() where it happens.
 *
 * Lifecycle: qrl__metrics_init() (qrl_server_new) -> the qrl__metric_* adders from any thread
 * -> qrl__metrics_render() for a scrape -> qrl__metrics_free() (qrl_server_stop).
 */
#ifndef QRL_SERVER_METRICS_H
#define QRL_SERVER_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qrlogin/store.h"

/* Route labels: enum name, label. The first five are requests that no route answered. */
#define QRL__ROUTES(X)                                                                             \
    X(NONE, "none")               /* ended before it was routed (a client that left early) */      \
    X(UNKNOWN, "unknown")         /* no such path: 404 */                                          \
    X(BAD_PATH, "bad-path")       /* an encoded NUL in the path: 400 */                            \
    X(BAD_FRAMING, "bad-framing") /* Content-Length and Transfer-Encoding: 400 */                  \
    X(TOO_LARGE, "too-large")     /* body over the limit: 413 */                                   \
    X(METADATA, "metadata")                                                                        \
    X(DEVICE_AUTHORIZATION, "device_authorization")                                                \
    X(TOKEN, "token")                                                                              \
    X(INTROSPECT, "introspect")                                                                    \
    X(REVOKE, "revoke")                                                                            \
    X(SESSIONS, "sessions")                                                                        \
    X(LOGIN_REQUEST, "login-request")                                                              \
    X(APPROVE, "approve")                                                                          \
    X(DENY, "deny")                                                                                \
    X(DEVICES, "devices")                                                                          \
    X(DEVICE, "device")                                                                            \
    X(ME, "me")                                                                                    \
    X(DEVICE_KEY, "device-key")                                                                    \
    X(SCREEN_QR, "screen-qr")                                                                      \
    X(PAGE_SCREEN, "page-screen")                                                                  \
    X(PAGE_HOME, "page-home")                                                                      \
    X(PAGE_SCAN, "page-scan")                                                                      \
    X(PAGE_DEVICE, "page-device")                                                                  \
    X(PAGE_DEVICES, "page-devices")                                                                \
    X(PAGE_ACCOUNT, "page-account")                                                                \
    X(STATIC, "static")                                                                            \
    X(WEB_SCREEN_START, "web-screen-start")                                                        \
    X(WEB_SCREEN_QR, "web-screen-qr")                                                              \
    X(WEB_SCREEN_WAIT, "web-screen-wait")                                                          \
    X(WEB_SCREEN_ME, "web-screen-me")                                                              \
    X(WEB_SCREEN_WATCH, "web-screen-watch")                                                        \
    X(WEB_SCREEN_SIGNOUT, "web-screen-signout")                                                    \
    X(WEB_SESSION, "web-session")                                                                  \
    X(WEB_SIGNOUT, "web-signout")                                                                  \
    X(WEB_LR_VIEW, "web-lr-view")                                                                  \
    X(WEB_LR_APPROVE, "web-lr-approve")                                                            \
    X(WEB_LR_DENY, "web-lr-deny")                                                                  \
    X(WEB_WEBAUTHN_OPTIONS, "web-webauthn-options")                                                \
    X(WEB_PASSKEYS, "web-passkeys")                                                                \
    X(WEB_PASSKEY, "web-passkey")                                                                  \
    X(WEB_DEVICES, "web-devices")                                                                  \
    X(WEB_DEVICE, "web-device")                                                                    \
    X(NOTIFICATIONS, "notifications")                                                              \
    X(NOTIFICATION_ACK, "notification-ack")                                                        \
    X(NOTIFICATION_REVOKE, "notification-revoke")                                                  \
    X(WEB_NOTIFICATIONS, "web-notifications")                                                      \
    X(WEB_NOTIFICATION_ACK, "web-notification-ack")                                                \
    X(WEB_NOTIFICATION_REVOKE, "web-notification-revoke")                                          \
    X(HEALTHZ, "healthz")                                                                          \
    X(READYZ, "readyz")                                                                            \
    X(METRICS, "metrics")                                                                          \
    X(TEST_CLOCK, "test-clock") /* builds with QRL_TEST_HOOKS only */

#define QRL__ROUTE_ENUM(id, label) QRL__R_##id,
enum qrl__route { QRL__ROUTES(QRL__ROUTE_ENUM) QRL__R__COUNT };
#undef QRL__ROUTE_ENUM

/* The label of a route ("token"); "none" for anything out of range. */
const char *qrl__route_name(int route);

/* What happened to login requests, counted once per answer that tells it. */
#define QRL__OUTCOMES(X)                                                                           \
    X(CREATED, "created", "login_requested")  /* device authorization answered */                  \
    X(CLAIMED, "claimed", "login_claimed")    /* a phone read (claimed) the request */             \
    X(APPROVED, "approved", "login_approved") /* a phone approved it */                            \
    X(DENIED, "denied", "login_denied")       /* a phone declined it */                            \
    X(EXPIRED, "expired", "login_expired")    /* a screen was told it expired */                   \
    X(REDEEMED, "redeemed", "login_redeemed") /* a screen got its tokens */

#define QRL__OUTCOME_ENUM(id, label, event) QRL__OUT_##id,
enum qrl__outcome { QRL__OUTCOMES(QRL__OUTCOME_ENUM) QRL__OUT__COUNT };
#undef QRL__OUTCOME_ENUM

/* The statuses counted by code; any other is counted as "other", and 0 stands for a request
 * that got no answer (its client left while it was held). */
#define QRL__STATUSES(X)                                                                           \
    X(0)                                                                                           \
    X(200) X(201) X(204) X(400) X(401) X(403) X(404) X(405) X(409) X(410) X(413) X(415) X(429)     \
        X(500) X(503)
#define QRL__STATUS_ENUM(code) QRL__S_##code,
enum qrl__status_slot { QRL__STATUSES(QRL__STATUS_ENUM) QRL__S_OTHER, QRL__S__COUNT };
#undef QRL__STATUS_ENUM

/* Upper bounds of the request latency buckets, in microseconds: from a poll answered from
 * memory (tens of microseconds) through a durable commit (milliseconds) and an Argon2id check
 * (tens of milliseconds) to a held request (up to QRL_MAX_WAIT_S, 60 s). */
#define QRL__LATENCY_BOUNDS_US                                                                     \
    {                                                                                              \
        100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,     \
            2500000, 5000000, 10000000, 30000000, 60000000                                         \
    }
#define QRL__LATENCY_BUCKETS 18

/* One stripe: every counter once. Stripes are cache-line aligned so that two never share a
 * line. */
struct qrl__mstripe {
    _Atomic uint64_t requests[QRL__R__COUNT][QRL__S__COUNT];
    /* Per route: requests that took at most each bound and more than the one before;
     * [QRL__LATENCY_BUCKETS] counts the slower ones. */
    _Atomic uint64_t latency[QRL__R__COUNT][QRL__LATENCY_BUCKETS + 1];
    _Atomic uint64_t latency_sum_us[QRL__R__COUNT];
    _Atomic uint64_t rate_limited[QRL__R__COUNT];
    _Atomic uint64_t outcomes[QRL__OUT__COUNT];
    _Atomic uint64_t holds;
} __attribute__((aligned(64)));

/* Stripes: enough that the worker threads (64 by default) rarely share one. */
#define QRL__MSTRIPES 16

typedef struct qrl__metrics {
    struct qrl__mstripe *stripe; /* QRL__MSTRIPES of them */
    int64_t start_ms;            /* wall clock when the server was made */
} qrl__metrics;

/* What a scrape adds that the server holds elsewhere. */
typedef struct qrl__metrics_extra {
    long held_now;                 /* held requests not answered yet */
    const qrl_store_health *store; /* the store's statistics, or NULL */
} qrl__metrics_extra;

qrl_err qrl__metrics_init(qrl__metrics *m);
void qrl__metrics_free(qrl__metrics *m);

/* One request ended: its route, status (0: no answer) and how long it took. */
void qrl__metric_request(qrl__metrics *m, int route, int status, int64_t duration_us);
void qrl__metric_rate_limited(qrl__metrics *m, int route);
void qrl__metric_outcome(qrl__metrics *m, enum qrl__outcome o);
void qrl__metric_hold(qrl__metrics *m);

/* The exposition text, in a malloc()ed buffer the caller frees; its length in *len. NULL when
 * memory ran out. */
char *qrl__metrics_render(const qrl__metrics *m, const qrl__metrics_extra *x, size_t *len);

#endif
