/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: how the client SDK reads a server's answers (client/transport.c,
 * client/client.c, client/dpop.c). An app trusts the SDK with whatever a server or a proxy in
 * front of it sends; here every answer is arbitrary bytes. The input is an HTTP answer as
 * libcurl hands it over: header blocks ("HTTP/1.1 200 OK\r\nName: value\r\n...\r\n\r\n", 1xx
 * blocks first) and then the body; an input that does not start with "HTTP/" is all body, with
 * status 200. The compiled-in SDK sources are called directly through their qrlc__ parse
 * functions, on a fresh handle for each input (server_url https://login.example, scope
 * "profile"); nothing goes to the network.
 *
 * Invariants (abort() on violation):
 *   - headers: Retry-After is the last delay-seconds value of the final block (1 to 6 digits,
 *     RFC 9110 section 10.2.3) or -1, Preference-Applied is seen when a value of the final
 *     block names wait (RFC 7240 section 3), a Date is read only from the final block, and
 *     the clock skew a DPoP proof uses is learnt only from a readable Date;
 *   - the body is read as a JSON object or not at all;
 *   - metadata (RFC 8414): accepted only with issuer == server_url, the two required endpoints
 *     and the optional revocation endpoint are then exactly the answer's strings, at most
 *     QRLC__MAX_URL bytes and URLs qrlc__check_url() accepts, and DPoP is on exactly when
 *     EdDSA is among the proof algorithms; on refusal no endpoint is kept;
 *   - tokens (RFC 6749 section 5.1): accepted only with a non-empty access_token and a Bearer
 *     token_type (or DPoP after a request with a proof, RFC 9449 section 5, and then bound);
 *     the access token is then held exactly, as are the refresh token, scope and expires_in
 *     (with the documented defaults when absent); a refused answer leaves no partial token,
 *     and a refused refresh answer leaves the tokens held before exactly as they were;
 *   - device authorization (RFC 8628 section 3.2): accepted fields are non-empty, terminated,
 *     printable where they are shown, expires_in 1 to 86400 s and the interval 1 to 300 s;
 *   - token errors (RFC 8628 section 3.5): only the documented results; pending keeps or takes
 *     the server's interval, slow_down adds 5 s (or takes a larger interval from the server),
 *     both within 1 to 300 s, and the next delay is within one interval;
 *   - the handle's error detail (qrl_client_last_error, which apps show and log) is always
 *     terminated in its buffer and printable ASCII, whatever the server sent.
 * Run by scripts/fuzz.sh (part of scripts/test.sh).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant does not hold: say which check, then abort() for libFuzzer. */
#define BROKEN() broken(__LINE__)
static _Noreturn void broken(int line)
{
    fprintf(stderr, "%s:%d: this check failed\n", __FILE__, line);
    abort();
}

#define SERVER "https://login.example"
#define SCOPE "profile"
#define OLD_REFRESH "qrl_rt_the-token-held-before-this-answer"

static qrl_client *client_new(void)
{
    qrl_client_options o = {.server_url = SERVER, .client_id = "tv-app", .scope = SCOPE};
    qrl_client *c = NULL;

    if (qrl_client_new(&o, &c) != QRL_OK)
        BROKEN();
    return c;
}

/* The error detail: terminated, and printable ASCII only (no byte an app's log or terminal
 * would act on, whatever the server sent). */
static void check_detail(const qrl_client *c)
{
    size_t n = strnlen(c->err, sizeof c->err);

    if (n == sizeof c->err)
        BROKEN();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)c->err[i] < 0x20 || (unsigned char)c->err[i] > 0x7e)
            BROKEN();
}

/* --- headers -------------------------------------------------------------------------------- */

struct header_model {
    long retry_after;
    int wait, date; /* date: the block has a Date header */
};

/* One header line against RFC 9110 / RFC 7240, written apart from transport.c. */
static void model_line(struct header_model *m, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n), *v, *end = line + n;
    size_t nl;

    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        m->retry_after = -1;
        m->wait = m->date = 0;
        return;
    }
    if (colon == NULL)
        return;
    nl = (size_t)(colon - line);
    for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++)
        ;
    while (end > v && strchr(" \t\r\n", end[-1]) != NULL && end[-1] != '\0')
        end--;
    if (nl == 4 && strncasecmp(line, "Date", nl) == 0)
        m->date = 1;
    if (nl == 18 && strncasecmp(line, "Preference-Applied", nl) == 0) {
        for (const char *p = v; p + 4 <= end; p++)
            if (strncasecmp(p, "wait", 4) == 0)
                m->wait = 1;
    } else if (nl == 11 && strncasecmp(line, "Retry-After", nl) == 0 && end > v && end - v <= 6) {
        long s = 0;
        const char *p = v;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            s = s * 10 + (*p - '0');
        if (p == end)
            m->retry_after = s;
    }
}

/* Feeds the header blocks at the start of the input; returns where the body starts. */
static size_t read_headers(qrlc__resp *r, const uint8_t *data, size_t size)
{
    struct header_model m = {-1, 0, 0};
    size_t pos = 0;

    r->status = 200;
    r->retry_after_s = -1;
    while (size - pos >= 5 && memcmp(data + pos, "HTTP/", 5) == 0) {
        const uint8_t *eoh = memmem(data + pos, size - pos, "\r\n\r\n", 4);
        const char *sp;
        if (eoh == NULL)
            break;
        sp = memchr(data + pos, ' ', (size_t)(eoh - data - pos));
        r->status = 0;
        if (sp != NULL && eoh - (const uint8_t *)sp > 3)
            for (int i = 1; i <= 3 && sp[i] >= '0' && sp[i] <= '9'; i++)
                r->status = r->status * 10 + (sp[i] - '0');
        while (data + pos < eoh + 2) {
            const uint8_t *nl = memchr(data + pos, '\n', (size_t)(eoh + 2 - data - pos));
            size_t n = (size_t)(nl - data - pos) + 1;
            qrlc__resp_header(r, (const char *)data + pos, n);
            model_line(&m, (const char *)data + pos, n);
            pos += n;
        }
        pos += 2;
    }
    if (r->retry_after_s != m.retry_after || r->preference_applied != m.wait || r->date < 0 ||
        (!m.date && r->date != 0))
        BROKEN();
    return pos;
}

/* --- metadata ------------------------------------------------------------------------------- */

static void check_endpoint(const qrl_client *c, const char *got, json_t *meta, const char *key)
{
    const char *want = json_string_value(json_object_get(meta, key));
    char why[QRL_CLIENT_ERROR_MAX];

    if (got == NULL ? want != NULL && strcmp(key, "revocation_endpoint") != 0 : want == NULL)
        BROKEN();
    if (got == NULL)
        return;
    if (strcmp(got, want) != 0 || strlen(got) > QRLC__MAX_URL ||
        qrlc__check_url(key, got, c->allow_insecure_http, why, sizeof why) != QRL_OK)
        BROKEN();
}

/* RFC 9449 section 5.1: the server takes EdDSA proofs. */
static bool takes_eddsa(json_t *meta)
{
    json_t *algs = json_object_get(meta, "dpop_signing_alg_values_supported");

    for (size_t i = 0; json_is_array(algs) && i < json_array_size(algs); i++) {
        const char *a = json_string_value(json_array_get(algs, i));
        if (a != NULL && strcmp(a, "EdDSA") == 0)
            return true;
    }
    return false;
}

static void check_metadata(const qrlc__resp *r)
{
    qrl_client *c = client_new();
    qrl_err rc = qrlc__parse_metadata(c, r, SERVER "/.well-known/oauth-authorization-server");

    check_detail(c);
    if (rc == QRL_OK && c->dpop != takes_eddsa(r->json))
        BROKEN();
    if (rc != QRL_OK) {
        if (c->token_ep != NULL || c->devauth_ep != NULL || c->revoke_ep != NULL)
            BROKEN();
    } else {
        const char *issuer = json_string_value(json_object_get(r->json, "issuer"));
        if (r->status != 200 || issuer == NULL || strcmp(issuer, SERVER) != 0 ||
            c->token_ep == NULL || c->devauth_ep == NULL)
            BROKEN();
        check_endpoint(c, c->token_ep, r->json, "token_endpoint");
        check_endpoint(c, c->devauth_ep, r->json, "device_authorization_endpoint");
        check_endpoint(c, c->revoke_ep, r->json, "revocation_endpoint");
        if (c->revoke_ep == NULL && json_is_string(json_object_get(r->json, "revocation_endpoint")))
            BROKEN();
    }
    qrl_client_free(c);
}

/* --- tokens --------------------------------------------------------------------------------- */

/* A string member as the SDK keeps it: non-empty and shorter than cap, else NULL. */
static const char *member(json_t *o, const char *key, size_t cap)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL && s[0] != '\0' && strlen(s) < cap ? s : NULL;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return false;
    return true;
}

/* What an accepted token answer must have left in c->tok. */
static void check_tokens_taken(const qrl_client *c, const qrlc__resp *r,
                               const qrl_client_tokens *before)
{
    const qrl_client_tokens *t = &c->tok;
    const char *at = member(r->json, "access_token", sizeof t->access_token);
    const char *rt = member(r->json, "refresh_token", sizeof t->refresh_token);
    const char *scope = member(r->json, "scope", sizeof t->scope);
    const char *type = json_string_value(json_object_get(r->json, "token_type"));
    json_t *exp = json_object_get(r->json, "expires_in");
    long long now = (long long)time(NULL);
    bool dpop = type != NULL && strcasecmp(type, "DPoP") == 0;

    /* Bearer, or DPoP (RFC 9449 section 5) only after a request that proved the key. */
    if (!c->have_tokens || at == NULL || strcmp(t->access_token, at) != 0 || type == NULL ||
        (strcasecmp(type, "Bearer") != 0 && !(dpop && c->proof_sent)) ||
        c->dpop_bound != (dpop && c->proof_sent))
        BROKEN();
    if (json_object_get(r->json, "refresh_token") != NULL
            ? rt == NULL || strcmp(t->refresh_token, rt) != 0
            : strcmp(t->refresh_token, before != NULL ? before->refresh_token : "") != 0)
        BROKEN();
    if (strcmp(t->scope, scope != NULL ? scope : before != NULL ? before->scope : SCOPE) != 0)
        BROKEN();
    if (exp != NULL ? !json_is_integer(exp) || json_integer_value(exp) != t->expires_in
                    : t->expires_in != 0)
        BROKEN();
    if (t->expires_in < 0 || t->expires_in > 10L * 365 * 24 * 3600 ||
        t->expires_at < now - 5 + t->expires_in || t->expires_at > now + 5 + t->expires_in)
        BROKEN();
}

static void check_tokens(const qrlc__resp *r)
{
    qrl_client *c;
    qrl_client_tokens before;

    /* A first token answer, to a request without and with a DPoP proof. */
    for (int proof = 0; proof < 2; proof++) {
        c = client_new();
        c->proof_sent = proof;
        if (qrlc__take_tokens(c, r, 0) == QRL_OK)
            check_tokens_taken(c, r, NULL);
        else if (c->have_tokens || c->dpop_bound || !all_zero(&c->tok, sizeof c->tok))
            BROKEN();
        check_detail(c);
        qrl_client_free(c);
    }

    /* A refresh answer on a handle that holds tokens. */
    c = client_new();
    if (qrl_client_set_refresh_token(c, OLD_REFRESH) != QRL_OK)
        BROKEN();
    snprintf(c->tok.access_token, sizeof c->tok.access_token, "qrl_at_the-old-access-token");
    c->tok.expires_in = 3600;
    before = c->tok;
    if (qrlc__take_tokens(c, r, 1) == QRL_OK)
        check_tokens_taken(c, r, &before);
    else if (!c->have_tokens || memcmp(&c->tok, &before, sizeof before) != 0)
        BROKEN();
    check_detail(c);
    qrl_client_free(c);
}

/* --- device authorization ------------------------------------------------------------------- */

static void check_shown(const char *s, size_t cap, bool printable)
{
    size_t n = strnlen(s, cap);

    if (n == 0 || n == cap)
        BROKEN();
    for (size_t i = 0; printable && i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            BROKEN();
}

static void check_device_auth(const qrlc__resp *r)
{
    qrl_client *c = client_new();

    if (qrlc__parse_device_auth(c, r->json) == QRL_OK) {
        check_shown(c->device_code, sizeof c->device_code, false);
        check_shown(c->user_code, sizeof c->user_code, true);
        check_shown(c->verification_uri, sizeof c->verification_uri, true);
        check_shown(c->qr_payload, sizeof c->qr_payload, true);
        if (strcmp(c->device_code, member(r->json, "device_code", sizeof c->device_code)) != 0 ||
            c->expires_in < 1 || c->expires_in > 24 * 3600 || c->interval_s < 1 ||
            c->interval_s > QRLC__MAX_INTERVAL_S)
            BROKEN();
    }
    check_detail(c);
    qrl_client_free(c);
}

/* --- token errors --------------------------------------------------------------------------- */

static void check_grant_error(const qrlc__resp *r, int held, int interval)
{
    qrl_client *c = client_new();
    qrl_client_event ev;
    const char *err = json_string_value(json_object_get(r->json, "error"));
    json_t *jiv = json_object_get(r->json, "interval");
    long long iv =
        json_is_integer(jiv) && json_integer_value(jiv) >= 1 && json_integer_value(jiv) <= 3600
            ? json_integer_value(jiv)
            : 0;
    qrl_err rc;

    memset(&ev, 0, sizeof ev);
    c->interval_s = interval;
    c->delay_ms = -1;
    rc = qrlc__grant_error(c, r, held, qrlc__mono_ms(), &ev);
    check_detail(c);
    if (rc != QRL_OK && rc != QRL_ERR_EXPIRED && rc != QRL_ERR_DENIED && rc != QRL_ERR_NOT_FOUND &&
        rc != QRL_ERR_INVALID_CLIENT && rc != QRL_ERR_INVALID && rc != QRL_ERR_INTERNAL)
        BROKEN();
    if ((rc == QRL_ERR_EXPIRED) != (err != NULL && strcmp(err, "expired_token") == 0))
        BROKEN();
    if (rc == QRL_OK) {
        long long want = interval;
        if (strcmp(err, "slow_down") == 0)
            want = iv > interval + QRL_SLOW_DOWN_STEP_S ? iv : interval + QRL_SLOW_DOWN_STEP_S;
        else if (strcmp(err, "authorization_pending") != 0)
            BROKEN();
        else if (iv > 0)
            want = iv;
        if (want > QRLC__MAX_INTERVAL_S)
            want = QRLC__MAX_INTERVAL_S;
        if (c->interval_s != want || c->delay_ms < 0 || c->delay_ms > (long)want * 1000 ||
            (!held && c->delay_ms != (long)want * 1000) || c->err[0] != '\0')
            BROKEN();
        if (ev.type != QRL_CLIENT_EV_NONE && (ev.type != QRL_CLIENT_EV_SCANNED || !c->scanned))
            BROKEN();
    }
    qrl_client_free(c);
}

/* The server's clock from a Date header, for DPoP proofs (RFC 9449 section 8): learnt only from
 * a readable date, and then as the difference to ours. */
static void check_skew(const qrlc__resp *r)
{
    qrl_client *c = client_new();
    long long now = (long long)time(NULL);
    int changed = qrlc__dpop_learn_skew(c, r);

    if (r->date <= 0 ? changed != 0 || c->skew_s != 0
                     : changed != 0 && llabs(c->skew_s - (r->date - now)) > 2)
        BROKEN();
    qrl_client_free(c);
}

static void check_oauth_error(const qrlc__resp *r)
{
    qrl_client *c = client_new();
    const char *want = json_string_value(json_object_get(r->json, "error"));
    const char *err = qrlc__oauth_error(c, r, "token");

    if (err == NULL || strcmp(err, want != NULL ? want : "") != 0)
        BROKEN();
    check_detail(c);
    qrl_client_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qrlc__resp r;
    size_t body;

    memset(&r, 0, sizeof r);
    body = read_headers(&r, data, size);
    r.len = size - body;
    if ((r.body = malloc(r.len + 1)) == NULL)
        BROKEN();
    memcpy(r.body, data + body, r.len);
    r.body[r.len] = '\0';
    r.json = qrlc__json_object(r.body, r.len);
    if (r.json != NULL && !json_is_object(r.json))
        BROKEN();

    check_metadata(&r);
    check_tokens(&r);
    check_device_auth(&r);
    check_oauth_error(&r);
    check_skew(&r);
    check_grant_error(&r, 0, QRLC__DEFAULT_INTERVAL_S);
    check_grant_error(&r, 1, size > 0 ? 1 + data[0] % QRLC__MAX_INTERVAL_S : 1);

    json_decref(r.json);
    free(r.body);
    return 0;
}
