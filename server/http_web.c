/* SPDX-License-Identifier: MIT */
/*
 * The web pages and their JSON API under /web/: the screen page a TV or laptop browser shows
 * (QR code, user code, live status), the demo home a signed-in screen lands on, and the phone's
 * pages (approve a login request, linked devices, passkeys).
 *
 * Credentials never reach JavaScript. The screen's device code, the screen's tokens and the
 * phone's session token live in HttpOnly, SameSite=Strict cookies (Secure when the public URL is
 * https). The scan secret reaches the phone's page only in the URL fragment, which browsers
 * neither send nor put in a Referer.
 *
 * Every state-changing request (POST, DELETE) must prove that it comes from our own pages
 * (csrf_ok): an Origin header of this server, and an X-CSRF-Token header equal to the qrl_csrf
 * cookie that every page sets (the double-submit pattern; another site can neither read that
 * cookie nor send the header without a CORS preflight, which we never grant).
 *
 * The pages are static files from web/, compiled into the binary (cmake/embed.cmake), served
 * with a Content-Security-Policy that allows only our own scripts, styles and images.
 *
 * Adding an endpoint: a handler here, its declaration in http.h, a row in server.c's routes,
 * its entry in docs/api.md ("Web pages") and a test in tests/integration/test_web.c or
 * tests/browser/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "http_common.h"

/* The OAuth client id of the screen page: its login requests and tokens carry it. */
#define WEB_CLIENT_ID "qrlogin-web"

/* Cookie names. */
#define CK_CSRF "qrl_csrf"  /* double-submit token, readable by our scripts */
#define CK_SCREEN "qrl_scr" /* the screen's device code while it waits */
#define CK_ACCESS "qrl_at"  /* the signed-in screen's access token */
#define CK_REFRESH "qrl_rt" /* ... and its refresh token */
#define CK_PHONE "qrl_ps"   /* the phone browser's session token */

/* A Set-Cookie value: name, a secret of QRL_SECRET_BUF, and the attributes. */
#define COOKIE_MAX 256
/* base64url of 32 random bytes. */
#define CSRF_LEN 43

/* What the pages may load: our own scripts, styles and images, nothing inline, no framing. */
#define PAGE_CSP                                                                                   \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "                    \
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

struct qrl__web_asset {
    const char *name;
    const unsigned char *data;
    size_t len;
};
extern const struct qrl__web_asset qrl__web_assets[];
extern const size_t qrl__web_asset_count;

static const struct qrl__web_asset *asset_find(const char *name)
{
    for (size_t i = 0; i < qrl__web_asset_count; i++)
        if (strcmp(qrl__web_assets[i].name, name) == 0)
            return &qrl__web_assets[i];
    return NULL;
}

static const char *content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');

    for (size_t i = 0; dot != NULL && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* --- cookies and the origin ------------------------------------------------------------- */

static const char *cookie(qrl__req *r, const char *name)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);

    return v != NULL && v[0] != '\0' && strlen(v) <= QRL_MAX_TOKEN ? v : NULL;
}

/* Cookies carry Secure when the server is reached over https. A plain-http public URL is a
 * loopback test or a trial on a home network; there a Secure cookie would be dropped by the
 * browser and nothing would work. */
static bool secure_cookies(const qrl_server *srv)
{
    return strncmp(srv->public_url, "https://", 8) == 0;
}

/* Writes "name=value; Path=path; Max-Age=age; HttpOnly; SameSite=Strict[; Secure]" into out.
 * An empty value with age 0 deletes the cookie. */
static void cookie_make(const qrl_server *srv, char out[COOKIE_MAX], const char *name,
                        const char *value, const char *path, int64_t max_age, bool http_only)
{
    snprintf(out, COOKIE_MAX, "%s=%s; Path=%s; Max-Age=%lld%s; SameSite=Strict%s", name, value,
             path, (long long)max_age, http_only ? "; HttpOnly" : "",
             secure_cookies(srv) ? "; Secure" : "");
}

/* The authority ("host[:port]") of an http(s) URL, and its length. */
static const char *url_authority(const char *url, size_t *len)
{
    const char *p = strstr(url, "://"), *end;

    if (p == NULL)
        return NULL;
    p += 3;
    end = p + strcspn(p, "/?#");
    *len = (size_t)(end - p);
    return p;
}

/* True when the request's Origin is this server: the origin of the public URL, or the host the
 * browser addressed (the Host header) when the operator reaches the server by another name. */
static bool origin_ok(qrl__req *r)
{
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
    const char *pub, *oa;
    size_t plen, olen;

    if (origin == NULL || strcmp(origin, "null") == 0)
        return false;
    pub = url_authority(r->srv->public_url, &plen);
    oa = url_authority(origin, &olen);
    if (oa == NULL || oa[olen] != '\0')
        return false;
    if (pub != NULL && (size_t)(pub - r->srv->public_url) == (size_t)(oa - origin) &&
        strncmp(origin, r->srv->public_url, (size_t)(pub - r->srv->public_url)) == 0 &&
        plen == olen && strncasecmp(oa, pub, olen) == 0)
        return true;
    return host != NULL && strlen(host) == olen && strncasecmp(oa, host, olen) == 0;
}

/* The check every state-changing /web/ request passes: our Origin, and the double-submit
 * token. */
static bool csrf_ok(qrl__req *r)
{
    const char *hdr = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-CSRF-Token");
    const char *ck = cookie(r, CK_CSRF);

    if (!origin_ok(r) || hdr == NULL || ck == NULL || strlen(hdr) != CSRF_LEN ||
        strlen(ck) != CSRF_LEN)
        return false;
    return sodium_memcmp(hdr, ck, CSRF_LEN) == 0;
}

static enum MHD_Result csrf_fail(qrl__req *r)
{
    return qrl__respond_error(r, 403, "csrf_failed",
                              "This request did not come from this site's own pages. Reload the "
                              "page and try again.");
}

/* --- pages and static files ------------------------------------------------------------- */

static enum MHD_Result send_asset(qrl__req *r, const struct qrl__web_asset *a, bool page)
{
    struct MHD_Response *resp;
    char csrf_cookie[COOKIE_MAX];
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", content_type(a->name));
    /* Pages show account data once their scripts run; none of it may be cached. */
    MHD_add_response_header(resp, "Cache-Control", page ? "no-store" : "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Content-Security-Policy", PAGE_CSP);
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
    if (page && cookie(r, CK_CSRF) == NULL) {
        unsigned char raw[32];
        char tok[CSRF_LEN + 1];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2base64(tok, sizeof tok, raw, sizeof raw,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        /* Readable by our scripts (not HttpOnly): they copy it into X-CSRF-Token. */
        cookie_make(r->srv, csrf_cookie, CK_CSRF, tok, "/", 400L * 24 * 3600, false);
        MHD_add_response_header(resp, "Set-Cookie", csrf_cookie);
    }
    qrl__add_request_id(r, resp);
    r->status = 200;
    r->bytes = a->len;
    ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result qrl__h_page(qrl__req *r, const char *arg)
{
    static const struct {
        const char *path, *file;
    } pages[] = {
        {"/", "screen.html"},        {"/home", "home.html"},       {"/s", "approve.html"},
        {"/device", "approve.html"}, {"/devices", "devices.html"}, {"/account", "account.html"},
    };

    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        if (strcmp(r->url, pages[i].path) != 0)
            continue;
        const struct qrl__web_asset *a = asset_find(pages[i].file);
        if (a == NULL)
            break;
        return send_asset(r, a, true);
    }
    return qrl__respond_error(r, 404, "not_found", "no such page");
}

enum MHD_Result qrl__h_static(qrl__req *r, const char *name)
{
    const struct qrl__web_asset *a = asset_find(name);

    if (a == NULL)
        return qrl__respond_error(r, 404, "not_found", "no such file");
    return send_asset(r, a, false);
}

/* --- shared helpers ----------------------------------------------------------------------- */

/* A short name for the browser a request comes from ("Chrome on Android"), from its
 * User-Agent: what the other side sees until the user names the device. */
static void ua_device_name(qrl__req *r, char *out, size_t len)
{
    const char *ua = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "User-Agent");
    const char *browser = NULL, *os = NULL;

    if (ua == NULL)
        ua = "";
    if (strstr(ua, "Edg/") != NULL)
        browser = "Edge";
    else if (strstr(ua, "OPR/") != NULL)
        browser = "Opera";
    else if (strstr(ua, "Firefox/") != NULL || strstr(ua, "FxiOS/") != NULL)
        browser = "Firefox";
    else if (strstr(ua, "Chrome/") != NULL || strstr(ua, "CriOS/") != NULL)
        browser = "Chrome";
    else if (strstr(ua, "Safari/") != NULL)
        browser = "Safari";
    if (strstr(ua, "SMART-TV") != NULL || strstr(ua, "SmartTV") != NULL ||
        strstr(ua, "Tizen") != NULL || strstr(ua, "Web0S") != NULL)
        os = "a TV";
    else if (strstr(ua, "Android") != NULL)
        os = "Android";
    else if (strstr(ua, "iPhone") != NULL)
        os = "iPhone";
    else if (strstr(ua, "iPad") != NULL)
        os = "iPad";
    else if (strstr(ua, "CrOS") != NULL)
        os = "ChromeOS";
    else if (strstr(ua, "Windows") != NULL)
        os = "Windows";
    else if (strstr(ua, "Mac OS X") != NULL || strstr(ua, "Macintosh") != NULL)
        os = "macOS";
    else if (strstr(ua, "Linux") != NULL)
        os = "Linux";
    if (browser != NULL && os != NULL)
        snprintf(out, len, "%s on %s", browser, os);
    else if (browser != NULL || os != NULL)
        snprintf(out, len, "%s%s", browser != NULL ? browser : "Web browser on ",
                 browser != NULL ? "" : os);
    else
        snprintf(out, len, "Web browser");
}

static json_t *device_json(const qrl_device_rec *d)
{
    return json_pack("{s:I, s:s, s:s}", "id", (json_int_t)d->id, "name", d->name, "kind", d->kind);
}

/* The relying party of passkeys: this server's public URL. Its origin is the URL's scheme and
 * authority; its RP ID is the host without port (W3C WebAuthn section 5.1.3 takes the
 * effective domain). */
static void rp_of(const qrl_server *srv, char *origin, size_t olen, char *id, size_t idlen)
{
    size_t alen = 0;
    const char *a = url_authority(srv->public_url, &alen);
    size_t hlen = alen;

    if (a == NULL) {
        origin[0] = id[0] = '\0';
        return;
    }
    snprintf(origin, olen, "%.*s", (int)(a - srv->public_url + (ptrdiff_t)alen), srv->public_url);
    if (a[0] == '[') { /* an IPv6 literal: WebAuthn refuses it anyway */
        const char *close = memchr(a, ']', alen);
        hlen = close != NULL ? (size_t)(close - a + 1) : alen;
    } else {
        const char *colon = memchr(a, ':', alen);
        if (colon != NULL)
            hlen = (size_t)(colon - a);
    }
    snprintf(id, idlen, "%.*s", (int)hlen, a);
}

/* --- the screen ----------------------------------------------------------------------------- */

static const qrl__errsay screen_name_say[] = {
    {QRL_ERR_INVALID, {0, "invalid_device_name", "The name must be 1 to 64 characters of text."}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_web_screen_start(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_device_auth da;
    char name[QRL_MAX_DEVICE_NAME + 1], platform[QRL_MAX_DEVICE_PLATFORM + 1];
    char ck[COOKIE_MAX], verify[320], qr[64];
    bool bad = false;
    json_t *o;
    qrl_err rc;

    if (!csrf_ok(r))
        return csrf_fail(r);
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    const char *given = qrl__jstr(o, "device_name", &bad);
    if (bad) {
        json_decref(o);
        return qrl__respond_error(r, 400, "invalid_request", "device_name must be a string");
    }
    /* The platform is what the browser says it is, whatever the user named the screen. */
    ua_device_name(r, platform, sizeof platform);
    if (given != NULL && given[0] != '\0')
        snprintf(name, sizeof name, "%s", given);
    else
        snprintf(name, sizeof name, "%s", platform);
    rc = (given != NULL && strlen(given) > QRL_MAX_DEVICE_NAME)
             ? QRL_ERR_INVALID
             : qrl_device_authorize_platform(r->srv->core, WEB_CLIENT_ID, NULL, name, "browser",
                                             platform, r->address, &da);
    json_decref(o);
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, QRL__CTX_PAGE, screen_name_say, NULL, NULL);
    qrl__login_event(r, QRL__OUT_CREATED,
                     &(qrl__ids){.lr_id = da.lr_id, .client_id = WEB_CLIENT_ID});
    cookie_make(r->srv, ck, CK_SCREEN, da.device_code, "/web/screen", da.expires_in_s, true);
    snprintf(verify, sizeof verify, "%s/device", r->srv->public_url);
    snprintf(qr, sizeof qr, "/web/screen/qr.svg?v=%lld", (long long)da.lr_id);
    const char *extra[] = {"Set-Cookie", ck, NULL};
    ret = qrl__respond_json_hdr(
        r, 200,
        json_pack("{s:s, s:s, s:I, s:s, s:s}", "user_code", da.user_code, "verification_uri",
                  verify, "expires_in", (json_int_t)da.expires_in_s, "device_name", name, "qr", qr),
        extra);
    sodium_memzero(ck, sizeof ck);
    sodium_memzero(&da, sizeof da);
    return ret;
}

enum MHD_Result qrl__h_web_screen_qr(qrl__req *r, const char *arg)
{
    const char *dc = cookie(r, CK_SCREEN);
    char scan[QRL_SECRET_BUF];
    qrl_err rc;

    if (dc == NULL)
        return qrl__respond_error(r, 404, "no_request",
                                  "This screen has no sign-in code; reload the page.");
    rc = qrl_screen_scan_secret(r->srv->core, WEB_CLIENT_ID, dc, scan);
    if (rc != QRL_OK)
        return qrl__respond_error(r, 404, "no_request",
                                  "This sign-in code is over; the page shows a new one.");
    return qrl__respond_qr(r, scan, NULL, false, QRL__QR_SCALE, QRL__CTX_PAGE);
}

enum MHD_Result qrl__h_web_screen_wait(qrl__req *r, const char *arg)
{
    const char *dc;
    enum MHD_Result ret;
    json_t *o;

    if (!csrf_ok(r))
        return csrf_fail(r);
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    json_decref(o);
    dc = cookie(r, CK_SCREEN);
    if (dc == NULL || strlen(dc) >= sizeof r->device_code)
        return qrl__respond_json(r, 200, json_pack("{s:s}", "state", "expired"));
    memcpy(r->device_code, dc, strlen(dc) + 1);
    memcpy(r->client_id, WEB_CLIENT_ID, sizeof WEB_CLIENT_ID);
    r->web = true;
    r->wait_s = qrl__prefer_wait(r);
    r->deadline_mono_ms = INT64_MAX;
    return qrl__device_code_run(r, r->wait_s > 0 ? QRL_POLL_WAIT : 0);
}

/* The state a screen shows when its request has ended (declined, or gone for any other
 * reason: it then starts a new one); NULL when rc is not an end but a failure to answer. These
 * are not errors to the page, so they are 200 answers, not rows of the error table. */
static const char *screen_end_state(qrl_err rc)
{
    if (rc == QRL_ERR_DENIED)
        return "denied";
    if (rc == QRL_ERR_EXPIRED || rc == QRL_ERR_NOT_FOUND || rc == QRL_ERR_REDEEMED ||
        rc == QRL_ERR_INVALID_CLIENT)
        return "expired";
    return NULL;
}

enum MHD_Result qrl__web_screen_answer(qrl__req *r, qrl_err rc, qrl_poll_result *res)
{
    char at[COOKIE_MAX], rt[COOKIE_MAX], scr[COOKIE_MAX];
    const char *extra[7] = {NULL};
    enum MHD_Result ret;
    const char *state;

    cookie_make(r->srv, scr, CK_SCREEN, "", "/web/screen", 0, true);
    if (rc == QRL_OK) {
        int64_t keep = qrl_core_config(r->srv->core)->refresh_ttl_s;
        cookie_make(r->srv, at, CK_ACCESS, res->tokens.access_token, "/web/screen", keep, true);
        cookie_make(r->srv, rt, CK_REFRESH, res->tokens.refresh_token, "/web/screen", keep, true);
        sodium_memzero(&res->tokens, sizeof res->tokens);
        const char *set[] = {"Set-Cookie", at, "Set-Cookie", rt, "Set-Cookie", scr, NULL};
        ret = qrl__respond_json_hdr(r, 200, json_pack("{s:s}", "state", "approved"), set);
        sodium_memzero(at, sizeof at);
        sodium_memzero(rt, sizeof rt);
        return ret;
    }
    if (rc == QRL_ERR_PENDING) {
        int64_t left = (res->expires_ms - qrl_core_now_ms(r->srv->core) + 999) / 1000;
        return qrl__respond_json(r, 200,
                                 json_pack("{s:s, s:I}", "state",
                                           res->state == QRL_LR_SCANNED ? "scanned" : "pending",
                                           "expires_in", (json_int_t)(left > 0 ? left : 0)));
    }
    state = screen_end_state(rc);
    if (state == NULL)
        return qrl__respond_err(r, rc, QRL__CTX_PAGE);
    extra[0] = "Set-Cookie";
    extra[1] = scr;
    return qrl__respond_json_hdr(r, 200, json_pack("{s:s}", "state", state), extra);
}

/* The cookies that end a screen's session. */
static void screen_clear_cookies(const qrl_server *srv, char at[COOKIE_MAX], char rt[COOKIE_MAX])
{
    cookie_make(srv, at, CK_ACCESS, "", "/web/screen", 0, true);
    cookie_make(srv, rt, CK_REFRESH, "", "/web/screen", 0, true);
}

/* Authenticates a signed-in screen by its access-token cookie. When that token no longer works
 * (it lives an hour), the refresh-token cookie is rotated once (RFC 6749 section 6) and the new
 * pair is written into at/rt as Set-Cookie values (*rotated). A revoked screen fails both. */
static qrl_err screen_auth(qrl__req *r, qrl_auth *auth, char at[COOKIE_MAX], char rt[COOKIE_MAX],
                           bool *rotated)
{
    const char *a = cookie(r, CK_ACCESS), *ref = cookie(r, CK_REFRESH);
    qrl_tokens t;
    qrl_err rc;

    *rotated = false;
    if (a != NULL && qrl_device_auth_any(r->srv->core, a, r->address, auth) == QRL_OK)
        return QRL_OK;
    if (ref == NULL)
        return QRL_ERR_UNAUTHORIZED;
    rc = qrl_token_refresh(r->srv->core, WEB_CLIENT_ID, ref, &t);
    if (rc == QRL_ERR_TOKEN_REUSED)
        qrl__audit(r, "refresh_token_reused", &(qrl__ids){.client_id = WEB_CLIENT_ID});
    if (rc == QRL_OK)
        rc = qrl_device_auth_any(r->srv->core, t.access_token, r->address, auth);
    if (rc == QRL_OK) {
        int64_t keep = qrl_core_config(r->srv->core)->refresh_ttl_s;
        cookie_make(r->srv, at, CK_ACCESS, t.access_token, "/web/screen", keep, true);
        cookie_make(r->srv, rt, CK_REFRESH, t.refresh_token, "/web/screen", keep, true);
        *rotated = true;
    }
    sodium_memzero(&t, sizeof t);
    if (rc == QRL_ERR_NOMEM || rc == QRL_ERR_STORE || rc == QRL_ERR_BUSY)
        return rc;
    return rc == QRL_OK ? QRL_OK : QRL_ERR_UNAUTHORIZED;
}

/* 401 for a screen that is not (or no longer) signed in; its cookies are cleared. */
static enum MHD_Result screen_unauthorized(qrl__req *r)
{
    char at[COOKIE_MAX], rt[COOKIE_MAX];
    const char *extra[] = {"Set-Cookie", at, "Set-Cookie", rt, NULL};

    static const qrl__errsay say[] = {
        {QRL_ERR_UNAUTHORIZED, {0, NULL, "This screen is not signed in."}},
        QRL__SAY_END,
    };

    screen_clear_cookies(r->srv, at, rt);
    return qrl__respond_err_as(r, QRL_ERR_UNAUTHORIZED, QRL__CTX_PAGE, say, NULL, extra);
}

/* An answer to a screen, with its rotated cookies when screen_auth rotated them. */
static enum MHD_Result screen_answer(qrl__req *r, json_t *body, char at[COOKIE_MAX],
                                     char rt[COOKIE_MAX], bool rotated)
{
    const char *extra[] = {"Set-Cookie", at, "Set-Cookie", rt, NULL};
    enum MHD_Result ret = qrl__respond_json_hdr(r, 200, body, rotated ? extra : NULL);

    sodium_memzero(at, COOKIE_MAX);
    sodium_memzero(rt, COOKIE_MAX);
    return ret;
}

enum MHD_Result qrl__h_web_screen_me(qrl__req *r, const char *arg)
{
    char at[COOKIE_MAX], rt[COOKIE_MAX];
    bool rotated;
    qrl_auth auth;
    qrl_err rc = screen_auth(r, &auth, at, rt, &rotated);

    if (rc == QRL_ERR_UNAUTHORIZED)
        return screen_unauthorized(r);
    if (rc != QRL_OK)
        return qrl__respond_err(r, rc, QRL__CTX_PAGE);
    return screen_answer(r,
                         json_pack("{s:o, s:o}", "account", qrl__account_json(&auth.account),
                                   "device", device_json(&auth.device)),
                         at, rt, rotated);
}

/* Hub keys of signed-in screens watching for their revocation: the negated device id, so they
 * never meet a login request's (positive) id in the hub. */
static int64_t watch_key(int64_t device_id)
{
    return -device_id;
}

void qrl__web_device_revoked(qrl_server *srv, int64_t device_id)
{
    qrl__hub_notify(srv->hub, watch_key(device_id));
}

static enum MHD_Result watch_resume(qrl__req *r)
{
    char at[COOKIE_MAX], rt[COOKIE_MAX];
    bool rotated;
    qrl_auth auth;
    qrl_err rc;

    qrl__hub_finish(r->srv->hub, r);
    if (qrl__peer_gone(r))
        return qrl__client_gone(r);
    rc = screen_auth(r, &auth, at, rt, &rotated);
    if (rc == QRL_ERR_UNAUTHORIZED)
        return screen_unauthorized(r);
    if (rc != QRL_OK)
        return qrl__respond_err(r, rc, QRL__CTX_PAGE);
    return screen_answer(r, json_pack("{s:b}", "signed_in", 1), at, rt, rotated);
}

enum MHD_Result qrl__h_web_screen_watch(qrl__req *r, const char *arg)
{
    char at[COOKIE_MAX], rt[COOKIE_MAX];
    bool rotated;
    qrl_auth auth;
    qrl_err rc = QRL_OK;
    int wait_s = qrl__prefer_wait(r);

    /* The change counter is read before the state, so a revocation between the two makes the
     * hold fail (QRL_ERR_CONFLICT) and the state is read again. */
    for (int round = 0; round < 4; round++) {
        uint64_t seq = qrl__hub_seq(r->srv->hub);
        rc = screen_auth(r, &auth, at, rt, &rotated);
        if (rc == QRL_ERR_UNAUTHORIZED)
            return screen_unauthorized(r);
        if (rc != QRL_OK)
            return qrl__respond_err(r, rc, QRL__CTX_PAGE);
        /* New cookies must reach the browser now, not after the hold. */
        if (wait_s == 0 || rotated)
            break;
        r->resume_fn = watch_resume;
        rc = qrl__hub_wait(r->srv->hub, r, watch_key(auth.device_id),
                           qrl__mono_ms() + (int64_t)wait_s * 1000, seq);
        if (rc == QRL_OK) {
            qrl__hold_begin(r);
            return MHD_YES;
        }
        r->resume_fn = NULL;
        if (rc == QRL_ERR_BUSY)
            break;
    }
    return screen_answer(r, json_pack("{s:b}", "signed_in", 1), at, rt, rotated);
}

enum MHD_Result qrl__h_web_screen_signout(qrl__req *r, const char *arg)
{
    char at[COOKIE_MAX], rt[COOKIE_MAX];
    bool rotated;
    qrl_auth auth;
    qrl_err rc;

    if (!csrf_ok(r))
        return csrf_fail(r);
    rc = screen_auth(r, &auth, at, rt, &rotated);
    if (rc == QRL_OK && qrl_device_revoke(r->srv->core, &auth, auth.device_id) == QRL_OK) {
        qrl__audit(r, "device_revoked",
                   &(qrl__ids){.account_id = auth.account_id, .device_id = auth.device_id});
        qrl__web_device_revoked(r->srv, auth.device_id);
    } else if (rc != QRL_OK && rc != QRL_ERR_UNAUTHORIZED)
        return qrl__respond_err(r, rc, QRL__CTX_PAGE);
    screen_clear_cookies(r->srv, at, rt);
    const char *extra[] = {"Set-Cookie", at, "Set-Cookie", rt, NULL};
    return qrl__respond_json_hdr(r, 200, json_object(), extra);
}

/* --- the phone ------------------------------------------------------------------------------ */

/* Authenticates the phone's browser session by its cookie; answers 401 itself. */
static bool phone_auth(qrl__req *r, qrl_auth *auth, enum MHD_Result *ret)
{
    const char *tok = cookie(r, CK_PHONE);
    qrl_err rc = QRL_ERR_UNAUTHORIZED;

    if (tok != NULL) {
        qrl__read_scope(r);
        rc = qrl_session_auth(r->srv->core, tok, r->address, auth);
    }
    if (rc == QRL_OK)
        return true;
    if (rc == QRL_ERR_UNAUTHORIZED) {
        char ck[COOKIE_MAX];
        cookie_make(r->srv, ck, CK_PHONE, "", "/web", 0, true);
        const char *extra[] = {"Set-Cookie", ck, NULL};
        *ret = qrl__respond_err_as(r, rc, QRL__CTX_PAGE, NULL, NULL, extra);
    } else {
        *ret = qrl__respond_err(r, rc, QRL__CTX_PAGE);
    }
    return false;
}

/* A state-changing phone call: CSRF check, then the session. */
static bool phone_auth_csrf(qrl__req *r, qrl_auth *auth, enum MHD_Result *ret)
{
    if (!csrf_ok(r)) {
        *ret = csrf_fail(r);
        return false;
    }
    return phone_auth(r, auth, ret);
}

/* The passkeys of the caller's account, at most QRL_MAX_PASSKEYS, in an array the caller frees,
 * and their number in *n; NULL (and 0) when they cannot be read. */
static qrl_passkey_rec *passkeys_of(qrl__req *r, const qrl_auth *auth, size_t *n)
{
    qrl_passkey_rec *pk = calloc(QRL_MAX_PASSKEYS, sizeof *pk);

    *n = 0;
    if (pk != NULL && qrl_passkey_list(r->srv->core, auth, pk, QRL_MAX_PASSKEYS, n) != QRL_OK) {
        free(pk);
        pk = NULL;
        *n = 0;
    }
    return pk;
}

/* Number of passkeys of the caller's account (0 on any failure: the password then stays the
 * step-up, which the core checks anyway). */
static size_t passkey_count(qrl__req *r, const qrl_auth *auth)
{
    size_t n;

    free(passkeys_of(r, auth, &n));
    return n;
}

/* Sign-in: a wrong or malformed username or password is one answer, so the page does not say
 * which of the two was wrong. */
#define SIGNIN_WRONG "The username or password is not right. Try again."
#define TOO_MANY_PASSWORDS "Too many wrong passwords. Wait a few minutes and try again."
static const qrl__errsay signin_say[] = {
    {QRL_ERR_UNAUTHORIZED, {401, "invalid_credentials", SIGNIN_WRONG}},
    {QRL_ERR_INVALID, {401, "invalid_credentials", SIGNIN_WRONG}},
    {QRL_ERR_RATE_LIMITED, {0, NULL, TOO_MANY_PASSWORDS}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_web_session_new(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    char name[QRL_MAX_DEVICE_NAME + 1], ck[COOKIE_MAX];
    bool bad = false;
    qrl_session s;
    json_t *o;
    qrl_err rc;

    if (!csrf_ok(r))
        return csrf_fail(r);
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    const char *user = qrl__jstr(o, "username", &bad), *pw = qrl__jstr(o, "password", &bad);
    if (bad || user == NULL || pw == NULL || user[0] == '\0' || pw[0] == '\0') {
        json_decref(o);
        sodium_memzero(r->body, r->body_len);
        return qrl__respond_error(r, 400, "invalid_request", "Enter your username and password.");
    }
    ua_device_name(r, name, sizeof name);
    rc = qrl_session_create(r->srv->core, user, pw, name, "phone", r->address, &s);
    json_decref(o);
    sodium_memzero(r->body, r->body_len);
    if (rc != QRL_OK) {
        qrl__audit(r, "sign_in_failed",
                   &(qrl__ids){.error = qrl__err_answer(rc, QRL__CTX_PAGE, signin_say).code});
        return qrl__respond_err_as(r, rc, QRL__CTX_PAGE, signin_say, NULL, NULL);
    }
    qrl__audit(r, "sign_in_succeeded",
               &(qrl__ids){.account_id = s.account.id, .device_id = s.device_id});
    cookie_make(r->srv, ck, CK_PHONE, s.session_token, "/web", s.expires_in_s, true);
    const char *extra[] = {"Set-Cookie", ck, NULL};
    ret = qrl__respond_json_hdr(
        r, 200, json_pack("{s:o}", "account", qrl__account_json(&s.account)), extra);
    sodium_memzero(ck, sizeof ck);
    sodium_memzero(&s, sizeof s);
    return ret;
}

enum MHD_Result qrl__h_web_session_get(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;

    if (!phone_auth(r, &auth, &ret))
        return ret;
    return qrl__respond_json(
        r, 200,
        json_pack("{s:o, s:o, s:I}", "account", qrl__account_json(&auth.account), "device",
                  device_json(&auth.device), "passkeys", (json_int_t)passkey_count(r, &auth)));
}

enum MHD_Result qrl__h_web_signout(qrl__req *r, const char *arg)
{
    char ck[COOKIE_MAX];
    qrl_auth auth;
    const char *tok;

    if (!csrf_ok(r))
        return csrf_fail(r);
    tok = cookie(r, CK_PHONE);
    if (tok != NULL && qrl_session_auth(r->srv->core, tok, r->address, &auth) == QRL_OK &&
        qrl_device_revoke(r->srv->core, &auth, auth.device_id) == QRL_OK) {
        qrl__audit(r, "device_revoked",
                   &(qrl__ids){.account_id = auth.account_id, .device_id = auth.device_id});
        qrl__web_device_revoked(r->srv, auth.device_id);
    }
    cookie_make(r->srv, ck, CK_PHONE, "", "/web", 0, true);
    const char *extra[] = {"Set-Cookie", ck, NULL};
    return qrl__respond_json_hdr(r, 200, json_object(), extra);
}

/* The `code` member of a login-request call: a scan secret or a user code. */
static const char *lr_code(json_t *o, bool *bad)
{
    const char *code = qrl__jstr(o, "code", bad);

    if (code == NULL || code[0] == '\0' || strlen(code) > QRL_MAX_TOKEN)
        *bad = true;
    return code;
}

/* A login-request call, in words for the person holding the phone: the pages column speaks of
 * login requests already; a malformed code is as good as an unknown one, UNAUTHORIZED is the
 * step-up password, FORBIDDEN the passkey (or nothing the person can fix). */
#define LR_NOT_FOUND                                                                               \
    "There is no sign-in request with this code. Check the code on the TV, or scan its QR code "   \
    "again."
#define LR_WRONG_PASSWORD "The password is not right. Nothing was approved. Try again."
static const qrl__errsay lr_say[] = {
    {QRL_ERR_INVALID, {404, "not_found", LR_NOT_FOUND}},
    {QRL_ERR_UNAUTHORIZED, {403, "step_up_failed", LR_WRONG_PASSWORD}},
    {QRL_ERR_CONFLICT, {0, NULL, "This request has already been answered."}},
    QRL__SAY_END,
};
static const qrl__errsay lr_passkey_say[] = {
    {QRL_ERR_INVALID, {404, "not_found", LR_NOT_FOUND}},
    {QRL_ERR_UNAUTHORIZED, {403, "step_up_failed", LR_WRONG_PASSWORD}},
    {QRL_ERR_CONFLICT, {0, NULL, "This request has already been answered."}},
    {QRL_ERR_FORBIDDEN,
     {403, "passkey_failed",
      "Your passkey could not be checked. Nothing was approved. Try again."}},
    QRL__SAY_END,
};
static const qrl__errsay lr_pending_say[] = {
    {QRL_ERR_CONFLICT, {0, NULL, "Open the request on this phone again before you answer it."}},
    QRL__SAY_END,
};

/* Answers a login-request call that failed; invalid_state adds the request's state. */
static enum MHD_Result lr_fail(qrl__req *r, qrl_err rc, const qrl_lr_rec *lr, bool passkey)
{
    if (rc == QRL_ERR_CONFLICT)
        return qrl__respond_err_as(
            r, rc, QRL__CTX_PAGE,
            lr != NULL && lr->state == QRL_LR_PENDING ? lr_pending_say : lr_say,
            json_pack("{s:s}", "state", lr != NULL ? qrl_lr_state_name(lr->state) : "unknown"),
            NULL);
    return qrl__respond_err_as(r, rc, QRL__CTX_PAGE, passkey ? lr_passkey_say : lr_say, NULL, NULL);
}

/* Two other user codes to offer next to the real one: the person must pick the code the TV
 * shows, which a phished user (looking at no TV) cannot do but by luck. */
static void decoy_codes(const char *real, char out[2][QRL_USER_CODE_BUF])
{
    static const char alphabet[] = "BCDFGHJKLMNPQRSTVWXZ";
    char canon[QRL_USER_CODE_LEN + 1];

    for (int i = 0; i < 2; i++) {
        do {
            for (int j = 0; j < QRL_USER_CODE_LEN; j++)
                canon[j] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
            canon[QRL_USER_CODE_LEN] = '\0';
            qrl_user_code_format(canon, out[i]);
        } while (strcmp(out[i], real) == 0 || (i == 1 && strcmp(out[1], out[0]) == 0));
    }
}

static const char *kind_label(const char *kind)
{
    static const struct {
        const char *kind, *label;
    } labels[] = {{"tv", "TV"},        {"browser", "Web browser"}, {"desktop", "Computer"},
                  {"cli", "Terminal"}, {"phone", "Phone"},         {"other", "Device"}};

    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
        if (strcmp(kind, labels[i].kind) == 0)
            return labels[i].label;
    return "Device";
}

enum MHD_Result qrl__h_web_lr_view(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    char choices[3][QRL_USER_CODE_BUF], decoys[2][QRL_USER_CODE_BUF];
    qrl_auth auth;
    qrl_lr_view v;
    qrl__origin where;
    bool bad = false;
    json_t *o;
    qrl_err rc;

    if (!phone_auth_csrf(r, &auth, &ret))
        return ret;
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    const char *code = lr_code(o, &bad);
    if (bad) {
        json_decref(o);
        return qrl__respond_error(r, 400, "invalid_request", "Enter the code shown on the TV.");
    }
    rc = qrl_lr_view_claim(r->srv->core, &auth, code, r->address, &v);
    json_decref(o);
    sodium_memzero(r->body, r->body_len);
    if (rc == QRL_ERR_SUSPICIOUS)
        return qrl__respond_blocked(r, QRL__CTX_PAGE, &auth, v.lr.id);
    if (rc != QRL_OK)
        return lr_fail(r, rc, &v.lr, false);
    qrl__login_event(
        r, QRL__OUT_CLAIMED,
        &(qrl__ids){.lr_id = v.lr.id, .account_id = auth.account_id, .device_id = auth.device_id});
    decoy_codes(v.user_code, decoys);
    /* The real code at a random one of the three places. */
    uint32_t at = randombytes_uniform(3);
    for (uint32_t i = 0, d = 0; i < 3; i++)
        memcpy(choices[i], i == at ? v.user_code : decoys[d++], QRL_USER_CODE_BUF);
    o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:[s,s,s], s:b}", "id",
                  (json_int_t)v.lr.id, "state", qrl_lr_state_name(v.lr.state), "device_name",
                  v.lr.device_name, "device_kind", v.lr.device_kind, "platform",
                  v.lr.device_platform, "kind_label", kind_label(v.lr.device_kind), "address",
                  v.lr.address, "same_network", v.same_network, "age_seconds", (json_int_t)v.age_s,
                  "expires_in", (json_int_t)v.expires_in_s, "choices", choices[0], choices[1],
                  choices[2], "passkey", passkey_count(r, &auth) > 0);
    /* The screen's country (its address at device authorization) and the phone's, now. */
    qrl__geoip_origin(r->srv->geoip, v.lr.address, r->address, &where);
    qrl__origin_json_set(o, &where);
    /* A request from a denied network: the page says so instead of offering to approve. */
    json_object_set_new(o, "blocked",
                        v.blocked != QRL_BLOCK_NONE ? json_string(qrl_block_reason_name(v.blocked))
                                                    : json_null());
    /* The screen's key when the request is bound to one: the page compares it with the short
     * form of the QR code it was opened from (qrlogin/protocol.h). */
    char fp[QRL_KEY_FINGERPRINT_BUF];
    bool keyed =
        qrl_dpop_jkt_valid(v.lr.dpop_jkt) && qrl_key_fingerprint(v.lr.dpop_jkt, fp) == QRL_OK;
    json_object_set_new(o, "dpop_jkt", keyed ? json_string(v.lr.dpop_jkt) : json_null());
    json_object_set_new(o, "key_fingerprint", keyed ? json_string(fp) : json_null());
    return qrl__respond_json(r, 200, o);
}

/* Decodes the `passkey` member of an approval: the browser's assertion, base64url fields. */
static bool passkey_member(json_t *o, qrl_passkey_assertion *pa, const qrl_rp *rp, bool *present)
{
    json_t *p = json_object_get(o, "passkey");
    bool bad = false;

    *present = p != NULL && !json_is_null(p);
    if (!*present)
        return true;
    if (!json_is_object(p))
        return false;
    *pa = (qrl_passkey_assertion){
        .credential_id = qrl__jstr(p, "id", &bad),
        .client_data_json = qrl__jstr(p, "clientDataJSON", &bad),
        .authenticator_data = qrl__jstr(p, "authenticatorData", &bad),
        .signature = qrl__jstr(p, "signature", &bad),
        .rp = rp,
    };
    return !bad && pa->credential_id != NULL && pa->client_data_json != NULL &&
           pa->authenticator_data != NULL && pa->signature != NULL;
}

enum MHD_Result qrl__h_web_lr_approve(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    char origin[300], rpid[256];
    qrl_passkey_assertion pa;
    qrl_auth auth;
    qrl_lr_rec lr = {0};
    bool bad = false, has_passkey = false;
    json_t *o;
    qrl_err rc;

    if (!phone_auth_csrf(r, &auth, &ret))
        return ret;
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    rp_of(r->srv, origin, sizeof origin, rpid, sizeof rpid);
    qrl_rp rp = {.id = rpid, .origin = origin};
    const char *code = lr_code(o, &bad), *uc = qrl__jstr(o, "user_code", &bad);
    const char *pw = qrl__jstr(o, "password", &bad);
    if (!passkey_member(o, &pa, &rp, &has_passkey) || bad || uc == NULL ||
        (pw == NULL) == !has_passkey) {
        json_decref(o);
        sodium_memzero(r->body, r->body_len);
        return qrl__respond_error(r, 400, "invalid_request",
                                  "code, user_code and either password or passkey are required");
    }
    if (!has_passkey && passkey_count(r, &auth) > 0) {
        json_decref(o);
        sodium_memzero(r->body, r->body_len);
        return qrl__respond_error(r, 403, "passkey_required",
                                  "This account has a passkey: confirm with it instead of the "
                                  "password.");
    }
    qrl_proof proof = {.password = pw, .passkey = has_passkey ? &pa : NULL};
    rc = qrl_lr_approve(r->srv->core, &auth, code, uc, &proof, r->address, &lr);
    json_decref(o);
    sodium_memzero(r->body, r->body_len);
    if (rc == QRL_ERR_SUSPICIOUS)
        return qrl__respond_blocked(r, QRL__CTX_PAGE, &auth, lr.id);
    if (rc != QRL_OK) {
        qrl__audit(r, "login_approval_failed",
                   &(qrl__ids){.account_id = auth.account_id,
                               .device_id = auth.device_id,
                               .error = qrl__err_answer(rc, QRL__CTX_PAGE,
                                                        has_passkey ? lr_passkey_say : lr_say)
                                            .code});
        return lr_fail(r, rc, &lr, has_passkey);
    }
    qrl__login_event(
        r, QRL__OUT_APPROVED,
        &(qrl__ids){.lr_id = lr.id, .account_id = auth.account_id, .device_id = auth.device_id});
    return qrl__respond_json(r, 200,
                             json_pack("{s:s, s:s}", "state", qrl_lr_state_name(lr.state),
                                       "device_name", lr.device_name));
}

enum MHD_Result qrl__h_web_lr_deny(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;
    qrl_lr_rec lr = {0};
    bool bad = false;
    json_t *o;
    qrl_err rc;

    if (!phone_auth_csrf(r, &auth, &ret))
        return ret;
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    const char *code = lr_code(o, &bad);
    if (bad) {
        json_decref(o);
        return qrl__respond_error(r, 400, "invalid_request", "code is required");
    }
    rc = qrl_lr_deny(r->srv->core, &auth, code, NULL, r->address, &lr);
    json_decref(o);
    sodium_memzero(r->body, r->body_len);
    if (rc != QRL_OK)
        return lr_fail(r, rc, &lr, false);
    qrl__login_event(
        r, QRL__OUT_DENIED,
        &(qrl__ids){.lr_id = lr.id, .account_id = auth.account_id, .device_id = auth.device_id});
    return qrl__respond_json(r, 200,
                             json_pack("{s:s, s:s}", "state", qrl_lr_state_name(lr.state),
                                       "device_name", lr.device_name));
}

/* --- passkeys ------------------------------------------------------------------------------- */

static json_t *b64url(const unsigned char *b, size_t n)
{
    char *s = malloc(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING));
    json_t *j;

    if (s == NULL)
        return NULL;
    sodium_bin2base64(s, sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING), b,
                      n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    j = json_string(s);
    free(s);
    return j;
}

/* The account's passkeys as WebAuthn credential descriptors (allowCredentials,
 * excludeCredentials). */
static json_t *descriptors(const qrl_passkey_rec *pk, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, json_pack("{s:s, s:o}", "type", "public-key", "id",
                                           b64url(pk[i].cred_id, pk[i].cred_id_len)));
    return a;
}

/* Challenges are valid this long (the core keeps them as long); the browser's own timeout. */
#define WEBAUTHN_TIMEOUT_MS 120000

enum MHD_Result qrl__h_web_webauthn_options(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    char challenge[QRL_CHALLENGE_BUF], origin[300], rpid[256];
    qrl_passkey_rec *pk = NULL;
    qrl_auth auth;
    size_t n = 0;
    bool bad = false;
    json_t *o, *body = NULL;
    qrl_err rc;

    if (!phone_auth_csrf(r, &auth, &ret))
        return ret;
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    const char *purpose = qrl__jstr(o, "purpose", &bad);
    bool approve = purpose != NULL && strcmp(purpose, "approve") == 0;
    const char *code = approve ? lr_code(o, &bad) : NULL;
    if (bad || purpose == NULL || (!approve && strcmp(purpose, "register") != 0)) {
        json_decref(o);
        return qrl__respond_error(r, 400, "invalid_request",
                                  "purpose is \"approve\" (with code) or \"register\"");
    }
    rc = qrl_webauthn_challenge(r->srv->core, &auth,
                                approve ? QRL_WEBAUTHN_APPROVE : QRL_WEBAUTHN_REGISTER, code,
                                r->address, challenge);
    json_decref(o);
    if (rc != QRL_OK)
        return lr_fail(r, rc, NULL, true);
    if ((pk = passkeys_of(r, &auth, &n)) == NULL)
        return qrl__respond_err(r, QRL_ERR_NOMEM, QRL__CTX_PAGE);
    rp_of(r->srv, origin, sizeof origin, rpid, sizeof rpid);
    if (approve) {
        body = json_pack("{s:s, s:s, s:i, s:s, s:o}", "challenge", challenge, "rpId", rpid,
                         "timeout", WEBAUTHN_TIMEOUT_MS, "userVerification", "required",
                         "allowCredentials", descriptors(pk, n));
    } else {
        unsigned char uid[8];
        for (int i = 0; i < 8; i++)
            uid[i] = (unsigned char)((uint64_t)auth.account.id >> (56 - 8 * i));
        body = json_pack(
            "{s:s, s:{s:s, s:s}, s:{s:o, s:s, s:s}, s:[{s:s, s:i}, {s:s, s:i}, {s:s, s:i}], "
            "s:i, s:s, s:{s:s, s:s}, s:o}",
            "challenge", challenge, "rp", "id", rpid, "name", "qrlogin", "user", "id",
            b64url(uid, sizeof uid), "name", auth.account.username, "displayName",
            auth.account.display_name, "pubKeyCredParams", "type", "public-key", "alg", -7, "type",
            "public-key", "alg", -8, "type", "public-key", "alg", -257, "timeout",
            WEBAUTHN_TIMEOUT_MS, "attestation", "none", "authenticatorSelection",
            "userVerification", "required", "residentKey", "preferred", "excludeCredentials",
            descriptors(pk, n));
    }
    free(pk);
    sodium_memzero(challenge, sizeof challenge);
    return qrl__respond_json(r, 200, body);
}

enum MHD_Result qrl__h_web_passkeys_get(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_passkey_rec *pk;
    qrl_auth auth;
    size_t n = 0;
    json_t *arr;

    if (!phone_auth(r, &auth, &ret))
        return ret;
    if ((pk = passkeys_of(r, &auth, &n)) == NULL)
        return qrl__respond_err(r, QRL_ERR_NOMEM, QRL__CTX_PAGE);
    arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I, s:s, s:I, s:I}", "id", (json_int_t)pk[i].id,
                                             "name", pk[i].name, "created_at",
                                             (json_int_t)(pk[i].created_ms / 1000), "last_used_at",
                                             (json_int_t)(pk[i].last_used_ms / 1000)));
    free(pk);
    return qrl__respond_json(r, 200, json_pack("{s:o}", "passkeys", arr));
}

/* Adding a passkey: UNAUTHORIZED is the step-up password; INVALID and FORBIDDEN are a passkey
 * that does not verify; TOO_LARGE is the account's limit of passkeys. */
static const qrl__errsay passkey_add_say[] = {
    {QRL_ERR_UNAUTHORIZED,
     {403, "step_up_failed", "The password is not right. No passkey was added."}},
    {QRL_ERR_INVALID,
     {400, "passkey_invalid", "The passkey could not be checked, so it was not added. Try again."}},
    {QRL_ERR_FORBIDDEN,
     {400, "passkey_invalid", "The passkey could not be checked, so it was not added. Try again."}},
    {QRL_ERR_EXISTS, {0, NULL, "This passkey is already registered."}},
    {QRL_ERR_RATE_LIMITED, {0, NULL, TOO_MANY_PASSWORDS}},
    {QRL_ERR_TOO_LARGE,
     {409, "too_many_passkeys",
      "This account has as many passkeys as it may have. Remove one first."}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_web_passkeys_add(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    char origin[300], rpid[256];
    qrl_auth auth;
    int64_t id = 0;
    bool bad = false;
    json_t *o;
    qrl_err rc;

    if (!phone_auth_csrf(r, &auth, &ret))
        return ret;
    if ((o = qrl__read_json(r, &ret)) == NULL)
        return ret;
    const char *pw = qrl__jstr(o, "password", &bad), *name = qrl__jstr(o, "name", &bad);
    const char *cdj = qrl__jstr(o, "clientDataJSON", &bad);
    const char *att = qrl__jstr(o, "attestationObject", &bad);
    if (bad || pw == NULL || cdj == NULL || att == NULL) {
        json_decref(o);
        sodium_memzero(r->body, r->body_len);
        return qrl__respond_error(r, 400, "invalid_request",
                                  "password, clientDataJSON and attestationObject are required");
    }
    rp_of(r->srv, origin, sizeof origin, rpid, sizeof rpid);
    qrl_rp rp = {.id = rpid, .origin = origin};
    rc = qrl_passkey_register(r->srv->core, &auth, pw, &rp, cdj, att, name, r->address, &id);
    json_decref(o);
    sodium_memzero(r->body, r->body_len);
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, QRL__CTX_PAGE, passkey_add_say, NULL, NULL);
    return qrl__respond_json(r, 201, json_pack("{s:I}", "id", (json_int_t)id));
}

static const qrl__errsay passkey_say[] = {
    {QRL_ERR_NOT_FOUND, {0, NULL, "There is no such passkey."}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_web_passkey_delete(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;
    int64_t id = qrl__path_id(arg);
    qrl_err rc;

    if (!phone_auth_csrf(r, &auth, &ret))
        return ret;
    rc = id > 0 ? qrl_passkey_delete(r->srv->core, &auth, id) : QRL_ERR_NOT_FOUND;
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, QRL__CTX_PAGE, passkey_say, NULL, NULL);
    return qrl__respond_empty(r, 204);
}

/* --- devices -------------------------------------------------------------------------------- */

enum MHD_Result qrl__h_web_devices(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;

    if (!phone_auth(r, &auth, &ret))
        return ret;
    return qrl__respond_devices(r, &auth, QRL__CTX_PAGE, kind_label);
}

static const qrl__errsay device_say[] = {
    {QRL_ERR_NOT_FOUND, {0, NULL, "There is no such device."}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_web_device_delete(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;
    int64_t id = qrl__path_id(arg);
    qrl_err rc;

    if (!phone_auth_csrf(r, &auth, &ret))
        return ret;
    rc = id > 0 ? qrl_device_revoke(r->srv->core, &auth, id) : QRL_ERR_NOT_FOUND;
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, QRL__CTX_PAGE, device_say, NULL, NULL);
    qrl__audit(r, "device_revoked", &(qrl__ids){.account_id = auth.account_id, .device_id = id});
    qrl__web_device_revoked(r->srv, id);
    if (id == auth.device_id) { /* this phone removed itself: it is signed out */
        char ck[COOKIE_MAX];
        cookie_make(r->srv, ck, CK_PHONE, "", "/web", 0, true);
        const char *extra[] = {"Set-Cookie", ck, NULL};
        return qrl__respond_json_hdr(r, 200, json_pack("{s:b}", "signed_out", 1), extra);
    }
    return qrl__respond_empty(r, 204);
}

bool qrl__web_phone_auth(qrl__req *r, qrl_auth *auth, bool csrf, enum MHD_Result *ret)
{
    return csrf ? phone_auth_csrf(r, auth, ret) : phone_auth(r, auth, ret);
}
