/* SPDX-License-Identifier: MIT */
/*
 * The phone API under /v1/: sign-in, looking at and deciding login requests, linked devices.
 * JSON in and out; every authenticated call carries the phone's session token as a bearer
 * token (RFC 6750 section 2.1). GET /v1/me also takes a screen's access token: as a bearer
 * token, or, when it is bound to the screen's key, as a DPoP token with a proof (dpop.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "dpop.h"
#include "http_common.h"

/* Authenticates the caller (a phone session; with `any`, also a screen's access token, as a
 * bearer token or, when bound to a key, with DPoP); answers 401 itself and returns false on
 * failure. */
static bool authenticate_as(qrl__req *r, qrl_auth *auth, bool any, enum MHD_Result *ret)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    qrl_err rc = QRL_ERR_UNAUTHORIZED;

    if (any && h != NULL && strncasecmp(h, "DPoP ", 5) == 0 && strlen(h + 5) <= QRL_MAX_TOKEN)
        return qrl__dpop_auth(r, h + 5, auth, ret);
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0 && strlen(h + 7) <= QRL_MAX_TOKEN) {
        /* The token's read and the handler's reads after it share one snapshot. */
        qrl__read_scope(r);
        rc = any ? qrl_device_auth_any(r->srv->core, h + 7, r->address, auth)
                 : qrl_session_auth(r->srv->core, h + 7, r->address, auth);
    }
    if (rc == QRL_OK)
        return true;
    /* RFC 9449 section 7.2: a bound token sent as a bearer token is refused, and the client
     * is told to use DPoP. */
    if (rc == QRL_ERR_FORBIDDEN)
        *ret = qrl__dpop_refuse_bearer(r);
    else
        *ret = qrl__respond_err(r, rc, QRL__CTX_API);
    return false;
}

static bool authenticate(qrl__req *r, qrl_auth *auth, enum MHD_Result *ret)
{
    return authenticate_as(r, auth, false, ret);
}

json_t *qrl__account_json(const qrl_account_rec *a)
{
    return json_pack("{s:I, s:s, s:s}", "id", (json_int_t)a->id, "username", a->username,
                     "display_name", a->display_name);
}

/* Sign-in: UNAUTHORIZED is a wrong username or password, not a missing session. */
static const qrl__errsay signin_say[] = {
    {QRL_ERR_UNAUTHORIZED, {0, "invalid_credentials", "wrong username or password"}},
    {QRL_ERR_INVALID, {0, NULL, "username, password, device_name or device_kind is not valid"}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_sessions(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_session s;
    bool bad = false;
    json_t *o = qrl__read_json(r, &ret);
    qrl_err rc;

    if (o == NULL)
        return ret;
    const char *user = qrl__jstr(o, "username", &bad), *pw = qrl__jstr(o, "password", &bad);
    const char *name = qrl__jstr(o, "device_name", &bad), *kind = qrl__jstr(o, "device_kind", &bad);
    if (bad || user == NULL || pw == NULL) {
        json_decref(o);
        return qrl__respond_error(r, 400, "invalid_request",
                                  "username and password (strings) are required");
    }
    rc = qrl_session_create(r->srv->core, user, pw, name, kind, r->address, &s);
    json_decref(o);
    sodium_memzero(r->body, r->body_len);
    if (rc != QRL_OK) {
        qrl__audit(r, "sign_in_failed",
                   &(qrl__ids){.error = qrl__err_answer(rc, QRL__CTX_API, signin_say).code});
        return qrl__respond_err_as(r, rc, QRL__CTX_API, signin_say, NULL, NULL);
    }
    qrl__audit(r, "sign_in_succeeded",
               &(qrl__ids){.account_id = s.account.id, .device_id = s.device_id});
    ret = qrl__respond_json(
        r, 201,
        json_pack("{s:s, s:s, s:I, s:I, s:o}", "session_token", s.session_token, "token_type",
                  "Bearer", "expires_in", (json_int_t)s.expires_in_s, "device_id",
                  (json_int_t)s.device_id, "account", qrl__account_json(&s.account)));
    sodium_memzero(&s, sizeof s);
    return ret;
}

/* A login-request call: the code is a scan secret or user code; UNAUTHORIZED is the step-up
 * password, FORBIDDEN the device-key signature. */
static const qrl__errsay lr_say[] = {
    {QRL_ERR_INVALID, {0, NULL, "not a scan secret or user code"}},
    {QRL_ERR_UNAUTHORIZED, {403, "step_up_failed", "the password is not correct"}},
    {QRL_ERR_FORBIDDEN,
     {403, "signature_invalid",
      "the signature does not verify with this phone's device key for this request, decision "
      "and nonce"}},
    QRL__SAY_END,
};
static const qrl__errsay lr_pending_say[] = {
    {QRL_ERR_CONFLICT, {0, NULL, "open the login request (GET) on this phone before approving it"}},
    QRL__SAY_END,
};
static const qrl__errsay lr_decided_say[] = {
    {QRL_ERR_CONFLICT, {0, NULL, "the login request is already decided"}},
    QRL__SAY_END,
};

/* What the phone says when a request was blocked as a phishing kit's (lib/phishing.c): the
 * same words for the phone API and the pages, since an app shows the description as it is. */
static const char *blocked_text(qrl_block_reason why)
{
    switch (why) {
    case QRL_BLOCK_MANY_NETWORKS:
        return "This request was opened from too many places; it has been blocked. Start again "
               "on the screen.";
    case QRL_BLOCK_DENIED_NETWORK:
        return "This request comes from a network that may not sign in here; it has been "
               "blocked. Nothing was approved.";
    case QRL_BLOCK_MANY_ACCOUNTS:
        return "The screen that made this request has signed in to too many accounts; it has "
               "been blocked. Nothing was approved. If someone asked you to approve it, they "
               "were after your account.";
    case QRL_BLOCK_NONE:
        break;
    }
    return "This request looks like a phishing attempt; it has been blocked.";
}

enum MHD_Result qrl__respond_blocked(qrl__req *r, enum qrl__errctx ctx, const qrl_auth *auth,
                                     int64_t lr_id)
{
    qrl_block_reason why = qrl_last_block_reason();
    const char *reason = qrl_block_reason_name(why);
    const qrl__errsay say[] = {
        {QRL_ERR_SUSPICIOUS, {0, NULL, blocked_text(why)}},
        QRL__SAY_END,
    };

    qrl__audit(r, "request_blocked",
               &(qrl__ids){.lr_id = lr_id,
                           .account_id = auth->account_id,
                           .device_id = auth->device_id,
                           .error = "suspicious_request",
                           .reason = reason});
    return qrl__respond_err_as(r, QRL_ERR_SUSPICIOUS, ctx, say,
                               json_pack("{s:s}", "reason", reason), NULL);
}

/* Answers a failed decision, adding the current state for invalid_state. */
static enum MHD_Result lr_error(qrl__req *r, qrl_err rc, const qrl_lr_rec *lr)
{
    if (rc == QRL_ERR_CONFLICT && lr != NULL && lr->id != 0)
        return qrl__respond_err_as(r, rc, QRL__CTX_API,
                                   lr->state == QRL_LR_PENDING ? lr_pending_say : lr_decided_say,
                                   json_pack("{s:s}", "state", qrl_lr_state_name(lr->state)), NULL);
    return qrl__respond_err_as(r, rc, QRL__CTX_API, lr_say, NULL, NULL);
}

enum MHD_Result qrl__h_lr_view(qrl__req *r, const char *code)
{
    enum MHD_Result ret;
    qrl_auth auth;
    qrl_lr_view v;
    qrl__origin where;
    char origin[256];
    json_t *o;
    qrl_err rc;

    if (!authenticate(r, &auth, &ret))
        return ret;
    rc = qrl_lr_view_claim(r->srv->core, &auth, code, r->address, &v);
    if (rc == QRL_ERR_SUSPICIOUS)
        return qrl__respond_blocked(r, QRL__CTX_API, &auth, v.lr.id);
    if (rc != QRL_OK)
        return lr_error(r, rc, &v.lr);
    const char *blocked = v.blocked != QRL_BLOCK_NONE ? qrl_block_reason_name(v.blocked) : NULL;
    /* The screen's key when the request is bound to one: the phone compares it with the short
     * form its QR code carried (qrlogin/protocol.h), and shows the fingerprint. */
    char fp[QRL_KEY_FINGERPRINT_BUF] = "";
    bool keyed =
        qrl_dpop_jkt_valid(v.lr.dpop_jkt) && qrl_key_fingerprint(v.lr.dpop_jkt, fp) == QRL_OK;
    qrl__login_event(
        r, QRL__OUT_CLAIMED,
        &(qrl__ids){.lr_id = v.lr.id, .account_id = auth.account_id, .device_id = auth.device_id});
    /* The screen's country (its address at device authorization) and the phone's, now. */
    qrl__geoip_origin(r->srv->geoip, v.lr.address, r->address, &where);
    if (qrl__origin_json_text(&where, origin, sizeof origin) > 0 && qrl__json_plain(v.user_code) &&
        qrl__json_plain(v.lr.device_name) && qrl__json_plain(v.lr.device_kind) &&
        qrl__json_plain(v.lr.client_id) && qrl__json_plain(v.lr.scope) &&
        qrl__json_plain(v.lr.address) && qrl__json_plain(v.lr.nonce) &&
        qrl__json_plain(v.lr.device_platform)) {
        /* Formatted as text (qrl__respond_text) when no string needs escaping; a name in
         * another script or with a quote goes through jansson below. */
        char body[1400];
        const char *q = keyed ? "\"" : "";
        int n = snprintf(
            body, sizeof body,
            "{\"id\":%lld,\"state\":\"%s\",\"user_code\":\"%s\",\"device_name\":\"%s\","
            "\"device_kind\":\"%s\",\"device_platform\":\"%s\",\"client_id\":\"%s\","
            "\"scope\":\"%s\",\"address\":\"%s\","
            "\"same_network\":%s,\"age_seconds\":%lld,\"expires_in\":%lld,"
            "\"created_at\":%lld,\"nonce\":\"%s\",\"blocked\":%s%s%s,"
            "\"dpop_jkt\":%s%s%s,\"key_fingerprint\":%s%s%s,%s}",
            (long long)v.lr.id, qrl_lr_state_name(v.lr.state), v.user_code, v.lr.device_name,
            v.lr.device_kind, v.lr.device_platform, v.lr.client_id, v.lr.scope, v.lr.address,
            v.same_network ? "true" : "false", (long long)v.age_s, (long long)v.expires_in_s,
            (long long)(v.lr.created_ms / 1000), v.lr.nonce, blocked != NULL ? "\"" : "",
            blocked != NULL ? blocked : "null", blocked != NULL ? "\"" : "", q,
            keyed ? v.lr.dpop_jkt : "null", q, q, keyed ? fp : "null", q, origin);
        if (n > 0 && (size_t)n < sizeof body)
            return qrl__respond_text(r, 200, body, (size_t)n, NULL);
    }
    o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:s}", "id",
                  (json_int_t)v.lr.id, "state", qrl_lr_state_name(v.lr.state), "user_code",
                  v.user_code, "device_name", v.lr.device_name, "device_kind", v.lr.device_kind,
                  "device_platform", v.lr.device_platform, "client_id", v.lr.client_id, "scope",
                  v.lr.scope, "address", v.lr.address, "same_network", v.same_network,
                  "age_seconds", (json_int_t)v.age_s, "expires_in", (json_int_t)v.expires_in_s,
                  "created_at", (json_int_t)(v.lr.created_ms / 1000), "nonce", v.lr.nonce);
    qrl__origin_json_set(o, &where);
    json_object_set_new(o, "blocked", blocked != NULL ? json_string(blocked) : json_null());
    json_object_set_new(o, "dpop_jkt", keyed ? json_string(v.lr.dpop_jkt) : json_null());
    json_object_set_new(o, "key_fingerprint", keyed ? json_string(fp) : json_null());
    return qrl__respond_json(r, 200, o);
}

static enum MHD_Result decided(qrl__req *r, const qrl_lr_rec *lr)
{
    char body[96];
    int n = snprintf(body, sizeof body, "{\"id\":%lld,\"state\":\"%s\"}", (long long)lr->id,
                     qrl_lr_state_name(lr->state));

    /* Formatted as text (qrl__respond_text): the state names are our own words. */
    if (n > 0 && (size_t)n < sizeof body && qrl__json_plain(qrl_lr_state_name(lr->state)))
        return qrl__respond_text(r, 200, body, (size_t)n, NULL);
    return qrl__respond_json(
        r, 200,
        json_pack("{s:I, s:s}", "id", (json_int_t)lr->id, "state", qrl_lr_state_name(lr->state)));
}

enum MHD_Result qrl__h_lr_approve(qrl__req *r, const char *code)
{
    enum MHD_Result ret;
    qrl_auth auth;
    bool bad = false;
    json_t *o;
    qrl_err rc;

    if (!authenticate(r, &auth, &ret))
        return ret;
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    const char *uc = qrl__jstr(o, "user_code", &bad);
    qrl_proof proof = {.password = qrl__jstr(o, "password", &bad),
                       .signature = qrl__jstr(o, "signature", &bad)};
    if (bad || uc == NULL || (proof.password == NULL) == (proof.signature == NULL)) {
        json_decref(o);
        return qrl__respond_error(r, 400, "invalid_request",
                                  "user_code and one of password or signature (strings) are "
                                  "required");
    }
    qrl_lr_rec lr;
    rc = qrl_lr_approve(r->srv->core, &auth, code, uc, &proof, r->address, &lr);
    json_decref(o);
    sodium_memzero(r->body, r->body_len);
    if (rc == QRL_OK) {
        qrl__login_event(r, QRL__OUT_APPROVED,
                         &(qrl__ids){.lr_id = lr.id,
                                     .account_id = auth.account_id,
                                     .device_id = auth.device_id});
        return decided(r, &lr);
    }
    if (rc == QRL_ERR_SUSPICIOUS)
        return qrl__respond_blocked(r, QRL__CTX_API, &auth, lr.id);
    qrl__audit(r, "login_approval_failed",
               &(qrl__ids){.account_id = auth.account_id,
                           .device_id = auth.device_id,
                           .error = qrl__err_answer(rc, QRL__CTX_API, lr_say).code});
    return lr_error(r, rc, &lr);
}

enum MHD_Result qrl__h_lr_deny(qrl__req *r, const char *code)
{
    enum MHD_Result ret;
    qrl_auth auth;
    json_t *o;
    qrl_err rc;

    if (!authenticate(r, &auth, &ret))
        return ret;
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    bool bad = false;
    qrl_proof proof = {.signature = qrl__jstr(o, "signature", &bad)};
    if (bad) {
        json_decref(o);
        return qrl__respond_error(r, 400, "invalid_request", "signature must be a string");
    }
    qrl_lr_rec lr;
    rc = qrl_lr_deny(r->srv->core, &auth, code, &proof, r->address, &lr);
    json_decref(o);
    if (rc == QRL_OK) {
        qrl__login_event(r, QRL__OUT_DENIED,
                         &(qrl__ids){.lr_id = lr.id,
                                     .account_id = auth.account_id,
                                     .device_id = auth.device_id});
        return decided(r, &lr);
    }
    return lr_error(r, rc, &lr);
}

static json_t *device_json(const qrl_device_rec *d, int64_t current, int expired,
                           const char *(*label)(const char *kind))
{
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:b, s:b}", "id", (json_int_t)d->id,
                          "name", d->name, "kind", d->kind, "address", d->address, "created_at",
                          (json_int_t)(d->created_ms / 1000), "last_seen_at",
                          (json_int_t)(d->last_seen_ms / 1000), "current", d->id == current,
                          "expired", expired);

    if (o != NULL && label != NULL)
        json_object_set_new(o, "kind_label", json_string(label(d->kind)));
    return o;
}

enum MHD_Result qrl__respond_devices(qrl__req *r, const qrl_auth *auth, enum qrl__errctx ctx,
                                     const char *(*label)(const char *kind))
{
    qrl_device_rec *devs = calloc(QRL_MAX_DEVICES_LISTED, sizeof *devs);
    size_t n = 0;
    json_t *arr;
    qrl_err rc;

    if (devs == NULL)
        return qrl__respond_err(r, QRL_ERR_NOMEM, ctx);
    rc = qrl_devices_list(r->srv->core, auth, devs, QRL_MAX_DEVICES_LISTED, &n);
    if (rc != QRL_OK) {
        free(devs);
        return qrl__respond_err(r, rc, ctx);
    }
    arr = json_array();
    int64_t now = qrl_core_now_ms(r->srv->core);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, device_json(&devs[i], auth->device_id,
                                               qrl_device_idle(r->srv->core, &devs[i], now),
                                               label));
    free(devs);
    return qrl__respond_json(r, 200, json_pack("{s:o}", "devices", arr));
}

enum MHD_Result qrl__h_devices(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;

    if (!authenticate(r, &auth, &ret))
        return ret;
    return qrl__respond_devices(r, &auth, QRL__CTX_API, NULL);
}

static const qrl__errsay device_say[] = {
    {QRL_ERR_NOT_FOUND, {0, NULL, "no such device"}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_device_delete(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;
    int64_t id = qrl__path_id(arg);
    qrl_err rc;

    if (!authenticate(r, &auth, &ret))
        return ret;
    rc = id > 0 ? qrl_device_revoke(r->srv->core, &auth, id) : QRL_ERR_NOT_FOUND;
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, QRL__CTX_API, device_say, NULL, NULL);
    qrl__audit(r, "device_revoked", &(qrl__ids){.account_id = auth.account_id, .device_id = id});
    qrl__web_device_revoked(r->srv, id);
    return qrl__respond_empty(r, 204);
}

enum MHD_Result qrl__h_me(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;

    if (!authenticate_as(r, &auth, true, &ret))
        return ret;
    return qrl__respond_json(r, 200,
                             json_pack("{s:o, s:{s:I, s:s, s:s, s:b}}", "account",
                                       qrl__account_json(&auth.account), "device", "id",
                                       (json_int_t)auth.device.id, "name", auth.device.name, "kind",
                                       auth.device.kind, "has_key", auth.device.has_pubkey));
}

/* A device key: INVALID is the key, UNAUTHORIZED the step-up password. */
static const qrl__errsay device_key_say[] = {
    {QRL_ERR_INVALID, {0, NULL, "public_key must be a base64url Ed25519 key (32 bytes)"}},
    {QRL_ERR_UNAUTHORIZED, {403, "step_up_failed", "the password is not correct"}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_device_key(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;
    bool bad = false;
    json_t *o;
    qrl_err rc;

    if (!authenticate(r, &auth, &ret))
        return ret;
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    const char *pk = qrl__jstr(o, "public_key", &bad), *pw = qrl__jstr(o, "password", &bad);
    if (bad || pk == NULL || pw == NULL) {
        json_decref(o);
        return qrl__respond_error(r, 400, "invalid_request",
                                  "public_key and password (strings) are required");
    }
    rc = qrl_device_set_key(r->srv->core, &auth, pk, pw, r->address);
    json_decref(o);
    sodium_memzero(r->body, r->body_len);
    if (rc == QRL_OK)
        return qrl__respond_empty(r, 204);
    return qrl__respond_err_as(r, rc, QRL__CTX_API, device_key_say, NULL, NULL);
}

#ifdef QRL_TEST_HOOKS
enum MHD_Result qrl__h_test_clock(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    json_t *o = qrl__read_json(r, &ret), *v;

    if (o == NULL)
        return ret;
    v = json_object_get(o, "advance_ms");
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        json_decref(o);
        return qrl__respond_error(r, 400, "invalid_request", "advance_ms >= 0 is required");
    }
    qrl_core_clock_advance(r->srv->core, (int64_t)json_integer_value(v));
    json_decref(o);
    /* Held requests re-read their state: some may have just expired. */
    qrl__hub_wake_all(r->srv->hub, false);
    return qrl__respond_json(
        r, 200, json_pack("{s:I}", "now_ms", (json_int_t)qrl_core_now_ms(r->srv->core)));
}
#endif

bool qrl__api_auth(qrl__req *r, qrl_auth *auth, bool any, enum MHD_Result *ret)
{
    return authenticate_as(r, auth, any, ret);
}
