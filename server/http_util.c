/* SPDX-License-Identifier: MIT */
/*
 * Responses, the error table, and request-body parsing for every handler.
 *
 * Every answer goes through qrl__respond_json(), which adds the headers our security
 * invariants require: no caching of anything (our JSON answers carry
 * secrets or per-user data), no framing, no referrer, no MIME sniffing; and the request's
 * X-Request-Id, the id of its lines in the log.
 */
#include <ctype.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "http_common.h"

/* The one table mapping core errors to HTTP: for each qrl_err and each endpoint class (OAuth,
 * phone API, pages) the status, the "error" code and the default "error_description". A NULL
 * description is qrl_strerror()'s words (lib/error.c), so the core's one description serves the
 * machine-read classes; the pages column speaks to the person holding the phone.
 *
 * The codes and statuses are the ones docs/api.md promises; change neither without it. An
 * endpoint whose meaning of an error differs from its class's (the refresh grant, the phone's
 * approval) passes its own rows to qrl__respond_err_as(): that list is the place for it, never a
 * switch of its own.
 *
 * Every qrl_err has one row: the row count must equal QRL_ERR__COUNT and a code named twice is
 * an initializer override (-Woverride-init, an error in our builds), so a new code without a row
 * does not compile. */
#define C(status, code, desc)                                                                      \
    {                                                                                              \
        status, code, desc                                                                         \
    }
#define QRL__ERRTAB(X)                                                                             \
    X(QRL_OK, C(200, "ok", NULL), C(200, "ok", NULL), C(200, "ok", "Done."))                       \
    X(QRL_ERR_NOMEM, C(503, "temporarily_unavailable", NULL),                                      \
      C(503, "temporarily_unavailable", NULL),                                                     \
      C(503, "temporarily_unavailable", "The server is busy. Try again in a moment."))             \
    X(QRL_ERR_INVALID, C(400, "invalid_request", NULL), C(400, "invalid_request", NULL),           \
      C(400, "invalid_request", "Something in this request was not right. Reload the page."))      \
    X(QRL_ERR_NOT_FOUND, C(400, "invalid_grant", "unknown device code"),                           \
      C(404, "not_found", NULL),                                                                   \
      C(404, "not_found",                                                                          \
        "There is no sign-in request with this code. Check the code on the TV, or scan its QR "    \
        "code again."))                                                                            \
    X(QRL_ERR_EXISTS, C(400, "invalid_request", NULL), C(409, "already_exists", NULL),             \
      C(409, "already_exists", "This already exists."))                                            \
    X(QRL_ERR_CONFLICT, C(400, "invalid_grant", NULL), C(409, "invalid_state", NULL),              \
      C(409, "invalid_state", "This request has already been answered."))                          \
    X(QRL_ERR_EXPIRED, C(400, "expired_token", "the login request expired; start a new one"),      \
      C(410, "expired", NULL),                                                                     \
      C(410, "expired", "This code has expired. The TV shows a new one: scan it again."))          \
    X(QRL_ERR_DENIED, C(400, "access_denied", "the request was declined"),                         \
      C(403, "access_denied", NULL), C(403, "access_denied", "The request was declined."))         \
    X(QRL_ERR_PENDING, C(400, "authorization_pending", NULL),                                      \
      C(409, "authorization_pending", NULL),                                                       \
      C(409, "authorization_pending", "The request is still waiting for an answer."))              \
    X(QRL_ERR_SLOW_DOWN,                                                                           \
      C(400, "slow_down",                                                                          \
        "polling faster than the interval; the interval has grown by 5 seconds"),                  \
      C(429, "slow_down", NULL),                                                                   \
      C(429, "slow_down", "The page asked too often; it waits a little and goes on."))             \
    X(QRL_ERR_REDEEMED, C(400, "invalid_grant", "the device code was already used"),               \
      C(409, "invalid_state", NULL),                                                               \
      C(409, "invalid_state", "This request has already been answered."))                          \
    X(QRL_ERR_UNAUTHORIZED, C(401, "invalid_client", NULL),                                        \
      C(401, "unauthorized", "a valid session token is required (Authorization: Bearer)"),         \
      C(401, "unauthorized", "Sign in on this phone first."))                                      \
    X(QRL_ERR_FORBIDDEN, C(403, "access_denied", NULL), C(403, "forbidden", NULL),                 \
      C(403, "forbidden", "Nothing was approved."))                                                \
    X(QRL_ERR_RATE_LIMITED, C(429, "slow_down", NULL), C(429, "rate_limited", NULL),               \
      C(429, "rate_limited", "Too many attempts. Wait a few minutes and try again."))              \
    X(QRL_ERR_STORE, C(500, "server_error", NULL), C(500, "server_error", NULL),                   \
      C(500, "server_error", "Something went wrong on the server. Try again."))                    \
    X(QRL_ERR_CRYPTO, C(500, "server_error", NULL), C(500, "server_error", NULL),                  \
      C(500, "server_error", "Something went wrong on the server. Try again."))                    \
    X(QRL_ERR_TOKEN_REUSED, C(400, "invalid_grant", NULL), C(400, "invalid_grant", NULL),          \
      C(400, "invalid_grant", "This sign-in was used twice, so it was ended. Sign in again."))     \
    X(QRL_ERR_CLAIMED, C(400, "invalid_grant", NULL), C(409, "already_claimed", NULL),             \
      C(409, "already_claimed",                                                                    \
        "Another phone is already answering this request. If that was not you, scan the new "      \
        "code on the TV."))                                                                        \
    X(QRL_ERR_CODE_MISMATCH, C(400, "invalid_grant", NULL), C(400, "user_code_mismatch", NULL),    \
      C(400, "user_code_mismatch",                                                                 \
        "That is not the code on the TV. Nothing was approved. If the codes do not match, press "  \
        "Deny."))                                                                                  \
    X(QRL_ERR_TOO_LARGE, C(413, "invalid_request", NULL), C(413, "payload_too_large", NULL),       \
      C(413, "payload_too_large", "This is too long."))                                            \
    X(QRL_ERR_INTERNAL, C(500, "server_error", NULL), C(500, "server_error", NULL),                \
      C(500, "server_error", "Something went wrong on the server. Try again."))                    \
    X(QRL_ERR_REVOKED, C(400, "invalid_grant", NULL), C(400, "invalid_grant", NULL),               \
      C(400, "invalid_grant", "This sign-in was ended. Sign in again."))                           \
    X(QRL_ERR_BUSY, C(503, "temporarily_unavailable", NULL),                                       \
      C(503, "temporarily_unavailable", NULL),                                                     \
      C(503, "temporarily_unavailable", "The server is busy. Try again in a moment."))             \
    X(QRL_ERR_INVALID_CLIENT,                                                                      \
      C(400, "invalid_grant", "the device code was issued to another client"),                     \
      C(400, "invalid_grant", NULL),                                                               \
      C(400, "invalid_grant", "This code belongs to another screen."))                             \
    X(QRL_ERR_CANCELLED, C(500, "server_error", NULL), C(500, "server_error", NULL),               \
      C(500, "server_error", "Something went wrong on the server. Try again."))                    \
    X(QRL_ERR_SUSPICIOUS, C(400, "access_denied", "the login request was blocked as suspicious"),  \
      C(403, "suspicious_request", "the login request was blocked as suspicious"),                 \
      C(403, "suspicious_request",                                                                 \
        "This request looks like a phishing attempt; it has been blocked. Start again on the "     \
        "screen."))

#define ERRTAB_ROW(e, oauth, api, page)                                                            \
    [e] = {[QRL__CTX_OAUTH] = oauth, [QRL__CTX_API] = api, [QRL__CTX_PAGE] = page},
#define ERRTAB_ONE(e, oauth, api, page) +1
static const qrl__errans errtab[QRL_ERR__COUNT][QRL__CTX__COUNT] = {QRL__ERRTAB(ERRTAB_ROW)};
_Static_assert(0 QRL__ERRTAB(ERRTAB_ONE) == QRL_ERR__COUNT,
               "server/http_util.c: every qrl_err needs exactly one row in the error table");
#undef C

static void add_common_headers(struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "Pragma", "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; frame-ancestors 'none'");
}

void qrl__add_request_id(qrl__req *r, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
}

static enum MHD_Result queue(qrl__req *r, unsigned status, struct MHD_Response *resp,
                             const char *const *extra)
{
    enum MHD_Result ret;

    if (resp == NULL)
        return MHD_NO;
    add_common_headers(resp);
    qrl__add_request_id(r, resp);
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i += 2)
        MHD_add_response_header(resp, extra[i], extra[i + 1]);
    r->status = (int)status;
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Frees a response body after wiping it: bodies carry tokens, device codes and session tokens,
 * which must not linger in freed memory. */
static void zero_free(void *text)
{
    sodium_memzero(text, strlen(text));
    free(text);
}

/* The body as compact JSON text in one allocation of its size. Most bodies fit the stack buffer,
 * which saves json_dumps()'s growing buffer (a realloc for every doubling, then a copy), and the
 * buffer is wiped; larger ones (long device lists) take json_dumps(). */
static char *json_text(const json_t *body)
{
    char buf[2048];
    size_t n = json_dumpb(body, buf, sizeof buf, JSON_COMPACT);
    char *text = NULL;

    if (n == 0)
        return NULL;
    if (n <= sizeof buf) {
        text = malloc(n + 1);
        if (text != NULL) {
            memcpy(text, buf, n);
            text[n] = '\0';
        }
    } else {
        text = json_dumps(body, JSON_COMPACT);
    }
    sodium_memzero(buf, n < sizeof buf ? n : sizeof buf);
    return text;
}

/* A response whose body is `text`, JSON text in its own allocation (takes text: wiped and freed
 * with the response), with its Content-Type; the body's length goes to *len. */
static struct MHD_Response *text_response(char *text, size_t *len)
{
    struct MHD_Response *resp;

    if (text == NULL)
        return NULL;
    *len = strlen(text);
    resp = MHD_create_response_from_buffer_with_free_callback(*len, text, zero_free);
    if (resp == NULL) {
        zero_free(text);
        return NULL;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return resp;
}

/* A response whose body is `body` as JSON text (takes body), with its Content-Type; the body's
 * length goes to *len. */
static struct MHD_Response *json_response(json_t *body, size_t *len)
{
    char *text = body != NULL ? json_text(body) : NULL;

    json_decref(body);
    return text_response(text, len);
}

struct MHD_Response *qrl__response_json(json_t *body, size_t *len)
{
    struct MHD_Response *resp = json_response(body, len);

    if (resp != NULL)
        add_common_headers(resp);
    return resp;
}

enum MHD_Result qrl__respond_shared(qrl__req *r, unsigned status, struct MHD_Response *resp,
                                    size_t len)
{
    r->status = (int)status;
    r->bytes = len;
    return MHD_queue_response(r->conn, status, resp);
}

enum MHD_Result qrl__respond_json_hdr(qrl__req *r, unsigned status, json_t *body,
                                      const char *const *extra)
{
    size_t len = 0;
    struct MHD_Response *resp = json_response(body, &len);

    if (resp == NULL)
        return MHD_NO;
    r->bytes = len;
    return queue(r, status, resp, extra);
}

enum MHD_Result qrl__respond_json(qrl__req *r, unsigned status, json_t *body)
{
    return qrl__respond_json_hdr(r, status, body, NULL);
}

bool qrl__json_plain(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
            return false;
    return true;
}

enum MHD_Result qrl__respond_text(qrl__req *r, unsigned status, const char *json, size_t len,
                                  const char *const *extra)
{
    char *text = malloc(len + 1);

    if (text == NULL)
        return MHD_NO;
    memcpy(text, json, len);
    text[len] = '\0';
    r->bytes = len;
    return queue(r, status, text_response(text, &len), extra);
}

enum MHD_Result qrl__respond_empty(qrl__req *r, unsigned status)
{
    return queue(r, status, MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT), NULL);
}

enum MHD_Result qrl__respond_image(qrl__req *r, const char *type, void *data, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);

    if (resp == NULL) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    r->bytes = len;
    return queue(r, 200, resp, NULL);
}

int64_t qrl__path_id(const char *arg)
{
    char *end;
    long long id = strtoll(arg, &end, 10);

    return (*arg != '\0' && *end == '\0' && id > 0) ? (int64_t)id : 0;
}

/* An error body {"error", "error_description"} plus `more`'s members (stolen), with the
 * headers its status needs and `hdr` (at most 6 pairs). `www_auth`: a 401 names its HTTP
 * authentication scheme (not for the pages, which authenticate by cookie). */
static enum MHD_Result error_answer(qrl__req *r, const qrl__errans *a, json_t *more,
                                    const char *const *hdr, bool www_auth)
{
    json_t *o = json_pack("{s:s, s:s}", "error", a->code, "error_description", a->desc);
    const char *extra[17] = {NULL};
    size_t n = 0;
    char retry[24];

    if (o != NULL && more != NULL)
        json_object_update(o, more);
    json_decref(more);
    if (a->status == 401 && www_auth) {
        extra[n++] = "WWW-Authenticate";
        extra[n++] = strcmp(a->code, "invalid_client") == 0 ? "Basic realm=\"qrlogin\""
                                                            : "Bearer realm=\"qrlogin\"";
    }
    if (a->status == 429) {
        /* When the limit that refused this request takes an attempt again: the core left
         * it for this thread (a handler runs on one worker thread from start to answer). */
        snprintf(retry, sizeof retry, "%lld", (long long)qrl_retry_after_s());
        extra[n++] = "Retry-After";
        extra[n++] = retry;
    }
    if (a->status == 503) {
        /* Transient (memory, load): tell clients they may retry shortly (RFC 9110 10.2.3). */
        extra[n++] = "Retry-After";
        extra[n++] = "1";
    }
    for (size_t i = 0; hdr != NULL && hdr[i] != NULL && n + 2 < sizeof extra / sizeof *extra;
         i += 2) {
        extra[n++] = hdr[i];
        extra[n++] = hdr[i + 1];
    }
    return qrl__respond_json_hdr(r, a->status, o, extra);
}

enum MHD_Result qrl__respond_error(qrl__req *r, unsigned status, const char *code, const char *desc)
{
    qrl__errans a = {status, code, desc};

    return error_answer(r, &a, NULL, NULL, true);
}

qrl__errans qrl__err_answer(qrl_err e, enum qrl__errctx ctx, const qrl__errsay *say)
{
    qrl__errans a;

    if ((unsigned)e >= QRL_ERR__COUNT)
        e = QRL_ERR_INTERNAL;
    if ((unsigned)ctx >= QRL__CTX__COUNT)
        ctx = QRL__CTX_API;
    a = errtab[e][ctx];
    if (a.desc == NULL)
        a.desc = qrl_strerror(e);
    for (; say != NULL && say->err != QRL_OK; say++) {
        if (say->err != e)
            continue;
        if (say->ans.status != 0)
            a.status = say->ans.status;
        if (say->ans.code != NULL)
            a.code = say->ans.code;
        if (say->ans.desc != NULL)
            a.desc = say->ans.desc;
        break;
    }
    return a;
}

enum MHD_Result qrl__respond_err_as(qrl__req *r, qrl_err e, enum qrl__errctx ctx,
                                    const qrl__errsay *say, json_t *more, const char *const *hdr)
{
    qrl__errans a = qrl__err_answer(e, ctx, say);

    return error_answer(r, &a, more, hdr, ctx != QRL__CTX_PAGE);
}

enum MHD_Result qrl__respond_err(qrl__req *r, qrl_err e, enum qrl__errctx ctx)
{
    return qrl__respond_err_as(r, e, ctx, NULL, NULL, NULL);
}

/* --- application/x-www-form-urlencoded ---
 * Our own decoder rather than libmicrohttpd's post processor: the body is already buffered and
 * bounded, and the post processor streams values in pieces and cannot report repeated keys,
 * which RFC 6749 section 3.1 requires us to reject. */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes s[0..n) in place into dst (which may be s); returns the length, or -1. */
static long url_decode(const char *s, size_t n, char *dst)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            dst[o++] = ' ';
        } else if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return -1;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            dst[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dst[o++] = s[i];
        }
    }
    dst[o] = '\0';
    /* A decoded NUL would silently cut the value short later on. */
    return memchr(dst, '\0', o) != NULL ? -1 : (long)o;
}

qrl_err qrl__form_parse(const char *body, size_t len, qrl__form *f)
{
    size_t pos = 0;

    memset(f, 0, sizeof *f);
    f->buf = malloc(len + 1);
    if (f->buf == NULL)
        return QRL_ERR_NOMEM;
    memcpy(f->buf, body, len);
    f->buf[len] = '\0';
    while (pos < len) {
        char *pair = f->buf + pos;
        size_t plen = strcspn(pair, "&");
        char *eq = memchr(pair, '=', plen);
        size_t klen = eq != NULL ? (size_t)(eq - pair) : plen;

        pos += plen + 1;
        if (plen == 0)
            continue;
        if (f->n == QRL__MAX_PARAMS)
            return QRL_ERR_INVALID;
        pair[plen] = '\0';
        if (eq != NULL)
            *eq = '\0';
        if (url_decode(pair, klen, pair) < 0)
            return QRL_ERR_INVALID;
        if (eq != NULL && url_decode(eq + 1, plen - klen - 1, eq + 1) < 0)
            return QRL_ERR_INVALID;
        for (size_t i = 0; i < f->n; i++)
            if (strcmp(f->key[i], pair) == 0)
                f->duplicate = true;
        f->key[f->n] = pair;
        f->val[f->n] = eq != NULL ? eq + 1 : pair + klen;
        f->n++;
    }
    return QRL_OK;
}

void qrl__form_clear(qrl__form *f)
{
    free(f->buf);
    memset(f, 0, sizeof *f);
}

const char *qrl__form_get(const qrl__form *f, const char *key)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->key[i], key) == 0)
            return f->val[i];
    return NULL;
}

bool qrl__content_type_is(qrl__req *r, const char *type)
{
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    size_t n = strlen(type);

    if (ct == NULL)
        return false;
    while (*ct == ' ')
        ct++;
    return strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* The body as a JSON object; NULL with *oom set when memory ran out, NULL alone when the body
 * is not one object.
 *
 * jansson (2.14) reports an allocation that fails inside its parser as a syntax error, or not
 * at all, so a failure to parse cannot tell a full memory from a malformed body. A body that
 * fails is therefore parsed once more: a malformed one fails again, the same way, while one that
 * met a passing shortage of memory parses (or fails again for lack of memory, which is then told
 * by json_error_out_of_memory where jansson sets it). The second parse costs only on that error
 * path. */
static json_t *json_body(qrl__req *r, bool *oom)
{
    json_error_t err;
    json_t *o;

    *oom = false;
    if (r->body_len == 0) {
        o = json_object();
        *oom = o == NULL;
        return o;
    }
    o = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &err);
    if (o == NULL) {
        o = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &err);
        *oom = o == NULL && json_error_code(&err) == json_error_out_of_memory;
    }
    if (o != NULL && !json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *qrl__json_body(qrl__req *r)
{
    bool oom;

    return json_body(r, &oom);
}

json_t *qrl__read_json(qrl__req *r, enum MHD_Result *ret)
{
    json_t *o;
    bool oom;

    if (r->body_len > 0 && !qrl__content_type_is(r, "application/json")) {
        *ret =
            qrl__respond_error(r, 415, "unsupported_media_type", "body must be application/json");
        return NULL;
    }
    o = json_body(r, &oom);
    if (o == NULL && oom)
        *ret = qrl__respond_err(r, QRL_ERR_NOMEM, QRL__CTX_API);
    else if (o == NULL)
        *ret = qrl__respond_error(r, 400, "invalid_request",
                                  "body must be one JSON object, without repeated keys");
    return o;
}

const char *qrl__jstr(json_t *o, const char *key, bool *bad)
{
    json_t *v = json_object_get(o, key);

    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        *bad = true;
        return NULL;
    }
    /* Embedded NULs would make the C string differ from what the client sent. */
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* True when the client of a held request has gone away (closed or reset its connection).
 * libmicrohttpd does not watch suspended connections, so we look at the socket ourselves. */
bool qrl__peer_gone(qrl__req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct pollfd p;
    char c;

    if (ci == NULL)
        return false;
    p = (struct pollfd){.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP))
        return true;
    return (p.revents & POLLIN) && recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static bool secret_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static bool path_end(char c)
{
    return c == '\0' || c == '\'' || c == '`' || c == '"' || c == ' ' || c == '\n' || c == '?';
}

void qrl__log_redact(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    bool first_seg = false;

#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (o + 1 < outlen)                                                                        \
            out[o++] = (c);                                                                        \
    } while (0)
#define PUTS(str)                                                                                  \
    do {                                                                                           \
        for (const char *p_ = (str); *p_ != '\0'; p_++)                                            \
            PUT(*p_);                                                                              \
    } while (0)
    if (outlen == 0)
        return;
    /* first_seg: inside the first segment of a path, which is kept unless it holds a secret */
    for (size_t i = 0; in[i] != '\0';) {
        if (strncmp(in + i, "qrl_", 4) == 0 && secret_char(in[i + 4]) && secret_char(in[i + 5]) &&
            in[i + 6] == '_') {
            for (size_t k = 0; k < 7; k++)
                PUT(in[i + k]);
            PUTS("[redacted]");
            for (i += 7; secret_char(in[i]);)
                i++;
        } else if (in[i] == '/' && first_seg) {
            PUTS("/[redacted]");
            while (!path_end(in[i]))
                i++;
            first_seg = false;
        } else if (in[i] == '/' && (i == 0 || !secret_char(in[i - 1])) && secret_char(in[i + 1])) {
            PUT('/');
            i++;
            first_seg = true;
        } else {
            if (!secret_char(in[i]) && in[i] != '.')
                first_seg = false;
            PUT(in[i]);
            i++;
        }
    }
#undef PUT
#undef PUTS
    out[o] = '\0';
}
