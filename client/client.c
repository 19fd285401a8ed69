/* SPDX-License-Identifier: MIT */
/*
 * The client SDK's handle and the screen side of the login: RFC 8628 device authorization,
 * the device-code grant with our push extension (Prefer: wait, RFC 7240), renewal of expired
 * requests, refresh-token rotation (RFC 6749 section 6) and revocation (RFC 7009).
 *
 * The login is a small state machine (qrlc__phase) advanced by step_locked(), one network
 * exchange per step; qrl_client_login() is a loop of steps that feeds events to the app's
 * callback, qrl_client_step() hands them to the app one by one.
 *
 *   IDLE --step--> STARTING --device authorization--> WAITING --token: pending--> WAITING
 *                                                        |  \--token: 200--> IDLE (APPROVED)
 *                       RENEWING <--token: expired_token-/   \--denied / error--> IDLE
 *                          \--device authorization--> WAITING (RENEWED)
 *
 * Waiting. The SDK asks for push first: the token request carries `Prefer: wait=N` and the
 * server holds it until the login request changes state. A server that does not hold requests
 * answers at once without `Preference-Applied`; from then on the SDK polls every `interval`
 * seconds (RFC 8628 section 3.4), adding 5 s on slow_down (section 3.5). A held request may
 * be answered early without news (the server caps waiters per request); the SDK then keeps to
 * the interval so that it never hammers a server.
 *
 * Failures. Network errors and HTTP 429/5xx are transient: the SDK retries with exponential
 * back-off and jitter up to max_retries consecutive times, then gives up with QRL_ERR_BUSY (or
 * QRL_ERR_RATE_LIMITED). A refresh is retried only when the request cannot have reached the
 * server, because the server treats a second use of a rotated refresh token as theft.
 *
 * What to update when adding an event: client.h (enum and docs), fill_event() callers here,
 * docs/sdk.md, and the event checks in tests/sdk/test_client.c.
 */
#include "internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* --- memory --------------------------------------------------------------------------------- */

static void *std_malloc(void *ctx, size_t n)
{
    return malloc(n);
}

static void std_free(void *ctx, void *p)
{
    free(p);
}

void *qrlc__alloc(qrl_client *c, size_t n)
{
    return c->al.malloc_fn(c->al.ctx, n == 0 ? 1 : n);
}

void qrlc__free(qrl_client *c, void *p)
{
    if (p != NULL)
        c->al.free_fn(c->al.ctx, p);
}

char *qrlc__strdup(qrl_client *c, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = qrlc__alloc(c, n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* Not inlined: GCC 12 would otherwise see explicit_bzero over a whole struct through a pointer
 * to its first member and warn of an overflow that is not there (-Wstringop-overflow). */
__attribute__((noinline)) void qrlc__wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        explicit_bzero(p, n);
}

/* Copies a string member into a fixed buffer; 0 when it is missing, empty or too long. */
static int copy_str(char *dst, size_t cap, json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n >= cap)
        return 0;
    memcpy(dst, s, n + 1);
    return 1;
}

/* An integer member within [lo, hi], or `dflt` when absent; -1 when present but invalid. */
static long long get_int(json_t *obj, const char *key, long long lo, long long hi, long long dflt)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL)
        return dflt;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return -1;
    return (long long)json_integer_value(v);
}

/* --- options -------------------------------------------------------------------------------- */

static int client_id_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > QRL_MAX_CLIENT_ID)
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == ':' || *s == '-'))
            return 0;
    return 1;
}

/* No control characters: these strings end up in form bodies and on a phone's screen. */
static int printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

static qrl_err bad(char *buf, size_t len, qrl_err rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static qrl_err bad(char *buf, size_t len, qrl_err rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    qrlc__vfail(buf, len, rc, fmt, ap);
    va_end(ap);
    return rc;
}

static qrl_err check_strings(const qrl_client_options *o, char *buf, size_t len)
{
    static const char *const kinds[] = {"tv", "browser", "desktop", "cli", "other"};

    if (o->server_url == NULL || o->server_url[0] == '\0')
        return bad(buf, len, QRL_ERR_INVALID, "server_url is required");
    if (strlen(o->server_url) > QRLC__MAX_URL - 64)
        return bad(buf, len, QRL_ERR_TOO_LARGE, "server_url is longer than %d bytes",
                   QRLC__MAX_URL - 64);
    qrl_err rc = qrlc__check_url("server_url", o->server_url, o->allow_insecure_http, buf, len);
    if (rc != QRL_OK)
        return rc;
    if (o->client_id == NULL || !client_id_ok(o->client_id))
        return bad(buf, len, QRL_ERR_INVALID,
                   "client_id is required: 1 to %d of A-Z a-z 0-9 . _ : -", QRL_MAX_CLIENT_ID);
    if (o->scope != NULL && strlen(o->scope) > QRL_CLIENT_SCOPE_MAX)
        return bad(buf, len, QRL_ERR_TOO_LARGE, "scope is longer than %d bytes",
                   QRL_CLIENT_SCOPE_MAX);
    if (o->scope != NULL &&
        (!printable(o->scope) || strchr(o->scope, '"') != NULL || strchr(o->scope, '\\') != NULL))
        return bad(buf, len, QRL_ERR_INVALID, "scope has characters RFC 6749 section 3.3 forbids");
    if (o->device_name != NULL && strlen(o->device_name) > QRL_MAX_DEVICE_NAME)
        return bad(buf, len, QRL_ERR_TOO_LARGE, "device_name is longer than %d bytes",
                   QRL_MAX_DEVICE_NAME);
    if (o->device_name != NULL && !printable(o->device_name))
        return bad(buf, len, QRL_ERR_INVALID, "device_name has control characters");
    if (o->device_kind != NULL) {
        size_t i = 0;
        while (i < sizeof kinds / sizeof kinds[0] && strcmp(o->device_kind, kinds[i]) != 0)
            i++;
        if (i == sizeof kinds / sizeof kinds[0])
            return bad(buf, len, QRL_ERR_INVALID,
                       "device_kind must be tv, browser, desktop, cli or other");
    }
    if (o->ca_file != NULL && (o->ca_file[0] == '\0' || strlen(o->ca_file) > QRLC__MAX_PATH))
        return bad(buf, len, QRL_ERR_INVALID, "ca_file is empty or longer than %d bytes",
                   QRLC__MAX_PATH);
    return QRL_OK;
}

static int in_range(long v, long lo, long hi)
{
    return v >= lo && v <= hi;
}

QRL_CLIENT_API qrl_err qrl_client_check_options(const qrl_client_options *o, char *buf, size_t len)
{
    if (buf != NULL && len > 0)
        buf[0] = '\0';
    if (o == NULL)
        return bad(buf, len, QRL_ERR_INVALID, "options are required");
    if (qrlc__curl_global() != QRL_OK)
        return bad(buf, len, QRL_ERR_INTERNAL, "curl_global_init failed");
    qrl_err rc = check_strings(o, buf, len);
    if (rc != QRL_OK)
        return rc;
    if (!in_range(o->wait_s, 0, QRL_MAX_WAIT_S))
        return bad(buf, len, QRL_ERR_INVALID, "wait_s must be 0 (default) or 1-%d", QRL_MAX_WAIT_S);
    if (o->max_renewals != QRL_CLIENT_NO_RENEWAL &&
        !in_range(o->max_renewals, 0, QRL_CLIENT_MAX_RENEWALS))
        return bad(buf, len, QRL_ERR_INVALID,
                   "max_renewals must be QRL_CLIENT_NO_RENEWAL, 0 (default) or 1-%d",
                   QRL_CLIENT_MAX_RENEWALS);
    if (!in_range(o->max_retries, 0, QRL_CLIENT_MAX_RETRIES))
        return bad(buf, len, QRL_ERR_INVALID, "max_retries must be 0 (default) or 1-%d",
                   QRL_CLIENT_MAX_RETRIES);
    if (!in_range(o->retry_base_ms, 0, QRLC__MAX_TIMEOUT_MS) ||
        !in_range(o->retry_max_ms, 0, QRLC__MAX_TIMEOUT_MS) ||
        !in_range(o->connect_timeout_ms, 0, QRLC__MAX_TIMEOUT_MS) ||
        !in_range(o->timeout_ms, 0, QRLC__MAX_TIMEOUT_MS))
        return bad(buf, len, QRL_ERR_INVALID,
                   "retry_base_ms, retry_max_ms, connect_timeout_ms and timeout_ms must be "
                   "0 (default) to %ld",
                   QRLC__MAX_TIMEOUT_MS);
    const qrl_client_allocator *a = o->allocator;
    if (a != NULL && (a->malloc_fn == NULL || a->free_fn == NULL))
        return bad(buf, len, QRL_ERR_INVALID, "allocator needs both malloc_fn and free_fn");
    return QRL_OK;
}

/* --- handle lifecycle ------------------------------------------------------------------------ */

static qrl_err copy_opt(qrl_client *c, char **dst, const char *src)
{
    if (src == NULL)
        return QRL_OK;
    *dst = qrlc__strdup(c, src);
    return *dst != NULL ? QRL_OK : QRL_ERR_NOMEM;
}

static long dflt(long v, long d)
{
    return v != 0 ? v : d;
}

static qrl_err copy_options(qrl_client *c, const qrl_client_options *o)
{
    qrl_err rc = QRL_OK;

    c->on_event = o->on_event;
    c->sleep_fn = o->sleep;
    c->user = o->user;
    c->wait_s = (int)dflt(o->wait_s, QRL_CLIENT_DEFAULT_WAIT_S);
    c->disable_push = o->disable_push != 0;
    c->max_renewals = (int)dflt(o->max_renewals, QRL_CLIENT_DEFAULT_RENEWALS);
    c->max_retries = (int)dflt(o->max_retries, QRL_CLIENT_DEFAULT_RETRIES);
    c->retry_base_ms = dflt(o->retry_base_ms, QRL_CLIENT_DEFAULT_RETRY_BASE_MS);
    c->retry_max_ms = dflt(o->retry_max_ms, QRL_CLIENT_DEFAULT_RETRY_MAX_MS);
    if (c->retry_max_ms < c->retry_base_ms)
        c->retry_max_ms = c->retry_base_ms;
    c->connect_timeout_ms = dflt(o->connect_timeout_ms, QRL_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS);
    c->timeout_ms = dflt(o->timeout_ms, QRL_CLIENT_DEFAULT_TIMEOUT_MS);
    c->allow_insecure_http = o->allow_insecure_http != 0;

    if (rc == QRL_OK)
        rc = copy_opt(c, &c->server_url, o->server_url);
    if (rc == QRL_OK) {
        /* The issuer is compared without a trailing slash (RFC 8414 section 3.1 inserts the
         * well-known path between host and path, so "https://x/" and "https://x" agree). */
        size_t n = strlen(c->server_url);
        while (n > 0 && c->server_url[n - 1] == '/')
            c->server_url[--n] = '\0';
    }
    if (rc == QRL_OK)
        rc = copy_opt(c, &c->client_id, o->client_id);
    if (rc == QRL_OK)
        rc = copy_opt(c, &c->scope, o->scope != NULL && o->scope[0] != '\0' ? o->scope : NULL);
    if (rc == QRL_OK)
        rc = copy_opt(c, &c->device_name, o->device_name);
    if (rc == QRL_OK)
        rc = copy_opt(c, &c->device_kind, o->device_kind);
    if (rc == QRL_OK)
        rc = copy_opt(c, &c->ca_file, o->ca_file);
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_new(const qrl_client_options *opts, qrl_client **out)
{
    qrl_client_allocator al = {std_malloc, std_free, NULL};
    qrl_client *c;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    *out = NULL;
    rc = qrl_client_check_options(opts, NULL, 0);
    if (rc != QRL_OK)
        return rc;
    if (opts->allocator != NULL)
        al = *opts->allocator;
    c = al.malloc_fn(al.ctx, sizeof *c);
    if (c == NULL)
        return QRL_ERR_NOMEM;
    memset(c, 0, sizeof *c);
    c->al = al;
    atomic_init(&c->cancel, 0);
    atomic_flag_clear(&c->busy);
    c->rng = (uint64_t)(uintptr_t)c ^ (uint64_t)qrlc__mono_ms() * 0x9E3779B97F4A7C15ull;
    if (c->rng == 0)
        c->rng = 1;
    rc = copy_options(c, opts);
    if (rc == QRL_OK)
        rc = qrlc__dpop_init(c); /* the screen's key: every handle has one */
    if (rc == QRL_OK)
        rc = qrlc__transport_init(c);
    if (rc != QRL_OK) {
        qrl_client_free(c);
        return rc;
    }
    *out = c;
    return QRL_OK;
}

static void forget_request(qrl_client *c)
{
    qrlc__wipe(c->device_code, sizeof c->device_code);
    memset(c->user_code, 0, sizeof c->user_code);
    memset(c->qr_payload, 0, sizeof c->qr_payload);
    memset(c->verification_uri, 0, sizeof c->verification_uri);
    c->phase = QRLC__IDLE;
    c->expires_in = 0;
    c->interval_s = 0;
    c->scanned = 0;
    c->failures = 0;
    c->delay_ms = 0;
}

static void forget_tokens(qrl_client *c)
{
    qrlc__wipe(&c->tok, sizeof c->tok);
    c->have_tokens = 0;
    c->dpop_bound = 0;
}

QRL_CLIENT_API void qrl_client_free(qrl_client *c)
{
    if (c == NULL)
        return;
    qrlc__transport_free(c);
    forget_request(c);
    forget_tokens(c);
    qrlc__dpop_wipe(c);
    char **strs[] = {&c->server_url,  &c->client_id,   &c->scope,
                     &c->device_name, &c->device_kind, &c->ca_file,
                     &c->token_ep,    &c->devauth_ep,  &c->revoke_ep};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        qrlc__free(c, *strs[i]);
    qrl_client_allocator al = c->al;
    al.free_fn(al.ctx, c);
}

/* One blocking call per handle at a time (client.h). */
static qrl_err enter(qrl_client *c)
{
    if (atomic_flag_test_and_set(&c->busy))
        return QRL_ERR_CONFLICT; /* no detail: the other thread owns c->err */
    c->err[0] = '\0';
    return QRL_OK;
}

static qrl_err leave(qrl_client *c, qrl_err rc)
{
    /* A cancellation is used up by the call it stopped (client.h, qrl_client_cancel). */
    if (rc == QRL_CLIENT_ERR_CANCELLED) {
        atomic_store(&c->cancel, 0);
        if (c->err[0] == '\0')
            qrlc__fail(c, rc, "cancelled");
    }
    atomic_flag_clear(&c->busy);
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_reset(qrl_client *c)
{
    if (c == NULL)
        return QRL_ERR_INVALID;
    if (enter(c) != QRL_OK)
        return QRL_ERR_CONFLICT;
    forget_request(c);
    atomic_store(&c->cancel, 0);
    return leave(c, QRL_OK);
}

/* --- exchanges with retries ------------------------------------------------------------------ */

static void fill_event(qrl_client *c, qrl_client_event *ev, qrl_client_event_type type)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->qr_payload = c->qr_payload;
    ev->verification_uri = c->verification_uri;
    ev->user_code = c->user_code;
    ev->expires_in = c->expires_in;
    ev->interval = c->interval_s;
    ev->renewals = c->renewals;
    ev->push = c->push == QRLC__PUSH_YES;
    ev->error = QRL_OK;
}

static uint64_t next_rand(qrl_client *c)
{
    /* xorshift64: jitter only needs to keep many screens from retrying in step. */
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return c->rng = x;
}

/* Exponential back-off with "equal jitter": half the delay fixed, half random. */
static long backoff_ms(qrl_client *c)
{
    long d = c->retry_base_ms;

    for (int i = 1; i < c->failures && d < c->retry_max_ms; i++)
        d *= 2;
    if (d > c->retry_max_ms)
        d = c->retry_max_ms;
    return d / 2 + (long)(next_rand(c) % (uint64_t)(d / 2 + 1));
}

/* A failure that may pass: schedules a retry (QRL_OK, a RETRYING event in *ev, c->delay_ms) or,
 * past max_retries, gives up with `why` (the detail is already on the handle). */
static qrl_err transient(qrl_client *c, qrl_err why, long retry_after_s, qrl_client_event *ev)
{
    if (++c->failures > c->max_retries) {
        c->failures = 0;
        return why;
    }
    long d = backoff_ms(c);
    /* RFC 9110 section 10.2.3: the server said how long to wait; we may wait longer, never
     * less, but no longer than our overall bound. */
    if (retry_after_s >= 0 && retry_after_s * 1000 > d)
        d = retry_after_s > QRLC__MAX_TIMEOUT_MS / 1000 ? QRLC__MAX_TIMEOUT_MS
                                                        : retry_after_s * 1000;
    c->delay_ms = d;
    fill_event(c, ev, QRL_CLIENT_EV_RETRYING);
    ev->error = why;
    ev->retry_in_ms = d;
    return QRL_OK;
}

/* Whether an exchange failed in a way worth retrying, and with which code. */
static int is_transient(qrl_client *c, qrl_err rc, const qrlc__resp *r, const char *url,
                        qrl_err *why)
{
    if (rc == QRL_ERR_BUSY) {
        *why = QRL_ERR_BUSY;
        return 1;
    }
    if (rc != QRL_OK || (r->status != 429 && r->status < 500))
        return 0;
    *why = r->status == 429 ? QRL_ERR_RATE_LIMITED : QRL_ERR_BUSY;
    qrlc__fail(c, *why, "%s answered HTTP %ld", url, r->status);
    return 1;
}

/* A request that is not idempotent (refresh) may be repeated only when the server cannot have
 * acted on it: it never left this machine, or the answer says it was not processed. */
static int safe_to_repeat(qrl_err rc, const qrlc__resp *r)
{
    if (rc == QRL_ERR_BUSY)
        return !r->sent;
    return r->status == 429 || r->status == 503;
}

/* A token request's proof refused for its time (RFC 9449 section 4.3 check 11): the clock
 * here is off. True when the answer's Date corrected it, so that one more try with a new
 * proof may pass; the server did nothing with a request whose proof it refused. */
/* Tries on a corrected clock per exchange: a clock that moves again between two tries (a
 * correction, a test moving the server's clock) gets another; one that keeps disagreeing is
 * not chased for ever. */
#define CLOCK_FIXES_MAX 3
static int proof_refused_for_time(qrl_client *c, const qrlc__resp *r)
{
    const char *err = json_string_value(json_object_get(r->json, "error"));

    return r->status == 400 && err != NULL && strcmp(err, "invalid_dpop_proof") == 0 &&
           qrlc__dpop_learn_skew(c, r);
}

/* One exchange. With `ev` (the step API) a transient failure becomes a RETRYING event and
 * QRL_OK with r->status == 0; without, the retries happen here, announced through on_event.
 * QRL_OK with r->status != 0: an answer to interpret. Anything else: give up. A token request
 * (`proof`) carries a new DPoP proof on every try when the server takes them. */
static qrl_err fetch(qrl_client *c, const char *url, const char *form, int wait, int idempotent,
                     int proof, qrlc__resp *r, qrl_client_event *ev)
{
    int clock_fixes = 0;

    for (;;) {
        c->proof_sent = proof && c->dpop;
        qrl_err why, rc = proof ? qrlc__http_proof(c, url, form, wait, r)
                                : qrlc__http(c, url, form, wait, r);
        if (rc == QRL_OK && c->proof_sent && clock_fixes < CLOCK_FIXES_MAX &&
            proof_refused_for_time(c, r)) {
            clock_fixes++;
            qrlc__resp_free(c, r);
            continue;
        }
        if (!is_transient(c, rc, r, url, &why))
            return rc;
        if (!idempotent && !safe_to_repeat(rc, r)) {
            qrlc__resp_free(c, r);
            return qrlc__fail(c, why,
                              "%s; not retried: the request may have reached the server and a "
                              "refresh token must not be sent twice",
                              c->err);
        }
        long retry_after = r->retry_after_s;
        qrlc__resp_free(c, r);
        if (ev != NULL)
            return transient(c, why, retry_after, ev);
        qrl_client_event tmp;
        rc = transient(c, why, retry_after, &tmp);
        if (rc != QRL_OK)
            return rc;
        if (c->on_event != NULL)
            c->on_event(c->user, &tmp);
        rc = qrlc__sleep(c, c->delay_ms);
        c->delay_ms = 0;
        if (rc != QRL_OK)
            return rc;
    }
}

/* Copies the server's error_description into the detail, printable ASCII only: it is
 * untrusted text that an app may show or log. */
const char *qrlc__oauth_error(qrl_client *c, const qrlc__resp *r, const char *what)
{
    const char *err = json_string_value(json_object_get(r->json, "error"));
    const char *desc = json_string_value(json_object_get(r->json, "error_description"));
    char clean[QRLC__MAX_DESCRIPTION + 1];
    size_t n = 0;

    for (; desc != NULL && *desc != '\0' && n < QRLC__MAX_DESCRIPTION; desc++)
        if ((unsigned char)*desc >= 0x20 && (unsigned char)*desc < 0x7f)
            clean[n++] = *desc;
    clean[n] = '\0';
    if (err == NULL)
        qrlc__fail(c, QRL_ERR_INTERNAL, "%s: HTTP %ld without an OAuth error", what, r->status);
    else
        qrlc__fail(c, QRL_ERR_INTERNAL, "%s: %.40s%s%s", what, err, n > 0 ? ": " : "", clean);
    return err != NULL ? err : "";
}

/* --- discovery (RFC 8414) ------------------------------------------------------------------ */

static qrl_err take_endpoint(qrl_client *c, json_t *meta, const char *key, int required, char **dst)
{
    const char *v = json_string_value(json_object_get(meta, key));
    char why[QRL_CLIENT_ERROR_MAX];

    if (v == NULL) {
        if (!required)
            return QRL_OK;
        return qrlc__fail(c, QRL_ERR_INTERNAL, "server metadata has no %s", key);
    }
    if (strlen(v) > QRLC__MAX_URL)
        return qrlc__fail(c, QRL_ERR_TOO_LARGE, "server metadata: %s is too long", key);
    if (qrlc__check_url(key, v, c->allow_insecure_http, why, sizeof why) != QRL_OK)
        return qrlc__fail(c, QRL_ERR_INTERNAL, "server metadata: %s", why);
    *dst = qrlc__strdup(c, v);
    return *dst != NULL ? QRL_OK : qrlc__fail(c, QRL_ERR_NOMEM, "out of memory");
}

qrl_err qrlc__parse_metadata(qrl_client *c, const qrlc__resp *r, const char *url)
{
    const char *issuer;
    qrl_err rc;

    if (r->status != 200 || r->json == NULL)
        return qrlc__fail(c, r->status == 404 ? QRL_ERR_NOT_FOUND : QRL_ERR_INTERNAL,
                          "%s: HTTP %ld%s; is server_url the server's issuer?", url, r->status,
                          r->json == NULL ? " without JSON" : "");
    /* RFC 8414 section 3.3: the issuer must be the URL we built the well-known URL from. */
    issuer = json_string_value(json_object_get(r->json, "issuer"));
    if (issuer == NULL || strcmp(issuer, c->server_url) != 0)
        return qrlc__fail(c, QRL_ERR_INVALID,
                          "the server's issuer is \"%.200s\", not server_url \"%.200s\"",
                          issuer != NULL ? issuer : "(none)", c->server_url);
    rc = take_endpoint(c, r->json, "device_authorization_endpoint", 1, &c->devauth_ep);
    if (rc == QRL_OK)
        rc = take_endpoint(c, r->json, "token_endpoint", 1, &c->token_ep);
    if (rc == QRL_OK)
        rc = take_endpoint(c, r->json, "revocation_endpoint", 0, &c->revoke_ep);
    /* RFC 9449 section 5.1: the server verifies proofs of these algorithms; with EdDSA among
     * them, token requests prove the handle's key and the tokens are bound to it. */
    json_t *algs = json_object_get(r->json, "dpop_signing_alg_values_supported");
    size_t i;
    json_t *a;
    c->dpop = 0;
    json_array_foreach(algs, i, a)
    {
        if (json_is_string(a) && strcmp(json_string_value(a), "EdDSA") == 0)
            c->dpop = 1;
    }
    if (rc != QRL_OK) {
        qrlc__free(c, c->devauth_ep);
        qrlc__free(c, c->token_ep);
        qrlc__free(c, c->revoke_ep);
        c->devauth_ep = c->token_ep = c->revoke_ep = NULL;
    }
    return rc;
}

/* Fetches the endpoints once per handle. With `ev`, a transient failure is a RETRYING event
 * (c->token_ep stays NULL). */
static qrl_err discover(qrl_client *c, qrl_client_event *ev)
{
    char url[QRLC__MAX_URL + 64];
    const char *rest;
    size_t host_len;
    qrlc__resp r;
    qrl_err rc;

    if (c->token_ep != NULL)
        return QRL_OK;
    /* RFC 8414 section 3.1: the well-known path goes between the host and any path. */
    rest = strchr(strstr(c->server_url, "://") + 3, '/');
    host_len = rest != NULL ? (size_t)(rest - c->server_url) : strlen(c->server_url);
    snprintf(url, sizeof url, "%.*s/.well-known/oauth-authorization-server%s", (int)host_len,
             c->server_url, rest != NULL ? rest : "");
    rc = fetch(c, url, NULL, 0, 1, 0, &r, ev);
    if (rc == QRL_OK && r.status != 0) {
        c->failures = 0;
        rc = qrlc__parse_metadata(c, &r, url);
    }
    qrlc__resp_free(c, &r);
    return rc;
}

/* --- tokens ---------------------------------------------------------------------------------- */

/* Reads a token response (RFC 6749 section 5.1) into c->tok. A refresh may omit the refresh
 * token and the scope (sections 6 and 5.1): then the old values stay. */
qrl_err qrlc__take_tokens(qrl_client *c, const qrlc__resp *r, int refreshing)
{
    qrl_client_tokens t;
    const char *type = json_string_value(json_object_get(r->json, "token_type"));
    long long exp = get_int(r->json, "expires_in", 0, 10LL * 365 * 24 * 3600, 0);

    memset(&t, 0, sizeof t);
    if (r->json == NULL ||
        !copy_str(t.access_token, sizeof t.access_token, r->json, "access_token"))
        return qrlc__fail(c, QRL_ERR_INTERNAL, "token answer without a usable access_token");
    /* RFC 6749 section 7.1: the token type is case-insensitive. DPoP (RFC 9449 section 5)
     * only when this request proved the handle's key: tokens bound to a key we did not prove
     * would be of no use. */
    int bound = type != NULL && strcasecmp(type, "DPoP") == 0 && c->proof_sent;
    if (type == NULL || (strcasecmp(type, "Bearer") != 0 && !bound) || exp < 0) {
        qrlc__wipe(&t, sizeof t);
        return qrlc__fail(c, QRL_ERR_INTERNAL,
                          "token answer: token_type is not Bearer (or DPoP after a proof) or "
                          "expires_in is not a valid number");
    }
    if (json_object_get(r->json, "refresh_token") != NULL &&
        !copy_str(t.refresh_token, sizeof t.refresh_token, r->json, "refresh_token")) {
        qrlc__wipe(&t, sizeof t);
        return qrlc__fail(c, QRL_ERR_INTERNAL, "token answer: unusable refresh_token");
    }
    if (t.refresh_token[0] == '\0' && refreshing)
        memcpy(t.refresh_token, c->tok.refresh_token, sizeof t.refresh_token);
    if (!copy_str(t.scope, sizeof t.scope, r->json, "scope")) {
        /* RFC 6749 section 5.1: omitted when identical to what was requested (or held). */
        const char *s = refreshing ? c->tok.scope : (c->scope != NULL ? c->scope : "");
        snprintf(t.scope, sizeof t.scope, "%s", s);
    }
    t.expires_in = (long)exp;
    t.expires_at = (long long)time(NULL) + exp;
    qrlc__wipe(&c->tok, sizeof c->tok);
    c->tok = t;
    c->have_tokens = 1;
    c->dpop_bound = bound;
    qrlc__wipe(&t, sizeof t);
    return QRL_OK;
}

QRL_CLIENT_API void qrl_client_tokens_clear(qrl_client_tokens *t)
{
    qrlc__wipe(t, t != NULL ? sizeof *t : 0);
}

QRL_CLIENT_API qrl_err qrl_client_get_tokens(const qrl_client *c, qrl_client_tokens *out)
{
    if (c == NULL || out == NULL)
        return QRL_ERR_INVALID;
    if (!c->have_tokens)
        return QRL_ERR_CONFLICT;
    *out = c->tok;
    return QRL_OK;
}

QRL_CLIENT_API qrl_err qrl_client_set_refresh_token(qrl_client *c, const char *refresh_token)
{
    size_t n = refresh_token != NULL ? strlen(refresh_token) : 0;

    if (c == NULL)
        return QRL_ERR_INVALID;
    if (enter(c) != QRL_OK)
        return QRL_ERR_CONFLICT;
    if (n == 0 || !printable(refresh_token))
        return leave(c, qrlc__fail(c, QRL_ERR_INVALID, "the refresh token is empty or garbled"));
    if (n > QRL_CLIENT_TOKEN_MAX)
        return leave(c, qrlc__fail(c, QRL_ERR_TOO_LARGE, "the refresh token is longer than %d",
                                   QRL_CLIENT_TOKEN_MAX));
    forget_tokens(c);
    memcpy(c->tok.refresh_token, refresh_token, n + 1);
    snprintf(c->tok.scope, sizeof c->tok.scope, "%s", c->scope != NULL ? c->scope : "");
    c->have_tokens = 1;
    return leave(c, QRL_OK);
}

static qrl_err refresh_locked(qrl_client *c, qrl_client_tokens *out)
{
    char *form = NULL;
    qrlc__resp r = {0};
    qrl_err rc;

    if (!c->have_tokens || c->tok.refresh_token[0] == '\0')
        return qrlc__fail(c, QRL_ERR_CONFLICT, "no refresh token: sign in first");
    c->failures = 0;
    rc = discover(c, NULL);
    if (rc == QRL_OK)
        rc =
            qrlc__form(c,
                       (const char *const[]){"grant_type", "refresh_token", "refresh_token",
                                             c->tok.refresh_token, "client_id", c->client_id, NULL},
                       &form);
    if (rc == QRL_OK)
        rc = fetch(c, c->token_ep, form, 0, 0, 1, &r, NULL);
    qrlc__form_free(c, form);
    c->failures = 0;
    if (rc != QRL_OK)
        goto out;
    if (r.status == 200) {
        rc = qrlc__take_tokens(c, &r, 1);
        if (rc == QRL_OK && out != NULL)
            *out = c->tok;
        goto out;
    }
    const char *err = qrlc__oauth_error(c, &r, "refresh");
    if (strcmp(err, "invalid_grant") == 0) {
        /* Expired, revoked or already used: these tokens are dead; sign in again. */
        forget_tokens(c);
        rc = QRL_ERR_UNAUTHORIZED;
    } else if (strcmp(err, "invalid_client") == 0 || strcmp(err, "unauthorized_client") == 0) {
        rc = QRL_ERR_INVALID_CLIENT;
    } else if (strcmp(err, "invalid_request") == 0 || strcmp(err, "invalid_dpop_proof") == 0) {
        /* A refused proof (RFC 9449 section 5) changed nothing: the tokens stay. */
        rc = QRL_ERR_INVALID;
    } else {
        rc = QRL_ERR_INTERNAL;
    }
out:
    qrlc__resp_free(c, &r);
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_refresh(qrl_client *c, qrl_client_tokens *out)
{
    if (c == NULL)
        return QRL_ERR_INVALID;
    if (enter(c) != QRL_OK)
        return QRL_ERR_CONFLICT;
    return leave(c, refresh_locked(c, out));
}

static qrl_err logout_locked(qrl_client *c)
{
    char *form = NULL;
    qrlc__resp r = {0};
    qrl_err rc;

    if (!c->have_tokens)
        return qrlc__fail(c, QRL_ERR_CONFLICT, "not signed in");
    c->failures = 0;
    rc = discover(c, NULL);
    if (rc == QRL_OK && c->revoke_ep == NULL)
        rc = qrlc__fail(c, QRL_ERR_NOT_FOUND, "the server has no revocation endpoint");
    /* RFC 7009 section 2.1: revoking the refresh token; qrlogin then ends the whole device,
     * its access token included. Revocation is idempotent, so retrying is safe. */
    const char *tok = c->tok.refresh_token[0] != '\0' ? c->tok.refresh_token : c->tok.access_token;
    const char *hint = c->tok.refresh_token[0] != '\0' ? "refresh_token" : "access_token";
    if (rc == QRL_OK)
        rc = qrlc__form(c,
                        (const char *const[]){"token", tok, "token_type_hint", hint, "client_id",
                                              c->client_id, NULL},
                        &form);
    if (rc == QRL_OK)
        rc = fetch(c, c->revoke_ep, form, 0, 1, 0, &r, NULL);
    qrlc__form_free(c, form);
    c->failures = 0;
    forget_tokens(c);
    if (rc == QRL_OK && r.status != 200) {
        const char *err = qrlc__oauth_error(c, &r, "revoke");
        rc = strcmp(err, "invalid_client") == 0 ? QRL_ERR_INVALID_CLIENT : QRL_ERR_INTERNAL;
    }
    qrlc__resp_free(c, &r);
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_logout(qrl_client *c)
{
    if (c == NULL)
        return QRL_ERR_INVALID;
    if (enter(c) != QRL_OK)
        return QRL_ERR_CONFLICT;
    return leave(c, logout_locked(c));
}

/* --- the login ------------------------------------------------------------------------------- */

/* Push is possible unless the app turned it off or the server showed it does not hold. */
static int want_push(const qrl_client *c)
{
    return !c->disable_push && c->push != QRLC__PUSH_NO;
}

qrl_err qrlc__parse_device_auth(qrl_client *c, json_t *o)
{
    long long exp = get_int(o, "expires_in", 1, 24 * 3600, -1);
    long long iv = get_int(o, "interval", 1, 3600, QRLC__DEFAULT_INTERVAL_S);

    if (o == NULL || !copy_str(c->device_code, sizeof c->device_code, o, "device_code") ||
        !copy_str(c->user_code, sizeof c->user_code, o, "user_code") ||
        !copy_str(c->verification_uri, sizeof c->verification_uri, o, "verification_uri") ||
        exp < 0 || iv < 0 || !printable(c->user_code) || !printable(c->verification_uri))
        return qrlc__fail(c, QRL_ERR_INTERNAL,
                          "device authorization answer lacks or garbles device_code, user_code, "
                          "verification_uri, expires_in or interval");
    /* RFC 8628 section 3.3.1: verification_uri_complete is optional; without it the QR code
     * carries the plain URI and the user types the code. */
    if (!copy_str(c->qr_payload, sizeof c->qr_payload, o, "verification_uri_complete") ||
        !printable(c->qr_payload))
        memcpy(c->qr_payload, c->verification_uri, sizeof c->qr_payload);
    c->expires_in = (int)exp;
    c->interval_s = iv > QRLC__MAX_INTERVAL_S ? QRLC__MAX_INTERVAL_S : (int)iv;
    return QRL_OK;
}

/* RFC 8628 section 3.1/3.2: a new login request. Yields STARTED or RENEWED. */
static qrl_err start_request(qrl_client *c, qrl_client_event *ev)
{
    char *form = NULL, jkt[QRLC__JKT_BUF];
    qrlc__resp r = {0};
    qrl_err rc;

    /* RFC 9449 section 10, for the device authorization request: a server that takes our
     * proofs binds the login request to the handle's key from the start, so that only this
     * handle can redeem it and the QR code names the key for the phone to check. */
    qrlc__dpop_jkt(c, jkt);
    rc = qrlc__form(c,
                    (const char *const[]){"client_id", c->client_id, "scope", c->scope,
                                          "device_name", c->device_name, "device_kind",
                                          c->device_kind, "dpop_jkt", c->dpop ? jkt : NULL, NULL},
                    &form);
    if (rc == QRL_OK)
        rc = fetch(c, c->devauth_ep, form, 0, 1, 0, &r, ev);
    qrlc__form_free(c, form);
    if (rc != QRL_OK || r.status == 0)
        goto out;
    c->failures = 0;
    if (r.status != 200) {
        const char *err = qrlc__oauth_error(c, &r, "device authorization");
        rc = strcmp(err, "invalid_client") == 0 || strcmp(err, "unauthorized_client") == 0
                 ? QRL_ERR_INVALID_CLIENT
             : strcmp(err, "invalid_request") == 0 || strcmp(err, "invalid_scope") == 0
                 ? QRL_ERR_INVALID
                 : QRL_ERR_INTERNAL;
        goto out;
    }
    forget_request(c);
    rc = qrlc__parse_device_auth(c, r.json);
    if (rc != QRL_OK)
        goto out;
    fill_event(c, ev, c->renewals > 0 ? QRL_CLIENT_EV_RENEWED : QRL_CLIENT_EV_STARTED);
    c->phase = QRLC__WAITING;
    /* Push: ask at once (the request is held). Polling: RFC 8628 section 3.4 asks for
     * `interval` seconds between requests, the first one included. */
    c->delay_ms = want_push(c) ? 0 : (long)c->interval_s * 1000;
out:
    qrlc__resp_free(c, &r);
    return rc;
}

/* After a pending answer: how long until the next token request. */
static long next_delay(const qrl_client *c, int held, int news, int64_t sent_ms)
{
    long iv = (long)c->interval_s * 1000;

    if (!held)
        return iv; /* polling: a full interval after the answer */
    if (news)
        return 0; /* a held request that brought news: wait again at once */
    /* A held request answered early without news (the server's waiter cap, a restart): keep
     * at least the interval between requests so as never to hammer the server. */
    long spent = (long)(qrlc__mono_ms() - sent_ms);
    return spent >= iv ? 0 : iv - spent;
}

static qrl_err on_expired(qrl_client *c, qrl_client_event *ev)
{
    if (c->max_renewals == QRL_CLIENT_NO_RENEWAL || c->renewals >= c->max_renewals)
        return qrlc__fail(c, QRL_ERR_EXPIRED,
                          "the login request expired and the renewal limit (%d) is reached",
                          c->max_renewals == QRL_CLIENT_NO_RENEWAL ? 0 : c->max_renewals);
    c->renewals++;
    forget_request(c); /* the old code is dead: events show "" until the new one arrives */
    c->phase = QRLC__RENEWING;
    return start_request(c, ev);
}

/* Interprets a 4xx answer of the device-code grant (RFC 8628 section 3.5). expired_token is
 * QRL_ERR_EXPIRED, which the caller turns into a renewal (on_expired): reading an answer never
 * sends a request. */
qrl_err qrlc__grant_error(qrl_client *c, const qrlc__resp *r, int held, int64_t sent_ms,
                          qrl_client_event *ev)
{
    const char *err = qrlc__oauth_error(c, r, "token");
    long long iv = get_int(r->json, "interval", 1, 3600, 0);

    if (strcmp(err, "authorization_pending") == 0) {
        const char *status = json_string_value(json_object_get(r->json, "status"));
        int news = status != NULL && strcmp(status, "scanned") == 0 && !c->scanned;
        c->err[0] = '\0';
        if (iv > 0)
            c->interval_s = iv > QRLC__MAX_INTERVAL_S ? QRLC__MAX_INTERVAL_S : (int)iv;
        if (news) {
            /* Our extension (docs/api.md): a phone scanned; say "Confirm on your phone". */
            c->scanned = 1;
            fill_event(c, ev, QRL_CLIENT_EV_SCANNED);
        }
        c->delay_ms = next_delay(c, held, news, sent_ms);
        return QRL_OK;
    }
    if (strcmp(err, "slow_down") == 0) {
        /* RFC 8628 section 3.5: add 5 seconds to this and all later polls; our server also
         * says the new interval, which we take when it is larger. */
        int n = c->interval_s + QRL_SLOW_DOWN_STEP_S;
        if (iv > n)
            n = (int)iv;
        c->interval_s = n > QRLC__MAX_INTERVAL_S ? QRLC__MAX_INTERVAL_S : n;
        c->err[0] = '\0';
        c->delay_ms = (long)c->interval_s * 1000;
        return QRL_OK;
    }
    if (strcmp(err, "expired_token") == 0)
        return QRL_ERR_EXPIRED;
    if (strcmp(err, "access_denied") == 0)
        return QRL_ERR_DENIED;
    if (strcmp(err, "invalid_grant") == 0)
        return QRL_ERR_NOT_FOUND;
    if (strcmp(err, "invalid_client") == 0 || strcmp(err, "unauthorized_client") == 0)
        return QRL_ERR_INVALID_CLIENT;
    if (strcmp(err, "invalid_request") == 0 || strcmp(err, "unsupported_grant_type") == 0 ||
        strcmp(err, "invalid_dpop_proof") == 0)
        return QRL_ERR_INVALID;
    return QRL_ERR_INTERNAL;
}

/* One token request for the live login request (RFC 8628 section 3.4). */
static qrl_err poll_once(qrl_client *c, qrl_client_event *ev)
{
    char *form = NULL;
    qrlc__resp r = {0};
    int wait = 0;
    int64_t sent_ms;
    qrl_err rc;

    if (want_push(c)) {
        /* The server exempts a held request from slow_down only when it waits at least an
         * interval, so never ask for less. */
        wait = c->wait_s > c->interval_s ? c->wait_s : c->interval_s;
        if (wait > QRL_MAX_WAIT_S)
            wait = QRL_MAX_WAIT_S;
    }
    rc = qrlc__form(
        c,
        (const char *const[]){"grant_type", "urn:ietf:params:oauth:grant-type:device_code",
                              "device_code", c->device_code, "client_id", c->client_id, NULL},
        &form);
    sent_ms = qrlc__mono_ms();
    if (rc == QRL_OK)
        rc = fetch(c, c->token_ep, form, wait, 1, 1, &r, ev);
    qrlc__form_free(c, form);
    if (rc != QRL_OK || r.status == 0)
        goto out;
    c->failures = 0;
    /* RFC 7240 section 3: the server names the preferences it honoured. Without
     * Preference-Applied the request was not held: poll from now on. */
    if (wait > 0)
        c->push = r.preference_applied ? QRLC__PUSH_YES : QRLC__PUSH_NO;
    if (r.status == 200) {
        rc = qrlc__take_tokens(c, &r, 0);
        if (rc == QRL_OK)
            fill_event(c, ev, QRL_CLIENT_EV_APPROVED);
        goto out;
    }
    rc = qrlc__grant_error(c, &r, wait > 0 && c->push == QRLC__PUSH_YES, sent_ms, ev);
    if (rc == QRL_ERR_EXPIRED)
        rc = on_expired(c, ev);
out:
    qrlc__resp_free(c, &r);
    return rc;
}

static qrl_err step_locked(qrl_client *c, qrl_client_event *ev)
{
    qrl_err rc;
    long d = c->delay_ms;

    fill_event(c, ev, QRL_CLIENT_EV_NONE);
    if (c->phase == QRLC__IDLE) {
        forget_request(c);
        c->phase = QRLC__STARTING;
        c->renewals = 0;
        c->push = QRLC__PUSH_UNKNOWN;
        d = 0;
    }
    c->delay_ms = 0;
    rc = qrlc__sleep(c, d);
    if (rc == QRL_OK && c->token_ep == NULL)
        rc = discover(c, ev);
    if (rc == QRL_OK && ev->type == QRL_CLIENT_EV_NONE && c->token_ep != NULL) {
        if (c->phase == QRLC__WAITING)
            rc = poll_once(c, ev);
        else
            rc = start_request(c, ev);
    }
    if (rc != QRL_OK || ev->type == QRL_CLIENT_EV_APPROVED) {
        forget_request(c);
        if (rc != QRL_OK)
            fill_event(c, ev, QRL_CLIENT_EV_NONE);
    }
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_step(qrl_client *c, qrl_client_event *ev)
{
    qrl_client_event dummy;

    if (ev == NULL)
        ev = &dummy;
    memset(ev, 0, sizeof *ev);
    if (c == NULL)
        return QRL_ERR_INVALID;
    ev->qr_payload = ev->verification_uri = ev->user_code = "";
    if (enter(c) != QRL_OK)
        return QRL_ERR_CONFLICT;
    return leave(c, step_locked(c, ev));
}

QRL_CLIENT_API qrl_err qrl_client_login(qrl_client *c, qrl_client_tokens *out)
{
    qrl_client_event ev;
    qrl_err rc;

    if (c == NULL)
        return QRL_ERR_INVALID;
    if (enter(c) != QRL_OK)
        return QRL_ERR_CONFLICT;
    if (c->on_event == NULL)
        return leave(c, qrlc__fail(c, QRL_ERR_INVALID,
                                   "qrl_client_login needs an on_event callback to show the code"));
    forget_request(c); /* a fresh login, whatever happened before */
    do {
        rc = step_locked(c, &ev);
        if (rc == QRL_OK && ev.type != QRL_CLIENT_EV_NONE)
            c->on_event(c->user, &ev);
    } while (rc == QRL_OK && ev.type != QRL_CLIENT_EV_APPROVED);
    if (rc == QRL_OK && out != NULL)
        *out = c->tok;
    return leave(c, rc);
}

/* --- notifications ----------------------------------------------------------------------------- */

_Static_assert(QRL_CLIENT_DEVICE_NAME_MAX == QRL_MAX_DEVICE_NAME &&
                   QRL_CLIENT_DEVICE_KIND_MAX == QRL_MAX_DEVICE_KIND &&
                   QRL_CLIENT_DEVICE_PLATFORM_MAX == QRL_MAX_DEVICE_PLATFORM &&
                   QRL_CLIENT_ADDRESS_MAX == QRL_MAX_ADDRESS &&
                   QRL_CLIENT_BLOCK_REASON_MAX == QRL_MAX_BLOCK_REASON,
               "the SDK holds the strings the server sends");

/* A string member into a fixed buffer; "" is fine, absent, too long or unprintable is not. */
static int copy_text(char *dst, size_t cap, json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    if (s == NULL || strlen(s) >= cap || !printable(s))
        return 0;
    memcpy(dst, s, strlen(s) + 1);
    return 1;
}

/* The device member of a notification (the new device, or the phone stopped). */
static int notification_device(json_t *d, qrl_client_notification *out)
{
    json_t *current = json_object_get(d, "current");

    out->device_id = get_int(d, "id", 1, LLONG_MAX, -1);
    /* Absent from servers before the kinds: a device is never told of its own link. */
    out->device_current = json_is_true(current);
    return json_is_object(d) && out->device_id > 0 &&
           (current == NULL || json_is_boolean(current)) &&
           copy_text(out->device_name, sizeof out->device_name, d, "name") &&
           copy_text(out->device_kind, sizeof out->device_kind, d, "kind") &&
           copy_text(out->device_platform, sizeof out->device_platform, d, "platform") &&
           copy_text(out->device_address, sizeof out->device_address, d, "address");
}

/* What a request_blocked notification says: why, and the screen with its country (null when
 * unknown). */
static int notification_blocked(json_t *o, qrl_client_notification *out)
{
    json_t *scr = json_object_get(o, "screen"), *country = json_object_get(scr, "country");

    if (!json_is_object(scr) || !copy_text(out->reason, sizeof out->reason, o, "reason") ||
        !copy_text(out->screen_name, sizeof out->screen_name, scr, "name") ||
        !copy_text(out->screen_kind, sizeof out->screen_kind, scr, "kind") ||
        !copy_text(out->screen_platform, sizeof out->screen_platform, scr, "platform") ||
        !copy_text(out->screen_address, sizeof out->screen_address, scr, "address"))
        return 0;
    if (country == NULL || json_is_null(country))
        return 1;
    return json_is_object(country) &&
           copy_text(out->screen_country, sizeof out->screen_country, country, "code") &&
           strlen(out->screen_country) == 2 &&
           copy_text(out->screen_country_name, sizeof out->screen_country_name, country, "name");
}

static int notification_take(json_t *o, qrl_client_notification *out)
{
    json_t *d = json_object_get(o, "device");
    json_t *until = json_object_get(o, "revoke_until");
    const char *kind = json_string_value(json_object_get(o, "kind"));

    memset(out, 0, sizeof *out);
    out->id = get_int(o, "id", 1, LLONG_MAX, -1);
    out->created_at = get_int(o, "created_at", 0, LLONG_MAX, -1);
    out->age_s = get_int(o, "age_seconds", 0, LLONG_MAX, 0);
    out->revoke_until = json_is_null(until) ? 0 : get_int(o, "revoke_until", 0, LLONG_MAX, 0);
    if (out->id <= 0 || out->created_at < 0 || out->age_s < 0 || out->revoke_until < 0)
        return 0;
    /* Servers before the kinds said "device_linked" or nothing else. */
    if (kind == NULL || strcmp(kind, "device_linked") == 0) {
        out->kind = QRL_CLIENT_NOTICE_DEVICE_LINKED;
        return notification_device(d, out);
    }
    if (strcmp(kind, "request_blocked") == 0) {
        out->kind = QRL_CLIENT_NOTICE_REQUEST_BLOCKED;
        out->revoke_until = 0; /* nothing to remove */
        return notification_device(d, out) && notification_blocked(o, out);
    }
    /* A kind of a newer server: what is common, the device only when it is well formed. */
    out->kind = QRL_CLIENT_NOTICE_OTHER;
    if (d != NULL && !notification_device(d, out)) {
        out->device_id = 0;
        out->device_current = 0;
        out->device_name[0] = out->device_kind[0] = out->device_platform[0] = '\0';
        out->device_address[0] = '\0';
    }
    return 1;
}

/* What a failed notifications call answered, as a qrl_err with the detail on the handle. */
static qrl_err notifications_fail(qrl_client *c, const qrlc__resp *r, const char *url)
{
    qrl_err rc = QRL_ERR_INTERNAL;

    if (r->status == 401)
        rc = QRL_ERR_UNAUTHORIZED;
    else if (r->status == 404)
        rc = QRL_ERR_NOT_FOUND;
    else if (r->status == 429)
        rc = QRL_ERR_RATE_LIMITED;
    else if (r->status >= 500)
        rc = QRL_ERR_BUSY;
    char why[QRL_CLIENT_ERROR_MAX];

    (void)qrlc__oauth_error(c, r, url);
    snprintf(why, sizeof why, "%s", c->err);
    return qrlc__fail(c, rc, "HTTP %ld from %s", r->status, why);
}

/* One exchange with the notifications endpoint under the handle's access token. */
static qrl_err notifications_call(qrl_client *c, const char *url, const char *body, int wait_s,
                                  qrlc__resp *r)
{
    if (!c->have_tokens || c->tok.access_token[0] == '\0')
        return qrlc__fail(c, QRL_ERR_CONFLICT, "no access token: sign in or refresh first");
    return qrlc__http_bearer(c, url, body, c->tok.access_token, wait_s, r);
}

static qrl_err notifications_locked(qrl_client *c, long long after, int wait_s,
                                    qrl_client_notification *out, size_t max, size_t *n)
{
    char url[QRLC__MAX_URL + 64];
    qrlc__resp r = {0};
    json_t *arr, *o;
    size_t i, k = 0;
    qrl_err rc;

    snprintf(url, sizeof url, "%s/v1/notifications?after=%lld", c->server_url, after);
    rc = notifications_call(c, url, NULL, wait_s, &r);
    if (rc == QRL_OK && r.status != 200)
        rc = notifications_fail(c, &r, url);
    arr = rc == QRL_OK ? json_object_get(r.json, "notifications") : NULL;
    if (rc == QRL_OK && !json_is_array(arr))
        rc = qrlc__fail(c, QRL_ERR_INTERNAL, "%s: the answer has no notifications list", url);
    json_array_foreach(arr, i, o)
    {
        if (rc != QRL_OK || k == max)
            break;
        if (!notification_take(o, &out[k++]))
            rc = qrlc__fail(c, QRL_ERR_INTERNAL, "%s: notification %zu is malformed", url, i);
    }
    *n = rc == QRL_OK ? k : 0;
    qrlc__resp_free(c, &r);
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_notifications(qrl_client *c, long long after, int wait_s,
                                                qrl_client_notification *out, size_t max, size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (c == NULL || n == NULL || (max > 0 && out == NULL) || after < 0 || wait_s < 0 ||
        wait_s > QRL_MAX_WAIT_S)
        return QRL_ERR_INVALID;
    if (enter(c) != QRL_OK)
        return QRL_ERR_CONFLICT;
    return leave(c, notifications_locked(c, after, wait_s, out, max, n));
}

static qrl_err ack_locked(qrl_client *c, long long id)
{
    char url[QRLC__MAX_URL + 64];
    qrlc__resp r = {0};
    qrl_err rc;

    snprintf(url, sizeof url, "%s/v1/notifications/%lld/ack", c->server_url, id);
    rc = notifications_call(c, url, "", 0, &r);
    if (rc == QRL_OK && r.status != 204)
        rc = notifications_fail(c, &r, url);
    qrlc__resp_free(c, &r);
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_notification_ack(qrl_client *c, long long id)
{
    if (c == NULL || id <= 0)
        return QRL_ERR_INVALID;
    if (enter(c) != QRL_OK)
        return QRL_ERR_CONFLICT;
    return leave(c, ack_locked(c, id));
}
