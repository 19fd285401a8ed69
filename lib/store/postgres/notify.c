/* SPDX-License-Identifier: MIT */
/*
 * Changes made by other nodes (store.h, set_notify): LISTEN/NOTIFY.
 *
 * Every write that changes a login request's state calls pg_notify('qrlogin', '<id>') in its
 * own transaction (statements.c), and a device revocation pg_notify('qrlogin', '-<id>'), so
 * PostgreSQL delivers the notification to every listening session when, and only if, the
 * transaction commits. Each node keeps one connection of its own that LISTENs on the channel,
 * and a thread that waits on its socket (poll) and calls the hook for each notification: the
 * core then wakes the requests held for that id, as if the change had been made here. A node
 * also hears its own changes; the core has reported those already, and a second report only
 * makes a held request read its state once more (store.h allows it).
 *
 * What a node does not hear it must not wait for. When the listening connection drops (the
 * database restarted, a network fault, an operator's pg_terminate_backend), notifications sent
 * meanwhile are lost. The thread connects again, with a pause that doubles from 100 ms to 5 s
 * between failed attempts, LISTENs again, and then calls the hook with 0, which means
 * "anything may have changed": the server wakes every held request, and each reads its state
 * again (server.c, qrl_server_on_change). The first LISTEN is followed by a 0 too, for the
 * changes made between set_notify and that LISTEN.
 *
 * Lifecycle: the thread starts with the first set_notify that installs a hook (a store opened
 * for a command line tool never starts it) and stops at close. The hook is called with the
 * listener's mutex held, which set_notify takes too: once set_notify(NULL) returns, the old hook
 * is never called again (store.h). The hook must not call the store (store.h), so holding the
 * mutex across it cannot deadlock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "pg_internal.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 5000

void qrl__pg_listener_init(pg_store *s)
{
    pthread_mutex_init(&s->listen.mu, NULL);
    s->listen.wake[0] = s->listen.wake[1] = -1;
}

static void deliver(pg_store *s, int64_t id)
{
    pthread_mutex_lock(&s->listen.mu);
    if (s->listen.fn != NULL)
        s->listen.fn(s->listen.ud, id);
    pthread_mutex_unlock(&s->listen.mu);
}

/* Waits until `fd` is readable, or the thread is asked to stop (the wake pipe), for at most
 * timeout_ms (-1: no limit). Returns 1 readable, 0 timeout, -1 stop. */
static int wait_for(pg_store *s, int fd, int timeout_ms)
{
    struct pollfd pfd[2] = {{.fd = s->listen.wake[0], .events = POLLIN},
                            {.fd = fd, .events = POLLIN}};

    for (;;) {
        if (atomic_load(&s->listen.stop))
            return -1;
        int n = poll(pfd, fd >= 0 ? 2 : 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (pfd[0].revents != 0 || atomic_load(&s->listen.stop))
            return -1;
        return n > 0 ? 1 : 0;
    }
}

/* One notification's payload: "<id>" or "-<id>", as written by statements.c. */
static int parse_payload(const char *p, int64_t *id)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(p, &end, 10);
    if (errno != 0 || end == p || *end != '\0' || v == 0)
        return -1;
    *id = v;
    return 0;
}

/* Connects and LISTENs; NULL when it could not (said once per outage). */
static PGconn *listen_connect(pg_store *s, int *said)
{
    char err[256];
    PGconn *pg = NULL;
    PGresult *r;

    if (qrl__pg_connect(s, CONNECT_TIMEOUT_MS, &pg, err, sizeof err) == QRL_OK) {
        r = PQexec(pg, "LISTEN " QRL__PG_CHANNEL);
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            PQclear(r);
            if (*said)
                qrl__pg_log("listening for other nodes' changes again");
            *said = 0;
            return pg;
        }
        qrl__pg_conn_message(pg, err, sizeof err);
        PQclear(r);
        PQfinish(pg);
    }
    if (!*said)
        qrl__pg_log("cannot listen for other nodes' changes (%s); trying again", err);
    *said = 1;
    return NULL;
}

static void *listener_main(void *arg)
{
    pg_store *s = arg;
    PGconn *pg = NULL;
    int backoff = 0, said = 0;

    while (!atomic_load(&s->listen.stop)) {
        if (pg == NULL) {
            if (backoff > 0 && wait_for(s, -1, backoff) < 0)
                break;
            if ((pg = listen_connect(s, &said)) == NULL) {
                backoff = backoff == 0 ? BACKOFF_FIRST_MS : backoff * 2;
                if (backoff > BACKOFF_MAX_MS)
                    backoff = BACKOFF_MAX_MS;
                continue;
            }
            backoff = 0;
            atomic_fetch_add(&s->listen.listens, 1);
            deliver(s, 0); /* whatever was missed: every held request looks again */
        }
        if (wait_for(s, PQsocket(pg), -1) < 0)
            break;
        if (!PQconsumeInput(pg) || PQstatus(pg) != CONNECTION_OK) {
            char msg[256];
            qrl__pg_conn_message(pg, msg, sizeof msg);
            qrl__pg_log("the listening connection was lost (%s); connecting again", msg);
            PQfinish(pg);
            pg = NULL;
            backoff = BACKOFF_FIRST_MS;
            continue;
        }
        for (PGnotify *n; (n = PQnotifies(pg)) != NULL; PQfreemem(n)) {
            int64_t id;
            if (strcmp(n->relname, QRL__PG_CHANNEL) == 0 && parse_payload(n->extra, &id) == 0)
                deliver(s, id);
        }
    }
    PQfinish(pg);
    return NULL;
}

qrl_err qrl__pg_set_notify(qrl_store *st, void (*fn)(void *ud, int64_t lr_id), void *ud)
{
    pg_store *s = (pg_store *)st;
    qrl_err rc = QRL_OK;

    if (s == NULL)
        return QRL_ERR_INVALID;
    pthread_mutex_lock(&s->listen.mu);
    s->listen.fn = fn;
    s->listen.ud = ud;
    if (fn != NULL && !s->listen.started) {
        if (pipe2(s->listen.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
            s->listen.wake[0] = s->listen.wake[1] = -1;
            rc = QRL_ERR_STORE;
        } else if (pthread_create(&s->listen.thread, NULL, listener_main, s) != 0) {
            close(s->listen.wake[0]);
            close(s->listen.wake[1]);
            s->listen.wake[0] = s->listen.wake[1] = -1;
            rc = QRL_ERR_STORE;
        } else {
            s->listen.started = 1;
        }
        if (rc != QRL_OK) {
            qrl__pg_log("cannot start the listener thread: other nodes' changes will be seen "
                        "only when a held request times out");
            s->listen.fn = NULL;
        }
    }
    pthread_mutex_unlock(&s->listen.mu);
    return rc;
}

void qrl__pg_listener_stop(pg_store *s)
{
    if (s->listen.started) {
        atomic_store(&s->listen.stop, 1);
        (void)!write(s->listen.wake[1], "x", 1);
        pthread_join(s->listen.thread, NULL);
        s->listen.started = 0;
    }
    if (s->listen.wake[0] >= 0) {
        close(s->listen.wake[0]);
        close(s->listen.wake[1]);
    }
    s->listen.wake[0] = s->listen.wake[1] = -1;
    pthread_mutex_destroy(&s->listen.mu);
}
