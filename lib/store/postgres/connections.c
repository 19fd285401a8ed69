/* SPDX-License-Identifier: MIT */
/*
 * Connections of the PostgreSQL store: connecting with the store's session settings, the pool
 * every method leases a connection from, and getting back on its feet after the database went
 * away.
 *
 * Why a pool of a fixed size: a PostgreSQL connection is a server process (several megabytes,
 * and a slot of max_connections), so a node cannot have one per worker thread (64 of them) per
 * node. A method leases one for its duration, a few round trips, and gives it back; a thread
 * that finds none free waits for one. The size is QRLOGIN_PG_POOL (1 to 1024), 16 by default:
 * enough that the worker threads rarely wait (a method holds its connection well under a
 * millisecond on a local network), few enough that five nodes (18 connections each, with the
 * listener and the probe) fit the default max_connections of 100 with room for an operator;
 * more nodes need a higher max_connections or a smaller pool. Connections open on first use
 * (the opening thread's first one is the migration's) and stay open until close.
 *
 * Reconnection. When the database restarts, every connection breaks. A method that runs on a
 * broken connection fails with QRL_ERR_BUSY (the server answers 503 with Retry-After: 1) and
 * has written nothing: what it did not commit, PostgreSQL rolled back. Its connection is closed
 * as it is given back, and the pool's epoch moves on, so that every other connection opened
 * before is closed and opened again before its next use instead of failing a method of its own.
 * A lease also checks, with one poll() of the socket, that an idle connection has not been told
 * something while it sat in the pool: a server that shuts down tells every client so before it
 * closes the socket, so the next method after a restart usually needs no failure at all. A
 * connection attempt that fails is QRL_ERR_BUSY too; the next method tries again. The first
 * failure of an outage is logged, then nothing until a connection succeeds again.
 *
 * Session settings, set once per connection: synchronous_commit is "on" unless the server's
 * setting is stronger (a commit is durable when it returns, store.h); lock_timeout 2 s (as long
 * as the SQLite store lets its writer wait for another process's lock, and for the same reasons:
 * a lock held longer is an operator's transaction, and a 503 now is better than a worker thread
 * held); statement_timeout 30 s; client_min_messages warning; the server never logs a bound
 * value on an error (log_parameter_max_length_on_error 0). TCP keepalives notice a server that
 * vanished without closing the socket within about half a minute. Every one of these can be
 * overridden by the URI except synchronous_commit "off".
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "pg_internal.h"

/* How long a method may wait for a connection to be made. A local server answers in
 * milliseconds; a server that does not answer in 5 s is as good as down for a request. */
#define CONNECT_TIMEOUT_MS 5000
#define POOL_DEFAULT 16
#define POOL_MAX 1024

static const char SESSION_SQL[] =
    "SET lock_timeout = 2000; SET statement_timeout = 30000;"
    " SET client_min_messages = warning; SET log_parameter_max_length_on_error = 0;"
    " SELECT set_config('synchronous_commit', 'on', false)"
    " WHERE current_setting('synchronous_commit') = 'off'";

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Warnings from the server ("there is already a transaction in progress" would be a bug of
 * ours) go to the log with their primary message only. */
static void on_notice(void *arg, const PGresult *r)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

    (void)arg;
    if (sev != NULL && strcmp(sev, "NOTICE") != 0 && strcmp(sev, "INFO") != 0 &&
        strcmp(sev, "DEBUG") != 0 && strcmp(sev, "LOG") != 0)
        qrl__pg_log("%s: %s", sev, msg != NULL ? msg : "(no message)");
}

/* Waits for libpq's asynchronous connection to finish, until `deadline` (mono_ms). */
static int connect_poll(PGconn *pg, int64_t deadline)
{
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;

    while (ps != PGRES_POLLING_OK) {
        struct pollfd pfd = {.fd = PQsocket(pg)};
        int64_t left = deadline - mono_ms();

        if (ps == PGRES_POLLING_FAILED || pfd.fd < 0)
            return -1;
        if (left <= 0)
            return 1;
        pfd.events = ps == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            return -1;
        if (pfd.revents == 0)
            continue;
        ps = PQconnectPoll(pg);
    }
    return 0;
}

qrl_err qrl__pg_connect(const pg_store *s, int timeout_ms, PGconn **out, char *err, size_t errlen)
{
    /* Before the caller's URI: its own values win (libpq, PQconnectStartParams). */
    const char *const keys[] = {
        "fallback_application_name", "keepalives_idle", "keepalives_interval",
        "keepalives_count",          "dbname",          NULL};
    const char *const vals[] = {"qrlogin", "10", "5", "3", s->conninfo, NULL};
    PGconn *pg = PQconnectStartParams(keys, vals, 1);
    PGresult *r;
    int w;

    *out = NULL;
    if (pg == NULL) {
        snprintf(err, errlen, "out of memory");
        return QRL_ERR_NOMEM;
    }
    if (PQstatus(pg) == CONNECTION_BAD || (w = connect_poll(pg, mono_ms() + timeout_ms)) < 0) {
        qrl__pg_conn_message(pg, err, errlen);
        PQfinish(pg);
        return QRL_ERR_STORE;
    }
    if (w > 0) {
        snprintf(err, errlen, "no connection within %d ms", timeout_ms);
        PQfinish(pg);
        return QRL_ERR_STORE;
    }
    PQsetNoticeReceiver(pg, on_notice, NULL);
    r = PQexec(pg, SESSION_SQL);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        qrl__pg_conn_message(pg, err, errlen);
        PQclear(r);
        PQfinish(pg);
        return QRL_ERR_STORE;
    }
    PQclear(r);
    *out = pg;
    return QRL_OK;
}

/* QRLOGIN_PG_POOL, or the default. */
static int pool_size(void)
{
    const char *v = getenv("QRLOGIN_PG_POOL");
    char *end;
    long n;

    if (v == NULL || v[0] == '\0')
        return POOL_DEFAULT;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < 1 || n > POOL_MAX) {
        qrl__pg_log("QRLOGIN_PG_POOL=%s is not a number from 1 to %d; using %d", v, POOL_MAX,
                    POOL_DEFAULT);
        return POOL_DEFAULT;
    }
    return (int)n;
}

qrl_err qrl__pg_pool_init(pg_store *s, PGconn *first)
{
    s->pool_size = pool_size();
    s->conns = calloc((size_t)s->pool_size, sizeof *s->conns);
    if (s->conns == NULL)
        return QRL_ERR_NOMEM;
    for (int i = s->pool_size - 1; i >= 0; i--) {
        s->conns[i].store = s;
        s->conns[i].next = s->idle;
        s->idle = &s->conns[i];
    }
    s->conns[0].pg = first;
    return QRL_OK;
}

static void conn_close(struct pg_conn *c)
{
    PQfinish(c->pg);
    c->pg = NULL;
    c->broken = 0;
    memset(c->prepared, 0, sizeof c->prepared);
}

void qrl__pg_pool_close(pg_store *s)
{
    for (int i = 0; s->conns != NULL && i < s->pool_size; i++)
        conn_close(&s->conns[i]);
    free(s->conns);
    s->conns = NULL;
    s->idle = NULL;
}

/* Whether an idle connection can still be used: nothing arrived on it while it sat in the
 * pool, or what arrived (a notice, a parameter change) left it working. A server that shuts
 * down or ends the session says so first (a FATAL message) and closes the socket; libpq sees
 * the close only on the read after the message's, hence the few rounds. */
static int idle_usable(struct pg_conn *c)
{
    struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};

    if (pfd.fd < 0 || PQstatus(c->pg) != CONNECTION_OK)
        return 0;
    for (int i = 0; i < 4 && poll(&pfd, 1, 0) > 0; i++)
        if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK)
            return 0;
    return PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

qrl_err qrl__pg_lease(pg_store *s, struct pg_conn **out)
{
    struct pg_conn *c;
    char err[256];
    qrl_err rc;

    pthread_mutex_lock(&s->mu);
    while (s->idle == NULL)
        pthread_cond_wait(&s->cv, &s->mu);
    c = s->idle;
    s->idle = c->next;
    pthread_mutex_unlock(&s->mu);

    if (c->pg != NULL &&
        (c->epoch != atomic_load_explicit(&s->epoch, memory_order_acquire) || !idle_usable(c)))
        conn_close(c);
    if (c->pg == NULL) {
        c->epoch = atomic_load_explicit(&s->epoch, memory_order_acquire);
        rc = qrl__pg_connect(s, CONNECT_TIMEOUT_MS, &c->pg, err, sizeof err);
        if (rc != QRL_OK) {
            if (!atomic_exchange(&s->down, 1))
                qrl__pg_log("cannot connect (%s); methods fail with 503 until it can", err);
            qrl__pg_release(s, c);
            return rc == QRL_ERR_NOMEM ? rc : QRL_ERR_BUSY;
        }
        if (atomic_exchange(&s->down, 0))
            qrl__pg_log("connected again");
    }
    *out = c;
    return QRL_OK;
}

void qrl__pg_release(pg_store *s, struct pg_conn *c)
{
    if (c->pg != NULL && !c->broken && PQstatus(c->pg) == CONNECTION_OK &&
        PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        /* A body that returned inside a transaction: never keep it open on an idle one. */
        PQclear(PQexec(c->pg, "ROLLBACK"));
    }
    c->nnotes = c->notes_lost = 0; /* changes that never committed */
    if (c->pg != NULL && (c->broken || PQstatus(c->pg) != CONNECTION_OK ||
                          PQtransactionStatus(c->pg) != PQTRANS_IDLE)) {
        conn_close(c);
        atomic_fetch_add_explicit(&s->epoch, 1, memory_order_acq_rel);
    }
    pthread_mutex_lock(&s->mu);
    c->next = s->idle;
    s->idle = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}
