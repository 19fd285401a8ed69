/* SPDX-License-Identifier: MIT */
/*
 * Internals of the HTTP layer (qrl__ prefix): the per-request context, responses, the error
 * table, body parsing and the handlers of each endpoint group. libmicrohttpd types stay in
 * server/.
 */
#ifndef QRLOGIN_SERVER_HTTP_H
#define QRLOGIN_SERVER_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "../lib/alloc.h"
#include "geoip.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "qrlogin/core.h"
#include "qrlogin/server.h"

struct qrl__hub;
struct qrl__waiter;

struct qrl_server {
    qrl_server_config cfg;
    char public_url[256];
    /* public_url as the inside of a JSON string (escaped by jansson); empty if it did not fit,
     * and then answers that carry it are built with jansson. */
    char public_url_json[512];
    char introspection_secret[QRL_MAX_TOKEN + 1];
    qrl_core *core;
    struct MHD_Daemon *daemon;
    struct qrl__hub *hub;
    unsigned short port;
    /* Held requests not answered yet (suspended, or resumed and not yet completed): shutdown
     * waits for it to reach 0 so that every held screen gets an answer. */
    _Atomic long held_live;
    /* The answers to a plain poll of a pending or scanned request, one per state and interval,
     * made once and queued for every such poll (qrl__respond_shared): the most frequent answer
     * costs no JSON, header or body allocation. Each is made under shared_mu, then published
     * and read without it. */
    pthread_mutex_t shared_mu;
    _Atomic(struct MHD_Response *) pending_answer[2][QRL_MAX_POLL_INTERVAL_S + 1];
    /* Each answer's body length, for the access log: written before the answer is published. */
    size_t pending_len[2][QRL_MAX_POLL_INTERVAL_S + 1];
    /* Operating (log.c, metrics.c, netaddr.c, http_ops.c). */
    qrl__log log;
    qrl__metrics metrics;
    qrl__cidrs trusted;       /* proxies whose client-address header is believed */
    qrl__cidrs metrics_allow; /* clients that may read /metrics */
    qrl__cidrs deny;          /* networks whose login requests are never approved */
    char client_ip_header[65];
    struct qrl__geoip *geoip; /* the country database (geoip.h), or NULL without --geoip */
    /* /readyz: the last answer and when it was found (monotonic ms), so that probes of the
     * database run at most once a second however often a load balancer asks. */
    pthread_mutex_t ready_mu;
    _Atomic int64_t ready_at_ms;
    _Atomic int ready_rc;  /* qrl_err */
    _Atomic bool stopping; /* qrl_server_stop() has begun: /readyz answers 503 */
};

/* Form parameters (application/x-www-form-urlencoded), decoded. */
#define QRL__MAX_PARAMS 16
typedef struct qrl__form {
    size_t n;
    char *key[QRL__MAX_PARAMS];
    char *val[QRL__MAX_PARAMS];
    bool duplicate; /* a key appeared twice (RFC 6749 section 3.1: invalid_request) */
    char *buf;      /* owns the decoded strings */
} qrl__form;

/* One HTTP request. Lives from the first call of the access handler to MHD's completion
 * callback; owned by the server. */
typedef struct qrl__req {
    qrl_server *srv;
    struct MHD_Connection *conn;
    const char *method; /* borrowed from MHD, valid for the request */
    const char *url;
    char *body;
    size_t body_len;
    bool too_large;
    int status;
    /* The client's address: the TCP peer, or what a trusted proxy says (netaddr.h). */
    char address[QRL_MAX_ADDRESS + 1];
    qrl__ip ip;          /* the same, for matching */
    char peer[48];       /* the TCP peer when it differs from address (a proxy), else "" */
    int route;           /* enum qrl__route: the route label (never the raw path) */
    char request_id[17]; /* 16 hex digits, sent back as X-Request-Id */
    int64_t start_us;    /* monotonic clock when the request arrived */
    size_t bytes;        /* body bytes of the answer */
    int64_t lr_id;       /* the login request this device-code grant is about, once known */
    /* Held token request (Prefer: wait). */
    struct qrl__waiter *waiter;
    bool held;
    int wait_s;
    int64_t deadline_mono_ms;
    char client_id[QRL_MAX_CLIENT_ID + 1];
    char device_code[QRL_SECRET_BUF]; /* zeroed when the request ends */
    /* The DPoP key (RFC 9449) the token request proved when it arrived (dpop.h): its
     * redemption binds the screen's tokens to it, also after a hold or in an approval's
     * handoff, when the proof itself is long checked. */
    bool dpop;
    unsigned char dpop_key[QRL_PUBKEY_BYTES];
    bool read_scope; /* its reads share one snapshot until its first write (qrl__read_scope) */
    /* Handed to an approval (qrl_handoff): its answer, set before the connection resumes. */
    bool handed;
    qrl_err handed_rc;
    qrl_tokens handed_tokens; /* zeroed after answering */
    /* A web page's request (http_web.c): a device-code wait answers with cookies and a state
     * instead of the OAuth body; `resume_fn`, when set, finishes a held request instead of
     * qrl__h_token_resume (a signed-in screen watching for its revocation). */
    bool web;
    bool client_left; /* a held request whose client left: closed without an answer */
    enum MHD_Result (*resume_fn)(struct qrl__req *r);
    /* A held request for notices (http_notice.c): it waits for one with a higher id. */
    int64_t notice_after;
} qrl__req;

/* --- http_util.c --- */
/* The endpoint classes of the error table: each answers a core error in its own vocabulary. */
enum qrl__errctx {
    QRL__CTX_OAUTH, /* /oauth/...: RFC 6749 section 5.2 and RFC 8628 section 3.5 codes */
    QRL__CTX_API,   /* /v1/...: the phone API's codes (docs/api.md) */
    QRL__CTX_PAGE,  /* /web/...: the phone API's codes, with sentences written for a person */
    QRL__CTX__COUNT
};
/* One error answer: HTTP status, the body's "error" code and its "error_description". */
typedef struct qrl__errans {
    unsigned status;
    const char *code;
    const char *desc;
} qrl__errans;
/* An endpoint's own answer to one error where its class's cell does not fit (a refresh token's
 * EXPIRED is invalid_grant, not the device code's expired_token): the fields it sets (status
 * not 0, code or desc not NULL) replace the cell's. A list of them ends with QRL__SAY_END. */
typedef struct qrl__errsay {
    qrl_err err;
    qrl__errans ans;
} qrl__errsay;
#define QRL__SAY_END                                                                               \
    {                                                                                              \
        QRL_OK,                                                                                    \
        {                                                                                          \
            0, NULL, NULL                                                                          \
        }                                                                                          \
    }
/* The answer to e in class ctx: the table's cell, with the first row of `say` (NULL for none)
 * for e laid over it. A code outside the enum answers as QRL_ERR_INTERNAL. */
qrl__errans qrl__err_answer(qrl_err e, enum qrl__errctx ctx, const qrl__errsay *say);
/* Answers with a JSON body (reference stolen) and the common security headers; `extra` is
 * NULL or a NULL-terminated list of header name/value pairs. The body is wiped when freed. */
enum MHD_Result qrl__respond_json(qrl__req *r, unsigned status, json_t *body);
/* The same for a body that is already JSON text (copied): for the most frequent answers,
 * formatted without building a jansson tree, which took a tenth of a device authorization's
 * CPU. Every string such an answer holds is either escaped by jansson beforehand or passes
 * qrl__json_plain(); otherwise the handler builds it with jansson. */
enum MHD_Result qrl__respond_text(qrl__req *r, unsigned status, const char *json, size_t len,
                                  const char *const *extra);
/* True when s can stand inside a JSON string as it is: printable ASCII without '"' or '\\'. */
bool qrl__json_plain(const char *s);
/* A response made once with qrl__response_json() and kept: queued without being destroyed.
 * It carries no X-Request-Id (it is shared by many requests); `len` is its body's length. */
enum MHD_Result qrl__respond_shared(qrl__req *r, unsigned status, struct MHD_Response *resp,
                                    size_t len);
/* A JSON response with the headers every answer carries, for qrl__respond_shared; takes body.
 * The body's length goes to *len. */
struct MHD_Response *qrl__response_json(json_t *body, size_t *len);
/* Adds X-Request-Id to a response of r that is not shared (queue() does it for the others). */
void qrl__add_request_id(qrl__req *r, struct MHD_Response *resp);
enum MHD_Result qrl__respond_json_hdr(qrl__req *r, unsigned status, json_t *body,
                                      const char *const *extra);
/* An error answer that is not a core error (a malformed request, a failed CSRF check): the
 * handler names status, code and description itself. */
enum MHD_Result qrl__respond_error(qrl__req *r, unsigned status, const char *code,
                                   const char *desc);
/* Answers a core error through the one error table (qrl__err_answer), with the headers its
 * status needs (WWW-Authenticate on 401 outside the pages, Retry-After on 429 and 503). */
enum MHD_Result qrl__respond_err(qrl__req *r, qrl_err e, enum qrl__errctx ctx);
/* The same with an endpoint's own rows `say` (NULL for none), extra body members `more` (a JSON
 * object merged into the body, reference stolen, NULL for none) and extra headers `hdr` (NULL or
 * a NULL-terminated list of name/value pairs, at most 6 pairs). */
enum MHD_Result qrl__respond_err_as(qrl__req *r, qrl_err e, enum qrl__errctx ctx,
                                    const qrl__errsay *say, json_t *more, const char *const *hdr);
enum MHD_Result qrl__respond_empty(qrl__req *r, unsigned status);
/* Parses the body as a form. QRL_ERR_INVALID on bad encoding. Free with qrl__form_clear. */
qrl_err qrl__form_parse(const char *body, size_t len, qrl__form *f);
void qrl__form_clear(qrl__form *f);
/* Value of `key`, or NULL. */
const char *qrl__form_get(const qrl__form *f, const char *key);
/* Parses the body as a JSON object. NULL on failure (caller answers 400). */
json_t *qrl__json_body(qrl__req *r);
/* The body of a JSON endpoint: one object (an empty body is {}), sent as application/json.
 * Answers 415 or 400 itself and returns NULL on failure; free with json_decref(). */
json_t *qrl__read_json(qrl__req *r, enum MHD_Result *ret);
/* A string member of o, or NULL when absent or null. Sets *bad when it is present but not a
 * string, or holds a NUL (the C string would differ from what the client sent). */
const char *qrl__jstr(json_t *o, const char *key, bool *bad);
/* RFC 7240 Prefer: wait=N, possibly among other preferences: N clamped to QRL_MAX_WAIT_S, or
 * 0 when absent or malformed. */
int qrl__prefer_wait(qrl__req *r);
/* Content-Type check ignoring parameters and case. */
bool qrl__content_type_is(qrl__req *r, const char *type);
int64_t qrl__mono_ms(void);
/* Copies a log line into out (always terminated, truncated to outlen) so that no secret can be
 * read from it: every qrl_xx_ secret becomes "qrl_xx_[redacted]", and every path ("/a/b/c")
 * keeps only its first segment ("/a/[redacted]"): paths carry scan secrets and user codes. */
void qrl__log_redact(const char *in, char *out, size_t outlen);
/* Opens a read scope for the rest of this request (qrl_core_read_begin): its reads up to its
 * first write share one snapshot. For handlers that read several times (an authenticated phone
 * call); the server closes it when the handler returns. At most one per request. */
void qrl__read_scope(qrl__req *r);

/* --- log.c, metrics.c: what happened, for operators --- */
/* The ids an audit event names, when known (0 / NULL: left out). Never a secret. */
typedef struct qrl__ids {
    int64_t lr_id;
    int64_t account_id;
    int64_t device_id;
    const char *client_id;
    const char *error;  /* the answer's error code, for a failure */
    const char *reason; /* why a request was blocked (qrl_block_reason_name), or NULL */
} qrl__ids;
/* Writes an audit event of request r (type "audit", level info): its request id, client
 * address and route, and `ids` (may be NULL). Called by the handlers after the core call, from
 * its outcome. */
void qrl__audit(qrl__req *r, const char *event, const qrl__ids *ids);
/* A login request's outcome: counts it (qrlogin_login_requests_total) and writes its audit
 * event (login_requested, login_claimed, ...). */
void qrl__login_event(qrl__req *r, enum qrl__outcome o, const qrl__ids *ids);
/* The access line of a finished request (--access-log). */
void qrl__access_line(qrl__req *r, int64_t duration_us);
/* r is held from now on (suspended until a change or its deadline): sets r->held, and the
 * first time for r counts it for shutdown (held_live) and for the metrics. */
void qrl__hold_begin(qrl__req *r);
/* The monotonic clock in microseconds. */
int64_t qrl__mono_us(void);

/* --- http_ops.c: health and metrics --- */
enum MHD_Result qrl__h_healthz(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_readyz(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_metrics(qrl__req *r, const char *arg);

/* --- handlers --- */
enum MHD_Result qrl__h_metadata(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_device_authorization(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_token(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_token_resume(qrl__req *r);
/* A plain device-code poll answered from memory (no store access, so nothing to wait for), on
 * the worker's own stack: true and *ret set when it answered; false to run qrl__h_token. */
bool qrl__h_token_quick(qrl__req *r, enum MHD_Result *ret);
enum MHD_Result qrl__h_introspect(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_revoke(qrl__req *r, const char *arg);
/* The authentication of the phone API (http_phone.c), for the /v1/ handlers of other files
 * (http_notice.c): a phone session as a bearer token; with `any`, also a screen's access token,
 * as a bearer token or, bound to its key, with DPoP (dpop.h; safe to call again when a held
 * request resumes). Answers 401 itself and returns false on failure. */
bool qrl__api_auth(qrl__req *r, qrl_auth *auth, bool any, enum MHD_Result *ret);
enum MHD_Result qrl__h_sessions(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_lr_view(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_lr_approve(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_lr_deny(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_devices(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_device_delete(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_me(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_device_key(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_screen_qr(qrl__req *r, const char *arg);
/* Runs a device-code grant for r->client_id and r->device_code (with r->wait_s), holding the
 * request while the core says it may (http_oauth.c). */
enum MHD_Result qrl__device_code_run(qrl__req *r, unsigned flags);

/* --- http_web.c: the pages and their JSON API under /web/ --- */
enum MHD_Result qrl__h_page(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_static(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_screen_start(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_screen_qr(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_screen_wait(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_screen_me(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_screen_watch(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_screen_signout(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_session_new(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_session_get(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_signout(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_lr_view(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_lr_approve(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_lr_deny(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_webauthn_options(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_passkeys_get(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_passkeys_add(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_passkey_delete(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_devices(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_web_device_delete(qrl__req *r, const char *arg);
/* The answer to a web screen's device-code wait (r->web): the state, and on approval the
 * screen's session cookies. */
enum MHD_Result qrl__web_screen_answer(qrl__req *r, qrl_err rc, qrl_poll_result *res);
/* Wakes a signed-in web screen watching for the revocation of `device_id`. */
void qrl__web_device_revoked(qrl_server *srv, int64_t device_id);
/* The answer to a decision or view the core refused as a phishing kit's (QRL_ERR_SUSPICIOUS,
 * its reason from qrl_last_block_reason()): the audit event request_blocked naming the request,
 * the phone and the reason, then 403 suspicious_request with a sentence for the person holding
 * the phone and "reason" in the body (http_phone.c). */
enum MHD_Result qrl__respond_blocked(qrl__req *r, enum qrl__errctx ctx, const qrl_auth *auth,
                                     int64_t lr_id);
/* The phone's checks of a /web/ request, for the handlers of other files (http_notice.c): with
 * `csrf`, first the check every state-changing /web/ request passes, then the session cookie.
 * Answers itself (403 csrf_failed, 401 with the cookie cleared, ...) and returns false on
 * failure. The session's read opens the request's read scope (qrl__read_scope). */
bool qrl__web_phone_auth(qrl__req *r, qrl_auth *auth, bool csrf, enum MHD_Result *ret);

/* --- http_notice.c: notices of new devices, for phones and screens (/v1/) and the phone's
 * pages (/web/): the same handlers, told apart by the path's first segment --- */
enum MHD_Result qrl__h_notices(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_notice_ack(qrl__req *r, const char *arg);
enum MHD_Result qrl__h_notice_revoke(qrl__req *r, const char *arg);
#ifdef QRL_TEST_HOOKS
enum MHD_Result qrl__h_test_clock(qrl__req *r, const char *arg);
#endif

/* --- waiters.c: held requests --- */
struct qrl__hub *qrl__hub_new(void);
void qrl__hub_free(struct qrl__hub *hub);
/* Snapshot of the change counter, taken before reading a request's state. */
uint64_t qrl__hub_seq(struct qrl__hub *hub);
/* Suspends r's connection until lr_id changes or the deadline passes. Returns QRL_OK when
 * suspended, QRL_ERR_CONFLICT when a change happened since `seq` (re-read and retry),
 * QRL_ERR_BUSY when too many waiters or shutting down (answer now). */
qrl_err qrl__hub_wait(struct qrl__hub *hub, qrl__req *r, int64_t lr_id, int64_t deadline_mono_ms,
                      uint64_t seq);
/* True when the hold ended by its deadline (not by a change). Clears the waiter state. */
bool qrl__hub_finish(struct qrl__hub *hub, qrl__req *r);
/* Removes r's waiter if still registered (connection closed). */
void qrl__hub_cancel(struct qrl__hub *hub, qrl__req *r);
void qrl__hub_notify(struct qrl__hub *hub, int64_t lr_id);
/* Wakes every held request (clock moved, or shutdown when `closing`). */
void qrl__hub_wake_all(struct qrl__hub *hub, bool closing);
size_t qrl__hub_count(struct qrl__hub *hub);
/* qrl_handoff for the core: take a live held request of lr_id, give it its answer. */
void *qrl__hub_take(void *srv, int64_t lr_id, char *address, size_t len);
void qrl__hub_give(void *srv, void *held, qrl_err rc, const qrl_tokens *t);
/* True when the client of a (held) request has closed its connection. */
bool qrl__peer_gone(qrl__req *r);
/* Ends a held request whose client has left (a screen that gave up waiting): nothing is
 * answered, the access log says "client-gone", and libmicrohttpd's "internal error" message
 * for the closed connection is not printed: a client that leaves is normal. Returns MHD_NO,
 * for the handler to return. */
enum MHD_Result qrl__client_gone(qrl__req *r);

#endif
