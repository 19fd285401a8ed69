/* SPDX-License-Identifier: MIT */
/*
 * HTTP for the client SDK, on libcurl.
 *
 * Each qrl_client owns one multi handle and one easy handle. The easy handle is reused for
 * every request so that the connection to the server is kept alive between polls (a TV may
 * talk to the server for twenty minutes); the multi handle exists for one reason:
 * cancellation. A transfer runs in a curl_multi_perform/curl_multi_poll loop, and
 * qrl_client_cancel() - from any thread - sets a flag and calls curl_multi_wakeup(), which
 * libcurl documents as safe from any thread, so a held request of up to a minute is abandoned
 * within milliseconds rather than at libcurl's next progress callback. Sleeps between polls
 * are curl_multi_poll() calls with no transfer attached, so the same wakeup cuts them short.
 *
 * Bodies are bounded (QRLC__MAX_RESPONSE); forms and bodies that may carry secrets are wiped
 * before they are freed. Redirects are never followed and only http/https are allowed: the
 * endpoints come from the server's metadata and a redirect would carry a device code or a
 * refresh token somewhere we did not check.
 */
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_once_rc = CURLE_FAILED_INIT;

static void curl_once_init(void)
{
    curl_once_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

qrl_err qrlc__curl_global(void)
{
    pthread_once(&curl_once, curl_once_init);
    return curl_once_rc == CURLE_OK ? QRL_OK : QRL_ERR_INTERNAL;
}

int64_t qrlc__mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

qrl_err qrlc__transport_init(qrl_client *c)
{
    c->multi = curl_multi_init();
    c->easy = curl_easy_init();
    if (c->multi == NULL || c->easy == NULL)
        return QRL_ERR_NOMEM;
    /* One connection to the server is all a screen needs. */
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 1L);
    return QRL_OK;
}

void qrlc__transport_free(qrl_client *c)
{
    if (c->easy != NULL)
        curl_easy_cleanup(c->easy);
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
    c->easy = NULL;
    c->multi = NULL;
}

int qrlc__cancelled(qrl_client *c)
{
    return atomic_load(&c->cancel) != 0;
}

QRL_CLIENT_API void qrl_client_cancel(qrl_client *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->cancel, 1);
    curl_multi_wakeup(c->multi);
}

qrl_err qrlc__sleep(qrl_client *c, long ms)
{
    int64_t deadline;

    if (qrlc__cancelled(c))
        return QRL_CLIENT_ERR_CANCELLED;
    if (ms <= 0)
        return QRL_OK;
    if (c->sleep_fn != NULL) {
        c->sleep_fn(c->user, ms);
        return qrlc__cancelled(c) ? QRL_CLIENT_ERR_CANCELLED : QRL_OK;
    }
    deadline = qrlc__mono_ms() + ms;
    for (;;) {
        int64_t left = deadline - qrlc__mono_ms();
        if (left <= 0)
            return QRL_OK;
        /* With no transfer attached, curl_multi_poll waits for the timeout or a wakeup. */
        curl_multi_poll(c->multi, NULL, 0, left > INT_MAX ? INT_MAX : (int)left, NULL);
        if (qrlc__cancelled(c))
            return QRL_CLIENT_ERR_CANCELLED;
    }
}

/* --- responses ------------------------------------------------------------------------------ */

typedef struct xfer {
    qrl_client *c;
    qrlc__resp *r;
    int nomem;
} xfer;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    qrlc__resp *r = x->r;
    size_t n = size * nmemb;

    if (n > QRLC__MAX_RESPONSE - r->len) {
        r->too_large = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap == 0 ? 1024 : r->cap;
        while (cap < r->len + n + 1)
            cap *= 2;
        if (cap > QRLC__MAX_RESPONSE + 1)
            cap = QRLC__MAX_RESPONSE + 1;
        /* Grow by copying so that a token-bearing body is never left behind by realloc. */
        char *nb = qrlc__alloc(x->c, cap);
        if (nb == NULL) {
            x->nomem = 1;
            return 0;
        }
        if (r->body != NULL) {
            memcpy(nb, r->body, r->len);
            qrlc__wipe(r->body, r->cap);
            qrlc__free(x->c, r->body);
        }
        r->body = nb;
        r->cap = cap;
    }
    memcpy(r->body + r->len, ptr, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* Header names are case-insensitive (RFC 9110 section 5.1); values are trimmed. */
static int header_value(const char *line, size_t n, const char *name, const char **v, size_t *vlen)
{
    size_t nl = strlen(name);

    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *p = line + nl + 1, *end = line + n;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *v = p;
    *vlen = (size_t)(end - p);
    return 1;
}

void qrlc__resp_header(qrlc__resp *r, const char *ptr, size_t n)
{
    const char *v;
    size_t vlen;

    /* A new status line starts a new header block (1xx interim answers). */
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        r->preference_applied = 0;
        r->retry_after_s = -1;
        r->date = 0;
    } else if (header_value(ptr, n, "Date", &v, &vlen)) {
        /* RFC 9110 section 6.6.1: the server's clock, against which it judges a DPoP proof's
         * time (dpop.c learns it from a refused proof). */
        char d[64];
        if (vlen < sizeof d) {
            memcpy(d, v, vlen);
            d[vlen] = '\0';
            time_t t = curl_getdate(d, NULL);
            r->date = t > 0 ? (long long)t : 0;
        }
    } else if (header_value(ptr, n, "Preference-Applied", &v, &vlen)) {
        /* RFC 7240 section 3: the preferences the server honoured, e.g. "wait=30". */
        for (size_t i = 0; i + 4 <= vlen; i++)
            if (strncasecmp(v + i, "wait", 4) == 0)
                r->preference_applied = 1;
    } else if (header_value(ptr, n, "Retry-After", &v, &vlen)) {
        /* Only the delay-seconds form (RFC 9110 section 10.2.3); a date is ignored. */
        long s = 0;
        size_t i = 0;
        while (i < vlen && i < 6 && v[i] >= '0' && v[i] <= '9')
            s = s * 10 + (v[i++] - '0');
        if (i > 0 && i == vlen)
            r->retry_after_s = s;
    }
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    size_t n = size * nmemb;

    qrlc__resp_header(((xfer *)ud)->r, ptr, n);
    return n;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    /* The wakeup in qrl_client_cancel is what makes cancellation prompt; this is the backstop
     * for a transfer that is busy moving data. */
    return qrlc__cancelled(((xfer *)ud)->c) ? 1 : 0;
}

void qrlc__resp_free(qrl_client *c, qrlc__resp *r)
{
    if (r == NULL)
        return;
    json_decref(r->json);
    if (r->body != NULL) {
        qrlc__wipe(r->body, r->cap);
        qrlc__free(c, r->body);
    }
    memset(r, 0, sizeof *r);
    r->retry_after_s = -1;
}

/* --- requests ------------------------------------------------------------------------------- */

/* "Authorization: Bearer " and a token of at most QRL_CLIENT_TOKEN_MAX characters. */
#define AUTH_LINE_MAX (22 + QRL_CLIENT_TOKEN_MAX + 1)
/* "DPoP: " and a proof. */
#define PROOF_LINE_MAX (6 + QRLC__DPOP_PROOF_MAX + 1)

/* `bearer`: an access token for the Authorization header, sent as DPoP when the handle's tokens
 * are bound (RFC 9449 section 7.1), else as Bearer. `dpop`: a proof for the DPoP header, or
 * NULL. */
static qrl_err setup(qrl_client *c, const char *url, const char *body, const char *bearer,
                     const char *dpop, int prefer_wait, struct curl_slist **hdrs, xfer *x,
                     char *errbuf)
{
    CURL *e = c->easy;
    char line[48], auth[AUTH_LINE_MAX], proof[PROOF_LINE_MAX];
    qrl_err rc = QRL_OK;

    curl_easy_reset(e);
    *hdrs = NULL;
    const char *lines[5] = {"Accept: application/json", "Expect:", NULL, NULL, NULL};
    size_t nl = 2;
    if (prefer_wait > 0) {
        snprintf(line, sizeof line, "Prefer: wait=%d", prefer_wait);
        lines[nl++] = line;
    }
    if (bearer != NULL) {
        snprintf(auth, sizeof auth, "Authorization: %s %s", c->dpop_bound ? "DPoP" : "Bearer",
                 bearer);
        lines[nl++] = auth;
    }
    if (dpop != NULL) {
        snprintf(proof, sizeof proof, "DPoP: %s", dpop);
        lines[nl++] = proof;
    }
    for (size_t i = 0; i < nl && rc == QRL_OK; i++) {
        struct curl_slist *t = curl_slist_append(*hdrs, lines[i]);
        if (t == NULL)
            rc = QRL_ERR_NOMEM;
        else
            *hdrs = t;
    }
    qrlc__wipe(auth, sizeof auth);
    if (rc != QRL_OK)
        return rc;

    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, *hdrs);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "qrlogin-client");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms + (long)prefer_wait * 1000L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    if (c->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (body != NULL) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    return QRL_OK;
}

/* Drives the transfer until it ends or a cancellation arrives. */
static qrl_err run(qrl_client *c, CURLcode *cc)
{
    int running = 1;

    *cc = CURLE_OK;
    if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK)
        return QRL_ERR_INTERNAL;
    while (running) {
        if (qrlc__cancelled(c))
            break;
        if (curl_multi_perform(c->multi, &running) != CURLM_OK) {
            curl_multi_remove_handle(c->multi, c->easy);
            return QRL_ERR_INTERNAL;
        }
        if (running)
            curl_multi_poll(c->multi, NULL, 0, 1000, NULL);
    }
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE && m->easy_handle == c->easy)
            *cc = m->data.result;
    curl_multi_remove_handle(c->multi, c->easy);
    return running ? QRL_CLIENT_ERR_CANCELLED : QRL_OK;
}

/* Frees the request's header lines, wiping them first: one may carry a bearer token. */
static void headers_free(struct curl_slist *hdrs)
{
    for (struct curl_slist *l = hdrs; l != NULL; l = l->next)
        qrlc__wipe(l->data, strlen(l->data));
    curl_slist_free_all(hdrs);
}

static qrl_err http_send(qrl_client *c, const char *url, const char *body, const char *bearer,
                         const char *dpop, int prefer_wait, qrlc__resp *r);

qrl_err qrlc__http(qrl_client *c, const char *url, const char *body, int prefer_wait, qrlc__resp *r)
{
    return http_send(c, url, body, NULL, NULL, prefer_wait, r);
}

/* A proof of the handle's key for this very request: a new one for every request (the server
 * takes each proof once), and none for a server that takes no proofs (c->dpop) or, with an
 * access token, for tokens that are not bound. */
static qrl_err request_proof(qrl_client *c, const char *url, const char *body, const char *bearer,
                             char *out, size_t len, const char **proof)
{
    qrl_err rc;

    *proof = NULL;
    if (bearer != NULL ? !c->dpop_bound : !c->dpop)
        return QRL_OK;
    rc = qrlc__dpop_proof(c, body != NULL ? "POST" : "GET", url, bearer, out, len);
    if (rc != QRL_OK)
        return qrlc__fail(c, rc, "cannot make a DPoP proof for %s", url);
    *proof = out;
    return QRL_OK;
}

qrl_err qrlc__http_bearer(qrl_client *c, const char *url, const char *body, const char *bearer,
                          int prefer_wait, qrlc__resp *r)
{
    char proof[QRLC__DPOP_PROOF_MAX];
    const char *p;
    qrl_err rc = request_proof(c, url, body, bearer, proof, sizeof proof, &p);

    if (rc != QRL_OK) {
        memset(r, 0, sizeof *r);
        r->retry_after_s = -1;
        return rc;
    }
    return http_send(c, url, body, bearer, p, prefer_wait, r);
}

qrl_err qrlc__http_proof(qrl_client *c, const char *url, const char *body, int prefer_wait,
                         qrlc__resp *r)
{
    return qrlc__http_bearer(c, url, body, NULL, prefer_wait, r);
}

static qrl_err http_send(qrl_client *c, const char *url, const char *body, const char *bearer,
                         const char *dpop, int prefer_wait, qrlc__resp *r)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    xfer x = {.c = c, .r = r};
    CURLcode cc = CURLE_OK;
    curl_off_t sent = 0;
    qrl_err rc;

    memset(r, 0, sizeof *r);
    r->retry_after_s = -1;
    rc = setup(c, url, body, bearer, dpop, prefer_wait, &hdrs, &x, errbuf);
    if (rc == QRL_OK)
        rc = run(c, &cc);
    if (rc == QRL_OK && cc == CURLE_ABORTED_BY_CALLBACK && qrlc__cancelled(c))
        rc = QRL_CLIENT_ERR_CANCELLED;
    if (rc == QRL_OK) {
        curl_easy_getinfo(c->easy, CURLINFO_REQUEST_SIZE, &sent);
        r->sent = sent > 0;
    }
    /* The easy handle outlives this request: drop pointers into our stack and the body. */
    curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, NULL);
    headers_free(hdrs);
    if (rc == QRL_CLIENT_ERR_CANCELLED) {
        r->sent = 1; /* it may have arrived: never treat a cancelled request as not sent */
        return qrlc__fail(c, rc, "cancelled");
    }
    if (rc != QRL_OK)
        return qrlc__fail(c, rc, "could not set up the request to %s", url);
    if (x.nomem)
        return qrlc__fail(c, QRL_ERR_NOMEM, "out of memory reading the answer of %s", url);
    if (r->too_large)
        return qrlc__fail(c, QRL_ERR_TOO_LARGE, "the answer of %s is larger than %u bytes", url,
                          QRLC__MAX_RESPONSE);
    if (cc != CURLE_OK)
        return qrlc__fail(c, QRL_ERR_BUSY, "%s: %s", url,
                          errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc));
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r->status);
    r->json = qrlc__json_object(r->body, r->len);
    return QRL_OK;
}

json_t *qrlc__json_object(const char *body, size_t len)
{
    json_t *j;

    if (body == NULL || len == 0)
        return NULL;
    j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* --- forms ---------------------------------------------------------------------------------- */

qrl_err qrlc__form(qrl_client *c, const char *const *kv, char **out)
{
    size_t len = 0, cap = 1;
    char *buf;

    *out = NULL;
    /* Worst case: every byte becomes %XX. */
    for (size_t i = 0; kv[i] != NULL; i += 2)
        if (kv[i + 1] != NULL)
            cap += 3 * (strlen(kv[i]) + strlen(kv[i + 1])) + 2;
    buf = qrlc__alloc(c, cap);
    if (buf == NULL)
        return qrlc__fail(c, QRL_ERR_NOMEM, "out of memory building a request");
    for (size_t i = 0; kv[i] != NULL; i += 2) {
        if (kv[i + 1] == NULL)
            continue;
        for (int part = 0; part < 2; part++) {
            const unsigned char *s = (const unsigned char *)kv[i + part];
            if (part == 0 && len > 0)
                buf[len++] = '&';
            for (; *s != '\0'; s++) {
                /* RFC 3986 unreserved characters pass; everything else is percent-encoded
                 * (the HTML form encoding's '+' for space is not needed). */
                if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                    (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '_' || *s == '~') {
                    buf[len++] = (char)*s;
                } else {
                    static const char hex[] = "0123456789ABCDEF";
                    buf[len++] = '%';
                    buf[len++] = hex[*s >> 4];
                    buf[len++] = hex[*s & 15];
                }
            }
            if (part == 0)
                buf[len++] = '=';
        }
    }
    buf[len] = '\0';
    *out = buf;
    return QRL_OK;
}

void qrlc__form_free(qrl_client *c, char *form)
{
    if (form == NULL)
        return;
    qrlc__wipe(form, strlen(form));
    qrlc__free(c, form);
}

/* --- URLs ----------------------------------------------------------------------------------- */

qrl_err qrlc__check_url(const char *what, const char *url, int allow_http, char *buf, size_t len)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *frag = NULL;
    qrl_err rc = QRL_OK;

    if (u == NULL) {
        snprintf(buf, len, "out of memory");
        return QRL_ERR_NOMEM;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = QRL_ERR_INVALID;
        snprintf(buf, len, "%s is not an absolute URL: %.200s", what, url);
        goto out;
    }
    curl_url_get(u, CURLUPART_USER, &user, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
    if (user != NULL || query != NULL || frag != NULL) {
        rc = QRL_ERR_INVALID;
        snprintf(buf, len, "%s must not have user info, a query or a fragment: %.200s", what, url);
        goto out;
    }
    int loopback = strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0 ||
                   strcasecmp(host, "localhost") == 0;
    if (strcasecmp(scheme, "https") != 0 &&
        !(strcasecmp(scheme, "http") == 0 && (loopback || allow_http))) {
        rc = QRL_ERR_INVALID;
        snprintf(buf, len,
                 "%s must be https (http only for 127.0.0.1, ::1, localhost or with "
                 "allow_insecure_http): %.200s",
                 what, url);
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(query);
    curl_free(frag);
    curl_url_cleanup(u);
    return rc;
}
