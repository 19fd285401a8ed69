/* SPDX-License-Identifier: MIT */
/*
 * The OAuth endpoints: RFC 8414 metadata, RFC 8628 device authorization and device-code grant
 * (with our Prefer: wait push extension), RFC 6749 refresh with rotation, RFC 7662
 * introspection and RFC 7009 revocation. Each handler parses and bounds its input, calls one
 * core function and maps the result; no policy lives here. A token request may carry a DPoP
 * proof (RFC 9449, dpop.h): it is verified and used up before the grant runs, and its key goes
 * to the core, which binds the screen's tokens to it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "dpop.h"
#include "http.h"
#include "http_common.h"

#define GRANT_DEVICE_CODE "urn:ietf:params:oauth:grant-type:device_code"

enum MHD_Result qrl__h_metadata(qrl__req *r, const char *arg)
{
    const char *u = r->srv->public_url;
    char dae[300], te[300], ie[300], re[300];

    snprintf(dae, sizeof dae, "%s/oauth/device_authorization", u);
    snprintf(te, sizeof te, "%s/oauth/token", u);
    snprintf(ie, sizeof ie, "%s/oauth/introspect", u);
    snprintf(re, sizeof re, "%s/oauth/revoke", u);
    /* RFC 9449 section 5.1: the algorithms of DPoP proofs we verify (dpop.c: EdDSA only). */
    return qrl__respond_json(
        r, 200,
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s,s], s:[], s:[s], s:[s], s:[s,s], s:[s]}",
                  "issuer", u, "device_authorization_endpoint", dae, "token_endpoint", te,
                  "introspection_endpoint", ie, "revocation_endpoint", re, "grant_types_supported",
                  GRANT_DEVICE_CODE, "refresh_token", "response_types_supported",
                  "token_endpoint_auth_methods_supported", "none",
                  "revocation_endpoint_auth_methods_supported", "none",
                  "introspection_endpoint_auth_methods_supported", "client_secret_basic", "bearer",
                  "dpop_signing_alg_values_supported", "EdDSA"));
}

static const qrl__errsay form_say[] = {
    {QRL_ERR_INVALID, {0, NULL, "malformed form body"}},
    QRL__SAY_END,
};

/* Parses a form body, answering 400 (or 503 without memory) itself on any problem (returns
 * false then). */
static bool read_form(qrl__req *r, qrl__form *f, enum MHD_Result *ret)
{
    /* An empty body is an empty form whatever its type, so that `curl -X POST` without
     * parameters is told which one is missing. */
    if (r->body_len > 0 && !qrl__content_type_is(r, "application/x-www-form-urlencoded")) {
        *ret = qrl__respond_error(r, 400, "invalid_request",
                                  "body must be application/x-www-form-urlencoded");
        return false;
    }
    qrl_err rc = qrl__form_parse(r->body != NULL ? r->body : "", r->body_len, f);
    if (rc != QRL_OK) {
        qrl__form_clear(f);
        *ret = qrl__respond_err_as(r, rc, QRL__CTX_OAUTH, form_say, NULL, NULL);
        return false;
    }
    if (f->duplicate) {
        qrl__form_clear(f);
        *ret = qrl__respond_error(r, 400, "invalid_request", "a parameter is repeated");
        return false;
    }
    return true;
}

/* Parameter `name` of form `f`. When it is missing or empty, answers 400 invalid_request (RFC
 * 6749 section 5.2) naming it, clears `f` and returns NULL with the answer in *ret. */
static const char *form_required(qrl__req *r, qrl__form *f, const char *name, enum MHD_Result *ret)
{
    const char *v = qrl__form_get(f, name);
    char why[64];

    if (v != NULL && v[0] != '\0')
        return v;
    qrl__form_clear(f);
    snprintf(why, sizeof why, "%s is required", name);
    *ret = qrl__respond_error(r, 400, "invalid_request", why);
    return NULL;
}

static const qrl__errsay authorize_say[] = {
    {QRL_ERR_INVALID, {0, NULL, "client_id, scope, device_name or device_kind is not valid"}},
    QRL__SAY_END,
};

/* The key a device authorization request names (RFC 9449 section 10, dpop_jkt, as for an
 * authorization request): the `dpop_jkt` parameter, or the key of a DPoP proof sent with the
 * request, or both when they agree. Writes the thumbprint into `jkt` ("" for none) and returns
 * true; answers 400 itself and returns false when the parameter is not a thumbprint
 * (invalid_request), the proof is bad, or its key is not the one the parameter names
 * (invalid_dpop_proof). A proof is used up like one at the token endpoint. */
static bool authorize_key(qrl__req *r, const char *param, char jkt[QRL_DPOP_JKT_LEN + 1],
                          enum MHD_Result *ret)
{
    qrl__dpop d;
    char why[192];
    qrl_err rc;

    jkt[0] = '\0';
    /* RFC 6749 section 3.1: a parameter without a value is as if omitted. */
    if (param != NULL && param[0] != '\0' && !qrl_dpop_jkt_valid(param)) {
        *ret = qrl__respond_error(r, 400, "invalid_request",
                                  "dpop_jkt must be the RFC 7638 SHA-256 thumbprint of the "
                                  "screen's key: 43 characters of base64url without padding");
        return false;
    }
    rc = qrl__dpop_read(r, "/oauth/device_authorization", NULL, &d, why, sizeof why);
    if (rc == QRL_ERR_NOT_FOUND) {
        if (param != NULL)
            memcpy(jkt, param, strlen(param) + 1);
        return true;
    }
    if (rc == QRL_OK && param != NULL && param[0] != '\0' &&
        sodium_memcmp(d.jkt, param, QRL_DPOP_JKT_LEN) != 0) {
        snprintf(why, sizeof why,
                 "the DPoP proof's key is not the key dpop_jkt names; send one key, or both of "
                 "the same key");
        rc = QRL_ERR_INVALID;
    }
    if (rc == QRL_OK)
        rc = qrl__dpop_use(r, &d, why, sizeof why);
    if (rc != QRL_OK) {
        *ret = qrl__dpop_refuse(r, rc, why);
        return false;
    }
    memcpy(jkt, d.jkt, QRL_DPOP_JKT_LEN + 1);
    return true;
}

enum MHD_Result qrl__h_device_authorization(qrl__req *r, const char *arg)
{
    qrl__form f;
    qrl_device_auth da;
    enum MHD_Result ret;
    char complete[512], verify[300], jkt[QRL_DPOP_JKT_LEN + 1];
    const char *client_id, *platform, *kind;
    qrl_err rc;

    if (!read_form(r, &f, &ret))
        return ret;
    if ((client_id = form_required(r, &f, "client_id", &ret)) == NULL)
        return ret;
    /* Checked here too so that the answer can name the one optional field a client is most
     * likely to fill from something it does not control (a user agent, a firmware string). */
    platform = qrl__form_get(&f, "device_platform");
    if (!qrl_device_platform_valid(platform)) {
        char why[96];
        qrl__form_clear(&f);
        snprintf(why, sizeof why,
                 "device_platform must be at most %d bytes of text without control characters",
                 QRL_MAX_DEVICE_PLATFORM);
        return qrl__respond_error(r, 400, "invalid_request", why);
    }
    kind = qrl__form_get(&f, "device_kind");
    if (kind != NULL && kind[0] != '\0' &&
        (!qrl_device_kind_valid(kind) || strcmp(kind, "phone") == 0)) {
        qrl__form_clear(&f);
        return qrl__respond_error(r, 400, "invalid_request",
                                  "device_kind must be one of tv, browser, desktop, cli, other");
    }
    if (!authorize_key(r, qrl__form_get(&f, "dpop_jkt"), jkt, &ret)) {
        qrl__form_clear(&f);
        return ret;
    }
    rc = qrl_device_authorize_dpop(
        r->srv->core, client_id, qrl__form_get(&f, "scope"), qrl__form_get(&f, "device_name"),
        qrl__form_get(&f, "device_kind"), platform, jkt, r->address, &da);
    if (rc == QRL_OK)
        qrl__login_event(r, QRL__OUT_CREATED,
                         &(qrl__ids){.lr_id = da.lr_id, .client_id = client_id});
    qrl__form_clear(&f);
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, QRL__CTX_OAUTH, authorize_say, NULL, NULL);
    /* The scan secret goes in the fragment: browsers never send it, so no log can hold it.
     * A request bound to a key has the key's short form in the query (qrl__qr_url). */
    char body[1024];
    int n = -1, m;
    if (r->srv->public_url_json[0] != '\0' && qrl__json_plain(da.device_code) &&
        qrl__json_plain(da.user_code) && qrl__json_plain(da.scan_secret) &&
        (m = qrl__qr_url(r->srv->public_url_json, da.scan_secret, da.dpop_jkt, complete,
                         sizeof complete)) > 0 &&
        (size_t)m < sizeof complete)
        /* Formatted as text (qrl__respond_text); the public URL was escaped at start. A very
         * long public URL does not fit and takes jansson below. */
        n = snprintf(body, sizeof body,
                     "{\"device_code\":\"%s\",\"user_code\":\"%s\",\"verification_uri\":"
                     "\"%s/device\",\"verification_uri_complete\":\"%s\","
                     "\"expires_in\":%lld,\"interval\":%d}",
                     da.device_code, da.user_code, r->srv->public_url_json, complete,
                     (long long)da.expires_in_s, da.interval_s);
    if (n > 0 && (size_t)n < sizeof body) {
        ret = qrl__respond_text(r, 200, body, (size_t)n, NULL);
    } else {
        snprintf(verify, sizeof verify, "%s/device", r->srv->public_url);
        (void)qrl__qr_url(r->srv->public_url, da.scan_secret, da.dpop_jkt, complete,
                          sizeof complete);
        ret = qrl__respond_json(r, 200,
                                json_pack("{s:s, s:s, s:s, s:s, s:I, s:i}", "device_code",
                                          da.device_code, "user_code", da.user_code,
                                          "verification_uri", verify, "verification_uri_complete",
                                          complete, "expires_in", (json_int_t)da.expires_in_s,
                                          "interval", da.interval_s));
    }
    sodium_memzero(complete, sizeof complete);
    sodium_memzero(body, sizeof body);
    sodium_memzero(&da, sizeof da);
    return ret;
}

int qrl__prefer_wait(qrl__req *r)
{
    const char *p = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Prefer");
    long n = 0;

    while (p != NULL && *p != '\0') {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (strncasecmp(p, "wait", 4) == 0) {
            const char *q = p + 4;
            while (*q == ' ')
                q++;
            if (*q == '=') {
                char *end;
                q++;
                while (*q == ' ')
                    q++;
                if (*q >= '0' && *q <= '9') {
                    n = strtol(q, &end, 10);
                    break;
                }
            }
        }
        p = strchr(p, ',');
    }
    if (n < 0)
        return 0;
    return n > QRL_MAX_WAIT_S ? QRL_MAX_WAIT_S : (int)n;
}

static enum MHD_Result answer_tokens(qrl__req *r, const qrl_tokens *t, const char *const *hdr)
{
    /* RFC 9449 section 5: tokens bound to the screen's key are of type DPoP. */
    const char *type = t->dpop_bound ? "DPoP" : "Bearer";

    if (qrl__json_plain(t->access_token) && qrl__json_plain(t->refresh_token) &&
        qrl__json_plain(t->scope)) {
        /* Formatted as text (qrl__respond_text): one of the four answers of every login. */
        char body[1024];
        int n = snprintf(body, sizeof body,
                         "{\"access_token\":\"%s\",\"token_type\":\"%s\",\"expires_in\":%lld,"
                         "\"refresh_token\":\"%s\"%s%s%s}",
                         t->access_token, type, (long long)t->expires_in_s, t->refresh_token,
                         t->scope[0] != '\0' ? ",\"scope\":\"" : "", t->scope,
                         t->scope[0] != '\0' ? "\"" : "");
        if (n > 0 && (size_t)n < sizeof body) {
            enum MHD_Result ret = qrl__respond_text(r, 200, body, (size_t)n, hdr);
            sodium_memzero(body, sizeof body);
            return ret;
        }
        sodium_memzero(body, sizeof body); /* too long: jansson below */
    }
    json_t *o =
        json_pack("{s:s, s:s, s:I, s:s}", "access_token", t->access_token, "token_type", type,
                  "expires_in", (json_int_t)t->expires_in_s, "refresh_token", t->refresh_token);

    if (o != NULL && t->scope[0] != '\0')
        json_object_set_new(o, "scope", json_string(t->scope));
    return qrl__respond_json_hdr(r, 200, o, hdr);
}

/* Builds the final answer of a device-code grant request. */
/* Our extension: "status" tells a screen that a phone has scanned, so it can say "Confirm on
 * your phone"; standard clients ignore the extra member. */
static json_t *pending_body(const qrl_poll_result *res)
{
    return json_pack("{s:s, s:s, s:s, s:i}", "error",
                     qrl__err_answer(QRL_ERR_PENDING, QRL__CTX_OAUTH, NULL).code,
                     "error_description",
                     res->state == QRL_LR_SCANNED ? "scanned; waiting for the user to confirm"
                                                  : "waiting for the user to scan the code",
                     "status", qrl_lr_state_name(res->state), "interval", res->interval_s);
}

/* The answer to a plain poll of a pending or scanned request: the same for every request with
 * the same state and interval, so it is made once and shared (struct qrl_server). */
static enum MHD_Result pending_shared(qrl__req *r, const qrl_poll_result *res)
{
    qrl_server *srv = r->srv;
    int st = res->state == QRL_LR_SCANNED ? 1 : 0;
    _Atomic(struct MHD_Response *) *slot;
    struct MHD_Response *resp;
    size_t *len;

    if (res->interval_s < 0 || res->interval_s > QRL_MAX_POLL_INTERVAL_S ||
        (res->state != QRL_LR_PENDING && res->state != QRL_LR_SCANNED))
        return qrl__respond_json(r, 400, pending_body(res));
    slot = &srv->pending_answer[st][res->interval_s];
    len = &srv->pending_len[st][res->interval_s];
    resp = atomic_load_explicit(slot, memory_order_acquire);
    if (resp == NULL) {
        pthread_mutex_lock(&srv->shared_mu);
        resp = atomic_load_explicit(slot, memory_order_relaxed);
        if (resp == NULL) {
            resp = qrl__response_json(pending_body(res), len);
            atomic_store_explicit(slot, resp, memory_order_release);
        }
        pthread_mutex_unlock(&srv->shared_mu);
    }
    if (resp == NULL)
        return MHD_NO;
    return qrl__respond_shared(r, 400, resp, *len);
}

static enum MHD_Result device_code_answer(qrl__req *r, qrl_err rc, qrl_poll_result *res)
{
    char applied[16];
    const char *hdr[3] = {NULL};
    enum MHD_Result ret;
    int64_t lr_id = res->lr_id != 0 ? res->lr_id : r->lr_id;

    /* The screen's side of a login's end, for the web screen's wait too. */
    if (rc == QRL_OK)
        qrl__login_event(r, QRL__OUT_REDEEMED,
                         &(qrl__ids){.lr_id = lr_id,
                                     .account_id = res->tokens.account_id,
                                     .device_id = res->tokens.device_id,
                                     .client_id = r->client_id[0] != '\0' ? r->client_id : NULL});
    else if (rc == QRL_ERR_EXPIRED)
        qrl__login_event(r, QRL__OUT_EXPIRED, &(qrl__ids){.lr_id = lr_id});
    if (r->web)
        return qrl__web_screen_answer(r, rc, res);
    /* A request bound to a key at device authorization (RFC 9449 section 10) and a token
     * request without a proof of that key: nothing happened (qrl_token_device_code_dpop). */
    if (rc == QRL_ERR_UNAUTHORIZED)
        return qrl__dpop_refuse(r, QRL_ERR_INVALID,
                                "this login request is bound to a DPoP key (dpop_jkt): send a "
                                "DPoP proof made with that key");
    if (rc == QRL_ERR_FORBIDDEN)
        return qrl__dpop_refuse(r, QRL_ERR_INVALID,
                                "this login request is bound to another DPoP key than this "
                                "proof's (dpop_jkt)");
    if (r->wait_s > 0) {
        snprintf(applied, sizeof applied, "wait=%d", r->wait_s);
        hdr[0] = "Preference-Applied";
        hdr[1] = applied;
    }
    if (rc == QRL_OK) {
        ret = answer_tokens(r, &res->tokens, hdr);
        sodium_memzero(&res->tokens, sizeof res->tokens);
        return ret;
    }
    if (rc == QRL_ERR_PENDING && r->wait_s == 0)
        return pending_shared(r, res);
    if (rc == QRL_ERR_PENDING)
        return qrl__respond_json_hdr(r, 400, pending_body(res), hdr);
    /* RFC 8628 section 3.5: slow_down tells the client its new interval. */
    return qrl__respond_err_as(
        r, rc, QRL__CTX_OAUTH, NULL,
        rc == QRL_ERR_SLOW_DOWN ? json_pack("{s:i}", "interval", res->interval_s) : NULL, hdr);
}

enum MHD_Result qrl__device_code_run(qrl__req *r, unsigned flags)
{
    qrl_poll_result res;
    qrl_err rc;

    /* A few rounds cover changes racing with suspension; after that, answer. */
    for (int round = 0; round < 4; round++) {
        uint64_t seq = qrl__hub_seq(r->srv->hub);
        if (qrl__mono_ms() >= r->deadline_mono_ms)
            flags |= QRL_POLL_FINAL;
        rc = qrl_token_device_code_dpop(r->srv->core, r->client_id, r->device_code, flags,
                                        r->wait_s, r->address, r->dpop ? r->dpop_key : NULL, &res);
        if (res.lr_id != 0)
            r->lr_id = res.lr_id;
        if (!(rc == QRL_ERR_PENDING && res.hold))
            return device_code_answer(r, rc, &res);
        if (!r->held) {
            int64_t left = res.expires_ms - qrl_core_now_ms(r->srv->core);
            int64_t hold = (int64_t)r->wait_s * 1000;
            r->deadline_mono_ms = qrl__mono_ms() + (left < hold ? (left > 0 ? left : 0) : hold);
        }
        qrl_err w = qrl__hub_wait(r->srv->hub, r, res.lr_id, r->deadline_mono_ms, seq);
        if (w == QRL_OK) {
            qrl__hold_begin(r);
            return MHD_YES;
        }
        flags |= QRL_POLL_RECHECK;
        if (w == QRL_ERR_BUSY)
            flags |= QRL_POLL_FINAL;
    }
    flags |= QRL_POLL_RECHECK | QRL_POLL_FINAL;
    rc = qrl_token_device_code_dpop(r->srv->core, r->client_id, r->device_code, flags, r->wait_s,
                                    r->address, r->dpop ? r->dpop_key : NULL, &res);
    return device_code_answer(r, rc, &res);
}

enum MHD_Result qrl__h_token_resume(qrl__req *r)
{
    unsigned flags = QRL_POLL_WAIT | QRL_POLL_RECHECK;

    /* A screen that gave up while held must not have the request redeemed on its behalf: the
     * tokens would go to a closed socket and its next poll would find the code spent. Close
     * the connection instead; the request stays APPROVED for the screen's next poll. */
    if (r->handed) {
        qrl_poll_result res = {.state = QRL_LR_REDEEMED, .tokens = r->handed_tokens};
        enum MHD_Result ret = device_code_answer(r, QRL_OK, &res);
        sodium_memzero(&r->handed_tokens, sizeof r->handed_tokens);
        r->handed = false;
        return ret;
    }
    if (qrl__peer_gone(r))
        return qrl__client_gone(r);

    if (qrl__hub_finish(r->srv->hub, r))
        flags |= QRL_POLL_FINAL;
    return qrl__device_code_run(r, flags);
}

static enum MHD_Result grant_device_code(qrl__req *r, const qrl__form *f)
{
    const char *client_id = qrl__form_get(f, "client_id");
    const char *code = qrl__form_get(f, "device_code");

    if (client_id == NULL || client_id[0] == '\0' || code == NULL || code[0] == '\0')
        return qrl__respond_error(r, 400, "invalid_request",
                                  "client_id and device_code are required");
    if (strlen(client_id) > QRL_MAX_CLIENT_ID || strlen(code) >= sizeof r->device_code)
        return qrl__respond_error(r, 400, "invalid_request",
                                  "client_id or device_code is longer than any we issue");
    /* --dpop required: every screen signing in here binds its tokens to a key. Refused before
     * the poll, so that a bearer client learns it at its first request, not after approval. */
    if (r->srv->cfg.dpop_required && !r->dpop)
        return qrl__dpop_refuse(r, QRL_ERR_INVALID,
                                "this server requires a DPoP proof (RFC 9449, EdDSA) with every "
                                "device-code token request");
    memcpy(r->client_id, client_id, strlen(client_id) + 1);
    memcpy(r->device_code, code, strlen(code) + 1);
    r->wait_s = qrl__prefer_wait(r);
    r->deadline_mono_ms = INT64_MAX;
    return qrl__device_code_run(r, r->wait_s > 0 ? QRL_POLL_WAIT : 0);
}

bool qrl__h_token_quick(qrl__req *r, enum MHD_Result *ret)
{
    qrl__form f;
    const char *grant, *client_id, *code;
    qrl_poll_result res;
    qrl_err rc = QRL_ERR_NOT_FOUND;

    /* A proof is verified and used up by the full path (it writes to the store), and under
     * --dpop required a request without one is refused there. */
    if (!qrl__content_type_is(r, "application/x-www-form-urlencoded") || qrl__prefer_wait(r) > 0 ||
        r->srv->cfg.dpop_required ||
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "DPoP") != NULL)
        return false;
    if (qrl__form_parse(r->body != NULL ? r->body : "", r->body_len, &f) == QRL_OK &&
        !f.duplicate) {
        grant = qrl__form_get(&f, "grant_type");
        client_id = qrl__form_get(&f, "client_id");
        code = qrl__form_get(&f, "device_code");
        if (grant != NULL && strcmp(grant, GRANT_DEVICE_CODE) == 0 && client_id != NULL &&
            client_id[0] != '\0' && strlen(client_id) <= QRL_MAX_CLIENT_ID && code != NULL &&
            strlen(code) < sizeof r->device_code)
            rc = qrl_token_device_code(r->srv->core, client_id, code, QRL_POLL_MEMORY, 0,
                                       r->address, &res);
    }
    if (f.buf != NULL)
        sodium_memzero(f.buf, r->body_len);
    qrl__form_clear(&f);
    if (rc == QRL_ERR_NOT_FOUND)
        return false;
    *ret = device_code_answer(r, rc, &res);
    return true;
}

/* RFC 6749 section 5.2: a refresh token that is unknown, expired, revoked or another client's
 * is invalid_grant (the OAuth column's EXPIRED, expired_token, is the device code's); a reused
 * one has signed its device out (RFC 9700 section 4.14.2). */
#define REFRESH_BAD "refresh token is unknown, expired, revoked or not this client's"
static const qrl__errsay refresh_say[] = {
    {QRL_ERR_TOKEN_REUSED, {0, NULL, "refresh token already used; the device has been signed out"}},
    {QRL_ERR_NOT_FOUND, {0, "invalid_grant", REFRESH_BAD}},
    {QRL_ERR_EXPIRED, {0, "invalid_grant", REFRESH_BAD}},
    {QRL_ERR_REVOKED, {0, "invalid_grant", REFRESH_BAD}},
    {QRL_ERR_INVALID_CLIENT, {0, "invalid_grant", REFRESH_BAD}},
    /* RFC 9449 section 5: a refresh token bound to a key needs a proof with that key. */
    {QRL_ERR_UNAUTHORIZED,
     {400, "invalid_dpop_proof",
      "this refresh token is bound to a DPoP key: send a DPoP proof made with that key"}},
    {QRL_ERR_FORBIDDEN, {400, "invalid_grant", "this refresh token is bound to another DPoP key"}},
    QRL__SAY_END,
};

static enum MHD_Result grant_refresh(qrl__req *r, const qrl__form *f)
{
    const char *client_id = qrl__form_get(f, "client_id");
    const char *token = qrl__form_get(f, "refresh_token");
    qrl_tokens t;
    enum MHD_Result ret;
    qrl_err rc;

    if (token == NULL || token[0] == '\0')
        return qrl__respond_error(r, 400, "invalid_request", "refresh_token is required");
    if (client_id != NULL && client_id[0] == '\0')
        client_id = NULL; /* RFC 6749 section 6: a public client need not identify itself */
    if (strlen(token) > QRL_MAX_TOKEN ||
        (client_id != NULL && strlen(client_id) > QRL_MAX_CLIENT_ID))
        return qrl__respond_error(r, 400, "invalid_request",
                                  "client_id or refresh_token is longer than any we issue");
    rc = qrl_token_refresh_dpop(r->srv->core, client_id, token, r->dpop ? r->dpop_key : NULL, &t);
    if (rc == QRL_ERR_TOKEN_REUSED)
        qrl__audit(r, "refresh_token_reused", &(qrl__ids){.client_id = client_id});
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, QRL__CTX_OAUTH, refresh_say, NULL, NULL);
    ret = answer_tokens(r, &t, NULL);
    sodium_memzero(&t, sizeof t);
    return ret;
}

/* The DPoP proof of a token request (RFC 9449 section 5), verified and used up: sets r->dpop
 * and r->dpop_key when there is one. A request without a proof passes (r->dpop false; the
 * grants decide what that means); a bad one is answered 400 invalid_dpop_proof here. */
static bool token_proof(qrl__req *r, enum MHD_Result *ret)
{
    qrl__dpop d;
    char why[192];
    qrl_err rc = qrl__dpop_read(r, "/oauth/token", NULL, &d, why, sizeof why);

    r->dpop = false;
    if (rc == QRL_ERR_NOT_FOUND)
        return true;
    if (rc == QRL_OK)
        rc = qrl__dpop_use(r, &d, why, sizeof why);
    if (rc != QRL_OK) {
        *ret = qrl__dpop_refuse(r, rc, why);
        return false;
    }
    r->dpop = true;
    memcpy(r->dpop_key, d.key, sizeof r->dpop_key);
    return true;
}

/* The two grants, each after its request's proof (if any) passed. */
static enum MHD_Result grant_with_proof(qrl__req *r, const qrl__form *f, const char *grant)
{
    enum MHD_Result ret;

    if (!token_proof(r, &ret))
        return ret;
    if (strcmp(grant, GRANT_DEVICE_CODE) == 0)
        return grant_device_code(r, f);
    return grant_refresh(r, f);
}

enum MHD_Result qrl__h_token(qrl__req *r, const char *arg)
{
    qrl__form f;
    enum MHD_Result ret;
    const char *grant;

    if (!read_form(r, &f, &ret))
        return ret;
    grant = qrl__form_get(&f, "grant_type");
    if (grant == NULL || grant[0] == '\0')
        ret = qrl__respond_error(r, 400, "invalid_request", "grant_type is required");
    else if (strcmp(grant, GRANT_DEVICE_CODE) == 0 || strcmp(grant, "refresh_token") == 0)
        ret = grant_with_proof(r, &f, grant);
    else
        ret = qrl__respond_error(r, 400, "unsupported_grant_type",
                                 "supported: device_code and refresh_token");
    if (f.buf != NULL)
        sodium_memzero(f.buf, r->body_len);
    qrl__form_clear(&f);
    return ret;
}

/* RFC 7662 section 2.1: the resource server authenticates. We accept the shared secret as a
 * bearer token or as the password of HTTP Basic. */
static bool introspection_authorized(qrl__req *r)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    const char *secret = r->srv->introspection_secret;
    size_t slen = strlen(secret);
    unsigned char dec[QRL_MAX_TOKEN * 2 + 2];
    size_t dlen = 0;

    if (slen == 0 || h == NULL)
        return false;
    if (strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        return strlen(h) == slen && sodium_memcmp(h, secret, slen) == 0;
    }
    if (strncasecmp(h, "Basic ", 6) == 0) {
        h += 6;
        if (sodium_base642bin(dec, sizeof dec - 1, h, strlen(h), NULL, &dlen, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0)
            return false;
        dec[dlen] = '\0';
        const unsigned char *colon = memchr(dec, ':', dlen);
        if (colon == NULL)
            return false;
        size_t plen = dlen - (size_t)(colon + 1 - dec);
        bool ok = plen == slen && sodium_memcmp(colon + 1, secret, slen) == 0;
        sodium_memzero(dec, sizeof dec);
        return ok;
    }
    return false;
}

static const char *kind_name(qrl_token_kind k)
{
    switch (k) {
    case QRL_TOKEN_ACCESS:
        return "access_token";
    case QRL_TOKEN_REFRESH:
        return "refresh_token";
    case QRL_TOKEN_SESSION:
        return "session_token";
    }
    return "unknown";
}

enum MHD_Result qrl__h_introspect(qrl__req *r, const char *arg)
{
    qrl__form f;
    qrl_introspection in;
    enum MHD_Result ret;
    const char *token;
    char sub[24];
    qrl_err rc;

    if (!introspection_authorized(r))
        return qrl__respond_error(r, 401, "invalid_client",
                                  "introspection needs the resource-server secret");
    if (!read_form(r, &f, &ret))
        return ret;
    if ((token = form_required(r, &f, "token", &ret)) == NULL)
        return ret;
    rc = strlen(token) > QRL_MAX_TOKEN ? (memset(&in, 0, sizeof in), QRL_OK)
                                       : qrl_introspect(r->srv->core, token, &in);
    sodium_memzero(f.buf, r->body_len);
    qrl__form_clear(&f);
    if (rc != QRL_OK)
        return qrl__respond_err(r, rc, QRL__CTX_OAUTH);
    if (!in.active)
        return qrl__respond_json(r, 200, json_pack("{s:b}", "active", 0));
    snprintf(sub, sizeof sub, "%lld", (long long)in.account_id);
    /* RFC 9449 section 6.2: a bound access token is of type DPoP, and cnf.jkt names its key,
     * so that the resource server checks the request's proof against it. */
    const char *type = in.dpop_bound && in.kind == QRL_TOKEN_ACCESS ? "DPoP" : kind_name(in.kind);
    json_t *o = json_pack("{s:b, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "active", 1, "token_type",
                          type, "sub", sub, "username", in.username, "client_id", in.client_id,
                          "device_id", (json_int_t)in.device_id, "iat", (json_int_t)in.iat_s, "exp",
                          (json_int_t)in.exp_s);
    if (o != NULL && in.scope[0] != '\0')
        json_object_set_new(o, "scope", json_string(in.scope));
    if (o != NULL && in.dpop_bound) {
        char jkt[QRL__JKT_BUF];
        qrl__dpop_thumbprint(in.dpop_key, jkt);
        json_object_set_new(o, "cnf", json_pack("{s:s}", "jkt", jkt));
    }
    return qrl__respond_json(r, 200, o);
}

enum MHD_Result qrl__h_revoke(qrl__req *r, const char *arg)
{
    qrl__form f;
    enum MHD_Result ret;
    const char *token;
    qrl_err rc = QRL_OK;

    if (!read_form(r, &f, &ret))
        return ret;
    if ((token = form_required(r, &f, "token", &ret)) == NULL)
        return ret;
    if (strlen(token) <= QRL_MAX_TOKEN)
        rc = qrl_revoke_token(r->srv->core, token);
    sodium_memzero(f.buf, r->body_len);
    qrl__form_clear(&f);
    if (rc != QRL_OK)
        return qrl__respond_err(r, rc, QRL__CTX_OAUTH);
    return qrl__respond_json(r, 200, json_object());
}
