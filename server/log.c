/* SPDX-License-Identifier: MIT */
/*
 * The server's log (log.h): JSON Lines on stderr or in a file, and the two kinds of lines
 * that describe requests: the access line (one per request, --access-log) and the audit
 * events (what happened to a login, a session, a device).
 *
 * Formatting needs no allocation: a line is built in a buffer on the caller's stack, every
 * string escaped on the way in, and a member that would not fit is left out whole, so a line
 * is always one valid JSON object. The time is the wall clock (not the core's test clock):
 * logs are read next to other systems' logs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

void qrl__log_init(qrl__log *log, int level)
{
    pthread_mutex_init(&log->mu, NULL);
    log->fd = STDERR_FILENO;
    log->path = NULL;
    log->level = level == 0 ? QRL_LOG_INFO : level;
}

bool qrl__log_on(const qrl__log *log, int level)
{
    return level >= log->level;
}

static int open_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

qrl_err qrl__log_open(qrl__log *log, const char *path, char *errbuf, size_t errlen)
{
    char *copy;
    int fd;

    if (path == NULL || path[0] == '\0')
        return QRL_OK;
    if ((copy = strdup(path)) == NULL)
        return QRL_ERR_NOMEM;
    if ((fd = open_file(path)) < 0) {
        snprintf(errbuf, errlen, "cannot open the log file %s: %s", path, strerror(errno));
        free(copy);
        return QRL_ERR_INVALID;
    }
    pthread_mutex_lock(&log->mu);
    if (log->fd != STDERR_FILENO)
        close(log->fd);
    free(log->path);
    log->fd = fd;
    log->path = copy;
    pthread_mutex_unlock(&log->mu);
    return QRL_OK;
}

qrl_err qrl__log_reopen(qrl__log *log)
{
    char why[300];
    int fd, old;

    pthread_mutex_lock(&log->mu);
    if (log->path == NULL) {
        pthread_mutex_unlock(&log->mu);
        return QRL_OK;
    }
    fd = open_file(log->path);
    if (fd < 0) {
        snprintf(why, sizeof why, "cannot reopen the log file: %s; still writing to the old one",
                 strerror(errno));
        pthread_mutex_unlock(&log->mu);
        qrl__log_msg(log, QRL_LOG_ERROR, "log", why);
        return QRL_ERR_INVALID;
    }
    old = log->fd;
    log->fd = fd;
    pthread_mutex_unlock(&log->mu);
    close(old);
    return QRL_OK;
}

void qrl__log_close(qrl__log *log)
{
    if (log->fd != STDERR_FILENO)
        close(log->fd);
    log->fd = STDERR_FILENO;
    free(log->path);
    log->path = NULL;
    pthread_mutex_destroy(&log->mu);
}

const char *qrl__log_level_name(int level)
{
    switch (level) {
    case QRL_LOG_DEBUG:
        return "debug";
    case QRL_LOG_WARN:
        return "warn";
    case QRL_LOG_ERROR:
        return "error";
    default:
        return "info";
    }
}

void qrl__rfc3339_ms(int64_t ms, char *out, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&s, &tm) == NULL) {
        snprintf(out, len, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* The length of the UTF-8 character at s (at most `avail` bytes), 0 when it is not one:
 * no overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629). */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    size_t n;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4;
    else
        return 0;
    if (n > avail)
        return 0;
    cp = s[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

size_t qrl__json_escape(const char *s, size_t max, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, in = 0, avail = strnlen(s, max);

    if (outlen == 0)
        return 0;
    while (in < avail) {
        char esc[8];
        size_t elen = 0, adv = 1;
        unsigned char c = p[in];

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            elen = 2;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        } else if (c < 0x80) {
            esc[0] = (char)c;
            elen = 1;
        } else if ((adv = utf8_len(p + in, avail - in)) > 0) {
            memcpy(esc, p + in, adv);
            elen = adv;
        } else {
            memcpy(esc, "\\ufffd", 6);
            elen = 6;
            adv = 1;
        }
        if (o + elen >= outlen)
            break;
        memcpy(out + o, esc, elen);
        o += elen;
        in += adv;
    }
    out[o] = '\0';
    return o;
}

/* Room kept at the end of every line for "}\n". */
#define LINE_TAIL 2

static void jl_put(qrl__jline *l, const char *text, size_t len)
{
    if (l->n + len + LINE_TAIL > sizeof l->b)
        return;
    memcpy(l->b + l->n, text, len);
    l->n += len;
}

void qrl__jl_begin(qrl__jline *l, int level, const char *type)
{
    struct timespec ts;
    char when[32];
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    qrl__rfc3339_ms((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, when, sizeof when);
    n = snprintf(l->b, sizeof l->b, "{\"time\":\"%s\",\"level\":\"%s\",\"type\":\"%s\"", when,
                 qrl__log_level_name(level), type);
    /* The level and type are our own short words: this always fits. */
    l->n = n > 0 && (size_t)n + LINE_TAIL < sizeof l->b ? (size_t)n : 0;
    if (l->n == 0)
        l->b[l->n++] = '{';
}

void qrl__jl_str(qrl__jline *l, const char *key, const char *val)
{
    char member[QRL__LOG_VALUE * 6 + 96];
    size_t n;

    if (val == NULL)
        return;
    n = (size_t)snprintf(member, sizeof member, ",\"%s\":\"", key);
    if (n >= sizeof member - 2)
        return;
    n += qrl__json_escape(val, QRL__LOG_VALUE, member + n, sizeof member - n - 1);
    member[n++] = '"';
    jl_put(l, member, n);
}

void qrl__jl_int(qrl__jline *l, const char *key, long long v)
{
    char member[96];
    int n = snprintf(member, sizeof member, ",\"%s\":%lld", key, v);

    if (n > 0 && (size_t)n < sizeof member)
        jl_put(l, member, (size_t)n);
}

void qrl__jl_bool(qrl__jline *l, const char *key, bool v)
{
    char member[96];
    int n = snprintf(member, sizeof member, ",\"%s\":%s", key, v ? "true" : "false");

    if (n > 0 && (size_t)n < sizeof member)
        jl_put(l, member, (size_t)n);
}

void qrl__jl_ms(qrl__jline *l, const char *key, int64_t us)
{
    char member[96];
    int n;

    if (us < 0)
        us = 0;
    n = snprintf(member, sizeof member, ",\"%s\":%lld.%03lld", key, (long long)(us / 1000),
                 (long long)(us % 1000));
    if (n > 0 && (size_t)n < sizeof member)
        jl_put(l, member, (size_t)n);
}

void qrl__log_write(qrl__log *log, qrl__jline *l)
{
    const char *p = l->b;
    size_t left;

    l->b[l->n++] = '}';
    l->b[l->n++] = '\n';
    left = l->n;
    pthread_mutex_lock(&log->mu);
    /* One write() in the common case; a short write (a full pipe) is finished, an error
     * (a full disk) drops the line: the server goes on serving. */
    while (left > 0) {
        ssize_t w = write(log->fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        left -= (size_t)w;
    }
    pthread_mutex_unlock(&log->mu);
}

void qrl__log_msg(qrl__log *log, int level, const char *source, const char *msg)
{
    qrl__jline l;

    if (!qrl__log_on(log, level))
        return;
    qrl__jl_begin(&l, level, "log");
    qrl__jl_str(&l, "source", source);
    qrl__jl_str(&l, "msg", msg);
    qrl__log_write(log, &l);
}

/* --- lines about requests ----------------------------------------------------------------- */

/* The members every line about a request starts with. */
static void request_members(qrl__jline *l, const qrl__req *r)
{
    qrl__jl_str(l, "request_id", r->request_id);
    qrl__jl_str(l, "address", r->address);
    if (r->peer[0] != '\0')
        qrl__jl_str(l, "peer", r->peer);
}

void qrl__audit(qrl__req *r, const char *event, const qrl__ids *ids)
{
    qrl__log *log = &r->srv->log;
    qrl__jline l;

    if (!qrl__log_on(log, QRL_LOG_INFO))
        return;
    qrl__jl_begin(&l, QRL_LOG_INFO, "audit");
    qrl__jl_str(&l, "event", event);
    request_members(&l, r);
    qrl__jl_str(&l, "route", qrl__route_name(r->route));
    if (ids != NULL) {
        if (ids->lr_id != 0)
            qrl__jl_int(&l, "login_request_id", ids->lr_id);
        if (ids->account_id != 0)
            qrl__jl_int(&l, "account_id", ids->account_id);
        if (ids->device_id != 0)
            qrl__jl_int(&l, "device_id", ids->device_id);
        qrl__jl_str(&l, "client_id", ids->client_id);
        qrl__jl_str(&l, "error", ids->error);
        qrl__jl_str(&l, "reason", ids->reason);
    }
    qrl__log_write(log, &l);
}

void qrl__access_line(qrl__req *r, int64_t duration_us)
{
    qrl__jline l;

    qrl__jl_begin(&l, QRL_LOG_INFO, "access");
    request_members(&l, r);
    qrl__jl_str(&l, "method", r->method);
    qrl__jl_str(&l, "route", qrl__route_name(r->route));
    qrl__jl_int(&l, "status", r->client_left ? 0 : r->status);
    qrl__jl_ms(&l, "duration_ms", duration_us);
    qrl__jl_int(&l, "bytes", (long long)r->bytes);
    if (r->client_left)
        qrl__jl_bool(&l, "client_gone", true);
    if (r->held)
        qrl__jl_bool(&l, "held", true);
    qrl__log_write(&r->srv->log, &l);
}
