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
 * declare it in http.h, add a row to `routes`, document it in docs/api.md and test it in
 * tests/integration/.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

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
    const char *name;
} routes[] = {
    {"GET", "/.well-known/oauth-authorization-server", false, NULL, qrl__h_metadata, "metadata"},
    {"POST", "/oauth/device_authorization", false, NULL, qrl__h_device_authorization,
     "device_authorization"},
    {"POST", "/oauth/token", false, NULL, qrl__h_token, "token"},
    {"POST", "/oauth/introspect", false, NULL, qrl__h_introspect, "introspect"},
    {"POST", "/oauth/revoke", false, NULL, qrl__h_revoke, "revoke"},
    {"POST", "/v1/sessions", false, NULL, qrl__h_sessions, "sessions"},
    {"GET", "/v1/login-requests/", true, "", qrl__h_lr_view, "login-request"},
    {"POST", "/v1/login-requests/", true, "/approve", qrl__h_lr_approve, "approve"},
    {"POST", "/v1/login-requests/", true, "/deny", qrl__h_lr_deny, "deny"},
    {"GET", "/v1/devices", false, NULL, qrl__h_devices, "devices"},
    {"DELETE", "/v1/devices/", true, "", qrl__h_device_delete, "device"},
    {"GET", "/v1/me", false, NULL, qrl__h_me, "me"},
    {"PUT", "/v1/device-key", false, NULL, qrl__h_device_key, "device-key"},
    {"POST", "/v1/screen/qr", false, NULL, qrl__h_screen_qr, "screen-qr"},
    /* Web pages (http_web.c): the pages, their files, and their JSON API. */
    {"GET", "/", false, NULL, qrl__h_page, "page-screen"},
    {"GET", "/home", false, NULL, qrl__h_page, "page-home"},
    {"GET", "/s", false, NULL, qrl__h_page, "page-scan"},
    {"GET", "/device", false, NULL, qrl__h_page, "page-device"},
    {"GET", "/devices", false, NULL, qrl__h_page, "page-devices"},
    {"GET", "/account", false, NULL, qrl__h_page, "page-account"},
    {"GET", "/static/", true, "", qrl__h_static, "static"},
    {"POST", "/web/screen/start", false, NULL, qrl__h_web_screen_start, "web-screen-start"},
    {"GET", "/web/screen/qr.svg", false, NULL, qrl__h_web_screen_qr, "web-screen-qr"},
    {"POST", "/web/screen/wait", false, NULL, qrl__h_web_screen_wait, "web-screen-wait"},
    {"GET", "/web/screen/me", false, NULL, qrl__h_web_screen_me, "web-screen-me"},
    {"GET", "/web/screen/watch", false, NULL, qrl__h_web_screen_watch, "web-screen-watch"},
    {"POST", "/web/screen/signout", false, NULL, qrl__h_web_screen_signout, "web-screen-signout"},
    {"POST", "/web/session", false, NULL, qrl__h_web_session_new, "web-session"},
    {"GET", "/web/session", false, NULL, qrl__h_web_session_get, "web-session"},
    {"POST", "/web/signout", false, NULL, qrl__h_web_signout, "web-signout"},
    {"POST", "/web/lr/view", false, NULL, qrl__h_web_lr_view, "web-lr-view"},
    {"POST", "/web/lr/approve", false, NULL, qrl__h_web_lr_approve, "web-lr-approve"},
    {"POST", "/web/lr/deny", false, NULL, qrl__h_web_lr_deny, "web-lr-deny"},
    {"POST", "/web/webauthn/options", false, NULL, qrl__h_web_webauthn_options,
     "web-webauthn-options"},
    {"GET", "/web/passkeys", false, NULL, qrl__h_web_passkeys_get, "web-passkeys"},
    {"POST", "/web/passkeys", false, NULL, qrl__h_web_passkeys_add, "web-passkeys"},
    {"DELETE", "/web/passkeys/", true, "", qrl__h_web_passkey_delete, "web-passkey"},
    {"GET", "/web/devices", false, NULL, qrl__h_web_devices, "web-devices"},
    {"DELETE", "/web/devices/", true, "", qrl__h_web_device_delete, "web-device"},
#ifdef QRL_TEST_HOOKS
    {"POST", "/_test/clock", false, NULL, qrl__h_test_clock, "test-clock"},
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
            r->route = routes[i].name;
            return routes[i].fn(r, arg);
        }
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
    r->route = "unknown";
    return qrl__respond_error(r, 404, "not_found", "no such endpoint");
}

static void client_address(struct MHD_Connection *conn, char *out, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

    out[0] = '\0';
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET && len >= INET_ADDRSTRLEN) {
        /* Every request needs it: formatted here rather than by inet_ntop(), whose sprintf()
         * was a visible share of a poll answered from memory. */
        uint32_t ip = ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr);
        char *p = out;
        for (int shift = 24; shift >= 0; shift -= 8) {
            unsigned v = (ip >> shift) & 0xff;
            if (v >= 100)
                *p++ = (char)('0' + v / 100);
            if (v >= 10)
                *p++ = (char)('0' + v / 10 % 10);
            *p++ = (char)('0' + v % 10);
            *p++ = shift > 0 ? '.' : '\0';
        }
    } else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)len);
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
        client_address(conn, r->address, sizeof r->address);
        *con_cls = r;
        if (strstr(url, NUL_MARK) != NULL) {
            r->route = "bad-path";
            return qrl__respond_error(r, 400, "invalid_request",
                                      "the path holds an encoded NUL character (%00)");
        }
        if (framing_conflict(conn)) {
            static const char *const close_hdr[] = {"Connection", "close", NULL};
            r->route = "bad-framing";
            return qrl__respond_json_hdr(
                r, 400,
                json_pack("{s:s, s:s}", "error", "invalid_request", "error_description",
                          "Content-Length and Transfer-Encoding together: the body's end is "
                          "ambiguous; send one of them"),
                close_hdr);
        }
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoull(cl, NULL, 10) > QRL_MAX_BODY) {
            r->route = "too-large";
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
    if (r->too_large)
        return qrl__respond_err(r, QRL_ERR_TOO_LARGE, QRL__CTX_API);
    /* The most frequent request, a screen's poll of a pending request, is answered from
     * memory, without the router or the store. */
    if (strcmp(r->url, "/oauth/token") == 0 && strcmp(r->method, "POST") == 0) {
        enum MHD_Result ret;
        if (qrl__h_token_quick(r, &ret)) {
            r->route = "token";
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

    if (r == NULL)
        return;
    /* Route names only: raw paths may hold a scan secret or user code. */
    if (srv->cfg.access_log) {
        if (r->client_left)
            fprintf(stderr, "qrlogin: %s %s %s client-gone\n", r->address, r->method,
                    r->route != NULL ? r->route : "-");
        else
            fprintf(stderr, "qrlogin: %s %s %s %d\n", r->address, r->method,
                    r->route != NULL ? r->route : "-", r->status);
    }
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

qrl_err qrl_server_new(const qrl_server_config *cfg, qrl_server **out)
{
    qrl_server *srv = calloc(1, sizeof *srv);

    *out = NULL;
    if (srv == NULL)
        return QRL_ERR_NOMEM;
    srv->cfg = *cfg;
    if (cfg->introspection_secret != NULL &&
        snprintf(srv->introspection_secret, sizeof srv->introspection_secret, "%s",
                 cfg->introspection_secret) >= (int)sizeof srv->introspection_secret) {
        free(srv);
        return QRL_ERR_INVALID;
    }
    srv->hub = qrl__hub_new();
    if (srv->hub == NULL) {
        free(srv);
        return QRL_ERR_NOMEM;
    }
    pthread_mutex_init(&srv->shared_mu, NULL);
    *out = srv;
    return QRL_OK;
}

void qrl_server_on_change(void *ud, int64_t lr_id)
{
    qrl_server *srv = ud;
    qrl__hub_notify(srv->hub, lr_id);
}

void qrl_server_handoff(qrl_server *srv, qrl_handoff *h)
{
    h->take = qrl__hub_take;
    h->give = qrl__hub_give;
    h->ud = srv;
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
    char raw[512], line[512];

    (void)cls;
    vsnprintf(raw, sizeof raw, fmt, ap);
    if (quiet_close && strstr(raw, "Application reported internal error") != NULL) {
        quiet_close = false;
        return;
    }
    qrl__log_redact(raw, line, sizeof line);
    sodium_memzero(raw, sizeof raw);
    fprintf(stderr, "qrlogin: libmicrohttpd: %s%s", line,
            line[0] != '\0' && line[strlen(line) - 1] == '\n' ? "" : "\n");
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
    if ((lfd = listen_socket(&srv->cfg, &ss, family, errbuf, errlen)) < 0)
        return QRL_ERR_INVALID;
    srv->core = core;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv,
        /* First, so that libmicrohttpd prints nothing itself (it says so otherwise). */
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, lfd,
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
    sodium_memzero(srv->introspection_secret, sizeof srv->introspection_secret);
    free(srv);
}
