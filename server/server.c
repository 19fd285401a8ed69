/* SPDX-License-Identifier: MIT */
/*
 * The server: a libmicrohttpd daemon (epoll, a pool of worker threads, suspend/resume for held
 * requests) and the routing table that maps each method + path to one handler.
 *
 * Request life: MHD calls on_request() first with the headers (we allocate a qrl__req and
 * refuse oversized bodies by Content-Length at once), then with body pieces (buffered up to
 * QRL_MAX_BODY), then once more with no data, when we route and answer. The handler runs
 * right there, on the worker thread that owns the connection, and blocks that thread while it
 * waits for the store (a write until its group commit is done): see "Workers" below. A held
 * token request suspends instead of answering; when it is resumed MHD calls on_request()
 * again and we finish it. on_completed() frees the request whatever happened.
 *
 * Adding an endpoint: write its handler in the file of its group (http_oauth.c, http_phone.c),
 * declare it in http.h, add a row to `routes` with a route label of its own (QRL__ROUTES in
 * metrics.h), document it in docs/api.md and test it in tests/integration/.
 *
 * Every request gets a request id (X-Request-Id, and in every log line about it), its client
 * address (behind trusted proxies, the one they name), and when it ends, its count and latency
 * in the metrics and, with --access-log, its access line (on_completed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "dpop.h"
#include "http.h"

typedef enum MHD_Result (*handler_fn)(qrl__req *r, const char *arg);

/* A path is either exact, or a prefix followed by one argument segment and an optional fixed
 * suffix: "/v1/login-requests/" + {code} + "/approve". */
static const struct route {
    const char *method;
    const char *prefix;
    bool has_arg;
    const char *suffix;
    handler_fn fn;
    enum qrl__route route; /* its label in the access log and the metrics (metrics.h) */
} routes[] = {
    /* Operating (http_ops.c): liveness, readiness, Prometheus metrics. */
    {"GET", "/healthz", false, NULL, qrl__h_healthz, QRL__R_HEALTHZ},
    {"GET", "/readyz", false, NULL, qrl__h_readyz, QRL__R_READYZ},
    {"GET", "/metrics", false, NULL, qrl__h_metrics, QRL__R_METRICS},
    {"GET", "/.well-known/oauth-authorization-server", false, NULL, qrl__h_metadata,
     QRL__R_METADATA},
    {"POST", "/oauth/device_authorization", false, NULL, qrl__h_device_authorization,
     QRL__R_DEVICE_AUTHORIZATION},
    {"POST", "/oauth/token", false, NULL, qrl__h_token, QRL__R_TOKEN},
    {"POST", "/oauth/introspect", false, NULL, qrl__h_introspect, QRL__R_INTROSPECT},
    {"POST", "/oauth/revoke", false, NULL, qrl__h_revoke, QRL__R_REVOKE},
    {"POST", "/v1/sessions", false, NULL, qrl__h_sessions, QRL__R_SESSIONS},
    {"GET", "/v1/login-requests/", true, "", qrl__h_lr_view, QRL__R_LOGIN_REQUEST},
    {"POST", "/v1/login-requests/", true, "/approve", qrl__h_lr_approve, QRL__R_APPROVE},
    {"POST", "/v1/login-requests/", true, "/deny", qrl__h_lr_deny, QRL__R_DENY},
    {"GET", "/v1/devices", false, NULL, qrl__h_devices, QRL__R_DEVICES},
    {"DELETE", "/v1/devices/", true, "", qrl__h_device_delete, QRL__R_DEVICE},
    {"GET", "/v1/me", false, NULL, qrl__h_me, QRL__R_ME},
    {"PUT", "/v1/device-key", false, NULL, qrl__h_device_key, QRL__R_DEVICE_KEY},
    {"POST", "/v1/screen/qr", false, NULL, qrl__h_screen_qr, QRL__R_SCREEN_QR},
    /* Notices of new devices (http_notice.c), for phones and screens. */
    {"GET", "/v1/notifications", false, NULL, qrl__h_notices, QRL__R_NOTIFICATIONS},
    {"POST", "/v1/notifications/", true, "/ack", qrl__h_notice_ack, QRL__R_NOTIFICATION_ACK},
    {"POST", "/v1/notifications/", true, "/revoke", qrl__h_notice_revoke,
     QRL__R_NOTIFICATION_REVOKE},
    /* Web pages (http_web.c): the pages, their files, and their JSON API. */
    {"GET", "/", false, NULL, qrl__h_page, QRL__R_PAGE_SCREEN},
    {"GET", "/home", false, NULL, qrl__h_page, QRL__R_PAGE_HOME},
    {"GET", "/s", false, NULL, qrl__h_page, QRL__R_PAGE_SCAN},
    {"GET", "/device", false, NULL, qrl__h_page, QRL__R_PAGE_DEVICE},
    {"GET", "/devices", false, NULL, qrl__h_page, QRL__R_PAGE_DEVICES},
    {"GET", "/account", false, NULL, qrl__h_page, QRL__R_PAGE_ACCOUNT},
    {"GET", "/static/", true, "", qrl__h_static, QRL__R_STATIC},
    {"POST", "/web/screen/start", false, NULL, qrl__h_web_screen_start, QRL__R_WEB_SCREEN_START},
    {"GET", "/web/screen/qr.svg", false, NULL, qrl__h_web_screen_qr, QRL__R_WEB_SCREEN_QR},
    {"POST", "/web/screen/wait", false, NULL, qrl__h_web_screen_wait, QRL__R_WEB_SCREEN_WAIT},
    {"GET", "/web/screen/me", false, NULL, qrl__h_web_screen_me, QRL__R_WEB_SCREEN_ME},
    {"GET", "/web/screen/watch", false, NULL, qrl__h_web_screen_watch, QRL__R_WEB_SCREEN_WATCH},
    {"POST", "/web/screen/signout", false, NULL, qrl__h_web_screen_signout,
     QRL__R_WEB_SCREEN_SIGNOUT},
    {"POST", "/web/session", false, NULL, qrl__h_web_session_new, QRL__R_WEB_SESSION},
    {"GET", "/web/session", false, NULL, qrl__h_web_session_get, QRL__R_WEB_SESSION},
    {"POST", "/web/signout", false, NULL, qrl__h_web_signout, QRL__R_WEB_SIGNOUT},
    {"POST", "/web/lr/view", false, NULL, qrl__h_web_lr_view, QRL__R_WEB_LR_VIEW},
    {"POST", "/web/lr/approve", false, NULL, qrl__h_web_lr_approve, QRL__R_WEB_LR_APPROVE},
    {"POST", "/web/lr/deny", false, NULL, qrl__h_web_lr_deny, QRL__R_WEB_LR_DENY},
    {"POST", "/web/webauthn/options", false, NULL, qrl__h_web_webauthn_options,
     QRL__R_WEB_WEBAUTHN_OPTIONS},
    {"GET", "/web/passkeys", false, NULL, qrl__h_web_passkeys_get, QRL__R_WEB_PASSKEYS},
    {"POST", "/web/passkeys", false, NULL, qrl__h_web_passkeys_add, QRL__R_WEB_PASSKEYS},
    {"DELETE", "/web/passkeys/", true, "", qrl__h_web_passkey_delete, QRL__R_WEB_PASSKEY},
    {"GET", "/web/devices", false, NULL, qrl__h_web_devices, QRL__R_WEB_DEVICES},
    {"DELETE", "/web/devices/", true, "", qrl__h_web_device_delete, QRL__R_WEB_DEVICE},
    {"GET", "/web/notifications", false, NULL, qrl__h_notices, QRL__R_WEB_NOTIFICATIONS},
    {"POST", "/web/notifications/", true, "/ack", qrl__h_notice_ack, QRL__R_WEB_NOTIFICATION_ACK},
    {"POST", "/web/notifications/", true, "/revoke", qrl__h_notice_revoke,
     QRL__R_WEB_NOTIFICATION_REVOKE},
#ifdef QRL_TEST_HOOKS
    {"POST", "/_test/clock", false, NULL, qrl__h_test_clock, QRL__R_TEST_CLOCK},
#endif
};

/* Matches url against a route; on success *arg receives the argument segment (in buf). */
static bool route_match(const struct route *rt, const char *url, char *buf, size_t buflen,
                        const char **arg)
{
    size_t plen = strlen(rt->prefix), slen, alen, ulen;

    *arg = NULL;
    if (!rt->has_arg)
        return strcmp(url, rt->prefix) == 0;
    if (strncmp(url, rt->prefix, plen) != 0)
        return false;
    ulen = strlen(url + plen);
    slen = strlen(rt->suffix);
    if (ulen <= slen || strcmp(url + plen + ulen - slen, rt->suffix) != 0)
        return false;
    alen = ulen - slen;
    if (alen >= buflen || memchr(url + plen, '/', alen) != NULL)
        return false;
    memcpy(buf, url + plen, alen);
    buf[alen] = '\0';
    *arg = buf;
    return true;
}

static enum MHD_Result dispatch(qrl__req *r)
{
    char argbuf[QRL_MAX_TOKEN + 1], allow[64] = "";
    const char *arg;

    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!route_match(&routes[i], r->url, argbuf, sizeof argbuf, &arg))
            continue;
        if (strcmp(routes[i].method, r->method) == 0) {
            r->route = (int)routes[i].route;
            return routes[i].fn(r, arg);
        }
        /* A 405 is counted under the first route of its path. */
        if (allow[0] == '\0')
            r->route = (int)routes[i].route;
        if (strstr(allow, routes[i].method) == NULL)
            snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
                     allow[0] ? ", " : "", routes[i].method);
    }
    if (allow[0] != '\0') {
        const char *extra[] = {"Allow", allow, NULL};
        return qrl__respond_json_hdr(r, 405,
                                     json_pack("{s:s, s:s}", "error", "method_not_allowed",
                                               "error_description",
                                               "method not allowed for this path"),
                                     extra);
    }
    r->route = QRL__R_UNKNOWN;
    return qrl__respond_error(r, 404, "not_found", "no such endpoint");
}

/* An IPv4 address in dotted form. Every request needs its address: formatted here rather than
 * by inet_ntop(), whose sprintf() was a visible share of a poll answered from memory. */
static void format_ipv4(const uint8_t b[4], char *out)
{
    char *p = out;

    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = i < 3 ? '.' : '\0';
    }
}

static void format_ip(const qrl__ip *ip, char *out, size_t len)
{
    if (ip->family == 4 && len >= 16)
        format_ipv4(ip->b, out);
    else
        qrl__ip_format(ip, out, len);
}

/* The values of the client-address header, in the order they arrived (the last
 * QRL__MAX_HOP_HEADERS of them: the nearest proxies' are the ones that count). */
struct hop_values {
    const char *name;
    const char *v[QRL__MAX_HOP_HEADERS];
    size_t n;
};

static enum MHD_Result hop_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    struct hop_values *h = cls;

    (void)kind;
    if (value == NULL || strcasecmp(key, h->name) != 0)
        return MHD_YES;
    if (h->n == QRL__MAX_HOP_HEADERS) {
        memmove(h->v, h->v + 1, (QRL__MAX_HOP_HEADERS - 1) * sizeof h->v[0]);
        h->n--;
    }
    h->v[h->n++] = value;
    return MHD_YES;
}

/* Sets r->address (and r->ip) to the client's address: the TCP peer, or, when the peer is a
 * trusted proxy, the address its client-address header names (netaddr.h); r->peer keeps the
 * proxy's address then. This address is what the rate limits, the "same network" hint, the
 * devices list and the logs see. */
static void client_address(const qrl_server *srv, struct MHD_Connection *conn, qrl__req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    qrl__ip peer;

    r->address[0] = r->peer[0] = '\0';
    if (ci == NULL || !qrl__ip_from_sockaddr(ci->client_addr, &peer))
        return;
    r->ip = peer;
    if (srv->trusted.n > 0 && qrl__cidrs_match(&srv->trusted, &peer)) {
        struct hop_values h = {.name = srv->client_ip_header};
        MHD_get_connection_values(conn, MHD_HEADER_KIND, hop_value, &h);
        r->ip = qrl__client_ip(&peer, &srv->trusted, h.v, h.n);
        if (!qrl__ip_equal(&r->ip, &peer))
            format_ip(&peer, r->peer, sizeof r->peer);
    }
    format_ip(&r->ip, r->address, sizeof r->address);
}

int64_t qrl__mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A request id: 64 random bits in hex, from a generator of the worker thread's own (seeded
 * from the OS once per thread), so that no request waits for another or for a system call.
 * Ids only tell log lines and answers apart; they protect nothing. */
static void request_id(char out[17])
{
    static const char hex[] = "0123456789abcdef";
    static _Thread_local uint64_t state;
    static _Thread_local bool seeded;
    uint64_t z;

    if (!seeded) {
        randombytes_buf(&state, sizeof state);
        seeded = true;
    }
    /* splitmix64 */
    z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    for (int i = 15; i >= 0; i--, z >>= 4)
        out[i] = hex[z & 15];
    out[16] = '\0';
}

void qrl__hold_begin(qrl__req *r)
{
    if (!r->held) {
        atomic_fetch_add(&r->srv->held_live, 1);
        qrl__metric_hold(&r->srv->metrics);
    }
    r->held = true;
}

/*
 * Workers. Every handler runs on the libmicrohttpd worker thread that owns its connection and
 * calls the store as ordinary blocking C: a store write blocks the thread until the writer has
 * committed the batch holding it. While it is blocked, the other connections of that thread
 * wait too (each connection belongs to one worker of the pool), which is why the pool has more
 * threads than the machine has cores (qrl_server_default_threads). The blocked threads' writes
 * are what the writer batches into one commit.
 */

void qrl__read_scope(qrl__req *r)
{
    if (r->read_scope)
        return;
    r->read_scope = true;
    qrl_core_read_begin(r->srv->core);
}

/* Runs a handler, then ends the read scope it opened, if any (it is this thread's). */
static enum MHD_Result run_handler(qrl__req *r, enum MHD_Result (*fn)(qrl__req *r))
{
    enum MHD_Result ret = fn(r);

    if (r->read_scope) {
        r->read_scope = false;
        qrl_core_read_end(r->srv->core);
    }
    return ret;
}

/* What a path or query argument becomes when it holds an encoded NUL ("%00"): libmicrohttpd
 * decodes it into the C string, which then ends early, so "/v1/login-requests/CODE%00junk"
 * would look up CODE. on_request() answers such a path 400; an argument like this matches no
 * value any handler accepts. */
#define NUL_MARK "\x01"

static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    size_t n = MHD_http_unescape(s);

    (void)cls;
    (void)c;
    if (strlen(s) != n) {
        memcpy(s, NUL_MARK, sizeof NUL_MARK); /* shorter than "%00": fits */
        return sizeof NUL_MARK - 1;
    }
    return n;
}

/* A request that says both Content-Length and Transfer-Encoding frames its body two ways; a
 * proxy in front may read the other one, and what we took for the end of the body would be
 * its next request (request smuggling). RFC 9112 section 6.1: answer it an error and close the
 * connection. */
static bool framing_conflict(struct MHD_Connection *conn)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length") != NULL &&
           MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    qrl_server *srv = cls;
    qrl__req *r = *con_cls;

    if (r == NULL) {
        const char *cl;
        if ((r = calloc(1, sizeof *r)) == NULL)
            return MHD_NO;
        r->srv = srv;
        r->conn = conn;
        r->url = url;
        r->method = method;
        r->start_us = qrl__mono_us();
        request_id(r->request_id);
        client_address(srv, conn, r);
        *con_cls = r;
        if (strstr(url, NUL_MARK) != NULL) {
            r->route = QRL__R_BAD_PATH;
            return qrl__respond_error(r, 400, "invalid_request",
                                      "the path holds an encoded NUL character (%00)");
        }
        if (framing_conflict(conn)) {
            static const char *const close_hdr[] = {"Connection", "close", NULL};
            r->route = QRL__R_BAD_FRAMING;
            return qrl__respond_json_hdr(
                r, 400,
                json_pack("{s:s, s:s}", "error", "invalid_request", "error_description",
                          "Content-Length and Transfer-Encoding together: the body's end is "
                          "ambiguous; send one of them"),
                close_hdr);
        }
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > QRL_MAX_BODY) {
            r->route = QRL__R_TOO_LARGE;
            return qrl__respond_err(r, QRL_ERR_TOO_LARGE, QRL__CTX_API);
        }
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_large || r->body_len + n > QRL_MAX_BODY) {
            r->too_large = true; /* keep reading and discarding; answer at the end */
            return MHD_YES;
        }
        char *nb = realloc(r->body, r->body_len + n + 1);
        if (nb == NULL)
            return MHD_NO;
        memcpy(nb + r->body_len, upload_data, n);
        r->body = nb;
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
    if (r->held)
        return run_handler(r, r->resume_fn != NULL ? r->resume_fn : qrl__h_token_resume);
    if (r->too_large) {
        r->route = QRL__R_TOO_LARGE;
        return qrl__respond_err(r, QRL_ERR_TOO_LARGE, QRL__CTX_API);
    }
    /* The most frequent request, a screen's poll of a pending request, is answered from
     * memory, without the router or the store. */
    if (strcmp(r->url, "/oauth/token") == 0 && strcmp(r->method, "POST") == 0) {
        enum MHD_Result ret;
        if (qrl__h_token_quick(r, &ret)) {
            r->route = QRL__R_TOKEN;
            return ret;
        }
    }
    return run_handler(r, dispatch);
}

/* Set on a worker thread that is about to close a connection whose client left, so that
 * mhd_log() drops libmicrohttpd's "Application reported internal error" for it. */
static _Thread_local bool quiet_close;

enum MHD_Result qrl__client_gone(qrl__req *r)
{
    r->client_left = true;
    quiet_close = true;
    return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    qrl_server *srv = cls;
    qrl__req *r = *con_cls;
    int64_t duration_us;
    int status;

    if (r == NULL)
        return;
    duration_us = qrl__mono_us() - r->start_us;
    status = r->client_left ? 0 : r->status;
    qrl__metric_request(&srv->metrics, r->route, status, duration_us);
    if (status == 429) {
        qrl__metric_rate_limited(&srv->metrics, r->route);
        qrl__audit(r, "rate_limited", NULL);
    }
    /* Route labels only: raw paths may hold a scan secret or user code. */
    if (srv->cfg.access_log)
        qrl__access_line(r, duration_us);
    if (r->client_left)
        quiet_close = false;
    qrl__hub_cancel(srv->hub, r);
    if (r->held)
        atomic_fetch_sub(&srv->held_live, 1);
    sodium_memzero(r->device_code, sizeof r->device_code);
    sodium_memzero(&r->handed_tokens, sizeof r->handed_tokens);
    if (r->body != NULL)
        sodium_memzero(r->body, r->body_len);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

void qrl_server_config_defaults(qrl_server_config *cfg)
{
    *cfg = (qrl_server_config){.listen_host = "127.0.0.1", .port = 8080};
}

/* Who may read /metrics when the configuration does not say: this machine only. */
#define METRICS_ALLOW_DEFAULT "127.0.0.0/8,::1"

int qrl_server_cidrs_valid(const char *list, char *errbuf, size_t errlen)
{
    qrl__cidrs c;

    return qrl__cidrs_parse(list, &c, errbuf, errlen);
}

int qrl_server_header_name_valid(const char *name)
{
    return qrl__header_name_valid(name);
}

int qrl_server_geoip_valid(const char *path, char *errbuf, size_t errlen)
{
    qrl__geoip *g;

    if (qrl__geoip_open(path, &g, errbuf, errlen) != QRL_OK)
        return 0;
    qrl__geoip_close(g);
    return 1;
}

/* The operating part of the configuration: proxies, /metrics readers, the header. */
static qrl_err ops_config(qrl_server *srv, const qrl_server_config *cfg)
{
    const char *hdr = cfg->client_ip_header;

    if (!qrl__cidrs_parse(cfg->trusted_proxies, &srv->trusted, NULL, 0) ||
        !qrl__cidrs_parse(cfg->metrics_allow != NULL ? cfg->metrics_allow : METRICS_ALLOW_DEFAULT,
                          &srv->metrics_allow, NULL, 0) ||
        !qrl__cidrs_parse(cfg->deny_networks, &srv->deny, NULL, 0))
        return QRL_ERR_INVALID;
    if (hdr == NULL || hdr[0] == '\0')
        hdr = "X-Forwarded-For";
    if (!qrl__header_name_valid(hdr) ||
        snprintf(srv->client_ip_header, sizeof srv->client_ip_header, "%s", hdr) >=
            (int)sizeof srv->client_ip_header)
        return QRL_ERR_INVALID;
    return QRL_OK;
}

qrl_err qrl_server_new(const qrl_server_config *cfg, qrl_server **out)
{
    qrl_server *srv = calloc(1, sizeof *srv);
    qrl_err rc;

    *out = NULL;
    if (srv == NULL)
        return QRL_ERR_NOMEM;
    srv->cfg = *cfg;
    if ((cfg->introspection_secret != NULL &&
         snprintf(srv->introspection_secret, sizeof srv->introspection_secret, "%s",
                  cfg->introspection_secret) >= (int)sizeof srv->introspection_secret) ||
        (cfg->log_level != 0 &&
         (cfg->log_level < QRL_LOG_DEBUG || cfg->log_level > QRL_LOG_ERROR))) {
        free(srv);
        return QRL_ERR_INVALID;
    }
    if ((rc = ops_config(srv, cfg)) != QRL_OK) {
        free(srv);
        return rc;
    }
    if (qrl__metrics_init(&srv->metrics) != QRL_OK) {
        free(srv);
        return QRL_ERR_NOMEM;
    }
    srv->hub = qrl__hub_new();
    if (srv->hub == NULL) {
        qrl__metrics_free(&srv->metrics);
        free(srv);
        return QRL_ERR_NOMEM;
    }
    /* Opened once and only read afterwards, by any worker (geoip.h). */
    if (cfg->geoip_path != NULL && cfg->geoip_path[0] != '\0') {
        char why[512];
        if ((rc = qrl__geoip_open(cfg->geoip_path, &srv->geoip, why, sizeof why)) != QRL_OK) {
            qrl__hub_free(srv->hub);
            qrl__metrics_free(&srv->metrics);
            free(srv);
            return rc;
        }
    }
    qrl__log_init(&srv->log, cfg->log_level);
    pthread_mutex_init(&srv->shared_mu, NULL);
    pthread_mutex_init(&srv->ready_mu, NULL);
    srv->ready_at_ms = INT64_MIN / 2; /* long ago: the first /readyz probes */
    *out = srv;
    return QRL_OK;
}

qrl_err qrl_server_log_reopen(qrl_server *srv)
{
    return srv != NULL ? qrl__log_reopen(&srv->log) : QRL_ERR_INVALID;
}

void qrl_server_on_change(void *ud, int64_t lr_id)
{
    qrl_server *srv = ud;

    /* 0: the store lost track of changes for a while (store.h, set_notify): every held
     * request reads its state again. */
    if (lr_id == 0)
        qrl__hub_wake_all(srv->hub, false);
    else
        qrl__hub_notify(srv->hub, lr_id);
}

int qrl_server_network_denied(void *ud, const char *address)
{
    const qrl_server *srv = ud;
    qrl__ip ip;

    return srv->deny.n > 0 && address != NULL &&
           qrl__ip_parse(address, strlen(address), &ip) && qrl__cidrs_match(&srv->deny, &ip);
}

void qrl_server_handoff(qrl_server *srv, qrl_handoff *h)
{
    h->take = qrl__hub_take;
    h->give = qrl__hub_give;
    h->ud = srv;
    h->dpop_key = qrl__dpop_held_key; /* a held screen's DPoP key binds its tokens */
}

/* Connections we may hold open: the open-file limit minus a reserve for the database, logs and
 * the listening socket. */
static unsigned default_connection_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 4096;
    return rl.rlim_cur > 512 ? (unsigned)rl.rlim_cur - 256 : (unsigned)rl.rlim_cur / 2;
}

static int bind_address(const qrl_server_config *cfg, struct sockaddr_storage *ss)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    const char *host = cfg->listen_host != NULL ? cfg->listen_host : "127.0.0.1";

    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(cfg->port);
        return AF_INET;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(cfg->port);
        return AF_INET6;
    }
    return -1;
}

/* libmicrohttpd's own error messages name the request's path ("Failed to send the response
 * headers for the request for `...'", when a client hangs up), and our paths can hold a scan
 * secret or a user code (/v1/login-requests/{code}). They go to stderr only after
 * qrl__log_redact() has replaced every path after its first segment and every qrl_ secret. */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    qrl_server *srv = cls;
    char raw[512], line[512];
    size_t n;

    vsnprintf(raw, sizeof raw, fmt, ap);
    if (quiet_close && strstr(raw, "Application reported internal error") != NULL) {
        quiet_close = false;
        return;
    }
    qrl__log_redact(raw, line, sizeof line);
    sodium_memzero(raw, sizeof raw);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    qrl__log_msg(&srv->log, QRL_LOG_WARN, "libmicrohttpd", line);
}

/* A configured public URL (NULL or empty: made from the listen address) goes into every
 * verification URI and the issuer: it must fit and be text a JSON string can carry. */
static bool public_url_valid(const char *u)
{
    json_t *j;

    if (u == NULL || u[0] == '\0')
        return true;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return false;
    if (strlen(u) >= sizeof((qrl_server *)NULL)->public_url)
        return false;
    for (const unsigned char *p = (const unsigned char *)u; *p != '\0'; p++)
        if (*p <= ' ' || *p == 0x7f)
            return false;
    j = json_string(u); /* NULL unless valid UTF-8 */
    json_decref(j);
    return j != NULL;
}

/* srv->public_url_json: the public URL escaped by jansson, without the quotes, for answers
 * formatted as text. Left empty when it does not fit. */
static void public_url_json(qrl_server *srv)
{
    json_t *u = json_string(srv->public_url);
    char *d = u != NULL ? json_dumps(u, JSON_ENCODE_ANY) : NULL;
    size_t n = d != NULL ? strlen(d) : 0;

    srv->public_url_json[0] = '\0';
    if (n >= 2 && n - 2 < sizeof srv->public_url_json)
        snprintf(srv->public_url_json, sizeof srv->public_url_json, "%.*s", (int)(n - 2), d + 1);
    free(d);
    json_decref(u);
}

/* Binds and listens on the configured address ourselves, with the options libmicrohttpd would
 * use (SO_REUSEADDR; IPv6 only for an IPv6 address), so that a failure is reported with the
 * system's reason rather than libmicrohttpd's log line and a guess. */
static int listen_socket(const qrl_server_config *cfg, const struct sockaddr_storage *ss,
                         int family, char *errbuf, size_t errlen)
{
    socklen_t len = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), on = 1, err;

    if (fd >= 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (family == AF_INET6)
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
        if (bind(fd, (const struct sockaddr *)ss, len) == 0 && listen(fd, 1024) == 0)
            return fd;
    }
    err = errno;
    if (fd >= 0)
        close(fd);
    snprintf(errbuf, errlen, "cannot listen on %s port %u: %s", cfg->listen_host,
             (unsigned)cfg->port, strerror(err));
    return -1;
}

qrl_err qrl_server_listen(qrl_server *srv, qrl_core *core, char *errbuf, size_t errlen)
{
    struct sockaddr_storage ss;
    const union MHD_DaemonInfo *di;
    int family = bind_address(&srv->cfg, &ss);
    unsigned threads = srv->cfg.threads;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    int lfd;

    if (family < 0) {
        snprintf(errbuf, errlen, "listen address must be a numeric IPv4 or IPv6 address");
        return QRL_ERR_INVALID;
    }
    if (!public_url_valid(srv->cfg.public_url)) {
        snprintf(errbuf, errlen,
                 "the public URL must start with http:// or https:// and be at most %zu bytes "
                 "of UTF-8 text without spaces or control characters",
                 sizeof srv->public_url - 1);
        return QRL_ERR_INVALID;
    }
    if (family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (threads == 0)
        threads = qrl_server_default_threads();
    if (qrl__log_open(&srv->log, srv->cfg.log_file, errbuf, errlen) != QRL_OK)
        return QRL_ERR_INVALID;
    if ((lfd = listen_socket(&srv->cfg, &ss, family, errbuf, errlen)) < 0)
        return QRL_ERR_INVALID;
    srv->core = core;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv,
        /* First, so that libmicrohttpd prints nothing itself (it says so otherwise). */
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv, MHD_OPTION_LISTEN_SOCKET, lfd,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_CONNECTION_LIMIT,
        srv->cfg.connection_limit ? srv->cfg.connection_limit : default_connection_limit(),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        srv->cfg.connection_memory ? srv->cfg.connection_memory : (size_t)8192,
        MHD_OPTION_CONNECTION_TIMEOUT,
        srv->cfg.connection_timeout_s ? srv->cfg.connection_timeout_s : 30u,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, srv->cfg.per_ip_limit, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        1024u, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        close(lfd);
        snprintf(errbuf, errlen, "cannot start the HTTP server on %s port %u", srv->cfg.listen_host,
                 (unsigned)srv->cfg.port);
        return QRL_ERR_INVALID;
    }
    di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di != NULL ? di->port : srv->cfg.port;
    if (srv->cfg.public_url != NULL && srv->cfg.public_url[0] != '\0') {
        size_t n = strlen(srv->cfg.public_url);
        while (n > 0 && srv->cfg.public_url[n - 1] == '/')
            n--;
        snprintf(srv->public_url, sizeof srv->public_url, "%.*s", (int)n, srv->cfg.public_url);
    } else if (family == AF_INET6) {
        snprintf(srv->public_url, sizeof srv->public_url, "http://[%s]:%u", srv->cfg.listen_host,
                 (unsigned)srv->port);
    } else {
        snprintf(srv->public_url, sizeof srv->public_url, "http://%s:%u", srv->cfg.listen_host,
                 (unsigned)srv->port);
    }
    public_url_json(srv);
    return QRL_OK;
}

/* Handlers block their thread while they wait for a commit, and a blocked thread stalls every
 * connection it owns, so the pool is sized for the writes in flight rather than for the cores:
 * enough threads that many writes wait in each group commit. 64 did best of 8 to 256 on full
 * flows (docs/architecture.md, "Threading model"); above 32 CPUs, 2 per CPU, for handlers that
 * spend CPU (Argon2id sign-ins hold their thread for tens of milliseconds). */
unsigned qrl_server_default_threads(void)
{
    cpu_set_t set;
    int n = 0;

    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    return n > 32 ? 2u * (unsigned)n : 64u;
}

unsigned short qrl_server_port(const qrl_server *srv)
{
    return srv->port;
}

const char *qrl_server_public_url(const qrl_server *srv)
{
    return srv->public_url;
}

/* Longest shutdown waits for held requests to be answered. */
#define STOP_WAIT_MS 10000

void qrl_server_stop(qrl_server *srv)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->stopping, true);
    if (srv->daemon != NULL) {
        /* libmicrohttpd must not be stopped with suspended connections: answer every held
         * request first (they get the normal pending answer) and wait until the workers have
         * sent those answers. New holds are refused from here on; a handler still running
         * (blocked on a commit) finishes before MHD_stop_daemon() has joined its thread. The daemon
         * is not quiesced first: in libmicrohttpd 0.9.75 MHD_quiesce_daemon() races with a worker
         * thread that is awake (both take the listening socket out of the worker's epoll set, and
         * the loser aborts the process: "Failed to remove listen FD from epoll set"); connections
         * accepted during these milliseconds are served, and their holds refused. */
        qrl__hub_wake_all(srv->hub, true);
        /* Every held request now gets its answer on a worker; wait for them all (bounded, in
         * case a client does not read its answer). */
        for (int i = 0; i < STOP_WAIT_MS / 10 && atomic_load(&srv->held_live) > 0; i++)
            usleep(10000);
        MHD_stop_daemon(srv->daemon);
    }
    qrl__hub_free(srv->hub);
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j <= QRL_MAX_POLL_INTERVAL_S; j++)
            if (atomic_load(&srv->pending_answer[i][j]) != NULL)
                MHD_destroy_response(atomic_load(&srv->pending_answer[i][j]));
    pthread_mutex_destroy(&srv->shared_mu);
    pthread_mutex_destroy(&srv->ready_mu);
    qrl__metrics_free(&srv->metrics);
    qrl__log_close(&srv->log);
    qrl__geoip_close(srv->geoip);
    sodium_memzero(srv->introspection_secret, sizeof srv->introspection_secret);
    free(srv);
}
